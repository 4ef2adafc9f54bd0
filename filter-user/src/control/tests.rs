use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str, files: &[(&str, &str)]) -> Dir {
        let d =
            std::env::temp_dir().join(format!("flowfilter-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (n, t) in files {
            std::fs::write(d.join(n), t).unwrap();
        }
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(dir: &Dir, cfg: &str, flags: &[(&str, &str)], cli: &[(&str, &str)]) -> Settings {
    let cfg = Config::parse("c.toml", cfg).unwrap();
    let mut st = StateFile::new(std::path::Path::new("/sys/fs/bpf/t"));
    st.flags.lists = Some(dir.0.clone());
    for (k, v) in flags {
        st.flags.policies.insert((*k).into(), v.parse().unwrap());
    }
    for (k, v) in cli {
        st.overrides.insert((*k).into(), v.parse().unwrap());
    }
    Settings::new(&cfg, &st)
}

#[test]
fn precedence_default_config_flag_cli() {
    let d = Dir::new(
        "prec",
        &[
            ("whatsapp.txt", "198.51.100.0/24\n"),
            ("zoom.txt", "203.0.113.0/24\n2001:db8::/48\n"),
            ("meet.txt", ""),
        ],
    );
    let s = settings(
        &d,
        "[policy]\nwhatsapp = \"monitor\"\nzoom = \"off\"\nmeet = \"loss=5%\"\n",
        &[("zoom", "flows=30%")],
        &[("meet", "drop,scope=udp"), ("gone", "off")],
    );
    let p = prepare(&s).unwrap();
    let show: Vec<(String, String, String, usize, usize)> = p
        .categories
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.policy.to_string(),
                c.policy_source.to_string(),
                c.v4_prefixes,
                c.v6_prefixes,
            )
        })
        .collect();
    let row = |n: &str, pol: &str, src: &str, v4, v6| {
        (n.to_owned(), pol.to_owned(), src.to_owned(), v4, v6)
    };
    assert_eq!(
        show,
        [
            row("whatsapp", "monitor", "config", 1, 0),
            row("telegram", "drop", "default", 0, 0),
            row("meet", "drop,scope=udp", "cli", 0, 0),
            row("zoom", "flows=30%", "flag", 1, 1),
        ]
    );
    assert_eq!(p.by_id.len(), 4);
}

#[test]
fn unknown_categories_and_bad_lists_are_input_errors() {
    let d = Dir::new("bad", &[("whatsapp.txt", "198.51.100.0/24\n")]);
    let e = prepare(&settings(&d, "[policy]\nzoom = \"drop\"\n", &[], &[])).unwrap_err();
    assert!(e.is_input());
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        format!(
            "policy for `zoom`: no category `zoom` in {} (known: whatsapp, telegram)",
            d.0.display()
        )
    );
    std::fs::write(d.0.join("telegram.txt"), "# t\n10.0.0.1/8\n").unwrap();
    let e = prepare(&settings(&d, "", &[], &[])).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: `10.0.0.1/8` has bits set beyond /8 (use 10.0.0.0/8, or --normalize)",
            d.0.join("telegram.txt").display()
        )
    );
    assert_eq!(Error::Other("x".into()).exit_code(), 1);
}

#[test]
fn a_replacement_is_read_in_place_of_its_file() {
    let d = Dir::new(
        "repl",
        &[("whatsapp.txt", "198.51.100.0/24\n"), ("zoom.txt", "")],
    );
    let set = settings(&d, "", &[], &[]);
    let file = d.0.join("whatsapp.txt");
    let repl = |name, file, text| ListReplacement { name, file, text };
    let p = prepare_with(&set, Some(repl("whatsapp", &file, "203.0.113.0/24\n"))).unwrap();
    let wa = p.lists.by_name("whatsapp").unwrap();
    assert_eq!(
        wa.list.cidrs().next().unwrap().to_string(),
        "203.0.113.0/24"
    );
    assert_eq!(p.lists.by_name("zoom").unwrap().id, 3);
    // The file is untouched.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "198.51.100.0/24\n");
    // A new category is numbered as a new file would be.
    let meet = d.0.join("meet.txt");
    let p = prepare_with(&set, Some(repl("meet", &meet, "192.0.2.0/24\n"))).unwrap();
    assert_eq!(p.lists.by_name("meet").unwrap().id, 3);
    assert_eq!(p.lists.by_name("zoom").unwrap().id, 4);
    let allow = d.0.join("allow.txt");
    let p = prepare_with(&set, Some(repl("allow", &allow, "192.0.2.1\n"))).unwrap();
    assert_eq!(p.lists.allow.len(), 1);
    // Errors name the list file, with the directory's normalisation.
    let e = prepare_with(&set, Some(repl("whatsapp", &file, "192.0.2.1/24\n"))).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string().starts_with(&format!(
            "{}:1: `192.0.2.1/24` has bits set",
            file.display()
        )),
        "{e}"
    );
    // A broken file is fixed by replacing it (it is not read) ...
    std::fs::write(&file, "bad\n").unwrap();
    let p = prepare_with(&set, Some(repl("whatsapp", &file, "192.0.2.0/24\n"))).unwrap();
    assert_eq!(p.lists.by_name("whatsapp").unwrap().list.len(), 1);
    // ... but blocks the replacement of another one, naming itself.
    let e = prepare_with(&set, Some(repl("zoom", &d.0.join("zoom.txt"), ""))).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string()
            .starts_with(&format!("{}:1: ", file.display())),
        "{e}"
    );
}

#[test]
fn record_counts_attempts() {
    let mut st = StateFile::default();
    record(
        &mut st,
        Some(&Error::Input("bad".into())),
        &ReloadBy::Sighup,
    );
    let r = st.last_reload.clone().unwrap();
    assert!(!r.ok && r.input_error);
    assert_eq!(r.error.as_deref(), Some("bad"));
    record(&mut st, None, &ReloadBy::Reload);
    assert_eq!(
        (st.reload_serial, st.reloads_ok, st.reloads_failed),
        (2, 1, 1)
    );
    assert!(st.last_reload.unwrap().ok);
}
