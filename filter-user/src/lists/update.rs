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
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Deserialize;

use crate::lists::{self, Cidr};

mod fetch;
mod report;
mod sources;
mod time;
pub use fetch::*;
pub use report::*;
pub use sources::*;
pub use time::*;

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

/// Replace the list file `path` with `text` atomically, keeping its
/// permissions (0644 for a new one).
fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    crate::fsutil::write_atomic(path, text.as_bytes(), crate::fsutil::Mode::KeepOr(0o644))
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
    if !force && let Some(why) = size_refused(entries.len(), report.previous) {
        report.skipped = Some(why);
        return report;
    }
    let refs: Vec<(String, &Fetched)> = fetched.iter().map(|(l, f)| (l.clone(), f)).collect();
    let text = render(cat, sources_file, &refs, &entries, SystemTime::now());
    if let Err(why) = read_back(&path, &text, &entries, &mut report.notes) {
        report.skipped = Some(why);
        return report;
    }
    if let Err(e) = write_atomic(&path, &text) {
        report.skipped = Some(SkipReason::WriteFailed(format!("{}: {e}", path.display())));
    }
    report
}

/// Why a list of `entries` is refused without `--force`: empty, shrunk to
/// less than half of the `previous` file, or grown more than
/// [`MAX_GROWTH`] times.
fn size_refused(entries: usize, previous: Option<usize>) -> Option<SkipReason> {
    if entries == 0 {
        return Some(SkipReason::Empty);
    }
    if let Some(previous) = previous
        && entries * 2 < previous
    {
        return Some(SkipReason::Shrunk { entries, previous });
    }
    // An empty current file (written with --force) gives no size to
    // compare with.
    if let Some(previous) = previous
        && previous > 0
        && entries > previous.saturating_mul(MAX_GROWTH)
    {
        return Some(SkipReason::Grown { entries, previous });
    }
    None
}

/// Every line written must read back as exactly these entries.
fn read_back(
    path: &Path,
    text: &str,
    entries: &BTreeSet<Cidr>,
    notes: &mut Vec<String>,
) -> Result<(), SkipReason> {
    match lists::parse_list(&path.display().to_string(), text, false) {
        Ok(list) if list.cidrs().eq(entries.iter().copied()) => {
            if !list.notes.is_empty() {
                notes.push(format!(
                    "{} prefixes lie inside another prefix of the list (kept, as list files keep them)",
                    list.notes.len()
                ));
            }
            Ok(())
        }
        Ok(list) => Err(SkipReason::Invalid(format!(
            "reads back as {} entries instead of {}",
            list.len(),
            entries.len()
        ))),
        Err(e) => Err(SkipReason::Invalid(e.to_string())),
    }
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

#[cfg(test)]
mod tests;
