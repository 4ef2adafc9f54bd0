//! Fragmented datagrams (the rules are `filter_common::frag`'s): the
//! datagram's state in `FRAGS`, and the three places it is used: a later
//! fragment (`later`), a first fragment joined to a later one that came
//! first (`join_early`) or too short to classify (`stash_first`,
//! `tiny_first`), and the verdict noted after a fragment's decision (`note`).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_ktime_get_coarse_ns, bpf_xdp_load_bytes};
use aya_ebpf::programs::XdpContext;
use filter_common::classify::{HEAD_LEN, HEAD_MIN};
use filter_common::decide::{Verdict, tiny_verdict};
use filter_common::flow::tick;
use filter_common::frag::{
    Later, UDP_HEADER, early_continuation, frag_live, frag_tag, later_action, same_datagram,
};
use filter_common::parse::{Fragment, PROTO_UDP, Packet};
use filter_common::*;

use crate::{
    FRAGS, Info, NO_INFO, POLICY, STATE, SYN_LATER, SYN_REWRITE, Scratch, count, count_verdict,
    event, frag_key, pass,
};

/// Head bytes a later fragment adds at most after what was kept.
const LATER_HEAD: usize = HEAD_LEN - HEAD_MIN;

/// The slot of the datagram of `pkt` (IP id `id`), and its tag.
#[inline(always)]
fn slot_of(state: &State, pkt: &Packet, id: u32) -> Option<(&'static mut FragSlot, u64)> {
    let tag = frag_tag(&frag_key(pkt, id), state.hash_key);
    let p = FRAGS.get_ptr_mut((tag >> 24) as u32 & (FRAG_CAPACITY - 1))?;
    // SAFETY: a map value that stays valid for this run.
    Some((unsafe { &mut *p }, tag))
}

#[inline(always)]
fn now_tick() -> u32 {
    // SAFETY: helper without arguments.
    tick(unsafe { bpf_ktime_get_coarse_ns() })
}

/// A later fragment: its verdict, or `None` when its bytes are its
/// datagram's payload head, now in `scratch` (`head`, `head_valid`) with
/// the datagram as its first fragment described it (`pkt`), for the UDP
/// path to decide.
#[inline(always)]
pub fn later(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    id: u32,
    offset: u16,
    len: usize,
) -> Option<(u32, Info)> {
    let pkt = &scratch.pkt;
    let Some(state) = STATE.get(0) else {
        return Some(pass(O_FRAG_PASS, len));
    };
    let Some((fs, tag)) = slot_of(state, pkt, id) else {
        return Some(pass(O_FRAG_PASS, len));
    };
    let now = now_tick();
    let known = frag_live(fs, tag, now);
    match later_action(fs, known, pkt.proto == PROTO_UDP, offset) {
        Later::Drop => {
            fs.last_seen = now;
            count(O_FRAG_DROP, len);
            Some((XDP_DROP, NO_INFO))
        }
        Later::Overlap => {
            fs.last_seen = now;
            fs.state = FRAG_DROP;
            event(EV_FRAG_OVERLAP);
            count(O_FRAG_DROP, len);
            Some((XDP_DROP, NO_INFO))
        }
        Later::Stash => {
            stash_early(ctx, &scratch.pkt, fs, tag, offset, now);
            Some(pass(O_FRAG_PASS, len))
        }
        Later::Pass => {
            if known {
                fs.last_seen = now;
            }
            Some(pass(O_FRAG_PASS, len))
        }
        Later::Classify { prefix } => {
            fs.last_seen = now;
            continue_head(ctx, scratch, fs, prefix, offset, len)
        }
    }
}

/// A later fragment before its first fragment: its first bytes kept, which
/// the first fragment may continue into a head.
#[inline(always)]
fn stash_early(ctx: &XdpContext, pkt: &Packet, fs: &mut FragSlot, tag: u64, offset: u16, now: u32) {
    fs.tag = tag;
    fs.last_seen = now;
    fs.sport = 0;
    fs.dport = 0;
    fs.udp_len = 0;
    fs.first_end = 0;
    fs.head_end = 0;
    fs.state = FRAG_PENDING;
    fs.flags = FRAGF_EARLY;
    fs.category = CAT_NONE;
    fs.stash_off = offset - UDP_HEADER;
    fs.stash_len = load_stash(ctx, pkt, &mut fs.stash);
    event(EV_FRAG_EARLY);
}

/// The fragment that continues a datagram's head: the first fragment's
/// stashed `prefix` bytes and this fragment's first bytes joined in
/// `scratch.head`, and `scratch.pkt` made the datagram as its first fragment
/// told it, for the UDP path (`None`); a verdict when they cannot be read.
#[inline(always)]
fn continue_head(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    fs: &FragSlot,
    prefix: u8,
    offset: u16,
    len: usize,
) -> Option<(u32, Info)> {
    let prefix = usize::from(prefix).min(HEAD_MIN);
    scratch.head[..HEAD_MIN].copy_from_slice(&fs.stash);
    let want = scratch.pkt.payload_len.min(LATER_HEAD) as u32;
    if want == 0 || want > LATER_HEAD as u32 {
        return Some(pass(O_FRAG_PASS, len));
    }
    // SAFETY: at most LATER_HEAD bytes at head[prefix..], prefix <=
    // HEAD_MIN: inside the head; the helper checks the packet side.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            scratch.pkt.payload_off as u32,
            scratch.head.as_mut_ptr().add(prefix).cast::<c_void>(),
            want,
        )
    };
    if r != 0 {
        return Some(pass(O_FRAG_PASS, len));
    }
    scratch.head_valid = prefix as u32 + want;
    scratch.synth = SYN_LATER
        | if prefix == 0 && offset < fs.head_end {
            SYN_REWRITE
        } else {
            0
        };
    scratch.frag_offset = u32::from(offset);
    scratch.frag_data = want;
    scratch.frag_flags |= u32::from(fs.flags & FRAGF_DECIDED);
    scratch.pkt.proto = PROTO_UDP;
    scratch.pkt.sport = fs.sport;
    scratch.pkt.dport = fs.dport;
    scratch.pkt.payload_len = usize::from(fs.udp_len).saturating_sub(8);
    scratch.pkt.udp_len = fs.udp_len;
    None
}

/// The first `HEAD_MIN` bytes (fewer when it has fewer) of a fragment's data
/// into `stash`; how many.
#[inline(always)]
fn load_stash(ctx: &XdpContext, pkt: &Packet, stash: &mut [u8; HEAD_MIN]) -> u8 {
    let n = pkt.payload_len.min(HEAD_MIN) as u32;
    if n == 0 || n > HEAD_MIN as u32 {
        return 0;
    }
    // SAFETY: at most HEAD_MIN bytes into the stash; the helper checks bounds.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            pkt.payload_off as u32,
            stash.as_mut_ptr().cast::<c_void>(),
            n,
        )
    };
    if r == 0 { n as u8 } else { 0 }
}

/// A first fragment whose payload a later fragment that came first
/// continues: that fragment's kept bytes go after this one's in the head.
#[inline(always)]
pub fn join_early(scratch: &mut Scratch, id: u32, now: u32) {
    let Some(state) = STATE.get(0) else {
        return;
    };
    let Some((fs, tag)) = slot_of(state, &scratch.pkt, id) else {
        return;
    };
    let carried = scratch.pkt.payload_len;
    let more = early_continuation(fs, frag_live(fs, tag, now), carried);
    if more == 0 || carried >= HEAD_MIN {
        return;
    }
    let at = carried & (HEAD_MIN - 1);
    for i in 0..HEAD_MIN {
        if i < usize::from(more) {
            scratch.head[(at + i) & (HEAD_LEN - 1)] = fs.stash[i];
        }
    }
    scratch.head_valid = (at + usize::from(more)) as u32;
}

/// A tiny first fragment: keep its bytes; the fragment that continues them
/// is classified with them. `dropped`: it was dropped by address (toward a
/// listed range), so the datagram is, and the classification only teaches.
#[inline(always)]
pub fn stash_first(scratch: &mut Scratch, now: u32, dropped: bool) {
    let Some(state) = STATE.get(0) else {
        return;
    };
    let pkt = &scratch.pkt;
    let Fragment::First { id } = pkt.frag else {
        return;
    };
    let Some((fs, tag)) = slot_of(state, pkt, id) else {
        return;
    };
    let carried = pkt.payload_len.min(HEAD_MIN - 1);
    fs.tag = tag;
    fs.last_seen = now;
    fs.sport = pkt.sport;
    fs.dport = pkt.dport;
    fs.udp_len = pkt.udp_len;
    fs.first_end = UDP_HEADER + carried as u16;
    fs.head_end = fs.first_end;
    fs.state = FRAG_PENDING;
    fs.flags = FRAGF_FIRST
        | if dropped {
            FRAGF_LISTED | FRAGF_DECIDED
        } else {
            0
        };
    fs.category = CAT_NONE;
    fs.stash_off = 0;
    fs.stash_len = carried as u8;
    fs.stash.copy_from_slice(&scratch.head[..HEAD_MIN]);
    scratch.synth |= crate::SYN_STASHED;
}

/// A tiny first fragment to or from a listed range (category `listed`):
/// decided by address (`tiny_verdict`; under `flows=P%` by the caller's
/// fate, the caller being the side outside the range).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn tiny_first(
    ctx: &XdpContext,
    state: &State,
    slot: &mut FlowSlot,
    (listed, dst_listed, from_a): (u8, bool, bool),
    len: usize,
    (now_ns, now): (u64, u32),
) -> (u32, Info) {
    let policy = POLICY
        .get((state.generation & 1) * CATEGORY_SLOTS + u32::from(listed))
        .copied()
        .unwrap_or_default();
    let mut fate = FATE_UNDECIDED;
    if policy.action == ACTION_FLOWS {
        // Without a subscriber end: the side outside the listed range.
        fate = crate::flows_fate(
            ctx,
            slot,
            !dst_listed,
            policy.percent,
            (now_ns, now),
            from_a,
        );
    }
    let v = tiny_verdict(&policy, fate);
    event(EV_FRAG_TINY);
    count_verdict(ctx, listed, len, v);
    let info = Info {
        category: listed,
        label: 0,
        flags: if v == Verdict::Monitor {
            TRACE_MONITORED
        } else {
            0
        },
    };
    if v == Verdict::Drop {
        (XDP_DROP, info)
    } else {
        (XDP_PASS, info)
    }
}

/// After a fragment's decision (`dropped`): the datagram's state, so its
/// other fragments follow it.
#[inline(always)]
pub fn note(scratch: &Scratch, dropped: bool) {
    if scratch.synth & crate::SYN_STASHED != 0 {
        return;
    }
    let Some(state) = STATE.get(0) else {
        return;
    };
    let pkt = &scratch.pkt;
    let (id, first) = match pkt.frag {
        Fragment::First { id } => (id, true),
        Fragment::Later { id, .. } => (id, false),
        Fragment::None => return,
    };
    let Some((fs, tag)) = slot_of(state, pkt, id) else {
        return;
    };
    let now = now_tick();
    let verdict = if dropped { FRAG_DROP } else { FRAG_PASS };
    let earned = scratch.frag_flags as u8 & (FRAGF_LISTED | FRAGF_CALL);
    if first {
        let same = same_datagram(fs, tag, now);
        let valid = if scratch.head_valid > 0 {
            scratch.head_valid as usize
        } else {
            pkt.payload_len
        };
        let judged = UDP_HEADER + valid.min(HEAD_LEN) as u16;
        fs.head_end = if same && fs.head_end > judged {
            fs.head_end
        } else {
            judged
        };
        fs.flags = FRAGF_FIRST | earned | if same { fs.flags & FRAGF_EARLY } else { 0 };
        fs.tag = tag;
        fs.sport = pkt.sport;
        fs.dport = pkt.dport;
        fs.udp_len = pkt.udp_len;
        fs.first_end = UDP_HEADER + pkt.payload_len.min(0xffff - 8) as u16;
        fs.stash_len = 0;
    } else {
        let end = (scratch.frag_offset + scratch.frag_data) as u16;
        if end > fs.head_end {
            fs.head_end = end;
        }
        fs.flags |= earned;
        if scratch.synth & SYN_REWRITE != 0 && dropped {
            event(EV_FRAG_OVERLAP);
        } else {
            event(EV_FRAG_LATE);
        }
    }
    fs.last_seen = now;
    fs.state = verdict;
}
