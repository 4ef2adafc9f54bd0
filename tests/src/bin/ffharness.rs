//! `ffharness`: the namespace harness from the command line, for
//! `cargo xtask harness up|down|run` and `cargo xtask demo` (which build and
//! call this binary, so the namespace code exists once, in
//! `flowfilter_tests::harness`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use filter_common::classify::label_name;
use flowfilter_tests::harness::evasion::Evasion;
use flowfilter_tests::harness::{
    self, FIXED_PREFIX, GatewayFilter, Harness, HarnessOpts, plan, table,
};

/// The flowfilter veth namespace harness.
#[derive(Parser, Debug)]
#[command(about)]
struct Cli {
    /// Namespace prefix.
    #[arg(long, global = true, default_value = FIXED_PREFIX)]
    prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the namespaces, veths, addresses, routes and lists; keep them.
    Up,
    /// Remove them, and a daemon left on the gateway with its pins
    /// (idempotent).
    Down,
    /// Remove what killed test runs left behind (`ff<pid>x<n>-*` namespaces,
    /// daemons and pins of dead pids).
    Cleanup,
    /// Run a scenario (or `all`) over a harness that is up.
    Run {
        /// Scenario name, or `all`.
        scenario: String,
        /// Over IPv6.
        #[arg(long)]
        v6: bool,
        /// Attach flowfilter (native XDP on gw's veths) for this run with
        /// this policy, e.g. `whatsapp=drop`, `telegram=monitor`
        /// (repeatable). Without it the traffic crosses the gateway as it is
        /// (unfiltered, or filtered by a daemon started separately).
        #[arg(long = "policy", value_name = "CATEGORY=SPEC")]
        policies: Vec<String>,
        /// With --policy: attach by starting `flowfilter run --netns GW`
        /// (pins in /sys/fs/bpf/PREFIX-gw, removed afterwards) instead of
        /// loading the program in this process.
        #[arg(long, requires = "policies")]
        daemon: bool,
        /// Send from caller N (0: the plan's client address; up to
        /// CALLERS - 1: further addresses on the client's veth).
        #[arg(long, default_value_t = 0)]
        caller: u8,
        /// One JSON object per flow instead of a table.
        #[arg(long)]
        json: bool,
        /// Milliseconds between two sends.
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// Media packets per call leg.
        #[arg(long, default_value_t = 30)]
        packets: u32,
        /// With --policy: list the flows the filter tracked afterwards.
        #[arg(long)]
        flows: bool,
        /// Evade the filter in the call scenarios (`ffgen run --evasion`):
        /// frag8, tiny, reorder, overlap, decoys, tcp, none.
        #[arg(long, default_value = "none", value_name = "MODE")]
        evasion: Evasion,
    },
}

fn endpoint(addr: [u8; 16], port: u16) -> SocketAddr {
    let ip = Ipv6Addr::from(addr);
    let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
    SocketAddr::new(ip, port)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ffharness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the subcommand.
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Up => up(&cli.prefix),
        Cmd::Down => down(&cli.prefix),
        Cmd::Cleanup => cleanup(),
        Cmd::Run {
            scenario,
            v6,
            policies,
            json,
            interval_ms,
            packets,
            flows,
            daemon,
            caller,
            evasion,
        } => {
            let mut h = Harness::existing(
                &cli.prefix,
                HarnessOpts {
                    interval: Duration::from_millis(interval_ms),
                    packets,
                    evasion,
                    ..HarnessOpts::default()
                },
            )?;
            if !policies.is_empty() {
                attach(&mut h, &policies, daemon)?;
            }
            let names = scenario_names(&scenario, evasion)?;
            let mut all = Vec::new();
            for n in names {
                all.extend(h.try_run_scenario_from(n, v6, caller)?);
            }
            if json {
                for r in &all {
                    println!("{}", r.to_json());
                }
            } else {
                print!("{}", table(&all));
            }
            print_daemon(&h, flows)?;
            print_library_filter(&h, flows)?;
            Ok(())
        }
    }
}

/// `up`: brings the fixed-name harness `prefix` up, keeps it and prints
/// what it made.
fn up(prefix: &str) -> Result<()> {
    let h = Harness::try_up(HarnessOpts {
        prefix: Some(prefix.to_string()),
        ..HarnessOpts::default()
    })?;
    let lists = h.lists_dir();
    let names = h.persist();
    println!("namespaces: {} {} {}", names.client, names.gw, names.net);
    println!(
        "links: {}:{} <-> {}:{}   {}:{} <-> {}:{}",
        names.client,
        plan::CLIENT_IF,
        names.gw,
        plan::GW_CLIENT_IF,
        names.gw,
        plan::GW_NET_IF,
        names.net,
        plan::NET_IF
    );
    println!(
        "client {} {}   gw {} {} / {} {} (forwarding on)   net {} {}",
        plan::CLIENT4,
        plan::CLIENT6,
        plan::GW_CLIENT4,
        plan::GW_CLIENT6,
        plan::GW_NET4,
        plan::GW_NET6,
        plan::NET4,
        plan::NET6
    );
    println!("services in {} (on lo):", names.net);
    for s in plan::SERVICES {
        println!(
            "  {:<14} {:<22} {:<26} {}",
            s.role,
            s.addr(false),
            s.addr(true),
            s.kind.name()
        );
    }
    println!("lists: {}  (whatsapp.txt, telegram.txt)", lists.display());
    println!("remove with: cargo xtask harness down");
    Ok(())
}

/// `down`: removes the harness `prefix` and prints what went.
fn down(prefix: &str) -> Result<()> {
    let removed = harness::remove_prefix(prefix)?;
    if removed.is_empty() {
        println!("nothing to remove for prefix {prefix}");
    } else {
        println!("removed {}", removed.join(" "));
    }
    Ok(())
}

/// `cleanup`: removes what killed test runs left behind and prints it.
fn cleanup() -> Result<()> {
    let removed = harness::cleanup_stale()?;
    if removed.is_empty() {
        println!("nothing stale to remove");
    } else {
        println!("removed (stale): {}", removed.join(" "));
    }
    Ok(())
}

/// `run --policy`: attaches flowfilter on the gateway with `policies`
/// (`CATEGORY=SPEC`), through a daemon with `daemon`, and says so on stderr.
fn attach(h: &mut Harness, policies: &[String], daemon: bool) -> Result<()> {
    let specs: Vec<(&str, &str)> = policies
        .iter()
        .map(|p| p.split_once('=').context("--policy wants CATEGORY=SPEC"))
        .collect::<Result<_>>()?;
    if daemon {
        h.attach_daemon(&specs)
            .context("starting flowfilter run on the gateway")?;
    } else {
        h.attach_filter(&specs).context("attaching flowfilter")?;
    }
    eprintln!(
        "flowfilter attached (native XDP{}) on {}: {}",
        if daemon { ", daemon" } else { "" },
        h.names().gw,
        policies.join(" ")
    );
    Ok(())
}

/// The scenarios `run` runs: `scenario` itself, or for `all` every
/// standalone scenario `evasion` allows.
fn scenario_names(scenario: &str, evasion: Evasion) -> Result<Vec<&str>> {
    Ok(if scenario == "all" {
        plan::SCENARIOS
            .iter()
            .filter(|s| s.standalone && evasion.allowed_for(s.name))
            .map(|s| s.name)
            .collect()
    } else if plan::scenario(scenario).is_some_and(|s| s.standalone) {
        vec![scenario]
    } else {
        bail!(
            "unknown scenario `{scenario}` (known: all, {})",
            plan::names()
        );
    })
}

/// With a daemon attached: its `stats`, and with `flows` its `flows`, on
/// stderr.
fn print_daemon(h: &Harness, flows: bool) -> Result<()> {
    if let Some(d) = h.daemon() {
        eprint!("{}", d.cli(&["stats"])?);
        if flows {
            eprint!("{}", d.cli(&["flows"])?);
        }
    }
    Ok(())
}

/// With flowfilter loaded by this process: its counters per category, and
/// with `flows` the flows it tracked, on stderr.
fn print_library_filter(h: &Harness, flows: bool) -> Result<()> {
    if let Some(GatewayFilter::Library { filter, .. }) = h.gateway_filter() {
        let lists = h.lists()?;
        let stats = filter.category_stats()?;
        for c in &lists.categories {
            let s = stats[c.id as usize];
            eprintln!(
                "filter {}: seen {} dropped {} monitored {} passed {}",
                c.name, s.seen_packets, s.dropped_packets, s.monitored_packets, s.passed_packets
            );
        }
        if flows {
            for (k, v) in filter.flows()? {
                eprintln!(
                    "flow {} {} <-> {}: category {} label {} flags {:#04x} packets {} dropped {}",
                    if k.proto == 17 { "udp" } else { "ip" },
                    endpoint(k.addr_a, k.port_a),
                    endpoint(k.addr_b, k.port_b),
                    lists.name_of(v.category).unwrap_or("-"),
                    label_name(v.label).unwrap_or("-"),
                    v.flags,
                    v.packets,
                    v.dropped
                );
            }
        }
    }
    Ok(())
}
