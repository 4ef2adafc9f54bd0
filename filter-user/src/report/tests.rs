use serde_json::json;

use super::*;
use crate::control::state::CategoryState;

#[test]
fn bytes_and_tables() {
    assert_eq!(human_bytes(9_999), "9999 B");
    assert_eq!(human_bytes(12_345), "12.3 kB");
    assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
    let t = table(
        &["NAME", "N"],
        &[
            vec!["a".into(), "10".into()],
            vec!["bbb".into(), "2".into()],
        ],
        1,
    );
    assert_eq!(t, "NAME   N\na     10\nbbb    2\n");
}

fn snap(mono_ns: u64, seen: u64, rtp: u64) -> StatsSnapshot {
    StatsSnapshot {
        time: 1,
        mono_ns,
        categories: vec![CategoryRow {
            id: 1,
            name: Some("whatsapp".into()),
            stats: CatStats {
                seen_packets: seen,
                dropped_packets: seen,
                seen_bytes: seen * 100,
                dropped_bytes: seen * 100,
                ..CatStats::default()
            },
        }],
        labels: vec![LabelRow {
            id: 4,
            name: "rtp",
            stats: LabelStats {
                packets: rtp,
                ..LabelStats::default()
            },
        }],
        interfaces: vec![InterfaceStats {
            name: "veth0".into(),
            ifindex: Some(7),
            categories: vec![CategoryRow {
                id: 1,
                name: Some("whatsapp".into()),
                stats: CatStats {
                    seen_packets: seen,
                    ..CatStats::default()
                },
            }],
        }],
        global: vec![("packets", seen), ("bytes", seen * 100)],
    }
}

#[test]
fn stats_json_schema_and_rates() {
    let a = snap(1_000_000_000, 10, 4);
    let b = snap(3_000_000_000, 30, 8);
    let j = serde_json::to_value(b.to_json(None)).unwrap();
    assert_eq!(j["categories"][0]["name"], "whatsapp");
    assert_eq!(j["categories"][0]["seen"]["packets"], 30);
    assert_eq!(j["categories"][0]["dropped"]["bytes"], 3000);
    assert_eq!(j["labels"][0]["name"], "rtp");
    assert_eq!(j["global"]["packets"], 30);
    assert_eq!(j["interfaces"][0]["name"], "veth0");
    assert_eq!(j["interfaces"][0]["ifindex"], 7);
    assert_eq!(j["interfaces"][0]["categories"][0]["name"], "whatsapp");
    assert_eq!(j["interfaces"][0]["categories"][0]["seen"]["packets"], 30);
    assert!(j.get("interval_secs").is_none());
    let j = serde_json::to_value(b.to_json(Some(&a))).unwrap();
    assert_eq!(j["interval_secs"], 2.0);
    assert_eq!(j["categories"][0]["rates"]["seen_pps"], 10.0);
    assert_eq!(j["categories"][0]["rates"]["seen_bps"], 8000.0);
    assert_eq!(j["labels"][0]["rates"]["pps"], 2.0);
    let t = b.to_table(Some(&a));
    assert!(t.contains("SEEN/S"), "{t}");
    assert!(t.contains("INTERFACE  CATEGORY"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("veth0") && l.contains("whatsapp")),
        "{t}"
    );
    assert!(t.lines().nth(1).unwrap().contains("10.0"), "{t}");
    assert!(t.ends_with("all frames: packets 30, bytes 3000 B\n"), "{t}");
}

/// A UDP flow between 192.0.2.1:5000 (as IPv4-mapped) and [2001:db8::2]:3478.
fn udp_key() -> FlowKey {
    let mut k = FlowKey::default();
    k.addr_a[10..12].copy_from_slice(&[0xff, 0xff]);
    k.addr_a[12..].copy_from_slice(&[192, 0, 2, 1]);
    k.addr_b = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
    k.port_a = 5000;
    k.port_b = 3478;
    k.proto = 17;
    k
}

/// A state file that names category 1 `whatsapp`.
fn whatsapp_state() -> StateFile {
    let mut st = StateFile::default();
    st.categories.push(crate::control::state::CategoryState {
        id: 1,
        name: "whatsapp".into(),
        ..Default::default()
    });
    st
}

#[test]
fn flow_rows() {
    let k = udp_key();
    let v = FlowSlot {
        first_seen: 1,
        last_seen: 4,
        packets: 7,
        flags: FLOW_CALL | FLOW_FIRST_FROM_B,
        label: 4,
        category: 1,
        fate: FATE_STOPPED,
        ..FlowSlot::default()
    };
    let st = whatsapp_state();
    let r = flow_row(&k, &v, 5 << 30, Some(&st));
    assert_eq!(r.src.to_string(), "[2001:db8::2]:3478");
    assert_eq!(r.dst.to_string(), "192.0.2.1:5000");
    let tick = 1.073_741_824;
    assert_eq!((r.age_secs, r.idle_secs), (4.0 * tick, tick));
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["category"], "whatsapp");
    assert_eq!(j["label"], "rtp");
    assert_eq!(j["call"], true);
    assert_eq!(j["listed"], false);
    assert_eq!(j["fate"], "stopped");
    assert_eq!(
        (j["fragmented"].clone(), j["tcp_fallback"].clone()),
        (json!(false), json!(false))
    );
    assert!(flows_table(&[r]).ends_with("1 flows\n"));
}

// The exact `--json` text of each report, pinned byte for byte in
// `golden/`: each file is what the CLI prints (indented for `status`,
// `stats` and `flows`; one line for `stats --watch`), newline included.

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

fn one_line(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap() + "\n"
}

/// [`snap`] with an unnamed category and an interface without an index.
fn snap_with_unnamed(mono_ns: u64, seen: u64, rtp: u64) -> StatsSnapshot {
    let mut s = snap(mono_ns, seen, rtp);
    s.categories.push(CategoryRow {
        id: 9,
        name: None,
        stats: CatStats {
            seen_packets: 5,
            seen_bytes: 500,
            monitored_packets: 2,
            monitored_bytes: 200,
            passed_packets: 3,
            passed_bytes: 300,
            ..CatStats::default()
        },
    });
    s.interfaces.push(InterfaceStats {
        name: OTHER_INTERFACE.into(),
        ifindex: None,
        categories: Vec::new(),
    });
    s
}

#[test]
fn stats_json_text_is_pinned() {
    let a = snap_with_unnamed(1_000_000_000, 10, 4);
    let b = snap_with_unnamed(4_000_000_000, 30, 8);
    assert_eq!(pretty(&b.to_json(None)), include_str!("golden/stats.json"));
    assert_eq!(
        one_line(&b.to_json(Some(&a))),
        include_str!("golden/stats-watch.jsonl")
    );
}

/// Rows as `flows` shows them: a named call over IPv6 and IPv4, a TCP
/// fallback flow with no names, and a protocol with no name.
fn pinned_flow_rows() -> Vec<FlowRow> {
    let mut k = udp_key();
    let v = FlowSlot {
        first_seen: 1,
        last_seen: 4,
        packets: 7,
        bytes: 1400,
        dropped: 3,
        flags: FLOW_CALL | FLOW_FIRST_FROM_B | FLOW_LISTED,
        flags2: filter_common::FLOW2_FRAGMENTED,
        label: 4,
        category: 1,
        fate: FATE_STOPPED,
        ..FlowSlot::default()
    };
    let st = whatsapp_state();
    let mut rows = vec![flow_row(&k, &v, 5 << 30, Some(&st))];
    k.proto = 6;
    let v = FlowSlot {
        first_seen: 5,
        last_seen: 5,
        packets: 2,
        bytes: 120,
        flags2: filter_common::FLOW2_TCP_FALLBACK,
        category: 3,
        fate: FATE_SPARED,
        ..FlowSlot::default()
    };
    rows.push(flow_row(&k, &v, 5 << 30, Some(&st)));
    k.proto = 132;
    rows.push(flow_row(&k, &FlowSlot::default(), 0, None));
    rows
}

#[test]
fn flows_json_text_is_pinned() {
    assert_eq!(
        pretty(&pinned_flow_rows()),
        include_str!("golden/flows.json")
    );
    assert_eq!(pretty(&Vec::<FlowRow>::new()), "[]\n");
}

/// A category as the state file records it (policy and source as text).
fn category(
    id: u8,
    name: &str,
    (v4, v6): (usize, usize),
    policy: &str,
    source: &str,
) -> CategoryState {
    CategoryState {
        id,
        name: name.into(),
        v4_prefixes: v4,
        v6_prefixes: v6,
        policy: policy.parse().unwrap(),
        policy_source: source.parse().unwrap(),
    }
}

/// A status with every part present (one interface attached, one not),
/// or with nothing but the pin directory.
fn pinned_status(full: bool) -> Status {
    use crate::control::state::ReloadState;
    use crate::control::subscribers::SubscriberStatus;
    let row = |name: &str, attached: bool| InterfaceRow {
        name: name.into(),
        mode: if attached { "driver" } else { "skb" }.into(),
        link_id: Some(11),
        program_id: attached.then_some(7),
        netns: (!attached).then(|| "ns1".to_owned()),
        attached,
        state: if attached { "attached" } else { "missing" },
        ifindex: attached.then_some(3),
        problem: (!attached).then(|| "no interface of that name".to_owned()),
    };
    let state = StateFile {
        lists_dir: "/etc/flowfilter/lists".into(),
        categories: vec![
            category(1, "whatsapp", (12, 3), "flows=30%", "config"),
            category(2, "telegram", (0, 0), "drop", "default"),
        ],
        allow: (4, 1),
        last_reload: Some(ReloadState {
            time: 1_767_225_600,
            ok: false,
            error: Some("whatsapp.txt line 3: not a prefix".into()),
            input_error: true,
            by: "sighup".parse().unwrap(),
            generation: 1,
        }),
        ..StateFile::default()
    };
    Status {
        pin_dir: "/sys/fs/bpf/flowfilter".into(),
        state_file: full.then(|| "/run/flowfilter/flowfilter.json".to_owned()),
        daemon_pid: full.then_some(4242),
        program: full.then(|| (7, 0x0123_4567_89ab_cdef, "flowfilter".to_owned())),
        interfaces: if full {
            vec![row("eth0", true), row("eth1", false)]
        } else {
            Vec::new()
        },
        generation: u32::from(full),
        flows: if full { (3, 65_536) } else { (0, 65_536) },
        state: full.then_some(state),
        subscribers: SubscriberStatus {
            rule: if full { "prefixes" } else { "none" },
            interfaces: if full {
                vec!["eth1".into()]
            } else {
                Vec::new()
            },
            prefixes: if full {
                let mut p: Vec<crate::lists::Cidr> = crate::dataplane::loader::DEFAULT_SUBSCRIBERS
                    .iter()
                    .map(|p| p.parse().unwrap())
                    .collect();
                p.sort();
                p
            } else {
                Vec::new()
            },
            v4_len: 32,
            v6_len: 64,
            rotation_secs: 3600,
        },
    }
}

#[test]
fn status_json_text_is_pinned() {
    assert_eq!(
        pretty(&pinned_status(true).to_json()),
        include_str!("golden/status-full.json")
    );
    assert_eq!(
        pretty(&pinned_status(false).to_json()),
        include_str!("golden/status-empty.json")
    );
}

#[test]
fn nothing_pinned_json_text_is_pinned() {
    let dir = std::env::temp_dir().join(format!("ff-serde-no-pins-{}", std::process::id()));
    let layout = PinLayout::new(&dir);
    let (out, filtering) = crate::cli::status(&layout, true).unwrap();
    assert_eq!(filtering, Filtering::None);
    assert_eq!(
        out,
        format!(
            "{{\n  \"pin_dir\": \"{}\",\n  \"state_file\": null,\n  \"filtering\": \"none\"\n}}\n",
            dir.display()
        )
    );
    assert_eq!(pretty(&nothing_pinned(&layout).1), out);
}

/// The exact `stats` tables, with and without the rate columns.
#[test]
fn stats_table_text_is_pinned() {
    let a = snap_with_unnamed(1_000_000_000, 10, 4);
    let b = snap_with_unnamed(4_000_000_000, 30, 8);
    assert_eq!(b.to_table(None), include_str!("golden/stats.txt"));
    assert_eq!(b.to_table(Some(&a)), include_str!("golden/stats-watch.txt"));
}
