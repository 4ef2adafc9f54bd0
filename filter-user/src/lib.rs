//! flowfilter userspace, in layers (docs/ARCHITECTURE.md has the map):
//! [`dataplane`] (the eBPF object, its maps and tables) below [`lists`]
//! (list files) and [`control`] (configuration, state, the install
//! transaction); [`report`], [`replay`], [`daemon`] and [`cli`] on top;
//! [`fsutil`] (atomic file replacement) serves every layer.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod fsutil;
pub mod lists;
pub mod replay;
pub mod report;
