//! Hostile input through BPF_PROG_TEST_RUN on the compiled program (issue 7):
//!
//! - a property test: thousands of generated and mutated frames, each run
//!   through the XDP program and through the host code (`parse_frame`,
//!   `classify`), which must agree on the counters, the label, the category
//!   and the verdict;
//! - a flood of new 5-tuples that fills the flow table while a call is in
//!   progress;
//! - spoofed STUN/TURN packets trying to teach the endpoint map more than
//!   one packet may;
//! - IPv6 extension chains beyond the parser's limit, fragments in every
//!   position, 0-length UDP, and the largest frame BPF_PROG_TEST_RUN takes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{HashMap as BpfHashMap, MapData};
use filter_common::classify::{
    Class, HEAD_LEN, LABEL_P2P_INHERITED, LABEL_STUN, LABEL_WHATSAPP_STUN, classify,
    first_fragment_len,
};
use filter_common::parse::{
    Fragment, PROTO_TCP, PROTO_UDP, Parsed, XDP_HEADER_REACH, XdpReach, flow_key, parse_frame,
    v4_mapped,
};
use filter_common::pktbuild::sample::{CLIENT4, CLIENT6, RELAY4, RELAY6, TXID};
use filter_common::pktbuild::{
    self, Builder, Rtp, channel_data, dtls_content, dtls_record, dtls_version, filler,
    quic_short_header, rtcp, rtp, stun, stun_attr, stun_type, xor_address_v4, xor_address_v6,
};
use filter_common::*;
use filter_user::dataplane::loader::{Filter, LoadError};
use flowfilter_tests::kit::Rng;
use flowfilter_tests::{lists, load, skip_unless_root};

// --- frames ----------------------------------------------------------------------

/// Documentation prefixes only (RFC 5737 / RFC 3849).
const OTHER4: [u8; 4] = [203, 0, 113, 99];

/// A STUN message with the cookie whose length counts `body` exactly.
fn raw_stun(msg_type: u16, body: &[u8]) -> Vec<u8> {
    pktbuild::stun_raw(msg_type, TXID, body)
}

/// WhatsApp's private STUN type 0x0801 with `body`: an app signature.
fn wa_ping(body: usize) -> Vec<u8> {
    raw_stun(0x0801, &filler(body, 0x21))
}

fn reflector(tag: &[u8], ty: [u8; 4], len: usize) -> Vec<u8> {
    pktbuild::tg_reflector(tag.try_into().expect("a 16-byte tag"), ty, len)
}

fn tgcalls(inner: &[u8]) -> Vec<u8> {
    let len = u32::try_from(inner.len()).expect("inner length");
    pktbuild::tgcalls_data(pktbuild::TGCALLS_PREFIX, len, inner, 0)
}

/// Number of payload kinds [`payload`] makes.
const PAYLOAD_KINDS: usize = 27;

/// A UDP payload of kind `k` (call signalling and media of both apps,
/// generic call protocols, look-alikes), and the destination port it goes to.
fn payload(k: usize, rng: &mut Rng) -> (Vec<u8>, u16) {
    let tag = rng.bytes(16);
    let peer = xor_address_v4([203, 0, 113, rng.byte()], 1024 + rng.below(60000u64) as u16);
    let mut wa_attr = (0x4000u16 + rng.below(8u64) as u16).to_be_bytes().to_vec();
    wa_attr.extend_from_slice(&[0, 3, 1, 2, 3]);
    let ssrc = rng.next_u64() as u32;
    let seq = rng.next_u64() as u16;
    match k {
        0 => (
            stun(
                stun_type::BINDING_REQUEST,
                TXID,
                &[(stun_attr::USERNAME, b"user:pass")],
            ),
            3478,
        ),
        1 => (wa_ping(rng.below(40)), 3478),
        2 => (raw_stun(stun_type::ALLOCATE, &wa_attr), 3478),
        3 => (
            stun(
                stun_type::ALLOCATE_RESPONSE,
                TXID,
                &[(stun_attr::XOR_MAPPED_ADDRESS, &peer), (0x4002, &[0; 4])],
            ),
            3478,
        ),
        4 => (
            stun(
                stun_type::BINDING_REQUEST,
                TXID,
                &[(stun_attr::MESSAGE_INTEGRITY, &[0x11; 20])],
            ),
            50000,
        ),
        5 => (b"health".to_vec(), 3478),
        6 => (b"OK".to_vec(), 3478),
        7 => (reflector(&tag, [0xff; 4], 32), 533),
        8 => (reflector(&tag, [0xfe, 0xff, 0xff, 0xff], 40), 533),
        9 => (reflector(&tag, [0x1c, 0x37, 0xd9, 0x27], 48), 533),
        10 => (reflector(&tag, [0xc7, 0x72, 0x15, 0xc0], 64), 533),
        11 => {
            let n = 16 * (2 + rng.below(6));
            ([&tag[..], &rng.bytes(n)].concat(), 540)
        }
        12 => (
            tgcalls(&stun(stun_type::BINDING_RESPONSE, TXID, &[])),
            596,
        ),
        13 => (
            tgcalls(&dtls_record(
                dtls_content::HANDSHAKE,
                dtls_version::DTLS_1_2,
                20 + rng.below(60),
            )),
            596,
        ),
        14 => (
            stun(
                stun_type::ALLOCATE,
                TXID,
                &[(stun_attr::REALM, b"telegram.org")],
            ),
            1400,
        ),
        15 => (
            stun(
                stun_type::CREATE_PERMISSION,
                TXID,
                &[(stun_attr::XOR_PEER_ADDRESS, &peer)],
            ),
            3478,
        ),
        16 => (
            stun(
                stun_type::SEND_INDICATION,
                TXID,
                &[
                    (stun_attr::XOR_PEER_ADDRESS, &peer),
                    (stun_attr::DATA, &rtp(111, seq, 0, ssrc, 40)),
                ],
            ),
            3478,
        ),
        17 => (
            channel_data(0x4001, &rtp(111, seq, 960, ssrc, rng.below(100))),
            3478,
        ),
        18 => (rtp(111, seq, 96000, ssrc, rng.below(200)), 40002),
        19 => (
            Rtp::new(96, seq, 1, ssrc)
                .csrcs(&[1, 2, 3])
                .extension(0xBEDE, &[1, 2, 3, 4, 5])
                .payload(&filler(30, 1))
                .build(),
            40002,
        ),
        20 => (rtcp(200, 0, ssrc, &[0; 20]), 40003),
        21 => (
            dtls_record(
                dtls_content::APPLICATION_DATA,
                dtls_version::DTLS_1_2,
                rng.below(200),
            ),
            40004,
        ),
        22 => (
            quic_short_header(rng.byte(), &tag[..8], &[0, 1], &rng.bytes(60)),
            443,
        ),
        23 => (
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01"
                .to_vec(),
            53,
        ),
        24 => (Vec::new(), 40005),
        25 => (wa_ping(HEAD_LEN + rng.below(300)), 3478),
        _ => {
            let n = rng.below(300);
            (rng.bytes(n), 1024 + rng.below(60000u64) as u16)
        }
    }
}

/// A random IPv6 extension chain of `n` headers (hop-by-hop, routing,
/// destination options, AH) on `b`; `long` ones (64..=152 bytes each) soon
/// cross the program's 512-byte direct-read bound.
fn v6_chain(mut b: Builder, n: usize, long: bool, rng: &mut Rng) -> Builder {
    for _ in 0..n {
        let kind = [0, 43, 60][rng.below(3)];
        b = if long {
            b.v6_ext(kind, 8 * (8 + rng.below(12)))
        } else if rng.chance(25) {
            b.v6_ext(51, 4 * (2 + rng.below(4)))
        } else {
            b.v6_ext(kind, 8 * (1 + rng.below(3)))
        };
    }
    b
}

/// A frame of a random shape around a random payload, with source port
/// `sport` (so that each frame is a new flow).
fn base_frame(rng: &mut Rng, sport: u16) -> (String, Vec<u8>) {
    let k = rng.below(PAYLOAD_KINDS);
    let (p, dport) = payload(k, rng);
    let c4 = [192, 0, 2, rng.byte()];
    let r4 = [198, 51, 100, rng.byte()];
    let mut c6 = CLIENT6;
    c6[15] = rng.byte();
    let shape = rng.below(16u64);
    let id = rng.next_u64() as u16;
    let f = match shape {
        0..=3 => pktbuild::udp4(c4, sport, r4, dport, &p),
        4 | 5 => pktbuild::udp6(c6, sport, RELAY6, dport, &p),
        6 => Builder::new()
            .vlan(100)
            .ipv4(c4, r4)
            .udp(sport, dport, &p)
            .build(),
        7 => Builder::new()
            .qinq(10)
            .vlan(20)
            .ipv6(c6, RELAY6)
            .udp(sport, dport, &p)
            .build(),
        8 => Builder::new()
            .ipv4(c4, r4)
            .ipv4_options(&[1; 12])
            .udp(sport, dport, &p)
            .build(),
        9 => {
            let n = rng.below(9);
            let long = rng.chance(30);
            v6_chain(Builder::new().ipv6(c6, RELAY6), n, long, rng)
                .udp(sport, dport, &p)
                .build()
        }
        10 => Builder::new()
            .ipv4(c4, r4)
            .ipv4_id(id)
            .ipv4_fragment(0, true)
            .udp(sport, dport, &p)
            .build(),
        11 => Builder::new()
            .ipv4(c4, r4)
            .ipv4_id(id)
            .ipv4_fragment(1 + rng.below(100u64) as u16, rng.chance(50))
            .raw(PROTO_UDP, &p)
            .build(),
        12 => {
            let n = rng.below(3);
            v6_chain(Builder::new().ipv6(c6, RELAY6), n, false, rng)
                .v6_fragment(0, true, u32::from(id))
                .udp(sport, dport, &p)
                .build()
        }
        13 => Builder::new()
            .ipv6(c6, RELAY6)
            .v6_fragment(1 + rng.below(100u64) as u16, rng.chance(50), u32::from(id))
            .raw(PROTO_UDP, &p)
            .build(),
        14 => match rng.below(4u64) {
            0 => pktbuild::tcp4(c4, sport, r4, 443, &p),
            1 => pktbuild::tcp6(c6, sport, RELAY6, 443, &p),
            2 => Builder::new().ipv4(c4, r4).icmp(8, 0, &p).build(),
            _ => Builder::new().ipv6(c6, RELAY6).icmp(128, 0, &p).build(),
        },
        _ => pktbuild::arp_request([2, 0, 0, 0, 0, 9], c4, r4),
    };
    (format!("payload {k} shape {shape}"), f)
}

/// Mutate `f` in place: bit flips, byte overwrites (mostly in the payload
/// head), length-field rewrites, signature fragments pasted in, truncation
/// and trailing bytes. Returns what was done.
fn mutate(f: &mut Vec<u8>, rng: &mut Rng) -> String {
    if rng.chance(15) {
        return "unmutated".into();
    }
    let mut done = Vec::new();
    for _ in 0..=rng.below(3u64) {
        if f.len() < 14 {
            break;
        }
        let len = f.len();
        // Offsets past the plain headers: the payload head of most shapes.
        let head_pos = |rng: &mut Rng| 42 + rng.below(HEAD_LEN + 24);
        match rng.below(8u64) {
            0 => {
                let i = rng.below(len);
                f[i] ^= 1 << rng.below(8u64);
                done.push(format!("flip@{i}"));
            }
            1 | 2 => {
                let i = head_pos(rng).min(len - 1);
                f[i] = *[0, 0xff, 0x7f, 0x80, 0x21, 0x12, rng.byte()]
                    .get(rng.below(7))
                    .unwrap_or(&0);
                done.push(format!("set@{i}"));
            }
            3 => {
                // IPv4 total length / UDP length, IPv6 payload length / UDP length.
                let i = *[16usize, 38, 18, 58].get(rng.below(4)).unwrap_or(&16);
                if i + 1 < len {
                    let v = u16::from_be_bytes([f[i], f[i + 1]]);
                    let v = match rng.below(3u64) {
                        0 => v.wrapping_add(1 + rng.below(8u64) as u16),
                        1 => v.wrapping_sub(1 + rng.below(8u64) as u16),
                        _ => rng.next_u64() as u16,
                    };
                    f[i..i + 2].copy_from_slice(&v.to_be_bytes());
                    done.push(format!("len@{i}"));
                }
            }
            4 => {
                // Paste a STUN cookie or a reflector 0xFF run into the payload.
                let at = head_pos(rng);
                let chunk: &[u8] = if rng.chance(50) {
                    &[0x21, 0x12, 0xA4, 0x42]
                } else {
                    &[0xff; 12]
                };
                for (j, b) in chunk.iter().enumerate() {
                    if let Some(x) = f.get_mut(at + j) {
                        *x = *b;
                    }
                }
                done.push(format!("paste@{at}"));
            }
            5 => {
                let n = 14 + rng.below(len - 13);
                f.truncate(n);
                done.push(format!("cut@{n}"));
            }
            6 => {
                let n = 1 + rng.below(64);
                let extra = rng.bytes(n);
                f.extend_from_slice(&extra);
                done.push(format!("extend+{n}"));
            }
            _ => {
                let i = rng.below(len.min(80));
                f[i] = rng.byte();
                done.push(format!("hdr@{i}"));
            }
        }
    }
    done.join(",")
}

// --- the host's view ----------------------------------------------------------------

/// What the host code predicts for one frame run on a filter with no lists,
/// default policy (drop, scope media) and no learned state.
struct Expect {
    /// Change of every global counter.
    global: [u64; GLOBAL_SLOTS as usize],
    /// The classification of a UDP packet's payload (not later fragments).
    class: Option<Class>,
    verdict: u32,
}

fn host_expect(frame: &[u8]) -> Expect {
    let mut g = [0u64; GLOBAL_SLOTS as usize];
    g[G_PACKETS as usize] = 1;
    g[G_BYTES as usize] = frame.len() as u64;
    let mut class = None;
    match parse_frame(&XdpReach(frame)) {
        Parsed::NonIp => g[G_NON_IP as usize] = 1,
        Parsed::Malformed(_) => g[G_MALFORMED as usize] = 1,
        // No lists: an address cannot put it in a category, so it passes.
        Parsed::Hidden(_) => g[G_V6_HIDDEN as usize] = 1,
        Parsed::Ip(p) => {
            if p.frag != Fragment::None {
                g[G_FRAGMENTS as usize] = 1;
            }
            if let Fragment::Later { offset, .. } = p.frag {
                // Nothing else: a later fragment has no ports. On a fresh
                // filter it comes before its first fragment; inside a UDP
                // datagram's classification head it is kept for it.
                if p.proto == PROTO_UDP && (8..8 + 48).contains(&offset) {
                    g[G_FRAG_EARLY as usize] = 1;
                }
            } else if p.proto == PROTO_TCP {
                g[G_TCP as usize] = 1;
            } else if p.proto != PROTO_UDP {
                g[G_OTHER_IP as usize] = 1;
            } else {
                g[G_UDP as usize] = 1;
                let mut head = [0u8; HEAD_LEN];
                let n = p.payload_len.min(HEAD_LEN);
                head[..n].copy_from_slice(&frame[p.payload_off..p.payload_off + n]);
                // A first fragment is judged as its whole datagram when
                // its bytes hold what the classifier reads.
                let len = if let Fragment::First { .. } = p.frag {
                    let datagram = usize::from(p.udp_len).saturating_sub(8);
                    first_fragment_len(&head, p.payload_len, datagram, p.sport, p.dport)
                } else {
                    p.payload_len
                };
                class = Some(classify(&head, len, p.sport, p.dport));
            }
        }
    }
    let drop = class.is_some_and(|c| c.app != 0);
    g[G_DROPPED as usize] = u64::from(drop);
    // Without lists only an app signature gives a category, and a packet
    // with a category on a fresh filter creates its flow.
    g[G_FLOWS_CREATED as usize] = u64::from(drop);
    Expect {
        global: g,
        class,
        verdict: if drop { XDP_DROP } else { XDP_PASS },
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(2 * b.len()), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

// --- map access ------------------------------------------------------------------------

/// Remove every entry of the hash map `name`.
fn clear_hash<K: aya::Pod, V: aya::Pod>(f: &mut Filter, name: &str) {
    let m = f
        .map_mut(name)
        .unwrap_or_else(|| panic!("the program has no map {name}"));
    let mut h: BpfHashMap<&mut MapData, K, V> =
        BpfHashMap::try_from(m).unwrap_or_else(|e| panic!("{name}: {e}"));
    let keys: Vec<K> = h.keys().filter_map(Result::ok).collect();
    for k in keys {
        // A key the LRU evicted meanwhile is fine.
        let _ = h.remove(&k);
    }
}

/// Forget everything packets taught: flows, endpoints, Telegram tags,
/// fragment trains. (The endpoint bitmap may keep bits: a set bit only sends
/// packets to the hash look-ups, which then find nothing.)
fn forget(f: &mut Filter) {
    f.forget_flows().expect("emptying the flow table");
    clear_hash::<EndpointKey, EndpointValue>(f, MAP_ENDPOINTS);
    clear_hash::<[u8; 16], TagValue>(f, MAP_TAGS);
}

/// The learned endpoints as `(address, port, origin)`.
fn learned(f: &Filter) -> BTreeSet<(IpAddr, u16, u8)> {
    let m = f.map(MAP_ENDPOINTS).expect("ENDPOINTS map");
    let h: BpfHashMap<&MapData, EndpointKey, EndpointValue> =
        BpfHashMap::try_from(m).expect("ENDPOINTS is a hash map");
    h.iter()
        .filter_map(Result::ok)
        .map(|(k, v)| {
            let a = std::net::Ipv6Addr::from(k.addr);
            let ip = a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4);
            (ip, k.port, v.origin)
        })
        .collect()
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn globals(f: &Filter) -> Vec<u64> {
    f.global_stats().expect("global stats")
}

/// Run `frame` and check the global counters moved by exactly `changes`
/// (packets, bytes and dropped implied). Returns the verdict.
fn run_counted(f: &Filter, what: &str, frame: &[u8], changes: &[(u32, u64)]) -> u32 {
    let before = globals(f);
    let flows_before = f.flow_occupancy().expect("occupancy").0;
    let v = f
        .run(frame)
        .unwrap_or_else(|e| panic!("{what}: test run: {e}"));
    let after = globals(f);
    let flows_after = f.flow_occupancy().expect("occupancy").0;
    for i in 0..GLOBAL_SLOTS {
        let want = match i {
            G_PACKETS => 1,
            G_BYTES => frame.len() as u64,
            G_DROPPED => u64::from(v == XDP_DROP),
            // Checked against the table itself (these tests never fill it).
            G_FLOWS_CREATED => flows_after - flows_before,
            _ => changes.iter().filter(|c| c.0 == i).map(|c| c.1).sum(),
        };
        assert_eq!(
            after[i as usize] - before[i as usize],
            want,
            "{what}: counter {}",
            GLOBAL_NAMES.get(i as usize).unwrap_or(&"?")
        );
    }
    v
}

// --- the property test --------------------------------------------------------------

/// Frames in the property test.
const PROPERTY_FRAMES: usize = 6000;

/// The XDP program and the host code decide alike, frame by frame.
///
/// The filter has no lists, so only a signature can give a packet a
/// category, and the default policy (drop, scope media): a UDP packet is
/// dropped exactly when `classify` names an app (`app != 0`). Compared per
/// frame: every global counter's change (which of non_ip, malformed, tcp,
/// udp, other_ip, fragments moved, and packets, bytes, dropped) against
/// `parse_frame`; for UDP packets the trace's label and category against
/// `classify`; and the verdict.
///
/// Exceptions, by construction rather than by tolerance:
/// - state taught by earlier frames (a flow, a learned endpoint or Telegram
///   tag, a dropped fragment train) changes later verdicts; after every
///   frame that may have taught something (an app signature) the test
///   empties those maps, so every frame meets a fresh filter;
/// - the program reads headers only up to offset 512 (`XDP_HEADER_REACH`);
///   the host side parses through the same bound (`XdpReach`), and the test
///   counts the frames where that bound changed the outcome;
/// - frames shorter than an Ethernet header never reach the program
///   (BPF_PROG_TEST_RUN refuses them; see `frame_sizes_at_the_kernel_limits`).
///
/// The head the program classifies is never zeroed between packets: each
/// frame meets the previous frame's bytes past its payload, and still has to
/// agree with the host's zero-filled head.
#[test]
fn xdp_agrees_with_the_host_classifier() {
    skip_unless_root!("xdp_agrees_with_the_host_classifier");
    let mut f = load(&lists(&[], ""), &[]);
    let mut rng = Rng::new(0x0f10_f11e_7e57_0007);
    let mut bounded_differs = 0;
    let mut by_outcome = std::collections::BTreeMap::<&str, usize>::new();
    for n in 0..PROPERTY_FRAMES {
        let sport = 1024 + (n % 60000) as u16;
        let (shape, mut frame) = base_frame(&mut rng, sport);
        let how = mutate(&mut frame, &mut rng);
        assert!(frame.len() >= 14);
        let what = format!("frame #{n} ({shape}, {how}) {}", hex(&frame));
        if parse_frame(frame.as_slice()) != parse_frame(&XdpReach(&frame)) {
            bounded_differs += 1;
        }
        let exp = host_expect(&frame);
        f.clear_trace().expect("clear trace");
        let before = globals(&f);
        let verdict = f
            .run(&frame)
            .unwrap_or_else(|e| panic!("{what}: test run: {e}"));
        let after = globals(&f);
        let trace = f.trace().expect("trace");
        for i in 0..GLOBAL_SLOTS as usize {
            assert_eq!(
                after[i] - before[i],
                exp.global[i],
                "{what}: counter {}",
                GLOBAL_NAMES.get(i).unwrap_or(&"?")
            );
        }
        assert_eq!(verdict, exp.verdict, "{what}: verdict");
        assert_eq!(trace.written, 1, "{what}: no trace written");
        let (label, category) = exp.class.map_or((0, 0), |c| (c.label, c.app));
        assert_eq!(
            (trace.label, trace.category),
            (label, category),
            "{what}: trace (label, category) vs classify {:?}",
            exp.class
        );
        let outcome = match exp.class {
            Some(c) if c.app != 0 => "udp, app signature (dropped)",
            Some(c) if c.label != 0 => "udp, generic label",
            Some(_) => "udp, nothing recognised",
            None if exp.global[G_MALFORMED as usize] == 1 => "malformed",
            None => "not udp",
        };
        *by_outcome.entry(outcome).or_default() += 1;
        // Fragments leave their datagram's state behind: fresh again.
        if verdict == XDP_DROP || trace.category != 0 || parse_frame(frame.as_slice()).is_fragment()
        {
            forget(&mut f);
        }
    }
    eprintln!(
        "{PROPERTY_FRAMES} frames agree: {by_outcome:?}; {bounded_differs} parsed differently only because of the 512-byte header bound"
    );
    assert!(
        bounded_differs > 0,
        "no frame met the 512-byte header bound"
    );
    // The generator must reach every branch worth comparing.
    for o in [
        "udp, app signature (dropped)",
        "udp, generic label",
        "udp, nothing recognised",
        "malformed",
        "not udp",
    ] {
        assert!(
            by_outcome.get(o).copied().unwrap_or(0) >= PROPERTY_FRAMES / 50,
            "too few frames ended as {o}: {by_outcome:?}"
        );
    }
}

// --- flow-table flood --------------------------------------------------------------

/// New listed 5-tuples beyond the flow table's capacity while a call is in
/// progress. `LoadOptions` has no knob for the FLOWS size, so this fills the
/// real table (2^18 slots); BPF_PROG_TEST_RUN does that in seconds.
///
/// The table is two-way set-associative: a new flow takes a free slot of
/// its bucket, else the one worth least (never an established call flow
/// while the other way holds something less), the older on a tie. The
/// flood thus replaces its own earlier flows; the program counts each live
/// categorised flow it replaces (`flows_evicted`), so created = still
/// tracked + evicted, exactly.
#[test]
fn flow_table_flood_evicts_and_a_live_call_survives() {
    skip_unless_root!("flow_table_flood_evicts_and_a_live_call_survives");
    let f = load(&lists(&[("whatsapp", "198.51.100.0/24\n")], ""), &[]);
    let caller = [192, 0, 2, 1];
    let relay = [198, 51, 100, 1];
    let ssrc = 0x5eed_ca11;
    let mut seq = 1000u16;
    let mut call = || {
        seq += 1;
        pktbuild::udp4(caller, 50000, relay, 3478, &rtp(111, seq, 0, ssrc, 80))
    };
    // RTP on a listed flow: a call after three packets of one stream.
    assert_eq!(f.run(&call()).unwrap(), XDP_PASS);
    assert_eq!(f.run(&call()).unwrap(), XDP_PASS);
    assert_eq!(f.run(&call()).unwrap(), XDP_DROP, "call confirmed");

    let before = globals(&f);
    let cat_before = f.category_stats().unwrap()[CAT_WHATSAPP as usize];
    let flood = FLOW_SLOTS as usize + FLOW_SLOTS as usize / 4;
    let tracked_before = f.flow_occupancy().expect("occupancy").0;
    // One template, patched: source address 203.0.113.x and source port vary.
    let mut frame = pktbuild::udp4(
        [203, 0, 113, 0],
        0,
        [198, 51, 100, 2],
        40000,
        &filler(20, 0xf0),
    );
    let flood_key = |i: usize| {
        let src = [203, 0, 113, (i / 60000) as u8];
        let sport = 1024 + (i % 60000) as u16;
        (src, sport)
    };
    let started = std::time::Instant::now();
    let mut call_packets = 0u64;
    for i in 0..flood {
        let (src, sport) = flood_key(i);
        frame[26..30].copy_from_slice(&src);
        frame[34..36].copy_from_slice(&sport.to_be_bytes());
        let v = f.run(&frame).expect("flood packet");
        assert_eq!(v, XDP_PASS, "flood packet {i}: not a call");
        if i % 4096 == 0 {
            call_packets += 1;
            assert_eq!(
                f.run(&call()).unwrap(),
                XDP_DROP,
                "call packet during the flood, after {i} new flows"
            );
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(
        f.run(&call()).unwrap(),
        XDP_DROP,
        "the call in progress is still recognised after the flood"
    );
    call_packets += 1;
    let after = globals(&f);
    let d = |i: u32| after[i as usize] - before[i as usize];
    assert_eq!(d(G_UDP), flood as u64 + call_packets);
    assert_eq!(d(G_DROPPED), call_packets);
    let cat = f.category_stats().unwrap()[CAT_WHATSAPP as usize];
    assert_eq!(
        cat.seen_packets - cat_before.seen_packets,
        flood as u64 + call_packets
    );
    let (tracked, capacity) = f.flow_occupancy().expect("occupancy");
    assert_eq!(capacity, FLOW_SLOTS);
    // Every flood packet created a flow; each is still tracked or was
    // counted when a newer one took its slot.
    let created = d(G_FLOWS_CREATED);
    assert_eq!(created, flood as u64, "one flow per new 5-tuple");
    let evicted = d(G_FLOWS_EVICTED);
    assert_eq!(
        created,
        tracked - tracked_before + evicted,
        "created = newly tracked + evicted"
    );
    assert!(evicted > 0 && tracked <= u64::from(capacity));
    assert!(
        tracked >= u64::from(capacity) * 3 / 4,
        "a full table keeps most of its slots in use, tracked {tracked}"
    );
    let key = |(src, sport): ([u8; 4], u16)| {
        flow_key(
            &v4_mapped(src),
            sport,
            &v4_mapped([198, 51, 100, 2]),
            40000,
            PROTO_UDP,
        )
        .0
    };
    let kept = |range: std::ops::Range<usize>| {
        range
            .filter(|&i| f.flow(&key(flood_key(i))).unwrap().is_some())
            .count()
    };
    let (oldest, newest) = (kept(0..1000), kept(flood - 1000..flood));
    assert!(
        oldest < 500 && newest > 900,
        "the flood replaces its own older flows: {oldest} of the first 1000 and {newest} of the last 1000 still tracked"
    );
    eprintln!(
        "flood: {flood} new flows in {elapsed:.1?}; {tracked} of {capacity} tracked, {evicted} evicted; the call kept dropping; {oldest}/1000 oldest and {newest}/1000 newest flood flows kept"
    );
}

// --- endpoint bits rotate ------------------------------------------------------------

/// The "may be known" bits of learned endpoints are forgotten two rotations
/// after they were last set (`Filter::rotate_bits`, which the daemon runs
/// every `BITS_ROTATE_NS`): one rotation keeps them (the other half), a
/// second clears them, so a new flow from the endpoint no longer even looks
/// it up. A call that goes on sets them again.
#[test]
fn endpoint_bits_rotate_out_after_two_periods() {
    skip_unless_root!("endpoint_bits_rotate_out_after_two_periods");
    let mut f = load(&lists(&[("whatsapp", "198.51.100.0/24\n")], ""), &[]);
    let msg = stun(stun_type::BINDING_REQUEST, TXID, &[]);
    let data = filler(100, 0x21);
    let send = |f: &Filter, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, p: &[u8]| {
        f.run(&pktbuild::udp4(src, sport, dst, dport, p))
            .expect("test run")
    };
    // A call from the client's socket 40000 teaches it (third packet).
    for _ in 0..3 {
        assert_eq!(send(&f, CLIENT4, 40000, RELAY4, 3478, &msg), XDP_DROP);
    }
    let mut peer_port = 7000;
    let mut inherits = |f: &Filter| {
        peer_port += 1;
        send(f, OTHER4, peer_port, CLIENT4, 40000, &data) == XDP_DROP
    };
    assert!(inherits(&f), "a new flow to the call's socket inherits");
    f.rotate_bits().expect("rotate");
    assert!(inherits(&f), "one rotation keeps the bit");
    f.rotate_bits().expect("rotate");
    assert!(!inherits(&f), "two rotations forget it");
    // The call goes on: its next packets teach again (the refresh is due on
    // a new flow of the same socket).
    for _ in 0..3 {
        assert_eq!(send(&f, CLIENT4, 40000, RELAY4, 3479, &msg), XDP_DROP);
    }
    assert!(inherits(&f), "taught again");
}

// --- spoofed STUN / TURN -------------------------------------------------------------

/// What packets can teach the endpoint map, and what they cannot.
///
/// The program (`may_teach`, `learn` and `remember` in filter-common and
/// filter-ebpf) learns only from call flows that have a category (a listed
/// side or an app signature), and only once the flow went both ways or
/// carried `TEACH_MIN_PACKETS` (3) packets: one spoofed packet alone teaches
/// nothing. Inherited flows never teach (no chains). A packet that may teach
/// teaches at most: the flow's unlisted side(s) (with one side listed, the
/// other one; with neither, both), the peer of the *first* attribute of a
/// TURN CreatePermission/Send when that is an IPv4 XOR-PEER-ADDRESS, and one
/// Telegram tag. Endpoints on ports below 1024 are never learned. A learned
/// endpoint passes its category to new flows to or from exactly that
/// (address, port), for 300 s after it was last refreshed.
#[test]
fn spoofed_stun_and_turn_teach_only_what_they_may() {
    skip_unless_root!("spoofed_stun_and_turn_teach_only_what_they_may");
    let mut f = load(&lists(&[("whatsapp", "198.51.100.0/24\n")], ""), &[]);
    let client = CLIENT4;
    let stranger = OTHER4;
    let peer = |last: u8| [203, 0, 113, last];
    let trace = |f: &Filter| {
        let t = f.trace().expect("trace");
        (t.category, t.label)
    };
    let data = filler(100, 0x21);
    let perm = |attrs: &[(u16, &[u8])]| stun(stun_type::CREATE_PERMISSION, TXID, attrs);
    let xpa = |last, port| xor_address_v4(peer(last), port);
    let send = |f: &Filter, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, p: &[u8]| {
        f.run(&pktbuild::udp4(src, sport, dst, dport, p))
            .expect("test run")
    };

    // 1. CreatePermissions to a listed relay, each naming three peers. The
    //    first two packets of the flow teach nothing; the third teaches its
    //    unlisted sender and its first peer; the relay is listed, not learned.
    let (p1, p2, p3) = (xpa(50, 45000), xpa(51, 45001), xpa(52, 45002));
    let msg = perm(&[
        (stun_attr::XOR_PEER_ADDRESS, &p1),
        (stun_attr::XOR_PEER_ADDRESS, &p2),
        (stun_attr::XOR_PEER_ADDRESS, &p3),
    ]);
    for n in 1..=2 {
        assert_eq!(send(&f, client, 40000, RELAY4, 3478, &msg), XDP_DROP);
        assert_eq!(
            learned(&f),
            BTreeSet::new(),
            "packet {n} of a one-way flow taught"
        );
    }
    assert_eq!(send(&f, client, 40000, RELAY4, 3478, &msg), XDP_DROP);
    assert_eq!(
        learned(&f),
        BTreeSet::from([
            (v4(client), 40000, ORIGIN_CALL),
            (v4(peer(50)), 45000, ORIGIN_TURN_PEER)
        ]),
        "third packet: its unlisted sender and the first XOR-PEER-ADDRESS"
    );
    // The named peer is a call endpoint now: a new flow to it inherits...
    assert_eq!(send(&f, stranger, 6000, peer(50), 45000, &data), XDP_DROP);
    assert_eq!(trace(&f), (CAT_WHATSAPP, LABEL_P2P_INHERITED));
    // ... but an inherited flow teaches nothing, however long it runs.
    for _ in 0..4 {
        assert_eq!(send(&f, stranger, 6000, peer(50), 45000, &data), XDP_DROP);
    }
    assert_eq!(send(&f, peer(50), 45000, stranger, 6000, &data), XDP_DROP);
    assert_eq!(
        learned(&f).len(),
        2,
        "an inherited flow taught: {:?}",
        learned(&f)
    );
    // The second and third peers, and another port of the first, are not learned.
    for (dst, port) in [(peer(51), 45001), (peer(52), 45002), (peer(50), 45001)] {
        assert_eq!(
            send(&f, stranger, 6001, dst, port, &data),
            XDP_PASS,
            "{dst:?}:{port} inherited"
        );
    }
    // The sender's socket is a call endpoint; its other sockets, and the same
    // port on another host, are not.
    assert_eq!(send(&f, stranger, 6002, client, 40000, &data), XDP_DROP);
    for (src, port) in [(client, 40001), (client, 53), (stranger, 40000)] {
        assert_eq!(
            send(&f, src, port, peer(77), 7000, &data),
            XDP_PASS,
            "{src:?}:{port} inherited"
        );
    }

    // 2. On a flow that may teach, each packet teaches at most one new peer,
    //    and never one on a port below 1024.
    let before = learned(&f);
    for (port, taught) in [(53u16, false), (123, false), (1023, false), (1024, true)] {
        let msg = perm(&[(stun_attr::XOR_PEER_ADDRESS, &xpa(60, port))]);
        assert_eq!(send(&f, client, 40000, RELAY4, 3478, &msg), XDP_DROP);
        let got = learned(&f).contains(&(v4(peer(60)), port, ORIGIN_TURN_PEER));
        assert_eq!(got, taught, "peer on port {port}");
        let v = send(&f, stranger, 6003, peer(60), port, &data);
        assert_eq!(v == XDP_DROP, taught, "a flow to the peer's port {port}");
    }
    assert_eq!(learned(&f).len(), before.len() + 1);

    // 3. The peer must be the first attribute, and IPv4.
    let user: &[u8] = b"user:pass";
    let v6peer = xor_address_v6(RELAY6, 45000, TXID);
    let before = learned(&f);
    for (what, msg) in [
        (
            "USERNAME first",
            perm(&[
                (stun_attr::USERNAME, user),
                (stun_attr::XOR_PEER_ADDRESS, &xpa(70, 45000)),
            ]),
        ),
        ("IPv6 peer", perm(&[(stun_attr::XOR_PEER_ADDRESS, &v6peer)])),
    ] {
        assert_eq!(send(&f, client, 40000, RELAY4, 3478, &msg), XDP_DROP);
        assert_eq!(learned(&f), before, "{what}: a peer was learned");
    }
    forget(&mut f);

    // 4. Call packets from a service port teach nothing, however many.
    let dns = [192, 0, 2, 53];
    for _ in 0..4 {
        assert_eq!(
            send(&f, dns, 53, RELAY4, 3478, &stun(1, TXID, &[])),
            XDP_DROP
        );
    }
    assert_eq!(learned(&f), BTreeSet::new(), "learned from port 53");
    assert_eq!(
        send(&f, dns, 53, stranger, 33333, b"\x12\x34\x81\x80"),
        XDP_PASS
    );
    forget(&mut f);

    // 5. Outside every category nothing is learned: CreatePermissions to an
    //    unlisted server are generic STUN, passed, untracked.
    let msg = perm(&[(stun_attr::XOR_PEER_ADDRESS, &xpa(80, 45000))]);
    for _ in 0..4 {
        assert_eq!(send(&f, client, 40030, peer(200), 3478, &msg), XDP_PASS);
        assert_eq!(trace(&f), (0, LABEL_STUN));
    }
    assert_eq!(learned(&f), BTreeSet::new(), "learned outside a category");

    // 6. Packets spoofed *from* a listed relay toward a socket mark nothing,
    //    however many: a one-way flow teaches only its sender (here listed),
    //    and the destination is learned only from a flow that went both
    //    ways. The victim's other flows are untouched.
    for _ in 0..5 {
        assert_eq!(
            send(&f, RELAY4, 3478, peer(90), 7000, &stun(1, TXID, &[])),
            XDP_DROP
        );
    }
    assert_eq!(
        learned(&f),
        BTreeSet::new(),
        "a spoofed flow marked its target"
    );
    assert_eq!(send(&f, stranger, 6004, peer(90), 7000, &data), XDP_PASS);
    forget(&mut f);

    // 7. A flow that went both ways teaches at once: a STUN request to the
    //    relay and its answer teach the client's socket.
    assert_eq!(
        send(&f, client, 42000, RELAY4, 3478, &stun(1, TXID, &[])),
        XDP_DROP
    );
    assert_eq!(learned(&f), BTreeSet::new());
    let answer = stun(
        0x0101,
        TXID,
        &[(stun_attr::XOR_MAPPED_ADDRESS, &xpa(1, 42000))],
    );
    assert_eq!(send(&f, RELAY4, 3478, client, 42000, &answer), XDP_DROP);
    assert_eq!(
        learned(&f),
        BTreeSet::from([(v4(client), 42000, ORIGIN_CALL)])
    );
    forget(&mut f);

    // 8. A signature between two unlisted hosts teaches its sender; the
    //    other side once it answered (a real two-way exchange).
    let ping = wa_ping(0);
    for _ in 0..3 {
        assert_eq!(send(&f, client, 41000, peer(100), 3478, &ping), XDP_DROP);
        assert_eq!(trace(&f), (CAT_WHATSAPP, LABEL_WHATSAPP_STUN));
    }
    assert_eq!(
        learned(&f),
        BTreeSet::from([(v4(client), 41000, ORIGIN_CALL)])
    );
    let pong = raw_stun(0x0802, &filler(0, 0x21));
    assert_eq!(send(&f, peer(100), 3478, client, 41000, &pong), XDP_DROP);
    assert_eq!(
        learned(&f),
        BTreeSet::from([
            (v4(client), 41000, ORIGIN_CALL),
            (v4(peer(100)), 3478, ORIGIN_CALL),
        ])
    );
}

// --- IPv6 extension chains, fragments, 0-length UDP, frame sizes -------------------------

/// Chains up to the parser's limit (6 headers) are followed; behind longer
/// ones (7, 8, 20), or behind a chain of 6 whose headers run past the
/// program's 512-byte direct-read bound, the transport is hidden: the packet
/// is counted `v6_transport_hidden` and decided by its addresses alone
/// (`hidden_verdict`). To or from an unlisted address it passes; to or from a
/// listed range it gets the category's full restriction (drop, also under
/// `flows=P%` and `loss=P%`), is counted under `monitor`, passes under `off`
/// and when allowlisted. So extension headers cannot carry call media past
/// the filter, and nothing else is touched.
#[test]
fn ipv6_extension_chains_beyond_the_limit() {
    skip_unless_root!("ipv6_extension_chains_beyond_the_limit");
    let chain = |n: usize, size: usize, src: [u8; 16], dst: [u8; 16], sport: u16| {
        (0..n)
            .fold(Builder::new().ipv6(src, dst), |b, i| {
                b.v6_ext(if i % 2 == 0 { 60 } else { 0 }, size)
            })
            .udp(sport, 3478, &wa_ping(4))
            .build()
    };
    let f = load(&lists(&[], ""), &[]);
    let parsed = [(G_UDP, 1)];
    let hidden = [(G_V6_HIDDEN, 1)];
    for n in 0..=6 {
        let frame = chain(n, 8, CLIENT6, RELAY6, 5000 + n as u16);
        assert_eq!(
            run_counted(&f, &format!("{n} headers"), &frame, &parsed),
            XDP_DROP,
            "{n} headers: the signature behind them is seen"
        );
    }
    for n in [7, 8, 20] {
        let frame = chain(n, 8, CLIENT6, RELAY6, 5100 + n as u16);
        assert!(matches!(parse_frame(frame.as_slice()), Parsed::Hidden(_)));
        assert_eq!(
            run_counted(&f, &format!("{n} headers, unlisted"), &frame, &hidden),
            XDP_PASS,
            "no list names either address"
        );
    }
    // Six headers of 88 bytes: the UDP header sits at 14 + 40 + 528.
    const { assert!(14 + 40 + 6 * 88 > XDP_HEADER_REACH) };
    let long = chain(6, 88, CLIENT6, RELAY6, 5200);
    assert!(matches!(parse_frame(long.as_slice()), Parsed::Ip(_)));
    assert!(matches!(parse_frame(&XdpReach(&long)), Parsed::Hidden(_)));
    assert_eq!(
        run_counted(&f, "6 long headers, unlisted", &long, &hidden),
        XDP_PASS,
        "headers beyond the direct-read bound: hidden, passed"
    );
    // A header length that points past the frame: malformed.
    let frame = Builder::new()
        .ipv6(CLIENT6, RELAY6)
        .v6_ext_raw(60, &[0, 255, 1, 4, 0, 0, 0, 0])
        .udp(5300, 3478, &wa_ping(4))
        .build();
    assert_eq!(
        run_counted(&f, "lying header length", &frame, &[(G_MALFORMED, 1)]),
        XDP_PASS
    );

    // Listed: the relay's /48 is whatsapp; one host in it is allowlisted.
    let relay_list = [("whatsapp", "2001:db8:1::/48\n")];
    let allowed: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    let eight = |src, dst, sport| chain(8, 8, src, dst, sport);
    for (spec, want) in [
        ("drop", XDP_DROP),
        ("drop,scope=udp", XDP_DROP),
        ("flows=50%", XDP_DROP),
        ("loss=1%", XDP_DROP),
        ("monitor", XDP_PASS),
        ("off", XDP_PASS),
    ] {
        let f = load(
            &lists(&relay_list, "2001:db8:1::9/128\n"),
            &[("whatsapp", spec)],
        );
        let cat = |f: &Filter| f.category_stats().expect("category stats")[CAT_WHATSAPP as usize];
        for (what, frame) in [
            ("to the relay", eight(CLIENT6, RELAY6, 5400)),
            ("from the relay", eight(RELAY6, CLIENT6, 5401)),
            ("6 long headers to the relay", long.clone()),
        ] {
            let before = cat(&f);
            let v = run_counted(&f, &format!("{spec}: {what}"), &frame, &hidden);
            assert_eq!(v, want, "{spec}: {what}");
            let after = cat(&f);
            assert_eq!(
                after.seen_packets - before.seen_packets,
                1,
                "{spec}: {what}: seen"
            );
            assert_eq!(
                after.dropped_packets - before.dropped_packets,
                u64::from(want == XDP_DROP),
                "{spec}: {what}: dropped"
            );
            assert_eq!(
                after.monitored_packets - before.monitored_packets,
                u64::from(spec == "monitor"),
                "{spec}: {what}: monitored"
            );
        }
        let before = cat(&f);
        assert_eq!(
            run_counted(
                &f,
                &format!("{spec}: allowlisted"),
                &eight(CLIENT6, allowed, 5402),
                &[(G_V6_HIDDEN, 1), (G_ALLOWED, 1)]
            ),
            XDP_PASS,
            "{spec}: the allowlist wins"
        );
        assert_eq!(
            run_counted(
                &f,
                &format!("{spec}: unlisted"),
                &eight(
                    CLIENT6,
                    [
                        0x20, 0x01, 0x0d, 0xb8, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
                    ],
                    5403
                ),
                &hidden
            ),
            XDP_PASS,
            "{spec}: unlisted addresses pass"
        );
        assert_eq!(
            cat(&f),
            before,
            "{spec}: nothing counted for unlisted or allowed"
        );
    }
}

/// A row of `fragments_in_every_position`: what, frame, and the verdict
/// with the counter changes.
type Case<'a> = (&'a str, Vec<u8>, (u32, &'a [(u32, u64)]));

/// First, middle and last fragments, out of order, overlapping, zero-length;
/// IPv4 and IPv6. Later fragments of a dropped first fragment's train drop;
/// everything else passes; every fragment counts once in `fragments`.
#[test]
fn fragments_in_every_position() {
    skip_unless_root!("fragments_in_every_position");
    let f = load(&lists(&[("whatsapp", "198.51.100.0/24\n")], ""), &[]);
    let call = stun(
        stun_type::BINDING_REQUEST,
        TXID,
        &[(stun_attr::USERNAME, &[0x41; 64])],
    );
    let v4frag = |id: u16, off: u16, more: bool, bytes: &[u8]| {
        Builder::new()
            .ipv4(CLIENT4, RELAY4)
            .ipv4_id(id)
            .ipv4_fragment(off, more)
            .raw(PROTO_UDP, bytes)
            .build()
    };
    let v4first = |id: u16, sport: u16, p: &[u8]| {
        Builder::new()
            .ipv4(CLIENT4, RELAY4)
            .ipv4_id(id)
            .ipv4_fragment(0, true)
            .udp(sport, 3478, p)
            .build()
    };
    let v6frag = |id: u32, off: u16, more: bool, bytes: &[u8]| {
        Builder::new()
            .ipv6(CLIENT6, RELAY6)
            .v6_fragment(off, more, id)
            .raw(PROTO_UDP, bytes)
            .build()
    };
    let v6first = |id: u32, sport: u16, p: &[u8]| {
        Builder::new()
            .ipv6(CLIENT6, RELAY6)
            .v6_ext(0, 8)
            .v6_fragment(0, true, id)
            .udp(sport, 3478, p)
            .build()
    };
    let frag = [(G_FRAGMENTS, 1)];
    let frag_dropped = [(G_FRAGMENTS, 1), (G_FRAG_DROPPED, 1)];
    let first = [(G_FRAGMENTS, 1), (G_UDP, 1)];
    // The outcomes: a verdict and its counter changes.
    let passed = (XDP_PASS, &frag[..]);
    let followed = (XDP_DROP, &frag_dropped[..]);
    let first_call = (XDP_DROP, &first[..]);
    let first_other = (XDP_PASS, &first[..]);
    let malformed = (XDP_PASS, &[(G_MALFORMED, 1)][..]);
    let data = [0x42u8; 40];
    // IPv6's listed relay is not in the v4-only list: make its trains calls by
    // signature (WhatsApp private STUN), which needs no list.
    let wa = wa_ping(60);

    let cases: Vec<Case> = vec![
        // A later fragment before its first: nothing known yet.
        ("v4 later before first", v4frag(1, 30, false, &data), passed),
        ("v4 first, call", v4first(1, 7000, &call), first_call),
        ("v4 middle", v4frag(1, 10, true, &data), followed),
        ("v4 last", v4frag(1, 20, false, &data), followed),
        (
            "v4 overlapping middle",
            v4frag(1, 10, true, &data),
            followed,
        ),
        (
            "v4 overlapping odd offset",
            v4frag(1, 11, true, &data[..8]),
            followed,
        ),
        ("v4 zero-length later", v4frag(1, 40, false, &[]), followed),
        (
            "v4 first again (flow state)",
            v4first(1, 7000, &filler(64, 3)),
            first_call,
        ),
        (
            "v4 another train's middle",
            v4frag(2, 10, true, &data),
            passed,
        ),
        (
            "v4 first, not a call",
            v4first(3, 7001, &filler(64, 3)),
            first_other,
        ),
        ("v4 its last", v4frag(3, 20, false, &data), passed),
        // A first fragment too short for its UDP header: malformed.
        ("v4 zero-length first", v4frag(4, 0, true, &[]), malformed),
        (
            "v4 first with half a UDP header",
            v4frag(4, 0, true, &[0x1b, 0x58, 0x0d, 0x96]),
            malformed,
        ),
        ("v6 later before first", v6frag(9, 30, false, &data), passed),
        (
            "v6 first, call, after hop-by-hop",
            v6first(9, 7002, &wa),
            first_call,
        ),
        ("v6 middle", v6frag(9, 10, true, &data), followed),
        ("v6 last", v6frag(9, 20, false, &data), followed),
        ("v6 overlapping", v6frag(9, 10, true, &data), followed),
        ("v6 zero-length later", v6frag(9, 50, false, &[]), followed),
        ("v6 another train", v6frag(10, 10, false, &data), passed),
        (
            "v6 first, not a call",
            v6first(11, 7003, &filler(64, 3)),
            first_other,
        ),
        ("v6 its last", v6frag(11, 20, false, &data), passed),
        // Offset 0 without More Fragments: an atomic fragment, not fragmented.
        (
            "v6 atomic fragment",
            Builder::new()
                .ipv6(CLIENT6, RELAY6)
                .v6_fragment(0, false, 12)
                .udp(7004, 3478, &filler(20, 3))
                .build(),
            (XDP_PASS, &[(G_UDP, 1)]),
        ),
        // A later fragment whose next header is another extension header.
        (
            "v6 later, next header dest-opts",
            Builder::new()
                .ipv6(CLIENT6, RELAY6)
                .v6_fragment(20, false, 9)
                .raw(60, &data)
                .build(),
            followed,
        ),
    ];
    for (what, frame, (verdict, changes)) in &cases {
        assert_eq!(
            run_counted(&f, what, frame, changes),
            *verdict,
            "{what}: verdict"
        );
    }
}

#[test]
fn zero_length_udp() {
    skip_unless_root!("zero_length_udp");
    let f = load(&lists(&[("whatsapp", "198.51.100.0/24\n")], ""), &[]);
    let before = f.category_stats().unwrap()[CAT_WHATSAPP as usize];
    let empty = pktbuild::udp4(CLIENT4, 7100, RELAY4, 3478, &[]);
    assert_eq!(
        run_counted(&f, "0-length UDP", &empty, &[(G_UDP, 1)]),
        XDP_PASS
    );
    let padded = Builder::new()
        .ipv4(CLIENT4, RELAY4)
        .udp(7101, 3478, &[])
        .pad_to(60)
        .build();
    assert_eq!(
        run_counted(&f, "0-length UDP, Ethernet padding", &padded, &[(G_UDP, 1)]),
        XDP_PASS
    );
    let empty6 = pktbuild::udp6(CLIENT6, 7102, RELAY6, 3478, &[]);
    assert_eq!(
        run_counted(&f, "0-length UDP over IPv6", &empty6, &[(G_UDP, 1)]),
        XDP_PASS
    );
    let after = f.category_stats().unwrap()[CAT_WHATSAPP as usize];
    assert_eq!(
        after.seen_packets - before.seen_packets,
        2,
        "the listed ones"
    );
    assert_eq!(after.passed_packets - before.passed_packets, 2);
    for (what, len) in [
        ("UDP length 0", 0u16),
        ("UDP length 7", 7),
        ("UDP length 9", 9),
    ] {
        let frame = Builder::new()
            .ipv4(CLIENT4, RELAY4)
            .udp(7103, 3478, &[])
            .udp_len(len)
            .build();
        assert_eq!(run_counted(&f, what, &frame, &[(G_MALFORMED, 1)]), XDP_PASS);
    }
}

/// The errno of the kernel's refusal in `e` (or one of its sources).
fn errno(e: &LoadError) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

/// A `len`-byte frame (`len` >= 1514): WhatsApp private STUN in a full-size
/// UDP/IPv4 packet, then zero bytes as an Ethernet trailer. The IP length
/// ends the packet, so the verdict does not depend on `len`.
fn sized_frame(len: usize) -> Vec<u8> {
    let mut f = pktbuild::udp4(CLIENT4, 7200, RELAY4, 3478, &wa_ping(1514 - 42 - 20));
    assert_eq!(f.len(), 1514);
    f.resize(len, 0);
    f
}

/// The largest frame BPF_PROG_TEST_RUN accepts for the program is found by
/// bisection (frames past the first page go into fragments, up to
/// MAX_SKB_FRAGS of them); at that size a call packet is still recognised;
/// one byte more is refused by the kernel (ENOMEM for "too many fragments",
/// or EINVAL) and reported as an error, never a panic or a wrong verdict.
/// Frames shorter than an Ethernet header are refused with EINVAL. Jumbo
/// frames (9000 bytes) and a real 64 KiB IPv4 datagram are handled.
#[test]
fn frame_sizes_at_the_kernel_limits() {
    skip_unless_root!("frame_sizes_at_the_kernel_limits");
    let f = load(&lists(&[], ""), &[]);
    for n in [0usize, 1, 13] {
        let e = f
            .run(&vec![0u8; n])
            .expect_err("a frame shorter than an Ethernet header");
        assert_eq!(errno(&e), Some(libc::EINVAL), "{n} bytes: {e}");
    }
    let refused = [libc::EINVAL, libc::ENOMEM];
    let ok = |len: usize| match f.run(&sized_frame(len)) {
        Ok(v) => {
            assert_eq!(v, XDP_DROP, "{len} bytes: the call packet is recognised");
            true
        }
        Err(e) => {
            assert!(
                errno(&e).is_some_and(|c| refused.contains(&c)),
                "{len} bytes: unexpected error {e}"
            );
            false
        }
    };
    assert!(ok(1514), "a full-size Ethernet frame");
    assert!(ok(9000), "a jumbo frame");
    let (mut lo, mut hi) = (9000usize, 1 << 24);
    assert!(!ok(hi), "BPF_PROG_TEST_RUN took {hi} bytes");
    while lo + 1 < hi {
        let mid = usize::midpoint(lo, hi);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let max = lo;
    assert_eq!(
        run_counted(&f, "largest frame", &sized_frame(max), &[(G_UDP, 1)]),
        XDP_DROP
    );
    let e = f
        .run(&sized_frame(max + 1))
        .expect_err("one byte over the limit");
    let code = errno(&e);
    assert!(
        code.is_some_and(|c| refused.contains(&c)),
        "{} bytes: {e}",
        max + 1
    );
    // The largest IPv4 datagram, as one frame.
    if 14 + 65535 <= max {
        let big = pktbuild::udp4(CLIENT4, 7201, RELAY4, 3478, &wa_ping(65535 - 28 - 20));
        assert_eq!(
            run_counted(&f, "64 KiB datagram", &big, &[(G_UDP, 1)]),
            XDP_DROP
        );
    }
    eprintln!(
        "BPF_PROG_TEST_RUN takes XDP frames of 14..={max} bytes here; {} bytes: {e} (errno {code:?})",
        max + 1
    );
}
