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
use crate::report::{StatsSnapshot, collect_stats};

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
    /// A gauge family, no samples yet.
    fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            counter: false,
            samples: Vec::new(),
        }
    }

    /// A counter family (exposed with `_total`), no samples yet.
    fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            counter: true,
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

    /// Every family, read now: the counters, the flow table and the
    /// generation (under the filter's lock), then the state file's lists,
    /// policies and reloads, the list files' ages and what the kernel says
    /// of the interfaces.
    fn families(&self) -> Result<Vec<Family>, String> {
        let state = StateFile::read(&self.layout.dir).map_err(|e| e.to_string())?;
        let st = state.as_ref();
        let f = self
            .filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = collect_stats(&f, st).map_err(|e| e.to_string())?;
        let [cat_p, cat_b] = category_families(&stats);
        let [lab_p, lab_b] = label_families(&stats);
        let frames = frames_family(&stats);
        let [flows, cap, evicted] = flow_families(&f, &stats)?;
        let generation = generation_family(&f)?;
        drop(f);
        let [sizes, policy] = list_families(st);
        let [reload_ts, reload_ok, reloads] = reload_families(st);
        let ages = list_age_family(st);
        let ifaces = interface_family(&self.layout, st);
        Ok(vec![
            cat_p, cat_b, lab_p, lab_b, frames, flows, cap, evicted, generation, sizes, ages,
            policy, ifaces, reload_ts, reload_ok, reloads,
        ])
    }
}

/// `category_packets_total` and `category_bytes_total`, per receiving
/// interface, category and verdict.
fn category_families(stats: &StatsSnapshot) -> [Family; 2] {
    let mut cat_p = Family::counter(
        "flowfilter_category_packets",
        "UDP packets per receiving interface, category and verdict (monitored: would have been dropped)",
    );
    let mut cat_b = Family::counter(
        "flowfilter_category_bytes",
        "Bytes per receiving interface, category and verdict",
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
    [cat_p, cat_b]
}

/// `label_packets_total{label,verdict}` and `label_bytes_total{label}`.
fn label_families(stats: &StatsSnapshot) -> [Family; 2] {
    let mut lab_p = Family::counter(
        "flowfilter_label_packets",
        "Packets per traffic label and verdict",
    );
    let mut lab_b = Family::counter("flowfilter_label_bytes", "Bytes per traffic label");
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
    [lab_p, lab_b]
}

/// `frames_total{counter}`: the program's global counters.
fn frames_family(stats: &StatsSnapshot) -> Family {
    let mut frames = Family::counter("flowfilter_frames", "Global counters of the XDP program");
    for (n, v) in &stats.global {
        frames.add(vec![("counter", (*n).to_owned())], *v);
    }
    frames
}

/// `flows`, `flow_capacity` and `flows_evicted`: the flow table's
/// occupancy (read from `f`) and the program's count of evictions.
fn flow_families(f: &Filter, stats: &StatsSnapshot) -> Result<[Family; 3], String> {
    let (tracked, capacity) = f.flow_occupancy().map_err(|e| e.to_string())?;
    let mut flows = Family::gauge("flowfilter_flows", "Tracked flows");
    flows.add(Vec::new(), tracked);
    let mut cap = Family::gauge("flowfilter_flow_capacity", "Flow table capacity");
    cap.add(Vec::new(), u64::from(capacity));
    let evicted_n = stats
        .global
        .iter()
        .find(|(n, _)| *n == "flows_evicted")
        .map_or(0, |(_, v)| *v);
    let mut evicted = Family::gauge(
        "flowfilter_flows_evicted",
        "Live flows with a category whose flow-table slot a new flow took (since the maps were created)",
    );
    evicted.add(Vec::new(), evicted_n);
    Ok([flows, cap, evicted])
}

/// `generation`: the active table generation.
fn generation_family(f: &Filter) -> Result<Family, String> {
    let mut generation = Family::gauge("flowfilter_generation", "Active table generation");
    generation.add(
        Vec::new(),
        u64::from(f.state().map_err(|e| e.to_string())?.generation & 1),
    );
    Ok(generation)
}

/// `list_prefixes{category,family}` (the allowlist included) and
/// `policy_info{category,policy,source}`, from the state file.
fn list_families(st: Option<&StateFile>) -> [Family; 2] {
    let mut sizes = Family::gauge(
        "flowfilter_list_prefixes",
        "Prefixes per list and address family",
    );
    let mut policy = Family::gauge("flowfilter_policy_info", "Policy in force per category");
    if let Some(s) = st {
        let lists = s
            .categories
            .iter()
            .map(|c| (c.name.as_str(), c.v4_prefixes, c.v6_prefixes))
            .chain([("allow", s.allow.0, s.allow.1)]);
        for (name, v4, v6) in lists {
            for (fam, n) in [("ipv4", v4), ("ipv6", v6)] {
                sizes.add(
                    vec![("category", name.to_owned()), ("family", fam.to_owned())],
                    n as u64,
                );
            }
        }
        for c in &s.categories {
            policy.add(
                vec![
                    ("category", c.name.clone()),
                    ("policy", c.policy.to_string()),
                    ("source", c.policy_source.to_string()),
                ],
                1u64,
            );
        }
    }
    [sizes, policy]
}

/// `last_reload_timestamp_seconds`, `last_reload_success` and
/// `reloads_total{result}`, from the state file.
fn reload_families(st: Option<&StateFile>) -> [Family; 3] {
    let mut reload_ts = Family::gauge(
        "flowfilter_last_reload_timestamp_seconds",
        "Time of the last reload or install attempt",
    );
    let mut reload_ok = Family::gauge(
        "flowfilter_last_reload_success",
        "1 if the last reload was installed, 0 if it was rejected",
    );
    let mut reloads = Family::counter("flowfilter_reloads", "Reload attempts by result");
    if let Some(s) = st {
        if let Some(r) = &s.last_reload {
            reload_ts.add(Vec::new(), r.time);
            reload_ok.add(Vec::new(), u64::from(r.ok));
        }
        reloads.add(vec![("result", "ok".to_owned())], s.reloads_ok);
        reloads.add(vec![("result", "error".to_owned())], s.reloads_failed);
    }
    [reload_ts, reload_ok, reloads]
}

/// `list_age_seconds{category}`: how long ago each list file in the state
/// file's lists directory was written (see [`list_written`]).
fn list_age_family(st: Option<&StateFile>) -> Family {
    let mut ages = Family::gauge(
        "flowfilter_list_age_seconds",
        "Seconds since each list file was written (its `flowfilter list update` header, else its modification time)",
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
    ages
}

/// `interface_attached{interface,mode}`: what the kernel says, not what
/// the pins say: 0 for an interface whose link died with it, or that is
/// waited for.
fn interface_family(layout: &PinLayout, st: Option<&StateFile>) -> Family {
    let mut ifaces = Family::gauge(
        "flowfilter_interface_attached",
        "1 when the kernel runs the filter on the interface, 0 when it is configured or pinned but not attached",
    );
    for i in crate::daemon::ifwatch::interface_health(layout, st) {
        ifaces.add(
            vec![("interface", i.name), ("mode", i.mode.to_string())],
            u64::from(i.health.attached()),
        );
    }
    ifaces
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
mod tests;
