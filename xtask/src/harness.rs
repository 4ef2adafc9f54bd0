//! `cargo xtask harness up|down|run SCENARIO` and `cargo xtask demo`.
//!
//! The harness verbs build and call `ffharness` (tests crate): the namespace
//! code lives once, in `flowfilter_tests::harness`, which the end-to-end
//! tests use too, and xtask stays free of the tests crate's dependencies.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::{is_root, root, run, step};

const USAGE: &str = "usage: cargo xtask harness up | down | cleanup | run SCENARIO|all [--v6] [--policy CATEGORY=SPEC]... [--json] [--interval-ms N] [--packets N]
  up       create namespaces ffh-client, ffh-gw, ffh-net (veths, addresses, routes, lists) and keep them
  down     remove them (idempotent)
  cleanup  remove what killed test runs left behind (ff<pid>x<n>-*)
  run      run a generator scenario over the harness (`up` first); with --policy, flowfilter is
           attached on ffh-gw (native XDP) for the run. Scenarios: whatsapp, whatsapp-inherit,
           telegram, tgcalls, webrtc, messaging, dns, quic, game, all";

/// Where cargo puts the workspace's binaries.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `cargo xtask harness ...`
pub fn harness(args: &[String]) -> Result<()> {
    let Some(verb) = args.first() else {
        bail!("{USAGE}");
    };
    if !matches!(verb.as_str(), "up" | "down" | "cleanup" | "run") {
        bail!("unknown harness verb `{verb}`\n{USAGE}");
    }
    if verb == "run" && args.len() < 2 {
        bail!("`harness run` needs a scenario\n{USAGE}");
    }
    if !is_root() {
        bail!(
            "the harness creates network namespaces and needs root: sudo -E cargo xtask harness {verb}"
        );
    }
    step("harness: build ffharness and ffgen");
    run(Command::new("cargo").arg("build").args(crate::HARNESS_BINS))?;
    let bin = target_dir().join("debug");
    step(&format!("harness {}", args.join(" ")));
    run(Command::new(bin.join("ffharness"))
        .args(args)
        .env("FFGEN", bin.join("ffgen")))
}

/// `cargo xtask demo`: see [`crate::demo`].
pub fn demo(args: &[String]) -> Result<()> {
    crate::demo::demo(args)
}
