//! Counting the flows of each scenario and the result tables.

use super::*;

pub(super) fn count(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// The address part of `ADDR:PORT` / `[ADDR]:PORT`.
pub(super) fn host(sa: &str) -> &str {
    let h = sa.rsplit_once(':').map_or(sa, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']')
}

/// Flow key independent of direction: `proto a b` with a <= b.
pub(super) fn key(proto: &str, a: &str, b: &str) -> String {
    if a <= b {
        format!("{proto} {a} {b}")
    } else {
        format!("{proto} {b} {a}")
    }
}

pub(super) fn index_flows(flows: &Value) -> BTreeMap<String, Value> {
    flows
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        key(
                            f["proto"].as_str().unwrap_or(""),
                            f["src"].as_str().unwrap_or(""),
                            f["dst"].as_str().unwrap_or(""),
                        ),
                        f.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One generator row joined with the filter's entry for its 5-tuple (its
/// packets and drops counted from the previous phase's snapshot on, should
/// a port come round again).
pub(super) fn join(
    phase: &'static str,
    r: &Value,
    index: &BTreeMap<String, Value>,
    before: &BTreeMap<String, (u64, u64)>,
) -> Row {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    let proto = s("proto");
    let k = key(&proto, &s("client"), &s("server"));
    let tracked = index.get(&k).cloned();
    let (p0, d0) = before.get(&k).copied().unwrap_or((0, 0));
    let (packets, dropped) = tracked.as_ref().map_or((0, 0), |t| {
        (
            count(t, "packets").saturating_sub(p0),
            count(t, "dropped").saturating_sub(d0),
        )
    });
    // An entry that saw nothing in this phase is an older flow's.
    let tracked = tracked.filter(|_| packets > 0);
    Row {
        phase,
        scenario: s("scenario"),
        flow: s("flow"),
        proto,
        client: s("client"),
        server: s("server"),
        sent: count(r, "sent_pkts"),
        delivered: count(r, "delivered_pkts"),
        answered: count(r, "answered_pkts"),
        received: count(r, "recv_pkts"),
        tracked,
        packets,
        dropped,
    }
}

pub(super) fn table(rows: &[Row]) -> String {
    let header = [
        "PHASE",
        "SCENARIO/FLOW",
        "PROTO",
        "CLIENT -> SERVER",
        "C->S SENT/GOT",
        "S->C SENT/GOT",
        "CATEGORY",
        "LABEL",
        "WHY",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.phase.to_owned(),
                format!("{}/{}", r.scenario, r.flow),
                r.proto.clone(),
                format!("{} -> {}", r.client, r.server),
                format!("{}/{}", r.sent, r.delivered),
                format!("{}/{}", r.answered, r.received),
                r.category(),
                r.label(),
                r.why(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.len());
        }
    }
    let right = [false, false, false, false, true, true, false, false, false];
    let line = |cols: &[&str]| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            let w = width[i];
            if i + 1 == cols.len() {
                s.push_str(c);
            } else if right[i] {
                let _ = write!(s, "{c:>w$}  ");
            } else {
                let _ = write!(s, "{c:<w$}  ");
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header);
    let mut phase = "";
    for (r, c) in rows.iter().zip(&cells) {
        if !phase.is_empty() && r.phase != phase {
            out.push('\n');
        }
        phase = r.phase;
        let refs: Vec<&str> = c.iter().map(String::as_str).collect();
        out.push_str(&line(&refs));
    }
    out
}

/// What a phase showed, counted from the rows.
pub(super) fn summary(phase: &str, rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.phase == phase).collect();
    let calls: Vec<&&Row> = rows.iter().filter(|r| r.is_call()).collect();
    let other: Vec<&&Row> = rows.iter().filter(|r| !r.is_call()).collect();
    let other_full = other.iter().filter(|r| r.full()).count();
    let calls_full = calls.iter().filter(|r| r.full()).count();
    let calls_blocked = calls.iter().filter(|r| r.blocked()).count();
    let mut s = format!("{phase:<10} ");
    match phase {
        "monitor" => {
            let monitored: u64 = calls.iter().map(|r| r.packets).sum();
            let _ = write!(
                s,
                "{calls_full} of {} call flows delivered in full ({monitored} packets counted as monitored)",
                calls.len()
            );
        }
        "drop" => {
            let _ = write!(
                s,
                "{calls_blocked} of {} call flows blocked (at most {HANDFUL} packets arrived each way)",
                calls.len()
            );
        }
        _ => {
            // Per call (scenario): the fates its flows got.
            let mut fates: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
            for r in &calls {
                let fate = r
                    .tracked
                    .as_ref()
                    .and_then(|t| t["fate"].as_str())
                    .unwrap_or("undecided");
                fates
                    .entry(r.scenario.as_str())
                    .or_default()
                    .push((r.flow.as_str(), fate));
            }
            let (mut stopped, mut spared, mut split) = (Vec::new(), Vec::new(), Vec::new());
            for (sc, legs) in &fates {
                if legs.iter().all(|(_, f)| *f == "stopped") {
                    stopped.push((*sc).to_owned());
                } else if legs.iter().all(|(_, f)| *f == "spared") {
                    spared.push((*sc).to_owned());
                } else {
                    let legs: Vec<String> = legs.iter().map(|(l, f)| format!("{l} {f}")).collect();
                    split.push(format!("{sc} ({})", legs.join(", ")));
                }
            }
            let none = |v: &Vec<String>| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.join(", ")
                }
            };
            let _ = write!(
                s,
                "calls stopped whole: {}; spared whole: {}",
                none(&stopped),
                none(&spared)
            );
            if split.is_empty() {
                let _ = write!(s, "; no call split between legs");
            } else {
                let _ = write!(s, "; split between legs: {}", split.join(", "));
            }
            let _ = write!(
                s,
                " ({calls_blocked} call flows blocked, {calls_full} delivered in full)"
            );
        }
    }
    let _ = write!(
        s,
        "; {other_full} of {} other flows delivered in full",
        other.len()
    );
    s
}
