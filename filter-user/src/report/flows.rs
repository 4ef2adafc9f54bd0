//! `flows`: the tracked flows as rows, a table or JSON.

use super::*;

/// One tracked flow, for `flows`; serialized, its `--json` object (fields
/// in the JSON's order).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    /// IP protocol; in JSON its name ([`proto_name`]).
    #[serde(serialize_with = "proto_json")]
    pub proto: u8,
    /// The endpoint that sent first.
    pub src: SocketAddr,
    /// The other endpoint.
    pub dst: SocketAddr,
    /// Category name.
    pub category: Option<String>,
    /// Category id.
    pub category_id: u8,
    /// Label name.
    pub label: Option<&'static str>,
    /// Seconds since the first packet.
    pub age_secs: f64,
    /// Seconds since the latest packet.
    pub idle_secs: f64,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes, both directions.
    pub bytes: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Recognised as a call.
    pub call: bool,
    /// Its category came from a list range.
    pub listed: bool,
    /// `flows=P%` fate.
    pub fate: &'static str,
    /// Datagrams of the flow came in fragments.
    pub fragmented: bool,
    /// A call that fell back to TCP.
    pub tcp_fallback: bool,
}

pub(super) fn endpoint(addr: &[u8; 16], port: u16) -> SocketAddr {
    let v6 = Ipv6Addr::from(*addr);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    SocketAddr::new(ip, port)
}

/// Seconds of `ticks` of the flow table's clock (2^30 ns each).
pub(super) fn tick_secs(ticks: u32) -> f64 {
    f64::from(ticks) * f64::from(1u32 << filter_common::TICK_SHIFT) / 1e9
}

/// A flow table entry as a row; `now_ns` is [`monotonic_ns`].
pub fn flow_row(k: &FlowKey, v: &FlowSlot, now_ns: u64, state: Option<&StateFile>) -> FlowRow {
    let now = filter_common::flow::tick(now_ns);
    let a = endpoint(&k.addr_a, k.port_a);
    let b = endpoint(&k.addr_b, k.port_b);
    let (src, dst) = if v.flags & FLOW_FIRST_FROM_B != 0 {
        (b, a)
    } else {
        (a, b)
    };
    FlowRow {
        proto: k.proto,
        src,
        dst,
        category_id: v.category,
        category: state.and_then(|s| s.name_of(v.category)).map(str::to_owned),
        label: label_name(v.label),
        age_secs: tick_secs(now.wrapping_sub(v.first_seen)),
        idle_secs: tick_secs(now.wrapping_sub(v.last_seen)),
        packets: u64::from(v.packets),
        bytes: v.bytes,
        dropped: u64::from(v.dropped),
        call: v.flags & FLOW_CALL != 0,
        listed: v.flags & FLOW_LISTED != 0,
        fragmented: v.flags2 & filter_common::FLOW2_FRAGMENTED != 0,
        tcp_fallback: v.flags2 & filter_common::FLOW2_TCP_FALLBACK != 0,
        fate: match v.fate {
            FATE_SPARED => "spared",
            FATE_STOPPED => "stopped",
            _ => "undecided",
        },
    }
}

/// An IP protocol's name: `udp`, `tcp`, `icmp`, `icmpv6`, else its number.
/// (The flow table holds UDP and TCP flows only; `replay` shows any.)
pub fn proto_name(p: u8) -> String {
    match p {
        17 => "udp".into(),
        6 => "tcp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// A protocol number as its [`proto_name`] (serde's `serialize_with`).
#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes the field by reference"
)]
pub(crate) fn proto_json<S: serde::Serializer>(p: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&proto_name(*p))
}

/// The flows table, busiest first.
pub fn flows_table(rows: &[FlowRow]) -> String {
    let header = [
        "PROTO", "SRC", "DST", "CATEGORY", "LABEL", "AGE", "IDLE", "PACKETS", "BYTES", "DROPPED",
        "CALL",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                proto_name(r.proto),
                r.src.to_string(),
                r.dst.to_string(),
                r.category
                    .clone()
                    .unwrap_or_else(|| format!("#{}", r.category_id)),
                r.label.unwrap_or("-").to_owned(),
                format!("{:.0}s", r.age_secs),
                format!("{:.0}s", r.idle_secs),
                r.packets.to_string(),
                human_bytes(r.bytes),
                r.dropped.to_string(),
                match (r.call, r.fragmented) {
                    (true, true) => "yes, fragmented",
                    (true, false) => "yes",
                    (false, true) => "no, fragmented",
                    (false, false) => "no",
                }
                .to_owned(),
            ]
        })
        .collect();
    let mut out = table(&header, &cells, 5);
    let _ = writeln!(out, "{} flows", rows.len());
    out
}
