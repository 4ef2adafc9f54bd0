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
//! Table generations: [`Filter::install_tables`] builds the tables, puts them in a
//! node pool made for them (a new inner map of `TRIE`, sized to what the
//! lists need) and the inactive generation's root block of `ROOT`, then
//! flips `STATE.generation` with one write. Nothing of the previous
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

use crate::dataplane::mapio::{BPF_F_INNER_MAP, BPF_F_MMAPABLE, Mmap, per_cpu_all};
use crate::dataplane::pins::{
    MapProblem, PinError, PinLayout, check_maps, object_map_defs, tag_hex,
};
use crate::dataplane::tables::{TableError, Tables};
use crate::lists::Cidr;

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

impl Filter {
    fn with_maps(ebpf: Option<Ebpf>, maps: HashMap<String, Map>) -> Filter {
        Filter {
            ebpf,
            pinned_prog: None,
            maps,
            pending: None,
            subscribers: None,
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
            .load(OBJECT)?;
        xdp_of(&mut ebpf)?.load()?;
        let maps = take_maps(&mut ebpf);
        let mut f = Filter::with_maps(Some(ebpf), maps);
        f.set_state(fresh_state())?;
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
        let _ = opts;
        let defs = object_map_defs(OBJECT, &[])?;
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
        loader.override_global(filter_common::GLOBAL_TRACE, &no_trace, true);
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
        let mut f = Filter::with_maps(Some(ebpf), maps);
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
        // A new STATE map is all zero: give it a seed, an epoch and a hash key.
        if f.state()? == State::default() {
            f.set_state(fresh_state())?;
        }
        Ok((f, startup))
    }

    /// Finish a start: pin recreated maps in place of the old pins, drop pins
    /// of maps this build does not have, move every pinned link to the newly
    /// loaded program (`bpf_link_update`: atomic, no gap) and pin it as
    /// `prog`. Call after [`Filter::install_tables`]. Nothing to do after adoption.
    pub fn commit(&mut self, layout: &PinLayout) -> Result<(), LoadError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        for name in &p.recreated {
            let path = layout.map(name);
            crate::dataplane::pins::remove_file(&path)?;
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
            crate::dataplane::pins::remove_file(&layout.map(name))?;
        }
        if p.program {
            for iface in layout.pinned_links()? {
                self.move_link(layout, &iface)?;
                log::info!("{iface}: the pinned link now runs the new program (bpf_link_update)");
            }
            crate::dataplane::pins::remove_file(&layout.prog())?;
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
            let defs = object_map_defs(OBJECT, &[])?;
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
        let mut f = Filter::with_maps(None, maps);
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

    /// Map an mmapable map of this instance.
    fn mmap(&self, name: &'static str, bytes: usize, writable: bool) -> Result<Mmap, LoadError> {
        let data = map_data(self.maps.get(name).ok_or(LoadError::Missing(name))?)
            .ok_or(LoadError::Missing(name))?;
        Mmap::new(data.fd().as_fd(), bytes, writable)
            .map_err(pinned_err(format!("mapping map {name} into memory")))
    }

    /// The node pool of generation `generation` (`None` before the first
    /// install into it).
    fn pool(&self, generation: u32) -> Result<Option<(MapData, u32)>, LoadError> {
        let m = self
            .maps
            .get(MAP_TRIE)
            .ok_or(LoadError::Missing(MAP_TRIE))?;
        let outer: ArrayOfMaps<&MapData, MapData> =
            ArrayOfMaps::try_from(m).map_err(map_err(MAP_TRIE))?;
        match outer.get(&(generation & 1), 0) {
            Ok(inner) => {
                let n = inner.info().map_err(map_err(MAP_TRIE))?.max_entries();
                Ok(Some((inner, n)))
            }
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_TRIE)(e)),
        }
    }

    /// The node pool of each generation that has one, as (generation, map).
    pub fn pool_maps(&self) -> Result<Vec<(u32, MapData)>, LoadError> {
        let mut out = Vec::new();
        for g in 0..2 {
            if let Some((m, _)) = self.pool(g)? {
                out.push((g, m));
            }
        }
        Ok(out)
    }

    /// The category of `addr` in the active generation, read from the maps
    /// with the program's own walk (`check` shows it beside the lists' answer).
    pub fn lookup(&self, addr: std::net::IpAddr) -> Result<u8, LoadError> {
        let generation = self.state()?.generation & 1;
        let root = self.mmap(MAP_ROOT, ROOT_ENTRIES as usize * 4, false)?;
        let pool = match self.pool(generation)? {
            Some((inner, n)) => Some((
                Mmap::new(inner.fd().as_fd(), n as usize * 64, false)
                    .map_err(pinned_err("mapping the node pool into memory"))?,
                n,
            )),
            None => None,
        };
        let mem = MappedTables {
            root: root.slice::<Entry>(ROOT_ENTRIES as usize),
            units: pool
                .as_ref()
                .map_or(&[], |(m, n)| m.slice::<Unit>(*n as usize)),
        };
        let (bytes, v6) = match addr {
            std::net::IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), false),
            std::net::IpAddr::V6(a) => (a.octets(), true),
        };
        Ok(filter_common::trie::lookup(&mem, generation, &bytes, v6))
    }

    /// Fill the inactive generation with `tables` and `policies` (by
    /// category id; categories not named get [`DEFAULT_POLICY`]), then flip
    /// to it with one write. A packet sees the old tables or the new ones,
    /// never a mix. On pinned maps the caller holds the writer lock
    /// (`control::lock::WriterLock`).
    pub fn install_tables(
        &mut self,
        tables: &Tables,
        policies: &BTreeMap<u8, Policy>,
    ) -> Result<GenerationInfo, LoadError> {
        let staged = self.stage_tables(tables, policies)?;
        self.flip(staged)
    }

    /// The first half of [`Filter::install_tables`]: fill the inactive
    /// generation with `tables` and `policies`. Nothing is in force until
    /// [`Filter::flip`]; a writer records the change (the state file) in
    /// between, so a change that cannot be recorded never goes live.
    pub fn stage_tables(
        &mut self,
        tables: &Tables,
        policies: &BTreeMap<u8, Policy>,
    ) -> Result<StagedGeneration, LoadError> {
        let next = (self.state()?.generation & 1) ^ 1;
        // The node pool: a new map of exactly the size needed.
        let n = u32::try_from(tables.units.len().max(1)).map_err(|_| TableError::TooManyUnits {
            max: filter_common::MAX_POOL_UNITS,
        })?;
        let pool: Array<MapData, Unit> =
            Array::create(n, BPF_F_MMAPABLE | BPF_F_INNER_MAP).map_err(map_err(MAP_TRIE))?;
        {
            let mut m = Mmap::new(pool.map().fd().as_fd(), n as usize * 64, true)
                .map_err(pinned_err("mapping a new node pool into memory"))?;
            m.slice_mut::<Unit>(tables.units.len())
                .copy_from_slice(&tables.units);
        }
        // The inactive generation's root blocks.
        {
            let mut root = self.mmap(MAP_ROOT, ROOT_ENTRIES as usize * 4, true)?;
            let r = root.slice_mut::<Entry>(ROOT_ENTRIES as usize);
            let v4 = root_index(next, false, 0) as usize;
            let v6 = root_index(next, true, 0) as usize;
            r[v4..v4 + ROOT_LEN as usize].copy_from_slice(&tables.root4);
            r[v6..v6 + ROOT_LEN as usize].copy_from_slice(&tables.root6);
        }
        {
            let m = self
                .maps
                .get_mut(MAP_TRIE)
                .ok_or(LoadError::Missing(MAP_TRIE))?;
            let mut outer: ArrayOfMaps<&mut MapData, Array<MapData, Unit>> =
                ArrayOfMaps::try_from(m).map_err(map_err(MAP_TRIE))?;
            outer.set(next, &pool, 0).map_err(map_err(MAP_TRIE))?;
        }
        // Policies of the new generation.
        {
            let mut pol = self.array_mut::<Policy>(MAP_POLICY)?;
            for cat in 0..CATEGORY_SLOTS {
                let p = policies
                    .get(&(cat as u8))
                    .copied()
                    .unwrap_or(DEFAULT_POLICY);
                pol.set(next * CATEGORY_SLOTS + cat, p, 0)
                    .map_err(map_err(MAP_POLICY))?;
            }
        }
        // Subscribers of the new generation; their `STATE` bits are written
        // with the flip.
        let mut sub_state = self.state()?;
        self.write_subscribers(&mut sub_state, next)?;
        Ok(StagedGeneration {
            sub_flags: sub_state.flags & (STATE_SUB_IFACE | STATE_SUB_PREFIX),
            sub_v4_len: sub_state.sub_v4_len,
            sub_v6_len: sub_state.sub_v6_len,
            info: GenerationInfo {
                generation: next,
                v4_prefixes: tables.v4_prefixes,
                v6_prefixes: tables.v6_prefixes,
                units: tables.units.len(),
                table_bytes: tables.memory_bytes(),
            },
            stateless: tables.units.len() <= filter_common::STATELESS_MAX_UNITS,
        })
    }

    /// Put a staged generation in force with one write of `STATE` (read
    /// again here: only the generation, its version, the stateless flag and
    /// the subscriber bits change). Call it right after [`Filter::stage_tables`], under the same lock.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taken so that one staging is flipped once"
    )]
    pub fn flip(&mut self, staged: StagedGeneration) -> Result<GenerationInfo, LoadError> {
        let mut state = self.state()?;
        state.generation = staged.info.generation;
        state.flags = (state.flags & !(STATE_SUB_IFACE | STATE_SUB_PREFIX)) | staged.sub_flags;
        state.sub_v4_len = staged.sub_v4_len;
        state.sub_v6_len = staged.sub_v6_len;
        state.version = state.version.wrapping_add(1);
        if staged.stateless {
            state.flags |= filter_common::STATE_STATELESS;
        } else {
            state.flags &= !filter_common::STATE_STATELESS;
        }
        self.set_state(state)?;
        Ok(staged.info)
    }

    /// Set who the subscribers are; written with the next install (the
    /// generation flip makes the change atomic with the tables). Refused
    /// when there are more prefixes than `SUBSCRIBER_CAPACITY`.
    pub fn set_subscribers(&mut self, subscribers: Subscribers) -> Result<(), LoadError> {
        let max = filter_common::SUBSCRIBER_CAPACITY as usize;
        if subscribers.prefixes.len() > max {
            return Err(LoadError::Input(format!(
                "{} subscriber prefixes; the limit is {max}",
                subscribers.prefixes.len()
            )));
        }
        self.subscribers = Some(subscribers);
        Ok(())
    }

    /// The active generation's subscriber prefixes.
    pub fn subscriber_prefixes(&self) -> Result<Vec<Cidr>, LoadError> {
        let generation = self.state()?.generation & 1;
        let m = self
            .maps
            .get(MAP_SUBSCRIBERS)
            .ok_or(LoadError::Missing(MAP_SUBSCRIBERS))?;
        let trie: LpmTrie<&MapData, SubscriberKey, u32> =
            LpmTrie::try_from(m).map_err(map_err(MAP_SUBSCRIBERS))?;
        let mut out = Vec::new();
        for k in trie.keys() {
            let k = k.map_err(map_err(MAP_SUBSCRIBERS))?;
            let (bits, data) = (k.prefix_len(), k.data());
            if u32::from(data[3]) != generation || bits < 32 {
                continue;
            }
            let bits = bits - 32;
            let mut a = [0u8; 16];
            a.copy_from_slice(&data[4..]);
            let v6 = std::net::Ipv6Addr::from(a);
            out.push(match v6.to_ipv4_mapped() {
                Some(v4) if bits >= 96 => Cidr::V4 {
                    addr: v4,
                    len: (bits - 96) as u8,
                },
                _ => Cidr::V6 {
                    addr: v6,
                    len: bits as u8,
                },
            });
        }
        out.sort();
        Ok(out)
    }

    /// Fill generation `next` of `SUBSCRIBERS` (what [`Filter::set_subscribers`]
    /// gave, else a copy of the active generation's) and set the subscriber
    /// bits of `state` (written by the caller with the flip).
    fn write_subscribers(&mut self, state: &mut State, next: u32) -> Result<(), LoadError> {
        let current = state.generation & 1;
        let m = self
            .maps
            .get_mut(MAP_SUBSCRIBERS)
            .ok_or(LoadError::Missing(MAP_SUBSCRIBERS))?;
        let mut trie: LpmTrie<&mut MapData, SubscriberKey, u32> =
            LpmTrie::try_from(m).map_err(map_err(MAP_SUBSCRIBERS))?;
        let mut keep = Vec::new();
        let mut stale = Vec::new();
        for k in trie.keys() {
            let k = k.map_err(map_err(MAP_SUBSCRIBERS))?;
            if u32::from(k.data()[3]) == next {
                stale.push(k);
            } else if u32::from(k.data()[3]) == current {
                keep.push(k);
            }
        }
        for k in &stale {
            trie.remove(k).map_err(map_err(MAP_SUBSCRIBERS))?;
        }
        match &self.subscribers {
            Some(sub) => {
                for c in &sub.prefixes {
                    let (bits, data) = subscriber_entry(next, c);
                    trie.insert(&LpmKey::new(bits, data), 1, 0)
                        .map_err(map_err(MAP_SUBSCRIBERS))?;
                }
                state.flags &= !(STATE_SUB_IFACE | STATE_SUB_PREFIX);
                state.flags |= if sub.by_interface {
                    STATE_SUB_IFACE
                } else {
                    STATE_SUB_PREFIX
                };
                state.sub_v4_len = sub.v4_len.min(32);
                state.sub_v6_len = sub.v6_len.min(128);
            }
            None => {
                for k in keep {
                    let mut data = k.data();
                    data[3] = next as u8;
                    trie.insert(&LpmKey::new(k.prefix_len(), data), 1, 0)
                        .map_err(map_err(MAP_SUBSCRIBERS))?;
                }
            }
        }
        Ok(())
    }

    /// Mark `ifindex` as facing subscribers (or not), keeping its counter
    /// slot (see [`Subscribers::by_interface`]).
    pub fn set_interface_inside(&mut self, ifindex: u32, inside: bool) -> Result<(), LoadError> {
        if ifindex >= IF_INDEX_LIMIT {
            return Err(LoadError::Input(format!(
                "ifindex {ifindex}: interfaces facing subscribers need an ifindex below {IF_INDEX_LIMIT}"
            )));
        }
        let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
        let v = m.get(&ifindex, 0).map_err(map_err(MAP_IF_SLOT))?;
        let v = if inside {
            v | IF_INSIDE
        } else {
            v & !IF_INSIDE
        };
        m.set(ifindex, v, 0).map_err(map_err(MAP_IF_SLOT))
    }

    /// Use `seed` for `flows=P%`, drawn again every `epoch_secs` of wall-clock
    /// time (0: never): gateways with the same seed pick the same
    /// subscribers.
    pub fn set_seed(&mut self, seed: u64, epoch_secs: u32) -> Result<(), LoadError> {
        let mut state = self.state()?;
        state.seed = seed;
        state.epoch_secs = epoch_secs;
        self.set_state(state)
    }

    /// Tell the program the wall-clock time (`unix_ns`, ns since 1970; the
    /// system clock when `None`) for the `flows=P%` epoch. The daemon calls
    /// this periodically, so clock steps are followed.
    pub fn set_wall_clock(&mut self, unix_ns: Option<u64>) -> Result<(), LoadError> {
        let mut state = self.state()?;
        state.wall_offset_ns = wall_offset_ns(unix_ns);
        self.set_state(state)
    }

    /// Forget the "has a category" bits of flows not seen for a rotation
    /// period (the daemon calls this every `FLOW_BITS_ROTATE_NS`).
    pub fn rotate_flow_bits(&mut self) -> Result<(), LoadError> {
        let mut state = self.state()?;
        let next = (state.flow_bits_half & 1) ^ 1;
        {
            let words = filter_common::FLOW_BITS_WORDS as usize;
            let mut bits = self.mmap(filter_common::MAP_FLOW_BITS, 2 * words * 8, true)?;
            let w = bits.slice_mut::<u64>(2 * words);
            let at = next as usize * words;
            w[at..at + words].fill(0);
        }
        state.flow_bits_half = next;
        self.set_state(state)
    }

    /// Forget endpoint and tag bits older than a rotation period: clear the
    /// half learning did not use and make it the one learning uses (the
    /// daemon calls this every `BITS_ROTATE_NS`).
    pub fn rotate_bits(&mut self) -> Result<(), LoadError> {
        let mut state = self.state()?;
        let next = (state.bits_half & 1) ^ 1;
        {
            let mut bits = self.mmap(MAP_BITS, BITS_WORDS as usize * 8, true)?;
            let w = bits.slice_mut::<u64>(BITS_WORDS as usize);
            let at = (next * ENDPOINT_BITS_WORDS) as usize;
            w[at..at + ENDPOINT_BITS_WORDS as usize].fill(0);
        }
        state.bits_half = next;
        self.set_state(state)
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

    /// Every slot of a per-CPU array, summed over CPUs.
    fn per_cpu_sums<T: aya::Pod + Default>(
        &self,
        name: &'static str,
        entries: u32,
        add: impl Fn(&T, &T) -> T,
    ) -> Result<Vec<T>, LoadError> {
        let data = map_data(self.maps.get(name).ok_or(LoadError::Missing(name))?)
            .ok_or(LoadError::Missing(name))?;
        let ncpu = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .map_err(pinned_err("counting the possible CPUs"))?;
        let all = per_cpu_all::<T>(data.fd().as_fd(), entries, ncpu)
            .map_err(pinned_err(format!("reading map {name}")))?;
        Ok(all
            .iter()
            .map(|cpus| cpus.iter().fold(T::default(), |a, v| add(&a, v)))
            .collect())
    }

    /// `COUNTERS`, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<Counter>, LoadError> {
        self.per_cpu_sums::<Counter>(MAP_COUNTERS, COUNTER_SLOTS, |a, b| Counter {
            packets: a.packets + b.packets,
            bytes: a.bytes + b.bytes,
        })
    }

    /// `EVENTS`, summed over CPUs.
    pub fn events(&self) -> Result<Vec<u64>, LoadError> {
        self.per_cpu_sums::<u64>(MAP_EVENTS, EVENT_SLOTS, |a, b| a + b)
    }

    /// Per-category counters summed over CPUs and interfaces, indexed by
    /// category id.
    pub fn category_stats(&self) -> Result<Vec<CatStats>, LoadError> {
        let c = self.counters()?;
        Ok((0..CATEGORY_SLOTS)
            .map(|cat| {
                (0..IF_SLOTS).fold(CatStats::default(), |a, s| {
                    sum_cat(&a, &cat_stats(&c, s, cat as u8))
                })
            })
            .collect())
    }

    /// One interface slot's per-category counters summed over CPUs, indexed
    /// by category id (slot 0: interfaces without a slot of their own).
    pub fn slot_stats(&self, slot: u32) -> Result<Vec<CatStats>, LoadError> {
        Ok(slot_cat_stats(&self.counters()?, slot))
    }

    /// Every counter of the program, each per-CPU map read once (one
    /// `BPF_MAP_LOOKUP_BATCH` each): what a report of all interface slots,
    /// labels and global totals needs, without reading `COUNTERS` per slot.
    pub fn counter_snapshot(&self) -> Result<CounterSnapshot, LoadError> {
        Ok(CounterSnapshot {
            counters: self.counters()?,
            events: self.events()?,
            labels: self.label_stats()?,
        })
    }

    /// The counter slot of every registered ifindex, as (ifindex, slot).
    pub fn interface_slots(&self) -> Result<Vec<(u32, u32)>, LoadError> {
        let m = self.array::<u32>(MAP_IF_SLOT)?;
        let mut out = Vec::new();
        for i in 0..IF_INDEX_LIMIT {
            // The slot, without the `IF_INSIDE` bit.
            let s = m.get(&i, 0).map_err(map_err(MAP_IF_SLOT))? & (IF_SLOTS - 1);
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
        self.zero_cat_stats((0..CATEGORY_SLOTS).map(|c| (slot, c as u8)))?;
        let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
        let inside = m.get(&ifindex, 0).map_err(map_err(MAP_IF_SLOT))? & IF_INSIDE;
        m.set(ifindex, slot | inside, 0)
            .map_err(map_err(MAP_IF_SLOT))?;
        Ok(Some(slot))
    }

    /// The counter slot for `ifindex`, taking over the slot of `old` (the
    /// index the same interface name had before it was re-created) so its
    /// counters go on; else [`Filter::register_interface`].
    pub fn reassign_interface(
        &mut self,
        old: Option<u32>,
        ifindex: u32,
    ) -> Result<Option<u32>, LoadError> {
        if let Some(old) = old.filter(|&o| o != ifindex)
            && ifindex < IF_INDEX_LIMIT
        {
            let slots = self.interface_slots()?;
            if let Some(&(_, slot)) = slots.iter().find(|(i, _)| *i == old)
                && !slots.iter().any(|(i, _)| *i == ifindex)
            {
                let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
                m.set(ifindex, slot, 0).map_err(map_err(MAP_IF_SLOT))?;
                m.set(old, 0, 0).map_err(map_err(MAP_IF_SLOT))?;
                return Ok(Some(slot));
            }
        }
        self.register_interface(ifindex)
    }

    /// Zero the counters of categories `ids` on every interface slot.
    pub fn reset_category_counters(&mut self, ids: &[u8]) -> Result<(), LoadError> {
        self.zero_cat_stats((0..IF_SLOTS).flat_map(|s| ids.iter().map(move |id| (s, *id))))
    }

    /// Zero the verdict slots of these (interface slot, category) pairs on
    /// every CPU.
    fn zero_cat_stats(
        &mut self,
        entries: impl Iterator<Item = (u32, u8)>,
    ) -> Result<(), LoadError> {
        let ncpu = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .map_err(pinned_err("counting the possible CPUs"))?;
        let m = self
            .maps
            .get_mut(MAP_COUNTERS)
            .ok_or(LoadError::Missing(MAP_COUNTERS))?;
        let mut m = PerCpuArray::<_, Counter>::try_from(m).map_err(map_err(MAP_COUNTERS))?;
        for (slot, cat) in entries {
            for v in [V_DROP, V_MONITOR, V_PASS] {
                let zero = aya::maps::PerCpuValues::try_from(vec![Counter::default(); ncpu])
                    .map_err(pinned_err("per-CPU zero values"))?;
                m.set(verdict_slot(slot, cat, v), zero, 0)
                    .map_err(map_err(MAP_COUNTERS))?;
            }
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
        self.per_cpu_sums::<LabelStats>(MAP_LABEL_STATS, LABEL_SLOTS, |a, s| LabelStats {
            packets: a.packets + s.packets,
            bytes: a.bytes + s.bytes,
            dropped: a.dropped + s.dropped,
            monitored: a.monitored + s.monitored,
        })
    }

    /// Global counters summed over CPUs, indexed by `G_*`: totals of the
    /// per-packet counter slots and the event counts.
    pub fn global_stats(&self) -> Result<Vec<u64>, LoadError> {
        Ok(global_totals(&self.counters()?, &self.events()?))
    }

    /// The flow table and its keys, mapped read-only, with the hash key.
    fn flow_table(&self) -> Result<(Mmap, Mmap, u64), LoadError> {
        let flows = self.mmap(
            MAP_FLOWS,
            FLOW_BUCKETS as usize * std::mem::size_of::<FlowBucket>(),
            false,
        )?;
        let keys = self.mmap(
            MAP_FLOW_KEYS,
            FLOW_SLOTS as usize * std::mem::size_of::<FlowKey>(),
            false,
        )?;
        Ok((flows, keys, self.state()?.hash_key))
    }

    /// One flow's slot, if the flow is tracked with a category.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowSlot>, LoadError> {
        let (flows, _, hash_key) = self.flow_table()?;
        let tag = key_hash(key, hash_key);
        let buckets = flows.slice::<FlowBucket>(FLOW_BUCKETS as usize);
        let now = now_tick();
        Ok([bucket_of(tag), bucket_of2(tag)]
            .into_iter()
            .find_map(|i| {
                let b = &buckets[i as usize];
                find(b, tag).map(|w| b.slots[w])
            })
            .filter(|s| live(s, now) && s.category != 0))
    }

    /// Every tracked flow with a category (flows the table only caches, of
    /// no category, are left out), with its key.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowSlot)>, LoadError> {
        let mut out = Vec::new();
        self.each_flow(|k, s| out.push((*k, *s)))?;
        Ok(out)
    }

    /// Call `f` with each tracked flow with a category, read from the
    /// memory-mapped table (no syscall per slot).
    fn each_flow(&self, mut f: impl FnMut(&FlowKey, &FlowSlot)) -> Result<(), LoadError> {
        let (flows, keys, hash_key) = self.flow_table()?;
        let buckets = flows.slice::<FlowBucket>(FLOW_BUCKETS as usize);
        let keys = keys.slice::<FlowKey>(FLOW_SLOTS as usize);
        let now = now_tick();
        for (i, b) in buckets.iter().enumerate() {
            for (w, s) in b.slots.iter().enumerate() {
                if s.category == 0 || !live(s, now) {
                    continue;
                }
                // A copy, then a check that the key belongs to the slot
                // (both may be written while we read).
                let s = *s;
                let k = keys[i * 2 + w];
                if key_hash(&k, hash_key) == s.tag {
                    f(&k, &s);
                }
            }
        }
        Ok(())
    }

    /// Empty the flow table and the fragment state (tests: forget what
    /// packets taught).
    pub fn forget_flows(&mut self) -> Result<(), LoadError> {
        let mut flows = self.mmap(
            MAP_FLOWS,
            FLOW_BUCKETS as usize * std::mem::size_of::<FlowBucket>(),
            true,
        )?;
        flows
            .slice_mut::<FlowBucket>(FLOW_BUCKETS as usize)
            .fill(FlowBucket::default());
        let n = filter_common::FRAG_CAPACITY as usize;
        let mut frags = self.mmap(
            filter_common::MAP_FRAGS,
            n * std::mem::size_of::<filter_common::FragSlot>(),
            true,
        )?;
        frags
            .slice_mut::<filter_common::FragSlot>(n)
            .fill(filter_common::FragSlot::default());
        Ok(())
    }

    /// Tracked flows with a category, and the flow table's capacity
    /// (counted in place: nothing is collected).
    pub fn flow_occupancy(&self) -> Result<(u64, u32), LoadError> {
        let mut n = 0u64;
        self.each_flow(|_, _| n += 1)?;
        Ok((n, FLOW_SLOTS))
    }
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
