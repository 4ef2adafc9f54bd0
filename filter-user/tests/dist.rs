//! The operator artifacts in dist/: every metric and label that
//! `grafana-dashboard.json` and `alerts.yml` query is one the exporter
//! serves. What it serves is read from `src/report/metrics.rs` itself (each
//! `Family::gauge(NAME, HELP)` / `Family::counter(NAME, HELP)` and each
//! label key it builds), the
//! frame counters' names from `filter_common::GLOBAL_NAMES`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// What the exporter can render.
struct Exported {
    /// Metric names as exposed (counters with `_total`).
    metrics: BTreeSet<String>,
    /// Label keys, plus the ones Prometheus adds when scraping.
    labels: BTreeSet<String>,
    /// Values of the `counter` label of `flowfilter_frames_total`.
    counters: BTreeSet<String>,
}

/// A Rust string literal at the start of `s` (after whitespace): its value
/// and the rest.
fn string_literal(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// Parse the families and label keys out of `src/report/metrics.rs` (its code,
/// not its tests).
fn exported_from(source: &str) -> Exported {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut metrics = BTreeSet::new();
    // Every `Family::gauge(` and `Family::counter(` call, in source order.
    let mut calls: Vec<(usize, bool)> = [("Family::gauge(", false), ("Family::counter(", true)]
        .iter()
        .flat_map(|&(pat, counter)| {
            code.match_indices(pat)
                .map(move |(at, _)| (at + pat.len(), counter))
        })
        .collect();
    calls.sort_unstable();
    for (n, &(at, counter)) in calls.iter().enumerate() {
        let call = &code[at..];
        let parsed = (|| {
            let (name, rest) = string_literal(call)?;
            let rest = rest.trim_start().strip_prefix(',')?;
            let (_help, rest) = string_literal(rest)?;
            let rest = rest.trim_start();
            let rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
            rest.strip_prefix(')')?;
            Some(if counter {
                format!("{name}_total")
            } else {
                name
            })
        })();
        let name = parsed.unwrap_or_else(|| {
            panic!(
                "Family call #{} in metrics.rs is not gauge|counter(\"NAME\", \"HELP\"): {}",
                n + 1,
                &call[..call.len().min(200)]
            )
        });
        metrics.insert(name);
    }
    // Label keys: the `("key", value)` pairs of each `vec![...]` of labels.
    let mut labels: BTreeSet<String> = ["instance", "job"].map(str::to_owned).into();
    for block in code.split("vec![").skip(1) {
        let block = block.split(']').next().unwrap_or("");
        for pair in block.split('(').skip(1) {
            if let Some((key, rest)) = string_literal(pair)
                && rest.trim_start().starts_with(',')
            {
                labels.insert(key);
            }
        }
    }
    let counters = filter_common::GLOBAL_NAMES.map(str::to_owned).into();
    Exported {
        metrics,
        labels,
        counters,
    }
}

fn exported() -> Exported {
    let e = exported_from(&read("filter-user/src/report/metrics.rs"));
    assert!(
        e.metrics.len() >= 10 && e.labels.len() >= 8,
        "found too few families ({:?}) or labels ({:?}) in metrics.rs: has its shape changed?",
        e.metrics,
        e.labels
    );
    e
}

/// A label matcher in a selector.
struct Matcher {
    label: String,
    regex: bool,
    value: String,
}

/// Metric names, label names (matchers and `by`/`on` lists) and matchers a
/// PromQL expression uses. Grafana's `$variables` are allowed in strings and
/// ranges.
#[derive(Default)]
struct Uses {
    metrics: Vec<String>,
    labels: Vec<String>,
    matchers: Vec<Matcher>,
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "inf",
    "nan",
];
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn promql_uses(expr: &str) -> Result<Uses, String> {
    let b = expr.as_bytes();
    let ident = |i: usize| {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
            j += 1;
        }
        j
    };
    let string_end = |i: usize| -> Result<usize, String> {
        let q = b[i];
        let mut j = i + 1;
        while j < b.len() && b[j] != q {
            j += if b[j] == b'\\' { 2 } else { 1 };
        }
        if j >= b.len() {
            return Err(format!("unterminated string in `{expr}`"));
        }
        Ok(j + 1)
    };
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut uses = Uses::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = string_end(i)?;
        } else if c == b'[' {
            i = expr[i..]
                .find(']')
                .map(|n| i + n + 1)
                .ok_or_else(|| format!("unclosed [ in `{expr}`"))?;
        } else if c == b'{' {
            // label OP "value", ...
            i += 1;
            loop {
                i = skip_ws(i);
                if i >= b.len() {
                    return Err(format!("unclosed {{ in `{expr}`"));
                }
                if b[i] == b'}' {
                    i += 1;
                    break;
                }
                if b[i] == b',' {
                    i += 1;
                    continue;
                }
                let end = ident(i);
                if end == i {
                    return Err(format!("bad matcher at {i} in `{expr}`"));
                }
                let label = expr[i..end].to_owned();
                i = skip_ws(end);
                let op_end = expr[i..]
                    .find(['"', '\'', '`'])
                    .map(|n| i + n)
                    .ok_or_else(|| format!("matcher {label} without a value in `{expr}`"))?;
                let op = expr[i..op_end].trim();
                if !["=", "!=", "=~", "!~"].contains(&op) {
                    return Err(format!("matcher {label} has operator `{op}` in `{expr}`"));
                }
                let value_end = string_end(op_end)?;
                uses.labels.push(label.clone());
                uses.matchers.push(Matcher {
                    label,
                    regex: op.ends_with('~'),
                    value: expr[op_end + 1..value_end - 1].to_owned(),
                });
                i = value_end;
            }
        } else if c == b'$' {
            i = ident(i + 1);
        } else if c.is_ascii_digit() || c == b'.' {
            // Numbers and durations (`0.9`, `1d`, `2e3`).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let end = ident(i);
            let word = &expr[i..end];
            let next = skip_ws(end);
            if LABEL_LISTS.contains(&word) {
                if b.get(next) == Some(&b'(') {
                    let close = expr[next..]
                        .find(')')
                        .map(|n| next + n)
                        .ok_or_else(|| format!("unclosed {word} ( in `{expr}`"))?;
                    uses.labels.extend(
                        expr[next + 1..close]
                            .split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close + 1;
                } else {
                    i = end;
                }
            } else {
                if !KEYWORDS.contains(&word) && b.get(next) != Some(&b'(') {
                    uses.metrics.push(word.to_owned());
                }
                i = end;
            }
        } else {
            i += 1;
        }
    }
    Ok(uses)
}

/// What is wrong with `expr` against `e` (empty: nothing).
fn problems(expr: &str, e: &Exported) -> Vec<String> {
    let uses = match promql_uses(expr) {
        Ok(u) => u,
        Err(why) => return vec![why],
    };
    let mut out = Vec::new();
    if uses.metrics.is_empty() {
        out.push(format!("`{expr}` uses no metric"));
    }
    for m in &uses.metrics {
        if !e.metrics.contains(m) {
            out.push(format!("`{expr}`: the exporter serves no `{m}`"));
        }
    }
    for l in &uses.labels {
        if !e.labels.contains(l) {
            out.push(format!("`{expr}`: no metric has a label `{l}`"));
        }
    }
    for m in uses.matchers.iter().filter(|m| m.label == "counter") {
        let values: Vec<&str> = if m.regex {
            m.value.split('|').collect()
        } else {
            vec![m.value.as_str()]
        };
        for v in values {
            if !e.counters.contains(v) {
                out.push(format!("`{expr}`: the program has no frame counter `{v}`"));
            }
        }
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets, annotations and
/// the `label_values(METRIC, LABEL)` queries of its variables (returned as
/// METRIC, with LABEL checked as `by (LABEL)`).
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("definition", Value::String(s)) => {
                        let inner = s
                            .strip_prefix("label_values(")
                            .and_then(|s| s.strip_suffix(')'))
                            .unwrap_or_else(|| {
                                panic!("variable query `{s}` is not label_values(...)")
                            });
                        let (metric, label) = inner
                            .rsplit_once(',')
                            .unwrap_or_else(|| panic!("`{s}`: label_values(METRIC, LABEL)"));
                        out.push(format!("max by ({}) ({})", label.trim(), metric.trim()));
                    }
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let e = exported();
    let text = read("dist/grafana-dashboard.json");
    let dash: Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("dist/grafana-dashboard.json: {err}"));
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, &mut exprs);
    assert!(
        exprs.len() >= 20,
        "only {} expressions found in the dashboard",
        exprs.len()
    );
    let bad: Vec<String> = exprs.iter().flat_map(|x| problems(x, &e)).collect();
    assert!(
        bad.is_empty(),
        "dist/grafana-dashboard.json:\n{}",
        bad.join("\n")
    );
}

#[test]
fn alert_rules_query_only_exported_metrics() {
    let e = exported();
    let text = read("dist/alerts.yml");
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap_or_else(|err| panic!("dist/alerts.yml: {err}"));
    let groups = docs
        .first()
        .and_then(|d| d["groups"].as_vec())
        .expect("dist/alerts.yml has `groups:`");
    let mut n = 0;
    let mut bad = Vec::new();
    for g in groups {
        let rules = g["rules"]
            .as_vec()
            .unwrap_or_else(|| panic!("group {:?} has no `rules:`", g["name"]));
        for r in rules {
            let alert = r["alert"]
                .as_str()
                .unwrap_or_else(|| panic!("rule without `alert:`: {r:?}"));
            let expr = r["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} has no `expr:`"));
            assert!(r["for"].as_str().is_some(), "{alert} has no `for:`");
            assert!(
                r["annotations"]["summary"].as_str().is_some(),
                "{alert} has no summary"
            );
            bad.extend(
                problems(expr, &e)
                    .into_iter()
                    .map(|p| format!("{alert}: {p}")),
            );
            n += 1;
        }
    }
    assert!(n >= 4, "only {n} alert rules in dist/alerts.yml");
    assert!(bad.is_empty(), "dist/alerts.yml:\n{}", bad.join("\n"));
}

#[test]
fn a_misspelt_metric_label_or_counter_is_caught() {
    let e = exported();
    let good = r#"sum by (category) (rate(flowfilter_category_packets_total{verdict="dropped"}[$__rate_interval])) / flowfilter_flow_capacity"#;
    assert_eq!(problems(good, &e), Vec::<String>::new());
    for (expr, wrong) in [
        (
            r#"sum by (category) (rate(flowfilter_category_packet_total{verdict="dropped"}[5m]))"#,
            "flowfilter_category_packet_total",
        ),
        // A counter's name without `_total` is not what is served.
        ("rate(flowfilter_reloads[5m])", "flowfilter_reloads"),
        (
            "flowfilter_flows / flowfilter_flow_capacty > 0.9",
            "flowfilter_flow_capacty",
        ),
        (
            "max by (categroy) (flowfilter_list_age_seconds)",
            "categroy",
        ),
        (
            r#"flowfilter_list_age_seconds{catgory!="allow"} > 2 * 86400"#,
            "catgory",
        ),
        (
            r#"rate(flowfilter_frames_total{counter=~"fragments|fragment_overlap"}[5m])"#,
            "fragment_overlap",
        ),
        ("time() - 3", "uses no metric"),
    ] {
        let p = problems(expr, &e);
        assert!(
            p.iter().any(|p| p.contains(wrong)),
            "`{expr}`: expected a problem naming {wrong}, got {p:?}"
        );
    }
}

#[test]
fn families_and_counters_are_read_from_metrics_rs() {
    let e = exported_from(
        r#"
        let a = Family::counter("flowfilter_a", "help (with \"quotes\", commas)");
        let b = Family::gauge(
            "flowfilter_b",
            "gauge",
        );
        b.add(vec![("interface", name), ("mode", m)], 1u64);
        for (verdict, p) in [("seen", 1)] {}
        #[cfg(test)]
        let t = Family::gauge("flowfilter_test_only", "x");
        "#,
    );
    assert_eq!(
        e.metrics,
        ["flowfilter_a_total", "flowfilter_b"]
            .map(str::to_owned)
            .into()
    );
    assert_eq!(
        e.labels,
        ["instance", "interface", "job", "mode"]
            .map(str::to_owned)
            .into()
    );
}
