//! `Cidr`: an IPv4 or IPv6 prefix, its parsing and its masks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::tables::{host_mask, prefix_mask};

/// An IPv4 or IPv6 prefix.
///
/// `FromStr` accepts `a.b.c.d/len`, `x::y/len` and bare addresses (full
/// length) and rejects host bits set beyond the prefix; [`Cidr::parse_normalized`]
/// clears them instead. `Display` writes `1.2.3.0/24` / `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Ord, PartialOrd)]
pub enum Cidr {
    /// An IPv4 prefix (`len` 0..=32).
    V4 {
        /// Network address.
        addr: Ipv4Addr,
        /// Prefix length.
        len: u8,
    },
    /// An IPv6 prefix (`len` 0..=128).
    V6 {
        /// Network address.
        addr: Ipv6Addr,
        /// Prefix length.
        len: u8,
    },
}

/// Why a string is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrError(pub String);

impl Cidr {
    /// The network address.
    pub fn addr(self) -> IpAddr {
        match self {
            Cidr::V4 { addr, .. } => IpAddr::V4(addr),
            Cidr::V6 { addr, .. } => IpAddr::V6(addr),
        }
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        match self {
            Cidr::V4 { len, .. } | Cidr::V6 { len, .. } => len,
        }
    }

    /// Address width in bits: 32 or 128.
    pub fn width(self) -> u8 {
        match self {
            Cidr::V4 { .. } => 32,
            Cidr::V6 { .. } => 128,
        }
    }

    /// The address as an integer in the low bits of a `u128`.
    pub(crate) fn bits(self) -> u128 {
        match self {
            Cidr::V4 { addr, .. } => u128::from(u32::from(addr)),
            Cidr::V6 { addr, .. } => u128::from(addr),
        }
    }

    /// The same prefix with the bits beyond the prefix length cleared.
    #[must_use]
    pub fn network(self) -> Cidr {
        let masked = self.bits() & prefix_mask(self.width(), self.prefix_len());
        match self {
            Cidr::V4 { len, .. } => Cidr::V4 {
                addr: Ipv4Addr::from(masked as u32),
                len,
            },
            Cidr::V6 { len, .. } => Cidr::V6 {
                addr: Ipv6Addr::from(masked),
                len,
            },
        }
    }

    /// Whether bits beyond the prefix length are set.
    pub fn has_host_bits(self) -> bool {
        self.bits() & host_mask(self.width(), self.prefix_len()) != 0
    }

    /// Whether `ip` lies inside this prefix (always false across families and
    /// for a prefix length longer than the address).
    pub fn contains(self, ip: IpAddr) -> bool {
        if self.prefix_len() > self.width() {
            return false;
        }
        let bits = match (self, ip) {
            (Cidr::V4 { .. }, IpAddr::V4(a)) => u128::from(u32::from(a)),
            (Cidr::V6 { .. }, IpAddr::V6(a)) => u128::from(a),
            _ => return false,
        };
        let mask = prefix_mask(self.width(), self.prefix_len());
        bits & mask == self.bits() & mask
    }

    /// Parse like `FromStr`, but clear host bits instead of rejecting them.
    pub fn parse_normalized(s: &str) -> Result<Cidr, CidrError> {
        parse_entry(s.trim()).map(Cidr::network).map_err(CidrError)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4 { addr, len } => write!(f, "{addr}/{len}"),
            Cidr::V6 { addr, len } => write!(f, "{addr}/{len}"),
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let cidr = parse_entry(s).map_err(CidrError)?;
        if cidr.has_host_bits() {
            return Err(CidrError(format!(
                "`{s}` has bits set beyond /{} (use {})",
                cidr.prefix_len(),
                cidr.network()
            )));
        }
        Ok(cidr)
    }
}

/// Parse one entry (already trimmed, comment removed). Host bits are kept.
pub(crate) fn parse_entry(s: &str) -> Result<Cidr, String> {
    if s.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{s}` holds more than one entry (write one address or CIDR per line)"
        ));
    }
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Err(format!("`{s}` is not an IPv4 or IPv6 address or CIDR"));
    };
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some("") => return Err(format!("`{s}` has no prefix length after `/`")),
        Some(l) if !l.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("`{s}`: `{l}` is not a prefix length"));
        }
        Some(l) => match l.parse::<u32>() {
            Ok(n) if n <= u32::from(max) => n as u8,
            _ => return Err(format!("prefix length {l} is longer than {max}")),
        },
    };
    Ok(match ip {
        IpAddr::V4(addr) => Cidr::V4 { addr, len },
        IpAddr::V6(addr) => Cidr::V6 { addr, len },
    })
}

/// Prefixes from text for tests, as the `(address, length)` pairs lists and
/// tables hold.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::Cidr;

    /// The IPv4 prefix `s`.
    pub(crate) fn v4(s: &str) -> (Ipv4Addr, u8) {
        match s.parse::<Cidr>().unwrap() {
            Cidr::V4 { addr, len } => (addr, len),
            Cidr::V6 { .. } => panic!("{s} is not IPv4"),
        }
    }

    /// The IPv6 prefix `s`.
    pub(crate) fn v6(s: &str) -> (Ipv6Addr, u8) {
        match s.parse::<Cidr>().unwrap() {
            Cidr::V6 { addr, len } => (addr, len),
            Cidr::V4 { .. } => panic!("{s} is not IPv6"),
        }
    }
}
