//! `--metrics ADDR`: Prometheus text (format 0.0.4) at `GET /metrics`,
//! encoded with `prometheus-client`. Values are read from the pinned maps at
//! each scrape (no cache, no background polling); names and list sizes come
//! from the state file.
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
//! - `policy_info{category,policy,source}`: 1 per category.
//! - `generation`: the active table generation.
//! - `interface_attached{interface,mode}`: 1 per pinned link.
//! - `last_reload_timestamp_seconds`, `last_reload_success` (1 or 0),
//!   `reloads_total{result}` (`ok`, `error`).
//!
//! The HTTP side is a minimal HTTP/1.1 responder on tokio: one request per
//! connection, `Connection: close`, 404 for other paths, 405 for other
//! methods, requests larger than 8 KiB or slower than 5 s are dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::loader::Filter;
use crate::pins::PinLayout;
use crate::report::collect_stats;
use crate::state::StateFile;

/// Longest request read.
const MAX_REQUEST: usize = 8192;
/// Time allowed for a client to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the pins at each scrape.
pub struct PinCollector {
    filter: Mutex<Filter>,
    layout: PinLayout,
}

impl std::fmt::Debug for PinCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinCollector")
            .field("pin_dir", &self.layout.dir)
            .finish_non_exhaustive()
    }
}

type Labels = Vec<(&'static str, String)>;

/// A sample: counters are exact integers, gauges floats.
#[derive(Clone, Copy)]
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

impl PinCollector {
    /// A collector reading `filter` (a view of the pins in `layout`).
    pub fn new(filter: Filter, layout: PinLayout) -> PinCollector {
        PinCollector {
            filter: Mutex::new(filter),
            layout,
        }
    }

    fn families(&self) -> Result<Vec<Family>, String> {
        let state = StateFile::read(&self.layout.dir).map_err(|e| e.to_string())?;
        let st = state.as_ref();
        let f = self.filter.lock().map_err(|_| "poisoned".to_owned())?;
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
            "Interfaces with a pinned XDP link",
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
        for name in self.layout.pinned_links().map_err(|e| e.to_string())? {
            let mode = st
                .and_then(|s| s.interfaces.iter().find(|i| i.name == name))
                .map_or_else(|| "unknown".to_owned(), |i| i.mode.clone());
            ifaces.add(vec![("interface", name), ("mode", mode)], 1u64);
        }
        Ok(vec![
            cat_p, cat_b, lab_p, lab_b, frames, flows, cap, evicted, generation, sizes, policy,
            ifaces, reload_ts, reload_ok, reloads,
        ])
    }
}

impl Collector for PinCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match self.families() {
            Ok(fams) => {
                for f in &fams {
                    f.encode(&mut encoder)?;
                }
                Ok(())
            }
            Err(e) => {
                log::warn!("metrics: reading the pins: {e}");
                Err(std::fmt::Error)
            }
        }
    }
}

/// The registry with the pin collector.
pub fn registry(collector: PinCollector) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(collector));
    r
}

/// Encode the registry as Prometheus text.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

/// The response to one request (`status line`, content type, body).
fn respond(request: &str, registry: &Registry) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = request.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => match render(registry) {
            Ok(body) => (
                "200 OK",
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                body,
            ),
            Err(_) => (
                "500 Internal Server Error",
                TEXT,
                "reading the pinned maps failed; see the daemon's log\n".to_owned(),
            ),
        },
        ("GET" | "HEAD", "/") => (
            "200 OK",
            TEXT,
            "flowfilter: metrics at /metrics\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", TEXT, "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            TEXT,
            "only GET is served\n".to_owned(),
        ),
    }
}

async fn handle(mut stream: TcpStream, registry: Arc<Registry>) {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    if !matches!(tokio::time::timeout(READ_TIMEOUT, read).await, Ok(true)) {
        return;
    }
    let request = String::from_utf8_lossy(&buf).into_owned();
    let (status, ctype, body) = respond(&request, &registry);
    let head_only = request.starts_with("HEAD ");
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serve `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Registry) {
    let registry = Arc::new(registry);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, Arc::clone(&registry)));
            }
            Err(e) => {
                log::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Bind the metrics address (before anything else starts, so a bad address
/// fails the start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_as_prometheus_text() {
        #[derive(Debug)]
        struct Fixed;
        impl Collector for Fixed {
            fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                let mut f = Family::new("flowfilter_category_packets", "help", true);
                f.add(
                    vec![
                        ("category", "whatsapp".into()),
                        ("verdict", "dropped".into()),
                    ],
                    20u64,
                );
                f.encode(&mut e)?;
                let mut g = Family::new("flowfilter_flows", "Tracked flows", false);
                g.add(Vec::new(), 3u64);
                g.encode(&mut e)?;
                Family::new("flowfilter_empty", "none", false).encode(&mut e)
            }
        }
        let mut r = Registry::default();
        r.register_collector(Box::new(Fixed));
        let text = render(&r).unwrap();
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
        assert!(!text.contains("flowfilter_empty"), "{text}");
        let (status, ctype, body) = respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
        assert_eq!(status, "200 OK");
        assert!(ctype.contains("version=0.0.4"));
        assert_eq!(body, text);
        assert_eq!(respond("GET /nope HTTP/1.1\r\n\r\n", &r).0, "404 Not Found");
        assert_eq!(
            respond("POST /metrics HTTP/1.1\r\n\r\n", &r).0,
            "405 Method Not Allowed"
        );
    }
}
