//! Alert rules and the pure state machine that turns a series of metric values into alerts.
//!
//! Owns: the [`AlertRule`] body (a section of a model's versioned monitoring configuration, so
//! every rule change is a configuration version with an author, a diff and the two-person rule),
//! its checks against the model's schema, the metrics a rule may watch ([`AlertMetric`]), the
//! three kinds of threshold (fixed, relative to the series' own recent baseline, data-driven
//! mean ± k·σ), the per-series state machine ([`step`]: inactive → pending → firing → resolved),
//! and annotation templates ([`render`]).
//!
//! Must not: compute the metrics (the server's evaluator does, from stored sketches), read the
//! clock (callers pass `now`), or store anything. The same [`step`] runs in the server's
//! evaluator and in `custos rules test`, so a rule file tested offline behaves the same live.

use crate::names::FieldName;
use crate::schema::ModelSchema;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Most rules one model may hold.
pub const MAX_RULES_PER_MODEL: usize = 100;
/// Most past values a series keeps for relative and data-driven thresholds.
pub const MAX_BASELINE_SAMPLES: u32 = 1_000;
/// Longest `for` duration: one week.
pub const MAX_FOR_SECONDS: u32 = 7 * 24 * 3_600;
/// Most labels or annotations on one rule.
const MAX_LABELS: usize = 20;
/// Longest label value or annotation template.
const MAX_TEXT: usize = 1_000;

/// Performance metrics a rule may watch, as the performance endpoint names them.
pub const PERFORMANCE_METRICS: [&str; 10] = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "mae",
    "rmse",
    "mape",
    "r2",
];
/// Data-quality measures a rule may watch, per feature.
pub const QUALITY_METRICS: [&str; 4] = [
    "missing_share",
    "invalid_share",
    "out_of_range_share",
    "unseen_share",
];
/// Estimated (CBPE) metrics a rule may watch.
pub const ESTIMATED_METRICS: [&str; 5] = ["roc_auc", "accuracy", "precision", "recall", "f1"];

/// A metric Custos computes that a rule can watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertMetric {
    /// `drift.statistic`: a feature's drift statistic (per feature).
    DriftStatistic,
    /// `drift.detected`: 1 when a feature drifted, else 0 (per feature).
    DriftDetected,
    /// `drift.share`: the share of drifted features.
    DriftShare,
    /// `drift.dataset`: 1 when the dataset counts as drifted, else 0.
    DatasetDrift,
    /// `performance.<metric>`: realized performance from labels.
    Performance(String),
    /// `estimated.<metric>`: CBPE estimate, before labels arrive.
    Estimated(String),
    /// `quality.<missing_share|invalid_share|out_of_range_share|unseen_share>` (per feature):
    /// missing values, non-finite numbers, numbers outside the reference range, categories the
    /// reference never saw.
    Quality(String),
    /// `volume.rows`: rows received in the evaluation window.
    VolumeRows,
    /// `freshness.silence_minutes`: minutes since the newest event (since registration when
    /// there is none), so a model that goes silent alerts.
    SilenceMinutes,
}

impl AlertMetric {
    /// Whether the metric has one series per feature.
    pub fn per_feature(&self) -> bool {
        matches!(
            self,
            AlertMetric::DriftStatistic | AlertMetric::DriftDetected | AlertMetric::Quality(_)
        )
    }

    /// Whether computing it needs a drift comparison against the reference.
    pub fn needs_drift(&self) -> bool {
        matches!(
            self,
            AlertMetric::DriftStatistic
                | AlertMetric::DriftDetected
                | AlertMetric::DriftShare
                | AlertMetric::DatasetDrift
        )
    }
}

impl fmt::Display for AlertMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertMetric::DriftStatistic => f.write_str("drift.statistic"),
            AlertMetric::DriftDetected => f.write_str("drift.detected"),
            AlertMetric::DriftShare => f.write_str("drift.share"),
            AlertMetric::DatasetDrift => f.write_str("drift.dataset"),
            AlertMetric::Performance(m) => write!(f, "performance.{m}"),
            AlertMetric::Estimated(m) => write!(f, "estimated.{m}"),
            AlertMetric::Quality(m) => write!(f, "quality.{m}"),
            AlertMetric::VolumeRows => f.write_str("volume.rows"),
            AlertMetric::SilenceMinutes => f.write_str("freshness.silence_minutes"),
        }
    }
}

impl FromStr for AlertMetric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "drift.statistic" => AlertMetric::DriftStatistic,
            "drift.detected" => AlertMetric::DriftDetected,
            "drift.share" => AlertMetric::DriftShare,
            "drift.dataset" => AlertMetric::DatasetDrift,
            "volume.rows" => AlertMetric::VolumeRows,
            "freshness.silence_minutes" => AlertMetric::SilenceMinutes,
            other => {
                if let Some(m) = other.strip_prefix("performance.")
                    && PERFORMANCE_METRICS.contains(&m)
                {
                    AlertMetric::Performance(m.to_owned())
                } else if let Some(m) = other.strip_prefix("quality.")
                    && QUALITY_METRICS.contains(&m)
                {
                    AlertMetric::Quality(m.to_owned())
                } else if let Some(m) = other.strip_prefix("estimated.")
                    && ESTIMATED_METRICS.contains(&m)
                {
                    AlertMetric::Estimated(m.to_owned())
                } else {
                    return Err(format!(
                        "unknown metric '{other}': expected drift.statistic, drift.detected, \
                         drift.share, drift.dataset, performance.<{}>, estimated.<{}>, \
                         quality.<{}>, volume.rows or freshness.silence_minutes",
                        PERFORMANCE_METRICS.join("|"),
                        ESTIMATED_METRICS.join("|"),
                        QUALITY_METRICS.join("|")
                    ));
                }
            }
        })
    }
}

impl Serialize for AlertMetric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AlertMetric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written as `30s`, `5m`, `2h` or `1d` (or a number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub u32);

impl Span {
    /// In seconds.
    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s > 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s > 0 && s.is_multiple_of(3_600) {
            write!(f, "{}h", s / 3_600)
        } else if s > 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{text}' is not a duration: write e.g. 30s, 5m, 2h or 1d");
        let t = text.trim();
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let factor = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        n.checked_mul(factor)
            .and_then(|v| u32::try_from(v).ok())
            .map(Span)
            .ok_or_else(bad)
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(n) => Ok(Span(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The value is above the threshold.
    Above,
    /// The value is below the threshold.
    Below,
}

/// How urgent an alert is. Ordered: `info < warning < critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look soon.
    Warning,
    /// Someone should look now.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Where the line between fine and alerting lies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Threshold {
    /// A fixed number.
    Fixed(f64),
    /// Relative to the mean of the series' previous `baseline_samples` values:
    /// `mean · (1 + relative_change)`. For example volume `below` with `relative_change: -0.5`
    /// alerts when traffic halves against its recent past.
    Relative {
        /// Fractional change from the baseline mean (−0.5 = half, 0.2 = 20 % more).
        relative_change: f64,
        /// How many previous evaluations form the baseline.
        baseline_samples: u32,
    },
    /// Data-driven: `mean + sigma·σ` (for `above`) or `mean − sigma·σ` (for `below`) of the
    /// series' previous `baseline_samples` values.
    DataDriven {
        /// Width of the band in standard deviations.
        sigma: f64,
        /// How many previous evaluations form the baseline.
        baseline_samples: u32,
    },
}

impl Threshold {
    fn baseline_samples(&self) -> u32 {
        match self {
            Threshold::Fixed(_) => 0,
            Threshold::Relative {
                baseline_samples, ..
            }
            | Threshold::DataDriven {
                baseline_samples, ..
            } => *baseline_samples,
        }
    }

    /// The threshold for the next value, given the series' earlier values (oldest first).
    /// `None` while the baseline is not yet full: a relative rule cannot judge without a past.
    pub fn resolve(&self, condition: Condition, history: &VecDeque<f64>) -> Option<f64> {
        let n = self.baseline_samples() as usize;
        let window = || history.iter().rev().take(n).copied().collect::<Vec<f64>>();
        match *self {
            Threshold::Fixed(value) => Some(value),
            Threshold::Relative {
                relative_change, ..
            } => {
                let values = window();
                (values.len() == n && n > 0).then(|| mean(&values) * (1.0 + relative_change))
            }
            Threshold::DataDriven { sigma, .. } => {
                let values = window();
                if values.len() != n || n < 2 {
                    return None;
                }
                let m = mean(&values);
                let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64;
                let band = sigma * var.sqrt();
                Some(match condition {
                    Condition::Above => m + band,
                    Condition::Below => m - band,
                })
            }
        }
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// One alert rule of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique within the model: lowercase letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// The watched metric, e.g. `drift.statistic`, `performance.roc_auc`,
    /// `freshness.silence_minutes`.
    #[schema(value_type = String)]
    pub metric: AlertMetric,
    /// For per-feature metrics: one feature, or every profiled feature when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub feature: Option<FieldName>,
    /// Which side of the threshold alerts.
    pub condition: Condition,
    /// The threshold: a number, `{relative_change, baseline_samples}` or
    /// `{sigma, baseline_samples}`.
    pub threshold: Threshold,
    /// How long the condition must hold before the alert fires (`0s`: at the first
    /// evaluation), e.g. `10m`.
    #[serde(default, rename = "for")]
    #[schema(value_type = String)]
    pub for_duration: Span,
    /// How urgent.
    pub severity: Severity,
    /// Labels routing matches on (e.g. `team: fraud`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Templated texts (`summary`, `description`, …) with `{{ model }}`, `{{ rule }}`,
    /// `{{ metric }}`, `{{ feature }}`, `{{ value }}`, `{{ threshold }}`, `{{ severity }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl AlertRule {
    /// The rule's problems, each naming the rule and the field; against `schema` when given.
    pub fn problems(&self, schema: Option<&ModelSchema>) -> Vec<String> {
        let mut errors = Vec::new();
        let rule = &self.name;
        if !valid_key(rule) {
            errors.push(format!(
                "alert rule '{rule}': name must be 1–64 lowercase letters, digits, '-' or '_'"
            ));
        }
        match (&self.feature, self.metric.per_feature()) {
            (Some(_), false) => errors.push(format!(
                "alert rule '{rule}': metric {} has no features; remove 'feature'",
                self.metric
            )),
            (Some(feature), true) => {
                if let Some(schema) = schema {
                    let profiled = schema
                        .column(feature.as_str())
                        .is_some_and(|(_, c)| c.profile_kind().is_some());
                    if !profiled {
                        errors.push(format!(
                            "alert rule '{rule}': feature '{feature}' is not a profiled field of \
                             the model"
                        ));
                    }
                }
            }
            _ => {}
        }
        match self.threshold {
            Threshold::Fixed(v) if !v.is_finite() => {
                errors.push(format!(
                    "alert rule '{rule}': threshold must be a finite number"
                ));
            }
            Threshold::Relative {
                relative_change,
                baseline_samples,
            } => {
                if !relative_change.is_finite() || relative_change <= -1.0 {
                    errors.push(format!(
                        "alert rule '{rule}': relative_change must be a number above -1"
                    ));
                }
                if baseline_samples == 0 || baseline_samples > MAX_BASELINE_SAMPLES {
                    errors.push(format!(
                        "alert rule '{rule}': baseline_samples must lie between 1 and \
                         {MAX_BASELINE_SAMPLES}"
                    ));
                }
            }
            Threshold::DataDriven {
                sigma,
                baseline_samples,
            } => {
                if !(sigma.is_finite() && sigma > 0.0) {
                    errors.push(format!(
                        "alert rule '{rule}': sigma must be a positive number"
                    ));
                }
                if !(2..=MAX_BASELINE_SAMPLES).contains(&baseline_samples) {
                    errors.push(format!(
                        "alert rule '{rule}': baseline_samples must lie between 2 and \
                         {MAX_BASELINE_SAMPLES} for a data-driven threshold"
                    ));
                }
            }
            Threshold::Fixed(_) => {}
        }
        if self.for_duration.seconds() > MAX_FOR_SECONDS {
            errors.push(format!("alert rule '{rule}': 'for' must be at most 7d"));
        }
        for (what, map) in [("label", &self.labels), ("annotation", &self.annotations)] {
            if map.len() > MAX_LABELS {
                errors.push(format!("alert rule '{rule}': at most {MAX_LABELS} {what}s"));
            }
            for (key, value) in map {
                if !valid_key(key) {
                    errors.push(format!(
                        "alert rule '{rule}': {what} name '{key}' must be 1–64 lowercase \
                         letters, digits, '-' or '_'"
                    ));
                }
                if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
                    errors.push(format!(
                        "alert rule '{rule}': {what} '{key}' must be at most {MAX_TEXT} bytes \
                         without control characters"
                    ));
                }
            }
        }
        if self.labels.contains_key("feature") || self.labels.contains_key("alertname") {
            errors.push(format!(
                "alert rule '{rule}': the labels 'feature' and 'alertname' are set by Custos"
            ));
        }
        errors
    }

    /// How many past values the series must keep for this rule's threshold.
    pub fn history_len(&self) -> usize {
        self.threshold.baseline_samples() as usize
    }
}

/// Checks a model's whole rule list: each rule, unique names, the count.
pub fn check_rules(rules: &[AlertRule], schema: Option<&ModelSchema>) -> Vec<String> {
    let mut errors = Vec::new();
    if rules.len() > MAX_RULES_PER_MODEL {
        errors.push(format!(
            "at most {MAX_RULES_PER_MODEL} alert rules per model ({} given)",
            rules.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for rule in rules {
        if !seen.insert(rule.name.as_str()) {
            errors.push(format!("alert rule '{}' is defined twice", rule.name));
        }
        errors.extend(rule.problems(schema));
    }
    errors
}

/// Where one series of a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold.
    Inactive,
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// The condition has held for the rule's `for`.
    Firing,
}

impl AlertState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// What one evaluation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Inactive → pending.
    Pending,
    /// → firing.
    Firing,
    /// Firing → inactive: the alert resolved.
    Resolved,
    /// Pending → inactive without firing.
    Cleared,
}

impl Transition {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Pending => "pending",
            Transition::Firing => "firing",
            Transition::Resolved => "resolved",
            Transition::Cleared => "cleared",
        }
    }
}

/// One series' remembered state between evaluations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    /// Where it stands.
    pub state: AlertState,
    /// Since when the condition has held (pending or firing).
    pub active_since: Option<DateTime<Utc>>,
    /// When it last started firing.
    pub fired_at: Option<DateTime<Utc>>,
    /// When it last resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The newest value and the threshold it was compared with.
    pub value: Option<f64>,
    /// The threshold of the newest evaluation, when one could be computed.
    pub threshold: Option<f64>,
    /// Earlier values, oldest first, as many as the rule's baseline needs.
    #[serde(default)]
    pub history: VecDeque<f64>,
}

impl Default for SeriesState {
    fn default() -> Self {
        Self {
            state: AlertState::Inactive,
            active_since: None,
            fired_at: None,
            resolved_at: None,
            value: None,
            threshold: None,
            history: VecDeque::new(),
        }
    }
}

/// Advances one series by one evaluation at `now` with `value` (`None`: the metric could not
/// be computed — no reference yet, no labels — which counts as "condition does not hold" and
/// leaves the baseline untouched). Returns the new state and the transition, if any.
pub fn step(
    rule: &AlertRule,
    before: &SeriesState,
    value: Option<f64>,
    now: DateTime<Utc>,
) -> (SeriesState, Option<Transition>) {
    let mut after = before.clone();
    let threshold = value.and_then(|_| rule.threshold.resolve(rule.condition, &before.history));
    let holds = match (value, threshold) {
        (Some(v), Some(t)) if v.is_finite() => match rule.condition {
            Condition::Above => v > t,
            Condition::Below => v < t,
        },
        _ => false,
    };
    after.value = value;
    after.threshold = threshold;
    if let Some(v) = value.filter(|v| v.is_finite()) {
        let keep = rule.history_len();
        if keep > 0 {
            after.history.push_back(v);
            while after.history.len() > keep {
                after.history.pop_front();
            }
        } else {
            after.history.clear();
        }
    }
    let held_for_enough = |since: DateTime<Utc>| {
        now.signed_duration_since(since)
            >= Duration::seconds(i64::from(rule.for_duration.seconds()))
    };
    let transition = match (before.state, holds) {
        (AlertState::Inactive, true) => {
            after.active_since = Some(now);
            if held_for_enough(now) {
                after.state = AlertState::Firing;
                after.fired_at = Some(now);
                Some(Transition::Firing)
            } else {
                after.state = AlertState::Pending;
                Some(Transition::Pending)
            }
        }
        (AlertState::Pending, true) => {
            let since = before.active_since.unwrap_or(now);
            if held_for_enough(since) {
                after.state = AlertState::Firing;
                after.fired_at = Some(now);
                Some(Transition::Firing)
            } else {
                None
            }
        }
        (AlertState::Firing, true) => None,
        (AlertState::Inactive, false) => None,
        (AlertState::Pending, false) => {
            after.state = AlertState::Inactive;
            after.active_since = None;
            Some(Transition::Cleared)
        }
        (AlertState::Firing, false) => {
            after.state = AlertState::Inactive;
            after.active_since = None;
            after.resolved_at = Some(now);
            Some(Transition::Resolved)
        }
    };
    (after, transition)
}

/// What annotation templates may name.
#[derive(Debug, Clone)]
pub struct TemplateContext<'a> {
    /// The model's name.
    pub model: &'a str,
    /// The rule.
    pub rule: &'a AlertRule,
    /// The series' feature, for per-feature metrics.
    pub feature: Option<&'a str>,
    /// The value evaluated.
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let rounded = format!("{v:.4}");
            let trimmed = rounded.trim_end_matches('0').trim_end_matches('.');
            trimmed.to_owned()
        }
        _ => "n/a".to_owned(),
    }
}

/// Renders one template: `{{ name }}` placeholders (spaces optional) are replaced; an unknown
/// placeholder is kept as written so a typo is visible in the notification, not silently empty.
pub fn render(template: &str, ctx: &TemplateContext<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(rest.get(..open).unwrap_or_default());
        let after_open = rest.get(open + 2..).unwrap_or_default();
        let Some(close) = after_open.find("}}") else {
            out.push_str(rest.get(open..).unwrap_or_default());
            return out;
        };
        let name = after_open.get(..close).unwrap_or_default().trim();
        let value = match name {
            "model" => Some(ctx.model.to_owned()),
            "rule" => Some(ctx.rule.name.clone()),
            "metric" => Some(ctx.rule.metric.to_string()),
            "feature" => Some(ctx.feature.unwrap_or("").to_owned()),
            "value" => Some(number(ctx.value)),
            "threshold" => Some(number(ctx.threshold)),
            "severity" => Some(ctx.rule.severity.as_str().to_owned()),
            other => other
                .strip_prefix("labels.")
                .and_then(|key| ctx.rule.labels.get(key).cloned()),
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(rest.get(open..open + 2 + close + 2).unwrap_or_default()),
        }
        rest = after_open.get(close + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Every annotation of `ctx.rule`, rendered.
pub fn render_annotations(ctx: &TemplateContext<'_>) -> BTreeMap<String, String> {
    ctx.rule
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), render(v, ctx)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap() + Duration::minutes(minute)
    }

    fn rule(threshold: Threshold, for_minutes: u32) -> AlertRule {
        let for_duration = Span(for_minutes * 60);
        AlertRule {
            name: "amount-drift".into(),
            metric: AlertMetric::DriftStatistic,
            feature: None,
            condition: Condition::Above,
            threshold,
            for_duration,
            severity: Severity::Critical,
            labels: BTreeMap::from([("team".into(), "fraud".into())]),
            annotations: BTreeMap::from([(
                "summary".into(),
                "{{model}}: {{ feature }} at {{ value }} > {{threshold}} ({{labels.team}}, {{ nope }})"
                    .into(),
            )]),
        }
    }

    fn run(rule: &AlertRule, values: &[Option<f64>]) -> Vec<(AlertState, Option<Transition>)> {
        let mut state = SeriesState::default();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (next, t) = step(rule, &state, *v, at(i as i64));
                state = next;
                (state.state, t)
            })
            .collect()
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let r = rule(Threshold::Fixed(0.2), 2);
        let seen = run(&r, &[Some(0.1), Some(0.3), Some(0.3), Some(0.3), Some(0.1)]);
        assert_eq!(
            seen,
            vec![
                (AlertState::Inactive, None),
                (AlertState::Pending, Some(Transition::Pending)),
                (AlertState::Pending, None),
                (AlertState::Firing, Some(Transition::Firing)),
                (AlertState::Inactive, Some(Transition::Resolved)),
            ]
        );
    }

    #[test]
    fn zero_for_fires_at_once_and_a_blip_clears_pending() {
        let r = rule(Threshold::Fixed(0.2), 0);
        assert_eq!(
            run(&r, &[Some(0.5)])[0],
            (AlertState::Firing, Some(Transition::Firing))
        );
        let r = rule(Threshold::Fixed(0.2), 5);
        let seen = run(&r, &[Some(0.5), None]);
        assert_eq!(seen[1], (AlertState::Inactive, Some(Transition::Cleared)));
    }

    #[test]
    fn relative_and_data_driven_thresholds_wait_for_a_full_baseline() {
        let mut r = rule(
            Threshold::Relative {
                relative_change: -0.5,
                baseline_samples: 3,
            },
            0,
        );
        r.condition = Condition::Below;
        let seen = run(
            &r,
            &[
                Some(100.0),
                Some(100.0),
                Some(10.0),
                Some(100.0),
                Some(40.0),
            ],
        );
        // The third value has only two samples of baseline: no judgement yet.
        assert_eq!(seen[2].0, AlertState::Inactive);
        // Baseline (100, 10, 100) → mean 70 → threshold 35: 40 is fine.
        assert_eq!(seen[4].0, AlertState::Inactive);
        let seen = run(&r, &[Some(100.0), Some(100.0), Some(100.0), Some(49.0)]);
        assert_eq!(seen[3], (AlertState::Firing, Some(Transition::Firing)));

        let r = rule(
            Threshold::DataDriven {
                sigma: 3.0,
                baseline_samples: 4,
            },
            0,
        );
        let values = [Some(1.0), Some(2.0), Some(1.0), Some(2.0)];
        let mut state = SeriesState::default();
        for (i, v) in values.iter().enumerate() {
            state = step(&r, &state, *v, at(i as i64)).0;
        }
        // mean 1.5, sample σ ≈ 0.577 → threshold ≈ 3.23.
        let (calm, _) = step(&r, &state, Some(3.0), at(10));
        assert_eq!(calm.state, AlertState::Inactive);
        let (hot, t) = step(&r, &state, Some(3.5), at(10));
        assert_eq!(t, Some(Transition::Firing));
        assert!((hot.threshold.unwrap() - 3.232).abs() < 1e-3);
        assert_eq!(hot.history.len(), 4);
    }

    #[test]
    fn templates_fill_known_names_and_keep_unknown_ones() {
        let r = rule(Threshold::Fixed(0.2), 0);
        let ctx = TemplateContext {
            model: "fraud-v3",
            rule: &r,
            feature: Some("amount"),
            value: Some(0.31250),
            threshold: Some(0.2),
        };
        assert_eq!(
            render_annotations(&ctx)["summary"],
            "fraud-v3: amount at 0.3125 > 0.2 (fraud, {{ nope }})"
        );
        assert_eq!(render("open {{ model", &ctx), "open {{ model");
    }

    #[test]
    fn rules_are_checked_with_clear_messages() {
        let mut r = rule(Threshold::Fixed(f64::NAN), 0);
        r.name = "Bad Name".into();
        r.labels.insert("feature".into(), "x".into());
        let errors = check_rules(&[r.clone(), r], None);
        let all = errors.join("\n");
        assert!(all.contains("defined twice"), "{all}");
        assert!(all.contains("name must be"), "{all}");
        assert!(all.contains("finite number"), "{all}");
        assert!(all.contains("set by Custos"), "{all}");
        assert!(
            "performance.nope"
                .parse::<AlertMetric>()
                .unwrap_err()
                .contains("unknown metric")
        );
        assert_eq!(
            "performance.roc_auc".parse::<AlertMetric>().unwrap(),
            AlertMetric::Performance("roc_auc".into())
        );
        let yaml_like: AlertRule = serde_json::from_value(serde_json::json!({
            "name": "silent", "metric": "freshness.silence_minutes", "condition": "above",
            "threshold": {"sigma": 3, "baseline_samples": 10}, "severity": "warning"
        }))
        .unwrap();
        assert!(matches!(yaml_like.threshold, Threshold::DataDriven { .. }));
        assert!(check_rules(&[yaml_like], None).is_empty());
        assert_eq!("90s".parse::<Span>().unwrap(), Span(90));
        assert_eq!("2h".parse::<Span>().unwrap().to_string(), "2h");
        assert!(
            "5 minutes"
                .parse::<Span>()
                .unwrap_err()
                .contains("not a duration")
        );
        assert!("99999999d".parse::<Span>().is_err());
    }
}
