//! Helpers for the root-only integration tests: loading the program with
//! lists and policies, reading counters, finding the shared corpus.
//!
//! Tests panic with context (no `Result` returns) and skip with a printed
//! reason when they cannot run here (not root, corpus absent).

use std::collections::BTreeMap;
use std::path::PathBuf;

use filter_user::control::install::InstallLists as _;
use filter_user::control::policy::PolicySpec;
use filter_user::dataplane::loader::{Filter, LoadOptions};
use filter_user::lists::{Lists, ParsedList, parse_list};

pub mod harness;
pub mod kit;

/// True when running as root; otherwise prints why the test is skipped.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped {test}: needs root (BPF_PROG_TEST_RUN)");
    }
    root
}

/// Return from the calling test, saying why it is skipped, unless it runs
/// as root ([`require_root`]).
#[macro_export]
macro_rules! skip_unless_root {
    ($test:expr) => {
        if !$crate::require_root($test) {
            return;
        }
    };
}

/// Build `Lists` from `(category, text)` pairs and an allowlist text.
pub fn lists(cats: &[(&str, &str)], allow: &str) -> Lists {
    let parts: Vec<(String, ParsedList)> = cats
        .iter()
        .map(|(name, text)| {
            let list = parse_list(&format!("{name}.txt"), text, false)
                .unwrap_or_else(|e| panic!("test list {name}: {e}"));
            ((*name).to_string(), list)
        })
        .collect();
    let allow = parse_list("allow.txt", allow, false).unwrap_or_else(|e| panic!("allow: {e}"));
    Lists::from_parts(parts, allow).unwrap_or_else(|e| panic!("lists: {e}"))
}

/// Resolve `(category, spec)` pairs to ids.
pub fn policies(lists: &Lists, specs: &[(&str, &str)]) -> BTreeMap<u8, PolicySpec> {
    specs
        .iter()
        .map(|(cat, spec)| {
            let id = lists
                .by_name(cat)
                .unwrap_or_else(|| panic!("no category {cat}"))
                .id;
            (id, spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}")))
        })
        .collect()
}

/// Load a private instance with tracing, install `lists` and `specs`.
pub fn load(lists: &Lists, specs: &[(&str, &str)]) -> Filter {
    let mut f = Filter::load(&LoadOptions { trace: true })
        .unwrap_or_else(|e| panic!("loading the XDP program: {e}"));
    f.install(lists, &policies(lists, specs))
        .unwrap_or_else(|e| panic!("installing lists: {e}"));
    f
}

/// `../shared/corpus/pcap` beside the repository, if present.
pub fn corpus_dir() -> Option<PathBuf> {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/pcap"
    ));
    d.is_dir().then_some(d)
}

/// `../shared/data/ranges` beside the repository, if present.
pub fn ranges_dir() -> Option<PathBuf> {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/ranges"
    ));
    d.is_dir().then_some(d)
}
