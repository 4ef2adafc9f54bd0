use std::path::PathBuf;

use super::*;
use crate::dataplane::cidr::testing::{v4, v6};

#[test]
fn ids_stay_with_their_category() {
    let lists = |names: &[&str]| {
        let parts = names
            .iter()
            .map(|n| ((*n).to_owned(), ParsedList::default()))
            .collect();
        Lists::from_parts(parts, ParsedList::default()).unwrap()
    };
    let ids = |l: &Lists| -> Vec<(u8, String)> {
        l.categories
            .iter()
            .map(|c| (c.id, c.name.clone()))
            .collect()
    };
    let first = lists(&["whatsapp", "telegram", "zoom"]);
    assert_eq!(first.by_name("zoom").unwrap().id, CAT_FIRST_USER);
    // `meet` sorts before `zoom`: alone it would take zoom's id.
    let mut second = lists(&["meet", "zoom"]);
    assert_eq!(second.by_name("meet").unwrap().id, CAT_FIRST_USER);
    second.keep_ids(&ids(&first));
    assert_eq!(second.by_name("zoom").unwrap().id, CAT_FIRST_USER);
    assert_eq!(second.by_name("meet").unwrap().id, CAT_FIRST_USER + 1);
    assert_eq!(second.by_name("whatsapp").unwrap().id, CAT_WHATSAPP);
    assert_eq!(second.by_name("telegram").unwrap().id, CAT_TELEGRAM);
    let sorted: Vec<u8> = second.categories.iter().map(|c| c.id).collect();
    assert!(sorted.is_sorted(), "{sorted:?}");
    // zoom removed, teams added: teams does not inherit zoom's id while
    // another is free.
    let mut third = lists(&["meet", "teams"]);
    third.keep_ids(&ids(&second));
    assert_eq!(third.by_name("meet").unwrap().id, CAT_FIRST_USER + 1);
    assert_eq!(third.by_name("teams").unwrap().id, CAT_FIRST_USER + 2);
    // With every id in use, a removed one is reused.
    let many: Vec<String> = (0..=usize::from(CAT_LAST - CAT_FIRST_USER))
        .map(|i| format!("c{i:03}"))
        .collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    let full = lists(&names);
    let mut swapped: Vec<&str> = names[1..].to_vec();
    swapped.push("zzz");
    let mut next = lists(&swapped);
    next.keep_ids(&ids(&full));
    assert_eq!(next.by_name("zzz").unwrap().id, CAT_FIRST_USER);
    assert_eq!(next.by_name("c001").unwrap().id, CAT_FIRST_USER + 1);
}

fn err(text: &str, normalize: bool) -> String {
    parse_list("t.txt", text, normalize)
        .unwrap_err()
        .to_string()
}

#[test]
fn notes_are_summarised_per_file() {
    use std::fmt::Write as _;
    let mut text = String::from("10.0.0.0/8\n");
    for i in 0..300 {
        writeln!(text, "10.{}.{}.0/24", i / 256, i % 256).unwrap();
    }
    text.push_str("10.0.0.0/8\n10.0.0.1/8\n");
    let a = parse_list("a.txt", &text, true).unwrap();
    let b = parse_list("b.txt", "192.0.2.0/24\n192.0.2.0/24\n", false).unwrap();
    let all: Vec<&ListNote> = a.notes.iter().chain(&b.notes).collect();
    assert_eq!(all.len(), 300 + 1 + 2 + 1);
    assert_eq!(
        summarise_notes(&all),
        [
            "a.txt: 2 duplicate prefixes (merged), 300 prefixes covered by a shorter one of the file (kept), 1 entry with host bits cleared",
            "b.txt: 1 duplicate prefix (merged)"
        ]
    );
    assert!(summarise_notes(&[]).is_empty());
}

fn notes(list: &ParsedList) -> Vec<String> {
    list.notes.iter().map(ToString::to_string).collect()
}

#[test]
fn cidr_parse_and_display() {
    assert_eq!(
        "1.2.3.0/24".parse::<Cidr>().unwrap().to_string(),
        "1.2.3.0/24"
    );
    assert_eq!("1.2.3.4".parse::<Cidr>().unwrap().to_string(), "1.2.3.4/32");
    assert_eq!(
        "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
        "0.0.0.0/0"
    );
    assert_eq!(
        " 2001:db8::/32 ".parse::<Cidr>().unwrap().to_string(),
        "2001:db8::/32"
    );
    assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
    assert_eq!("::/0".parse::<Cidr>().unwrap().to_string(), "::/0");
    assert_eq!(
        "10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string(),
        "`10.0.0.1/8` has bits set beyond /8 (use 10.0.0.0/8)"
    );
    assert_eq!(
        Cidr::parse_normalized("10.0.0.1/8").unwrap().to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        Cidr::parse_normalized("2001:db8::1/32")
            .unwrap()
            .to_string(),
        "2001:db8::/32"
    );
    assert!("".parse::<Cidr>().is_err());
    assert!("/8".parse::<Cidr>().is_err());
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains("10.255.0.1".parse().unwrap()));
    assert!(!c.contains("11.0.0.0".parse().unwrap()));
    assert!(!c.contains("::a00:1".parse().unwrap()));
    assert!(
        "::/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("2001:db8::1".parse().unwrap())
    );
    assert!(
        "0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("1.1.1.1".parse().unwrap())
    );
    // Out-of-range lengths built by hand never panic.
    let bad = Cidr::V4 {
        addr: Ipv4Addr::new(1, 2, 3, 4),
        len: 200,
    };
    assert!(!bad.contains("1.2.3.4".parse().unwrap()));
    assert_eq!(bad.network(), bad);
    assert!(!bad.has_host_bits());
    // Ordering: IPv4 before IPv6, then address, then length.
    let mut v: Vec<Cidr> = ["::/0", "10.0.0.0/16", "10.0.0.0/8", "9.0.0.0/8"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    v.sort();
    let v: Vec<String> = v.iter().map(ToString::to_string).collect();
    assert_eq!(v, ["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "::/0"]);
}

#[test]
fn syntax_errors() {
    assert_eq!(
        err("10.0.0.0/8\n\nfoo\n", false),
        "t.txt:3: `foo` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        err("  10.0.0.0/33 # x", false),
        "t.txt:1: prefix length 33 is longer than 32"
    );
    assert_eq!(
        err("::/129", false),
        "t.txt:1: prefix length 129 is longer than 128"
    );
    assert_eq!(
        err("1.2.3.4/99999999999999999999", false),
        "t.txt:1: prefix length 99999999999999999999 is longer than 32"
    );
    assert_eq!(
        err("# c\n1.2.3.4/", false),
        "t.txt:2: `1.2.3.4/` has no prefix length after `/`"
    );
    assert_eq!(
        err("1.2.3.4/x", false),
        "t.txt:1: `1.2.3.4/x`: `x` is not a prefix length"
    );
    assert_eq!(
        err("1.2.3.4/+8", false),
        "t.txt:1: `1.2.3.4/+8`: `+8` is not a prefix length"
    );
    assert_eq!(
        err("1.2.3.4/8/8", false),
        "t.txt:1: `1.2.3.4/8/8`: `8/8` is not a prefix length"
    );
    assert_eq!(
        err("1.2.3.0/24 1.2.4.0/24", false),
        "t.txt:1: `1.2.3.0/24 1.2.4.0/24` holds more than one entry (write one address or CIDR per line)"
    );
    assert_eq!(
        err("1.2.3.4-1.2.3.9", false),
        "t.txt:1: `1.2.3.4-1.2.3.9` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        err("/24", false),
        "t.txt:1: `/24` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        err("1.2.3", false),
        "t.txt:1: `1.2.3` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        err("fe80::1%eth0", false),
        "t.txt:1: `fe80::1%eth0` is not an IPv4 or IPv6 address or CIDR"
    );
    // The first error wins, even with later ones.
    assert_eq!(
        err("1.1.1.1\nbad1\nbad2\n", false),
        "t.txt:2: `bad1` is not an IPv4 or IPv6 address or CIDR"
    );
    // Windows line endings.
    assert_eq!(
        err("1.1.1.1\r\nbad\r\n", false),
        "t.txt:2: `bad` is not an IPv4 or IPv6 address or CIDR"
    );
}

#[test]
fn host_bits() {
    assert_eq!(
        err("10.0.0.0/8\n  10.0.0.1/24  # x\n", false),
        "t.txt:2: `10.0.0.1/24` has bits set beyond /24 (use 10.0.0.0/24, or --normalize)"
    );
    assert_eq!(
        err("2001:db8::1/32", false),
        "t.txt:1: `2001:db8::1/32` has bits set beyond /32 (use 2001:db8::/32, or --normalize)"
    );
    let l = parse_list("t.txt", "11.0.0.0/8\n10.0.0.1/24\n2001:db8::1/32\n", true).unwrap();
    assert_eq!(l.v4, [v4("10.0.0.0/24"), v4("11.0.0.0/8")]);
    assert_eq!(l.v6, [v6("2001:db8::/32")]);
    assert_eq!(
        notes(&l),
        [
            "t.txt:2: host bits set, normalised to 10.0.0.0/24",
            "t.txt:3: host bits set, normalised to 2001:db8::/32"
        ]
    );
    // A normalised entry can turn into a duplicate: both are noted.
    let l = parse_list("t.txt", "10.0.0.0/24\n10.0.0.9/24\n", true).unwrap();
    assert_eq!(l.v4, [v4("10.0.0.0/24")]);
    assert_eq!(
        notes(&l),
        [
            "t.txt:2: host bits set, normalised to 10.0.0.0/24",
            "t.txt:2: duplicate of line 1"
        ]
    );
}

#[test]
fn comments_blanks_whitespace_bare() {
    let text = "\u{feff}# header\n\n   \n\t1.2.3.4\t\n5.6.0.0/16 # trailing\n#10.0.0.0/8\n  ::1  \n2001:db8::/32#x\n";
    let l = parse_list("t.txt", text, false).unwrap();
    assert_eq!(l.v4, [v4("1.2.3.4/32"), v4("5.6.0.0/16")]);
    assert_eq!(l.v6, [v6("::1/128"), v6("2001:db8::/32")]);
    assert!(l.notes.is_empty());
    assert_eq!(l.len(), 4);
    assert!(!l.is_empty());
    let empty = parse_list("t.txt", "# nothing\n\n", false).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty, ParsedList::default());
    assert_eq!(
        l.cidrs().map(|c| c.to_string()).collect::<Vec<_>>(),
        ["1.2.3.4/32", "5.6.0.0/16", "::1/128", "2001:db8::/32"]
    );
}

#[test]
fn duplicates_and_covered() {
    let text = "\
10.1.2.0/24
10.0.0.0/8
10.1.2.0/24
10.0.0.0/8
10.200.0.0/16
11.0.0.1
11.0.0.0/31
12.0.0.0/8
2001:db8::/48
2001:db8::/32
2001:db8::/32
";
    let l = parse_list("x.txt", text, false).unwrap();
    // Covered prefixes are reported but kept (another category may nest
    // between them); exact duplicates are merged.
    assert_eq!(
        l.v4,
        [
            v4("10.0.0.0/8"),
            v4("10.1.2.0/24"),
            v4("10.200.0.0/16"),
            v4("11.0.0.0/31"),
            v4("11.0.0.1/32"),
            v4("12.0.0.0/8")
        ]
    );
    assert_eq!(l.v6, [v6("2001:db8::/32"), v6("2001:db8::/48")]);
    assert_eq!(
        notes(&l),
        [
            "x.txt:1: covered by 10.0.0.0/8 (line 2)",
            "x.txt:3: duplicate of line 1",
            "x.txt:4: duplicate of line 2",
            "x.txt:5: covered by 10.0.0.0/8 (line 2)",
            "x.txt:6: covered by 11.0.0.0/31 (line 7)",
            "x.txt:9: covered by 2001:db8::/32 (line 10)",
            "x.txt:11: duplicate of line 10",
        ]
    );
    // Adjacent and disjoint prefixes are kept, IPv4 and IPv6 never merge.
    let l = parse_list("x.txt", "10.0.0.0/25\n10.0.0.128/25\n::a00:0/104\n", false).unwrap();
    assert_eq!(l.v4, [v4("10.0.0.0/25"), v4("10.0.0.128/25")]);
    assert_eq!(l.v6.len(), 1);
    assert!(l.notes.is_empty());
    // /0 covers everything of its family.
    let l = parse_list("x.txt", "1.2.3.4\n0.0.0.0/0\n::/0\n::1\n", false).unwrap();
    assert_eq!(l.v4, [v4("0.0.0.0/0"), v4("1.2.3.4/32")]);
    assert_eq!(l.v6, [v6("::/0"), v6("::1/128")]);
    assert_eq!(
        notes(&l),
        [
            "x.txt:1: covered by 0.0.0.0/0 (line 2)",
            "x.txt:4: covered by ::/0 (line 3)"
        ]
    );
}

#[test]
fn category_names() {
    for ok in [
        "a",
        "0",
        "whatsapp",
        "my-list_2",
        "a234567890123456789012345678901b",
    ] {
        assert!(valid_category_name(ok), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "_a",
        "A",
        "a.b",
        "a b",
        "é",
        "a2345678901234567890123456789012c",
    ] {
        assert!(!valid_category_name(bad), "{bad}");
    }
}

#[test]
fn numbering() {
    let ids =
        category_ids(["zeta", "alpha", "telegram", "allow", "alpha"].map(String::from)).unwrap();
    assert_eq!(
        ids,
        [
            (1, "whatsapp".to_owned()),
            (2, "telegram".to_owned()),
            (3, "alpha".to_owned()),
            (4, "zeta".to_owned())
        ]
    );
    assert_eq!(category_ids(Vec::new()).unwrap().len(), 2);
    let many = |n: usize| (0..n).map(|i| format!("c{i:03}"));
    let ids = category_ids(many(252)).unwrap();
    assert_eq!(ids.len(), 254);
    assert_eq!(ids.last().unwrap(), &(CAT_LAST, "c251".to_owned()));
    assert!(category_ids(many(253)).is_none());
    assert!(category_ids(many(252).chain(["whatsapp".to_owned()])).is_some());
}

#[test]
fn from_parts_and_lookups() {
    let meta = parse_list("meta", "157.240.0.0/16", false).unwrap();
    let wa = parse_list("wa", "1.2.3.4\n1.2.3.4\n", false).unwrap();
    let allow = parse_list("allow", "157.240.1.0/24", false).unwrap();
    let lists = Lists::from_parts(
        vec![("meta".into(), meta.clone()), ("whatsapp".into(), wa)],
        allow,
    )
    .unwrap();
    let ids: Vec<(u8, &str)> = lists
        .categories
        .iter()
        .map(|c| (c.id, c.name.as_str()))
        .collect();
    assert_eq!(ids, [(1, "whatsapp"), (2, "telegram"), (3, "meta")]);
    assert_eq!(lists.by_name("meta").unwrap().list, meta);
    assert!(lists.by_name("telegram").unwrap().list.is_empty());
    assert!(lists.by_name("allow").is_none());
    assert_eq!(lists.name_of(255), Some("allow"));
    assert_eq!(lists.name_of(3), Some("meta"));
    assert_eq!(lists.name_of(1), Some("whatsapp"));
    assert_eq!(lists.name_of(4), None);
    assert_eq!(lists.name_of(0), None);
    assert_eq!(lists.prefix_count(), 3);
    let notes: Vec<String> = lists.all_notes().iter().map(ToString::to_string).collect();
    assert_eq!(notes, ["wa:2: duplicate of line 1"]);

    let e = |parts: Vec<(String, ParsedList)>| {
        Lists::from_parts(parts, ParsedList::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        e(vec![("allow".into(), ParsedList::default())]),
        "`allow` is the allowlist, not a category"
    );
    assert_eq!(
        e(vec![("Bad".into(), ParsedList::default())]),
        "`Bad` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)"
    );
    assert_eq!(
        e(vec![
            ("x".into(), ParsedList::default()),
            ("x".into(), ParsedList::default())
        ]),
        "category `x` given twice"
    );
    let many: Vec<(String, ParsedList)> = (0..253)
        .map(|i| (format!("c{i}"), ParsedList::default()))
        .collect();
    assert_eq!(e(many), "255 categories given, at most 254 fit");
}

/// A fresh, empty temporary directory, removed on drop: the one the tests of
/// `lists`, `lists::update` and `control::state` share.
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("flowfilter-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(dir)
    }

    /// The directory itself.
    pub(crate) fn dir(&self) -> &Path {
        self.0.path()
    }

    /// `name` in the directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Writes `text` to `name` in the directory; its path.
    pub(crate) fn write(&self, name: &str, text: &(impl AsRef<[u8]> + ?Sized)) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The path of `name` in the directory, as messages show it.
    pub(crate) fn show(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Names of the entries of `sub` (`""`: of the directory itself), sorted.
    pub(crate) fn names(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

#[test]
fn load_dir_ok() {
    let d = TempDir::new("ok");
    d.write("whatsapp.txt", b"# wa\n157.240.0.0/16\n157.240.1.0/24\n");
    d.write("zoom.txt", b"3.7.35.0/25\n");
    d.write("meta-2.txt", b"2a03:2880::/32\n");
    d.write("allow.txt", b"10.0.0.0/8\n");
    d.write("README.md", b"not a list");
    d.write("notes.txt~", b"junk");
    d.write(".hidden.txt", b"junk");
    std::fs::create_dir(d.path("sub.txt")).unwrap();
    let lists = load_dir(d.dir(), false).unwrap();
    let ids: Vec<(u8, &str, usize)> = lists
        .categories
        .iter()
        .map(|c| (c.id, c.name.as_str(), c.list.len()))
        .collect();
    assert_eq!(
        ids,
        [
            (1, "whatsapp", 2),
            (2, "telegram", 0),
            (3, "meta-2", 1),
            (4, "zoom", 1)
        ]
    );
    assert_eq!(lists.allow.v4, [v4("10.0.0.0/8")]);
    let notes: Vec<String> = lists.all_notes().iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        [format!(
            "{}:3: covered by 157.240.0.0/16 (line 2)",
            d.show("whatsapp.txt")
        )]
    );

    let empty = TempDir::new("empty");
    let lists = load_dir(empty.dir(), false).unwrap();
    assert_eq!(lists.categories.len(), 2);
    assert!(lists.allow.is_empty());
}

#[test]
fn load_dir_errors() {
    let error = |dir: &Path, normalize| load_dir(dir, normalize).unwrap_err().to_string();
    let d = TempDir::new("err");
    d.write("whatsapp.txt", b"1.2.3.4\n");
    d.write("telegram.txt", b"# t\n1.2.3.4/24\n");
    let lists = load_dir(d.dir(), true).unwrap();
    assert_eq!(
        lists.by_name("telegram").unwrap().list.v4,
        [v4("1.2.3.0/24")]
    );
    assert_eq!(
        error(d.dir(), false),
        format!(
            "{}:2: `1.2.3.4/24` has bits set beyond /24 (use 1.2.3.0/24, or --normalize)",
            d.show("telegram.txt")
        )
    );

    d.write("telegram.txt", b"1.2.3.0/24\n\xff\n");
    assert_eq!(
        error(d.dir(), true),
        format!("{}:2: not valid UTF-8", d.show("telegram.txt"))
    );
    d.write("telegram.txt", b"");

    d.write("Bad.txt", b"");
    assert_eq!(
        error(d.dir(), false),
        format!(
            "{}: `Bad` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)",
            d.show("Bad.txt")
        )
    );
    std::fs::remove_file(d.path("Bad.txt")).unwrap();
    assert!(load_dir(d.dir(), false).is_ok());

    let missing = d.path("missing");
    let e = load_dir(&missing, false).unwrap_err();
    assert!(matches!(e, ListError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: ", missing.display())),
        "{e}"
    );

    let many = TempDir::new("many");
    for i in 0..252 {
        many.write(&format!("c{i:03}.txt"), b"");
    }
    many.write("whatsapp.txt", b"");
    many.write("allow.txt", b"");
    assert_eq!(load_dir(many.dir(), false).unwrap().categories.len(), 254);
    many.write("c252.txt", b"");
    assert_eq!(
        error(many.dir(), false),
        format!("{}: more than 254 categories", many.dir().display())
    );
}

/// The published source lists must parse as they are.
#[test]
fn real_lists_parse() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/ranges"
    ));
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("skipped: {} is absent", dir.display());
        return;
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !path.extension().is_some_and(|e| e == "lst" || e == "txt") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        check_real_list(&name, &text);
        n += 1;
    }
    assert!(n > 0, "no lists in {}", dir.display());
}

/// Parse a real list; if it has host bits set, the error must name the
/// first such line and `normalize` must fix it.
fn check_real_list(name: &str, text: &str) -> ParsedList {
    let entries = text
        .lines()
        .filter(|l| !l.split('#').next().unwrap().trim().is_empty())
        .count();
    match parse_list(name, text, false) {
        Ok(list) => {
            assert!(!list.is_empty(), "{name}");
            assert_eq!(
                list.len() + list.notes.len(),
                entries,
                "{name}: {:?}",
                list.notes
            );
            list
        }
        Err(ListError::Syntax { line, what, .. }) if what.contains("has bits set beyond") => {
            let first = text
                .lines()
                .position(|l| {
                    parse_entry(l.split('#').next().unwrap().trim()).is_ok_and(Cidr::has_host_bits)
                })
                .map(|i| i + 1);
            assert_eq!(Some(line), first, "{name}: {what}");
            parse_list(name, text, true).unwrap()
        }
        Err(e) => panic!("{e}"),
    }
}
