//! Policy specs: `drop`, `monitor`, `off`, `flows=P%`, `loss=P%`, each
//! optionally followed by `,scope=media` or `,scope=udp`.

use std::fmt;
use std::str::FromStr;

use filter_common::{
    ACTION_DROP, ACTION_FLOWS, ACTION_LOSS, ACTION_MONITOR, ACTION_OFF, Policy, SCOPE_MEDIA,
    SCOPE_UDP,
};

/// A parsed policy spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicySpec(pub Policy);

impl Default for PolicySpec {
    /// A category with no policy given: `drop`, scope `media`.
    fn default() -> Self {
        PolicySpec(crate::dataplane::loader::DEFAULT_POLICY)
    }
}

/// A spec that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "bad policy `{spec}`: {what} (expected drop, monitor, off, flows=P%, loss=P%, optionally followed by ,scope=media or ,scope=udp)"
)]
pub struct PolicyError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong.
    pub what: String,
}

fn percent(spec: &str, value: &str) -> Result<u8, PolicyError> {
    let err = |what: String| PolicyError {
        spec: spec.to_string(),
        what,
    };
    let digits = value
        .strip_suffix('%')
        .ok_or_else(|| err(format!("`{value}` must end with %")))?;
    let n: u8 = digits
        .parse()
        .map_err(|_| err(format!("`{digits}` is not a whole number from 0 to 100")))?;
    if n > 100 {
        return Err(err(format!("{n}% is more than 100%")));
    }
    Ok(n)
}

impl FromStr for PolicySpec {
    type Err = PolicyError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |what: &str| PolicyError {
            spec: spec.to_string(),
            what: what.to_string(),
        };
        let mut parts = spec.split(',').map(str::trim);
        let action = parts.next().unwrap_or_default();
        let mut p = Policy {
            action: ACTION_DROP,
            scope: SCOPE_MEDIA,
            percent: 100,
            _pad: 0,
        };
        match action.split_once('=') {
            None => match action {
                "drop" => p.action = ACTION_DROP,
                "monitor" => p.action = ACTION_MONITOR,
                "off" => p.action = ACTION_OFF,
                "" => return Err(err("empty")),
                _ => return Err(err(&format!("unknown action `{action}`"))),
            },
            Some(("flows", v)) => {
                p.action = ACTION_FLOWS;
                p.percent = percent(spec, v)?;
            }
            Some(("loss", v)) => {
                p.action = ACTION_LOSS;
                p.percent = percent(spec, v)?;
            }
            Some((k, _)) => return Err(err(&format!("unknown action `{k}`"))),
        }
        for opt in parts {
            match opt.split_once('=') {
                Some(("scope", "media")) => p.scope = SCOPE_MEDIA,
                Some(("scope", "udp")) => p.scope = SCOPE_UDP,
                Some(("scope", v)) => {
                    return Err(err(&format!("scope must be media or udp, not `{v}`")));
                }
                _ => return Err(err(&format!("unknown option `{opt}`"))),
            }
        }
        Ok(PolicySpec(p))
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        match p.action {
            ACTION_DROP => f.write_str("drop")?,
            ACTION_MONITOR => f.write_str("monitor")?,
            ACTION_OFF => f.write_str("off")?,
            ACTION_FLOWS => write!(f, "flows={}%", p.percent)?,
            ACTION_LOSS => write!(f, "loss={}%", p.percent)?,
            other => write!(f, "action#{other}")?,
        }
        if p.scope == SCOPE_UDP {
            f.write_str(",scope=udp")?;
        }
        Ok(())
    }
}

crate::control::config::serde_text!(PolicySpec);

/// `CATEGORY=SPEC`, as given to `--policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryPolicy {
    /// Category name.
    pub category: String,
    /// Its policy.
    pub spec: PolicySpec,
}

impl FromStr for CategoryPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (cat, spec) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not CATEGORY=SPEC (e.g. whatsapp=drop)"))?;
        if cat.is_empty() {
            return Err(format!("`{s}`: the category name is empty"));
        }
        Ok(CategoryPolicy {
            category: cat.to_string(),
            spec: spec.parse().map_err(|e: PolicyError| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Policy {
        s.parse::<PolicySpec>().unwrap().0
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(p("drop").action, ACTION_DROP);
        assert_eq!(p("drop").scope, SCOPE_MEDIA);
        assert_eq!(p("monitor").action, ACTION_MONITOR);
        assert_eq!(p("off").action, ACTION_OFF);
        assert_eq!(
            (p("flows=30%").action, p("flows=30%").percent),
            (ACTION_FLOWS, 30)
        );
        assert_eq!(
            (p("loss=20%").action, p("loss=20%").percent),
            (ACTION_LOSS, 20)
        );
        assert_eq!(p("drop,scope=udp").scope, SCOPE_UDP);
        assert_eq!(p("flows=0%,scope=media").percent, 0);
        assert_eq!(p("loss=100%").percent, 100);
    }

    #[test]
    fn display_round_trips() {
        for s in ["drop", "monitor", "off", "flows=30%", "loss=5%,scope=udp"] {
            assert_eq!(s.parse::<PolicySpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_specs_with_reason() {
        let e = |s: &str| s.parse::<PolicySpec>().unwrap_err().what;
        assert_eq!(e(""), "empty");
        assert_eq!(e("block"), "unknown action `block`");
        assert_eq!(e("flows=30"), "`30` must end with %");
        assert_eq!(e("flows=101%"), "101% is more than 100%");
        assert_eq!(e("loss=x%"), "`x` is not a whole number from 0 to 100");
        assert_eq!(e("drop,scope=tcp"), "scope must be media or udp, not `tcp`");
        assert_eq!(e("drop,fast"), "unknown option `fast`");
        assert_eq!(e("speed=1%"), "unknown action `speed`");
    }

    #[test]
    fn category_policy() {
        let c: CategoryPolicy = "telegram=monitor".parse().unwrap();
        assert_eq!(c.category, "telegram");
        assert_eq!(c.spec.0.action, ACTION_MONITOR);
        assert!("telegram".parse::<CategoryPolicy>().is_err());
        assert!("=drop".parse::<CategoryPolicy>().is_err());
        assert!(
            "x=nope"
                .parse::<CategoryPolicy>()
                .unwrap_err()
                .contains("unknown action")
        );
    }
}
