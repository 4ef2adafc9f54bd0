//! The packet builder itself: layouts, lengths and checksums, checked
//! against known vectors and by re-summing, independently of the parser.

use crate::pktbuild::{
    self, Builder, ETH_MIN_FRAME, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Rtp, TPID_QINQ,
    TPID_VLAN, channel_data, channel_data_padded, internet_checksum, proto, quic_short_header,
    rtcp, stun, stun_classic, xor_address_v4, xor_address_v6,
};

const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [91, 108, 4, 1];
const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Sum of the pseudo-header and the upper-layer bytes: 0 when the checksum
/// inside them is right.
fn l4_sum_v4(frame: &[u8], l3: usize, l4: usize, proto: u8) -> u16 {
    let seg = &frame[l4..];
    let len = (seg.len() as u16).to_be_bytes();
    let ph = [
        frame[l3 + 12],
        frame[l3 + 13],
        frame[l3 + 14],
        frame[l3 + 15],
        frame[l3 + 16],
        frame[l3 + 17],
        frame[l3 + 18],
        frame[l3 + 19],
        0,
        proto,
        len[0],
        len[1],
    ];
    internet_checksum(&[&ph, seg])
}

fn l4_sum_v6(frame: &[u8], l3: usize, l4: usize, next: u8) -> u16 {
    let seg = &frame[l4..];
    let mut ph = [0u8; 40];
    ph[..32].copy_from_slice(&frame[l3 + 8..l3 + 40]);
    ph[32..36].copy_from_slice(&(seg.len() as u32).to_be_bytes());
    ph[39] = next;
    internet_checksum(&[&ph, seg])
}

#[test]
fn internet_checksum_known_vectors() {
    // RFC 1071 §3 example: sum ddf2, checksum 220d.
    assert_eq!(
        internet_checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
        0x220d
    );
    // Split at an odd boundary: the same.
    assert_eq!(
        internet_checksum(&[&[0x00, 0x01, 0xf2], &[0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
        0x220d
    );
    // An odd trailing byte is padded with zero.
    assert_eq!(internet_checksum(&[&[0x01]]), 0xfeff);
    assert_eq!(internet_checksum(&[]), 0xffff);
}

#[test]
fn ipv4_header_matches_a_known_header() {
    // The classic example header: 45 00 00 73 00 00 40 00 40 11 b8 61
    // c0 a8 00 01 c0 a8 00 c7.
    let f = Builder::new()
        .ipv4([192, 168, 0, 1], [192, 168, 0, 199])
        .ipv4_id(0)
        .dont_fragment()
        .udp(1, 2, &[0; 115 - 28])
        .build();
    assert_eq!(
        &f[14..34],
        &[
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7
        ]
    );
}

#[test]
fn udp4_layout_lengths_and_checksums() {
    let payload = b"hello, media";
    let f = pktbuild::udp4(A4, 5000, B4, 3478, payload);
    assert_eq!(f.len(), 14 + 20 + 8 + payload.len());
    assert_eq!(&f[..6], &pktbuild::DEFAULT_DST_MAC);
    assert_eq!(&f[6..12], &pktbuild::DEFAULT_SRC_MAC);
    assert_eq!(be16(&f, 12), ETHERTYPE_IPV4);
    assert_eq!(f[14], 0x45);
    assert_eq!(usize::from(be16(&f, 16)), 20 + 8 + payload.len());
    assert_eq!(f[14 + 9], proto::UDP);
    assert_eq!(&f[26..30], &A4);
    assert_eq!(&f[30..34], &B4);
    assert_eq!(internet_checksum(&[&f[14..34]]), 0, "IPv4 header checksum");
    assert_eq!((be16(&f, 34), be16(&f, 36)), (5000, 3478));
    assert_eq!(usize::from(be16(&f, 38)), 8 + payload.len());
    assert_ne!(
        be16(&f, 40),
        0,
        "the builder fills the optional v4 UDP checksum"
    );
    assert_eq!(l4_sum_v4(&f, 14, 34, proto::UDP), 0, "UDP checksum");
    assert_eq!(&f[42..], payload);
}

#[test]
fn udp6_layout_lengths_and_checksum() {
    let payload = b"odd-length payload!";
    let f = pktbuild::udp6(A6, 5000, B6, 3478, payload);
    assert_eq!(f.len(), 14 + 40 + 8 + payload.len());
    assert_eq!(be16(&f, 12), ETHERTYPE_IPV6);
    assert_eq!(f[14] >> 4, 6);
    assert_eq!(usize::from(be16(&f, 18)), 8 + payload.len());
    assert_eq!(f[20], proto::UDP);
    assert_eq!(f[21], 64, "hop limit");
    assert_eq!(&f[22..38], &A6);
    assert_eq!(&f[38..54], &B6);
    assert_ne!(be16(&f, 60), 0, "UDP over IPv6 needs a checksum");
    assert_eq!(l4_sum_v6(&f, 14, 54, proto::UDP), 0);
}

#[test]
fn tcp_and_icmp_checksums() {
    let f = pktbuild::tcp4(A4, 443, B4, 50000, b"GET / HTTP/1.1\r\n");
    assert_eq!(f[14 + 9], proto::TCP);
    assert_eq!(f[34 + 12] >> 4, 5, "data offset");
    assert_eq!(
        f[34 + 13],
        pktbuild::tcp_flags::ACK | pktbuild::tcp_flags::PSH
    );
    assert_eq!(l4_sum_v4(&f, 14, 34, proto::TCP), 0);
    let f = pktbuild::tcp6(A6, 443, B6, 50000, b"x");
    assert_eq!(l4_sum_v6(&f, 14, 54, proto::TCP), 0);
    let syn = Builder::new()
        .ipv4(A4, B4)
        .tcp(1, 2, b"")
        .tcp_flags(pktbuild::tcp_flags::SYN)
        .tcp_seq(0x0102_0304)
        .build();
    assert_eq!(&syn[38..42], &[1, 2, 3, 4]);
    assert_eq!(syn[47], pktbuild::tcp_flags::SYN);
    assert_eq!(&syn[42..46], &[0, 0, 0, 0], "no ACK number without ACK");

    let f = Builder::new()
        .ipv4(A4, B4)
        .icmp(8, 0, &[0, 1, 0, 2, 9, 9, 9])
        .build();
    assert_eq!(f[14 + 9], proto::ICMP);
    assert_eq!(
        internet_checksum(&[&f[34..]]),
        0,
        "ICMP has no pseudo-header"
    );
    let f = Builder::new()
        .ipv6(A6, B6)
        .icmp(128, 0, &[0, 1, 0, 2])
        .build();
    assert_eq!(f[20], proto::ICMPV6);
    assert_eq!(l4_sum_v6(&f, 14, 54, proto::ICMPV6), 0);
}

#[test]
fn udp_checksum_over_extension_headers_uses_the_upper_protocol() {
    let fr = Builder::new()
        .ipv6(A6, B6)
        .v6_ext(proto::HOP_BY_HOP, 8)
        .v6_ext(proto::DEST_OPTS, 8)
        .udp(5000, 3478, b"abc")
        .build_frame();
    assert_eq!(l4_sum_v6(&fr.bytes, 14, fr.l4_off, proto::UDP), 0);
}

#[test]
fn a_computed_zero_udp_checksum_is_sent_as_ones() {
    let found = (0..=u16::MAX).find_map(|w| {
        let f = pktbuild::udp6(A6, 1, B6, 2, &w.to_be_bytes());
        (be16(&f, 60) == 0xffff).then_some(f)
    });
    let f = found.expect("some payload word makes the sum all ones");
    assert_eq!(l4_sum_v6(&f, 14, 54, proto::UDP), 0);
    // An explicit zero stays zero.
    let f = Builder::new()
        .ipv4(A4, B4)
        .udp(1, 2, b"x")
        .udp_checksum(0)
        .build();
    assert_eq!(be16(&f, 40), 0);
}

#[test]
fn vlan_tags_are_written_outermost_first() {
    let f = Builder::new()
        .qinq(0x123)
        .vlan(0x0456)
        .tag(TPID_VLAN, 0xf789)
        .ipv4(A4, B4)
        .udp(1, 2, b"")
        .build();
    assert_eq!(be16(&f, 12), TPID_QINQ);
    assert_eq!(be16(&f, 14), 0x123);
    assert_eq!(be16(&f, 16), TPID_VLAN);
    assert_eq!(be16(&f, 18), 0x456);
    assert_eq!(be16(&f, 20), TPID_VLAN);
    assert_eq!(be16(&f, 22), 0xf789, "tag() writes the TCI verbatim");
    assert_eq!(be16(&f, 24), ETHERTYPE_IPV4);
    assert_eq!(f[26], 0x45);
    // vlan() keeps only the 12-bit id.
    let f = Builder::new().vlan(0xffff).ipv4(A4, B4).build();
    assert_eq!(be16(&f, 14), 0x0fff);
}

#[test]
fn ipv4_options_fragments_and_overrides() {
    let fr = Builder::new()
        .ipv4(A4, B4)
        .ipv4_options(&[0x94, 0x04, 0, 0, 1]) // router alert + NOP, padded to 8
        .ipv4_id(0xabcd)
        .ipv4_fragment(0x123, true)
        .ttl(3)
        .tos(0xb8)
        .udp(1, 2, b"12")
        .build_frame();
    let f = &fr.bytes;
    assert_eq!(f[14], 0x47);
    assert_eq!(f[15], 0xb8);
    assert_eq!(&f[34..42], &[0x94, 0x04, 0, 0, 1, 0, 0, 0]);
    assert_eq!(be16(f, 16), 28 + 8 + 2);
    assert_eq!(be16(f, 18), 0xabcd);
    assert_eq!(be16(f, 20), 0x2000 | 0x123);
    assert_eq!(f[22], 3);
    assert_eq!(internet_checksum(&[&f[14..42]]), 0);
    assert_eq!(
        (fr.l3_off, fr.l4_off, fr.payload_off, fr.payload_len),
        (14, 42, 50, 2)
    );
    assert_eq!(fr.l3_end, f.len());

    // Overrides write the field verbatim and keep the header checksum right.
    let f = Builder::new()
        .ipv4(A4, B4)
        .ihl(3)
        .total_len(999)
        .ip_version(5)
        .udp(1, 2, b"")
        .udp_len(4)
        .build();
    assert_eq!(f[14], 0x53);
    assert_eq!(be16(&f, 16), 999);
    assert_eq!(be16(&f, 38), 4);
    assert_eq!(f.len(), 14 + 20 + 8, "the bytes emitted do not change");
    assert_eq!(internet_checksum(&[&f[14..34]]), 0);
    let f = Builder::new().ipv4(A4, B4).ipv4_checksum(0xbeef).build();
    assert_eq!(be16(&f, 24), 0xbeef);
}

#[test]
fn ipv6_extension_headers_chain_and_lengths() {
    let fr = Builder::new()
        .ipv6(A6, B6)
        .flow_label(0xabcde)
        .tos(0x2e)
        .v6_ext(proto::HOP_BY_HOP, 16)
        .v6_ext(proto::ROUTING, 8)
        .v6_ext(proto::AH, 24)
        .v6_fragment(0x10, true, 0x0102_0304)
        .v6_ext(proto::DEST_OPTS, 8)
        .udp(7, 8, b"z")
        .build_frame();
    let f = &fr.bytes;
    assert_eq!(
        u32::from_be_bytes([f[14], f[15], f[16], f[17]]),
        (6 << 28) | (0x2e << 20) | 0xabcde
    );
    assert_eq!(f[20], proto::HOP_BY_HOP);
    let e = 54;
    // Hop-by-hop: 16 bytes, length 1, one PadN over 14 bytes.
    assert_eq!(&f[e..e + 4], &[proto::ROUTING, 1, 1, 12]);
    // Routing: 8 bytes, length 0.
    assert_eq!(&f[e + 16..e + 18], &[proto::AH, 0]);
    // AH: 24 bytes, length 24 / 4 - 2 = 4.
    assert_eq!(&f[e + 24..e + 26], &[proto::FRAGMENT, 4]);
    // Fragment: offset 0x10 in 8-byte units, M, id.
    assert_eq!(
        &f[e + 48..e + 56],
        &[proto::DEST_OPTS, 0, 0x00, 0x81, 1, 2, 3, 4]
    );
    // Destination options: 8 bytes, length 0, PadN over 4 bytes.
    assert_eq!(&f[e + 56..e + 60], &[proto::UDP, 0, 1, 4]);
    assert_eq!(fr.l4_off, e + 64);
    assert_eq!(usize::from(be16(f, 18)), 64 + 8 + 1);
    assert_eq!(fr.payload_off, e + 72);

    // A raw header keeps its bytes except the next-header field.
    let f = Builder::new()
        .ipv6(A6, B6)
        .v6_ext_raw(135, &[0xee, 0xff, 1, 2])
        .build();
    assert_eq!(f[20], 135);
    assert_eq!(&f[54..58], &[proto::NO_NEXT_HEADER, 0xff, 1, 2]);
    let f = Builder::new()
        .ipv6(A6, B6)
        .ipv6_payload_len(7)
        .ip_version(4)
        .build();
    assert_eq!(be16(&f, 18), 7);
    assert_eq!(f[14] >> 4, 4);
}

#[test]
fn padding_and_trailer() {
    let fr = Builder::new()
        .ipv4(A4, B4)
        .udp(1, 2, b"")
        .trailer(&[0xaa, 0xbb])
        .pad_to(ETH_MIN_FRAME)
        .build_frame();
    assert_eq!(fr.bytes.len(), 60);
    assert_eq!(fr.l3_end, 42);
    assert_eq!(&fr.bytes[42..44], &[0xaa, 0xbb]);
    assert!(fr.bytes[44..].iter().all(|&b| b == 0));
    assert_eq!(be16(&fr.bytes, 16), 28, "padding is not in the IP length");
    // Padding never shortens.
    let f = Builder::new()
        .ipv4(A4, B4)
        .udp(1, 2, &[1; 100])
        .pad_to(60)
        .build();
    assert_eq!(f.len(), 14 + 28 + 100);
}

#[test]
fn arp_request_layout() {
    let f = pktbuild::arp_request([2, 0, 0, 0, 0, 9], A4, B4);
    assert_eq!(f.len(), ETH_MIN_FRAME);
    assert_eq!(&f[..6], &[0xff; 6]);
    assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 9]);
    assert_eq!(be16(&f, 12), ETHERTYPE_ARP);
    assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
    assert_eq!(&f[28..32], &A4);
    assert_eq!(&f[38..42], &B4);
}

#[test]
#[should_panic(expected = "call ipv4, ipv6 or non_ip")]
fn building_without_a_network_layer_panics() {
    let _ = Builder::new().udp(1, 2, b"").build();
}

#[test]
fn stun_pads_attributes() {
    let m = stun(0x0001, [1; 12], &[(0x0006, b"alice"), (0x8022, b"")]);
    assert_eq!(m.len(), 20 + 4 + 8 + 4);
    assert_eq!(be16(&m, 2), 16);
    assert_eq!(
        &m[20..32],
        &[0, 6, 0, 5, b'a', b'l', b'i', b'c', b'e', 0, 0, 0]
    );
    assert_eq!(&m[32..36], &[0x80, 0x22, 0, 0]);
    let c = stun_classic(0x0001, [7; 16], &[(0x0006, b"ab")]);
    assert_eq!(c.len(), 20 + 8);
    assert_eq!(&c[4..20], &[7; 16]);
    assert_eq!(be16(&c, 2), 8);
}

#[test]
fn xor_addresses() {
    assert_eq!(
        xor_address_v4([192, 0, 2, 1], 40000),
        [0, 1, 0xbd, 0x52, 0xe1, 0x12, 0xa6, 0x43]
    );
    let txid = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    let v = xor_address_v6(A6, 40000, txid);
    assert_eq!(&v[..4], &[0, 2, 0xbd, 0x52]);
    assert_eq!(
        &v[4..8],
        &[0x20 ^ 0x21, 0x01 ^ 0x12, 0x0d ^ 0xa4, 0xb8 ^ 0x42]
    );
    for i in 0..12 {
        assert_eq!(v[8 + i], A6[4 + i] ^ txid[i]);
    }
}

#[test]
fn rtp_builder_layout() {
    let p = Rtp::new(0xff, 0x0102, 0x0304_0506, 0x0708_090a)
        .marker(true)
        .csrcs(&[0xaabb_ccdd])
        .extension(0xbede, &[1, 2, 3, 4, 5])
        .payload(&[9, 9])
        .padding(3)
        .build();
    assert_eq!(p[0], 0x80 | 0x20 | 0x10 | 1);
    assert_eq!(p[1], 0x80 | 0x7f);
    assert_eq!(&p[2..12], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(&p[12..16], &[0xaa, 0xbb, 0xcc, 0xdd]);
    assert_eq!(&p[16..20], &[0xbe, 0xde, 0, 2]);
    assert_eq!(&p[20..28], &[1, 2, 3, 4, 5, 0, 0, 0]);
    assert_eq!(&p[28..], &[9, 9, 0, 0, 3]);
    let p = Rtp::new(96, 0, 0, 0)
        .extension(1, &[])
        .extension_len_words(9)
        .build();
    assert_eq!(&p[12..16], &[0, 1, 0, 9]);
    assert_eq!(p.len(), 16);
    let p = pktbuild::rtp(8, 300, 0, 1, 17);
    assert_eq!(p.len(), 29);
    assert_eq!(p[1], 8);
}

#[test]
fn rtcp_channel_data_quic_layouts() {
    let r = rtcp(203, 2, 0x0102_0304, &[5, 6, 7, 8, 9]);
    assert_eq!(r, [0x82, 203, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0]);
    assert_eq!(
        channel_data(0x4001, b"abc"),
        [0x40, 0x01, 0, 3, b'a', b'b', b'c']
    );
    assert_eq!(
        channel_data_padded(0x4001, b"abc"),
        [0x40, 0x01, 0, 3, b'a', b'b', b'c', 0]
    );
    assert_eq!(channel_data_padded(0x4fff, b"abcd").len(), 8);
    assert_eq!(
        quic_short_header(0xff, &[1, 2], &[0x33], &[4]),
        [0x7f, 1, 2, 0x33, 4],
        "flags keep the header form 0 and the fixed bit 1"
    );
    let d = pktbuild::dtls_record(22, 0xfefd, 3);
    assert_eq!(&d[..13], &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    assert_eq!(d.len(), 16);
}

#[test]
fn stun_raw_reflector_and_tgcalls_layouts() {
    use crate::pktbuild::{TGCALLS_PREFIX, stun_raw, tg_reflector, tgcalls_data};
    let m = stun_raw(0x0801, [7; 12], &[1, 2, 3]);
    assert_eq!(m.len(), 23);
    assert_eq!(be16(&m, 0), 0x0801);
    assert_eq!(be16(&m, 2), 3, "length counts the body exactly, no padding");
    assert_eq!(&m[4..8], &[0x21, 0x12, 0xa4, 0x42]);
    assert_eq!(&m[8..20], &[7; 12]);
    assert_eq!(&m[20..], &[1, 2, 3]);

    let r = tg_reflector([5; 16], [0xfe, 0xff, 0xff, 0xff], 40);
    assert_eq!(r.len(), 40);
    assert_eq!(&r[..16], &[5; 16]);
    assert_eq!(&r[16..28], &[0xff; 12]);
    assert_eq!(&r[28..32], &[0xfe, 0xff, 0xff, 0xff]);
    assert_eq!(
        tg_reflector([5; 16], [0xff; 4], 20).len(),
        20,
        "cut when short"
    );

    let t = tgcalls_data(TGCALLS_PREFIX, 3, &[9, 9, 9], 2);
    assert_eq!(t.len(), 12 + 8 + 4 + 3 + 2);
    assert_eq!(&t[..12], &TGCALLS_PREFIX);
    assert_eq!(
        &t[12..20],
        &[0x0a, 0x0b, 0x0c, 0x0d, 0x71, 0x72, 0x73, 0x74]
    );
    assert_eq!(&t[20..24], &[0, 0, 0, 3]);
    assert_eq!(&t[24..], &[9, 9, 9, 0, 0]);
}
