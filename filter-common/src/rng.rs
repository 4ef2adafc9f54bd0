//! The one seeded random generator of every test: filter-common's and
//! filter-user's unit tests, the root tests, the harness and ffbench (host
//! only: with `cfg(test)` or feature `pktbuild`). Pure integer code; the XDP
//! program does not use it.

use std::vec::Vec;

use crate::decide::mix64;

/// splitmix64 (a Weyl sequence through the `mix64` finaliser the product
/// hashes with): small, fast and deterministic, so a failure names input
/// that comes back with the same seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// The unsigned integers [`Rng::below`] and [`Rng::range`] draw.
pub trait Draw: Copy {
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}

macro_rules! draw {
    ($($t:ty),*) => {$(
        impl Draw for $t {
            fn to_u64(self) -> u64 {
                self as u64
            }
            fn from_u64(v: u64) -> Self {
                v as $t
            }
        }
    )*};
}
draw!(u8, u16, u32, u64, usize);

impl Rng {
    /// A generator from `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Next 128 random bits.
    pub fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform in `0..n` (n > 0; the tiny modulo bias does not matter here).
    pub fn below<T: Draw>(&mut self, n: T) -> T {
        T::from_u64(self.next_u64() % n.to_u64())
    }

    /// Uniform in `lo..=hi`.
    pub fn range<T: Draw>(&mut self, lo: T, hi: T) -> T {
        let (lo, hi) = (lo.to_u64(), hi.to_u64());
        T::from_u64(lo + self.next_u64() % (hi - lo + 1))
    }

    /// True with `percent` percent probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// `N` random bytes.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes(N));
        a
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::Rng;

    /// The stream is splitmix64's (its published outputs for seed 0): the
    /// harness and ffbench use fixed seeds, and their traffic must not
    /// change under them.
    #[test]
    fn the_stream_is_splitmix64() {
        let mut r = Rng::new(0);
        let x: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            x,
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f
            ]
        );
        let mut r = Rng::new(0);
        assert_eq!(r.bytes(3), [0xaf, 0xcd, 0x1d]);
        assert_eq!(r.next_u128(), 0x6e78_9e6a_a1b9_65f4_06c4_5d18_8009_454f);
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn range_and_below_stay_in_bounds_and_reach_both_ends() {
        let mut r = Rng::new(1);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v: usize = r.range(10, 14);
            assert!((10..=14).contains(&v), "{v}");
            seen[v - 10] = true;
            assert!(r.below(3u64) < 3);
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        assert_eq!(r.bytes(13).len(), 13);
    }
}
