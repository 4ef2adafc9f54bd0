use super::*;

fn err(text: &str) -> String {
    Config::parse("f.toml", text).unwrap_err().to_string()
}

/// Each `(text, error)`: parsing `text` fails with exactly `error`.
#[track_caller]
fn assert_errors(cases: &[(&str, &str)]) {
    for &(text, want) in cases {
        assert_eq!(err(text), want, "{text:?}");
    }
}

/// Parsing `text` fails with an error that starts with `prefix`.
#[track_caller]
fn assert_error_starts(text: &str, prefix: &str) {
    let e = err(text);
    assert!(e.starts_with(prefix), "{e}");
}

#[test]
fn defaults() {
    let c = Config::parse("f.toml", "").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.pin_dir, Path::new("/sys/fs/bpf/flowfilter"));
    assert_eq!(c.lists, Path::new("/etc/flowfilter/lists"));
    assert_eq!(c.mode.0, AttachMode::Auto);
    assert!(!c.normalize && !c.detach_on_exit);
    assert_eq!(c.v4_chunks_per_gen, None);
    assert!(c.metrics.is_none() && c.netns.is_none() && c.interfaces.is_empty());
}

#[test]
fn every_field() {
    let c = Config::parse(
        "f.toml",
        r#"
interfaces = ["eth0", "eth1"]
mode = "skb"
netns = "gw"
lists = "/srv/lists"
normalize = true
pin_dir = "/sys/fs/bpf/ff2"
metrics = "127.0.0.1:9477"
detach_on_exit = true
v4_chunks_per_gen = 1024

[policy]
whatsapp = "monitor"
telegram = "flows=30%,scope=udp"
"#,
    )
    .unwrap();
    assert_eq!(c.interfaces, ["eth0", "eth1"]);
    assert_eq!(c.mode.0, AttachMode::Skb);
    assert_eq!(c.netns.as_deref(), Some("gw"));
    assert_eq!(c.lists, Path::new("/srv/lists"));
    assert!(c.normalize && c.detach_on_exit);
    assert_eq!(
        c.metrics.as_ref().unwrap().0,
        "127.0.0.1:9477".parse().unwrap()
    );
    assert_eq!(c.v4_chunks_per_gen, Some(1024), "accepted, ignored");
    let p = &c.policy;
    assert_eq!(p["whatsapp"].to_string(), "monitor");
    assert_eq!(p["telegram"].to_string(), "flows=30%,scope=udp");
}

#[test]
fn errors_name_file_line_and_field() {
    assert_errors(&[
        (
            "interfaces = [\"eth0\"]\nmode = \"fast\"\n",
            "f.toml:2: mode: `fast` is not an attach mode (auto, driver or skb)",
        ),
        (
            "[policy]\nwhatsapp = \"block\"\n",
            "f.toml:2: policy.whatsapp: bad policy `block`: unknown action `block` (expected drop, monitor, off, flows=P%, loss=P%, optionally followed by ,scope=media or ,scope=udp)",
        ),
        (
            "metrics = \"localhost\"\n",
            "f.toml:1: metrics: invalid socket address syntax",
        ),
        (
            "normalize = \"yes\"\n",
            "f.toml:1: normalize: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "\n\nv4_chunks_per_gen = -1\n",
            "f.toml:3: v4_chunks_per_gen: invalid value: integer `-1`, expected u32",
        ),
    ]);
    assert_error_starts(
        "iface = \"eth0\"\n",
        "f.toml:1: iface: unknown field `iface`, expected one of",
    );
    assert_error_starts("mode = \n", "f.toml:1: ");
}

#[test]
fn validation_errors_name_the_field() {
    assert_errors(&[
        (
            "interfaces = [\"eth0\", \"a/b\"]\n",
            "f.toml:1: interfaces[1]: `a/b` is not an interface name (1 to 15 characters, no `/` or spaces)",
        ),
        (
            "pin_dir = \"relative\"\n",
            "f.toml:1: pin_dir: `relative` is not an absolute path",
        ),
        (
            "[policy]\n\"Bad Name\" = \"drop\"\n",
            "f.toml:2: policy.Bad Name: `Bad Name` is not a category name (a-z, 0-9, _ and -, at most 32 characters)",
        ),
    ]);
    assert_eq!(
        err("[policy]\nallow = \"drop\"\n"),
        "f.toml:2: policy.allow: the allowlist has no policy: its addresses are never touched"
    );
}

#[test]
fn flags_override_the_file() {
    let c = Config::parse(
        "f.toml",
        "interfaces = [\"eth0\"]\nmode = \"driver\"\n[policy]\nwhatsapp = \"monitor\"\ntelegram = \"off\"\n",
    )
    .unwrap();
    let flags = RunFlags {
        interfaces: vec!["eth9".into()],
        mode: Some(AttachMode::Skb),
        normalize: true,
        metrics: Some("127.0.0.1:1".parse().unwrap()),
        policies: vec!["whatsapp=drop".parse().unwrap()],
        ..RunFlags::default()
    };
    let m = c.merge(&flags);
    assert_eq!(m.interfaces, ["eth9"]);
    assert_eq!(m.mode.0, AttachMode::Skb);
    assert!(m.normalize);
    assert_eq!(m.policy["whatsapp"].to_string(), "drop");
    assert_eq!(m.policy["telegram"].to_string(), "off");
    assert_eq!(m.metrics.unwrap().0.port(), 1);
    // No flags: the file as it is.
    let c = Config::parse("f.toml", "interfaces = [\"eth0\"]\n").unwrap();
    assert_eq!(c.clone().merge(&RunFlags::default()), c);
}

/// `flowfilter run ARGS`'s flags, parsed as the binary parses them.
fn run_flags(args: &[&str]) -> RunFlags {
    #[derive(clap::Parser)]
    struct Run {
        #[command(flatten)]
        flags: RunFlags,
    }
    let argv = std::iter::once("run").chain(args.iter().copied());
    <Run as clap::Parser>::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .flags
}

#[test]
fn the_command_line_is_the_overlay() {
    let file = Config::parse(
        "f.toml",
        "interfaces = [\"eth0\"]\nnetns = \"a\"\n[policy]\nwhatsapp = \"monitor\"\n[subscribers]\ninside = [\"eth0\"]\n",
    )
    .unwrap();
    assert_eq!(run_flags(&[]), RunFlags::default());
    assert_eq!(file.clone().merge(&run_flags(&[])), file);
    let m = file.merge(&run_flags(&[
        "--iface",
        "eth1",
        "--iface",
        "eth2",
        "--mode",
        "skb",
        "--netns",
        "b",
        "--lists",
        "/srv/l",
        "--policy",
        "whatsapp=flows=30%",
        "--policy",
        "zoom=off",
        "--normalize",
        "--metrics",
        "127.0.0.1:9",
        "--detach-on-exit",
        "--subscribers",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "--seed",
        "3",
    ]));
    assert_eq!(m.interfaces, ["eth1", "eth2"]);
    assert_eq!(m.mode.0, AttachMode::Skb);
    assert_eq!(m.netns.as_deref(), Some("b"));
    assert_eq!(m.lists, Path::new("/srv/l"));
    assert!(m.normalize && m.detach_on_exit);
    assert_eq!(m.metrics.as_ref().unwrap().0.port(), 9);
    assert_eq!(m.policy["whatsapp"].to_string(), "flows=30%");
    assert_eq!(m.policy["zoom"].to_string(), "off");
    assert!(!m.subscribers.rule().by_interface);
    assert_eq!(m.subscribers.rule().prefixes.len(), 2);
    assert_eq!(m.subscribers.seed, Some(3));
    assert!(run_flags(&["--replace"]).replace);
}

#[test]
fn subscribers_section() {
    let c = Config::parse(
        "f.toml",
        "[subscribers]\nprefixes = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nv6_len = 56\nseed = 42\nrotation_secs = 0\n",
    )
    .unwrap();
    let r = c.subscribers.rule();
    assert!(!r.by_interface);
    assert_eq!(r.prefixes.len(), 2);
    assert_eq!((r.v4_len, r.v6_len), (32, 56));
    assert_eq!(c.subscribers.seed, Some(42));
    assert_eq!(c.subscribers.rotation(), 0);
    let c = Config::parse(
        "f.toml",
        "interfaces = [\"eth0\", \"eth1\"]\n[subscribers]\ninside = [\"eth1\"]\n",
    )
    .unwrap();
    assert!(c.subscribers.rule().by_interface);
    assert!(c.subscribers.check_inside(&c.interfaces).is_ok());
    // Flags override the section.
    let m = c.merge(&RunFlags {
        subscribers: SubscriberFlags {
            prefixes: vec!["192.0.2.0/24".parse().unwrap()],
            seed: Some(5),
            ..SubscriberFlags::default()
        },
        ..RunFlags::default()
    });
    assert!(!m.subscribers.rule().by_interface);
    assert_eq!(m.subscribers.seed, Some(5));
}

#[test]
fn subscribers_errors_name_file_line_and_field() {
    assert_errors(&[
        (
            "[subscribers]\nprefixes = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n",
            "f.toml:2: subscribers.prefixes[1]: `10.0.0.1/8` has bits set beyond /8 (use 10.0.0.0/8)",
        ),
        (
            "[subscribers]\ninside = [\"eth1\"]\nprefixes = [\"10.0.0.0/8\"]\n",
            "f.toml:3: subscribers.prefixes: give `inside` (interfaces facing subscribers) or `prefixes`, not both",
        ),
        (
            "[subscribers]\nprefixes = []\n",
            "f.toml:2: subscribers.prefixes: no prefix: name at least one, or leave the key out for the default (private and shared address space)",
        ),
        (
            "[subscribers]\n\nv6_len = 0\n",
            "f.toml:3: subscribers.v6_len: 0 is not an IPv6 prefix length of a subscriber (1 to 128)",
        ),
        (
            "[subscribers]\nv4_len = 33\n",
            "f.toml:2: subscribers.v4_len: 33 is not an IPv4 prefix length of a subscriber (1 to 32)",
        ),
        (
            "[subscribers]\ninside = [\"a b\"]\n",
            "f.toml:2: subscribers.inside[0]: `a b` is not an interface name (1 to 15 characters, no `/` or spaces)",
        ),
        (
            "[subscribers]\nseed = -1\n",
            "f.toml:2: subscribers.seed: invalid value: integer `-1`, expected u64",
        ),
    ]);
    assert_error_starts(
        "[subscribers]\nrule = \"x\"\n",
        "f.toml:2: subscribers.rule: unknown field `rule`",
    );
}

#[test]
fn the_shipped_example_parses() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/flowfilter.toml"
    ));
    let c = Config::parse("dist/flowfilter.toml", text).unwrap();
    assert!(!c.interfaces.is_empty());
}
