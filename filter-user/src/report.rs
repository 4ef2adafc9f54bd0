//! What `status`, `stats` and `flows` read from the pins, and how they show
//! it: aligned tables for people, JSON for programs.
//!
//! JSON schemas (stable; fields are only ever added):
//!
//! `flowfilter stats --json` (with `--watch`, one such object per line, with
//! `interval_secs` and per-second `rates`):
//! ```text
//! { "time": UNIX_SECS,
//!   "categories": [ { "id": 1, "name": "whatsapp" | null,
//!       "seen": {"packets": N, "bytes": N}, "dropped": {...},
//!       "monitored": {...}, "passed": {...} } ],
//!   "labels": [ { "id": 1, "name": "stun", "packets": N, "bytes": N,
//!       "dropped": N, "monitored": N } ],
//!   "interfaces": [ { "name": IF | "other", "ifindex": N | null,
//!       "categories": [ { "id": 1, "name": ..., "seen": {...}, "dropped": {...},
//!           "monitored": {...}, "passed": {...} } ] } ],
//!   "global": { "packets": N, "bytes": N, "udp": N, ... } }
//! ```
//! `interfaces` splits the category counters by receiving interface: each
//! attached interface has a counter slot of its own (up to 15); `other`
//! counts packets on any interface without one (test runs, replay, an
//! interface beyond the slots). It lists categories with traffic only.
//! `flowfilter status --json`:
//! ```text
//! { "pin_dir": PATH, "state_file": PATH | null,
//!   "filtering": "in_force"|"unmanaged"|"degraded"|"none",
//!   "daemon": { "running": BOOL, "pid": N | null },
//!   "program": { "id": N, "tag": HEX, "name": STR } | null,
//!   "interfaces": [ { "name": IF, "mode": "driver"|"skb"|"unknown"|"none",
//!       "link_id": N | null, "program_id": N | null, "netns": STR | null,
//!       "attached": BOOL, "state": "attached"|"missing"|"not attached"|
//!           "defunct"|"elsewhere"|"not running"|"unknown",
//!       "ifindex": N | null, "problem": STR | null } ],
//!   "generation": N, "lists_dir": PATH | null,
//!   "categories": [ { "id": N, "name": STR, "policy": SPEC,
//!       "policy_source": "default"|"config"|"flag"|"cli",
//!       "ipv4_prefixes": N, "ipv6_prefixes": N } ],
//!   "allow": { "ipv4_prefixes": N, "ipv6_prefixes": N },
//!   "flows": { "tracked": N, "capacity": N },
//!   "last_reload": { "time": UNIX_SECS, "ok": BOOL, "error": STR | null,
//!       "by": STR, "generation": N } | null }
//! ```
//! `filtering` is what `status` exits with ([`Filtering`]); an
//! interface is `attached` only when the kernel runs the pinned link's
//! program on the interface that has the name now ([`crate::ifwatch`]):
//! the pins alone do not say. (Pins and state file of a filter that is not
//! there at all give `{"pin_dir", "state_file", "filtering": "none"}`.)
//! `flowfilter flows --json`: an array of
//! ```text
//! { "proto": "udp", "src": ADDR:PORT, "dst": ADDR:PORT, "category": STR | null,
//!   "category_id": N, "label": STR | null, "age_secs": F, "idle_secs": F,
//!   "packets": N, "bytes": N, "dropped": N, "call": BOOL, "listed": BOOL,
//!   "fate": "undecided" | "spared" | "stopped", "fragmented": BOOL,
//!   "tcp_fallback": BOOL }
//! ```
//! (`src` sent the flow's first packet.)

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use filter_common::classify::label_name;
use filter_common::{
    CAT_NONE, CatStats, FATE_SPARED, FATE_STOPPED, FLOW_CALL, FLOW_FIRST_FROM_B, FLOW_LISTED,
    FlowKey, FlowSlot, GLOBAL_NAMES, IF_SLOTS, LABEL_SLOTS, LabelStats,
};
use serde_json::{Value, json};

use crate::loader::{Filter, LoadError};
use crate::pins::{PinLayout, tag_hex};
use crate::state::{StateFile, format_utc, state_path};

/// One category's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryRow {
    /// Category id.
    pub id: u8,
    /// Its name, when the state file knows it.
    pub name: Option<String>,
    /// Counters.
    pub stats: CatStats,
}

/// One label's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRow {
    /// Label id.
    pub id: u8,
    /// Its name.
    pub name: &'static str,
    /// Counters.
    pub stats: LabelStats,
}

/// One interface's category counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Interface name; `other` for slot 0 (interfaces without a slot).
    pub name: String,
    /// Its index, when known.
    pub ifindex: Option<u32>,
    /// Categories with traffic on it, by id.
    pub categories: Vec<CategoryRow>,
}

/// Name of the counter slot shared by interfaces without one of their own.
pub const OTHER_INTERFACE: &str = "other";

/// Counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Unix seconds.
    pub time: u64,
    /// Monotonic nanoseconds (for rates).
    pub mono_ns: u64,
    /// Named categories and any id with traffic, by id.
    pub categories: Vec<CategoryRow>,
    /// Every named label.
    pub labels: Vec<LabelRow>,
    /// Category counters per receiving interface.
    pub interfaces: Vec<InterfaceStats>,
    /// Global counters by name.
    pub global: Vec<(&'static str, u64)>,
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    // SAFETY: zeroed timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Read the counters.
pub fn collect_stats(f: &Filter, state: Option<&StateFile>) -> Result<StatsSnapshot, LoadError> {
    let mut cats = vec![CatStats::default(); filter_common::CATEGORY_SLOTS as usize];
    let mut interfaces = Vec::new();
    let name_of = |id: u8| state.and_then(|st| st.name_of(id)).map(str::to_owned);
    // One read of each counter map serves every slot, the labels and the totals.
    let snap = f.counter_snapshot()?;
    for slot in 0..IF_SLOTS {
        let per = snap.slot_stats(slot);
        for (t, s) in cats.iter_mut().zip(&per) {
            *t = crate::loader::sum_cat(t, s);
        }
        let iface = state.and_then(|st| st.interfaces.iter().find(|i| i.slot == Some(slot)));
        let rows: Vec<CategoryRow> = per
            .iter()
            .enumerate()
            .filter(|(id, s)| *id != usize::from(CAT_NONE) && **s != CatStats::default())
            .map(|(id, s)| CategoryRow {
                id: id as u8,
                name: name_of(id as u8),
                stats: *s,
            })
            .collect();
        if iface.is_some() || !rows.is_empty() {
            interfaces.push(InterfaceStats {
                name: match (slot, iface) {
                    (0, _) => OTHER_INTERFACE.to_owned(),
                    (_, Some(i)) => i.name.clone(),
                    (s, None) => format!("slot{s}"),
                },
                ifindex: iface.and_then(|i| i.ifindex),
                categories: rows,
            });
        }
    }
    let global = snap.global();
    let labels = snap.labels;
    let mut categories = Vec::new();
    for (id, s) in cats.iter().enumerate() {
        let id = id as u8;
        let name = state.and_then(|st| st.name_of(id)).map(str::to_owned);
        let named = state.is_some_and(|st| st.categories.iter().any(|c| c.id == id));
        if id != CAT_NONE && (named || *s != CatStats::default()) {
            categories.push(CategoryRow {
                id,
                name,
                stats: *s,
            });
        }
    }
    let labels = (0..LABEL_SLOTS as u8)
        .filter_map(|id| {
            label_name(id).map(|name| LabelRow {
                id,
                name,
                stats: labels.get(usize::from(id)).copied().unwrap_or_default(),
            })
        })
        .collect();
    let global = GLOBAL_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, global.get(i).copied().unwrap_or(0)))
        .collect();
    Ok(StatsSnapshot {
        time: crate::state::unix_now(),
        mono_ns: monotonic_ns(),
        categories,
        labels,
        interfaces,
        global,
    })
}

fn pb(packets: u64, bytes: u64) -> Value {
    json!({"packets": packets, "bytes": bytes})
}

/// A category's counters in `stats --json`.
fn category_json(c: &CategoryRow) -> Value {
    let s = &c.stats;
    json!({
        "id": c.id,
        "name": c.name,
        "seen": pb(s.seen_packets, s.seen_bytes),
        "dropped": pb(s.dropped_packets, s.dropped_bytes),
        "monitored": pb(s.monitored_packets, s.monitored_bytes),
        "passed": pb(s.passed_packets, s.passed_bytes),
    })
}

/// Per-second rate of `now - before` over `secs`.
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        now.saturating_sub(before) as f64 / secs
    }
}

impl StatsSnapshot {
    fn previous_category(&self, id: u8) -> CatStats {
        self.categories
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.stats)
            .unwrap_or_default()
    }

    fn previous_label(&self, id: u8) -> LabelStats {
        self.labels
            .iter()
            .find(|l| l.id == id)
            .map(|l| l.stats)
            .unwrap_or_default()
    }

    fn secs_since(&self, before: &StatsSnapshot) -> f64 {
        self.mono_ns.saturating_sub(before.mono_ns) as f64 / 1e9
    }

    /// The `--json` object; with `before`, also the rates since then.
    pub fn to_json(&self, before: Option<&StatsSnapshot>) -> Value {
        let categories: Vec<Value> = self
            .categories
            .iter()
            .map(|c| {
                let s = &c.stats;
                let mut v = category_json(c);
                if let Some(b) = before {
                    let secs = self.secs_since(b);
                    let p = b.previous_category(c.id);
                    v["rates"] = json!({
                        "seen_pps": rate(s.seen_packets, p.seen_packets, secs),
                        "seen_bps": rate(s.seen_bytes, p.seen_bytes, secs) * 8.0,
                        "dropped_pps": rate(s.dropped_packets, p.dropped_packets, secs),
                        "passed_pps": rate(s.passed_packets, p.passed_packets, secs),
                    });
                }
                v
            })
            .collect();
        let labels: Vec<Value> = self
            .labels
            .iter()
            .map(|l| {
                let s = &l.stats;
                let mut v = json!({
                    "id": l.id, "name": l.name, "packets": s.packets, "bytes": s.bytes,
                    "dropped": s.dropped, "monitored": s.monitored,
                });
                if let Some(b) = before {
                    let secs = self.secs_since(b);
                    let p = b.previous_label(l.id);
                    v["rates"] = json!({
                        "pps": rate(s.packets, p.packets, secs),
                        "bps": rate(s.bytes, p.bytes, secs) * 8.0,
                    });
                }
                v
            })
            .collect();
        let global: serde_json::Map<String, Value> = self
            .global
            .iter()
            .map(|(n, v)| ((*n).to_owned(), json!(v)))
            .collect();
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let cats: Vec<Value> = i.categories.iter().map(category_json).collect();
                json!({"name": i.name, "ifindex": i.ifindex, "categories": cats})
            })
            .collect();
        let mut out = json!({
            "time": self.time,
            "categories": categories,
            "labels": labels,
            "interfaces": interfaces,
            "global": global,
        });
        if let Some(b) = before {
            out["interval_secs"] = json!(self.secs_since(b));
        }
        out
    }

    /// The human table; with `before`, rate columns too.
    pub fn to_table(&self, before: Option<&StatsSnapshot>) -> String {
        let secs = before.map(|b| self.secs_since(b));
        let mut header = vec![
            "CATEGORY",
            "SEEN",
            "BYTES",
            "DROPPED",
            "DROP BYTES",
            "MONITORED",
            "PASSED",
        ];
        if secs.is_some() {
            header.extend(["SEEN/S", "DROP/S", "PASS/S"]);
        }
        let rows: Vec<Vec<String>> = self
            .categories
            .iter()
            .map(|c| {
                let s = &c.stats;
                let mut r = vec![
                    c.name.clone().unwrap_or_else(|| format!("#{}", c.id)),
                    s.seen_packets.to_string(),
                    human_bytes(s.seen_bytes),
                    s.dropped_packets.to_string(),
                    human_bytes(s.dropped_bytes),
                    s.monitored_packets.to_string(),
                    s.passed_packets.to_string(),
                ];
                if let (Some(b), Some(secs)) = (before, secs) {
                    let p = b.previous_category(c.id);
                    r.extend([
                        format!("{:.1}", rate(s.seen_packets, p.seen_packets, secs)),
                        format!("{:.1}", rate(s.dropped_packets, p.dropped_packets, secs)),
                        format!("{:.1}", rate(s.passed_packets, p.passed_packets, secs)),
                    ]);
                }
                r
            })
            .collect();
        let mut out = table(&header, &rows, 1);
        out.push('\n');
        let mut header = vec!["LABEL", "PACKETS", "BYTES", "DROPPED", "MONITORED"];
        if secs.is_some() {
            header.push("PKT/S");
        }
        let rows: Vec<Vec<String>> = self
            .labels
            .iter()
            .map(|l| {
                let s = &l.stats;
                let mut r = vec![
                    l.name.to_owned(),
                    s.packets.to_string(),
                    human_bytes(s.bytes),
                    s.dropped.to_string(),
                    s.monitored.to_string(),
                ];
                if let (Some(b), Some(secs)) = (before, secs) {
                    r.push(format!(
                        "{:.1}",
                        rate(s.packets, b.previous_label(l.id).packets, secs)
                    ));
                }
                r
            })
            .collect();
        out.push_str(&table(&header, &rows, 1));
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .interfaces
            .iter()
            .flat_map(|i| {
                i.categories.iter().map(|c| {
                    let s = &c.stats;
                    vec![
                        i.name.clone(),
                        c.name.clone().unwrap_or_else(|| format!("#{}", c.id)),
                        s.seen_packets.to_string(),
                        human_bytes(s.seen_bytes),
                        s.dropped_packets.to_string(),
                        s.monitored_packets.to_string(),
                        s.passed_packets.to_string(),
                    ]
                })
            })
            .collect();
        if !rows.is_empty() {
            let header = [
                "INTERFACE",
                "CATEGORY",
                "SEEN",
                "BYTES",
                "DROPPED",
                "MONITORED",
                "PASSED",
            ];
            out.push_str(&table(&header, &rows, 2));
            out.push('\n');
        }
        let g: Vec<String> = self
            .global
            .iter()
            .map(|(n, v)| {
                if *n == "bytes" {
                    format!("{n} {}", human_bytes(*v))
                } else {
                    format!("{n} {v}")
                }
            })
            .collect();
        let _ = writeln!(out, "all frames: {}", g.join(", "));
        out
    }
}

/// `1.5 MB` style (powers of 1000), exact below 10 kB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 10_000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// An aligned table: the first `left` columns left-aligned, the rest right.
pub fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            let width = w.get(i).copied().unwrap_or(0);
            if i < left {
                let _ = write!(s, "{c:<width$}  ");
            } else {
                let _ = write!(s, "{c:>width$}  ");
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// One tracked flow, for `flows`.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRow {
    /// IP protocol.
    pub proto: u8,
    /// The endpoint that sent first.
    pub src: SocketAddr,
    /// The other endpoint.
    pub dst: SocketAddr,
    /// Category id.
    pub category_id: u8,
    /// Category name.
    pub category: Option<String>,
    /// Label name.
    pub label: Option<&'static str>,
    /// Seconds since the first packet.
    pub age_secs: f64,
    /// Seconds since the latest packet.
    pub idle_secs: f64,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes, both directions.
    pub bytes: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Recognised as a call.
    pub call: bool,
    /// Its category came from a list range.
    pub listed: bool,
    /// `flows=P%` fate.
    pub fate: &'static str,
    /// Datagrams of the flow came in fragments.
    pub fragmented: bool,
    /// A call that fell back to TCP.
    pub tcp_fallback: bool,
}

fn endpoint(addr: &[u8; 16], port: u16) -> SocketAddr {
    let v6 = Ipv6Addr::from(*addr);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    SocketAddr::new(ip, port)
}

/// Seconds of `ticks` of the flow table's clock (2^30 ns each).
fn tick_secs(ticks: u32) -> f64 {
    f64::from(ticks) * f64::from(1u32 << filter_common::TICK_SHIFT) / 1e9
}

/// A flow table entry as a row; `now_ns` is [`monotonic_ns`].
pub fn flow_row(k: &FlowKey, v: &FlowSlot, now_ns: u64, state: Option<&StateFile>) -> FlowRow {
    let now = filter_common::flow::tick(now_ns);
    let a = endpoint(&k.addr_a, k.port_a);
    let b = endpoint(&k.addr_b, k.port_b);
    let (src, dst) = if v.flags & FLOW_FIRST_FROM_B != 0 {
        (b, a)
    } else {
        (a, b)
    };
    FlowRow {
        proto: k.proto,
        src,
        dst,
        category_id: v.category,
        category: state.and_then(|s| s.name_of(v.category)).map(str::to_owned),
        label: label_name(v.label),
        age_secs: tick_secs(now.wrapping_sub(v.first_seen)),
        idle_secs: tick_secs(now.wrapping_sub(v.last_seen)),
        packets: u64::from(v.packets),
        bytes: v.bytes,
        dropped: u64::from(v.dropped),
        call: v.flags & FLOW_CALL != 0,
        listed: v.flags & FLOW_LISTED != 0,
        fragmented: v.flags2 & filter_common::FLOW2_FRAGMENTED != 0,
        tcp_fallback: v.flags2 & filter_common::FLOW2_TCP_FALLBACK != 0,
        fate: match v.fate {
            FATE_SPARED => "spared",
            FATE_STOPPED => "stopped",
            _ => "undecided",
        },
    }
}

fn proto_name(p: u8) -> String {
    match p {
        17 => "udp".into(),
        6 => "tcp".into(),
        n => n.to_string(),
    }
}

impl FlowRow {
    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        json!({
            "proto": proto_name(self.proto),
            "src": self.src.to_string(),
            "dst": self.dst.to_string(),
            "category": self.category,
            "category_id": self.category_id,
            "label": self.label,
            "age_secs": self.age_secs,
            "idle_secs": self.idle_secs,
            "packets": self.packets,
            "bytes": self.bytes,
            "dropped": self.dropped,
            "call": self.call,
            "listed": self.listed,
            "fate": self.fate,
            "fragmented": self.fragmented,
            "tcp_fallback": self.tcp_fallback,
        })
    }
}

/// The flows table, busiest first.
pub fn flows_table(rows: &[FlowRow]) -> String {
    let header = [
        "PROTO", "SRC", "DST", "CATEGORY", "LABEL", "AGE", "IDLE", "PACKETS", "BYTES", "DROPPED",
        "CALL",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                proto_name(r.proto),
                r.src.to_string(),
                r.dst.to_string(),
                r.category
                    .clone()
                    .unwrap_or_else(|| format!("#{}", r.category_id)),
                r.label.unwrap_or("-").to_owned(),
                format!("{:.0}s", r.age_secs),
                format!("{:.0}s", r.idle_secs),
                r.packets.to_string(),
                human_bytes(r.bytes),
                r.dropped.to_string(),
                match (r.call, r.fragmented) {
                    (true, true) => "yes, fragmented",
                    (true, false) => "yes",
                    (false, true) => "no, fragmented",
                    (false, false) => "no",
                }
                .to_owned(),
            ]
        })
        .collect();
    let mut out = table(&header, &cells, 5);
    let _ = writeln!(out, "{} flows", rows.len());
    out
}

/// One interface, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceRow {
    /// Interface name.
    pub name: String,
    /// `driver`, `skb`, `unknown`, or `none` (not attached).
    pub mode: String,
    /// The pinned link's id.
    pub link_id: Option<u32>,
    /// The program it runs.
    pub program_id: Option<u32>,
    /// Network namespace, if not the daemon's.
    pub netns: Option<String>,
    /// Whether the kernel runs the link's program on the interface.
    pub attached: bool,
    /// [`crate::ifwatch::Health::label`].
    pub state: &'static str,
    /// The index of the interface of that name now.
    pub ifindex: Option<u32>,
    /// What is wrong, when not attached.
    pub problem: Option<String>,
}

/// Whether filtering is in force as configured: what `status` says first,
/// and its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// Every interface attached, the daemon running (exit 0).
    InForce,
    /// Every interface attached, but no daemon runs: nothing reloads,
    /// re-attaches or rotates (exit 3).
    Unmanaged,
    /// Something is pinned, but an interface is not attached (or none is,
    /// or the program is not pinned) (exit 4).
    Degraded,
    /// Nothing is pinned: no filter (exit 5).
    None,
}

impl Filtering {
    /// The exit code of `flowfilter status`.
    pub fn exit_code(self) -> u8 {
        match self {
            Filtering::InForce => 0,
            Filtering::Unmanaged => 3,
            Filtering::Degraded => 4,
            Filtering::None => 5,
        }
    }

    /// The `--json` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::InForce => "in_force",
            Filtering::Unmanaged => "unmanaged",
            Filtering::Degraded => "degraded",
            Filtering::None => "none",
        }
    }
}

/// Everything `status` shows.
#[derive(Clone, Debug)]
pub struct Status {
    /// The pin directory.
    pub pin_dir: String,
    /// The state file, if present.
    pub state_file: Option<String>,
    /// The daemon's pid, when it runs.
    pub daemon_pid: Option<u32>,
    /// (id, tag, name) of the pinned program.
    pub program: Option<(u32, u64, String)>,
    /// Interfaces with a pinned link or named in the state file.
    pub interfaces: Vec<InterfaceRow>,
    /// Active generation.
    pub generation: u32,
    /// Tracked flows and capacity.
    pub flows: (u64, u32),
    /// The state file's content.
    pub state: Option<StateFile>,
    /// Who the subscribers are for `flows=P%`.
    pub subscribers: crate::subscribers::SubscriberStatus,
}

/// Read the status of the pins in `layout`, asking the kernel whether each
/// interface is attached.
pub fn collect_status(
    f: &Filter,
    layout: &PinLayout,
    state: Option<StateFile>,
) -> Result<Status, crate::control::Error> {
    let program = if f.has_program() {
        let i = f.program_info()?;
        Some((
            i.id(),
            i.tag(),
            i.name_as_str().unwrap_or_default().to_owned(),
        ))
    } else {
        None
    };
    let interfaces = crate::ifwatch::interface_health(layout, state.as_ref())
        .into_iter()
        .map(|i| {
            let link = i.health.link();
            InterfaceRow {
                mode: match &i.health {
                    crate::ifwatch::Health::Attached { mode, .. }
                        if i.mode == "unknown" || i.mode == crate::ifwatch::NOT_ATTACHED =>
                    {
                        (*mode).to_owned()
                    }
                    _ => i.mode.clone(),
                },
                link_id: link.map(|l| l.id),
                program_id: link.map(|l| l.program_id),
                netns: i.netns.clone(),
                attached: i.health.attached(),
                state: i.health.label(),
                ifindex: i.health.ifindex(),
                problem: (!i.health.attached()).then(|| {
                    let d = i.health.describe(&i.name);
                    d.strip_prefix(&format!("{}: ", i.name))
                        .map_or_else(|| d.clone(), str::to_owned)
                }),
                name: i.name,
            }
        })
        .collect();
    let path = state_path(&layout.dir);
    Ok(Status {
        pin_dir: layout.dir.display().to_string(),
        state_file: state.as_ref().map(|_| path.display().to_string()),
        daemon_pid: state.as_ref().and_then(StateFile::live_daemon),
        program,
        interfaces,
        generation: f.state()?.generation & 1,
        flows: f.flow_occupancy()?,
        subscribers: crate::subscribers::status(f, state.as_ref())?,
        state,
    })
}

/// `status` when nothing is pinned: (text, JSON).
pub fn nothing_pinned(layout: &PinLayout) -> (String, Value) {
    let path = state_path(&layout.dir);
    let stale = path.exists().then(|| path.display().to_string());
    let mut text = format!(
        "pin dir      {}\nfiltering    none: nothing is pinned\n",
        layout.dir.display()
    );
    if let Some(p) = &stale {
        let _ = writeln!(
            text,
            "state file   {p} is left from an earlier run (the next `flowfilter run` replaces it)"
        );
    }
    let json = json!({
        "pin_dir": layout.dir.display().to_string(),
        "state_file": stale,
        "filtering": Filtering::None.as_str(),
    });
    (text, json)
}

impl Status {
    /// Whether filtering is in force as configured.
    pub fn filtering(&self) -> Filtering {
        let attached = self.interfaces.iter().filter(|i| i.attached).count();
        if self.program.is_none() && self.interfaces.iter().all(|i| i.link_id.is_none()) {
            // Maps only (a start that failed midway): nothing filters.
            return Filtering::None;
        }
        if self.program.is_none() || attached == 0 || attached < self.interfaces.len() {
            return Filtering::Degraded;
        }
        if self.daemon_pid.is_none() {
            return Filtering::Unmanaged;
        }
        Filtering::InForce
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let st = self.state.as_ref();
        json!({
            "pin_dir": self.pin_dir,
            "state_file": self.state_file,
            "filtering": self.filtering().as_str(),
            "daemon": {"running": self.daemon_pid.is_some(), "pid": self.daemon_pid},
            "program": self.program.as_ref().map(|(id, tag, name)| json!({
                "id": id, "tag": tag_hex(*tag), "name": name})),
            "interfaces": self.interfaces.iter().map(|i| json!({
                "name": i.name, "mode": i.mode, "link_id": i.link_id,
                "program_id": i.program_id, "netns": i.netns, "attached": i.attached,
                "state": i.state, "ifindex": i.ifindex, "problem": i.problem})).collect::<Vec<_>>(),
            "generation": self.generation,
            "lists_dir": st.map(|s| s.lists_dir.display().to_string()),
            "categories": st.map(|s| s.categories.iter().map(|c| json!({
                "id": c.id, "name": c.name, "policy": c.policy, "policy_source": c.policy_source,
                "ipv4_prefixes": c.v4_prefixes, "ipv6_prefixes": c.v6_prefixes})).collect::<Vec<_>>())
                .unwrap_or_default(),
            "allow": {"ipv4_prefixes": st.map_or(0, |s| s.allow.0),
                      "ipv6_prefixes": st.map_or(0, |s| s.allow.1)},
            "flows": {"tracked": self.flows.0, "capacity": self.flows.1},
            "subscribers": self.subscribers.to_json(),
            "last_reload": st.and_then(|s| s.last_reload.as_ref()).map(|r| json!({
                "time": r.time, "ok": r.ok, "error": r.error, "by": r.by, "generation": r.generation})),
        })
    }

    /// The human text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let st = self.state.as_ref();
        let _ = writeln!(out, "pin dir      {}", self.pin_dir);
        let attached = self.interfaces.iter().filter(|i| i.attached).count();
        let _ = match self.filtering() {
            Filtering::InForce => writeln!(out, "filtering    in force on {attached} interface(s)"),
            Filtering::Unmanaged => writeln!(
                out,
                "filtering    in force on {attached} interface(s), but no daemon manages it"
            ),
            Filtering::Degraded if self.interfaces.is_empty() => {
                writeln!(out, "filtering    DEGRADED: no interface attached")
            }
            Filtering::Degraded => writeln!(
                out,
                "filtering    DEGRADED: {attached} of {} interface(s) attached{}",
                self.interfaces.len(),
                if self.program.is_none() {
                    ", no program pinned"
                } else {
                    ""
                }
            ),
            Filtering::None => writeln!(out, "filtering    none"),
        };
        let _ = match self.daemon_pid {
            Some(pid) => writeln!(out, "daemon       running (pid {pid})"),
            None => writeln!(
                out,
                "daemon       not running (pinned filtering stays in force)"
            ),
        };
        let _ = match &self.program {
            Some((id, tag, name)) => {
                writeln!(out, "program      {name}, id {id}, tag {}", tag_hex(*tag))
            }
            None => writeln!(out, "program      none pinned"),
        };
        if self.interfaces.is_empty() {
            let _ = writeln!(out, "interfaces   none attached");
        }
        for (k, i) in self.interfaces.iter().enumerate() {
            let label = if k == 0 { "interfaces" } else { "" };
            let link = i
                .link_id
                .map_or_else(|| "link unreadable".to_owned(), |l| format!("link {l}"));
            let prog = i
                .program_id
                .map_or_else(String::new, |p| format!(", program {p}"));
            let ns = i
                .netns
                .as_ref()
                .map_or_else(String::new, |ns| format!(", netns {ns}"));
            if i.attached {
                let _ = writeln!(out, "{label:<12} {} ({}, {link}{prog}{ns})", i.name, i.mode);
            } else {
                let link = if i.link_id.is_some() {
                    format!(", {link}{prog}")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{label:<12} {} NOT ATTACHED ({}{link}{ns}): {}",
                    i.name,
                    i.state,
                    i.problem.as_deref().unwrap_or("")
                );
            }
        }
        let _ = writeln!(out, "generation   {}", self.generation);
        let _ = writeln!(
            out,
            "flows        {} tracked of {}",
            self.flows.0, self.flows.1
        );
        out.push_str(&self.subscribers.to_text());
        if let Some(r) = st.and_then(|s| s.last_reload.as_ref()) {
            let what = if r.ok {
                "ok".to_owned()
            } else {
                format!(
                    "REJECTED, old rules kept: {}",
                    r.error.as_deref().unwrap_or("?")
                )
            };
            let _ = writeln!(
                out,
                "last reload  {} by {}: {what}",
                format_utc(r.time),
                r.by
            );
        }
        match st {
            Some(s) => {
                let _ = writeln!(out, "lists        {}", s.lists_dir.display());
                let _ = writeln!(
                    out,
                    "allowlist    {} IPv4, {} IPv6 prefixes\n",
                    s.allow.0, s.allow.1
                );
                let rows: Vec<Vec<String>> = s
                    .categories
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.to_string(),
                            c.name.clone(),
                            c.policy.clone(),
                            c.policy_source.clone(),
                            c.v4_prefixes.to_string(),
                            c.v6_prefixes.to_string(),
                        ]
                    })
                    .collect();
                out.push_str(&table(
                    &["ID", "CATEGORY", "POLICY", "FROM", "IPV4", "IPV6"],
                    &rows,
                    4,
                ));
            }
            None => {
                let _ = writeln!(
                    out,
                    "state file   missing ({}): category names and policies unknown until the next `flowfilter run` or `reload`",
                    state_path(std::path::Path::new(&self.pin_dir)).display()
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_tables() {
        assert_eq!(human_bytes(9_999), "9999 B");
        assert_eq!(human_bytes(12_345), "12.3 kB");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        let t = table(
            &["NAME", "N"],
            &[
                vec!["a".into(), "10".into()],
                vec!["bbb".into(), "2".into()],
            ],
            1,
        );
        assert_eq!(t, "NAME   N\na     10\nbbb    2\n");
    }

    fn snap(mono_ns: u64, seen: u64, rtp: u64) -> StatsSnapshot {
        StatsSnapshot {
            time: 1,
            mono_ns,
            categories: vec![CategoryRow {
                id: 1,
                name: Some("whatsapp".into()),
                stats: CatStats {
                    seen_packets: seen,
                    dropped_packets: seen,
                    seen_bytes: seen * 100,
                    dropped_bytes: seen * 100,
                    ..CatStats::default()
                },
            }],
            labels: vec![LabelRow {
                id: 4,
                name: "rtp",
                stats: LabelStats {
                    packets: rtp,
                    ..LabelStats::default()
                },
            }],
            interfaces: vec![InterfaceStats {
                name: "veth0".into(),
                ifindex: Some(7),
                categories: vec![CategoryRow {
                    id: 1,
                    name: Some("whatsapp".into()),
                    stats: CatStats {
                        seen_packets: seen,
                        ..CatStats::default()
                    },
                }],
            }],
            global: vec![("packets", seen), ("bytes", seen * 100)],
        }
    }

    #[test]
    fn stats_json_schema_and_rates() {
        let a = snap(1_000_000_000, 10, 4);
        let b = snap(3_000_000_000, 30, 8);
        let j = b.to_json(None);
        assert_eq!(j["categories"][0]["name"], "whatsapp");
        assert_eq!(j["categories"][0]["seen"]["packets"], 30);
        assert_eq!(j["categories"][0]["dropped"]["bytes"], 3000);
        assert_eq!(j["labels"][0]["name"], "rtp");
        assert_eq!(j["global"]["packets"], 30);
        assert_eq!(j["interfaces"][0]["name"], "veth0");
        assert_eq!(j["interfaces"][0]["ifindex"], 7);
        assert_eq!(j["interfaces"][0]["categories"][0]["name"], "whatsapp");
        assert_eq!(j["interfaces"][0]["categories"][0]["seen"]["packets"], 30);
        assert!(j.get("interval_secs").is_none());
        let j = b.to_json(Some(&a));
        assert_eq!(j["interval_secs"], 2.0);
        assert_eq!(j["categories"][0]["rates"]["seen_pps"], 10.0);
        assert_eq!(j["categories"][0]["rates"]["seen_bps"], 8000.0);
        assert_eq!(j["labels"][0]["rates"]["pps"], 2.0);
        let t = b.to_table(Some(&a));
        assert!(t.contains("SEEN/S"), "{t}");
        assert!(t.contains("INTERFACE  CATEGORY"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("veth0") && l.contains("whatsapp")),
            "{t}"
        );
        assert!(t.lines().nth(1).unwrap().contains("10.0"), "{t}");
        assert!(t.ends_with("all frames: packets 30, bytes 3000 B\n"), "{t}");
    }

    #[test]
    fn flow_rows() {
        let mut k = FlowKey::default();
        k.addr_a[10..12].copy_from_slice(&[0xff, 0xff]);
        k.addr_a[12..].copy_from_slice(&[192, 0, 2, 1]);
        k.addr_b = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        k.port_a = 5000;
        k.port_b = 3478;
        k.proto = 17;
        let v = FlowSlot {
            first_seen: 1,
            last_seen: 4,
            packets: 7,
            flags: FLOW_CALL | FLOW_FIRST_FROM_B,
            label: 4,
            category: 1,
            fate: FATE_STOPPED,
            ..FlowSlot::default()
        };
        let mut st = StateFile::default();
        st.categories.push(crate::state::CategoryState {
            id: 1,
            name: "whatsapp".into(),
            ..Default::default()
        });
        let r = flow_row(&k, &v, 5 << 30, Some(&st));
        assert_eq!(r.src.to_string(), "[2001:db8::2]:3478");
        assert_eq!(r.dst.to_string(), "192.0.2.1:5000");
        let tick = 1.073_741_824;
        assert_eq!((r.age_secs, r.idle_secs), (4.0 * tick, tick));
        let j = r.to_json();
        assert_eq!(j["category"], "whatsapp");
        assert_eq!(j["label"], "rtp");
        assert_eq!(j["call"], true);
        assert_eq!(j["listed"], false);
        assert_eq!(j["fate"], "stopped");
        assert_eq!(
            (j["fragmented"].clone(), j["tcp_fallback"].clone()),
            (json!(false), json!(false))
        );
        assert!(flows_table(&[r]).ends_with("1 flows\n"));
    }
}
