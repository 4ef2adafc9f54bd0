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

mod explain;
pub mod update;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use filter_common::{CAT_ALLOW, CAT_FIRST_USER, CAT_LAST, CAT_TELEGRAM, CAT_WHATSAPP};

mod parse;
/// The prefix value type lives with the tables it is made into.
pub use crate::dataplane::cidr::*;
pub use explain::*;
pub use parse::*;

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
pub(crate) mod tests;
