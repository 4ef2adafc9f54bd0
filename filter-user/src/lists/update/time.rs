//! UTC timestamps for the list headers (`YYYY-MM-DDTHH:MM:SSZ`, RFC 3339 in
//! whole seconds, by humantime).

use super::SystemTime;

/// Format `t` as `YYYY-MM-DDTHH:MM:SSZ` (UTC; times before 1970 as 1970).
pub fn utc(time: SystemTime) -> String {
    let time = time.max(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Parse `YYYY-MM-DDTHH:MM:SSZ` exactly as [`utc`] writes it (no fraction,
/// no other zone, no year before 1970, no leap second).
pub fn parse_utc(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 20 || b[19] != b'Z' || b[10] != b'T' || b[17] > b'5' {
        return None;
    }
    humantime::parse_rfc3339(text).ok()
}

/// When `flowfilter list update` wrote a list, from the header it writes
/// (`# NAME: written by ...` then `# at TIME: ...`); `None` for a list
/// without that header.
pub fn written_at(text: &str) -> Option<SystemTime> {
    let mut lines = text.lines();
    let first = lines.next()?;
    if !(first.starts_with("# ") && first.contains(": written by `flowfilter list update`")) {
        return None;
    }
    let at = lines.next()?.strip_prefix("# at ")?;
    parse_utc(at.get(..20)?)
}
