//! Shared between the XDP program (`filter-ebpf`) and userspace (`filter-user`):
//! map key/value types, constants, and the pure packet parser, classifier and
//! per-flow decision logic. Everything here is `no_std`, allocation-free,
//! bounded, and unit-tested on the host; the XDP program calls the very same
//! functions, so a rule is tested once and runs once.
#![no_std]

#[cfg(any(test, feature = "user", feature = "pktbuild"))]
extern crate std;

pub mod classify;
pub mod consts;
pub mod decide;
pub mod flow;
pub mod frag;
pub mod parse;
#[cfg(any(test, feature = "pktbuild"))]
pub mod pktbuild;
#[cfg(any(test, feature = "pktbuild"))]
pub mod rng;
pub mod trie;
pub mod types;

#[cfg(test)]
mod tests;

pub use consts::*;
pub use types::*;
