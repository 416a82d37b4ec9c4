//! The alerting routes: a model's alert rules, states, history and silences, acknowledgement,
//! and the instance's notification channels and deliveries.
//!
//! Owns request parsing and answers only. Rule changes go through the one monitoring-change
//! path (`history_api::apply_monitoring_change`): a new configuration version with its author,
//! reason, before/after audit and the two-person rule, so `alerts:write` — which a CI/CD token
//! may hold for one model — changes the `alerts` section and nothing else. Channel secrets are
//! sealed before they reach the store and are never returned.

use crate::alerting::{ChannelPut, ChannelSpec};
use crate::api::{body, model_name, parse_json};
use crate::auth::{Authorized, audit_for};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use custos_core::alerts::{AlertRule, SeriesState, Span};
use custos_store::{ChannelRow, SilenceRow, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most transitions `GET …/alerts` returns.
const EVENTS_SHOWN: u32 = 200;
/// Longest silence.
const MAX_SILENCE_SECONDS: u32 = 30 * 86_400;

/// `PUT /api/v1/models/{model}/alerts`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRulesBody {
    /// The model's rules; replaces them all.
    pub rules: Vec<AlertRule>,
}

/// One series of a rule and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertSeriesBody {
    /// The rule.
    pub rule: String,
    /// The feature, for per-feature metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// `inactive`, `pending` or `firing`.
    pub state: String,
    /// The newest value.
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// Since when the condition has held.
    pub active_since: Option<DateTime<Utc>>,
    /// When it last fired.
    pub fired_at: Option<DateTime<Utc>>,
    /// When it last resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who acknowledged the current firing.
    pub acknowledged_by: Option<String>,
    /// When it was last evaluated.
    pub evaluated_at: DateTime<Utc>,
}

/// One transition.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertEventBody {
    /// The rule.
    pub rule: String,
    /// The feature, for per-feature metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// `pending`, `firing`, `resolved` or `cleared`.
    pub transition: String,
    /// The value.
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: Option<f64>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A silence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SilenceBody {
    /// Id.
    pub id: i64,
    /// Only this rule, when set.
    pub rule: Option<String>,
    /// Only this feature, when set.
    pub feature: Option<String>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
}

/// `GET /api/v1/models/{model}/alerts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertsBody {
    /// The model.
    pub model: String,
    /// The rules in force (from the monitoring configuration).
    pub rules: Vec<AlertRule>,
    /// Every series of those rules.
    pub series: Vec<AlertSeriesBody>,
    /// Newest transitions first.
    pub events: Vec<AlertEventBody>,
    /// Silences in force.
    pub silences: Vec<SilenceBody>,
}

fn feature(series: String) -> Option<String> {
    (!series.is_empty()).then_some(series)
}

/// A model's alert rules, the state of each series, recent transitions and silences.
#[utoipa::path(get, path = "/api/v1/models/{model}/alerts", params(("model" = String, Path)),
    responses((status = 200, body = AlertsBody)))]
pub async fn get_alerts(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<AlertsBody>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    let (config, _) = crate::performance::monitoring_config(&state, &entry).await?;
    let now = state.clock.now();
    let series = state
        .store
        .alert_series(entry.id)
        .await?
        .into_iter()
        .map(|row| {
            let s: SeriesState = serde_json::from_str(&row.state_json).unwrap_or_default();
            AlertSeriesBody {
                rule: row.rule,
                feature: feature(row.series),
                state: row.state,
                value: s.value,
                threshold: s.threshold,
                active_since: s.active_since,
                fired_at: s.fired_at,
                resolved_at: s.resolved_at,
                acknowledged_by: row.acknowledged_by,
                evaluated_at: row.updated_at,
            }
        })
        .collect();
    let events = state
        .store
        .alert_events(entry.id, EVENTS_SHOWN)
        .await?
        .into_iter()
        .map(|e| AlertEventBody {
            rule: e.rule,
            feature: feature(e.series),
            transition: e.transition,
            value: e.value,
            threshold: e.threshold,
            at: e.at,
        })
        .collect();
    let silences = state
        .store
        .active_silences(entry.id, now)
        .await?
        .into_iter()
        .map(|s| SilenceBody {
            id: s.id,
            rule: s.rule,
            feature: s.series,
            ends_at: s.ends_at,
            comment: s.comment,
            created_by: s.created_by,
        })
        .collect();
    Ok(Json(AlertsBody {
        model: entry.schema.name().to_string(),
        rules: config.alerts,
        series,
        events,
        silences,
    }))
}

/// Replaces the model's alert rules: a new monitoring configuration version that differs from
/// the one in force only in its `alerts` section (audited as `alerts.update`, with the
/// two-person rule for a removed or loosened rule).
#[utoipa::path(put, path = "/api/v1/models/{model}/alerts",
    params(("model" = String, Path), crate::history_api::ReasonQuery),
    request_body = AlertRulesBody,
    responses((status = 200, body = custos_proto::MonitoringConfigBody),
              (status = 400, body = custos_proto::ErrorBody)))]
pub async fn put_alerts(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<crate::history_api::ReasonQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let rules: AlertRulesBody = parse_json(&raw)?;
    let entry = state.model(&model_name(&model)?).await?;
    let (mut config, _) = crate::performance::monitoring_config(&state, &entry).await?;
    config.alerts = rules.rules;
    let reason = crate::history_api::clean_reason(q.reason)?;
    crate::history_api::apply_monitoring_change(
        &state,
        &ctx,
        &who,
        &entry,
        config,
        reason,
        "alerts.update",
    )
    .await
}

/// `POST /api/v1/models/{model}/alerts/acknowledge`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeBody {
    /// The rule.
    pub rule: String,
    /// The feature, for per-feature rules.
    #[serde(default)]
    pub feature: Option<String>,
}

/// Acknowledges a firing alert: repeat notifications stop until it resolves. Audited.
#[utoipa::path(post, path = "/api/v1/models/{model}/alerts/acknowledge",
    params(("model" = String, Path)), request_body = AcknowledgeBody,
    responses((status = 204), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let ack: AcknowledgeBody = parse_json(&raw)?;
    let entry = state.model(&model_name(&model)?).await?;
    let name = entry.schema.name().to_string();
    let series = ack.feature.clone().unwrap_or_default();
    let actor = crate::auth::Actor::of(&who.principal).id;
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "alert.acknowledge",
        format!("model/{name}"),
        serde_json::json!({ "rule": ack.rule, "feature": ack.feature }),
    );
    match state
        .store
        .acknowledge_alert(
            entry.id,
            &ack.rule,
            &series,
            &actor,
            state.clock.now(),
            &audit,
        )
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::not_found("firing alert")),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/v1/models/{model}/silences`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Only this rule (all of the model's when absent).
    #[serde(default)]
    pub rule: Option<String>,
    /// Only this feature.
    #[serde(default)]
    pub feature: Option<String>,
    /// How long, e.g. `2h` (at most 30d).
    #[schema(value_type = String)]
    pub duration: Span,
    /// Why (required, 1–500 characters).
    pub comment: String,
}

/// Silences a model's notifications (all, one rule, or one series) for a while; evaluation
/// goes on and states stay visible. Audited.
#[utoipa::path(post, path = "/api/v1/models/{model}/silences",
    params(("model" = String, Path)), request_body = SilenceRequest,
    responses((status = 201, body = SilenceBody), (status = 400, body = custos_proto::ErrorBody)))]
pub async fn add_silence(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SilenceBody>), ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let request: SilenceRequest = parse_json(&raw)?;
    let seconds = request.duration.seconds();
    if seconds == 0 || seconds > MAX_SILENCE_SECONDS {
        return Err(ApiError::bad_request(
            "duration must lie between 1s and 30d",
        ));
    }
    let comment = request.comment.trim();
    if comment.is_empty() || comment.chars().count() > 500 || comment.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "comment must be 1 to 500 characters without control characters",
        ));
    }
    let entry = state.model(&model_name(&model)?).await?;
    let name = entry.schema.name().to_string();
    let now = state.clock.now();
    let row = SilenceRow {
        id: 0,
        model_id: entry.id,
        rule: request.rule.clone(),
        series: request.feature.clone(),
        ends_at: now + Duration::seconds(i64::from(seconds)),
        comment: comment.to_owned(),
        created_by: crate::auth::Actor::of(&who.principal).id,
        created_at: now,
    };
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "alert.silence",
        format!("model/{name}"),
        serde_json::json!({
            "rule": request.rule, "feature": request.feature,
            "ends_at": row.ends_at.to_rfc3339(),
        }),
    );
    let id = state.store.add_silence(&row, &audit).await?;
    Ok((
        StatusCode::CREATED,
        Json(SilenceBody {
            id,
            rule: row.rule,
            feature: row.series,
            ends_at: row.ends_at,
            comment: row.comment,
            created_by: row.created_by,
        }),
    ))
}

/// A channel as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelBody {
    /// Its name.
    pub name: String,
    /// The specification.
    #[serde(flatten)]
    pub spec: ChannelSpec,
    /// Whether a secret is stored (it is never shown).
    pub has_secret: bool,
    /// Who last changed it.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/v1/alert-channels`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    /// Every channel, by name.
    pub channels: Vec<ChannelBody>,
}

/// Every notification channel (secrets are never returned).
#[utoipa::path(get, path = "/api/v1/alert-channels", responses((status = 200, body = ChannelList)))]
pub async fn list_channels(State(state): State<AppState>) -> Result<Json<ChannelList>, ApiError> {
    let channels = state
        .store
        .channels()
        .await?
        .into_iter()
        .filter_map(|row| {
            let spec = serde_json::from_str(&row.spec_json).ok()?;
            Some(ChannelBody {
                name: row.name,
                spec,
                has_secret: row.secret_sealed.is_some(),
                updated_by: row.updated_by,
                updated_at: row.updated_at,
            })
        })
        .collect();
    Ok(Json(ChannelList { channels }))
}

/// Creates or replaces a channel. Its secret is sealed under a key of its own, wrapped by the
/// key-encryption key; the audit record names the channel and its kind, never the secret.
#[utoipa::path(put, path = "/api/v1/alert-channels/{name}", params(("name" = String, Path)),
    request_body = ChannelPut,
    responses((status = 200, body = ChannelBody), (status = 400, body = custos_proto::ErrorBody)))]
pub async fn put_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ChannelBody>, ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let put: ChannelPut = parse_json(&raw)?;
    put.check(&name, &state.config.alerts)
        .map_err(ApiError::bad_request)?;
    let sealed = match &put.secret {
        Some(secret) => Some(
            state
                .keys
                .seal_channel_secret(&name, secret.as_bytes())
                .map_err(ApiError::internal)?,
        ),
        None => None,
    };
    let now = state.clock.now();
    let row = ChannelRow {
        name: name.clone(),
        spec_json: serde_json::to_string(&put.spec).map_err(ApiError::internal)?,
        secret_sealed: sealed.as_ref().map(|(_, s)| s.clone()),
        updated_by: crate::auth::Actor::of(&who.principal).id,
        updated_at: now,
    };
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "alert_channel.put",
        format!("alert-channel/{name}"),
        serde_json::json!({ "kind": put.spec.kind, "url": put.spec.url }),
    );
    state
        .store
        .put_channel(&row, sealed.as_ref().map(|(w, _)| w), &audit)
        .await?;
    Ok(Json(ChannelBody {
        name,
        has_secret: put.secret.is_some(),
        spec: put.spec,
        updated_by: row.updated_by,
        updated_at: now,
    }))
}

/// Deletes a channel and its secret. Audited.
#[utoipa::path(delete, path = "/api/v1/alert-channels/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn delete_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<StatusCode, ApiError> {
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "alert_channel.delete",
        format!("alert-channel/{name}"),
        serde_json::Value::Null,
    );
    match state.store.delete_channel(&name, &audit).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::not_found("channel")),
        Err(e) => Err(e.into()),
    }
}

/// One notification and how its delivery went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryBody {
    /// Id (also sent as the `Custos-Delivery` header of webhooks).
    pub id: i64,
    /// The channel.
    pub channel: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The newest failure.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: DateTime<Utc>,
    /// What it carries.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// `GET /api/v1/alert-deliveries`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first, at most 200.
    pub deliveries: Vec<DeliveryBody>,
}

/// The newest notifications and their delivery status: failures stay visible here.
#[utoipa::path(get, path = "/api/v1/alert-deliveries", responses((status = 200, body = DeliveryList)))]
pub async fn list_deliveries(State(state): State<AppState>) -> Result<Response, ApiError> {
    let deliveries = state
        .store
        .deliveries(200)
        .await?
        .into_iter()
        .map(|d| DeliveryBody {
            id: d.id,
            channel: d.channel,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            created_at: d.created_at,
            sent_at: d.sent_at,
            next_attempt_at: d.next_attempt_at,
            payload: serde_json::from_str(&d.payload_json).unwrap_or_default(),
        })
        .collect();
    Ok(Json(DeliveryList { deliveries }).into_response())
}
