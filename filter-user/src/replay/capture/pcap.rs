//! Classic pcap: the packet records after the file header, read by
//! pcap-parser.

use pcap_parser::{PcapHeader, parse_pcap_frame, parse_pcap_frame_be};

use super::{CaptureError, Ctx, Endian, Frame, PCAP_RECORD_HEADER_LEN, to_ethernet};

/// Reads the records of a classic pcap file: `bytes` is the whole file,
/// `records` what follows its `header`.
pub(super) fn parse_pcap(
    ctx: Ctx<'_>,
    bytes: &[u8],
    header: &PcapHeader,
    records: &[u8],
) -> Result<Vec<Frame>, CaptureError> {
    let endian = if header.is_bigendian() {
        Endian::Big
    } else {
        Endian::Little
    };
    let parse_record = match endian {
        Endian::Little => parse_pcap_frame,
        Endian::Big => parse_pcap_frame_be,
    };
    // Nanoseconds per unit of the sub-second timestamp field.
    let frac_ns: u64 = if header.is_nanosecond_precision() {
        1
    } else {
        1_000
    };
    // Low 16 bits: link type; bits 16..26 reserved (must be zero); the top
    // bits describe an FCS, which is left in place.
    let network = header.network.0.cast_unsigned();
    let linktype = if network & 0x03FF_0000 == 0 {
        network & 0xFFFF
    } else {
        network
    };

    let mut frames = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let off = bytes.len() - rest.len();
        let (next, record) =
            parse_record(rest).map_err(|_| record_error(ctx, endian, off, rest))?;
        let ts_ns = u64::from(record.ts_sec)
            .checked_mul(1_000_000_000)
            .and_then(|s| {
                u64::from(record.ts_usec)
                    .checked_mul(frac_ns)?
                    .checked_add(s)
            })
            .ok_or_else(|| ctx.corrupt(off, "timestamp out of range"))?;
        let (data, orig_len) = to_ethernet(linktype, record.data, record.origlen)
            .map_err(|e| ctx.link(off + PCAP_RECORD_HEADER_LEN, e))?;
        frames.push(Frame {
            ts_ns,
            data,
            orig_len,
        });
        rest = next;
    }
    Ok(frames)
}

/// Why pcap-parser could not read the record at `off` (`rest`: the file
/// from there on): its header or its data runs past the end of the file.
fn record_error(ctx: Ctx<'_>, endian: Endian, off: usize, rest: &[u8]) -> CaptureError {
    let left = rest.len();
    match endian.u32(rest, 8) {
        Some(incl_len) if left >= PCAP_RECORD_HEADER_LEN => ctx.corrupt(
            off,
            format!(
                "record of {incl_len} bytes runs past the end of the file ({} bytes left after the record header)",
                left - PCAP_RECORD_HEADER_LEN
            ),
        ),
        _ => ctx.corrupt(
            off,
            format!("truncated record header ({left} of {PCAP_RECORD_HEADER_LEN} bytes left)"),
        ),
    }
}
