//! The payload classifier on its own: an arbitrary head, length and ports.
//!
//! Input layout: payload length (u16, big-endian), source port, destination
//! port, then up to `HEAD_LEN` head bytes (missing ones are zero). The
//! length is independent of the bytes given, as in the XDP program, where
//! the head holds at most `HEAD_LEN` bytes of a longer payload.
//!
//! Invariants: no panic; the class is consistent (see `common`); and head
//! bytes at or beyond the length never change the result: the XDP program
//! does not zero the head between packets.
#![no_main]

mod common;

use filter_common::classify::HEAD_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((fixed, rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes([fixed[0], fixed[1]]));
    let sport = u16::from_be_bytes([fixed[2], fixed[3]]);
    let dport = u16::from_be_bytes([fixed[4], fixed[5]]);
    let mut head = [0u8; HEAD_LEN];
    let n = rest.len().min(HEAD_LEN);
    head[..n].copy_from_slice(&rest[..n]);
    common::classify_checked(&head, len, sport, dport);
});
