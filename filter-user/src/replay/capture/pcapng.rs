//! pcapng: sections, interfaces and the packet blocks (EPB, SPB, PB),
//! framed and parsed by pcap-parser.

use pcap_parser::nom::{self, IResult};
use pcap_parser::{
    BOM_MAGIC, EPB_MAGIC, IDB_MAGIC, OptionCode, PcapError, PcapNGOption, SHB_MAGIC, SPB_MAGIC,
};
// pcap-parser's block parsers, one for each byte order.
use pcap_parser::{
    parse_enhancedpacketblock_be as epb_be, parse_enhancedpacketblock_le as epb_le,
    parse_interfacedescriptionblock_be as idb_be, parse_interfacedescriptionblock_le as idb_le,
    parse_sectionheaderblock_be as shb_be, parse_sectionheaderblock_le as shb_le,
    parse_simplepacketblock_be as spb_be, parse_simplepacketblock_le as spb_le,
    parse_unknownblock_be as block_be, parse_unknownblock_le as block_le,
};

use super::{BLOCK_MIN_LEN, BLOCK_PB, CaptureError, Ctx, Endian, Frame, to_ethernet};

/// A pcap-parser block parser for one byte order.
type BlockParser<'a, T> = fn(&'a [u8]) -> IResult<&'a [u8], T, PcapError<&'a [u8]>>;

/// Smallest Enhanced Packet Block: header, fixed fields, trailing length.
const EPB_MIN_LEN: usize = 32;
/// Offset of the packet data in an Enhanced or obsolete Packet Block.
const PACKET_DATA_AT: usize = 28;
/// Offset of the packet data in a Simple Packet Block.
const SPB_DATA_AT: usize = 12;
/// Offset of the options in an Interface Description Block.
const IDB_OPTIONS_AT: usize = 16;

/// Timestamp resolution of a pcapng interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TsResol {
    /// Units of 10^-n seconds.
    Pow10(u8),
    /// Units of 2^-n seconds.
    Pow2(u8),
}

impl TsResol {
    /// Decodes the `if_tsresol` option byte.
    pub(super) fn from_option(b: u8) -> Self {
        if b & 0x80 == 0 {
            TsResol::Pow10(b)
        } else {
            TsResol::Pow2(b & 0x7F)
        }
    }

    /// Converts a raw timestamp in these units to nanoseconds, `None` on
    /// overflow of `u64`.
    pub(super) fn to_ns(self, raw: u64) -> Option<u64> {
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
pub(super) struct Interface {
    /// Link type.
    pub(super) linktype: u32,
    /// Snap length (0: unlimited).
    pub(super) snaplen: u32,
    /// Timestamp resolution (`if_tsresol`, default microseconds).
    pub(super) tsresol: TsResol,
    /// Seconds to add to every timestamp (`if_tsoffset`).
    pub(super) tsoffset_s: i64,
}

impl Interface {
    /// Converts a raw timestamp of this interface to nanoseconds since the
    /// epoch, `None` if it is out of range.
    pub(super) fn ts_ns(&self, raw: u64) -> Option<u64> {
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
pub(super) struct Pcapng<'a> {
    /// Error context.
    pub(super) ctx: Ctx<'a>,
    /// Byte order of the current section.
    pub(super) endian: Endian,
    /// Interfaces of the current section.
    pub(super) interfaces: Vec<Interface>,
    /// Frames read so far.
    pub(super) frames: Vec<Frame>,
}

/// A packet extracted from a packet block, before normalisation.
pub(super) struct RawPacket<'b> {
    /// Index of the interface it was captured on.
    pub(super) interface: usize,
    /// Raw timestamp in the interface's units, `None` for a Simple Packet
    /// Block.
    pub(super) ts: Option<u64>,
    /// Captured bytes.
    pub(super) data: &'b [u8],
    /// Offset of `data` in the file.
    pub(super) data_off: usize,
    /// Original length.
    pub(super) orig_len: u32,
}

/// A block framed by pcap-parser, its lengths checked.
pub(super) struct Block<'b> {
    /// Block type, in the section's byte order.
    pub(super) kind: u32,
    /// The whole block, from its type to its trailing length.
    pub(super) bytes: &'b [u8],
    /// The body: what lies between the leading and the trailing length.
    pub(super) body: &'b [u8],
}

/// Parses a pcapng file (whose first four bytes are the SHB block type).
pub(super) fn parse_pcapng(ctx: Ctx<'_>, bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
    let mut p = Pcapng {
        ctx,
        endian: Endian::Little,
        interfaces: Vec::new(),
        frames: Vec::new(),
    };
    let mut off = 0usize;
    while let Some(rest) = bytes.get(off..).filter(|rest| !rest.is_empty()) {
        let left = rest.len();
        if left < BLOCK_MIN_LEN {
            return Err(ctx.corrupt(
                off,
                format!("truncated block header ({left} bytes left, a block needs at least {BLOCK_MIN_LEN})"),
            ));
        }
        if rest.first_chunk() == Some(&SHB_MAGIC.to_le_bytes()) {
            p.endian = section_endian(ctx, bytes, off)?;
        }
        let block = p.block_at(off, rest)?;
        match block.kind {
            SHB_MAGIC => p.section_header(off, block.bytes)?,
            IDB_MAGIC => p.interface_description(off, block.bytes)?,
            EPB_MAGIC => {
                let pkt = p.enhanced_packet(off, &block)?;
                p.push(off, &pkt)?;
            }
            BLOCK_PB => {
                let pkt = p.obsolete_packet(off, block.body)?;
                p.push(off, &pkt)?;
            }
            SPB_MAGIC => {
                let pkt = p.simple_packet(off, block.bytes)?;
                p.push(off, &pkt)?;
            }
            _ => {}
        }
        off += block.bytes.len();
    }
    Ok(p.frames)
}

/// The byte order of the section whose SHB starts at `off`: given by the
/// byte-order magic right after the block length.
fn section_endian(ctx: Ctx<'_>, bytes: &[u8], off: usize) -> Result<Endian, CaptureError> {
    let bom_off = off + 8;
    let endian = if Endian::Little.u32(bytes, bom_off) == Some(BOM_MAGIC) {
        Endian::Little
    } else if Endian::Big.u32(bytes, bom_off) == Some(BOM_MAGIC) {
        Endian::Big
    } else {
        return Err(ctx.corrupt(bom_off, "section header without a valid byte-order magic"));
    };
    Ok(endian)
}

impl Pcapng<'_> {
    /// The block at `off` (`rest`: the file from there on, at least a
    /// block header), framed by pcap-parser, its lengths checked: at least
    /// the minimum, a multiple of 4, inside the file, the trailing copy
    /// equal to the leading one (the crate checks the first and the third
    /// only).
    fn block_at<'b>(&self, off: usize, rest: &'b [u8]) -> Result<Block<'b>, CaptureError> {
        let framed = self.read(rest, block_le, block_be);
        let Ok(block) = framed else {
            // Refused: the length is short of the minimum or runs past the
            // end; read type and length to say which.
            let e = self.endian;
            let (block_type, len) = (
                e.u32(rest, 0).unwrap_or_default(),
                e.u32(rest, 4).unwrap_or_default(),
            );
            self.check_length(off, block_type, len, rest.len())?;
            return Err(self.ctx.corrupt(
                off,
                format!("block type {block_type:#x} of length {len} could not be read"),
            ));
        };
        // pcap-parser keeps the type as read little-endian.
        let block_type = match self.endian {
            Endian::Little => block.block_type,
            Endian::Big => block.block_type.swap_bytes(),
        };
        let len = block.block_len1;
        self.check_length(off, block_type, len, rest.len())?;
        if block.block_len2 != len {
            return Err(self.ctx.corrupt(
                off,
                format!(
                    "block type {block_type:#x}: trailing length {} differs from leading length {len}",
                    block.block_len2
                ),
            ));
        }
        Ok(Block {
            kind: block_type,
            bytes: rest.get(..data_len_of(len)).unwrap_or_default(),
            body: block.data,
        })
    }

    /// `block` read by pcap-parser's parser for the section's byte order
    /// (`le` or `be`).
    fn read<'a, T>(
        &self,
        block: &'a [u8],
        le: BlockParser<'a, T>,
        be: BlockParser<'a, T>,
    ) -> Result<T, nom::Err<PcapError<&'a [u8]>>> {
        let parse = match self.endian {
            Endian::Little => le,
            Endian::Big => be,
        };
        parse(block).map(|(_, parsed)| parsed)
    }

    /// Checks the leading length `len` of a block of `block_type` with
    /// `left` bytes of the file from its start: at least the minimum, a
    /// multiple of 4, inside the file.
    fn check_length(
        &self,
        off: usize,
        block_type: u32,
        len: u32,
        left: usize,
    ) -> Result<(), CaptureError> {
        let what = if data_len_of(len) < BLOCK_MIN_LEN {
            format!("block type {block_type:#x} has length {len}, less than {BLOCK_MIN_LEN}")
        } else if !len.is_multiple_of(4) {
            format!("block type {block_type:#x} has length {len}, not a multiple of 4")
        } else if data_len_of(len) > left {
            format!(
                "block type {block_type:#x} of length {len} runs past the end of the file ({left} bytes left)"
            )
        } else {
            return Ok(());
        };
        Err(self.ctx.corrupt(off, what))
    }

    /// Handles a Section Header Block: checks the version and starts a new
    /// section.
    pub(super) fn section_header(&mut self, off: usize, block: &[u8]) -> Result<(), CaptureError> {
        let shb = self
            .read(block, shb_le, shb_be)
            .map_err(|_| self.ctx.corrupt(off, "section header block too short"))?;
        if shb.major_version != 1 {
            return Err(self.ctx.corrupt(
                off,
                format!("unsupported pcapng major version {}", shb.major_version),
            ));
        }
        self.interfaces.clear();
        Ok(())
    }

    /// Handles an Interface Description Block.
    pub(super) fn interface_description(
        &mut self,
        off: usize,
        block: &[u8],
    ) -> Result<(), CaptureError> {
        let idb = self.read(block, idb_le, idb_be).map_err(|_| {
            self.ctx
                .corrupt(off, "interface description block too short")
        })?;
        let mut iface = Interface {
            linktype: idb.linktype.0.cast_unsigned(),
            snaplen: idb.snaplen,
            tsresol: TsResol::Pow10(6),
            tsoffset_s: 0,
        };
        for listed in self.options(off, block, IDB_OPTIONS_AT, &idb.options) {
            let (opt_off, opt) = listed?;
            let value = opt.as_bytes().unwrap_or_default();
            if opt.code == OptionCode::IfTsresol {
                let [b] = value else {
                    return Err(self.ctx.corrupt(
                        opt_off,
                        format!("if_tsresol option of length {}, expected 1", value.len()),
                    ));
                };
                iface.tsresol = TsResol::from_option(*b);
            } else if opt.code == OptionCode::IfTsoffset {
                // pcap-parser decodes if_tsoffset little-endian whatever
                // the section's byte order: decode it here.
                let (Some(v), 8) = (self.endian.u64(value, 0), value.len()) else {
                    return Err(self.ctx.corrupt(
                        opt_off,
                        format!("if_tsoffset option of length {}, expected 8", value.len()),
                    ));
                };
                iface.tsoffset_s = v as i64;
            }
        }
        self.interfaces.push(iface);
        Ok(())
    }

    /// The options pcap-parser read from the option list at `at` of the
    /// block at `off`, with their file offsets, up to `opt_endofopt` or the
    /// end of the list; last an error if the list runs past the end of its
    /// block (the crate just stops at an option it cannot read).
    fn options<'o>(
        &self,
        off: usize,
        block: &[u8],
        at: usize,
        options: &'o [PcapNGOption<'o>],
    ) -> Vec<Result<(usize, &'o PcapNGOption<'o>), CaptureError>> {
        let mut listed = Vec::new();
        let mut pos = at;
        for opt in options {
            if opt.code == OptionCode::EndOfOpt {
                return listed;
            }
            listed.push(Ok((off + pos, opt)));
            // Values are padded to 32 bits.
            pos += 4 + usize::from(opt.len).next_multiple_of(4);
        }
        // The trailing length ends the list.
        if pos + 4 >= block.len() {
            return listed;
        }
        let e = self.endian;
        let (Some(code), Some(len)) = (e.u16(block, pos), e.u16(block, pos + 2)) else {
            listed.push(Err(self.ctx.corrupt(off + pos, "truncated option header")));
            return listed;
        };
        // An `opt_endofopt` ends the list whatever its length says.
        if code != OptionCode::EndOfOpt.0 {
            listed.push(Err(self.ctx.corrupt(
                off + pos,
                format!("option {code} of length {len} runs past the end of its block"),
            )));
        }
        listed
    }

    /// Extracts the packet of an Enhanced Packet Block.
    pub(super) fn enhanced_packet<'b>(
        &self,
        off: usize,
        block: &Block<'b>,
    ) -> Result<RawPacket<'b>, CaptureError> {
        let epb = self.read(block.bytes, epb_le, epb_be);
        let Ok(epb) = epb else {
            // Refused: too short, or the captured length (at 12 in the
            // body) exceeds the block.
            if block.bytes.len() < EPB_MIN_LEN {
                return Err(self.ctx.corrupt(off, "enhanced packet block too short"));
            }
            let cap = self.endian.u32(block.body, 12).unwrap_or_default();
            return Err(self.cap_exceeds(off, cap, block.bytes.len() - EPB_MIN_LEN));
        };
        Ok(RawPacket {
            interface: data_len_of(epb.if_id),
            ts: Some((u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low)),
            // The data without its padding.
            data: epb.data.get(..data_len_of(epb.caplen)).unwrap_or(epb.data),
            data_off: off + PACKET_DATA_AT,
            orig_len: epb.origlen,
        })
    }

    /// Extracts the packet of an obsolete Packet Block (whose `body`
    /// pcap-parser frames but does not read): interface (16 bits), drops
    /// (16 bits), timestamp high and low, captured and original length,
    /// then the data at byte 20.
    pub(super) fn obsolete_packet<'b>(
        &self,
        off: usize,
        body: &'b [u8],
    ) -> Result<RawPacket<'b>, CaptureError> {
        let e = self.endian;
        let (Some(interface), Some(hi), Some(lo), Some(cap), Some(orig_len)) = (
            e.u16(body, 0),
            e.u32(body, 4),
            e.u32(body, 8),
            e.u32(body, 12),
            e.u32(body, 16),
        ) else {
            return Err(self.ctx.corrupt(off, "packet block too short"));
        };
        // The data follows the 20 bytes of fields.
        let start = 20usize;
        let data = usize::try_from(cap)
            .ok()
            .and_then(|n| start.checked_add(n))
            .and_then(|end| body.get(start..end))
            .ok_or_else(|| self.cap_exceeds(off, cap, body.len() - start))?;
        Ok(RawPacket {
            interface: usize::from(interface),
            ts: Some((u64::from(hi) << 32) | u64::from(lo)),
            data,
            data_off: off + PACKET_DATA_AT,
            orig_len,
        })
    }

    /// The error for a packet block whose captured length `cap` exceeds the
    /// `room` for packet data in the block.
    fn cap_exceeds(&self, off: usize, cap: u32, room: usize) -> CaptureError {
        self.ctx.corrupt(
            off,
            format!("captured length {cap} exceeds the block ({room} bytes of packet data)"),
        )
    }

    /// Extracts the packet of a Simple Packet Block (always interface 0; its
    /// captured length is the smallest of the original length, the room in
    /// the block and the interface's snap length).
    pub(super) fn simple_packet<'b>(
        &self,
        off: usize,
        block: &'b [u8],
    ) -> Result<RawPacket<'b>, CaptureError> {
        let spb = self
            .read(block, spb_le, spb_be)
            .map_err(|_| self.ctx.corrupt(off, "simple packet block too short"))?;
        let mut cap = data_len_of(spb.origlen);
        if let Some(iface) = self.interfaces.first()
            && iface.snaplen != 0
        {
            cap = cap.min(data_len_of(iface.snaplen));
        }
        let data = spb.data.get(..cap).unwrap_or(spb.data);
        Ok(RawPacket {
            interface: 0,
            ts: None,
            data,
            data_off: off + SPB_DATA_AT,
            orig_len: spb.origlen,
        })
    }

    /// Normalises a packet and appends it to the frames.
    pub(super) fn push(&mut self, off: usize, pkt: &RawPacket<'_>) -> Result<(), CaptureError> {
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

/// A length field as `usize` (saturating where `usize` is narrower than
/// 32 bits, so the bounds checks that follow fail cleanly).
pub(super) fn data_len_of(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}
