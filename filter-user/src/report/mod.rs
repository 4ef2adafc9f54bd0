//! What `status`, `stats` and `flows` read from the pins, and how they show
//! it: aligned tables for people, JSON for programs.
//!
//! JSON schemas (stable; fields are only ever added), each the
//! `#[derive(Serialize)]` form of a type here, its fields in the JSON's order
//! ([`StatsJson`], [`StatusJson`], [`FlowRow`]); [`json_text`] prints them:
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
//! program on the interface that has the name now ([`crate::daemon::ifwatch`]):
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

pub mod metrics;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use filter_common::classify::label_name;
use filter_common::{
    CAT_NONE, CatStats, FATE_SPARED, FATE_STOPPED, FLOW_CALL, FLOW_FIRST_FROM_B, FLOW_LISTED,
    FlowKey, FlowSlot, GLOBAL_NAMES, IF_SLOTS, LABEL_SLOTS, LabelStats,
};
use serde::Serialize;

use crate::control::state::{StateFile, format_utc, state_path};
use crate::dataplane::loader::{Filter, LoadError};
use crate::dataplane::pins::{PinLayout, tag_hex};

mod flows;
mod stats;
mod status;
pub use flows::*;
pub use stats::*;
pub use status::*;

/// `value` as `--json` prints it, newline included: indented (`status`,
/// `stats`, `flows`) or on one line (`stats --watch`, `replay`).
pub fn json_text(value: &impl Serialize, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    // Only a map with keys that are not strings could fail: none has one.
    text.expect("report JSON has string keys") + "\n"
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

/// An aligned table: the first `left` columns left-aligned, the rest right
/// (see [`aligned`]).
pub fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    aligned(header, rows, |i| i >= left)
}

/// An aligned table (comfy-table, no borders): column `i` right-aligned
/// where `right(i)`, else left; two spaces between columns, no trailing
/// spaces, a newline after each line.
pub fn aligned<R>(header: &[&str], rows: &[R], right: impl Fn(usize) -> bool) -> String
where
    R: AsRef<[String]>,
{
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_header(header.to_vec())
        .add_rows(rows.iter().map(|r| r.as_ref().iter()));
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        column.set_cell_alignment(if right(i) {
            comfy_table::CellAlignment::Right
        } else {
            comfy_table::CellAlignment::Left
        });
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
