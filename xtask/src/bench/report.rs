//! From ffbench's raw figures to the report: medians over windows with
//! their min-max spread, ratios to the floors (xdp_parse_drop, the limit of
//! a filter that looks at packets, and XDP_DROP), the targets, markdown and
//! JSON.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::{Value, json};

use super::{Timing, quiet};

mod sections;
mod targets;
use sections::{KINDS, section_bounds, section_control, section_kernel, section_kind, section_own};
use targets::section_targets;

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
    /// Why the run's generator is not the one asked for (xdp-live refused
    /// by the kernel), said at the top of the report.
    pub generator_note: Option<String>,
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
            generator_note: None,
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
    if let Some(n) = &meta.generator_note {
        let _ = writeln!(o.md, "- generator: **{n}**");
    }
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
    section_bounds(&mut body, runs);
    section_control(&mut body, runs, meta.quick);
    section_targets(&mut o, runs, meta.quick, meta.generator == "xdp-live");
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
mod tests;
