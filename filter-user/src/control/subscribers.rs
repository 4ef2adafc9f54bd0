//! Who the subscribers are, for `flows=P%`: the `[subscribers]` section of
//! the configuration, `flowfilter run --inside/--subscribers/--seed`, what
//! the daemon writes into the program, and what `status` shows.
//!
//! A subscriber is an address on the operator's side of the gateway (IPv4
//! one address, IPv6 a /64 by default); every flow of its calls takes its
//! fate. The side is named by the interfaces facing subscribers (`inside`)
//! or by prefixes (`prefixes`); one or the other, never both. Neither: the
//! private and shared address space ([`DEFAULT_SUBSCRIBERS`]).

use std::fmt::Write as _;

use aya::maps::{Array, MapData};
use filter_common::{
    IF_INDEX_LIMIT, IF_INSIDE, MAP_IF_SLOT, STATE_SUB_IFACE, STATE_SUB_PREFIX, SUB_V4_LEN,
    SUB_V6_LEN, SUBSCRIBER_CAPACITY,
};
use serde::{Deserialize, Serialize};

use crate::control::config::Parsed;
use crate::control::state::StateFile;
use crate::dataplane::loader::{
    DEFAULT_EPOCH_SECS, DEFAULT_SUBSCRIBERS, Filter, LoadError, Subscribers,
};
use crate::lists::Cidr;

/// The `[subscribers]` section of the configuration file. Every key is
/// optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriberSection {
    /// Interfaces facing subscribers (`--inside`): a packet that comes in
    /// on one is from a subscriber, any other packet is to one. Each must
    /// be one of the attached interfaces.
    pub inside: Vec<String>,
    /// Subscriber prefixes (`--subscribers`); `None`: the default
    /// ([`DEFAULT_SUBSCRIBERS`]) unless `inside` is given.
    pub prefixes: Option<Vec<Parsed<Cidr>>>,
    /// Prefix length of one IPv4 subscriber (1..=32, default 32).
    pub v4_len: Option<u8>,
    /// Prefix length of one IPv6 subscriber (1..=128, default 64).
    pub v6_len: Option<u8>,
    /// Base seed of the draw (`--seed`); default: a random one, drawn when
    /// the pins are created.
    pub seed: Option<u64>,
    /// Seconds after which an idle subscriber's fate is drawn anew (0:
    /// never; default 3600).
    pub rotation_secs: Option<u32>,
}

/// `flowfilter run`'s flags about subscribers (part of
/// [`crate::control::config::RunFlags`]; they override the section).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberFlags {
    /// Interface facing subscribers (repeatable; attached with --iface):
    /// what comes in on it is from a subscriber. Replaces the
    /// configuration's `[subscribers]` rule.
    #[arg(long = "inside", value_name = "IF", value_parser = crate::control::config::parse_ifname, conflicts_with = "subscribers")]
    pub inside: Vec<String>,
    /// Subscriber prefixes (default: private and shared address space).
    /// Replaces the configuration's `[subscribers]` rule.
    #[arg(id = "subscribers", long = "subscribers", value_name = "CIDR", num_args = 1.., value_parser = parse_prefix)]
    pub prefixes: Vec<Cidr>,
    /// Seed of the `flows=P%` draw (default: random, drawn when the pins
    /// are created); gateways with one seed pick the same subscribers.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

impl SubscriberSection {
    /// Checks beyond types: `(field, what)` of the first problem, the field
    /// relative to the section (`inside[1]`, `prefixes`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, name) in self.inside.iter().enumerate() {
            crate::control::config::check_ifname(name).map_err(|w| (format!("inside[{i}]"), w))?;
        }
        if let Some(p) = &self.prefixes {
            if !self.inside.is_empty() {
                return Err((
                    "prefixes".into(),
                    "give `inside` (interfaces facing subscribers) or `prefixes`, not both".into(),
                ));
            }
            if p.is_empty() {
                return Err((
                    "prefixes".into(),
                    "no prefix: name at least one, or leave the key out for the default (private and shared address space)".into(),
                ));
            }
            check_count(p.len()).map_err(|w| ("prefixes".to_owned(), w))?;
        }
        if let Some(l) = self.v4_len
            && !(1..=32).contains(&l)
        {
            return Err((
                "v4_len".into(),
                format!("{l} is not an IPv4 prefix length of a subscriber (1 to 32)"),
            ));
        }
        if let Some(l) = self.v6_len
            && !(1..=128).contains(&l)
        {
            return Err((
                "v6_len".into(),
                format!("{l} is not an IPv6 prefix length of a subscriber (1 to 128)"),
            ));
        }
        Ok(())
    }

    /// Apply flags over the section: `--inside` or `--subscribers` replaces
    /// the section's rule (both `inside` and `prefixes`), `--seed` its seed.
    #[must_use]
    pub fn merge(mut self, flags: &SubscriberFlags) -> SubscriberSection {
        if !flags.inside.is_empty() {
            self.inside.clone_from(&flags.inside);
            self.prefixes = None;
        } else if !flags.prefixes.is_empty() {
            self.inside.clear();
            self.prefixes = Some(flags.prefixes.iter().copied().map(Parsed).collect());
        }
        if flags.seed.is_some() {
            self.seed = flags.seed;
        }
        self
    }

    /// The rule for the program.
    pub fn rule(&self) -> Subscribers {
        let by_interface = !self.inside.is_empty();
        Subscribers {
            by_interface,
            prefixes: match &self.prefixes {
                _ if by_interface => Vec::new(),
                Some(p) => p.iter().map(|c| c.0).collect(),
                None => Subscribers::default().prefixes,
            },
            v4_len: self.v4_len.unwrap_or(SUB_V4_LEN),
            v6_len: self.v6_len.unwrap_or(SUB_V6_LEN),
        }
    }

    /// Seconds after which an idle subscriber's fate is drawn anew.
    pub fn rotation(&self) -> u32 {
        self.rotation_secs.unwrap_or(DEFAULT_EPOCH_SECS)
    }

    /// Every interface facing subscribers must be attached (the program
    /// sees only what comes in on the interfaces it is attached to).
    pub fn check_inside(&self, interfaces: &[String]) -> Result<(), String> {
        match self.inside.iter().find(|i| !interfaces.contains(i)) {
            Some(i) => Err(format!(
                "subscribers: inside interface `{i}` is not attached (attached: {}); flowfilter must be attached to the interfaces facing subscribers (add it to --iface or `interfaces`)",
                if interfaces.is_empty() {
                    "none".to_owned()
                } else {
                    interfaces.join(", ")
                }
            )),
            None => Ok(()),
        }
    }
}

/// Refuse more prefixes than the program's map holds.
pub fn check_count(n: usize) -> Result<(), String> {
    let max = SUBSCRIBER_CAPACITY as usize;
    if n > max {
        Err(format!("{n} subscriber prefixes; the limit is {max}"))
    } else {
        Ok(())
    }
}

/// Parse `--subscribers` values (for clap).
pub fn parse_prefix(s: &str) -> Result<Cidr, String> {
    s.parse::<Cidr>().map_err(|e| e.to_string())
}

/// Before an install: mark the interfaces facing subscribers (`marks`:
/// ifindex and whether it faces subscribers; marked before the install
/// turns the rule on) and hand the rule to the install (written with its
/// generation flip).
pub fn before_install(
    filter: &mut Filter,
    section: &SubscriberSection,
    marks: &[(u32, bool)],
) -> Result<(), LoadError> {
    for &(ifindex, inside) in marks {
        // An interface past the map's range cannot be marked; that is only
        // an error for one facing subscribers.
        if ifindex < IF_INDEX_LIMIT || inside {
            filter.set_interface_inside(ifindex, inside)?;
        }
    }
    filter.set_subscribers(section.rule())
}

/// After an install: the seed when one is given (else the pinned one
/// stays), the rotation, and the wall clock.
pub fn after_install(filter: &mut Filter, section: &SubscriberSection) -> Result<(), LoadError> {
    let seed = match section.seed {
        Some(s) => s,
        None => filter.state()?.seed,
    };
    filter.set_seed(seed, section.rotation())?;
    filter.set_wall_clock(None)
}

/// The subscriber rule in force, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberStatus {
    /// `interface`, `prefixes` or `none` (no rule written yet: every flow
    /// follows the rule for flows with no subscriber end).
    pub rule: &'static str,
    /// Interfaces marked as facing subscribers (names from the state file,
    /// else `ifindex N`).
    pub interfaces: Vec<String>,
    /// The active generation's prefixes.
    pub prefixes: Vec<Cidr>,
    /// Prefix length of one IPv4 subscriber.
    pub v4_len: u8,
    /// Prefix length of one IPv6 subscriber.
    pub v6_len: u8,
    /// Seconds after which an idle subscriber's fate is drawn anew (0: never).
    pub rotation_secs: u32,
}

/// Read the subscriber rule of `f`.
pub fn status(f: &Filter, state: Option<&StateFile>) -> Result<SubscriberStatus, LoadError> {
    let s = f.state()?;
    let rule = if s.flags & STATE_SUB_IFACE != 0 {
        "interface"
    } else if s.flags & STATE_SUB_PREFIX != 0 {
        "prefixes"
    } else {
        "none"
    };
    let m = f.map(MAP_IF_SLOT).ok_or(LoadError::Missing(MAP_IF_SLOT))?;
    let slots: Array<&MapData, u32> = Array::try_from(m).map_err(|e| LoadError::Map {
        map: MAP_IF_SLOT,
        source: e,
    })?;
    let mut interfaces = Vec::new();
    for i in 0..IF_INDEX_LIMIT {
        let v = slots.get(&i, 0).map_err(|e| LoadError::Map {
            map: MAP_IF_SLOT,
            source: e,
        })?;
        if v & IF_INSIDE != 0 {
            let name = state
                .and_then(|st| st.interfaces.iter().find(|x| x.ifindex == Some(i)))
                .map_or_else(|| format!("ifindex {i}"), |x| x.name.clone());
            interfaces.push(name);
        }
    }
    Ok(SubscriberStatus {
        rule,
        interfaces,
        prefixes: if rule == "prefixes" {
            f.subscriber_prefixes()?
        } else {
            Vec::new()
        },
        v4_len: s.sub_v4_len,
        v6_len: s.sub_v6_len,
        rotation_secs: s.epoch_secs,
    })
}

/// The subscribers in `status --json` (fields in the JSON's order).
#[derive(Serialize)]
pub struct SubscriberJson<'a> {
    rule: &'static str,
    interfaces: &'a [String],
    /// How many prefixes.
    prefixes: usize,
    /// Whether they are the built-in default.
    default_prefixes: bool,
    v4_len: u8,
    v6_len: u8,
    rotation_secs: u32,
}

/// Prefixes shown in full in the text of `status`; more are counted.
const SHOWN: usize = 6;

impl SubscriberStatus {
    /// Whether the prefixes are the built-in default.
    fn default_prefixes(&self) -> bool {
        let mut d: Vec<Cidr> = DEFAULT_SUBSCRIBERS
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        d.sort();
        d == self.prefixes
    }

    /// The `status --json` object.
    pub fn to_json(&self) -> SubscriberJson<'_> {
        SubscriberJson {
            rule: self.rule,
            interfaces: &self.interfaces,
            prefixes: self.prefixes.len(),
            default_prefixes: self.rule == "prefixes" && self.default_prefixes(),
            v4_len: self.v4_len,
            v6_len: self.v6_len,
            rotation_secs: self.rotation_secs,
        }
    }

    /// The `status` lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let what = match self.rule {
            "interface" => format!(
                "behind {}",
                if self.interfaces.is_empty() {
                    "no interface (none marked)".to_owned()
                } else {
                    self.interfaces.join(", ")
                }
            ),
            "prefixes" => {
                let mut s = format!(
                    "{} prefix{}",
                    self.prefixes.len(),
                    if self.prefixes.len() == 1 { "" } else { "es" }
                );
                if self.default_prefixes() {
                    s.push_str(" (default: private and shared address space)");
                } else if self.prefixes.len() <= SHOWN {
                    let p: Vec<String> = self.prefixes.iter().map(Cidr::to_string).collect();
                    let _ = write!(s, ": {}", p.join(", "));
                }
                s
            }
            _ => "not set (every flow follows its caller)".to_owned(),
        };
        let _ = writeln!(
            out,
            "subscribers  {what}; one per IPv4 /{}, IPv6 /{}",
            self.v4_len, self.v6_len
        );
        let _ = writeln!(
            out,
            "flows=P%     {}",
            if self.rotation_secs == 0 {
                "fates never drawn anew".to_owned()
            } else {
                format!(
                    "an idle subscriber's fate is drawn anew every {} s",
                    self.rotation_secs
                )
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn default_rule_is_private_and_shared_space() {
        let r = SubscriberSection::default().rule();
        assert_eq!(r, Subscribers::default());
        assert!(!r.by_interface);
        assert_eq!(r.prefixes.len(), DEFAULT_SUBSCRIBERS.len());
        assert_eq!((r.v4_len, r.v6_len), (32, 64));
        assert_eq!(SubscriberSection::default().rotation(), 3600);
    }

    #[test]
    fn flags_replace_the_section_rule() {
        let file = SubscriberSection {
            prefixes: Some(vec![Parsed(cidr("10.0.0.0/8"))]),
            v6_len: Some(56),
            seed: Some(7),
            ..SubscriberSection::default()
        };
        let by_if = file.clone().merge(&SubscriberFlags {
            inside: vec!["eth1".into()],
            ..SubscriberFlags::default()
        });
        assert_eq!(by_if.inside, ["eth1"]);
        assert_eq!(by_if.prefixes, None);
        assert_eq!(by_if.seed, Some(7));
        let r = by_if.rule();
        assert!(r.by_interface && r.prefixes.is_empty());
        assert_eq!(r.v6_len, 56, "lengths stay from the file");
        let by_prefix = SubscriberSection {
            inside: vec!["eth1".into()],
            ..SubscriberSection::default()
        }
        .merge(&SubscriberFlags {
            prefixes: vec![cidr("192.0.2.0/24")],
            seed: Some(9),
            ..SubscriberFlags::default()
        });
        assert!(by_prefix.inside.is_empty());
        assert_eq!(by_prefix.rule().prefixes, [cidr("192.0.2.0/24")]);
        assert_eq!(by_prefix.seed, Some(9));
        assert_eq!(file.clone().merge(&SubscriberFlags::default()), file);
    }

    #[test]
    fn inside_must_be_attached() {
        let s = SubscriberSection {
            inside: vec!["eth1".into()],
            ..SubscriberSection::default()
        };
        assert!(s.check_inside(&["eth0".into(), "eth1".into()]).is_ok());
        let e = s.check_inside(&["eth0".into()]).unwrap_err();
        assert!(
            e.starts_with("subscribers: inside interface `eth1` is not attached (attached: eth0)"),
            "{e}"
        );
    }

    #[test]
    fn status_text_names_the_rule() {
        let mut st = SubscriberStatus {
            rule: "interface",
            interfaces: vec!["eth1".into()],
            prefixes: Vec::new(),
            v4_len: 32,
            v6_len: 64,
            rotation_secs: 3600,
        };
        assert_eq!(
            st.to_text(),
            "subscribers  behind eth1; one per IPv4 /32, IPv6 /64\nflows=P%     an idle subscriber's fate is drawn anew every 3600 s\n"
        );
        st.rule = "prefixes";
        st.prefixes = vec![cidr("192.0.2.0/24"), cidr("2001:db8::/32")];
        assert!(
            st.to_text()
                .starts_with("subscribers  2 prefixes: 192.0.2.0/24, 2001:db8::/32;"),
            "{}",
            st.to_text()
        );
        st.prefixes = DEFAULT_SUBSCRIBERS.iter().map(|p| cidr(p)).collect();
        st.prefixes.sort();
        assert!(
            st.to_text().contains("5 prefixes (default"),
            "{}",
            st.to_text()
        );
        assert!(st.to_json().default_prefixes);
        assert_eq!(st.to_json().prefixes, 5);
    }
}
