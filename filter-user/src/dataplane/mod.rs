//! The data plane: the eBPF object, its pinned maps and the tables written
//! into them. It takes built tables and policy values; it knows nothing of
//! list files or configuration ([`cidr::Cidr`], the prefix value type, is
//! its own; `lists` parses list files into it).

pub mod cidr;
pub mod loader;
pub mod mapio;
pub mod pins;
pub mod tables;
