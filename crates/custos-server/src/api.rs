//! JSON API handlers. Each is thin: extract, make one domain call, map to a wire type. Access
//! was already decided by the choke point in [`crate::auth`]; handlers receive [`Authorized`]
//! and use it only to filter listings and to name the actor in audit records.

use crate::auth::{Authorized, audit_for};
use crate::context::RequestContext;
use crate::drift::{self, Chunking, ReferenceSpec};
use crate::error::ApiError;
use crate::ingest::{self, BodyFormat};
use crate::metrics::IngestKind;
use crate::query;
use crate::reference;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use custos_core::{Action, ModelName, ModelSchema, ModelSpec, MonitoringConfig, parse_grant};
use custos_crypto::token::{TokenPrefix, display_prefix, generate_token};
use custos_proto::{
    AuditPage, AuditRecordBody, CreateTokenRequest, CreatedToken, DriftResponse,
    FeatureProfileResponse, Health, IngestResponse, LabelResponse, ModelInfo, ModelList,
    MonitoringConfigBody, ScopeSpec, TokenInfo, TokenList, VolumeResponse,
};
use custos_tabular::TabularFormat;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

/// The OpenAPI description of the whole API, served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Custos API", description = "Self-hosted, security-first ML monitoring."),
    paths(
        healthz, whoami, list_models, create_model, get_model, post_predictions, post_labels,
        get_volume, get_profile, get_drift, get_report, get_quality, get_performance, get_monitoring, put_monitoring, post_reference,
        list_references, list_tokens,
        create_token, revoke_token, get_audit,
        crate::alerts_api::get_alerts, crate::alerts_api::put_alerts,
        crate::alerts_api::acknowledge, crate::alerts_api::add_silence,
        crate::alerts_api::list_channels, crate::alerts_api::put_channel,
        crate::alerts_api::delete_channel, crate::alerts_api::list_deliveries,
        crate::vault::get_events, crate::vault::reveal, crate::vault::erase
    ),
    components(schemas(
        custos_proto::ErrorBody, custos_proto::ErrorCode, custos_proto::RowErrorBody, Health,
        ModelInfo, ModelList, ModelSpec, custos_core::FeatureSpec, custos_core::PredictionSpec,
        custos_core::FeatureType, custos_core::PredictionType, custos_core::Masking,
        custos_core::UnknownFieldPolicy, IngestResponse, LabelResponse, ScopeSpec,
        CreateTokenRequest, CreatedToken, TokenInfo, TokenList, FeatureProfileResponse,
        DriftResponse, custos_proto::FeatureDriftBody, custos_proto::DriftBin,
        custos_proto::SkippedFeature, VolumeResponse, custos_proto::VolumePoint, AuditPage,
        AuditRecordBody, custos_proto::DriftReferenceBody, custos_proto::DriftChunkBody,
        custos_proto::FeatureTestBody, MonitoringConfigBody, MonitoringConfig,
        custos_core::DriftConfig, custos_core::MethodSetting, custos_core::QualityConfig,
        custos_core::PerformanceConfig, custos_core::RetentionConfig, custos_proto::ReferenceInfo, custos_proto::ReferenceList,
        custos_proto::PerformanceResponse, custos_proto::PerformanceChunkBody,
        custos_proto::SegmentPerformanceBody, custos_proto::QualityResponse,
        custos_proto::FeatureQualityBody, custos_proto::VolumeCheckBody, custos_proto::ReportBody,
        custos_proto::RejectedField, custos_proto::PiiFindingBody, custos_proto::WhoAmI, crate::vault::EventsBody,
        crate::vault::EventRow, crate::vault::RevealRequest, crate::vault::RevealedToken,
        crate::vault::RevealBody,
        custos_core::alerts::AlertRule, custos_core::alerts::Condition,
        custos_core::alerts::Severity, custos_core::alerts::Threshold,
        crate::alerts_api::AlertsBody, crate::alerts_api::AlertRulesBody,
        crate::alerts_api::AlertSeriesBody, crate::alerts_api::AlertEventBody,
        crate::alerts_api::SilenceBody, crate::alerts_api::SilenceRequest,
        crate::alerts_api::AcknowledgeBody, crate::alerts_api::ChannelBody,
        crate::alerts_api::ChannelList, crate::alerts_api::DeliveryBody,
        crate::alerts_api::DeliveryList, crate::alerting::ChannelSpec,
        crate::alerting::ChannelKind, crate::alerting::ChannelPut
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::users_api::UsersDoc::openapi());
    doc.merge(crate::audit_api::AuditDoc::openapi());
    doc.merge(crate::history_api::HistoryDoc::openapi());
    doc.merge(crate::tokens_api::TokensDoc::openapi());
    doc.merge(crate::retention::RetentionDoc::openapi());
    Json(doc)
}

pub(crate) fn body(result: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    result.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::bad_request("could not read the request body")
        }
    })
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase());
    match content_type.as_deref() {
        None | Some("application/json") => Ok(BodyFormat::JsonArray),
        Some("application/x-ndjson" | "application/jsonl" | "application/ndjson") => {
            Ok(BodyFormat::Ndjson)
        }
        Some(_) => Err(ApiError::bad_request(
            "Content-Type must be application/json or application/x-ndjson",
        )),
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

pub(crate) fn model_name(raw: &str) -> Result<ModelName, ApiError> {
    ModelName::parse(raw).map_err(|_| ApiError::not_found("model"))
}

fn model_info(entry: &crate::state::ModelEntry) -> ModelInfo {
    ModelInfo {
        name: entry.schema.name().to_string(),
        created_at: entry.created_at,
        spec: serde_json::from_str(&entry.spec_json).unwrap_or_default(),
    }
}

/// Liveness. Reveals nothing about the deployment.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The caller: its actor id, kind, name and grants. Any signed-in caller may ask, whatever its
/// roles (a person without any can still see why nothing is visible).
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = custos_proto::WhoAmI)))]
pub async fn whoami(Extension(who): Extension<Authorized>) -> Json<custos_proto::WhoAmI> {
    use custos_core::Principal;
    let grants_text = |grants: &[custos_core::Grant]| -> Vec<String> {
        grants.iter().map(crate::oauth::grant_text).collect()
    };
    let (kind, name, grants) = match &who.principal {
        Principal::Bootstrap => ("bootstrap", None, vec!["*@*".to_owned()]),
        Principal::Token { grants, .. } => ("token", None, grants_text(grants)),
        Principal::User { name, grants, .. } => ("user", Some(name.clone()), grants_text(grants)),
        Principal::Service { grants, .. } => ("service", None, grants_text(grants)),
    };
    Json(custos_proto::WhoAmI {
        actor: who.principal.actor_id(),
        kind: kind.to_owned(),
        name,
        grants,
    })
}

/// Lists the models the caller may read.
#[utoipa::path(get, path = "/api/v1/models", responses((status = 200, body = ModelList)))]
pub async fn list_models(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
) -> Result<Json<ModelList>, ApiError> {
    let mut models = Vec::new();
    for row in state.store.list_models().await? {
        let entry = AppState::entry_from_row(row)?;
        if who.allows(Action::ModelsRead, entry.schema.name()) {
            models.push(model_info(&entry));
        }
    }
    Ok(Json(ModelList { models }))
}

/// Registers a model. The registration and its audit record are one transaction.
#[utoipa::path(post, path = "/api/v1/models", request_body = ModelSpec,
    responses((status = 201, body = ModelInfo), (status = 400, body = custos_proto::ErrorBody),
              (status = 409, body = custos_proto::ErrorBody)))]
pub async fn create_model(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ModelInfo>), ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let spec: ModelSpec = parse_json(&raw)?;
    let schema = ModelSchema::new(spec).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let spec_json = serde_json::to_string(schema.spec()).map_err(ApiError::internal)?;
    let name = schema.name().to_string();
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "model.create",
        format!("model/{name}"),
        serde_json::json!({ "after": schema.spec() }),
    );
    let row = state
        .store
        .create_model(&name, &spec_json, state.clock.now(), &audit)
        .await
        .map_err(|e| match e {
            custos_store::StoreError::Conflict(_) => {
                ApiError::conflict(format!("a model named '{name}' already exists"))
            }
            other => other.into(),
        })?;
    let entry = AppState::entry_from_row(row)?;
    Ok((StatusCode::CREATED, Json(model_info(&entry))))
}

/// One model.
#[utoipa::path(get, path = "/api/v1/models/{model}", params(("model" = String, Path)),
    responses((status = 200, body = ModelInfo), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    Ok(Json(model_info(&entry)))
}

/// Ingests predictions: a JSON array of rows, or NDJSON with `Content-Type: application/x-ndjson`.
/// Answers only after the batch is durably committed; a batch with any bad row is refused whole.
#[utoipa::path(post, path = "/api/v1/models/{model}/predictions", params(("model" = String, Path)),
    request_body(content = Vec<Object>, description = "rows keyed by field name"),
    responses((status = 200, body = IngestResponse), (status = 422, body = custos_proto::ErrorBody),
              (status = 413, body = custos_proto::ErrorBody), (status = 429, body = custos_proto::ErrorBody)))]
pub async fn post_predictions(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>, ApiError> {
    let answer = async {
        let raw = body(raw, state.config.limits.max_body_bytes)?;
        let format = body_format(&headers)?;
        let entry = state.model(&model_name(&model)?).await?;
        ingest::ingest_predictions(&state, entry, raw, format).await
    }
    .await;
    if let Err(e) = &answer {
        state.telemetry.rejected(IngestKind::Predictions, e);
    }
    answer.map(Json)
}

/// Ingests ground-truth labels (`{"event_id": "e1", "label": 1}`, one object or an array).
#[utoipa::path(post, path = "/api/v1/models/{model}/labels", params(("model" = String, Path)),
    request_body(content = Vec<Object>),
    responses((status = 200, body = LabelResponse), (status = 422, body = custos_proto::ErrorBody)))]
pub async fn post_labels(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<LabelResponse>, ApiError> {
    let answer = async {
        let raw = body(raw, state.config.limits.max_body_bytes)?;
        let format = body_format(&headers)?;
        let entry = state.model(&model_name(&model)?).await?;
        ingest::ingest_labels(&state, entry, raw, format).await
    }
    .await;
    if let Err(e) = &answer {
        state.telemetry.rejected(IngestKind::Labels, e);
    }
    answer.map(Json)
}

/// An optional time range; defaults are per endpoint.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RangeQuery {
    /// Range start, RFC 3339 (inclusive).
    pub start: Option<DateTime<Utc>>,
    /// Range end, RFC 3339 (exclusive).
    pub end: Option<DateTime<Utc>>,
}

fn range_or(
    q: &RangeQuery,
    now: DateTime<Utc>,
    default_span: Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = q.end.unwrap_or(now);
    let start = q.start.unwrap_or(end - default_span);
    (start, end)
}

/// Rows ingested per hour (default: the last 7 days).
#[utoipa::path(get, path = "/api/v1/models/{model}/volume",
    params(("model" = String, Path), RangeQuery),
    responses((status = 200, body = VolumeResponse)))]
pub async fn get_volume(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<VolumeResponse>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    let (start, end) = range_or(&q, state.clock.now(), Duration::days(7));
    let hours = query::hour_range(start, end)?;
    query::volume(&state, &entry, hours).await.map(Json)
}

/// A feature's summary over a range (default: the last 24 hours), merged from hourly profiles.
#[utoipa::path(get, path = "/api/v1/models/{model}/features/{feature}/profile",
    params(("model" = String, Path), ("feature" = String, Path), RangeQuery),
    responses((status = 200, body = FeatureProfileResponse), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn get_profile(
    State(state): State<AppState>,
    Path((model, feature)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<FeatureProfileResponse>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    let (_, column) = entry
        .schema
        .column(&feature)
        .filter(|(_, c)| c.profile_kind().is_some())
        .ok_or_else(|| ApiError::not_found("profiled feature"))?;
    let (start, end) = range_or(&q, state.clock.now(), Duration::days(1));
    let hours = query::hour_range(start, end)?;
    let (profile, merged) = query::merged_profile(&state, &entry, column, hours.clone()).await?;
    let summary = match profile {
        Some(p) => serde_json::to_value(p.summary()).map_err(ApiError::internal)?,
        None => serde_json::json!({ "count": 0, "missing": 0 }),
    };
    Ok(Json(FeatureProfileResponse {
        model: entry.schema.name().to_string(),
        feature,
        start: hours.start.start(),
        end: hours.end.start(),
        buckets_merged: merged,
        summary,
    }))
}

/// The reference a query names: a window (`reference_start` + `reference_end`), the
/// `reference_trailing_hours` before the current window, an uploaded set's id, or nothing
/// (`None`: the caller's default).
fn reference_spec(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    uid: Option<String>,
    trailing_hours: Option<u32>,
    current_start: DateTime<Utc>,
) -> Result<Option<ReferenceSpec>, ApiError> {
    match (start, end, uid, trailing_hours) {
        (Some(start), Some(end), None, None) => Ok(Some(ReferenceSpec::Window(start, end))),
        (None, None, None, Some(hours)) if (1..=24 * 800).contains(&hours) => {
            let start = current_start - Duration::hours(i64::from(hours));
            Ok(Some(ReferenceSpec::Window(start, current_start)))
        }
        (None, None, Some(uid), None) => Ok(Some(ReferenceSpec::Uploaded(Some(uid)))),
        (None, None, None, None) => Ok(None),
        _ => Err(ApiError::bad_request(
            "name the reference once: reference_start and reference_end, or \
             reference_trailing_hours (1 to 19200), or reference (an uploaded set's id), or \
             nothing (the newest uploaded set)",
        )),
    }
}

fn chunking(raw: Option<&str>) -> Result<Chunking, ApiError> {
    raw.map_or(Ok(Chunking::None), Chunking::parse)
}

/// The bounds of a drift query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DriftQuery {
    /// Reference window start, RFC 3339 (with `reference_end`: compare with the model's own
    /// traffic in that window).
    pub reference_start: Option<DateTime<Utc>>,
    /// Reference window end, RFC 3339.
    pub reference_end: Option<DateTime<Utc>>,
    /// An uploaded reference set's id; without it and without a window, the newest upload.
    pub reference: Option<String>,
    /// Compare with the model's own traffic in this many hours before the current window
    /// (a trailing reference).
    pub reference_trailing_hours: Option<u32>,
    /// Current window start, RFC 3339.
    pub current_start: DateTime<Utc>,
    /// Current window end, RFC 3339.
    pub current_end: DateTime<Utc>,
    /// Per-chunk results too: `hour`, `day`, `week` or `rows:N`.
    pub chunk: Option<String>,
}

/// Per-feature drift between a reference (an uploaded reference set or a time window) and the
/// current window, optionally per chunk, from stored profiles only. Each feature's statistic
/// and threshold come from the model's monitoring configuration, else the default rule.
#[utoipa::path(get, path = "/api/v1/models/{model}/drift",
    params(("model" = String, Path), DriftQuery),
    responses((status = 200, body = DriftResponse), (status = 400, body = custos_proto::ErrorBody)))]
pub async fn get_drift(
    State(state): State<AppState>,
    Path(model): Path<String>,
    q: Result<Query<DriftQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DriftResponse>, ApiError> {
    let Query(q) = q.map_err(|_| {
        ApiError::bad_request(
            "current_start and current_end are required RFC 3339 times; reference_start and \
             reference_end, when given, too",
        )
    })?;
    let reference = reference_spec(
        q.reference_start,
        q.reference_end,
        q.reference,
        q.reference_trailing_hours,
        q.current_start,
    )?
    .unwrap_or(ReferenceSpec::Uploaded(None));
    let chunking = chunking(q.chunk.as_deref())?;
    let entry = state.model(&model_name(&model)?).await?;
    drift::drift(
        &state,
        &entry,
        &reference,
        (q.current_start, q.current_end),
        chunking,
    )
    .await
    .map(Json)
}

/// The bounds of a report.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReportQuery {
    /// Current window start, RFC 3339.
    pub current_start: DateTime<Utc>,
    /// Current window end, RFC 3339.
    pub current_end: DateTime<Utc>,
    /// Reference window start (with `reference_end`); otherwise an uploaded reference.
    pub reference_start: Option<DateTime<Utc>>,
    /// Reference window end.
    pub reference_end: Option<DateTime<Utc>>,
    /// An uploaded reference set's id; without it, the newest.
    pub reference: Option<String>,
    /// Compare with the model's own traffic in this many hours before the current window
    /// (a trailing reference).
    pub reference_trailing_hours: Option<u32>,
    /// Chunks: `hour`, `day`, `week` or `rows:N`.
    pub chunk: Option<String>,
    /// `html` (a self-contained file, sent as an attachment) or `json` (the default).
    pub format: Option<String>,
}

/// A report of drift, data quality and performance: JSON, or one self-contained HTML file with
/// per-feature distribution charts, methods, thresholds, statistics and verdicts.
#[utoipa::path(get, path = "/api/v1/models/{model}/report",
    params(("model" = String, Path), ReportQuery),
    responses((status = 200, body = custos_proto::ReportBody),
              (status = 400, body = custos_proto::ErrorBody)))]
pub async fn get_report(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(ctx): Extension<RequestContext>,
    Extension(who): Extension<Authorized>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Query(q) = q.map_err(|_| {
        ApiError::bad_request("current_start and current_end are required RFC 3339 times")
    })?;
    let reference = reference_spec(
        q.reference_start,
        q.reference_end,
        q.reference,
        q.reference_trailing_hours,
        q.current_start,
    )?
    .unwrap_or(ReferenceSpec::Uploaded(None));
    let chunking = chunking(q.chunk.as_deref())?;
    let html = match q.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(_) => return Err(ApiError::bad_request("format must be html or json")),
    };
    let entry = state.model(&model_name(&model)?).await?;
    let report = crate::report::build(
        &state,
        &who,
        &entry,
        &reference,
        (q.current_start, q.current_end),
        chunking,
    )
    .await?;
    // A report is an export of monitoring results: recorded (with what it covered) before it
    // leaves, and refused if it cannot be recorded.
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "report.export",
        format!("model/{}", entry.schema.name()),
        serde_json::json!({
            "format": if html { "html" } else { "json" },
            "current_start": q.current_start,
            "current_end": q.current_end,
            "config_version": report.drift.config_version,
        }),
    );
    state.store.append_audit(&audit).await.map_err(|e| {
        tracing::error!(error = %e, "audit append failed; report refused");
        ApiError::unavailable("the audit log cannot be written; the report is refused")
    })?;
    if !html {
        return Ok(Json(report).into_response());
    }
    let file = format!(
        "attachment; filename=\"custos-report-{}-{}.html\"",
        entry.schema.name(),
        report.generated_at.format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, file),
        ],
        crate::report::render_html(&report),
    )
        .into_response())
}

/// The window of a data-quality query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct QualityQuery {
    /// Window start, RFC 3339.
    pub start: DateTime<Utc>,
    /// Window end, RFC 3339.
    pub end: DateTime<Utc>,
    /// Reference window start (with `reference_end`); otherwise the newest uploaded reference.
    pub reference_start: Option<DateTime<Utc>>,
    /// Reference window end.
    pub reference_end: Option<DateTime<Utc>>,
    /// An uploaded reference set's id.
    pub reference: Option<String>,
    /// Compare with the model's own traffic in this many hours before the current window
    /// (a trailing reference).
    pub reference_trailing_hours: Option<u32>,
}

/// Data quality of a window from stored profiles: missing and invalid shares, out-of-range
/// values and unseen categories against the reference, fields that stopped arriving, hourly
/// volume anomalies and freshness.
#[utoipa::path(get, path = "/api/v1/models/{model}/quality",
    params(("model" = String, Path), QualityQuery),
    responses((status = 200, body = custos_proto::QualityResponse),
              (status = 400, body = custos_proto::ErrorBody)))]
pub async fn get_quality(
    State(state): State<AppState>,
    Path(model): Path<String>,
    q: Result<Query<QualityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<custos_proto::QualityResponse>, ApiError> {
    let Query(q) =
        q.map_err(|_| ApiError::bad_request("start and end are required RFC 3339 times"))?;
    let reference = reference_spec(
        q.reference_start,
        q.reference_end,
        q.reference,
        q.reference_trailing_hours,
        q.start,
    )?;
    let entry = state.model(&model_name(&model)?).await?;
    crate::quality::quality(&state, &entry, reference.as_ref(), (q.start, q.end))
        .await
        .map(Json)
}

/// The window of a performance query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PerformanceQuery {
    /// Window start, RFC 3339 (event times of the predictions).
    pub start: DateTime<Utc>,
    /// Window end, RFC 3339.
    pub end: DateTime<Utc>,
    /// Per-chunk results too: `hour`, `day`, `week` or `rows:N`.
    pub chunk: Option<String>,
    /// A categorical feature to break realized performance down by.
    pub segment_by: Option<String>,
}

/// Realized performance of the predictions in a window whose labels have arrived, and, for
/// binary scorers whose newest reference carried labels, CBPE estimates with bands.
#[utoipa::path(get, path = "/api/v1/models/{model}/performance",
    params(("model" = String, Path), PerformanceQuery),
    responses((status = 200, body = custos_proto::PerformanceResponse),
              (status = 400, body = custos_proto::ErrorBody)))]
pub async fn get_performance(
    State(state): State<AppState>,
    Path(model): Path<String>,
    q: Result<Query<PerformanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<custos_proto::PerformanceResponse>, ApiError> {
    let Query(q) =
        q.map_err(|_| ApiError::bad_request("start and end are required RFC 3339 times"))?;
    let chunking = chunking(q.chunk.as_deref())?;
    let entry = state.model(&model_name(&model)?).await?;
    crate::performance::performance(
        &state,
        &entry,
        (q.start, q.end),
        chunking,
        q.segment_by.as_deref(),
    )
    .await
    .map(Json)
}

pub(crate) fn monitoring_body(
    entry: &crate::state::ModelEntry,
    row: Option<custos_store::MonitoringConfigRow>,
) -> Result<MonitoringConfigBody, ApiError> {
    let model = entry.schema.name().to_string();
    Ok(match row {
        None => MonitoringConfigBody {
            model,
            version: None,
            updated_by: None,
            updated_at: None,
            config: serde_json::to_value(MonitoringConfig::default())
                .map_err(ApiError::internal)?,
        },
        Some(row) => MonitoringConfigBody {
            model,
            version: Some(row.version),
            updated_by: Some(row.created_by),
            updated_at: Some(row.created_at),
            config: serde_json::from_str(&row.config_json).map_err(ApiError::internal)?,
        },
    })
}

/// The model's monitoring configuration in force (the defaults if it was never set).
#[utoipa::path(get, path = "/api/v1/models/{model}/monitoring", params(("model" = String, Path)),
    responses((status = 200, body = MonitoringConfigBody)))]
pub async fn get_monitoring(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<MonitoringConfigBody>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    let row = state.store.monitoring_config(entry.id).await?;
    monitoring_body(&entry, row).map(Json)
}

/// Replaces the model's monitoring configuration with a new version. Every version is kept (with
/// `reason`); the change and its before/after are audited in the same transaction. A weakening
/// change waits for a second person (202) when the two-person rule is on.
#[utoipa::path(put, path = "/api/v1/models/{model}/monitoring", params(("model" = String, Path)),
    request_body = MonitoringConfig,
    responses((status = 200, body = MonitoringConfigBody), (status = 400, body = custos_proto::ErrorBody)))]
pub async fn put_monitoring(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<crate::history_api::ReasonQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    crate::history_api::put(state, model, who, ctx, q.reason, raw).await
}

/// Options of a reference upload.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReferenceQuery {
    /// The column holding ground-truth labels, if the file has one.
    pub label_field: Option<String>,
    /// A name for people (at most 200 characters).
    pub name: Option<String>,
}

/// Uploads a reference data set (training data): CSV (`text/csv`), NDJSON
/// (`application/x-ndjson`) or Parquet (`application/vnd.apache.parquet`). Rows are validated
/// and masked like live traffic and profiled; only the sealed profiles are stored. Drift
/// compares with the newest reference unless told otherwise.
#[utoipa::path(post, path = "/api/v1/models/{model}/reference",
    params(("model" = String, Path), ReferenceQuery),
    request_body(content = Vec<u8>, description = "the file", content_type = "text/csv"),
    responses((status = 201, body = custos_proto::ReferenceInfo),
              (status = 422, body = custos_proto::ErrorBody),
              (status = 413, body = custos_proto::ErrorBody)))]
pub async fn post_reference(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    q: Result<Query<ReferenceQuery>, axum::extract::rejection::QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<custos_proto::ReferenceInfo>), ApiError> {
    let Query(q) = q.map_err(|_| ApiError::bad_request("invalid query parameters"))?;
    let raw = body(raw, state.config.limits.max_reference_bytes)?;
    let format = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(TabularFormat::from_content_type)
        .ok_or_else(|| {
            ApiError::bad_request(
                "Content-Type must be text/csv, application/x-ndjson or \
                 application/vnd.apache.parquet",
            )
        })?;
    if let Some(name) = &q.name
        && (name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "name must be 1 to 200 characters without control characters",
        ));
    }
    let label_field = q
        .label_field
        .map(|raw| {
            custos_core::FieldName::parse(&raw)
                .map(|f| f.to_string())
                .map_err(|e| ApiError::bad_request(format!("label_field: {e}")))
        })
        .transpose()?;
    let entry = state.model(&model_name(&model)?).await?;
    let info = reference::upload(
        &state,
        entry,
        &who,
        &ctx,
        raw,
        format,
        reference::UploadOptions {
            label_field,
            name: q.name,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// The model's reference data sets, newest first.
#[utoipa::path(get, path = "/api/v1/models/{model}/reference", params(("model" = String, Path)),
    responses((status = 200, body = custos_proto::ReferenceList)))]
pub async fn list_references(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<custos_proto::ReferenceList>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    let name = entry.schema.name().to_string();
    let references = state
        .store
        .references(entry.id)
        .await?
        .iter()
        .map(|row| reference::reference_info(&name, row))
        .collect();
    Ok(Json(custos_proto::ReferenceList { references }))
}

fn token_info(row: custos_store::TokenRow) -> TokenInfo {
    TokenInfo {
        scopes: serde_json::from_str(&row.scopes_json).unwrap_or_default(),
        id: row.id,
        prefix: row.display_prefix,
        description: row.description,
        created_by: row.created_by,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        last_used_at: row.last_used_at,
    }
}

/// All API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = TokenList)))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(token_info)
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// Creates an API token. The secret is in this response and nowhere else; the store keeps only a
/// keyed hash. A caller cannot grant more than it holds.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = custos_proto::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let request: CreateTokenRequest = parse_json(&raw)?;
    let description = request.description.trim();
    if description.is_empty()
        || description.chars().count() > 200
        || description.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "description must be 1–200 characters without control characters",
        ));
    }
    if request.scopes.is_empty() || request.scopes.len() > 64 {
        return Err(ApiError::bad_request(
            "a token needs between 1 and 64 scopes",
        ));
    }
    for scope in &request.scopes {
        let grant = parse_grant(&scope.action, &scope.model)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !who.principal.can_delegate(&grant) {
            return Err(ApiError::forbidden());
        }
    }
    let settings = &state.config.tokens;
    let days = request.expires_in_days.unwrap_or(settings.default_days);
    if !(1..=settings.max_days).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "expires_in_days must lie between 1 and {}",
            settings.max_days
        )));
    }
    let secret = generate_token(TokenPrefix::Api).map_err(ApiError::internal)?;
    let now = state.clock.now();
    let id_hex = crate::context::random_id();
    let id = format!("tok_{}", id_hex.get(..16).unwrap_or(&id_hex));
    let scopes_json = serde_json::to_string(&request.scopes).map_err(ApiError::internal)?;
    let new = custos_store::NewToken {
        id: id.clone(),
        hash: state.keys.token_hasher().hash(secret.expose()),
        display_prefix: display_prefix(secret.expose()),
        description: description.to_owned(),
        scopes_json,
        created_by: who.principal.actor_id(),
        created_at: now,
        expires_at: now + Duration::days(i64::from(days)),
    };
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "token.create",
        format!("token/{id}"),
        serde_json::json!({ "scopes": request.scopes, "expires_at": new.expires_at }),
    );
    state.store.create_token(&new, &audit).await?;
    let token = TokenInfo {
        id,
        prefix: new.display_prefix.clone(),
        description: new.description.clone(),
        scopes: request.scopes,
        created_by: new.created_by.clone(),
        created_at: now,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            secret: secret.expose().to_owned(),
            token,
        }),
    ))
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ApiError::not_found("token"));
    }
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "token.revoke",
        format!("token/{id}"),
        serde_json::json!({}),
    );
    if state
        .store
        .revoke_token(&id, state.clock.now(), &audit)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}

/// Paging through the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Return records after this position (default 0).
    pub after: Option<i64>,
    /// At most this many records (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Audit records, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn get_audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let records = state
        .store
        .audit_entries(q.after.unwrap_or(0), limit)
        .await?
        .into_iter()
        .map(|row| AuditRecordBody {
            seq: row.seq,
            record: serde_json::from_str(&row.record_json).unwrap_or_default(),
            hash: hex::encode(row.hash),
        })
        .collect();
    Ok(Json(AuditPage { records }))
}
