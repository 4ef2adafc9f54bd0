//! End to end through the veth harness: real sockets in `client` and `net`,
//! real forwarding in `gw`, flowfilter attached in native XDP on both of
//! gw's veths: loaded by the test through the library, or (the `daemon_*`
//! tests) by `flowfilter run --netns GW` with its own pins, driven through
//! the CLI like an operator would.
//!
//! * each messenger call scenario is blocked under `drop` (each receiving
//!   side gets at most [`HANDFUL`] packets of each flow), untouched under
//!   `monitor` (and counted as monitored);
//! * the generic WebRTC call to an unlisted address is untouched;
//! * TCP messaging, DNS, QUIC-like and game flows are delivered in full
//!   under every policy, although their servers sit inside the listed
//!   ranges;
//! * IPv6 variants of calls and non-call flows;
//! * the harness leaves nothing behind after a panic inside it, and
//!   `cleanup_stale` removes what a killed run left (with a daemon: the
//!   daemon, its pins and state file too);
//! * the daemon killed with -9 in the middle of a call: the pinned program
//!   keeps blocking it (and recognising the call's next leg);
//! * a list reload in the middle of traffic: a call to an address the
//!   reload adds is blocked from then on, a non-call flow to a range the
//!   reload removes keeps flowing in full;
//! * evasion (`ffgen run --evasion MODE`, the `evasion_*` tests, through
//!   the daemon): calls sent as IP fragments split after the UDP header
//!   (`frag8`), after 8 payload bytes (`tiny`), in reverse order
//!   (`reorder`) or overlapping a benign first fragment (`overlap`), among
//!   decoys (`decoys`) or fallen back to TCP (`tcp`) are blocked under
//!   `drop` and delivered under `monitor`, both families, with the filter's
//!   evasion counters moving; the non-call flows in the listed ranges
//!   (messaging, DNS with fragmented answers, QUIC, game) pass whole beside
//!   them.
//!
//! The daemon tests need the `flowfilter` binary (`cargo xtask test` builds
//! it; or `cargo build -p filter-user --bin flowfilter`, or set
//! `FLOWFILTER_BIN`).
//!
//! Needs root; skips with a printed reason otherwise.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::ExitStatusExt as _;

use filter_common::CatStats;
use flowfilter_tests::harness::evasion::Evasion;
use flowfilter_tests::harness::{
    self, DaemonFilter, FlowResult, Harness, HarnessOpts, Ns, cleanup_stale, list_namespaces, plan,
    table,
};
use flowfilter_tests::kit::{self, u};
use flowfilter_tests::{require_root, skip_unless_root};
use serde_json::Value;

/// Most packets a receiving side may get of a blocked flow.
const HANDFUL: u64 = 5;

fn opts() -> HarnessOpts {
    HarnessOpts {
        ffgen: Some(PathBuf::from(env!("CARGO_BIN_EXE_ffgen"))),
        interval: Duration::from_millis(5),
        packets: 30,
        linger: Duration::from_millis(300),
        ..HarnessOpts::default()
    }
}

/// A harness, or `None` (with the reason printed) where it cannot run.
fn harness(test: &str) -> Option<Harness> {
    if !require_root(test) {
        return None;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped {test}: `ip` (iproute2) is not installed");
        return None;
    }
    let _ = cleanup_stale();
    Some(Harness::up(opts()))
}

/// A harness with flowfilter attached, `spec` for whatsapp and telegram.
fn filtered(test: &str, spec: &str) -> Option<Harness> {
    let mut h = harness(test)?;
    h.attach_filter(&[("whatsapp", spec), ("telegram", spec)])
        .unwrap_or_else(|e| panic!("{test}: attaching flowfilter ({spec}): {e}"));
    Some(h)
}

fn cat_stats(h: &mut Harness, name: &str) -> CatStats {
    let id = h
        .lists()
        .expect("harness lists")
        .by_name(name)
        .expect("category")
        .id;
    let f = h.library_filter().expect("library filter attached");
    f.category_stats().expect("category stats")[id as usize]
}

/// The flows of the messaging scenario: TLS to both chat servers,
/// WhatsApp's Noise transport, MTProto's three transports.
const MESSAGING: [&str; 6] = [
    "whatsapp-chat",
    "telegram-chat",
    "whatsapp-noise",
    "telegram-abridged",
    "telegram-intermediate",
    "telegram-padded",
];

fn flows(results: &[FlowResult]) -> Vec<&str> {
    results.iter().map(|r| r.flow.as_str()).collect()
}

/// Run `scenario` and check it produced exactly the flows `expect`.
fn run(h: &Harness, scenario: &str, v6: bool, expect: &[&str]) -> Vec<FlowResult> {
    let r = if v6 {
        h.run_scenario_v6(scenario)
    } else {
        h.run_scenario(scenario)
    };
    let mut got = flows(&r);
    got.sort_unstable();
    let mut want = expect.to_vec();
    want.sort_unstable();
    assert_eq!(
        got,
        want,
        "{scenario}{}: flows\n{}",
        if v6 { " (IPv6)" } else { "" },
        table(&r)
    );
    r
}

fn assert_blocked(what: &str, results: &[FlowResult]) {
    let bad: Vec<String> = results
        .iter()
        .filter(|r| !r.blocked(HANDFUL))
        .map(FlowResult::summary)
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: expected every flow blocked (each side gets at most {HANDFUL} packets), but:\n  {}\n{}",
        bad.join("\n  "),
        table(results)
    );
}

/// Summaries of the flows not delivered in full both ways (UDP: answered 1:1).
fn not_delivered(results: &[FlowResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r.untouched() || (r.proto == "udp" && r.answered_pkts != r.delivered_pkts))
        .map(FlowResult::summary)
        .collect()
}

fn assert_untouched(what: &str, results: &[FlowResult]) {
    let bad = not_delivered(results);
    assert!(
        bad.is_empty(),
        "{what}: expected every flow delivered in full both ways, but:\n  {}\n{}",
        bad.join("\n  "),
        table(results)
    );
}

fn blocked_under_drop(test: &str, scenario: &str, v6: bool, category: &str, expect: &[&str]) {
    let Some(mut h) = filtered(test, "drop") else {
        return;
    };
    let r = run(&h, scenario, v6, expect);
    assert_blocked(test, &r);
    let s = cat_stats(&mut h, category);
    assert!(
        s.dropped_packets > 0,
        "{test}: the {category} counters show no drop ({s:?})"
    );
}

// --- the harness itself -------------------------------------------------------

#[test]
fn harness_topology_and_reachability() {
    let Some(h) = harness("harness_topology_and_reachability") else {
        return;
    };
    let names = h.names().clone();
    let present = list_namespaces().expect("ip netns list");
    for ns in names.all() {
        assert!(present.iter().any(|p| p == ns), "namespace {ns} missing");
    }
    // No default route anywhere, both families.
    for ns in [Ns::Client, Ns::Gw, Ns::Net] {
        for fam in ["-4", "-6"] {
            let out = h
                .exec(ns, &["ip", fam, "route", "show", "default"])
                .expect("ip route");
            assert!(out.trim().is_empty(), "{ns:?} has a default route: {out}");
        }
    }
    // Every global address is from the documentation prefixes.
    let allowed = ["192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:"];
    for ns in [Ns::Client, Ns::Gw, Ns::Net] {
        let out = h
            .exec(ns, &["ip", "-o", "addr", "show", "scope", "global"])
            .expect("ip addr");
        for line in out.lines() {
            let addr = line.split_whitespace().nth(3).unwrap_or("");
            assert!(
                allowed.iter().any(|p| addr.starts_with(p)),
                "{ns:?}: address {addr} is outside the documentation prefixes"
            );
        }
    }
    // gw forwards, the ends do not.
    for (ns, want) in [(Ns::Gw, "1"), (Ns::Client, "0"), (Ns::Net, "0")] {
        let v4 = h
            .exec(ns, &["cat", "/proc/sys/net/ipv4/ip_forward"])
            .expect("sysctl");
        let v6 = h
            .exec(ns, &["cat", "/proc/sys/net/ipv6/conf/all/forwarding"])
            .expect("sysctl");
        assert_eq!((v4.trim(), v6.trim()), (want, want), "{ns:?} forwarding");
    }
    // The lists map net's addresses to the two categories.
    let lists = h.lists().expect("harness lists");
    for (cat, role) in [("whatsapp", "wa-relay"), ("telegram", "tg-turn")] {
        let c = lists.by_name(cat).expect("category");
        let addr = plan::service(role).expect("role").addr(false).ip();
        assert!(
            c.list.cidrs().any(|p| p.contains(addr)),
            "{cat} does not list {addr}"
        );
    }
    // Without a filter every scenario crosses the gateway both ways, v4 and v6.
    for v6 in [false, true] {
        for sc in ["dns", "whatsapp"] {
            let r = if v6 {
                h.run_scenario_v6(sc)
            } else {
                h.run_scenario(sc)
            };
            assert_untouched(&format!("no filter, {sc}, v6={v6}"), &r);
        }
    }
    drop(h);
    let present = list_namespaces().expect("ip netns list");
    for ns in names.all() {
        assert!(!present.iter().any(|p| p == ns), "{ns} left behind");
    }
    assert!(!names.lists_dir().exists(), "lists directory left behind");
}

/// Helper for `harness_cleans_up_after_a_panic`: panics inside a harness
/// with a filter attached and a process running in `net`.
#[test]
#[ignore = "helper: run by harness_cleans_up_after_a_panic"]
#[expect(
    clippy::zombie_processes,
    reason = "the harness kills it on the way out and this process exits"
)]
fn child_panics_inside_harness() {
    if std::env::var_os("FF_E2E_CHILD").is_none() {
        return;
    }
    let mode = std::env::var("FF_E2E_CHILD").unwrap_or_default();
    let mut h = Harness::up(opts());
    if mode.starts_with("daemon") {
        h.attach_daemon(&[("whatsapp", "drop")])
            .expect("attach_daemon");
        let d = h.daemon().expect("daemon");
        println!("DAEMON={}", d.pid());
    } else {
        h.attach_filter(&[("whatsapp", "drop")]).expect("attach");
    }
    let sleeper = h
        .command(Ns::Net, "sleep")
        .arg("30")
        .spawn()
        .expect("sleep in net");
    println!("PREFIX={} PID={}", h.names().prefix, sleeper.id());
    if mode.ends_with("kill") {
        std::thread::sleep(Duration::from_secs(30));
    }
    panic!("failing on purpose inside the harness");
}

/// Start the helper test in a child process; returns it and the prefix and
/// sleeper pid it printed.
fn spawn_child(mode: &str) -> (std::process::Child, String, u32) {
    let (child, prefix, pid, _) = spawn_child_daemon(mode);
    (child, prefix, pid)
}

/// [`spawn_child`], and the daemon's pid if the helper started one.
fn spawn_child_daemon(mode: &str) -> (std::process::Child, String, u32, Option<u32>) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_panics_inside_harness",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FF_E2E_CHILD", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the helper test");
    let out = child.stdout.take().expect("stdout");
    let mut found = None;
    let mut daemon = None;
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        if let Some(rest) = line.find("DAEMON=").map(|i| &line[i + 7..]) {
            daemon = Some(rest.trim().parse().expect("daemon pid"));
        }
        // libtest prints `test NAME ... ` before the test's own output.
        if let Some(rest) = line.find("PREFIX=").map(|i| &line[i + 7..]) {
            let (p, pid) = rest.split_once(" PID=").expect("PREFIX line");
            found = Some((p.to_string(), pid.trim().parse().expect("pid")));
            break;
        }
    }
    let (prefix, pid) = found.expect("the helper printed no PREFIX line");
    (child, prefix, pid, daemon)
}

fn ours(prefix: &str) -> Vec<String> {
    list_namespaces()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/PID; look at its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn harness_cleans_up_after_a_panic() {
    skip_unless_root!("harness_cleans_up_after_a_panic");
    let (mut child, prefix, sleeper) = spawn_child("panic");
    let status = child.wait().expect("waiting for the helper");
    assert!(!status.success(), "the helper test was meant to fail");
    assert_eq!(
        ours(&prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    assert!(
        !harness::Names::with_prefix(&prefix).lists_dir().exists(),
        "lists directory left behind"
    );
    assert!(
        !alive(sleeper),
        "process {sleeper} in the net namespace survived"
    );
}

#[test]
fn cleanup_stale_removes_a_killed_run() {
    skip_unless_root!("cleanup_stale_removes_a_killed_run");
    let (mut child, prefix, sleeper) = spawn_child("kill");
    // SIGKILL: no unwinding, no Drop; the namespaces stay behind.
    child.kill().expect("killing the helper");
    child.wait().expect("reaping the helper");
    assert_eq!(
        ours(&prefix).len(),
        3,
        "a killed harness leaves its namespaces"
    );
    let removed = cleanup_stale().expect("cleanup_stale");
    assert!(
        removed.iter().any(|n| n.starts_with(&prefix)),
        "cleanup_stale removed {removed:?}, not {prefix}-*"
    );
    assert_eq!(
        ours(&prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(sleeper) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(sleeper),
        "process {sleeper} in the net namespace survived"
    );
}

// --- calls under drop ---------------------------------------------------------

#[test]
fn drop_blocks_whatsapp_call() {
    blocked_under_drop(
        "drop_blocks_whatsapp_call",
        "whatsapp",
        false,
        "whatsapp",
        &["relay", "p2p"],
    );
}

#[test]
fn drop_blocks_whatsapp_p2p_by_inheritance() {
    blocked_under_drop(
        "drop_blocks_whatsapp_p2p_by_inheritance",
        "whatsapp-inherit",
        false,
        "whatsapp",
        &["relay", "p2p"],
    );
}

#[test]
fn drop_blocks_whatsapp_p2p_called_from_outside() {
    blocked_under_drop(
        "drop_blocks_whatsapp_p2p_called_from_outside",
        "whatsapp-callee",
        false,
        "whatsapp",
        &["relay", "p2p-in"],
    );
}

#[test]
fn drop_blocks_telegram_reflector_call() {
    blocked_under_drop(
        "drop_blocks_telegram_reflector_call",
        "telegram",
        false,
        "telegram",
        &["reflector", "reflector2"],
    );
}

#[test]
fn drop_blocks_tgcalls_turn_and_p2p() {
    blocked_under_drop(
        "drop_blocks_tgcalls_turn_and_p2p",
        "tgcalls",
        false,
        "telegram",
        &["turn", "p2p"],
    );
}

#[test]
fn drop_blocks_whatsapp_call_v6() {
    blocked_under_drop(
        "drop_blocks_whatsapp_call_v6",
        "whatsapp",
        true,
        "whatsapp",
        &["relay", "p2p"],
    );
}

#[test]
fn drop_blocks_telegram_reflector_call_v6() {
    blocked_under_drop(
        "drop_blocks_telegram_reflector_call_v6",
        "telegram",
        true,
        "telegram",
        &["reflector", "reflector2"],
    );
}

#[test]
fn drop_blocks_tgcalls_turn_and_p2p_v6() {
    blocked_under_drop(
        "drop_blocks_tgcalls_turn_and_p2p_v6",
        "tgcalls",
        true,
        "telegram",
        &["turn", "p2p"],
    );
}

// --- calls under monitor, other providers' calls ----------------------------------

#[test]
fn monitor_leaves_calls_untouched_and_counts_them() {
    let test = "monitor_leaves_calls_untouched_and_counts_them";
    let Some(mut h) = filtered(test, "monitor") else {
        return;
    };
    for (sc, v6, expect) in [
        ("whatsapp", false, &["relay", "p2p"][..]),
        ("telegram", false, &["reflector", "reflector2"][..]),
        ("tgcalls", false, &["turn", "p2p"][..]),
        ("whatsapp", true, &["relay", "p2p"][..]),
        ("whatsapp-callee", false, &["relay", "p2p-in"][..]),
    ] {
        let r = run(&h, sc, v6, expect);
        assert_untouched(&format!("{test}: {sc} v6={v6}"), &r);
    }
    for cat in ["whatsapp", "telegram"] {
        let s = cat_stats(&mut h, cat);
        assert!(
            s.monitored_packets > 0,
            "{test}: {cat} monitored nothing ({s:?})"
        );
        assert_eq!(
            s.dropped_packets, 0,
            "{test}: {cat} dropped under monitor ({s:?})"
        );
    }
}

#[test]
fn generic_webrtc_call_to_unlisted_address_untouched() {
    let test = "generic_webrtc_call_to_unlisted_address_untouched";
    let Some(mut h) = filtered(test, "drop") else {
        return;
    };
    for v6 in [false, true] {
        let r = run(&h, "webrtc", v6, &["media"]);
        assert_untouched(&format!("{test} v6={v6}"), &r);
    }
    for cat in ["whatsapp", "telegram"] {
        let s = cat_stats(&mut h, cat);
        assert_eq!(
            s.seen_packets, 0,
            "{test}: the call was put in {cat} ({s:?})"
        );
    }
}

// --- everything else flows in every mode ----------------------------------------

fn non_call_delivered(test: &str, spec: &str) {
    let Some(mut h) = filtered(test, spec) else {
        return;
    };
    // Every scenario runs and is judged; the failures are reported together.
    let mut bad = Vec::new();
    let mut all = Vec::new();
    for v6 in [false, true] {
        for (sc, expect) in [
            ("messaging", &MESSAGING[..]),
            ("quic", &["quic"][..]),
            ("game", &["game"][..]),
        ] {
            let r = run(&h, sc, v6, expect);
            bad.extend(not_delivered(&r));
            all.extend(r);
        }
        for (sc, least) in [("dns", 4), ("dns-big", 2)] {
            let r = if v6 {
                h.run_scenario_v6(sc)
            } else {
                h.run_scenario(sc)
            };
            assert!(r.len() >= least, "{test}: {sc} ran {} queries", r.len());
            bad.extend(not_delivered(&r));
            all.extend(r);
        }
    }
    // The big DNS answers crossed the gateway as fragments, none dropped.
    let g = h
        .library_filter()
        .expect("library filter attached")
        .global_stats()
        .expect("global counters");
    let at = |n: &str| {
        g[filter_common::GLOBAL_NAMES
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("no global counter {n}"))]
    };
    assert!(
        at("fragments") >= 6,
        "{test}: the big DNS answers were not fragmented ({} fragments)",
        at("fragments")
    );
    if at("fragments_dropped") != 0 {
        bad.push(format!(
            "{} fragments dropped (the big DNS answers)",
            at("fragments_dropped")
        ));
    }
    // No messaging connection was taken for a call fallen back to TCP.
    if at("tcp_fallback") != 0 {
        bad.push(format!(
            "{} TCP packets counted as calls fallen back to TCP",
            at("tcp_fallback")
        ));
    }
    for cat in ["whatsapp", "telegram"] {
        let s = cat_stats(&mut h, cat);
        // The UDP flows did cross the categories (their servers are listed)...
        assert!(s.seen_packets > 0, "{test}: nothing seen in {cat} ({s:?})");
        // ...and none of them may be taken for a call.
        if (s.dropped_packets, s.monitored_packets) != (0, 0) {
            bad.push(format!(
                "{cat}: {} packets dropped, {} monitored as call traffic",
                s.dropped_packets, s.monitored_packets
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{test}: non-call traffic was touched:\n  {}\n{}",
        bad.join("\n  "),
        table(&all)
    );
}

#[test]
fn non_call_flows_delivered_under_drop() {
    non_call_delivered("non_call_flows_delivered_under_drop", "drop");
}

#[test]
fn non_call_flows_delivered_under_monitor() {
    non_call_delivered("non_call_flows_delivered_under_monitor", "monitor");
}

#[test]
fn non_call_flows_delivered_under_flows_percent() {
    non_call_delivered("non_call_flows_delivered_under_flows_percent", "flows=100%");
}

// --- the daemon on the gateway -----------------------------------------------------

/// A harness with `flowfilter run` on the gateway, `spec` for both
/// categories, and generators sending `packets` per leg every 5 ms.
fn with_daemon(test: &str, spec: &str, packets: u32) -> Option<Harness> {
    let mut h = harness(test)?;
    h.attach_daemon(&[("whatsapp", spec), ("telegram", spec)])
        .unwrap_or_else(|e| panic!("{test}: starting flowfilter run ({spec}): {e}"));
    h.opts_mut().packets = packets;
    Some(h)
}

fn daemon(h: &Harness) -> &DaemonFilter {
    h.daemon().expect("the daemon is attached")
}

fn cli_json(d: &DaemonFilter, args: &[&str]) -> Value {
    d.cli_json(args)
        .unwrap_or_else(|e| panic!("flowfilter {args:?}: {e}\ndaemon log:\n{}", d.log()))
}

/// A category's `dropped` packets from `stats --json`.
fn dropped(d: &DaemonFilter, category: &str) -> u64 {
    let s = cli_json(d, &["stats"]);
    s["categories"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == category))
        .and_then(|c| c["dropped"]["packets"].as_u64())
        .unwrap_or_else(|| panic!("no {category} counters in {s:#}"))
}

/// The daemon's entry (`flows --json`) for `r`'s 5-tuple, either direction.
fn flow_entry(d: &DaemonFilter, r: &FlowResult) -> Option<Value> {
    let (c, s) = (r.client.to_string(), r.server.to_string());
    cli_json(d, &["flows"]).as_array()?.iter().find_map(|f| {
        let (src, dst) = (f["src"].as_str()?, f["dst"].as_str()?);
        (f["proto"] == r.proto.as_str() && ((src == c && dst == s) || (src == s && dst == c)))
            .then(|| f.clone())
    })
}

/// Poll `what` every 10 ms for at most 10 s.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    kit::wait_for(what, Duration::from_secs(10), || ok().then_some(()));
}

#[test]
fn daemon_killed_with_9_mid_call_keeps_blocking() {
    let test = "daemon_killed_with_9_mid_call_keeps_blocking";
    let Some(h) = with_daemon(test, "drop", 200) else {
        return;
    };
    let d = daemon(&h);
    let before = cli_json(d, &["status"]);
    let mut call = h
        .start_scenarios(&[("whatsapp", 0)], false)
        .unwrap_or_else(|e| panic!("{test}: starting the call: {e}"));
    // The relay leg is being dropped: the call is under way.
    wait_for("the relay leg's first drops", || {
        dropped(d, "whatsapp") >= 10
    });
    let status = d
        .signal(libc::SIGKILL)
        .unwrap_or_else(|e| panic!("{test}: kill -9: {e}"));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(
        !call.done(),
        "{test}: the call ended before the daemon was killed; nothing was tested"
    );
    let at_kill = dropped(d, "whatsapp");
    let r = call
        .finish()
        .unwrap_or_else(|e| panic!("{test}: the call: {e}"));
    let mut got = flows(&r);
    got.sort_unstable();
    assert_eq!(got, ["p2p", "relay"], "{test}\n{}", table(&r));
    assert_blocked(test, &r);
    // The program and links stayed, and did the dropping without a daemon:
    // the rest of the relay leg and the whole peer-to-peer leg (recognised
    // after the kill).
    // Exit 3: in force, no daemon running.
    let after = d
        .status_in_force()
        .unwrap_or_else(|e| panic!("{test}: flowfilter status: {e}\ndaemon log:\n{}", d.log()));
    assert_eq!(after["daemon"]["running"], false, "{after:#}");
    assert_eq!(after["program"]["id"], before["program"]["id"]);
    for i in 0..2 {
        assert_eq!(
            after["interfaces"][i]["link_id"], before["interfaces"][i]["link_id"],
            "{after:#}"
        );
    }
    let sent: u64 = r.iter().map(|f| f.sent_pkts).sum();
    let total = dropped(d, "whatsapp");
    assert!(
        total - at_kill >= 200,
        "{test}: only {} packets dropped after the kill (of {sent} sent in the call; {at_kill} before it)",
        total - at_kill
    );
}

#[test]
fn daemon_list_reload_mid_call_blocks_an_added_call_and_spares_a_removed_range() {
    let test = "daemon_list_reload_mid_call_blocks_an_added_call_and_spares_a_removed_range";
    let Some(h) = with_daemon(test, "drop", 300) else {
        return;
    };
    let d = daemon(&h);
    let sfu = plan::service("sfu").expect("sfu").addr(false).ip();
    let game = plan::service("game").expect("game").addr(false).ip();
    let lists = h.lists().expect("harness lists");
    let tg = lists.by_name("telegram").expect("telegram");
    assert!(
        tg.list.cidrs().any(|p| p.contains(game)),
        "the game server {game} starts out in the telegram list"
    );
    assert!(
        !lists
            .categories
            .iter()
            .any(|c| c.list.cidrs().any(|p| p.contains(sfu))),
        "the SFU {sfu} starts out unlisted"
    );
    // A generic WebRTC call to the SFU (untouched while unlisted) and a game
    // stream to the listed game server, at once.
    let mut running = h
        .start_scenarios(&[("webrtc", 0), ("game", 0)], false)
        .unwrap_or_else(|e| panic!("{test}: starting the traffic: {e}"));
    // The game flow is listed, so tracked: it is the clock.
    wait_for("the game stream under way", || {
        cli_json(d, &["flows"]).as_array().is_some_and(|a| {
            a.iter()
                .any(|f| f["dst"] == format!("{game}:19132") && f["packets"].as_u64() >= Some(60))
        })
    });
    // The reload: the SFU's address joins whatsapp, the game server's /28
    // leaves telegram (only the reflectors and TURN stay).
    let dir = h.lists_dir();
    std::fs::write(
        dir.join("whatsapp.txt"),
        format!("{}{sfu}/32\n", plan::WHATSAPP_LIST),
    )
    .expect("write whatsapp.txt");
    std::fs::write(
        dir.join("telegram.txt"),
        "198.51.100.20/31\n198.51.100.24/32\n2001:db8:7e::/48\n",
    )
    .expect("write telegram.txt");
    let out = d
        .cli(&["reload"])
        .unwrap_or_else(|e| panic!("{test}: reload: {e}\n{}", d.log()));
    assert!(out.contains("reloaded by the daemon"), "{out}");
    assert!(
        !running.done(),
        "{test}: the traffic ended before the reload; nothing was tested"
    );
    let r = running
        .finish()
        .unwrap_or_else(|e| panic!("{test}: the traffic: {e}"));
    let call = r
        .iter()
        .find(|f| f.scenario == "webrtc")
        .unwrap_or_else(|| panic!("no webrtc flow\n{}", table(&r)));
    let stream = r
        .iter()
        .find(|f| f.scenario == "game")
        .unwrap_or_else(|| panic!("no game flow\n{}", table(&r)));
    // The removed range: every packet, both ways.
    assert_untouched(
        &format!("{test}: game stream"),
        std::slice::from_ref(stream),
    );
    // The added address: the call flowed before the reload...
    assert!(
        call.delivered_pkts >= 20 && call.recv_pkts >= 20,
        "{test}: the call did not flow before the reload: {}",
        call.summary()
    );
    // ...and the filter's flow entry (made by the first packet after the
    // reload) shows it recognised as whatsapp call media and dropped, but for
    // a handful while RTP was confirmed...
    let e = flow_entry(d, call)
        .unwrap_or_else(|| panic!("{test}: no flow entry for {}", call.summary()));
    assert_eq!(e["category"], "whatsapp", "{e}");
    assert_eq!(e["listed"], true, "{e}");
    assert_eq!(e["call"], true, "{e}");
    let (seen, dropped) = (u(&e["packets"]), u(&e["dropped"]));
    assert!(
        seen - dropped <= 2 * HANDFUL,
        "{test}: {} packets of the call passed after the reload ({e})",
        seen - dropped
    );
    assert!(
        dropped >= 100,
        "{test}: only {dropped} packets dropped after the reload: {}",
        call.summary()
    );
    // ...and what went missing end to end is exactly what it dropped.
    let lost = (call.sent_pkts - call.delivered_pkts) + (call.answered_pkts - call.recv_pkts);
    assert_eq!(
        lost,
        dropped,
        "{test}: lost end to end vs dropped by the filter: {} / {e}",
        call.summary()
    );
}

#[test]
fn cleanup_stale_removes_a_killed_runs_daemon_and_pins() {
    skip_unless_root!("cleanup_stale_removes_a_killed_runs_daemon_and_pins");
    let (mut child, prefix, _, daemon) = spawn_child_daemon("daemon-kill");
    let daemon = daemon.expect("the helper printed no DAEMON line");
    child.kill().expect("killing the helper");
    child.wait().expect("reaping the helper");
    let names = harness::Names::with_prefix(&prefix);
    let state = filter_user::control::state::state_path(&names.pin_dir());
    assert!(alive(daemon), "the daemon died with the killed run");
    assert!(
        names.pin_dir().exists(),
        "no pins at {}",
        names.pin_dir().display()
    );
    let removed = cleanup_stale().expect("cleanup_stale");
    assert!(
        removed
            .iter()
            .any(|n| n.starts_with(&prefix) || n.contains(&format!("{prefix}-gw"))),
        "cleanup_stale removed {removed:?}, not {prefix}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(daemon) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(daemon), "daemon {daemon} survived cleanup_stale");
    assert!(!names.pin_dir().exists(), "pins left behind");
    assert!(
        !state.exists(),
        "state file {} left behind",
        state.display()
    );
    assert!(!names.daemon_log().exists(), "daemon log left behind");
    assert_eq!(
        ours(&prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
}

#[test]
fn harness_with_daemon_cleans_up_after_a_panic() {
    skip_unless_root!("harness_with_daemon_cleans_up_after_a_panic");
    let (mut child, prefix, sleeper, daemon) = spawn_child_daemon("daemon-panic");
    let daemon = daemon.expect("the helper printed no DAEMON line");
    let status = child.wait().expect("waiting for the helper");
    assert!(!status.success(), "the helper test was meant to fail");
    let names = harness::Names::with_prefix(&prefix);
    assert_eq!(
        ours(&prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    assert!(!alive(daemon), "daemon {daemon} survived the panic");
    assert!(!alive(sleeper), "process {sleeper} in net survived");
    assert!(!names.pin_dir().exists(), "pins left behind");
    assert!(
        !filter_user::control::state::state_path(&names.pin_dir()).exists(),
        "state file left behind"
    );
    assert!(!names.daemon_log().exists(), "daemon log left behind");
    assert!(!names.lists_dir().exists(), "lists directory left behind");
}

#[test]
fn cleanup_stale_leaves_a_live_runs_daemon_and_namespaces_alone() {
    let test = "cleanup_stale_leaves_a_live_runs_daemon_and_namespaces_alone";
    let Some(h) = with_daemon(test, "drop", 30) else {
        return;
    };
    let removed = cleanup_stale().expect("cleanup_stale");
    let prefix = &h.names().prefix;
    assert!(
        !removed.iter().any(|n| n.contains(prefix.as_str())),
        "{test}: cleanup_stale removed this live run's {removed:?}"
    );
    assert_eq!(ours(prefix).len(), 3, "{test}: namespaces gone");
    let d = daemon(&h);
    assert!(d.running(), "{test}: the daemon was killed:\n{}", d.log());
    assert!(d.pin_dir().exists(), "{test}: pins gone");
    // And it still filters.
    assert_blocked(test, &run(&h, "whatsapp", false, &["relay", "p2p"]));
}

// --- evasion ------------------------------------------------------------------------

/// Packets per call leg in the evasion tests.
const EVASION_PACKETS: u32 = 20;

/// The call scenarios `mode` is tested with, and their flows (see
/// [`evasion_run_calls`] for the order they run in).
fn evasion_calls(mode: Evasion) -> Vec<(&'static str, &'static [&'static str])> {
    if mode == Evasion::Tcp {
        return vec![
            ("whatsapp", &["relay"]),
            ("telegram", &["reflector"]),
            ("tgcalls", &["turn"]),
        ];
    }
    vec![
        ("whatsapp-inherit", &["relay", "p2p"]),
        ("whatsapp", &["relay", "p2p"]),
        ("whatsapp-callee", &["relay", "p2p-in"]),
        ("telegram", &["reflector", "reflector2"]),
        ("tgcalls", &["turn", "p2p"]),
    ]
}

/// The non-call scenarios in the listed ranges (they run as always under
/// every mode), and their flows.
const NON_CALL: [(&str, &[&str]); 4] = [
    ("messaging", &MESSAGING),
    ("dns-big", &["big0", "big1"]),
    ("quic", &["quic"]),
    ("game", &["game"]),
];

/// The daemon's global counter `name` (`stats --json`).
fn global_counter(d: &DaemonFilter, name: &str) -> u64 {
    let s = cli_json(d, &["stats"]);
    s["global"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no global counter {name} in {:#}", s["global"]))
}

/// Packets the daemon counted under label `name`.
fn label_packets(d: &DaemonFilter, name: &str) -> u64 {
    let s = cli_json(d, &["stats"]);
    s["labels"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == name))
        .map_or(0, |l| u(&l["packets"]))
}

/// The global counters `mode` must move (in every policy).
fn evasion_counters(mode: Evasion) -> &'static [&'static str] {
    match mode {
        // First fragments toward the listed relays carry less than 48
        // payload bytes; toward the unlisted peers they are kept and
        // joined to the later fragment that carries the payload.
        Evasion::Frag8 | Evasion::Tiny => &[
            "fragments",
            "fragments_tiny_first",
            "fragments_payload_later",
        ],
        // The payload comes first and is kept; the first fragment (the UDP
        // header alone) is judged joined to it, so it is not tiny.
        Evasion::Reorder => &["fragments", "fragments_before_first"],
        Evasion::Overlap => &["fragments", "fragments_overlap"],
        Evasion::Tcp => &["tcp_fallback"],
        Evasion::None | Evasion::Decoys => &[],
    }
}

fn counters_moved(d: &DaemonFilter, mode: Evasion, bad: &mut Vec<String>) {
    for c in evasion_counters(mode) {
        let n = global_counter(d, c);
        if n == 0 {
            bad.push(format!("global counter {c} did not move"));
        }
    }
    if mode == Evasion::Tcp {
        for l in ["stun-tcp", "telegram-tcp"] {
            if label_packets(d, l) == 0 {
                bad.push(format!("no packet counted under label {l}"));
            }
        }
    }
}

/// Run `runs` (scenario, IPv6, its flows) side by side against one
/// responder, and check each produced exactly its flows.
fn batch(h: &Harness, runs: &[(&str, bool, &[&str])]) -> Vec<FlowResult> {
    let start: Vec<(&str, u8, bool)> = runs.iter().map(|(sc, v6, _)| (*sc, 0, *v6)).collect();
    let r = h
        .start_runs(&start)
        .and_then(harness::RunningScenarios::finish)
        .unwrap_or_else(|e| panic!("running {start:?}: {e}"));
    for (sc, v6, expect) in runs {
        let mut got: Vec<&str> = r
            .iter()
            .filter(|f| f.scenario == *sc && f.client.is_ipv6() == *v6)
            .map(|f| f.flow.as_str())
            .collect();
        got.sort_unstable();
        let mut want = expect.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "{sc} (v6={v6}): flows\n{}", table(&r));
    }
    r
}

/// Run the calls of `mode` in both families, judging the flows with
/// `judge` (which returns what is wrong): `whatsapp-inherit` first (its
/// peer-to-peer leg is a call only by the local port it shares with the
/// relay leg, so no other call may have taught the filter the peer
/// before), then the other calls side by side, with the generic WebRTC call
/// to an unlisted SFU (untouched) where the mode applies to it and its
/// datagrams can arrive at all, then `whatsapp-callee` (which runs alone).
fn evasion_run_calls(
    h: &Harness,
    mode: Evasion,
    judge: impl Fn(&[FlowResult]) -> Vec<String>,
    bad: &mut Vec<String>,
    all: &mut Vec<FlowResult>,
) {
    let calls = evasion_calls(mode);
    let both = |names: &[&str]| -> Vec<(&'static str, bool, &'static [&'static str])> {
        [false, true]
            .into_iter()
            .flat_map(|v6| {
                calls
                    .iter()
                    .filter(|(sc, _)| names.contains(sc))
                    .map(move |(sc, expect)| (*sc, v6, *expect))
            })
            .collect()
    };
    let mut results = Vec::new();
    let first = both(&["whatsapp-inherit"]);
    if !first.is_empty() {
        results.extend(batch(h, &first));
    }
    results.extend(batch(h, &both(&["whatsapp", "telegram", "tgcalls"])));
    if calls.iter().any(|(sc, _)| *sc == "whatsapp-callee") {
        for v6 in [false, true] {
            results.extend(run(h, "whatsapp-callee", v6, &["relay", "p2p-in"]));
        }
    }
    bad.extend(judge(&results));
    if mode == Evasion::Decoys {
        for f in &results {
            if f.decoys_sent == 0 {
                bad.push(format!("no decoys sent on {}", f.summary()));
            }
        }
    }
    all.extend(results);
    if mode.applies_to("webrtc") && mode != Evasion::Overlap {
        let r = batch(
            h,
            &[("webrtc", false, &["media"]), ("webrtc", true, &["media"])],
        );
        bad.extend(not_delivered(&r));
        all.extend(r);
    }
}

/// Every non-call flow in the listed ranges, both families, delivered in
/// full with `mode` set (for the calls only, so beside them).
fn evasion_run_non_calls(h: &Harness, bad: &mut Vec<String>, all: &mut Vec<FlowResult>) {
    let runs: Vec<(&str, bool, &[&str])> = [false, true]
        .into_iter()
        .flat_map(|v6| NON_CALL.iter().map(move |(sc, expect)| (*sc, v6, *expect)))
        .collect();
    let r = batch(h, &runs);
    bad.extend(not_delivered(&r));
    all.extend(r);
}

fn blocked_flows(results: &[FlowResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r.blocked(HANDFUL))
        .map(|r| format!("not blocked: {}", r.summary()))
        .collect()
}

/// A harness with a daemon under `spec`, its generators evading by `mode`.
fn evasion_harness(test: &str, spec: &str, mode: Evasion) -> Option<Harness> {
    let mut h = with_daemon(test, spec, EVASION_PACKETS)?;
    h.opts_mut().evasion = mode;
    h.opts_mut().linger = Duration::from_millis(250);
    Some(h)
}

/// After the mode's counters are checked, no complaint in `bad`; else a
/// panic with them, the flows and the global counters.
fn evasion_verdict(
    test: &str,
    d: &DaemonFilter,
    mode: Evasion,
    mut bad: Vec<String>,
    all: &[FlowResult],
) {
    counters_moved(d, mode, &mut bad);
    assert!(
        bad.is_empty(),
        "{test}:\n  {}\n{}\nglobal counters: {:#}",
        bad.join("\n  "),
        table(all),
        cli_json(d, &["stats"])["global"]
    );
}

/// Under `drop`: every call of `mode` blocked, both families; the non-call
/// flows delivered in full; the categories show drops and the mode's
/// counters moved.
fn evasion_under_drop(test: &str, mode: Evasion) {
    let Some(h) = evasion_harness(test, "drop", mode) else {
        return;
    };
    let (mut bad, mut all) = (Vec::new(), Vec::new());
    evasion_run_calls(&h, mode, blocked_flows, &mut bad, &mut all);
    evasion_run_non_calls(&h, &mut bad, &mut all);
    let d = daemon(&h);
    for cat in ["whatsapp", "telegram"] {
        if dropped(d, cat) == 0 {
            bad.push(format!("the {cat} counters show no drop"));
        }
    }
    evasion_verdict(test, d, mode, bad, &all);
}

/// Under `monitor`: every call of `mode` delivered in full both ways, both
/// families (but `overlap`: see below); the non-call flows too; the
/// categories monitored the calls and dropped nothing; the mode's counters
/// moved.
fn evasion_under_monitor(test: &str, mode: Evasion) {
    let Some(h) = evasion_harness(test, "monitor", mode) else {
        return;
    };
    let (mut bad, mut all) = (Vec::new(), Vec::new());
    // Linux discards a datagram whose fragments overlap (IPv4 since 4.19,
    // IPv6 per RFC 5722): `overlap` calls never reach the servers, filter
    // or no filter, so nothing is judged on delivery; the filter's counters
    // show it saw and judged the overlaps.
    let judge = |r: &[FlowResult]| {
        if mode == Evasion::Overlap {
            Vec::new()
        } else {
            not_delivered(r)
        }
    };
    evasion_run_calls(&h, mode, judge, &mut bad, &mut all);
    if mode == Evasion::Decoys {
        // The junk arrived; the bad-checksum and TTL-1 decoys did not.
        for r in &all {
            if r.decoys_delivered != r.decoys_sent {
                bad.push(format!(
                    "{} decoys sent, {} arrived: {}",
                    r.decoys_sent,
                    r.decoys_delivered,
                    r.summary()
                ));
            }
        }
    }
    evasion_run_non_calls(&h, &mut bad, &mut all);
    let d = daemon(&h);
    let s = cli_json(d, &["stats"]);
    for cat in ["whatsapp", "telegram"] {
        let c = s["categories"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == cat))
            .unwrap_or_else(|| panic!("no {cat} counters in {s:#}"));
        if u(&c["monitored"]["packets"]) == 0 {
            bad.push(format!("{cat} monitored nothing"));
        }
        if mode != Evasion::Overlap && u(&c["dropped"]["packets"]) != 0 {
            bad.push(format!("{cat} dropped under monitor: {c}"));
        }
    }
    if mode != Evasion::Overlap && global_counter(d, "fragments_dropped") != 0 {
        bad.push(format!(
            "{} fragments dropped under monitor",
            global_counter(d, "fragments_dropped")
        ));
    }
    evasion_verdict(test, d, mode, bad, &all);
}

/// A test under `drop` and one under `monitor` for each evasion mode.
macro_rules! evasion_tests {
    ($($mode:ident: $drop:ident, $monitor:ident;)*) => {$(
        #[test]
        fn $drop() {
            evasion_under_drop(stringify!($drop), Evasion::$mode);
        }

        #[test]
        fn $monitor() {
            evasion_under_monitor(stringify!($monitor), Evasion::$mode);
        }
    )*};
}

evasion_tests! {
    Frag8: evasion_frag8_calls_blocked_under_drop, evasion_frag8_calls_delivered_under_monitor;
    Tiny: evasion_tiny_calls_blocked_under_drop, evasion_tiny_calls_delivered_under_monitor;
    Reorder: evasion_reorder_calls_blocked_under_drop, evasion_reorder_calls_delivered_under_monitor;
    Overlap: evasion_overlap_calls_blocked_under_drop, evasion_overlap_counted_under_monitor;
    Decoys: evasion_decoys_calls_blocked_under_drop, evasion_decoys_calls_delivered_under_monitor;
    Tcp: evasion_tcp_fallback_calls_blocked_under_drop, evasion_tcp_fallback_calls_delivered_under_monitor;
}
