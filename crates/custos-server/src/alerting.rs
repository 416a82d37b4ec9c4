//! Alerting: the background evaluator that turns each model's metrics into alert states, and the
//! delivery worker that tells people through their channels.
//!
//! Owns: `[alerts]` settings ([`AlertsConfig`]); the evaluation round ([`evaluate_once`]) — under
//! a store lease, so only one replica evaluates when several share a database — which computes
//! the metrics the rules watch, steps every series through [`custos_core::alerts::step`], and
//! saves states, transitions and the notifications they cause in one transaction (the outbox);
//! routing (channel filters, silences, acknowledgements, grouping, repeat intervals); channel
//! specifications and their sealed secrets; and the delivery worker ([`deliver_once`]) with
//! retries and backoff, whose failures stay visible in `GET /api/v1/alert-deliveries`.
//!
//! Metrics are computed from stored hourly sketches exactly as the API serves them (drift,
//! quality, performance), over the `window_hours` hours up to and including the hour of the
//! model's newest event; freshness is measured against the clock, so a silent model alerts.
//! Payloads carry aggregates (values, thresholds, names, rendered annotations), never rows.

use crate::error::ApiError;
use crate::state::{AppState, ModelEntry};
use chrono::{DateTime, Duration, Utc};
use custos_core::alerts::{
    AlertMetric, AlertRule, AlertState, SeriesState, Severity, Span, TemplateContext, Transition,
    render_annotations, step,
};
use custos_core::{HourBucket, ModelName};
use custos_store::{AlertEventRow, AlertSeriesRow, ChannelRow, DeliveryOutcome, DeliveryRow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// The lease name evaluators compete for.
const EVALUATOR_LEASE: &str = "alert-evaluator";
/// Most deliveries one worker pass sends.
const DELIVERIES_PER_PASS: u32 = 50;
/// Longest backoff between two attempts.
const MAX_BACKOFF_SECONDS: i64 = 300;
/// Shortest accepted channel secret (webhook signing key, routing key).
const MIN_SECRET_LEN: usize = 16;
/// Longest accepted channel secret.
const MAX_SECRET_LEN: usize = 2_048;

/// `[alerts]`: how often rules are evaluated and notifications retried.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Seconds between two evaluation rounds.
    pub evaluation_seconds: u32,
    /// Hours of each model's newest traffic that drift, quality and volume are computed over.
    pub window_hours: u32,
    /// Attempts per notification before it is marked failed.
    pub max_attempts: u32,
    /// Seconds one delivery request may take.
    pub delivery_timeout_seconds: u32,
    /// Allow `http://` channel URLs on loopback addresses (local receivers, tests). Any other
    /// plaintext URL is refused.
    pub allow_plaintext_loopback: bool,
    /// Most predictions a window may hold for `performance.*` rules (they read rows back).
    pub max_performance_rows: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            evaluation_seconds: 60,
            window_hours: 24,
            max_attempts: 8,
            delivery_timeout_seconds: 10,
            allow_plaintext_loopback: false,
            max_performance_rows: 100_000,
        }
    }
}

impl AlertsConfig {
    /// Refuses settings that would make the evaluator spin or its work unbounded.
    pub fn check(&self) -> Result<(), String> {
        if self.evaluation_seconds == 0 || self.evaluation_seconds > 86_400 {
            return Err("alerts.evaluation_seconds must lie between 1 and 86400".into());
        }
        if self.window_hours == 0 || self.window_hours > 24 * 31 {
            return Err("alerts.window_hours must lie between 1 and 744".into());
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err("alerts.max_attempts must lie between 1 and 100".into());
        }
        if self.delivery_timeout_seconds == 0 || self.delivery_timeout_seconds > 300 {
            return Err("alerts.delivery_timeout_seconds must lie between 1 and 300".into());
        }
        if self.max_performance_rows > 10_000_000 {
            return Err("alerts.max_performance_rows must be at most 10000000".into());
        }
        Ok(())
    }
}

/// Kinds of notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A JSON POST signed with HMAC-SHA256 over a timestamp and the body; the secret is the
    /// signing key.
    Webhook,
    /// A Slack-compatible incoming webhook; the secret is its URL.
    Slack,
    /// PagerDuty Events API v2; the secret is the routing key.
    Pagerduty,
    /// E-mail over SMTP with TLS required (STARTTLS or implicit); the secret, if any, is the
    /// SMTP password of `username`.
    Email,
}

/// How an e-mail channel reaches its SMTP server. Plaintext SMTP is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// A channel: where notifications go and which alerts it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// The kind.
    pub kind: ChannelKind,
    /// Receiver URL (webhook), or the Events API URL (PagerDuty; default
    /// `https://events.pagerduty.com/v2/enqueue`). Not used by Slack, whose URL is the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Only alerts at least this severe.
    #[serde(default = "lowest_severity")]
    pub min_severity: Severity,
    /// Only these models (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Only alerts whose labels (rule labels plus `model`, `rule`, `severity`) have these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Alerts with equal values of these labels go out in one notification (default: `model`).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// How often a still-firing, unacknowledged alert is sent again.
    #[serde(default = "default_repeat")]
    #[schema(value_type = String)]
    pub repeat_interval: Span,
    /// Whether resolutions are sent too.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// E-mail: the SMTP server's host name (also the name its certificate must carry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_host: Option<String>,
    /// E-mail: the SMTP port (default 587 for STARTTLS, 465 for implicit TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    /// E-mail: STARTTLS (default) or implicit TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_tls: Option<SmtpTls>,
    /// E-mail: a PEM file of the CA that signs the SMTP server's certificate (system roots when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub smtp_ca_file: Option<std::path::PathBuf>,
    /// E-mail: the user to authenticate as (the secret is the password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// E-mail: the sender address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// E-mail: the recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

fn lowest_severity() -> Severity {
    Severity::Info
}

fn default_group_by() -> Vec<String> {
    vec!["model".to_owned()]
}

fn default_repeat() -> Span {
    Span(4 * 3_600)
}

fn yes() -> bool {
    true
}

/// `PUT /api/v1/alert-channels/{name}`: the specification and its secret (write-only: never
/// returned, stored sealed).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChannelPut {
    /// The specification.
    #[serde(flatten)]
    pub spec: ChannelSpec,
    /// The secret: signing key (webhook), incoming-webhook URL (Slack), routing key (PagerDuty),
    /// SMTP password (e-mail with `username`; absent otherwise).
    #[serde(default)]
    pub secret: Option<String>,
}

/// The default PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a channel URL: https, or http on loopback when allowed; no credentials in it.
pub fn check_url(what: &str, raw: &str, config: &AlertsConfig) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|_| format!("{what} is not a valid URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{what} must not carry credentials"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if config.allow_plaintext_loopback && is_loopback_host(&url) => Ok(url),
        "http" => Err(format!(
            "{what} must use https (plain http only to a loopback address with \
             alerts.allow_plaintext_loopback)"
        )),
        _ => Err(format!("{what} must be an https URL")),
    }
}

impl ChannelPut {
    /// Checks the specification and the secret against the channel's kind.
    pub fn check(&self, name: &str, config: &AlertsConfig) -> Result<(), String> {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err("channel name must be 1–64 lowercase letters, digits, '-' or '_'".into());
        }
        let spec = &self.spec;
        let email_fields = spec.smtp_host.is_some()
            || spec.smtp_port.is_some()
            || spec.smtp_tls.is_some()
            || spec.smtp_ca_file.is_some()
            || spec.username.is_some()
            || spec.from.is_some()
            || !spec.to.is_empty();
        if spec.kind != ChannelKind::Email && email_fields {
            return Err("smtp_*, username, from and to belong to e-mail channels only".into());
        }
        match (spec.kind, &spec.url) {
            (ChannelKind::Webhook, None) => return Err("a webhook channel needs 'url'".into()),
            (ChannelKind::Webhook | ChannelKind::Pagerduty, Some(url)) => {
                check_url("url", url, config)?;
            }
            (ChannelKind::Slack, Some(_)) => {
                return Err("a slack channel's URL is its secret: put it in 'secret'".into());
            }
            (ChannelKind::Email, Some(_)) => {
                return Err("an e-mail channel has no 'url': use smtp_host and smtp_port".into());
            }
            (ChannelKind::Slack | ChannelKind::Pagerduty | ChannelKind::Email, None) => {}
        }
        match (spec.kind, &self.secret) {
            (ChannelKind::Email, secret) => {
                check_email(spec)?;
                match (&spec.username, secret) {
                    (Some(_), None) => {
                        return Err(
                            "an e-mail channel with a username needs its password as 'secret'"
                                .into(),
                        );
                    }
                    (None, Some(_)) => {
                        return Err(
                            "an e-mail channel's secret is the password of 'username'".into()
                        );
                    }
                    _ => {}
                }
            }
            (_, None) => return Err("this channel needs a 'secret'".into()),
            (ChannelKind::Slack, Some(secret)) => {
                check_url("secret (the incoming-webhook URL)", secret, config)?;
            }
            (_, Some(_)) => {}
        }
        if let Some(secret) = &self.secret {
            let shortest = if spec.kind == ChannelKind::Email {
                1
            } else {
                MIN_SECRET_LEN
            };
            if secret.len() < shortest || secret.len() > MAX_SECRET_LEN {
                return Err(format!(
                    "secret must be {shortest} to {MAX_SECRET_LEN} bytes"
                ));
            }
        }
        if spec.repeat_interval.seconds() < 60 {
            return Err("repeat_interval must be at least 1m".into());
        }
        if spec.group_by.len() > 10 || spec.match_labels.len() > 20 || spec.models.len() > 1_000 {
            return Err("at most 10 group_by labels, 20 match_labels and 1000 models".into());
        }
        for model in &spec.models {
            ModelName::parse(model).map_err(|e| format!("models: '{model}': {e}"))?;
        }
        Ok(())
    }
}

/// Checks an e-mail channel's SMTP settings and addresses.
fn check_email(spec: &ChannelSpec) -> Result<(), String> {
    let host = spec
        .smtp_host
        .as_deref()
        .ok_or("an e-mail channel needs 'smtp_host'")?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if !host_ok {
        return Err("smtp_host must be a host name or an IP address".into());
    }
    let from = spec
        .from
        .as_deref()
        .ok_or("an e-mail channel needs 'from'")?;
    from.parse::<lettre::message::Mailbox>()
        .map_err(|_| "from is not an e-mail address".to_owned())?;
    if spec.to.is_empty() || spec.to.len() > 50 {
        return Err("an e-mail channel needs 1 to 50 addresses in 'to'".into());
    }
    for (i, to) in spec.to.iter().enumerate() {
        to.parse::<lettre::message::Mailbox>()
            .map_err(|_| format!("to[{i}] is not an e-mail address"))?;
    }
    Ok(())
}

/// Starts the evaluator and the delivery worker.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let holder = crate::context::secret_id().unwrap_or_else(|| "replica".to_owned());
        let every =
            std::time::Duration::from_secs(u64::from(state.config.alerts.evaluation_seconds));
        let client = match delivery_client(&state.config.alerts) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alerts: no HTTP client; notifications are not sent");
                return;
            }
        };
        let mut evaluate = tokio::time::interval(every);
        evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deliver = tokio::time::interval(std::time::Duration::from_secs(1));
        deliver.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = evaluate.tick() => {
                    if let Err(e) = evaluate_once(&state, &holder).await {
                        tracing::warn!(error = ?e, "alert evaluation failed; will retry");
                    }
                }
                _ = deliver.tick() => {
                    if let Err(e) = deliver_once(&state, &client).await {
                        tracing::warn!(error = ?e, "alert delivery pass failed; will retry");
                    }
                }
            }
        }
    })
}

/// The HTTP client notifications go out with: no redirects (a receiver cannot bounce a signed
/// payload elsewhere), a timeout, rustls.
pub fn delivery_client(config: &AlertsConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(u64::from(
            config.delivery_timeout_seconds,
        )))
        .user_agent("custos-alerts")
        .build()
}

/// The metrics one model's rules need, computed once per round.
#[derive(Debug, Default)]
struct Observations {
    /// Per feature: (statistic, drifted).
    drift: BTreeMap<String, (f64, bool)>,
    drift_share: Option<f64>,
    dataset_drift: Option<bool>,
    performance: BTreeMap<String, f64>,
    estimated: BTreeMap<String, f64>,
    /// Per quality measure, per feature.
    quality: BTreeMap<String, BTreeMap<String, f64>>,
    volume: f64,
    silence_minutes: f64,
}

fn number_of(value: &serde_json::Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.get("value").and_then(serde_json::Value::as_f64))
}

async fn observe(
    state: &AppState,
    entry: &ModelEntry,
    rules: &[AlertRule],
    now: DateTime<Utc>,
) -> Result<Observations, ApiError> {
    let config = &state.config.alerts;
    let mut obs = Observations::default();
    let last = state.store.last_event_time(entry.id).await?;
    let silent_since = last.unwrap_or(entry.created_at);
    obs.silence_minutes = (now - silent_since).num_milliseconds().max(0) as f64 / 60_000.0;
    let Some(last) = last else {
        return Ok(obs);
    };
    let end = HourBucket(HourBucket::of(last).0 + 1);
    let start = HourBucket(end.0 - i64::from(config.window_hours));
    let window = (start.start(), end.start());
    let needs = |f: fn(&AlertMetric) -> bool| rules.iter().any(|r| f(&r.metric));

    if needs(AlertMetric::needs_drift) {
        match crate::drift::drift(
            state,
            entry,
            &crate::drift::ReferenceSpec::Uploaded(None),
            window,
            crate::drift::Chunking::None,
        )
        .await
        {
            Ok(drift) => {
                obs.drift_share = Some(drift.drift_share);
                obs.dataset_drift = Some(drift.dataset_drift);
                obs.drift = drift
                    .features
                    .into_iter()
                    .map(|f| (f.feature, (f.statistic, f.drifted)))
                    .collect();
            }
            // No reference yet: drift rules have nothing to compare, their series stay quiet.
            Err(e) if e.status().is_client_error() => {}
            Err(e) => return Err(e),
        }
    }
    let volume: u64 = state
        .store
        .volume(entry.id, start..end)
        .await?
        .into_iter()
        .map(|(_, n)| n)
        .sum();
    obs.volume = volume as f64;
    if needs(|m| matches!(m, AlertMetric::Quality(_))) {
        let quality = crate::quality::quality(state, entry, None, window).await?;
        for f in quality.features {
            let report = &f.report;
            let share_of = |part: &str| {
                report
                    .get(part)
                    .and_then(|o| o.get("share"))
                    .and_then(serde_json::Value::as_f64)
            };
            let (out_of_range, unseen) = (share_of("out_of_range"), share_of("unseen"));
            let measures = [
                (
                    "missing_share",
                    report.get("missing_share").and_then(number_of),
                ),
                (
                    "invalid_share",
                    report.get("invalid_share").and_then(number_of),
                ),
                ("out_of_range_share", out_of_range),
                ("unseen_share", unseen),
            ];
            for (name, value) in measures {
                if let Some(v) = value {
                    obs.quality
                        .entry(name.to_owned())
                        .or_default()
                        .insert(f.feature.clone(), v);
                }
            }
        }
    }
    let cap = config
        .max_performance_rows
        .min(state.config.limits.max_performance_rows as u64);
    if needs(|m| matches!(m, AlertMetric::Performance(_) | AlertMetric::Estimated(_)))
        && volume > 0
        && volume <= cap
    {
        match crate::performance::performance(
            state,
            entry,
            window,
            crate::drift::Chunking::None,
            None,
        )
        .await
        {
            Ok(p) => {
                let flatten = |v: Option<&serde_json::Value>| -> BTreeMap<String, f64> {
                    v.and_then(serde_json::Value::as_object)
                        .map(|o| {
                            o.iter()
                                .filter_map(|(k, v)| number_of(v).map(|n| (k.clone(), n)))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                obs.performance = flatten(p.overall.realized.as_ref());
                obs.estimated = flatten(p.overall.estimated.as_ref());
            }
            Err(e) if e.status().is_client_error() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(obs)
}

/// The rule's series and their values this round: (feature or "", value).
fn samples(rule: &AlertRule, obs: &Observations) -> Vec<(String, Option<f64>)> {
    let per_feature = |map: BTreeMap<&String, f64>| -> Vec<(String, Option<f64>)> {
        match &rule.feature {
            Some(f) => vec![(f.to_string(), map.get(&f.to_string()).copied())],
            None => map.into_iter().map(|(k, v)| (k.clone(), Some(v))).collect(),
        }
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    match &rule.metric {
        AlertMetric::DriftStatistic => {
            per_feature(obs.drift.iter().map(|(k, v)| (k, v.0)).collect())
        }
        AlertMetric::DriftDetected => {
            per_feature(obs.drift.iter().map(|(k, v)| (k, flag(v.1))).collect())
        }
        AlertMetric::Quality(m) => per_feature(
            obs.quality
                .get(m)
                .map(|by_feature| by_feature.iter().map(|(k, v)| (k, *v)).collect())
                .unwrap_or_default(),
        ),
        AlertMetric::DriftShare => vec![(String::new(), obs.drift_share)],
        AlertMetric::DatasetDrift => vec![(String::new(), obs.dataset_drift.map(flag))],
        AlertMetric::Performance(m) => vec![(String::new(), obs.performance.get(m).copied())],
        AlertMetric::Estimated(m) => vec![(String::new(), obs.estimated.get(m).copied())],
        AlertMetric::VolumeRows => vec![(String::new(), Some(obs.volume))],
        AlertMetric::SilenceMinutes => vec![(String::new(), Some(obs.silence_minutes))],
    }
}

/// One alert as notifications describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertNotice {
    /// `firing` or `resolved`.
    pub status: String,
    /// Stable identity of the series: model, rule and feature.
    pub fingerprint: String,
    /// The model.
    pub model: String,
    /// The rule.
    pub rule: String,
    /// The feature, for per-feature metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The metric.
    pub metric: String,
    /// How urgent.
    pub severity: Severity,
    /// The rule's labels plus `model`, `rule`, `severity` (and `feature`).
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// The newest value.
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// When it started firing.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
}

/// What one delivery carries: a group of alerts for one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationPayload {
    /// Payload format version.
    pub version: u32,
    /// `firing` when any alert in it fires, else `resolved`.
    pub status: String,
    /// The channel it is for.
    pub channel: String,
    /// The grouping labels' values.
    pub group: BTreeMap<String, String>,
    /// The alerts.
    pub alerts: Vec<AlertNotice>,
}

fn fingerprint(model: &str, rule: &str, series: &str) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{model}\0{rule}\0{series}"));
    hex::encode(digest.get(..8).unwrap_or_default())
}

fn channel_takes(spec: &ChannelSpec, notice: &AlertNotice) -> bool {
    notice.severity >= spec.min_severity
        && (spec.models.is_empty() || spec.models.contains(&notice.model))
        && spec
            .match_labels
            .iter()
            .all(|(k, v)| notice.labels.get(k) == Some(v))
        && (notice.status == "firing" || spec.send_resolved)
}

/// Parsed channels, skipping (and logging) any whose stored specification no longer reads.
fn parse_channels(rows: &[ChannelRow]) -> Vec<(String, ChannelSpec)> {
    rows.iter()
        .filter_map(
            |row| match serde_json::from_str::<ChannelSpec>(&row.spec_json) {
                Ok(spec) => Some((row.name.clone(), spec)),
                Err(e) => {
                    tracing::warn!(channel = %row.name, error = %e, "alerts: unreadable channel");
                    None
                }
            },
        )
        .collect()
}

/// Groups notices per channel and `group_by` values into delivery payloads.
fn route(
    channels: &[(String, ChannelSpec)],
    notices: &[AlertNotice],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for (name, spec) in channels {
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<AlertNotice>> = BTreeMap::new();
        for notice in notices.iter().filter(|n| channel_takes(spec, n)) {
            let key = spec
                .group_by
                .iter()
                .map(|l| (l.clone(), notice.labels.get(l).cloned().unwrap_or_default()))
                .collect();
            groups.entry(key).or_default().push(notice.clone());
        }
        for (group, alerts) in groups {
            let status = if alerts.iter().any(|a| a.status == "firing") {
                "firing"
            } else {
                "resolved"
            };
            let payload = NotificationPayload {
                version: 1,
                status: status.to_owned(),
                channel: name.clone(),
                group,
                alerts,
            };
            out.push((
                name.clone(),
                serde_json::to_string(&payload).map_err(ApiError::internal)?,
            ));
        }
    }
    Ok(out)
}

fn silenced(silences: &[custos_store::SilenceRow], rule: &str, series: &str) -> bool {
    silences.iter().any(|s| {
        s.rule.as_deref().is_none_or(|r| r == rule)
            && s.series.as_deref().is_none_or(|f| f == series)
    })
}

/// One evaluation round over every model, if this replica holds (or takes) the lease.
/// Returns whether it evaluated.
pub async fn evaluate_once(state: &AppState, holder: &str) -> Result<bool, ApiError> {
    let now = state.clock.now();
    let lease = Duration::seconds(i64::from(state.config.alerts.evaluation_seconds) * 3 + 5);
    if !state
        .store
        .try_lease(EVALUATOR_LEASE, holder, now, now + lease)
        .await?
    {
        return Ok(false);
    }
    let channels = parse_channels(&state.store.channels().await?);
    for row in state.store.list_models().await? {
        let name = ModelName::parse(&row.name)
            .map_err(|e| ApiError::internal(format!("stored model name: {e}")))?;
        let entry = state.model(&name).await?;
        if let Err(e) = evaluate_model(state, &entry, &channels, now).await {
            tracing::warn!(model = %row.name, error = ?e, "alerts: model evaluation failed");
        }
    }
    Ok(true)
}

async fn evaluate_model(
    state: &AppState,
    entry: &ModelEntry,
    channels: &[(String, ChannelSpec)],
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let (config, _) = crate::performance::monitoring_config(state, entry).await?;
    let stored = state.store.alert_series(entry.id).await?;
    if config.alerts.is_empty() && stored.is_empty() {
        return Ok(());
    }
    let model = entry.schema.name().to_string();
    let obs = observe(state, entry, &config.alerts, now).await?;
    let silences = state.store.active_silences(entry.id, now).await?;
    let mut previous: BTreeMap<(String, String), AlertSeriesRow> = stored
        .into_iter()
        .map(|r| ((r.rule.clone(), r.series.clone()), r))
        .collect();
    let mut updates = Vec::new();
    let mut events = Vec::new();
    let mut notices = Vec::new();
    for rule in &config.alerts {
        let mut values = samples(rule, &obs);
        // A series seen before but absent now (a feature without data) is evaluated as missing,
        // so a firing alert resolves instead of hanging.
        let present: BTreeSet<String> = values.iter().map(|(s, _)| s.clone()).collect();
        values.extend(
            previous
                .keys()
                .filter(|(r, s)| *r == rule.name && !present.contains(s))
                .map(|(_, s)| (s.clone(), None))
                .collect::<Vec<_>>(),
        );
        for (series, value) in values {
            let before_row = previous.remove(&(rule.name.clone(), series.clone()));
            let before: SeriesState = before_row
                .as_ref()
                .and_then(|r| serde_json::from_str(&r.state_json).ok())
                .unwrap_or_default();
            let (after, transition) = step(rule, &before, value, now);
            let mut row = AlertSeriesRow {
                model_id: entry.id,
                rule: rule.name.clone(),
                series: series.clone(),
                state: after.state.as_str().to_owned(),
                state_json: serde_json::to_string(&after).map_err(ApiError::internal)?,
                last_notified_at: before_row.as_ref().and_then(|r| r.last_notified_at),
                acknowledged_by: before_row.as_ref().and_then(|r| r.acknowledged_by.clone()),
                acknowledged_at: before_row.as_ref().and_then(|r| r.acknowledged_at),
                updated_at: now,
            };
            if let Some(t) = transition {
                events.push(AlertEventRow {
                    id: 0,
                    model_id: entry.id,
                    rule: rule.name.clone(),
                    series: series.clone(),
                    transition: t.as_str().to_owned(),
                    value: after.value,
                    threshold: after.threshold,
                    at: now,
                });
            }
            if matches!(transition, Some(Transition::Resolved)) {
                row.acknowledged_by = None;
                row.acknowledged_at = None;
            }
            let repeat_due = after.state == AlertState::Firing
                && row.acknowledged_by.is_none()
                && row.last_notified_at.is_some_and(|at| {
                    channels
                        .iter()
                        .map(|(_, c)| i64::from(c.repeat_interval.seconds()))
                        .min()
                        .is_some_and(|s| now - at >= Duration::seconds(s))
                });
            let status = match transition {
                Some(Transition::Firing) => Some("firing"),
                Some(Transition::Resolved) => Some("resolved"),
                _ if repeat_due => Some("firing"),
                _ => None,
            };
            if let Some(status) = status
                && !silenced(&silences, &rule.name, &series)
            {
                let feature = (!series.is_empty()).then(|| series.clone());
                let mut labels = rule.labels.clone();
                labels.insert("model".into(), model.clone());
                labels.insert("alertname".into(), rule.name.clone());
                labels.insert("rule".into(), rule.name.clone());
                labels.insert("severity".into(), rule.severity.as_str().into());
                if let Some(f) = &feature {
                    labels.insert("feature".into(), f.clone());
                }
                notices.push(AlertNotice {
                    status: status.to_owned(),
                    fingerprint: fingerprint(&model, &rule.name, &series),
                    model: model.clone(),
                    rule: rule.name.clone(),
                    feature: feature.clone(),
                    metric: rule.metric.to_string(),
                    severity: rule.severity,
                    labels,
                    annotations: render_annotations(&TemplateContext {
                        model: &model,
                        rule,
                        feature: feature.as_deref(),
                        value: after.value,
                        threshold: after.threshold,
                    }),
                    value: after.value,
                    threshold: after.threshold,
                    starts_at: after.fired_at,
                    ends_at: (status == "resolved").then_some(now),
                });
                row.last_notified_at = Some(now);
            }
            updates.push(row);
        }
    }
    // Series of rules that were removed or renamed: forget them.
    let removed: Vec<(String, String)> = previous.into_keys().collect();
    let deliveries = route(channels, &notices)?;
    if updates.is_empty() && removed.is_empty() {
        return Ok(());
    }
    state
        .store
        .save_alert_round(entry.id, &updates, &removed, &events, &deliveries, now)
        .await?;
    Ok(())
}

fn backoff(attempts: i64) -> Duration {
    Duration::seconds((1_i64 << attempts.clamp(0, 9)).min(MAX_BACKOFF_SECONDS))
}

/// Sends every due delivery once; records each outcome.
pub async fn deliver_once(state: &AppState, client: &reqwest::Client) -> Result<(), ApiError> {
    let now = state.clock.now();
    let due = state.store.due_deliveries(now, DELIVERIES_PER_PASS).await?;
    if due.is_empty() {
        return Ok(());
    }
    let channels: BTreeMap<String, ChannelRow> = state
        .store
        .channels()
        .await?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    for delivery in due {
        let outcome = match channels.get(&delivery.channel) {
            None => DeliveryOutcome::Failed("the channel was deleted".into()),
            Some(channel) => attempt(state, client, channel, &delivery).await,
        };
        let outcome = match outcome {
            DeliveryOutcome::Retry(_, e)
                if delivery.attempts + 1 >= i64::from(state.config.alerts.max_attempts) =>
            {
                DeliveryOutcome::Failed(format!(
                    "gave up after {} attempts: {e}",
                    delivery.attempts + 1
                ))
            }
            other => other,
        };
        if let DeliveryOutcome::Failed(e) = &outcome {
            tracing::warn!(channel = %delivery.channel, delivery = delivery.id, error = %e, "alert notification failed");
        }
        state
            .store
            .record_delivery(delivery.id, &outcome, state.clock.now())
            .await?;
    }
    Ok(())
}

/// Classifies an HTTP answer: 2xx sent; 408, 429 and 5xx retried; anything else failed.
fn classify(status: reqwest::StatusCode, next: DateTime<Utc>) -> DeliveryOutcome {
    if status.is_success() {
        DeliveryOutcome::Sent
    } else if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        DeliveryOutcome::Retry(next, format!("receiver answered {status}"))
    } else {
        DeliveryOutcome::Failed(format!("receiver answered {status}"))
    }
}

async fn attempt(
    state: &AppState,
    client: &reqwest::Client,
    channel: &ChannelRow,
    delivery: &DeliveryRow,
) -> DeliveryOutcome {
    let next = state.clock.now() + backoff(delivery.attempts);
    let spec: ChannelSpec = match serde_json::from_str(&channel.spec_json) {
        Ok(s) => s,
        Err(_) => return DeliveryOutcome::Failed("unreadable channel specification".into()),
    };
    let secret = if channel.secret_sealed.is_none() && spec.kind == ChannelKind::Email {
        zeroize::Zeroizing::new(Vec::new())
    } else {
        match state.keys.open_channel_secret(channel).await {
            Ok(s) => s,
            // The key provider or store may be back on the next pass.
            Err(e) => return DeliveryOutcome::Retry(next, format!("channel secret: {e}")),
        }
    };
    let payload: NotificationPayload = match serde_json::from_str(&delivery.payload_json) {
        Ok(p) => p,
        Err(_) => return DeliveryOutcome::Failed("unreadable payload".into()),
    };
    if spec.kind == ChannelKind::Email {
        return send_email(&spec, &secret, &payload, &state.config.alerts, next).await;
    }
    let requests: Vec<reqwest::RequestBuilder> = match build_requests(
        client,
        &spec,
        &secret,
        delivery,
        &payload,
        state.clock.now().timestamp(),
        &state.config.alerts,
    ) {
        Ok(r) => r,
        Err(e) => return DeliveryOutcome::Failed(e),
    };
    for request in requests {
        match request.send().await {
            Ok(answer) => match classify(answer.status(), next) {
                DeliveryOutcome::Sent => {}
                other => return other,
            },
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                return DeliveryOutcome::Retry(next, why.to_owned());
            }
        }
    }
    DeliveryOutcome::Sent
}

/// The subject and text of an e-mail notification.
fn email_text(payload: &NotificationPayload) -> (String, String) {
    let firing = payload
        .alerts
        .iter()
        .filter(|a| a.status == "firing")
        .count();
    let resolved = payload.alerts.len() - firing;
    let first = payload.alerts.first().map(summary_line).unwrap_or_default();
    let subject = if payload.alerts.len() > 1 {
        format!("[Custos] {firing} firing, {resolved} resolved: {first}")
    } else {
        format!("[Custos] {first}")
    };
    let mut body = String::new();
    for a in &payload.alerts {
        body.push_str(&summary_line(a));
        body.push('\n');
        body.push_str(&format!(
            "  metric {} value {} threshold {}\n",
            a.metric,
            a.value
                .map(|v| v.to_string())
                .unwrap_or_else(|| "n/a".into()),
            a.threshold
                .map(|v| v.to_string())
                .unwrap_or_else(|| "n/a".into()),
        ));
        for (k, v) in &a.annotations {
            body.push_str(&format!("  {k}: {v}\n"));
        }
    }
    (subject, body)
}

/// Sends one e-mail notification; TLS is required (STARTTLS or implicit), never plaintext.
async fn send_email(
    spec: &ChannelSpec,
    password: &[u8],
    payload: &NotificationPayload,
    config: &AlertsConfig,
    next: DateTime<Utc>,
) -> DeliveryOutcome {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let (Some(host), Some(from)) = (spec.smtp_host.as_deref(), spec.from.as_deref()) else {
        return DeliveryOutcome::Failed("e-mail channel without smtp_host or from".into());
    };
    let (subject, body) = email_text(payload);
    let mut message = Message::builder().subject(subject);
    match from.parse() {
        Ok(f) => message = message.from(f),
        Err(_) => return DeliveryOutcome::Failed("from is not an e-mail address".into()),
    }
    for to in &spec.to {
        match to.parse() {
            Ok(t) => message = message.to(t),
            Err(_) => {
                return DeliveryOutcome::Failed("a recipient is not an e-mail address".into());
            }
        }
    }
    let message = match message.body(body) {
        Ok(m) => m,
        Err(_) => return DeliveryOutcome::Failed("the message could not be built".into()),
    };
    let mut tls = TlsParameters::builder(host.to_owned());
    if let Some(ca_file) = &spec.smtp_ca_file {
        let pem = match tokio::fs::read(ca_file).await {
            Ok(p) => p,
            Err(e) => return DeliveryOutcome::Retry(next, format!("smtp_ca_file: {}", e.kind())),
        };
        match Certificate::from_pem(&pem) {
            Ok(c) => tls = tls.add_root_certificate(c),
            Err(_) => {
                return DeliveryOutcome::Failed("smtp_ca_file holds no PEM certificate".into());
            }
        }
    }
    let tls = match tls.build_rustls() {
        Ok(t) => t,
        Err(_) => return DeliveryOutcome::Failed("TLS parameters could not be built".into()),
    };
    let (mode, port) = match spec.smtp_tls.unwrap_or_default() {
        SmtpTls::Starttls => (Tls::Required(tls), 587),
        SmtpTls::Implicit => (Tls::Wrapper(tls), 465),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(spec.smtp_port.unwrap_or(port))
        .tls(mode)
        .timeout(Some(std::time::Duration::from_secs(u64::from(
            config.delivery_timeout_seconds,
        ))));
    if let Some(user) = &spec.username {
        let password = String::from_utf8_lossy(password).into_owned();
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    match transport.build().send(message).await {
        Ok(_) => DeliveryOutcome::Sent,
        Err(e) if e.is_permanent() => DeliveryOutcome::Failed(format!(
            "SMTP server refused: {}",
            e.status().map(|c| c.to_string()).unwrap_or_default()
        )),
        Err(e) if e.is_transient() => DeliveryOutcome::Retry(
            next,
            format!(
                "SMTP server deferred: {}",
                e.status().map(|c| c.to_string()).unwrap_or_default()
            ),
        ),
        Err(e) if e.is_tls() => {
            DeliveryOutcome::Retry(next, "TLS with the SMTP server failed".into())
        }
        Err(_) => DeliveryOutcome::Retry(next, "could not reach the SMTP server".into()),
    }
}

fn summary_line(a: &AlertNotice) -> String {
    let what = a
        .annotations
        .get("summary")
        .cloned()
        .unwrap_or_else(|| format!("{} {}", a.metric, a.feature.clone().unwrap_or_default()));
    format!(
        "[{}] {} / {} ({}): {}",
        a.status.to_uppercase(),
        a.model,
        a.rule,
        a.severity.as_str(),
        what.trim()
    )
}

/// The HTTP requests one delivery makes on its channel.
fn build_requests(
    client: &reqwest::Client,
    spec: &ChannelSpec,
    secret: &[u8],
    delivery: &DeliveryRow,
    payload: &NotificationPayload,
    now_unix: i64,
    config: &AlertsConfig,
) -> Result<Vec<reqwest::RequestBuilder>, String> {
    match spec.kind {
        ChannelKind::Webhook => {
            let url = check_url("url", spec.url.as_deref().unwrap_or_default(), config)?;
            let body = delivery.payload_json.as_bytes().to_vec();
            let signature = custos_crypto::webhook::sign(secret, now_unix, &body);
            Ok(vec![
                client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(custos_crypto::webhook::SIGNATURE_HEADER, signature)
                    .header("custos-delivery", delivery.id.to_string())
                    .body(body),
            ])
        }
        ChannelKind::Slack => {
            let url =
                std::str::from_utf8(secret).map_err(|_| "slack URL is not text".to_owned())?;
            let url = check_url("slack URL", url, config)?;
            let text = payload
                .alerts
                .iter()
                .map(summary_line)
                .collect::<Vec<_>>()
                .join("\n");
            Ok(vec![
                client.post(url).json(&serde_json::json!({ "text": text })),
            ])
        }
        ChannelKind::Pagerduty => {
            let url = check_url(
                "url",
                spec.url.as_deref().unwrap_or(PAGERDUTY_EVENTS_URL),
                config,
            )?;
            let routing_key =
                std::str::from_utf8(secret).map_err(|_| "routing key is not text".to_owned())?;
            Ok(payload
                .alerts
                .iter()
                .map(|a| {
                    let severity = match a.severity {
                        Severity::Critical => "critical",
                        Severity::Warning => "warning",
                        Severity::Info => "info",
                    };
                    client.post(url.clone()).json(&serde_json::json!({
                        "routing_key": routing_key,
                        "event_action": if a.status == "firing" { "trigger" } else { "resolve" },
                        "dedup_key": a.fingerprint,
                        "payload": {
                            "summary": summary_line(a),
                            "source": "custos",
                            "severity": severity,
                            "component": a.model,
                            "custom_details": {
                                "rule": a.rule, "feature": a.feature, "metric": a.metric,
                                "value": a.value, "threshold": a.threshold,
                                "annotations": a.annotations,
                            }
                        }
                    }))
                })
                .collect())
        }
        ChannelKind::Email => Err("e-mail is not sent over HTTP".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(status: &str, severity: Severity, team: &str) -> AlertNotice {
        AlertNotice {
            status: status.into(),
            fingerprint: "f".into(),
            model: "fraud".into(),
            rule: "r".into(),
            feature: None,
            metric: "drift.share".into(),
            severity,
            labels: BTreeMap::from([
                ("model".to_owned(), "fraud".to_owned()),
                ("team".to_owned(), team.to_owned()),
            ]),
            annotations: BTreeMap::new(),
            value: Some(1.0),
            threshold: Some(0.5),
            starts_at: None,
            ends_at: None,
        }
    }

    fn spec(json: serde_json::Value) -> ChannelSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn routing_filters_by_severity_labels_and_groups() {
        let channels = vec![
            (
                "pager".to_owned(),
                spec(
                    serde_json::json!({"kind": "pagerduty", "min_severity": "critical",
                                        "send_resolved": false}),
                ),
            ),
            (
                "team-a".to_owned(),
                spec(
                    serde_json::json!({"kind": "webhook", "url": "https://x.example/",
                                        "match_labels": {"team": "a"}, "group_by": ["team"]}),
                ),
            ),
        ];
        let notices = vec![
            notice("firing", Severity::Critical, "a"),
            notice("firing", Severity::Warning, "a"),
            notice("resolved", Severity::Critical, "b"),
        ];
        let out = route(&channels, &notices).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        let pager: NotificationPayload = serde_json::from_str(&out[0].1).unwrap();
        assert_eq!((out[0].0.as_str(), pager.alerts.len()), ("pager", 1));
        let team: NotificationPayload = serde_json::from_str(&out[1].1).unwrap();
        assert_eq!(team.alerts.len(), 2);
        assert_eq!(team.group["team"], "a");
    }

    #[test]
    fn channel_urls_and_secrets_are_checked() {
        let config = AlertsConfig::default();
        let put = |json: serde_json::Value| serde_json::from_value::<ChannelPut>(json).unwrap();
        let ok = put(
            serde_json::json!({"kind": "webhook", "url": "https://hooks.example/x",
                                         "secret": "0123456789abcdef"}),
        );
        assert_eq!(ok.check("ops", &config), Ok(()));
        let plain = put(
            serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/x",
                                            "secret": "0123456789abcdef"}),
        );
        assert!(plain.check("ops", &config).unwrap_err().contains("https"));
        let loopback = AlertsConfig {
            allow_plaintext_loopback: true,
            ..AlertsConfig::default()
        };
        assert_eq!(plain.check("ops", &loopback), Ok(()));
        let remote = put(
            serde_json::json!({"kind": "webhook", "url": "http://10.0.0.1/x",
                                             "secret": "0123456789abcdef"}),
        );
        assert!(remote.check("ops", &loopback).is_err());
        let creds = put(
            serde_json::json!({"kind": "webhook", "url": "https://u:p@h.example/",
                                            "secret": "0123456789abcdef"}),
        );
        assert!(
            creds
                .check("ops", &config)
                .unwrap_err()
                .contains("credentials")
        );
        let short = put(serde_json::json!({"kind": "pagerduty", "secret": "short"}));
        assert!(
            short
                .check("ops", &config)
                .unwrap_err()
                .contains("secret must be")
        );
        assert!(ok.check("Bad Name", &config).is_err());
        let slack = put(serde_json::json!({"kind": "slack", "secret": "http://hooks.slack.com/x"}));
        assert!(slack.check("s", &config).is_err());
    }

    #[test]
    fn retries_back_off_and_give_up_on_client_errors() {
        assert_eq!(backoff(0), Duration::seconds(1));
        assert_eq!(backoff(3), Duration::seconds(8));
        assert_eq!(backoff(40), Duration::seconds(MAX_BACKOFF_SECONDS));
        let next = Utc::now();
        assert_eq!(
            classify(reqwest::StatusCode::OK, next),
            DeliveryOutcome::Sent
        );
        assert!(matches!(
            classify(reqwest::StatusCode::SERVICE_UNAVAILABLE, next),
            DeliveryOutcome::Retry(..)
        ));
        assert!(matches!(
            classify(reqwest::StatusCode::TOO_MANY_REQUESTS, next),
            DeliveryOutcome::Retry(..)
        ));
        assert!(matches!(
            classify(reqwest::StatusCode::UNAUTHORIZED, next),
            DeliveryOutcome::Failed(..)
        ));
    }
}
