//! `flowfilter`: the daemon and CLI of the XDP call-media filter.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use filter_user::capture::read_capture;
use filter_user::cli::{self, ListOp};
use filter_user::config::{Flags, check_ifname, check_netns};
use filter_user::control::Error as CmdError;
use filter_user::daemon::{self, RunRequest};
use filter_user::lists::{Lists, load_dir};
use filter_user::loader::{AttachMode, Filter, LoadOptions};
use filter_user::pins::{DEFAULT_PIN_DIR, PinLayout};
use filter_user::policy::{CategoryPolicy, PolicySpec};
use filter_user::replay::{replay_captured, replay_setup};

/// flowfilter: stop messenger call media at XDP, let everything else through.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// bpffs directory of the pinned maps, program and links (every verb;
    /// for `run`, the configuration's `pin_dir` when not given).
    #[arg(long, global = true, value_name = "DIR")]
    pin_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: adopt or create the pinned filter, attach, install
    /// the lists, reload on SIGHUP, serve metrics. Filtering stays in force
    /// when the daemon stops or dies (unless --detach-on-exit).
    Run {
        /// Configuration file (TOML; flags override it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Interface to attach to (repeatable; replaces the configuration's).
        #[arg(long = "iface", value_name = "IF", value_parser = parse_ifname)]
        interfaces: Vec<String>,
        /// XDP mode: auto (driver, falling back to skb), driver or skb.
        #[arg(long, value_name = "MODE")]
        mode: Option<AttachMode>,
        /// Attach to interfaces of this network namespace (/run/netns/NAME);
        /// everything else (pins, metrics) stays in the daemon's own.
        #[arg(long, value_name = "NAME", value_parser = parse_netns)]
        netns: Option<String>,
        /// Lists directory (default /etc/flowfilter/lists).
        #[arg(long, value_name = "DIR")]
        lists: Option<PathBuf>,
        /// Policy of a category, e.g. `telegram=flows=30%` (repeatable).
        #[arg(long = "policy", value_name = "CATEGORY=SPEC")]
        policies: Vec<CategoryPolicy>,
        /// Accept CIDRs with host bits set, clearing them.
        #[arg(long)]
        normalize: bool,
        /// Serve Prometheus text at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Remove the links and pins on SIGTERM/SIGINT.
        #[arg(long)]
        detach_on_exit: bool,
        /// Replace pins made by another build: swap the program on the links
        /// (bpf_link_update), keep compatible maps, recreate the others.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        subscribers: RunSubscribers,
    },
    /// Have the daemon re-read its configuration and lists (SIGHUP) and wait
    /// for the result; without a daemon, reload here. Exit code 2 when a list
    /// or the configuration is rejected (the old rules stay).
    Reload {
        /// Seconds to wait for the daemon.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Interfaces, program, generation, categories with policies and list
    /// sizes, flow-table use.
    Status {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Packets and bytes per category and label.
    Stats {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Redraw every SECS seconds with rates (Ctrl-C stops).
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
    },
    /// Tracked call flows with labels, age and counters.
    Flows {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Which category and prefix an address matches, why, and what the live
    /// tables say.
    Check {
        /// IP, IP:PORT or [IPv6]:PORT.
        #[arg(value_name = "IP[:PORT]")]
        target: String,
        /// Lists directory to explain with (default: the installed one).
        #[arg(long, value_name = "DIR")]
        lists: Option<PathBuf>,
        /// Accept CIDRs with host bits set in the lists.
        #[arg(long)]
        normalize: bool,
    },
    /// Show or change the category lists (changes are installed at once).
    List {
        #[command(subcommand)]
        op: ListCommand,
    },
    /// Change a category's policy at run time.
    Policy {
        #[command(subcommand)]
        op: PolicyCommand,
    },
    /// Stop the daemon and remove every link, the program and the maps
    /// (filtering stops), or only one interface's link.
    Detach {
        /// Remove only this interface's link.
        #[arg(long = "iface", value_name = "IF", value_parser = parse_ifname)]
        iface: Option<String>,
    },
    /// Run captures (pcap/pcapng) through a private, unattached instance of
    /// the program with BPF_PROG_TEST_RUN and report per flow.
    Replay {
        /// Lists directory: one `CATEGORY.txt` per category, one CIDR a line.
        #[arg(long, value_name = "DIR")]
        lists: Option<PathBuf>,
        /// Policy of a category, e.g. `whatsapp=monitor`, `telegram=flows=30%`,
        /// `whatsapp=drop,scope=udp` (repeatable; default drop, scope media).
        #[arg(long = "policy", value_name = "CATEGORY=SPEC")]
        policies: Vec<CategoryPolicy>,
        /// Accept CIDRs with host bits set, clearing them.
        #[arg(long)]
        normalize: bool,
        /// One JSON object per flow, then a summary line.
        #[arg(long)]
        json: bool,
        /// Seed of the `flows=P%` draw (default: a random one). The wall
        /// clock is the capture's, so a seed makes the replay repeatable.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Subscriber prefixes (default: private and shared address space,
        /// 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
        #[arg(long = "subscribers", value_name = "CIDR", num_args = 1.., value_parser = parse_prefix)]
        subscribers: Vec<filter_user::lists::Cidr>,
        /// Capture files, replayed in the order given.
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
    },
}

/// `flowfilter run`: who the subscribers are for `flows=P%`.
#[derive(clap::Args, Debug)]
struct RunSubscribers {
    /// Interface facing subscribers (repeatable; attached with --iface):
    /// what comes in on it is from a subscriber. Replaces the
    /// configuration's `[subscribers]` rule.
    #[arg(long = "inside", value_name = "IF", value_parser = parse_ifname, conflicts_with = "subscribers")]
    inside: Vec<String>,
    /// Subscriber prefixes (default: private and shared address space).
    /// Replaces the configuration's `[subscribers]` rule.
    #[arg(long = "subscribers", value_name = "CIDR", num_args = 1.., value_parser = parse_prefix)]
    subscribers: Vec<filter_user::lists::Cidr>,
    /// Seed of the `flows=P%` draw (default: random, drawn when the pins
    /// are created); gateways with one seed pick the same subscribers.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum ListCommand {
    /// A category's prefixes, or every category's size.
    Show {
        /// Category (`allow` for the allowlist); all when omitted.
        category: Option<String>,
        /// Lists directory (default: the installed one).
        #[arg(long, value_name = "DIR")]
        lists: Option<PathBuf>,
    },
    /// Add prefixes to a category (creating its list file if needed).
    Add {
        /// Category (`allow` for the allowlist).
        category: String,
        /// CIDRs or addresses.
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
        /// Clear host bits instead of rejecting them.
        #[arg(long)]
        normalize: bool,
    },
    /// Remove prefixes from a category.
    Del {
        /// Category (`allow` for the allowlist).
        category: String,
        /// CIDRs or addresses, as listed.
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
    },
    /// Replace a category's list with FILE (validated first, replaced
    /// atomically).
    Load {
        /// Category (`allow` for the allowlist).
        category: String,
        /// The new list.
        file: PathBuf,
        /// Clear host bits instead of rejecting them.
        #[arg(long)]
        normalize: bool,
    },
    /// Build the category files from the public sources named in the
    /// sources file (each replaced atomically; a failing source leaves its
    /// category as it was). Install them with `flowfilter reload`.
    Update {
        /// Sources file.
        #[arg(long, value_name = "FILE", default_value = filter_user::update::DEFAULT_SOURCES)]
        sources: PathBuf,
        /// Directory the category files are written to.
        #[arg(long, value_name = "DIR", default_value = filter_user::update::DEFAULT_OUT)]
        out: PathBuf,
        /// Write lists that are empty or less than half their previous size.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Set a category's policy (off, monitor, drop, flows=P%, loss=P%,
    /// optionally ,scope=udp); kept until `policy reset`.
    Set {
        /// Category.
        category: String,
        /// Policy spec.
        spec: String,
    },
    /// Drop the `policy set` override: back to the configuration's policy.
    Reset {
        /// Category.
        category: String,
    },
}

/// An error that is the user's input, not a runtime failure (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

fn parse_ifname(s: &str) -> Result<String, String> {
    check_ifname(s).map(|()| s.to_owned())
}

fn parse_prefix(s: &str) -> Result<filter_user::lists::Cidr, String> {
    filter_user::subscribers::parse_prefix(s)
}

fn parse_netns(s: &str) -> Result<String, String> {
    check_netns(s).map(|()| s.to_owned())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowfilter: {e:#}");
            if let Some(hint) = privilege_hint(&e) {
                eprintln!("{hint}");
            }
            if e.downcast_ref::<InputError>().is_some() {
                ExitCode::from(2)
            } else if let Some(c) = e.downcast_ref::<CmdError>() {
                ExitCode::from(c.exit_code())
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Without privileges the kernel answers EPERM/EACCES (or bpffs is simply
/// unreadable, which looks like "nothing pinned"): say what is needed
/// instead of leaving a bare errno.
fn privilege_hint(e: &anyhow::Error) -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 || e.downcast_ref::<InputError>().is_some() {
        return None;
    }
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES)))
            || {
                let text = c.to_string();
                text.contains("Operation not permitted")
                    || text.contains("Permission denied")
                    || text.contains("no pinned state")
            }
    });
    denied.then_some(
        "hint: flowfilter is not running as root: it needs root, or CAP_BPF, CAP_NET_ADMIN and \
         CAP_PERFMON (see dist/flowfilter.service), and read access to the pin directory",
    )
}

/// Resolve `CATEGORY=SPEC` pairs against the categories the lists define.
fn resolve_policies(
    lists: &Lists,
    policies: &[CategoryPolicy],
) -> Result<BTreeMap<u8, PolicySpec>, InputError> {
    let mut out = BTreeMap::new();
    for p in policies {
        let Some(cat) = lists.by_name(&p.category) else {
            return Err(InputError(format!(
                "--policy {}: no category `{}` (known: {})",
                p.category,
                p.category,
                lists.known_names()
            )));
        };
        out.insert(cat.id, p.spec);
    }
    Ok(out)
}

fn load_lists(dir: Option<&PathBuf>, normalize: bool) -> anyhow::Result<Lists> {
    match dir {
        Some(d) => load_dir(d, normalize).map_err(|e| InputError(e.to_string()).into()),
        None => Ok(
            Lists::from_parts(Vec::new(), filter_user::lists::ParsedList::default())
                .map_err(|e| InputError(e.to_string()))?,
        ),
    }
}

/// List notes (duplicates, covered prefixes) on stderr: the first few, then a count.
fn print_notes(lists: &Lists) {
    const SHOWN: usize = 5;
    let notes = lists.all_notes();
    for n in notes.iter().take(SHOWN) {
        eprintln!("note: {n}");
    }
    if notes.len() > SHOWN {
        eprintln!("note: … and {} more notes like these", notes.len() - SHOWN);
    }
}

/// Print a verb's output.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let layout = PinLayout::new(
        cli.pin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
    );
    match cli.command {
        Command::Run {
            config,
            interfaces,
            mode,
            netns,
            lists,
            policies,
            normalize,
            metrics,
            detach_on_exit,
            replace,
            subscribers,
        } => daemon::run(&RunRequest {
            config,
            flags: Flags {
                interfaces,
                mode,
                netns,
                lists,
                normalize,
                pin_dir: cli.pin_dir,
                metrics,
                detach_on_exit,
                policies,
                subscribers: filter_user::subscribers::SubscriberFlags {
                    inside: subscribers.inside,
                    prefixes: subscribers.subscribers,
                    seed: subscribers.seed,
                },
            },
            replace,
        })
        .map_err(Into::into),
        Command::Reload { timeout } => {
            print(&cli::reload(&layout, Duration::from_secs(timeout))?);
            Ok(())
        }
        Command::Status { json } => {
            print(&cli::status(&layout, json)?);
            Ok(())
        }
        Command::Stats { json, watch } => Ok(cli::stats(&layout, json, watch)?),
        Command::Flows { json } => {
            print(&cli::flows(&layout, json)?);
            Ok(())
        }
        Command::Check {
            target,
            lists,
            normalize,
        } => {
            print(&cli::check(&layout, &target, lists.as_deref(), normalize)?);
            Ok(())
        }
        Command::List { op } => list_command(&layout, op),
        Command::Policy { op } => {
            let out = match op {
                PolicyCommand::Set { category, spec } => {
                    cli::policy_set(&layout, &category, &spec)?
                }
                PolicyCommand::Reset { category } => cli::policy_reset(&layout, &category)?,
            };
            print(&out);
            Ok(())
        }
        Command::Detach { iface } => {
            print(&cli::detach(&layout, iface.as_deref())?);
            Ok(())
        }
        Command::Replay {
            lists,
            policies,
            normalize,
            json,
            seed,
            subscribers,
            captures,
        } => {
            // Read everything first: a bad capture or list prints nothing else.
            let mut frames = Vec::new();
            for c in &captures {
                let f = read_capture(c).map_err(|e| InputError(e.to_string()))?;
                frames.extend(f);
            }
            let lists = load_lists(lists.as_ref(), normalize)?;
            print_notes(&lists);
            let policies = resolve_policies(&lists, &policies)?;
            let mut filter = Filter::load(&LoadOptions { trace: true })
                .context("loading a private instance of the XDP program")?;
            filter_user::subscribers::check_count(subscribers.len())
                .map_err(|e| InputError(format!("--subscribers: {e}")))?;
            replay_setup(&mut filter, seed, subscribers).context("setting the subscribers")?;
            filter
                .install(&lists, &policies)
                .context("installing lists and policies")?;
            let report = replay_captured(&mut filter, &lists, &frames).context("replaying")?;
            if json {
                print!("{}", report.to_json_lines());
            } else {
                print!("{}", report.to_table());
            }
            Ok(())
        }
    }
}

/// `flowfilter list update`: exit 2 for a bad sources file, 1 when a
/// category was left as it was.
fn list_update(sources: PathBuf, out: PathBuf, force: bool) -> anyhow::Result<()> {
    let opts = filter_user::update::UpdateOptions {
        sources,
        out,
        force,
        ..filter_user::update::UpdateOptions::default()
    };
    let report = filter_user::update::run_update(&opts).map_err(|e| {
        if e.downcast_ref::<filter_user::update::SourcesError>()
            .is_some()
        {
            anyhow::Error::new(InputError(format!("{e:#}")))
        } else {
            e
        }
    })?;
    println!("{report}");
    if !report.all_written() {
        anyhow::bail!("some categories were left as they were (see above)");
    }
    println!("install them with `flowfilter reload`");
    Ok(())
}

fn list_command(layout: &PinLayout, op: ListCommand) -> anyhow::Result<()> {
    let (op, lists, normalize) = match op {
        ListCommand::Show { category, lists } => (ListOp::Show { category }, lists, false),
        ListCommand::Add {
            category,
            cidrs,
            normalize,
        } => (ListOp::Add { category, cidrs }, None, normalize),
        ListCommand::Del { category, cidrs } => (ListOp::Del { category, cidrs }, None, false),
        ListCommand::Load {
            category,
            file,
            normalize,
        } => (ListOp::Load { category, file }, None, normalize),
        ListCommand::Update {
            sources,
            out,
            force,
        } => return list_update(sources, out, force),
    };
    print(&cli::list(layout, &op, lists.as_deref(), normalize)?);
    Ok(())
}
