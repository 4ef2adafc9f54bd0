//! Tests of the pieces: list headers, broad prefixes, times, RIPEstat and CIDR text, rendering, atomic writes, the report.

use super::*;

// ----- pieces ---------------------------------------------------------

#[test]
fn list_header_times() {
    // Every second of a few days around leap days and year ends reads
    // back as written.
    for base in [
        0u64,
        951_696_000,
        1_709_164_800,
        1_798_675_200,
        4_102_358_400,
    ] {
        for s in (0..3 * 86_400).step_by(3607) {
            let t = UNIX_EPOCH + Duration::from_secs(base + s);
            assert_eq!(parse_utc(&utc(t)), Some(t), "{}", utc(t));
        }
    }
    for bad in [
        "",
        "2026-02-29T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:60Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
        "1969-12-31T23:59:59Z",
        "2026-01-01T00:00:0xZ",
        "+026-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z ",
    ] {
        assert_eq!(parse_utc(bad), None, "{bad:?}");
    }
    assert_eq!(
        parse_utc("2024-02-29T12:34:56Z"),
        Some(UNIX_EPOCH + Duration::from_secs(1_709_210_096))
    );
    // The header `render` writes gives its time back.
    let cat = CategorySources {
        name: "t".into(),
        note: None,
        sources: vec![Source {
            name: "s".into(),
            kind: SourceKind::Url("https://h/x".into()),
            normalize: false,
        }],
    };
    let f = fetched(&["192.0.2.0/24"], 5);
    let entries = f.cidrs.clone();
    let at = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
    let text = render(
        &cat,
        Path::new("/s.toml"),
        &[("https://h/x".into(), &f)],
        &entries,
        at,
    );
    assert_eq!(written_at(&text), Some(at));
    // Lists without that header have no such time.
    assert_eq!(
        written_at(
            "# at 2026-01-01T00:00:00Z: mine
10.0.0.0/8
"
        ),
        None
    );
    assert_eq!(
        written_at(
            "10.0.0.0/8
"
        ),
        None
    );
    assert_eq!(written_at(""), None);
    assert_eq!(
        written_at(
            "# t: written by `flowfilter list update` from x
# at yesterday
"
        ),
        None
    );
}

#[test]
fn broad_prefix_policy() {
    for (width, len, broad) in [
        (32, 0, true),
        (32, 7, true),
        (32, 8, false),
        (32, 32, false),
        (128, 0, true),
        (128, 15, true),
        (128, 16, false),
        (128, 128, false),
    ] {
        assert_eq!(is_broad(width, len), broad, "/{len} of {width} bits");
    }
    let refused = |entry: &str, min: u8, family: &str, line: usize| {
        format!(
            "u:{line}: `{entry}` is broader than /{min}, the shortest {family} prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
        )
    };
    let text = |entry: &str| format!("# list\n10.0.0.0/8\n2001::/16\n{entry}  # the bad one\n");
    for (entry, min, family) in [
        ("0.0.0.0/0", 8, "IPv4"),
        ("2.0.0.0/7", 8, "IPv4"),
        ("128.0.0.0/1", 8, "IPv4"),
        ("::/0", 16, "IPv6"),
        ("2000::/15", 16, "IPv6"),
        ("2000::/3", 16, "IPv6"),
    ] {
        assert_eq!(
            parse_cidr_text("u", &text(entry), false, false).unwrap_err(),
            refused(entry, min, family, 4),
            "{entry}"
        );
        let allowed = parse_cidr_text("u", &text(entry), false, true).unwrap();
        assert!(allowed.contains(&cidr(entry)), "{entry}: {allowed:?}");
    }
    // Host bits cleared by normalize do not hide a broad prefix.
    assert_eq!(
        parse_cidr_text("u", "1.2.3.4/7\n", true, false).unwrap_err(),
        refused("1.2.3.4/7", 8, "IPv4", 1)
    );
    // The boundaries and plain addresses pass.
    assert_eq!(
        parse_cidr_text("u", &text("192.0.2.1"), false, false)
            .unwrap()
            .len(),
        3
    );
    // RIPEstat answers name the element.
    let body = ripestat_json(64500, &["192.0.2.0/24", "0.0.0.0/0"]);
    assert_eq!(
        parse_ripestat("u", 64500, body.as_bytes(), false).unwrap_err(),
        "u: `data.prefixes[1].prefix`: `0.0.0.0/0` is broader than /8, the shortest IPv4 prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
    );
    assert_eq!(
        parse_ripestat("u", 64500, body.as_bytes(), true)
            .unwrap()
            .len(),
        2
    );
    let body = ripestat_json(64500, &["2001:db8::/32", "::/0"]);
    assert!(
        parse_ripestat("u", 64500, body.as_bytes(), false)
            .unwrap_err()
            .contains("`::/0` is broader than /16, the shortest IPv6 prefix")
    );
}

#[test]
fn utc_times() {
    let at = |s: u64| utc(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
    assert_eq!(at(951_868_800), "2000-03-01T00:00:00Z");
    assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
    assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    assert_eq!(
        utc(UNIX_EPOCH - Duration::from_secs(5)),
        "1970-01-01T00:00:00Z"
    );
}

#[test]
fn ripestat_responses() {
    let ok = ripestat_json(64500, &["192.0.2.0/24", "2001:db8::/32", "192.0.2.0/24"]);
    let set = parse_ripestat("u", 64500, ok.as_bytes(), false).unwrap();
    assert_eq!(
        set.into_iter().collect::<Vec<_>>(),
        [cidr("192.0.2.0/24"), cidr("2001:db8::/32")]
    );
    let empty = ripestat_json(64500, &[]);
    assert!(
        parse_ripestat("u", 64500, empty.as_bytes(), false)
            .unwrap()
            .is_empty()
    );
    // "AS" in the resource is accepted.
    let as_prefixed = ok.replace("\"resource\":\"64500\"", "\"resource\":\"AS64500\"");
    assert_ne!(as_prefixed, ok);
    assert!(parse_ripestat("u", 64500, as_prefixed.as_bytes(), false).is_ok());
    let e = |body: &str| parse_ripestat("u", 64500, body.as_bytes(), false).unwrap_err();
    assert_eq!(
        e(&ripestat_json(64501, &[])),
        "u: `data.resource` is `64501`, expected AS64500"
    );
    assert_eq!(
        e(&ripestat_json(64500, &["192.0.2.1/24"])),
        "u: `data.prefixes[0].prefix`: `192.0.2.1/24` has bits set beyond /24 (use 192.0.2.0/24)"
    );
    assert_eq!(
        e(&ripestat_json(64500, &["192.0.2.0/24", "banana"])),
        "u: `data.prefixes[1].prefix`: `banana` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        e(r#"{"status":"ok","data":{"prefixes":[{"pfx":"192.0.2.0/24"}]}}"#),
        "u: `data.prefixes[0]` has no `prefix` string"
    );
    assert_eq!(
        e(r#"{"status":"ok","data":{}}"#),
        "u: no `data.prefixes` array in the response"
    );
    assert_eq!(
        e(r#"{"status":"ok"}"#),
        "u: no `data` object in the response"
    );
    assert_eq!(
        e(r#"{"status":"error","messages":[["error","bad resource"]],"data":{}}"#),
        "u: RIPEstat status \"error\" [[\"error\",\"bad resource\"]]"
    );
    assert_eq!(
        e("<html>busy</html>"),
        "u: not a RIPEstat JSON response: expected value at line 1 column 1"
    );
    assert_eq!(
        e("{\"data\":\n{\"prefixes\": [}"),
        "u: not a RIPEstat JSON response: expected value at line 2 column 15"
    );
}

#[test]
fn cidr_text_sources() {
    let set = parse_cidr_text(
        "u",
        "# c\n192.0.2.0/24\n192.0.2.0/24\n2001:db8::1\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(
        set.into_iter().collect::<Vec<_>>(),
        [cidr("192.0.2.0/24"), cidr("2001:db8::1/128")]
    );
    assert_eq!(
        parse_cidr_text("u", "192.0.2.0/24\n<html>\n", false, false).unwrap_err(),
        "u:2: `<html>` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        parse_cidr_text("u", "192.0.2.9/24\n", false, false).unwrap_err(),
        "u:1: `192.0.2.9/24` has bits set beyond /24 (use 192.0.2.0/24, or --normalize)"
    );
    assert_eq!(
        parse_cidr_text("u", "192.0.2.9/24\n", true, false)
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [cidr("192.0.2.0/24")]
    );
    assert_eq!(
        parse_cidr_text("u", "# nothing\n\n", false, false).unwrap_err(),
        "u: no entries (an empty list is taken as a broken source)"
    );
    assert_eq!(
        utf8("u", b"192.0.2.0/24\n\xff\n".to_vec()).unwrap_err(),
        "u:2: not valid UTF-8"
    );
}

fn fetched(cidrs: &[&str], secs: u64) -> Fetched {
    Fetched {
        cidrs: cidrs.iter().map(|c| cidr(c)).collect(),
        fetched: UNIX_EPOCH + Duration::from_secs(secs),
    }
}

#[test]
fn render_reads_back() {
    let cat = CategorySources {
        name: "t".into(),
        note: Some("first line\n\nthird\rline with\u{7}bell\n".into()),
        sources: vec![
            Source {
                name: "list\u{1b}[31m".into(),
                kind: SourceKind::Url("https://h/x".into()),
                normalize: true,
            },
            Source {
                name: "as".into(),
                kind: SourceKind::Ripestat { asn: 64500 },
                normalize: false,
            },
        ],
    };
    let a = fetched(&["192.0.2.0/24", "2001:db8::/32"], 86_400);
    let b = fetched(&["192.0.2.0/24", "192.0.2.128/25", "10.0.0.0/8"], 86_401);
    let entries: BTreeSet<Cidr> = a.cidrs.union(&b.cidrs).copied().collect();
    let text = render(
        &cat,
        Path::new("/s.toml"),
        &[
            ("https://h/x".into(), &a),
            ("https://r?resource=AS64500".into(), &b),
        ],
        &entries,
        UNIX_EPOCH + Duration::from_hours(25),
    );
    assert_eq!(
        text,
        "\
# t: written by `flowfilter list update` from /s.toml
# at 1970-01-02T01:00:00Z: 4 entries (3 IPv4, 1 IPv6) from 2 sources.
# Do not edit: the next update replaces this file (add ranges as a source).
#
# first line
#
# third line with bell
#
# source 1: list [31m
#   where:   https://h/x
#   fetched: 1970-01-02T00:00:00Z
#   entries: 2
#   host bits beyond the prefix length cleared (normalize)
#
# source 2: as
#   where:   https://r?resource=AS64500
#   fetched: 1970-01-02T00:00:01Z
#   entries: 3
#
10.0.0.0/8
192.0.2.0/24
192.0.2.128/25
2001:db8::/32
"
    );
    let list = lists::parse_list("t", &text, false).unwrap();
    assert!(list.cidrs().eq(entries.iter().copied()));
}

#[test]
fn atomic_write() {
    let d = TempDir::new("atomic");
    let p = d.write("t.txt", "old\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    let old = fs::File::open(&p).unwrap();
    let old_ino = old.metadata().unwrap().ino();
    write_atomic(&p, "new\n").unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
    let meta = fs::metadata(&p).unwrap();
    assert_ne!(meta.ino(), old_ino, "replaced by rename, not rewritten");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut s = String::new();
    (&old).read_to_string(&mut s).unwrap();
    assert_eq!(s, "old\n", "a reader of the old file sees it whole");
    assert_eq!(d.names("."), ["t.txt"]);
    // A new file gets 0644 (less the umask).
    let n = d.path("n.txt");
    write_atomic(&n, "x\n").unwrap();
    assert_eq!(fs::metadata(&n).unwrap().permissions().mode() & 0o022, 0);
    // A failing rename (onto a non-empty directory) leaves no temporary file.
    fs::create_dir(d.path("dir.txt")).unwrap();
    d.write("dir.txt/keep", "k");
    assert!(write_atomic(&d.path("dir.txt"), "x\n").is_err());
    assert_eq!(d.names("."), ["dir.txt", "n.txt", "t.txt"]);
    assert_eq!(d.names("dir.txt"), ["keep"]);
    // A missing directory is an error, not a panic.
    assert!(write_atomic(&d.path("missing/t.txt"), "x\n").is_err());
}

#[test]
fn report_text() {
    let src = |result: Result<usize, String>| SourceReport {
        name: "S".into(),
        location: "http://h/s".into(),
        fetched: None,
        result,
    };
    let cat = |name: &str, skipped: Option<SkipReason>| CategoryReport {
        name: name.into(),
        path: PathBuf::from(format!("/o/{name}.txt")),
        entries: 3,
        previous: Some(10),
        sources: vec![src(Ok(3))],
        skipped,
        notes: Vec::new(),
    };
    let mut r = UpdateReport {
        sources_file: "/s.toml".into(),
        out: "/o".into(),
        categories: vec![cat("a", None)],
    };
    r.categories[0].previous = None;
    assert!(r.all_written());
    assert_eq!(
        r.to_string(),
        "a: wrote 3 entries to /o/a.txt (new file)\n  ok      S: 3 entries from http://h/s\nall 1 categories written to /o"
    );
    r.categories.push(cat(
        "b",
        Some(SkipReason::Shrunk {
            entries: 3,
            previous: 10,
        }),
    ));
    let mut c = cat("c", Some(SkipReason::SourcesFailed { failed: 1 }));
    c.sources
        .push(src(Err("http://h/t: HTTP status 500".into())));
    c.notes.push("n".into());
    r.categories.push(c);
    assert!(!r.all_written());
    assert_eq!(r.category("c").unwrap().sources.len(), 2);
    assert_eq!(
        r.to_string(),
        "\
a: wrote 3 entries to /o/a.txt (new file)
  ok      S: 3 entries from http://h/s
b: NOT written, /o/b.txt left as it was: the new list has 3 entries, less than half of the current 10 (use --force to write it)
  ok      S: 3 entries from http://h/s
c: NOT written, /o/c.txt left as it was: a source failed
  ok      S: 3 entries from http://h/s
  FAILED  S: http://h/t: HTTP status 500
  note: n
1 of 3 categories written to /o; 2 left as they were (check the sources, then use --force to accept the new size)"
    );
    assert_eq!(
        SkipReason::Empty.to_string(),
        "the new list is empty (use --force to write it)"
    );
    assert_eq!(
        SkipReason::SourcesFailed { failed: 2 }.to_string(),
        "2 sources failed"
    );
    assert!(SkipReason::Empty.forceable());
    assert!(!SkipReason::SourcesFailed { failed: 1 }.forceable());
    let grown = SkipReason::Grown {
        entries: 1001,
        previous: 100,
    };
    assert_eq!(
        grown.to_string(),
        "the new list has 1001 entries, more than 10 times the current 100 (use --force to write it)"
    );
    assert!(grown.forceable());
}
