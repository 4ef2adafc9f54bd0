//! `--metrics ADDR`: Prometheus text (format 0.0.4) at `GET /metrics`,
//! encoded with `prometheus-client` and served by hyper (HTTP/1.1) on a
//! thread of its own, so a scrape never holds up the daemon's signals and
//! reloads, and a reload never holds up a scrape.
//!
//! Metrics (all prefixed `flowfilter_`):
//! - `category_packets_total{interface,category,verdict}` and
//!   `category_bytes_total`: verdict `seen`, `dropped`, `monitored` (would
//!   have been dropped) and `passed`, per receiving interface and category
//!   (`sum by (category)` gives the totals). Each attached interface has a
//!   counter slot of its own (up to 15); `interface="other"` counts packets
//!   on interfaces without one and appears only when it has counted any.
//! - `label_packets_total{label,verdict}` (`seen`, `dropped`, `monitored`)
//!   and `label_bytes_total{label}`.
//! - `frames_total{counter}`: the program's global counters (`packets`,
//!   `non_ip`, `tcp`, `udp`, `fragments`, `malformed`, ...).
//! - `flows` and `flow_capacity`: flow-table occupancy (live flows with a
//!   category); `flows_evicted`: live flows with a category whose slot a
//!   new flow took, counted by the program.
//! - `list_prefixes{category,family}`: list sizes (`allow` included).
//! - `list_age_seconds{category}`: seconds since the list file in the
//!   lists directory was written: the time in the header `flowfilter list
//!   update` writes, else the file's modification time.
//! - `policy_info{category,policy,source}`: 1 per category.
//! - `generation`: the active table generation.
//! - `interface_attached{interface,mode}`: 1 when the kernel runs the
//!   filter on the interface of that name, 0 when it is pinned or
//!   configured but not attached (deleted, re-created, waited for).
//! - `last_reload_timestamp_seconds`, `last_reload_success` (1 or 0),
//!   `reloads_total{result}` (`ok`, `error`).
//!
//! Reading: one snapshot serves every scrape for [`Limits::cache_ttl`]
//! (1 s), or until the state file changes (a reload shows at once).
//! Concurrent scrapes wait for the one read in progress and share it. A read
//! is one `BPF_MAP_LOOKUP_BATCH` per per-CPU counter map, a walk of the
//! memory-mapped flow table, the state file and the list files' headers; it
//! runs on a blocking thread so the server keeps accepting meanwhile.
//!
//! Serving ([`Limits`]): `GET` and `HEAD` of `/metrics` (and `/`, a pointer
//! to it); 404 for other paths, 405 for other methods; one request per
//! connection. At most 16 connections at once: a connection beyond that
//! closes the oldest one that has not yet sent its request, or is closed
//! itself when all are being answered. A request head must arrive whole
//! within 5 s and stay under 8 KiB (431 beyond); a connection lasts 15 s at
//! most, writing included.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::control::Error;
use crate::control::state::{StateFile, state_path};
use crate::dataplane::loader::Filter;
use crate::dataplane::pins::PinLayout;
use crate::report::collect_stats;

/// Largest request head (request line and headers) accepted: 431 beyond.
pub const MAX_HEAD_BYTES: usize = 8192;

/// The server's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (default 16).
    pub max_connections: usize,
    /// Time for a client to send its whole request head (default 5 s).
    pub head_timeout: Duration,
    /// Time a connection may last in all, the answer's writing included
    /// (default 15 s).
    pub connection_timeout: Duration,
    /// How long a snapshot serves scrapes (default 1 s).
    pub cache_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 16,
            head_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(15),
            cache_ttl: Duration::from_secs(1),
        }
    }
}

/// What changes when the daemon's installed state changes (a cached
/// snapshot older than a change is not served).
pub type Stamp = [i64; 4];

/// What the server serves.
pub trait Source: Send + Sync + 'static {
    /// The exposition text, or why it could not be made (logged; the
    /// scrape gets a 500). Runs on a blocking thread.
    fn render(&self) -> Result<String, String>;

    /// The current [`Stamp`]: cheap, called at every scrape.
    fn stamp(&self) -> Stamp;
}

/// Reads the pins and the state file.
pub struct PinSource {
    filter: Mutex<Filter>,
    layout: PinLayout,
}

impl std::fmt::Debug for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinSource")
            .field("pin_dir", &self.layout.dir)
            .finish_non_exhaustive()
    }
}

type Labels = Vec<(&'static str, String)>;

/// A sample: counters are exact integers, gauges floats.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(u64),
    Float(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Num {
        Num::Int(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Num {
        Num::Float(v)
    }
}

/// One family of samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    samples: Vec<(Labels, Num)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, counter: bool) -> Family {
        Family {
            name,
            help,
            counter,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Labels, v: impl Into<Num>) {
        self.samples.push((labels, v.into()));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let kind = if self.counter {
            ConstCounter::new(0u64).metric_type()
        } else {
            ConstGauge::new(0i64).metric_type()
        };
        let mut m = encoder.encode_descriptor(self.name, self.help, None, kind)?;
        for (labels, v) in &self.samples {
            let fam = m.encode_family(labels)?;
            match (self.counter, *v) {
                (true, Num::Int(n)) => ConstCounter::new(n).encode(fam)?,
                (true, Num::Float(x)) => ConstCounter::new(x).encode(fam)?,
                (false, Num::Int(n)) => ConstGauge::new(n).encode(fam)?,
                (false, Num::Float(x)) => ConstGauge::new(x).encode(fam)?,
            }
        }
        Ok(())
    }
}

impl PinSource {
    /// A source reading `filter` (a view of the pins in `layout`).
    pub fn new(filter: Filter, layout: PinLayout) -> PinSource {
        PinSource {
            filter: Mutex::new(filter),
            layout,
        }
    }

    fn families(&self) -> Result<Vec<Family>, String> {
        let state = StateFile::read(&self.layout.dir).map_err(|e| e.to_string())?;
        let st = state.as_ref();
        let f = self
            .filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = collect_stats(&f, st).map_err(|e| e.to_string())?;
        let mut cat_p = Family::new(
            "flowfilter_category_packets",
            "UDP packets per receiving interface, category and verdict (monitored: would have been dropped)",
            true,
        );
        let mut cat_b = Family::new(
            "flowfilter_category_bytes",
            "Bytes per receiving interface, category and verdict",
            true,
        );
        // Every category the totals show, on every interface with a slot
        // (zero until counted), so series exist before the first packet.
        for i in &stats.interfaces {
            for c in &stats.categories {
                let name = c.name.clone().unwrap_or_else(|| format!("#{}", c.id));
                let s = i
                    .categories
                    .iter()
                    .find(|r| r.id == c.id)
                    .map(|r| r.stats)
                    .unwrap_or_default();
                for (verdict, p, b) in [
                    ("seen", s.seen_packets, s.seen_bytes),
                    ("dropped", s.dropped_packets, s.dropped_bytes),
                    ("monitored", s.monitored_packets, s.monitored_bytes),
                    ("passed", s.passed_packets, s.passed_bytes),
                ] {
                    let l = vec![
                        ("interface", i.name.clone()),
                        ("category", name.clone()),
                        ("verdict", verdict.to_owned()),
                    ];
                    cat_p.add(l.clone(), p);
                    cat_b.add(l, b);
                }
            }
        }
        let mut lab_p = Family::new(
            "flowfilter_label_packets",
            "Packets per traffic label and verdict",
            true,
        );
        let mut lab_b = Family::new("flowfilter_label_bytes", "Bytes per traffic label", true);
        for l in &stats.labels {
            let s = &l.stats;
            for (verdict, v) in [
                ("seen", s.packets),
                ("dropped", s.dropped),
                ("monitored", s.monitored),
            ] {
                lab_p.add(
                    vec![
                        ("label", l.name.to_owned()),
                        ("verdict", verdict.to_owned()),
                    ],
                    v,
                );
            }
            lab_b.add(vec![("label", l.name.to_owned())], s.bytes);
        }
        let mut frames = Family::new(
            "flowfilter_frames",
            "Global counters of the XDP program",
            true,
        );
        for (n, v) in &stats.global {
            frames.add(vec![("counter", (*n).to_owned())], *v);
        }
        let (tracked, capacity) = f.flow_occupancy().map_err(|e| e.to_string())?;
        let mut flows = Family::new("flowfilter_flows", "Tracked flows", false);
        flows.add(Vec::new(), tracked);
        let mut cap = Family::new("flowfilter_flow_capacity", "Flow table capacity", false);
        cap.add(Vec::new(), u64::from(capacity));
        let evicted_n = stats
            .global
            .iter()
            .find(|(n, _)| *n == "flows_evicted")
            .map_or(0, |(_, v)| *v);
        let mut evicted = Family::new(
            "flowfilter_flows_evicted",
            "Live flows with a category whose flow-table slot a new flow took (since the maps were created)",
            false,
        );
        evicted.add(Vec::new(), evicted_n);
        let mut generation = Family::new("flowfilter_generation", "Active table generation", false);
        generation.add(
            Vec::new(),
            u64::from(f.state().map_err(|e| e.to_string())?.generation & 1),
        );
        drop(f);

        let mut sizes = Family::new(
            "flowfilter_list_prefixes",
            "Prefixes per list and address family",
            false,
        );
        let mut policy = Family::new(
            "flowfilter_policy_info",
            "Policy in force per category",
            false,
        );
        let mut ifaces = Family::new(
            "flowfilter_interface_attached",
            "1 when the kernel runs the filter on the interface, 0 when it is configured or pinned but not attached",
            false,
        );
        let mut reload_ts = Family::new(
            "flowfilter_last_reload_timestamp_seconds",
            "Time of the last reload or install attempt",
            false,
        );
        let mut reload_ok = Family::new(
            "flowfilter_last_reload_success",
            "1 if the last reload was installed, 0 if it was rejected",
            false,
        );
        let mut reloads = Family::new("flowfilter_reloads", "Reload attempts by result", true);
        if let Some(s) = st {
            for c in &s.categories {
                for (fam, n) in [("ipv4", c.v4_prefixes), ("ipv6", c.v6_prefixes)] {
                    sizes.add(
                        vec![("category", c.name.clone()), ("family", fam.to_owned())],
                        n as u64,
                    );
                }
                policy.add(
                    vec![
                        ("category", c.name.clone()),
                        ("policy", c.policy.clone()),
                        ("source", c.policy_source.clone()),
                    ],
                    1u64,
                );
            }
            for (fam, n) in [("ipv4", s.allow.0), ("ipv6", s.allow.1)] {
                sizes.add(
                    vec![("category", "allow".to_owned()), ("family", fam.to_owned())],
                    n as u64,
                );
            }
            if let Some(r) = &s.last_reload {
                reload_ts.add(Vec::new(), r.time);
                reload_ok.add(Vec::new(), u64::from(r.ok));
            }
            reloads.add(vec![("result", "ok".to_owned())], s.reloads_ok);
            reloads.add(vec![("result", "error".to_owned())], s.reloads_failed);
        }
        let mut ages = Family::new(
            "flowfilter_list_age_seconds",
            "Seconds since each list file was written (its `flowfilter list update` header, else its modification time)",
            false,
        );
        if let Some(s) = st {
            let now = SystemTime::now();
            let names = s
                .categories
                .iter()
                .map(|c| c.name.as_str())
                .chain([crate::lists::ALLOW_NAME]);
            for name in names {
                let path = s.lists_dir.join(format!("{name}.txt"));
                if let Some(written) = list_written(&path) {
                    let age = now.duration_since(written).unwrap_or_default();
                    ages.add(
                        vec![("category", name.to_owned())],
                        age.as_secs_f64().floor(),
                    );
                }
            }
        }
        // What the kernel says, not what the pins say: 0 for an interface
        // whose link died with it, or that is waited for.
        for i in crate::daemon::ifwatch::interface_health(&self.layout, st) {
            ifaces.add(
                vec![("interface", i.name), ("mode", i.mode)],
                u64::from(i.health.attached()),
            );
        }
        Ok(vec![
            cat_p, cat_b, lab_p, lab_b, frames, flows, cap, evicted, generation, sizes, ages,
            policy, ifaces, reload_ts, reload_ok, reloads,
        ])
    }
}

/// When a list file was written: the `# at` time of the header `flowfilter
/// list update` writes, else the file's modification time; `None` when it
/// cannot be read.
fn list_written(path: &Path) -> Option<SystemTime> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut head = Vec::with_capacity(1024);
    (&mut file).take(1024).read_to_end(&mut head).ok()?;
    crate::lists::update::written_at(&String::from_utf8_lossy(&head))
        .or_else(|| file.metadata().ok()?.modified().ok())
}

/// Families encoded by `prometheus-client`.
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            f.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// Encode `families` as Prometheus text.
fn encode(families: Vec<Family>) -> Result<String, String> {
    let mut r = Registry::default();
    r.register_collector(Box::new(Families(families)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &r)
        .map_err(|_| "encoding the metrics failed".to_owned())?;
    Ok(out)
}

impl Source for PinSource {
    fn render(&self) -> Result<String, String> {
        encode(self.families()?)
    }

    fn stamp(&self) -> Stamp {
        std::fs::metadata(state_path(&self.layout.dir)).map_or([0; 4], |m| {
            [m.ino() as i64, m.mtime(), m.mtime_nsec(), m.len() as i64]
        })
    }
}

/// One read of the source.
struct Snapshot {
    taken: Instant,
    stamp: Stamp,
    body: Result<Bytes, String>,
}

/// The snapshot in use and the gate that lets one read run at a time.
struct Cache<S> {
    source: Arc<S>,
    ttl: Duration,
    current: Arc<Mutex<Option<Arc<Snapshot>>>>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<S: Source> Cache<S> {
    fn new(source: Arc<S>, ttl: Duration) -> Cache<S> {
        Cache {
            source,
            ttl,
            current: Arc::default(),
            gate: Arc::default(),
        }
    }

    fn fresh(&self, stamp: Stamp) -> Option<Arc<Snapshot>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|s| s.taken.elapsed() < self.ttl && s.stamp == stamp)
            .cloned()
    }

    /// The snapshot to serve: the cached one while fresh, else a new read
    /// (one at a time: who comes while one runs gets its result).
    async fn get(&self) -> Arc<Snapshot> {
        if let Some(s) = self.fresh(self.source.stamp()) {
            return s;
        }
        let gate = Arc::clone(&self.gate).lock_owned().await;
        let stamp = self.source.stamp();
        if let Some(s) = self.fresh(stamp) {
            return s;
        }
        let (source, current) = (Arc::clone(&self.source), Arc::clone(&self.current));
        // The read owns the gate: a scrape that gives up does not let a
        // second read start beside it.
        let read = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            let taken = Instant::now();
            let body = source.render().map(Bytes::from);
            if let Err(e) = &body {
                log::warn!("metrics: reading the pins: {e}");
            }
            let snap = Arc::new(Snapshot { taken, stamp, body });
            *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&snap));
            snap
        });
        read.await.unwrap_or_else(|e| {
            Arc::new(Snapshot {
                taken: Instant::now(),
                stamp,
                body: Err(format!("the read failed: {e}")),
            })
        })
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The answer to one request (hyper leaves the body out for `HEAD`).
async fn answer<S: Source>(req: &Request<Incoming>, cache: &Cache<S>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            Bytes::from_static(b"only GET and HEAD are served\n"),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let snap = cache.get().await;
            match &snap.body {
                Ok(body) => reply(
                    StatusCode::OK,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    body.clone(),
                ),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    Bytes::from_static(b"reading the pinned maps failed; see the daemon's log\n"),
                ),
            }
        }
        "/" => reply(
            StatusCode::OK,
            TEXT,
            Bytes::from_static(b"flowfilter: metrics at /metrics\n"),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        ),
    }
}

/// An open connection: whether it still waits for its request, and how to
/// close it.
struct Conn {
    waiting: Arc<AtomicBool>,
    close: Arc<Notify>,
}

/// Open connections by age (oldest first).
type Conns = Arc<Mutex<BTreeMap<u64, Conn>>>;

/// Make room for one more connection: `false` when every open connection is
/// being answered (the new one is then refused).
fn make_room(conns: &mut BTreeMap<u64, Conn>, max: usize) -> bool {
    while conns.len() >= max.max(1) {
        let Some(id) = conns
            .iter()
            .find(|(_, c)| c.waiting.load(Ordering::SeqCst))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(c) = conns.remove(&id) {
            c.close.notify_one();
        }
    }
    true
}

/// Serve `source` on `listener` within `limits`, until the task is dropped.
pub async fn serve<S: Source>(listener: TcpListener, source: Arc<S>, limits: Limits) {
    let cache = Arc::new(Cache::new(source, limits.cache_ttl));
    let conns: Conns = Arc::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(64)
        .keep_alive(false);
    let mut next = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = next;
        next += 1;
        let waiting = Arc::new(AtomicBool::new(true));
        let close = Arc::new(Notify::new());
        {
            let mut open = conns.lock().unwrap_or_else(PoisonError::into_inner);
            if !make_room(&mut open, limits.max_connections) {
                log::debug!(
                    "metrics: {} connections being answered; refused one",
                    open.len()
                );
                continue;
            }
            open.insert(
                id,
                Conn {
                    waiting: Arc::clone(&waiting),
                    close: Arc::clone(&close),
                },
            );
        }
        let (cache, conns) = (Arc::clone(&cache), Arc::clone(&conns));
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            // The head has arrived: this connection is being answered.
            waiting.store(false, Ordering::SeqCst);
            let cache = Arc::clone(&cache);
            async move { Ok::<_, Infallible>(answer(&req, &cache).await) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let lifetime = limits.connection_timeout;
        tokio::spawn(async move {
            tokio::select! {
                r = tokio::time::timeout(lifetime, conn) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => log::debug!("metrics: connection: {e}"),
                    Err(_) => log::debug!("metrics: connection closed after {lifetime:?}"),
                },
                () = close.notified() => log::debug!("metrics: closed an idle connection to make room"),
            }
            conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }
}

/// Bind the metrics address (before anything else starts, so a bad address
/// fails the start).
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve the pins of `layout` on `listener` from a thread of its own (with
/// its own runtime and its own view of the maps), with the default
/// [`Limits`].
pub fn start(listener: TcpListener, layout: &PinLayout) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let listener = listener.into_std().map_err(Error::io(
        "--metrics: handing the socket to the metrics thread",
    ))?;
    let source = Arc::new(PinSource::new(
        Filter::open_pinned(layout, false)?,
        layout.clone(),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .thread_name("ff-metrics-read")
        .build()
        .map_err(Error::io("starting the metrics runtime"))?;
    std::thread::Builder::new()
        .name("ff-metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, source, Limits::default()).await,
                    Err(e) => log::error!("metrics: {e}; no metrics are served"),
                }
            });
        })
        .map_err(Error::io("starting the metrics thread"))?;
    log::info!("metrics at http://{addr}/metrics");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::atomic::AtomicU64;

    use super::*;

    #[test]
    fn families_encode_as_prometheus_text() {
        let mut f = Family::new("flowfilter_category_packets", "help", true);
        f.add(
            vec![
                ("category", "whatsapp".into()),
                ("verdict", "dropped".into()),
            ],
            20u64,
        );
        let mut g = Family::new("flowfilter_flows", "Tracked flows", false);
        g.add(Vec::new(), 3u64);
        let mut a = Family::new("flowfilter_list_age_seconds", "age", false);
        a.add(vec![("category", "telegram".into())], 86_400.0);
        let empty = Family::new("flowfilter_empty", "none", false);
        let text = encode(vec![f, g, a, empty]).unwrap();
        assert!(
            text.contains(
                "flowfilter_category_packets_total{category=\"whatsapp\",verdict=\"dropped\"} 20\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE flowfilter_flows gauge\nflowfilter_flows 3\n"),
            "{text}"
        );
        assert!(
            text.contains("flowfilter_list_age_seconds{category=\"telegram\"} 86400.0\n"),
            "{text}"
        );
        assert!(!text.contains("flowfilter_empty"), "{text}");
    }

    #[test]
    fn list_files_are_dated_by_header_then_mtime() {
        let dir = std::env::temp_dir().join(format!("ff-metrics-age-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let with_header = dir.join("a.txt");
        std::fs::write(
            &with_header,
            "# a: written by `flowfilter list update` from /s.toml\n# at 2026-01-02T03:04:05Z: 1 entries (1 IPv4, 0 IPv6) from 1 sources.\n10.0.0.0/8\n",
        )
        .unwrap();
        let plain = dir.join("b.txt");
        std::fs::write(&plain, "10.0.0.0/8\n").unwrap();
        let at = crate::lists::update::parse_utc("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(list_written(&with_header), Some(at));
        let mtime = std::fs::metadata(&plain).unwrap().modified().unwrap();
        assert_eq!(list_written(&plain), Some(mtime));
        assert_eq!(list_written(&dir.join("missing.txt")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn room_is_made_from_the_oldest_waiting_connection() {
        let conn = |waiting: bool| Conn {
            waiting: Arc::new(AtomicBool::new(waiting)),
            close: Arc::new(Notify::new()),
        };
        let mut open: BTreeMap<u64, Conn> = [
            (1, conn(false)),
            (2, conn(true)),
            (3, conn(true)),
            (4, conn(false)),
        ]
        .into_iter()
        .collect();
        assert!(make_room(&mut open, 5), "below the cap: nothing closed");
        assert_eq!(open.len(), 4);
        assert!(make_room(&mut open, 4));
        assert_eq!(open.keys().copied().collect::<Vec<_>>(), [1, 3, 4]);
        assert!(make_room(&mut open, 3));
        assert_eq!(open.keys().copied().collect::<Vec<_>>(), [1, 4]);
        assert!(
            !make_room(&mut open, 2),
            "every connection is being answered"
        );
        assert_eq!(open.len(), 2);
    }

    /// A source whose text says how many reads were made.
    struct Counting {
        reads: AtomicU64,
        stamp: AtomicU64,
        /// Calls of `stamp`: each request whose head is in makes one or two.
        stamps: AtomicU64,
        delay: Duration,
        size: usize,
    }

    impl Counting {
        fn new(delay: Duration, size: usize) -> Arc<Counting> {
            Arc::new(Counting {
                reads: AtomicU64::new(0),
                stamp: AtomicU64::new(0),
                stamps: AtomicU64::new(0),
                delay,
                size,
            })
        }
    }

    impl Source for Counting {
        fn render(&self) -> Result<String, String> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(self.delay);
            let mut t = format!("# TYPE reads counter\nreads_total {n}\n");
            while t.len() < self.size {
                t.push_str("# padding padding padding padding padding padding padding\n");
            }
            Ok(t)
        }

        fn stamp(&self) -> Stamp {
            self.stamps.fetch_add(1, Ordering::SeqCst);
            [self.stamp.load(Ordering::SeqCst) as i64, 0, 0, 0]
        }
    }

    /// The server on its own thread and runtime, as `start` runs it;
    /// stopped on drop.
    struct Running {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        fn new<S: Source>(source: Arc<S>, limits: Limits) -> Running {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("address");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let l = TcpListener::from_std(listener).expect("listener");
                    tokio::select! {
                        () = serve(l, source, limits) => {}
                        _ = stopped => {}
                    }
                });
            });
            Running {
                addr,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        fn connect(&self) -> TcpStream {
            let s = TcpStream::connect(self.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            s
        }

        /// Send `request` whole and read the answer until the server closes.
        fn ask(&self, request: &[u8]) -> String {
            let mut s = self.connect();
            // A refused connection may be reset before the request is in.
            let _ = s.write_all(request);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        }

        fn get(&self, path: &str) -> String {
            self.ask(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(s) = self.stop.take() {
                let _ = s.send(());
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn status(resp: &str) -> &str {
        resp.lines().next().unwrap_or_default()
    }

    fn body(resp: &str) -> &str {
        resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    fn quick() -> Limits {
        Limits {
            max_connections: 4,
            head_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(3),
            cache_ttl: Duration::from_millis(500),
        }
    }

    #[test]
    fn get_and_head_only_known_paths() {
        let source = Counting::new(Duration::ZERO, 0);
        let srv = Running::new(Arc::clone(&source), Limits::default());
        let r = srv.get("/metrics");
        assert_eq!(status(&r), "HTTP/1.1 200 OK", "{r}");
        assert!(
            r.to_ascii_lowercase().contains(&format!(
                "content-type: {}\r\n",
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            )),
            "{r}"
        );
        assert_eq!(body(&r), "# TYPE reads counter\nreads_total 1\n");
        // HEAD: the same head, no body.
        let h = srv.ask(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(status(&h), "HTTP/1.1 200 OK", "{h}");
        assert!(
            h.to_ascii_lowercase()
                .contains(&format!("content-length: {}\r\n", body(&r).len())),
            "{h}"
        );
        assert_eq!(body(&h), "", "{h}");
        // A query is ignored.
        assert_eq!(status(&srv.get("/metrics?x=1")), "HTTP/1.1 200 OK");
        let root = srv.get("/");
        assert_eq!(status(&root), "HTTP/1.1 200 OK");
        assert_eq!(body(&root), "flowfilter: metrics at /metrics\n");
        for path in ["/nope", "/metrics/", "/metricsx", "//metrics"] {
            let r = srv.get(path);
            assert_eq!(status(&r), "HTTP/1.1 404 Not Found", "{path}: {r}");
        }
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let r = srv.ask(
                format!("{method} /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(
                status(&r),
                "HTTP/1.1 405 Method Not Allowed",
                "{method}: {r}"
            );
            assert!(
                r.to_ascii_lowercase().contains("allow: get, head\r\n"),
                "{r}"
            );
        }
        // One request per connection.
        let r = srv.ask(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 1, "{r}");
    }

    #[test]
    fn over_long_or_broken_heads_are_refused() {
        let srv = Running::new(Counting::new(Duration::ZERO, 0), quick());
        let long_path = format!("/{}", "a".repeat(MAX_HEAD_BYTES));
        let r = srv.get(&long_path);
        assert_eq!(
            status(&r),
            "HTTP/1.1 431 Request Header Fields Too Large",
            "{}",
            &r[..r.len().min(200)]
        );
        let r = srv.ask(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "b".repeat(MAX_HEAD_BYTES)
            )
            .as_bytes(),
        );
        assert_eq!(status(&r), "HTTP/1.1 431 Request Header Fields Too Large");
        let many = (0..100).fold(String::new(), |mut t, i| {
            let _ = write!(t, "X-{i}: v\r\n");
            t
        });
        let r = srv.ask(format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes());
        assert_eq!(status(&r), "HTTP/1.1 431 Request Header Fields Too Large");
        for junk in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /metrics HTTP/9.9\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ] {
            let r = srv.ask(junk);
            assert_eq!(status(&r), "HTTP/1.1 400 Bad Request", "{junk:?}: {r}");
        }
        // Still serving.
        assert_eq!(status(&srv.get("/metrics")), "HTTP/1.1 200 OK");
    }

    #[test]
    fn idle_connections_beyond_the_cap_do_not_block_a_scrape() {
        let limits = Limits {
            head_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(20),
            ..quick()
        };
        let srv = Running::new(Counting::new(Duration::ZERO, 0), limits);
        let mut idle: Vec<TcpStream> = (0..3 * limits.max_connections)
            .map(|_| srv.connect())
            .collect();
        let started = Instant::now();
        let r = srv.get("/metrics");
        assert_eq!(status(&r), "HTTP/1.1 200 OK", "{r}");
        assert!(
            started.elapsed() < limits.head_timeout,
            "answered only after the idle connections timed out ({:?})",
            started.elapsed()
        );
        // The oldest idle ones were closed to make room: they read EOF long
        // before their head timeout.
        let first = &mut idle[0];
        first
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        assert_eq!(first.read(&mut buf).expect("closed, not timed out"), 0);
        // While idle connections hold every slot again, scrapes still answer.
        idle.extend((0..limits.max_connections).map(|_| srv.connect()));
        for _ in 0..3 {
            assert_eq!(status(&srv.get("/metrics")), "HTTP/1.1 200 OK");
        }
    }

    #[test]
    fn a_byte_a_moment_is_cut_at_the_head_timeout() {
        let limits = quick();
        let srv = Running::new(Counting::new(Duration::ZERO, 0), limits);
        let mut s = srv.connect();
        let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let started = Instant::now();
        let mut sent = 0;
        for b in request {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > 3 * limits.head_timeout {
                break;
            }
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let took = started.elapsed();
        assert!(
            sent < request.len(),
            "the whole request ({sent} bytes in {took:?}) went through"
        );
        assert!(
            !String::from_utf8_lossy(&out).contains("200 OK"),
            "answered: {}",
            String::from_utf8_lossy(&out)
        );
        assert!(took >= limits.head_timeout, "cut after {took:?}");
        assert!(took < 3 * limits.head_timeout, "cut only after {took:?}");
    }

    #[test]
    fn a_reader_that_stops_reading_is_cut_at_the_connection_timeout() {
        let limits = quick();
        // Far more than the socket buffers hold.
        let srv = Running::new(Counting::new(Duration::ZERO, 64 << 20), limits);
        let mut s = srv.connect();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("request");
        std::thread::sleep(limits.connection_timeout + Duration::from_secs(1));
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            out.len() < 64 << 20,
            "the whole answer ({} bytes) was written to a reader that stopped",
            out.len()
        );
        // Others are served meanwhile and after.
        assert_eq!(status(&srv.get("/")), "HTTP/1.1 200 OK");
    }

    #[test]
    fn one_read_serves_the_cache_window_and_concurrent_scrapes() {
        // A window wide enough for eight scrapes on a loaded machine.
        let limits = Limits {
            cache_ttl: Duration::from_secs(3),
            max_connections: 16,
            ..quick()
        };
        let source = Counting::new(Duration::from_millis(300), 0);
        let srv = Arc::new(Running::new(Arc::clone(&source), limits));
        // Eight at once: one read, one answer.
        let answers: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| body(&srv.get("/metrics")).to_owned()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("scrape"))
                .collect()
        });
        assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
        assert_eq!(source.reads.load(Ordering::SeqCst), 1);
        assert!(answers[0].contains("reads_total 1\n"), "{}", answers[0]);
        // Inside the window: the same snapshot (the read took 300 ms of it).
        let again = body(&srv.get("/metrics")).to_owned();
        assert_eq!(again, answers[0]);
        assert_eq!(source.reads.load(Ordering::SeqCst), 1);
        // After it: a new read.
        std::thread::sleep(limits.cache_ttl);
        let fresh = body(&srv.get("/metrics")).to_owned();
        assert!(fresh.contains("reads_total 2\n"), "{fresh}");
        // A changed stamp (a reload) is served at once.
        source.stamp.fetch_add(1, Ordering::SeqCst);
        let after_reload = body(&srv.get("/metrics")).to_owned();
        assert!(after_reload.contains("reads_total 3\n"), "{after_reload}");
    }

    #[test]
    fn when_every_slot_is_being_answered_a_new_connection_is_closed() {
        let limits = Limits {
            max_connections: 2,
            cache_ttl: Duration::ZERO,
            // Two reads one after the other fit, on a loaded machine too.
            connection_timeout: Duration::from_secs(20),
            ..quick()
        };
        let source = Counting::new(Duration::from_secs(2), 0);
        let srv = Arc::new(Running::new(Arc::clone(&source), limits));
        std::thread::scope(|s| {
            let busy: Vec<_> = (0..2).map(|_| s.spawn(|| srv.get("/metrics"))).collect();
            // Both heads are in and being answered: the first read's request
            // asked for the stamp twice (before and after the gate), the
            // other once, and waits for the read (2 s).
            let deadline = Instant::now() + Duration::from_secs(10);
            while source.stamps.load(Ordering::SeqCst) < 3 {
                assert!(Instant::now() < deadline, "the two requests did not arrive");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(source.reads.load(Ordering::SeqCst), 1, "one read at a time");
            let refused = srv.get("/");
            assert_eq!(refused, "", "a third connection was answered");
            for b in busy {
                assert_eq!(status(&b.join().expect("scrape")), "HTTP/1.1 200 OK");
            }
        });
        assert_eq!(status(&srv.get("/")), "HTTP/1.1 200 OK");
    }
}
