//! `flowfilter run`: the daemon.
//!
//! Start: read and validate the configuration, lists and policies (any error
//! stops here, nothing touched); mount bpffs if needed; take the pin
//! directory's lock; adopt the pins or create them ([`Filter::load_pinned`]);
//! install the tables; swap in a new program if `--replace`; attach each
//! interface through a pinned bpf_link (or adopt the link already there);
//! write the state file; release the lock.
//!
//! Then wait for signals. SIGHUP re-reads the configuration file and lists
//! and installs them through the double-buffered tables; a rejected reload
//! keeps the old rules, logs `file:line: what` and records it in the state
//! file (where `flowfilter reload` reads it). SIGTERM/SIGINT end the daemon
//! and leave filtering in force, unless `--detach-on-exit`. A crash or
//! `kill -9` leaves it in force too: the links are pinned, not held.
//!
//! Interface, mode, namespace, pin directory and metrics changes in the
//! configuration take effect at the next start (a reload says so).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use filter_common::{IF_INDEX_LIMIT, IF_SLOTS};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, Flags};
use crate::control::{Error, Prepared, Settings, describe, install, prepare, record};
use crate::loader::{Attached, Filter, GenerationInfo, LoadOptions, Startup};
use crate::pins::{DirLock, PinLayout, ensure_bpffs, in_initial_mount_namespace};
use crate::state::{DaemonInfo, FlagSettings, InterfaceState, StateFile, unix_now};

/// What `flowfilter run` was asked.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// Flags over the configuration.
    pub flags: Flags,
    /// `--replace`: swap the pinned program (and incompatible maps) for this
    /// build's.
    pub replace: bool,
}

/// Enters a network namespace for the calling thread; returns on drop.
struct NetnsGuard {
    original: File,
}

impl NetnsGuard {
    fn enter(name: &str) -> Result<NetnsGuard, Error> {
        let original = File::open("/proc/thread-self/ns/net")
            .map_err(Error::io("opening this thread's network namespace"))?;
        let path = Path::new("/run/netns").join(name);
        let target = File::open(&path).map_err(|e| {
            Error::Input(format!(
                "--netns {name}: {}: {e} (create it with `ip netns add {name}`)",
                path.display()
            ))
        })?;
        // SAFETY: valid descriptors; only this thread changes namespace.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(Error::io(format!("entering network namespace {name}"))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(NetnsGuard { original })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: valid descriptor of the namespace this thread came from.
        if unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            log::error!(
                "returning to the original network namespace: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Run the daemon until SIGTERM/SIGINT.
pub fn run(req: &RunRequest) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))?;
    rt.block_on(run_async(req))
}

/// The daemon's live parts.
struct Daemon {
    filter: Filter,
    layout: PinLayout,
    cfg: Config,
    req: RunRequest,
}

async fn run_async(req: &RunRequest) -> Result<(), Error> {
    let config = match &req.config {
        Some(p) => Some(std::path::absolute(p).map_err(Error::io(format!("{}", p.display())))?),
        None => None,
    };
    let file_cfg = match &config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let cfg = file_cfg.clone().merge(&req.flags);
    if cfg.interfaces.is_empty() {
        return Err(Error::Input(
            "no interface to attach to: give --iface IF (repeatable) or `interfaces` in the configuration".into(),
        ));
    }
    cfg.subscribers
        .check_inside(&cfg.interfaces)
        .map_err(Error::Input)?;
    let layout = PinLayout::new(&cfg.pin_dir);

    // The state of a previous run: its policy overrides and interface modes.
    let prev = match StateFile::read(&layout.dir) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("{e}; starting with a new state file");
            None
        }
    };
    if let Some(pid) = prev.as_ref().and_then(StateFile::live_daemon)
        && pid != std::process::id()
    {
        return Err(Error::Other(format!(
            "a flowfilter daemon (pid {pid}) already manages {}: stop it first, or use `flowfilter reload`",
            layout.dir.display()
        )));
    }
    let mut state = StateFile::new(&layout.dir);
    if let Some(p) = &prev {
        state.overrides.clone_from(&p.overrides);
        state.interfaces.clone_from(&p.interfaces);
        // Category ids stay as installed (pins adopted keep their counters).
        state.categories.clone_from(&p.categories);
        state.reload_serial = p.reload_serial;
        state.reloads_ok = p.reloads_ok;
        state.reloads_failed = p.reloads_failed;
    }
    state.config.clone_from(&config);
    state.flags = FlagSettings {
        lists: req.flags.lists.clone(),
        normalize: req.flags.normalize,
        policies: req
            .flags
            .policies
            .iter()
            .map(|p| (p.category.clone(), p.spec.to_string()))
            .collect(),
    };

    // Validate everything before touching the pins.
    let settings = Settings::new(&file_cfg, &state)?;
    let prepared = prepare(&settings)?;
    let listener = match cfg.metrics.as_ref().map(|m| m.0) {
        Some(addr) => Some(
            crate::metrics::bind(addr)
                .await
                .map_err(Error::io(format!("--metrics {addr}: cannot listen")))?,
        ),
        None => None,
    };

    let mounted = ensure_bpffs(&layout.dir)?;
    if mounted {
        log::info!("mounted bpffs at {}", crate::pins::BPFFS_ROOT);
        if !in_initial_mount_namespace() {
            log::warn!(
                "this process runs in its own mount namespace (`ip netns exec` makes one): the bpffs just mounted, and the pins in it, vanish when this daemon exits; use `flowfilter run --netns NAME` instead"
            );
        }
    }
    layout.create()?;
    let lock = DirLock::acquire(&layout.dir)?;
    // Another daemon may have finished starting while we waited for the lock.
    if let Ok(Some(now)) = StateFile::read(&layout.dir)
        && let Some(pid) = now.live_daemon()
        && pid != std::process::id()
    {
        return Err(Error::Other(format!(
            "a flowfilter daemon (pid {pid}) already manages {}: stop it first, or use `flowfilter reload`",
            layout.dir.display()
        )));
    }
    if cfg.v4_chunks_per_gen.is_some() {
        log::warn!(
            "configuration: v4_chunks_per_gen is no longer used (the prefix tables are sized to the lists); remove it"
        );
    }
    let opts = LoadOptions { trace: false };
    let (mut filter, startup) = Filter::load_pinned(&opts, &layout, req.replace)?;
    match &startup {
        Startup::Fresh => log::info!("nothing pinned at {}: starting anew", layout.dir.display()),
        Startup::Adopted { program_id } => log::info!(
            "adopted the pinned program {program_id} and maps at {}: filtering never stopped",
            layout.dir.display()
        ),
        Startup::Replacing {
            old_program_id,
            recreated,
            problems,
        } => {
            for p in problems {
                log::warn!("replacing: {p}");
            }
            log::info!(
                "replacing program {} with this build's; maps recreated: {}",
                old_program_id.map_or_else(|| "(none)".to_owned(), |i| i.to_string()),
                if recreated.is_empty() {
                    "none".to_owned()
                } else {
                    recreated.join(", ")
                }
            );
        }
    }
    let fresh = startup == Startup::Fresh;
    let started = (|| {
        subscribers_before_install(&mut filter, &cfg)?;
        let result = install(&mut filter, &prepared, &mut state);
        record(&mut state, result.as_ref().err(), "start");
        let info = result?;
        crate::subscribers::after_install(&mut filter, &cfg.subscribers)?;
        filter.commit(&layout)?;
        log::info!("{}", describe(&info, &prepared));
        attach_all(&mut filter, &layout, &cfg, &mut state)?;
        layout.restrict()?;
        Ok::<_, Error>(())
    })();
    if let Err(e) = started {
        if fresh {
            // Nothing ran before this start: leave nothing behind.
            if let Err(c) = layout.remove_all() {
                log::warn!("removing the pins of the failed start: {c}");
            }
        }
        return Err(e);
    }
    let program_id = filter.program_info()?.id();
    for name in layout.pinned_links()? {
        if !cfg.interfaces.contains(&name) {
            log::warn!(
                "a pinned link on {name} (from an earlier start) stays attached; `flowfilter detach --iface {name}` removes it"
            );
        }
    }
    state.daemon = Some(DaemonInfo {
        pid: std::process::id(),
        started: unix_now(),
        metrics: cfg.metrics.as_ref().map(|m| m.0.to_string()),
        detach_on_exit: cfg.detach_on_exit,
    });
    state.write()?;
    drop(lock);

    if let Some(listener) = listener {
        let view = Filter::open_pinned(&layout, false)?;
        let registry =
            crate::metrics::registry(crate::metrics::PinCollector::new(view, layout.clone()));
        log::info!(
            "metrics at http://{}/metrics",
            listener
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string())
        );
        tokio::spawn(crate::metrics::serve(listener, registry));
    }
    spawn_program_log(program_id);
    log::info!(
        "running (pid {}); SIGHUP or `flowfilter reload` reloads, SIGTERM stops{}",
        std::process::id(),
        if cfg.detach_on_exit {
            " and detaches"
        } else {
            " (filtering stays in force)"
        }
    );

    let mut daemon = Daemon {
        filter,
        layout,
        cfg,
        req: req.clone(),
    };
    daemon.serve().await
}

/// The index of `iface` in this thread's network namespace.
fn ifindex_of(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

/// Mark the configured interfaces facing subscribers (or not) and hand
/// the subscriber rule to the next install.
fn subscribers_before_install(filter: &mut Filter, cfg: &Config) -> Result<(), Error> {
    let marks: Vec<(u32, bool)> = {
        let _ns = cfg.netns.as_deref().map(NetnsGuard::enter).transpose()?;
        cfg.interfaces
            .iter()
            .filter_map(|i| ifindex_of(i).map(|x| (x, cfg.subscribers.inside.contains(i))))
            .collect()
    };
    crate::subscribers::before_install(filter, &cfg.subscribers, &marks)?;
    Ok(())
}

/// Attach every configured interface (inside `--netns` when given).
fn attach_all(
    filter: &mut Filter,
    layout: &PinLayout,
    cfg: &Config,
    state: &mut StateFile,
) -> Result<(), Error> {
    let _ns = cfg.netns.as_deref().map(NetnsGuard::enter).transpose()?;
    for iface in &cfg.interfaces {
        let attached = filter.attach(layout, iface, cfg.mode.0)?;
        let recorded = state
            .interfaces
            .iter()
            .find(|i| &i.name == iface)
            .map(|i| i.mode.clone());
        let mode = match &attached {
            Attached::New { mode, fallback } => {
                if let Some(why) = fallback {
                    log::warn!(
                        "{iface}: native (driver) XDP is not available ({why}); attached in generic (skb) mode, which is slower"
                    );
                }
                log::info!("{iface}: attached in {mode} mode, link pinned");
                mode.to_string()
            }
            Attached::Adopted => {
                log::info!("{iface}: adopted the pinned link");
                recorded.unwrap_or_else(|| "unknown".to_owned())
            }
            Attached::Updated { old_program_id } => {
                log::info!(
                    "{iface}: the pinned link ran program {old_program_id}; it runs ours now"
                );
                recorded.unwrap_or_else(|| "unknown".to_owned())
            }
        };
        let ifindex = ifindex_of(iface);
        let slot = match ifindex {
            Some(i) => filter.register_interface(i)?,
            None => None,
        };
        if slot.is_none() {
            log::warn!(
                "{iface}: no per-interface counter slot (ifindex {ifindex:?}, at most {} interfaces below ifindex {IF_INDEX_LIMIT}); its packets count under interface \"other\"",
                IF_SLOTS - 1
            );
        }
        state.interfaces.retain(|i| &i.name != iface);
        state.interfaces.push(InterfaceState {
            name: iface.clone(),
            mode,
            netns: cfg.netns.clone(),
            ifindex,
            slot,
        });
    }
    state
        .interfaces
        .retain(|i| layout.link(&i.name).exists() || cfg.interfaces.contains(&i.name));
    // Interfaces still linked from an earlier start keep their slots.
    let keep: Vec<u32> = state.interfaces.iter().filter_map(|i| i.ifindex).collect();
    filter.release_interfaces(&keep)?;
    Ok(())
}

/// Forward aya-log records of the program, if it has any, to our log.
fn spawn_program_log(program_id: u32) {
    match aya_log::EbpfLogger::init_from_id(program_id) {
        Ok(logger) => {
            // SAFETY: the logger owns its ring buffer's descriptor for as long
            // as the AsyncFd owns the logger.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    logger,
                    tokio::io::Interest::READABLE,
                )
            };
            match fd {
                Ok(mut fd) => {
                    tokio::spawn(async move {
                        loop {
                            let Ok(mut guard) = fd.readable_mut().await else {
                                return;
                            };
                            guard.get_inner_mut().flush();
                            guard.clear_ready();
                        }
                    });
                }
                Err(e) => log::warn!("reading the program's log: {e}"),
            }
        }
        Err(e) => log::debug!("no aya-log output from the program ({e})"),
    }
}

impl Daemon {
    async fn serve(&mut self) -> Result<(), Error> {
        let sig = |k: SignalKind| signal(k).map_err(Error::io("installing a signal handler"));
        let mut hup = sig(SignalKind::hangup())?;
        let mut term = sig(SignalKind::terminate())?;
        let mut int = sig(SignalKind::interrupt())?;
        let period = std::time::Duration::from_nanos(filter_common::BITS_ROTATE_NS);
        let mut rotate = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let period = std::time::Duration::from_nanos(filter_common::FLOW_BITS_ROTATE_NS);
        let mut rotate_flows =
            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = hup.recv() => self.reload(),
                _ = rotate.tick() => self.rotate_bits(),
                _ = rotate_flows.tick() => self.rotate_flow_bits(),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        self.exit()
    }

    /// Forget the "has a category" bits of flows gone for a period.
    fn rotate_flow_bits(&mut self) {
        let r = DirLock::acquire(&self.layout.dir)
            .map_err(|e| e.to_string())
            .and_then(|_lock| {
                // The wall clock of the `flows=P%` epoch follows clock steps.
                self.filter
                    .rotate_flow_bits()
                    .and_then(|()| self.filter.set_wall_clock(None))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = r {
            log::warn!("rotating the flow bits: {e}");
        }
    }

    /// Forget the endpoint and tag bits of the period before last, so the
    /// share of packets that look learned endpoints up does not only grow.
    fn rotate_bits(&mut self) {
        let r = DirLock::acquire(&self.layout.dir)
            .map_err(|e| e.to_string())
            .and_then(|_lock| self.filter.rotate_bits().map_err(|e| e.to_string()));
        match r {
            Ok(()) => log::debug!("endpoint and tag bits rotated"),
            Err(e) => log::warn!("rotating the endpoint and tag bits: {e}"),
        }
    }

    /// SIGHUP: re-read and install, or keep the old rules.
    fn reload(&mut self) {
        log::info!("SIGHUP: reloading configuration and lists");
        let lock = match DirLock::acquire(&self.layout.dir) {
            Ok(l) => l,
            Err(e) => {
                log::error!("reload: {e}");
                return;
            }
        };
        let mut state = match StateFile::read(&self.layout.dir) {
            Ok(Some(s)) => s,
            Ok(None) => {
                log::warn!("the state file was removed; writing a new one");
                let mut s = StateFile::new(&self.layout.dir);
                s.config.clone_from(&self.req.config);
                s
            }
            Err(e) => {
                log::error!("reload: {e}");
                return;
            }
        };
        let result: Result<(GenerationInfo, Prepared), Error> = (|| {
            let (settings, file_cfg) = Settings::from_state(&state)?;
            let now = file_cfg.merge(&self.req.flags);
            self.warn_static_changes(&now);
            now.subscribers
                .check_inside(&self.cfg.interfaces)
                .map_err(Error::Input)?;
            let p = prepare(&settings)?;
            // Interfaces and namespace stay as started; the subscriber rule
            // follows the file.
            let mut live = self.cfg.clone();
            live.subscribers = now.subscribers;
            subscribers_before_install(&mut self.filter, &live)?;
            let info = install(&mut self.filter, &p, &mut state)?;
            crate::subscribers::after_install(&mut self.filter, &live.subscribers)?;
            self.cfg.subscribers = live.subscribers;
            Ok((info, p))
        })();
        record(&mut state, result.as_ref().err(), "sighup");
        if let Err(e) = state.write() {
            log::error!("reload: {e}");
        }
        drop(lock);
        match result {
            Ok((info, p)) => log::info!("reloaded: {}", describe(&info, &p)),
            Err(e) => log::error!("reload rejected, the old rules stay in force: {e}"),
        }
    }

    fn warn_static_changes(&self, now: &Config) {
        let was = &self.cfg;
        let changed: Vec<&str> = [
            ("interfaces", now.interfaces != was.interfaces),
            ("mode", now.mode != was.mode),
            ("netns", now.netns != was.netns),
            ("pin_dir", now.pin_dir != was.pin_dir),
            ("metrics", now.metrics != was.metrics),
            ("detach_on_exit", now.detach_on_exit != was.detach_on_exit),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect();
        if !changed.is_empty() {
            log::warn!(
                "configuration changes of {} take effect at the next start",
                changed.join(", ")
            );
        }
    }

    /// SIGTERM/SIGINT.
    fn exit(&mut self) -> Result<(), Error> {
        let _lock = DirLock::acquire(&self.layout.dir)?;
        if self.cfg.detach_on_exit {
            self.layout.remove_all()?;
            StateFile::remove(&self.layout.dir)?;
            log::info!(
                "stopped; links and pins at {} removed (--detach-on-exit)",
                self.layout.dir.display()
            );
            return Ok(());
        }
        if let Some(mut s) = StateFile::read(&self.layout.dir)? {
            s.daemon = None;
            s.write()?;
        }
        log::info!(
            "stopped; filtering stays in force (pins at {}; `flowfilter detach` removes them)",
            self.layout.dir.display()
        );
        Ok(())
    }
}
