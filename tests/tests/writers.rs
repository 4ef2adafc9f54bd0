//! One writer at a time: the writer lock, the daemon's liveness lock and the
//! lists directory's lock, end to end ([`filter_user::control::lock`]).
//!
//! Each test makes its namespaces, veth pair, lists and pins as
//! `tests/daemon.rs` does (an RAII guard removes them even after a failed
//! step) and runs `flowfilter run --netns A --iface VA`:
//!
//! ```text
//!   ns A: va 192.0.2.1/24   <== veth ==>   ns B: vb 192.0.2.2/24
//!         (XDP, the filter)                      + 198.51.100.10/32 (listed: whatsapp)
//! ```
//!
//! - a `policy set` made while the daemon starts (held in its transaction by
//!   a big list) is kept, not overwritten by the start;
//! - `list update --out DIR` and `list load` on the same directory take
//!   turns;
//! - `detach` leaves the lock (outside the pin directory) to the writers
//!   queued behind it, and they find nothing to change;
//! - a daemon killed with -9 whose pid now belongs to another process named
//!   flowfilter is dead: not signalled, not in the way of the next start;
//! - a state write that fails (a full tmpfs over /run/flowfilter, in a
//!   private mount namespace) leaves the live policy as it was, and says so;
//!   a `detach --iface` that cannot be recorded leaves its link;
//! - `/sys/fs/bpf/X-a-b` and `/sys/fs/bpf/X-a/b` have a state file each.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use filter_user::control::lock::{
    Liveness, WriterLock, daemon_liveness, daemon_lock_path, holders, lock_path,
};
use filter_user::control::state::{StateFile, process_alive, state_path};
use filter_user::dataplane::pins::PinLayout;
use flowfilter_tests::kit::{self, Gateway, Ran, Setup, binary, sh};
use flowfilter_tests::skip_unless_root;
use serde_json::Value;

/// Listed in `whatsapp.txt` from the start.
const LISTED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// How long a step that waits for another process may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait for `child` (with piped output) to exit, at most [`STEP_TIMEOUT`].
fn finish(mut child: Child, what: &str) -> Ran {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > STEP_TIMEOUT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "{what} did not finish in {STEP_TIMEOUT:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ran::of(&child.wait_with_output().expect("wait"))
}

/// Poll `cond` until it holds, at most [`STEP_TIMEOUT`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    kit::wait_for(what, STEP_TIMEOUT, || cond().then_some(()));
}

/// Processes queued for the `flock` of `path`.
fn waiters(path: &Path) -> usize {
    holders(path).iter().filter(|h| h.waiting).count()
}

/// One test's gateway; all removed on drop.
struct Env {
    gw: Gateway,
}

flowfilter_tests::deref_gateway!(Env);

impl Env {
    fn new() -> Env {
        Env::with_pin_dir(&|id| format!("/sys/fs/bpf/ff-test-{id}"))
    }

    /// With the pin directory `pin_dir(unique id)`.
    fn with_pin_dir(pin_dir: &dyn Fn(&str) -> String) -> Env {
        let setup = Setup {
            pin_dir: Some(pin_dir),
            macs: ["02:00:00:00:0c:01", "02:00:00:00:0d:01"],
            append_log: true,
            ..Setup::new("ffw", 'w')
        };
        Env {
            gw: Gateway::new(&setup),
        }
    }

    /// A new gateway with its daemon started with `extra` arguments.
    fn started(extra: &[&str]) -> Env {
        let mut env = Env::new();
        env.start(extra);
        env
    }

    fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("no daemon").id()
    }

    fn status(&self) -> Value {
        self.ff(&["status", "--json"]).ok("status").json()
    }

    /// `status --json` when the pins are in force but no daemon runs: exit
    /// 3, `filtering: unmanaged`, `daemon.running: false`.
    fn status_unmanaged(&self) -> Value {
        let r = self.ff(&["status", "--json"]);
        assert_eq!(r.code, 3, "status: {}\n{}", r.stdout, r.stderr);
        let s = r.json();
        assert_eq!(s["filtering"], "unmanaged", "{s:#}");
        assert_eq!(s["daemon"]["running"], false, "{s:#}");
        s
    }

    /// `(policy, source)` of category `name` in `status`.
    fn policy(&self, name: &str) -> (String, String) {
        let s = self.status();
        let c = s["categories"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no category {name} in {s:#}"));
        (
            c["policy"].as_str().unwrap_or_default().to_owned(),
            c["policy_source"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Send `n` UDP packets from `src` (ns B) to A; how many arrived.
    fn deliver(&self, src: Ipv4Addr, n: u32) -> usize {
        let rx = self.receiver();
        self.gw.deliver(&rx, src, n)
    }
}

/// IPv6 prefixes of the big list that keeps a start in its transaction.
const BIG: u32 = 100_000;

#[test]
fn a_policy_set_while_the_daemon_starts_is_kept() {
    skip_unless_root!("a_policy_set_while_the_daemon_starts_is_kept");
    let mut env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
    assert_eq!(env.deliver(LISTED, 5), 0, "whatsapp is dropped");
    assert!(env.stop(libc::SIGTERM).success(), "{}", env.log());
    // A big list: the next start validates and installs it, all of it with
    // the writer lock held, from before it reads the state file.
    let mut big = String::from("# big\n");
    for i in 0..BIG {
        let _ = writeln!(big, "2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff);
    }
    env.write_list("telegram", &big);

    env.spawn_daemon(&["--policy", "whatsapp=drop,scope=udp"]);
    let daemon = env.daemon_pid();
    // The daemon holds its liveness lock, then the writer lock (from before
    // it reads the state file until its start is recorded).
    wait_for("the starting daemon to hold the writer lock", || {
        holders(&lock_path(&env.pin_dir))
            .iter()
            .any(|h| h.pid == Some(daemon) && !h.waiting)
    });
    assert_eq!(
        daemon_liveness(&env.pin_dir).expect("liveness"),
        Liveness::Alive { pid: Some(daemon) }
    );
    // Still starting: the state file does not name it yet.
    env.status_unmanaged();
    let set = finish(
        env.spawn(&["policy", "set", "whatsapp", "monitor"]),
        "policy set",
    )
    .ok("policy set during the start");
    env.wait_running();

    // The start did not overwrite it: recorded, and in force.
    assert_eq!(env.policy("whatsapp"), ("monitor".into(), "cli".into()));
    assert_eq!(env.deliver(LISTED, 5), 5, "monitor lets whatsapp through");
    let tg = env.status()["categories"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "telegram").cloned())
        .expect("telegram");
    assert_eq!(tg["ipv6_prefixes"], u64::from(BIG), "{tg}");
    // And it waited for the start's transaction, saying for whom.
    assert!(
        set.stderr
            .contains("waiting for the writer lock of the pins")
            && set
                .stderr
                .contains(&format!("held by pid {daemon} (flowfilter)")),
        "{}",
        set.stderr
    );
    // A reload through the daemon keeps it too.
    env.ff(&["reload"]).ok("reload");
    assert_eq!(env.policy("whatsapp"), ("monitor".into(), "cli".into()));
}

#[test]
fn list_update_and_list_load_on_one_directory_take_turns() {
    skip_unless_root!("list_update_and_list_load_on_one_directory_take_turns");
    let env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
    // The update's source is a named pipe: it reads it (holding the lists
    // directory's lock) until the test writes the list into it.
    let fifo = env.dir.join("wa-source.txt");
    let made = sh("mkfifo", &[&fifo.display().to_string()]);
    assert!(
        made.status.success(),
        "mkfifo: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let sources = env.dir.join("sources.toml");
    std::fs::write(
        &sources,
        format!(
            "[category.whatsapp]\n[[category.whatsapp.source]]\npath = \"{}\"\n",
            fifo.display()
        ),
    )
    .expect("sources");
    let loaded = env.dir.join("loaded.txt");
    let loaded_text = "# loaded by hand\n100.64.0.0/24\n";
    std::fs::write(&loaded, loaded_text).expect("list");

    let update = Command::new(binary())
        .args(["list", "update", "--sources"])
        .arg(&sources)
        .arg("--out")
        .arg(env.lists())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn list update");
    // The update is reading its source: it holds the lists directory's lock.
    let update_pid = update.id();
    wait_for("list update to hold the lists directory's lock", || {
        holders(&env.lists())
            .iter()
            .any(|h| h.pid == Some(update_pid) && !h.waiting)
    });
    let mut load = env.spawn(&["list", "load", "whatsapp", &loaded.display().to_string()]);
    wait_for("list load to wait for the lists directory or exit", || {
        waiters(&env.lists()) > 0 || load.try_wait().expect("try_wait").is_some()
    });
    assert!(
        load.try_wait().expect("try_wait").is_none(),
        "list load did not wait for the running list update"
    );
    // The daemon is not held up meanwhile.
    env.ff(&["policy", "set", "whatsapp", "monitor"])
        .ok("policy set during list update");
    // The source's list, at last: the update goes on, then the load.
    std::fs::write(&fifo, "203.0.113.0/24\n").expect("write the named pipe");
    let update = finish(update, "list update").ok("list update");
    let load = finish(load, "list load").ok("list load");
    assert!(
        load.stderr
            .contains("waiting for the lock of the lists directory"),
        "{}",
        load.stderr
    );
    assert!(update.stdout.contains("whatsapp"), "{}", update.stdout);
    // The load came second: its list is the file's and the tables'.
    assert_eq!(
        std::fs::read_to_string(env.lists().join("whatsapp.txt")).expect("list"),
        loaded_text
    );
    assert_eq!(env.in_force("100.64.0.1"), "whatsapp");
    assert_eq!(env.in_force("203.0.113.10"), "no category");
    assert_eq!(env.in_force("198.51.100.10"), "no category");
}

#[test]
fn detach_leaves_the_lock_to_the_writers_queued_behind_it() {
    skip_unless_root!("detach_leaves_the_lock_to_the_writers_queued_behind_it");
    let mut env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
    let lock = lock_path(&env.pin_dir);
    let inode = std::fs::metadata(&lock).expect("lock file").ino();
    assert!(!lock.starts_with(&env.pin_dir));
    assert!(env.stop(libc::SIGTERM).success(), "{}", env.log());

    // detach and a policy set queue behind a writer (this test).
    let held = WriterLock::acquire(&env.pin_dir).expect("writer lock");
    let detach = env.spawn(&["detach"]);
    wait_for("detach to queue", || waiters(&lock) == 1);
    let set = env.spawn(&["policy", "set", "whatsapp", "off"]);
    wait_for("policy set to queue", || waiters(&lock) == 2);
    drop(held);
    let detach = finish(detach, "detach").ok("detach");
    assert!(
        detach.stdout.contains("removed the program"),
        "{}",
        detach.stdout
    );
    let set = finish(set, "policy set");
    // Whichever went first, the pins are gone and nothing was recreated.
    if set.code != 0 {
        assert_eq!(set.code, 1, "{}", set.stderr);
        assert!(set.stderr.contains("no pinned state"), "{}", set.stderr);
    }
    assert!(!env.pin_dir.exists(), "pin directory recreated");
    assert!(!state_path(&env.pin_dir).exists(), "state file recreated");
    // After the detach: a clean refusal, nothing created.
    let r = env.ff(&["policy", "set", "whatsapp", "off"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no pinned state"), "{}", r.stderr);
    assert!(!env.pin_dir.exists() && !state_path(&env.pin_dir).exists());
    // The lock is the same file through it all.
    assert_eq!(std::fs::metadata(&lock).expect("lock file").ino(), inode);

    // A new start takes the same lock, and writers take turns with it.
    env.start(&["--policy", "whatsapp=drop,scope=udp"]);
    assert_eq!(std::fs::metadata(&lock).expect("lock file").ino(), inode);
    let held = WriterLock::acquire(&env.pin_dir).expect("writer lock");
    let set = env.spawn(&["policy", "set", "whatsapp", "off"]);
    wait_for("policy set to queue", || waiters(&lock) == 1);
    drop(held);
    finish(set, "policy set").ok("policy set after the restart");
    assert_eq!(env.deliver(LISTED, 5), 5, "whatsapp off");
}

#[test]
fn a_killed_daemon_whose_pid_is_reused_is_dead() {
    skip_unless_root!("a_killed_daemon_whose_pid_is_reused_is_dead");
    let mut env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
    let pid = env.daemon_pid();
    let s = env.status();
    assert_eq!(s["daemon"]["pid"], pid, "{s:#}");
    assert!(daemon_lock_path(&env.pin_dir).exists());
    // A second daemon on the same pins is refused at once, naming the first.
    let second = env
        .run_command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("second run");
    let second = Ran::of(&second);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("a flowfilter daemon (pid {pid}) already manages")),
        "{}",
        second.stderr
    );

    let status = env.stop(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    env.status_unmanaged();
    assert_eq!(env.deliver(LISTED, 5), 0, "filtering stays in force");

    // Its pid now belongs to another process called flowfilter: a sleep
    // started through a link of that name.
    let sleep = sh("sh", &["-c", "command -v sleep"]);
    let sleep = String::from_utf8_lossy(&sleep.stdout).trim().to_owned();
    let fake = env.dir.join("flowfilter");
    std::os::unix::fs::symlink(&sleep, &fake).expect("symlink");
    let mut impostor = Command::new(&fake).arg("600").spawn().expect("spawn sleep");
    let fake_pid = impostor.id();
    {
        let lock = WriterLock::acquire(&env.pin_dir).expect("writer lock");
        let mut st = StateFile::read(&env.pin_dir)
            .expect("state")
            .expect("a state file");
        st.daemon.as_mut().expect("daemon recorded").pid = fake_pid;
        st.write(&lock).expect("write state");
    }
    // The command line says flowfilter: the old judgement took it for the daemon.
    assert!(process_alive(fake_pid));
    let comm = std::fs::read_to_string(format!("/proc/{fake_pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "flowfilter");

    let s = env.status_unmanaged();
    assert_eq!(s["daemon"]["pid"], Value::Null, "{s:#}");
    let r = env.ff(&["reload"]).ok("reload");
    assert!(r.stdout.contains("no daemon running"), "{}", r.stdout);
    assert!(
        impostor.try_wait().expect("try_wait").is_none(),
        "reload signalled the impostor"
    );
    // The next start is not refused because of it.
    env.start(&["--policy", "whatsapp=drop,scope=udp"]);
    assert_eq!(env.status()["daemon"]["pid"], env.daemon_pid());
    let r = env.ff(&["detach"]).ok("detach");
    assert!(
        r.stdout
            .contains(&format!("stopped the daemon (pid {})", env.daemon_pid())),
        "{}",
        r.stdout
    );
    if let Some(mut c) = env.daemon.take() {
        assert!(c.wait().expect("daemon exit").success(), "{}", env.log());
    }
    assert!(
        impostor.try_wait().expect("try_wait").is_none(),
        "detach signalled the impostor"
    );
    let _ = impostor.kill();
    let _ = impostor.wait();
}

#[test]
fn a_state_write_that_fails_on_a_full_run_changes_nothing() {
    skip_unless_root!("a_state_write_that_fails_on_a_full_run_changes_nothing");
    let env = Env::started(&["--policy", "whatsapp=drop,scope=udp"]);
    assert_eq!(env.deliver(LISTED, 5), 0);
    let state = state_path(&env.pin_dir);
    let before = std::fs::read(&state).expect("state file");

    // In a private mount namespace: a tmpfs of two pages over
    // /run/flowfilter, holding a copy of the state file and a filler.
    let script = r#"
        set -e
        cp "$STATE" "$COPY"
        mount -t tmpfs -o size=8k,mode=0700 flowfilter-full "$DIR"
        cp "$COPY" "$STATE"
        dd if=/dev/zero of="$DIR/fill" bs=1k 2>/dev/null || true
        set +e
        "$BIN" --pin-dir "$PINS" policy set whatsapp off
        echo "rc=$?"
        "$BIN" --pin-dir "$PINS" detach --iface "$IFACE"
        echo "detach rc=$?"
        ls -A "$DIR"
        cmp -s "$COPY" "$STATE" && echo "state file unchanged"
        exit 0
    "#;
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("STATE", &state)
        .env("COPY", env.dir.join("state-copy.json"))
        .env("DIR", state.parent().expect("state dir"))
        .env("BIN", binary())
        .env("PINS", &env.pin_dir)
        .env("IFACE", &env.va)
        .env("RUST_LOG", "warn")
        .output()
        .expect("unshare (util-linux)");
    let r = Ran::of(&out);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for rc in ["rc=1", "detach rc=1"] {
        assert!(
            r.stdout.lines().any(|l| l == rc),
            "{rc}:\n{}\n{}",
            r.stdout,
            r.stderr
        );
    }
    assert!(
        r.stderr.contains("No space left on device")
            && r.stderr.contains(
                "the change could not be recorded in the state file, so it was not installed; the old rules stay in force"
            ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(r.stdout.contains("state file unchanged"), "{}", r.stdout);
    assert!(
        !r.stdout.contains(".tmp"),
        "a temporary file left: {}",
        r.stdout
    );

    // The detach that could not be recorded left the link.
    assert!(
        PinLayout::new(&env.pin_dir).link(&env.va).exists(),
        "the link was removed"
    );
    let s = env.status();
    assert_eq!(s["interfaces"][0]["name"], env.va.as_str(), "{s:#}");
    // Outside: the live policy and the state file are as they were.
    assert_eq!(env.deliver(LISTED, 5), 0, "the failed policy set went live");
    assert_eq!(
        env.policy("whatsapp"),
        ("drop,scope=udp".into(), "flag".into())
    );
    assert_eq!(std::fs::read(&state).expect("state file"), before);
    // With room for the state file, the same change goes through.
    env.ff(&["policy", "set", "whatsapp", "off"])
        .ok("policy set");
    assert_eq!(env.deliver(LISTED, 5), 5);
    assert_eq!(env.policy("whatsapp"), ("off".into(), "cli".into()));
}

#[test]
fn pin_dirs_a_b_and_a_slash_b_have_a_state_file_each() {
    skip_unless_root!("pin_dirs_a_b_and_a_slash_b_have_a_state_file_each");
    let mut dash = Env::with_pin_dir(&|id| format!("/sys/fs/bpf/ff-test-{id}-a-b"));
    let id = dash
        .pin_dir
        .to_string_lossy()
        .trim_end_matches("-a-b")
        .to_owned();
    let mut nested = Env::with_pin_dir(&|_| format!("{id}-a/b"));
    dash.start(&["--policy", "whatsapp=drop,scope=udp"]);
    nested.start(&["--policy", "whatsapp=monitor"]);
    assert_ne!(state_path(&dash.pin_dir), state_path(&nested.pin_dir));
    for (env, policy) in [(&dash, "drop,scope=udp"), (&nested, "monitor")] {
        let s = env.status();
        assert_eq!(s["daemon"]["pid"], env.daemon_pid(), "{s:#}");
        assert_eq!(s["interfaces"][0]["name"], env.va.as_str(), "{s:#}");
        assert_eq!(env.policy("whatsapp"), (policy.into(), "flag".into()));
    }
    assert_eq!(dash.deliver(LISTED, 5), 0);
    assert_eq!(nested.deliver(LISTED, 5), 5);
    // Stopping one leaves the other's record alone.
    assert!(nested.stop(libc::SIGTERM).success(), "{}", nested.log());
    nested.status_unmanaged();
    assert_eq!(dash.status()["daemon"]["pid"], dash.daemon_pid());
}
