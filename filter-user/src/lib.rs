//! flowfilter userspace, in layers (docs/ARCHITECTURE.md has the map):
//! [`dataplane`] (the eBPF object, its maps and tables) below [`lists`]
//! (list files) and [`control`] (configuration, state, the install
//! transaction); [`report`], [`replay`], [`daemon`] and [`cli`] on top.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod lists;
pub mod replay;
pub mod report;
