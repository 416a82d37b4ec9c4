//! How a model is monitored: which drift statistic and threshold each feature uses, when the
//! whole dataset counts as drifted, how fresh and how steady traffic must be, and how
//! classification scores become classes.
//!
//! Owns the [`MonitoringConfig`] body (`PUT /api/v1/models/{model}/monitoring`), its checks
//! against a model's schema, and the one function that decides a feature's statistic
//! ([`DriftConfig::choice`]). Must not compute statistics (that is `custos-stats`) or store
//! anything. A configuration that passed [`MonitoringConfig::check`] can be applied without
//! further questions: every named feature exists, is profiled, and its method applies to it.

use crate::alerts::AlertRule;
use crate::names::FieldName;
use crate::schema::{ModelSchema, ProfileKind};
use custos_stats::{MethodChoice, StatMethod};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Default share of drifted features at which the dataset counts as drifted.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;
/// Default `k` of data-driven thresholds (mean + k·σ of the reference chunks' statistics).
pub const DEFAULT_DATA_DRIVEN_K: f64 = 3.0;
/// Default longest silence before a model counts as stale.
pub const DEFAULT_MAX_SILENCE_MINUTES: u32 = 60;
/// Default `k` of the volume anomaly band (mean ± k·σ of the baseline hours).
pub const DEFAULT_VOLUME_K: f64 = 3.0;
/// Default number of past hours the volume of an hour is compared with.
pub const DEFAULT_VOLUME_BASELINE_HOURS: u32 = 168;
/// Default score at or above which a binary score counts as the positive class.
pub const DEFAULT_DECISION_THRESHOLD: f64 = 0.5;
/// Most features a configuration may name (bounded like a schema).
pub const MAX_SEGMENT_FEATURES: usize = 4;

/// Threshold of a statistic when the configuration names none: 0.05 for the p-value tests,
/// 0.1 for the distances (Evidently's defaults for every distance, PSI included).
pub fn default_threshold(method: StatMethod) -> f64 {
    if method.uses_p_value() { 0.05 } else { 0.1 }
}

/// The whole monitoring configuration of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Drift statistics and thresholds.
    #[serde(default)]
    pub drift: DriftConfig,
    /// Data-quality settings.
    #[serde(default)]
    pub quality: QualityConfig,
    /// Performance settings.
    #[serde(default)]
    pub performance: PerformanceConfig,
    /// Alert rules on the metrics above (see [`crate::alerts`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertRule>,
    /// How long stored data is kept before it is crypto-shredded (unset: until erased).
    #[serde(default, skip_serializing_if = "RetentionConfig::is_unset")]
    pub retention: RetentionConfig,
}

/// Longest retention a configuration may name, in days (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// How long a model's stored data is kept. Expired days are crypto-shredded by the retention
/// job: the day's data key of that purpose is destroyed and its rows deleted, audited. A day is
/// a UTC day partition; the current day and the `N` days before it are kept, older ones expire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days raw event batches (with their event index) and the labels that arrived on a day
    /// are kept. Unset: kept until the model's data is erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_events_days: Option<u32>,
    /// Days the hourly profiles (the aggregates drift, quality and volume use) are kept; they
    /// may outlive the raw events. Unset: kept until the model's data is erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles_days: Option<u32>,
}

impl RetentionConfig {
    /// Whether nothing is set (the section is then left out of the stored document).
    pub fn is_unset(&self) -> bool {
        self.raw_events_days.is_none() && self.profiles_days.is_none()
    }
}

/// A statistic and its threshold, for one feature or one kind of feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodSetting {
    /// `kolmogorov_smirnov`, `chi_square`, `z_proportion`, `psi`, `jensen_shannon`,
    /// `hellinger`, `kullback_leibler` or `wasserstein`.
    #[schema(value_type = String)]
    pub method: StatMethod,
    /// A p-value level for the tests (drift when `p < threshold`), a distance otherwise (drift
    /// when `statistic >= threshold`). Defaults to [`default_threshold`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// When set, the threshold is instead `mean + k·σ` of the statistic over chunks of the
    /// reference (distances only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_driven_k: Option<f64>,
}

impl MethodSetting {
    /// The statistic with its fixed threshold.
    pub fn choice(&self) -> MethodChoice {
        MethodChoice {
            method: self.method,
            threshold: self.threshold.unwrap_or(default_threshold(self.method)),
        }
    }
}

/// Drift settings. Precedence for a feature: its own entry in `features`, then the setting for
/// its kind (`numeric` / `categorical`), then the default rule
/// ([`MethodChoice::for_column`], Evidently's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// Share of drifted features at which the dataset counts as drifted, in (0, 1].
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    /// Setting for every numeric feature without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<MethodSetting>,
    /// Setting for every categorical feature without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorical: Option<MethodSetting>,
    /// Settings per feature.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, MethodSetting>)]
    pub features: BTreeMap<FieldName, MethodSetting>,
    /// Fields not judged for drift at all (identifiers, pseudonymized keys: fields whose values
    /// are meant to change). They are still profiled and checked for quality.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub exclude: Vec<FieldName>,
}

fn default_drift_share() -> f64 {
    DEFAULT_DRIFT_SHARE
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            drift_share: DEFAULT_DRIFT_SHARE,
            numeric: None,
            categorical: None,
            features: BTreeMap::new(),
            exclude: Vec::new(),
        }
    }
}

impl DriftConfig {
    /// Whether the configuration leaves this field out of drift.
    pub fn excludes(&self, feature: &str) -> bool {
        self.exclude.iter().any(|f| f.as_str() == feature)
    }

    /// The configured setting for a feature, if any (feature first, then its kind).
    pub fn setting(&self, feature: &str, kind: ProfileKind) -> Option<&MethodSetting> {
        self.features
            .iter()
            .find(|(name, _)| name.as_str() == feature)
            .map(|(_, setting)| setting)
            .or(match kind {
                ProfileKind::Numeric => self.numeric.as_ref(),
                ProfileKind::Categorical => self.categorical.as_ref(),
            })
    }

    /// The statistic and fixed threshold a feature uses. `reference_count` and `distinct` feed
    /// the default rule (see [`MethodChoice::for_column`]).
    pub fn choice(
        &self,
        feature: &str,
        kind: ProfileKind,
        reference_count: u64,
        distinct: u64,
    ) -> MethodChoice {
        match self.setting(feature, kind) {
            Some(setting) => setting.choice(),
            None => MethodChoice::for_column(stats_kind(kind), reference_count, distinct),
        }
    }
}

/// Data-quality settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Longest time without a new event before the model counts as stale (freshness).
    #[serde(default = "default_max_silence")]
    pub max_silence_minutes: u32,
    /// `k` of the volume band: an hour is anomalous outside mean ± k·σ of its baseline.
    #[serde(default = "default_volume_k")]
    pub volume_k: f64,
    /// How many past hours form an hour's volume baseline.
    #[serde(default = "default_volume_baseline")]
    pub volume_baseline_hours: u32,
}

fn default_max_silence() -> u32 {
    DEFAULT_MAX_SILENCE_MINUTES
}
fn default_volume_k() -> f64 {
    DEFAULT_VOLUME_K
}
fn default_volume_baseline() -> u32 {
    DEFAULT_VOLUME_BASELINE_HOURS
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            max_silence_minutes: DEFAULT_MAX_SILENCE_MINUTES,
            volume_k: DEFAULT_VOLUME_K,
            volume_baseline_hours: DEFAULT_VOLUME_BASELINE_HOURS,
        }
    }
}

/// Performance settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerformanceConfig {
    /// Score at or above which a `binary_score` prediction counts as the positive class.
    #[serde(default = "default_decision_threshold")]
    pub decision_threshold: f64,
    /// Categorical features to break performance down by (at most
    /// [`MAX_SEGMENT_FEATURES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub segment_by: Vec<FieldName>,
}

fn default_decision_threshold() -> f64 {
    DEFAULT_DECISION_THRESHOLD
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            decision_threshold: DEFAULT_DECISION_THRESHOLD,
            segment_by: Vec::new(),
        }
    }
}

/// Maps the schema's profile kind to the statistics crate's.
pub fn stats_kind(kind: ProfileKind) -> custos_stats::ProfileKind {
    match kind {
        ProfileKind::Numeric => custos_stats::ProfileKind::Numeric,
        ProfileKind::Categorical => custos_stats::ProfileKind::Categorical,
    }
}

fn kind_name(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Numeric => "numeric",
        ProfileKind::Categorical => "categorical",
    }
}

fn check_setting(what: &str, setting: &MethodSetting, errors: &mut Vec<String>) {
    if let Some(threshold) = setting.threshold {
        let fits = if setting.method.uses_p_value() {
            threshold > 0.0 && threshold < 1.0
        } else {
            threshold.is_finite() && threshold > 0.0
        };
        if !fits {
            errors.push(if setting.method.uses_p_value() {
                format!("{what}: a p-value threshold must lie strictly between 0 and 1")
            } else {
                format!("{what}: a distance threshold must be a positive number")
            });
        }
    }
    if let Some(k) = setting.data_driven_k {
        if setting.method.uses_p_value() {
            errors.push(format!(
                "{what}: data-driven thresholds apply to distances, not to p-value tests"
            ));
        } else if !(k.is_finite() && k > 0.0 && k <= 10.0) {
            errors.push(format!("{what}: data_driven_k must lie in (0, 10]"));
        }
    }
}

impl MonitoringConfig {
    /// Checks the configuration against the model's schema; every problem is listed.
    pub fn check(&self, schema: &ModelSchema) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let drift = &self.drift;
        if !(drift.drift_share > 0.0 && drift.drift_share <= 1.0) {
            errors.push("drift.drift_share must lie in (0, 1]".into());
        }
        for (what, setting, kind) in [
            (
                "drift.numeric",
                drift.numeric.as_ref(),
                ProfileKind::Numeric,
            ),
            (
                "drift.categorical",
                drift.categorical.as_ref(),
                ProfileKind::Categorical,
            ),
        ] {
            if let Some(setting) = setting {
                check_setting(what, setting, &mut errors);
                if !setting.method.applies_to(stats_kind(kind)) {
                    errors.push(format!(
                        "{what}: this method does not apply to {} features",
                        kind_name(kind)
                    ));
                }
            }
        }
        for (name, setting) in &drift.features {
            let what = format!("drift.features.{name}");
            check_setting(&what, setting, &mut errors);
            match schema.column(name.as_str()).map(|(_, c)| c.profile_kind()) {
                None => errors.push(format!("{what}: the model has no such field")),
                Some(None) => errors.push(format!(
                    "{what}: the field is not profiled (its masking drops it)"
                )),
                Some(Some(kind)) if !setting.method.applies_to(stats_kind(kind)) => {
                    errors.push(format!(
                        "{what}: this method does not apply to {} features",
                        kind_name(kind)
                    ));
                }
                Some(Some(_)) => {}
            }
        }
        for name in &drift.exclude {
            if schema.column(name.as_str()).is_none() {
                errors.push(format!("drift.exclude: the model has no field '{name}'"));
            }
            if drift.features.contains_key(name) {
                errors.push(format!(
                    "drift.exclude: '{name}' also has a setting in drift.features"
                ));
            }
        }
        let quality = &self.quality;
        if quality.max_silence_minutes == 0 || quality.max_silence_minutes > 60 * 24 * 30 {
            errors.push("quality.max_silence_minutes must lie in 1..=43200".into());
        }
        if !(quality.volume_k.is_finite() && quality.volume_k > 0.0 && quality.volume_k <= 10.0) {
            errors.push("quality.volume_k must lie in (0, 10]".into());
        }
        if !(2..=24 * 90).contains(&quality.volume_baseline_hours) {
            errors.push("quality.volume_baseline_hours must lie in 2..=2160".into());
        }
        errors.extend(crate::alerts::check_rules(&self.alerts, Some(schema)));
        for (what, days) in [
            ("retention.raw_events_days", self.retention.raw_events_days),
            ("retention.profiles_days", self.retention.profiles_days),
        ] {
            if days.is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d)) {
                errors.push(format!("{what} must lie in 1..={MAX_RETENTION_DAYS}"));
            }
        }
        let performance = &self.performance;
        if !(performance.decision_threshold > 0.0 && performance.decision_threshold < 1.0) {
            errors.push("performance.decision_threshold must lie strictly between 0 and 1".into());
        }
        if performance.segment_by.len() > MAX_SEGMENT_FEATURES {
            errors.push(format!(
                "performance.segment_by may name at most {MAX_SEGMENT_FEATURES} features"
            ));
        }
        for name in &performance.segment_by {
            match schema.column(name.as_str()).map(|(_, c)| c.profile_kind()) {
                Some(Some(ProfileKind::Categorical)) => {}
                None => errors.push(format!(
                    "performance.segment_by: the model has no field '{name}'"
                )),
                Some(_) => errors.push(format!(
                    "performance.segment_by: '{name}' is not a profiled categorical field"
                )),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ModelSpec;

    fn schema() -> ModelSchema {
        let spec: ModelSpec = serde_json::from_str(
            r#"{"name": "fraud", "id_field": "id", "timestamp_field": "ts",
                "features": [
                  {"name": "amount", "type": "numeric"},
                  {"name": "country", "type": "categorical"},
                  {"name": "note", "type": "text", "pii": true, "masking": "drop"}],
                "prediction": {"name": "score", "type": "binary_score"}}"#,
        )
        .unwrap();
        ModelSchema::new(spec).unwrap()
    }

    fn config(json: &str) -> MonitoringConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn empty_body_is_the_defaults() {
        let c = config("{}");
        assert_eq!(c, MonitoringConfig::default());
        assert_eq!(c.drift.drift_share, 0.5);
        c.check(&schema()).unwrap();
    }

    #[test]
    fn precedence_feature_then_kind_then_default_rule() {
        let c = config(
            r#"{"drift": {"numeric": {"method": "psi", "threshold": 0.2},
                          "features": {"amount": {"method": "kolmogorov_smirnov"}}}}"#,
        );
        c.check(&schema()).unwrap();
        let amount = c.drift.choice("amount", ProfileKind::Numeric, 10_000, 0);
        assert_eq!(amount.method, StatMethod::KolmogorovSmirnov);
        assert_eq!(amount.threshold, 0.05);
        let score = c.drift.choice("score", ProfileKind::Numeric, 10_000, 0);
        assert_eq!((score.method, score.threshold), (StatMethod::Psi, 0.2));
        let country = c
            .drift
            .choice("country", ProfileKind::Categorical, 10_000, 40);
        assert_eq!(country.method, StatMethod::JensenShannon);
        let small = c.drift.choice("country", ProfileKind::Categorical, 500, 2);
        assert_eq!(small.method, StatMethod::ZProportion);
    }

    #[test]
    fn every_problem_is_listed() {
        let c = config(
            r#"{"drift": {"drift_share": 0,
                          "categorical": {"method": "wasserstein"},
                          "features": {"amount": {"method": "chi_square"},
                                       "ghost": {"method": "psi"},
                                       "note": {"method": "psi"},
                                       "score": {"method": "kolmogorov_smirnov", "threshold": 1.5},
                                       "country": {"method": "chi_square", "data_driven_k": 3}}},
                "quality": {"max_silence_minutes": 0, "volume_k": -1},
                "performance": {"decision_threshold": 1, "segment_by": ["amount"]}}"#,
        );
        let errors = c.check(&schema()).unwrap_err();
        let joined = errors.join("\n");
        for needle in [
            "drift.drift_share",
            "drift.categorical: this method does not apply to categorical",
            "drift.features.amount: this method does not apply to numeric",
            "drift.features.ghost: the model has no such field",
            "drift.features.note: the field is not profiled",
            "drift.features.score: a p-value threshold",
            "drift.features.country: data-driven thresholds apply to distances",
            "quality.max_silence_minutes",
            "quality.volume_k",
            "performance.decision_threshold",
            "performance.segment_by: 'amount' is not a profiled categorical field",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        assert_eq!(errors.len(), 11, "{joined}");
    }

    #[test]
    fn excluded_fields_must_exist_and_not_be_configured() {
        let ok = config(r#"{"drift": {"exclude": ["country"]}}"#);
        ok.check(&schema()).unwrap();
        assert!(ok.drift.excludes("country"));
        assert!(!ok.drift.excludes("amount"));
        let bad = config(
            r#"{"drift": {"exclude": ["ghost", "amount"],
                          "features": {"amount": {"method": "psi"}}}}"#,
        );
        let errors = bad.check(&schema()).unwrap_err().join("\n");
        assert!(
            errors.contains("drift.exclude: the model has no field 'ghost'"),
            "{errors}"
        );
        assert!(errors.contains("'amount' also has a setting"), "{errors}");
    }

    #[test]
    fn unknown_keys_and_methods_are_refused() {
        assert!(serde_json::from_str::<MonitoringConfig>(r#"{"drfit": {}}"#).is_err());
        assert!(
            serde_json::from_str::<MonitoringConfig>(
                r#"{"drift": {"numeric": {"method": "t_test"}}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn round_trips_through_json() {
        let c = config(
            r#"{"drift": {"drift_share": 0.3,
                          "features": {"amount": {"method": "wasserstein", "data_driven_k": 2.5}}},
                "performance": {"segment_by": ["country"]}}"#,
        );
        let again: MonitoringConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }
}
