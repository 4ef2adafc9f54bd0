//! List files: the address ranges of each category.
//!
//! A lists directory holds one file per category, `NAME.txt`, where NAME
//! matches `[a-z0-9][a-z0-9_-]{0,31}`; `allow.txt` is the allowlist. A file
//! holds one entry per line: an IPv4 or IPv6 CIDR (`10.0.0.0/8`,
//! `2001:db8::/32`) or a bare address (a /32 or /128). `#` starts a comment,
//! on its own line or after an entry; blank lines and surrounding whitespace
//! are ignored.
//!
//! Parsing is strict: the first bad line rejects the whole file (and
//! [`load_dir`] rejects the whole directory), with `file:line` in the error.
//! An entry with bits set beyond its prefix length is an error unless
//! `normalize` is asked for. Duplicates are merged and prefixes covered by a
//! shorter prefix of the same file are reported as [`ListNote`]s (and kept, so
//! that nesting across categories keeps its meaning).
//!
//! Category numbering: `whatsapp` is always [`CAT_WHATSAPP`] and `telegram`
//! always [`CAT_TELEGRAM`] (both exist even with no file); other categories
//! get ids from [`CAT_FIRST_USER`] upward in alphabetical order of name, up to
//! [`CAT_LAST`]; the allowlist is [`CAT_ALLOW`].

pub mod update;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

use filter_common::{CAT_ALLOW, CAT_FIRST_USER, CAT_LAST, CAT_TELEGRAM, CAT_WHATSAPP};

/// Name of the allowlist (`allow.txt`, category id [`CAT_ALLOW`]).
pub const ALLOW_NAME: &str = "allow";
/// Name of the built-in category [`CAT_WHATSAPP`].
pub const WHATSAPP_NAME: &str = "whatsapp";
/// Name of the built-in category [`CAT_TELEGRAM`].
pub const TELEGRAM_NAME: &str = "telegram";
/// Longest category name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Most blocking categories (ids `1..=CAT_LAST`), built-ins included.
pub const MAX_CATEGORIES: usize = CAT_LAST as usize;

/// An IPv4 or IPv6 prefix.
///
/// `FromStr` accepts `a.b.c.d/len`, `x::y/len` and bare addresses (full
/// length) and rejects host bits set beyond the prefix; [`Cidr::parse_normalized`]
/// clears them instead. `Display` writes `1.2.3.0/24` / `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Ord, PartialOrd)]
pub enum Cidr {
    /// An IPv4 prefix (`len` 0..=32).
    V4 {
        /// Network address.
        addr: Ipv4Addr,
        /// Prefix length.
        len: u8,
    },
    /// An IPv6 prefix (`len` 0..=128).
    V6 {
        /// Network address.
        addr: Ipv6Addr,
        /// Prefix length.
        len: u8,
    },
}

/// Why a string is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrError(pub String);

/// Mask of the first `len` bits of a `width`-bit address, in the low `width`
/// bits of a `u128` (`len` beyond `width` means all bits).
pub(crate) fn prefix_mask(width: u8, len: u8) -> u128 {
    let all = width_mask(width);
    all & !host_mask(width, len)
}

/// Mask of the bits after the first `len` of a `width`-bit address.
pub(crate) fn host_mask(width: u8, len: u8) -> u128 {
    let host = u32::from(width.saturating_sub(len));
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

/// All `width` low bits set.
fn width_mask(width: u8) -> u128 {
    host_mask(width, 0)
}

impl Cidr {
    /// The network address.
    pub fn addr(self) -> IpAddr {
        match self {
            Cidr::V4 { addr, .. } => IpAddr::V4(addr),
            Cidr::V6 { addr, .. } => IpAddr::V6(addr),
        }
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        match self {
            Cidr::V4 { len, .. } | Cidr::V6 { len, .. } => len,
        }
    }

    /// Address width in bits: 32 or 128.
    pub fn width(self) -> u8 {
        match self {
            Cidr::V4 { .. } => 32,
            Cidr::V6 { .. } => 128,
        }
    }

    /// The address as an integer in the low bits of a `u128`.
    fn bits(self) -> u128 {
        match self {
            Cidr::V4 { addr, .. } => u128::from(u32::from(addr)),
            Cidr::V6 { addr, .. } => u128::from(addr),
        }
    }

    /// The same prefix with the bits beyond the prefix length cleared.
    #[must_use]
    pub fn network(self) -> Cidr {
        let masked = self.bits() & prefix_mask(self.width(), self.prefix_len());
        match self {
            Cidr::V4 { len, .. } => Cidr::V4 {
                addr: Ipv4Addr::from(masked as u32),
                len,
            },
            Cidr::V6 { len, .. } => Cidr::V6 {
                addr: Ipv6Addr::from(masked),
                len,
            },
        }
    }

    /// Whether bits beyond the prefix length are set.
    pub fn has_host_bits(self) -> bool {
        self.bits() & host_mask(self.width(), self.prefix_len()) != 0
    }

    /// Whether `ip` lies inside this prefix (always false across families and
    /// for a prefix length longer than the address).
    pub fn contains(self, ip: IpAddr) -> bool {
        if self.prefix_len() > self.width() {
            return false;
        }
        let bits = match (self, ip) {
            (Cidr::V4 { .. }, IpAddr::V4(a)) => u128::from(u32::from(a)),
            (Cidr::V6 { .. }, IpAddr::V6(a)) => u128::from(a),
            _ => return false,
        };
        let mask = prefix_mask(self.width(), self.prefix_len());
        bits & mask == self.bits() & mask
    }

    /// Parse like `FromStr`, but clear host bits instead of rejecting them.
    pub fn parse_normalized(s: &str) -> Result<Cidr, CidrError> {
        parse_entry(s.trim()).map(Cidr::network).map_err(CidrError)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4 { addr, len } => write!(f, "{addr}/{len}"),
            Cidr::V6 { addr, len } => write!(f, "{addr}/{len}"),
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let cidr = parse_entry(s).map_err(CidrError)?;
        if cidr.has_host_bits() {
            return Err(CidrError(format!(
                "`{s}` has bits set beyond /{} (use {})",
                cidr.prefix_len(),
                cidr.network()
            )));
        }
        Ok(cidr)
    }
}

/// Parse one entry (already trimmed, comment removed). Host bits are kept.
fn parse_entry(s: &str) -> Result<Cidr, String> {
    if s.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{s}` holds more than one entry (write one address or CIDR per line)"
        ));
    }
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Err(format!("`{s}` is not an IPv4 or IPv6 address or CIDR"));
    };
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some("") => return Err(format!("`{s}` has no prefix length after `/`")),
        Some(l) if !l.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("`{s}`: `{l}` is not a prefix length"));
        }
        Some(l) => match l.parse::<u32>() {
            Ok(n) if n <= u32::from(max) => n as u8,
            _ => return Err(format!("prefix length {l} is longer than {max}")),
        },
    };
    Ok(match ip {
        IpAddr::V4(addr) => Cidr::V4 { addr, len },
        IpAddr::V6(addr) => Cidr::V6 { addr, len },
    })
}

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
type Raw = (u128, u8, usize);

/// Kept `(start, len)` prefixes and `(line, kind, note)` triples.
type Merged = (Vec<(u128, u8)>, Vec<(usize, NoteKind, String)>);

/// Sort and drop duplicates; report prefixes covered by another of the same
/// file. Covered prefixes are kept: another category's prefix may lie between
/// the two, and dropping the inner one would hand its addresses to that
/// category. The table build merges what is truly redundant.
fn merge(mut raw: Vec<Raw>, width: u8) -> Merged {
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
fn show(width: u8, start: u128, len: u8) -> String {
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

/// One blocking category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    /// Category id (1..=254).
    pub id: u8,
    /// Name (the list file's name without `.txt`).
    pub name: String,
    /// Its prefixes.
    pub list: ParsedList,
}

/// All lists: the blocking categories and the allowlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lists {
    /// Blocking categories, sorted by id; `whatsapp` (1) and `telegram` (2)
    /// are always present.
    pub categories: Vec<Category>,
    /// The allowlist (id [`CAT_ALLOW`]).
    pub allow: ParsedList,
}

/// Number the categories named `names`: `whatsapp` is [`CAT_WHATSAPP`],
/// `telegram` [`CAT_TELEGRAM`] (both always included, named or not), the
/// others from [`CAT_FIRST_USER`] upward in alphabetical order. Duplicates
/// count once; `allow` (the allowlist, [`CAT_ALLOW`]) is skipped. Names are
/// not validated (see [`valid_category_name`]).
///
/// Returns `(id, name)` sorted by id, or `None` when more than
/// [`MAX_CATEGORIES`] categories would be needed.
pub fn category_ids(names: impl IntoIterator<Item = String>) -> Option<Vec<(u8, String)>> {
    let user: BTreeSet<String> = names
        .into_iter()
        .filter(|n| n != WHATSAPP_NAME && n != TELEGRAM_NAME && n != ALLOW_NAME)
        .collect();
    if user.len() > usize::from(CAT_LAST - CAT_FIRST_USER + 1) {
        return None;
    }
    let mut ids = vec![
        (CAT_WHATSAPP, WHATSAPP_NAME.to_owned()),
        (CAT_TELEGRAM, TELEGRAM_NAME.to_owned()),
    ];
    ids.extend((CAT_FIRST_USER..=CAT_LAST).zip(user));
    Some(ids)
}

impl Lists {
    /// Assemble lists from named parts (e.g. a category given on the command
    /// line). Names must be valid, distinct, and not `allow`; `whatsapp` and
    /// `telegram` are added empty when missing.
    pub fn from_parts(
        parts: Vec<(String, ParsedList)>,
        allow: ParsedList,
    ) -> Result<Lists, ListError> {
        let mut seen = BTreeSet::new();
        for (name, _) in &parts {
            if name == ALLOW_NAME {
                return Err(ListError::AllowAsCategory);
            }
            if !valid_category_name(name) {
                return Err(ListError::BadCategoryName { name: name.clone() });
            }
            if !seen.insert(name.clone()) {
                return Err(ListError::DuplicateCategory { name: name.clone() });
            }
        }
        assemble(parts, allow).map_err(|count| ListError::CategoryCount { count })
    }

    /// Keep the ids of `previous` (id, name) for the categories still
    /// present, so counters, policies and learned endpoints stay with their
    /// category when a list file is added or removed. A new category takes
    /// the lowest free id that `previous` did not use (counters of a removed
    /// category are not handed to a new one while another id is free), else
    /// the lowest free id.
    pub fn keep_ids(&mut self, previous: &[(u8, String)]) {
        let user = |id: u8| (CAT_FIRST_USER..=CAT_LAST).contains(&id);
        let mut taken: BTreeSet<u8> = BTreeSet::new();
        let mut ids: Vec<Option<u8>> = self
            .categories
            .iter()
            .map(|c| {
                if !user(c.id) {
                    return Some(c.id);
                }
                let kept = previous
                    .iter()
                    .find(|(id, n)| *n == c.name && user(*id))
                    .map(|(id, _)| *id)
                    .filter(|id| !taken.contains(id));
                if let Some(id) = kept {
                    taken.insert(id);
                }
                kept
            })
            .collect();
        let used_before: BTreeSet<u8> = previous.iter().map(|(id, _)| *id).collect();
        for id in &mut ids {
            if id.is_none() {
                let fresh = (CAT_FIRST_USER..=CAT_LAST)
                    .find(|i| !taken.contains(i) && !used_before.contains(i))
                    .or_else(|| (CAT_FIRST_USER..=CAT_LAST).find(|i| !taken.contains(i)));
                if let Some(f) = fresh {
                    taken.insert(f);
                }
                *id = fresh;
            }
        }
        for (c, id) in self.categories.iter_mut().zip(ids) {
            // `assemble` admits at most as many user categories as ids.
            if let Some(id) = id {
                c.id = id;
            }
        }
        self.categories.sort_by_key(|c| c.id);
    }

    /// The category named `name` (not the allowlist).
    pub fn by_name(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.name == name)
    }

    /// The category with id `id`.
    pub fn by_id(&self, id: u8) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// Name of category `id`: `"allow"` for [`CAT_ALLOW`], `None` if unused.
    pub fn name_of(&self, id: u8) -> Option<&str> {
        if id == CAT_ALLOW {
            return Some(ALLOW_NAME);
        }
        self.by_id(id).map(|c| c.name.as_str())
    }

    /// The category names, comma-separated, for "known: ..." in errors.
    pub fn known_names(&self) -> String {
        self.categories
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Notes of every list, sorted by file and line.
    pub fn all_notes(&self) -> Vec<&ListNote> {
        let mut notes: Vec<&ListNote> = self
            .categories
            .iter()
            .flat_map(|c| &c.list.notes)
            .chain(&self.allow.notes)
            .collect();
        notes.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        notes
    }

    /// Total number of prefixes, allowlist included.
    pub fn prefix_count(&self) -> usize {
        self.categories.iter().map(|c| c.list.len()).sum::<usize>() + self.allow.len()
    }
}

/// Number and collect the parts; `Err(count)` when they do not fit.
fn assemble(parts: Vec<(String, ParsedList)>, allow: ParsedList) -> Result<Lists, usize> {
    let names: Vec<String> = parts.iter().map(|(n, _)| n.clone()).collect();
    let ids = category_ids(names).ok_or_else(|| {
        let user: BTreeSet<&str> = parts
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != WHATSAPP_NAME && *n != TELEGRAM_NAME)
            .collect();
        user.len() + 2
    })?;
    let mut parts = parts;
    let categories = ids
        .into_iter()
        .map(|(id, name)| {
            let list = parts
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| parts.swap_remove(i).1)
                .unwrap_or_default();
            Category { id, name, list }
        })
        .collect();
    Ok(Lists { categories, allow })
}

/// Load every `*.txt` file of `dir` (other files, subdirectories and hidden
/// files are ignored). Any error rejects everything. Errors and notes name
/// files as `dir/NAME.txt`.
pub fn load_dir(dir: &Path, normalize: bool) -> Result<Lists, ListError> {
    load_dir_with(dir, normalize, None)
}

/// [`load_dir`], with `overlay` = (name, text) read in place of
/// `dir/NAME.txt` (which is neither read nor required to exist): what the
/// directory would hold once that file is replaced.
pub fn load_dir_with(
    dir: &Path,
    normalize: bool,
    overlay: Option<(&str, &str)>,
) -> Result<Lists, ListError> {
    let dir_name = dir.display().to_string();
    let io = |file: String| move |source| ListError::Io { file, source };
    let mut files = Vec::new();
    if let Some((name, _)) = overlay {
        let path = dir.join(format!("{name}.txt"));
        if !valid_category_name(name) {
            return Err(ListError::BadName {
                file: path.display().to_string(),
                name: name.to_owned(),
            });
        }
        files.push((name.to_owned(), path.clone(), path.display().to_string()));
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir_name.clone()))? {
        let entry = entry.map_err(io(dir_name.clone()))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file_name.strip_suffix(".txt") else {
            continue;
        };
        if file_name.starts_with('.') || overlay.is_some_and(|(n, _)| n == name) {
            continue;
        }
        let path = entry.path();
        let shown = path.display().to_string();
        let meta = std::fs::metadata(&path).map_err(io(shown.clone()))?;
        if !meta.is_file() {
            continue;
        }
        if !valid_category_name(name) {
            return Err(ListError::BadName {
                file: shown,
                name: name.to_owned(),
            });
        }
        files.push((name.to_owned(), path, shown));
    }
    files.sort();
    if category_ids(files.iter().map(|(n, ..)| n.clone())).is_none() {
        return Err(ListError::TooManyCategories { dir: dir_name });
    }
    let mut parts = Vec::with_capacity(files.len());
    let mut allow = ParsedList::default();
    for (name, path, shown) in files {
        let bytes = match overlay {
            Some((n, text)) if n == name => text.as_bytes().to_vec(),
            _ => std::fs::read(&path).map_err(io(shown.clone()))?,
        };
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.split(|&b| b == b'\n').count();
                return Err(ListError::Syntax {
                    file: shown,
                    line,
                    what: "not valid UTF-8".to_owned(),
                });
            }
        };
        let list = parse_list(&shown, &text, normalize)?;
        if name == ALLOW_NAME {
            allow = list;
        } else {
            parts.push((name, list));
        }
    }
    assemble(parts, allow).map_err(|_| ListError::TooManyCategories { dir: dir_name })
}

#[cfg(test)]
mod tests;
