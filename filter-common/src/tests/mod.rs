//! Host tests of the parser, classifier and decision logic, driven by
//! frames and payloads from [`crate::pktbuild`].

mod classify;
mod decide;
mod parse;
mod pktbuild;
mod signatures;

use crate::classify::{Class, HEAD_LEN, classify};
use crate::parse::{Packet, Parsed, parse_frame};

/// The classifier's input for `payload`: its first `min(len, HEAD_LEN)`
/// bytes in a zeroed array.
fn head(payload: &[u8]) -> [u8; HEAD_LEN] {
    let mut h = [0u8; HEAD_LEN];
    let n = payload.len().min(HEAD_LEN);
    h[..n].copy_from_slice(&payload[..n]);
    h
}

/// Classify a whole payload (ports are not used by the classifier).
fn cls(payload: &[u8]) -> Class {
    classify(&head(payload), payload.len(), 40000, 3478)
}

/// Parse a frame that must be an IP packet.
#[track_caller]
fn ip(frame: &[u8]) -> Packet {
    match parse_frame(frame) {
        Parsed::Ip(p) => p,
        other => panic!("expected an IP packet, got {other:?} for {frame:02x?}"),
    }
}

/// Nothing recognised (a payload of a Telegram-data length may still be a
/// tag candidate: that is a look-up hint, not a recognition).
#[track_caller]
fn assert_none(payload: &[u8]) {
    let c = cls(payload);
    assert_eq!(
        Class {
            tag_candidate: false,
            ..c
        },
        Class::NONE,
        "{} bytes {:02x?}",
        payload.len(),
        &payload[..payload.len().min(32)]
    );
}
