//! Benchmark: sealing (serialise → zstd 1 → AES-256-GCM) and opening a 1,000-row batch of
//! masked records, the unit the ingest path seals per request; and one FF1 masking of a card
//! number, through the integer path and through the `fpe` crate's general path.
//!
//! Owns: measurement only. Must not: be used as a correctness test (the unit tests are).

// Bench setup, like tests, may unwrap and index: a failure is a broken bench, not a bug to handle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use custos_core::{
    IngestLimits, MaskedRecord, ModelSchema, ModelSpec, Partition, mask, validate_row,
};
use custos_crypto::{DataKey, HmacPseudonymizer, SecretBytes, open_batch, seal_batch};
use serde_json::json;
use std::hint::black_box;

fn records(n: usize) -> Vec<MaskedRecord> {
    let spec: ModelSpec = serde_json::from_value(json!({"name": "fraud-v3",
        "id_field": "event_id", "timestamp_field": "ts",
        "features": [
            {"name": "amount",   "type": "numeric"},
            {"name": "merchant", "type": "categorical"},
            {"name": "country",  "type": "categorical"},
            {"name": "email",    "type": "categorical", "pii": true, "masking": "hmac"},
            {"name": "note",     "type": "text", "pii": true, "masking": "drop"},
            {"name": "vip",      "type": "boolean"}],
        "prediction": {"name": "score", "type": "binary_score"}}))
    .unwrap();
    let schema = ModelSchema::new(spec).unwrap();
    let keys = HmacPseudonymizer::new(
        SecretBytes::generate().unwrap(),
        SecretBytes::generate().unwrap(),
    );
    let limits = IngestLimits::default();
    const COUNTRIES: [&str; 4] = ["DE", "FR", "US", "JP"];
    (0..n)
        .map(|i| {
            let row = json!({
                "event_id": format!("evt-{i:06}"),
                "ts": 1_764_115_200_i64 + i as i64,
                "amount": (i as f64) * 1.25,
                "merchant": format!("shop-{}", i % 40),
                "country": COUNTRIES[i % 4],
                "email": format!("user{}@example.com", i % 100),
                "note": "please call me back",
                "vip": i % 3 == 0,
                "score": (i % 100) as f64 / 100.0,
            });
            mask(
                &schema,
                validate_row(&schema, i, &row, &limits).unwrap(),
                &keys,
            )
        })
        .collect()
}

fn bench_seal(c: &mut Criterion) {
    let rows = records(1_000);
    let key = DataKey::generate().unwrap();
    let partition = Partition(20_418);
    let sealed = seal_batch(&key, 1, partition, &rows).unwrap();

    let mut group = c.benchmark_group("batch_1000_rows");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("seal", |b| {
        b.iter(|| seal_batch(&key, 1, partition, black_box(&rows)).unwrap())
    });
    group.bench_function("open", |b| {
        b.iter(|| open_batch(&key, 1, partition, black_box(sealed.ciphertext())).unwrap())
    });
    // The serialisation step alone: the binary layout sealed now, and the JSON array sealed
    // before it (still read back).
    group.bench_function("encode_binary", |b| {
        b.iter(|| custos_core::batch_codec::encode_batch(black_box(&rows)).unwrap())
    });
    group.bench_function("encode_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&rows)).unwrap())
    });
    group.finish();
}

fn bench_ff1(c: &mut Criterion) {
    use custos_core::{Ff1Alphabet, Pseudonymizer as _};
    use custos_crypto::ff1::{Alphabet, Ff1Key, encrypt};
    let keys = HmacPseudonymizer::new(
        SecretBytes::generate().unwrap(),
        SecretBytes::generate().unwrap(),
    )
    .with_format_preserving_key(Ff1Key::generate().unwrap());
    let key = Ff1Key::generate().unwrap();
    let digits = Alphabet::digits();
    let mut group = c.benchmark_group("ff1");
    group.throughput(Throughput::Elements(1));
    group.bench_function("card_masking_16_digits", |b| {
        b.iter(|| keys.format_preserving(Ff1Alphabet::Digits, black_box("4111-1111-1111-1111")))
    });
    group.bench_function("encrypt_16_digits", |b| {
        b.iter(|| {
            encrypt(
                &key,
                b"custos/ff1/v1",
                &digits,
                black_box("4111111111111111"),
            )
        })
    });
    // 80 digits: beyond the integer path, so the `fpe` crate's big-number path.
    let long = "4111111111".repeat(8);
    group.bench_function("encrypt_80_digits_general_path", |b| {
        b.iter(|| encrypt(&key, b"custos/ff1/v1", &digits, black_box(&long)))
    });
    group.finish();
}

criterion_group!(benches, bench_seal, bench_ff1);
criterion_main!(benches);
