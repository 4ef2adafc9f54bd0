//! Tests of the sources file: its schema and the errors that name the field.

use super::*;

// ----- sources file ---------------------------------------------------

#[test]
fn committed_sources_file() {
    let file = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lists/sources.toml"
    ));
    let s = Sources::load(file).unwrap();
    assert_eq!(s.ripestat_url, DEFAULT_RIPESTAT_URL);
    let names: Vec<&str> = s.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["telegram", "whatsapp"]);
    let asns = |c: &CategorySources| -> Vec<u32> {
        c.sources
            .iter()
            .filter_map(|s| match s.kind {
                SourceKind::Ripestat { asn } => Some(asn),
                _ => None,
            })
            .collect()
    };
    let tg = &s.categories[0];
    assert_eq!(
        tg.sources[0].kind,
        SourceKind::Url("https://core.telegram.org/resources/cidr.txt".into())
    );
    assert_eq!(asns(tg), [62041, 62014, 59930, 44907, 211_157]);
    let wa = &s.categories[1];
    assert!(asns(wa).contains(&32934));
    assert!(
        wa.sources
            .iter()
            .all(|s| matches!(s.kind, SourceKind::Ripestat { .. }))
    );
    let note = wa.note.as_deref().unwrap();
    for word in ["Messenger", "Instagram", "Facebook"] {
        assert!(note.contains(word), "whatsapp note lacks {word}: {note}");
    }
    // Only public sources by URL: no copies of third-party lists.
    for c in &s.categories {
        for src in &c.sources {
            assert!(!matches!(src.kind, SourceKind::Path(_)), "{src:?}");
            if let SourceKind::Url(u) = &src.kind {
                assert!(u.starts_with("https://"), "{u}");
            }
        }
    }
}

fn parse(text: &str) -> Result<Sources, SourcesError> {
    Sources::parse("s.toml", text, Path::new("/base"))
}

fn parse_err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn sources_schema() {
    let s = parse(
        r#"
timeout_secs = 5
[ripestat]
url = "https://127.0.0.1:1/r?x=1"
[category.b]
[[category.b.source]]
path = "rel/b.txt"
normalize = true
[[category.b.source]]
path = "/abs/b.txt"
[category.a]
note = "  "
[[category.a.source]]
asn = "AS64500"
[[category.a.source]]
asn = 64501
name = " mine "
[[category.a.source]]
url = "HTTPS://example.test/x.txt"
"#,
    )
    .unwrap();
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.ripestat_url, "https://127.0.0.1:1/r?x=1");
    assert_eq!(
        s.categories,
        [
            CategorySources {
                name: "a".into(),
                note: None,
                sources: vec![
                    Source {
                        name: "prefixes announced by AS64500 (RIPEstat)".into(),
                        kind: SourceKind::Ripestat { asn: 64500 },
                        normalize: false
                    },
                    Source {
                        name: "mine".into(),
                        kind: SourceKind::Ripestat { asn: 64501 },
                        normalize: false
                    },
                    Source {
                        name: "CIDR list HTTPS://example.test/x.txt".into(),
                        kind: SourceKind::Url("HTTPS://example.test/x.txt".into()),
                        normalize: false
                    },
                ]
            },
            CategorySources {
                name: "b".into(),
                note: None,
                sources: vec![
                    Source {
                        name: "CIDR list /base/rel/b.txt".into(),
                        kind: SourceKind::Path("/base/rel/b.txt".into()),
                        normalize: true
                    },
                    Source {
                        name: "CIDR list /abs/b.txt".into(),
                        kind: SourceKind::Path("/abs/b.txt".into()),
                        normalize: false
                    },
                ]
            },
        ]
    );
    let d = parse("[category.x]\nsource = [{ asn = 1 }]\n").unwrap();
    assert_eq!(d.timeout, DEFAULT_TIMEOUT);
    assert_eq!(d.ripestat_url, DEFAULT_RIPESTAT_URL);
    assert_eq!(
        ripestat_request(&d.ripestat_url, 62041),
        "https://stat.ripe.net/data/announced-prefixes/data.json?resource=AS62041"
    );
    assert_eq!(
        ripestat_request("https://h/r?x=1", 7),
        "https://h/r?x=1&resource=AS7"
    );
}

#[test]
fn sources_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[category.t]\n[[category.t.source]]\nasn = \"ASx\"\n",
            "s.toml:3:7: `category.t.source[0].asn`: `ASx` is not an AS number (write 62041 or \"AS62041\")",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = 0\n",
            "s.toml:3:7: `category.t.source[0].asn`: AS number 0 is reserved",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = -3\n",
            "s.toml:3:7: `category.t.source[0].asn`: AS number -3 is negative",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = 4294967296\n",
            "s.toml:3:7: `category.t.source[0].asn`: AS number 4294967296 is larger than 4294967295",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = 1.5\n",
            "s.toml:3:7: `category.t.source[0].asn`: invalid type: floating point `1.5`, expected an AS number like 62041 or \"AS62041\"",
        ),
        (
            "[category.t]\n[[category.t.source]]\nurll = \"https://x/\"\n",
            "s.toml:3:1: `category.t.source[0].urll`: unknown field `urll`, expected one of `name`, `url`, `path`, `asn`, `normalize`",
        ),
        (
            "[category.t]\n[[category.t.source]]\nurl = \"https://x/\"\nnormalize = \"yes\"\n",
            "s.toml:4:13: `category.t.source[0].normalize`: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "timeout_secs = \"10\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml:1:16: `timeout_secs`: invalid type: string \"10\", expected u64",
        ),
        (
            "[category.t]\nnote = 3\nsource = [{ asn = 1 }]\n",
            "s.toml:2:8: `category.t.note`: invalid type: integer `3`, expected a string",
        ),
        (
            "[category.t]\nnote = \"x\"\n",
            "s.toml:1:1: `category.t`: missing field `source`",
        ),
        ("", "s.toml:1:1: missing field `category`"),
        (
            "[category.t\n",
            "s.toml:1:12: invalid table header: expected `.`, `]`",
        ),
        (
            "[category.t]\nsource = []\n",
            "s.toml: `category.t.source`: no source given",
        ),
        (
            "category = {}\n",
            "s.toml: `category`: no category given (add a [category.NAME] table with [[category.NAME.source]] entries)",
        ),
        (
            "[category.T]\nsource = [{ asn = 1 }]\n",
            "s.toml: `category.T`: `T` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)",
        ),
        (
            "[category.t]\nsource = [{ asn = 1 }, { asn = 1, url = \"https://x/\" }]\n",
            "s.toml: `category.t.source[1]`: give exactly one of `url` (plain CIDR list over https), `path` (plain CIDR list in a file) or `asn` (announced prefixes from RIPEstat)",
        ),
        (
            "[category.t]\nsource = [{ name = \"n\" }]\n",
            "s.toml: `category.t.source[0]`: give exactly one of `url` (plain CIDR list over https), `path` (plain CIDR list in a file) or `asn` (announced prefixes from RIPEstat)",
        ),
        (
            "[category.t]\nsource = [{ url = \"ftp://x/a\" }]\n",
            "s.toml: `category.t.source[0].url`: `ftp://x/a` is not an https:// URL",
        ),
        (
            "[category.t]\nsource = [{ url = \"https:///a\" }]\n",
            "s.toml: `category.t.source[0].url`: `https:///a` has no host",
        ),
        (
            "[category.t]\nsource = [{ url = \"https://x/a b\" }]\n",
            "s.toml: `category.t.source[0].url`: `https://x/a b` contains whitespace or control characters",
        ),
        (
            "[category.t]\nsource = [{ url = \"http://core.telegram.org/resources/cidr.txt\" }]\n",
            "s.toml: `category.t.source[0].url`: `http://core.telegram.org/resources/cidr.txt` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
        ),
        (
            "[category.t]\nsource = [{ url = \"HTTP://x/a\" }]\n",
            "s.toml: `category.t.source[0].url`: `HTTP://x/a` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
        ),
        (
            "[ripestat]\nurl = \"http://stat.ripe.net/data/announced-prefixes/data.json\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml: `ripestat.url`: `http://stat.ripe.net/data/announced-prefixes/data.json` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
        ),
        (
            "[category.t]\nsource = [{ path = \"\" }]\n",
            "s.toml: `category.t.source[0].path`: empty path",
        ),
        (
            "[category.t]\nsource = [{ asn = 1, normalize = true }]\n",
            "s.toml: `category.t.source[0].normalize`: only plain CIDR lists (`url`, `path`) can be normalised",
        ),
        (
            "[category.t]\nsource = [{ asn = 1, name = \"a\\nb\" }]\n",
            "s.toml: `category.t.source[0].name`: must be one non-empty line",
        ),
        (
            "[category.t]\nsource = [{ asn = 1 }, { asn = \"AS1\" }]\n",
            "s.toml: `category.t.source[1]`: same source as `category.t.source[0]`",
        ),
        (
            "timeout_secs = 0\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml: `timeout_secs`: 0 is not between 1 and 3600",
        ),
        (
            "[ripestat]\nurl = \"stat.ripe.net\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml: `ripestat.url`: `stat.ripe.net` is not an https:// URL",
        ),
        (
            "[ripestat]\nurll = \"x\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml:2:1: `ripestat.urll`: unknown field `urll`, expected `url`",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, want)| {
            let got = parse_err(text);
            (got != *want).then(|| format!("for:\n{text}\n got: {got}\nwant: {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    // Typed: the field is a value of its own.
    match parse("[category.t]\n[[category.t.source]]\nasn = \"ASx\"\n").unwrap_err() {
        SourcesError::Syntax {
            field,
            line,
            column,
            ..
        } => assert_eq!(
            (field.as_str(), line, column),
            ("category.t.source[0].asn", 3, 7)
        ),
        e => panic!("{e:?}"),
    }
    let e = Sources::load(Path::new("/nonexistent/flowfilter/s.toml")).unwrap_err();
    assert!(matches!(e, SourcesError::Read { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/flowfilter/s.toml: "),
        "{e}"
    );
}
