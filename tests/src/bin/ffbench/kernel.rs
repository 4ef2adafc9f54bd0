//! In-kernel cost (BPF_PROG_TEST_RUN) and control plane (load, install,
//! swap, map memory) for one prefix set, plus filling xdp-filter's map.
//!
//! Everything that depends on the library's table and loader internals
//! (`LoadOptions`, `build_tables`, the table maps) stays in the small
//! functions at the top: [`lists_for`], [`load_filter`], [`load_with_set`],
//! [`build_once`], [`map_memory`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use aya::maps::{Map, MapData, MapInfo, PerCpuHashMap, PerCpuValues};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use aya::util::nr_cpus;
use aya::{Ebpf, EbpfLoader};
use filter_common::XDP_DROP;
use filter_common::pktbuild::{self, filler};
use filter_user::control::install::InstallLists as _;
use filter_user::dataplane::loader::{Filter, LoadOptions, OBJECT};
use filter_user::lists::build_tables;
use filter_user::lists::{Lists, ParsedList};
use serde_json::{Value, json};

use crate::pools::{Dir, Flow, Ip, Traffic, flows};
use crate::sets::PrefixSet;
use crate::sys;

/// The trivial XDP_DROP program in the object.
pub const XDP_DROP_PROGRAM: &str = "xdp_drop";
/// The parse-then-drop floor in the object.
pub const XDP_PARSE_DROP_PROGRAM: &str = "xdp_parse_drop";

/// The maps that hold the prefix tables: the roots, and the node pools
/// (inner maps of TRIE, one per generation, listed as `TRIE[g]`).
const TABLE_MAPS: [&str; 1] = ["ROOT"];

/// The set as flowfilter lists: one category (`whatsapp`), no allowlist.
pub fn lists_for(set: &PrefixSet) -> Result<Lists> {
    let list = ParsedList {
        v4: set
            .prefixes
            .iter()
            .map(|&(a, l)| (Ipv4Addr::from(a), l))
            .collect(),
        v6: set
            .v6
            .iter()
            .map(|&(a, l)| (Ipv6Addr::from(a), l))
            .collect(),
        notes: Vec::new(),
    };
    Ok(Lists::from_parts(
        vec![("whatsapp".to_string(), list)],
        ParsedList::default(),
    )?)
}

/// Load flowfilter (nothing installed; the tables are sized at install).
fn load_filter(_set: Option<&PrefixSet>) -> Result<Filter> {
    Filter::load(&LoadOptions { trace: false }).context("loading flowfilter")
}

/// Load flowfilter (sized for `set`) and install `set` with the default
/// policy (drop call media).
pub fn load_with_set(set: Option<&PrefixSet>) -> Result<Filter> {
    let mut f = load_filter(set)?;
    if let Some(set) = set {
        f.install(&lists_for(set)?, &BTreeMap::new())
            .context("installing the prefix set")?;
    }
    Ok(f)
}

/// Build the tables once in userspace: (ms, table bytes one generation
/// writes, node-pool units used).
fn build_once(lists: &Lists, _set: &PrefixSet) -> Result<(f64, usize, usize)> {
    let started = Instant::now();
    let t = build_tables(lists)?;
    Ok((ms(started), t.memory_bytes(), t.units.len()))
}

/// (name, memlock bytes, holds prefix tables) of every map the flowfilter
/// program uses.
fn map_memory(f: &mut Filter) -> Result<Vec<(String, u64, bool)>> {
    let ids = f
        .xdp()?
        .info()?
        .map_ids()?
        .context("the kernel does not report the program's map ids")?;
    let mut out = Vec::new();
    for id in ids {
        let info = MapInfo::from_id(id)?;
        let fd = info.fd()?;
        let mem = sys::fdinfo_memlock(fd.as_fd().as_raw_fd())?;
        let name = info.name_as_str().unwrap_or("?").to_string();
        let table = TABLE_MAPS.contains(&name.as_str());
        out.push((name, mem, table));
    }
    for (g, pool) in f.pool_maps()? {
        let mem = sys::fdinfo_memlock(pool.fd().as_fd().as_raw_fd())?;
        out.push((format!("TRIE[{g}]"), mem, true));
    }
    out.sort();
    Ok(out)
}

/// Load one of the object's floor programs (`xdp_drop`, `xdp_parse_drop`)
/// in its own instance of the object.
pub fn load_program(name: &str) -> Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("ffbench was built without the XDP object (AYA_BUILD_SKIP was set); rebuild it");
    }
    let mut obj = EbpfLoader::new()
        .load(OBJECT)
        .context("loading the XDP object")?;
    program_of(&mut obj, name)?
        .load()
        .with_context(|| format!("loading {name}"))?;
    Ok(obj)
}

/// The program `name` of an object from [`load_program`].
pub fn program_of<'a>(obj: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(obj
        .program_mut(name)
        .with_context(|| format!("the XDP object has no {name} program"))?
        .try_into()?)
}

#[derive(Clone, Debug, clap::Args)]
pub struct KernelArgs {
    /// Prefix set file (`ffbench set`).
    #[arg(long)]
    pub set: PathBuf,
    #[arg(long, default_value_t = crate::SEED)]
    pub seed: u64,
    /// Distinct frames per round and packet kind.
    #[arg(long, default_value_t = 2000)]
    pub frames: usize,
    /// Rounds per packet kind (the median and spread are over rounds).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Installs after the first one (swaps) to time.
    #[arg(long, default_value_t = 3)]
    pub swaps: usize,
    /// Control plane and memory only (no BPF_PROG_TEST_RUN).
    #[arg(long)]
    pub memory_only: bool,
    /// The CPU to run on (default: the last): BPF_PROG_TEST_RUN runs the
    /// program on the calling CPU, and one CPU for every round keeps the
    /// rounds and runs comparable.
    #[arg(long)]
    pub cpu: Option<usize>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One frame through a program with BPF_PROG_TEST_RUN, `repeat` 1.
fn test_run(prog: &Xdp, frame: &[u8]) -> Result<(u32, u64)> {
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        ..TestRunOptions::new()
    })?;
    Ok((r.return_value, r.duration.as_nanos() as u64))
}

/// Mean ns per frame of each round and the share of frames dropped.
fn rounds(
    prog: &Xdp,
    frames_of_round: &mut dyn FnMut(usize) -> Vec<Vec<u8>>,
    n: usize,
) -> Result<Value> {
    let mut means = Vec::with_capacity(n);
    let (mut dropped, mut total) = (0u64, 0u64);
    for r in 0..n {
        let frames = frames_of_round(r);
        let mut sum = 0u64;
        for f in &frames {
            let (v, ns) = test_run(prog, f)?;
            sum += ns;
            dropped += u64::from(v == XDP_DROP);
            total += 1;
        }
        means.push(sum as f64 / frames.len().max(1) as f64);
    }
    Ok(json!({"ns": means, "dropped": dropped, "frames": total}))
}

/// Control plane, memory and (unless `memory_only`) the in-kernel cost. An
/// install the data path refuses is reported (`install_error`), not fatal:
/// the load time and map memory are still measured.
pub fn kernel(args: &KernelArgs) -> Result<Value> {
    let last = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) - 1;
    sys::pin(0, args.cpu.unwrap_or(last))?;
    let set = PrefixSet::read(&args.set)?;
    let lists = lists_for(&set)?;

    let started = Instant::now();
    let mut filter = load_filter(Some(&set))?;
    let load_ms = ms(started);
    let mut build_ms = Vec::new();
    let mut out = json!({
        "prefixes": set.len(),
        "family": set.family(),
        "load_ms": load_ms,
        "frames_per_round": args.frames.max(1),
    });
    let mut error = None;
    for _ in 0..args.swaps.max(1) {
        match build_once(&lists, &set) {
            Ok((t, bytes, units)) => {
                build_ms.push(t);
                out["table_bytes_written"] = json!(bytes);
                out["pool_units"] = json!(units);
            }
            Err(e) => {
                error = Some(format!("build: {e:#}"));
                break;
            }
        }
    }
    out["build_ms"] = json!(build_ms);
    let mut installed = false;
    if error.is_none() {
        let started = Instant::now();
        match filter.install(&lists, &BTreeMap::new()) {
            Ok(_) => {
                out["first_install_ms"] = json!(ms(started));
                installed = true;
            }
            Err(e) => error = Some(format!("install: {e:#}")),
        }
    }
    if installed {
        let mut swap_ms = Vec::new();
        for _ in 0..args.swaps {
            let started = Instant::now();
            filter
                .install(&lists, &BTreeMap::new())
                .context("re-installing the prefix set")?;
            swap_ms.push(ms(started));
        }
        out["swap_ms"] = json!(swap_ms);
    }
    let maps = map_memory(&mut filter)?;
    out["maps"] = maps
        .iter()
        .map(|m| json!({"name": m.0, "memlock": m.1, "table": m.2}))
        .collect();
    out["maps_memlock"] = json!(maps.iter().map(|m| m.1).sum::<u64>());
    out["table_maps_memlock"] = json!(maps.iter().filter(|m| m.2).map(|m| m.1).sum::<u64>());
    if let Some(e) = error {
        out["install_error"] = json!(e);
    } else if !args.memory_only {
        let (testrun, limits) = in_kernel(&mut filter, &set, args)?;
        out["testrun"] = testrun;
        out["testrun_limits"] = limits;
    }
    Ok(out)
}

/// The flows of BPF_PROG_TEST_RUN rounds: `per_round` of them from the set.
struct RoundFlows<'a> {
    set: &'a PrefixSet,
    seed: u64,
    per_round: usize,
}

impl RoundFlows<'_> {
    /// One round's flows of `traffic`, drawn with `salt`.
    fn of(&self, traffic: Traffic, salt: u64) -> Vec<Flow> {
        flows(self.set, self.seed, traffic, self.per_round, salt)
    }

    /// A round's new-flow frames: the STUN request of each of fresh flows.
    fn new_flows(&self, base: u64, round: usize) -> Vec<Vec<u8>> {
        self.of(Traffic::Match, base + round as u64)
            .iter()
            .map(|fl| fl.stun_request(Dir::ToServer, 0))
            .collect()
    }
}

/// BPF_PROG_TEST_RUN cost of flowfilter by packet kind, and of the floors.
fn in_kernel(filter: &mut Filter, set: &PrefixSet, args: &KernelArgs) -> Result<(Value, Value)> {
    let prog: &Xdp = filter.xdp()?;
    let round_flows = RoundFlows {
        set,
        seed: args.seed,
        per_round: args.frames.max(1),
    };
    let mut kinds = serde_json::Map::new();
    if set.family() == 4 {
        ipv4_only_kinds(&mut kinds, prog, &round_flows, args.rounds)?;
    }
    kinds.insert(
        "udp-nomatch".into(),
        rounds(
            prog,
            &mut |round| {
                round_flows
                    .of(Traffic::NoMatch, 300 + round as u64)
                    .iter()
                    .map(|fl| fl.rtp(Dir::ToServer, 1, 160))
                    .collect()
            },
            args.rounds,
        )?,
    );
    kinds.insert(
        "udp-match-media-new-flow".into(),
        rounds(
            prog,
            &mut |round| round_flows.new_flows(400, round),
            args.rounds,
        )?,
    );
    // Tracked call flows: a round's worth, then as many as the live
    // traffic has (each back only once a round, as on the wire).
    let tracked = round_flows.of(Traffic::Match, 500);
    kinds.insert(
        "udp-tracked-call-flow".into(),
        tracked_rounds(prog, &tracked, args.rounds)?,
    );
    let live_flows = flows(
        set,
        args.seed,
        Traffic::Match,
        crate::live::DEFAULT_FLOWS,
        700,
    );
    kinds.insert(
        "udp-tracked-65536-calls".into(),
        tracked_rounds(prog, &live_flows, args.rounds)?,
    );
    let mut limits = floors(&round_flows, args.rounds)?;
    let bound_kinds = [
        ("udp-tracked-call-flow", &tracked[..]),
        ("udp-tracked-65536-calls", &live_flows[..]),
    ];
    limits.insert("bounds".into(), bounds(filter, &bound_kinds, args.rounds)?);
    Ok((Value::Object(kinds), Value::Object(limits)))
}

/// The benchmark's bounds (`xdp_bound_flow`: per-flow state and nothing
/// else; `xdp_bound_lookup`: the two prefix look-ups and nothing else),
/// run in the filter's own object on the flows it tracks: RTP of each
/// `(kind, flows)`, a round of one packet per flow, `n` rounds.
fn bounds(filter: &mut Filter, tracked: &[(&str, &[Flow])], n: usize) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for name in [
        filter_common::BOUND_FLOW_PROGRAM,
        filter_common::BOUND_LOOKUP_PROGRAM,
    ] {
        let prog: &Xdp = filter.sibling(name)?;
        let mut kinds = serde_json::Map::new();
        for (kind, flows) in tracked {
            kinds.insert((*kind).into(), rtp_rounds(prog, flows, 1000, n)?);
        }
        out.insert(name.into(), Value::Object(kinds));
    }
    Ok(Value::Object(out))
}

/// RTP on established call flows: each flow's STUN request first (not
/// timed), then a round of one RTP packet per flow, `n` rounds.
fn tracked_rounds(prog: &Xdp, tracked: &[Flow], n: usize) -> Result<Value> {
    for fl in tracked {
        test_run(prog, &fl.stun_request(Dir::ToServer, 0))?;
    }
    rtp_rounds(prog, tracked, 1, n)
}

/// `n` rounds of one RTP packet per flow, round `r` with sequence number
/// `first_seq + r`.
fn rtp_rounds(prog: &Xdp, flows: &[Flow], first_seq: u16, n: usize) -> Result<Value> {
    rounds(
        prog,
        &mut |round| {
            flows
                .iter()
                .map(|fl| fl.rtp(Dir::ToServer, first_seq.wrapping_add(round as u16), 160))
                .collect()
        },
        n,
    )
}

/// The kinds only an IPv4 set has (`non-ip`: ARP; `tcp`), into `kinds`.
fn ipv4_only_kinds(
    kinds: &mut serde_json::Map<String, Value>,
    prog: &Xdp,
    round_flows: &RoundFlows,
    n: usize,
) -> Result<()> {
    let mac = [2, 0, 0, 0, 0, 9];
    let v4 = |ip: Ip| match ip {
        Ip::V4(a) => a.to_be_bytes(),
        Ip::V6(_) => [192, 0, 2, 1],
    };
    kinds.insert(
        "non-ip".into(),
        rounds(
            prog,
            &mut |round| {
                round_flows
                    .of(Traffic::Match, 100 + round as u64)
                    .iter()
                    .map(|fl| pktbuild::arp_request(mac, v4(fl.client), v4(fl.server)))
                    .collect()
            },
            n,
        )?,
    );
    kinds.insert(
        "tcp".into(),
        rounds(
            prog,
            &mut |round| {
                round_flows
                    .of(Traffic::Match, 200 + round as u64)
                    .iter()
                    .map(|fl| {
                        pktbuild::tcp4(v4(fl.client), fl.cport, v4(fl.server), 443, &filler(100, 1))
                    })
                    .collect()
            },
            n,
        )?,
    );
    Ok(())
}

/// The floors with the same method, on the new-flow frames.
fn floors(round_flows: &RoundFlows, n: usize) -> Result<serde_json::Map<String, Value>> {
    let mut limits = serde_json::Map::new();
    for name in [XDP_DROP_PROGRAM, XDP_PARSE_DROP_PROGRAM] {
        let mut obj = load_program(name)?;
        let v = rounds(
            program_of(&mut obj, name)?,
            &mut |round| round_flows.new_flows(600, round),
            n,
        )?;
        limits.insert(name.into(), v);
    }
    Ok(limits)
}

#[derive(Clone, Debug, clap::Args)]
pub struct FillArgs {
    /// Prefix set file (`ffbench set`).
    #[arg(long)]
    pub set: PathBuf,
    #[arg(long, default_value_t = crate::SEED)]
    pub seed: u64,
    /// xdp-filter's pinned IPv4 map.
    #[arg(long)]
    pub map: PathBuf,
}

/// xdp-filter's map flags: match as source and as destination.
const XDP_FILTER_SRC_DST: u64 = 0b11;

/// Put the set's target addresses into xdp-filter's IPv4 map, as exact
/// entries; refuse (reporting the capacity) when they do not fit.
pub fn fill_xdp_filter(a: &FillArgs) -> Result<Value> {
    let set = PrefixSet::read(&a.set)?;
    let data = MapData::from_pin(&a.map)
        .with_context(|| format!("opening xdp-filter's map {}", a.map.display()))?;
    let capacity = data.info()?.max_entries() as usize;
    if set.prefixes.len() > capacity {
        return Ok(json!({"filled": 0, "capacity": capacity}));
    }
    let mut map: PerCpuHashMap<MapData, u32, u64> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(data))?;
    let cpus = nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    let t = Instant::now();
    for i in 0..set.prefixes.len() {
        let key = u32::from_ne_bytes(set.target(i, a.seed).to_be_bytes());
        let v = PerCpuValues::try_from(vec![XDP_FILTER_SRC_DST; cpus])?;
        map.insert(key, v, 0)?;
    }
    Ok(json!({"filled": set.prefixes.len(), "capacity": capacity, "fill_ms": ms(t)}))
}
