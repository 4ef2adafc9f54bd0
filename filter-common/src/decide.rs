//! Per-flow state updates and the policy verdict: pure functions the XDP
//! program calls with map values, tested here on the host.

use crate::classify::{
    Class, LABEL_NONE, LABEL_P2P_INHERITED, LABEL_RTP, LABEL_TURN_CHANNEL,
    LABEL_WHATSAPP_KEEPALIVE, LABEL_WHATSAPP_MEDIA, Strength,
};
use crate::consts::{
    CAT_WHATSAPP, ENDPOINT_BITS_WORDS, ENDPOINT_TTL_NS, LEARN_MIN_PORT, TAG_TTL_NS,
};
use crate::types::{
    ACTION_DROP, ACTION_FLOWS, ACTION_LOSS, ACTION_MONITOR, FATE_SPARED, FATE_STOPPED, FLOW_CALL,
    FLOW_INHERITED, FLOW_SEEN_A, FLOW_SEEN_B, FLOW_TURN, FlowSlot, Policy, SCOPE_UDP,
};
use crate::types::{EndpointValue, TagValue};

/// RTP packets of one direction, same SSRC, sequence step 1..=16, needed
/// before a flow counts as RTP media.
pub const RTP_CONFIRM_PACKETS: u8 = 3;
/// Largest sequence step accepted between two RTP packets.
pub const RTP_MAX_STEP: u16 = 16;

/// What happens to one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed, nothing to count.
    Pass,
    /// Dropped.
    Drop,
    /// Passed, but `drop` would have dropped it.
    Monitor,
}

/// Fold one classified packet into its flow. Returns whether the packet is
/// part of a call (the flow is, or just became, a call flow).
#[inline(always)]
pub fn observe(flow: &mut FlowSlot, class: &Class, from_a: bool) -> bool {
    flow.flags |= if from_a { FLOW_SEEN_A } else { FLOW_SEEN_B };
    match class.strength {
        Strength::Signal => {
            flow.flags |= FLOW_CALL;
            if class.turn {
                flow.flags |= FLOW_TURN;
            }
        }
        Strength::Candidate if class.label == LABEL_RTP => {
            if flow.sig_category == CAT_WHATSAPP {
                // Raw SRTP straight on a 5-tuple that carried WhatsApp STUN.
                flow.flags |= FLOW_CALL;
                if flow.label != LABEL_P2P_INHERITED {
                    flow.label = LABEL_WHATSAPP_MEDIA;
                }
            }
            observe_rtp(flow, class, from_a);
        }
        Strength::Candidate if class.label == LABEL_WHATSAPP_KEEPALIVE => {
            if flow.sig_category == CAT_WHATSAPP {
                flow.flags |= FLOW_CALL;
            }
        }
        Strength::Candidate if class.label == LABEL_TURN_CHANNEL => {
            if flow.flags & FLOW_TURN != 0 {
                flow.flags |= FLOW_CALL;
            }
        }
        Strength::Candidate | Strength::None => {}
    }
    if class.app != 0 {
        flow.flags |= FLOW_CALL;
        // Media already seen on this app's flow keeps its label.
        if !(flow.label == LABEL_WHATSAPP_MEDIA && class.app == flow.sig_category) {
            flow.label = class.label;
        }
        flow.sig_category = class.app;
    } else if flow.label == LABEL_NONE && flow.flags & FLOW_CALL != 0 && class.label != LABEL_NONE {
        flow.label = class.label;
    }
    flow.flags & FLOW_CALL != 0
}

#[inline(always)]
fn observe_rtp(flow: &mut FlowSlot, class: &Class, from_a: bool) {
    // Each direction confirms on its own: a stray packet one way cannot keep
    // the other way's stream from confirming.
    let d = usize::from(!from_a);
    let step = class.seq.wrapping_sub(flow.rtp_seq[d]);
    if flow.rtp_hits[d] > 0 && class.ssrc == flow.rtp_ssrc[d] && (1..=RTP_MAX_STEP).contains(&step)
    {
        flow.rtp_hits[d] = flow.rtp_hits[d].saturating_add(1);
    } else {
        flow.rtp_hits[d] = 1;
        flow.rtp_ssrc[d] = class.ssrc;
    }
    flow.rtp_seq[d] = class.seq;
    if flow.rtp_hits[d] >= RTP_CONFIRM_PACKETS {
        flow.flags |= FLOW_CALL;
    }
}

/// The verdict for one packet of a flow in a category with `policy`.
/// `is_call`: the packet belongs to a call flow; `fate`: the flow's
/// `FATE_*` (for `flows=P%`); `rand`: a random number (for `loss=P%`).
#[inline(always)]
pub fn verdict(policy: &Policy, is_call: bool, fate: u8, rand: u32) -> Verdict {
    if !(is_call || policy.scope == SCOPE_UDP) {
        return Verdict::Pass;
    }
    match policy.action {
        ACTION_DROP => Verdict::Drop,
        ACTION_MONITOR => Verdict::Monitor,
        ACTION_FLOWS if fate == FATE_STOPPED => Verdict::Drop,
        ACTION_LOSS if rand % 100 < policy.percent as u32 => Verdict::Drop,
        _ => Verdict::Pass,
    }
}

/// The verdict for an IPv6 packet to or from a category's range whose
/// transport is hidden behind an extension chain the parser does not follow
/// ([`crate::parse::Parsed::Hidden`]). Nothing legitimate needs more than six
/// extension headers to reach a messenger (RFC 7872: the internet mostly
/// drops such packets anyway), while passing them would let any client
/// carry call media past the filter by adding headers. So every restricting
/// policy (`drop`, `flows=P%`, `loss=P%`, either scope) drops them whole,
/// `monitor` counts them, `off` passes them.
#[inline(always)]
pub fn hidden_verdict(policy: &Policy) -> Verdict {
    match policy.action {
        ACTION_DROP | ACTION_FLOWS | ACTION_LOSS => Verdict::Drop,
        ACTION_MONITOR => Verdict::Monitor,
        _ => Verdict::Pass,
    }
}

/// The verdict for a datagram decided by address alone because its first
/// fragment is too short to classify (the RFC 1858 rule), to or from a
/// listed range: every restricting policy drops it (`flows=P%` for a
/// stopped caller only), `monitor` counts it, `off` passes it.
#[inline(always)]
pub fn tiny_verdict(policy: &Policy, fate: u8) -> Verdict {
    match policy.action {
        ACTION_DROP | ACTION_LOSS => Verdict::Drop,
        ACTION_FLOWS if fate == FATE_STOPPED => Verdict::Drop,
        ACTION_MONITOR => Verdict::Monitor,
        _ => Verdict::Pass,
    }
}

/// splitmix64's finaliser: a bijection that mixes every bit.
#[inline(always)]
pub fn mix64(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The seed of the epoch `now_ns` falls in.
#[inline(always)]
pub fn epoch_seed(base: u64, now_ns: u64, epoch_secs: u32) -> u64 {
    let epoch = if epoch_secs == 0 {
        0
    } else {
        now_ns / (epoch_secs as u64 * 1_000_000_000)
    };
    mix64(base ^ mix64(epoch.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// A subscriber's key for `flows=P%`: its address with the bits past its
/// prefix cleared, `v4_len` bits for IPv4 (IPv4-mapped: the mapping prefix
/// is kept) and `v6_len` for IPv6, so every address of one subscriber's
/// prefix (an IPv6 /64 by default) shares one fate.
#[inline(always)]
pub fn subscriber_key(addr: &[u8; 16], v4_len: u8, v6_len: u8) -> [u8; 16] {
    let hi = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let mapped = hi == 0 && lo >> 32 == 0xffff;
    let keep = if mapped {
        96 + u32::from(if v4_len > 32 { 32 } else { v4_len })
    } else {
        u32::from(if v6_len > 128 { 128 } else { v6_len })
    };
    // Keep the first `keep` bits of hi:lo (no loops, few branches: this runs
    // in the XDP program).
    let (hi, lo) = if keep >= 128 {
        (hi, lo)
    } else if keep >= 64 {
        (hi, lo & !(u64::MAX >> (keep - 64)))
    } else if keep == 0 {
        (0, 0)
    } else {
        (hi & !(u64::MAX >> keep), 0)
    };
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&hi.to_be_bytes());
    key[8..].copy_from_slice(&lo.to_be_bytes());
    key
}

/// A subscriber's rank in the epoch with `seed`: 0..=99, uniform over
/// subscribers. Under `flows=P%` the subscribers ranked below P are
/// stopped ([`fate_of`]), so raising P only adds subscribers.
#[inline(always)]
pub fn subscriber_rank(key: &[u8; 16], seed: u64) -> u8 {
    let hi = u64::from_be_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    let lo = u64::from_be_bytes([
        key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
    ]);
    (mix64(mix64(seed ^ hi) ^ lo) % 100) as u8
}

/// The `FATE_*` of a subscriber of `rank` under `flows=percent%`.
#[inline(always)]
pub fn fate_of(rank: u8, percent: u8) -> u8 {
    if rank < percent {
        FATE_STOPPED
    } else {
        FATE_SPARED
    }
}

/// Whether the caller at `addr` (its whole address as the key) is stopped
/// under `flows=percent%` in the epoch with `seed`.
#[inline(always)]
pub fn caller_fate(addr: &[u8; 16], seed: u64, percent: u8) -> u8 {
    fate_of(subscriber_rank(addr, seed), percent)
}

/// Whether a subscriber's remembered rank (see `SubFate`) still holds at
/// tick `now`: it does while the subscriber's calls carry packets, so an
/// epoch boundary never splits one subscriber's flows between fates; after
/// [`crate::consts::SUB_IDLE_TICKS`] without call traffic it is drawn
/// again for the current epoch.
#[inline(always)]
pub fn rank_holds(last_seen: u32, now: u32) -> bool {
    now.wrapping_sub(last_seen) <= crate::consts::SUB_IDLE_TICKS
}

/// Which ends of a packet are on the subscriber side, as `(source,
/// destination)`. `by_iface`: the operator named the interfaces facing
/// subscribers, and the packet came in on one (`Some(true)`: its source is
/// the subscriber) or on another (`Some(false)`: its destination is).
/// Otherwise (`None`) `src_in` and `dst_in` say whether each address is
/// inside the subscriber prefixes.
#[inline(always)]
pub fn subscriber_ends(by_iface: Option<bool>, src_in: bool, dst_in: bool) -> (bool, bool) {
    match by_iface {
        Some(inside) => (inside, !inside),
        None => (src_in, dst_in),
    }
}

/// The rank that decides a flow whose ends have ranks `src` and `dst`
/// (`None`: that end is not a subscriber); `fallback` is the rank of the
/// caller by the rule for flows with no subscriber end. A flow between two
/// subscribers takes the smaller rank, so it is stopped when either
/// subscriber is: a stopped subscriber's calls never get through.
#[inline(always)]
pub fn flow_rank(src: Option<u8>, dst: Option<u8>, fallback: u8) -> u8 {
    match (src, dst) {
        (Some(a), Some(b)) => {
            if a < b {
                a
            } else {
                b
            }
        }
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => fallback,
    }
}

/// Whether a learned endpoint still teaches at `now_ns`.
#[inline(always)]
pub fn endpoint_fresh(v: &EndpointValue, now_ns: u64) -> bool {
    now_ns.saturating_sub(v.learned_ns) < ENDPOINT_TTL_NS
}

/// Whether a learned Telegram tag is still trusted at `now_ns`.
#[inline(always)]
pub fn tag_fresh(v: &TagValue, now_ns: u64) -> bool {
    now_ns.saturating_sub(v.learned_ns) < TAG_TTL_NS
}

/// Whether an endpoint on `port` may be learned at all.
#[inline(always)]
pub fn learnable_port(port: u16) -> bool {
    port >= LEARN_MIN_PORT
}

/// Call packets a one-way flow must carry before it may teach endpoints and
/// tags (a flow that went both ways may teach at once). Under `drop` a relay
/// never answers, so learning cannot wait for an answer; but one spoofed
/// packet alone teaches nothing.
pub const TEACH_MIN_PACKETS: u64 = 3;

/// Whether a call flow may teach endpoints and tags, `packets` counting the
/// current one: once it went both ways or carried [`TEACH_MIN_PACKETS`], and
/// never an inherited flow (no chains: a learned endpoint's flows do not
/// spread the category further).
#[inline(always)]
pub fn may_teach(flags: u8, packets: u64) -> bool {
    let both = FLOW_SEEN_A | FLOW_SEEN_B;
    flags & FLOW_CALL != 0
        && flags & FLOW_INHERITED == 0
        && (flags & both == both || packets >= TEACH_MIN_PACKETS)
}

/// Which endpoints of a call packet to remember, as `(source, destination)`:
/// the sides outside the category's ranges, the destination only once the
/// flow has gone both ways (`both_ways`). A one-way flow, which is all a
/// spoofer can make, teaches only the address its packets claim to come
/// from, so packets spoofed toward a victim (from a listed range or from
/// anywhere) never mark it; a call's socket is learned from what it sends,
/// or from the answer to it.
#[inline(always)]
pub fn endpoints_to_learn(src_listed: bool, dst_listed: bool, both_ways: bool) -> (bool, bool) {
    (!src_listed, !dst_listed && both_ways)
}

/// Word index and bit of an endpoint in the "may be known" bitmap. A clear
/// bit means the endpoint was never learned; a set bit means "look it up".
#[inline(always)]
pub fn endpoint_bit(addr: &[u8; 16], port: u16) -> (u32, u64) {
    let hi = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let h = mix64(mix64(hi ^ u64::from(port)) ^ lo);
    let word = (h >> 6) as u32 & (ENDPOINT_BITS_WORDS - 1);
    (word, 1u64 << (h & 63))
}

/// Word index (within a half) and bit of a Telegram peer tag in the "may
/// be known" bitmap (the same bitmap as endpoints, another hash).
#[inline(always)]
pub fn tag_bit(tag: &[u8; 16]) -> (u32, u64) {
    let hi = u64::from_le_bytes([
        tag[0], tag[1], tag[2], tag[3], tag[4], tag[5], tag[6], tag[7],
    ]);
    let lo = u64::from_le_bytes([
        tag[8], tag[9], tag[10], tag[11], tag[12], tag[13], tag[14], tag[15],
    ]);
    let h = mix64(mix64(hi ^ 0x7a67_7467_7461_6773) ^ lo);
    let word = (h >> 6) as u32 & (ENDPOINT_BITS_WORDS - 1);
    (word, 1u64 << (h & 63))
}
