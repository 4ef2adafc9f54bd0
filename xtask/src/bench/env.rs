//! The bench's world: two namespaces joined by a veth pair, a private bpffs
//! for xdp-filter, a work directory; and the contestants that live in it
//! (nftables, iptables + ipset, xdp-filter). [`Env`] removes all of it when
//! dropped, after an error or Ctrl-C too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

/// Sender namespace and interface.
pub const TX_NS: &str = "ffb-tx";
pub const TX_IF: &str = "ffb-tx0";
/// Receiver namespace and interface.
pub const RX_NS: &str = "ffb-rx";
pub const RX_IF: &str = "ffb-rx0";
/// The MACs the frame builder writes (`pktbuild::DEFAULT_*_MAC`), so frames
/// are addressed to the receiver (PACKET_HOST) and reach the IP layer.
const TX_MAC: &str = "02:00:00:00:00:01";
const RX_MAC: &str = "02:00:00:00:00:02";
/// Documentation prefix on the pair (nothing is routed anywhere).
const TX_ADDR: &str = "192.0.2.1/24";
const RX_ADDR: &str = "192.0.2.2/24";
/// nftables table and ipset set names.
const NFT_TABLE: &str = "ffbench";
const IPSET_NAME: &str = "ffbench";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch Ctrl-C and SIGTERM: the bench stops at the next step and cleans up
/// (the children get the signal too and stop).
pub fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Fail when Ctrl-C was pressed.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.len() > 80 {
            let _ = write!(s, " {}...", &a[..60]);
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

/// A teardown whose object is `what` after it: the removing command's own
/// error if it failed, else `what`, in the context `doing`.
fn still_there(removal: Result<String>, what: &'static str, doing: &'static str) -> anyhow::Error {
    removal
        .err()
        .unwrap_or_else(|| anyhow::anyhow!(what))
        .context(doing)
}

/// Run quietly; on failure the error carries the command and its stderr.
pub fn sh(cmd: &mut Command) -> Result<String> {
    sh_with(cmd.stdin(Stdio::null()))
}

/// Like [`sh`], with `input` on stdin (files of millions of lines).
fn sh_file(cmd: &mut Command, input: &Path) -> Result<String> {
    let f = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    sh_with(cmd.stdin(f))
}

/// Run `cmd` (its stdin set), unless interrupted; its stdout, or an error
/// with its stderr.
fn sh_with(cmd: &mut Command) -> Result<String> {
    check_interrupted()?;
    let out = cmd
        .output()
        .with_context(|| format!("running {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec RX_NS PROG ARGS...`
fn in_rx(prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", RX_NS, prog]);
    c
}

/// One bench at a time on a machine: the namespace names are fixed, and a
/// second run would remove the first one's as leftovers.
pub struct RunLock {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl RunLock {
    pub fn take() -> Result<RunLock> {
        use std::os::fd::AsRawFd as _;
        let path = Path::new("/run/lock/flowfilter-bench.lock");
        let path = if path.parent().is_some_and(Path::is_dir) {
            path.to_path_buf()
        } else {
            std::env::temp_dir().join("flowfilter-bench.lock")
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on an fd we own; released when the file closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "another `cargo xtask bench` is running on this machine ({} is locked)",
                path.display()
            );
        }
        Ok(RunLock {
            file: Some(f),
            path,
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then release it.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// What exists and must go.
pub struct Env {
    pub work: PathBuf,
    pub bpffs: PathBuf,
    bpffs_mounted: bool,
    namespaces: bool,
    nft: bool,
    ipset: bool,
    xdp_filter: bool,
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Remove the namespaces a run that was killed hard left behind.
fn remove_leftovers() {
    for ns in [TX_NS, RX_NS] {
        if netns_exists(ns) {
            eprintln!("removing namespace {ns} left by an earlier run");
            let _ = sh(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}

/// The two namespaces, with IPv6 off in both.
fn add_namespaces() -> Result<()> {
    for ns in [TX_NS, RX_NS] {
        sh(Command::new("ip").args(["netns", "add", ns]))?;
        // No IPv6 chatter (router solicitations) on the pair.
        sh(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
    }
    Ok(())
}

/// The veth pair between the namespaces, one queue each way, with its
/// addresses, up.
fn add_veth_pair() -> Result<()> {
    // One queue each way: one NAPI instance, one receiving thread.
    sh(Command::new("ip").args([
        "link",
        "add",
        TX_IF,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
        "netns",
        TX_NS,
        "type",
        "veth",
        "peer",
        "name",
        RX_IF,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
        "netns",
        RX_NS,
    ]))?;
    for (ns, dev, mac, addr) in [
        (TX_NS, TX_IF, TX_MAC, TX_ADDR),
        (RX_NS, RX_IF, RX_MAC, RX_ADDR),
    ] {
        sh(Command::new("ip").args(["-n", ns, "link", "set", dev, "address", mac, "up"]))?;
        sh(Command::new("ip").args(["-n", ns, "addr", "add", addr, "dev", dev]))?;
    }
    Ok(())
}

/// The receiver's settings: no forwarding or source check, GRO and threaded
/// NAPI on, and TSO off on the sender.
fn tune_receiver() -> Result<()> {
    // The receiver forwards nothing and checks no source: a packet that
    // passes every filter is dropped by routing (no route, forwarding off).
    sh(in_rx("sysctl").args([
        "-qw",
        "net.ipv4.ip_forward=0",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        &format!("net.ipv4.conf.{RX_IF}.rp_filter=0"),
    ]))?;
    // GRO keeps veth's NAPI on without an XDP program, so every
    // contestant's receive work runs in NAPI; threaded NAPI puts it in
    // one kernel thread whose CPU time we read.
    sh(in_rx("ethtool").args(["-K", RX_IF, "gro", "on"]))?;
    // For skbs (the af-packet generator), veth takes the NAPI path only
    // when the sender has no TSO; else netif_rx would do the receive work
    // on the sender's CPU.
    sh(Command::new("ip").args(["netns", "exec", TX_NS, "ethtool", "-K", TX_IF, "tso", "off"]))?;
    sh(in_rx("sh").args(["-c", &format!("echo 1 > /sys/class/net/{RX_IF}/threaded")]))?;
    Ok(())
}

impl Env {
    /// Create the work directory, the namespaces and the veth pair, with
    /// GRO and threaded NAPI on the receiver (see the report's method).
    pub fn up(work: PathBuf) -> Result<Env> {
        remove_leftovers();
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let bpffs = work.join("bpffs");
        let mut env = Env {
            work,
            bpffs,
            bpffs_mounted: false,
            namespaces: true,
            nft: false,
            ipset: false,
            xdp_filter: false,
        };
        add_namespaces()?;
        add_veth_pair()?;
        tune_receiver()?;
        std::fs::create_dir_all(&env.bpffs)?;
        sh(Command::new("mount")
            .args(["-t", "bpf", "ffbench-bpffs"])
            .arg(&env.bpffs))?;
        env.bpffs_mounted = true;
        Ok(env)
    }

    /// nftables: a netdev ingress chain on the receiver with an interval
    /// set; source and destination looked up. Returns the load time (ms).
    pub fn nft_up(&mut self, set: &[String]) -> Result<f64> {
        let path = self.work.join("nft.conf");
        let mut s = String::with_capacity(set.len() * 20 + 512);
        let _ = writeln!(
            s,
            "table netdev {NFT_TABLE} {{\n  set blocked {{\n    type ipv4_addr\n    flags interval\n    elements = {{"
        );
        for (i, p) in set.iter().enumerate() {
            let sep = if i + 1 == set.len() { "" } else { "," };
            let _ = writeln!(s, "      {p}{sep}");
        }
        let _ = writeln!(
            s,
            "    }}\n  }}\n  chain ingress {{\n    type filter hook ingress device \"{RX_IF}\" priority -500; policy accept;\n    ip saddr @blocked drop\n    ip daddr @blocked drop\n  }}\n}}"
        );
        std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
        self.nft = true;
        let t = Instant::now();
        sh(in_rx("nft").arg("-f").arg(&path))?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    /// Whether a contestant's state is still set up (a teardown failed).
    pub fn dirty(&self) -> bool {
        self.nft || self.ipset || self.xdp_filter
    }

    /// Remove the nftables table (also after a failed setup); an error when
    /// it is still there.
    pub fn nft_down(&mut self) -> Result<()> {
        if self.nft {
            let r = sh(in_rx("nft").args(["delete", "table", "netdev", NFT_TABLE]));
            let tables = sh(in_rx("nft").args(["list", "tables"]))?;
            if tables.contains(&format!("netdev {NFT_TABLE}")) {
                return Err(still_there(
                    r,
                    "table still there",
                    "removing the nftables table",
                ));
            }
            self.nft = false;
        }
        Ok(())
    }

    /// iptables raw PREROUTING with an ipset hash:net; source and
    /// destination matched. Returns (load ms, set memory bytes).
    pub fn ipset_up(&mut self, set: &[String]) -> Result<(f64, Option<u64>)> {
        let path = self.work.join("ipset.restore");
        let hashsize = set.len().next_power_of_two().max(1024);
        let maxelem = (2 * set.len()).max(65536);
        let mut s = String::with_capacity(set.len() * 30 + 128);
        let _ = writeln!(
            s,
            "create {IPSET_NAME} hash:net family inet hashsize {hashsize} maxelem {maxelem}"
        );
        for p in set {
            let _ = writeln!(s, "add {IPSET_NAME} {p}");
        }
        std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
        self.ipset = true;
        let t = Instant::now();
        sh_file(in_rx("ipset").arg("restore"), &path)?;
        for dir in ["src", "dst"] {
            sh(in_rx("iptables").args([
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-m",
                "set",
                "--match-set",
                IPSET_NAME,
                dir,
                "-j",
                "DROP",
            ]))?;
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let list = sh(in_rx("ipset").args(["list", "-t", IPSET_NAME]))?;
        let mem = list
            .lines()
            .find_map(|l| l.strip_prefix("Size in memory:"))
            .and_then(|v| v.trim().parse().ok());
        Ok((ms, mem))
    }

    /// Remove the rules and the set (also after a failed setup); an error
    /// when something is still there.
    pub fn ipset_down(&mut self) -> Result<()> {
        if self.ipset {
            let flushed = sh(in_rx("iptables").args(["-t", "raw", "-F", "PREROUTING"]));
            let destroyed = sh(in_rx("ipset").args(["destroy", IPSET_NAME]));
            let rules = sh(in_rx("iptables").args(["-t", "raw", "-S", "PREROUTING"]))?;
            let sets = sh(in_rx("ipset").args(["list", "-n"]))?;
            if rules.contains("match-set") || sets.lines().any(|l| l.trim() == IPSET_NAME) {
                return Err(flushed
                    .and(destroyed)
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("rules or set still there")))
                .context("removing the iptables rules and the ipset set");
            }
            self.ipset = false;
        }
        Ok(())
    }

    fn xdp_filter_cmd(&self) -> Command {
        let mut c = in_rx("xdp-filter");
        c.env("LIBXDP_BPFFS", &self.bpffs);
        c
    }

    /// Load xdp-filter (native mode, policy allow) on the receiver; returns
    /// the path of its pinned IPv4 map and its program id.
    pub fn xdp_filter_up(&mut self) -> Result<(PathBuf, u32)> {
        self.xdp_filter = true;
        sh(self.xdp_filter_cmd().args([
            "load",
            "--mode",
            "native",
            "--policy",
            "allow",
            "--features",
            "ipv4",
            RX_IF,
        ]))?;
        let map = self.bpffs.join("xdp-filter").join("filter_ipv4");
        if !map.exists() {
            bail!("xdp-filter loaded but {} is missing", map.display());
        }
        let link = sh(Command::new("ip").args(["-n", RX_NS, "-j", "link", "show", RX_IF]))?;
        let v: serde_json::Value = serde_json::from_str(&link).context("parsing `ip -j link`")?;
        let id = v[0]["xdp"]["prog"]["id"]
            .as_u64()
            .or_else(|| v[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
            .context("no XDP program on the receiver after loading xdp-filter")?;
        Ok((map, id as u32))
    }

    /// Unload xdp-filter (also after a failed setup); an error when an XDP
    /// program is still on the receiver.
    pub fn xdp_filter_down(&mut self) -> Result<()> {
        if self.xdp_filter {
            let r = sh(self.xdp_filter_cmd().args(["unload", RX_IF]));
            let link = sh(Command::new("ip").args(["-n", RX_NS, "-j", "link", "show", RX_IF]))?;
            let v: serde_json::Value =
                serde_json::from_str(&link).context("parsing `ip -j link`")?;
            if !v[0]["xdp"].is_null() {
                return Err(still_there(
                    r,
                    "program still attached",
                    "unloading xdp-filter",
                ));
            }
            self.xdp_filter = false;
        }
        Ok(())
    }

    fn cleanup(&mut self) {
        let try_ = |what: &str, r: Result<()>| {
            if let Err(e) = r {
                eprintln!("cleanup: {what}: {e:#}");
            }
        };
        // Run the cleanup even after Ctrl-C.
        INTERRUPTED.store(false, Ordering::SeqCst);
        let r = self.xdp_filter_down();
        try_("xdp-filter", r);
        let r = self.ipset_down();
        try_("iptables/ipset", r);
        let r = self.nft_down();
        try_("nftables", r);
        if self.namespaces {
            self.namespaces = false;
            for ns in [RX_NS, TX_NS] {
                if netns_exists(ns) {
                    try_(
                        ns,
                        sh(Command::new("ip").args(["netns", "del", ns])).map(drop),
                    );
                }
            }
        }
        if self.bpffs_mounted {
            self.bpffs_mounted = false;
            try_(
                "bpffs",
                sh(Command::new("umount").arg(&self.bpffs)).map(drop),
            );
        }
        if let Err(e) = std::fs::remove_dir_all(&self.work) {
            eprintln!("cleanup: removing {}: {e}", self.work.display());
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cleanup();
        eprintln!("cleaned up: namespaces {TX_NS}/{RX_NS}, veth pair, filters, bpffs, work files");
    }
}
