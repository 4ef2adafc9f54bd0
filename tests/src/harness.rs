//! The veth namespace harness: three network namespaces, a gateway that
//! forwards between them, flowfilter attached on the gateway, and traffic
//! generators with real sockets on both ends.
//!
//! ```text
//! client ──veth── gw (IP forwarding, XDP on gw-c and gw-n) ──veth── net
//! ```
//!
//! * [`Harness::up`] creates `client`, `gw` and `net` (names prefixed per
//!   instance, `ff<pid>x<n>-client` ..., so parallel and aborted runs never
//!   collide; the CLI uses the fixed prefix [`FIXED_PREFIX`]), the veth
//!   pairs, addresses from the documentation prefixes only
//!   ([`plan`] has the whole plan), forwarding in `gw`, routes both ways and
//!   no default route anywhere; and writes a lists directory mapping some of
//!   `net`'s addresses to `whatsapp` and `telegram`.
//! * Dropping the [`Harness`] removes everything it created (processes
//!   inside its namespaces, the filter, the namespaces and with them the
//!   veths, the lists directory), also after a failed step or a panic.
//!   [`cleanup_stale`] removes what killed runs left behind (namespaces,
//!   daemons and their pins).
//! * [`Harness::attach_library_filter`] loads the XDP program through
//!   `filter_user::dataplane::loader` and attaches it in native mode on both gateway
//!   veths. [`Harness::attach_daemon`] starts the real daemon instead:
//!   `flowfilter --pin-dir /sys/fs/bpf/PREFIX-gw run --netns PREFIX-gw
//!   --iface gw-c --iface gw-n --mode driver --lists LISTS --policy ...`
//!   (through `--netns`, not `ip netns exec`, which remounts /sys: the pins
//!   must live in this mount namespace and outlive the daemon). Dropping the
//!   [`GatewayFilter`] kills the daemon and removes its pins and state file.
//! * [`Harness::run_scenario`] starts the responder (`ffgen serve`) in
//!   `net`, runs `ffgen run SCENARIO` in `client`, and joins both sides'
//!   counts into one [`FlowResult`] per flow. [`Harness::start_scenarios`]
//!   runs several at once against one responder and returns while they
//!   run, so a test can act on the gateway mid-call ([`Harness::start_runs`]
//!   mixes the families). [`HarnessOpts::evasion`] makes the call scenarios
//!   evade the filter ([`evasion`]: IP fragments, decoys, TCP fallback).
//!
//! Errors are [`HarnessError`]; the `up`/`run_scenario` convenience forms
//! panic with context, as integration tests want.

pub mod evasion;
pub mod plan;
pub mod traffic;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aya::programs::XdpMode;
use filter_user::control::install::InstallLists as _;
use filter_user::control::policy::PolicySpec;
use filter_user::control::state::{StateFile, process_alive};
use filter_user::dataplane::loader::{Filter, LoadError, LoadOptions};
use filter_user::dataplane::pins::{BPFFS_ROOT, PinLayout};
use filter_user::lists::{ListError, Lists, load_dir};

use crate::harness::evasion::Evasion;
use crate::harness::traffic::FlowLine;

/// Prefix of the namespaces `cargo xtask harness up` creates.
pub const FIXED_PREFIX: &str = "ffh";
/// Longest a generator or responder may run before the harness kills it.
const CHILD_DEADLINE: Duration = Duration::from_mins(1);
/// Directory `ip netns` keeps its namespaces in.
const NETNS_DIR: &str = "/var/run/netns";
/// Longest the daemon may take to load, verify, attach and install.
const DAEMON_START: Duration = Duration::from_mins(1);
/// Longest the daemon may take to exit after a signal before it is killed.
const DAEMON_EXIT: Duration = Duration::from_secs(10);

/// What went wrong in the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A command could not be started or waited for.
    #[error("running `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file or namespace operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Loading, installing or attaching the XDP program failed.
    #[error("flowfilter: {0}")]
    Filter(#[from] LoadError),
    /// The harness lists did not load.
    #[error("harness lists: {0}")]
    Lists(#[from] ListError),
    /// A policy spec or category is wrong.
    #[error("policy: {0}")]
    Policy(String),
    /// The generator or responder misbehaved.
    #[error("generator: {0}")]
    Generator(String),
    /// Fixed-name namespaces are already there (or missing, for `existing`).
    #[error("{0}")]
    State(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The command `line` could not be started or waited for.
fn spawn_err(line: &str) -> impl FnOnce(io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Spawn {
        cmd: line.to_owned(),
        source,
    }
}

/// The command `line` ran and failed: its exit status and trimmed stderr.
fn command_failed(line: String, out: &Output) -> HarnessError {
    HarnessError::Command {
        cmd: line,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// One of the three namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    /// The user side.
    Client,
    /// The gateway running flowfilter.
    Gw,
    /// The far side with the stand-in servers.
    Net,
}

/// The namespace names of one harness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The common prefix (`ff1234x0`, `ffh`).
    pub prefix: String,
    /// `PREFIX-client`.
    pub client: String,
    /// `PREFIX-gw`.
    pub gw: String,
    /// `PREFIX-net`.
    pub net: String,
}

impl Names {
    /// Names with `prefix`.
    pub fn with_prefix(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
            client: format!("{prefix}-client"),
            gw: format!("{prefix}-gw"),
            net: format!("{prefix}-net"),
        }
    }

    /// A prefix no other harness (of this or another process) uses.
    pub fn unique() -> Names {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Names::with_prefix(&format!("ff{}x{n}", std::process::id()))
    }

    /// The name of `ns`.
    pub fn of(&self, ns: Ns) -> &str {
        match ns {
            Ns::Client => &self.client,
            Ns::Gw => &self.gw,
            Ns::Net => &self.net,
        }
    }

    /// All three, in creation order.
    pub fn all(&self) -> [&str; 3] {
        [&self.client, &self.gw, &self.net]
    }

    /// The lists directory of this prefix.
    pub fn lists_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}-lists", self.prefix))
    }

    /// The pin directory of a daemon on this prefix's gateway
    /// (`/sys/fs/bpf/PREFIX-gw`).
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(BPFFS_ROOT).join(&self.gw)
    }

    /// The log file of a daemon on this prefix's gateway.
    pub fn daemon_log(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}-daemon.log", self.prefix))
    }
}

/// How to bring a harness up and pace its generators.
#[derive(Clone, Debug)]
pub struct HarnessOpts {
    /// Namespace prefix; `None` picks a unique one.
    pub prefix: Option<String>,
    /// The `ffgen` binary; `None` looks in `$FFGEN`, then beside the running
    /// executable (and one directory up, for test binaries in `deps/`).
    pub ffgen: Option<PathBuf>,
    /// Time between two sends of a generator.
    pub interval: Duration,
    /// Media packets per call leg.
    pub packets: u32,
    /// Longest wait for missing answers after the last send.
    pub linger: Duration,
    /// Seed of the generators.
    pub seed: u64,
    /// The `flowfilter` binary for [`Harness::attach_daemon`]; `None` looks
    /// in `$FLOWFILTER_BIN`, beside the running executable (and one
    /// directory up), then in the workspace's target directory.
    pub flowfilter: Option<PathBuf>,
    /// What the call scenarios do to evade the filter (`ffgen run
    /// --evasion`; see [`evasion`]). Non-call scenarios run as always.
    pub evasion: Evasion,
}

impl Default for HarnessOpts {
    fn default() -> Self {
        HarnessOpts {
            prefix: None,
            ffgen: None,
            interval: Duration::from_millis(20),
            packets: 30,
            linger: Duration::from_millis(400),
            seed: 1,
            flowfilter: None,
            evasion: Evasion::None,
        }
    }
}

/// How flowfilter is attached to the gateway. Dropping it detaches it.
#[expect(
    clippy::large_enum_variant,
    reason = "one per harness, made once and never copied around"
)]
pub enum GatewayFilter {
    /// Loaded and attached by this process through `filter_user::dataplane::loader`,
    /// in native XDP on the listed gateway interfaces.
    Library {
        /// The loaded program with its maps.
        filter: Filter,
        /// Interfaces (in `gw`) it is attached to.
        ifaces: Vec<String>,
    },
    /// `flowfilter run` on the gateway's interfaces, with its own pin
    /// directory; dropping it kills the daemon and removes the pins.
    Daemon(DaemonFilter),
}

/// A `flowfilter run` child attached (through `--netns`) to the gateway's
/// veths, and the CLI against its pins. Dropping it kills the daemon (if it
/// still runs), removes its pins (which detaches the program) and state file
/// and its log.
pub struct DaemonFilter {
    bin: PathBuf,
    pin_dir: PathBuf,
    log: PathBuf,
    ifaces: Vec<String>,
    pid: u32,
    child: Mutex<Option<Child>>,
}

impl DaemonFilter {
    /// The pin directory (`--pin-dir`).
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The daemon's process id (it may have exited: see [`Self::running`]).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Interfaces (in `gw`) it attached to.
    pub fn interfaces(&self) -> &[String] {
        &self.ifaces
    }

    /// The `flowfilter` binary.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The daemon process still runs.
    pub fn running(&self) -> bool {
        self.lock()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `flowfilter --pin-dir DIR ARGS...` to completion: its stdout, or a
    /// [`HarnessError::Command`] with its stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String, HarnessError> {
        run_cmd(
            Command::new(&self.bin)
                .arg("--pin-dir")
                .arg(&self.pin_dir)
                .args(args)
                .env("RUST_LOG", "warn"),
        )
    }

    /// `status --json` while the filter is in force: exit 0 (as
    /// configured, daemon running) or 3 (in force, no daemon running).
    pub fn status_in_force(&self) -> Result<serde_json::Value, HarnessError> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(["status", "--json"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        let line = cmd_line(&cmd);
        let out = cmd.output().map_err(spawn_err(&line))?;
        if !matches!(out.status.code(), Some(0 | 3)) {
            return Err(command_failed(line, &out));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text).map_err(|e| {
            HarnessError::Generator(format!("flowfilter status --json: not JSON ({e}): {text}"))
        })
    }

    /// [`Self::cli`] with `--json` appended, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value, HarnessError> {
        let mut v = args.to_vec();
        v.push("--json");
        let out = self.cli(&v)?;
        serde_json::from_str(&out).map_err(|e| {
            HarnessError::Generator(format!("flowfilter {}: not JSON ({e}): {out}", v.join(" ")))
        })
    }

    /// Send `signal` to the daemon and reap it (killing it after
    /// [`DAEMON_EXIT`]). Its pins stay: filtering goes on without it.
    pub fn signal(&self, signal: libc::c_int) -> Result<ExitStatus, HarnessError> {
        let mut guard = self.lock();
        let Some(child) = guard.as_mut() else {
            return Err(HarnessError::State(format!(
                "the daemon (pid {}) was already stopped",
                self.pid
            )));
        };
        let pid = libc::pid_t::try_from(self.pid)
            .map_err(|_| HarnessError::State(format!("pid {} out of range", self.pid)))?;
        // SAFETY: kill(2) of our own, not yet reaped child.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + DAEMON_EXIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = child.kill();
                    break child.wait().map_err(io_err("reaping the daemon"))?;
                }
                Err(e) => return Err(io_err("waiting for the daemon")(e)),
            }
        };
        *guard = None;
        Ok(status)
    }

    /// Wait until `status` shows the daemon running with every interface
    /// linked.
    fn wait_running(&self, limit: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + limit;
        loop {
            if !self.running() {
                return Err(HarnessError::State(format!(
                    "flowfilter run exited during start-up:\n{}",
                    self.log().trim()
                )));
            }
            if let Ok(s) = self.cli_json(&["status"]) {
                let linked = s["interfaces"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|i| i["link_id"].is_u64()).count());
                if s["daemon"]["running"] == true && linked == self.ifaces.len() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::State(format!(
                    "flowfilter run did not come up in {limit:?}:\n{}",
                    self.log().trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DaemonFilter {
    fn drop(&mut self) {
        if let Some(mut c) = self.lock().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_pins(&self.pin_dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Remove the pins (links first: that detaches the program) and the state
/// file of `pin_dir`. Errors are reported, not returned (runs in `Drop`).
fn remove_pins(pin_dir: &Path) {
    if let Err(e) = PinLayout::new(pin_dir).remove_all() {
        eprintln!("harness: removing the pins at {}: {e}", pin_dir.display());
    }
    if let Err(e) = StateFile::remove(pin_dir) {
        eprintln!("harness: {e}");
    }
}

/// Kill the daemon recorded in the state file of `pin_dir` (if it is a
/// running `flowfilter`, not a reused pid) and wait for it to go.
fn kill_recorded_daemon(pin_dir: &Path) {
    let Ok(Some(state)) = StateFile::read(pin_dir) else {
        return;
    };
    let Some(pid) = state.daemon.map(|d| d.pid) else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !process_alive(pid) || comm.trim() != "flowfilter" {
        return;
    }
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) of a flowfilter daemon on this harness's pins.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let deadline = Instant::now() + DAEMON_EXIT;
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` runs. A zombie does not: a killed run's process
/// may wait a while for its parent to reap it.
fn pid_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    if p <= 0 || unsafe { libc::kill(p, 0) } != 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A daemon left on `names`' gateway: kill it, remove its pins, state file
/// and log. Returns whether there was anything.
fn remove_daemon_of(names: &Names) -> bool {
    let pin_dir = names.pin_dir();
    let state = filter_user::control::state::state_path(&pin_dir);
    let found = pin_dir.exists() || state.exists();
    if found {
        kill_recorded_daemon(&pin_dir);
        remove_pins(&pin_dir);
    }
    let _ = std::fs::remove_file(names.daemon_log());
    found
}

/// Find `flowfilter`: `$FLOWFILTER_BIN`, beside the current executable or
/// one level up, `$CARGO_TARGET_DIR/debug`, `<workspace>/target/debug`.
pub fn find_flowfilter() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLOWFILTER_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join("flowfilter"));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("flowfilter"));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug/flowfilter"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/flowfilter"));
    candidates.into_iter().find(|p| p.is_file())
}

/// One flow as both ends saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowResult {
    /// Scenario.
    pub scenario: String,
    /// Flow within the scenario (`relay`, `p2p`, `query3`, ...).
    pub flow: String,
    /// `udp` or `tcp`.
    pub proto: String,
    /// Client address.
    pub client: SocketAddr,
    /// Server address.
    pub server: SocketAddr,
    /// Packets (datagrams, or records for TCP) the client sent.
    pub sent_pkts: u64,
    /// Bytes the client sent.
    pub sent_bytes: u64,
    /// Of those, what reached the server.
    pub delivered_pkts: u64,
    /// Bytes that reached the server.
    pub delivered_bytes: u64,
    /// Packets the server sent back.
    pub answered_pkts: u64,
    /// Bytes the server sent back.
    pub answered_bytes: u64,
    /// Of those, what reached the client.
    pub recv_pkts: u64,
    /// Bytes that reached the client.
    pub recv_bytes: u64,
    /// Junk decoys (`--evasion decoys`) the client sent on the flow's
    /// 5-tuple, apart from the counts above.
    pub decoys_sent: u64,
    /// Of those (and of the decoys that should never arrive: bad checksum,
    /// TTL 1), what the server got.
    pub decoys_delivered: u64,
}

impl FlowResult {
    /// Both directions arrived in full (and something was sent).
    pub fn untouched(&self) -> bool {
        self.sent_pkts > 0
            && self.delivered_pkts == self.sent_pkts
            && self.delivered_bytes == self.sent_bytes
            && self.recv_pkts == self.answered_pkts
            && self.recv_bytes == self.answered_bytes
    }

    /// Each receiving side got at most `handful` packets of a flow that sent
    /// more than that.
    pub fn blocked(&self, handful: u64) -> bool {
        self.sent_pkts > handful && self.delivered_pkts <= handful && self.recv_pkts <= handful
    }

    /// One line: what was sent and what arrived each way.
    pub fn summary(&self) -> String {
        format!(
            "{}/{} {} {} -> {}: client sent {} ({} B), server got {} ({} B), server sent {} ({} B), client got {} ({} B)",
            self.scenario,
            self.flow,
            self.proto,
            self.client,
            self.server,
            self.sent_pkts,
            self.sent_bytes,
            self.delivered_pkts,
            self.delivered_bytes,
            self.answered_pkts,
            self.answered_bytes,
            self.recv_pkts,
            self.recv_bytes
        )
    }

    /// As a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario,
            "flow": self.flow,
            "proto": self.proto,
            "client": self.client.to_string(),
            "server": self.server.to_string(),
            "sent_pkts": self.sent_pkts,
            "sent_bytes": self.sent_bytes,
            "delivered_pkts": self.delivered_pkts,
            "delivered_bytes": self.delivered_bytes,
            "answered_pkts": self.answered_pkts,
            "answered_bytes": self.answered_bytes,
            "recv_pkts": self.recv_pkts,
            "recv_bytes": self.recv_bytes,
            "decoys_sent": self.decoys_sent,
            "decoys_delivered": self.decoys_delivered,
        })
    }
}

/// A table of flows: one row each, packets (bytes) per column.
pub fn table(results: &[FlowResult]) -> String {
    let mut s = format!(
        "{:<16} {:<14} {:<4} {:<28} {:<28} {:>13} {:>13} {:>13} {:>13}\n",
        "scenario", "flow", "", "client", "server", "sent", "server got", "answered", "client got"
    );
    for r in results {
        let c = |p: u64, b: u64| format!("{p} ({b}B)");
        let _ = writeln!(
            s,
            "{:<16} {:<14} {:<4} {:<28} {:<28} {:>13} {:>13} {:>13} {:>13}",
            r.scenario,
            r.flow,
            r.proto,
            r.client.to_string(),
            r.server.to_string(),
            c(r.sent_pkts, r.sent_bytes),
            c(r.delivered_pkts, r.delivered_bytes),
            c(r.answered_pkts, r.answered_bytes),
            c(r.recv_pkts, r.recv_bytes)
        );
    }
    s
}

/// Join client and server lines into flows (matched by their addresses).
pub fn merge(client: &[FlowLine], server: &[FlowLine]) -> Vec<FlowResult> {
    client
        .iter()
        .map(|c| {
            let s = server
                .iter()
                .find(|s| s.proto == c.proto && s.local == c.remote && s.remote == c.local);
            FlowResult {
                scenario: c.scenario.clone(),
                flow: c.flow.clone(),
                proto: c.proto.clone(),
                client: c.local,
                server: c.remote,
                sent_pkts: c.sent_pkts,
                sent_bytes: c.sent_bytes,
                delivered_pkts: s.map_or(0, |s| s.recv_pkts),
                delivered_bytes: s.map_or(0, |s| s.recv_bytes),
                answered_pkts: s.map_or(0, |s| s.sent_pkts),
                answered_bytes: s.map_or(0, |s| s.sent_bytes),
                recv_pkts: c.recv_pkts,
                recv_bytes: c.recv_bytes,
                decoys_sent: c.decoys,
                decoys_delivered: s.map_or(0, |s| s.decoys),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Commands and namespaces
// ---------------------------------------------------------------------------

fn cmd_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Spawn `cmd` with `stdin` and piped stdout/stderr: its command line (for
/// errors) and the guard that reaps it.
fn spawn_piped(cmd: &mut Command, stdin: Stdio) -> Result<(String, ChildGuard), HarnessError> {
    let line = cmd_line(cmd);
    let child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err(&line))?;
    Ok((line, ChildGuard { child }))
}

/// Run `cmd` to completion; its stdout on success, a [`HarnessError`] with
/// its stderr otherwise.
pub fn run_cmd(cmd: &mut Command) -> Result<String, HarnessError> {
    let line = cmd_line(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_err(&line))?;
    if !out.status.success() {
        return Err(command_failed(line, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<String, HarnessError> {
    run_cmd(Command::new("ip").args(args))
}

/// The generators' flow `lines` and the responder's (`rest`, printed when
/// it stopped), split into the client's and the server's; an error when the
/// responder failed.
fn by_role(
    server_done: &Output,
    mut lines: Vec<FlowLine>,
    rest: &[u8],
) -> Result<(Vec<FlowLine>, Vec<FlowLine>), HarnessError> {
    if !server_done.status.success() {
        return Err(HarnessError::Generator(format!(
            "responder failed ({}): {}",
            server_done.status,
            String::from_utf8_lossy(&server_done.stderr).trim()
        )));
    }
    lines.extend(parse_lines(rest));
    Ok(lines.into_iter().partition(|l| l.role == "client"))
}

/// Namespaces `ip netns` knows.
pub fn list_namespaces() -> Result<Vec<String>, HarnessError> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Run `f` on a thread that has entered network namespace `ns` (which
/// exists under `/var/run/netns`). Used for anything that resolves
/// interfaces or sysctls in the calling thread's namespace (XDP attach).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, HarnessError> {
    let path = Path::new(NETNS_DIR).join(ns);
    let file = std::fs::File::open(&path).map_err(io_err(format!("opening {}", path.display())))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with a valid namespace fd.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(HarnessError::Io {
                    what: format!("entering network namespace {ns}"),
                    source: io::Error::last_os_error(),
                });
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn write_sysctl(ns: &str, key: &str, value: &str) -> Result<(), HarnessError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    in_netns(ns, || std::fs::write(&path, value))?.map_err(io_err(format!("{ns}: writing {path}")))
}

/// Kill the processes inside `ns` (all of them are the harness's own: it
/// created the namespace) and delete it. Errors are reported, not returned:
/// this runs in `Drop`.
fn remove_namespace(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2) on a pid that lives in our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if let Err(e) = ip(&["netns", "del", ns])
        && Path::new(NETNS_DIR).join(ns).exists()
    {
        eprintln!("harness: removing namespace {ns}: {e}");
    }
}

/// Remove the namespaces (and lists directory) of `prefix`, and a daemon
/// left on its gateway with its pins, if present. Idempotent. Returns what
/// was removed (namespaces, and the pin directory).
pub fn remove_prefix(prefix: &str) -> Result<Vec<String>, HarnessError> {
    let names = Names::with_prefix(prefix);
    let present = list_namespaces()?;
    let mut removed = Vec::new();
    if remove_daemon_of(&names) {
        removed.push(names.pin_dir().display().to_string());
    }
    // Reverse creation order: net, gw, client.
    for ns in names.all().into_iter().rev() {
        if present.iter().any(|p| p == ns) {
            remove_namespace(ns);
            removed.push(ns.to_string());
        }
    }
    let _ = std::fs::remove_dir_all(names.lists_dir());
    Ok(removed)
}

/// The pid a unique prefix (`ff<pid>x<n>`) was made by.
fn prefix_pid(ns: &str) -> Option<(String, u32)> {
    let (prefix, role) = ns.rsplit_once('-')?;
    if !matches!(role, "client" | "gw" | "net") {
        return None;
    }
    let rest = prefix.strip_prefix("ff")?;
    let (pid, n) = rest.split_once('x')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix.to_string(), pid.parse().ok()?))
}

/// Remove what harnesses of dead processes left behind (namespaces named
/// `ff<pid>x<n>-*` whose pid no longer runs, their lists directories, and
/// daemons with pins at `/sys/fs/bpf/ff<pid>x<n>-gw`).
/// Fixed-name (`ffh-*`) harnesses are left alone: `harness down` owns them.
/// Returns what was removed.
pub fn cleanup_stale() -> Result<Vec<String>, HarnessError> {
    let pinned: Vec<String> = std::fs::read_dir(BPFFS_ROOT)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut prefixes: Vec<String> = list_namespaces()?
        .iter()
        .chain(&pinned)
        .filter_map(|ns| prefix_pid(ns))
        .filter(|(_, pid)| !pid_alive(*pid))
        .map(|(p, _)| p)
        .collect();
    prefixes.sort();
    prefixes.dedup();
    let mut removed = Vec::new();
    for p in prefixes {
        removed.extend(remove_prefix(&p)?);
    }
    Ok(removed)
}

/// A child process killed (by its pid) and reaped when dropped.
struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Wait for exit at most `limit`, then kill. Returns stdout, stderr, status.
    fn finish(mut self, limit: Duration) -> Result<Output, HarnessError> {
        let deadline = Instant::now() + limit;
        let mut out = self.child.stdout.take();
        let mut err = self.child.stderr.take();
        // Drain pipes on threads so a chatty child never blocks.
        let o = std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(s) = out.as_mut() {
                let _ = s.read_to_end(&mut v);
            }
            v
        });
        let e = std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(s) = err.as_mut() {
                let _ = s.read_to_end(&mut v);
            }
            v
        });
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return Err(HarnessError::Generator(format!(
                        "pid {} still running after {limit:?}; killed",
                        self.child.id()
                    )));
                }
                Err(e) => return Err(io_err("waiting for a generator")(e)),
            }
        };
        Ok(Output {
            status,
            stdout: o.join().unwrap_or_default(),
            stderr: e.join().unwrap_or_default(),
        })
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn parse_lines(stdout: &[u8]) -> Vec<FlowLine> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<FlowLine>(l).ok())
        .collect()
}

/// Find `ffgen`: `$FFGEN`, else beside the current executable or one level up.
pub fn find_ffgen() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FFGEN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("ffgen"), dir.parent()?.join("ffgen")]
        .into_iter()
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

/// Three namespaces, veths, addresses, routes and a lists directory; removed
/// on drop unless [`Harness::persist`]ed or opened with [`Harness::existing`].
pub struct Harness {
    names: Names,
    /// Remove namespaces and lists on drop.
    owned: bool,
    /// Namespaces created so far (what drop removes).
    created: Vec<String>,
    ffgen: Option<PathBuf>,
    opts: HarnessOpts,
    filter: Option<GatewayFilter>,
}

impl Harness {
    /// Bring a harness up; panics with context on failure (for tests).
    pub fn up(opts: HarnessOpts) -> Harness {
        Harness::try_up(opts).unwrap_or_else(|e| panic!("bringing the harness up: {e}"))
    }

    /// Bring a harness up. Whatever a failed step leaves is removed before
    /// the error returns.
    pub fn try_up(opts: HarnessOpts) -> Result<Harness, HarnessError> {
        let names = match &opts.prefix {
            Some(p) => Names::with_prefix(p),
            None => Names::unique(),
        };
        let present = list_namespaces()?;
        if let Some(ns) = names.all().iter().find(|n| present.iter().any(|p| p == *n)) {
            return Err(HarnessError::State(format!(
                "namespace {ns} already exists (remove it with `cargo xtask harness down` or `ip netns del {ns}`)"
            )));
        }
        let mut h = Harness {
            ffgen: opts.ffgen.clone().or_else(find_ffgen),
            names,
            owned: true,
            created: Vec::new(),
            opts,
            filter: None,
        };
        h.build()?;
        Ok(h)
    }

    /// Open the fixed-name harness `prefix` that `up` + [`Harness::persist`]
    /// made; dropping it leaves the namespaces (but detaches any filter).
    pub fn existing(prefix: &str, opts: HarnessOpts) -> Result<Harness, HarnessError> {
        let names = Names::with_prefix(prefix);
        let present = list_namespaces()?;
        if let Some(ns) = names
            .all()
            .iter()
            .find(|n| !present.iter().any(|p| p == *n))
        {
            return Err(HarnessError::State(format!(
                "namespace {ns} does not exist (run `cargo xtask harness up` first)"
            )));
        }
        Ok(Harness {
            ffgen: opts.ffgen.clone().or_else(find_ffgen),
            names,
            owned: false,
            created: Vec::new(),
            opts,
            filter: None,
        })
    }

    /// Keep the namespaces after this value is dropped (`harness up`).
    pub fn persist(mut self) -> Names {
        self.owned = false;
        self.names.clone()
    }

    /// The namespace names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The directory with `whatsapp.txt` and `telegram.txt`.
    pub fn lists_dir(&self) -> PathBuf {
        self.names.lists_dir()
    }

    /// The harness lists, parsed.
    pub fn lists(&self) -> Result<Lists, HarnessError> {
        Ok(load_dir(&self.lists_dir(), false)?)
    }

    fn ns_ip(&self, ns: Ns, args: &[&str]) -> Result<String, HarnessError> {
        let mut v = vec!["-n", self.names.of(ns)];
        v.extend_from_slice(args);
        ip(&v)
    }

    /// Make the harness, step by step; each namespace is in `created` (what
    /// drop removes) as soon as it exists.
    fn build(&mut self) -> Result<(), HarnessError> {
        self.add_namespaces()?;
        self.add_veths()?;
        self.add_addresses()?;
        self.add_service_hosts()?;
        self.add_routes()?;
        self.wait_links_up()?;
        self.write_lists()
    }

    /// The three namespaces, each with `lo` up and no duplicate address
    /// detection.
    fn add_namespaces(&mut self) -> Result<(), HarnessError> {
        for ns in self.names.all().map(str::to_string) {
            ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // No duplicate address detection: a tentative link-local address
            // would stall neighbour discovery (and forwarding) for a second.
            for scope in ["default", "all"] {
                write_sysctl(&ns, &format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
            }
        }
        Ok(())
    }

    /// The veth pairs client–gw and gw–net.
    fn add_veths(&self) -> Result<(), HarnessError> {
        use plan::{CLIENT_IF, GW_CLIENT_IF, GW_NET_IF, NET_IF};
        let (gw, net) = (self.names.gw.clone(), self.names.net.clone());
        self.ns_ip(
            Ns::Client,
            &[
                "link",
                "add",
                CLIENT_IF,
                "type",
                "veth",
                "peer",
                "name",
                GW_CLIENT_IF,
                "netns",
                &gw,
            ],
        )?;
        self.ns_ip(
            Ns::Gw,
            &[
                "link", "add", GW_NET_IF, "type", "veth", "peer", "name", NET_IF, "netns", &net,
            ],
        )?;
        Ok(())
    }

    /// The veths' addresses (then each veth up), and the further callers'
    /// addresses on the client's veth.
    fn add_addresses(&self) -> Result<(), HarnessError> {
        use plan::{
            CLIENT_IF, CLIENT4, CLIENT6, GW_CLIENT_IF, GW_CLIENT4, GW_CLIENT6, GW_NET_IF, GW_NET4,
            GW_NET6, NET_IF, NET4, NET6,
        };
        let addrs: [(Ns, &str, String, String); 4] = [
            (
                Ns::Client,
                CLIENT_IF,
                format!("{CLIENT4}/24"),
                format!("{CLIENT6}/64"),
            ),
            (
                Ns::Gw,
                GW_CLIENT_IF,
                format!("{GW_CLIENT4}/24"),
                format!("{GW_CLIENT6}/64"),
            ),
            (
                Ns::Gw,
                GW_NET_IF,
                format!("{GW_NET4}/24"),
                format!("{GW_NET6}/64"),
            ),
            (Ns::Net, NET_IF, format!("{NET4}/24"), format!("{NET6}/64")),
        ];
        for (ns, dev, a4, a6) in &addrs {
            self.ns_ip(*ns, &["addr", "add", a4, "dev", dev])?;
            self.ns_ip(*ns, &["-6", "addr", "add", a6, "dev", dev, "nodad"])?;
            self.ns_ip(*ns, &["link", "set", dev, "up"])?;
        }
        for n in 1..plan::CALLERS {
            for v6 in [false, true] {
                let Some(ip) = plan::caller_ip(v6, n) else {
                    continue;
                };
                if v6 {
                    let a = format!("{ip}/128");
                    self.ns_ip(
                        Ns::Client,
                        &["-6", "addr", "add", &a, "dev", CLIENT_IF, "nodad"],
                    )?;
                } else {
                    let a = format!("{ip}/32");
                    self.ns_ip(Ns::Client, &["addr", "add", &a, "dev", CLIENT_IF])?;
                }
            }
        }
        Ok(())
    }

    /// The services' addresses on `lo` in net.
    fn add_service_hosts(&self) -> Result<(), HarnessError> {
        // Services of two protocols may share an address: add each once.
        let mut hosts: Vec<(IpAddr, IpAddr)> = plan::SERVICES
            .iter()
            .map(|s| (s.addr(false).ip(), s.addr(true).ip()))
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        for (v4, v6) in hosts {
            let a4 = format!("{v4}/32");
            let a6 = format!("{v6}/128");
            self.ns_ip(Ns::Net, &["addr", "add", &a4, "dev", "lo"])?;
            self.ns_ip(Ns::Net, &["-6", "addr", "add", &a6, "dev", "lo", "nodad"])?;
        }
        Ok(())
    }

    /// Forwarding on in gw, and the routes of client, gw and net.
    fn add_routes(&self) -> Result<(), HarnessError> {
        use plan::{
            CLIENT_ROUTES4, CLIENT_ROUTES6, GW_CLIENT4, GW_CLIENT6, GW_NET4, GW_NET6, NET_ROUTES4,
            NET_ROUTES6, NET4, NET6, TRANSIT_ROUTES4, TRANSIT_ROUTES6,
        };
        let gw = self.names.gw.clone();
        write_sysctl(&gw, "net.ipv4.ip_forward", "1")?;
        write_sysctl(&gw, "net.ipv6.conf.all.forwarding", "1")?;
        let gw_c4 = GW_CLIENT4.to_string();
        let gw_c6 = GW_CLIENT6.to_string();
        for p in NET_ROUTES4.iter().chain(TRANSIT_ROUTES4) {
            self.ns_ip(Ns::Client, &["route", "add", p, "via", &gw_c4])?;
        }
        for p in NET_ROUTES6.iter().chain(TRANSIT_ROUTES6) {
            self.ns_ip(Ns::Client, &["-6", "route", "add", p, "via", &gw_c6])?;
        }
        let (net4, net6) = (NET4.to_string(), NET6.to_string());
        for p in NET_ROUTES4 {
            self.ns_ip(Ns::Gw, &["route", "add", p, "via", &net4])?;
        }
        for p in NET_ROUTES6 {
            self.ns_ip(Ns::Gw, &["-6", "route", "add", p, "via", &net6])?;
        }
        let (gw_n4, gw_n6) = (GW_NET4.to_string(), GW_NET6.to_string());
        for p in CLIENT_ROUTES4 {
            self.ns_ip(Ns::Net, &["route", "add", p, "via", &gw_n4])?;
        }
        for p in CLIENT_ROUTES6 {
            self.ns_ip(Ns::Net, &["-6", "route", "add", p, "via", &gw_n6])?;
        }
        Ok(())
    }

    /// The lists directory with `whatsapp.txt` and `telegram.txt`.
    fn write_lists(&self) -> Result<(), HarnessError> {
        use plan::{TELEGRAM_LIST, WHATSAPP_LIST};
        let dir = self.lists_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        for (file, text) in [
            ("whatsapp.txt", WHATSAPP_LIST),
            ("telegram.txt", TELEGRAM_LIST),
        ] {
            let p = dir.join(file);
            std::fs::write(&p, text).map_err(io_err(format!("writing {}", p.display())))?;
        }
        Ok(())
    }

    /// Wait until every veth's operational state is UP: IPv6 does not use
    /// an interface before that, and the kernel's link watch reports it up
    /// to a second after `ip link set up`.
    fn wait_links_up(&self) -> Result<(), HarnessError> {
        use plan::{CLIENT_IF, GW_CLIENT_IF, GW_NET_IF, NET_IF};
        let deadline = Instant::now() + Duration::from_secs(5);
        for (ns, dev) in [
            (Ns::Client, CLIENT_IF),
            (Ns::Gw, GW_CLIENT_IF),
            (Ns::Gw, GW_NET_IF),
            (Ns::Net, NET_IF),
        ] {
            loop {
                let out = self.ns_ip(ns, &["-o", "link", "show", "dev", dev])?;
                if out.contains("state UP") {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(HarnessError::State(format!(
                        "{dev} in {} is not up after 5 s: {}",
                        self.names.of(ns),
                        out.trim()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// Run `args` in namespace `ns` (`ip netns exec NS ARGS...`) to
    /// completion.
    pub fn exec(&self, ns: Ns, args: &[&str]) -> Result<String, HarnessError> {
        let Some((program, rest)) = args.split_first() else {
            return Err(HarnessError::State("exec: no command given".into()));
        };
        run_cmd(self.command(ns, program).args(rest))
    }

    /// A `Command` running `program` in `ns`; add arguments and run it.
    pub fn command(&self, ns: Ns, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.names.of(ns)]).arg(program);
        c
    }

    // --- the filter -----------------------------------------------------------

    /// Load flowfilter with `lists` and `policies`, and attach it in native
    /// XDP on both gateway veths (from a thread inside `gw`). It stays
    /// attached until [`Harness::detach_filter`] or drop.
    pub fn attach_library_filter(
        &mut self,
        lists: &Lists,
        policies: &BTreeMap<u8, PolicySpec>,
    ) -> Result<(), HarnessError> {
        self.detach_filter();
        let mut filter = Filter::load(&LoadOptions::default())?;
        filter.install(lists, policies)?;
        let ifaces = vec![plan::GW_CLIENT_IF.to_string(), plan::GW_NET_IF.to_string()];
        let attached = in_netns(&self.names.gw, || -> Result<(), LoadError> {
            let xdp = filter.xdp()?;
            for i in &ifaces {
                xdp.attach(i, XdpMode::Driver)?;
            }
            Ok(())
        })?;
        if let Err(e) = attached {
            let gw = self.names.gw.clone();
            let _ = in_netns(&gw, move || drop(filter));
            return Err(e.into());
        }
        self.filter = Some(GatewayFilter::Library { filter, ifaces });
        Ok(())
    }

    /// [`Harness::attach_library_filter`] with the harness lists and
    /// `(category, spec)` policies, e.g. `[("whatsapp", "drop")]`.
    pub fn attach_filter(&mut self, specs: &[(&str, &str)]) -> Result<(), HarnessError> {
        let lists = self.lists()?;
        let policies = resolve_policies(&lists, specs)?;
        self.attach_library_filter(&lists, &policies)
    }

    /// The attached filter, if any.
    pub fn gateway_filter(&self) -> Option<&GatewayFilter> {
        self.filter.as_ref()
    }

    /// The library-attached program (maps, counters), if that is how the
    /// filter is attached.
    pub fn library_filter(&mut self) -> Option<&mut Filter> {
        match self.filter.as_mut() {
            Some(GatewayFilter::Library { filter, .. }) => Some(filter),
            Some(GatewayFilter::Daemon(_)) | None => None,
        }
    }

    /// The daemon on the gateway, if that is how the filter is attached.
    pub fn daemon(&self) -> Option<&DaemonFilter> {
        match self.filter.as_ref() {
            Some(GatewayFilter::Daemon(d)) => Some(d),
            Some(GatewayFilter::Library { .. }) | None => None,
        }
    }

    /// Start `flowfilter run` on the gateway: native XDP on both veths (in
    /// `gw`, through `--netns`), the harness lists, `(category, spec)`
    /// policies as `--policy` flags, pins in [`Names::pin_dir`]. Returns once
    /// `flowfilter status` shows it running with both links; on failure the
    /// daemon, its pins and log are gone and the error carries its log.
    pub fn attach_daemon(&mut self, specs: &[(&str, &str)]) -> Result<(), HarnessError> {
        self.detach_filter();
        // Bad specs are refused here, with the harness's own message.
        resolve_policies(&self.lists()?, specs)?;
        let bin = self
            .opts
            .flowfilter
            .clone()
            .or_else(find_flowfilter)
            .ok_or_else(|| {
                HarnessError::State(
                    "flowfilter not found: build it (`cargo build -p filter-user --bin flowfilter`) or set FLOWFILTER_BIN"
                        .into(),
                )
            })?;
        // Whatever an earlier run with this prefix left goes first.
        remove_daemon_of(&self.names);
        let pin_dir = self.names.pin_dir();
        let log = self.names.daemon_log();
        let file =
            std::fs::File::create(&log).map_err(io_err(format!("creating {}", log.display())))?;
        let err_file = file
            .try_clone()
            .map_err(io_err(format!("opening {}", log.display())))?;
        let ifaces = vec![plan::GW_CLIENT_IF.to_string(), plan::GW_NET_IF.to_string()];
        let mut cmd = Command::new(&bin);
        cmd.arg("--pin-dir").arg(&pin_dir).args([
            "run",
            "--netns",
            &self.names.gw,
            "--mode",
            "driver",
        ]);
        for i in &ifaces {
            cmd.args(["--iface", i]);
        }
        cmd.arg("--lists").arg(self.lists_dir());
        for (cat, spec) in specs {
            cmd.arg("--policy").arg(format!("{cat}={spec}"));
        }
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err_file);
        let line = cmd_line(&cmd);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                let _ = std::fs::remove_file(&log);
                return Err(HarnessError::Spawn { cmd: line, source });
            }
        };
        let daemon = DaemonFilter {
            bin,
            pin_dir,
            log,
            ifaces,
            pid: child.id(),
            child: Mutex::new(Some(child)),
        };
        daemon.wait_running(DAEMON_START)?;
        self.filter = Some(GatewayFilter::Daemon(daemon));
        Ok(())
    }

    /// The pacing and binaries of the generators, to change between runs.
    pub fn opts_mut(&mut self) -> &mut HarnessOpts {
        &mut self.opts
    }

    /// Detach and unload the filter (inside `gw`, so a netlink-attached
    /// program is detached from the right interfaces).
    pub fn detach_filter(&mut self) {
        if let Some(f) = self.filter.take() {
            let gw = self.names.gw.clone();
            if let Err(e) = in_netns(&gw, move || drop(f)) {
                eprintln!("harness: detaching the filter: {e}");
            }
        }
    }

    // --- generators -------------------------------------------------------------

    fn ffgen(&self) -> Result<&Path, HarnessError> {
        self.ffgen.as_deref().ok_or_else(|| {
            HarnessError::Generator(
                "ffgen not found: build it (`cargo build -p flowfilter-tests --bins`) or set FFGEN"
                    .into(),
            )
        })
    }

    /// Start the responder for every planned service in `ns`; returns once
    /// it has bound its sockets.
    fn start_responder(
        &self,
        ns: Ns,
    ) -> Result<(ChildGuard, ChildStdin, BufReader<std::process::ChildStdout>), HarnessError> {
        let mut cmd = self.command(ns, self.ffgen()?);
        cmd.args(["serve", "--max-secs", &CHILD_DEADLINE.as_secs().to_string()])
            .args(["--seed", &self.opts.seed.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = cmd_line(&cmd);
        let child = cmd.spawn().map_err(spawn_err(&line))?;
        let mut g = ChildGuard { child };
        let stdin = g
            .child
            .stdin
            .take()
            .ok_or_else(|| HarnessError::Generator("no stdin".into()))?;
        let mut out = BufReader::new(
            g.child
                .stdout
                .take()
                .ok_or_else(|| HarnessError::Generator("no stdout".into()))?,
        );
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        if !first.contains("\"ready\"") {
            let mut err = String::new();
            if let Some(e) = g.child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(HarnessError::Generator(format!(
                "`{line}` did not start: {}",
                err.trim()
            )));
        }
        Ok((g, stdin, out))
    }

    /// Run scenario `name` over IPv4; panics with context on failure.
    pub fn run_scenario(&self, name: &str) -> Vec<FlowResult> {
        self.try_run_scenario(name, false)
            .unwrap_or_else(|e| panic!("scenario {name}: {e}"))
    }

    /// Run scenario `name` over IPv6; panics with context on failure.
    pub fn run_scenario_v6(&self, name: &str) -> Vec<FlowResult> {
        self.try_run_scenario(name, true)
            .unwrap_or_else(|e| panic!("scenario {name} (IPv6): {e}"))
    }

    /// Run scenario `name`: responder in `net`, generator in `client`, both
    /// bounded; one result per flow.
    pub fn try_run_scenario(&self, name: &str, v6: bool) -> Result<Vec<FlowResult>, HarnessError> {
        self.try_run_scenario_from(name, v6, 0)
    }

    /// [`Harness::try_run_scenario`] from caller `caller` (see
    /// [`plan::caller_ip`]; 0 is the plan's client address).
    pub fn try_run_scenario_from(
        &self,
        name: &str,
        v6: bool,
        caller: u8,
    ) -> Result<Vec<FlowResult>, HarnessError> {
        check_scenario(name)?;
        let bind = caller_bind(v6, caller)?;
        let (server, stdin, mut server_out) = self.start_responder(Ns::Net)?;
        let lines = if name == "whatsapp-callee" {
            self.run_callee(v6, bind)
        } else {
            self.generator(Ns::Client, name, v6)
                .map(|mut c| {
                    if let Some(b) = bind {
                        c.args(["--bind", &b.to_string()]);
                    }
                    c
                })
                .and_then(Harness::run_generator)
        };
        // Closing stdin stops the responder; it then prints its flows.
        drop(stdin);
        let mut rest = Vec::new();
        let _ = server_out.read_to_end(&mut rest);
        let server_done = server.finish(CHILD_DEADLINE)?;
        let lines = lines?;
        let (client, server) = by_role(&server_done, lines, &rest)?;
        if client.is_empty() {
            return Err(HarnessError::Generator(format!(
                "scenario {name} reported no flows"
            )));
        }
        Ok(merge(&client, &server))
    }

    /// `ip netns exec NS ffgen run NAME` with the harness's pacing.
    fn generator(&self, ns: Ns, name: &str, v6: bool) -> Result<Command, HarnessError> {
        let mut cmd = self.command(ns, self.ffgen()?);
        cmd.args(["run", name])
            .args(["--interval-ms", &self.opts.interval.as_millis().to_string()])
            .args(["--packets", &self.opts.packets.to_string()])
            .args(["--linger-ms", &self.opts.linger.as_millis().to_string()])
            .args(["--seed", &self.opts.seed.to_string()]);
        if v6 {
            cmd.arg("--v6");
        }
        if self.opts.evasion != Evasion::None {
            cmd.args(["--evasion", self.opts.evasion.name()]);
        }
        Ok(cmd)
    }

    /// Run a generator to completion; its flow lines.
    fn run_generator(mut cmd: Command) -> Result<Vec<FlowLine>, HarnessError> {
        let (line, guard) = spawn_piped(&mut cmd, Stdio::null())?;
        let out = guard.finish(CHILD_DEADLINE)?;
        if !out.status.success() {
            return Err(command_failed(line, &out));
        }
        Ok(parse_lines(&out.stdout))
    }

    /// Start `runs` (scenario, caller) at once against one responder and
    /// return while they run; [`RunningScenarios::finish`] collects them.
    /// `whatsapp-callee` (which needs the harness between its steps) cannot
    /// run this way.
    pub fn start_scenarios(
        &self,
        runs: &[(&str, u8)],
        v6: bool,
    ) -> Result<RunningScenarios, HarnessError> {
        let runs: Vec<(&str, u8, bool)> = runs.iter().map(|(n, c)| (*n, *c, v6)).collect();
        self.start_runs(&runs)
    }

    /// [`Harness::start_scenarios`] with the family per run: `runs` are
    /// (scenario, caller, IPv6), IPv4 and IPv6 runs side by side (the
    /// responder serves both).
    pub fn start_runs(&self, runs: &[(&str, u8, bool)]) -> Result<RunningScenarios, HarnessError> {
        for (name, caller, v6) in runs {
            check_scenario(name)?;
            if *name == "whatsapp-callee" {
                return Err(HarnessError::Generator(
                    "whatsapp-callee cannot run beside other scenarios: use run_scenario".into(),
                ));
            }
            caller_bind(*v6, *caller)?;
        }
        let (server, stdin, server_out) = self.start_responder(Ns::Net)?;
        let mut running = RunningScenarios {
            server,
            stdin: Some(stdin),
            server_out,
            generators: Vec::new(),
        };
        for (name, caller, v6) in runs {
            let mut cmd = self.generator(Ns::Client, name, *v6)?;
            if let Some(b) = caller_bind(*v6, *caller)? {
                cmd.args(["--bind", &b.to_string()]);
            }
            running
                .generators
                .push(spawn_piped(&mut cmd, Stdio::null())?);
        }
        Ok(running)
    }

    /// `whatsapp-callee`: the client runs the relay leg and announces its
    /// port; then the peer (`wa-p2p-peer` in `net`, from the wa-peer
    /// address) calls that port while the client answers; closing the
    /// client's stdin ends its answering phase.
    fn run_callee(&self, v6: bool, bind: Option<IpAddr>) -> Result<Vec<FlowLine>, HarnessError> {
        let mut cmd = self.generator(Ns::Client, "whatsapp-callee", v6)?;
        if let Some(b) = bind {
            cmd.args(["--bind", &b.to_string()]);
        }
        let (line, mut g) = spawn_piped(&mut cmd, Stdio::piped())?;
        let stdin = g.child.stdin.take();
        let stdout = g.child.stdout.take();
        let mut out =
            BufReader::new(stdout.ok_or_else(|| HarnessError::Generator("no stdout".into()))?);
        let mut early = String::new();
        let mut local: Option<SocketAddr> = None;
        loop {
            let mut l = String::new();
            if out
                .read_line(&mut l)
                .map_err(io_err("reading whatsapp-callee"))?
                == 0
            {
                break;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
                && v["event"] == "listening"
            {
                local = v["local"].as_str().and_then(|s| s.parse().ok());
                break;
            }
            early.push_str(&l);
        }
        let Some(local) = local else {
            let done = g.finish(CHILD_DEADLINE)?;
            return Err(HarnessError::Command {
                cmd: line,
                status: done.status.to_string(),
                stderr: format!(
                    "never announced its port: {}",
                    String::from_utf8_lossy(&done.stderr).trim()
                ),
            });
        };
        let peer = plan::service("wa-peer")
            .ok_or_else(|| HarnessError::Generator("no wa-peer in the plan".into()))?
            .addr(v6)
            .ip();
        let mut pc = self.generator(Ns::Net, "wa-p2p-peer", v6)?;
        pc.args(["--bind", &peer.to_string()])
            .args(["--to", &format!("callee={local}")]);
        let peer_lines = Harness::run_generator(pc);
        drop(stdin);
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        let done = g.finish(CHILD_DEADLINE)?;
        if !done.status.success() {
            return Err(command_failed(line, &done));
        }
        early.push_str(&rest);
        let mut lines = parse_lines(early.as_bytes());
        lines.extend(peer_lines?);
        Ok(lines)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.detach_filter();
        if !self.owned {
            return;
        }
        for ns in self.created.iter().rev() {
            remove_namespace(ns);
        }
        let _ = std::fs::remove_dir_all(self.names.lists_dir());
    }
}

/// Scenarios started by [`Harness::start_scenarios`]; dropping it kills
/// whatever still runs.
pub struct RunningScenarios {
    server: ChildGuard,
    stdin: Option<ChildStdin>,
    server_out: BufReader<ChildStdout>,
    generators: Vec<(String, ChildGuard)>,
}

impl RunningScenarios {
    /// Every generator has exited.
    pub fn done(&mut self) -> bool {
        self.generators
            .iter_mut()
            .all(|(_, g)| !matches!(g.child.try_wait(), Ok(None)))
    }

    /// Wait for the generators (bounded), stop the responder, and join both
    /// sides' counts: one result per flow, in the order the runs were given.
    pub fn finish(mut self) -> Result<Vec<FlowResult>, HarnessError> {
        let mut lines = Vec::new();
        let mut failed = None;
        for (line, g) in std::mem::take(&mut self.generators) {
            match g.finish(CHILD_DEADLINE) {
                Ok(out) if out.status.success() => lines.extend(parse_lines(&out.stdout)),
                Ok(out) => {
                    failed.get_or_insert(command_failed(line, &out));
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        drop(self.stdin.take());
        let mut rest = Vec::new();
        let _ = self.server_out.read_to_end(&mut rest);
        let server_done = self.server.finish(CHILD_DEADLINE)?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (client, server) = by_role(&server_done, lines, &rest)?;
        if client.is_empty() {
            return Err(HarnessError::Generator(
                "the scenarios reported no flows".into(),
            ));
        }
        Ok(merge(&client, &server))
    }
}

fn check_scenario(name: &str) -> Result<(), HarnessError> {
    if plan::scenario(name).is_some_and(|s| s.standalone) {
        return Ok(());
    }
    Err(HarnessError::Generator(format!(
        "unknown scenario `{name}` (known: {})",
        plan::SCENARIOS
            .iter()
            .filter(|s| s.standalone)
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The `--bind` address of caller `n`: `None` for the plan's client address.
fn caller_bind(v6: bool, n: u8) -> Result<Option<IpAddr>, HarnessError> {
    if n == 0 {
        return Ok(None);
    }
    plan::caller_ip(v6, n).map(Some).ok_or_else(|| {
        HarnessError::Generator(format!(
            "caller {n}: the plan has callers 0 to {}",
            plan::CALLERS - 1
        ))
    })
}

/// Resolve `(category, spec)` pairs against `lists`.
pub fn resolve_policies(
    lists: &Lists,
    specs: &[(&str, &str)],
) -> Result<BTreeMap<u8, PolicySpec>, HarnessError> {
    specs
        .iter()
        .map(|(cat, spec)| {
            let id = lists
                .by_name(cat)
                .ok_or_else(|| HarnessError::Policy(format!("no category `{cat}`")))?
                .id;
            let p = spec
                .parse::<PolicySpec>()
                .map_err(|e| HarnessError::Policy(e.to_string()))?;
            Ok((id, p))
        })
        .collect()
}
