//! `flowfilter list update` at the command line, without the network: the
//! sources are local files (plain CIDR lists, `path = ...`), so what is
//! checked is the binary's flags and exit codes: an `http://` source is
//! refused as a bad sources file (exit 2), a too-broad prefix fails its
//! category (exit 1, naming file, line and prefix, nothing written) unless
//! `--allow-broad`, and a list more than ten times larger is refused unless
//! `--force`. The fetching itself (HTTPS only, redirects) is tested against
//! a loopback HTTPS server in filter-user/src/lists/update/tests/loopback.rs.
//!
//! The binary: `FLOWFILTER_BIN`, else `$CARGO_TARGET_DIR/debug/flowfilter`,
//! else `<workspace>/target/debug/flowfilter`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use flowfilter_tests::kit::{binary, slash24s};

/// A temporary directory with a sources file for category `t` from
/// `t-src.txt`; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "ff-list-update-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        std::fs::write(
            d.join("sources.toml"),
            "[category.t]\n[[category.t.source]]\npath = \"t-src.txt\"\n",
        )
        .expect("sources");
        Dir(d)
    }

    fn source(&self, text: &str) {
        std::fs::write(self.0.join("t-src.txt"), text).expect("source");
    }

    fn out(&self) -> PathBuf {
        self.0.join("out/t.txt")
    }

    /// `flowfilter list update` with `extra`: (exit code, stdout + stderr).
    fn update(&self, sources: &str, extra: &[&str]) -> (i32, String) {
        let out = Command::new(binary())
            .args(["list", "update", "--sources"])
            .arg(self.0.join(sources))
            .arg("--out")
            .arg(self.0.join("out"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run flowfilter list update");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` distinct /24s in 10/8.
fn list_of(n: u32) -> String {
    slash24s(Ipv4Addr::new(10, 0, 0, 0), n)
}

#[test]
fn http_sources_are_a_bad_sources_file() {
    let d = Dir::new();
    std::fs::write(
        d.0.join("http.toml"),
        "[category.t]\n[[category.t.source]]\nurl = \"http://127.0.0.1:9/t.txt\"\n",
    )
    .expect("sources");
    let (code, text) = d.update("http.toml", &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("`category.t.source[0].url`: `http://127.0.0.1:9/t.txt` is plain HTTP: sources are fetched over https:// only"),
        "{text}"
    );
    assert!(!d.0.join("out").exists(), "nothing created: {text}");
}

#[test]
fn broad_prefixes_need_allow_broad() {
    let d = Dir::new();
    let src = d.0.join("t-src.txt").display().to_string();
    for (entry, line) in [("0.0.0.0/0", 3), ("::/0", 3), ("2.0.0.0/7", 3)] {
        d.source(&format!("# mine\n192.0.2.0/24\n{entry}\n"));
        let (code, text) = d.update("sources.toml", &[]);
        assert_eq!(code, 1, "{entry}: {text}");
        assert!(
            text.contains(&format!("{src}:{line}: `{entry}` is broader than /")),
            "{entry}: {text}"
        );
        assert!(text.contains("--allow-broad accepts it"), "{text}");
        assert!(!d.out().exists(), "{entry}: written anyway");
        // --force is not enough.
        let (code, _) = d.update("sources.toml", &["--force"]);
        assert_eq!(code, 1, "{entry}: --force wrote it");
        assert!(!d.out().exists());
    }
    let (code, text) = d.update("sources.toml", &["--allow-broad"]);
    assert_eq!(code, 0, "{text}");
    let written = std::fs::read_to_string(d.out()).expect("written");
    assert!(written.contains("\n2.0.0.0/7\n"), "{written}");
}

#[test]
fn tenfold_growth_needs_force() {
    let d = Dir::new();
    d.source(&list_of(4));
    let (code, text) = d.update("sources.toml", &[]);
    assert_eq!(code, 0, "{text}");
    let before = std::fs::read(d.out()).expect("written");
    d.source(&list_of(41));
    let (code, text) = d.update("sources.toml", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("the new list has 41 entries, more than 10 times the current 4 (use --force to write it)"),
        "{text}"
    );
    assert_eq!(std::fs::read(d.out()).expect("kept"), before);
    let (code, text) = d.update("sources.toml", &["--force"]);
    assert_eq!(code, 0, "{text}");
    assert_ne!(std::fs::read(d.out()).expect("written"), before);
}
