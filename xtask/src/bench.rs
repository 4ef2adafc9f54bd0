//! `cargo xtask bench [--quick]`: side-by-side benchmark.
//!
//! xtask orchestrates; `ffbench` (tests/src/bin/ffbench, built here in
//! release mode) does everything that needs aya or raw sockets. Per prefix
//! set (random IPv4 sets of N prefixes, IPv6 sets, the 1M mix and hosts
//! sets, then the bundled lists if any):
//!
//! 1. `ffbench set` writes the set; every contestant gets exactly it;
//! 2. `ffbench kernel`: control plane (load, install, swap, map memory) and
//!    BPF_PROG_TEST_RUN cost of flowfilter by packet kind;
//! 3. live, for each contestant on the receiving veth (the floors XDP_DROP
//!    and xdp_parse_drop before and after the others, no filter,
//!    flowfilter, nftables, iptables + ipset, xdp-filter): `ffbench live`
//!    sends each traffic kind (match, nomatch, flood, junk) and reads the
//!    receiver's CPU time per frame.
//!
//! Then `report` turns the raw figures into tables (medians, spreads,
//! ratios to the floors) in `target/bench/report.md` and `report.json`.
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
use report::{Contestant, LiveRun, Meta, SetKind, SetRun};

/// IPv4 random-set sizes for the full run and for `--quick`.
const FULL_N: [usize; 4] = [10, 10_000, 100_000, 1_000_000];
const QUICK_N: [usize; 2] = [10, 100_000];
/// IPv6 set sizes.
const FULL_V6: [usize; 3] = [10, 10_000, 100_000];
const QUICK_V6: [usize; 2] = [10, 100_000];
/// Size of the mix and hosts sets (and of the random set's memory row).
const MILLION: usize = 1_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask bench",
    about = "Side-by-side benchmark (needs root)"
)]
struct Args {
    /// Random IPv4 N = 10 and 100k, IPv6 N = 10 and 100k, the 1M sets'
    /// control plane and memory only, short windows.
    #[arg(long)]
    quick: bool,
    /// Random IPv4 prefix counts instead of the defaults (e.g. `--n
    /// 10,100000`); with it, the IPv6 and 1M mix/hosts sets run only when
    /// `--v6` / `--million` ask for them.
    #[arg(long, value_delimiter = ',')]
    n: Vec<usize>,
    /// IPv6 prefix counts (default: 10,10000,100000; --quick 10,100000).
    #[arg(long, value_delimiter = ',')]
    v6: Vec<usize>,
    /// The three 1M IPv4 sets (random, mix, hosts): control plane and memory
    /// (and, without --quick, live match/nomatch on mix and hosts).
    #[arg(long)]
    million: bool,
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
    /// Calls in the live match/nomatch pools (default 65,536).
    #[arg(long)]
    flows: Option<usize>,
    /// Live runs of flowfilter and the floors only (no nftables, iptables +
    /// ipset, xdp-filter or stack-only runs): for quick comparisons.
    #[arg(long)]
    flowfilter_only: bool,
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

/// What is measured on one set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KernelPlan {
    /// Control plane, memory and BPF_PROG_TEST_RUN.
    Full,
    /// Control plane and memory.
    MemoryOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LivePlan {
    /// Every contestant, every traffic kind it runs.
    All,
    /// The floors and flowfilter on match and nomatch.
    Flowfilter,
    None,
}

/// One prefix set to measure.
#[derive(Clone, Debug)]
struct Job {
    kind: SetKind,
    n: usize,
    kernel: KernelPlan,
    live: LivePlan,
}

impl Job {
    fn label(&self) -> String {
        format!("{}-{}", self.kind.key(), self.n)
    }
}

/// The sets of a run, in order.
fn jobs(a: &Args) -> Vec<Job> {
    let given = !a.n.is_empty();
    let v4: Vec<usize> = if given {
        a.n.clone()
    } else if a.quick {
        QUICK_N.to_vec()
    } else {
        FULL_N.to_vec()
    };
    let v6: Vec<usize> = if !a.v6.is_empty() {
        a.v6.clone()
    } else if given {
        Vec::new()
    } else if a.quick {
        QUICK_V6.to_vec()
    } else {
        FULL_V6.to_vec()
    };
    // The 1M memory rows are control plane: nothing to do without it.
    let million = (a.million || !given) && !(a.quick && a.no_kernel);
    let mut out: Vec<Job> = v4
        .iter()
        .map(|&n| Job {
            kind: SetKind::Random,
            n,
            kernel: KernelPlan::Full,
            live: LivePlan::All,
        })
        .collect();
    out.extend(v6.iter().map(|&n| Job {
        kind: SetKind::V6,
        n,
        kernel: KernelPlan::Full,
        live: LivePlan::Flowfilter,
    }));
    if million {
        // --quick: memory rows only (about 10 s for the three); the full
        // bench also runs live match/nomatch on mix and hosts.
        let (kernel, live) = if a.quick {
            (KernelPlan::MemoryOnly, LivePlan::None)
        } else {
            (KernelPlan::Full, LivePlan::Flowfilter)
        };
        if !v4.contains(&MILLION) {
            out.push(Job {
                kind: SetKind::Random,
                n: MILLION,
                kernel: KernelPlan::MemoryOnly,
                live: LivePlan::None,
            });
        }
        for kind in [SetKind::Mix, SetKind::Hosts] {
            out.push(Job {
                kind,
                n: MILLION,
                kernel,
                live,
            });
        }
    }
    out
}

/// `cargo xtask bench ...`
pub fn bench(args: &[String]) -> Result<()> {
    let (a, timing) = parse_args(args)?;
    let mut jobs = jobs(&a);
    let (ffbench, out_dir) = build_ffbench()?;
    let (lists, lists_note) = lists_job(&a, &mut jobs);

    if !a.no_live && std::thread::available_parallelism().map_or(1, std::num::NonZero::get) < 2 {
        bail!(
            "the live measurements need 2 CPUs (generator on CPU 0, receiver on CPU 1); use --no-live"
        );
    }
    let _lock = env::RunLock::take()?;
    env::catch_signals();
    // From here on: the benchmark proper (the build above is not counted).
    let started = Instant::now();
    let (generator, generator_note) = if a.generator == "xdp-live" && !a.no_live {
        probe_generator(&ffbench)?
    } else {
        (a.generator.clone(), None)
    };
    let mut meta = Meta::collect(&generator, a.quick, args, timing, &lists_note);
    meta.generator_note = generator_note;
    let work = std::env::temp_dir().join(format!("ffbench-{}", std::process::id()));
    step("bench: namespaces ffb-tx / ffb-rx, veth pair, bpffs");
    let mut world = Env::up(work)?;
    let runner = Runner {
        ffbench: &ffbench,
        timing,
        generator,
        live: !a.no_live,
        kernel: !a.no_kernel,
        flows: a.flows,
        flowfilter_only: a.flowfilter_only,
    };

    let mut runs = Vec::new();
    let mut problems = Vec::new();
    let result = run_jobs(
        &runner,
        &mut world,
        &jobs,
        lists.as_deref(),
        &mut runs,
        &mut problems,
    );
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
    write_report(&out_dir, &md, &json, elapsed)?;
    result
}

/// The bench's arguments, checked (root, generator, prefix counts), and the
/// window timing they ask for.
fn parse_args(args: &[String]) -> Result<(Args, Timing)> {
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
    if let Some(&bad) = a.n.iter().chain(&a.v6).find(|&&n| n == 0 || n > 4_000_000) {
        bail!("--n/--v6 {bad}: give prefix counts from 1 to 4000000");
    }
    Ok((a, timing))
}

/// Build ffbench in release mode; its path and the report directory
/// (created).
fn build_ffbench() -> Result<(PathBuf, PathBuf)> {
    step("bench: build the helper (cargo build --release -p flowfilter-tests --bin ffbench)");
    run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "flowfilter-tests",
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
    Ok((ffbench, out_dir))
}

/// The lists directory (given, else the repository's `lists/` when it holds
/// lists), with the real-lists job added for it, and the report's note on
/// it.
fn lists_job(a: &Args, jobs: &mut Vec<Job>) -> (Option<PathBuf>, String) {
    let lists = a.lists.clone().or_else(|| {
        let d = root().join("lists");
        has_lists(&d).then_some(d)
    });
    if let Some(d) = &lists {
        jobs.push(Job {
            kind: SetKind::Lists,
            n: 0,
            kernel: KernelPlan::Full,
            live: LivePlan::All,
        });
        eprintln!("lists: {}", d.display());
    }
    let lists_note = match &lists {
        Some(d) => format!("lists from {}", d.display()),
        None => "no bundled lists (the repository's lists/ holds no *.txt or *.lst): that row is skipped".into(),
    };
    (lists, lists_note)
}

/// Every set in turn, its runs and skipped sets recorded; stops at Ctrl-C
/// or when a contestant's state could not be removed.
fn run_jobs(
    runner: &Runner,
    world: &mut Env,
    jobs: &[Job],
    lists: Option<&Path>,
    runs: &mut Vec<SetRun>,
    problems: &mut Vec<String>,
) -> Result<()> {
    for job in jobs {
        let label = job.label();
        let set_args = match job.kind {
            SetKind::Lists => vec![
                "--lists".to_string(),
                lists.map(|d| d.display().to_string()).unwrap_or_default(),
            ],
            k => vec![
                "--n".into(),
                job.n.to_string(),
                "--kind".into(),
                k.key().into(),
            ],
        };
        match runner.set_run(world, job, &set_args) {
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
}

/// Write report.md and report.json to `out_dir` and print the markdown.
fn write_report(out_dir: &Path, md: &str, json: &Value, elapsed: f64) -> Result<()> {
    let md_path = out_dir.join("report.md");
    let json_path = out_dir.join("report.json");
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    std::fs::write(&json_path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("{md}");
    eprintln!(
        "report: {} and {} ({elapsed:.0} s)",
        md_path.display(),
        json_path.display()
    );
    Ok(())
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

/// The generator to use when xdp-live is asked for: xdp-live when the
/// kernel runs XDP live frames, else af-packet with a note saying why (some
/// kernels refuse live frames even to root).
fn probe_generator(ffbench: &Path) -> Result<(String, Option<String>)> {
    let v = run_ffbench(ffbench, &["probe-live".to_string()])?;
    if v["live_frames"].as_bool() == Some(true) {
        return Ok(("xdp-live".into(), None));
    }
    let why = v["error"].as_str().unwrap_or("refused").to_string();
    eprintln!(
        "warning: this kernel refuses XDP live frames ({why}): the live runs use the af-packet generator, \
         whose receiver is not saturated, so its ns/packet include wake-ups and do not compare with xdp-live runs; \
         the programs' own cost (section 2) and the in-kernel cost (section 3) still do"
    );
    Ok((
        "af-packet".into(),
        Some(format!(
            "af-packet, because this kernel refuses xdp-live ({why}): the receiver is not saturated, so \
             section 1's ns/packet include its wake-ups and do not compare with runs made with xdp-live; \
             compare ratios within this run, and sections 2 and 3"
        )),
    ))
}

/// Run `ffbench ARGS`; its stdout is one JSON object.
fn run_ffbench(ffbench: &Path, args: &[String]) -> Result<Value> {
    check_interrupted()?;
    let out = Command::new(ffbench)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", ffbench.display()))?;
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

struct Runner<'a> {
    ffbench: &'a Path,
    timing: Timing,
    generator: String,
    live: bool,
    kernel: bool,
    flows: Option<usize>,
    flowfilter_only: bool,
}

impl Runner<'_> {
    /// Run ffbench; its stdout is one JSON object.
    fn ffbench(&self, args: &[String]) -> Result<Value> {
        run_ffbench(self.ffbench, args)
    }

    fn live_args(&self, set: &Path, contestant: &str, traffic: &str, floor: bool) -> Vec<String> {
        let t = self.timing;
        // A floor runs twice per set (its windows are pooled): half the
        // windows each time.
        let windows = if floor {
            t.windows.div_ceil(2).max(2)
        } else {
            t.windows
        };
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
            &windows.to_string(),
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
        .chain(
            self.flows
                .into_iter()
                .flat_map(|n| ["--flows".to_string(), n.to_string()]),
        )
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
        let floor = matches!(c, Contestant::XdpDrop | Contestant::XdpParseDrop);
        let mut args = self.live_args(set, contestant, traffic, floor);
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
    fn set_run(&self, world: &mut Env, job: &Job, set_args: &[String]) -> Result<SetRun> {
        let (mut run, set_path) = self.write_set(world, job, set_args)?;
        if self.kernel {
            self.kernel_run(&mut run, job, &set_path);
        }
        if !self.live || job.live == LivePlan::None {
            return Ok(run);
        }
        self.live_runs(world, &mut run, job, &set_path)?;
        Ok(run)
    }

    /// `ffbench set`: write the job's set to the work directory; the run
    /// record for it (no kernel figures yet) and the set file's path.
    fn write_set(&self, world: &Env, job: &Job, set_args: &[String]) -> Result<(SetRun, PathBuf)> {
        let label = job.label();
        step(&format!("bench: prefix set {label}"));
        let set_path = world.work.join(format!("set-{label}.txt"));
        let mut args = vec!["set".to_string()];
        args.extend_from_slice(set_args);
        args.extend(["--out".into(), set_path.display().to_string()]);
        let info = self.ffbench(&args)?;
        let n = info["prefixes"].as_u64().unwrap_or(0) as usize;
        let family = info["family"].as_u64().unwrap_or(4) as u8;
        let what = info["what"].as_str().unwrap_or("").to_string();
        eprintln!("  {what}: {n} prefixes");
        let run = SetRun {
            kind: job.kind,
            family,
            n,
            what,
            kernel: Err("not run".into()),
            live: Vec::new(),
        };
        Ok((run, set_path))
    }

    /// `ffbench kernel`: control plane and memory (and BPF_PROG_TEST_RUN on
    /// a full plan) into `run.kernel`; a failure is recorded there.
    fn kernel_run(&self, run: &mut SetRun, job: &Job, set_path: &Path) {
        eprintln!(
            "  control plane and memory{}",
            if job.kernel == KernelPlan::Full {
                ", BPF_PROG_TEST_RUN"
            } else {
                ""
            }
        );
        let t = self.timing;
        let mut args = vec![
            "kernel".into(),
            "--set".into(),
            set_path.display().to_string(),
            "--frames".into(),
            t.frames.to_string(),
            "--rounds".into(),
            t.rounds.to_string(),
            "--swaps".into(),
            t.swaps.to_string(),
        ];
        if job.kernel == KernelPlan::MemoryOnly {
            args.push("--memory-only".into());
        }
        run.kernel = self.ffbench(&args).map_err(|e| format!("{e:#}"));
        match &run.kernel {
            Err(e) => eprintln!("  flowfilter (kernel) failed: {e}"),
            Ok(k) => {
                if let Some(e) = k["install_error"].as_str() {
                    eprintln!("  flowfilter refused the set: {e}");
                }
            }
        }
    }

    /// The live runs of a set its plan asks for: the floors first and last,
    /// the stack alone, flowfilter and (on IPv4 with every contestant) the
    /// others.
    fn live_runs(
        &self,
        world: &mut Env,
        run: &mut SetRun,
        job: &Job,
        set_path: &Path,
    ) -> Result<()> {
        // The set flowfilter refuses (seen by `ffbench kernel`): its live
        // run would fail the same way.
        let refused = run
            .kernel
            .as_ref()
            .ok()
            .and_then(|k| k["install_error"].as_str())
            .map(|e| format!("flowfilter refused the set: {e}"));
        if job.live == LivePlan::Flowfilter && refused.is_some() {
            run.live.push(LiveRun::failed(
                Contestant::Flowfilter,
                refused.unwrap_or_default(),
            ));
            return Ok(());
        }
        // Non-matching first: nothing flowfilter learns from the calls can
        // touch it; the junk that tries to teach it before the calls; the
        // flood, which fills the flow table, last.
        let all = if run.family == 4 {
            "nomatch,junk,match,flood"
        } else {
            "nomatch,match"
        };
        let both = "nomatch,match";
        let floors = if job.live == LivePlan::All { all } else { both };
        let floor_runs = |run: &mut SetRun| -> Result<()> {
            for (c, name) in [
                (Contestant::XdpDrop, "xdp-drop"),
                (Contestant::XdpParseDrop, "xdp-parse-drop"),
            ] {
                run.live.push(self.live(c, set_path, name, floors, &[])?);
            }
            Ok(())
        };
        floor_runs(run)?;
        if job.live == LivePlan::All && !self.flowfilter_only {
            run.live
                .push(self.live(Contestant::None, set_path, "external", both, &[])?);
        }
        run.live.push(match refused {
            Some(e) => LiveRun::failed(Contestant::Flowfilter, e),
            None => self.live(Contestant::Flowfilter, set_path, "flowfilter", floors, &[])?,
        });
        if job.live == LivePlan::All && run.family == 4 && !self.flowfilter_only {
            self.others(world, run, set_path)?;
        }
        // The floors again, so that they bracket the others in time.
        floor_runs(run)?;
        Ok(())
    }

    /// nftables, iptables + ipset and xdp-filter on an IPv4 set.
    fn others(&self, world: &mut Env, run: &mut SetRun, set_path: &Path) -> Result<()> {
        let n = run.n;
        let prefixes: Vec<String> = std::fs::read_to_string(set_path)?
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains(':'))
            .map(str::to_string)
            .collect();
        eprintln!("  nftables: loading {n} prefixes");
        let setup = world.nft_up(&prefixes).map(|ms| (ms, None));
        let r = self.external(Contestant::Nftables, set_path, "nomatch,match,flood", setup)?;
        run.live.push(r);
        world.nft_down()?;

        eprintln!("  iptables + ipset: loading {n} prefixes");
        let setup = world.ipset_up(&prefixes);
        let r = self.external(Contestant::IptablesIpset, set_path, "nomatch,match", setup)?;
        run.live.push(r);
        world.ipset_down()?;

        eprintln!("  xdp-filter");
        let r = self.xdp_filter(world, set_path)?;
        run.live.push(r);
        world.xdp_filter_down()?;
        Ok(())
    }

    /// The live run (`traffic`) of an external contestant after its `setup`
    /// (load time in ms, set memory), or a failed run naming why the setup
    /// failed.
    fn external(
        &self,
        c: Contestant,
        set_path: &Path,
        traffic: &str,
        setup: Result<(f64, Option<u64>)>,
    ) -> Result<LiveRun> {
        let (ms, memory) = match setup {
            Ok(x) => x,
            Err(e) => return Ok(LiveRun::failed(c, format!("setup: {e:#}"))),
        };
        let mut r = self.live(c, set_path, "external", traffic, &[])?;
        r.setup_ms = Some(ms);
        r.memory = memory;
        Ok(r)
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
