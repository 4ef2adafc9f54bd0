//! Packet-capture reader for `flowfilter replay`.
//!
//! Reads classic pcap (both byte orders, microsecond and nanosecond
//! timestamps) and pcapng (any number of sections, both byte orders,
//! Enhanced, Simple and obsolete Packet Blocks) and normalises every frame
//! so that it starts with an Ethernet header, whatever the link type of the
//! capture was.
//!
//! # Link types
//!
//! | link type | name                  | what happens                                   |
//! |-----------|-----------------------|------------------------------------------------|
//! | 1         | Ethernet              | frame kept as is                               |
//! | 113       | Linux cooked (SLL)    | 16-byte header replaced, protocol at 14..16    |
//! | 276       | Linux cooked v2 (SLL2)| 20-byte header replaced, protocol at 0..2      |
//! | 101, 12   | raw IP                | IP version nibble picks IPv4 or IPv6           |
//! | 228 / 229 | raw IPv4 / raw IPv6   | Ethernet header prepended                      |
//! | 0         | BSD loopback (NULL)   | 4-byte address family replaced                 |
//!
//! A synthesised Ethernet header has destination `02:00:00:00:00:02`,
//! source `02:00:00:00:00:01` and the EtherType derived from the link-layer
//! header. A cooked (SLL/SLL2) frame keeps its protocol field as EtherType
//! even when it is not a known EtherType.
//!
//! Any other link type is reported as [`CaptureError::UnsupportedLinkType`]
//! **at the first packet captured on it**: a pcap file of an unsupported link
//! type with no records, or a pcapng interface of an unsupported link type
//! on which nothing was captured, is accepted.
//!
//! # Robustness
//!
//! The parser never panics and never trusts a length field for allocation:
//! every length is checked against the bytes actually present before it is
//! used, so memory use is bounded by the size of the input.

use std::fmt;
use std::path::Path;

/// Destination MAC address of a synthesised Ethernet header.
pub const SYNTH_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Source MAC address of a synthesised Ethernet header.
pub const SYNTH_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Length of an Ethernet header (without VLAN tags).
const ETH_HLEN: usize = 14;
/// EtherType of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86DD;

/// Classic pcap magic, microsecond timestamps.
const PCAP_MAGIC_USEC: u32 = 0xa1b2_c3d4;
/// Classic pcap magic, nanosecond timestamps.
const PCAP_MAGIC_NSEC: u32 = 0xa1b2_3c4d;
/// Length of the classic pcap file header.
const PCAP_FILE_HEADER_LEN: usize = 24;
/// Length of a classic pcap record header.
const PCAP_RECORD_HEADER_LEN: usize = 16;

/// Block type of the pcapng Section Header Block (byte-order independent).
const PCAPNG_SHB_TYPE: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];
/// pcapng byte-order magic.
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// pcapng Interface Description Block.
const BLOCK_IDB: u32 = 1;
/// pcapng obsolete Packet Block.
const BLOCK_PB: u32 = 2;
/// pcapng Simple Packet Block.
const BLOCK_SPB: u32 = 3;
/// pcapng Enhanced Packet Block.
const BLOCK_EPB: u32 = 6;
/// Smallest possible pcapng block: type, length, trailing length.
const BLOCK_MIN_LEN: usize = 12;
/// IDB option `if_tsresol`.
const OPT_IF_TSRESOL: u16 = 9;
/// IDB option `if_tsoffset`.
const OPT_IF_TSOFFSET: u16 = 14;
/// Option list terminator.
const OPT_ENDOFOPT: u16 = 0;

/// Link type: Ethernet.
const LINKTYPE_ETHERNET: u32 = 1;
/// Link type: BSD loopback / NULL.
const LINKTYPE_NULL: u32 = 0;
/// Link type: raw IP (OpenBSD/early libpcap number).
const LINKTYPE_RAW_OLD: u32 = 12;
/// Link type: raw IP.
const LINKTYPE_RAW: u32 = 101;
/// Link type: Linux cooked capture v1.
const LINKTYPE_LINUX_SLL: u32 = 113;
/// Link type: raw IPv4.
const LINKTYPE_IPV4: u32 = 228;
/// Link type: raw IPv6.
const LINKTYPE_IPV6: u32 = 229;
/// Link type: Linux cooked capture v2.
const LINKTYPE_LINUX_SLL2: u32 = 276;

/// One captured frame, normalised to start with an Ethernet header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Capture time in nanoseconds since the Unix epoch (as recorded in the
    /// file; a pcapng Simple Packet Block carries no timestamp and gets the
    /// timestamp of the frame before it, or 0 if it is the first).
    pub ts_ns: u64,
    /// The frame, starting with an Ethernet header (possibly truncated to
    /// the capture's snap length).
    pub data: Vec<u8>,
    /// Length of the frame on the wire, adjusted by the same amount as the
    /// link-layer header was when it was replaced by an Ethernet header, so
    /// that `data.len() < orig_len` means the frame was truncated.
    pub orig_len: u32,
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file starts with neither a pcap nor a pcapng magic number.
    #[error("{path}: not a pcap or pcapng file (magic {magic:08x})")]
    UnknownFormat {
        /// The file.
        path: String,
        /// The first four bytes of the file read big-endian, i.e. as they
        /// appear in a hex dump.
        magic: u32,
    },
    /// The file is structurally broken (truncated, inconsistent lengths,
    /// reference to a missing interface, link-layer header too short ...).
    #[error("{path}: at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: String,
        /// Byte offset of the record, block, option or packet data at fault.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A packet was captured on a link type this reader cannot normalise.
    #[error(
        "{path}: link type {linktype} is not supported (Ethernet, Linux cooked SLL/SLL2, raw IP, BSD loopback are)"
    )]
    UnsupportedLinkType {
        /// The file.
        path: String,
        /// The link type (for classic pcap, the whole link-type field of
        /// the file header if its reserved bits are set).
        linktype: u32,
    },
}

/// Reads a pcap or pcapng file and returns its frames, normalised to
/// Ethernet, in file order.
pub fn read_capture(path: &Path) -> Result<Vec<Frame>, CaptureError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Io {
        path: name.clone(),
        source,
    })?;
    parse_capture(&name, &bytes)
}

/// Parses the contents of a pcap or pcapng file (the format is recognised
/// from the magic number) and returns its frames, normalised to Ethernet,
/// in file order. `path_for_errors` is only used in error values.
pub fn parse_capture(path_for_errors: &str, bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
    let ctx = Ctx {
        path: path_for_errors,
    };
    let Some(&head) = bytes.first_chunk::<4>() else {
        let what = if bytes.is_empty() {
            "empty file, no capture header".to_owned()
        } else {
            format!(
                "file of {} bytes is too short for a capture header",
                bytes.len()
            )
        };
        return Err(ctx.corrupt(0, what));
    };
    if head == PCAPNG_SHB_TYPE {
        return parse_pcapng(ctx, bytes);
    }
    let le = u32::from_le_bytes(head);
    let be = u32::from_be_bytes(head);
    match (le, be) {
        (PCAP_MAGIC_USEC, _) => parse_pcap(ctx, bytes, Endian::Little, 1_000),
        (PCAP_MAGIC_NSEC, _) => parse_pcap(ctx, bytes, Endian::Little, 1),
        (_, PCAP_MAGIC_USEC) => parse_pcap(ctx, bytes, Endian::Big, 1_000),
        (_, PCAP_MAGIC_NSEC) => parse_pcap(ctx, bytes, Endian::Big, 1),
        _ => Err(CaptureError::UnknownFormat {
            path: path_for_errors.to_owned(),
            magic: be,
        }),
    }
}

/// Error-building context.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    /// File name for error messages.
    path: &'a str,
}

impl Ctx<'_> {
    /// A [`CaptureError::Corrupt`] at `offset`.
    fn corrupt(self, offset: usize, what: impl fmt::Display) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.to_owned(),
            offset: offset as u64,
            what: what.to_string(),
        }
    }

    /// Turns a link-layer normalisation failure of the packet data starting
    /// at `data_offset` into a [`CaptureError`].
    fn link(self, data_offset: usize, err: LinkError) -> CaptureError {
        match err {
            LinkError::Unsupported(linktype) => CaptureError::UnsupportedLinkType {
                path: self.path.to_owned(),
                linktype,
            },
            LinkError::Bad(what) => self.corrupt(data_offset, what),
        }
    }
}

/// Byte order of a file or pcapng section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    /// Little endian.
    Little,
    /// Big endian.
    Big,
}

impl Endian {
    /// Reads a `u16` at `off`, if the bytes are there.
    fn u16(self, bytes: &[u8], off: usize) -> Option<u16> {
        let b = *bytes.get(off..)?.first_chunk::<2>()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    }

    /// Reads a `u32` at `off`, if the bytes are there.
    fn u32(self, bytes: &[u8], off: usize) -> Option<u32> {
        let b = *bytes.get(off..)?.first_chunk::<4>()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }

    /// Reads a `u64` at `off`, if the bytes are there.
    fn u64(self, bytes: &[u8], off: usize) -> Option<u64> {
        let b = *bytes.get(off..)?.first_chunk::<8>()?;
        Some(match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        })
    }
}

// ---------------------------------------------------------------------------
// Classic pcap
// ---------------------------------------------------------------------------

/// Parses a classic pcap file; `frac_ns` is the number of nanoseconds per
/// unit of the sub-second timestamp field (1000 for microseconds, 1 for
/// nanoseconds).
fn parse_pcap(
    ctx: Ctx<'_>,
    bytes: &[u8],
    endian: Endian,
    frac_ns: u64,
) -> Result<Vec<Frame>, CaptureError> {
    let Some(network) = endian.u32(bytes, 20) else {
        return Err(ctx.corrupt(
            0,
            format!(
                "truncated pcap file header ({} of {PCAP_FILE_HEADER_LEN} bytes)",
                bytes.len()
            ),
        ));
    };
    // Low 16 bits: link type; bits 16..26 reserved (must be zero); the top
    // bits describe an FCS, which is left in place.
    let linktype = if network & 0x03FF_0000 == 0 {
        network & 0xFFFF
    } else {
        network
    };

    let mut frames = Vec::new();
    let mut off = PCAP_FILE_HEADER_LEN;
    while off < bytes.len() {
        let left = bytes.len() - off;
        let (Some(sec), Some(frac), Some(incl_len), Some(orig_len)) = (
            endian.u32(bytes, off),
            endian.u32(bytes, off.saturating_add(4)),
            endian.u32(bytes, off.saturating_add(8)),
            endian.u32(bytes, off.saturating_add(12)),
        ) else {
            return Err(ctx.corrupt(
                off,
                format!("truncated record header ({left} of {PCAP_RECORD_HEADER_LEN} bytes left)"),
            ));
        };
        let data_off = off + PCAP_RECORD_HEADER_LEN;
        let data = usize::try_from(incl_len)
            .ok()
            .and_then(|n| data_off.checked_add(n))
            .and_then(|end| bytes.get(data_off..end));
        let Some(data) = data else {
            return Err(ctx.corrupt(
                off,
                format!(
                    "record of {incl_len} bytes runs past the end of the file ({} bytes left after the record header)",
                    left - PCAP_RECORD_HEADER_LEN
                ),
            ));
        };
        let ts_ns = u64::from(sec)
            .checked_mul(1_000_000_000)
            .and_then(|s| u64::from(frac).checked_mul(frac_ns)?.checked_add(s))
            .ok_or_else(|| ctx.corrupt(off, "timestamp out of range"))?;
        let (data, orig_len) =
            to_ethernet(linktype, data, orig_len).map_err(|e| ctx.link(data_off, e))?;
        frames.push(Frame {
            ts_ns,
            data,
            orig_len,
        });
        off = data_off + data_len_of(incl_len);
    }
    Ok(frames)
}

/// A length field as `usize` (saturating where `usize` is narrower than
/// 32 bits, so the bounds checks that follow fail cleanly).
fn data_len_of(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------
// pcapng
// ---------------------------------------------------------------------------

/// Timestamp resolution of a pcapng interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TsResol {
    /// Units of 10^-n seconds.
    Pow10(u8),
    /// Units of 2^-n seconds.
    Pow2(u8),
}

impl TsResol {
    /// Decodes the `if_tsresol` option byte.
    fn from_option(b: u8) -> Self {
        if b & 0x80 == 0 {
            TsResol::Pow10(b)
        } else {
            TsResol::Pow2(b & 0x7F)
        }
    }

    /// Converts a raw timestamp in these units to nanoseconds, `None` on
    /// overflow of `u64`.
    fn to_ns(self, raw: u64) -> Option<u64> {
        let ns: u128 = match self {
            TsResol::Pow10(n) if n <= 9 => {
                return raw.checked_mul(10u64.checked_pow(u32::from(9 - n))?);
            }
            TsResol::Pow10(n) => match 10u128.checked_pow(u32::from(n - 9)) {
                Some(div) => u128::from(raw) / div,
                None => 0,
            },
            TsResol::Pow2(n) => {
                u128::from(raw).checked_mul(1_000_000_000)? >> u32::from(n).min(127)
            }
        };
        u64::try_from(ns).ok()
    }
}

/// An interface described by an Interface Description Block.
#[derive(Clone, Copy, Debug)]
struct Interface {
    /// Link type.
    linktype: u32,
    /// Snap length (0: unlimited).
    snaplen: u32,
    /// Timestamp resolution (`if_tsresol`, default microseconds).
    tsresol: TsResol,
    /// Seconds to add to every timestamp (`if_tsoffset`).
    tsoffset_s: i64,
}

impl Interface {
    /// Converts a raw timestamp of this interface to nanoseconds since the
    /// epoch, `None` if it is out of range.
    fn ts_ns(&self, raw: u64) -> Option<u64> {
        let ns = self.tsresol.to_ns(raw)?;
        if self.tsoffset_s == 0 {
            return Some(ns);
        }
        let total = i128::from(self.tsoffset_s)
            .checked_mul(1_000_000_000)?
            .checked_add(i128::from(ns))?;
        u64::try_from(total).ok()
    }
}

/// Parser state of a pcapng file.
struct Pcapng<'a> {
    /// Error context.
    ctx: Ctx<'a>,
    /// Byte order of the current section.
    endian: Endian,
    /// Interfaces of the current section.
    interfaces: Vec<Interface>,
    /// Frames read so far.
    frames: Vec<Frame>,
}

/// A packet extracted from a packet block, before normalisation.
struct RawPacket<'b> {
    /// Index of the interface it was captured on.
    interface: usize,
    /// Raw timestamp in the interface's units, `None` for a Simple Packet
    /// Block.
    ts: Option<u64>,
    /// Captured bytes.
    data: &'b [u8],
    /// Offset of `data` in the file.
    data_off: usize,
    /// Original length.
    orig_len: u32,
}

/// Parses a pcapng file (whose first four bytes are the SHB block type).
fn parse_pcapng(ctx: Ctx<'_>, bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
    let mut p = Pcapng {
        ctx,
        endian: Endian::Little,
        interfaces: Vec::new(),
        frames: Vec::new(),
    };
    let mut off = 0usize;
    while off < bytes.len() {
        let left = bytes.len() - off;
        if left < BLOCK_MIN_LEN {
            return Err(ctx.corrupt(
                off,
                format!("truncated block header ({left} bytes left, a block needs at least {BLOCK_MIN_LEN})"),
            ));
        }
        let is_shb = bytes.get(off..).and_then(<[u8]>::first_chunk::<4>) == Some(&PCAPNG_SHB_TYPE);
        if is_shb {
            // The byte order of a section is given by its SHB, right after
            // the block length.
            let bom_off = off + 8;
            p.endian = if Endian::Little.u32(bytes, bom_off) == Some(PCAPNG_BYTE_ORDER_MAGIC) {
                Endian::Little
            } else if Endian::Big.u32(bytes, bom_off) == Some(PCAPNG_BYTE_ORDER_MAGIC) {
                Endian::Big
            } else {
                return Err(ctx.corrupt(bom_off, "section header without a valid byte-order magic"));
            };
        }
        let endian = p.endian;
        let (Some(block_type), Some(len)) = (endian.u32(bytes, off), endian.u32(bytes, off + 4))
        else {
            return Err(ctx.corrupt(off, "truncated block header"));
        };
        let len_usize = data_len_of(len);
        if len_usize < BLOCK_MIN_LEN {
            return Err(ctx.corrupt(
                off,
                format!("block type {block_type:#x} has length {len}, less than {BLOCK_MIN_LEN}"),
            ));
        }
        if len % 4 != 0 {
            return Err(ctx.corrupt(
                off,
                format!("block type {block_type:#x} has length {len}, not a multiple of 4"),
            ));
        }
        if len_usize > left {
            return Err(ctx.corrupt(
                off,
                format!("block type {block_type:#x} of length {len} runs past the end of the file ({left} bytes left)"),
            ));
        }
        let end = off + len_usize;
        let trailing = endian.u32(bytes, end - 4);
        if trailing != Some(len) {
            return Err(ctx.corrupt(
                off,
                format!(
                    "block type {block_type:#x}: trailing length {} differs from leading length {len}",
                    trailing.unwrap_or_default()
                ),
            ));
        }
        let body_off = off + 8;
        let body = bytes.get(body_off..end - 4).unwrap_or_default();
        if is_shb {
            p.section_header(off, body)?;
        } else {
            match block_type {
                BLOCK_IDB => p.interface_description(off, body_off, body)?,
                BLOCK_EPB => {
                    let pkt = p.enhanced_packet(off, body_off, body)?;
                    p.push(off, &pkt)?;
                }
                BLOCK_PB => {
                    let pkt = p.obsolete_packet(off, body_off, body)?;
                    p.push(off, &pkt)?;
                }
                BLOCK_SPB => {
                    let pkt = p.simple_packet(off, body_off, body)?;
                    p.push(off, &pkt)?;
                }
                _ => {}
            }
        }
        off = end;
    }
    Ok(p.frames)
}

impl Pcapng<'_> {
    /// Handles a Section Header Block body (starting at the byte-order
    /// magic): checks the version and starts a new section.
    fn section_header(&mut self, off: usize, body: &[u8]) -> Result<(), CaptureError> {
        let Some(major) = self.endian.u16(body, 4) else {
            return Err(self.ctx.corrupt(off, "section header block too short"));
        };
        // Minor version and section length (at 8..16) are not needed, but
        // must be there.
        if body.len() < 16 {
            return Err(self.ctx.corrupt(off, "section header block too short"));
        }
        if major != 1 {
            return Err(self
                .ctx
                .corrupt(off, format!("unsupported pcapng major version {major}")));
        }
        self.interfaces.clear();
        Ok(())
    }

    /// Handles an Interface Description Block.
    fn interface_description(
        &mut self,
        off: usize,
        body_off: usize,
        body: &[u8],
    ) -> Result<(), CaptureError> {
        let e = self.endian;
        let (Some(linktype), Some(snaplen)) = (e.u16(body, 0), e.u32(body, 4)) else {
            return Err(self
                .ctx
                .corrupt(off, "interface description block too short"));
        };
        let mut iface = Interface {
            linktype: u32::from(linktype),
            snaplen,
            tsresol: TsResol::Pow10(6),
            tsoffset_s: 0,
        };
        let opts = body.get(8..).unwrap_or_default();
        for_each_option(self.ctx, e, body_off + 8, opts, |opt_off, code, value| {
            match code {
                OPT_IF_TSRESOL => match value {
                    [b] => iface.tsresol = TsResol::from_option(*b),
                    _ => {
                        return Err(self.ctx.corrupt(
                            opt_off,
                            format!("if_tsresol option of length {}, expected 1", value.len()),
                        ));
                    }
                },
                OPT_IF_TSOFFSET => match e.u64(value, 0) {
                    Some(v) if value.len() == 8 => iface.tsoffset_s = v as i64,
                    _ => {
                        return Err(self.ctx.corrupt(
                            opt_off,
                            format!("if_tsoffset option of length {}, expected 8", value.len()),
                        ));
                    }
                },
                _ => {}
            }
            Ok(())
        })?;
        self.interfaces.push(iface);
        Ok(())
    }

    /// Extracts the packet of an Enhanced Packet Block.
    fn enhanced_packet<'b>(
        &self,
        off: usize,
        body_off: usize,
        body: &'b [u8],
    ) -> Result<RawPacket<'b>, CaptureError> {
        let e = self.endian;
        let (Some(ifid), Some(hi), Some(lo), Some(cap), Some(orig_len)) = (
            e.u32(body, 0),
            e.u32(body, 4),
            e.u32(body, 8),
            e.u32(body, 12),
            e.u32(body, 16),
        ) else {
            return Err(self.ctx.corrupt(off, "enhanced packet block too short"));
        };
        let ts = (u64::from(hi) << 32) | u64::from(lo);
        let data = self.packet_data(off, body, 20, cap)?;
        Ok(RawPacket {
            interface: data_len_of(ifid),
            ts: Some(ts),
            data,
            data_off: body_off + 20,
            orig_len,
        })
    }

    /// Extracts the packet of an obsolete Packet Block.
    fn obsolete_packet<'b>(
        &self,
        off: usize,
        body_off: usize,
        body: &'b [u8],
    ) -> Result<RawPacket<'b>, CaptureError> {
        let e = self.endian;
        let (Some(ifid), Some(hi), Some(lo), Some(cap), Some(orig_len)) = (
            e.u16(body, 0),
            e.u32(body, 4),
            e.u32(body, 8),
            e.u32(body, 12),
            e.u32(body, 16),
        ) else {
            return Err(self.ctx.corrupt(off, "packet block too short"));
        };
        let ts = (u64::from(hi) << 32) | u64::from(lo);
        let data = self.packet_data(off, body, 20, cap)?;
        Ok(RawPacket {
            interface: usize::from(ifid),
            ts: Some(ts),
            data,
            data_off: body_off + 20,
            orig_len,
        })
    }

    /// Extracts the packet of a Simple Packet Block (always interface 0; its
    /// captured length is the smallest of the original length, the room in
    /// the block and the interface's snap length).
    fn simple_packet<'b>(
        &self,
        off: usize,
        body_off: usize,
        body: &'b [u8],
    ) -> Result<RawPacket<'b>, CaptureError> {
        let Some(orig_len) = self.endian.u32(body, 0) else {
            return Err(self.ctx.corrupt(off, "simple packet block too short"));
        };
        let room = body.len().saturating_sub(4);
        let mut cap = data_len_of(orig_len).min(room);
        if let Some(iface) = self.interfaces.first()
            && iface.snaplen != 0
        {
            cap = cap.min(data_len_of(iface.snaplen));
        }
        Ok(RawPacket {
            interface: 0,
            ts: None,
            data: body.get(4..4 + cap).unwrap_or_default(),
            data_off: body_off + 4,
            orig_len,
        })
    }

    /// The `cap` bytes of packet data at `start` in a block body.
    fn packet_data<'b>(
        &self,
        off: usize,
        body: &'b [u8],
        start: usize,
        cap: u32,
    ) -> Result<&'b [u8], CaptureError> {
        usize::try_from(cap)
            .ok()
            .and_then(|n| start.checked_add(n))
            .and_then(|end| body.get(start..end))
            .ok_or_else(|| {
                self.ctx.corrupt(
                    off,
                    format!(
                        "captured length {cap} exceeds the block ({} bytes of packet data)",
                        body.len().saturating_sub(start)
                    ),
                )
            })
    }

    /// Normalises a packet and appends it to the frames.
    fn push(&mut self, off: usize, pkt: &RawPacket<'_>) -> Result<(), CaptureError> {
        let Some(iface) = self.interfaces.get(pkt.interface).copied() else {
            return Err(self.ctx.corrupt(
                off,
                format!(
                    "packet on interface {} but the section describes {} interface(s)",
                    pkt.interface,
                    self.interfaces.len()
                ),
            ));
        };
        let ts_ns = match pkt.ts {
            Some(raw) => iface
                .ts_ns(raw)
                .ok_or_else(|| self.ctx.corrupt(off, "timestamp out of range"))?,
            None => self.frames.last().map_or(0, |f| f.ts_ns),
        };
        let (data, orig_len) = to_ethernet(iface.linktype, pkt.data, pkt.orig_len)
            .map_err(|e| self.ctx.link(pkt.data_off, e))?;
        self.frames.push(Frame {
            ts_ns,
            data,
            orig_len,
        });
        Ok(())
    }
}

/// Calls `f(offset, code, value)` for every option of an option list that
/// starts at file offset `base`, up to `opt_endofopt` or the end of the
/// list.
fn for_each_option<'a>(
    ctx: Ctx<'_>,
    e: Endian,
    base: usize,
    opts: &'a [u8],
    mut f: impl FnMut(usize, u16, &'a [u8]) -> Result<(), CaptureError>,
) -> Result<(), CaptureError> {
    let mut pos = 0usize;
    while pos < opts.len() {
        let (Some(code), Some(len)) = (e.u16(opts, pos), e.u16(opts, pos + 2)) else {
            return Err(ctx.corrupt(base + pos, "truncated option header"));
        };
        if code == OPT_ENDOFOPT {
            break;
        }
        let start = pos + 4;
        let len = usize::from(len);
        let Some(value) = opts.get(start..start + len) else {
            return Err(ctx.corrupt(
                base + pos,
                format!("option {code} of length {len} runs past the end of its block"),
            ));
        };
        f(base + pos, code, value)?;
        // Values are padded to 32 bits; padding past the end just ends the list.
        pos = start + len.next_multiple_of(4);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Link-layer normalisation
// ---------------------------------------------------------------------------

/// Why a packet could not be normalised.
#[derive(Debug)]
enum LinkError {
    /// The link type is not supported.
    Unsupported(u32),
    /// The link-layer header is malformed.
    Bad(String),
}

/// Converts a packet of `linktype` to an Ethernet frame; returns the frame
/// and its adjusted original length.
fn to_ethernet(linktype: u32, data: &[u8], orig_len: u32) -> Result<(Vec<u8>, u32), LinkError> {
    let short = |name: &str, need: usize| {
        LinkError::Bad(format!(
            "{name} header needs {need} bytes, packet has {}",
            data.len()
        ))
    };
    let (hdr_len, ethertype) = match linktype {
        LINKTYPE_ETHERNET => {
            if data.len() < ETH_HLEN {
                return Err(short("Ethernet", ETH_HLEN));
            }
            return Ok((data.to_vec(), orig_len));
        }
        LINKTYPE_LINUX_SLL => match data.get(14..).and_then(<[u8]>::first_chunk::<2>) {
            Some(&p) => (16, u16::from_be_bytes(p)),
            None => return Err(short("Linux cooked (SLL)", 16)),
        },
        LINKTYPE_LINUX_SLL2 => match (data.first_chunk::<2>(), data.len() >= 20) {
            (Some(&p), true) => (20, u16::from_be_bytes(p)),
            _ => return Err(short("Linux cooked v2 (SLL2)", 20)),
        },
        LINKTYPE_RAW | LINKTYPE_RAW_OLD => match data.first().map(|b| b >> 4) {
            Some(4) => (0, ETHERTYPE_IPV4),
            Some(6) => (0, ETHERTYPE_IPV6),
            Some(v) => {
                return Err(LinkError::Bad(format!(
                    "raw IP packet of IP version {v} (neither 4 nor 6)"
                )));
            }
            None => return Err(short("raw IP", 1)),
        },
        LINKTYPE_IPV4 => (0, ETHERTYPE_IPV4),
        LINKTYPE_IPV6 => (0, ETHERTYPE_IPV6),
        LINKTYPE_NULL => {
            let Some(&af) = data.first_chunk::<4>() else {
                return Err(short("BSD loopback", 4));
            };
            let family = |v: u32| match v {
                2 => Some(ETHERTYPE_IPV4),
                24 | 28 | 30 => Some(ETHERTYPE_IPV6),
                _ => None,
            };
            match family(u32::from_le_bytes(af)).or_else(|| family(u32::from_be_bytes(af))) {
                Some(t) => (4, t),
                None => {
                    return Err(LinkError::Bad(format!(
                        "BSD loopback address family {:#010x} is neither IPv4 nor IPv6",
                        u32::from_be_bytes(af)
                    )));
                }
            }
        }
        other => return Err(LinkError::Unsupported(other)),
    };
    let payload = data.get(hdr_len..).unwrap_or_default();
    let mut frame = Vec::with_capacity(ETH_HLEN + payload.len());
    frame.extend_from_slice(&SYNTH_DST_MAC);
    frame.extend_from_slice(&SYNTH_SRC_MAC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    let orig_len = orig_len
        .saturating_sub(hdr_len as u32)
        .saturating_add(ETH_HLEN as u32);
    Ok((frame, orig_len))
}

#[cfg(test)]
mod tests;
