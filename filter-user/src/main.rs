//! `flowfilter`: the daemon and CLI of the XDP call-media filter.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use filter_user::cli::{self, ListOp};
use filter_user::control::Error as CmdError;
use filter_user::control::config::{RunFlags, parse_ifname};
use filter_user::control::install::InstallLists as _;
use filter_user::control::lock::ListsLock;
use filter_user::control::policy::{CategoryPolicy, PolicySpec};
use filter_user::control::subscribers::parse_prefix;
use filter_user::daemon::{self, RunRequest};
use filter_user::dataplane::loader::{Filter, LoadOptions};
use filter_user::dataplane::pins::{DEFAULT_PIN_DIR, PinLayout};
use filter_user::lists::{Lists, load_dir};
use filter_user::replay::capture::read_capture;
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
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Have the daemon re-read its configuration and lists (SIGHUP) and wait
    /// for the result; without a daemon, reload here. Exit code 2 when a list
    /// or the configuration is rejected (the old rules stay).
    Reload {
        /// Seconds to wait for the daemon.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// The daemon's configuration file: its `pin_dir` says where the
        /// daemon is, unless --pin-dir is given (`ExecReload=` uses it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Whether filtering is in force (as the kernel says), interfaces,
    /// program, generation, categories with policies and list sizes,
    /// flow-table use. Exit code 0: in force as configured; 3: in force,
    /// no daemon running; 4: degraded (an interface not attached); 5:
    /// nothing pinned.
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
        /// Redraw every SECS seconds with rates (Ctrl-C stops); 0.1 to
        /// 86400.
        #[arg(long, value_name = "SECS", value_parser = parse_watch, allow_negative_numbers = true)]
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
    /// Print a shell completion script, e.g.
    /// `flowfilter completions bash > /etc/bash_completion.d/flowfilter`.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `flowfilter man | man -l -`; the
    /// same page is dist/flowfilter.1 (`cargo xtask man` writes it).
    Man,
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
    /// sources file, fetched over https only (each file replaced atomically;
    /// a failing source leaves its category as it was). Install them with
    /// `flowfilter reload`.
    Update {
        /// Sources file.
        #[arg(long, value_name = "FILE", default_value = filter_user::lists::update::DEFAULT_SOURCES)]
        sources: PathBuf,
        /// Directory the category files are written to.
        #[arg(long, value_name = "DIR", default_value = filter_user::lists::update::DEFAULT_OUT)]
        out: PathBuf,
        /// Write lists that are empty, less than half or more than ten times
        /// their previous size.
        #[arg(long)]
        force: bool,
        /// Accept prefixes broader than /8 (IPv4) or /16 (IPv6), such as
        /// 0.0.0.0/0 (refused otherwise: they drop nearly every call).
        #[arg(long)]
        allow_broad: bool,
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

/// `--watch SECS`: a finite interval from 0.1 s to a day.
fn parse_watch(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if secs.is_finite() && (cli::WATCH_MIN_SECS..=cli::WATCH_MAX_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!(
            "`{s}`: give an interval from {} to {} seconds",
            cli::WATCH_MIN_SECS,
            cli::WATCH_MAX_SECS
        ))
    }
}

/// A verb's own exit code, its output already printed (`status`).
#[derive(Debug, thiserror::Error)]
#[error("exit code {0}")]
struct Exit(u8);

fn main() -> ExitCode {
    // Before anything else: a SIGHUP or SIGTERM to a daemon that is only
    // starting is held until it can handle it, not fatal.
    filter_user::daemon::systemd::hold_signals();
    filter_user::daemon::systemd::init_logging();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        filter_user::daemon::systemd::release_signals();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Exit>().is_some() => {
            ExitCode::from(e.downcast_ref::<Exit>().map_or(1, |x| x.0))
        }
        Err(e) => {
            eprintln!("flowfilter: {e:#}");
            if let Some(hint) = privilege_hint(&e) {
                eprintln!("{hint}");
            }
            if let Some(c) = e.downcast_ref::<CmdError>() {
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
    if rustix::process::geteuid().is_root()
        || e.downcast_ref::<CmdError>().is_some_and(CmdError::is_input)
    {
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
) -> Result<BTreeMap<u8, PolicySpec>, CmdError> {
    let mut out = BTreeMap::new();
    for p in policies {
        let Some(cat) = lists.by_name(&p.category) else {
            return Err(CmdError::Input(format!(
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
        Some(d) => load_dir(d, normalize).map_err(|e| CmdError::Input(e.to_string()).into()),
        None => Ok(
            Lists::from_parts(Vec::new(), filter_user::lists::ParsedList::default())
                .map_err(|e| CmdError::Input(e.to_string()))?,
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

/// Print a verb's output, or hand back its error.
fn print_output(output: Result<String, CmdError>) -> anyhow::Result<()> {
    print(&output?);
    Ok(())
}

/// Do what the command line asks.
fn run(cli: Cli) -> anyhow::Result<()> {
    let layout = PinLayout::new(
        cli.pin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
    );
    match cli.command {
        Command::Run { config, mut flags } => {
            flags.pin_dir = cli.pin_dir;
            daemon::run(&RunRequest { config, flags }).map_err(Into::into)
        }
        Command::Reload { timeout, config } => {
            reload_command(layout, cli.pin_dir.as_ref(), config.as_ref(), timeout)
        }
        Command::Status { json } => status_command(&layout, json),
        Command::Stats { json, watch } => Ok(cli::stats(&layout, json, watch)?),
        Command::Flows { json } => print_output(cli::flows(&layout, json)),
        Command::Check {
            target,
            lists,
            normalize,
        } => print_output(cli::check(&layout, &target, lists.as_deref(), normalize)),
        Command::List { op } => list_command(&layout, op),
        Command::Completions { shell } => {
            print_completions(shell);
            Ok(())
        }
        Command::Man => print_man_page(),
        Command::Policy { op } => policy_command(&layout, &op),
        Command::Detach { iface } => print_output(cli::detach(&layout, iface.as_deref())),
        Command::Replay {
            lists,
            policies,
            normalize,
            json,
            seed,
            subscribers,
            captures,
        } => replay_command(
            lists.as_ref(),
            &policies,
            normalize,
            json,
            seed,
            subscribers,
            &captures,
        ),
    }
}

/// `flowfilter completions SHELL`: the completion script on stdout.
fn print_completions(shell: clap_complete::Shell) {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "flowfilter", &mut out);
}

/// `flowfilter man`: the manual page ([`man_page`]) on stdout.
fn print_man_page() -> anyhow::Result<()> {
    let _ = std::io::stdout()
        .lock()
        .write_all(&man_page(Cli::command())?);
    Ok(())
}

/// `flowfilter reload`: signal the daemon of `layout`, or of the pin
/// directory `config` names when no `--pin-dir` was given.
fn reload_command(
    layout: PinLayout,
    pin_dir: Option<&PathBuf>,
    config: Option<&PathBuf>,
    timeout: u64,
) -> anyhow::Result<()> {
    let layout = match (pin_dir, config) {
        (None, Some(c)) => PinLayout::new(
            filter_user::control::config::Config::load(c)
                .map_err(|e| CmdError::Input(e.to_string()))?
                .pin_dir,
        ),
        _ => layout,
    };
    print(&cli::reload(&layout, Duration::from_secs(timeout))?);
    Ok(())
}

/// `flowfilter status`: print it (and say so when nothing is pinned), and
/// exit with the code of whether filtering is in force.
fn status_command(layout: &PinLayout, json: bool) -> anyhow::Result<()> {
    let (out, filtering) = cli::status(layout, json)?;
    print(&out);
    if layout.require().is_err() {
        eprintln!(
            "flowfilter: {}",
            filter_user::dataplane::pins::PinError::NoState {
                dir: layout.dir.clone()
            }
        );
    }
    match filtering.exit_code() {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}

/// `flowfilter policy set|reset`.
fn policy_command(layout: &PinLayout, op: &PolicyCommand) -> anyhow::Result<()> {
    let out = match op {
        PolicyCommand::Set { category, spec } => cli::policy_set(layout, category, spec)?,
        PolicyCommand::Reset { category } => cli::policy_reset(layout, category)?,
    };
    print(&out);
    Ok(())
}

/// `flowfilter replay`: the captures through a private instance of the
/// program with `lists` and `policies` installed, reported per flow as a
/// table or JSON lines.
fn replay_command(
    lists: Option<&PathBuf>,
    policies: &[CategoryPolicy],
    normalize: bool,
    json: bool,
    seed: Option<u64>,
    subscribers: Vec<filter_user::lists::Cidr>,
    captures: &[PathBuf],
) -> anyhow::Result<()> {
    // Read everything first: a bad capture or list prints nothing else.
    let mut frames = Vec::new();
    for c in captures {
        let f = read_capture(c).map_err(|e| CmdError::Input(e.to_string()))?;
        frames.extend(f);
    }
    let lists = load_lists(lists, normalize)?;
    print_notes(&lists);
    let policies = resolve_policies(&lists, policies)?;
    let mut filter = Filter::load(&LoadOptions { trace: true })
        .context("loading a private instance of the XDP program")?;
    filter_user::control::subscribers::check_count(subscribers.len())
        .map_err(|e| CmdError::Input(format!("--subscribers: {e}")))?;
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

/// `flowfilter list update`: exit 2 for a bad sources file, 1 when a
/// category was left as it was. Holds the lock of the output directory for
/// its whole run: a `list add|del|load` on the same directory waits for it
/// (and it for them), so no list file's change is lost.
fn list_update(
    sources: PathBuf,
    out: PathBuf,
    force: bool,
    allow_broad: bool,
) -> anyhow::Result<()> {
    // A bad sources file is refused before anything is created or locked
    // (run_update reads it again, under the lock).
    let file = std::path::absolute(&sources).unwrap_or_else(|_| sources.clone());
    filter_user::lists::update::Sources::load(&file)
        .map_err(|e| anyhow::Error::new(CmdError::Input(format!("{e:#}"))))?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output directory {}", out.display()))?;
    let _lock = ListsLock::acquire(&out).map_err(CmdError::from)?;
    let opts = filter_user::lists::update::UpdateOptions {
        sources,
        out,
        force,
        allow_broad,
        ..filter_user::lists::update::UpdateOptions::default()
    };
    let report = filter_user::lists::update::run_update(&opts).map_err(|e| {
        if e.downcast_ref::<filter_user::lists::update::SourcesError>()
            .is_some()
        {
            anyhow::Error::new(CmdError::Input(format!("{e:#}")))
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
            allow_broad,
        } => return list_update(sources, out, force, allow_broad),
    };
    print(&cli::list(layout, &op, lists.as_deref(), normalize)?);
    Ok(())
}

/// The manual page: the top command's sections, then one `.SS` per verb
/// (leaves of the command tree) with its description, synopsis and options.
fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    type Render = fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>;
    /// One section without the string definitions every rendering starts
    /// with (the title keeps them once) and, unless `keep_heading`, without
    /// its `.SH` line (a verb's sections go under its `.SS`).
    fn section(
        man: &clap_mangen::Man,
        render: Render,
        keep_heading: bool,
    ) -> std::io::Result<String> {
        let mut buf = Vec::new();
        render(man, &mut buf)?;
        let mut out = String::new();
        let mut drop_heading = !keep_heading;
        for line in String::from_utf8_lossy(&buf).lines() {
            if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
                continue;
            }
            if drop_heading && line.starts_with(".SH") {
                drop_heading = false;
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        Ok(out)
    }
    fn verbs(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.has_subcommands() {
                verbs(sub, out);
            } else {
                out.push(sub.clone());
            }
        }
    }
    // NAME reads `flowfilter - daemon, CLI and replay ...`.
    let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
    let about = about
        .strip_prefix("flowfilter: ")
        .unwrap_or(&about)
        .to_owned();
    let mut cmd = cmd
        .about(about)
        .name("flowfilter")
        .bin_name("flowfilter")
        .disable_help_subcommand(true);
    cmd.build();
    let top = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    top.render_title(&mut out)?;
    for render in [
        clap_mangen::Man::render_name_section as Render,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ] {
        out.extend(section(&top, render, true)?.bytes());
    }
    out.extend_from_slice(b".SH COMMANDS\n");
    let mut leaves = Vec::new();
    verbs(&cmd, &mut leaves);
    for verb in leaves {
        let name = verb.get_bin_name().unwrap_or(verb.get_name()).to_owned();
        let man = clap_mangen::Man::new(verb);
        out.extend(format!(".SS \"{name}\"\n").bytes());
        out.extend(section(&man, clap_mangen::Man::render_description_section, false)?.bytes());
        out.extend_from_slice(b".PP\n");
        out.extend(section(&man, clap_mangen::Man::render_synopsis_section, false)?.bytes());
        out.extend(section(&man, clap_mangen::Man::render_options_section, false)?.bytes());
    }
    out.extend(section(&top, clap_mangen::Man::render_version_section, true)?.bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAN_PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/flowfilter.1");

    #[test]
    fn committed_man_page_is_current() {
        let rendered = man_page(Cli::command()).expect("rendering the man page");
        let committed =
            std::fs::read(MAN_PAGE).unwrap_or_else(|e| panic!("reading {MAN_PAGE}: {e}"));
        let (r, c) = (
            String::from_utf8_lossy(&rendered),
            String::from_utf8_lossy(&committed),
        );
        if let Some((n, (want, have))) = r
            .lines()
            .chain(std::iter::repeat("<end of page>"))
            .zip(c.lines().chain(std::iter::repeat("<end of file>")))
            .take(r.lines().count().max(c.lines().count()))
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            panic!(
                "{MAN_PAGE} is stale (run `cargo xtask man` and commit it): line {}\n  file: {have}\n  CLI:  {want}",
                n + 1
            );
        }
        assert_eq!(
            rendered, committed,
            "{MAN_PAGE} differs from the CLI's page"
        );
    }

    #[test]
    fn man_page_changes_with_the_cli_and_covers_every_verb() {
        let page = String::from_utf8(man_page(Cli::command()).expect("rendering")).expect("utf-8");
        for verb in [
            "flowfilter run",
            "flowfilter list update",
            "flowfilter policy set",
            "flowfilter completions",
        ] {
            assert!(
                page.contains(&format!(".SS \"{verb}\"")),
                "no section for {verb}:\n{page}"
            );
        }
        assert!(
            page.contains("detach\\-on\\-exit"),
            "run's options missing:\n{page}"
        );
        // A changed help text changes the page, so a stale file is caught.
        let changed = Cli::command().mut_subcommand("status", |s| s.about("something else"));
        let other = man_page(changed).expect("rendering");
        assert_ne!(
            page.as_bytes(),
            other.as_slice(),
            "the page ignores the verbs' help"
        );
    }

    #[test]
    fn completions_name_the_verbs() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flowfilter", &mut buf);
            let text = String::from_utf8(buf).expect("utf-8");
            for word in ["reload", "replay", "detach-on-exit", "pin-dir"] {
                assert!(
                    text.contains(word),
                    "{shell} completion lacks `{word}`:\n{text}"
                );
            }
        }
    }
}
