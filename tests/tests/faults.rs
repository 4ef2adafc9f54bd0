//! Operator faults, end to end: interfaces that are deleted, re-created,
//! renamed or missing; signals during a long start; `ip netns exec`;
//! `status` exit codes; systemd notifications and journal priorities; list
//! notes; `stats --watch` arguments.
//!
//! The set-up is the one of `daemon.rs` (its helpers, trimmed, are copied
//! here): per test a pair of network namespaces joined by a veth pair, an
//! RAII guard that removes namespaces, daemon, pins and state file, and
//! `flowfilter run --netns A --iface VA` with a unique pin directory.
//!
//! ```text
//!   ns A: va 192.0.2.1/24   <== veth ==>   ns B: vb 192.0.2.2/24
//!         (XDP, the filter)                      + 198.51.100.10/32 (listed: whatsapp)
//! ```
//!
//! The veth pair can be deleted and made again ([`Env::link_down`],
//! [`Env::link_up`]): deleting `va` deletes its peer too, and the kernel
//! detaches the XDP link of the deleted device.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use filter_user::control::state::state_path;
use filter_user::dataplane::pins::PinLayout;
use flowfilter_tests::kit::{
    self, B_ADDR, Gateway, START_TIMEOUT, Setup, binary, free_port, sh, u, wait_for,
};
use flowfilter_tests::skip_unless_root;
use serde_json::Value;

/// Listed in `whatsapp.txt`.
const LISTED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// How long a re-attach (or a detach showing) may take: link events settle
/// in 100 ms, the periodic check runs every 10 s.
const REATTACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Prefixes of the long-start list.
const BIG: u32 = 300_000;

/// One test's gateway; all removed on drop.
struct Env {
    gw: Gateway,
}

flowfilter_tests::deref_gateway!(Env);

impl Env {
    /// Namespaces and lists; the veth pair when `link`.
    fn new(link: bool) -> Env {
        let setup = Setup {
            dir: "ff-fault",
            link,
            ..Setup::new("fft", 't')
        };
        Env {
            gw: Gateway::new(&setup),
        }
    }

    /// `status --json` with its exit code.
    fn status(&self) -> (i32, Value) {
        let r = self.ff(&["status", "--json"]);
        assert!(
            [0, 3, 4, 5].contains(&r.code),
            "status: exit {}\n{}{}",
            r.code,
            r.stdout,
            r.stderr
        );
        (r.code, r.json())
    }

    /// The daemon's command, not started.
    fn command(&self, extra: &[&str]) -> Command {
        // Plain UDP to a listed range is dropped (not only call media).
        let mut args = vec!["--policy", "whatsapp=drop,scope=udp"];
        args.extend_from_slice(extra);
        self.run_command(&args)
    }

    fn spawn(&mut self, cmd: Command) {
        self.spawn_command(cmd);
    }

    /// Start the daemon and wait until it runs with its interface attached.
    fn start(&mut self, extra: &[&str]) {
        let cmd = self.command(extra);
        self.spawn(cmd);
        self.wait_status(0, "the daemon running with its interface attached");
    }

    /// Wait until `status` exits with `code` (the daemon must not exit).
    fn wait_status(&mut self, code: i32, what: &str) -> Value {
        let limit = if code == 0 {
            START_TIMEOUT
        } else {
            REATTACH_TIMEOUT
        };
        let start = Instant::now();
        loop {
            self.assert_alive();
            // Exit 1 while a first start is still making the pins.
            let r = self.ff(&["status", "--json"]);
            if r.code == code {
                return r.json();
            }
            assert!(
                start.elapsed() < limit,
                "{what}: status still exits {} after {limit:?}:\n{}{}\n{}",
                r.code,
                r.stdout,
                r.stderr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) for the daemon to exit by itself.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.gw.wait_exit(START_TIMEOUT)
    }
}

/// `flowfilter_interface_attached{interface=IF}` from /metrics.
fn attached_metric(addr: SocketAddr, iface: &str) -> Option<f64> {
    let out = kit::http_get(addr, "/metrics").ok()?;
    let needle = format!("interface=\"{iface}\"");
    out.lines()
        .find(|l| l.starts_with("flowfilter_interface_attached{") && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The first interface of `status --json`.
fn iface(s: &Value) -> &Value {
    &s["interfaces"][0]
}

#[test]
fn an_interface_deleted_and_recreated_is_filtered_again_and_status_tells_the_truth() {
    skip_unless_root!("an_interface_deleted_and_recreated_is_filtered_again");
    let mut env = Env::new(true);
    let metrics = free_port();
    env.start(&["--metrics", &metrics.to_string()]);
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 10), 0, "listed traffic dropped");
    let before = env.status().1;
    assert_eq!(before["filtering"], "in_force", "{before:#}");
    let link = u(&iface(&before)["link_id"]);
    assert_eq!(attached_metric(metrics, &env.va), Some(1.0));

    // Gone: nothing may say it is attached.
    env.link_down();
    let s = env.wait_status(4, "status reporting the deleted interface");
    assert_eq!(s["filtering"], "degraded", "{s:#}");
    assert_eq!(iface(&s)["attached"], false, "{s:#}");
    assert_ne!(iface(&s)["state"], "attached", "{s:#}");
    wait_for("interface_attached 0", REATTACH_TIMEOUT, || {
        (attached_metric(metrics, &env.va) == Some(0.0)).then_some(())
    });
    let text = env.ff(&["status"]);
    assert_eq!(text.code, 4);
    assert!(
        text.stdout.contains("DEGRADED") && text.stdout.contains("NOT ATTACHED"),
        "{}",
        text.stdout
    );

    // Back: the daemon attaches the new device.
    env.link_up();
    let s = env.wait_status(0, "re-attach after the interface came back");
    assert_eq!(
        env.deliver(&rx, LISTED, 10),
        0,
        "listed traffic passes after the re-create:\n{}",
        env.log()
    );
    assert_eq!(env.deliver(&rx, B_ADDR, 10), 10, "unlisted traffic passes");
    assert_eq!(iface(&s)["attached"], true);
    assert_ne!(u(&iface(&s)["link_id"]), link, "a new link");
    assert_eq!(attached_metric(metrics, &env.va), Some(1.0));
    let log = env.log();
    assert!(
        log.contains("WARN") && log.contains("filtering there has stopped"),
        "the loss is logged as a warning:\n{log}"
    );
    assert!(
        log.contains("flowfilter::notice") && log.contains("filtering again"),
        "the re-attach is logged as a notice:\n{log}"
    );
}

/// `--inside IFACE` names the subscriber side by interface; a re-created
/// interface is a new device, and it must face subscribers again, or every
/// flow on it loses its subscriber end and takes the other side's fate.
#[test]
fn a_recreated_inside_interface_still_faces_subscribers() {
    skip_unless_root!("a_recreated_inside_interface_still_faces_subscribers");
    let mut env = Env::new(true);
    // The listed relay's address arrives on the inside interface: it is the
    // subscriber, and this seed stops it (and would spare A, the subscriber
    // if nothing faced subscribers).
    let seed = kit::seed_stopping(LISTED, kit::A_ADDR).to_string();
    let va = env.va.clone();
    let cmd = env.run_command(&[
        "--policy",
        "whatsapp=flows=50%,scope=udp",
        "--seed",
        &seed,
        "--inside",
        &va,
    ]);
    env.spawn(cmd);
    env.wait_status(0, "the daemon running with its interface attached");
    let rx = env.receiver();
    assert_eq!(
        env.deliver(&rx, LISTED, 20),
        0,
        "the inside subscriber is stopped:\n{}",
        env.log()
    );
    env.link_down();
    env.wait_status(4, "status reporting the deleted interface");
    env.link_up();
    env.wait_status(0, "re-attach after the interface came back");
    // A new sending socket: a new flow, decided afresh on the new device.
    assert_eq!(
        env.deliver(&rx, LISTED, 20),
        0,
        "after the re-create {va} still faces subscribers:\n{}",
        env.log()
    );
}

#[test]
fn a_renamed_interface_is_left_and_the_new_holder_of_the_name_attached() {
    skip_unless_root!("a_renamed_interface_is_left_and_the_new_holder_of_the_name_attached");
    let mut env = Env::new(true);
    env.start(&[]);
    let renamed = format!("tr{}", &env.va[2..]);
    env.a(&["link", "set", &env.va, "down"]);
    env.a(&["link", "set", &env.va, "name", &renamed]);
    let s = env.wait_status(4, "status after the rename");
    assert_eq!(iface(&s)["attached"], false, "{s:#}");
    // The filter follows the name: the renamed device is not filtered.
    wait_for("the renamed device left alone", REATTACH_TIMEOUT, || {
        let out = sh("ip", &["-n", env.ns_a.name(), "link", "show", &renamed]);
        (!String::from_utf8_lossy(&out.stdout).contains("prog/xdp")).then_some(())
    });
    env.a(&["link", "del", &renamed]);
    env.link_up();
    env.wait_status(0, "the new device of that name attached");
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 10), 0, "{}", env.log());
}

#[test]
fn after_kill_9_and_a_recreated_interface_a_restart_attaches_anew() {
    skip_unless_root!("after_kill_9_and_a_recreated_interface_a_restart_attaches_anew");
    let mut env = Env::new(true);
    env.start(&[]);
    let link = u(&iface(&env.status().1)["link_id"]);
    env.stop(libc::SIGKILL);
    assert_eq!(env.status().0, 3, "in force, no daemon");
    env.link_down();
    env.link_up();
    // Without a daemon, status asks the kernel: the pinned link is defunct.
    let (code, s) = env.status();
    assert_eq!(code, 4, "{s:#}");
    assert_eq!(iface(&s)["state"], "defunct", "{s:#}");
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 10), 10, "nothing filters now");

    env.start(&[]);
    let s = env.status().1;
    assert_ne!(u(&iface(&s)["link_id"]), link, "{s:#}");
    let log = env.log();
    assert!(
        !log.contains("adopted the pinned link"),
        "the dead link was adopted:\n{log}"
    );
    assert!(
        log.contains("removing the stale pinned link") && log.contains("attached in"),
        "{log}"
    );
    assert_eq!(env.deliver(&rx, LISTED, 10), 0, "filtering again:\n{log}");
}

#[test]
fn an_interface_missing_at_start_is_waited_for_and_attached_when_it_appears() {
    skip_unless_root!("an_interface_missing_at_start_is_waited_for");
    let mut env = Env::new(false);
    let cmd = env.command(&[]);
    env.spawn(cmd);
    let s = wait_for("the daemon running", START_TIMEOUT, || {
        env.assert_alive();
        let r = env.ff(&["status", "--json"]);
        (r.code != 1 && r.json()["daemon"]["running"] == true).then(|| (r.code, r.json()))
    });
    assert_eq!(s.0, 4, "{:#}", s.1);
    assert_eq!(iface(&s.1)["state"], "missing", "{:#}", s.1);
    assert!(env.log().contains("waiting for it"), "{}", env.log());
    env.link_up();
    env.wait_status(0, "attached once the interface appeared");
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 10), 0, "{}", env.log());
    assert_eq!(env.deliver(&rx, B_ADDR, 10), 10);
}

/// A list of [`BIG`] distinct /24s outside the test ranges.
fn big_list() -> String {
    kit::slash24s(Ipv4Addr::new(11, 0, 0, 0), BIG)
}

/// Wait until process `pid` holds or handles SIGHUP (`SigBlk`/`SigCgt` of
/// /proc/PID/status): the first instant a signal cannot kill it.
fn wait_signals_held(pid: libc::pid_t) {
    let bit = 1u64 << (libc::SIGHUP - 1);
    wait_for("SIGHUP held or caught", Duration::from_secs(10), || {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let mask = |name: &str| {
            st.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        ((mask("SigBlk:") | mask("SigCgt:")) & bit != 0).then_some(())
    });
}

#[test]
fn sighup_from_the_first_instant_of_a_long_start_is_queued_and_applied() {
    skip_unless_root!("sighup_from_the_first_instant_of_a_long_start_is_queued_and_applied");
    let mut env = Env::new(true);
    env.write_list("bulk", &big_list());
    let cmd = env.command(&[]);
    env.spawn(cmd);
    wait_signals_held(env.pid());
    env.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(30));
    env.signal(libc::SIGHUP);
    env.wait_status(0, "the daemon running after SIGHUPs during its start");
    let s = wait_for("the queued reload", START_TIMEOUT, || {
        env.assert_alive();
        let s = env.status().1;
        (s["last_reload"]["by"] == "sighup").then_some(s)
    });
    assert_eq!(s["last_reload"]["ok"], true, "{s:#}");
    let log = env.log();
    assert!(log.contains("SIGHUP during the start"), "{log}");
    assert!(
        log.contains("applying the SIGHUP that came during the start"),
        "{log}"
    );
    assert_eq!(
        log.matches("reloaded: ").count(),
        1,
        "one reload for both:\n{log}"
    );
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 10), 0);
}

#[test]
fn sigterm_during_a_start_leaves_nothing_half_made() {
    skip_unless_root!("sigterm_during_a_start_leaves_nothing_half_made");
    let big = big_list();
    // From the first instant: the start stops before it touches anything.
    let mut env = Env::new(true);
    env.write_list("bulk", &big);
    let cmd = env.command(&[]);
    env.spawn(cmd);
    wait_signals_held(env.pid());
    env.signal(libc::SIGTERM);
    let status = env.wait_exit();
    assert!(status.success(), "{status}\n{}", env.log());
    assert!(
        env.log().contains("stopped during the start"),
        "{}",
        env.log()
    );
    assert!(!env.pin_dir.exists(), "pins left:\n{}", env.log());
    assert!(!state_path(&env.pin_dir).exists(), "state file left");
    assert_eq!(env.status().0, 5);

    // Later in the start (the program loaded, the tables being filled):
    // nothing, or a whole filter that the stop leaves in force.
    let cmd = env.command(&[]);
    env.spawn(cmd);
    wait_for("the load", START_TIMEOUT, || {
        env.assert_alive();
        env.log().contains("starting anew").then_some(())
    });
    env.signal(libc::SIGTERM);
    let status = env.wait_exit();
    assert!(status.success(), "{status}\n{}", env.log());
    let layout = PinLayout::new(&env.pin_dir);
    if env.pin_dir.exists() {
        let (code, s) = env.status();
        assert_eq!(code, 3, "a whole filter, no daemon: {s:#}\n{}", env.log());
        assert!(layout.has_program());
        assert_eq!(s["daemon"]["running"], false);
    } else {
        assert!(!state_path(&env.pin_dir).exists(), "state file left");
        assert!(
            env.log().contains("stopped during the start"),
            "{}",
            env.log()
        );
    }
}

#[test]
fn run_under_ip_netns_exec_is_refused_naming_netns() {
    skip_unless_root!("run_under_ip_netns_exec_is_refused_naming_netns");
    let env = Env::new(true);
    let out = Command::new("ip")
        .args(["netns", "exec", env.ns_a.name()])
        .arg(binary())
        .arg("--pin-dir")
        .arg(&env.pin_dir)
        .args(["run", "--iface", &env.va, "--lists"])
        .arg(env.lists())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("ip netns exec flowfilter run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--netns {}", env.ns_a)) && stderr.contains("ip netns exec"),
        "{stderr}"
    );
    assert!(!env.pin_dir.exists(), "pins made where the host sees them");
}

#[test]
fn status_exit_codes_tell_in_force_unmanaged_degraded_and_nothing() {
    skip_unless_root!("status_exit_codes_tell_in_force_unmanaged_degraded_and_nothing");
    let mut env = Env::new(true);
    env.start(&[]);
    let (code, s) = env.status();
    assert_eq!((code, s["filtering"].as_str()), (0, Some("in_force")));
    assert!(env.ff(&["status"]).ok("status").stdout.contains("in force"));

    env.stop(libc::SIGKILL);
    let (code, s) = env.status();
    assert_eq!((code, s["filtering"].as_str()), (3, Some("unmanaged")));

    env.link_down();
    let (code, s) = env.status();
    assert_eq!((code, s["filtering"].as_str()), (4, Some("degraded")));

    // Only the state file is left: nothing is pinned.
    PinLayout::new(&env.pin_dir)
        .remove_all()
        .expect("remove the pins");
    assert!(state_path(&env.pin_dir).exists());
    let r = env.ff(&["status"]);
    assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("nothing is pinned") && r.stdout.contains("left from an earlier run"),
        "{}",
        r.stdout
    );
    let (code, s) = env.status();
    assert_eq!((code, s["filtering"].as_str()), (5, Some("none")));
}

/// Datagrams received on a notify socket within `limit`, until one contains
/// `want`.
fn notifications_until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = m.contains(want);
            got.push(m);
            if done {
                return got;
            }
        }
    }
    panic!("no `{want}` within {limit:?}; got {got:?}");
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping_and_reload_finds_the_daemon() {
    skip_unless_root!("systemd_is_told_ready_reloading_and_stopping");
    let mut env = Env::new(true);
    let path = env.dir.join("notify");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut cmd = env.command(&[]);
    cmd.env("NOTIFY_SOCKET", &path);
    env.spawn(cmd);
    let got = notifications_until(&sock, "READY=1", START_TIMEOUT);
    assert!(
        got.last()
            .is_some_and(|m| m.contains("STATUS=filtering on 1 interface")),
        "{got:?}"
    );
    // READY=1 comes once the daemon is findable: `reload` as ExecReload
    // runs it, finding the pins through the configuration file.
    let config = env.dir.join("flowfilter.toml");
    std::fs::write(
        &config,
        format!("pin_dir = \"{}\"\n", env.pin_dir.display()),
    )
    .expect("config");
    let out = Command::new(binary())
        .arg("reload")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("flowfilter reload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("reloaded by the daemon"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = notifications_until(&sock, "READY=1", Duration::from_secs(30));
    let reloading = got
        .iter()
        .find(|m| m.starts_with("RELOADING=1"))
        .unwrap_or_else(|| panic!("{got:?}"));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);

    // A rejected reload: `reload` exits 2, and systemd is told READY=1 again
    // with the rejection in STATUS.
    env.write_list("whatsapp", "198.51.100.1/24\n");
    let r = env.ff(&["reload"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let got = notifications_until(&sock, "READY=1", Duration::from_secs(30));
    assert!(
        got.last().is_some_and(|m| m.contains("rejected")),
        "{got:?}"
    );

    let status = env.stop(libc::SIGTERM);
    assert!(status.success(), "{status}");
    notifications_until(&sock, "STOPPING=1", Duration::from_secs(5));
}

#[test]
fn under_journald_lines_carry_syslog_priorities() {
    use std::os::unix::fs::MetadataExt as _;
    skip_unless_root!("under_journald_lines_carry_syslog_priorities");
    let mut env = Env::new(true);
    let cmd = env.command(&[]);
    let meta = std::fs::metadata(env.dir.join("daemon.log")).expect("log");
    let mut cmd = cmd;
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    env.spawn(cmd);
    env.wait_status(0, "the daemon running");
    env.write_list("whatsapp", "198.51.100.1/24\n");
    assert_eq!(env.ff(&["reload"]).code, 2);
    env.link_down();
    env.wait_status(4, "the loss seen");
    env.link_up();
    env.wait_status(0, "re-attached");
    env.stop(libc::SIGTERM);
    let log = env.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("  ")).collect();
    assert!(
        lines.iter().all(|l| l.len() > 3
            && l.starts_with('<')
            && l.as_bytes()[2] == b'>'
            && (b'3'..=b'7').contains(&l.as_bytes()[1])),
        "every line has a priority prefix:\n{log}"
    );
    let prio = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .map_or_else(|| panic!("no line with {needle:?}:\n{log}"), |l| &l[..3])
    };
    for (needle, want) in [
        ("reload rejected", "<3>"),
        ("filtering there has stopped", "<4>"),
        ("filtering again", "<5>"),
        ("running (pid", "<6>"),
    ] {
        assert_eq!(prio(needle), want, "{needle:?}");
    }
}

#[test]
fn covered_and_duplicate_prefixes_are_one_line_per_list() {
    skip_unless_root!("covered_and_duplicate_prefixes_are_one_line_per_list");
    let mut env = Env::new(true);
    // A /16 and its 256 /24s, one of them twice.
    let mut text = String::from("198.51.100.0/24\n10.20.0.0/16\n");
    for i in 0..256 {
        writeln!(text, "10.20.{i}.0/24").expect("write to a String");
    }
    text.push_str("10.20.7.0/24\n");
    env.write_list("whatsapp", &text);
    env.start(&[]);
    env.signal(libc::SIGHUP);
    wait_for("the reload", START_TIMEOUT, || {
        env.log().contains("reloaded: ").then_some(())
    });
    let log = env.log();
    let summary: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("whatsapp.txt:"))
        .collect();
    assert_eq!(
        summary.len(),
        2,
        "one line per load (start, reload):\n{log}"
    );
    for l in summary {
        assert!(
            l.contains("1 duplicate prefix") && l.contains("256 prefixes covered"),
            "{l}"
        );
    }
    assert!(
        !log.contains("covered by 10.20.0.0/16"),
        "details at info:\n{log}"
    );
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 5), 0);
}

#[test]
fn stats_watch_refuses_intervals_it_cannot_keep() {
    for bad in ["1e20", "NaN", "-1", "0", "inf", "0.01", "x"] {
        let out = Command::new(binary())
            .args(["stats", "--watch", bad])
            .output()
            .expect("flowfilter stats");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--watch {bad}: {stderr}");
        assert!(
            stderr.contains("--watch") && !stderr.contains("panicked"),
            "--watch {bad}: {stderr}"
        );
    }
}
