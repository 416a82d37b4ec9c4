//! The token vault of the `tokenize` masking kind, and the three routes that touch stored rows
//! and vault entries.
//!
//! Owns:
//! - tokenization at ingest ([`tokens_for`], [`WithTokens`]): the distinct values of a batch's
//!   `tokenize` columns are found in the model's vault by a keyed lookup hash; new ones get a
//!   fresh random token and their original sealed under the model's vault key, inserted (insert
//!   if absent, so racing batches end up with one token per value) **before** the batch commits;
//! - `GET /api/v1/models/{model}/events` (`rows:read`): the stored rows of a window, newest
//!   first, as stored — masked values, pseudonyms, tokens — never an original; audited
//!   (`rows.read`: window and row count, no values);
//! - `POST /api/v1/models/{model}/reveal` (`pii:reveal`, its own rate-limit budget): originals
//!   of up to 100 tokens against a written justification; the audit record (justification,
//!   token ids, counts — never values) is appended **before** anything is decrypted, and if it
//!   cannot be written no value leaves;
//! - `DELETE /api/v1/models/{model}/vault/{token}` (`pii:erase`): erasure of one subject's
//!   entry (the sealed original and its lookup hash are deleted, a tombstone keeps the token),
//!   committed together with its audit record.
//!
//! Must not: log, audit or put into an error any original value or lookup hash.

use crate::api::{body, model_name};
use crate::auth::{Authorized, audit_for};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::{AppState, ModelEntry};
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use custos_core::{EventKey, Ff1Alphabet, MaskedRecord, MaskedValue, ModelName, ValidatedRecord};
use custos_crypto::HmacPseudonymizer;
use custos_crypto::KeyPurpose;
use custos_crypto::seal::open_batch;
use custos_crypto::vault::{is_token, new_token, open_entry, seal_entry};
use custos_store::{NewVaultEntry, StoreError, VaultEntry};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use utoipa::ToSchema;

/// Most rows `GET …/events` returns.
pub const MAX_ROWS: u32 = 1_000;
/// Rows returned when `limit` is not given.
const DEFAULT_ROWS: u32 = 100;
/// Most tokens one reveal may name.
pub const MAX_REVEAL_TOKENS: usize = 100;
/// Shortest and longest justification, in characters.
pub const JUSTIFICATION_CHARS: std::ops::RangeInclusive<usize> = 20..=500;

// ---------------------------------------------------------------------------------------------
// Tokenization at ingest

/// The masking functions with the batch's vault tokens at hand.
pub struct WithTokens<'a> {
    inner: &'a HmacPseudonymizer,
    tokens: &'a HashMap<String, String>,
}

impl<'a> WithTokens<'a> {
    /// `tokens` maps each original of the batch's `tokenize` columns to its vault token.
    pub fn new(inner: &'a HmacPseudonymizer, tokens: &'a HashMap<String, String>) -> Self {
        Self { inner, tokens }
    }
}

impl custos_core::Pseudonymizer for WithTokens<'_> {
    fn pseudonym(&self, value: &str) -> String {
        self.inner.pseudonym(value)
    }

    fn event_key(&self, model: &ModelName, event_id: &str) -> EventKey {
        self.inner.event_key(model, event_id)
    }

    fn format_preserving(&self, alphabet: Ff1Alphabet, value: &str) -> Option<String> {
        self.inner.format_preserving(alphabet, value)
    }

    fn token(&self, value: &str) -> Option<String> {
        self.tokens.get(value).cloned()
    }
}

/// The vault token of every distinct value of the records' `tokenize` columns, inserting the
/// entries of values the model's vault does not hold yet. Empty for models without such a
/// column (no store round trip).
pub async fn tokens_for(
    state: &AppState,
    model: &ModelEntry,
    records: &[ValidatedRecord],
) -> Result<HashMap<String, String>, ApiError> {
    let values: HashSet<&str> = records
        .iter()
        .flat_map(|r| r.tokenized_values(&model.schema))
        .collect();
    if values.is_empty() {
        return Ok(HashMap::new());
    }
    let lookup = state.keys.vault_lookup();
    let by_lookup: HashMap<[u8; 32], &str> = values
        .into_iter()
        .map(|v| (lookup.lookup(model.id, v), v))
        .collect();
    let lookups: Vec<[u8; 32]> = by_lookup.keys().copied().collect();
    let mut found = state.store.vault_tokens(model.id, &lookups).await?;
    let missing: Vec<[u8; 32]> = lookups
        .iter()
        .filter(|l| !found.contains_key(*l))
        .copied()
        .collect();
    if !missing.is_empty() {
        let key = state
            .keys
            .vault_key(model.id)
            .await
            .map_err(ApiError::internal)?;
        let mut entries = Vec::with_capacity(missing.len());
        for l in missing {
            let Some(value) = by_lookup.get(&l) else {
                continue;
            };
            let token = new_token().map_err(ApiError::internal)?;
            let sealed = seal_entry(&key, model.id, &token, value).map_err(ApiError::internal)?;
            entries.push(NewVaultEntry {
                lookup: l,
                token,
                sealed,
            });
        }
        let stored = state
            .store
            .insert_vault_entries(model.id, &entries, state.clock.now())
            .await?;
        found.extend(stored);
    }
    let mut tokens = HashMap::with_capacity(by_lookup.len());
    for (l, value) in by_lookup {
        let token = found
            .get(&l)
            .ok_or_else(|| ApiError::internal("a token-vault entry is missing after its insert"))?;
        tokens.insert(value.to_owned(), token.clone());
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/models/{model}/events

/// The query of `GET …/events`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsQuery {
    /// Window start (inclusive), RFC 3339.
    pub start: DateTime<Utc>,
    /// Window end (exclusive), RFC 3339.
    pub end: DateTime<Utc>,
    /// Most rows returned (1–1000, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One stored row.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventRow {
    /// The event id.
    pub event_id: String,
    /// The event time.
    pub timestamp: DateTime<Utc>,
    /// Field values as stored (dropped fields are absent).
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
}

/// The answer of `GET …/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsBody {
    /// The model.
    pub model: String,
    /// Rows of the window, newest first.
    pub rows: Vec<EventRow>,
    /// Whether the window holds more rows than were returned.
    pub truncated: bool,
}

fn stored_value(value: &MaskedValue) -> Option<Value> {
    match value {
        MaskedValue::Dropped => None,
        MaskedValue::Missing => Some(Value::Null),
        MaskedValue::Redacted => Some(json!(MaskedValue::REDACTED_MARKER)),
        MaskedValue::Pseudonym(s) | MaskedValue::Token(s) | MaskedValue::Text(s) => Some(json!(s)),
        MaskedValue::Number(n) => Some(json!(n)),
        MaskedValue::Bool(b) => Some(json!(b)),
        MaskedValue::Time(t) => Some(json!(t.to_rfc3339())),
    }
}

fn event_row(model: &ModelEntry, record: &MaskedRecord) -> EventRow {
    let mut values = Map::new();
    for (column, value) in model.schema.columns().iter().zip(record.values()) {
        if let Some(v) = stored_value(value) {
            values.insert(column.name.to_string(), v);
        }
    }
    EventRow {
        event_id: record.event_id().to_owned(),
        timestamp: record.timestamp(),
        values,
    }
}

/// `GET /api/v1/models/{model}/events?start=&end=&limit=`: stored rows as stored (tokens,
/// pseudonyms, masked values; never an original), newest first. Audited.
#[utoipa::path(get, path = "/api/v1/models/{model}/events",
    params(("model" = String, Path),
           ("start" = String, Query, description = "window start, RFC 3339 (inclusive)"),
           ("end" = String, Query, description = "window end, RFC 3339 (exclusive)"),
           ("limit" = Option<u32>, Query, description = "most rows, 1–1000 (default 100)")),
    responses((status = 200, body = EventsBody), (status = 400, body = custos_proto::ErrorBody)))]
pub async fn get_events(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        q.map_err(|_| ApiError::bad_request("start and end are required RFC 3339 times"))?;
    let limit = q.limit.unwrap_or(DEFAULT_ROWS);
    if !(1..=MAX_ROWS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must lie between 1 and {MAX_ROWS}"
        )));
    }
    if q.start >= q.end {
        return Err(ApiError::bad_request("start must be before end"));
    }
    let entry = state.model(&model_name(&model)?).await?;
    let range = q.start..q.end;
    let mut batches = state.store.batches(entry.id, range.clone()).await?;
    // Newest batches first; stop once `limit` rows are held and no unread batch can hold a
    // newer one.
    batches.sort_by(|a, b| b.max_time.cmp(&a.max_time).then(b.id.cmp(&a.id)));
    let limit = limit as usize;
    let mut rows: Vec<MaskedRecord> = Vec::new();
    let mut truncated = false;
    for batch in batches {
        if rows.len() >= limit
            && rows
                .last()
                .is_some_and(|oldest| batch.max_time < oldest.timestamp())
        {
            truncated = true;
            break;
        }
        let key = state
            .keys
            .data_key(entry.id, batch.partition, KeyPurpose::Events)
            .await
            .map_err(ApiError::internal)?;
        let records = open_batch(&key, entry.id, batch.partition, &batch.ciphertext)
            .map_err(|e| ApiError::internal(format!("batch {} failed to open: {e}", batch.id)))?;
        rows.extend(
            records
                .into_iter()
                .filter(|r| range.contains(&r.timestamp())),
        );
        rows.sort_by_key(|r| std::cmp::Reverse(r.timestamp()));
        if rows.len() > limit {
            rows.truncate(limit);
            truncated = true;
        }
    }
    let body = EventsBody {
        model: entry.schema.name().to_string(),
        rows: rows.iter().map(|r| event_row(&entry, r)).collect(),
        truncated,
    };
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "rows.read",
        format!("model/{}", entry.schema.name()),
        json!({
            "start": q.start.to_rfc3339(),
            "end": q.end.to_rfc3339(),
            "limit": limit,
            "rows": body.rows.len(),
        }),
    );
    state.store.append_audit(&audit).await.map_err(|e| {
        tracing::error!(error = %e, "audit append failed; rows refused");
        ApiError::unavailable("the audit log cannot be written; the rows are refused")
    })?;
    Ok(no_store(Json(body).into_response()))
}

/// Marks an answer holding row data as not to be cached anywhere.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// POST /api/v1/models/{model}/reveal

/// The body of `POST …/reveal`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    /// The tokens to reveal (1–100).
    pub tokens: Vec<String>,
    /// Why (20–500 characters); recorded in the audit log.
    pub justification: String,
}

/// One token's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevealedToken {
    /// The token.
    pub token: String,
    /// `revealed`, `erased` (the subject's entry was erased) or `unknown`.
    pub status: String,
    /// The original, when revealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The answer of `POST …/reveal`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevealBody {
    /// One entry per distinct token asked, in the order asked.
    pub results: Vec<RevealedToken>,
}

/// `POST /api/v1/models/{model}/reveal`: the originals of vault tokens, with a justification;
/// needs `pii:reveal`, spends the reveal budget, audited before anything is decrypted.
#[utoipa::path(post, path = "/api/v1/models/{model}/reveal",
    params(("model" = String, Path)), request_body = RevealRequest,
    responses((status = 200, body = RevealBody), (status = 400, body = custos_proto::ErrorBody),
              (status = 429, body = custos_proto::ErrorBody),
              (status = 503, body = custos_proto::ErrorBody)))]
pub async fn reveal(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    // The body's own text is never echoed (the justification is free text).
    let request: RevealRequest = serde_json::from_slice(&raw).map_err(|_| {
        ApiError::bad_request(
            "the body must be {\"tokens\": [\"tok_…\", …], \"justification\": \"…\"}",
        )
    })?;
    let justification = request.justification.trim();
    if !JUSTIFICATION_CHARS.contains(&justification.chars().count()) {
        return Err(ApiError::bad_request(format!(
            "justification must be {} to {} characters: say why the originals are needed",
            JUSTIFICATION_CHARS.start(),
            JUSTIFICATION_CHARS.end()
        )));
    }
    if request.tokens.is_empty() || request.tokens.len() > MAX_REVEAL_TOKENS {
        return Err(ApiError::bad_request(format!(
            "tokens must name 1 to {MAX_REVEAL_TOKENS} vault tokens"
        )));
    }
    if let Some(i) = request.tokens.iter().position(|t| !is_token(t)) {
        return Err(ApiError::bad_request(format!(
            "tokens[{i}] is not a vault token (tok_ and 22 URL-safe characters)"
        )));
    }
    let mut tokens: Vec<String> = Vec::with_capacity(request.tokens.len());
    for t in request.tokens {
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    let entry = state.model(&model_name(&model)?).await?;
    let stored = state.store.vault_entries(entry.id, &tokens).await?;
    let count = |want: fn(Option<&VaultEntry>) -> bool| {
        tokens.iter().filter(|t| want(stored.get(*t))).count()
    };
    let revealed = count(|e| matches!(e, Some(VaultEntry::Sealed(_))));
    let erased = count(|e| matches!(e, Some(VaultEntry::Erased)));
    // Audited before anything is decrypted; no record, no value.
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "pii.reveal",
        format!("model/{}", entry.schema.name()),
        json!({
            "justification": justification,
            "tokens": tokens,
            "count": tokens.len(),
            "revealed": revealed,
            "erased": erased,
            "unknown": tokens.len() - revealed - erased,
        }),
    );
    state.store.append_audit(&audit).await.map_err(|e| {
        tracing::error!(error = %e, "audit append failed; reveal refused");
        ApiError::unavailable("the audit log cannot be written; nothing is revealed")
    })?;
    let key = if revealed > 0 {
        Some(
            state
                .keys
                .vault_key(entry.id)
                .await
                .map_err(ApiError::internal)?,
        )
    } else {
        None
    };
    let mut results = Vec::with_capacity(tokens.len());
    for token in tokens {
        let (status, value) = match (stored.get(&token), &key) {
            (Some(VaultEntry::Sealed(sealed)), Some(key)) => {
                let original = open_entry(key, entry.id, &token, sealed).map_err(|e| {
                    ApiError::internal(format!("a vault entry failed to open: {e}"))
                })?;
                ("revealed", Some(original.to_string()))
            }
            (Some(VaultEntry::Erased), _) => ("erased", None),
            _ => ("unknown", None),
        };
        results.push(RevealedToken {
            token,
            status: status.to_owned(),
            value,
        });
    }
    Ok(no_store(Json(RevealBody { results }).into_response()))
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/v1/models/{model}/vault/{token}

/// `DELETE /api/v1/models/{model}/vault/{token}`: erases one subject's vault entry.
#[utoipa::path(delete, path = "/api/v1/models/{model}/vault/{token}",
    params(("model" = String, Path), ("token" = String, Path)),
    responses((status = 204), (status = 400, body = custos_proto::ErrorBody),
              (status = 404, body = custos_proto::ErrorBody)))]
pub async fn erase(
    State(state): State<AppState>,
    Path((model, token)): Path<(String, String)>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<StatusCode, ApiError> {
    if !is_token(&token) {
        return Err(ApiError::bad_request(
            "not a vault token (tok_ and 22 URL-safe characters)",
        ));
    }
    let entry = state.model(&model_name(&model)?).await?;
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "vault.erase",
        format!("model/{}", entry.schema.name()),
        json!({ "token": token }),
    );
    match state
        .store
        .erase_vault_entry(entry.id, &token, state.clock.now(), &audit)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::not_found("vault entry")),
        Err(e) => Err(e.into()),
    }
}
