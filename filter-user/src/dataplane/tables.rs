//! The data-path tables built from prefixes by category
//! (`lists::build_tables` gives them the lists).
//!
//! Matching rules, the same for both families and for `lists::explain`:
//! - the longest prefix wins across categories;
//! - the same prefix in two categories belongs to the lower id;
//! - the allowlist overrides everything: every address inside any allow
//!   range gets [`CAT_ALLOW`], whatever the length of the blocking prefixes
//!   around or inside it.
//!
//! Both families go into one trie image (see [`filter_common::trie`]): a
//! 16-bit root per family and compressed 8-bit nodes in a pool of 64-byte
//! units. The rules above become plain longest-prefix match first:
//! blocking prefixes entirely inside an allow prefix are dropped and allow
//! prefixes are added with [`CAT_ALLOW`] (an allow prefix inside a blocking
//! one is longer, so it wins anyway). Then each node's children are painted
//! shortest prefix first, and children holding longer prefixes become nodes
//! of their own, built the same way with the painted category as their
//! default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::trie::{
    self, Entry, KIND_DENSE, KIND_LEAF, KIND_LEAF256, KIND_SPARSE, KIND_SPARSE_LEAF, ROOT_LEN,
    SPARSE_LEAF_RUNS, SPARSE_RUNS, TrieMem, Unit, kind, leaf, node,
};
use filter_common::{CAT_ALLOW, CAT_NONE, MAX_POOL_UNITS, MAX_PREFIXES};

/// Mask of the first `len` bits of a `width`-bit address, in the low `width`
/// bits of a `u128` (`len` beyond `width` means all bits).
pub fn prefix_mask(width: u8, len: u8) -> u128 {
    let all = width_mask(width);
    all & !host_mask(width, len)
}

/// Mask of the bits after the first `len` of a `width`-bit address.
pub fn host_mask(width: u8, len: u8) -> u128 {
    let host = u32::from(width.saturating_sub(len));
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

/// All `width` low bits set.
fn width_mask(width: u8) -> u128 {
    host_mask(width, 0)
}

/// Why the tables could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// More prefixes than a generation may hold.
    #[error(
        "the lists hold {needed} prefixes (both families, allowlist included) after merging; the limit is {max}"
    )]
    TooManyPrefixes {
        /// Prefixes to store.
        needed: usize,
        /// The limit.
        max: usize,
    },
    /// The nodes need more pool units than a generation may use.
    #[error(
        "the prefix tables need more than {max} nodes of 64 bytes ({} MiB); split or merge the lists",
        (u64::from(*max) * 64) >> 20
    )]
    TooManyUnits {
        /// The limit.
        max: u32,
    },
    /// A prefix length longer than the address.
    #[error("{addr}/{len}: prefix length longer than the address")]
    PrefixLength {
        /// The address.
        addr: IpAddr,
        /// The length.
        len: u8,
    },
    /// A blocking category id of 0 (none) or 255 (allowlist).
    #[error("category id {id} cannot hold blocking prefixes (0 means none, 255 is the allowlist)")]
    BadCategory {
        /// The id.
        id: u8,
    },
}

/// Nodes of each kind in a table image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// One-unit nodes with 32-bit entries.
    pub sparse: usize,
    /// One-unit nodes of categories.
    pub sparse_leaf: usize,
    /// Four-unit nodes of categories.
    pub leaf256: usize,
    /// Sixteen-unit nodes.
    pub dense: usize,
}

/// The prefix tables of one generation: both roots and the node pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// IPv4 root: one entry per value of the first 16 address bits.
    pub root4: Vec<Entry>,
    /// IPv4 prefixes stored: distinct blocking prefixes not inside the
    /// allowlist, plus allow prefixes not inside another allow prefix.
    pub v4_prefixes: usize,
    /// IPv6 root.
    pub root6: Vec<Entry>,
    /// IPv6 prefixes stored, likewise.
    pub v6_prefixes: usize,
    /// The node pool (index 0 first).
    pub units: Vec<Unit>,
    /// Nodes by kind.
    pub nodes: NodeCounts,
}

/// Check a blocking category id.
fn check_category(id: u8) -> Result<(), TableError> {
    if id == CAT_NONE || id == CAT_ALLOW {
        Err(TableError::BadCategory { id })
    } else {
        Ok(())
    }
}

/// A prefix as `(start, len)` bits with host bits cleared, checking the length.
fn prefix_bits(addr: IpAddr, len: u8) -> Result<(u128, u8), TableError> {
    let (bits, width) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    if len > width {
        return Err(TableError::PrefixLength { addr, len });
    }
    Ok((bits & prefix_mask(width, len), len))
}

/// Allow prefixes as disjoint `(start, end, len)`, sorted (prefixes inside
/// another are dropped).
fn allow_set(mut prefixes: Vec<(u128, u8)>, width: u8) -> Vec<(u128, u128, u8)> {
    prefixes.sort_unstable();
    let mut out: Vec<(u128, u128, u8)> = Vec::with_capacity(prefixes.len());
    for (start, len) in prefixes {
        if out.last().is_some_and(|&(_, end, _)| start <= end) {
            continue;
        }
        out.push((start, start | host_mask(width, len), len));
    }
    out
}

/// Whether `[start, end]` lies inside one range of a disjoint sorted set.
fn inside(set: &[(u128, u128, u8)], start: u128, end: u128) -> bool {
    let i = set.partition_point(|&(s, _, _)| s <= start);
    i > 0 && set[i - 1].1 >= end
}

/// One prefix to store: `(start, length, category)`.
type Prefix = (u128, u8, u8);

/// The allowlist and category rules turned into plain longest-prefix
/// entries, sorted by start then length.
fn resolve<A: Copy + Into<IpAddr>>(
    cats: &[(u8, &[(A, u8)])],
    allow: &[(A, u8)],
    width: u8,
) -> Result<Vec<Prefix>, TableError> {
    let mut allow_bits = Vec::new();
    for &(a, l) in allow {
        allow_bits.push(prefix_bits(a.into(), l)?);
    }
    let allow = allow_set(allow_bits, width);
    // (len, start, category), sorted: for the same prefix the lowest id first.
    let mut blocks: Vec<(u8, u128, u8)> = Vec::new();
    for &(cat, list) in cats {
        check_category(cat)?;
        blocks.reserve(list.len());
        for &(a, l) in list {
            let (start, len) = prefix_bits(a.into(), l)?;
            blocks.push((len, start, cat));
        }
    }
    blocks.sort_unstable();
    blocks.dedup_by_key(|&mut (len, start, _)| (len, start));
    if !allow.is_empty() {
        blocks.retain(|&(len, start, _)| !inside(&allow, start, start | host_mask(width, len)));
    }
    let mut out: Vec<Prefix> = blocks
        .into_iter()
        .map(|(l, s, c)| (s, l, c))
        .chain(allow.iter().map(|&(s, _, l)| (s, l, CAT_ALLOW)))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Builds the node pool.
struct Pool {
    units: Vec<Unit>,
    nodes: NodeCounts,
}

impl Pool {
    /// Room for `n` more units, or the limit's error.
    fn reserve(&mut self, n: usize) -> Result<u32, TableError> {
        let at = self.units.len();
        if at + n > MAX_POOL_UNITS as usize {
            return Err(TableError::TooManyUnits {
                max: MAX_POOL_UNITS,
            });
        }
        self.units.resize(at + n, Unit::default());
        Ok(at as u32)
    }

    /// Store a node's 256 children in the smallest form that holds them;
    /// all-equal categories need no node at all.
    fn emit(&mut self, children: &[Entry; 256]) -> Result<Entry, TableError> {
        let all_leaf = children.iter().all(|&e| kind(e) == KIND_LEAF);
        if all_leaf && children.iter().all(|&e| e == children[0]) {
            return Ok(children[0]);
        }
        let mut bits = [0u64; 4];
        let mut runs: Vec<Entry> = Vec::with_capacity(8);
        for (i, &e) in children.iter().enumerate() {
            if i == 0 || e != children[i - 1] {
                bits[i / 64] |= 1 << (i % 64);
                runs.push(e);
            }
        }
        let with_bits = |u: &mut Unit| u.w[..4].copy_from_slice(&bits);
        if all_leaf && runs.len() <= SPARSE_LEAF_RUNS {
            let at = self.reserve(1)?;
            let u = &mut self.units[at as usize];
            with_bits(u);
            for (r, &e) in runs.iter().enumerate() {
                u.w[4 + r / 8] |= u64::from(e as u8) << ((r % 8) * 8);
            }
            self.nodes.sparse_leaf += 1;
            return Ok(node(KIND_SPARSE_LEAF, at));
        }
        if all_leaf {
            let at = self.reserve(4)?;
            for (i, &e) in children.iter().enumerate() {
                self.units[at as usize + i / 64].w[(i % 64) / 8] |=
                    u64::from(e as u8) << ((i % 8) * 8);
            }
            self.nodes.leaf256 += 1;
            return Ok(node(KIND_LEAF256, at));
        }
        if runs.len() <= SPARSE_RUNS {
            let at = self.reserve(1)?;
            let u = &mut self.units[at as usize];
            with_bits(u);
            for (r, &e) in runs.iter().enumerate() {
                u.w[4 + r / 2] |= u64::from(e) << ((r % 2) * 32);
            }
            self.nodes.sparse += 1;
            return Ok(node(KIND_SPARSE, at));
        }
        let at = self.reserve(16)?;
        for (i, &e) in children.iter().enumerate() {
            self.units[at as usize + i / 16].w[(i % 16) / 2] |= u64::from(e) << ((i % 2) * 32);
        }
        self.nodes.dense += 1;
        Ok(node(KIND_DENSE, at))
    }

    /// The entry for the node whose first `depth` bits are fixed (those of
    /// `entries`, which all lie inside it and are longer than `depth`),
    /// over `default` (the category of the covering prefixes).
    fn build_node(
        &mut self,
        entries: &[Prefix],
        depth: u32,
        default: u8,
        width: u32,
    ) -> Result<Entry, TableError> {
        let mut children = [leaf(default); 256];
        let shift = width - depth - 8;
        let child = |start: u128| ((start >> shift) & 0xff) as usize;
        let mut short: Vec<&Prefix> = entries
            .iter()
            .filter(|e| u32::from(e.1) <= depth + 8)
            .collect();
        short.sort_by_key(|e| e.1);
        for &&(start, len, cat) in &short {
            let lo = child(start);
            let n = 1usize << (depth + 8 - u32::from(len));
            children[lo..lo + n].fill(leaf(cat));
        }
        let long: Vec<Prefix> = entries
            .iter()
            .filter(|e| u32::from(e.1) > depth + 8)
            .copied()
            .collect();
        for group in long.chunk_by(|a, b| child(a.0) == child(b.0)) {
            let c = child(group[0].0);
            children[c] = self.build_node(group, depth + 8, children[c] as u8, width)?;
        }
        self.emit(&children)
    }

    /// A family's root over `entries` (sorted by start, then length).
    fn build_root(&mut self, entries: &[Prefix], width: u32) -> Result<Vec<Entry>, TableError> {
        let mut root = vec![leaf(CAT_NONE); ROOT_LEN as usize];
        let shift = width - 16;
        let top = |start: u128| (start >> shift) as usize & (ROOT_LEN as usize - 1);
        let mut short: Vec<&Prefix> = entries.iter().filter(|e| e.1 <= 16).collect();
        short.sort_by_key(|e| e.1);
        for &&(start, len, cat) in &short {
            let lo = top(start);
            let n = 1usize << (16 - len);
            root[lo..lo + n].fill(leaf(cat));
        }
        let long: Vec<Prefix> = entries.iter().filter(|e| e.1 > 16).copied().collect();
        for group in long.chunk_by(|a, b| top(a.0) == top(b.0)) {
            let t = top(group[0].0);
            root[t] = self.build_node(group, 16, root[t] as u8, width)?;
        }
        Ok(root)
    }
}

/// The pool and roots, read as the XDP program reads its maps.
struct Image<'a>(&'a Tables);

impl TrieMem for Image<'_> {
    fn root(&self, index: u32) -> Entry {
        let i = (index % (2 * ROOT_LEN)) as usize;
        if i < ROOT_LEN as usize {
            self.0.root4[i]
        } else {
            self.0.root6[i - ROOT_LEN as usize]
        }
    }

    fn unit(&self, _generation: u32, index: u32) -> Option<&Unit> {
        self.0.units.get(index as usize)
    }
}

impl Tables {
    /// Build both families from `(category id, prefixes)` pairs and the
    /// allowlists. Host bits in the input are ignored.
    pub fn build(
        v4: &[(u8, &[(Ipv4Addr, u8)])],
        allow4: &[(Ipv4Addr, u8)],
        v6: &[(u8, &[(Ipv6Addr, u8)])],
        allow6: &[(Ipv6Addr, u8)],
    ) -> Result<Tables, TableError> {
        let e4 = resolve(v4, allow4, 32)?;
        let e6 = resolve(v6, allow6, 128)?;
        let needed = e4.len() + e6.len();
        if needed > MAX_PREFIXES {
            return Err(TableError::TooManyPrefixes {
                needed,
                max: MAX_PREFIXES,
            });
        }
        let mut pool = Pool {
            units: Vec::new(),
            nodes: NodeCounts::default(),
        };
        let root4 = pool.build_root(&e4, 32)?;
        let root6 = pool.build_root(&e6, 128)?;
        Ok(Tables {
            root4,
            v4_prefixes: e4.len(),
            root6,
            v6_prefixes: e6.len(),
            units: pool.units,
            nodes: pool.nodes,
        })
    }

    /// IPv4 only (tests, tools).
    pub fn build_v4(
        cats: &[(u8, &[(Ipv4Addr, u8)])],
        allow: &[(Ipv4Addr, u8)],
    ) -> Result<Tables, TableError> {
        Tables::build(cats, allow, &[], &[])
    }

    /// IPv6 only (tests, tools).
    pub fn build_v6(
        cats: &[(u8, &[(Ipv6Addr, u8)])],
        allow: &[(Ipv6Addr, u8)],
    ) -> Result<Tables, TableError> {
        Tables::build(&[], &[], cats, allow)
    }

    /// The category of `addr`, by the same walk as the XDP program (0: none).
    pub fn lookup(&self, addr: IpAddr) -> u8 {
        let (bytes, v6) = match addr {
            IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), false),
            IpAddr::V6(a) => (a.octets(), true),
        };
        trie::lookup(&Image(self), 0, &bytes, v6)
    }

    /// Prefixes stored, both families.
    pub fn prefix_count(&self) -> usize {
        self.v4_prefixes + self.v6_prefixes
    }

    /// Bytes of one generation: both roots and the pool.
    pub fn memory_bytes(&self) -> usize {
        (self.root4.len() + self.root6.len()) * 4 + self.units.len() * std::mem::size_of::<Unit>()
    }
}

#[cfg(test)]
mod tests;
