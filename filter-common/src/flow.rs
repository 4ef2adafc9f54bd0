//! The flow table: a two-way set-associative array of [`FlowBucket`]s,
//! written in place by the XDP program without locks, allocation or map
//! update calls. Every UDP flow the program sees gets a slot, also one of
//! no category (its slot caches the address look-ups), so a packet of a
//! known flow costs one bucket read whatever the size of the lists.
//!
//! Each flow has two candidate buckets ([`bucket_of`], [`bucket_of2`]):
//! it is looked up in the first, then (only when not found there) in the
//! second. A new flow takes, of the four slots, a free one (empty, or idle
//! for [`FLOW_IDLE_TICKS`]), else the one worth least: a flow of no
//! category before a categorised one, a categorised one before an
//! established call flow ([`FLOW_ESTABLISHED_PACKETS`]), the older one on a
//! tie, the first bucket when both are alike. A flood of new 5-tuples thus
//! replaces its own earlier flows, and a live call is evicted only when
//! both its buckets hold four established calls; a known flow costs one
//! bucket read, a new one two.
//!
//! Slots are matched by a 64-bit keyed hash of the canonical 5-tuple (the
//! key is random per flow table, so nobody outside can aim collisions at a
//! flow); the 5-tuple itself is kept in `FLOW_KEYS` for userspace.
//! Concurrent writers on two CPUs may interleave on a slot; the worst this
//! does is mix two flows' counters or state for a packet, never a crash.

use crate::consts::{FLOW_BUCKETS, FLOW_ESTABLISHED_PACKETS, FLOW_IDLE_TICKS};
use crate::types::{FLOW_CALL, FlowBucket, FlowKey, FlowSlot, TICK_SHIFT};

#[inline(always)]
fn fold(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

#[inline(always)]
fn words(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_le_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

/// The keyed hash of a canonical flow key: odd, so never 0 (an empty slot).
#[inline(always)]
pub fn key_hash(key: &FlowKey, hash_key: u64) -> u64 {
    let (a0, a1) = words(&key.addr_a);
    let (b0, b1) = words(&key.addr_b);
    let ports =
        (u64::from(key.port_a) << 32) | (u64::from(key.port_b) << 16) | u64::from(key.proto);
    let mut h = fold(hash_key, a0);
    h = fold(h, a1);
    h = fold(h, b0);
    h = fold(h, b1);
    h = fold(h, ports);
    crate::decide::mix64(h) | 1
}

/// The first bucket a hash falls in.
#[inline(always)]
pub fn bucket_of(hash: u64) -> u32 {
    (hash >> 32) as u32 & (FLOW_BUCKETS - 1)
}

/// The second bucket a hash may fall in (other bits of the hash).
#[inline(always)]
pub fn bucket_of2(hash: u64) -> u32 {
    ((hash >> 8) as u32 ^ (hash >> 49) as u32) & (FLOW_BUCKETS - 1)
}

/// Word index (within a half) and bit of a flow in `FLOW_BITS`.
#[inline(always)]
pub fn flow_bit(tag: u64) -> (u32, u64) {
    let word = (tag >> 14) as u32 & (crate::consts::FLOW_BITS_WORDS - 1);
    (word, 1u64 << ((tag >> 1) & 63))
}

/// The flow-table clock: ticks of 2^30 ns from a nanosecond clock.
#[inline(always)]
pub fn tick(now_ns: u64) -> u32 {
    (now_ns >> TICK_SHIFT) as u32
}

/// Whether a slot holds a flow that saw a packet within
/// [`FLOW_IDLE_TICKS`] of `now` (ticks).
#[inline(always)]
pub fn live(s: &FlowSlot, now: u32) -> bool {
    s.tag != 0 && now.wrapping_sub(s.last_seen) <= FLOW_IDLE_TICKS
}

/// What keeping a slot is worth (higher: keep longer).
#[inline(always)]
pub fn worth(s: &FlowSlot, now: u32) -> u32 {
    if !live(s, now) {
        0
    } else if s.category == 0 {
        1
    } else if s.flags & FLOW_CALL != 0 && s.packets >= FLOW_ESTABLISHED_PACKETS {
        3
    } else {
        2
    }
}

/// The way (0 or 1) holding `tag`, if either does.
#[inline(always)]
pub fn find(b: &FlowBucket, tag: u64) -> Option<usize> {
    if b.slots[0].tag == tag {
        Some(0)
    } else if b.slots[1].tag == tag {
        Some(1)
    } else {
        None
    }
}

/// Where a new flow goes, of its two buckets: `(second bucket, way)`.
#[inline(always)]
pub fn place(b1: &FlowBucket, b2: &FlowBucket, now: u32) -> (bool, usize) {
    let (w1, w2) = (victim(b1, now), victim(b2, now));
    let (s1, s2) = (&b1.slots[w1 & 1], &b2.slots[w2 & 1]);
    let (v1, v2) = (worth(s1, now), worth(s2, now));
    let second =
        v2 < v1 || (v2 == v1 && now.wrapping_sub(s2.last_seen) > now.wrapping_sub(s1.last_seen));
    if second { (true, w2) } else { (false, w1) }
}

/// The way a new flow takes in `b` (see the module docs).
#[inline(always)]
pub fn victim(b: &FlowBucket, now: u32) -> usize {
    let (w0, w1) = (worth(&b.slots[0], now), worth(&b.slots[1], now));
    if w0 != w1 {
        return usize::from(w1 < w0);
    }
    // Same worth: the one idle longer; on a tie, the one taken earlier.
    let idle0 = now.wrapping_sub(b.slots[0].last_seen);
    let idle1 = now.wrapping_sub(b.slots[1].last_seen);
    if idle0 != idle1 {
        return usize::from(idle1 > idle0);
    }
    usize::from(b.slots[0].newer != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FLOW_CALL;

    fn slot(tag: u64, last_seen: u32, category: u8, call: bool, packets: u32) -> FlowSlot {
        FlowSlot {
            tag,
            last_seen,
            category,
            flags: if call { FLOW_CALL } else { 0 },
            packets,
            ..FlowSlot::default()
        }
    }

    #[test]
    fn hash_is_odd_keyed_and_spreads() {
        let k = FlowKey {
            addr_a: [1; 16],
            addr_b: [2; 16],
            port_a: 1000,
            port_b: 3478,
            proto: 17,
            _pad: [0; 3],
        };
        let h = key_hash(&k, 7);
        assert_eq!(h & 1, 1);
        assert_ne!(h, key_hash(&k, 8), "the key changes the hash");
        let mut other = k;
        other.port_a = 1001;
        assert_ne!(h, key_hash(&other, 7));
        // Buckets of nearby ports spread over the table.
        let mut seen = std::collections::BTreeSet::new();
        for p in 0..4096u16 {
            other.port_a = p;
            seen.insert(bucket_of(key_hash(&other, 7)));
        }
        assert!(seen.len() > 4000, "{} distinct buckets", seen.len());
    }

    #[test]
    fn placement_uses_the_second_bucket_when_it_is_worth_less() {
        let now = 1000;
        let b = |s0, s1| FlowBucket { slots: [s0, s1] };
        let call = slot(3, now, 1, true, 50);
        let cached = slot(7, now, 0, false, 9);
        let empty = FlowSlot::default();
        // Both alike: the first bucket.
        assert_eq!(place(&b(call, empty), &b(call, empty), now), (false, 1));
        // The first full of calls, the second has a cached flow: the second.
        assert_eq!(place(&b(call, call), &b(cached, call), now), (true, 0));
        assert_eq!(place(&b(cached, call), &b(call, call), now), (false, 0));
        // Both full of calls: the older one, wherever it is.
        let older = slot(11, now - 5, 1, true, 50);
        assert_eq!(place(&b(call, call), &b(call, older), now), (true, 1));
        let k = FlowKey::default();
        let h = key_hash(&k, 1);
        assert!(bucket_of(h) < FLOW_BUCKETS && bucket_of2(h) < FLOW_BUCKETS);
    }

    #[test]
    fn victims() {
        let now = 1000;
        let b = |s0, s1| FlowBucket { slots: [s0, s1] };
        let empty = FlowSlot::default();
        let call = slot(3, now, 1, true, 50);
        let young_call = slot(5, now, 1, true, 1);
        let cached = slot(7, now, 0, false, 9);
        let idle_call = slot(9, now - FLOW_IDLE_TICKS - 1, 1, true, 500);
        assert_eq!(victim(&b(empty, call), now), 0);
        assert_eq!(victim(&b(call, empty), now), 1);
        assert_eq!(victim(&b(call, idle_call), now), 1, "an idle slot is free");
        assert_eq!(victim(&b(call, cached), now), 1);
        assert_eq!(
            victim(&b(young_call, call), now),
            0,
            "established calls stay"
        );
        assert_eq!(victim(&b(cached, young_call), now), 0);
        let older = slot(11, now - 5, 1, true, 50);
        assert_eq!(victim(&b(call, older), now), 1, "the older of two calls");
        assert_eq!(victim(&b(older, call), now), 0);
        // Same worth and tick: the way taken earlier goes.
        let newer = FlowSlot { newer: 1, ..call };
        assert_eq!(victim(&b(newer, call), now), 1);
        assert_eq!(victim(&b(call, newer), now), 0);
        assert!(!live(&idle_call, now) && live(&call, now) && !live(&empty, now));
        assert_eq!(find(&b(call, cached), 7), Some(1));
        assert_eq!(find(&b(call, cached), 13), None);
    }
}
