use super::*;
use filter_common::rng::Rng;

use crate::dataplane::cidr::testing::{v4, v6};

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Brute-force reference: every prefix in a set per length; the allowlist
/// wins, then the longest prefix, then the lowest id.
struct Reference {
    width: u8,
    allow: Vec<std::collections::HashSet<u128>>,
    block: Vec<std::collections::HashMap<u128, u8>>,
}

impl Reference {
    fn new(cats: &[(u8, Vec<(u128, u8)>)], allow: &[(u128, u8)], width: u8) -> Reference {
        let n = usize::from(width) + 1;
        let mut r = Reference {
            width,
            allow: vec![std::collections::HashSet::new(); n],
            block: vec![std::collections::HashMap::new(); n],
        };
        for &(a, l) in allow {
            r.allow[usize::from(l)].insert(a & prefix_mask(width, l));
        }
        for (cat, list) in cats {
            for &(a, l) in list {
                let c = r.block[usize::from(l)]
                    .entry(a & prefix_mask(width, l))
                    .or_insert(*cat);
                *c = (*c).min(*cat);
            }
        }
        r
    }

    fn lookup(&self, a: u128) -> u8 {
        let lens = (0..=self.width).rev();
        if lens
            .clone()
            .any(|l| self.allow[usize::from(l)].contains(&(a & prefix_mask(self.width, l))))
        {
            return CAT_ALLOW;
        }
        lens.filter_map(|l| self.block[usize::from(l)].get(&(a & prefix_mask(self.width, l))))
            .copied()
            .next()
            .unwrap_or(CAT_NONE)
    }
}

/// A random prefix, its length drawn from `lens` (host bits left set: the
/// build must ignore them). Addresses cluster in a few /8s so prefixes nest.
fn random_v4(rng: &mut Rng, lens: std::ops::RangeInclusive<u8>) -> (u32, u8) {
    let len = rng.range(*lens.start(), *lens.end());
    let hi = [10u32, 11, 172, 192][rng.below(4usize)] << 24;
    let addr = if rng.chance(25) {
        rng.next_u64() as u32
    } else {
        hi | (rng.next_u64() as u32 & 0x00ff_ffff)
    };
    (addr, len)
}

/// Categories and their prefixes, the addresses as numbers or typed.
type Cats<A> = Vec<(u8, Vec<(A, u8)>)>;

/// `cats` and `allow` with every address converted to `A`.
fn converted<N: Copy, A: From<N>>(
    cats: &[(u8, Vec<(N, u8)>)],
    allow: &[(N, u8)],
) -> (Cats<A>, Vec<(A, u8)>) {
    let one =
        |l: &[(N, u8)]| -> Vec<(A, u8)> { l.iter().map(|&(a, len)| (A::from(a), len)).collect() };
    (cats.iter().map(|(c, l)| (*c, one(l))).collect(), one(allow))
}

/// `cats` as the slices the tables are built from.
fn as_slices<A>(cats: &[(u8, Vec<A>)]) -> Vec<(u8, &[A])> {
    cats.iter().map(|(c, l)| (*c, l.as_slice())).collect()
}

/// The tables and the reference give the IPv4 address `a` the same category.
#[track_caller]
fn assert_same_v4(t: &Tables, reference: &Reference, a: u32) {
    assert_eq!(
        t.lookup(Ipv4Addr::from(a).into()),
        reference.lookup(u128::from(a)),
        "{}",
        Ipv4Addr::from(a)
    );
}

fn check_v4(
    cats: &[(u8, Vec<(u32, u8)>)],
    allow: &[(u32, u8)],
    rng: &mut Rng,
    random: usize,
) -> Tables {
    let (typed, allow_typed) = converted::<_, Ipv4Addr>(cats, allow);
    let t = Tables::build_v4(&as_slices(&typed), &allow_typed).unwrap();

    let (wide, allow_wide) = converted::<_, u128>(cats, allow);
    let reference = Reference::new(&wide, &allow_wide, 32);
    let check = |a: u32| assert_same_v4(&t, &reference, a);
    let mut edges = Vec::new();
    for &(a, l) in cats.iter().flat_map(|(_, l)| l).chain(allow) {
        let first = a & prefix_mask(32, l) as u32;
        let last = first | host_mask(32, l) as u32;
        edges.extend([first, last, first.wrapping_sub(1), last.wrapping_add(1)]);
    }
    for a in edges {
        check(a);
    }
    for _ in 0..random {
        check(random_v4(rng, 32..=32).0);
    }
    t
}

#[test]
fn v4_random_property() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3 {
        let mut cats = Vec::new();
        for cat in [1u8, 2, 3, 7, 254] {
            // Few very short prefixes (each paints much of the table).
            let list: Vec<(u32, u8)> = (0..600)
                .map(|_| {
                    if rng.chance(5) {
                        random_v4(&mut rng, 0..=32)
                    } else {
                        random_v4(&mut rng, 9..=32)
                    }
                })
                .collect();
            cats.push((cat, list));
        }
        // Shared prefixes between categories.
        let shared: Vec<(u32, u8)> = cats[4].1[..50].to_vec();
        cats[0].1.extend(&shared);
        let allow: Vec<(u32, u8)> = (0..150).map(|_| random_v4(&mut rng, 12..=32)).collect();
        let t = check_v4(&cats, &allow, &mut rng, 20_000);
        assert!(!t.units.is_empty());
        assert!(t.prefix_count() > 0);
        assert_eq!(t.memory_bytes(), 2 * 65536 * 4 + t.units.len() * 64);
    }
}

/// Many host addresses and long prefixes packed into few /16s and /24s:
/// every node form (sparse, sparse-leaf, 256 bytes, dense) appears and
/// each answers like the reference.
#[test]
fn v4_hosts_and_every_node_form() {
    let mut rng = Rng::new(99);
    let mut hosts: Vec<(u32, u8)> = Vec::new();
    // Dense /24s: 40 hosts each in 10.0.0..9.x.
    for b in 0..10u32 {
        for _ in 0..40 {
            hosts.push((0x0a00_0000 | (b << 8) | u32::from(rng.byte()), 32));
        }
    }
    // Sparse /24s: one or two hosts in each of 3000 /24s of 11.0/16..11.11/16.
    for i in 0..3000u32 {
        hosts.push((0x0b00_0000 | (i << 8) | u32::from(rng.byte()), 32));
        if i % 3 == 0 {
            hosts.push((0x0b00_0000 | (i << 8) | u32::from(rng.byte()), 31));
        }
    }
    let mixed: Vec<(u32, u8)> = (0..2000).map(|_| random_v4(&mut rng, 17..=32)).collect();
    let cats = vec![(1u8, hosts), (2u8, mixed), (3, vec![(0x0a00_0000, 8)])];
    let t = check_v4(&cats, &[(0x0a00_0500, 24)], &mut rng, 20_000);
    let n = t.nodes;
    assert!(
        n.sparse > 0 && n.sparse_leaf > 0 && n.leaf256 > 0 && n.dense > 0,
        "{n:?}"
    );
    // Exhaustively, the dense /24s.
    let (wide, _) = converted::<_, u128>(&cats, &[]);
    let reference = Reference::new(&wide, &[(0x0a00_0500, 24)], 32);
    for a in 0x0a00_0000u32..0x0a00_0c00 {
        assert_same_v4(&t, &reference, a);
    }
}

#[test]
fn v4_long_prefixes_only() {
    let mut rng = Rng::new(42);
    let cats: Vec<(u8, Vec<(u32, u8)>)> = (1..=4u8)
        .map(|c| {
            let list = (0..800)
                .map(|_| {
                    let (a, l) = random_v4(&mut rng, 25..=32);
                    // Crowd them into few /24s so they nest and overlap.
                    ((a & 0xffff_f0ff) | 0x0a00_0000, l)
                })
                .collect();
            (c, list)
        })
        .collect();
    let allow: Vec<(u32, u8)> = (0..100)
        .map(|_| {
            let (a, l) = random_v4(&mut rng, 20..=32);
            ((a & 0xffff_f0ff) | 0x0a00_0000, l)
        })
        .collect();
    check_v4(&cats, &allow, &mut rng, 5000);
}

#[test]
fn v4_nested_categories() {
    let cats: [(u8, &[(Ipv4Addr, u8)]); 4] = [
        (3, &[v4("10.0.0.0/8"), v4("10.1.1.16/28")]),
        (
            1,
            &[v4("10.1.0.0/16"), v4("10.1.1.17/32"), v4("20.0.0.0/8")],
        ),
        (
            2,
            &[v4("10.1.1.0/24"), v4("20.0.0.0/8"), v4("10.1.1.16/28")],
        ),
        (5, &[v4("0.0.0.0/0")]),
    ];
    let allow = [v4("10.1.1.18/31"), v4("10.2.0.0/16"), v4("10.1.1.16/32")];
    let t = Tables::build_v4(&cats, &allow).unwrap();
    for (a, want) in [
        ("1.1.1.1", 5),
        ("10.9.9.9", 3),
        ("10.1.9.9", 1),
        ("10.1.1.1", 2),
        ("10.1.1.16", CAT_ALLOW),
        ("10.1.1.17", 1),
        ("10.1.1.18", CAT_ALLOW),
        ("10.1.1.19", CAT_ALLOW),
        // The same /28 in categories 2 and 3: the lower id wins.
        ("10.1.1.20", 2),
        ("10.1.1.31", 2),
        ("10.1.1.32", 2),
        ("10.2.3.4", CAT_ALLOW),
        // The same /8 in categories 1 and 2.
        ("20.1.2.3", 1),
        ("255.255.255.255", 5),
    ] {
        assert_eq!(t.lookup(ip4(a).into()), want, "{a}");
    }
    // Two nodes: 10.1/16 (sparse: /24 runs) and 10.1.1/24 (sparse leaf).
    assert_eq!(
        t.nodes,
        NodeCounts {
            sparse: 1,
            sparse_leaf: 1,
            ..NodeCounts::default()
        }
    );
    assert_eq!(t.units.len(), 2);
    assert_eq!(kind(t.root4[0x0a01]), KIND_SPARSE);
    assert_eq!(t.root4[0x0a02], leaf(CAT_ALLOW));
    assert_eq!(t.root4[0x0101], leaf(5));
}

#[test]
fn v4_allow_overrides_longer_and_shorter() {
    let cats: [(u8, &[(Ipv4Addr, u8)]); 1] = [(
        1,
        &[v4("10.0.0.0/8"), v4("192.168.1.5/32"), v4("192.168.2.0/25")],
    )];
    let allow = [
        v4("10.5.0.0/16"),
        v4("192.168.0.0/16"),
        v4("192.168.1.0/24"),
    ];
    let t = Tables::build_v4(&cats, &allow).unwrap();
    assert_eq!(t.lookup(ip4("10.5.1.1").into()), CAT_ALLOW);
    assert_eq!(t.lookup(ip4("10.6.1.1").into()), 1);
    assert_eq!(t.lookup(ip4("192.168.1.5").into()), CAT_ALLOW);
    assert_eq!(t.lookup(ip4("192.168.2.5").into()), CAT_ALLOW);
    assert_eq!(t.lookup(ip4("192.169.0.0").into()), 0);
    // Long prefixes inside the allowlist need no node.
    assert!(t.units.is_empty());
    assert_eq!(t.prefix_count(), 3);
    assert_eq!(t.memory_bytes(), 2 * 65536 * 4);
}

#[test]
fn uniform_nodes_fold_into_their_parent() {
    // Two /25s of one category make the whole /24 one leaf of the /16's
    // node; 256 /24s of one category make the /16 one root entry.
    let halves = [v4("1.1.1.0/25"), v4("1.1.1.128/25")];
    let t = Tables::build_v4(&[(1, &halves)], &[]).unwrap();
    assert_eq!(t.units.len(), 1, "{:?}", t.nodes);
    assert_eq!(t.root4[0x0101], node(KIND_SPARSE_LEAF, 0));
    assert_eq!(t.lookup(ip4("1.1.1.200").into()), 1);
    assert_eq!(t.lookup(ip4("1.1.2.1").into()), 0);
    let all: Vec<(Ipv4Addr, u8)> = (0..256u32)
        .map(|i| (Ipv4Addr::from(0x0202_0000 | (i << 8)), 24))
        .collect();
    let t = Tables::build_v4(&[(1, &all)], &[]).unwrap();
    assert!(t.units.is_empty());
    assert_eq!(t.root4[0x0202], leaf(1));
}

#[test]
fn bad_input_is_an_error() {
    let bad_len = [(Ipv4Addr::new(1, 2, 3, 4), 33)];
    assert_eq!(
        Tables::build_v4(&[(1, &bad_len)], &[])
            .unwrap_err()
            .to_string(),
        "1.2.3.4/33: prefix length longer than the address"
    );
    assert!(Tables::build_v4(&[], &bad_len).is_err());
    for id in [CAT_NONE, CAT_ALLOW] {
        assert_eq!(
            Tables::build_v4(&[(id, &[])], &[]).unwrap_err(),
            TableError::BadCategory { id }
        );
        assert_eq!(
            Tables::build_v6(&[(id, &[])], &[]).unwrap_err(),
            TableError::BadCategory { id }
        );
    }
    let bad6 = [(Ipv6Addr::LOCALHOST, 129)];
    assert!(Tables::build_v6(&[(1, &bad6)], &[]).is_err());
    assert!(Tables::build_v6(&[], &bad6).is_err());
    let empty = Tables::build_v4(&[], &[]).unwrap();
    assert!(empty.units.is_empty());
    assert_eq!(empty.lookup(ip4("1.2.3.4").into()), 0);
    // A hand-made table with a dangling node index does not panic.
    let mut t = Tables::build_v4(&[(1, &[v4("1.2.3.4/32")])], &[]).unwrap();
    assert_eq!(t.lookup(ip4("1.2.3.4").into()), 1);
    t.units.clear();
    assert_eq!(t.lookup(ip4("1.2.3.4").into()), 0);
    assert_eq!(
        TableError::TooManyPrefixes {
            needed: 4_000_001,
            max: 4_000_000
        }
        .to_string(),
        "the lists hold 4000001 prefixes (both families, allowlist included) after merging; the limit is 4000000"
    );
    assert_eq!(
        TableError::TooManyUnits { max: 1 << 25 }.to_string(),
        "the prefix tables need more than 33554432 nodes of 64 bytes (2048 MiB); split or merge the lists"
    );
}

#[test]
fn v6_random_property() {
    let mut rng = Rng::new(7);
    let random6 = |rng: &mut Rng| -> (u128, u8) {
        let len = rng.below(129u8);
        // A few /32s, so prefixes nest.
        let top = [0x2001_0db8u128, 0x2a03_2880, 0x2620_0000][rng.below(3usize)] << 96;
        let low = rng.next_u128() >> 32;
        let a = if rng.below(8u8) == 0 {
            u128::from(rng.next_u64()) << 64
        } else {
            top | low
        };
        (a, len)
    };
    let cats: Vec<(u8, Vec<(u128, u8)>)> = [1u8, 2, 9]
        .iter()
        .map(|&c| (c, (0..300).map(|_| random6(&mut rng)).collect()))
        .collect();
    let allow: Vec<(u128, u8)> = (0..40)
        .map(|_| {
            let (a, l) = random6(&mut rng);
            (a, l.max(20))
        })
        .collect();
    let (typed, allow_typed) = converted::<_, Ipv6Addr>(&cats, &allow);
    let t = Tables::build_v6(&as_slices(&typed), &allow_typed).unwrap();
    let mut addrs = Vec::new();
    for &(a, l) in cats.iter().flat_map(|(_, l)| l).chain(&allow) {
        let first = a & prefix_mask(128, l);
        let last = first | host_mask(128, l);
        addrs.extend([first, last, first.wrapping_sub(1), last.wrapping_add(1)]);
    }
    for _ in 0..3000 {
        addrs.push(random6(&mut rng).0);
    }
    let reference = Reference::new(&cats, &allow, 128);
    for a in addrs {
        assert_eq!(
            t.lookup(Ipv6Addr::from(a).into()),
            reference.lookup(a),
            "{}",
            Ipv6Addr::from(a)
        );
    }
}

#[test]
fn v6_prefixes() {
    let cats: [(u8, &[(Ipv6Addr, u8)]); 2] = [
        (
            2,
            &[
                v6("2001:db8::/32"),
                v6("2001:db8:1::/48"),
                v6("2a03:2880::/32"),
            ],
        ),
        (1, &[v6("2001:db8:1::/48"), v6("2a03:2880:f000::/36")]),
    ];
    let allow = [
        v6("2a03:2880::/32"),
        v6("2001:db8:1:2::/64"),
        v6("2001:db8:1:2::/80"),
    ];
    let t = Tables::build_v6(&cats, &allow).unwrap();
    // 2001:db8::/32, 2001:db8:1::/48 (category 1 wins), the /64 allow
    // (the /80 is inside it), 2a03:2880::/32 allow (its blocking
    // prefixes are inside it).
    assert_eq!(t.v6_prefixes, 4);
    let l = |a: &str| t.lookup(a.parse().unwrap());
    assert_eq!(l("2001:db8:1:2::1"), CAT_ALLOW);
    assert_eq!(l("2001:db8:1:3::1"), 1);
    assert_eq!(l("2001:db8:2::1"), 2);
    assert_eq!(l("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 2);
    assert_eq!(l("2001:db9::"), 0);
    assert_eq!(l("2a03:2880:f000::1"), CAT_ALLOW);
    assert_eq!(l("::1"), 0);
    // A /128 goes 14 levels down.
    let host = [v6("2001:db8::1:2:3:4/128")];
    let t = Tables::build_v6(&[(3, &host)], &[]).unwrap();
    assert_eq!(t.units.len(), 14);
    assert_eq!(t.lookup("2001:db8::1:2:3:4".parse().unwrap()), 3);
    assert_eq!(t.lookup("2001:db8::1:2:3:5".parse().unwrap()), 0);
}
