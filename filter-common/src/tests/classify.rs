//! `classify::classify` against byte-exact payloads from `pktbuild`.

use std::vec::Vec;

use super::{assert_none, cls, head};
use crate::classify::{
    Class, HEAD_LEN, LABEL_DTLS, LABEL_MAX, LABEL_NONE, LABEL_RTCP, LABEL_RTP, LABEL_STUN,
    LABEL_TURN_CHANNEL, Strength, classify, label_name,
};
use crate::pktbuild::{
    self, Rtp, channel_data, channel_data_padded, dtls_content, dtls_record, dtls_record_header,
    dtls_version, quic_short_header, rtcp, rtp, stun, stun_attr, stun_classic, stun_type,
};

const TXID: [u8; 12] = [
    0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b, 0x5c,
];

#[track_caller]
fn assert_label(payload: &[u8], label: u8, strength: Strength) -> Class {
    let c = cls(payload);
    assert_eq!(
        (c.label, c.strength),
        (label, strength),
        "payload {:02x?}",
        &payload[..payload.len().min(32)]
    );
    c
}

/// Every cut of `payload` shorter than `len` bytes is recognised as nothing.
#[track_caller]
fn assert_cuts_none(payload: &[u8], len: usize) {
    for cut in 0..len {
        assert_none(&payload[..cut]);
    }
}

#[test]
fn labels_have_names() {
    assert_eq!(label_name(LABEL_STUN), Some("stun"));
    assert_eq!(label_name(LABEL_TURN_CHANNEL), Some("turn-channel"));
    assert_eq!(label_name(LABEL_DTLS), Some("dtls"));
    assert_eq!(label_name(LABEL_RTP), Some("rtp"));
    assert_eq!(label_name(LABEL_RTCP), Some("rtcp"));
    assert_eq!(label_name(LABEL_NONE), None);
    assert_eq!(label_name(LABEL_MAX), None);
}

#[test]
fn empty_payload_is_none_whatever_the_head_holds() {
    let s = stun(stun_type::BINDING_REQUEST, TXID, &[]);
    assert_eq!(classify(&head(&s), 0, 1, 2), Class::NONE);
    assert_eq!(classify(&[0xff; HEAD_LEN], 0, 1, 2), Class::NONE);
    assert_none(b"");
}

// --- STUN ------------------------------------------------------------------------

#[test]
fn stun_binding_messages() {
    let software: &[u8] = b"flowfilter test"; // 15 bytes: padded to 16
    let xma = pktbuild::xor_address_v4([192, 0, 2, 1], 40000);
    let integrity = [0x5a; 20];
    for ty in [
        stun_type::BINDING_REQUEST,
        stun_type::BINDING_RESPONSE,
        stun_type::BINDING_ERROR,
        stun_type::BINDING_INDICATION,
    ] {
        let attr_sets: [&[(u16, &[u8])]; 3] = [
            &[],
            &[(stun_attr::XOR_MAPPED_ADDRESS, &xma)],
            &[
                (stun_attr::SOFTWARE, software),
                (stun_attr::MESSAGE_INTEGRITY, &integrity),
                (stun_attr::FINGERPRINT, &[1, 2, 3, 4]),
            ],
        ];
        for attrs in attr_sets {
            let m = stun(ty, TXID, attrs);
            let c = assert_label(&m, LABEL_STUN, Strength::Signal);
            assert!(!c.turn, "type {ty:#06x} is not TURN");
            assert_eq!((c.app, c.ssrc, c.seq), (0, 0, 0));
        }
    }
}

#[test]
fn stun_longer_than_the_head() {
    let big = [0x61u8; 400];
    let m = stun(
        stun_type::BINDING_RESPONSE,
        TXID,
        &[(stun_attr::SOFTWARE, &big)],
    );
    assert!(m.len() > HEAD_LEN);
    assert_label(&m, LABEL_STUN, Strength::Signal);
}

#[test]
fn turn_methods_set_turn() {
    let types = [
        stun_type::ALLOCATE,
        stun_type::ALLOCATE_RESPONSE,
        stun_type::ALLOCATE_ERROR,
        stun_type::REFRESH,
        0x0104, // Refresh success
        stun_type::CREATE_PERMISSION,
        0x0108, // CreatePermission success
        stun_type::CHANNEL_BIND,
        0x0109, // ChannelBind success
        0x0119, // ChannelBind error
        stun_type::SEND_INDICATION,
        stun_type::DATA_INDICATION,
    ];
    for ty in types {
        let m = stun(ty, TXID, &[(stun_attr::LIFETIME, &[0, 0, 2, 0x58])]);
        let c = assert_label(&m, LABEL_STUN, Strength::Signal);
        assert!(c.turn, "type {ty:#06x} is a TURN method");
    }
    // Methods that are not TURN's: Binding (1), Shared Secret (2, RFC 3489),
    // 0x005, 0x00A (Connect, RFC 6062) and a method with high bits.
    for ty in [0x0001u16, 0x0002, 0x0005, 0x000a, 0x0201, 0x0203] {
        let c = assert_label(&stun(ty, TXID, &[]), LABEL_STUN, Strength::Signal);
        assert!(!c.turn, "type {ty:#06x} is not a TURN method");
    }
}

#[test]
fn stun_layout_is_exact() {
    let m = stun(
        stun_type::ALLOCATE,
        TXID,
        &[(stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])],
    );
    assert_eq!(&m[..8], &[0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42]);
    assert_eq!(&m[8..20], &TXID);
    assert_eq!(&m[20..], &[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
}

#[test]
fn stun_wrong_cookie() {
    let mut m = stun(stun_type::BINDING_REQUEST, TXID, &[]);
    for i in 4..8 {
        let mut bad = m.clone();
        bad[i] ^= 0x01;
        assert_none(&bad);
    }
    m[4..8].copy_from_slice(&[0x42, 0xa4, 0x12, 0x21]); // byte-swapped
    assert_none(&m);
}

#[test]
fn stun_length_mismatch() {
    let m = stun(
        stun_type::BINDING_REQUEST,
        TXID,
        &[(stun_attr::USERNAME, b"abcd")],
    );
    assert_label(&m, LABEL_STUN, Strength::Signal);
    // Payload longer than the message (trailing bytes).
    for extra in [1usize, 4, 8] {
        let mut longer = m.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        assert_none(&longer);
    }
    // Payload shorter than the message claims.
    assert_none(&m[..m.len() - 4]);
    assert_none(&m[..m.len() - 1]);
    // Length field off by 4 either way.
    for field in [4u16, 12] {
        let mut bad = m.clone();
        bad[2..4].copy_from_slice(&field.to_be_bytes());
        assert_none(&bad);
    }
}

#[test]
fn stun_length_not_a_multiple_of_four() {
    for msg_len in [1u16, 2, 3, 5, 6, 7] {
        let mut m = stun(stun_type::BINDING_REQUEST, TXID, &[]);
        m.resize(20 + msg_len as usize, 0);
        m[2..4].copy_from_slice(&msg_len.to_be_bytes());
        assert_none(&m);
    }
}

#[test]
fn stun_with_top_bits_set_is_not_stun() {
    let m = stun(stun_type::BINDING_REQUEST, TXID, &[]);
    // 0x40: routed to ChannelData, whose length (0 + 4) does not match 20.
    let mut b = m.clone();
    b[0] |= 0x40;
    assert_none(&b);
    // 0xC0: outside every range.
    let mut b = m.clone();
    b[0] |= 0xc0;
    assert_none(&b);
    // 0x80: routed to RTP; 80 01 .. is a valid-looking RTP header (PT 1),
    // which only flow state may confirm. Never STUN, never a signal.
    let mut b = m.clone();
    b[0] |= 0x80;
    let c = assert_label(&b, LABEL_RTP, Strength::Candidate);
    assert!(!c.turn);
}

#[test]
fn classic_rfc3489_stun_is_none() {
    let txid16 = [
        0x11, 0x22, 0x33, 0x44, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ];
    for ty in [
        stun_type::BINDING_REQUEST,
        stun_type::BINDING_RESPONSE,
        stun_type::ALLOCATE,
    ] {
        let m = stun_classic(
            ty,
            txid16,
            &[(stun_attr::MAPPED_ADDRESS, &[0, 1, 0, 80, 1, 2, 3, 4])],
        );
        assert_eq!(m.len(), 32);
        assert_eq!(&m[4..8], &txid16[..4]);
        assert_none(&m);
    }
}

#[test]
fn stun_shorter_than_its_header() {
    let m = stun(stun_type::BINDING_REQUEST, TXID, &[]);
    for cut in 0..20 {
        assert_none(&m[..cut]);
        // The whole header in the head, but a shorter length.
        assert_eq!(classify(&head(&m), cut, 1, 2), Class::NONE, "cut {cut}");
    }
    assert_label(&m, LABEL_STUN, Strength::Signal);
}

#[test]
fn zrtp_and_other_low_first_bytes_are_none() {
    // 0x08 is WhatsApp's private STUN range (tested with the signatures).
    for b0 in (4u8..=19).filter(|b| *b != 0x08) {
        let mut m = stun(stun_type::BINDING_REQUEST, TXID, &[]);
        m[0] = b0;
        assert_none(&m);
    }
}

// --- DTLS ------------------------------------------------------------------------

#[test]
fn dtls_records_every_type_and_version() {
    let types = [
        dtls_content::CHANGE_CIPHER_SPEC,
        dtls_content::ALERT,
        dtls_content::HANDSHAKE,
        dtls_content::APPLICATION_DATA,
        dtls_content::TLS12_CID,
    ];
    let versions = [
        dtls_version::DTLS_1_0,
        dtls_version::DTLS_1_2,
        dtls_version::DTLS_1_3,
    ];
    for ty in types {
        for v in versions {
            for body in [0usize, 1, 60, 115, 500] {
                let r = dtls_record(ty, v, body);
                assert_eq!(r.len(), 13 + body);
                let c = assert_label(&r, LABEL_DTLS, Strength::Signal);
                assert!(!c.turn);
            }
            // Several records in one datagram: the first one fits.
            let mut two = dtls_record(ty, v, 20);
            two.extend_from_slice(&dtls_record(dtls_content::APPLICATION_DATA, v, 40));
            assert_label(&two, LABEL_DTLS, Strength::Signal);
        }
    }
}

#[test]
fn dtls_negatives() {
    // Heartbeat (24) and every other type in the DTLS range.
    for ty in (20u8..=63).filter(|t| !matches!(t, 20..=23 | 25)) {
        assert_none(&dtls_record(ty, dtls_version::DTLS_1_2, 30));
    }
    assert_none(&dtls_record(
        dtls_content::HEARTBEAT,
        dtls_version::DTLS_1_2,
        30,
    ));
    for v in [0xfefeu16, 0xfe00, 0xfffd, 0x0303, 0x0301, 0xfdfd] {
        assert_none(&dtls_record(dtls_content::HANDSHAKE, v, 30));
    }
    // Record length overruns the datagram.
    let mut r = dtls_record(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 30);
    r[11..13].copy_from_slice(&31u16.to_be_bytes());
    assert_none(&r);
    let r = dtls_record(dtls_content::APPLICATION_DATA, dtls_version::DTLS_1_0, 30);
    assert_none(&r[..r.len() - 1]);
}

#[test]
fn dtls_shorter_than_its_header() {
    let hdr = dtls_record_header(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 0, 0, 0);
    assert_cuts_none(&hdr, 13);
    assert_label(&hdr, LABEL_DTLS, Strength::Signal);
}

#[test]
fn dtls_header_layout() {
    let h = dtls_record_header(22, 0xfefd, 1, 0x0000_0102_0304_0506, 0x1234);
    assert_eq!(h, [22, 0xfe, 0xfd, 0, 1, 1, 2, 3, 4, 5, 6, 0x12, 0x34]);
}

// --- TURN ChannelData ------------------------------------------------------------

#[test]
fn channel_data_with_padding_zero_to_three() {
    for channel in [0x4000u16, 0x4001, 0x4abc, 0x4fff] {
        for data_len in 0usize..=12 {
            let data = pktbuild::filler(data_len, 3);
            let m = channel_data_padded(channel, &data);
            assert_eq!(m.len() % 4, 0);
            let c = assert_label(&m, LABEL_TURN_CHANNEL, Strength::Candidate);
            assert!(!c.turn);
            // Every padding from 0 to 3 bytes.
            for pad in 0..=3 {
                let mut p = channel_data(channel, &data);
                p.resize(4 + data_len + pad, 0);
                assert_label(&p, LABEL_TURN_CHANNEL, Strength::Candidate);
            }
            // Four bytes of padding is too many.
            let mut p = channel_data(channel, &data);
            p.resize(4 + data_len + 4, 0);
            assert_none(&p);
        }
    }
}

#[test]
fn channel_data_overrun_and_short() {
    let m = channel_data(0x4000, &[9; 40]);
    assert_label(&m, LABEL_TURN_CHANNEL, Strength::Candidate);
    assert_none(&m[..m.len() - 1]);
    let mut bad = m.clone();
    bad[2..4].copy_from_slice(&41u16.to_be_bytes());
    assert_none(&bad);
    let empty = channel_data(0x4000, &[]);
    assert_cuts_none(&empty, 4);
    assert_label(&empty, LABEL_TURN_CHANNEL, Strength::Candidate);
}

#[test]
fn channel_numbers_outside_64_to_79_are_not_channel_data() {
    for b0 in 0x50u8..=0x7f {
        let m = channel_data(u16::from_be_bytes([b0, 0]), &[1, 2, 3, 4]);
        assert_none(&m);
    }
}

// --- RTP / RTCP --------------------------------------------------------------------

#[test]
fn rtp_payload_type_ranges() {
    for pt in 0u8..=127 {
        let valid = pt <= 34 || pt >= 96;
        for marker in [false, true] {
            let p = Rtp::new(pt, 1000, 160, 0x1122_3344)
                .marker(marker)
                .payload(&[0xaa; 160])
                .build();
            let c = cls(&p);
            if valid {
                assert_eq!(
                    (c.label, c.strength),
                    (LABEL_RTP, Strength::Candidate),
                    "PT {pt}"
                );
                assert_eq!((c.ssrc, c.seq), (0x1122_3344, 1000));
            } else {
                assert_eq!(c, Class::NONE, "PT {pt} marker {marker}");
            }
        }
    }
}

#[test]
fn rtp_fields_and_layout() {
    let p = rtp(111, 0xfffe, 0x0102_0304, 0xdead_beef, 20);
    assert_eq!(
        &p[..12],
        &[0x80, 111, 0xff, 0xfe, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef]
    );
    assert_eq!(p.len(), 32);
    let c = assert_label(&p, LABEL_RTP, Strength::Candidate);
    assert_eq!(
        (c.ssrc, c.seq, c.turn, c.app),
        (0xdead_beef, 0xfffe, false, 0)
    );
    // A header with no payload is still RTP.
    assert_label(&rtp(0, 1, 2, 3, 0), LABEL_RTP, Strength::Candidate);
    // RTP padding does not matter.
    assert_label(
        &Rtp::new(96, 1, 1, 1).payload(&[1; 10]).padding(4).build(),
        LABEL_RTP,
        Strength::Candidate,
    );
}

#[test]
fn rtp_csrc_count() {
    for cc in 0usize..=15 {
        let csrcs: Vec<u32> = (0..cc as u32).map(|i| 0x1000 + i).collect();
        let p = Rtp::new(8, 5, 5, 77).csrcs(&csrcs).build();
        assert_eq!(p.len(), 12 + 4 * cc);
        assert_eq!(p[0] & 0x0f, cc as u8);
        let c = assert_label(&p, LABEL_RTP, Strength::Candidate);
        assert_eq!(c.ssrc, 77);
        if cc > 0 {
            // One byte short of the CSRC list.
            assert_none(&p[..p.len() - 1]);
        }
    }
}

#[test]
fn rtp_header_extension() {
    for cc in [0usize, 3, 15] {
        let csrcs: Vec<u32> = (0..cc as u32).collect();
        for ext_len in [0usize, 4, 8, 40] {
            let base = Rtp::new(96, 9, 9, 9)
                .csrcs(&csrcs)
                .extension(0xbede, &pktbuild::filler(ext_len, 1));
            let p = base.clone().build();
            let hdr = 12 + 4 * cc + 4 + ext_len;
            assert_eq!(p.len(), hdr);
            assert_eq!(p[0] & 0x10, 0x10);
            assert_label(&p, LABEL_RTP, Strength::Candidate);
            // With payload after the extension.
            assert_label(
                &base.clone().payload(&[0; 50]).build(),
                LABEL_RTP,
                Strength::Candidate,
            );
            // Extension that overruns the packet by one word.
            let over = base
                .clone()
                .extension_len_words((ext_len / 4 + 1) as u16)
                .build();
            assert_none(&over);
            // Extension that overruns even with a payload behind it.
            let over = base
                .clone()
                .extension_len_words(0xffff)
                .payload(&[0; 50])
                .build();
            assert_none(&over);
            // Cut inside the extension data or its 4-byte header.
            for cut in (12 + 4 * cc)..hdr {
                assert_none(&p[..cut]);
            }
        }
    }
}

#[test]
fn rtp_shorter_than_its_header() {
    let p = rtp(0, 1, 2, 3, 0);
    assert_cuts_none(&p, 12);
}

#[test]
fn rtcp_packet_types() {
    for pt in 200u8..=207 {
        let p = rtcp(pt, 1, 0xcafe_f00d, &[0x11; 24]);
        assert_eq!(p.len(), 32);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 7);
        let c = assert_label(&p, LABEL_RTCP, Strength::Candidate);
        assert_eq!((c.ssrc, c.seq, c.turn), (0, 0, false));
        // Compound: a second packet after the first.
        let mut compound = p.clone();
        compound.extend_from_slice(&rtcp(202, 1, 1, b"\x01\x04abcd"));
        assert_label(&compound, LABEL_RTCP, Strength::Candidate);
        // Length field overruns the datagram.
        assert_none(&p[..p.len() - 1]);
        let mut bad = p.clone();
        bad[2..4].copy_from_slice(&8u16.to_be_bytes());
        assert_none(&bad);
    }
    // Just outside: 199 and 208 are RTP with the marker bit and PT 71 / 80.
    for b1 in [199u8, 208] {
        let mut p = rtcp(200, 0, 1, &[0; 24]);
        p[1] = b1;
        assert_none(&p);
    }
}

#[test]
fn rtcp_shorter_than_its_header() {
    let rr = rtcp(201, 0, 0x0102_0304, &[]);
    assert_eq!(rr, [0x80, 201, 0, 1, 1, 2, 3, 4]);
    assert_cuts_none(&rr, 8);
    assert_label(&rr, LABEL_RTCP, Strength::Candidate);
}

// --- QUIC and other traffic that must keep flowing -------------------------------

#[test]
fn quic_short_header_looks_like_channel_data_when_its_bytes_align() {
    // QUIC short headers with the spin bit and high reserved bit clear have
    // b0 0x40..=0x4F, which RFC 7983 also gives to TURN ChannelData. Bytes 2..4
    // are connection-id bytes; when they happen to equal the payload length
    // minus 4 (up to 3 more), the packet is a ChannelData *candidate*. That is
    // why ChannelData marks a flow only after TURN was seen on it.
    for flags in 0u8..=0x0f {
        let payload = [0x99u8; 30];
        let total = 1 + 8 + 1 + payload.len();
        let len_bytes = ((total - 4) as u16).to_be_bytes();
        let dcid = [
            0x11,
            len_bytes[0],
            len_bytes[1],
            0x44,
            0x55,
            0x66,
            0x77,
            0x88,
        ];
        let q = quic_short_header(flags, &dcid, &[0x01], &payload);
        assert_eq!(q.len(), total);
        assert_eq!(q[0], 0x40 | flags);
        let c = assert_label(&q, LABEL_TURN_CHANNEL, Strength::Candidate);
        assert!(!c.turn);
        // With ordinary connection-id bytes it is nothing.
        let q = quic_short_header(
            flags,
            &[0x8f, 0x3e, 0x71, 0x0a, 0, 1, 2, 3],
            &[0x01],
            &payload,
        );
        assert_none(&q);
    }
}

#[test]
fn quic_outside_the_channel_range_is_none() {
    let payload = [0u8; 30];
    // Spin bit or the high reserved bit set: b0 0x50..=0x7F.
    for flags in 0x10u8..=0x3f {
        // Even with aligned length bytes.
        let dcid = [0x11, 0x00, 0x1c, 0, 0, 0, 0, 0];
        let q = quic_short_header(flags, &dcid, &[1], &payload);
        assert!(q[0] >= 0x50 && q[0] <= 0x7f);
        assert_none(&q);
    }
    // Long headers: 0xC0..=0xFF with a version.
    let mut initial = std::vec![0xc3, 0, 0, 0, 1, 8];
    initial.extend_from_slice(&[0; 1200]);
    assert_none(&initial);
}

#[test]
fn other_common_payloads_are_none() {
    // DNS query, NTP client request, WireGuard handshake initiation.
    let dns = [
        0x02, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
    ];
    // DNS ids 0..=3 in the high byte route to STUN, which then checks the cookie.
    assert_none(&dns);
    let mut ntp = [0u8; 48];
    ntp[0] = 0x23; // LI 0, VN 4, mode 3: in the DTLS range, not a DTLS type
    assert_none(&ntp);
    let mut wg = [0u8; 148];
    wg[0] = 1; // STUN range, no cookie
    assert_none(&wg);
}
