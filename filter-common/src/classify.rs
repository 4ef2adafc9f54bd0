//! UDP payload classifier: the generic RFC 7983 first-byte demultiplexer with
//! the length checks of each protocol. Works on a fixed-size copy of the
//! payload head plus the payload's real length; reads only constant offsets
//! inside the head.

/// Bytes of UDP payload copied for classification.
pub const HEAD_LEN: usize = 128;

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
        _ => return None,
    })
}

/// How strongly a label says "call".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strength {
    /// Nothing call-like.
    None,
    /// Call-like only with flow state (RTP, TURN ChannelData).
    Candidate,
    /// Call signalling or media on its own (STUN, DTLS, RTCP).
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
    };

    const fn signal(label: u8) -> Class {
        Class {
            label,
            app: 0,
            strength: Strength::Signal,
            turn: false,
            ssrc: 0,
            seq: 0,
        }
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
/// of the payload (the rest zero), `len` is the payload's length.
#[inline(always)]
pub fn classify(head: &[u8; HEAD_LEN], len: usize, _sport: u16, _dport: u16) -> Class {
    if len == 0 {
        return Class::NONE;
    }
    let b0 = head[0];
    match b0 {
        0..=3 => stun(head, len),
        20..=63 => dtls(head, len),
        64..=79 => channel_data(head, len),
        128..=191 => rtp_or_rtcp(head, len),
        _ => Class::NONE,
    }
}

/// TURN methods (class bits masked out).
#[inline(always)]
fn is_turn_method(msg_type: u16) -> bool {
    // Method bits: M0-M3 are bits 0-3, M4-M6 bits 5-7, M7-M11 bits 9-13.
    let method = (msg_type & 0x000f) | ((msg_type & 0x00e0) >> 1) | ((msg_type & 0x3e00) >> 2);
    matches!(method, 0x003 | 0x004 | 0x006 | 0x007 | 0x008 | 0x009)
}

#[inline(always)]
fn stun(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if len < 20 || head[0] & 0xC0 != 0 {
        return Class::NONE;
    }
    if [head[4], head[5], head[6], head[7]] != STUN_COOKIE {
        return Class::NONE;
    }
    let msg_len = be16(head, 2) as usize;
    if !msg_len.is_multiple_of(4) || msg_len + 20 != len {
        return Class::NONE;
    }
    let mut c = Class::signal(LABEL_STUN);
    c.turn = is_turn_method(be16(head, 0));
    c
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
    Class {
        label: LABEL_TURN_CHANNEL,
        app: 0,
        strength: Strength::Candidate,
        turn: false,
        ssrc: 0,
        seq: 0,
    }
}

#[inline(always)]
fn rtp_or_rtcp(head: &[u8; HEAD_LEN], len: usize) -> Class {
    if len < 8 {
        return Class::NONE;
    }
    let b1 = head[1];
    if (200..=207).contains(&b1) {
        if (be16(head, 2) as usize + 1) * 4 <= len {
            return Class::signal(LABEL_RTCP);
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
    Class {
        label: LABEL_RTP,
        app: 0,
        strength: Strength::Candidate,
        turn: false,
        ssrc: be32(head, 8),
        seq: be16(head, 2),
    }
}
