//! Prefix sets and the addresses the bench's traffic uses.
//!
//! Everything is a function of the set file and a seed, so every contestant
//! (and every process of one run) sees the same prefixes, the same target
//! addresses and the same frames.
//!
//! Address plan:
//! - IPv4 sets live in `0.0.0.0/1` (never `0/8`, `127/8`), disjoint: `random`
//!   (lengths uniform /8../32), `mix` (40% /24, 20% /32, 15% /25–/31, 15%
//!   /20–/23, 10% /16–/19 by draw) and `hosts` (/32s). A draw that overlaps
//!   is drawn again (length class included), so short prefixes thin out once
//!   the space fills;
//! - IPv6 sets live in `2000::/4`, disjoint, lengths uniform /20../64 with
//!   about 5% /65../128;
//! - clients (sources) come from `128.0.0.0/2` (IPv4) or `3000::/4` (IPv6)
//!   and never fall inside a prefix of the set;
//! - each prefix `i` has one target address inside it; matching traffic goes
//!   to those targets, and xdp-filter holds exactly them;
//! - non-matching destinations are near misses: in the /24 (prefixes longer
//!   than /24) or the /16 (/17–/24) of a random prefix of the set, outside
//!   the set, so they reach the deep parts of the tables (IPv6: the prefix
//!   with one of its last 8 bits flipped, the rest random).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context as _, Result, bail};

pub use filter_common::decide::mix64 as mix;
pub use flowfilter_tests::kit::Rng;

/// The mix set's length classes: (shortest, longest, percent of draws).
const MIX_CLASSES: [(u8, u8, u64); 5] = [
    (24, 24, 40),
    (32, 32, 20),
    (25, 31, 15),
    (20, 23, 15),
    (16, 19, 10),
];

/// A length of the mix set: a class by its share, a length uniform in it.
fn mix_length(r: &mut Rng) -> u8 {
    let mut x = r.below(100);
    for (lo, hi, share) in MIX_CLASSES {
        if x < share {
            return r.range(u64::from(lo), u64::from(hi)) as u8;
        }
        x -= share;
    }
    24
}

/// Host bits of an IPv4 prefix length.
fn host(len: u8) -> u32 {
    u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)
}

/// Host bits of an IPv6 prefix length.
fn host6(len: u8) -> u128 {
    u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)
}

/// Which generated set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SetKind {
    /// IPv4, lengths uniform /8../32.
    Random,
    /// IPv4: 40% /24, 20% /32, 15% /25–/31, 15% /20–/23, 10% /16–/19.
    Mix,
    /// IPv4 /32s.
    Hosts,
    /// IPv6, lengths uniform /20../64, ~5% /65../128.
    V6,
}

/// A sorted set of disjoint prefixes `(network, length)` of each family.
#[derive(Clone, Debug, Default)]
pub struct PrefixSet {
    pub prefixes: Vec<(u32, u8)>,
    pub v6: Vec<(u128, u8)>,
}

/// Disjoint random placement: a length from `len_of`, then up to
/// [`TRIES_PER_LEN`] positions from `at` until one is free; `n` prefixes.
fn place<T: Copy + Ord>(
    n: usize,
    reserved: &[(T, T)],
    rng: &mut Rng,
    len_of: &dyn Fn(&mut Rng) -> u8,
    at: &dyn Fn(&mut Rng, u8) -> (T, T),
) -> Result<Vec<(T, u8)>> {
    let mut taken: BTreeMap<T, T> = reserved.iter().copied().collect();
    let mut out = Vec::with_capacity(n);
    let (mut attempts, max_attempts) = (0u64, 64 * n as u64 + 10_000);
    while out.len() < n {
        let len = len_of(rng);
        for _ in 0..TRIES_PER_LEN {
            attempts += 1;
            let (start, end) = at(rng, len);
            // The interval starting at or before `end` with the largest start.
            if let Some((_, &e)) = taken.range(..=end).next_back()
                && e >= start
            {
                continue;
            }
            taken.insert(start, end);
            out.push((start, len));
            break;
        }
        if attempts > max_attempts {
            bail!(
                "could not place {n} disjoint prefixes (placed {})",
                out.len()
            );
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Positions tried for one drawn length before the length is drawn again.
const TRIES_PER_LEN: usize = 16;

impl PrefixSet {
    /// `n` prefixes of `kind`.
    pub fn generate(kind: SetKind, n: usize, seed: u64) -> Result<PrefixSet> {
        let mut rng = Rng::new(seed ^ 0x5e75);
        // Never 0/8 nor 127/8.
        let reserved = [(0, 0x00ff_ffff), (0x7f00_0000, 0x7fff_ffff)];
        let at4 = |r: &mut Rng, len: u8| {
            let start = (r.next_u64() as u32 & 0x7fff_ffff) & !host(len);
            (start, start | host(len))
        };
        let v4 = |len_of: &dyn Fn(&mut Rng) -> u8, rng: &mut Rng| {
            place(n, &reserved, rng, len_of, &at4).map(|prefixes| PrefixSet {
                prefixes,
                v6: Vec::new(),
            })
        };
        match kind {
            SetKind::Random => v4(&|r| r.range(8u64, 32) as u8, &mut rng),
            SetKind::Hosts => v4(&|_| 32, &mut rng),
            SetKind::Mix => v4(&mix_length, &mut rng),
            SetKind::V6 => {
                let len_of = |r: &mut Rng| {
                    if r.below(100u64) < 5 {
                        r.range(65u64, 128) as u8
                    } else {
                        r.range(20u64, 64) as u8
                    }
                };
                let at6 = |r: &mut Rng, len: u8| {
                    let start = ((0x2 << 124) | (r.next_u128() & host6(4))) & !host6(len);
                    (start, start | host6(len))
                };
                Ok(PrefixSet {
                    prefixes: Vec::new(),
                    v6: place(n, &[], &mut rng, &len_of, &at6)?,
                })
            }
        }
    }

    /// Shares of the mix set's length classes, as drawn by [`mix_length`].
    pub fn mix_shares(&self) -> String {
        let n = self.len().max(1) as f64;
        MIX_CLASSES
            .iter()
            .map(|&(lo, hi, _)| {
                let c = self
                    .prefixes
                    .iter()
                    .filter(|p| (lo..=hi).contains(&p.1))
                    .count();
                let name = if lo == hi {
                    format!("/{lo}")
                } else {
                    format!("/{lo}–/{hi}")
                };
                format!("{name} {:.1}%", c as f64 * 100.0 / n)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Make any prefixes disjoint: sort, drop those inside another.
    pub fn from_overlapping(v4: Vec<(u32, u8)>, v6: Vec<(u128, u8)>) -> PrefixSet {
        fn flatten<T: Copy + Ord + std::ops::BitOr<Output = T>>(
            mut p: Vec<(T, u8)>,
            host: impl Fn(u8) -> T,
            net: impl Fn(T, u8) -> T,
        ) -> Vec<(T, u8)> {
            for x in &mut p {
                x.0 = net(x.0, x.1);
            }
            p.sort_unstable();
            p.dedup();
            let mut out: Vec<(T, u8)> = Vec::with_capacity(p.len());
            let mut end: Option<T> = None;
            for (start, len) in p {
                if end.is_some_and(|e| start <= e) {
                    continue;
                }
                out.push((start, len));
                end = Some(start | host(len));
            }
            out
        }
        PrefixSet {
            prefixes: flatten(v4, host, |a, l| a & !host(l)),
            v6: flatten(v6, host6, |a, l| a & !host6(l)),
        }
    }

    /// All prefixes, both families.
    pub fn len(&self) -> usize {
        self.prefixes.len() + self.v6.len()
    }

    /// 6 for a set of IPv6 prefixes only, else 4.
    pub fn family(&self) -> u8 {
        if self.prefixes.is_empty() && !self.v6.is_empty() {
            6
        } else {
            4
        }
    }

    /// Whether `a` lies inside a prefix.
    pub fn contains(&self, a: u32) -> bool {
        let i = self.prefixes.partition_point(|&(s, _)| s <= a);
        i > 0 && {
            let (s, l) = self.prefixes[i - 1];
            a <= s | host(l)
        }
    }

    /// Whether `a` lies inside an IPv6 prefix.
    pub fn contains6(&self, a: u128) -> bool {
        let i = self.v6.partition_point(|&(s, _)| s <= a);
        i > 0 && {
            let (s, l) = self.v6[i - 1];
            a <= s | host6(l)
        }
    }

    /// Addresses of `base | (0..=mask)` inside the set.
    pub fn covered(&self, base: u32, mask: u32) -> u64 {
        let (lo, hi) = (u64::from(base), u64::from(base | mask));
        self.prefixes
            .iter()
            .map(|&(s, l)| {
                let (s, e) = (u64::from(s), u64::from(s | host(l)));
                (e.min(hi) + 1).saturating_sub(s.max(lo))
            })
            .sum()
    }

    /// /24 blocks holding a prefix longer than /24.
    pub fn long_blocks(&self) -> usize {
        let mut blocks = self.blocks_under(24);
        blocks.dedup();
        blocks.len()
    }

    /// The `/len` block (the address's top `len` bits) of each prefix
    /// longer than `/len`, in the set's order.
    fn blocks_under(&self, len: u8) -> Vec<u32> {
        self.prefixes
            .iter()
            .filter(|p| p.1 > len)
            .map(|p| p.0 >> (32 - len))
            .collect()
    }

    fn pick(i: usize, seed: u64) -> u64 {
        mix(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    /// The target address of IPv4 prefix `i`: a fixed address inside it.
    pub fn target(&self, i: usize, seed: u64) -> u32 {
        let (s, l) = self.prefixes[i];
        s | (Self::pick(i, seed) as u32 & host(l))
    }

    /// The target address of IPv6 prefix `i`.
    pub fn target6(&self, i: usize, seed: u64) -> u128 {
        let (s, l) = self.v6[i];
        let r = u128::from(Self::pick(i, seed)) << 64 | u128::from(Self::pick(i, !seed));
        s | (r & host6(l))
    }

    /// Write one CIDR per line after a comment line.
    pub fn write(&self, path: &Path, what: &str) -> Result<()> {
        let mut s = String::with_capacity(self.len() * 24 + 80);
        s.push_str("# ffbench prefix set: ");
        s.push_str(what);
        s.push('\n');
        for &(a, l) in &self.prefixes {
            let _ = writeln!(s, "{}/{l}", Ipv4Addr::from(a));
        }
        for &(a, l) in &self.v6 {
            let _ = writeln!(s, "{}/{l}", Ipv6Addr::from(a));
        }
        std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
    }

    /// Read a file written by [`PrefixSet::write`].
    pub fn read(path: &Path) -> Result<PrefixSet> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("{}:{}: `{line}` is not a CIDR", path.display(), i + 1);
            let (a, l) = line.split_once('/').with_context(bad)?;
            let l: u8 = l.parse().ok().with_context(bad)?;
            if a.contains(':') {
                let a: Ipv6Addr = a.parse().ok().with_context(bad)?;
                if l > 128 {
                    bail!(bad());
                }
                v6.push((u128::from(a), l));
            } else {
                let a: Ipv4Addr = a.parse().ok().with_context(bad)?;
                if l > 32 {
                    bail!(bad());
                }
                v4.push((u32::from(a), l));
            }
        }
        let set = PrefixSet::from_overlapping(v4, v6);
        if set.len() == 0 {
            bail!("{}: no prefixes", path.display());
        }
        let covered = set.covered(OUTSIDE_BASE, OUTSIDE_MASK);
        if covered > u64::from(OUTSIDE_MASK) / 2 {
            bail!(
                "{}: the set covers {:.0}% of 128.0.0.0/2, where the bench draws clients (at most 50%)",
                path.display(),
                covered as f64 * 100.0 / (f64::from(OUTSIDE_MASK) + 1.0)
            );
        }
        Ok(set)
    }
}

/// IPv4 clients: `128.0.0.0/2`.
const OUTSIDE_BASE: u32 = 0x8000_0000;
const OUTSIDE_MASK: u32 = 0x3fff_ffff;

/// An address in `128.0.0.0/2` outside the set (clients, fallback
/// destinations). [`PrefixSet::read`] refuses sets covering half of that
/// range or more, so a draw misses the set with probability above one half.
pub fn outside(set: &PrefixSet, rng: &mut Rng) -> u32 {
    for _ in 0..1_000_000 {
        let a = OUTSIDE_BASE | (rng.next_u64() as u32 & OUTSIDE_MASK);
        // Avoid .0 and .255 hosts, which look odd in captures.
        if !matches!(a & 0xff, 0 | 0xff) && !set.contains(a) {
            return a;
        }
    }
    panic!("no address of 128.0.0.0/2 outside the prefix set after 10^6 draws");
}

/// An IPv6 client address in `3000::/4` outside the set.
pub fn outside6(set: &PrefixSet, rng: &mut Rng) -> u128 {
    loop {
        let a = (0x3 << 124) | (rng.next_u128() & host6(4));
        if !set.contains6(a) {
            return a;
        }
    }
}

/// A non-matching IPv4 destination near the set: a random prefix's /24
/// (prefixes longer than /24) or /16 (/17–/24), an address there outside
/// the set; another prefix when that fails; after many failures (a set of
/// only short prefixes) an address of [`outside`].
pub fn near_miss(set: &PrefixSet, rng: &mut Rng) -> u32 {
    if !set.prefixes.is_empty() {
        for _ in 0..10_000 {
            let (s, l) = set.prefixes[rng.below(set.prefixes.len() as u64) as usize];
            let mask = match l {
                25.. => 0xff,
                17..=24 => 0xffff,
                _ => continue,
            };
            for _ in 0..8 {
                let a = (s & !mask) | (rng.next_u64() as u32 & mask);
                if !matches!(a & 0xff, 0 | 0xff) && !set.contains(a) {
                    return a;
                }
            }
        }
    }
    outside(set, rng)
}

/// A non-matching IPv6 destination near the set: a random prefix with one
/// of its last 8 bits (at most all but the first 4) flipped, the bits after
/// it random, outside the set; after many failures an [`outside6`] address.
pub fn near_miss6(set: &PrefixSet, rng: &mut Rng) -> u128 {
    if !set.v6.is_empty() {
        for _ in 0..10_000 {
            let (s, l) = set.v6[rng.below(set.v6.len() as u64) as usize];
            if l <= 4 {
                continue;
            }
            // Bit p (0 = the top bit) is flipped; it lies inside the prefix.
            let p = u32::from(l) - 1 - rng.below(u64::from(l.min(12) - 4)) as u32;
            let flipped = s ^ (1u128 << (127 - p));
            let rest = u128::MAX >> (p + 1);
            let a = (flipped & !rest) | (rng.next_u128() & rest);
            if !set.contains6(a) {
                return a;
            }
        }
    }
    outside6(set, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sets_are_disjoint_and_deterministic() {
        let a = PrefixSet::generate(SetKind::Random, 5000, 7).unwrap();
        let b = PrefixSet::generate(SetKind::Random, 5000, 7).unwrap();
        assert_eq!(a.prefixes, b.prefixes);
        assert_eq!(a.len(), 5000);
        assert_eq!(a.family(), 4);
        for w in a.prefixes.windows(2) {
            assert!(w[0].0 | host(w[0].1) < w[1].0, "{w:?} overlap");
        }
        for &(s, l) in &a.prefixes {
            assert!((8..=32).contains(&l));
            assert_eq!(s & host(l), 0);
            assert!(s < 0x8000_0000 && s >> 24 != 0 && s >> 24 != 127);
        }
        // All lengths occur.
        for l in 8..=32u8 {
            assert!(a.prefixes.iter().any(|p| p.1 == l), "/{l} missing");
        }
        for i in 0..a.len() {
            assert!(a.contains(a.target(i, 3)));
        }
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            assert!(!a.contains(outside(&a, &mut rng)));
        }
    }

    #[test]
    fn near_misses_share_a_block_with_a_prefix_but_miss_the_set() {
        let set = PrefixSet::generate(SetKind::Mix, 20_000, 5).unwrap();
        let mut rng = Rng::new(2);
        let mut blocks16 = set.blocks_under(16);
        blocks16.sort_unstable();
        for _ in 0..2000 {
            let a = near_miss(&set, &mut rng);
            assert!(!set.contains(a));
            assert!(
                blocks16.binary_search(&(a >> 16)).is_ok(),
                "{a:#x} not in a /16 of the set"
            );
        }
        // Lengths of the mix, roughly as drawn (the /16-/19 may thin out).
        let share = |lo: u8, hi: u8| {
            set.prefixes
                .iter()
                .filter(|p| (lo..=hi).contains(&p.1))
                .count() as f64
                / set.len() as f64
        };
        assert!((share(24, 24) - 0.4).abs() < 0.03, "{}", set.mix_shares());
        assert!((share(32, 32) - 0.2).abs() < 0.03, "{}", set.mix_shares());
        assert!(share(16, 19) > 0.05, "{}", set.mix_shares());
    }

    #[test]
    fn v6_sets_and_addresses() {
        let set = PrefixSet::generate(SetKind::V6, 3000, 9).unwrap();
        assert_eq!(
            (set.family(), set.v6.len(), set.prefixes.len()),
            (6, 3000, 0)
        );
        for w in set.v6.windows(2) {
            assert!(w[0].0 | host6(w[0].1) < w[1].0, "{w:?} overlap");
        }
        let long = set.v6.iter().filter(|p| p.1 > 64).count();
        assert!((50..300).contains(&long), "{long} longer than /64");
        assert!(
            set.v6
                .iter()
                .all(|p| (20..=128).contains(&p.1) && p.0 >> 124 == 2)
        );
        for i in 0..set.v6.len() {
            assert!(set.contains6(set.target6(i, 1)));
        }
        let mut rng = Rng::new(4);
        for _ in 0..1000 {
            let a = near_miss6(&set, &mut rng);
            assert!(!set.contains6(a) && a >> 124 == 2);
            assert!(!set.contains6(outside6(&set, &mut rng)));
        }
        let dir = std::env::temp_dir().join(format!("ffbench-set-test-{}", std::process::id()));
        set.write(&dir, "test").unwrap();
        let back = PrefixSet::read(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(back.v6, set.v6);
    }

    #[test]
    fn hosts_are_slash_32s() {
        let set = PrefixSet::generate(SetKind::Hosts, 1000, 3).unwrap();
        assert!(set.prefixes.iter().all(|p| p.1 == 32));
        assert_eq!(set.len(), 1000);
    }

    #[test]
    fn overlapping_input_is_flattened() {
        let s = PrefixSet::from_overlapping(
            vec![
                (0x0a00_0000, 8),
                (0x0a01_0000, 16),
                (0x0b00_0001, 24),
                (0x0b00_0000, 24),
            ],
            vec![(0x2001 << 112, 16), (0x2001_0db8 << 96, 32)],
        );
        assert_eq!(s.prefixes, vec![(0x0a00_0000, 8), (0x0b00_0000, 24)]);
        assert_eq!(s.v6, vec![(0x2001 << 112, 16)]);
        assert!(s.contains(0x0a7f_0001));
        assert!(!s.contains(0x0b00_0100));
        assert_eq!(s.covered(0x0a00_0000, 0xffff), 0x1_0000);
        assert_eq!(s.covered(0x0b00_0000, 0xffff), 256);
        assert_eq!(s.covered(0x0c00_0000, 0xffff), 0);
        let host32 =
            PrefixSet::from_overlapping(vec![(0x0102_0304, 32), (0x0102_0305, 32)], Vec::new());
        assert_eq!(host32.prefixes, vec![(0x0102_0304, 32), (0x0102_0305, 32)]);
        assert!(host32.contains(0x0102_0305) && !host32.contains(0x0102_0306));
    }
}
