//! The Prometheus endpoint: `GET /metrics` in the OpenMetrics text format, behind `metrics:read`.
//!
//! Owns: the ingest counters the pipeline increments ([`Telemetry`], held in
//! [`AppState::telemetry`]), the background job that computes each model's monitoring results
//! ([`spawn`], [`refresh_once`]), and the scrape handler ([`scrape`]) that turns both, plus a few
//! gauges read at scrape time, into one exposition.
//!
//! Work per scrape is small and fixed: one cheap store query (the newest audit checkpoint, which
//! also times the store), a few semaphore and rate-limiter counters, and the cached results. The
//! monitoring results are **never computed by a scrape**: a background job recomputes them every
//! `[metrics] refresh_seconds`, and a scrape reads its newest cache. The job's work is bounded
//! too: at most `max_models` models (by name), for each the drift of the newest
//! `window_hours` hours — the hours up to and including the model's latest event — against its
//! newest uploaded reference, merged from stored hourly sketches only (at most `window_hours`
//! sketches per feature); and realized performance over the same window only when it holds at
//! most `max_performance_rows` predictions, since that reads rows back.
//!
//! Label cardinality is bounded: `model` labels name registered models only — the results the
//! first `max_models` models by name, the ingest counters the first `max_models` models that
//! ingested since the start (further models are pooled under `(other)`);
//! `feature` labels name declared, profiled features only, at most `max_features` per model;
//! every other label (`kind`, `reason`, `budget`, `metric`) takes values from fixed sets.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use custos_core::{HourBucket, ModelName};
use custos_proto::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The content type of the OpenMetrics text format, version 1.0.0.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `model` label of ingest counters for models beyond `max_models`. Model names cannot
/// contain parentheses, so it never names a real model.
pub const OTHER_MODELS: &str = "(other)";

/// `[metrics]`: how the cached monitoring results are computed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Seconds between two computations of the monitoring results.
    pub refresh_seconds: u32,
    /// Hours of the newest window compared with the reference (ending with the hour of the
    /// model's latest event).
    pub window_hours: u32,
    /// Most models reported with a `model` label.
    pub max_models: u32,
    /// Most features reported per model.
    pub max_features: u32,
    /// Performance is computed only for windows holding at most this many predictions (it reads
    /// them back and joins their labels).
    pub max_performance_rows: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            refresh_seconds: 60,
            window_hours: 24,
            max_models: 100,
            max_features: 100,
            max_performance_rows: 100_000,
        }
    }
}

impl MetricsConfig {
    /// Refuses settings that would make a scrape unbounded or the job spin.
    pub fn check(&self) -> Result<(), String> {
        if self.refresh_seconds == 0 || self.refresh_seconds > 86_400 {
            return Err("metrics.refresh_seconds must lie between 1 and 86400".into());
        }
        if self.window_hours == 0 || self.window_hours > 24 * 31 {
            return Err("metrics.window_hours must lie between 1 and 744".into());
        }
        if self.max_models == 0 || self.max_models > 10_000 {
            return Err("metrics.max_models must lie between 1 and 10000".into());
        }
        if self.max_features == 0 || self.max_features > 1_000 {
            return Err("metrics.max_features must lie between 1 and 1000".into());
        }
        if self.max_performance_rows > 10_000_000 {
            return Err("metrics.max_performance_rows must be at most 10000000".into());
        }
        Ok(())
    }
}

/// What an ingest request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestKind {
    /// `POST …/predictions`.
    Predictions,
    /// `POST …/labels`.
    Labels,
}

impl IngestKind {
    fn as_str(self) -> &'static str {
        match self {
            IngestKind::Predictions => "predictions",
            IngestKind::Labels => "labels",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngestLabels {
    model: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    model: String,
    feature: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PerformanceLabels {
    model: String,
    metric: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    budget: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrackedKeyLabels {
    budget: &'static str,
    key: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The reason label of a refused ingest request: one value per error code, so the set is fixed
/// by the type.
fn reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthenticated => "unauthenticated",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::NotFound => "not_found",
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::InvalidRows => "invalid_rows",
        ErrorCode::InvalidFile => "invalid_file",
        ErrorCode::Conflict => "conflict",
        ErrorCode::PayloadTooLarge => "payload_too_large",
        ErrorCode::TooManyRows => "too_many_rows",
        ErrorCode::RateLimited => "overloaded",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::Internal => "internal",
    }
}

/// One model's monitoring results, as the background job last computed them.
#[derive(Debug, Clone, Default)]
struct ModelResults {
    name: String,
    last_event: Option<DateTime<Utc>>,
    /// (feature, statistic, threshold, drifted), at most `max_features`.
    features: Vec<(String, f64, f64, bool)>,
    /// (share of drifted features, dataset verdict), when drift could be computed.
    dataset: Option<(f64, bool)>,
    /// (metric name, value, labelled rows), when labels exist in the window.
    performance: Option<(&'static str, f64, u64)>,
}

/// Every model's results and when they were computed.
#[derive(Debug, Clone, Default)]
struct Results {
    computed_at: Option<DateTime<Utc>>,
    duration: Duration,
    models: Vec<ModelResults>,
    omitted_models: usize,
}

/// Counters the request paths increment, and the cache the background job fills.
#[derive(Debug)]
pub struct Telemetry {
    max_models: usize,
    max_features: usize,
    labelled_models: Mutex<BTreeSet<String>>,
    rows: Family<IngestLabels, Counter>,
    duplicates: Family<ModelLabels, Counter>,
    invalid_rows: Family<ModelLabels, Counter>,
    rejected: Family<RejectionLabels, Counter>,
    commit_seconds: Histogram,
    refresh_failures: Counter,
    results: RwLock<Arc<Results>>,
}

impl Telemetry {
    /// Empty counters bounded by `config`.
    pub fn new(config: &MetricsConfig) -> Self {
        Self {
            max_models: config.max_models as usize,
            max_features: config.max_features as usize,
            labelled_models: Mutex::new(BTreeSet::new()),
            rows: Family::default(),
            duplicates: Family::default(),
            invalid_rows: Family::default(),
            rejected: Family::default(),
            // 1 ms … about 16 s: an SQLite commit is milliseconds, a stalled disk is seconds.
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            refresh_failures: Counter::default(),
            results: RwLock::new(Arc::new(Results::default())),
        }
    }

    /// The `model` label for a registered model: its name while fewer than `max_models` names
    /// are in use, otherwise [`OTHER_MODELS`]. Callers pass only names of registered models.
    fn model_label(&self, model: &ModelName) -> String {
        let mut known = self
            .labelled_models
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.contains(model.as_str()) {
            return model.as_str().to_owned();
        }
        if known.len() < self.max_models {
            known.insert(model.as_str().to_owned());
            return model.as_str().to_owned();
        }
        OTHER_MODELS.to_owned()
    }

    /// Rows of an accepted batch: `accepted` stored, `duplicates` already there.
    pub fn ingested(&self, model: &ModelName, kind: IngestKind, accepted: u64, duplicates: u64) {
        let label = self.model_label(model);
        self.rows
            .get_or_create(&IngestLabels {
                model: label.clone(),
                kind: kind.as_str(),
            })
            .inc_by(accepted);
        if duplicates > 0 {
            self.duplicates
                .get_or_create(&ModelLabels { model: label })
                .inc_by(duplicates);
        }
    }

    /// Rows that failed validation (the whole batch was refused).
    pub fn invalid_rows(&self, model: &ModelName, rows: u64) {
        let model = self.model_label(model);
        self.invalid_rows
            .get_or_create(&ModelLabels { model })
            .inc_by(rows);
    }

    /// An ingest request answered with an error.
    pub fn rejected(&self, kind: IngestKind, error: &ApiError) {
        self.rejected
            .get_or_create(&RejectionLabels {
                kind: kind.as_str(),
                reason: reason(error.code()),
            })
            .inc();
    }

    /// How long one ingest commit took in the store.
    pub fn observe_commit(&self, elapsed: Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    fn results(&self) -> Arc<Results> {
        Arc::clone(&self.results.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn store_results(&self, results: Results) {
        *self.results.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(results);
    }
}

/// Starts the job that recomputes the monitoring results every `[metrics] refresh_seconds`
/// (first at once, so a fresh server has results by its first scrape or soon after).
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(u64::from(state.config.metrics.refresh_seconds));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = refresh_once(&state).await {
                state.telemetry.refresh_failures.inc();
                tracing::warn!(error = ?e, "metrics refresh failed; will retry");
            }
        }
    })
}

/// Headline performance: ROC AUC where scores exist, else accuracy; RMSE for regression.
fn headline(realized: &serde_json::Value) -> Option<(&'static str, f64)> {
    ["roc_auc", "accuracy", "rmse"]
        .into_iter()
        .find_map(|name| realized.get(name)?.as_f64().map(|v| (name, v)))
}

/// One model's results. A model without traffic has only its name; drift needs an uploaded
/// reference and performance needs labels, and either is left out when missing.
async fn model_results(state: &AppState, name: &str) -> Result<ModelResults, ApiError> {
    let config = &state.config.metrics;
    let model_name = ModelName::parse(name)
        .map_err(|e| ApiError::internal(format!("stored model name: {e}")))?;
    let entry = state.model(&model_name).await?;
    let mut results = ModelResults {
        name: name.to_owned(),
        last_event: state.store.last_event_time(entry.id).await?,
        ..ModelResults::default()
    };
    let Some(last) = results.last_event else {
        return Ok(results);
    };
    let end = HourBucket(HourBucket::of(last).0 + 1);
    let start = HourBucket(end.0 - i64::from(config.window_hours));
    let window = (start.start(), end.start());
    match crate::drift::drift(
        state,
        &entry,
        &crate::drift::ReferenceSpec::Uploaded(None),
        window,
        crate::drift::Chunking::None,
    )
    .await
    {
        Ok(drift) => {
            results.dataset = Some((drift.drift_share, drift.dataset_drift));
            results.features = drift
                .features
                .into_iter()
                .take(state.telemetry.max_features)
                .map(|f| (f.feature, f.statistic, f.threshold, f.drifted))
                .collect();
        }
        // No uploaded reference yet is the common case, not a failure.
        Err(e) if e.status().is_client_error() => {}
        Err(e) => return Err(e),
    }
    let predictions: u64 = state
        .store
        .volume(entry.id, start..end)
        .await?
        .into_iter()
        .map(|(_, n)| n)
        .sum();
    // Performance reads the window's rows back: only small windows, and never more than a
    // performance request may read.
    let cap = config
        .max_performance_rows
        .min(state.config.limits.max_performance_rows as u64);
    if predictions > 0 && predictions <= cap {
        match crate::performance::performance(
            state,
            &entry,
            window,
            crate::drift::Chunking::None,
            None,
        )
        .await
        {
            Ok(performance) => {
                results.performance = performance
                    .overall
                    .realized
                    .as_ref()
                    .and_then(headline)
                    .map(|(metric, value)| (metric, value, performance.overall.labelled));
            }
            Err(e) if e.status().is_client_error() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(results)
}

/// Recomputes every reported model's results and replaces the cache. A model whose results
/// fail is logged and left out of this round; the others are still reported.
pub async fn refresh_once(state: &AppState) -> Result<(), ApiError> {
    let started = Instant::now();
    let models = state.store.list_models().await?;
    let max = state.telemetry.max_models;
    let omitted_models = models.len().saturating_sub(max);
    let mut results = Vec::with_capacity(models.len().min(max));
    for row in models.into_iter().take(max) {
        match model_results(state, &row.name).await {
            Ok(r) => results.push(r),
            Err(e) => {
                state.telemetry.refresh_failures.inc();
                tracing::warn!(model = %row.name, error = ?e, "metrics: model results failed");
            }
        }
    }
    state.telemetry.store_results(Results {
        computed_at: Some(state.clock.now()),
        duration: started.elapsed(),
        models: results,
        omitted_models,
    });
    Ok(())
}

fn seconds_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> f64 {
    (later - earlier).num_milliseconds() as f64 / 1000.0
}

fn gauge(value: f64) -> FloatGauge {
    let g = FloatGauge::default();
    g.set(value);
    g
}

fn bool_gauge(value: bool) -> Gauge {
    let g = Gauge::default();
    g.set(i64::from(value));
    g
}

fn int_gauge(value: usize) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    g
}

/// The server's own health: ingest counters, queue depth, store latency, audit checkpoint age,
/// rate-limit refusals.
async fn register_health(registry: &mut Registry, state: &AppState) {
    let t = &state.telemetry;
    registry.register(
        "ingest_rows",
        "Rows stored by accepted ingest requests, per model and kind (predictions, labels)",
        t.rows.clone(),
    );
    registry.register(
        "ingest_duplicate_rows",
        "Prediction rows skipped because their event was already stored (client retries)",
        t.duplicates.clone(),
    );
    registry.register(
        "ingest_invalid_rows",
        "Rows that failed validation; their whole batch was refused",
        t.invalid_rows.clone(),
    );
    registry.register(
        "ingest_rejected_requests",
        "Ingest requests answered with an error, by kind and error code",
        t.rejected.clone(),
    );
    registry.register_with_unit(
        "store_commit",
        "Time of ingest commits in the store",
        Unit::Seconds,
        t.commit_seconds.clone(),
    );

    let limits = &state.config.limits;
    let admitted = (limits.max_concurrent_ingest * 2)
        .saturating_sub(state.ingest_admission.available_permits());
    let busy = limits
        .max_concurrent_ingest
        .saturating_sub(state.ingest_workers.available_permits());
    registry.register(
        "ingest_queue_depth",
        "Ingest requests admitted and not yet answered (working or waiting for a worker)",
        int_gauge(admitted),
    );
    registry.register(
        "ingest_queue_capacity",
        "Ingest requests admitted at most; beyond it ingest answers 429",
        int_gauge(limits.max_concurrent_ingest * 2),
    );
    registry.register(
        "ingest_workers_busy",
        "Ingest requests being processed now",
        int_gauge(busy),
    );

    // One cheap indexed query: the newest signed checkpoint. Its time is the store's latency as
    // a scrape sees it, and its row gives the checkpoint's age.
    let asked = Instant::now();
    let checkpoint = state.store.latest_audit_checkpoint().await;
    let elapsed = asked.elapsed();
    registry.register(
        "store_up",
        "Whether the store answered the scrape's query",
        bool_gauge(checkpoint.is_ok()),
    );
    registry.register_with_unit(
        "store_query",
        "Time of the scrape's store query (the newest audit checkpoint)",
        Unit::Seconds,
        gauge(elapsed.as_secs_f64()),
    );
    match checkpoint {
        Ok(Some(row)) => {
            registry.register_with_unit(
                "audit_checkpoint_age",
                "Time since the newest signed audit checkpoint",
                Unit::Seconds,
                gauge(seconds_between(row.signed_at, state.clock.now())),
            );
            registry.register(
                "audit_checkpoint_tree_size",
                "Audit log entries covered by the newest signed checkpoint",
                gauge(row.tree_size as f64),
            );
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "metrics: the store did not answer"),
    }

    let limits = state.rate_limits.snapshot();
    let rejected = Family::<BudgetLabels, Counter>::default();
    let tracked = Family::<TrackedKeyLabels, Gauge>::default();
    for (budget, stats) in [
        ("sign_in", limits.sign_in),
        ("ingest", limits.ingest),
        ("read", limits.read),
        ("reveal", limits.reveal),
    ] {
        rejected
            .get_or_create(&BudgetLabels { budget })
            .inc_by(stats.rejected);
        for (key, n) in [
            ("principal", stats.tracked_principals),
            ("ip", stats.tracked_ips),
        ] {
            tracked
                .get_or_create(&TrackedKeyLabels { budget, key })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    registry.register(
        "rate_limit_rejected_requests",
        "Requests refused with 429 by a rate-limit budget (sign_in, ingest, read)",
        rejected,
    );
    registry.register(
        "rate_limit_tracked_keys",
        "Principals and client addresses a rate-limit budget currently tracks",
        tracked,
    );
}

/// The cached monitoring results.
fn register_results(registry: &mut Registry, state: &AppState) {
    let results = state.telemetry.results();
    let now = state.clock.now();
    registry.register(
        "metrics_refresh_failures",
        "Failed computations of the monitoring results (whole rounds or single models)",
        state.telemetry.refresh_failures.clone(),
    );
    if let Some(at) = results.computed_at {
        registry.register_with_unit(
            "metrics_results_age",
            "Time since the monitoring results below were computed",
            Unit::Seconds,
            gauge(seconds_between(at, now)),
        );
        registry.register_with_unit(
            "metrics_refresh_duration",
            "Time the last computation of the monitoring results took",
            Unit::Seconds,
            gauge(results.duration.as_secs_f64()),
        );
    }
    registry.register(
        "metrics_models_omitted",
        "Registered models left out of the results (beyond metrics.max_models)",
        int_gauge(results.omitted_models),
    );
    let last_event = Family::<ModelLabels, FloatGauge>::default();
    let freshness = Family::<ModelLabels, FloatGauge>::default();
    let statistic = Family::<FeatureLabels, FloatGauge>::default();
    let threshold = Family::<FeatureLabels, FloatGauge>::default();
    let drifted = Family::<FeatureLabels, Gauge>::default();
    let share = Family::<ModelLabels, FloatGauge>::default();
    let dataset = Family::<ModelLabels, Gauge>::default();
    let performance = Family::<PerformanceLabels, FloatGauge>::default();
    let labelled = Family::<ModelLabels, Gauge>::default();
    for model in &results.models {
        let m = || ModelLabels {
            model: model.name.clone(),
        };
        if let Some(at) = model.last_event {
            last_event
                .get_or_create(&m())
                .set(at.timestamp_millis() as f64 / 1000.0);
            freshness
                .get_or_create(&m())
                .set(seconds_between(at, now).max(0.0));
        }
        for (feature, stat, limit, verdict) in &model.features {
            let f = FeatureLabels {
                model: model.name.clone(),
                feature: feature.clone(),
            };
            statistic.get_or_create(&f).set(*stat);
            threshold.get_or_create(&f).set(*limit);
            drifted.get_or_create(&f).set(i64::from(*verdict));
        }
        if let Some((ratio, verdict)) = model.dataset {
            share.get_or_create(&m()).set(ratio);
            dataset.get_or_create(&m()).set(i64::from(verdict));
        }
        if let Some((metric, value, rows)) = model.performance {
            performance
                .get_or_create(&PerformanceLabels {
                    model: model.name.clone(),
                    metric,
                })
                .set(value);
            labelled
                .get_or_create(&m())
                .set(i64::try_from(rows).unwrap_or(i64::MAX));
        }
    }
    registry.register_with_unit(
        "model_last_event_timestamp",
        "Event time of the model's latest ingested prediction (Unix time)",
        Unit::Seconds,
        last_event,
    );
    registry.register_with_unit(
        "model_freshness",
        "Time since the model's latest ingested event",
        Unit::Seconds,
        freshness,
    );
    registry.register(
        "drift_statistic",
        "Drift statistic of a feature: the newest window against the newest uploaded reference",
        statistic,
    );
    registry.register(
        "drift_threshold",
        "Threshold the feature's drift statistic is judged against",
        threshold,
    );
    registry.register(
        "drift_detected",
        "Whether the feature drifted in the newest window (1) or not (0)",
        drifted,
    );
    registry.register(
        "dataset_drift_share",
        "Share of the model's features that drifted in the newest window",
        share,
    );
    registry.register(
        "dataset_drift_detected",
        "Whether the model's dataset drifted in the newest window (1) or not (0)",
        dataset,
    );
    registry.register(
        "performance",
        "Realized headline performance in the newest window (roc_auc, accuracy or rmse)",
        performance,
    );
    registry.register(
        "performance_labelled_rows",
        "Predictions of the newest window with a label, behind the performance value",
        labelled,
    );
}

/// `GET /metrics`: the exposition. Access (`metrics:read` on `*`) was decided by the choke point.
pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut registry = Registry::with_prefix("custos");
    register_health(&mut registry, &state).await;
    register_results(&mut registry, &state);
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry)
        .map_err(|e| ApiError::internal(format!("metrics encoding: {e}")))?;
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_labels_are_bounded() {
        let t = Telemetry::new(&MetricsConfig {
            max_models: 2,
            ..MetricsConfig::default()
        });
        let name = |s: &str| ModelName::parse(s).unwrap();
        assert_eq!(t.model_label(&name("a")), "a");
        assert_eq!(t.model_label(&name("b")), "b");
        assert_eq!(t.model_label(&name("c")), OTHER_MODELS);
        assert_eq!(t.model_label(&name("a")), "a");
        assert!(ModelName::parse(OTHER_MODELS).is_err());
    }

    #[test]
    fn every_error_code_has_a_reason_and_headlines_prefer_auc() {
        let v = serde_json::json!({"roc_auc": 0.8, "accuracy": 0.9});
        assert_eq!(headline(&v), Some(("roc_auc", 0.8)));
        let v = serde_json::json!({"roc_auc": null, "accuracy": 0.9});
        assert_eq!(headline(&v), Some(("accuracy", 0.9)));
        assert_eq!(
            headline(&serde_json::json!({"rmse": 2.0})),
            Some(("rmse", 2.0))
        );
        assert_eq!(reason(ErrorCode::InvalidRows), "invalid_rows");
    }

    #[test]
    fn config_bounds() {
        assert!(MetricsConfig::default().check().is_ok());
        for bad in [
            MetricsConfig {
                refresh_seconds: 0,
                ..MetricsConfig::default()
            },
            MetricsConfig {
                max_models: 0,
                ..MetricsConfig::default()
            },
            MetricsConfig {
                window_hours: 10_000,
                ..MetricsConfig::default()
            },
        ] {
            assert!(bad.check().is_err());
        }
    }
}
