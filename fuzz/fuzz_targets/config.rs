//! The daemon's TOML configuration (`flowfilter run --config FILE`):
//! arbitrary text through `Config::parse`.
//!
//! Invariants: no panic (TOML syntax, types, `Parsed<T>` values such as
//! policies, modes and socket addresses, the checks after parsing); an error
//! names the file and a line inside it (or 0 when unknown); an accepted
//! configuration satisfies the checks (interface names, absolute pin
//! directory, chunk count in range, category names) and merging no flags
//! changes nothing.
#![no_main]

use filter_user::control::config::{Config, ConfigError, RunFlags, check_ifname};
use filter_user::lists::valid_category_name;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(NAME, text) {
        Ok(cfg) => {
            for i in &cfg.interfaces {
                assert!(check_ifname(i).is_ok(), "accepted interface {i:?}");
            }
            assert!(
                cfg.pin_dir.is_absolute(),
                "pin_dir {}",
                cfg.pin_dir.display()
            );
            for name in cfg.policy.keys() {
                assert!(valid_category_name(name), "policy for {name:?}");
            }
            assert_eq!(cfg.clone().merge(&RunFlags::default()), cfg);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{NAME}:")),
                "error without the file: {msg}"
            );
            if let ConfigError::Field { line, .. } = &e {
                let lines = text.lines().count().max(1);
                assert!(*line <= lines + 1, "line {line} of {lines}: {msg}");
            }
        }
    }
});
