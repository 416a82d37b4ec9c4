//! Configuration history and lineage: every version of a model's monitoring configuration (who,
//! when, why, approved by whom), the diff between any two, rollback as a new version, the
//! two-person rule for weakening changes, and the model's lineage (its registration, the
//! reference data sets with their content hashes and uploaders, the configuration versions that
//! results were computed under).
//!
//! Owns the *change procedure*: a proposed configuration is checked, compared with the one in
//! force, and either stored as a new version or — when it weakens monitoring and the two-person
//! rule is on — parked until someone else approves it. What counts as weakening is
//! `custos_core::history`; who may call what is the policy table.

use crate::api::{body, model_name, monitoring_body, parse_json};
use crate::auth::{Authorized, audit_for};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::{AppState, ModelEntry};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use custos_core::MonitoringConfig;
use custos_core::history::{Change, Weakening, diff, monitoring_weakenings};
use custos_store::{NewConfigVersion, PendingChangeRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The history routes' part of the OpenAPI description.
#[derive(OpenApi)]
#[openapi(paths(history, version, diff_versions, rollback, approve, reject, lineage))]
pub struct HistoryDoc;

/// Longest reason kept.
const MAX_REASON: usize = 500;

/// Why a change is made (query `reason=` of a PUT, or the body of a rollback).
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct ReasonQuery {
    /// Free text for the history (at most 500 characters).
    pub reason: Option<String>,
}

pub(crate) fn clean_reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(reason) = reason else {
        return Ok(None);
    };
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "reason is longer than {MAX_REASON} characters"
        )));
    }
    Ok(Some(reason.trim().to_owned()).filter(|r| !r.is_empty()))
}

/// A change that waits for a second person.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingChangeBody {
    /// Id to approve or reject.
    pub id: i64,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// The version it was proposed against.
    pub base_version: i64,
    /// Who asked.
    pub requested_by: String,
    /// When (RFC 3339).
    pub requested_at: String,
    /// Why.
    pub reason: Option<String>,
    /// What makes it a weakening.
    pub weakenings: Vec<Weakening>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// The proposed configuration.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

fn pending_body(row: PendingChangeRow) -> PendingChangeBody {
    PendingChangeBody {
        id: row.id,
        status: row.status,
        base_version: row.base_version,
        requested_by: row.requested_by,
        requested_at: row.requested_at.to_rfc3339(),
        reason: row.reason,
        weakenings: serde_json::from_str(&row.weakenings).unwrap_or_default(),
        decided_by: row.decided_by,
        config: serde_json::from_str(&row.body_json).unwrap_or_default(),
    }
}

/// Applies a proposed monitoring configuration: stored as a new version, or parked for a
/// second person (202) when it weakens monitoring and the two-person rule is on. Shared by
/// PUT and rollback so both follow one procedure.
pub(crate) async fn apply_monitoring_change(
    state: &AppState,
    ctx: &RequestContext,
    who: &Authorized,
    entry: &ModelEntry,
    config: MonitoringConfig,
    reason: Option<String>,
    action: &str,
) -> Result<Response, ApiError> {
    config
        .check(&entry.schema)
        .map_err(|errors| ApiError::bad_request(errors.join("; ")))?;
    let before_row = state.store.monitoring_config(entry.id).await?;
    let (base_version, before) = match &before_row {
        Some(row) => (
            row.version,
            serde_json::from_str::<MonitoringConfig>(&row.config_json)
                .map_err(ApiError::internal)?,
        ),
        None => (0, MonitoringConfig::default()),
    };
    let weakenings = monitoring_weakenings(&before, &config);
    let config_json = serde_json::to_string(&config).map_err(ApiError::internal)?;
    let resource = format!("model/{}", entry.schema.name());
    let actor = who.principal.actor_id();
    if state.config.audit.two_person_rule && !weakenings.is_empty() {
        let weakenings_json = serde_json::to_string(&weakenings).map_err(ApiError::internal)?;
        let audit = audit_for(
            state,
            ctx,
            who,
            "monitoring.propose",
            resource,
            serde_json::json!({
                "before": before,
                "after": config,
                "base_version": base_version,
                "weakenings": weakenings,
                "reason": reason,
            }),
        );
        let id = state
            .store
            .create_pending_change(
                entry.id,
                "monitoring",
                &config_json,
                base_version,
                reason.as_deref(),
                &weakenings_json,
                &actor,
                state.clock.now(),
                &audit,
            )
            .await?;
        let row = state
            .store
            .pending_change(id)
            .await?
            .ok_or_else(|| ApiError::internal("pending change vanished"))?;
        return Ok((StatusCode::ACCEPTED, Json(pending_body(row))).into_response());
    }
    let audit = audit_for(
        state,
        ctx,
        who,
        action,
        resource,
        serde_json::json!({
            "before": before_row.as_ref().map(|_| &before),
            "after": config,
            "weakenings": weakenings,
            "reason": reason,
        }),
    );
    state
        .store
        .record_monitoring_config(
            &NewConfigVersion {
                model_id: entry.id,
                config_json: &config_json,
                created_by: &actor,
                reason: reason.as_deref(),
                approved_by: None,
                now: state.clock.now(),
            },
            &audit,
        )
        .await?;
    let row = state.store.monitoring_config(entry.id).await?;
    Ok(Json(monitoring_body(entry, row)?).into_response())
}

/// Replaces the model's monitoring configuration (used by `PUT …/monitoring`).
pub(crate) async fn put(
    state: AppState,
    model: String,
    who: Authorized,
    ctx: RequestContext,
    reason: Option<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let config: MonitoringConfig = parse_json(&raw)?;
    let entry = state.model(&model_name(&model)?).await?;
    let reason = clean_reason(reason)?;
    apply_monitoring_change(
        &state,
        &ctx,
        &who,
        &entry,
        config,
        reason,
        "monitoring.update",
    )
    .await
}

/// One version in the history list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionBody {
    /// Number.
    pub version: i64,
    /// Author.
    pub created_by: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// Why.
    pub reason: Option<String>,
    /// Second person, if the change needed one.
    pub approved_by: Option<String>,
    /// The configuration.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// `GET …/monitoring/history`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryBody {
    /// The model.
    pub model: String,
    /// Every version, oldest first.
    pub versions: Vec<VersionBody>,
    /// Changes proposed for approval, newest first.
    pub changes: Vec<PendingChangeBody>,
}

fn version_body(row: custos_store::ConfigVersionRow) -> VersionBody {
    VersionBody {
        version: row.version,
        created_by: row.created_by,
        created_at: row.created_at.to_rfc3339(),
        reason: row.reason,
        approved_by: row.approved_by,
        config: serde_json::from_str(&row.config_json).unwrap_or_default(),
    }
}

/// Every version of the model's monitoring configuration, and the proposed changes.
#[utoipa::path(get, path = "/api/v1/models/{model}/monitoring/history",
    params(("model" = String, Path)), responses((status = 200, body = HistoryBody)))]
pub async fn history(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<HistoryBody>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    let versions = state
        .store
        .monitoring_config_versions(entry.id)
        .await?
        .into_iter()
        .map(version_body)
        .collect();
    let changes = state
        .store
        .pending_changes(entry.id, false)
        .await?
        .into_iter()
        .map(pending_body)
        .collect();
    Ok(Json(HistoryBody {
        model: entry.schema.name().to_string(),
        versions,
        changes,
    }))
}

async fn version_config(
    state: &AppState,
    entry: &ModelEntry,
    version: i64,
) -> Result<(custos_store::ConfigVersionRow, serde_json::Value), ApiError> {
    let row = state
        .store
        .monitoring_config_version(entry.id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("configuration version"))?;
    let value = serde_json::from_str(&row.config_json).map_err(ApiError::internal)?;
    Ok((row, value))
}

/// One version.
#[utoipa::path(get, path = "/api/v1/models/{model}/monitoring/versions/{version}",
    params(("model" = String, Path), ("version" = i64, Path)),
    responses((status = 200, body = VersionBody)))]
pub async fn version(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, i64)>,
) -> Result<Json<VersionBody>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    let (row, _) = version_config(&state, &entry, version).await?;
    Ok(Json(version_body(row)))
}

/// Which two versions to compare.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffQuery {
    /// The older version.
    pub from: i64,
    /// The newer version.
    pub to: i64,
}

/// `GET …/monitoring/diff`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffBody {
    /// Older version.
    pub from: i64,
    /// Newer version.
    pub to: i64,
    /// Every change (RFC 6901 paths).
    pub changes: Vec<Change>,
    /// The changes that make monitoring less likely to alarm.
    pub weakenings: Vec<Weakening>,
}

/// Computes the diff of two stored versions (shared with the UI).
pub(crate) async fn diff_of(
    state: &AppState,
    entry: &ModelEntry,
    from: i64,
    to: i64,
) -> Result<DiffBody, ApiError> {
    let (_, before) = version_config(state, entry, from).await?;
    let (_, after) = version_config(state, entry, to).await?;
    let changes = diff(&before, &after).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let weakenings = match (
        serde_json::from_value::<MonitoringConfig>(before),
        serde_json::from_value::<MonitoringConfig>(after),
    ) {
        (Ok(b), Ok(a)) => monitoring_weakenings(&b, &a),
        _ => Vec::new(),
    };
    Ok(DiffBody {
        from,
        to,
        changes,
        weakenings,
    })
}

/// The differences between two versions.
#[utoipa::path(get, path = "/api/v1/models/{model}/monitoring/diff",
    params(("model" = String, Path), DiffQuery), responses((status = 200, body = DiffBody)))]
pub async fn diff_versions(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<DiffBody>, ApiError> {
    let entry = state.model(&model_name(&model)?).await?;
    Ok(Json(diff_of(&state, &entry, q.from, q.to).await?))
}

/// `POST …/monitoring/rollback`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// The version to return to.
    pub version: i64,
    /// Why.
    pub reason: Option<String>,
}

/// Makes an earlier version current again, as a new version (history is never rewritten). A
/// rollback that weakens monitoring follows the two-person rule like any other change.
#[utoipa::path(post, path = "/api/v1/models/{model}/monitoring/rollback",
    params(("model" = String, Path)), request_body = RollbackRequest,
    responses((status = 200, body = custos_proto::MonitoringConfigBody),
              (status = 202, body = PendingChangeBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let request: RollbackRequest = parse_json(&raw)?;
    let entry = state.model(&model_name(&model)?).await?;
    let (_, value) = version_config(&state, &entry, request.version).await?;
    let config: MonitoringConfig = serde_json::from_value(value).map_err(ApiError::internal)?;
    let reason = clean_reason(request.reason)?;
    let reason = Some(match reason {
        Some(r) => format!("rollback to version {}: {r}", request.version),
        None => format!("rollback to version {}", request.version),
    });
    apply_monitoring_change(
        &state,
        &ctx,
        &who,
        &entry,
        config,
        reason,
        "monitoring.rollback",
    )
    .await
}

async fn decide(
    state: &AppState,
    ctx: &RequestContext,
    who: &Authorized,
    model: &str,
    id: i64,
    approve: bool,
) -> Result<Json<PendingChangeBody>, ApiError> {
    let entry = state.model(&model_name(model)?).await?;
    let change = state
        .store
        .pending_change(id)
        .await?
        .filter(|c| c.model_id == entry.id)
        .ok_or_else(|| ApiError::not_found("change"))?;
    let actor = who.principal.actor_id();
    // The rule exists so one person cannot weaken monitoring alone: the author cannot approve
    // their own change (they may withdraw it by rejecting).
    if approve && change.requested_by == actor {
        return Err(ApiError::forbidden_because(
            "the author of a change cannot approve it; a second person must",
        ));
    }
    let audit = audit_for(
        state,
        ctx,
        who,
        if approve {
            "monitoring.approve"
        } else {
            "monitoring.reject"
        },
        format!("model/{}", entry.schema.name()),
        serde_json::json!({
            "change": change.id,
            "requested_by": change.requested_by,
            "base_version": change.base_version,
        }),
    );
    state
        .store
        .decide_pending_change(&change, approve, &actor, state.clock.now(), &audit)
        .await?;
    let row = state
        .store
        .pending_change(id)
        .await?
        .ok_or_else(|| ApiError::internal("change vanished"))?;
    Ok(Json(pending_body(row)))
}

/// Approves a proposed change (someone other than its author): it becomes a new version.
#[utoipa::path(post, path = "/api/v1/models/{model}/monitoring/changes/{id}/approve",
    params(("model" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = PendingChangeBody)))]
pub async fn approve(
    State(state): State<AppState>,
    Path((model, id)): Path<(String, i64)>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<Json<PendingChangeBody>, ApiError> {
    decide(&state, &ctx, &who, &model, id, true).await
}

/// Rejects (or, by its author, withdraws) a proposed change.
#[utoipa::path(post, path = "/api/v1/models/{model}/monitoring/changes/{id}/reject",
    params(("model" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = PendingChangeBody)))]
pub async fn reject(
    State(state): State<AppState>,
    Path((model, id)): Path<(String, i64)>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<Json<PendingChangeBody>, ApiError> {
    decide(&state, &ctx, &who, &model, id, false).await
}

/// A reference data set in the lineage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineageReference {
    /// Public id.
    pub id: String,
    /// Name.
    pub name: String,
    /// SHA-256 of the uploaded file (hex).
    pub sha256: String,
    /// Rows.
    pub rows: u64,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When (RFC 3339).
    pub uploaded_at: String,
}

/// `GET …/lineage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineageBody {
    /// The model.
    pub model: String,
    /// When it was registered (RFC 3339).
    pub registered_at: String,
    /// SHA-256 of its registered specification (schema and masking), hex.
    pub spec_sha256: String,
    /// Reference data sets, oldest first; drift compares with the newest unless told otherwise.
    pub references: Vec<LineageReference>,
    /// Monitoring configuration versions, oldest first (drift results and reports name the
    /// version they were computed under as `config_version`).
    pub config_versions: Vec<VersionBody>,
}

/// Where the model's monitoring results come from.
#[utoipa::path(get, path = "/api/v1/models/{model}/lineage",
    params(("model" = String, Path)), responses((status = 200, body = LineageBody)))]
pub async fn lineage(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<LineageBody>, ApiError> {
    use sha2::Digest as _;
    let entry = state.model(&model_name(&model)?).await?;
    let references = state
        .store
        .references(entry.id)
        .await?
        .into_iter()
        .map(|r| LineageReference {
            id: r.uid,
            name: r.name,
            sha256: hex::encode(r.sha256),
            rows: r.row_count,
            uploaded_by: r.created_by,
            uploaded_at: r.created_at.to_rfc3339(),
        })
        .collect();
    let config_versions = state
        .store
        .monitoring_config_versions(entry.id)
        .await?
        .into_iter()
        .map(version_body)
        .collect();
    Ok(Json(LineageBody {
        model: entry.schema.name().to_string(),
        registered_at: entry.created_at.to_rfc3339(),
        spec_sha256: hex::encode(sha2::Sha256::digest(entry.spec_json.as_bytes())),
        references,
        config_versions,
    }))
}
