//! pcapng: sections, interfaces and the packet blocks (EPB, SPB, PB).

use super::{
    BLOCK_EPB, BLOCK_IDB, BLOCK_MIN_LEN, BLOCK_PB, BLOCK_SPB, CaptureError, Ctx, Endian, Frame,
    OPT_ENDOFOPT, OPT_IF_TSOFFSET, OPT_IF_TSRESOL, PCAPNG_BYTE_ORDER_MAGIC, PCAPNG_SHB_TYPE,
    data_len_of, to_ethernet,
};

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

/// Parses a pcapng file (whose first four bytes are the SHB block type).
pub(super) fn parse_pcapng(ctx: Ctx<'_>, bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
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
            p.endian = section_endian(ctx, bytes, off)?;
        }
        let (block_type, end) = block_at(ctx, p.endian, bytes, off)?;
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

/// The byte order of the section whose SHB starts at `off`: given right
/// after the block length.
fn section_endian(ctx: Ctx<'_>, bytes: &[u8], off: usize) -> Result<Endian, CaptureError> {
    // The byte order of a section is given by its SHB, right after
    // the block length.
    let bom_off = off + 8;
    let endian = if Endian::Little.u32(bytes, bom_off) == Some(PCAPNG_BYTE_ORDER_MAGIC) {
        Endian::Little
    } else if Endian::Big.u32(bytes, bom_off) == Some(PCAPNG_BYTE_ORDER_MAGIC) {
        Endian::Big
    } else {
        return Err(ctx.corrupt(bom_off, "section header without a valid byte-order magic"));
    };
    Ok(endian)
}

/// The type and end offset of the block at `off`, its lengths checked
/// (at least the minimum, a multiple of 4, inside the file, the trailing
/// copy equal to the leading one).
fn block_at(
    ctx: Ctx<'_>,
    endian: Endian,
    bytes: &[u8],
    off: usize,
) -> Result<(u32, usize), CaptureError> {
    let left = bytes.len() - off;
    let (Some(block_type), Some(len)) = (endian.u32(bytes, off), endian.u32(bytes, off + 4)) else {
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
    Ok((block_type, end))
}

impl Pcapng<'_> {
    /// Handles a Section Header Block body (starting at the byte-order
    /// magic): checks the version and starts a new section.
    pub(super) fn section_header(&mut self, off: usize, body: &[u8]) -> Result<(), CaptureError> {
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
    pub(super) fn interface_description(
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
    pub(super) fn enhanced_packet<'b>(
        &self,
        off: usize,
        body_off: usize,
        body: &'b [u8],
    ) -> Result<RawPacket<'b>, CaptureError> {
        let ifid = self.endian.u32(body, 0).map(data_len_of);
        self.timed_packet(off, body_off, body, ifid, "enhanced packet block too short")
    }

    /// Extracts the packet of an obsolete Packet Block.
    pub(super) fn obsolete_packet<'b>(
        &self,
        off: usize,
        body_off: usize,
        body: &'b [u8],
    ) -> Result<RawPacket<'b>, CaptureError> {
        let ifid = self.endian.u16(body, 0).map(usize::from);
        self.timed_packet(off, body_off, body, ifid, "packet block too short")
    }

    /// The packet of a block laid out as both packet blocks are: interface
    /// (`interface`, read by the caller), timestamp high and low, captured
    /// and original length, then the data at byte 20. `short`: the error
    /// when the block cannot hold that.
    fn timed_packet<'b>(
        &self,
        off: usize,
        body_off: usize,
        body: &'b [u8],
        interface: Option<usize>,
        short: &str,
    ) -> Result<RawPacket<'b>, CaptureError> {
        let e = self.endian;
        let (Some(interface), Some(hi), Some(lo), Some(cap), Some(orig_len)) = (
            interface,
            e.u32(body, 4),
            e.u32(body, 8),
            e.u32(body, 12),
            e.u32(body, 16),
        ) else {
            return Err(self.ctx.corrupt(off, short));
        };
        let ts = (u64::from(hi) << 32) | u64::from(lo);
        let data = self.packet_data(off, body, 20, cap)?;
        Ok(RawPacket {
            interface,
            ts: Some(ts),
            data,
            data_off: body_off + 20,
            orig_len,
        })
    }

    /// Extracts the packet of a Simple Packet Block (always interface 0; its
    /// captured length is the smallest of the original length, the room in
    /// the block and the interface's snap length).
    pub(super) fn simple_packet<'b>(
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
    pub(super) fn packet_data<'b>(
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

/// Calls `f(offset, code, value)` for every option of an option list that
/// starts at file offset `base`, up to `opt_endofopt` or the end of the
/// list.
pub(super) fn for_each_option<'a>(
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
