//! The token vault of the `tokenize` masking kind, on both backends (migration 0008).
//!
//! Owns: finding tokens by their keyed lookup hash, the insert-if-absent of new entries (two
//! batches racing on the same value both end up with the one stored token: the unique
//! `(model_id, lookup)` constraint decides, and every caller reads the winner back), reading
//! sealed originals by token for the reveal path, and the erasure of one entry, which commits
//! with its audit record and leaves a tombstone holding only the token.
//!
//! Must not: see an original value (entries arrive sealed, lookups arrive as keyed hashes) or
//! put a lookup hash, ciphertext or token list into an error or a log.

use crate::convert::{hash32, micros};
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use custos_core::AuditEvent;
use std::collections::{HashMap, HashSet};

/// Most values bound in one `IN (…)` list (SQLite's default limit is 32,766 variables).
const CHUNK: usize = 500;

/// A new vault entry.
#[derive(Debug, Clone)]
pub struct NewVaultEntry {
    /// The keyed HMAC of the original value.
    pub lookup: [u8; 32],
    /// The candidate token (kept only if no entry has this lookup yet).
    pub token: String,
    /// The original, sealed under the model's vault key with the token bound in.
    pub sealed: Vec<u8>,
}

/// What the vault knows of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultEntry {
    /// The sealed original.
    Sealed(Vec<u8>),
    /// The entry was erased.
    Erased,
}

/// `(token, sealed original)` rows.
type SealedRows = Vec<(String, Vec<u8>)>;
/// `(token,)` rows of tombstones.
type ErasedRows = Vec<(String,)>;

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Store {
    /// The tokens of the lookups already in the model's vault.
    pub async fn vault_tokens(
        &self,
        model_id: i64,
        lookups: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], String>, StoreError> {
        let mut found = HashMap::with_capacity(lookups.len());
        for chunk in lookups.chunks(CHUNK) {
            let query = format!(
                "SELECT lookup, token FROM token_vault WHERE model_id = ? AND lookup IN ({})",
                placeholders(chunk.len())
            );
            let rows: Vec<(Vec<u8>, String)> = on_backend!(self, |conn, sql| {
                let text = sql(&query);
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(text)).bind(model_id);
                for lookup in chunk {
                    q = q.bind(lookup.to_vec());
                }
                q.fetch_all(conn).await?
            });
            for (lookup, token) in rows {
                found.insert(hash32(&lookup)?, token);
            }
        }
        Ok(found)
    }

    /// Inserts the entries whose lookup the model's vault does not hold yet (the others are
    /// left alone: a concurrent batch stored them first), in one transaction, and returns the
    /// stored token of every entry's lookup — the caller's own or the winner's.
    pub async fn insert_vault_entries(
        &self,
        model_id: i64,
        entries: &[NewVaultEntry],
        now: DateTime<Utc>,
    ) -> Result<HashMap<[u8; 32], String>, StoreError> {
        if entries.is_empty() {
            return Ok(HashMap::new());
        }
        // Both unique keys (the token, the lookup) are covered: a conflict on either keeps the
        // stored row. A token collision (2^-128) would leave that lookup without an entry, and
        // the read-back below would then fail the batch rather than store a dangling token.
        let insert = "INSERT INTO token_vault (model_id, token, lookup, sealed, created_at) \
                      VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
        match &self.backend {
            crate::Backend::Sqlite(db) => {
                let mut tx = db.write_tx().await?;
                for entry in entries {
                    sqlx::query(insert)
                        .bind(model_id)
                        .bind(entry.token.as_str())
                        .bind(entry.lookup.to_vec())
                        .bind(entry.sealed.as_slice())
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            crate::Backend::Postgres(db) => {
                let text = crate::shared_sql::numbered(insert);
                let mut tx = db.pool.begin().await?;
                for entry in entries {
                    sqlx::query(sqlx::AssertSqlSafe(text.clone()))
                        .bind(model_id)
                        .bind(entry.token.as_str())
                        .bind(entry.lookup.to_vec())
                        .bind(entry.sealed.as_slice())
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        let lookups: Vec<[u8; 32]> = entries.iter().map(|e| e.lookup).collect();
        let stored = self.vault_tokens(model_id, &lookups).await?;
        if lookups.iter().any(|l| !stored.contains_key(l)) {
            return Err(StoreError::Conflict(
                "a token-vault entry could not be stored; retry the batch".into(),
            ));
        }
        Ok(stored)
    }

    /// What the model's vault holds for each of `tokens` (tokens it never held are absent).
    pub async fn vault_entries(
        &self,
        model_id: i64,
        tokens: &[String],
    ) -> Result<HashMap<String, VaultEntry>, StoreError> {
        let mut found = HashMap::with_capacity(tokens.len());
        let unique: Vec<&String> = tokens.iter().collect::<HashSet<_>>().into_iter().collect();
        for chunk in unique.chunks(CHUNK) {
            let sealed_query = format!(
                "SELECT token, sealed FROM token_vault WHERE model_id = ? AND token IN ({})",
                placeholders(chunk.len())
            );
            let erased_query = format!(
                "SELECT token FROM token_vault_erasures WHERE model_id = ? AND token IN ({})",
                placeholders(chunk.len())
            );
            let (sealed, erased): (SealedRows, ErasedRows) = on_backend!(self, |conn, sql| {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql(&sealed_query))).bind(model_id);
                for token in chunk {
                    q = q.bind(token.as_str());
                }
                let sealed = q.fetch_all(conn).await?;
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql(&erased_query))).bind(model_id);
                for token in chunk {
                    q = q.bind(token.as_str());
                }
                (sealed, q.fetch_all(conn).await?)
            });
            for (token,) in erased {
                found.insert(token, VaultEntry::Erased);
            }
            for (token, bytes) in sealed {
                found.insert(token, VaultEntry::Sealed(bytes));
            }
        }
        Ok(found)
    }

    /// How many entries the model's vault holds (for tests and operations).
    pub async fn vault_size(&self, model_id: i64) -> Result<u64, StoreError> {
        let (n,): (i64,) = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT COUNT(*) FROM token_vault WHERE model_id = ?",
            )))
            .bind(model_id)
            .fetch_one(conn)
            .await?
        });
        crate::convert::count_out(n)
    }

    /// Erases one entry of the model's vault (the sealed original and its lookup hash are
    /// deleted; a tombstone keeps the token), committing with `audit`. `NotFound` when the vault
    /// holds no such entry (never held it, or already erased); nothing is then written.
    pub async fn erase_vault_entry(
        &self,
        model_id: i64,
        token: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, audit, |tx, sql| {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql(
                "DELETE FROM token_vault WHERE model_id = ? AND token = ?",
            )))
            .bind(model_id)
            .bind(token)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "INSERT INTO token_vault_erasures (model_id, token, erased_at) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )))
            .bind(model_id)
            .bind(token)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }
}
