//! `flowfilter run --metrics` under abuse: the metrics server has a thread,
//! a connection cap and timeouts of its own, so idle or slow clients
//! neither keep a scrape from answering nor hold up a SIGHUP reload; a
//! snapshot serves scrapes for a second; request heads are bounded.
//!
//! Each test runs the daemon as `tests/tests/daemon.rs` does: its own pair
//! of network namespaces joined by a veth pair, `flowfilter run --netns A
//! --iface VA` with a unique pin directory, the metrics on 127.0.0.1 of the
//! test's namespace (loopback only), all removed by an RAII guard.
//!
//! The binary: `FLOWFILTER_BIN`, else `$CARGO_TARGET_DIR/debug/flowfilter`,
//! else `<workspace>/target/debug/flowfilter`.
//!
//! The daemon's limits (filter-user/src/metrics.rs, `Limits::default`): 16
//! connections, 5 s for a request head, 15 s for a connection, 1 s of cache.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use flowfilter_tests::kit::{Gateway, Setup, free_port, send};
use flowfilter_tests::skip_unless_root;

/// Listed in `whatsapp.txt`.
const LISTED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The daemon's connection cap, head timeout and cache window.
const CAP: usize = 16;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_TTL: Duration = Duration::from_secs(1);

/// One test's gateway and the address its daemon serves metrics on; all
/// removed on drop.
struct Env {
    gw: Gateway,
    metrics: SocketAddr,
}

flowfilter_tests::deref_gateway!(Env);

impl Env {
    fn new() -> Env {
        Env {
            gw: Gateway::new(&Setup::new("ffm", 'm')),
            metrics: free_port(),
        }
    }

    /// Start the daemon (whatsapp dropped) and wait until it runs and its
    /// metrics answer.
    fn start(&mut self) {
        let metrics = self.metrics.to_string();
        self.gw
            .start(&["--policy", "whatsapp=drop,scope=udp", "--metrics", &metrics]);
        let r = self.get("/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}\n{}", self.log());
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.metrics)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.metrics));
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s
    }

    /// Send `request` and read the answer until the server closes.
    fn ask(&self, request: &[u8]) -> String {
        let mut s = self.connect();
        s.write_all(request).expect("request");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("response");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn get(&self, path: &str) -> String {
        self.ask(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    /// The body of `GET /metrics`, which must answer 200.
    fn scrape(&self) -> String {
        let r = self.get("/metrics");
        let (head, body) = r.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        body.to_owned()
    }

    /// Dropped whatsapp packets, as `stats --json` reads them from the maps
    /// (no cache).
    fn dropped(&self) -> u64 {
        let s = self.ff(&["stats", "--json"]).ok("stats").json();
        s["categories"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "whatsapp"))
            .and_then(|c| c["dropped"]["packets"].as_u64())
            .unwrap_or_else(|| panic!("no whatsapp counters in {s:#}"))
    }

    /// Send `n` packets from the listed address (the filter drops them).
    fn send_listed(&self, n: u32) {
        let tx = self.sender(LISTED);
        for seq in 0..n {
            send(&tx, seq);
        }
    }
}

/// One sample's value from Prometheus text.
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        })
}

/// Whether the server has closed `s` (EOF or reset), without waiting.
fn closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    let r = match (&mut &*s).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => panic!("an idle connection got an answer"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    s.set_nonblocking(false).expect("blocking");
    r
}

/// More idle connections than the cap (sending nothing): a scrape still
/// answers at once, and a SIGHUP reload completes while the newest of them
/// still hang open; its result shows in the next scrape (a reload
/// invalidates the cached snapshot).
#[test]
fn idle_connections_block_neither_a_scrape_nor_a_reload() {
    skip_unless_root!("idle_connections_block_neither_a_scrape_nor_a_reload");
    let mut env = Env::new();
    env.start();
    let mut idle: Vec<TcpStream> = (0..3 * CAP).map(|_| env.connect()).collect();
    let started = Instant::now();
    let body = env.scrape();
    assert!(
        started.elapsed() < HEAD_TIMEOUT,
        "the scrape waited for idle connections to time out ({:?})",
        started.elapsed()
    );
    assert_eq!(
        sample(
            &body,
            "flowfilter_list_prefixes",
            &[("category", "whatsapp"), ("family", "ipv4")]
        ),
        Some(1.0)
    );
    let reloads = sample(&body, "flowfilter_reloads_total", &[("result", "ok")]).expect("reloads");

    // Fill every slot with idle connections again, then reload.
    idle.extend((0..CAP).map(|_| env.connect()));
    let hung = Instant::now();
    env.write_list("whatsapp", "198.51.100.0/24\n203.0.113.0/24\n");
    let r = env.ff(&["reload"]).ok("reload");
    assert!(r.stdout.contains("reloaded by the daemon"), "{}", r.stdout);
    let newest = idle.last().expect("idle connections");
    assert!(
        !closed(newest),
        "the newest idle connection was closed before the reload returned ({:?} after it opened): the reload waited",
        hung.elapsed()
    );
    assert!(
        hung.elapsed() < HEAD_TIMEOUT,
        "reload took {:?}",
        hung.elapsed()
    );
    let body = env.scrape();
    assert_eq!(
        sample(
            &body,
            "flowfilter_list_prefixes",
            &[("category", "whatsapp"), ("family", "ipv4")]
        ),
        Some(2.0),
        "the reload shows at once"
    );
    assert_eq!(
        sample(&body, "flowfilter_reloads_total", &[("result", "ok")]),
        Some(reloads + 1.0)
    );
    // The idle connections are cut at the head timeout.
    std::thread::sleep(HEAD_TIMEOUT + Duration::from_secs(2));
    let still_open = idle.iter().filter(|s| !closed(s)).count();
    assert_eq!(still_open, 0, "idle connections outlived the head timeout");
    assert!(
        env.daemon
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none()),
        "the daemon died:\n{}",
        env.log()
    );
}

/// A client that sends its request a byte a second is cut at the head
/// timeout, without an answer, and scrapes go on meanwhile.
#[test]
fn a_byte_a_second_is_cut_at_the_head_timeout() {
    skip_unless_root!("a_byte_a_second_is_cut_at_the_head_timeout");
    let mut env = Env::new();
    env.start();
    let mut s = env.connect();
    let request = b"GET /metrics HTTP/1.1\r\nHost: test\r\nX-Slow: 0123456789\r\n\r\n";
    let started = Instant::now();
    let mut sent = 0;
    // Byte `sent` next, until the daemon cuts the connection.
    while let Some(b) = request.get(sent) {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        // Someone else is served meanwhile.
        if sent == 2 {
            env.scrape();
        }
        std::thread::sleep(Duration::from_secs(1));
        if closed(&s) {
            break;
        }
    }
    let took = started.elapsed();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        sent < request.len(),
        "the whole request went through ({sent} bytes in {took:?})"
    );
    assert!(
        out.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(took >= HEAD_TIMEOUT, "cut after {took:?}");
    assert!(took < 2 * HEAD_TIMEOUT, "cut only after {took:?}");
}

/// Two scrapes inside the cache window give the same text, although the
/// counters changed between them; a scrape after the window shows the
/// change.
#[test]
fn scrapes_share_a_snapshot_for_a_second() {
    skip_unless_root!("scrapes_share_a_snapshot_for_a_second");
    let mut env = Env::new();
    env.start();
    let dropped = [
        ("interface", env.va.as_str()),
        ("category", "whatsapp"),
        ("verdict", "dropped"),
    ];
    let mut checked = false;
    // A slow machine may not fit a change between two scrapes into the
    // window: a few tries, and one must fit.
    for _ in 0..3 {
        std::thread::sleep(CACHE_TTL);
        let before = env.dropped();
        let at = Instant::now();
        let first = env.scrape();
        env.send_listed(5);
        let deadline = Instant::now() + Duration::from_secs(2);
        while env.dropped() < before + 5 {
            assert!(Instant::now() < deadline, "the packets were not counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        let second = env.scrape();
        if at.elapsed() >= CACHE_TTL * 9 / 10 {
            continue;
        }
        assert_eq!(first, second, "a scrape inside the window read anew");
        std::thread::sleep(CACHE_TTL);
        let third = env.scrape();
        let was = sample(&first, "flowfilter_category_packets_total", &dropped).expect("sample");
        let now = sample(&third, "flowfilter_category_packets_total", &dropped).expect("sample");
        assert!(
            (now - was - 5.0).abs() < f64::EPSILON,
            "after the window: {was} -> {now}"
        );
        checked = true;
        break;
    }
    assert!(checked, "no two scrapes fit in the cache window");
}

/// Heads too large get 431, broken ones 400; unknown paths 404; methods
/// other than GET and HEAD 405; HEAD has no body. The lists' ages show.
#[test]
fn requests_are_bounded_and_list_ages_show() {
    skip_unless_root!("requests_are_bounded_and_list_ages_show");
    let mut env = Env::new();
    let day_ago = SystemTime::now() - Duration::from_hours(24);
    env.write_list(
        "telegram",
        &format!(
            "# telegram: written by `flowfilter list update` from /s.toml\n# at {}: 1 entries (1 IPv4, 0 IPv6) from 1 sources.\n203.0.113.0/24\n",
            filter_user::lists::update::utc(day_ago)
        ),
    );
    env.start();
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: test\r\n\r\n", "m".repeat(9000));
    let r = env.ask(long_line.as_bytes());
    assert!(
        r.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{}",
        &r[..r.len().min(300)]
    );
    let long_header = format!(
        "GET /metrics HTTP/1.1\r\nHost: test\r\nCookie: {}\r\n\r\n",
        "c".repeat(9000)
    );
    assert!(env.ask(long_header.as_bytes()).starts_with("HTTP/1.1 431 "));
    assert!(
        env.ask(b"NOT HTTP AT ALL\r\n\r\n")
            .starts_with("HTTP/1.1 400 ")
    );
    assert!(env.get("/nope").starts_with("HTTP/1.1 404 "));
    assert!(env.get("/metrics/../x").starts_with("HTTP/1.1 404 "));
    for method in ["POST", "PUT", "DELETE", "TRACE"] {
        let r = env.ask(
            format!("{method} /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 405 "), "{method}: {r}");
        assert!(r.to_ascii_lowercase().contains("allow: get, head"), "{r}");
    }
    let head = env.ask(b"HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    let (h, body) = head.split_once("\r\n\r\n").expect("HTTP response");
    assert!(h.starts_with("HTTP/1.1 200 OK"), "{h}");
    assert!(body.is_empty(), "HEAD with a body: {body}");

    let body = env.scrape();
    let age = |cat: &str| {
        sample(&body, "flowfilter_list_age_seconds", &[("category", cat)])
            .unwrap_or_else(|| panic!("no age of {cat} in\n{body}"))
    };
    // From the updater's header.
    let tg = age("telegram");
    assert!((86_400.0..86_400.0 + 300.0).contains(&tg), "telegram: {tg}");
    // No header: from the file's modification time (written just now).
    let wa = age("whatsapp");
    assert!((0.0..300.0).contains(&wa), "whatsapp: {wa}");
    assert!(
        sample(
            &body,
            "flowfilter_list_age_seconds",
            &[("category", "allow")]
        )
        .is_none(),
        "no allow.txt, no age"
    );
}
