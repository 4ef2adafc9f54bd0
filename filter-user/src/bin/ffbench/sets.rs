//! Prefix sets and the frames sent at them.
//!
//! Everything is a function of the set file and a seed, so every contestant
//! (and every process of one run) sees the same prefixes, the same target
//! addresses and the same frames.
//!
//! Address plan (IPv4 only):
//! - random sets live in `0.0.0.0/1` (never `0/8`, `127/8`): disjoint
//!   prefixes, length uniform in /8../32, a rejected draw (overlap) is drawn
//!   again, so short prefixes thin out once the space fills;
//! - clients (sources) and the destinations of non-matching traffic are drawn
//!   from `128.0.0.0/2` and never fall inside a prefix of the set;
//! - each prefix `i` has one target address inside it; matching traffic goes
//!   to those targets, and xdp-filter holds exactly them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use filter_common::pktbuild::{self, rtp, stun};

/// splitmix64: small, fast, deterministic.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// splitmix64 finaliser.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Host bits of a prefix length.
fn host(len: u8) -> u32 {
    u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)
}

/// A sorted set of disjoint IPv4 prefixes `(network, length)`.
#[derive(Clone, Debug, Default)]
pub struct PrefixSet {
    pub prefixes: Vec<(u32, u8)>,
}

impl PrefixSet {
    /// `n` random disjoint prefixes in `0.0.0.0/1`, lengths /8../32.
    pub fn random(n: usize, seed: u64) -> Result<PrefixSet> {
        // Disjoint intervals: start -> end (inclusive).
        let mut taken: BTreeMap<u32, u32> = BTreeMap::new();
        // Never 0/8 nor 127/8.
        taken.insert(0, 0x00ff_ffff);
        taken.insert(0x7f00_0000, 0x7fff_ffff);
        let mut rng = Rng(seed ^ 0x5e75);
        let mut attempts: u64 = 0;
        let mut out = Vec::with_capacity(n);
        let max_attempts = 64 * n as u64 + 10_000;
        while out.len() < n {
            attempts += 1;
            if attempts > max_attempts {
                bail!(
                    "could not place {n} disjoint prefixes (placed {})",
                    out.len()
                );
            }
            let len = 8 + rng.below(25) as u8;
            let start = (rng.next() as u32 & 0x7fff_ffff) & !host(len);
            let end = start | host(len);
            // The interval starting at or before `end` with the largest start.
            if let Some((_, &e)) = taken.range(..=end).next_back()
                && e >= start
            {
                continue;
            }
            taken.insert(start, end);
            out.push((start, len));
        }
        out.sort_unstable();
        Ok(PrefixSet { prefixes: out })
    }

    /// Make any prefixes disjoint: sort, drop those inside another.
    pub fn from_overlapping(mut prefixes: Vec<(u32, u8)>) -> PrefixSet {
        for p in &mut prefixes {
            p.0 &= !host(p.1);
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        let mut out: Vec<(u32, u8)> = Vec::with_capacity(prefixes.len());
        let mut end: Option<u32> = None;
        for (start, len) in prefixes {
            if end.is_some_and(|e| start <= e) {
                continue;
            }
            out.push((start, len));
            end = Some(start | host(len));
        }
        PrefixSet { prefixes: out }
    }

    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether `a` lies inside a prefix.
    pub fn contains(&self, a: u32) -> bool {
        let i = self.prefixes.partition_point(|&(s, _)| s <= a);
        i > 0 && {
            let (s, l) = self.prefixes[i - 1];
            a <= s | host(l)
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

    /// /24 blocks holding a prefix longer than /24 (flowfilter's chunks).
    pub fn long_blocks(&self) -> usize {
        let mut blocks: Vec<u32> = self
            .prefixes
            .iter()
            .filter(|p| p.1 > 24)
            .map(|p| p.0 >> 8)
            .collect();
        blocks.dedup();
        blocks.len()
    }

    /// The target address of prefix `i`: a fixed address inside it.
    pub fn target(&self, i: usize, seed: u64) -> u32 {
        let (s, l) = self.prefixes[i];
        s | (mix(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)) as u32 & host(l))
    }

    /// Write one CIDR per line after a comment line.
    pub fn write(&self, path: &Path, what: &str) -> Result<()> {
        let mut s = String::with_capacity(self.prefixes.len() * 19 + 80);
        s.push_str("# ffbench prefix set: ");
        s.push_str(what);
        s.push('\n');
        for &(a, l) in &self.prefixes {
            let _ = writeln!(s, "{}/{l}", Ipv4Addr::from(a));
        }
        std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
    }

    /// Read a file written by [`PrefixSet::write`].
    pub fn read(path: &Path) -> Result<PrefixSet> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut prefixes = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("{}:{}: `{line}` is not an IPv4 CIDR", path.display(), i + 1);
            let (a, l) = line.split_once('/').with_context(bad)?;
            let a: Ipv4Addr = a.parse().ok().with_context(bad)?;
            let l: u8 = l.parse().ok().filter(|l| *l <= 32).with_context(bad)?;
            prefixes.push((u32::from(a), l));
        }
        let set = PrefixSet::from_overlapping(prefixes);
        if set.prefixes.is_empty() {
            bail!("{}: no prefixes", path.display());
        }
        let covered = set.covered(OUTSIDE_BASE, OUTSIDE_MASK);
        if covered > u64::from(OUTSIDE_MASK) / 2 {
            bail!(
                "{}: the set covers {:.0}% of 128.0.0.0/2, where the bench draws clients and non-matching addresses (at most 50%)",
                path.display(),
                covered as f64 * 100.0 / (f64::from(OUTSIDE_MASK) + 1.0)
            );
        }
        Ok(set)
    }
}

/// Clients and non-matching destinations: `128.0.0.0/2`.
const OUTSIDE_BASE: u32 = 0x8000_0000;
const OUTSIDE_MASK: u32 = 0x3fff_ffff;

/// An address in `128.0.0.0/2` outside the set (clients, unlisted servers).
/// [`PrefixSet::read`] refuses sets covering half of that range or more, so
/// a draw misses the set with probability above one half.
pub fn outside(set: &PrefixSet, rng: &mut Rng) -> u32 {
    for _ in 0..1_000_000 {
        let a = OUTSIDE_BASE | (rng.next() as u32 & OUTSIDE_MASK);
        // Avoid .0 and .255 hosts, which look odd in captures.
        if !matches!(a & 0xff, 0 | 0xff) && !set.contains(a) {
            return a;
        }
    }
    panic!("no address of 128.0.0.0/2 outside the prefix set after 10^6 draws");
}

/// Which traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Call media to target addresses of the set: every contestant drops it.
    Match,
    /// The same media to addresses outside the set: every filter passes it.
    NoMatch,
}

impl Traffic {
    pub fn name(self) -> &'static str {
        match self {
            Traffic::Match => "match",
            Traffic::NoMatch => "nomatch",
        }
    }

    pub fn parse(s: &str) -> Result<Traffic> {
        Ok(match s {
            "match" => Traffic::Match,
            "nomatch" => Traffic::NoMatch,
            _ => bail!("unknown traffic `{s}` (match, nomatch)"),
        })
    }
}

/// One UDP flow: client -> server.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub client: u32,
    pub sport: u16,
    pub server: u32,
    pub dport: u16,
    pub id: u32,
}

/// `count` flows of `traffic`, spread over the set's targets (matching) or
/// over fresh addresses outside the set (non-matching). `salt` gives a
/// different family of flows (new source ports) for the same set.
pub fn flows(set: &PrefixSet, seed: u64, traffic: Traffic, count: usize, salt: u64) -> Vec<Flow> {
    // Each traffic kind has its own clients: flowfilter learns the endpoints
    // (address, port) of calls, and non-matching traffic from a caller's
    // socket would rightly be taken for the same call.
    let kind = match traffic {
        Traffic::Match => 0,
        Traffic::NoMatch => 1u64 << 40,
    };
    let mut rng = Rng(mix(seed ^ 0xf10e ^ kind ^ salt.wrapping_mul(0x9e37)));
    (0..count)
        .map(|j| {
            let client = outside(set, &mut rng);
            let server = match traffic {
                Traffic::Match => set.target(rng.below(set.len() as u64) as usize, seed),
                Traffic::NoMatch => outside(set, &mut rng),
            };
            Flow {
                client,
                sport: 1024 + rng.below(64_000) as u16,
                server,
                dport: 3478,
                id: j as u32,
            }
        })
        .collect()
}

/// RTP payload bytes of [`rtp_frame`].
const RTP_PAYLOAD: usize = 160;
/// Length of every live frame: Ethernet + IPv4 + UDP + RTP header + payload.
pub const FRAME_LEN: usize = 14 + 20 + 8 + 12 + RTP_PAYLOAD;

/// STUN Binding request of a flow (a call signal on its own), with a
/// SOFTWARE attribute that brings the frame to [`FRAME_LEN`] bytes.
pub fn stun_frame(f: &Flow) -> Vec<u8> {
    let mut txid = [0u8; 12];
    txid[..4].copy_from_slice(&f.id.to_be_bytes());
    txid[4..8].copy_from_slice(&f.client.to_be_bytes());
    let user: &[u8] = b"ffbench:user";
    // 42 bytes of headers, 20 of STUN header, 4 + 12 of USERNAME, 4 of
    // SOFTWARE's header.
    let software = pktbuild::filler(FRAME_LEN - 42 - 20 - 16 - 4, 7);
    let msg = stun(0x0001, txid, &[(0x0006, user), (0x8022, &software)]);
    pktbuild::udp4(
        f.client.to_be_bytes(),
        f.sport,
        f.server.to_be_bytes(),
        f.dport,
        &msg,
    )
}

/// RTP packet `seq` of a flow (Opus-like: PT 111, 160 bytes of payload).
pub fn rtp_frame(f: &Flow, seq: u16) -> Vec<u8> {
    let payload = rtp(111, seq, u32::from(seq) * 960, 0x5500_0000 | f.id, 160);
    pktbuild::udp4(
        f.client.to_be_bytes(),
        f.sport,
        f.server.to_be_bytes(),
        f.dport,
        &payload,
    )
}

/// RTP frames after the STUN request, per flow, in the live pool.
pub const RTP_PER_FLOW: u16 = 3;

/// The live frame pool: round 0 the STUN request of every flow, then rounds
/// of RTP (sequence 1..=3); a flow's frames are `flows` frames apart, so
/// consecutive frames always belong to different flows and addresses.
pub fn live_pool(set: &PrefixSet, seed: u64, traffic: Traffic, flow_count: usize) -> Vec<Vec<u8>> {
    let fl = flows(set, seed, traffic, flow_count, 0);
    let mut pool = Vec::with_capacity(fl.len() * (1 + RTP_PER_FLOW as usize));
    pool.extend(fl.iter().map(stun_frame));
    for seq in 1..=RTP_PER_FLOW {
        pool.extend(fl.iter().map(|f| rtp_frame(f, seq)));
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sets_are_disjoint_and_deterministic() {
        let a = PrefixSet::random(5000, 7).unwrap();
        let b = PrefixSet::random(5000, 7).unwrap();
        assert_eq!(a.prefixes, b.prefixes);
        assert_eq!(a.len(), 5000);
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
            let t = a.target(i, 3);
            assert!(a.contains(t));
        }
        let mut rng = Rng(1);
        for _ in 0..1000 {
            assert!(!a.contains(outside(&a, &mut rng)));
        }
    }

    #[test]
    fn live_frames_have_one_length() {
        let set = PrefixSet::random(50, 1).unwrap();
        for t in [Traffic::Match, Traffic::NoMatch] {
            let pool = live_pool(&set, 1, t, 16);
            assert_eq!(pool.len(), 64);
            assert!(pool.iter().all(|f| f.len() == FRAME_LEN));
        }
    }

    #[test]
    fn overlapping_input_is_flattened() {
        let s = PrefixSet::from_overlapping(vec![
            (0x0a00_0000, 8),
            (0x0a01_0000, 16),
            (0x0b00_0001, 24),
            (0x0b00_0000, 24),
        ]);
        assert_eq!(s.prefixes, vec![(0x0a00_0000, 8), (0x0b00_0000, 24)]);
        assert!(s.contains(0x0a7f_0001));
        assert!(!s.contains(0x0b00_0100));
        assert_eq!(s.covered(0x0a00_0000, 0xffff), 0x1_0000);
        assert_eq!(s.covered(0x0b00_0000, 0xffff), 256);
        assert_eq!(s.covered(0x0c00_0000, 0xffff), 0);
        let host32 = PrefixSet::from_overlapping(vec![(0x0102_0304, 32), (0x0102_0305, 32)]);
        assert_eq!(host32.prefixes, vec![(0x0102_0304, 32), (0x0102_0305, 32)]);
        assert!(host32.contains(0x0102_0305) && !host32.contains(0x0102_0306));
    }
}
