//! `ffgen`: the harness's traffic generators, run inside a namespace with
//! `ip netns exec NS ffgen ...`.
//!
//! * `ffgen run SCENARIO` sends the scenario's traffic from real sockets (a
//!   fixed number of packets at a fixed rate), then prints one JSON line per
//!   flow: `{"role":"client","scenario":..,"flow":..,"proto":..,"local":..,
//!   "remote":..,"sent_pkts":..,"sent_bytes":..,"recv_pkts":..,"recv_bytes":..}`.
//! * `ffgen serve` binds the responder sockets, prints `{"event":"ready"}`,
//!   answers every datagram with one datagram (TCP: every record as its
//!   protocol does; decoys are counted apart and not answered) until its
//!   stdin closes or `--max-secs` pass, then prints one JSON line per flow
//!   it saw (`"role":"server"`).
//! * `ffgen run --evasion MODE SCENARIO` sends a call the way that mode
//!   evades a filter (`flowfilter_tests::harness::evasion`): as IP
//!   fragments from a raw socket, among decoys, or over TCP.
//! * `ffgen list` prints the scenarios.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use flowfilter_tests::harness::evasion::Evasion;
use flowfilter_tests::harness::plan;
use flowfilter_tests::harness::traffic::{self, RunOpts, ServiceSpec};

/// flowfilter harness traffic generators.
#[derive(Parser, Debug)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one scenario as the client; one JSON line per flow on stdout.
    Run {
        /// Scenario name (`ffgen list`).
        scenario: String,
        /// Use the IPv6 addresses of the plan.
        #[arg(long)]
        v6: bool,
        /// Milliseconds between two sends.
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// Media packets per call leg.
        #[arg(long, default_value_t = 30)]
        packets: u32,
        /// Longest wait for missing answers after the last send, in ms.
        #[arg(long, default_value_t = 400)]
        linger_ms: u64,
        /// Seed of the random bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Local address to send from (default: the plan's client address).
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Override a role's address, e.g. `wa-relay=198.51.100.10:3478`.
        #[arg(long = "to", value_name = "ROLE=ADDR:PORT", value_parser = parse_target)]
        targets: Vec<(String, SocketAddr)>,
        /// Evade the filter (call scenarios; non-call ones run as always):
        /// `frag8`, `tiny`, `reorder`, `overlap` (each datagram as two IP
        /// fragments, sent raw), `decoys` (junk, bad-checksum and TTL-1
        /// datagrams on the call's 5-tuple), `tcp` (the calls fall back to
        /// TCP), `none`.
        #[arg(long, default_value = "none", value_name = "MODE")]
        evasion: Evasion,
    },
    /// Answer scenarios until stdin closes; one JSON line per flow on stdout.
    Serve {
        /// A socket to serve, `KIND@ADDR:PORT` (default: every service of
        /// the plan, IPv4 and IPv6).
        #[arg(long = "service", value_name = "KIND@ADDR:PORT")]
        services: Vec<ServiceSpec>,
        /// Stop after this many seconds even if stdin stays open.
        #[arg(long, default_value_t = 60)]
        max_secs: u64,
        /// Seed of the answers' random bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List the scenarios.
    List,
}

fn parse_target(s: &str) -> Result<(String, SocketAddr), String> {
    let (role, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected ROLE=ADDR:PORT"))?;
    let addr = addr.parse().map_err(|e| format!("`{s}`: {e}"))?;
    Ok((role.to_string(), addr))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Run {
            scenario,
            v6,
            interval_ms,
            packets,
            linger_ms,
            seed,
            bind,
            targets,
            evasion,
        } => {
            // A serving phase (whatsapp-callee) ends when stdin closes.
            let stop = stdin_closed();
            let opts = RunOpts {
                interval: Duration::from_millis(interval_ms),
                packets,
                linger: Duration::from_millis(linger_ms),
                seed,
                v6,
                bind,
                targets: targets.into_iter().collect(),
                stop: Some(stop),
                evasion,
                ..RunOpts::default()
            };
            run(&scenario, &opts)
        }
        Cmd::Serve {
            services,
            max_secs,
            seed,
        } => serve(services, max_secs, seed),
        Cmd::List => list(),
    }
}

/// `run`: the scenario as the client, its events as they happen and then
/// one JSON line per flow on stdout.
fn run(scenario: &str, opts: &RunOpts) -> ExitCode {
    let mut announce = |event: &serde_json::Value| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{event}");
        let _ = out.flush();
    };
    match traffic::run_with_events(scenario, opts, &mut announce) {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for l in lines {
                let _ = writeln!(out, "{}", l.to_json());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ffgen run {scenario}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `serve`: answers on `services` (none: the plan's) until stdin closes or
/// `max_secs` pass, then one JSON line per flow on stdout.
fn serve(services: Vec<ServiceSpec>, max_secs: u64, seed: u64) -> ExitCode {
    let services = if services.is_empty() {
        traffic::plan_services()
    } else {
        services
    };
    let responder = match traffic::Responder::bind(&services, seed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ffgen serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{{\"event\":\"ready\",\"services\":{}}}", services.len());
    let _ = std::io::stdout().flush();
    let stop = Arc::new(AtomicBool::new(false));
    let eof = stdin_closed();
    let stop2 = Arc::clone(&stop);
    let serving = std::thread::spawn(move || responder.serve(&stop2));
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    while !eof.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let lines = serving.join().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{}", l.to_json());
    }
    ExitCode::SUCCESS
}

/// `list`: one line per scenario, with what it does under drop.
fn list() -> ExitCode {
    for s in plan::SCENARIOS {
        let what = if !s.standalone {
            "helper"
        } else if s.blocked {
            "blocked under drop"
        } else {
            "passes in every mode"
        };
        println!("{:<18} {what}: {}", s.name, s.about);
    }
    ExitCode::SUCCESS
}

/// A flag set when stdin closes, by a thread that reads it to the end
/// (detached on purpose: it ends at stdin EOF or with the process).
fn stdin_closed() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        set.store(true, Ordering::Relaxed);
    });
    flag
}
