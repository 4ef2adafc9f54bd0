//! The demo's daemon and processes: starting flowfilter, reading its counters, teardown and what it leaves behind.

use super::*;

impl Demo {
    /// (daemon pid, program id, link ids) from `status --json`.
    pub(super) fn identity(&self) -> Result<(u64, u64, String)> {
        let s = self.ff_json(&["status"])?;
        let links: Vec<String> = s["interfaces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| format!("{} {}", i["name"].as_str().unwrap_or("?"), i["link_id"]))
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            s["daemon"]["pid"].as_u64().unwrap_or(0),
            s["program"]["id"].as_u64().unwrap_or(0),
            links.join(", "),
        ))
    }

    pub(super) fn start_daemon(&mut self, lists: &Path, spec: &str) -> Result<()> {
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let mut cmd = self.flowfilter();
        cmd.args([
            "run", "--netns", &self.gw, "--iface", "gw-c", "--iface", "gw-n",
        ])
        // The harness addresses are documentation ones, not private: name
        // the subscriber side by the client-facing interface.
        .args(["--inside", "gw-c", "--mode", "driver", "--lists"])
        .arg(lists);
        for c in CATEGORIES {
            cmd.arg("--policy").arg(format!("{c}={spec}"));
        }
        cmd.arg("--detach-on-exit")
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log);
        println!(
            "$ flowfilter --pin-dir {} run --netns {} --iface gw-c --iface gw-n --inside gw-c --mode driver --lists {} --policy whatsapp={spec} --policy telegram={spec} --detach-on-exit",
            self.pin_dir.display(),
            self.gw,
            lists.display()
        );
        let daemon = Group::spawn(&mut cmd)?;
        self.daemon_pid = Some(daemon.pid());
        self.daemon = Some(daemon);
        let deadline = Instant::now() + DAEMON_START;
        loop {
            interrupted()?;
            if let Some(d) = self.daemon.as_mut()
                && let Some(st) = d.child.try_wait()?
            {
                bail!(
                    "flowfilter run exited ({st}):\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(s) = self.ff_json(&["status"]) {
                let linked = s["interfaces"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|i| i["link_id"].is_u64()).count());
                if s["daemon"]["running"] == true && linked == 2 {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "flowfilter run did not come up in {DAEMON_START:?}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            pause(Duration::from_millis(100))?;
        }
        print!("{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        Ok(())
    }

    pub(super) fn counters(&self) -> Result<(Value, u64, Instant)> {
        let s = self.ff_json(&["stats"])?;
        let tracked = self.ff_json(&["status"])?["flows"]["tracked"]
            .as_u64()
            .unwrap_or(0);
        Ok((s, tracked, Instant::now()))
    }

    /// The filter's counters in one line (`stats --json`, `status --json`),
    /// with the rate of seen packets since `last`.
    pub(super) fn counters_line(&self, last: &mut Option<(Value, u64, Instant)>) -> String {
        let Ok(now) = self.counters() else {
            return "| counters unavailable".to_owned();
        };
        let mut line = String::new();
        for c in CATEGORIES {
            let cat = |s: &Value| -> Option<Value> {
                s["categories"]
                    .as_array()?
                    .iter()
                    .find(|x| x["name"] == c)
                    .cloned()
            };
            let Some(v) = cat(&now.0) else { continue };
            let get = |v: &Value, k: &str| v[k]["packets"].as_u64().unwrap_or(0);
            let rate = last.as_ref().and_then(|(s, _, t)| {
                let secs = now.2.duration_since(*t).as_secs_f64();
                let p = cat(s)?;
                (secs > 0.0).then(|| get(&v, "seen").saturating_sub(get(&p, "seen")) as f64 / secs)
            });
            let _ = write!(
                line,
                "| {c} seen {} ({:.0}/s) dropped {} monitored {} passed {} ",
                get(&v, "seen"),
                rate.unwrap_or(0.0),
                get(&v, "dropped"),
                get(&v, "monitored"),
                get(&v, "passed")
            );
        }
        let _ = write!(line, "| {} flows tracked", now.1);
        *last = Some(now);
        line
    }

    pub(super) fn clear_live(&self) {
        if self.tty {
            print!("\r\x1b[K");
        }
    }

    /// Stop everything, in order; report (not fail on) each problem.
    pub(super) fn teardown(&mut self) {
        self.torn_down = true;
        self.clear_live();
        if let Some(g) = self.current.take() {
            println!("stopping the running scenario (pid {})", g.pid());
            drop(g);
        }
        if let Some(mut d) = self.daemon.take() {
            // SIGTERM: with --detach-on-exit the daemon removes its links,
            // pins and state file itself.
            d.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + DAEMON_EXIT;
            let mut status = None;
            while Instant::now() < deadline {
                if let Ok(Some(st)) = d.child.try_wait() {
                    status = Some(st);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            match status {
                Some(st) => println!("daemon (pid {}) stopped: {st}", d.pid()),
                None => println!("daemon (pid {}) ignored SIGTERM: killed", d.pid()),
            }
            drop(d);
        }
        if self.pin_dir.exists() {
            match self.ff(&["detach"]) {
                Ok(out) => print!("{out}"),
                Err(e) => {
                    println!("flowfilter detach: {e:#}");
                    if let Err(e) = std::fs::remove_dir_all(&self.pin_dir) {
                        println!("removing {}: {e}", self.pin_dir.display());
                    }
                }
            }
        } else if self.daemon_pid.is_some() {
            println!(
                "links, program and maps removed (pins at {} gone)",
                self.pin_dir.display()
            );
        }
        let _ = std::fs::remove_file(&self.state_file);
        if self.up {
            match self.ffharness().arg("down").output() {
                Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
                Err(e) => println!("ffharness down: {e}"),
            }
        }
        reap_orphans();
        let _ = std::fs::remove_file(&self.log);
        if !self.state_dir_existed {
            // Only if empty: another daemon may have put its state there.
            let _ = std::fs::remove_dir(STATE_DIR);
        }
    }

    /// What is still there after [`Demo::teardown`].
    pub(super) fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let ns = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for l in ns.lines() {
            if l.starts_with(&format!("{}-", self.prefix)) {
                left.push(format!(
                    "namespace {}",
                    l.split_whitespace().next().unwrap_or(l)
                ));
            }
        }
        for p in [&self.pin_dir, &self.state_file, &self.log] {
            if p.exists() {
                left.push(p.display().to_string());
            }
        }
        if let Some(l) = &self.lists
            && l.exists()
        {
            left.push(l.display().to_string());
        }
        if let Some(pid) = self.daemon_pid
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            left.push(format!("daemon process {pid}"));
        }
        // Any process still naming this run's prefix (generators, daemon),
        // or still a child of this one (zombies included).
        let me = std::process::id().to_string();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.filter_map(Result::ok) {
                let name = e.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                if pid == me {
                    continue;
                }
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // Fields after the command's closing parenthesis: state, ppid.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
                if cmdline.contains(&self.prefix) || ppid.as_deref() == Some(me.as_str()) {
                    let comm = stat
                        .split_once('(')
                        .and_then(|(_, r)| r.rsplit_once(')'))
                        .map_or("?", |(c, _)| c);
                    left.push(format!("process {pid} ({comm}) {}", cmdline.trim()));
                }
            }
        }
        left
    }
}
