use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicU64;

use super::*;

#[test]
fn families_encode_as_prometheus_text() {
    let mut f = Family::counter("flowfilter_category_packets", "help");
    f.add(
        vec![
            ("category", "whatsapp".into()),
            ("verdict", "dropped".into()),
        ],
        20u64,
    );
    let mut g = Family::gauge("flowfilter_flows", "Tracked flows");
    g.add(Vec::new(), 3u64);
    let mut a = Family::gauge("flowfilter_list_age_seconds", "age");
    a.add(vec![("category", "telegram".into())], 86_400.0);
    let empty = Family::gauge("flowfilter_empty", "none");
    let text = encode(vec![f, g, a, empty]).unwrap();
    assert!(
        text.contains(
            "flowfilter_category_packets_total{category=\"whatsapp\",verdict=\"dropped\"} 20\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE flowfilter_flows gauge\nflowfilter_flows 3\n"),
        "{text}"
    );
    assert!(
        text.contains("flowfilter_list_age_seconds{category=\"telegram\"} 86400.0\n"),
        "{text}"
    );
    assert!(!text.contains("flowfilter_empty"), "{text}");
}

#[test]
fn list_files_are_dated_by_header_then_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let with_header = dir.path().join("a.txt");
    std::fs::write(
        &with_header,
        "# a: written by `flowfilter list update` from /s.toml\n# at 2026-01-02T03:04:05Z: 1 entries (1 IPv4, 0 IPv6) from 1 sources.\n10.0.0.0/8\n",
    )
    .unwrap();
    let plain = dir.path().join("b.txt");
    std::fs::write(&plain, "10.0.0.0/8\n").unwrap();
    let at = crate::lists::update::parse_utc("2026-01-02T03:04:05Z").unwrap();
    assert_eq!(list_written(&with_header), Some(at));
    let mtime = std::fs::metadata(&plain).unwrap().modified().unwrap();
    assert_eq!(list_written(&plain), Some(mtime));
    assert_eq!(list_written(&dir.path().join("missing.txt")), None);
    dir.close().unwrap();
}

#[test]
fn room_is_made_from_the_oldest_waiting_connection() {
    let conn = |waiting: bool| Conn {
        waiting: Arc::new(AtomicBool::new(waiting)),
        close: Arc::new(Notify::new()),
    };
    let mut open: BTreeMap<u64, Conn> = [
        (1, conn(false)),
        (2, conn(true)),
        (3, conn(true)),
        (4, conn(false)),
    ]
    .into_iter()
    .collect();
    assert!(make_room(&mut open, 5), "below the cap: nothing closed");
    assert_eq!(open.len(), 4);
    assert!(make_room(&mut open, 4));
    assert_eq!(open.keys().copied().collect::<Vec<_>>(), [1, 3, 4]);
    assert!(make_room(&mut open, 3));
    assert_eq!(open.keys().copied().collect::<Vec<_>>(), [1, 4]);
    assert!(
        !make_room(&mut open, 2),
        "every connection is being answered"
    );
    assert_eq!(open.len(), 2);
}

/// A source whose text says how many reads were made.
struct Counting {
    reads: AtomicU64,
    stamp: AtomicU64,
    /// Calls of `stamp`: each request whose head is in makes one or two.
    stamps: AtomicU64,
    delay: Duration,
    size: usize,
}

impl Counting {
    fn new(delay: Duration, size: usize) -> Arc<Counting> {
        Arc::new(Counting {
            reads: AtomicU64::new(0),
            stamp: AtomicU64::new(0),
            stamps: AtomicU64::new(0),
            delay,
            size,
        })
    }
}

impl Source for Counting {
    fn render(&self) -> Result<String, String> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(self.delay);
        let mut t = format!("# TYPE reads counter\nreads_total {n}\n");
        while t.len() < self.size {
            t.push_str("# padding padding padding padding padding padding padding\n");
        }
        Ok(t)
    }

    fn stamp(&self) -> Stamp {
        self.stamps.fetch_add(1, Ordering::SeqCst);
        [self.stamp.load(Ordering::SeqCst) as i64, 0, 0, 0]
    }
}

/// The server on its own thread and runtime, as `start` runs it;
/// stopped on drop.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn new<S: Source>(source: Arc<S>, limits: Limits) -> Running {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    () = serve(l, source, limits) => {}
                    _ = stopped => {}
                }
            });
        });
        Running {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s
    }

    /// Send `request` whole and read the answer until the server closes.
    fn ask(&self, request: &[u8]) -> String {
        let mut s = self.connect();
        // A refused connection may be reset before the request is in.
        let _ = s.write_all(request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn get(&self, path: &str) -> String {
        self.ask(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status(resp: &str) -> &str {
    resp.lines().next().unwrap_or_default()
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn quick() -> Limits {
    Limits {
        max_connections: 4,
        head_timeout: Duration::from_secs(1),
        connection_timeout: Duration::from_secs(3),
        cache_ttl: Duration::from_millis(500),
    }
}

#[test]
fn get_and_head_only_known_paths() {
    let source = Counting::new(Duration::ZERO, 0);
    let srv = Running::new(Arc::clone(&source), Limits::default());
    let r = srv.get("/metrics");
    assert_eq!(status(&r), "HTTP/1.1 200 OK", "{r}");
    assert!(
        r.to_ascii_lowercase().contains(&format!(
            "content-type: {}\r\n",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        )),
        "{r}"
    );
    assert_eq!(body(&r), "# TYPE reads counter\nreads_total 1\n");
    // HEAD: the same head, no body.
    let h = srv.ask(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status(&h), "HTTP/1.1 200 OK", "{h}");
    assert!(
        h.to_ascii_lowercase()
            .contains(&format!("content-length: {}\r\n", body(&r).len())),
        "{h}"
    );
    assert_eq!(body(&h), "", "{h}");
    // A query is ignored.
    assert_eq!(status(&srv.get("/metrics?x=1")), "HTTP/1.1 200 OK");
    let root = srv.get("/");
    assert_eq!(status(&root), "HTTP/1.1 200 OK");
    assert_eq!(body(&root), "flowfilter: metrics at /metrics\n");
    for path in ["/nope", "/metrics/", "/metricsx", "//metrics"] {
        let r = srv.get(path);
        assert_eq!(status(&r), "HTTP/1.1 404 Not Found", "{path}: {r}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = srv.ask(
            format!("{method} /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(
            status(&r),
            "HTTP/1.1 405 Method Not Allowed",
            "{method}: {r}"
        );
        assert!(
            r.to_ascii_lowercase().contains("allow: get, head\r\n"),
            "{r}"
        );
    }
    // One request per connection.
    let r = srv.ask(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 1, "{r}");
}

#[test]
fn over_long_or_broken_heads_are_refused() {
    let srv = Running::new(Counting::new(Duration::ZERO, 0), quick());
    let long_path = format!("/{}", "a".repeat(MAX_HEAD_BYTES));
    let r = srv.get(&long_path);
    assert_eq!(
        status(&r),
        "HTTP/1.1 431 Request Header Fields Too Large",
        "{}",
        &r[..r.len().min(200)]
    );
    let r = srv.ask(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "b".repeat(MAX_HEAD_BYTES)
        )
        .as_bytes(),
    );
    assert_eq!(status(&r), "HTTP/1.1 431 Request Header Fields Too Large");
    let many = (0..100).fold(String::new(), |mut t, i| {
        let _ = write!(t, "X-{i}: v\r\n");
        t
    });
    let r = srv.ask(format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes());
    assert_eq!(status(&r), "HTTP/1.1 431 Request Header Fields Too Large");
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let r = srv.ask(junk);
        assert_eq!(status(&r), "HTTP/1.1 400 Bad Request", "{junk:?}: {r}");
    }
    // Still serving.
    assert_eq!(status(&srv.get("/metrics")), "HTTP/1.1 200 OK");
}

#[test]
fn idle_connections_beyond_the_cap_do_not_block_a_scrape() {
    let limits = Limits {
        head_timeout: Duration::from_secs(10),
        connection_timeout: Duration::from_secs(20),
        ..quick()
    };
    let srv = Running::new(Counting::new(Duration::ZERO, 0), limits);
    let mut idle: Vec<TcpStream> = (0..3 * limits.max_connections)
        .map(|_| srv.connect())
        .collect();
    let started = Instant::now();
    let r = srv.get("/metrics");
    assert_eq!(status(&r), "HTTP/1.1 200 OK", "{r}");
    assert!(
        started.elapsed() < limits.head_timeout,
        "answered only after the idle connections timed out ({:?})",
        started.elapsed()
    );
    // The oldest idle ones were closed to make room: they read EOF long
    // before their head timeout.
    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    assert_eq!(first.read(&mut buf).expect("closed, not timed out"), 0);
    // While idle connections hold every slot again, scrapes still answer.
    idle.extend((0..limits.max_connections).map(|_| srv.connect()));
    for _ in 0..3 {
        assert_eq!(status(&srv.get("/metrics")), "HTTP/1.1 200 OK");
    }
}

#[test]
fn a_byte_a_moment_is_cut_at_the_head_timeout() {
    let limits = quick();
    let srv = Running::new(Counting::new(Duration::ZERO, 0), limits);
    let mut s = srv.connect();
    let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut sent = 0;
    for b in request {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > 3 * limits.head_timeout {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = started.elapsed();
    assert!(
        sent < request.len(),
        "the whole request ({sent} bytes in {took:?}) went through"
    );
    assert!(
        !String::from_utf8_lossy(&out).contains("200 OK"),
        "answered: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(took >= limits.head_timeout, "cut after {took:?}");
    assert!(took < 3 * limits.head_timeout, "cut only after {took:?}");
}

#[test]
fn a_reader_that_stops_reading_is_cut_at_the_connection_timeout() {
    let limits = quick();
    // Far more than the socket buffers hold.
    let srv = Running::new(Counting::new(Duration::ZERO, 64 << 20), limits);
    let mut s = srv.connect();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("request");
    std::thread::sleep(limits.connection_timeout + Duration::from_secs(1));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.len() < 64 << 20,
        "the whole answer ({} bytes) was written to a reader that stopped",
        out.len()
    );
    // Others are served meanwhile and after.
    assert_eq!(status(&srv.get("/")), "HTTP/1.1 200 OK");
}

#[test]
fn one_read_serves_the_cache_window_and_concurrent_scrapes() {
    // A window wide enough for eight scrapes on a loaded machine.
    let limits = Limits {
        cache_ttl: Duration::from_secs(3),
        max_connections: 16,
        ..quick()
    };
    let source = Counting::new(Duration::from_millis(300), 0);
    let srv = Arc::new(Running::new(Arc::clone(&source), limits));
    // Eight at once: one read, one answer.
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| body(&srv.get("/metrics")).to_owned()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scrape"))
            .collect()
    });
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(source.reads.load(Ordering::SeqCst), 1);
    assert!(answers[0].contains("reads_total 1\n"), "{}", answers[0]);
    // Inside the window: the same snapshot (the read took 300 ms of it).
    let again = body(&srv.get("/metrics")).to_owned();
    assert_eq!(again, answers[0]);
    assert_eq!(source.reads.load(Ordering::SeqCst), 1);
    // After it: a new read.
    std::thread::sleep(limits.cache_ttl);
    let fresh = body(&srv.get("/metrics")).to_owned();
    assert!(fresh.contains("reads_total 2\n"), "{fresh}");
    // A changed stamp (a reload) is served at once.
    source.stamp.fetch_add(1, Ordering::SeqCst);
    let after_reload = body(&srv.get("/metrics")).to_owned();
    assert!(after_reload.contains("reads_total 3\n"), "{after_reload}");
}

#[test]
fn when_every_slot_is_being_answered_a_new_connection_is_closed() {
    let limits = Limits {
        max_connections: 2,
        cache_ttl: Duration::ZERO,
        // Two reads one after the other fit, on a loaded machine too.
        connection_timeout: Duration::from_secs(20),
        ..quick()
    };
    let source = Counting::new(Duration::from_secs(2), 0);
    let srv = Arc::new(Running::new(Arc::clone(&source), limits));
    std::thread::scope(|s| {
        let busy: Vec<_> = (0..2).map(|_| s.spawn(|| srv.get("/metrics"))).collect();
        // Both heads are in and being answered: the first read's request
        // asked for the stamp twice (before and after the gate), the
        // other once, and waits for the read (2 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        while source.stamps.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "the two requests did not arrive");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(source.reads.load(Ordering::SeqCst), 1, "one read at a time");
        let refused = srv.get("/");
        assert_eq!(refused, "", "a third connection was answered");
        for b in busy {
            assert_eq!(status(&b.join().expect("scrape")), "HTTP/1.1 200 OK");
        }
    });
    assert_eq!(status(&srv.get("/")), "HTTP/1.1 200 OK");
}

/// The exact `list_prefixes` and `policy_info` families of a state file.
#[test]
fn list_families_are_pinned() {
    use crate::control::state::CategoryState;
    let category = |id: u8, name: &str, v4: usize, v6: usize| CategoryState {
        id,
        name: name.into(),
        v4_prefixes: v4,
        v6_prefixes: v6,
        policy: "drop".parse().unwrap(),
        policy_source: "default".parse().unwrap(),
    };
    let st = StateFile {
        categories: vec![
            category(1, "whatsapp", 12, 3),
            category(2, "telegram", 0, 1),
        ],
        allow: (4, 0),
        ..StateFile::default()
    };
    assert_eq!(
        encode(list_families(Some(&st)).into()).unwrap(),
        concat!(
            "# HELP flowfilter_list_prefixes Prefixes per list and address family\n",
            "# TYPE flowfilter_list_prefixes gauge\n",
            "flowfilter_list_prefixes{category=\"whatsapp\",family=\"ipv4\"} 12\n",
            "flowfilter_list_prefixes{category=\"whatsapp\",family=\"ipv6\"} 3\n",
            "flowfilter_list_prefixes{category=\"telegram\",family=\"ipv4\"} 0\n",
            "flowfilter_list_prefixes{category=\"telegram\",family=\"ipv6\"} 1\n",
            "flowfilter_list_prefixes{category=\"allow\",family=\"ipv4\"} 4\n",
            "flowfilter_list_prefixes{category=\"allow\",family=\"ipv6\"} 0\n",
            "# HELP flowfilter_policy_info Policy in force per category\n",
            "# TYPE flowfilter_policy_info gauge\n",
            "flowfilter_policy_info{category=\"whatsapp\",policy=\"drop\",source=\"default\"} 1\n",
            "flowfilter_policy_info{category=\"telegram\",policy=\"drop\",source=\"default\"} 1\n",
        )
    );
    assert_eq!(encode(list_families(None).into()).unwrap(), "");
}
