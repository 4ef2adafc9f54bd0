//! Loading the XDP program and driving its maps: table generations,
//! policies, counters, flows, BPF_PROG_TEST_RUN, and pinned instances.
//!
//! A [`Filter`] is one of three things:
//! - a private instance ([`Filter::load`]): loaded, never attached, maps
//!   unpinned; replay and the verdict tests use it;
//! - the daemon's instance ([`Filter::load_pinned`]): maps and program pinned
//!   under a pin directory (see [`crate::dataplane::pins`]), adopted when already there,
//!   attached to interfaces through pinned bpf_links ([`Filter::attach`]);
//! - a CLI view of the pins ([`Filter::open_pinned`]): the pinned maps (and
//!   program, for its id and tag), nothing loaded.
//!
//! Maps are handled generically: every map of the object's map sections is
//! pinned and checked by name, whatever maps the program has.
//!
//! Table generations: [`Filter::stage_tables`] puts built tables in a
//! node pool made for them (a new inner map of `TRIE`, sized to what the
//! lists need) and the inactive generation's root block of `ROOT`, then
//! [`Filter::flip`] flips `STATE.generation` with one write. Nothing of the previous
//! contents has to be cleared, so pinned and private instances install
//! alike; the pool the flip retired is freed at the next install.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::AsFd as _;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, ArrayOfMaps, IterableMap as _, Map, MapData, MapError, PerCpuArray};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{ProgramError, ProgramInfo, TestRun as _, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};
use aya_obj::programs::XdpAttachType;
use filter_common::flow::{bucket_of, bucket_of2, find, key_hash, live, tick};
use filter_common::trie::{Entry, ROOT_LEN, TrieMem, Unit, root_index};
use filter_common::{
    BITS_WORDS, CATEGORY_SLOTS, COUNTER_SLOTS, CatStats, Counter, ENDPOINT_BITS_WORDS,
    EV_FLOWS_CREATED, EV_FLOWS_EVICTED, EV_FRAGMENTS, EV_V6_HIDDEN, EVENT_SLOTS, FLOW_BUCKETS,
    FLOW_SLOTS, FlowBucket, FlowKey, FlowSlot, G_ALLOWED, G_BYTES, G_DROPPED, G_FLOWS_CREATED,
    G_FLOWS_EVICTED, G_FRAG_DROPPED, G_FRAGMENTS, G_MALFORMED, G_NON_IP, G_OTHER_IP, G_PACKETS,
    G_TCP, G_UDP, G_V6_HIDDEN, GLOBAL_SLOTS, IF_INDEX_LIMIT, IF_SLOTS, LABEL_SLOTS, LabelStats,
    MAP_BITS, MAP_COUNTERS, MAP_EVENTS, MAP_FLOW_KEYS, MAP_FLOWS, MAP_IF_SLOT, MAP_LABEL_STATS,
    MAP_PKT_TRACE, MAP_POLICY, MAP_ROOT, MAP_STATE, MAP_TRIE, O_FRAG_DROP, O_FRAG_PASS,
    O_HIDDEN_ALLOWED, O_HIDDEN_PASS, O_MALFORMED, O_NON_IP, O_OTHER_IP, O_TCP, O_UDP_ALLOWED,
    O_UDP_PASS, OUTCOME_SLOTS, PROGRAM_NAME, PktTrace, Policy, ROOT_ENTRIES, State, V_DROP,
    V_MONITOR, V_PASS, VERDICTS, verdict_slot,
};
use filter_common::{IF_INSIDE, MAP_SUBSCRIBERS, STATE_SUB_IFACE, STATE_SUB_PREFIX, SubscriberKey};

use crate::dataplane::cidr::Cidr;
use crate::dataplane::mapio::{BPF_F_INNER_MAP, BPF_F_MMAPABLE, Mmap, per_cpu_all};
use crate::dataplane::pins::{
    MapProblem, PinError, PinLayout, check_maps, object_map_defs, tag_hex,
};
use crate::dataplane::tables::{TableError, Tables};

/// The compiled XDP object, built by `build.rs` through aya-build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowfilter"));

/// Maps that hold one table generation together. They are only meaningful
/// as a set (`STATE.generation` says which half of the others is live), so
/// when `--replace` must recreate one of them it recreates all of them.
pub const TABLE_MAPS: [&str; 4] = [MAP_STATE, MAP_POLICY, MAP_ROOT, MAP_TRIE];

/// Default partial-restriction epoch written to a fresh `STATE`.
pub const DEFAULT_EPOCH_SECS: u32 = 3600;

/// The policy of a category given none: `drop`, scope `media`.
pub const DEFAULT_POLICY: Policy = Policy {
    action: filter_common::ACTION_DROP,
    scope: filter_common::SCOPE_MEDIA,
    percent: 100,
    _pad: 0,
};

/// Errors while loading or driving the program.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The binary was built with `AYA_BUILD_SKIP=1`.
    #[error(
        "this flowfilter binary was built without its XDP program (AYA_BUILD_SKIP was set); rebuild it"
    )]
    NoObject,
    /// Parsing or creating maps failed.
    #[error("loading the XDP object: {0}")]
    Ebpf(#[from] EbpfError),
    /// Loading, verifying or running the program failed.
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        #[source]
        source: MapError,
    },
    /// The object lacks a map or program this binary expects.
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    /// The lists do not fit the tables.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The pin directory or what is pinned in it.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// Opening, pinning or updating a pinned object failed.
    #[error("{what}: {source}")]
    Pinned {
        /// What was done, naming the pin.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Attaching to an interface failed.
    #[error("attaching to {iface}: {source}")]
    Attach {
        /// The interface.
        iface: String,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// A setting out of range (subscriber prefixes, an interface).
    #[error("{0}")]
    Input(String),
    /// The kernel attached through netlink, which cannot be pinned.
    #[error(
        "attaching to {iface}: the kernel did not create a bpf_link (too old?), so the attachment could not be pinned; flowfilter needs XDP bpf_links (Linux 5.9+)"
    )]
    NotPinnable {
        /// The interface.
        iface: String,
    },
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { map, source }
}

fn pinned_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> LoadError {
    let what = what.into();
    move |e| LoadError::Pinned {
        what,
        source: Box::new(e),
    }
}

/// How to load the program.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Record each packet's decision in `PKT_TRACE` (replay).
    pub trace: bool,
}

/// Sizes of what a generation holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenerationInfo {
    /// The generation now active.
    pub generation: u32,
    /// IPv4 prefixes (after merging).
    pub v4_prefixes: usize,
    /// IPv6 prefixes (after merging).
    pub v6_prefixes: usize,
    /// Node-pool units (64 bytes each) of the generation.
    pub units: usize,
    /// Bytes of the generation's tables: its root blocks and its pool.
    pub table_bytes: usize,
}

/// A generation filled by [`Filter::stage_tables`], not yet in force.
#[derive(Debug)]
#[must_use = "a staged generation does nothing until `Filter::flip`"]
pub struct StagedGeneration {
    info: GenerationInfo,
    stateless: bool,
    /// The subscriber bits and prefix lengths `STATE` takes with the flip.
    sub_flags: u32,
    sub_v4_len: u8,
    sub_v6_len: u8,
}

impl StagedGeneration {
    /// What it holds, and the generation it will be.
    pub fn info(&self) -> &GenerationInfo {
        &self.info
    }
}

/// XDP attach mode asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic (skb) mode with a
    /// warning naming the reason.
    #[default]
    Auto,
    /// Native mode only.
    Driver,
    /// Generic mode only.
    Skb,
}

impl std::str::FromStr for AttachMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AttachMode::Auto),
            "driver" | "native" | "drv" => Ok(AttachMode::Driver),
            "skb" | "generic" => Ok(AttachMode::Skb),
            _ => Err(format!("`{s}` is not an attach mode (auto, driver or skb)")),
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Auto => "auto",
            AttachMode::Driver => "driver",
            AttachMode::Skb => "skb",
        })
    }
}

/// How an interface ended up attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link in this mode (`driver` or `skb`), pinned.
    New {
        /// `driver` or `skb`.
        mode: AttachMode,
        /// Why driver mode was not used, when `auto` fell back.
        fallback: Option<String>,
    },
    /// A pinned link was there and runs our program: nothing changed.
    Adopted,
    /// A pinned link ran another program; it now runs ours (bpf_link_update).
    Updated {
        /// The program it ran.
        old_program_id: u32,
    },
}

/// What [`Filter::load_pinned`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Nothing was pinned: maps are new and pinned; the program is pinned by
    /// [`Filter::commit`].
    Fresh,
    /// The pinned program and maps match this build and are in use as they
    /// are (the program id stays, counters continue).
    Adopted {
        /// The pinned program's id.
        program_id: u32,
    },
    /// `--replace` (or pins no running filter uses): a newly loaded program
    /// and the maps named replace the pinned ones when [`Filter::commit`]
    /// runs, after the tables are filled. Links switch with
    /// `bpf_link_update`, so traffic sees no gap.
    Replacing {
        /// The pinned program, if there was one.
        old_program_id: Option<u32>,
        /// Maps created anew (the others are kept with their contents).
        recreated: Vec<String>,
        /// What differed.
        problems: Vec<String>,
    },
}

/// Pins to change when a `Replacing` or `Fresh` start commits.
#[derive(Debug, Default)]
struct Pending {
    /// Maps to pin in place of the old pins.
    recreated: Vec<String>,
    /// Pinned maps this build does not have: unpinned.
    extra: Vec<String>,
    /// The loaded program replaces the pinned one and takes over the links.
    program: bool,
}

/// A loaded (not necessarily attached) instance of the program.
pub struct Filter {
    /// Programs this process loaded (`None` for a CLI view of the pins and
    /// for an adopted program, which lives in `pinned_prog`).
    ebpf: Option<Ebpf>,
    /// The adopted (or, for the CLI, inspected) pinned program.
    pinned_prog: Option<Xdp>,
    /// Every map of the instance, by name.
    maps: HashMap<String, Map>,
    pending: Option<Pending>,
    /// Who the subscribers are, written with the next install; `None`
    /// keeps what the active generation has (a CLI change of one list keeps
    /// the daemon's subscriber side).
    subscribers: Option<Subscribers>,
}

/// The subscriber side for `flows=P%`: every flow of one subscriber's
/// calls takes that subscriber's fate (see `decide::subscriber_ends`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribers {
    /// The operator named the interfaces facing subscribers (`--inside`):
    /// the daemon marks them with [`Filter::set_interface_inside`]; the
    /// prefixes are then unused.
    pub by_interface: bool,
    /// Prefixes whose addresses are subscribers.
    pub prefixes: Vec<Cidr>,
    /// Prefix length of one IPv4 subscriber (default 32).
    pub v4_len: u8,
    /// Prefix length of one IPv6 subscriber (default 64).
    pub v6_len: u8,
}

/// The subscriber prefixes when the operator names none: private and
/// shared address space (RFC 1918, RFC 6598, RFC 4193).
pub const DEFAULT_SUBSCRIBERS: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

impl Default for Subscribers {
    fn default() -> Subscribers {
        Subscribers {
            by_interface: false,
            prefixes: DEFAULT_SUBSCRIBERS
                .iter()
                .map(|p| p.parse().expect("a valid built-in prefix"))
                .collect(),
            v4_len: filter_common::SUB_V4_LEN,
            v6_len: filter_common::SUB_V6_LEN,
        }
    }
}

/// `SUBSCRIBERS` key data of `cidr` in generation `generation`, and the
/// LPM prefix length.
fn subscriber_entry(generation: u32, cidr: &Cidr) -> (u32, SubscriberKey) {
    let (bytes, bits) = match *cidr {
        Cidr::V4 { addr, len } => (addr.to_ipv6_mapped().octets(), 96 + u32::from(len)),
        Cidr::V6 { addr, len } => (addr.octets(), u32::from(len)),
    };
    let mut data: SubscriberKey = [0; 20];
    data[3] = (generation & 1) as u8;
    data[4..].copy_from_slice(&bytes);
    (32 + bits, data)
}

/// Take every map out of `ebpf`, by name.
fn take_maps(ebpf: &mut Ebpf) -> HashMap<String, Map> {
    let names: Vec<String> = ebpf.maps().map(|(n, _)| n.to_owned()).collect();
    names
        .into_iter()
        .filter_map(|n| ebpf.take_map(&n).map(|m| (n, m)))
        .collect()
}

fn xdp_of(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    Ok(ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(LoadError::Missing("program"))?
        .try_into()?)
}

/// The current flow-table tick (the program's clock, `CLOCK_MONOTONIC`
/// in units of 2^30 ns).
pub fn now_tick() -> u32 {
    tick(monotonic_ns())
}

/// `CLOCK_MONOTONIC` in ns (the base of the program's coarse clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A map's data, whatever its type.
fn map_data(m: &Map) -> Option<&MapData> {
    Some(match m {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::ArrayOfMaps(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuHashMap(d) => d,
        _ => return None,
    })
}

/// The pinned or loaded tables, mapped, as the walk reads them.
struct MappedTables<'a> {
    root: &'a [Entry],
    units: &'a [Unit],
}

impl TrieMem for MappedTables<'_> {
    fn root(&self, index: u32) -> Entry {
        self.root.get(index as usize).copied().unwrap_or(0)
    }

    fn unit(&self, _generation: u32, index: u32) -> Option<&Unit> {
        self.units.get(index as usize)
    }
}

/// The program's counters, read once ([`Filter::counter_snapshot`]).
#[derive(Clone, Debug)]
pub struct CounterSnapshot {
    /// `COUNTERS`, summed over CPUs.
    pub counters: Vec<Counter>,
    /// `EVENTS`, summed over CPUs.
    pub events: Vec<u64>,
    /// Per-label counters, indexed by label id.
    pub labels: Vec<LabelStats>,
}

impl CounterSnapshot {
    /// One interface slot's per-category counters, indexed by category id
    /// (as [`Filter::slot_stats`]).
    pub fn slot_stats(&self, slot: u32) -> Vec<CatStats> {
        slot_cat_stats(&self.counters, slot)
    }

    /// The global totals, indexed by `G_*` (as [`Filter::global_stats`]).
    pub fn global(&self) -> Vec<u64> {
        global_totals(&self.counters, &self.events)
    }
}

/// Every category's counters on one interface slot, indexed by category id.
fn slot_cat_stats(c: &[Counter], slot: u32) -> Vec<CatStats> {
    (0..CATEGORY_SLOTS)
        .map(|cat| cat_stats(c, slot, cat as u8))
        .collect()
}

/// A category's counters on one interface slot, from its verdict slots.
fn cat_stats(c: &[Counter], slot: u32, cat: u8) -> CatStats {
    let get = |v| {
        c.get(verdict_slot(slot, cat, v) as usize)
            .copied()
            .unwrap_or_default()
    };
    let (d, m, p) = (get(V_DROP), get(V_MONITOR), get(V_PASS));
    CatStats {
        seen_packets: d.packets + m.packets + p.packets,
        seen_bytes: d.bytes + m.bytes + p.bytes,
        dropped_packets: d.packets,
        dropped_bytes: d.bytes,
        monitored_packets: m.packets,
        monitored_bytes: m.bytes,
        passed_packets: m.packets + p.packets,
        passed_bytes: m.bytes + p.bytes,
    }
}

const G_TCP_FALLBACK_IDX: usize = filter_common::G_TCP_FALLBACK as usize;

/// The global totals (`G_*`) from the counter slots and events.
pub fn global_totals(c: &[Counter], ev: &[u64]) -> Vec<u64> {
    let o = |i: u32| c.get(i as usize).copied().unwrap_or_default();
    let e = |i: u32| ev.get(i as usize).copied().unwrap_or(0);
    let verdicts = c.get(OUTCOME_SLOTS as usize..).unwrap_or(&[]);
    let cat_packets: u64 = verdicts.iter().map(|x| x.packets).sum();
    let dropped: u64 = verdicts
        .iter()
        .skip(V_DROP as usize)
        .step_by(VERDICTS as usize)
        .map(|x| x.packets)
        .sum();
    let all = c.iter().fold(Counter::default(), |a, x| Counter {
        packets: a.packets + x.packets,
        bytes: a.bytes + x.bytes,
    });
    // Hidden IPv6 packets with a category are counted in the verdict
    // slots, which otherwise count UDP.
    let hidden_categorised =
        e(EV_V6_HIDDEN).saturating_sub(o(O_HIDDEN_PASS).packets + o(O_HIDDEN_ALLOWED).packets);
    // TCP packets of calls that fell back to TCP are counted there too.
    let tcp_fallback = e(filter_common::EV_TCP_FALLBACK);
    let mut g = vec![0u64; GLOBAL_SLOTS as usize];
    g[G_PACKETS as usize] = all.packets;
    g[G_BYTES as usize] = all.bytes;
    g[G_NON_IP as usize] = o(O_NON_IP).packets;
    g[G_TCP as usize] = o(O_TCP).packets + tcp_fallback;
    g[G_OTHER_IP as usize] = o(O_OTHER_IP).packets;
    g[G_MALFORMED as usize] = o(O_MALFORMED).packets;
    g[G_UDP as usize] = (cat_packets + o(O_UDP_PASS).packets + o(O_UDP_ALLOWED).packets)
        .saturating_sub(hidden_categorised + tcp_fallback);
    g[G_FRAGMENTS as usize] = e(EV_FRAGMENTS);
    g[G_FRAG_DROPPED as usize] = o(O_FRAG_DROP).packets;
    g[G_ALLOWED as usize] = o(O_UDP_ALLOWED).packets + o(O_HIDDEN_ALLOWED).packets;
    g[G_DROPPED as usize] = dropped + o(O_FRAG_DROP).packets;
    g[G_FLOWS_CREATED as usize] = e(EV_FLOWS_CREATED);
    g[G_FLOWS_EVICTED as usize] = e(EV_FLOWS_EVICTED);
    g[G_V6_HIDDEN as usize] = e(EV_V6_HIDDEN);
    g[filter_common::G_FRAG_TINY as usize] = e(filter_common::EV_FRAG_TINY);
    g[filter_common::G_FRAG_OVERLAP as usize] = e(filter_common::EV_FRAG_OVERLAP);
    g[filter_common::G_FRAG_LATE as usize] = e(filter_common::EV_FRAG_LATE);
    g[filter_common::G_FRAG_EARLY as usize] = e(filter_common::EV_FRAG_EARLY);
    g[G_TCP_FALLBACK_IDX] = tcp_fallback;
    let _ = O_FRAG_PASS;
    g
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Field-wise sum of two counter sets.
pub fn sum_cat(a: &CatStats, s: &CatStats) -> CatStats {
    CatStats {
        seen_packets: a.seen_packets + s.seen_packets,
        seen_bytes: a.seen_bytes + s.seen_bytes,
        dropped_packets: a.dropped_packets + s.dropped_packets,
        dropped_bytes: a.dropped_bytes + s.dropped_bytes,
        monitored_packets: a.monitored_packets + s.monitored_packets,
        monitored_bytes: a.monitored_bytes + s.monitored_bytes,
        passed_packets: a.passed_packets + s.passed_packets,
        passed_bytes: a.passed_bytes + s.passed_bytes,
    }
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
}

/// 64 random bits from the kernel (the flow-table hash key), or the clock.
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom fills at most the buffer's length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        filter_common::decide::mix64(seed_from_clock())
    }
}

/// What to add to the program's clock (`bpf_ktime_get_coarse_ns`:
/// CLOCK_MONOTONIC) to get `unix_ns` now (the system clock when `None`).
fn wall_offset_ns(unix_ns: Option<u64>) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    let mono = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let wall = unix_ns.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    wall.wrapping_sub(mono)
}

/// What a fresh `STATE` holds.
fn fresh_state() -> State {
    State {
        generation: 0,
        epoch_secs: DEFAULT_EPOCH_SECS,
        seed: random_u64(),
        version: 1,
        bits_half: 0,
        hash_key: random_u64(),
        flags: 0,
        flow_bits_half: 0,
        wall_offset_ns: wall_offset_ns(None),
        sub_v4_len: filter_common::SUB_V4_LEN,
        sub_v6_len: filter_common::SUB_V6_LEN,
        _pad: [0; 6],
    }
}

#[cfg(test)]
mod tests;

mod counters;
mod flows;
mod generation;
mod object;
mod subscribers;
