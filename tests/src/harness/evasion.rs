//! The generators' evasion modes (`ffgen run --evasion MODE`): what a call
//! does to slip past a filter that judges a flow by its first bytes or its
//! first packets, and the raw IP packets that carry it.
//!
//! The fragment modes cut each client→server UDP datagram of a call into two
//! IP fragments (the UDP checksum covers the whole datagram, so the server
//! reassembles it and answers as usual; replies come back to the ordinary
//! UDP socket bound to the same local port). Offsets below count bytes of
//! the IP payload (the UDP header is bytes 0..8):
//!
//! | mode | sent first | sent second |
//! |---|---|---|
//! | `frag8` | 0..8: the UDP header alone (MF) | 8..: the whole payload |
//! | `tiny` | 0..16: the UDP header and 8 payload bytes (MF) | 16..: the rest |
//! | `reorder` | 8..: the whole payload | 0..8: the UDP header (MF) |
//! | `overlap` | 0..24: the UDP header and 16 zero bytes (MF) | 8..: the real payload from its start |
//!
//! `tiny` falls back to `frag8` for payloads of at most 8 bytes, `overlap`
//! uses 8 zero bytes for payloads of 8 to 15 bytes and `frag8` below that
//! (a fragment may not run past its datagram's end). IPv4 fragments have
//! the offset in the header (in 8-byte units: 1 for 8, 2 for 16); IPv6
//! fragments carry a Fragment extension header (RFC 8200 §4.5) after the
//! fixed header, with the 32-bit identification.
//!
//! Linux discards a datagram whose fragments overlap (IPv4 since 4.19,
//! IPv6 per RFC 5722), so `overlap` datagrams never reach the server, with
//! or without a filter.
//!
//! `decoys` sends, before each call flow's first datagram and then before
//! every [`DECOY_EVERY`]th, with the flow's 5-tuple: three junk datagrams
//! (random bytes after the run's [`wire::decoy_marker`], from the ordinary
//! socket), one with a wrong UDP checksum and one with TTL / hop limit 1
//! (both raw). The receiver's kernel discards the checksum decoy and the
//! gateway the TTL one (after XDP has seen it); the responders recognise the
//! junk by its marker and count it apart (`decoys`), without answering, so
//! the call's own counts keep their meaning.
//!
//! `tcp` moves the WhatsApp and Telegram calls to TCP (see `traffic`).
//!
//! [`wire::decoy_marker`]: crate::harness::wire::decoy_marker

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A call flow sends its decoys before this many of its datagrams each time.
pub const DECOY_EVERY: u64 = 10;

/// What a call does to evade the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Evasion {
    /// Plain datagrams.
    #[default]
    None,
    /// Two fragments, split after the UDP header.
    Frag8,
    /// Two fragments, split after 8 payload bytes.
    Tiny,
    /// Like `frag8`, the second fragment sent first.
    Reorder,
    /// A benign first fragment (zeros) overlapped by the real payload.
    Overlap,
    /// Junk, bad-checksum and TTL-1 datagrams with the call's 5-tuple.
    Decoys,
    /// The calls fall back to TCP.
    Tcp,
}

impl Evasion {
    /// Every mode, `None` first.
    pub const ALL: [Evasion; 7] = [
        Evasion::None,
        Evasion::Frag8,
        Evasion::Tiny,
        Evasion::Reorder,
        Evasion::Overlap,
        Evasion::Decoys,
        Evasion::Tcp,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Evasion::None => "none",
            Evasion::Frag8 => "frag8",
            Evasion::Tiny => "tiny",
            Evasion::Reorder => "reorder",
            Evasion::Overlap => "overlap",
            Evasion::Decoys => "decoys",
            Evasion::Tcp => "tcp",
        }
    }

    /// A mode that fragments the call's datagrams.
    pub fn fragments(self) -> bool {
        matches!(
            self,
            Evasion::Frag8 | Evasion::Tiny | Evasion::Reorder | Evasion::Overlap
        )
    }

    /// Whether the mode changes scenario `name`. The UDP modes apply to the
    /// call scenarios (the messengers' and the generic WebRTC call), `tcp`
    /// to `whatsapp`, `telegram` and `tgcalls`; non-call scenarios are sent
    /// as always under every mode.
    pub fn applies_to(self, name: &str) -> bool {
        const UDP_CALLS: [&str; 7] = [
            "whatsapp",
            "whatsapp-inherit",
            "whatsapp-callee",
            "wa-p2p-peer",
            "telegram",
            "tgcalls",
            "webrtc",
        ];
        match self {
            Evasion::None => false,
            Evasion::Tcp => matches!(name, "whatsapp" | "telegram" | "tgcalls"),
            _ => UDP_CALLS.contains(&name),
        }
    }

    /// Whether scenario `name` may run under this mode: it applies, or the
    /// scenario is not a call (and runs as always). `tcp` has no form of
    /// the calls it does not apply to.
    pub fn allowed_for(self, name: &str) -> bool {
        self == Evasion::None || self.applies_to(name) || !Evasion::Decoys.applies_to(name)
    }
}

impl std::fmt::Display for Evasion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Evasion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Evasion::ALL
            .iter()
            .copied()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown evasion mode `{s}` (known: {})",
                    Evasion::ALL.map(Evasion::name).join(", ")
                )
            })
    }
}

// ---------------------------------------------------------------------------
// Building the packets
// ---------------------------------------------------------------------------

/// Ones' complement sum of `b` (odd length padded with a zero byte) added to
/// `sum`, not yet folded.
fn sum16(mut sum: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The UDP checksum of `udp` (header with a zero checksum field, then the
/// payload) from `src` to `dst` (RFC 768, RFC 8200 §8.1): never 0.
pub fn udp_checksum(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    let mut sum = sum16(0, &ip_bytes(src));
    sum = sum16(sum, &ip_bytes(dst));
    sum += 17;
    sum += udp.len() as u32;
    sum = sum16(sum, udp);
    match !fold(sum) {
        0 => 0xFFFF,
        c => c,
    }
}

/// Whether `udp` (with its checksum field) checks out from `src` to `dst`.
pub fn udp_checksum_ok(src: IpAddr, dst: IpAddr, udp: &[u8]) -> bool {
    let mut sum = sum16(0, &ip_bytes(src));
    sum = sum16(sum, &ip_bytes(dst));
    sum += 17;
    sum += udp.len() as u32;
    fold(sum16(sum, udp)) == 0xFFFF
}

/// The UDP datagram (8-byte header, then `payload`) from `src` to `dst`
/// with its checksum; `bad_checksum` makes the checksum wrong (and not 0).
pub fn udp_datagram(
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    bad_checksum: bool,
) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&src.port().to_be_bytes());
    d.extend_from_slice(&dst.port().to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let mut c = udp_checksum(src.ip(), dst.ip(), &d);
    if bad_checksum {
        c = match c ^ 0x5A5A {
            0 | 0xFFFF => 0x1234,
            x => x,
        };
    }
    d[6..8].copy_from_slice(&c.to_be_bytes());
    d
}

/// One IP fragment (or a whole datagram) of a UDP datagram: its bytes at
/// `offset` of the IP payload, and whether more follow (MF).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Byte offset in the IP payload (a multiple of 8).
    pub offset: usize,
    /// The bytes.
    pub data: Vec<u8>,
    /// More fragments follow (the MF flag).
    pub more: bool,
}

/// The pieces `mode` cuts `udp` (a whole UDP datagram, header included)
/// into, in sending order. A mode that does not fragment gives one piece.
pub fn pieces(mode: Evasion, udp: &[u8]) -> Vec<Piece> {
    let payload = udp.len().saturating_sub(8);
    let split = |at: usize| {
        vec![
            Piece {
                offset: 0,
                data: udp[..at].to_vec(),
                more: true,
            },
            Piece {
                offset: at,
                data: udp[at..].to_vec(),
                more: false,
            },
        ]
    };
    match mode {
        _ if payload == 0 => vec![Piece {
            offset: 0,
            data: udp.to_vec(),
            more: false,
        }],
        Evasion::Tiny if payload > 8 => split(16),
        Evasion::Frag8 | Evasion::Tiny => split(8),
        Evasion::Reorder => {
            let mut v = split(8);
            v.reverse();
            v
        }
        Evasion::Overlap => {
            let zeros = match payload {
                16.. => 16,
                8.. => 8,
                _ => return split(8),
            };
            let mut first = udp[..8].to_vec();
            first.resize(8 + zeros, 0);
            vec![
                Piece {
                    offset: 0,
                    data: first,
                    more: true,
                },
                Piece {
                    offset: 8,
                    data: udp[8..].to_vec(),
                    more: false,
                },
            ]
        }
        Evasion::None | Evasion::Decoys | Evasion::Tcp => vec![Piece {
            offset: 0,
            data: udp.to_vec(),
            more: false,
        }],
    }
}

/// IPv4 header checksum of `h` (checksum field zero).
fn ipv4_checksum(h: &[u8]) -> u16 {
    !fold(sum16(0, h))
}

/// The IP packet carrying `piece` of a UDP datagram from `src` to `dst`:
/// IPv4 (identification `id` truncated to 16 bits) or IPv6 (with a Fragment
/// header when the piece is a fragment), TTL / hop limit `ttl`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, ttl: u8, id: u32, piece: &Piece) -> Vec<u8> {
    let fragment = piece.more || piece.offset > 0;
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
        let total = 20 + piece.data.len();
        let frag = (if piece.more { 0x2000u16 } else { 0 }) | (piece.offset / 8) as u16;
        let mut p = Vec::with_capacity(total);
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&(id as u16).to_be_bytes());
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[ttl, 17, 0, 0]);
        p.extend_from_slice(&s.octets());
        p.extend_from_slice(&d.octets());
        let c = ipv4_checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&piece.data);
        return p;
    }
    let ext = if fragment { 8 } else { 0 };
    let mut p = Vec::with_capacity(40 + ext + piece.data.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&((ext + piece.data.len()) as u16).to_be_bytes());
    p.push(if fragment { 44 } else { 17 });
    p.push(ttl);
    p.extend_from_slice(&ip_bytes(to_v6(src)));
    p.extend_from_slice(&ip_bytes(to_v6(dst)));
    if fragment {
        let off = ((piece.offset / 8) as u16) << 3 | u16::from(piece.more);
        p.extend_from_slice(&[17, 0]);
        p.extend_from_slice(&off.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
    }
    p.extend_from_slice(&piece.data);
    p
}

fn to_v6(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
        v6 @ IpAddr::V6(_) => v6,
    }
}

/// The IP packets, in sending order, that carry `payload` from `src` to
/// `dst` under `mode` (identification `id`, TTL 64).
pub fn fragments(
    mode: Evasion,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    id: u32,
) -> Vec<Vec<u8>> {
    let udp = udp_datagram(src, dst, payload, false);
    pieces(mode, &udp)
        .iter()
        .map(|p| ip_packet(src.ip(), dst.ip(), 64, id, p))
        .collect()
}

/// One unfragmented UDP datagram as an IP packet, with TTL `ttl` and a
/// wrong checksum if `bad_checksum`.
pub fn whole(
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    ttl: u8,
    bad_checksum: bool,
    id: u32,
) -> Vec<u8> {
    let udp = udp_datagram(src, dst, payload, bad_checksum);
    let piece = Piece {
        offset: 0,
        data: udp,
        more: false,
    };
    ip_packet(src.ip(), dst.ip(), ttl, id, &piece)
}

// ---------------------------------------------------------------------------
// Sending them
// ---------------------------------------------------------------------------

/// A raw socket that sends whole IP packets we built (`IPPROTO_RAW`: the
/// header is ours; IPv4 fills in nothing we set, IPv6 sends it as is).
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
    v6: bool,
}

impl RawSocket {
    /// An `AF_INET` or `AF_INET6` `IPPROTO_RAW` socket (needs
    /// `CAP_NET_RAW`).
    pub fn open(v6: bool) -> io::Result<RawSocket> {
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("raw socket: {e}")));
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RawSocket { fd, v6 })
    }

    /// Send the IP packet `pkt` (whose destination is `dst`).
    pub fn send(&self, pkt: &[u8], dst: IpAddr) -> io::Result<()> {
        let n = match (dst, self.v6) {
            (IpAddr::V4(a), false) => {
                // SAFETY: all-zero is a valid sockaddr_in.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                self.send_to(pkt, &sa)
            }
            (IpAddr::V6(a), true) => {
                // SAFETY: all-zero is a valid sockaddr_in6.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = a.octets();
                self.send_to(pkt, &sa)
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("raw socket of the other family for {dst}"),
                ));
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("raw send to {dst}: {e}")));
        }
        Ok(())
    }

    /// `sendto(2)` of `pkt` to `sa` (a `sockaddr_in` or `sockaddr_in6`).
    fn send_to<T>(&self, pkt: &[u8], sa: &T) -> isize {
        // SAFETY: a valid buffer and address of the given lengths.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                std::ptr::from_ref(sa).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C4: &str = "192.0.2.2:40000";
    const S4: &str = "198.51.100.10:3478";
    const C6: &str = "[2001:db8:c1::2]:40000";
    const S6: &str = "[2001:db8:5a::10]:3478";

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 1) as u8).collect()
    }

    /// Reassemble pieces in arrival order (later bytes win, as a naive
    /// receiver would), checking each lies inside the datagram.
    fn reassemble(ps: &[Piece]) -> Vec<u8> {
        let end = ps.iter().map(|p| p.offset + p.data.len()).max().unwrap();
        let mut out = vec![0u8; end];
        for p in ps {
            out[p.offset..p.offset + p.data.len()].copy_from_slice(&p.data);
        }
        out
    }

    #[test]
    fn checksums_check_out() {
        for (c, s) in [(C4, S4), (C6, S6)] {
            let (c, s): (SocketAddr, SocketAddr) = (c.parse().unwrap(), s.parse().unwrap());
            for n in [0, 1, 7, 44, 61] {
                let d = udp_datagram(c, s, &payload(n), false);
                assert_eq!(d.len(), 8 + n);
                assert_eq!(u16::from_be_bytes([d[4], d[5]]) as usize, 8 + n);
                assert!(udp_checksum_ok(c.ip(), s.ip(), &d), "{c} {n}");
                let bad = udp_datagram(c, s, &payload(n), true);
                assert!(!udp_checksum_ok(c.ip(), s.ip(), &bad));
                assert_ne!(&bad[6..8], &[0, 0]);
            }
        }
        // RFC 1071's example words.
        assert_eq!(
            fold(sum16(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
    }

    #[test]
    fn fragment_layouts() {
        let udp = udp_datagram(
            C4.parse().unwrap(),
            S4.parse().unwrap(),
            &payload(60),
            false,
        );
        let layout = |m| {
            pieces(m, &udp)
                .iter()
                .map(|p| (p.offset, p.data.len(), p.more))
                .collect::<Vec<_>>()
        };
        assert_eq!(layout(Evasion::Frag8), [(0, 8, true), (8, 60, false)]);
        assert_eq!(layout(Evasion::Tiny), [(0, 16, true), (16, 52, false)]);
        assert_eq!(layout(Evasion::Reorder), [(8, 60, false), (0, 8, true)]);
        assert_eq!(layout(Evasion::Overlap), [(0, 24, true), (8, 60, false)]);
        assert_eq!(layout(Evasion::None), [(0, 68, false)]);
        assert_eq!(layout(Evasion::Decoys), [(0, 68, false)]);
        for m in [Evasion::Frag8, Evasion::Tiny, Evasion::Reorder] {
            assert_eq!(reassemble(&pieces(m, &udp)), udp, "{m}");
        }
        // Overlap: the first fragment's payload is zeros; the second is the
        // real payload from its start, so a receiver keeping the later
        // bytes gets the real datagram.
        let o = pieces(Evasion::Overlap, &udp);
        assert_eq!(&o[0].data[..8], &udp[..8]);
        assert_eq!(&o[0].data[8..], &[0u8; 16]);
        assert_eq!(o[1].data, udp[8..]);
        assert_eq!(reassemble(&o), udp);
        // Short payloads.
        let short = udp_datagram(C4.parse().unwrap(), S4.parse().unwrap(), b"health", false);
        let lens = |m| {
            pieces(m, &short)
                .iter()
                .map(|p| (p.offset, p.data.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(lens(Evasion::Tiny), [(0, 8), (8, 6)]);
        assert_eq!(lens(Evasion::Overlap), [(0, 8), (8, 6)]);
        let twelve = udp_datagram(
            C4.parse().unwrap(),
            S4.parse().unwrap(),
            &payload(12),
            false,
        );
        assert_eq!(pieces(Evasion::Overlap, &twelve)[0].data.len(), 16);
        // Every non-last fragment is a multiple of 8 bytes.
        for m in Evasion::ALL {
            for n in 1..80 {
                let d = udp_datagram(C4.parse().unwrap(), S4.parse().unwrap(), &payload(n), false);
                for p in pieces(m, &d) {
                    assert_eq!(p.offset % 8, 0);
                    assert!(!p.more || p.data.len() % 8 == 0, "{m} {n}");
                    assert!(p.offset + p.data.len() <= d.len(), "{m} {n}");
                }
            }
        }
    }

    #[test]
    fn ipv4_fragments() {
        let (cl, sv): (SocketAddr, SocketAddr) = (C4.parse().unwrap(), S4.parse().unwrap());
        let pl = payload(44);
        let f = fragments(Evasion::Frag8, cl, sv, &pl, 0x1_2345);
        assert_eq!(f.len(), 2);
        let (a, b) = (&f[0], &f[1]);
        assert_eq!(a.len(), 28);
        assert_eq!(&a[..4], &[0x45, 0, 0, 28]);
        assert_eq!(&a[4..6], &[0x23, 0x45], "identification");
        assert_eq!(&a[6..8], &[0x20, 0x00], "MF, offset 0");
        assert_eq!((a[8], a[9]), (64, 17));
        assert_eq!(fold(sum16(0, &a[..20])), 0xFFFF, "header checksum");
        assert_eq!(&a[12..16], &[192, 0, 2, 2]);
        assert_eq!(&a[16..20], &[198, 51, 100, 10]);
        assert_eq!(&a[20..22], &40000u16.to_be_bytes());
        assert_eq!(
            &a[24..26],
            &52u16.to_be_bytes(),
            "UDP length of the whole datagram"
        );
        assert_eq!(b.len(), 20 + 44);
        assert_eq!(&b[4..6], &[0x23, 0x45]);
        assert_eq!(&b[6..8], &[0x00, 0x01], "offset 8 bytes, last");
        assert_eq!(&b[20..], &pl[..]);
        let mut udp = a[20..].to_vec();
        udp.extend_from_slice(&b[20..]);
        assert!(udp_checksum_ok(cl.ip(), sv.ip(), &udp));
        let tiny = fragments(Evasion::Tiny, cl, sv, &pl, 7);
        assert_eq!(&tiny[0][6..8], &[0x20, 0x00]);
        assert_eq!(tiny[0].len(), 20 + 16);
        assert_eq!(&tiny[1][6..8], &[0x00, 0x02], "offset 16 bytes");
        let one = whole(cl, sv, &pl, 1, true, 9);
        assert_eq!((one[8], &one[6..8]), (1, &[0u8, 0][..]));
        assert!(!udp_checksum_ok(cl.ip(), sv.ip(), &one[20..]));
    }

    #[test]
    fn ipv6_fragments() {
        let (cl, sv): (SocketAddr, SocketAddr) = (C6.parse().unwrap(), S6.parse().unwrap());
        let pl = payload(44);
        let f = fragments(Evasion::Frag8, cl, sv, &pl, 0xDEAD_BEEF);
        let (a, b) = (&f[0], &f[1]);
        assert_eq!(a.len(), 40 + 8 + 8);
        assert_eq!(a[0] >> 4, 6);
        assert_eq!(
            &a[4..6],
            &16u16.to_be_bytes(),
            "payload length: fragment header + 8"
        );
        assert_eq!((a[6], a[7]), (44, 64), "next header Fragment, hop limit");
        assert_eq!(&a[40..44], &[17, 0, 0x00, 0x01], "UDP, offset 0, M");
        assert_eq!(&a[44..48], &[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(&b[40..44], &[17, 0, 0x00, 0x08], "offset 1 unit, last");
        assert_eq!(&b[44..48], &[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(&b[48..], &pl[..]);
        let mut udp = a[48..].to_vec();
        udp.extend_from_slice(&b[48..]);
        assert!(udp_checksum_ok(cl.ip(), sv.ip(), &udp));
        let tiny = fragments(Evasion::Tiny, cl, sv, &pl, 1);
        assert_eq!(&tiny[1][40..44], &[17, 0, 0x00, 0x10], "offset 2 units");
        let one = whole(cl, sv, &pl, 1, false, 0);
        assert_eq!((one.len(), one[6], one[7]), (40 + 8 + 44, 17, 1));
        assert!(udp_checksum_ok(cl.ip(), sv.ip(), &one[40..]));
    }

    #[test]
    fn modes_by_name_and_scenario() {
        for m in Evasion::ALL {
            assert_eq!(m.name().parse::<Evasion>(), Ok(m));
        }
        assert!("frag".parse::<Evasion>().is_err());
        assert!(Evasion::Frag8.applies_to("whatsapp-callee"));
        assert!(!Evasion::Frag8.applies_to("dns"));
        assert!(Evasion::Frag8.allowed_for("dns"));
        assert!(Evasion::Tcp.applies_to("tgcalls"));
        assert!(!Evasion::Tcp.allowed_for("whatsapp-inherit"));
        assert!(Evasion::Tcp.allowed_for("messaging"));
    }
}
