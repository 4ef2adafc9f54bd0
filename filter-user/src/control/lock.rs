//! One writer at a time, and whether the daemon lives: `flock`s on files
//! beside the state file, outside the pin directory (which `detach`
//! removes).
//!
//! In [`STATE_DIR`], with the state file's NAME ([`state_name`]):
//!
//! - `NAME.lock`, the writer lock ([`WriterLock`]). Every transaction on the
//!   tables or the state file holds it: the daemon's start, reload, bit
//!   rotations and exit; the CLI's `list add|del|load`, `policy set|reset`,
//!   `reload` and `detach`. [`StateFile::write`](crate::control::state::StateFile::write)
//!   takes it as an argument, so the state file is never written without it.
//! - `NAME.daemon.lock`, the liveness lock ([`DaemonLock`]), held by the
//!   daemon from before it reads the state file until it exits; a crash or
//!   `kill -9` releases it with the process. A second `flowfilter run` on the
//!   same pins fails at once, and a CLI that could take it knows no daemon
//!   runs ([`daemon_liveness`]). The pid recorded in the state file is used
//!   for signals only, and only when it is the lock's holder as
//!   `/proc/locks` shows it: a reused pid is never taken for the daemon.
//!
//! Neither file is ever removed while flowfilter runs (a lock file replaced
//! under a waiting writer would split the lock in two); both are empty.
//!
//! A lists directory has its own lock ([`ListsLock`], a `flock` on the
//! directory itself), held by whatever writes list files in it: `list
//! add|del|load` (taken before the writer lock) and `list update` (for its
//! whole run). Lock order: lists directory, then writer. The daemon takes
//! only the writer lock, so it never waits for a `list update`.
//!
//! A writer that finds its lock taken says so (`waiting for ..., held by
//! pid N (flowfilter)`) and waits.

use rustix::fs::FlockOperation;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::state::{STATE_DIR, STATE_FILE_MODE, ensure_state_dir, state_name};

/// Errors taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Opening or locking the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file (or directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A lock that is not waited for is held.
    #[error("{} is held by {}", path.display(), describe_pid(*pid))]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Its holder, when `/proc/locks` shows it.
        pid: Option<u32>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `NAME.lock` of `pin_dir` in [`STATE_DIR`].
pub fn lock_path(pin_dir: &Path) -> PathBuf {
    lock_path_in(Path::new(STATE_DIR), pin_dir)
}

fn lock_path_in(dir: &Path, pin_dir: &Path) -> PathBuf {
    dir.join(format!("{}.lock", state_name(pin_dir)))
}

/// `NAME.daemon.lock` of `pin_dir` in [`STATE_DIR`].
pub fn daemon_lock_path(pin_dir: &Path) -> PathBuf {
    daemon_lock_path_in(Path::new(STATE_DIR), pin_dir)
}

fn daemon_lock_path_in(dir: &Path, pin_dir: &Path) -> PathBuf {
    dir.join(format!("{}.daemon.lock", state_name(pin_dir)))
}

/// Open (creating, owner-only) the lock file `path` in `dir`; the file and
/// its path.
fn open_lock_file(dir: &Path, path: PathBuf) -> Result<(File, PathBuf), LockError> {
    ensure_state_dir(dir).map_err(io_err(dir))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(STATE_FILE_MODE)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok((file, path))
}

/// `flock(op)`, again when interrupted.
fn flock(file: &File, op: FlockOperation) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::WOULDBLOCK.raw_os_error())
}

/// Take `file`'s exclusive lock, waiting (and saying so) when it is held.
fn lock_exclusive(file: &File, path: &Path, what: &str) -> Result<(), LockError> {
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(()),
        Err(e) if would_block(&e) => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let holder = holders_of(file)
        .into_iter()
        .find(|h| !h.waiting)
        .and_then(|h| h.pid);
    log::info!(
        "waiting for {what} ({}), held by {}",
        path.display(),
        describe_pid(holder)
    );
    flock(file, FlockOperation::LockExclusive).map_err(io_err(path))
}

/// `pid N (comm)`, or `another process` when the pid is not known.
fn describe_pid(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if comm.is_empty() {
                format!("pid {pid}")
            } else {
                format!("pid {pid} ({comm})")
            }
        }
        None => "another process".to_owned(),
    }
}

/// The writer lock of a pin directory (see the module documentation),
/// released on drop. Not to be taken twice by one process: the second
/// `flock` would wait for the first.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    /// The file, which names the pin directory it is for.
    path: PathBuf,
}

impl WriterLock {
    /// Wait until the writer lock of `pin_dir` is ours.
    pub fn acquire(pin_dir: &Path) -> Result<WriterLock, LockError> {
        Self::acquire_in(Path::new(STATE_DIR), pin_dir)
    }

    pub(crate) fn acquire_in(dir: &Path, pin_dir: &Path) -> Result<WriterLock, LockError> {
        let (file, path) = open_lock_file(dir, lock_path_in(dir, pin_dir))?;
        lock_exclusive(&file, &path, "the writer lock of the pins")?;
        Ok(WriterLock { _file: file, path })
    }

    /// Whether this is the lock of `pin_dir` with files in `dir`.
    pub(crate) fn is_for(&self, dir: &Path, pin_dir: &Path) -> bool {
        self.path == lock_path_in(dir, pin_dir)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The daemon's liveness lock (see the module documentation), held until
/// drop.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

/// How long [`DaemonLock::try_acquire`] retries while only readers
/// ([`daemon_liveness`] probes, which take it shared for an instant) hold it.
const PROBE_RETRY: Duration = Duration::from_millis(10);
const PROBE_RETRIES: u32 = 200;

impl DaemonLock {
    /// Take the liveness lock of `pin_dir`, or [`LockError::Held`] (naming
    /// the holder) when a daemon holds it. Does not wait for a daemon.
    pub fn try_acquire(pin_dir: &Path) -> Result<DaemonLock, LockError> {
        Self::try_acquire_in(Path::new(STATE_DIR), pin_dir)
    }

    pub(crate) fn try_acquire_in(dir: &Path, pin_dir: &Path) -> Result<DaemonLock, LockError> {
        let (file, path) = open_lock_file(dir, daemon_lock_path_in(dir, pin_dir))?;
        for _ in 0..PROBE_RETRIES {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(DaemonLock { _file: file }),
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            let holders = holders_of(&file);
            if let Some(h) = holders.iter().find(|h| h.exclusive && !h.waiting) {
                return Err(LockError::Held { path, pid: h.pid });
            }
            // Only probes hold it, for an instant (or a holder this process
            // cannot see in /proc/locks, which the retries outlast).
            std::thread::sleep(PROBE_RETRY);
        }
        Err(LockError::Held { path, pid: None })
    }
}

/// Whether a daemon runs on a pin directory, by its liveness lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Nobody holds the lock: no daemon runs.
    Dead,
    /// A daemon holds it.
    Alive {
        /// Its pid, when `/proc/locks` shows it (not when it runs in a pid
        /// namespace this process cannot see).
        pid: Option<u32>,
    },
}

/// Whether a daemon holds the liveness lock of `pin_dir`. Probes with a
/// shared lock for an instant; creates nothing.
pub fn daemon_liveness(pin_dir: &Path) -> Result<Liveness, LockError> {
    daemon_liveness_in(Path::new(STATE_DIR), pin_dir)
}

pub(crate) fn daemon_liveness_in(dir: &Path, pin_dir: &Path) -> Result<Liveness, LockError> {
    let path = daemon_lock_path_in(dir, pin_dir);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Liveness::Dead),
        Err(e) => return Err(io_err(&path)(e)),
    };
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        // Dropping the file releases the probe.
        Ok(()) => Ok(Liveness::Dead),
        Err(e) if would_block(&e) => Ok(Liveness::Alive {
            pid: holders_of(&file)
                .into_iter()
                .find(|h| h.exclusive && !h.waiting)
                .and_then(|h| h.pid),
        }),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// The lock of a lists directory (see the module documentation), released
/// on drop.
#[derive(Debug)]
pub struct ListsLock {
    _file: File,
}

impl ListsLock {
    /// Wait until the lock of the lists directory `dir` (which must exist)
    /// is ours.
    pub fn acquire(dir: &Path) -> Result<ListsLock, LockError> {
        let file = File::open(dir).map_err(io_err(dir))?;
        lock_exclusive(&file, dir, "the lock of the lists directory")?;
        Ok(ListsLock { _file: file })
    }
}

/// One `flock` on a file, as `/proc/locks` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The process that took it, as this process sees pids (`None` when
    /// `/proc/locks` shows 0: outside this pid namespace).
    pub pid: Option<u32>,
    /// An exclusive lock (`WRITE`), not a shared one.
    pub exclusive: bool,
    /// Not held yet: waiting for it (`->`).
    pub waiting: bool,
}

/// The `flock`s held on (or waited for) the file at `path`. Empty when it
/// does not exist or `/proc/locks` cannot be read.
pub fn holders(path: &Path) -> Vec<Holder> {
    File::open(path).map_or_else(|_| Vec::new(), |f| holders_of(&f))
}

fn holders_of(file: &File) -> Vec<Holder> {
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    );
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    parse_locks(&text, &id)
}

/// The `FLOCK` lines of `/proc/locks` text on the file `id` (`MAJ:MIN:INODE`,
/// major and minor in hex):
/// `1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF`, waiters with `->`
/// after the number.
fn parse_locks(text: &str, id: &str) -> Vec<Holder> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace().skip(1).peekable();
        let waiting = f.next_if_eq(&"->").is_some();
        let (Some("FLOCK"), Some(_), Some(mode), Some(pid), Some(file)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if file != id {
            continue;
        }
        out.push(Holder {
            pid: pid.parse::<u32>().ok().filter(|&p| p != 0),
            exclusive: mode == "WRITE",
            waiting,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`holders`] once two reads in a row agree. /proc/locks is read in
    /// pieces while other processes (cargo, other tests) take and drop
    /// locks, so one read can miss or repeat an entry.
    fn settled_holders(path: &Path) -> Vec<Holder> {
        let mut last = holders(path);
        for _ in 0..50 {
            let now = holders(path);
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// A fresh, empty temporary directory, removed on drop.
    fn temp_dir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("flowfilter-lock-{tag}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn proc_locks_lines() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 fe:00:77 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 fe:00:77 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 17 fe:00:77 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 99 fe:00:77 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 5 fe:00:770 0 EOF\n\
                    5: FLOCK  ADVISORY  WRITE 0 fe:00:77 0 EOF\n";
        let h = |pid, exclusive, waiting| Holder {
            pid,
            exclusive,
            waiting,
        };
        assert_eq!(
            parse_locks(text, "fe:00:77"),
            [
                h(Some(4242), true, false),
                h(Some(4343), true, true),
                h(Some(17), false, false),
                h(None, true, false),
            ]
        );
        assert!(parse_locks("", "fe:00:77").is_empty());
    }

    #[test]
    fn the_daemon_lock_names_its_holder_and_is_taken_once() {
        let d = temp_dir("daemon");
        let pins = Path::new("/sys/fs/bpf/t-lock");
        assert_eq!(daemon_liveness_in(d.path(), pins).unwrap(), Liveness::Dead);
        let me = std::process::id();
        let held = DaemonLock::try_acquire_in(d.path(), pins).unwrap();
        assert_eq!(
            daemon_liveness_in(d.path(), pins).unwrap(),
            Liveness::Alive { pid: Some(me) }
        );
        // A second daemon (another open file, even in this process) fails at
        // once, naming the holder.
        match DaemonLock::try_acquire_in(d.path(), pins) {
            Err(LockError::Held { pid, path }) => {
                assert_eq!(pid, Some(me));
                assert_eq!(path, d.path().join("t-lock.daemon.lock"));
            }
            other => panic!("{other:?}"),
        }
        let path = daemon_lock_path_in(d.path(), pins);
        assert_eq!(
            settled_holders(&path),
            [Holder {
                pid: Some(me),
                exclusive: true,
                waiting: false
            }]
        );
        drop(held);
        assert_eq!(daemon_liveness_in(d.path(), pins).unwrap(), Liveness::Dead);
        assert!(settled_holders(&path).is_empty());
        // Another pin directory has another lock.
        let _a = DaemonLock::try_acquire_in(d.path(), pins).unwrap();
        let _b = DaemonLock::try_acquire_in(d.path(), Path::new("/sys/fs/bpf/t/lock")).unwrap();
    }

    #[test]
    fn writers_wait_for_each_other() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let d = temp_dir("writer");
        let pins = Path::new("/sys/fs/bpf/t-writer");
        let first = WriterLock::acquire_in(d.path(), pins).unwrap();
        assert!(first.is_for(d.path(), pins));
        assert!(!first.is_for(d.path(), Path::new("/sys/fs/bpf/t/writer")));
        let got = AtomicBool::new(false);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                let _second = WriterLock::acquire_in(d.path(), pins).unwrap();
                got.store(true, Ordering::SeqCst);
            });
            // The second writer queues behind the first.
            let path = lock_path_in(d.path(), pins);
            while !holders(&path).iter().any(|h| h.waiting) {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(!got.load(Ordering::SeqCst));
            drop(first);
            t.join().unwrap();
        });
        assert!(got.load(Ordering::SeqCst));
        // The lists lock is on the directory itself.
        let lists = ListsLock::acquire(d.path()).unwrap();
        assert_eq!(settled_holders(d.path()).len(), 1);
        drop(lists);
        assert!(matches!(
            ListsLock::acquire(&d.path().join("missing")),
            Err(LockError::Io { .. })
        ));
    }
}
