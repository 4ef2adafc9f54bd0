//! The targets: each requirement, the figure that meets it or why it is missing.

use super::*;

/// One row of the targets table.
pub(super) struct Target<'a> {
    /// `kind` of the target's row in report.json.
    pub(super) key: &'static str,
    /// The set the figure is on (the larger one of a growth).
    pub(super) of: Option<&'a SetRun>,
    pub(super) what: String,
    pub(super) at: String,
    pub(super) measured: Option<f64>,
    /// Shown instead of the figure when there is none.
    pub(super) why: String,
    /// The figure must be at most (`true`) or at least this.
    pub(super) limit: f64,
    pub(super) at_most: bool,
    pub(super) unit: &'static str,
}

impl Target<'_> {
    pub(super) fn met(&self) -> Option<bool> {
        self.measured.map(|m| {
            if self.at_most {
                m <= self.limit
            } else {
                m >= self.limit
            }
        })
    }
}

/// The random IPv4 set of size `n`, else the largest one measured with a
/// note saying so.
pub(super) fn random_at(runs: &[SetRun], kind: SetKind, n: usize) -> Option<(&SetRun, String)> {
    let of = |r: &&SetRun| r.kind == kind && !r.live.is_empty();
    if let Some(r) = runs.iter().filter(of).find(|r| r.n == n) {
        return Some((r, String::new()));
    }
    runs.iter().filter(of).max_by_key(|r| r.n).map(|r| {
        (
            r,
            format!(" ({} not measured: {} shown)", fmt_n(n), fmt_n(r.n)),
        )
    })
}

/// Why a flowfilter figure is missing on a set.
pub(super) fn why_missing(run: &SetRun, traffic: &str) -> String {
    if let Ok(k) = &run.kernel
        && let Some(e) = k["install_error"].as_str()
    {
        return format!("failed: {}", short(e));
    }
    missing(live_of(run, Contestant::Flowfilter), traffic)
}

/// flowfilter's cost on a set: receiver ns/packet (match, flood) or the
/// XDP-level estimate (nomatch, junk).
pub(super) fn cost(run: &SetRun, traffic: &str) -> Option<f64> {
    if traffic == "nomatch" || traffic == "junk" {
        estimate(run, traffic)
    } else {
        kind_of(run, Contestant::Flowfilter, traffic).map(|k| k.ns.med)
    }
}

/// Every target, in the table's order: per random set matched media and
/// the non-matching estimate, IPv4 growth, flood, nftables, the 1M swaps
/// and IPv6 growth.
pub(super) fn targets(runs: &[SetRun], quick: bool) -> Vec<Target<'_>> {
    let mut t = Vec::new();
    per_set(&mut t, runs);
    // Growth from N = 10 to the largest target N.
    let big_n = if quick { 100_000 } else { 1_000_000 };
    growth(&mut t, runs, SetKind::Random, big_n, 1.15, "IPv4");
    t.extend(flood(runs));
    t.extend(nftables(runs, quick));
    swaps(&mut t, runs);
    growth(&mut t, runs, SetKind::V6, 100_000, 1.5, "IPv6");
    t
}

/// On each random set with live runs: matched media, then (after all of
/// those) the non-matching estimate, over xdp_parse_drop.
fn per_set<'a>(t: &mut Vec<Target<'a>>, runs: &'a [SetRun]) {
    // The random sets with live runs (the 1M memory rows have none).
    let live_random: Vec<&SetRun> = runs
        .iter()
        .filter(|r| r.kind == SetKind::Random && !r.live.is_empty())
        .collect();
    // Per N: matched media and the non-matching estimate.
    for run in live_random.iter().copied() {
        let fl = Floors::of(run, "match");
        let m =
            kind_of(run, Contestant::Flowfilter, "match").and_then(|k| fl.ratios(k.ns.med).limit);
        t.push(Target {
            key: "match-over-parse-drop",
            of: Some(run),
            what: "matched media ≤ 1.6× xdp_parse_drop".into(),
            at: set_label(run),
            measured: m,
            why: why_missing(run, "match"),
            limit: 1.6,
            at_most: true,
            unit: "×",
        });
    }
    for run in live_random.iter().copied() {
        let fl = Floors::of(run, "nomatch");
        t.push(Target {
            key: "nomatch-estimate-over-parse-drop",
            of: Some(run),
            what: "non-matching, XDP-level estimate ≤ 1.15× xdp_parse_drop".into(),
            at: set_label(run),
            measured: estimate(run, "nomatch").and_then(|e| fl.ratios(e).limit),
            why: why_missing(run, "nomatch"),
            limit: 1.15,
            at_most: true,
            unit: "×",
        });
    }
}

/// flowfilter's cost growth (match, then the nomatch estimate) from the
/// `kind` set of N = 10 to the one of `big_n` (else the largest measured).
fn growth<'a>(
    t: &mut Vec<Target<'a>>,
    runs: &'a [SetRun],
    kind: SetKind,
    big_n: usize,
    limit: f64,
    what: &str,
) {
    let small = runs.iter().find(|r| r.kind == kind && r.n == 10);
    let big = random_at(runs, kind, big_n);
    for traffic in ["match", "nomatch"] {
        let (measured, why, at) = match (small, &big) {
            (Some(s), Some((b, note))) => {
                let m = cost(s, traffic).zip(cost(b, traffic)).map(|(s, b)| b / s);
                let why = if cost(s, traffic).is_none() {
                    why_missing(s, traffic)
                } else {
                    why_missing(b, traffic)
                };
                (m, why, format!("{} → {}{note}", set_label(s), set_label(b)))
            }
            _ => (None, "not measured".into(), String::new()),
        };
        t.push(Target {
            key: if traffic == "match" {
                "growth-match"
            } else {
                "growth-nomatch-estimate"
            },
            of: big.as_ref().map(|b| b.0),
            what: format!(
                "{what} cost growth, {traffic}{} ≤ {limit}×",
                if traffic == "nomatch" {
                    " (estimate)"
                } else {
                    ""
                }
            ),
            at,
            measured,
            why,
            limit,
            at_most: true,
            unit: "×",
        });
    }
}

/// The flood over XDP_DROP on the random 100k set (else the largest).
fn flood(runs: &[SetRun]) -> Option<Target<'_>> {
    let (run, note) = random_at(runs, SetKind::Random, 100_000)?;
    let fl = Floors::of(run, "flood");
    Some(Target {
        key: "flood-over-xdp-drop",
        of: Some(run),
        what: "flood ≤ 3× XDP_DROP".into(),
        at: format!("{}{note}", set_label(run)),
        measured: kind_of(run, Contestant::Flowfilter, "flood")
            .and_then(|k| fl.ratios(k.ns.med).xdp_drop),
        why: why_missing(run, "flood"),
        limit: 3.0,
        at_most: true,
        unit: "×",
    })
}

/// nftables' cost over flowfilter's on matched media, on the largest target
/// random set (100k with --quick, else 1M).
fn nftables(runs: &[SetRun], quick: bool) -> Option<Target<'_>> {
    let (nft_n, nft_x) = if quick {
        (100_000, 8.0)
    } else {
        (1_000_000, 10.0)
    };
    let (run, note) = random_at(runs, SetKind::Random, nft_n)?;
    let f = kind_of(run, Contestant::Flowfilter, "match");
    let n = kind_of(run, Contestant::Nftables, "match");
    Some(Target {
        key: "nftables-over-flowfilter",
        of: Some(run),
        what: format!("nftables ≥ {nft_x}× flowfilter's cost (match)"),
        at: format!("{}{note}", set_label(run)),
        measured: f.zip(n).map(|(f, n)| n.ns.med / f.ns.med),
        why: if f.is_none() {
            why_missing(run, "match")
        } else {
            missing(live_of(run, Contestant::Nftables), "match")
        },
        limit: nft_x,
        at_most: false,
        unit: "×",
    })
}

/// The swap time on every 1M set with kernel figures.
fn swaps<'a>(t: &mut Vec<Target<'a>>, runs: &'a [SetRun]) {
    for run in runs.iter().filter(|r| r.n == 1_000_000) {
        let Ok(k) = &run.kernel else { continue };
        t.push(Target {
            key: "swap",
            of: Some(run),
            what: "1M-prefix swap < 500 ms".into(),
            at: set_label(run),
            measured: stat(&floats(&k["swap_ms"])).map(|s| s.med),
            why: k["install_error"]
                .as_str()
                .map_or_else(|| "not run".into(), |e| format!("failed: {}", short(e))),
            limit: 500.0,
            at_most: true,
            unit: " ms",
        });
    }
}

/// The targets table. Without xdp-live (`saturated` false) the receiver is
/// not saturated and its ratios say nothing about the targets: shown, not
/// judged.
pub(super) fn section_targets(o: &mut Out, runs: &[SetRun], quick: bool, saturated: bool) {
    let _ = writeln!(
        o.md,
        "\n## Targets\n\n\
         Ratios are of receiver CPU per packet on the same set and traffic (sections 1a–1d); \"estimate\" is the \
         XDP-level figure for traffic flowfilter passes to the stack.\n\n\
         | target | set | measured | met |\n|---|---|---:|---|"
    );
    for t in targets(runs, quick) {
        let judged = saturated || t.unit != "×";
        let (m, met) = match (t.measured, t.met().filter(|_| judged)) {
            (Some(m), Some(ok)) => (
                if t.unit == "×" {
                    format!("{m:.2}×")
                } else {
                    format!("{m:.0}{}", t.unit)
                },
                if ok { "yes" } else { "**no**" },
            ),
            (Some(m), None) => (format!("{m:.2}×"), "– (af-packet: not judged)"),
            _ => (t.why.clone(), "–"),
        };
        let _ = writeln!(o.md, "| {} | {} | {m} | {met} |", t.what, t.at);
        o.figures.push(json!({
            "section": "targets",
            "contestant": "flowfilter",
            "n": t.of.map(|r| r.n),
            "set": t.of.map(|r| r.kind.key()),
            "family": t.of.map(|r| r.family),
            "kind": t.key,
            "value": t.measured.map(round),
            "unit": if t.unit == "×" { "ratio" } else { "ms" },
            "ratio_to_limit": null,
            "ratio_to_xdp_drop": null,
            "target": t.what,
            "at": t.at,
            "limit": t.limit,
            "met": t.met().filter(|_| judged),
        }));
    }
}
