//! IPv4 DIR-24-8 table encoding.
//!
//! Per generation: `V4_ROWS` rows (one per /16) of `[u32; 256]` entries (one
//! per /24), and chunks of `[u8; 256]` (one per /24 block that holds prefixes
//! longer than /24, one byte per address). A lookup is one row read plus, for
//! the few /24 blocks with longer prefixes, one chunk read: the same cost at
//! 10 prefixes as at 1,000,000.
//!
//! Entry encoding: bit 31 set means "see chunk `entry & 0x00FF_FFFF`"
//! (absolute index into the chunk map, generation included); otherwise the
//! low 8 bits are the category (0: none).
//!
//! In front of the rows sits a summary, one `u32` per /16 (256 KiB per
//! generation, cache-resident where the 64 MiB of rows are not): a /16 that
//! is wholly one category (or none, the common case for traffic that matches
//! nothing) is answered there, without touching its row. [`V4_ROW_DETAIL`]
//! means "read the row".

use crate::consts::{V4_ROW_LEN, V4_ROWS};

/// Entry bit: the /24 has longer prefixes; the low 24 bits index a chunk.
pub const V4_EXT: u32 = 1 << 31;
/// Mask of the chunk index in an extended entry.
pub const V4_CHUNK_MASK: u32 = 0x00FF_FFFF;

/// Summary value: the /16 is not uniform, read its row.
pub const V4_ROW_DETAIL: u32 = 1 << 31;

/// The summary of one row: its category when every entry is the same
/// whole-/24 category (0 included), else [`V4_ROW_DETAIL`].
pub fn summarize(row: &[u32; V4_ROW_LEN]) -> u32 {
    let first = row[0];
    if first & V4_EXT == 0 && row.iter().all(|e| *e == first) {
        first & 0xff
    } else {
        V4_ROW_DETAIL
    }
}

/// What one /24 entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V4Entry {
    /// The whole /24 has this category (0: none).
    Category(u8),
    /// Look in this chunk at the address's last octet.
    Chunk(u32),
}

/// Decode a /24 entry.
#[inline(always)]
pub fn decode(entry: u32) -> V4Entry {
    if entry & V4_EXT != 0 {
        V4Entry::Chunk(entry & V4_CHUNK_MASK)
    } else {
        V4Entry::Category(entry as u8)
    }
}

/// Encode a chunk reference.
#[inline(always)]
pub fn encode_chunk(index: u32) -> u32 {
    V4_EXT | (index & V4_CHUNK_MASK)
}

/// Encode a whole-/24 category.
#[inline(always)]
pub fn encode_category(cat: u8) -> u32 {
    cat as u32
}

/// Row index of an address in a generation.
#[inline(always)]
pub fn row_index(generation: u32, addr: u32) -> u32 {
    (generation & 1) * V4_ROWS + (addr >> 16)
}

/// Entry index of an address within its row.
#[inline(always)]
pub fn row_slot(addr: u32) -> usize {
    ((addr >> 8) & 0xff) as usize % V4_ROW_LEN
}

/// Index of an address within a chunk.
#[inline(always)]
pub fn chunk_slot(addr: u32) -> usize {
    (addr & 0xff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        assert_eq!(decode(encode_category(0)), V4Entry::Category(0));
        assert_eq!(decode(encode_category(7)), V4Entry::Category(7));
        assert_eq!(decode(encode_category(255)), V4Entry::Category(255));
        assert_eq!(decode(encode_chunk(0)), V4Entry::Chunk(0));
        assert_eq!(decode(encode_chunk(0x12_3456)), V4Entry::Chunk(0x12_3456));
    }

    #[test]
    fn summaries() {
        assert_eq!(summarize(&[0; V4_ROW_LEN]), 0);
        assert_eq!(summarize(&[encode_category(7); V4_ROW_LEN]), 7);
        let mut row = [encode_category(7); V4_ROW_LEN];
        row[255] = encode_category(8);
        assert_eq!(summarize(&row), V4_ROW_DETAIL);
        let mut row = [0; V4_ROW_LEN];
        row[3] = encode_chunk(0);
        assert_eq!(summarize(&row), V4_ROW_DETAIL);
        // A row of identical chunk references is still detail (chunks differ per address).
        assert_eq!(summarize(&[encode_chunk(5); V4_ROW_LEN]), V4_ROW_DETAIL);
    }

    #[test]
    fn indices() {
        let a = u32::from_be_bytes([10, 20, 30, 40]);
        assert_eq!(row_index(0, a), (10 << 8) + 20);
        assert_eq!(row_index(1, a), V4_ROWS + ((10 << 8) + 20));
        assert_eq!(row_slot(a), 30);
        assert_eq!(chunk_slot(a), 40);
    }
}
