//! The auditor's API over the tamper-evident log: the latest signed checkpoint, the public
//! signing keys with their windows, inclusion and consistency proofs, full verification, the
//! offline export, and the keyed hash of a known value.
//!
//! Every route here is in the policy table under `audit:read`; handlers only translate. The
//! export is itself an access to the log and is audited (fail closed) before a byte is sent.

use crate::audit_log::{self, AuditLogError};
use crate::auth::{Authorized, audit_for};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use custos_crypto::auditexport::{ExportLine, FORMAT};
use custos_store::{AUDIT_ORIGIN_META, Store};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The audit routes' part of the OpenAPI description.
#[derive(OpenApi)]
#[openapi(paths(
    latest_checkpoint,
    signing_keys,
    inclusion,
    consistency,
    verify,
    export,
    hash_value
))]
pub struct AuditDoc;

impl From<AuditLogError> for ApiError {
    fn from(e: AuditLogError) -> Self {
        match e {
            AuditLogError::Store(e) => e.into(),
            AuditLogError::Request(message) => ApiError::bad_request(message),
            other => {
                tracing::error!(error = %other, "audit log operation failed");
                ApiError::unavailable("the audit log is not available")
            }
        }
    }
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointBody {
    /// Entries covered.
    pub tree_size: i64,
    /// Hex of the Merkle root.
    pub root: String,
    /// The C2SP signed note (verify with the key of `key_version`).
    pub note: String,
    /// Signing key version.
    pub key_version: i64,
    /// When it was signed (RFC 3339).
    pub signed_at: String,
    /// Seconds since it was signed.
    pub age_seconds: i64,
}

/// `GET /api/v1/audit/checkpoint`: the newest signed checkpoint.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint",
    responses((status = 200, body = CheckpointBody), (status = 404, description = "none yet")))]
pub async fn latest_checkpoint(
    State(state): State<AppState>,
) -> Result<Json<CheckpointBody>, ApiError> {
    let row = state
        .store
        .latest_audit_checkpoint()
        .await?
        .ok_or_else(|| ApiError::not_found("audit checkpoint"))?;
    let age = state.clock.now().signed_duration_since(row.signed_at);
    Ok(Json(CheckpointBody {
        tree_size: row.tree_size,
        root: hex::encode(row.root),
        note: row.note,
        key_version: row.key_version,
        signed_at: row.signed_at.to_rfc3339(),
        age_seconds: age.num_seconds(),
    }))
}

/// A checkpoint signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyBody {
    /// Version.
    pub version: i64,
    /// C2SP verifier key (`name+keyid+base64`), for `custos audit verify --trusted-key`.
    pub verifier_key: String,
    /// Window start (RFC 3339).
    pub valid_from: String,
    /// Window end, if retired.
    pub valid_until: Option<String>,
}

/// `GET /api/v1/audit/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SigningKeysBody {
    /// The log's origin (the first line of every checkpoint).
    pub origin: String,
    /// Keys, oldest first.
    pub keys: Vec<SigningKeyBody>,
}

/// `GET /api/v1/audit/keys`: the public signing keys and their validity windows.
#[utoipa::path(get, path = "/api/v1/audit/keys", responses((status = 200, body = SigningKeysBody)))]
pub async fn signing_keys(
    State(state): State<AppState>,
) -> Result<Json<SigningKeysBody>, ApiError> {
    let origin = audit_log::origin(&state.store).await?;
    let keys = state
        .store
        .audit_signing_keys()
        .await?
        .into_iter()
        .map(|k| SigningKeyBody {
            version: k.version,
            verifier_key: k.verifier_key,
            valid_from: k.valid_from.to_rfc3339(),
            valid_until: k.valid_until.map(|t| t.to_rfc3339()),
        })
        .collect();
    Ok(Json(SigningKeysBody { origin, keys }))
}

/// Query of an inclusion proof.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InclusionQuery {
    /// The entry (1-based).
    pub seq: i64,
    /// The tree size (a checkpoint's).
    pub tree_size: i64,
}

/// An RFC 9162 inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InclusionBody {
    /// The entry.
    pub seq: i64,
    /// Tree size.
    pub tree_size: i64,
    /// Hex of the entry's leaf hash (`SHA-256(0x00 ‖ record)`).
    pub leaf_hash: String,
    /// Hex hashes, bottom up.
    pub proof: Vec<String>,
}

/// `GET /api/v1/audit/proof/inclusion`.
#[utoipa::path(get, path = "/api/v1/audit/proof/inclusion", params(InclusionQuery),
    responses((status = 200, body = InclusionBody)))]
pub async fn inclusion(
    State(state): State<AppState>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionBody>, ApiError> {
    let (leaf, proof) = audit_log::inclusion_proof(&state, q.seq, q.tree_size).await?;
    Ok(Json(InclusionBody {
        seq: q.seq,
        tree_size: q.tree_size,
        leaf_hash: hex::encode(leaf),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// Query of a consistency proof.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    /// Older tree size.
    pub from: i64,
    /// Newer tree size.
    pub to: i64,
}

/// An RFC 9162 consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyBody {
    /// Older size.
    pub from: i64,
    /// Newer size.
    pub to: i64,
    /// Hex hashes.
    pub proof: Vec<String>,
}

/// `GET /api/v1/audit/proof/consistency`.
#[utoipa::path(get, path = "/api/v1/audit/proof/consistency", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyBody)))]
pub async fn consistency(
    State(state): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyBody>, ApiError> {
    let proof = audit_log::consistency_proof(&state, q.from, q.to).await?;
    Ok(Json(ConsistencyBody {
        from: q.from,
        to: q.to,
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// The result of verifying the stored log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyBody {
    /// Whether everything verified.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints whose signature and root matched.
    pub checkpoints: u64,
    /// The newest verified checkpoint's size.
    pub latest_checkpoint: u64,
    /// Entries after it (chained, not yet signed).
    pub unsigned_tail: u64,
    /// The first entry verification found bad, when not ok.
    pub first_bad_seq: Option<u64>,
    /// What was wrong, when not ok (never record content).
    pub problem: Option<String>,
}

/// Converts a verification outcome to the wire body (shared with the UI).
pub fn verify_body(
    outcome: Result<custos_crypto::auditlog::Verified, custos_crypto::auditlog::Problem>,
) -> VerifyBody {
    match outcome {
        Ok(v) => VerifyBody {
            ok: true,
            entries: v.entries,
            checkpoints: v.checkpoints,
            latest_checkpoint: v.latest_checkpoint,
            unsigned_tail: v.unsigned_tail,
            first_bad_seq: None,
            problem: None,
        },
        Err(problem) => {
            let first = problem.first_entry();
            VerifyBody {
                ok: false,
                entries: 0,
                checkpoints: 0,
                latest_checkpoint: 0,
                unsigned_tail: 0,
                first_bad_seq: first,
                problem: Some(problem.to_string()),
            }
        }
    }
}

/// `GET /api/v1/audit/verify`: verifies chain, positions, checkpoint signatures, key windows and
/// roots of the whole stored log.
#[utoipa::path(get, path = "/api/v1/audit/verify", responses((status = 200, body = VerifyBody)))]
pub async fn verify(State(state): State<AppState>) -> Result<Json<VerifyBody>, ApiError> {
    let outcome = state.store.verify_audit_log(None, &[]).await?;
    Ok(Json(verify_body(outcome)))
}

/// The export's lines before the entries: header, keys, checkpoints.
pub async fn export_preamble(
    store: &Store,
    exported_at: String,
) -> Result<Vec<String>, custos_store::StoreError> {
    let origin = store.get_meta(AUDIT_ORIGIN_META).await?.unwrap_or_default();
    let anchor = u64::try_from(store.audit_anchor().await?).unwrap_or(0);
    let mut lines = vec![ExportLine::Header {
        format: FORMAT.into(),
        origin,
        anchor,
        exported_at,
    }];
    for key in store.audit_signing_keys().await? {
        lines.push(ExportLine::Key {
            version: u32::try_from(key.version).unwrap_or(0),
            verifier_key: key.verifier_key,
            valid_from: key.valid_from.timestamp_micros(),
            valid_until: key.valid_until.map(|t| t.timestamp_micros()),
        });
    }
    for cp in store.audit_checkpoints().await? {
        lines.push(ExportLine::Checkpoint {
            tree_size: u64::try_from(cp.tree_size).unwrap_or(0),
            note: cp.note,
            key_version: u32::try_from(cp.key_version).unwrap_or(0),
            signed_at: cp.signed_at.timestamp_micros(),
            frontier: hex::encode(&cp.frontier),
            chain_hash: hex::encode(cp.chain_hash),
        });
    }
    lines
        .iter()
        .map(|line| {
            serde_json::to_string(line)
                .map(|mut text| {
                    text.push('\n');
                    text
                })
                .map_err(|e| custos_store::StoreError::Database(format!("export line: {e}")))
        })
        .collect()
}

/// The export's entry lines after `after`, one page.
pub async fn export_entries(
    store: &Store,
    after: i64,
    limit: u32,
) -> Result<(String, Option<i64>), custos_store::StoreError> {
    let page = store.audit_entries_raw(after, limit).await?;
    let mut out = String::new();
    let mut last = None;
    for (seq, record, hash) in page {
        let line = ExportLine::Entry {
            seq: u64::try_from(seq).unwrap_or(0),
            // Stored records are UTF-8 JSON; a damaged one is exported as its lossy text so the
            // verifier reports it at its position instead of the export failing.
            record: String::from_utf8_lossy(&record).into_owned(),
            hash: hex::encode(hash),
        };
        if let Ok(text) = serde_json::to_string(&line) {
            out.push_str(&text);
            out.push('\n');
        }
        last = Some(seq);
    }
    Ok((out, last))
}

/// `GET /api/v1/audit/export`: the whole log as `custos-audit-export/1` JSON lines, streamed.
/// Audited before anything is sent.
#[utoipa::path(get, path = "/api/v1/audit/export",
    responses((status = 200, content_type = "application/x-ndjson", description = "export lines")))]
pub async fn export(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Extension(who): Extension<Authorized>,
) -> Result<Response, ApiError> {
    let event = audit_for(
        &state,
        &ctx,
        &who,
        "audit.export",
        "audit".into(),
        serde_json::json!({}),
    );
    state.store.append_audit(&event).await.map_err(|e| {
        tracing::error!(error = %e, "audit append failed; export refused");
        ApiError::unavailable("the audit log cannot be written; the export is refused")
    })?;
    let preamble = export_preamble(&state.store, state.clock.now().to_rfc3339()).await?;
    let store = state.store.clone();
    let head = futures_util::stream::iter(preamble.into_iter().map(Ok::<_, std::io::Error>));
    let entries = futures_util::stream::unfold(Some(0i64), move |cursor| {
        let store = store.clone();
        async move {
            let after = cursor?;
            match export_entries(&store, after, 5_000).await {
                Ok((_, None)) => None,
                Ok((text, Some(last))) => Some((Ok(text), Some(last))),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let body = Body::from_stream(futures_util::StreamExt::chain(head, entries));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
}

/// `POST /api/v1/audit/hash` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct HashRequest {
    /// The value to tag (a user name, a token, an e-mail address).
    pub value: String,
}

/// The tag audit records carry for that value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HashResponse {
    /// `hmac-sha256:<hex>`.
    pub hmac: String,
}

/// `POST /api/v1/audit/hash`: the keyed hash under which audit records mention `value`. The
/// value is in the body (never the URL, so it stays out of access logs) and is not recorded.
#[utoipa::path(post, path = "/api/v1/audit/hash", request_body = HashRequest,
    responses((status = 200, body = HashResponse)))]
pub async fn hash_value(
    State(state): State<AppState>,
    Json(body): Json<HashRequest>,
) -> Result<Json<HashResponse>, ApiError> {
    if body.value.len() > 4_096 {
        return Err(ApiError::bad_request("value longer than 4096 bytes"));
    }
    Ok(Json(HashResponse {
        hmac: state.keys.audit_hasher().tag(&body.value),
    }))
}
