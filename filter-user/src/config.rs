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

use crate::lists::valid_category_name;
use crate::loader::AttachMode;
use crate::pins::DEFAULT_PIN_DIR;
use crate::policy::{CategoryPolicy, PolicySpec};
use crate::subscribers::{SubscriberFlags, SubscriberSection};

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

/// A value parsed from a TOML string with its `FromStr` (errors keep the
/// parser's message).
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
    pub policy: BTreeMap<String, Parsed<PolicySpec>>,
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
    pub fn merge(mut self, flags: &Flags) -> Config {
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
            self.policy.insert(p.category.clone(), Parsed(p.spec));
        }
        self.subscribers = self.subscribers.merge(&flags.subscribers);
        self
    }

    /// Policies by category name.
    pub fn policies(&self) -> BTreeMap<String, PolicySpec> {
        self.policy.iter().map(|(k, v)| (k.clone(), v.0)).collect()
    }
}

/// `flowfilter run` flags that override the configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--iface` (replaces the file's list when given).
    pub interfaces: Vec<String>,
    /// `--mode`.
    pub mode: Option<AttachMode>,
    /// `--netns`.
    pub netns: Option<String>,
    /// `--lists`.
    pub lists: Option<PathBuf>,
    /// `--normalize`.
    pub normalize: bool,
    /// `--pin-dir`.
    pub pin_dir: Option<PathBuf>,
    /// `--metrics`.
    pub metrics: Option<SocketAddr>,
    /// `--detach-on-exit`.
    pub detach_on_exit: bool,
    /// `--policy` (override the file's per category).
    pub policies: Vec<CategoryPolicy>,
    /// `--inside`, `--subscribers`, `--seed`.
    pub subscribers: SubscriberFlags,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse("f.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::parse("f.toml", "").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.pin_dir, Path::new("/sys/fs/bpf/flowfilter"));
        assert_eq!(c.lists, Path::new("/etc/flowfilter/lists"));
        assert_eq!(c.mode.0, AttachMode::Auto);
        assert!(!c.normalize && !c.detach_on_exit);
        assert_eq!(c.v4_chunks_per_gen, None);
        assert!(c.metrics.is_none() && c.netns.is_none() && c.interfaces.is_empty());
    }

    #[test]
    fn every_field() {
        let c = Config::parse(
            "f.toml",
            r#"
interfaces = ["eth0", "eth1"]
mode = "skb"
netns = "gw"
lists = "/srv/lists"
normalize = true
pin_dir = "/sys/fs/bpf/ff2"
metrics = "127.0.0.1:9477"
detach_on_exit = true
v4_chunks_per_gen = 1024

[policy]
whatsapp = "monitor"
telegram = "flows=30%,scope=udp"
"#,
        )
        .unwrap();
        assert_eq!(c.interfaces, ["eth0", "eth1"]);
        assert_eq!(c.mode.0, AttachMode::Skb);
        assert_eq!(c.netns.as_deref(), Some("gw"));
        assert_eq!(c.lists, Path::new("/srv/lists"));
        assert!(c.normalize && c.detach_on_exit);
        assert_eq!(
            c.metrics.as_ref().unwrap().0,
            "127.0.0.1:9477".parse().unwrap()
        );
        assert_eq!(c.v4_chunks_per_gen, Some(1024), "accepted, ignored");
        let p = c.policies();
        assert_eq!(p["whatsapp"].to_string(), "monitor");
        assert_eq!(p["telegram"].to_string(), "flows=30%,scope=udp");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        assert_eq!(
            err("interfaces = [\"eth0\"]\nmode = \"fast\"\n"),
            "f.toml:2: mode: `fast` is not an attach mode (auto, driver or skb)"
        );
        assert_eq!(
            err("[policy]\nwhatsapp = \"block\"\n"),
            "f.toml:2: policy.whatsapp: bad policy `block`: unknown action `block` (expected drop, monitor, off, flows=P%, loss=P%, optionally followed by ,scope=media or ,scope=udp)"
        );
        assert_eq!(
            err("metrics = \"localhost\"\n"),
            "f.toml:1: metrics: invalid socket address syntax"
        );
        assert_eq!(
            err("normalize = \"yes\"\n"),
            "f.toml:1: normalize: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            err("\n\nv4_chunks_per_gen = -1\n"),
            "f.toml:3: v4_chunks_per_gen: invalid value: integer `-1`, expected u32"
        );
        let unknown = err("iface = \"eth0\"\n");
        assert!(
            unknown.starts_with("f.toml:1: iface: unknown field `iface`, expected one of"),
            "{unknown}"
        );
        assert!(
            err("mode = \n").starts_with("f.toml:1: "),
            "{}",
            err("mode = \n")
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        assert_eq!(
            err("interfaces = [\"eth0\", \"a/b\"]\n"),
            "f.toml:1: interfaces[1]: `a/b` is not an interface name (1 to 15 characters, no `/` or spaces)"
        );
        assert_eq!(
            err("pin_dir = \"relative\"\n"),
            "f.toml:1: pin_dir: `relative` is not an absolute path"
        );
        assert_eq!(
            err("[policy]\n\"Bad Name\" = \"drop\"\n"),
            "f.toml:2: policy.Bad Name: `Bad Name` is not a category name (a-z, 0-9, _ and -, at most 32 characters)"
        );
        assert_eq!(
            err("[policy]\nallow = \"drop\"\n"),
            "f.toml:2: policy.allow: the allowlist has no policy: its addresses are never touched"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let c = Config::parse(
            "f.toml",
            "interfaces = [\"eth0\"]\nmode = \"driver\"\n[policy]\nwhatsapp = \"monitor\"\ntelegram = \"off\"\n",
        )
        .unwrap();
        let flags = Flags {
            interfaces: vec!["eth9".into()],
            mode: Some(AttachMode::Skb),
            normalize: true,
            metrics: Some("127.0.0.1:1".parse().unwrap()),
            policies: vec!["whatsapp=drop".parse().unwrap()],
            ..Flags::default()
        };
        let m = c.merge(&flags);
        assert_eq!(m.interfaces, ["eth9"]);
        assert_eq!(m.mode.0, AttachMode::Skb);
        assert!(m.normalize);
        assert_eq!(m.policies()["whatsapp"].to_string(), "drop");
        assert_eq!(m.policies()["telegram"].to_string(), "off");
        assert_eq!(m.metrics.unwrap().0.port(), 1);
        // No flags: the file as it is.
        let c = Config::parse("f.toml", "interfaces = [\"eth0\"]\n").unwrap();
        assert_eq!(c.clone().merge(&Flags::default()), c);
    }

    #[test]
    fn subscribers_section() {
        let c = Config::parse(
            "f.toml",
            "[subscribers]\nprefixes = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nv6_len = 56\nseed = 42\nrotation_secs = 0\n",
        )
        .unwrap();
        let r = c.subscribers.rule();
        assert!(!r.by_interface);
        assert_eq!(r.prefixes.len(), 2);
        assert_eq!((r.v4_len, r.v6_len), (32, 56));
        assert_eq!(c.subscribers.seed, Some(42));
        assert_eq!(c.subscribers.rotation(), 0);
        let c = Config::parse(
            "f.toml",
            "interfaces = [\"eth0\", \"eth1\"]\n[subscribers]\ninside = [\"eth1\"]\n",
        )
        .unwrap();
        assert!(c.subscribers.rule().by_interface);
        assert!(c.subscribers.check_inside(&c.interfaces).is_ok());
        // Flags override the section.
        let m = c.merge(&Flags {
            subscribers: SubscriberFlags {
                prefixes: vec!["192.0.2.0/24".parse().unwrap()],
                seed: Some(5),
                ..SubscriberFlags::default()
            },
            ..Flags::default()
        });
        assert!(!m.subscribers.rule().by_interface);
        assert_eq!(m.subscribers.seed, Some(5));
    }

    #[test]
    fn subscribers_errors_name_file_line_and_field() {
        assert_eq!(
            err("[subscribers]\nprefixes = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n"),
            "f.toml:2: subscribers.prefixes[1]: `10.0.0.1/8` has bits set beyond /8 (use 10.0.0.0/8)"
        );
        assert_eq!(
            err("[subscribers]\ninside = [\"eth1\"]\nprefixes = [\"10.0.0.0/8\"]\n"),
            "f.toml:3: subscribers.prefixes: give `inside` (interfaces facing subscribers) or `prefixes`, not both"
        );
        assert_eq!(
            err("[subscribers]\nprefixes = []\n"),
            "f.toml:2: subscribers.prefixes: no prefix: name at least one, or leave the key out for the default (private and shared address space)"
        );
        assert_eq!(
            err("[subscribers]\n\nv6_len = 0\n"),
            "f.toml:3: subscribers.v6_len: 0 is not an IPv6 prefix length of a subscriber (1 to 128)"
        );
        assert_eq!(
            err("[subscribers]\nv4_len = 33\n"),
            "f.toml:2: subscribers.v4_len: 33 is not an IPv4 prefix length of a subscriber (1 to 32)"
        );
        assert_eq!(
            err("[subscribers]\ninside = [\"a b\"]\n"),
            "f.toml:2: subscribers.inside[0]: `a b` is not an interface name (1 to 15 characters, no `/` or spaces)"
        );
        assert_eq!(
            err("[subscribers]\nseed = -1\n"),
            "f.toml:2: subscribers.seed: invalid value: integer `-1`, expected u64"
        );
        let unknown = err("[subscribers]\nrule = \"x\"\n");
        assert!(
            unknown.starts_with("f.toml:2: subscribers.rule: unknown field `rule`"),
            "{unknown}"
        );
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../dist/flowfilter.toml");
        let c = Config::parse("dist/flowfilter.toml", text).unwrap();
        assert!(!c.interfaces.is_empty());
    }
}
