//! From ffbench's raw figures to the report: medians over windows with
//! their min-max spread, ratios to XDP_DROP, markdown and JSON.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::{Value, json};

use super::{Timing, quiet};

/// Who is measured on the receiving veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contestant {
    /// Nothing: the stack alone (it drops the frames: no route).
    None,
    XdpDrop,
    Flowfilter,
    Nftables,
    IptablesIpset,
    XdpFilter,
}

impl Contestant {
    /// Name in report.json.
    pub fn key(self) -> &'static str {
        match self {
            Contestant::None => "none",
            Contestant::XdpDrop => "xdp_drop",
            Contestant::Flowfilter => "flowfilter",
            Contestant::Nftables => "nftables",
            Contestant::IptablesIpset => "iptables+ipset",
            Contestant::XdpFilter => "xdp-filter",
        }
    }

    /// Name in report.md.
    pub fn label(self) -> &'static str {
        match self {
            Contestant::None => "no filter (the stack drops it)",
            Contestant::XdpDrop => "(a) XDP_DROP, the limit",
            Contestant::Flowfilter => "(b) flowfilter",
            Contestant::Nftables => "(c) nftables netdev ingress, interval set",
            Contestant::IptablesIpset => "(d) iptables raw PREROUTING + ipset hash:net",
            Contestant::XdpFilter => "(e) xdp-filter, exact addresses",
        }
    }
}

/// One contestant's live run on one set.
pub struct LiveRun {
    pub contestant: Contestant,
    /// ffbench's JSON, or why it failed (empty: not applicable, see note).
    pub result: Result<Value, String>,
    /// Time to load the set into it (ms).
    pub setup_ms: Option<f64>,
    /// Memory the set takes in it, when it tells (bytes).
    pub memory: Option<u64>,
    pub note: Option<String>,
}

impl LiveRun {
    pub fn failed(contestant: Contestant, why: String) -> LiveRun {
        LiveRun {
            contestant,
            result: Err(why),
            setup_ms: None,
            memory: None,
            note: None,
        }
    }
}

/// Everything measured on one prefix set.
pub struct SetRun {
    pub lists: bool,
    pub n: usize,
    pub what: String,
    /// `ffbench kernel` output.
    pub kernel: Result<Value, String>,
    pub live: Vec<LiveRun>,
}

/// Facts about the run and the machine.
pub struct Meta {
    pub date: String,
    pub command: String,
    pub machine: String,
    pub tools: String,
    pub quick: bool,
    pub timing: Timing,
    pub generator: String,
    pub lists_note: String,
}

fn first_line(s: Option<String>) -> String {
    s.and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

impl Meta {
    pub fn collect(
        generator: &str,
        quick: bool,
        args: &[String],
        timing: Timing,
        lists_note: &str,
    ) -> Meta {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map_or_else(
                || "unknown CPU".into(),
                |l| l.trim_start_matches([' ', '\t', ':']).to_string(),
            );
        let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        let kernel = first_line(quiet(Command::new("uname").arg("-r")));
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            })
            .map_or_else(String::new, |kb| {
                format!(", {} GiB RAM", kb / (1024 * 1024))
            });
        let tools = [
            first_line(quiet(Command::new("nft").arg("--version"))),
            first_line(quiet(Command::new("iptables").arg("--version"))),
            first_line(quiet(Command::new("ipset").arg("--version"))),
            format!(
                "xdp-tools {}",
                first_line(quiet(Command::new("dpkg-query").args([
                    "-W",
                    "-f",
                    "${Version}",
                    "xdp-tools"
                ])))
            ),
        ]
        .join("; ");
        let mut command = "cargo xtask bench".to_string();
        for a in args {
            command.push(' ');
            command.push_str(a);
        }
        Meta {
            date: first_line(quiet(
                Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]),
            )),
            command,
            machine: format!("{model}, {cpus} CPUs{mem}, Linux {kernel}"),
            tools,
            quick,
            timing,
            generator: generator.to_string(),
            lists_note: lists_note.to_string(),
        }
    }
}

/// Median with the min-max spread.
#[derive(Clone, Copy, Debug)]
struct Stat {
    med: f64,
    min: f64,
    max: f64,
    samples: usize,
}

fn stat(v: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    };
    Some(Stat {
        med,
        min: v[0],
        max: v[n - 1],
        samples: n,
    })
}

/// What one traffic kind of one live run gives.
#[derive(Clone, Copy, Debug)]
struct Kind {
    ns: Stat,
    mpps: Stat,
    /// Share of the receiving CPU the NAPI thread used.
    busy: Stat,
    /// Share of the receiving CPU used by anything else (tick-sampled).
    other: Stat,
    /// Share of frames that did not reach IP routing (dropped before).
    dropped: Stat,
    /// The XDP program's own ns per run (BPF run-time statistics).
    own: Option<Stat>,
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn kind(run: &Value, traffic: &str) -> Option<Kind> {
    let r = run["results"]
        .as_array()?
        .iter()
        .find(|r| r["traffic"] == traffic)?;
    let w = r["windows"].as_array()?;
    let per = |f: &dyn Fn(&Value) -> f64| -> Vec<f64> { w.iter().map(f).collect() };
    let frames = |w: &Value| num(w, "rx_packets");
    let ns = per(&|w| {
        if frames(w) > 0.0 {
            num(w, "napi_ns") / frames(w)
        } else {
            f64::NAN
        }
    });
    let own: Vec<f64> = r["own"]
        .as_array()
        .map(|o| {
            o.iter()
                .filter(|o| num(o, "run_cnt") > 0.0)
                .map(|o| num(o, "run_ns") / num(o, "run_cnt"))
                .collect()
        })
        .unwrap_or_default();
    Some(Kind {
        ns: stat(&ns)?,
        mpps: stat(&per(&|w| frames(w) / num(w, "secs") / 1e6))?,
        busy: stat(&per(&|w| num(w, "napi_ns") / num(w, "secs") / 1e9))?,
        other: stat(&per(&|w| {
            ((num(w, "cpu_busy_ns") - num(w, "napi_ns")) / num(w, "secs") / 1e9).max(0.0)
        }))?,
        dropped: stat(&per(&|w| {
            if frames(w) > 0.0 {
                (1.0 - num(w, "routed_drops") / frames(w)).clamp(0.0, 1.0)
            } else {
                f64::NAN
            }
        }))?,
        own: stat(&own),
    })
}

struct Out {
    md: String,
    figures: Vec<Value>,
    notes: Vec<String>,
}

impl Out {
    #[allow(clippy::too_many_arguments)]
    fn figure(
        &mut self,
        section: &str,
        contestant: &str,
        run: &SetRun,
        kind: &str,
        value: f64,
        unit: &str,
        ratio: Option<f64>,
        s: Option<Stat>,
    ) {
        let mut o = json!({
            "section": section,
            "contestant": contestant,
            "n": run.n,
            "set": if run.lists { "lists" } else { "random" },
            "kind": kind,
            "value": round(value),
            "unit": unit,
            "ratio_to_limit": ratio.map(round),
        });
        if let Some(s) = s {
            o["min"] = json!(round(s.min));
            o["max"] = json!(round(s.max));
            o["samples"] = json!(s.samples);
        }
        self.figures.push(o);
    }
}

fn round(x: f64) -> f64 {
    if x.abs() >= 100.0 {
        (x * 10.0).round() / 10.0
    } else {
        (x * 1000.0).round() / 1000.0
    }
}

fn set_label(r: &SetRun) -> String {
    if r.lists {
        format!("lists ({})", r.n)
    } else {
        fmt_n(r.n)
    }
}

fn fmt_n(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn spread(s: &Stat) -> String {
    format!("{:.0}–{:.0}", s.min, s.max)
}

fn ratio(v: f64, limit: Option<f64>) -> Option<f64> {
    limit.filter(|l| *l > 0.0).map(|l| v / l)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn short(e: &str) -> String {
    let l = e.lines().next().unwrap_or("").replace('|', "/");
    if l.chars().count() > 110 {
        format!("{}…", l.chars().take(110).collect::<String>())
    } else {
        l
    }
}

fn live_of(run: &SetRun, c: Contestant) -> Option<&LiveRun> {
    run.live.iter().find(|l| l.contestant == c)
}

/// A contestant's figures on one traffic kind, pooled over its runs on the
/// set (XDP_DROP runs twice: first and last).
fn kind_of(run: &SetRun, c: Contestant, traffic: &str) -> Option<Kind> {
    let (mut windows, mut own) = (Vec::new(), Vec::new());
    for l in run.live.iter().filter(|l| l.contestant == c) {
        let Ok(v) = &l.result else { continue };
        let Some(r) = v["results"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["traffic"] == traffic))
        else {
            continue;
        };
        windows.extend(r["windows"].as_array().cloned().unwrap_or_default());
        own.extend(r["own"].as_array().cloned().unwrap_or_default());
    }
    if windows.is_empty() {
        return None;
    }
    kind(
        &json!({"results": [{"traffic": traffic, "windows": windows, "own": own}]}),
        traffic,
    )
}

/// The limit on a set: XDP_DROP's receiver ns/packet and own ns/run.
fn limit(run: &SetRun) -> (Option<f64>, Option<f64>) {
    let k = kind_of(run, Contestant::XdpDrop, "match");
    (k.map(|k| k.ns.med), k.and_then(|k| k.own.map(|o| o.med)))
}

/// A table cell for a contestant that has no figure.
fn missing(l: Option<&LiveRun>, traffic: &str) -> String {
    match l {
        None => "not run".into(),
        Some(l) => match &l.result {
            Err(e) if e.is_empty() => format!("n/a: {}", l.note.clone().unwrap_or_default()),
            Err(e) => format!("failed: {}", short(e)),
            Ok(_) => format!("no {traffic} figures"),
        },
    }
}

const LIVE_ORDER: [Contestant; 6] = [
    Contestant::XdpDrop,
    Contestant::Flowfilter,
    Contestant::Nftables,
    Contestant::IptablesIpset,
    Contestant::XdpFilter,
    Contestant::None,
];

fn section_match(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 1. Receiver CPU per packet: matching call media (dropped)\n\n\
         Traffic: STUN then RTP of 8192 flows to target addresses inside the set, from clients outside it.\n\
         CPU = the receiving veth's NAPI thread, ns per frame it handled (median of windows, min–max).\n\n\
         | N | contestant | ns/packet | min–max | × XDP_DROP | Mpps | dropped before IP | receiver CPU busy |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let (lim, _) = limit(run);
        for c in LIVE_ORDER {
            let l = live_of(run, c);
            if l.is_none() {
                continue;
            }
            match kind_of(run, c, "match") {
                Some(k) => {
                    let r = ratio(k.ns.med, lim);
                    let _ = writeln!(
                        o.md,
                        "| {} | {} | {:.0} | {} | {} | {:.2} | {} | {} |",
                        set_label(run),
                        c.label(),
                        k.ns.med,
                        spread(&k.ns),
                        fmt_ratio(r),
                        k.mpps.med,
                        pct(k.dropped.med),
                        pct(k.busy.med)
                    );
                    o.figure(
                        "receiver-cpu",
                        c.key(),
                        run,
                        "match",
                        k.ns.med,
                        "ns/packet",
                        r,
                        Some(k.ns),
                    );
                    o.figure(
                        "receiver-rate",
                        c.key(),
                        run,
                        "match",
                        k.mpps.med,
                        "Mpps",
                        None,
                        Some(k.mpps),
                    );
                    if k.other.med > 0.2 {
                        o.notes.push(format!(
                            "N={}, {}: the receiving CPU was busy {} of the time outside the NAPI thread \
                             (other tasks or interrupts; /proc/stat, tick-sampled): figures may be noisy",
                            set_label(run),
                            c.key(),
                            pct(k.other.med)
                        ));
                    }
                    if c != Contestant::None && k.dropped.med < 0.99 {
                        o.notes.push(format!(
                            "N={}, {}: only {} of the matching frames were dropped before IP",
                            set_label(run),
                            c.key(),
                            pct(k.dropped.med)
                        ));
                    }
                }
                None => {
                    let _ = writeln!(
                        o.md,
                        "| {} | {} | {} | | | | | |",
                        set_label(run),
                        c.label(),
                        missing(l, "match")
                    );
                }
            }
        }
    }
}

fn section_nomatch(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 2. Receiver CPU per packet: non-matching traffic (passed)\n\n\
         The same media to addresses outside the set. Every filter passes it and the receiver's stack then drops it \
         (no route, forwarding off), so the figures include the stack's work; \"over the stack\" subtracts the run \
         without any filter. The XDP-level line estimates flowfilter's pass verdict the way XDP_DROP is measured: \
         XDP_DROP's ns/packet + (flowfilter's own ns/run on this traffic − XDP_DROP's own ns/run), both from BPF \
         run-time statistics (section 3).\n\n\
         | N | contestant | ns/packet | min–max | × XDP_DROP | over the stack | Mpps | passed to IP |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let (lim, lim_own) = limit(run);
        let base = kind_of(run, Contestant::None, "nomatch").map(|k| k.ns.med);
        for c in [
            Contestant::None,
            Contestant::Flowfilter,
            Contestant::Nftables,
            Contestant::IptablesIpset,
            Contestant::XdpFilter,
        ] {
            let l = live_of(run, c);
            if l.is_none() {
                continue;
            }
            match kind_of(run, c, "nomatch") {
                Some(k) => {
                    let r = ratio(k.ns.med, lim);
                    let over = base.map(|b| k.ns.med - b);
                    let _ = writeln!(
                        o.md,
                        "| {} | {} | {:.0} | {} | {} | {} | {:.2} | {} |",
                        set_label(run),
                        c.label(),
                        k.ns.med,
                        spread(&k.ns),
                        fmt_ratio(r),
                        over.map_or_else(|| "–".into(), |x| format!("{x:+.0}")),
                        k.mpps.med,
                        pct(1.0 - k.dropped.med)
                    );
                    o.figure(
                        "receiver-cpu",
                        c.key(),
                        run,
                        "nomatch",
                        k.ns.med,
                        "ns/packet",
                        r,
                        Some(k.ns),
                    );
                    o.figure(
                        "receiver-rate",
                        c.key(),
                        run,
                        "nomatch",
                        k.mpps.med,
                        "Mpps",
                        None,
                        Some(k.mpps),
                    );
                    if let Some(x) = over {
                        o.figure(
                            "receiver-cpu-over-stack",
                            c.key(),
                            run,
                            "nomatch",
                            x,
                            "ns/packet",
                            None,
                            None,
                        );
                    }
                    if c != Contestant::None && k.dropped.med > 0.01 {
                        o.notes.push(format!(
                            "N={}, {}: {} of the non-matching frames were dropped before IP",
                            set_label(run),
                            c.key(),
                            pct(k.dropped.med)
                        ));
                    }
                }
                None => {
                    let _ = writeln!(
                        o.md,
                        "| {} | {} | {} | | | | | |",
                        set_label(run),
                        c.label(),
                        missing(l, "nomatch")
                    );
                }
            }
        }
        if let (Some(lim), Some(lo), Some(own)) = (
            lim,
            lim_own,
            kind_of(run, Contestant::Flowfilter, "nomatch").and_then(|k| k.own),
        ) {
            let est = lim + own.med - lo;
            let r = ratio(est, Some(lim));
            let _ = writeln!(
                o.md,
                "| {} | (b) flowfilter, XDP-level estimate | {est:.0} | | {} | | | |",
                set_label(run),
                fmt_ratio(r)
            );
            o.figure(
                "receiver-cpu",
                "flowfilter-xdp-estimate",
                run,
                "nomatch",
                est,
                "ns/packet",
                r,
                None,
            );
        }
    }
}

fn section_own(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 3. XDP program's own cost on live traffic\n\n\
         run_time_ns / run_cnt from BPF run-time statistics (BPF_ENABLE_STATS) in separate windows of the same runs; \
         the statistics add their own clock reads to every run, the same for every program.\n\n\
         | N | program | traffic | ns/run | min–max | × xdp_drop |\n|---|---|---|---:|---:|---:|"
    );
    for run in runs {
        let (_, lim_own) = limit(run);
        for (c, t) in [
            (Contestant::XdpDrop, "match"),
            (Contestant::Flowfilter, "match"),
            (Contestant::Flowfilter, "nomatch"),
            (Contestant::XdpFilter, "match"),
            (Contestant::XdpFilter, "nomatch"),
        ] {
            let Some(own) = kind_of(run, c, t).and_then(|k| k.own) else {
                continue;
            };
            let r = ratio(own.med, lim_own);
            let _ = writeln!(
                o.md,
                "| {} | {} | {t} | {:.1} | {:.1}–{:.1} | {} |",
                set_label(run),
                c.label(),
                own.med,
                own.min,
                own.max,
                fmt_ratio(r)
            );
            o.figure(
                "xdp-own-cost",
                c.key(),
                run,
                t,
                own.med,
                "ns/run",
                r,
                Some(own),
            );
        }
    }
}

fn section_kernel(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 4. In-kernel cost: BPF_PROG_TEST_RUN\n\n\
         flowfilter alone, no traffic: each round runs distinct frames (varying addresses), each once (`repeat` 1), \
         and averages the kernel's duration; median of rounds, min–max. XDP_DROP measured the same way gives the \
         floor of the method (the timer and call overhead).\n\n\
         | N | packet kind | flowfilter ns | min–max | XDP_DROP ns | × XDP_DROP | dropped |\n\
         |---|---|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let k = match &run.kernel {
            Ok(k) => k,
            Err(e) => {
                if e != "not run" {
                    let _ = writeln!(
                        o.md,
                        "| {} | failed: {} | | | | | |",
                        set_label(run),
                        short(e)
                    );
                }
                continue;
            }
        };
        let lim = stat(&floats(&k["testrun_limit"]["ns"]));
        if let Some(l) = lim {
            o.figure(
                "in-kernel",
                "xdp_drop",
                run,
                "udp-match-media-new-flow",
                l.med,
                "ns/packet",
                Some(1.0),
                Some(l),
            );
        }
        let Some(kinds) = k["testrun"].as_object() else {
            continue;
        };
        for (name, v) in kinds {
            let Some(s) = stat(&floats(&v["ns"])) else {
                continue;
            };
            let r = ratio(s.med, lim.map(|l| l.med));
            let dropped = num(v, "dropped") / num(v, "frames");
            let _ = writeln!(
                o.md,
                "| {} | {name} | {:.1} | {:.1}–{:.1} | {} | {} | {} |",
                set_label(run),
                s.med,
                s.min,
                s.max,
                lim.map_or_else(|| "–".into(), |l| format!("{:.1}", l.med)),
                fmt_ratio(r),
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
                    "N={}: BPF_PROG_TEST_RUN `{name}`: {} dropped, expected {}",
                    set_label(run),
                    pct(dropped),
                    if want { "all" } else { "none" }
                ));
            }
        }
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Bytes as MiB, or KiB below 1 MiB.
fn mem(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// Milliseconds with a precision that suits their size.
fn fmt_ms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.0}")
    }
}

fn section_control(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## 5. Control plane and memory\n\n\
         flowfilter: load = `Filter::load` (verify, create maps); build = the tables in userspace; install = build + \
         write the inactive generation + flip (`Filter::install`; the first into empty maps, then swaps of the same \
         set, median and min–max). Memory = the kernel's memlock of the maps (fdinfo); the prefix tables \
         (V4_TBL24/V4_TBL8/V6_LPM*) are preallocated for two generations, so per prefix they are large at small N; \
         \"written\" is the table data one generation of this set really uses. The others: time to load the set \
         (`nft -f`, `ipset restore` + rules, filling xdp-filter's map) and ipset's own memory figure.\n\n\
         | N | flowfilter load ms | build ms | first install ms | swap ms | min–max | tables memory | all maps | tables B/prefix | written B/prefix | nft load ms | ipset load ms | ipset memory | xdp-filter fill ms |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let nft = live_of(run, Contestant::Nftables).and_then(|l| l.setup_ms);
        let ips = live_of(run, Contestant::IptablesIpset);
        let xf = live_of(run, Contestant::XdpFilter).and_then(|l| l.setup_ms);
        let opt = |x: Option<f64>| x.map_or_else(|| "–".into(), fmt_ms);
        if let Some(ms) = nft {
            o.figure(
                "control-plane",
                "nftables",
                run,
                "load",
                ms,
                "ms",
                None,
                None,
            );
        }
        if let Some(l) = ips {
            if let Some(ms) = l.setup_ms {
                o.figure(
                    "control-plane",
                    "iptables+ipset",
                    run,
                    "load",
                    ms,
                    "ms",
                    None,
                    None,
                );
            }
            if let Some(m) = l.memory {
                o.figure(
                    "control-plane",
                    "iptables+ipset",
                    run,
                    "memory",
                    m as f64,
                    "bytes",
                    None,
                    None,
                );
            }
        }
        if let Some(ms) = xf {
            o.figure(
                "control-plane",
                "xdp-filter",
                run,
                "fill",
                ms,
                "ms",
                None,
                None,
            );
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
                let why = if e == "not run" {
                    "not run".into()
                } else {
                    format!("failed: {}", short(e))
                };
                let _ = writeln!(
                    o.md,
                    "| {} | {why} | | | | | | | | | {others} |",
                    set_label(run)
                );
                continue;
            }
        };
        let n = run.n.max(1) as f64;
        let build = stat(&floats(&k["build_ms"]));
        let swap = stat(&floats(&k["swap_ms"]));
        let load = num(k, "load_ms");
        let first = num(k, "first_install_ms");
        let tables = num(k, "table_maps_memlock");
        let total = num(k, "maps_memlock");
        let written = num(k, "table_bytes_written");
        let _ = writeln!(
            o.md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {others} |",
            set_label(run),
            fmt_ms(load),
            build.map_or_else(|| "–".into(), |b| fmt_ms(b.med)),
            fmt_ms(first),
            swap.map_or_else(|| "–".into(), |s| fmt_ms(s.med)),
            swap.map_or_else(
                || "–".into(),
                |s| format!("{}–{}", fmt_ms(s.min), fmt_ms(s.max))
            ),
            mem(tables),
            mem(total),
            tables / n,
            written / n,
        );
        o.figure(
            "control-plane",
            "flowfilter",
            run,
            "load",
            load,
            "ms",
            None,
            None,
        );
        o.figure(
            "control-plane",
            "flowfilter",
            run,
            "first-install",
            first,
            "ms",
            None,
            None,
        );
        if let Some(b) = build {
            o.figure(
                "control-plane",
                "flowfilter",
                run,
                "build",
                b.med,
                "ms",
                None,
                Some(b),
            );
        }
        if let Some(s) = swap {
            o.figure(
                "control-plane",
                "flowfilter",
                run,
                "swap",
                s.med,
                "ms",
                None,
                Some(s),
            );
        }
        o.figure(
            "control-plane",
            "flowfilter",
            run,
            "tables-memlock",
            tables,
            "bytes",
            None,
            None,
        );
        o.figure(
            "control-plane",
            "flowfilter",
            run,
            "maps-memlock",
            total,
            "bytes",
            None,
            None,
        );
        o.figure(
            "control-plane",
            "flowfilter",
            run,
            "tables-bytes-per-prefix",
            tables / n,
            "bytes/prefix",
            None,
            None,
        );
        o.figure(
            "control-plane",
            "flowfilter",
            run,
            "written-bytes-per-prefix",
            written / n,
            "bytes/prefix",
            None,
            None,
        );
    }
}

fn section_targets(o: &mut Out, runs: &[SetRun]) {
    let _ = writeln!(
        o.md,
        "\n## Targets\n\n| target | N | measured | met |\n|---|---|---:|---|"
    );
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    for run in runs {
        let (lim, lim_own) = limit(run);
        if let Some(k) = kind_of(run, Contestant::Flowfilter, "match")
            && let Some(r) = ratio(k.ns.med, lim)
        {
            let _ = writeln!(
                o.md,
                "| flowfilter ≤ 1.6× XDP_DROP, matched media | {} | {r:.2}× | {} |",
                set_label(run),
                yes(r <= 1.6)
            );
        }
        if let (Some(l), Some(lo), Some(own)) = (
            lim,
            lim_own,
            kind_of(run, Contestant::Flowfilter, "nomatch").and_then(|k| k.own),
        ) {
            let r = (l + own.med - lo) / l;
            let _ = writeln!(
                o.md,
                "| flowfilter ≤ 1.3× XDP_DROP, non-matching (XDP-level estimate) | {} | {r:.2}× | {} |",
                set_label(run),
                yes(r <= 1.3)
            );
        }
    }
    // At 1M, or the largest random N measured.
    let big = runs.iter().filter(|r| !r.lists).max_by_key(|r| r.n);
    if let Some(run) = big
        && let (Some(f), Some(n)) = (
            kind_of(run, Contestant::Flowfilter, "match"),
            kind_of(run, Contestant::Nftables, "match"),
        )
    {
        let x = n.ns.med / f.ns.med;
        let at = if run.n == 1_000_000 {
            String::new()
        } else {
            " (1M not measured: largest N shown)".into()
        };
        let _ = writeln!(
            o.md,
            "| flowfilter ≥ 10× cheaper than nftables at 1M{at} | {} | {x:.1}× | {} |",
            set_label(run),
            yes(x >= 10.0)
        );
        o.figure(
            "targets",
            "flowfilter",
            run,
            "nftables-over-flowfilter",
            x,
            "ratio",
            None,
            None,
        );
    }
}

fn method(o: &mut Out, meta: &Meta) {
    let t = meta.timing;
    let _ = writeln!(
        o.md,
        "\n## Method\n\n\
         - Two network namespaces joined by a veth pair (one queue each way), documentation addresses on it; the \
         receiver forwards nothing, so frames never leave the pair.\n\
         - Generator (`{}`) on CPU 0 in the sender namespace{}. Frame pool: 8192 flows × (1 STUN Binding request + 3 RTP \
         packets), 214-byte frames, sent round-robin so consecutive frames differ in addresses.\n\
         - Receiver: GRO on (keeps veth's NAPI on for every contestant) and threaded NAPI; the NAPI kernel thread is \
         pinned to CPU 1 and runs SCHED_FIFO so other tasks do not cut its work into pieces. CPU per packet = the \
         thread's CPU time (/proc/PID/schedstat) ÷ frames the receiving veth handled (its rx_packets), per window; \
         {} windows of {} ms after {} ms of warm-up; medians with min–max. XDP_DROP runs first and last on each set \
         and its windows are pooled, so the limit spans the time the others were measured in. \"dropped before IP\" = frames that \
         never reached IP routing (routing-drop counters of the receiver namespace).\n\
         - The receiver is saturated only when the generator outruns it; when it is not (\"receiver CPU busy\" below \
         100%), its cost per packet includes being woken up for each batch.\n\
         - Prefix sets: N random disjoint IPv4 prefixes, lengths /8../32 drawn uniformly (a draw that overlaps is \
         drawn again, so short prefixes thin out), inside 0.0.0.0/1; each contestant holds exactly the set: \
         flowfilter as one category (policy drop), nftables as an interval set, ipset as hash:net, xdp-filter as \
         one exact address per prefix (the address the traffic targets; only where the set fits its map). Clients \
         and non-matching destinations come from 128.0.0.0/2. nftables and iptables check source and destination, \
         as flowfilter does. {}.\n\
         - flowfilter's live runs use its default policy (drop call media of a listed range); the first frame of each \
         flow creates flow state, the rest hit tracked flows.",
        meta.generator,
        if meta.generator == "xdp-live" {
            ": BPF_PROG_TEST_RUN with XDP live frames on a small program that writes the next frame of the pool \
             and returns XDP_TX, so frames arrive as XDP frames (like a NIC)"
        } else {
            ": AF_PACKET + sendmmsg, frames arrive as skbs"
        },
        t.windows,
        t.window_ms,
        t.warmup_ms,
        meta.lists_note
    );
}

/// The markdown report and the JSON figures (an array, one object per figure).
pub fn render(
    meta: &Meta,
    runs: &[SetRun],
    elapsed: f64,
    error: Option<&anyhow::Error>,
    problems: &[String],
) -> (String, Value) {
    let mut o = Out {
        md: String::new(),
        figures: Vec::new(),
        notes: Vec::new(),
    };
    let _ = writeln!(
        o.md,
        "# flowfilter benchmark{}\n\n- date: {}\n- command: `{}`\n- machine: {}\n- tools: {}\n- sets: {}\n- took {elapsed:.0} s (not counting the build)",
        if meta.quick { " (--quick)" } else { "" },
        meta.date,
        meta.command,
        meta.machine,
        meta.tools,
        runs.iter()
            .map(|r| format!("{} ({})", set_label(r), r.what))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if let Some(e) = error {
        let _ = writeln!(
            o.md,
            "\n**The run stopped early: {}**",
            short(&format!("{e:#}"))
        );
    }
    let mut body = Out {
        md: String::new(),
        figures: Vec::new(),
        notes: Vec::new(),
    };
    section_match(&mut body, runs);
    section_nomatch(&mut body, runs);
    section_own(&mut body, runs);
    section_kernel(&mut body, runs);
    section_control(&mut body, runs);
    section_targets(&mut o, runs);
    o.md.push_str(&body.md);
    o.figures.extend(body.figures);
    o.notes.extend(body.notes);
    o.notes.extend(problems.iter().map(|p| short(p)));
    method(&mut o, meta);
    if !o.notes.is_empty() {
        let _ = writeln!(o.md, "\n## Warnings\n");
        for n in &o.notes {
            let _ = writeln!(o.md, "- {n}");
        }
    }
    (o.md, Value::Array(o.figures))
}

#[cfg(test)]
// The figures compared are exact in binary (small integers and halves).
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    fn window(napi_ns: f64, frames: f64, routed: f64) -> Value {
        json!({"secs": 1.0, "napi_ns": napi_ns, "cpu_busy_ns": napi_ns, "rx_packets": frames,
               "routed_drops": routed})
    }

    fn live(windows: &[Value], own: &[Value]) -> Value {
        json!({"results": [{"traffic": "match", "windows": windows, "own": own}]})
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
        let v = live(
            &[
                window(100e6, 1e6, 0.0),
                window(300e6, 1e6, 0.0),
                window(200e6, 1e6, 5e5),
            ],
            &[json!({"run_ns": 3000, "run_cnt": 100})],
        );
        let k = kind(&v, "match").unwrap();
        assert_eq!(k.ns.med, 200.0);
        assert_eq!((k.ns.min, k.ns.max), (100.0, 300.0));
        assert_eq!(k.mpps.med, 1.0);
        assert_eq!(k.dropped.min, 0.5);
        assert_eq!(k.own.unwrap().med, 30.0);
        assert!(kind(&v, "nomatch").is_none());
        // A window without frames gives no ns figure, not a division by zero.
        let v = live(&[window(1e6, 0.0, 0.0), window(2e6, 1e4, 0.0)], &[]);
        let k = kind(&v, "match").unwrap();
        assert_eq!((k.ns.med, k.ns.samples), (200.0, 1));
        assert!(k.own.is_none());
    }

    #[test]
    fn ratios_and_targets() {
        let run = |c: Contestant, ns: f64| LiveRun {
            contestant: c,
            result: Ok(live(&[window(ns * 1e6, 1e6, 0.0)], &[])),
            setup_ms: None,
            memory: None,
            note: None,
        };
        let set = SetRun {
            lists: false,
            n: 1_000_000,
            what: "test".into(),
            kernel: Err("not run".into()),
            live: vec![
                run(Contestant::XdpDrop, 100.0),
                run(Contestant::Flowfilter, 150.0),
                run(Contestant::Nftables, 2000.0),
                // The limit's second run: pooled with the first.
                LiveRun {
                    result: Ok(live(
                        &[window(140e6, 1e6, 0.0), window(120e6, 1e6, 0.0)],
                        &[],
                    )),
                    ..run(Contestant::XdpDrop, 0.0)
                },
            ],
        };
        let mut o = Out {
            md: String::new(),
            figures: Vec::new(),
            notes: Vec::new(),
        };
        section_match(&mut o, std::slice::from_ref(&set));
        assert!(
            o.md.contains("| 1M | (a) XDP_DROP, the limit | 120 | 100–140 | 1.00× |"),
            "{}",
            o.md
        );
        assert!(
            o.md.contains("| 1M | (b) flowfilter | 150 | 150–150 | 1.25× |"),
            "{}",
            o.md
        );
        assert_eq!(o.md.matches("XDP_DROP, the limit").count(), 1);
        let ff = o
            .figures
            .iter()
            .find(|f| f["contestant"] == "flowfilter" && f["section"] == "receiver-cpu")
            .unwrap();
        assert_eq!(ff["ratio_to_limit"], json!(1.25));
        assert_eq!(ff["unit"], "ns/packet");
        let mut t = Out {
            md: String::new(),
            figures: Vec::new(),
            notes: Vec::new(),
        };
        section_targets(&mut t, std::slice::from_ref(&set));
        assert!(
            t.md.contains("matched media | 1M | 1.25× | yes |"),
            "{}",
            t.md
        );
        assert!(t.md.contains("at 1M | 1M | 13.3× | yes |"), "{}", t.md);
    }
}
