//! Ingest throughput through the whole HTTP path on the embedded SQLite store: a real server on
//! loopback, NDJSON batches of 1,000 rows × 20 features (15 numeric, 4 categorical, 1 PII e-mail
//! pseudonymized with HMAC) plus a score, four clients in parallel. Every row is validated,
//! masked, profiled, sealed (zstd + AES-256-GCM) and durably committed before the answer.
//!
//! Run: `cargo bench -p custos-server --bench ingest`. Criterion reports elements/s = rows/s.

// Test and benchmark code: a failed unwrap is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[path = "support/http_load.rs"]
mod http_load;
use http_load::BenchServer;

const ROWS: usize = 1_000;
const CLIENTS: usize = 4;

fn spec() -> serde_json::Value {
    let mut features: Vec<serde_json::Value> = (0..15)
        .map(|i| json!({"name": format!("num_{i}"), "type": "numeric"}))
        .collect();
    for i in 0..4 {
        features.push(json!({"name": format!("cat_{i}"), "type": "categorical"}));
    }
    features.push(json!({"name": "email", "type": "categorical", "pii": true, "masking": "hmac"}));
    json!({"name": "bench", "id_field": "event_id", "timestamp_field": "ts",
           "features": features, "prediction": {"name": "score", "type": "binary_score"}})
}

fn batch(seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(ROWS * 600);
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let cats = ["DE", "FR", "US", "BR", "IN", "NG", "JP", "GB"];
    for i in 0..ROWS {
        let mut row = serde_json::Map::new();
        row.insert("event_id".into(), json!(format!("b{seq}-{i}")));
        row.insert(
            "ts".into(),
            json!(format!(
                "2026-11-26T{:02}:{:02}:{:02}.000Z",
                (seq / 60) % 24,
                seq % 60,
                i % 60
            )),
        );
        for f in 0..15 {
            row.insert(
                format!("num_{f}"),
                json!((next() * 10_000.0).round() / 100.0),
            );
        }
        for c in 0..4 {
            row.insert(format!("cat_{c}"), json!(cats[(next() * 8.0) as usize % 8]));
        }
        row.insert(
            "email".into(),
            json!(format!("user{}@example.com", (next() * 50_000.0) as u64)),
        );
        row.insert("score".into(), json!((next() * 1000.0).round() / 1000.0));
        serde_json::to_writer(&mut out, &row).unwrap();
        out.push(b'\n');
    }
    out
}

fn ingest(c: &mut Criterion) {
    let server = BenchServer::start();
    server.register(&spec());
    let seq = AtomicU64::new(0);

    let mut group = c.benchmark_group("ingest_http_sqlite");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("ndjson_1000x20_4_clients", |b| {
        b.iter_custom(|iters| {
            let bodies: Vec<Vec<u8>> = (0..iters)
                .map(|_| batch(seq.fetch_add(1, Ordering::Relaxed)))
                .collect();
            server.send_all("bench", bodies, CLIENTS)
        });
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
