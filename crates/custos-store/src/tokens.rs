//! Token rotation: a new secret with the same scopes, and the old one kept working only for an
//! overlap period so that clients can switch without an outage.
//!
//! Owns the one transaction that shortens the old token's expiry, stores the new token (its keyed
//! hash only) and appends the audit entry. The server decides the overlap and who may rotate.

use crate::convert::micros;
use crate::error::is_unique_violation;
use crate::types::NewToken;
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use custos_core::AuditEvent;

const SHORTEN_OLD: &str = "UPDATE api_tokens SET expires_at = CASE WHEN expires_at < ? \
     THEN expires_at ELSE ? END WHERE id = ? AND revoked_at IS NULL AND expires_at > ?";
const INSERT_NEW: &str = "INSERT INTO api_tokens (id, hash, display_prefix, description, \
     scopes_json, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

impl Store {
    /// Rotates token `old_id`: it keeps working until `old_until` (never longer than it would
    /// have), and `new` is stored, with `audit`, in one transaction. [`StoreError::NotFound`] if
    /// the old token is unknown, revoked or already expired at `now`.
    pub async fn rotate_token(
        &self,
        old_id: &str,
        new: &NewToken,
        old_until: DateTime<Utc>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, audit, |tx, sql| {
            let shortened = sqlx::query(sqlx::AssertSqlSafe(sql(SHORTEN_OLD)))
                .bind(micros(old_until))
                .bind(micros(old_until))
                .bind(old_id)
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
            if shortened.rows_affected() != 1 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(sqlx::AssertSqlSafe(sql(INSERT_NEW)))
                .bind(new.id.as_str())
                .bind(&new.hash[..])
                .bind(new.display_prefix.as_str())
                .bind(new.description.as_str())
                .bind(new.scopes_json.as_str())
                .bind(new.created_by.as_str())
                .bind(micros(new.created_at))
                .bind(micros(new.expires_at))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict("a token with this id or secret already exists".into())
                    } else {
                        e.into()
                    }
                })?;
        });
        Ok(())
    }
}
