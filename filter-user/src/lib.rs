//! flowfilter userspace: loader, lists, tables, captures, replay, daemon and CLI.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod lists;
pub mod replay;
pub mod report;
