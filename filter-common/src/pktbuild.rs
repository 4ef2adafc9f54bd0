//! Packet builder for tests and traffic generators (host only).
//!
//! Two layers:
//!
//! * **Frames**: [`Builder`] assembles Ethernet (with any number of VLAN
//!   tags), IPv4 (options, fragments) or IPv6 (any chain of extension
//!   headers), and UDP, TCP, ICMP or raw upper-layer bytes, with correct
//!   lengths and checksums by default and explicit overrides to make
//!   malformed frames. [`udp4`], [`udp6`], [`tcp4`], [`tcp6`] and
//!   [`arp_request`] are shortcuts for the common shapes. Truncate a frame by
//!   slicing the returned `Vec`.
//! * **Payloads**: byte-exact call-protocol messages for the UDP payload:
//!   [`stun`], [`stun_classic`], [`rtp`] / [`Rtp`], [`rtcp`],
//!   [`dtls_record`], [`channel_data`] and a [`quic_short_header`]
//!   look-alike.
//!
//! Everything here allocates and may panic on nonsensical arguments (a
//! builder for tests, not a parser); nothing here is used by the XDP program.
//!
//! ```
//! use filter_common::pktbuild::{self, Builder};
//!
//! let stun = pktbuild::stun(0x0001, [7; 12], &[]);
//! let frame = pktbuild::udp4([10, 0, 0, 1], 5000, [91, 108, 4, 1], 3478, &stun);
//! assert_eq!(frame.len(), 14 + 20 + 8 + 20);
//!
//! let odd = Builder::new()
//!     .vlan(100)
//!     .qinq(200)
//!     .ipv6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0xfe; 16])
//!     .v6_ext(0, 8)
//!     .v6_ext(60, 16)
//!     .udp(5000, 3478, &stun)
//!     .build();
//! assert_eq!(odd.len(), 14 + 8 + 40 + 8 + 16 + 8 + 20);
//! ```

use std::vec::Vec;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// TPID of an 802.1Q VLAN tag.
pub const TPID_VLAN: u16 = 0x8100;
/// TPID of an 802.1ad (QinQ) service tag.
pub const TPID_QINQ: u16 = 0x88A8;

/// Default destination MAC of built frames.
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Default source MAC of built frames.
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Smallest Ethernet frame without FCS; see [`Builder::pad_to`].
pub const ETH_MIN_FRAME: usize = 60;

/// Addresses and ids the tests, fuzz seeds and ffbench build frames with:
/// documentation prefixes only (RFC 5737 / RFC 3849).
pub mod sample {
    /// A client (192.0.2.10).
    pub const CLIENT4: [u8; 4] = [192, 0, 2, 10];
    /// A relay (198.51.100.10).
    pub const RELAY4: [u8; 4] = [198, 51, 100, 10];
    /// A client (2001:db8::10).
    pub const CLIENT6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    /// A relay (2001:db8:1::5).
    pub const RELAY6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    /// A STUN transaction id.
    pub const TXID: [u8; 12] = [
        0x5e, 0x11, 0x0c, 0x9a, 0x42, 0x07, 0xd3, 0x68, 0xb0, 0x1f, 0x2c, 0x73,
    ];
    /// A Telegram peer tag whose first byte routes nowhere in the
    /// demultiplexer.
    pub const TAG: [u8; 16] = [
        0x2f, 0xe4, 0x9f, 0xa7, 0x6c, 0x4e, 0xb4, 0x33, 0xcb, 0xcd, 0x82, 0xa1, 0xbb, 0xea, 0x62,
        0x1e,
    ];
}

/// IP protocol / IPv6 next-header numbers used by the builder.
pub mod proto {
    /// IPv6 hop-by-hop options header.
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP (IPv4).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = crate::parse::PROTO_TCP;
    /// UDP.
    pub const UDP: u8 = crate::parse::PROTO_UDP;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Authentication header (length in 4-byte units).
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 destination options header.
    pub const DEST_OPTS: u8 = 60;
}

/// TCP flag bits for [`Builder::tcp_flags`].
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 1 << 0;
    /// SYN.
    pub const SYN: u8 = 1 << 1;
    /// RST.
    pub const RST: u8 = 1 << 2;
    /// PSH.
    pub const PSH: u8 = 1 << 3;
    /// ACK.
    pub const ACK: u8 = 1 << 4;
}

// ---------------------------------------------------------------------------
// Checksums
// ---------------------------------------------------------------------------

/// The Internet checksum (RFC 1071) of the concatenation of `parts`: the
/// ones' complement of the ones' complement sum of 16-bit big-endian words,
/// an odd trailing byte padded with zero. Summing a header that contains its
/// correct checksum gives 0.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 pseudo-header for upper-layer checksums.
fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> [u8; 12] {
    let l = len.to_be_bytes();
    [
        src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3], 0, proto, l[0], l[1],
    ]
}

/// IPv6 pseudo-header for upper-layer checksums.
fn pseudo_v6(src: [u8; 16], dst: [u8; 16], next: u8, len: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[..16].copy_from_slice(&src);
    p[16..32].copy_from_slice(&dst);
    p[32..36].copy_from_slice(&len.to_be_bytes());
    p[39] = next;
    p
}

// ---------------------------------------------------------------------------
// Frame builder
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Net {
    Unset,
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
    Other { ethertype: u16, bytes: Vec<u8> },
}

#[derive(Clone, Debug)]
enum Ext {
    /// Hop-by-hop / routing / destination options (8-byte units) or AH
    /// (4-byte units), `len` bytes in all.
    Sized { kind: u8, len: usize },
    /// A fragment header.
    Fragment { offset: u16, more: bool, id: u32 },
    /// Caller's bytes; byte 0 (next header) is filled in.
    Raw { kind: u8, bytes: Vec<u8> },
}

/// The ports of a UDP or TCP header and the payload after it.
#[derive(Clone, Debug)]
struct Ports {
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
}

impl Ports {
    fn new(sport: u16, dport: u16, payload: &[u8]) -> Self {
        Ports {
            sport,
            dport,
            payload: payload.to_vec(),
        }
    }
}

#[derive(Clone, Debug)]
enum Upper {
    None,
    Udp(Ports),
    Tcp(Ports),
    Icmp { ty: u8, code: u8, body: Vec<u8> },
    Raw { proto: u8, bytes: Vec<u8> },
}

/// General frame builder: Ethernet, VLAN tags, IPv4 or IPv6 (or a non-IP
/// EtherType), then UDP, TCP, ICMP or raw bytes.
///
/// Defaults produce a well-formed frame: lengths, IHL, the IPv4 header
/// checksum and the UDP/TCP/ICMP checksums are computed (the UDP checksum
/// for IPv4 too). Every `*_override`-style knob ([`Self::ihl`],
/// [`Self::total_len`], [`Self::ipv6_payload_len`], [`Self::udp_len`],
/// [`Self::ip_version`], [`Self::ethertype`], [`Self::udp_checksum`]) writes
/// the given value verbatim and leaves everything else as computed, so a
/// test changes exactly one field. Knobs of the other IP version are
/// ignored, and the order of calls does not matter except for tags and
/// extension headers, which are emitted in call order.
#[derive(Clone, Debug)]
#[must_use]
pub struct Builder {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    tags: Vec<(u16, u16)>,
    ethertype: Option<u16>,
    net: Net,
    version: Option<u8>,
    // IPv4
    tos: u8,
    ttl: u8,
    id: u16,
    dont_fragment: bool,
    frag_offset: u16,
    more_fragments: bool,
    options: Vec<u8>,
    ihl: Option<u8>,
    total_len: Option<u16>,
    ip_checksum: Option<u16>,
    // IPv6
    flow_label: u32,
    exts: Vec<Ext>,
    payload_len: Option<u16>,
    // L4
    upper: Upper,
    tcp_flags: u8,
    tcp_seq: u32,
    udp_len: Option<u16>,
    l4_checksum: Option<u16>,
    // After the IP packet
    trailer: Vec<u8>,
    pad_to: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

/// A built frame with the offsets a parser should find in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The whole frame, starting with the Ethernet header (no FCS).
    pub bytes: Vec<u8>,
    /// Offset of the IP (or other network-layer) header.
    pub l3_off: usize,
    /// Offset of the upper-layer header: after IPv4 options or the last
    /// IPv6 extension header.
    pub l4_off: usize,
    /// Offset of the UDP or TCP payload (equals `l4_off` for ICMP and raw
    /// upper-layer bytes).
    pub payload_off: usize,
    /// Length of that payload as built (before any override).
    pub payload_len: usize,
    /// Offset one past the IP packet (where Ethernet padding or a trailer
    /// starts).
    pub l3_end: usize,
}

/// Builder methods that store their argument: `name(arg: T) => field;`
/// writes it to `field` as it is, `name(arg: T) => Some(field);` as an
/// override of what the build would compute.
macro_rules! setters {
    () => {};
    ($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty) => Some($field:ident); $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self, $arg: $ty) -> Self {
            self.$field = Some($arg);
            self
        }
        setters!($($rest)*);
    };
    ($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty) => $field:ident; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self, $arg: $ty) -> Self {
            self.$field = $arg;
            self
        }
        setters!($($rest)*);
    };
}

impl Builder {
    /// An empty builder: default MACs, no tags, no network layer yet (call
    /// [`Self::ipv4`], [`Self::ipv6`] or [`Self::non_ip`] before building).
    pub fn new() -> Self {
        Self {
            dst_mac: DEFAULT_DST_MAC,
            src_mac: DEFAULT_SRC_MAC,
            tags: Vec::new(),
            ethertype: None,
            net: Net::Unset,
            version: None,
            tos: 0,
            ttl: 64,
            id: 0x1234,
            dont_fragment: false,
            frag_offset: 0,
            more_fragments: false,
            options: Vec::new(),
            ihl: None,
            total_len: None,
            ip_checksum: None,
            flow_label: 0,
            exts: Vec::new(),
            payload_len: None,
            upper: Upper::None,
            tcp_flags: tcp_flags::ACK | tcp_flags::PSH,
            tcp_seq: 1,
            udp_len: None,
            l4_checksum: None,
            trailer: Vec::new(),
            pad_to: 0,
        }
    }

    /// `Builder::new().ipv4(src, dst)`.
    pub fn v4(src: [u8; 4], dst: [u8; 4]) -> Self {
        Self::new().ipv4(src, dst)
    }

    /// `Builder::new().ipv6(src, dst)`.
    pub fn v6(src: [u8; 16], dst: [u8; 16]) -> Self {
        Self::new().ipv6(src, dst)
    }

    // --- Ethernet ---------------------------------------------------------

    /// Destination and source MAC addresses.
    pub fn macs(mut self, dst: [u8; 6], src: [u8; 6]) -> Self {
        self.dst_mac = dst;
        self.src_mac = src;
        self
    }

    /// Append an 802.1Q tag (TPID 0x8100) with VLAN id `vid` (12 bits).
    pub fn vlan(self, vid: u16) -> Self {
        self.tag(TPID_VLAN, vid & 0x0fff)
    }

    /// Append an 802.1ad tag (TPID 0x88A8) with VLAN id `vid` (12 bits).
    pub fn qinq(self, vid: u16) -> Self {
        self.tag(TPID_QINQ, vid & 0x0fff)
    }

    /// Append a tag with any TPID and TCI. Tags appear in call order, the
    /// first call outermost; any number is allowed (to test limits).
    pub fn tag(mut self, tpid: u16, tci: u16) -> Self {
        self.tags.push((tpid, tci));
        self
    }

    /// A non-IP frame: `ethertype` followed by `bytes`.
    pub fn non_ip(mut self, ethertype: u16, bytes: &[u8]) -> Self {
        self.net = Net::Other {
            ethertype,
            bytes: bytes.to_vec(),
        };
        self
    }

    /// Append these bytes after the IP packet (non-zero Ethernet padding, a
    /// trailer). Not counted in any IP or UDP length.
    pub fn trailer(mut self, bytes: &[u8]) -> Self {
        self.trailer.extend_from_slice(bytes);
        self
    }

    setters! {
        /// Write this EtherType after the tags instead of the one the network
        /// layer implies (e.g. IPv6 bytes under the IPv4 EtherType).
        ethertype(ethertype: u16) => Some(ethertype);

        /// Pad the frame with zero bytes up to `len` bytes (after any trailer);
        /// [`ETH_MIN_FRAME`] gives the Ethernet minimum.
        pad_to(len: usize) => pad_to;
    }

    // --- IP, both versions --------------------------------------------------

    setters! {
        /// Write this value in the IP version nibble instead of 4 or 6.
        ip_version(version: u8) => Some(version);
    }

    // --- IPv4 -----------------------------------------------------------------

    /// IPv4 network layer.
    pub fn ipv4(mut self, src: [u8; 4], dst: [u8; 4]) -> Self {
        self.net = Net::V4 { src, dst };
        self
    }

    /// IPv4 options. Padded with zero bytes (End of Option List) to a
    /// multiple of 4; IHL becomes `5 + padded_len / 4` unless overridden.
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        while !self.options.len().is_multiple_of(4) {
            self.options.push(0);
        }
        self
    }

    /// Set the IPv4 Don't Fragment flag.
    pub fn dont_fragment(mut self) -> Self {
        self.dont_fragment = true;
        self
    }

    /// IPv4 fragment: offset in 8-byte units (13 bits) and the More
    /// Fragments flag. A first fragment is `(0, true)` and carries the UDP
    /// header; for a later fragment (`offset > 0`) use [`Self::raw`] to
    /// supply the fragment's bytes, as it has no UDP header.
    pub fn ipv4_fragment(mut self, offset_units: u16, more: bool) -> Self {
        self.frag_offset = offset_units & 0x1fff;
        self.more_fragments = more;
        self
    }

    /// Write this IHL (4 bits) instead of the computed one. The header bytes
    /// actually emitted stay 20 + options.
    pub fn ihl(mut self, ihl: u8) -> Self {
        self.ihl = Some(ihl & 0x0f);
        self
    }

    setters! {
        /// IPv4 identification.
        ipv4_id(id: u16) => id;

        /// IPv4 TTL (default 64); also the IPv6 hop limit.
        ttl(ttl: u8) => ttl;

        /// IPv4 TOS / IPv6 traffic class.
        tos(tos: u8) => tos;

        /// Write this IPv4 total length instead of the computed one.
        total_len(len: u16) => Some(total_len);

        /// Write this IPv4 header checksum instead of the computed one.
        ipv4_checksum(checksum: u16) => Some(ip_checksum);
    }

    // --- IPv6 -----------------------------------------------------------------

    /// IPv6 network layer.
    pub fn ipv6(mut self, src: [u8; 16], dst: [u8; 16]) -> Self {
        self.net = Net::V6 { src, dst };
        self
    }

    /// IPv6 flow label (20 bits).
    pub fn flow_label(mut self, label: u32) -> Self {
        self.flow_label = label & 0x000f_ffff;
        self
    }

    /// Append an IPv6 extension header of type `kind`, `len` bytes long in
    /// all. Its length field is computed in the header's own unit: 4 bytes
    /// not counting the first 8 for AH (51), 8 bytes not counting the first 8
    /// for every other kind (hop-by-hop 0, routing 43, destination options
    /// 60, or anything else in that format). Options headers are filled with
    /// PadN so they are valid; other bodies are zero. For a fragment header
    /// use [`Self::v6_fragment`].
    ///
    /// # Panics
    /// When `len` is not a valid length for the kind (multiple of 8 and
    /// 8..=2048; AH: multiple of 4 and 8..=1028), or `kind` is 44.
    pub fn v6_ext(mut self, kind: u8, len: usize) -> Self {
        assert!(
            kind != proto::FRAGMENT,
            "use v6_fragment for a fragment header"
        );
        if kind == proto::AH {
            assert!(
                len.is_multiple_of(4) && (8..=1028).contains(&len),
                "AH length must be a multiple of 4 in 8..=1028, got {len}"
            );
        } else {
            assert!(
                len.is_multiple_of(8) && (8..=2048).contains(&len),
                "extension header length must be a multiple of 8 in 8..=2048, got {len}"
            );
        }
        self.exts.push(Ext::Sized { kind, len });
        self
    }

    /// Append an IPv6 fragment header: offset in 8-byte units (13 bits), More
    /// Fragments flag, 32-bit identification. A first fragment is
    /// `(0, true, id)`; a later one (`offset > 0`) carries no UDP header, so
    /// use [`Self::raw`] for its bytes. The header's next-header field names
    /// whatever follows it (the next extension header or the upper layer).
    pub fn v6_fragment(mut self, offset_units: u16, more: bool, id: u32) -> Self {
        self.exts.push(Ext::Fragment {
            offset: offset_units & 0x1fff,
            more,
            id,
        });
        self
    }

    /// Append an extension header of type `kind` with these exact bytes
    /// (byte 0, the next-header field, is overwritten; byte 1, the length
    /// field, is the caller's, so it may lie).
    ///
    /// # Panics
    /// When `bytes` is shorter than 2.
    pub fn v6_ext_raw(mut self, kind: u8, bytes: &[u8]) -> Self {
        assert!(bytes.len() >= 2, "an extension header has at least 2 bytes");
        self.exts.push(Ext::Raw {
            kind,
            bytes: bytes.to_vec(),
        });
        self
    }

    setters! {
        /// Write this IPv6 payload length instead of the computed one.
        ipv6_payload_len(len: u16) => Some(payload_len);
    }

    // --- Upper layer ------------------------------------------------------------

    /// UDP with this payload.
    pub fn udp(mut self, sport: u16, dport: u16, payload: &[u8]) -> Self {
        self.upper = Upper::Udp(Ports::new(sport, dport, payload));
        self
    }

    /// TCP (20-byte header, no options) with this payload.
    pub fn tcp(mut self, sport: u16, dport: u16, payload: &[u8]) -> Self {
        self.upper = Upper::Tcp(Ports::new(sport, dport, payload));
        self
    }

    /// ICMP (over IPv4) or ICMPv6 (over IPv6): type, code, then `body` after
    /// the 4-byte type/code/checksum header.
    pub fn icmp(mut self, ty: u8, code: u8, body: &[u8]) -> Self {
        self.upper = Upper::Icmp {
            ty,
            code,
            body: body.to_vec(),
        };
        self
    }

    /// Raw upper-layer bytes with this protocol number: a later fragment's
    /// data, an unknown protocol, a hand-made header.
    pub fn raw(mut self, proto: u8, bytes: &[u8]) -> Self {
        self.upper = Upper::Raw {
            proto,
            bytes: bytes.to_vec(),
        };
        self
    }

    setters! {
        /// Write this UDP length instead of `8 + payload.len()`.
        udp_len(len: u16) => Some(udp_len);

        /// Write this UDP/TCP/ICMP checksum instead of the computed one (0
        /// means "no checksum" for UDP over IPv4).
        udp_checksum(checksum: u16) => Some(l4_checksum);

        /// TCP flags (see [`tcp_flags`]); default ACK|PSH.
        tcp_flags(flags: u8) => tcp_flags;

        /// TCP sequence number (default 1).
        tcp_seq(seq: u32) => tcp_seq;
    }

    // --- Build --------------------------------------------------------------------

    /// The frame bytes.
    ///
    /// # Panics
    /// When no network layer was chosen, or a computed length does not fit
    /// its field (use the overrides for impossible values).
    pub fn build(&self) -> Vec<u8> {
        self.build_frame().bytes
    }

    /// The frame bytes with the offsets of its layers.
    ///
    /// # Panics
    /// As [`Self::build`].
    pub fn build_frame(&self) -> Frame {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        let implied = match &self.net {
            Net::Unset => panic!("Builder: call ipv4, ipv6 or non_ip before build"),
            Net::V4 { .. } => ETHERTYPE_IPV4,
            Net::V6 { .. } => ETHERTYPE_IPV6,
            Net::Other { ethertype, .. } => *ethertype,
        };
        for &(tpid, tci) in &self.tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        // Each tag's TPID sits where the previous header's EtherType goes, so
        // writing TPID, TCI pairs after the MACs and the inner EtherType last
        // yields: MACs, TPID1, TCI1, TPID2, TCI2, ..., EtherType.
        out.extend_from_slice(&self.ethertype.unwrap_or(implied).to_be_bytes());
        let l3_off = out.len();

        let (upper_proto, l4, payload_rel, payload_len) = self.upper_bytes();
        let (l4_off, payload_off) = match &self.net {
            Net::Unset => unreachable!(),
            Net::Other { bytes, .. } => {
                out.extend_from_slice(bytes);
                (out.len(), out.len())
            }
            Net::V4 { src, dst } => {
                let l4 = self.finish_l4_v4(*src, *dst, upper_proto, l4);
                let hdr = self.ipv4_header(*src, *dst, upper_proto, l4.len());
                out.extend_from_slice(&hdr);
                let l4_off = out.len();
                out.extend_from_slice(&l4);
                (l4_off, l4_off + payload_rel)
            }
            Net::V6 { src, dst } => {
                let l4 = self.finish_l4_v6(*src, *dst, upper_proto, l4);
                let exts = self.v6_exts(upper_proto);
                let plen = self
                    .payload_len
                    .unwrap_or_else(|| to_u16(exts.len() + l4.len(), "IPv6 payload length"));
                let version = self.version.unwrap_or(6);
                let vtf = (u32::from(version & 0x0f) << 28)
                    | (u32::from(self.tos) << 20)
                    | self.flow_label;
                out.extend_from_slice(&vtf.to_be_bytes());
                out.extend_from_slice(&plen.to_be_bytes());
                out.push(self.exts_first_kind(upper_proto));
                out.push(self.ttl);
                out.extend_from_slice(src);
                out.extend_from_slice(dst);
                out.extend_from_slice(&exts);
                let l4_off = out.len();
                out.extend_from_slice(&l4);
                (l4_off, l4_off + payload_rel)
            }
        };
        let l3_end = out.len();
        out.extend_from_slice(&self.trailer);
        if out.len() < self.pad_to {
            out.resize(self.pad_to, 0);
        }
        Frame {
            bytes: out,
            l3_off,
            l4_off,
            payload_off,
            payload_len,
            l3_end,
        }
    }

    /// Upper-layer protocol number, bytes with the checksum field zero,
    /// payload offset inside them, payload length.
    fn upper_bytes(&self) -> (u8, Vec<u8>, usize, usize) {
        let v6 = matches!(self.net, Net::V6 { .. });
        match &self.upper {
            Upper::None => (proto::NO_NEXT_HEADER, Vec::new(), 0, 0),
            Upper::Udp(Ports {
                sport,
                dport,
                payload,
            }) => {
                let len = self
                    .udp_len
                    .unwrap_or_else(|| to_u16(8 + payload.len(), "UDP length"));
                let mut b = Vec::with_capacity(8 + payload.len());
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(payload);
                (proto::UDP, b, 8, payload.len())
            }
            Upper::Tcp(Ports {
                sport,
                dport,
                payload,
            }) => {
                let mut b = Vec::with_capacity(20 + payload.len());
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&self.tcp_seq.to_be_bytes());
                let ack = u32::from(self.tcp_flags & tcp_flags::ACK != 0);
                b.extend_from_slice(&ack.to_be_bytes());
                b.push(5 << 4); // data offset: 5 words
                b.push(self.tcp_flags);
                b.extend_from_slice(&0xffffu16.to_be_bytes()); // window
                b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                b.extend_from_slice(payload);
                (proto::TCP, b, 20, payload.len())
            }
            Upper::Icmp { ty, code, body } => {
                let mut b = Vec::with_capacity(4 + body.len());
                b.extend_from_slice(&[*ty, *code, 0, 0]);
                b.extend_from_slice(body);
                let p = if v6 { proto::ICMPV6 } else { proto::ICMP };
                (p, b, 0, 0)
            }
            Upper::Raw { proto, bytes } => (*proto, bytes.clone(), 0, 0),
        }
    }

    /// Offset of the checksum field in the upper-layer header, if it has one.
    fn checksum_at(&self) -> Option<usize> {
        match self.upper {
            Upper::Udp(_) => Some(6),
            Upper::Tcp(_) => Some(16),
            Upper::Icmp { .. } => Some(2),
            Upper::None | Upper::Raw { .. } => None,
        }
    }

    fn put_checksum(&self, l4: &mut [u8], computed: impl FnOnce(&[u8]) -> u16) {
        let Some(at) = self.checksum_at() else {
            return;
        };
        let mut c = match self.l4_checksum {
            Some(c) => c,
            None => computed(l4),
        };
        if self.l4_checksum.is_none() && matches!(self.upper, Upper::Udp(_)) && c == 0 {
            // RFC 768: a computed zero is sent as all ones.
            c = 0xffff;
        }
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// Length the pseudo-header announces: the UDP length field for UDP, the
    /// carried length otherwise.
    fn pseudo_len(&self, l4: &[u8]) -> usize {
        match self.upper {
            Upper::Udp(_) => u16::from_be_bytes([l4[4], l4[5]]) as usize,
            _ => l4.len(),
        }
    }

    fn finish_l4_v4(&self, src: [u8; 4], dst: [u8; 4], p: u8, mut l4: Vec<u8>) -> Vec<u8> {
        let pseudo_len = self.pseudo_len(&l4);
        self.put_checksum(&mut l4, |b| {
            if p == proto::ICMP {
                internet_checksum(&[b])
            } else {
                let ph = pseudo_v4(src, dst, p, pseudo_len as u16);
                internet_checksum(&[&ph, b])
            }
        });
        l4
    }

    fn finish_l4_v6(&self, src: [u8; 16], dst: [u8; 16], p: u8, mut l4: Vec<u8>) -> Vec<u8> {
        let pseudo_len = self.pseudo_len(&l4);
        self.put_checksum(&mut l4, |b| {
            let ph = pseudo_v6(src, dst, p, pseudo_len as u32);
            internet_checksum(&[&ph, b])
        });
        l4
    }

    fn ipv4_header(&self, src: [u8; 4], dst: [u8; 4], p: u8, l4_len: usize) -> Vec<u8> {
        let hdr_len = 20 + self.options.len();
        assert!(hdr_len <= 60, "IPv4 options longer than 40 bytes");
        let ihl = self.ihl.unwrap_or((hdr_len / 4) as u8);
        let version = self.version.unwrap_or(4);
        let total = self
            .total_len
            .unwrap_or_else(|| to_u16(hdr_len + l4_len, "IPv4 total length"));
        let mut flags = self.frag_offset;
        if self.more_fragments {
            flags |= 0x2000;
        }
        if self.dont_fragment {
            flags |= 0x4000;
        }
        let mut h = Vec::with_capacity(hdr_len);
        h.push((version << 4) | (ihl & 0x0f));
        h.push(self.tos);
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&flags.to_be_bytes());
        h.push(self.ttl);
        h.push(p);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(&self.options);
        let c = self.ip_checksum.unwrap_or_else(|| internet_checksum(&[&h]));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn ext_kind(e: &Ext) -> u8 {
        match e {
            Ext::Sized { kind, .. } | Ext::Raw { kind, .. } => *kind,
            Ext::Fragment { .. } => proto::FRAGMENT,
        }
    }

    fn exts_first_kind(&self, upper_proto: u8) -> u8 {
        self.exts.first().map_or(upper_proto, Self::ext_kind)
    }

    fn v6_exts(&self, upper_proto: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, e) in self.exts.iter().enumerate() {
            let next = self.exts.get(i + 1).map_or(upper_proto, Self::ext_kind);
            match e {
                Ext::Sized { kind, len } => {
                    let start = out.len();
                    out.resize(start + len, 0);
                    let h = &mut out[start..];
                    h[0] = next;
                    if *kind == proto::AH {
                        h[1] = (len / 4 - 2) as u8;
                        // SPI 0x100, sequence number 1 (when it fits: RFC 4302
                        // wants 12 bytes at least); the ICV stays zero.
                        h[4..8].copy_from_slice(&0x100u32.to_be_bytes());
                        if *len >= 12 {
                            h[8..12].copy_from_slice(&1u32.to_be_bytes());
                        }
                    } else {
                        h[1] = (len / 8 - 1) as u8;
                        if matches!(*kind, proto::HOP_BY_HOP | proto::DEST_OPTS) {
                            // One PadN option over the remaining len - 2 bytes.
                            h[2] = 1;
                            h[3] = (len - 4) as u8;
                        }
                    }
                }
                Ext::Fragment { offset, more, id } => {
                    let field = (offset << 3) | u16::from(*more);
                    out.push(next);
                    out.push(0);
                    out.extend_from_slice(&field.to_be_bytes());
                    out.extend_from_slice(&id.to_be_bytes());
                }
                Ext::Raw { bytes, .. } => {
                    let start = out.len();
                    out.extend_from_slice(bytes);
                    out[start] = next;
                }
            }
        }
        out
    }
}

fn to_u16(len: usize, what: &str) -> u16 {
    u16::try_from(len).unwrap_or_else(|_| panic!("{what} {len} does not fit 16 bits"))
}

// ---------------------------------------------------------------------------
// Shortcuts
// ---------------------------------------------------------------------------

/// Ethernet + IPv4 + UDP frame with correct lengths and checksums.
pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    Builder::v4(src, dst).udp(sport, dport, payload).build()
}

/// Ethernet + IPv6 + UDP frame with correct lengths and checksum.
pub fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
    Builder::v6(src, dst).udp(sport, dport, payload).build()
}

/// Ethernet + IPv4 + TCP (ACK|PSH, no options) frame.
pub fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    Builder::v4(src, dst).tcp(sport, dport, payload).build()
}

/// Ethernet + IPv6 + TCP (ACK|PSH, no options) frame.
pub fn tcp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
    Builder::v6(src, dst).tcp(sport, dport, payload).build()
}

/// Broadcast ARP request (who-has `target_ip`, tell `sender_ip`), padded to
/// the Ethernet minimum.
pub fn arp_request(sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut arp = Vec::with_capacity(28);
    arp.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    arp.extend_from_slice(&sender_mac);
    arp.extend_from_slice(&sender_ip);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target_ip);
    Builder::new()
        .macs([0xff; 6], sender_mac)
        .non_ip(ETHERTYPE_ARP, &arp)
        .pad_to(ETH_MIN_FRAME)
        .build()
}

/// IPv4 address `a.b.c.d` as the IPv4-mapped IPv6 address `::ffff:a.b.c.d`.
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a);
    m
}

// ---------------------------------------------------------------------------
// Call-protocol payloads
// ---------------------------------------------------------------------------

/// STUN magic cookie (RFC 5389), as a number.
pub const STUN_MAGIC_COOKIE: u32 = u32::from_be_bytes(crate::classify::STUN_COOKIE);

/// STUN / TURN message types: the method, with the class bits of a
/// response or an indication (RFC 8489 §5; methods below 0x10 do not
/// interleave with them).
pub mod stun_type {
    /// Class bits of an indication (a request has none).
    const INDICATION: u16 = 0x0010;
    /// Class bits of a success response.
    const SUCCESS: u16 = 0x0100;
    /// Class bits of an error response.
    const ERROR: u16 = 0x0110;

    /// Binding request.
    pub const BINDING_REQUEST: u16 = 0x0001;
    /// Binding success response.
    pub const BINDING_RESPONSE: u16 = BINDING_REQUEST | SUCCESS;
    /// Binding error response.
    pub const BINDING_ERROR: u16 = BINDING_REQUEST | ERROR;
    /// Binding indication.
    pub const BINDING_INDICATION: u16 = BINDING_REQUEST | INDICATION;
    /// TURN Allocate request.
    pub const ALLOCATE: u16 = 0x0003;
    /// TURN Allocate success response.
    pub const ALLOCATE_RESPONSE: u16 = ALLOCATE | SUCCESS;
    /// TURN Allocate error response.
    pub const ALLOCATE_ERROR: u16 = ALLOCATE | ERROR;
    /// TURN Refresh request.
    pub const REFRESH: u16 = 0x0004;
    /// TURN Send indication.
    pub const SEND_INDICATION: u16 = 0x0006 | INDICATION;
    /// TURN Data indication.
    pub const DATA_INDICATION: u16 = 0x0007 | INDICATION;
    /// TURN CreatePermission request.
    pub const CREATE_PERMISSION: u16 = 0x0008;
    /// TURN ChannelBind request.
    pub const CHANNEL_BIND: u16 = 0x0009;
}

/// STUN / TURN attribute types.
pub mod stun_attr {
    /// Types from 0x8000 up are comprehension-optional (RFC 8489 §14): an
    /// agent that does not know one ignores it.
    const OPTIONAL: u16 = 0x8000;

    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (20-byte HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = OPTIONAL | 0x0022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = OPTIONAL | 0x0028;
}

fn stun_attrs(attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(ty, value) in attrs {
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&to_u16(value.len(), "STUN attribute length").to_be_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    out
}

/// STUN message (RFC 5389/8489): type, length, magic cookie, 12-byte
/// transaction id, then the attributes, each `type, length, value` padded
/// with zeros to a multiple of 4 (the length field holds the unpadded value
/// length). The message length field counts the padded attributes, so the
/// whole message is `20 + length` bytes.
pub fn stun(msg_type: u16, txid: [u8; 12], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let body = stun_attrs(attrs);
    let mut m = Vec::with_capacity(20 + body.len());
    m.extend_from_slice(&msg_type.to_be_bytes());
    m.extend_from_slice(&to_u16(body.len(), "STUN message length").to_be_bytes());
    m.extend_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(&txid);
    m.extend_from_slice(&body);
    m
}

/// STUN message with the magic cookie whose length field counts exactly
/// `body` (no padding rule applied: WhatsApp's private messages have lengths
/// that are not multiples of 4).
pub fn stun_raw(msg_type: u16, txid: [u8; 12], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + body.len());
    m.extend_from_slice(&msg_type.to_be_bytes());
    m.extend_from_slice(&to_u16(body.len(), "STUN message length").to_be_bytes());
    m.extend_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(&txid);
    m.extend_from_slice(body);
    m
}

/// Telegram reflector control packet: the 16-byte peer tag, twelve 0xFF,
/// the 4-byte type, then filler (seed 0x3d) up to `len`; cut to `len` when
/// shorter than those 32 bytes.
pub fn tg_reflector(tag: [u8; 16], ty: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = tag.to_vec();
    p.extend_from_slice(&[0xff; 12]);
    p.extend_from_slice(&ty);
    if len > p.len() {
        let fill = filler(len - p.len(), 0x3d);
        p.extend_from_slice(&fill);
    }
    p.truncate(len);
    p
}

/// tgcalls reflector data: the 12-byte `prefix`, receiver tag 0a0b0c0d and
/// sender tag 71727374, the u32be length field `inner_len_field`, `inner`,
/// then `pad` zero bytes.
pub fn tgcalls_data(prefix: [u8; 12], inner_len_field: u32, inner: &[u8], pad: usize) -> Vec<u8> {
    let mut p = prefix.to_vec();
    p.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d]);
    p.extend_from_slice(&[0x71, 0x72, 0x73, 0x74]);
    p.extend_from_slice(&inner_len_field.to_be_bytes());
    p.extend_from_slice(inner);
    p.resize(p.len() + pad, 0);
    p
}

/// The tgcalls prefix the tests use.
pub const TGCALLS_PREFIX: [u8; 12] = [
    0x6d, 0x2a, 0x91, 0x3c, 0x05, 0xee, 0x47, 0x18, 0x99, 0x20, 0xab, 0x0f,
];

/// Classic RFC 3489 STUN message: like [`stun`] but with a 16-byte
/// transaction id and no magic cookie.
pub fn stun_classic(msg_type: u16, txid: [u8; 16], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let body = stun_attrs(attrs);
    let mut m = Vec::with_capacity(20 + body.len());
    m.extend_from_slice(&msg_type.to_be_bytes());
    m.extend_from_slice(&to_u16(body.len(), "STUN message length").to_be_bytes());
    m.extend_from_slice(&txid);
    m.extend_from_slice(&body);
    m
}

/// Value of an XOR-MAPPED-ADDRESS / XOR-PEER-ADDRESS / XOR-RELAYED-ADDRESS
/// attribute for an IPv4 address: `0, family 1, port ^ 0x2112,
/// address ^ 0x2112A442`.
pub fn xor_address_v4(addr: [u8; 4], port: u16) -> [u8; 8] {
    let p = (port ^ (STUN_MAGIC_COOKIE >> 16) as u16).to_be_bytes();
    let a = (u32::from_be_bytes(addr) ^ STUN_MAGIC_COOKIE).to_be_bytes();
    [0, 1, p[0], p[1], a[0], a[1], a[2], a[3]]
}

/// Value of an XOR-*-ADDRESS attribute for an IPv6 address: `0, family 2,
/// port ^ 0x2112`, address XOR (magic cookie ‖ transaction id).
pub fn xor_address_v6(addr: [u8; 16], port: u16, txid: [u8; 12]) -> [u8; 20] {
    let p = (port ^ (STUN_MAGIC_COOKIE >> 16) as u16).to_be_bytes();
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(&txid);
    let mut v = [0u8; 20];
    v[1] = 2;
    v[2] = p[0];
    v[3] = p[1];
    for i in 0..16 {
        v[4 + i] = addr[i] ^ key[i];
    }
    v
}

/// Deterministic filler bytes (a simple counter pattern starting at `seed`),
/// for payload bodies whose content does not matter.
pub fn filler(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(37)))
        .collect()
}

/// RTP packet builder (RFC 3550) for headers beyond [`rtp`]'s: marker,
/// CSRCs, header extension (with a length field that may lie), padding.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Rtp {
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    csrcs: Vec<u32>,
    extension: Option<(u16, Vec<u8>)>,
    ext_len_words: Option<u16>,
    payload: Vec<u8>,
    padding: u8,
}

impl Rtp {
    /// Version 2, no marker, no CSRC, no extension, empty payload.
    pub fn new(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Self {
        Self {
            pt: pt & 0x7f,
            seq,
            ts,
            ssrc,
            marker: false,
            csrcs: Vec::new(),
            extension: None,
            ext_len_words: None,
            payload: Vec::new(),
            padding: 0,
        }
    }

    /// Set the marker bit.
    pub fn marker(mut self, marker: bool) -> Self {
        self.marker = marker;
        self
    }

    /// Contributing sources; CC becomes their number.
    ///
    /// # Panics
    /// When there are more than 15.
    pub fn csrcs(mut self, csrcs: &[u32]) -> Self {
        assert!(csrcs.len() <= 15, "at most 15 CSRCs");
        self.csrcs = csrcs.to_vec();
        self
    }

    /// Header extension (sets X): 16-bit profile value, then `data` padded
    /// with zeros to a multiple of 4; the length field counts its words.
    pub fn extension(mut self, profile: u16, data: &[u8]) -> Self {
        let mut d = data.to_vec();
        while !d.len().is_multiple_of(4) {
            d.push(0);
        }
        self.extension = Some((profile, d));
        self
    }

    /// Write this extension length (32-bit words) instead of the real one.
    pub fn extension_len_words(mut self, words: u16) -> Self {
        self.ext_len_words = Some(words);
        self
    }

    /// The payload bytes.
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// RTP padding (sets P): `n` bytes after the payload, the last holding
    /// `n`. 0 means none.
    pub fn padding(mut self, n: u8) -> Self {
        self.padding = n;
        self
    }

    /// The packet bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + self.payload.len());
        let mut b0 = 0x80 | self.csrcs.len() as u8;
        if self.padding > 0 {
            b0 |= 0x20;
        }
        if self.extension.is_some() {
            b0 |= 0x10;
        }
        b.push(b0);
        b.push(self.pt | if self.marker { 0x80 } else { 0 });
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ts.to_be_bytes());
        b.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrcs {
            b.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = &self.extension {
            let words = self
                .ext_len_words
                .unwrap_or_else(|| to_u16(data.len() / 4, "RTP extension length"));
            b.extend_from_slice(&profile.to_be_bytes());
            b.extend_from_slice(&words.to_be_bytes());
            b.extend_from_slice(data);
        }
        b.extend_from_slice(&self.payload);
        if self.padding > 0 {
            b.resize(b.len() + self.padding as usize - 1, 0);
            b.push(self.padding);
        }
        b
    }
}

/// RTP packet: version 2, no marker, CSRC or extension, payload type `pt`,
/// then `payload_len` filler bytes ([`filler`] seeded by `seq`).
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload_len: usize) -> Vec<u8> {
    Rtp::new(pt, seq, ts, ssrc)
        .payload(&filler(payload_len, seq as u8))
        .build()
}

/// RTCP packet (RFC 3550): version 2, report count / subtype `count` (5
/// bits), packet type `pt` (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP,
/// 205 RTPFB, 206 PSFB, 207 XR), sender SSRC, then `body` padded with zeros
/// to a multiple of 4. The length field is the packet's length in 32-bit
/// words minus one.
pub fn rtcp(pt: u8, count: u8, ssrc: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + body.len() + 3);
    b.push(0x80 | (count & 0x1f));
    b.push(pt);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(body);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    let words = to_u16(b.len() / 4 - 1, "RTCP length");
    b[2..4].copy_from_slice(&words.to_be_bytes());
    b
}

/// DTLS content types.
pub mod dtls_content {
    /// change_cipher_spec.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// alert.
    pub const ALERT: u8 = 21;
    /// handshake.
    pub const HANDSHAKE: u8 = 22;
    /// application_data.
    pub const APPLICATION_DATA: u8 = 23;
    /// heartbeat (RFC 6520).
    pub const HEARTBEAT: u8 = 24;
    /// tls12_cid (RFC 9146).
    pub const TLS12_CID: u8 = 25;
}

/// The 13-byte DTLS record header: content type, version, epoch, 48-bit
/// sequence number, fragment length (written as given, so it may lie).
pub fn dtls_record_header(
    content_type: u8,
    version: u16,
    epoch: u16,
    seq: u64,
    length: u16,
) -> [u8; 13] {
    let v = version.to_be_bytes();
    let e = epoch.to_be_bytes();
    let s = seq.to_be_bytes();
    let l = length.to_be_bytes();
    [
        content_type,
        v[0],
        v[1],
        e[0],
        e[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        s[7],
        l[0],
        l[1],
    ]
}

/// DTLS record-layer versions.
pub mod dtls_version {
    /// DTLS 1.0.
    pub const DTLS_1_0: u16 = 0xFEFF;
    /// DTLS 1.2.
    pub const DTLS_1_2: u16 = 0xFEFD;
    /// DTLS 1.3.
    pub const DTLS_1_3: u16 = 0xFEFC;
}

/// A DTLS record: header (epoch 0, sequence number 0, length `len`) then
/// `len` filler bytes.
pub fn dtls_record(content_type: u8, version: u16, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(13 + len);
    b.extend_from_slice(&dtls_record_header(
        content_type,
        version,
        0,
        0,
        to_u16(len, "DTLS record length"),
    ));
    b.extend_from_slice(&filler(len, content_type));
    b
}

/// TURN ChannelData message (RFC 8656): channel number (0x4000..=0x4FFF),
/// data length, data; no padding (optional over UDP).
pub fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + data.len());
    b.extend_from_slice(&channel.to_be_bytes());
    b.extend_from_slice(&to_u16(data.len(), "ChannelData length").to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// [`channel_data`] padded with zeros to a multiple of 4 (mandatory over
/// TCP, allowed over UDP); the length field still holds `data.len()`.
pub fn channel_data_padded(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut b = channel_data(channel, data);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    b
}

/// QUIC short-header (1-RTT) packet look-alike (RFC 9000 §17.3): first byte
/// `0x40 | (flags & 0x3F)` (header form 0, fixed bit 1; `flags` holds the
/// spin bit 0x20, reserved bits 0x18, key phase 0x04 and packet-number
/// length − 1 in 0x03, all of which header protection randomises on the
/// wire), the destination connection id, the packet number bytes, then the
/// protected payload. Nothing is encrypted: it only has the shape.
pub fn quic_short_header(flags: u8, dcid: &[u8], packet_number: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + dcid.len() + packet_number.len() + payload.len());
    b.push(0x40 | (flags & 0x3f));
    b.extend_from_slice(dcid);
    b.extend_from_slice(packet_number);
    b.extend_from_slice(payload);
    b
}
