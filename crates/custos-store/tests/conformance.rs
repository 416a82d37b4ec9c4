//! The store conformance suite: every test body runs twice, on a fresh SQLite file and on a
//! fresh PostgreSQL database, and must pass unchanged on both — that is what "one Store, two
//! backends" promises callers.
//!
//! PostgreSQL is found through `CUSTOS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); an unreachable server fails the `postgres::*`
//! tests unless `CUSTOS_TEST_SKIP_POSTGRES=1` (see `custos_store::testing`). Run one backend
//! with `cargo test -p custos-store --test conformance sqlite::` (or `postgres::`).

// clippy.toml relaxes these inside `#[test]` functions only; the shared fixtures and bodies
// below are test code too, and a failed unwrap in them is a failed test, which is the point.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use custos_core::{
    ActorType, AuditEvent, EventKey, HourBucket, IngestLimits, MaskedRecord, ModelName,
    ModelSchema, ModelSpec, Outcome, Partition, Pseudonymizer, mask, validate_row,
};
use custos_crypto::{BlobKind, DataKey, KeyPurpose, SealedBlob, WrappedKey, seal_batch, seal_blob};
use custos_store::testing::TestStore;
use custos_store::{
    IngestCommit, LabelOutcome, LabelRow, ModelRow, NewReference, NewToken, ProfileDelta,
    ProfileReseal, ShredPlan, Store, StoreError,
};
use serde_json::json;
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::sync::Arc;

/// Declares each named `async fn(&TestStore)` as `sqlite::<name>` and `postgres::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = custos_store::testing::TestStore::sqlite()
                        .await
                        .expect("a fresh SQLite store");
                    super::$name(&db).await;
                    db.cleanup().await.expect("SQLite cleanup");
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = custos_store::testing::TestStore::postgres()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let Some(db) = db else {
                        eprintln!("PostgreSQL run skipped: CUSTOS_TEST_SKIP_POSTGRES=1");
                        return;
                    };
                    super::$name(&db).await;
                    db.cleanup().await.expect("PostgreSQL cleanup");
                }
            )*
        }
    };
}

conformance!(
    migrate_is_idempotent,
    meta_insert_if_absent_is_race_safe,
    secrets_insert_if_absent_is_race_safe,
    data_keys_insert_if_absent_is_race_safe,
    models_create_get_list_and_conflict,
    commit_ingest_writes_every_part,
    duplicate_event_leaves_store_unchanged,
    multi_partition_commit_is_atomic,
    existing_event_keys_beyond_one_chunk,
    last_event_time_is_the_latest_ingested,
    rejections_add_up_per_hour_and_field,
    pii_findings_are_counted_with_their_rows,
    batches_overlap_the_range,
    profile_deltas_use_half_open_hours,
    replace_profiles_happy_path,
    replace_profiles_conflict_changes_nothing,
    volume_sums_commits_in_one_hour,
    labels_upsert_and_match,
    tokens_create_find_touch_revoke,
    audit_chain_verifies_and_pages,
    concurrent_audit_appends_form_one_chain,
    audit_chain_detects_a_changed_entry,
    audit_chain_detects_a_deleted_entry,
    audit_log_refuses_update_and_delete,
    audited_writes_fail_closed,
    monitoring_config_versions,
    references_store_and_list,
    reference_writes_fail_closed,
    vault_insert_if_absent_is_race_safe_and_erasure_leaves_a_tombstone,
    shred_partition_destroys_keys_and_rows_with_its_audit,
    shred_reseals_a_shared_day_or_changes_nothing,
    erase_model_data_keeps_the_registration_and_other_models,
    shreds_fail_closed_without_their_audit,
);

// ---- fixtures ----

/// A fixed instant: times are parameters, never the wall clock.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

fn hours(n: i64) -> Duration {
    Duration::hours(n)
}

fn event(action: &str, resource: &str) -> AuditEvent {
    AuditEvent {
        time: t0(),
        actor: "system".into(),
        actor_type: ActorType::System,
        source_ip: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: Some("req-1".into()),
        action: action.into(),
        resource: resource.into(),
        outcome: Outcome::Success,
        status: None,
        detail: json!({"why": "conformance"}),
    }
}

/// Event keys that are the id's bytes, zero padded: distinct for distinct short ids.
struct TestKeys;

impl Pseudonymizer for TestKeys {
    fn pseudonym(&self, value: &str) -> String {
        format!("p{}", value.len())
    }

    fn event_key(&self, _model: &ModelName, event_id: &str) -> EventKey {
        key_of(event_id)
    }
    fn format_preserving(
        &self,
        _alphabet: custos_core::Ff1Alphabet,
        _value: &str,
    ) -> Option<String> {
        None
    }
}

/// An event as the index knows it: keyed id and event time.
fn indexed(id: &str, at: DateTime<Utc>) -> (EventKey, DateTime<Utc>) {
    (key_of(id), at)
}

fn key_of(id: &str) -> EventKey {
    let mut k = [0u8; 32];
    for (slot, b) in k.iter_mut().zip(id.bytes()) {
        *slot = b;
    }
    EventKey(k)
}

fn schema() -> ModelSchema {
    let spec: ModelSpec = serde_json::from_value(json!({"name": "fraud-v3",
        "id_field": "event_id", "timestamp_field": "ts",
        "features": [{"name": "amount", "type": "numeric"}],
        "prediction": {"name": "score", "type": "binary_score"}}))
    .unwrap();
    ModelSchema::new(spec).unwrap()
}

fn records(ids: &[String], at: DateTime<Utc>) -> Vec<MaskedRecord> {
    let schema = schema();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let row = json!({"event_id": id, "ts": at.to_rfc3339(), "amount": i, "score": 0.5});
            let valid = validate_row(&schema, i, &row, &IngestLimits::default()).unwrap();
            mask(&schema, valid, &TestKeys)
        })
        .collect()
}

fn blob(
    key: &DataKey,
    model_id: i64,
    hour: HourBucket,
    kind: BlobKind,
    bytes: &[u8],
) -> SealedBlob {
    seal_blob(key, model_id, hour.partition(), kind, "amount", bytes).unwrap()
}

/// One batch of `ids` at `at`, with one profile delta for `amount` and the volume of its hour.
fn commit(key: &DataKey, model_id: i64, ids: &[&str], at: DateTime<Utc>) -> IngestCommit {
    let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let rows = records(&ids, at);
    let hour = HourBucket::of(at);
    IngestCommit {
        batch: seal_batch(key, model_id, hour.partition(), &rows).unwrap(),
        events: rows
            .iter()
            .map(|r| (r.event_key().unwrap(), r.timestamp()))
            .collect(),
        profiles: vec![ProfileDelta {
            column: "amount".into(),
            hour,
            sealed: blob(key, model_id, hour, BlobKind::Profile, b"sketch"),
        }],
        volume: vec![(hour, rows.len() as u64)],
        pii_findings: vec![(hour, "comment".into(), "email".into(), 1)],
    }
}

async fn model(store: &Store, name: &str) -> ModelRow {
    store
        .create_model(name, r#"{"name":"m"}"#, t0(), &event("model.create", name))
        .await
        .unwrap()
}

fn wrapped(tag: u8) -> WrappedKey {
    WrappedKey {
        kek_version: u32::from(tag),
        bytes: vec![tag; 60],
    }
}

const ALL_HOURS: std::ops::Range<HourBucket> = HourBucket(i64::MIN)..HourBucket(i64::MAX);

fn all_time() -> std::ops::Range<DateTime<Utc>> {
    DateTime::<Utc>::MIN_UTC..DateTime::<Utc>::MAX_UTC
}

/// Everything an ingest writes, for before/after comparisons.
async fn snapshot(store: &Store, model_id: i64) -> (usize, u64, usize, Vec<(HourBucket, u64)>) {
    (
        store.batches(model_id, all_time()).await.unwrap().len(),
        store.event_count(model_id).await.unwrap(),
        store
            .profile_deltas(model_id, "amount", ALL_HOURS)
            .await
            .unwrap()
            .len(),
        store.volume(model_id, ALL_HOURS).await.unwrap(),
    )
}

/// Runs raw SQL on the test database outside the store, the way an operator with a database
/// shell could.
async fn raw(db: &TestStore, sql: &'static str) -> Result<(), sqlx::Error> {
    match db.backend_name() {
        "sqlite" => {
            let mut conn = SqliteConnection::connect(db.url()).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        }
        _ => {
            let mut conn = PgConnection::connect(db.url()).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        }
    }
}

// ---- tests ----

async fn migrate_is_idempotent(db: &TestStore) {
    // TestStore already migrated once.
    db.migrate().await.unwrap();
    db.migrate().await.unwrap();
    assert!(matches!(db.backend_name(), "sqlite" | "postgres"));
    assert!(
        db.insert_meta_if_absent("schema-check", "ok")
            .await
            .unwrap()
    );
    assert!(db.list_models().await.unwrap().is_empty());
    assert_eq!(db.verify_audit_chain().await.unwrap(), 0);
}

async fn meta_insert_if_absent_is_race_safe(db: &TestStore) {
    assert_eq!(db.get_meta("bootstrap_hash").await.unwrap(), None);
    let store: Store = (**db).clone();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_meta_if_absent("bootstrap_hash", &format!("v{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        if task.await.unwrap() {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1, "exactly one concurrent insert wins");
    let value = db.get_meta("bootstrap_hash").await.unwrap().unwrap();
    assert!(value.starts_with('v'));
    assert!(
        !db.insert_meta_if_absent("bootstrap_hash", "other")
            .await
            .unwrap()
    );
    assert_eq!(db.get_meta("bootstrap_hash").await.unwrap(), Some(value));
}

async fn secrets_insert_if_absent_is_race_safe(db: &TestStore) {
    assert_eq!(db.get_secret("pepper").await.unwrap(), None);
    let store: Store = (**db).clone();
    let tasks: Vec<_> = (1..=8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_secret_if_absent("pepper", &wrapped(i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.push(task.await.unwrap());
    }
    let stored = db.get_secret("pepper").await.unwrap().unwrap();
    assert!(
        winners.iter().all(|w| *w == stored),
        "every caller gets the one stored key"
    );
    // A later insert keeps the stored key.
    assert_eq!(
        db.insert_secret_if_absent("pepper", &wrapped(99))
            .await
            .unwrap(),
        stored
    );
    // Names are independent.
    assert_eq!(
        db.insert_secret_if_absent("pii", &wrapped(42))
            .await
            .unwrap(),
        wrapped(42)
    );
}

async fn data_keys_insert_if_absent_is_race_safe(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let day = Partition(20_418);
    let events = KeyPurpose::Events;
    assert_eq!(db.get_data_key(m.id, day, events).await.unwrap(), None);
    let store: Store = (**db).clone();
    let tasks: Vec<_> = (1..=8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_data_key_if_absent(m.id, day, events, &wrapped(i), t0())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.push(task.await.unwrap());
    }
    let stored = db.get_data_key(m.id, day, events).await.unwrap().unwrap();
    assert_eq!(stored.0, events);
    assert!(winners.iter().all(|w| *w == stored));
    assert_eq!(
        db.get_data_key(m.id, Partition(day.0 + 1), events)
            .await
            .unwrap(),
        None
    );
    // The other purpose of the same day is a key of its own.
    assert_eq!(
        db.get_data_key(m.id, day, KeyPurpose::Profiles)
            .await
            .unwrap(),
        None
    );
    let profiles = db
        .insert_data_key_if_absent(m.id, day, KeyPurpose::Profiles, &wrapped(9), t0())
        .await
        .unwrap();
    assert_eq!(profiles, (KeyPurpose::Profiles, wrapped(9)));
    assert_eq!(db.data_key_count(m.id).await.unwrap(), 2);
    assert!(matches!(
        db.insert_data_key_if_absent(m.id + 1000, day, events, &wrapped(1), t0())
            .await,
        Err(StoreError::NotFound)
    ));
    // No new shared key is made.
    assert!(matches!(
        db.insert_data_key_if_absent(m.id, day, KeyPurpose::Shared, &wrapped(1), t0())
            .await,
        Err(StoreError::Conflict(_))
    ));
}

/// A legacy (pre-0009) day: one `shared` key row, as the migration leaves it.
async fn legacy_key(db: &TestStore, model_id: i64, day: Partition, tag: u8) {
    let hex = format!("{tag:02x}").repeat(60);
    let bytes = match db.backend_name() {
        "sqlite" => format!("X'{hex}'"),
        _ => format!("decode('{hex}', 'hex')"),
    };
    let sql = format!(
        "INSERT INTO data_keys (model_id, partition, purpose, kek_version, wrapped, created_at) \
         VALUES ({model_id}, {}, 'shared', {tag}, {bytes}, 0)",
        day.0
    );
    match db.backend_name() {
        "sqlite" => {
            let mut conn = SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        _ => {
            let mut conn = PgConnection::connect(db.url()).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
    }
}

async fn shred_partition_destroys_keys_and_rows_with_its_audit(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let other = model(db, "other").await;
    let key = DataKey::generate().unwrap();
    let day1 = t0();
    let day2 = t0() + Duration::days(1);
    for (id, at) in [(m.id, day1), (m.id, day2), (other.id, day1)] {
        let p = Partition::of(at);
        for purpose in [KeyPurpose::Events, KeyPurpose::Profiles] {
            db.insert_data_key_if_absent(id, p, purpose, &wrapped(1), t0())
                .await
                .unwrap();
        }
        let prefix = format!("{id}-{}", p.0);
        let a = format!("{prefix}-a");
        let b = format!("{prefix}-b");
        db.commit_ingest(commit(&key, id, &[a.as_str(), b.as_str()], at))
            .await
            .unwrap();
    }
    let p1 = Partition::of(day1);
    let before = db.verify_audit_chain().await.unwrap();
    // Raw events of day 1 expire; its profiles stay.
    let plan = ShredPlan {
        model_id: m.id,
        partition: p1,
        rows: vec![KeyPurpose::Events],
        destroy: vec![KeyPurpose::Events],
        reseal: None,
    };
    let counts = db
        .shred_partition(&plan, t0(), |c| {
            let mut e = event("data.retention.shred", "model/fraud-v3");
            e.detail = json!({"batches": c.batches, "data_keys": c.data_keys});
            e
        })
        .await
        .unwrap();
    assert_eq!(counts.data_keys, 1);
    assert_eq!(counts.batches, 1);
    assert_eq!(counts.events, 2);
    assert_eq!(counts.profile_deltas, 0);
    assert_eq!(
        db.get_data_key(m.id, p1, KeyPurpose::Events).await.unwrap(),
        None
    );
    assert!(
        db.get_data_key(m.id, p1, KeyPurpose::Profiles)
            .await
            .unwrap()
            .is_some()
    );
    let batches = db.batches(m.id, all_time()).await.unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].partition, Partition::of(day2));
    assert_eq!(db.event_count(m.id).await.unwrap(), 2);
    let hour1 = HourBucket::of(day1);
    assert_eq!(
        db.profile_deltas(m.id, "amount", ALL_HOURS)
            .await
            .unwrap()
            .len(),
        2,
        "the profiles of both days stay"
    );
    // The other model is untouched.
    assert_eq!(db.batches(other.id, all_time()).await.unwrap().len(), 1);
    assert_eq!(db.data_key_count(other.id).await.unwrap(), 2);
    // The audit record is in the chain, with the counts.
    assert_eq!(db.verify_audit_chain().await.unwrap(), before + 1);
    let last = db.audit_entries(before as i64, 10).await.unwrap();
    assert!(last[0].record_json.contains("data.retention.shred"));
    assert!(last[0].record_json.contains(r#""batches":1"#));

    // Then its profiles expire too.
    let plan = ShredPlan {
        rows: vec![KeyPurpose::Profiles],
        destroy: vec![KeyPurpose::Profiles],
        ..plan
    };
    let counts = db
        .shred_partition(&plan, t0(), |_| {
            event("data.retention.shred", "model/fraud-v3")
        })
        .await
        .unwrap();
    assert_eq!(
        (counts.data_keys, counts.profile_deltas, counts.volume_hours),
        (1, 1, 1)
    );
    assert!(
        db.volume(m.id, hour1..HourBucket(hour1.0 + 1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.data_key_count(m.id).await.unwrap(),
        2,
        "day 2 keeps both keys"
    );
    let days = db.data_key_days(m.id, Partition(p1.0 + 10)).await.unwrap();
    assert_eq!(days.len(), 1);
}

async fn shred_reseals_a_shared_day_or_changes_nothing(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    let p = Partition::of(t0());
    legacy_key(db, m.id, p, 3).await;
    db.commit_ingest(commit(&key, m.id, &["a", "b"], t0()))
        .await
        .unwrap();
    db.commit_ingest(commit(&key, m.id, &["c"], t0() + hours(1)))
        .await
        .unwrap();
    assert_eq!(
        db.get_data_key(m.id, p, KeyPurpose::Profiles)
            .await
            .unwrap(),
        Some((KeyPurpose::Shared, wrapped(3)))
    );
    assert!(
        db.partition_has_rows(m.id, p, KeyPurpose::Profiles)
            .await
            .unwrap()
    );
    let deltas = db.partition_profile_deltas(m.id, p).await.unwrap();
    assert_eq!(deltas.len(), 2);
    let before = db.verify_audit_chain().await.unwrap();
    // A re-seal that misses a delta (one changed meanwhile) is refused whole.
    let short = ShredPlan {
        model_id: m.id,
        partition: p,
        rows: vec![KeyPurpose::Events],
        destroy: vec![KeyPurpose::Shared],
        reseal: Some(ProfileReseal {
            key: wrapped(4),
            deltas: vec![(deltas[0].0, b"new".to_vec())],
        }),
    };
    let refused = db
        .shred_partition(&short, t0(), |_| event("data.retention.shred", "m"))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(db.verify_audit_chain().await.unwrap(), before);
    assert_eq!(db.data_key_count(m.id).await.unwrap(), 1);
    assert_eq!(db.batches(m.id, all_time()).await.unwrap().len(), 2);

    let plan = ShredPlan {
        reseal: Some(ProfileReseal {
            key: wrapped(4),
            deltas: deltas.iter().map(|d| (d.0, b"resealed".to_vec())).collect(),
        }),
        ..short
    };
    let counts = db
        .shred_partition(&plan, t0(), |_| event("data.retention.shred", "m"))
        .await
        .unwrap();
    assert_eq!(
        (counts.data_keys, counts.resealed, counts.batches),
        (1, 2, 2)
    );
    assert_eq!(
        db.get_data_key(m.id, p, KeyPurpose::Profiles)
            .await
            .unwrap(),
        Some((KeyPurpose::Profiles, wrapped(4)))
    );
    assert_eq!(
        db.get_data_key(m.id, p, KeyPurpose::Events).await.unwrap(),
        None
    );
    let now = db.profile_deltas(m.id, "amount", ALL_HOURS).await.unwrap();
    assert!(now.iter().all(|d| d.ciphertext == b"resealed"));
    assert_eq!(db.verify_audit_chain().await.unwrap(), before + 1);
}

async fn erase_model_data_keeps_the_registration_and_other_models(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let other = model(db, "other").await;
    let key = DataKey::generate().unwrap();
    for id in [m.id, other.id] {
        for purpose in [KeyPurpose::Events, KeyPurpose::Profiles] {
            db.insert_data_key_if_absent(id, Partition::of(t0()), purpose, &wrapped(1), t0())
                .await
                .unwrap();
        }
        db.insert_secret_if_absent(&format!("token-vault/{id}"), &wrapped(2))
            .await
            .unwrap();
        let a = format!("{id}-a");
        db.commit_ingest(commit(&key, id, &[a.as_str()], t0()))
            .await
            .unwrap();
    }
    let vault_name = format!("token-vault/{}", m.id);
    let counts = db
        .erase_model_data(m.id, &vault_name, |c| {
            let mut e = event("data.erase", "model/fraud-v3");
            e.detail = json!({"data_keys": c.data_keys});
            e
        })
        .await
        .unwrap();
    assert_eq!(counts.data_keys, 2);
    assert!(counts.vault_key);
    assert_eq!(
        (counts.batches, counts.events, counts.profile_deltas),
        (1, 1, 1)
    );
    assert_eq!(db.data_key_count(m.id).await.unwrap(), 0);
    assert_eq!(db.get_secret(&vault_name).await.unwrap(), None);
    assert!(db.batches(m.id, all_time()).await.unwrap().is_empty());
    assert!(db.pii_findings(m.id, ALL_HOURS).await.unwrap().is_empty());
    assert_eq!(db.pii_findings(other.id, ALL_HOURS).await.unwrap().len(), 1);
    assert!(
        db.get_model("fraud-v3").await.unwrap().is_some(),
        "registration stays"
    );
    assert_eq!(db.data_key_count(other.id).await.unwrap(), 2);
    assert_eq!(db.batches(other.id, all_time()).await.unwrap().len(), 1);
    assert!(
        db.get_secret(&format!("token-vault/{}", other.id))
            .await
            .unwrap()
            .is_some()
    );
    let last = db.audit_entries(0, 100).await.unwrap();
    assert!(
        last.last()
            .unwrap()
            .record_json
            .contains(r#""data_keys":2"#)
    );
    assert!(matches!(
        db.erase_model_data(m.id + 1000, "token-vault/none", |_| event(
            "data.erase",
            "x"
        ))
        .await,
        Err(StoreError::NotFound)
    ));
}

async fn shreds_fail_closed_without_their_audit(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    let p = Partition::of(t0());
    db.insert_data_key_if_absent(m.id, p, KeyPurpose::Events, &wrapped(1), t0())
        .await
        .unwrap();
    db.commit_ingest(commit(&key, m.id, &["a"], t0()))
        .await
        .unwrap();
    match db.backend_name() {
        "sqlite" => raw(
            db,
            "CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END",
        )
        .await
        .unwrap(),
        _ => raw(
            db,
            "CREATE FUNCTION audit_blocked() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END; $$; \
             CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_blocked()",
        )
        .await
        .unwrap(),
    }
    let plan = ShredPlan {
        model_id: m.id,
        partition: p,
        rows: vec![KeyPurpose::Events],
        destroy: vec![KeyPurpose::Events],
        reseal: None,
    };
    assert!(
        db.shred_partition(&plan, t0(), |_| event("data.retention.shred", "m"))
            .await
            .is_err()
    );
    assert!(
        db.erase_model_data(m.id, "token-vault/1", |_| event("data.erase", "m"))
            .await
            .is_err()
    );
    assert_eq!(
        db.data_key_count(m.id).await.unwrap(),
        1,
        "nothing destroyed"
    );
    assert_eq!(db.batches(m.id, all_time()).await.unwrap().len(), 1);
}

async fn models_create_get_list_and_conflict(db: &TestStore) {
    let b = db
        .create_model(
            "b-model",
            r#"{"name":"b-model"}"#,
            t0(),
            &event("model.create", "model/b-model"),
        )
        .await
        .unwrap();
    let a = db
        .create_model(
            "A-model",
            r#"{"name":"A-model"}"#,
            t0() + hours(1),
            &event("model.create", "model/A-model"),
        )
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.created_at, t0() + hours(1));
    assert_eq!(db.get_model("b-model").await.unwrap(), Some(b.clone()));
    assert_eq!(db.get_model("nope").await.unwrap(), None);
    // Byte order on both backends ('A' < 'b').
    assert_eq!(db.list_models().await.unwrap(), vec![a.clone(), b.clone()]);

    let dup = db
        .create_model(
            "b-model",
            "{}",
            t0(),
            &event("model.create", "model/b-model"),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(db.list_models().await.unwrap().len(), 2);

    // One audit entry per successful create, none for the refused one.
    let entries = db.audit_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries[0].record_json.contains("model/b-model"));
    assert!(entries[1].record_json.contains("model/A-model"));
    assert!(
        entries
            .iter()
            .all(|e| e.record_json.contains("\"action\":\"model.create\""))
    );
    assert_eq!(db.verify_audit_chain().await.unwrap(), 2);
}

async fn commit_ingest_writes_every_part(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    let at = t0() + Duration::minutes(90);
    let c = commit(&key, m.id, &["e1", "e2", "e3"], at);
    let ciphertext = c.batch.ciphertext().to_vec();
    let ids = db.commit_ingest(c).await.unwrap();
    assert_eq!(ids.len(), 1);
    let batch_id = ids[0];

    let batches = db.batches(m.id, all_time()).await.unwrap();
    assert_eq!(batches.len(), 1);
    let stored = &batches[0];
    assert_eq!(stored.id, batch_id);
    assert_eq!(stored.partition, Partition::of(at));
    assert_eq!(stored.row_count, 3);
    assert_eq!((stored.min_time, stored.max_time), (at, at));
    assert_eq!(stored.ciphertext, ciphertext);

    assert_eq!(db.event_count(m.id).await.unwrap(), 3);
    let found = db
        .existing_event_keys(
            m.id,
            &[indexed("e1", at), indexed("e3", at), indexed("zz", at)],
        )
        .await
        .unwrap();
    assert_eq!(found, [key_of("e1"), key_of("e3")].into_iter().collect());
    // The same id at another time is another event.
    assert!(
        db.existing_event_keys(m.id, &[indexed("e1", at + Duration::seconds(1))])
            .await
            .unwrap()
            .is_empty()
    );
    // Keys are per model.
    let other = model(db, "other").await;
    assert!(
        db.existing_event_keys(other.id, &[indexed("e1", at)])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(db.existing_event_keys(m.id, &[]).await.unwrap().is_empty());

    let profiles = db.profile_deltas(m.id, "amount", ALL_HOURS).await.unwrap();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0].hour, HourBucket::of(at));
    assert_eq!(profiles[0].partition, Partition::of(at));
    assert!(!profiles[0].ciphertext.is_empty());
    assert_eq!(
        db.volume(m.id, ALL_HOURS).await.unwrap(),
        vec![(HourBucket::of(at), 3)]
    );

    // An unknown model is refused and nothing is written.
    let orphan = commit(&key, m.id + 1000, &["x1"], at);
    assert!(matches!(
        db.commit_ingest(orphan).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(db.event_count(m.id + 1000).await.unwrap(), 0);
}

async fn duplicate_event_leaves_store_unchanged(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    db.commit_ingest(commit(&key, m.id, &["e1", "e2"], t0()))
        .await
        .unwrap();
    let before = snapshot(db, m.id).await;

    // e2 is already indexed (a retried row repeats its event time).
    let again = commit(&key, m.id, &["e3", "e2", "e4"], t0());
    assert!(matches!(
        db.commit_ingest(again).await,
        Err(StoreError::DuplicateEvent)
    ));
    assert_eq!(snapshot(db, m.id).await, before);

    // A key repeated inside one commit is a duplicate too.
    let twice = commit(&key, m.id, &["e5", "e5"], t0());
    assert!(matches!(
        db.commit_ingest(twice).await,
        Err(StoreError::DuplicateEvent)
    ));
    assert_eq!(snapshot(db, m.id).await, before);
    assert!(
        db.existing_event_keys(m.id, &[indexed("e3", t0()), indexed("e5", t0())])
            .await
            .unwrap()
            .is_empty()
    );

    // The store still takes new events afterwards.
    db.commit_ingest(commit(&key, m.id, &["e3"], t0()))
        .await
        .unwrap();
    assert_eq!(db.event_count(m.id).await.unwrap(), 3);
}

async fn multi_partition_commit_is_atomic(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    // A request spanning midnight: one batch per day partition, one transaction.
    let before_midnight = t0() - Duration::minutes(10);
    let after_midnight = t0() + Duration::minutes(10);
    assert_ne!(
        Partition::of(before_midnight),
        Partition::of(after_midnight)
    );
    let ids = db
        .commit_ingest(vec![
            commit(&key, m.id, &["n1", "n2"], before_midnight),
            commit(&key, m.id, &["n3"], after_midnight),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let stored = db.batches(m.id, all_time()).await.unwrap();
    assert_eq!(stored.iter().map(|b| b.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        stored.iter().map(|b| b.partition).collect::<Vec<_>>(),
        [
            Partition::of(before_midnight),
            Partition::of(after_midnight)
        ]
    );
    assert_eq!(db.event_count(m.id).await.unwrap(), 3);
    let before = snapshot(db, m.id).await;

    // A duplicate in the second batch rolls back the first one as well.
    let result = db
        .commit_ingest(vec![
            commit(&key, m.id, &["n4"], before_midnight),
            commit(&key, m.id, &["n5", "n3"], after_midnight),
        ])
        .await;
    assert!(
        matches!(result, Err(StoreError::DuplicateEvent)),
        "{result:?}"
    );
    assert_eq!(snapshot(db, m.id).await, before);
    // So does an event (same key, same time) repeated across the batches of one call.
    let result = db
        .commit_ingest(vec![
            commit(&key, m.id, &["n7"], after_midnight),
            commit(&key, m.id, &["n6"], before_midnight),
            commit(&key, m.id, &["n6"], before_midnight),
        ])
        .await;
    assert!(
        matches!(result, Err(StoreError::DuplicateEvent)),
        "{result:?}"
    );
    assert_eq!(snapshot(db, m.id).await, before);
    assert!(db.commit_ingest(Vec::new()).await.unwrap().is_empty());
}

async fn last_event_time_is_the_latest_ingested(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    assert_eq!(db.last_event_time(m.id).await.unwrap(), None);
    let key = DataKey::generate().unwrap();
    db.commit_ingest(commit(&key, m.id, &["late"], t0() + hours(5)))
        .await
        .unwrap();
    db.commit_ingest(commit(&key, m.id, &["early"], t0()))
        .await
        .unwrap();
    assert_eq!(
        db.last_event_time(m.id).await.unwrap(),
        Some(t0() + hours(5))
    );
    assert_eq!(db.last_event_time(m.id + 1).await.unwrap(), None);
}

async fn rejections_add_up_per_hour_and_field(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let h = HourBucket::of(t0());
    db.record_rejections(m.id, h, &[("amount".into(), 3), ("ts".into(), 1)])
        .await
        .unwrap();
    db.record_rejections(m.id, h, &[("amount".into(), 2)])
        .await
        .unwrap();
    db.record_rejections(m.id, HourBucket(h.0 + 1), &[("amount".into(), 10)])
        .await
        .unwrap();
    assert_eq!(
        db.rejections(m.id, h..HourBucket(h.0 + 1)).await.unwrap(),
        vec![("amount".to_owned(), 5), ("ts".to_owned(), 1)]
    );
    assert_eq!(
        db.rejections(m.id, h..HourBucket(h.0 + 2)).await.unwrap(),
        vec![("amount".to_owned(), 15), ("ts".to_owned(), 1)]
    );
    assert!(db.rejections(m.id + 1, ALL_HOURS).await.unwrap().is_empty());
    assert!(matches!(
        db.record_rejections(9_999, h, &[("x".into(), 1)]).await,
        Err(StoreError::NotFound)
    ));
}

async fn pii_findings_are_counted_with_their_rows(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    let h = HourBucket::of(t0());
    db.commit_ingest(commit(&key, m.id, &["a"], t0()))
        .await
        .unwrap();
    db.commit_ingest(commit(&key, m.id, &["b"], t0()))
        .await
        .unwrap();
    db.commit_ingest(commit(&key, m.id, &["c"], t0() + hours(1)))
        .await
        .unwrap();
    assert_eq!(
        db.pii_findings(m.id, h..HourBucket(h.0 + 1)).await.unwrap(),
        vec![("comment".to_owned(), "email".to_owned(), 2)]
    );
    assert_eq!(
        db.pii_findings(m.id, ALL_HOURS).await.unwrap(),
        vec![("comment".to_owned(), "email".to_owned(), 3)]
    );
    // A commit refused as a whole (an event id seen before) leaves no count behind.
    assert!(
        db.commit_ingest(commit(&key, m.id, &["a"], t0()))
            .await
            .is_err()
    );
    assert_eq!(
        db.pii_findings(m.id, ALL_HOURS).await.unwrap(),
        vec![("comment".to_owned(), "email".to_owned(), 3)]
    );
    assert!(
        db.pii_findings(m.id + 1, ALL_HOURS)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn existing_event_keys_beyond_one_chunk(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    let ids: Vec<String> = (0..700).map(|i| format!("evt-{i:05}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    db.commit_ingest(commit(&key, m.id, &id_refs, t0()))
        .await
        .unwrap();
    assert_eq!(db.event_count(m.id).await.unwrap(), 700);

    // 700 ingested + 700 unknown keys, with repeats: several chunks of ≤ 500.
    let mut asked: Vec<(EventKey, DateTime<Utc>)> =
        ids.iter().map(|id| indexed(id, t0())).collect();
    asked.extend((0..700).map(|i| indexed(&format!("new-{i:05}"), t0())));
    asked.extend(ids.iter().take(50).map(|id| indexed(id, t0())));
    let found = db.existing_event_keys(m.id, &asked).await.unwrap();
    assert_eq!(found.len(), 700);
    assert!(found.contains(&key_of("evt-00000")) && found.contains(&key_of("evt-00699")));
    assert!(!found.contains(&key_of("new-00000")));
}

async fn batches_overlap_the_range(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    // Batch 1 spans [t0+1h, t0+3h]; batch 2 sits at t0+5h.
    let ids = ["a".to_owned(), "b".to_owned()];
    let mut rows = records(&ids[..1], t0() + hours(1));
    rows.extend(records(&ids[1..], t0() + hours(3)));
    let wide = IngestCommit {
        batch: seal_batch(&key, m.id, Partition::of(t0()), &rows).unwrap(),
        events: rows
            .iter()
            .map(|r| (r.event_key().unwrap(), r.timestamp()))
            .collect(),
        profiles: vec![],
        volume: vec![],
        pii_findings: vec![],
    };
    let first = db.commit_ingest(wide).await.unwrap()[0];
    let second = db
        .commit_ingest(commit(&key, m.id, &["c"], t0() + hours(5)))
        .await
        .unwrap()[0];

    let ids_in = |range: std::ops::Range<DateTime<Utc>>| {
        let store = (**db).clone();
        async move {
            store
                .batches(m.id, range)
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids_in(t0()..t0() + hours(10)).await, vec![first, second]);
    assert_eq!(ids_in(t0() + hours(2)..t0() + hours(4)).await, vec![first]); // inside the span
    assert_eq!(ids_in(t0()..t0() + hours(1)).await, Vec::<i64>::new()); // end is exclusive
    assert_eq!(ids_in(t0() + hours(3)..t0() + hours(4)).await, vec![first]); // max_time inclusive
    assert_eq!(
        ids_in(t0() + hours(4)..t0() + hours(5) + Duration::microseconds(1)).await,
        vec![second]
    );
    assert_eq!(db.batches(m.id + 1, all_time()).await.unwrap(), vec![]);
}

async fn profile_deltas_use_half_open_hours(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        db.commit_ingest(commit(&key, m.id, &[id], t0() + hours(i as i64)))
            .await
            .unwrap();
    }
    let h0 = HourBucket::of(t0());
    let got = db
        .profile_deltas(m.id, "amount", HourBucket(h0.0 + 1)..HourBucket(h0.0 + 2))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|p| p.hour).collect::<Vec<_>>(),
        vec![HourBucket(h0.0 + 1)]
    );
    let got = db
        .profile_deltas(m.id, "amount", h0..HourBucket(h0.0 + 3))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0].hour <= w[1].hour));
    assert!(
        db.profile_deltas(m.id, "amount", h0..h0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.profile_deltas(m.id, "score", ALL_HOURS)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Three deltas of (`amount`, hour of t0) plus one of another hour.
async fn three_deltas(db: &TestStore) -> (ModelRow, DataKey, HourBucket, Vec<i64>) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    for id in ["a", "b", "c"] {
        db.commit_ingest(commit(&key, m.id, &[id], t0()))
            .await
            .unwrap();
    }
    db.commit_ingest(commit(&key, m.id, &["d"], t0() + hours(1)))
        .await
        .unwrap();
    let hour = HourBucket::of(t0());
    let ids = db
        .profile_deltas(m.id, "amount", hour..HourBucket(hour.0 + 1))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    (m, key, hour, ids)
}

async fn replace_profiles_happy_path(db: &TestStore) {
    let (m, key, hour, ids) = three_deltas(db).await;
    assert_eq!(ids.len(), 3);
    assert_eq!(
        db.compaction_candidates(3, 10).await.unwrap(),
        vec![(m.id, "amount".to_owned(), hour)]
    );
    assert_eq!(db.compaction_candidates(2, 0).await.unwrap(), vec![]);
    assert_eq!(db.compaction_candidates(1, 10).await.unwrap().len(), 2);

    let merged = blob(&key, m.id, hour, BlobKind::Profile, b"merged sketch");
    db.replace_profiles(m.id, "amount", hour, &ids, &merged)
        .await
        .unwrap();
    let now = db
        .profile_deltas(m.id, "amount", hour..HourBucket(hour.0 + 1))
        .await
        .unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].ciphertext, merged.ciphertext());
    assert!(
        !ids.contains(&now[0].id),
        "the merged delta gets a fresh id"
    );
    assert_eq!(db.compaction_candidates(2, 10).await.unwrap(), vec![]);
    // The other hour is untouched.
    assert_eq!(
        db.profile_deltas(m.id, "amount", ALL_HOURS)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn replace_profiles_conflict_changes_nothing(db: &TestStore) {
    let (m, key, hour, ids) = three_deltas(db).await;
    let merged = blob(&key, m.id, hour, BlobKind::Profile, b"merged");
    db.replace_profiles(m.id, "amount", hour, &ids[..2], &merged)
        .await
        .unwrap();
    let before = db.profile_deltas(m.id, "amount", ALL_HOURS).await.unwrap();
    assert_eq!(before.len(), 3); // ids[2], the merged one, and the other hour's

    // ids[0] is gone: a second compactor working from a stale read must not apply.
    let stale = [ids[0], ids[2]];
    let result = db
        .replace_profiles(m.id, "amount", hour, &stale, &merged)
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert_eq!(
        db.profile_deltas(m.id, "amount", ALL_HOURS).await.unwrap(),
        before
    );

    // An id of another hour does not belong to this group.
    let other_hour = before.iter().find(|p| p.hour != hour).unwrap().id;
    let result = db
        .replace_profiles(m.id, "amount", hour, &[ids[2], other_hour], &merged)
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert_eq!(
        db.profile_deltas(m.id, "amount", ALL_HOURS).await.unwrap(),
        before
    );
}

async fn volume_sums_commits_in_one_hour(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    db.commit_ingest(commit(&key, m.id, &["a", "b"], t0() + Duration::minutes(5)))
        .await
        .unwrap();
    db.commit_ingest(commit(
        &key,
        m.id,
        &["c", "d", "e"],
        t0() + Duration::minutes(55),
    ))
    .await
    .unwrap();
    db.commit_ingest(commit(&key, m.id, &["f"], t0() + hours(2)))
        .await
        .unwrap();
    // Several entries for one hour within a commit are summed too.
    let mut c = commit(&key, m.id, &["g"], t0() + hours(2));
    c.volume = vec![
        (HourBucket::of(t0() + hours(2)), 1),
        (HourBucket::of(t0() + hours(2)), 0),
    ];
    db.commit_ingest(c).await.unwrap();

    let h0 = HourBucket::of(t0());
    assert_eq!(
        db.volume(m.id, ALL_HOURS).await.unwrap(),
        vec![(h0, 5), (HourBucket(h0.0 + 2), 2)]
    );
    assert_eq!(
        db.volume(m.id, HourBucket(h0.0 + 1)..HourBucket(h0.0 + 2))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(db.event_count(m.id).await.unwrap(), 7);
}

async fn labels_upsert_and_match(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    db.commit_ingest(commit(&key, m.id, &["e1", "e2"], t0()))
        .await
        .unwrap();
    let hour = HourBucket::of(t0());
    let label = |id: &str, value: &[u8]| LabelRow {
        event_key: key_of(id),
        sealed: blob(&key, m.id, hour, BlobKind::Label, value),
    };
    let outcome = db
        .upsert_labels(
            m.id,
            &[label("e1", b"1"), label("e2", b"0"), label("late", b"1")],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, LabelOutcome { stored: 3 });

    // Re-labelling replaces; a key repeated in one call keeps its last label.
    let outcome = db
        .upsert_labels(
            m.id,
            &[label("e1", b"0"), label("e1", b"1"), label("e3", b"1")],
            t0() + hours(1),
        )
        .await
        .unwrap();
    assert_eq!(outcome, LabelOutcome { stored: 3 });

    // The late event arrives; its label is replaced again.
    db.commit_ingest(commit(&key, m.id, &["late"], t0()))
        .await
        .unwrap();
    let outcome = db
        .upsert_labels(m.id, &[label("late", b"0")], t0())
        .await
        .unwrap();
    assert_eq!(outcome, LabelOutcome { stored: 1 });
    assert_eq!(
        db.upsert_labels(m.id, &[], t0()).await.unwrap(),
        LabelOutcome::default()
    );

    // Reading back by key: the last label of each asked event, unknown keys absent, beyond
    // one chunk of keys, and never another model's.
    let mut asked: Vec<_> = (0..1_200).map(|i| key_of(&format!("none{i}"))).collect();
    asked.extend([key_of("e1"), key_of("late"), key_of("e1")]);
    let mut found = db.labels_for(m.id, &asked).await.unwrap();
    found.sort_by_key(|l| l.event_key);
    let mut expected = vec![key_of("e1"), key_of("late")];
    expected.sort();
    assert_eq!(
        found.iter().map(|l| l.event_key).collect::<Vec<_>>(),
        expected
    );
    for stored in &found {
        assert_eq!(stored.partition, hour.partition());
        let opened = custos_crypto::open_blob(
            &key,
            m.id,
            stored.partition,
            BlobKind::Label,
            "amount",
            &stored.ciphertext,
        )
        .unwrap();
        let want: &[u8] = if stored.event_key == key_of("e1") {
            b"1"
        } else {
            b"0"
        };
        assert_eq!(opened, want);
    }
    assert!(db.labels_for(m.id + 1, &asked).await.unwrap().is_empty());
    assert!(db.labels_for(m.id, &[]).await.unwrap().is_empty());

    // A label sealed for another model is refused.
    let foreign = LabelRow {
        event_key: key_of("e1"),
        sealed: blob(&key, m.id + 1, hour, BlobKind::Label, b"1"),
    };
    assert!(matches!(
        db.upsert_labels(m.id, &[foreign], t0()).await,
        Err(StoreError::Conflict(_))
    ));
}

fn new_token(id: &str, hash_byte: u8) -> NewToken {
    NewToken {
        id: id.into(),
        hash: [hash_byte; 32],
        display_prefix: "cst_AbCd".into(),
        description: "CI pipeline".into(),
        scopes_json: r#"[{"action":"predictions:write","model":"fraud-v3"}]"#.into(),
        created_by: "bootstrap".into(),
        created_at: t0(),
        expires_at: t0() + Duration::days(90),
    }
}

async fn tokens_create_find_touch_revoke(db: &TestStore) {
    db.create_token(
        &new_token("tok_0000000000000001", 1),
        &event("token.create", "token/1"),
    )
    .await
    .unwrap();
    let mut second = new_token("tok_0000000000000002", 2);
    second.created_at = t0() + hours(1);
    db.create_token(&second, &event("token.create", "token/2"))
        .await
        .unwrap();

    let found = db.find_token_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found.id, "tok_0000000000000001");
    assert_eq!(found.scopes_json, new_token("x", 0).scopes_json);
    assert_eq!(found.expires_at, t0() + Duration::days(90));
    assert_eq!((found.revoked_at, found.last_used_at), (None, None));
    assert_eq!(db.find_token_by_hash(&[9; 32]).await.unwrap(), None);

    // Same id or same hash is a conflict, and is not audited.
    let dup_id = db
        .create_token(
            &new_token("tok_0000000000000001", 3),
            &event("token.create", "t"),
        )
        .await;
    assert!(matches!(dup_id, Err(StoreError::Conflict(_))), "{dup_id:?}");
    let dup_hash = db
        .create_token(
            &new_token("tok_0000000000000003", 2),
            &event("token.create", "t"),
        )
        .await;
    assert!(
        matches!(dup_hash, Err(StoreError::Conflict(_))),
        "{dup_hash:?}"
    );

    let listed = db.list_tokens().await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["tok_0000000000000001", "tok_0000000000000002"]
    );

    let used = t0() + hours(5) + Duration::microseconds(7);
    db.touch_token("tok_0000000000000001", used).await.unwrap();
    // An out-of-order older touch does not move it back.
    db.touch_token("tok_0000000000000001", t0() + hours(4))
        .await
        .unwrap();
    let found = db.find_token_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(used));
    assert!(matches!(
        db.touch_token("tok_missing", used).await,
        Err(StoreError::NotFound)
    ));

    let revoked_at = t0() + hours(6);
    assert!(
        db.revoke_token(
            "tok_0000000000000001",
            revoked_at,
            &event("token.revoke", "token/1")
        )
        .await
        .unwrap()
    );
    assert!(
        !db.revoke_token(
            "tok_0000000000000001",
            revoked_at,
            &event("token.revoke", "token/1")
        )
        .await
        .unwrap()
    );
    assert!(
        !db.revoke_token("tok_missing", revoked_at, &event("token.revoke", "token/x"))
            .await
            .unwrap()
    );
    let found = db.find_token_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(revoked_at));

    // Two creates and one effective revoke were audited.
    let actions: Vec<String> = db
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.record_json).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, ["token.create", "token.create", "token.revoke"]);
    assert_eq!(db.verify_audit_chain().await.unwrap(), 3);
}

async fn audit_chain_verifies_and_pages(db: &TestStore) {
    for i in 1..=5 {
        let seq = db
            .append_audit(&event("auth.token", &format!("token/{i}")))
            .await
            .unwrap();
        assert_eq!(seq, i);
    }
    assert_eq!(db.verify_audit_chain().await.unwrap(), 5);
    let page = db.audit_entries(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    let record: serde_json::Value = serde_json::from_str(&page[0].record_json).unwrap();
    assert_eq!(record["seq"], 3);
    assert_eq!(record["resource"], "token/3");
    assert_eq!(record["actor_type"], "system");
    let all = db.audit_entries(0, 100).await.unwrap();
    let expected = custos_crypto::audit::chain_hash(&all[1].hash, all[2].record_json.as_bytes());
    assert_eq!(all[2].hash, expected);
    assert_eq!(
        all[0].hash,
        custos_crypto::audit::chain_hash(
            &custos_crypto::audit::GENESIS,
            all[0].record_json.as_bytes()
        )
    );
    assert!(db.audit_entries(5, 10).await.unwrap().is_empty());
}

async fn concurrent_audit_appends_form_one_chain(db: &TestStore) {
    let store: Arc<Store> = Arc::new((**db).clone());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append_audit(&event("auth.token", &format!("r{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=16).collect::<Vec<i64>>());
    assert_eq!(db.verify_audit_chain().await.unwrap(), 16);
}

async fn audit_chain_detects_a_changed_entry(db: &TestStore) {
    for i in 1..=4 {
        db.append_audit(&event("model.update", &format!("model/{i}")))
            .await
            .unwrap();
    }
    assert_eq!(db.verify_audit_chain().await.unwrap(), 4);
    match db.backend_name() {
        "sqlite" => {
            raw(db, "DROP TRIGGER audit_log_no_update; \
                     UPDATE audit_log SET record_json = replace(record_json, 'model/3', 'model/x') WHERE seq = 3")
                .await
                .unwrap();
        }
        _ => {
            raw(db, "ALTER TABLE audit_log DISABLE TRIGGER ALL; \
                     UPDATE audit_log SET record_json = replace(record_json, 'model/3', 'model/x') WHERE seq = 3")
                .await
                .unwrap();
        }
    }
    let entries = db.audit_entries(2, 1).await.unwrap();
    assert!(
        entries[0].record_json.contains("model/x"),
        "the tamper took effect"
    );
    let result = db.verify_audit_chain().await;
    assert!(
        matches!(result, Err(StoreError::AuditChainBroken { seq: 3 })),
        "{result:?}"
    );
}

async fn audit_chain_detects_a_deleted_entry(db: &TestStore) {
    for i in 1..=4 {
        db.append_audit(&event("model.update", &format!("model/{i}")))
            .await
            .unwrap();
    }
    match db.backend_name() {
        "sqlite" => {
            raw(
                db,
                "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2",
            )
            .await
            .unwrap();
        }
        _ => {
            raw(
                db,
                "ALTER TABLE audit_log DISABLE TRIGGER ALL; DELETE FROM audit_log WHERE seq = 2",
            )
            .await
            .unwrap();
        }
    }
    let result = db.verify_audit_chain().await;
    assert!(
        matches!(result, Err(StoreError::AuditChainBroken { seq: 2 })),
        "{result:?}"
    );

    // Removing the tail is not visible to the chain alone (that is the signed checkpoints'
    // job), but removing the first entry is.
    match db.backend_name() {
        "sqlite" => raw(db, "DELETE FROM audit_log WHERE seq = 1")
            .await
            .unwrap(),
        _ => raw(db, "DELETE FROM audit_log WHERE seq = 1")
            .await
            .unwrap(),
    }
    let result = db.verify_audit_chain().await;
    assert!(
        matches!(result, Err(StoreError::AuditChainBroken { seq: 1 })),
        "{result:?}"
    );
}

async fn audit_log_refuses_update_and_delete(db: &TestStore) {
    db.append_audit(&event("model.create", "model/a"))
        .await
        .unwrap();
    db.append_audit(&event("model.create", "model/b"))
        .await
        .unwrap();
    let update = raw(db, "UPDATE audit_log SET record_json = '{}' WHERE seq = 1").await;
    let err = update.expect_err("UPDATE on audit_log must fail");
    assert!(err.to_string().contains("append-only"), "{err}");
    let delete = raw(db, "DELETE FROM audit_log WHERE seq = 2").await;
    assert!(
        delete
            .expect_err("DELETE on audit_log must fail")
            .to_string()
            .contains("append-only")
    );
    if db.backend_name() == "postgres" {
        let truncate = raw(db, "TRUNCATE audit_log").await;
        assert!(
            truncate
                .expect_err("TRUNCATE on audit_log must fail")
                .to_string()
                .contains("append-only")
        );
    }
    assert_eq!(db.verify_audit_chain().await.unwrap(), 2);
}

async fn audited_writes_fail_closed(db: &TestStore) {
    db.create_token(
        &new_token("tok_live", 1),
        &event("token.create", "token/live"),
    )
    .await
    .unwrap();
    // Make every audit insert fail, as a full disk or a broken audit table would.
    match db.backend_name() {
        "sqlite" => raw(
            db,
            "CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END",
        )
        .await
        .unwrap(),
        _ => raw(
            db,
            "CREATE FUNCTION audit_blocked() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END; $$; \
             CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_blocked()",
        )
        .await
        .unwrap(),
    }
    let model = db
        .create_model(
            "fraud-v3",
            "{}",
            t0(),
            &event("model.create", "model/fraud-v3"),
        )
        .await;
    assert!(matches!(model, Err(StoreError::Database(_))), "{model:?}");
    assert_eq!(
        db.get_model("fraud-v3").await.unwrap(),
        None,
        "no model without its audit entry"
    );

    let token = db
        .create_token(
            &new_token("tok_new", 2),
            &event("token.create", "token/new"),
        )
        .await;
    assert!(token.is_err());
    assert_eq!(db.find_token_by_hash(&[2; 32]).await.unwrap(), None);

    let revoke = db
        .revoke_token("tok_live", t0(), &event("token.revoke", "token/live"))
        .await;
    assert!(revoke.is_err());
    assert_eq!(
        db.find_token_by_hash(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );

    assert!(db.append_audit(&event("auth.login", "x")).await.is_err());
    assert_eq!(db.verify_audit_chain().await.unwrap(), 1);
}

// ---- monitoring configuration and reference data sets ----

async fn monitoring_config_versions(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let other = model(db, "churn").await;
    assert_eq!(db.monitoring_config(m.id).await.unwrap(), None);
    let audit = event("monitoring.update", "model/fraud-v3");
    let v1 = db
        .insert_monitoring_config(m.id, r#"{"a":1}"#, "tok_1", t0(), &audit)
        .await
        .unwrap();
    let v2 = db
        .insert_monitoring_config(m.id, r#"{"a":2}"#, "tok_2", t0() + hours(1), &audit)
        .await
        .unwrap();
    let o1 = db
        .insert_monitoring_config(other.id, r#"{"b":1}"#, "tok_1", t0(), &audit)
        .await
        .unwrap();
    assert_eq!((v1, v2, o1), (1, 2, 1), "versions count per model");
    let current = db.monitoring_config(m.id).await.unwrap().unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(current.config_json, r#"{"a":2}"#);
    assert_eq!(current.created_by, "tok_2");
    assert_eq!(current.created_at, t0() + hours(1));
    assert!(matches!(
        db.insert_monitoring_config(9_999, "{}", "x", t0(), &audit)
            .await,
        Err(StoreError::NotFound)
    ));
    // Each version is audited: two models' three versions plus the two model creations.
    assert_eq!(db.verify_audit_chain().await.unwrap(), 5);
}

fn new_reference(key: &DataKey, model_id: i64, uid: &str) -> NewReference {
    let partition = Partition(-1_000);
    let seal = |column: &str| {
        seal_blob(
            key,
            model_id,
            partition,
            BlobKind::Profile,
            column,
            b"sketch",
        )
        .unwrap()
    };
    NewReference {
        uid: uid.into(),
        model_id,
        name: "train.csv".into(),
        sha256: [7; 32],
        row_count: 1_234,
        label_field: Some("y".into()),
        partition,
        created_by: "tok_ci".into(),
        profiles: vec![
            ("amount".into(), seal("amount")),
            ("country".into(), seal("country")),
        ],
    }
}

async fn references_store_and_list(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    let audit = event("reference.upload", "model/fraud-v3");
    let first = db
        .create_reference(&new_reference(&key, m.id, "ref_a"), t0(), &audit)
        .await
        .unwrap();
    assert_eq!(first.uid, "ref_a");
    assert_eq!(first.row_count, 1_234);
    assert_eq!(first.sha256, [7; 32]);
    assert_eq!(first.label_field.as_deref(), Some("y"));
    assert_eq!(first.partition, Partition(-1_000));
    assert_eq!(first.created_at, t0());
    let second = db
        .create_reference(&new_reference(&key, m.id, "ref_b"), t0() + hours(1), &audit)
        .await
        .unwrap();
    let listed = db.references(m.id).await.unwrap();
    assert_eq!(listed, vec![second.clone(), first.clone()], "newest first");
    let profiles = db.reference_profiles(first.id).await.unwrap();
    let columns: Vec<&str> = profiles.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(columns, ["amount", "country"]);

    // A uid is unique; a profile sealed for another model is refused before any write.
    assert!(
        db.create_reference(&new_reference(&key, m.id, "ref_a"), t0(), &audit)
            .await
            .is_err()
    );
    let mut foreign = new_reference(&key, m.id, "ref_c");
    foreign.model_id = m.id + 1;
    assert!(matches!(
        db.create_reference(&foreign, t0(), &audit).await,
        Err(StoreError::Conflict(_))
    ));
    let mut twice = new_reference(&key, m.id, "ref_d");
    twice.profiles.push(twice.profiles[0].clone());
    assert!(db.create_reference(&twice, t0(), &audit).await.is_err());
    assert_eq!(
        db.references(m.id).await.unwrap().len(),
        2,
        "failed uploads left nothing"
    );
}

async fn reference_writes_fail_closed(db: &TestStore) {
    let m = model(db, "fraud-v3").await;
    let key = DataKey::generate().unwrap();
    match db.backend_name() {
        "sqlite" => raw(
            db,
            "CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END",
        )
        .await
        .unwrap(),
        _ => raw(
            db,
            "CREATE FUNCTION audit_blocked() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END; $$; \
             CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_blocked()",
        )
        .await
        .unwrap(),
    }
    let audit = event("reference.upload", "model/fraud-v3");
    assert!(
        db.create_reference(&new_reference(&key, m.id, "ref_a"), t0(), &audit)
            .await
            .is_err()
    );
    assert!(db.references(m.id).await.unwrap().is_empty());
    assert!(
        db.insert_monitoring_config(m.id, "{}", "x", t0(), &audit)
            .await
            .is_err()
    );
    assert_eq!(db.monitoring_config(m.id).await.unwrap(), None);
}

async fn vault_insert_if_absent_is_race_safe_and_erasure_leaves_a_tombstone(db: &TestStore) {
    use custos_store::{NewVaultEntry, VaultEntry};
    let m = model(db, "vault-model").await;
    let lookup = [7u8; 32];
    let store: Store = (**db).clone();
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let entry = NewVaultEntry {
                    lookup,
                    token: format!("tok_racer{i:017}"),
                    sealed: vec![i; 40],
                };
                store
                    .insert_vault_entries(m.id, &[entry], t0())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.push(task.await.unwrap()[&lookup].clone());
    }
    let token = winners[0].clone();
    assert!(
        winners.iter().all(|w| *w == token),
        "every racer gets the one stored token: {winners:?}"
    );
    assert_eq!(db.vault_size(m.id).await.unwrap(), 1);
    assert_eq!(
        db.vault_tokens(m.id, &[lookup]).await.unwrap()[&lookup],
        token
    );
    let found = db
        .vault_entries(m.id, &[token.clone(), "tok_never".into()])
        .await
        .unwrap();
    assert!(matches!(found.get(&token), Some(VaultEntry::Sealed(b)) if b.len() == 40));
    assert!(!found.contains_key("tok_never"));

    db.erase_vault_entry(
        m.id,
        &token,
        t0(),
        &event("vault.erase", "model/vault-model"),
    )
    .await
    .unwrap();
    assert_eq!(db.vault_size(m.id).await.unwrap(), 0);
    assert!(db.vault_tokens(m.id, &[lookup]).await.unwrap().is_empty());
    assert_eq!(
        db.vault_entries(m.id, std::slice::from_ref(&token))
            .await
            .unwrap()
            .get(&token),
        Some(&VaultEntry::Erased)
    );
    assert!(matches!(
        db.erase_vault_entry(
            m.id,
            &token,
            t0(),
            &event("vault.erase", "model/vault-model")
        )
        .await,
        Err(custos_store::StoreError::NotFound)
    ));
    // The same value later is a new entry under a new token.
    let again = db
        .insert_vault_entries(
            m.id,
            &[NewVaultEntry {
                lookup,
                token: "tok_after_erasure_000000".into(),
                sealed: vec![9; 40],
            }],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(again[&lookup], "tok_after_erasure_000000");
}
