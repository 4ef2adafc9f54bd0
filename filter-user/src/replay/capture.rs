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
mod tests {
    use super::*;

    // -- builders ----------------------------------------------------------

    /// A minimal IPv4 header (20 bytes) followed by `extra` payload bytes.
    fn ipv4(extra: usize) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend((0..extra).map(|i| i as u8));
        p
    }

    /// A minimal IPv6 header (40 bytes).
    fn ipv6() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
        p.extend([0u8; 32]);
        p
    }

    /// An Ethernet frame carrying `payload` with `ethertype`.
    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
        ];
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    /// The frame expected after synthesising an Ethernet header.
    fn synth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = SYNTH_DST_MAC.to_vec();
        f.extend(SYNTH_SRC_MAC);
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    /// One classic pcap record.
    struct Rec<'a> {
        sec: u32,
        frac: u32,
        data: &'a [u8],
        orig: u32,
    }

    fn rec(sec: u32, frac: u32, data: &[u8]) -> Rec<'_> {
        Rec {
            sec,
            frac,
            data,
            orig: data.len() as u32,
        }
    }

    /// A classic pcap file.
    fn pcap(be: bool, nsec: bool, linktype: u32, recs: &[Rec<'_>]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut out = Vec::new();
        out.extend(w32(if nsec {
            PCAP_MAGIC_NSEC
        } else {
            PCAP_MAGIC_USEC
        }));
        out.extend(w16(2));
        out.extend(w16(4));
        out.extend(w32(0));
        out.extend(w32(0));
        out.extend(w32(65535));
        out.extend(w32(linktype));
        for r in recs {
            out.extend(w32(r.sec));
            out.extend(w32(r.frac));
            out.extend(w32(r.data.len() as u32));
            out.extend(w32(r.orig));
            out.extend(r.data);
        }
        out
    }

    /// A pcapng writer.
    struct Ng {
        be: bool,
        out: Vec<u8>,
    }

    impl Ng {
        /// A new file starting with a section header.
        fn new(be: bool) -> Self {
            let mut ng = Ng {
                be,
                out: Vec::new(),
            };
            ng.shb(be);
            ng
        }

        fn w16(&self, v: u16) -> [u8; 2] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn w32(&self, v: u32) -> [u8; 4] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        /// Appends a block with `body` padded to 32 bits; returns its offset.
        fn block(&mut self, ty: u32, body: &[u8]) -> usize {
            let off = self.out.len();
            let padded = body.len().next_multiple_of(4);
            let len = (12 + padded) as u32;
            let (t, l) = (self.w32(ty), self.w32(len));
            self.out.extend(t);
            self.out.extend(l);
            self.out.extend(body);
            self.out.resize(self.out.len() + padded - body.len(), 0);
            self.out.extend(l);
            off
        }

        /// Appends a section header block (switching byte order).
        fn shb(&mut self, be: bool) -> usize {
            self.be = be;
            let mut body = self.w32(PCAPNG_BYTE_ORDER_MAGIC).to_vec();
            body.extend(self.w16(1));
            body.extend(self.w16(0));
            body.extend([0xff; 8]);
            // SHB type is a palindrome, so the byte order does not matter.
            self.block(0x0A0D_0D0A, &body)
        }

        /// Appends an interface description block with options.
        fn idb(&mut self, linktype: u16, snaplen: u32, opts: &[(u16, &[u8])]) -> usize {
            let mut body = self.w16(linktype).to_vec();
            body.extend([0, 0]);
            body.extend(self.w32(snaplen));
            for (code, val) in opts {
                body.extend(self.w16(*code));
                body.extend(self.w16(val.len() as u16));
                body.extend(*val);
                body.resize(body.len().next_multiple_of(4), 0);
            }
            if !opts.is_empty() {
                body.extend([0, 0, 0, 0]);
            }
            self.block(BLOCK_IDB, &body)
        }

        /// Appends an enhanced packet block.
        fn epb(&mut self, ifid: u32, ts: u64, data: &[u8]) -> usize {
            let mut body = self.w32(ifid).to_vec();
            body.extend(self.w32((ts >> 32) as u32));
            body.extend(self.w32(ts as u32));
            body.extend(self.w32(data.len() as u32));
            body.extend(self.w32(data.len() as u32 + 100));
            body.extend(data);
            self.block(BLOCK_EPB, &body)
        }

        /// Appends an obsolete packet block.
        fn pb(&mut self, ifid: u16, ts: u64, data: &[u8]) -> usize {
            let mut body = self.w16(ifid).to_vec();
            body.extend(self.w16(0));
            body.extend(self.w32((ts >> 32) as u32));
            body.extend(self.w32(ts as u32));
            body.extend(self.w32(data.len() as u32));
            body.extend(self.w32(data.len() as u32));
            body.extend(data);
            self.block(BLOCK_PB, &body)
        }

        /// Appends a simple packet block.
        fn spb(&mut self, orig: u32, data: &[u8]) -> usize {
            let mut body = self.w32(orig).to_vec();
            body.extend(data);
            self.block(BLOCK_SPB, &body)
        }
    }

    fn parse(bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
        parse_capture("test.pcap", bytes)
    }

    /// The offset of a `Corrupt` error (panics on any other result).
    fn corrupt_offset(r: Result<Vec<Frame>, CaptureError>) -> u64 {
        match r {
            Err(CaptureError::Corrupt { offset, what, .. }) => {
                assert!(!what.is_empty());
                offset
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    // -- classic pcap ------------------------------------------------------

    #[test]
    fn pcap_le_usec() {
        let f1 = eth(0x0800, &ipv4(3));
        let f2 = eth(0x86DD, &ipv6());
        let bytes = pcap(
            false,
            false,
            1,
            &[
                rec(1_700_000_000, 123_456, &f1),
                rec(1_700_000_001, 999_999, &f2),
            ],
        );
        let frames = parse(&bytes).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data, f1);
        assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_000);
        assert_eq!(frames[0].orig_len, f1.len() as u32);
        assert_eq!(frames[1].data, f2);
        assert_eq!(frames[1].ts_ns, 1_700_000_001_999_999_000);
    }

    #[test]
    fn pcap_be_nsec() {
        let f1 = eth(0x0800, &ipv4(0));
        let bytes = pcap(true, true, 1, &[rec(1_700_000_000, 123_456_789, &f1)]);
        assert_eq!(&bytes[..4], &[0xa1, 0xb2, 0x3c, 0x4d]);
        let frames = parse(&bytes).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, f1);
        assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_789);
    }

    #[test]
    fn pcap_le_nsec_and_be_usec() {
        let f1 = eth(0x0800, &ipv4(0));
        let frames = parse(&pcap(false, true, 1, &[rec(5, 7, &f1)])).unwrap();
        assert_eq!(frames[0].ts_ns, 5_000_000_007);
        let frames = parse(&pcap(true, false, 1, &[rec(5, 7, &f1)])).unwrap();
        assert_eq!(frames[0].ts_ns, 5_000_007_000);
    }

    #[test]
    fn pcap_no_records() {
        assert_eq!(parse(&pcap(false, false, 1, &[])).unwrap(), vec![]);
        // Unsupported link type is reported at the first packet only.
        assert_eq!(parse(&pcap(false, false, 105, &[])).unwrap(), vec![]);
    }

    #[test]
    fn pcap_snaplen_truncated_record_is_fine() {
        let full = eth(0x0800, &ipv4(100));
        let cut = &full[..40];
        let bytes = pcap(
            false,
            false,
            1,
            &[Rec {
                sec: 1,
                frac: 0,
                data: cut,
                orig: full.len() as u32,
            }],
        );
        let frames = parse(&bytes).unwrap();
        assert_eq!(frames[0].data, cut);
        assert_eq!(frames[0].orig_len, full.len() as u32);
    }

    #[test]
    fn pcap_fcs_bits_in_linktype_are_ignored() {
        let f1 = eth(0x0800, &ipv4(0));
        // FCS present, length 2 (16-bit words) in the top bits.
        let bytes = pcap(false, false, 0x2400_0001, &[rec(1, 0, &f1)]);
        assert_eq!(parse(&bytes).unwrap()[0].data, f1);
        // Reserved bits set: not a link type we know.
        let bytes = pcap(false, false, 0x0001_0001, &[rec(1, 0, &f1)]);
        assert!(matches!(
            parse(&bytes),
            Err(CaptureError::UnsupportedLinkType {
                linktype: 0x0001_0001,
                ..
            })
        ));
    }

    // -- link types --------------------------------------------------------

    #[test]
    fn linux_sll() {
        let ip = ipv4(4);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend(&ip);
        // Unknown protocol 0x0004 (802.2 LLC) is kept as EtherType.
        let mut llc = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x00, 0x04];
        llc.extend([0xaa, 0xaa, 0x03]);
        let mut bytes = pcap(false, false, 113, &[rec(1, 0, &sll), rec(2, 0, &llc)]);
        let frames = parse(&bytes).unwrap();
        assert_eq!(frames[0].data, synth(0x0800, &ip));
        assert_eq!(frames[0].orig_len, (ip.len() + 14) as u32);
        assert_eq!(frames[1].data, synth(0x0004, &[0xaa, 0xaa, 0x03]));

        // A 15-byte SLL frame is too short: Corrupt at the packet data.
        bytes = pcap(false, false, 113, &[rec(1, 0, &sll[..15])]);
        assert_eq!(corrupt_offset(parse(&bytes)), 24 + 16);
    }

    #[test]
    fn linux_sll2() {
        let ip = ipv6();
        let mut sll2 = vec![
            0x86, 0xDD, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend(&ip);
        let bytes = pcap(true, false, 276, &[rec(1, 0, &sll2)]);
        let frames = parse(&bytes).unwrap();
        assert_eq!(frames[0].data, synth(0x86DD, &ip));
        assert_eq!(frames[0].orig_len, (ip.len() + 14) as u32);

        let bytes = pcap(true, false, 276, &[rec(1, 0, &sll2[..19])]);
        assert_eq!(corrupt_offset(parse(&bytes)), 24 + 16);
    }

    #[test]
    fn raw_ip() {
        let v4 = ipv4(2);
        let v6 = ipv6();
        for lt in [101, 12] {
            let bytes = pcap(false, false, lt, &[rec(1, 0, &v4), rec(2, 0, &v6)]);
            let frames = parse(&bytes).unwrap();
            assert_eq!(frames[0].data, synth(0x0800, &v4));
            assert_eq!(frames[0].orig_len, (v4.len() + 14) as u32);
            assert_eq!(frames[1].data, synth(0x86DD, &v6));
        }
        let frames = parse(&pcap(false, false, 228, &[rec(1, 0, &v4)])).unwrap();
        assert_eq!(frames[0].data, synth(0x0800, &v4));
        let frames = parse(&pcap(false, false, 229, &[rec(1, 0, &v6)])).unwrap();
        assert_eq!(frames[0].data, synth(0x86DD, &v6));

        // Empty raw IP packet and a bad version are corrupt.
        assert_eq!(
            corrupt_offset(parse(&pcap(false, false, 101, &[rec(1, 0, &[])]))),
            40
        );
        assert_eq!(
            corrupt_offset(parse(&pcap(false, false, 101, &[rec(1, 0, &[0x55, 0])]))),
            40
        );
    }

    #[test]
    fn bsd_loopback() {
        let v4 = ipv4(1);
        let v6 = ipv6();
        let mut recs_data = Vec::new();
        // Host byte order of the capturing machine: try both.
        for (af, le, payload) in [
            (2u32, true, &v4),
            (2, false, &v4),
            (24, true, &v6),
            (28, false, &v6),
            (30, true, &v6),
            (30, false, &v6),
        ] {
            let mut d = if le {
                af.to_le_bytes()
            } else {
                af.to_be_bytes()
            }
            .to_vec();
            d.extend(payload.iter());
            recs_data.push(d);
        }
        let recs: Vec<Rec<'_>> = recs_data.iter().map(|d| rec(9, 0, d)).collect();
        let frames = parse(&pcap(false, false, 0, &recs)).unwrap();
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[0].data, synth(0x0800, &v4));
        assert_eq!(frames[0].orig_len, (v4.len() + 14) as u32);
        assert_eq!(frames[1].data, synth(0x0800, &v4));
        for f in &frames[2..] {
            assert_eq!(f.data, synth(0x86DD, &v6));
        }

        // Too short, and an unknown family.
        assert_eq!(
            corrupt_offset(parse(&pcap(false, false, 0, &[rec(1, 0, &[2, 0, 0])]))),
            40
        );
        assert_eq!(
            corrupt_offset(parse(&pcap(
                false,
                false,
                0,
                &[rec(1, 0, &[7, 0, 0, 0, 0x45])]
            ))),
            40
        );
    }

    #[test]
    fn short_ethernet_is_corrupt() {
        let f1 = eth(0x0800, &ipv4(0));
        let bytes = pcap(false, false, 1, &[rec(1, 0, &f1), rec(1, 0, &f1[..13])]);
        let second_data = 24 + 16 + f1.len() + 16;
        assert_eq!(corrupt_offset(parse(&bytes)), second_data as u64);
    }

    // -- pcapng ------------------------------------------------------------

    #[test]
    fn pcapng_two_interfaces_and_tsresol() {
        let f_eth = eth(0x0800, &ipv4(5));
        let v6 = ipv6();
        let mut ng = Ng::new(false);
        // Interface 0: Ethernet, default microseconds.
        ng.idb(1, 0, &[]);
        // Interface 1: raw IP, nanoseconds, with an unrelated option first.
        ng.idb(101, 0, &[(2, b"eth1"), (OPT_IF_TSRESOL, &[9])]);
        // Interface 2: Ethernet, 2^-10 seconds, offset of 100 s.
        ng.idb(
            1,
            0,
            &[
                (OPT_IF_TSRESOL, &[0x8A]), // 0x80 | 10
                (OPT_IF_TSOFFSET, &100u64.to_le_bytes()),
            ],
        );
        // Unknown block types are skipped (NRB, ISB, custom).
        ng.block(4, &[0, 0, 0, 0]);
        ng.epb(0, 1_700_000_000_123_456, &f_eth);
        ng.block(5, &[0; 16]);
        ng.epb(1, 1_700_000_000_123_456_789, &v6);
        ng.block(0x0000_0BAD, &[1, 2, 3]);
        ng.epb(2, 3 * 1024 + 512, &f_eth);
        let frames = parse(&ng.out).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].data, f_eth);
        assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_000);
        assert_eq!(frames[0].orig_len, f_eth.len() as u32 + 100);
        assert_eq!(frames[1].data, synth(0x86DD, &v6));
        assert_eq!(frames[1].ts_ns, 1_700_000_000_123_456_789);
        assert_eq!(frames[1].orig_len, v6.len() as u32 + 100 + 14);
        assert_eq!(frames[2].ts_ns, 103_500_000_000);
    }

    #[test]
    fn pcapng_big_endian_and_several_sections() {
        let f_eth = eth(0x0806, &[0; 28]);
        let v4 = ipv4(0);
        let mut ng = Ng::new(true);
        ng.idb(1, 0, &[(OPT_IF_TSRESOL, &[3])]);
        ng.epb(0, 42, &f_eth);
        // New section, little endian: interfaces start again.
        ng.shb(false);
        ng.idb(228, 0, &[]);
        ng.epb(0, 7, &v4);
        // And back to big endian with a millisecond SLL interface.
        ng.shb(true);
        ng.idb(113, 0, &[(OPT_IF_TSRESOL, &[3])]);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend(&v4);
        ng.pb(0, 5, &sll);
        let frames = parse(&ng.out).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].data, f_eth);
        assert_eq!(frames[0].ts_ns, 42_000_000);
        assert_eq!(frames[1].data, synth(0x0800, &v4));
        assert_eq!(frames[1].ts_ns, 7_000);
        assert_eq!(frames[2].data, synth(0x0800, &v4));
        assert_eq!(frames[2].ts_ns, 5_000_000);

        // Interfaces of an earlier section are gone in the next one.
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]);
        ng.shb(true);
        let epb = ng.epb(0, 1, &f_eth);
        assert_eq!(corrupt_offset(parse(&ng.out)), epb as u64);
    }

    #[test]
    fn pcapng_simple_packet_block() {
        let f1 = eth(0x0800, &ipv4(30));
        let mut ng = Ng::new(false);
        ng.idb(1, 40, &[]);
        ng.epb(0, 77, &f1[..40]);
        // Snap length 40 caps the captured length of the SPB.
        ng.spb(f1.len() as u32, &f1);
        // Original length shorter than the block: the block is padded.
        ng.spb(30, &f1[..30]);
        let frames = parse(&ng.out).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].data, &f1[..40]);
        assert_eq!(frames[1].orig_len, f1.len() as u32);
        // No timestamp: the previous frame's is used.
        assert_eq!(frames[1].ts_ns, 77_000);
        assert_eq!(frames[2].data, &f1[..30]);
        assert_eq!(frames[2].ts_ns, 77_000);

        // SPB without any interface is corrupt.
        let mut ng = Ng::new(false);
        let spb = ng.spb(f1.len() as u32, &f1);
        assert_eq!(corrupt_offset(parse(&ng.out)), spb as u64);
    }

    #[test]
    fn tsresol_conversions() {
        assert_eq!(TsResol::Pow10(6).to_ns(1), Some(1_000));
        assert_eq!(TsResol::Pow10(0).to_ns(2), Some(2_000_000_000));
        assert_eq!(TsResol::Pow10(12).to_ns(5_000), Some(5));
        assert_eq!(TsResol::Pow10(127).to_ns(u64::MAX), Some(0));
        assert_eq!(TsResol::Pow10(0).to_ns(u64::MAX), None);
        assert_eq!(TsResol::Pow2(0).to_ns(3), Some(3_000_000_000));
        assert_eq!(TsResol::Pow2(1).to_ns(3), Some(1_500_000_000));
        assert_eq!(TsResol::Pow2(127).to_ns(u64::MAX), Some(0));
        assert_eq!(TsResol::from_option(0x8A), TsResol::Pow2(10));
        assert_eq!(TsResol::from_option(9), TsResol::Pow10(9));
    }

    // -- errors --------------------------------------------------------------

    #[test]
    fn empty_and_short_files() {
        assert_eq!(corrupt_offset(parse(&[])), 0);
        assert_eq!(corrupt_offset(parse(&[0xd4, 0xc3])), 0);
        // Magic but truncated file header.
        let bytes = pcap(false, false, 1, &[]);
        assert_eq!(corrupt_offset(parse(&bytes[..20])), 0);
    }

    #[test]
    fn unknown_magic() {
        match parse(b"GIF89a......") {
            Err(
                e @ CaptureError::UnknownFormat {
                    magic: 0x4749_4638, ..
                },
            ) => {
                assert_eq!(
                    e.to_string(),
                    "test.pcap: not a pcap or pcapng file (magic 47494638)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pcap_record_past_end() {
        let f1 = eth(0x0800, &ipv4(10));
        let bytes = pcap(false, false, 1, &[rec(1, 0, &f1), rec(2, 0, &f1)]);
        let second = 24 + 16 + f1.len();
        // Data of the second record cut short.
        let err = parse(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(
            err.to_string().contains(&format!("at byte {second}")),
            "{err}"
        );
        assert!(matches!(err, CaptureError::Corrupt { offset, .. } if offset == second as u64));
        // Record header cut short.
        assert_eq!(corrupt_offset(parse(&bytes[..second + 10])), second as u64);
        // Huge incl_len.
        let mut bytes = bytes;
        bytes[second + 8..second + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(corrupt_offset(parse(&bytes)), second as u64);
    }

    #[test]
    fn pcapng_block_length_errors() {
        let f1 = eth(0x0800, &ipv4(0));
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]);
        let epb = ng.epb(0, 1, &f1);
        let good = ng.out.clone();
        assert_eq!(parse(&good).unwrap().len(), 1);

        // Length not a multiple of 4.
        let mut bad = good.clone();
        bad[epb + 4] += 1;
        assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
        // Length less than 12.
        let mut bad = good.clone();
        bad[epb + 4..epb + 8].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
        // Length past the end of the file.
        let mut bad = good.clone();
        bad[epb + 4..epb + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
        // Trailing length differs from the leading one.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 4] ^= 4;
        let err = parse(&bad).unwrap_err();
        assert!(err.to_string().contains("trailing length"), "{err}");
        assert_eq!(corrupt_offset(Err(err)), epb as u64);
        // Captured length larger than the block.
        let mut bad = good.clone();
        bad[epb + 20..epb + 24].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
        // Truncated block header at the end.
        let mut bad = good.clone();
        bad.extend([1, 0, 0, 0, 12, 0]);
        assert_eq!(corrupt_offset(parse(&bad)), good.len() as u64);
        // Bad byte-order magic in a second section header.
        let mut bad = good.clone();
        let shb2 = bad.len();
        bad.extend(&good[..28]);
        bad[shb2 + 8] = 0x99;
        assert_eq!(corrupt_offset(parse(&bad)), (shb2 + 8) as u64);
        // Bad major version.
        let mut bad = good;
        bad[12] = 2;
        assert_eq!(corrupt_offset(parse(&bad)), 0);
    }

    #[test]
    fn pcapng_bad_options() {
        let mut ng = Ng::new(false);
        let idb = ng.idb(1, 0, &[(OPT_IF_TSRESOL, &[6, 6])]);
        // Option starts after 8 header bytes and 8 fixed IDB bytes.
        assert_eq!(corrupt_offset(parse(&ng.out)), (idb + 16) as u64);

        let mut ng = Ng::new(false);
        let idb = ng.idb(1, 0, &[(2, b"abcd")]);
        // Make the option length run past the block.
        ng.out[idb + 18] = 200;
        assert_eq!(corrupt_offset(parse(&ng.out)), (idb + 16) as u64);
    }

    #[test]
    fn pcapng_missing_interface() {
        let f1 = eth(0x0800, &ipv4(0));
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]);
        ng.epb(0, 1, &f1);
        let epb = ng.epb(1, 2, &f1);
        let err = parse(&ng.out).unwrap_err();
        assert!(err.to_string().contains("interface 1"), "{err}");
        assert_eq!(corrupt_offset(Err(err)), epb as u64);

        // Obsolete packet block as well.
        let mut ng = Ng::new(true);
        let pb = ng.pb(0, 1, &f1);
        assert_eq!(corrupt_offset(parse(&ng.out)), pb as u64);
    }

    #[test]
    fn unsupported_link_type() {
        let f1 = eth(0x0800, &ipv4(0));
        match parse(&pcap(false, false, 105, &[rec(1, 0, &f1)])) {
            Err(e @ CaptureError::UnsupportedLinkType { linktype: 105, .. }) => {
                assert!(e.to_string().contains("link type 105 is not supported"));
            }
            other => panic!("{other:?}"),
        }
        // pcapng: an unused 802.11 interface is fine, a packet on it is not.
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]);
        ng.idb(127, 0, &[]);
        ng.epb(0, 1, &f1);
        assert_eq!(parse(&ng.out).unwrap().len(), 1);
        ng.epb(1, 1, &f1);
        assert!(matches!(
            parse(&ng.out),
            Err(CaptureError::UnsupportedLinkType { linktype: 127, .. })
        ));
    }

    #[test]
    fn read_capture_io_error() {
        let err = read_capture(Path::new("/nonexistent/dir/x.pcap")).unwrap_err();
        assert!(matches!(err, CaptureError::Io { .. }));
        assert!(err.to_string().starts_with("/nonexistent/dir/x.pcap: "));
    }

    // -- robustness ------------------------------------------------------------

    /// Small valid captures exercising every code path.
    fn samples() -> Vec<Vec<u8>> {
        let f1 = eth(0x0800, &ipv4(7));
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend(ipv4(1));
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend(ipv4(0));
        let mut out = vec![
            pcap(false, false, 1, &[rec(1, 2, &f1), rec(3, 4, &f1)]),
            pcap(true, true, 113, &[rec(1, 2, &sll), rec(3, 4, &sll)]),
            pcap(false, false, 0, &[rec(1, 2, &null)]),
        ];
        let mut ng = Ng::new(false);
        ng.idb(
            1,
            0,
            &[
                (OPT_IF_TSRESOL, &[9]),
                (OPT_IF_TSOFFSET, &5u64.to_le_bytes()),
            ],
        );
        ng.idb(101, 0, &[]);
        ng.epb(0, 1, &f1);
        ng.epb(1, 2, &ipv6());
        ng.spb(f1.len() as u32, &f1);
        ng.block(5, &[0; 8]);
        ng.shb(true);
        ng.idb(113, 64, &[(OPT_IF_TSRESOL, &[0x83])]);
        ng.pb(0, 3, &sll);
        ng.epb(0, 4, &sll);
        out.push(ng.out);
        out
    }

    #[test]
    fn every_truncation_never_panics() {
        for sample in samples() {
            assert!(parse(&sample).is_ok());
            for n in 0..=sample.len() {
                let r = std::panic::catch_unwind(|| parse(&sample[..n]));
                assert!(r.is_ok(), "panic at truncation {n} of a sample");
            }
        }
    }

    #[test]
    fn random_corruption_never_panics() {
        // xorshift64: deterministic, no extra dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for sample in samples() {
            for _ in 0..2_000 {
                let mut bytes = sample.clone();
                for _ in 0..=(next() % 4) {
                    let i = (next() % bytes.len() as u64) as usize;
                    bytes[i] = next() as u8;
                }
                let cut = bytes.len() - (next() % 8) as usize;
                let r = std::panic::catch_unwind(|| parse(&bytes[..cut]));
                assert!(r.is_ok(), "panic on corrupted input {bytes:02x?}");
            }
        }
    }

    // -- real captures -----------------------------------------------------------

    /// EtherType of the network layer: skips VLAN tags (802.1Q/802.1ad)
    /// and looks inside PPPoE sessions and MPLS label stacks.
    fn network_ethertype(frame: &[u8]) -> Option<u16> {
        let be16 = |off: usize| Some(u16::from_be_bytes(*frame.get(off..)?.first_chunk::<2>()?));
        let mut off = 12;
        loop {
            match be16(off)? {
                0x8100 | 0x88A8 | 0x9100 => off += 4,
                // PPPoE session: 6-byte header, then the PPP protocol.
                0x8864 => {
                    return match be16(off + 8)? {
                        0x0021 => Some(0x0800),
                        0x0057 => Some(0x86DD),
                        p => Some(p),
                    };
                }
                // MPLS: labels up to bottom of stack, then the IP version.
                0x8847 | 0x8848 => {
                    off += 2;
                    while frame.get(off + 2)? & 1 == 0 {
                        off += 4;
                    }
                    return match frame.get(off + 4)? >> 4 {
                        4 => Some(0x0800),
                        6 => Some(0x86DD),
                        _ => Some(0x8847),
                    };
                }
                t => return Some(t),
            }
        }
    }

    #[test]
    fn real_corpus() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcap");
        if !dir.is_dir() {
            println!("skipped: ../shared/corpus not found");
            return;
        }
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
            .collect();
        files.sort();
        assert!(!files.is_empty());
        for path in &files {
            let frames = read_capture(path).unwrap_or_else(|e| panic!("{e}"));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            println!("{name}: {} frames", frames.len());
            assert!(!frames.is_empty(), "{name}: no frames");
            for (i, f) in frames.iter().enumerate() {
                let t = network_ethertype(&f.data)
                    .unwrap_or_else(|| panic!("{name}: frame {i} too short"));
                // A plausible EtherType (IPv4, IPv6, ARP ... all are at
                // least 0x0600), not an 802.3 length field or garbage.
                assert!(t >= 0x0600, "{name}: frame {i} has EtherType {t:#06x}");
                assert!(
                    f.data.len() <= f.orig_len as usize || f.orig_len == 0,
                    "{name}: frame {i}"
                );
                if name == "dns.pcap" {
                    assert!(
                        matches!(t, 0x0800 | 0x86DD),
                        "{name}: frame {i} is {t:#06x}"
                    );
                }
            }
            if name == "telegram.pcap" {
                assert!(frames.len() > 1000, "{name}: {} frames", frames.len());
            }
        }
    }
}
