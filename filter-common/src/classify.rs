//! UDP payload classifier: the generic RFC 7983 first-byte demultiplexer with
//! the length checks of each protocol, then the WhatsApp and Telegram call
//! signatures of `MEDIA-SIGNATURES.md`. Works on a fixed-size copy of the
//! payload head plus the payload's real length; every read is inside the head
//! (constant offsets, or offsets masked and checked against `HEAD_LEN`).

/// Bytes of UDP payload copied for classification.
pub const HEAD_LEN: usize = 128;
/// Bytes of payload the classifier needs for all but a few packets: the
/// XDP program reads these first, and the rest of the head only when
/// [`head_needed`] says so (packet bytes are cache lines the receiving CPU
/// does not have yet).
pub const HEAD_MIN: usize = 48;

/// How many payload bytes (at most [`HEAD_LEN`]) the classifier reads for a
/// payload of `len` bytes, given its first [`HEAD_MIN`] bytes (`head`;
/// only those are looked at). Beyond `HEAD_MIN` it reads only for a STUN
/// message on Telegram's TURN port (the REALM scan) and for RTP with more
/// than eight CSRCs (the extension header after them).
#[inline(always)]
pub fn head_needed(head: &[u8; HEAD_LEN], len: usize, sport: u16, dport: u16) -> usize {
    let all = if len < HEAD_LEN { len } else { HEAD_LEN };
    let b0 = head[0];
    let stun_on_turn_port =
        b0 & 0xC0 == 0 && (sport == TELEGRAM_TURN_PORT || dport == TELEGRAM_TURN_PORT);
    let rtp_many_csrcs = (128..=191).contains(&b0) && (b0 & 0x0f) > 8;
    if stun_on_turn_port || rtp_many_csrcs || all < HEAD_MIN {
        all
    } else {
        HEAD_MIN
    }
}

/// The payload length a UDP first fragment is classified with: the whole
/// datagram's (`datagram`, from its UDP header) when the classifier reads
/// no more than the fragment's first [`HEAD_MIN`] bytes (`in_fragment` of
/// them are there), so the length checks of each protocol see the real
/// message; otherwise the fragment's own, so nothing past its bytes is read.
#[inline(always)]
pub fn first_fragment_len(
    head: &[u8; HEAD_LEN],
    in_fragment: usize,
    datagram: usize,
    sport: u16,
    dport: u16,
) -> usize {
    let have = if in_fragment < HEAD_MIN {
        in_fragment
    } else {
        HEAD_MIN
    };
    if head_needed(head, datagram, sport, dport) <= have {
        datagram
    } else {
        in_fragment
    }
}

/// No recognisable call signalling or media.
pub const LABEL_NONE: u8 = 0;
/// STUN/TURN message with the RFC 5389 magic cookie and exact length.
pub const LABEL_STUN: u8 = 1;
/// TURN ChannelData (only meaningful on a flow that saw TURN).
pub const LABEL_TURN_CHANNEL: u8 = 2;
/// DTLS record.
pub const LABEL_DTLS: u8 = 3;
/// RTP (per packet a candidate; confirmed by flow state).
pub const LABEL_RTP: u8 = 4;
/// RTCP.
pub const LABEL_RTCP: u8 = 5;
/// WhatsApp STUN: private types 0x0800..0x0805, or Allocate with a WhatsApp
/// attribute (0x4000..0x4007) first, or its 0x0103 reply.
pub const LABEL_WHATSAPP_STUN: u8 = 8;
/// RTP/SRTP on a flow marked by WhatsApp STUN.
pub const LABEL_WHATSAPP_MEDIA: u8 = 9;
/// The 44-byte MESSAGE-INTEGRITY-only ICE check WhatsApp sends peer to peer.
pub const LABEL_WHATSAPP_ICE: u8 = 10;
/// `health` / `OK` keepalives (only meaningful on a WhatsApp flow).
pub const LABEL_WHATSAPP_KEEPALIVE: u8 = 11;
/// Telegram libtgvoip/tgcalls reflector control packet (peer tag + 0xFF run).
pub const LABEL_TELEGRAM_REFLECTOR: u8 = 12;
/// Telegram data packet carrying a learned peer tag.
pub const LABEL_TELEGRAM_DATA: u8 = 13;
/// Telegram tgcalls reflector data (inner STUN/DTLS at byte 24).
pub const LABEL_TELEGRAM_TGCALLS: u8 = 14;
/// Telegram TURN (REALM `telegram.org`).
pub const LABEL_TELEGRAM_TURN: u8 = 15;
/// A flow that inherited its category from an endpoint of an earlier call.
pub const LABEL_P2P_INHERITED: u8 = 16;
/// STUN/TURN over TCP (RFC 6062 direct, or RFC 4571 framed).
pub const LABEL_STUN_TCP: u8 = 17;
/// Telegram's TCP reflector connection (peer tag, then four zero bytes).
pub const LABEL_TELEGRAM_TCP: u8 = 18;
/// Largest label id.
pub const LABEL_MAX: u8 = 31;

/// Label names, by id, as shown in replay, counters and flow listings.
pub fn label_name(label: u8) -> Option<&'static str> {
    Some(match label {
        LABEL_STUN => "stun",
        LABEL_TURN_CHANNEL => "turn-channel",
        LABEL_DTLS => "dtls",
        LABEL_RTP => "rtp",
        LABEL_RTCP => "rtcp",
        LABEL_WHATSAPP_STUN => "whatsapp-stun",
        LABEL_WHATSAPP_MEDIA => "whatsapp-media",
        LABEL_WHATSAPP_ICE => "whatsapp-ice",
        LABEL_WHATSAPP_KEEPALIVE => "whatsapp-keepalive",
        LABEL_TELEGRAM_REFLECTOR => "telegram-reflector",
        LABEL_TELEGRAM_DATA => "telegram-data",
        LABEL_TELEGRAM_TGCALLS => "telegram-tgcalls",
        LABEL_TELEGRAM_TURN => "telegram-turn",
        LABEL_P2P_INHERITED => "p2p-inherited",
        LABEL_STUN_TCP => "stun-tcp",
        LABEL_TELEGRAM_TCP => "telegram-tcp",
        _ => return None,
    })
}

/// How strongly a label says "call".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strength {
    /// Nothing call-like.
    None,
    /// Call-like only with flow state (RTP, RTCP, TURN ChannelData).
    Candidate,
    /// Call signalling or media on its own (STUN, DTLS).
    Signal,
}

/// What the classifier found in one payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// `LABEL_*`.
    pub label: u8,
    /// Category the payload names by itself (an app-specific signature), or 0.
    pub app: u8,
    /// See [`Strength`].
    pub strength: Strength,
    /// The message is a TURN method (ChannelData may follow on this flow).
    pub turn: bool,
    /// RTP SSRC (candidates only).
    pub ssrc: u32,
    /// RTP sequence number (candidates only).
    pub seq: u16,
    /// The payload is a Telegram reflector control packet: its first 16
    /// bytes are a peer tag to learn.
    pub learn_tag: bool,
    /// The payload may be Telegram data carrying a learned peer tag (its
    /// length fits); the first 16 bytes are the tag to look up.
    pub tag_candidate: bool,
    /// A TURN CreatePermission/Send whose first attribute is an IPv4
    /// XOR-PEER-ADDRESS: the decoded peer follows.
    pub has_peer: bool,
    /// Decoded peer IPv4 address (network order bytes).
    pub peer_addr: [u8; 4],
    /// Decoded peer port.
    pub peer_port: u16,
}

impl Class {
    /// Nothing recognised.
    pub const NONE: Class = Class {
        label: LABEL_NONE,
        app: 0,
        strength: Strength::None,
        turn: false,
        ssrc: 0,
        seq: 0,
        learn_tag: false,
        tag_candidate: false,
        has_peer: false,
        peer_addr: [0; 4],
        peer_port: 0,
    };

    const fn signal(label: u8) -> Class {
        let mut c = Class::NONE;
        c.label = label;
        c.strength = Strength::Signal;
        c
    }

    const fn app(label: u8, app: u8) -> Class {
        let mut c = Class::signal(label);
        c.app = app;
        c
    }

    const fn candidate(label: u8) -> Class {
        let mut c = Class::NONE;
        c.label = label;
        c.strength = Strength::Candidate;
        c
    }
}

/// STUN magic cookie (RFC 5389).
pub const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

#[inline(always)]
fn be16(h: &[u8; HEAD_LEN], i: usize) -> u16 {
    u16::from_be_bytes([h[i], h[i + 1]])
}

#[inline(always)]
fn be32(h: &[u8; HEAD_LEN], i: usize) -> u32 {
    u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]])
}

/// Classify a UDP payload. `head` holds the first `min(len, HEAD_LEN)` bytes
/// of the payload, `len` is the payload's length. Bytes of `head` at or
/// beyond `len` are never read (the XDP program leaves an earlier packet's
/// bytes there; host tests hold the classifier to this).
#[inline(always)]
pub fn classify(head: &[u8; HEAD_LEN], len: usize, sport: u16, dport: u16) -> Class {
    if len == 0 {
        return Class::NONE;
    }
    // The reflector signature is exact (a 0xFF run, a type, a length) and its
    // peer tag may begin with any byte, so it goes before the demultiplexer.
    let tg = telegram_reflector(head, len);
    if tg.label != LABEL_NONE {
        return tg;
    }
    // tgcalls data may begin with any byte too (its call prefix).
    let tg = tgcalls_data(head, len);
    if tg.label != LABEL_NONE {
        return tg;
    }
    let mut c = match head[0] {
        0..=3 => stun(head, len, sport, dport),
        0x08 => whatsapp_private_stun(head, len),
        20..=63 => dtls(head, len),
        64..=79 => channel_data(head, len),
        128..=191 => rtp_or_rtcp(head, len),
        _ => Class::NONE,
    };
    if c.label == LABEL_NONE {
        c = keepalive(head, len);
    }
    // libtgvoip data: tag(16) + msg_key(16) + AES-IGE blocks, whatever its
    // first bytes look like.
    c.tag_candidate = c.strength != Strength::Signal
        && len >= 48
        && len.is_multiple_of(16)
        && tag_plausible(head);
    c
}

/// TCP payload bytes [`classify_tcp`] reads at most.
pub const TCP_HEAD: usize = 24;

/// Classify the start of a TCP segment's payload of `len` bytes (`head`:
/// its first `min(len, TCP_HEAD)` bytes; nothing past them, nor at or past
/// `len`, is read): a call
/// that fell back to TCP. Recognised:
/// - STUN/TURN over TCP: a STUN header with the magic cookie at the
///   segment's start (RFC 6062), or after a 2-byte length that matches the
///   message exactly (RFC 4571 framing, ICE-TCP); WhatsApp's private types
///   name WhatsApp;
/// - Telegram's TCP reflector connection: a plausible peer tag, then four
///   zero bytes.
///
/// What messaging sends first (TLS records, MTProto's abridged 0xef,
/// intermediate 0xeeeeeeee and padded 0xdddddddd transports, obfuscated
/// random heads, WhatsApp's Noise "WA" header) matches none of these. The
/// XDP program acts only toward listed ranges.
#[inline(always)]
pub fn classify_tcp(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if len >= 20 && head[16..20] == [0, 0, 0, 0] && tag_plausible(head) {
        let mut c = Class::app(LABEL_TELEGRAM_TCP, CAT_TELEGRAM);
        c.learn_tag = true;
        return c;
    }
    // Direct: type, length, cookie, and the message fits the segment.
    let direct = len >= 20
        && (head[0] & 0xC0 == 0 || (head[0] == 0x08 && head[1] <= 0x05))
        && has_cookie(head)
        && be16(head, 2) as usize + 20 <= len;
    // Framed: a 2-byte length equal to the message's, then the header.
    let framed = len >= 22
        && (head[2] & 0xC0 == 0 || (head[2] == 0x08 && head[3] <= 0x05))
        && [head[6], head[7], head[8], head[9]] == STUN_COOKIE
        && be16(head, 0) as usize == be16(head, 4) as usize + 20;
    if !(direct || framed) {
        return Class::NONE;
    }
    let first = if framed { head[2] } else { head[0] };
    if first == 0x08 {
        Class::app(LABEL_STUN_TCP, CAT_WHATSAPP)
    } else {
        Class::signal(LABEL_STUN_TCP)
    }
}

/// `whatsapp` and `telegram` category ids (see `consts`).
use crate::consts::{CAT_TELEGRAM, CAT_WHATSAPP};

/// STUN attributes followed at most when scanning for one.
pub const MAX_STUN_ATTRS: usize = 8;
/// UDP port of Telegram's TURN servers.
pub const TELEGRAM_TURN_PORT: u16 = 1400;
const REALM_TELEGRAM: [u8; 12] = *b"telegram.org";

#[inline(always)]
fn has_cookie(head: &[u8; HEAD_LEN]) -> bool {
    [head[4], head[5], head[6], head[7]] == STUN_COOKIE
}

/// WhatsApp's private STUN types 0x0800..0x0805 (outside every RFC 7983
/// range, so essentially free of false positives).
#[inline(always)]
fn whatsapp_private_stun(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if len < 20 || head[1] > 0x05 || !has_cookie(head) {
        return Class::NONE;
    }
    let msg_len = be16(head, 2) as usize;
    if msg_len + 20 != len {
        return Class::NONE;
    }
    Class::app(LABEL_WHATSAPP_STUN, CAT_WHATSAPP)
}

/// Scan up to [`MAX_STUN_ATTRS`] attributes from offset 20 for a REALM of
/// `telegram.org`, staying inside the head.
#[inline(always)]
fn realm_is_telegram(head: &[u8; HEAD_LEN], len: usize) -> bool {
    let mut off = 20usize;
    let end = if len < HEAD_LEN { len } else { HEAD_LEN };
    for _ in 0..MAX_STUN_ATTRS {
        // Keep the offset provably inside the head for the verifier.
        let o = off & (HEAD_LEN - 1);
        if o != off || o + 4 + REALM_TELEGRAM.len() > end || o + 16 > HEAD_LEN {
            return false;
        }
        let typ = be16(head, o);
        let alen = be16(head, o + 2) as usize;
        if typ == 0x0014 && alen == REALM_TELEGRAM.len() {
            let mut same = true;
            for (i, b) in REALM_TELEGRAM.iter().enumerate() {
                if head[o + 4 + i] != *b {
                    same = false;
                }
            }
            return same;
        }
        off = o + 4 + ((alen + 3) & !3);
    }
    false
}

#[inline(always)]
fn stun(head: &[u8; HEAD_LEN], len: usize, sport: u16, dport: u16) -> Class {
    if len < 20 || head[0] & 0xC0 != 0 || !has_cookie(head) {
        return Class::NONE;
    }
    let msg_len = be16(head, 2) as usize;
    if msg_len + 20 != len {
        return Class::NONE;
    }
    let msg_type = be16(head, 0);
    let first_attr = if len >= 24 { be16(head, 20) } else { 0 };
    let turn = is_turn_method(msg_type);

    // WhatsApp: Allocate whose first attribute is one of its private ones
    // (its length is not padded to 4, so this comes before that check)...
    if msg_type == 0x0003 && (0x4000..=0x4007).contains(&first_attr) {
        let mut c = Class::app(LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
        c.turn = true;
        return c;
    }
    if !msg_len.is_multiple_of(4) {
        return Class::NONE;
    }
    // ... and the Allocate success reply carrying 0x0020 then 0x4002.
    // XOR-MAPPED-ADDRESS (0x0020) first: 8 bytes of value for IPv4, 20 for IPv6.
    let second_at_32 = len >= 36 && be16(head, 22) == 8 && be16(head, 32) == 0x4002;
    let second_at_44 = len >= 48 && be16(head, 22) == 20 && be16(head, 44) == 0x4002;
    if msg_type == 0x0103 && first_attr == 0x0020 && (second_at_32 || second_at_44) {
        let mut c = Class::app(LABEL_WHATSAPP_STUN, CAT_WHATSAPP);
        c.turn = true;
        return c;
    }
    // WhatsApp's peer-to-peer ICE check: 44 bytes, MESSAGE-INTEGRITY only.
    if len == 44
        && (msg_type == 0x0001 || msg_type == 0x0101)
        && msg_len == 24
        && first_attr == 0x0008
        && be16(head, 22) == 20
    {
        return Class::app(LABEL_WHATSAPP_ICE, CAT_WHATSAPP);
    }
    let mut c = Class::signal(LABEL_STUN);
    c.turn = turn;
    // Telegram TURN: port 1400 and REALM telegram.org.
    if (sport == TELEGRAM_TURN_PORT || dport == TELEGRAM_TURN_PORT) && realm_is_telegram(head, len)
    {
        c = Class::app(LABEL_TELEGRAM_TURN, CAT_TELEGRAM);
        c.turn = true;
    }
    // TURN CreatePermission (0x0008) or Send indication (0x0016) whose first
    // attribute is an IPv4 XOR-PEER-ADDRESS: the peer a direct flow may use.
    if (msg_type == 0x0008 || msg_type == 0x0016)
        && first_attr == 0x0012
        && len >= 32
        && be16(head, 22) == 8
        && head[25] == 0x01
    {
        c.has_peer = true;
        c.peer_port = be16(head, 26) ^ 0x2112;
        c.peer_addr = [
            head[28] ^ STUN_COOKIE[0],
            head[29] ^ STUN_COOKIE[1],
            head[30] ^ STUN_COOKIE[2],
            head[31] ^ STUN_COOKIE[3],
        ];
    }
    c
}

/// Telegram reflector control (libtgvoip and tgcalls): a 16-byte peer tag
/// (tgcalls: 12-byte call prefix + 4 bytes), then twelve 0xFF, then a type:
/// ping `FE FF FF FF` (40 bytes), `c7 72 15 c0` (64), `1c 37 d9 27` (48);
/// sixteen 0xFF make the 32-byte public-endpoint request.
#[inline(always)]
fn telegram_reflector(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if !matches!(len, 32 | 40 | 48 | 64) {
        return Class::NONE;
    }
    if head[16..28].iter().any(|b| *b != 0xFF) {
        return Class::NONE;
    }
    let t = [head[28], head[29], head[30], head[31]];
    let known = matches!(
        (t, len),
        ([0xFF, 0xFF, 0xFF, 0xFF], 32)
            | ([0xFE, 0xFF, 0xFF, 0xFF], 40)
            | ([0xc7, 0x72, 0x15, 0xc0], 64)
            | ([0x1c, 0x37, 0xd9, 0x27], 48)
    );
    if !known {
        return Class::NONE;
    }
    let mut c = Class::app(LABEL_TELEGRAM_REFLECTOR, CAT_TELEGRAM);
    c.learn_tag = tag_plausible(head);
    c
}

/// Zero or 0xFF bytes a peer tag may hold at most. A real tag is random: 16
/// random bytes hold more than four zeros (or four 0xFF) with odds below 1 in
/// 10^6. Low-variety heads (an SNTP request is `1b` then zeros, padding is
/// all 0xFF) are never learned or looked up as tags, so no common payload can
/// be made to look like Telegram data.
pub const TAG_MAX_REPEATS: usize = 4;

/// Whether the head's first 16 bytes could be a Telegram peer tag.
/// Branch-free (SWAR byte counting), so the verifier sees one path.
#[inline(always)]
pub fn tag_plausible(head: &[u8; HEAD_LEN]) -> bool {
    let w0 = u64::from_le_bytes([
        head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
    ]);
    let w1 = u64::from_le_bytes([
        head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
    ]);
    let zeros = zero_bytes(w0) + zero_bytes(w1);
    let ones = zero_bytes(!w0) + zero_bytes(!w1);
    zeros as usize <= TAG_MAX_REPEATS && ones as usize <= TAG_MAX_REPEATS
}

/// Number of zero bytes in `w`, exactly (the high bit of each byte of `y` is
/// set iff that byte of `w` is zero).
#[inline(always)]
fn zero_bytes(w: u64) -> u32 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let y = !(((w & LOW7).wrapping_add(LOW7)) | w | LOW7);
    y.count_ones()
}

/// tgcalls reflector data: u32be inner length at 20, an inner STUN (with the
/// cookie and exact length) or DTLS record at 24, padded to 4.
#[inline(always)]
fn tgcalls_data(head: &[u8; HEAD_LEN], len: usize) -> Class {
    let inner = be32(head, 20) as usize;
    if inner >= 20 && inner + 24 <= len && len - (inner + 24) < 4 && len >= 44 {
        let stun_inner = head[24] & 0xC0 == 0
            && [head[28], head[29], head[30], head[31]] == STUN_COOKIE
            && be16(head, 26) as usize + 20 == inner;
        let dtls_inner = matches!(head[24], 20 | 21 | 22 | 23 | 25)
            && head[25] == 0xFE
            && matches!(head[26], 0xFF | 0xFD | 0xFC)
            && be16(head, 35) as usize + 13 <= inner;
        if stun_inner || dtls_inner {
            return Class::app(LABEL_TELEGRAM_TGCALLS, CAT_TELEGRAM);
        }
    }
    Class::NONE
}

/// WhatsApp relay keepalives: `health`, answered by `OK`.
#[inline(always)]
fn keepalive(head: &[u8; HEAD_LEN], len: usize) -> Class {
    let health = len == 6 && [head[0], head[1], head[2], head[3], head[4], head[5]] == *b"health";
    let ok = len == 2 && [head[0], head[1]] == *b"OK";
    if health || ok {
        return Class::candidate(LABEL_WHATSAPP_KEEPALIVE);
    }
    Class::NONE
}

/// TURN methods (class bits masked out).
#[inline(always)]
fn is_turn_method(msg_type: u16) -> bool {
    // Method bits: M0-M3 are bits 0-3, M4-M6 bits 5-7, M7-M11 bits 9-13.
    let method = (msg_type & 0x000f) | ((msg_type & 0x00e0) >> 1) | ((msg_type & 0x3e00) >> 2);
    matches!(method, 0x003 | 0x004 | 0x006 | 0x007 | 0x008 | 0x009)
}

#[inline(always)]
fn dtls(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if len < 13 {
        return Class::NONE;
    }
    if !matches!(head[0], 20 | 21 | 22 | 23 | 25) {
        return Class::NONE;
    }
    if head[1] != 0xFE || !matches!(head[2], 0xFF | 0xFD | 0xFC) {
        return Class::NONE;
    }
    if be16(head, 11) as usize + 13 > len {
        return Class::NONE;
    }
    Class::signal(LABEL_DTLS)
}

#[inline(always)]
fn channel_data(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if len < 4 {
        return Class::NONE;
    }
    let data_len = be16(head, 2) as usize;
    // Over UDP the message may be padded to a multiple of 4.
    if data_len + 4 > len || len - (data_len + 4) > 3 {
        return Class::NONE;
    }
    Class::candidate(LABEL_TURN_CHANNEL)
}

#[inline(always)]
fn rtp_or_rtcp(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if len < 8 {
        return Class::NONE;
    }
    let b1 = head[1];
    if (200..=207).contains(&b1) {
        // Like RTP, RTCP's few fixed bits pass on game traffic (a RakNet
        // frame set with a low sequence byte of 200..207 does): a candidate
        // that counts only on a flow already known as a call.
        if (be16(head, 2) as usize + 1) * 4 <= len {
            return Class::candidate(LABEL_RTCP);
        }
        return Class::NONE;
    }
    if len < 12 {
        return Class::NONE;
    }
    let pt = b1 & 0x7f;
    if !(pt <= 34 || (96..=127).contains(&pt)) {
        return Class::NONE;
    }
    let cc = (head[0] & 0x0f) as usize;
    let mut hdr = 12 + 4 * cc;
    if hdr > len {
        return Class::NONE;
    }
    if head[0] & 0x10 != 0 {
        // Extension header: 4 bytes, then `length` 32-bit words. With 15 CSRCs
        // it starts at byte 72, still inside the head.
        if hdr + 4 > len {
            return Class::NONE;
        }
        hdr += 4 + 4 * be16(head, (hdr + 2) % (HEAD_LEN - 1)) as usize;
        if hdr > len {
            return Class::NONE;
        }
    }
    let mut c = Class::candidate(LABEL_RTP);
    c.ssrc = be32(head, 8);
    c.seq = be16(head, 2);
    c
}
