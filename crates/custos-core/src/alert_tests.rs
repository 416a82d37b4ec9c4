//! Unit tests for alert rules, like Prometheus's `promtool test rules`: a described series of
//! metric values is fed through the real state machine ([`crate::alerts::step`]) and the alerts
//! that are firing (and, if asked, pending) at given times are compared with expectations.
//!
//! Owns the test-file body ([`RuleTestFile`]), the series notation ([`expand_values`]) and the
//! runner ([`run`]), whose failures name the time, the rule, the series and what differed. The
//! `custos rules test FILE` command reads the YAML and prints the result; nothing here does IO.

use crate::alerts::{AlertMetric, AlertRule, AlertState, SeriesState, Span, TemplateContext, step};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most evaluation steps one test file may ask for (bounds the work of a hostile file).
pub const MAX_STEPS: usize = 100_000;

/// One test file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTestFile {
    /// Time between two evaluations (default `1m`).
    #[serde(default = "one_minute")]
    pub evaluation_interval: Span,
    /// The model name templates see (default `model`).
    #[serde(default = "default_model")]
    pub model: String,
    /// The rules under test (the `alerts` section of a monitoring configuration).
    pub rules: Vec<AlertRule>,
    /// The metric values, one entry per series.
    pub series: Vec<SeriesInput>,
    /// What must hold when.
    pub tests: Vec<Expectation>,
}

fn one_minute() -> Span {
    Span(60)
}

fn default_model() -> String {
    "model".to_owned()
}

/// The values of one series, one per evaluation starting at minute 0.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesInput {
    /// The metric, e.g. `drift.statistic`.
    pub metric: AlertMetric,
    /// The feature, for per-feature metrics.
    #[serde(default)]
    pub feature: Option<String>,
    /// Values in promtool's notation: `0.1 0.3x4 _ 1+2x3` (`axN` is a repeated N more times,
    /// `a+bxN` counts from a by b N times, `_` is a missing value, `_xN` N missing values).
    pub values: String,
}

/// The alerts expected at one time.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Time after the first evaluation (e.g. `10m`); a multiple of the evaluation interval.
    pub at: Span,
    /// Exactly the alerts firing then.
    #[serde(default)]
    pub firing: Vec<ExpectedAlert>,
    /// When given, exactly the alerts pending then.
    #[serde(default)]
    pub pending: Option<Vec<ExpectedAlert>>,
}

/// One expected alert.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    /// The rule's name.
    pub rule: String,
    /// The series' feature, for per-feature metrics.
    #[serde(default)]
    pub feature: Option<String>,
    /// When given, the rendered annotations must equal these.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Expands promtool's series notation into one optional value per evaluation.
pub fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let (body, times) = match token.rsplit_once('x') {
            Some((body, n)) => {
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("'{token}': the count after 'x' must be a number"))?;
                (body, Some(n))
            }
            None => (token, None),
        };
        if out.len() + times.unwrap_or(1) + 1 > MAX_STEPS {
            return Err(format!("more than {MAX_STEPS} values"));
        }
        if body == "_" {
            out.extend(std::iter::repeat_n(None, times.unwrap_or(1)));
            continue;
        }
        // `a+b` / `a-b`: the sign that is not the number's own leading sign or an exponent's.
        let split = body
            .char_indices()
            .skip(1)
            .find(|&(i, c)| {
                (c == '+' || c == '-') && !matches!(body.as_bytes().get(i - 1), Some(b'e' | b'E'))
            })
            .map(|(i, _)| i);
        let number = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("'{token}': '{s}' is not a number"))
        };
        let (start, increment) = match split {
            Some(i) => (
                number(body.get(..i).unwrap_or_default())?,
                number(body.get(i..).unwrap_or_default())?,
            ),
            None => (number(body)?, 0.0),
        };
        match times {
            None if split.is_some() => {
                return Err(format!("'{token}': a+b needs a count, as in a+bxN"));
            }
            None => out.push(Some(start)),
            Some(n) => {
                for k in 0..=n {
                    out.push(Some(start + increment * k as f64));
                }
            }
        }
    }
    Ok(out)
}

/// The outcome of a test file.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Expectations checked.
    pub checked: usize,
    /// What went wrong, one message per failed expectation.
    pub failures: Vec<String>,
}

type SeriesKey = (String, Option<String>);
/// Per series: its state after one step and its rendered annotations.
type StepStates = BTreeMap<SeriesKey, (AlertState, BTreeMap<String, String>)>;

fn describe(key: &SeriesKey) -> String {
    match &key.1 {
        Some(feature) => format!("{}{{feature={feature}}}", key.0),
        None => key.0.clone(),
    }
}

fn list(keys: &BTreeSet<SeriesKey>) -> String {
    if keys.is_empty() {
        return "none".to_owned();
    }
    keys.iter().map(describe).collect::<Vec<_>>().join(", ")
}

/// Runs a test file. `Err` for a file that cannot be run (bad rules, notation, times); a file
/// whose expectations fail is `Ok` with failures.
pub fn run(file: &RuleTestFile) -> Result<TestReport, Vec<String>> {
    let mut problems = crate::alerts::check_rules(&file.rules, None);
    let interval = file.evaluation_interval.seconds();
    if interval == 0 {
        problems.push("evaluation_interval must be at least 1s".to_owned());
    }
    let mut series: Vec<(AlertMetric, Option<String>, Vec<Option<f64>>)> = Vec::new();
    for (i, s) in file.series.iter().enumerate() {
        match expand_values(&s.values) {
            Ok(values) => series.push((s.metric.clone(), s.feature.clone(), values)),
            Err(e) => problems.push(format!("series {} ({}): {e}", i + 1, s.metric)),
        }
        if s.metric.per_feature() != s.feature.is_some() {
            problems.push(format!(
                "series {} ({}): {}",
                i + 1,
                s.metric,
                if s.metric.per_feature() {
                    "this metric is per feature: name the feature"
                } else {
                    "this metric has no features: remove 'feature'"
                }
            ));
        }
    }
    for t in &file.tests {
        if interval > 0 && !t.at.seconds().is_multiple_of(interval) {
            problems.push(format!(
                "test at {}: not a multiple of the evaluation interval ({})",
                t.at, file.evaluation_interval
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let last = file.tests.iter().map(|t| t.at.seconds()).max().unwrap_or(0);
    let steps = (last / interval) as usize + 1;
    if steps > MAX_STEPS {
        return Err(vec![format!("tests reach beyond {MAX_STEPS} evaluations")]);
    }
    let origin: DateTime<Utc> = Utc.timestamp_opt(0, 0).single().unwrap_or_default();

    // (step, series) → state after that step's evaluation, plus the rendered annotations.
    let mut timeline: Vec<StepStates> = vec![BTreeMap::new(); steps];
    for rule in &file.rules {
        for (metric, feature, values) in &series {
            let applies = *metric == rule.metric
                && (rule.feature.is_none()
                    || rule.feature.as_ref().map(|f| f.as_str()) == feature.as_deref());
            if !applies {
                continue;
            }
            let key = (rule.name.clone(), feature.clone());
            let mut state = SeriesState::default();
            for (i, slot) in timeline.iter_mut().enumerate() {
                let now = origin + Duration::seconds(i as i64 * i64::from(interval));
                let value = values.get(i).copied().flatten();
                state = step(rule, &state, value, now).0;
                let annotations = crate::alerts::render_annotations(&TemplateContext {
                    model: &file.model,
                    rule,
                    feature: feature.as_deref(),
                    value: state.value,
                    threshold: state.threshold,
                });
                slot.insert(key.clone(), (state.state, annotations));
            }
        }
    }

    let mut report = TestReport::default();
    for t in &file.tests {
        report.checked += 1;
        let Some(at) = timeline.get((t.at.seconds() / interval) as usize) else {
            continue;
        };
        let in_state = |wanted: AlertState| -> BTreeSet<SeriesKey> {
            at.iter()
                .filter(|(_, (s, _))| *s == wanted)
                .map(|(k, _)| k.clone())
                .collect()
        };
        let expected = |alerts: &[ExpectedAlert]| -> BTreeSet<SeriesKey> {
            alerts
                .iter()
                .map(|a| (a.rule.clone(), a.feature.clone()))
                .collect()
        };
        let mut checks = vec![("firing", expected(&t.firing), in_state(AlertState::Firing))];
        if let Some(pending) = &t.pending {
            checks.push(("pending", expected(pending), in_state(AlertState::Pending)));
        }
        for (what, want, got) in checks {
            if want != got {
                report.failures.push(format!(
                    "at {}: expected {what}: {}; got {what}: {}",
                    t.at,
                    list(&want),
                    list(&got)
                ));
            }
        }
        for alert in &t.firing {
            let key = (alert.rule.clone(), alert.feature.clone());
            if let (Some(want), Some((AlertState::Firing, got))) =
                (&alert.annotations, at.get(&key))
                && want != got
            {
                report.failures.push(format!(
                    "at {}: {} annotations differ: expected {want:?}, got {got:?}",
                    t.at,
                    describe(&key)
                ));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: serde_json::Value) -> RuleTestFile {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn notation_follows_promtool() {
        assert_eq!(
            expand_values("1 2x2 _ 1+2x2 5-1x1 _x2 1e-3").unwrap(),
            vec![
                Some(1.0),
                Some(2.0),
                Some(2.0),
                Some(2.0),
                None,
                Some(1.0),
                Some(3.0),
                Some(5.0),
                Some(5.0),
                Some(4.0),
                None,
                None,
                Some(0.001)
            ]
        );
        assert!(expand_values("abc").unwrap_err().contains("'abc'"));
        assert!(expand_values("1+2").unwrap_err().contains("needs a count"));
        assert!(
            expand_values("1x99999999")
                .unwrap_err()
                .contains("more than")
        );
    }

    fn drift_file(tests: serde_json::Value) -> RuleTestFile {
        file(serde_json::json!({
            "model": "fraud-v3",
            "rules": [{"name": "drift", "metric": "drift.statistic", "condition": "above",
                       "threshold": 0.2, "for": "2m", "severity": "critical",
                       "annotations": {"summary": "{{ feature }} drifted ({{ value }})"}}],
            "series": [{"metric": "drift.statistic", "feature": "amount", "values": "0.1 0.3x3 0.1"},
                       {"metric": "drift.statistic", "feature": "country", "values": "0.1x5"}],
            "tests": tests
        }))
    }

    #[test]
    fn a_good_file_passes_and_a_wrong_expectation_is_named() {
        let good = drift_file(serde_json::json!([
            {"at": "1m", "firing": [], "pending": [{"rule": "drift", "feature": "amount"}]},
            {"at": "3m", "firing": [{"rule": "drift", "feature": "amount",
                                          "annotations": {"summary": "amount drifted (0.3)"}}]},
            {"at": "5m", "firing": [], "pending": []}
        ]));
        let report = run(&good).unwrap();
        assert_eq!(
            (report.checked, report.failures.len()),
            (3, 0),
            "{:?}",
            report.failures
        );

        let wrong = drift_file(serde_json::json!([
            {"at": "2m", "firing": [{"rule": "drift", "feature": "amount"}]},
            {"at": "4m", "firing": [{"rule": "drift", "feature": "amount",
                                          "annotations": {"summary": "nope"}}]}
        ]));
        let report = run(&wrong).unwrap();
        assert_eq!(report.failures.len(), 2);
        assert_eq!(
            report.failures[0],
            "at 2m: expected firing: drift{feature=amount}; got firing: none"
        );
        assert!(report.failures[1].contains("annotations differ"));
    }

    #[test]
    fn unrunnable_files_say_why() {
        let mut bad = drift_file(serde_json::json!([{"at": "3m"}]));
        bad.evaluation_interval = Span(120);
        bad.series[1].feature = None;
        let problems = run(&bad).unwrap_err().join("\n");
        assert!(problems.contains("not a multiple"), "{problems}");
        assert!(problems.contains("name the feature"), "{problems}");
    }
}
