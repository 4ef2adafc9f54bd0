//! Replay of the real captures in ../shared/corpus through the compiled
//! program (BPF_PROG_TEST_RUN), against nDPI's per-flow verdicts, with lists
//! built from ../shared/data/ranges.
//!
//! The bar (issue 3): every flow nDPI labels WhatsAppCall, TelegramVoip or
//! Telegram over UDP is stopped (at most 5 of its packets pass, and at least
//! 90% of the rest drop); no packet of any other flow drops; `monitor` drops
//! nothing and counts exactly what `drop` drops; under `flows=50%` each
//! caller's flows share one fate.
//!
//! One deliberate exception, checked rather than waved through: a flow nDPI
//! could not name (`Unknown`) that shares its local ip:port with a stopped
//! call flow is that call's peer-to-peer leg (inherited endpoint) and is
//! expected to stop too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use filter_common::XDP_DROP;
use filter_user::control::install::InstallLists as _;
use filter_user::dataplane::loader::{Filter, LoadOptions};
use filter_user::lists::{Lists, ParsedList, parse_list};
use filter_user::replay::capture::read_capture;
use filter_user::replay::{FlowReport, replay, replay_captured, replay_setup};
use flowfilter_tests::{corpus_dir, policies, ranges_dir, require_root, skip_unless_root};

/// One flow line of ndpiReader's output.
#[derive(Debug, Clone)]
struct NdpiFlow {
    proto: String,
    a: SocketAddr,
    b: SocketAddr,
    label: String,
}

fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    s.parse().ok().or_else(|| {
        // ndpiReader writes IPv6 as [addr]:port already; IPv4 as a.b.c.d:port.
        let (ip, port) = s.rsplit_once(':')?;
        Some(SocketAddr::new(
            ip.trim_matches(['[', ']']).parse::<IpAddr>().ok()?,
            port.parse().ok()?,
        ))
    })
}

fn ndpi_flows(out: &Path) -> Vec<NdpiFlow> {
    let text = std::fs::read_to_string(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let mut flows = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let mut it = t.splitn(2, '\t');
        let (Some(num), Some(rest)) = (it.next(), it.next()) else {
            continue;
        };
        if num.parse::<u32>().is_err() {
            continue;
        }
        let mut w = rest.split_whitespace();
        let (Some(proto), Some(a), Some(_arrow), Some(b)) =
            (w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let Some(label) = rest
            .split("[proto: ")
            .nth(1)
            .and_then(|r| r.split(']').next())
        else {
            continue;
        };
        // "338.45/SRTP.WhatsAppCall" -> "SRTP.WhatsAppCall"
        let label = label.split_once('/').map_or(label, |(_, l)| l).to_string();
        let (Some(a), Some(b)) = (parse_endpoint(a), parse_endpoint(b)) else {
            continue;
        };
        flows.push(NdpiFlow {
            proto: proto.to_string(),
            a,
            b,
            label,
        });
    }
    flows
}

fn is_target(f: &NdpiFlow) -> bool {
    f.proto == "UDP"
        && (f.label.contains("WhatsAppCall")
            || f.label.contains("TelegramVoip")
            || f.label == "Telegram"
            || f.label.ends_with(".Telegram"))
}

/// whatsapp: the WhatsApp-only server list; telegram: Telegram's ranges.
/// Meta's whole ranges are left out on purpose: they carry Facebook and
/// Messenger calls too (stun.pcap has one), which must pass.
fn corpus_lists() -> Option<Lists> {
    let dir = ranges_dir()?;
    let read = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let wa = parse_list(
        "whatsapp.txt",
        &read(&["hybridnetworks-whatsapp-ipv4.txt"]),
        false,
    )
    .expect("whatsapp list");
    let tg = parse_list(
        "telegram.txt",
        &read(&["itdoginfo-ipv4-telegram.lst", "itdoginfo-ipv6-telegram.lst"]),
        false,
    )
    .expect("telegram list");
    Some(
        Lists::from_parts(
            vec![("whatsapp".into(), wa), ("telegram".into(), tg)],
            ParsedList::default(),
        )
        .expect("lists"),
    )
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    v.sort();
    v
}

fn run(lists: &Lists, specs: &[(&str, &str)], capture: &Path) -> Vec<FlowReport> {
    let frames = read_capture(capture).unwrap_or_else(|e| panic!("{e}"));
    let mut f = Filter::load(&LoadOptions { trace: true }).expect("load");
    f.install(lists, &policies(lists, specs)).expect("install");
    replay(&mut f, lists, frames.iter().map(|fr| fr.data.as_slice()))
        .expect("replay")
        .flows
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Setup shared by the corpus tests, or `None` with a printed reason.
fn setup(test: &str) -> Option<(PathBuf, Lists)> {
    if !require_root(test) {
        return None;
    }
    let (Some(dir), Some(lists)) = (corpus_dir(), corpus_lists()) else {
        eprintln!(
            "skipped {test}: ../shared/corpus or ../shared/data/ranges not found (a user's machine)"
        );
        return None;
    };
    Some((dir, lists))
}

/// Fails naming `bar` with every one of `failures`, if there are any.
#[track_caller]
fn assert_met(bar: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{bar} not met:\n{}",
        failures.join("\n")
    );
}

#[test]
fn corpus_calls_stopped_everything_else_untouched() {
    let Some((dir, lists)) = setup("corpus_calls_stopped_everything_else_untouched") else {
        return;
    };
    let mut failures = Vec::new();
    eprintln!(
        "{:<34} {:>14} {:>12} {:>14}",
        "capture", "targets", "other", "p2p-inherited"
    );
    for cap in captures(&dir) {
        let out = PathBuf::from(format!("{}.out", cap.display()));
        let ndpi = ndpi_flows(&out);
        let labels: HashMap<_, _> = ndpi.iter().map(|f| (key(f.a, f.b), f)).collect();
        let flows = run(&lists, &[], &cap);
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        // Local endpoints of stopped target flows (for the p2p exception).
        let mut call_endpoints: HashSet<SocketAddr> = HashSet::new();
        let (mut targets, mut stopped, mut others, mut touched, mut p2p) = (0, 0, 0, 0, 0);
        for f in &flows {
            if let Some(n) = labels.get(&key(f.src, f.dst))
                && is_target(n)
            {
                {
                    targets += 1;
                    let passed = f.packets - f.dropped;
                    let rest = f.packets.saturating_sub(5);
                    if passed <= 5 && f.dropped * 10 >= rest * 9 {
                        stopped += 1;
                        call_endpoints.extend([f.src, f.dst]);
                    } else {
                        failures.push(format!(
                            "{name}: target {} {} -> {} ({}): {} of {} passed",
                            n.proto, f.src, f.dst, n.label, passed, f.packets
                        ));
                    }
                }
            }
        }
        for f in &flows {
            let n = labels.get(&key(f.src, f.dst));
            if n.is_some_and(|n| is_target(n)) {
                continue;
            }
            others += 1;
            if f.dropped == 0 {
                continue;
            }
            let unknown = n.is_none_or(|n| n.label == "Unknown");
            if unknown
                && f.proto == 17
                && (call_endpoints.contains(&f.src) || call_endpoints.contains(&f.dst))
            {
                p2p += 1;
                continue;
            }
            touched += 1;
            failures.push(format!(
                "{name}: other flow {} {} -> {} ({}) had {} of {} packets dropped (label {:?})",
                f.proto_name(),
                f.src,
                f.dst,
                n.map_or("no nDPI line", |n| n.label.as_str()),
                f.dropped,
                f.packets,
                f.label
            ));
        }
        eprintln!(
            "{name:<34} {:>14} {:>12} {p2p:>14}",
            format!("{stopped}/{targets} stopped"),
            format!("{touched}/{others} touched")
        );
    }
    assert_met("corpus bar", &failures);
}

#[test]
fn corpus_monitor_counts_what_drop_drops() {
    let Some((dir, lists)) = setup("corpus_monitor_counts_what_drop_drops") else {
        return;
    };
    for cap in captures(&dir) {
        let dropped = run(&lists, &[], &cap);
        let monitored = run(
            &lists,
            &[("whatsapp", "monitor"), ("telegram", "monitor")],
            &cap,
        );
        assert_eq!(dropped.len(), monitored.len(), "{}", cap.display());
        for (d, m) in dropped.iter().zip(&monitored) {
            assert_eq!(
                (d.src, d.dst),
                (m.src, m.dst),
                "{}: same flow order",
                cap.display()
            );
            assert_eq!(
                m.dropped,
                0,
                "{}: monitor dropped on {} -> {}",
                cap.display(),
                m.src,
                m.dst
            );
            assert_eq!(
                m.monitored,
                d.dropped,
                "{}: monitored vs dropped on {} -> {}",
                cap.display(),
                m.src,
                m.dst
            );
        }
    }
}

/// A UDP datagram of `frame` (Ethernet, IPv4 or IPv6 with no extension
/// header, a payload after the UDP header) as the two fragments the
/// circumvention trick sends: the first carries only the UDP header, the
/// second the whole payload at offset 8. `None` for anything else.
fn frag8(frame: &[u8], id: u32) -> Option<(Vec<u8>, Vec<u8>)> {
    let be16 = |b: &[u8], at: usize| usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
    let ethertype = be16(frame, 12);
    if ethertype == 0x0800 {
        let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
        let total = be16(frame, 16);
        let l4 = 14 + ihl;
        if frame[23] != 17 || be16(frame, 20) & 0x3fff != 0 || total > frame.len() - 14 {
            return None;
        }
        let udp_len = be16(frame, l4 + 4);
        if udp_len <= 8 || l4 + udp_len > 14 + total {
            return None;
        }
        let header = |len: usize, flags_off: u16| {
            let mut h = frame[..l4].to_vec();
            h[16..18].copy_from_slice(&((ihl + len) as u16).to_be_bytes());
            h[18..20].copy_from_slice(&(id as u16).to_be_bytes());
            h[20..22].copy_from_slice(&flags_off.to_be_bytes());
            h[24..26].copy_from_slice(&[0, 0]);
            let sum = filter_common::pktbuild::internet_checksum(&[&h[14..l4]]);
            h[24..26].copy_from_slice(&sum.to_be_bytes());
            h
        };
        let mut first = header(8, 0x2000);
        first.extend_from_slice(&frame[l4..l4 + 8]);
        let mut second = header(udp_len - 8, 1);
        second.extend_from_slice(&frame[l4 + 8..l4 + udp_len]);
        Some((first, second))
    } else if ethertype == 0x86dd {
        let l4 = 14 + 40;
        if frame.len() < l4 + 8 || frame[20] != 17 {
            return None;
        }
        let udp_len = be16(frame, l4 + 4);
        if udp_len <= 8 || l4 + udp_len > frame.len() || be16(frame, 18) != udp_len {
            return None;
        }
        let header = |len: usize, off_m: u16| {
            let mut h = frame[..l4].to_vec();
            h[18..20].copy_from_slice(&((8 + len) as u16).to_be_bytes());
            h[20] = 44;
            h.extend_from_slice(&[17, 0]);
            h.extend_from_slice(&off_m.to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            h
        };
        let mut first = header(8, 1);
        first.extend_from_slice(&frame[l4..l4 + 8]);
        let mut second = header(udp_len - 8, 1 << 3);
        second.extend_from_slice(&frame[l4 + 8..l4 + udp_len]);
        Some((first, second))
    } else {
        None
    }
}

/// The trick of the evasion issue on real calls: every UDP datagram of every
/// capture sent as two fragments split right after the UDP header (once
/// every datagram got through). Each datagram is judged as a whole: it is
/// stopped when either fragment drops. Every call flow is stopped as in the
/// unfragmented replay (at most 5 datagrams through, 90% of the rest
/// stopped); no other flow loses a datagram unless it involves a listed
/// range (a header-only first fragment toward a listed range is dropped by
/// address, RFC 1858) or is the call's inherited peer-to-peer leg.
#[test]
fn corpus_calls_split_after_the_udp_header_are_stopped() {
    let Some((dir, lists)) = setup("corpus_calls_split_after_the_udp_header_are_stopped") else {
        return;
    };
    let mut failures = Vec::new();
    let mut split_total = 0;
    for cap in captures(&dir) {
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        let labels: HashMap<_, _> = ndpi_flows(&PathBuf::from(format!("{}.out", cap.display())))
            .into_iter()
            .map(|f| (key(f.a, f.b), f))
            .collect();
        let frames = read_capture(&cap).unwrap_or_else(|e| panic!("{e}"));
        let mut f = Filter::load(&LoadOptions { trace: false }).expect("load");
        f.install(&lists, &policies(&lists, &[])).expect("install");
        // Per 5-tuple: datagrams, stopped datagrams.
        let mut flows: BTreeMap<(SocketAddr, SocketAddr), (u64, u64)> = BTreeMap::new();
        for (i, fr) in frames.iter().enumerate() {
            let Some((head, rest)) = frag8(&fr.data, 0x4000 + i as u32) else {
                f.run(&fr.data).expect("run");
                continue;
            };
            split_total += 1;
            let stopped = f.run(&head).expect("run") == XDP_DROP;
            let stopped = (f.run(&rest).expect("run") == XDP_DROP) | stopped;
            let filter_common::parse::Parsed::Ip(pkt) =
                filter_common::parse::parse_frame(fr.data.as_slice())
            else {
                panic!("{name}: frame {i} split but not parsed");
            };
            let ip = |a: &[u8; 16]| {
                let v6 = std::net::Ipv6Addr::from(*a);
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            };
            let k = key(
                SocketAddr::new(ip(&pkt.src), pkt.sport),
                SocketAddr::new(ip(&pkt.dst), pkt.dport),
            );
            let e = flows.entry(k).or_default();
            e.0 += 1;
            e.1 += u64::from(stopped);
        }
        let listed = |a: &SocketAddr| f.lookup(a.ip()).expect("lookup") != 0;
        let mut call_endpoints = HashSet::new();
        let (mut targets, mut stopped_targets) = (0, 0);
        for (k, &(n, stopped)) in &flows {
            if labels.get(k).is_some_and(is_target) {
                targets += 1;
                let through = n - stopped;
                if through <= 5 && stopped * 10 >= n.saturating_sub(5) * 9 {
                    stopped_targets += 1;
                    call_endpoints.extend([k.0, k.1]);
                } else {
                    failures.push(format!(
                        "{name}: call {} <-> {} ({}): {through} of {n} datagrams through",
                        k.0, k.1, labels[k].label
                    ));
                }
            }
        }
        for (k, &(n, stopped)) in &flows {
            let label = labels.get(k);
            if stopped == 0 || label.is_some_and(is_target) {
                continue;
            }
            let inherited = label.is_none_or(|l| l.label == "Unknown")
                && (call_endpoints.contains(&k.0) || call_endpoints.contains(&k.1));
            if inherited || listed(&k.0) || listed(&k.1) {
                continue;
            }
            failures.push(format!(
                "{name}: other flow {} <-> {} ({}) lost {stopped} of {n} datagrams",
                k.0,
                k.1,
                label.map_or("no nDPI line", |l| l.label.as_str())
            ));
        }
        eprintln!("{name:<34} {stopped_targets}/{targets} calls stopped, split into fragments");
    }
    assert!(
        split_total > 1000,
        "only {split_total} datagrams split: the corpus reads wrong"
    );
    assert_met("fragmented corpus bar", &failures);
}

#[test]
fn corpus_flows_50_percent_one_fate_per_caller() {
    let Some((dir, lists)) = setup("corpus_flows_50_percent_one_fate_per_caller") else {
        return;
    };
    for cap in captures(&dir) {
        let flows = run(
            &lists,
            &[("whatsapp", "flows=50%"), ("telegram", "flows=50%")],
            &cap,
        );
        // Caller: the private-side address of each categorised flow.
        let mut fate: BTreeMap<IpAddr, (u64, u64)> = BTreeMap::new();
        for f in flows.iter().filter(|f| f.category.is_some()) {
            let caller = if is_private(f.src.ip()) {
                f.src.ip()
            } else {
                f.dst.ip()
            };
            let e = fate.entry(caller).or_default();
            if f.dropped > 0 {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        for (caller, (stopped, spared)) in fate {
            assert!(
                stopped == 0 || spared == 0,
                "{}: caller {caller}: {stopped} flows stopped, {spared} spared",
                cap.display()
            );
        }
    }
}

/// Replay `capture` under `flows=percent%` for both categories, with the
/// default subscriber side (private and shared address space), the seed
/// `seed` and the capture's own clock.
fn run_subscribers(lists: &Lists, percent: u8, seed: u64, capture: &Path) -> Vec<FlowReport> {
    let frames = read_capture(capture).unwrap_or_else(|e| panic!("{e}"));
    let spec = format!("flows={percent}%");
    let mut f = Filter::load(&LoadOptions { trace: true }).expect("load");
    replay_setup(&mut f, Some(seed), Vec::new()).expect("seed and subscribers");
    f.install(
        lists,
        &policies(lists, &[("whatsapp", &spec), ("telegram", &spec)]),
    )
    .expect("install");
    replay_captured(&mut f, lists, &frames)
        .expect("replay")
        .flows
}

/// Whether `ip` is in the default subscriber prefixes (RFC 1918, RFC 6598,
/// fc00::/7).
fn is_subscriber(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_private() || (v.octets()[0] == 100 && v.octets()[1] & 0xc0 == 64),
        IpAddr::V6(v) => (v.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The subscriber key of `ip` (IPv4 one address, IPv6 its /64).
fn subscriber_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v) => IpAddr::V6((u128::from(v) & !((1u128 << 64) - 1)).into()),
    }
}

/// Issue 16 on the real captures, where the local host is the callee as
/// well as the caller (telegram.pcap, whatsapp_login_call.pcap,
/// whatsapp_voice_and_message.pcap): under `flows=P%` for P = 10, 20 .. 90
/// with a fixed seed and the default subscriber side, no subscriber has
/// both a stopped and a spared call flow (a flow between two subscribers,
/// stopped when either is, counts for neither), each subscriber is stopped
/// exactly when its rank (from the seed and the capture's clock, IPv6 by
/// /64) is below P, so one stopped at P stays stopped at every higher P,
/// and over the corpus both fates occur.
#[test]
fn corpus_flows_percent_one_fate_per_subscriber() {
    let Some((dir, lists)) = setup("corpus_flows_percent_one_fate_per_subscriber") else {
        return;
    };
    let seed = 0x1600_0016;
    let (mut ever_stopped, mut ever_spared) = (0, 0);
    for cap in captures(&dir) {
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        // Subscriber -> the lowest P that stopped it.
        let mut first_stopped: BTreeMap<IpAddr, u8> = BTreeMap::new();
        // The epoch of the capture's clock (when it lies in one), and so
        // the rank the program must give each subscriber.
        let frames = read_capture(&cap).unwrap_or_else(|e| panic!("{e}"));
        let hour = |ts: u64| ts / (3600 * 1_000_000_000);
        let epoch = match (frames.first(), frames.last()) {
            (Some(a), Some(b)) if hour(a.ts_ns) == hour(b.ts_ns) => Some(a.ts_ns),
            _ => None,
        };
        let rank_of = |sub: IpAddr| {
            use filter_common::decide::{epoch_seed, subscriber_key, subscriber_rank};
            let addr = match sub {
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                IpAddr::V6(v) => v.octets(),
            };
            epoch
                .map(|t| subscriber_rank(&subscriber_key(&addr, 32, 64), epoch_seed(seed, t, 3600)))
        };
        let mut line = String::new();
        for percent in (10..=90).step_by(10) {
            let flows = run_subscribers(&lists, percent, seed, &cap);
            let mut fate: BTreeMap<IpAddr, (u64, u64)> = BTreeMap::new();
            for f in flows.iter().filter(|f| f.category.is_some()) {
                let ends: Vec<IpAddr> = [f.src.ip(), f.dst.ip()]
                    .into_iter()
                    .filter(|ip| is_subscriber(*ip))
                    .collect();
                let [sub] = ends[..] else {
                    continue;
                };
                let e = fate.entry(subscriber_of(sub)).or_default();
                if f.dropped > 0 {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            }
            if fate.is_empty() {
                break;
            }
            let mut stopped = 0;
            for (sub, (s, p)) in &fate {
                assert!(
                    *s == 0 || *p == 0,
                    "{name}: flows={percent}%: subscriber {sub}: {s} call flows stopped, {p} spared"
                );
                if let Some(rank) = rank_of(*sub) {
                    assert_eq!(
                        *s > 0,
                        rank < percent,
                        "{name}: flows={percent}%: subscriber {sub} of rank {rank}: {s} call flows stopped, {p} spared"
                    );
                }
                if *s > 0 {
                    stopped += 1;
                    ever_stopped += 1;
                    first_stopped.entry(*sub).or_insert(percent);
                } else {
                    ever_spared += 1;
                    assert!(
                        !first_stopped.contains_key(sub),
                        "{name}: subscriber {sub} stopped at flows={}% but spared at flows={percent}%",
                        first_stopped[sub]
                    );
                }
            }
            let _ = std::fmt::Write::write_fmt(
                &mut line,
                format_args!(" {percent}%:{stopped}/{}", fate.len()),
            );
        }
        if !line.is_empty() {
            eprintln!("{name:<34} stopped subscribers{line}");
        }
    }
    assert!(
        ever_stopped > 0 && ever_spared > 0,
        "over the corpus and P = 10..90 both fates occur ({ever_stopped} stopped, {ever_spared} spared)"
    );
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_private() || v.is_link_local() || v.is_unspecified(),
        IpAddr::V6(v) => {
            (v.segments()[0] & 0xfe00) == 0xfc00 || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The replay's JSON summary (`replay --json`, last line) and its flow lines.
fn summary_of(json_lines: &str) -> (serde_json::Value, u64) {
    let lines: Vec<serde_json::Value> = json_lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, flows) = lines.split_last().expect("a summary line");
    let in_flows = flows
        .iter()
        .map(|f| {
            f["packets"]
                .as_u64()
                .unwrap_or_else(|| panic!("packets of {f}"))
        })
        .sum();
    (summary["summary"].clone(), in_flows)
}

/// Every frame of every corpus capture is in the summary: the flows' packets
/// plus `non_ip` and `malformed` add up to `packets`.
#[test]
fn corpus_replay_summary_accounts_for_every_frame() {
    let Some((dir, lists)) = setup("corpus_replay_summary_accounts_for_every_frame") else {
        return;
    };
    let mut f = Filter::load(&LoadOptions { trace: true }).expect("load");
    f.install(&lists, &policies(&lists, &[])).expect("install");
    for capture in captures(&dir) {
        let frames = read_capture(&capture).unwrap_or_else(|e| panic!("{e}"));
        let rep = replay_captured(&mut f, &lists, &frames).expect("replay");
        let (s, in_flows) = summary_of(&rep.to_json_lines());
        let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
        assert_eq!(
            n("packets"),
            frames.len() as u64,
            "{}: {s}",
            capture.display()
        );
        assert_eq!(
            in_flows + n("non_ip") + n("malformed"),
            n("packets"),
            "{}: flows {in_flows} + non_ip + malformed != packets in {s}",
            capture.display()
        );
    }
}

/// A built capture: two frames of one UDP flow, an ARP request and a runt
/// (shorter than an Ethernet header). The summary counts each once.
#[test]
fn replay_summary_counts_non_ip_and_malformed() {
    skip_unless_root!("replay_summary_counts_non_ip_and_malformed");
    let lists = Lists::from_parts(Vec::new(), ParsedList::default()).expect("lists");
    let mut f = Filter::load(&LoadOptions { trace: true }).expect("load");
    f.install(&lists, &policies(&lists, &[])).expect("install");
    let udp = filter_common::pktbuild::udp4([10, 0, 0, 1], 5000, [10, 0, 0, 2], 6000, b"hello");
    let arp =
        filter_common::pktbuild::arp_request([2, 0, 0, 0, 0, 9], [10, 0, 0, 1], [10, 0, 0, 2]);
    let runt = vec![0u8; 10];
    let frames = [
        udp.as_slice(),
        udp.as_slice(),
        arp.as_slice(),
        runt.as_slice(),
    ];
    let rep = replay(&mut f, &lists, frames).expect("replay");
    let (s, in_flows) = summary_of(&rep.to_json_lines());
    assert_eq!(
        (
            s["packets"].as_u64(),
            s["non_ip"].as_u64(),
            s["malformed"].as_u64()
        ),
        (Some(4), Some(1), Some(1)),
        "summary {s}"
    );
    assert_eq!(in_flows, 2, "the flow's packets, summary {s}");
    assert_eq!(s["flows"].as_u64(), Some(1), "summary {s}");
}
