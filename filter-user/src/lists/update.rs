//! `flowfilter list update`: build the category list files from public sources.
//!
//! The sources are named in a TOML file (`lists/sources.toml` in the
//! repository; the schema is below). For each category the update fetches
//! every source, merges and validates the prefixes, and replaces
//! `OUT/CATEGORY.txt` atomically (temporary file in the same directory,
//! fsync, rename, fsync of the directory). The written file starts with a
//! header naming each source: what it is, where it was fetched from, when
//! (UTC) and how many entries it gave; then one CIDR a line, IPv4 first,
//! sorted, duplicates merged. Every written file is checked with
//! [`lists::parse_list`] before it replaces the old one.
//!
//! Sources are fetched over HTTPS only: an `http://` URL is refused when the
//! sources file is read, and so is a redirect to one (every hop is checked;
//! at most [`MAX_REDIRECTS`] are followed). A list fetched in clear could be
//! rewritten on the way, and a list is what decides which calls drop.
//!
//! A category is left as it was (and the report says why) when:
//! - any of its sources fails (network, HTTP status, a body that does not
//!   parse: errors name the source and the line), other categories still
//!   update;
//! - a source gives a prefix broader than /8 (IPv4) or /16 (IPv6), such as
//!   `0.0.0.0/0`, which would drop nearly every call: the source fails,
//!   naming the line and the prefix, unless [`UpdateOptions::allow_broad`]
//!   is set;
//! - the new list is empty, less than half the size of the current file, or
//!   more than ten times its size, unless [`UpdateOptions::force`] is set.
//!
//! [`run_update`] returns `Err` only when nothing could be tried: the sources
//! file is unreadable or invalid (a [`SourcesError`], an input error: exit
//! code 2 at the CLI) or the output directory cannot be created. Otherwise it
//! returns an [`UpdateReport`]; when [`UpdateReport::all_written`] is false
//! (a category was refused or a source failed) the CLI prints the report and
//! exits with code 1.
//!
//! # Sources file
//!
//! ```toml
//! # Optional. RIPEstat endpoint; `?resource=AS<n>` (or `&resource=...`) is appended.
//! [ripestat]
//! url = "https://stat.ripe.net/data/announced-prefixes/data.json"
//!
//! # Optional. Seconds allowed for each fetch (connect, request and body), 1..=3600.
//! timeout_secs = 30
//!
//! # One table per category; the key is the list name (`telegram` -> telegram.txt).
//! [category.telegram]
//! note = "Optional text copied into the header of telegram.txt."
//!
//! # One entry per source, at least one. Exactly one of `url`, `path` or `asn`:
//! [[category.telegram.source]]
//! name = "Telegram's published list"   # optional, what the source is
//! url = "https://core.telegram.org/resources/cidr.txt"   # plain CIDR list over https
//!
//! [[category.telegram.source]]
//! path = "extra/telegram-local.txt"   # plain CIDR list, relative to the sources file
//! normalize = true                    # optional: clear host bits instead of failing
//!
//! [[category.telegram.source]]
//! asn = 62041            # or "AS62041": announced prefixes from RIPEstat
//! ```
//!
//! A plain CIDR list has the format of a list file (see [`crate::lists`]):
//! one CIDR or address a line, `#` comments. A plain list that gives no
//! entry counts as failed (an empty body is more likely breakage than news);
//! an ASN that announces nothing gives 0 entries and is not an error (the
//! category's empty and shrink checks still apply).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Deserialize;

use crate::lists::{self, Cidr};

/// Default sources file, relative to the working directory.
pub const DEFAULT_SOURCES: &str = "lists/sources.toml";
/// Default output directory (the daemon's default `--lists`).
pub const DEFAULT_OUT: &str = "/etc/flowfilter/lists";
/// Default RIPEstat announced-prefixes endpoint.
pub const DEFAULT_RIPESTAT_URL: &str = "https://stat.ripe.net/data/announced-prefixes/data.json";
/// Default time allowed for one fetch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest body accepted from one source.
pub const MAX_BODY: u64 = 32 << 20;
/// Longest `timeout_secs`.
const MAX_TIMEOUT_SECS: u64 = 3600;
/// Redirects followed per fetch (each to `https://` only).
pub const MAX_REDIRECTS: u32 = 5;
/// Shortest IPv4 prefix accepted without [`UpdateOptions::allow_broad`].
pub const MIN_V4_PREFIX: u8 = 8;
/// Shortest IPv6 prefix accepted without [`UpdateOptions::allow_broad`].
pub const MIN_V6_PREFIX: u8 = 16;
/// A new list larger than this many times the current one is refused
/// without [`UpdateOptions::force`].
pub const MAX_GROWTH: usize = 10;

/// What [`run_update`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateOptions {
    /// The sources file (default [`DEFAULT_SOURCES`]).
    pub sources: PathBuf,
    /// Directory the category files are written to (default [`DEFAULT_OUT`];
    /// created when missing).
    pub out: PathBuf,
    /// Write lists that are empty, less than half or more than ten times
    /// their previous size.
    pub force: bool,
    /// Accept prefixes broader than /8 (IPv4) or /16 (IPv6).
    pub allow_broad: bool,
    /// Use this RIPEstat endpoint instead of the sources file's (default
    /// `None`; tests point it at a loopback server).
    pub ripestat_url: Option<String>,
    /// Honour `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` from the
    /// environment (default `true`).
    pub env_proxy: bool,
    /// Trust these certificates (DER) instead of the Web PKI roots (default
    /// `None`; tests trust their loopback server's).
    pub tls_roots: Option<Vec<Vec<u8>>>,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        UpdateOptions {
            sources: PathBuf::from(DEFAULT_SOURCES),
            out: PathBuf::from(DEFAULT_OUT),
            force: false,
            allow_broad: false,
            ripestat_url: None,
            env_proxy: true,
            tls_roots: None,
        }
    }
}

/// Why the sources file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The path.
        file: String,
        /// The error.
        source: io::Error,
    },
    /// TOML syntax, an unknown field or a value of the wrong type.
    #[error("{}{}{what}", at(.file, *.line, *.column), field_prefix(.field))]
    Syntax {
        /// The path.
        file: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// Path of the field (`category.telegram.source[1].asn`), empty
        /// when the error is not about one field.
        field: String,
        /// What is wrong.
        what: String,
    },
    /// A value that is well-typed but not acceptable.
    #[error("{file}: `{field}`: {what}")]
    Invalid {
        /// The path.
        file: String,
        /// Path of the field (`category.telegram.source[1]`).
        field: String,
        /// What is wrong.
        what: String,
    },
}

/// `file:line:column: `, or `file: ` when the position is unknown.
fn at(file: &str, line: usize, column: usize) -> String {
    if line == 0 {
        format!("{file}: ")
    } else {
        format!("{file}:{line}:{column}: ")
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("`{field}`: ")
    }
}

/// The validated sources file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sources {
    /// RIPEstat endpoint (without the query).
    pub ripestat_url: String,
    /// Time allowed for one fetch.
    pub timeout: Duration,
    /// Categories, sorted by name.
    pub categories: Vec<CategorySources>,
}

/// The sources of one category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategorySources {
    /// Category name (the file is `NAME.txt`).
    pub name: String,
    /// Text for the file header.
    pub note: Option<String>,
    /// The sources, in file order.
    pub sources: Vec<Source>,
}

/// One source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// What it is (given, or made up from the location).
    pub name: String,
    /// Where it comes from.
    pub kind: SourceKind,
    /// Clear host bits instead of failing.
    pub normalize: bool,
}

/// Where a source comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A plain CIDR list over HTTPS.
    Url(String),
    /// A plain CIDR list in a local file (absolute, or relative to the
    /// working directory after resolution against the sources file).
    Path(PathBuf),
    /// Prefixes announced by an AS, from RIPEstat.
    Ripestat {
        /// The AS number.
        asn: u32,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    ripestat: Option<RawRipestat>,
    timeout_secs: Option<u64>,
    category: BTreeMap<String, RawCategory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRipestat {
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    note: Option<String>,
    source: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Option<String>,
    url: Option<String>,
    path: Option<PathBuf>,
    asn: Option<Asn>,
    #[serde(default)]
    normalize: bool,
}

/// An AS number given as `62041` or `"AS62041"`.
struct Asn(u32);

impl<'de> Deserialize<'de> for Asn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Asn, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Asn;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number like 62041 or \"AS62041\"")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Asn, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("AS number {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Asn, E> {
                match u32::try_from(v) {
                    Ok(0) => Err(E::custom("AS number 0 is reserved")),
                    Ok(n) => Ok(Asn(n)),
                    Err(_) => Err(E::custom(format!(
                        "AS number {v} is larger than 4294967295"
                    ))),
                }
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Asn, E> {
                let digits = v
                    .strip_prefix("AS")
                    .or_else(|| v.strip_prefix("as"))
                    .unwrap_or(v);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!(
                        "`{v}` is not an AS number (write 62041 or \"AS62041\")"
                    )));
                }
                let n = digits
                    .parse::<u64>()
                    .map_err(|_| E::custom(format!("AS number {v} is too large")))?;
                self.visit_u64(n)
            }
        }
        d.deserialize_any(V)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before, |i| &before[i + 1..])
        .chars()
        .count()
        + 1;
    (line, col)
}

/// Whether `url` is an `https://` URL with a host and no whitespace or
/// control characters (`http://` is refused: a list fetched in clear can be
/// rewritten on the way).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` contains whitespace or control characters"));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") {
        return Err(format!(
            "`{url}` is plain HTTP: sources are fetched over https:// only (a list fetched in clear can be rewritten on the way)"
        ));
    }
    match lower.strip_prefix("https://") {
        None => Err(format!("`{url}` is not an https:// URL")),
        Some(r) if r.is_empty() || r.starts_with('/') => Err(format!("`{url}` has no host")),
        Some(_) => Ok(()),
    }
}

impl Sources {
    /// Read and validate a sources file; relative `path` sources are resolved
    /// against the file's directory.
    pub fn load(file: &Path) -> Result<Sources, SourcesError> {
        let shown = file.display().to_string();
        let text = fs::read_to_string(file).map_err(|source| SourcesError::Read {
            file: shown.clone(),
            source,
        })?;
        let base = file.parent().unwrap_or(Path::new(""));
        Sources::parse(&shown, &text, base)
    }

    /// Parse and validate the text of a sources file. `file` names it in
    /// errors; relative `path` sources are joined to `base`.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Sources, SourcesError> {
        let raw: RawFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let field = e.path().to_string();
                let field = if field == "." { String::new() } else { field };
                let inner = e.into_inner();
                let (line, column) = inner.span().map_or((0, 0), |s| line_col(text, s.start));
                SourcesError::Syntax {
                    file: file.to_owned(),
                    line,
                    column,
                    field,
                    what: inner.message().trim_end().replace('\n', ": "),
                }
            })?;
        let invalid = |field: String, what: String| SourcesError::Invalid {
            file: file.to_owned(),
            field,
            what,
        };
        let ripestat_url = match raw.ripestat.and_then(|r| r.url) {
            Some(url) => {
                check_url(&url).map_err(|w| invalid("ripestat.url".into(), w))?;
                url
            }
            None => DEFAULT_RIPESTAT_URL.to_owned(),
        };
        let timeout = match raw.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err(invalid(
                    "timeout_secs".into(),
                    format!("{s} is not between 1 and {MAX_TIMEOUT_SECS}"),
                ));
            }
        };
        if raw.category.is_empty() {
            return Err(invalid(
                "category".into(),
                "no category given (add a [category.NAME] table with [[category.NAME.source]] entries)".into(),
            ));
        }
        let mut categories = Vec::with_capacity(raw.category.len());
        for (cat_name, cat) in raw.category {
            let field = format!("category.{cat_name}");
            if !lists::valid_category_name(&cat_name) {
                return Err(invalid(
                    field,
                    format!(
                        "`{cat_name}` is not a valid category name (a-z, 0-9, _ and -, at most {} characters, starting with a letter or digit)",
                        lists::MAX_NAME_LEN
                    ),
                ));
            }
            if cat.source.is_empty() {
                return Err(invalid(format!("{field}.source"), "no source given".into()));
            }
            let mut sources: Vec<Source> = Vec::with_capacity(cat.source.len());
            for (i, s) in cat.source.into_iter().enumerate() {
                let field = format!("{field}.source[{i}]");
                let kind = match (s.url, s.path, s.asn) {
                    (Some(url), None, None) => {
                        check_url(&url).map_err(|w| invalid(format!("{field}.url"), w))?;
                        SourceKind::Url(url)
                    }
                    (None, Some(path), None) => {
                        if path.as_os_str().is_empty() {
                            return Err(invalid(format!("{field}.path"), "empty path".into()));
                        }
                        SourceKind::Path(base.join(path))
                    }
                    (None, None, Some(Asn(asn))) => SourceKind::Ripestat { asn },
                    _ => {
                        return Err(invalid(
                            field,
                            "give exactly one of `url` (plain CIDR list over https), `path` (plain CIDR list in a file) or `asn` (announced prefixes from RIPEstat)".into(),
                        ));
                    }
                };
                if s.normalize && matches!(kind, SourceKind::Ripestat { .. }) {
                    return Err(invalid(
                        format!("{field}.normalize"),
                        "only plain CIDR lists (`url`, `path`) can be normalised".into(),
                    ));
                }
                let name = match s.name {
                    Some(n) if n.trim().is_empty() || n.chars().any(char::is_control) => {
                        return Err(invalid(
                            format!("{field}.name"),
                            "must be one non-empty line".into(),
                        ));
                    }
                    Some(n) => n.trim().to_owned(),
                    None => default_name(&kind),
                };
                if let Some(j) = sources.iter().position(|o| o.kind == kind) {
                    return Err(invalid(
                        field,
                        format!("same source as `category.{cat_name}.source[{j}]`"),
                    ));
                }
                sources.push(Source {
                    name,
                    kind,
                    normalize: s.normalize,
                });
            }
            categories.push(CategorySources {
                name: cat_name,
                note: cat.note.filter(|n| !n.trim().is_empty()),
                sources,
            });
        }
        Ok(Sources {
            ripestat_url,
            timeout,
            categories,
        })
    }
}

fn default_name(kind: &SourceKind) -> String {
    match kind {
        SourceKind::Url(url) => format!("CIDR list {url}"),
        SourceKind::Path(path) => format!("CIDR list {}", path.display()),
        SourceKind::Ripestat { asn } => format!("prefixes announced by AS{asn} (RIPEstat)"),
    }
}

/// The RIPEstat request for `asn`.
fn ripestat_request(base: &str, asn: u32) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}resource=AS{asn}")
}

/// What happened to one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceReport {
    /// What the source is.
    pub name: String,
    /// Where it was fetched from (URL or path).
    pub location: String,
    /// When it was fetched (only when it succeeded).
    pub fetched: Option<SystemTime>,
    /// Distinct prefixes it gave, or why it failed (naming the location and,
    /// for a parse error, the line).
    pub result: Result<usize, String>,
}

/// Why a category file was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// `failed` of its sources failed (see [`CategoryReport::sources`]).
    SourcesFailed {
        /// How many.
        failed: usize,
    },
    /// The new list would be empty (`--force` writes it).
    Empty,
    /// The new list has less than half the entries of the current file
    /// (`--force` writes it).
    Shrunk {
        /// Entries of the new list.
        entries: usize,
        /// Entries of the current file.
        previous: usize,
    },
    /// The new list has more than [`MAX_GROWTH`] times the entries of the
    /// current file (`--force` writes it).
    Grown {
        /// Entries of the new list.
        entries: usize,
        /// Entries of the current file.
        previous: usize,
    },
    /// The current file could not be read.
    PreviousUnreadable(String),
    /// The new file did not pass its check (a bug).
    Invalid(String),
    /// Writing or renaming failed.
    WriteFailed(String),
}

impl SkipReason {
    /// Whether `--force` would have written the list.
    pub fn forceable(&self) -> bool {
        matches!(
            self,
            SkipReason::Empty | SkipReason::Shrunk { .. } | SkipReason::Grown { .. }
        )
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::SourcesFailed { failed: 1 } => f.write_str("a source failed"),
            SkipReason::SourcesFailed { failed } => write!(f, "{failed} sources failed"),
            SkipReason::Empty => f.write_str("the new list is empty (use --force to write it)"),
            SkipReason::Shrunk { entries, previous } => write!(
                f,
                "the new list has {entries} entries, less than half of the current {previous} (use --force to write it)"
            ),
            SkipReason::Grown { entries, previous } => write!(
                f,
                "the new list has {entries} entries, more than {MAX_GROWTH} times the current {previous} (use --force to write it)"
            ),
            SkipReason::PreviousUnreadable(e) => write!(f, "cannot read the current file: {e}"),
            SkipReason::Invalid(e) => write!(f, "the new list failed its check: {e}"),
            SkipReason::WriteFailed(e) => write!(f, "writing failed: {e}"),
        }
    }
}

/// What happened to one category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryReport {
    /// Category name.
    pub name: String,
    /// The category file.
    pub path: PathBuf,
    /// Entries of the new list (written, or refused); 0 when a source failed.
    pub entries: usize,
    /// Entries of the file before the update (`None`: there was none).
    pub previous: Option<usize>,
    /// Each source's result, in the order of the sources file.
    pub sources: Vec<SourceReport>,
    /// `None`: the file was written; otherwise why it was left as it was.
    pub skipped: Option<SkipReason>,
    /// Remarks that are not failures (e.g. the current file did not parse).
    pub notes: Vec<String>,
}

impl CategoryReport {
    /// Whether the file was written.
    pub fn written(&self) -> bool {
        self.skipped.is_none()
    }
}

/// The result of [`run_update`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateReport {
    /// The sources file used.
    pub sources_file: PathBuf,
    /// The output directory.
    pub out: PathBuf,
    /// One report per category, sorted by name.
    pub categories: Vec<CategoryReport>,
}

impl UpdateReport {
    /// Whether every category was written (the CLI exits 1 otherwise).
    pub fn all_written(&self) -> bool {
        self.categories.iter().all(CategoryReport::written)
    }

    /// The category named `name`.
    pub fn category(&self, name: &str) -> Option<&CategoryReport> {
        self.categories.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for UpdateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.categories {
            let previous = match c.previous {
                Some(p) => format!("previously {p}"),
                None => "new file".to_owned(),
            };
            match &c.skipped {
                None => writeln!(
                    f,
                    "{}: wrote {} entries to {} ({previous})",
                    c.name,
                    c.entries,
                    c.path.display()
                )?,
                Some(why) => writeln!(
                    f,
                    "{}: NOT written, {} left as it was: {why}",
                    c.name,
                    c.path.display()
                )?,
            }
            for s in &c.sources {
                match &s.result {
                    Ok(n) => writeln!(f, "  ok      {}: {n} entries from {}", s.name, s.location)?,
                    Err(e) => writeln!(f, "  FAILED  {}: {e}", s.name)?,
                }
            }
            for n in &c.notes {
                writeln!(f, "  note: {n}")?;
            }
        }
        let written = self.categories.iter().filter(|c| c.written()).count();
        let total = self.categories.len();
        if written == total {
            write!(
                f,
                "all {total} categories written to {}",
                self.out.display()
            )
        } else {
            write!(
                f,
                "{written} of {total} categories written to {}; {} left as they were",
                self.out.display(),
                total - written
            )?;
            if self
                .categories
                .iter()
                .any(|c| c.skipped.as_ref().is_some_and(SkipReason::forceable))
            {
                write!(
                    f,
                    " (check the sources, then use --force to accept the new size)"
                )?;
            }
            Ok(())
        }
    }
}

/// A fetched and parsed source.
struct Fetched {
    cidrs: BTreeSet<Cidr>,
    fetched: SystemTime,
}

/// Fetch `url`: the body of a 2xx response. The agent follows at most
/// [`MAX_REDIRECTS`] redirects and refuses any hop that is not `https://`
/// ([`agent`]); the final address is checked again here.
fn http_get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::RequireHttpsOnly(to) => format!(
            "{url}: redirected to `{to}`, plain HTTP: refused (sources are fetched over https:// only, redirects included)"
        ),
        ureq::Error::TooManyRedirects => {
            format!("{url}: more than {MAX_REDIRECTS} redirects: refused")
        }
        e => format!("{url}: {e}"),
    })?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(format!(
            "{url}: HTTP status {status} without a usable `Location`"
        ));
    }
    if !status.is_success() {
        return Err(format!("{url}: HTTP status {status}"));
    }
    let at = ureq::ResponseExt::get_uri(&resp);
    if at.scheme_str() != Some("https") {
        return Err(format!(
            "{url}: answered from `{at}`, not https://: refused"
        ));
    }
    resp.body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| format!("{url}: reading the response: {e}"))
}

/// `bytes` as text, or `location:line: not valid UTF-8`.
fn utf8(location: &str, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.split(|&b| b == b'\n').count();
        format!("{location}:{line}: not valid UTF-8")
    })
}

/// Whether a prefix of length `len` in a `width`-bit family (32 or 128) is
/// broader than [`MIN_V4_PREFIX`] / [`MIN_V6_PREFIX`].
pub fn is_broad(width: u8, len: u8) -> bool {
    len < if width == 32 {
        MIN_V4_PREFIX
    } else {
        MIN_V6_PREFIX
    }
}

/// Why a broad prefix is refused: `at: `prefix` ...`.
fn broad_error(at: &str, entry: &str, width: u8) -> String {
    let (min, family) = if width == 32 {
        (MIN_V4_PREFIX, "IPv4")
    } else {
        (MIN_V6_PREFIX, "IPv6")
    };
    format!(
        "{at}: `{entry}` is broader than /{min}, the shortest {family} prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
    )
}

/// The first entry of a plain CIDR list (one that parses) broader than
/// /8 or /16, as `location:line: ...`.
fn check_broad_text(location: &str, text: &str) -> Result<(), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.split_once('#').map_or(raw, |(e, _)| e).trim();
        let Some((addr, len)) = entry.split_once('/') else {
            continue;
        };
        let width = if addr.contains(':') { 128 } else { 32 };
        if let Ok(len) = len.parse::<u8>()
            && is_broad(width, len)
        {
            return Err(broad_error(&format!("{location}:{}", i + 1), entry, width));
        }
    }
    Ok(())
}

/// Parse a plain CIDR list; errors are `location:line: what`. Prefixes
/// broader than /8 or /16 are refused unless `allow_broad`.
fn parse_cidr_text(
    location: &str,
    text: &str,
    normalize: bool,
    allow_broad: bool,
) -> Result<BTreeSet<Cidr>, String> {
    let list = lists::parse_list(location, text, normalize).map_err(|e| e.to_string())?;
    if list.is_empty() {
        return Err(format!(
            "{location}: no entries (an empty list is taken as a broken source)"
        ));
    }
    if !allow_broad {
        check_broad_text(location, text)?;
    }
    Ok(list.cidrs().collect())
}

/// Parse a RIPEstat announced-prefixes response: `data.prefixes[].prefix`.
/// Prefixes broader than /8 or /16 are refused unless `allow_broad`.
fn parse_ripestat(
    location: &str,
    asn: u32,
    body: &[u8],
    allow_broad: bool,
) -> Result<BTreeSet<Cidr>, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("{location}: not a RIPEstat JSON response: {e}"))?;
    let err = |what: String| format!("{location}: {what}");
    if let Some(status) = v.get("status")
        && status.as_str() != Some("ok")
    {
        let messages = v
            .get("messages")
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(err(format!("RIPEstat status {status} {messages}")));
    }
    let data = v
        .get("data")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| err("no `data` object in the response".into()))?;
    if let Some(resource) = data.get("resource").and_then(serde_json::Value::as_str) {
        let digits = resource
            .strip_prefix("AS")
            .or_else(|| resource.strip_prefix("as"))
            .unwrap_or(resource);
        if digits.parse::<u32>() != Ok(asn) {
            return Err(err(format!(
                "`data.resource` is `{resource}`, expected AS{asn}"
            )));
        }
    }
    let prefixes = data
        .get("prefixes")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| err("no `data.prefixes` array in the response".into()))?;
    let mut out = BTreeSet::new();
    for (i, p) in prefixes.iter().enumerate() {
        let s = p
            .get("prefix")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| err(format!("`data.prefixes[{i}]` has no `prefix` string")))?;
        let cidr =
            Cidr::from_str(s).map_err(|e| err(format!("`data.prefixes[{i}].prefix`: {e}")))?;
        if !allow_broad && is_broad(cidr.width(), cidr.prefix_len()) {
            return Err(broad_error(
                &format!("{location}: `data.prefixes[{i}].prefix`"),
                s,
                cidr.width(),
            ));
        }
        out.insert(cidr);
    }
    Ok(out)
}

/// Fetch and parse one source.
fn fetch(
    agent: &ureq::Agent,
    ripestat: &str,
    allow_broad: bool,
    src: &Source,
) -> (String, Result<Fetched, String>) {
    let done = |cidrs| {
        Ok(Fetched {
            cidrs,
            fetched: SystemTime::now(),
        })
    };
    match &src.kind {
        SourceKind::Url(url) => {
            let r = http_get(agent, url)
                .and_then(|b| utf8(url, b))
                .and_then(|t| parse_cidr_text(url, &t, src.normalize, allow_broad))
                .and_then(done);
            (url.clone(), r)
        }
        SourceKind::Path(path) => {
            let shown = path.display().to_string();
            let r = fs::read(path)
                .map_err(|e| format!("{shown}: {e}"))
                .and_then(|b| utf8(&shown, b))
                .and_then(|t| parse_cidr_text(&shown, &t, src.normalize, allow_broad))
                .and_then(done);
            (shown, r)
        }
        SourceKind::Ripestat { asn } => {
            let url = ripestat_request(ripestat, *asn);
            let r = http_get(agent, &url)
                .and_then(|b| parse_ripestat(&url, *asn, &b, allow_broad))
                .and_then(done);
            (url, r)
        }
    }
}

/// Format `t` as `YYYY-MM-DDTHH:MM:SSZ` (UTC; times before 1970 as 1970).
pub fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parse `YYYY-MM-DDTHH:MM:SSZ` as [`utc`] writes it.
pub fn parse_utc(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = text.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hours, minutes, secs) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hours > 23
        || minutes > 59
        || secs > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hours * 3600 + minutes * 60 + secs))
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date on or after it (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// When `flowfilter list update` wrote a list, from the header it writes
/// (`# NAME: written by ...` then `# at TIME: ...`); `None` for a list
/// without that header.
pub fn written_at(text: &str) -> Option<SystemTime> {
    let mut lines = text.lines();
    let first = lines.next()?;
    if !(first.starts_with("# ") && first.contains(": written by `flowfilter list update`")) {
        return None;
    }
    let at = lines.next()?.strip_prefix("# at ")?;
    parse_utc(at.get(..20)?)
}

/// Proleptic Gregorian date of `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Replace control characters (a header line must stay one line).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The text of a category file: header, then one CIDR a line.
fn render(
    cat: &CategorySources,
    sources_file: &Path,
    fetched: &[(String, &Fetched)],
    entries: &BTreeSet<Cidr>,
    now: SystemTime,
) -> String {
    use fmt::Write as _;
    let v4 = entries.iter().filter(|c| c.width() == 32).count();
    let v6 = entries.len() - v4;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# {}: written by `flowfilter list update` from {}",
        cat.name,
        one_line(&sources_file.display().to_string())
    );
    let _ = writeln!(
        t,
        "# at {}: {} entries ({v4} IPv4, {v6} IPv6) from {} sources.",
        utc(now),
        entries.len(),
        fetched.len()
    );
    t.push_str("# Do not edit: the next update replaces this file (add ranges as a source).\n");
    if let Some(note) = &cat.note {
        t.push_str("#\n");
        for line in note.trim().lines() {
            let line = one_line(line);
            let line = line.trim_end();
            if line.is_empty() {
                t.push_str("#\n");
            } else {
                let _ = writeln!(t, "# {line}");
            }
        }
    }
    for (i, (src, (location, f))) in cat.sources.iter().zip(fetched).enumerate() {
        let _ = write!(
            t,
            "#\n# source {}: {}\n#   where:   {}\n#   fetched: {}\n#   entries: {}\n",
            i + 1,
            one_line(&src.name),
            one_line(location),
            utc(f.fetched),
            f.cidrs.len()
        );
        if src.normalize {
            t.push_str("#   host bits beyond the prefix length cleared (normalize)\n");
        }
    }
    t.push_str("#\n");
    for c in entries {
        let _ = writeln!(t, "{c}");
    }
    t
}

/// Entries of the current file: `Ok(None)` when there is none. A file that
/// does not parse is counted by its entry lines (noted in `notes`).
fn previous_count(path: &Path, notes: &mut Vec<String>) -> Result<Option<usize>, String> {
    let shown = path.display().to_string();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let text = String::from_utf8_lossy(&bytes);
    match lists::parse_list(&shown, &text, true) {
        Ok(l) => Ok(Some(l.len())),
        Err(e) => {
            let n = text
                .lines()
                .filter(|l| !l.split('#').next().unwrap_or("").trim().is_empty())
                .count();
            notes.push(format!(
                "the current file does not parse ({e}); its {n} entry lines are taken as its size"
            ));
            Ok(Some(n))
        }
    }
}

/// Replace `path` with `text` atomically: write a temporary file in the same
/// directory, fsync it, rename it over `path`, fsync the directory. The
/// temporary file is removed on failure; keeps the current file's permissions.
fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    let result = (|| {
        if let Ok(meta) = fs::metadata(path)
            && meta.is_file()
        {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    drop(file);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Update one category.
fn update_category(
    agent: &ureq::Agent,
    ripestat: &str,
    sources_file: &Path,
    opts: &UpdateOptions,
    cat: &CategorySources,
) -> CategoryReport {
    let (out, force) = (&opts.out, opts.force);
    let path = out.join(format!("{}.txt", cat.name));
    let mut report = CategoryReport {
        name: cat.name.clone(),
        path: path.clone(),
        entries: 0,
        previous: None,
        sources: Vec::with_capacity(cat.sources.len()),
        skipped: None,
        notes: Vec::new(),
    };
    let mut fetched = Vec::with_capacity(cat.sources.len());
    for src in &cat.sources {
        let (location, result) = fetch(agent, ripestat, opts.allow_broad, src);
        report.sources.push(SourceReport {
            name: src.name.clone(),
            location: location.clone(),
            fetched: result.as_ref().ok().map(|f| f.fetched),
            result: result.as_ref().map(|f| f.cidrs.len()).map_err(Clone::clone),
        });
        if let Ok(f) = result {
            fetched.push((location, f));
        }
    }
    let failed = cat.sources.len() - fetched.len();
    match previous_count(&path, &mut report.notes) {
        Ok(p) => report.previous = p,
        Err(e) => {
            report.skipped = Some(SkipReason::PreviousUnreadable(e));
            return report;
        }
    }
    if failed > 0 {
        report.skipped = Some(SkipReason::SourcesFailed { failed });
        return report;
    }
    let entries: BTreeSet<Cidr> = fetched
        .iter()
        .flat_map(|(_, f)| f.cidrs.iter().copied())
        .collect();
    report.entries = entries.len();
    if !force {
        if entries.is_empty() {
            report.skipped = Some(SkipReason::Empty);
            return report;
        }
        if let Some(previous) = report.previous
            && entries.len() * 2 < previous
        {
            report.skipped = Some(SkipReason::Shrunk {
                entries: entries.len(),
                previous,
            });
            return report;
        }
        // An empty current file (written with --force) gives no size to
        // compare with.
        if let Some(previous) = report.previous
            && previous > 0
            && entries.len() > previous.saturating_mul(MAX_GROWTH)
        {
            report.skipped = Some(SkipReason::Grown {
                entries: entries.len(),
                previous,
            });
            return report;
        }
    }
    let refs: Vec<(String, &Fetched)> = fetched.iter().map(|(l, f)| (l.clone(), f)).collect();
    let text = render(cat, sources_file, &refs, &entries, SystemTime::now());
    // Every line written must read back as exactly these entries.
    match lists::parse_list(&path.display().to_string(), &text, false) {
        Ok(list) if list.cidrs().eq(entries.iter().copied()) => {
            if !list.notes.is_empty() {
                report.notes.push(format!(
                    "{} prefixes lie inside another prefix of the list (kept, as list files keep them)",
                    list.notes.len()
                ));
            }
        }
        Ok(list) => {
            report.skipped = Some(SkipReason::Invalid(format!(
                "reads back as {} entries instead of {}",
                list.len(),
                entries.len()
            )));
            return report;
        }
        Err(e) => {
            report.skipped = Some(SkipReason::Invalid(e.to_string()));
            return report;
        }
    }
    if let Err(e) = write_atomic(&path, &text) {
        report.skipped = Some(SkipReason::WriteFailed(format!("{}: {e}", path.display())));
    }
    report
}

/// Build every category file named in `opts.sources` into `opts.out`.
///
/// `Err` when nothing could be tried (a [`SourcesError`], or the output
/// directory cannot be created); per-category failures and refusals are in
/// the report (see [`UpdateReport::all_written`]).
pub fn run_update(opts: &UpdateOptions) -> anyhow::Result<UpdateReport> {
    let sources_file = std::path::absolute(&opts.sources).unwrap_or_else(|_| opts.sources.clone());
    let sources = Sources::load(&sources_file)?;
    let ripestat = match &opts.ripestat_url {
        Some(url) => {
            check_url(url).map_err(|w| anyhow::anyhow!("RIPEstat URL override: {w}"))?;
            url.clone()
        }
        None => sources.ripestat_url.clone(),
    };
    fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create the output directory {}", opts.out.display()))?;
    let proxy = if opts.env_proxy {
        ureq::Proxy::try_from_env()
    } else {
        None
    };
    let agent = agent(sources.timeout, proxy, opts.tls_roots.as_deref());
    let categories = sources
        .categories
        .iter()
        .map(|cat| update_category(&agent, &ripestat, &sources_file, opts, cat))
        .collect();
    Ok(UpdateReport {
        sources_file,
        out: opts.out.clone(),
        categories,
    })
}

/// The HTTP client: `https://` only on every hop (ureq checks each
/// redirect's address before connecting), at most [`MAX_REDIRECTS`]
/// redirects, `timeout` for each fetch with its redirects.
fn agent(timeout: Duration, proxy: Option<ureq::Proxy>, roots: Option<&[Vec<u8>]>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(roots) = roots {
        let certs: Vec<ureq::tls::Certificate<'static>> = roots
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .https_only(true)
        .max_redirects(MAX_REDIRECTS)
        .max_redirects_will_error(true)
        .tls_config(tls.build())
        .proxy(proxy)
        .user_agent(concat!(
            "flowfilter/",
            env!("CARGO_PKG_VERSION"),
            " (list update)"
        ))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
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
        let counts: Vec<Result<usize, String>> =
            r.sources.iter().map(|s| s.result.clone()).collect();
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
}
