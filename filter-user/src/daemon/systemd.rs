//! Living under systemd: readiness notifications (`Type=notify`), log lines
//! with syslog priorities when stderr is the journal, and the stop and
//! reload signals held from the first instant of the process.
//!
//! Notifications are datagrams to `$NOTIFY_SOCKET` (a path, or `@name` for
//! an abstract socket), as `sd_notify(3)` sends them: `READY=1` once every
//! interface is attached (or waited for), `RELOADING=1` with
//! `MONOTONIC_USEC` before a reload and `READY=1` after it, `STOPPING=1`
//! when stopping, and `STATUS=` lines saying what is in force. Without
//! `$NOTIFY_SOCKET` nothing is sent.
//!
//! Logs: when `$JOURNAL_STREAM` names our stderr (systemd sets it for
//! services whose output goes to the journal), each line starts with its
//! priority as `<N>` (sd-daemon(3)): error 3, warning 4, notice 5, info 6,
//! debug 7; journald strips the prefix and files the line at that
//! priority, so `journalctl -p err` shows errors. Elsewhere lines keep
//! env_logger's format. The log crate has no notice level: records logged
//! at info with target [`NOTICE`] are notices (an interface attached
//! again, a queued reload applied).

use std::io::Write as _;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Log target of notices (info level, syslog priority 5 in the journal).
pub const NOTICE: &str = "flowfilter::notice";

/// Sends `sd_notify` messages, or nothing outside systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a socket that cannot be used is logged once
    /// and ignored.
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        let path = path.to_string_lossy().into_owned();
        let addr = if let Some(name) = path.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            SocketAddr::from_pathname(&path)
        };
        let target = addr.and_then(|a| UnixDatagram::unbound().map(|s| (s, a)));
        match target {
            Ok(t) => Notifier { target: Some(t) },
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={path}: {e}; the service manager is not told anything");
                Notifier { target: None }
            }
        }
    }

    /// Whether messages go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(msg.as_bytes(), addr)
        {
            log::warn!(
                "telling the service manager `{}`: {e}",
                msg.replace('\n', " ")
            );
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `RELOADING=1` with the monotonic time, as `Type=notify-reload`
    /// wants it.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            crate::dataplane::loader::monotonic_ns() / 1000
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// A `STATUS=` line alone.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`) is the file on stderr.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let v = v.to_string_lossy();
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority of a record.
pub fn priority(level: log::Level, target: &str) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info if target == NOTICE => 5,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Set up logging (`RUST_LOG`, default `info`): `<N>` priority prefixes
/// when stderr is the journal, env_logger's format elsewhere (notices show
/// their target as `flowfilter::notice`).
pub fn init_logging() {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if stderr_is_journal() {
        b.format(|buf, r| {
            writeln!(
                buf,
                "<{}>{}",
                priority(r.level(), r.target()),
                r.args().to_string().replace('\n', "\n  ")
            )
        });
    }
    b.init();
}

/// The stop and reload signals, blocked until the daemon handles them.
const HELD: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGTERM, libc::SIGINT];

/// Hold SIGHUP, SIGTERM and SIGINT (blocked: delivered later, not acted
/// on by their default action, which ends the process) from the first
/// instant of `main`. The daemon releases them once its handlers are
/// installed; other verbs release them at once ([`release_signals`]).
pub fn hold_signals() {
    set_mask(libc::SIG_BLOCK);
}

/// Unblock what [`hold_signals`] blocked: signals that arrived meanwhile
/// are delivered now.
pub fn release_signals() {
    set_mask(libc::SIG_UNBLOCK);
}

fn set_mask(how: libc::c_int) {
    // SAFETY: a sigset_t filled by sigemptyset/sigaddset; pthread_sigmask
    // only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for s in HELD {
            libc::sigaddset(&raw mut set, s);
        }
        libc::pthread_sigmask(how, &raw const set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(log::Level::Error, "x"), 3);
        assert_eq!(priority(log::Level::Warn, "x"), 4);
        assert_eq!(priority(log::Level::Info, NOTICE), 5);
        assert_eq!(priority(log::Level::Info, "filter_user::daemon"), 6);
        assert_eq!(priority(log::Level::Debug, "x"), 7);
    }

    #[test]
    fn notifications_are_datagrams_to_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
        };
        assert!(n.enabled());
        n.ready("filtering on 1 interface(s)\nok");
        n.reloading();
        let mut buf = [0u8; 256];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..k]).unwrap(),
            "READY=1\nSTATUS=filtering on 1 interface(s) ok"
        );
        let k = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..k]).unwrap();
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
        let usec: u64 = msg
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(usec > 0);
        dir.close().unwrap();
    }
}
