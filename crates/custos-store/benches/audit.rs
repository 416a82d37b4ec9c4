//! Audit log speed on the embedded (SQLite, `synchronous=FULL`) store:
//!
//! * `append`: stand-alone appends from 64 concurrent callers, each waiting for its own durable
//!   commit (the group-commit path every sign-in, denial and export takes). Target ≥ 20,000
//!   entries/s.
//! * `verify/memory`: the verification walk alone (chain, position, leaf, compact range, one
//!   signed checkpoint per 1,000 entries) over entries already in memory. Target ≥ 1,000,000
//!   entries/s.
//! * `verify/sqlite`: the same walk reading 100,000 entries from the database.
//!
//! Run: `cargo bench -p custos-store --bench audit`. Criterion reports elements/s = entries/s.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use custos_core::{ActorType, AuditEvent, Outcome};
use custos_crypto::audit::{GENESIS, chain_hash};
use custos_crypto::auditlog::{KeyWindow, LogVerifier, StoredCheckpoint, TreeBuilder};
use custos_crypto::checkpoint::{Checkpoint, NoteSigner};
use custos_store::Store;
use std::time::{Duration, Instant};

const CALLERS: usize = 64;
const PER_ITERATION: usize = 4_096;
const VERIFY_ENTRIES: u64 = 100_000;

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        time: chrono::Utc::now(),
        actor: format!("token:{:08x}", i * 2_654_435_761 % 4_294_967_296),
        actor_type: ActorType::Token,
        source_ip: Some("192.0.2.17".into()),
        user_agent: Some("custos-python/0.1 (bench)".into()),
        request_id: Some(format!("{i:016x}")),
        action: "authz.deny".into(),
        resource: "model/fraud-v3".into(),
        outcome: Outcome::Denied,
        status: None,
        detail: serde_json::json!({ "required": "drift:read", "route": "/api/v1/models/{model}/drift" }),
    }
}

async fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_dir, store) = runtime.block_on(sqlite_store());
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(PER_ITERATION as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("append", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    let mut tasks = Vec::with_capacity(CALLERS);
                    for caller in 0..CALLERS {
                        let store = store.clone();
                        tasks.push(tokio::spawn(async move {
                            for i in 0..PER_ITERATION / CALLERS {
                                store
                                    .append_audit(&event(caller * 10_000 + i))
                                    .await
                                    .unwrap();
                            }
                        }));
                    }
                    for task in tasks {
                        task.await.unwrap();
                    }
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

struct Log {
    rows: Vec<(u64, String, [u8; 32])>,
    checkpoints: Vec<StoredCheckpoint>,
    keys: Vec<KeyWindow>,
}

fn build_log(n: u64) -> Log {
    let signer = NoteSigner::from_seed("custos-audit/bench", &[5u8; 32]).unwrap();
    let mut builder = TreeBuilder::resume(0, Vec::new(), GENESIS).unwrap();
    let mut previous = GENESIS;
    let mut rows = Vec::new();
    let mut checkpoints = Vec::new();
    for seq in 1..=n {
        let body = serde_json::to_string(&event(usize::try_from(seq).unwrap())).unwrap();
        let record = format!("{{\"seq\":{seq},{}", &body[1..]);
        let hash = chain_hash(&previous, record.as_bytes());
        previous = hash;
        builder.push(seq, record.as_bytes(), &hash).unwrap();
        rows.push((seq, record, hash));
        if seq % 1_000 == 0 {
            let cp = Checkpoint {
                origin: "custos-audit/bench".into(),
                size: seq,
                root: builder.root(),
            };
            checkpoints.push(StoredCheckpoint {
                tree_size: seq,
                note: signer.sign(&cp).unwrap(),
                key_version: 1,
                signed_at: i64::try_from(seq).unwrap(),
            });
        }
    }
    Log {
        rows,
        checkpoints,
        keys: vec![KeyWindow {
            version: 1,
            verifier: signer.verifier(),
            valid_from: 0,
            valid_until: None,
        }],
    }
}

fn verify(c: &mut Criterion) {
    let log = build_log(VERIFY_ENTRIES);
    let mut group = c.benchmark_group("audit_verify");
    group.throughput(Throughput::Elements(VERIFY_ENTRIES));
    group.sample_size(10);
    group.bench_function("memory", |b| {
        b.iter(|| {
            let mut v =
                LogVerifier::new("custos-audit/bench", &log.keys, &log.checkpoints, None, &[])
                    .unwrap();
            for (seq, record, hash) in &log.rows {
                v.entry(*seq, record.as_bytes(), hash).unwrap();
            }
            v.finish().unwrap()
        });
    });

    // The same number of entries, written through the store and verified from it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_dir, store) = runtime.block_on(sqlite_store());
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for caller in 0..CALLERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..(VERIFY_ENTRIES as usize) / CALLERS {
                    store
                        .append_audit(&event(caller * 100_000 + i))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let entries = runtime
        .block_on(store.verify_audit_log(None, &[]))
        .unwrap()
        .unwrap()
        .entries;
    group.throughput(Throughput::Elements(entries));
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            runtime
                .block_on(store.verify_audit_log(None, &[]))
                .unwrap()
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
