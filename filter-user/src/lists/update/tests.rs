use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::*;

/// A fresh, empty temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "flowfilter-update-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, text).unwrap();
        p
    }

    /// Names of the entries of `sub` (a subdirectory), sorted.
    fn names(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.path(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

type Routes = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// The test's certificate authority and the server configuration of a
/// certificate it issued for 127.0.0.1 (made once per test process).
struct TestTls {
    ca_der: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
}

fn test_tls() -> &'static TestTls {
    static TLS: std::sync::OnceLock<TestTls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "flowfilter test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        TestTls {
            ca_der: ca.der().to_vec(),
            server: Arc::new(server),
        }
    })
}

/// A loopback HTTP/1.1 server on 127.0.0.1, over TLS with the test's
/// certificate ([`Server::start`]) or in clear ([`Server::start_plain`],
/// what a downgrade would reach): answers each request with the route
/// set for its path (query included; a 3xx route's body is its
/// `Location`), 404 otherwise, and closes the connection.
struct Server {
    port: u16,
    tls: bool,
    routes: Routes,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(true)
    }

    fn start_plain() -> Server {
        Server::start_with(false)
    }

    fn start_with(tls: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Routes = Arc::default();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, s) = (routes.clone(), hits.clone(), stop.clone());
        let config = tls.then(|| Arc::clone(&test_tls().server));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                match &config {
                    Some(c) => {
                        let Ok(tls) = rustls::ServerConnection::new(Arc::clone(c)) else {
                            continue;
                        };
                        serve(rustls::StreamOwned::new(tls, conn), &r, &h);
                    }
                    None => serve(conn, &r, &h),
                }
            }
        });
        Server {
            port,
            tls,
            routes,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    fn set(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.into()));
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve<S: Read + Write>(conn: S, routes: &Routes, hits: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
    hits.lock().unwrap().push(path.clone());
    let (status, mut body) = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or((404, b"not found\n".to_vec()));
    let reason = match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Whatever",
    };
    let mut extra = String::new();
    if (300..400).contains(&status) {
        extra = format!("Location: {}\r\n", String::from_utf8_lossy(&body));
        body.clear();
    }
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let conn = reader.get_mut();
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
    let _ = conn.flush();
}

/// A port on 127.0.0.1 nobody listens on.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A canned RIPEstat announced-prefixes response.
fn ripestat_json(asn: u32, prefixes: &[&str]) -> String {
    let prefixes: Vec<serde_json::Value> = prefixes
        .iter()
        .map(|p| {
            serde_json::json!({
                "prefix": p,
                "timelines": [{"starttime": "2026-08-03T08:00:00", "endtime": "2026-08-17T08:00:00"}]
            })
        })
        .collect();
    serde_json::json!({
        "messages": [],
        "see_also": [],
        "version": "1.2",
        "data_call_name": "announced-prefixes",
        "data_call_status": "supported - connected to 1 RIS collector",
        "cached": false,
        "data": {
            "prefixes": prefixes,
            "query_starttime": "2026-08-03T08:00:00",
            "query_endtime": "2026-08-17T08:00:00",
            "resource": asn.to_string(),
            "latest_time": "2026-08-17T08:00:00",
            "earliest_time": "2000-08-01T00:00:00"
        },
        "query_id": "20260817080000-test",
        "process_time": 7,
        "server_id": "app000",
        "build_version": "test",
        "status": "ok",
        "status_code": 200,
        "time": "2026-08-17T08:00:00.000000"
    })
    .to_string()
}

/// The shared raw range lists, or `None` (with a printed reason).
fn ranges_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/ranges"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

/// Serve every file of the ranges directory at `/ranges/NAME`.
fn serve_ranges(server: &Server, dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        server.set(&format!("/ranges/{name}"), 200, fs::read(&p).unwrap());
    }
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// Prefixes of a list file as `parse_list` reads it.
fn read_set(path: &Path) -> BTreeSet<Cidr> {
    let text = fs::read_to_string(path).unwrap();
    lists::parse_list("t", &text, false)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .cidrs()
        .collect()
}

fn opts(dir: &TempDir, sources: &Path) -> UpdateOptions {
    UpdateOptions {
        sources: sources.to_owned(),
        out: dir.path("out"),
        force: false,
        allow_broad: false,
        ripestat_url: None,
        env_proxy: false,
        tls_roots: Some(vec![test_tls().ca_der.clone()]),
    }
}

/// `run_update` for tests: never through a proxy, RIPEstat at `server`.
fn update(dir: &TempDir, sources: &Path, server: &Server, force: bool) -> UpdateReport {
    let mut o = opts(dir, sources);
    o.force = force;
    o.ripestat_url = Some(server.url("/ripestat"));
    run_update(&o).unwrap()
}

// ----- sources file ---------------------------------------------------

#[test]
fn committed_sources_file() {
    let file = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lists/sources.toml"
    ));
    let s = Sources::load(file).unwrap();
    assert_eq!(s.ripestat_url, DEFAULT_RIPESTAT_URL);
    let names: Vec<&str> = s.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["telegram", "whatsapp"]);
    let asns = |c: &CategorySources| -> Vec<u32> {
        c.sources
            .iter()
            .filter_map(|s| match s.kind {
                SourceKind::Ripestat { asn } => Some(asn),
                _ => None,
            })
            .collect()
    };
    let tg = &s.categories[0];
    assert_eq!(
        tg.sources[0].kind,
        SourceKind::Url("https://core.telegram.org/resources/cidr.txt".into())
    );
    assert_eq!(asns(tg), [62041, 62014, 59930, 44907, 211_157]);
    let wa = &s.categories[1];
    assert!(asns(wa).contains(&32934));
    assert!(
        wa.sources
            .iter()
            .all(|s| matches!(s.kind, SourceKind::Ripestat { .. }))
    );
    let note = wa.note.as_deref().unwrap();
    for word in ["Messenger", "Instagram", "Facebook"] {
        assert!(note.contains(word), "whatsapp note lacks {word}: {note}");
    }
    // Only public sources by URL: no copies of third-party lists.
    for c in &s.categories {
        for src in &c.sources {
            assert!(!matches!(src.kind, SourceKind::Path(_)), "{src:?}");
            if let SourceKind::Url(u) = &src.kind {
                assert!(u.starts_with("https://"), "{u}");
            }
        }
    }
}

fn parse(text: &str) -> Result<Sources, SourcesError> {
    Sources::parse("s.toml", text, Path::new("/base"))
}

fn parse_err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn sources_schema() {
    let s = parse(
        r#"
timeout_secs = 5
[ripestat]
url = "https://127.0.0.1:1/r?x=1"
[category.b]
[[category.b.source]]
path = "rel/b.txt"
normalize = true
[[category.b.source]]
path = "/abs/b.txt"
[category.a]
note = "  "
[[category.a.source]]
asn = "AS64500"
[[category.a.source]]
asn = 64501
name = " mine "
[[category.a.source]]
url = "HTTPS://example.test/x.txt"
"#,
    )
    .unwrap();
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.ripestat_url, "https://127.0.0.1:1/r?x=1");
    assert_eq!(
        s.categories,
        [
            CategorySources {
                name: "a".into(),
                note: None,
                sources: vec![
                    Source {
                        name: "prefixes announced by AS64500 (RIPEstat)".into(),
                        kind: SourceKind::Ripestat { asn: 64500 },
                        normalize: false
                    },
                    Source {
                        name: "mine".into(),
                        kind: SourceKind::Ripestat { asn: 64501 },
                        normalize: false
                    },
                    Source {
                        name: "CIDR list HTTPS://example.test/x.txt".into(),
                        kind: SourceKind::Url("HTTPS://example.test/x.txt".into()),
                        normalize: false
                    },
                ]
            },
            CategorySources {
                name: "b".into(),
                note: None,
                sources: vec![
                    Source {
                        name: "CIDR list /base/rel/b.txt".into(),
                        kind: SourceKind::Path("/base/rel/b.txt".into()),
                        normalize: true
                    },
                    Source {
                        name: "CIDR list /abs/b.txt".into(),
                        kind: SourceKind::Path("/abs/b.txt".into()),
                        normalize: false
                    },
                ]
            },
        ]
    );
    let d = parse("[category.x]\nsource = [{ asn = 1 }]\n").unwrap();
    assert_eq!(d.timeout, DEFAULT_TIMEOUT);
    assert_eq!(d.ripestat_url, DEFAULT_RIPESTAT_URL);
    assert_eq!(
        ripestat_request(&d.ripestat_url, 62041),
        "https://stat.ripe.net/data/announced-prefixes/data.json?resource=AS62041"
    );
    assert_eq!(
        ripestat_request("https://h/r?x=1", 7),
        "https://h/r?x=1&resource=AS7"
    );
}

#[test]
fn sources_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[category.t]\n[[category.t.source]]\nasn = \"ASx\"\n",
            "s.toml:3:7: `category.t.source[0].asn`: `ASx` is not an AS number (write 62041 or \"AS62041\")",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = 0\n",
            "s.toml:3:7: `category.t.source[0].asn`: AS number 0 is reserved",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = -3\n",
            "s.toml:3:7: `category.t.source[0].asn`: AS number -3 is negative",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = 4294967296\n",
            "s.toml:3:7: `category.t.source[0].asn`: AS number 4294967296 is larger than 4294967295",
        ),
        (
            "[category.t]\n[[category.t.source]]\nasn = 1.5\n",
            "s.toml:3:7: `category.t.source[0].asn`: invalid type: floating point `1.5`, expected an AS number like 62041 or \"AS62041\"",
        ),
        (
            "[category.t]\n[[category.t.source]]\nurll = \"https://x/\"\n",
            "s.toml:3:1: `category.t.source[0].urll`: unknown field `urll`, expected one of `name`, `url`, `path`, `asn`, `normalize`",
        ),
        (
            "[category.t]\n[[category.t.source]]\nurl = \"https://x/\"\nnormalize = \"yes\"\n",
            "s.toml:4:13: `category.t.source[0].normalize`: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "timeout_secs = \"10\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml:1:16: `timeout_secs`: invalid type: string \"10\", expected u64",
        ),
        (
            "[category.t]\nnote = 3\nsource = [{ asn = 1 }]\n",
            "s.toml:2:8: `category.t.note`: invalid type: integer `3`, expected a string",
        ),
        (
            "[category.t]\nnote = \"x\"\n",
            "s.toml:1:1: `category.t`: missing field `source`",
        ),
        ("", "s.toml:1:1: missing field `category`"),
        (
            "[category.t\n",
            "s.toml:1:12: invalid table header: expected `.`, `]`",
        ),
        (
            "[category.t]\nsource = []\n",
            "s.toml: `category.t.source`: no source given",
        ),
        (
            "category = {}\n",
            "s.toml: `category`: no category given (add a [category.NAME] table with [[category.NAME.source]] entries)",
        ),
        (
            "[category.T]\nsource = [{ asn = 1 }]\n",
            "s.toml: `category.T`: `T` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)",
        ),
        (
            "[category.t]\nsource = [{ asn = 1 }, { asn = 1, url = \"https://x/\" }]\n",
            "s.toml: `category.t.source[1]`: give exactly one of `url` (plain CIDR list over https), `path` (plain CIDR list in a file) or `asn` (announced prefixes from RIPEstat)",
        ),
        (
            "[category.t]\nsource = [{ name = \"n\" }]\n",
            "s.toml: `category.t.source[0]`: give exactly one of `url` (plain CIDR list over https), `path` (plain CIDR list in a file) or `asn` (announced prefixes from RIPEstat)",
        ),
        (
            "[category.t]\nsource = [{ url = \"ftp://x/a\" }]\n",
            "s.toml: `category.t.source[0].url`: `ftp://x/a` is not an https:// URL",
        ),
        (
            "[category.t]\nsource = [{ url = \"https:///a\" }]\n",
            "s.toml: `category.t.source[0].url`: `https:///a` has no host",
        ),
        (
            "[category.t]\nsource = [{ url = \"https://x/a b\" }]\n",
            "s.toml: `category.t.source[0].url`: `https://x/a b` contains whitespace or control characters",
        ),
        (
            "[category.t]\nsource = [{ url = \"http://core.telegram.org/resources/cidr.txt\" }]\n",
            "s.toml: `category.t.source[0].url`: `http://core.telegram.org/resources/cidr.txt` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
        ),
        (
            "[category.t]\nsource = [{ url = \"HTTP://x/a\" }]\n",
            "s.toml: `category.t.source[0].url`: `HTTP://x/a` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
        ),
        (
            "[ripestat]\nurl = \"http://stat.ripe.net/data/announced-prefixes/data.json\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml: `ripestat.url`: `http://stat.ripe.net/data/announced-prefixes/data.json` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
        ),
        (
            "[category.t]\nsource = [{ path = \"\" }]\n",
            "s.toml: `category.t.source[0].path`: empty path",
        ),
        (
            "[category.t]\nsource = [{ asn = 1, normalize = true }]\n",
            "s.toml: `category.t.source[0].normalize`: only plain CIDR lists (`url`, `path`) can be normalised",
        ),
        (
            "[category.t]\nsource = [{ asn = 1, name = \"a\\nb\" }]\n",
            "s.toml: `category.t.source[0].name`: must be one non-empty line",
        ),
        (
            "[category.t]\nsource = [{ asn = 1 }, { asn = \"AS1\" }]\n",
            "s.toml: `category.t.source[1]`: same source as `category.t.source[0]`",
        ),
        (
            "timeout_secs = 0\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml: `timeout_secs`: 0 is not between 1 and 3600",
        ),
        (
            "[ripestat]\nurl = \"stat.ripe.net\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml: `ripestat.url`: `stat.ripe.net` is not an https:// URL",
        ),
        (
            "[ripestat]\nurll = \"x\"\n[category.t]\nsource = [{ asn = 1 }]\n",
            "s.toml:2:1: `ripestat.urll`: unknown field `urll`, expected `url`",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, want)| {
            let got = parse_err(text);
            (got != *want).then(|| format!("for:\n{text}\n got: {got}\nwant: {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    // Typed: the field is a value of its own.
    match parse("[category.t]\n[[category.t.source]]\nasn = \"ASx\"\n").unwrap_err() {
        SourcesError::Syntax {
            field,
            line,
            column,
            ..
        } => assert_eq!(
            (field.as_str(), line, column),
            ("category.t.source[0].asn", 3, 7)
        ),
        e => panic!("{e:?}"),
    }
    let e = Sources::load(Path::new("/nonexistent/flowfilter/s.toml")).unwrap_err();
    assert!(matches!(e, SourcesError::Read { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/flowfilter/s.toml: "),
        "{e}"
    );
}

// ----- pieces ---------------------------------------------------------

#[test]
fn list_header_times() {
    // Every second of a few days around leap days and year ends reads
    // back as written.
    for base in [
        0u64,
        951_696_000,
        1_709_164_800,
        1_798_675_200,
        4_102_358_400,
    ] {
        for s in (0..3 * 86_400).step_by(3607) {
            let t = UNIX_EPOCH + Duration::from_secs(base + s);
            assert_eq!(parse_utc(&utc(t)), Some(t), "{}", utc(t));
        }
    }
    for bad in [
        "",
        "2026-02-29T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:60Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
        "1969-12-31T23:59:59Z",
        "2026-01-01T00:00:0xZ",
        "+026-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z ",
    ] {
        assert_eq!(parse_utc(bad), None, "{bad:?}");
    }
    assert_eq!(
        parse_utc("2024-02-29T12:34:56Z"),
        Some(UNIX_EPOCH + Duration::from_secs(1_709_210_096))
    );
    // The header `render` writes gives its time back.
    let cat = CategorySources {
        name: "t".into(),
        note: None,
        sources: vec![Source {
            name: "s".into(),
            kind: SourceKind::Url("https://h/x".into()),
            normalize: false,
        }],
    };
    let f = fetched(&["192.0.2.0/24"], 5);
    let entries = f.cidrs.clone();
    let at = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
    let text = render(
        &cat,
        Path::new("/s.toml"),
        &[("https://h/x".into(), &f)],
        &entries,
        at,
    );
    assert_eq!(written_at(&text), Some(at));
    // Lists without that header have no such time.
    assert_eq!(
        written_at(
            "# at 2026-01-01T00:00:00Z: mine
10.0.0.0/8
"
        ),
        None
    );
    assert_eq!(
        written_at(
            "10.0.0.0/8
"
        ),
        None
    );
    assert_eq!(written_at(""), None);
    assert_eq!(
        written_at(
            "# t: written by `flowfilter list update` from x
# at yesterday
"
        ),
        None
    );
}

#[test]
fn broad_prefix_policy() {
    for (width, len, broad) in [
        (32, 0, true),
        (32, 7, true),
        (32, 8, false),
        (32, 32, false),
        (128, 0, true),
        (128, 15, true),
        (128, 16, false),
        (128, 128, false),
    ] {
        assert_eq!(is_broad(width, len), broad, "/{len} of {width} bits");
    }
    let refused = |entry: &str, min: u8, family: &str, line: usize| {
        format!(
            "u:{line}: `{entry}` is broader than /{min}, the shortest {family} prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
        )
    };
    let text = |entry: &str| format!("# list\n10.0.0.0/8\n2001::/16\n{entry}  # the bad one\n");
    for (entry, min, family) in [
        ("0.0.0.0/0", 8, "IPv4"),
        ("2.0.0.0/7", 8, "IPv4"),
        ("128.0.0.0/1", 8, "IPv4"),
        ("::/0", 16, "IPv6"),
        ("2000::/15", 16, "IPv6"),
        ("2000::/3", 16, "IPv6"),
    ] {
        assert_eq!(
            parse_cidr_text("u", &text(entry), false, false).unwrap_err(),
            refused(entry, min, family, 4),
            "{entry}"
        );
        let allowed = parse_cidr_text("u", &text(entry), false, true).unwrap();
        assert!(allowed.contains(&cidr(entry)), "{entry}: {allowed:?}");
    }
    // Host bits cleared by normalize do not hide a broad prefix.
    assert_eq!(
        parse_cidr_text("u", "1.2.3.4/7\n", true, false).unwrap_err(),
        refused("1.2.3.4/7", 8, "IPv4", 1)
    );
    // The boundaries and plain addresses pass.
    assert_eq!(
        parse_cidr_text("u", &text("192.0.2.1"), false, false)
            .unwrap()
            .len(),
        3
    );
    // RIPEstat answers name the element.
    let body = ripestat_json(64500, &["192.0.2.0/24", "0.0.0.0/0"]);
    assert_eq!(
        parse_ripestat("u", 64500, body.as_bytes(), false).unwrap_err(),
        "u: `data.prefixes[1].prefix`: `0.0.0.0/0` is broader than /8, the shortest IPv4 prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
    );
    assert_eq!(
        parse_ripestat("u", 64500, body.as_bytes(), true)
            .unwrap()
            .len(),
        2
    );
    let body = ripestat_json(64500, &["2001:db8::/32", "::/0"]);
    assert!(
        parse_ripestat("u", 64500, body.as_bytes(), false)
            .unwrap_err()
            .contains("`::/0` is broader than /16, the shortest IPv6 prefix")
    );
}

#[test]
fn utc_times() {
    let at = |s: u64| utc(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
    assert_eq!(at(951_868_800), "2000-03-01T00:00:00Z");
    assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
    assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    assert_eq!(
        utc(UNIX_EPOCH - Duration::from_secs(5)),
        "1970-01-01T00:00:00Z"
    );
}

#[test]
fn ripestat_responses() {
    let ok = ripestat_json(64500, &["192.0.2.0/24", "2001:db8::/32", "192.0.2.0/24"]);
    let set = parse_ripestat("u", 64500, ok.as_bytes(), false).unwrap();
    assert_eq!(
        set.into_iter().collect::<Vec<_>>(),
        [cidr("192.0.2.0/24"), cidr("2001:db8::/32")]
    );
    let empty = ripestat_json(64500, &[]);
    assert!(
        parse_ripestat("u", 64500, empty.as_bytes(), false)
            .unwrap()
            .is_empty()
    );
    // "AS" in the resource is accepted.
    let as_prefixed = ok.replace("\"resource\":\"64500\"", "\"resource\":\"AS64500\"");
    assert_ne!(as_prefixed, ok);
    assert!(parse_ripestat("u", 64500, as_prefixed.as_bytes(), false).is_ok());
    let e = |body: &str| parse_ripestat("u", 64500, body.as_bytes(), false).unwrap_err();
    assert_eq!(
        e(&ripestat_json(64501, &[])),
        "u: `data.resource` is `64501`, expected AS64500"
    );
    assert_eq!(
        e(&ripestat_json(64500, &["192.0.2.1/24"])),
        "u: `data.prefixes[0].prefix`: `192.0.2.1/24` has bits set beyond /24 (use 192.0.2.0/24)"
    );
    assert_eq!(
        e(&ripestat_json(64500, &["192.0.2.0/24", "banana"])),
        "u: `data.prefixes[1].prefix`: `banana` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        e(r#"{"status":"ok","data":{"prefixes":[{"pfx":"192.0.2.0/24"}]}}"#),
        "u: `data.prefixes[0]` has no `prefix` string"
    );
    assert_eq!(
        e(r#"{"status":"ok","data":{}}"#),
        "u: no `data.prefixes` array in the response"
    );
    assert_eq!(
        e(r#"{"status":"ok"}"#),
        "u: no `data` object in the response"
    );
    assert_eq!(
        e(r#"{"status":"error","messages":[["error","bad resource"]],"data":{}}"#),
        "u: RIPEstat status \"error\" [[\"error\",\"bad resource\"]]"
    );
    assert_eq!(
        e("<html>busy</html>"),
        "u: not a RIPEstat JSON response: expected value at line 1 column 1"
    );
    assert_eq!(
        e("{\"data\":\n{\"prefixes\": [}"),
        "u: not a RIPEstat JSON response: expected value at line 2 column 15"
    );
}

#[test]
fn cidr_text_sources() {
    let set = parse_cidr_text(
        "u",
        "# c\n192.0.2.0/24\n192.0.2.0/24\n2001:db8::1\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(
        set.into_iter().collect::<Vec<_>>(),
        [cidr("192.0.2.0/24"), cidr("2001:db8::1/128")]
    );
    assert_eq!(
        parse_cidr_text("u", "192.0.2.0/24\n<html>\n", false, false).unwrap_err(),
        "u:2: `<html>` is not an IPv4 or IPv6 address or CIDR"
    );
    assert_eq!(
        parse_cidr_text("u", "192.0.2.9/24\n", false, false).unwrap_err(),
        "u:1: `192.0.2.9/24` has bits set beyond /24 (use 192.0.2.0/24, or --normalize)"
    );
    assert_eq!(
        parse_cidr_text("u", "192.0.2.9/24\n", true, false)
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [cidr("192.0.2.0/24")]
    );
    assert_eq!(
        parse_cidr_text("u", "# nothing\n\n", false, false).unwrap_err(),
        "u: no entries (an empty list is taken as a broken source)"
    );
    assert_eq!(
        utf8("u", b"192.0.2.0/24\n\xff\n".to_vec()).unwrap_err(),
        "u:2: not valid UTF-8"
    );
}

fn fetched(cidrs: &[&str], secs: u64) -> Fetched {
    Fetched {
        cidrs: cidrs.iter().map(|c| cidr(c)).collect(),
        fetched: UNIX_EPOCH + Duration::from_secs(secs),
    }
}

#[test]
fn render_reads_back() {
    let cat = CategorySources {
        name: "t".into(),
        note: Some("first line\n\nthird\rline with\u{7}bell\n".into()),
        sources: vec![
            Source {
                name: "list\u{1b}[31m".into(),
                kind: SourceKind::Url("https://h/x".into()),
                normalize: true,
            },
            Source {
                name: "as".into(),
                kind: SourceKind::Ripestat { asn: 64500 },
                normalize: false,
            },
        ],
    };
    let a = fetched(&["192.0.2.0/24", "2001:db8::/32"], 86_400);
    let b = fetched(&["192.0.2.0/24", "192.0.2.128/25", "10.0.0.0/8"], 86_401);
    let entries: BTreeSet<Cidr> = a.cidrs.union(&b.cidrs).copied().collect();
    let text = render(
        &cat,
        Path::new("/s.toml"),
        &[
            ("https://h/x".into(), &a),
            ("https://r?resource=AS64500".into(), &b),
        ],
        &entries,
        UNIX_EPOCH + Duration::from_hours(25),
    );
    assert_eq!(
        text,
        "\
# t: written by `flowfilter list update` from /s.toml
# at 1970-01-02T01:00:00Z: 4 entries (3 IPv4, 1 IPv6) from 2 sources.
# Do not edit: the next update replaces this file (add ranges as a source).
#
# first line
#
# third line with bell
#
# source 1: list [31m
#   where:   https://h/x
#   fetched: 1970-01-02T00:00:00Z
#   entries: 2
#   host bits beyond the prefix length cleared (normalize)
#
# source 2: as
#   where:   https://r?resource=AS64500
#   fetched: 1970-01-02T00:00:01Z
#   entries: 3
#
10.0.0.0/8
192.0.2.0/24
192.0.2.128/25
2001:db8::/32
"
    );
    let list = lists::parse_list("t", &text, false).unwrap();
    assert!(list.cidrs().eq(entries.iter().copied()));
}

#[test]
fn atomic_write() {
    let d = TempDir::new("atomic");
    let p = d.write("t.txt", "old\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    let old = fs::File::open(&p).unwrap();
    let old_ino = old.metadata().unwrap().ino();
    write_atomic(&p, "new\n").unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
    let meta = fs::metadata(&p).unwrap();
    assert_ne!(meta.ino(), old_ino, "replaced by rename, not rewritten");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut s = String::new();
    (&old).read_to_string(&mut s).unwrap();
    assert_eq!(s, "old\n", "a reader of the old file sees it whole");
    assert_eq!(d.names("."), ["t.txt"]);
    // A new file gets 0644 (less the umask).
    let n = d.path("n.txt");
    write_atomic(&n, "x\n").unwrap();
    assert_eq!(fs::metadata(&n).unwrap().permissions().mode() & 0o022, 0);
    // A failing rename (onto a non-empty directory) leaves no temporary file.
    fs::create_dir(d.path("dir.txt")).unwrap();
    d.write("dir.txt/keep", "k");
    assert!(write_atomic(&d.path("dir.txt"), "x\n").is_err());
    assert_eq!(d.names("."), ["dir.txt", "n.txt", "t.txt"]);
    assert_eq!(d.names("dir.txt"), ["keep"]);
    // A missing directory is an error, not a panic.
    assert!(write_atomic(&d.path("missing/t.txt"), "x\n").is_err());
}

#[test]
fn report_text() {
    let src = |result: Result<usize, String>| SourceReport {
        name: "S".into(),
        location: "http://h/s".into(),
        fetched: None,
        result,
    };
    let cat = |name: &str, skipped: Option<SkipReason>| CategoryReport {
        name: name.into(),
        path: PathBuf::from(format!("/o/{name}.txt")),
        entries: 3,
        previous: Some(10),
        sources: vec![src(Ok(3))],
        skipped,
        notes: Vec::new(),
    };
    let mut r = UpdateReport {
        sources_file: "/s.toml".into(),
        out: "/o".into(),
        categories: vec![cat("a", None)],
    };
    r.categories[0].previous = None;
    assert!(r.all_written());
    assert_eq!(
        r.to_string(),
        "a: wrote 3 entries to /o/a.txt (new file)\n  ok      S: 3 entries from http://h/s\nall 1 categories written to /o"
    );
    r.categories.push(cat(
        "b",
        Some(SkipReason::Shrunk {
            entries: 3,
            previous: 10,
        }),
    ));
    let mut c = cat("c", Some(SkipReason::SourcesFailed { failed: 1 }));
    c.sources
        .push(src(Err("http://h/t: HTTP status 500".into())));
    c.notes.push("n".into());
    r.categories.push(c);
    assert!(!r.all_written());
    assert_eq!(r.category("c").unwrap().sources.len(), 2);
    assert_eq!(
        r.to_string(),
        "\
a: wrote 3 entries to /o/a.txt (new file)
  ok      S: 3 entries from http://h/s
b: NOT written, /o/b.txt left as it was: the new list has 3 entries, less than half of the current 10 (use --force to write it)
  ok      S: 3 entries from http://h/s
c: NOT written, /o/c.txt left as it was: a source failed
  ok      S: 3 entries from http://h/s
  FAILED  S: http://h/t: HTTP status 500
  note: n
1 of 3 categories written to /o; 2 left as they were (check the sources, then use --force to accept the new size)"
    );
    assert_eq!(
        SkipReason::Empty.to_string(),
        "the new list is empty (use --force to write it)"
    );
    assert_eq!(
        SkipReason::SourcesFailed { failed: 2 }.to_string(),
        "2 sources failed"
    );
    assert!(SkipReason::Empty.forceable());
    assert!(!SkipReason::SourcesFailed { failed: 1 }.forceable());
    let grown = SkipReason::Grown {
        entries: 1001,
        previous: 100,
    };
    assert_eq!(
        grown.to_string(),
        "the new list has 1001 entries, more than 10 times the current 100 (use --force to write it)"
    );
    assert!(grown.forceable());
}

// ----- end to end, against a loopback server --------------------------

/// Telegram from the shared lists plus a canned RIPEstat answer; whatsapp
/// from the shared lists, a canned RIPEstat answer and a local file.
#[test]
fn update_from_loopback() {
    let Some(ranges) = ranges_dir() else { return };
    let server = Server::start();
    serve_ranges(&server, &ranges);
    let tg_canned = ["91.108.4.0/22", "203.0.113.0/24", "2001:db8:1::/48"];
    server.set(
        "/ripestat?resource=AS62041",
        200,
        ripestat_json(62041, &tg_canned),
    );
    let wa_canned = ["157.240.0.0/16", "198.51.100.0/24"];
    server.set(
        "/ripestat?resource=AS32934",
        200,
        ripestat_json(32934, &wa_canned),
    );
    let d = TempDir::new("loopback");
    d.write("local.txt", "# ours\n192.0.2.77/24\n192.0.2.128/25\n");
    let sources = d.write(
        "sources.toml",
        &format!(
            r#"
timeout_secs = 10
[category.telegram]
note = "Telegram, for the test."
[[category.telegram.source]]
name = "itdoginfo IPv4"
url = "{tg4}"
[[category.telegram.source]]
url = "{tg6}"
[[category.telegram.source]]
name = "AS62041"
asn = 62041

[category.whatsapp]
note = "Meta's ranges also carry Messenger, Instagram and Facebook."
[[category.whatsapp.source]]
url = "{hn}"
[[category.whatsapp.source]]
asn = "AS32934"
[[category.whatsapp.source]]
path = "local.txt"
normalize = true
"#,
            tg4 = server.url("/ranges/itdoginfo-ipv4-telegram.lst"),
            tg6 = server.url("/ranges/itdoginfo-ipv6-telegram.lst"),
            hn = server.url("/ranges/hybridnetworks-whatsapp-ipv4.txt"),
        ),
    );
    let report = update(&d, &sources, &server, false);
    assert!(report.all_written(), "{report}");
    assert_eq!(d.names("out"), ["telegram.txt", "whatsapp.txt"]);

    let from = |name: &str| read_set(&ranges.join(name));
    let canned = |c: &[&str]| c.iter().map(|s| cidr(s)).collect::<BTreeSet<_>>();
    let mut tg: BTreeSet<Cidr> = from("itdoginfo-ipv4-telegram.lst");
    tg.extend(from("itdoginfo-ipv6-telegram.lst"));
    tg.extend(canned(&tg_canned));
    let mut wa = from("hybridnetworks-whatsapp-ipv4.txt");
    wa.extend(canned(&wa_canned));
    wa.insert(cidr("192.0.2.0/24"));
    wa.insert(cidr("192.0.2.128/25"));
    let tg_file = d.path("out/telegram.txt");
    let wa_file = d.path("out/whatsapp.txt");
    assert_eq!(read_set(&tg_file), tg);
    assert_eq!(read_set(&wa_file), wa);
    // 91.108.4.0/22 comes from two sources: merged, not written twice.
    let given: usize = report
        .category("telegram")
        .unwrap()
        .sources
        .iter()
        .map(|s| s.result.clone().unwrap())
        .sum();
    assert_eq!(given, tg.len() + 1);

    let r = report.category("telegram").unwrap();
    assert_eq!((r.entries, r.previous, &r.skipped), (tg.len(), None, &None));
    assert_eq!(r.path, tg_file);
    let counts: Vec<Result<usize, String>> = r.sources.iter().map(|s| s.result.clone()).collect();
    assert_eq!(
        counts,
        [
            Ok(from("itdoginfo-ipv4-telegram.lst").len()),
            Ok(from("itdoginfo-ipv6-telegram.lst").len()),
            Ok(3)
        ]
    );
    assert_eq!(
        r.sources[2].location,
        server.url("/ripestat?resource=AS62041")
    );
    assert!(r.sources.iter().all(|s| s.fetched.is_some()));
    let w = report.category("whatsapp").unwrap();
    assert_eq!(w.entries, wa.len());
    let covered = lists::parse_list("w", &fs::read_to_string(&wa_file).unwrap(), false)
        .unwrap()
        .notes
        .len();
    assert!(covered >= 1, "192.0.2.128/25 lies in 192.0.2.0/24");
    assert_eq!(
        w.notes,
        [format!(
            "{covered} prefixes lie inside another prefix of the list (kept, as list files keep them)"
        )]
    );
    assert_eq!(
        w.sources[2].location,
        d.path("local.txt").display().to_string()
    );

    // Header: one block per source (what, where, when, how many), then entries.
    let text = fs::read_to_string(&tg_file).unwrap();
    let (header, body) = text.split_at(text.rfind("#\n").unwrap() + 2);
    assert!(header.lines().all(|l| l.starts_with('#')), "{header}");
    assert!(body.lines().all(|l| !l.starts_with('#')), "{body}");
    assert_eq!(body.lines().count(), tg.len());
    assert!(header.starts_with(&format!(
        "# telegram: written by `flowfilter list update` from {}\n# at ",
        sources.display()
    )));
    assert!(header.contains("# Telegram, for the test.\n"));
    let blocks: Vec<&str> = header.split("#\n# source ").skip(1).collect();
    assert_eq!(blocks.len(), 3, "{header}");
    for (i, (block, src)) in blocks.iter().zip(&r.sources).enumerate() {
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], format!("{}: {}", i + 1, src.name));
        assert_eq!(lines[1], format!("#   where:   {}", src.location));
        assert_eq!(
            lines[2],
            format!("#   fetched: {}", utc(src.fetched.unwrap()))
        );
        let stamp = lines[2].trim_start_matches("#   fetched: ");
        assert_eq!(stamp.len(), 20, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
        assert_eq!(
            lines[3],
            format!("#   entries: {}", src.result.clone().unwrap())
        );
    }
    assert_eq!(blocks[0].lines().next().unwrap(), "1: itdoginfo IPv4");
    assert!(
        fs::read_to_string(&wa_file)
            .unwrap()
            .contains("# Meta's ranges also carry Messenger, Instagram and Facebook.\n")
    );
    let hits = server.hits();
    assert!(
        hits.contains(&"/ripestat?resource=AS62041".to_owned()),
        "{hits:?}"
    );
    assert!(
        hits.contains(&"/ripestat?resource=AS32934".to_owned()),
        "{hits:?}"
    );

    // The written directory loads as the daemon would load it.
    let loaded = lists::load_dir(&d.path("out"), false).unwrap();
    assert_eq!(loaded.by_name("telegram").unwrap().list.len(), tg.len());
    assert_eq!(loaded.by_name("whatsapp").unwrap().list.len(), wa.len());

    // Second run: atomic replace. A reader holding the old file keeps
    // reading it whole; the path now names a new inode with the new list.
    let old = fs::File::open(&tg_file).unwrap();
    let old_ino = old.metadata().unwrap().ino();
    let tg_canned2 = [
        "91.108.4.0/22",
        "203.0.113.0/24",
        "2001:db8:1::/48",
        "198.18.0.0/15",
    ];
    server.set(
        "/ripestat?resource=AS62041",
        200,
        ripestat_json(62041, &tg_canned2),
    );
    let report = update(&d, &sources, &server, false);
    assert!(report.all_written(), "{report}");
    let r = report.category("telegram").unwrap();
    assert_eq!((r.entries, r.previous), (tg.len() + 1, Some(tg.len())));
    let mut s = String::new();
    (&old).read_to_string(&mut s).unwrap();
    assert_eq!(s, text);
    assert_ne!(fs::metadata(&tg_file).unwrap().ino(), old_ino);
    tg.insert(cidr("198.18.0.0/15"));
    assert_eq!(read_set(&tg_file), tg);
    assert_eq!(
        d.names("out"),
        ["telegram.txt", "whatsapp.txt"],
        "no temporary files left"
    );
}

/// A one-category sources file: `t` from `url`.
fn one_url(d: &TempDir, url: &str) -> PathBuf {
    d.write(
        "sources.toml",
        &format!("timeout_secs = 10\n[category.t]\nsource = [{{ url = \"{url}\" }}]\n"),
    )
}

/// `n` distinct /24s (up to 65,536).
fn list_of(n: usize) -> String {
    (0..n).fold(String::new(), |mut t, i| {
        let _ = writeln!(t, "10.{}.{}.0/24", i / 256, i % 256);
        t
    })
}

#[test]
fn shrink_refused_unless_forced() {
    let server = Server::start();
    let d = TempDir::new("shrink");
    let sources = one_url(&d, &server.url("/t.txt"));
    let file = d.path("out/t.txt");
    server.set("/t.txt", 200, list_of(10));
    assert!(update(&d, &sources, &server, false).all_written());
    // Exactly half is accepted.
    server.set("/t.txt", 200, list_of(5));
    let r = update(&d, &sources, &server, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(r.categories[0].previous, Some(10));
    assert_eq!(read_set(&file).len(), 5);
    // Less than half is refused; the file stays byte for byte.
    let before = fs::read(&file).unwrap();
    server.set("/t.txt", 200, list_of(2));
    let r = update(&d, &sources, &server, false);
    assert!(!r.all_written());
    let c = &r.categories[0];
    assert_eq!(
        c.skipped,
        Some(SkipReason::Shrunk {
            entries: 2,
            previous: 5
        })
    );
    assert_eq!((c.entries, c.previous), (2, Some(5)));
    assert!(r.to_string().contains("use --force"), "{r}");
    assert_eq!(fs::read(&file).unwrap(), before);
    // --force writes it.
    let r = update(&d, &sources, &server, true);
    assert!(r.all_written(), "{r}");
    assert_eq!(read_set(&file).len(), 2);
    assert_eq!(d.names("out"), ["t.txt"]);
}

#[test]
fn growth_refused_unless_forced() {
    let server = Server::start();
    let d = TempDir::new("growth");
    let sources = one_url(&d, &server.url("/t.txt"));
    let file = d.path("out/t.txt");
    server.set("/t.txt", 200, list_of(10));
    assert!(update(&d, &sources, &server, false).all_written());
    // Exactly ten times is accepted.
    server.set("/t.txt", 200, list_of(100));
    let r = update(&d, &sources, &server, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(read_set(&file).len(), 100);
    // More is refused; the file stays byte for byte.
    let before = fs::read(&file).unwrap();
    server.set("/t.txt", 200, list_of(1001));
    let r = update(&d, &sources, &server, false);
    assert!(!r.all_written());
    let c = &r.categories[0];
    assert_eq!(
        c.skipped,
        Some(SkipReason::Grown {
            entries: 1001,
            previous: 100
        })
    );
    assert!(
        r.to_string()
            .contains("more than 10 times the current 100 (use --force to write it)"),
        "{r}"
    );
    assert_eq!(fs::read(&file).unwrap(), before);
    // --force writes it.
    let r = update(&d, &sources, &server, true);
    assert!(r.all_written(), "{r}");
    assert_eq!(read_set(&file).len(), 1001);
    // An empty current file (forced) gives no size to grow from.
    fs::write(&file, "# emptied\n").unwrap();
    let r = update(&d, &sources, &server, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(d.names("out"), ["t.txt"]);
}

/// `http://` sources, `http://` RIPEstat endpoints and redirects from
/// https to http are refused; nothing is fetched in clear and nothing
/// is written. Redirects within https are followed, up to the cap.
#[test]
fn plain_http_is_refused_even_by_redirect() {
    let server = Server::start();
    let plain = Server::start_plain();
    plain.set("/t.txt", 200, list_of(3));
    let dir = TempDir::new("http");

    // An http:// source: the sources file is refused, nothing created.
    let sources = one_url(&dir, &plain.url("/t.txt"));
    let e = run_update(&opts(&dir, &sources)).unwrap_err();
    assert!(
        matches!(e.downcast_ref::<SourcesError>(), Some(SourcesError::Invalid { field, .. }) if field == "category.t.source[0].url"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}: `category.t.source[0].url`: `{}` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)",
            sources.display(),
            plain.url("/t.txt")
        )
    );
    // An http:// RIPEstat endpoint, from the file or the override.
    let asn = dir.write(
        "asn.toml",
        &format!(
            "[ripestat]\nurl = \"{}\"\n[category.t]\nsource = [{{ asn = 64500 }}]\n",
            plain.url("/r")
        ),
    );
    let e = run_update(&opts(&dir, &asn)).unwrap_err().to_string();
    assert!(
        e.contains("`ripestat.url`: ") && e.contains("is plain HTTP"),
        "{e}"
    );
    let mut o = opts(&dir, &one_url(&dir, &server.url("/t.txt")));
    o.ripestat_url = Some(plain.url("/r"));
    let e = run_update(&o).unwrap_err().to_string();
    assert!(
        e.starts_with("RIPEstat URL override: ") && e.contains("is plain HTTP"),
        "{e}"
    );
    assert!(!dir.path("out").exists(), "nothing created");

    // https -> https redirects (absolute and relative) are followed.
    server.set("/t.txt", 200, list_of(3));
    server.set("/moved", 301, server.url("/t.txt"));
    server.set("/relative", 302, "/moved");
    let sources = one_url(&dir, &server.url("/relative"));
    let r = update(&dir, &sources, &server, false);
    assert!(r.all_written(), "{r}");
    assert_eq!(read_set(&dir.path("out/t.txt")).len(), 3);
    let file = dir.path("out/t.txt");
    let before = fs::read(&file).unwrap();

    // https -> http: refused before connecting; the file stays.
    server.set("/down", 302, plain.url("/t.txt"));
    server.set("/down-later", 301, server.url("/down"));
    plain.set("/t.txt", 200, list_of(4));
    for start in ["/down", "/down-later"] {
        let sources = one_url(&dir, &server.url(start));
        let r = update(&dir, &sources, &server, true);
        let c = &r.categories[0];
        assert_eq!(
            c.skipped,
            Some(SkipReason::SourcesFailed { failed: 1 }),
            "{r}"
        );
        assert_eq!(
            c.sources[0].result,
            Err(format!(
                "{}: redirected to `{}`, plain HTTP: refused (sources are fetched over https:// only, redirects included)",
                server.url(start),
                plain.url("/t.txt")
            )),
            "{start}"
        );
        assert_eq!(fs::read(&file).unwrap(), before, "{start}");
    }
    assert_eq!(plain.hits(), Vec::<String>::new(), "nothing asked in clear");

    // A redirect loop ends at the cap.
    server.set("/loop", 302, server.url("/loop"));
    let r = update(&dir, &one_url(&dir, &server.url("/loop")), &server, true);
    assert_eq!(
        r.categories[0].sources[0].result,
        Err(format!(
            "{}: more than {MAX_REDIRECTS} redirects: refused",
            server.url("/loop")
        ))
    );
    let loops = server.hits().iter().filter(|h| *h == "/loop").count();
    assert_eq!(loops, MAX_REDIRECTS as usize + 1, "{:?}", server.hits());
    assert_eq!(fs::read(&file).unwrap(), before);
}

/// A broad-prefix case: which source, how it is broken, the error.
type BroadCase<'a> = (usize, Box<dyn Fn() + 'a>, String);

/// A source carrying a prefix broader than /8 or /16 fails, naming the
/// source, line and prefix; the category is not written (others are);
/// `allow_broad` accepts it. The shared range lists pass as they are.
#[test]
fn broad_prefixes_refused_unless_allowed() {
    let server = Server::start();
    let d = TempDir::new("broad");
    let real = ranges_dir()
        .map(|r| fs::read_to_string(r.join("hybridnetworks-whatsapp-ipv4.txt")).unwrap());
    let base = real.clone().unwrap_or_else(|| list_of(20));
    let base_lines = base.lines().count();
    server.set("/ok.txt", 200, base.clone());
    server.set("/b.txt", 200, list_of(2));
    server.set(
        "/ripestat?resource=AS64500",
        200,
        ripestat_json(64500, &["198.51.100.0/24"]),
    );
    let sources = d.write(
        "sources.toml",
        &format!(
            "timeout_secs = 10\n[category.a]\nsource = [{{ url = \"{}\" }}, {{ asn = 64500 }}, {{ path = \"local.txt\" }}]\n[category.b]\nsource = [{{ url = \"{}\" }}]\n",
            server.url("/ok.txt"),
            server.url("/b.txt")
        ),
    );
    d.write("local.txt", "203.0.113.0/24\n");
    let r = update(&d, &sources, &server, false);
    assert!(r.all_written(), "{r}");
    let a_file = d.path("out/a.txt");
    let before = fs::read(&a_file).unwrap();
    let refused = |at: &str, entry: &str, min: u8, family: &str| {
        format!(
            "{at}: `{entry}` is broader than /{min}, the shortest {family} prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
        )
    };
    let local = d.path("local.txt").display().to_string();
    let ok_url = server.url("/ok.txt");
    let rs = server.url("/ripestat?resource=AS64500");
    // (which source, how it is broken, the error)
    let cases: Vec<BroadCase> = vec![
        (
            0,
            Box::new(|| server.set("/ok.txt", 200, format!("{base}0.0.0.0/0\n"))),
            refused(
                &format!("{ok_url}:{}", base_lines + 1),
                "0.0.0.0/0",
                8,
                "IPv4",
            ),
        ),
        (
            0,
            Box::new(|| server.set("/ok.txt", 200, format!("{base}2.0.0.0/7 # wide\n"))),
            refused(
                &format!("{ok_url}:{}", base_lines + 1),
                "2.0.0.0/7",
                8,
                "IPv4",
            ),
        ),
        (
            0,
            Box::new(|| server.set("/ok.txt", 200, format!("::/0\n{base}"))),
            refused(&format!("{ok_url}:1"), "::/0", 16, "IPv6"),
        ),
        (
            1,
            Box::new(|| {
                server.set(
                    "/ripestat?resource=AS64500",
                    200,
                    ripestat_json(64500, &["198.51.100.0/24", "2000::/15"]),
                );
            }),
            refused(
                &format!("{rs}: `data.prefixes[1].prefix`"),
                "2000::/15",
                16,
                "IPv6",
            ),
        ),
        (
            2,
            Box::new(|| {
                d.write("local.txt", "203.0.113.0/24\n0.0.0.0/0\n");
            }),
            refused(&format!("{local}:2"), "0.0.0.0/0", 8, "IPv4"),
        ),
    ];
    for (i, (which, breaks, want)) in cases.iter().enumerate() {
        server.set("/ok.txt", 200, base.clone());
        server.set(
            "/ripestat?resource=AS64500",
            200,
            ripestat_json(64500, &["198.51.100.0/24"]),
        );
        d.write("local.txt", "203.0.113.0/24\n");
        breaks();
        server.set("/b.txt", 200, list_of(i + 3));
        let r = update(&d, &sources, &server, true);
        let a = r.category("a").unwrap();
        assert_eq!(
            a.skipped,
            Some(SkipReason::SourcesFailed { failed: 1 }),
            "case {i}: {r}"
        );
        assert_eq!(a.sources[*which].result, Err(want.clone()), "case {i}");
        assert!(r.to_string().contains(want.as_str()), "case {i}: {r}");
        assert_eq!(
            fs::read(&a_file).unwrap(),
            before,
            "case {i}: a.txt changed"
        );
        assert!(r.category("b").unwrap().written(), "case {i}: {r}");
        assert_eq!(read_set(&d.path("out/b.txt")).len(), i + 3);
        // allow_broad writes it, prefix and all.
        let mut o = opts(&d, &sources);
        o.ripestat_url = Some(server.url("/ripestat"));
        o.allow_broad = true;
        o.force = true;
        let r = run_update(&o).unwrap();
        assert!(r.all_written(), "case {i}: {r}");
        let entry = want.split('`').rev().nth(1).unwrap();
        assert!(
            read_set(&a_file).contains(&cidr(entry)),
            "case {i}: {entry}"
        );
        fs::write(&a_file, &before).unwrap();
    }
    if real.is_none() {
        println!("the shared range lists are absent: tested on a made-up list");
    }
}

#[test]
fn empty_refused_unless_forced() {
    let server = Server::start();
    server.set("/ripestat?resource=AS64500", 200, ripestat_json(64500, &[]));
    let d = TempDir::new("empty");
    let sources = d.write(
        "sources.toml",
        "timeout_secs = 10\n[category.t]\nsource = [{ asn = 64500 }]\n",
    );
    let file = d.path("out/t.txt");
    // No file yet: an empty list is refused, nothing is created.
    let r = update(&d, &sources, &server, false);
    assert_eq!(r.categories[0].skipped, Some(SkipReason::Empty));
    assert_eq!(r.categories[0].sources[0].result, Ok(0));
    assert!(!file.exists());
    // An existing list is kept.
    fs::create_dir_all(d.path("out")).unwrap();
    fs::write(&file, "192.0.2.0/24\n").unwrap();
    let r = update(&d, &sources, &server, false);
    assert_eq!(r.categories[0].skipped, Some(SkipReason::Empty));
    assert_eq!(r.categories[0].previous, Some(1));
    assert_eq!(fs::read_to_string(&file).unwrap(), "192.0.2.0/24\n");
    // --force writes the header alone.
    let r = update(&d, &sources, &server, true);
    assert!(r.all_written(), "{r}");
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("#   entries: 0\n"), "{text}");
    assert!(lists::parse_list("t", &text, false).unwrap().is_empty());
    // A plain list with no entries is a failed source, even with --force.
    server.set("/e.txt", 200, "# nothing here\n");
    let sources = one_url(&d, &server.url("/e.txt"));
    let r = update(&d, &sources, &server, true);
    assert_eq!(
        r.categories[0].sources[0].result,
        Err(format!(
            "{}: no entries (an empty list is taken as a broken source)",
            server.url("/e.txt")
        ))
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), text);
}

/// A failure case: what, the second source of `a`, a route to set, the
/// start of the expected error.
type Case = (
    &'static str,
    String,
    Option<(&'static str, u16, Vec<u8>)>,
    String,
);

/// Each way a source can fail leaves its category's file as it was,
/// while another category updates.
#[test]
fn failing_source_leaves_category() {
    let server = Server::start();
    let d = TempDir::new("fail");
    let dead = format!("https://127.0.0.1:{}/gone.txt", dead_port());
    let sources_with = |second: &str| {
        d.write(
            "sources.toml",
            &format!(
                r#"
timeout_secs = 10
[category.a]
source = [{{ url = "{good}" }}, {second}]
[category.b]
source = [{{ url = "{b}" }}]
"#,
                good = server.url("/a1.txt"),
                b = server.url("/b.txt"),
            ),
        )
    };
    server.set("/a1.txt", 200, "192.0.2.0/25\n");
    server.set("/a2.txt", 200, "192.0.2.128/25\n");
    server.set(
        "/ripestat?resource=AS64500",
        200,
        ripestat_json(64500, &["198.51.100.0/24"]),
    );
    server.set("/b.txt", 200, list_of(1));
    let sources = sources_with(&format!("{{ url = \"{}\" }}", server.url("/a2.txt")));
    assert!(update(&d, &sources, &server, false).all_written());
    let a_file = d.path("out/a.txt");
    let a_before = fs::read(&a_file).unwrap();
    let a2 = server.url("/a2.txt");
    let rs = server.url("/ripestat?resource=AS64500");

    let cases: Vec<Case> = vec![
        (
            "HTTP 500",
            format!("{{ url = \"{a2}\" }}"),
            Some(("/a2.txt", 500, "boom".into())),
            format!("{a2}: HTTP status 500 Internal Server Error"),
        ),
        (
            "HTTP 404",
            format!("{{ url = \"{}\" }}", server.url("/missing.txt")),
            None,
            format!("{}: HTTP status 404 Not Found", server.url("/missing.txt")),
        ),
        (
            "connection refused",
            format!("{{ url = \"{dead}\" }}"),
            None,
            format!("{dead}: "),
        ),
        (
            "garbage text",
            format!("{{ url = \"{a2}\" }}"),
            Some((
                "/a2.txt",
                200,
                "192.0.2.128/25\n<html><body>Down</body></html>\n".into(),
            )),
            format!(
                "{a2}:2: `<html><body>Down</body></html>` is not an IPv4 or IPv6 address or CIDR"
            ),
        ),
        (
            "not UTF-8",
            format!("{{ url = \"{a2}\" }}"),
            Some(("/a2.txt", 200, b"192.0.2.128/25\n\xfe\xff\n".to_vec())),
            format!("{a2}:2: not valid UTF-8"),
        ),
        (
            "garbage JSON",
            "{ asn = 64500 }".to_owned(),
            Some(("/ripestat?resource=AS64500", 200, "{\"data\": nope".into())),
            format!("{rs}: not a RIPEstat JSON response: expected ident at line 1 column 11"),
        ),
        (
            "RIPEstat 500",
            "{ asn = 64500 }".to_owned(),
            Some(("/ripestat?resource=AS64500", 500, "".into())),
            format!("{rs}: HTTP status 500 Internal Server Error"),
        ),
        (
            "missing local file",
            "{ path = \"nope.txt\" }".to_owned(),
            None,
            format!(
                "{}: No such file or directory (os error 2)",
                d.path("nope.txt").display()
            ),
        ),
    ];
    for (round, (what, second, route, want)) in cases.into_iter().enumerate() {
        let sources = sources_with(&second);
        if let Some((path, status, body)) = route {
            server.set(path, status, body);
        }
        // b changes every round, so a write is visible.
        server.set("/b.txt", 200, list_of(round + 2));
        let r = update(&d, &sources, &server, false);
        assert!(!r.all_written(), "{what}: {r}");
        let a = r.category("a").unwrap();
        assert_eq!(
            a.skipped,
            Some(SkipReason::SourcesFailed { failed: 1 }),
            "{what}"
        );
        assert_eq!(a.sources[0].result, Ok(1), "{what}");
        let err = a.sources[1].result.clone().unwrap_err();
        assert!(err.starts_with(&want), "{what}: {err}\nwanted: {want}");
        assert!(a.sources[1].fetched.is_none());
        assert_eq!(a.previous, Some(2), "{what}");
        assert_eq!(
            fs::read(&a_file).unwrap(),
            a_before,
            "{what}: a.txt changed"
        );
        let b = r.category("b").unwrap();
        assert!(b.written(), "{what}: {r}");
        assert_eq!(read_set(&d.path("out/b.txt")).len(), round + 2, "{what}");
        assert!(r.to_string().contains("  FAILED  "), "{r}");
        assert_eq!(d.names("out"), ["a.txt", "b.txt"], "{what}");
    }
}

#[test]
fn bad_sources_file_writes_nothing() {
    let d = TempDir::new("bad");
    let sources = d.write(
        "sources.toml",
        "[category.t]\n[[category.t.source]]\nurl = \"http://127.0.0.1:9/x\"\nasn = 1\n",
    );
    let e = run_update(&opts(&d, &sources)).unwrap_err();
    let typed = e.downcast_ref::<SourcesError>().expect("a SourcesError");
    assert!(
        matches!(typed, SourcesError::Invalid { field, .. } if field == "category.t.source[0]"),
        "{typed:?}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "{}: `category.t.source[0]`: give exactly one of",
            sources.display()
        )),
        "{e}"
    );
    assert!(!d.path("out").exists(), "nothing created");
    let e = run_update(&opts(&d, &d.path("missing.toml"))).unwrap_err();
    assert!(matches!(
        e.downcast_ref::<SourcesError>(),
        Some(SourcesError::Read { .. })
    ));
    // A bad override is refused before anything is fetched or created.
    let good = d.write(
        "good.toml",
        &format!(
            "[ripestat]\nurl = \"https://127.0.0.1:{}/r\"\n[category.t]\nsource = [{{ asn = 1 }}]\n",
            dead_port()
        ),
    );
    let mut o = opts(&d, &good);
    o.ripestat_url = Some("nope".into());
    assert_eq!(
        run_update(&o).unwrap_err().to_string(),
        "RIPEstat URL override: `nope` is not an https:// URL"
    );
    assert!(!d.path("out").exists());
}

#[test]
fn unreadable_previous_file() {
    let server = Server::start();
    server.set("/t.txt", 200, list_of(3));
    let d = TempDir::new("prev");
    let sources = one_url(&d, &server.url("/t.txt"));
    // The current file is a directory: it cannot be read, so it is not replaced.
    fs::create_dir_all(d.path("out/t.txt")).unwrap();
    let r = update(&d, &sources, &server, true);
    assert!(
        matches!(&r.categories[0].skipped, Some(SkipReason::PreviousUnreadable(e)) if e.starts_with(&d.path("out/t.txt").display().to_string())),
        "{r}"
    );
    assert!(d.path("out/t.txt").is_dir());
    // A current file that does not parse is sized by its entry lines.
    fs::remove_dir(d.path("out/t.txt")).unwrap();
    fs::write(
        d.path("out/t.txt"),
        "# x\n10.0.0.0/8\nbogus\n1.2.3.4\n5.6.7.8\n10.1.0.0/16\n10.2.0.0/16\n10.3.0.0/16\n",
    )
    .unwrap();
    let r = update(&d, &sources, &server, false);
    let c = &r.categories[0];
    assert_eq!(
        c.skipped,
        Some(SkipReason::Shrunk {
            entries: 3,
            previous: 7
        }),
        "{r}"
    );
    assert_eq!(c.notes.len(), 1);
    assert!(c.notes[0].contains("does not parse"), "{:?}", c.notes);
}
