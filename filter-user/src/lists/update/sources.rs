//! The sources file (`lists/sources.toml`): its format, its checks and its errors.

use super::{
    BTreeMap, DEFAULT_RIPESTAT_URL, DEFAULT_TIMEOUT, Deserialize, Duration, MAX_TIMEOUT_SECS, Path,
    PathBuf, fmt, fs, io, lists,
};

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
pub(super) fn at(file: &str, line: usize, column: usize) -> String {
    if line == 0 {
        format!("{file}: ")
    } else {
        format!("{file}:{line}:{column}: ")
    }
}

pub(super) fn field_prefix(field: &str) -> String {
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
pub(super) struct RawFile {
    ripestat: Option<RawRipestat>,
    timeout_secs: Option<u64>,
    category: BTreeMap<String, RawCategory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRipestat {
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCategory {
    note: Option<String>,
    source: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    name: Option<String>,
    url: Option<String>,
    path: Option<PathBuf>,
    asn: Option<Asn>,
    #[serde(default)]
    normalize: bool,
}

/// An AS number given as `62041` or `"AS62041"`.
pub(super) struct Asn(u32);

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
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
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
            .map_err(|e| syntax_error(file, text, e))?;
        let ripestat_url = match raw.ripestat.and_then(|r| r.url) {
            Some(url) => {
                check_url(&url).map_err(|w| invalid(file, "ripestat.url".into(), w))?;
                url
            }
            None => DEFAULT_RIPESTAT_URL.to_owned(),
        };
        let timeout = match raw.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err(invalid(
                    file,
                    "timeout_secs".into(),
                    format!("{s} is not between 1 and {MAX_TIMEOUT_SECS}"),
                ));
            }
        };
        if raw.category.is_empty() {
            return Err(invalid(
                file,
                "category".into(),
                "no category given (add a [category.NAME] table with [[category.NAME.source]] entries)".into(),
            ));
        }
        let mut categories = Vec::with_capacity(raw.category.len());
        for (cat_name, cat) in raw.category {
            categories.push(parse_category(file, cat_name, cat, base)?);
        }
        Ok(Sources {
            ripestat_url,
            timeout,
            categories,
        })
    }
}

/// A [`SourcesError::Syntax`] from the TOML deserialiser's error, with
/// the path of the field and the line and column in `text`.
fn syntax_error(
    file: &str,
    text: &str,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> SourcesError {
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
}

/// A [`SourcesError::Invalid`] of `file`: `field` holds a value that is
/// well-typed but not acceptable, for the reason `what`.
fn invalid(file: &str, field: String, what: String) -> SourcesError {
    SourcesError::Invalid {
        file: file.to_owned(),
        field,
        what,
    }
}

/// One `[category.NAME]` table, checked: a valid name, at least one
/// source, each source valid and none given twice.
fn parse_category(
    file: &str,
    cat_name: String,
    cat: RawCategory,
    base: &Path,
) -> Result<CategorySources, SourcesError> {
    let field = format!("category.{cat_name}");
    if !lists::valid_category_name(&cat_name) {
        return Err(invalid(
            file,
            field,
            format!(
                "`{cat_name}` is not a valid category name (a-z, 0-9, _ and -, at most {} characters, starting with a letter or digit)",
                lists::MAX_NAME_LEN
            ),
        ));
    }
    if cat.source.is_empty() {
        return Err(invalid(
            file,
            format!("{field}.source"),
            "no source given".into(),
        ));
    }
    let mut sources: Vec<Source> = Vec::with_capacity(cat.source.len());
    for (i, s) in cat.source.into_iter().enumerate() {
        let field = format!("{field}.source[{i}]");
        let source = parse_source(file, &field, s, base)?;
        if let Some(j) = sources.iter().position(|o| o.kind == source.kind) {
            return Err(invalid(
                file,
                field,
                format!("same source as `category.{cat_name}.source[{j}]`"),
            ));
        }
        sources.push(source);
    }
    Ok(CategorySources {
        name: cat_name,
        note: cat.note.filter(|n| !n.trim().is_empty()),
        sources,
    })
}

/// One `[[category.NAME.source]]` entry, checked; `field` names it in errors.
fn parse_source(
    file: &str,
    field: &str,
    s: RawSource,
    base: &Path,
) -> Result<Source, SourcesError> {
    let kind = match (s.url, s.path, s.asn) {
        (Some(url), None, None) => {
            check_url(&url).map_err(|w| invalid(file, format!("{field}.url"), w))?;
            SourceKind::Url(url)
        }
        (None, Some(path), None) => {
            if path.as_os_str().is_empty() {
                return Err(invalid(file, format!("{field}.path"), "empty path".into()));
            }
            SourceKind::Path(base.join(path))
        }
        (None, None, Some(Asn(asn))) => SourceKind::Ripestat { asn },
        _ => {
            return Err(invalid(
                file,
                field.to_owned(),
                "give exactly one of `url` (plain CIDR list over https), `path` (plain CIDR list in a file) or `asn` (announced prefixes from RIPEstat)".into(),
            ));
        }
    };
    if s.normalize && matches!(kind, SourceKind::Ripestat { .. }) {
        return Err(invalid(
            file,
            format!("{field}.normalize"),
            "only plain CIDR lists (`url`, `path`) can be normalised".into(),
        ));
    }
    let name = match s.name {
        Some(n) if n.trim().is_empty() || n.chars().any(char::is_control) => {
            return Err(invalid(
                file,
                format!("{field}.name"),
                "must be one non-empty line".into(),
            ));
        }
        Some(n) => n.trim().to_owned(),
        None => default_name(&kind),
    };
    Ok(Source {
        name,
        kind,
        normalize: s.normalize,
    })
}

pub(super) fn default_name(kind: &SourceKind) -> String {
    match kind {
        SourceKind::Url(url) => format!("CIDR list {url}"),
        SourceKind::Path(path) => format!("CIDR list {}", path.display()),
        SourceKind::Ripestat { asn } => format!("prefixes announced by AS{asn} (RIPEstat)"),
    }
}

/// The RIPEstat request for `asn`.
pub(super) fn ripestat_request(base: &str, asn: u32) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}resource=AS{asn}")
}
