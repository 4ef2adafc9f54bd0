//! The WhatsApp and Telegram call signatures of `classify` (issue 3): one
//! test per signature with crafted packets and with real packet heads from
//! ../shared/corpus, and negative tests with look-alikes.

use std::vec::Vec;

use super::{assert_none, cls, head};
use crate::classify::{
    Class, HEAD_LEN, HEAD_MIN, LABEL_DTLS, LABEL_NONE, LABEL_RTP, LABEL_STUN, LABEL_TELEGRAM_DATA,
    LABEL_TELEGRAM_REFLECTOR, LABEL_TELEGRAM_TGCALLS, LABEL_TELEGRAM_TURN, LABEL_TURN_CHANNEL,
    LABEL_WHATSAPP_ICE, LABEL_WHATSAPP_KEEPALIVE, LABEL_WHATSAPP_MEDIA, LABEL_WHATSAPP_STUN,
    MAX_STUN_ATTRS, STUN_COOKIE, Strength, TELEGRAM_TURN_PORT, classify, first_fragment_len,
    head_needed, label_name,
};
use crate::consts::{CAT_TELEGRAM, CAT_WHATSAPP};
use crate::decide::observe;
use crate::pktbuild::sample::{TAG, TXID};
use crate::pktbuild::{
    self, dtls_content, dtls_record, dtls_version, rtcp, rtp, stun, stun_attr, stun_type,
    xor_address_v4, xor_address_v6,
};
use crate::pktbuild::{tg_reflector as reflector, tgcalls_data as tgcalls};
use crate::rng::Rng;
use crate::types::{FLOW_CALL, FLOW_TURN, FlowSlot};

const PING: [u8; 4] = [0xfe, 0xff, 0xff, 0xff];
const REPLY: [u8; 4] = [0xc7, 0x72, 0x15, 0xc0];
const T48: [u8; 4] = [0x1c, 0x37, 0xd9, 0x27];
const ALL_FF: [u8; 4] = [0xff; 4];
/// The reflector control types with the one length each is valid at.
const REFLECTOR_TYPES: [([u8; 4], usize); 4] = [(ALL_FF, 32), (PING, 40), (T48, 48), (REPLY, 64)];
/// Ports that are neither Telegram's TURN port nor anything special.
const SPORT: u16 = 40000;
const DPORT: u16 = 3478;

// --- helpers ---------------------------------------------------------------------

/// Bytes from a hex string.
fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex string {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `prefix` followed by filler bytes up to `len` bytes in all.
fn padded(prefix: &[u8], len: usize) -> Vec<u8> {
    assert!(prefix.len() <= len);
    let mut p = prefix.to_vec();
    p.extend_from_slice(&pktbuild::filler(len - prefix.len(), 0x3d));
    p
}

/// A STUN message with the cookie whose length field counts exactly `body`.
fn raw_stun(msg_type: u16, body: &[u8]) -> Vec<u8> {
    pktbuild::stun_raw(msg_type, TXID, body)
}

/// One attribute with an unpadded value (type, length, value).
fn raw_attr(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&ty.to_be_bytes());
    a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    a.extend_from_slice(value);
    a
}

fn cls_ports(payload: &[u8], sport: u16, dport: u16) -> Class {
    classify(&head(payload), payload.len(), sport, dport)
}

fn show(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(40)]
}

/// The payload is an app signature: `label`, category `app`, a Signal.
#[track_caller]
fn assert_app(payload: &[u8], label: u8, app: u8) -> Class {
    assert_app_class(cls(payload), payload, label, app)
}

#[track_caller]
fn assert_app_class(c: Class, payload: &[u8], label: u8, app: u8) -> Class {
    assert_eq!(
        (label_name(c.label), c.app, c.strength),
        (label_name(label), app, Strength::Signal),
        "{} bytes {:02x?}",
        payload.len(),
        show(payload)
    );
    assert!(!c.tag_candidate, "a Signal is never a tag candidate");
    c
}

/// The payload is `label` with no category, a Signal.
#[track_caller]
fn assert_generic(c: Class, payload: &[u8], label: u8) -> Class {
    assert_eq!(
        (label_name(c.label), c.app, c.strength),
        (label_name(label), 0, Strength::Signal),
        "{} bytes {:02x?}",
        payload.len(),
        show(payload)
    );
    c
}

/// Nothing call-like: no label, or at most an RTP/ChannelData candidate;
/// never a category, a tag to learn or a peer.
#[track_caller]
fn assert_not_call(payload: &[u8]) -> Class {
    let c = cls(payload);
    assert!(
        c.label == LABEL_NONE || c.label == LABEL_RTP || c.label == LABEL_TURN_CHANNEL,
        "label {:?} for {} bytes {:02x?}",
        label_name(c.label),
        payload.len(),
        show(payload)
    );
    assert_ne!(c.strength, Strength::Signal, "{:02x?}", show(payload));
    assert_eq!(
        (c.app, c.learn_tag, c.has_peer, c.turn),
        (0, false, false, false),
        "{:02x?}",
        show(payload)
    );
    c
}

/// Not this app label and no category (whatever generic label it may get).
#[track_caller]
fn assert_not_app(payload: &[u8], label: u8) -> Class {
    assert_not_app_class(cls(payload), payload, label)
}

#[track_caller]
fn assert_not_app_class(c: Class, payload: &[u8], label: u8) -> Class {
    assert!(
        c.label != label && c.app == 0 && !c.learn_tag,
        "got {:?} app {} for {} bytes {:02x?}",
        label_name(c.label),
        c.app,
        payload.len(),
        show(payload)
    );
    c
}

// --- WhatsApp private STUN types -------------------------------------------------

#[test]
fn whatsapp_private_types_ping_pong() {
    for ty in 0x0800u16..=0x0805 {
        let m = stun(ty, TXID, &[]);
        assert_eq!(m.len(), 20);
        let c = assert_app(&m, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
        assert!(!c.turn && !c.learn_tag && !c.has_peer);
    }
}

#[test]
fn whatsapp_private_types_with_a_body_of_any_length() {
    // WhatsApp's lengths are not padded to 4: 0x6a (106) in the corpus.
    for ty in 0x0800u16..=0x0805 {
        for body_len in [1usize, 2, 3, 4, 7, 24, 106, 107, 200, 1000] {
            let m = raw_stun(ty, &pktbuild::filler(body_len, 9));
            assert_eq!(m.len(), 20 + body_len);
            assert_app(&m, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
        }
    }
}

#[test]
fn whatsapp_private_types_negatives() {
    // Types just outside the range, and far outside it.
    for ty in [0x0806u16, 0x0807, 0x0808, 0x0810, 0x0880, 0x08ff] {
        assert_none(&stun(ty, TXID, &[]));
        assert_none(&raw_stun(ty, &[1, 2, 3, 4, 5, 6]));
    }
    // 0x09.. and 0x07.. are not WhatsApp's range either.
    for ty in [0x0700u16, 0x0705, 0x0900, 0x0901, 0x0c01] {
        assert_none(&stun(ty, TXID, &[]));
    }
    for ty in 0x0800u16..=0x0805 {
        let m = raw_stun(ty, &[7; 10]);
        // Without the cookie (each byte wrong, and RFC 3489-style).
        for i in 4..8 {
            let mut bad = m.clone();
            bad[i] ^= 0x20;
            assert_none(&bad);
        }
        // Length field off by one either way, a trailing byte, a cut.
        for field in [9u16, 11] {
            let mut bad = m.clone();
            bad[2..4].copy_from_slice(&field.to_be_bytes());
            assert_none(&bad);
        }
        let mut longer = m.clone();
        longer.push(0);
        assert_none(&longer);
        assert_none(&m[..m.len() - 1]);
        // Shorter than a STUN header.
        let ping = stun(ty, TXID, &[]);
        for cut in 0..20 {
            assert_none(&ping[..cut]);
        }
    }
}

// --- WhatsApp Allocate and its reply ---------------------------------------------

#[test]
fn whatsapp_allocate_with_a_private_first_attribute() {
    for attr in 0x4000u16..=0x4007 {
        // Padded like any STUN message.
        let m = stun(
            stun_type::ALLOCATE,
            TXID,
            &[
                (attr, &[1, 0, 0xa9, 0xf6, 0x0d, 0xfa]),
                (stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]),
            ],
        );
        let c = assert_app(&m, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
        assert!(c.turn, "Allocate is TURN");
        // Unpadded, as WhatsApp sends it.
        for value_len in [0usize, 1, 2, 3, 5, 0x66] {
            let m = raw_stun(
                stun_type::ALLOCATE,
                &raw_attr(attr, &pktbuild::filler(value_len, 1)),
            );
            let c = assert_app(&m, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
            assert!(c.turn);
        }
    }
}

#[test]
fn whatsapp_allocate_like_the_capture() {
    // msg_len 0x6a with attribute 0x4000 of length 0x66: 126 bytes, unpadded.
    let m = raw_stun(stun_type::ALLOCATE, &raw_attr(0x4000, &[0x42; 0x66]));
    assert_eq!(m.len(), 126);
    assert_eq!(&m[..4], &[0x00, 0x03, 0x00, 0x6a]);
    assert_eq!(&m[20..24], &[0x40, 0x00, 0x00, 0x66]);
    let c = assert_app(&m, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
    assert!(c.turn);
}

#[test]
fn allocate_without_a_whatsapp_attribute_first_is_plain_stun() {
    let first_attrs: [(u16, &[u8]); 6] = [
        (stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]),
        (stun_attr::LIFETIME, &[0, 0, 2, 0x58]),
        (stun_attr::USERNAME, b"user"),
        (0x3fff, &[1, 2, 3, 4]),
        (0x4008, &[1, 2, 3, 4]),
        (0x4100, &[1, 2, 3, 4]),
    ];
    for (attr, value) in first_attrs {
        let m = stun(stun_type::ALLOCATE, TXID, &[(attr, value)]);
        let c = assert_generic(cls(&m), &m, LABEL_STUN);
        assert!(c.turn, "attribute {attr:#06x}: Allocate is TURN");
    }
    // A WhatsApp attribute that is not the first one.
    let m = stun(
        stun_type::ALLOCATE,
        TXID,
        &[
            (stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]),
            (0x4000, &[1, 2, 3, 4]),
        ],
    );
    assert_generic(cls(&m), &m, LABEL_STUN);
    // An empty Allocate.
    let m = stun(stun_type::ALLOCATE, TXID, &[]);
    assert_generic(cls(&m), &m, LABEL_STUN);
    // Unpadded with a non-WhatsApp first attribute: not STUN at all.
    assert_none(&raw_stun(
        stun_type::ALLOCATE,
        &raw_attr(0x4008, &[1, 2, 3]),
    ));
    assert_none(&raw_stun(
        stun_type::ALLOCATE,
        &raw_attr(stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0]),
    ));
}

#[test]
fn private_attributes_on_other_methods_are_plain_stun() {
    for ty in [
        stun_type::BINDING_REQUEST,
        stun_type::BINDING_RESPONSE,
        stun_type::REFRESH,
        stun_type::ALLOCATE_RESPONSE,
        stun_type::ALLOCATE_ERROR,
        stun_type::CREATE_PERMISSION,
    ] {
        let m = stun(ty, TXID, &[(0x4000, &[1, 2, 3, 4])]);
        assert_generic(cls(&m), &m, LABEL_STUN);
    }
}

#[test]
fn whatsapp_allocate_reply() {
    let xma = xor_address_v4([198, 51, 100, 23], 61234);
    let m = stun(
        stun_type::ALLOCATE_RESPONSE,
        TXID,
        &[
            (stun_attr::XOR_MAPPED_ADDRESS, &xma),
            (0x4002, &[0, 0, 1, 0x4d, 0x8c, 0x8e, 0x32, 0x8c]),
        ],
    );
    assert_eq!(m.len(), 44);
    let c = assert_app(&m, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
    assert!(c.turn);
    // More attributes behind 0x4002 do not matter.
    let m = stun(
        stun_type::ALLOCATE_RESPONSE,
        TXID,
        &[
            (stun_attr::XOR_MAPPED_ADDRESS, &xma),
            (0x4002, &[0; 8]),
            (stun_attr::LIFETIME, &[0, 0, 2, 0x58]),
        ],
    );
    assert_app(&m, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
}

#[test]
fn allocate_reply_without_0x4002_is_plain_stun() {
    let xma = xor_address_v4([198, 51, 100, 23], 61234);
    let xra = xor_address_v4([203, 0, 113, 9], 50000);
    let cases: [&[(u16, &[u8])]; 4] = [
        // A standard TURN Allocate success.
        &[
            (stun_attr::XOR_RELAYED_ADDRESS, &xra),
            (stun_attr::XOR_MAPPED_ADDRESS, &xma),
            (stun_attr::LIFETIME, &[0, 0, 2, 0x58]),
        ],
        // 0x0020 first, then not 0x4002.
        &[(stun_attr::XOR_MAPPED_ADDRESS, &xma), (0x4003, &[0; 8])],
        // 0x4002 first.
        &[(0x4002, &[0; 8]), (stun_attr::XOR_MAPPED_ADDRESS, &xma)],
        // 0x0020 alone.
        &[(stun_attr::XOR_MAPPED_ADDRESS, &xma)],
    ];
    for attrs in cases {
        let m = stun(stun_type::ALLOCATE_RESPONSE, TXID, attrs);
        let c = assert_generic(cls(&m), &m, LABEL_STUN);
        assert!(c.turn);
    }
    // The WhatsApp attribute order on another type: a Binding success.
    let m = stun(
        stun_type::BINDING_RESPONSE,
        TXID,
        &[(stun_attr::XOR_MAPPED_ADDRESS, &xma), (0x4002, &[0; 8])],
    );
    let c = assert_generic(cls(&m), &m, LABEL_STUN);
    assert!(!c.turn);
}

// --- WhatsApp ICE check ----------------------------------------------------------

#[test]
fn whatsapp_ice_check_and_response() {
    for ty in [stun_type::BINDING_REQUEST, stun_type::BINDING_RESPONSE] {
        let m = stun(ty, TXID, &[(stun_attr::MESSAGE_INTEGRITY, &[0xe4; 20])]);
        assert_eq!(m.len(), 44);
        assert_eq!(&m[20..24], &[0x00, 0x08, 0x00, 0x14]);
        let c = assert_app(&m, LABEL_WHATSAPP_ICE, CAT_WHATSAPP);
        assert!(!c.turn && !c.has_peer && !c.learn_tag);
    }
}

#[test]
fn webrtc_binding_is_plain_stun() {
    // What other WebRTC stacks send: USERNAME, (PRIORITY, ...),
    // MESSAGE-INTEGRITY and FINGERPRINT.
    let cases: [&[(u16, &[u8])]; 4] = [
        &[
            (stun_attr::USERNAME, b"abcd:efgh"),
            (stun_attr::MESSAGE_INTEGRITY, &[0x11; 20]),
            (stun_attr::FINGERPRINT, &[1, 2, 3, 4]),
        ],
        &[
            (stun_attr::USERNAME, b"abcd"),
            (0x0024, &[0x6e, 0, 0x1e, 0xff]), // PRIORITY
            (0x802a, &[0; 8]),                // ICE-CONTROLLING
            (stun_attr::MESSAGE_INTEGRITY, &[0x11; 20]),
            (stun_attr::FINGERPRINT, &[1, 2, 3, 4]),
        ],
        // MESSAGE-INTEGRITY and FINGERPRINT only: 52 bytes.
        &[
            (stun_attr::MESSAGE_INTEGRITY, &[0x11; 20]),
            (stun_attr::FINGERPRINT, &[1, 2, 3, 4]),
        ],
        // A response with XOR-MAPPED-ADDRESS and MESSAGE-INTEGRITY.
        &[
            (
                stun_attr::XOR_MAPPED_ADDRESS,
                &xor_address_v4([192, 0, 2, 1], 40000),
            ),
            (stun_attr::MESSAGE_INTEGRITY, &[0x11; 20]),
        ],
    ];
    for attrs in cases {
        for ty in [stun_type::BINDING_REQUEST, stun_type::BINDING_RESPONSE] {
            let m = stun(ty, TXID, attrs);
            assert_ne!(m.len(), 44);
            assert_generic(cls(&m), &m, LABEL_STUN);
        }
    }
}

#[test]
fn forty_four_byte_bindings_that_are_not_the_ice_check() {
    // One 20-byte attribute that is not MESSAGE-INTEGRITY.
    for attr in [
        stun_attr::USERNAME,
        stun_attr::SOFTWARE,
        stun_attr::XOR_MAPPED_ADDRESS,
        0x0009,
        0x0108,
        0x0800,
    ] {
        for ty in [stun_type::BINDING_REQUEST, stun_type::BINDING_RESPONSE] {
            let m = stun(ty, TXID, &[(attr, &[0x22; 20])]);
            assert_eq!(m.len(), 44);
            assert_generic(cls(&m), &m, LABEL_STUN);
        }
    }
    // MESSAGE-INTEGRITY of another length, filling 24 bytes with a second
    // attribute; and the ICE check with four bytes more (an extra attribute).
    for (integrity, len) in [(&[0x33; 16][..], 44), (&[0x44; 20], 48)] {
        let attrs: [(u16, &[u8]); 2] = [
            (stun_attr::MESSAGE_INTEGRITY, integrity),
            (stun_attr::FINGERPRINT, &[]),
        ];
        let m = stun(stun_type::BINDING_REQUEST, TXID, &attrs);
        assert_eq!(m.len(), len);
        assert_generic(cls(&m), &m, LABEL_STUN);
    }
    // The right attribute on other Binding classes and other methods.
    for ty in [
        stun_type::BINDING_ERROR,
        stun_type::BINDING_INDICATION,
        stun_type::ALLOCATE_RESPONSE,
        stun_type::REFRESH,
    ] {
        let m = stun(ty, TXID, &[(stun_attr::MESSAGE_INTEGRITY, &[0x44; 20])]);
        assert_eq!(m.len(), 44);
        assert_generic(cls(&m), &m, LABEL_STUN);
    }
    // The ICE check with a wrong length is not the ICE check.
    let ice = stun(
        stun_type::BINDING_REQUEST,
        TXID,
        &[(stun_attr::MESSAGE_INTEGRITY, &[0x44; 20])],
    );
    let mut longer = ice.clone();
    longer.extend_from_slice(&[0; 4]);
    assert_none(&longer);
}

// --- WhatsApp keepalives ---------------------------------------------------------

#[test]
fn whatsapp_keepalives() {
    for p in [&b"health"[..], b"OK"] {
        let c = cls(p);
        assert_eq!(
            (c.label, c.strength, c.app),
            (LABEL_WHATSAPP_KEEPALIVE, Strength::Candidate, 0),
            "{p:?}"
        );
        assert!(!c.tag_candidate && !c.turn && !c.learn_tag);
    }
    assert_eq!(
        label_name(LABEL_WHATSAPP_KEEPALIVE),
        Some("whatsapp-keepalive")
    );
}

#[test]
fn keepalive_look_alikes() {
    let look_alikes: [&[u8]; 11] = [
        b"healthy",
        b"ok",
        b"Ok",
        b"oK",
        b"HEALTH",
        b"Health",
        b"healt",
        b"health\n",
        b"health\0",
        b"O",
        b"OKAY",
    ];
    for p in look_alikes {
        assert_none(p);
    }
    // "OK" plus two zero bytes reads as ChannelData with an empty body (a
    // candidate only on a TURN flow), never a keepalive.
    let c = assert_not_call(b"OK\0\0");
    assert_ne!(c.label, LABEL_WHATSAPP_KEEPALIVE);
    // The right bytes in the head but the wrong length.
    let h = head(b"health");
    for len in [1usize, 2, 5, 7, 8] {
        let c = classify(&h, len, SPORT, DPORT);
        assert_ne!(c.label, LABEL_WHATSAPP_KEEPALIVE, "len {len}");
    }
    let h = head(b"OK");
    for len in [1usize, 3, 6] {
        let c = classify(&h, len, SPORT, DPORT);
        assert_ne!(c.label, LABEL_WHATSAPP_KEEPALIVE, "len {len}");
    }
}

// --- Telegram reflector control --------------------------------------------------

#[test]
fn telegram_reflector_control_types() {
    for (ty, len) in REFLECTOR_TYPES {
        let p = reflector(TAG, ty, len);
        assert_eq!(p.len(), len);
        let c = assert_app(&p, LABEL_TELEGRAM_REFLECTOR, CAT_TELEGRAM);
        assert!(c.learn_tag, "type {ty:02x?}");
        assert!(!c.turn && !c.has_peer);
    }
}

#[test]
fn telegram_reflector_wins_over_the_demultiplexer() {
    let mut tags: Vec<[u8; 16]> = Vec::new();
    // Tags whose first byte routes to RTP/RTCP, STUN, DTLS, ChannelData,
    // WhatsApp's 0x08, QUIC.
    for b0 in [
        0x80u8, 0x81, 0x90, 0xa5, 0xbf, 0x00, 0x01, 0x03, 0x08, 0x14, 0x16, 0x17, 0x3f, 0x40, 0x4f,
        0xc3, 0xff,
    ] {
        let mut t = TAG;
        t[0] = b0;
        tags.push(t);
    }
    // A tag that is a valid RTP header (PT 120, no CSRC/extension).
    tags.push([
        0x80, 0x78, 0x12, 0x34, 0, 0, 0x0a, 0, 0x54, 0x59, 0x28, 0x24, 1, 2, 3, 4,
    ]);
    // A tag that is an RTCP header with a short length.
    tags.push([
        0x81, 0xc8, 0x00, 0x01, 0, 0, 0x0a, 0, 0x54, 0x59, 0x28, 0x24, 1, 2, 3, 4,
    ]);
    // A DTLS 1.2 handshake header with a record length of 3.
    tags.push([
        0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x03, 0xee, 0xee, 0xee,
    ]);
    for tag in tags {
        for (ty, len) in REFLECTOR_TYPES {
            let p = reflector(tag, ty, len);
            let c = assert_app(&p, LABEL_TELEGRAM_REFLECTOR, CAT_TELEGRAM);
            // The label always wins; only a plausible (random-looking) tag is learned.
            assert_eq!(
                c.learn_tag,
                crate::classify::tag_plausible(&super::head(&p))
            );
            assert!(!c.turn);
            assert_eq!((c.ssrc, c.seq), (0, 0), "no RTP fields");
        }
    }
    // A tag that makes the whole packet an exact STUN Binding (cookie, and
    // a length field that matches): still the reflector.
    for (ty, len) in REFLECTOR_TYPES {
        let msg_len = (len - 20) as u16;
        let mut tag = [0u8; 16];
        tag[..2].copy_from_slice(&[0x00, 0x01]);
        tag[2..4].copy_from_slice(&msg_len.to_be_bytes());
        tag[4..8].copy_from_slice(&STUN_COOKIE);
        tag[8..].copy_from_slice(&TXID[..8]);
        let p = reflector(tag, ty, len);
        let c = assert_app(&p, LABEL_TELEGRAM_REFLECTOR, CAT_TELEGRAM);
        assert!(c.learn_tag);
    }
}

#[test]
fn telegram_reflector_negatives() {
    // Each type at every other control length, and around its own.
    for (ty, len) in REFLECTOR_TYPES {
        for other in [31usize, 33, 39, 41, 47, 49, 63, 65, 80, 96, 128] {
            if other != len {
                assert_not_app(&reflector(TAG, ty, other), LABEL_TELEGRAM_REFLECTOR);
            }
        }
        for (_, other) in REFLECTOR_TYPES {
            if other != len {
                assert_not_app(&reflector(TAG, ty, other), LABEL_TELEGRAM_REFLECTOR);
            }
        }
    }
    // The ping at 41 and 48 bytes.
    assert_not_app(&reflector(TAG, PING, 41), LABEL_TELEGRAM_REFLECTOR);
    assert_not_app(&reflector(TAG, PING, 48), LABEL_TELEGRAM_REFLECTOR);
    // Eleven 0xFF (any one of the twelve wrong), for every type.
    for (ty, len) in REFLECTOR_TYPES {
        for i in 16..28 {
            for wrong in [0xfeu8, 0x00, 0x7f] {
                let mut p = reflector(TAG, ty, len);
                p[i] = wrong;
                assert_not_app(&p, LABEL_TELEGRAM_REFLECTOR);
            }
        }
        // The run shifted by one byte (a 15- or 17-byte tag).
        let mut p = TAG[..15].to_vec();
        p.extend_from_slice(&[0xff; 12]);
        p.extend_from_slice(&ty);
        assert_not_app(&padded(&p, len), LABEL_TELEGRAM_REFLECTOR);
    }
    // Unknown type ids at every control length.
    for ty in [
        [0xfd, 0xff, 0xff, 0xff],
        [0xff, 0xff, 0xff, 0xfe],
        [0xfe, 0xff, 0xff, 0x7f],
        [0xc7, 0x72, 0x15, 0xc1],
        [0x1c, 0x37, 0xd9, 0x28],
        [0x27, 0xd9, 0x37, 0x1c],
        [0x00; 4],
        [0x01, 0x02, 0x03, 0x04],
    ] {
        for (_, len) in REFLECTOR_TYPES {
            assert_not_app(&reflector(TAG, ty, len), LABEL_TELEGRAM_REFLECTOR);
        }
    }
    // The bytes of a ping in the head, but another length.
    let h = head(&reflector(TAG, PING, 40));
    for len in [0usize, 16, 28, 32, 39, 41, 48, 64, 128, 1000] {
        let c = classify(&h, len, SPORT, DPORT);
        assert_not_app_class(c, &reflector(TAG, PING, 40), LABEL_TELEGRAM_REFLECTOR);
    }
    assert_eq!(
        classify(&h, 40, SPORT, DPORT).label,
        LABEL_TELEGRAM_REFLECTOR
    );
}

// --- real packet heads from ../shared/corpus --------------------------------------

const TG_PING: &str =
    "2fe49fa76c4eb433cbcd82a1bbea621efffffffffffffffffffffffffeffffff8bad35d6e816180a";
const TG_REPLY: &str = "2fe49fa76c4eb433cbcd82a1bbea621effffffffffffffffffffffffc77215c075dab25e8bad35d6e816180a00000000";
const TG_DATA: &str = "2fe49fa76c4eb433cbcd82a1bbea621e734fbd8a63a23a7f";
const WA_ALLOCATE: &str = "0003006a2112a4420000e84eca17171006d71a5c400000660100a9f60dfaaa48953ad2d0af75625fa16c6c36178c427d";
const WA_ALLOCATE_REPLY: &str =
    "010300182112a4420000e84eca17171006d71a5c00200008000191766e31b187400200080000014d8c8e328c";
const WA_PRIVATE: &str = "0800006a2112a442";
const WA_ICE: &str =
    "000100182112a44236c4db491bdb2e7bcb08334100080014e46d68c33ce7f60d3b0e08d7d2adc25a4181580d";
const WA_MEDIA: &str = "80f8412900000a0054592824";

#[test]
fn real_libtgvoip_reflector_packets() {
    let ping = hex(TG_PING);
    assert_eq!(ping.len(), 40);
    let c = assert_app(&ping, LABEL_TELEGRAM_REFLECTOR, CAT_TELEGRAM);
    assert!(c.learn_tag);

    let reply = padded(&hex(TG_REPLY), 64);
    let c = assert_app(&reply, LABEL_TELEGRAM_REFLECTOR, CAT_TELEGRAM);
    assert!(c.learn_tag);
    assert_eq!(&reply[..16], &ping[..16], "one tag for the call");

    // A data packet of the same call: not recognised on its own, but its
    // length makes it a candidate for the learned tag.
    let data = padded(&hex(TG_DATA), 96);
    let c = cls(&data);
    assert_eq!(
        (c.label, c.app, c.strength, c.learn_tag),
        (LABEL_NONE, 0, Strength::None, false)
    );
    assert!(c.tag_candidate);
    assert_eq!(&data[..16], &ping[..16]);
    // `telegram-data` is only ever set by the tag look-up.
    assert_eq!(label_name(LABEL_TELEGRAM_DATA), Some("telegram-data"));
}

#[test]
fn real_whatsapp_stun_packets() {
    let alloc = padded(&hex(WA_ALLOCATE), 126);
    let c = assert_app(&alloc, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
    assert!(c.turn);

    let reply = hex(WA_ALLOCATE_REPLY);
    assert_eq!(reply.len(), 44);
    let c = assert_app(&reply, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
    assert!(c.turn);
    assert_eq!(&reply[8..20], &alloc[8..20], "same transaction");

    let private = padded(&hex(WA_PRIVATE), 126);
    let c = assert_app(&private, LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
    assert!(!c.turn);

    let ice = hex(WA_ICE);
    assert_eq!(ice.len(), 44);
    assert_app(&ice, LABEL_WHATSAPP_ICE, CAT_WHATSAPP);
}

#[test]
fn real_whatsapp_relay_media_is_an_rtp_candidate() {
    let media = padded(&hex(WA_MEDIA), 260);
    let c = cls(&media);
    assert_eq!(
        (c.label, c.strength, c.app),
        (LABEL_RTP, Strength::Candidate, 0)
    );
    assert_eq!(media[1] & 0x7f, 120, "PT 120 (with the marker bit)");
    assert_eq!((c.seq, c.ssrc), (0x4129, 0x5459_2824));
    assert!(!c.tag_candidate, "260 is not a multiple of 16");
    // On a flow that carried WhatsApp STUN it is WhatsApp media at once.
    let mut flow = FlowSlot::default();
    assert!(observe(&mut flow, &cls(&hex(WA_PRIVATE_PING)), true));
    assert_eq!(flow.sig_category, CAT_WHATSAPP);
    assert!(observe(&mut flow, &c, false));
    let mut unlabelled = FlowSlot {
        sig_category: CAT_WHATSAPP,
        ..FlowSlot::default()
    };
    assert!(observe(&mut unlabelled, &c, false));
    assert_eq!(unlabelled.label, LABEL_WHATSAPP_MEDIA);
}

/// A WhatsApp 0x0801 ping: header only.
const WA_PRIVATE_PING: &str = "080100002112a442000102030405060708090a0b";

#[test]
fn corrupting_real_packets_breaks_the_signatures() {
    // One flipped byte in the signature part of each real packet.
    let ping = hex(TG_PING);
    for i in 16..32 {
        let mut p = ping.clone();
        p[i] ^= 0x01;
        assert_not_app(&p, LABEL_TELEGRAM_REFLECTOR);
    }
    let alloc = padded(&hex(WA_ALLOCATE), 126);
    // (0x10: flipping 0x08 in byte 0 would make the private type 0x0803.)
    for i in [0usize, 1, 2, 3, 4, 5, 6, 7, 20, 21] {
        let mut p = alloc.clone();
        p[i] ^= 0x10;
        assert_not_app(&p, LABEL_WHATSAPP_STUN);
    }
    let ice = hex(WA_ICE);
    for i in [0usize, 1, 3, 4, 7, 21, 23] {
        let mut p = ice.clone();
        p[i] ^= 0x04;
        assert_not_app(&p, LABEL_WHATSAPP_ICE);
    }
    // The HMAC and transaction id are free.
    let mut p = ice.clone();
    p[8..20].fill(0);
    p[24..44].fill(0xff);
    assert_app(&p, LABEL_WHATSAPP_ICE, CAT_WHATSAPP);
}

/// Real packets from other applications that come close to a signature.
const AMONG_US_HELLO: &str = "0800010080d9020306414141414141";
const RAKNET_REPLY_2: &str =
    "0800ffff00fefefefefdfdfdfd12345678000591a53605222004a5457b7aadd5024000";
/// stun.pcap: a 44-byte Binding success whose only attribute is an IPv6
/// MAPPED-ADDRESS.
const BINDING_44_MAPPED_V6: &str = "010100182112a44242717143766336792f6b4965000100140002de30\
                                    20011670000ceb0470aff67f8e49f603";
/// stun.pcap (Messenger, Meta's TURN): a 44-byte CreatePermission success
/// with MESSAGE-INTEGRITY as its only attribute.
const FB_PERMISSION_OK: &str = "010800182112a44277466b3066366f68316e467a00080014c53ba84c1d1f\
                                0d0b7ab1ab3f887ee21725370bd9";
/// stun.pcap (Messenger): an Allocate success with 0x0020 first, then 0x0016.
const FB_ALLOCATE_OK: &str = "010300382112a442357a556a4d58487665772b730020000800010a887c3d46\
                              43001600080001f30f3e1ff274000d000400000384000800140e9d914ca92c\
                              ddc797948099cb285bc6309ab653";
/// stun.pcap (Messenger): CreatePermission with XOR-PEER-ADDRESS first and
/// REALM `turner.facebook` (first 128 of 140 bytes).
const FB_PERMISSION: &str = "000800782112a44246622f5231503570504d59640012000800018cb9e1baa4\
                             24000600104d6632683948693561504d52706c46310014000f7475726e6572\
                             2e66616365626f6f6b000015002862623033316436316363633162653832\
                             6532343031343433356564353266323666626136323438330008001\
                             44c66dbfa44ca94a2";

#[test]
fn real_look_alikes_from_other_applications() {
    // Games that begin with 0x08 0x00, WhatsApp's private type range.
    let hello = hex(AMONG_US_HELLO);
    assert_eq!(hello.len(), 15);
    assert_none(&hello);
    let reply = hex(RAKNET_REPLY_2);
    assert_eq!(reply.len(), 35);
    assert_none(&reply);
    // 44-byte single-attribute messages that are not the ICE check: another
    // attribute, or MESSAGE-INTEGRITY only but on a TURN response.
    let b = hex(BINDING_44_MAPPED_V6);
    assert_eq!(b.len(), 44);
    assert_generic(cls(&b), &b, LABEL_STUN);
    let ok = hex(FB_PERMISSION_OK);
    assert_eq!(ok.len(), 44);
    let c = assert_generic(cls(&ok), &ok, LABEL_STUN);
    assert!(c.turn);
    // A standard Allocate success that starts with 0x0020 like WhatsApp's.
    let alloc = hex(FB_ALLOCATE_OK);
    assert_eq!(alloc.len(), 76);
    let c = assert_generic(cls(&alloc), &alloc, LABEL_STUN);
    assert!(c.turn);
    // Messenger's CreatePermission: a TURN peer, but not Telegram's realm
    // even on port 1400.
    let perm = padded(&hex(FB_PERMISSION), 140);
    for (sport, dport) in [(38123, 40003), (38123, TELEGRAM_TURN_PORT)] {
        let c = assert_generic(cls_ports(&perm, sport, dport), &perm, LABEL_STUN);
        assert!(c.turn && c.has_peer);
        assert_eq!((c.peer_addr, c.peer_port), ([192, 168, 0, 102], 44459));
    }
}

// --- tag candidates ----------------------------------------------------------------

#[test]
fn tag_candidates_by_length() {
    // Random-looking data (first byte routes nowhere) of every length.
    for len in 0usize..=300 {
        let p = padded(&TAG, len.max(16))[..len].to_vec();
        let c = cls(&p);
        assert_eq!(
            c.tag_candidate,
            len >= 48 && len.is_multiple_of(16),
            "len {len}"
        );
    }
    for len in [1024usize, 1200, 1488, 2000] {
        assert!(cls(&padded(&TAG, len)).tag_candidate, "len {len}");
    }
    for len in [47usize, 50, 65, 1201] {
        assert!(!cls(&padded(&TAG, len)).tag_candidate, "len {len}");
    }
}

#[test]
fn tag_candidates_include_rtp_candidates_but_no_signals() {
    // An RTP candidate of 96 bytes: its first 16 bytes may be a tag.
    let media = rtp(111, 7, 7, 0x0102_0304, 96 - 12);
    let c = cls(&media);
    assert_eq!((c.label, c.strength), (LABEL_RTP, Strength::Candidate));
    assert!(c.tag_candidate);
    assert!(!cls(&rtp(111, 7, 7, 1, 97 - 12)).tag_candidate);
    // Recognised STUN, DTLS and RTCP of a data length are not.
    let binding = stun(
        stun_type::BINDING_REQUEST,
        TXID,
        &[(stun_attr::USERNAME, &[0x61; 24])],
    );
    assert_eq!(binding.len(), 48);
    let c = assert_generic(cls(&binding), &binding, LABEL_STUN);
    assert!(!c.tag_candidate);
    let record = dtls_record(
        dtls_content::APPLICATION_DATA,
        dtls_version::DTLS_1_2,
        64 - 13,
    );
    let c = assert_generic(cls(&record), &record, LABEL_DTLS);
    assert!(!c.tag_candidate);
    let report = rtcp(200, 0, 9, &[0; 56]);
    assert_eq!(report.len(), 64);
    assert!(!cls(&report).tag_candidate);
    // Nor is any app signature.
    let wa = raw_stun(0x0800, &[0; 44]);
    assert_eq!(wa.len(), 64);
    assert!(!cls(&wa).tag_candidate);
    for (ty, len) in REFLECTOR_TYPES {
        assert!(!cls(&reflector(TAG, ty, len)).tag_candidate);
    }
}

// --- tgcalls reflector data --------------------------------------------------------

/// A call prefix whose first byte routes nowhere in the demultiplexer.
const PREFIX: [u8; 12] = [
    0x6d, 0x2a, 0x91, 0x3c, 0x05, 0xee, 0x47, 0x18, 0x99, 0x20, 0xab, 0x0f,
];

fn inner_stun() -> Vec<u8> {
    stun(
        stun_type::BINDING_REQUEST,
        TXID,
        &[
            (stun_attr::USERNAME, b"abcd:efg"),
            (stun_attr::MESSAGE_INTEGRITY, &[0x11; 20]),
            (stun_attr::FINGERPRINT, &[1, 2, 3, 4]),
        ],
    )
}

fn inners() -> [Vec<u8>; 5] {
    [
        inner_stun(),
        stun(stun_type::BINDING_RESPONSE, TXID, &[]),
        dtls_record(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 120),
        dtls_record(dtls_content::APPLICATION_DATA, dtls_version::DTLS_1_0, 7),
        // A record with more bytes after it in the inner packet.
        {
            let mut d = dtls_record(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 30);
            d.extend_from_slice(&dtls_record(
                dtls_content::CHANGE_CIPHER_SPEC,
                dtls_version::DTLS_1_2,
                1,
            ));
            d
        },
    ]
}

#[test]
fn tgcalls_reflector_data_with_inner_stun_or_dtls() {
    for inner in inners() {
        let n = inner.len();
        for pad in 0..=3 {
            let p = tgcalls(PREFIX, n as u32, &inner, pad);
            assert_eq!(p.len(), 24 + n + pad);
            let c = assert_app(&p, LABEL_TELEGRAM_TGCALLS, CAT_TELEGRAM);
            assert!(!c.learn_tag && !c.turn && !c.has_peer);
        }
    }
}

#[test]
fn tgcalls_with_prefixes_that_route_to_a_parser() {
    // Prefixes beginning like STUN, DTLS, ChannelData, QUIC or 0x08.
    for b0 in [0x00u8, 0x01, 0x08, 0x16, 0x17, 0x3f, 0x40, 0x4f, 0xc0, 0xff] {
        let mut prefix = PREFIX;
        prefix[0] = b0;
        for inner in inners() {
            let p = tgcalls(prefix, inner.len() as u32, &inner, 0);
            assert_app(&p, LABEL_TELEGRAM_TGCALLS, CAT_TELEGRAM);
        }
    }
}

#[test]
fn tgcalls_with_a_prefix_that_looks_like_rtp() {
    for (b0, b1) in [(0x80u8, 0x60u8), (0x90, 0x00), (0xbf, 0x78), (0x80, 0xc8)] {
        let mut prefix = PREFIX;
        prefix[0] = b0;
        prefix[1] = b1;
        prefix[2] = 0;
        prefix[3] = 1;
        for inner in inners() {
            let p = tgcalls(prefix, inner.len() as u32, &inner, 0);
            assert_app(&p, LABEL_TELEGRAM_TGCALLS, CAT_TELEGRAM);
        }
    }
}

#[test]
fn tgcalls_negatives() {
    for inner in inners() {
        let n = inner.len() as u32;
        // The length field overruns the datagram, or leaves 4+ bytes over.
        for field in [n + 1, n + 4, n + 100, u32::MAX, u32::MAX - 23, 0x8000_0000] {
            assert_not_app(&tgcalls(PREFIX, field, &inner, 0), LABEL_TELEGRAM_TGCALLS);
        }
        for pad in [4usize, 5, 8, 100] {
            assert_not_app(&tgcalls(PREFIX, n, &inner, pad), LABEL_TELEGRAM_TGCALLS);
        }
        // Inner length one short of the inner packet: the inner STUN length
        // no longer matches, or the padding reaches four.
        assert_not_app(&tgcalls(PREFIX, n - 4, &inner, 0), LABEL_TELEGRAM_TGCALLS);
        // The datagram cut inside the inner packet.
        let p = tgcalls(PREFIX, n, &inner, 0);
        assert_not_app(&p[..p.len() - 1], LABEL_TELEGRAM_TGCALLS);
        assert_not_app(&p[..30], LABEL_TELEGRAM_TGCALLS);
    }
    // Inner STUN that is not exact: wrong cookie, own length off.
    let s = inner_stun();
    let mut bad = s.clone();
    bad[4] ^= 0xff;
    assert_not_app(
        &tgcalls(PREFIX, bad.len() as u32, &bad, 0),
        LABEL_TELEGRAM_TGCALLS,
    );
    let mut bad = s.clone();
    bad.extend_from_slice(&[0; 4]);
    assert_not_app(
        &tgcalls(PREFIX, bad.len() as u32, &bad, 0),
        LABEL_TELEGRAM_TGCALLS,
    );
    let mut bad = s.clone();
    bad[0] |= 0x40;
    assert_not_app(
        &tgcalls(PREFIX, bad.len() as u32, &bad, 0),
        LABEL_TELEGRAM_TGCALLS,
    );
    // Inner DTLS that is not: record length overruns, wrong version, type.
    let d = dtls_record(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 40);
    let mut bad = d.clone();
    bad[11..13].copy_from_slice(&41u16.to_be_bytes());
    assert_not_app(
        &tgcalls(PREFIX, bad.len() as u32, &bad, 0),
        LABEL_TELEGRAM_TGCALLS,
    );
    let bad = dtls_record(dtls_content::HANDSHAKE, 0x0303, 40);
    assert_not_app(
        &tgcalls(PREFIX, bad.len() as u32, &bad, 0),
        LABEL_TELEGRAM_TGCALLS,
    );
    let bad = dtls_record(dtls_content::HEARTBEAT, dtls_version::DTLS_1_2, 40);
    assert_not_app(
        &tgcalls(PREFIX, bad.len() as u32, &bad, 0),
        LABEL_TELEGRAM_TGCALLS,
    );
    // Inner packets that are only media candidates are not enough: RTP,
    // RTCP, ChannelData, or random bytes.
    let others = [
        rtp(111, 100, 960, 0xdead_beef, 80),
        rtcp(200, 0, 0xdead_beef, &[0; 24]),
        pktbuild::channel_data(0x4001, &[0x55; 60]),
        pktbuild::filler(64, 0x77),
    ];
    for inner in others {
        let p = tgcalls(PREFIX, inner.len() as u32, &inner, 0);
        let c = assert_not_app(&p, LABEL_TELEGRAM_TGCALLS);
        assert_eq!(c.strength, Strength::None);
    }
    // An inner packet below 20 bytes (a DTLS record with a 2-byte body).
    let tiny = dtls_record(dtls_content::ALERT, dtls_version::DTLS_1_2, 2);
    assert_not_app(
        &tgcalls(PREFIX, tiny.len() as u32, &tiny, 0),
        LABEL_TELEGRAM_TGCALLS,
    );
}

// --- Telegram TURN -----------------------------------------------------------------

const REALM_TG: &[u8] = b"telegram.org";

#[test]
fn telegram_turn_realm_first_second_or_third() {
    let xpa = xor_address_v4([203, 0, 113, 50], 51000);
    let attr_sets: [&[(u16, &[u8])]; 4] = [
        &[(stun_attr::REALM, REALM_TG)],
        &[
            (stun_attr::USERNAME, b"1700000000:tg"),
            (stun_attr::REALM, REALM_TG),
            (stun_attr::MESSAGE_INTEGRITY, &[0x11; 20]),
        ],
        &[
            (stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]),
            (stun_attr::USERNAME, b"u"),
            (stun_attr::REALM, REALM_TG),
            (stun_attr::NONCE, b"0123456789abcdef"),
        ],
        &[
            (stun_attr::XOR_PEER_ADDRESS, &xpa),
            (stun_attr::USERNAME, b"user"),
            (stun_attr::REALM, REALM_TG),
        ],
    ];
    for attrs in attr_sets {
        for ty in [
            stun_type::ALLOCATE,
            stun_type::ALLOCATE_ERROR,
            stun_type::REFRESH,
            stun_type::CREATE_PERMISSION,
            stun_type::BINDING_REQUEST,
        ] {
            let m = stun(ty, TXID, attrs);
            for (sport, dport) in [(SPORT, TELEGRAM_TURN_PORT), (TELEGRAM_TURN_PORT, SPORT)] {
                let c = cls_ports(&m, sport, dport);
                assert_app_class(c, &m, LABEL_TELEGRAM_TURN, CAT_TELEGRAM);
                assert!(c.turn);
            }
            // Another port: plain STUN.
            for (sport, dport) in [(SPORT, DPORT), (1401, 1399), (3478, 40000)] {
                let c = cls_ports(&m, sport, dport);
                assert_generic(c, &m, LABEL_STUN);
            }
        }
    }
}

#[test]
fn telegram_turn_carries_the_peer_too() {
    let peer = [203, 0, 113, 50];
    let xpa = xor_address_v4(peer, 51000);
    let m = stun(
        stun_type::CREATE_PERMISSION,
        TXID,
        &[
            (stun_attr::XOR_PEER_ADDRESS, &xpa),
            (stun_attr::REALM, REALM_TG),
        ],
    );
    let c = cls_ports(&m, SPORT, TELEGRAM_TURN_PORT);
    assert_app_class(c, &m, LABEL_TELEGRAM_TURN, CAT_TELEGRAM);
    assert!(c.turn && c.has_peer);
    assert_eq!((c.peer_addr, c.peer_port), (peer, 51000));
}

#[test]
fn telegram_turn_realm_look_alikes() {
    for realm in [
        &b"telegram.com"[..],
        b"Telegram.org",
        b"telegram.orG",
        b"telegram.or",
        b"telegram.org.",
        b"telegram.orgx",
        b"xtelegram.org",
        b"telegram.org.example",
        b"",
    ] {
        let m = stun(stun_type::ALLOCATE, TXID, &[(stun_attr::REALM, realm)]);
        assert_generic(cls_ports(&m, SPORT, TELEGRAM_TURN_PORT), &m, LABEL_STUN);
    }
    // The right value under another attribute type (SOFTWARE, NONCE).
    for attr in [
        stun_attr::SOFTWARE,
        stun_attr::NONCE,
        0x0015,
        0x1014,
        0x0114,
    ] {
        let m = stun(stun_type::ALLOCATE, TXID, &[(attr, REALM_TG)]);
        assert_generic(cls_ports(&m, SPORT, TELEGRAM_TURN_PORT), &m, LABEL_STUN);
    }
    // Not STUN at all (no cookie): nothing.
    let mut m = stun(stun_type::ALLOCATE, TXID, &[(stun_attr::REALM, REALM_TG)]);
    m[4] = 0;
    assert_eq!(
        Class {
            tag_candidate: false,
            ..cls_ports(&m, SPORT, TELEGRAM_TURN_PORT)
        },
        Class::NONE
    );
}

/// A STUN message with `n` empty attributes (type 0x8022) and then REALM.
fn realm_after(n: usize) -> Vec<u8> {
    let mut attrs: Vec<(u16, &[u8])> = Vec::new();
    for _ in 0..n {
        attrs.push((stun_attr::SOFTWARE, &[]));
    }
    attrs.push((stun_attr::REALM, REALM_TG));
    stun(stun_type::ALLOCATE, TXID, &attrs)
}

#[test]
fn telegram_turn_realm_scan_is_bounded_by_attribute_count() {
    for n in 0..MAX_STUN_ATTRS + 4 {
        let m = realm_after(n);
        let c = cls_ports(&m, SPORT, TELEGRAM_TURN_PORT);
        if n < MAX_STUN_ATTRS {
            assert_app_class(c, &m, LABEL_TELEGRAM_TURN, CAT_TELEGRAM);
        } else {
            assert_generic(c, &m, LABEL_STUN);
        }
    }
}

#[test]
fn telegram_turn_realm_scan_is_bounded_by_the_head() {
    // One SOFTWARE attribute of `v` bytes puts REALM at 24 + pad4(v); REALM
    // needs 16 bytes inside the head.
    for v in (0usize..=200).step_by(4) {
        let sw = [0x61u8; 200];
        let m = stun(
            stun_type::ALLOCATE,
            TXID,
            &[
                (stun_attr::SOFTWARE, &sw[..v]),
                (stun_attr::REALM, REALM_TG),
            ],
        );
        let realm_at = 24 + v;
        let c = cls_ports(&m, SPORT, TELEGRAM_TURN_PORT);
        if realm_at + 16 <= HEAD_LEN {
            assert_app_class(c, &m, LABEL_TELEGRAM_TURN, CAT_TELEGRAM);
        } else {
            assert_generic(c, &m, LABEL_STUN);
        }
    }
    // Exactly at the edge: REALM at 112..128, then at 116.
    let m = stun(
        stun_type::ALLOCATE,
        TXID,
        &[
            (stun_attr::SOFTWARE, &[0x61; 88]),
            (stun_attr::REALM, REALM_TG),
        ],
    );
    assert_eq!(&m[112..116], &[0x00, 0x14, 0x00, 0x0c]);
    assert_eq!(
        cls_ports(&m, SPORT, TELEGRAM_TURN_PORT).label,
        LABEL_TELEGRAM_TURN
    );
    let m = stun(
        stun_type::ALLOCATE,
        TXID,
        &[
            (stun_attr::SOFTWARE, &[0x61; 92]),
            (stun_attr::REALM, REALM_TG),
        ],
    );
    assert_eq!(cls_ports(&m, SPORT, TELEGRAM_TURN_PORT).label, LABEL_STUN);
}

#[test]
fn telegram_turn_realm_scan_survives_lying_lengths() {
    // A first attribute whose length field says anything (the message length
    // stays right); REALM where that length points, when it fits.
    for alen in 0..=u16::MAX {
        let next = 24 + ((alen as usize + 3) & !3);
        let mut m = stun(
            stun_type::ALLOCATE,
            TXID,
            &[(stun_attr::SOFTWARE, &[0; 104])],
        );
        assert_eq!(m.len(), HEAD_LEN);
        m[22..24].copy_from_slice(&alen.to_be_bytes());
        let fits = next + 16 <= HEAD_LEN;
        if fits {
            m[next..next + 4].copy_from_slice(&[0x00, 0x14, 0x00, 0x0c]);
            m[next + 4..next + 16].copy_from_slice(REALM_TG);
        }
        let c = cls_ports(&m, SPORT, TELEGRAM_TURN_PORT);
        let want = if fits {
            LABEL_TELEGRAM_TURN
        } else {
            LABEL_STUN
        };
        assert_eq!(c.label, want, "attribute length {alen}");
        // The same message longer than the head: the scan still stops at it.
        let mut long = m.clone();
        long.extend_from_slice(&[0; 400]);
        let long_len = (long.len() - 20) as u16;
        long[2..4].copy_from_slice(&long_len.to_be_bytes());
        assert_eq!(cls_ports(&long, SPORT, TELEGRAM_TURN_PORT).label, want);
    }
    // REALM claimed in the last 8 bytes of the message, its value (which
    // would run past the end) left in the head beyond the message.
    let mut m = stun(stun_type::ALLOCATE, TXID, &[(stun_attr::SOFTWARE, &[0; 4])]);
    m.extend_from_slice(&[0x00, 0x14, 0x00, 0x0c, b't', b'e', b'l', b'e']);
    let len = m.len();
    m[2..4].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    let mut h = head(&m);
    h[len..len + 8].copy_from_slice(b"gram.org");
    let c = classify(&h, len, SPORT, TELEGRAM_TURN_PORT);
    assert_eq!(c.label, LABEL_STUN);
}

// --- XOR-PEER-ADDRESS ----------------------------------------------------------------

#[test]
fn turn_peer_from_create_permission_and_send() {
    let peers = [
        ([203u8, 0, 113, 7], 50000u16),
        ([198, 51, 100, 1], 1),
        ([192, 0, 2, 255], 65535),
        ([0x21, 0x12, 0xa4, 0x42], 0x2112), // decodes to zero bytes on the wire
        ([0, 0, 0, 0], 0),
    ];
    for (addr, port) in peers {
        let xpa = xor_address_v4(addr, port);
        let cases: [(u16, Vec<u8>); 3] = [
            (
                stun_type::CREATE_PERMISSION,
                stun(
                    stun_type::CREATE_PERMISSION,
                    TXID,
                    &[
                        (stun_attr::XOR_PEER_ADDRESS, &xpa),
                        (stun_attr::USERNAME, b"user"),
                        (stun_attr::MESSAGE_INTEGRITY, &[0x11; 20]),
                    ],
                ),
            ),
            (
                stun_type::CREATE_PERMISSION,
                stun(
                    stun_type::CREATE_PERMISSION,
                    TXID,
                    &[(stun_attr::XOR_PEER_ADDRESS, &xpa)],
                ),
            ),
            (
                stun_type::SEND_INDICATION,
                stun(
                    stun_type::SEND_INDICATION,
                    TXID,
                    &[
                        (stun_attr::XOR_PEER_ADDRESS, &xpa),
                        (stun_attr::DATA, &[0x80, 0x78, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]),
                    ],
                ),
            ),
        ];
        for (ty, m) in cases {
            let c = assert_generic(cls(&m), &m, LABEL_STUN);
            assert!(c.turn, "{ty:#06x}");
            assert!(c.has_peer, "{ty:#06x}");
            assert_eq!((c.peer_addr, c.peer_port), (addr, port), "{ty:#06x}");
        }
    }
}

#[test]
fn turn_peer_only_when_first_ipv4_and_on_the_right_methods() {
    let xpa = xor_address_v4([203, 0, 113, 7], 50000);
    let xpa6 = xor_address_v6(
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
        50000,
        TXID,
    );
    let no_peer = |m: &[u8]| {
        let c = cls(m);
        assert_eq!(c.label, LABEL_STUN, "{:02x?}", show(m));
        assert!(!c.has_peer, "{:02x?}", show(m));
        assert_eq!((c.peer_addr, c.peer_port), ([0; 4], 0));
    };
    for ty in [stun_type::CREATE_PERMISSION, stun_type::SEND_INDICATION] {
        // Not the first attribute.
        no_peer(&stun(
            ty,
            TXID,
            &[
                (stun_attr::USERNAME, b"user"),
                (stun_attr::XOR_PEER_ADDRESS, &xpa),
            ],
        ));
        // IPv6 (family 2).
        no_peer(&stun(ty, TXID, &[(stun_attr::XOR_PEER_ADDRESS, &xpa6)]));
        // IPv4 length but another family byte.
        let mut odd = xpa;
        odd[1] = 0x02;
        no_peer(&stun(ty, TXID, &[(stun_attr::XOR_PEER_ADDRESS, &odd)]));
        // Wrong attribute length.
        no_peer(&stun(ty, TXID, &[(stun_attr::XOR_PEER_ADDRESS, &xpa[..6])]));
        // Another attribute with an address first.
        no_peer(&stun(ty, TXID, &[(stun_attr::XOR_MAPPED_ADDRESS, &xpa)]));
        no_peer(&stun(ty, TXID, &[(stun_attr::XOR_RELAYED_ADDRESS, &xpa)]));
    }
    // Other methods and classes carrying XOR-PEER-ADDRESS first.
    for ty in [
        stun_type::BINDING_REQUEST,
        stun_type::BINDING_RESPONSE,
        stun_type::BINDING_INDICATION,
        stun_type::ALLOCATE,
        stun_type::DATA_INDICATION,
        0x0108, // CreatePermission success
        0x0118, // CreatePermission error
    ] {
        no_peer(&stun(ty, TXID, &[(stun_attr::XOR_PEER_ADDRESS, &xpa)]));
    }
}

// --- look-alikes that must stay untouched -------------------------------------------

#[test]
fn quic_long_header_initial_is_nothing() {
    // Version 1 Initial: 0xC0 | pn_len, version 00000001, DCID len 8, DCID,
    // SCID len 8, SCID, token len 0, varint length, padded to 1200.
    let mut q = std::vec![0xc3u8, 0, 0, 0, 1, 8];
    q.extend_from_slice(&[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08]);
    q.push(8);
    q.extend_from_slice(&[0xf0, 0x67, 0xa5, 0x50, 0x2a, 0x42, 0x62, 0xb5]);
    q.push(0);
    q.extend_from_slice(&[0x44, 0x9e]);
    q.resize(1200, 0xa5);
    assert_none(&q);
    // Version 2 and a version negotiation packet.
    let mut v2 = q.clone();
    v2[1..5].copy_from_slice(&[0x6b, 0x33, 0x43, 0xcf]);
    assert_none(&v2);
    let mut vn = q[..40].to_vec();
    vn[0] = 0x80 | 0x0a;
    vn[1..5].fill(0);
    // 0x80..0xBF routes to RTP; whatever it is, it is not a call on its own.
    assert_not_call(&vn);
}

#[test]
fn quic_short_header_as_channel_data_is_only_a_candidate() {
    // Shape and label are covered by
    // tests::classify::quic_short_header_looks_like_channel_data_when_its_bytes_align;
    // here: it never names a category and never marks a fresh flow.
    let payload = [0x99u8; 30];
    let total = 1 + 8 + 1 + payload.len();
    let l = ((total - 4) as u16).to_be_bytes();
    let q = pktbuild::quic_short_header(0x01, &[0x11, l[0], l[1], 4, 5, 6, 7, 8], &[1], &payload);
    let c = assert_not_call(&q);
    assert_eq!(c.label, LABEL_TURN_CHANNEL);
    let mut flow = FlowSlot::default();
    for _ in 0..20 {
        assert!(!observe(&mut flow, &c, true));
    }
    assert_eq!(
        (
            flow.flags & (FLOW_CALL | FLOW_TURN),
            flow.label,
            flow.sig_category
        ),
        (0, LABEL_NONE, 0)
    );
}

#[test]
fn dns_and_ntp_are_nothing() {
    // DNS query for web.whatsapp.com, ids that route to STUN (0x00..0x03).
    for id in [0x0000u16, 0x0112, 0x0321, 0x2112, 0xbeef] {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in ["web", "whatsapp", "com"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_not_call(&q);
        // The answer: flags 0x8180, one answer record.
        let mut r = q.clone();
        r[2..4].copy_from_slice(&[0x81, 0x80]);
        r[6..8].copy_from_slice(&[0, 1]);
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 157, 240, 0, 53]);
        assert_not_call(&r);
    }
    // NTP: client (v4 mode 3, v3 mode 3), server (v4 mode 4), 48 bytes.
    for b0 in [0x23u8, 0x1b, 0x24, 0xe3] {
        let mut ntp = [0u8; 48];
        ntp[0] = b0;
        ntp[1] = 2;
        ntp[2] = 6;
        ntp[3] = 0xe9;
        ntp[40..48].copy_from_slice(&[0xe9, 0x3a, 0x1c, 0x42, 0x21, 0x12, 0xa4, 0x42]);
        let c = assert_not_call(&ntp);
        assert_eq!(c.label, LABEL_NONE, "NTP {b0:#04x}");
    }
}

#[test]
fn wireguard_is_nothing() {
    // Handshake initiation: type 1, three zero bytes, sender index, then
    // 140 bytes; even with a sender index equal to the STUN cookie.
    for index in [[0x5a, 0x0f, 0x33, 0xc1], STUN_COOKIE] {
        let mut wg = std::vec![1u8, 0, 0, 0];
        wg.extend_from_slice(&index);
        wg.extend_from_slice(&pktbuild::filler(140, 0x11));
        assert_eq!(wg.len(), 148);
        let c = assert_not_call(&wg);
        assert_eq!(c.label, LABEL_NONE);
        // Response (92 bytes), cookie reply (64), transport data (32 + 16n).
        for (ty, len) in [(2u8, 92usize), (3, 64), (4, 32), (4, 48), (4, 1440)] {
            let mut p = std::vec![ty, 0, 0, 0];
            p.extend_from_slice(&index);
            p.extend_from_slice(&pktbuild::filler(len - 8, ty));
            let c = assert_not_call(&p);
            assert_eq!(c.label, LABEL_NONE);
        }
    }
}

#[test]
fn dtls_vpn_is_generic_dtls_only() {
    // AnyConnect/OpenConnect-style DTLS 1.2 and a DTLS 1.0 VPN: a Signal, so
    // a call only with a listed address or an inherited endpoint; never a
    // category on its own.
    for (ty, v) in [
        (dtls_content::HANDSHAKE, dtls_version::DTLS_1_0),
        (dtls_content::HANDSHAKE, dtls_version::DTLS_1_2),
        (dtls_content::APPLICATION_DATA, dtls_version::DTLS_1_2),
        (dtls_content::APPLICATION_DATA, dtls_version::DTLS_1_0),
    ] {
        for body in [48usize, 115, 1387] {
            let r = dtls_record(ty, v, body);
            let c = assert_generic(cls(&r), &r, LABEL_DTLS);
            assert!(!c.learn_tag && !c.has_peer && !c.turn && !c.tag_candidate);
        }
    }
}

#[test]
fn raknet_is_nothing_or_an_rtp_candidate() {
    const MAGIC: [u8; 16] = [
        0x00, 0xff, 0xff, 0x00, 0xfe, 0xfe, 0xfe, 0xfe, 0xfd, 0xfd, 0xfd, 0xfd, 0x12, 0x34, 0x56,
        0x78,
    ];
    // Unconnected ping: 0x01, u64 time, magic, u64 client GUID (33 bytes).
    let mut ping = std::vec![0x01u8];
    ping.extend_from_slice(&0x0000_0000_0012_a442u64.to_be_bytes());
    ping.extend_from_slice(&MAGIC);
    ping.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!(ping.len(), 33);
    let c = assert_not_call(&ping);
    assert_eq!(c.label, LABEL_NONE);
    // Unconnected pong (0x1c: the DTLS range) and open connection request 1
    // (0x05, padded to the MTU).
    let mut pong = std::vec![0x1cu8];
    pong.extend_from_slice(&ping[1..]);
    pong.extend_from_slice(&MAGIC);
    pong.extend_from_slice(b"\x00\x10MCPE;server;1;");
    assert_eq!(cls(&pong).label, LABEL_NONE);
    let mut ocr = std::vec![0x05u8];
    ocr.extend_from_slice(&MAGIC);
    ocr.push(10);
    ocr.resize(1464, 0);
    assert_eq!(cls(&ocr).label, LABEL_NONE);
}

/// A RakNet frame set (connected data): 0x84, 24-bit little-endian
/// sequence number, then one reliable-ordered frame.
fn raknet_frame(seq: u32) -> Vec<u8> {
    let s = seq.to_le_bytes();
    let mut p = std::vec![0x84u8, s[0], s[1], s[2]];
    p.push(0x60); // reliable ordered
    p.extend_from_slice(&(20u16 * 8).to_be_bytes()); // length in bits
    p.extend_from_slice(&s[..3]); // reliable index
    p.extend_from_slice(&s[..3]); // ordered index
    p.push(0); // channel
    p.extend_from_slice(&pktbuild::filler(20, 0x42));
    p
}

#[test]
fn a_game_packet_passing_the_loose_rtp_check_is_only_a_candidate() {
    // seq 0x10..: byte 1 (the RTP payload type) is 16, a valid PT.
    let p = raknet_frame(0x0010);
    let c = assert_not_call(&p);
    assert_eq!((c.label, c.strength), (LABEL_RTP, Strength::Candidate));
    // A stream of frames never confirms as RTP: byte 2..4 (the "sequence")
    // are the high sequence bytes, constant for 256 frames.
    let mut flow = FlowSlot::default();
    for seq in 0x10u32..0x30 {
        let c = cls(&raknet_frame(seq));
        assert_eq!(c.app, 0);
        assert!(!observe(&mut flow, &c, true), "frame {seq:#x}");
    }
    assert_eq!(flow.flags & FLOW_CALL, 0);
    // A random-looking game payload that happens to be a valid RTP header:
    // a candidate, no category.
    let mut g = std::vec![0x80u8, 0x0a, 0x00, 0x05];
    g.extend_from_slice(&pktbuild::filler(60, 0x21));
    let c = assert_not_call(&g);
    assert_eq!((c.label, c.app), (LABEL_RTP, 0));
}

// --- property test -------------------------------------------------------------------

/// Heads that reach deep into the signatures: valid packets to mutate.
fn templates() -> Vec<Vec<u8>> {
    let xpa = xor_address_v4([203, 0, 113, 7], 50000);
    let mut t = std::vec![
        hex(TG_PING),
        padded(&hex(TG_REPLY), 64),
        reflector(TAG, ALL_FF, 32),
        reflector(TAG, T48, 48),
        padded(&hex(WA_ALLOCATE), 126),
        hex(WA_ALLOCATE_REPLY),
        padded(&hex(WA_PRIVATE), 126),
        hex(WA_ICE),
        padded(&hex(WA_MEDIA), 260),
        b"health".to_vec(),
        b"OK".to_vec(),
        stun(
            stun_type::CREATE_PERMISSION,
            TXID,
            &[
                (stun_attr::XOR_PEER_ADDRESS, &xpa),
                (stun_attr::REALM, REALM_TG),
            ],
        ),
        realm_after(5),
        // Header-only messages: whatever stale bytes follow them must not
        // be read as a first attribute.
        stun(stun_type::ALLOCATE, TXID, &[]),
        stun(stun_type::ALLOCATE_RESPONSE, TXID, &[]),
        stun(stun_type::BINDING_REQUEST, TXID, &[]),
        stun(stun_type::CREATE_PERMISSION, TXID, &[]),
        rtcp(200, 0, 1, &[0; 24]),
        pktbuild::channel_data(0x4001, &[1; 40]),
        dtls_record(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 90),
    ];
    for inner in inners() {
        t.push(tgcalls(PREFIX, inner.len() as u32, &inner, 0));
    }
    t
}

fn check_invariants(c: &Class, what: &dyn core::fmt::Debug) {
    let wa = [
        LABEL_WHATSAPP_STUN,
        LABEL_WHATSAPP_ICE,
        LABEL_WHATSAPP_MEDIA,
        LABEL_WHATSAPP_KEEPALIVE,
    ];
    let tg = [
        LABEL_TELEGRAM_REFLECTOR,
        LABEL_TELEGRAM_DATA,
        LABEL_TELEGRAM_TGCALLS,
        LABEL_TELEGRAM_TURN,
    ];
    match c.app {
        0 => {}
        CAT_WHATSAPP => assert!(wa.contains(&c.label), "{what:?}: {c:?}"),
        CAT_TELEGRAM => assert!(tg.contains(&c.label), "{what:?}: {c:?}"),
        _ => panic!("{what:?}: unknown app in {c:?}"),
    }
    if wa.contains(&c.label) || tg.contains(&c.label) {
        assert!(
            c.app != 0 || c.label == LABEL_WHATSAPP_KEEPALIVE,
            "{what:?}: {c:?}"
        );
    }
    assert_eq!(
        c.label == LABEL_NONE,
        c.strength == Strength::None,
        "{what:?}: {c:?}"
    );
    assert!(label_name(c.label).is_some() || c.label == LABEL_NONE);
    if c.strength == Strength::Signal {
        assert!(!c.tag_candidate, "{what:?}: {c:?}");
    }
    if c.learn_tag {
        assert_eq!(c.label, LABEL_TELEGRAM_REFLECTOR, "{what:?}: {c:?}");
    }
    if c.has_peer {
        assert!(c.label == LABEL_STUN || c.label == LABEL_TELEGRAM_TURN);
        assert!(c.turn);
    } else {
        assert_eq!((c.peer_addr, c.peer_port), ([0; 4], 0), "{what:?}: {c:?}");
    }
    if c.label != LABEL_RTP {
        assert_eq!((c.ssrc, c.seq), (0, 0), "{what:?}: {c:?}");
    }
}

#[test]
fn stale_bytes_past_the_length_never_matter() {
    // The XDP program does not zero the head between packets: past `len` it
    // holds the previous packet's bytes. Every signature packet, cut to
    // every length, with every other one's bytes (or 0xFF) behind it.
    let templates = templates();
    let mut stale_heads: Vec<[u8; HEAD_LEN]> = templates.iter().map(|t| head(t)).collect();
    stale_heads.push([0xff; HEAD_LEN]);
    for t in &templates {
        let full = head(t);
        for len in 0..=t.len().min(HEAD_LEN) {
            let mut clean = full;
            clean[len..].fill(0);
            for (sport, dport) in [(SPORT, DPORT), (SPORT, TELEGRAM_TURN_PORT)] {
                let want = classify(&clean, len, sport, dport);
                for stale in &stale_heads {
                    let mut dirty = *stale;
                    dirty[..len].copy_from_slice(&clean[..len]);
                    assert_eq!(
                        classify(&dirty, len, sport, dport),
                        want,
                        "len {len} of {:02x?}",
                        show(t)
                    );
                }
            }
        }
    }
}

/// The XDP program reads the first `HEAD_MIN` payload bytes, then only as
/// many more as `head_needed` asks for: bytes past that never change the
/// classification. Every template and random payloads (RTP with many CSRCs
/// and extensions, STUN on Telegram's TURN port included), with stale bytes
/// behind the part read.
#[test]
fn bytes_past_head_needed_never_matter() {
    let mut payloads = templates();
    let mut rng = Rng::new(0x005e_ed0f_4ead);
    for i in 0..4000u32 {
        let n = rng.below(300);
        let mut p = rng.bytes(n);
        if let Some(b) = p.first_mut() {
            // RTP with any CSRC count and extension bit, STUN-like, other.
            *b = match i % 3 {
                0 => 0x80 | (rng.byte() & 0x1f),
                1 => rng.byte() & 0x03,
                _ => *b,
            };
        }
        payloads.push(p);
    }
    let stale = [0xA5u8; HEAD_LEN];
    for p in &payloads {
        let full = head(p);
        for (sport, dport) in [(SPORT, DPORT), (SPORT, TELEGRAM_TURN_PORT)] {
            let need = head_needed(&full, p.len(), sport, dport);
            assert!(need <= HEAD_LEN && need <= p.len());
            assert!(need >= p.len().min(HEAD_MIN));
            let mut partial = stale;
            partial[..need].copy_from_slice(&full[..need]);
            assert_eq!(
                classify(&partial, p.len(), sport, dport),
                classify(&full, p.len(), sport, dport),
                "need {need} of {} bytes {:02x?}",
                p.len(),
                show(p)
            );
        }
    }
}

/// A UDP first fragment holding `cut` bytes of a datagram: classified with
/// `first_fragment_len`, bytes past the cut never matter, and when the whole
/// datagram's length is used the verdict is the whole datagram's.
#[test]
fn first_fragments_read_only_their_bytes_and_judge_the_datagram() {
    let stale = [0xA5u8; HEAD_LEN];
    let mut judged_whole = 0;
    for p in &templates() {
        let full = head(p);
        for cut in [0, 8, 16, 24, 40, 48, 64, 120] {
            if cut >= p.len() {
                continue;
            }
            for (sport, dport) in [(SPORT, DPORT), (SPORT, TELEGRAM_TURN_PORT)] {
                let mut partial = stale;
                let n = cut.min(HEAD_LEN);
                partial[..n].copy_from_slice(&full[..n]);
                let len = first_fragment_len(&partial, cut, p.len(), sport, dport);
                assert!(len == p.len() || len == cut, "{len}");
                let got = classify(&partial, len, sport, dport);
                if len == p.len() {
                    judged_whole += 1;
                    assert_eq!(
                        got,
                        classify(&full, p.len(), sport, dport),
                        "cut {cut} of {:02x?}",
                        show(p)
                    );
                } else {
                    let mut zeroed = [0u8; HEAD_LEN];
                    zeroed[..n].copy_from_slice(&full[..n]);
                    assert_eq!(got, classify(&zeroed, cut, sport, dport));
                }
            }
        }
    }
    assert!(judged_whole >= 20, "{judged_whole}");
}

#[test]
fn random_heads_never_panic_and_ignore_bytes_past_the_length() {
    let templates = templates();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let ports = [TELEGRAM_TURN_PORT, 3478, 53, 40000, 599, 0, u16::MAX];
    let mut seen_app = [0usize; 3];
    for i in 0..20_000u32 {
        let mut garbage: [u8; HEAD_LEN] = rng.array();
        let len = match i % 4 {
            // Random heads of any length.
            0 => rng.below(2001),
            1 => rng.below(HEAD_LEN + 4),
            // Templates with a few bytes changed and sometimes another length.
            _ => {
                let t = &templates[rng.below(templates.len())];
                garbage[..t.len().min(HEAD_LEN)].copy_from_slice(&t[..t.len().min(HEAD_LEN)]);
                for _ in 0..rng.below(3u8) {
                    let at = rng.below(48usize);
                    garbage[at] = rng.byte();
                }
                match rng.below(4u8) {
                    0 => rng.below(2001),
                    1 => t.len().saturating_sub(rng.below(4)),
                    _ => t.len(),
                }
            }
        };
        let sport = ports[rng.below(ports.len())];
        let dport = ports[rng.below(ports.len())];
        // The classifier's contract: the head holds the payload's first
        // bytes, the rest zero. Garbage past `len` must not matter.
        let mut clean = garbage;
        if len < HEAD_LEN {
            clean[len..].fill(0);
        }
        let a = classify(&garbage, len, sport, dport);
        let b = classify(&clean, len, sport, dport);
        let what = (i, len, sport, dport, &clean[..len.min(48)]);
        assert_eq!(
            a, b,
            "bytes past the length changed the result: {what:02x?}"
        );
        check_invariants(&b, &what);
        seen_app[b.app.min(2) as usize] += 1;
    }
    // The templates do reach the app signatures.
    assert!(seen_app[1] > 500 && seen_app[2] > 500, "{seen_app:?}");
}

#[test]
fn low_variety_tags_are_never_learned_or_looked_up() {
    use crate::classify::{TAG_MAX_REPEATS, tag_plausible};
    // An SNTP request: 0x1b then 47 zeros (48 bytes, a multiple of 16).
    let mut sntp = std::vec![0u8; 48];
    sntp[0] = 0x1b;
    let c = cls(&sntp);
    assert!(
        !c.tag_candidate,
        "SNTP request must not be looked up as a Telegram tag"
    );
    // The 32-byte endpoint-request form made of 0xFF only: the label, but no tag.
    let ff = [0xFFu8; 32];
    let c = cls(&ff);
    assert_eq!(c.label, LABEL_TELEGRAM_REFLECTOR);
    assert!(!c.learn_tag);
    // The bound is exact: TAG_MAX_REPEATS zeros are fine, one more is not.
    let mut h = [0u8; crate::classify::HEAD_LEN];
    for (i, b) in h.iter_mut().enumerate().take(16) {
        *b = if i < TAG_MAX_REPEATS {
            0
        } else {
            0x40 + i as u8
        };
    }
    assert!(tag_plausible(&h));
    h[TAG_MAX_REPEATS] = 0;
    assert!(!tag_plausible(&h));
    // A real tag from the corpus is plausible.
    let real = [
        0x2f, 0xe4, 0x9f, 0xa7, 0x6c, 0x4e, 0xb4, 0x33, 0xcb, 0xcd, 0x82, 0xa1, 0xbb, 0xea, 0x62,
        0x1e,
    ];
    let mut h = [0u8; crate::classify::HEAD_LEN];
    h[..16].copy_from_slice(&real);
    assert!(tag_plausible(&h));
}

// --- calls that fell back to TCP -------------------------------------------------

fn tcp_head(p: &[u8]) -> crate::classify::Class {
    crate::classify::classify_tcp(&head(p), p.len())
}

#[test]
fn tcp_fallback_signatures() {
    use crate::classify::{LABEL_STUN_TCP, LABEL_TELEGRAM_TCP};
    // Telegram's TCP reflector: the peer tag, then four zero bytes (alone,
    // or with the first framed packet behind it).
    let mut tg = TAG.to_vec();
    tg.extend_from_slice(&[0, 0, 0, 0]);
    let c = tcp_head(&tg);
    assert_eq!(
        (c.label, c.app, c.learn_tag),
        (LABEL_TELEGRAM_TCP, CAT_TELEGRAM, true)
    );
    let mut more = tg.clone();
    more.extend_from_slice(&[0x2c, 0, 0, 0, 9, 9, 9, 9]);
    assert_eq!(tcp_head(&more).label, LABEL_TELEGRAM_TCP);
    // STUN/TURN over TCP: direct (RFC 6062) and framed (RFC 4571).
    let alloc = stun(
        stun_type::ALLOCATE,
        TXID,
        &[(stun_attr::LIFETIME, &[0, 0, 2, 88])],
    );
    let c = tcp_head(&alloc);
    assert_eq!(
        (c.label, c.app, c.strength),
        (LABEL_STUN_TCP, 0, Strength::Signal)
    );
    let mut framed = (alloc.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&alloc);
    assert_eq!(tcp_head(&framed).label, LABEL_STUN_TCP);
    // Two messages in one segment, the first's length checked.
    let mut two = alloc.clone();
    two.extend_from_slice(&alloc);
    assert_eq!(tcp_head(&two).label, LABEL_STUN_TCP);
    // WhatsApp's private types 0x0800..0x0805 name WhatsApp, 0x0804/0x0805 included.
    for t in [0x0801u16, 0x0804, 0x0805] {
        let wa = raw_stun(t, &[0; 16]);
        assert_eq!(tcp_head(&wa).app, CAT_WHATSAPP, "{t:#06x} direct");
        let mut f = (wa.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&wa);
        assert_eq!(tcp_head(&f).app, CAT_WHATSAPP, "{t:#06x} framed");
    }
    // A framed length that does not match, a message longer than the
    // segment, no cookie: nothing.
    let mut bad = framed.clone();
    bad[1] ^= 4;
    assert_eq!(tcp_head(&bad), crate::classify::Class::NONE);
    assert_eq!(
        tcp_head(&alloc[..alloc.len() - 4]),
        crate::classify::Class::NONE
    );
    let mut nocookie = alloc.clone();
    nocookie[4] ^= 1;
    assert_eq!(tcp_head(&nocookie), crate::classify::Class::NONE);
}

#[test]
fn tcp_messaging_is_never_a_call() {
    let mut rng = Rng::new(0x7c9);
    let mut heads: Vec<Vec<u8>> = std::vec![
        // TLS ClientHello record (MTProto over TLS, WhatsApp web, anything).
        [
            &[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03
            ][..],
            &[0x5a; 32]
        ]
        .concat(),
        // MTProto abridged: 0xef, a length byte, then auth_key_id 0.
        [&[0xef, 0x0a][..], &[0; 8], &[0x42; 12]].concat(),
        // Intermediate and padded intermediate.
        [
            &[0xee, 0xee, 0xee, 0xee, 0x28, 0, 0, 0][..],
            &[0; 8],
            &[0x13; 12]
        ]
        .concat(),
        [
            &[0xdd, 0xdd, 0xdd, 0xdd, 0x28, 0, 0, 0][..],
            &[0; 8],
            &[0x13; 12]
        ]
        .concat(),
        // WhatsApp chat: "WA" header, then the Noise handshake.
        [&b"WA"[..], &[0x06, 0x03, 0, 0, 0x24], &[0x77; 24]].concat(),
    ];
    // Obfuscated transports: 64 random bytes (first word never one of the
    // reserved prefixes).
    for _ in 0..20_000 {
        heads.push(rng.bytes(64));
    }
    for h in &heads {
        assert_eq!(
            tcp_head(h),
            crate::classify::Class::NONE,
            "{:02x?}",
            &h[..h.len().min(24)]
        );
    }
}
