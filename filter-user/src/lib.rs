//! flowfilter userspace: loader, lists, tables, captures, replay, daemon and CLI.

pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod ifwatch;
pub mod lists;
pub mod loader;
pub mod lock;
pub mod mapio;
pub mod metrics;
pub mod netlink;
pub mod pins;
pub mod policy;
pub mod replay;
pub mod report;
pub mod state;
pub mod subscribers;
pub mod systemd;
pub mod tables;
pub mod update;
