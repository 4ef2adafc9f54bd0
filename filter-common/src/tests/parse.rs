//! `parse::parse_frame` over every supported shape, every malformation and
//! every truncation point.

use std::vec::Vec;

use super::ip;
use crate::parse::{
    Fragment, MAX_V6_EXT_HEADERS, MAX_VLAN_TAGS, Malformed, PROTO_TCP, PROTO_UDP, Parsed, flow_key,
    parse_frame, v4_mapped,
};
use crate::pktbuild::{self, Builder, ETH_MIN_FRAME, proto};
use crate::types::FlowKey;

const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [91, 108, 4, 1];
const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [
    0x2a, 0x03, 0x28, 0x80, 0xf0, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x34, 0x78,
];
const PAYLOAD: &[u8] = b"0123456789abcdefghij";

fn malformed(frame: &[u8]) -> Malformed {
    match parse_frame(frame) {
        Parsed::Malformed(m) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// A frame whose transport the parser could not reach: it must still give
/// the addresses, and nothing else.
fn hidden<P: crate::parse::PacketBytes + ?Sized>(frame: &P) -> crate::parse::Packet {
    match parse_frame(frame) {
        Parsed::Hidden(p) => p,
        other => panic!("expected Hidden, got {other:?}"),
    }
}

fn assert_hidden_v6(p: &crate::parse::Packet, what: &str) {
    assert!(p.is_v6, "{what}");
    assert_eq!((p.src, p.dst), (A6, B6), "{what}: addresses");
    assert_eq!(p.proto, 0, "{what}: no transport");
    assert_eq!((p.sport, p.dport, p.payload_len), (0, 0, 0), "{what}");
    assert_eq!(p.frag, Fragment::None, "{what}");
}

/// A reader that, like the XDP program, loads headers only up to `limit`.
struct Bounded<'a> {
    bytes: &'a [u8],
    limit: usize,
}

impl crate::parse::PacketBytes for Bounded<'_> {
    fn frame_len(&self) -> usize {
        self.bytes.len()
    }

    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > self.limit {
            return None;
        }
        self.bytes.load::<N>(off)
    }
}

fn v4() -> Builder {
    Builder::new().ipv4(A4, B4)
}

fn v6() -> Builder {
    Builder::new().ipv6(A6, B6)
}

// --- Basic shapes ---------------------------------------------------------------

#[test]
fn ipv4_udp() {
    let f = pktbuild::udp4(A4, 5000, B4, 3478, PAYLOAD);
    let p = ip(&f);
    assert!(!p.is_v6);
    assert_eq!(p.src, v4_mapped(A4));
    assert_eq!(p.dst, v4_mapped(B4));
    assert_eq!(p.src_v4(), 0x0a00_0001);
    assert_eq!(p.dst_v4(), 0x5b6c_0401);
    assert_eq!(p.proto, PROTO_UDP);
    assert_eq!(p.frag, Fragment::None);
    assert_eq!((p.sport, p.dport), (5000, 3478));
    assert_eq!(p.payload_off, 14 + 20 + 8);
    assert_eq!(p.payload_len, PAYLOAD.len());
    assert_eq!(&f[p.payload_off..p.payload_off + p.payload_len], PAYLOAD);
}

#[test]
fn ipv6_udp() {
    let f = pktbuild::udp6(A6, 5000, B6, 3478, PAYLOAD);
    let p = ip(&f);
    assert!(p.is_v6);
    assert_eq!(p.src, A6);
    assert_eq!(p.dst, B6);
    assert_eq!(p.proto, PROTO_UDP);
    assert_eq!(p.frag, Fragment::None);
    assert_eq!((p.sport, p.dport), (5000, 3478));
    assert_eq!(p.payload_off, 14 + 40 + 8);
    assert_eq!(p.payload_len, PAYLOAD.len());
}

#[test]
fn ipv4_mapped_addresses() {
    let p = ip(&pktbuild::udp4(
        [192, 0, 2, 7],
        1,
        [198, 51, 100, 9],
        2,
        b"",
    ));
    let want_src = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7];
    let want_dst = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 9];
    assert_eq!(p.src, want_src);
    assert_eq!(p.dst, want_dst);
    assert_eq!(v4_mapped([192, 0, 2, 7]), want_src);
    assert_eq!(pktbuild::v4_mapped([192, 0, 2, 7]), want_src);
    assert_eq!(p.src_v4(), u32::from_be_bytes([192, 0, 2, 7]));
    assert_eq!(p.dst_v4(), u32::from_be_bytes([198, 51, 100, 9]));
}

#[test]
fn zero_length_udp_payload() {
    let p = ip(&pktbuild::udp4(A4, 5000, B4, 3478, b""));
    assert_eq!(p.payload_off, 42);
    assert_eq!(p.payload_len, 0);
    let p = ip(&pktbuild::udp6(A6, 5000, B6, 3478, b""));
    assert_eq!(p.payload_off, 62);
    assert_eq!(p.payload_len, 0);
}

#[test]
fn tcp_ports_and_payload_v4_and_v6() {
    for (f, l4) in [
        (pktbuild::tcp4(A4, 443, B4, 51000, PAYLOAD), 14 + 20),
        (pktbuild::tcp6(A6, 443, B6, 51000, PAYLOAD), 14 + 40),
    ] {
        let p = ip(&f);
        assert_eq!(p.proto, PROTO_TCP);
        assert_eq!((p.sport, p.dport), (443, 51000));
        assert_eq!(
            (p.payload_off, p.payload_len),
            (l4 + 20, PAYLOAD.len()),
            "the payload behind the 20-byte header"
        );
        assert_eq!(p.udp_len, 0);
    }
    // A data offset below 5 words or past the packet: no payload read.
    let mut f = pktbuild::tcp4(A4, 443, B4, 51000, PAYLOAD);
    f[14 + 20 + 12] = 0x40;
    assert_eq!(ip(&f).payload_len, 0);
    f[14 + 20 + 12] = 0xf0;
    assert_eq!(ip(&f).payload_len, 0);
}

#[test]
fn icmp_has_no_ports() {
    let p = ip(&v4().icmp(8, 0, &[0, 1, 0, 1, 0xaa, 0xbb]).build());
    assert_eq!(p.proto, proto::ICMP);
    assert_eq!(
        (p.sport, p.dport, p.payload_off, p.payload_len),
        (0, 0, 0, 0)
    );
    let p = ip(&v6().icmp(128, 0, &[0, 1, 0, 1]).build());
    assert!(p.is_v6);
    assert_eq!(p.proto, proto::ICMPV6);
    assert_eq!(
        (p.sport, p.dport, p.payload_off, p.payload_len),
        (0, 0, 0, 0)
    );
}

#[test]
fn unknown_protocol_and_no_next_header() {
    let p = ip(&v4().raw(132, &[1, 2, 3, 4, 5, 6, 7, 8]).build());
    assert_eq!((p.proto, p.sport, p.dport), (132, 0, 0));
    let p = ip(&v6().build());
    assert_eq!((p.proto, p.sport, p.dport), (proto::NO_NEXT_HEADER, 0, 0));
}

#[test]
fn non_ip_ethertypes() {
    let arp = pktbuild::arp_request([2, 0, 0, 0, 0, 9], A4, B4);
    assert_eq!(arp.len(), ETH_MIN_FRAME);
    assert_eq!(parse_frame(arp.as_slice()), Parsed::NonIp);
    let lldp = Builder::new().non_ip(0x88CC, &[0; 46]).build();
    assert_eq!(parse_frame(lldp.as_slice()), Parsed::NonIp);
    // A bare Ethernet header with a non-IP EtherType is still NonIp.
    let bare = Builder::new().non_ip(0x88B5, &[]).build();
    assert_eq!(bare.len(), 14);
    assert_eq!(parse_frame(bare.as_slice()), Parsed::NonIp);
    // Non-IP behind VLAN tags.
    let tagged = Builder::new()
        .qinq(5)
        .vlan(6)
        .non_ip(pktbuild::ETHERTYPE_ARP, &[0; 28])
        .build();
    assert_eq!(parse_frame(tagged.as_slice()), Parsed::NonIp);
}

// --- VLAN -------------------------------------------------------------------------

#[test]
fn vlan_tags_up_to_the_limit() {
    assert_eq!(MAX_VLAN_TAGS, 2);
    let cases: [(Builder, usize); 5] = [
        (v4().vlan(100), 1),
        (v4().qinq(100), 1),
        (v4().vlan(100).vlan(200), 2),
        (v4().qinq(100).vlan(200), 2),
        (v4().qinq(100).qinq(200), 2),
    ];
    for (b, tags) in cases {
        let fr = b.udp(5000, 3478, PAYLOAD).build_frame();
        let p = ip(&fr.bytes);
        assert_eq!((p.sport, p.dport), (5000, 3478));
        assert_eq!(p.payload_off, 42 + 4 * tags);
        assert_eq!(p.payload_off, fr.payload_off);
        assert_eq!(p.payload_len, PAYLOAD.len());
    }
    let p = ip(&v6().qinq(1).vlan(2).udp(5000, 3478, PAYLOAD).build());
    assert_eq!(p.payload_off, 62 + 8);
}

#[test]
fn too_many_vlan_tags() {
    let three = [
        v4().vlan(1).vlan(2).vlan(3),
        v4().qinq(1).vlan(2).vlan(3),
        v4().qinq(1).qinq(2).qinq(3),
        v4().vlan(1).qinq(2).vlan(3),
    ];
    for b in three {
        let f = b.udp(5000, 3478, PAYLOAD).build();
        assert_eq!(malformed(&f), Malformed::TooManyVlanTags);
    }
    let mut b = v6();
    for i in 0..8 {
        b = b.vlan(i);
    }
    let f = b.udp(1, 2, b"").build();
    assert_eq!(malformed(&f), Malformed::TooManyVlanTags);
    // The third TPID alone decides: the frame may end right after it.
    let f = v4().vlan(1).vlan(2).vlan(3).build();
    assert_eq!(malformed(&f[..14 + 8]), Malformed::TooManyVlanTags);
}

// --- IPv4 ---------------------------------------------------------------------------

#[test]
fn ipv4_options_every_ihl() {
    for ihl in 6u8..=15 {
        let opts: Vec<u8> = (0..(ihl as usize - 5) * 4).map(|_| 1).collect(); // NOPs
        let fr = v4()
            .ipv4_options(&opts)
            .udp(5000, 3478, PAYLOAD)
            .build_frame();
        assert_eq!(fr.bytes[14] & 0x0f, ihl);
        let p = ip(&fr.bytes);
        assert_eq!(p.payload_off, 14 + ihl as usize * 4 + 8, "IHL {ihl}");
        assert_eq!((p.sport, p.dport), (5000, 3478));
        assert_eq!(p.payload_len, PAYLOAD.len());
    }
}

#[test]
fn ipv4_ihl_below_five() {
    for ihl in 0u8..5 {
        let f = v4().ihl(ihl).udp(5000, 3478, PAYLOAD).build();
        assert_eq!(malformed(&f), Malformed::BadIpv4Header, "IHL {ihl}");
    }
}

#[test]
fn ipv4_ihl_beyond_the_packet() {
    // IHL 15 (60 bytes) in a 20 + 8 + 2 byte packet: total length < header.
    let f = v4().ihl(15).udp(5000, 3478, b"hi").build();
    assert_eq!(malformed(&f), Malformed::BadIpv4Header);
}

#[test]
fn ipv4_total_length_checks() {
    // Shorter than the header.
    for total in [0u16, 19] {
        let f = v4().total_len(total).udp(5000, 3478, PAYLOAD).build();
        assert_eq!(malformed(&f), Malformed::BadIpv4Header, "total {total}");
    }
    let f = v4()
        .ipv4_options(&[1; 8])
        .total_len(27)
        .udp(5000, 3478, PAYLOAD)
        .build();
    assert_eq!(malformed(&f), Malformed::BadIpv4Header);
    // Longer than the frame.
    let f = v4().total_len(20 + 8 + 21).udp(5000, 3478, PAYLOAD).build();
    assert_eq!(malformed(&f), Malformed::Truncated);
}

#[test]
fn ip_version_mismatch() {
    for version in [0u8, 5, 6, 15] {
        let f = v4().ip_version(version).udp(1, 2, PAYLOAD).build();
        assert_eq!(
            malformed(&f),
            Malformed::BadVersion,
            "v4 ethertype, version {version}"
        );
    }
    for version in [0u8, 4, 7] {
        let f = v6().ip_version(version).udp(1, 2, PAYLOAD).build();
        assert_eq!(
            malformed(&f),
            Malformed::BadVersion,
            "v6 ethertype, version {version}"
        );
    }
    // An IPv6 packet under the IPv4 EtherType.
    let f = v6()
        .ethertype(pktbuild::ETHERTYPE_IPV4)
        .udp(1, 2, PAYLOAD)
        .build();
    assert_eq!(malformed(&f), Malformed::BadVersion);
}

#[test]
fn ipv4_first_fragment() {
    // Each fragment carries the UDP header and 24 bytes.
    for (case, id, udp_len, payload_len) in [
        (
            "a 1000-byte datagram: clipped to the bytes carried",
            0xbeef,
            8 + 1000,
            24,
        ),
        ("a UDP length smaller than what it carries", 7, 8 + 10, 10),
    ] {
        let f = v4()
            .ipv4_id(id)
            .ipv4_fragment(0, true)
            .udp(5000, 3478, &[0x55; 24])
            .udp_len(udp_len)
            .build();
        let p = ip(&f);
        assert_eq!(p.frag, Fragment::First { id: id.into() }, "{case}");
        assert_eq!((p.sport, p.dport), (5000, 3478), "{case}");
        assert_eq!(p.payload_off, 42, "{case}");
        assert_eq!(p.payload_len, payload_len, "{case}");
    }
}

/// A later fragment of datagram `id` whose data starts at byte `offset`.
fn later(id: u32, offset: u16) -> Fragment {
    Fragment::Later { id, offset }
}

#[test]
fn ipv4_later_fragments() {
    for (offset, more) in [(1u16, true), (185, true), (185, false), (0x1fff, false)] {
        let f = v4()
            .ipv4_id(0x0102)
            .ipv4_fragment(offset, more)
            .raw(proto::UDP, &[0xc8; 40])
            .build();
        let p = ip(&f);
        assert_eq!(
            p.frag,
            later(0x0102, offset << 3),
            "offset {offset} more {more}"
        );
        assert_eq!(p.proto, PROTO_UDP);
        assert_eq!((p.sport, p.dport), (0, 0));
        // Its data: right after the IPv4 header, all 40 bytes.
        assert_eq!((p.payload_off, p.payload_len), (14 + 20, 40));
    }
    // A later fragment too short to hold a UDP header is fine: none is read.
    let p = ip(&v4().ipv4_fragment(3, false).raw(proto::UDP, &[1]).build());
    assert_eq!(p.frag, later(0x1234, 24));
    assert_eq!(p.payload_len, 1);
}

#[test]
fn ipv4_dont_fragment_is_not_a_fragment() {
    let p = ip(&v4().dont_fragment().udp(1, 2, PAYLOAD).build());
    assert_eq!(p.frag, Fragment::None);
    assert_eq!(p.payload_len, PAYLOAD.len());
}

#[test]
fn ethernet_padding_after_short_ipv4() {
    let fr = v4()
        .udp(5000, 3478, b"ab")
        .pad_to(ETH_MIN_FRAME)
        .build_frame();
    assert_eq!(fr.bytes.len(), 60);
    assert_eq!(fr.l3_end, 14 + 20 + 8 + 2);
    let p = ip(&fr.bytes);
    assert_eq!(p.payload_len, 2, "from the UDP length, not the frame");
    // Non-zero trailer bytes change nothing either.
    let f = v4().udp(5000, 3478, b"ab").trailer(&[0xff; 30]).build();
    assert_eq!(ip(&f).payload_len, 2);
    // IPv6 likewise.
    let f = v6().udp(5000, 3478, b"").trailer(&[0xee; 9]).build();
    assert_eq!(ip(&f).payload_len, 0);
}

// --- UDP length -------------------------------------------------------------------

#[test]
fn udp_length_below_eight() {
    for len in 0u16..8 {
        let f = v4().udp(5000, 3478, PAYLOAD).udp_len(len).build();
        assert_eq!(
            malformed(&f),
            Malformed::BadUdpLength,
            "v4 UDP length {len}"
        );
        let f = v6().udp(5000, 3478, PAYLOAD).udp_len(len).build();
        assert_eq!(
            malformed(&f),
            Malformed::BadUdpLength,
            "v6 UDP length {len}"
        );
    }
}

#[test]
fn udp_length_beyond_the_ip_payload() {
    let over = (8 + PAYLOAD.len() + 1) as u16;
    let f = v4().udp(5000, 3478, PAYLOAD).udp_len(over).build();
    assert_eq!(malformed(&f), Malformed::BadUdpLength);
    let f = v6().udp(5000, 3478, PAYLOAD).udp_len(over).build();
    assert_eq!(malformed(&f), Malformed::BadUdpLength);
    // Bytes in the frame beyond the IP packet do not count as carried.
    let f = v4()
        .udp(5000, 3478, PAYLOAD)
        .udp_len(over)
        .trailer(&[0; 16])
        .build();
    assert_eq!(malformed(&f), Malformed::BadUdpLength);
}

#[test]
fn udp_length_shorter_than_carried() {
    let f = v4().udp(5000, 3478, PAYLOAD).udp_len(8 + 5).build();
    assert_eq!(ip(&f).payload_len, 5);
    let f = v6().udp(5000, 3478, PAYLOAD).udp_len(8).build();
    assert_eq!(ip(&f).payload_len, 0);
}

// --- IPv6 extension headers -------------------------------------------------------

#[test]
fn ipv6_each_extension_header() {
    let cases: [(u8, &[usize]); 4] = [
        (proto::HOP_BY_HOP, &[8, 24]),
        (proto::ROUTING, &[8, 40]),
        (proto::DEST_OPTS, &[8, 16]),
        (proto::AH, &[12, 16, 28]),
    ];
    for (kind, lens) in cases {
        for &len in lens {
            let fr = v6()
                .v6_ext(kind, len)
                .udp(5000, 3478, PAYLOAD)
                .build_frame();
            let p = ip(&fr.bytes);
            assert_eq!(p.proto, PROTO_UDP);
            assert_eq!(p.frag, Fragment::None);
            assert_eq!((p.sport, p.dport), (5000, 3478), "kind {kind} len {len}");
            assert_eq!(p.payload_off, 14 + 40 + len + 8, "kind {kind} len {len}");
            assert_eq!(p.payload_len, PAYLOAD.len());
        }
    }
}

#[test]
fn ipv6_ah_length_is_in_four_byte_units() {
    // AH of 12 bytes: length field 1. Read in 8-byte units it would be 16.
    let f = v6().v6_ext(proto::AH, 12).udp(5000, 3478, PAYLOAD).build();
    assert_eq!(f[14 + 40 + 1], 1);
    assert_eq!(ip(&f).payload_off, 14 + 40 + 12 + 8);
}

#[test]
fn ipv6_atomic_fragment_is_not_a_fragment() {
    let p = ip(&v6()
        .v6_fragment(0, false, 99)
        .udp(5000, 3478, PAYLOAD)
        .build());
    assert_eq!(p.frag, Fragment::None);
    assert_eq!(p.payload_off, 14 + 40 + 8 + 8);
    assert_eq!(p.payload_len, PAYLOAD.len());
}

/// A chain of `n` extension headers of every kind in turn (the fragment
/// header atomic so the UDP header is still parsed), and its total length.
fn chain(n: usize) -> (Builder, usize) {
    let kinds: [(u8, usize); 5] = [
        (proto::HOP_BY_HOP, 8),
        (proto::ROUTING, 24),
        (proto::FRAGMENT, 8),
        (proto::AH, 20),
        (proto::DEST_OPTS, 16),
    ];
    let mut b = v6();
    let mut total = 0;
    for i in 0..n {
        let (kind, len) = kinds[i % kinds.len()];
        b = if kind == proto::FRAGMENT {
            b.v6_fragment(0, false, i as u32)
        } else {
            b.v6_ext(kind, len)
        };
        total += len;
    }
    (b, total)
}

#[test]
fn ipv6_extension_chains_up_to_the_limit() {
    assert_eq!(MAX_V6_EXT_HEADERS, 6);
    for n in 1..=MAX_V6_EXT_HEADERS {
        let (b, ext_len) = chain(n);
        let p = ip(&b.udp(5000, 3478, PAYLOAD).build());
        assert_eq!(p.proto, PROTO_UDP, "{n} headers");
        assert_eq!((p.sport, p.dport), (5000, 3478), "{n} headers");
        assert_eq!(p.payload_off, 14 + 40 + ext_len + 8, "{n} headers");
        assert_eq!(p.payload_len, PAYLOAD.len());
    }
    // Six headers of one kind, too.
    let mut b = v6();
    for _ in 0..6 {
        b = b.v6_ext(proto::DEST_OPTS, 8);
    }
    assert_eq!(ip(&b.udp(1, 2, b"").build()).payload_off, 14 + 40 + 48 + 8);
}

#[test]
fn ipv6_extension_chain_too_long_hides_the_transport() {
    for n in [MAX_V6_EXT_HEADERS + 1, MAX_V6_EXT_HEADERS + 3] {
        let (b, _) = chain(n);
        let f = b.udp(5000, 3478, PAYLOAD).build();
        assert_hidden_v6(&hidden(f.as_slice()), &std::format!("{n} headers"));
    }
    for kind in [
        proto::HOP_BY_HOP,
        proto::ROUTING,
        proto::AH,
        proto::DEST_OPTS,
    ] {
        let mut b = v6();
        for _ in 0..7 {
            b = b.v6_ext(kind, 8);
        }
        let f = b.udp(1, 2, b"").build();
        assert_hidden_v6(&hidden(f.as_slice()), &std::format!("kind {kind}"));
    }
    let mut b = v6();
    for i in 0..7 {
        b = b.v6_fragment(0, false, i);
    }
    let f = b.udp(1, 2, b"").build();
    assert_hidden_v6(&hidden(f.as_slice()), "seven fragment headers");
}

#[test]
fn ipv6_headers_beyond_the_readers_reach_hide_the_transport() {
    // Three 88-byte headers: UDP at 14 + 40 + 264 = 318.
    let mut b = v6();
    for _ in 0..3 {
        b = b.v6_ext(proto::DEST_OPTS, 88);
    }
    let f = b.udp(5000, 3478, PAYLOAD).build();
    let full = Bounded {
        bytes: &f,
        limit: usize::MAX,
    };
    assert!(matches!(parse_frame(&full), Parsed::Ip(p) if p.sport == 5000));
    // The UDP header out of reach.
    let short = Bounded {
        bytes: &f,
        limit: 300,
    };
    assert_hidden_v6(&hidden(&short), "UDP header beyond reach");
    // An extension header out of reach.
    let shorter = Bounded {
        bytes: &f,
        limit: 200,
    };
    assert_hidden_v6(&hidden(&shorter), "extension header beyond reach");
    // Out of reach is not the same as missing: a header length pointing past
    // the packet is still truncation.
    let mut hdr = [0u8; 8];
    hdr[0] = PROTO_UDP;
    hdr[1] = 255;
    let f = v6().v6_ext_raw(proto::DEST_OPTS, &hdr).build();
    let r = Bounded {
        bytes: &f,
        limit: 512,
    };
    assert_eq!(parse_frame(&r), Parsed::Malformed(Malformed::Truncated));
    // IPv4 never hides its transport: a reader that cannot reach it reports
    // truncation.
    let f = pktbuild::udp4(A4, 5000, B4, 3478, PAYLOAD);
    let r = Bounded {
        bytes: &f,
        limit: 20,
    };
    assert_eq!(parse_frame(&r), Parsed::Malformed(Malformed::Truncated));
}

#[test]
fn ipv6_extension_header_past_the_payload() {
    // Length field 255 in a short packet: destination options claiming 2048
    // bytes, AH claiming (255 + 2) * 4 bytes.
    for (kind, len) in [(proto::DEST_OPTS, 8), (proto::AH, 12)] {
        let mut hdr = [0u8; 12];
        hdr[1] = 255;
        let f = v6()
            .v6_ext_raw(kind, &hdr[..len])
            .udp(5000, 3478, PAYLOAD)
            .build();
        assert_eq!(malformed(&f), Malformed::Truncated, "kind {kind}");
    }
    // The payload length stops right after the extension header: no room for UDP.
    let f = v6()
        .v6_ext(proto::HOP_BY_HOP, 8)
        .udp(5000, 3478, PAYLOAD)
        .ipv6_payload_len(8)
        .build();
    assert_eq!(malformed(&f[..14 + 40 + 8]), Malformed::Truncated);
}

#[test]
fn ipv6_first_fragment() {
    let f = v6()
        .v6_ext(proto::HOP_BY_HOP, 8)
        .v6_fragment(0, true, 0xdead_beef)
        .udp(5000, 3478, &[0x77; 32])
        .udp_len(8 + 3000)
        .build();
    let p = ip(&f);
    assert_eq!(p.frag, Fragment::First { id: 0xdead_beef });
    assert_eq!(p.proto, PROTO_UDP);
    assert_eq!((p.sport, p.dport), (5000, 3478));
    assert_eq!(p.payload_off, 14 + 40 + 8 + 8 + 8);
    assert_eq!(p.payload_len, 32);
}

#[test]
fn ipv6_later_fragments() {
    for (offset, more) in [(1u16, true), (181, true), (181, false), (0x1fff, false)] {
        let f = v6()
            .v6_fragment(offset, more, 0x0102_0304)
            .raw(proto::UDP, &[0xc8; 64])
            .build();
        let p = ip(&f);
        assert_eq!(p.frag, later(0x0102_0304, offset << 3), "offset {offset}");
        assert_eq!(p.proto, PROTO_UDP);
        // Its data: after the IPv6 and fragment headers, all 64 bytes.
        assert_eq!(
            (p.sport, p.dport, p.payload_off, p.payload_len),
            (0, 0, 14 + 40 + 8, 64)
        );
    }
}

#[test]
fn ipv6_later_fragment_followed_by_an_options_header() {
    // RFC 8200 §4.5: the fragment header's next header names the first header
    // of the fragmentable part (here destination options); a later
    // fragment's bytes are the middle of that part, not a header.
    let mut data = [0u8; 64];
    data[0] = proto::UDP;
    data[1] = 0xff; // read as a length: 2048 bytes
    let f = v6()
        .v6_fragment(100, true, 42)
        .raw(proto::DEST_OPTS, &data)
        .build();
    match parse_frame(f.as_slice()) {
        Parsed::Ip(p) => {
            assert_eq!(p.frag, later(42, 800));
            assert_eq!((p.sport, p.dport), (0, 0));
        }
        other => panic!("a valid later fragment parsed as {other:?}"),
    }
}

#[test]
fn ports_past_the_ip_packet() {
    // Each frame is padded to 60 bytes with non-zero bytes that must not be
    // read as the ports.
    for (case, frame) in [
        (
            "a first fragment carrying only 4 bytes of the UDP header",
            v4().ipv4_fragment(0, true)
                .raw(proto::UDP, &[0x13, 0x88, 0x0d, 0x96])
                .trailer(&[0xff; 22]),
        ),
        (
            "TCP with only its source port",
            v4().raw(proto::TCP, &[0x01, 0xbb]).trailer(&[0xab; 24]),
        ),
    ] {
        let f = frame.build();
        assert_eq!(f.len(), 60, "{case}");
        assert_eq!(malformed(&f), Malformed::Truncated, "{case}");
    }
}

#[test]
fn ipv6_zero_payload_length_runs_to_the_frame_end() {
    // The parser treats payload length 0 as a jumbogram: the frame's end is
    // the packet's end.
    let f = v6().udp(5000, 3478, PAYLOAD).ipv6_payload_len(0).build();
    let p = ip(&f);
    assert_eq!(p.payload_len, PAYLOAD.len());
    let f = v6()
        .udp(5000, 3478, PAYLOAD)
        .udp_len(8 + 100)
        .ipv6_payload_len(0)
        .build();
    assert_eq!(malformed(&f), Malformed::BadUdpLength);
}

#[test]
fn ipv6_payload_length_beyond_the_frame() {
    let f = v6()
        .udp(5000, 3478, PAYLOAD)
        .ipv6_payload_len((8 + PAYLOAD.len() + 1) as u16)
        .build();
    assert_eq!(malformed(&f), Malformed::Truncated);
}

// --- Truncation -------------------------------------------------------------------

/// Every cut of `frame` shorter than `need` bytes must be `Truncated`; no cut
/// may panic.
#[track_caller]
fn assert_every_cut_truncated(frame: &[u8], need: usize, what: &str) {
    for cut in 0..need {
        assert_eq!(
            parse_frame(&frame[..cut]),
            Parsed::Malformed(Malformed::Truncated),
            "{what}: cut at {cut} of {}",
            frame.len()
        );
    }
}

/// `b` with a UDP payload: every cut short of the whole frame is
/// `Truncated`, and the whole frame parses with the payload where it was built.
#[track_caller]
fn assert_udp_cuts_truncated(b: Builder, what: &str) {
    let fr = b.udp(5000, 3478, PAYLOAD).build_frame();
    assert_every_cut_truncated(&fr.bytes, fr.bytes.len(), what);
    assert_eq!(ip(&fr.bytes).payload_off, fr.payload_off, "{what}");
}

#[test]
fn truncation_v4_vlan_options_udp() {
    let b = v4()
        .vlan(10)
        .qinq(20)
        .ipv4_options(&[1, 1, 1, 1, 1, 1, 1, 0]);
    assert_udp_cuts_truncated(b, "v4 + 2 tags + options");
}

#[test]
fn truncation_v6_three_extensions_udp() {
    let b = v6()
        .vlan(7)
        .v6_ext(proto::HOP_BY_HOP, 8)
        .v6_ext(proto::ROUTING, 24)
        .v6_ext(proto::AH, 16);
    assert_udp_cuts_truncated(b, "v6 + 3 extension headers");
}

#[test]
fn truncation_other_shapes() {
    let frames = [
        pktbuild::tcp4(A4, 1, B4, 2, b"x"),
        pktbuild::tcp6(A6, 1, B6, 2, b""),
        v4().ipv4_fragment(0, true)
            .udp(1, 2, &[0; 16])
            .udp_len(800)
            .build(),
        v4().ipv4_fragment(9, false).raw(17, &[0; 16]).build(),
        v6().v6_fragment(0, true, 5)
            .udp(1, 2, &[0; 16])
            .udp_len(800)
            .build(),
        v6().v6_ext(proto::DEST_OPTS, 8)
            .v6_fragment(9, false, 5)
            .raw(17, &[0; 16])
            .build(),
        v4().icmp(8, 0, &[0; 8]).build(),
    ];
    for (i, f) in frames.iter().enumerate() {
        assert!(
            matches!(parse_frame(f.as_slice()), Parsed::Ip(_)),
            "frame {i}"
        );
        assert_every_cut_truncated(f, f.len(), "other shapes");
    }
}

#[test]
fn truncation_inside_ethernet_padding_is_harmless() {
    let fr = v4()
        .vlan(3)
        .udp(5000, 3478, b"")
        .pad_to(ETH_MIN_FRAME)
        .build_frame();
    let full = ip(&fr.bytes);
    for cut in fr.l3_end..=fr.bytes.len() {
        assert_eq!(ip(&fr.bytes[..cut]), full, "cut at {cut}");
    }
    assert_every_cut_truncated(&fr.bytes, fr.l3_end, "padded v4");
}

#[test]
fn short_frames_are_truncated_not_non_ip() {
    let arp = pktbuild::arp_request([2, 0, 0, 0, 0, 9], A4, B4);
    assert_every_cut_truncated(&arp, 14, "ARP");
    assert_eq!(parse_frame(&arp[..14]), Parsed::NonIp);
    // A tagged frame cut inside its tag.
    let tagged = Builder::new().vlan(1).non_ip(0x0806, &[]).build();
    assert_every_cut_truncated(&tagged, 18, "tagged ARP");
    assert_eq!(parse_frame(tagged.as_slice()), Parsed::NonIp);
}

#[test]
fn no_cut_of_a_malformed_frame_panics() {
    let frames = [
        v4().ihl(15).udp(1, 2, &[0; 60]).build(),
        v4().ihl(3).udp(1, 2, &[0; 60]).build(),
        v4().total_len(0xffff).udp(1, 2, &[0; 60]).build(),
        v4().udp(1, 2, &[0; 10]).udp_len(0xffff).build(),
        v6().ipv6_payload_len(0xffff).udp(1, 2, &[0; 10]).build(),
        v6().ipv6_payload_len(0).v6_ext_raw(0, &[0, 0xff]).build(),
        v6().v6_ext_raw(proto::AH, &[0, 0xff, 0, 0])
            .udp(1, 2, b"")
            .build(),
        v4().vlan(1).vlan(2).vlan(3).vlan(4).build(),
    ];
    for f in &frames {
        for cut in 0..=f.len() {
            // Must return, whatever it returns.
            let _ = parse_frame(&f[..cut]);
        }
        assert!(matches!(parse_frame(f.as_slice()), Parsed::Malformed(_)));
    }
}

// --- Flow key -----------------------------------------------------------------------

#[test]
fn flow_key_is_canonical() {
    let ab = ip(&pktbuild::udp4(A4, 5000, B4, 3478, PAYLOAD));
    let ba = ip(&pktbuild::udp4(B4, 3478, A4, 5000, PAYLOAD));
    let (k1, from_a1) = ab.flow_key();
    let (k2, from_a2) = ba.flow_key();
    assert_eq!(k1, k2);
    assert_ne!(from_a1, from_a2);
    assert!(from_a1, "10.0.0.1 < 91.108.4.1: A is endpoint a");
    let want = FlowKey {
        addr_a: v4_mapped(A4),
        addr_b: v4_mapped(B4),
        port_a: 5000,
        port_b: 3478,
        proto: PROTO_UDP,
        _pad: [0; 3],
    };
    assert_eq!(k1, want);

    let ab = ip(&pktbuild::udp6(B6, 1, A6, 2, b""));
    let ba = ip(&pktbuild::udp6(A6, 2, B6, 1, b""));
    let (k1, from_a1) = ab.flow_key();
    let (k2, from_a2) = ba.flow_key();
    assert_eq!(k1, k2);
    assert!(!from_a1 && from_a2);
    assert_eq!((k1.addr_a, k1.port_a), (A6, 2));
}

#[test]
fn flow_key_orders_by_port_when_addresses_match() {
    let a = v4_mapped(A4);
    let (k, from_a) = flow_key(&a, 9000, &a, 80, PROTO_UDP);
    assert!(!from_a);
    assert_eq!((k.port_a, k.port_b), (80, 9000));
    let (k2, from_a2) = flow_key(&a, 80, &a, 9000, PROTO_UDP);
    assert_eq!(k, k2);
    assert!(from_a2);
    // Identical endpoints: one key, both directions count as from a.
    let (k3, f3) = flow_key(&a, 80, &a, 80, PROTO_UDP);
    assert!(f3);
    assert_eq!((k3.port_a, k3.port_b), (80, 80));
}

#[test]
fn flow_key_separates_protocols() {
    let u = ip(&pktbuild::udp4(A4, 443, B4, 443, b"")).flow_key().0;
    let t = ip(&pktbuild::tcp4(A4, 443, B4, 443, b"")).flow_key().0;
    assert_ne!(u, t);
    assert_eq!((u.proto, t.proto), (PROTO_UDP, PROTO_TCP));
}
