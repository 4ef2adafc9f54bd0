use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::UNIX_EPOCH;

use super::*;
use crate::lists::tests::TempDir;

mod loopback;
mod pieces;
mod sources;

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
