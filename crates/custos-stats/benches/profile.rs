//! Throughput of profile updates and of a drift comparison.
//!
//! Owns: criterion benchmarks only. Must not: assert correctness (that is the tests' job) or
//! depend on anything outside this crate.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use custos_stats::{CategoricalProfile, DriftThresholds, FeatureProfile, NumericProfile, compare};

/// xorshift64: deterministic, dependency-free input.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn observe(c: &mut Criterion) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let values: Vec<f64> = (0..4096).map(|_| rng.next_f64() * 100.0).collect();
    let names: Vec<String> = (0..4096)
        .map(|_| format!("cat-{}", rng.next_u64() % 200))
        .collect();

    c.bench_function("numeric_observe_4096", |b| {
        let mut p = NumericProfile::new();
        b.iter(|| {
            for v in &values {
                p.observe(black_box(*v));
            }
        });
    });
    c.bench_function("categorical_observe_4096", |b| {
        let mut p = CategoricalProfile::new();
        b.iter(|| {
            for v in &names {
                p.observe(black_box(v));
            }
        });
    });
}

fn drift(c: &mut Criterion) {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut reference = NumericProfile::new();
    let mut current = NumericProfile::new();
    for _ in 0..100_000 {
        reference.observe(rng.next_f64());
        current.observe(rng.next_f64() + 0.1);
    }
    let (reference, current) = (
        FeatureProfile::from(reference),
        FeatureProfile::from(current),
    );
    let thresholds = DriftThresholds::default();
    c.bench_function("compare_numeric_100k", |b| {
        b.iter(|| compare(black_box(&reference), black_box(&current), &thresholds));
    });

    let mut reference = CategoricalProfile::new();
    let mut current = CategoricalProfile::new();
    for _ in 0..100_000 {
        reference.observe(&format!("cat-{}", rng.next_u64() % 500));
        current.observe(&format!("cat-{}", rng.next_u64() % 600));
    }
    let (reference, current) = (
        FeatureProfile::from(reference),
        FeatureProfile::from(current),
    );
    c.bench_function("compare_categorical_500", |b| {
        b.iter(|| compare(black_box(&reference), black_box(&current), &thresholds));
    });
}

criterion_group!(benches, observe, drift);
criterion_main!(benches);
