//! Crypto-shredding, end to end: retention by day (with a controllable clock) and the erasure
//! of one model's data.
//!
//! Five days of traffic are ingested for two models; an attacker's copy of the stored
//! ciphertexts of the days to be shredded is taken (as a backup of the data tables would hold
//! them); then retention (raw events kept 2 days, profiles kept) and later the erasure of the
//! whole model run. Afterwards: the shredded rows are gone through the API, every wrapped key
//! left in the store is unwrapped under the KEK and tried on the copied ciphertexts (under every
//! context) and none opens them, the kept days and the other model still read, their profiles
//! and drift are intact, and the audit log holds the shred records and still verifies.
//! Runs on SQLite, and on PostgreSQL when `CUSTOS_TEST_POSTGRES_URL` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{Backend, Server, Site, fraud_rows};
use custos_core::{FixedClock, Partition};
use custos_crypto::keys::{DataKey, KekRing, KeyContext, load_kek_dir};
use custos_crypto::seal::open_batch;
use custos_crypto::{BlobKind, KeyPurpose, open_blob};
use custos_server::retention::retention_once;
use custos_store::WrappedKeyRef;
use serde_json::{Value, json};
use std::sync::Arc;

const FRAUD: &str = "fraud-v3";
const OTHER: &str = "other-v1";

fn noon(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
}

/// Days 16..=20 of November 2026; "now" is the 20th.
const DAYS: [u32; 5] = [16, 17, 18, 19, 20];

async fn ingest_days(s: &Server, model: &str) {
    for day in DAYS {
        let start = Utc.with_ymd_and_hms(2026, 11, day, 3, 0, 0).unwrap();
        let rows = fraud_rows(&format!("{model}-{day}"), start, 40, day % 2 == 0);
        let r = s
            .post_ndjson(
                &format!("/api/v1/models/{model}/predictions"),
                Some(&s.admin),
                &rows,
            )
            .await;
        assert!(r.status < 300, "{:?}", r.body);
    }
}

fn window(day: u32) -> String {
    let start = Utc.with_ymd_and_hms(2026, 11, day, 0, 0, 0).unwrap();
    let end = start + Duration::days(1);
    format!("start={}&end={}", start.to_rfc3339(), end.to_rfc3339()).replace("+00:00", "Z")
}

async fn rows_of(s: &Server, model: &str, day: u32) -> usize {
    let r = s
        .get(
            &format!("/api/v1/models/{model}/events?{}&limit=1000", window(day)),
            Some(&s.admin),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["rows"].as_array().unwrap().len()
}

async fn profile_count(s: &Server, model: &str, day: u32) -> u64 {
    let r = s
        .get(
            &format!(
                "/api/v1/models/{model}/features/amount/profile?{}",
                window(day)
            ),
            Some(&s.admin),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["summary"]["count"].as_u64().unwrap_or(0)
}

/// An attacker's copy of stored ciphertexts: (model id, partition, what, bytes).
#[derive(Clone)]
struct Stolen {
    model_id: i64,
    partition: Partition,
    batch: bool,
    label: String,
    bytes: Vec<u8>,
}

async fn steal(s: &Server, model: &str, days: &[u32]) -> Vec<Stolen> {
    let store = &s.state.store;
    let m = store.get_model(model).await.unwrap().unwrap();
    let mut out = Vec::new();
    for day in days {
        let from = Utc.with_ymd_and_hms(2026, 11, *day, 0, 0, 0).unwrap();
        let to = from + Duration::days(1);
        for batch in store.batches(m.id, from..to).await.unwrap() {
            out.push(Stolen {
                model_id: m.id,
                partition: batch.partition,
                batch: true,
                label: String::new(),
                bytes: batch.ciphertext,
            });
        }
        let hours = custos_core::HourBucket::of(from)..custos_core::HourBucket::of(to);
        for delta in store.profile_deltas(m.id, "amount", hours).await.unwrap() {
            out.push(Stolen {
                model_id: m.id,
                partition: delta.partition,
                batch: false,
                label: custos_server::ingest::profile_label("amount", delta.hour),
                bytes: delta.ciphertext,
            });
        }
    }
    assert!(!out.is_empty());
    out
}

/// Every data key and secret left in the store, unwrapped under the KEK with its own context.
async fn every_key_left(site: &Site, s: &Server) -> Vec<DataKey> {
    let ring: KekRing = load_kek_dir(&site.data_dir().join("keys")).unwrap();
    let mut keys = Vec::new();
    for stored in s
        .state
        .store
        .wrapped_keys_not_under(0, 100_000)
        .await
        .unwrap()
    {
        let context = match &stored.at {
            WrappedKeyRef::Data {
                model_id,
                partition,
                purpose,
            } => KeyContext::Data {
                model_id: *model_id,
                partition: *partition,
                purpose: *purpose,
            },
            WrappedKeyRef::Secret { name } => KeyContext::Secret { name: name.clone() },
        };
        keys.push(ring.unwrap(&context, &stored.key).unwrap());
    }
    assert!(!keys.is_empty());
    keys
}

fn opens(key: &DataKey, stolen: &Stolen) -> bool {
    if stolen.batch {
        open_batch(key, stolen.model_id, stolen.partition, &stolen.bytes).is_ok()
    } else {
        open_blob(
            key,
            stolen.model_id,
            stolen.partition,
            BlobKind::Profile,
            &stolen.label,
            &stolen.bytes,
        )
        .is_ok()
    }
}

fn audit_actions(entries: &[custos_store::AuditRow], action: &str) -> Vec<Value> {
    entries
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.record_json).unwrap())
        .filter(|r| r["action"] == action)
        .collect()
}

async fn shredding(backend: Backend) {
    let site = Site::new(backend);
    let clock = Arc::new(FixedClock::new(noon(20)));
    let mut config = site.config();
    config.audit.two_person_rule = true;
    let s = site
        .start_with_clock(config, Arc::clone(&clock) as Arc<dyn custos_core::Clock>)
        .await;
    let api = s.get("/api/v1/openapi.json", None).await;
    assert!(api.body["paths"]["/api/v1/models/{model}/data"]["delete"].is_object());
    assert!(api.body["components"]["schemas"]["RetentionConfig"].is_object());
    s.register_fraud_model().await;
    let mut other = common::fraud_spec();
    other["name"] = json!(OTHER);
    let r = s.post_json("/api/v1/models", Some(&s.admin), &other).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    ingest_days(&s, FRAUD).await;
    ingest_days(&s, OTHER).await;
    for day in DAYS {
        assert_eq!(rows_of(&s, FRAUD, day).await, 40);
    }
    let profiles_before: Vec<u64> = {
        let mut v = Vec::new();
        for day in DAYS {
            v.push(profile_count(&s, FRAUD, day).await);
        }
        v
    };
    assert!(
        profiles_before.iter().all(|c| *c == 40),
        "{profiles_before:?}"
    );

    // Retention: raw events 2 days (the 18th, 19th and 20th are kept), profiles kept.
    let r = s
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/models/{FRAUD}/monitoring"),
            Some(&s.admin),
            Some((
                "application/json",
                serde_json::to_vec(&json!({"retention": {"raw_events_days": 2}})).unwrap(),
            )),
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);

    let stolen = steal(&s, FRAUD, &[16, 17]).await;
    let fraud_id = s.state.store.get_model(FRAUD).await.unwrap().unwrap().id;
    let keys_before = s.state.store.data_key_count(fraud_id).await.unwrap();
    assert_eq!(keys_before, 10, "an events and a profiles key per day");

    // The server's own retention job took the lease at start (and found nothing to do); this
    // test plays another replica once that lease has lapsed, later the same day.
    assert!(retention_once(&s.state, "test").await.unwrap().is_none());
    clock.set(noon(20) + Duration::hours(3));
    let run = retention_once(&s.state, "test").await.unwrap().unwrap();
    assert_eq!(run.shredded, 2, "{run:?}");
    // A second run finds nothing more to do (and writes no audit record).
    let again = retention_once(&s.state, "test").await.unwrap().unwrap();
    assert_eq!(again.shredded, 0);
    assert_eq!(s.state.store.data_key_count(fraud_id).await.unwrap(), 8);

    // The shredded days' rows are gone; their profiles, the kept days and the other model read.
    assert_eq!(rows_of(&s, FRAUD, 16).await, 0);
    assert_eq!(rows_of(&s, FRAUD, 17).await, 0);
    for day in [18, 19, 20] {
        assert_eq!(rows_of(&s, FRAUD, day).await, 40);
    }
    for (i, day) in DAYS.iter().enumerate() {
        assert_eq!(profile_count(&s, FRAUD, *day).await, profiles_before[i]);
        assert_eq!(rows_of(&s, OTHER, *day).await, 40);
    }
    let drift = s
        .get(
            &format!(
                "/api/v1/models/{FRAUD}/drift?reference_start=2026-11-16T00:00:00Z&reference_end=2026-11-18T00:00:00Z&current_start=2026-11-20T00:00:00Z&current_end=2026-11-21T00:00:00Z"
            ),
            Some(&s.admin),
        )
        .await;
    assert_eq!(drift.status, 200, "{:?}", drift.body);

    // The copied batches of the shredded days open under no key left in the store (whatever
    // context); the copied profiles still open (their key is kept).
    let keys = every_key_left(&site, &s).await;
    for item in stolen.iter().filter(|i| i.batch) {
        assert!(
            keys.iter().all(|k| !opens(k, item)),
            "a shredded batch opened"
        );
    }
    let profile_key = s
        .state
        .keys
        .data_key(fraud_id, Partition::of(noon(16)), KeyPurpose::Profiles)
        .await
        .unwrap();
    assert!(
        stolen
            .iter()
            .filter(|i| !i.batch && i.partition == Partition::of(noon(16)))
            .all(|i| opens(&profile_key, i))
    );

    // Lengthening the retention needs a second person (shortening did not).
    let r = s
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/models/{FRAUD}/monitoring"),
            Some(&s.admin),
            Some((
                "application/json",
                serde_json::to_vec(&json!({"retention": {"raw_events_days": 30}})).unwrap(),
            )),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);

    // Erasure of the whole model: the body must name it.
    let all = steal(&s, FRAUD, &DAYS).await;
    let path = format!("/api/v1/models/{FRAUD}/data");
    let erase = |body: Value| {
        s.send(
            reqwest::Method::DELETE,
            &path,
            Some(&s.admin),
            Some(("application/json", serde_json::to_vec(&body).unwrap())),
        )
    };
    assert_eq!(erase(json!({"confirm": OTHER})).await.status, 400);
    assert_eq!(erase(json!({})).await.status, 400);
    assert_eq!(s.state.store.data_key_count(fraud_id).await.unwrap(), 8);
    let r = erase(json!({"confirm": FRAUD})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data_keys"], 8);
    assert_eq!(r.body["batches"], 3);
    assert_eq!(s.state.store.data_key_count(fraud_id).await.unwrap(), 0);
    for day in DAYS {
        assert_eq!(rows_of(&s, FRAUD, day).await, 0);
        assert_eq!(profile_count(&s, FRAUD, day).await, 0);
        assert_eq!(rows_of(&s, OTHER, day).await, 40);
        assert_eq!(profile_count(&s, OTHER, day).await, 40);
    }
    let keys = every_key_left(&site, &s).await;
    for item in &all {
        assert!(
            keys.iter().all(|k| !opens(k, item)),
            "an erased ciphertext opened"
        );
    }
    // The registration stays.
    let r = s
        .get(&format!("/api/v1/models/{FRAUD}"), Some(&s.admin))
        .await;
    assert_eq!(r.status, 200);

    // Audited, and the log still verifies.
    let entries = s.state.store.audit_entries(0, 10_000).await.unwrap();
    let shreds = audit_actions(&entries, "data.retention.shred");
    assert_eq!(shreds.len(), 2, "{shreds:?}");
    let days: Vec<&str> = shreds
        .iter()
        .map(|r| r["detail"]["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["2026-11-16", "2026-11-17"]);
    assert_eq!(shreds[0]["detail"]["counts"]["batches"], 1);
    assert_eq!(shreds[0]["detail"]["keys_destroyed"], json!(["events"]));
    let erasures = audit_actions(&entries, "data.erase");
    assert_eq!(erasures.len(), 1);
    assert_eq!(erasures[0]["detail"]["counts"]["data_keys"], 8);
    s.state.store.verify_audit_chain().await.unwrap();
    s.stop().await;
}

/// Runs one statement with two blob/integer binds on the site's database, as a database
/// superuser would (to turn a day into a pre-0009 `shared` one).
async fn exec(site: &Site, sql: &str, bytes: Option<Vec<u8>>, id: i64) {
    use sqlx::Connection;
    match &site.pg {
        None => {
            let url = format!("sqlite://{}", site.data_dir().join("custos.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
            if let Some(b) = bytes {
                q = q.bind(b);
            }
            q.bind(id).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Some(pg) => {
            let mut n = 0;
            let numbered: String = sql
                .chars()
                .map(|c| {
                    if c == '?' {
                        n += 1;
                        format!("${n}")
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(numbered));
            if let Some(b) = bytes {
                q = q.bind(b);
            }
            q.bind(id).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// A day stored before keys had purposes: one `shared` key seals its batches and profiles.
/// Its raw events expire while its profiles are kept: the profiles are re-sealed under a fresh
/// profiles key and the shared key is destroyed, in one audited transaction.
async fn legacy_day(backend: Backend) {
    let site = Site::new(backend);
    let clock = Arc::new(FixedClock::new(noon(20)));
    let s = site
        .start_with_clock(
            site.config(),
            Arc::clone(&clock) as Arc<dyn custos_core::Clock>,
        )
        .await;
    s.register_fraud_model().await;
    ingest_days(&s, FRAUD).await;
    let store = &s.state.store;
    let m = store.get_model(FRAUD).await.unwrap().unwrap();
    let p16 = Partition::of(noon(16));

    // Re-seal day 16 under one shared key, as a pre-0009 server would have stored it.
    let shared = DataKey::generate().unwrap();
    let ring = load_kek_dir(&site.data_dir().join("keys")).unwrap();
    let wrapped = ring
        .wrap(
            &KeyContext::Data {
                model_id: m.id,
                partition: p16,
                purpose: KeyPurpose::Shared,
            },
            &shared,
        )
        .unwrap();
    let events_key = s
        .state
        .keys
        .data_key(m.id, p16, KeyPurpose::Events)
        .await
        .unwrap();
    let profiles_key = s
        .state
        .keys
        .data_key(m.id, p16, KeyPurpose::Profiles)
        .await
        .unwrap();
    let from = Utc.with_ymd_and_hms(2026, 11, 16, 0, 0, 0).unwrap();
    let mut stolen = Vec::new();
    for batch in store
        .batches(m.id, from..from + Duration::days(1))
        .await
        .unwrap()
    {
        let records = open_batch(&events_key, m.id, p16, &batch.ciphertext).unwrap();
        let sealed = custos_crypto::seal_batch(&shared, m.id, p16, &records).unwrap();
        exec(
            &site,
            "UPDATE batches SET ciphertext = ? WHERE id = ?",
            Some(sealed.ciphertext().to_vec()),
            batch.id,
        )
        .await;
        stolen.push(Stolen {
            model_id: m.id,
            partition: p16,
            batch: true,
            label: String::new(),
            bytes: sealed.ciphertext().to_vec(),
        });
    }
    let deltas = store.partition_profile_deltas(m.id, p16).await.unwrap();
    assert!(!deltas.is_empty());
    for (id, column, hour, ciphertext) in &deltas {
        let label = custos_server::ingest::profile_label(column, custos_core::HourBucket(*hour));
        let plain = open_blob(
            &profiles_key,
            m.id,
            p16,
            BlobKind::Profile,
            &label,
            ciphertext,
        )
        .unwrap();
        let sealed =
            custos_crypto::seal_blob(&shared, m.id, p16, BlobKind::Profile, &label, &plain)
                .unwrap();
        exec(
            &site,
            "UPDATE profile_deltas SET ciphertext = ? WHERE id = ?",
            Some(sealed.ciphertext().to_vec()),
            *id,
        )
        .await;
    }
    exec(
        &site,
        &format!(
            "DELETE FROM data_keys WHERE partition = {} AND model_id = ?",
            p16.0
        ),
        None,
        m.id,
    )
    .await;
    let hex: String = wrapped.bytes.iter().map(|b| format!("{b:02x}")).collect();
    let literal = match backend {
        Backend::Sqlite => format!("X'{hex}'"),
        Backend::Postgres => format!("decode('{hex}', 'hex')"),
    };
    exec(
        &site,
        &format!(
            "INSERT INTO data_keys (model_id, partition, purpose, kek_version, wrapped, \
             created_at) VALUES (?, {}, 'shared', {}, {literal}, 0)",
            p16.0, wrapped.kek_version
        ),
        None,
        m.id,
    )
    .await;
    s.state.keys.forget_partition(m.id, p16);
    assert_eq!(rows_of(&s, FRAUD, 16).await, 40, "the shared day reads");
    assert_eq!(profile_count(&s, FRAUD, 16).await, 40);

    let r = s
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/models/{FRAUD}/monitoring"),
            Some(&s.admin),
            Some((
                "application/json",
                serde_json::to_vec(&json!({"retention": {"raw_events_days": 3}})).unwrap(),
            )),
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    clock.set(noon(20) + Duration::hours(3));
    let run = retention_once(&s.state, "test").await.unwrap().unwrap();
    assert_eq!(run.shredded, 1, "{run:?}");

    assert_eq!(rows_of(&s, FRAUD, 16).await, 0);
    assert_eq!(
        profile_count(&s, FRAUD, 16).await,
        40,
        "profiles re-sealed, not lost"
    );
    assert_eq!(rows_of(&s, FRAUD, 17).await, 40);
    let keys = every_key_left(&site, &s).await;
    assert!(keys.iter().all(|k| stolen.iter().all(|i| !opens(k, i))));
    let (purpose, _) = store
        .get_data_key(m.id, p16, KeyPurpose::Profiles)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purpose, KeyPurpose::Profiles);
    let entries = store.audit_entries(0, 10_000).await.unwrap();
    let shreds = audit_actions(&entries, "data.retention.shred");
    assert_eq!(shreds.len(), 1);
    assert_eq!(shreds[0]["detail"]["keys_destroyed"], json!(["shared"]));
    assert_eq!(
        shreds[0]["detail"]["counts"]["resealed_profile_deltas"],
        json!(deltas.len())
    );
    store.verify_audit_chain().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_shared_day_sqlite() {
    legacy_day(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_shared_day_postgres() {
    if std::env::var("CUSTOS_TEST_POSTGRES_URL").is_err() {
        eprintln!("PostgreSQL run skipped: CUSTOS_TEST_POSTGRES_URL is not set");
        return;
    }
    legacy_day(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredding_sqlite() {
    shredding(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredding_postgres() {
    if std::env::var("CUSTOS_TEST_POSTGRES_URL").is_err() {
        eprintln!("PostgreSQL run skipped: CUSTOS_TEST_POSTGRES_URL is not set");
        return;
    }
    shredding(Backend::Postgres).await;
}
