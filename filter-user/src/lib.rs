//! flowfilter userspace: loader, lists, tables, captures, replay, daemon and CLI.

pub mod capture;
pub mod lists;
pub mod loader;
pub mod policy;
pub mod replay;
pub mod tables;
