//! Loading the eBPF object, adopting pinned maps and links, attaching and pinning; running the program once (test run).

use super::*;
use crate::dataplane::pins::MapDef;

impl Filter {
    pub(super) fn with_maps(ebpf: Option<Ebpf>, maps: HashMap<String, Map>) -> Filter {
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

    pub(super) fn load_pinned_inner(
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
        let (recreate, extra) = maps_to_recreate(&problems, &defs, in_use);
        let (mut ebpf, new_tag) = load_with_pins(layout, &defs, &recreate)?;
        let old = pinned_program(layout)?;
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
            Some(old) if !replace && recreate.is_empty() => f.adopt(layout, &old, extra)?,
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

    /// Adopt the pinned program `old` (same id); the one loaded here only
    /// told its tag.
    fn adopt(
        &mut self,
        layout: &PinLayout,
        old: &ProgramInfo,
        extra: Vec<String>,
    ) -> Result<Startup, LoadError> {
        self.ebpf = None;
        self.pinned_prog = Some(
            Xdp::from_pin(layout.prog(), XdpAttachType::Interface)
                .map_err(pinned_err(format!("opening {}", layout.prog().display())))?,
        );
        self.pending = Some(Pending {
            extra,
            ..Pending::default()
        });
        Ok(Startup::Adopted {
            program_id: old.id(),
        })
    }

    /// Finish a start: pin recreated maps in place of the old pins, drop pins
    /// of maps this build does not have, move every pinned link to the newly
    /// loaded program (`bpf_link_update`: atomic, no gap) and pin it as
    /// `prog`. Call after the first [`Filter::flip`]. Nothing to do after adoption.
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
    pub(super) fn move_link(&mut self, layout: &PinLayout, iface: &str) -> Result<(), LoadError> {
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

    /// Another XDP program of this instance's object, verified on first
    /// use. It shares this instance's maps: the benchmark runs its bounds
    /// (`xdp_bound_flow`, `xdp_bound_lookup`) on the tables and flows the
    /// filter holds.
    pub fn sibling(&mut self, name: &str) -> Result<&mut Xdp, LoadError> {
        let e = self.ebpf.as_mut().ok_or(LoadError::Missing("program"))?;
        let p: &mut Xdp = e
            .program_mut(name)
            .ok_or(LoadError::Missing("program"))?
            .try_into()?;
        if p.fd().is_err() {
            p.load()?;
        }
        Ok(p)
    }

    pub(super) fn xdp_ref(&self) -> Result<&Xdp, LoadError> {
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
}

/// Maps to create anew (pinned at commit; all table maps if one of them)
/// and stale pins to drop, from the problems of the pinned maps.
fn maps_to_recreate(
    problems: &[MapProblem],
    defs: &[MapDef],
    in_use: bool,
) -> (BTreeSet<String>, Vec<String>) {
    let mut recreate: BTreeSet<String> = BTreeSet::new();
    let mut extra = Vec::new();
    for p in problems {
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
    (recreate, extra)
}

/// Load the object with every map not in `recreate` taken from its pin,
/// and the program into the kernel; its tag.
fn load_with_pins(
    layout: &PinLayout,
    defs: &[MapDef],
    recreate: &BTreeSet<String>,
) -> Result<(Ebpf, u64), LoadError> {
    let no_trace = 0u8;
    let mut loader = EbpfLoader::new();
    loader.override_global(filter_common::GLOBAL_TRACE, &no_trace, true);
    for d in defs {
        if !recreate.contains(&d.name) {
            loader.map_pin_path(d.name.as_str(), layout.map(&d.name));
        }
    }
    let mut ebpf = loader.load(OBJECT)?;
    let prog = xdp_of(&mut ebpf)?;
    prog.load()?;
    let tag = prog.info()?.tag();
    Ok((ebpf, tag))
}

/// The pinned program's info, if one is pinned.
fn pinned_program(layout: &PinLayout) -> Result<Option<ProgramInfo>, LoadError> {
    if !layout.has_program() {
        return Ok(None);
    }
    ProgramInfo::from_pin(layout.prog())
        .map(Some)
        .map_err(pinned_err(format!("reading {}", layout.prog().display())))
}
