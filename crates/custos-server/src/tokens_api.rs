//! API-token lifecycle beyond create / list / revoke: rotation with an overlap period, and the
//! token-lifetime settings (`[tokens]`).
//!
//! Owns the rotation procedure: the new token carries exactly the old one's scopes (the caller
//! must be able to grant every one of them), its secret is shown once, and the old secret keeps
//! working only for the overlap so that a pipeline can switch without an outage. Both changes
//! and their audit record commit together.

use crate::api::{body, parse_json};
use crate::auth::{Authorized, audit_for, grants_from_scopes};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Duration;
use custos_crypto::token::{TokenPrefix, display_prefix, generate_token};
use custos_proto::{CreatedToken, ScopeSpec, TokenInfo};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

/// The token routes' part of the OpenAPI description.
#[derive(OpenApi)]
#[openapi(paths(rotate))]
pub struct TokensDoc;

/// `[tokens]`: lifetimes of API tokens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Longest lifetime a token may be given; every token expires.
    pub max_days: u32,
    /// Lifetime when the request names none.
    pub default_days: u32,
    /// Longest overlap during which a rotated token's old secret keeps working.
    pub max_overlap_hours: u32,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            max_days: 365,
            default_days: 90,
            max_overlap_hours: 168,
        }
    }
}

impl TokensConfig {
    /// Checks the settings agree with each other.
    pub fn check(&self) -> Result<(), String> {
        if self.max_days == 0 || self.max_days > 3_650 {
            return Err("tokens.max_days must lie between 1 and 3650".into());
        }
        if self.default_days == 0 || self.default_days > self.max_days {
            return Err("tokens.default_days must lie between 1 and tokens.max_days".into());
        }
        if self.max_overlap_hours > 24 * 30 {
            return Err("tokens.max_overlap_hours must be at most 720".into());
        }
        Ok(())
    }
}

/// `POST /api/v1/tokens/{id}/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RotateRequest {
    /// Hours the old secret keeps working (default 24, at most `tokens.max_overlap_hours`; 0
    /// ends it at once).
    #[serde(default)]
    pub overlap_hours: Option<u32>,
    /// Lifetime of the new token in days (default `tokens.default_days`).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// The new token (its secret, shown once) and when the old one stops working.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedToken {
    /// The new token.
    #[serde(flatten)]
    pub created: CreatedToken,
    /// The old token's id.
    pub replaces: String,
    /// When the old secret stops working.
    pub old_expires_at: chrono::DateTime<chrono::Utc>,
}

/// Rotates a token: a new secret with the same scopes; the old one works for the overlap only.
#[utoipa::path(post, path = "/api/v1/tokens/{id}/rotate", params(("id" = String, Path)),
    request_body = RotateRequest,
    responses((status = 201, body = RotatedToken), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RotatedToken>), ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let request: RotateRequest = if raw.is_empty() {
        RotateRequest::default()
    } else {
        parse_json(&raw)?
    };
    let settings = &state.config.tokens;
    let overlap = request.overlap_hours.unwrap_or(24);
    if overlap > settings.max_overlap_hours {
        return Err(ApiError::bad_request(format!(
            "overlap_hours must be at most {}",
            settings.max_overlap_hours
        )));
    }
    let days = request.expires_in_days.unwrap_or(settings.default_days);
    if !(1..=settings.max_days).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "expires_in_days must lie between 1 and {}",
            settings.max_days
        )));
    }
    let now = state.clock.now();
    let old = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .find(|t| t.id == id && t.revoked_at.is_none() && t.expires_at > now)
        .ok_or_else(|| ApiError::not_found("live token"))?;
    let scopes: Vec<ScopeSpec> = serde_json::from_str(&old.scopes_json)
        .map_err(|_| ApiError::internal("stored token scopes are unreadable"))?;
    // Rotation mints a credential: the caller must be able to grant everything it carries.
    for grant in grants_from_scopes(&scopes) {
        if !who.principal.can_delegate(&grant) {
            return Err(ApiError::forbidden());
        }
    }
    let secret = generate_token(TokenPrefix::Api).map_err(ApiError::internal)?;
    let id_hex = crate::context::random_id();
    let new_id = format!("tok_{}", id_hex.get(..16).unwrap_or(&id_hex));
    let new = custos_store::NewToken {
        id: new_id.clone(),
        hash: state.keys.token_hasher().hash(secret.expose()),
        display_prefix: display_prefix(secret.expose()),
        description: old.description.clone(),
        scopes_json: old.scopes_json.clone(),
        created_by: who.principal.actor_id(),
        created_at: now,
        expires_at: now + Duration::days(i64::from(days)),
    };
    let old_until = (now + Duration::hours(i64::from(overlap))).min(old.expires_at);
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "token.rotate",
        format!("token/{}", old.id),
        serde_json::json!({
            "new_token": new_id,
            "scopes": scopes,
            "old_expires_at": old_until,
            "new_expires_at": new.expires_at,
        }),
    );
    state
        .store
        .rotate_token(&old.id, &new, old_until, now, &audit)
        .await?;
    let token = TokenInfo {
        id: new_id,
        prefix: new.display_prefix.clone(),
        description: new.description.clone(),
        scopes,
        created_by: new.created_by.clone(),
        created_at: now,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    Ok((
        StatusCode::CREATED,
        Json(RotatedToken {
            created: CreatedToken {
                token,
                secret: secret.expose().to_owned(),
            },
            replaces: old.id,
            old_expires_at: old_until,
        }),
    ))
}
