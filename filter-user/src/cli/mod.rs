//! The CLI verbs that work on the pinned state, with or without the daemon:
//! `status`, `stats`, `flows`, `check`, `list`, `policy`, `reload`,
//! `detach`.
//!
//! Readers open the pinned maps read-only. Writers (`list add|del|load`,
//! `policy set|reset`, `reload` without a daemon, `detach`) take the writer
//! lock of the pins ([`crate::control::lock`]; `list add|del|load` the lists
//! directory's lock before it), read the state file under it, work out
//! their change (a list file's new text, or a policy override in the state
//! file), then validate and install everything as a reload does, recording
//! it in the state file before the flip. If validation, the state write or
//! the install fails, nothing changes and the old rules stay in force.
//!
//! The transaction itself is [`crate::control::transaction`].

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::control::lock::{Liveness, WriterLock, daemon_liveness};
use crate::control::policy::PolicySpec;
use crate::control::state::{ChangeVerb, ReloadBy, StateFile, process_alive};
use crate::control::transaction::{Staged, change, current_settings, no_state_file};
use crate::control::{Error, describe};
use crate::dataplane::loader::Filter;
use crate::dataplane::pins::PinLayout;
use crate::lists::explain;
use crate::lists::{ALLOW_NAME, Cidr, load_dir, parse_list, valid_category_name};
use crate::report::{
    Filtering, collect_stats, collect_status, flow_row, flows_table, json_text, monotonic_ns,
    nothing_pinned,
};

/// How long `detach` waits for the daemon to exit.
const DAEMON_EXIT_WAIT: Duration = Duration::from_secs(10);

/// The state file, if any; a broken one is reported and ignored by readers.
fn read_state(layout: &PinLayout) -> Option<StateFile> {
    match StateFile::read(&layout.dir) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("{e}");
            None
        }
    }
}

/// `flowfilter status [--json]`: the text, and the exit code
/// ([`Filtering::exit_code`]). Nothing pinned is not an error here: it is
/// what `status` reports (exit 5).
pub fn status(layout: &PinLayout, json: bool) -> Result<(String, Filtering), Error> {
    // "Nothing pinned" only when this process could have seen pins: a pin
    // directory it may not look into is an error (not root, say).
    if let Err(e) = std::fs::metadata(&layout.dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(crate::dataplane::pins::PinError::Io {
            path: layout.dir.clone(),
            source: e,
        }
        .into());
    }
    if layout.require().is_err() {
        let (text, value) = nothing_pinned(layout);
        let out = if json { json_text(&value, true) } else { text };
        return Ok((out, Filtering::None));
    }
    let f = Filter::open_pinned(layout, false)?;
    let s = collect_status(&f, layout, read_state(layout))?;
    let out = if json {
        json_text(&s.to_json(), true)
    } else {
        s.to_text()
    };
    Ok((out, s.filtering()))
}

/// Shortest `stats --watch` interval, seconds.
pub const WATCH_MIN_SECS: f64 = 0.1;
/// Longest `stats --watch` interval, seconds (a day).
pub const WATCH_MAX_SECS: f64 = 86_400.0;

/// `flowfilter stats [--json] [--watch SECS]`: prints; with `watch`, until
/// interrupted.
pub fn stats(layout: &PinLayout, json: bool, watch: Option<f64>) -> Result<(), Error> {
    let f = Filter::open_pinned(layout, false)?;
    let out = std::io::stdout();
    let Some(secs) = watch else {
        let snap = collect_stats(&f, read_state(layout).as_ref())?;
        let text = if json {
            json_text(&snap.to_json(None), true)
        } else {
            snap.to_table(None)
        };
        let _ = out.lock().write_all(text.as_bytes());
        return Ok(());
    };
    if !(secs.is_finite() && (WATCH_MIN_SECS..=WATCH_MAX_SECS).contains(&secs)) {
        return Err(Error::Input(format!(
            "--watch {secs}: give an interval from {WATCH_MIN_SECS} to {WATCH_MAX_SECS} seconds"
        )));
    }
    let mut before = collect_stats(&f, read_state(layout).as_ref())?;
    loop {
        std::thread::sleep(Duration::from_secs_f64(secs));
        let now = collect_stats(&f, read_state(layout).as_ref())?;
        let text = if json {
            json_text(&now.to_json(Some(&before)), false)
        } else {
            // Home, clear, redraw.
            format!(
                "\x1b[H\x1b[2J{} every {secs}s (Ctrl-C to stop)\n\n{}",
                crate::control::state::format_utc(now.time),
                now.to_table(Some(&before))
            )
        };
        let mut o = out.lock();
        if o.write_all(text.as_bytes())
            .and_then(|()| o.flush())
            .is_err()
        {
            return Ok(());
        }
        before = now;
    }
}

/// `flowfilter flows [--json]`.
pub fn flows(layout: &PinLayout, json: bool) -> Result<String, Error> {
    let f = Filter::open_pinned(layout, false)?;
    let state = read_state(layout);
    let now = monotonic_ns();
    let mut rows: Vec<_> = f
        .flows()?
        .iter()
        .map(|(k, v)| flow_row(k, v, now, state.as_ref()))
        .collect();
    rows.sort_by(|a, b| {
        b.packets
            .cmp(&a.packets)
            .then_with(|| a.src.to_string().cmp(&b.src.to_string()))
    });
    Ok(if json {
        json_text(&rows, true)
    } else {
        flows_table(&rows)
    })
}

/// Parse `IP`, `IP:PORT`, `[IPv6]:PORT`.
pub fn parse_target(s: &str) -> Result<(IpAddr, Option<u16>), Error> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(Error::Input(format!(
        "`{s}` is not an address (IP, IP:PORT or [IPv6]:PORT)"
    )))
}

/// `flowfilter check IP[:PORT]`: which category and prefix match and why,
/// the policy, and what the live tables say.
pub fn check(
    layout: &PinLayout,
    target: &str,
    lists_dir: Option<&Path>,
    normalize: bool,
) -> Result<String, Error> {
    let (ip, port) = parse_target(target)?;
    let (dir, normalize, state) = if let Some(d) = lists_dir {
        (d.to_path_buf(), normalize, read_state(layout))
    } else {
        let (s, st) = current_settings(layout)?;
        (s.lists_dir, s.normalize || normalize, Some(st))
    };
    let lists = load_dir(&dir, normalize)?;
    let mut out = String::new();
    let policy_of = |name: &str| {
        state.as_ref().and_then(|s| s.category(name)).map_or_else(
            || format!("{} (default)", PolicySpec::default()),
            |c| format!("{} ({})", c.policy, c.policy_source),
        )
    };
    let listed = match explain(&lists, ip) {
        Some(m) if m.allowed() => {
            let _ = writeln!(out, "{ip}: allowlisted by {}", m.hit.prefix);
            if let Some(o) = &m.overridden {
                let _ = writeln!(
                    out,
                    "  why: the allowlist wins over every category; without it {o} would match"
                );
            } else {
                out.push_str("  why: the allowlist holds it; it is never touched\n");
            }
            m.hit.category
        }
        Some(m) => {
            let _ = writeln!(
                out,
                "{ip}: {} ({}), policy {}",
                m.hit.name,
                m.hit.prefix,
                policy_of(&m.hit.name)
            );
            let others: Vec<String> = lists
                .categories
                .iter()
                .filter(|c| c.id != m.hit.category && c.list.cidrs().any(|p| p.contains(ip)))
                .map(|c| c.name.clone())
                .collect();
            if others.is_empty() {
                out.push_str("  why: the only list with a prefix holding it\n");
            } else {
                let _ = writeln!(
                    out,
                    "  why: the longest prefix holding it (ties go to the lower category id); also in: {}",
                    others.join(", ")
                );
            }
            m.hit.category
        }
        None => {
            let _ = writeln!(
                out,
                "{ip}: in no list of {} (its UDP calls can still be recognised by signature)",
                dir.display()
            );
            filter_common::CAT_NONE
        }
    };
    if let Some(p) = port {
        let _ = writeln!(
            out,
            "  port {p}: ports play no part in list matching; call media is recognised per packet"
        );
    }
    if layout.require().is_ok() {
        in_force(layout, ip, listed, state.as_ref(), &mut out)?;
    }
    Ok(out)
}

/// What the live tables say of `ip`, against the category the lists give
/// (`listed`).
fn in_force(
    layout: &PinLayout,
    ip: IpAddr,
    listed: u8,
    state: Option<&StateFile>,
    out: &mut String,
) -> Result<(), Error> {
    let f = Filter::open_pinned(layout, false)?;
    let live = f.lookup(ip)?;
    let generation = f.state()?.generation & 1;
    let name = |id: u8| {
        if id == filter_common::CAT_NONE {
            "no category".to_owned()
        } else {
            state
                .and_then(|s| s.name_of(id))
                .map_or_else(|| format!("category #{id}"), str::to_owned)
        }
    };
    if live == listed {
        let _ = writeln!(out, "  in force: {} (generation {generation})", name(live));
    } else {
        let _ = writeln!(
            out,
            "  in force: {} (generation {generation}); the lists say otherwise: run `flowfilter reload`",
            name(live)
        );
    }
    Ok(())
}

/// A list subcommand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListOp {
    /// Show one category's prefixes, or every category's size.
    Show {
        /// The category, or all.
        category: Option<String>,
    },
    /// Add prefixes.
    Add {
        /// The category (`allow` for the allowlist).
        category: String,
        /// The prefixes.
        cidrs: Vec<String>,
    },
    /// Remove prefixes.
    Del {
        /// The category.
        category: String,
        /// The prefixes.
        cidrs: Vec<String>,
    },
    /// Replace a category's list with a file.
    Load {
        /// The category.
        category: String,
        /// The file.
        file: PathBuf,
    },
}

fn check_category(name: &str) -> Result<(), Error> {
    if name == ALLOW_NAME || valid_category_name(name) {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "`{name}` is not a category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)"
        )))
    }
}

fn parse_cidrs(args: &[String], normalize: bool) -> Result<Vec<Cidr>, Error> {
    args.iter()
        .map(|a| {
            let r = if normalize {
                Cidr::parse_normalized(a)
            } else {
                a.parse::<Cidr>()
            };
            r.map_err(|e| {
                let e = e.to_string();
                Error::Input(if e.contains(a.trim()) {
                    e
                } else {
                    format!("`{a}`: {e}")
                })
            })
        })
        .collect()
}

fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path.display().to_string())(e)),
    }
}

/// The prefix a list line holds, if any (comments stripped, normalised).
fn line_prefix(line: &str) -> Option<Cidr> {
    let entry = line.split_once('#').map_or(line, |(e, _)| e).trim();
    if entry.is_empty() {
        None
    } else {
        Cidr::parse_normalized(entry).ok()
    }
}

/// `flowfilter list ...`. `lists_dir` overrides the installed lists
/// directory for `show`; `normalize` applies to the prefixes given.
pub fn list(
    layout: &PinLayout,
    op: &ListOp,
    lists_dir: Option<&Path>,
    normalize: bool,
) -> Result<String, Error> {
    match op {
        ListOp::Show { category } => list_show(layout, category.as_deref(), lists_dir, normalize),
        ListOp::Add { category, cidrs } => list_add(layout, category, cidrs, normalize),
        ListOp::Del { category, cidrs } => list_del(layout, category, cidrs),
        ListOp::Load { category, file } => list_load(layout, category, file, normalize),
    }
}

/// `flowfilter list add CATEGORY CIDR...`: append the prefixes not yet
/// listed to the category's file (made if missing) and install it; a
/// prefix already there is noted, and nothing new to add is an error.
fn list_add(
    layout: &PinLayout,
    category: &str,
    cidrs: &[String],
    normalize: bool,
) -> Result<String, Error> {
    check_category(category)?;
    let wanted = parse_cidrs(cidrs, normalize)?;
    let mut note = String::new();
    let (info, p) = change(layout, &ChangeVerb::ListAdd.of(category), true, |_, s| {
        let path = s.lists_dir.join(format!("{category}.txt"));
        let mut new = read_optional(&path)?.unwrap_or_default();
        let present: Vec<Cidr> = new.lines().filter_map(line_prefix).collect();
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        let mut added = Vec::new();
        for c in &wanted {
            if present.contains(c) || added.contains(c) {
                let _ = writeln!(note, "{c} is already listed");
            } else {
                let _ = writeln!(new, "{c}");
                added.push(*c);
            }
        }
        if added.is_empty() {
            return Err(Error::Input(format!(
                "nothing to add: every prefix given is already in {}",
                path.display()
            )));
        }
        let _ = writeln!(note, "{category}: added {} prefix(es)", added.len());
        Ok(Some(Staged::new(category, &s.lists_dir, new)))
    })?;
    Ok(format!("{note}{}\n", describe(&info, &p)))
}

/// `flowfilter list del CATEGORY CIDR...`: remove the lines of those
/// prefixes from the category's file and install it; every prefix given
/// must be listed.
fn list_del(layout: &PinLayout, category: &str, cidrs: &[String]) -> Result<String, Error> {
    check_category(category)?;
    let wanted = parse_cidrs(cidrs, true)?;
    let (info, p) = change(layout, &ChangeVerb::ListDel.of(category), true, |_, s| {
        let path = s.lists_dir.join(format!("{category}.txt"));
        let Some(old) = read_optional(&path)? else {
            return Err(Error::Input(format!(
                "{category} has no list file ({} is missing)",
                path.display()
            )));
        };
        let mut found = vec![false; wanted.len()];
        let mut new = String::with_capacity(old.len());
        for line in old.lines() {
            if let Some(i) = line_prefix(line).and_then(|c| wanted.iter().position(|w| *w == c)) {
                found[i] = true;
            } else {
                new.push_str(line);
                new.push('\n');
            }
        }
        if let Some(i) = found.iter().position(|f| !f) {
            return Err(Error::Input(format!(
                "{} is not in {}",
                wanted[i],
                path.display()
            )));
        }
        Ok(Some(Staged::new(category, &s.lists_dir, new)))
    })?;
    Ok(format!(
        "{category}: removed {} prefix(es)\n{}\n",
        wanted.len(),
        describe(&info, &p)
    ))
}

/// `flowfilter list load CATEGORY FILE`: check FILE as a list, then make
/// it the category's file and install it.
fn list_load(
    layout: &PinLayout,
    category: &str,
    file: &Path,
    normalize: bool,
) -> Result<String, Error> {
    check_category(category)?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?;
    let parsed = parse_list(&file.display().to_string(), &text, normalize)?;
    for n in &parsed.notes {
        log::info!("{n}");
    }
    let (info, p) = change(layout, &ChangeVerb::ListLoad.of(category), true, |_, s| {
        Ok(Some(Staged::new(category, &s.lists_dir, text.clone())))
    })?;
    Ok(format!(
        "{category}: loaded {} prefixes from {}\n{}\n",
        parsed.len(),
        file.display(),
        describe(&info, &p)
    ))
}

fn list_show(
    layout: &PinLayout,
    category: Option<&str>,
    lists_dir: Option<&Path>,
    normalize: bool,
) -> Result<String, Error> {
    let (dir, normalize) = if let Some(d) = lists_dir {
        (d.to_path_buf(), normalize)
    } else {
        let (s, _) = current_settings(layout)?;
        (s.lists_dir, s.normalize || normalize)
    };
    let lists = load_dir(&dir, normalize)?;
    let Some(name) = category else {
        // The categories, then the allowlist (id 255).
        let rows: Vec<Vec<String>> = lists
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str(), &c.list))
            .chain([(filter_common::CAT_ALLOW, ALLOW_NAME, &lists.allow)])
            .map(|(id, name, l)| {
                let counts = [l.v4.len(), l.v6.len()].map(|n| n.to_string());
                [id.to_string(), name.to_owned()]
                    .into_iter()
                    .chain(counts)
                    .collect()
            })
            .collect();
        return Ok(format!(
            "{}\n{}",
            dir.display(),
            crate::report::table(&["ID", "CATEGORY", "IPV4", "IPV6"], &rows, 2)
        ));
    };
    check_category(name)?;
    let list = if name == ALLOW_NAME {
        &lists.allow
    } else {
        &lists
            .by_name(name)
            .ok_or_else(|| {
                Error::Input(format!(
                    "no category `{name}` in {} (known: {})",
                    dir.display(),
                    lists.known_names()
                ))
            })?
            .list
    };
    let mut out = String::new();
    for c in list.cidrs() {
        let _ = writeln!(out, "{c}");
    }
    let _ = writeln!(
        out,
        "# {name}: {} IPv4 and {} IPv6 prefixes",
        list.v4.len(),
        list.v6.len()
    );
    Ok(out)
}

/// `flowfilter policy set CATEGORY SPEC`.
pub fn policy_set(layout: &PinLayout, category: &str, spec: &str) -> Result<String, Error> {
    let parsed: PolicySpec = spec.parse().map_err(|e| Error::Input(format!("{e}")))?;
    check_category(category)?;
    if category == ALLOW_NAME {
        return Err(Error::Input(
            "the allowlist has no policy: its addresses are never touched".into(),
        ));
    }
    let by = ChangeVerb::PolicySet.of(category);
    let (info, p) = change(layout, &by, false, |st, s| {
        let lists = load_dir(&s.lists_dir, s.normalize)?;
        if lists.by_name(category).is_none() {
            return Err(Error::Input(format!(
                "no category `{category}` in {} (known: {})",
                s.lists_dir.display(),
                lists.known_names()
            )));
        }
        st.overrides.insert(category.to_owned(), parsed);
        Ok(None)
    })?;
    Ok(format!(
        "{category}: policy {parsed} (kept until `flowfilter policy reset {category}`)\n{}\n",
        describe(&info, &p)
    ))
}

/// `flowfilter policy reset CATEGORY`: drop the `policy set` override.
pub fn policy_reset(layout: &PinLayout, category: &str) -> Result<String, Error> {
    check_category(category)?;
    let mut now = String::new();
    let (info, p) = change(
        layout,
        &ChangeVerb::PolicyReset.of(category),
        false,
        |st, _| {
            if st.overrides.remove(category).is_none() {
                return Err(Error::Input(format!(
                    "{category} has no policy set with `flowfilter policy set`"
                )));
            }
            Ok(None)
        },
    )?;
    if let Some(c) = p.categories.iter().find(|c| c.name == category) {
        now = format!("{} ({})", c.policy, c.policy_source);
    }
    Ok(format!(
        "{category}: policy {now}\n{}\n",
        describe(&info, &p)
    ))
}

/// Signal `pid`.
fn send_signal(pid: u32, sig: libc::c_int) -> Result<(), Error> {
    let p = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| Error::Other(format!("bad pid {pid}")))?;
    let sig = rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| Error::Other(format!("bad signal {sig}")))?;
    rustix::process::kill_process(p, sig)
        .map_err(|e| Error::io(format!("signalling the daemon (pid {pid})"))(e.into()))
}

/// `flowfilter reload`: the daemon reloads (SIGHUP) and this waits for its
/// verdict; without a daemon (or while one is still starting), reload here.
pub fn reload(layout: &PinLayout, timeout: Duration) -> Result<String, Error> {
    layout.require()?;
    let lock = WriterLock::acquire(&layout.dir)?;
    let state = StateFile::read(&layout.dir)?.ok_or_else(|| no_state_file(layout))?;
    let Some(pid) = state.live_daemon() else {
        let starting = matches!(daemon_liveness(&layout.dir), Ok(Liveness::Alive { .. }));
        drop(lock);
        let (info, p) = change(layout, &ReloadBy::Reload, false, |_, _| Ok(None))?;
        return Ok(format!(
            "reloaded ({}): {}\n",
            if starting {
                "the daemon is still starting"
            } else {
                "no daemon running"
            },
            describe(&info, &p)
        ));
    };
    let serial = state.reload_serial;
    // Signalled under the lock, so the pid is still the lock holder's; the
    // daemon's reload waits for the lock.
    send_signal(pid, libc::SIGHUP)?;
    drop(lock);
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(25));
        if let Ok(Some(s)) = StateFile::read(&layout.dir)
            && s.reload_serial > serial
            && let Some(r) = s.last_reload
        {
            if r.ok {
                return Ok(format!(
                    "reloaded by the daemon (pid {pid}): generation {} in force\n",
                    r.generation
                ));
            }
            let msg = format!(
                "reload rejected, the old rules stay in force: {}",
                r.error.unwrap_or_default()
            );
            return Err(if r.input_error {
                Error::Input(msg)
            } else {
                Error::Other(msg)
            });
        }
        if state.legacy_daemon().is_none()
            && matches!(daemon_liveness(&layout.dir), Ok(Liveness::Dead))
        {
            return Err(Error::Other(format!(
                "the daemon (pid {pid}) exited before it answered: see its log"
            )));
        }
        if start.elapsed() > timeout {
            return Err(Error::Other(format!(
                "the daemon (pid {pid}) did not answer within {}s: see its log",
                timeout.as_secs()
            )));
        }
    }
}

/// The daemon to stop before the pins go: the liveness lock's holder (a
/// daemon, whether or not it finished starting), or a version-1 file's
/// daemon.
fn daemon_to_stop(layout: &PinLayout, state: Option<&StateFile>) -> Result<Option<u32>, Error> {
    match daemon_liveness(&layout.dir)? {
        Liveness::Alive { pid: Some(pid) } => Ok(Some(pid)),
        Liveness::Alive { pid: None } => state
            .and_then(|s| s.daemon.as_ref())
            .map(|d| Some(d.pid))
            .ok_or_else(|| {
                Error::Other(format!(
                    "a flowfilter daemon runs on {} but its pid cannot be seen here (another pid namespace?): stop it first",
                    layout.dir.display()
                ))
            }),
        Liveness::Dead => Ok(state.and_then(StateFile::legacy_daemon)),
    }
}

/// `flowfilter detach [--iface IF]`: stop the daemon (if it runs), then
/// remove one interface's link, or every link, the program and maps.
pub fn detach(layout: &PinLayout, iface: Option<&str>) -> Result<String, Error> {
    if layout.is_empty()? {
        return Err(crate::dataplane::pins::PinError::NoState {
            dir: layout.dir.clone(),
        }
        .into());
    }
    if let Some(iface) = iface {
        return detach_iface(layout, iface);
    }
    let mut out = String::new();
    let state = read_state(layout);
    if let Some(pid) = daemon_to_stop(layout, state.as_ref())? {
        stop_daemon(layout, state.as_ref(), pid)?;
        let _ = writeln!(out, "stopped the daemon (pid {pid})");
    }
    let lock = WriterLock::acquire(&layout.dir)?;
    // A daemon that started while this waited keeps its pins.
    if let Liveness::Alive { pid } = daemon_liveness(&layout.dir)? {
        return Err(Error::Other(format!(
            "a flowfilter daemon{} started on {} meanwhile; nothing removed (run `flowfilter detach` again to stop it)",
            pid.map_or_else(String::new, |p| format!(" (pid {p})")),
            layout.dir.display()
        )));
    }
    let links = layout.pinned_links()?;
    let maps = layout.pinned_maps()?.len();
    let program = layout.has_program();
    layout.remove_all()?;
    StateFile::remove_locked(&layout.dir, &lock)?;
    if links.is_empty() {
        out.push_str("no interface was attached\n");
    } else {
        let _ = writeln!(out, "detached from {}", links.join(", "));
    }
    let _ = writeln!(
        out,
        "removed {}{maps} maps pinned at {}",
        if program { "the program and " } else { "" },
        layout.dir.display()
    );
    Ok(out)
}

/// `flowfilter detach --iface IF`: remove that interface's pinned link,
/// under the lock, the state file forgetting it first (and put back as it
/// was if the link cannot be removed). The daemon keeps running.
fn detach_iface(layout: &PinLayout, iface: &str) -> Result<String, Error> {
    let lock = WriterLock::acquire(&layout.dir)?;
    let path = layout.link(iface);
    if !path.exists() {
        return Err(Error::Input(format!(
            "no pinned link for {iface} at {} (pinned: {})",
            path.display(),
            layout.pinned_links()?.join(", ")
        )));
    }
    // Recorded first: a link the state file cannot forget stays.
    let before = read_state(layout);
    if let Some(mut s) = before.clone() {
        s.interfaces.retain(|i| i.name != iface);
        s.write(&lock)
            .map_err(|error| Error::NotRecorded { error })?;
    }
    if let Err(e) = crate::dataplane::pins::remove_file(&path) {
        if let Some(s) = &before
            && let Err(w) = s.write(&lock)
        {
            log::error!("{w}: the state file no longer lists {iface}, but its link stays");
        }
        return Err(e.into());
    }
    Ok(format!("detached from {iface}\n"))
}

/// Send SIGTERM to the daemon `pid` and wait up to [`DAEMON_EXIT_WAIT`]
/// for it to exit: for its liveness lock to be free, or for its process
/// to be gone when it is a version-1 daemon (which holds no such lock).
fn stop_daemon(layout: &PinLayout, state: Option<&StateFile>, pid: u32) -> Result<(), Error> {
    send_signal(pid, libc::SIGTERM)?;
    let legacy = state.and_then(StateFile::legacy_daemon) == Some(pid);
    let start = Instant::now();
    while if legacy {
        process_alive(pid)
    } else {
        daemon_liveness(&layout.dir)? != Liveness::Dead
    } {
        if start.elapsed() > DAEMON_EXIT_WAIT {
            return Err(Error::Other(format!(
                "the daemon (pid {pid}) did not exit within {}s; nothing removed",
                DAEMON_EXIT_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
