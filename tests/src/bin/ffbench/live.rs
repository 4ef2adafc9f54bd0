//! Live measurement on the veth pair: a generator pinned to one CPU sends
//! prebuilt frames (see `traffic`) in the sender namespace; the
//! receiving veth's threaded NAPI kthread, pinned to the other CPU, does all
//! the receive work (XDP, or GRO + netif_receive_skb + netfilter + the IP
//! stack). Per window: that thread's CPU time (schedstat) and the frames the
//! receiving veth handled.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aya::Ebpf;
use aya::programs::{ProgramInfo, Xdp, XdpMode, loaded_programs};
use aya::sys::{Stats, enable_stats};
use filter_user::dataplane::loader::Filter;
use serde_json::{Value, json};

use crate::kernel::{
    XDP_DROP_PROGRAM, XDP_PARSE_DROP_PROGRAM, load_program, load_with_set, program_of,
};
use crate::pools::{Traffic, expect_passed, live_pool};
use crate::sets::PrefixSet;
use crate::sys;
use crate::traffic::{GenConfig, GenKind, Generator};

/// What runs on the receiving veth.
/// Calls the live traffic keeps going by default (`--flows`); the in-kernel
/// `udp-tracked-65536-calls` kind runs as many.
pub const DEFAULT_FLOWS: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Contestant {
    /// Nothing attached by this process (the stack alone, or a filter the
    /// caller set up: nftables, iptables, xdp-filter).
    External,
    /// The trivial XDP_DROP program.
    XdpDrop,
    /// Parse like flowfilter, read 32 payload bytes, XDP_DROP: the floor.
    XdpParseDrop,
    /// flowfilter with the set installed (category whatsapp, policy drop).
    Flowfilter,
}

#[derive(Clone, Debug, clap::Args)]
pub struct LiveArgs {
    /// Prefix set file (`ffbench set`).
    #[arg(long)]
    pub set: PathBuf,
    #[arg(long, default_value_t = crate::SEED)]
    pub seed: u64,
    #[arg(long, value_enum)]
    pub contestant: Contestant,
    /// Traffic kinds, comma-separated: match, nomatch, flood, junk.
    #[arg(long, default_value = "match,nomatch")]
    pub traffic: String,
    #[arg(long)]
    pub rx_ns: String,
    #[arg(long)]
    pub tx_ns: String,
    #[arg(long)]
    pub rx_if: String,
    #[arg(long)]
    pub tx_if: String,
    #[arg(long, default_value_t = 0)]
    pub gen_cpu: usize,
    #[arg(long, default_value_t = 1)]
    pub rx_cpu: usize,
    /// Measured windows per traffic kind.
    #[arg(long, default_value_t = 5)]
    pub windows: usize,
    #[arg(long, default_value_t = 1000)]
    pub window_ms: u64,
    #[arg(long, default_value_t = 500)]
    pub warmup_ms: u64,
    /// Extra windows with BPF run-time statistics on (XDP program's own cost).
    #[arg(long, default_value_t = 2)]
    pub own_windows: usize,
    /// An XDP program attached by someone else whose own cost to read.
    #[arg(long)]
    pub prog_id: Option<u32>,
    /// Flows in the frame pools of match, nomatch and junk (see `pools`).
    #[arg(long, default_value_t = DEFAULT_FLOWS)]
    pub flows: usize,
    /// Frames (address pairs) in the flood pool.
    #[arg(long, default_value_t = 4096)]
    pub flood_frames: usize,
    /// SCHED_FIFO priority for the receiver's NAPI thread (0: leave it under
    /// the normal scheduler), so other tasks on its CPU do not cut its work
    /// into pieces.
    #[arg(long, default_value_t = 50)]
    pub rx_fifo: i32,
    /// How frames are sent.
    #[arg(long, value_enum, default_value_t = GenKind::XdpLive)]
    pub generator: GenKind,
    /// Frames per sendmmsg call or XDP live-frames batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

/// Counters at one instant.
#[derive(Clone, Copy, Debug)]
struct Snap {
    at: Instant,
    napi_ns: u64,
    cpu_busy_ns: u64,
    rx: sys::DevStats,
    tx: sys::DevStats,
    routed_drops: u64,
    sent: u64,
}

struct Namespaces {
    rx: File,
    tx: File,
}

impl Namespaces {
    fn open(rx: &str, tx: &str) -> Result<Self> {
        let open =
            |n: &str| File::open(format!("/run/netns/{n}")).with_context(|| format!("netns {n}"));
        Ok(Namespaces {
            rx: open(rx)?,
            tx: open(tx)?,
        })
    }

    fn enter(f: &File) -> Result<()> {
        // SAFETY: setns on a namespace fd; affects this thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn snap(ns: &Namespaces, a: &LiveArgs, napi: i32, sent: u64) -> Result<Snap> {
    Namespaces::enter(&ns.tx)?;
    let tx = sys::dev_stats(&a.tx_if)?;
    Namespaces::enter(&ns.rx)?;
    let rx = sys::dev_stats(&a.rx_if)?;
    Ok(Snap {
        at: Instant::now(),
        napi_ns: sys::run_ns(napi)?,
        cpu_busy_ns: sys::cpu_busy_ns(a.rx_cpu)?,
        rx,
        tx,
        routed_drops: sys::routing_drops()?,
        sent,
    })
}

fn window(a: &Snap, b: &Snap) -> Value {
    json!({
        "secs": (b.at - a.at).as_secs_f64(),
        "napi_ns": b.napi_ns - a.napi_ns,
        "cpu_busy_ns": b.cpu_busy_ns.saturating_sub(a.cpu_busy_ns),
        "rx_packets": b.rx.rx_packets - a.rx.rx_packets,
        "rx_bytes": b.rx.rx_bytes - a.rx.rx_bytes,
        "rx_dropped": b.rx.rx_dropped - a.rx.rx_dropped,
        "tx_packets": b.tx.tx_packets - a.tx.tx_packets,
        "tx_dropped": b.tx.tx_dropped - a.tx.tx_dropped,
        "routed_drops": b.routed_drops - a.routed_drops,
        "sent": b.sent - a.sent,
    })
}

/// Run-time statistics of the program measured for its own cost.
enum OwnProg<'a> {
    Filter(&'a mut Filter),
    Floor(&'a Ebpf, &'static str),
    Id(u32),
    None,
}

fn prog_stats(p: &mut OwnProg) -> Result<Option<(u64, u64)>> {
    let info: ProgramInfo = match p {
        OwnProg::None => return Ok(None),
        OwnProg::Filter(f) => f.xdp()?.info()?,
        OwnProg::Floor(obj, name) => {
            let prog: &Xdp = obj
                .program(name)
                .with_context(|| format!("no {name} program"))?
                .try_into()?;
            prog.info()?
        }
        OwnProg::Id(id) => loaded_programs()
            .filter_map(Result::ok)
            .find(|i| i.id() == *id)
            .with_context(|| format!("no loaded BPF program with id {id}"))?,
    };
    Ok(Some((info.run_time().as_nanos() as u64, info.run_count())))
}

/// What this process attached to the receiving veth (detached on drop;
/// `filter` first).
struct Attached {
    filter: Option<Filter>,
    floor: Option<(Ebpf, &'static str)>,
}

/// Attach `a.contestant` to the receiving veth in native XDP (flowfilter
/// with `set` installed).
fn attach(a: &LiveArgs, set: &PrefixSet) -> Result<Attached> {
    let mut floor = None;
    let mut filter = None;
    match a.contestant {
        Contestant::External => {}
        Contestant::XdpDrop | Contestant::XdpParseDrop => {
            let name = if a.contestant == Contestant::XdpDrop {
                XDP_DROP_PROGRAM
            } else {
                XDP_PARSE_DROP_PROGRAM
            };
            let mut obj = load_program(name)?;
            program_of(&mut obj, name)?
                .attach(&a.rx_if, XdpMode::Driver)
                .with_context(|| format!("attaching {name} to {} (native)", a.rx_if))?;
            floor = Some((obj, name));
        }
        Contestant::Flowfilter => {
            let mut f = load_with_set(Some(set))?;
            f.xdp()?
                .attach(&a.rx_if, XdpMode::Driver)
                .with_context(|| format!("attaching flowfilter to {} (native)", a.rx_if))?;
            filter = Some(f);
        }
    }
    Ok(Attached { filter, floor })
}

/// The live measurement: the contestant attached, then per traffic kind a
/// warm-up, the measured windows and the program's own-cost windows.
pub fn live(a: &LiveArgs) -> Result<Value> {
    let kinds: Vec<Traffic> = a
        .traffic
        .split(',')
        .map(|s| Traffic::parse(s.trim()))
        .collect::<Result<_>>()?;
    // This thread mostly sleeps; keep it off the receiving CPU.
    sys::pin(0, a.gen_cpu)?;
    let ns = Namespaces::open(&a.rx_ns, &a.tx_ns)?;
    Namespaces::enter(&ns.rx)?;
    let set = PrefixSet::read(&a.set)?;

    let t = Instant::now();
    let mut attached = attach(a, &set)?;
    let attach_ms = t.elapsed().as_secs_f64() * 1e3;
    let napi = sys::napi_thread(&a.rx_if)?;
    sys::pin(napi, a.rx_cpu).context("pinning the NAPI thread")?;
    sys::set_fifo(napi, a.rx_fifo).context("NAPI thread priority")?;

    let setup = Setup {
        a,
        ns: &ns,
        set: &set,
        napi,
        gen_cfg: GenConfig {
            kind: a.generator,
            ns: a.tx_ns.clone(),
            ifname: a.tx_if.clone(),
            cpu: a.gen_cpu,
            batch: a.batch,
        },
    };
    let mut results = Vec::new();
    for kind in kinds {
        results.push(setup.kind(kind, &mut attached)?);
    }
    drop(attached);
    Ok(json!({
        "contestant": format!("{:?}", a.contestant),
        "generator": format!("{:?}", a.generator),
        "prefixes": set.len(),
        "family": set.family(),
        "attach_ms": attach_ms,
        "napi_pid": napi,
        "results": results,
    }))
}

/// What every traffic kind's run uses: the arguments, the namespaces, the
/// set, the receiver's NAPI thread and where the generator sends.
struct Setup<'a> {
    a: &'a LiveArgs,
    ns: &'a Namespaces,
    set: &'a PrefixSet,
    napi: i32,
    gen_cfg: GenConfig,
}

impl Setup<'_> {
    /// One traffic kind: its frame pool, the flows primed (flowfilter), the
    /// generator started, the windows measured, the generator stopped and
    /// the ring drained; returns the kind's result.
    fn kind(&self, kind: Traffic, attached: &mut Attached) -> Result<Value> {
        let a = self.a;
        let count = if kind == Traffic::Flood {
            a.flood_frames
        } else {
            a.flows
        };
        let t = Instant::now();
        let (pool, prime) = live_pool(self.set, a.seed, kind, count)?;
        let pool_ms = t.elapsed().as_secs_f64() * 1e3;
        let pool_frames = pool.frames.len();
        let (max_len, mean_len) = (pool.max_len(), pool.loop_mean_len());
        let t = Instant::now();
        if let Some(f) = attached.filter.as_ref() {
            // Established calls: each flow's opening STUN request (the
            // pool's first round) through the program once, so flow state
            // does not depend on which frames the veth ring happened to drop.
            for frame in &pool.frames[..prime] {
                f.run(frame).context("priming flows")?;
            }
        }
        let mut own = match (&mut attached.filter, &attached.floor, a.prog_id) {
            (Some(f), _, _) => OwnProg::Filter(f),
            (_, Some((obj, name)), _) => OwnProg::Floor(obj, name),
            (_, _, Some(id)) => OwnProg::Id(id),
            _ => OwnProg::None,
        };
        let prime_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let generator = Generator::start(pool, &self.gen_cfg)?;
        let start_ms = t.elapsed().as_secs_f64() * 1e3;
        let run = self.measure(&generator, &mut own);
        let sent = generator.finish()?;
        let (windows, owns) = run?;
        // Let the ring drain before the next kind.
        std::thread::sleep(Duration::from_millis(100));
        Ok(json!({
            "traffic": kind.name(),
            "pool_frames": pool_frames,
            "pool_ms": pool_ms,
            "prime_ms": prime_ms,
            "gen_start_ms": start_ms,
            "primed": prime,
            "flows": count,
            "frame_len_max": max_len,
            "frame_len_mean": mean_len,
            "expect_passed": expect_passed(kind),
            "windows": windows,
            "own": owns,
            "gen_sent": sent,
        }))
    }

    /// While `generator` sends: the warm-up, then the measured windows
    /// (receiver counters), then with `own` the windows with BPF run-time
    /// statistics on.
    fn measure(
        &self,
        generator: &Generator,
        own: &mut OwnProg,
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let (a, ns, napi) = (self.a, self.ns, self.napi);
        std::thread::sleep(Duration::from_millis(a.warmup_ms));
        let mut windows = Vec::new();
        let mut prev = snap(ns, a, napi, generator.sent())?;
        for _ in 0..a.windows {
            std::thread::sleep(Duration::from_millis(a.window_ms));
            let next = snap(ns, a, napi, generator.sent())?;
            windows.push(window(&prev, &next));
            prev = next;
        }
        let mut owns = Vec::new();
        if a.own_windows > 0 && !matches!(own, OwnProg::None) {
            let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
            // Let the first packets with statistics on go by.
            std::thread::sleep(Duration::from_millis(50));
            let mut prev = prog_stats(own)?.unwrap_or_default();
            for _ in 0..a.own_windows {
                std::thread::sleep(Duration::from_millis(a.window_ms));
                let next = prog_stats(own)?.unwrap_or_default();
                owns.push(json!({"run_ns": next.0 - prev.0, "run_cnt": next.1 - prev.1}));
                prev = next;
            }
        }
        Ok((windows, owns))
    }
}
