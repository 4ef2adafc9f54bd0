//! `status`: what is loaded, attached and pinned, and whether it filters.

use super::*;

/// One interface, for `status`; serialized, its `--json` object (fields in
/// the JSON's order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceRow {
    /// Interface name.
    pub name: String,
    /// `driver`, `skb`, `unknown`, or `none` (not attached).
    pub mode: String,
    /// The pinned link's id.
    pub link_id: Option<u32>,
    /// The program it runs.
    pub program_id: Option<u32>,
    /// Network namespace, if not the daemon's.
    pub netns: Option<String>,
    /// Whether the kernel runs the link's program on the interface.
    pub attached: bool,
    /// [`crate::daemon::ifwatch::Health::label`].
    pub state: &'static str,
    /// The index of the interface of that name now.
    pub ifindex: Option<u32>,
    /// What is wrong, when not attached.
    pub problem: Option<String>,
}

/// Whether filtering is in force as configured: what `status` says first,
/// and its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// Every interface attached, the daemon running (exit 0).
    InForce,
    /// Every interface attached, but no daemon runs: nothing reloads,
    /// re-attaches or rotates (exit 3).
    Unmanaged,
    /// Something is pinned, but an interface is not attached (or none is,
    /// or the program is not pinned) (exit 4).
    Degraded,
    /// Nothing is pinned: no filter (exit 5).
    None,
}

impl Filtering {
    /// The exit code of `flowfilter status`.
    pub fn exit_code(self) -> u8 {
        match self {
            Filtering::InForce => 0,
            Filtering::Unmanaged => 3,
            Filtering::Degraded => 4,
            Filtering::None => 5,
        }
    }

    /// The `--json` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::InForce => "in_force",
            Filtering::Unmanaged => "unmanaged",
            Filtering::Degraded => "degraded",
            Filtering::None => "none",
        }
    }
}

/// Everything `status` shows.
#[derive(Clone, Debug)]
pub struct Status {
    /// The pin directory.
    pub pin_dir: String,
    /// The state file, if present.
    pub state_file: Option<String>,
    /// The daemon's pid, when it runs.
    pub daemon_pid: Option<u32>,
    /// (id, tag, name) of the pinned program.
    pub program: Option<(u32, u64, String)>,
    /// Interfaces with a pinned link or named in the state file.
    pub interfaces: Vec<InterfaceRow>,
    /// Active generation.
    pub generation: u32,
    /// Tracked flows and capacity.
    pub flows: (u64, u32),
    /// The state file's content.
    pub state: Option<StateFile>,
    /// Who the subscribers are for `flows=P%`.
    pub subscribers: crate::control::subscribers::SubscriberStatus,
}

/// Read the status of the pins in `layout`, asking the kernel whether each
/// interface is attached.
pub fn collect_status(
    f: &Filter,
    layout: &PinLayout,
    state: Option<StateFile>,
) -> Result<Status, crate::control::Error> {
    let program = if f.has_program() {
        let i = f.program_info()?;
        Some((
            i.id(),
            i.tag(),
            i.name_as_str().unwrap_or_default().to_owned(),
        ))
    } else {
        None
    };
    let interfaces = crate::daemon::ifwatch::interface_health(layout, state.as_ref())
        .into_iter()
        .map(|i| {
            let link = i.health.link();
            InterfaceRow {
                mode: match &i.health {
                    crate::daemon::ifwatch::Health::Attached { mode, .. }
                        if matches!(
                            i.mode,
                            crate::control::state::AttachedMode::Unknown
                                | crate::control::state::AttachedMode::NotAttached
                        ) =>
                    {
                        (*mode).to_owned()
                    }
                    _ => i.mode.to_string(),
                },
                link_id: link.map(|l| l.id),
                program_id: link.map(|l| l.program_id),
                netns: i.netns.clone(),
                attached: i.health.attached(),
                state: i.health.label(),
                ifindex: i.health.ifindex(),
                problem: (!i.health.attached()).then(|| {
                    let d = i.health.describe(&i.name);
                    d.strip_prefix(&format!("{}: ", i.name))
                        .map_or_else(|| d.clone(), str::to_owned)
                }),
                name: i.name,
            }
        })
        .collect();
    let path = state_path(&layout.dir);
    Ok(Status {
        pin_dir: layout.dir.display().to_string(),
        state_file: state.as_ref().map(|_| path.display().to_string()),
        daemon_pid: state.as_ref().and_then(StateFile::live_daemon),
        program,
        interfaces,
        generation: f.state()?.generation & 1,
        flows: f.flow_occupancy()?,
        subscribers: crate::control::subscribers::status(f, state.as_ref())?,
        state,
    })
}

/// `status --json` when nothing is pinned.
#[derive(Serialize)]
pub struct NothingPinnedJson {
    pin_dir: String,
    state_file: Option<String>,
    filtering: &'static str,
}

/// `status` when nothing is pinned: (text, JSON).
pub fn nothing_pinned(layout: &PinLayout) -> (String, NothingPinnedJson) {
    let path = state_path(&layout.dir);
    let stale = path.exists().then(|| path.display().to_string());
    let mut text = format!(
        "pin dir      {}\nfiltering    none: nothing is pinned\n",
        layout.dir.display()
    );
    if let Some(p) = &stale {
        let _ = writeln!(
            text,
            "state file   {p} is left from an earlier run (the next `flowfilter run` replaces it)"
        );
    }
    let json = NothingPinnedJson {
        pin_dir: layout.dir.display().to_string(),
        state_file: stale,
        filtering: Filtering::None.as_str(),
    };
    (text, json)
}

/// `status --json` (fields in the JSON's order).
#[derive(Serialize)]
pub struct StatusJson<'a> {
    pin_dir: &'a str,
    state_file: Option<&'a str>,
    filtering: &'static str,
    daemon: DaemonJson,
    program: Option<ProgramJson<'a>>,
    interfaces: &'a [InterfaceRow],
    generation: u32,
    lists_dir: Option<String>,
    categories: Vec<CategoryStatusJson<'a>>,
    allow: PrefixCounts,
    flows: FlowsJson,
    subscribers: crate::control::subscribers::SubscriberJson<'a>,
    last_reload: Option<ReloadJson<'a>>,
}

#[derive(Serialize)]
struct DaemonJson {
    running: bool,
    pid: Option<u32>,
}

#[derive(Serialize)]
struct ProgramJson<'a> {
    id: u32,
    tag: String,
    name: &'a str,
}

/// One installed category in `status --json`.
#[derive(Serialize)]
struct CategoryStatusJson<'a> {
    id: u8,
    name: &'a str,
    policy: String,
    policy_source: String,
    ipv4_prefixes: usize,
    ipv6_prefixes: usize,
}

/// IPv4 and IPv6 prefix counts.
#[derive(Serialize)]
struct PrefixCounts {
    ipv4_prefixes: usize,
    ipv6_prefixes: usize,
}

#[derive(Serialize)]
struct FlowsJson {
    tracked: u64,
    capacity: u32,
}

/// The last reload in `status --json`.
#[derive(Serialize)]
struct ReloadJson<'a> {
    time: u64,
    ok: bool,
    error: Option<&'a str>,
    by: String,
    generation: u32,
}

impl Status {
    /// Whether filtering is in force as configured.
    pub fn filtering(&self) -> Filtering {
        let attached = self.interfaces.iter().filter(|i| i.attached).count();
        if self.program.is_none() && self.interfaces.iter().all(|i| i.link_id.is_none()) {
            // Maps only (a start that failed midway): nothing filters.
            return Filtering::None;
        }
        if self.program.is_none() || attached == 0 || attached < self.interfaces.len() {
            return Filtering::Degraded;
        }
        if self.daemon_pid.is_none() {
            return Filtering::Unmanaged;
        }
        Filtering::InForce
    }

    /// The `--json` object.
    pub fn to_json(&self) -> StatusJson<'_> {
        let st = self.state.as_ref();
        StatusJson {
            pin_dir: &self.pin_dir,
            state_file: self.state_file.as_deref(),
            filtering: self.filtering().as_str(),
            daemon: DaemonJson {
                running: self.daemon_pid.is_some(),
                pid: self.daemon_pid,
            },
            program: self.program.as_ref().map(|(id, tag, name)| ProgramJson {
                id: *id,
                tag: tag_hex(*tag),
                name,
            }),
            interfaces: &self.interfaces,
            generation: self.generation,
            lists_dir: st.map(|s| s.lists_dir.display().to_string()),
            categories: st
                .map(|s| {
                    s.categories
                        .iter()
                        .map(|c| CategoryStatusJson {
                            id: c.id,
                            name: &c.name,
                            policy: c.policy.to_string(),
                            policy_source: c.policy_source.to_string(),
                            ipv4_prefixes: c.v4_prefixes,
                            ipv6_prefixes: c.v6_prefixes,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            allow: PrefixCounts {
                ipv4_prefixes: st.map_or(0, |s| s.allow.0),
                ipv6_prefixes: st.map_or(0, |s| s.allow.1),
            },
            flows: FlowsJson {
                tracked: self.flows.0,
                capacity: self.flows.1,
            },
            subscribers: self.subscribers.to_json(),
            last_reload: st.and_then(|s| s.last_reload.as_ref()).map(|r| ReloadJson {
                time: r.time,
                ok: r.ok,
                error: r.error.as_deref(),
                by: r.by.to_string(),
                generation: r.generation,
            }),
        }
    }

    /// The human text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let st = self.state.as_ref();
        let _ = writeln!(out, "pin dir      {}", self.pin_dir);
        self.text_filtering(&mut out);
        let _ = match self.daemon_pid {
            Some(pid) => writeln!(out, "daemon       running (pid {pid})"),
            None => writeln!(
                out,
                "daemon       not running (pinned filtering stays in force)"
            ),
        };
        let _ = match &self.program {
            Some((id, tag, name)) => {
                writeln!(out, "program      {name}, id {id}, tag {}", tag_hex(*tag))
            }
            None => writeln!(out, "program      none pinned"),
        };
        self.text_interfaces(&mut out);
        let _ = writeln!(out, "generation   {}", self.generation);
        let _ = writeln!(
            out,
            "flows        {} tracked of {}",
            self.flows.0, self.flows.1
        );
        out.push_str(&self.subscribers.to_text());
        if let Some(r) = st.and_then(|s| s.last_reload.as_ref()) {
            let what = if r.ok {
                "ok".to_owned()
            } else {
                format!(
                    "REJECTED, old rules kept: {}",
                    r.error.as_deref().unwrap_or("?")
                )
            };
            let _ = writeln!(
                out,
                "last reload  {} by {}: {what}",
                format_utc(r.time),
                r.by
            );
        }
        self.text_lists(&mut out);
        out
    }

    /// The `filtering` line: in force, unmanaged, degraded or none.
    fn text_filtering(&self, out: &mut String) {
        let attached = self.interfaces.iter().filter(|i| i.attached).count();
        let _ = match self.filtering() {
            Filtering::InForce => writeln!(out, "filtering    in force on {attached} interface(s)"),
            Filtering::Unmanaged => writeln!(
                out,
                "filtering    in force on {attached} interface(s), but no daemon manages it"
            ),
            Filtering::Degraded if self.interfaces.is_empty() => {
                writeln!(out, "filtering    DEGRADED: no interface attached")
            }
            Filtering::Degraded => writeln!(
                out,
                "filtering    DEGRADED: {attached} of {} interface(s) attached{}",
                self.interfaces.len(),
                if self.program.is_none() {
                    ", no program pinned"
                } else {
                    ""
                }
            ),
            Filtering::None => writeln!(out, "filtering    none"),
        };
    }

    /// One line per interface: how it is attached, or why not.
    fn text_interfaces(&self, out: &mut String) {
        if self.interfaces.is_empty() {
            let _ = writeln!(out, "interfaces   none attached");
        }
        for (k, i) in self.interfaces.iter().enumerate() {
            let label = if k == 0 { "interfaces" } else { "" };
            let link = i
                .link_id
                .map_or_else(|| "link unreadable".to_owned(), |l| format!("link {l}"));
            let prog = i
                .program_id
                .map_or_else(String::new, |p| format!(", program {p}"));
            let ns = i
                .netns
                .as_ref()
                .map_or_else(String::new, |ns| format!(", netns {ns}"));
            if i.attached {
                let _ = writeln!(out, "{label:<12} {} ({}, {link}{prog}{ns})", i.name, i.mode);
            } else {
                let link = if i.link_id.is_some() {
                    format!(", {link}{prog}")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{label:<12} {} NOT ATTACHED ({}{link}{ns}): {}",
                    i.name,
                    i.state,
                    i.problem.as_deref().unwrap_or("")
                );
            }
        }
    }

    /// The lists directory, the allowlist and the categories (from the state file).
    fn text_lists(&self, out: &mut String) {
        match self.state.as_ref() {
            Some(s) => {
                let _ = writeln!(out, "lists        {}", s.lists_dir.display());
                let _ = writeln!(
                    out,
                    "allowlist    {} IPv4, {} IPv6 prefixes\n",
                    s.allow.0, s.allow.1
                );
                let rows: Vec<Vec<String>> = s
                    .categories
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.to_string(),
                            c.name.clone(),
                            c.policy.to_string(),
                            c.policy_source.to_string(),
                            c.v4_prefixes.to_string(),
                            c.v6_prefixes.to_string(),
                        ]
                    })
                    .collect();
                out.push_str(&table(
                    &["ID", "CATEGORY", "POLICY", "FROM", "IPV4", "IPV6"],
                    &rows,
                    4,
                ));
            }
            None => {
                let _ = writeln!(
                    out,
                    "state file   missing ({}): category names and policies unknown until the next `flowfilter run` or `reload`",
                    state_path(std::path::Path::new(&self.pin_dir)).display()
                );
            }
        }
    }
}
