//! `flowfilter replay`: run captured frames, in order, through a private,
//! unattached instance of the program with BPF_PROG_TEST_RUN, and report per
//! bidirectional flow.

pub mod capture;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use filter_common::classify::label_name;
use filter_common::parse::{Fragment, Packet, Parsed, parse_frame};
use filter_common::{CAT_NONE, FlowKey, PktTrace, TRACE_MONITORED, XDP_DROP};
use serde::Serialize;

use crate::dataplane::loader::{DEFAULT_EPOCH_SECS, Filter, LoadError, Subscribers};
use crate::lists::{Cidr, Lists};
use crate::replay::capture::Frame;
use crate::report::{json_text, proto_json, proto_name};

/// Frames shorter than an Ethernet header cannot be run by the kernel.
const MIN_FRAME: usize = 14;

/// One bidirectional flow of a replay; serialized, its `--json` line
/// (fields in the JSON's order, the ids and `monitored` left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowReport {
    /// IP protocol number; in JSON its name ([`FlowReport::proto_name`]).
    #[serde(serialize_with = "proto_json")]
    pub proto: u8,
    /// Source of the flow's first packet.
    pub src: SocketAddr,
    /// Destination of the flow's first packet.
    pub dst: SocketAddr,
    /// Packets of the flow (both directions).
    pub packets: u64,
    /// Of those, dropped.
    pub dropped: u64,
    /// Of those, dropped-if-enforced under `monitor`.
    #[serde(skip)]
    pub monitored: u64,
    /// Of those, IP fragments (first or later).
    pub fragments: u64,
    /// Category id the program gave the flow (0: none).
    #[serde(skip)]
    pub category_id: u8,
    /// Label id of the flow (0: none).
    #[serde(skip)]
    pub label_id: u8,
    /// Category name.
    pub category: Option<String>,
    /// Label name.
    pub label: Option<String>,
}

impl FlowReport {
    /// [`proto_name`] of its protocol.
    pub fn proto_name(&self) -> String {
        proto_name(self.proto)
    }
}

/// The summary line of `replay --json`.
#[derive(Serialize)]
struct SummaryLine {
    summary: Summary,
}

/// Every frame is in a flow, `non_ip` or `malformed`: those three add up to
/// `packets`.
#[derive(Serialize)]
struct Summary {
    packets: u64,
    dropped: u64,
    flows: usize,
    non_ip: u64,
    malformed: u64,
}

/// Everything a replay found.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    /// Flows in order of their first packet.
    pub flows: Vec<FlowReport>,
    /// Frames replayed.
    pub packets: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames that were not IP (passed; not part of a flow).
    pub non_ip: u64,
    /// Frames the parser rejected (passed; not part of a flow).
    pub malformed: u64,
}

impl ReplayReport {
    /// The `--json` output: one line per flow, then the summary line.
    pub fn to_json_lines(&self) -> String {
        let mut out: String = self.flows.iter().map(|f| json_text(f, false)).collect();
        out.push_str(&json_text(
            &SummaryLine {
                summary: Summary {
                    packets: self.packets,
                    dropped: self.dropped,
                    flows: self.flows.len(),
                    non_ip: self.non_ip,
                    malformed: self.malformed,
                },
            },
            false,
        ));
        out
    }

    /// The human output: an aligned table and a summary line.
    pub fn to_table(&self) -> String {
        let header = [
            "PROTO", "SRC", "DST", "PACKETS", "DROPPED", "CATEGORY", "LABEL",
        ];
        let rows: Vec<[String; 7]> = self
            .flows
            .iter()
            .map(|f| {
                [
                    f.proto_name(),
                    f.src.to_string(),
                    f.dst.to_string(),
                    f.packets.to_string(),
                    f.dropped.to_string(),
                    f.category.clone().unwrap_or_else(|| "-".into()),
                    f.label.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        // PACKETS and DROPPED right-aligned.
        let mut out = crate::report::aligned(&header, &rows, |i| i == 3 || i == 4);
        let _ = writeln!(
            out,
            "{} packets, {} dropped, {} flows ({} non-IP, {} malformed frames passed)",
            self.packets,
            self.dropped,
            self.flows.len(),
            self.non_ip,
            self.malformed
        );
        out
    }
}

fn sock(addr: &[u8; 16], is_v6: bool, port: u16) -> SocketAddr {
    let ip = if is_v6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    };
    SocketAddr::new(ip, port)
}

/// Before the install of a replay: the `flows=P%` seed (`None`: the
/// random one the instance was loaded with; the hourly rotation stays)
/// and the subscriber prefixes (empty: the default, private and shared
/// address space), written with the install.
pub fn replay_setup(
    filter: &mut Filter,
    seed: Option<u64>,
    prefixes: Vec<Cidr>,
) -> Result<(), LoadError> {
    if let Some(seed) = seed {
        filter.set_seed(seed, DEFAULT_EPOCH_SECS)?;
    }
    let mut subscribers = Subscribers::default();
    if !prefixes.is_empty() {
        subscribers.prefixes = prefixes;
    }
    filter.set_subscribers(subscribers)
}

/// Replay captured frames in order, each at its capture time: the
/// program's wall clock (the `flows=P%` epoch) is set to the frame's
/// timestamp before it runs, so a replay with a fixed seed decides the
/// same way every time. Frames without a timestamp (0) keep the clock
/// where it was.
pub fn replay_captured(
    filter: &mut Filter,
    lists: &Lists,
    frames: &[Frame],
) -> Result<ReplayReport, LoadError> {
    replay_timed(
        filter,
        lists,
        frames.iter().map(|f| (Some(f.ts_ns), f.data.as_slice())),
    )
}

/// Replay `frames` in order through `filter` (loaded with `trace`), naming
/// categories with `lists`; the wall clock stays the system's.
pub fn replay<'a>(
    filter: &mut Filter,
    lists: &Lists,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Result<ReplayReport, LoadError> {
    replay_timed(filter, lists, frames.into_iter().map(|f| (None, f)))
}

/// [`replay`] with an optional capture time (ns since 1970) per frame.
fn replay_timed<'a>(
    filter: &mut Filter,
    lists: &Lists,
    frames: impl IntoIterator<Item = (Option<u64>, &'a [u8])>,
) -> Result<ReplayReport, LoadError> {
    let mut rep = ReplayReport::default();
    let mut index: HashMap<FlowKey, usize> = HashMap::new();
    // Later fragments carry no ports: map (src, dst, proto, id) to the flow of
    // the first fragment.
    let mut frag_flows: FragFlows = HashMap::new();
    let mut clock = None;
    for (ts, frame) in frames {
        rep.packets += 1;
        if frame.len() < MIN_FRAME {
            rep.malformed += 1;
            continue;
        }
        if let Some(ts) = ts.filter(|t| *t != 0)
            && clock != Some(ts)
        {
            filter.set_wall_clock(Some(ts))?;
            clock = Some(ts);
        }
        filter.clear_trace()?;
        let verdict = filter.run(frame)?;
        let trace = filter.trace()?;
        let dropped = verdict == XDP_DROP;
        if dropped {
            rep.dropped += 1;
        }
        let pkt = match parse_frame(frame) {
            Parsed::Ip(p) => p,
            Parsed::NonIp => {
                rep.non_ip += 1;
                continue;
            }
            // A hidden transport has no flow to report either (its verdict,
            // by address, is in the dropped count).
            Parsed::Malformed(_) | Parsed::Hidden(_) => {
                rep.malformed += 1;
                continue;
            }
        };
        let slot = flow_slot(&mut rep, &mut index, &mut frag_flows, &pkt);
        count(&mut rep.flows[slot], &pkt, dropped, &trace);
    }
    for f in &mut rep.flows {
        if f.category_id != CAT_NONE {
            f.category = lists.name_of(f.category_id).map(str::to_string);
        }
        f.label = label_name(f.label_id).map(str::to_string);
    }
    Ok(rep)
}

/// Frames of one flow keyed by the first fragment's
/// `(src, dst, proto, id)`: later fragments carry no ports.
type FragFlows = HashMap<([u8; 16], [u8; 16], u8, u32), usize>;

/// The index in `rep.flows` of the flow of `pkt`, a new flow if it is the
/// first packet of one.
fn flow_slot(
    rep: &mut ReplayReport,
    index: &mut HashMap<FlowKey, usize>,
    frag_flows: &mut FragFlows,
    pkt: &Packet,
) -> usize {
    let slot = match pkt.frag {
        Fragment::Later { id, .. } => frag_flows.get(&(pkt.src, pkt.dst, pkt.proto, id)).copied(),
        _ => None,
    };
    let slot = slot.unwrap_or_else(|| {
        let (key, _) = pkt.flow_key();
        *index.entry(key).or_insert_with(|| {
            rep.flows.push(FlowReport {
                proto: pkt.proto,
                src: sock(&pkt.src, pkt.is_v6, pkt.sport),
                dst: sock(&pkt.dst, pkt.is_v6, pkt.dport),
                packets: 0,
                dropped: 0,
                monitored: 0,
                fragments: 0,
                category_id: CAT_NONE,
                label_id: 0,
                category: None,
                label: None,
            });
            rep.flows.len() - 1
        })
    });
    if let Fragment::First { id } = pkt.frag {
        frag_flows.insert((pkt.src, pkt.dst, pkt.proto, id), slot);
    }
    slot
}

/// Count one packet of flow `f`: fragments, verdict and what the trace says.
fn count(f: &mut FlowReport, pkt: &Packet, dropped: bool, trace: &PktTrace) {
    f.packets += 1;
    if pkt.frag != Fragment::None {
        f.fragments += 1;
    }
    if dropped {
        f.dropped += 1;
    }
    if trace.written != 0 {
        if trace.flags & TRACE_MONITORED != 0 {
            f.monitored += 1;
        }
        if trace.category != CAT_NONE {
            f.category_id = trace.category;
        }
        if trace.label != 0 {
            f.label_id = trace.label;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(proto: u8, src: &str, dst: &str, named: bool) -> FlowReport {
        FlowReport {
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            packets: 9,
            dropped: 4,
            monitored: 2,
            fragments: 1,
            category_id: u8::from(named),
            label_id: if named { 4 } else { 0 },
            category: named.then(|| "whatsapp".to_owned()),
            label: named.then(|| "rtp".to_owned()),
        }
    }

    /// Three flows (one named) and the frames outside them.
    fn sample() -> ReplayReport {
        ReplayReport {
            flows: vec![
                flow(17, "192.0.2.1:5000", "198.51.100.2:3478", true),
                flow(58, "[2001:db8::1]:0", "[2001:db8::2]:0", false),
                flow(132, "192.0.2.1:1", "192.0.2.2:2", false),
            ],
            packets: 30,
            dropped: 12,
            non_ip: 2,
            malformed: 1,
        }
    }

    /// The exact `replay --json` text (one line per flow, then the summary)
    /// and the human table with its summary line, pinned byte for byte in
    /// `golden/`, for a report with flows and for an empty one.
    #[test]
    fn outputs_are_pinned() {
        let (rep, empty) = (sample(), ReplayReport::default());
        assert_eq!(rep.to_json_lines(), include_str!("golden/replay.jsonl"));
        assert_eq!(
            empty.to_json_lines(),
            include_str!("golden/replay-empty.jsonl")
        );
        assert_eq!(rep.to_table(), include_str!("golden/replay-table.txt"));
        assert_eq!(
            empty.to_table(),
            include_str!("golden/replay-table-empty.txt")
        );
    }
}
