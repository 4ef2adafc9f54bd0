//! A list or policy change as one transaction: take the locks (the lists
//! directory's, then the writer lock of the pins), read the state file,
//! stage, install, replace the list file, record. On failure nothing changes
//! but the record of the attempt.
//!
//! A list change is done when its file is replaced, and that happens only
//! after the tables flipped to it: the new text is written beside the file
//! as `.NAME.txt.staged` (hidden: list loading skips it), the inactive
//! generation is filled and the generation flipped, then the staged file is
//! renamed over `NAME.txt` (the state file is written just before the
//! flip). A writer killed before the rename leaves the old file and (unless
//! the flip had just happened) the old tables; the lists directory never holds a list that
//! was not installed. The next writer removes the staged file it left, and
//! the next reload installs the files as they are.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::control::lock::{ListsLock, WriterLock};
use crate::control::state::{ReloadBy, StateFile, state_path};
use crate::control::{
    Error, ListReplacement, Prepared, Settings, install, prepare, prepare_with, record,
};
use crate::dataplane::loader::{Filter, GenerationInfo};
use crate::dataplane::pins::PinLayout;

pub(crate) fn no_state_file(layout: &PinLayout) -> Error {
    Error::Other(format!(
        "no state file at {} for the pins at {}: start `flowfilter run` once to write it",
        state_path(&layout.dir).display(),
        layout.dir.display()
    ))
}

/// The settings of the installed state (lists directory, policies).
pub(crate) fn current_settings(layout: &PinLayout) -> Result<(Settings, StateFile), Error> {
    let state = StateFile::read(&layout.dir)?.ok_or_else(|| no_state_file(layout))?;
    let (settings, _) = Settings::from_state(&state)?;
    Ok((settings, state))
}

/// Suffix of a list file's new text while it waits for the flip.
pub(crate) const STAGED_SUFFIX: &str = ".txt.staged";

/// A list file's new text (see the module documentation).
pub(crate) struct Staged {
    /// The category, or `allow`.
    pub(crate) name: String,
    /// `LISTS/NAME.txt`.
    pub(crate) path: PathBuf,
    /// The new text.
    pub(crate) text: String,
}

impl Staged {
    pub(crate) fn new(name: &str, lists_dir: &Path, text: String) -> Staged {
        Staged {
            name: name.to_owned(),
            path: lists_dir.join(format!("{name}.txt")),
            text,
        }
    }

    pub(crate) fn replacement(&self) -> ListReplacement<'_> {
        ListReplacement {
            name: &self.name,
            file: &self.path,
            text: &self.text,
        }
    }

    /// `LISTS/.NAME.txt.staged`.
    pub(crate) fn staged_path(&self) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        dir.join(format!(".{}{STAGED_SUFFIX}", self.name))
    }

    /// Write the staged file (with the mode of the file it replaces, if
    /// any) and fsync it: after the flip only the rename is left.
    pub(crate) fn write(&self) -> Result<PathBuf, Error> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let staged = self.staged_path();
        let what = || staged.display().to_string();
        let mode = std::fs::metadata(&self.path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode.unwrap_or(0o666))
            .open(&staged)
            .map_err(Error::io(what()))?;
        let written = (|| {
            if let Some(m) = mode {
                f.set_permissions(std::fs::Permissions::from_mode(m))?;
            }
            f.write_all(self.text.as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            discard(&staged);
            return Err(Error::io(what())(e));
        }
        Ok(staged)
    }

    /// Rename the staged file over the list file, then fsync the directory.
    pub(crate) fn commit(&self, staged: &Path) -> Result<(), Error> {
        std::fs::rename(staged, &self.path)
            .map_err(Error::io(format!("replacing {}", self.path.display())))?;
        if let Some(dir) = self.path.parent()
            && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
        {
            log::warn!("fsync of {}: {e}", dir.display());
        }
        Ok(())
    }
}

/// Remove a staged file that will not be used.
pub(crate) fn discard(staged: &Path) {
    if let Err(e) = std::fs::remove_file(staged)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("removing {}: {e}", staged.display());
    }
}

/// Remove the staged files of writers that were killed before their rename
/// (the caller holds the lock, so no writer is at work). Their lists were
/// never the files' lists; the tables follow the files again at the next
/// install.
pub(crate) fn remove_stale_staged(lists_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(lists_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(STAGED_SUFFIX) {
            log::warn!(
                "removing {}: left by an interrupted list change (the list file was not replaced)",
                e.path().display()
            );
            discard(&e.path());
        }
    }
}

/// The locks of a change, and the state file read under them.
pub(crate) struct Locked {
    /// The lists directory's, when the change writes a list file.
    pub(crate) _lists: Option<ListsLock>,
    /// The writer lock of the pins.
    pub(crate) writer: WriterLock,
    pub(crate) state: StateFile,
}

/// Take the locks of a change (when `lists`, the lists directory's first,
/// then the writer lock) and read the state file under them.
pub(crate) fn lock_for_change(layout: &PinLayout, lists: bool) -> Result<Locked, Error> {
    for _ in 0..3 {
        // Which lists directory: read without the lock, checked under it.
        let lists_lock = if lists {
            let (s, _) = current_settings(layout)?;
            let lock = if s.lists_dir.is_dir() {
                Some(ListsLock::acquire(&s.lists_dir)?)
            } else {
                None
            };
            Some((s.lists_dir, lock))
        } else {
            None
        };
        let writer = WriterLock::acquire(&layout.dir)?;
        // A detach may have removed the pins while this waited.
        layout.require()?;
        let state = StateFile::read(&layout.dir)?.ok_or_else(|| no_state_file(layout))?;
        let Some((dir, lock)) = lists_lock else {
            return Ok(Locked {
                _lists: None,
                writer,
                state,
            });
        };
        if Settings::from_state(&state)?.0.lists_dir == dir {
            return Ok(Locked {
                _lists: lock,
                writer,
                state,
            });
        }
        // The lists directory changed while this waited (a daemon started
        // with another `--lists`): lock that one.
    }
    Err(Error::Other(format!(
        "the lists directory of the pins at {} keeps changing; try again",
        layout.dir.display()
    )))
}

/// Lock, edit, validate, install, replace the list file (if the edit
/// changes one; `lists` says it may), record. On failure nothing is changed
/// but the record of the failed attempt.
pub(crate) fn change(
    layout: &PinLayout,
    by: &ReloadBy,
    lists: bool,
    edit: impl FnOnce(&mut StateFile, &Settings) -> Result<Option<Staged>, Error>,
) -> Result<(GenerationInfo, Prepared), Error> {
    layout.require()?;
    let Locked {
        _lists,
        writer: lock,
        mut state,
    } = lock_for_change(layout, lists)?;
    let before = state.clone();
    let (settings, _) = Settings::from_state(&state)?;
    remove_stale_staged(&settings.lists_dir);
    let staged = edit(&mut state, &settings)?;
    // Whether the state file holds an install of this change (then it is
    // the base of the failure's record, not `before`).
    let mut recorded = false;
    let result = (|| {
        let (settings, _) = Settings::from_state(&state)?;
        let p = prepare_with(&settings, staged.as_ref().map(Staged::replacement))?;
        let mut f = Filter::open_pinned(layout, true)?;
        let Some(staged) = &staged else {
            let info = install(&mut f, &p, &mut state, by, &lock)?;
            return Ok((info, p));
        };
        let file = staged.write()?;
        let info = match install(&mut f, &p, &mut state, by, &lock) {
            Ok(info) => info,
            Err(e) => {
                discard(&file);
                return Err(e);
            }
        };
        recorded = true;
        // The flip is done; the rename makes it the file's list.
        if let Err(e) = staged.commit(&file) {
            discard(&file);
            // The tables hold the new list, the file the old: back to the file.
            let undo = ReloadBy::Undone(Box::new(by.clone()));
            if let Err(back) =
                prepare(&settings).and_then(|p| install(&mut f, &p, &mut state, &undo, &lock))
            {
                log::error!(
                    "installing {} as it is again: {back}; run `flowfilter reload`",
                    staged.path.display()
                );
            }
            return Err(e);
        }
        Ok((info, p))
    })();
    if let Err(e) = &result
        && !matches!(e, Error::NotRecorded { .. })
    {
        let mut failed = if recorded { state } else { before };
        record(&mut failed, Some(e), by);
        if let Err(w) = failed.write(&lock) {
            log::warn!("recording the failed attempt: {w}");
        }
    }
    result
}
