//! Installing lists and policies into pinned tables: what the daemon's start
//! and reload and the CLI's changing verbs share.
//!
//! Everything is read and validated first ([`prepare`]): the configuration
//! file, every list, every policy. Any error rejects the whole change with
//! `file:line: what` and nothing is written. Only then does [`install`]
//! fill the inactive generation, record what it will install in the state
//! file, and flip to it (the caller holds the writer lock,
//! [`crate::control::lock::WriterLock`]). A change the state file cannot record (a
//! full /run) is not installed: the live tables never hold what the state
//! file, and so the next reload, does not know.
//! A CLI verb that changes a list file validates and installs the new text
//! first ([`prepare_with`]) and replaces the file only after the flip.
//!
//! Policy precedence, lowest first: the default (`drop`), the configuration
//! file's `[policy]`, the daemon's `--policy` flags, `flowfilter policy set`
//! (kept in the state file until `flowfilter policy reset`).

pub mod config;
pub mod install;
pub mod lock;
pub mod policy;
pub mod state;
pub mod subscribers;
pub mod transaction;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::control::config::{Config, ConfigError};
use crate::control::install::InstallLists as _;
use crate::control::lock::{LockError, WriterLock};
use crate::control::policy::PolicySpec;
use crate::control::state::{
    CategoryState, ReloadBy, ReloadState, StateError, StateFile, unix_now,
};
use crate::dataplane::loader::{Filter, GenerationInfo, LoadError};
use crate::dataplane::pins::PinError;
use crate::lists::{ListError, Lists, load_dir_with};

/// Why a command failed. [`Error::exit_code`] tells the CLI's exit code:
/// 2 for the user's input (a list, the configuration, an argument), 1 for
/// anything else.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument or input.
    #[error("{0}")]
    Input(String),
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A list file or the lists directory.
    #[error(transparent)]
    Lists(#[from] ListError),
    /// Loading, attaching or writing the maps.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The pin directory.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// The state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state file could not be written before the flip: nothing
    /// changed.
    #[error(
        "{error}: the change could not be recorded in the state file, so it was not installed; the old rules stay in force"
    )]
    NotRecorded {
        /// Why the write failed.
        error: StateError,
    },
    /// A lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether the user's input is at fault.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::Input(_) | Error::Config(_) | Error::Lists(_) | Error::Load(LoadError::Table(_))
        )
    }

    /// 2 for input errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.is_input() { 2 } else { 1 }
    }

    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// Where a policy came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Nobody named the category: `drop`.
    #[default]
    Default,
    /// The configuration file's `[policy]`.
    Config,
    /// The daemon's `--policy`.
    Flag,
    /// `flowfilter policy set`.
    Cli,
}

impl Source {
    /// Every source, lowest precedence first.
    const ALL: [Source; 4] = [Source::Default, Source::Config, Source::Flag, Source::Cli];

    /// As written in the state file and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Config => "config",
            Source::Flag => "flag",
            Source::Cli => "cli",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        config::keyword(&Source::ALL, s)
            .ok_or_else(|| format!("`{s}` is not a policy source (default, config, flag or cli)"))
    }
}

config::serde_text!(Source);

/// What to install: where the lists are and which policies apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Lists directory.
    pub lists_dir: PathBuf,
    /// Normalise host bits instead of rejecting them.
    pub normalize: bool,
    /// Configuration and flag policies, by category name; a name no list
    /// defines is an error.
    pub policies: BTreeMap<String, (PolicySpec, Source)>,
    /// `policy set` overrides, by category name; a name no list defines is
    /// skipped with a warning (its list may have been removed since).
    pub overrides: BTreeMap<String, PolicySpec>,
    /// The ids installed so far, (id, name): categories keep them.
    pub previous_ids: Vec<(u8, String)>,
}

impl Settings {
    /// From the configuration file and the recorded flags and overrides.
    pub fn new(cfg: &Config, state: &StateFile) -> Settings {
        let mut policies: BTreeMap<String, (PolicySpec, Source)> = cfg
            .policy
            .iter()
            .map(|(k, v)| (k.clone(), (*v, Source::Config)))
            .collect();
        for (k, spec) in &state.flags.policies {
            policies.insert(k.clone(), (*spec, Source::Flag));
        }
        Settings {
            lists_dir: state
                .flags
                .lists
                .clone()
                .unwrap_or_else(|| cfg.lists.clone()),
            normalize: state.flags.normalize || cfg.normalize,
            policies,
            overrides: state.overrides.clone(),
            previous_ids: state
                .categories
                .iter()
                .map(|c| (c.id, c.name.clone()))
                .collect(),
        }
    }

    /// From the state file alone: re-read its configuration file (if any)
    /// and apply its flags and overrides, as a reload does.
    pub fn from_state(state: &StateFile) -> Result<(Settings, Config), Error> {
        let cfg = match &state.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        Ok((Settings::new(&cfg, state), cfg))
    }
}

/// Validated lists and policies, ready to install.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The lists.
    pub lists: Lists,
    /// Policies by category id.
    pub by_id: BTreeMap<u8, PolicySpec>,
    /// What the state file records per category.
    pub categories: Vec<CategoryState>,
    /// The settings used.
    pub settings: Settings,
}

/// New text for one list file of the lists directory, to be installed
/// before the file itself is replaced.
#[derive(Clone, Copy, Debug)]
pub struct ListReplacement<'a> {
    /// The category, or `allow`.
    pub name: &'a str,
    /// The file it replaces (`LISTS/NAME.txt`): errors and notes name it.
    pub file: &'a Path,
    /// The new text.
    pub text: &'a str,
}

/// Read and validate everything; nothing is written.
pub fn prepare(settings: &Settings) -> Result<Prepared, Error> {
    prepare_with(settings, None)
}

/// [`prepare`], reading `replacement`'s text in place of its file (which
/// need not exist yet). Nothing is written.
pub fn prepare_with(
    settings: &Settings,
    replacement: Option<ListReplacement<'_>>,
) -> Result<Prepared, Error> {
    let overlay = replacement.map(|r| (r.name, r.text));
    let mut lists = load_dir_with(&settings.lists_dir, settings.normalize, overlay)?;
    lists.keep_ids(&settings.previous_ids);
    // One line per list; each note at debug level (65,536 covered /24s of
    // a listed /8 are one line, not 65,536).
    let notes = lists.all_notes();
    for n in &notes {
        log::debug!("{n}");
    }
    for line in crate::lists::summarise_notes(&notes) {
        if log::log_enabled!(log::Level::Debug) {
            log::info!("{line}");
        } else {
            log::info!("{line} (each one is logged with RUST_LOG=debug)");
        }
    }
    for name in settings.policies.keys() {
        if lists.by_name(name).is_none() {
            return Err(Error::Input(format!(
                "policy for `{name}`: no category `{name}` in {} (known: {})",
                settings.lists_dir.display(),
                lists.known_names()
            )));
        }
    }
    let mut by_id = BTreeMap::new();
    let mut categories = Vec::new();
    for c in &lists.categories {
        let (spec, source) = match settings.overrides.get(&c.name) {
            Some(s) => (*s, Source::Cli),
            None => settings
                .policies
                .get(&c.name)
                .copied()
                .unwrap_or((PolicySpec::default(), Source::Default)),
        };
        by_id.insert(c.id, spec);
        categories.push(CategoryState {
            id: c.id,
            name: c.name.clone(),
            v4_prefixes: c.list.v4.len(),
            v6_prefixes: c.list.v6.len(),
            policy: spec,
            policy_source: source,
        });
    }
    for name in settings.overrides.keys() {
        if lists.by_name(name).is_none() {
            log::warn!("policy override for `{name}` skipped: no such category in the lists now");
        }
    }
    Ok(Prepared {
        lists,
        by_id,
        categories,
        settings: settings.clone(),
    })
}

/// Install prepared tables, recording them first: fill the inactive
/// generation, write `state` as it will be (the install recorded as done
/// `by`), reset the counters of ids that name another category now, then
/// flip. The caller holds `lock`, the writer lock of the pins.
///
/// If the state file cannot be written nothing was flipped: the old rules
/// stay in force, `state` is as it was, and the error says so
/// ([`Error::NotRecorded`]). If the flip fails after the write, the old
/// state is written back. On success `state` is what the file holds.
pub fn install(
    filter: &mut Filter,
    p: &Prepared,
    state: &mut StateFile,
    by: &ReloadBy,
    lock: &WriterLock,
) -> Result<GenerationInfo, Error> {
    // An id that names another category now (or none before) starts from
    // zero, before the flip makes it live.
    let renamed: Vec<u8> = p
        .categories
        .iter()
        .filter(|c| {
            !state
                .categories
                .iter()
                .any(|o| o.id == c.id && o.name == c.name)
        })
        .map(|c| c.id)
        .collect();
    let staged = filter.stage(&p.lists, &p.by_id)?;
    let mut next = state.clone();
    next.lists_dir.clone_from(&p.settings.lists_dir);
    next.normalize = p.settings.normalize;
    next.categories.clone_from(&p.categories);
    next.allow = (p.lists.allow.v4.len(), p.lists.allow.v6.len());
    next.generation = staged.info().generation;
    record(&mut next, None, by);
    next.write(lock)
        .map_err(|error| Error::NotRecorded { error })?;
    let flipped = filter
        .reset_category_counters(&renamed)
        .and_then(|()| filter.flip(staged));
    match flipped {
        Ok(info) => {
            *state = next;
            Ok(info)
        }
        Err(e) => {
            if let Err(w) = state.write(lock) {
                log::error!(
                    "{w}: the state file says generation {} is in force, but the flip to it failed; run `flowfilter reload`",
                    next.generation
                );
            }
            Err(e.into())
        }
    }
}

/// Record the outcome of a reload or install attempt in `state`: `error`
/// is `None` when it was installed (the generation is `state.generation`).
pub fn record(state: &mut StateFile, error: Option<&Error>, by: &ReloadBy) {
    state.reload_serial += 1;
    let (ok, error, input_error) = match error {
        None => {
            state.reloads_ok += 1;
            (true, None, false)
        }
        Some(e) => {
            state.reloads_failed += 1;
            (false, Some(e.to_string()), e.is_input())
        }
    };
    state.last_reload = Some(ReloadState {
        time: unix_now(),
        ok,
        error,
        input_error,
        by: by.clone(),
        generation: state.generation,
    });
}

/// One line about an installed generation.
pub fn describe(info: &GenerationInfo, p: &Prepared) -> String {
    format!(
        "generation {} in force: {} categories, {} IPv4 and {} IPv6 prefixes ({} allowlisted), tables {:.1} MiB",
        info.generation,
        p.lists.categories.len(),
        info.v4_prefixes,
        info.v6_prefixes,
        p.lists.allow.len(),
        info.table_bytes as f64 / f64::from(1u32 << 20)
    )
}

#[cfg(test)]
mod tests;
