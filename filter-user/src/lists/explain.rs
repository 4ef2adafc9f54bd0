//! The lists as the data path sees them: the tables built from them
//! ([`build_tables`], for [`crate::dataplane::tables::Tables`]) and
//! [`explain`], the same matching rules spelt out for one address (for
//! `flowfilter check`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::CAT_ALLOW;

use crate::dataplane::tables::{TableError, Tables};
use crate::lists::{Cidr, Lists};

/// Build the tables of one generation from the lists.
pub fn build_tables(lists: &Lists) -> Result<Tables, TableError> {
    let v4: Vec<(u8, &[(Ipv4Addr, u8)])> = lists
        .categories
        .iter()
        .map(|c| (c.id, c.list.v4.as_slice()))
        .collect();
    let v6: Vec<(u8, &[(Ipv6Addr, u8)])> = lists
        .categories
        .iter()
        .map(|c| (c.id, c.list.v6.as_slice()))
        .collect();
    Tables::build(&v4, &lists.allow.v4, &v6, &lists.allow.v6)
}

/// A category and the prefix of it that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Category id ([`CAT_ALLOW`] for the allowlist).
    pub category: u8,
    /// Category name (`allow` for the allowlist).
    pub name: String,
    /// The matching prefix (host bits clear).
    pub prefix: Cidr,
}

/// How an address is classified, for `flowfilter check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// What decides: the allowlist's longest matching prefix if any, else the
    /// longest blocking prefix across categories (ties: lowest id).
    pub hit: Hit,
    /// When the allowlist decided: the blocking match it overrode, if any.
    pub overridden: Option<Hit>,
}

impl Match {
    /// Whether the allowlist decided.
    pub fn allowed(&self) -> bool {
        self.hit.category == CAT_ALLOW
    }
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.prefix)
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hit)?;
        if let Some(o) = &self.overridden {
            write!(f, ", overriding {o}")?;
        }
        Ok(())
    }
}

/// The longest prefix of `list` containing `addr`, as a normalised [`Cidr`].
fn longest(list: impl Iterator<Item = Cidr>, addr: IpAddr) -> Option<Cidr> {
    list.filter(|c| c.contains(addr))
        .max_by_key(|c| c.prefix_len())
        .map(Cidr::network)
}

/// Explain how `addr` is classified (the same rules as the tables); `None`
/// when no list holds it.
pub fn explain(lists: &Lists, addr: IpAddr) -> Option<Match> {
    let mut block: Option<Hit> = None;
    for c in &lists.categories {
        if let Some(prefix) = longest(c.list.cidrs(), addr)
            && block.as_ref().is_none_or(|b| {
                (prefix.prefix_len(), std::cmp::Reverse(c.id))
                    > (b.prefix.prefix_len(), std::cmp::Reverse(b.category))
            })
        {
            block = Some(Hit {
                category: c.id,
                name: c.name.clone(),
                prefix,
            });
        }
    }
    match longest(lists.allow.cidrs(), addr) {
        Some(prefix) => Some(Match {
            hit: Hit {
                category: CAT_ALLOW,
                name: crate::lists::ALLOW_NAME.to_owned(),
                prefix,
            },
            overridden: block,
        }),
        None => block.map(|hit| Match {
            hit,
            overridden: None,
        }),
    }
}

#[cfg(test)]
mod tests;
