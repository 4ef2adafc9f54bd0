//! Loading the XDP program and driving its maps: table generations,
//! policies, counters, flows, BPF_PROG_TEST_RUN, and pinned instances.
//!
//! A [`Filter`] is one of three things:
//! - a private instance ([`Filter::load`]): loaded, never attached, maps
//!   unpinned; replay and the verdict tests use it;
//! - the daemon's instance ([`Filter::load_pinned`]): maps and program pinned
//!   under a pin directory (see [`crate::pins`]), adopted when already there,
//!   attached to interfaces through pinned bpf_links ([`Filter::attach`]);
//! - a CLI view of the pins ([`Filter::open_pinned`]): the pinned maps (and
//!   program, for its id and tag), nothing loaded.
//!
//! Maps are handled generically: every map of the object's map sections is
//! pinned and checked by name, whatever maps the program has.
//!
//! Table generations: [`Filter::install`] writes the inactive generation
//! and flips `STATE.generation` with one write. It must clear what that
//! generation held before; a private instance remembers it, a pinned one
//! (which other processes also write) reads it back from the maps before
//! every install: the IPv4 /16 rows that are not all zero and the keys of
//! the generation's IPv6 trie.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{
    Array, HashMap as BpfHashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray,
};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{ProgramError, ProgramInfo, TestRun as _, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};
use aya_obj::programs::XdpAttachType;
use filter_common::v4table::summarize;
use filter_common::{
    CATEGORY_SLOTS, CatStats, FlowKey, FlowValue, GENERATIONS, GLOBAL_SLOTS, IF_INDEX_LIMIT,
    IF_SLOTS, LABEL_SLOTS, LabelStats, MAP_FLOWS, MAP_GLOBAL_STATS, MAP_IF_CAT_STATS, MAP_IF_SLOT,
    MAP_LABEL_STATS, MAP_PKT_TRACE, MAP_POLICY, MAP_STATE, MAP_V4_TBL8, MAP_V4_TBL16, MAP_V4_TBL24,
    MAP_V6_LPM0, MAP_V6_LPM1, PROGRAM_NAME, PktTrace, Policy, State, V4_CHUNKS_PER_GEN, V4_ROW_LEN,
    V4_ROWS,
};

use crate::lists::Lists;
use crate::pins::{MapProblem, PinError, PinLayout, check_maps, object_map_defs, tag_hex};
use crate::policy::PolicySpec;
use crate::tables::{TableError, build_tables};

/// The compiled XDP object, built by `build.rs` through aya-build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowfilter"));

/// Maps that hold one table generation together. They are only meaningful
/// as a set (`STATE.generation` says which half of the others is live), so
/// when `--replace` must recreate one of them it recreates all of them.
pub const TABLE_MAPS: [&str; 6] = [
    MAP_STATE,
    MAP_POLICY,
    MAP_V4_TBL24,
    MAP_V4_TBL8,
    MAP_V6_LPM0,
    MAP_V6_LPM1,
];

/// Default partial-restriction epoch written to a fresh `STATE`.
pub const DEFAULT_EPOCH_SECS: u32 = 3600;

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
    chunks_per_gen: u32,
    /// Other processes write these maps too (pinned): re-read what the
    /// inactive generation holds before each install.
    shared: bool,
    /// Rows written per generation, so a refill clears exactly those.
    rows_in_use: [BTreeSet<u16>; 2],
    /// IPv6 prefixes written per generation.
    v6_in_use: [Vec<LpmKey<[u8; 16]>>; 2],
    pending: Option<Pending>,
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

impl Filter {
    fn with_maps(
        ebpf: Option<Ebpf>,
        maps: HashMap<String, Map>,
        chunks_per_gen: u32,
        shared: bool,
    ) -> Filter {
        Filter {
            ebpf,
            pinned_prog: None,
            maps,
            chunks_per_gen,
            shared,
            rows_in_use: [BTreeSet::new(), BTreeSet::new()],
            v6_in_use: [Vec::new(), Vec::new()],
            pending: None,
        }
    }

    /// Load the program into the kernel (verify it), without attaching it.
    /// A private instance: maps are not pinned and nobody else writes them.
    pub fn load(opts: &LoadOptions) -> Result<Filter, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let trace = u8::from(opts.trace);
        let mut ebpf = EbpfLoader::new()
            .override_global(filter_common::GLOBAL_TRACE, &trace, true)
            .map_max_entries(MAP_V4_TBL8, GENERATIONS * opts.v4_chunks_per_gen)
            .load(OBJECT)?;
        xdp_of(&mut ebpf)?.load()?;
        let maps = take_maps(&mut ebpf);
        let mut f = Filter::with_maps(Some(ebpf), maps, opts.v4_chunks_per_gen, false);
        f.set_state(State {
            generation: 0,
            epoch_secs: DEFAULT_EPOCH_SECS,
            seed: seed_from_clock(),
        })?;
        Ok(f)
    }

    /// The daemon's start: adopt what is pinned under `layout` when it
    /// matches this build, else refuse ([`PinError::Mismatch`]) unless
    /// `replace`. Nothing pinned: create and pin the maps (the program is
    /// pinned by [`Filter::commit`]). The caller holds the directory lock.
    ///
    /// Pinned maps are checked against the object's definitions before aya
    /// opens them (it would reuse them blindly); the pinned program's tag is
    /// compared with the tag of the program loaded here. With `replace`,
    /// compatible maps are kept (counters, flows and tables survive) and the
    /// others recreated; if one of [`TABLE_MAPS`] must be recreated, all of
    /// them are. The swap happens in [`Filter::commit`], after the caller
    /// filled the tables, so the links never run a program on empty tables.
    pub fn load_pinned(
        opts: &LoadOptions,
        layout: &PinLayout,
        replace: bool,
    ) -> Result<(Filter, Startup), LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        layout.create()?;
        let in_use = layout.in_use()?;
        let nothing_pinned = !in_use && layout.pinned_maps()?.is_empty();
        let r = Filter::load_pinned_inner(opts, layout, replace, in_use, nothing_pinned);
        if r.is_err() && nothing_pinned {
            // aya pins new maps as it creates them: a failed first start
            // leaves nothing behind.
            let _ = layout.remove_all();
        }
        r
    }

    fn load_pinned_inner(
        opts: &LoadOptions,
        layout: &PinLayout,
        replace: bool,
        in_use: bool,
        nothing_pinned: bool,
    ) -> Result<(Filter, Startup), LoadError> {
        let tbl8 = GENERATIONS * opts.v4_chunks_per_gen;
        let defs = object_map_defs(OBJECT, &[(MAP_V4_TBL8, tbl8)])?;
        let problems: Vec<MapProblem> = if nothing_pinned {
            Vec::new()
        } else {
            check_maps(layout, &defs)?
        };
        if !problems.is_empty() && in_use && !replace {
            return Err(PinError::Mismatch {
                dir: layout.dir.clone(),
                problems: problems.iter().map(ToString::to_string).collect(),
            }
            .into());
        }
        // Maps to create anew (pinned at commit) and stale pins to drop.
        let mut recreate: BTreeSet<String> = BTreeSet::new();
        let mut extra = Vec::new();
        for p in &problems {
            match p {
                MapProblem::Extra { name } => extra.push(name.clone()),
                // Leftover maps of an unfinished start: a missing one is
                // simply created and pinned now.
                MapProblem::Missing { .. } if !in_use => {}
                other => {
                    recreate.insert(other.name().to_owned());
                }
            }
        }
        if TABLE_MAPS.iter().any(|m| recreate.contains(*m)) {
            recreate.extend(
                TABLE_MAPS
                    .iter()
                    .filter(|m| defs.iter().any(|d| d.name == **m))
                    .map(|m| (*m).to_owned()),
            );
        }

        let no_trace = 0u8;
        let mut loader = EbpfLoader::new();
        loader
            .override_global(filter_common::GLOBAL_TRACE, &no_trace, true)
            .map_max_entries(MAP_V4_TBL8, tbl8);
        for d in &defs {
            if !recreate.contains(&d.name) {
                loader.map_pin_path(d.name.as_str(), layout.map(&d.name));
            }
        }
        let mut ebpf = loader.load(OBJECT)?;
        let prog = xdp_of(&mut ebpf)?;
        prog.load()?;
        let new_tag = prog.info()?.tag();

        let old = if layout.has_program() {
            Some(
                ProgramInfo::from_pin(layout.prog())
                    .map_err(pinned_err(format!("reading {}", layout.prog().display())))?,
            )
        } else {
            None
        };
        let mut problem_lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        if let Some(old) = &old
            && old.tag() != new_tag
        {
            problem_lines.push(format!(
                "program: pinned tag {} (id {}), this build {}",
                tag_hex(old.tag()),
                old.id(),
                tag_hex(new_tag)
            ));
            if !replace {
                return Err(PinError::Mismatch {
                    dir: layout.dir.clone(),
                    problems: problem_lines,
                }
                .into());
            }
        }

        let maps = take_maps(&mut ebpf);
        let mut f = Filter::with_maps(Some(ebpf), maps, opts.v4_chunks_per_gen, true);
        let startup = match old {
            Some(old) if !replace && recreate.is_empty() => {
                // Adopt: keep the pinned program (same id); the one loaded
                // here only told us the tag.
                f.ebpf = None;
                f.pinned_prog = Some(
                    Xdp::from_pin(layout.prog(), XdpAttachType::Interface)
                        .map_err(pinned_err(format!("opening {}", layout.prog().display())))?,
                );
                f.pending = Some(Pending {
                    extra,
                    ..Pending::default()
                });
                Startup::Adopted {
                    program_id: old.id(),
                }
            }
            old => {
                f.pending = Some(Pending {
                    recreated: recreate.iter().cloned().collect(),
                    extra,
                    program: true,
                });
                if nothing_pinned {
                    Startup::Fresh
                } else {
                    Startup::Replacing {
                        old_program_id: old.map(|o| o.id()),
                        recreated: recreate.into_iter().collect(),
                        problems: problem_lines,
                    }
                }
            }
        };
        // A new STATE map is all zero: give it a seed and an epoch.
        if f.state()? == State::default() {
            f.set_state(State {
                generation: 0,
                epoch_secs: DEFAULT_EPOCH_SECS,
                seed: seed_from_clock(),
            })?;
        }
        Ok((f, startup))
    }

    /// Finish a start: pin recreated maps in place of the old pins, drop pins
    /// of maps this build does not have, move every pinned link to the newly
    /// loaded program (`bpf_link_update`: atomic, no gap) and pin it as
    /// `prog`. Call after [`Filter::install`]. Nothing to do after adoption.
    pub fn commit(&mut self, layout: &PinLayout) -> Result<(), LoadError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        for name in &p.recreated {
            let path = layout.map(name);
            crate::pins::remove_file(&path)?;
            self.maps
                .get(name)
                .ok_or_else(|| LoadError::Pinned {
                    what: format!("pinning map {name}"),
                    source: "not in the loaded object".into(),
                })?
                .pin(&path)
                .map_err(pinned_err(format!("pinning {}", path.display())))?;
        }
        for name in &p.extra {
            crate::pins::remove_file(&layout.map(name))?;
        }
        if p.program {
            for iface in layout.pinned_links()? {
                self.move_link(layout, &iface)?;
                log::info!("{iface}: the pinned link now runs the new program (bpf_link_update)");
            }
            crate::pins::remove_file(&layout.prog())?;
            let path = layout.prog();
            self.xdp()?
                .pin(&path)
                .map_err(pinned_err(format!("pinning {}", path.display())))?;
        }
        Ok(())
    }

    /// Point the pinned link of `iface` at this instance's program.
    fn move_link(&mut self, layout: &PinLayout, iface: &str) -> Result<(), LoadError> {
        let path = layout.link(iface);
        let pinned = PinnedLink::from_pin(&path)
            .map_err(pinned_err(format!("opening {}", path.display())))?;
        let fd: FdLink = pinned.into();
        let link = XdpLink::try_from(fd)
            .map_err(pinned_err(format!("{} is not an XDP link", path.display())))?;
        let prog = self.xdp()?;
        let id = prog
            .attach_to_link(link)
            .map_err(|source| LoadError::Attach {
                iface: iface.to_owned(),
                source,
            })?;
        // The pin keeps the link; our handle only closes its descriptor.
        drop(prog.take_link(id)?);
        Ok(())
    }

    /// Attach to `iface` with a bpf_link pinned at `links/IFACE`, unless a
    /// pinned link is already there (then it is adopted, or moved to this
    /// program if it runs another one). The caller resolves the interface
    /// in the right network namespace (the kernel reads the ifindex in the
    /// calling thread's namespace).
    pub fn attach(
        &mut self,
        layout: &PinLayout,
        iface: &str,
        mode: AttachMode,
    ) -> Result<Attached, LoadError> {
        let path = layout.link(iface);
        if path.exists() {
            let pinned = PinnedLink::from_pin(&path)
                .map_err(pinned_err(format!("opening {}", path.display())))?;
            let fd: FdLink = pinned.into();
            let linked = fd
                .info()
                .map_err(pinned_err(format!("reading {}", path.display())))?
                .program_id();
            drop(fd);
            let ours = self.program_info()?.id();
            if linked == ours {
                return Ok(Attached::Adopted);
            }
            self.move_link(layout, iface)?;
            return Ok(Attached::Updated {
                old_program_id: linked,
            });
        }
        let attach = |f: &mut Filter, m: XdpMode| -> Result<(), LoadError> {
            let prog = f.xdp()?;
            let id = prog.attach(iface, m).map_err(|source| LoadError::Attach {
                iface: iface.to_owned(),
                source,
            })?;
            let link = prog.take_link(id)?;
            let fd = FdLink::try_from(link).map_err(|_: LinkError| LoadError::NotPinnable {
                iface: iface.to_owned(),
            })?;
            fd.pin(&path)
                .map_err(pinned_err(format!("pinning {}", path.display())))?;
            Ok(())
        };
        match mode {
            AttachMode::Driver => attach(self, XdpMode::Driver).map(|()| Attached::New {
                mode: AttachMode::Driver,
                fallback: None,
            }),
            AttachMode::Skb => attach(self, XdpMode::Skb).map(|()| Attached::New {
                mode: AttachMode::Skb,
                fallback: None,
            }),
            AttachMode::Auto => match attach(self, XdpMode::Driver) {
                Ok(()) => Ok(Attached::New {
                    mode: AttachMode::Driver,
                    fallback: None,
                }),
                Err(e) => {
                    let reason = error_chain(&e);
                    attach(self, XdpMode::Skb)?;
                    Ok(Attached::New {
                        mode: AttachMode::Skb,
                        fallback: Some(reason),
                    })
                }
            },
        }
    }

    /// A read-only or writing view of the pins under `layout`, without
    /// loading anything (CLI verbs). With `check`, the pinned maps must match
    /// this build (writers use it: a different build's maps are not written).
    pub fn open_pinned(layout: &PinLayout, check: bool) -> Result<Filter, LoadError> {
        layout.require()?;
        if check {
            if OBJECT.is_empty() {
                return Err(LoadError::NoObject);
            }
            let tbl8 = crate::pins::pinned_map_def(&layout.map(MAP_V4_TBL8), MAP_V4_TBL8)
                .map_or(GENERATIONS * V4_CHUNKS_PER_GEN, |d| d.max_entries);
            let defs = object_map_defs(OBJECT, &[(MAP_V4_TBL8, tbl8)])?;
            let problems = check_maps(layout, &defs)?;
            if !problems.is_empty() {
                return Err(PinError::Mismatch {
                    dir: layout.dir.clone(),
                    problems: problems.iter().map(ToString::to_string).collect(),
                }
                .into());
            }
        }
        let mut maps = HashMap::new();
        for name in layout.pinned_maps()? {
            let path = layout.map(&name);
            let data = MapData::from_pin(&path)
                .map_err(pinned_err(format!("opening {}", path.display())))?;
            let map = Map::from_map_data(data)
                .map_err(pinned_err(format!("opening {}", path.display())))?;
            maps.insert(name, map);
        }
        let chunks_per_gen = crate::pins::pinned_map_def(&layout.map(MAP_V4_TBL8), MAP_V4_TBL8)
            .map(|d| d.max_entries / GENERATIONS)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(V4_CHUNKS_PER_GEN);
        let mut f = Filter::with_maps(None, maps, chunks_per_gen, true);
        if layout.has_program() {
            f.pinned_prog = Some(
                Xdp::from_pin(layout.prog(), XdpAttachType::Interface)
                    .map_err(pinned_err(format!("opening {}", layout.prog().display())))?,
            );
        }
        Ok(f)
    }

    /// The XDP program.
    pub fn xdp(&mut self) -> Result<&mut Xdp, LoadError> {
        if let Some(p) = self.pinned_prog.as_mut() {
            return Ok(p);
        }
        match self.ebpf.as_mut() {
            Some(e) => xdp_of(e),
            None => Err(LoadError::Missing("program")),
        }
    }

    fn xdp_ref(&self) -> Result<&Xdp, LoadError> {
        if let Some(p) = self.pinned_prog.as_ref() {
            return Ok(p);
        }
        Ok(self
            .ebpf
            .as_ref()
            .ok_or(LoadError::Missing("program"))?
            .program(PROGRAM_NAME)
            .ok_or(LoadError::Missing("program"))?
            .try_into()?)
    }

    /// The kernel's description of the program (id, tag, ...).
    pub fn program_info(&self) -> Result<ProgramInfo, LoadError> {
        Ok(self.xdp_ref()?.info()?)
    }

    /// Whether this instance has a program (a CLI view may have none).
    pub fn has_program(&self) -> bool {
        self.xdp_ref().is_ok()
    }

    /// Instructions the verifier processed (kernel's `verified_insns`).
    pub fn verified_instructions(&self) -> Option<u32> {
        self.xdp_ref()
            .ok()?
            .info()
            .ok()?
            .verified_instruction_count()
    }

    /// A map by name (any map of the object, generically).
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.get(name)
    }

    /// A map by name, writable.
    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.maps.get_mut(name)
    }

    /// Names of the instance's maps, sorted.
    pub fn map_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.maps.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// /24 chunks per generation of this instance.
    pub fn chunks_per_gen(&self) -> u32 {
        self.chunks_per_gen
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
        let m = self.maps.get(name).ok_or(LoadError::Missing(name))?;
        Array::try_from(m).map_err(map_err(name))
    }

    fn array_mut<T: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, T>, LoadError> {
        let m = self.maps.get_mut(name).ok_or(LoadError::Missing(name))?;
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

    /// The policy of category `cat` in the active generation.
    pub fn policy(&self, cat: u8) -> Result<Policy, LoadError> {
        let generation = self.state()?.generation & 1;
        self.array::<Policy>(MAP_POLICY)?
            .get(&(generation * CATEGORY_SLOTS + u32::from(cat)), 0)
            .map_err(map_err(MAP_POLICY))
    }

    /// Read back what generation `generation` holds: the IPv4 rows that are
    /// not all zero and the IPv6 trie's keys. Pinned tables are written by
    /// other processes too, so this runs before every install there.
    pub fn recover_usage(&mut self, generation: u32) -> Result<(), LoadError> {
        let g = generation & 1;
        let mut rows = BTreeSet::new();
        {
            let tbl = self.array::<[u32; V4_ROW_LEN]>(MAP_V4_TBL24)?;
            for r in 0..V4_ROWS {
                let row = tbl
                    .get(&(g * V4_ROWS + r), 0)
                    .map_err(map_err(MAP_V4_TBL24))?;
                if row.iter().any(|&e| e != 0) {
                    rows.insert(r as u16);
                }
            }
        }
        let name = if g == 0 { MAP_V6_LPM0 } else { MAP_V6_LPM1 };
        let keys = {
            let m = self.maps.get(name).ok_or(LoadError::Missing(name))?;
            let trie: LpmTrie<&MapData, [u8; 16], u8> =
                LpmTrie::try_from(m).map_err(map_err(name))?;
            trie.keys()
                .collect::<Result<Vec<_>, MapError>>()
                .map_err(map_err(name))?
        };
        self.rows_in_use[g as usize] = rows;
        self.v6_in_use[g as usize] = keys;
        Ok(())
    }

    /// The category of `addr` in the active generation, read from the maps
    /// as the program reads them (`check` shows it beside the lists' answer).
    pub fn lookup(&self, addr: std::net::IpAddr) -> Result<u8, LoadError> {
        use filter_common::v4table::{
            V4_ROW_DETAIL, V4Entry, chunk_slot, decode, row_index, row_slot,
        };
        let generation = self.state()?.generation & 1;
        match addr {
            std::net::IpAddr::V4(a) => {
                let a = u32::from(a);
                let summary = self
                    .array::<u32>(MAP_V4_TBL16)?
                    .get(&row_index(generation, a), 0)
                    .map_err(map_err(MAP_V4_TBL16))?;
                if summary & V4_ROW_DETAIL == 0 {
                    return Ok(summary as u8);
                }
                let row = self
                    .array::<[u32; V4_ROW_LEN]>(MAP_V4_TBL24)?
                    .get(&row_index(generation, a), 0)
                    .map_err(map_err(MAP_V4_TBL24))?;
                Ok(match decode(row[row_slot(a)]) {
                    V4Entry::Category(c) => c,
                    V4Entry::Chunk(i) => self
                        .array::<[u8; 256]>(MAP_V4_TBL8)?
                        .get(&i, 0)
                        .map_err(map_err(MAP_V4_TBL8))?[chunk_slot(a)],
                })
            }
            std::net::IpAddr::V6(a) => {
                let name = if generation == 0 {
                    MAP_V6_LPM0
                } else {
                    MAP_V6_LPM1
                };
                let m = self.maps.get(name).ok_or(LoadError::Missing(name))?;
                let trie: LpmTrie<&MapData, [u8; 16], u8> =
                    LpmTrie::try_from(m).map_err(map_err(name))?;
                match trie.get(&LpmKey::new(128, a.octets()), 0) {
                    Ok(c) => Ok(c),
                    Err(MapError::KeyNotFound) => Ok(filter_common::CAT_NONE),
                    Err(e) => Err(map_err(name)(e)),
                }
            }
        }
    }

    /// Fill the inactive generation with `lists` and `policies` (by category
    /// id; unnamed categories get the default `drop`), then flip to it with
    /// one write. A packet sees the old tables or the new ones, never a mix.
    /// On pinned maps the caller holds the directory lock.
    pub fn install(
        &mut self,
        lists: &Lists,
        policies: &BTreeMap<u8, PolicySpec>,
    ) -> Result<GenerationInfo, LoadError> {
        let mut state = self.state()?;
        let next = (state.generation & 1) ^ 1;
        let (v4, v6) = build_tables(lists, next * self.chunks_per_gen, self.chunks_per_gen)?;
        if self.shared {
            self.recover_usage(next)?;
        }

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
        // The /16 summaries in front of the rows: every row touched above.
        {
            let old: Vec<u16> = self.rows_in_use[next as usize].iter().copied().collect();
            let mut summary = self.array_mut::<u32>(MAP_V4_TBL16)?;
            for r in old {
                if !v4.rows.contains_key(&r) {
                    summary
                        .set(next * V4_ROWS + u32::from(r), 0, 0)
                        .map_err(map_err(MAP_V4_TBL16))?;
                }
            }
            for (r, row) in &v4.rows {
                summary
                    .set(next * V4_ROWS + u32::from(*r), summarize(row), 0)
                    .map_err(map_err(MAP_V4_TBL16))?;
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
            let m = self.maps.get_mut(name).ok_or(LoadError::Missing(name))?;
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
        let m = self.maps.get(name).ok_or(LoadError::Missing(name))?;
        PerCpuArray::try_from(m).map_err(map_err(name))
    }

    /// Per-category counters summed over CPUs and interfaces, indexed by
    /// category id.
    pub fn category_stats(&self) -> Result<Vec<CatStats>, LoadError> {
        let mut total = vec![CatStats::default(); CATEGORY_SLOTS as usize];
        for slot in 0..IF_SLOTS {
            for (t, s) in total.iter_mut().zip(self.slot_stats(slot)?) {
                *t = sum_cat(t, &s);
            }
        }
        Ok(total)
    }

    /// One interface slot's per-category counters summed over CPUs, indexed
    /// by category id (slot 0: interfaces without a slot of their own).
    pub fn slot_stats(&self, slot: u32) -> Result<Vec<CatStats>, LoadError> {
        let m = self.per_cpu::<CatStats>(MAP_IF_CAT_STATS)?;
        (0..CATEGORY_SLOTS)
            .map(|c| {
                let v = m
                    .get(&(slot * CATEGORY_SLOTS + c), 0)
                    .map_err(map_err(MAP_IF_CAT_STATS))?;
                Ok(v.iter().fold(CatStats::default(), |a, s| sum_cat(&a, s)))
            })
            .collect()
    }

    /// The counter slot of every registered ifindex, as (ifindex, slot).
    pub fn interface_slots(&self) -> Result<Vec<(u32, u32)>, LoadError> {
        let m = self.array::<u32>(MAP_IF_SLOT)?;
        let mut out = Vec::new();
        for i in 0..IF_INDEX_LIMIT {
            let s = m.get(&i, 0).map_err(map_err(MAP_IF_SLOT))?;
            if s != 0 {
                out.push((i, s));
            }
        }
        Ok(out)
    }

    /// Give `ifindex` a counter slot of its own, keeping the one it has.
    /// A new slot starts from zeroed counters. `None` when the ifindex is
    /// beyond `IF_INDEX_LIMIT` or every slot is taken (the interface then
    /// counts in slot 0).
    pub fn register_interface(&mut self, ifindex: u32) -> Result<Option<u32>, LoadError> {
        if ifindex >= IF_INDEX_LIMIT {
            return Ok(None);
        }
        let slots = self.interface_slots()?;
        if let Some((_, s)) = slots.iter().find(|(i, _)| *i == ifindex) {
            return Ok(Some(*s));
        }
        let Some(slot) = (1..IF_SLOTS).find(|s| slots.iter().all(|(_, t)| t != s)) else {
            return Ok(None);
        };
        self.zero_cat_stats((0..CATEGORY_SLOTS).map(|c| slot * CATEGORY_SLOTS + c))?;
        self.array_mut::<u32>(MAP_IF_SLOT)?
            .set(ifindex, slot, 0)
            .map_err(map_err(MAP_IF_SLOT))?;
        Ok(Some(slot))
    }

    /// Zero the counters of categories `ids` on every interface slot.
    pub fn reset_category_counters(&mut self, ids: &[u8]) -> Result<(), LoadError> {
        self.zero_cat_stats((0..IF_SLOTS).flat_map(|s| {
            ids.iter()
                .map(move |id| s * CATEGORY_SLOTS + u32::from(*id))
        }))
    }

    /// Zero these `IF_CAT_STATS` entries on every CPU.
    fn zero_cat_stats(&mut self, entries: impl Iterator<Item = u32>) -> Result<(), LoadError> {
        let ncpu = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .map_err(pinned_err("counting the possible CPUs"))?;
        let m = self
            .maps
            .get_mut(MAP_IF_CAT_STATS)
            .ok_or(LoadError::Missing(MAP_IF_CAT_STATS))?;
        let mut m = PerCpuArray::<_, CatStats>::try_from(m).map_err(map_err(MAP_IF_CAT_STATS))?;
        for i in entries {
            let zero = aya::maps::PerCpuValues::try_from(vec![CatStats::default(); ncpu])
                .map_err(pinned_err("per-CPU zero values"))?;
            m.set(i, zero, 0).map_err(map_err(MAP_IF_CAT_STATS))?;
        }
        Ok(())
    }

    /// Release the slots of every ifindex not in `keep` (interfaces no
    /// longer attached). Their counters stay until the slot is reused.
    pub fn release_interfaces(&mut self, keep: &[u32]) -> Result<(), LoadError> {
        let slots = self.interface_slots()?;
        let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
        for (i, _) in slots {
            if !keep.contains(&i) {
                m.set(i, 0, 0).map_err(map_err(MAP_IF_SLOT))?;
            }
        }
        Ok(())
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

    fn flow_map(&self) -> Result<BpfHashMap<&MapData, FlowKey, FlowValue>, LoadError> {
        let m = self
            .maps
            .get(MAP_FLOWS)
            .ok_or(LoadError::Missing(MAP_FLOWS))?;
        BpfHashMap::try_from(m).map_err(map_err(MAP_FLOWS))
    }

    /// One flow's entry, if tracked.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowValue>, LoadError> {
        match self.flow_map()?.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_FLOWS)(e)),
        }
    }

    /// Every tracked flow.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, LoadError> {
        self.flow_map()?
            .iter()
            .filter_map(|r| match r {
                Ok(kv) => Some(Ok(kv)),
                Err(MapError::KeyNotFound) => None,
                Err(e) => Some(Err(map_err(MAP_FLOWS)(e))),
            })
            .collect()
    }

    /// Tracked flows and the flow table's capacity.
    pub fn flow_occupancy(&self) -> Result<(u64, u32), LoadError> {
        let flows = self.flow_map()?;
        let capacity = flows
            .map()
            .info()
            .map_err(map_err(MAP_FLOWS))?
            .max_entries();
        let n = flows
            .keys()
            .filter(|k| !matches!(k, Err(MapError::KeyNotFound)))
            .count() as u64;
        Ok((n, capacity))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_modes_parse_and_show() {
        for (s, m) in [
            ("auto", AttachMode::Auto),
            ("driver", AttachMode::Driver),
            ("native", AttachMode::Driver),
            ("skb", AttachMode::Skb),
            ("generic", AttachMode::Skb),
        ] {
            assert_eq!(s.parse::<AttachMode>().unwrap(), m);
        }
        assert_eq!(AttachMode::Skb.to_string(), "skb");
        assert_eq!(
            "hw".parse::<AttachMode>().unwrap_err(),
            "`hw` is not an attach mode (auto, driver or skb)"
        );
    }

    #[test]
    fn error_chain_joins_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
