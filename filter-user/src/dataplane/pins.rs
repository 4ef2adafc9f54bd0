//! Pinned state: everything a running filter needs lives under one bpffs
//! directory, so a daemon restart or crash leaves filtering in force and the
//! next start adopts it.
//!
//! Layout of the pin directory (default [`DEFAULT_PIN_DIR`]):
//!
//! ```text
//! PIN_DIR/maps/NAME    every map of the object's map sections (not .rodata,
//!                      .data or .bss: those belong to one program load)
//! PIN_DIR/prog         the XDP program the links run
//! PIN_DIR/links/IFACE  one bpf_link per interface (XDP, driver or skb mode)
//! ```
//!
//! bpffs holds no regular files, so "which binary made these pins" is
//! answered by comparing, not by a stamp: each pinned map's type, key size,
//! value size, capacity and flags against the definitions in the object this
//! binary ships ([`object_map_defs`], [`check_maps`]), and the pinned
//! program's tag (a hash of its instructions) against the tag of the program
//! this binary loads. aya reuses a pinned map without looking at it, so the
//! check runs before every adoption.
//!
//! Writers (the daemon, and CLI verbs that change lists or policies) hold
//! the pin directory's writer lock (`control::lock::WriterLock`) for the
//! whole read-modify-write of the tables. It lives beside the state file,
//! not in the pin directory: `detach` removes that, and a lock in it would
//! go with it while another writer waits for it.
//!
//! Permissions: owner-only. The directories are made [`DIR_MODE`] (0700)
//! and every pin is [`PIN_MODE`] (0600); the daemon's start makes it so
//! ([`PinLayout::restrict`]) and tightens looser modes an older version
//! left, with a log line. Group-readable pins would buy nothing: opening a
//! pin is a `bpf()` call, which unprivileged users cannot make
//! (`kernel.unprivileged_bpf_disabled`), and whoever holds `CAP_BPF` does
//! not need the file mode. Unprivileged readers get the counters from the
//! daemon's `--metrics` endpoint instead.

use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aya::maps::MapInfo;
use aya_obj::EbpfSectionKind;

/// Default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/flowfilter";
/// Where bpffs is mounted by convention (and by us when absent).
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Mode of the pin directory and its subdirectories: owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every pin (maps, program, links): owner only.
pub const PIN_MODE: u32 = 0o600;
/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
/// Map types whose capacity or value size aya sets at load time (perf event
/// arrays: number of CPUs; ring buffers: page-aligned). Their pinned
/// capacity is not compared with the object's.
const LOADER_SIZED_TYPES: [u32; 2] = [
    aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_PERF_EVENT_ARRAY as u32,
    aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32,
];

/// Errors about the pin directory and what is pinned in it.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// Nothing is pinned where the CLI looked.
    #[error("no pinned state at {}: is `flowfilter run` started (or was --pin-dir different)?", dir.display())]
    NoState {
        /// The pin directory.
        dir: PathBuf,
    },
    /// The directory is not on a bpf filesystem and none could be mounted.
    #[error(
        "{} is not on a bpf filesystem: mount one there (`mount -t bpf bpf DIR`) or use a directory under {BPFFS_ROOT}", dir.display()
    )]
    NotBpffs {
        /// The pin directory.
        dir: PathBuf,
    },
    /// Mounting bpffs at [`BPFFS_ROOT`] failed.
    #[error("mounting bpffs at {BPFFS_ROOT}: {source}")]
    Mount {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file operation on the pin directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pins were made by a different build (maps or program differ).
    #[error(
        "the pins at {} were made by a different flowfilter build:\n  {}\nstop that filter with `flowfilter detach --pin-dir {}`, or start with `flowfilter run --replace` to swap it for this build", dir.display(), problems.join("\n  "), dir.display()
    )]
    Mismatch {
        /// The pin directory.
        dir: PathBuf,
        /// One line per map or program that differs.
        problems: Vec<String>,
    },
    /// The shipped object could not be parsed.
    #[error("parsing the shipped XDP object: {0}")]
    Object(String),
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Paths inside a pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinLayout {
    /// The pin directory.
    pub dir: PathBuf,
}

impl PinLayout {
    /// The layout of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> PinLayout {
        PinLayout { dir: dir.into() }
    }

    /// `DIR/maps`.
    pub fn maps_dir(&self) -> PathBuf {
        self.dir.join("maps")
    }

    /// `DIR/maps/NAME`.
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// `DIR/prog`.
    pub fn prog(&self) -> PathBuf {
        self.dir.join("prog")
    }

    /// `DIR/links`.
    pub fn links_dir(&self) -> PathBuf {
        self.dir.join("links")
    }

    /// `DIR/links/IFACE`.
    pub fn link(&self, iface: &str) -> PathBuf {
        self.links_dir().join(iface)
    }

    /// Whether a program is pinned.
    pub fn has_program(&self) -> bool {
        self.prog().exists()
    }

    /// Names of the pinned maps, sorted (empty when there are none).
    pub fn pinned_maps(&self) -> Result<Vec<String>, PinError> {
        names_in(&self.maps_dir())
    }

    /// Interfaces with a pinned link, sorted.
    pub fn pinned_links(&self) -> Result<Vec<String>, PinError> {
        names_in(&self.links_dir())
    }

    /// Whether anything of a running filter is pinned (program or a link):
    /// then changing the pins affects live traffic.
    pub fn in_use(&self) -> Result<bool, PinError> {
        Ok(self.has_program() || !self.pinned_links()?.is_empty())
    }

    /// Whether anything at all is pinned.
    pub fn is_empty(&self) -> Result<bool, PinError> {
        Ok(!self.in_use()? && self.pinned_maps()?.is_empty())
    }

    /// Create the directory and its `maps` and `links` subdirectories
    /// ([`DIR_MODE`], and so is any missing parent made here). Existing
    /// directories keep their mode until [`PinLayout::restrict`].
    pub fn create(&self) -> Result<(), PinError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(DIR_MODE);
        for d in [self.dir.clone(), self.maps_dir(), self.links_dir()] {
            builder.create(&d).map_err(io_err(&d))?;
        }
        Ok(())
    }

    /// Give the directory, its `maps` and `links` subdirectories and every
    /// pin in them owner-only modes ([`DIR_MODE`], [`PIN_MODE`]). A pin or
    /// directory with another mode (left by an older version, or changed by
    /// hand) is changed, with a log line; symbolic links and anything not
    /// of this layout are left alone. Returns the paths it changed.
    pub fn restrict(&self) -> Result<Vec<PathBuf>, PinError> {
        let mut targets = vec![(self.dir.clone(), DIR_MODE)];
        for (sub, names) in [
            (self.maps_dir(), self.pinned_maps()?),
            (self.links_dir(), self.pinned_links()?),
        ] {
            targets.extend(names.iter().map(|n| (sub.join(n), PIN_MODE)));
            targets.push((sub, DIR_MODE));
        }
        targets.push((self.prog(), PIN_MODE));
        let mut changed = Vec::new();
        for (path, want) in targets {
            if set_mode(&path, want)? {
                changed.push(path);
            }
        }
        Ok(changed)
    }

    /// For CLI verbs: fail with [`PinError::NoState`] unless a filter's maps
    /// are pinned here.
    pub fn require(&self) -> Result<(), PinError> {
        if self.dir.is_dir() && !self.pinned_maps()?.is_empty() {
            Ok(())
        } else {
            Err(PinError::NoState {
                dir: self.dir.clone(),
            })
        }
    }

    /// Remove every pin and the directory itself (links first, so traffic
    /// stops being filtered before the maps go). Missing pieces are fine.
    pub fn remove_all(&self) -> Result<(), PinError> {
        for iface in self.pinned_links()? {
            remove_file(&self.link(&iface))?;
        }
        remove_file(&self.prog())?;
        for m in self.pinned_maps()? {
            remove_file(&self.map(&m))?;
        }
        for d in [self.links_dir(), self.maps_dir(), self.dir.clone()] {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&d)(e)),
            }
        }
        Ok(())
    }
}

/// Remove a file; a missing one is fine.
pub fn remove_file(path: &Path) -> Result<(), PinError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Set the permission bits of `path` to `want` unless they are already;
/// whether they were changed. A missing path or a symbolic link is left
/// alone.
fn set_mode(path: &Path, want: u32) -> Result<bool, PinError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || mode == want {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).map_err(io_err(path))?;
    log::warn!(
        "{}: mode {mode:04o} changed to {want:04o} (pins are owner-only)",
        path.display()
    );
    Ok(true)
}

/// File names in `dir`, sorted; a missing directory has none.
fn names_in(dir: &Path) -> Result<Vec<String>, PinError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(io_err(dir))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The filesystem magic of `path` (`statfs`).
fn fs_magic(path: &Path) -> io::Result<u32> {
    Ok(rustix::fs::statfs(path)?.f_type as u32)
}

/// The nearest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
}

/// Whether this process shares the mount namespace of PID 1. Under
/// `ip netns exec` it does not, and a bpffs mounted there dies with it.
pub fn in_initial_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => true,
    }
}

/// Make sure `dir` can live on bpffs: when it is under [`BPFFS_ROOT`] and
/// nothing is mounted there, mount bpffs (mode 0700). Returns whether this
/// call mounted it.
pub fn ensure_bpffs(dir: &Path) -> Result<bool, PinError> {
    let probe = existing_ancestor(dir);
    if fs_magic(probe).map_err(io_err(probe))? == BPF_FS_MAGIC {
        return Ok(false);
    }
    let root = Path::new(BPFFS_ROOT);
    if !dir.starts_with(root) || !root.is_dir() {
        return Err(PinError::NotBpffs {
            dir: dir.to_path_buf(),
        });
    }
    let flags = rustix::mount::MountFlags::empty();
    rustix::mount::mount("bpf", BPFFS_ROOT, "bpf", flags, c"mode=0700")
        .map_err(|e| PinError::Mount { source: e.into() })?;
    if fs_magic(root).map_err(io_err(root))? != BPF_FS_MAGIC {
        return Err(PinError::NotBpffs {
            dir: dir.to_path_buf(),
        });
    }
    Ok(true)
}

/// A map as this binary defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// Map name.
    pub name: String,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity (after the loader's overrides).
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub flags: u32,
}

/// The pinnable maps of `object` (map sections only, not global data), with
/// `max_entries` overridden as the loader does (`overrides`: name, value).
pub fn object_map_defs(object: &[u8], overrides: &[(&str, u32)]) -> Result<Vec<MapDef>, PinError> {
    let obj = aya_obj::Object::parse(object).map_err(|e| PinError::Object(e.to_string()))?;
    let mut defs: Vec<MapDef> = obj
        .maps
        .iter()
        .filter(|(_, m)| {
            matches!(
                m.section_kind(),
                EbpfSectionKind::Maps | EbpfSectionKind::BtfMaps
            )
        })
        .map(|(name, m)| MapDef {
            name: name.clone(),
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: overrides
                .iter()
                .find(|(n, _)| n == name)
                .map_or(m.max_entries(), |&(_, v)| v),
            flags: m.map_flags(),
        })
        .collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(defs)
}

/// What is wrong with one pinned map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapProblem {
    /// The object has the map, the pin directory does not.
    Missing {
        /// Map name.
        name: String,
    },
    /// Pinned, but type, sizes, capacity or flags differ.
    Differs {
        /// Map name.
        name: String,
        /// One entry per field: "value size: pinned 16, this build 24".
        fields: Vec<String>,
    },
    /// Pinned, but not a map of this build.
    Extra {
        /// Map name.
        name: String,
    },
    /// The pin could not be read.
    Unreadable {
        /// Map name.
        name: String,
        /// Why.
        error: String,
    },
}

impl MapProblem {
    /// The map it is about.
    pub fn name(&self) -> &str {
        match self {
            MapProblem::Missing { name }
            | MapProblem::Differs { name, .. }
            | MapProblem::Extra { name }
            | MapProblem::Unreadable { name, .. } => name,
        }
    }
}

impl std::fmt::Display for MapProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapProblem::Missing { name } => {
                write!(f, "map {name}: this build has it, the pins do not")
            }
            MapProblem::Differs { name, fields } => {
                write!(f, "map {name}: {}", fields.join("; "))
            }
            MapProblem::Extra { name } => {
                write!(f, "map {name}: pinned, but this build has no such map")
            }
            MapProblem::Unreadable { name, error } => {
                write!(f, "map {name}: cannot read the pin: {error}")
            }
        }
    }
}

/// The pinned map's kernel description, as a [`MapDef`].
pub fn pinned_map_def(path: &Path, name: &str) -> Result<MapDef, String> {
    let info = MapInfo::from_pin(path).map_err(|e| e.to_string())?;
    let map_type = info.map_type().map_err(|e| e.to_string())? as u32;
    Ok(MapDef {
        name: name.to_owned(),
        map_type,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}

/// Compare one pinned map with its definition; empty when they agree.
pub fn compare(pinned: &MapDef, def: &MapDef) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = |what: &str, p: u32, d: u32| {
        if p != d {
            fields.push(format!("{what}: pinned {p}, this build {d}"));
        }
    };
    field("type", pinned.map_type, def.map_type);
    field("key size", pinned.key_size, def.key_size);
    if !LOADER_SIZED_TYPES.contains(&def.map_type) {
        field("value size", pinned.value_size, def.value_size);
        if def.max_entries != 0 {
            field("capacity", pinned.max_entries, def.max_entries);
        }
    }
    field("flags", pinned.flags, def.flags);
    fields
}

/// Check every pinned map of `layout` against `defs`.
pub fn check_maps(layout: &PinLayout, defs: &[MapDef]) -> Result<Vec<MapProblem>, PinError> {
    let pinned = layout.pinned_maps()?;
    let mut problems = Vec::new();
    for def in defs {
        if !pinned.contains(&def.name) {
            problems.push(MapProblem::Missing {
                name: def.name.clone(),
            });
            continue;
        }
        match pinned_map_def(&layout.map(&def.name), &def.name) {
            Ok(p) => {
                let fields = compare(&p, def);
                if !fields.is_empty() {
                    problems.push(MapProblem::Differs {
                        name: def.name.clone(),
                        fields,
                    });
                }
            }
            Err(error) => problems.push(MapProblem::Unreadable {
                name: def.name.clone(),
                error,
            }),
        }
    }
    for name in pinned {
        if !defs.iter().any(|d| d.name == name) {
            problems.push(MapProblem::Extra { name });
        }
    }
    Ok(problems)
}

/// A pinned link's id and the id of the program it runs.
pub fn link_ids(path: &Path) -> Result<(u32, u32), String> {
    let pinned = aya::programs::links::PinnedLink::from_pin(path).map_err(|e| e.to_string())?;
    let fd: aya::programs::links::FdLink = pinned.into();
    let info = fd.info().map_err(|e| e.to_string())?;
    Ok((info.id(), info.program_id()))
}

/// A pinned bpf_link as the kernel describes it (`/proc/self/fdinfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// The link's id.
    pub id: u32,
    /// The program it runs.
    pub program_id: u32,
    /// The interface it is attached to: `Some(0)` when the interface is gone
    /// (the kernel detaches an XDP link from a deleted device and keeps the
    /// link, defunct); `None` when the kernel does not say.
    pub ifindex: Option<u32>,
}

/// The kernel's description of the bpf_link pinned at `path`; `None` when
/// nothing is pinned there.
pub fn pinned_link_state(path: &Path) -> Result<Option<LinkState>, PinError> {
    /// `union bpf_attr` for `BPF_OBJ_GET`.
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        pad: u32,
    }
    const BPF_OBJ_GET: libc::c_long = 7;
    use std::os::fd::{FromRawFd as _, OwnedFd};
    use std::os::unix::ffi::OsStrExt as _;
    if !path.exists() {
        return Ok(None);
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io_err(path)(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let attr = ObjGet {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    // SAFETY: bpf(BPF_OBJ_GET) reads the attribute and the NUL-terminated
    // path, both alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &raw const attr,
            std::mem::size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(io_err(path)(e));
    }
    // SAFETY: a descriptor the kernel just returned, owned from here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let info_path = PathBuf::from(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()));
    let text = std::fs::read_to_string(&info_path).map_err(io_err(&info_path))?;
    drop(fd);
    parse_link_fdinfo(&text)
        .ok_or_else(|| {
            io_err(path)(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a bpf_link (no link_id in its fdinfo)",
            ))
        })
        .map(Some)
}

/// `link_id`, `prog_id` and `ifindex` of a link's fdinfo.
fn parse_link_fdinfo(text: &str) -> Option<LinkState> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse::<u32>().ok())?
        })
    };
    Some(LinkState {
        id: field("link_id")?,
        program_id: field("prog_id")?,
        ifindex: field("ifindex"),
    })
}

/// Where the pins of a directory would live, seen from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinVisibility {
    /// The host sees them (or nothing says otherwise).
    Host,
    /// This process has a mount namespace of its own whose bpffs is not the
    /// host's: its pins die with it.
    Private {
        /// What shows it.
        why: String,
        /// The network namespace of `ip netns exec NAME`, when that is how
        /// the process was started.
        netns: Option<String>,
    },
}

/// Whether pins made under `dir` would outlive this process where the host
/// sees them. Under `ip netns exec` (which unshares the mount namespace and
/// mounts a new /sys without /sys/fs/bpf) they would not: bpffs is missing
/// there, and one mounted there is private. The host is the mount
/// namespace of PID 1, or failing that (PID 1 may be unreadable) the
/// nearest ancestor process in another mount namespace.
pub fn pin_visibility(dir: &Path) -> PinVisibility {
    let netns = ip_netns_exec_name();
    let Some((pid, other)) = other_mount_namespace() else {
        // Nothing readable in another mount namespace: only the /sys
        // remount of `ip netns exec` tells.
        return match netns {
            Some(n) => PinVisibility::Private {
                why: format!("/sys is the sysfs `ip netns exec {n}` mounts"),
                netns: Some(n),
            },
            None => PinVisibility::Host,
        };
    };
    let probe = existing_ancestor(dir);
    let ours = fs_magic(probe)
        .ok()
        .filter(|&m| m == BPF_FS_MAGIC)
        .and_then(|_| dev_of(probe));
    let theirs_path = Path::new("/proc")
        .join(pid.to_string())
        .join("root")
        .join(dir.strip_prefix("/").unwrap_or(dir));
    let theirs_probe = existing_ancestor(&theirs_path);
    let theirs = fs_magic(theirs_probe)
        .ok()
        .filter(|&m| m == BPF_FS_MAGIC)
        .and_then(|_| dev_of(theirs_probe));
    match (ours, theirs) {
        (Some(a), Some(b)) if a == b => PinVisibility::Host,
        (Some(_), Some(_)) => PinVisibility::Private {
            why: format!(
                "the bpffs at {} is not the one process {pid} (mount namespace {other}) sees",
                probe.display()
            ),
            netns,
        },
        (None, _) => PinVisibility::Private {
            why: format!(
                "this process has its own mount namespace and no bpffs at {}: one mounted here would be private",
                probe.display()
            ),
            netns,
        },
        (Some(_), None) => PinVisibility::Private {
            why: format!(
                "process {pid} (mount namespace {other}) has no bpffs at {}",
                dir.display()
            ),
            netns,
        },
    }
}

/// A process in another mount namespace than ours: PID 1 if readable, else
/// the nearest ancestor; with that namespace's name.
fn other_mount_namespace() -> Option<(u32, String)> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let ns_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    if let Some(init) = ns_of(1) {
        return (init != ours).then(|| (1, init.to_string_lossy().into_owned()));
    }
    let mut pid = std::process::id();
    for _ in 0..64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        if ppid <= 1 {
            return None;
        }
        if let Some(ns) = ns_of(ppid)
            && ns != ours
        {
            return Some((ppid, ns.to_string_lossy().into_owned()));
        }
        pid = ppid;
    }
    None
}

/// The network namespace name when /sys is the sysfs `ip netns exec NAME`
/// mounts (its source is NAME, and /run/netns/NAME exists).
fn ip_netns_exec_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The last mount on /sys is the one in use.
    let (_, post) = info
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .rfind(|(pre, _)| pre.split_whitespace().nth(4) == Some("/sys"))?;
    let mut post = post.split_whitespace();
    let (fstype, source) = (post.next()?, post.next()?);
    (fstype == "sysfs"
        && source != "sysfs"
        && !source.contains('/')
        && Path::new("/run/netns").join(source).exists())
    .then(|| source.to_owned())
}

/// The device number of the filesystem holding `path`.
fn dev_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// Format a program tag as the kernel and bpftool show it.
pub fn tag_hex(tag: u64) -> String {
    format!("{tag:016x}")
}

#[cfg(test)]
mod tests;
