//! The control-plane state beside the pins: what the maps cannot say.
//!
//! bpffs holds no regular files, and the maps hold ids, not names. So every
//! writer of the tables (the daemon, and CLI verbs that change lists or
//! policies) records in a small JSON file what it installed: the category
//! names and ids, list sizes, policies and where each came from, the lists
//! directory, the daemon's pid and settings, the attach mode per interface,
//! and the last reload's result. CLI verbs read it to name categories and to
//! find the lists without the daemon. Its values are typed: a policy, its
//! source, an attach mode, who reloaded are written as their text and
//! parsed once, when the file is read (a value that does not parse makes
//! the file unreadable, naming it).
//!
//! The file lives in [`STATE_DIR`] (tmpfs, like bpffs: both are gone after a
//! reboot), named after the pin directory ([`state_name`]), beside the
//! pin directory's locks ([`crate::control::lock`]). It is replaced atomically
//! (write, then rename) under the writer lock, which [`StateFile::write`]
//! takes as an argument. Writers of the tables write it before they flip
//! to the new tables ([`crate::control::install`]): a change the file
//! cannot record is never in force. Like the pins it is owner-only
//! ([`STATE_FILE_MODE`]; the temporary file has the mode from its creation,
//! so the renamed file never had another), and [`STATE_DIR`] is made 0700
//! when this creates it.
//!
//! Version 1 named the file with every `/` of the pin directory turned into
//! `-`, so `/sys/fs/bpf/a-b` and `/sys/fs/bpf/a/b` shared `a-b.json`. A file
//! of that naming is still read when it records this pin directory, and the
//! next write moves it to its new name ([`StateFile::read`],
//! [`StateFile::write`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::control::Source;
use crate::control::config::{RunFlags, keyword, serde_text};
use crate::control::lock::{Liveness, WriterLock};
use crate::control::policy::PolicySpec;
use crate::dataplane::loader::AttachMode;
use crate::dataplane::pins::BPFFS_ROOT;

/// Directory of the state files.
pub const STATE_DIR: &str = "/run/flowfilter";
/// Version of the file's schema: 2 since the daemon's liveness is its lock
/// (a version-1 file's daemon is judged by its command line).
pub const STATE_VERSION: u32 = 2;
/// Mode of the state file: owner only, as the pins
/// ([`crate::dataplane::pins::PIN_MODE`]).
pub const STATE_FILE_MODE: u32 = 0o600;
/// Mode of [`STATE_DIR`] when it is created here (an existing one, e.g.
/// systemd's `RuntimeDirectory=`, keeps its mode).
const STATE_DIR_MODE: u32 = 0o700;

/// Create the directory of the state files (and its parents) if needed.
pub(crate) fn ensure_state_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(STATE_DIR_MODE)
        .create(dir)
}

/// `path` made absolute (from the working directory), with `.`, repeated
/// and trailing `/` dropped; `..` and symbolic links are left as they are.
fn normalized(path: &Path) -> PathBuf {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .components()
        .collect()
}

/// The name of `pin_dir`'s files in [`STATE_DIR`] (`NAME.json`,
/// `NAME.lock`, `NAME.daemon.lock`), one per directory and never shared:
/// below /sys/fs/bpf, the path's components joined by `+`
/// (`/sys/fs/bpf/flowfilter` → `flowfilter`, `/sys/fs/bpf/a/b` → `a+b`,
/// `/sys/fs/bpf/a-b` → `a-b`); elsewhere (and /sys/fs/bpf itself) the whole
/// path with a leading `+` (`/mnt/bpf/ff` → `+mnt+bpf+ff`). Bytes other
/// than ASCII letters, digits, `_`, `.` and `-` are written `%XX`, as is a
/// leading `.` or `-`, so no two directories share a name. The path is
/// taken as given ([`normalized`]: `/a//b/` is `/a/b`; `..` and links are not
/// resolved).
pub fn state_name(pin_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let abs = normalized(pin_dir);
    let (mut name, parts): (String, Vec<&[u8]>) = match abs.strip_prefix(BPFFS_ROOT) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            (String::new(), rel.iter().map(OsStrExt::as_bytes).collect())
        }
        _ => (
            "+".to_owned(),
            abs.iter().skip(1).map(OsStrExt::as_bytes).collect(),
        ),
    };
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            name.push('+');
        }
        for (j, &b) in part.iter().enumerate() {
            let leading = name.is_empty() && j == 0 && matches!(b, b'.' | b'-');
            if !leading && (b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
                name.push(char::from(b));
            } else {
                let _ = write!(name, "%{b:02x}");
            }
        }
    }
    name
}

/// The state file of the pins in `pin_dir`: `/run/flowfilter/NAME.json`
/// ([`state_name`]).
pub fn state_path(pin_dir: &Path) -> PathBuf {
    state_path_in(Path::new(STATE_DIR), pin_dir)
}

fn state_path_in(dir: &Path, pin_dir: &Path) -> PathBuf {
    dir.join(format!("{}.json", state_name(pin_dir)))
}

/// Where version 1 kept the state of `pin_dir`: its path below /sys/fs/bpf
/// (or its full path) with `/` turned into `-`, `root` for /sys/fs/bpf.
fn legacy_state_path_in(dir: &Path, pin_dir: &Path) -> PathBuf {
    let rel = pin_dir.strip_prefix(BPFFS_ROOT).unwrap_or(pin_dir);
    let name: String = rel
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    let name = if name.is_empty() { "root".into() } else { name };
    dir.join(format!("{name}.json"))
}

/// The daemon that manages the pins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Its process id, for signals (`reload`, `detach`): used only while it
    /// holds the daemon's liveness lock ([`crate::control::lock::daemon_liveness`]).
    pub pid: u32,
    /// Start time, Unix seconds.
    pub started: u64,
    /// `--metrics` address.
    pub metrics: Option<SocketAddr>,
    /// Remove pins on exit.
    pub detach_on_exit: bool,
}

/// Settings given on the daemon's command line: they override the
/// configuration file at every reload too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagSettings {
    /// `--lists`.
    pub lists: Option<PathBuf>,
    /// `--normalize`.
    pub normalize: bool,
    /// `--policy`, by category name.
    pub policies: BTreeMap<String, PolicySpec>,
}

impl From<&RunFlags> for FlagSettings {
    /// What of the daemon's flags a reload (or a CLI verb's install) needs
    /// again: those that say what is installed.
    fn from(flags: &RunFlags) -> FlagSettings {
        FlagSettings {
            lists: flags.lists.clone(),
            normalize: flags.normalize,
            policies: flags
                .policies
                .iter()
                .map(|p| (p.category.clone(), p.spec))
                .collect(),
        }
    }
}

/// One installed category.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryState {
    /// Category id in the maps.
    pub id: u8,
    /// Name (the list file's name).
    pub name: String,
    /// IPv4 prefixes in its list.
    pub v4_prefixes: usize,
    /// IPv6 prefixes in its list.
    pub v6_prefixes: usize,
    /// Policy in force (written as its spec: `drop`, `flows=30%`, ...).
    pub policy: PolicySpec,
    /// Where the policy came from: `default`, `config`, `flag` or `cli`.
    pub policy_source: Source,
}

/// How an interface is attached, as recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native XDP: `driver`.
    Driver,
    /// Generic XDP: `skb`.
    Skb,
    /// A link adopted from pins made without a state file: `unknown`.
    #[default]
    Unknown,
    /// Configured, but not attached (waited for): `none`.
    NotAttached,
}

impl AttachedMode {
    /// Every mode.
    const ALL: [AttachedMode; 4] = [
        AttachedMode::Driver,
        AttachedMode::Skb,
        AttachedMode::Unknown,
        AttachedMode::NotAttached,
    ];

    /// As written in the state file and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Driver => "driver",
            AttachedMode::Skb => "skb",
            AttachedMode::Unknown => "unknown",
            AttachedMode::NotAttached => "none",
        }
    }
}

impl From<AttachMode> for AttachedMode {
    /// The mode of a new link (`auto` is never one: it says which to try).
    fn from(mode: AttachMode) -> AttachedMode {
        match mode {
            AttachMode::Driver => AttachedMode::Driver,
            AttachMode::Skb => AttachedMode::Skb,
            AttachMode::Auto => AttachedMode::Unknown,
        }
    }
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttachedMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        keyword(&AttachedMode::ALL, s)
            .ok_or_else(|| format!("`{s}` is not an attach mode (driver, skb, unknown or none)"))
    }
}

serde_text!(AttachedMode);

/// One attached interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceState {
    /// Interface name.
    pub name: String,
    /// How it is attached.
    pub mode: AttachedMode,
    /// Network namespace, if not the daemon's.
    pub netns: Option<String>,
    /// Interface index (in `netns`) when attached.
    #[serde(default)]
    pub ifindex: Option<u32>,
    /// Its per-interface counter slot (`IF_SLOT`); none when it counts in
    /// the shared slot 0.
    #[serde(default)]
    pub slot: Option<u32>,
}

/// Who installed, or tried to: the daemon or a CLI verb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadBy {
    /// The daemon's start: `start`.
    Start,
    /// The daemon, on SIGHUP: `sighup`.
    Sighup,
    /// `flowfilter reload` while no daemon runs: `reload`.
    Reload,
    /// A verb that changes one category: `list add CATEGORY`, ...
    Change(ChangeVerb, String),
    /// The tables put back as the files say, after a change's list file
    /// could not be replaced: `BY (undone)`.
    Undone(Box<ReloadBy>),
}

/// A CLI verb that changes one category's list or policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeVerb {
    /// `list add`.
    ListAdd,
    /// `list del`.
    ListDel,
    /// `list load`.
    ListLoad,
    /// `policy set`.
    PolicySet,
    /// `policy reset`.
    PolicyReset,
}

impl ChangeVerb {
    /// Every verb.
    const ALL: [ChangeVerb; 5] = [
        ChangeVerb::ListAdd,
        ChangeVerb::ListDel,
        ChangeVerb::ListLoad,
        ChangeVerb::PolicySet,
        ChangeVerb::PolicyReset,
    ];

    /// This verb's change of `category`, as the state file records who
    /// made it.
    pub fn of(self, category: &str) -> ReloadBy {
        ReloadBy::Change(self, category.to_owned())
    }

    /// As the command line says it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeVerb::ListAdd => "list add",
            ChangeVerb::ListDel => "list del",
            ChangeVerb::ListLoad => "list load",
            ChangeVerb::PolicySet => "policy set",
            ChangeVerb::PolicyReset => "policy reset",
        }
    }
}

/// What follows an undone change's `by`.
const UNDONE: &str = " (undone)";

impl fmt::Display for ReloadBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadBy::Start => f.write_str("start"),
            ReloadBy::Sighup => f.write_str("sighup"),
            ReloadBy::Reload => f.write_str("reload"),
            ReloadBy::Change(verb, category) => write!(f, "{} {category}", verb.as_str()),
            ReloadBy::Undone(by) => write!(f, "{by}{UNDONE}"),
        }
    }
}

impl FromStr for ReloadBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(by) = s.strip_suffix(UNDONE) {
            return by.parse().map(|b| ReloadBy::Undone(Box::new(b)));
        }
        match s {
            "start" => Ok(ReloadBy::Start),
            "sighup" => Ok(ReloadBy::Sighup),
            "reload" => Ok(ReloadBy::Reload),
            _ => ChangeVerb::ALL
                .into_iter()
                .find_map(|verb| {
                    let category = s.strip_prefix(verb.as_str())?.strip_prefix(' ')?;
                    (!category.is_empty()).then(|| ReloadBy::Change(verb, category.to_owned()))
                })
                .ok_or_else(|| {
                    format!(
                        "`{s}` is not who reloads (start, sighup, reload, or a list or policy verb and its category)"
                    )
                }),
        }
    }
}

serde_text!(ReloadBy);

/// Result of the last reload (or install).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadState {
    /// Unix seconds.
    pub time: u64,
    /// Whether it was installed.
    pub ok: bool,
    /// The error, when not.
    pub error: Option<String>,
    /// The error is the input's (a list or the configuration): exit code 2.
    pub input_error: bool,
    /// Who did it.
    pub by: ReloadBy,
    /// The generation in force afterwards.
    pub generation: u32,
}

/// The state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateFile {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The pin directory this describes.
    pub pin_dir: PathBuf,
    /// The daemon, while one runs (cleared when it exits).
    pub daemon: Option<DaemonInfo>,
    /// Configuration file read at start and at every reload (also by CLI
    /// verbs that install while no daemon runs).
    pub config: Option<PathBuf>,
    /// The daemon's command-line settings.
    pub flags: FlagSettings,
    /// `flowfilter policy set` overrides, by category name.
    pub overrides: BTreeMap<String, PolicySpec>,
    /// Lists directory in use.
    pub lists_dir: PathBuf,
    /// Whether lists are normalised.
    pub normalize: bool,
    /// Installed categories, by id.
    pub categories: Vec<CategoryState>,
    /// Allowlist sizes: (IPv4, IPv6) prefixes.
    pub allow: (usize, usize),
    /// Active generation.
    pub generation: u32,
    /// Attached interfaces.
    pub interfaces: Vec<InterfaceState>,
    /// The last reload or install.
    pub last_reload: Option<ReloadState>,
    /// Increases with every reload attempt (`flowfilter reload` waits for it).
    pub reload_serial: u64,
    /// Reloads installed.
    pub reloads_ok: u64,
    /// Reloads rejected.
    pub reloads_failed: u64,
}

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a state file.
    #[error("{}: not a flowfilter state file ({source}); remove it, the next `flowfilter run` or `reload` writes a new one", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Written without the writer lock of its pin directory (a bug).
    #[error("{}: not written: the writer lock held is {}", path.display(), lock.display())]
    NotLocked {
        /// The file.
        path: PathBuf,
        /// The lock held.
        lock: PathBuf,
    },
    /// Taking the writer lock.
    #[error(transparent)]
    Lock(#[from] crate::control::lock::LockError),
}

impl StateFile {
    /// The recorded interface called `name`.
    pub fn interface(&self, name: &str) -> Option<&InterfaceState> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// A new state for `pin_dir`.
    pub fn new(pin_dir: &Path) -> StateFile {
        StateFile {
            version: STATE_VERSION,
            pin_dir: pin_dir.to_path_buf(),
            ..StateFile::default()
        }
    }

    /// Read the state of `pin_dir`; `None` when there is no file. A file
    /// of version 1's naming is read when it records `pin_dir` (and only
    /// then: that name may be another directory's).
    pub fn read(pin_dir: &Path) -> Result<Option<StateFile>, StateError> {
        Self::read_in(Path::new(STATE_DIR), pin_dir)
    }

    fn read_in(dir: &Path, pin_dir: &Path) -> Result<Option<StateFile>, StateError> {
        let path = state_path_in(dir, pin_dir);
        if let Some(s) = read_file(&path)?
            && s.describes(pin_dir)
        {
            return Ok(Some(s));
        }
        let legacy = legacy_state_path_in(dir, pin_dir);
        if legacy != path {
            match read_file(&legacy) {
                Ok(Some(s)) if !s.pin_dir.as_os_str().is_empty() && s.describes(pin_dir) => {
                    return Ok(Some(s));
                }
                Ok(_) => {}
                Err(e) => log::debug!("not the state of {}: {e}", pin_dir.display()),
            }
        }
        Ok(None)
    }

    /// Whether this is the state of `pin_dir` (a file that does not say is
    /// taken to be).
    fn describes(&self, pin_dir: &Path) -> bool {
        self.pin_dir.as_os_str().is_empty() || normalized(&self.pin_dir) == normalized(pin_dir)
    }

    /// Replace the file atomically (temporary file of mode
    /// [`STATE_FILE_MODE`], fsync, rename), holding `lock`, the writer lock
    /// of this pin directory. Temporary files of writers that died before
    /// their rename are removed (the lock says no other writer is at work),
    /// and a file of version 1's naming is moved to its new name.
    pub fn write(&self, lock: &WriterLock) -> Result<(), StateError> {
        self.write_in(Path::new(STATE_DIR), lock)
    }

    fn write_in(&self, dir: &Path, lock: &WriterLock) -> Result<(), StateError> {
        let path = state_path_in(dir, &self.pin_dir);
        if !lock.is_for(dir, &self.pin_dir) {
            return Err(StateError::NotLocked {
                path,
                lock: lock.path().to_path_buf(),
            });
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        ensure_state_dir(dir).map_err(io(dir))?;
        remove_dead_temporaries(&path);
        // Version 1 may have left another directory's file at this name.
        if let Ok(Some(other)) = read_file(&path)
            && !other.describes(&self.pin_dir)
        {
            let to = state_path_in(dir, &other.pin_dir);
            if to != path && !to.exists() {
                match std::fs::rename(&path, &to) {
                    Ok(()) => log::info!(
                        "moved the state of {} to {} (its name under version 2)",
                        other.pin_dir.display(),
                        to.display()
                    ),
                    Err(e) => log::warn!("moving {} to {}: {e}", path.display(), to.display()),
                }
            }
        }
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        crate::fsutil::write_atomic(
            &path,
            text.as_bytes(),
            crate::fsutil::Mode::Exact(STATE_FILE_MODE),
        )
        .map_err(io(&path))?;
        self.remove_legacy(dir);
        Ok(())
    }

    /// Remove this pin directory's file of version 1's naming, if any.
    fn remove_legacy(&self, dir: &Path) {
        let legacy = legacy_state_path_in(dir, &self.pin_dir);
        if legacy == state_path_in(dir, &self.pin_dir) {
            return;
        }
        if let Ok(Some(old)) = read_file(&legacy)
            && !old.pin_dir.as_os_str().is_empty()
            && old.describes(&self.pin_dir)
        {
            match std::fs::remove_file(&legacy) {
                Ok(()) => log::info!(
                    "state of {}: {} replaces {} (version 1's name)",
                    self.pin_dir.display(),
                    state_path_in(dir, &self.pin_dir).display(),
                    legacy.display()
                ),
                Err(e) => log::warn!("removing {}: {e}", legacy.display()),
            }
        }
    }

    /// Remove the state file of `pin_dir` (a missing one is fine), holding
    /// its writer lock. The lock files stay.
    pub fn remove_locked(pin_dir: &Path, lock: &WriterLock) -> Result<(), StateError> {
        Self::remove_in(Path::new(STATE_DIR), pin_dir, lock)
    }

    fn remove_in(dir: &Path, pin_dir: &Path, lock: &WriterLock) -> Result<(), StateError> {
        let path = state_path_in(dir, pin_dir);
        if !lock.is_for(dir, pin_dir) {
            return Err(StateError::NotLocked {
                path,
                lock: lock.path().to_path_buf(),
            });
        }
        match read_file(&path) {
            Ok(Some(s)) if !s.describes(pin_dir) => {}
            _ => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StateError::Io { path, source }),
            },
        }
        StateFile::new(pin_dir).remove_legacy(dir);
        Ok(())
    }

    /// Remove the state file and the lock files of `pin_dir`, for cleaning
    /// up after tests: only when no flowfilter process uses these pins (a
    /// lock file removed while a writer waits for it splits the lock). The
    /// liveness lock is kept while a daemon holds it.
    pub fn remove(pin_dir: &Path) -> Result<(), StateError> {
        let lock = WriterLock::acquire(pin_dir)?;
        Self::remove_locked(pin_dir, &lock)?;
        let rm = |path: PathBuf| match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io { path, source }),
        };
        if crate::control::lock::daemon_liveness(pin_dir)? == Liveness::Dead {
            rm(crate::control::lock::daemon_lock_path(pin_dir))?;
        }
        rm(lock.path().to_path_buf())
    }

    /// The category with this name.
    pub fn category(&self, name: &str) -> Option<&CategoryState> {
        self.categories.iter().find(|c| c.name == name)
    }

    /// The name of category `id` (`allow` for 255).
    pub fn name_of(&self, id: u8) -> Option<&str> {
        if id == filter_common::CAT_ALLOW {
            return Some(crate::lists::ALLOW_NAME);
        }
        self.categories
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    }

    /// The daemon's pid, when it runs and is the daemon this file names:
    /// the holder of the liveness lock ([`crate::control::lock`]) must be the
    /// recorded pid (the pid of a daemon killed with `-9` may belong to any
    /// process now). A daemon that holds the lock but is not recorded yet
    /// is starting: `None` (it is not ready for signals). When the holder's
    /// pid cannot be seen (another pid namespace), the record is trusted.
    pub fn live_daemon(&self) -> Option<u32> {
        let pid = self.daemon.as_ref()?.pid;
        match crate::control::lock::daemon_liveness(&self.pin_dir) {
            Ok(Liveness::Alive { pid: Some(holder) }) => (holder == pid).then_some(pid),
            Ok(Liveness::Alive { pid: None }) => Some(pid),
            Ok(Liveness::Dead) => self.legacy_daemon(),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }

    /// The daemon of a version-1 file, which holds no liveness lock: its
    /// recorded pid if that is a live flowfilter process (by its command
    /// line, as version 1 judged it).
    pub fn legacy_daemon(&self) -> Option<u32> {
        let pid = self.daemon.as_ref()?.pid;
        (self.version < 2 && process_alive(pid)).then_some(pid)
    }
}

/// The state file at `path`, if there is one.
fn read_file(path: &Path) -> Result<Option<StateFile>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

/// Remove `NAME.json.tmpPID` beside the state file `path` but this
/// process's: the caller holds the writer lock, so their writers died
/// between writing and renaming. Best effort: a failure is logged.
fn remove_dead_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id()
            && let Err(err) = std::fs::remove_file(e.path())
        {
            log::warn!("removing {}: {err}", e.path().display());
        }
    }
}

/// Whether `pid` is a live process whose command line names flowfilter.
/// Not proof that it is a flowfilter daemon (pids are reused, and anything
/// may be called flowfilter): the daemon's liveness is its lock
/// ([`crate::control::lock::daemon_liveness`]); this judges only version-1 state
/// files and test harnesses' processes.
pub fn process_alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0: existence and permission only.
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    // A zombie is not alive.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("flowfilter"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix seconds.
pub fn format_utc(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} {} UTC", &s[..10], &s[11..19])
}

#[cfg(test)]
mod tests;
