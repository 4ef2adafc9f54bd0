//! `cargo xtask demo`: the filter at work on a machine without a spare NIC.
//!
//! 1. builds `flowfilter`, `ffgen` and `ffharness`;
//! 2. brings the veth harness up (`ffharness --prefix ff<pid>x0 up`:
//!    namespaces `client`, `gw`, `net`, documentation addresses only);
//! 3. starts `flowfilter run --netns <gw> --iface gw-c --iface gw-n --inside
//!    gw-c --mode driver` (the client side is the subscriber side) with the
//!    harness lists and its own pin directory;
//! 4. runs every generator scenario three times, under `monitor`, `drop` and
//!    `flows=50%`, switching with `flowfilter policy set` against the running
//!    daemon (same pid, program and links: no restart), with a live counter
//!    line while traffic flows and `flowfilter stats` after each phase;
//! 5. ends with one row per flow: what each side sent and what arrived (from
//!    the generators), joined by 5-tuple with `flowfilter flows --json`
//!    (category, label, why); "untouched" where the filter kept no state;
//! 6. tears everything down (also on Ctrl-C, SIGTERM or any error) and
//!    checks that nothing is left: namespaces, pins, state file, processes,
//!    temporary files.
//!
//! Children run in their own process groups, so a Ctrl-C reaches only this
//! process, which then stops them in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{is_root, root, run, step};

mod table;
use table::{count, host, index_flows, join, summary, table};

mod daemon;

const USAGE: &str = "usage: cargo xtask demo [--v6]
  Builds flowfilter and the traffic generators, brings up the veth harness, starts
  `flowfilter run` on its gateway and runs every scenario under monitor, drop and
  flows=50% (switched live), then prints a table per flow and removes everything.
  --v6  run the scenarios over IPv6";

/// The categories of the harness lists.
const CATEGORIES: [&str; 2] = ["whatsapp", "telegram"];
/// The phases: name and policy spec (same for both categories).
const PHASES: [(&str, &str); 3] = [
    (
        "monitor",
        "count call media as it would be dropped, drop nothing",
    ),
    ("drop", "drop call media, pass everything else"),
    (
        "flows=50%",
        "stop every flow of half the subscribers' calls, spare the others (fate per subscriber: the client side, --inside gw-c)",
    ),
];
/// The generator scenarios, in the order they run (`ffgen list`).
const SCENARIOS: [&str; 10] = [
    "whatsapp",
    "whatsapp-inherit",
    "whatsapp-callee",
    "telegram",
    "tgcalls",
    "webrtc",
    "messaging",
    "dns",
    "quic",
    "game",
];
/// Client addresses of the harness plan (`plan::CALLERS`): scenario `i`
/// calls from caller `i % CALLERS`, so `flows=50%` has several callers to
/// split.
const CALLERS: usize = 8;
/// Most packets a receiving side may get of a flow counted as blocked.
const HANDFUL: u64 = 5;
/// Longest the daemon may take to come up.
const DAEMON_START: Duration = Duration::from_mins(1);
/// Longest one scenario may take.
const SCENARIO_LIMIT: Duration = Duration::from_mins(1);
/// Longest the daemon may take to exit after SIGTERM.
const DAEMON_EXIT: Duration = Duration::from_secs(10);
/// Where `flowfilter` keeps its state files (`filter_user::control::state::STATE_DIR`).
const STATE_DIR: &str = "/run/flowfilter";

/// Set by SIGINT, SIGTERM and SIGHUP.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM and SIGHUP: they only set [`INTERRUPTED`]; every
/// wait below polls it and unwinds into the teardown.
fn install_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an
        // atomic (async-signal-safe); sa_mask empty.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&raw mut sa.sa_mask);
            libc::sigaction(sig, &raw const sa, std::ptr::null_mut())
        };
        if r != 0 {
            bail!(
                "installing a handler for signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: tearing down");
    }
    Ok(())
}

/// Sleep `d`, waking early (with an error) when interrupted.
fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        interrupted()?;
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    interrupted()
}

/// A section heading, on stdout with the rest of the demo's output.
fn header(what: &str) {
    println!("\n==> {what}");
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `cargo xtask demo`
pub fn demo(args: &[String]) -> Result<()> {
    let mut v6 = false;
    for a in args {
        match a.as_str() {
            "--v6" => v6 = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown demo argument `{other}`\n{USAGE}"),
        }
    }
    if !is_root() {
        bail!(
            "the demo creates network namespaces and attaches XDP programs: run it as root (sudo -E cargo xtask demo)"
        );
    }
    let started = Instant::now();
    step("demo: build flowfilter, ffgen and ffharness");
    run(Command::new("cargo")
        .args(["build", "-p", "filter-user", "--bin", "flowfilter"])
        .args(crate::HARNESS_BINS))?;
    install_handlers()?;
    // Orphans (a generator whose ffharness was killed) come to this process
    // rather than to init, so the teardown reaps them: no zombie outlives it.
    // SAFETY: prctl with an integer argument; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let bin = target_dir().join("debug");
    let mut demo = Demo::new(&bin);
    let result = demo.run(v6);
    let out = std::io::stdout();
    let _ = out.lock().flush();
    header("demo: tear down");
    demo.teardown();
    let left = demo.leftovers();
    if left.is_empty() {
        println!(
            "left behind: nothing (checked: namespaces {0}-*, pins {1}, state file, daemon and generator processes, {0}-* temporary files)",
            demo.prefix,
            demo.pin_dir.display()
        );
    } else {
        println!("LEFT BEHIND: {}", left.join("; "));
    }
    println!("demo took {:.1} s", started.elapsed().as_secs_f64());
    if INTERRUPTED.load(Ordering::SeqCst) {
        println!(
            "interrupted: stopped early{}",
            if left.is_empty() {
                ", everything it made is removed"
            } else {
                " (see LEFT BEHIND above)"
            }
        );
        let _ = std::io::stdout().flush();
        // The shell's convention for a run ended by SIGINT.
        std::process::exit(130);
    }
    result?;
    if !left.is_empty() {
        bail!("the demo left things behind: {}", left.join("; "));
    }
    Ok(())
}

/// One flow as the generators saw it, joined with the filter's view.
struct Row {
    phase: &'static str,
    scenario: String,
    flow: String,
    proto: String,
    client: String,
    server: String,
    sent: u64,
    delivered: u64,
    answered: u64,
    received: u64,
    /// The filter's flow entry (`flows --json`), if it tracked the flow.
    tracked: Option<Value>,
    /// Packets and drops of the entry during this phase.
    packets: u64,
    dropped: u64,
}

impl Row {
    fn full(&self) -> bool {
        self.sent > 0 && self.delivered == self.sent && self.received == self.answered
    }

    fn blocked(&self) -> bool {
        self.sent > HANDFUL && self.delivered <= HANDFUL && self.received <= HANDFUL
    }

    fn category(&self) -> String {
        self.tracked
            .as_ref()
            .and_then(|t| t["category"].as_str())
            .unwrap_or("-")
            .to_owned()
    }

    fn label(&self) -> String {
        match &self.tracked {
            None => "untouched".to_owned(),
            Some(t) => t["label"].as_str().unwrap_or("-").to_owned(),
        }
    }

    fn is_call(&self) -> bool {
        self.tracked.as_ref().is_some_and(|t| t["call"] == true)
    }

    /// Why the filter did what it did, from its own flow entry.
    fn why(&self) -> String {
        let Some(t) = &self.tracked else {
            return if self.proto == "tcp" {
                "TCP: no call fallback (STUN/TURN or Telegram's reflector toward a listed range), passed".to_owned()
            } else {
                "no listed address, no messenger signature: no flow state".to_owned()
            };
        };
        let cat = t["category"].as_str().unwrap_or("?");
        let label = t["label"].as_str().unwrap_or("");
        let how = if t["listed"] == true {
            format!("{cat} range")
        } else if label == "p2p-inherited" {
            "endpoint learned in the relay leg".to_owned()
        } else {
            format!("{cat} signature, unlisted address")
        };
        if t["call"] != true {
            return format!("{how}; not call media: passed");
        }
        let effect = match (self.phase, t["fate"].as_str()) {
            ("monitor", _) => "monitored, passed".to_owned(),
            ("flows=50%", Some("spared")) => "subscriber spared, passed".to_owned(),
            ("flows=50%", Some("stopped")) => {
                format!("subscriber stopped, {} dropped", self.dropped)
            }
            _ if self.dropped > 0 => format!("{} dropped", self.dropped),
            _ => "passed".to_owned(),
        };
        format!("{how}; call media: {effect}")
    }
}

/// A child in its own process group (a Ctrl-C reaches only xtask), killed
/// with its group when dropped.
struct Group {
    child: Child,
}

impl Group {
    fn spawn(cmd: &mut Command) -> Result<Group> {
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Group { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal_group(&self, sig: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: killpg(2) of the group this child leads.
            unsafe { libc::killpg(pid, sig) };
        }
    }

    /// Wait for exit, polling for interrupts; kill after `limit`.
    fn wait(&mut self, limit: Duration, what: &str) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            interrupted()?;
            if Instant::now() > deadline {
                self.signal_group(libc::SIGKILL);
                bail!("{what} still running after {limit:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal_group(libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Everything the demo made; [`Demo::teardown`] removes it.
struct Demo {
    bin: PathBuf,
    prefix: String,
    gw: String,
    pin_dir: PathBuf,
    state_file: PathBuf,
    log: PathBuf,
    lists: Option<PathBuf>,
    /// `/run/flowfilter` existed before: leave the directory.
    state_dir_existed: bool,
    daemon: Option<Group>,
    daemon_pid: Option<u32>,
    /// The scenario running now, if any.
    current: Option<Group>,
    up: bool,
    tty: bool,
    /// [`Demo::teardown`] ran (else `Drop` runs it, e.g. after a panic).
    torn_down: bool,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if !self.torn_down {
            self.teardown();
        }
    }
}

impl Demo {
    fn new(bin: &Path) -> Demo {
        // ff<pid>x<n>: the harness's own unique form, so `ffharness cleanup`
        // (and the tests' cleanup) removes it if this process is killed -9.
        let prefix = format!("ff{}x0", std::process::id());
        let gw = format!("{prefix}-gw");
        let pin_dir = Path::new("/sys/fs/bpf").join(&gw);
        Demo {
            bin: bin.to_path_buf(),
            state_file: Path::new(STATE_DIR).join(format!("{gw}.json")),
            log: std::env::temp_dir().join(format!("{prefix}-daemon.log")),
            lists: None,
            state_dir_existed: Path::new(STATE_DIR).exists(),
            daemon: None,
            daemon_pid: None,
            current: None,
            up: false,
            tty: std::io::stdout().is_terminal(),
            torn_down: false,
            prefix,
            gw,
            pin_dir,
        }
    }

    fn ffharness(&self) -> Command {
        let mut c = Command::new(self.bin.join("ffharness"));
        c.arg("--prefix")
            .arg(&self.prefix)
            .env("FFGEN", self.bin.join("ffgen"))
            .stdin(Stdio::null());
        c
    }

    fn flowfilter(&self) -> Command {
        let mut c = Command::new(self.bin.join("flowfilter"));
        c.arg("--pin-dir")
            .arg(&self.pin_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// `flowfilter --pin-dir DIR ARGS...`: its stdout, or an error with its
    /// stderr.
    fn ff(&self, args: &[&str]) -> Result<String> {
        let out = self
            .flowfilter()
            .args(args)
            .output()
            .with_context(|| format!("running flowfilter {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "`flowfilter {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn ff_json(&self, args: &[&str]) -> Result<Value> {
        let mut v = args.to_vec();
        v.push("--json");
        let out = self.ff(&v)?;
        serde_json::from_str(&out).with_context(|| format!("flowfilter {}: not JSON", v.join(" ")))
    }

    /// The demo proper: clear leftovers, bring the harness up, start the
    /// daemon, run every phase and print the per-flow table and summaries.
    fn run(&mut self, v6: bool) -> Result<()> {
        self.cleanup_leftovers()?;
        let lists = self.harness_up()?;

        header(&format!(
            "demo: start the daemon on {} (native XDP on gw-c and gw-n)",
            self.gw
        ));
        self.start_daemon(&lists, PHASES[0].0)?;
        print!("{}", self.ff(&["status"])?);

        let rows = self.phases(v6)?;

        header("demo: per flow: what was sent, what arrived, what the filter made of it");
        print!("{}", table(&rows));
        println!();
        for (spec, _) in PHASES {
            println!("{}", summary(spec, &rows));
        }
        Ok(())
    }

    /// `ffharness cleanup`: remove what killed runs left behind.
    fn cleanup_leftovers(&self) -> Result<()> {
        header("demo: clear what killed runs left behind");
        let out = self
            .ffharness()
            .arg("cleanup")
            .output()
            .context("ffharness cleanup")?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            bail!(
                "ffharness cleanup failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        interrupted()
    }

    /// `ffharness up`: the namespaces and veth pairs, with its output shown
    /// and the ranges of each category's list; the lists directory.
    fn harness_up(&mut self) -> Result<PathBuf> {
        header(&format!(
            "demo: harness up (namespaces {0}-client, {0}-gw, {0}-net)",
            self.prefix
        ));
        self.up = true;
        let mut up = Group::spawn(self.ffharness().arg("up").stdout(Stdio::piped()))?;
        let mut text = String::new();
        if let Some(mut o) = up.child.stdout.take() {
            let _ = o.read_to_string(&mut text);
        }
        let st = up.wait(Duration::from_secs(30), "ffharness up")?;
        if !st.success() {
            bail!("ffharness up failed ({st})");
        }
        for line in text.lines() {
            if let Some(l) = line.strip_prefix("lists: ") {
                self.lists = l.split_whitespace().next().map(PathBuf::from);
            }
            if !line.starts_with("remove with") {
                println!("{line}");
            }
        }
        let lists = self
            .lists
            .clone()
            .ok_or_else(|| anyhow!("ffharness up did not name its lists directory"))?;
        for c in CATEGORIES {
            let p = lists.join(format!("{c}.txt"));
            let body = std::fs::read_to_string(&p).unwrap_or_default();
            let ranges: Vec<&str> = body
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .collect();
            println!("  {c}.txt: {}", ranges.join(" "));
        }
        Ok(lists)
    }

    /// Every phase in turn (after the first, its policy switched live on
    /// the running daemon): the scenarios, joined with the filter's flows,
    /// and its stats; the table's rows.
    fn phases(&mut self, v6: bool) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        let mut before: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let identity = self.identity()?;
        for (n, (spec, about)) in PHASES.iter().enumerate() {
            header(&format!(
                "demo: phase {}/{}: policy {spec} on whatsapp and telegram: {about}",
                n + 1,
                PHASES.len()
            ));
            if n > 0 {
                self.switch_policy(spec, &identity)?;
            }
            let results = self.run_phase(v6)?;
            let flows = self.ff_json(&["flows"])?;
            let index = index_flows(&flows);
            for r in results {
                rows.push(join(spec, &r, &index, &before));
            }
            before = index
                .iter()
                .map(|(k, v)| (k.clone(), (count(v, "packets"), count(v, "dropped"))))
                .collect();
            println!("\n$ flowfilter --pin-dir {} stats", self.pin_dir.display());
            print!("{}", self.ff(&["stats"])?);
        }
        Ok(rows)
    }

    /// `flowfilter policy set` on both categories, then whether the daemon,
    /// program and links are still those of `identity` (switched live).
    fn switch_policy(&self, spec: &str, identity: &(u64, u64, String)) -> Result<()> {
        for c in CATEGORIES {
            println!(
                "$ flowfilter --pin-dir {} policy set {c} {spec}",
                self.pin_dir.display()
            );
            print!("{}", self.ff(&["policy", "set", c, spec])?);
        }
        let now = self.identity()?;
        if now == *identity {
            println!(
                "same daemon (pid {}), program (id {}) and links ({}): switched live, no restart",
                now.0, now.1, now.2
            );
        } else {
            println!("note: daemon/program/links changed from {identity:?} to {now:?}");
        }
        Ok(())
    }

    /// Every scenario once, each followed by the filter's counters (and on a
    /// terminal a line redrawn every second while it runs); the generators'
    /// rows.
    fn run_phase(&mut self, v6: bool) -> Result<Vec<Value>> {
        let mut last = self.counters().ok();
        let mut last_at = Instant::now();
        let mut results = Vec::new();
        for (i, sc) in SCENARIOS.iter().enumerate() {
            let started = Instant::now();
            let (out_t, err_t) = self.spawn_scenario(sc, i % CALLERS, v6)?;
            let status = self.wait_scenario(sc, started, &mut last, &mut last_at)?;
            self.current = None;
            let out = out_t.join().unwrap_or_default();
            let err = err_t.join().unwrap_or_default();
            if !status.success() {
                bail!("scenario {sc} failed ({status}): {}", err.trim());
            }
            let flows: Vec<Value> = out
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect();
            let from = flows
                .first()
                .and_then(|f| f["client"].as_str())
                .map_or_else(String::new, |c| host(c).to_owned());
            self.clear_live();
            last_at = Instant::now();
            println!(
                "  {sc:<17} {from:<15} {:>2} flow{} {:>4.1} s  {}",
                flows.len(),
                if flows.len() == 1 { " " } else { "s" },
                started.elapsed().as_secs_f64(),
                self.counters_line(&mut last)
            );
            results.extend(flows);
        }
        Ok(results)
    }

    /// Start `ffharness run` of one scenario from `caller` as the current
    /// group; threads reading its stdout and stderr.
    fn spawn_scenario(
        &mut self,
        sc: &str,
        caller: usize,
        v6: bool,
    ) -> Result<(JoinHandle<String>, JoinHandle<String>)> {
        let mut cmd = self.ffharness();
        cmd.args(["run", sc, "--json", "--caller", &caller.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if v6 {
            cmd.arg("--v6");
        }
        self.current = Some(Group::spawn(&mut cmd)?);
        let g = self.current.as_mut().expect("just set");
        let mut o = g.child.stdout.take().expect("piped");
        let mut e = g.child.stderr.take().expect("piped");
        Ok((
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = o.read_to_string(&mut s);
                s
            }),
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            }),
        ))
    }

    /// Wait for the current scenario (at most SCENARIO_LIMIT, stopping at
    /// Ctrl-C), on a terminal redrawing the counters line every second.
    fn wait_scenario(
        &mut self,
        sc: &str,
        started: Instant,
        last: &mut Option<(Value, u64, Instant)>,
        last_at: &mut Instant,
    ) -> Result<ExitStatus> {
        let deadline = started + SCENARIO_LIMIT;
        loop {
            let g = self.current.as_mut().expect("running");
            if let Some(st) = g.child.try_wait()? {
                return Ok(st);
            }
            interrupted()?;
            if Instant::now() > deadline {
                bail!("scenario {sc} still running after {SCENARIO_LIMIT:?}");
            }
            if self.tty && last_at.elapsed() >= Duration::from_secs(1) {
                *last_at = Instant::now();
                let line = self.counters_line(last);
                let mut out = std::io::stdout().lock();
                let _ = write!(
                    out,
                    "\r\x1b[K  {sc:<17} running {:>4.1} s  {line}",
                    started.elapsed().as_secs_f64()
                );
                let _ = out.flush();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reap every remaining child (orphaned grandchildren come here: this
/// process is their subreaper) until none is left, for at most 3 s.
fn reap_orphans() {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        if r < 0 || Instant::now() > deadline {
            // ECHILD: no child left.
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
