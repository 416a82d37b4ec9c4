//! Data keys by purpose, and crypto-shredding (migration 0009).
//!
//! Owns: the `data_keys` table (one wrapped key per model, day partition and purpose — `events`
//! for raw batches and labels, `profiles` for hourly profile deltas and reference profiles,
//! `shared` for keys made before purposes existed), the retention shred of one partition's one
//! purpose, and the erasure of everything a model has stored. Both delete the key rows and the
//! rows sealed under them in one transaction with their audit record, so that either all of it
//! is gone and recorded, or nothing changed (fail closed: no audit, no shred).
//!
//! After a shred the deleted key bytes are scrubbed as far as the database allows: SQLite's
//! writer connection runs with `secure_delete` (freed pages are zeroed) and the WAL is
//! checkpointed and truncated; PostgreSQL's `data_keys` and `secrets` are vacuumed so the dead
//! tuples' space is reclaimed (what that does not reach is in docs/THREAT_MODEL.md).
//!
//! Must not: unwrap or seal anything (the caller's, with the key ring), or put ciphertexts or
//! key bytes into errors or logs.

use crate::convert::{count_out, micros, wrapped};
use crate::error::model_write_err;
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use custos_core::{AuditEvent, Partition};
use custos_crypto::{KeyPurpose, WrappedKey};
use std::collections::{BTreeMap, BTreeSet};

/// `(purpose, kek_version, wrapped)` rows.
type KeyRows = Vec<(String, i64, Vec<u8>)>;

const MICROS_PER_DAY: i64 = 86_400_000_000;
const HOURS_PER_DAY: i64 = 24;

fn purpose_of(name: &str) -> Result<KeyPurpose, StoreError> {
    KeyPurpose::parse(name)
        .ok_or_else(|| StoreError::Database("a data key has an unknown purpose".into()))
}

/// A legacy (`shared`) day's profile deltas re-sealed under a fresh `profiles` key, so that its
/// raw events' shred can destroy the shared key without losing the profiles.
#[derive(Debug, Clone)]
pub struct ProfileReseal {
    /// The fresh profiles key, wrapped for `(model, partition, profiles)`.
    pub key: WrappedKey,
    /// Every profile delta of the partition: `(id, ciphertext under the new key)`.
    pub deltas: Vec<(i64, Vec<u8>)>,
}

/// What one retention shred of one partition does.
#[derive(Debug, Clone)]
pub struct ShredPlan {
    /// The model.
    pub model_id: i64,
    /// The day partition.
    pub partition: Partition,
    /// Which rows expire: [`KeyPurpose::Events`] (event batches, their event index, labels
    /// that arrived that day) and/or [`KeyPurpose::Profiles`] (profile deltas and volume
    /// counts of the day's hours).
    pub rows: Vec<KeyPurpose>,
    /// The key rows to destroy: the purpose's own key and, when the day still has one, its
    /// `shared` key (only with `reseal`, or when every purpose of the day expires).
    pub destroy: Vec<KeyPurpose>,
    /// For a `shared` day whose other purpose is kept: the other purpose's rows re-sealed.
    pub reseal: Option<ProfileReseal>,
}

/// What a shred removed (counts only, for the audit record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShredCounts {
    /// Key rows destroyed.
    pub data_keys: u64,
    /// Sealed event batches deleted.
    pub batches: u64,
    /// Event-index entries deleted.
    pub events: u64,
    /// Sealed labels deleted.
    pub labels: u64,
    /// Sealed profile deltas deleted.
    pub profile_deltas: u64,
    /// Hours of volume counts deleted.
    pub volume_hours: u64,
    /// Profile deltas re-sealed under a fresh profiles key.
    pub resealed: u64,
}

/// What the erasure of a model's data removed (counts only, for the audit record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureCounts {
    /// Data key rows destroyed (every day, every purpose, and the reference key).
    pub data_keys: u64,
    /// Whether the model's token-vault key was destroyed.
    pub vault_key: bool,
    /// Token-vault entries deleted.
    pub vault_entries: u64,
    /// Sealed event batches deleted.
    pub batches: u64,
    /// Event-index entries deleted.
    pub events: u64,
    /// Sealed labels deleted.
    pub labels: u64,
    /// Sealed profile deltas deleted.
    pub profile_deltas: u64,
    /// Hours of volume counts deleted.
    pub volume_hours: u64,
    /// Rejection counters deleted.
    pub rejections: u64,
    /// Reference data sets deleted (with their sealed profiles).
    pub references: u64,
}

impl Store {
    /// The wrapped data key that seals `purpose` rows of (model, partition): the purpose's own
    /// key or, for a day stored before purposes existed, its `shared` key (reported as such,
    /// because it unwraps under another context).
    pub async fn get_data_key(
        &self,
        model_id: i64,
        partition: Partition,
        purpose: KeyPurpose,
    ) -> Result<Option<(KeyPurpose, WrappedKey)>, StoreError> {
        let rows: KeyRows = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT purpose, kek_version, wrapped FROM data_keys \
                 WHERE model_id = ? AND partition = ? AND purpose IN (?, 'shared')",
            )))
            .bind(model_id)
            .bind(partition.0)
            .bind(purpose.as_str())
            .fetch_all(conn)
            .await?
        });
        pick_key(rows, purpose)
    }

    /// Stores a data key for (model, partition, purpose) unless that day already has a key for
    /// the purpose (its own or a `shared` one), and returns the stored one. Two racing callers
    /// (threads or replicas) both get the same winner. An unknown model is
    /// [`StoreError::NotFound`]. A `shared` key cannot be inserted (none is made any more).
    pub async fn insert_data_key_if_absent(
        &self,
        model_id: i64,
        partition: Partition,
        purpose: KeyPurpose,
        key: &WrappedKey,
        now: DateTime<Utc>,
    ) -> Result<(KeyPurpose, WrappedKey), StoreError> {
        if purpose == KeyPurpose::Shared {
            return Err(StoreError::Conflict(
                "no new shared data key is made".into(),
            ));
        }
        let rows: KeyRows = in_plain_write_tx!(self, |tx, sql| {
            let existing: KeyRows = sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT purpose, kek_version, wrapped FROM data_keys \
                 WHERE model_id = ? AND partition = ? AND purpose IN (?, 'shared')",
            )))
            .bind(model_id)
            .bind(partition.0)
            .bind(purpose.as_str())
            .fetch_all(&mut *tx)
            .await?;
            if existing.is_empty() {
                sqlx::query(sqlx::AssertSqlSafe(sql("INSERT INTO data_keys \
                     (model_id, partition, purpose, kek_version, wrapped, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")))
                .bind(model_id)
                .bind(partition.0)
                .bind(purpose.as_str())
                .bind(i64::from(key.kek_version))
                .bind(&key.bytes[..])
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .map_err(model_write_err)?;
                sqlx::query_as(sqlx::AssertSqlSafe(sql(
                    "SELECT purpose, kek_version, wrapped FROM data_keys \
                     WHERE model_id = ? AND partition = ? AND purpose = ?",
                )))
                .bind(model_id)
                .bind(partition.0)
                .bind(purpose.as_str())
                .fetch_all(&mut *tx)
                .await?
            } else {
                existing
            }
        });
        pick_key(rows, purpose)?.ok_or_else(|| {
            StoreError::Conflict("the data key was removed while it was being stored".into())
        })
    }

    /// The model's day partitions before `before` (from day 0: the reference key's negative
    /// partition is never a day) and the purposes of the keys each holds.
    pub async fn data_key_days(
        &self,
        model_id: i64,
        before: Partition,
    ) -> Result<BTreeMap<Partition, BTreeSet<KeyPurpose>>, StoreError> {
        let rows: Vec<(i64, String)> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT partition, purpose FROM data_keys \
                 WHERE model_id = ? AND partition >= 0 AND partition < ?",
            )))
            .bind(model_id)
            .bind(before.0)
            .fetch_all(conn)
            .await?
        });
        let mut out: BTreeMap<Partition, BTreeSet<KeyPurpose>> = BTreeMap::new();
        for (partition, purpose) in rows {
            out.entry(Partition(partition))
                .or_default()
                .insert(purpose_of(&purpose)?);
        }
        Ok(out)
    }

    /// Whether the day still holds rows of `rows` ([`KeyPurpose::Events`]: batches or labels;
    /// [`KeyPurpose::Profiles`]: profile deltas or volume counts).
    pub async fn partition_has_rows(
        &self,
        model_id: i64,
        partition: Partition,
        rows: KeyPurpose,
    ) -> Result<bool, StoreError> {
        let queries: &[&str] = match rows {
            KeyPurpose::Events => &[
                "SELECT COUNT(*) FROM batches WHERE model_id = ? AND partition = ?",
                "SELECT COUNT(*) FROM labels WHERE model_id = ? AND partition = ?",
            ],
            KeyPurpose::Profiles => &[
                "SELECT COUNT(*) FROM profile_deltas WHERE model_id = ? AND partition = ?",
                "SELECT COUNT(*) FROM volume WHERE model_id = ? AND hour >= ? * 24 \
                 AND hour < (? + 1) * 24",
            ],
            KeyPurpose::Shared => return Ok(false),
        };
        for query in queries {
            let binds = query.matches('?').count();
            let (n,): (i64,) = on_backend!(self, |conn, sql| {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql(query))).bind(model_id);
                for _ in 1..binds {
                    q = q.bind(partition.0);
                }
                q.fetch_one(conn).await?
            });
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every profile delta of one day: `(id, column, hour, ciphertext)`, for re-sealing.
    pub async fn partition_profile_deltas(
        &self,
        model_id: i64,
        partition: Partition,
    ) -> Result<Vec<(i64, String, i64, Vec<u8>)>, StoreError> {
        Ok(on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT id, column_name, hour, ciphertext FROM profile_deltas \
                 WHERE model_id = ? AND partition = ? ORDER BY id",
            )))
            .bind(model_id)
            .bind(partition.0)
            .fetch_all(conn)
            .await?
        }))
    }

    /// Crypto-shreds one day's rows of one purpose: destroys the key rows `plan.destroy`,
    /// deletes the rows, re-seals (for a `shared` day) the kept profiles under a fresh key, and
    /// appends the audit record built from the counts — one transaction. If the day's profile
    /// deltas changed since they were read for re-sealing (a compaction in between), the result
    /// is [`StoreError::Conflict`] and nothing changed.
    pub async fn shred_partition(
        &self,
        plan: &ShredPlan,
        now: DateTime<Utc>,
        audit: impl FnOnce(&ShredCounts) -> AuditEvent,
    ) -> Result<ShredCounts, StoreError> {
        let mut counts = ShredCounts::default();
        let (model_id, p) = (plan.model_id, plan.partition.0);
        let (day_start, day_end) = (
            p.saturating_mul(MICROS_PER_DAY),
            p.saturating_add(1).saturating_mul(MICROS_PER_DAY),
        );
        let (hour_start, hour_end) = (
            p.saturating_mul(HOURS_PER_DAY),
            p.saturating_add(1).saturating_mul(HOURS_PER_DAY),
        );
        let counts_ref = &mut counts;
        in_write_tx!(self, &audit(counts_ref_done(counts_ref)), |tx, sql| {
            if let Some(reseal) = &plan.reseal {
                let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql(
                    "SELECT COUNT(*) FROM profile_deltas WHERE model_id = ? AND partition = ?",
                )))
                .bind(model_id)
                .bind(p)
                .fetch_one(&mut *tx)
                .await?;
                if count_out(n)? != reseal.deltas.len() as u64 {
                    return Err(StoreError::Conflict(
                        "the day's profiles changed while they were re-sealed; retry".into(),
                    ));
                }
                for (id, ciphertext) in &reseal.deltas {
                    let done = sqlx::query(sqlx::AssertSqlSafe(sql(
                        "UPDATE profile_deltas SET ciphertext = ? \
                         WHERE id = ? AND model_id = ? AND partition = ?",
                    )))
                    .bind(ciphertext.as_slice())
                    .bind(*id)
                    .bind(model_id)
                    .bind(p)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::Conflict(
                            "the day's profiles changed while they were re-sealed; retry".into(),
                        ));
                    }
                }
                sqlx::query(sqlx::AssertSqlSafe(sql("INSERT INTO data_keys \
                     (model_id, partition, purpose, kek_version, wrapped, created_at) \
                     VALUES (?, ?, 'profiles', ?, ?, ?)")))
                .bind(model_id)
                .bind(p)
                .bind(i64::from(reseal.key.kek_version))
                .bind(&reseal.key.bytes[..])
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
                counts_ref.resealed = reseal.deltas.len() as u64;
            }
            for purpose in &plan.destroy {
                let done = sqlx::query(sqlx::AssertSqlSafe(sql(
                    "DELETE FROM data_keys WHERE model_id = ? AND partition = ? AND purpose = ?",
                )))
                .bind(model_id)
                .bind(p)
                .bind(purpose.as_str())
                .execute(&mut *tx)
                .await?;
                counts_ref.data_keys += done.rows_affected();
            }
            for rows in &plan.rows {
                let deletes: &[(&str, bool)] = match rows {
                    KeyPurpose::Events => &[
                        (
                            "DELETE FROM batches WHERE model_id = ? AND partition = ?",
                            false,
                        ),
                        (
                            "DELETE FROM event_index WHERE model_id = ? AND event_time >= ? \
                             AND event_time < ?",
                            true,
                        ),
                        (
                            "DELETE FROM labels WHERE model_id = ? AND partition = ?",
                            false,
                        ),
                    ],
                    KeyPurpose::Profiles => &[
                        (
                            "DELETE FROM profile_deltas WHERE model_id = ? AND partition = ?",
                            false,
                        ),
                        (
                            "DELETE FROM volume WHERE model_id = ? AND hour >= ? AND hour < ?",
                            true,
                        ),
                        // PII finding counts are aggregates of the day, like its volume.
                        (
                            "DELETE FROM pii_findings WHERE model_id = ? AND hour >= ? AND hour < ?",
                            true,
                        ),
                    ],
                    KeyPurpose::Shared => &[],
                };
                for (i, (query, ranged)) in deletes.iter().enumerate() {
                    let q = sqlx::query(sqlx::AssertSqlSafe(sql(query))).bind(model_id);
                    let q = match (ranged, rows) {
                        (false, _) => q.bind(p),
                        (true, KeyPurpose::Events) => q.bind(day_start).bind(day_end),
                        (true, _) => q.bind(hour_start).bind(hour_end),
                    };
                    let n = q.execute(&mut *tx).await?.rows_affected();
                    match (rows, i) {
                        (KeyPurpose::Events, 0) => counts_ref.batches = n,
                        (KeyPurpose::Events, 1) => counts_ref.events = n,
                        (KeyPurpose::Events, _) => counts_ref.labels = n,
                        (_, 0) => counts_ref.profile_deltas = n,
                        (_, _) => counts_ref.volume_hours = n,
                    }
                }
            }
        });
        self.scrub_deleted_keys().await;
        Ok(counts)
    }

    /// Erases everything the model has stored as data — every data key (all days, all
    /// purposes, the reference key), its token-vault key (the secret `vault_key_name`) and
    /// entries, event batches, the event index, labels, profile deltas, volume and rejection
    /// counts, reference data sets — and appends the audit record built from the counts, in one
    /// transaction. The registration, configuration history, alert history and vault erasure
    /// tombstones stay. An unknown model is [`StoreError::NotFound`].
    pub async fn erase_model_data(
        &self,
        model_id: i64,
        vault_key_name: &str,
        audit: impl FnOnce(&ErasureCounts) -> AuditEvent,
    ) -> Result<ErasureCounts, StoreError> {
        let mut counts = ErasureCounts::default();
        let counts_ref = &mut counts;
        in_write_tx!(self, &audit(erasure_done(counts_ref)), |tx, sql| {
            let (known,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT COUNT(*) FROM models WHERE id = ?",
            )))
            .bind(model_id)
            .fetch_one(&mut *tx)
            .await?;
            if known == 0 {
                return Err(StoreError::NotFound);
            }
            let by_model = |table: &str| format!("DELETE FROM {table} WHERE model_id = ?");
            for (table, slot) in [
                ("data_keys", 0usize),
                ("token_vault", 1),
                ("batches", 2),
                ("event_index", 3),
                ("labels", 4),
                ("profile_deltas", 5),
                ("volume", 6),
                ("rejections", 7),
            ] {
                let done = sqlx::query(sqlx::AssertSqlSafe(sql(&by_model(table))))
                    .bind(model_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let c = match slot {
                    0 => &mut counts_ref.data_keys,
                    1 => &mut counts_ref.vault_entries,
                    2 => &mut counts_ref.batches,
                    3 => &mut counts_ref.events,
                    4 => &mut counts_ref.labels,
                    5 => &mut counts_ref.profile_deltas,
                    6 => &mut counts_ref.volume_hours,
                    _ => &mut counts_ref.rejections,
                };
                *c = done;
            }
            // The model's PII finding counts go with its data (counts only, so not tallied).
            sqlx::query(sqlx::AssertSqlSafe(sql(&by_model("pii_findings"))))
                .bind(model_id)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query(sqlx::AssertSqlSafe(sql(
                "DELETE FROM secrets WHERE name = ?",
            )))
            .bind(vault_key_name)
            .execute(&mut *tx)
            .await?;
            counts_ref.vault_key = done.rows_affected() > 0;
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "DELETE FROM reference_profiles WHERE reference_id IN \
                 (SELECT id FROM reference_sets WHERE model_id = ?)",
            )))
            .bind(model_id)
            .execute(&mut *tx)
            .await?;
            counts_ref.references = sqlx::query(sqlx::AssertSqlSafe(sql(
                "DELETE FROM reference_sets WHERE model_id = ?",
            )))
            .bind(model_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        });
        self.scrub_deleted_keys().await;
        Ok(counts)
    }

    /// Makes deleted key rows as hard to recover as the database allows (best effort: the
    /// shred has committed; a failure here is logged, not returned). SQLite: the writer zeroes
    /// freed pages (`secure_delete`), and the WAL, which still holds the pages as written, is
    /// checkpointed and truncated. PostgreSQL: `VACUUM` of the two key tables, so the dead
    /// tuples' space is reclaimed for reuse (see docs/THREAT_MODEL.md for what remains).
    pub async fn scrub_deleted_keys(&self) {
        let outcome: Result<(), sqlx::Error> = match &self.backend {
            crate::Backend::Sqlite(db) => sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&db.writer)
                .await
                .map(|_| ()),
            crate::Backend::Postgres(db) => {
                match sqlx::query("VACUUM data_keys").execute(&db.pool).await {
                    Ok(_) => sqlx::query("VACUUM secrets")
                        .execute(&db.pool)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "scrubbing deleted keys failed; they are deleted, but \
                may linger in free database space until it is reused");
        }
    }

    /// How many data key rows the model has (for tests and operations).
    pub async fn data_key_count(&self, model_id: i64) -> Result<u64, StoreError> {
        let (n,): (i64,) = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT COUNT(*) FROM data_keys WHERE model_id = ?",
            )))
            .bind(model_id)
            .fetch_one(conn)
            .await?
        });
        count_out(n)
    }
}

/// Identity helpers so the audit expression (evaluated after the transaction body by
/// `in_write_tx!`) reads the counts the body filled in.
fn counts_ref_done(c: &mut ShredCounts) -> &ShredCounts {
    c
}

fn erasure_done(c: &mut ErasureCounts) -> &ErasureCounts {
    c
}

/// The purpose's own key if the day has one, else its shared key.
fn pick_key(
    rows: KeyRows,
    purpose: KeyPurpose,
) -> Result<Option<(KeyPurpose, WrappedKey)>, StoreError> {
    let mut shared = None;
    for (name, version, bytes) in rows {
        let found = purpose_of(&name)?;
        let key = wrapped((version, bytes))?;
        if found == purpose {
            return Ok(Some((found, key)));
        }
        if found == KeyPurpose::Shared {
            shared = Some((found, key));
        }
    }
    Ok(shared)
}
