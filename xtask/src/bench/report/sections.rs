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
            let l = live_of(run, c);
            if !run
                .live
                .iter()
                .any(|l| l.contestant == c && kind_or_failed(l, traffic))
            {
                continue;
            }
            let Some(k) = kind_of(run, c, traffic) else {
                let _ = writeln!(
                    o.md,
                    "| {} | {} | {} | | | | {}| | | |",
                    set_label(run),
                    c.label(),
                    missing(l, traffic),
                    if passes { " | " } else { "" }
                );
                continue;
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
            if passes && let Some(x) = over {
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
            notes_of(o, run, c, traffic, passes, &k);
            if c == Contestant::Flowfilter
                && passes
                && let Some(est) = estimate(run, traffic)
            {
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
        }
    }
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

pub(super) fn section_kernel(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 3. In-kernel cost: BPF_PROG_TEST_RUN\n\n\
         flowfilter alone, no traffic: each round runs distinct frames (varying addresses), each once (`repeat` 1), \
         and averages the kernel's duration; median of rounds, min–max. The floors measured the same way (on the \
         new-flow frames) give the cost of the method itself (the timer and call overhead).\n\n\
         | set | packet kind | flowfilter ns | min–max | parse_drop ns | × parse_drop | XDP_DROP ns | dropped |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let Ok(k) = &run.kernel else { continue };
        let Some(kinds) = k["testrun"].as_object() else {
            continue;
        };
        let floor = |name: &str| stat(&floats(&k["testrun_limits"][name]["ns"]));
        let (parse, drop) = (floor("xdp_parse_drop"), floor("xdp_drop"));
        for (c, s) in [
            (Contestant::XdpDrop, drop),
            (Contestant::XdpParseDrop, parse),
        ] {
            if let Some(s) = s {
                let r = Ratios {
                    limit: ratio(s.med, parse.map(|p| p.med)),
                    xdp_drop: ratio(s.med, drop.map(|p| p.med)),
                };
                o.figure(
                    "in-kernel",
                    c.key(),
                    run,
                    "udp-match-media-new-flow",
                    s.med,
                    "ns/packet",
                    r,
                    Some(s),
                );
            }
        }
        let fmt = |s: Option<Stat>| s.map_or_else(|| "–".into(), |s| format!("{:.1}", s.med));
        for (name, v) in kinds {
            let Some(s) = stat(&floats(&v["ns"])) else {
                continue;
            };
            let r = Ratios {
                limit: ratio(s.med, parse.map(|p| p.med)),
                xdp_drop: ratio(s.med, drop.map(|p| p.med)),
            };
            let dropped = num(v, "dropped") / num(v, "frames");
            let _ = writeln!(
                o.md,
                "| {} | {name} | {:.1} | {:.1}–{:.1} | {} | {} | {} | {} |",
                set_label(run),
                s.med,
                s.min,
                s.max,
                fmt(parse),
                fmt_ratio(r.limit),
                fmt(drop),
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
    }
}

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
        let others = format!(
            "{} | {} | {} | {}",
            opt(nft),
            opt(ips.and_then(|l| l.setup_ms)),
            ips.and_then(|l| l.memory)
                .map_or_else(|| "–".into(), |m| mem(m as f64)),
            opt(xf)
        );
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
        let n = run.n.max(1) as f64;
        let build = stat(&floats(&k["build_ms"]));
        let swap = stat(&floats(&k["swap_ms"]));
        let load = num(k, "load_ms");
        let tables = num(k, "table_maps_memlock");
        let total = num(k, "maps_memlock");
        let written = num(k, "table_bytes_written");
        let error = k["install_error"].as_str();
        let first = match error {
            Some(e) => format!("failed: {}", short(e)),
            None => fmt_ms(num(k, "first_install_ms")),
        };
        let _ = writeln!(
            o.md,
            "| {} | {} | {} | {first} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {others} |",
            set_label(run),
            fmt_ms(load),
            build.map_or_else(|| "–".into(), |b| fmt_ms(b.med)),
            swap.map_or_else(|| "–".into(), |s| fmt_ms(s.med)),
            swap.map_or_else(
                || "–".into(),
                |s| format!("{}–{}", fmt_ms(s.min), fmt_ms(s.max))
            ),
            mem(tables),
            mem(total),
            tables / n,
            total / n,
            if written.is_finite() {
                format!("{:.0}", written / n)
            } else {
                "–".into()
            },
        );
        let ff = |o: &mut Out, kind: &str, v: f64, unit: &str, s: Option<Stat>| {
            if v.is_finite() {
                o.figure("control-plane", "flowfilter", run, kind, v, unit, none, s);
            }
        };
        ff(o, "load", load, "ms", None);
        if let Some(e) = error {
            o.figures.push(json!({
                "section": "control-plane", "contestant": "flowfilter", "n": run.n,
                "set": run.kind.key(), "family": run.family, "kind": "install",
                "value": null, "unit": "ms", "ratio_to_limit": null, "ratio_to_xdp_drop": null,
                "failed": e,
            }));
        } else {
            ff(o, "first-install", num(k, "first_install_ms"), "ms", None);
        }
        if let Some(b) = build {
            ff(o, "build", b.med, "ms", Some(b));
        }
        if let Some(s) = swap {
            ff(o, "swap", s.med, "ms", Some(s));
        }
        ff(o, "tables-memlock", tables, "bytes", None);
        ff(o, "maps-memlock", total, "bytes", None);
        ff(
            o,
            "tables-bytes-per-prefix",
            tables / n,
            "bytes/prefix",
            None,
        );
        ff(o, "maps-bytes-per-prefix", total / n, "bytes/prefix", None);
        ff(
            o,
            "written-bytes-per-prefix",
            written / n,
            "bytes/prefix",
            None,
        );
    }
}
