//! `flowfilter run`: the daemon.
//!
//! Signals first: SIGHUP, SIGTERM and SIGINT are held from the first
//! instant of the process ([`crate::daemon::systemd::hold_signals`]) and handled as
//! soon as the runtime exists, before anything is read or loaded. A SIGHUP
//! during the start is queued and applied once the start is done (one
//! reload for any number of them). SIGTERM/SIGINT during the start stop it
//! at the next step: a start that had not yet changed what is in force
//! stops there and removes what it made (a first start leaves no pins); one
//! that had (tables installed into adopted pins, or interfaces attached)
//! finishes, then stops as a stop does.
//!
//! Start: read the configuration; check that the pins would be seen by the
//! host (not under `ip netns exec`); take the liveness lock (held for the
//! daemon's whole life: a second daemon on the same pins fails here) and
//! the writer lock ([`crate::control::lock`]); read the state file of a previous run
//! under it (so a `policy set` made meanwhile is kept); validate the lists
//! and policies and check that `--netns` exists (any error stops here,
//! nothing touched); mount bpffs if needed; remove pinned links
//! whose interface is gone ([`crate::daemon::ifwatch`]); adopt the pins or create
//! them ([`Filter::load_pinned`]); install the tables (recorded in the
//! state file before the flip); swap in a new program
//! if `--replace`; attach each interface through a pinned bpf_link (or
//! adopt the link already there, once the kernel confirms it runs our
//! program on the interface of that name); an interface that does not
//! exist is waited for; write the state file with the daemon's pid; release
//! the writer lock; tell systemd `READY=1`.
//!
//! Then wait for signals and link events. SIGHUP re-reads the configuration
//! file and lists and installs them through the double-buffered tables; a
//! rejected reload keeps the old rules, logs `file:line: what` and records
//! it in the state file (where `flowfilter reload` reads it). Link events
//! of the attach namespace, and a check every [`CHECK_PERIOD`], re-attach
//! interfaces that were re-created, renamed or appeared. SIGTERM/SIGINT end
//! the daemon and leave filtering in force, unless `--detach-on-exit`. A
//! crash or `kill -9` leaves it in force too: the links are pinned, not
//! held.
//!
//! Interface, mode, namespace, pin directory and metrics changes in the
//! configuration take effect at the next start (a reload says so).

pub mod ifwatch;
pub mod netlink;
pub mod systemd;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::control::config::{Config, RunFlags};
use crate::control::lock::{DaemonLock, LockError, WriterLock};
use crate::control::state::{DaemonInfo, ReloadBy, StateError, StateFile, unix_now};
use crate::control::{Error, Prepared, Settings, describe, install, prepare, record};
use crate::daemon::ifwatch::{CHECK_PERIOD, Interfaces, SETTLE};
use crate::daemon::netlink::{LinkEvent, Rtnl};
use crate::daemon::systemd::{NOTICE, Notifier};
use crate::dataplane::loader::{Filter, GenerationInfo, LoadOptions, Startup};
use crate::dataplane::pins::{PinLayout, PinVisibility, ensure_bpffs, pin_visibility};

/// What `flowfilter run` was asked.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// Flags over the configuration (and `--replace`: swap the pinned
    /// program, and incompatible maps, for this build's).
    pub flags: RunFlags,
}

/// Run the daemon until SIGTERM/SIGINT.
pub fn run(req: &RunRequest) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))?;
    rt.block_on(run_async(req))
}

/// The daemon's signals.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

/// A signal the daemon acts on.
enum Sig {
    Reload,
    Stop(&'static str),
}

impl Signals {
    /// Handle SIGHUP, SIGTERM and SIGINT from here on, then let through
    /// those that arrived while they were held.
    fn install() -> Result<Signals, Error> {
        let sig = |k: SignalKind| signal(k).map_err(Error::io("installing a signal handler"));
        let s = Signals {
            hup: sig(SignalKind::hangup())?,
            term: sig(SignalKind::terminate())?,
            int: sig(SignalKind::interrupt())?,
        };
        crate::daemon::systemd::release_signals();
        Ok(s)
    }

    async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.hup.recv() => Sig::Reload,
            _ = self.term.recv() => Sig::Stop("SIGTERM"),
            _ = self.int.recv() => Sig::Stop("SIGINT"),
        }
    }
}

/// Signals that arrived during the start.
#[derive(Default)]
struct During {
    /// Set by SIGTERM/SIGINT; the start stops at its next step if it can.
    stop: Arc<AtomicBool>,
    /// A SIGHUP came: reload once the start is done.
    reload: bool,
}

impl During {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Run `step` (blocking) on the blocking pool while handling signals.
    async fn step<T: Send + 'static>(
        &mut self,
        signals: &mut Signals,
        step: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let mut task = tokio::task::spawn_blocking(step);
        loop {
            tokio::select! {
                r = &mut task => {
                    return r.map_err(|e| Error::Other(format!("the start failed: {e}")));
                }
                s = signals.next() => match s {
                    Sig::Reload => {
                        if !self.reload {
                            log::warn!(
                                "SIGHUP during the start: the reload is queued and runs once the start is done"
                            );
                        }
                        self.reload = true;
                    }
                    Sig::Stop(name) => {
                        if !self.stopping() {
                            log::warn!(
                                "{name} during the start: stopping at the next step (a start that has not changed what is in force removes what it made)"
                            );
                        }
                        self.stop.store(true, Ordering::Relaxed);
                    }
                },
            }
        }
    }
}

/// The daemon's live parts.
struct Daemon {
    filter: Filter,
    layout: PinLayout,
    cfg: Config,
    req: RunRequest,
    ifaces: Interfaces,
    notify: Notifier,
    /// The liveness lock, held while the daemon lives.
    _alive: DaemonLock,
}

/// The start's first step: everything read and checked, nothing touched.
struct Validated {
    cfg: Config,
    layout: PinLayout,
    /// The state file of a previous run, read under `lock`.
    prev: Option<StateFile>,
    state: StateFile,
    prepared: Prepared,
    ifaces: Interfaces,
    alive: DaemonLock,
    /// The writer lock, held until the start is recorded.
    lock: WriterLock,
}

/// What the start made.
struct Started {
    filter: Filter,
    layout: PinLayout,
    cfg: Config,
    ifaces: Interfaces,
    program_id: u32,
    alive: DaemonLock,
}

async fn run_async(req: &RunRequest) -> Result<(), Error> {
    let mut signals = Signals::install()?;
    let notify = Notifier::from_env();
    let mut during = During::default();
    let v = {
        let req = req.clone();
        during.step(&mut signals, move || validate(&req)).await??
    };
    if during.stopping() {
        log::info!("stopped during the start, before anything was changed");
        notify.stopping();
        return Ok(());
    }
    let listener = match v.cfg.metrics.as_ref().map(|m| m.0) {
        Some(addr) => Some(
            crate::report::metrics::bind(addr)
                .await
                .map_err(Error::io(format!("--metrics {addr}: cannot listen")))?,
        ),
        None => None,
    };
    let started = {
        let (req, stop) = (req.clone(), Arc::clone(&during.stop));
        during
            .step(&mut signals, move || establish(v, &req, &stop))
            .await??
    };
    let Some(Started {
        filter,
        layout,
        cfg,
        mut ifaces,
        program_id,
        alive,
    }) = started
    else {
        log::info!("stopped during the start; what it had made is removed");
        notify.stopping();
        return Ok(());
    };

    if let Some(listener) = listener {
        // Its own thread, runtime and view of the maps: no scrape waits on
        // a reload, no reload or signal on a scrape.
        crate::report::metrics::start(listener, &layout)?;
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
    let events = ifaces.take_events();
    notify.ready(&ifaces.summary(&layout));
    let mut daemon = Daemon {
        filter,
        layout,
        cfg,
        req: req.clone(),
        ifaces,
        notify,
        _alive: alive,
    };
    if during.stopping() {
        return daemon.exit();
    }
    if during.reload {
        log::info!(target: NOTICE, "applying the SIGHUP that came during the start");
        daemon.reload();
    }
    daemon.serve(signals, events).await
}

/// Read and check everything: configuration, lists, policies, where the
/// pins would live, the attach namespace. Nothing is touched.
fn validate(req: &RunRequest) -> Result<Validated, Error> {
    let (config, file_cfg, cfg) = configuration(req)?;
    let layout = PinLayout::new(&cfg.pin_dir);
    check_pins_public(&layout, &cfg)?;
    // Held while this daemon lives.
    let alive = match DaemonLock::try_acquire(&layout.dir) {
        Ok(l) => l,
        Err(LockError::Held { pid, .. }) => return Err(already_running(&layout, pid)),
        Err(e) => return Err(e.into()),
    };
    let lock = WriterLock::acquire(&layout.dir)?;
    let prev = previous_state(&layout)?;
    let state = start_state(&layout, prev.as_ref(), config, &req.flags);
    let settings = Settings::new(&file_cfg, &state);
    let prepared = prepare(&settings)?;
    // The attach namespace exists, and its link events are watched from
    // before the first look at the interfaces.
    let ifaces = Interfaces::open(&cfg)?;
    Ok(Validated {
        cfg,
        layout,
        prev,
        state,
        prepared,
        ifaces,
        alive,
        lock,
    })
}

/// The configuration: the file's absolute path (if `--config` was given),
/// what the file says, and that with the flags over it, checked to name
/// interfaces to attach to (those facing subscribers among them).
fn configuration(req: &RunRequest) -> Result<(Option<PathBuf>, Config, Config), Error> {
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
    Ok((config, file_cfg, cfg))
}

/// Refuse pins the host would not see, nor outlive this daemon (a private
/// mount namespace, as `ip netns exec` makes), saying how to start instead.
fn check_pins_public(layout: &PinLayout, cfg: &Config) -> Result<(), Error> {
    if let PinVisibility::Private { why, netns } = pin_visibility(&layout.dir) {
        let hint = match (&netns, cfg.interfaces.first()) {
            (Some(n), Some(i)) => format!(
                "start it from the host's namespaces with `flowfilter run --netns {n} --iface {i} ...`"
            ),
            _ => "start it from the host's mount namespace, with `flowfilter run --netns NAME` to attach inside a network namespace".to_owned(),
        };
        return Err(Error::Input(format!(
            "the pins at {} would not outlive this daemon, nor be seen from the host: {why} (`ip netns exec` makes such a namespace); {hint}",
            layout.dir.display()
        )));
    }
    Ok(())
}

/// The error for another daemon (`pid`, when known) managing `layout`.
fn already_running(layout: &PinLayout, pid: Option<u32>) -> Error {
    Error::Other(format!(
        "a flowfilter daemon{} already manages {}: stop it first, or use `flowfilter reload`",
        pid.map_or_else(String::new, |p| format!(" (pid {p})")),
        layout.dir.display()
    ))
}

/// The state of a previous run (its policy overrides and interface
/// modes), read under the writer lock; none when it cannot be read.
fn previous_state(layout: &PinLayout) -> Result<Option<StateFile>, Error> {
    let prev = match StateFile::read(&layout.dir) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("{e}; starting with a new state file");
            None
        }
    };
    // A daemon of version 1 holds no liveness lock.
    if let Some(pid) = prev.as_ref().and_then(StateFile::legacy_daemon)
        && pid != std::process::id()
    {
        return Err(already_running(layout, Some(pid)));
    }
    Ok(prev)
}

/// This start's state file: what `prev` kept (policy overrides, interface
/// modes, category ids, reload counts), the configuration file `config`
/// and the flags that change what is installed.
fn start_state(
    layout: &PinLayout,
    prev: Option<&StateFile>,
    config: Option<PathBuf>,
    flags: &RunFlags,
) -> StateFile {
    let mut state = StateFile::new(&layout.dir);
    if let Some(p) = prev {
        state.overrides.clone_from(&p.overrides);
        state.interfaces.clone_from(&p.interfaces);
        // Category ids stay as installed (pins adopted keep their counters).
        state.categories.clone_from(&p.categories);
        state.reload_serial = p.reload_serial;
        state.reloads_ok = p.reloads_ok;
        state.reloads_failed = p.reloads_failed;
    }
    state.config = config;
    state.flags = flags.into();
    state
}

/// Log how this start found the pins: fresh, adopted (with the interfaces
/// whose stale links were pruned) or replacing.
fn log_startup(startup: &Startup, layout: &PinLayout, pruned: &[String]) {
    match startup {
        Startup::Fresh => log::info!("nothing pinned at {}: starting anew", layout.dir.display()),
        Startup::Adopted { program_id } if pruned.is_empty() => log::info!(
            "adopted the pinned program {program_id} and maps at {}: filtering never stopped",
            layout.dir.display()
        ),
        Startup::Adopted { program_id } => log::info!(
            "adopted the pinned program {program_id} and maps at {}; the links of {} had stopped filtering and are made anew",
            layout.dir.display(),
            pruned.join(", ")
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
}

/// Warn of pinned links on interfaces this daemon does not manage.
fn warn_foreign_links(layout: &PinLayout, interfaces: &[String]) -> Result<(), Error> {
    for name in layout.pinned_links()? {
        if !interfaces.contains(&name) {
            log::warn!(
                "a pinned link on {name} (from an earlier start) stays attached; `flowfilter detach --iface {name}` removes it"
            );
        }
    }
    Ok(())
}

/// Make the filter: pins, tables, links, state file. `None` when a stop
/// signal came in time to give up (what this start made is removed).
fn establish(v: Validated, req: &RunRequest, stop: &AtomicBool) -> Result<Option<Started>, Error> {
    let Validated {
        cfg,
        layout,
        prev,
        mut state,
        prepared,
        mut ifaces,
        alive,
        lock,
    } = v;
    let existed = make_pin_dir(&layout)?;
    if stop.load(Ordering::Relaxed) {
        give_up(&layout, prev.as_ref(), &lock, !existed);
        return Ok(None);
    }
    if cfg.v4_chunks_per_gen.is_some() {
        log::warn!(
            "configuration: v4_chunks_per_gen is no longer used (the prefix tables are sized to the lists); remove it"
        );
    }
    let pruned = ifaces.prune_stale(&layout)?;
    let opts = LoadOptions { trace: false };
    let (mut filter, startup) = Filter::load_pinned(&opts, &layout, req.flags.replace)?;
    log_startup(&startup, &layout, &pruned);
    let fresh = startup == Startup::Fresh;
    // Nothing in force has changed yet.
    if stop.load(Ordering::Relaxed) {
        give_up(&layout, prev.as_ref(), &lock, fresh);
        return Ok(None);
    }
    let started = (|| {
        subscribers_before_install(&mut filter, &cfg)?;
        let info = install(&mut filter, &prepared, &mut state, &ReloadBy::Start, &lock)?;
        if fresh && stop.load(Ordering::Relaxed) {
            // Tables of pins nobody uses yet: nothing in force changed.
            return Ok(false);
        }
        crate::control::subscribers::after_install(&mut filter, &cfg.subscribers)?;
        filter.commit(&layout)?;
        log::info!("{}", describe(&info, &prepared));
        ifaces.settle(&mut filter, &layout, &mut state, true)?;
        layout.restrict()?;
        Ok::<_, Error>(true)
    })();
    match started {
        Ok(true) => {}
        Ok(false) => {
            give_up(&layout, prev.as_ref(), &lock, true);
            return Ok(None);
        }
        Err(e) => {
            // Nothing ran before this start: leave nothing behind.
            give_up(&layout, prev.as_ref(), &lock, fresh);
            return Err(e);
        }
    }
    let program_id = filter.program_info()?.id();
    warn_foreign_links(&layout, &cfg.interfaces)?;
    state.daemon = Some(DaemonInfo {
        pid: std::process::id(),
        started: unix_now(),
        metrics: cfg.metrics.as_ref().map(|m| m.0),
        detach_on_exit: cfg.detach_on_exit,
    });
    state.write(&lock)?;
    drop(lock);
    Ok(Some(Started {
        filter,
        layout,
        cfg,
        ifaces,
        program_id,
        alive,
    }))
}

/// Mount bpffs if needed and make the pin directory; returns whether the
/// directory was there already.
fn make_pin_dir(layout: &PinLayout) -> Result<bool, Error> {
    let mounted = ensure_bpffs(&layout.dir)?;
    if mounted {
        log::info!("mounted bpffs at {}", crate::dataplane::pins::BPFFS_ROOT);
    }
    let existed = layout.dir.exists();
    layout.create()?;
    Ok(existed)
}

/// A start that stops: when its pins are `fresh` (this start made them),
/// they are removed, and the state file (which may have recorded their
/// install) is put back as it was, `prev` or none, under `lock`.
fn give_up(layout: &PinLayout, prev: Option<&StateFile>, lock: &WriterLock, fresh: bool) {
    if !fresh {
        return;
    }
    if let Err(e) = layout.remove_all() {
        log::warn!("removing the pins of the stopped start: {e}");
    }
    let restored = match prev {
        Some(p) => p.write(lock),
        None => StateFile::remove_locked(&layout.dir, lock),
    };
    if let Err(e) = restored {
        log::warn!("restoring the state file of the stopped start: {e}");
    }
}

/// The events of the next datagram of the link-event socket; never returns
/// without one.
async fn link_events(fd: Option<&AsyncFd<Rtnl>>) -> std::io::Result<Vec<LinkEvent>> {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    loop {
        let mut guard = fd.readable().await?;
        if let Ok(r) = guard.try_io(|inner| inner.get_ref().next_events()) {
            return r;
        }
    }
}

/// Mark the configured interfaces facing subscribers (or not) and hand
/// the subscriber rule to the next install.
fn subscribers_before_install(filter: &mut Filter, cfg: &Config) -> Result<(), Error> {
    let marks: Vec<(u32, bool)> = {
        let _ns = cfg
            .netns
            .as_deref()
            .map(crate::daemon::ifwatch::NetnsGuard::enter)
            .transpose()?;
        cfg.interfaces
            .iter()
            .filter_map(|i| {
                crate::daemon::ifwatch::ifindex_of(i)
                    .map(|x| (x, cfg.subscribers.inside.contains(i)))
            })
            .collect()
    };
    crate::control::subscribers::before_install(filter, &cfg.subscribers, &marks)?;
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
    async fn serve(&mut self, mut signals: Signals, events: Option<Rtnl>) -> Result<(), Error> {
        // SAFETY: the socket owns its descriptor for as long as the AsyncFd
        // owns the socket.
        let events = match events
            .map(|e| unsafe { AsyncFd::register_with_interest(e, tokio::io::Interest::READABLE) })
            .transpose()
        {
            Ok(e) => e,
            Err(e) => {
                log::error!(
                    "watching link events: {e}; interfaces are checked every {}s only",
                    CHECK_PERIOD.as_secs()
                );
                None
            }
        };
        let period = std::time::Duration::from_nanos(filter_common::BITS_ROTATE_NS);
        let mut rotate = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let period = std::time::Duration::from_nanos(filter_common::FLOW_BITS_ROTATE_NS);
        let mut rotate_flows =
            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + CHECK_PERIOD, CHECK_PERIOD);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A burst of link events settles before the interfaces are checked.
        let mut settle_at: Option<tokio::time::Instant> = None;
        loop {
            let settle = async {
                match settle_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                s = signals.next() => match s {
                    Sig::Reload => self.reload(),
                    Sig::Stop(name) => {
                        log::info!("{name}: stopping");
                        break;
                    }
                },
                r = link_events(events.as_ref()) => match r {
                    Ok(evs) => {
                        if evs.iter().any(|e| self.ifaces.concerns(e)) && settle_at.is_none() {
                            settle_at = Some(tokio::time::Instant::now() + SETTLE);
                        }
                    }
                    Err(e) => {
                        log::warn!("reading link events: {e}");
                        tokio::time::sleep(SETTLE).await;
                    }
                },
                () = settle => {
                    settle_at = None;
                    self.check_interfaces();
                }
                _ = check.tick() => self.check_interfaces(),
                _ = rotate.tick() => self.rotate_bits(),
                _ = rotate_flows.tick() => self.rotate_flow_bits(),
            }
        }
        self.notify.stopping();
        self.exit()
    }

    /// The state file, read (under the caller's writer lock); a new one,
    /// with a warning, if it was removed.
    fn read_state(&self) -> Result<StateFile, StateError> {
        if let Some(s) = StateFile::read(&self.layout.dir)? {
            return Ok(s);
        }
        log::warn!("the state file was removed; writing a new one");
        let mut s = StateFile::new(&self.layout.dir);
        s.config.clone_from(&self.req.config);
        Ok(s)
    }

    /// Re-attach what the kernel detached (interfaces deleted and
    /// re-created, renamed, appeared), under the lock, and record it.
    fn check_interfaces(&mut self) {
        if self.ifaces.all_well(&self.layout) {
            return;
        }
        let lock = match WriterLock::acquire(&self.layout.dir) {
            Ok(l) => l,
            Err(e) => {
                log::error!("checking the interfaces: {e}");
                return;
            }
        };
        let mut state = match self.read_state() {
            Ok(s) => s,
            Err(e) => {
                log::error!("checking the interfaces: {e}");
                return;
            }
        };
        match self
            .ifaces
            .settle(&mut self.filter, &self.layout, &mut state, false)
        {
            Ok(true) => {
                if let Err(e) = state.write(&lock) {
                    log::error!("checking the interfaces: {e}");
                }
                drop(lock);
                self.notify.status(&self.ifaces.summary(&self.layout));
            }
            Ok(false) => {}
            Err(e) => log::error!("checking the interfaces: {e}"),
        }
    }

    /// Forget the "has a category" bits of flows gone for a period.
    fn rotate_flow_bits(&mut self) {
        let r = WriterLock::acquire(&self.layout.dir)
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
        let r = WriterLock::acquire(&self.layout.dir)
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
        self.notify.reloading();
        let summary = match self.reload_inner() {
            Ok(()) => self.ifaces.summary(&self.layout),
            Err(e) => format!(
                "{}; the last reload was rejected: {e}",
                self.ifaces.summary(&self.layout)
            ),
        };
        self.notify.ready(&summary);
    }

    fn reload_inner(&mut self) -> Result<(), String> {
        let lock = match WriterLock::acquire(&self.layout.dir) {
            Ok(l) => l,
            Err(e) => {
                log::error!("reload: {e}");
                return Err(e.to_string());
            }
        };
        let mut state = match self.read_state() {
            Ok(s) => s,
            Err(e) => {
                log::error!("reload: {e}");
                return Err(e.to_string());
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
            let info = install(&mut self.filter, &p, &mut state, &ReloadBy::Sighup, &lock)?;
            crate::control::subscribers::after_install(&mut self.filter, &live.subscribers)?;
            self.ifaces.set_inside(&live.subscribers.inside);
            self.cfg.subscribers = live.subscribers;
            Ok((info, p))
        })();
        // A success is recorded already; so is nothing for a change that
        // could not be recorded.
        if let Err(e) = &result
            && !matches!(e, Error::NotRecorded { .. })
        {
            record(&mut state, Some(e), &ReloadBy::Sighup);
            if let Err(w) = state.write(&lock) {
                log::error!("reload: {w}");
            }
        }
        drop(lock);
        match result {
            Ok((info, p)) => {
                log::info!("reloaded: {}", describe(&info, &p));
                Ok(())
            }
            Err(e) => {
                log::error!("reload rejected, the old rules stay in force: {e}");
                Err(e.to_string())
            }
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
        let lock = WriterLock::acquire(&self.layout.dir)?;
        if self.cfg.detach_on_exit {
            self.layout.remove_all()?;
            StateFile::remove_locked(&self.layout.dir, &lock)?;
            log::info!(
                "stopped; links and pins at {} removed (--detach-on-exit)",
                self.layout.dir.display()
            );
            return Ok(());
        }
        if let Some(mut s) = StateFile::read(&self.layout.dir)? {
            s.daemon = None;
            s.write(&lock)?;
        }
        log::info!(
            "stopped; filtering stays in force (pins at {}; `flowfilter detach` removes them)",
            self.layout.dir.display()
        );
        Ok(())
    }
}
