// The figures compared are exact in binary (small integers and halves).
#![allow(clippy::float_cmp)]

use super::targets::targets;
use super::*;

fn window(napi_ns: f64, frames: f64, routed: f64) -> Value {
    json!({"secs": 1.0, "napi_ns": napi_ns, "cpu_busy_ns": napi_ns, "rx_packets": frames,
           "rx_bytes": frames * 200.0, "routed_drops": routed})
}

fn live(traffic: &[&str], ns: f64, own: Option<f64>) -> Value {
    let results: Vec<Value> = traffic
        .iter()
        .map(|t| {
            json!({"traffic": t, "windows": [window(ns * 1e6, 1e6, 0.0)], "frame_len_mean": 200.0,
                   "own": own.map(|o| vec![json!({"run_ns": o * 100.0, "run_cnt": 100})]).unwrap_or_default()})
        })
        .collect();
    json!({ "results": results })
}

fn run(c: Contestant, traffic: &[&str], ns: f64, own: Option<f64>) -> LiveRun {
    LiveRun {
        contestant: c,
        result: Ok(live(traffic, ns, own)),
        setup_ms: None,
        memory: None,
        note: None,
    }
}

fn set(kind: SetKind, n: usize, ff: f64, live: Vec<LiveRun>) -> SetRun {
    let mut l = vec![
        run(
            Contestant::XdpDrop,
            &["match", "nomatch", "flood"],
            80.0,
            Some(10.0),
        ),
        run(
            Contestant::XdpParseDrop,
            &["match", "nomatch", "flood"],
            100.0,
            Some(20.0),
        ),
        run(Contestant::Flowfilter, &["match", "flood"], ff, None),
        run(Contestant::Flowfilter, &["nomatch"], 900.0, Some(30.0)),
    ];
    l.extend(live);
    SetRun {
        kind,
        family: if kind == SetKind::V6 { 6 } else { 4 },
        n,
        what: "test".into(),
        kernel: Err("not run".into()),
        live: l,
    }
}

#[test]
fn stat_is_median_with_spread() {
    let s = stat(&[5.0, 1.0, 3.0, f64::NAN]).unwrap();
    assert_eq!((s.med, s.min, s.max, s.samples), (3.0, 1.0, 5.0, 3));
    assert_eq!(stat(&[1.0, 2.0, 4.0, 10.0]).unwrap().med, 3.0);
    assert!(stat(&[]).is_none());
}

#[test]
fn kind_reads_windows() {
    let w = [
        window(100e6, 1e6, 0.0),
        window(300e6, 1e6, 0.0),
        window(200e6, 1e6, 5e5),
    ];
    let k = kind_from(
        &w,
        &[json!({"run_ns": 3000, "run_cnt": 100})],
        Some(200.0),
        None,
    )
    .unwrap();
    assert_eq!(k.ns.med, 200.0);
    assert_eq!((k.ns.min, k.ns.max), (100.0, 300.0));
    assert_eq!(k.mpps.med, 1.0);
    assert_eq!(k.dropped.min, 0.5);
    assert_eq!(k.own.unwrap().med, 30.0);
    assert_eq!(k.frame_bytes.unwrap().med, 200.0);
    // A window without frames gives no ns figure, not a division by zero.
    let k = kind_from(
        &[window(1e6, 0.0, 0.0), window(2e6, 1e4, 0.0)],
        &[],
        None,
        None,
    )
    .unwrap();
    assert_eq!((k.ns.med, k.ns.samples), (200.0, 1));
    assert!(k.own.is_none());
}

#[test]
fn ratios_estimates_and_targets() {
    let floors_again = run(Contestant::XdpParseDrop, &["match"], 100.0, None);
    let small = set(SetKind::Random, 10, 150.0, vec![floors_again]);
    let big = set(
        SetKind::Random,
        100_000,
        160.0,
        vec![run(Contestant::Nftables, &["match"], 1600.0, None)],
    );
    let runs = [small, big];
    let mut o = Out::new();
    for i in 0..KINDS.len() {
        section_kind(&mut o, &runs, i);
    }
    assert!(
        o.md.contains("| 100k | flowfilter | 160 | 160–160 | 1.60× | 2.00× |"),
        "{}",
        o.md
    );
    // nomatch estimate: 100 + (30 - 20) = 110.
    assert!(
        o.md.contains("| 100k | flowfilter, XDP-level estimate | 110 | | 1.10× | 1.38× |"),
        "{}",
        o.md
    );
    let ff = o
        .figures
        .iter()
        .find(|f| {
            f["contestant"] == "flowfilter"
                && f["section"] == "receiver-cpu"
                && f["kind"] == "match"
                && f["n"] == 100_000
        })
        .unwrap();
    assert_eq!(ff["ratio_to_limit"], json!(1.6));
    assert_eq!(ff["ratio_to_xdp_drop"], json!(2.0));
    assert_eq!(
        (ff["set"].as_str(), ff["family"].as_u64()),
        (Some("random"), Some(4))
    );
    let est = o
        .figures
        .iter()
        .find(|f| f["contestant"] == "flowfilter-xdp-estimate" && f["n"] == 10)
        .unwrap();
    assert_eq!(est["ratio_to_limit"], json!(1.1));
    let t = targets(&runs, true);
    let find = |w: &str, at: &str| {
        t.iter()
            .find(|t| t.what.starts_with(w) && t.at.starts_with(at))
            .unwrap()
    };
    assert_eq!(find("matched media", "100k").met(), Some(true));
    assert_eq!(find("non-matching", "100k").met(), Some(true));
    let g = find("IPv4 cost growth, match", "10 → 100k");
    assert!((g.measured.unwrap() - 160.0 / 150.0).abs() < 1e-9 && g.met() == Some(true));
    assert_eq!(find("flood", "100k").measured, Some(2.0));
    assert_eq!(find("nftables", "100k").measured, Some(10.0));
    assert_eq!(find("IPv6 cost growth, match", "").measured, None);
}

#[test]
fn without_xdp_live_receiver_targets_are_shown_not_judged() {
    let small = set(SetKind::Random, 10, 150.0, Vec::new());
    let big = set(SetKind::Random, 100_000, 160.0, Vec::new());
    let runs = [small, big];
    let judged = |saturated: bool| {
        let mut o = Out::new();
        section_targets(&mut o, &runs, true, saturated);
        let row =
            o.md.lines()
                .find(|l| l.starts_with("| matched media") && l.contains("| 100k |"))
                .map(str::to_owned)
                .unwrap();
        let met = o
            .figures
            .iter()
            .find(|f| f["kind"] == "match-over-parse-drop" && f["n"] == 100_000)
            .map(|f| f["met"].clone())
            .unwrap();
        (row, met)
    };
    let (row, met) = judged(true);
    assert!(row.ends_with("| 1.60× | yes |"), "{row}");
    assert_eq!(met, json!(true));
    let (row, met) = judged(false);
    assert!(
        row.ends_with("| 1.60× | – (af-packet: not judged) |"),
        "{row}"
    );
    assert_eq!(met, Value::Null);
}

/// Section 3b: the bounds beside flowfilter, with their ratios, and as
/// figures; a set without bounds (an older ffbench) adds no row.
#[test]
fn bounds_rows_and_figures() {
    let ns = |v: f64| json!({"ns": [v, v, v], "dropped": 3, "frames": 3});
    let mut with = set(SetKind::Random, 100_000, 500.0, Vec::new());
    with.kernel = Ok(json!({
        "testrun": {"udp-tracked-call-flow": ns(180.0), "udp-tracked-65536-calls": ns(320.0)},
        "testrun_limits": {
            "xdp_drop": ns(50.0),
            "xdp_parse_drop": ns(70.0),
            "bounds": {
                "xdp_bound_flow": {"udp-tracked-call-flow": ns(120.0), "udp-tracked-65536-calls": ns(280.0)},
                "xdp_bound_lookup": {"udp-tracked-call-flow": ns(140.0), "udp-tracked-65536-calls": ns(350.0)}
            }
        }
    }));
    let mut without = set(SetKind::Random, 10, 500.0, Vec::new());
    without.kernel = Ok(json!({"testrun": {}, "testrun_limits": {"xdp_drop": ns(50.0)}}));
    let mut o = Out::new();
    sections::section_bounds(&mut o, &[with, without]);
    assert!(
        o.md.contains(
            "| 100k | udp-tracked-65536-calls | 320.0 | 280.0 | 350.0 | 70.0 | 1.14× | 4.00× |"
        ),
        "{}",
        o.md
    );
    assert!(o.md.contains(
        "| 100k | udp-tracked-call-flow | 180.0 | 120.0 | 140.0 | 70.0 | 1.50× | 1.71× |"
    ));
    assert!(!o.md.contains("| 10 |"), "{}", o.md);
    assert_eq!(o.figures.len(), 4);
    let f = o
        .figures
        .iter()
        .find(|f| f["contestant"] == "xdp_bound_lookup" && f["kind"] == "udp-tracked-65536-calls")
        .expect("the lookup bound's figure");
    assert_eq!(f["section"], "in-kernel");
    assert_eq!(f["value"], 350.0);
    assert_eq!(f["ratio_to_limit"], 5.0);
    assert_eq!(f["ratio_to_xdp_drop"], 7.0);
}
