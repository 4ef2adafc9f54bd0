//! `flowfilter`: the daemon and CLI of the XDP call-media filter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use filter_user::capture::read_capture;
use filter_user::lists::{Lists, load_dir};
use filter_user::loader::{Filter, LoadOptions};
use filter_user::policy::{CategoryPolicy, PolicySpec};
use filter_user::replay::replay;

/// flowfilter: stop messenger call media at XDP, let everything else through.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        /// Capture files, replayed in the order given.
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
    },
}

/// An error that is the user's input, not a runtime failure (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowfilter: {e:#}");
            if e.downcast_ref::<InputError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Resolve `CATEGORY=SPEC` pairs against the categories the lists define.
fn resolve_policies(
    lists: &Lists,
    policies: &[CategoryPolicy],
) -> Result<BTreeMap<u8, PolicySpec>, InputError> {
    let mut out = BTreeMap::new();
    for p in policies {
        let Some(cat) = lists.by_name(&p.category) else {
            let known: Vec<&str> = lists.categories.iter().map(|c| c.name.as_str()).collect();
            return Err(InputError(format!(
                "--policy {}: no category `{}` (known: {})",
                p.category,
                p.category,
                known.join(", ")
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Replay {
            lists,
            policies,
            normalize,
            json,
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
            let mut filter = Filter::load(&LoadOptions {
                trace: true,
                ..LoadOptions::default()
            })
            .context("loading a private instance of the XDP program")?;
            filter
                .install(&lists, &policies)
                .context("installing lists and policies")?;
            let report = replay(
                &mut filter,
                &lists,
                frames.iter().map(|f| f.data.as_slice()),
            )
            .context("replaying")?;
            if json {
                print!("{}", report.to_json_lines());
            } else {
                print!("{}", report.to_table());
            }
            Ok(())
        }
    }
}
