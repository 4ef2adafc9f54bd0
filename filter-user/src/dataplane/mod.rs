//! The data plane: the eBPF object, its pinned maps and the tables written
//! into them. It takes built tables and policy values; it knows nothing of
//! list files or configuration.

pub mod loader;
pub mod mapio;
pub mod pins;
pub mod tables;
