//! Parsing one list file: entries, merging, notes and errors.

use super::{Cidr, Ipv4Addr, Ipv6Addr, MAX_NAME_LEN, fmt, parse_entry};
use crate::dataplane::tables::host_mask;

/// Something worth telling about a list that is not an error: a duplicate,
/// a prefix covered by another of the file, a normalised entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListNote {
    /// File name as given to [`parse_list`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// Which kind of note.
    pub kind: NoteKind,
    /// What happened.
    pub what: String,
}

/// The kinds of [`ListNote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// The same prefix again (dropped).
    Duplicate,
    /// Inside a shorter prefix of the same file (kept).
    Covered,
    /// Host bits cleared (`--normalize`).
    Normalised,
}

impl NoteKind {
    /// `n` notes of this kind, in words: "2 duplicate prefixes (merged)".
    pub fn count(self, n: usize) -> String {
        let one = n == 1;
        match self {
            NoteKind::Duplicate => format!(
                "{n} duplicate {} (merged)",
                if one { "prefix" } else { "prefixes" }
            ),
            NoteKind::Covered => format!(
                "{n} {} covered by a shorter one of the file (kept)",
                if one { "prefix" } else { "prefixes" }
            ),
            NoteKind::Normalised => format!(
                "{n} {} with host bits cleared",
                if one { "entry" } else { "entries" }
            ),
        }
    }
}

impl fmt::Display for ListNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.what)
    }
}

/// One line per list file with notes: how many of each kind, e.g.
/// `whatsapp.txt: 65536 prefixes covered by a shorter one of the file
/// (kept), 2 duplicate prefixes (merged)`. Files in order of first note.
pub fn summarise_notes(notes: &[&ListNote]) -> Vec<String> {
    let mut files: Vec<(&str, std::collections::BTreeMap<NoteKind, usize>)> = Vec::new();
    for n in notes {
        let i = if let Some(i) = files.iter().position(|(f, _)| *f == n.file) {
            i
        } else {
            files.push((&n.file, std::collections::BTreeMap::new()));
            files.len() - 1
        };
        *files[i].1.entry(n.kind).or_default() += 1;
    }
    files
        .into_iter()
        .map(|(file, counts)| {
            let parts: Vec<String> = counts.into_iter().map(|(k, n)| k.count(n)).collect();
            format!("{file}: {}", parts.join(", "))
        })
        .collect()
}

/// A parsed list file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedList {
    /// IPv4 prefixes: host bits clear, sorted, no duplicates, none inside
    /// another (so they are disjoint).
    pub v4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 prefixes, same rules as `v4`.
    pub v6: Vec<(Ipv6Addr, u8)>,
    /// Duplicates, merged prefixes and normalised entries, by line.
    pub notes: Vec<ListNote>,
}

impl ParsedList {
    /// Number of prefixes (IPv4 and IPv6).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the list has no prefixes.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// All prefixes as [`Cidr`]s, IPv4 first.
    pub fn cidrs(&self) -> impl Iterator<Item = Cidr> + '_ {
        let v4 = self.v4.iter().map(|&(addr, len)| Cidr::V4 { addr, len });
        let v6 = self.v6.iter().map(|&(addr, len)| Cidr::V6 { addr, len });
        v4.chain(v6)
    }
}

/// Why a list file or directory was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// Reading a file or the directory failed.
    #[error("{file}: {source}")]
    Io {
        /// The path.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// A bad line.
    #[error("{file}:{line}: {what}")]
    Syntax {
        /// File name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A `*.txt` file whose name is not a category name.
    #[error(
        "{file}: `{name}` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)"
    )]
    BadName {
        /// The path.
        file: String,
        /// The name (file name without `.txt`).
        name: String,
    },
    /// More list files than category ids.
    #[error("{dir}: more than 254 categories")]
    TooManyCategories {
        /// The directory.
        dir: String,
    },
    /// [`Lists::from_parts`]: a name that is not a category name.
    #[error(
        "`{name}` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)"
    )]
    BadCategoryName {
        /// The name.
        name: String,
    },
    /// [`Lists::from_parts`]: `allow` given as a blocking category.
    #[error("`allow` is the allowlist, not a category")]
    AllowAsCategory,
    /// [`Lists::from_parts`]: the same name twice.
    #[error("category `{name}` given twice")]
    DuplicateCategory {
        /// The name.
        name: String,
    },
    /// [`Lists::from_parts`]: more categories than ids.
    #[error("{count} categories given, at most 254 fit")]
    CategoryCount {
        /// Number of distinct categories (built-ins included).
        count: usize,
    },
}

/// Whether `name` is a valid category name: `[a-z0-9][a-z0-9_-]{0,31}`.
pub fn valid_category_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// One prefix while parsing: (address bits, length, line).
pub(super) type Raw = (u128, u8, usize);

/// Kept `(start, len)` prefixes and `(line, kind, note)` triples.
pub(super) type Merged = (Vec<(u128, u8)>, Vec<(usize, NoteKind, String)>);

/// Sort and drop duplicates; report prefixes covered by another of the same
/// file. Covered prefixes are kept: another category's prefix may lie between
/// the two, and dropping the inner one would hand its addresses to that
/// category. The table build merges what is truly redundant.
pub(super) fn merge(mut raw: Vec<Raw>, width: u8) -> Merged {
    raw.sort_unstable();
    let mut kept: Vec<(u128, u8)> = Vec::with_capacity(raw.len());
    let mut notes = Vec::new();
    // Enclosing kept prefixes of the current position: (start, len, line, end).
    let mut stack: Vec<(u128, u8, usize, u128)> = Vec::new();
    for (start, len, line) in raw {
        while stack.last().is_some_and(|&(_, _, _, end)| start > end) {
            stack.pop();
        }
        if let Some(&(ks, kl, kline, _)) = stack.last() {
            if (ks, kl) == (start, len) {
                notes.push((
                    line,
                    NoteKind::Duplicate,
                    format!("duplicate of line {kline}"),
                ));
                continue;
            }
            // Report the outermost prefix that covers this one.
            let (os, ol, oline, _) = stack[0];
            notes.push((
                line,
                NoteKind::Covered,
                format!("covered by {} (line {oline})", show(width, os, ol)),
            ));
        }
        kept.push((start, len));
        stack.push((start, len, line, start | host_mask(width, len)));
    }
    (kept, notes)
}

/// Format a prefix given as bits.
pub(super) fn show(width: u8, start: u128, len: u8) -> String {
    if width == 32 {
        format!("{}/{len}", Ipv4Addr::from(start as u32))
    } else {
        format!("{}/{len}", Ipv6Addr::from(start))
    }
}

/// Parse the text of one list file. `file` names it in errors and notes.
///
/// Stops at the first bad line: the whole list is rejected. With `normalize`,
/// entries with host bits set are normalised (and noted) instead of rejected.
pub fn parse_list(file: &str, text: &str, normalize: bool) -> Result<ParsedList, ListError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut v4: Vec<Raw> = Vec::new();
    let mut v6: Vec<Raw> = Vec::new();
    let mut notes: Vec<(usize, NoteKind, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let entry = raw.split_once('#').map_or(raw, |(e, _)| e).trim();
        if entry.is_empty() {
            continue;
        }
        let syntax = |what: String| ListError::Syntax {
            file: file.to_owned(),
            line,
            what,
        };
        let mut cidr = parse_entry(entry).map_err(syntax)?;
        if cidr.has_host_bits() {
            let net = cidr.network();
            if !normalize {
                return Err(syntax(format!(
                    "`{entry}` has bits set beyond /{} (use {net}, or --normalize)",
                    cidr.prefix_len()
                )));
            }
            notes.push((
                line,
                NoteKind::Normalised,
                format!("host bits set, normalised to {net}"),
            ));
            cidr = net;
        }
        match cidr {
            Cidr::V4 { addr, len } => v4.push((u128::from(u32::from(addr)), len, line)),
            Cidr::V6 { addr, len } => v6.push((u128::from(addr), len, line)),
        }
    }
    let (v4, n4) = merge(v4, 32);
    let (v6, n6) = merge(v6, 128);
    notes.extend(n4);
    notes.extend(n6);
    notes.sort_by_key(|n| n.0);
    Ok(ParsedList {
        v4: v4
            .into_iter()
            .map(|(s, l)| (Ipv4Addr::from(s as u32), l))
            .collect(),
        v6: v6
            .into_iter()
            .map(|(s, l)| (Ipv6Addr::from(s), l))
            .collect(),
        notes: notes
            .into_iter()
            .map(|(line, kind, what)| ListNote {
                file: file.to_owned(),
                line,
                kind,
                what,
            })
            .collect(),
    })
}
