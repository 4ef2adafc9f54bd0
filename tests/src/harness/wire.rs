//! Byte-exact messages of the generator scenarios (both directions) and the
//! responder that answers them, following `../shared/MEDIA-SIGNATURES.md`.
//! Payload shapes come from `filter_common::pktbuild`; this module adds the
//! application framing (WhatsApp, Telegram, TURN, DNS, QUIC, RakNet, TLS).
//!
//! Nothing is encrypted or authenticated for real: HMACs, msg_keys and
//! ciphertexts are pseudo-random bytes from a seeded [`Rng`], which is what
//! they look like on the wire. FINGERPRINT attributes carry a real CRC-32.
//!
//! The responder answers every request datagram with exactly one datagram
//! (so a client expects as many answers as it sent); a TCP chat server
//! answers records as described at [`ChatServer`].

use std::net::{IpAddr, SocketAddr};

use filter_common::pktbuild::{
    Rtp, channel_data, dtls_record_header, quic_short_header, rtcp, stun, stun_attr, stun_type,
    xor_address_v4, xor_address_v6,
};

use crate::harness::plan::Kind;
pub use crate::kit::Rng;

/// CRC-32 (IEEE 802.3, reflected), as STUN FINGERPRINT uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// STUN helpers
// ---------------------------------------------------------------------------

/// STUN attribute PRIORITY (RFC 8445).
pub const ATTR_PRIORITY: u16 = 0x0024;
/// STUN attribute ICE-CONTROLLING (RFC 8445).
pub const ATTR_ICE_CONTROLLING: u16 = 0x802A;
/// WhatsApp's private attributes 0x4000..=0x4007.
pub const ATTR_WA_TOKEN: u16 = 0x4000;
/// WhatsApp private attribute seen after the token.
pub const ATTR_WA_3: u16 = 0x4003;
/// WhatsApp private attribute of the Allocate reply.
pub const ATTR_WA_REPLY: u16 = 0x4002;
/// The realm Telegram's TURN servers use.
pub const TELEGRAM_REALM: &[u8] = b"telegram.org";

/// The STUN message type, if `b` is a STUN message with the magic cookie
/// (any first byte, so WhatsApp's 0x08xx types count too).
pub fn stun_type_of(b: &[u8]) -> Option<u16> {
    (b.len() >= 20 && b[4..8] == [0x21, 0x12, 0xA4, 0x42]).then(|| u16::from_be_bytes([b[0], b[1]]))
}

/// The transaction id of a STUN message (call only on STUN messages).
pub fn stun_txid(b: &[u8]) -> [u8; 12] {
    let mut t = [0u8; 12];
    t.copy_from_slice(&b[8..20]);
    t
}

/// The attributes of a STUN message, in order (stops at the first that
/// does not fit).
pub fn stun_attrs_of(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 20;
    while off + 4 <= b.len() {
        let ty = u16::from_be_bytes([b[off], b[off + 1]]);
        let len = u16::from_be_bytes([b[off + 2], b[off + 3]]) as usize;
        if off + 4 + len > b.len() {
            break;
        }
        out.push((ty, &b[off + 4..off + 4 + len]));
        off += 4 + len.div_ceil(4) * 4;
    }
    out
}

/// XOR-*-ADDRESS value for `addr` (IPv4 or IPv6) in a message with `txid`.
pub fn xor_address(addr: SocketAddr, txid: [u8; 12]) -> Vec<u8> {
    match addr.ip() {
        IpAddr::V4(a) => xor_address_v4(a.octets(), addr.port()).to_vec(),
        IpAddr::V6(a) => xor_address_v6(a.octets(), addr.port(), txid).to_vec(),
    }
}

/// A STUN message with MESSAGE-INTEGRITY (random HMAC) and a real
/// FINGERPRINT appended after `attrs`.
pub fn stun_with_integrity(
    msg_type: u16,
    txid: [u8; 12],
    attrs: &[(u16, &[u8])],
    hmac: [u8; 20],
    fingerprint: bool,
) -> Vec<u8> {
    let mut all: Vec<(u16, &[u8])> = attrs.to_vec();
    all.push((stun_attr::MESSAGE_INTEGRITY, &hmac));
    if !fingerprint {
        return stun(msg_type, txid, &all);
    }
    let zero = [0u8; 4];
    all.push((stun_attr::FINGERPRINT, &zero));
    let mut m = stun(msg_type, txid, &all);
    // The CRC covers the message up to the FINGERPRINT attribute, with the
    // length field already counting it (RFC 8489 §14.7).
    let at = m.len() - 8;
    let fp = crc32(&m[..at]) ^ 0x5354_554E;
    m[at + 4..].copy_from_slice(&fp.to_be_bytes());
    m
}

// ---------------------------------------------------------------------------
// WhatsApp
// ---------------------------------------------------------------------------

/// WhatsApp private ping: type 0x0800, no attributes, 20 bytes.
pub fn wa_ping(txid: [u8; 12]) -> Vec<u8> {
    stun(0x0800, txid, &[])
}

/// WhatsApp private pong: type 0x0801, 20 bytes.
pub fn wa_pong(txid: [u8; 12]) -> Vec<u8> {
    stun(0x0801, txid, &[])
}

/// WhatsApp relay Allocate: type 0x0003 whose first attribute is 0x4000.
pub fn wa_allocate(txid: [u8; 12], token: [u8; 16]) -> Vec<u8> {
    stun(
        stun_type::ALLOCATE,
        txid,
        &[
            (ATTR_WA_TOKEN, &token),
            (ATTR_WA_3, &[0, 0, 0, 2]),
            (stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]),
        ],
    )
}

/// The relay's answer to [`wa_allocate`]: 0x0103 with XOR-MAPPED-ADDRESS
/// (0x0020) then 0x4002. With an IPv4 client 0x4002 starts at byte 32, with
/// an IPv6 client at byte 44.
pub fn wa_allocate_reply(txid: [u8; 12], mapped: SocketAddr, extra: [u8; 8]) -> Vec<u8> {
    let m = xor_address(mapped, txid);
    stun(
        stun_type::ALLOCATE_RESPONSE,
        txid,
        &[(stun_attr::XOR_MAPPED_ADDRESS, &m), (ATTR_WA_REPLY, &extra)],
    )
}

/// WhatsApp's ICE check: exactly 44 bytes, `00 01 00 18` cookie txid
/// `00 08 00 14` + 20-byte HMAC (`msg_type` 0x0001, or 0x0101 as the answer).
pub fn wa_ice_check(msg_type: u16, txid: [u8; 12], hmac: [u8; 20]) -> Vec<u8> {
    stun(msg_type, txid, &[(stun_attr::MESSAGE_INTEGRITY, &hmac)])
}

/// Relay keepalive.
pub const WA_HEALTH: &[u8] = b"health";
/// Its answer.
pub const WA_OK: &[u8] = b"OK";

/// WhatsApp audio payload type.
pub const WA_AUDIO_PT: u8 = 120;
/// Opus payload type WebRTC apps negotiate.
pub const OPUS_PT: u8 = 111;

/// An SRTP packet: RTP header, `len` random bytes of encrypted payload and
/// a 10-byte authentication tag.
pub fn srtp(pt: u8, seq: u16, ts: u32, ssrc: u32, len: usize, rng: &mut Rng) -> Vec<u8> {
    Rtp::new(pt, seq, ts, ssrc)
        .payload(&rng.bytes(len + 10))
        .build()
}

// ---------------------------------------------------------------------------
// Telegram libtgvoip reflectors
// ---------------------------------------------------------------------------

/// Reflector ping type (0xFFFFFFFE little-endian).
pub const TG_PING: [u8; 4] = [0xFE, 0xFF, 0xFF, 0xFF];
/// Reflector self-info type (`c7 72 15 c0`, 64 bytes).
pub const TG_SELF_INFO: [u8; 4] = [0xC7, 0x72, 0x15, 0xC0];
/// Reflector peer-info type (`1c 37 d9 27`, 48 bytes).
pub const TG_PEER_INFO: [u8; 4] = [0x1C, 0x37, 0xD9, 0x27];

fn tg_control(tag: [u8; 16], ty: [u8; 4]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&tag);
    b.extend_from_slice(&[0xFF; 12]);
    b.extend_from_slice(&ty);
    b
}

/// Ping to a reflector: tag, twelve 0xFF, `FE FF FF FF`, u64 query id: 40 bytes.
pub fn tg_ping(tag: [u8; 16], query_id: u64) -> Vec<u8> {
    let mut b = tg_control(tag, TG_PING);
    b.extend_from_slice(&query_id.to_le_bytes());
    b
}

/// Public-endpoint request: tag then sixteen 0xFF: 32 bytes.
pub fn tg_endpoints_request(tag: [u8; 16]) -> Vec<u8> {
    tg_control(tag, [0xFF; 4])
}

fn v6_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn v4_u32(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(_) => 0,
    }
}

/// Reflector's answer to a ping: tag, twelve 0xFF, `c7 72 15 c0`, date,
/// query id, the client's address (IPv6 or v4-mapped) and port: 64 bytes.
pub fn tg_self_info(tag: [u8; 16], date: u32, query_id: u64, client: SocketAddr) -> Vec<u8> {
    let mut b = tg_control(tag, TG_SELF_INFO);
    b.extend_from_slice(&date.to_le_bytes());
    b.extend_from_slice(&query_id.to_le_bytes());
    b.extend_from_slice(&v6_bytes(client.ip()));
    b.extend_from_slice(&u32::from(client.port()).to_le_bytes());
    b
}

/// Reflector's answer to an endpoint request: tag, twelve 0xFF,
/// `1c 37 d9 27`, the client's and the peer's IPv4 address and port (zero
/// for IPv6): 48 bytes.
pub fn tg_peer_info(tag: [u8; 16], client: SocketAddr, peer: SocketAddr) -> Vec<u8> {
    let mut b = tg_control(tag, TG_PEER_INFO);
    for a in [client, peer] {
        b.extend_from_slice(&v4_u32(a.ip()).to_le_bytes());
        b.extend_from_slice(&u32::from(a.port()).to_le_bytes());
    }
    b
}

/// Data through a reflector: tag, 16-byte msg_key, `blocks` AES blocks of
/// ciphertext (length a multiple of 16).
pub fn tg_data(tag: [u8; 16], blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + 16 * blocks);
    b.extend_from_slice(&tag);
    b.extend_from_slice(&rng.bytes(16 + 16 * blocks));
    b
}

/// Whether `b` is reflector control (twelve 0xFF after a 16-byte tag).
pub fn is_tg_control(b: &[u8]) -> bool {
    b.len() >= 32 && b[16..28].iter().all(|&x| x == 0xFF)
}

// ---------------------------------------------------------------------------
// Telegram TURN (tgcalls)
// ---------------------------------------------------------------------------

/// TURN channel the tgcalls scenario binds.
pub const TG_CHANNEL: u16 = 0x4000;
/// USERNAME the tgcalls scenario authenticates with.
pub const TG_TURN_USER: &[u8] = b"1735689600:tgcalls";

/// First Allocate: REQUESTED-TRANSPORT only (the server answers 401).
pub fn turn_allocate(txid: [u8; 12]) -> Vec<u8> {
    stun(
        stun_type::ALLOCATE,
        txid,
        &[(stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])],
    )
}

/// The 401 answer: ERROR-CODE, REALM `telegram.org`, NONCE.
pub fn turn_unauthorized(txid: [u8; 12], nonce: &[u8]) -> Vec<u8> {
    let mut err = vec![0, 0, 4, 1];
    err.extend_from_slice(b"Unauthorized");
    stun(
        stun_type::ALLOCATE_ERROR,
        txid,
        &[
            (stun_attr::ERROR_CODE, &err),
            (stun_attr::REALM, TELEGRAM_REALM),
            (stun_attr::NONCE, nonce),
        ],
    )
}

/// An authenticated TURN request: `first` attributes, then USERNAME, REALM
/// `telegram.org`, NONCE and MESSAGE-INTEGRITY.
pub fn turn_authenticated(
    msg_type: u16,
    txid: [u8; 12],
    first: &[(u16, &[u8])],
    nonce: &[u8],
    hmac: [u8; 20],
) -> Vec<u8> {
    let mut attrs: Vec<(u16, &[u8])> = first.to_vec();
    attrs.extend_from_slice(&[
        (stun_attr::USERNAME, TG_TURN_USER),
        (stun_attr::REALM, TELEGRAM_REALM),
        (stun_attr::NONCE, nonce),
    ]);
    stun_with_integrity(msg_type, txid, &attrs, hmac, false)
}

// ---------------------------------------------------------------------------
// Generic WebRTC: STUN with USERNAME/FINGERPRINT, DTLS, SRTP
// ---------------------------------------------------------------------------

/// ICE binding request as browsers send it: USERNAME, PRIORITY,
/// ICE-CONTROLLING, MESSAGE-INTEGRITY, FINGERPRINT.
pub fn webrtc_binding(txid: [u8; 12], tiebreaker: [u8; 8], hmac: [u8; 20]) -> Vec<u8> {
    stun_with_integrity(
        stun_type::BINDING_REQUEST,
        txid,
        &[
            (stun_attr::USERNAME, b"sfu1:cl1e"),
            (ATTR_PRIORITY, &[0x6e, 0x7f, 0x1e, 0xff]),
            (ATTR_ICE_CONTROLLING, &tiebreaker),
        ],
        hmac,
        true,
    )
}

/// Binding success: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
pub fn webrtc_binding_response(txid: [u8; 12], mapped: SocketAddr, hmac: [u8; 20]) -> Vec<u8> {
    let m = xor_address(mapped, txid);
    stun_with_integrity(
        stun_type::BINDING_RESPONSE,
        txid,
        &[(stun_attr::XOR_MAPPED_ADDRESS, &m)],
        hmac,
        true,
    )
}

/// DTLS handshake message types used here (the handshake header's first
/// byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Hs {
    ClientHello = 1,
    ServerHello = 2,
    /// HelloVerifyRequest.
    HelloVerify = 3,
    Certificate = 11,
    ServerKeyExchange = 12,
    ServerHelloDone = 14,
    ClientKeyExchange = 16,
    Finished = 20,
}

/// One DTLS record: 13-byte header, then `body`.
pub fn dtls_raw(content_type: u8, version: u16, epoch: u16, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut b = dtls_record_header(content_type, version, epoch, seq, body.len() as u16).to_vec();
    b.extend_from_slice(body);
    b
}

/// A DTLS handshake record holding one unfragmented handshake message
/// (12-byte handshake header, `body_len` random body bytes).
pub fn dtls_handshake(
    version: u16,
    epoch: u16,
    seq: u64,
    msg_type: Hs,
    message_seq: u16,
    body_len: usize,
    rng: &mut Rng,
) -> Vec<u8> {
    let l = (body_len as u32).to_be_bytes();
    let ms = message_seq.to_be_bytes();
    let t = msg_type as u8;
    let mut body = vec![t, l[1], l[2], l[3], ms[0], ms[1], 0, 0, 0, l[1], l[2], l[3]];
    if matches!(msg_type, Hs::ClientHello | Hs::ServerHello) {
        body.extend_from_slice(&[0xFE, 0xFD]);
        body.extend_from_slice(&rng.bytes(body_len - 2));
    } else {
        body.extend_from_slice(&rng.bytes(body_len));
    }
    dtls_raw(22, version, epoch, seq, &body)
}

// ---------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------

/// A DNS query for `name` (QTYPE `qtype`, class IN) with an EDNS OPT record.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.trim_end_matches('.').split('.') {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&[0, 1]);
    b.extend_from_slice(&DNS_OPT);
    b
}

const DNS_OPT: [u8; 11] = [0, 0, 0x29, 0x04, 0xD0, 0, 0, 0, 0, 0, 0];
/// OPT record of the big queries and answers: 4096-byte UDP payload size.
const DNS_OPT_BIG: [u8; 11] = [0, 0, 0x29, 0x10, 0x00, 0, 0, 0, 0, 0, 0];

/// DNS QTYPE TXT.
pub const DNS_TXT: u16 = 16;
/// Size of the answer to a TXT query ([`dns_response`]): over the 1500-byte
/// MTU, so the server's kernel sends it in three fragments (IPv4 and IPv6).
pub const DNS_BIG_ANSWER: usize = 4000;

/// A TXT query for `name` advertising a 4096-byte EDNS buffer: answered
/// with [`DNS_BIG_ANSWER`] bytes.
pub fn dns_big_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = dns_query(id, name, DNS_TXT);
    let at = q.len() - DNS_OPT.len();
    q[at..].copy_from_slice(&DNS_OPT_BIG);
    q
}

/// The answer to a [`dns_query`]: same id and question, one A (203.0.113.80)
/// or AAAA (2001:db8:99::80) record, then OPT.
pub fn dns_response(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 + 5 {
        return None;
    }
    let mut off = 12;
    while off < query.len() && query[off] != 0 {
        off += 1 + query[off] as usize;
    }
    let qend = off + 5;
    if qend > query.len() {
        return None;
    }
    let qtype = u16::from_be_bytes([query[off + 1], query[off + 2]]);
    let mut b = Vec::with_capacity(qend + 40);
    b.extend_from_slice(&query[..2]);
    b.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1]);
    b.extend_from_slice(&query[12..qend]);
    b.extend_from_slice(&[0xC0, 0x0C]);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&[0, 1, 0, 0, 0x01, 0x2C]);
    if qtype == DNS_TXT {
        // One TXT record of 255-byte strings making the answer exactly
        // DNS_BIG_ANSWER bytes (with the OPT record after it).
        let rdata_len = DNS_BIG_ANSWER - b.len() - 2 - DNS_OPT_BIG.len();
        b.extend_from_slice(&(rdata_len as u16).to_be_bytes());
        let mut left = rdata_len;
        let mut i = 0u8;
        while left > 0 {
            let n = (left - 1).min(255);
            b.push(n as u8);
            b.extend((0..n).map(|j| b'a' + ((j as u8).wrapping_add(i)) % 26));
            left -= n + 1;
            i = i.wrapping_add(1);
        }
        b.extend_from_slice(&DNS_OPT_BIG);
        return Some(b);
    }
    if qtype == 28 {
        b.extend_from_slice(&[
            0, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
        ]);
    } else {
        b.extend_from_slice(&[0, 4, 203, 0, 113, 80]);
    }
    b.extend_from_slice(&DNS_OPT);
    Some(b)
}

// ---------------------------------------------------------------------------
// QUIC-like
// ---------------------------------------------------------------------------

/// QUIC version 1.
pub const QUIC_V1: [u8; 4] = [0, 0, 0, 1];

/// A QUIC v1 long-header packet: `ty` 0 Initial, 2 Handshake; 2-byte
/// packet number; random protected payload making the datagram `total`
/// bytes long.
pub fn quic_long(ty: u8, dcid: &[u8], scid: &[u8], total: usize, rng: &mut Rng) -> Vec<u8> {
    let mut b = Vec::with_capacity(total);
    b.push(0xC0 | (ty & 3) << 4 | 0x01);
    b.extend_from_slice(&QUIC_V1);
    b.push(dcid.len() as u8);
    b.extend_from_slice(dcid);
    b.push(scid.len() as u8);
    b.extend_from_slice(scid);
    if ty == 0 {
        b.push(0); // token length
    }
    let rest = total - b.len() - 2;
    let len = (rest as u16) | 0x4000;
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&rng.bytes(rest));
    b
}

/// The connection ids of a long-header packet: (dcid, scid).
pub fn quic_cids(b: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let dl = *b.get(5)? as usize;
    let dcid = b.get(6..6 + dl)?.to_vec();
    let sl = *b.get(6 + dl)? as usize;
    let scid = b.get(7 + dl..7 + dl + sl)?.to_vec();
    Some((dcid, scid))
}

/// A short-header packet to `dcid`, 2-byte packet number, random payload.
pub fn quic_short(dcid: &[u8], pn: u16, payload_len: usize, rng: &mut Rng) -> Vec<u8> {
    let spin = (rng.next_u64() & 0x20) as u8;
    quic_short_header(
        spin | 0x01,
        dcid,
        &pn.to_be_bytes(),
        &rng.bytes(payload_len),
    )
}

// ---------------------------------------------------------------------------
// RakNet-like game
// ---------------------------------------------------------------------------

/// RakNet's offline-message magic.
pub const RAKNET_MAGIC: [u8; 16] = [
    0x00, 0xFF, 0xFF, 0x00, 0xFE, 0xFE, 0xFE, 0xFE, 0xFD, 0xFD, 0xFD, 0xFD, 0x12, 0x34, 0x56, 0x78,
];

/// Unconnected ping: 0x01, time, magic, client GUID (33 bytes).
pub fn raknet_ping(time: u64, guid: u64) -> Vec<u8> {
    let mut b = vec![0x01];
    b.extend_from_slice(&time.to_be_bytes());
    b.extend_from_slice(&RAKNET_MAGIC);
    b.extend_from_slice(&guid.to_be_bytes());
    b
}

/// Unconnected pong: 0x1c, time, server GUID, magic, server id string.
pub fn raknet_pong(time: u64, guid: u64) -> Vec<u8> {
    let id = b"MCPE;flowfilter harness;766;1.21.0;0;10;1;harness;Survival";
    let mut b = vec![0x1C];
    b.extend_from_slice(&time.to_be_bytes());
    b.extend_from_slice(&guid.to_be_bytes());
    b.extend_from_slice(&RAKNET_MAGIC);
    b.extend_from_slice(&(id.len() as u16).to_be_bytes());
    b.extend_from_slice(id);
    b
}

/// A frame set: 0x84, 24-bit little-endian sequence number, one reliable
/// ordered frame (flags 0x60, length in bits, reliable and ordered index,
/// channel 0) carrying `body_len` random bytes. Byte 1 (an RTP "payload
/// type" to a loose check) is the low sequence byte and bytes 2..4 (the
/// RTP "sequence number") change only every 256 packets.
pub fn raknet_frame_set(seq: u32, index: u32, body_len: usize, rng: &mut Rng) -> Vec<u8> {
    let s = seq.to_le_bytes();
    let i = index.to_le_bytes();
    let bits = ((body_len * 8) as u16).to_be_bytes();
    let mut b = vec![0x84, s[0], s[1], s[2], 0x60, bits[0], bits[1]];
    b.extend_from_slice(&[i[0], i[1], i[2], i[0], i[1], i[2], 0]);
    b.extend_from_slice(&rng.bytes(body_len));
    b
}

// ---------------------------------------------------------------------------
// TLS-like records (TCP messaging)
// ---------------------------------------------------------------------------

/// A TLS record: type, version, length, body.
pub fn tls_record(content_type: u8, version: u16, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + body.len());
    b.push(content_type);
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// ClientHello record (record version 0x0301, handshake type 1).
pub fn tls_client_hello(rng: &mut Rng) -> Vec<u8> {
    let body_len = 508usize;
    let l = (body_len as u32).to_be_bytes();
    let mut body = vec![1, l[1], l[2], l[3], 3, 3];
    body.extend_from_slice(&rng.bytes(body_len - 2));
    tls_record(22, 0x0301, &body)
}

/// The server's flight: ServerHello, ChangeCipherSpec, then encrypted
/// handshake as application data (three records in one write).
pub fn tls_server_flight(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut sh = vec![2, 0, 0, 118, 3, 3];
    sh.extend_from_slice(&rng.bytes(116));
    vec![
        tls_record(22, 0x0303, &sh),
        tls_record(20, 0x0303, &[1]),
        tls_record(23, 0x0303, &rng.bytes(2100)),
    ]
}

/// An application-data record of `len` random bytes.
pub fn tls_app_data(len: usize, rng: &mut Rng) -> Vec<u8> {
    tls_record(23, 0x0303, &rng.bytes(len))
}

/// What the chat server sends back for one client record: the server flight
/// for a ClientHello, nothing for ChangeCipherSpec, an application-data
/// record of the same size for application data ("delivered" receipt).
pub struct ChatServer;

impl ChatServer {
    /// Answer records for `record` (a whole record from the client).
    pub fn answer(record: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
        match record.first() {
            Some(22) => tls_server_flight(rng),
            Some(23) => vec![tls_app_data(record.len() - 5, rng)],
            _ => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// Calls over TCP (`--evasion tcp`)
// ---------------------------------------------------------------------------

/// How a TCP stream is cut into the records both sides count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// TLS records (5-byte header, 16-bit length at 3).
    Tls,
    /// RFC 4571 (ICE-TCP): a 16-bit big-endian length, then the message.
    Rfc4571,
    /// Telegram's TCP reflector, client to server: the 20-byte hello
    /// ([`tg_tcp_hello`]) first, then [`Framing::Le32`].
    TgTcp,
    /// Packets each after a 32-bit little-endian length: what the
    /// reflector sends back, and MTProto's intermediate and padded
    /// intermediate transports after their 4-byte tag.
    Le32,
    /// The chat server: TLS records, WhatsApp's Noise frames or an MTProto
    /// transport, told by the stream's first bytes ([`Framing::sniff`]).
    Chat,
    /// WhatsApp's Noise transport, client to server: the 4-byte header
    /// [`WA_NOISE_HEADER`] and the first frame as the first record, then
    /// [`Framing::WaFrames`].
    WaNoise,
    /// Frames after a 24-bit big-endian length (WhatsApp's Noise transport).
    WaFrames,
    /// MTProto abridged, client to server: the `0xef` tag and the first
    /// packet as the first record, then [`Framing::AbridgedFrames`].
    Abridged,
    /// MTProto abridged packets: a length byte counting 4-byte words (or
    /// `0x7f` and a 24-bit little-endian count).
    AbridgedFrames,
    /// MTProto intermediate or padded intermediate, client to server: the
    /// 4-byte tag and the first packet as the first record, then
    /// [`Framing::Le32`].
    Intermediate,
    /// TURN over TCP without framing (RFC 5766 §2.1): STUN messages (20 +
    /// length) and ChannelData (4 + length, padded to 4).
    Stun,
}

impl Framing {
    /// The length of the record at the start of `buf` (the stream's first
    /// record if `first`), once enough of it is there to tell.
    pub fn record_len(self, buf: &[u8], first: bool) -> Option<usize> {
        // The transport's tag before the first record.
        let tag = match self {
            _ if !first => 0,
            Framing::WaNoise | Framing::Intermediate => 4,
            Framing::Abridged => 1,
            _ => 0,
        };
        let b = buf.get(tag..)?;
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]) as usize;
        let n = match self {
            Framing::Tls => (b.len() >= 5).then(|| 5 + be16(3))?,
            Framing::Rfc4571 => (b.len() >= 2).then(|| 2 + be16(0))?,
            Framing::TgTcp if first => TG_TCP_HELLO_LEN,
            Framing::TgTcp | Framing::Le32 | Framing::Intermediate => le32_frame(b)?,
            Framing::Chat => return Framing::sniff(b)?.record_len(b, first),
            Framing::WaNoise | Framing::WaFrames => be24_frame(b)?,
            Framing::Abridged | Framing::AbridgedFrames => abridged_frame(b)?,
            Framing::Stun if b.len() < 4 => return None,
            Framing::Stun if b[0] & 0xC0 == 0x40 => (4 + be16(2)).next_multiple_of(4),
            Framing::Stun => 20 + be16(2),
        };
        Some(tag + n)
    }
}

impl Framing {
    /// What the chat server's client speaks, from the stream's first bytes
    /// (`None` until there are enough): WhatsApp's Noise header, an MTProto
    /// transport tag; otherwise TLS records.
    pub fn sniff(buf: &[u8]) -> Option<Framing> {
        let first = *buf.first()?;
        Some(match first {
            0xEF => Framing::Abridged,
            b'W' if buf.get(1)? == &b'A' => Framing::WaNoise,
            0xEE | 0xDD if buf.get(..4)? == [first; 4] => Framing::Intermediate,
            _ => Framing::Tls,
        })
    }

    /// The framing of what the server sends back on a stream the client
    /// speaks `self` on.
    #[must_use]
    pub fn answers(self) -> Framing {
        match self {
            Framing::TgTcp | Framing::Intermediate => Framing::Le32,
            Framing::WaNoise => Framing::WaFrames,
            Framing::Abridged => Framing::AbridgedFrames,
            f => f,
        }
    }
}

fn le32_frame(buf: &[u8]) -> Option<usize> {
    let b = buf.get(..4)?;
    Some(4 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn be24_frame(buf: &[u8]) -> Option<usize> {
    let b = buf.get(..3)?;
    Some(3 + (usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2])))
}

fn abridged_frame(buf: &[u8]) -> Option<usize> {
    match *buf.first()? {
        0x7F => {
            let b = buf.get(1..4)?;
            Some(4 + 4 * (usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16))
        }
        n => Some(1 + 4 * usize::from(n)),
    }
}

// ---------------------------------------------------------------------------
// Messaging over TCP besides TLS: WhatsApp's Noise transport, MTProto
// ---------------------------------------------------------------------------

/// WhatsApp's Noise transport header: `WA`, protocol version 6, dictionary
/// version 3.
pub const WA_NOISE_HEADER: [u8; 4] = [b'W', b'A', 6, 3];

/// One WhatsApp Noise frame: 24-bit big-endian length, then `payload`.
pub fn wa_frame(payload: &[u8]) -> Vec<u8> {
    let n = payload.len().to_be_bytes();
    let mut b = Vec::with_capacity(3 + payload.len());
    b.extend_from_slice(&n[n.len() - 3..]);
    b.extend_from_slice(payload);
    b
}

/// The first record of a WhatsApp Noise connection: the header, then a
/// frame with the handshake's ClientHello (protobuf field 2: the 32-byte
/// ephemeral key).
pub fn wa_noise_hello(rng: &mut Rng) -> Vec<u8> {
    let mut hello = vec![0x12, 0x22, 0x0A, 0x20];
    hello.extend_from_slice(&rng.bytes(32));
    let mut b = WA_NOISE_HEADER.to_vec();
    b.extend_from_slice(&wa_frame(&hello));
    b
}

/// An MTProto TCP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mtproto {
    /// `0xef`, then packets after a length byte in 4-byte words.
    Abridged,
    /// `ee ee ee ee`, then packets after a 32-bit little-endian length.
    Intermediate,
    /// `dd dd dd dd`, then packets with 0 to 15 random padding bytes after
    /// a 32-bit little-endian length counting them.
    Padded,
}

impl Mtproto {
    /// The transport's tag, sent once at the stream's start.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Mtproto::Abridged => &[0xEF],
            Mtproto::Intermediate => &[0xEE; 4],
            Mtproto::Padded => &[0xDD; 4],
        }
    }

    /// `packet` (a multiple of 4 bytes) framed by the transport.
    pub fn frame(self, packet: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut b = Vec::with_capacity(packet.len() + 20);
        match self {
            Mtproto::Abridged => {
                let words = packet.len() / 4;
                if words < 0x7F {
                    b.push(words as u8);
                } else {
                    b.push(0x7F);
                    b.extend_from_slice(&(words as u32).to_le_bytes()[..3]);
                }
                b.extend_from_slice(packet);
            }
            Mtproto::Intermediate => {
                b.extend_from_slice(&(packet.len() as u32).to_le_bytes());
                b.extend_from_slice(packet);
            }
            Mtproto::Padded => {
                let pad = rng.range(0, 15);
                b.extend_from_slice(&((packet.len() + pad) as u32).to_le_bytes());
                b.extend_from_slice(packet);
                b.extend_from_slice(&rng.bytes(pad));
            }
        }
        b
    }

    /// How the client's stream is cut.
    pub fn framing(self) -> Framing {
        match self {
            Mtproto::Abridged => Framing::Abridged,
            Mtproto::Intermediate | Mtproto::Padded => Framing::Intermediate,
        }
    }
}

/// An unencrypted MTProto message: auth_key_id 0, message id, length,
/// then `body`.
fn mtproto_plain(body: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    let msg_id = (1_735_689_600u64 << 32) | (rng.next_u64() & 0xFFFF_FFFC);
    b.extend_from_slice(&msg_id.to_le_bytes());
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// `req_pq_multi` with a random nonce: the first message of a new key.
pub fn mtproto_req_pq(rng: &mut Rng) -> Vec<u8> {
    let mut body = 0xBE7E_8EF1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&rng.bytes(16));
    mtproto_plain(&body, rng)
}

/// `resPQ`: the nonces, pq and one fingerprint.
pub fn mtproto_res_pq(rng: &mut Rng) -> Vec<u8> {
    let mut body = 0x0516_2463u32.to_le_bytes().to_vec();
    body.extend_from_slice(&rng.bytes(32));
    body.extend_from_slice(&[8, 0x17, 0xED, 0x48, 0x94, 0x1A, 0x08, 0xF9, 0x81, 0, 0, 0]);
    body.extend_from_slice(&[0x15, 0xC4, 0xB5, 0x1C, 1, 0, 0, 0]);
    body.extend_from_slice(&rng.bytes(8));
    mtproto_plain(&body, rng)
}

/// An encrypted MTProto message: auth_key_id, msg_key, `blocks` AES blocks.
pub fn mtproto_encrypted(blocks: usize, rng: &mut Rng) -> Vec<u8> {
    rng.bytes(24 + 16 * blocks)
}

/// The MTProto packet inside a transport record of `framing` (`first`:
/// the stream's first, which starts with the transport's tag).
fn mtproto_packet(framing: Framing, record: &[u8], first: bool) -> &[u8] {
    let (tag, abridged) = match framing {
        Framing::Abridged => (1, true),
        Framing::AbridgedFrames => (0, true),
        _ => (4, false),
    };
    let rest = record
        .get(if first { tag } else { 0 }..)
        .unwrap_or_default();
    let len_bytes = if abridged && rest.first() != Some(&0x7F) {
        1
    } else {
        4
    };
    rest.get(len_bytes..).unwrap_or_default()
}

/// `msg` with an RFC 4571 length prefix.
pub fn frame_4571(msg: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + msg.len());
    b.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    b.extend_from_slice(msg);
    b
}

/// Length of Telegram's TCP reflector hello.
pub const TG_TCP_HELLO_LEN: usize = 20;

/// The first payload of a Telegram TCP reflector connection: the call's
/// 16-byte peer tag, then four zero bytes.
pub fn tg_tcp_hello(tag: [u8; 16]) -> Vec<u8> {
    let mut b = tag.to_vec();
    b.extend_from_slice(&[0; 4]);
    b
}

/// A reflector packet on the TCP connection: 32-bit little-endian length,
/// then the packet.
pub fn frame_tg(packet: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + packet.len());
    b.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    b.extend_from_slice(packet);
    b
}

/// What a TCP service of `kind` sends back for one whole `record` from the
/// client (`first`: the stream's first record). The chat server answers as
/// [`ChatServer`]; the call servers answer the unframed message as their UDP
/// counterparts and frame the answer the same way (the Telegram hello gets
/// none).
pub fn answer_tcp(
    kind: Kind,
    st: &mut PeerState,
    record: &[u8],
    first: bool,
    framing: Framing,
    peer: SocketAddr,
    local: SocketAddr,
) -> Vec<Vec<u8>> {
    match (kind, framing) {
        (Kind::Chat, Framing::WaNoise) if first => {
            // ServerHello: ephemeral key, encrypted static key and payload.
            let mut hello = vec![0x1A, 0x80, 0x02];
            hello.extend_from_slice(&st.rng.bytes(250));
            return vec![wa_frame(&hello)];
        }
        (Kind::Chat, Framing::WaNoise) => {
            let n = record.len().saturating_sub(3);
            return vec![wa_frame(&st.rng.bytes(n))];
        }
        (Kind::Chat, Framing::Abridged | Framing::Intermediate) => {
            let t = match (framing, record.first()) {
                (Framing::Abridged, _) => Mtproto::Abridged,
                (_, Some(0xDD)) if first => Mtproto::Padded,
                _ => Mtproto::Intermediate,
            };
            let packet = mtproto_packet(framing, record, first);
            let reply = if first {
                mtproto_res_pq(&mut st.rng)
            } else {
                mtproto_encrypted(packet.len().saturating_sub(24) / 16, &mut st.rng)
            };
            // Padded replies carry no padding (0 bytes is allowed).
            let t = if t == Mtproto::Padded {
                Mtproto::Intermediate
            } else {
                t
            };
            return vec![t.frame(&reply, &mut st.rng)];
        }
        _ => {}
    }
    match kind {
        Kind::WaRelayTcp => {
            let inner = record.get(2..).unwrap_or_default();
            vec![frame_4571(&answer(Kind::WaRelay, st, inner, peer, local))]
        }
        Kind::TgReflectorTcp if first => Vec::new(),
        Kind::TgReflectorTcp => {
            let inner = record.get(4..).unwrap_or_default();
            vec![frame_tg(&answer(Kind::TgReflector, st, inner, peer, local))]
        }
        Kind::TgTurnTcp => {
            let mut a = answer(Kind::TgTurn, st, record, peer, local);
            while !a.len().is_multiple_of(4) {
                a.push(0);
            }
            vec![a]
        }
        _ => ChatServer::answer(record, &mut st.rng),
    }
}

/// The TCP framing of what a service kind's clients send.
pub fn framing_of(kind: Kind) -> Framing {
    match kind {
        Kind::WaRelayTcp => Framing::Rfc4571,
        Kind::TgReflectorTcp => Framing::TgTcp,
        Kind::TgTurnTcp => Framing::Stun,
        _ => Framing::Chat,
    }
}

// ---------------------------------------------------------------------------
// Decoys (`--evasion decoys`)
// ---------------------------------------------------------------------------

/// The first 8 bytes of every decoy of a run with `seed`: random-looking,
/// the same for the generator and the responder (both get the run's seed),
/// so the responder can count decoys apart and leave them unanswered.
pub fn decoy_marker(seed: u64) -> [u8; 8] {
    Rng::new(seed ^ 0x6465_636f_7973_2121).array()
}

/// A decoy: the marker, then 12 to 180 random bytes.
pub fn decoy(marker: [u8; 8], rng: &mut Rng) -> Vec<u8> {
    let mut b = marker.to_vec();
    let n = rng.range(12, 180);
    b.extend_from_slice(&rng.bytes(n));
    b
}

// ---------------------------------------------------------------------------
// The responder
// ---------------------------------------------------------------------------

/// Per-peer state of a UDP responder socket.
#[derive(Clone, Debug)]
pub struct PeerState {
    rng: Rng,
    ssrc: u32,
    seq: u16,
    ts: u32,
    game_seq: u32,
    quic_cid: [u8; 8],
    quic_peer_cid: Vec<u8>,
    quic_pn: u16,
    dtls_cookie_sent: bool,
    dtls_seq: u64,
}

impl PeerState {
    /// Fresh state for a new peer; `seed` makes answers reproducible.
    pub fn new(seed: u64) -> PeerState {
        let mut rng = Rng::new(seed);
        PeerState {
            ssrc: rng.next_u64() as u32,
            seq: rng.next_u64() as u16,
            ts: rng.next_u64() as u32,
            quic_cid: rng.array(),
            rng,
            game_seq: 0,
            quic_peer_cid: Vec::new(),
            quic_pn: 0,
            dtls_cookie_sent: false,
            dtls_seq: 0,
        }
    }

    fn rtp(&mut self, pt: u8, len: usize) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(960);
        srtp(pt, self.seq, self.ts, self.ssrc, len, &mut self.rng)
    }

    fn hmac(&mut self) -> [u8; 20] {
        self.rng.array()
    }
}

fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 12 && b[0] & 0xC0 == 0x80 && !(200..=207).contains(&b[1])
}

fn is_rtcp(b: &[u8]) -> bool {
    b.len() >= 8 && b[0] & 0xC0 == 0x80 && (200..=207).contains(&b[1])
}

/// The one datagram a `kind` socket at `local` sends back to `peer` for
/// `req`. Unknown requests are echoed.
pub fn answer(
    kind: Kind,
    st: &mut PeerState,
    req: &[u8],
    peer: SocketAddr,
    local: SocketAddr,
) -> Vec<u8> {
    let reply = match kind {
        Kind::WaRelay => answer_wa_relay(st, req, peer),
        Kind::TgReflector => answer_tg_reflector(req, peer, local),
        Kind::TgTurn => answer_tg_turn(st, req, peer, local),
        Kind::Sfu => answer_sfu(st, req, peer),
        Kind::Peer => Some(answer_peer(st, req, peer)),
        Kind::Dns => dns_response(req),
        Kind::Quic => answer_quic(st, req),
        Kind::Game => answer_game(st, req),
        Kind::Chat | Kind::WaRelayTcp | Kind::TgReflectorTcp | Kind::TgTurnTcp => None,
    };
    reply.unwrap_or_else(|| req.to_vec())
}

fn answer_wa_relay(st: &mut PeerState, req: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    if req == WA_HEALTH {
        return Some(WA_OK.to_vec());
    }
    if let Some(ty) = stun_type_of(req) {
        let txid = stun_txid(req);
        return Some(match ty {
            0x0800 => wa_pong(txid),
            stun_type::ALLOCATE => {
                let extra = st.rng.array();
                wa_allocate_reply(txid, peer, extra)
            }
            stun_type::BINDING_REQUEST if req.len() == 44 => {
                let h = st.hmac();
                wa_ice_check(stun_type::BINDING_RESPONSE, txid, h)
            }
            _ => return None,
        });
    }
    is_rtp(req).then(|| st.rtp(req[1] & 0x7F, req.len() - 22))
}

fn answer_tg_reflector(req: &[u8], peer: SocketAddr, local: SocketAddr) -> Option<Vec<u8>> {
    let mut tag = [0u8; 16];
    tag.copy_from_slice(req.get(..16)?);
    if is_tg_control(req) && req.len() == 40 && req[28..32] == TG_PING {
        let mut q = [0u8; 8];
        q.copy_from_slice(&req[32..40]);
        return Some(tg_self_info(
            tag,
            1_735_689_600,
            u64::from_le_bytes(q),
            peer,
        ));
    }
    if is_tg_control(req) && req.len() == 32 {
        // The "other party" of the harness call sits behind the same relay.
        let other = SocketAddr::new(local.ip(), 40_000);
        return Some(tg_peer_info(tag, peer, other));
    }
    if req.len() >= 48 && req.len().is_multiple_of(16) {
        // Relayed data from the other party: same tag, fresh key and ciphertext.
        let mut rng = Rng::new(u64::from_le_bytes(req[16..24].try_into().ok()?));
        return Some(tg_data(tag, (req.len() - 32) / 16, &mut rng));
    }
    None
}

fn answer_tg_turn(
    st: &mut PeerState,
    req: &[u8],
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<Vec<u8>> {
    if let Some(ty) = stun_type_of(req) {
        let txid = stun_txid(req);
        let attrs = stun_attrs_of(req);
        let authed = attrs
            .iter()
            .any(|(t, _)| *t == stun_attr::MESSAGE_INTEGRITY);
        let h = st.hmac();
        return Some(match ty {
            stun_type::ALLOCATE if !authed => turn_unauthorized(txid, b"a6f1b6c0e9d24c51"),
            stun_type::ALLOCATE => {
                let relayed = xor_address(SocketAddr::new(local.ip(), 50_000), txid);
                let mapped = xor_address(peer, txid);
                stun_with_integrity(
                    stun_type::ALLOCATE_RESPONSE,
                    txid,
                    &[
                        (stun_attr::XOR_RELAYED_ADDRESS, &relayed),
                        (stun_attr::XOR_MAPPED_ADDRESS, &mapped),
                        (stun_attr::LIFETIME, &600u32.to_be_bytes()),
                    ],
                    h,
                    false,
                )
            }
            // Success response of the method: class bits 0b10 (0x0100).
            t if t & 0x0110 == 0 => stun_with_integrity(t | 0x0100, txid, &[], h, false),
            _ => return None,
        });
    }
    if req.len() >= 4 && (0x40..=0x4F).contains(&req[0]) {
        let inner_len = u16::from_be_bytes([req[2], req[3]]) as usize;
        let media = st.rtp(OPUS_PT, inner_len.saturating_sub(22).max(20));
        return Some(channel_data(u16::from_be_bytes([req[0], req[1]]), &media));
    }
    None
}

fn answer_sfu(st: &mut PeerState, req: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    if stun_type_of(req) == Some(stun_type::BINDING_REQUEST) {
        let h = st.hmac();
        return Some(webrtc_binding_response(stun_txid(req), peer, h));
    }
    if req.len() >= 25 && req[0] == 22 && req[1] == 0xFE {
        let v = 0xFEFD;
        let msg = req[13];
        let mut out = Vec::new();
        let rec = |st: &mut PeerState, ep: u16, ty: Hs, ms: u16, len: usize| {
            let r = dtls_handshake(v, ep, st.dtls_seq, ty, ms, len, &mut st.rng);
            st.dtls_seq += 1;
            r
        };
        if msg == Hs::ClientHello as u8 && !st.dtls_cookie_sent {
            st.dtls_cookie_sent = true;
            out = rec(st, 0, Hs::HelloVerify, 0, 35);
        } else if msg == Hs::ClientHello as u8 {
            for (ty, ms, len) in [
                (Hs::ServerHello, 1, 90),
                (Hs::Certificate, 2, 420),
                (Hs::ServerKeyExchange, 3, 110),
                (Hs::ServerHelloDone, 4, 0),
            ] {
                out.extend_from_slice(&rec(st, 0, ty, ms, len));
            }
        } else {
            out.extend_from_slice(&dtls_raw(20, v, 0, st.dtls_seq, &[1]));
            st.dtls_seq = 0;
            out.extend_from_slice(&rec(st, 1, Hs::Finished, 5, 12));
        }
        return Some(out);
    }
    if is_rtcp(req) {
        let body = st.rng.bytes(24);
        return Some(rtcp(201, 1, st.ssrc, &body));
    }
    is_rtp(req).then(|| st.rtp(req[1] & 0x7F, req.len().saturating_sub(22)))
}

fn answer_peer(st: &mut PeerState, req: &[u8], peer: SocketAddr) -> Vec<u8> {
    if req.len() == 44 && stun_type_of(req) == Some(stun_type::BINDING_REQUEST) {
        let h = st.hmac();
        return wa_ice_check(stun_type::BINDING_RESPONSE, stun_txid(req), h);
    }
    if stun_type_of(req) == Some(stun_type::BINDING_REQUEST) {
        let h = st.hmac();
        return webrtc_binding_response(stun_txid(req), peer, h);
    }
    if is_rtp(req) {
        return st.rtp(req[1] & 0x7F, req.len().saturating_sub(22));
    }
    // Opaque (encrypted from byte 0): the other party's datagram of that size.
    st.rng.bytes(req.len())
}

fn answer_quic(st: &mut PeerState, req: &[u8]) -> Option<Vec<u8>> {
    let first = *req.first()?;
    if first & 0x80 != 0 {
        let (_, scid) = quic_cids(req)?;
        st.quic_peer_cid = scid;
        let ty = (first >> 4) & 3;
        if ty == 0 {
            // Initial + Handshake coalesced in one datagram.
            let cid = st.quic_cid;
            let peer = st.quic_peer_cid.clone();
            let mut b = quic_long(0, &peer, &cid, 160, &mut st.rng);
            b.extend_from_slice(&quic_long(2, &peer, &cid, 1040, &mut st.rng));
            return Some(b);
        }
    }
    st.quic_pn = st.quic_pn.wrapping_add(1);
    let peer = st.quic_peer_cid.clone();
    let len = req.len().clamp(30, 1100) - 11;
    Some(quic_short(&peer, st.quic_pn, len, &mut st.rng))
}

fn answer_game(st: &mut PeerState, req: &[u8]) -> Option<Vec<u8>> {
    match req.first()? {
        0x01 if req.len() >= 9 => {
            let t = u64::from_be_bytes(req[1..9].try_into().ok()?);
            Some(raknet_pong(t, 0x5EED_0000_0000_0001))
        }
        0x84 => {
            let seq = st.game_seq;
            st.game_seq += 1;
            let len = st.rng.range(60, 180);
            Some(raknet_frame_set(seq, seq, len, &mut st.rng))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use filter_common::classify::{
        HEAD_LEN, LABEL_DTLS, LABEL_RTCP, LABEL_RTP, LABEL_STUN, classify,
    };

    use super::*;

    const CLIENT4: &str = "192.0.2.2:40000";
    const CLIENT6: &str = "[2001:db8:c1::2]:40000";

    fn class(b: &[u8], port: u16) -> filter_common::classify::Class {
        let mut head = [0u8; HEAD_LEN];
        let n = b.len().min(HEAD_LEN);
        head[..n].copy_from_slice(&b[..n]);
        classify(&head, b.len(), 40_000, port)
    }

    fn be16(b: &[u8], i: usize) -> u16 {
        u16::from_be_bytes([b[i], b[i + 1]])
    }

    fn assert_stun_shape(b: &[u8]) {
        assert_eq!(&b[4..8], &[0x21, 0x12, 0xA4, 0x42], "magic cookie");
        assert_eq!(be16(b, 2) as usize + 20, b.len(), "STUN length");
        assert_eq!(be16(b, 2) % 4, 0, "STUN length multiple of 4");
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn whatsapp_private_stun_ping_and_pong() {
        let p = wa_ping([7; 12]);
        assert_eq!(p.len(), 20);
        assert_eq!(&p[..4], &[0x08, 0x00, 0x00, 0x00]);
        assert_stun_shape(&p);
        assert_eq!(&p[8..20], &[7; 12]);
        let q = wa_pong([7; 12]);
        assert_eq!(&q[..4], &[0x08, 0x01, 0x00, 0x00]);
        assert_eq!(q.len(), 20);
    }

    #[test]
    fn whatsapp_allocate_and_reply() {
        let a = wa_allocate([1; 12], [2; 16]);
        assert_eq!(be16(&a, 0), 0x0003);
        assert_eq!(be16(&a, 20), 0x4000, "first attribute");
        assert_stun_shape(&a);
        let r4 = wa_allocate_reply([1; 12], CLIENT4.parse().unwrap(), [3; 8]);
        assert_eq!(be16(&r4, 0), 0x0103);
        assert_eq!(be16(&r4, 20), 0x0020);
        assert_eq!(
            be16(&r4, 32),
            0x4002,
            "0x4002 follows an IPv4 XOR-MAPPED-ADDRESS"
        );
        assert_stun_shape(&r4);
        let r6 = wa_allocate_reply([1; 12], CLIENT6.parse().unwrap(), [3; 8]);
        assert_eq!(be16(&r6, 20), 0x0020);
        assert_eq!(
            be16(&r6, 44),
            0x4002,
            "0x4002 follows an IPv6 XOR-MAPPED-ADDRESS"
        );
    }

    #[test]
    fn whatsapp_ice_check_is_the_44_byte_form() {
        for ty in [0x0001, 0x0101] {
            let c = wa_ice_check(ty, [9; 12], [5; 20]);
            assert_eq!(c.len(), 44);
            let t = ty.to_be_bytes();
            assert_eq!(&c[..8], &[t[0], t[1], 0x00, 0x18, 0x21, 0x12, 0xA4, 0x42]);
            assert_eq!(&c[8..20], &[9; 12]);
            assert_eq!(&c[20..24], &[0x00, 0x08, 0x00, 0x14]);
            assert_eq!(&c[24..], &[5; 20]);
        }
    }

    #[test]
    fn rtp_media_and_keepalive() {
        let mut rng = Rng::new(3);
        let p = srtp(WA_AUDIO_PT, 100, 1000, 0xDEAD_BEEF, 50, &mut rng);
        assert_eq!(p[0], 0x80);
        assert_eq!(p[1] & 0x7F, 120);
        assert_eq!(be16(&p, 2), 100);
        assert_eq!(&p[8..12], &0xDEAD_BEEFu32.to_be_bytes());
        assert_eq!(p.len(), 12 + 50 + 10);
        assert_eq!(class(&p, 3478).label, LABEL_RTP);
        assert_eq!(WA_HEALTH, b"health");
        assert_eq!(WA_OK, b"OK");
    }

    #[test]
    fn telegram_reflector_control_and_data() {
        let tag = [0xA5; 16];
        let ping = tg_ping(tag, 42);
        assert_eq!(ping.len(), 40);
        assert_eq!(&ping[..16], &tag);
        assert_eq!(&ping[16..28], &[0xFF; 12]);
        assert_eq!(&ping[28..32], &[0xFE, 0xFF, 0xFF, 0xFF]);
        let req = tg_endpoints_request(tag);
        assert_eq!(req.len(), 32);
        assert_eq!(&req[16..32], &[0xFF; 16]);
        let me: SocketAddr = CLIENT4.parse().unwrap();
        let s = tg_self_info(tag, 1, 42, me);
        assert_eq!(s.len(), 64);
        assert_eq!(&s[16..28], &[0xFF; 12]);
        assert_eq!(&s[28..32], &[0xC7, 0x72, 0x15, 0xC0]);
        let p = tg_peer_info(tag, me, me);
        assert_eq!(p.len(), 48);
        assert_eq!(&p[28..32], &[0x1C, 0x37, 0xD9, 0x27]);
        let mut rng = Rng::new(1);
        for blocks in 3..=6 {
            let d = tg_data(tag, blocks, &mut rng);
            assert_eq!(&d[..16], &tag);
            assert_eq!(d.len(), 32 + 16 * blocks);
            assert!(d.len().is_multiple_of(16));
            assert!(!is_tg_control(&d));
        }
    }

    #[test]
    fn telegram_turn_realm_and_peer_address() {
        let u = turn_unauthorized([1; 12], b"nonce");
        assert_stun_shape(&u);
        assert_eq!(be16(&u, 0), 0x0113);
        let attrs = stun_attrs_of(&u);
        assert!(attrs.contains(&(stun_attr::REALM, TELEGRAM_REALM)));
        let tx = [4; 12];
        let peer: SocketAddr = "198.51.100.201:46000".parse().unwrap();
        let x = xor_address(peer, tx);
        let perm = turn_authenticated(
            stun_type::CREATE_PERMISSION,
            tx,
            &[(stun_attr::XOR_PEER_ADDRESS, &x)],
            b"n",
            [0; 20],
        );
        assert_stun_shape(&perm);
        assert_eq!(be16(&perm, 20), 0x0012, "XOR-PEER-ADDRESS first");
        // The peer at bytes 26..32, XORed with the cookie.
        assert_eq!(be16(&perm, 26) ^ 0x2112, 46000);
        let ip: Vec<u8> = perm[28..32]
            .iter()
            .zip([0x21, 0x12, 0xA4, 0x42])
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(ip, [198, 51, 100, 201]);
        assert!(stun_attrs_of(&perm).contains(&(stun_attr::REALM, TELEGRAM_REALM)));
    }

    #[test]
    fn webrtc_binding_has_username_and_a_valid_fingerprint() {
        let b = webrtc_binding([2; 12], [3; 8], [4; 20]);
        assert_stun_shape(&b);
        let attrs = stun_attrs_of(&b);
        let types: Vec<u16> = attrs.iter().map(|a| a.0).collect();
        assert_eq!(types, [0x0006, 0x0024, 0x802A, 0x0008, 0x8028]);
        let fp = u32::from_be_bytes(b[b.len() - 4..].try_into().unwrap());
        assert_eq!(fp, crc32(&b[..b.len() - 8]) ^ 0x5354_554E);
        assert_eq!(class(&b, 10000).label, LABEL_STUN);
        assert_eq!(class(&b, 10000).app, 0, "a plain binding names no app");
    }

    #[test]
    fn dtls_records_and_rtcp() {
        let mut rng = Rng::new(5);
        let ch = dtls_handshake(0xFEFF, 0, 0, Hs::ClientHello, 0, 150, &mut rng);
        assert_eq!(&ch[..3], &[22, 0xFE, 0xFF]);
        assert_eq!(be16(&ch, 11) as usize + 13, ch.len());
        assert_eq!(ch[13], Hs::ClientHello as u8);
        assert_eq!(class(&ch, 10000).label, LABEL_DTLS);
        let r = rtcp(200, 0, 1, &[0; 20]);
        assert_eq!(class(&r, 10000).label, LABEL_RTCP);
    }

    #[test]
    fn non_call_shapes() {
        let mut rng = Rng::new(11);
        let q = dns_query(0x1234, "www.example.com", 1);
        assert_eq!(
            &q[2..6],
            &[0x01, 0x00, 0x00, 0x01],
            "recursive query, one question"
        );
        let a = dns_response(&q).unwrap();
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(be16(&a, 6), 1, "one answer");
        let initial = quic_long(0, &[1; 8], &[2; 8], 1200, &mut rng);
        assert_eq!(initial.len(), 1200);
        assert_eq!(initial[0] & 0xF0, 0xC0, "long header, Initial");
        assert_eq!(&initial[1..5], &QUIC_V1);
        assert_eq!(quic_cids(&initial), Some((vec![1; 8], vec![2; 8])));
        assert_eq!(
            class(&initial, 443).label,
            filter_common::classify::LABEL_NONE
        );
        let short = quic_short(&[2; 8], 7, 100, &mut rng);
        assert_eq!(short[0] & 0xC0, 0x40);
        assert_eq!(&short[1..9], &[2; 8]);
        let ping = raknet_ping(1, 2);
        assert_eq!(
            (ping[0], ping.len(), &ping[9..25]),
            (0x01, 33, &RAKNET_MAGIC[..])
        );
        // Frame sets: 0x84 then a 24-bit little-endian sequence number, so
        // byte 1 runs through every value and bytes 2..4 change only every
        // 256 packets (no RTP-like sequence step).
        let f0 = raknet_frame_set(0x01_02C8, 0, 60, &mut rng);
        let f1 = raknet_frame_set(0x01_02C9, 1, 60, &mut rng);
        assert_eq!(&f0[..4], &[0x84, 0xC8, 0x02, 0x01]);
        assert_eq!(&f0[2..4], &f1[2..4]);
        assert_eq!(f0[4], 0x60, "reliable ordered frame");
        assert_eq!(be16(&f0, 5), 60 * 8, "frame length in bits");
    }

    /// Cut `stream` into records with `framing` (checking it is cut whole).
    fn cut(framing: Framing, stream: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        let mut f = framing;
        while at < stream.len() {
            if f == Framing::Chat {
                f = Framing::sniff(&stream[at..]).unwrap();
            }
            let n = f.record_len(&stream[at..], at == 0).unwrap();
            assert!(at + n <= stream.len(), "{framing:?}: record past the end");
            out.push(n);
            at += n;
        }
        out
    }

    #[test]
    fn tcp_framings_cut_what_the_builders_make() {
        let mut rng = Rng::new(4);
        // WhatsApp TURN over TCP, RFC 4571.
        let alloc = frame_4571(&wa_allocate([1; 12], [2; 16]));
        assert_eq!(be16(&alloc, 0) as usize + 2, alloc.len());
        assert_eq!(be16(&alloc, 2), 0x0003, "the Allocate after the length");
        assert_eq!(
            be16(&alloc, 0),
            be16(&alloc, 4) + 20,
            "RFC 4571 length = STUN length"
        );
        let media = frame_4571(&srtp(WA_AUDIO_PT, 1, 2, 3, 50, &mut rng));
        let s = [alloc.clone(), media.clone()].concat();
        assert_eq!(cut(Framing::Rfc4571, &s), [alloc.len(), media.len()]);
        // Telegram's TCP reflector.
        let tag = [0x5C; 16];
        let hello = tg_tcp_hello(tag);
        assert_eq!(
            (hello.len(), &hello[..16], &hello[16..]),
            (20, &tag[..], &[0u8; 4][..])
        );
        let data = frame_tg(&tg_data(tag, 4, &mut rng));
        assert_eq!(&data[..4], &96u32.to_le_bytes());
        let s = [hello, frame_tg(&tg_endpoints_request(tag)), data].concat();
        assert_eq!(cut(Framing::TgTcp, &s), [20, 36, 100]);
        // TURN over TCP, unframed: STUN, then ChannelData padded to 4.
        let a = turn_allocate([3; 12]);
        let cd = filter_common::pktbuild::channel_data_padded(TG_CHANNEL, &[7; 61]);
        assert_eq!(cd.len(), 68);
        let s = [a.clone(), cd].concat();
        assert_eq!(cut(Framing::Stun, &s), [a.len(), 68]);
        // WhatsApp's Noise transport.
        let h = wa_noise_hello(&mut rng);
        assert_eq!(&h[..4], b"WA\x06\x03");
        assert_eq!(&h[4..7], &[0, 0, 36]);
        let s = [h.clone(), wa_frame(&[1; 300])].concat();
        assert_eq!(cut(Framing::Chat, &s), [h.len(), 303]);
        assert_eq!(
            cut(Framing::WaFrames, &wa_frame(&vec![1; 70_000])),
            [70_003]
        );
        // MTProto.
        let pq = mtproto_req_pq(&mut rng);
        assert_eq!(pq.len(), 40);
        assert_eq!(&pq[..8], &[0; 8], "auth_key_id 0");
        assert_eq!(&pq[20..24], &0xBE7E_8EF1u32.to_le_bytes());
        for t in [Mtproto::Abridged, Mtproto::Intermediate, Mtproto::Padded] {
            let mut first = t.tag().to_vec();
            first.extend_from_slice(&t.frame(&pq, &mut rng));
            let big = t.frame(&mtproto_encrypted(40, &mut rng), &mut rng);
            let s = [first.clone(), big.clone()].concat();
            assert_eq!(cut(Framing::Chat, &s), [first.len(), big.len()], "{t:?}");
            assert_eq!(cut(t.framing(), &s), [first.len(), big.len()], "{t:?}");
            assert_eq!(
                mtproto_packet(t.framing(), &first, true)[..40],
                pq[..],
                "{t:?}"
            );
        }
        assert_eq!(
            Mtproto::Abridged.frame(&pq, &mut rng)[0],
            10,
            "40 bytes = 10 words"
        );
        assert_eq!(
            Mtproto::Abridged.frame(&[0; 1024], &mut rng)[..4],
            [0x7F, 0, 1, 0]
        );
        // TLS.
        let r = tls_app_data(100, &mut rng);
        assert_eq!(cut(Framing::Chat, &[r.clone(), r].concat()), [105, 105]);
    }

    #[test]
    fn chat_server_answers_each_transport_in_its_framing() {
        let peer: SocketAddr = CLIENT4.parse().unwrap();
        let local: SocketAddr = "198.51.100.22:443".parse().unwrap();
        let mut rng = Rng::new(9);
        let mut st = PeerState::new(1);
        for t in [Mtproto::Abridged, Mtproto::Intermediate, Mtproto::Padded] {
            let mut first = t.tag().to_vec();
            first.extend_from_slice(&t.frame(&mtproto_req_pq(&mut rng), &mut rng));
            let f = Framing::sniff(&first).unwrap();
            for (rec, is_first) in [
                (first, true),
                (t.frame(&mtproto_encrypted(5, &mut rng), &mut rng), false),
            ] {
                let a = answer_tcp(Kind::Chat, &mut st, &rec, is_first, f, peer, local);
                assert_eq!(a.len(), 1);
                assert_eq!(cut(f.answers(), &a[0]), [a[0].len()], "{t:?}");
            }
        }
        let h = wa_noise_hello(&mut rng);
        let a = answer_tcp(Kind::Chat, &mut st, &h, true, Framing::WaNoise, peer, local);
        assert_eq!(cut(Framing::WaFrames, &a[0]), [a[0].len()]);
        let a = answer_tcp(
            Kind::TgReflectorTcp,
            &mut st,
            &tg_tcp_hello([1; 16]),
            true,
            Framing::TgTcp,
            peer,
            local,
        );
        assert!(a.is_empty(), "the hello is not answered");
        let ping = frame_tg(&tg_ping([1; 16], 5));
        let a = answer_tcp(
            Kind::TgReflectorTcp,
            &mut st,
            &ping,
            false,
            Framing::TgTcp,
            peer,
            local,
        );
        assert_eq!((a[0].len(), &a[0][..4]), (68, &64u32.to_le_bytes()[..]));
    }

    #[test]
    fn big_dns_answer_and_decoys() {
        let q = dns_big_query(0x2000, "big.example.com");
        assert_eq!(&q[q.len() - 11..q.len() - 6], &[0, 0, 0x29, 0x10, 0x00]);
        let a = dns_response(&q).unwrap();
        assert_eq!(a.len(), DNS_BIG_ANSWER);
        assert_eq!(&a[..2], &[0x20, 0x00]);
        assert_eq!(be16(&a, 6), 1, "one answer");
        let m = decoy_marker(1);
        assert_ne!(m, decoy_marker(2));
        let d = decoy(m, &mut Rng::new(3));
        assert!(d.starts_with(&m) && d.len() >= 20);
    }

    #[test]
    fn responder_answers_every_request_once() {
        let peer: SocketAddr = CLIENT4.parse().unwrap();
        let local: SocketAddr = "198.51.100.10:3478".parse().unwrap();
        let mut st = PeerState::new(1);
        let pong = answer(Kind::WaRelay, &mut st, &wa_ping([1; 12]), peer, local);
        assert_eq!(be16(&pong, 0), 0x0801);
        assert_eq!(
            answer(Kind::WaRelay, &mut st, WA_HEALTH, peer, local),
            WA_OK
        );
        let r = answer(
            Kind::WaRelay,
            &mut st,
            &wa_allocate([1; 12], [0; 16]),
            peer,
            local,
        );
        assert_eq!(
            (be16(&r, 0), be16(&r, 20), be16(&r, 32)),
            (0x0103, 0x0020, 0x4002)
        );
        let ice = answer(
            Kind::WaRelay,
            &mut st,
            &wa_ice_check(1, [1; 12], [0; 20]),
            peer,
            local,
        );
        assert_eq!((ice.len(), be16(&ice, 0)), (44, 0x0101));
        let tag = [3; 16];
        let si = answer(Kind::TgReflector, &mut st, &tg_ping(tag, 9), peer, local);
        assert_eq!((si.len(), &si[..16]), (64, &tag[..]));
        let pi = answer(
            Kind::TgReflector,
            &mut st,
            &tg_endpoints_request(tag),
            peer,
            local,
        );
        assert_eq!(pi.len(), 48);
        let mut rng = Rng::new(2);
        let d = answer(
            Kind::TgReflector,
            &mut st,
            &tg_data(tag, 4, &mut rng),
            peer,
            local,
        );
        assert_eq!((d.len(), &d[..16]), (96, &tag[..]));
        let u = answer(Kind::TgTurn, &mut st, &turn_allocate([1; 12]), peer, local);
        assert!(stun_attrs_of(&u).iter().any(|a| a.0 == stun_attr::NONCE));
        let q = dns_query(7, "www.example.com", 28);
        assert_eq!(
            answer(Kind::Dns, &mut st, &q, peer, local),
            dns_response(&q).unwrap()
        );
        let initial = quic_long(0, &[1; 8], &[2; 8], 1200, &mut rng);
        let ans = answer(Kind::Quic, &mut st, &initial, peer, local);
        let (dcid, _) = quic_cids(&ans).unwrap();
        assert_eq!(dcid, vec![2; 8], "the server answers to the client's cid");
    }
}
