//! The data-path tables built from [`Lists`].
//!
//! Matching rules, the same for both families and for [`explain`]:
//! - the longest prefix wins across categories;
//! - the same prefix in two categories belongs to the lower id;
//! - the allowlist overrides everything: every address inside any allow
//!   range gets [`CAT_ALLOW`], whatever the length of the blocking prefixes
//!   around or inside it.
//!
//! IPv4 is a DIR-24-8 table (see [`filter_common::v4table`]): one row of
//! 256 entries per /16, one entry per /24, and a 256-byte chunk for each /24
//! that holds prefixes longer than /24. It is painted in order of prefix
//! length, shortest first, then the allowlist on top.
//!
//! IPv6 goes to a kernel LPM trie, which only knows "longest prefix wins";
//! to keep the allowlist rule, blocking prefixes entirely inside an allow
//! prefix are dropped and allow prefixes are added with [`CAT_ALLOW`] (an
//! allow prefix inside a blocking one is longer, so it wins anyway).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::v4table::{
    V4_CHUNK_MASK, V4Entry, chunk_slot, decode, encode_category, encode_chunk, row_slot,
};
use filter_common::{CAT_ALLOW, CAT_NONE, V4_ROW_LEN, V4_ROWS, V6_MAX_PREFIXES};

use crate::lists::{Cidr, Lists, host_mask, prefix_mask};

/// Why the tables could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// More /24 blocks hold prefixes longer than /24 than there are chunks.
    #[error(
        "IPv4 prefixes longer than /24 fall in {needed} different /24 blocks, each needing a 256-byte chunk, but only {max} chunks fit (merge the long prefixes into their /24s, or raise the chunk limit)"
    )]
    TooManyChunks {
        /// /24 blocks holding longer prefixes (each needs a chunk).
        needed: u32,
        /// Chunks available.
        max: u32,
    },
    /// `chunk_base` plus the chunks needed passes the 24-bit chunk index.
    #[error("chunk base {base} plus {needed} chunks does not fit the 24-bit chunk index")]
    ChunkIndexOverflow {
        /// The chunk base asked for.
        base: u32,
        /// Chunks needed.
        needed: u32,
    },
    /// More IPv6 prefixes than the LPM trie holds.
    #[error("{needed} IPv6 prefixes (allowlist included), but the table holds at most {max}")]
    TooManyV6Prefixes {
        /// Prefixes to store.
        needed: usize,
        /// Capacity.
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

/// Entries of one /16 row.
type Row = [u32; V4_ROW_LEN];
/// One chunk: a category per address of a /24.
type Chunk = [u8; 256];

/// The IPv4 DIR-24-8 table of one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4Table {
    /// The non-empty rows, by row number (`addr >> 16`); rows not here are
    /// all zero.
    pub rows: BTreeMap<u16, Box<Row>>,
    /// Chunks; an extended entry holds `chunk_base + i` for `chunks[i]`.
    pub chunks: Vec<Chunk>,
    /// Absolute index of `chunks[0]` in the chunk map.
    pub chunk_base: u32,
    /// Prefixes painted: distinct blocking prefixes not inside the allowlist,
    /// plus allow prefixes not inside another allow prefix.
    pub prefixes: usize,
}

/// The IPv6 prefixes of one generation, for the kernel LPM trie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V6Table {
    /// `(network, length, category)`, sorted by network then length; no two
    /// with the same network and length.
    pub entries: Vec<(Ipv6Addr, u8, u8)>,
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

/// Builds a [`V4Table`].
struct Painter {
    rows: Vec<Option<Box<Row>>>,
    chunks: Vec<Chunk>,
    chunk_base: u32,
}

impl Painter {
    /// The row of entry `entry` (an address >> 8), created if missing.
    fn row(&mut self, entry: u32) -> &mut Row {
        let slot = &mut self.rows[(entry >> 8) as usize % V4_ROWS as usize];
        slot.get_or_insert_with(|| Box::new([0; V4_ROW_LEN]))
    }

    /// Paint `start/len` with `cat` over what is there.
    fn paint(&mut self, start: u32, len: u8, cat: u8) {
        if len <= 24 {
            let mut entry = start >> 8;
            let end = entry + (1u32 << (24 - len));
            while entry < end {
                let lo = (entry & 0xff) as usize;
                let hi = (lo + (end - entry) as usize).min(V4_ROW_LEN);
                let base = self.chunk_base;
                let row = self.rows[(entry >> 8) as usize % V4_ROWS as usize]
                    .get_or_insert_with(|| Box::new([0; V4_ROW_LEN]));
                if self.chunks.is_empty() {
                    row[lo..hi].fill(encode_category(cat));
                } else {
                    for e in &mut row[lo..hi] {
                        match decode(*e) {
                            V4Entry::Chunk(i) => {
                                // A chunk under a shorter prefix painted later
                                // (only the allowlist can do that): paint it all.
                                if let Some(c) = i
                                    .checked_sub(base)
                                    .and_then(|k| self.chunks.get_mut(k as usize))
                                {
                                    c.fill(cat);
                                }
                            }
                            V4Entry::Category(_) => *e = encode_category(cat),
                        }
                    }
                }
                entry += (hi - lo) as u32;
            }
        } else {
            let base = self.chunk_base;
            let next = self.chunks.len() as u32;
            let slot = row_slot(start);
            let row = self.row(start >> 8);
            let index = match decode(row[slot]) {
                V4Entry::Chunk(i) => i.wrapping_sub(base),
                V4Entry::Category(c) => {
                    row[slot] = encode_chunk(base + next);
                    self.chunks.push([c; 256]);
                    next
                }
            };
            if let Some(chunk) = self.chunks.get_mut(index as usize) {
                let lo = chunk_slot(start);
                let n = 1usize << (32 - len);
                chunk[lo..lo + n].fill(cat);
            }
        }
    }
}

impl V4Table {
    /// Build the table from `(category id, prefixes)` pairs and the allowlist.
    /// Host bits in the input are ignored. Chunk `i` gets the absolute index
    /// `chunk_base + i`; at most `max_chunks` may be used.
    pub fn build(
        cats: &[(u8, &[(Ipv4Addr, u8)])],
        allow: &[(Ipv4Addr, u8)],
        chunk_base: u32,
        max_chunks: u32,
    ) -> Result<V4Table, TableError> {
        let mut allow_bits = Vec::with_capacity(allow.len());
        for &(a, l) in allow {
            allow_bits.push(prefix_bits(a.into(), l)?);
        }
        let allow = allow_set(allow_bits, 32);

        // (len, start, category): sorted, the shortest are painted first; for
        // the same prefix the lowest id is kept.
        let mut blocks: Vec<(u8, u32, u8)> =
            Vec::with_capacity(cats.iter().map(|(_, l)| l.len()).sum());
        for &(cat, list) in cats {
            check_category(cat)?;
            for &(a, l) in list {
                let (start, len) = prefix_bits(a.into(), l)?;
                blocks.push((len, start as u32, cat));
            }
        }
        blocks.sort_unstable();
        blocks.dedup_by_key(|&mut (len, start, _)| (len, start));
        if !allow.is_empty() {
            blocks.retain(|&(len, start, _)| {
                let start = u128::from(start);
                !inside(&allow, start, start | host_mask(32, len))
            });
        }

        // Every /24 holding a longer prefix needs one chunk. A /24 inside an
        // allow range has none left (they were dropped above), and allow
        // ranges are disjoint, so this is the exact count.
        let mut long: Vec<u32> = blocks
            .iter()
            .filter(|b| b.0 > 24)
            .map(|b| b.1 >> 8)
            .chain(allow.iter().filter(|a| a.2 > 24).map(|a| (a.0 as u32) >> 8))
            .collect();
        long.sort_unstable();
        long.dedup();
        let needed = long.len() as u32;
        if needed > max_chunks {
            return Err(TableError::TooManyChunks {
                needed,
                max: max_chunks,
            });
        }
        if needed > 0 && u64::from(chunk_base) + u64::from(needed) - 1 > u64::from(V4_CHUNK_MASK) {
            return Err(TableError::ChunkIndexOverflow {
                base: chunk_base,
                needed,
            });
        }

        let mut p = Painter {
            rows: vec![None; V4_ROWS as usize],
            chunks: Vec::with_capacity(needed as usize),
            chunk_base,
        };
        for &(len, start, cat) in &blocks {
            p.paint(start, len, cat);
        }
        let mut allow_by_len: Vec<(u8, u32)> = allow.iter().map(|a| (a.2, a.0 as u32)).collect();
        allow_by_len.sort_unstable();
        for (len, start) in allow_by_len {
            p.paint(start, len, CAT_ALLOW);
        }
        debug_assert_eq!(p.chunks.len(), needed as usize);

        let rows = p
            .rows
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i as u16, r)))
            .collect();
        Ok(V4Table {
            rows,
            chunks: p.chunks,
            chunk_base,
            prefixes: blocks.len() + allow.len(),
        })
    }

    /// The category of `addr`, decoded as the XDP program does (0: none).
    pub fn lookup(&self, addr: Ipv4Addr) -> u8 {
        let a = u32::from(addr);
        let Some(row) = self.rows.get(&((a >> 16) as u16)) else {
            return CAT_NONE;
        };
        match decode(row[row_slot(a)]) {
            V4Entry::Category(c) => c,
            V4Entry::Chunk(i) => i
                .checked_sub(self.chunk_base)
                .and_then(|k| self.chunks.get(k as usize))
                .map_or(CAT_NONE, |c| c[chunk_slot(a)]),
        }
    }

    /// Number of prefixes in the table (see [`V4Table::prefixes`]).
    pub fn prefix_count(&self) -> usize {
        self.prefixes
    }

    /// Bytes of table data to write: the non-empty rows and the chunks.
    pub fn memory_bytes(&self) -> usize {
        self.rows.len() * std::mem::size_of::<Row>()
            + self.chunks.len() * std::mem::size_of::<Chunk>()
    }
}

impl V6Table {
    /// Build the LPM entries from `(category id, prefixes)` pairs and the
    /// allowlist (see the module docs). Host bits in the input are ignored.
    pub fn build(
        cats: &[(u8, &[(Ipv6Addr, u8)])],
        allow: &[(Ipv6Addr, u8)],
    ) -> Result<V6Table, TableError> {
        let mut allow_bits = Vec::with_capacity(allow.len());
        for &(a, l) in allow {
            allow_bits.push(prefix_bits(a.into(), l)?);
        }
        let allow = allow_set(allow_bits, 128);
        let mut blocks: Vec<(u128, u8, u8)> = Vec::new();
        for &(cat, list) in cats {
            check_category(cat)?;
            for &(a, l) in list {
                let (start, len) = prefix_bits(a.into(), l)?;
                blocks.push((start, len, cat));
            }
        }
        blocks.sort_unstable();
        blocks.dedup_by_key(|&mut (start, len, _)| (start, len));
        blocks.retain(|&(start, len, _)| !inside(&allow, start, start | host_mask(128, len)));
        let mut entries: Vec<(Ipv6Addr, u8, u8)> = blocks
            .into_iter()
            .map(|(s, l, c)| (Ipv6Addr::from(s), l, c))
            .chain(
                allow
                    .iter()
                    .map(|&(s, _, l)| (Ipv6Addr::from(s), l, CAT_ALLOW)),
            )
            .collect();
        entries.sort_unstable();
        if entries.len() > V6_MAX_PREFIXES as usize {
            return Err(TableError::TooManyV6Prefixes {
                needed: entries.len(),
                max: V6_MAX_PREFIXES,
            });
        }
        Ok(V6Table { entries })
    }

    /// The category of `a` by longest-prefix match over the entries, as the
    /// kernel LPM trie finds it (0: none). Linear; for tests and `check`.
    pub fn lookup(&self, a: Ipv6Addr) -> u8 {
        let a = u128::from(a);
        let mut best: Option<(u8, u8)> = None;
        for &(net, len, cat) in &self.entries {
            if len > 128 {
                continue;
            }
            let mask = prefix_mask(128, len);
            if a & mask == u128::from(net) & mask && best.is_none_or(|(l, _)| len > l) {
                best = Some((len, cat));
            }
        }
        best.map_or(CAT_NONE, |(_, c)| c)
    }
}

/// Build both tables from the lists. See [`V4Table::build`] for `chunk_base`
/// and `max_chunks`.
pub fn build_tables(
    lists: &Lists,
    chunk_base: u32,
    max_chunks: u32,
) -> Result<(V4Table, V6Table), TableError> {
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
    Ok((
        V4Table::build(&v4, &lists.allow.v4, chunk_base, max_chunks)?,
        V6Table::build(&v6, &lists.allow.v6)?,
    ))
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
        base: u32,
        random: usize,
    ) -> V4Table {
        let typed: Vec<(u8, Vec<(Ipv4Addr, u8)>)> = cats
            .iter()
            .map(|(c, l)| (*c, l.iter().map(|&(a, l)| (Ipv4Addr::from(a), l)).collect()))
            .collect();
        let slices: Vec<(u8, &[(Ipv4Addr, u8)])> =
            typed.iter().map(|(c, l)| (*c, l.as_slice())).collect();
        let allow_typed: Vec<(Ipv4Addr, u8)> =
            allow.iter().map(|&(a, l)| (Ipv4Addr::from(a), l)).collect();
        let t = V4Table::build(&slices, &allow_typed, base, u32::MAX).unwrap();
        assert_eq!(t.chunk_base, base);

        let wide: Vec<(u8, Vec<(u128, u8)>)> = cats
            .iter()
            .map(|(c, l)| (*c, l.iter().map(|&(a, l)| (u128::from(a), l)).collect()))
            .collect();
        let allow_wide: Vec<(u128, u8)> = allow.iter().map(|&(a, l)| (u128::from(a), l)).collect();
        let reference = Reference::new(&wide, &allow_wide, 32);
        let check = |a: u32| {
            assert_eq!(
                t.lookup(Ipv4Addr::from(a)),
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
        for round in 0..3 {
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
            let t = check_v4(&cats, &allow, &mut rng, 1000 * round, 20_000);
            assert!(!t.chunks.is_empty());
            assert!(t.prefix_count() > 0);
            assert_eq!(t.memory_bytes(), t.rows.len() * 1024 + t.chunks.len() * 256);
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
        check_v4(&cats, &allow, &mut rng, 0, 5000);
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
        let t = V4Table::build(&cats, &allow, 7, 10).unwrap();
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
            assert_eq!(t.lookup(ip4(a)), want, "{a}");
        }
        // One chunk, for 10.1.1.0/24, at index 7.
        assert_eq!(t.chunks.len(), 1);
        let row = &t.rows[&0x0a01];
        assert_eq!(decode(row[1]), V4Entry::Chunk(7));
        assert_eq!(t.rows.len(), 65536);
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
        let t = V4Table::build(&cats, &allow, 0, 0).unwrap();
        assert_eq!(t.lookup(ip4("10.5.1.1")), CAT_ALLOW);
        assert_eq!(t.lookup(ip4("10.6.1.1")), 1);
        assert_eq!(t.lookup(ip4("192.168.1.5")), CAT_ALLOW);
        assert_eq!(t.lookup(ip4("192.168.2.5")), CAT_ALLOW);
        assert_eq!(t.lookup(ip4("192.169.0.0")), 0);
        // Long prefixes inside the allowlist need no chunk.
        assert!(t.chunks.is_empty());
        assert_eq!(t.prefix_count(), 3);
        // Rows not touched are absent.
        assert_eq!(t.rows.len(), 256 + 1);
        assert_eq!(t.memory_bytes(), 257 * 1024);
    }

    #[test]
    fn v4_chunks_and_base() {
        let cats: [(u8, &[(Ipv4Addr, u8)]); 2] = [
            (
                1,
                &[
                    p4("1.1.1.0/25"),
                    p4("1.1.2.7/32"),
                    p4("1.1.3.0/26"),
                    p4("1.1.3.64/26"),
                ],
            ),
            (2, &[p4("1.1.1.128/25"), p4("1.1.4.0/30"), p4("1.1.0.0/16")]),
        ];
        // An allow prefix longer than /24 needs a chunk too.
        let allow = [p4("1.1.5.9/32")];
        let e = V4Table::build(&cats, &allow, 0, 4).unwrap_err();
        assert_eq!(e, TableError::TooManyChunks { needed: 5, max: 4 });
        assert_eq!(
            e.to_string(),
            "IPv4 prefixes longer than /24 fall in 5 different /24 blocks, each needing a 256-byte chunk, but only 4 chunks fit (merge the long prefixes into their /24s, or raise the chunk limit)"
        );
        let t = V4Table::build(&cats, &allow, 100, 5).unwrap();
        assert_eq!(t.chunks.len(), 5);
        let mut idx: Vec<u32> = t.rows[&0x0101]
            .iter()
            .filter_map(|&e| match decode(e) {
                V4Entry::Chunk(i) => Some(i),
                V4Entry::Category(_) => None,
            })
            .collect();
        idx.sort_unstable();
        assert_eq!(idx, [100, 101, 102, 103, 104]);
        assert_eq!(t.lookup(ip4("1.1.1.1")), 1);
        assert_eq!(t.lookup(ip4("1.1.1.200")), 2);
        assert_eq!(t.lookup(ip4("1.1.2.7")), 1);
        assert_eq!(t.lookup(ip4("1.1.2.8")), 2);
        assert_eq!(t.lookup(ip4("1.1.5.9")), CAT_ALLOW);
        assert_eq!(t.lookup(ip4("1.1.5.10")), 2);
        assert_eq!(t.lookup(ip4("1.1.4.3")), 2);
        // Chunk initialised from the covering /24 entry.
        assert_eq!(t.lookup(ip4("1.1.4.4")), 2);
        assert_eq!(t.lookup(ip4("1.1.3.128")), 2);

        let e = V4Table::build(&cats, &allow, V4_CHUNK_MASK - 3, 10).unwrap_err();
        assert_eq!(
            e,
            TableError::ChunkIndexOverflow {
                base: V4_CHUNK_MASK - 3,
                needed: 5
            }
        );
        assert!(V4Table::build(&cats, &allow, V4_CHUNK_MASK - 4, 10).is_ok());
        // No long prefixes: any base is fine.
        assert!(V4Table::build(&[(1, &[p4("1.0.0.0/8")])], &[], u32::MAX, 0).is_ok());
    }

    #[test]
    fn bad_input_is_an_error() {
        let bad_len = [(Ipv4Addr::new(1, 2, 3, 4), 33)];
        assert_eq!(
            V4Table::build(&[(1, &bad_len)], &[], 0, 0)
                .unwrap_err()
                .to_string(),
            "1.2.3.4/33: prefix length longer than the address"
        );
        assert!(V4Table::build(&[], &bad_len, 0, 0).is_err());
        for id in [CAT_NONE, CAT_ALLOW] {
            assert_eq!(
                V4Table::build(&[(id, &[])], &[], 0, 0).unwrap_err(),
                TableError::BadCategory { id }
            );
            assert_eq!(
                V6Table::build(&[(id, &[])], &[]).unwrap_err(),
                TableError::BadCategory { id }
            );
        }
        let bad6 = [(Ipv6Addr::LOCALHOST, 129)];
        assert!(V6Table::build(&[(1, &bad6)], &[]).is_err());
        assert!(V6Table::build(&[], &bad6).is_err());
        let empty = V4Table::build(&[], &[], 0, 0).unwrap();
        assert!(empty.rows.is_empty());
        assert_eq!(empty.lookup(ip4("1.2.3.4")), 0);
        assert_eq!(empty.memory_bytes(), 0);
        // A hand-made table with a dangling chunk index does not panic.
        let mut t = V4Table::build(&[(1, &[p4("1.2.3.4/32")])], &[], 10, 1).unwrap();
        assert_eq!(t.lookup(ip4("1.2.3.4")), 1);
        t.chunk_base = 11;
        assert_eq!(t.lookup(ip4("1.2.3.4")), 0);
        t.chunks.clear();
        t.chunk_base = 10;
        assert_eq!(t.lookup(ip4("1.2.3.4")), 0);
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
        let t = V6Table::build(&slices, &allow_typed).unwrap();
        assert!(
            t.entries
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
        );
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
                t.lookup(Ipv6Addr::from(a)),
                reference.lookup(a),
                "{}",
                Ipv6Addr::from(a)
            );
        }
    }

    #[test]
    fn v6_entries() {
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
        let t = V6Table::build(&cats, &allow).unwrap();
        let got: Vec<String> = t
            .entries
            .iter()
            .map(|&(a, l, c)| format!("{a}/{l}={c}"))
            .collect();
        assert_eq!(
            got,
            [
                "2001:db8::/32=2",
                "2001:db8:1::/48=1",
                "2001:db8:1:2::/64=255",
                "2a03:2880::/32=255"
            ]
        );
        assert_eq!(t.lookup("2001:db8:1:2::1".parse().unwrap()), CAT_ALLOW);
        assert_eq!(t.lookup("2001:db8:1:3::1".parse().unwrap()), 1);
        assert_eq!(t.lookup("2001:db8:2::1".parse().unwrap()), 2);
        assert_eq!(t.lookup("2a03:2880:f000::1".parse().unwrap()), CAT_ALLOW);
        assert_eq!(t.lookup("::1".parse().unwrap()), 0);

        let many: Vec<(Ipv6Addr, u8)> = (0..=V6_MAX_PREFIXES)
            .map(|i| (Ipv6Addr::from(u128::from(i) << 64), 64))
            .collect();
        assert_eq!(
            V6Table::build(&[(1, &many)], &[]).unwrap_err().to_string(),
            format!(
                "{} IPv6 prefixes (allowlist included), but the table holds at most {V6_MAX_PREFIXES}",
                V6_MAX_PREFIXES + 1
            )
        );
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
        let (v4, v6) = build_tables(&lists, 0, 16).unwrap();
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
            assert_eq!(v4.lookup(a.parse().unwrap()), want, "{a}");
        }
        for a in ["2a03:2880::1", "2a03:2880:1::1", "::1"] {
            let want = explain(&lists, a.parse().unwrap()).map_or(0, |m| m.hit.category);
            assert_eq!(v6.lookup(a.parse().unwrap()), want, "{a}");
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
        let (v4, v6) = build_tables(&lists, 0, filter_common::V4_CHUNKS_PER_GEN).unwrap();
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
            let got = match a {
                IpAddr::V4(a) => v4.lookup(a),
                IpAddr::V6(a) => v6.lookup(a),
            };
            assert_eq!(got, want, "{a}");
        }
    }
}
