//! The randomized tamper test of the audit log, on SQLite and on PostgreSQL.
//!
//! A real server state writes a log of a few hundred varied entries and signs checkpoints over
//! it with its own key. Then an attacker with full database access (triggers disabled, as a
//! database superuser can) changes the stored log in one way per case — a flipped bit in a
//! record or a chain hash, a deleted, reordered or inserted entry, a cut tail, a consistent
//! rewrite with every later chain hash recomputed, a flipped bit in a signed checkpoint — and
//! the verification must fail every time. The log is restored between cases, and the intact log
//! must verify before and after the run, so a verifier that always fails would fail this test
//! too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{BACKENDS, Backend, Site};
use custos_core::{ActorType, AuditEvent, Outcome, SystemClock};
use custos_crypto::audit::chain_hash;
use custos_server::App;
use sqlx::{AssertSqlSafe, Connection};
use std::sync::Arc;

const ENTRIES: i64 = 240;
const CASES: usize = 1_000;

/// Deterministic so a failure can be replayed (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn exec(&mut self, sql: &str, binds: Vec<Bind>) {
        let sql = if matches!(self, Raw::Postgres(_)) {
            let mut out = String::new();
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            sql.to_owned()
        };
        macro_rules! run {
            ($conn:expr) => {{
                let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                for b in &binds {
                    q = match b {
                        Bind::Int(i) => q.bind(*i),
                        Bind::Text(t) => q.bind(t.clone()),
                        Bind::Bytes(b) => q.bind(b.clone()),
                    };
                }
                q.execute(&mut *$conn).await.unwrap();
            }};
        }
        match self {
            Raw::Sqlite(c) => run!(c),
            Raw::Postgres(c) => run!(c),
        }
    }
}

enum Bind {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Clone)]
struct Row {
    seq: i64,
    record: String,
    hash: Vec<u8>,
}

fn event(i: i64) -> AuditEvent {
    AuditEvent {
        time: chrono::Utc::now(),
        actor: format!("token:{i:04}"),
        actor_type: ActorType::Token,
        source_ip: Some(format!("10.0.{}.{}", i % 7, i % 250)),
        user_agent: Some("tamper-test/1.0 \"quoted\"\nsecond line".into()),
        request_id: Some(format!("req-{i}")),
        action: [
            "model.create",
            "auth.sign_in",
            "monitoring.update",
            "token.revoke",
        ][usize::try_from(i % 4).unwrap()]
        .into(),
        resource: format!("model/m{}", i % 5),
        outcome: if i % 3 == 0 {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        status: (i % 3 == 0).then_some(403),
        detail: serde_json::json!({ "n": i, "note": "ünïcödé ✓", "nested": { "a": [1, 2, 3] } }),
    }
}

/// Flips one bit of one ASCII byte so the text stays ASCII (TEXT columns must stay valid).
fn flip_ascii(text: &str, rng: &mut Rng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    loop {
        let i = usize::try_from(rng.below(bytes.len() as u64)).unwrap();
        let bit = 1u8 << rng.below(7);
        let flipped = bytes[i] ^ bit;
        if bytes[i].is_ascii() && flipped.is_ascii() && flipped != 0 {
            bytes[i] = flipped;
            return String::from_utf8(bytes).unwrap();
        }
    }
}

async fn restore(raw: &mut Raw, originals: &[Row], from_seq: i64) {
    raw.exec(
        "DELETE FROM audit_log WHERE seq >= ?",
        vec![Bind::Int(from_seq)],
    )
    .await;
    for chunk in originals
        .iter()
        .filter(|r| r.seq >= from_seq)
        .collect::<Vec<_>>()
        .chunks(100)
    {
        let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let mut binds = Vec::new();
        for r in chunk {
            binds.push(Bind::Int(r.seq));
            binds.push(Bind::Text(r.record.clone()));
            binds.push(Bind::Bytes(r.hash.clone()));
        }
        raw.exec(
            &format!("INSERT INTO audit_log (seq, record_json, hash) VALUES {values}"),
            binds,
        )
        .await;
    }
}

async fn tamper_suite(backend: Backend) {
    let site = Site::new(backend);
    let mut config = site.config();
    // Only the test signs checkpoints, at the moments it chooses.
    config.audit.checkpoint_interval_seconds = u32::MAX;
    config.audit.checkpoint_max_entries = u32::MAX;
    let app = App::build(config, Arc::new(SystemClock)).await.unwrap();
    let state = app.state.clone();
    let store = state.store.clone();
    for i in 0..ENTRIES {
        store.append_audit(&event(i)).await.unwrap();
        if i % 50 == 49 {
            custos_server::audit_log::checkpoint_once(&state, true)
                .await
                .unwrap();
        }
    }
    custos_server::audit_log::checkpoint_once(&state, true)
        .await
        .unwrap()
        .expect("a final checkpoint covering everything");
    let intact = store.verify_audit_log(None, &[]).await.unwrap().unwrap();
    let total = i64::try_from(intact.last_seq).unwrap();
    assert!(total > ENTRIES, "{total}");
    assert_eq!(intact.unsigned_tail, 0);

    let mut raw = match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", site.data_dir().join("custos.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            for trigger in [
                "audit_log_no_update",
                "audit_log_no_delete",
                "audit_checkpoints_no_update",
                "audit_checkpoints_no_delete",
            ] {
                sqlx::query(AssertSqlSafe(format!("DROP TRIGGER {trigger}")))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Raw::Sqlite(c)
        }
        Backend::Postgres => {
            let url = site.pg.as_ref().unwrap().url.clone();
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            for table in ["audit_log", "audit_checkpoints"] {
                sqlx::query(AssertSqlSafe(format!(
                    "ALTER TABLE {table} DISABLE TRIGGER USER"
                )))
                .execute(&mut c)
                .await
                .unwrap();
            }
            Raw::Postgres(c)
        }
    };
    let originals: Vec<Row> = store
        .audit_entries(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| Row {
            seq: r.seq,
            record: r.record_json,
            hash: r.hash.to_vec(),
        })
        .collect();
    assert_eq!(originals.len(), usize::try_from(total).unwrap());
    let checkpoints = store.audit_checkpoints().await.unwrap();

    let seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (backend as u64);
    eprintln!("tamper seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut counts = [0usize; 8];
    for case in 0..CASES {
        let kind = usize::try_from(rng.below(8)).unwrap();
        let seq = 1 + i64::try_from(rng.below(u64::try_from(total).unwrap())).unwrap();
        let row = originals[usize::try_from(seq - 1).unwrap()].clone();
        let mut restore_from = seq;
        let mut restore_checkpoint = None;
        let description = match kind {
            0 => {
                let forged = flip_ascii(&row.record, &mut rng);
                raw.exec(
                    "UPDATE audit_log SET record_json = ? WHERE seq = ?",
                    vec![Bind::Text(forged), Bind::Int(seq)],
                )
                .await;
                format!("bit flip in record {seq}")
            }
            1 => {
                let mut hash = row.hash.clone();
                let i = usize::try_from(rng.below(32)).unwrap();
                hash[i] ^= 1 << rng.below(8);
                raw.exec(
                    "UPDATE audit_log SET hash = ? WHERE seq = ?",
                    vec![Bind::Bytes(hash), Bind::Int(seq)],
                )
                .await;
                format!("bit flip in hash {seq}")
            }
            2 => {
                raw.exec("DELETE FROM audit_log WHERE seq = ?", vec![Bind::Int(seq)])
                    .await;
                format!("deleted {seq}")
            }
            3 => {
                let other = 1 + i64::try_from(rng.below(u64::try_from(total).unwrap())).unwrap();
                let other = if other == seq {
                    if seq == total { seq - 1 } else { seq + 1 }
                } else {
                    other
                };
                let b = originals[usize::try_from(other - 1).unwrap()].clone();
                for (at, from) in [(seq, &b), (other, &row)] {
                    raw.exec(
                        "UPDATE audit_log SET record_json = ?, hash = ? WHERE seq = ?",
                        vec![
                            Bind::Text(from.record.clone()),
                            Bind::Bytes(from.hash.clone()),
                            Bind::Int(at),
                        ],
                    )
                    .await;
                }
                restore_from = seq.min(other);
                format!("swapped {seq} and {other}")
            }
            4 => {
                let cut = 1 + i64::try_from(rng.below(20)).unwrap();
                restore_from = total - cut + 1;
                raw.exec(
                    "DELETE FROM audit_log WHERE seq >= ?",
                    vec![Bind::Int(restore_from)],
                )
                .await;
                format!("cut the last {cut}")
            }
            5 => {
                // Insert a well-formed entry at `seq`, shifting the rest up by one.
                raw.exec(
                    "UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= ?",
                    vec![Bind::Int(seq)],
                )
                .await;
                raw.exec(
                    "UPDATE audit_log SET seq = seq - 999999 WHERE seq >= 1000000",
                    vec![],
                )
                .await;
                let previous = if seq == 1 {
                    custos_crypto::audit::GENESIS.to_vec()
                } else {
                    originals[usize::try_from(seq - 2).unwrap()].hash.clone()
                };
                let forged = format!("{{\"seq\":{seq},\"action\":\"forged\"}}");
                let hash = chain_hash(&previous.try_into().unwrap(), forged.as_bytes());
                raw.exec(
                    "INSERT INTO audit_log (seq, record_json, hash) VALUES (?, ?, ?)",
                    vec![
                        Bind::Int(seq),
                        Bind::Text(forged),
                        Bind::Bytes(hash.to_vec()),
                    ],
                )
                .await;
                format!("inserted at {seq}")
            }
            6 => {
                // A consistent rewrite: change one record and recompute every later chain
                // hash, as someone without the signing key but with the database can.
                let forged_record = row.record.replacen("\"action\":\"", "\"action\":\"x", 1);
                let mut previous: [u8; 32] = if seq == 1 {
                    custos_crypto::audit::GENESIS
                } else {
                    originals[usize::try_from(seq - 2).unwrap()]
                        .hash
                        .clone()
                        .try_into()
                        .unwrap()
                };
                for r in originals.iter().filter(|r| r.seq >= seq) {
                    let record = if r.seq == seq {
                        forged_record.clone()
                    } else {
                        r.record.clone()
                    };
                    let hash = chain_hash(&previous, record.as_bytes());
                    previous = hash;
                    raw.exec(
                        "UPDATE audit_log SET record_json = ?, hash = ? WHERE seq = ?",
                        vec![
                            Bind::Text(record),
                            Bind::Bytes(hash.to_vec()),
                            Bind::Int(r.seq),
                        ],
                    )
                    .await;
                }
                format!("consistent rewrite from {seq}")
            }
            _ => {
                let i = usize::try_from(rng.below(checkpoints.len() as u64)).unwrap();
                let cp = checkpoints[i].clone();
                let forged = flip_ascii(&cp.note, &mut rng);
                raw.exec(
                    "UPDATE audit_checkpoints SET note = ? WHERE tree_size = ?",
                    vec![Bind::Text(forged), Bind::Int(cp.tree_size)],
                )
                .await;
                restore_checkpoint = Some(cp);
                restore_from = total + 1;
                format!("bit flip in checkpoint {}", checkpoints[i].tree_size)
            }
        };
        let outcome = store.verify_audit_log(None, &[]).await.unwrap();
        assert!(
            outcome.is_err(),
            "case {case} ({description}) went undetected"
        );
        counts[kind] += 1;
        if restore_from <= total {
            restore(&mut raw, &originals, restore_from).await;
        }
        if let Some(cp) = restore_checkpoint {
            raw.exec(
                "UPDATE audit_checkpoints SET note = ? WHERE tree_size = ?",
                vec![Bind::Text(cp.note), Bind::Int(cp.tree_size)],
            )
            .await;
        }
    }
    // The restored log verifies again: the verifier is not simply failing.
    let again = store.verify_audit_log(None, &[]).await.unwrap().unwrap();
    assert_eq!(again, intact);
    eprintln!("{backend:?}: {CASES} tamper cases, all detected; per kind {counts:?}");
    assert!(counts.iter().all(|&n| n > 50), "{counts:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_detected_on_both_stores() {
    for backend in BACKENDS {
        tamper_suite(backend).await;
    }
}
