//! The control-plane state beside the pins: what the maps cannot say.
//!
//! bpffs holds no regular files, and the maps hold ids, not names. So every
//! writer of the tables (the daemon, and CLI verbs that change lists or
//! policies) records in a small JSON file what it installed: the category
//! names and ids, list sizes, policies and where each came from, the lists
//! directory, the daemon's pid and settings, the attach mode per interface,
//! and the last reload's result. CLI verbs read it to name categories and to
//! find the lists without the daemon.
//!
//! The file lives in [`STATE_DIR`] (tmpfs, like bpffs: both are gone after a
//! reboot), named after the pin directory ([`state_path`]), and is replaced
//! atomically (write, then rename) under the pin directory's lock. Like the
//! pins it is owner-only ([`STATE_FILE_MODE`]; the temporary file has the
//! mode from its creation, so the renamed file never had another), and
//! [`STATE_DIR`] is made 0700 when this creates it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pins::BPFFS_ROOT;

/// Directory of the state files.
pub const STATE_DIR: &str = "/run/flowfilter";
/// Version of the file's schema.
pub const STATE_VERSION: u32 = 1;
/// Mode of the state file: owner only, as the pins
/// ([`crate::pins::PIN_MODE`]).
pub const STATE_FILE_MODE: u32 = 0o600;
/// Mode of [`STATE_DIR`] when it is created here (an existing one, e.g.
/// systemd's `RuntimeDirectory=`, keeps its mode).
const STATE_DIR_MODE: u32 = 0o700;

/// The state file of the pins in `pin_dir`: `/run/flowfilter/NAME.json`,
/// NAME being the pin directory's path below /sys/fs/bpf (or its full path)
/// with `/` turned into `-`: `/sys/fs/bpf/flowfilter` →
/// `/run/flowfilter/flowfilter.json`.
pub fn state_path(pin_dir: &Path) -> PathBuf {
    let rel = pin_dir.strip_prefix(BPFFS_ROOT).unwrap_or(pin_dir);
    let name: String = rel
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    let name = if name.is_empty() { "root".into() } else { name };
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

/// The daemon that manages the pins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Its process id (signalled by `reload` and `detach`).
    pub pid: u32,
    /// Start time, Unix seconds.
    pub started: u64,
    /// `--metrics` address.
    pub metrics: Option<String>,
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
    pub policies: BTreeMap<String, String>,
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
    /// Policy in force, as a spec (`drop`, `flows=30%`, ...).
    pub policy: String,
    /// Where the policy came from: `default`, `config`, `flag` or `cli`.
    pub policy_source: String,
}

/// One attached interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceState {
    /// Interface name.
    pub name: String,
    /// `driver` or `skb` (as attached; `unknown` for a link adopted from
    /// pins made without a state file).
    pub mode: String,
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

/// Result of the last reload (or install).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadState {
    /// Unix seconds.
    pub time: u64,
    /// Whether it was installed.
    pub ok: bool,
    /// The error, when not.
    pub error: Option<String>,
    /// The error is the input's (a list or the configuration): exit code 2.
    pub input_error: bool,
    /// Who did it: `daemon`, `sighup`, or the CLI verb.
    pub by: String,
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
    pub overrides: BTreeMap<String, String>,
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
}

impl StateFile {
    /// A new state for `pin_dir`.
    pub fn new(pin_dir: &Path) -> StateFile {
        StateFile {
            version: STATE_VERSION,
            pin_dir: pin_dir.to_path_buf(),
            ..StateFile::default()
        }
    }

    /// Read the state of `pin_dir`; `None` when there is no file.
    pub fn read(pin_dir: &Path) -> Result<Option<StateFile>, StateError> {
        let path = state_path(pin_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Parse { path, source })
    }

    /// Replace the file atomically (temporary file of mode
    /// [`STATE_FILE_MODE`], fsync, rename). Temporary files of writers that
    /// died before their rename are removed.
    pub fn write(&self) -> Result<(), StateError> {
        let path = state_path(&self.pin_dir);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        let dir = path.parent().unwrap_or(Path::new(STATE_DIR));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(STATE_DIR_MODE)
            .create(dir)
            .map_err(io(dir))?;
        remove_dead_temporaries(&path);
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(STATE_FILE_MODE)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // A temporary file that already existed kept its old mode.
        f.set_permissions(std::fs::Permissions::from_mode(STATE_FILE_MODE))
            .map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }

    /// Remove the state file of `pin_dir` (a missing one is fine).
    pub fn remove(pin_dir: &Path) -> Result<(), StateError> {
        let path = state_path(pin_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io { path, source }),
        }
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

    /// The daemon's pid if it is alive (and is a flowfilter process).
    pub fn live_daemon(&self) -> Option<u32> {
        let pid = self.daemon.as_ref()?.pid;
        process_alive(pid).then_some(pid)
    }
}

/// Remove `NAME.json.tmpPID` beside the state file `path` when process
/// PID is not a live flowfilter (it was killed between writing and
/// renaming). Best effort: a failure is logged.
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
            && !process_alive(pid)
            && let Err(err) = std::fs::remove_file(e.path())
        {
            log::warn!("removing {}: {err}", e.path().display());
        }
    }
}

/// Whether `pid` is a live flowfilter process (not a reused pid).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid_t, 0) } != 0 {
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
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_pin_dir() {
        assert_eq!(
            state_path(Path::new("/sys/fs/bpf/flowfilter")),
            Path::new("/run/flowfilter/flowfilter.json")
        );
        assert_eq!(
            state_path(Path::new("/sys/fs/bpf/a/b/")),
            Path::new("/run/flowfilter/a-b.json")
        );
        assert_eq!(
            state_path(Path::new("/mnt/bpf/ff")),
            Path::new("/run/flowfilter/mnt-bpf-ff.json")
        );
        assert_eq!(
            state_path(Path::new("/sys/fs/bpf")),
            Path::new("/run/flowfilter/root.json")
        );
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn round_trips_and_tolerates_missing_fields() {
        let mut s = StateFile::new(Path::new("/sys/fs/bpf/x"));
        s.categories.push(CategoryState {
            id: 1,
            name: "whatsapp".into(),
            v4_prefixes: 2,
            v6_prefixes: 1,
            policy: "drop".into(),
            policy_source: "default".into(),
        });
        let text = serde_json::to_string(&s).unwrap();
        let back: StateFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.name_of(1), Some("whatsapp"));
        assert_eq!(back.name_of(255), Some("allow"));
        assert_eq!(back.name_of(3), None);
        let old: StateFile = serde_json::from_str(r#"{"version":1}"#).unwrap();
        assert!(old.categories.is_empty() && old.daemon.is_none());
    }

    #[test]
    fn temporaries_of_dead_writers_go() {
        let d = std::env::temp_dir().join(format!("flowfilter-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let me = std::process::id();
        for n in [
            "x.json.tmp4000000000".to_owned(),
            format!("x.json.tmp{me}"),
            "x.json.tmpabc".into(),
            "y.json.tmp4000000000".into(),
        ] {
            std::fs::write(d.join(n), "").unwrap();
        }
        remove_dead_temporaries(&d.join("x.json"));
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!("x.json.tmp{me}"),
                "x.json.tmpabc".into(),
                "y.json.tmp4000000000".into()
            ]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dead_processes() {
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
        // This test binary is not named flowfilter... unless it is.
        let me = std::process::id();
        let exe = std::fs::read(format!("/proc/{me}/cmdline")).unwrap();
        assert_eq!(
            process_alive(me),
            String::from_utf8_lossy(&exe).contains("flowfilter")
        );
    }
}
