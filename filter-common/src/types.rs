//! Map keys and values. All `#[repr(C)]`, `Copy`, with explicit padding so
//! that no byte is left uninitialised; no `bool`, `Option` or enums inside.

/// Policy actions (`Policy::action`). Zero is `drop` so that a category with
/// no policy written is `drop`, scope `media`.
pub const ACTION_DROP: u8 = 0;
/// Count what would be dropped, drop nothing.
pub const ACTION_MONITOR: u8 = 1;
/// Do nothing for this category.
pub const ACTION_OFF: u8 = 2;
/// Stop `percent`% of callers' call flows whole.
pub const ACTION_FLOWS: u8 = 3;
/// Drop `percent`% of packets on call flows.
pub const ACTION_LOSS: u8 = 4;

/// Only call signalling/media, or packets of a flow already marked as a call.
pub const SCOPE_MEDIA: u8 = 0;
/// Every UDP packet of the category.
pub const SCOPE_UDP: u8 = 1;

/// Policy of one category in one generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// One of `ACTION_*`.
    pub action: u8,
    /// One of `SCOPE_*`.
    pub scope: u8,
    /// 0..=100, for `ACTION_FLOWS` and `ACTION_LOSS`.
    pub percent: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// Global program state (`STATE[0]`), written by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Active table generation (0 or 1).
    pub generation: u32,
    /// Length of a partial-restriction epoch in seconds (0 = never rotate).
    pub epoch_secs: u32,
    /// Base seed mixed with the epoch number for `flows=P%`.
    pub seed: u64,
    /// Bumped by every install: a flow whose cached categories carry
    /// another version looks its addresses up again (a list swap
    /// re-categorises live flows on their next packet).
    pub version: u32,
    /// Which half of `BITS` learning sets (the other half is the previous
    /// period's); userspace rotates it (see `BITS_ROTATE_NS`).
    pub bits_half: u32,
    /// Key of the flow-table hash (random per flow table).
    pub hash_key: u64,
    /// `STATE_*` bits, written with each install.
    pub flags: u32,
    /// Which half of `FLOW_BITS` flows with a category mark now; userspace
    /// rotates it (see `FLOW_BITS_ROTATE_NS`).
    pub flow_bits_half: u32,
    /// Added to the program's clock (`bpf_ktime_get_coarse_ns`, since boot)
    /// gives wall-clock time (ns since 1970) for the `flows=P%` epoch, so
    /// restarts and every gateway with the same seed agree; userspace
    /// refreshes it.
    pub wall_offset_ns: u64,
    /// Prefix length of an IPv4 subscriber (`subscriber_key`).
    pub sub_v4_len: u8,
    /// Prefix length of an IPv6 subscriber.
    pub sub_v6_len: u8,
    /// Explicit padding.
    pub _pad: [u8; 6],
}

/// `State::flags`: the prefix tables are small enough to stay in the CPU's
/// cache, so a packet of a flow with no category and nothing learned is
/// decided from its addresses and payload alone (no flow-table read); with
/// large tables the flow table caches every flow's look-ups instead.
pub const STATE_STATELESS: u32 = 1;
/// `State::flags`: the subscriber side is named by interface (`IF_INSIDE`
/// bits in `IF_SLOT`): a packet that came in on an inside interface has
/// the subscriber as its source, any other as its destination.
pub const STATE_SUB_IFACE: u32 = 2;
/// `State::flags`: the subscriber side is named by prefixes
/// (`SUBSCRIBERS`, the active generation's entries).
pub const STATE_SUB_PREFIX: u32 = 4;

/// Key data of `SUBSCRIBERS` (after the LPM trie's prefix length): the
/// generation as a big-endian word, then the address (IPv4 mapped), so one
/// map holds both generations and the prefix length is `32 + bits`.
pub type SubscriberKey = [u8; 20];

/// A subscriber's remembered `flows=P%` rank (`SUB_FATE` value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubFate {
    /// `subscriber_rank` in the epoch it was drawn.
    pub rank: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// Tick of the subscriber's latest call packet seen (refreshed at most
    /// once a tick per flow).
    pub last_seen: u32,
}

/// Canonical 5-tuple: both directions of a flow map to one key. Addresses are
/// 16 bytes (IPv4 as IPv4-mapped IPv6); endpoint `a` is the smaller
/// (address, port) pair. Aligned to 8 (its size, 40, unchanged) so the eBPF
/// build writes the addresses as words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Smaller endpoint's address.
    pub addr_a: [u8; 16],
    /// Larger endpoint's address.
    pub addr_b: [u8; 16],
    /// Port of endpoint `a` (host order).
    pub port_a: u16,
    /// Port of endpoint `b` (host order).
    pub port_b: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
}

/// `FlowSlot::flags`: the flow carries call signalling or media.
pub const FLOW_CALL: u8 = 1;
/// `FlowSlot::flags`: TURN was seen, so ChannelData framing is expected.
pub const FLOW_TURN: u8 = 2;
/// `FlowSlot::flags`: the flow's category came from a list range.
pub const FLOW_LISTED: u8 = 4;
/// `FlowSlot::flags`: the first packet went from `b` to `a`.
pub const FLOW_FIRST_FROM_B: u8 = 8;

/// `FlowSlot::flags`: the flow inherited its category from a call endpoint.
pub const FLOW_INHERITED: u8 = 16;
/// `FlowSlot::flags`: a packet went from `a` to `b`.
pub const FLOW_SEEN_A: u8 = 32;
/// `FlowSlot::flags`: a packet went from `b` to `a`.
pub const FLOW_SEEN_B: u8 = 64;
/// `FlowSlot::flags`: an address of the flow is on the allowlist (cached
/// with the categories: the flow is passed untouched).
pub const FLOW_ALLOWED: u8 = 128;

/// `FlowSlot::fate` for `flows=P%`: not yet decided.
pub const FATE_UNDECIDED: u8 = 0;
/// This caller's flows are left alone.
pub const FATE_SPARED: u8 = 1;
/// This caller's flows are stopped.
pub const FATE_STOPPED: u8 = 2;

/// Clock ticks of the flow table: `ktime_get_coarse_ns() >> TICK_SHIFT`,
/// about 1.07 s each (a shift, not a division, on the packet path).
pub const TICK_SHIFT: u32 = 30;

/// One slot of the flow table: one cache line, the whole per-flow state.
/// The key itself is in `FLOW_KEYS` at the same index (written when the
/// slot is taken; read by userspace only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    /// Keyed hash of the canonical 5-tuple (odd; 0: the slot is empty).
    pub tag: u64,
    /// Bytes seen (both directions).
    pub bytes: u64,
    /// Packets seen (both directions).
    pub packets: u32,
    /// Packets dropped.
    pub dropped: u32,
    /// Tick of the first packet (see [`TICK_SHIFT`]).
    pub first_seen: u32,
    /// Tick of the latest packet (written when it changes: at most once a tick).
    pub last_seen: u32,
    /// Per direction (0: from a, 1: from b): SSRC of the last RTP candidate.
    pub rtp_ssrc: [u32; 2],
    /// Per direction: sequence number of the last RTP candidate.
    pub rtp_seq: [u16; 2],
    /// Per direction: RTP candidates in a row with one SSRC and small steps.
    pub rtp_hits: [u8; 2],
    /// Low 16 bits of the tick the flow last taught its endpoints.
    pub taught: u16,
    /// `State::version` the cached categories belong to.
    pub version: u32,
    /// Category of the source-side address `a` from the lists (cached).
    pub cat_a: u8,
    /// Category of address `b` from the lists (cached).
    pub cat_b: u8,
    /// Category id the flow has (0: none; the flow is only cached).
    pub category: u8,
    /// Category named by an app-specific signature seen on the flow (0: none).
    /// The flow's category is its listed category, else this one.
    pub sig_category: u8,
    /// Most telling label seen (see `classify::LABEL_*`).
    pub label: u8,
    /// `FLOW_*` bits.
    pub flags: u8,
    /// `FATE_*` for `flows=P%`.
    pub fate: u8,
    /// Low 8 bits of the tick of the last look-up of learned endpoints and
    /// tags for this flow (at most one a tick).
    pub probe: u8,
    /// 1 when this way of the bucket was taken more recently than the other
    /// (so of two equal candidates the older is replaced).
    pub newer: u8,
    /// `FLOW2_*` bits.
    pub flags2: u8,
    /// `flows=P%`: the rank of the subscriber whose fate the flow takes,
    /// plus one (0: not drawn yet); the fate follows it and the policy's
    /// current percentage, so a changed percentage applies at once.
    pub rank: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// `FlowSlot::flags2`: a datagram of the flow came in fragments.
pub const FLOW2_FRAGMENTED: u8 = 1;
/// `FlowSlot::flags2`: a TCP connection carrying a call (TURN/STUN over TCP,
/// Telegram's TCP reflector).
pub const FLOW2_TCP_FALLBACK: u8 = 2;
/// `FlowSlot::flags2`: endpoint `a` is a subscriber whose `flows=P%` rank
/// decided the flow's fate (its packets keep the rank alive).
pub const FLOW2_SUB_A: u8 = 4;
/// `FlowSlot::flags2`: the same for endpoint `b`.
pub const FLOW2_SUB_B: u8 = 8;

/// One bucket of the flow table: two slots, 128 bytes (an adjacent pair
/// of cache lines, fetched together).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowBucket {
    /// The two ways.
    pub slots: [FlowSlot; 2],
}

/// Identifies a fragment train of a dropped flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    /// Upper-layer protocol.
    pub proto: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
}

/// `FragSlot::state`: the datagram is not decided yet (its first fragment
/// was too short to classify and nothing listed is involved, or a later
/// fragment came first).
pub const FRAG_PENDING: u8 = 0;
/// The datagram was passed (its fragments pass, unless they overlap the
/// bytes it was classified on and it involves a listed range or a call).
pub const FRAG_PASS: u8 = 1;
/// The datagram was dropped: so is every fragment of it.
pub const FRAG_DROP: u8 = 2;

/// `FragSlot::flags`: the first fragment was seen.
pub const FRAGF_FIRST: u8 = 1;
/// A fragment came before the first fragment.
pub const FRAGF_EARLY: u8 = 2;
/// The datagram is to or from a listed range.
pub const FRAGF_LISTED: u8 = 4;
/// The datagram carries a call signature (or its flow is a call).
pub const FRAGF_CALL: u8 = 8;
/// The first fragment was too short to classify and was dropped by address
/// (RFC 1858): the datagram is dropped, and the fragment that continues it
/// is still classified, so the call's endpoints and TURN peers are learned
/// as if it had come whole.
pub const FRAGF_DECIDED: u8 = 16;

/// What the program remembers of one fragmented datagram (key: src, dst,
/// protocol, IP id, hashed): the ports and length from the first fragment,
/// how far the bytes it was classified on reach, its verdict, and the
/// payload bytes of a first fragment too short to classify.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragSlot {
    /// Keyed hash of the datagram's key (odd; 0: empty).
    pub tag: u64,
    /// Tick of the latest fragment.
    pub last_seen: u32,
    /// Source port (from the first fragment).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// UDP length from the first fragment's header (0: not seen).
    pub udp_len: u16,
    /// IP-payload bytes the first fragment carried (transport header included).
    pub first_end: u16,
    /// IP-payload bytes the verdict rests on: a fragment starting below
    /// this rewrites them (an overlap).
    pub head_end: u16,
    /// `FRAG_*`.
    pub state: u8,
    /// `FRAGF_*`.
    pub flags: u8,
    /// Category the datagram was decided in (0: none).
    pub category: u8,
    /// Payload bytes in `stash`.
    pub stash_len: u8,
    /// Where the stashed bytes start in the UDP payload: 0 for a tiny first
    /// fragment's, the fragment's payload offset for a later fragment that
    /// came first.
    pub stash_off: u16,
    /// Explicit padding.
    pub _pad: [u8; 4],
    /// The first fragment's payload bytes, when it carried fewer than the
    /// classifier needs (joined to the next fragment's bytes).
    pub stash: [u8; 48],
    /// Explicit padding to two cache lines.
    pub _pad2: [u8; 48],
}

impl Default for FragSlot {
    fn default() -> Self {
        FragSlot {
            tag: 0,
            last_seen: 0,
            sport: 0,
            dport: 0,
            udp_len: 0,
            first_end: 0,
            head_end: 0,
            state: FRAG_PENDING,
            flags: 0,
            category: 0,
            stash_len: 0,
            stash_off: 0,
            _pad: [0; 4],
            stash: [0; 48],
            _pad2: [0; 48],
        }
    }
}

/// An endpoint (address, port) seen in a call: a new flow from or to it
/// inherits the call's category (peer-to-peer after relay).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// Address (IPv4 as IPv4-mapped IPv6).
    pub addr: [u8; 16],
    /// UDP port (host order).
    pub port: u16,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// `EndpointValue::origin`: an endpoint of a call flow.
pub const ORIGIN_CALL: u8 = 1;
/// `EndpointValue::origin`: a peer named by TURN XOR-PEER-ADDRESS.
pub const ORIGIN_TURN_PEER: u8 = 2;

/// What an endpoint teaches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointValue {
    /// `bpf_ktime_get_ns` when learned or last refreshed.
    pub learned_ns: u64,
    /// Category of the call.
    pub category: u8,
    /// `ORIGIN_*`.
    pub origin: u8,
    /// Explicit padding.
    pub _pad: [u8; 6],
}

/// A learned Telegram peer tag (key: the 16-byte tag).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagValue {
    /// `bpf_ktime_get_ns` when learned.
    pub learned_ns: u64,
    /// Category of the call (telegram).
    pub category: u8,
    /// Explicit padding.
    pub _pad: [u8; 7],
}

/// Per-category counters as userspace reports them (summed from the
/// per-verdict counter slots).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatStats {
    /// UDP packets of this category seen.
    pub seen_packets: u64,
    /// Their bytes.
    pub seen_bytes: u64,
    /// Packets dropped.
    pub dropped_packets: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// Packets that `monitor` would have dropped.
    pub monitored_packets: u64,
    /// Their bytes.
    pub monitored_bytes: u64,
    /// Packets passed.
    pub passed_packets: u64,
    /// Their bytes.
    pub passed_bytes: u64,
}

/// Packets and bytes: one counter slot (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Per-label counters (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelStats {
    /// Packets classified with this label.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of those, dropped.
    pub dropped: u64,
    /// Of those, monitored.
    pub monitored: u64,
}

/// What the program decided for the last packet (replay only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PktTrace {
    /// Sequence number written by userspace before the run; the program
    /// leaves it untouched, so a stale record can be recognised.
    pub seq: u32,
    /// XDP verdict.
    pub verdict: u32,
    /// Category of the packet (0: none).
    pub category: u8,
    /// Label of the packet's flow after this packet.
    pub label: u8,
    /// `TRACE_*` bits.
    pub flags: u8,
    /// 1 when the program wrote this record for the current packet.
    pub written: u8,
    /// Explicit padding.
    pub _pad: u32,
}

/// `PktTrace::flags`: the packet would have been dropped under `monitor`.
pub const TRACE_MONITORED: u8 = 1;
/// `PktTrace::flags`: the packet belongs to a tracked call flow.
pub const TRACE_CALL: u8 = 2;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is `#[repr(C)]`, `Copy`, made only of integers and
    // arrays of integers, with explicit padding fields, so any bit pattern is
    // valid and no byte is uninitialised.
    unsafe impl aya::Pod for super::Policy {}
    unsafe impl aya::Pod for super::State {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowSlot {}
    unsafe impl aya::Pod for super::FlowBucket {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::FragSlot {}
    unsafe impl aya::Pod for crate::trie::Unit {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for super::CatStats {}
    unsafe impl aya::Pod for super::LabelStats {}
    unsafe impl aya::Pod for super::PktTrace {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::EndpointValue {}
    unsafe impl aya::Pod for super::TagValue {}
    unsafe impl aya::Pod for super::SubFate {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn sizes_have_no_implicit_padding() {
        assert_eq!(size_of::<Policy>(), 4);
        assert_eq!(size_of::<State>(), 40 + 8 + 1 + 1 + 6);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 1 + 3);
        assert_eq!(size_of::<FlowSlot>(), 64);
        assert_eq!(size_of::<FlowBucket>(), 128);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<FragSlot>(), 128);
        assert_eq!(size_of::<crate::trie::Unit>(), 64);
        assert_eq!(size_of::<FragKey>(), 16 + 16 + 4 + 1 + 3);
        assert_eq!(size_of::<CatStats>(), 64);
        assert_eq!(size_of::<LabelStats>(), 32);
        assert_eq!(size_of::<PktTrace>(), 16);
        assert_eq!(size_of::<EndpointKey>(), 16 + 2 + 2);
        assert_eq!(size_of::<EndpointValue>(), 8 + 1 + 1 + 6);
        assert_eq!(size_of::<TagValue>(), 8 + 1 + 7);
        assert_eq!(size_of::<SubFate>(), 1 + 3 + 4);
    }
}
