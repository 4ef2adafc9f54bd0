//! Fragmented datagrams: what the XDP program does with each fragment, as
//! pure decisions on the datagram's [`FragSlot`] (tested here).
//!
//! A datagram is judged by its payload wherever the first fragment ends:
//! - a first fragment that carries enough payload (at least
//!   [`HEAD_MIN`] bytes, or the whole payload) is classified like any
//!   packet, and its verdict is the datagram's;
//! - a first fragment with less ([`tiny`]) to or from a listed range under
//!   a restricting policy is decided by address (the RFC 1858 rule), and
//!   every other fragment of it is dropped; the fragment that continues it
//!   is still classified (for what the call teaches: its endpoints, TURN
//!   peers). Toward unlisted addresses its payload bytes are kept, and the
//!   datagram is classified on them joined to the fragment that continues
//!   them;
//! - a later fragment of a dropped datagram is dropped (one lost fragment
//!   loses the datagram at the receiver);
//! - a later fragment that rewrites bytes the verdict rests on (an overlap)
//!   is dropped when the datagram is to or from a listed range or a call;
//!   toward unlisted addresses, one that rewrites from the payload's start
//!   is classified on its own bytes;
//! - a later fragment that comes before its first fragment passes; when it
//!   starts inside the classification head its bytes are kept, and the
//!   first fragment is classified on its own bytes joined to them;
//! - a first fragment whose IP id an earlier datagram used (the slot already
//!   saw a first fragment under that key) starts afresh ([`same_datagram`]).

use crate::classify::HEAD_MIN;
use crate::consts::FRAG_IDLE_TICKS;
use crate::types::{
    FRAG_DROP, FRAG_PENDING, FRAGF_CALL, FRAGF_DECIDED, FRAGF_FIRST, FRAGF_LISTED, FragKey,
    FragSlot,
};

/// UDP header bytes at the start of a datagram's IP payload.
pub const UDP_HEADER: u16 = 8;

/// The keyed hash of a datagram's key: odd, so never 0 (an empty slot).
#[inline(always)]
pub fn frag_tag(k: &FragKey, hash_key: u64) -> u64 {
    let w = |a: &[u8; 16], i: usize| {
        u64::from_le_bytes([
            a[i],
            a[i + 1],
            a[i + 2],
            a[i + 3],
            a[i + 4],
            a[i + 5],
            a[i + 6],
            a[i + 7],
        ])
    };
    let mut h = crate::decide::mix64(hash_key ^ 0x6672_6167_6d65_6e74 ^ w(&k.src, 0));
    h = crate::decide::mix64(h ^ w(&k.src, 8));
    h = crate::decide::mix64(h ^ w(&k.dst, 0));
    h = crate::decide::mix64(h ^ w(&k.dst, 8));
    h = crate::decide::mix64(h ^ (u64::from(k.id) << 8) ^ u64::from(k.proto));
    h | 1
}

/// Whether a first fragment carrying `carried` payload bytes of a datagram
/// whose payload is `payload` bytes holds too little to classify.
#[inline(always)]
pub fn tiny(carried: usize, payload: usize) -> bool {
    carried
        < if payload < HEAD_MIN {
            payload
        } else {
            HEAD_MIN
        }
}

/// Whether the slot holds state for the datagram with `tag` (not idle).
#[inline(always)]
pub fn frag_live(s: &FragSlot, tag: u64, now: u32) -> bool {
    s.tag == tag && now.wrapping_sub(s.last_seen) <= FRAG_IDLE_TICKS
}

/// Whether a first fragment finds its own datagram's state in the slot:
/// later fragments that came before it (live, same tag, no first fragment
/// yet). A slot that already saw a first fragment under this tag belongs to
/// an earlier datagram that had the same IP id (ids wrap, and hosts behind
/// one NAT share them): the new datagram starts afresh, so nothing the
/// earlier one was judged on judges it.
#[inline(always)]
pub fn same_datagram(s: &FragSlot, tag: u64, now: u32) -> bool {
    frag_live(s, tag, now) && s.flags & FRAGF_FIRST == 0
}

/// What to do with a later fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// Its datagram was dropped.
    Drop,
    /// It rewrites bytes a listed or call datagram was judged on.
    Overlap,
    /// Its bytes are the payload's head: classify them, after `prefix`
    /// bytes kept from the first fragment.
    Classify {
        /// Bytes of the head from the first fragment (the slot's stash).
        prefix: u8,
    },
    /// It came before its first fragment and starts inside the head: keep
    /// its first bytes.
    Stash,
    /// Nothing to do.
    Pass,
}

/// The later fragment of a UDP datagram (`udp`) at IP-payload `offset`,
/// given the datagram's slot (`known`: the slot holds this datagram).
#[inline(always)]
pub fn later_action(s: &FragSlot, known: bool, udp: bool, offset: u16) -> Later {
    let in_head = offset >= UDP_HEADER && usize::from(offset - UDP_HEADER) < HEAD_MIN;
    if !known {
        return if udp && in_head {
            Later::Stash
        } else {
            Later::Pass
        };
    }
    if s.state == FRAG_DROP {
        return Later::Drop;
    }
    let rewrites = offset < s.head_end;
    if rewrites && s.flags & (FRAGF_LISTED | FRAGF_CALL) != 0 {
        return Later::Overlap;
    }
    let continues = udp && s.state == FRAG_PENDING && offset == s.first_end;
    if s.flags & FRAGF_DECIDED != 0 && !continues {
        // Dropped by address: every other fragment of it too.
        return Later::Drop;
    }
    if !udp || s.flags & FRAGF_FIRST == 0 {
        return Later::Pass;
    }
    if continues {
        return Later::Classify {
            prefix: s.stash_len,
        };
    }
    if rewrites && offset == UDP_HEADER {
        return Later::Classify { prefix: 0 };
    }
    Later::Pass
}

/// For a first fragment carrying `carried` payload bytes: how many bytes of
/// a later fragment that came first (the slot's stash) continue them
/// (joined after them for classification), or 0.
#[inline(always)]
pub fn early_continuation(s: &FragSlot, known: bool, carried: usize) -> u8 {
    if known && s.flags & FRAGF_FIRST == 0 && s.stash_len > 0 && usize::from(s.stash_off) == carried
    {
        s.stash_len
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FRAG_PASS, FRAGF_EARLY};

    fn slot(state: u8, flags: u8, first_end: u16, head_end: u16, stash_len: u8) -> FragSlot {
        FragSlot {
            tag: 1,
            state,
            flags,
            first_end,
            head_end,
            stash_len,
            ..FragSlot::default()
        }
    }

    #[test]
    fn tiny_first_fragments() {
        assert!(tiny(0, 100), "only the UDP header");
        assert!(tiny(47, 100));
        assert!(!tiny(48, 100));
        assert!(!tiny(20, 20), "the whole payload");
        assert!(tiny(19, 20));
        assert!(!tiny(0, 0));
    }

    #[test]
    fn a_first_fragment_owns_only_its_early_fragments() {
        let early = FragSlot {
            tag: 5,
            last_seen: 100,
            flags: FRAGF_EARLY,
            ..FragSlot::default()
        };
        assert!(same_datagram(&early, 5, 101), "its early fragments");
        assert!(!same_datagram(&early, 7, 101), "another datagram's");
        assert!(
            !same_datagram(&early, 5, 101 + FRAG_IDLE_TICKS),
            "idle too long"
        );
        let judged = FragSlot {
            flags: FRAGF_FIRST | FRAGF_LISTED,
            head_end: 16,
            ..early
        };
        assert!(
            !same_datagram(&judged, 5, 101),
            "a datagram that had the id before"
        );
    }

    #[test]
    fn later_fragments() {
        // Unknown datagram (before its first fragment).
        let none = FragSlot::default();
        assert_eq!(later_action(&none, false, true, 8), Later::Stash);
        assert_eq!(later_action(&none, false, true, 48), Later::Stash);
        assert_eq!(
            later_action(&none, false, true, 64),
            Later::Pass,
            "past the head"
        );
        assert_eq!(later_action(&none, false, false, 8), Later::Pass, "not UDP");
        // Dropped datagram.
        let dropped = slot(FRAG_DROP, FRAGF_FIRST, 1480, 136, 0);
        assert_eq!(later_action(&dropped, true, true, 1480), Later::Drop);
        // Passed, unlisted: continuation passes, a rewrite of the head from
        // its start is judged on its own bytes, one elsewhere passes.
        let passed = slot(FRAG_PASS, FRAGF_FIRST, 1480, 136, 0);
        assert_eq!(later_action(&passed, true, true, 1480), Later::Pass);
        assert_eq!(
            later_action(&passed, true, true, 8),
            Later::Classify { prefix: 0 }
        );
        assert_eq!(later_action(&passed, true, true, 16), Later::Pass);
        // Listed or call: any rewrite of the judged bytes is an overlap.
        for f in [FRAGF_LISTED, FRAGF_CALL] {
            let s = slot(FRAG_PASS, FRAGF_FIRST | f, 1480, 136, 0);
            assert_eq!(later_action(&s, true, true, 16), Later::Overlap);
            assert_eq!(later_action(&s, true, true, 136), Later::Pass, "past them");
        }
        // Tiny first fragment kept: the continuation is classified after it.
        let pending = slot(FRAG_PENDING, FRAGF_FIRST, 16, 16, 8);
        assert_eq!(
            later_action(&pending, true, true, 16),
            Later::Classify { prefix: 8 }
        );
        assert_eq!(
            later_action(&pending, true, true, 8),
            Later::Classify { prefix: 0 }
        );
        assert_eq!(
            later_action(&pending, true, true, 200),
            Later::Pass,
            "a gap"
        );
        let frag8 = slot(FRAG_PENDING, FRAGF_FIRST, 8, 8, 0);
        assert_eq!(
            later_action(&frag8, true, true, 8),
            Later::Classify { prefix: 0 }
        );
        // An early fragment's slot before its first: later ones pass.
        let early = slot(FRAG_PENDING, FRAGF_EARLY, 0, 0, 48);
        assert_eq!(later_action(&early, true, true, 200), Later::Pass);
        // Tiny first fragment dropped by address: the continuation is
        // classified (it teaches), any other fragment drops, a rewrite of
        // the kept bytes is an overlap.
        let decided = slot(
            FRAG_PENDING,
            FRAGF_FIRST | FRAGF_LISTED | FRAGF_DECIDED,
            16,
            16,
            8,
        );
        assert_eq!(
            later_action(&decided, true, true, 16),
            Later::Classify { prefix: 8 }
        );
        assert_eq!(
            later_action(&decided, true, true, 1480),
            Later::Drop,
            "out of order"
        );
        assert_eq!(later_action(&decided, true, true, 8), Later::Overlap);
        assert_eq!(
            later_action(&decided, true, false, 16),
            Later::Drop,
            "not UDP"
        );
    }

    #[test]
    fn early_fragments_continue_the_first() {
        let early = FragSlot {
            stash_off: 8,
            ..slot(FRAG_PENDING, FRAGF_EARLY, 0, 0, 48)
        };
        assert_eq!(early_continuation(&early, true, 8), 48);
        assert_eq!(early_continuation(&early, true, 0), 0, "a gap");
        assert_eq!(early_continuation(&early, false, 8), 0);
        let seen_first = FragSlot {
            flags: FRAGF_FIRST,
            ..early
        };
        assert_eq!(early_continuation(&seen_first, true, 8), 0);
    }

    #[test]
    fn tags_are_keyed_and_odd() {
        let k = FragKey {
            src: [1; 16],
            dst: [2; 16],
            id: 7,
            proto: 17,
            _pad: [0; 3],
        };
        let t = frag_tag(&k, 5);
        assert_eq!(t & 1, 1);
        assert_ne!(t, frag_tag(&k, 6));
        assert_ne!(t, frag_tag(&FragKey { id: 8, ..k }, 5));
        let slot = FragSlot {
            tag: t,
            last_seen: 100,
            ..FragSlot::default()
        };
        assert!(frag_live(&slot, t, 100 + FRAG_IDLE_TICKS));
        assert!(!frag_live(&slot, t, 101 + FRAG_IDLE_TICKS));
        assert!(!frag_live(&slot, t ^ 2, 100));
    }
}
