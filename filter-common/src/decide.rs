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

/// Whether the caller at `addr` is stopped under `flows=percent%` in the
/// epoch with `seed`: every flow of one caller gets the same answer.
#[inline(always)]
pub fn caller_fate(addr: &[u8; 16], seed: u64, percent: u8) -> u8 {
    let hi = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let h = mix64(mix64(seed ^ hi) ^ lo);
    if h % 100 < percent as u64 {
        FATE_STOPPED
    } else {
        FATE_SPARED
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
