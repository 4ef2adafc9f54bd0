//! `stats`: the counters by category, label and interface, as a table or JSON, with rates between two snapshots.

use serde::Serializer;

use super::*;

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
            *t = crate::dataplane::loader::sum_cat(t, s);
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
        time: crate::control::state::unix_now(),
        mono_ns: monotonic_ns(),
        categories,
        labels,
        interfaces,
        global,
    })
}

/// Packets and bytes of one counter pair.
#[derive(Serialize)]
struct PacketsBytes {
    packets: u64,
    bytes: u64,
}

/// A category's counters in `stats --json` (fields in the JSON's order).
#[derive(Serialize)]
pub struct CategoryJson<'a> {
    id: u8,
    name: Option<&'a str>,
    seen: PacketsBytes,
    dropped: PacketsBytes,
    monitored: PacketsBytes,
    passed: PacketsBytes,
    /// With `--watch` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    rates: Option<CategoryRates>,
}

/// A category's rates since the snapshot before.
#[derive(Serialize)]
struct CategoryRates {
    seen_pps: f64,
    seen_bps: f64,
    dropped_pps: f64,
    passed_pps: f64,
}

/// A label's counters in `stats --json`.
#[derive(Serialize)]
pub struct LabelJson {
    id: u8,
    name: &'static str,
    packets: u64,
    bytes: u64,
    dropped: u64,
    monitored: u64,
    /// With `--watch` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    rates: Option<LabelRates>,
}

/// A label's rates since the snapshot before.
#[derive(Serialize)]
struct LabelRates {
    pps: f64,
    bps: f64,
}

impl CategoryRates {
    /// The rates of `c` since `before`, `secs` earlier (for the JSON and
    /// the table's rate columns).
    fn of(c: &CategoryRow, before: &StatsSnapshot, secs: f64) -> CategoryRates {
        let (s, p) = (&c.stats, before.previous_category(c.id));
        CategoryRates {
            seen_pps: rate(s.seen_packets, p.seen_packets, secs),
            seen_bps: rate(s.seen_bytes, p.seen_bytes, secs) * 8.0,
            dropped_pps: rate(s.dropped_packets, p.dropped_packets, secs),
            passed_pps: rate(s.passed_packets, p.passed_packets, secs),
        }
    }
}

/// An interface's category counters in `stats --json`.
#[derive(Serialize)]
pub struct InterfaceJson<'a> {
    name: &'a str,
    ifindex: Option<u32>,
    categories: Vec<CategoryJson<'a>>,
}

/// `stats --json`: one snapshot, with `--watch` its interval and rates.
#[derive(Serialize)]
pub struct StatsJson<'a> {
    time: u64,
    categories: Vec<CategoryJson<'a>>,
    labels: Vec<LabelJson>,
    interfaces: Vec<InterfaceJson<'a>>,
    /// An object of the global counters by name, in [`GLOBAL_NAMES`] order.
    #[serde(serialize_with = "by_name")]
    global: &'a [(&'static str, u64)],
    /// With `--watch` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_secs: Option<f64>,
}

fn by_name<S: Serializer>(pairs: &&[(&'static str, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().copied())
}

impl CategoryRow {
    /// Its `stats --json` object, without rates.
    fn to_json(&self) -> CategoryJson<'_> {
        let s = &self.stats;
        CategoryJson {
            id: self.id,
            name: self.name.as_deref(),
            seen: PacketsBytes {
                packets: s.seen_packets,
                bytes: s.seen_bytes,
            },
            dropped: PacketsBytes {
                packets: s.dropped_packets,
                bytes: s.dropped_bytes,
            },
            monitored: PacketsBytes {
                packets: s.monitored_packets,
                bytes: s.monitored_bytes,
            },
            passed: PacketsBytes {
                packets: s.passed_packets,
                bytes: s.passed_bytes,
            },
            rates: None,
        }
    }
}

/// Per-second rate of `now - before` over `secs`.
pub(super) fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        now.saturating_sub(before) as f64 / secs
    }
}

/// The counters of the row with `id` in `rows` (of the snapshot before):
/// zero when it was not there yet.
fn previous<R, S: Copy + Default>(rows: &[R], id: u8, of: impl Fn(&R) -> (u8, S)) -> S {
    rows.iter()
        .map(of)
        .find(|(i, _)| *i == id)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

impl StatsSnapshot {
    pub(super) fn previous_category(&self, id: u8) -> CatStats {
        previous(&self.categories, id, |c| (c.id, c.stats))
    }

    pub(super) fn previous_label(&self, id: u8) -> LabelStats {
        previous(&self.labels, id, |l| (l.id, l.stats))
    }

    pub(super) fn secs_since(&self, before: &StatsSnapshot) -> f64 {
        self.mono_ns.saturating_sub(before.mono_ns) as f64 / 1e9
    }

    /// The `--json` object; with `before`, also the rates since then.
    pub fn to_json(&self, before: Option<&StatsSnapshot>) -> StatsJson<'_> {
        let secs = before.map(|b| (b, self.secs_since(b)));
        let categories = self
            .categories
            .iter()
            .map(|c| CategoryJson {
                rates: secs.map(|(b, secs)| CategoryRates::of(c, b, secs)),
                ..c.to_json()
            })
            .collect();
        let labels = self
            .labels
            .iter()
            .map(|l| {
                let s = &l.stats;
                LabelJson {
                    id: l.id,
                    name: l.name,
                    packets: s.packets,
                    bytes: s.bytes,
                    dropped: s.dropped,
                    monitored: s.monitored,
                    rates: secs.map(|(b, secs)| {
                        let p = b.previous_label(l.id);
                        LabelRates {
                            pps: rate(s.packets, p.packets, secs),
                            bps: rate(s.bytes, p.bytes, secs) * 8.0,
                        }
                    }),
                }
            })
            .collect();
        let interfaces = self
            .interfaces
            .iter()
            .map(|i| InterfaceJson {
                name: &i.name,
                ifindex: i.ifindex,
                categories: i.categories.iter().map(CategoryRow::to_json).collect(),
            })
            .collect();
        StatsJson {
            time: self.time,
            categories,
            labels,
            interfaces,
            global: &self.global,
            interval_secs: secs.map(|(_, secs)| secs),
        }
    }

    /// The human table; with `before`, rate columns too.
    pub fn to_table(&self, before: Option<&StatsSnapshot>) -> String {
        let secs = before.map(|b| self.secs_since(b));
        let mut out = self.category_table(before, secs);
        out.push('\n');
        out.push_str(&self.label_table(before, secs));
        out.push('\n');
        out.push_str(&self.interface_table());
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

    /// Counters by category, with rates when `before` is given.
    fn category_table(&self, before: Option<&StatsSnapshot>, secs: Option<f64>) -> String {
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
                    let rates = CategoryRates::of(c, b, secs);
                    r.extend(
                        [rates.seen_pps, rates.dropped_pps, rates.passed_pps]
                            .map(|x| format!("{x:.1}")),
                    );
                }
                r
            })
            .collect();
        table(&header, &rows, 1)
    }

    /// Counters by label, with a rate when `before` is given.
    fn label_table(&self, before: Option<&StatsSnapshot>, secs: Option<f64>) -> String {
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
        table(&header, &rows, 1)
    }

    /// Counters by interface and category (empty with no interface slot).
    fn interface_table(&self) -> String {
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
        if rows.is_empty() {
            return String::new();
        }
        let header = [
            "INTERFACE",
            "CATEGORY",
            "SEEN",
            "BYTES",
            "DROPPED",
            "MONITORED",
            "PASSED",
        ];
        let mut out = table(&header, &rows, 2);
        out.push('\n');
        out
    }
}
