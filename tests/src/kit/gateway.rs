//! The daemon tests' topology, made and removed by one RAII guard:
//!
//! ```text
//!   ns A: va 192.0.2.1/24   <== veth ==>   ns B: vb 192.0.2.2/24
//!         (XDP, the filter)                      + Setup::hosts (/32 each,
//!                                                  routed from A by /24)
//! ```
//!
//! and `flowfilter --pin-dir P run --netns A --iface va --lists DIR/lists`
//! with a unique pin directory. The daemon attaches through `--netns`, not
//! under `ip netns exec`: that command remounts /sys in a private mount
//! namespace, so a bpffs mounted there (and the pins in it) would die with
//! the daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use filter_user::control::state::StateFile;
use filter_user::dataplane::pins::PinLayout;

use super::{NetNs, Ran, binary, in_ns, ip, unique_id};

/// `va`'s address in namespace A, where the receiver listens.
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// `vb`'s address in namespace B.
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The receiver's UDP port.
pub const PORT: u16 = 40_000;

/// How long a daemon may take to verify, load and attach.
pub const START_TIMEOUT: Duration = Duration::from_mins(1);

/// How a [`Gateway`] is made.
pub struct Setup<'a> {
    /// Names the namespaces `TAG-PID-N-a` and `-b`.
    pub tag: &'a str,
    /// The interfaces are `{iface}a{PIDN}` (ns A) and `{iface}b{PIDN}`.
    pub iface: char,
    /// The temporary directory is `$TMP/{dir}-{id}`, the pin directory
    /// `/sys/fs/bpf/{dir}-{id}` unless `pin_dir` names another.
    pub dir: &'a str,
    /// The pin directory from the unique id.
    pub pin_dir: Option<&'a dyn Fn(&str) -> String>,
    /// MAC addresses of `va` and `vb`.
    pub macs: [&'a str; 2],
    /// Addresses of B besides 192.0.2.2 (A routes their /24 via B).
    pub hosts: &'a [&'a str],
    /// Make the veth pair now (else [`Gateway::link_up`] does).
    pub link: bool,
    /// Append to `daemon.log` across daemon starts (else each start
    /// truncates it).
    pub append_log: bool,
}

impl<'a> Setup<'a> {
    /// Veth pair made, B holding 198.51.100.10 (whatsapp's test range),
    /// `ff-test-ID` directories.
    pub fn new(tag: &'a str, iface: char) -> Setup<'a> {
        Setup {
            tag,
            iface,
            dir: "ff-test",
            pin_dir: None,
            macs: ["02:00:00:00:0a:01", "02:00:00:00:0b:01"],
            hosts: &["198.51.100.10"],
            link: true,
            append_log: false,
        }
    }
}

/// One test's namespaces, veth pair, lists, pins and daemon; all removed on
/// drop, even after a failed step.
pub struct Gateway {
    pub ns_a: NetNs,
    pub ns_b: NetNs,
    pub va: String,
    pub vb: String,
    pub pin_dir: PathBuf,
    pub dir: PathBuf,
    pub daemon: Option<Child>,
    macs: [String; 2],
    hosts: Vec<String>,
    append_log: bool,
}

impl Gateway {
    /// The namespaces, the lists directory with `whatsapp.txt`
    /// (198.51.100.0/24) and, when `setup.link`, the veth pair.
    pub fn new(setup: &Setup) -> Gateway {
        let (id, short) = unique_id(setup.tag);
        let pin_dir = setup
            .pin_dir
            .map_or_else(|| format!("/sys/fs/bpf/{}-{id}", setup.dir), |f| f(&id));
        let dir = std::env::temp_dir().join(format!("{}-{id}", setup.dir));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lists")).expect("temp dir");
        // The guard exists before the next step, so a failure below still
        // removes what was made.
        let ns_a = NetNs::new(&format!("{id}-a"));
        let gw = Gateway {
            ns_b: NetNs::new(&format!("{id}-b")),
            ns_a,
            va: format!("{}a{short}", setup.iface),
            vb: format!("{}b{short}", setup.iface),
            pin_dir: PathBuf::from(pin_dir),
            dir,
            daemon: None,
            macs: setup.macs.map(str::to_owned),
            hosts: setup.hosts.iter().map(|h| (*h).to_owned()).collect(),
            append_log: setup.append_log,
        };
        gw.ns_a.ip(&["link", "set", "lo", "up"]);
        gw.write_list("whatsapp", "# test list\n198.51.100.0/24\n");
        if setup.link {
            gw.link_up();
        }
        gw
    }

    /// `ip -n A ARGS...`
    pub fn a(&self, args: &[&str]) {
        self.ns_a.ip(args);
    }

    /// `ip -n B ARGS...`
    pub fn b(&self, args: &[&str]) {
        self.ns_b.ip(args);
    }

    /// Make the veth pair `va` (ns A) / `vb` (ns B) with addresses, routes
    /// and static neighbours (no ARP round trip can hold or drop a packet).
    pub fn link_up(&self) {
        let (va, vb) = (self.va.as_str(), self.vb.as_str());
        let [mac_a, mac_b] = [self.macs[0].as_str(), self.macs[1].as_str()];
        ip(&[
            "link",
            "add",
            va,
            "netns",
            self.ns_a.name(),
            "address",
            mac_a,
            "type",
            "veth",
            "peer",
            "name",
            vb,
            "netns",
            self.ns_b.name(),
            "address",
            mac_b,
        ]);
        self.a(&["addr", "add", "192.0.2.1/24", "dev", va]);
        self.a(&["link", "set", va, "up"]);
        self.b(&["addr", "add", "192.0.2.2/24", "dev", vb]);
        for h in &self.hosts {
            self.b(&["addr", "add", &format!("{h}/32"), "dev", vb]);
        }
        self.b(&["link", "set", vb, "up"]);
        for h in &self.hosts {
            let net = h.rsplit_once('.').map_or(h.as_str(), |(n, _)| n);
            self.a(&["route", "add", &format!("{net}.0/24"), "via", "192.0.2.2"]);
        }
        self.a(&[
            "neigh",
            "add",
            "192.0.2.2",
            "lladdr",
            mac_b,
            "dev",
            va,
            "nud",
            "permanent",
        ]);
        self.b(&[
            "neigh",
            "add",
            "192.0.2.1",
            "lladdr",
            mac_a,
            "dev",
            vb,
            "nud",
            "permanent",
        ]);
    }

    /// Delete the veth pair (deleting `va` deletes its peer).
    pub fn link_down(&self) {
        self.a(&["link", "del", &self.va]);
    }

    pub fn lists(&self) -> PathBuf {
        self.dir.join("lists")
    }

    /// Write `lists/NAME.txt`.
    pub fn write_list(&self, name: &str, text: &str) {
        std::fs::write(self.lists().join(format!("{name}.txt")), text).expect("write list");
    }

    /// What the daemons wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The CLI against this test's pins, with `RUST_LOG=level`, output
    /// piped.
    pub fn cmd(&self, args: &[&str], level: &str) -> Command {
        let mut c = Command::new(binary());
        c.arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(args)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Run the CLI against this test's pins.
    pub fn ff(&self, args: &[&str]) -> Ran {
        let out = self
            .cmd(args, "warn")
            .output()
            .unwrap_or_else(|e| panic!("flowfilter {args:?}: {e}"));
        Ran::of(&out)
    }

    /// What `flowfilter check IP` says the live tables hold for `ip`: the
    /// category name, or `no category`.
    pub fn in_force(&self, ip: &str) -> String {
        let out = self.ff(&["check", ip]).ok(&format!("check {ip}")).stdout;
        out.lines()
            .find_map(|l| l.trim().strip_prefix("in force: "))
            .and_then(|l| l.split(" (generation").next())
            .unwrap_or_else(|| panic!("no `in force` line in: {out}"))
            .to_owned()
    }

    /// Start the CLI against this test's pins, not waited for.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args, "info")
            .spawn()
            .unwrap_or_else(|e| panic!("flowfilter {args:?}: {e}"))
    }

    /// `flowfilter run` on `va` with `extra` arguments, its output to
    /// `daemon.log`; not started. Without the caller's systemd variables.
    pub fn run_command(&self, extra: &[&str]) -> Command {
        let log = File::options()
            .create(true)
            .write(true)
            .append(self.append_log)
            .truncate(!self.append_log)
            .open(self.dir.join("daemon.log"))
            .expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(["run", "--netns", self.ns_a.name(), "--iface", &self.va])
            .arg("--lists")
            .arg(self.lists())
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        cmd
    }

    /// Spawn `cmd` (a [`Gateway::run_command`]) as this test's daemon.
    pub fn spawn_command(&mut self, mut cmd: Command) {
        assert!(self.daemon.is_none(), "daemon already started");
        self.daemon = Some(cmd.spawn().expect("spawn flowfilter run"));
    }

    /// Spawn the daemon with `extra` arguments, not waited for.
    pub fn spawn_daemon(&mut self, extra: &[&str]) {
        let cmd = self.run_command(extra);
        self.spawn_command(cmd);
    }

    /// Start the daemon with `extra` arguments and wait until it runs.
    pub fn start(&mut self, extra: &[&str]) {
        self.spawn_daemon(extra);
        self.wait_running();
    }

    /// Panic with the log if the daemon has exited.
    pub fn assert_alive(&mut self) {
        if let Some(Some(status)) = self.daemon.as_mut().map(|c| c.try_wait().ok().flatten()) {
            panic!("flowfilter run exited ({status}):\n{}", self.log());
        }
    }

    /// Wait until `status` says the daemon runs with its interface attached,
    /// at most [`START_TIMEOUT`].
    pub fn wait_running(&mut self) {
        let limit = START_TIMEOUT;
        let start = Instant::now();
        loop {
            self.assert_alive();
            let r = self.ff(&["status", "--json"]);
            if r.code == 0 {
                let s = r.json();
                if s["daemon"]["running"] == true && s["interfaces"][0]["link_id"].is_u64() {
                    return;
                }
            }
            assert!(
                start.elapsed() < limit,
                "the daemon did not come up in {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.daemon.as_ref().expect("no daemon").id()).expect("pid")
    }

    /// Send `signal` to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain kill(2) of our child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Kill the daemon with `signal` and reap it.
    pub fn stop(&mut self, signal: libc::c_int) -> ExitStatus {
        self.signal(signal);
        self.daemon
            .take()
            .expect("no daemon")
            .wait()
            .expect("wait for the daemon")
    }

    /// Wait (at most `limit`) for the daemon to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.daemon.take().expect("no daemon");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!("the daemon did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A receiving socket on A ([`A_ADDR`]:[`PORT`]).
    pub fn receiver(&self) -> Receiver {
        let sock = self
            .ns_a
            .run(|| UdpSocket::bind((A_ADDR, PORT)).expect("bind receiver"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        Receiver { sock }
    }

    /// A sending socket on B, bound to `src`, connected to the receiver.
    pub fn sender(&self, src: Ipv4Addr) -> UdpSocket {
        let sock = in_ns(self.ns_b.name(), || {
            UdpSocket::bind((src, 0)).expect("bind sender")
        });
        sock.connect((A_ADDR, PORT)).expect("connect");
        sock
    }

    /// Send `n` packets from `src` and return how many arrived (the receiver
    /// is drained first and after).
    pub fn deliver(&self, rx: &Receiver, src: Ipv4Addr, n: u32) -> usize {
        rx.drain();
        let tx = self.sender(src);
        for seq in 0..n {
            send(&tx, seq);
        }
        rx.collect(Duration::from_millis(300))
            .get(&IpAddr::V4(src))
            .map_or(0, BTreeSet::len)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = PinLayout::new(&self.pin_dir).remove_all() {
            eprintln!("cleanup {}: {e}", self.pin_dir.display());
        }
        // A nested pin directory's parent, made for it.
        if let Some(parent) = self.pin_dir.parent()
            && parent.starts_with("/sys/fs/bpf/ff-test-")
        {
            let _ = std::fs::remove_dir(parent);
        }
        let _ = StateFile::remove(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        // The namespaces go after this, as the fields drop.
    }
}

/// A 64-byte payload: a sequence number, then filler.
pub fn send(tx: &UdpSocket, seq: u32) {
    let mut p = [0x55u8; 64];
    p[..4].copy_from_slice(&seq.to_be_bytes());
    tx.send(&p).expect("send");
}

/// The receiving socket of [`Gateway::receiver`].
pub struct Receiver {
    pub sock: UdpSocket,
}

impl Receiver {
    /// Throw away what is queued (until quiet for 50 ms).
    pub fn drain(&self) {
        let _ = self.collect(Duration::from_millis(50));
    }

    /// Sequence numbers received per source, until quiet for `quiet`.
    pub fn collect(&self, quiet: Duration) -> BTreeMap<IpAddr, BTreeSet<u32>> {
        let mut got: BTreeMap<IpAddr, BTreeSet<u32>> = BTreeMap::new();
        let mut last = Instant::now();
        let mut buf = [0u8; 2048];
        while last.elapsed() < quiet {
            if let Ok((n, from)) = self.sock.recv_from(&mut buf)
                && n >= 4
            {
                let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                got.entry(from.ip()).or_default().insert(seq);
                last = Instant::now();
            }
        }
        got
    }
}
