use super::*;

#[test]
fn attach_modes_parse_and_show() {
    for (s, m) in [
        ("auto", AttachMode::Auto),
        ("driver", AttachMode::Driver),
        ("native", AttachMode::Driver),
        ("skb", AttachMode::Skb),
        ("generic", AttachMode::Skb),
    ] {
        assert_eq!(s.parse::<AttachMode>().unwrap(), m);
    }
    assert_eq!(AttachMode::Skb.to_string(), "skb");
    assert_eq!(
        "hw".parse::<AttachMode>().unwrap_err(),
        "`hw` is not an attach mode (auto, driver or skb)"
    );
}

#[test]
fn error_chain_joins_sources() {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);
    let e = Outer(std::io::Error::other("inner"));
    assert_eq!(error_chain(&e), "outer: inner");
}
