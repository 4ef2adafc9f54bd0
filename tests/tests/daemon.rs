//! The daemon and the CLI end to end, with real UDP traffic.
//!
//! Each test makes its own pair of network namespaces joined by a veth pair
//! (an RAII guard removes them, the daemon, the pins and the state file even
//! after a failed step), runs `flowfilter run --netns A --iface VA` with a
//! unique pin directory, and sends UDP from namespace B to A:
//!
//! ```text
//!   ns A: va 192.0.2.1/24   <== veth ==>   ns B: vb 192.0.2.2/24
//!         (XDP, the filter)                      + 198.51.100.10/32 (listed: whatsapp)
//!                                                + 203.0.113.10/32  (unlisted at first)
//! ```
//!
//! The daemon attaches through `--netns`, not under `ip netns exec`: that
//! command remounts /sys in a private mount namespace, so a bpffs mounted
//! there (and the pins in it) would die with the daemon, which is exactly
//! what the kill -9 test must not see.
//!
//! The binary: `FLOWFILTER_BIN`, else `$CARGO_TARGET_DIR/debug/flowfilter`,
//! else `<workspace>/target/debug/flowfilter` (`cargo xtask test` builds it
//! first; a missing binary fails with the command that builds it).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use filter_user::dataplane::pins::PinLayout;
use flowfilter_tests::kit::{
    self, A_ADDR, B_ADDR, Gateway, PORT, Receiver, Setup, binary, free_port, in_ns, send, u,
};
use flowfilter_tests::skip_unless_root;
use serde_json::Value;

/// Listed in `whatsapp.txt` from the start.
const LISTED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// In no list at first.
const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Packets of each flow in the reload-under-traffic test.
const PACKETS: u32 = 2500;

/// One test's gateway and the address its daemon serves metrics on, if
/// any; all removed on drop.
struct Env {
    gw: Gateway,
    metrics: Option<SocketAddr>,
}

flowfilter_tests::deref_gateway!(Env);

impl Env {
    fn new() -> Env {
        let setup = Setup {
            hosts: &["198.51.100.10", "203.0.113.10"],
            ..Setup::new("ffd", 'f')
        };
        Env {
            gw: Gateway::new(&setup),
            metrics: None,
        }
    }

    /// A new gateway with its daemon started with `extra` arguments.
    fn started(extra: &[&str]) -> Env {
        let mut env = Env::new();
        env.start(extra);
        env
    }

    /// A new gateway with its daemon dropping whatsapp's UDP, and a
    /// receiver in namespace A.
    fn dropping_whatsapp() -> (Env, Receiver) {
        let env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
        let rx = env.receiver();
        (env, rx)
    }

    /// Start the daemon with `extra` arguments (and `--metrics`) and wait
    /// until it runs.
    fn start(&mut self, extra: &[&str]) {
        let metrics = self.metrics.map(|m| m.to_string());
        let mut args = extra.to_vec();
        if let Some(m) = &metrics {
            args.extend(["--metrics", m.as_str()]);
        }
        self.gw.start(&args);
    }

    /// `status --json` of filtering in force: exit 0, or 3 when no daemon
    /// runs (see faults.rs for the other codes).
    fn status(&self) -> Value {
        let r = self.ff(&["status", "--json"]);
        assert!(
            r.code == 0 || r.code == 3,
            "status: exit {}\nstdout: {}\nstderr: {}",
            r.code,
            r.stdout,
            r.stderr
        );
        r.json()
    }

    fn stats(&self) -> Value {
        self.ff(&["stats", "--json"]).ok("stats").json()
    }

    /// A category's counters from `stats --json`.
    fn category(&self, name: &str) -> Value {
        let s = self.stats();
        s["categories"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no category {name} in {s:#}"))
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    kit::http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

#[test]
fn start_attach_count_and_json_schemas() {
    skip_unless_root!("start_attach_count_and_json_schemas");
    let (env, rx) = Env::dropping_whatsapp();
    assert_eq!(env.deliver(&rx, B_ADDR, 20), 20, "unlisted traffic passes");
    assert_eq!(env.deliver(&rx, LISTED, 20), 0, "listed traffic is dropped");

    // status --json
    let s = env.status();
    assert_eq!(s["pin_dir"], env.pin_dir.display().to_string());
    assert!(s["state_file"].is_string(), "{s:#}");
    assert_eq!(s["daemon"]["running"], true);
    assert!(s["daemon"]["pid"].is_u64());
    assert!(s["program"]["id"].is_u64());
    assert_eq!(s["program"]["name"], "flowfilter");
    assert_eq!(s["program"]["tag"].as_str().map(str::len), Some(16));
    let iface = &s["interfaces"][0];
    assert_eq!(iface["name"], env.va.as_str());
    assert!(
        iface["mode"] == "driver" || iface["mode"] == "skb",
        "{iface}"
    );
    assert_eq!(iface["program_id"], s["program"]["id"]);
    assert_eq!(iface["netns"], env.ns_a.name());
    assert!(u(&s["generation"]) <= 1);
    assert_eq!(s["lists_dir"], env.lists().display().to_string());
    let cats = s["categories"].as_array().expect("categories");
    assert_eq!(cats[0]["name"], "whatsapp");
    assert_eq!(cats[0]["id"], 1);
    assert_eq!(cats[0]["policy"], "drop,scope=udp");
    assert_eq!(cats[0]["policy_source"], "flag");
    assert_eq!(cats[0]["ipv4_prefixes"], 1);
    assert_eq!(cats[0]["ipv6_prefixes"], 0);
    assert_eq!(cats[1]["name"], "telegram");
    assert_eq!(cats[1]["policy_source"], "default");
    assert_eq!(s["allow"]["ipv4_prefixes"], 0);
    assert!(u(&s["flows"]["tracked"]) >= 1);
    assert_eq!(s["flows"]["capacity"], 1 << 18);
    assert_eq!(s["last_reload"]["ok"], true);
    assert_eq!(s["last_reload"]["by"], "start");

    // stats --json
    let st = env.stats();
    assert!(st["time"].is_u64());
    let wa = st["categories"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "whatsapp"))
        .expect("whatsapp");
    assert_eq!(wa["id"], 1);
    assert_eq!(wa["seen"]["packets"], 20);
    assert_eq!(wa["dropped"]["packets"], 20);
    assert_eq!(wa["passed"]["packets"], 0);
    assert_eq!(wa["monitored"]["packets"], 0);
    assert!(u(&wa["dropped"]["bytes"]) >= 20 * 64);
    let labels = st["labels"].as_array().expect("labels");
    assert!(labels.iter().any(|l| l["name"] == "stun"), "{st:#}");
    for l in labels {
        for k in ["id", "packets", "bytes", "dropped", "monitored"] {
            assert!(l[k].is_u64(), "label {k}: {l}");
        }
    }
    assert!(u(&st["global"]["udp"]) >= 40);
    assert!(u(&st["global"]["dropped"]) >= 20);

    // flows --json: the listed flow, dropped.
    let flows = env.ff(&["flows", "--json"]).ok("flows").json();
    let f = flows
        .as_array()
        .and_then(|a| a.iter().find(|f| f["category"] == "whatsapp"))
        .unwrap_or_else(|| panic!("no whatsapp flow in {flows:#}"));
    assert_eq!(f["proto"], "udp");
    assert!(
        f["src"]
            .as_str()
            .unwrap_or_default()
            .starts_with("198.51.100.10:"),
        "{f}"
    );
    assert_eq!(f["dst"], format!("{A_ADDR}:{PORT}"));
    assert_eq!(f["dropped"], 20);
    assert_eq!(f["listed"], true);
    // A second daemon on the same pins is refused.
    let out = Command::new(binary())
        .arg("--pin-dir")
        .arg(&env.pin_dir)
        .args(["run", "--iface", &env.va, "--lists"])
        .arg(env.lists())
        .output()
        .expect("second run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already manages"), "{stderr}");
    // The text forms render too.
    assert!(env.ff(&["status"]).ok("status").stdout.contains("whatsapp"));
    assert!(env.ff(&["stats"]).ok("stats").stdout.contains("whatsapp"));
}

#[test]
fn kill_9_keeps_filtering_and_restart_adopts_without_gap() {
    skip_unless_root!("kill_9_keeps_filtering_and_restart_adopts_without_gap");
    let (mut env, rx) = Env::dropping_whatsapp();
    assert_eq!(env.deliver(&rx, LISTED, 10), 0);
    let before = env.status();
    let prog = u(&before["program"]["id"]);
    let link = u(&before["interfaces"][0]["link_id"]);

    env.stop(libc::SIGKILL);
    let s = env.status();
    assert_eq!(s["daemon"]["running"], false, "{s:#}");
    assert_eq!(u(&s["program"]["id"]), prog);
    assert_eq!(u(&s["interfaces"][0]["link_id"]), link);
    assert_eq!(u(&s["interfaces"][0]["program_id"]), prog);
    // Still attached and counting without a daemon.
    assert_eq!(env.deliver(&rx, LISTED, 10), 0, "dropped after kill -9");
    assert_eq!(
        env.deliver(&rx, B_ADDR, 10),
        10,
        "unlisted passes after kill -9"
    );
    assert_eq!(env.category("whatsapp")["dropped"]["packets"], 20);

    // Restart under traffic: the listed flow never gets through, the
    // unlisted one never loses a packet.
    rx.drain();
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let listed = env.sender(LISTED);
    let other = env.sender(B_ADDR);
    let (sent, restart) = std::thread::scope(|s| {
        let t = {
            let stop = Arc::clone(&stop);
            let barrier = Arc::clone(&barrier);
            s.spawn(move || {
                barrier.wait();
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    send(&listed, seq);
                    send(&other, seq);
                    seq += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                seq
            })
        };
        let r = s.spawn(|| rx.collect(Duration::from_secs(3)));
        barrier.wait();
        env.start(&["--policy", "whatsapp=drop,scope=udp"]);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        (t.join().expect("sender"), r.join().expect("receiver"))
    });
    assert!(sent > 0);
    assert_eq!(
        restart.get(&IpAddr::V4(LISTED)).map_or(0, BTreeSet::len),
        0,
        "a listed packet got through during the restart"
    );
    assert_eq!(
        restart.get(&IpAddr::V4(B_ADDR)).map_or(0, BTreeSet::len),
        sent as usize,
        "unlisted packets lost during the restart"
    );
    let s = env.status();
    assert_eq!(s["daemon"]["running"], true);
    assert_eq!(
        u(&s["program"]["id"]),
        prog,
        "the restart adopted the program"
    );
    assert_eq!(u(&s["interfaces"][0]["link_id"]), link, "and the link");
    assert!(
        env.log().contains("adopted the pinned program"),
        "{}",
        env.log()
    );
    // Counters continued: 20 before plus every listed packet of the restart.
    assert_eq!(
        u(&env.category("whatsapp")["dropped"]["packets"]),
        20 + u64::from(sent)
    );
}

#[test]
fn reload_with_a_broken_list_keeps_the_old_rules() {
    skip_unless_root!("reload_with_a_broken_list_keeps_the_old_rules");
    let (env, rx) = Env::dropping_whatsapp();
    let generation = u(&env.status()["generation"]);
    env.write_list("whatsapp", "# test list\n203.0.113.0/24\n203.0.113.1/24\n");
    let r = env.ff(&["reload"]);
    assert_eq!(r.code, 2, "stdout: {} stderr: {}", r.stdout, r.stderr);
    let file = env.lists().join("whatsapp.txt");
    assert!(
        r.stderr.contains(&format!("{}:3: ", file.display()))
            && r.stderr.contains("203.0.113.1/24"),
        "{}",
        r.stderr
    );
    assert!(
        env.log().contains(&format!("{}:3: ", file.display())),
        "{}",
        env.log()
    );
    let s = env.status();
    assert_eq!(u(&s["generation"]), generation, "no flip");
    assert_eq!(s["last_reload"]["ok"], false);
    assert!(
        s["last_reload"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("whatsapp.txt:3:")
    );
    // The old rules: 198.51.100.0/24 dropped, 203.0.113.0/24 not.
    assert_eq!(env.deliver(&rx, LISTED, 10), 0);
    assert_eq!(env.deliver(&rx, OTHER, 10), 10);

    // The fixed list goes in.
    env.write_list("whatsapp", "203.0.113.0/24\n");
    let r = env.ff(&["reload"]).ok("reload");
    assert!(r.stdout.contains("reloaded by the daemon"), "{}", r.stdout);
    assert_eq!(env.status()["last_reload"]["ok"], true);
    assert_eq!(env.deliver(&rx, LISTED, 10), 10);
    assert_eq!(env.deliver(&rx, OTHER, 10), 0);
}

#[test]
fn reload_under_traffic_loses_no_packet_of_an_unlisted_flow() {
    skip_unless_root!("reload_under_traffic_loses_no_packet_of_an_unlisted_flow");
    let (env, rx) = Env::dropping_whatsapp();
    rx.drain();
    let other = env.sender(B_ADDR);
    let listed = env.sender(LISTED);
    let (got, reloads) = std::thread::scope(|s| {
        let r = s.spawn(|| rx.collect(Duration::from_millis(800)));
        let t = s.spawn(|| {
            for seq in 0..PACKETS {
                send(&other, seq);
                send(&listed, seq);
                // About 2.5 s of traffic: room for several reloads.
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // Reload repeatedly while the packets flow, changing the lists each
        // time (198.51.100.0/24 stays listed, another range comes and goes).
        let mut reloads = 0;
        while !t.is_finished() {
            let extra = if reloads % 2 == 0 {
                "2001:db8::/32\n192.0.2.128/25\n"
            } else {
                ""
            };
            env.write_list("whatsapp", &format!("198.51.100.0/24\n{extra}"));
            env.ff(&["reload"]).ok("reload under traffic");
            reloads += 1;
        }
        t.join().expect("sender");
        (r.join().expect("receiver"), reloads)
    });
    assert!(
        reloads >= 3,
        "only {reloads} reloads happened during the traffic"
    );
    let other_got = got.get(&IpAddr::V4(B_ADDR)).cloned().unwrap_or_default();
    let missing: Vec<u32> = (0..PACKETS).filter(|s| !other_got.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {PACKETS} packets of the unlisted flow lost across {reloads} reloads: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(
        got.get(&IpAddr::V4(LISTED)).map_or(0, BTreeSet::len),
        0,
        "a listed packet passed during a reload"
    );
    assert_eq!(
        u(&env.category("whatsapp")["dropped"]["packets"]),
        u64::from(PACKETS)
    );
}

#[test]
fn cli_add_del_load_check_and_policy_against_a_running_daemon() {
    skip_unless_root!("cli_add_del_load_check_and_policy_against_a_running_daemon");
    let (env, rx) = Env::dropping_whatsapp();
    assert_eq!(env.deliver(&rx, OTHER, 5), 5);

    // add + policy: 203.0.113.0/24 becomes telegram, dropped.
    let r = env
        .ff(&["list", "add", "telegram", "203.0.113.0/24"])
        .ok("list add");
    assert!(r.stdout.contains("telegram: added 1"), "{}", r.stdout);
    env.ff(&["policy", "set", "telegram", "drop,scope=udp"])
        .ok("policy set");
    assert_eq!(env.deliver(&rx, OTHER, 10), 0, "telegram range dropped");
    let s = env.status();
    let tg = &s["categories"][1];
    assert_eq!(tg["name"], "telegram");
    assert_eq!(tg["policy"], "drop,scope=udp");
    assert_eq!(tg["policy_source"], "cli");
    assert_eq!(tg["ipv4_prefixes"], 1);
    assert_eq!(env.category("telegram")["dropped"]["packets"], 10);

    // check explains from the lists and reads the live tables.
    let c = env.ff(&["check", "203.0.113.10:3478"]).ok("check").stdout;
    assert!(c.contains("telegram (203.0.113.0/24)"), "{c}");
    assert!(c.contains("in force: telegram"), "{c}");
    assert!(c.contains("port 3478"), "{c}");
    let c = env.ff(&["check", "192.0.2.77"]).ok("check").stdout;
    assert!(c.contains("in no list"), "{c}");
    assert!(c.contains("in force: no category"), "{c}");

    // Bad input: exit 2, nothing changes.
    let r = env.ff(&["list", "add", "telegram", "203.0.113.1/24"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bits set beyond /24"), "{}", r.stderr);
    let r = env.ff(&["policy", "set", "zoom", "drop"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no category `zoom`"), "{}", r.stderr);
    let r = env.ff(&["policy", "set", "telegram", "block"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let bad = env.dir.join("bad.txt");
    std::fs::write(&bad, "198.51.100.0/24\nnot-a-prefix\n").expect("write");
    let r = env.ff(&["list", "load", "whatsapp", &bad.display().to_string()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{}:2:", bad.display())),
        "{}",
        r.stderr
    );
    assert_eq!(env.deliver(&rx, OTHER, 5), 0, "still dropped");

    // del: the range passes again.
    env.ff(&["list", "del", "telegram", "203.0.113.0/24"])
        .ok("list del");
    assert_eq!(env.deliver(&rx, OTHER, 10), 10);
    let r = env.ff(&["list", "del", "telegram", "203.0.113.0/24"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // load: whatsapp becomes 203.0.113.0/24 only.
    let good = env.dir.join("good.txt");
    std::fs::write(&good, "# replacement\n203.0.113.0/24\n").expect("write");
    env.ff(&["list", "load", "whatsapp", &good.display().to_string()])
        .ok("list load");
    assert_eq!(
        env.deliver(&rx, LISTED, 10),
        10,
        "old whatsapp range passes"
    );
    assert_eq!(env.deliver(&rx, OTHER, 10), 0, "new whatsapp range dropped");
    let shown = env.ff(&["list", "show", "whatsapp"]).ok("list show").stdout;
    assert!(shown.starts_with("203.0.113.0/24\n"), "{shown}");

    // policy monitor: nothing dropped, counted as monitored.
    env.ff(&["policy", "set", "whatsapp", "monitor,scope=udp"])
        .ok("policy set monitor");
    let monitored = u(&env.category("whatsapp")["monitored"]["packets"]);
    assert_eq!(env.deliver(&rx, OTHER, 10), 10, "monitor drops nothing");
    assert_eq!(
        u(&env.category("whatsapp")["monitored"]["packets"]),
        monitored + 10
    );
    // reset: back to the flag's policy.
    let r = env.ff(&["policy", "reset", "whatsapp"]).ok("policy reset");
    assert!(r.stdout.contains("drop,scope=udp (flag)"), "{}", r.stdout);
    assert_eq!(env.deliver(&rx, OTHER, 10), 0);

    // The daemon's next reload keeps the CLI's changes (they are in the
    // lists directory and the state file).
    env.ff(&["reload"]).ok("reload");
    assert_eq!(env.deliver(&rx, OTHER, 5), 0);
    assert_eq!(env.deliver(&rx, LISTED, 5), 5);
}

#[test]
fn metrics_are_prometheus_text() {
    skip_unless_root!("metrics_are_prometheus_text");
    let mut env = Env::new();
    env.metrics = Some(free_port());
    env.start(&["--policy", "whatsapp=drop,scope=udp"]);
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 7), 0);
    let addr = env.metrics.expect("metrics address");
    let resp = http_get(addr, "/metrics");
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    let dropped = [
        ("interface", env.va.as_str()),
        ("category", "whatsapp"),
        ("verdict", "dropped"),
    ];
    assert!((value("flowfilter_category_packets_total", &dropped) - 7.0).abs() < f64::EPSILON);
    assert!(
        value("flowfilter_flows_evicted", &[]) < 0.5,
        "nothing evicted"
    );
    assert!(value("flowfilter_category_bytes_total", &dropped) >= 7.0 * 64.0);
    assert!(value("flowfilter_frames_total", &[("counter", "udp")]) >= 7.0);
    assert!(value("flowfilter_flows", &[]) >= 1.0);
    assert!((value("flowfilter_flow_capacity", &[]) - f64::from(1u32 << 18)).abs() < 0.5);
    assert!(
        (value(
            "flowfilter_list_prefixes",
            &[("category", "whatsapp"), ("family", "ipv4")]
        ) - 1.0)
            .abs()
            < f64::EPSILON
    );
    assert!((value("flowfilter_last_reload_success", &[]) - 1.0).abs() < f64::EPSILON);
    assert!(value("flowfilter_last_reload_timestamp_seconds", &[]) > 1.6e9);
    assert!(value("flowfilter_reloads_total", &[("result", "ok")]) >= 1.0);
    let generation = value("flowfilter_generation", &[]);
    assert!(generation.abs() < 0.5 || (generation - 1.0).abs() < 0.5);
    assert!(
        (value(
            "flowfilter_interface_attached",
            &[("interface", env.va.as_str())]
        ) - 1.0)
            .abs()
            < f64::EPSILON
    );
    // A rejected reload shows.
    env.write_list("telegram", "bad\n");
    assert_eq!(env.ff(&["reload"]).code, 2);
    let body = http_get(addr, "/metrics");
    assert!(body.contains("flowfilter_last_reload_success 0"), "{body}");
    assert!(
        body.contains("flowfilter_reloads_total{result=\"error\"} 1"),
        "{body}"
    );
    assert!(http_get(addr, "/nope").starts_with("HTTP/1.1 404"));
}

/// Category counters per receiving interface: the daemon gives each
/// attached interface a counter slot (kept across restarts); `stats --json`,
/// the `stats` table and `/metrics` split the category counters by it.
#[test]
fn counters_per_interface_in_stats_and_metrics() {
    skip_unless_root!("counters_per_interface_in_stats_and_metrics");
    let mut env = Env::new();
    env.write_list("whatsapp", "# test list\n198.51.100.0/24\n127.0.0.2/32\n");
    env.metrics = Some(free_port());
    let args = ["--iface", "lo", "--policy", "whatsapp=drop,scope=udp"];
    env.start(&args);
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 7), 0, "dropped on {}", env.va);
    // Three over the namespace's loopback, to a listed address.
    let ns_a = env.ns_a.name().to_owned();
    let on_lo = |n: u32| {
        in_ns(&ns_a, || {
            let rx = UdpSocket::bind(("127.0.0.2", PORT)).expect("bind on lo");
            rx.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            let tx = UdpSocket::bind(("127.0.0.1", 0)).expect("bind sender");
            tx.connect(("127.0.0.2", PORT)).expect("connect");
            for seq in 0..n {
                send(&tx, seq);
            }
            let mut buf = [0u8; 128];
            let mut got = 0;
            while rx.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        })
    };
    assert_eq!(on_lo(3), 0, "dropped on lo");

    let per_iface = |s: &Value, iface: &str| -> u64 {
        let i = s["interfaces"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == iface))
            .unwrap_or_else(|| panic!("no interface {iface} in {s:#}"));
        assert!(i["ifindex"].is_u64(), "{i}");
        i["categories"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "whatsapp"))
            .map_or(0, |c| u(&c["dropped"]["packets"]))
    };
    let s = env.stats();
    assert_eq!(per_iface(&s, &env.va), 7, "{s:#}");
    assert_eq!(per_iface(&s, "lo"), 3, "{s:#}");
    assert_eq!(u(&env.category("whatsapp")["dropped"]["packets"]), 10);
    assert!(
        !s["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .any(|i| i["name"] == "other"),
        "every packet came in on an interface with a slot: {s:#}"
    );
    let table = env.ff(&["stats"]).ok("stats").stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(env.va.as_str()) && l.contains("whatsapp")),
        "{table}"
    );

    let addr = env.metrics.expect("metrics address");
    let metric = |iface: &str| -> f64 {
        let body = http_get(addr, "/metrics");
        let (_, body) = body.split_once("\r\n\r\n").expect("HTTP response");
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("Prometheus text");
        let s = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "flowfilter_category_packets_total"
                    && s.labels.get("interface") == Some(iface)
                    && s.labels.get("category") == Some("whatsapp")
                    && s.labels.get("verdict") == Some("dropped")
            })
            .unwrap_or_else(|| panic!("no {iface} sample in\n{body}"));
        match s.value {
            prometheus_parse::Value::Counter(v) => v,
            ref other => panic!("{other:?}"),
        }
    };
    assert!((metric(&env.va) - 7.0).abs() < f64::EPSILON);
    assert!((metric("lo") - 3.0).abs() < f64::EPSILON);

    // A crash and restart keep each interface's slot and its counts.
    env.stop(libc::SIGKILL);
    env.start(&args);
    assert_eq!(on_lo(2), 0);
    let s = env.stats();
    assert_eq!(per_iface(&s, &env.va), 7, "{s:#}");
    assert_eq!(per_iface(&s, "lo"), 5, "{s:#}");
}

/// A category keeps its id (and so its counters, policy and learned
/// endpoints) when list files come and go: `meet` sorts before `zoom` but
/// does not take its id, and a category added after one was removed does
/// not inherit the removed one's id or counts.
#[test]
fn category_ids_and_counters_survive_list_changes() {
    skip_unless_root!("category_ids_and_counters_survive_list_changes");
    let mut env = Env::new();
    env.write_list("zoom", "203.0.113.0/24\n");
    env.start(&["--policy", "zoom=drop,scope=udp"]);
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, OTHER, 4), 0, "zoom dropped");
    let id_of = |env: &Env, name: &str| -> u64 {
        let s = env.status();
        s["categories"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .map_or_else(|| panic!("no {name} in {s:#}"), |c| u(&c["id"]))
    };
    let zoom = id_of(&env, "zoom");
    let meet = env.dir.join("meet.txt");
    std::fs::write(&meet, "100.64.0.0/24\n").expect("write");
    env.ff(&["list", "load", "meet", &meet.display().to_string()])
        .ok("list load meet");
    assert_eq!(id_of(&env, "zoom"), zoom, "zoom keeps its id");
    assert_ne!(id_of(&env, "meet"), zoom);
    assert_eq!(u(&env.category("zoom")["dropped"]["packets"]), 4);
    assert_eq!(u(&env.category("meet")["seen"]["packets"]), 0);
    assert_eq!(env.deliver(&rx, OTHER, 3), 0, "zoom still dropped");
    assert_eq!(u(&env.category("zoom")["dropped"]["packets"]), 7);

    // meet goes, teams comes: teams gets a fresh id and starts from zero
    // (zoom stays: the --policy flag names it, and a reload that lost it
    // would be rejected).
    let meet_id = id_of(&env, "meet");
    let meet_range = Ipv4Addr::new(100, 64, 0, 10);
    assert!(
        env.ff(&["check", &meet_range.to_string()])
            .ok("check")
            .stdout
            .contains("meet")
    );
    env.ff(&["list", "del", "meet", "100.64.0.0/24"])
        .ok("list del");
    std::fs::remove_file(env.lists().join("meet.txt")).expect("remove meet");
    env.write_list("teams", "100.64.1.0/24\n");
    env.ff(&["reload"]).ok("reload");
    let teams = id_of(&env, "teams");
    assert_ne!(
        teams, meet_id,
        "a removed category's id is not reused while others are free"
    );
    assert_ne!(teams, zoom);
    assert_eq!(id_of(&env, "zoom"), zoom);
    assert_eq!(u(&env.category("teams")["seen"]["packets"]), 0);
    assert_eq!(u(&env.category("zoom")["dropped"]["packets"]), 7);
}

#[test]
fn pins_of_another_build_are_refused_then_replaced_and_detach_removes_all() {
    skip_unless_root!("pins_of_another_build_are_refused_then_replaced_and_detach_removes_all");
    let (mut env, rx) = Env::dropping_whatsapp();
    let before = env.status();
    let link = u(&before["interfaces"][0]["link_id"]);
    let prog = u(&before["program"]["id"]);
    assert!(env.stop(libc::SIGTERM).success(), "{}", env.log());
    assert!(
        env.log().contains("filtering stays in force"),
        "{}",
        env.log()
    );
    assert_eq!(
        env.deliver(&rx, LISTED, 5),
        0,
        "still filtering after SIGTERM"
    );

    // Pins of another build: a pinned map whose kind and size differ from
    // this build's (FRAGS pinned as a hash of half its capacity). The start
    // refuses them.
    {
        use aya::maps::{HashMap as BpfHashMap, IterableMap, MapData};
        let path = env.pin_dir.join("maps").join("FRAGS");
        std::fs::remove_file(&path).expect("unpinning FRAGS");
        let other: BpfHashMap<MapData, u32, [u8; 128]> =
            BpfHashMap::create(filter_common::FRAG_CAPACITY / 2, 0).expect("a map of another size");
        IterableMap::map(&other)
            .pin(&path)
            .expect("pinning it as FRAGS");
    }
    let config = env.dir.join("flowfilter.toml");
    std::fs::write(
        &config,
        "# test\nmode = \"auto\"\n[policy]\nwhatsapp = \"drop,scope=udp\"\n",
    )
    .expect("config");
    let config = config.display().to_string();
    let out = Command::new(binary())
        .arg("--pin-dir")
        .arg(&env.pin_dir)
        .args([
            "run",
            "--config",
            &config,
            "--netns",
            env.ns_a.name(),
            "--iface",
            &env.va,
            "--lists",
        ])
        .arg(env.lists())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "map FRAGS: type: pinned 1, this build 2; capacity: pinned {}, this build {}",
            filter_common::FRAG_CAPACITY / 2,
            filter_common::FRAG_CAPACITY
        )) && stderr.contains("--replace"),
        "{stderr}"
    );
    assert_eq!(u(&env.status()["program"]["id"]), prog, "nothing touched");

    // A bad configuration field: exit 2, naming file, line and field.
    let bad = env.dir.join("bad.toml");
    std::fs::write(&bad, "interfaces = [\"x\"]\nmode = \"turbo\"\n").expect("config");
    let out = Command::new(binary())
        .arg("--pin-dir")
        .arg(&env.pin_dir)
        .args(["run", "--config", &bad.display().to_string()])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: mode: `turbo`", bad.display())),
        "{stderr}"
    );

    // --replace: new program on the same link, the table maps recreated.
    env.start(&["--config", &config, "--replace"]);
    let s = env.status();
    assert_ne!(u(&s["program"]["id"]), prog, "a new program");
    assert_eq!(u(&s["interfaces"][0]["link_id"]), link, "on the same link");
    assert_eq!(s["interfaces"][0]["program_id"], s["program"]["id"]);
    assert!(env.log().contains("FRAGS"), "{}", env.log());
    assert_eq!(env.deliver(&rx, LISTED, 5), 0);
    assert_eq!(env.deliver(&rx, B_ADDR, 5), 5);

    // detach: the daemon stops, the filter goes.
    let r = env.ff(&["detach"]).ok("detach");
    assert!(r.stdout.contains("stopped the daemon"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("detached from {}", env.va)),
        "{}",
        r.stdout
    );
    if let Some(mut c) = env.daemon.take() {
        let status = c.wait().expect("daemon exit");
        assert!(status.success(), "{status}");
    }
    assert!(!env.pin_dir.exists());
    assert_eq!(env.deliver(&rx, LISTED, 5), 5, "no filter after detach");
    let r = env.ff(&["status"]);
    assert_eq!(r.code, 5, "nothing pinned");
    assert!(
        r.stderr.contains("is `flowfilter run` started"),
        "{}",
        r.stderr
    );
    assert_eq!(env.ff(&["detach"]).code, 1);
}

#[test]
fn sigterm_with_detach_on_exit_removes_the_filter() {
    skip_unless_root!("sigterm_with_detach_on_exit_removes_the_filter");
    let mut env = Env::started(&["--policy", "whatsapp=drop,scope=udp", "--detach-on-exit"]);
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 5), 0);
    let status = env.stop(libc::SIGTERM);
    assert!(status.success(), "{status}\n{}", env.log());
    assert!(env.log().contains("--detach-on-exit"), "{}", env.log());
    assert!(!env.pin_dir.exists(), "pins left behind");
    assert!(
        !filter_user::control::state::state_path(&env.pin_dir).exists(),
        "state file left behind"
    );
    assert_eq!(env.deliver(&rx, LISTED, 5), 5, "the filter is gone");
}

#[test]
fn without_privileges_the_cli_says_what_it_needs() {
    skip_unless_root!("without_privileges_the_cli_says_what_it_needs");
    let capture = flowfilter_tests::corpus_dir().map(|d| d.join("dns.pcap"));
    let mut runs: Vec<Vec<String>> = vec![vec!["status".into()]];
    if let Some(c) = capture {
        runs.push(vec!["replay".into(), c.display().to_string()]);
    }
    for args in runs {
        // As nobody, with no capabilities: the kernel refuses, the CLI explains.
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(binary())
            .args(&args)
            .current_dir("/")
            .output()
            .expect("run setpriv (util-linux)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("hint: flowfilter is not running as root")
                && stderr.contains("CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"),
            "{args:?}: no privilege hint in: {stderr}"
        );
    }
}

/// Permission bits of `path` (not following a symbolic link).
fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Every entry under `dir` (itself included), with whether it is a
/// directory and its permission bits.
fn modes_under(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
                todo.push(e.expect("directory entry").path());
            }
        }
        out.push((p, meta.is_dir(), meta.permissions().mode() & 0o7777));
    }
    out.sort();
    out
}

/// The pin directory holds the program, the maps and the link, every
/// directory 0700 and every pin 0600; the state file is 0600.
fn assert_owner_only(env: &Env) {
    let layout = PinLayout::new(&env.pin_dir);
    let modes = modes_under(&env.pin_dir);
    let names: Vec<&Path> = modes.iter().map(|(p, ..)| p.as_path()).collect();
    for p in [
        layout.prog(),
        layout.map("STATE"),
        layout.map("FLOWS"),
        layout.link(&env.va),
        layout.maps_dir(),
        layout.links_dir(),
    ] {
        assert!(
            names.contains(&p.as_path()),
            "{} missing in {names:?}",
            p.display()
        );
    }
    let loose: Vec<String> = modes
        .iter()
        .filter(|(_, dir, mode)| *mode != if *dir { 0o700 } else { 0o600 })
        .map(|(p, dir, mode)| {
            format!(
                "{} ({}) {mode:04o}",
                p.display(),
                if *dir { "directory" } else { "pin" }
            )
        })
        .collect();
    assert!(
        loose.is_empty(),
        "not owner-only (directories 0700, pins 0600): {loose:#?}"
    );
    let state = filter_user::control::state::state_path(&env.pin_dir);
    assert_eq!(mode_of(&state), 0o600, "{}", state.display());
}

#[test]
fn pins_and_state_file_are_owner_only_and_a_restart_tightens_them() {
    skip_unless_root!("pins_and_state_file_are_owner_only_and_a_restart_tightens_them");
    let mut env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
    assert_owner_only(&env);
    // A CLI change (it rewrites the state file) keeps it so.
    env.ff(&["list", "add", "telegram", "203.0.113.0/24"])
        .ok("list add");
    assert_owner_only(&env);

    // Looser modes, as an older version (or a hand) left them: the next
    // start adopts the pins and tightens them.
    assert!(env.stop(libc::SIGTERM).success(), "{}", env.log());
    let layout = PinLayout::new(&env.pin_dir);
    let map = layout.map("POLICY");
    chmod(&map, 0o644);
    chmod(&layout.link(&env.va), 0o640);
    chmod(&layout.maps_dir(), 0o755);
    chmod(&env.pin_dir, 0o755);
    let state = filter_user::control::state::state_path(&env.pin_dir);
    chmod(&state, 0o644);
    assert_eq!(mode_of(&map), 0o644);
    env.start(&["--policy", "whatsapp=drop,scope=udp"]);
    assert!(
        env.log().contains("adopted the pinned program"),
        "{}",
        env.log()
    );
    assert_owner_only(&env);
    assert!(
        env.log()
            .contains(&format!("{}: mode 0644 changed to 0600", map.display())),
        "no log line for {}:\n{}",
        map.display(),
        env.log()
    );
    // Still filtering after all that.
    let rx = env.receiver();
    assert_eq!(env.deliver(&rx, LISTED, 5), 0);
    assert_eq!(env.deliver(&rx, B_ADDR, 5), 5);
}

/// Which whatsapp list the live tables hold, the old or the new: every
/// probe must agree, or the tables are a mix.
fn live_list(env: &Env, old_only: &str, new_only: &[&str]) -> &'static str {
    let old = env.in_force(old_only) == "whatsapp";
    let new: Vec<bool> = new_only
        .iter()
        .map(|ip| env.in_force(ip) == "whatsapp")
        .collect();
    match (old, new.iter().all(|&n| n), new.iter().any(|&n| n)) {
        (true, _, false) => "old",
        (false, true, _) => "new",
        _ => panic!(
            "the live tables are neither the old list nor the new: {old_only} listed {old}, {new_only:?} listed {new:?}"
        ),
    }
}

/// IPv6 prefixes of the new list in the killed `list load` test: enough
/// that installing it takes a while (each one is a map update).
const BIG: u32 = 40_000;

#[test]
fn a_killed_list_load_leaves_the_old_or_the_new_list_never_a_mix() {
    skip_unless_root!("a_killed_list_load_leaves_the_old_or_the_new_list_never_a_mix");
    let env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
    let old_text = "# test list\n198.51.100.0/24\n";
    assert_eq!(
        std::fs::read_to_string(env.lists().join("whatsapp.txt")).expect("list"),
        old_text
    );
    let mut new_text = String::from("# replacement\n203.0.113.0/24\n");
    for i in 0..BIG {
        let _ = writeln!(new_text, "2001:db8:{i:x}::/48");
    }
    let old_file = env.dir.join("old.txt");
    let new_file = env.dir.join("new.txt");
    std::fs::write(&old_file, old_text).expect("write");
    std::fs::write(&new_file, &new_text).expect("write");
    let old_only = "198.51.100.10";
    let last = format!("2001:db8:{:x}::1", BIG - 1);
    let new_only = ["203.0.113.10", "2001:db8::1", last.as_str()];
    let list_file = env.lists().join("whatsapp.txt");
    let staged = env.lists().join(".whatsapp.txt.staged");
    let lists_entries = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(env.lists())
            .expect("lists dir")
            .map(|e| e.expect("entry").path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(live_list(&env, old_only, &new_only), "old");

    let mut delay = Duration::ZERO;
    // (delay, tables, list file, staged file left) of every run.
    let mut outcomes: Vec<(Duration, &str, &str, bool)> = Vec::new();
    loop {
        assert!(
            delay < Duration::from_mins(2),
            "`list load` never completed: {outcomes:?}"
        );
        let mut child = Command::new(binary())
            .arg("--pin-dir")
            .arg(&env.pin_dir)
            .args(["list", "load", "whatsapp"])
            .arg(&new_file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn list load");
        std::thread::sleep(delay);
        if child.try_wait().expect("try_wait").is_none() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid");
            // SAFETY: plain kill(2) of our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let out = child.wait_with_output().expect("wait for list load");
        if out.status.success() {
            // It completed: the new list is in force, in the file and the state.
            assert_eq!(live_list(&env, old_only, &new_only), "new");
            assert_eq!(std::fs::read_to_string(&list_file).expect("list"), new_text);
            assert_eq!(
                lists_entries(),
                std::slice::from_ref(&list_file),
                "leftovers"
            );
            let s = env.status();
            let wa = &s["categories"][0];
            assert_eq!(wa["name"], "whatsapp");
            assert_eq!(wa["ipv4_prefixes"], 1, "{wa}");
            assert_eq!(u(&wa["ipv6_prefixes"]), u64::from(BIG), "{wa}");
            assert_eq!(s["last_reload"]["ok"], true);
            assert_eq!(s["last_reload"]["by"], "list load whatsapp");
            outcomes.push((delay, "completed", "new", false));
            break;
        }
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGKILL),
            "list load failed by itself after {delay:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Killed. The tables are the old list or the new, never a mix.
        let live = live_list(&env, old_only, &new_only);
        env.status();
        assert!(
            filter_user::control::state::StateFile::read(&env.pin_dir)
                .expect("the state file parses")
                .is_some()
        );
        // The list file is whole, and never ahead of the tables.
        let file = std::fs::read_to_string(&list_file).expect("list");
        let on_disk = if file == old_text {
            "old"
        } else {
            assert_eq!(file, new_text, "a partial list file after {delay:?}");
            "new"
        };
        assert!(
            !(on_disk == "new" && live == "old"),
            "killed after {delay:?}: the list file holds the new list but the old one is in force"
        );
        for p in lists_entries() {
            assert!(
                p == list_file || p == staged,
                "killed after {delay:?}: {} left in the lists directory",
                p.display()
            );
        }
        outcomes.push((delay, live, on_disk, staged.exists()));
        // The lock is free: a reload through the daemon installs the files.
        env.ff(&["reload"]).ok("reload after a killed list load");
        assert_eq!(live_list(&env, old_only, &new_only), on_disk);
        if on_disk == "new" {
            // Back to the old list for the next round (a whole CLI change,
            // which also removes what the killed one left).
            env.ff(&["list", "load", "whatsapp", &old_file.display().to_string()])
                .ok("list load of the old list");
            assert_eq!(live_list(&env, old_only, &new_only), "old");
        }
        delay = if delay < Duration::from_millis(5) {
            Duration::from_millis(5)
        } else {
            delay + (delay / 4).max(Duration::from_millis(5))
        };
    }
    eprintln!("list load killed at (delay, tables, list file, staged file left): {outcomes:?}");
    assert!(outcomes.len() > 1, "not killed once: {outcomes:?}");
    // The kill that came before the flip left the old list in force.
    assert_eq!(outcomes[0].1, "old", "{outcomes:?}");
    // What a killed run left is gone after the completed one.
    assert!(!staged.exists());
}

/// The pinned `STATE` (seed, rotation) of `env`'s filter.
fn pinned_state(env: &Env) -> filter_common::State {
    filter_user::dataplane::loader::Filter::open_pinned(&PinLayout::new(&env.pin_dir), false)
        .expect("open the pins")
        .state()
        .expect("STATE")
}

/// Issue 16: `run --inside`, `--subscribers`, `--seed` and the
/// `[subscribers]` section are applied (status shows the rule and the
/// rotation; the seed is in the pinned state) and follow a reload; bad ones
/// are refused with what was wrong and exit code 2, before anything is
/// pinned, and a rejected reload keeps the rule in force.
#[test]
fn subscribers_inside_and_seed_are_applied_shown_and_bad_ones_refused() {
    skip_unless_root!("subscribers_inside_and_seed_are_applied_shown_and_bad_ones_refused");
    let mut env = Env::new();
    let lists = env.lists().display().to_string();
    let run = |env: &Env, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--netns",
            env.ns_a.name(),
            "--iface",
            &env.va,
            "--lists",
            &lists,
        ];
        args.extend_from_slice(extra);
        env.ff(&args)
    };
    let refused = |env: &Env, extra: &[&str], want: &str| {
        let r = run(env, extra);
        assert_eq!(
            r.code, 2,
            "{extra:?}: stdout {} stderr {}",
            r.stdout, r.stderr
        );
        assert!(r.stderr.contains(want), "{extra:?}: {}", r.stderr);
        assert!(
            !env.pin_dir.join("prog").exists(),
            "{extra:?}: nothing pinned"
        );
    };
    refused(
        &env,
        &["--inside", "nope0"],
        "inside interface `nope0` is not attached",
    );
    refused(
        &env,
        &["--subscribers", "10.0.0.1/8"],
        "`10.0.0.1/8` has bits set beyond /8 (use 10.0.0.0/8)",
    );
    refused(
        &env,
        &["--inside", &env.va, "--subscribers", "10.0.0.0/8"],
        "cannot be used with",
    );
    refused(&env, &["--seed", "x"], "invalid value 'x' for '--seed <N>'");
    let config = env.dir.join("flowfilter.toml");
    std::fs::write(&config, "[subscribers]\nv4_len = 40\n").expect("config");
    let cfg = config.display().to_string();
    refused(
        &env,
        &["--config", &cfg],
        &format!("{cfg}:2: subscribers.v4_len: 40 is not an IPv4 prefix length"),
    );

    // By interface, with a seed.
    env.start(&["--inside", &env.va.clone(), "--seed", "42"]);
    let s = env.status()["subscribers"].clone();
    assert_eq!(s["rule"], "interface", "{s}");
    assert_eq!(s["interfaces"], serde_json::json!([env.va]), "{s}");
    assert_eq!((u(&s["v4_len"]), u(&s["v6_len"])), (32, 64), "{s}");
    assert_eq!(u(&s["rotation_secs"]), 3600, "{s}");
    let st = pinned_state(&env);
    assert_eq!((st.seed, st.epoch_secs), (42, 3600));
    let text = env.ff(&["status"]).ok("status").stdout;
    assert!(
        text.contains(&format!(
            "subscribers  behind {}; one per IPv4 /32, IPv6 /64",
            env.va
        )) && text.contains("an idle subscriber's fate is drawn anew every 3600 s"),
        "{text}"
    );
    assert!(env.stop(libc::SIGTERM).success(), "{}", env.log());

    // From the configuration file, then changed by a reload.
    std::fs::write(
        &config,
        "[subscribers]\nprefixes = [\"192.0.2.0/24\", \"2001:db8::/32\"]\nv6_len = 56\nseed = 7\nrotation_secs = 600\n",
    )
    .expect("config");
    env.start(&["--config", &cfg]);
    let s = env.status()["subscribers"].clone();
    assert_eq!(
        (s["rule"].as_str(), u(&s["prefixes"]), u(&s["v6_len"])),
        (Some("prefixes"), 2, 56),
        "{s}"
    );
    assert!(s["interfaces"].as_array().unwrap().is_empty(), "{s}");
    let st = pinned_state(&env);
    assert_eq!((st.seed, st.epoch_secs), (7, 600));
    assert!(
        env.ff(&["status"]).ok("status").stdout.contains(
            "subscribers  2 prefixes: 192.0.2.0/24, 2001:db8::/32; one per IPv4 /32, IPv6 /56"
        ),
        "{}",
        env.ff(&["status"]).stdout
    );
    std::fs::write(
        &config,
        format!("[subscribers]\ninside = [\"{}\"]\n", env.va),
    )
    .expect("config");
    env.ff(&["reload"]).ok("reload");
    let s = env.status()["subscribers"].clone();
    assert_eq!(s["rule"], "interface", "{s}");
    assert_eq!(s["interfaces"], serde_json::json!([env.va]), "{s}");
    // A bad section is refused by the reload; the rule stays.
    std::fs::write(&config, "[subscribers]\nprefixes = []\n").expect("config");
    let r = env.ff(&["reload"]);
    assert_eq!(r.code, 2, "stdout {} stderr {}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{cfg}:2: subscribers.prefixes: no prefix")),
        "{}",
        r.stderr
    );
    assert_eq!(env.status()["subscribers"]["rule"], "interface");
    // A CLI change of a list keeps the daemon's subscriber rule (the file,
    // fixed, says prefixes: only a reload applies it).
    std::fs::write(&config, "[subscribers]\nprefixes = [\"192.0.2.0/24\"]\n").expect("config");
    env.ff(&["list", "add", "telegram", "203.0.113.0/24"])
        .ok("list add");
    assert_eq!(env.status()["subscribers"]["rule"], "interface");
    assert!(env.stop(libc::SIGTERM).success(), "{}", env.log());

    // Flags replace the file's rule.
    std::fs::write(&config, "[subscribers]\nprefixes = [\"192.0.2.0/24\"]\n").expect("config");
    env.start(&[
        "--config",
        &cfg,
        "--subscribers",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "fd00::/8",
    ]);
    let s = env.status()["subscribers"].clone();
    assert_eq!(
        (s["rule"].as_str(), u(&s["prefixes"])),
        (Some("prefixes"), 3),
        "{s}"
    );
    assert_eq!(
        pinned_state(&env).seed,
        7,
        "the seed stays when none is given"
    );
}

/// Issue 16 end to end: the subscriber end of a flow is the one the
/// operator named. A flow from the listed relay (arriving on `va`) to A:
/// with `--inside va` its source (the relay's address) is the subscriber,
/// with `--subscribers 192.0.2.0/24` its destination A is; a seed where
/// the first is stopped and the second spared under `flows=50%` (in this
/// hour and the next, so a boundary cannot flip it) shows which rule the
/// program used.
#[test]
fn the_named_subscriber_side_decides_the_fate_end_to_end() {
    skip_unless_root!("the_named_subscriber_side_decides_the_fate_end_to_end");
    let seed = kit::seed_stopping(LISTED, A_ADDR);
    let seed_arg = seed.to_string();
    let policy = ["--policy", "whatsapp=flows=50%,scope=udp"];
    let mut env = Env::new();
    let va = env.va.clone();
    env.start(&[policy[0], policy[1], "--seed", &seed_arg, "--inside", &va]);
    let rx = env.receiver();
    assert_eq!(
        env.deliver(&rx, LISTED, 20),
        0,
        "--inside {va}: the relay's address is the subscriber, stopped\n{}",
        env.log()
    );
    assert!(env.stop(libc::SIGTERM).success(), "{}", env.log());
    env.start(&[
        policy[0],
        policy[1],
        "--seed",
        &seed_arg,
        "--subscribers",
        "192.0.2.0/24",
    ]);
    assert_eq!(
        env.deliver(&rx, LISTED, 20),
        20,
        "--subscribers 192.0.2.0/24: A is the subscriber, spared\n{}",
        env.log()
    );
}
