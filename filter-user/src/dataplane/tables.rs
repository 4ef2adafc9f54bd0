//! The data-path tables built from [`Lists`].
//!
//! Matching rules, the same for both families and for [`explain`]:
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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::trie::{
    self, Entry, KIND_DENSE, KIND_LEAF, KIND_LEAF256, KIND_SPARSE, KIND_SPARSE_LEAF, ROOT_LEN,
    SPARSE_LEAF_RUNS, SPARSE_RUNS, TrieMem, Unit, kind, leaf, node,
};
use filter_common::{CAT_ALLOW, CAT_NONE, MAX_POOL_UNITS, MAX_PREFIXES};

use crate::lists::{Cidr, Lists, host_mask, prefix_mask};

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
    /// IPv6 root.
    pub root6: Vec<Entry>,
    /// The node pool (index 0 first).
    pub units: Vec<Unit>,
    /// IPv4 prefixes stored: distinct blocking prefixes not inside the
    /// allowlist, plus allow prefixes not inside another allow prefix.
    pub v4_prefixes: usize,
    /// IPv6 prefixes stored, likewise.
    pub v6_prefixes: usize,
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
fn resolve(
    cats: impl Iterator<Item = (u8, Vec<(IpAddr, u8)>)>,
    allow: impl Iterator<Item = (IpAddr, u8)>,
    width: u8,
) -> Result<Vec<Prefix>, TableError> {
    let mut allow_bits = Vec::new();
    for (a, l) in allow {
        allow_bits.push(prefix_bits(a, l)?);
    }
    let allow = allow_set(allow_bits, width);
    // (len, start, category), sorted: for the same prefix the lowest id first.
    let mut blocks: Vec<(u8, u128, u8)> = Vec::new();
    for (cat, list) in cats {
        check_category(cat)?;
        blocks.reserve(list.len());
        for (a, l) in list {
            let (start, len) = prefix_bits(a, l)?;
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
        let e4 = resolve(
            v4.iter()
                .map(|(c, l)| (*c, l.iter().map(|&(a, n)| (IpAddr::V4(a), n)).collect())),
            allow4.iter().map(|&(a, n)| (IpAddr::V4(a), n)),
            32,
        )?;
        let e6 = resolve(
            v6.iter()
                .map(|(c, l)| (*c, l.iter().map(|&(a, n)| (IpAddr::V6(a), n)).collect())),
            allow6.iter().map(|&(a, n)| (IpAddr::V6(a), n)),
            128,
        )?;
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
            root6,
            units: pool.units,
            v4_prefixes: e4.len(),
            v6_prefixes: e6.len(),
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
mod tests {
    use super::*;
    use crate::lists::{ParsedList, parse_list};

    /// xorshift64*: small, deterministic.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn p4(s: &str) -> (Ipv4Addr, u8) {
        match s.parse::<Cidr>().unwrap() {
            Cidr::V4 { addr, len } => (addr, len),
            Cidr::V6 { .. } => panic!("{s}"),
        }
    }

    fn p6(s: &str) -> (Ipv6Addr, u8) {
        match s.parse::<Cidr>().unwrap() {
            Cidr::V6 { addr, len } => (addr, len),
            Cidr::V4 { .. } => panic!("{s}"),
        }
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Brute-force reference: every prefix in a set per length; the allowlist
    /// wins, then the longest prefix, then the lowest id.
    struct Reference {
        width: u8,
        allow: Vec<std::collections::HashSet<u128>>,
        block: Vec<std::collections::HashMap<u128, u8>>,
    }

    impl Reference {
        fn new(cats: &[(u8, Vec<(u128, u8)>)], allow: &[(u128, u8)], width: u8) -> Reference {
            let n = usize::from(width) + 1;
            let mut r = Reference {
                width,
                allow: vec![std::collections::HashSet::new(); n],
                block: vec![std::collections::HashMap::new(); n],
            };
            for &(a, l) in allow {
                r.allow[usize::from(l)].insert(a & prefix_mask(width, l));
            }
            for (cat, list) in cats {
                for &(a, l) in list {
                    let c = r.block[usize::from(l)]
                        .entry(a & prefix_mask(width, l))
                        .or_insert(*cat);
                    *c = (*c).min(*cat);
                }
            }
            r
        }

        fn lookup(&self, a: u128) -> u8 {
            let lens = (0..=self.width).rev();
            if lens
                .clone()
                .any(|l| self.allow[usize::from(l)].contains(&(a & prefix_mask(self.width, l))))
            {
                return CAT_ALLOW;
            }
            lens.filter_map(|l| self.block[usize::from(l)].get(&(a & prefix_mask(self.width, l))))
                .copied()
                .next()
                .unwrap_or(CAT_NONE)
        }
    }

    /// A random prefix, its length drawn from `lens` (host bits left set: the
    /// build must ignore them). Addresses cluster in a few /8s so prefixes nest.
    fn random_v4(rng: &mut Rng, lens: std::ops::RangeInclusive<u8>) -> (u32, u8) {
        let span = u64::from(lens.end() - lens.start()) + 1;
        let len = lens.start() + rng.below(span) as u8;
        let hi = [10u32, 11, 172, 192][rng.below(4) as usize] << 24;
        let addr = if rng.below(4) == 0 {
            rng.next() as u32
        } else {
            hi | (rng.next() as u32 & 0x00ff_ffff)
        };
        (addr, len)
    }

    fn check_v4(
        cats: &[(u8, Vec<(u32, u8)>)],
        allow: &[(u32, u8)],
        rng: &mut Rng,
        random: usize,
    ) -> Tables {
        let typed: Vec<(u8, Vec<(Ipv4Addr, u8)>)> = cats
            .iter()
            .map(|(c, l)| (*c, l.iter().map(|&(a, l)| (Ipv4Addr::from(a), l)).collect()))
            .collect();
        let slices: Vec<(u8, &[(Ipv4Addr, u8)])> =
            typed.iter().map(|(c, l)| (*c, l.as_slice())).collect();
        let allow_typed: Vec<(Ipv4Addr, u8)> =
            allow.iter().map(|&(a, l)| (Ipv4Addr::from(a), l)).collect();
        let t = Tables::build_v4(&slices, &allow_typed).unwrap();

        let wide: Vec<(u8, Vec<(u128, u8)>)> = cats
            .iter()
            .map(|(c, l)| (*c, l.iter().map(|&(a, l)| (u128::from(a), l)).collect()))
            .collect();
        let allow_wide: Vec<(u128, u8)> = allow.iter().map(|&(a, l)| (u128::from(a), l)).collect();
        let reference = Reference::new(&wide, &allow_wide, 32);
        let check = |a: u32| {
            assert_eq!(
                t.lookup(Ipv4Addr::from(a).into()),
                reference.lookup(u128::from(a)),
                "{}",
                Ipv4Addr::from(a)
            );
        };
        let mut edges = Vec::new();
        for &(a, l) in cats.iter().flat_map(|(_, l)| l).chain(allow) {
            let first = a & prefix_mask(32, l) as u32;
            let last = first | host_mask(32, l) as u32;
            edges.extend([first, last, first.wrapping_sub(1), last.wrapping_add(1)]);
        }
        for a in edges {
            check(a);
        }
        for _ in 0..random {
            check(random_v4(rng, 32..=32).0);
        }
        t
    }

    #[test]
    fn v4_random_property() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3 {
            let mut cats = Vec::new();
            for cat in [1u8, 2, 3, 7, 254] {
                // Few very short prefixes (each paints much of the table).
                let list: Vec<(u32, u8)> = (0..600)
                    .map(|_| {
                        if rng.below(20) == 0 {
                            random_v4(&mut rng, 0..=32)
                        } else {
                            random_v4(&mut rng, 9..=32)
                        }
                    })
                    .collect();
                cats.push((cat, list));
            }
            // Shared prefixes between categories.
            let shared: Vec<(u32, u8)> = cats[4].1[..50].to_vec();
            cats[0].1.extend(&shared);
            let allow: Vec<(u32, u8)> = (0..150).map(|_| random_v4(&mut rng, 12..=32)).collect();
            let t = check_v4(&cats, &allow, &mut rng, 20_000);
            assert!(!t.units.is_empty());
            assert!(t.prefix_count() > 0);
            assert_eq!(t.memory_bytes(), 2 * 65536 * 4 + t.units.len() * 64);
        }
    }

    /// Many host addresses and long prefixes packed into few /16s and /24s:
    /// every node form (sparse, sparse-leaf, 256 bytes, dense) appears and
    /// each answers like the reference.
    #[test]
    fn v4_hosts_and_every_node_form() {
        let mut rng = Rng(99);
        let mut hosts: Vec<(u32, u8)> = Vec::new();
        // Dense /24s: 40 hosts each in 10.0.0..9.x.
        for b in 0..10u32 {
            for _ in 0..40 {
                hosts.push((0x0a00_0000 | (b << 8) | (rng.next() as u32 & 0xff), 32));
            }
        }
        // Sparse /24s: one or two hosts in each of 3000 /24s of 11.0/16..11.11/16.
        for i in 0..3000u32 {
            hosts.push((0x0b00_0000 | (i << 8) | (rng.next() as u32 & 0xff), 32));
            if i % 3 == 0 {
                hosts.push((0x0b00_0000 | (i << 8) | (rng.next() as u32 & 0xff), 31));
            }
        }
        let mixed: Vec<(u32, u8)> = (0..2000).map(|_| random_v4(&mut rng, 17..=32)).collect();
        let cats = vec![(1u8, hosts), (2u8, mixed), (3, vec![(0x0a00_0000, 8)])];
        let t = check_v4(&cats, &[(0x0a00_0500, 24)], &mut rng, 20_000);
        let n = t.nodes;
        assert!(
            n.sparse > 0 && n.sparse_leaf > 0 && n.leaf256 > 0 && n.dense > 0,
            "{n:?}"
        );
        // Exhaustively, the dense /24s.
        let wide: Vec<(u8, Vec<(u128, u8)>)> = cats
            .iter()
            .map(|(c, l)| (*c, l.iter().map(|&(a, l)| (u128::from(a), l)).collect()))
            .collect();
        let reference = Reference::new(&wide, &[(0x0a00_0500, 24)], 32);
        for a in 0x0a00_0000u32..0x0a00_0c00 {
            assert_eq!(
                t.lookup(Ipv4Addr::from(a).into()),
                reference.lookup(u128::from(a)),
                "{}",
                Ipv4Addr::from(a)
            );
        }
    }

    #[test]
    fn v4_long_prefixes_only() {
        let mut rng = Rng(42);
        let cats: Vec<(u8, Vec<(u32, u8)>)> = (1..=4u8)
            .map(|c| {
                let list = (0..800)
                    .map(|_| {
                        let (a, l) = random_v4(&mut rng, 25..=32);
                        // Crowd them into few /24s so they nest and overlap.
                        ((a & 0xffff_f0ff) | 0x0a00_0000, l)
                    })
                    .collect();
                (c, list)
            })
            .collect();
        let allow: Vec<(u32, u8)> = (0..100)
            .map(|_| {
                let (a, l) = random_v4(&mut rng, 20..=32);
                ((a & 0xffff_f0ff) | 0x0a00_0000, l)
            })
            .collect();
        check_v4(&cats, &allow, &mut rng, 5000);
    }

    #[test]
    fn v4_nested_categories() {
        let cats: [(u8, &[(Ipv4Addr, u8)]); 4] = [
            (3, &[p4("10.0.0.0/8"), p4("10.1.1.16/28")]),
            (
                1,
                &[p4("10.1.0.0/16"), p4("10.1.1.17/32"), p4("20.0.0.0/8")],
            ),
            (
                2,
                &[p4("10.1.1.0/24"), p4("20.0.0.0/8"), p4("10.1.1.16/28")],
            ),
            (5, &[p4("0.0.0.0/0")]),
        ];
        let allow = [p4("10.1.1.18/31"), p4("10.2.0.0/16"), p4("10.1.1.16/32")];
        let t = Tables::build_v4(&cats, &allow).unwrap();
        for (a, want) in [
            ("1.1.1.1", 5),
            ("10.9.9.9", 3),
            ("10.1.9.9", 1),
            ("10.1.1.1", 2),
            ("10.1.1.16", CAT_ALLOW),
            ("10.1.1.17", 1),
            ("10.1.1.18", CAT_ALLOW),
            ("10.1.1.19", CAT_ALLOW),
            // The same /28 in categories 2 and 3: the lower id wins.
            ("10.1.1.20", 2),
            ("10.1.1.31", 2),
            ("10.1.1.32", 2),
            ("10.2.3.4", CAT_ALLOW),
            // The same /8 in categories 1 and 2.
            ("20.1.2.3", 1),
            ("255.255.255.255", 5),
        ] {
            assert_eq!(t.lookup(ip4(a).into()), want, "{a}");
        }
        // Two nodes: 10.1/16 (sparse: /24 runs) and 10.1.1/24 (sparse leaf).
        assert_eq!(
            t.nodes,
            NodeCounts {
                sparse: 1,
                sparse_leaf: 1,
                ..NodeCounts::default()
            }
        );
        assert_eq!(t.units.len(), 2);
        assert_eq!(kind(t.root4[0x0a01]), KIND_SPARSE);
        assert_eq!(t.root4[0x0a02], leaf(CAT_ALLOW));
        assert_eq!(t.root4[0x0101], leaf(5));
    }

    #[test]
    fn v4_allow_overrides_longer_and_shorter() {
        let cats: [(u8, &[(Ipv4Addr, u8)]); 1] = [(
            1,
            &[p4("10.0.0.0/8"), p4("192.168.1.5/32"), p4("192.168.2.0/25")],
        )];
        let allow = [
            p4("10.5.0.0/16"),
            p4("192.168.0.0/16"),
            p4("192.168.1.0/24"),
        ];
        let t = Tables::build_v4(&cats, &allow).unwrap();
        assert_eq!(t.lookup(ip4("10.5.1.1").into()), CAT_ALLOW);
        assert_eq!(t.lookup(ip4("10.6.1.1").into()), 1);
        assert_eq!(t.lookup(ip4("192.168.1.5").into()), CAT_ALLOW);
        assert_eq!(t.lookup(ip4("192.168.2.5").into()), CAT_ALLOW);
        assert_eq!(t.lookup(ip4("192.169.0.0").into()), 0);
        // Long prefixes inside the allowlist need no node.
        assert!(t.units.is_empty());
        assert_eq!(t.prefix_count(), 3);
        assert_eq!(t.memory_bytes(), 2 * 65536 * 4);
    }

    #[test]
    fn uniform_nodes_fold_into_their_parent() {
        // Two /25s of one category make the whole /24 one leaf of the /16's
        // node; 256 /24s of one category make the /16 one root entry.
        let halves = [p4("1.1.1.0/25"), p4("1.1.1.128/25")];
        let t = Tables::build_v4(&[(1, &halves)], &[]).unwrap();
        assert_eq!(t.units.len(), 1, "{:?}", t.nodes);
        assert_eq!(t.root4[0x0101], node(KIND_SPARSE_LEAF, 0));
        assert_eq!(t.lookup(ip4("1.1.1.200").into()), 1);
        assert_eq!(t.lookup(ip4("1.1.2.1").into()), 0);
        let all: Vec<(Ipv4Addr, u8)> = (0..256u32)
            .map(|i| (Ipv4Addr::from(0x0202_0000 | (i << 8)), 24))
            .collect();
        let t = Tables::build_v4(&[(1, &all)], &[]).unwrap();
        assert!(t.units.is_empty());
        assert_eq!(t.root4[0x0202], leaf(1));
    }

    #[test]
    fn bad_input_is_an_error() {
        let bad_len = [(Ipv4Addr::new(1, 2, 3, 4), 33)];
        assert_eq!(
            Tables::build_v4(&[(1, &bad_len)], &[])
                .unwrap_err()
                .to_string(),
            "1.2.3.4/33: prefix length longer than the address"
        );
        assert!(Tables::build_v4(&[], &bad_len).is_err());
        for id in [CAT_NONE, CAT_ALLOW] {
            assert_eq!(
                Tables::build_v4(&[(id, &[])], &[]).unwrap_err(),
                TableError::BadCategory { id }
            );
            assert_eq!(
                Tables::build_v6(&[(id, &[])], &[]).unwrap_err(),
                TableError::BadCategory { id }
            );
        }
        let bad6 = [(Ipv6Addr::LOCALHOST, 129)];
        assert!(Tables::build_v6(&[(1, &bad6)], &[]).is_err());
        assert!(Tables::build_v6(&[], &bad6).is_err());
        let empty = Tables::build_v4(&[], &[]).unwrap();
        assert!(empty.units.is_empty());
        assert_eq!(empty.lookup(ip4("1.2.3.4").into()), 0);
        // A hand-made table with a dangling node index does not panic.
        let mut t = Tables::build_v4(&[(1, &[p4("1.2.3.4/32")])], &[]).unwrap();
        assert_eq!(t.lookup(ip4("1.2.3.4").into()), 1);
        t.units.clear();
        assert_eq!(t.lookup(ip4("1.2.3.4").into()), 0);
        assert_eq!(
            TableError::TooManyPrefixes {
                needed: 4_000_001,
                max: 4_000_000
            }
            .to_string(),
            "the lists hold 4000001 prefixes (both families, allowlist included) after merging; the limit is 4000000"
        );
        assert_eq!(
            TableError::TooManyUnits { max: 1 << 25 }.to_string(),
            "the prefix tables need more than 33554432 nodes of 64 bytes (2048 MiB); split or merge the lists"
        );
    }

    #[test]
    fn v6_random_property() {
        let mut rng = Rng(7);
        let random6 = |rng: &mut Rng| -> (u128, u8) {
            let len = rng.below(129) as u8;
            // A few /32s, so prefixes nest.
            let top = [0x2001_0db8u128, 0x2a03_2880, 0x2620_0000][rng.below(3) as usize] << 96;
            let low = ((u128::from(rng.next()) << 64) | u128::from(rng.next())) >> 32;
            let a = if rng.below(8) == 0 {
                u128::from(rng.next()) << 64
            } else {
                top | low
            };
            (a, len)
        };
        let cats: Vec<(u8, Vec<(u128, u8)>)> = [1u8, 2, 9]
            .iter()
            .map(|&c| (c, (0..300).map(|_| random6(&mut rng)).collect()))
            .collect();
        let allow: Vec<(u128, u8)> = (0..40)
            .map(|_| {
                let (a, l) = random6(&mut rng);
                (a, l.max(20))
            })
            .collect();
        let typed: Vec<(u8, Vec<(Ipv6Addr, u8)>)> = cats
            .iter()
            .map(|(c, l)| (*c, l.iter().map(|&(a, l)| (Ipv6Addr::from(a), l)).collect()))
            .collect();
        let slices: Vec<(u8, &[(Ipv6Addr, u8)])> =
            typed.iter().map(|(c, l)| (*c, l.as_slice())).collect();
        let allow_typed: Vec<(Ipv6Addr, u8)> =
            allow.iter().map(|&(a, l)| (Ipv6Addr::from(a), l)).collect();
        let t = Tables::build_v6(&slices, &allow_typed).unwrap();
        let mut addrs = Vec::new();
        for &(a, l) in cats.iter().flat_map(|(_, l)| l).chain(&allow) {
            let first = a & prefix_mask(128, l);
            let last = first | host_mask(128, l);
            addrs.extend([first, last, first.wrapping_sub(1), last.wrapping_add(1)]);
        }
        for _ in 0..3000 {
            addrs.push(random6(&mut rng).0);
        }
        let reference = Reference::new(&cats, &allow, 128);
        for a in addrs {
            assert_eq!(
                t.lookup(Ipv6Addr::from(a).into()),
                reference.lookup(a),
                "{}",
                Ipv6Addr::from(a)
            );
        }
    }

    #[test]
    fn v6_prefixes() {
        let cats: [(u8, &[(Ipv6Addr, u8)]); 2] = [
            (
                2,
                &[
                    p6("2001:db8::/32"),
                    p6("2001:db8:1::/48"),
                    p6("2a03:2880::/32"),
                ],
            ),
            (1, &[p6("2001:db8:1::/48"), p6("2a03:2880:f000::/36")]),
        ];
        let allow = [
            p6("2a03:2880::/32"),
            p6("2001:db8:1:2::/64"),
            p6("2001:db8:1:2::/80"),
        ];
        let t = Tables::build_v6(&cats, &allow).unwrap();
        // 2001:db8::/32, 2001:db8:1::/48 (category 1 wins), the /64 allow
        // (the /80 is inside it), 2a03:2880::/32 allow (its blocking
        // prefixes are inside it).
        assert_eq!(t.v6_prefixes, 4);
        let l = |a: &str| t.lookup(a.parse().unwrap());
        assert_eq!(l("2001:db8:1:2::1"), CAT_ALLOW);
        assert_eq!(l("2001:db8:1:3::1"), 1);
        assert_eq!(l("2001:db8:2::1"), 2);
        assert_eq!(l("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 2);
        assert_eq!(l("2001:db9::"), 0);
        assert_eq!(l("2a03:2880:f000::1"), CAT_ALLOW);
        assert_eq!(l("::1"), 0);
        // A /128 goes 14 levels down.
        let host = [p6("2001:db8::1:2:3:4/128")];
        let t = Tables::build_v6(&[(3, &host)], &[]).unwrap();
        assert_eq!(t.units.len(), 14);
        assert_eq!(t.lookup("2001:db8::1:2:3:4".parse().unwrap()), 3);
        assert_eq!(t.lookup("2001:db8::1:2:3:5".parse().unwrap()), 0);
    }

    fn lists_for_explain() -> Lists {
        let p = |t: &str| parse_list("t", t, false).unwrap();
        Lists::from_parts(
            vec![
                (
                    "meta".into(),
                    p("157.240.0.0/16\n2a03:2880::/32\n10.0.0.0/8"),
                ),
                ("whatsapp".into(), p("157.240.1.0/24\n10.0.0.0/8")),
                ("telegram".into(), p("91.108.4.0/22")),
            ],
            p("157.240.1.128/25\n2a03:2880:1::/48\n91.108.0.0/16"),
        )
        .unwrap()
    }

    #[test]
    fn explain_matches() {
        let lists = lists_for_explain();
        let ex = |a: &str| explain(&lists, a.parse().unwrap()).map(|m| m.to_string());
        assert_eq!(ex("157.240.2.1").as_deref(), Some("meta (157.240.0.0/16)"));
        assert_eq!(
            ex("157.240.1.1").as_deref(),
            Some("whatsapp (157.240.1.0/24)")
        );
        assert_eq!(
            ex("157.240.1.200").as_deref(),
            Some("allow (157.240.1.128/25), overriding whatsapp (157.240.1.0/24)")
        );
        assert_eq!(
            ex("91.108.5.1").as_deref(),
            Some("allow (91.108.0.0/16), overriding telegram (91.108.4.0/22)")
        );
        assert_eq!(ex("91.108.9.1").as_deref(), Some("allow (91.108.0.0/16)"));
        // Same prefix in two categories: the lower id.
        assert_eq!(ex("10.1.1.1").as_deref(), Some("whatsapp (10.0.0.0/8)"));
        assert_eq!(ex("2a03:2880::1").as_deref(), Some("meta (2a03:2880::/32)"));
        assert_eq!(
            ex("2a03:2880:1::1").as_deref(),
            Some("allow (2a03:2880:1::/48), overriding meta (2a03:2880::/32)")
        );
        assert_eq!(ex("8.8.8.8"), None);
        let m = explain(&lists, "157.240.1.200".parse().unwrap()).unwrap();
        assert!(m.allowed());
        assert_eq!(m.overridden.unwrap().category, 1);
        let m = explain(&lists, "157.240.2.1".parse().unwrap()).unwrap();
        assert!(!m.allowed());
        assert_eq!((m.hit.category, m.hit.name.as_str()), (3, "meta"));

        // explain and the tables agree.
        let t = build_tables(&lists).unwrap();
        for a in [
            "157.240.2.1",
            "157.240.1.1",
            "157.240.1.200",
            "91.108.5.1",
            "91.108.9.1",
            "10.1.1.1",
            "8.8.8.8",
        ] {
            let want = explain(&lists, a.parse().unwrap()).map_or(0, |m| m.hit.category);
            assert_eq!(t.lookup(a.parse().unwrap()), want, "{a}");
        }
        for a in ["2a03:2880::1", "2a03:2880:1::1", "::1"] {
            let want = explain(&lists, a.parse().unwrap()).map_or(0, |m| m.hit.category);
            assert_eq!(t.lookup(a.parse().unwrap()), want, "{a}");
        }
    }

    /// The published source lists parse and build.
    #[test]
    fn real_lists_build() {
        let dir = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/ranges"
        ));
        if !dir.is_dir() {
            println!("skipped: {} is absent", dir.display());
            return;
        }
        let read = |name: &str| -> ParsedList {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                return ParsedList::default();
            };
            match parse_list(name, &text, false) {
                Ok(list) => list,
                Err(e) => {
                    println!("{e}; normalising");
                    parse_list(name, &text, true).unwrap()
                }
            }
        };
        let whatsapp = read("hybridnetworks-whatsapp-ipv4.txt");
        let mut telegram = read("itdoginfo-ipv4-telegram.lst");
        let mut meta = read("itdoginfo-ipv4-meta.lst");
        telegram.v6 = read("itdoginfo-ipv6-telegram.lst").v6;
        meta.v6 = read("itdoginfo-ipv6-meta.lst").v6;
        let lists = Lists::from_parts(
            vec![
                ("whatsapp".into(), whatsapp),
                ("telegram".into(), telegram),
                ("meta".into(), meta),
            ],
            parse_list("allow", "157.240.0.0/24\n2a03:2880:f000::/36", false).unwrap(),
        )
        .unwrap();
        assert!(lists.prefix_count() > 100);
        let t = build_tables(&lists).unwrap();
        let mut probes: Vec<IpAddr> = Vec::new();
        for c in lists
            .categories
            .iter()
            .map(|c| &c.list)
            .chain([&lists.allow])
        {
            for cidr in c.cidrs() {
                let first = cidr.network().addr();
                probes.push(first);
                probes.push(match first {
                    IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                        u32::from(a) | host_mask(32, cidr.prefix_len()) as u32,
                    )),
                    IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                        u128::from(a) | host_mask(128, cidr.prefix_len()),
                    )),
                });
            }
        }
        for a in probes {
            let want = explain(&lists, a).map_or(0, |m| m.hit.category);
            assert_eq!(t.lookup(a), want, "{a}");
        }
    }
}
