//! The flowfilter XDP program. Thin by design: read bounded bytes, call
//! `filter-common` (parser, classifier, decision), update maps and per-CPU
//! counters, return a verdict. No logging, no allocation, no locks.
#![no_std]
#![no_main]
// Atomic adds on shared flow values (the BPF target has no atomic RMW in `core`).
#![allow(internal_features)]
#![feature(core_intrinsics)]

use core::ffi::c_void;
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::{BPF_ANY, BPF_NOEXIST};
use aya_ebpf::helpers::generated::{
    bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
};
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, LpmTrie, LruHashMap, PerCpuArray};
use aya_ebpf::programs::XdpContext;
use filter_common::classify::{
    Class, HEAD_LEN, LABEL_MAX, LABEL_NONE, LABEL_P2P_INHERITED, LABEL_TELEGRAM_DATA, Strength,
    classify,
};
use filter_common::decide::{
    Verdict, caller_fate, endpoint_bit, endpoint_fresh, endpoints_to_learn, epoch_seed,
    hidden_verdict, learnable_port, may_teach, observe, tag_fresh, verdict,
};
use filter_common::parse::{
    Fragment, PROTO_TCP, PROTO_UDP, Packet, PacketBytes, Parsed, parse_frame,
};
use filter_common::v4table::{V4_ROW_DETAIL, V4Entry, chunk_slot, decode, row_index, row_slot};
use filter_common::*;

#[map(name = "V4_TBL16")]
static V4_TBL16: Array<u32> = Array::with_max_entries(GENERATIONS * V4_ROWS, 0);
#[map(name = "V4_TBL24")]
static V4_TBL24: Array<[u32; V4_ROW_LEN]> = Array::with_max_entries(GENERATIONS * V4_ROWS, 0);
#[map(name = "V4_TBL8")]
static V4_TBL8: Array<[u8; 256]> = Array::with_max_entries(GENERATIONS * V4_CHUNKS_PER_GEN, 0);
#[map(name = "V6_LPM0")]
static V6_LPM0: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(V6_MAX_PREFIXES, 0);
#[map(name = "V6_LPM1")]
static V6_LPM1: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(V6_MAX_PREFIXES, 0);
#[map(name = "POLICY")]
static POLICY: Array<Policy> = Array::with_max_entries(GENERATIONS * CATEGORY_SLOTS, 0);
#[map(name = "STATE")]
static STATE: Array<State> = Array::with_max_entries(1, 0);
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(FLOW_CAPACITY, 0);
#[map(name = "FRAGS")]
static FRAGS: LruHashMap<FragKey, u32> = LruHashMap::with_max_entries(FRAG_CAPACITY, 0);
#[map(name = "ENDPOINTS")]
static ENDPOINTS: LruHashMap<EndpointKey, EndpointValue> =
    LruHashMap::with_max_entries(ENDPOINT_CAPACITY, 0);
#[map(name = "ENDPOINT_BITS")]
static ENDPOINT_BITS: Array<u64> = Array::with_max_entries(ENDPOINT_BITS_WORDS, 0);
#[map(name = "TG_TAGS")]
static TG_TAGS: LruHashMap<[u8; 16], TagValue> = LruHashMap::with_max_entries(TAG_CAPACITY, 0);
#[map(name = "IF_CAT_STATS")]
static IF_CAT_STATS: PerCpuArray<CatStats> =
    PerCpuArray::with_max_entries(IF_SLOTS * CATEGORY_SLOTS, 0);
#[map(name = "IF_SLOT")]
static IF_SLOT: Array<u32> = Array::with_max_entries(IF_INDEX_LIMIT, 0);
#[map(name = "LABEL_STATS")]
static LABEL_STATS: PerCpuArray<LabelStats> = PerCpuArray::with_max_entries(LABEL_SLOTS, 0);
#[map(name = "GLOBAL_STATS")]
static GLOBAL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(GLOBAL_SLOTS, 0);
/// Per-CPU scratch space: the payload head and a new flow's value live here,
/// not on the 512-byte stack.
#[repr(C)]
struct Scratch {
    head: [u8; HEAD_LEN],
    flow: FlowValue,
    key: FlowKey,
    endpoint: EndpointKey,
    endpoint_value: EndpointValue,
    /// The classifier's result goes through map memory on purpose: the
    /// verifier does not track values stored there, so the classifier's many
    /// exits converge into one state instead of each walking the rest of the
    /// program (verifier work, not run time).
    class: Class,
    pkt: Packet,
}
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "PKT_TRACE")]
static PKT_TRACE: Array<PktTrace> = Array::with_max_entries(1, 0);

/// Set to 1 by the replay loader: record each packet's decision in `PKT_TRACE`.
/// A `.rodata` constant, so the verifier prunes the branch when it is 0.
#[unsafe(no_mangle)]
static TRACE: u8 = 0;

/// Frame access: direct packet reads, each a fixed-size copy bounds-checked
/// against `data_end`. The program does not declare multi-buffer (frags)
/// support, so the kernel hands it linear frames only: the first buffer is
/// the whole frame.
struct Frame {
    data: usize,
    data_end: usize,
    len: usize,
}

/// Largest header offset read (two VLAN tags + IPv6 + six extension headers
/// of realistic size stay inside it; headers beyond hide the transport).
const MAX_DIRECT_OFF: usize = filter_common::parse::XDP_HEADER_REACH;

impl PacketBytes for Frame {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > MAX_DIRECT_OFF {
            return None;
        }
        let p = self.data + off;
        if p + N > self.data_end {
            return None;
        }
        // SAFETY: [p, p + N) lies inside the packet.
        Some(unsafe { (p as *const [u8; N]).read_unaligned() })
    }
}

#[inline(always)]
fn g_add(idx: u32, n: u64) {
    if let Some(p) = GLOBAL_STATS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *p += n };
    }
}

/// What the trace records besides the verdict.
#[derive(Clone, Copy)]
struct Info {
    category: u8,
    label: u8,
    flags: u8,
}

const NO_INFO: Info = Info {
    category: 0,
    label: 0,
    flags: 0,
};

#[xdp]
pub fn flowfilter(ctx: XdpContext) -> u32 {
    let (action, info) = filter(&ctx);
    // SAFETY: reading a constant the loader may have set.
    if unsafe { core::ptr::read_volatile(&TRACE) } != 0
        && let Some(t) = PKT_TRACE.get_ptr_mut(0)
    {
        // SAFETY: map value pointer; replay runs one packet at a time.
        unsafe {
            (*t).verdict = action;
            (*t).category = info.category;
            (*t).label = info.label;
            (*t).flags = info.flags;
            (*t).written = 1;
        }
    }
    action
}

#[inline(always)]
fn filter(ctx: &XdpContext) -> (u32, Info) {
    // The frame length from the helper, not `data_end - data`: LLVM must not
    // relate the parser's length checks to the packet pointers, or it drops
    // the per-read `data_end` checks the verifier needs.
    // SAFETY: ctx is the program's context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let frame = Frame {
        data: ctx.data(),
        data_end: ctx.data_end(),
        len,
    };
    g_add(G_PACKETS, 1);
    g_add(G_BYTES, len as u64);
    let pkt = match parse_frame(&frame) {
        Parsed::NonIp => {
            g_add(G_NON_IP, 1);
            return (XDP_PASS, NO_INFO);
        }
        Parsed::Malformed(_) => {
            g_add(G_MALFORMED, 1);
            return (XDP_PASS, NO_INFO);
        }
        Parsed::Hidden(p) => {
            g_add(G_V6_HIDDEN, 1);
            return hidden(ctx, &p, len);
        }
        Parsed::Ip(p) => p,
    };
    match pkt.frag {
        Fragment::Later { id } => {
            g_add(G_FRAGMENTS, 1);
            let key = frag_key(&pkt, id);
            // SAFETY: read-only look-up of a plain value.
            if unsafe { FRAGS.get(key) }.is_some() {
                g_add(G_FRAG_DROPPED, 1);
                g_add(G_DROPPED, 1);
                return (XDP_DROP, NO_INFO);
            }
            return (XDP_PASS, NO_INFO);
        }
        Fragment::First { .. } => g_add(G_FRAGMENTS, 1),
        Fragment::None => {}
    }
    if pkt.proto == PROTO_TCP {
        g_add(G_TCP, 1);
        return (XDP_PASS, NO_INFO);
    }
    if pkt.proto != PROTO_UDP {
        g_add(G_OTHER_IP, 1);
        return (XDP_PASS, NO_INFO);
    }
    g_add(G_UDP, 1);
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return (XDP_PASS, NO_INFO);
    };
    // SAFETY: per-CPU scratch value, used only during this run on this CPU.
    let scratch = unsafe { &mut *scratch };
    // Through map memory, like the class (see `Scratch`): the parser's many
    // exits then share one verifier state.
    scratch.pkt = pkt;
    udp(ctx, scratch, len)
}

/// An IPv6 packet whose transport the parser could not reach: decided by
/// its addresses alone (`hidden_verdict`), so extension headers cannot carry
/// media past a listed range.
#[inline(always)]
fn hidden(ctx: &XdpContext, pkt: &Packet, len: usize) -> (u32, Info) {
    let (state, src_cat, dst_cat) = match categorise(pkt) {
        Ok(c) => c,
        Err(passed) => return passed,
    };
    let generation = state.generation & 1;
    let category = if dst_cat != CAT_NONE {
        dst_cat
    } else {
        src_cat
    };
    if category == CAT_NONE {
        return (XDP_PASS, NO_INFO);
    }
    let policy = POLICY
        .get(generation * CATEGORY_SLOTS + category as u32)
        .copied()
        .unwrap_or_default();
    let v = hidden_verdict(&policy);
    count_category(ctx, category, len, v);
    let info = Info {
        category,
        label: LABEL_NONE,
        flags: if v == Verdict::Monitor {
            TRACE_MONITORED
        } else {
            0
        },
    };
    if v == Verdict::Drop {
        g_add(G_DROPPED, 1);
        return (XDP_DROP, info);
    }
    (XDP_PASS, info)
}

#[inline(always)]
fn frag_key(pkt: &Packet, id: u32) -> FragKey {
    // An IPv6 later fragment's next header may be another extension header,
    // not the first fragment's upper protocol; the 32-bit id is enough there.
    let proto = if pkt.is_v6 { 0 } else { pkt.proto };
    FragKey {
        src: pkt.src,
        dst: pkt.dst,
        id,
        proto,
        _pad: [0; 3],
    }
}

#[inline(always)]
fn lookup(generation: u32, pkt: &Packet, dst: bool) -> u8 {
    let addr = if dst { &pkt.dst } else { &pkt.src };
    if pkt.is_v6 {
        let key = Key::new(128, *addr);
        let map = if generation == 0 { &V6_LPM0 } else { &V6_LPM1 };
        return map.get(&key).copied().unwrap_or(CAT_NONE);
    }
    let a = if dst { pkt.dst_v4() } else { pkt.src_v4() };
    let row_at = row_index(generation, a);
    // Most look-ups end at the /16 summary (cache-resident), not the row.
    match V4_TBL16.get(row_at) {
        Some(s) if *s & V4_ROW_DETAIL == 0 => return *s as u8,
        Some(_) => {}
        None => return CAT_NONE,
    }
    let Some(row) = V4_TBL24.get(row_at) else {
        return CAT_NONE;
    };
    match decode(row[row_slot(a)]) {
        V4Entry::Category(c) => c,
        V4Entry::Chunk(i) => V4_TBL8.get(i).map_or(CAT_NONE, |c| c[chunk_slot(a)]),
    }
}

/// The program state and the categories of the source and destination
/// addresses in the active generation; `Err` with the verdict (pass) when
/// there is no state or an address is on the allowlist (counted).
#[inline(always)]
fn categorise(pkt: &Packet) -> Result<(&'static State, u8, u8), (u32, Info)> {
    let Some(state) = STATE.get(0) else {
        return Err((XDP_PASS, NO_INFO));
    };
    let generation = state.generation & 1;
    let src_cat = lookup(generation, pkt, false);
    let dst_cat = lookup(generation, pkt, true);
    if src_cat == CAT_ALLOW || dst_cat == CAT_ALLOW {
        g_add(G_ALLOWED, 1);
        return Err((
            XDP_PASS,
            Info {
                category: CAT_ALLOW,
                label: 0,
                flags: 0,
            },
        ));
    }
    Ok((state, src_cat, dst_cat))
}

#[inline(always)]
fn udp(ctx: &XdpContext, scratch: &mut Scratch, len: usize) -> (u32, Info) {
    let pkt = &scratch.pkt;
    let (state, src_cat, dst_cat) = match categorise(pkt) {
        Ok(c) => c,
        Err(passed) => return passed,
    };
    let generation = state.generation & 1;

    let head = &mut scratch.head;
    // No zeroing: the classifier never reads a head byte at or beyond the
    // payload's length (a host property test holds it to that), so bytes
    // left by an earlier packet are never seen.
    let want = if pkt.payload_len < HEAD_LEN {
        pkt.payload_len
    } else {
        HEAD_LEN
    };
    let want = (want as u32) & 0xff;
    if want > 0 && want <= HEAD_LEN as u32 {
        // SAFETY: copies at most HEAD_LEN bytes into head; the helper checks bounds.
        let r = unsafe {
            bpf_xdp_load_bytes(
                ctx.ctx,
                pkt.payload_off as u32,
                head.as_mut_ptr() as *mut c_void,
                want,
            )
        };
        if r != 0 {
            g_add(G_MALFORMED, 1);
            return (XDP_PASS, NO_INFO);
        }
    }
    scratch.class = classify(head, pkt.payload_len, pkt.sport, pkt.dport);
    let class = &mut scratch.class;
    let (k, from_a) = pkt.flow_key();
    scratch.key = k;
    let key = &scratch.key;
    let ep = &mut scratch.endpoint;
    let epv = &mut scratch.endpoint_value;
    let listed = if dst_cat != CAT_NONE {
        dst_cat
    } else {
        src_cat
    };
    // Fast path: an unlisted flow without a signature can only be a call flow
    // through a learned endpoint or tag; when the bitmap rules both endpoints
    // out (and the length rules out a tag), skip the hash-map look-ups.
    if listed == CAT_NONE
        && class.app == CAT_NONE
        && !class.tag_candidate
        && !endpoint_maybe(&pkt.src, pkt.sport)
        && !endpoint_maybe(&pkt.dst, pkt.dport)
    {
        return passed_uncategorised(class.label, class.label, len);
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };

    let existing = FLOWS.get_ptr_mut(key);
    let fresh = &mut scratch.flow;
    *fresh = FlowValue::default();
    // For an inherited flow, the caller is the endpoint it inherited from.
    let mut inherited_from: Option<[u8; 16]> = None;
    let (flow, is_new): (&mut FlowValue, bool) = match existing {
        // SAFETY: pointer to a map value that stays valid for this run.
        Some(p) => (unsafe { &mut *p }, false),
        None => {
            let mut cat = if listed != CAT_NONE {
                listed
            } else {
                class.app
            };
            if cat == CAT_NONE && class.tag_candidate {
                cat = learned_tag(head, now, class);
            }
            if cat == CAT_NONE {
                if let Some(e) = inheritable(ep, &pkt.src, pkt.sport, now) {
                    cat = e;
                    inherited_from = Some(pkt.src);
                } else if let Some(e) = inheritable(ep, &pkt.dst, pkt.dport, now) {
                    cat = e;
                    inherited_from = Some(pkt.dst);
                }
            }
            if cat == CAT_NONE {
                return passed_uncategorised(class.label, class.label, len);
            }
            fresh.first_seen_ns = now;
            if !from_a {
                fresh.flags |= FLOW_FIRST_FROM_B;
            }
            if inherited_from.is_some() {
                fresh.sig_category = cat;
                fresh.flags |= FLOW_CALL | FLOW_INHERITED;
                fresh.label = LABEL_P2P_INHERITED;
            }
            (fresh, true)
        }
    };
    let is_call = observe(flow, class, from_a);
    // Re-derived on every packet, so a list swap re-categorises live flows.
    let category = if listed != CAT_NONE {
        listed
    } else {
        flow.sig_category
    };
    flow.category = category;
    if listed != CAT_NONE {
        flow.flags |= FLOW_LISTED;
    } else {
        flow.flags &= !FLOW_LISTED;
    }
    if category == CAT_NONE {
        // Tracked, but no longer in any category (its range left the lists).
        flow.last_seen_ns = now;
        return passed_uncategorised(class.label, flow.label, len);
    }

    let policy = POLICY
        .get(generation * CATEGORY_SLOTS + category as u32)
        .copied()
        .unwrap_or_default();
    if policy.action == ACTION_FLOWS && flow.fate == FATE_UNDECIDED {
        // The caller is the endpoint outside the category's ranges; for a flow
        // recognised by signature alone, the endpoint that sent first.
        let caller = if let Some(a) = &inherited_from {
            a
        } else if dst_cat != CAT_NONE {
            &pkt.src
        } else if src_cat != CAT_NONE || (flow.flags & FLOW_FIRST_FROM_B != 0) == from_a {
            // A listed source, or (signature only) the peer that sent first.
            &pkt.dst
        } else {
            &pkt.src
        };
        let seed = epoch_seed(state.seed, now, state.epoch_secs);
        flow.fate = caller_fate(caller, seed, policy.percent);
    }
    // SAFETY: helper without arguments.
    let rand = unsafe { bpf_get_prandom_u32() };
    let v = verdict(&policy, is_call, flow.fate, rand);
    let dropped = v == Verdict::Drop;
    // Counted under what the flow was recognised as (e.g. whatsapp-media for
    // SRTP on a WhatsApp relay flow), else what this packet looks like.
    let label = if flow.label != LABEL_NONE {
        flow.label
    } else {
        class.label
    };
    let info = Info {
        category,
        label: flow.label,
        flags: if v == Verdict::Monitor {
            TRACE_MONITORED
        } else {
            0
        } | if is_call { TRACE_CALL } else { 0 },
    };

    // Teach once the call flow has gone both ways or carried a few packets,
    // on anything new (a TURN peer, a Telegram tag), and then at most once
    // per refresh interval.
    if is_call
        && may_teach(flow.flags, flow.packets + 1)
        && (class.has_peer
            || class.learn_tag
            || now.saturating_sub(flow.taught_ns) >= ENDPOINT_REFRESH_NS)
    {
        flow.taught_ns = now;
        let listed_sides = (src_cat != CAT_NONE, dst_cat != CAT_NONE);
        learn(pkt, class, head, category, listed_sides, now, ep, epv);
    }

    flow.last_seen_ns = now;
    if is_new {
        flow.packets = 1;
        flow.bytes = len as u64;
        flow.dropped = dropped as u64;
        if FLOWS.insert(key, flow, BPF_NOEXIST as u64).is_err() {
            g_add(G_FLOW_INSERT_FAIL, 1);
        } else {
            g_add(G_FLOWS_CREATED, 1);
        }
    } else {
        // SAFETY: the fields are 8-byte aligned u64s inside a live map value.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut flow.packets, 1);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut flow.bytes, len as u64);
            if dropped {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut flow.dropped, 1);
            }
        }
    }

    count_category(ctx, category, len, v);
    count_label(label, len, v);
    if dropped {
        g_add(G_DROPPED, 1);
        if let Fragment::First { id } = pkt.frag {
            let _ = FRAGS.insert(frag_key(pkt, id), 1, BPF_ANY as u64);
        }
        return (XDP_DROP, info);
    }
    (XDP_PASS, info)
}

/// The category a learned Telegram peer tag names, if the payload starts with
/// one; marks the class as Telegram data.
#[inline(always)]
fn learned_tag(head: &[u8; HEAD_LEN], now: u64, class: &mut Class) -> u8 {
    // SAFETY: read-only look-up of a plain value; the key is the head's first
    // 16 bytes, in place.
    match unsafe { TG_TAGS.get(tag_of(head)) } {
        Some(t) if tag_fresh(t, now) => {
            class.app = t.category;
            class.label = LABEL_TELEGRAM_DATA;
            class.strength = Strength::Signal;
            t.category
        }
        _ => CAT_NONE,
    }
}

/// The first 16 bytes of the head: a Telegram peer tag.
#[inline(always)]
fn tag_of(head: &[u8; HEAD_LEN]) -> &[u8; 16] {
    // SAFETY: HEAD_LEN >= 16 and [u8; 16] has alignment 1.
    unsafe { &*head.as_ptr().cast::<[u8; 16]>() }
}

/// Pass a UDP packet that belongs to no category: count it under the label
/// it showed (`counted`) and report `reported` in the trace.
#[inline(always)]
fn passed_uncategorised(counted: u8, reported: u8, len: usize) -> (u32, Info) {
    count_label(counted, len, Verdict::Pass);
    (
        XDP_PASS,
        Info {
            category: 0,
            label: reported,
            flags: 0,
        },
    )
}

/// Whether the bitmap says the endpoint may have been learned.
#[inline(always)]
fn endpoint_maybe(addr: &[u8; 16], port: u16) -> bool {
    let (word, bit) = endpoint_bit(addr, port);
    ENDPOINT_BITS.get(word).is_some_and(|w| *w & bit != 0)
}

/// The category an endpoint of an earlier call passes on, if any.
#[inline(always)]
fn inheritable(ep: &mut EndpointKey, addr: &[u8; 16], port: u16, now: u64) -> Option<u8> {
    ep.addr = *addr;
    ep.port = port;
    ep._pad = [0; 2];
    // SAFETY: read-only look-up of a plain value.
    match unsafe { ENDPOINTS.get(*ep) } {
        Some(e) if endpoint_fresh(e, now) && e.category != CAT_NONE => Some(e.category),
        _ => None,
    }
}

/// Remember an endpoint, writing only when it is new, of another category or
/// due for a refresh (map writes are the expensive part).
#[inline(always)]
fn remember(
    ep: &mut EndpointKey,
    epv: &mut EndpointValue,
    addr: &[u8; 16],
    port: u16,
    category: u8,
    origin: u8,
    now: u64,
) {
    if !learnable_port(port) {
        return;
    }
    ep.addr = *addr;
    ep.port = port;
    ep._pad = [0; 2];
    // SAFETY: read-only look-up of a plain value.
    if let Some(e) = unsafe { ENDPOINTS.get(*ep) }
        && e.category == category
        && now.saturating_sub(e.learned_ns) < ENDPOINT_REFRESH_NS
    {
        return;
    }
    let (word, bit) = endpoint_bit(addr, port);
    if let Some(w) = ENDPOINT_BITS.get_ptr_mut(word) {
        // SAFETY: a map value; a lost concurrent update only costs a refresh.
        unsafe { *w |= bit };
    }
    *epv = EndpointValue {
        learned_ns: now,
        category,
        origin,
        _pad: [0; 6],
    };
    let _ = ENDPOINTS.insert(*ep, *epv, BPF_ANY as u64);
}

/// What one call packet teaches: at most its caller-side endpoint, one TURN
/// peer, and one Telegram peer tag.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn learn(
    pkt: &Packet,
    class: &Class,
    head: &[u8; HEAD_LEN],
    category: u8,
    (src_listed, dst_listed): (bool, bool),
    now: u64,
    ep: &mut EndpointKey,
    epv: &mut EndpointValue,
) {
    let (teach_src, teach_dst) = endpoints_to_learn(src_listed, dst_listed);
    if teach_src {
        remember(ep, epv, &pkt.src, pkt.sport, category, ORIGIN_CALL, now);
    }
    if teach_dst {
        remember(ep, epv, &pkt.dst, pkt.dport, category, ORIGIN_CALL, now);
    }
    if class.has_peer {
        let peer = filter_common::parse::v4_mapped(class.peer_addr);
        remember(
            ep,
            epv,
            &peer,
            class.peer_port,
            category,
            ORIGIN_TURN_PEER,
            now,
        );
    }
    if class.learn_tag {
        let v = TagValue {
            learned_ns: now,
            category,
            _pad: [0; 7],
        };
        let _ = TG_TAGS.insert(tag_of(head), v, BPF_ANY as u64);
    }
}

#[inline(always)]
fn count_category(ctx: &XdpContext, category: u8, len: usize, v: Verdict) {
    // The receiving interface's slot (0 for one the daemon did not register).
    let slot = IF_SLOT
        .get(ctx.ingress_ifindex() as u32)
        .map_or(0, |s| *s & (IF_SLOTS - 1));
    let Some(s) = IF_CAT_STATS.get_ptr_mut(slot * CATEGORY_SLOTS + category as u32) else {
        return;
    };
    let len = len as u64;
    // SAFETY: per-CPU slot, only this CPU writes it.
    unsafe {
        (*s).seen_packets += 1;
        (*s).seen_bytes += len;
        match v {
            Verdict::Drop => {
                (*s).dropped_packets += 1;
                (*s).dropped_bytes += len;
            }
            Verdict::Monitor => {
                (*s).monitored_packets += 1;
                (*s).monitored_bytes += len;
                (*s).passed_packets += 1;
                (*s).passed_bytes += len;
            }
            Verdict::Pass => {
                (*s).passed_packets += 1;
                (*s).passed_bytes += len;
            }
        }
    }
}

#[inline(always)]
fn count_label(label: u8, len: usize, v: Verdict) {
    if label == LABEL_NONE || label > LABEL_MAX {
        return;
    }
    let Some(s) = LABEL_STATS.get_ptr_mut(label as u32) else {
        return;
    };
    // SAFETY: per-CPU slot, only this CPU writes it.
    unsafe {
        (*s).packets += 1;
        (*s).bytes += len as u64;
        match v {
            Verdict::Drop => (*s).dropped += 1,
            Verdict::Monitor => (*s).monitored += 1,
            Verdict::Pass => {}
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any path that could reach here.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// The benchmark's limit: drop every frame, do nothing else.
#[xdp]
pub fn xdp_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

/// Payload bytes `xdp_parse_drop` reads after the UDP header.
const PARSE_DROP_PAYLOAD: usize = 32;

/// The benchmark's floor for any filter that looks at packets: read what
/// flowfilter reads (Ethernet, VLAN tags, IPv4/IPv6 with extension headers,
/// UDP, the first 32 payload bytes) with the same parser, then drop. The
/// bytes read are folded into the verdict so the compiler keeps every read;
/// no real frame makes it anything but XDP_DROP.
#[xdp]
pub fn xdp_parse_drop(ctx: XdpContext) -> u32 {
    // SAFETY: ctx is the program's context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let frame = Frame {
        data: ctx.data(),
        data_end: ctx.data_end(),
        len,
    };
    let mut fold: u64 = 0;
    if let Parsed::Ip(p) = parse_frame(&frame)
        && p.proto == PROTO_UDP
        && let Some(head) = frame.load::<PARSE_DROP_PAYLOAD>(p.payload_off)
    {
        for i in 0..PARSE_DROP_PAYLOAD / 8 {
            fold ^= u64::from_ne_bytes([
                head[8 * i],
                head[8 * i + 1],
                head[8 * i + 2],
                head[8 * i + 3],
                head[8 * i + 4],
                head[8 * i + 5],
                head[8 * i + 6],
                head[8 * i + 7],
            ]);
        }
        fold ^= u64::from(p.sport) << 16 | u64::from(p.dport);
    }
    // An impossible fold value: keeps the reads without a second verdict in practice.
    if fold == 0x0bad_f00d_dead_beef {
        return XDP_PASS;
    }
    XDP_DROP
}
