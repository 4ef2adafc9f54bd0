//! Files replaced whole: one atomic write for every layer (the state file,
//! list files written by `list update`).

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// The permissions of a file [`write_atomic`] writes.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Exactly these bits (the state file: owner only).
    Exact(u32),
    /// The replaced file's permissions, these bits for a new file.
    KeepOr(u32),
}

/// Replace `path` with `bytes` atomically: a temporary file in the same
/// directory gets the bytes and its mode, is fsynced and renamed over
/// `path`, then the directory is fsynced. Readers see the old file or the
/// new one, never a part; on any failure the temporary file is removed and
/// `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let bits = match mode {
        Mode::Exact(m) => m,
        Mode::KeepOr(m) => fs::metadata(path)
            .ok()
            .filter(fs::Metadata::is_file)
            .map_or(m, |meta| meta.permissions().mode() & 0o7777),
    };
    let perm = fs::Permissions::from_mode(bits);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(perm.clone())
        .tempfile_in(dir)?;
    // The umask may have cleared bits at creation.
    tmp.as_file().set_permissions(perm)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Hidden files (the temporary files) in `dir`.
    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn replaces_whole_with_the_mode_asked_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        write_atomic(&p, b"one\n", Mode::KeepOr(0o644)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one\n");
        assert_eq!(mode_of(&p), 0o644);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"two\n", Mode::KeepOr(0o644)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two\n");
        assert_eq!(mode_of(&p), 0o640, "the replaced file's mode is kept");
        write_atomic(&p, b"three\n", Mode::Exact(0o600)).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_replace_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails.
        let p = dir.path().join("taken");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), b"x").unwrap();
        assert!(write_atomic(&p, b"new", Mode::Exact(0o600)).is_err());
        assert!(p.is_dir());
        assert!(leftovers(dir.path()).is_empty());
        assert!(write_atomic(Path::new("/"), b"x", Mode::Exact(0o600)).is_err());
    }
}
