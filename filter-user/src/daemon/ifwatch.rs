//! Interfaces that come and go: a driver reload, a NIC hot-plug, a bond
//! rebuilt or a veth re-created delete the device, and the kernel detaches
//! its XDP link (the pinned link stays, defunct: its interface index reads
//! 0). Nothing of that shows in the pins, so everything here asks the
//! kernel ([`Health::check`]): the interface of that name now (rtnetlink),
//! the interface the pinned link is on (the link's fdinfo), and the
//! programs the kernel runs on it.
//!
//! Interfaces are configured by name, and the filter follows the name: an
//! interface deleted and re-created, or renamed away with another taking
//! its name, gets a new link on the device that has the name now (the stale
//! link is removed); one that is missing is waited for and attached when it
//! appears (at start too, with a warning). The daemon watches the link
//! events of the attach namespace (`RTMGRP_LINK`) and checks every
//! interface again after each burst of events and every
//! [`CHECK_PERIOD`]. An interface whose link the operator removed
//! (`flowfilter detach --iface`) is left alone until the next start.
//!
//! `status` and the `interface_attached` metric report [`Health`] too: an
//! interface is attached only when the kernel runs our program on the
//! device that has its name.

use std::fs::File;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::time::Duration;

use filter_common::{IF_INDEX_LIMIT, IF_SLOTS};

use crate::control::Error;
use crate::control::config::Config;
use crate::control::state::{AttachedMode, InterfaceState, StateFile};
use crate::daemon::netlink::{LinkEvent, LinkInfo, Rtnl};
use crate::daemon::systemd::NOTICE;
use crate::dataplane::loader::{AttachMode, Attached, Filter};
use crate::dataplane::pins::{LinkState, PinLayout, pinned_link_state, remove_file};

/// The namespace kind `--netns` enters.
const NETWORK: rustix::thread::LinkNameSpaceType = rustix::thread::LinkNameSpaceType::Network;

/// How often the daemon checks every interface without an event.
pub const CHECK_PERIOD: Duration = Duration::from_secs(10);
/// How long the daemon lets a burst of link events settle before it checks.
pub const SETTLE: Duration = Duration::from_millis(100);

/// What the kernel says about one interface and its pinned link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Our program runs on the interface of that name, through the pinned
    /// link.
    Attached {
        /// The interface's index.
        ifindex: u32,
        /// The pinned link.
        link: LinkState,
        /// The XDP mode the kernel reports (`driver`, `skb`).
        mode: &'static str,
    },
    /// No interface of that name and no pinned link.
    Missing,
    /// The interface is there, no link is pinned for it.
    NotLinked {
        /// The interface's index.
        ifindex: u32,
    },
    /// The pinned link's interface was deleted: the kernel detached it.
    Defunct {
        /// The pinned link.
        link: LinkState,
        /// The index of the interface that has the name now, if any.
        now: Option<u32>,
    },
    /// The pinned link is on another device than the one of that name
    /// (renamed away, or moved to another namespace).
    Elsewhere {
        /// The pinned link.
        link: LinkState,
        /// The device the link is on.
        link_ifindex: u32,
        /// The index of the interface that has the name now, if any.
        now: Option<u32>,
    },
    /// The link and the interface agree, but the kernel runs another
    /// program on it, or none.
    NotRunning {
        /// The pinned link.
        link: LinkState,
        /// The interface's index.
        ifindex: u32,
        /// The programs the kernel reports on it.
        running: Vec<u32>,
    },
    /// The kernel could not be asked.
    Unknown(String),
}

impl Health {
    /// Ask the kernel about `iface` (through `rtnl`, a socket of its
    /// namespace) and its pinned link in `layout`.
    pub fn check(layout: &PinLayout, iface: &str, rtnl: &Rtnl) -> Health {
        let link = match pinned_link_state(&layout.link(iface)) {
            Ok(l) => l,
            Err(e) => return Health::Unknown(e.to_string()),
        };
        match rtnl.link(iface) {
            Ok(dev) => Health::judge(link, dev.as_ref()),
            Err(e) => Health::Unknown(e.to_string()),
        }
    }

    /// The verdict from the pinned link and the interface of that name.
    pub fn judge(link: Option<LinkState>, dev: Option<&LinkInfo>) -> Health {
        let now = dev.map(|d| d.index);
        let Some(link) = link else {
            return match dev {
                Some(d) => Health::NotLinked { ifindex: d.index },
                None => Health::Missing,
            };
        };
        match (link.ifindex, dev) {
            (Some(0), _) => Health::Defunct { link, now },
            (Some(i), Some(d)) if i != d.index => Health::Elsewhere {
                link,
                link_ifindex: i,
                now,
            },
            (Some(i), None) => Health::Elsewhere {
                link,
                link_ifindex: i,
                now,
            },
            (_, None) => Health::Defunct { link, now },
            (_, Some(d)) => match d.xdp.iter().find(|p| p.id == link.program_id) {
                Some(p) => Health::Attached {
                    ifindex: d.index,
                    link,
                    mode: p.mode,
                },
                None => Health::NotRunning {
                    link,
                    ifindex: d.index,
                    running: d.xdp.iter().map(|p| p.id).collect(),
                },
            },
        }
    }

    /// Whether the kernel runs our program on the interface.
    pub fn attached(&self) -> bool {
        matches!(self, Health::Attached { .. })
    }

    /// One word for `status --json` (`state`).
    pub fn label(&self) -> &'static str {
        match self {
            Health::Attached { .. } => "attached",
            Health::Missing => "missing",
            Health::NotLinked { .. } => "not attached",
            Health::Defunct { .. } => "defunct",
            Health::Elsewhere { .. } => "elsewhere",
            Health::NotRunning { .. } => "not running",
            Health::Unknown(_) => "unknown",
        }
    }

    /// The pinned link, if one is.
    pub fn link(&self) -> Option<LinkState> {
        match self {
            Health::Attached { link, .. }
            | Health::Defunct { link, .. }
            | Health::Elsewhere { link, .. }
            | Health::NotRunning { link, .. } => Some(*link),
            _ => None,
        }
    }

    /// The index of the interface that has the name now.
    pub fn ifindex(&self) -> Option<u32> {
        match self {
            Health::Attached { ifindex, .. }
            | Health::NotLinked { ifindex }
            | Health::NotRunning { ifindex, .. } => Some(*ifindex),
            Health::Defunct { now, .. } | Health::Elsewhere { now, .. } => *now,
            Health::Missing | Health::Unknown(_) => None,
        }
    }

    /// What is wrong, in words (empty when attached).
    pub fn describe(&self, iface: &str) -> String {
        match self {
            Health::Attached { .. } => String::new(),
            Health::Missing => format!("{iface}: no such interface"),
            Health::NotLinked { ifindex } => {
                format!("{iface}: not attached (ifindex {ifindex}, no pinned link)")
            }
            Health::Defunct { link, now: Some(n) } => format!(
                "{iface}: the interface was deleted and re-created (now ifindex {n}): its XDP link {} died with the old one",
                link.id
            ),
            Health::Defunct { link, now: None } => format!(
                "{iface}: the interface was deleted: its XDP link {} is defunct",
                link.id
            ),
            Health::Elsewhere {
                link,
                link_ifindex,
                now: Some(n),
            } => format!(
                "{iface}: the pinned link {} is on ifindex {link_ifindex}, but {iface} is ifindex {n} now (renamed?)",
                link.id
            ),
            Health::Elsewhere {
                link,
                link_ifindex,
                now: None,
            } => format!(
                "{iface}: no interface has this name now (renamed or moved away?); the pinned link {} is on ifindex {link_ifindex}",
                link.id
            ),
            Health::NotRunning {
                link,
                ifindex,
                running,
            } => format!(
                "{iface} (ifindex {ifindex}): the kernel runs {} on it, not program {} of the pinned link",
                if running.is_empty() {
                    "no XDP program".to_owned()
                } else {
                    format!("XDP program {running:?}")
                },
                link.program_id
            ),
            Health::Unknown(e) => format!("{iface}: cannot tell whether it is attached: {e}"),
        }
    }
}

/// One interface for `status` and the metrics.
#[derive(Clone, Debug)]
pub struct InterfaceHealth {
    /// Interface name.
    pub name: String,
    /// Attach mode recorded in the state file (`unknown` without one).
    pub mode: AttachedMode,
    /// Network namespace, if not the daemon's.
    pub netns: Option<String>,
    /// What the kernel says.
    pub health: Health,
}

/// Every interface with a pinned link or named in the state file, with
/// what the kernel says about it.
pub fn interface_health(layout: &PinLayout, state: Option<&StateFile>) -> Vec<InterfaceHealth> {
    let recorded: &[InterfaceState] = state.map_or(&[], |s| s.interfaces.as_slice());
    let mut names: Vec<String> = layout.pinned_links().unwrap_or_default();
    for i in recorded {
        if !names.contains(&i.name) {
            names.push(i.name.clone());
        }
    }
    names.sort();
    // A link pinned without a state entry is in the namespace the others are.
    let default_ns = recorded.iter().find_map(|i| i.netns.clone());
    let mut sockets: Vec<(Option<String>, Result<Rtnl, String>)> = Vec::new();
    names
        .into_iter()
        .map(|name| {
            let entry = recorded.iter().find(|i| i.name == name);
            let netns = entry.map_or_else(|| default_ns.clone(), |i| i.netns.clone());
            if !sockets.iter().any(|(n, _)| *n == netns) {
                let s = Rtnl::open_in(netns.as_deref(), false).map_err(|e| e.to_string());
                sockets.push((netns.clone(), s));
            }
            let health = match sockets.iter().find(|(n, _)| *n == netns).map(|(_, s)| s) {
                Some(Ok(rtnl)) => Health::check(layout, &name, rtnl),
                Some(Err(e)) => Health::Unknown(e.clone()),
                None => Health::Unknown("no socket".into()),
            };
            InterfaceHealth {
                mode: entry.map_or(AttachedMode::Unknown, |i| i.mode),
                name,
                netns,
                health,
            }
        })
        .collect()
}

/// Enters a network namespace for the calling thread; returns on drop.
pub struct NetnsGuard {
    original: File,
}

impl NetnsGuard {
    /// Enter `/run/netns/NAME`.
    pub fn enter(name: &str) -> Result<NetnsGuard, Error> {
        let original = File::open("/proc/thread-self/ns/net")
            .map_err(Error::io("opening this thread's network namespace"))?;
        let path = Path::new("/run/netns").join(name);
        let target = File::open(&path).map_err(|e| {
            Error::Input(format!(
                "--netns {name}: {}: {e} (create it with `ip netns add {name}`)",
                path.display()
            ))
        })?;
        // Only this thread changes namespace.
        rustix::thread::move_into_link_name_space(target.as_fd(), Some(NETWORK))
            .map_err(|e| Error::io(format!("entering network namespace {name}"))(e.into()))?;
        Ok(NetnsGuard { original })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // The namespace this thread came from.
        let back = self.original.as_fd();
        if let Err(e) = rustix::thread::move_into_link_name_space(back, Some(NETWORK)) {
            log::error!("returning to the original network namespace: {e}");
        }
    }
}

/// What the daemon knows of one configured interface.
#[derive(Clone, Debug)]
struct Watched {
    name: String,
    /// False once the operator removed its link: left alone until the next
    /// start.
    want: bool,
    /// The link it made or adopted, while it believes it attached.
    link_id: Option<u32>,
    /// The interface index it was attached on (kept while waiting, so a
    /// re-created interface takes over its counter slot).
    ifindex: Option<u32>,
    /// The last problem logged, so a lasting one is logged once.
    problem: Option<String>,
}

/// The daemon's configured interfaces, in its attach namespace.
pub struct Interfaces {
    netns: Option<String>,
    mode: AttachMode,
    query: Rtnl,
    events: Option<Rtnl>,
    watched: Vec<Watched>,
    /// Interfaces facing subscribers (`--inside`): marked again whenever
    /// they are attached (a re-created interface has a new ifindex).
    inside: Vec<String>,
}

impl Interfaces {
    /// Open the sockets in the attach namespace: the event socket first,
    /// so that nothing happening after the first check goes unseen.
    pub fn open(cfg: &Config) -> Result<Interfaces, Error> {
        let netns = cfg.netns.clone();
        let open = |subscribe| {
            Rtnl::open_in(netns.as_deref(), subscribe).map_err(|e| match e {
                crate::daemon::netlink::NetlinkError::Netns { name, source } => Error::Input(format!(
                    "--netns {name}: /run/netns/{name}: {source} (create it with `ip netns add {name}`)"
                )),
                e => Error::Other(e.to_string()),
            })
        };
        let events = open(true)?;
        let query = open(false)?;
        Ok(Interfaces {
            netns,
            mode: cfg.mode.0,
            query,
            events: Some(events),
            inside: cfg.subscribers.inside.clone(),
            watched: cfg
                .interfaces
                .iter()
                .map(|n| Watched {
                    name: n.clone(),
                    want: true,
                    link_id: None,
                    ifindex: None,
                    problem: None,
                })
                .collect(),
        })
    }

    /// The link-event socket (once).
    pub fn take_events(&mut self) -> Option<Rtnl> {
        self.events.take()
    }

    /// Whether an event may concern a configured interface.
    pub fn concerns(&self, ev: &LinkEvent) -> bool {
        match ev {
            LinkEvent::Overrun => true,
            LinkEvent::New(l) | LinkEvent::Del(l) => self
                .watched
                .iter()
                .any(|w| w.name == l.name || w.ifindex == Some(l.index)),
        }
    }

    /// At start, before the program is committed: remove pinned links that
    /// are not on their interface any more (a link whose interface was
    /// deleted cannot even be moved to a new program). Configured
    /// interfaces are checked fully; links of other interfaces only for a
    /// deleted interface (their namespace may be another).
    pub fn prune_stale(&self, layout: &PinLayout) -> Result<Vec<String>, Error> {
        let mut pruned = Vec::new();
        for name in layout.pinned_links()? {
            let path = layout.link(&name);
            if self.watched.iter().any(|w| w.name == name) {
                let h = Health::check(layout, &name, &self.query);
                if matches!(
                    h,
                    Health::Defunct { .. } | Health::Elsewhere { .. } | Health::NotRunning { .. }
                ) {
                    log::warn!(
                        "{}: filtering there had stopped; removing the stale pinned link",
                        h.describe(&name)
                    );
                    remove_file(&path)?;
                    pruned.push(name);
                }
            } else if let Ok(Some(l)) = pinned_link_state(&path)
                && l.ifindex == Some(0)
            {
                log::warn!(
                    "{name}: the interface of the pinned link {} (from an earlier start) was deleted; removing the defunct link",
                    l.id
                );
                remove_file(&path)?;
                pruned.push(name);
            }
        }
        Ok(pruned)
    }

    /// Bring every configured interface to what the kernel should run:
    /// adopt good links, replace stale ones, attach those present without
    /// one, wait for those missing. At start (`starting`) an attach error
    /// fails the start; later it is logged and tried again at the next
    /// check. Updates `state.interfaces` and the counter slots; returns
    /// whether anything changed.
    pub fn settle(
        &mut self,
        filter: &mut Filter,
        layout: &PinLayout,
        state: &mut StateFile,
        starting: bool,
    ) -> Result<bool, Error> {
        let mut pass = Pass {
            filter,
            layout,
            state,
            starting,
        };
        let mut changed = false;
        for k in 0..self.watched.len() {
            changed |= self.settle_one(&mut pass, k)?;
        }
        if changed {
            // Slots of interfaces no longer attached go back (those still
            // linked from an earlier start, or waited for, keep theirs).
            let keep: Vec<u32> = pass
                .state
                .interfaces
                .iter()
                .filter_map(|i| i.ifindex)
                .collect();
            pass.filter.release_interfaces(&keep)?;
        }
        Ok(changed)
    }

    /// Bring watched interface `k` to what the kernel should run, by what
    /// the kernel says of it now; returns whether the state changed.
    fn settle_one(&mut self, pass: &mut Pass<'_>, k: usize) -> Result<bool, Error> {
        let w = &self.watched[k];
        if !w.want {
            return Ok(false);
        }
        let name = w.name.clone();
        let h = Health::check(pass.layout, &name, &self.query);
        let recorded = pass.state.interfaces.iter().any(|i| i.name == name);
        let was_linked = w.link_id.is_some();
        let starting = pass.starting;
        match &h {
            Health::Attached { ifindex, link, .. } => {
                if starting {
                    return self.attach(pass, k, "attached");
                }
                let w = &mut self.watched[k];
                w.link_id = Some(link.id);
                w.ifindex = Some(*ifindex);
                w.problem = None;
                Ok(false)
            }
            Health::Missing | Health::NotLinked { .. } if !starting && was_linked && !recorded => {
                log::warn!(
                    "{name}: its pinned link was removed (`flowfilter detach --iface {name}`): not attached again until the next start"
                );
                let w = &mut self.watched[k];
                w.want = false;
                w.link_id = None;
                Ok(false)
            }
            Health::Missing => Ok(self.wait_for(pass, k, &h, was_linked)),
            Health::NotLinked { ifindex } => {
                if !starting {
                    log::info!(
                        target: NOTICE,
                        "{name}: the interface is there (ifindex {ifindex}): attaching"
                    );
                }
                self.attach(pass, k, "attached")
            }
            Health::Defunct { now, .. } | Health::Elsewhere { now, .. } => {
                self.replace_stale(pass, k, &h, *now)
            }
            Health::NotRunning { .. } => {
                log::warn!(
                    "{}: filtering there has stopped; replacing the link",
                    h.describe(&name)
                );
                remove_file(&pass.layout.link(&name))?;
                self.watched[k].link_id = None;
                self.attach(pass, k, "re-attached")?;
                Ok(true)
            }
            Health::Unknown(e) => {
                if starting {
                    return Err(Error::Other(h.describe(&name)));
                }
                let w = &mut self.watched[k];
                if w.problem.as_deref() != Some(e.as_str()) {
                    log::warn!("{}", h.describe(&name));
                }
                w.problem = Some(e.clone());
                Ok(false)
            }
        }
    }

    /// ` in network namespace NAME` when attaching inside one, for the
    /// messages about interfaces that are not there.
    fn in_ns(&self) -> String {
        self.netns
            .as_deref()
            .map_or_else(String::new, |n| format!(" in network namespace {n}"))
    }

    /// Watched interface `k` does not exist (its health is `h`): say so at
    /// start, or when it was linked and is gone, and record it as waited
    /// for. Returns whether the state changed.
    fn wait_for(&mut self, pass: &mut Pass<'_>, k: usize, h: &Health, was_linked: bool) -> bool {
        let in_ns = self.in_ns();
        let w = &mut self.watched[k];
        let name = &w.name;
        if pass.starting {
            log::warn!(
                "{name}: no such interface{in_ns}: waiting for it; it is attached when it appears"
            );
        } else if was_linked {
            log::warn!(
                "{name}: the interface is gone{in_ns}: it is not filtered until it comes back (then it is attached again)"
            );
        }
        w.problem = Some(h.label().to_owned());
        w.link_id = None;
        record_waiting(pass.state, &w.name, self.netns.as_ref())
    }

    /// The pinned link of watched interface `k` is stale (its health is
    /// `h`: its interface deleted, or the link on another device): remove
    /// it, and attach to the interface that has the name `now`, or wait
    /// for one to appear. The state changes.
    fn replace_stale(
        &mut self,
        pass: &mut Pass<'_>,
        k: usize,
        h: &Health,
        now: Option<u32>,
    ) -> Result<bool, Error> {
        let name = self.watched[k].name.clone();
        log::warn!(
            "{}: filtering there has stopped; removing the stale link",
            h.describe(&name)
        );
        remove_file(&pass.layout.link(&name))?;
        self.watched[k].link_id = None;
        if now.is_some() {
            self.attach(pass, k, "re-attached")?;
        } else {
            self.watched[k].problem = Some(h.label().to_owned());
            record_waiting(pass.state, &name, self.netns.as_ref());
            let in_ns = self.in_ns();
            log::warn!("{name}: waiting for the interface{in_ns}; it is attached when it appears");
        }
        Ok(true)
    }

    /// Attach watched interface `k` (or adopt its pinned link) and record
    /// it. At start a failure fails the start; later it is logged (once)
    /// and tried again at the next check, and the attach is logged as
    /// `verb` at notice level.
    fn attach(&mut self, pass: &mut Pass<'_>, k: usize, verb: &str) -> Result<bool, Error> {
        let name = self.watched[k].name.clone();
        let (attached, ifindex) = match self.attach_in_netns(pass, &name) {
            Ok(r) => r,
            Err(e) if !pass.starting => {
                let msg = e.to_string();
                if self.watched[k].problem.as_deref() != Some(msg.as_str()) {
                    log::error!("{name}: attaching failed (tried again at the next check): {e}");
                }
                self.watched[k].problem = Some(msg);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let recorded = pass
            .state
            .interface(&name)
            .map(|i| i.mode)
            .filter(|m| *m != AttachedMode::NotAttached);
        let mode = attached_mode(&name, &attached, recorded, pass.starting, verb, ifindex);
        let slot = self.counter_slot(pass, k, &name, ifindex)?;
        let w = &mut self.watched[k];
        w.link_id = pinned_link_state(&pass.layout.link(&name))
            .ok()
            .flatten()
            .map(|l| l.id);
        w.ifindex = ifindex;
        w.problem = None;
        pass.state.interfaces.retain(|i| i.name != name);
        pass.state.interfaces.push(InterfaceState {
            name,
            mode,
            netns: self.netns.clone(),
            ifindex,
            slot,
        });
        Ok(true)
    }

    /// Attach the filter to `name` (or adopt its pinned link), inside the
    /// attach namespace; with the interface's index there.
    fn attach_in_netns(
        &self,
        pass: &mut Pass<'_>,
        name: &str,
    ) -> Result<(Attached, Option<u32>), Error> {
        let _ns = self.netns.as_deref().map(NetnsGuard::enter).transpose()?;
        let attached = pass.filter.attach(pass.layout, name, self.mode)?;
        Ok((attached, ifindex_of(name)))
    }

    /// The per-interface counter slot of watched interface `k`, now at
    /// `ifindex`: the slot of its previous index moves with it (warned of
    /// when there is none), and an interface facing subscribers is marked
    /// again.
    fn counter_slot(
        &self,
        pass: &mut Pass<'_>,
        k: usize,
        name: &str,
        ifindex: Option<u32>,
    ) -> Result<Option<u32>, Error> {
        let old = pass
            .state
            .interface(name)
            .and_then(|i| i.ifindex)
            .or(self.watched[k].ifindex);
        let slot = match ifindex {
            Some(i) => pass.filter.reassign_interface(old, i)?,
            None => None,
        };
        if let Some(i) = ifindex
            && self.inside.iter().any(|n| n == name)
        {
            pass.filter.set_interface_inside(i, true)?;
        }
        if slot.is_none() {
            log::warn!(
                "{name}: no per-interface counter slot (ifindex {ifindex:?}, at most {} interfaces below ifindex {IF_INDEX_LIMIT}); its packets count under interface \"other\"",
                IF_SLOTS - 1
            );
        }
        Ok(slot)
    }

    /// The interfaces facing subscribers after a reload.
    pub fn set_inside(&mut self, names: &[String]) {
        self.inside = names.to_vec();
    }

    /// Whether every configured interface is attached with the link the
    /// daemon knows (then a check has nothing to do and takes no lock).
    pub fn all_well(&self, layout: &PinLayout) -> bool {
        self.watched.iter().filter(|w| w.want).all(|w| {
            match Health::check(layout, &w.name, &self.query) {
                Health::Attached { link, ifindex, .. } => {
                    w.link_id == Some(link.id) && w.ifindex == Some(ifindex)
                }
                _ => false,
            }
        })
    }

    /// One line for the service manager's status: how many interfaces are
    /// attached, and which are waited for.
    pub fn summary(&self, layout: &PinLayout) -> String {
        let mut attached = 0;
        let mut waiting = Vec::new();
        for w in self.watched.iter().filter(|w| w.want) {
            if Health::check(layout, &w.name, &self.query).attached() {
                attached += 1;
            } else {
                waiting.push(w.name.as_str());
            }
        }
        if waiting.is_empty() {
            format!("filtering on {attached} interface(s)")
        } else {
            format!(
                "filtering on {attached} interface(s); not attached: {}",
                waiting.join(", ")
            )
        }
    }
}

/// One pass of [`Interfaces::settle`] over the configured interfaces:
/// what it changes, and whether it is the start's (where a failure fails
/// the start).
struct Pass<'p> {
    filter: &'p mut Filter,
    layout: &'p PinLayout,
    state: &'p mut StateFile,
    starting: bool,
}

/// How an attach went, logged (as `verb` at notice level after the start);
/// returns the mode to record: the one the kernel used for a new link,
/// else the one `recorded` for the interface.
fn attached_mode(
    name: &str,
    attached: &Attached,
    recorded: Option<AttachedMode>,
    starting: bool,
    verb: &str,
    ifindex: Option<u32>,
) -> AttachedMode {
    match attached {
        Attached::New { mode, fallback } => {
            if let Some(why) = fallback {
                log::warn!(
                    "{name}: native (driver) XDP is not available ({why}); attached in generic (skb) mode, which is slower"
                );
            }
            if starting {
                log::info!("{name}: attached in {mode} mode, link pinned");
            } else {
                log::info!(
                    target: NOTICE,
                    "{name}: {verb} in {mode} mode (ifindex {}): filtering again",
                    ifindex.map_or_else(|| "?".to_owned(), |i| i.to_string())
                );
            }
            AttachedMode::from(*mode)
        }
        Attached::Adopted => {
            log::info!("{name}: adopted the pinned link");
            recorded.unwrap_or(AttachedMode::Unknown)
        }
        Attached::Updated { old_program_id } => {
            log::info!("{name}: the pinned link ran program {old_program_id}; it runs ours now");
            recorded.unwrap_or(AttachedMode::Unknown)
        }
    }
}

/// Record `name` as configured but not attached (its counter slot and
/// ifindex are kept for when it comes back). Returns whether the state
/// changed.
fn record_waiting(state: &mut StateFile, name: &str, netns: Option<&String>) -> bool {
    if let Some(i) = state.interfaces.iter_mut().find(|i| i.name == name) {
        if i.mode == AttachedMode::NotAttached {
            return false;
        }
        i.mode = AttachedMode::NotAttached;
        return true;
    }
    state.interfaces.push(InterfaceState {
        name: name.to_owned(),
        mode: AttachedMode::NotAttached,
        netns: netns.cloned(),
        ifindex: None,
        slot: None,
    });
    true
}

/// The index of `iface` in this thread's network namespace.
pub(crate) fn ifindex_of(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

#[cfg(test)]
mod tests;
