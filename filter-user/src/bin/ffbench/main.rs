//! `ffbench`: the part of `cargo xtask bench` that needs aya or raw sockets.
//!
//! `cargo xtask bench` builds it (`cargo build --release -p filter-user --bin
//! ffbench`) and drives it; each subcommand prints one JSON object on stdout
//! (progress and errors go to stderr). Needs root.
//!
//! - `set`: write a deterministic random prefix set, or the bundled lists
//!   flattened to disjoint IPv4 prefixes;
//! - `kernel`: control plane (load, install, swap, map memory) and
//!   BPF_PROG_TEST_RUN cost by packet kind for one set;
//! - `live`: traffic over a veth pair between two namespaces, receiver CPU
//!   time per frame (see `live.rs`);
//! - `fill-xdp-filter`: the set's target addresses into xdp-filter's map.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

mod kernel;
mod live;
mod sets;
mod sys;
mod traffic;

use sets::PrefixSet;

/// Default seed of every random choice.
pub const SEED: u64 = 0x00f1_0f11;

#[derive(Parser)]
#[command(about = "flowfilter benchmark helper (driven by `cargo xtask bench`)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a prefix set file: `--n` random prefixes, or `--lists DIR`.
    Set {
        /// Number of random prefixes (/8../32, disjoint).
        #[arg(long, conflicts_with = "lists")]
        n: Option<usize>,
        /// A directory of list files (`*.txt`, `*.lst`; not `allow.txt`):
        /// their IPv4 prefixes, made disjoint.
        #[arg(long)]
        lists: Option<PathBuf>,
        #[arg(long, default_value_t = SEED)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Control plane and BPF_PROG_TEST_RUN cost for one set.
    Kernel(kernel::KernelArgs),
    /// Live traffic over the veth pair; receiver CPU time per frame.
    Live(live::LiveArgs),
    /// Fill xdp-filter's IPv4 map with the set's target addresses.
    FillXdpFilter(kernel::FillArgs),
}

fn set(n: Option<usize>, lists: Option<PathBuf>, seed: u64, out: &Path) -> Result<Value> {
    let (s, what) = match (n, lists) {
        (Some(n), None) => (
            PrefixSet::random(n, seed)?,
            format!("{n} random disjoint IPv4 prefixes /8../32 in 0.0.0.0/1, seed {seed:#x}"),
        ),
        (None, Some(dir)) => {
            let (raw, files) = read_lists(&dir)?;
            let raw_len = raw.len();
            (
                PrefixSet::from_overlapping(raw),
                format!(
                    "IPv4 prefixes of {} ({files} files, {raw_len} entries, made disjoint)",
                    dir.display()
                ),
            )
        }
        _ => anyhow::bail!("give --n or --lists"),
    };
    if s.len() == 0 {
        anyhow::bail!("the set is empty");
    }
    s.write(out, &what)?;
    Ok(json!({"prefixes": s.len(), "long_blocks": s.long_blocks(), "what": what}))
}

/// The IPv4 prefixes of every list file (`*.txt`, `*.lst`, one CIDR or
/// address a line) of `dir`, except the allowlist `allow.txt`.
fn read_lists(dir: &Path) -> Result<(Vec<(u32, u8)>, usize)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "txt" || e == "lst")
                && p.file_name().is_some_and(|n| n != "allow.txt")
        })
        .collect();
    paths.sort();
    let mut raw = Vec::new();
    for p in &paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let list = filter_user::lists::parse_list(&p.display().to_string(), &text, true)?;
        raw.extend(list.v4.iter().map(|&(a, l)| (u32::from(a), l)));
    }
    Ok((raw, paths.len()))
}

fn run() -> Result<Value> {
    match Cli::parse().cmd {
        Cmd::Set {
            n,
            lists,
            seed,
            out,
        } => set(n, lists, seed, &out),
        Cmd::Kernel(a) => kernel::kernel(&a),
        Cmd::Live(a) => live::live(&a),
        Cmd::FillXdpFilter(a) => kernel::fill_xdp_filter(&a),
    }
}

/// Cut the middle of very long errors (a verifier log runs to thousands of
/// lines; its end says what went wrong).
fn shorten(msg: &str) -> String {
    let lines: Vec<&str> = msg.lines().collect();
    if lines.len() <= 40 {
        return msg.to_string();
    }
    format!(
        "{}\n[... {} lines cut ...]\n{}",
        lines[..5].join("\n"),
        lines.len() - 30,
        lines[lines.len() - 25..].join("\n")
    )
}

fn main() -> ExitCode {
    match run() {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ffbench: {}", shorten(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
