//! Link-layer normalisation: every supported link type becomes an Ethernet frame.

use super::{
    ETH_HLEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL, LINKTYPE_RAW, LINKTYPE_RAW_OLD,
    SYNTH_DST_MAC, SYNTH_SRC_MAC,
};

/// Why a packet could not be normalised.
#[derive(Debug)]
pub(super) enum LinkError {
    /// The link type is not supported.
    Unsupported(u32),
    /// The link-layer header is malformed.
    Bad(String),
}

/// Converts a packet of `linktype` to an Ethernet frame; returns the frame
/// and its adjusted original length.
pub(super) fn to_ethernet(
    linktype: u32,
    data: &[u8],
    orig_len: u32,
) -> Result<(Vec<u8>, u32), LinkError> {
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
