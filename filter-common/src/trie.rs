//! Prefix tables of both families: a multibit trie with a 16-bit root and
//! 8-bit strides below it, its nodes compressed into 64-byte units.
//!
//! - The root of a family is a direct array of 65,536 [`Entry`]s (one per
//!   value of the address's first 16 bits), in the `ROOT` map, one block per
//!   (generation, family).
//! - Below it, a node covers 8 more bits: 256 children, each a category or
//!   another node. IPv4 needs at most 2 levels (the third and fourth octet),
//!   IPv6 at most 14. A look-up reads the root entry and then one cache line
//!   per level it descends, whatever the number of prefixes: the cost is
//!   bounded by the prefix lengths present, not by how many there are.
//! - Nodes live in a pool of [`Unit`]s (one BPF array per generation, sized
//!   to what the lists need, behind the `TRIE` array of maps). A node is
//!   stored in the smallest of four forms that holds it:
//!   - [`KIND_SPARSE`]: one unit, at most [`SPARSE_RUNS`] runs of equal
//!     children: a 256-bit run-start bitmap, then one 32-bit entry per run;
//!   - [`KIND_SPARSE_LEAF`]: one unit, children that are all categories, at
//!     most [`SPARSE_LEAF_RUNS`] runs: the bitmap, then one byte per run;
//!   - [`KIND_LEAF256`]: four units, all children categories, one byte each;
//!   - [`KIND_DENSE`]: sixteen units, one 32-bit entry per child.
//!
//!   A sparse node finds a child's run by counting the run starts at or
//!   before it (a rank over the bitmap).
//!
//! The XDP program and userspace (`flowfilter check`, the tests) walk the
//! tables with the same [`lookup`]; userspace builds them (filter-user's
//! `tables`).

/// Bits resolved by the root array.
pub const ROOT_BITS: u32 = 16;
/// Entries of one root block (one generation, one family).
pub const ROOT_LEN: u32 = 1 << ROOT_BITS;
/// Root blocks in the `ROOT` map: generation 0 IPv4, generation 0 IPv6,
/// generation 1 IPv4, generation 1 IPv6.
pub const ROOT_BLOCKS: u32 = 4;
/// Node levels below the root: IPv4.
pub const V4_LEVELS: usize = 2;
/// Node levels below the root: IPv6.
pub const V6_LEVELS: usize = 14;

/// One 64-byte unit of the node pool.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Unit {
    /// The unit as eight little-endian words.
    pub w: [u64; 8],
}

/// A root or node entry: bits 31..29 the kind, then a category (leaf) or
/// the index of the node's first unit.
pub type Entry = u32;

/// Shift of the kind field.
pub const KIND_SHIFT: u32 = 29;
/// Mask of a node's unit index.
pub const INDEX_MASK: u32 = (1 << KIND_SHIFT) - 1;
/// A category: the low 8 bits (0: none).
pub const KIND_LEAF: u32 = 0;
/// One unit: run-start bitmap, [`SPARSE_RUNS`] 32-bit entries.
pub const KIND_SPARSE: u32 = 1;
/// One unit: run-start bitmap, [`SPARSE_LEAF_RUNS`] category bytes.
pub const KIND_SPARSE_LEAF: u32 = 2;
/// Four units: 256 category bytes.
pub const KIND_LEAF256: u32 = 3;
/// Sixteen units: 256 entries.
pub const KIND_DENSE: u32 = 4;
/// Runs a [`KIND_SPARSE`] node holds.
pub const SPARSE_RUNS: usize = 8;
/// Runs a [`KIND_SPARSE_LEAF`] node holds.
pub const SPARSE_LEAF_RUNS: usize = 32;
/// Largest unit index an entry can name.
pub const MAX_UNITS: u32 = INDEX_MASK + 1;

/// A leaf entry.
#[inline(always)]
pub const fn leaf(category: u8) -> Entry {
    category as u32
}

/// An entry naming a node of `kind` at unit `index`.
#[inline(always)]
pub const fn node(kind: u32, index: u32) -> Entry {
    (kind << KIND_SHIFT) | (index & INDEX_MASK)
}

/// The kind of an entry.
#[inline(always)]
pub const fn kind(e: Entry) -> u32 {
    e >> KIND_SHIFT
}

/// Units a node of `kind` takes.
pub const fn units_of(kind: u32) -> u32 {
    match kind {
        KIND_LEAF256 => 4,
        KIND_DENSE => 16,
        KIND_SPARSE | KIND_SPARSE_LEAF => 1,
        _ => 0,
    }
}

/// Index of the root entry for the first 16 address bits `top16`.
#[inline(always)]
pub fn root_index(generation: u32, v6: bool, top16: u32) -> u32 {
    ((generation & 1) * 2 + u32::from(v6)) * ROOT_LEN + (top16 & (ROOT_LEN - 1))
}

/// Run index of child `c` in a sparse node: run starts at or before `c`,
/// minus one (child 0 always starts a run). Straight-line code per word of
/// the bitmap (four paths for the verifier, not one per combination).
#[inline(always)]
pub fn rank(u: &Unit, c: u32) -> u32 {
    let c = c & 0xff;
    // Bits 0..=c of the child's word: 2 << 63 wraps to 0, so bit 63 gives all ones.
    let last = 2u64.wrapping_shl(c & 63).wrapping_sub(1);
    let n = match c >> 6 {
        0 => (u.w[0] & last).count_ones(),
        1 => u.w[0].count_ones() + (u.w[1] & last).count_ones(),
        2 => u.w[0].count_ones() + u.w[1].count_ones() + (u.w[2] & last).count_ones(),
        _ => {
            u.w[0].count_ones()
                + u.w[1].count_ones()
                + u.w[2].count_ones()
                + (u.w[3] & last).count_ones()
        }
    };
    n.saturating_sub(1)
}

/// Byte `i` (0..64) of a unit.
#[inline(always)]
pub fn unit_byte(u: &Unit, i: u32) -> u8 {
    let i = i & 63;
    (u.w[(i >> 3) as usize] >> ((i & 7) * 8)) as u8
}

/// 32-bit entry `i` (0..16) of a unit.
#[inline(always)]
pub fn unit_entry(u: &Unit, i: u32) -> Entry {
    let i = i & 15;
    (u.w[(i >> 1) as usize] >> ((i & 1) * 32)) as u32
}

/// Where the tables live: the XDP program reads maps, userspace an image
/// or the pinned maps.
pub trait TrieMem {
    /// Root entry `index` (see [`root_index`]); a leaf of 0 when absent.
    fn root(&self, index: u32) -> Entry;
    /// Unit `index` of generation `generation`'s pool.
    fn unit(&self, generation: u32, index: u32) -> Option<&Unit>;
    /// The entry, as the walk goes on with it. The XDP program passes it
    /// through map memory, which the verifier does not track, so every
    /// level's node kinds converge into one verifier state (verifier work,
    /// not run time); elsewhere it is the entry itself.
    #[inline(always)]
    fn opaque(&self, e: Entry) -> Entry {
        e
    }
}

/// The child entry `c` of the node `e` names (a leaf of 0 for a unit
/// that is missing, which a well-formed table never has).
#[inline(always)]
pub fn child<M: TrieMem + ?Sized>(m: &M, generation: u32, e: Entry, c: u32) -> Entry {
    let idx = e & INDEX_MASK;
    let c = c & 0xff;
    match kind(e) {
        KIND_SPARSE => match m.unit(generation, idx) {
            Some(u) => unit_entry(u, 8 + (rank(u, c) & (SPARSE_RUNS as u32 - 1))),
            None => leaf(0),
        },
        KIND_SPARSE_LEAF => match m.unit(generation, idx) {
            Some(u) => leaf(unit_byte(
                u,
                32 + (rank(u, c) & (SPARSE_LEAF_RUNS as u32 - 1)),
            )),
            None => leaf(0),
        },
        KIND_LEAF256 => match m.unit(generation, idx + (c >> 6)) {
            Some(u) => leaf(unit_byte(u, c & 63)),
            None => leaf(0),
        },
        KIND_DENSE => match m.unit(generation, idx + (c >> 4)) {
            Some(u) => unit_entry(u, c & 15),
            None => leaf(0),
        },
        _ => e & 0xff,
    }
}

/// Node levels below the root for a family.
#[inline(always)]
pub const fn levels(v6: bool) -> usize {
    if v6 { V6_LEVELS } else { V4_LEVELS }
}

/// The root entry of `addr` (16 bytes; IPv4 as IPv4-mapped IPv6, its
/// address in bytes 12..16): where a look-up starts.
#[inline(always)]
pub fn start<M: TrieMem + ?Sized>(m: &M, generation: u32, addr: &[u8; 16], v6: bool) -> Entry {
    let first = if v6 { 0 } else { 12 };
    let top16 = (u32::from(addr[first & 15]) << 8) | u32::from(addr[(first + 1) & 15]);
    m.root(root_index(generation, v6, top16))
}

/// One level down from `e` (the entry reached after `level` levels): the
/// child for the address's next byte. A leaf stays as it is.
#[inline(always)]
pub fn step<M: TrieMem + ?Sized>(
    m: &M,
    generation: u32,
    e: Entry,
    addr: &[u8; 16],
    v6: bool,
    level: usize,
) -> Entry {
    if kind(e) == KIND_LEAF || level >= levels(v6) {
        return e;
    }
    let first = if v6 { 2 } else { 14 };
    let c = u32::from(addr[(first + level) & 15]);
    m.opaque(child(m, generation, e, c))
}

/// The category a walk ended on: a leaf's, or none for an entry deeper
/// than the family allows (a malformed table).
#[inline(always)]
pub fn finish(e: Entry) -> u8 {
    if kind(e) == KIND_LEAF { e as u8 } else { 0 }
}

/// The category of `addr` in generation `generation`: longest prefix, as
/// built. (The XDP program drives [`step`] with `bpf_loop`, so the
/// verifier checks one level, not fourteen.)
#[inline(always)]
pub fn lookup<M: TrieMem + ?Sized>(m: &M, generation: u32, addr: &[u8; 16], v6: bool) -> u8 {
    let mut e = start(m, generation, addr, v6);
    let mut level = 0;
    while level < levels(v6) && kind(e) != KIND_LEAF {
        e = step(m, generation, e, addr, v6, level);
        level += 1;
    }
    finish(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        assert_eq!(kind(leaf(7)), KIND_LEAF);
        assert_eq!(leaf(7) & 0xff, 7);
        let e = node(KIND_DENSE, 123_456);
        assert_eq!(kind(e), KIND_DENSE);
        assert_eq!(e & INDEX_MASK, 123_456);
        assert_eq!(kind(node(KIND_SPARSE_LEAF, INDEX_MASK)), KIND_SPARSE_LEAF);
        assert_eq!(root_index(1, true, 0x2001), 3 * ROOT_LEN + 0x2001);
    }

    #[test]
    fn rank_counts_run_starts() {
        let mut u = Unit::default();
        for c in [0u32, 5, 63, 64, 200, 255] {
            u.w[(c / 64) as usize] |= 1 << (c % 64);
        }
        let naive = |c: u32| {
            (0..=c)
                .filter(|&i| u.w[(i / 64) as usize] >> (i % 64) & 1 == 1)
                .count() as u32
                - 1
        };
        for c in 0..256 {
            assert_eq!(rank(&u, c), naive(c), "child {c}");
        }
    }

    #[test]
    fn unit_fields() {
        let mut u = Unit::default();
        u.w[5] = 0x1122_3344_5566_7788;
        assert_eq!(unit_byte(&u, 40), 0x88);
        assert_eq!(unit_byte(&u, 47), 0x11);
        assert_eq!(unit_entry(&u, 10), 0x5566_7788);
        assert_eq!(unit_entry(&u, 11), 0x1122_3344);
    }
}
