//! Loading the XDP program and driving its maps: table generations,
//! policies, counters, flows, and BPF_PROG_TEST_RUN.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray};
use aya::programs::{ProgramError, TestRun as _, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfError, EbpfLoader};
use filter_common::{
    CATEGORY_SLOTS, CatStats, FlowKey, FlowValue, GENERATIONS, GLOBAL_SLOTS, LABEL_SLOTS,
    LabelStats, MAP_CAT_STATS, MAP_FLOWS, MAP_GLOBAL_STATS, MAP_LABEL_STATS, MAP_PKT_TRACE,
    MAP_POLICY, MAP_STATE, MAP_V4_TBL8, MAP_V4_TBL24, MAP_V6_LPM0, MAP_V6_LPM1, PROGRAM_NAME,
    PktTrace, Policy, State, V4_CHUNKS_PER_GEN, V4_ROW_LEN, V4_ROWS,
};

use crate::lists::Lists;
use crate::policy::PolicySpec;
use crate::tables::{TableError, build_tables};

/// The compiled XDP object, built by `build.rs` through aya-build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowfilter"));

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
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { map, source }
}

/// How to load the program.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Record each packet's decision in `PKT_TRACE` (replay).
    pub trace: bool,
    /// /24 blocks with longer prefixes per generation.
    pub v4_chunks_per_gen: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            trace: false,
            v4_chunks_per_gen: V4_CHUNKS_PER_GEN,
        }
    }
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
    /// /16 rows written.
    pub v4_rows: usize,
    /// /24 chunks written.
    pub v4_chunks: usize,
}

/// A loaded (not necessarily attached) instance of the program.
pub struct Filter {
    /// The aya handle; maps and program live as long as it does.
    pub ebpf: Ebpf,
    chunks_per_gen: u32,
    /// Rows written per generation, so a refill clears exactly those.
    rows_in_use: [BTreeSet<u16>; 2],
    /// IPv6 prefixes written per generation.
    v6_in_use: [Vec<LpmKey<[u8; 16]>>; 2],
}

impl Filter {
    /// Load the program into the kernel (verify it), without attaching it.
    pub fn load(opts: &LoadOptions) -> Result<Filter, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let trace = u8::from(opts.trace);
        let mut ebpf = EbpfLoader::new()
            .override_global(filter_common::GLOBAL_TRACE, &trace, true)
            .map_max_entries(MAP_V4_TBL8, GENERATIONS * opts.v4_chunks_per_gen)
            .load(OBJECT)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(LoadError::Missing("program"))?
            .try_into()?;
        prog.load()?;
        let mut f = Filter {
            ebpf,
            chunks_per_gen: opts.v4_chunks_per_gen,
            rows_in_use: [BTreeSet::new(), BTreeSet::new()],
            v6_in_use: [Vec::new(), Vec::new()],
        };
        f.set_state(State {
            generation: 0,
            epoch_secs: 3600,
            seed: seed_from_clock(),
        })?;
        Ok(f)
    }

    /// The XDP program.
    pub fn xdp(&mut self) -> Result<&mut Xdp, LoadError> {
        Ok(self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(LoadError::Missing("program"))?
            .try_into()?)
    }

    fn xdp_ref(&self) -> Result<&Xdp, LoadError> {
        Ok(self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(LoadError::Missing("program"))?
            .try_into()?)
    }

    /// Instructions the verifier processed (kernel's `verified_insns`).
    pub fn verified_instructions(&self) -> Option<u32> {
        self.xdp_ref()
            .ok()?
            .info()
            .ok()?
            .verified_instruction_count()
    }

    /// Run one frame through the program with BPF_PROG_TEST_RUN (never live
    /// frames: the packet does not leave the kernel). Returns the XDP verdict.
    pub fn run(&self, frame: &[u8]) -> Result<u32, LoadError> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        };
        Ok(self.xdp_ref()?.test_run(opts)?.return_value)
    }

    /// Run one frame `repeat` times; returns the kernel's average ns per run.
    pub fn run_timed(&self, frame: &[u8], repeat: u32) -> Result<(u32, f64), LoadError> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        };
        let r = self.xdp_ref()?.test_run(opts)?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    fn array<T: aya::Pod>(&self, name: &'static str) -> Result<Array<&MapData, T>, LoadError> {
        let m = self.ebpf.map(name).ok_or(LoadError::Missing(name))?;
        Array::try_from(m).map_err(map_err(name))
    }

    fn array_mut<T: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, T>, LoadError> {
        let m = self.ebpf.map_mut(name).ok_or(LoadError::Missing(name))?;
        Array::try_from(m).map_err(map_err(name))
    }

    /// The program's global state.
    pub fn state(&self) -> Result<State, LoadError> {
        self.array::<State>(MAP_STATE)?
            .get(&0, 0)
            .map_err(map_err(MAP_STATE))
    }

    /// Overwrite the global state (generation flip, epoch, seed).
    pub fn set_state(&mut self, s: State) -> Result<(), LoadError> {
        self.array_mut::<State>(MAP_STATE)?
            .set(0, s, 0)
            .map_err(map_err(MAP_STATE))
    }

    /// Fill the inactive generation with `lists` and `policies` (by category
    /// id; unnamed categories get the default `drop`), then flip to it with
    /// one write. A packet sees the old tables or the new ones, never a mix.
    pub fn install(
        &mut self,
        lists: &Lists,
        policies: &BTreeMap<u8, PolicySpec>,
    ) -> Result<GenerationInfo, LoadError> {
        let mut state = self.state()?;
        let next = (state.generation & 1) ^ 1;
        let (v4, v6) = build_tables(lists, next * self.chunks_per_gen, self.chunks_per_gen)?;

        // IPv4 rows: clear the rows this generation used last time, write the new ones.
        {
            let old: Vec<u16> = self.rows_in_use[next as usize].iter().copied().collect();
            let mut rows = self.array_mut::<[u32; V4_ROW_LEN]>(MAP_V4_TBL24)?;
            for r in old {
                if !v4.rows.contains_key(&r) {
                    rows.set(next * V4_ROWS + u32::from(r), [0u32; V4_ROW_LEN], 0)
                        .map_err(map_err(MAP_V4_TBL24))?;
                }
            }
            for (r, row) in &v4.rows {
                rows.set(next * V4_ROWS + u32::from(*r), **row, 0)
                    .map_err(map_err(MAP_V4_TBL24))?;
            }
        }
        self.rows_in_use[next as usize] = v4.rows.keys().copied().collect();
        {
            let mut chunks = self.array_mut::<[u8; 256]>(MAP_V4_TBL8)?;
            for (i, c) in v4.chunks.iter().enumerate() {
                chunks
                    .set(v4.chunk_base + i as u32, *c, 0)
                    .map_err(map_err(MAP_V4_TBL8))?;
            }
        }
        // IPv6: clear the trie of this generation, then insert.
        {
            let name = if next == 0 { MAP_V6_LPM0 } else { MAP_V6_LPM1 };
            let m = self.ebpf.map_mut(name).ok_or(LoadError::Missing(name))?;
            let mut trie: LpmTrie<&mut MapData, [u8; 16], u8> =
                LpmTrie::try_from(m).map_err(map_err(name))?;
            for k in &self.v6_in_use[next as usize] {
                match trie.remove(k) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err(name)(e)),
                }
            }
            let mut written = Vec::with_capacity(v6.entries.len());
            for (addr, len, cat) in &v6.entries {
                let k = LpmKey::new(u32::from(*len), addr.octets());
                trie.insert(&k, cat, 0).map_err(map_err(name))?;
                written.push(k);
            }
            self.v6_in_use[next as usize] = written;
        }
        // Policies of the new generation.
        {
            let mut pol = self.array_mut::<Policy>(MAP_POLICY)?;
            for cat in 0..CATEGORY_SLOTS {
                let p = policies.get(&(cat as u8)).copied().unwrap_or_default().0;
                pol.set(next * CATEGORY_SLOTS + cat, p, 0)
                    .map_err(map_err(MAP_POLICY))?;
            }
        }
        state.generation = next;
        self.set_state(state)?;
        Ok(GenerationInfo {
            generation: next,
            v4_prefixes: v4.prefix_count(),
            v6_prefixes: v6.entries.len(),
            v4_rows: v4.rows.len(),
            v4_chunks: v4.chunks.len(),
        })
    }

    /// The last packet's decision (loaded with `trace`).
    pub fn trace(&self) -> Result<PktTrace, LoadError> {
        self.array::<PktTrace>(MAP_PKT_TRACE)?
            .get(&0, 0)
            .map_err(map_err(MAP_PKT_TRACE))
    }

    /// Clear the trace record.
    pub fn clear_trace(&mut self) -> Result<(), LoadError> {
        self.array_mut::<PktTrace>(MAP_PKT_TRACE)?
            .set(0, PktTrace::default(), 0)
            .map_err(map_err(MAP_PKT_TRACE))
    }

    fn per_cpu<T: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<PerCpuArray<&MapData, T>, LoadError> {
        let m = self.ebpf.map(name).ok_or(LoadError::Missing(name))?;
        PerCpuArray::try_from(m).map_err(map_err(name))
    }

    /// Per-category counters summed over CPUs, indexed by category id.
    pub fn category_stats(&self) -> Result<Vec<CatStats>, LoadError> {
        let m = self.per_cpu::<CatStats>(MAP_CAT_STATS)?;
        (0..CATEGORY_SLOTS)
            .map(|i| {
                let v = m.get(&i, 0).map_err(map_err(MAP_CAT_STATS))?;
                Ok(v.iter().fold(CatStats::default(), |a, s| sum_cat(&a, s)))
            })
            .collect()
    }

    /// Per-label counters summed over CPUs, indexed by label id.
    pub fn label_stats(&self) -> Result<Vec<LabelStats>, LoadError> {
        let m = self.per_cpu::<LabelStats>(MAP_LABEL_STATS)?;
        (0..LABEL_SLOTS)
            .map(|i| {
                let v = m.get(&i, 0).map_err(map_err(MAP_LABEL_STATS))?;
                Ok(v.iter().fold(LabelStats::default(), |a, s| LabelStats {
                    packets: a.packets + s.packets,
                    bytes: a.bytes + s.bytes,
                    dropped: a.dropped + s.dropped,
                    monitored: a.monitored + s.monitored,
                }))
            })
            .collect()
    }

    /// Global counters summed over CPUs, indexed by `G_*`.
    pub fn global_stats(&self) -> Result<Vec<u64>, LoadError> {
        let m = self.per_cpu::<u64>(MAP_GLOBAL_STATS)?;
        (0..GLOBAL_SLOTS)
            .map(|i| {
                Ok(m.get(&i, 0)
                    .map_err(map_err(MAP_GLOBAL_STATS))?
                    .iter()
                    .sum())
            })
            .collect()
    }

    /// One flow's entry, if tracked.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowValue>, LoadError> {
        let m = self
            .ebpf
            .map(MAP_FLOWS)
            .ok_or(LoadError::Missing(MAP_FLOWS))?;
        let flows: BpfHashMap<&MapData, FlowKey, FlowValue> =
            BpfHashMap::try_from(m).map_err(map_err(MAP_FLOWS))?;
        match flows.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_FLOWS)(e)),
        }
    }

    /// Every tracked flow.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, LoadError> {
        let m = self
            .ebpf
            .map(MAP_FLOWS)
            .ok_or(LoadError::Missing(MAP_FLOWS))?;
        let flows: BpfHashMap<&MapData, FlowKey, FlowValue> =
            BpfHashMap::try_from(m).map_err(map_err(MAP_FLOWS))?;
        flows
            .iter()
            .filter_map(|r| match r {
                Ok(kv) => Some(Ok(kv)),
                Err(MapError::KeyNotFound) => None,
                Err(e) => Some(Err(map_err(MAP_FLOWS)(e))),
            })
            .collect()
    }
}

fn sum_cat(a: &CatStats, s: &CatStats) -> CatStats {
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
