//! TCP: passed, except a call that fell back to TCP toward a listed range
//! (`classify_tcp`: STUN/TURN over TCP, Telegram's TCP reflector). Such a
//! connection gets a flow slot (flagged `FLOW2_TCP_FALLBACK`, its bit set in
//! `FLOW_BITS`), and its packets take the category's policy as call packets.
//! Other TCP costs the flow hash and one bitmap read; the payload's first
//! bytes are read only from segments that carry some.

use aya_ebpf::bindings::BPF_ANY;
use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use aya_ebpf::programs::XdpContext;
use filter_common::classify::{LABEL_NONE, TCP_HEAD};
use filter_common::decide::tag_bit;
use filter_common::flow::{bucket_of, bucket_of2, find, live, tick};
use filter_common::*;

use crate::{
    FLOWS, Info, POLICY, STATE, Scratch, TG_TAGS, bit_set, categories, event, flow_bit_mark,
    flow_bit_maybe, load_head, locate_into, tag_of,
};

/// A TCP packet.
#[inline(always)]
pub fn tcp(ctx: &XdpContext, scratch: &mut Scratch, len: usize) -> (u32, Info) {
    let pass = || crate::pass(O_TCP, len);
    let pkt = &scratch.pkt;
    let Some(state) = STATE.get(0) else {
        return pass();
    };
    let t = crate::ff_flow_tag();
    let from_a = t & 1 != 0;
    let tag = t | 1;
    let known = flow_bit_maybe(tag);
    let mut label = LABEL_NONE;
    if pkt.payload_len > 0 && load_head(ctx, pkt, &mut scratch.head, TCP_HEAD) {
        // The payload's real length: the TCP classifier reads only the
        // first TCP_HEAD bytes, which are loaded.
        crate::ff_classify(scratch.pkt.payload_len.min(0xffff) as u32, 1);
        label = scratch.class.label;
    }
    if !known && label == LABEL_NONE {
        return pass();
    }
    // SAFETY: helper without arguments.
    let now_ns = unsafe { bpf_ktime_get_coarse_ns() };
    let now = tick(now_ns);
    let generation = state.generation & 1;
    let (src_cat, dst_cat) = if label != LABEL_NONE {
        categories(generation, &scratch.pkt)
    } else {
        (CAT_NONE, CAT_NONE)
    };
    if src_cat == CAT_ALLOW || dst_cat == CAT_ALLOW {
        return pass();
    }
    // The listed side: the destination's category, else the source's.
    let listed = if dst_cat != CAT_NONE {
        dst_cat
    } else {
        src_cat
    };
    let found = if label != LABEL_NONE && listed != CAT_NONE {
        let cats = (listed, src_cat, dst_cat);
        fallback_slot(scratch, state, tag, from_a, cats, label, (now_ns, now))
    } else {
        known_fallback(tag, now)
    };
    let Some(slot) = found else {
        return pass();
    };
    flow_bit_mark(state, tag);
    fallback_verdict(ctx, scratch, slot, generation, from_a, len, (now_ns, now))
}

/// The slot of a fallback connection that starts (or goes on) toward a
/// listed range, taken anew unless it already holds this connection as a
/// fallback; a Telegram reflector's peer tag is learned (its UDP data
/// packets carry it too). `cats`: listed, source, destination categories.
#[inline(always)]
fn fallback_slot(
    scratch: &mut Scratch,
    state: &State,
    tag: u64,
    from_a: bool,
    (listed, src_cat, dst_cat): (u8, u8, u8),
    label: u8,
    (now_ns, now): (u64, u32),
) -> Option<&'static mut FlowSlot> {
    if !locate_into(scratch, tag, now) {
        return None;
    }
    let (s, _, taken) = crate::flow_slot(scratch, state, tag, now, from_a, FLOW2_TCP_FALLBACK)?;
    if taken {
        event(EV_FLOWS_CREATED);
    }
    s.category = listed;
    s.version = state.version;
    if from_a {
        (s.cat_a, s.cat_b) = (src_cat, dst_cat);
    } else {
        (s.cat_a, s.cat_b) = (dst_cat, src_cat);
    }
    s.label = label;
    s.flags |= FLOW_CALL | FLOW_LISTED;
    s.flags2 |= FLOW2_TCP_FALLBACK;
    if scratch.class.learn_tag {
        let v = TagValue {
            learned_ns: now_ns,
            category: listed,
            _pad: [0; 7],
        };
        let (word, bit) = tag_bit(tag_of(&scratch.head));
        bit_set(state, word, bit);
        let _ = TG_TAGS.insert(tag_of(&scratch.head), v, BPF_ANY as u64);
    }
    Some(s)
}

/// The slot of a connection already known as a live fallback (its bit set).
#[inline(always)]
fn known_fallback(tag: u64, now: u32) -> Option<&'static mut FlowSlot> {
    let found = [bucket_of(tag), bucket_of2(tag)]
        .into_iter()
        .find_map(|at| {
            let b = FLOWS.get_ptr_mut(at)?;
            // SAFETY: a map value that stays valid for this run.
            let b = unsafe { &mut *b };
            let w = find(b, tag)?;
            Some(&mut b.slots[w & 1])
        });
    match found {
        Some(s) if live(s, now) && s.flags2 & FLOW2_TCP_FALLBACK != 0 => Some(s),
        _ => None,
    }
}

/// A fallback connection's packet: its category's policy as a call packet
/// (the UDP path's verdict, with no endpoint inherited), counted.
#[inline(always)]
fn fallback_verdict(
    ctx: &XdpContext,
    scratch: &Scratch,
    slot: &mut FlowSlot,
    generation: u32,
    from_a: bool,
    len: usize,
    now: (u64, u32),
) -> (u32, Info) {
    let policy = POLICY
        .get(generation * CATEGORY_SLOTS + u32::from(slot.category))
        .copied()
        .unwrap_or_default();
    let (src_cat, dst_cat, _) = crate::listed_sides(slot, from_a);
    let fate = (&None, (src_cat, dst_cat), from_a);
    let v = crate::packet_verdict(ctx, scratch, slot, &policy, fate, true, now);
    event(EV_TCP_FALLBACK);
    crate::counted(ctx, slot, slot.label, v, true, len, now.1)
}
