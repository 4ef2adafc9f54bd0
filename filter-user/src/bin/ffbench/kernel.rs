//! In-kernel cost (BPF_PROG_TEST_RUN) and control plane (load, install,
//! swap, map memory) for one prefix set, plus filling xdp-filter's map.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
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
use filter_user::lists::{Lists, ParsedList};
use filter_user::loader::{Filter, LoadOptions, OBJECT};
use filter_user::tables::build_tables;
use serde_json::{Value, json};

use crate::sets::{PrefixSet, Traffic, flows, rtp_frame, stun_frame};
use crate::sys;

/// The trivial XDP_DROP program in the object.
pub const XDP_DROP_PROGRAM: &str = "xdp_drop";

/// The maps that hold the prefix tables (the node pools are inner maps of
/// TRIE, counted from the install's figures).
const TABLE_MAPS: [&str; 1] = ["ROOT"];

/// Load the object's `xdp_drop` program (its own instance of the object).
pub fn load_xdp_drop() -> Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("ffbench was built without the XDP object (AYA_BUILD_SKIP was set); rebuild it");
    }
    let mut obj = EbpfLoader::new()
        .load(OBJECT)
        .context("loading the XDP object")?;
    let prog: &mut Xdp = obj
        .program_mut(XDP_DROP_PROGRAM)
        .context("the XDP object has no xdp_drop program")?
        .try_into()?;
    prog.load().context("loading xdp_drop")?;
    Ok(obj)
}

/// The loaded `xdp_drop` program of [`load_xdp_drop`].
pub fn xdp_drop_of(obj: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(obj
        .program_mut(XDP_DROP_PROGRAM)
        .context("the XDP object has no xdp_drop program")?
        .try_into()?)
}

/// The set as flowfilter lists: one category (`whatsapp`), no allowlist.
pub fn lists_for(set: &PrefixSet) -> Result<Lists> {
    let list = ParsedList {
        v4: set
            .prefixes
            .iter()
            .map(|&(a, l)| (Ipv4Addr::from(a), l))
            .collect(),
        v6: Vec::new(),
        notes: Vec::new(),
    };
    Ok(Lists::from_parts(
        vec![("whatsapp".to_string(), list)],
        ParsedList::default(),
    )?)
}

/// Load flowfilter (sized for `set`) and install `set` with the default
/// policy (drop call media).
pub fn load_with_set(set: Option<&PrefixSet>) -> Result<Filter> {
    let mut f = Filter::load(&LoadOptions { trace: false }).context("loading flowfilter")?;
    if let Some(set) = set {
        f.install(&lists_for(set)?, &BTreeMap::new())
            .context("installing the prefix set")?;
    }
    Ok(f)
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

pub fn kernel(args: &KernelArgs) -> Result<Value> {
    let set = PrefixSet::read(&args.set)?;
    let lists = lists_for(&set)?;

    // Control plane.
    let started = Instant::now();
    let mut filter = Filter::load(&LoadOptions { trace: false }).context("loading flowfilter")?;
    let load_ms = ms(started);
    let mut build_ms = Vec::new();
    let mut table_bytes = 0;
    let mut units = 0;
    for _ in 0..args.swaps.max(1) {
        let started = Instant::now();
        let t = build_tables(&lists)?;
        build_ms.push(ms(started));
        table_bytes = t.memory_bytes();
        units = t.units.len();
    }
    let started = Instant::now();
    filter
        .install(&lists, &BTreeMap::new())
        .context("installing the prefix set")?;
    let first_install_ms = ms(started);
    let mut swap_ms = Vec::new();
    for _ in 0..args.swaps {
        let started = Instant::now();
        filter
            .install(&lists, &BTreeMap::new())
            .context("re-installing the prefix set")?;
        swap_ms.push(ms(started));
    }
    let maps = map_memory(&mut filter)?;
    let total: u64 = maps.iter().map(|m| m.1).sum();
    let tables: u64 = maps
        .iter()
        .filter(|m| TABLE_MAPS.contains(&m.0.as_str()))
        .map(|m| m.1)
        .sum();

    let (testrun, limit) = in_kernel(&mut filter, &set, args)?;
    Ok(json!({
        "prefixes": set.len(),
        "pool_units": units,
        "load_ms": load_ms,
        "build_ms": build_ms,
        "first_install_ms": first_install_ms,
        "swap_ms": swap_ms,
        "table_bytes_written": table_bytes,
        "maps": maps.iter().map(|m| json!({"name": m.0, "memlock": m.1})).collect::<Vec<_>>(),
        "maps_memlock": total,
        "table_maps_memlock": tables,
        "frames_per_round": args.frames.max(1),
        "testrun": testrun,
        "testrun_limit": limit,
    }))
}

/// BPF_PROG_TEST_RUN cost of flowfilter by packet kind, and of xdp_drop.
fn in_kernel(filter: &mut Filter, set: &PrefixSet, args: &KernelArgs) -> Result<(Value, Value)> {
    let prog: &Xdp = filter.xdp()?;
    let per_round = args.frames.max(1);
    let seed = args.seed;
    let frames = |traffic: Traffic, salt: u64| flows(set, seed, traffic, per_round, salt);
    let mac = [2, 0, 0, 0, 0, 9];
    let mut kinds = serde_json::Map::new();
    kinds.insert(
        "non-ip".into(),
        rounds(
            prog,
            &mut |round| {
                frames(Traffic::Match, 100 + round as u64)
                    .iter()
                    .map(|fl| {
                        pktbuild::arp_request(mac, fl.client.to_be_bytes(), fl.server.to_be_bytes())
                    })
                    .collect()
            },
            args.rounds,
        )?,
    );
    kinds.insert(
        "tcp".into(),
        rounds(
            prog,
            &mut |round| {
                frames(Traffic::Match, 200 + round as u64)
                    .iter()
                    .map(|fl| {
                        pktbuild::tcp4(
                            fl.client.to_be_bytes(),
                            fl.sport,
                            fl.server.to_be_bytes(),
                            443,
                            &filler(100, 1),
                        )
                    })
                    .collect()
            },
            args.rounds,
        )?,
    );
    kinds.insert(
        "udp-nomatch".into(),
        rounds(
            prog,
            &mut |round| {
                frames(Traffic::NoMatch, 300 + round as u64)
                    .iter()
                    .map(|fl| rtp_frame(fl, 1))
                    .collect()
            },
            args.rounds,
        )?,
    );
    kinds.insert(
        "udp-match-media-new-flow".into(),
        rounds(
            prog,
            &mut |round| {
                frames(Traffic::Match, 400 + round as u64)
                    .iter()
                    .map(stun_frame)
                    .collect()
            },
            args.rounds,
        )?,
    );
    // Tracked call flows: the STUN request of each flow first (not timed),
    // then RTP on those flows.
    let tracked = frames(Traffic::Match, 500);
    for fl in &tracked {
        test_run(prog, &stun_frame(fl))?;
    }
    kinds.insert(
        "udp-tracked-call-flow".into(),
        rounds(
            prog,
            &mut |round| {
                tracked
                    .iter()
                    .map(|fl| rtp_frame(fl, round as u16 + 1))
                    .collect()
            },
            args.rounds,
        )?,
    );

    // The limit with the same method: xdp_drop on matching frames.
    let mut drop_obj = load_xdp_drop()?;
    let limit = rounds(
        xdp_drop_of(&mut drop_obj)?,
        &mut |round| {
            frames(Traffic::Match, 600 + round as u64)
                .iter()
                .map(stun_frame)
                .collect()
        },
        args.rounds,
    )?;
    Ok((Value::Object(kinds), limit))
}

/// (name, memlock bytes) of every map the flowfilter program uses.
fn map_memory(f: &mut Filter) -> Result<Vec<(String, u64)>> {
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
        out.push((info.name_as_str().unwrap_or("?").to_string(), mem));
    }
    out.sort();
    Ok(out)
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
    if set.len() > capacity {
        return Ok(json!({"filled": 0, "capacity": capacity}));
    }
    let mut map: PerCpuHashMap<MapData, u32, u64> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(data))?;
    let cpus = nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    let t = Instant::now();
    for i in 0..set.len() {
        let key = u32::from_ne_bytes(set.target(i, a.seed).to_be_bytes());
        let v = PerCpuValues::try_from(vec![XDP_FILTER_SRC_DST; cpus])?;
        map.insert(key, v, 0)?;
    }
    Ok(json!({"filled": set.len(), "capacity": capacity, "fill_ms": ms(t)}))
}
