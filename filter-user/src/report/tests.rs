use super::*;

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
    let j = b.to_json(None);
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
    let j = b.to_json(Some(&a));
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

#[test]
fn flow_rows() {
    let mut k = FlowKey::default();
    k.addr_a[10..12].copy_from_slice(&[0xff, 0xff]);
    k.addr_a[12..].copy_from_slice(&[192, 0, 2, 1]);
    k.addr_b = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
    k.port_a = 5000;
    k.port_b = 3478;
    k.proto = 17;
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
    let mut st = StateFile::default();
    st.categories.push(crate::control::state::CategoryState {
        id: 1,
        name: "whatsapp".into(),
        ..Default::default()
    });
    let r = flow_row(&k, &v, 5 << 30, Some(&st));
    assert_eq!(r.src.to_string(), "[2001:db8::2]:3478");
    assert_eq!(r.dst.to_string(), "192.0.2.1:5000");
    let tick = 1.073_741_824;
    assert_eq!((r.age_secs, r.idle_secs), (4.0 * tick, tick));
    let j = r.to_json();
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
