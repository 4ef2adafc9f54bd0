//! `ffbench`: the part of `cargo xtask bench` that needs aya or raw sockets.
//!
//! `cargo xtask bench` builds it (`cargo build --release -p flowfilter-tests
//! --bin ffbench`) and drives it; each subcommand prints one JSON object on stdout
//! (progress and errors go to stderr). Needs root.
//!
//! - `set`: write a deterministic generated prefix set (random, mix, hosts,
//!   v6), or the bundled lists flattened to disjoint prefixes;
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
mod pools;
mod sets;
mod sys;
mod traffic;

use sets::{PrefixSet, SetKind};

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
    /// Write a prefix set file: `--n` generated prefixes, or `--lists DIR`.
    Set {
        /// Number of generated prefixes (disjoint; see `--kind`).
        #[arg(long, conflicts_with = "lists")]
        n: Option<usize>,
        /// Which generated set.
        #[arg(long, value_enum, default_value_t = SetKind::Random)]
        kind: SetKind,
        /// A directory of list files (`*.txt`, `*.lst`; not `allow.txt`):
        /// their prefixes, made disjoint.
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
    /// Whether this kernel runs XDP live frames (the `xdp-live` generator):
    /// `{"live_frames": true}`, or false with the kernel's answer.
    ProbeLive,
}

fn set(
    n: Option<usize>,
    kind: SetKind,
    lists: Option<PathBuf>,
    seed: u64,
    out: &Path,
) -> Result<Value> {
    let t = std::time::Instant::now();
    let (s, what) = match (n, lists) {
        (Some(n), None) => {
            let s = PrefixSet::generate(kind, n, seed)?;
            let what = match kind {
                SetKind::Random => "random disjoint IPv4 prefixes /8../32 in 0.0.0.0/1".into(),
                SetKind::Mix => format!(
                    "disjoint IPv4 prefixes in 0.0.0.0/1, drawn 40% /24, 20% /32, 15% /25–/31, \
                     15% /20–/23, 10% /16–/19 (16 places tried per drawn length, then the length is \
                     drawn again, so the short ones thin out; got {})",
                    s.mix_shares()
                ),
                SetKind::Hosts => "random IPv4 /32s in 0.0.0.0/1".into(),
                SetKind::V6 => {
                    "random disjoint IPv6 prefixes in 2000::/4, /20../64 and ~5% /65../128".into()
                }
            };
            (s, format!("{n} {what}, seed {seed:#x}"))
        }
        (None, Some(dir)) => {
            let (v4, v6, files) = read_lists(&dir)?;
            let raw_len = v4.len() + v6.len();
            (
                PrefixSet::from_overlapping(v4, v6),
                format!(
                    "prefixes of {} ({files} files, {raw_len} entries, made disjoint)",
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
    Ok(json!({
        "prefixes": s.len(),
        "v4": s.prefixes.len(),
        "v6": s.v6.len(),
        "family": s.family(),
        "long_blocks": s.long_blocks(),
        "what": what,
        "ms": t.elapsed().as_secs_f64() * 1e3,
    }))
}

/// The prefixes of every list file (`*.txt`, `*.lst`, one CIDR or address a
/// line) of `dir`, except the allowlist `allow.txt`.
#[allow(clippy::type_complexity)]
fn read_lists(dir: &Path) -> Result<(Vec<(u32, u8)>, Vec<(u128, u8)>, usize)> {
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
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for p in &paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let list = filter_user::lists::parse_list(&p.display().to_string(), &text, true)?;
        v4.extend(list.v4.iter().map(|&(a, l)| (u32::from(a), l)));
        v6.extend(list.v6.iter().map(|&(a, l)| (u128::from(a), l)));
    }
    Ok((v4, v6, paths.len()))
}

fn run() -> Result<Value> {
    match Cli::parse().cmd {
        Cmd::Set {
            n,
            kind,
            lists,
            seed,
            out,
        } => set(n, kind, lists, seed, &out),
        Cmd::Kernel(a) => kernel::kernel(&a),
        Cmd::Live(a) => live::live(&a),
        Cmd::FillXdpFilter(a) => kernel::fill_xdp_filter(&a),
        Cmd::ProbeLive => Ok(match traffic::probe_live()? {
            Ok(()) => serde_json::json!({ "live_frames": true }),
            Err(e) => serde_json::json!({ "live_frames": false, "error": e }),
        }),
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
