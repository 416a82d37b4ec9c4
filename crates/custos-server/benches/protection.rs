//! What data protection costs on the ingest path, on the same data in one run: 1,000-row NDJSON
//! batches of 20 features (14 numeric, 2 categorical, and four that carry personal data: an
//! e-mail, a card number, a phone number and a postcode) plus a score, taken through the
//! ingest functions the server uses (decode, validate, mask, profile) with
//!
//! - `plain`: every field stored as given, nothing sealed (what a monitoring tool without data
//!   protection does);
//! - `masked`: e-mail `hmac`, card `ff1` (digits), phone `mask`, postcode `generalize`, and
//!   PII detection (`mask`) over the categorical fields — still nothing sealed;
//! - `masked+sealed`: the same, and the batch sealed (zstd + AES-256-GCM under a data key), which
//!   is what Custos stores;
//! - `masked-card-by-hmac+sealed`: the card pseudonymized with `hmac` instead of `ff1`, which
//!   shows what format preservation itself costs.
//!
//! The store commit is left out of that group on purpose: it is the same for all variants and
//! would hide the difference. A second group, `protection_http_sqlite`, measures what an operator
//! sees: the same batches sent over HTTP by four clients to a real server on the embedded SQLite
//! store, each durably committed before its answer, for a model that declares the four fields PII
//! (masked as above, PII detection on) and for one that declares nothing (stored as given). The
//! server always seals (it has no plaintext mode), so that group isolates masking; the first
//! group shows sealing.
//!
//! Run: `cargo bench -p custos-server --bench protection`; criterion reports rows/s.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use custos_core::{IngestLimits, ModelSchema, Partition};
use custos_crypto::{DataKey, HmacPseudonymizer, SecretBytes};
use custos_server::ingest::{BodyFormat, decode_rows, profile_records, validate_and_mask};
use serde_json::json;
use std::hint::black_box;

#[path = "support/http_load.rs"]
mod http_load;
use http_load::BenchServer;

const ROWS: usize = 1_000;

fn schema(protected: bool, ff1: bool) -> ModelSchema {
    let mut features: Vec<serde_json::Value> = (0..14)
        .map(|i| json!({"name": format!("num_{i}"), "type": "numeric"}))
        .collect();
    for i in 0..2 {
        features.push(json!({"name": format!("cat_{i}"), "type": "categorical"}));
    }
    let pii = |name: &str, masking: &str, options: serde_json::Value| {
        if protected {
            json!({"name": name, "type": "categorical", "pii": true, "masking": masking,
                   "masking_options": options})
        } else {
            json!({"name": name, "type": "categorical"})
        }
    };
    features.push(pii("email", "hmac", json!(null)));
    if ff1 {
        features.push(pii("card", "ff1", json!({"min_length": 16})));
    } else {
        features.push(pii("card", "hmac", json!(null)));
    }
    features.push(pii("phone", "mask", json!({"keep_last": 4})));
    features.push(pii("postcode", "generalize", json!({"keep_prefix": 3})));
    let mut spec = json!({"name": "bench", "id_field": "event_id", "timestamp_field": "ts",
        "features": features, "prediction": {"name": "score", "type": "binary_score"}});
    if protected {
        spec["pii_detection"] = json!("mask");
    }
    // `masking_options: null` is not a valid setting: drop it.
    for f in spec["features"].as_array_mut().unwrap() {
        if f["masking_options"].is_null() {
            f.as_object_mut().unwrap().remove("masking_options");
        }
    }
    ModelSchema::new(serde_json::from_value(spec).unwrap()).unwrap()
}

fn batch() -> Vec<u8> {
    let mut out = Vec::with_capacity(ROWS * 700);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x >> 11
    };
    let cats = ["DE", "FR", "US", "BR", "IN", "NG", "JP", "GB"];
    for i in 0..ROWS {
        let mut row = serde_json::Map::new();
        row.insert("event_id".into(), json!(format!("e-{i}")));
        row.insert(
            "ts".into(),
            json!(format!(
                "2026-11-26T10:{:02}:{:02}.000Z",
                i / 60 % 60,
                i % 60
            )),
        );
        for f in 0..14 {
            row.insert(
                format!("num_{f}"),
                json!((next() % 1_000_000) as f64 / 100.0),
            );
        }
        for c in 0..2 {
            row.insert(format!("cat_{c}"), json!(cats[(next() % 8) as usize]));
        }
        let n = next();
        row.insert(
            "email".into(),
            json!(format!("user{}@example.com", n % 50_000)),
        );
        row.insert(
            "card".into(),
            json!(format!(
                "4{:03}-{:04}-{:04}-{:04}",
                n % 1000,
                next() % 10_000,
                next() % 10_000,
                next() % 10_000
            )),
        );
        row.insert(
            "phone".into(),
            json!(format!("+44 20 {:04} {:04}", n % 10_000, next() % 10_000)),
        );
        row.insert(
            "postcode".into(),
            json!(format!("SW{} {}AA", n % 20, n % 9)),
        );
        row.insert("score".into(), json!((next() % 1000) as f64 / 1000.0));
        serde_json::to_writer(&mut out, &row).unwrap();
        out.push(b'\n');
    }
    out
}

fn bench(c: &mut Criterion) {
    let body = batch();
    let keys = HmacPseudonymizer::new(
        SecretBytes::generate().unwrap(),
        SecretBytes::generate().unwrap(),
    )
    .with_format_preserving_key(custos_crypto::ff1::Ff1Key::generate().unwrap());
    let data_key = DataKey::generate().unwrap();
    let limits = IngestLimits::default();
    let mut group = c.benchmark_group("protection");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(30);
    for (name, protected, ff1, sealed) in [
        ("plain", false, false, false),
        ("masked", true, true, false),
        ("masked+sealed", true, true, true),
        ("masked-card-by-hmac+sealed", true, false, true),
    ] {
        let schema = schema(protected, ff1);
        group.bench_function(name, |b| {
            b.iter(|| {
                let rows = decode_rows(&body, BodyFormat::Ndjson, ROWS).unwrap();
                let records = validate_and_mask(&schema, &rows, &limits, &keys).unwrap();
                let profiles = profile_records(&schema, &records);
                if sealed {
                    let partition = Partition::of(records[0].timestamp());
                    let sealed =
                        custos_crypto::seal_batch(&data_key, 1, partition, &records).unwrap();
                    black_box(sealed);
                }
                black_box(profiles);
            });
        });
    }
    group.finish();
}

/// The same batch with fresh event ids (a server refuses ids it has seen as duplicates).
fn with_ids(body: &[u8], seq: u64) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    text.replace("\"event_id\":\"e-", &format!("\"event_id\":\"s{seq}-"))
        .into_bytes()
}

fn http(c: &mut Criterion) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    const CLIENTS: usize = 4;

    let server = BenchServer::start();
    for (name, protected) in [("as-given", false), ("protected", true)] {
        let mut spec = serde_json::to_value(schema(protected, true).spec()).unwrap();
        spec["name"] = json!(name);
        server.register(&spec);
    }
    let body = batch();
    let seq = AtomicU64::new(0);
    let mut group = c.benchmark_group("protection_http_sqlite");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for name in ["as-given", "protected"] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let bodies: Vec<Vec<u8>> = (0..iters)
                    .map(|_| with_ids(&body, seq.fetch_add(1, Ordering::Relaxed)))
                    .collect();
                server.send_all(name, bodies, CLIENTS)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench, http);
criterion_main!(benches);
