//! The daemon's TOML configuration (`flowfilter run --config FILE`).
//!
//! Every field is optional and has the default documented on [`Config`] (and
//! in `dist/flowfilter.toml`); unknown fields are errors. Command-line flags
//! override the file ([`Config::merge`]). An error names the file, the line
//! and the field: `flowfilter.toml:3: mode: `fast` is not an attach mode`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::control::policy::{CategoryPolicy, PolicySpec};
use crate::control::subscribers::{SubscriberFlags, SubscriberSection};
use crate::dataplane::loader::AttachMode;
use crate::dataplane::pins::DEFAULT_PIN_DIR;
use crate::lists::valid_category_name;

/// Default lists directory.
pub const DEFAULT_LISTS_DIR: &str = "/etc/flowfilter/lists";
/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
const IFNAME_MAX: usize = 15;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A field (or the TOML syntax) is wrong.
    #[error("{file}:{line}: {}{what}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Field {
        /// The file.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// Dotted path of the field (`policy.whatsapp`), empty for syntax errors.
        field: String,
        /// What is wrong.
        what: String,
    },
}

/// A value parsed from a string (of the TOML file, or of the state file
/// through [`serde_text`]) with its `FromStr` (errors keep the parser's
/// message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T> serde::de::Visitor<'_> for V<T>
        where
            T: FromStr,
            T::Err: fmt::Display,
        {
            type Value = Parsed<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map(Parsed).map_err(E::custom)
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// `Serialize` and `Deserialize` for types with `Display` and `FromStr`: a
/// value is written as its text and parsed once, when read (errors keep
/// the parser's message, as [`Parsed`]). The state file's values use it.
macro_rules! serde_text {
    ($($t:ty),+ $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$crate::control::config::Parsed<$t> as serde::Deserialize>::deserialize(d)
                    .map(|p| p.0)
            }
        }
    )+};
}
pub(crate) use serde_text;

/// The one of `all` whose text is `s` (for `FromStr` of a type whose
/// values are words).
pub(crate) fn keyword<T: Copy + fmt::Display>(all: &[T], s: &str) -> Option<T> {
    all.iter().copied().find(|x| x.to_string() == s)
}

/// The configuration file. Defaults are those of `flowfilter run` without
/// flags.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Interfaces to attach to (`--iface`). Default: none (`run` needs one).
    pub interfaces: Vec<String>,
    /// `auto` (driver, falling back to skb with a warning), `driver` or
    /// `skb` (`--mode`). Default `auto`.
    pub mode: Parsed<AttachMode>,
    /// Network namespace (a name under /run/netns) whose interfaces are
    /// attached (`--netns`). Default: the daemon's own.
    pub netns: Option<String>,
    /// Lists directory (`--lists`). Default [`DEFAULT_LISTS_DIR`].
    pub lists: PathBuf,
    /// Accept CIDRs with host bits set, clearing them (`--normalize`).
    /// Default `false`.
    pub normalize: bool,
    /// bpffs directory of the pins (`--pin-dir`). Default [`DEFAULT_PIN_DIR`].
    pub pin_dir: PathBuf,
    /// Address of the Prometheus `/metrics` endpoint (`--metrics`), e.g.
    /// `127.0.0.1:9477`. Default: none (no endpoint).
    pub metrics: Option<Parsed<SocketAddr>>,
    /// Remove links and pins on SIGTERM/SIGINT (`--detach-on-exit`).
    /// Default `false`: filtering stays in force without the daemon.
    pub detach_on_exit: bool,
    /// No longer used (the prefix tables are sized to the lists); accepted
    /// so older configuration files still load, with a warning.
    pub v4_chunks_per_gen: Option<u32>,
    /// Policy per category name (`--policy CATEGORY=SPEC`): `drop`,
    /// `monitor`, `off`, `flows=P%`, `loss=P%`, optionally `,scope=udp`.
    /// Default: `drop` (scope media) for every category.
    pub policy: BTreeMap<String, PolicySpec>,
    /// Who the subscribers are for `flows=P%` (`--inside`, `--subscribers`,
    /// `--seed`): see [`SubscriberSection`]. Default: private and shared
    /// address space, a random seed drawn anew hourly.
    pub subscribers: SubscriberSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interfaces: Vec::new(),
            mode: Parsed(AttachMode::Auto),
            netns: None,
            lists: PathBuf::from(DEFAULT_LISTS_DIR),
            normalize: false,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            metrics: None,
            detach_on_exit: false,
            v4_chunks_per_gen: None,
            policy: BTreeMap::new(),
            subscribers: SubscriberSection::default(),
        }
    }
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].lines().count().max(1)
}

/// The line where `key = ` (or `"key" =`) is written in the file, for
/// errors found after parsing; 0 when not found.
fn line_of_key(text: &str, key: &str) -> usize {
    let last = key.rsplit('.').next().unwrap_or(key);
    let last = last.split('[').next().unwrap_or(last);
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix('"').unwrap_or(l);
            l.strip_prefix(last).is_some_and(|rest| {
                let rest = rest.strip_prefix('"').unwrap_or(rest);
                rest.trim_start().starts_with('=')
            })
        })
        .map_or(0, |i| i + 1)
}

/// Whether `name` is a usable interface name.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b.is_ascii_whitespace())
}

/// Check an interface name (for `--iface` too).
pub fn check_ifname(name: &str) -> Result<(), String> {
    if valid_ifname(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an interface name (1 to {IFNAME_MAX} characters, no `/` or spaces)"
        ))
    }
}

/// Check a network namespace name (a file under /run/netns).
pub fn check_netns(name: &str) -> Result<(), String> {
    if valid_ifname(name) || (!name.is_empty() && name.len() < 256 && !name.contains('/')) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a network namespace name"))
    }
}

impl Config {
    /// Parse the text of a configuration file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
                let field = e.path().to_string();
                let field = if field == "." { String::new() } else { field };
                let inner = e.into_inner();
                let line = inner.span().map_or(0, |s| line_of(text, s.start));
                // An unknown key of a table is reported at the table's
                // header: name the key's own line when it can be found.
                let header = text
                    .lines()
                    .nth(line.saturating_sub(1))
                    .is_some_and(|l| l.trim_start().starts_with('['));
                let line = match line_of_key(text, &field) {
                    k if header && k > line => k,
                    _ => line,
                };
                ConfigError::Field {
                    file: file.to_owned(),
                    line,
                    field,
                    what: inner.message().trim().to_owned(),
                }
            })?;
        cfg.validate().map_err(|(field, what)| ConfigError::Field {
            file: file.to_owned(),
            line: line_of_key(text, &field),
            field,
            what,
        })?;
        Ok(cfg)
    }

    /// Read and parse a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Config::parse(&file, &text)
    }

    /// Checks beyond types: `(field, what)` of the first problem.
    fn validate(&self) -> Result<(), (String, String)> {
        for (i, name) in self.interfaces.iter().enumerate() {
            check_ifname(name).map_err(|w| (format!("interfaces[{i}]"), w))?;
        }
        if let Some(ns) = &self.netns {
            check_netns(ns).map_err(|w| ("netns".to_owned(), w))?;
        }
        if !self.pin_dir.is_absolute() {
            return Err((
                "pin_dir".to_owned(),
                format!("`{}` is not an absolute path", self.pin_dir.display()),
            ));
        }
        for name in self.policy.keys() {
            if !valid_category_name(name) && name != crate::lists::ALLOW_NAME {
                return Err((
                    format!("policy.{name}"),
                    format!(
                        "`{name}` is not a category name (a-z, 0-9, _ and -, at most 32 characters)"
                    ),
                ));
            }
            if name == crate::lists::ALLOW_NAME {
                return Err((
                    format!("policy.{name}"),
                    "the allowlist has no policy: its addresses are never touched".to_owned(),
                ));
            }
        }
        self.subscribers
            .validate()
            .map_err(|(f, w)| (format!("subscribers.{f}"), w))?;
        Ok(())
    }

    /// Apply command-line flags over the file.
    #[must_use]
    pub fn merge(mut self, flags: &RunFlags) -> Config {
        if !flags.interfaces.is_empty() {
            self.interfaces.clone_from(&flags.interfaces);
        }
        if let Some(m) = flags.mode {
            self.mode = Parsed(m);
        }
        if let Some(ns) = &flags.netns {
            self.netns = Some(ns.clone());
        }
        if let Some(l) = &flags.lists {
            self.lists.clone_from(l);
        }
        self.normalize |= flags.normalize;
        if let Some(p) = &flags.pin_dir {
            self.pin_dir.clone_from(p);
        }
        if let Some(m) = flags.metrics {
            self.metrics = Some(Parsed(m));
        }
        self.detach_on_exit |= flags.detach_on_exit;
        for p in &flags.policies {
            self.policy.insert(p.category.clone(), p.spec);
        }
        self.subscribers = self.subscribers.merge(&flags.subscribers);
        self
    }
}

/// `flowfilter run`'s flags, as clap parses them (`run` flattens this) and
/// as [`Config::merge`] lays them over the configuration file: each flag
/// given replaces its key (`--policy` its category's entry, the switches
/// turn theirs on). `--replace` has no key; `pin_dir` is the global
/// `--pin-dir`, which the caller sets.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFlags {
    /// Interface to attach to (repeatable; replaces the configuration's).
    #[arg(long = "iface", value_name = "IF", value_parser = parse_ifname)]
    pub interfaces: Vec<String>,
    /// XDP mode: auto (driver, falling back to skb), driver or skb.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<AttachMode>,
    /// Attach to interfaces of this network namespace (/run/netns/NAME);
    /// everything else (pins, metrics) stays in the daemon's own.
    #[arg(long, value_name = "NAME", value_parser = parse_netns)]
    pub netns: Option<String>,
    /// Lists directory (default /etc/flowfilter/lists).
    #[arg(long, value_name = "DIR")]
    pub lists: Option<PathBuf>,
    /// Policy of a category, e.g. `telegram=flows=30%` (repeatable).
    #[arg(long = "policy", value_name = "CATEGORY=SPEC")]
    pub policies: Vec<CategoryPolicy>,
    /// Accept CIDRs with host bits set, clearing them.
    #[arg(long)]
    pub normalize: bool,
    /// Serve Prometheus text at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Remove the links and pins on SIGTERM/SIGINT.
    #[arg(long)]
    pub detach_on_exit: bool,
    /// Replace pins made by another build: swap the program on the links
    /// (bpf_link_update), keep compatible maps, recreate the others.
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub subscribers: SubscriberFlags,
    /// The global `--pin-dir` (every verb has it, so clap does not fill it
    /// in here).
    #[arg(skip)]
    pub pin_dir: Option<PathBuf>,
}

/// Parse an interface name (`--iface`, `--inside`; for clap).
pub fn parse_ifname(s: &str) -> Result<String, String> {
    check_ifname(s).map(|()| s.to_owned())
}

/// Parse a network namespace name (`--netns`; for clap).
pub fn parse_netns(s: &str) -> Result<String, String> {
    check_netns(s).map(|()| s.to_owned())
}

#[cfg(test)]
mod tests;
