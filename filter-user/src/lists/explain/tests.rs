use super::*;
use crate::dataplane::tables::host_mask;
use crate::lists::{ParsedList, parse_list};

fn lists_for_explain() -> Lists {
    let p = |t: &str| parse_list("t", t, false).unwrap();
    Lists::from_parts(
        vec![
            (
                "meta".into(),
                p("157.240.0.0/16\n2a03:2880::/32\n10.0.0.0/8"),
            ),
            ("whatsapp".into(), p("157.240.1.0/24\n10.0.0.0/8")),
            ("telegram".into(), p("91.108.4.0/22")),
        ],
        p("157.240.1.128/25\n2a03:2880:1::/48\n91.108.0.0/16"),
    )
    .unwrap()
}

#[test]
fn explain_matches() {
    let lists = lists_for_explain();
    let ex = |a: &str| explain(&lists, a.parse().unwrap()).map(|m| m.to_string());
    assert_eq!(ex("157.240.2.1").as_deref(), Some("meta (157.240.0.0/16)"));
    assert_eq!(
        ex("157.240.1.1").as_deref(),
        Some("whatsapp (157.240.1.0/24)")
    );
    assert_eq!(
        ex("157.240.1.200").as_deref(),
        Some("allow (157.240.1.128/25), overriding whatsapp (157.240.1.0/24)")
    );
    assert_eq!(
        ex("91.108.5.1").as_deref(),
        Some("allow (91.108.0.0/16), overriding telegram (91.108.4.0/22)")
    );
    assert_eq!(ex("91.108.9.1").as_deref(), Some("allow (91.108.0.0/16)"));
    // Same prefix in two categories: the lower id.
    assert_eq!(ex("10.1.1.1").as_deref(), Some("whatsapp (10.0.0.0/8)"));
    assert_eq!(ex("2a03:2880::1").as_deref(), Some("meta (2a03:2880::/32)"));
    assert_eq!(
        ex("2a03:2880:1::1").as_deref(),
        Some("allow (2a03:2880:1::/48), overriding meta (2a03:2880::/32)")
    );
    assert_eq!(ex("8.8.8.8"), None);
    let m = explain(&lists, "157.240.1.200".parse().unwrap()).unwrap();
    assert!(m.allowed());
    assert_eq!(m.overridden.unwrap().category, 1);
    let m = explain(&lists, "157.240.2.1".parse().unwrap()).unwrap();
    assert!(!m.allowed());
    assert_eq!((m.hit.category, m.hit.name.as_str()), (3, "meta"));

    // explain and the tables agree.
    let t = build_tables(&lists).unwrap();
    for a in [
        "157.240.2.1",
        "157.240.1.1",
        "157.240.1.200",
        "91.108.5.1",
        "91.108.9.1",
        "10.1.1.1",
        "8.8.8.8",
    ] {
        let want = explain(&lists, a.parse().unwrap()).map_or(0, |m| m.hit.category);
        assert_eq!(t.lookup(a.parse().unwrap()), want, "{a}");
    }
    for a in ["2a03:2880::1", "2a03:2880:1::1", "::1"] {
        let want = explain(&lists, a.parse().unwrap()).map_or(0, |m| m.hit.category);
        assert_eq!(t.lookup(a.parse().unwrap()), want, "{a}");
    }
}

/// The published source lists parse and build.
#[test]
fn real_lists_build() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/ranges"
    ));
    if !dir.is_dir() {
        println!("skipped: {} is absent", dir.display());
        return;
    }
    let read = |name: &str| -> ParsedList {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return ParsedList::default();
        };
        match parse_list(name, &text, false) {
            Ok(list) => list,
            Err(e) => {
                println!("{e}; normalising");
                parse_list(name, &text, true).unwrap()
            }
        }
    };
    let whatsapp = read("hybridnetworks-whatsapp-ipv4.txt");
    let mut telegram = read("itdoginfo-ipv4-telegram.lst");
    let mut meta = read("itdoginfo-ipv4-meta.lst");
    telegram.v6 = read("itdoginfo-ipv6-telegram.lst").v6;
    meta.v6 = read("itdoginfo-ipv6-meta.lst").v6;
    let lists = Lists::from_parts(
        vec![
            ("whatsapp".into(), whatsapp),
            ("telegram".into(), telegram),
            ("meta".into(), meta),
        ],
        parse_list("allow", "157.240.0.0/24\n2a03:2880:f000::/36", false).unwrap(),
    )
    .unwrap();
    assert!(lists.prefix_count() > 100);
    let t = build_tables(&lists).unwrap();
    let mut probes: Vec<IpAddr> = Vec::new();
    for c in lists
        .categories
        .iter()
        .map(|c| &c.list)
        .chain([&lists.allow])
    {
        for cidr in c.cidrs() {
            let first = cidr.network().addr();
            probes.push(first);
            probes.push(match first {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                    u32::from(a) | host_mask(32, cidr.prefix_len()) as u32,
                )),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                    u128::from(a) | host_mask(128, cidr.prefix_len()),
                )),
            });
        }
    }
    for a in probes {
        let want = explain(&lists, a).map_or(0, |m| m.hit.category);
        assert_eq!(t.lookup(a), want, "{a}");
    }
}
