//! Invariants shared by the `frame` and `classify` targets: what any
//! [`Class`] must satisfy, and the classifier's independence from head bytes
//! at or beyond the payload's length (the XDP program copies only
//! `min(len, HEAD_LEN)` bytes into a head it never zeroes, so the rest holds
//! an earlier packet's bytes).

use filter_common::classify::{
    Class, HEAD_LEN, LABEL_MAX, LABEL_NONE, LABEL_P2P_INHERITED, LABEL_RTCP, LABEL_RTP, LABEL_STUN,
    LABEL_TELEGRAM_DATA, LABEL_TELEGRAM_REFLECTOR, LABEL_TELEGRAM_TGCALLS, LABEL_TELEGRAM_TURN,
    LABEL_TURN_CHANNEL, LABEL_WHATSAPP_ICE, LABEL_WHATSAPP_KEEPALIVE, LABEL_WHATSAPP_MEDIA,
    LABEL_WHATSAPP_STUN, STUN_COOKIE, Strength, classify, label_name, tag_plausible,
};
use filter_common::{CAT_TELEGRAM, CAT_WHATSAPP};

/// What the stale part of a head may hold: zeros, ones, and bytes that
/// would complete a signature if they were read (a STUN cookie, the 0xFF
/// run of a Telegram reflector packet, RTP-looking bytes).
const STALE_PATTERNS: [[u8; 4]; 4] = [[0; 4], [0xFF; 4], STUN_COOKIE, [0x80, 0x6f, 0x00, 0x01]];

/// Invariants of one classification of a `len`-byte payload whose head is
/// `head`.
pub fn check_class(c: &Class, head: &[u8; HEAD_LEN], len: usize) {
    assert!(c.label <= LABEL_MAX, "label {} out of range", c.label);
    if c.label != LABEL_NONE {
        assert!(
            label_name(c.label).is_some(),
            "label {} has no name",
            c.label
        );
    }
    // Labels only flow state gives: the classifier never returns them.
    assert!(
        ![
            LABEL_WHATSAPP_MEDIA,
            LABEL_TELEGRAM_DATA,
            LABEL_P2P_INHERITED
        ]
        .contains(&c.label),
        "classify returned the flow-state label {}",
        c.label
    );
    match c.app {
        0 => assert!(
            ![
                LABEL_WHATSAPP_STUN,
                LABEL_WHATSAPP_ICE,
                LABEL_TELEGRAM_REFLECTOR,
                LABEL_TELEGRAM_TGCALLS,
                LABEL_TELEGRAM_TURN
            ]
            .contains(&c.label),
            "app signature label {} without a category",
            c.label
        ),
        CAT_WHATSAPP => assert!(
            [LABEL_WHATSAPP_STUN, LABEL_WHATSAPP_ICE].contains(&c.label),
            "whatsapp category with label {}",
            c.label
        ),
        CAT_TELEGRAM => assert!(
            [
                LABEL_TELEGRAM_REFLECTOR,
                LABEL_TELEGRAM_TGCALLS,
                LABEL_TELEGRAM_TURN
            ]
            .contains(&c.label),
            "telegram category with label {}",
            c.label
        ),
        other => panic!("classify named category {other}"),
    }
    if c.app != 0 {
        assert_eq!(c.strength, Strength::Signal, "an app signature is a signal");
    }
    match c.strength {
        Strength::None => assert_eq!(c.label, LABEL_NONE, "no strength, yet a label"),
        Strength::Candidate => assert!(
            [
                LABEL_RTP,
                LABEL_RTCP,
                LABEL_TURN_CHANNEL,
                LABEL_WHATSAPP_KEEPALIVE
            ]
            .contains(&c.label),
            "candidate with label {}",
            c.label
        ),
        Strength::Signal => assert_ne!(c.label, LABEL_NONE, "a signal needs a label"),
    }
    if c.label == LABEL_NONE {
        assert!(
            !c.turn && !c.has_peer && !c.learn_tag,
            "flags without a label: {c:?}"
        );
    }
    if c.label != LABEL_RTP {
        assert_eq!((c.ssrc, c.seq), (0, 0), "RTP fields on label {}", c.label);
    }
    if c.label == LABEL_TELEGRAM_REFLECTOR {
        assert_eq!(c.learn_tag, tag_plausible(head), "reflector tag rule");
    } else {
        assert!(!c.learn_tag, "tag learned from label {}", c.label);
    }
    if c.has_peer {
        assert!(
            [LABEL_STUN, LABEL_TELEGRAM_TURN].contains(&c.label) && c.turn && len >= 32,
            "peer address from {c:?} (len {len})"
        );
    } else {
        assert_eq!((c.peer_addr, c.peer_port), ([0; 4], 0));
    }
    assert_eq!(
        c.tag_candidate,
        c.strength != Strength::Signal
            && len >= 48
            && len.is_multiple_of(16)
            && tag_plausible(head),
        "tag candidate rule, len {len}: {c:?}"
    );
    if len == 0 {
        assert_eq!(*c, Class::NONE);
    }
}

/// `head` with every byte at or beyond `len` replaced by `pattern`, repeated.
fn stale(head: &[u8; HEAD_LEN], len: usize, pattern: [u8; 4]) -> [u8; HEAD_LEN] {
    let mut h = *head;
    for (i, b) in h.iter_mut().enumerate().skip(len) {
        *b = pattern[i % 4];
    }
    h
}

/// Classify, check the invariants, and check that what lies in the head at
/// or beyond `len` does not change the result.
pub fn classify_checked(head: &[u8; HEAD_LEN], len: usize, sport: u16, dport: u16) -> Class {
    let c = classify(head, len, sport, dport);
    check_class(&c, head, len);
    if len < HEAD_LEN {
        for p in STALE_PATTERNS {
            let other = classify(&stale(head, len, p), len, sport, dport);
            assert_eq!(
                other, c,
                "classify read head bytes at or beyond len {len} (stale pattern {p:02x?})"
            );
        }
    }
    c
}
