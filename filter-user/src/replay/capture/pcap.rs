//! Classic pcap: the file header and the packet records.

use super::{
    CaptureError, Ctx, Endian, Frame, PCAP_FILE_HEADER_LEN, PCAP_RECORD_HEADER_LEN, to_ethernet,
};

/// Parses a classic pcap file; `frac_ns` is the number of nanoseconds per
/// unit of the sub-second timestamp field (1000 for microseconds, 1 for
/// nanoseconds).
pub(super) fn parse_pcap(
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
pub(super) fn data_len_of(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}
