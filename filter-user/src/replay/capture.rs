//! Packet-capture reader for `flowfilter replay`.
//!
//! Reads classic pcap (both byte orders, microsecond and nanosecond
//! timestamps) and pcapng (any number of sections, both byte orders,
//! Enhanced, Simple and obsolete Packet Blocks) and normalises every frame
//! so that it starts with an Ethernet header, whatever the link type of the
//! capture was.
//!
//! The `pcap-parser` crate reads the containers: the pcap file header and
//! records, and every pcapng block with its lengths and options. This module
//! adds what the crate leaves to its caller: the checks it does not make
//! (pcapng block lengths a multiple of 4 and equal trailing lengths for every
//! block type, the section's major version, an option list that ends inside
//! its block, the lengths of `if_tsresol` and `if_tsoffset`), the
//! timestamps (`if_tsresol`, `if_tsoffset` in the section's byte order,
//! nanoseconds as `u64`), the obsolete Packet Block (which the crate does
//! not know), error messages that say where and what, and the link types.
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

use pcap_parser::{SHB_MAGIC, nom, parse_pcap_header};

mod linktypes;
mod pcap;
mod pcapng;
use linktypes::{LinkError, to_ethernet};
use pcap::parse_pcap;
use pcapng::parse_pcapng;

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

/// Classic pcap magic of the "modified" (Kuznetzov) format, as read
/// little-endian: pcap-parser reads such files, this reader does not (the
/// crate does not know the byte-swapped magic, so that one is refused too).
const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
/// Length of the classic pcap file header.
const PCAP_FILE_HEADER_LEN: usize = 24;
/// Length of a classic pcap record header.
const PCAP_RECORD_HEADER_LEN: usize = 16;

/// pcapng obsolete Packet Block (pcap-parser reads it as an unknown block).
const BLOCK_PB: u32 = 2;
/// Smallest possible pcapng block: type, length, trailing length.
const BLOCK_MIN_LEN: usize = 12;

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
    let unknown = || CaptureError::UnknownFormat {
        path: path_for_errors.to_owned(),
        magic: u32::from_be_bytes(head),
    };
    match u32::from_le_bytes(head) {
        SHB_MAGIC => return parse_pcapng(ctx, bytes),
        PCAP_MAGIC_MODIFIED => return Err(unknown()),
        _ => {}
    }
    match parse_pcap_header(bytes) {
        Ok((records, header)) => parse_pcap(ctx, bytes, &header, records),
        Err(nom::Err::Incomplete(_)) => Err(ctx.corrupt(
            0,
            format!(
                "truncated pcap file header ({} of {PCAP_FILE_HEADER_LEN} bytes)",
                bytes.len()
            ),
        )),
        Err(_) => Err(unknown()),
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

#[cfg(test)]
mod tests;
