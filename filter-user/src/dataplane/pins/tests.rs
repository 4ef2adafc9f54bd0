use super::*;

fn def(name: &str, map_type: u32, key: u32, value: u32, max: u32, flags: u32) -> MapDef {
    MapDef {
        name: name.into(),
        map_type,
        key_size: key,
        value_size: value,
        max_entries: max,
        flags,
    }
}

#[test]
fn compare_names_each_field() {
    let a = def("X", 2, 4, 16, 1, 0);
    assert!(compare(&a, &a).is_empty());
    let b = def("X", 1, 8, 24, 2, 1);
    assert_eq!(
        compare(&a, &b),
        [
            "type: pinned 2, this build 1",
            "key size: pinned 4, this build 8",
            "value size: pinned 16, this build 24",
            "capacity: pinned 1, this build 2",
            "flags: pinned 0, this build 1"
        ]
    );
    // Ring buffers are sized by the loader: only type, key and flags count.
    let rb = aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32;
    assert!(compare(&def("R", rb, 0, 0, 4096, 0), &def("R", rb, 0, 0, 0, 0)).is_empty());
}

#[test]
fn problems_display() {
    assert_eq!(
        MapProblem::Differs {
            name: "STATE".into(),
            fields: vec!["value size: pinned 16, this build 24".into()]
        }
        .to_string(),
        "map STATE: value size: pinned 16, this build 24"
    );
    assert_eq!(
        MapProblem::Missing { name: "NEW".into() }.to_string(),
        "map NEW: this build has it, the pins do not"
    );
    assert_eq!(MapProblem::Extra { name: "OLD".into() }.name(), "OLD");
}

#[test]
fn layout_paths() {
    let l = PinLayout::new("/sys/fs/bpf/ff");
    assert_eq!(l.map("STATE"), Path::new("/sys/fs/bpf/ff/maps/STATE"));
    assert_eq!(l.prog(), Path::new("/sys/fs/bpf/ff/prog"));
    assert_eq!(l.link("eth0"), Path::new("/sys/fs/bpf/ff/links/eth0"));
    // A directory that does not exist has no pins.
    let none = PinLayout::new("/nonexistent/flowfilter-pins");
    assert!(none.is_empty().unwrap());
    assert!(matches!(none.require(), Err(PinError::NoState { .. })));
}

#[test]
fn restrict_makes_the_layout_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = std::env::temp_dir().join(format!("flowfilter-pins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let l = PinLayout::new(base.join("a/pins"));
    l.create().unwrap();
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    for d in [base.join("a"), l.dir.clone(), l.maps_dir(), l.links_dir()] {
        assert_eq!(mode(&d), DIR_MODE, "{}", d.display());
    }
    // Pins (regular files here) and directories with looser modes.
    let set = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    for (p, m) in [
        (l.map("STATE"), 0o644),
        (l.prog(), 0o600),
        (l.link("eth0"), 0o660),
    ] {
        std::fs::write(&p, "").unwrap();
        set(&p, m);
    }
    set(&l.maps_dir(), 0o755);
    let outside = base.join("a/other");
    std::fs::write(&outside, "").unwrap();
    set(&outside, 0o644);
    std::os::unix::fs::symlink(&outside, l.map("LINK")).unwrap();
    let mut changed = l.restrict().unwrap();
    changed.sort();
    assert_eq!(changed, [l.link("eth0"), l.maps_dir(), l.map("STATE")]);
    for p in [l.map("STATE"), l.prog(), l.link("eth0")] {
        assert_eq!(mode(&p), PIN_MODE, "{}", p.display());
    }
    assert_eq!(mode(&l.maps_dir()), DIR_MODE);
    // Not followed through a symbolic link, nothing outside touched.
    assert_eq!(mode(&outside), 0o644);
    assert!(l.restrict().unwrap().is_empty());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn shipped_object_defines_the_tables() {
    if crate::dataplane::loader::OBJECT.is_empty() {
        println!("skipped: built without the XDP object");
        return;
    }
    let defs = object_map_defs(crate::dataplane::loader::OBJECT, &[("FLOW_KEYS", 6)]).unwrap();
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    for n in [
        "STATE",
        "POLICY",
        "ROOT",
        "TRIE",
        "FLOWS",
        "FLOW_KEYS",
        "COUNTERS",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let keys = defs.iter().find(|d| d.name == "FLOW_KEYS").unwrap();
    assert_eq!(
        (keys.max_entries, keys.value_size),
        (6, 40),
        "overridden size"
    );
    let trie = defs.iter().find(|d| d.name == "TRIE").unwrap();
    assert_eq!(
        (trie.map_type, trie.max_entries),
        (
            aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_ARRAY_OF_MAPS as u32,
            2
        )
    );
}
