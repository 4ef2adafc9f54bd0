//! Writes the seed corpora of the fuzz targets into `CORPUS/<target>/`
//! (default `fuzz/corpus`), overwriting earlier seeds of the same name:
//!
//! - `frame`: frames of every shape the verdict tests use (STUN, WhatsApp and
//!   Telegram signatures, TURN, RTP/RTCP, DTLS, QUIC, DNS, TCP, ICMP, ARP,
//!   VLAN tags, IPv4 options, IPv6 extension chains, fragments, malformed
//!   lengths), plus frames of the captures in `../shared/corpus/pcap`;
//! - `classify`: the UDP payload heads of those frames, in the target's
//!   `len, sport, dport, head` layout;
//! - `capture`: the captures themselves (large classic pcaps cut at a record
//!   boundary), plus pcap and pcapng files of every supported link type made
//!   from the built frames;
//! - `lists`: hand-written list files (comments, BOM, CRLF, host bits,
//!   nesting, errors) and the raw range lists in `../shared/data/ranges`;
//! - `config`: `dist/flowfilter.toml` and snippets of every field, valid
//!   and not.
//!
//! Nothing under `corpus/` is committed: part of it comes from `../shared`.
//!
//! `cargo xtask fuzz` builds it with the targets and runs it; by hand:
//! `cargo run --bin seeds [CORPUS]` in `fuzz/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use filter_common::parse::{Fragment, PROTO_UDP, Parsed, parse_frame};
use filter_common::pktbuild::{
    self, Builder, Rtp, channel_data, dtls_content, dtls_record, dtls_version, filler,
    quic_short_header, rtcp, rtp, stun, stun_attr, stun_type, xor_address_v4,
};
use filter_common::pktbuild::sample::{
    CLIENT4 as C4, CLIENT6 as C6, RELAY4 as R4, RELAY6 as R6, TAG, TXID,
};
use filter_user::replay::capture::parse_capture;

/// Frames taken from one capture at most (distinct ones).
const FRAMES_PER_CAPTURE: usize = 48;
/// Captures longer than this are cut at a record boundary.
const CAPTURE_MAX: usize = 64 * 1024;

/// A STUN message with the cookie whose length counts `body` exactly.
fn raw_stun(msg_type: u16, body: &[u8]) -> Vec<u8> {
    pktbuild::stun_raw(msg_type, TXID, body)
}

/// A Telegram reflector control packet of `len` bytes with type `ty`.
fn reflector(ty: [u8; 4], len: usize) -> Vec<u8> {
    pktbuild::tg_reflector(TAG, ty, len)
}

/// tgcalls reflector data around `inner`.
fn tgcalls(inner: &[u8]) -> Vec<u8> {
    let len = u32::try_from(inner.len()).expect("inner length");
    pktbuild::tgcalls_data(pktbuild::TGCALLS_PREFIX, len, inner, 0)
}

/// UDP payloads of every recognised kind and some look-alikes, with the
/// destination port each is sent to.
fn payloads() -> Vec<(&'static str, Vec<u8>, u16)> {
    let peer = xor_address_v4([203, 0, 113, 7], 45000);
    let mut wa_attr = 0x4000u16.to_be_bytes().to_vec();
    wa_attr.extend_from_slice(&[0, 3, 1, 2, 3]);
    vec![
        (
            "stun-binding",
            stun(stun_type::BINDING_REQUEST, TXID, &[(stun_attr::USERNAME, b"user:pass")]),
            3478,
        ),
        ("stun-classic", pktbuild::stun_classic(1, [7; 16], &[]), 3478),
        ("wa-private", raw_stun(0x0801, &[]), 3478),
        ("wa-private-body", raw_stun(0x0803, &[9; 13]), 3478),
        ("wa-allocate", raw_stun(stun_type::ALLOCATE, &wa_attr), 3478),
        (
            "wa-allocate-reply",
            stun(
                stun_type::ALLOCATE_RESPONSE,
                TXID,
                &[(stun_attr::XOR_MAPPED_ADDRESS, &peer), (0x4002, &[0; 4])],
            ),
            3478,
        ),
        (
            "wa-ice",
            stun(stun_type::BINDING_REQUEST, TXID, &[(stun_attr::MESSAGE_INTEGRITY, &[0x11; 20])]),
            50000,
        ),
        ("wa-health", b"health".to_vec(), 3478),
        ("wa-ok", b"OK".to_vec(), 3478),
        ("tg-reflector-32", reflector([0xff; 4], 32), 533),
        ("tg-reflector-40", reflector([0xfe, 0xff, 0xff, 0xff], 40), 533),
        ("tg-reflector-48", reflector([0x1c, 0x37, 0xd9, 0x27], 48), 533),
        ("tg-reflector-64", reflector([0xc7, 0x72, 0x15, 0xc0], 64), 533),
        ("tg-data", [&TAG[..], &filler(80, 0x77)].concat(), 540),
        ("tg-tgcalls-stun", tgcalls(&stun(stun_type::BINDING_RESPONSE, TXID, &[])), 596),
        (
            "tg-tgcalls-dtls",
            tgcalls(&dtls_record(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 40)),
            596,
        ),
        (
            "tg-turn",
            stun(stun_type::ALLOCATE, TXID, &[(stun_attr::REALM, b"telegram.org")]),
            1400,
        ),
        (
            "turn-create-permission",
            stun(stun_type::CREATE_PERMISSION, TXID, &[(stun_attr::XOR_PEER_ADDRESS, &peer)]),
            3478,
        ),
        (
            "turn-send",
            stun(
                stun_type::SEND_INDICATION,
                TXID,
                &[(stun_attr::XOR_PEER_ADDRESS, &peer), (stun_attr::DATA, &rtp(111, 1, 0, 7, 40))],
            ),
            3478,
        ),
        ("channel-data", channel_data(0x4001, &rtp(111, 2, 960, 7, 60)), 3478),
        ("rtp", rtp(111, 100, 96000, 0xAABB_CCDD, 60), 40002),
        (
            "rtp-csrc-ext",
            Rtp::new(96, 7, 1, 0x1234_5678)
                .csrcs(&[1, 2, 3])
                .extension(0xBEDE, &[1, 2, 3, 4, 5])
                .payload(&filler(30, 1))
                .padding(4)
                .build(),
            40002,
        ),
        ("rtcp-sr", rtcp(200, 0, 0xAABB_CCDD, &[0; 20]), 40003),
        ("dtls", dtls_record(dtls_content::HANDSHAKE, dtls_version::DTLS_1_2, 100), 40004),
        ("quic", quic_short_header(0x01, &[0x42; 8], &[0, 1], &filler(60, 5)), 443),
        (
            "dns",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01"
                .to_vec(),
            53,
        ),
        ("empty", Vec::new(), 40005),
        ("filler", filler(200, 0xf0), 40006),
    ]
}

/// Frames of every shape, named.
fn frames() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, p, dport) in payloads() {
        v.push((
            format!("{name}-v4"),
            pktbuild::udp4(C4, 40000, R4, dport, &p),
        ));
        v.push((
            format!("{name}-v6"),
            pktbuild::udp6(C6, 40000, R6, dport, &p),
        ));
    }
    let stun_p = stun(
        stun_type::BINDING_REQUEST,
        TXID,
        &[(stun_attr::USERNAME, b"user:pass")],
    );
    let big = stun(
        stun_type::BINDING_REQUEST,
        TXID,
        &[(stun_attr::USERNAME, &[0x41; 64])],
    );
    // `n` IPv6 extension headers (`next`, `len` bytes each), then STUN
    // from `sport`.
    let v6_chain = |n, next, len, sport| {
        (0..n)
            .fold(Builder::new().ipv6(C6, R6), |b, _| b.v6_ext(next, len))
            .udp(sport, 3478, &stun_p)
            .build()
    };
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        (
            "tcp-v4",
            pktbuild::tcp4(C4, 40000, R4, 443, b"\x16\x03\x01hello"),
        ),
        ("tcp-v6", pktbuild::tcp6(C6, 40000, R6, 443, b"x")),
        (
            "icmp",
            Builder::new().ipv4(C4, R4).icmp(8, 0, b"ping").build(),
        ),
        ("arp", pktbuild::arp_request([2, 0, 0, 0, 0, 9], C4, R4)),
        (
            "qinq-vlan-stun",
            Builder::new()
                .qinq(100)
                .vlan(200)
                .ipv4(C4, R4)
                .udp(5003, 3478, &stun_p)
                .build(),
        ),
        (
            "three-vlans",
            Builder::new()
                .qinq(1)
                .vlan(2)
                .vlan(3)
                .ipv4(C4, R4)
                .udp(5004, 3478, &stun_p)
                .build(),
        ),
        (
            "ipv4-options",
            Builder::new()
                .ipv4(C4, R4)
                .ipv4_options(&[1; 12])
                .udp(5005, 3478, &stun_p)
                .build(),
        ),
        (
            "ihl-4",
            Builder::new()
                .ipv4(C4, R4)
                .ihl(4)
                .udp(1, 3478, &stun_p)
                .build(),
        ),
        (
            "v6-ext-3",
            Builder::new()
                .ipv6(C6, R6)
                .v6_ext(0, 8)
                .v6_ext(43, 16)
                .v6_ext(60, 8)
                .udp(5006, 3478, &stun_p)
                .build(),
        ),
        (
            "v6-ah",
            Builder::new()
                .ipv6(C6, R6)
                .v6_ext(51, 16)
                .udp(5007, 3478, &stun_p)
                .build(),
        ),
        ("v6-ext-6", v6_chain(6, 60, 8, 5008)),
        ("v6-ext-7", v6_chain(7, 60, 8, 5008)),
        ("v6-ext-long", v6_chain(5, 0, 96, 5009)),
        (
            "v4-frag-first",
            Builder::new()
                .ipv4(C4, R4)
                .ipv4_id(77)
                .ipv4_fragment(0, true)
                .udp(6000, 3478, &big)
                .build(),
        ),
        (
            "v4-frag-later",
            Builder::new()
                .ipv4(C4, R4)
                .ipv4_id(77)
                .ipv4_fragment(10, false)
                .raw(17, &[0x42; 40])
                .build(),
        ),
        (
            "v6-frag-first",
            Builder::new()
                .ipv6(C6, R6)
                .v6_fragment(0, true, 99)
                .udp(6001, 3478, &big)
                .build(),
        ),
        (
            "v6-frag-later",
            Builder::new()
                .ipv6(C6, R6)
                .v6_fragment(10, false, 99)
                .raw(17, &[0x42; 40])
                .build(),
        ),
        (
            "v6-frag-mid-chain",
            Builder::new()
                .ipv6(C6, R6)
                .v6_ext(0, 8)
                .v6_fragment(0, true, 5)
                .v6_ext(60, 8)
                .udp(6002, 3478, &big)
                .build(),
        ),
        (
            "udp-len-short",
            Builder::new()
                .ipv4(C4, R4)
                .udp(1, 2, b"abcd")
                .udp_len(4)
                .build(),
        ),
        (
            "udp-len-long",
            Builder::new()
                .ipv4(C4, R4)
                .udp(1, 2, b"abcd")
                .udp_len(400)
                .build(),
        ),
        (
            "v6-payload-len-0",
            Builder::new()
                .ipv6(C6, R6)
                .udp(1, 2, &stun_p)
                .ipv6_payload_len(0)
                .build(),
        ),
        (
            "truncated",
            pktbuild::udp4(C4, 1, R4, 2, b"x")[..24].to_vec(),
        ),
        (
            "padded-60",
            Builder::new()
                .ipv4(C4, R4)
                .udp(9, 9, b"OK")
                .pad_to(60)
                .build(),
        ),
    ];
    v.extend(shapes.into_iter().map(|(n, f)| (n.to_string(), f)));
    v
}

/// The `classify` target's input for a frame's UDP payload, if it has one.
fn classify_input(frame: &[u8]) -> Option<Vec<u8>> {
    let Parsed::Ip(p) = parse_frame(frame) else {
        return None;
    };
    if p.proto != PROTO_UDP || matches!(p.frag, Fragment::Later { .. }) {
        return None;
    }
    let mut v = (p.payload_len.min(usize::from(u16::MAX)) as u16)
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(&p.sport.to_be_bytes());
    v.extend_from_slice(&p.dport.to_be_bytes());
    let n = p.payload_len.min(128);
    v.extend_from_slice(&frame[p.payload_off..p.payload_off + n]);
    Some(v)
}

/// A classic pcap file (little-endian, microseconds, or big-endian,
/// nanoseconds) of `linktype` holding `records`.
fn pcap(linktype: u32, big_endian: bool, records: &[Vec<u8>]) -> Vec<u8> {
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        });
    };
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        });
    };
    let mut v = Vec::new();
    w32(&mut v, if big_endian { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    w16(&mut v, 2);
    w16(&mut v, 4);
    w32(&mut v, 0);
    w32(&mut v, 0);
    w32(&mut v, 65535);
    w32(&mut v, linktype);
    for (i, r) in records.iter().enumerate() {
        w32(&mut v, 1_700_000_000 + i as u32);
        w32(&mut v, 1000 * i as u32);
        w32(&mut v, r.len() as u32);
        w32(&mut v, r.len() as u32 + u32::from(i % 3 == 0) * 4);
        v.extend_from_slice(r);
    }
    v
}

/// A pcapng file: one section, one interface of `linktype` (with an
/// `if_tsresol` option), an Enhanced Packet Block per record and a Simple
/// Packet Block for the last one.
fn pcapng(linktype: u16, records: &[Vec<u8>]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (body.len() + 12) as u32;
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut v = Vec::new();
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    block(&mut v, 0x0A0D_0D0A, &shb);
    let mut idb = linktype.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&65535u32.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 10^-9
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(&mut v, 1, &idb);
    for (i, r) in records.iter().enumerate() {
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&(i as u32).to_le_bytes());
        epb.extend_from_slice(&(r.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(r.len() as u32).to_le_bytes());
        epb.extend_from_slice(r);
        block(&mut v, 6, &epb);
    }
    if let Some(r) = records.last() {
        let mut spb = (r.len() as u32).to_le_bytes().to_vec();
        spb.extend_from_slice(r);
        block(&mut v, 3, &spb);
    }
    v
}

/// Records of each supported link type made from Ethernet frames of IP.
fn link_records(frames: &[Vec<u8>]) -> Vec<(&'static str, u32, Vec<Vec<u8>>)> {
    let ip: Vec<(u16, &[u8])> = frames
        .iter()
        .filter(|f| f.len() > 14)
        .map(|f| (u16::from_be_bytes([f[12], f[13]]), &f[14..]))
        .filter(|(t, _)| *t == 0x0800 || *t == 0x86DD)
        .collect();
    let raw = ip.iter().map(|(_, p)| p.to_vec()).collect();
    let sll = ip
        .iter()
        .map(|(t, p)| {
            let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
            h.extend_from_slice(&t.to_be_bytes());
            h.extend_from_slice(p);
            h
        })
        .collect();
    let sll2 = ip
        .iter()
        .map(|(t, p)| {
            let mut h = t.to_be_bytes().to_vec();
            h.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            h.extend_from_slice(p);
            h
        })
        .collect();
    let null = ip
        .iter()
        .map(|(t, p)| {
            let af: u32 = if *t == 0x0800 { 2 } else { 10 };
            let mut h = af.to_le_bytes().to_vec();
            h.extend_from_slice(p);
            h
        })
        .collect();
    vec![
        ("ethernet", 1, frames.to_vec()),
        ("raw", 101, raw),
        ("sll", 113, sll),
        ("sll2", 276, sll2),
        ("null", 0, null),
    ]
}

/// A classic pcap cut after the last whole record within `max` bytes; other
/// files as they are.
fn cut_capture(bytes: &[u8], max: usize) -> Vec<u8> {
    if bytes.len() <= max || bytes.len() < 24 {
        return bytes.to_vec();
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return bytes[..max].to_vec(),
    };
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let f = [
            bytes[off + 8],
            bytes[off + 9],
            bytes[off + 10],
            bytes[off + 11],
        ];
        let incl = if le {
            u32::from_le_bytes(f)
        } else {
            u32::from_be_bytes(f)
        } as usize;
        let next = off + 16 + incl;
        if next > max || next > bytes.len() {
            break;
        }
        off = next;
    }
    bytes[..off].to_vec()
}

const LISTS: &[(&str, &str)] = &[
    (
        "basic",
        "198.51.100.0/24\n203.0.113.128/25 # relay\n\n# comment\n2001:db8::/32\n192.0.2.1\n2001:db8::1\n",
    ),
    ("bom", "\u{feff}10.0.0.0/8\n"),
    (
        "crlf",
        "10.0.0.0/8\r\n2001:db8::/48\r\n  # indented comment\r\n",
    ),
    ("host-bits", "10.0.0.1/8\n2001:db8::1/32\n"),
    (
        "nested-dupes",
        "10.0.0.0/8\n10.1.0.0/16\n10.0.0.0/8\n10.1.2.0/24\n10.1.2.200/32\n0.0.0.0/0\n::/0\n2001:db8::/32\n2001:db8:1::/48\n",
    ),
    (
        "long-prefixes",
        "192.0.2.0/25\n192.0.2.128/26\n192.0.2.200/31\n198.51.100.7\n",
    ),
    ("mapped", "::ffff:192.0.2.0/120\n::/128\n"),
    ("bad-len", "10.0.0.0/33\n"),
    ("bad-addr", "not an address\n"),
    ("bad-sign", "1.2.3.4/-1\n"),
    ("bad-space", "1.2.3.4/ 8\n"),
    ("bad-v6-len", "2001:db8::/129\n"),
    ("bad-zone", "fe80::1%eth0\n"),
];

const CONFIGS: &[(&str, &str)] = &[
    ("empty", ""),
    (
        "interfaces",
        "interfaces = [\"eth0\", \"veth-gw1\"]\nmode = \"skb\"\n",
    ),
    (
        "policy",
        "[policy]\nwhatsapp = \"flows=30%\"\ntelegram = \"loss=5%,scope=udp\"\nvpn = \"monitor\"\n",
    ),
    ("metrics-v6", "metrics = \"[::1]:9477\"\n"),
    (
        "misc",
        "netns = \"gw\"\ndetach_on_exit = true\nnormalize = true\nlists = \"/etc/flowfilter/lists\"\npin_dir = \"/sys/fs/bpf/ff\"\nv4_chunks_per_gen = 4096\n",
    ),
    ("old-chunks-option", "v4_chunks_per_gen = 0\n"),
    ("bad-pin-dir", "pin_dir = \"relative\"\n"),
    ("bad-field", "bogus = 1\n"),
    ("bad-allow-policy", "[policy]\nallow = \"drop\"\n"),
    ("bad-mode", "mode = \"fast\"\n"),
    ("bad-iface", "interfaces = [\"a/b\", \"\"]\n"),
    ("bad-syntax", "interfaces = [\n"),
    ("bad-type", "normalize = \"yes\"\n"),
];

struct Writer {
    root: PathBuf,
    counts: std::collections::BTreeMap<&'static str, usize>,
}

impl Writer {
    fn put(&mut self, target: &'static str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("seed-{safe}"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        *self.counts.entry(target).or_default() += 1;
    }
}

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| here.join("corpus"), PathBuf::from);
    let shared = here.join("../../shared");
    let mut w = Writer {
        root,
        counts: std::collections::BTreeMap::default(),
    };

    let built = frames();
    for (name, f) in &built {
        w.put("frame", name, f);
        if let Some(c) = classify_input(f) {
            w.put("classify", name, &c);
        }
    }
    let plain: Vec<Vec<u8>> = built.iter().map(|(_, f)| f.clone()).collect();
    for (name, linktype, records) in link_records(&plain) {
        w.put(
            "capture",
            &format!("built-{name}.pcap"),
            &pcap(linktype, false, &records),
        );
        w.put(
            "capture",
            &format!("built-{name}-be.pcap"),
            &pcap(linktype, true, &records[..4]),
        );
        w.put(
            "capture",
            &format!("built-{name}.pcapng"),
            &pcapng(linktype as u16, &records),
        );
    }
    for (name, text) in LISTS {
        w.put("lists", name, text.as_bytes());
    }
    for (name, text) in CONFIGS {
        w.put("config", name, text.as_bytes());
    }
    if let Ok(text) = std::fs::read(here.join("../dist/flowfilter.toml")) {
        w.put("config", "dist-flowfilter.toml", &text);
    }

    let pcaps = shared.join("corpus/pcap");
    let mut captures = 0;
    if let Ok(dir) = std::fs::read_dir(&pcaps) {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if !(ext.eq_ignore_ascii_case("pcap") || ext.eq_ignore_ascii_case("pcapng")) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            captures += 1;
            w.put("capture", &file, &cut_capture(&bytes, CAPTURE_MAX));
            let Ok(frames) = parse_capture(&file, &bytes) else {
                continue;
            };
            let mut seen = BTreeSet::new();
            for f in frames {
                if seen.len() == FRAMES_PER_CAPTURE {
                    break;
                }
                // Distinct by their first 80 bytes (headers and payload start).
                let key: Vec<u8> = f.data.iter().take(80).copied().collect();
                if !seen.insert(key) {
                    continue;
                }
                let n = seen.len();
                w.put("frame", &format!("{file}-{n}"), &f.data);
                if let Some(c) = classify_input(&f.data) {
                    w.put("classify", &format!("{file}-{n}"), &c);
                }
            }
        }
    } else {
        eprintln!("seeds: {} absent, built seeds only", pcaps.display());
    }
    let ranges = shared.join("data/ranges");
    if let Ok(dir) = std::fs::read_dir(&ranges) {
        for e in dir.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if (ext == "txt" || ext == "lst")
                && let Ok(text) = std::fs::read(&path)
            {
                w.put("lists", &file, &text);
            }
        }
    } else {
        eprintln!("seeds: {} absent", ranges.display());
    }
    let counts: Vec<String> = w.counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    eprintln!(
        "seeds: wrote {} into {} ({captures} captures from ../shared)",
        counts.join(", "),
        w.root.display()
    );
}
