//! The SQLite backend: the embedded, zero-setup default.
//!
//! Owns the SQLite connection set-up and one SQLite statement per store operation. Must not be
//! reachable from outside the crate (callers hold [`crate::Store`]) and must not decide policy:
//! validation that is the same for both backends lives in `lib.rs`.
//!
//! SQLite allows one writer at a time. All writes go through a pool of exactly one connection,
//! so the process never contends with itself for the write lock (no "database is locked" under
//! load) and audit appends are serialised for free; write transactions start with
//! `BEGIN IMMEDIATE` so that a second process on the same file waits on `busy_timeout` instead
//! of failing when a read transaction tries to upgrade. Reads use a separate read-only pool and,
//! thanks to WAL, never wait for the writer.

use crate::convert::{
    CheckpointTuple, REFERENCE_COLUMNS, ReferenceTuple, TokenTuple, checkpoint_row, count_in,
    count_out, hash32, micros, model_row, monitoring_config_row, opt_time, reference_row,
    stored_batch, stored_profile, time, token_row, wrapped,
};
use crate::error::{is_unique_violation, model_write_err};
use crate::mirror::AuditMirror;
use crate::types::{
    AuditRow, CheckpointRow, IngestCommit, LabelOutcome, LabelRow, ModelRow, MonitoringConfigRow,
    NewReference, NewToken, ReferenceRow, SigningKeyRow, StoredBatch, StoredLabel, StoredProfile,
    TokenRow,
};
use crate::{StoreError, audit};
use chrono::{DateTime, Utc};
use custos_core::{AuditEvent, EventKey, HourBucket, Partition};
use custos_crypto::{SealedBlob, WrappedKey};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Sqlite, Transaction};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent readers. Small: the machine this targets is small, and SQLite reads are fast.
const READER_CONNECTIONS: u32 = 4;
/// Rows per multi-row statement, and keys per `IN (…)` list. Well under SQLite's limit of 32766
/// bound parameters even at five parameters a row.
const CHUNK: usize = 500;

/// The two pools over one SQLite database.
#[derive(Debug, Clone)]
pub(crate) struct SqliteDb {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    pub(crate) mirror: Option<Arc<dyn AuditMirror>>,
}

type Tx = Transaction<'static, Sqlite>;

/// `(?, ?, …), (?, ?, …)` for `rows` rows of `columns` placeholders. Only placeholders go into
/// the SQL text; every value is bound.
fn values_list(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// `?, ?, …` for an `IN (…)` list.
fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SqliteDb {
    pub(crate) fn set_mirror(&mut self, mirror: Arc<dyn AuditMirror>) {
        self.mirror = Some(mirror);
    }

    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|_| {
                StoreError::UnsupportedUrl(format!(
                    "{}: not a valid SQLite URL",
                    crate::url::redact_url(url)
                ))
            })?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // FULL: a 2xx promises the batch is on disk, so every commit syncs the WAL.
            .synchronous(SqliteSynchronous::Full);
        let memory = crate::url::is_sqlite_memory(url);
        let writer_options = if memory {
            base.clone()
        } else {
            base.clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        }
        // Every delete through the writer overwrites the freed content with zeros, so a
        // destroyed data key (crypto-shredding) does not linger in free pages.
        .pragma("secure_delete", "ON");
        // The one writer connection is kept open for the life of the pool: reopening costs, and
        // an in-memory database would vanish with its last connection.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await?;
        let reader = if memory {
            // One in-memory database cannot be shared safely between pools; use the writer.
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READER_CONNECTIONS)
                .connect_with(base.read_only(true))
                .await?
        };
        Ok(Self {
            writer,
            reader,
            mirror: None,
        })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    pub(crate) async fn write_tx(&self) -> Result<Tx, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    // ---- meta ----

    pub(crate) async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub(crate) async fn insert_meta_if_absent(
        &self,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- secrets and data keys ----

    pub(crate) async fn get_secret(&self, name: &str) -> Result<Option<WrappedKey>, StoreError> {
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT kek_version, wrapped FROM secrets WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?;
        row.map(wrapped).transpose()
    }

    pub(crate) async fn insert_secret_if_absent(
        &self,
        name: &str,
        key: &WrappedKey,
    ) -> Result<WrappedKey, StoreError> {
        // Insert-or-keep and read back in one transaction on the single writer: the row read is
        // whichever insert won.
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO secrets (name, kek_version, wrapped) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(i64::from(key.kek_version))
        .bind(&key.bytes[..])
        .execute(&mut *tx)
        .await?;
        let row: (i64, Vec<u8>) =
            sqlx::query_as("SELECT kek_version, wrapped FROM secrets WHERE name = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        wrapped(row)
    }

    // ---- models ----

    pub(crate) async fn create_model(
        &self,
        name: &str,
        spec_json: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<ModelRow, StoreError> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO models (name, spec_json, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(spec_json)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("a model named `{name}` already exists"))
            } else {
                e.into()
            }
        })?;
        append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(ModelRow {
            id,
            name: name.to_owned(),
            spec_json: spec_json.to_owned(),
            created_at: time(micros(now))?,
        })
    }

    pub(crate) async fn get_model(&self, name: &str) -> Result<Option<ModelRow>, StoreError> {
        let row: Option<(i64, String, String, i64)> =
            sqlx::query_as("SELECT id, name, spec_json, created_at FROM models WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?;
        row.map(model_row).transpose()
    }

    pub(crate) async fn list_models(&self) -> Result<Vec<ModelRow>, StoreError> {
        let rows: Vec<(i64, String, String, i64)> =
            sqlx::query_as("SELECT id, name, spec_json, created_at FROM models ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
        rows.into_iter().map(model_row).collect()
    }

    // ---- ingest ----

    pub(crate) async fn existing_event_keys(
        &self,
        model_id: i64,
        events: &[(EventKey, DateTime<Utc>)],
    ) -> Result<HashSet<EventKey>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        existing_keys_in(&mut conn, model_id, events).await
    }

    pub(crate) async fn commit_ingest(
        &self,
        commits: &[IngestCommit],
    ) -> Result<Vec<i64>, StoreError> {
        // One transaction for every batch of the request (a request that spans midnight seals
        // one batch per day partition): all of it is stored, or none.
        let mut tx = self.write_tx().await?;
        let mut ids = Vec::with_capacity(commits.len());
        for commit in commits {
            ids.push(write_commit(&mut tx, commit).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub(crate) async fn batches(
        &self,
        model_id: i64,
        range: Range<DateTime<Utc>>,
    ) -> Result<Vec<StoredBatch>, StoreError> {
        // A batch spans the closed interval [min_time, max_time]; the range is half-open.
        let rows: Vec<(i64, i64, i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, partition, row_count, min_time, max_time, ciphertext FROM batches \
             WHERE model_id = ? AND min_time < ? AND max_time >= ? ORDER BY min_time, id",
        )
        .bind(model_id)
        .bind(micros(range.end))
        .bind(micros(range.start))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(stored_batch).collect()
    }

    // ---- profiles ----

    pub(crate) async fn profile_deltas(
        &self,
        model_id: i64,
        column: &str,
        hours: Range<HourBucket>,
    ) -> Result<Vec<StoredProfile>, StoreError> {
        let rows: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, hour, partition, ciphertext FROM profile_deltas \
             WHERE model_id = ? AND column_name = ? AND hour >= ? AND hour < ? ORDER BY hour, id",
        )
        .bind(model_id)
        .bind(column)
        .bind(hours.start.0)
        .bind(hours.end.0)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(stored_profile).collect())
    }

    pub(crate) async fn compaction_candidates(
        &self,
        min_deltas: u32,
        limit: u32,
    ) -> Result<Vec<(i64, String, HourBucket)>, StoreError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT model_id, column_name, hour FROM profile_deltas \
             GROUP BY model_id, column_name, hour HAVING COUNT(*) >= ? \
             ORDER BY model_id, column_name, hour LIMIT ?",
        )
        .bind(i64::from(min_deltas))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(model, column, hour)| (model, column, HourBucket(hour)))
            .collect())
    }

    pub(crate) async fn replace_profiles(
        &self,
        model_id: i64,
        column: &str,
        hour: HourBucket,
        replaced_ids: &[i64],
        merged: &SealedBlob,
    ) -> Result<(), StoreError> {
        let ids: Vec<i64> = replaced_ids
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut tx = self.write_tx().await?;
        let mut deleted: u64 = 0;
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM profile_deltas WHERE model_id = ? AND column_name = ? AND hour = ? \
                 AND id IN ({})",
                in_list(chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(model_id)
                .bind(column)
                .bind(hour.0);
            for id in chunk {
                query = query.bind(*id);
            }
            deleted = deleted.saturating_add(query.execute(&mut *tx).await?.rows_affected());
        }
        if deleted != ids.len() as u64 {
            tx.rollback().await?;
            return Err(StoreError::Conflict(
                "a profile delta to replace is already gone (compacted concurrently?)".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO profile_deltas (model_id, column_name, hour, partition, ciphertext) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(model_id)
        .bind(column)
        .bind(hour.0)
        .bind(merged.partition().0)
        .bind(merged.ciphertext())
        .execute(&mut *tx)
        .await
        .map_err(model_write_err)?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn volume(
        &self,
        model_id: i64,
        hours: Range<HourBucket>,
    ) -> Result<Vec<(HourBucket, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT hour, row_count FROM volume WHERE model_id = ? AND hour >= ? AND hour < ? \
             ORDER BY hour",
        )
        .bind(model_id)
        .bind(hours.start.0)
        .bind(hours.end.0)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(hour, n)| Ok((HourBucket(hour), count_out(n)?)))
            .collect()
    }

    pub(crate) async fn event_count(&self, model_id: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_index WHERE model_id = ?")
            .bind(model_id)
            .fetch_one(&self.reader)
            .await?;
        count_out(n)
    }

    // ---- labels ----

    pub(crate) async fn upsert_labels(
        &self,
        model_id: i64,
        labels: &[LabelRow],
        now: DateTime<Utc>,
    ) -> Result<LabelOutcome, StoreError> {
        // A key repeated in one call keeps its last label, as if applied one by one; a
        // multi-row upsert may not touch one row twice.
        let latest: BTreeMap<EventKey, &LabelRow> =
            labels.iter().map(|l| (l.event_key, l)).collect();
        let latest: Vec<&LabelRow> = latest.into_values().collect();
        let mut tx = self.write_tx().await?;
        for chunk in latest.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO labels (model_id, event_key, partition, ciphertext, updated_at) \
                 VALUES {} ON CONFLICT (model_id, event_key) DO UPDATE SET \
                 partition = excluded.partition, ciphertext = excluded.ciphertext, \
                 updated_at = excluded.updated_at",
                values_list(chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for label in chunk {
                query = query
                    .bind(model_id)
                    .bind(&label.event_key.0[..])
                    .bind(label.sealed.partition().0)
                    .bind(label.sealed.ciphertext())
                    .bind(micros(now));
            }
            query.execute(&mut *tx).await.map_err(model_write_err)?;
        }
        tx.commit().await?;
        Ok(crate::label_outcome(labels))
    }

    // ---- tokens ----

    pub(crate) async fn create_token(
        &self,
        token: &NewToken,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, hash, display_prefix, description, scopes_json, \
             created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id.as_str())
        .bind(&token.hash[..])
        .bind(token.display_prefix.as_str())
        .bind(token.description.as_str())
        .bind(token.scopes_json.as_str())
        .bind(token.created_by.as_str())
        .bind(micros(token.created_at))
        .bind(micros(token.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("a token with this id or secret already exists".into())
            } else {
                e.into()
            }
        })?;
        append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn find_token_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<TokenRow>, StoreError> {
        let row: Option<TokenTuple> = sqlx::query_as(
            "SELECT id, display_prefix, description, scopes_json, created_by, created_at, \
             expires_at, revoked_at, last_used_at FROM api_tokens WHERE hash = ?",
        )
        .bind(&hash[..])
        .fetch_optional(&self.reader)
        .await?;
        row.map(token_row).transpose()
    }

    pub(crate) async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows: Vec<TokenTuple> = sqlx::query_as(
            "SELECT id, display_prefix, description, scopes_json, created_by, created_at, \
             expires_at, revoked_at, last_used_at FROM api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(token_row).collect()
    }

    pub(crate) async fn revoke_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(micros(now))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            // Nothing changed, so there is nothing to audit here; the caller records the
            // failed attempt if it wants to.
            tx.rollback().await?;
            return Ok(false);
        }
        append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn touch_token(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        // Never moves last_used_at backwards when touches from concurrent requests land out of
        // order.
        let done = sqlx::query(
            "UPDATE api_tokens SET last_used_at = \
             CASE WHEN last_used_at IS NULL OR last_used_at < ?1 THEN ?1 ELSE last_used_at END \
             WHERE id = ?2",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- audit ----

    pub(crate) async fn record_rejections(
        &self,
        model_id: i64,
        hour: HourBucket,
        counts: &[(String, u64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for (field, count) in counts {
            sqlx::query(
                "INSERT INTO rejections (model_id, hour, field, row_count) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (model_id, hour, field) DO UPDATE SET row_count = row_count + excluded.row_count",
            )
            .bind(model_id)
            .bind(hour.0)
            .bind(field)
            .bind(count_in(*count)?)
            .execute(&mut *tx)
            .await
            .map_err(model_write_err)?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn rejections(
        &self,
        model_id: i64,
        hours: Range<HourBucket>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT field, SUM(row_count) FROM rejections WHERE model_id = ? AND hour >= ? AND hour < ? \
             GROUP BY field ORDER BY field",
        )
        .bind(model_id)
        .bind(hours.start.0)
        .bind(hours.end.0)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(field, n)| Ok((field, count_out(n)?)))
            .collect()
    }

    pub(crate) async fn last_event_time(
        &self,
        model_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let latest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(event_time) FROM event_index WHERE model_id = ?")
                .bind(model_id)
                .fetch_one(&self.reader)
                .await?;
        latest.map(time).transpose()
    }

    pub(crate) async fn labels_for(
        &self,
        model_id: i64,
        keys: &[EventKey],
    ) -> Result<Vec<StoredLabel>, StoreError> {
        let unique: Vec<EventKey> = keys
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut found = Vec::new();
        for chunk in unique.chunks(CHUNK) {
            let sql = format!(
                "WITH asked (k) AS (VALUES {}) SELECT l.event_key, l.partition, l.ciphertext \
                 FROM asked CROSS JOIN labels l ON l.model_id = ? AND l.event_key = asked.k",
                values_list(chunk.len(), 1)
            );
            let mut query = sqlx::query_as::<_, (Vec<u8>, i64, Vec<u8>)>(AssertSqlSafe(sql));
            for key in chunk {
                query = query.bind(&key.0[..]);
            }
            query = query.bind(model_id);
            for (key, partition, ciphertext) in query.fetch_all(&self.reader).await? {
                found.push(StoredLabel {
                    event_key: EventKey(hash32(&key)?),
                    partition: Partition(partition),
                    ciphertext,
                });
            }
        }
        Ok(found)
    }

    // ---- monitoring configuration ----

    pub(crate) async fn insert_monitoring_config(
        &self,
        model_id: i64,
        config_json: &str,
        created_by: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO monitoring_configs (model_id, version, config_json, created_by, created_at) \
             SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ? FROM monitoring_configs \
             WHERE model_id = ? RETURNING version",
        )
        .bind(model_id)
        .bind(config_json)
        .bind(created_by)
        .bind(micros(now))
        .bind(model_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(model_write_err)?;
        append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(version)
    }

    pub(crate) async fn monitoring_config(
        &self,
        model_id: i64,
    ) -> Result<Option<MonitoringConfigRow>, StoreError> {
        let row: Option<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT version, config_json, created_by, created_at FROM monitoring_configs \
             WHERE model_id = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(model_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(monitoring_config_row).transpose()
    }

    // ---- reference data sets ----

    pub(crate) async fn create_reference(
        &self,
        reference: &NewReference,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<ReferenceRow, StoreError> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO reference_sets (uid, model_id, name, sha256, row_count, label_field, \
             partition, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&reference.uid)
        .bind(reference.model_id)
        .bind(&reference.name)
        .bind(&reference.sha256[..])
        .bind(count_in(reference.row_count)?)
        .bind(reference.label_field.as_deref())
        .bind(reference.partition.0)
        .bind(&reference.created_by)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(model_write_err)?;
        for (column, sealed) in &reference.profiles {
            sqlx::query(
                "INSERT INTO reference_profiles (reference_id, column_name, ciphertext) \
                 VALUES (?, ?, ?)",
            )
            .bind(id)
            .bind(column)
            .bind(sealed.ciphertext())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("column `{column}` is profiled twice"))
                } else {
                    e.into()
                }
            })?;
        }
        append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        self.reference(id).await?.ok_or(StoreError::NotFound)
    }

    async fn reference(&self, id: i64) -> Result<Option<ReferenceRow>, StoreError> {
        let row: Option<ReferenceTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {REFERENCE_COLUMNS} FROM reference_sets WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        row.map(reference_row).transpose()
    }

    pub(crate) async fn references(&self, model_id: i64) -> Result<Vec<ReferenceRow>, StoreError> {
        let rows: Vec<ReferenceTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {REFERENCE_COLUMNS} FROM reference_sets WHERE model_id = ? ORDER BY id DESC"
        )))
        .bind(model_id)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(reference_row).collect()
    }

    pub(crate) async fn reference_profiles(
        &self,
        reference_id: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT column_name, ciphertext FROM reference_profiles WHERE reference_id = ? \
             ORDER BY column_name",
        )
        .bind(reference_id)
        .fetch_all(&self.reader)
        .await?)
    }

    pub(crate) async fn append_audit_group(
        &self,
        events: &[&AuditEvent],
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.write_tx().await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        // The head is read once and the group chained in memory: one statement per entry
        // instead of two, and the sinks receive the group in one delivery.
        let entries = audit::chain_group(head, events)?;
        for (seq, record, hash) in &entries {
            sqlx::query("INSERT INTO audit_log (seq, record_json, hash) VALUES (?, ?, ?)")
                .bind(seq)
                .bind(record)
                .bind(&hash[..])
                .execute(&mut *tx)
                .await?;
        }
        audit::mirror_group(self.mirror.as_deref(), &entries).await?;
        tx.commit().await?;
        Ok(entries.into_iter().map(|(seq, _, _)| seq).collect())
    }

    pub(crate) async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let seq = append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(seq)
    }

    pub(crate) async fn audit_entries(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, record_json, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(seq, record_json, hash)| {
                Ok(AuditRow {
                    seq,
                    record_json,
                    hash: hash32(&hash)?,
                })
            })
            .collect()
    }

    pub(crate) async fn audit_entries_raw(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, CAST(record_json AS BLOB), hash FROM audit_log WHERE seq > ?1 \
             ORDER BY seq LIMIT ?2",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    pub(crate) async fn audit_head(&self) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.reader)
                .await?;
        head.map(|(seq, hash)| Ok((seq, hash32(&hash)?)))
            .transpose()
    }

    pub(crate) async fn audit_checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows: Vec<CheckpointTuple> = sqlx::query_as(
            "SELECT tree_size, root, note, key_version, signed_at, frontier, chain_hash \
             FROM audit_checkpoints ORDER BY tree_size",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(checkpoint_row).collect()
    }

    pub(crate) async fn latest_audit_checkpoint(
        &self,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        let row: Option<CheckpointTuple> = sqlx::query_as(
            "SELECT tree_size, root, note, key_version, signed_at, frontier, chain_hash \
             FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?;
        row.map(checkpoint_row).transpose()
    }

    pub(crate) async fn insert_audit_checkpoint(
        &self,
        row: &CheckpointRow,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO audit_checkpoints \
             (tree_size, root, note, key_version, signed_at, frontier, chain_hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(row.tree_size)
        .bind(&row.root[..])
        .bind(&row.note)
        .bind(row.key_version)
        .bind(micros(row.signed_at))
        .bind(&row.frontier)
        .bind(&row.chain_hash[..])
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn audit_signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        let rows: Vec<(i64, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT version, verifier_key, valid_from, valid_until FROM audit_signing_keys \
             ORDER BY version",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(version, verifier_key, from, until)| {
                Ok(SigningKeyRow {
                    version,
                    verifier_key,
                    valid_from: time(from)?,
                    valid_until: opt_time(until)?,
                })
            })
            .collect()
    }

    pub(crate) async fn add_audit_signing_key(
        &self,
        row: &SigningKeyRow,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT version FROM audit_signing_keys WHERE version = ?1")
                .bind(row.version)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE audit_signing_keys SET valid_until = ?1 \
             WHERE valid_until IS NULL AND version < ?2",
        )
        .bind(micros(row.valid_from))
        .bind(row.version)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO audit_signing_keys (version, verifier_key, valid_from, valid_until) \
             VALUES (?1, ?2, ?3, NULL)",
        )
        .bind(row.version)
        .bind(&row.verifier_key)
        .bind(micros(row.valid_from))
        .execute(&mut *tx)
        .await?;
        if let Some(event) = audit {
            append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn audit_anchor(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT anchor_size FROM audit_retention WHERE id = 1")
                .fetch_optional(&self.reader)
                .await?
                .unwrap_or(0),
        )
    }

    pub(crate) async fn prune_audit(
        &self,
        anchor: i64,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE audit_retention SET anchor_size = ?1 WHERE id = 1")
            .bind(anchor)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM audit_log WHERE seq < ?1")
            .bind(anchor)
            .execute(&mut *tx)
            .await?;
        append_audit_in(&mut tx, audit, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Appends one audit entry inside the caller's write transaction. The single writer connection
/// means no other append can read the same head.
pub(crate) async fn append_audit_in(
    conn: &mut SqliteConnection,
    event: &AuditEvent,
    mirror: Option<&dyn AuditMirror>,
) -> Result<i64, StoreError> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, record, hash) = audit::next_entry(head, event)?;
    sqlx::query("INSERT INTO audit_log (seq, record_json, hash) VALUES (?, ?, ?)")
        .bind(seq)
        .bind(&record)
        .bind(&hash[..])
        .execute(&mut *conn)
        .await?;
    audit::mirror_one(mirror, seq, &record, &hash).await?;
    Ok(seq)
}

/// Writes one batch, its event index entries, profile deltas and volume inside the caller's
/// transaction. A duplicate key returns [`StoreError::DuplicateEvent`]; the caller's
/// transaction is then dropped, which rolls everything back.
async fn write_commit(
    conn: &mut SqliteConnection,
    commit: &IngestCommit,
) -> Result<i64, StoreError> {
    let batch = &commit.batch;
    let model_id = batch.model_id();
    let volume = crate::sum_volume(&commit.volume)?;
    let batch_id: i64 = sqlx::query_scalar(
        "INSERT INTO batches (model_id, partition, row_count, min_time, max_time, ciphertext) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(model_id)
    .bind(batch.partition().0)
    .bind(i64::from(batch.row_count()))
    .bind(micros(batch.min_time()))
    .bind(micros(batch.max_time()))
    .bind(batch.ciphertext())
    .fetch_one(&mut *conn)
    .await
    .map_err(model_write_err)?;

    for chunk in commit.events.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO event_index (model_id, event_time, event_key, batch_id) VALUES {}",
            values_list(chunk.len(), 4)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (key, time) in chunk {
            query = query
                .bind(model_id)
                .bind(micros(*time))
                .bind(&key.0[..])
                .bind(batch_id);
        }
        // The primary key is the duplicate check; returning here drops `tx`, which rolls
        // the whole batch back.
        query.execute(&mut *conn).await.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::DuplicateEvent
            } else {
                e.into()
            }
        })?;
    }

    for chunk in commit.profiles.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO profile_deltas (model_id, column_name, hour, partition, ciphertext) \
             VALUES {}",
            values_list(chunk.len(), 5)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for delta in chunk {
            query = query
                .bind(model_id)
                .bind(delta.column.as_str())
                .bind(delta.hour.0)
                .bind(delta.sealed.partition().0)
                .bind(delta.sealed.ciphertext());
        }
        query.execute(&mut *conn).await?;
    }

    for chunk in volume.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO volume (model_id, hour, row_count) VALUES {} \
             ON CONFLICT (model_id, hour) DO UPDATE SET row_count = row_count + excluded.row_count",
            values_list(chunk.len(), 3)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (hour, rows) in chunk {
            query = query.bind(model_id).bind(*hour).bind(*rows);
        }
        query.execute(&mut *conn).await?;
    }

    write_pii_findings(&mut *conn, model_id, &commit.pii_findings).await?;
    Ok(batch_id)
}

async fn write_pii_findings(
    conn: &mut SqliteConnection,
    model_id: i64,
    findings: &[(HourBucket, String, String, u64)],
) -> Result<(), StoreError> {
    for (hour, field, kind, count) in findings {
        sqlx::query(
            "INSERT INTO pii_findings (model_id, hour, field, kind, finding_count) \
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (model_id, hour, field, kind) \
             DO UPDATE SET finding_count = finding_count + excluded.finding_count",
        )
        .bind(model_id)
        .bind(hour.0)
        .bind(field)
        .bind(kind)
        .bind(count_in(*count)?)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Which of `keys` are indexed for the model, asked in chunks so no statement exceeds the bind
/// limit.
async fn existing_keys_in(
    conn: &mut SqliteConnection,
    model_id: i64,
    events: &[(EventKey, DateTime<Utc>)],
) -> Result<HashSet<EventKey>, StoreError> {
    let unique: Vec<(i64, EventKey)> = events
        .iter()
        .map(|(key, time)| (micros(*time), *key))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found = HashSet::new();
    for chunk in unique.chunks(CHUNK) {
        // A join against the asked pairs, driven from the VALUES list (CROSS JOIN fixes the
        // order): one primary-key lookup per pair. A row-value IN list would not use the key.
        let sql = format!(
            "WITH asked (t, k) AS (VALUES {}) SELECT e.event_key FROM asked \
             CROSS JOIN event_index e ON e.model_id = ? AND e.event_time = asked.t \
             AND e.event_key = asked.k",
            values_list(chunk.len(), 2)
        );
        let mut query = sqlx::query_scalar::<_, Vec<u8>>(AssertSqlSafe(sql));
        for (time, key) in chunk {
            query = query.bind(*time).bind(&key.0[..]);
        }
        query = query.bind(model_id);
        for key in query.fetch_all(&mut *conn).await? {
            found.insert(EventKey(hash32(&key)?));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_configured_for_durability() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let db = SqliteDb::open(&url).await.unwrap();
        // (pragma, its result column, pool) -> the value as text.
        let pragma = |name: &'static str, column: &'static str, pool: &SqlitePool| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>(AssertSqlSafe(format!(
                    "SELECT CAST({column} AS TEXT) FROM pragma_{name}"
                )))
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };
        let (w, r) = (&db.writer, &db.reader);
        assert_eq!(pragma("journal_mode", "journal_mode", w).await, "wal");
        // 2 = FULL.
        assert_eq!(pragma("synchronous", "synchronous", w).await, "2");
        assert_eq!(pragma("synchronous", "synchronous", r).await, "2");
        assert_eq!(pragma("foreign_keys", "foreign_keys", w).await, "1");
        assert_eq!(pragma("busy_timeout", "timeout", w).await, "5000");
        assert_eq!(pragma("busy_timeout", "timeout", r).await, "5000");
        // The reader pool cannot write, so no write can bypass the single writer.
        let write = sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&db.reader)
            .await;
        assert!(write.is_err());
        db.close().await;
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(values_list(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(in_list(3), "?, ?, ?");
    }
}
