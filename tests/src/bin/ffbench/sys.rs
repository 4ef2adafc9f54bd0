//! Namespaces, CPU affinity and the /proc readers the measurements use.

use std::fs::File;
use std::os::fd::AsRawFd as _;

use anyhow::{Context as _, Result, bail};

/// Move the calling thread into the network namespace `/run/netns/NAME`.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a valid namespace fd affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pin thread/process `pid` (0: the calling thread) to `cpu`.
pub fn pin(pid: i32, cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; the CPU_* helpers only touch it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if r != 0 {
        bail!(
            "sched_setaffinity({pid}, cpu {cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Run task `pid` under SCHED_FIFO at `priority` (0: back to SCHED_OTHER).
pub fn set_fifo(pid: i32, priority: i32) -> Result<()> {
    let policy = if priority > 0 {
        libc::SCHED_FIFO
    } else {
        libc::SCHED_OTHER
    };
    let p = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler with a valid sched_param.
    if unsafe { libc::sched_setscheduler(pid, policy, &raw const p) } != 0 {
        bail!(
            "sched_setscheduler({pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The threaded-NAPI kernel thread of `ifname` (`napi/IFNAME-ID`).
pub fn napi_thread(ifname: &str) -> Result<i32> {
    let prefix = format!("napi/{ifname}-");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        // comm is cut at 15 bytes.
        if comm.trim_end().starts_with(&prefix[..prefix.len().min(15)]) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!(
            "no threaded NAPI thread for {ifname} (is GRO on and /sys/class/net/{ifname}/threaded 1?)"
        ),
        _ => bail!("several NAPI threads for {ifname}: {found:?} (expected one rx queue)"),
    }
}

/// CPU time a task has run, in ns (first field of /proc/PID/schedstat).
pub fn run_ns(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/schedstat");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{path}: unexpected content `{s}`"))
}

/// Counters of one interface as the calling thread's namespace sees them.
#[derive(Clone, Copy, Debug, Default)]
pub struct DevStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

/// Read `/proc/thread-self/net/dev` for `ifname`.
pub fn dev_stats(ifname: &str) -> Result<DevStats> {
    let s = std::fs::read_to_string("/proc/thread-self/net/dev")
        .context("reading /proc/thread-self/net/dev")?;
    for line in s.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != ifname {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 16 {
            bail!("/proc/net/dev: short line for {ifname}");
        }
        return Ok(DevStats {
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_dropped: v[3],
            tx_packets: v[9],
            tx_dropped: v[11],
        });
    }
    bail!("{ifname} not in /proc/thread-self/net/dev")
}

/// Packets the stack dropped at IP: IPv4 for want of a route (forwarding is
/// off in the receiver namespace), `Ip: InAddrErrors` + `IpExt:
/// InNoRoutes`; IPv6 (disabled on the receiver, so dropped on arrival)
/// `Ip6InDiscards` + `Ip6InNoRoutes` + `Ip6InAddrErrors`.
pub fn routing_drops() -> Result<u64> {
    let read = |name: &str| {
        let path = format!("/proc/thread-self/net/{name}");
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    };
    let (snmp, netstat, snmp6) = (read("snmp")?, read("netstat")?, read("snmp6")?);
    let v6: u64 = snmp6
        .lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .filter(|(k, _)| matches!(*k, "Ip6InDiscards" | "Ip6InNoRoutes" | "Ip6InAddrErrors"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum();
    Ok(field(&snmp, "Ip:", "InAddrErrors")? + field(&netstat, "IpExt:", "InNoRoutes")? + v6)
}

/// A named counter from the header/value line pairs of /proc/net/snmp.
fn field(text: &str, table: &str, name: &str) -> Result<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(table));
    let head = lines.next().with_context(|| format!("no {table} table"))?;
    let vals = lines.next().with_context(|| format!("no {table} values"))?;
    let i = head
        .split_whitespace()
        .position(|h| h == name)
        .with_context(|| format!("no {table} {name}"))?;
    vals.split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("bad {table} {name}"))
}

/// Non-idle time of `cpu` from /proc/stat, in ns (tick-sampled: coarse).
pub fn cpu_busy_ns(cpu: usize) -> Result<u64> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let tag = format!("cpu{cpu} ");
    let line = s
        .lines()
        .find(|l| l.starts_with(&tag))
        .with_context(|| format!("no cpu{cpu} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        bail!("/proc/stat: short cpu{cpu} line");
    }
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(busy * 1_000_000_000 / hz)
}

/// Locked memory of the object behind fd `fd` of this process (bpf maps:
/// the kernel's own accounting of the map's memory).
pub fn fdinfo_memlock(fd: i32) -> Result<u64> {
    let path = format!("/proc/self/fdinfo/{fd}");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{path}: no memlock"))
}
