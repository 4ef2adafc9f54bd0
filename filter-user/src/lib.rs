//! flowfilter userspace: loader, lists, tables, captures, replay, daemon and CLI.

pub mod capture;
pub mod lists;
pub mod tables;
