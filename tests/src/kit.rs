//! The test kit: what the root tests (and ffbench) share instead of copying.
//!
//! - [`binary`]: the `flowfilter` binary under test;
//! - [`sh`], [`ip`]: commands that panic with their output;
//! - [`NetNs`]: a network namespace that is deleted on drop, with
//!   [`NetNs::run`] to run a closure inside it; [`in_ns`] for one made
//!   elsewhere;
//! - [`Gateway`]: the daemon tests' topology (two namespaces, a veth pair,
//!   a lists directory, a unique pin directory, a `flowfilter run` child),
//!   all removed on drop;
//! - [`Ran`], [`wait_for`], [`free_port`], [`http_get`], [`slash24s`];
//! - [`Rng`]: the one seeded random generator (`filter_common::rng`);
//! - [`seed_stopping`]: a `--seed` that stops one subscriber and spares another.
//!
//! Like the rest of this crate, it panics with context instead of returning
//! errors: a failed step fails the test that took it.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod gateway;

pub use filter_common::rng::{Draw, Rng};
pub use gateway::{A_ADDR, B_ADDR, Gateway, PORT, Receiver, START_TIMEOUT, Setup, send};

/// A `--seed` under which, for this hour and the next, `stopped` is among
/// the stopped 50% of subscribers (`flows=50%`) and `spared` is not (IPv4
/// subscribers, the daemon's hourly rotation).
pub fn seed_stopping(stopped: Ipv4Addr, spared: Ipv4Addr) -> u64 {
    use filter_common::decide::{epoch_seed, subscriber_key, subscriber_rank};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let hour = 3600 * 1_000_000_000u64;
    let rank = |ip: Ipv4Addr, seed: u64, t: u64| {
        subscriber_rank(
            &subscriber_key(&ip.to_ipv6_mapped().octets(), 32, 64),
            epoch_seed(seed, t, 3600),
        )
    };
    (1u64..100_000)
        .find(|s| {
            [now, now + hour]
                .iter()
                .all(|t| rank(stopped, *s, *t) < 50 && rank(spared, *s, *t) >= 50)
        })
        .expect("a seed")
}

/// The `flowfilter` binary: `FLOWFILTER_BIN`, else
/// `$CARGO_TARGET_DIR/debug/flowfilter`, else
/// `<workspace>/target/debug/flowfilter`; a missing one fails with the
/// command that builds it.
pub fn binary() -> PathBuf {
    if let Some(b) = std::env::var_os("FLOWFILTER_BIN") {
        return PathBuf::from(b);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let bin = target.join("debug/flowfilter");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p filter-user --bin flowfilter` (or set FLOWFILTER_BIN)",
        bin.display()
    );
    bin
}

/// Run a command, panicking with its error when it fails to start.
pub fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

/// `ip ARGS...`, panicking with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = sh("ip", args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `f` on a thread inside network namespace `ns` (under /run/netns);
/// sockets it creates stay in that namespace.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    crate::harness::in_netns(ns, f).unwrap_or_else(|e| panic!("netns {ns}: {e}"))
}

/// A network namespace made by `ip netns add`, deleted on drop.
#[derive(Debug)]
pub struct NetNs(String);

impl NetNs {
    /// Make namespace `name`; it must not exist yet.
    pub fn new(name: &str) -> NetNs {
        ip(&["netns", "add", name]);
        NetNs(name.to_owned())
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["-n", self.0.as_str()];
        v.extend_from_slice(args);
        ip(&v);
    }

    /// Run `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_ns(&self.0, f)
    }
}

impl std::fmt::Display for NetNs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.0]);
    }
}

/// A command's exit code and output.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn of(out: &Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Itself, when the command exited 0; else a panic naming `what`
    /// (a check: callers may drop what it returns).
    #[track_caller]
    #[allow(clippy::return_self_not_must_use)]
    pub fn ok(self, what: &str) -> Ran {
        assert_eq!(
            self.code, 0,
            "{what}: exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Its stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Poll `f` every 10 ms until it returns `Some`, panicking with `what`
/// after `limit`.
#[track_caller]
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}: not within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `n` consecutive /24s from the one holding `first`, one a line: a list
/// of `n` distinct prefixes.
pub fn slash24s(first: Ipv4Addr, n: u32) -> String {
    let base = u32::from(first) & !0xff;
    let mut s = String::with_capacity(n as usize * 19);
    for i in 0..n {
        writeln!(s, "{}/24", Ipv4Addr::from(base + (i << 8))).expect("write to a String");
    }
    s
}

/// A TCP address on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// `GET path` over HTTP/1.1 with `Connection: close`: the whole response.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A JSON count, or a panic naming the value.
#[track_caller]
pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// `NAME-PID-N` and a short `PIDN` (for interface names), unique within
/// this test binary.
pub fn unique_id(tag: &str) -> (String, String) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    (format!("{tag}-{pid}-{n}"), format!("{}{n}", pid % 100_000))
}

/// `impl Deref<Target = Gateway>` (and `DerefMut`) for a test file's `Env`
/// that holds its [`Gateway`] in field `gw`: the file adds its own methods
/// and keeps the kit's.
#[macro_export]
macro_rules! deref_gateway {
    ($t:ty) => {
        impl ::std::ops::Deref for $t {
            type Target = $crate::kit::Gateway;
            fn deref(&self) -> &$crate::kit::Gateway {
                &self.gw
            }
        }
        impl ::std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut $crate::kit::Gateway {
                &mut self.gw
            }
        }
    };
}
