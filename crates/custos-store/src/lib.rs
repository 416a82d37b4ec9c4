//! Custos persistence: one concrete [`Store`] handle over SQLite (the embedded default) and
//! PostgreSQL (the scale-out store), chosen at run time from the URL scheme.
//!
//! What this crate owns: the schema (one forward-only migration tree per backend), every SQL
//! statement, transaction boundaries (an ingest batch, its event index, profile deltas and
//! volume counts commit together; every audited configuration change commits together with its
//! audit entry), and the hash-chained, append-only audit log.
//!
//! What it must not do: accept plaintext row data (payloads arrive only as
//! [`custos_crypto::SealedBatch`] / [`custos_crypto::SealedBlob`], and no column holds a row
//! value in plaintext), read the wall clock (callers pass `now`), make authorization decisions,
//! or put bound values (ciphertexts, hashes) into errors or logs.
//!
//! The backends are private modules behind a private enum, so callers cannot depend on either;
//! the conformance suite in `tests/conformance.rs` runs every operation against both.

#[macro_use]
mod shared_sql;
mod alerts;
pub use alerts::{
    AlertEventRow, AlertSeriesRow, ChannelRow, DeliveryOutcome, DeliveryRow, SilenceRow,
    channel_secret_name,
};
mod audit;
pub use audit::ORIGIN_META as AUDIT_ORIGIN_META;
mod convert;
mod error;
mod group;
mod history;
mod kek;
mod mirror;
mod postgres;
mod shred;
mod sqlite;
mod tokens;
mod types;
mod url;
mod users;
mod vault;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use history::{ConfigVersionRow, NewConfigVersion, PendingChangeRow};
pub use kek::{KekUsage, StoredWrappedKey, WrappedKeyChange, WrappedKeyRef};
pub use mirror::{AuditMirror, MirrorError, MirrorFuture, MirroredEntry};
pub use shred::{ErasureCounts, ProfileReseal, ShredCounts, ShredPlan};
pub use types::{
    AuditRow, CheckpointRow, IngestCommit, LabelOutcome, LabelRow, ModelRow, MonitoringConfigRow,
    NewReference, NewToken, ProfileDelta, ReferenceRow, SigningKeyRow, StoredBatch, StoredLabel,
    StoredProfile, TokenRow,
};
pub use url::redact_url;
pub use users::{NewUser, UserRow};
pub use vault::{NewVaultEntry, VaultEntry};

use chrono::{DateTime, Utc};
use custos_core::{AuditEvent, EventKey, HourBucket};
use custos_crypto::{SealedBlob, WrappedKey};
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

/// The one handle to the database. Cheap to clone: clones share the connection pools.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// The group-commit writer for stand-alone audit appends, started on first use (after any
    /// [`Store::with_audit_mirror`], so it carries the mirror).
    appender: std::sync::Arc<tokio::sync::OnceCell<group::GroupAppender>>,
}

/// Which database the store talks to. Private so that nothing outside this crate can grow a
/// dependency on one backend.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PgDb),
}

/// Runs the same call on whichever backend the store holds.
macro_rules! dispatch {
    ($store:expr, $db:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($db) => $call.await,
            Backend::Postgres($db) => $call.await,
        }
    };
}

impl Store {
    /// Opens a store from a URL: `sqlite://PATH` (created if missing; `sqlite::memory:` for a
    /// throw-away in-memory database) or `postgres://…` / `postgresql://…`. Any other scheme is
    /// refused with [`StoreError::UnsupportedUrl`], whose text never contains a password.
    ///
    /// SQLite is opened in WAL mode with `synchronous=FULL` (a 2xx promises durability),
    /// `busy_timeout` of 5 s and foreign keys on. Call [`Store::migrate`] before use.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let backend = match url::scheme(url) {
            Some(url::Scheme::Sqlite) => Backend::Sqlite(sqlite::SqliteDb::open(url).await?),
            Some(url::Scheme::Postgres) => Backend::Postgres(postgres::PgDb::open(url).await?),
            None => {
                return Err(StoreError::UnsupportedUrl(format!(
                    "{}: expected a sqlite:// or postgres:// URL",
                    redact_url(url)
                )));
            }
        };
        let store = Store {
            backend,
            appender: std::sync::Arc::default(),
        };
        tracing::debug!(backend = store.backend_name(), url = %redact_url(url), "store opened");
        Ok(store)
    }

    /// Applies the backend's pending migrations (forward-only; already-applied ones are
    /// skipped, so calling it again is harmless).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, db => db.migrate())
    }

    /// Attaches the hook that receives every audit entry inside its appending transaction
    /// (see [`AuditMirror`]); a mirror error rolls the transaction back.
    pub fn with_audit_mirror(mut self, mirror: std::sync::Arc<dyn AuditMirror>) -> Store {
        match &mut self.backend {
            Backend::Sqlite(db) => db.set_mirror(mirror),
            Backend::Postgres(db) => db.set_mirror(mirror),
        }
        self.appender = std::sync::Arc::default();
        self
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        dispatch!(self, db => db.close())
    }

    // ---- meta ----

    /// A small plaintext setting.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, db => db.get_meta(key))
    }

    /// Stores a setting unless one exists; `true` if this call stored it.
    pub async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        dispatch!(self, db => db.insert_meta_if_absent(key, value))
    }

    // ---- wrapped secrets ----

    /// A wrapped secret (pseudonym key, token pepper) by name.
    pub async fn get_secret(&self, name: &str) -> Result<Option<WrappedKey>, StoreError> {
        dispatch!(self, db => db.get_secret(name))
    }

    /// Stores `key` under `name` unless a secret is already there, and returns the stored one.
    /// Two racing callers (threads or replicas) both get the same winner, so both go on to use
    /// the same key.
    pub async fn insert_secret_if_absent(
        &self,
        name: &str,
        key: &WrappedKey,
    ) -> Result<WrappedKey, StoreError> {
        dispatch!(self, db => db.insert_secret_if_absent(name, key))
    }

    // ---- models ----

    /// Registers a model and appends `audit` in the same transaction: if either fails, neither
    /// is stored. A taken name is [`StoreError::Conflict`].
    pub async fn create_model(
        &self,
        name: &str,
        spec_json: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<ModelRow, StoreError> {
        dispatch!(self, db => db.create_model(name, spec_json, now, audit))
    }

    /// A model by name.
    pub async fn get_model(&self, name: &str) -> Result<Option<ModelRow>, StoreError> {
        dispatch!(self, db => db.get_model(name))
    }

    /// Every model, by name.
    pub async fn list_models(&self) -> Result<Vec<ModelRow>, StoreError> {
        dispatch!(self, db => db.list_models())
    }

    // ---- ingest ----

    /// Which of `events` (event key and event time) are already ingested for the model, asked
    /// in chunks of at most 500. An event is identified by both: a retried row repeats its
    /// time, and keying the index by time first keeps ingestion's writes local.
    pub async fn existing_event_keys(
        &self,
        model_id: i64,
        events: &[(EventKey, DateTime<Utc>)],
    ) -> Result<HashSet<EventKey>, StoreError> {
        if events.is_empty() {
            return Ok(HashSet::new());
        }
        dispatch!(self, db => db.existing_event_keys(model_id, events))
    }

    /// Writes sealed batches, their event index entries, profile deltas and volume counts in
    /// one durable transaction, and returns the batch ids in input order. Takes one
    /// [`IngestCommit`] or a `Vec` of them: a request whose rows span several day partitions
    /// seals one batch per partition, and the request must be stored whole or not at all.
    ///
    /// If any event key is already indexed (or repeated within or across the commits) the
    /// result is [`StoreError::DuplicateEvent`] and nothing is written. An unknown model is
    /// [`StoreError::NotFound`]; a profile delta sealed for another model than its batch is
    /// [`StoreError::Conflict`].
    pub async fn commit_ingest(
        &self,
        commits: impl Into<Vec<IngestCommit>>,
    ) -> Result<Vec<i64>, StoreError> {
        let commits: Vec<IngestCommit> = commits.into();
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        for commit in &commits {
            let model_id = commit.batch.model_id();
            if commit
                .profiles
                .iter()
                .any(|p| p.sealed.model_id() != model_id)
            {
                return Err(StoreError::Conflict(
                    "a profile delta is sealed for another model than its batch".into(),
                ));
            }
        }
        dispatch!(self, db => db.commit_ingest(&commits))
    }

    /// Batches of the model whose event-time span `[min_time, max_time]` overlaps the
    /// half-open `range`, oldest first.
    pub async fn batches(
        &self,
        model_id: i64,
        range: Range<DateTime<Utc>>,
    ) -> Result<Vec<StoredBatch>, StoreError> {
        dispatch!(self, db => db.batches(model_id, range))
    }

    // ---- profiles ----

    /// Sealed profile deltas of one column for hours in the half-open range, by hour then id.
    pub async fn profile_deltas(
        &self,
        model_id: i64,
        column: &str,
        hours: Range<HourBucket>,
    ) -> Result<Vec<StoredProfile>, StoreError> {
        dispatch!(self, db => db.profile_deltas(model_id, column, hours))
    }

    /// Up to `limit` (model, column, hour) groups holding at least `min_deltas` deltas.
    pub async fn compaction_candidates(
        &self,
        min_deltas: u32,
        limit: u32,
    ) -> Result<Vec<(i64, String, HourBucket)>, StoreError> {
        dispatch!(self, db => db.compaction_candidates(min_deltas, limit))
    }

    /// In one transaction, deletes exactly the deltas `replaced_ids` of (model, column, hour)
    /// and inserts `merged`. If any id is already gone (or belongs elsewhere) the result is
    /// [`StoreError::Conflict`] and nothing changes, so two compactors cannot both merge one
    /// delta.
    pub async fn replace_profiles(
        &self,
        model_id: i64,
        column: &str,
        hour: HourBucket,
        replaced_ids: &[i64],
        merged: &SealedBlob,
    ) -> Result<(), StoreError> {
        if merged.model_id() != model_id {
            return Err(StoreError::Conflict(
                "the merged profile is sealed for another model".into(),
            ));
        }
        dispatch!(self, db => db.replace_profiles(model_id, column, hour, replaced_ids, merged))
    }

    /// Rows ingested per event hour, for hours in the half-open range with any rows.
    pub async fn volume(
        &self,
        model_id: i64,
        hours: Range<HourBucket>,
    ) -> Result<Vec<(HourBucket, u64)>, StoreError> {
        dispatch!(self, db => db.volume(model_id, hours))
    }

    /// How many events of the model are indexed.
    pub async fn event_count(&self, model_id: i64) -> Result<u64, StoreError> {
        dispatch!(self, db => db.event_count(model_id))
    }

    // ---- labels ----

    /// Stores labels by (model, event key), replacing earlier labels of the same events.
    /// `stored` counts input labels. Labels may arrive before their events; they are joined to
    /// predictions when metrics are computed. Labels sealed for another model are
    /// [`StoreError::Conflict`].
    pub async fn upsert_labels(
        &self,
        model_id: i64,
        labels: &[LabelRow],
        now: DateTime<Utc>,
    ) -> Result<LabelOutcome, StoreError> {
        if labels.is_empty() {
            return Ok(LabelOutcome::default());
        }
        if labels.iter().any(|l| l.sealed.model_id() != model_id) {
            return Err(StoreError::Conflict(
                "a label is sealed for another model".into(),
            ));
        }
        dispatch!(self, db => db.upsert_labels(model_id, labels, now))
    }

    /// Adds refused rows to the counts of (model, hour of arrival, field). Only counts and
    /// field names are kept, never values.
    pub async fn record_rejections(
        &self,
        model_id: i64,
        hour: HourBucket,
        counts: &[(String, u64)],
    ) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        dispatch!(self, db => db.record_rejections(model_id, hour, counts))
    }

    /// Refused rows per field over a range of arrival hours, by field name.
    pub async fn rejections(
        &self,
        model_id: i64,
        hours: Range<HourBucket>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        dispatch!(self, db => db.rejections(model_id, hours))
    }

    /// What PII detection masked in the model's rows of `hours`: (field, kind, findings),
    /// summed over the hours.
    pub async fn pii_findings(
        &self,
        model_id: i64,
        hours: Range<HourBucket>,
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        let query = "SELECT field, kind, CAST(SUM(finding_count) AS BIGINT) FROM pii_findings \
                     WHERE model_id = ? AND hour >= ? AND hour < ? \
                     GROUP BY field, kind ORDER BY field, kind";
        let rows: Vec<(String, String, i64)> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(query)))
                .bind(model_id)
                .bind(hours.start.0)
                .bind(hours.end.0)
                .fetch_all(conn)
                .await?
        });
        rows.into_iter()
            .map(|(field, kind, n)| Ok((field, kind, crate::convert::count_out(n)?)))
            .collect()
    }

    /// The latest event time the model has ingested (freshness), if any.
    pub async fn last_event_time(
        &self,
        model_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        dispatch!(self, db => db.last_event_time(model_id))
    }

    /// The stored labels of those events (asked in chunks of at most 500); events without a
    /// label are simply absent from the answer.
    pub async fn labels_for(
        &self,
        model_id: i64,
        keys: &[EventKey],
    ) -> Result<Vec<StoredLabel>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, db => db.labels_for(model_id, keys))
    }

    // ---- monitoring configuration ----

    /// Stores a new version of a model's monitoring configuration and appends `audit` in the
    /// same transaction; returns the version number (1 for the first). Versions are never
    /// changed or removed. An unknown model is [`StoreError::NotFound`].
    pub async fn insert_monitoring_config(
        &self,
        model_id: i64,
        config_json: &str,
        created_by: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        dispatch!(self, db => db.insert_monitoring_config(model_id, config_json, created_by, now, audit))
    }

    /// The configuration version in force (the highest), if the model has any.
    pub async fn monitoring_config(
        &self,
        model_id: i64,
    ) -> Result<Option<MonitoringConfigRow>, StoreError> {
        dispatch!(self, db => db.monitoring_config(model_id))
    }

    // ---- reference data sets ----

    /// Stores a reference data set's description and sealed profiles, and appends `audit`, in
    /// one transaction. Profiles sealed for another model or partition are
    /// [`StoreError::Conflict`]; an unknown model is [`StoreError::NotFound`].
    pub async fn create_reference(
        &self,
        reference: &NewReference,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<ReferenceRow, StoreError> {
        if reference.profiles.iter().any(|(_, sealed)| {
            sealed.model_id() != reference.model_id || sealed.partition() != reference.partition
        }) {
            return Err(StoreError::Conflict(
                "a reference profile is sealed for another model or partition".into(),
            ));
        }
        dispatch!(self, db => db.create_reference(reference, now, audit))
    }

    /// A model's reference data sets, newest first.
    pub async fn references(&self, model_id: i64) -> Result<Vec<ReferenceRow>, StoreError> {
        dispatch!(self, db => db.references(model_id))
    }

    /// The sealed profiles of one reference data set, by column name.
    pub async fn reference_profiles(
        &self,
        reference_id: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        dispatch!(self, db => db.reference_profiles(reference_id))
    }

    // ---- tokens ----

    /// Stores a new token (only its keyed hash) and appends `audit` in the same transaction.
    /// A taken id or hash is [`StoreError::Conflict`].
    pub async fn create_token(
        &self,
        token: &NewToken,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        dispatch!(self, db => db.create_token(token, audit))
    }

    /// The token whose secret has this keyed hash (revoked and expired ones included: the
    /// caller decides).
    pub async fn find_token_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<TokenRow>, StoreError> {
        dispatch!(self, db => db.find_token_by_hash(hash))
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        dispatch!(self, db => db.list_tokens())
    }

    /// Revokes a live token and appends `audit` in the same transaction; `false` (and no audit
    /// entry) if there is no such token or it was already revoked.
    pub async fn revoke_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        dispatch!(self, db => db.revoke_token(id, now, audit))
    }

    /// Records that the token was used at `now` (never moving the time backwards). An unknown
    /// id is [`StoreError::NotFound`].
    pub async fn touch_token(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        dispatch!(self, db => db.touch_token(id, now))
    }

    // ---- audit ----

    /// Appends one entry to the log and returns its sequence number (from 1, no gaps), once it
    /// is committed. Concurrent calls are committed together (see `group`).
    pub async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let appender = self
            .appender
            .get_or_init(|| async { group::GroupAppender::start(self.backend.clone()) })
            .await;
        appender.append(event).await
    }

    /// Up to `limit` entries with `seq > after_seq`, in order.
    pub async fn audit_entries(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        dispatch!(self, db => db.audit_entries(after_seq, limit))
    }

    /// Recomputes the chain from the genesis hash in `seq` order and returns how many entries
    /// verified; [`StoreError::AuditChainBroken`] names the first entry that was changed,
    /// moved, or (for a gap) removed.
    pub async fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        match self.verify_audit_log(None, &[]).await? {
            Ok(verified) => Ok(verified.entries),
            Err(problem) => Err(StoreError::AuditChainBroken {
                seq: problem
                    .first_entry()
                    .map_or(0, |seq| i64::try_from(seq).unwrap_or(i64::MAX)),
            }),
        }
    }

    /// Up to `limit` entries with `seq > after_seq` as raw bytes (record, chain hash), for
    /// verification: an entry whose stored text is no longer valid UTF-8 must be reported as a
    /// bad entry, not fail the read.
    pub async fn audit_entries_raw(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>, StoreError> {
        dispatch!(self, db => db.audit_entries_raw(after_seq, limit))
    }

    /// The newest entry's position and chain hash.
    pub async fn audit_head(&self) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        dispatch!(self, db => db.audit_head())
    }

    /// Every checkpoint, smallest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        dispatch!(self, db => db.audit_checkpoints())
    }

    /// The largest checkpoint.
    pub async fn latest_audit_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        dispatch!(self, db => db.latest_audit_checkpoint())
    }

    /// Stores a checkpoint; `false` if one of that size exists (another replica signed it).
    pub async fn insert_audit_checkpoint(&self, row: &CheckpointRow) -> Result<bool, StoreError> {
        dispatch!(self, db => db.insert_audit_checkpoint(row))
    }

    /// The checkpoint signing keys, oldest first.
    pub async fn audit_signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        dispatch!(self, db => db.audit_signing_keys())
    }

    /// Makes `row` the signing key (closing the open window of the previous one at its
    /// `valid_from`) and appends `audit`, in one transaction. `false` if that version exists.
    pub async fn add_audit_signing_key(
        &self,
        row: &SigningKeyRow,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, db => db.add_audit_signing_key(row, audit))
    }

    /// The retention anchor: entries below it may have been pruned (0: nothing pruned).
    pub async fn audit_anchor(&self) -> Result<i64, StoreError> {
        dispatch!(self, db => db.audit_anchor())
    }

    /// Moves the retention anchor to the checkpoint of size `anchor`, deletes the entries
    /// below it, and appends `audit`, in one transaction; returns how many entries went.
    pub async fn prune_audit(&self, anchor: i64, audit: &AuditEvent) -> Result<u64, StoreError> {
        dispatch!(self, db => db.prune_audit(anchor, audit))
    }
}

/// Volume entries summed per hour, as stored integers. Summing first means one upsert per hour:
/// PostgreSQL refuses a multi-row upsert that touches one row twice.
fn sum_volume(volume: &[(HourBucket, u64)]) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut per_hour: BTreeMap<i64, i64> = BTreeMap::new();
    for (hour, rows) in volume {
        let slot = per_hour.entry(hour.0).or_insert(0);
        *slot = slot
            .checked_add(convert::count_in(*rows)?)
            .ok_or_else(|| StoreError::Database("volume count overflows".into()))?;
    }
    Ok(per_hour.into_iter().collect())
}

/// Counts for [`Store::upsert_labels`].
fn label_outcome(labels: &[LabelRow]) -> LabelOutcome {
    LabelOutcome {
        stored: labels.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_sums_per_hour() {
        let summed =
            sum_volume(&[(HourBucket(5), 2), (HourBucket(3), 1), (HourBucket(5), 4)]).unwrap();
        assert_eq!(summed, vec![(3, 1), (5, 6)]);
        assert!(sum_volume(&[(HourBucket(1), u64::MAX)]).is_err());
    }

    #[tokio::test]
    async fn unsupported_urls_are_redacted() {
        let err = Store::open("mysql://admin:hunter2@db/custos")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("mysql://admin:***@db/custos"), "{text}");
    }

    #[tokio::test]
    async fn in_memory_sqlite_works() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.backend_name(), "sqlite");
        assert!(store.insert_meta_if_absent("k", "v").await.unwrap());
        assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("v"));
        store.close().await;
    }
}
