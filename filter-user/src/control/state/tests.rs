use super::*;
use crate::lists::tests::TempDir;

#[test]
fn paths_follow_the_pin_dir() {
    let path = |p: &str| state_path(Path::new(p));
    assert_eq!(
        path("/sys/fs/bpf/flowfilter"),
        Path::new("/run/flowfilter/flowfilter.json")
    );
    assert_eq!(
        path("/sys/fs/bpf/a/b/"),
        Path::new("/run/flowfilter/a+b.json")
    );
    assert_eq!(
        path("/sys/fs/bpf/a-b"),
        Path::new("/run/flowfilter/a-b.json")
    );
    assert_eq!(
        path("/mnt/bpf/ff"),
        Path::new("/run/flowfilter/+mnt+bpf+ff.json")
    );
    assert_eq!(
        path("/sys/fs/bpf"),
        Path::new("/run/flowfilter/+sys+fs+bpf.json")
    );
    assert_eq!(
        crate::control::lock::lock_path(Path::new("/sys/fs/bpf/a/b")),
        Path::new("/run/flowfilter/a+b.lock")
    );
    assert_eq!(
        crate::control::lock::daemon_lock_path(Path::new("/sys/fs/bpf/a/b")),
        Path::new("/run/flowfilter/a+b.daemon.lock")
    );
}

#[test]
fn no_two_pin_dirs_share_a_name() {
    let dirs = [
        "/sys/fs/bpf/a-b",
        "/sys/fs/bpf/a/b",
        "/sys/fs/bpf/a+b",
        "/sys/fs/bpf/a%2bb",
        "/sys/fs/bpf/a%b",
        "/sys/fs/bpf/a b",
        "/sys/fs/bpf/a_b",
        "/sys/fs/bpf/mnt/bpf/ff",
        "/mnt/bpf/ff",
        "/mnt-bpf-ff",
        "/sys/fs/bpf/+mnt+bpf+ff",
        "/sys/fs/bpf",
        "/sys/fs/bpf/root",
        "/sys/fs/bpf/.x",
        "/sys/fs/bpf/%2ex",
        "/sys/fs/bpf/-x",
        "/sys/fs/bpf/x.",
        "/sys/fs/bpf/ü",
        "/",
    ];
    let mut seen = BTreeMap::new();
    for d in dirs {
        let name = state_name(Path::new(d));
        assert!(
            name.bytes().all(|b| b.is_ascii_graphic() && b != b'/'),
            "{d}: {name}"
        );
        assert!(!name.starts_with(['.', '-']), "{d}: {name}");
        if let Some(other) = seen.insert(name.clone(), d) {
            panic!("{d} and {other} share {name}");
        }
    }
    assert_eq!(state_name(Path::new("/sys/fs/bpf/a b")), "a%20b");
    assert_eq!(state_name(Path::new("/sys/fs/bpf/.x")), "%2ex");
    assert_eq!(state_name(Path::new("/sys/fs/bpf/ü")), "%c3%bc");
    // Spellings of one path share its name.
    for same in ["/sys/fs/bpf/a//b", "/sys/fs/bpf/a/./b/", "/sys/fs/bpf/a/b"] {
        assert_eq!(state_name(Path::new(same)), "a+b", "{same}");
    }
}

#[test]
fn version_1_files_are_read_once_and_moved() {
    let d = TempDir::new("state-migrate");
    let ab = Path::new("/sys/fs/bpf/a/b");
    let a_b = Path::new("/sys/fs/bpf/a-b");
    // Version 1 kept /sys/fs/bpf/a/b's state in a-b.json, the name of
    // /sys/fs/bpf/a-b's state now.
    let mut old = StateFile::new(ab);
    old.version = 1;
    old.overrides.insert("zoom".into(), spec("off"));
    std::fs::write(d.path("a-b.json"), serde_json::to_string(&old).unwrap()).unwrap();
    assert_eq!(StateFile::read_in(d.dir(), ab).unwrap(), Some(old.clone()));
    // Not a-b's, though it has that name.
    assert_eq!(StateFile::read_in(d.dir(), a_b).unwrap(), None);
    // a/b's next write moves it to a+b.json.
    let lock = WriterLock::acquire_in(d.dir(), ab).unwrap();
    let mut new = old.clone();
    new.version = STATE_VERSION;
    new.write_in(d.dir(), &lock).unwrap();
    assert_eq!(d.names(""), ["a+b.json", "a+b.lock"]);
    assert_eq!(StateFile::read_in(d.dir(), ab).unwrap(), Some(new.clone()));
    // a-b's write of its own file, while a/b's old one still has the
    // name, moves that one aside first.
    std::fs::rename(d.path("a+b.json"), d.path("a-b.json")).unwrap();
    let lock_ab = WriterLock::acquire_in(d.dir(), a_b).unwrap();
    // The lock of one pin directory does not write another's state.
    assert!(matches!(
        StateFile::new(a_b).write_in(d.dir(), &lock),
        Err(StateError::NotLocked { .. })
    ));
    StateFile::new(a_b).write_in(d.dir(), &lock_ab).unwrap();
    assert_eq!(StateFile::read_in(d.dir(), ab).unwrap(), Some(new));
    assert_eq!(
        StateFile::read_in(d.dir(), a_b).unwrap(),
        Some(StateFile::new(a_b))
    );
    // Removing one leaves the other.
    StateFile::remove_in(d.dir(), ab, &lock).unwrap();
    assert_eq!(StateFile::read_in(d.dir(), ab).unwrap(), None);
    assert_eq!(d.names(""), ["a+b.lock", "a-b.json", "a-b.lock"]);
}

/// `dir` bound read-only onto itself until dropped (root only).
struct ReadOnly(std::ffi::CString);

impl ReadOnly {
    fn bind(dir: &Path) -> Option<ReadOnly> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let bind = libc::MS_BIND;
        // SAFETY: valid C strings; a bind mount of a private test directory.
        unsafe {
            assert_eq!(
                libc::mount(
                    c.as_ptr(),
                    c.as_ptr(),
                    std::ptr::null(),
                    bind,
                    std::ptr::null()
                ),
                0
            );
            assert_eq!(
                libc::mount(
                    std::ptr::null(),
                    c.as_ptr(),
                    std::ptr::null(),
                    bind | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null()
                ),
                0
            );
        }
        Some(ReadOnly(c))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        // SAFETY: the mount made in `bind`.
        unsafe { libc::umount2(self.0.as_ptr(), 0) };
    }
}

#[test]
fn a_failed_write_leaves_the_old_file() {
    let d = TempDir::new("state-fail");
    let pins = Path::new("/sys/fs/bpf/t-fail");
    let lock = WriterLock::acquire_in(d.dir(), pins).unwrap();
    let mut s = StateFile::new(pins);
    s.write_in(d.dir(), &lock).unwrap();
    let before = d.names("");
    // A directory where nothing can be created: the write fails.
    let Some(ro) = ReadOnly::bind(d.dir()) else {
        eprintln!(
            "a_failed_write_leaves_the_old_file: needs root (a read-only bind mount), skipped"
        );
        return;
    };
    s.generation = 7;
    let e = s.write_in(d.dir(), &lock).unwrap_err();
    drop(ro);
    assert!(matches!(e, StateError::Io { .. }), "{e}");
    assert_eq!(
        StateFile::read_in(d.dir(), pins).unwrap(),
        Some(StateFile::new(pins))
    );
    assert_eq!(d.names(""), before, "nothing left behind");
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
        policy: PolicySpec::default(),
        policy_source: Source::Default,
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
    let d = TempDir::new("state-temporaries");
    let me = std::process::id();
    for n in [
        "x.json.tmp4000000000".to_owned(),
        format!("x.json.tmp{me}"),
        "x.json.tmpabc".into(),
        "y.json.tmp4000000000".into(),
    ] {
        d.write(&n, "");
    }
    remove_dead_temporaries(&d.path("x.json"));
    assert_eq!(
        d.names(""),
        [
            format!("x.json.tmp{me}"),
            "x.json.tmpabc".into(),
            "y.json.tmp4000000000".into()
        ]
    );
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

/// A state file as written before its values were typed (every kind of
/// policy, source, attach mode and `by`).
const WRITTEN: &str = r#"{
  "version": 2,
  "pin_dir": "/sys/fs/bpf/flowfilter",
  "daemon": {
    "pid": 4242,
    "started": 1700000000,
    "metrics": "127.0.0.1:9477",
    "detach_on_exit": false
  },
  "config": "/etc/flowfilter/flowfilter.toml",
  "flags": {
    "lists": "/srv/lists",
    "normalize": true,
    "policies": {
      "telegram": "flows=30%,scope=udp",
      "zoom": "loss=5%"
    }
  },
  "overrides": {
    "meet": "drop,scope=udp",
    "whatsapp": "monitor"
  },
  "lists_dir": "/srv/lists",
  "normalize": true,
  "categories": [
    {
      "id": 1,
      "name": "whatsapp",
      "v4_prefixes": 12,
      "v6_prefixes": 3,
      "policy": "monitor",
      "policy_source": "cli"
    },
    {
      "id": 2,
      "name": "telegram",
      "v4_prefixes": 40,
      "v6_prefixes": 8,
      "policy": "flows=30%,scope=udp",
      "policy_source": "flag"
    },
    {
      "id": 3,
      "name": "zoom",
      "v4_prefixes": 5,
      "v6_prefixes": 0,
      "policy": "off",
      "policy_source": "config"
    },
    {
      "id": 4,
      "name": "signal",
      "v4_prefixes": 0,
      "v6_prefixes": 0,
      "policy": "drop",
      "policy_source": "default"
    }
  ],
  "allow": [
    7,
    2
  ],
  "generation": 1,
  "interfaces": [
    {
      "name": "eth0",
      "mode": "driver",
      "netns": null,
      "ifindex": 2,
      "slot": 1
    },
    {
      "name": "eth1",
      "mode": "skb",
      "netns": "gw",
      "ifindex": 3,
      "slot": null
    },
    {
      "name": "eth2",
      "mode": "unknown",
      "netns": null,
      "ifindex": null,
      "slot": null
    },
    {
      "name": "eth3",
      "mode": "none",
      "netns": null,
      "ifindex": 5,
      "slot": 2
    }
  ],
  "last_reload": {
    "time": 1700000100,
    "ok": false,
    "error": "lists/zoom.txt:3: bad prefix",
    "input_error": true,
    "by": "list load zoom (undone)",
    "generation": 1
  },
  "reload_serial": 9,
  "reloads_ok": 7,
  "reloads_failed": 2
}
"#;

#[test]
fn a_written_file_loads_and_round_trips_unchanged() {
    let d = TempDir::new("written");
    let pins = Path::new("/sys/fs/bpf/flowfilter");
    std::fs::write(d.path("flowfilter.json"), WRITTEN).unwrap();
    let s = StateFile::read_in(d.dir(), pins).unwrap().unwrap();
    assert_eq!(s.categories.len(), 4);
    assert_eq!(s.interfaces.len(), 4);
    let lock = WriterLock::acquire_in(d.dir(), pins).unwrap();
    s.write_in(d.dir(), &lock).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path("flowfilter.json")).unwrap(),
        WRITTEN
    );
    // Every `by` a writer records reads back as written.
    for by in [
        "start",
        "sighup",
        "reload",
        "list add whatsapp",
        "list del zoom",
        "list load meet",
        "policy set telegram",
        "policy reset signal",
        "list add whatsapp (undone)",
    ] {
        let text = WRITTEN.replace("list load zoom (undone)", by);
        let s: StateFile = serde_json::from_str(&text).unwrap();
        let mut back = serde_json::to_string_pretty(&s).unwrap();
        back.push('\n');
        assert_eq!(back, text, "{by}");
    }
}

#[test]
fn a_version_1_file_loads() {
    // Version 1: no liveness lock, interfaces without index or slot, no
    // reload counters.
    let text = r#"{"version":1,"pin_dir":"/sys/fs/bpf/flowfilter",
        "daemon":{"pid":1,"started":2,"metrics":null,"detach_on_exit":true},
        "config":null,"flags":{"lists":null,"normalize":false,"policies":{}},
        "overrides":{"zoom":"off"},"lists_dir":"/etc/flowfilter/lists","normalize":false,
        "categories":[{"id":1,"name":"zoom","v4_prefixes":1,"v6_prefixes":0,
                       "policy":"off","policy_source":"cli"}],
        "allow":[0,0],"generation":0,
        "interfaces":[{"name":"eth0","mode":"skb","netns":null}],
        "last_reload":{"time":3,"ok":true,"error":null,"input_error":false,
                       "by":"policy set zoom","generation":0}}"#;
    let s: StateFile = serde_json::from_str(text).unwrap();
    assert_eq!(s.version, 1);
    assert_eq!(s.reload_serial, 0);
    assert_eq!(s.interfaces[0].ifindex, None);
    assert_eq!(s.interfaces[0].mode, AttachedMode::Skb);
    let zoom = s.category("zoom").unwrap();
    assert_eq!(
        (zoom.policy, zoom.policy_source),
        (spec("off"), Source::Cli)
    );
    assert_eq!(s.overrides["zoom"], spec("off"));
    assert_eq!(
        s.last_reload.unwrap().by,
        ReloadBy::Change(ChangeVerb::PolicySet, "zoom".into())
    );
}

fn spec(s: &str) -> PolicySpec {
    s.parse().unwrap()
}

#[test]
fn values_are_typed_when_read() {
    let s: StateFile = serde_json::from_str(WRITTEN).unwrap();
    assert_eq!(
        s.daemon.unwrap().metrics,
        Some("127.0.0.1:9477".parse().unwrap())
    );
    assert_eq!(s.flags.policies["telegram"], spec("flows=30%,scope=udp"));
    assert_eq!(s.overrides["meet"], spec("drop,scope=udp"));
    let cats: Vec<(PolicySpec, Source)> = s
        .categories
        .iter()
        .map(|c| (c.policy, c.policy_source))
        .collect();
    assert_eq!(
        cats,
        [
            (spec("monitor"), Source::Cli),
            (spec("flows=30%,scope=udp"), Source::Flag),
            (spec("off"), Source::Config),
            (spec("drop"), Source::Default),
        ]
    );
    let modes: Vec<AttachedMode> = s.interfaces.iter().map(|i| i.mode).collect();
    assert_eq!(
        modes,
        [
            AttachedMode::Driver,
            AttachedMode::Skb,
            AttachedMode::Unknown,
            AttachedMode::NotAttached
        ]
    );
    assert_eq!(
        s.last_reload.unwrap().by,
        ReloadBy::Undone(Box::new(ReloadBy::Change(
            ChangeVerb::ListLoad,
            "zoom".into()
        )))
    );
    // A value that does not parse makes the file unreadable, saying which.
    for (from, to, what) in [
        (
            "\"policy\": \"off\"",
            "\"policy\": \"block\"",
            "bad policy `block`",
        ),
        (
            "\"policy_source\": \"cli\"",
            "\"policy_source\": \"x\"",
            "not a policy source",
        ),
        (
            "\"mode\": \"skb\"",
            "\"mode\": \"fast\"",
            "not an attach mode",
        ),
        ("list load zoom (undone)", "someone", "not who reloads"),
        ("list load zoom (undone)", "list add ", "not who reloads"),
    ] {
        let text = WRITTEN.replacen(from, to, 1);
        let e = serde_json::from_str::<StateFile>(&text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{to}: {e}");
    }
}
