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
mod tests;
