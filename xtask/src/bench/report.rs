//! From ffbench's raw figures to the report: medians over windows with
//! their min-max spread, ratios to the floors (xdp_parse_drop, the limit of
//! a filter that looks at packets, and XDP_DROP), the targets, markdown and
//! JSON.

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
    XdpParseDrop,
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
            Contestant::XdpParseDrop => "xdp_parse_drop",
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
            Contestant::XdpDrop => "XDP_DROP",
            Contestant::XdpParseDrop => "xdp_parse_drop, the limit",
            Contestant::Flowfilter => "flowfilter",
            Contestant::Nftables => "nftables netdev ingress, interval set",
            Contestant::IptablesIpset => "iptables raw PREROUTING + ipset hash:net",
            Contestant::XdpFilter => "xdp-filter, exact addresses",
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

/// Which prefix set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// IPv4, lengths uniform /8../32.
    Random,
    /// IPv4, the length mix of real lists.
    Mix,
    /// IPv4 /32s.
    Hosts,
    /// IPv6.
    V6,
    /// The bundled lists.
    Lists,
}

impl SetKind {
    /// Name in report.json (`set`) and for `ffbench set --kind`.
    pub fn key(self) -> &'static str {
        match self {
            SetKind::Random => "random",
            SetKind::Mix => "mix",
            SetKind::Hosts => "hosts",
            SetKind::V6 => "v6",
            SetKind::Lists => "lists",
        }
    }
}

/// Everything measured on one prefix set.
pub struct SetRun {
    pub kind: SetKind,
    pub family: u8,
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

fn round(x: f64) -> f64 {
    if x.abs() >= 100.0 {
        (x * 10.0).round() / 10.0
    } else {
        (x * 1000.0).round() / 1000.0
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

/// What one traffic kind of one contestant gives (its runs on a set pooled).
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
    /// Bytes per frame the receiving veth counted.
    frame_bytes: Option<Stat>,
    /// Mean length of the frames the pool sends round and round.
    frame_len: Option<f64>,
    /// Share of the frames a filter should pass (junk: less its
    /// WhatsApp-signature frames).
    expect_passed: Option<f64>,
    /// The XDP program's own ns per run (BPF run-time statistics).
    own: Option<Stat>,
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// The figures of one traffic kind from a `results` entry (windows pooled).
fn kind_from(
    windows: &[Value],
    own: &[Value],
    frame_len: Option<f64>,
    expect_passed: Option<f64>,
) -> Option<Kind> {
    let per = |f: &dyn Fn(&Value) -> f64| -> Vec<f64> { windows.iter().map(f).collect() };
    let frames = |w: &Value| num(w, "rx_packets");
    let per_frame = |k: &'static str| {
        move |w: &Value| {
            if frames(w) > 0.0 {
                num(w, k) / frames(w)
            } else {
                f64::NAN
            }
        }
    };
    let own: Vec<f64> = own
        .iter()
        .filter(|o| num(o, "run_cnt") > 0.0)
        .map(|o| num(o, "run_ns") / num(o, "run_cnt"))
        .collect();
    Some(Kind {
        ns: stat(&per(&per_frame("napi_ns")))?,
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
        frame_bytes: stat(&per(&per_frame("rx_bytes"))),
        frame_len,
        expect_passed,
        own: stat(&own),
    })
}

struct Out {
    md: String,
    figures: Vec<Value>,
    notes: Vec<String>,
}

/// A figure's ratios: to xdp_parse_drop (`ratio_to_limit`) and to XDP_DROP.
#[derive(Clone, Copy, Debug, Default)]
struct Ratios {
    limit: Option<f64>,
    xdp_drop: Option<f64>,
}

impl Out {
    fn new() -> Out {
        Out {
            md: String::new(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn figure(
        &mut self,
        section: &str,
        contestant: &str,
        run: &SetRun,
        kind: &str,
        value: f64,
        unit: &str,
        r: Ratios,
        s: Option<Stat>,
    ) {
        let mut o = json!({
            "section": section,
            "contestant": contestant,
            "n": run.n,
            "set": run.kind.key(),
            "family": run.family,
            "kind": kind,
            "value": round(value),
            "unit": unit,
            "ratio_to_limit": r.limit.map(round),
            "ratio_to_xdp_drop": r.xdp_drop.map(round),
        });
        if let Some(s) = s {
            o["min"] = json!(round(s.min));
            o["max"] = json!(round(s.max));
            o["samples"] = json!(s.samples);
        }
        self.figures.push(o);
    }
}

fn set_label(r: &SetRun) -> String {
    match r.kind {
        SetKind::Random => fmt_n(r.n),
        SetKind::Lists => format!("lists ({})", r.n),
        k => format!("{} {}", k.key(), fmt_n(r.n)),
    }
}

fn live_of(run: &SetRun, c: Contestant) -> Option<&LiveRun> {
    run.live.iter().find(|l| l.contestant == c)
}

/// A contestant's figures on one traffic kind, pooled over its runs on the
/// set (the floors run twice: first and last).
fn kind_of(run: &SetRun, c: Contestant, traffic: &str) -> Option<Kind> {
    let (mut windows, mut own, mut frame_len, mut expect) = (Vec::new(), Vec::new(), None, None);
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
        frame_len = frame_len.or(r["frame_len_mean"].as_f64());
        expect = expect.or(r["expect_passed"].as_f64());
    }
    if windows.is_empty() {
        return None;
    }
    kind_from(&windows, &own, frame_len, expect)
}

/// The floors on one set and traffic kind: xdp_parse_drop and XDP_DROP.
#[derive(Clone, Copy, Debug, Default)]
struct Floors {
    parse: Option<Kind>,
    drop: Option<Kind>,
}

impl Floors {
    fn of(run: &SetRun, traffic: &str) -> Floors {
        Floors {
            parse: kind_of(run, Contestant::XdpParseDrop, traffic),
            drop: kind_of(run, Contestant::XdpDrop, traffic),
        }
    }

    /// Ratios of a receiver ns/packet figure.
    fn ratios(&self, ns: f64) -> Ratios {
        Ratios {
            limit: ratio(ns, self.parse.map(|k| k.ns.med)),
            xdp_drop: ratio(ns, self.drop.map(|k| k.ns.med)),
        }
    }

    /// Ratios of an own ns/run figure.
    fn own_ratios(&self, ns: f64) -> Ratios {
        Ratios {
            limit: ratio(ns, self.parse.and_then(|k| k.own).map(|o| o.med)),
            xdp_drop: ratio(ns, self.drop.and_then(|k| k.own).map(|o| o.med)),
        }
    }
}

/// flowfilter's XDP-level estimate on a kind it passes to the stack:
/// xdp_parse_drop's receiver ns/packet + (flowfilter's own ns/run −
/// xdp_parse_drop's own ns/run), all on that kind.
fn estimate(run: &SetRun, traffic: &str) -> Option<f64> {
    let p = Floors::of(run, traffic).parse?;
    let ff = kind_of(run, Contestant::Flowfilter, traffic)?.own?;
    Some(p.ns.med + ff.med - p.own?.med)
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

const LIVE_ORDER: [Contestant; 7] = [
    Contestant::XdpDrop,
    Contestant::XdpParseDrop,
    Contestant::Flowfilter,
    Contestant::Nftables,
    Contestant::IptablesIpset,
    Contestant::XdpFilter,
    Contestant::None,
];

/// The traffic kinds: name, description, whether flowfilter passes it.
const KINDS: [(&str, &str, bool); 4] = [
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

fn section_kind(o: &mut Out, runs: &[SetRun], idx: usize) {
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
fn kind_or_failed(l: &LiveRun, traffic: &str) -> bool {
    match &l.result {
        Err(_) => traffic == "match" || traffic == "nomatch",
        Ok(v) => v["results"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["traffic"] == traffic)),
    }
}

/// Warnings a live figure deserves.
fn notes_of(o: &mut Out, run: &SetRun, c: Contestant, traffic: &str, passes: bool, k: &Kind) {
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

fn section_own(o: &mut Out, runs: &[SetRun]) {
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

fn section_kernel(o: &mut Out, runs: &[SetRun]) {
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

fn section_control(o: &mut Out, runs: &[SetRun], quick: bool) {
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

/// One row of the targets table.
struct Target<'a> {
    /// `kind` of the target's row in report.json.
    key: &'static str,
    /// The set the figure is on (the larger one of a growth).
    of: Option<&'a SetRun>,
    what: String,
    at: String,
    measured: Option<f64>,
    /// Shown instead of the figure when there is none.
    why: String,
    /// The figure must be at most (`true`) or at least this.
    limit: f64,
    at_most: bool,
    unit: &'static str,
}

impl Target<'_> {
    fn met(&self) -> Option<bool> {
        self.measured.map(|m| {
            if self.at_most {
                m <= self.limit
            } else {
                m >= self.limit
            }
        })
    }
}

/// The random IPv4 set of size `n`, else the largest one measured with a
/// note saying so.
fn random_at(runs: &[SetRun], kind: SetKind, n: usize) -> Option<(&SetRun, String)> {
    let of = |r: &&SetRun| r.kind == kind && !r.live.is_empty();
    if let Some(r) = runs.iter().filter(of).find(|r| r.n == n) {
        return Some((r, String::new()));
    }
    runs.iter().filter(of).max_by_key(|r| r.n).map(|r| {
        (
            r,
            format!(" ({} not measured: {} shown)", fmt_n(n), fmt_n(r.n)),
        )
    })
}

/// Why a flowfilter figure is missing on a set.
fn why_missing(run: &SetRun, traffic: &str) -> String {
    if let Ok(k) = &run.kernel
        && let Some(e) = k["install_error"].as_str()
    {
        return format!("failed: {}", short(e));
    }
    missing(live_of(run, Contestant::Flowfilter), traffic)
}

/// flowfilter's cost on a set: receiver ns/packet (match, flood) or the
/// XDP-level estimate (nomatch, junk).
fn cost(run: &SetRun, traffic: &str) -> Option<f64> {
    if traffic == "nomatch" || traffic == "junk" {
        estimate(run, traffic)
    } else {
        kind_of(run, Contestant::Flowfilter, traffic).map(|k| k.ns.med)
    }
}

fn targets<'a>(runs: &'a [SetRun], quick: bool) -> Vec<Target<'a>> {
    let mut t = Vec::new();
    let t100k = random_at(runs, SetKind::Random, 100_000);
    // The random sets with live runs (the 1M memory rows have none).
    let live_random: Vec<&SetRun> = runs
        .iter()
        .filter(|r| r.kind == SetKind::Random && !r.live.is_empty())
        .collect();
    // Per N: matched media and the non-matching estimate.
    for run in live_random.iter().copied() {
        let fl = Floors::of(run, "match");
        let m =
            kind_of(run, Contestant::Flowfilter, "match").and_then(|k| fl.ratios(k.ns.med).limit);
        t.push(Target {
            key: "match-over-parse-drop",
            of: Some(run),
            what: "matched media ≤ 1.6× xdp_parse_drop".into(),
            at: set_label(run),
            measured: m,
            why: why_missing(run, "match"),
            limit: 1.6,
            at_most: true,
            unit: "×",
        });
    }
    for run in live_random.iter().copied() {
        let fl = Floors::of(run, "nomatch");
        t.push(Target {
            key: "nomatch-estimate-over-parse-drop",
            of: Some(run),
            what: "non-matching, XDP-level estimate ≤ 1.15× xdp_parse_drop".into(),
            at: set_label(run),
            measured: estimate(run, "nomatch").and_then(|e| fl.ratios(e).limit),
            why: why_missing(run, "nomatch"),
            limit: 1.15,
            at_most: true,
            unit: "×",
        });
    }
    // Growth from N = 10 to the largest target N.
    let big_n = if quick { 100_000 } else { 1_000_000 };
    let growth = |t: &mut Vec<Target<'a>>, kind: SetKind, big_n: usize, limit: f64, what: &str| {
        let small = runs.iter().find(|r| r.kind == kind && r.n == 10);
        let big = random_at(runs, kind, big_n);
        for traffic in ["match", "nomatch"] {
            let (measured, why, at) = match (small, &big) {
                (Some(s), Some((b, note))) => {
                    let m = cost(s, traffic).zip(cost(b, traffic)).map(|(s, b)| b / s);
                    let why = if cost(s, traffic).is_none() {
                        why_missing(s, traffic)
                    } else {
                        why_missing(b, traffic)
                    };
                    (m, why, format!("{} → {}{note}", set_label(s), set_label(b)))
                }
                _ => (None, "not measured".into(), String::new()),
            };
            t.push(Target {
                key: if traffic == "match" {
                    "growth-match"
                } else {
                    "growth-nomatch-estimate"
                },
                of: big.as_ref().map(|b| b.0),
                what: format!(
                    "{what} cost growth, {traffic}{} ≤ {limit}×",
                    if traffic == "nomatch" {
                        " (estimate)"
                    } else {
                        ""
                    }
                ),
                at,
                measured,
                why,
                limit,
                at_most: true,
                unit: "×",
            });
        }
    };
    growth(&mut t, SetKind::Random, big_n, 1.15, "IPv4");
    if let Some((run, note)) = &t100k {
        let fl = Floors::of(run, "flood");
        t.push(Target {
            key: "flood-over-xdp-drop",
            of: Some(run),
            what: "flood ≤ 3× XDP_DROP".into(),
            at: format!("{}{note}", set_label(run)),
            measured: kind_of(run, Contestant::Flowfilter, "flood")
                .and_then(|k| fl.ratios(k.ns.med).xdp_drop),
            why: why_missing(run, "flood"),
            limit: 3.0,
            at_most: true,
            unit: "×",
        });
    }
    let (nft_n, nft_x) = if quick {
        (100_000, 8.0)
    } else {
        (1_000_000, 10.0)
    };
    if let Some((run, note)) = random_at(runs, SetKind::Random, nft_n) {
        let f = kind_of(run, Contestant::Flowfilter, "match");
        let n = kind_of(run, Contestant::Nftables, "match");
        t.push(Target {
            key: "nftables-over-flowfilter",
            of: Some(run),
            what: format!("nftables ≥ {nft_x}× flowfilter's cost (match)"),
            at: format!("{}{note}", set_label(run)),
            measured: f.zip(n).map(|(f, n)| n.ns.med / f.ns.med),
            why: if f.is_none() {
                why_missing(run, "match")
            } else {
                missing(live_of(run, Contestant::Nftables), "match")
            },
            limit: nft_x,
            at_most: false,
            unit: "×",
        });
    }
    for run in runs.iter().filter(|r| r.n == 1_000_000) {
        let Ok(k) = &run.kernel else { continue };
        t.push(Target {
            key: "swap",
            of: Some(run),
            what: "1M-prefix swap < 500 ms".into(),
            at: set_label(run),
            measured: stat(&floats(&k["swap_ms"])).map(|s| s.med),
            why: k["install_error"]
                .as_str()
                .map_or_else(|| "not run".into(), |e| format!("failed: {}", short(e))),
            limit: 500.0,
            at_most: true,
            unit: " ms",
        });
    }
    growth(&mut t, SetKind::V6, 100_000, 1.5, "IPv6");
    t
}

fn section_targets(o: &mut Out, runs: &[SetRun], quick: bool) {
    let _ = writeln!(
        o.md,
        "\n## Targets\n\n\
         Ratios are of receiver CPU per packet on the same set and traffic (sections 1a–1d); \"estimate\" is the \
         XDP-level figure for traffic flowfilter passes to the stack.\n\n\
         | target | set | measured | met |\n|---|---|---:|---|"
    );
    for t in targets(runs, quick) {
        let (m, met) = match (t.measured, t.met()) {
            (Some(m), Some(ok)) => (
                if t.unit == "×" {
                    format!("{m:.2}×")
                } else {
                    format!("{m:.0}{}", t.unit)
                },
                if ok { "yes" } else { "**no**" },
            ),
            _ => (t.why.clone(), "–"),
        };
        let _ = writeln!(o.md, "| {} | {} | {m} | {met} |", t.what, t.at);
        o.figures.push(json!({
            "section": "targets",
            "contestant": "flowfilter",
            "n": t.of.map(|r| r.n),
            "set": t.of.map(|r| r.kind.key()),
            "family": t.of.map(|r| r.family),
            "kind": t.key,
            "value": t.measured.map(round),
            "unit": if t.unit == "×" { "ratio" } else { "ms" },
            "ratio_to_limit": null,
            "ratio_to_xdp_drop": null,
            "target": t.what,
            "at": t.at,
            "limit": t.limit,
            "met": t.met(),
        }));
    }
}

fn method(o: &mut Out, meta: &Meta) {
    let t = meta.timing;
    let _ = writeln!(
        o.md,
        "\n## Method\n\n\
         - Two network namespaces joined by a veth pair (one queue each way), documentation addresses on it; the \
         receiver forwards nothing, so frames never leave the pair.\n\
         - Generator (`{}`) on CPU 0 in the sender namespace{}.\n\
         - Traffic, per set (65,536 flows; consecutive frames always belong to different flows): `match` and `nomatch` \
         are established calls in both directions: each flow's first frame is a STUN Binding request (sent once, \
         and run once through flowfilter with BPF_PROG_TEST_RUN before sending, so every flow is a known call), \
         then 4 media rounds sent round and round, alternating direction: RTP (PT 111, one SSRC per direction, \
         sequence numbers +1, payloads 60–250 bytes drawn per packet) and, on 1% of the flows, a STUN consent \
         check (request one way, success response the other) — 0.5% of the looped frames. `match` goes to a \
         target address inside a random prefix of the set; `nomatch` to near misses: an address outside the set in \
         the /24 (prefixes longer than /24) or the /16 (/17–/24) of a random prefix (IPv6: the prefix with one of \
         its last 8 bits flipped), so non-matching look-ups reach the deep parts of the tables. Clients come from \
         128.0.0.0/2 (IPv6: 3000::/4), outside the set. `flood`: 4096 STUN Binding requests to targets, the \
         generator writing a running 32-bit number over the UDP ports of every frame sent (a new 5-tuple each \
         packet, UDP checksum 0). `junk`: to near misses, 10% of the flows three WhatsApp private STUN messages \
         (type 0x0801, magic cookie, exact length) from one spoofed socket (port ≥ 1024), the other 90% random \
         payloads (48–240 bytes, multiples of 16) from other sockets to the spoofed calls' destination sockets. Frame lengths vary; the receiver's byte counter checks them (\"frame B\").\n\
         - Receiver: GRO on (keeps veth's NAPI on for every contestant) and threaded NAPI; the NAPI kernel thread is \
         pinned to CPU 1 and runs SCHED_FIFO so other tasks do not cut its work into pieces. CPU per packet = the \
         thread's CPU time (/proc/PID/schedstat) ÷ frames the receiving veth handled (its rx_packets), per window; \
         {} windows of {} ms after {} ms of warm-up; medians with min–max. \"dropped before IP\" = frames that never \
         reached IP (the receiver namespace's IPv4 routing-drop counters and, IPv6 being disabled there, its \
         IPv6 discards: so IPv6 frames a filter passes cost the stack less than IPv4 ones).\n\
         - Floors: XDP_DROP (drops without reading) and xdp_parse_drop (flowfilter's parser over Ethernet/VLAN/IP/UDP \
         and a 32-byte payload read, then XDP_DROP: the least any filter that looks at packets can cost). Each \
         runs every traffic kind of the set (frames differ), first and last on each set, windows pooled, so they \
         span the time the others were measured in. `ratio_to_limit` in report.json is the ratio to xdp_parse_drop \
         on the same set and traffic, `ratio_to_xdp_drop` to XDP_DROP.\n\
         - The receiver is saturated only when the generator outruns it; when it is not (\"receiver busy\" below \
         100%), its cost per packet includes being woken up for each batch.\n\
         - Prefix sets: random = N disjoint IPv4 prefixes, lengths /8../32 drawn uniformly (a draw that overlaps is \
         drawn again, so short prefixes thin out), in 0.0.0.0/1; mix = the length mix of real lists (see the set \
         line above for what could be placed); hosts = /32s; v6 = N disjoint IPv6 prefixes in 2000::/4, /20../64 \
         and ~5% /65../128. Each contestant holds exactly the set: flowfilter as one category (policy drop), \
         nftables as an interval set, ipset as hash:net, xdp-filter as one exact address per prefix (the address \
         the traffic targets; only where the set fits its map). nftables and iptables check source and \
         destination, as flowfilter does. {}.\n\
         - {}",
        meta.generator,
        if meta.generator == "xdp-live" {
            ": BPF_PROG_TEST_RUN with XDP live frames on a small program that writes the next frame of the pool \
             (stored at the pool's longest length, then cut with bpf_xdp_adjust_tail) and returns XDP_TX, so \
             frames arrive as XDP frames (like a NIC)"
        } else {
            ": AF_PACKET + sendmmsg, frames arrive as skbs"
        },
        t.windows,
        t.window_ms,
        t.warmup_ms,
        meta.lists_note,
        if meta.quick {
            "--quick: random N = 10 and 100k, IPv6 N = 10 and 100k; the three 1M IPv4 sets (random, mix, hosts) \
             get their control-plane and memory rows only (about 10 s together); the full bench adds N = 10k and \
             1M (random), IPv6 10k, live match/nomatch on the 1M mix and hosts sets, and longer windows."
        } else {
            "Full bench: random N = 10, 10k, 100k, 1M; IPv6 N = 10, 10k, 100k; 1M mix and hosts with live \
             match/nomatch."
        }
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
    let mut o = Out::new();
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
    let mut body = Out::new();
    let _ = writeln!(
        body.md,
        "\n## 1. Receiver CPU per packet\n\n\
         CPU = the receiving veth's NAPI thread, ns per frame it handled (median of windows, min–max); × parse_drop \
         and × XDP_DROP = ratio to the floors on the same set and traffic."
    );
    for i in 0..KINDS.len() {
        section_kind(&mut body, runs, i);
    }
    section_own(&mut body, runs);
    section_kernel(&mut body, runs);
    section_control(&mut body, runs, meta.quick);
    section_targets(&mut o, runs, meta.quick);
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
}
