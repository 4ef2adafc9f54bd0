//! Bounded frame parser: Ethernet, up to two VLAN tags, IPv4 (IHL honoured),
//! IPv6 with up to six extension headers, UDP and TCP ports.
//!
//! The parser reads through [`PacketBytes`], which the XDP program implements
//! with `bpf_xdp_load_bytes` and host code implements for `[u8]`: every read
//! is a fixed-size, bounds-checked copy.

use crate::types::FlowKey;

/// Fixed-size, bounds-checked reads from a frame.
pub trait PacketBytes {
    /// Length of the whole frame in bytes.
    fn frame_len(&self) -> usize;
    /// The `N` bytes at `off`, or `None` when they are not all inside the frame.
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]>;
}

impl PacketBytes for [u8] {
    #[inline]
    fn frame_len(&self) -> usize {
        self.len()
    }

    #[inline]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let bytes = self.get(off..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

/// Largest offset at which the XDP program starts a header read: its reads
/// are direct packet reads, bounded so the verifier can check them. A header
/// beyond it is out of reach ([`Parsed::Hidden`] for IPv6).
pub const XDP_HEADER_REACH: usize = 512;

/// A frame read the way the XDP program reads it: headers only up to
/// [`XDP_HEADER_REACH`]. Host tests and fuzz targets use it to predict the
/// program's parse.
#[derive(Clone, Copy, Debug)]
pub struct XdpReach<'a>(pub &'a [u8]);

impl PacketBytes for XdpReach<'_> {
    #[inline]
    fn frame_len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > XDP_HEADER_REACH {
            return None;
        }
        self.0.load::<N>(off)
    }
}

/// VLAN tags followed at most (0x8100 and 0x88A8).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed at most.
pub const MAX_V6_EXT_HEADERS: usize = 6;

/// IP protocol numbers.
pub const PROTO_TCP: u8 = 6;
/// See [`PROTO_TCP`].
pub const PROTO_UDP: u8 = 17;

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;

/// Why a frame could not be parsed. It is passed and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A header runs past the end of the frame.
    Truncated,
    /// More VLAN tags than [`MAX_VLAN_TAGS`].
    TooManyVlanTags,
    /// IP version field does not match the EtherType.
    BadVersion,
    /// IPv4 IHL below 5, or total length shorter than the header.
    BadIpv4Header,
    /// More IPv6 extension headers than [`MAX_V6_EXT_HEADERS`], or a chain
    /// whose headers lie beyond what the reader can reach (the XDP program
    /// reads headers up to a fixed offset). Never reported as such by
    /// [`parse_frame`]: the packet comes back as [`Parsed::Hidden`].
    ExtensionChainTooLong,
    /// UDP length below 8 or beyond the IP payload.
    BadUdpLength,
}

/// Fragment position of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    None,
    /// First fragment (offset 0, more fragments): carries the L4 header.
    First {
        /// IP identification.
        id: u32,
    },
    /// A later fragment: no L4 header.
    Later {
        /// IP identification.
        id: u32,
        /// Where its data starts in the datagram's IP payload, in bytes
        /// (the transport header is at 0).
        offset: u16,
    },
}

/// An IP packet's addresses, protocol, ports and payload position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// IPv6 (true) or IPv4 (false).
    pub is_v6: bool,
    /// Source address; IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub src: [u8; 16],
    /// Destination address, same form.
    pub dst: [u8; 16],
    /// Upper-layer protocol.
    pub proto: u8,
    /// Fragment position.
    pub frag: Fragment,
    /// Source port (0 when there is none or the packet is a later fragment).
    pub sport: u16,
    /// Destination port (0 likewise).
    pub dport: u16,
    /// Offset of the transport payload in the frame (UDP and TCP; for a
    /// later fragment, where its data starts; else 0).
    pub payload_off: usize,
    /// Length of that payload: for UDP from the UDP header, clipped to the
    /// bytes this packet carries; for TCP what follows the header; for a
    /// later fragment its data (0 otherwise).
    pub payload_len: usize,
    /// The UDP header's length field (0 when not UDP or not read).
    pub udp_len: u16,
}

impl Packet {
    /// The IPv4 source address, when the packet is IPv4.
    pub fn src_v4(&self) -> u32 {
        u32::from_be_bytes([self.src[12], self.src[13], self.src[14], self.src[15]])
    }

    /// The IPv4 destination address, when the packet is IPv4.
    pub fn dst_v4(&self) -> u32 {
        u32::from_be_bytes([self.dst[12], self.dst[13], self.dst[14], self.dst[15]])
    }

    /// The canonical flow key, and whether this packet goes from endpoint
    /// `a` to endpoint `b`.
    pub fn flow_key(&self) -> (FlowKey, bool) {
        flow_key(&self.src, self.sport, &self.dst, self.dport, self.proto)
    }
}

/// Canonical key for a 5-tuple: `(key, from_a)`, where `from_a` says the
/// packet travels from the smaller endpoint to the larger one.
pub fn flow_key(
    src: &[u8; 16],
    sport: u16,
    dst: &[u8; 16],
    dport: u16,
    proto: u8,
) -> (FlowKey, bool) {
    // The addresses as words in memory order, read once; the lexicographic
    // order of (address bytes, port) compares them as big-endian numbers (a
    // few instructions instead of a byte loop), and the key is built from
    // the words chosen as values, so the eBPF build moves words, not bytes.
    let (s, d) = (ne_words(src), ne_words(dst));
    let be = |(w0, w1): (u64, u64)| (u64::from_be(w0), u64::from_be(w1));
    let from_a = (be(s), sport) <= (be(d), dport);
    let (a, pa, b, pb) = if from_a {
        (s, sport, d, dport)
    } else {
        (d, dport, s, sport)
    };
    (
        FlowKey {
            addr_a: from_words(a),
            addr_b: from_words(b),
            port_a: pa,
            port_b: pb,
            proto,
            _pad: [0; 3],
        },
        from_a,
    )
}

impl Parsed {
    /// Whether it is an IP fragment (first or later).
    pub fn is_fragment(&self) -> bool {
        matches!(self, Parsed::Ip(p) if p.frag != Fragment::None)
    }
}

/// The address as two words in memory order.
#[inline(always)]
fn ne_words(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

/// [`ne_words`] back into the address.
#[inline(always)]
fn from_words((w0, w1): (u64, u64)) -> [u8; 16] {
    // SAFETY: two u64 are 16 bytes, and every byte pattern is a [u8; 16].
    // As one value the eBPF build stores it in two words, not sixteen bytes.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>([w0, w1]) }
}

/// What a frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp,
    /// Could not be parsed.
    Malformed(Malformed),
    /// An IP packet.
    Ip(Packet),
    /// An IPv6 packet whose transport is hidden behind an extension-header
    /// chain longer than the parser follows (or reaching beyond what the
    /// reader can read): the addresses are known (`src`, `dst`, `is_v6`),
    /// nothing else (`proto` 0, no ports, no payload).
    Hidden(Packet),
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// IPv4-mapped IPv6 form of an IPv4 address given as 4 bytes.
#[inline(always)]
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    // Built as two words: the eBPF build then stores words, not bytes.
    from_words((
        0,
        u64::from_ne_bytes([0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]),
    ))
}

/// Parse a frame that starts with an Ethernet header.
#[inline(always)]
pub fn parse_frame<P: PacketBytes + ?Sized>(p: &P) -> Parsed {
    match parse_inner(p) {
        Ok(Some((pkt, false))) => Parsed::Ip(pkt),
        Ok(Some((pkt, true))) => Parsed::Hidden(pkt),
        Ok(None) => Parsed::NonIp,
        Err(m) => Parsed::Malformed(m),
    }
}

/// The packet, and whether its transport is hidden (see [`Parsed::Hidden`]).
#[inline(always)]
fn parse_inner<P: PacketBytes + ?Sized>(p: &P) -> Result<Option<(Packet, bool)>, Malformed> {
    let Some(eth) = p.load::<ETH_HLEN>(0) else {
        return Err(Malformed::Truncated);
    };
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut off = ETH_HLEN;
    let mut tags = 0;
    while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        if tags == MAX_VLAN_TAGS {
            return Err(Malformed::TooManyVlanTags);
        }
        let tag = p.load::<4>(off).ok_or(Malformed::Truncated)?;
        ethertype = be16([tag[2], tag[3]]);
        off += 4;
        tags += 1;
    }
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(p, off).map(|pkt| Some((pkt, false))),
        ETHERTYPE_IPV6 => parse_ipv6(p, off).map(Some),
        _ => Ok(None),
    }
}

#[inline(always)]
fn parse_ipv4<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Result<Packet, Malformed> {
    let ip = p.load::<20>(off).ok_or(Malformed::Truncated)?;
    if ip[0] >> 4 != 4 {
        return Err(Malformed::BadVersion);
    }
    let hdr_len = ((ip[0] & 0x0f) as usize) * 4;
    let total_len = be16([ip[2], ip[3]]) as usize;
    if hdr_len < 20 || total_len < hdr_len {
        return Err(Malformed::BadIpv4Header);
    }
    let end = off + total_len;
    if end > p.frame_len() {
        return Err(Malformed::Truncated);
    }
    let id = be16([ip[4], ip[5]]) as u32;
    let frag_field = be16([ip[6], ip[7]]);
    let more = frag_field & 0x2000 != 0;
    let frag_off = frag_field & 0x1fff;
    let frag = if frag_off != 0 {
        Fragment::Later {
            id,
            offset: frag_off << 3,
        }
    } else if more {
        Fragment::First { id }
    } else {
        Fragment::None
    };
    let pkt = Packet {
        is_v6: false,
        src: v4_mapped([ip[12], ip[13], ip[14], ip[15]]),
        dst: v4_mapped([ip[16], ip[17], ip[18], ip[19]]),
        proto: ip[9],
        frag,
        sport: 0,
        dport: 0,
        payload_off: 0,
        payload_len: 0,
        udp_len: 0,
    };
    parse_l4(p, pkt, off + hdr_len, end)
}

#[inline(always)]
fn parse_ipv6<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Result<(Packet, bool), Malformed> {
    let ip = p.load::<40>(off).ok_or(Malformed::Truncated)?;
    if ip[0] >> 4 != 6 {
        return Err(Malformed::BadVersion);
    }
    let payload_len = be16([ip[4], ip[5]]) as usize;
    // A zero payload length means a jumbogram (RFC 2675): the frame's end is the end.
    let end = if payload_len == 0 {
        p.frame_len()
    } else {
        off + 40 + payload_len
    };
    if end > p.frame_len() {
        return Err(Malformed::Truncated);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    // Through words, as `v4_mapped` does.
    let base = Packet {
        is_v6: true,
        src: from_words(ne_words(&src)),
        dst: from_words(ne_words(&dst)),
        proto: 0,
        frag: Fragment::None,
        sport: 0,
        dport: 0,
        payload_off: 0,
        payload_len: 0,
        udp_len: 0,
    };
    match v6_chain(p, base, off + 40, ip[6], end) {
        Ok(pkt) => Ok((pkt, false)),
        Err(Malformed::ExtensionChainTooLong) => Ok((base, true)),
        Err(m) => Err(m),
    }
}

/// A header load that failed: truncated when the header would run past the
/// packet's end, else out of the reader's reach.
#[inline(always)]
fn unreachable_or_truncated(need: usize, end: usize) -> Malformed {
    if need <= end {
        Malformed::ExtensionChainTooLong
    } else {
        Malformed::Truncated
    }
}

/// Follow the extension headers from `l4` (next header `next`) and parse the
/// transport header behind them.
#[inline(always)]
fn v6_chain<P: PacketBytes + ?Sized>(
    p: &P,
    base: Packet,
    mut l4: usize,
    mut next: u8,
    end: usize,
) -> Result<Packet, Malformed> {
    let mut frag = Fragment::None;
    let mut i = 0;
    loop {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-byte
            // units; authentication header: in 4-byte units; neither counts
            // the first 8 bytes.
            0 | 43 | 51 | 60 => {
                if i == MAX_V6_EXT_HEADERS {
                    return Err(Malformed::ExtensionChainTooLong);
                }
                let h = p
                    .load::<2>(l4)
                    .ok_or_else(|| unreachable_or_truncated(l4 + 2, end))?;
                l4 += if next == 51 {
                    (h[1] as usize + 2) * 4
                } else {
                    (h[1] as usize + 1) * 8
                };
                next = h[0];
            }
            44 => {
                if i == MAX_V6_EXT_HEADERS {
                    return Err(Malformed::ExtensionChainTooLong);
                }
                let f = p
                    .load::<8>(l4)
                    .ok_or_else(|| unreachable_or_truncated(l4 + 8, end))?;
                next = f[0];
                let frag_off = be16([f[2], f[3]]) >> 3;
                let more = f[3] & 1 != 0;
                let id = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                l4 += 8;
                if frag_off != 0 {
                    frag = Fragment::Later {
                        id,
                        offset: frag_off << 3,
                    };
                } else if more {
                    frag = Fragment::First { id };
                }
            }
            _ => break,
        }
        i += 1;
        if l4 > end {
            return Err(Malformed::Truncated);
        }
        if matches!(frag, Fragment::Later { .. }) {
            // What follows is fragment data, not headers.
            break;
        }
    }
    let pkt = Packet {
        proto: next,
        frag,
        ..base
    };
    parse_l4(p, pkt, l4, end)
}

/// A transport header inside the packet that the reader could not load:
/// for IPv6, hidden behind the extension chain (an IPv4 header never puts
/// it out of reach).
#[inline(always)]
fn unreachable(pkt: &Packet) -> Malformed {
    if pkt.is_v6 {
        Malformed::ExtensionChainTooLong
    } else {
        Malformed::Truncated
    }
}

#[inline(always)]
fn parse_l4<P: PacketBytes + ?Sized>(
    p: &P,
    mut pkt: Packet,
    l4: usize,
    end: usize,
) -> Result<Packet, Malformed> {
    if matches!(pkt.frag, Fragment::Later { .. }) {
        // Its data, whatever protocol: where it starts and how long it is.
        pkt.payload_off = l4;
        pkt.payload_len = end.saturating_sub(l4);
        return Ok(pkt);
    }
    match pkt.proto {
        PROTO_UDP => {
            if l4 + 8 > end {
                return Err(Malformed::Truncated);
            }
            let udp = p.load::<8>(l4).ok_or_else(|| unreachable(&pkt))?;
            pkt.sport = be16([udp[0], udp[1]]);
            pkt.dport = be16([udp[2], udp[3]]);
            let udp_len = be16([udp[4], udp[5]]) as usize;
            let carried = end.saturating_sub(l4);
            if udp_len < 8 {
                return Err(Malformed::BadUdpLength);
            }
            pkt.udp_len = udp_len as u16;
            pkt.payload_off = l4 + 8;
            pkt.payload_len = if matches!(pkt.frag, Fragment::First { .. }) {
                // The datagram continues in later fragments.
                (udp_len - 8).min(carried.saturating_sub(8))
            } else if udp_len > carried {
                return Err(Malformed::BadUdpLength);
            } else {
                udp_len - 8
            };
        }
        PROTO_TCP => {
            if l4 + 4 > end {
                return Err(Malformed::Truncated);
            }
            let ports = p.load::<4>(l4).ok_or_else(|| unreachable(&pkt))?;
            pkt.sport = be16([ports[0], ports[1]]);
            pkt.dport = be16([ports[2], ports[3]]);
            // The payload behind the header (data offset in 32-bit words),
            // when the header is there whole; else none is looked at.
            if let Some(h) = p.load::<1>(l4 + 12) {
                let hdr = usize::from(h[0] >> 4) * 4;
                if hdr >= 20 && l4 + hdr <= end {
                    pkt.payload_off = l4 + hdr;
                    pkt.payload_len = end - (l4 + hdr);
                }
            }
        }
        _ => {}
    }
    Ok(pkt)
}
