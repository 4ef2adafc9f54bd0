//! `cargo xtask bench [--quick]`: side-by-side benchmark.
//!
//! xtask orchestrates; `ffbench` (filter-user/src/bin/ffbench, built here in
//! release mode) does everything that needs aya or raw sockets. Per prefix
//! set (N random prefixes, then the bundled lists if any):
//!
//! 1. `ffbench set` writes the set; every contestant gets exactly it;
//! 2. `ffbench kernel`: control plane (load, install, swap, map memory) and
//!    BPF_PROG_TEST_RUN cost of flowfilter by packet kind;
//! 3. live, for each contestant on the receiving veth (none, XDP_DROP,
//!    flowfilter, nftables, iptables + ipset, xdp-filter): `ffbench live`
//!    sends matching and non-matching traffic and reads the receiver's CPU
//!    time per frame.
//!
//! Then `report` turns the raw figures into tables (medians, spreads,
//! ratios to XDP_DROP) in `target/bench/report.md` and `report.json`.
//! Everything created (namespaces, veth pair, filters, bpffs mount, work
//! files) is removed at the end, on error and on Ctrl-C too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use serde_json::Value;

use crate::{is_root, root, run, step};

mod env;
mod report;

use env::{Env, RX_IF, RX_NS, TX_IF, TX_NS, check_interrupted, sh};
use report::{Contestant, LiveRun, Meta, SetRun};

/// N for the full run and for `--quick`.
const FULL_N: [usize; 4] = [10, 10_000, 100_000, 1_000_000];
const QUICK_N: [usize; 2] = [10, 100_000];

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask bench",
    about = "Side-by-side benchmark (needs root)"
)]
struct Args {
    /// N = 10 and 100k, short windows (under 90 s once built).
    #[arg(long)]
    quick: bool,
    /// Prefix counts to measure instead of the defaults (e.g. `--n 10,100000`).
    #[arg(long, value_delimiter = ',')]
    n: Vec<usize>,
    /// Directory of list files (`*.txt`, `*.lst`) for the real-lists row
    /// (default: the repository's `lists/`, skipped when it holds none).
    #[arg(long)]
    lists: Option<PathBuf>,
    /// Traffic generator: `xdp-live` (XDP live frames, fast) or `af-packet`.
    #[arg(long, default_value = "xdp-live")]
    generator: String,
    /// Skip the live (veth) measurements.
    #[arg(long)]
    no_live: bool,
    /// Skip BPF_PROG_TEST_RUN and the control plane.
    #[arg(long)]
    no_kernel: bool,
}

/// Window lengths and counts.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub windows: usize,
    pub window_ms: u64,
    pub warmup_ms: u64,
    pub own_windows: usize,
    pub frames: usize,
    pub rounds: usize,
    pub swaps: usize,
}

const QUICK: Timing = Timing {
    windows: 3,
    window_ms: 300,
    warmup_ms: 200,
    own_windows: 1,
    frames: 500,
    rounds: 3,
    swaps: 2,
};

const FULL: Timing = Timing {
    windows: 5,
    window_ms: 1000,
    warmup_ms: 500,
    own_windows: 2,
    frames: 2000,
    rounds: 5,
    swaps: 3,
};

/// `cargo xtask bench ...`
pub fn bench(args: &[String]) -> Result<()> {
    let a = Args::try_parse_from(std::iter::once("bench".to_string()).chain(args.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !is_root() {
        bail!(
            "the benchmark needs root (namespaces, XDP, nftables, ipset): run `sudo -E cargo xtask bench`"
        );
    }
    if !["xdp-live", "af-packet"].contains(&a.generator.as_str()) {
        bail!("--generator must be xdp-live or af-packet");
    }
    let timing = if a.quick { QUICK } else { FULL };
    let sizes: Vec<usize> = if !a.n.is_empty() {
        a.n.clone()
    } else if a.quick {
        QUICK_N.to_vec()
    } else {
        FULL_N.to_vec()
    };
    if let Some(&bad) = sizes.iter().find(|&&n| n == 0 || n > 4_000_000) {
        bail!("--n {bad}: give prefix counts from 1 to 4000000");
    }

    step("bench: build the helper (cargo build --release -p filter-user --bin ffbench)");
    run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "filter-user",
        "--bin",
        "ffbench",
    ]))?;
    let target = target_dir()?;
    let ffbench = target.join("release").join("ffbench");
    if !ffbench.is_file() {
        bail!("{} was not built", ffbench.display());
    }
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let lists = a.lists.clone().or_else(|| {
        let d = root().join("lists");
        has_lists(&d).then_some(d)
    });
    let lists_note = match &lists {
        Some(d) => format!("lists from {}", d.display()),
        None => "no bundled lists (the repository's lists/ holds no *.txt or *.lst): that row is skipped".into(),
    };

    if !a.no_live && std::thread::available_parallelism().map_or(1, std::num::NonZero::get) < 2 {
        bail!(
            "the live measurements need 2 CPUs (generator on CPU 0, receiver on CPU 1); use --no-live"
        );
    }
    let _lock = env::RunLock::take()?;
    env::catch_signals();
    // From here on: the benchmark proper (the build above is not counted).
    let started = Instant::now();
    let meta = Meta::collect(&a.generator, a.quick, args, timing, &lists_note);
    let work = std::env::temp_dir().join(format!("ffbench-{}", std::process::id()));
    step("bench: namespaces ffb-tx / ffb-rx, veth pair, bpffs");
    let mut world = Env::up(work)?;
    let runner = Runner {
        ffbench: &ffbench,
        timing,
        generator: a.generator.clone(),
        live: !a.no_live,
        kernel: !a.no_kernel,
    };

    let mut runs = Vec::new();
    let mut problems = Vec::new();
    let mut jobs: Vec<(String, Vec<String>)> = sizes
        .iter()
        .map(|n| (n.to_string(), vec!["--n".to_string(), n.to_string()]))
        .collect();
    if let Some(d) = &lists {
        jobs.push((
            "lists".into(),
            vec!["--lists".into(), d.display().to_string()],
        ));
    }
    let result = (|| -> Result<()> {
        for (label, set_args) in &jobs {
            match runner.set_run(&mut world, label, set_args) {
                Ok(r) => runs.push(r),
                Err(e) => {
                    // Ctrl-C, or a contestant's state that could not be
                    // removed: stop. Anything else: this set is skipped.
                    check_interrupted()?;
                    if world.dirty() {
                        return Err(e);
                    }
                    eprintln!("  set {label} skipped: {e:#}");
                    problems.push(format!("set {label} skipped: {e:#}"));
                }
            }
        }
        Ok(())
    })();
    // Clean up before writing the report, so nothing is left if writing fails.
    drop(world);
    if let Err(e) = &result {
        eprintln!("\nbench stopped: {e:#}");
        if runs.is_empty() {
            return result;
        }
        eprintln!("writing the report of what was measured");
    }

    let elapsed = started.elapsed().as_secs_f64();
    let (md, json) = report::render(&meta, &runs, elapsed, result.as_ref().err(), &problems);
    let md_path = out_dir.join("report.md");
    let json_path = out_dir.join("report.json");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("{md}");
    eprintln!(
        "report: {} and {} ({elapsed:.0} s)",
        md_path.display(),
        json_path.display()
    );
    result
}

/// The cargo target directory (honours CARGO_TARGET_DIR and config).
fn target_dir() -> Result<PathBuf> {
    let out = crate::output(Command::new("cargo").args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))
    .context("`cargo metadata` failed")?;
    let v: Value = serde_json::from_str(&out).context("parsing `cargo metadata`")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` gave no target_directory")
}

fn has_lists(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.filter_map(Result::ok).any(|e| {
            let p = e.path();
            p.is_file() && p.extension().is_some_and(|x| x == "txt" || x == "lst")
        })
    })
}

struct Runner<'a> {
    ffbench: &'a Path,
    timing: Timing,
    generator: String,
    live: bool,
    kernel: bool,
}

impl Runner<'_> {
    /// Run ffbench; its stdout is one JSON object.
    fn ffbench(&self, args: &[String]) -> Result<Value> {
        check_interrupted()?;
        let out = Command::new(self.ffbench)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.ffbench.display()))?;
        if !out.status.success() {
            check_interrupted()?;
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            bail!(
                "ffbench {}: {}",
                args.first().map_or("", String::as_str),
                if err.is_empty() {
                    format!("exited with {}", out.status)
                } else {
                    err.to_string()
                }
            );
        }
        serde_json::from_slice(&out.stdout).context("parsing ffbench output")
    }

    fn live_args(&self, set: &Path, contestant: &str, traffic: &str) -> Vec<String> {
        let t = self.timing;
        [
            "live",
            "--set",
            &set.display().to_string(),
            "--contestant",
            contestant,
            "--traffic",
            traffic,
            "--rx-ns",
            RX_NS,
            "--tx-ns",
            TX_NS,
            "--rx-if",
            RX_IF,
            "--tx-if",
            TX_IF,
            "--windows",
            &t.windows.to_string(),
            "--window-ms",
            &t.window_ms.to_string(),
            "--warmup-ms",
            &t.warmup_ms.to_string(),
            "--own-windows",
            &t.own_windows.to_string(),
            "--generator",
            &self.generator,
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    /// One live run; a failure is recorded in the result (the bench goes on
    /// with the other contestants), Ctrl-C is returned.
    fn live(
        &self,
        c: Contestant,
        set: &Path,
        contestant: &str,
        traffic: &str,
        extra: &[String],
    ) -> Result<LiveRun> {
        eprintln!("  live: {} ({traffic})", c.label());
        let mut args = self.live_args(set, contestant, traffic);
        args.extend_from_slice(extra);
        let r = self.ffbench(&args);
        check_interrupted()?;
        if let Err(e) = &r {
            eprintln!("  {} failed: {e:#}", c.label());
        }
        Ok(LiveRun {
            contestant: c,
            result: r.map_err(|e| format!("{e:#}")),
            setup_ms: None,
            memory: None,
            note: None,
        })
    }

    /// Everything for one prefix set.
    fn set_run(&self, world: &mut Env, label: &str, set_args: &[String]) -> Result<SetRun> {
        step(&format!("bench: prefix set {label}"));
        let set_path = world.work.join(format!("set-{label}.txt"));
        let mut args = vec!["set".to_string()];
        args.extend_from_slice(set_args);
        args.extend(["--out".into(), set_path.display().to_string()]);
        let info = self.ffbench(&args)?;
        let n = info["prefixes"].as_u64().unwrap_or(0) as usize;
        let what = info["what"].as_str().unwrap_or("").to_string();
        eprintln!("  {what}: {n} prefixes");
        let prefixes: Vec<String> = std::fs::read_to_string(&set_path)?
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let mut run = SetRun {
            lists: label == "lists",
            n,
            what,
            kernel: Err("not run".into()),
            live: Vec::new(),
        };

        if self.kernel {
            eprintln!("  control plane and BPF_PROG_TEST_RUN");
            let t = self.timing;
            run.kernel = self
                .ffbench(&[
                    "kernel".into(),
                    "--set".into(),
                    set_path.display().to_string(),
                    "--frames".into(),
                    t.frames.to_string(),
                    "--rounds".into(),
                    t.rounds.to_string(),
                    "--swaps".into(),
                    t.swaps.to_string(),
                ])
                .map_err(|e| format!("{e:#}"));
            if let Err(e) = &run.kernel {
                eprintln!("  flowfilter (kernel) failed: {e}");
            }
        }
        if !self.live {
            return Ok(run);
        }
        // Non-matching first: nothing flowfilter learns from the calls can touch it.
        let both = "nomatch,match";
        run.live
            .push(self.live(Contestant::None, &set_path, "external", both, &[])?);
        run.live
            .push(self.live(Contestant::XdpDrop, &set_path, "xdp-drop", "match", &[])?);
        run.live
            .push(self.live(Contestant::Flowfilter, &set_path, "flowfilter", both, &[])?);

        eprintln!("  nftables: loading {n} prefixes");
        match world.nft_up(&prefixes) {
            Ok(ms) => {
                let mut r = self.live(Contestant::Nftables, &set_path, "external", both, &[])?;
                r.setup_ms = Some(ms);
                run.live.push(r);
            }
            Err(e) => run.live.push(LiveRun::failed(
                Contestant::Nftables,
                format!("setup: {e:#}"),
            )),
        }
        world.nft_down()?;

        eprintln!("  iptables + ipset: loading {n} prefixes");
        match world.ipset_up(&prefixes) {
            Ok((ms, mem)) => {
                let mut r =
                    self.live(Contestant::IptablesIpset, &set_path, "external", both, &[])?;
                r.setup_ms = Some(ms);
                r.memory = mem;
                run.live.push(r);
            }
            Err(e) => run.live.push(LiveRun::failed(
                Contestant::IptablesIpset,
                format!("setup: {e:#}"),
            )),
        }
        world.ipset_down()?;

        eprintln!("  xdp-filter");
        let r = self.xdp_filter(world, &set_path)?;
        run.live.push(r);
        world.xdp_filter_down()?;
        // The limit again, so that it brackets the others in time.
        run.live
            .push(self.live(Contestant::XdpDrop, &set_path, "xdp-drop", "match", &[])?);
        Ok(run)
    }

    fn xdp_filter(&self, world: &mut Env, set: &Path) -> Result<LiveRun> {
        let c = Contestant::XdpFilter;
        let (map, prog) = match world.xdp_filter_up() {
            Ok(x) => x,
            Err(e) => return Ok(LiveRun::failed(c, format!("setup: {e:#}"))),
        };
        let fill = match self.ffbench(&[
            "fill-xdp-filter".into(),
            "--set".into(),
            set.display().to_string(),
            "--map".into(),
            map.display().to_string(),
        ]) {
            Ok(v) => v,
            Err(e) => return Ok(LiveRun::failed(c, format!("filling its map: {e:#}"))),
        };
        if fill["filled"].as_u64() == Some(0) {
            let cap = fill["capacity"].as_u64().unwrap_or(0);
            let mut r = LiveRun::failed(c, String::new());
            r.result = Err(String::new());
            r.note = Some(format!("holds at most {cap} exact addresses"));
            return Ok(r);
        }
        let mut r = self.live(
            c,
            set,
            "external",
            "nomatch,match",
            &["--prog-id".into(), prog.to_string()],
        )?;
        r.setup_ms = fill["fill_ms"].as_f64();
        Ok(r)
    }
}

/// `sh` re-exported for the report's machine description.
pub(crate) fn quiet(cmd: &mut Command) -> Option<String> {
    sh(cmd).ok()
}
