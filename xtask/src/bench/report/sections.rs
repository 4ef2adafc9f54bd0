//! The report's sections: each kind of traffic, flowfilter's own figures, the in-kernel cost and the control plane.

use super::*;

pub(super) const LIVE_ORDER: [Contestant; 7] = [
    Contestant::XdpDrop,
    Contestant::XdpParseDrop,
    Contestant::Flowfilter,
    Contestant::Nftables,
    Contestant::IptablesIpset,
    Contestant::XdpFilter,
    Contestant::None,
];

/// The traffic kinds: name, description, whether flowfilter passes it.
pub(super) const KINDS: [(&str, &str, bool); 4] = [
    (
        "match",
        "Matching call media, dropped. Established calls to targets inside the set, both directions: RTP \
         (payloads 60–250 bytes) with ~0.5% STUN consent checks",
        false,
    ),
    (
        "nomatch",
        "Non-matching media, passed. The same calls to near misses: addresses in /16s and /24s that hold \
         prefixes of the set, outside it. Every filter passes them and the receiver's stack then drops them \
         (no route), so the figures include the stack's work (\"over the stack\" subtracts the run without a \
         filter); the XDP-level estimate = xdp_parse_drop's ns/packet + (flowfilter's own ns/run − \
         xdp_parse_drop's own ns/run) on the same traffic",
        true,
    ),
    (
        "flood",
        "Flood, dropped. STUN Binding requests to targets inside the set, a new 5-tuple every packet",
        false,
    ),
    (
        "junk",
        "Junk, passed. To near misses: on 10% of the flows spoofed three-packet WhatsApp private-STUN calls \
         (flowfilter drops these by signature), on the others random payloads (48–240 bytes, multiples of 16) \
         to the spoofed calls' destination sockets, which flowfilter must pass: \"passed to IP\" below 90% means \
         it learned endpoints from the spoofed calls (estimate as for nomatch)",
        true,
    ),
];

/// Section 1a–1d: the receiver's cost on one traffic kind (`KINDS[idx]`),
/// a row per set and contestant; nothing when no set ran it.
pub(super) fn section_kind(o: &mut Out, runs: &[SetRun], idx: usize) {
    let (traffic, heading, passes) = KINDS[idx];
    let rows: Vec<&SetRun> = runs
        .iter()
        .filter(|r| r.live.iter().any(|l| kind_or_failed(l, traffic)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let letter = ['a', 'b', 'c', 'd'][idx];
    let _ = writeln!(
        o.md,
        "\n### 1{letter}. {traffic}\n\n{heading}.\n\n\
         | set | contestant | ns/packet | min–max | × parse_drop | × XDP_DROP | {}Mpps | {} | frame B | receiver busy |\n\
         |---|---|---:|---:|---:|---:|{}---:|---:|---:|---:|",
        if passes { "over the stack | " } else { "" },
        if passes {
            "passed to IP"
        } else {
            "dropped before IP"
        },
        if passes { "---:|" } else { "" },
    );
    for run in rows {
        let fl = Floors::of(run, traffic);
        let base = kind_of(run, Contestant::None, traffic).map(|k| k.ns.med);
        for c in LIVE_ORDER {
            if !run
                .live
                .iter()
                .any(|l| l.contestant == c && kind_or_failed(l, traffic))
            {
                continue;
            }
            kind_row(o, run, c, traffic, passes, &fl, base);
        }
    }
}

/// One contestant's row of a traffic kind (its failure, else its figures,
/// notes and, for flowfilter on traffic it passes, the estimate's row);
/// `base` is the stack alone's ns/packet.
fn kind_row(
    o: &mut Out,
    run: &SetRun,
    c: Contestant,
    traffic: &str,
    passes: bool,
    fl: &Floors,
    base: Option<f64>,
) {
    let live = live_of(run, c);
    let Some(k) = kind_of(run, c, traffic) else {
        let _ = writeln!(
            o.md,
            "| {} | {} | {} | | | | {}| | | |",
            set_label(run),
            c.label(),
            missing(live, traffic),
            if passes { " | " } else { "" }
        );
        return;
    };
    let r = fl.ratios(k.ns.med);
    let floor = matches!(c, Contestant::XdpDrop | Contestant::XdpParseDrop);
    let over = base.filter(|_| !floor).map(|b| k.ns.med - b);
    let _ = writeln!(
        o.md,
        "| {} | {} | {:.0} | {} | {} | {} | {}{:.2} | {} | {} | {} |",
        set_label(run),
        c.label(),
        k.ns.med,
        spread(&k.ns),
        fmt_ratio(r.limit),
        fmt_ratio(r.xdp_drop),
        if passes {
            format!(
                "{} | ",
                over.map_or_else(|| "–".into(), |x| format!("{x:+.0}"))
            )
        } else {
            String::new()
        },
        k.mpps.med,
        pct(if passes {
            1.0 - k.dropped.med
        } else {
            k.dropped.med
        }),
        k.frame_bytes
            .map_or_else(|| "–".into(), |b| format!("{:.0}", b.med)),
        pct(k.busy.med)
    );
    kind_figures(o, run, c, traffic, &k, r, over.filter(|_| passes));
    notes_of(o, run, c, traffic, passes, &k);
    if c == Contestant::Flowfilter
        && passes
        && let Some(est) = estimate(run, traffic)
    {
        estimate_row(o, run, traffic, fl, est);
    }
}

/// A contestant's JSON figures on a traffic kind: receiver CPU, rate and,
/// when given (traffic it passes), its cost over the stack alone.
fn kind_figures(
    o: &mut Out,
    run: &SetRun,
    c: Contestant,
    traffic: &str,
    k: &Kind,
    r: Ratios,
    over: Option<f64>,
) {
    o.figure(
        "receiver-cpu",
        c.key(),
        run,
        traffic,
        k.ns.med,
        "ns/packet",
        r,
        Some(k.ns),
    );
    o.figure(
        "receiver-rate",
        c.key(),
        run,
        traffic,
        k.mpps.med,
        "Mpps",
        Ratios::default(),
        Some(k.mpps),
    );
    if let Some(x) = over {
        o.figure(
            "receiver-cpu-over-stack",
            c.key(),
            run,
            traffic,
            x,
            "ns/packet",
            Ratios::default(),
            None,
        );
    }
}

/// flowfilter's XDP-level estimate on traffic it passes: its row and figure.
fn estimate_row(o: &mut Out, run: &SetRun, traffic: &str, fl: &Floors, est: f64) {
    let r = fl.ratios(est);
    let _ = writeln!(
        o.md,
        "| {} | flowfilter, XDP-level estimate | {est:.0} | | {} | {} |  | | | |",
        set_label(run),
        fmt_ratio(r.limit),
        fmt_ratio(r.xdp_drop),
    );
    o.figure(
        "receiver-cpu",
        "flowfilter-xdp-estimate",
        run,
        traffic,
        est,
        "ns/packet",
        r,
        None,
    );
}

/// Whether a live run has figures for `traffic` or failed (shown as such).
pub(super) fn kind_or_failed(l: &LiveRun, traffic: &str) -> bool {
    match &l.result {
        Err(_) => traffic == "match" || traffic == "nomatch",
        Ok(v) => v["results"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["traffic"] == traffic)),
    }
}

/// Warnings a live figure deserves.
pub(super) fn notes_of(
    o: &mut Out,
    run: &SetRun,
    c: Contestant,
    traffic: &str,
    passes: bool,
    k: &Kind,
) {
    let at = format!("{} {}, {}", set_label(run), traffic, c.key());
    if k.other.med > 0.2 {
        o.notes.push(format!(
            "{at}: the receiving CPU was busy {} of the time outside the NAPI thread (other tasks or \
             interrupts; /proc/stat, tick-sampled): figures may be noisy",
            pct(k.other.med)
        ));
    }
    let floor = matches!(c, Contestant::XdpDrop | Contestant::XdpParseDrop);
    let should_drop = floor || (!passes && c != Contestant::None);
    if should_drop && k.dropped.med < 0.99 {
        o.notes.push(format!(
            "{at}: only {} of the frames were dropped before IP",
            pct(k.dropped.med)
        ));
    }
    let expect = k.expect_passed.unwrap_or(1.0);
    if !should_drop && c != Contestant::None && 1.0 - k.dropped.med < expect - 0.01 {
        o.notes.push(format!(
            "{at}: {} of the frames passed to IP, {} should{}",
            pct(1.0 - k.dropped.med),
            pct(expect),
            if traffic == "junk" {
                " (all but the WhatsApp-signature frames: flowfilter dropped random payloads to the spoofed \
                 calls' destination sockets, so it learned from the spoofed calls)"
            } else {
                ""
            }
        ));
    }
    if let (Some(b), Some(want)) = (k.frame_bytes, k.frame_len)
        && (b.med - want).abs() > 2.0
    {
        o.notes.push(format!(
            "{at}: the receiver counted {:.1} bytes per frame, the pool sends {want:.1}",
            b.med
        ));
    }
}

pub(super) fn section_own(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 2. XDP programs' own cost on live traffic\n\n\
         run_time_ns / run_cnt from BPF run-time statistics (BPF_ENABLE_STATS) in separate windows of the same runs; \
         the statistics add their own clock reads to every run, the same for every program.\n\n\
         | set | program | traffic | ns/run | min–max | × parse_drop | × XDP_DROP |\n|---|---|---|---:|---:|---:|---:|"
    );
    for run in runs {
        for (traffic, _, _) in KINDS {
            let fl = Floors::of(run, traffic);
            for c in [
                Contestant::XdpDrop,
                Contestant::XdpParseDrop,
                Contestant::Flowfilter,
                Contestant::XdpFilter,
            ] {
                let Some(own) = kind_of(run, c, traffic).and_then(|k| k.own) else {
                    continue;
                };
                let r = fl.own_ratios(own.med);
                let _ = writeln!(
                    o.md,
                    "| {} | {} | {traffic} | {:.1} | {:.1}–{:.1} | {} | {} |",
                    set_label(run),
                    c.label(),
                    own.med,
                    own.min,
                    own.max,
                    fmt_ratio(r.limit),
                    fmt_ratio(r.xdp_drop)
                );
                o.figure(
                    "xdp-own-cost",
                    c.key(),
                    run,
                    traffic,
                    own.med,
                    "ns/run",
                    r,
                    Some(own),
                );
            }
        }
    }
}

/// Section 3: BPF_PROG_TEST_RUN, a row per set and packet kind, with the
/// floors measured the same way.
pub(super) fn section_kernel(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 3. In-kernel cost: BPF_PROG_TEST_RUN\n\n\
         flowfilter alone, no traffic, on one CPU: each round runs distinct frames (varying addresses), each once (`repeat` 1), \
         and averages the kernel's duration; median of rounds, min–max. The floors measured the same way (on the \
         new-flow frames) give the cost of the method itself (the timer and call overhead). \
         `udp-tracked-65536-calls` runs RTP on as many established calls as the live traffic keeps going, each \
         back once a round, so its flow slots are out of the caches as on the wire: the working set of section 1 \
         without a traffic generator.\n\n\
         | set | packet kind | flowfilter ns | min–max | parse_drop ns | × parse_drop | XDP_DROP ns | dropped |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let Ok(k) = &run.kernel else { continue };
        let Some(kinds) = k["testrun"].as_object() else {
            continue;
        };
        let floors = KernelFloors::of(k);
        kernel_floors(o, run, floors);
        for (name, v) in kinds {
            kernel_row(o, run, name, v, floors);
        }
    }
}

/// The floors' BPF_PROG_TEST_RUN figures on a set (`testrun_limits`).
#[derive(Clone, Copy)]
struct KernelFloors {
    parse: Option<Stat>,
    drop: Option<Stat>,
}

impl KernelFloors {
    fn of(k: &Value) -> KernelFloors {
        let floor = |name: &str| stat(&floats(&k["testrun_limits"][name]["ns"]));
        KernelFloors {
            parse: floor("xdp_parse_drop"),
            drop: floor("xdp_drop"),
        }
    }

    /// Ratios of an in-kernel ns/packet figure.
    fn ratios(&self, ns: f64) -> Ratios {
        Ratios {
            limit: ratio(ns, self.parse.map(|p| p.med)),
            xdp_drop: ratio(ns, self.drop.map(|p| p.med)),
        }
    }
}

/// A median in ns, or "–".
fn fmt_ns(s: Option<Stat>) -> String {
    s.map_or_else(|| "–".into(), |s| format!("{:.1}", s.med))
}

/// The floors' BPF_PROG_TEST_RUN figures on a set (JSON only).
fn kernel_floors(o: &mut Out, run: &SetRun, floors: KernelFloors) {
    for (c, s) in [
        (Contestant::XdpDrop, floors.drop),
        (Contestant::XdpParseDrop, floors.parse),
    ] {
        if let Some(s) = s {
            o.figure(
                "in-kernel",
                c.key(),
                run,
                "udp-match-media-new-flow",
                s.med,
                "ns/packet",
                floors.ratios(s.med),
                Some(s),
            );
        }
    }
}

/// flowfilter's BPF_PROG_TEST_RUN row and figure for one packet kind, with
/// a note when it dropped other than it should.
fn kernel_row(o: &mut Out, run: &SetRun, name: &str, v: &Value, floors: KernelFloors) {
    let Some(s) = stat(&floats(&v["ns"])) else {
        return;
    };
    let r = floors.ratios(s.med);
    let dropped = num(v, "dropped") / num(v, "frames");
    let _ = writeln!(
        o.md,
        "| {} | {name} | {:.1} | {:.1}–{:.1} | {} | {} | {} | {} |",
        set_label(run),
        s.med,
        s.min,
        s.max,
        fmt_ns(floors.parse),
        fmt_ratio(r.limit),
        fmt_ns(floors.drop),
        pct(dropped)
    );
    o.figure(
        "in-kernel",
        "flowfilter",
        run,
        name,
        s.med,
        "ns/packet",
        r,
        Some(s),
    );
    let want = name.starts_with("udp-match") || name.starts_with("udp-tracked");
    if want != (dropped > 0.99) {
        o.notes.push(format!(
            "{}: BPF_PROG_TEST_RUN `{name}`: {} dropped, expected {}",
            set_label(run),
            pct(dropped),
            if want { "all" } else { "none" }
        ));
    }
}

/// Section 3b: the bounds (`xdp_bound_flow`, `xdp_bound_lookup`) beside
/// flowfilter on the tracked-call kinds, a row per set and kind.
pub(super) fn section_bounds(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n### 3b. Bounds of the design\n\n\
         Two programs of flowfilter's object, run the same way on the same flows with flowfilter's maps: \
         **per-flow state only** (`xdp_bound_flow`: the parser, the flow hash, the slot look-up and the per-packet \
         counter writes; no classifier, no decision) is the least a filter with exact per-flow state costs here; \
         **addresses only** (`xdp_bound_lookup`: the parser and the two prefix look-ups in the lists, the per-CPU \
         counters; no flow state) the least a filter deciding by address alone costs. Both read tables, so their \
         cost past parse_drop is mostly memory latency once the flows or addresses outgrow the caches.\n\n\
         | set | packet kind | flowfilter ns | per-flow state only ns | addresses only ns | parse_drop ns | flowfilter × per-flow bound | per-flow bound × parse_drop |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let Ok(k) = &run.kernel else { continue };
        let Some(bounds) = k["testrun_limits"]["bounds"].as_object() else {
            continue;
        };
        let floors = KernelFloors::of(k);
        for kind in ["udp-tracked-call-flow", "udp-tracked-65536-calls"] {
            let ns = |v: &Value| stat(&floats(&v[kind]["ns"]));
            let ff = stat(&floats(&k["testrun"][kind]["ns"]));
            let flow = bounds.get(BOUND_FLOW).and_then(ns);
            let lookup = bounds.get(BOUND_LOOKUP).and_then(ns);
            let med = |s: Option<Stat>| s.map(|s| s.med);
            let _ = writeln!(
                o.md,
                "| {} | {kind} | {} | {} | {} | {} | {} | {} |",
                set_label(run),
                fmt_ns(ff),
                fmt_ns(flow),
                fmt_ns(lookup),
                fmt_ns(floors.parse),
                fmt_ratio(ff.and_then(|f| ratio(f.med, med(flow)))),
                fmt_ratio(flow.and_then(|f| floors.ratios(f.med).limit)),
            );
            for (name, s) in [(BOUND_FLOW, flow), (BOUND_LOOKUP, lookup)] {
                if let Some(s) = s {
                    let r = floors.ratios(s.med);
                    o.figure("in-kernel", name, run, kind, s.med, "ns/packet", r, Some(s));
                }
            }
        }
    }
}

/// `xdp_bound_flow`'s name (report.json's contestant).
const BOUND_FLOW: &str = "xdp_bound_flow";
/// `xdp_bound_lookup`'s name.
const BOUND_LOOKUP: &str = "xdp_bound_lookup";

/// Section 4: control plane and memory, a row per set: flowfilter's
/// figures (or its failure) and the others' load times and memory.
pub(super) fn section_control(o: &mut Out, runs: &[SetRun], quick: bool) {
    let _ = writeln!(
        o.md,
        "\n## 4. Control plane and memory\n\n\
         flowfilter: load = `Filter::load` (verify, create maps); build = the tables in userspace; install = build + \
         write the inactive generation + flip (`Filter::install`; the first into empty maps, then swaps of the same \
         set, median and min–max). Memory = the kernel's memlock of the maps (fdinfo); table maps = the prefix \
         tables: ROOT (the 16-bit roots of both families and generations, 1 MiB, fixed) and the node pool of each \
         generation (TRIE[0], TRIE[1]: inner maps made at install to the size the set needs; both generations are \
         kept, for the hitless swap); \"written\" is the table data one generation of this set uses. The others: time to load the set (`nft -f`, `ipset restore` + \
         rules, filling xdp-filter's map) and ipset's own memory figure.{}\n\n\
         | set | load ms | build ms | first install ms | swap ms | min–max | table maps | all maps | table B/prefix | all maps B/prefix | written B/prefix | nft load ms | ipset load ms | ipset memory | xdp-filter fill ms |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        if quick {
            " With --quick, the 1M random, mix and hosts sets get these rows only (no traffic)."
        } else {
            ""
        }
    );
    for run in runs {
        let others = others_control(o, run);
        let k = match &run.kernel {
            Ok(k) => k,
            Err(e) => {
                if e != "not run" {
                    let _ = writeln!(
                        o.md,
                        "| {} | failed: {} | | | | | | | | | | {others} |",
                        set_label(run),
                        short(e)
                    );
                }
                continue;
            }
        };
        let c = Control::of(k);
        control_row(o, run, &c, &others);
        control_figures(o, run, &c);
    }
}

/// The other contestants' control-plane figures on a set (JSON), and their
/// cells of its row.
fn others_control(o: &mut Out, run: &SetRun) -> String {
    let nft = live_of(run, Contestant::Nftables).and_then(|l| l.setup_ms);
    let ips = live_of(run, Contestant::IptablesIpset);
    let xf = live_of(run, Contestant::XdpFilter).and_then(|l| l.setup_ms);
    let opt = |x: Option<f64>| x.map_or_else(|| "–".into(), fmt_ms);
    let none = Ratios::default();
    let control = [
        (nft, "nftables", "load", "ms"),
        (ips.and_then(|l| l.setup_ms), "iptables+ipset", "load", "ms"),
        (
            ips.and_then(|l| l.memory).map(|m| m as f64),
            "iptables+ipset",
            "memory",
            "bytes",
        ),
        (xf, "xdp-filter", "fill", "ms"),
    ];
    for (value, who, what, unit) in control {
        if let Some(v) = value {
            o.figure("control-plane", who, run, what, v, unit, none, None);
        }
    }
    format!(
        "{} | {} | {} | {}",
        opt(nft),
        opt(ips.and_then(|l| l.setup_ms)),
        ips.and_then(|l| l.memory)
            .map_or_else(|| "–".into(), |m| mem(m as f64)),
        opt(xf)
    )
}

/// flowfilter's control-plane and memory figures from `ffbench kernel`
/// (NaN where missing).
struct Control<'a> {
    load: f64,
    build: Option<Stat>,
    first_install: f64,
    swap: Option<Stat>,
    /// Memlock of the table maps and of all maps.
    tables: f64,
    total: f64,
    /// Table bytes one generation of the set uses.
    written: f64,
    install_error: Option<&'a str>,
}

impl Control<'_> {
    fn of(k: &Value) -> Control<'_> {
        Control {
            load: num(k, "load_ms"),
            build: stat(&floats(&k["build_ms"])),
            first_install: num(k, "first_install_ms"),
            swap: stat(&floats(&k["swap_ms"])),
            tables: num(k, "table_maps_memlock"),
            total: num(k, "maps_memlock"),
            written: num(k, "table_bytes_written"),
            install_error: k["install_error"].as_str(),
        }
    }
}

/// flowfilter's row of section 4, ending with the others' cells.
fn control_row(o: &mut Out, run: &SetRun, c: &Control, others: &str) {
    let n = run.n.max(1) as f64;
    let first = match c.install_error {
        Some(e) => format!("failed: {}", short(e)),
        None => fmt_ms(c.first_install),
    };
    let _ = writeln!(
        o.md,
        "| {} | {} | {} | {first} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {others} |",
        set_label(run),
        fmt_ms(c.load),
        c.build.map_or_else(|| "–".into(), |b| fmt_ms(b.med)),
        c.swap.map_or_else(|| "–".into(), |s| fmt_ms(s.med)),
        c.swap.map_or_else(
            || "–".into(),
            |s| format!("{}–{}", fmt_ms(s.min), fmt_ms(s.max))
        ),
        mem(c.tables),
        mem(c.total),
        c.tables / n,
        c.total / n,
        if c.written.is_finite() {
            format!("{:.0}", c.written / n)
        } else {
            "–".into()
        },
    );
}

/// flowfilter's control-plane figures on a set (JSON; the failed install
/// as such).
fn control_figures(o: &mut Out, run: &SetRun, c: &Control) {
    let n = run.n.max(1) as f64;
    let none = Ratios::default();
    let ff = |o: &mut Out, kind: &str, v: f64, unit: &str, s: Option<Stat>| {
        if v.is_finite() {
            o.figure("control-plane", "flowfilter", run, kind, v, unit, none, s);
        }
    };
    ff(o, "load", c.load, "ms", None);
    if let Some(e) = c.install_error {
        o.figures.push(json!({
            "section": "control-plane", "contestant": "flowfilter", "n": run.n,
            "set": run.kind.key(), "family": run.family, "kind": "install",
            "value": null, "unit": "ms", "ratio_to_limit": null, "ratio_to_xdp_drop": null,
            "failed": e,
        }));
    } else {
        ff(o, "first-install", c.first_install, "ms", None);
    }
    if let Some(b) = c.build {
        ff(o, "build", b.med, "ms", Some(b));
    }
    if let Some(s) = c.swap {
        ff(o, "swap", s.med, "ms", Some(s));
    }
    ff(o, "tables-memlock", c.tables, "bytes", None);
    ff(o, "maps-memlock", c.total, "bytes", None);
    ff(
        o,
        "tables-bytes-per-prefix",
        c.tables / n,
        "bytes/prefix",
        None,
    );
    ff(
        o,
        "maps-bytes-per-prefix",
        c.total / n,
        "bytes/prefix",
        None,
    );
    ff(
        o,
        "written-bytes-per-prefix",
        c.written / n,
        "bytes/prefix",
        None,
    );
}
