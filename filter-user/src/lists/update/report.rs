//! What one update did: per source, per category and in total.

use super::{MAX_GROWTH, PathBuf, SystemTime, fmt};

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
