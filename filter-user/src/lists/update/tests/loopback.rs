//! End-to-end updates against a loopback HTTPS server.

use super::*;

// ----- end to end, against a loopback server --------------------------

/// Telegram from the shared lists plus a canned RIPEstat answer; whatsapp
/// from the shared lists, a canned RIPEstat answer and a local file.
#[test]
fn update_from_loopback() {
    let Some(ranges) = ranges_dir() else { return };
    let server = Server::start();
    serve_ranges(&server, &ranges);
    let tg_canned = ["91.108.4.0/22", "203.0.113.0/24", "2001:db8:1::/48"];
    server.set(
        "/ripestat?resource=AS62041",
        200,
        ripestat_json(62041, &tg_canned),
    );
    let wa_canned = ["157.240.0.0/16", "198.51.100.0/24"];
    server.set(
        "/ripestat?resource=AS32934",
        200,
        ripestat_json(32934, &wa_canned),
    );
    let d = TempDir::new("loopback");
    d.write("local.txt", "# ours\n192.0.2.77/24\n192.0.2.128/25\n");
    let sources = d.write(
        "sources.toml",
        &format!(
            r#"
timeout_secs = 10
[category.telegram]
note = "Telegram, for the test."
[[category.telegram.source]]
name = "itdoginfo IPv4"
url = "{tg4}"
[[category.telegram.source]]
url = "{tg6}"
[[category.telegram.source]]
name = "AS62041"
asn = 62041

[category.whatsapp]
note = "Meta's ranges also carry Messenger, Instagram and Facebook."
[[category.whatsapp.source]]
url = "{hn}"
[[category.whatsapp.source]]
asn = "AS32934"
[[category.whatsapp.source]]
path = "local.txt"
normalize = true
"#,
            tg4 = server.url("/ranges/itdoginfo-ipv4-telegram.lst"),
            tg6 = server.url("/ranges/itdoginfo-ipv6-telegram.lst"),
            hn = server.url("/ranges/hybridnetworks-whatsapp-ipv4.txt"),
        ),
    );
    let report = update(&d, &sources, &server, false);
    assert!(report.all_written(), "{report}");
    assert_eq!(d.names("out"), ["telegram.txt", "whatsapp.txt"]);

    let from = |name: &str| read_set(&ranges.join(name));
    let canned = |c: &[&str]| c.iter().map(|s| cidr(s)).collect::<BTreeSet<_>>();
    let mut tg: BTreeSet<Cidr> = from("itdoginfo-ipv4-telegram.lst");
    tg.extend(from("itdoginfo-ipv6-telegram.lst"));
    tg.extend(canned(&tg_canned));
    let mut wa = from("hybridnetworks-whatsapp-ipv4.txt");
    wa.extend(canned(&wa_canned));
    wa.insert(cidr("192.0.2.0/24"));
    wa.insert(cidr("192.0.2.128/25"));
    let tg_file = d.path("out/telegram.txt");
    let wa_file = d.path("out/whatsapp.txt");
    assert_eq!(read_set(&tg_file), tg);
    assert_eq!(read_set(&wa_file), wa);
    // 91.108.4.0/22 comes from two sources: merged, not written twice.
    let given: usize = report
        .category("telegram")
        .unwrap()
        .sources
        .iter()
        .map(|s| s.result.clone().unwrap())
        .sum();
    assert_eq!(given, tg.len() + 1);

    let r = report.category("telegram").unwrap();
    assert_eq!((r.entries, r.previous, &r.skipped), (tg.len(), None, &None));
    assert_eq!(r.path, tg_file);
    let counts: Vec<Result<usize, String>> = r.sources.iter().map(|s| s.result.clone()).collect();
    assert_eq!(
        counts,
        [
            Ok(from("itdoginfo-ipv4-telegram.lst").len()),
            Ok(from("itdoginfo-ipv6-telegram.lst").len()),
            Ok(3)
        ]
    );
    assert_eq!(
        r.sources[2].location,
        server.url("/ripestat?resource=AS62041")
    );
    assert!(r.sources.iter().all(|s| s.fetched.is_some()));
    let w = report.category("whatsapp").unwrap();
    assert_eq!(w.entries, wa.len());
    let covered = lists::parse_list("w", &fs::read_to_string(&wa_file).unwrap(), false)
        .unwrap()
        .notes
        .len();
    assert!(covered >= 1, "192.0.2.128/25 lies in 192.0.2.0/24");
    assert_eq!(
        w.notes,
        [format!(
            "{covered} prefixes lie inside another prefix of the list (kept, as list files keep them)"
        )]
    );
    assert_eq!(
        w.sources[2].location,
        d.path("local.txt").display().to_string()
    );

    // Header: one block per source (what, where, when, how many), then entries.
    let text = fs::read_to_string(&tg_file).unwrap();
    let (header, body) = text.split_at(text.rfind("#\n").unwrap() + 2);
    assert!(header.lines().all(|l| l.starts_with('#')), "{header}");
    assert!(body.lines().all(|l| !l.starts_with('#')), "{body}");
    assert_eq!(body.lines().count(), tg.len());
    assert!(header.starts_with(&format!(
        "# telegram: written by `flowfilter list update` from {}\n# at ",
        sources.display()
    )));
    assert!(header.contains("# Telegram, for the test.\n"));
    let blocks: Vec<&str> = header.split("#\n# source ").skip(1).collect();
    assert_eq!(blocks.len(), 3, "{header}");
    for (i, (block, src)) in blocks.iter().zip(&r.sources).enumerate() {
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], format!("{}: {}", i + 1, src.name));
        assert_eq!(lines[1], format!("#   where:   {}", src.location));
        assert_eq!(
            lines[2],
            format!("#   fetched: {}", utc(src.fetched.unwrap()))
        );
        let stamp = lines[2].trim_start_matches("#   fetched: ");
        assert_eq!(stamp.len(), 20, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
        assert_eq!(
            lines[3],
            format!("#   entries: {}", src.result.clone().unwrap())
        );
    }
    assert_eq!(blocks[0].lines().next().unwrap(), "1: itdoginfo IPv4");
    assert!(
        fs::read_to_string(&wa_file)
            .unwrap()
            .contains("# Meta's ranges also carry Messenger, Instagram and Facebook.\n")
    );
    let hits = server.hits();
    assert!(
        hits.contains(&"/ripestat?resource=AS62041".to_owned()),
        "{hits:?}"
    );
    assert!(
        hits.contains(&"/ripestat?resource=AS32934".to_owned()),
        "{hits:?}"
    );

    // The written directory loads as the daemon would load it.
    let loaded = lists::load_dir(&d.path("out"), false).unwrap();
    assert_eq!(loaded.by_name("telegram").unwrap().list.len(), tg.len());
    assert_eq!(loaded.by_name("whatsapp").unwrap().list.len(), wa.len());

    // Second run: atomic replace. A reader holding the old file keeps
    // reading it whole; the path now names a new inode with the new list.
    let old = fs::File::open(&tg_file).unwrap();
    let old_ino = old.metadata().unwrap().ino();
    let tg_canned2 = [
        "91.108.4.0/22",
        "203.0.113.0/24",
        "2001:db8:1::/48",
        "198.18.0.0/15",
    ];
    server.set(
        "/ripestat?resource=AS62041",
        200,
        ripestat_json(62041, &tg_canned2),
    );
    let report = update(&d, &sources, &server, false);
    assert!(report.all_written(), "{report}");
    let r = report.category("telegram").unwrap();
    assert_eq!((r.entries, r.previous), (tg.len() + 1, Some(tg.len())));
    let mut s = String::new();
    (&old).read_to_string(&mut s).unwrap();
    assert_eq!(s, text);
    assert_ne!(fs::metadata(&tg_file).unwrap().ino(), old_ino);
    tg.insert(cidr("198.18.0.0/15"));
    assert_eq!(read_set(&tg_file), tg);
    assert_eq!(
        d.names("out"),
        ["telegram.txt", "whatsapp.txt"],
        "no temporary files left"
    );
}

/// A one-category sources file: `t` from `url`.
fn one_url(d: &TempDir, url: &str) -> PathBuf {
    d.write(
        "sources.toml",
        &format!("timeout_secs = 10\n[category.t]\nsource = [{{ url = \"{url}\" }}]\n"),
    )
}

/// `n` distinct /24s (up to 65,536).
fn list_of(n: usize) -> String {
    let mut t = String::new();
    for i in 0..n {
        let _ = writeln!(t, "10.{}.{}.0/24", i / 256, i % 256);
    }
    t
}

/// One category `t` served from `/t.txt`, its list already written once
/// with 10 entries.
struct OneList {
    server: Server,
    d: TempDir,
    sources: PathBuf,
    file: PathBuf,
}

impl OneList {
    fn new(name: &str) -> Self {
        let server = Server::start();
        let d = TempDir::new(name);
        let sources = one_url(&d, &server.url("/t.txt"));
        let file = d.path("out/t.txt");
        let t = Self {
            server,
            d,
            sources,
            file,
        };
        assert!(t.serve(10, false).all_written());
        t
    }

    /// Serves `n` entries and updates.
    fn serve(&self, n: usize, force: bool) -> UpdateReport {
        self.server.set("/t.txt", 200, list_of(n));
        update(&self.d, &self.sources, &self.server, force)
    }

    /// Serving `n` entries is refused: the file stays byte for byte.
    fn refused(&self, n: usize) -> UpdateReport {
        let before = fs::read(&self.file).unwrap();
        let r = self.serve(n, false);
        assert!(!r.all_written());
        assert_eq!(fs::read(&self.file).unwrap(), before);
        r
    }

    /// `--force` writes what was served, `n` entries.
    fn forced(&self, n: usize) {
        let r = update(&self.d, &self.sources, &self.server, true);
        assert!(r.all_written(), "{r}");
        assert_eq!(read_set(&self.file).len(), n);
    }
}

#[test]
fn shrink_refused_unless_forced() {
    let t = OneList::new("shrink");
    // Exactly half is accepted.
    let r = t.serve(5, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(r.categories[0].previous, Some(10));
    assert_eq!(read_set(&t.file).len(), 5);
    // Less than half is refused.
    let r = t.refused(2);
    let c = &r.categories[0];
    assert_eq!(
        c.skipped,
        Some(SkipReason::Shrunk {
            entries: 2,
            previous: 5
        })
    );
    assert_eq!((c.entries, c.previous), (2, Some(5)));
    assert!(r.to_string().contains("use --force"), "{r}");
    t.forced(2);
    assert_eq!(t.d.names("out"), ["t.txt"]);
}

#[test]
fn growth_refused_unless_forced() {
    let t = OneList::new("growth");
    // Exactly ten times is accepted.
    let r = t.serve(100, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(read_set(&t.file).len(), 100);
    // More is refused.
    let r = t.refused(1001);
    assert_eq!(
        r.categories[0].skipped,
        Some(SkipReason::Grown {
            entries: 1001,
            previous: 100
        })
    );
    assert!(
        r.to_string()
            .contains("more than 10 times the current 100 (use --force to write it)"),
        "{r}"
    );
    t.forced(1001);
    // An empty current file (forced) gives no size to grow from.
    fs::write(&t.file, "# emptied\n").unwrap();
    let r = update(&t.d, &t.sources, &t.server, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(t.d.names("out"), ["t.txt"]);
}

#[test]
fn plain_http_is_refused_even_by_redirect() {
    let server = Server::start();
    let plain = Server::start_plain();
    plain.set("/t.txt", 200, list_of(3));
    let dir = TempDir::new("http");

    // An http:// source: the sources file is refused, nothing created.
    let sources = one_url(&dir, &plain.url("/t.txt"));
    let e = run_update(&opts(&dir, &sources)).unwrap_err();
    assert!(
        matches!(e.downcast_ref::<SourcesError>(), Some(SourcesError::Invalid { field, .. }) if field == "category.t.source[0].url"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}: `category.t.source[0].url`: `{}` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
            sources.display(),
            plain.url("/t.txt")
        )
    );
    // An http:// RIPEstat endpoint, from the file or the override.
    let asn = dir.write(
        "asn.toml",
        &format!(
            "[ripestat]\nurl = \"{}\"\n[category.t]\nsource = [{{ asn = 64500 }}]\n",
            plain.url("/r")
        ),
    );
    let e = run_update(&opts(&dir, &asn)).unwrap_err().to_string();
    assert!(
        e.contains("`ripestat.url`: ") && e.contains("is plain HTTP"),
        "{e}"
    );
    let mut o = opts(&dir, &one_url(&dir, &server.url("/t.txt")));
    o.ripestat_url = Some(plain.url("/r"));
    let e = run_update(&o).unwrap_err().to_string();
    assert!(
        e.starts_with("RIPEstat URL override: ") && e.contains("is plain HTTP"),
        "{e}"
    );
    assert!(!dir.path("out").exists(), "nothing created");

    // https -> https redirects (absolute and relative) are followed.
    server.set("/t.txt", 200, list_of(3));
    server.set("/moved", 301, server.url("/t.txt"));
    server.set("/relative", 302, "/moved");
    let sources = one_url(&dir, &server.url("/relative"));
    let r = update(&dir, &sources, &server, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(read_set(&dir.path("out/t.txt")).len(), 3);
    let file = dir.path("out/t.txt");
    let before = fs::read(&file).unwrap();

    // https -> http: refused before connecting; the file stays.
    server.set("/down", 302, plain.url("/t.txt"));
    server.set("/down-later", 301, server.url("/down"));
    plain.set("/t.txt", 200, list_of(4));
    for start in ["/down", "/down-later"] {
        let sources = one_url(&dir, &server.url(start));
        let r = update(&dir, &sources, &server, true);
        let c = &r.categories[0];
        assert_eq!(
            c.skipped,
            Some(SkipReason::SourcesFailed { failed: 1 }),
            "{r}"
        );
        assert_eq!(
            c.sources[0].result,
            Err(format!(
                "{}: redirected to `{}`, plain HTTP: refused (sources are fetched over https:// only, redirects included)",
                server.url(start),
                plain.url("/t.txt")
            )),
            "{start}"
        );
        assert_eq!(fs::read(&file).unwrap(), before, "{start}");
    }
    assert_eq!(plain.hits(), Vec::<String>::new(), "nothing asked in clear");

    // A redirect loop ends at the cap.
    server.set("/loop", 302, server.url("/loop"));
    let r = update(&dir, &one_url(&dir, &server.url("/loop")), &server, true);
    assert_eq!(
        r.categories[0].sources[0].result,
        Err(format!(
            "{}: more than {MAX_REDIRECTS} redirects: refused",
            server.url("/loop")
        ))
    );
    let loops = server.hits().iter().filter(|h| *h == "/loop").count();
    assert_eq!(loops, MAX_REDIRECTS as usize + 1, "{:?}", server.hits());
    assert_eq!(fs::read(&file).unwrap(), before);
}

/// A broad-prefix case: which source, how it is broken, the error.
type BroadCase<'a> = (usize, Box<dyn Fn() + 'a>, String);

/// A source carrying a prefix broader than /8 or /16 fails, naming the
/// source, line and prefix; the category is not written (others are);
/// `allow_broad` accepts it. The shared range lists pass as they are.
#[test]
fn broad_prefixes_refused_unless_allowed() {
    let server = Server::start();
    let d = TempDir::new("broad");
    let real = ranges_dir()
        .map(|r| fs::read_to_string(r.join("hybridnetworks-whatsapp-ipv4.txt")).unwrap());
    let base = real.clone().unwrap_or_else(|| list_of(20));
    let base_lines = base.lines().count();
    server.set("/ok.txt", 200, base.clone());
    server.set("/b.txt", 200, list_of(2));
    server.set(
        "/ripestat?resource=AS64500",
        200,
        ripestat_json(64500, &["198.51.100.0/24"]),
    );
    let sources = d.write(
        "sources.toml",
        &format!(
            "timeout_secs = 10\n[category.a]\nsource = [{{ url = \"{}\" }}, {{ asn = 64500 }}, {{ path = \"local.txt\" }}]\n[category.b]\nsource = [{{ url = \"{}\" }}]\n",
            server.url("/ok.txt"),
            server.url("/b.txt")
        ),
    );
    d.write("local.txt", "203.0.113.0/24\n");
    let r = update(&d, &sources, &server, false);
    assert!(r.all_written(), "{r}");
    let a_file = d.path("out/a.txt");
    let before = fs::read(&a_file).unwrap();
    let refused = |at: &str, entry: &str, min: u8, family: &str| {
        format!(
            "{at}: `{entry}` is broader than /{min}, the shortest {family} prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
        )
    };
    let local = d.path("local.txt").display().to_string();
    let ok_url = server.url("/ok.txt");
    let rs = server.url("/ripestat?resource=AS64500");
    // (which source, how it is broken, the error)
    let cases: Vec<BroadCase> = vec![
        (
            0,
            Box::new(|| server.set("/ok.txt", 200, format!("{base}0.0.0.0/0\n"))),
            refused(
                &format!("{ok_url}:{}", base_lines + 1),
                "0.0.0.0/0",
                8,
                "IPv4",
            ),
        ),
        (
            0,
            Box::new(|| server.set("/ok.txt", 200, format!("{base}2.0.0.0/7 # wide\n"))),
            refused(
                &format!("{ok_url}:{}", base_lines + 1),
                "2.0.0.0/7",
                8,
                "IPv4",
            ),
        ),
        (
            0,
            Box::new(|| server.set("/ok.txt", 200, format!("::/0\n{base}"))),
            refused(&format!("{ok_url}:1"), "::/0", 16, "IPv6"),
        ),
        (
            1,
            Box::new(|| {
                server.set(
                    "/ripestat?resource=AS64500",
                    200,
                    ripestat_json(64500, &["198.51.100.0/24", "2000::/15"]),
                );
            }),
            refused(
                &format!("{rs}: `data.prefixes[1].prefix`"),
                "2000::/15",
                16,
                "IPv6",
            ),
        ),
        (
            2,
            Box::new(|| {
                d.write("local.txt", "203.0.113.0/24\n0.0.0.0/0\n");
            }),
            refused(&format!("{local}:2"), "0.0.0.0/0", 8, "IPv4"),
        ),
    ];
    for (i, (which, breaks, want)) in cases.iter().enumerate() {
        server.set("/ok.txt", 200, base.clone());
        server.set(
            "/ripestat?resource=AS64500",
            200,
            ripestat_json(64500, &["198.51.100.0/24"]),
        );
        d.write("local.txt", "203.0.113.0/24\n");
        breaks();
        server.set("/b.txt", 200, list_of(i + 3));
        let r = update(&d, &sources, &server, true);
        let a = r.category("a").unwrap();
        assert_eq!(
            a.skipped,
            Some(SkipReason::SourcesFailed { failed: 1 }),
            "case {i}: {r}"
        );
        assert_eq!(a.sources[*which].result, Err(want.clone()), "case {i}");
        assert!(r.to_string().contains(want.as_str()), "case {i}: {r}");
        assert_eq!(
            fs::read(&a_file).unwrap(),
            before,
            "case {i}: a.txt changed"
        );
        assert!(r.category("b").unwrap().written(), "case {i}: {r}");
        assert_eq!(read_set(&d.path("out/b.txt")).len(), i + 3);
        // allow_broad writes it, prefix and all.
        let mut o = opts(&d, &sources);
        o.ripestat_url = Some(server.url("/ripestat"));
        o.allow_broad = true;
        o.force = true;
        let r = run_update(&o).unwrap();
        assert!(r.all_written(), "case {i}: {r}");
        let entry = want.split('`').rev().nth(1).unwrap();
        assert!(
            read_set(&a_file).contains(&cidr(entry)),
            "case {i}: {entry}"
        );
        fs::write(&a_file, &before).unwrap();
    }
    if real.is_none() {
        println!("the shared range lists are absent: tested on a made-up list");
    }
}

#[test]
fn empty_refused_unless_forced() {
    let server = Server::start();
    server.set("/ripestat?resource=AS64500", 200, ripestat_json(64500, &[]));
    let d = TempDir::new("empty");
    let sources = d.write(
        "sources.toml",
        "timeout_secs = 10\n[category.t]\nsource = [{ asn = 64500 }]\n",
    );
    let file = d.path("out/t.txt");
    // No file yet: an empty list is refused, nothing is created.
    let r = update(&d, &sources, &server, false);
    assert_eq!(r.categories[0].skipped, Some(SkipReason::Empty));
    assert_eq!(r.categories[0].sources[0].result, Ok(0));
    assert!(!file.exists());
    // An existing list is kept.
    fs::create_dir_all(d.path("out")).unwrap();
    fs::write(&file, "192.0.2.0/24\n").unwrap();
    let r = update(&d, &sources, &server, false);
    assert_eq!(r.categories[0].skipped, Some(SkipReason::Empty));
    assert_eq!(r.categories[0].previous, Some(1));
    assert_eq!(fs::read_to_string(&file).unwrap(), "192.0.2.0/24\n");
    // --force writes the header alone.
    let r = update(&d, &sources, &server, true);
    assert!(r.all_written(), "{r}");
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("#   entries: 0\n"), "{text}");
    assert!(lists::parse_list("t", &text, false).unwrap().is_empty());
    // A plain list with no entries is a failed source, even with --force.
    server.set("/e.txt", 200, "# nothing here\n");
    let sources = one_url(&d, &server.url("/e.txt"));
    let r = update(&d, &sources, &server, true);
    assert_eq!(
        r.categories[0].sources[0].result,
        Err(format!(
            "{}: no entries (an empty list is taken as a broken source)",
            server.url("/e.txt")
        ))
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), text);
}

/// A failure case: what, the second source of `a`, a route to set, the
/// start of the expected error.
type Case = (
    &'static str,
    String,
    Option<(&'static str, u16, Vec<u8>)>,
    String,
);

/// Each way a source can fail leaves its category's file as it was,
/// while another category updates.
#[test]
fn failing_source_leaves_category() {
    let server = Server::start();
    let d = TempDir::new("fail");
    let dead = format!("https://127.0.0.1:{}/gone.txt", dead_port());
    let sources_with = |second: &str| {
        d.write(
            "sources.toml",
            &format!(
                r#"
timeout_secs = 10
[category.a]
source = [{{ url = "{good}" }}, {second}]
[category.b]
source = [{{ url = "{b}" }}]
"#,
                good = server.url("/a1.txt"),
                b = server.url("/b.txt"),
            ),
        )
    };
    server.set("/a1.txt", 200, "192.0.2.0/25\n");
    server.set("/a2.txt", 200, "192.0.2.128/25\n");
    server.set(
        "/ripestat?resource=AS64500",
        200,
        ripestat_json(64500, &["198.51.100.0/24"]),
    );
    server.set("/b.txt", 200, list_of(1));
    let sources = sources_with(&format!("{{ url = \"{}\" }}", server.url("/a2.txt")));
    assert!(update(&d, &sources, &server, false).all_written());
    let a_file = d.path("out/a.txt");
    let a_before = fs::read(&a_file).unwrap();
    let a2 = server.url("/a2.txt");
    let rs = server.url("/ripestat?resource=AS64500");

    let cases: Vec<Case> = vec![
        (
            "HTTP 500",
            format!("{{ url = \"{a2}\" }}"),
            Some(("/a2.txt", 500, "boom".into())),
            format!("{a2}: HTTP status 500 Internal Server Error"),
        ),
        (
            "HTTP 404",
            format!("{{ url = \"{}\" }}", server.url("/missing.txt")),
            None,
            format!("{}: HTTP status 404 Not Found", server.url("/missing.txt")),
        ),
        (
            "connection refused",
            format!("{{ url = \"{dead}\" }}"),
            None,
            format!("{dead}: "),
        ),
        (
            "garbage text",
            format!("{{ url = \"{a2}\" }}"),
            Some((
                "/a2.txt",
                200,
                "192.0.2.128/25\n<html><body>Down</body></html>\n".into(),
            )),
            format!(
                "{a2}:2: `<html><body>Down</body></html>` is not an IPv4 or IPv6 address or CIDR"
            ),
        ),
        (
            "not UTF-8",
            format!("{{ url = \"{a2}\" }}"),
            Some(("/a2.txt", 200, b"192.0.2.128/25\n\xfe\xff\n".to_vec())),
            format!("{a2}:2: not valid UTF-8"),
        ),
        (
            "garbage JSON",
            "{ asn = 64500 }".to_owned(),
            Some(("/ripestat?resource=AS64500", 200, "{\"data\": nope".into())),
            format!("{rs}: not a RIPEstat JSON response: expected ident at line 1 column 11"),
        ),
        (
            "RIPEstat 500",
            "{ asn = 64500 }".to_owned(),
            Some(("/ripestat?resource=AS64500", 500, "".into())),
            format!("{rs}: HTTP status 500 Internal Server Error"),
        ),
        (
            "missing local file",
            "{ path = \"nope.txt\" }".to_owned(),
            None,
            format!(
                "{}: No such file or directory (os error 2)",
                d.path("nope.txt").display()
            ),
        ),
    ];
    for (round, (what, second, route, want)) in cases.into_iter().enumerate() {
        let sources = sources_with(&second);
        if let Some((path, status, body)) = route {
            server.set(path, status, body);
        }
        // b changes every round, so a write is visible.
        server.set("/b.txt", 200, list_of(round + 2));
        let r = update(&d, &sources, &server, false);
        assert!(!r.all_written(), "{what}: {r}");
        let a = r.category("a").unwrap();
        assert_eq!(
            a.skipped,
            Some(SkipReason::SourcesFailed { failed: 1 }),
            "{what}"
        );
        assert_eq!(a.sources[0].result, Ok(1), "{what}");
        let err = a.sources[1].result.clone().unwrap_err();
        assert!(err.starts_with(&want), "{what}: {err}\nwanted: {want}");
        assert!(a.sources[1].fetched.is_none());
        assert_eq!(a.previous, Some(2), "{what}");
        assert_eq!(
            fs::read(&a_file).unwrap(),
            a_before,
            "{what}: a.txt changed"
        );
        let b = r.category("b").unwrap();
        assert!(b.written(), "{what}: {r}");
        assert_eq!(read_set(&d.path("out/b.txt")).len(), round + 2, "{what}");
        assert!(r.to_string().contains("  FAILED  "), "{r}");
        assert_eq!(d.names("out"), ["a.txt", "b.txt"], "{what}");
    }
}

#[test]
fn bad_sources_file_writes_nothing() {
    let d = TempDir::new("bad");
    let sources = d.write(
        "sources.toml",
        "[category.t]\n[[category.t.source]]\nurl = \"http://127.0.0.1:9/x\"\nasn = 1\n",
    );
    let e = run_update(&opts(&d, &sources)).unwrap_err();
    let typed = e.downcast_ref::<SourcesError>().expect("a SourcesError");
    assert!(
        matches!(typed, SourcesError::Invalid { field, .. } if field == "category.t.source[0]"),
        "{typed:?}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "{}: `category.t.source[0]`: give exactly one of",
            sources.display()
        )),
        "{e}"
    );
    assert!(!d.path("out").exists(), "nothing created");
    let e = run_update(&opts(&d, &d.path("missing.toml"))).unwrap_err();
    assert!(matches!(
        e.downcast_ref::<SourcesError>(),
        Some(SourcesError::Read { .. })
    ));
    // A bad override is refused before anything is fetched or created.
    let good = d.write(
        "good.toml",
        &format!(
            "[ripestat]\nurl = \"https://127.0.0.1:{}/r\"\n[category.t]\nsource = [{{ asn = 1 }}]\n",
            dead_port()
        ),
    );
    let mut o = opts(&d, &good);
    o.ripestat_url = Some("nope".into());
    assert_eq!(
        run_update(&o).unwrap_err().to_string(),
        "RIPEstat URL override: `nope` is not an https:// URL"
    );
    assert!(!d.path("out").exists());
}

#[test]
fn unreadable_previous_file() {
    let server = Server::start();
    server.set("/t.txt", 200, list_of(3));
    let d = TempDir::new("prev");
    let sources = one_url(&d, &server.url("/t.txt"));
    // The current file is a directory: it cannot be read, so it is not replaced.
    fs::create_dir_all(d.path("out/t.txt")).unwrap();
    let r = update(&d, &sources, &server, true);
    assert!(
        matches!(&r.categories[0].skipped, Some(SkipReason::PreviousUnreadable(e)) if e.starts_with(&d.path("out/t.txt").display().to_string())),
        "{r}"
    );
    assert!(d.path("out/t.txt").is_dir());
    // A current file that does not parse is sized by its entry lines.
    fs::remove_dir(d.path("out/t.txt")).unwrap();
    fs::write(
        d.path("out/t.txt"),
        "# x\n10.0.0.0/8\nbogus\n1.2.3.4\n5.6.7.8\n10.1.0.0/16\n10.2.0.0/16\n10.3.0.0/16\n",
    )
    .unwrap();
    let r = update(&d, &sources, &server, false);
    let c = &r.categories[0];
    assert_eq!(
        c.skipped,
        Some(SkipReason::Shrunk {
            entries: 3,
            previous: 7
        }),
        "{r}"
    );
    assert_eq!(c.notes.len(), 1);
    assert!(c.notes[0].contains("does not parse"), "{:?}", c.notes);
}
