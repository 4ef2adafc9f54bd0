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
mod tests {
    use super::*;

    #[test]
    fn ids_stay_with_their_category() {
        let lists = |names: &[&str]| {
            let parts = names
                .iter()
                .map(|n| ((*n).to_owned(), ParsedList::default()))
                .collect();
            Lists::from_parts(parts, ParsedList::default()).unwrap()
        };
        let ids = |l: &Lists| -> Vec<(u8, String)> {
            l.categories
                .iter()
                .map(|c| (c.id, c.name.clone()))
                .collect()
        };
        let first = lists(&["whatsapp", "telegram", "zoom"]);
        assert_eq!(first.by_name("zoom").unwrap().id, CAT_FIRST_USER);
        // `meet` sorts before `zoom`: alone it would take zoom's id.
        let mut second = lists(&["meet", "zoom"]);
        assert_eq!(second.by_name("meet").unwrap().id, CAT_FIRST_USER);
        second.keep_ids(&ids(&first));
        assert_eq!(second.by_name("zoom").unwrap().id, CAT_FIRST_USER);
        assert_eq!(second.by_name("meet").unwrap().id, CAT_FIRST_USER + 1);
        assert_eq!(second.by_name("whatsapp").unwrap().id, CAT_WHATSAPP);
        assert_eq!(second.by_name("telegram").unwrap().id, CAT_TELEGRAM);
        let sorted: Vec<u8> = second.categories.iter().map(|c| c.id).collect();
        assert!(sorted.is_sorted(), "{sorted:?}");
        // zoom removed, teams added: teams does not inherit zoom's id while
        // another is free.
        let mut third = lists(&["meet", "teams"]);
        third.keep_ids(&ids(&second));
        assert_eq!(third.by_name("meet").unwrap().id, CAT_FIRST_USER + 1);
        assert_eq!(third.by_name("teams").unwrap().id, CAT_FIRST_USER + 2);
        // With every id in use, a removed one is reused.
        let many: Vec<String> = (0..=usize::from(CAT_LAST - CAT_FIRST_USER))
            .map(|i| format!("c{i:03}"))
            .collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let full = lists(&names);
        let mut swapped: Vec<&str> = names[1..].to_vec();
        swapped.push("zzz");
        let mut next = lists(&swapped);
        next.keep_ids(&ids(&full));
        assert_eq!(next.by_name("zzz").unwrap().id, CAT_FIRST_USER);
        assert_eq!(next.by_name("c001").unwrap().id, CAT_FIRST_USER + 1);
    }

    fn err(text: &str, normalize: bool) -> String {
        parse_list("t.txt", text, normalize)
            .unwrap_err()
            .to_string()
    }

    fn v4(s: &str) -> (Ipv4Addr, u8) {
        match s.parse::<Cidr>().unwrap() {
            Cidr::V4 { addr, len } => (addr, len),
            Cidr::V6 { .. } => panic!("{s} is not IPv4"),
        }
    }

    fn v6(s: &str) -> (Ipv6Addr, u8) {
        match s.parse::<Cidr>().unwrap() {
            Cidr::V6 { addr, len } => (addr, len),
            Cidr::V4 { .. } => panic!("{s} is not IPv6"),
        }
    }

    #[test]
    fn notes_are_summarised_per_file() {
        use std::fmt::Write as _;
        let mut text = String::from("10.0.0.0/8\n");
        for i in 0..300 {
            writeln!(text, "10.{}.{}.0/24", i / 256, i % 256).unwrap();
        }
        text.push_str("10.0.0.0/8\n10.0.0.1/8\n");
        let a = parse_list("a.txt", &text, true).unwrap();
        let b = parse_list("b.txt", "192.0.2.0/24\n192.0.2.0/24\n", false).unwrap();
        let all: Vec<&ListNote> = a.notes.iter().chain(&b.notes).collect();
        assert_eq!(all.len(), 300 + 1 + 2 + 1);
        assert_eq!(
            summarise_notes(&all),
            [
                "a.txt: 2 duplicate prefixes (merged), 300 prefixes covered by a shorter one of the file (kept), 1 entry with host bits cleared",
                "b.txt: 1 duplicate prefix (merged)"
            ]
        );
        assert!(summarise_notes(&[]).is_empty());
    }

    fn notes(list: &ParsedList) -> Vec<String> {
        list.notes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn cidr_parse_and_display() {
        assert_eq!(
            "1.2.3.0/24".parse::<Cidr>().unwrap().to_string(),
            "1.2.3.0/24"
        );
        assert_eq!("1.2.3.4".parse::<Cidr>().unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            " 2001:db8::/32 ".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert_eq!("::/0".parse::<Cidr>().unwrap().to_string(), "::/0");
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string(),
            "`10.0.0.1/8` has bits set beyond /8 (use 10.0.0.0/8)"
        );
        assert_eq!(
            Cidr::parse_normalized("10.0.0.1/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            Cidr::parse_normalized("2001:db8::1/32")
                .unwrap()
                .to_string(),
            "2001:db8::/32"
        );
        assert!("".parse::<Cidr>().is_err());
        assert!("/8".parse::<Cidr>().is_err());
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.0".parse().unwrap()));
        assert!(!c.contains("::a00:1".parse().unwrap()));
        assert!(
            "::/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("1.1.1.1".parse().unwrap())
        );
        // Out-of-range lengths built by hand never panic.
        let bad = Cidr::V4 {
            addr: Ipv4Addr::new(1, 2, 3, 4),
            len: 200,
        };
        assert!(!bad.contains("1.2.3.4".parse().unwrap()));
        assert_eq!(bad.network(), bad);
        assert!(!bad.has_host_bits());
        // Ordering: IPv4 before IPv6, then address, then length.
        let mut v: Vec<Cidr> = ["::/0", "10.0.0.0/16", "10.0.0.0/8", "9.0.0.0/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let v: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(v, ["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "::/0"]);
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            err("10.0.0.0/8\n\nfoo\n", false),
            "t.txt:3: `foo` is not an IPv4 or IPv6 address or CIDR"
        );
        assert_eq!(
            err("  10.0.0.0/33 # x", false),
            "t.txt:1: prefix length 33 is longer than 32"
        );
        assert_eq!(
            err("::/129", false),
            "t.txt:1: prefix length 129 is longer than 128"
        );
        assert_eq!(
            err("1.2.3.4/99999999999999999999", false),
            "t.txt:1: prefix length 99999999999999999999 is longer than 32"
        );
        assert_eq!(
            err("# c\n1.2.3.4/", false),
            "t.txt:2: `1.2.3.4/` has no prefix length after `/`"
        );
        assert_eq!(
            err("1.2.3.4/x", false),
            "t.txt:1: `1.2.3.4/x`: `x` is not a prefix length"
        );
        assert_eq!(
            err("1.2.3.4/+8", false),
            "t.txt:1: `1.2.3.4/+8`: `+8` is not a prefix length"
        );
        assert_eq!(
            err("1.2.3.4/8/8", false),
            "t.txt:1: `1.2.3.4/8/8`: `8/8` is not a prefix length"
        );
        assert_eq!(
            err("1.2.3.0/24 1.2.4.0/24", false),
            "t.txt:1: `1.2.3.0/24 1.2.4.0/24` holds more than one entry (write one address or CIDR per line)"
        );
        assert_eq!(
            err("1.2.3.4-1.2.3.9", false),
            "t.txt:1: `1.2.3.4-1.2.3.9` is not an IPv4 or IPv6 address or CIDR"
        );
        assert_eq!(
            err("/24", false),
            "t.txt:1: `/24` is not an IPv4 or IPv6 address or CIDR"
        );
        assert_eq!(
            err("1.2.3", false),
            "t.txt:1: `1.2.3` is not an IPv4 or IPv6 address or CIDR"
        );
        assert_eq!(
            err("fe80::1%eth0", false),
            "t.txt:1: `fe80::1%eth0` is not an IPv4 or IPv6 address or CIDR"
        );
        // The first error wins, even with later ones.
        assert_eq!(
            err("1.1.1.1\nbad1\nbad2\n", false),
            "t.txt:2: `bad1` is not an IPv4 or IPv6 address or CIDR"
        );
        // Windows line endings.
        assert_eq!(
            err("1.1.1.1\r\nbad\r\n", false),
            "t.txt:2: `bad` is not an IPv4 or IPv6 address or CIDR"
        );
    }

    #[test]
    fn host_bits() {
        assert_eq!(
            err("10.0.0.0/8\n  10.0.0.1/24  # x\n", false),
            "t.txt:2: `10.0.0.1/24` has bits set beyond /24 (use 10.0.0.0/24, or --normalize)"
        );
        assert_eq!(
            err("2001:db8::1/32", false),
            "t.txt:1: `2001:db8::1/32` has bits set beyond /32 (use 2001:db8::/32, or --normalize)"
        );
        let l = parse_list("t.txt", "11.0.0.0/8\n10.0.0.1/24\n2001:db8::1/32\n", true).unwrap();
        assert_eq!(l.v4, [v4("10.0.0.0/24"), v4("11.0.0.0/8")]);
        assert_eq!(l.v6, [v6("2001:db8::/32")]);
        assert_eq!(
            notes(&l),
            [
                "t.txt:2: host bits set, normalised to 10.0.0.0/24",
                "t.txt:3: host bits set, normalised to 2001:db8::/32"
            ]
        );
        // A normalised entry can turn into a duplicate: both are noted.
        let l = parse_list("t.txt", "10.0.0.0/24\n10.0.0.9/24\n", true).unwrap();
        assert_eq!(l.v4, [v4("10.0.0.0/24")]);
        assert_eq!(
            notes(&l),
            [
                "t.txt:2: host bits set, normalised to 10.0.0.0/24",
                "t.txt:2: duplicate of line 1"
            ]
        );
    }

    #[test]
    fn comments_blanks_whitespace_bare() {
        let text = "\u{feff}# header\n\n   \n\t1.2.3.4\t\n5.6.0.0/16 # trailing\n#10.0.0.0/8\n  ::1  \n2001:db8::/32#x\n";
        let l = parse_list("t.txt", text, false).unwrap();
        assert_eq!(l.v4, [v4("1.2.3.4/32"), v4("5.6.0.0/16")]);
        assert_eq!(l.v6, [v6("::1/128"), v6("2001:db8::/32")]);
        assert!(l.notes.is_empty());
        assert_eq!(l.len(), 4);
        assert!(!l.is_empty());
        let empty = parse_list("t.txt", "# nothing\n\n", false).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty, ParsedList::default());
        assert_eq!(
            l.cidrs().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["1.2.3.4/32", "5.6.0.0/16", "::1/128", "2001:db8::/32"]
        );
    }

    #[test]
    fn duplicates_and_covered() {
        let text = "\
10.1.2.0/24
10.0.0.0/8
10.1.2.0/24
10.0.0.0/8
10.200.0.0/16
11.0.0.1
11.0.0.0/31
12.0.0.0/8
2001:db8::/48
2001:db8::/32
2001:db8::/32
";
        let l = parse_list("x.txt", text, false).unwrap();
        // Covered prefixes are reported but kept (another category may nest
        // between them); exact duplicates are merged.
        assert_eq!(
            l.v4,
            [
                v4("10.0.0.0/8"),
                v4("10.1.2.0/24"),
                v4("10.200.0.0/16"),
                v4("11.0.0.0/31"),
                v4("11.0.0.1/32"),
                v4("12.0.0.0/8")
            ]
        );
        assert_eq!(l.v6, [v6("2001:db8::/32"), v6("2001:db8::/48")]);
        assert_eq!(
            notes(&l),
            [
                "x.txt:1: covered by 10.0.0.0/8 (line 2)",
                "x.txt:3: duplicate of line 1",
                "x.txt:4: duplicate of line 2",
                "x.txt:5: covered by 10.0.0.0/8 (line 2)",
                "x.txt:6: covered by 11.0.0.0/31 (line 7)",
                "x.txt:9: covered by 2001:db8::/32 (line 10)",
                "x.txt:11: duplicate of line 10",
            ]
        );
        // Adjacent and disjoint prefixes are kept, IPv4 and IPv6 never merge.
        let l = parse_list("x.txt", "10.0.0.0/25\n10.0.0.128/25\n::a00:0/104\n", false).unwrap();
        assert_eq!(l.v4, [v4("10.0.0.0/25"), v4("10.0.0.128/25")]);
        assert_eq!(l.v6.len(), 1);
        assert!(l.notes.is_empty());
        // /0 covers everything of its family.
        let l = parse_list("x.txt", "1.2.3.4\n0.0.0.0/0\n::/0\n::1\n", false).unwrap();
        assert_eq!(l.v4, [v4("0.0.0.0/0"), v4("1.2.3.4/32")]);
        assert_eq!(l.v6, [v6("::/0"), v6("::1/128")]);
        assert_eq!(
            notes(&l),
            [
                "x.txt:1: covered by 0.0.0.0/0 (line 2)",
                "x.txt:4: covered by ::/0 (line 3)"
            ]
        );
    }

    #[test]
    fn category_names() {
        for ok in [
            "a",
            "0",
            "whatsapp",
            "my-list_2",
            "a234567890123456789012345678901b",
        ] {
            assert!(valid_category_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a.b",
            "a b",
            "é",
            "a2345678901234567890123456789012c",
        ] {
            assert!(!valid_category_name(bad), "{bad}");
        }
    }

    #[test]
    fn numbering() {
        let ids = category_ids(["zeta", "alpha", "telegram", "allow", "alpha"].map(String::from))
            .unwrap();
        assert_eq!(
            ids,
            [
                (1, "whatsapp".to_owned()),
                (2, "telegram".to_owned()),
                (3, "alpha".to_owned()),
                (4, "zeta".to_owned())
            ]
        );
        assert_eq!(category_ids(Vec::new()).unwrap().len(), 2);
        let many = |n: usize| (0..n).map(|i| format!("c{i:03}"));
        let ids = category_ids(many(252)).unwrap();
        assert_eq!(ids.len(), 254);
        assert_eq!(ids.last().unwrap(), &(CAT_LAST, "c251".to_owned()));
        assert!(category_ids(many(253)).is_none());
        assert!(category_ids(many(252).chain(["whatsapp".to_owned()])).is_some());
    }

    #[test]
    fn from_parts_and_lookups() {
        let meta = parse_list("meta", "157.240.0.0/16", false).unwrap();
        let wa = parse_list("wa", "1.2.3.4\n1.2.3.4\n", false).unwrap();
        let allow = parse_list("allow", "157.240.1.0/24", false).unwrap();
        let lists = Lists::from_parts(
            vec![("meta".into(), meta.clone()), ("whatsapp".into(), wa)],
            allow,
        )
        .unwrap();
        let ids: Vec<(u8, &str)> = lists
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        assert_eq!(ids, [(1, "whatsapp"), (2, "telegram"), (3, "meta")]);
        assert_eq!(lists.by_name("meta").unwrap().list, meta);
        assert!(lists.by_name("telegram").unwrap().list.is_empty());
        assert!(lists.by_name("allow").is_none());
        assert_eq!(lists.name_of(255), Some("allow"));
        assert_eq!(lists.name_of(3), Some("meta"));
        assert_eq!(lists.name_of(1), Some("whatsapp"));
        assert_eq!(lists.name_of(4), None);
        assert_eq!(lists.name_of(0), None);
        assert_eq!(lists.prefix_count(), 3);
        let notes: Vec<String> = lists.all_notes().iter().map(ToString::to_string).collect();
        assert_eq!(notes, ["wa:2: duplicate of line 1"]);

        let e = |parts: Vec<(String, ParsedList)>| {
            Lists::from_parts(parts, ParsedList::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(vec![("allow".into(), ParsedList::default())]),
            "`allow` is the allowlist, not a category"
        );
        assert_eq!(
            e(vec![("Bad".into(), ParsedList::default())]),
            "`Bad` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)"
        );
        assert_eq!(
            e(vec![
                ("x".into(), ParsedList::default()),
                ("x".into(), ParsedList::default())
            ]),
            "category `x` given twice"
        );
        let many: Vec<(String, ParsedList)> = (0..253)
            .map(|i| (format!("c{i}"), ParsedList::default()))
            .collect();
        assert_eq!(e(many), "255 categories given, at most 254 fit");
    }

    /// A fresh, empty temporary directory, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("flowfilter-lists-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &[u8]) {
            std::fs::write(self.0.join(name), text).unwrap();
        }

        fn show(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_dir_ok() {
        let d = TempDir::new("ok");
        d.write("whatsapp.txt", b"# wa\n157.240.0.0/16\n157.240.1.0/24\n");
        d.write("zoom.txt", b"3.7.35.0/25\n");
        d.write("meta-2.txt", b"2a03:2880::/32\n");
        d.write("allow.txt", b"10.0.0.0/8\n");
        d.write("README.md", b"not a list");
        d.write("notes.txt~", b"junk");
        d.write(".hidden.txt", b"junk");
        std::fs::create_dir(d.0.join("sub.txt")).unwrap();
        let lists = load_dir(&d.0, false).unwrap();
        let ids: Vec<(u8, &str, usize)> = lists
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str(), c.list.len()))
            .collect();
        assert_eq!(
            ids,
            [
                (1, "whatsapp", 2),
                (2, "telegram", 0),
                (3, "meta-2", 1),
                (4, "zoom", 1)
            ]
        );
        assert_eq!(lists.allow.v4, [v4("10.0.0.0/8")]);
        let notes: Vec<String> = lists.all_notes().iter().map(ToString::to_string).collect();
        assert_eq!(
            notes,
            [format!(
                "{}:3: covered by 157.240.0.0/16 (line 2)",
                d.show("whatsapp.txt")
            )]
        );

        let empty = TempDir::new("empty");
        let lists = load_dir(&empty.0, false).unwrap();
        assert_eq!(lists.categories.len(), 2);
        assert!(lists.allow.is_empty());
    }

    #[test]
    fn load_dir_errors() {
        let d = TempDir::new("err");
        d.write("whatsapp.txt", b"1.2.3.4\n");
        d.write("telegram.txt", b"# t\n1.2.3.4/24\n");
        assert_eq!(
            load_dir(&d.0, false).unwrap_err().to_string(),
            format!(
                "{}:2: `1.2.3.4/24` has bits set beyond /24 (use 1.2.3.0/24, or --normalize)",
                d.show("telegram.txt")
            )
        );
        let lists = load_dir(&d.0, true).unwrap();
        assert_eq!(
            lists.by_name("telegram").unwrap().list.v4,
            [v4("1.2.3.0/24")]
        );

        d.write("telegram.txt", b"1.2.3.0/24\n\xff\n");
        assert_eq!(
            load_dir(&d.0, true).unwrap_err().to_string(),
            format!("{}:2: not valid UTF-8", d.show("telegram.txt"))
        );
        d.write("telegram.txt", b"");

        d.write("Bad.txt", b"");
        assert_eq!(
            load_dir(&d.0, false).unwrap_err().to_string(),
            format!(
                "{}: `Bad` is not a valid category name (a-z, 0-9, _ and -, at most 32 characters, starting with a letter or digit)",
                d.show("Bad.txt")
            )
        );
        std::fs::remove_file(d.0.join("Bad.txt")).unwrap();
        assert!(load_dir(&d.0, false).is_ok());

        let missing = d.0.join("missing");
        let e = load_dir(&missing, false).unwrap_err();
        assert!(matches!(e, ListError::Io { .. }));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{e}"
        );

        let many = TempDir::new("many");
        for i in 0..252 {
            many.write(&format!("c{i:03}.txt"), b"");
        }
        many.write("whatsapp.txt", b"");
        many.write("allow.txt", b"");
        assert_eq!(load_dir(&many.0, false).unwrap().categories.len(), 254);
        many.write("c252.txt", b"");
        assert_eq!(
            load_dir(&many.0, false).unwrap_err().to_string(),
            format!("{}: more than 254 categories", many.0.display())
        );
    }

    /// The published source lists must parse as they are.
    #[test]
    fn real_lists_parse() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/ranges"
        ));
        let Ok(entries) = std::fs::read_dir(dir) else {
            println!("skipped: {} is absent", dir.display());
            return;
        };
        let mut n = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !path.extension().is_some_and(|e| e == "lst" || e == "txt") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            check_real_list(&name, &text);
            n += 1;
        }
        assert!(n > 0, "no lists in {}", dir.display());
    }

    /// Parse a real list; if it has host bits set, the error must name the
    /// first such line and `normalize` must fix it.
    fn check_real_list(name: &str, text: &str) -> ParsedList {
        let entries = text
            .lines()
            .filter(|l| !l.split('#').next().unwrap().trim().is_empty())
            .count();
        match parse_list(name, text, false) {
            Ok(list) => {
                assert!(!list.is_empty(), "{name}");
                assert_eq!(
                    list.len() + list.notes.len(),
                    entries,
                    "{name}: {:?}",
                    list.notes
                );
                list
            }
            Err(ListError::Syntax { line, what, .. }) if what.contains("has bits set beyond") => {
                let first = text
                    .lines()
                    .position(|l| {
                        parse_entry(l.split('#').next().unwrap().trim())
                            .is_ok_and(Cidr::has_host_bits)
                    })
                    .map(|i| i + 1);
                assert_eq!(Some(line), first, "{name}: {what}");
                parse_list(name, text, true).unwrap()
            }
            Err(e) => panic!("{e}"),
        }
    }
}
