//! The list-file parser and the table builders: arbitrary text as a list
//! file, parsed strict and with `--normalize`.
//!
//! Invariants: no panic; errors name the file and a line; whatever strict
//! parsing accepts, normalising accepts with the same prefixes; every kept
//! prefix is canonical (host bits clear, sorted, unique) and re-parses to
//! itself; the IPv4 DIR-24-8 and IPv6 tables build from the result (as a
//! category and as the allowlist) and give every kept prefix its category.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{CAT_ALLOW, CAT_WHATSAPP};
use filter_user::dataplane::tables::Tables;
use filter_user::lists::{ListError, ParsedList, parse_list};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.txt";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let strict = parse_list(NAME, &text, false);
    let normal = parse_list(NAME, &text, true);
    for r in [&strict, &normal] {
        match r {
            Ok(list) => check_list(list, lines),
            Err(e) => check_error(e, lines),
        }
    }
    if let Ok(s) = &strict {
        let n = normal
            .as_ref()
            .expect("strict parsing accepted what --normalize rejects");
        assert_eq!(
            (&s.v4, &s.v6),
            (&n.v4, &n.v6),
            "--normalize changed a clean list"
        );
    }
    if let Ok(list) = &normal {
        check_tables(list);
    }
});

fn check_error(e: &ListError, lines: usize) {
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{NAME}:")),
        "error without the file: {msg}"
    );
    match e {
        ListError::Syntax { line, .. } => {
            assert!((1..=lines).contains(line), "line {line} of {lines}: {msg}");
        }
        other => panic!("parse_list returned {other:?}"),
    }
}

fn check_list(list: &ParsedList, lines: usize) {
    for n in &list.notes {
        assert!(
            (1..=lines).contains(&n.line),
            "note on line {} of {lines}",
            n.line
        );
    }
    assert!(
        list.v4.windows(2).all(|w| w[0] < w[1]),
        "v4 not sorted/unique"
    );
    assert!(
        list.v6.windows(2).all(|w| w[0] < w[1]),
        "v6 not sorted/unique"
    );
    for &(a, l) in &list.v4 {
        assert!(l <= 32);
        assert_eq!(u32::from(a) & !mask32(l), 0, "{a}/{l} has host bits");
        reparse(&format!("{a}/{l}"), IpAddr::V4(a), l);
    }
    for &(a, l) in &list.v6 {
        assert!(l <= 128);
        assert_eq!(u128::from(a) & !mask128(l), 0, "{a}/{l} has host bits");
        reparse(&format!("{a}/{l}"), IpAddr::V6(a), l);
    }
}

fn reparse(entry: &str, addr: IpAddr, len: u8) {
    let again = parse_list("again.txt", entry, false)
        .unwrap_or_else(|e| panic!("kept prefix {entry} does not re-parse: {e}"));
    let got: Vec<(IpAddr, u8)> = again
        .v4
        .iter()
        .map(|&(a, l)| (IpAddr::V4(a), l))
        .chain(again.v6.iter().map(|&(a, l)| (IpAddr::V6(a), l)))
        .collect();
    assert_eq!(got, vec![(addr, len)], "{entry} re-parsed differently");
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn check_tables(list: &ParsedList) {
    let none4: &[(Ipv4Addr, u8)] = &[];
    let none6: &[(Ipv6Addr, u8)] = &[];
    let t = Tables::build(&[(CAT_WHATSAPP, &list.v4)], none4, &[(CAT_WHATSAPP, &list.v6)], none6)
        .unwrap_or_else(|e| panic!("tables from a parsed list: {e}"));
    for &(a, _) in &list.v4 {
        assert_eq!(t.lookup(a.into()), CAT_WHATSAPP, "{a} in the v4 table");
    }
    for &(a, _) in &list.v6 {
        assert_eq!(t.lookup(a.into()), CAT_WHATSAPP, "{a} in the v6 table");
    }
    let t = Tables::build(&[], &list.v4, &[], &list.v6)
        .unwrap_or_else(|e| panic!("allow tables from a parsed list: {e}"));
    for &(a, _) in &list.v4 {
        assert_eq!(t.lookup(a.into()), CAT_ALLOW, "{a} in the v4 allow table");
    }
    for &(a, _) in &list.v6 {
        assert_eq!(t.lookup(a.into()), CAT_ALLOW, "{a} in the v6 allow table");
    }
}
