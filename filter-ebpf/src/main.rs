//! The flowfilter XDP program. Thin by design: read bounded bytes, call
//! `filter-common` (parser, classifier, flow table, decision), update the
//! flow's slot and one per-CPU counter, return a verdict. No logging, no
//! allocation, no locks, no map update calls on the path of a known flow.
//!
//! A UDP packet costs one flow-table bucket read (the flow's slot caches
//! its addresses' categories for the current list version), the payload
//! head, the classifier, and two per-CPU counter slots. Prefix tables are
//! walked when a flow is new or the lists changed; the learned endpoint and
//! tag maps only when a flow may inherit (a bitmap rules most out).
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::bindings::BPF_ANY;
use aya_ebpf::btf_maps::{Array as BtfArray, ArrayOfMaps};
use aya_ebpf::helpers::generated::{
    bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_loop, bpf_xdp_get_buff_len,
    bpf_xdp_load_bytes,
};
use aya_ebpf::macros::{btf_map, map, xdp};
use aya_ebpf::maps::lpm_trie::Key as LpmKey;
use aya_ebpf::maps::{Array, LpmTrie, LruHashMap, PerCpuArray};
use aya_ebpf::programs::XdpContext;
use filter_common::classify::{
    Class, HEAD_LEN, HEAD_MIN, LABEL_MAX, LABEL_NONE, LABEL_P2P_INHERITED, LABEL_TELEGRAM_DATA,
    Strength, classify, first_fragment_len, head_needed,
};
use filter_common::decide::{
    Verdict, endpoint_bit, endpoint_fresh, endpoints_to_learn, epoch_seed, fate_of, flow_rank,
    hidden_verdict, learnable_port, may_teach, observe, rank_holds, subscriber_ends,
    subscriber_key, subscriber_rank, tag_bit, tag_fresh, verdict,
};
use filter_common::flow::{bucket_of, bucket_of2, find, flow_bit, key_hash, live, place, tick};
use filter_common::frag::tiny;
use filter_common::parse::{
    Fragment, PROTO_TCP, PROTO_UDP, Packet, PacketBytes, Parsed, parse_frame,
};
use filter_common::trie::{Entry, TrieMem, Unit, finish, levels, start, step};
use filter_common::*;

/// `BPF_F_MMAPABLE`: userspace maps the array (fast fills and scans).
const MMAPABLE: u32 = 1 << 10;
/// `BPF_F_INNER_MAP`: inner maps of another size than the template.
const INNER_MAP: usize = 1 << 12;

/// Root entries two per element: an array's elements are 8-byte aligned,
/// so pairs keep the root compact (and flat for userspace's mapping).
#[map(name = "ROOT")]
static ROOT: Array<[Entry; 2]> = Array::with_max_entries(ROOT_ENTRIES / 2, MMAPABLE);
/// The node pool of each generation (inner maps sized by userspace).
#[btf_map]
static TRIE: ArrayOfMaps<BtfArray<Unit, 1, { INNER_MAP | MMAPABLE as usize }>, 2> =
    ArrayOfMaps::new();
#[map(name = "POLICY")]
static POLICY: Array<Policy> = Array::with_max_entries(GENERATIONS * CATEGORY_SLOTS, 0);
#[map(name = "STATE")]
static STATE: Array<State> = Array::with_max_entries(1, 0);
#[map(name = "FLOWS")]
static FLOWS: Array<FlowBucket> = Array::with_max_entries(FLOW_BUCKETS, MMAPABLE);
#[map(name = "FLOW_KEYS")]
static FLOW_KEYS: Array<FlowKey> = Array::with_max_entries(FLOW_SLOTS, MMAPABLE);
#[map(name = "FRAGS")]
static FRAGS: Array<FragSlot> = Array::with_max_entries(FRAG_CAPACITY, MMAPABLE);
#[map(name = "ENDPOINTS")]
static ENDPOINTS: LruHashMap<EndpointKey, EndpointValue> =
    LruHashMap::with_max_entries(ENDPOINT_CAPACITY, 0);
#[map(name = "BITS")]
static BITS: Array<u64> = Array::with_max_entries(BITS_WORDS, MMAPABLE);
#[map(name = "FLOW_BITS")]
static FLOW_BITS: Array<u64> = Array::with_max_entries(2 * FLOW_BITS_WORDS, MMAPABLE);
#[map(name = "TG_TAGS")]
static TG_TAGS: LruHashMap<[u8; 16], TagValue> = LruHashMap::with_max_entries(TAG_CAPACITY, 0);
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);
#[map(name = "EVENTS")]
static EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_SLOTS, 0);
#[map(name = "IF_SLOT")]
static IF_SLOT: Array<u32> = Array::with_max_entries(IF_INDEX_LIMIT, 0);
#[map(name = "LABEL_STATS")]
static LABEL_STATS: PerCpuArray<LabelStats> = PerCpuArray::with_max_entries(LABEL_SLOTS, 0);
/// `BPF_F_NO_PREALLOC`: required of LPM tries.
const NO_PREALLOC: u32 = 1;
#[map(name = "SUBSCRIBERS")]
static SUBSCRIBERS: LpmTrie<SubscriberKey, u32> =
    LpmTrie::with_max_entries(GENERATIONS * SUBSCRIBER_CAPACITY, NO_PREALLOC);
#[map(name = "SUB_FATE")]
static SUB_FATE: LruHashMap<[u8; 16], SubFate> = LruHashMap::with_max_entries(SUB_FATE_CAPACITY, 0);
/// Per-CPU scratch space: the payload head and the learning keys live
/// here, not on the 512-byte stack.
#[repr(C)]
struct Scratch {
    head: [u8; HEAD_LEN],
    key: FlowKey,
    endpoint: EndpointKey,
    endpoint_value: EndpointValue,
    /// The classifier's result goes through map memory on purpose: the
    /// verifier does not track values stored there, so the classifier's many
    /// exits converge into one state instead of each walking the rest of the
    /// program (verifier work, not run time).
    class: Class,
    pkt: Packet,
    /// The same for the prefix walk's entry at each level.
    entry: Entry,
    /// And for where the flow's slot is (bucket index, way, fresh).
    bucket_at: u32,
    way: u32,
    fresh: u32,
    /// Head bytes already in `head` (a fragmented datagram's head joined
    /// from two fragments; 0: read the packet's own).
    head_valid: u32,
    /// `SYN_*`: this packet is a later fragment judged as its datagram's
    /// payload (`pkt` is then the datagram as the first fragment told it).
    synth: u32,
    /// `FRAGF_*` the packet's datagram earned on the way (listed, call).
    frag_flags: u32,
    /// The later fragment's IP-payload offset and data bytes (synthetic).
    frag_offset: u32,
    frag_data: u32,
    /// `flows=P%`: the subscriber prefix look-up's key and a subscriber's
    /// key and remembered rank (map memory, not the stack: `ff_rank` runs
    /// two calls deep).
    lpm: LpmKey<SubscriberKey>,
    sub_key: [u8; 16],
    sub_fate: SubFate,
}

/// `Scratch::synth`: a later fragment classified as the payload's head.
const SYN_LATER: u32 = 1;
/// With `SYN_LATER`: it rewrites bytes the datagram was classified on.
const SYN_REWRITE: u32 = 2;
/// A tiny first fragment's bytes were kept (its datagram stays pending).
const SYN_STASHED: u32 = 4;
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

/// The prefix tables as the walk in `filter_common::trie` reads them.
struct Tables;

impl TrieMem for Tables {
    #[inline(always)]
    fn root(&self, index: u32) -> Entry {
        ROOT.get(index >> 1).map_or(0, |p| p[(index & 1) as usize])
    }

    #[inline(always)]
    fn unit(&self, generation: u32, index: u32) -> Option<&Unit> {
        TRIE.get_value(generation & 1, &index)
    }

    #[inline(always)]
    fn opaque(&self, e: Entry) -> Entry {
        match SCRATCH.get_ptr_mut(0) {
            // SAFETY: per-CPU scratch value, used only during this run.
            Some(s) => unsafe {
                core::ptr::write_volatile(&raw mut (*s).entry, e);
                core::ptr::read_volatile(&raw const (*s).entry)
            },
            None => e,
        }
    }
}

/// Add one packet of `len` bytes to counter slot `slot`.
#[inline(always)]
fn count(slot: u32, len: usize) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len as u64;
        }
    }
}

/// Count one rarer event.
#[inline(always)]
fn event(idx: u32) {
    if let Some(p) = EVENTS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *p += 1 };
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

const ALLOWED_INFO: Info = Info {
    category: CAT_ALLOW,
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

/// Pass a packet, counting it under outcome `slot`.
#[inline(always)]
fn pass(slot: u32, len: usize) -> (u32, Info) {
    count(slot, len);
    (XDP_PASS, NO_INFO)
}

#[inline(always)]
fn filter(ctx: &XdpContext) -> (u32, Info) {
    // The frame length from the helper, not `data_end - data`: LLVM must not
    // relate the parser's length checks to the packet pointers, or it drops
    // the per-read `data_end` checks the verifier needs.
    // SAFETY: ctx is the program's context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return pass(O_OTHER_IP, len);
    };
    // SAFETY: per-CPU scratch value, used only during this run on this CPU.
    let scratch = unsafe { &mut *scratch };
    // Parsed into scratch memory (see `ff_parse`).
    match ff_parse(ctx.ctx, len as u32) {
        PARSED_IP => {}
        PARSED_HIDDEN => {
            event(EV_V6_HIDDEN);
            return hidden(ctx, &scratch.pkt, len);
        }
        PARSED_NON_IP => return pass(O_NON_IP, len),
        _ => return pass(O_MALFORMED, len),
    }
    scratch.head_valid = 0;
    scratch.synth = 0;
    scratch.frag_flags = 0;
    match scratch.pkt.frag {
        Fragment::Later { id, offset } => {
            event(EV_FRAGMENTS);
            // A later fragment is decided on its datagram's state, or (its
            // bytes being the payload's head) goes on as that datagram.
            if let Some(done) = unpack(ff_later(ctx.ctx, id, u32::from(offset), len as u32)) {
                return done;
            }
        }
        Fragment::First { .. } | Fragment::None => {
            if matches!(scratch.pkt.frag, Fragment::First { .. }) {
                event(EV_FRAGMENTS);
            }
            if scratch.pkt.proto == PROTO_TCP {
                return unpack(ff_tcp(ctx.ctx, len as u32)).unwrap_or((XDP_PASS, NO_INFO));
            }
            if scratch.pkt.proto != PROTO_UDP {
                return pass(O_OTHER_IP, len);
            }
        }
    }
    let r = unpack(ff_udp(ctx.ctx, len as u32)).unwrap_or((XDP_PASS, NO_INFO));
    if !matches!(scratch.pkt.frag, Fragment::None) {
        frag::note(scratch, r.0 == XDP_DROP);
    }
    r
}

/// A verdict and its trace as one number (what a global BPF function
/// returns): bit 56 set, the action in bits 0..8, category, label, flags in
/// bytes 4, 5, 6. 0: no verdict.
#[inline(always)]
fn pack((action, info): (u32, Info)) -> u64 {
    (1 << 56)
        | u64::from(action & 0xff)
        | (u64::from(info.category) << 32)
        | (u64::from(info.label) << 40)
        | (u64::from(info.flags) << 48)
}

#[inline(always)]
fn unpack(v: u64) -> Option<(u32, Info)> {
    if v >> 56 == 0 {
        return None;
    }
    Some((
        (v & 0xff) as u32,
        Info {
            category: (v >> 32) as u8,
            label: (v >> 40) as u8,
            flags: (v >> 48) as u8,
        },
    ))
}

/// The scratch space (one per CPU, always there).
#[inline(always)]
fn scratch_mut() -> Option<&'static mut Scratch> {
    // SAFETY: per-CPU scratch value, used only during this run on this CPU.
    SCRATCH.get_ptr_mut(0).map(|s| unsafe { &mut *s })
}

/// The UDP path as a global BPF function (verified once, its own stack).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_udp(ctx: *mut aya_ebpf::bindings::xdp_md, len: u32) -> u64 {
    let ctx = XdpContext::new(ctx);
    let Some(scratch) = scratch_mut() else {
        return 0;
    };
    pack(udp(&ctx, scratch, len as usize))
}

/// The TCP path as a global BPF function.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_tcp(ctx: *mut aya_ebpf::bindings::xdp_md, len: u32) -> u64 {
    let ctx = XdpContext::new(ctx);
    let Some(scratch) = scratch_mut() else {
        return 0;
    };
    pack(tcp::tcp(&ctx, scratch, len as usize))
}

/// A later fragment as a global BPF function: its verdict, or 0 to go on
/// with the UDP path (its bytes being the datagram's payload head).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_later(
    ctx: *mut aya_ebpf::bindings::xdp_md,
    id: u32,
    offset: u32,
    len: u32,
) -> u64 {
    let ctx = XdpContext::new(ctx);
    let Some(scratch) = scratch_mut() else {
        return 0;
    };
    match frag::later(&ctx, scratch, id, offset as u16, len as usize) {
        Some(done) => pack(done),
        None => 0,
    }
}

/// `ff_parse`'s answers.
const PARSED_NON_IP: u32 = 0;
/// Could not be parsed.
const PARSED_MALFORMED: u32 = 1;
/// IPv6 whose transport is out of reach (`scratch.pkt` holds the addresses).
const PARSED_HIDDEN: u32 = 2;
/// An IP packet (in `scratch.pkt`).
const PARSED_IP: u32 = 3;

/// The parser as a global BPF function (verified once, its many exits
/// inside it): the frame of `ctx` (`len` bytes) into `scratch.pkt`. The
/// verifier passes it the program's context only.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_parse(ctx: *mut aya_ebpf::bindings::xdp_md, len: u32) -> u32 {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return PARSED_MALFORMED;
    };
    // SAFETY: the program's context; per-CPU scratch, this run only.
    let (ctx, s) = unsafe { (&*ctx, &mut *s) };
    let frame = Frame {
        data: ctx.data as usize,
        data_end: ctx.data_end as usize,
        len: len as usize,
    };
    match parse_frame(&frame) {
        Parsed::NonIp => PARSED_NON_IP,
        Parsed::Malformed(_) => PARSED_MALFORMED,
        Parsed::Hidden(p) => {
            s.pkt = p;
            PARSED_HIDDEN
        }
        Parsed::Ip(p) => {
            s.pkt = p;
            PARSED_IP
        }
    }
}

/// A prefix look-up in progress (the context of `walk_level`).
#[repr(C)]
struct Walk {
    addr: [u8; 16],
    e: Entry,
    generation: u32,
    v6: u32,
    _pad: u32,
}

/// One level of a prefix look-up, as a `bpf_loop` callback: the verifier
/// checks the body once instead of once per level.
extern "C" fn walk_level(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the `Walk` that `trie_lookup` handed it.
    let w = unsafe { &mut *ctx.cast::<Walk>() };
    if filter_common::trie::kind(w.e) == filter_common::trie::KIND_LEAF {
        return 1;
    }
    w.e = step(
        &Tables,
        w.generation,
        w.e,
        &w.addr,
        w.v6 != 0,
        (index & 15) as usize,
    );
    0
}

/// The category of `addr` (see `filter_common::trie::lookup`, which host
/// tests and userspace run: the same start, step and finish).
#[inline(always)]
fn trie_lookup(generation: u32, addr: &[u8; 16], v6: bool) -> u8 {
    let hi = u64::from_le_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_le_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    ff_trie_lookup(generation, hi, lo, u32::from(v6)) as u8
}

/// [`trie_lookup`] as a global BPF function: the verifier checks it once,
/// whatever the number of call sites (its arguments are plain numbers).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_trie_lookup(generation: u32, hi: u64, lo: u64, v6: u32) -> u32 {
    let mut addr = [0u8; 16];
    addr[..8].copy_from_slice(&hi.to_le_bytes());
    addr[8..].copy_from_slice(&lo.to_le_bytes());
    let v6 = v6 != 0;
    let generation = generation & 1;
    let mut w = Walk {
        addr,
        e: start(&Tables, generation, &addr, v6),
        generation,
        v6: u32::from(v6),
        _pad: 0,
    };
    if filter_common::trie::kind(w.e) != filter_common::trie::KIND_LEAF {
        // SAFETY: the callback is a BPF subprogram; ctx points to `w`, on
        // this frame's stack, for the duration of the call.
        unsafe {
            bpf_loop(
                levels(v6) as u32,
                walk_level as *mut c_void,
                (&raw mut w).cast(),
                0,
            );
        }
    }
    u32::from(finish(w.e))
}

/// The categories of the source and destination addresses in `generation`.
#[inline(always)]
fn categories(generation: u32, pkt: &Packet) -> (u8, u8) {
    (
        trie_lookup(generation, &pkt.src, pkt.is_v6),
        trie_lookup(generation, &pkt.dst, pkt.is_v6),
    )
}

/// An IPv6 packet whose transport the parser could not reach: decided by
/// its addresses alone (`hidden_verdict`), so extension headers cannot carry
/// media past a listed range.
#[inline(always)]
fn hidden(ctx: &XdpContext, pkt: &Packet, len: usize) -> (u32, Info) {
    let Some(state) = STATE.get(0) else {
        return pass(O_HIDDEN_PASS, len);
    };
    let generation = state.generation & 1;
    let (src_cat, dst_cat) = categories(generation, pkt);
    if src_cat == CAT_ALLOW || dst_cat == CAT_ALLOW {
        count(O_HIDDEN_ALLOWED, len);
        return (XDP_PASS, ALLOWED_INFO);
    }
    let category = if dst_cat != CAT_NONE {
        dst_cat
    } else {
        src_cat
    };
    if category == CAT_NONE {
        return pass(O_HIDDEN_PASS, len);
    }
    let policy = POLICY
        .get(generation * CATEGORY_SLOTS + category as u32)
        .copied()
        .unwrap_or_default();
    let v = hidden_verdict(&policy);
    count_verdict(ctx, category, len, v);
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

/// Copy the payload head into `head`: the first `HEAD_MIN` bytes, and more
/// (up to `HEAD_LEN`) only when the classifier needs them (`head_needed`),
/// so a packet's later cache lines stay untouched; false when the packet is
/// shorter than its UDP header says.
#[inline(always)]
fn read_head(ctx: &XdpContext, pkt: &Packet, head: &mut [u8; HEAD_LEN]) -> bool {
    // No zeroing: the classifier never reads a head byte at or beyond the
    // payload's length, nor past what `head_needed` asked for (host
    // property tests hold it to both), so bytes left by an earlier packet
    // are never seen.
    if !load_head(ctx, pkt, head, HEAD_MIN) {
        return false;
    }
    if pkt.payload_len > HEAD_MIN
        && head_needed(head, pkt.payload_len, pkt.sport, pkt.dport) > HEAD_MIN
    {
        return load_head(ctx, pkt, head, HEAD_LEN);
    }
    true
}

/// The first `min(payload, upto)` payload bytes into `head`.
#[inline(always)]
fn load_head(ctx: &XdpContext, pkt: &Packet, head: &mut [u8; HEAD_LEN], upto: usize) -> bool {
    let want = if pkt.payload_len < upto {
        pkt.payload_len
    } else {
        upto
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
        return r == 0;
    }
    true
}

/// The UDP path: the flow's slot, the payload head classified, then the
/// steps below in order; each returns early with a verdict where it can.
#[inline(always)]
fn udp(ctx: &XdpContext, scratch: &mut Scratch, len: usize) -> (u32, Info) {
    let Some(state) = STATE.get(0) else {
        return pass(O_UDP_PASS, len);
    };
    let t = ff_flow_tag();
    let from_a = t & 1 != 0;
    let tag = t | 1;
    // SAFETY: helper without arguments.
    let now_ns = unsafe { bpf_ktime_get_coarse_ns() };
    let now = tick(now_ns);
    let (slot, fresh) = match find_flow(ctx, scratch, state, tag, from_a, len, now) {
        Ok(found) => found,
        Err(done) => return done,
    };
    let generation = state.generation & 1;
    categorise_slot(slot, state, &scratch.pkt, from_a, generation);
    if slot.flags & FLOW_ALLOWED != 0 {
        seen(slot, now, len, false);
        count(O_UDP_ALLOWED, len);
        return (XDP_PASS, ALLOWED_INFO);
    }
    let (src_cat, dst_cat, listed) = listed_sides(slot, from_a);
    if listed != CAT_NONE {
        scratch.frag_flags |= u32::from(FRAGF_LISTED);
    }
    let sides = (listed, dst_cat != CAT_NONE, from_a);
    if let Some(done) = tiny_first_fragment(ctx, scratch, state, slot, sides, len, (now_ns, now)) {
        return done;
    }

    // For an inherited flow, the caller is the endpoint it inherited from.
    let mut inherited_from: Option<[u8; 16]> = None;
    let was_categorised = slot.category != CAT_NONE;
    if listed == CAT_NONE && slot.sig_category == CAT_NONE && scratch.class.app == CAT_NONE {
        inherited_from = probe_learned(scratch, slot, fresh, (now_ns, now));
        if inherited_from.is_none() && scratch.class.app == CAT_NONE {
            seen(slot, now, len, false);
            let label = scratch.class.label;
            return passed_uncategorised(label, label, len);
        }
    }
    let (is_call, answered) = track(scratch, slot, listed, from_a);
    let category = slot.category;
    if category == CAT_NONE {
        // Tracked, but no longer in any category (its range left the lists).
        seen(slot, now, len, false);
        return passed_uncategorised(scratch.class.label, slot.label, len);
    }
    note_categorised(state, &scratch.pkt, slot, tag, was_categorised, from_a, now);

    let policy = POLICY
        .get(generation * CATEGORY_SLOTS + category as u32)
        .copied()
        .unwrap_or_default();
    let sides = (src_cat, dst_cat);
    let fate = (&inherited_from, sides, from_a);
    let v = packet_verdict(ctx, scratch, slot, &policy, fate, is_call, (now_ns, now));
    if is_call {
        let now = (now_ns, now);
        maybe_teach(scratch, slot, state, category, sides, answered, now);
    }
    counted(ctx, slot, scratch.class.label, v, is_call, len, now)
}

/// The flow's categories as (source, destination, listed): the listed one
/// is the destination's, else the source's.
#[inline(always)]
pub(crate) fn listed_sides(slot: &FlowSlot, from_a: bool) -> (u8, u8, u8) {
    let (src_cat, dst_cat) = if from_a {
        (slot.cat_a, slot.cat_b)
    } else {
        (slot.cat_b, slot.cat_a)
    };
    let listed = if dst_cat != CAT_NONE {
        dst_cat
    } else {
        src_cat
    };
    (src_cat, dst_cat, listed)
}

/// A categorised flow's packet counted under its verdict and label (what
/// the flow was recognised as, e.g. whatsapp-media for SRTP on a WhatsApp
/// relay flow, else what this packet looks like), and its action.
#[inline(always)]
pub(crate) fn counted(
    ctx: &XdpContext,
    slot: &mut FlowSlot,
    packet_label: u8,
    v: Verdict,
    is_call: bool,
    len: usize,
    now: u32,
) -> (u32, Info) {
    let dropped = v == Verdict::Drop;
    let label = if slot.label != LABEL_NONE {
        slot.label
    } else {
        packet_label
    };
    let info = Info {
        category: slot.category,
        label: slot.label,
        flags: if v == Verdict::Monitor {
            TRACE_MONITORED
        } else {
            0
        } | if is_call { TRACE_CALL } else { 0 },
    };
    seen(slot, now, len, dropped);
    count_verdict(ctx, slot.category, len, v);
    count_label(label, len, v);
    if dropped {
        return (XDP_DROP, info);
    }
    (XDP_PASS, info)
}

/// The flow's slot and "fresh", with the payload head classified on the
/// way, or the verdict when the packet needs no slot or cannot have one.
/// With large tables (or a flow that may have a category) the bucket is read
/// first, so its cache miss overlaps the head read and the classifier; with
/// small ones a flow with nothing to remember is decided without it.
#[inline(always)]
fn find_flow(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    state: &State,
    tag: u64,
    from_a: bool,
    len: usize,
    now: u32,
) -> Result<(&'static mut FlowSlot, bool), (u32, Info)> {
    let stateless_ok = state.flags & STATE_STATELESS != 0
        && matches!(scratch.pkt.frag, Fragment::None)
        && !flow_bit_maybe(tag);
    if !stateless_ok && !locate_into(scratch, tag, now) {
        return Err(pass(O_UDP_PASS, len));
    }
    if !classify_head(ctx, scratch, now) {
        return Err(pass(O_MALFORMED, len));
    }
    if stateless_ok {
        if let Some(done) = stateless(state, scratch, len) {
            return Err(done);
        }
        if !locate_into(scratch, tag, now) {
            return Err(pass(O_UDP_PASS, len));
        }
    }
    flow_slot(scratch, state, tag, now, from_a, 0)
        .map(|(slot, fresh, _)| (slot, fresh))
        .ok_or_else(|| pass(O_UDP_PASS, len))
}

/// The payload head read into scratch (unless a fragment join filled it)
/// and classified into `scratch.class`. False when the head cannot be read.
#[inline(always)]
fn classify_head(ctx: &XdpContext, scratch: &mut Scratch, now: u32) -> bool {
    if scratch.head_valid == 0 {
        if !read_head(ctx, &scratch.pkt, &mut scratch.head) {
            return false;
        }
        if let Fragment::First { id } = scratch.pkt.frag {
            // A later fragment that came first may continue this one's bytes.
            frag::join_early(scratch, id, now);
        }
    }
    let pkt = &scratch.pkt;
    let head = &scratch.head;
    // A joined head shorter than the classifier needs is classified as a
    // payload of that length (it never reads bytes nobody wrote).
    let mut class_len = pkt.payload_len;
    let valid = scratch.head_valid as usize;
    if valid == 0 && matches!(pkt.frag, Fragment::First { .. }) {
        // A first fragment that holds what the classifier reads is judged
        // as the whole datagram (its length checks are the datagram's).
        let full = usize::from(pkt.udp_len).saturating_sub(8);
        class_len = first_fragment_len(head, pkt.payload_len, full, pkt.sport, pkt.dport);
    }
    if valid > 0 {
        // A head joined from two fragments: the datagram's payload length.
        class_len = usize::from(pkt.udp_len).saturating_sub(8);
        if head_needed(head, class_len, pkt.sport, pkt.dport) > valid {
            class_len = valid;
        }
    }
    ff_classify(class_len as u32, 0);
    true
}

/// The flow's slot where `locate_into` found or placed it, with "fresh"
/// and "taken". It is taken anew (evicting what was there, its key
/// recorded) when fresh, or when `keep` is a `flags2` bit the slot lacks
/// (`keep` 0: a live slot is always kept).
#[inline(always)]
pub(crate) fn flow_slot(
    scratch: &Scratch,
    state: &State,
    tag: u64,
    now: u32,
    from_a: bool,
    keep: u8,
) -> Option<(&'static mut FlowSlot, bool, bool)> {
    // Where the slot is, through map memory: the ways of finding it converge
    // into one verifier state.
    // SAFETY: plain reads of what `locate_into` wrote.
    let (bucket_at, way, fresh) = unsafe {
        (
            core::ptr::read_volatile(&raw const scratch.bucket_at),
            core::ptr::read_volatile(&raw const scratch.way) as usize,
            core::ptr::read_volatile(&raw const scratch.fresh) != 0,
        )
    };
    let bucket = FLOWS.get_ptr_mut(bucket_at)?;
    // SAFETY: pointer to a map value that stays valid for this run.
    let bucket = unsafe { &mut *bucket };
    let way = way & 1;
    if fresh {
        bucket.slots[way ^ 1].newer = 0;
    }
    let slot = &mut bucket.slots[way];
    let taken = fresh || (keep != 0 && slot.flags2 & keep == 0);
    if taken {
        if fresh && slot.category != CAT_NONE && live(slot, now) {
            event(EV_FLOWS_EVICTED);
        }
        take_slot(slot, tag, now, from_a, state.version);
        if let Some(k) = FLOW_KEYS.get_ptr_mut(bucket_at * 2 + way as u32) {
            // SAFETY: a map value; userspace checks it against the tag. A
            // copy (not an assignment, which may overlap: a memmove call, a
            // byte loop) is five word moves.
            unsafe { core::ptr::copy_nonoverlapping(&raw const scratch.key, k, 1) };
        }
    }
    Some((slot, fresh, taken))
}

/// The categories of the flow's two ends, looked up for a new flow or when
/// the lists changed since its last packet.
#[inline(always)]
fn categorise_slot(
    slot: &mut FlowSlot,
    state: &State,
    pkt: &Packet,
    from_a: bool,
    generation: u32,
) {
    if slot.version == state.version {
        return;
    }
    let (src_cat, dst_cat) = categories(generation, pkt);
    if from_a {
        (slot.cat_a, slot.cat_b) = (src_cat, dst_cat);
    } else {
        (slot.cat_a, slot.cat_b) = (dst_cat, src_cat);
    }
    if src_cat == CAT_ALLOW || dst_cat == CAT_ALLOW {
        slot.flags |= FLOW_ALLOWED;
    } else {
        slot.flags &= !FLOW_ALLOWED;
    }
    slot.version = state.version;
}

/// A first fragment with too little payload to classify: decided by
/// address when a listed range is involved (RFC 1858), else kept for the
/// next fragment. `None` for any other packet. `sides`: the listed
/// category, whether it is the destination's, "from a".
#[inline(always)]
fn tiny_first_fragment(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    state: &State,
    slot: &mut FlowSlot,
    sides: (u8, bool, bool),
    len: usize,
    (now_ns, now): (u64, u32),
) -> Option<(u32, Info)> {
    let listed = sides.0;
    let pkt = &scratch.pkt;
    let class = &scratch.class;
    if !(matches!(pkt.frag, Fragment::First { .. })
        && scratch.head_valid == 0
        && tiny(pkt.payload_len, usize::from(pkt.udp_len).saturating_sub(8))
        && (listed != CAT_NONE || class.app == CAT_NONE))
    {
        return None;
    }
    seen(slot, now, len, false);
    slot.flags2 |= FLOW2_FRAGMENTED;
    if listed == CAT_NONE && class.app == CAT_NONE {
        let shown = class.label;
        // The fragment that continues it is the flow's first look at a
        // payload: it probes for a learned endpoint (a fresh slot counts as
        // probed this tick).
        slot.probe = (now as u8) ^ 0x80;
        frag::stash_first(scratch, now, false);
        return Some(passed_uncategorised(shown, shown, len));
    }
    let r = frag::tiny_first(ctx, state, slot, sides, len, (now_ns, now));
    if r.0 == XDP_DROP {
        // Its payload, in the next fragment, still teaches.
        frag::stash_first(scratch, now, true);
    }
    Some(r)
}

/// A flow of no category so far may carry a learned Telegram tag or run
/// from or to a learned call endpoint: looked up at most once a tick per
/// flow, and only when the bitmaps say "maybe". The endpoint it inherited
/// from, when it did (the slot then marked as an inherited call).
#[inline(always)]
fn probe_learned(
    scratch: &mut Scratch,
    slot: &mut FlowSlot,
    fresh: bool,
    (now_ns, now): (u64, u32),
) -> Option<[u8; 16]> {
    let probe = now as u8;
    if !fresh && slot.probe == probe {
        return None;
    }
    slot.probe = probe;
    let pkt = &scratch.pkt;
    let head = &scratch.head;
    let class = &mut scratch.class;
    let ep = &mut scratch.endpoint;
    let mut cat = CAT_NONE;
    let mut inherited_from = None;
    if class.tag_candidate && tag_maybe(head) {
        cat = learned_tag(head, now_ns, class);
    }
    if cat == CAT_NONE && !fresh_inherit_blocked(slot) {
        if endpoint_maybe(&pkt.src, pkt.sport)
            && let Some(e) = inheritable(ep, &pkt.src, pkt.sport, now_ns)
        {
            cat = e;
            inherited_from = Some(pkt.src);
        } else if endpoint_maybe(&pkt.dst, pkt.dport)
            && let Some(e) = inheritable(ep, &pkt.dst, pkt.dport, now_ns)
        {
            cat = e;
            inherited_from = Some(pkt.dst);
        }
    }
    if inherited_from.is_some() {
        slot.sig_category = cat;
        slot.flags |= FLOW_CALL | FLOW_INHERITED;
        slot.label = LABEL_P2P_INHERITED;
    }
    inherited_from
}

/// The packet folded into its flow (`observe`): whether it is part of a
/// call and whether it is the flow's first answer; the flow's category
/// re-derived (so a list swap re-categorises live flows).
#[inline(always)]
fn track(scratch: &mut Scratch, slot: &mut FlowSlot, listed: u8, from_a: bool) -> (bool, bool) {
    let both = FLOW_SEEN_A | FLOW_SEEN_B;
    let was_both = slot.flags & both == both;
    let is_call = observe(slot, &scratch.class, from_a);
    // The first answer: the other side becomes learnable (see `learn`).
    let answered = !was_both && slot.flags & both == both;
    if is_call {
        scratch.frag_flags |= u32::from(FRAGF_CALL);
    }
    if !matches!(scratch.pkt.frag, Fragment::None) {
        slot.flags2 |= FLOW2_FRAGMENTED;
    }
    slot.category = if listed != CAT_NONE {
        listed
    } else {
        slot.sig_category
    };
    if listed != CAT_NONE {
        slot.flags |= FLOW_LISTED;
    } else {
        slot.flags &= !FLOW_LISTED;
    }
    (is_call, answered)
}

/// A flow with a category: its bit and its subscriber's rank kept alive at
/// most once a tick (enough for the rotation, which is slower than a slot's
/// idle time); a newly categorised flow counted and its counters started.
#[inline(always)]
fn note_categorised(
    state: &State,
    pkt: &Packet,
    slot: &mut FlowSlot,
    tag: u64,
    was_categorised: bool,
    from_a: bool,
    now: u32,
) {
    if !was_categorised || slot.last_seen != now {
        flow_bit_mark(state, tag);
        if slot.flags2 & (FLOW2_SUB_A | FLOW2_SUB_B) != 0 {
            keep_rank_alive(pkt, slot.flags2, from_a, state, now);
        }
    }
    if !was_categorised {
        // Tracked from here: its counters and age start with this packet
        // (the packets it had while only cached were passed untouched).
        event(EV_FLOWS_CREATED);
        put(&mut slot.packets, 0);
        put(&mut slot.bytes, 0);
        put(&mut slot.dropped, 0);
        slot.first_seen = now;
    }
}

/// The verdict of the category's policy on this packet: under `flows=P%`
/// the flow's fate first, a random number only under `loss=P%`; the rest of
/// a datagram whose tiny first fragment was dropped is dropped.
/// `fate`: what `caller_is_dst` needs (the endpoint inherited from, the
/// source and destination categories, "from a").
#[inline(always)]
pub(crate) fn packet_verdict(
    ctx: &XdpContext,
    scratch: &Scratch,
    slot: &mut FlowSlot,
    policy: &Policy,
    (inherited_from, sides, from_a): (&Option<[u8; 16]>, (u8, u8), bool),
    is_call: bool,
    now: (u64, u32),
) -> Verdict {
    if policy.action == ACTION_FLOWS {
        let fallback_dst = caller_is_dst(&scratch.pkt, inherited_from, slot, sides, from_a);
        flows_fate(ctx, slot, fallback_dst, policy.percent, now, from_a);
    }
    let rand = if policy.action == ACTION_LOSS {
        // SAFETY: helper without arguments.
        unsafe { bpf_get_prandom_u32() }
    } else {
        0
    };
    if scratch.frag_flags & u32::from(FRAGF_DECIDED) != 0 {
        Verdict::Drop
    } else {
        verdict(policy, is_call, slot.fate, rand)
    }
}

/// A call flow teaches once it has gone both ways or carried a few packets,
/// on anything new (a TURN peer, a Telegram tag), and then at most once per
/// refresh interval.
#[inline(always)]
fn maybe_teach(
    scratch: &mut Scratch,
    slot: &mut FlowSlot,
    state: &State,
    category: u8,
    (src_cat, dst_cat): (u8, u8),
    answered: bool,
    (now_ns, now): (u64, u32),
) {
    let now16 = now as u16;
    let class = &scratch.class;
    if !(may_teach(slot.flags, u64::from(slot.packets) + 1)
        && (class.has_peer
            || class.learn_tag
            || answered
            || now16.wrapping_sub(slot.taught) >= ENDPOINT_REFRESH_TICKS))
    {
        return;
    }
    slot.taught = now16;
    let both = FLOW_SEEN_A | FLOW_SEEN_B;
    let listed_sides = (
        src_cat != CAT_NONE,
        dst_cat != CAT_NONE,
        slot.flags & both == both,
    );
    learn(
        &scratch.pkt,
        &scratch.class,
        &scratch.head,
        category,
        listed_sides,
        now_ns,
        state,
        &mut scratch.endpoint,
        &mut scratch.endpoint_value,
    );
}

/// With small tables: the verdict for a packet that needs no flow state, or
/// `None` to go on to the flow table. A flow with no category yet (its bit
/// in `FLOW_BITS` clear), no app signature, both addresses of no category
/// and nothing learned that it could carry is passed as it is: the same
/// answer its slot would give, without reading one. Allowlisted addresses
/// are passed too.
#[inline(always)]
fn stateless(state: &State, scratch: &Scratch, len: usize) -> Option<(u32, Info)> {
    let (pkt, class, head) = (&scratch.pkt, &scratch.class, &scratch.head);
    if class.app != CAT_NONE {
        return None;
    }
    let (src_cat, dst_cat) = categories(state.generation & 1, pkt);
    if src_cat == CAT_ALLOW || dst_cat == CAT_ALLOW {
        count(O_UDP_ALLOWED, len);
        return Some((XDP_PASS, ALLOWED_INFO));
    }
    if src_cat != CAT_NONE
        || dst_cat != CAT_NONE
        || (class.tag_candidate && tag_maybe(head))
        || endpoint_maybe(&pkt.src, pkt.sport)
        || endpoint_maybe(&pkt.dst, pkt.dport)
    {
        return None;
    }
    Some(passed_uncategorised(class.label, class.label, len))
}

/// Find the flow's slot (`locate`) and note where it is in scratch memory
/// (bucket index, way, fresh), numbers only: the caller takes the bucket
/// again from its index. False when the flow table is missing.
#[inline(always)]
fn locate_into(_scratch: &mut Scratch, tag: u64, now: u32) -> bool {
    ff_locate(tag, now) != 0
}

/// [`locate`] as a global BPF function (verified once; numbers in and out,
/// its result in scratch memory): 1 when the slot was found or placed.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_locate(tag: u64, now: u32) -> u32 {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let Some((_, at, way, fresh)) = locate(tag, now) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, this run only.
    unsafe {
        core::ptr::write_volatile(&raw mut (*scratch).bucket_at, at);
        core::ptr::write_volatile(&raw mut (*scratch).way, way as u32);
        core::ptr::write_volatile(&raw mut (*scratch).fresh, u32::from(fresh));
    }
    1
}

/// The classifier as a global BPF function (verified once): classifies the
/// scratch head (`tcp` 0: the UDP classifier over `len` payload bytes with
/// the packet's ports; 1: the TCP one) into the scratch class.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_classify(len: u32, tcp: u32) -> u32 {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, this run only.
    let s = unsafe { &mut *s };
    let len = len as usize;
    s.class = if tcp != 0 {
        filter_common::classify::classify_tcp(&s.head, len)
    } else {
        classify(&s.head, len, s.pkt.sport, s.pkt.dport)
    };
    1
}

/// The flow's canonical key into scratch memory and its keyed hash, as a
/// global BPF function: the tag, with bit 0 replaced by "from a".
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_flow_tag() -> u64 {
    let (Some(s), Some(state)) = (SCRATCH.get_ptr_mut(0), STATE.get(0)) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, this run only.
    let s = unsafe { &mut *s };
    let (key, from_a) = s.pkt.flow_key();
    s.key = key;
    (key_hash(&s.key, state.hash_key) & !1) | u64::from(from_a)
}

/// Whether the flow may have a category (its bit in either half).
#[inline(always)]
fn flow_bit_maybe(tag: u64) -> bool {
    let (word, bit) = flow_bit(tag);
    FLOW_BITS.get(word).is_some_and(|w| *w & bit != 0)
        || FLOW_BITS
            .get(word + FLOW_BITS_WORDS)
            .is_some_and(|w| *w & bit != 0)
}

/// Mark a flow with a category in the half `FLOW_BITS` uses now (a write
/// only when the bit is not there yet).
#[inline(always)]
fn flow_bit_mark(state: &State, tag: u64) {
    let (word, bit) = flow_bit(tag);
    let at = (state.flow_bits_half & 1) * FLOW_BITS_WORDS + word;
    if let Some(w) = FLOW_BITS.get_ptr_mut(at) {
        // SAFETY: a map value; a lost concurrent update is set again by the
        // flow's next packet.
        unsafe {
            if *w & bit == 0 {
                *w |= bit;
            }
        }
    }
}

/// The flow's bucket, its index and way, and whether the slot is to be
/// taken anew: the first bucket holding the tag (live or idle), else the
/// place `filter_common::flow::place` picks of the two.
#[inline(always)]
fn locate(tag: u64, now: u32) -> Option<(*mut FlowBucket, u32, usize, bool)> {
    let at1 = bucket_of(tag);
    let b1 = FLOWS.get_ptr_mut(at1)?;
    // SAFETY: pointers to map values that stay valid for this run.
    let r1 = unsafe { &*b1 };
    if let Some(w) = find(r1, tag) {
        return Some((b1, at1, w, !live(&r1.slots[w & 1], now)));
    }
    let at2 = bucket_of2(tag);
    let b2 = FLOWS.get_ptr_mut(at2)?;
    // SAFETY: as above.
    let r2 = unsafe { &*b2 };
    if let Some(w) = find(r2, tag) {
        return Some((b2, at2, w, !live(&r2.slots[w & 1], now)));
    }
    match place(r1, r2, now) {
        (true, w) => Some((b2, at2, w, true)),
        (false, w) => Some((b1, at1, w, true)),
    }
}

/// The caller whose fate a flow of `flows=P%` with no subscriber end
/// takes, as "it is the packet's destination": the endpoint it inherited
/// from, else the one outside the category's ranges; for a flow recognised
/// by signature alone, the endpoint that sent first.
#[inline(always)]
fn caller_is_dst(
    pkt: &Packet,
    inherited_from: &Option<[u8; 16]>,
    slot: &FlowSlot,
    (src_cat, dst_cat): (u8, u8),
    from_a: bool,
) -> bool {
    if let Some(a) = inherited_from {
        *a == pkt.dst
    } else if dst_cat != CAT_NONE {
        false
    } else {
        // A listed source, or (signature only) the peer that sent first.
        src_cat != CAT_NONE || (slot.flags & FLOW_FIRST_FROM_B != 0) == from_a
    }
}

/// Whether `addr` is inside the active generation's subscriber prefixes.
#[inline(always)]
fn in_subscribers(state: &State, lpm: &mut LpmKey<SubscriberKey>, addr: &[u8; 16]) -> bool {
    lpm.prefix_len = 32 + 128;
    lpm.data[..4].copy_from_slice(&[0, 0, 0, (state.generation & 1) as u8]);
    lpm.data[4..].copy_from_slice(addr);
    SUBSCRIBERS.get(&*lpm).is_some()
}

/// The `flows=P%` rank of the subscriber at the packet's destination
/// (`dst` 1) or source: the one remembered while its calls carry packets
/// (so an epoch boundary never splits them), else drawn for the current
/// wall-clock epoch and remembered. A global BPF function (verified once).
// The keys are borrowed on purpose: passed by value they would be copied
// to the stack, which this call, three deep, cannot afford.
#[allow(clippy::needless_borrows_for_generic_args)]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_sub_rank(dst: u32, now_ns: u64, now: u32) -> u32 {
    let (Some(state), Some(scratch)) = (STATE.get(0), scratch_mut()) else {
        return 0;
    };
    let addr = if dst != 0 {
        &scratch.pkt.dst
    } else {
        &scratch.pkt.src
    };
    scratch.sub_key = subscriber_key(addr, state.sub_v4_len, state.sub_v6_len);
    if let Some(e) = SUB_FATE.get_ptr_mut(&scratch.sub_key) {
        // SAFETY: a map value that stays valid for this run.
        let e = unsafe { &mut *e };
        if rank_holds(e.last_seen, now) {
            if e.last_seen != now {
                e.last_seen = now;
            }
            return u32::from(e.rank);
        }
    }
    let wall = now_ns.wrapping_add(state.wall_offset_ns);
    let rank = subscriber_rank(
        &scratch.sub_key,
        epoch_seed(state.seed, wall, state.epoch_secs),
    );
    scratch.sub_fate = SubFate {
        rank,
        _pad: [0; 3],
        last_seen: now,
    };
    let _ = SUB_FATE.insert(&scratch.sub_key, &scratch.sub_fate, BPF_ANY as u64);
    u32::from(rank)
}

/// Under `flows=P%`: the flow's fate, from the rank of its subscriber end
/// (the side the operator named: by interface or by prefix; a flow between
/// two subscribers is stopped when either is), else of the fallback caller
/// (`fallback_dst`: the packet's destination, else its source), drawn once
/// per flow (`FlowSlot::rank`) and judged against the policy's current
/// percentage. Marks the subscriber ends in `flags2` so the flow's packets
/// keep their ranks alive.
#[inline(always)]
pub(crate) fn flows_fate(
    ctx: &XdpContext,
    slot: &mut FlowSlot,
    fallback_dst: bool,
    percent: u8,
    (now_ns, now): (u64, u32),
    from_a: bool,
) -> u8 {
    if slot.rank == 0 {
        let r = ff_rank(
            u32::from(fallback_dst),
            ctx.ingress_ifindex() as u32,
            now_ns,
            now,
            u32::from(from_a),
        );
        slot.rank = ((r & 0xff) as u8).max(1);
        slot.flags2 |= ((r >> 8) as u8) & (FLOW2_SUB_A | FLOW2_SUB_B);
    }
    slot.fate = fate_of(slot.rank - 1, percent);
    slot.fate
}

/// The rank part of [`flows_fate`] as a global BPF function (verified
/// once; numbers in and out, the packet from scratch memory): the rank
/// plus one in bits 0..8, the `FLOW2_SUB_*` bits of the flow in 8..16.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ff_rank(
    fallback_dst: u32,
    ingress: u32,
    now_ns: u64,
    now: u32,
    from_a: u32,
) -> u32 {
    let (Some(state), Some(scratch)) = (STATE.get(0), scratch_mut()) else {
        return 0;
    };
    let by_iface = state.flags & STATE_SUB_IFACE != 0;
    let by_prefix = !by_iface && state.flags & STATE_SUB_PREFIX != 0;
    let side = by_iface.then(|| IF_SLOT.get(ingress).is_some_and(|v| *v & IF_INSIDE != 0));
    let src_in = by_prefix && in_subscribers(state, &mut scratch.lpm, &scratch.pkt.src);
    let dst_in = by_prefix && in_subscribers(state, &mut scratch.lpm, &scratch.pkt.dst);
    let (s, d) = subscriber_ends(side, src_in, dst_in);
    let src_rank = if s {
        Some(ff_sub_rank(0, now_ns, now) as u8)
    } else {
        None
    };
    let dst_rank = if d {
        Some(ff_sub_rank(1, now_ns, now) as u8)
    } else {
        None
    };
    let fallback_rank = if s || d {
        0
    } else {
        ff_sub_rank(fallback_dst, now_ns, now) as u8
    };
    let rank = u32::from(flow_rank(src_rank, dst_rank, fallback_rank)) + 1;
    let (sa, sb) = if from_a != 0 { (s, d) } else { (d, s) };
    let bits = if sa { FLOW2_SUB_A } else { 0 } | if sb { FLOW2_SUB_B } else { 0 };
    rank | u32::from(bits) << 8
}

/// A subscriber's flow carries packets: its remembered rank stays (at most
/// once a tick per flow; an entry that expired or was evicted is left to
/// be drawn again by the next new flow).
#[inline(always)]
fn keep_rank_alive(pkt: &Packet, flags2: u8, from_a: bool, state: &State, now: u32) {
    let (src_bit, dst_bit) = if from_a {
        (FLOW2_SUB_A, FLOW2_SUB_B)
    } else {
        (FLOW2_SUB_B, FLOW2_SUB_A)
    };
    for (bit, addr) in [(src_bit, &pkt.src), (dst_bit, &pkt.dst)] {
        if flags2 & bit == 0 {
            continue;
        }
        let key = subscriber_key(addr, state.sub_v4_len, state.sub_v6_len);
        if let Some(e) = SUB_FATE.get_ptr_mut(key) {
            // SAFETY: a map value that stays valid for this run.
            let e = unsafe { &mut *e };
            if e.last_seen != now && rank_holds(e.last_seen, now) {
                e.last_seen = now;
            }
        }
    }
}

/// One field of a map value written as it is: LLVM merges runs of
/// zeroing stores into a memset call, and the BPF memset is a byte loop.
#[inline(always)]
fn put<T>(field: &mut T, v: T) {
    // SAFETY: a valid, aligned, exclusive reference.
    unsafe { core::ptr::write_volatile(field, v) };
}

/// A slot taken for a new flow.
#[inline(always)]
fn take_slot(slot: &mut FlowSlot, tag: u64, now: u32, from_a: bool, version: u32) {
    slot.tag = tag;
    put(&mut slot.bytes, 0);
    put(&mut slot.packets, 0);
    put(&mut slot.dropped, 0);
    slot.first_seen = now;
    slot.last_seen = now;
    put(&mut slot.rtp_ssrc, [0; 2]);
    put(&mut slot.rtp_seq, [0; 2]);
    put(&mut slot.rtp_hits, [0; 2]);
    // Due for teaching at once.
    slot.taught = (now as u16).wrapping_sub(ENDPOINT_REFRESH_TICKS);
    // Not the current version: the categories are looked up below.
    slot.version = !version;
    put(&mut slot.cat_a, CAT_NONE);
    put(&mut slot.cat_b, CAT_NONE);
    put(&mut slot.category, CAT_NONE);
    put(&mut slot.sig_category, CAT_NONE);
    put(&mut slot.label, LABEL_NONE);
    slot.flags = if from_a { 0 } else { FLOW_FIRST_FROM_B };
    slot.fate = FATE_UNDECIDED;
    slot.rank = 0;
    slot.probe = now as u8;
    slot.newer = 1;
    slot.flags2 = 0;
    slot._pad = 0;
}

/// Whether an uncategorised flow may not inherit: never (kept as one place
/// to say so; inherited flows themselves teach nothing, see `may_teach`).
#[inline(always)]
fn fresh_inherit_blocked(_slot: &FlowSlot) -> bool {
    false
}

/// A packet of the flow: its counters and the last-seen tick (written only
/// when it changes).
#[inline(always)]
fn seen(slot: &mut FlowSlot, now: u32, len: usize, dropped: bool) {
    slot.packets = slot.packets.wrapping_add(1);
    slot.bytes = slot.bytes.wrapping_add(len as u64);
    if dropped {
        slot.dropped = slot.dropped.wrapping_add(1);
    }
    if slot.last_seen != now {
        slot.last_seen = now;
    }
}

/// The category a learned Telegram peer tag names, if the payload starts with
/// one; marks the class as Telegram data.
#[inline(always)]
fn learned_tag(head: &[u8; HEAD_LEN], now_ns: u64, class: &mut Class) -> u8 {
    // SAFETY: read-only look-up of a plain value; the key is the head's first
    // 16 bytes, in place.
    match unsafe { TG_TAGS.get(tag_of(head)) } {
        Some(t) if tag_fresh(t, now_ns) => {
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
    count(O_UDP_PASS, len);
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

/// Whether bit `(word, bit)` is set in either half of `BITS`.
#[inline(always)]
fn bit_maybe(word: u32, bit: u64) -> bool {
    let a = BITS.get(word).is_some_and(|w| *w & bit != 0);
    a || BITS
        .get(word + ENDPOINT_BITS_WORDS)
        .is_some_and(|w| *w & bit != 0)
}

/// Set bit `(word, bit)` in the half learning uses now.
#[inline(always)]
fn bit_set(state: &State, word: u32, bit: u64) {
    let at = (state.bits_half & 1) * ENDPOINT_BITS_WORDS + word;
    if let Some(w) = BITS.get_ptr_mut(at) {
        // SAFETY: a map value; a lost concurrent update only costs a refresh.
        unsafe { *w |= bit };
    }
}

/// Whether the bitmap says the endpoint may have been learned.
#[inline(always)]
fn endpoint_maybe(addr: &[u8; 16], port: u16) -> bool {
    let (word, bit) = endpoint_bit(addr, port);
    bit_maybe(word, bit)
}

/// Whether the bitmap says the head's first 16 bytes may be a learned tag.
#[inline(always)]
fn tag_maybe(head: &[u8; HEAD_LEN]) -> bool {
    let (word, bit) = tag_bit(tag_of(head));
    bit_maybe(word, bit)
}

/// The category an endpoint of an earlier call passes on, if any.
#[inline(always)]
fn inheritable(ep: &mut EndpointKey, addr: &[u8; 16], port: u16, now_ns: u64) -> Option<u8> {
    ep.addr = *addr;
    ep.port = port;
    ep._pad = [0; 2];
    // SAFETY: read-only look-up of a plain value.
    match unsafe { ENDPOINTS.get(*ep) } {
        Some(e) if endpoint_fresh(e, now_ns) && e.category != CAT_NONE => Some(e.category),
        _ => None,
    }
}

/// Remember an endpoint, writing only when it is new, of another category or
/// due for a refresh (map writes are the expensive part).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn remember(
    ep: &mut EndpointKey,
    epv: &mut EndpointValue,
    state: &State,
    addr: &[u8; 16],
    port: u16,
    category: u8,
    origin: u8,
    now_ns: u64,
) {
    if !learnable_port(port) {
        return;
    }
    ep.addr = *addr;
    ep.port = port;
    ep._pad = [0; 2];
    let (word, bit) = endpoint_bit(addr, port);
    // The bit goes into the current half even when the entry is fresh, so
    // a rotation never forgets a live call's endpoint.
    bit_set(state, word, bit);
    // SAFETY: read-only look-up of a plain value.
    if let Some(e) = unsafe { ENDPOINTS.get(*ep) }
        && e.category == category
        && now_ns.saturating_sub(e.learned_ns) < ENDPOINT_REFRESH_NS
    {
        return;
    }
    *epv = EndpointValue {
        learned_ns: now_ns,
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
    (src_listed, dst_listed, both_ways): (bool, bool, bool),
    now_ns: u64,
    state: &State,
    ep: &mut EndpointKey,
    epv: &mut EndpointValue,
) {
    let (teach_src, teach_dst) = endpoints_to_learn(src_listed, dst_listed, both_ways);
    if teach_src {
        remember(
            ep,
            epv,
            state,
            &pkt.src,
            pkt.sport,
            category,
            ORIGIN_CALL,
            now_ns,
        );
    }
    if teach_dst {
        remember(
            ep,
            epv,
            state,
            &pkt.dst,
            pkt.dport,
            category,
            ORIGIN_CALL,
            now_ns,
        );
    }
    if class.has_peer {
        let peer = filter_common::parse::v4_mapped(class.peer_addr);
        remember(
            ep,
            epv,
            state,
            &peer,
            class.peer_port,
            category,
            ORIGIN_TURN_PEER,
            now_ns,
        );
    }
    if class.learn_tag {
        let v = TagValue {
            learned_ns: now_ns,
            category,
            _pad: [0; 7],
        };
        let (word, bit) = tag_bit(tag_of(head));
        bit_set(state, word, bit);
        let _ = TG_TAGS.insert(tag_of(head), v, BPF_ANY as u64);
    }
}

/// Count a category verdict on the receiving interface's slot.
#[inline(always)]
fn count_verdict(ctx: &XdpContext, category: u8, len: usize, v: Verdict) {
    // The receiving interface's slot (0 for one the daemon did not register).
    let slot = IF_SLOT
        .get(ctx.ingress_ifindex() as u32)
        .map_or(0, |s| *s & (IF_SLOTS - 1));
    let verdict = match v {
        Verdict::Drop => V_DROP,
        Verdict::Monitor => V_MONITOR,
        Verdict::Pass => V_PASS,
    };
    count(verdict_slot(slot, category, verdict), len);
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

mod frag;
mod tcp;

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// The benchmark's limit: drop every frame, do nothing else.
#[xdp]
pub fn xdp_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

/// The benchmark's bound for a filter that keeps exact per-flow state:
/// flowfilter's parser, flow key and hash, slot look-up and per-packet
/// writes (the slot's counters and the per-CPU ones), with no classifier
/// and no decision. A UDP packet of a tracked flow with a category is
/// dropped; any other packet passes, and no slot is taken. It shares the
/// maps of the flowfilter program loaded with it (the benchmark runs it on
/// the flows flowfilter tracks).
#[xdp]
pub fn xdp_bound_flow(ctx: XdpContext) -> u32 {
    // SAFETY: ctx is the program's context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let Some(scratch) = scratch_mut() else {
        return XDP_PASS;
    };
    if ff_parse(ctx.ctx, len as u32) != PARSED_IP
        || scratch.pkt.proto != PROTO_UDP
        || !matches!(scratch.pkt.frag, Fragment::None)
    {
        return XDP_PASS;
    }
    let t = ff_flow_tag();
    // SAFETY: helper without arguments.
    let now = tick(unsafe { bpf_ktime_get_coarse_ns() });
    let Some((bucket, _, way, fresh)) = locate(t | 1, now) else {
        return XDP_PASS;
    };
    // SAFETY: a map value pointer that stays valid for this run.
    let slot = unsafe { &mut (*bucket).slots[way & 1] };
    if fresh || slot.category == CAT_NONE {
        return XDP_PASS;
    }
    let label = slot.label;
    counted(&ctx, slot, label, Verdict::Drop, true, len as usize, now).0
}

/// The benchmark's bound for a filter that decides by address alone, with
/// no flow state: flowfilter's parser and its two prefix look-ups in the
/// lists in force, and the per-CPU counters. A UDP packet from or to a
/// listed range is dropped, any other passes, and (as in flowfilter) so
/// does one with an allowlisted end.
#[xdp]
pub fn xdp_bound_lookup(ctx: XdpContext) -> u32 {
    // SAFETY: ctx is the program's context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let (Some(scratch), Some(state)) = (scratch_mut(), STATE.get(0)) else {
        return XDP_PASS;
    };
    if ff_parse(ctx.ctx, len as u32) != PARSED_IP || scratch.pkt.proto != PROTO_UDP {
        return XDP_PASS;
    }
    let (src_cat, dst_cat) = categories(state.generation & 1, &scratch.pkt);
    let category = if dst_cat != CAT_NONE {
        dst_cat
    } else {
        src_cat
    };
    if category == CAT_NONE || src_cat == CAT_ALLOW || dst_cat == CAT_ALLOW {
        return XDP_PASS;
    }
    count_verdict(&ctx, category, len as usize, Verdict::Drop);
    count_label(LABEL_NONE, len as usize, Verdict::Drop);
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
