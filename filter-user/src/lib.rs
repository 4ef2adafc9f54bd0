//! flowfilter userspace: loader, lists, tables, captures, replay, daemon and CLI.

pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod lists;
pub mod loader;
pub mod mapio;
pub mod metrics;
pub mod pins;
pub mod policy;
pub mod replay;
pub mod report;
pub mod state;
pub mod subscribers;
pub mod tables;
pub mod update;
