//! `cargo xtask setup|test|harness|bench|demo|fuzz|man`: the project's own tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod fuzz;
mod harness;

/// Nightly used to build the eBPF program.
const NIGHTLY: &str = "nightly";
/// The dated nightly to install when the machine has none.
const NIGHTLY_DATED: &str = "nightly-2026-05-19";
const BPF_LINKER_VERSION: &str = "0.10.0";
/// Debian packages the root-only tests use, with a binary that shows each is there.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    // `cargo xtask bench`: the contestants and the receiver's settings.
    ("nftables", "nft"),
    ("ipset", "ipset"),
    ("iptables", "iptables"),
    ("xdp-tools", "xdp-filter"),
    ("ethtool", "ethtool"),
];

#[derive(Parser)]
#[command(about = "flowfilter project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (idempotent).
    Setup,
    /// setup, fmt check, clippy (host and eBPF), host unit tests, root-only tests.
    Test,
    /// The veth namespace harness: `up`, `down`, `run SCENARIO`.
    Harness {
        /// Arguments for the harness.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The one-command demo: harness, daemon, every generator, a table per flow.
    Demo {
        /// Arguments for the demo.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Side-by-side benchmark against XDP_DROP, nftables, iptables+ipset, xdp-filter.
    Bench {
        /// Arguments for the benchmark (`--quick`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every cargo-fuzz target in fuzz/ for SECS seconds (nightly).
    Fuzz {
        /// Seconds per target.
        #[arg(default_value_t = fuzz::DEFAULT_SECS)]
        secs: u64,
    },
    /// Write the man page, dist/flowfilter.1 (`flowfilter man`; a unit test
    /// of filter-user fails while the committed page is stale).
    Man,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup(),
        Task::Test => {
            setup()?;
            test()
        }
        Task::Harness { args } => {
            setup()?;
            harness::harness(&args)
        }
        Task::Demo { args } => {
            setup()?;
            harness::demo(&args)
        }
        Task::Bench { args } => {
            setup()?;
            bench::bench(&args)
        }
        Task::Fuzz { secs } => {
            setup()?;
            fuzz::fuzz(secs)
        }
        Task::Man => {
            setup()?;
            man()
        }
    }
}

/// `cargo xtask man`: render the page with the binary, replace
/// dist/flowfilter.1 atomically.
fn man() -> Result<()> {
    step("man: dist/flowfilter.1");
    let mut cmd = Command::new("cargo");
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "filter-user",
        "--bin",
        "flowfilter",
        "--",
        "man",
    ]);
    eprintln!("$ {}", format_cmd(&cmd));
    let out = cmd
        .current_dir(root())
        .output()
        .with_context(|| format!("running {}", format_cmd(&cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            format_cmd(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !out.stdout.windows(4).any(|w| w == b".TH ") {
        bail!("`flowfilter man` printed no man page");
    }
    let path = root().join("dist/flowfilter.1");
    let tmp = path.with_extension("1.tmp");
    std::fs::write(&tmp, &out.stdout).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    eprintln!("wrote {} ({} bytes)", path.display(), out.stdout.len());
    Ok(())
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The cargo arguments that select the harness binaries (ffharness, ffgen).
pub(crate) const HARNESS_BINS: [&str; 6] = [
    "-p",
    "flowfilter-tests",
    "--bin",
    "ffharness",
    "--bin",
    "ffgen",
];

pub(crate) fn step(what: &str) {
    eprintln!("\n==> {what}");
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", format_cmd(cmd));
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("running {}", format_cmd(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", format_cmd(cmd));
    }
    Ok(())
}

pub(crate) fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.current_dir(root()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn format_cmd(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub(crate) fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

/// The nightly toolchain to build eBPF with: `nightly`, else the dated one.
/// `filter-user/build.rs` makes the same choice.
fn nightly() -> Option<String> {
    [NIGHTLY, NIGHTLY_DATED]
        .into_iter()
        .map(str::to_string)
        .find(|t| output(Command::new("rustup").args(["run", t, "rustc", "--version"])).is_some())
}

/// The toolchains, tools and Debian packages every task needs, each
/// installed only when missing (`cargo xtask setup`, and first in the
/// other tasks).
fn setup() -> Result<()> {
    setup_nightly()?;
    setup_bpf_linker()?;
    setup_clippy_rustfmt()?;
    fuzz::ensure_cargo_fuzz()?;
    setup_debian()
}

/// The nightly toolchain that builds the eBPF program, with its rust-src.
fn setup_nightly() -> Result<()> {
    step("setup: nightly toolchain (builds the eBPF program)");
    if let Some(n) = nightly() {
        eprintln!("ok: {n} present");
    } else {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY_DATED,
            "--profile",
            "minimal",
        ]))?;
    }
    let nightly = nightly().context("no nightly toolchain after installing one")?;

    step("setup: rust-src for nightly");
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &nightly,
    ]))
    .unwrap_or_default();
    if comps.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("ok: rust-src present");
    } else {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "clippy",
            "--toolchain",
            &nightly,
        ]))?;
    }
    Ok(())
}

/// bpf-linker at the pinned version.
fn setup_bpf_linker() -> Result<()> {
    step(&format!("setup: bpf-linker {BPF_LINKER_VERSION}"));
    let have = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if have.contains(BPF_LINKER_VERSION) {
        eprintln!("ok: {}", have.trim());
    } else {
        run(Command::new("cargo").args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
        ]))?;
    }
    Ok(())
}

/// clippy and rustfmt on the default toolchain.
fn setup_clippy_rustfmt() -> Result<()> {
    step("setup: clippy and rustfmt");
    if output(Command::new("cargo").args(["clippy", "--version"])).is_some()
        && output(Command::new("cargo").args(["fmt", "--version"])).is_some()
    {
        eprintln!("ok: clippy and rustfmt present");
    } else {
        run(Command::new("rustup").args(["component", "add", "clippy", "rustfmt"]))?;
    }
    Ok(())
}

/// The Debian packages the bench and tests run (installed as root, else an
/// error naming them).
fn setup_debian() -> Result<()> {
    step("setup: Debian packages");
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, bin)| {
            output(Command::new("sh").args(["-c", &format!("command -v {bin}")])).is_none()
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        eprintln!(
            "ok: {}",
            DEBIAN_PACKAGES
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else if is_root() {
        run(Command::new("apt-get").arg("update").arg("-q"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing))?;
    } else {
        bail!(
            "missing Debian packages {missing:?}; install them as root (apt-get install {})",
            missing.join(" ")
        );
    }
    Ok(())
}

fn test() -> Result<()> {
    step("test: format");
    run(Command::new("cargo").args(["fmt", "--all", "--check"]))?;

    step("test: clippy (host crates)");
    run(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;

    step("test: clippy (eBPF crate)");
    let nightly = nightly().context("no nightly toolchain: run `cargo xtask setup`")?;
    run(Command::new("cargo").arg(format!("+{nightly}")).args([
        "clippy",
        "-p",
        "filter-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--target-dir",
        "target/ebpf-clippy",
        "--",
        "-D",
        "warnings",
    ]))?;

    step("test: host unit tests");
    run(Command::new("cargo").args([
        "test",
        "-p",
        "filter-common",
        "-p",
        "filter-user",
        "-p",
        "xtask",
    ]))?;

    fuzz::fuzz(fuzz::TEST_SECS)?;

    step("test: root-only tests (BPF_PROG_TEST_RUN, replay, namespaces), one thread");
    if is_root() {
        // The daemon and harness tests run the real binaries.
        run(Command::new("cargo").args([
            "build",
            "-p",
            "filter-user",
            "-p",
            "flowfilter-tests",
            "--bins",
        ]))?;
        run(Command::new("cargo").args([
            "test",
            "-p",
            "flowfilter-tests",
            "--",
            "--test-threads=1",
        ]))?;
    } else {
        eprintln!(
            "skipped: the root-only tests need root (BPF_PROG_TEST_RUN, network namespaces); run `sudo -E cargo xtask test`"
        );
    }
    eprintln!("\nall tests passed");
    Ok(())
}
