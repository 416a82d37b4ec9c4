//! Profile behaviour: merge properties, byte round trips, hostile bytes, categorical modes.

// Test crate: helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests, and
// here a failing unwrap or index is exactly a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{assert_close, normals};
use custos_stats::{
    CategoricalProfile, DriftThresholds, EXACT_LIMIT, FORMAT_VERSION, FeatureProfile,
    NumericProfile, ProfileKind, StatsError, SummaryDetail, compare,
};
use proptest::prelude::*;

/// `None` = missing.
fn numeric_from(values: &[Option<f64>]) -> NumericProfile {
    let mut p = NumericProfile::new();
    for v in values {
        match v {
            Some(v) => p.observe(*v),
            None => p.observe_missing(),
        }
    }
    p
}

fn categorical_from(values: &[Option<String>]) -> CategoricalProfile {
    let mut p = CategoricalProfile::new();
    for v in values {
        match v {
            Some(v) => p.observe(v),
            None => p.observe_missing(),
        }
    }
    p
}

fn value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        12 => (-1.0e6..1.0e6f64).prop_map(Some),
        2 => Just(None),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)].prop_map(Some),
    ]
}

fn values(max: usize) -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(value(), 0..max)
}

fn finite(values: &[Option<f64>]) -> Vec<f64> {
    values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect()
}

/// Magnitude of the data (mean of |x|). Means are compared to 1e-9 relative to this rather than
/// to the mean itself, which can be ~0 when large values cancel.
fn scale(data: &[f64]) -> f64 {
    data.iter().map(|v| v.abs()).sum::<f64>() / data.len().max(1) as f64
}

fn mean_tolerance(data: &[f64]) -> f64 {
    1e-9 * scale(data)
}

fn merged(a: &NumericProfile, b: &NumericProfile) -> NumericProfile {
    let mut m = a.clone();
    m.merge(b).unwrap();
    m
}

proptest! {
    #[test]
    fn merge_equals_profile_of_concatenation(a in values(1500), b in values(1500)) {
        let pa = numeric_from(&a);
        let pb = numeric_from(&b);
        let m = merged(&pa, &pb);
        let all: Vec<Option<f64>> = a.iter().chain(&b).copied().collect();
        let whole = numeric_from(&all);
        let data = finite(&all);

        prop_assert_eq!(m.count(), whole.count());
        prop_assert_eq!(m.missing(), whole.missing());
        prop_assert_eq!(m.invalid(), whole.invalid());
        prop_assert_eq!(m.finite(), data.len() as u64);
        prop_assert_eq!(m.min(), whole.min());
        prop_assert_eq!(m.max(), whole.max());
        prop_assert_eq!(m.min(), data.iter().copied().reduce(f64::min));
        prop_assert_eq!(m.max(), data.iter().copied().reduce(f64::max));
        match (m.mean(), whole.mean()) {
            (Some(x), Some(y)) => prop_assert!((x - y).abs() <= mean_tolerance(&data), "{} vs {}", x, y),
            (x, y) => prop_assert_eq!(x, y),
        }
        match (m.std(), whole.std()) {
            (Some(x), Some(y)) => prop_assert!((x - y).abs() <= 1e-9 * y.max(scale(&data)), "{} vs {}", x, y),
            (x, y) => prop_assert_eq!(x, y),
        }
    }

    #[test]
    fn merge_is_associative_for_count_and_mean(
        a in values(600), b in values(600), c in values(600)
    ) {
        let (pa, pb, pc) = (numeric_from(&a), numeric_from(&b), numeric_from(&c));
        let left = merged(&merged(&pa, &pb), &pc);
        let right = merged(&pa, &merged(&pb, &pc));
        prop_assert_eq!(left.count(), right.count());
        prop_assert_eq!(left.finite(), right.finite());
        let data: Vec<f64> = finite(&a).into_iter().chain(finite(&b)).chain(finite(&c)).collect();
        match (left.mean(), right.mean()) {
            (Some(x), Some(y)) => prop_assert!((x - y).abs() <= mean_tolerance(&data)),
            (x, y) => prop_assert_eq!(x, y),
        }
    }

    #[test]
    fn merged_median_within_rank_error(
        a in prop::collection::vec(-1.0e3..1.0e3f64, 1..4000),
        b in prop::collection::vec(-1.0e3..1.0e3f64, 1..4000),
    ) {
        let pa = numeric_from(&a.iter().copied().map(Some).collect::<Vec<_>>());
        let pb = numeric_from(&b.iter().copied().map(Some).collect::<Vec<_>>());
        let median = merged(&pa, &pb).quantile(0.5).unwrap();
        let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
        all.sort_by(f64::total_cmp);
        let n = all.len() as f64;
        // Normalized rank interval [strictly below, at or below] of the reported median.
        let below = all.partition_point(|v| *v < median) as f64 / n;
        let at_or_below = all.partition_point(|v| *v <= median) as f64 / n;
        let error = if 0.5 < below { below - 0.5 } else if 0.5 > at_or_below { 0.5 - at_or_below } else { 0.0 };
        prop_assert!(error <= 0.02, "rank error {} (n = {})", error, n);
    }

    #[test]
    fn numeric_bytes_round_trip(a in values(3000)) {
        let p = FeatureProfile::Numeric(numeric_from(&a));
        let bytes = p.to_bytes();
        let back = FeatureProfile::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back.to_bytes(), bytes);
        prop_assert_eq!(back.summary(), p.summary());
        prop_assert_eq!(back.kind(), ProfileKind::Numeric);
    }

    #[test]
    fn categorical_bytes_round_trip(
        a in prop::collection::vec(prop::option::weighted(0.9, "[a-z]{0,3}"), 0..3000)
    ) {
        let p = categorical_from(&a);
        let bytes = FeatureProfile::Categorical(p.clone()).to_bytes();
        let FeatureProfile::Categorical(back) = FeatureProfile::from_bytes(&bytes).unwrap() else {
            panic!("kind changed in round trip")
        };
        // Exact mode is canonical byte for byte. The frequent-items image is not: datasketches
        // rebuilds its hash table on decode, so entries may be written in another order.
        if p.is_exact() {
            prop_assert_eq!(FeatureProfile::Categorical(back.clone()).to_bytes(), bytes);
        }
        prop_assert_eq!(back.category_counts(), p.category_counts());
        prop_assert_eq!(back.count(), p.count());
        prop_assert_eq!(back.missing(), p.missing());
        prop_assert_eq!(back.distinct_estimate(), p.distinct_estimate());
        prop_assert_eq!(back.is_exact(), p.is_exact());
    }

    #[test]
    fn arbitrary_bytes_are_rejected(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(FeatureProfile::from_bytes(&bytes).is_err());
    }

    #[test]
    fn arbitrary_payloads_never_panic(
        kind in 1u8..=2,
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = b"CSP".to_vec();
        bytes.push(FORMAT_VERSION);
        bytes.push(kind);
        bytes.extend(payload);
        exercise(&bytes);
    }

    #[test]
    fn mutated_profiles_never_panic(
        sketch_mode in any::<bool>(),
        numeric in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = sample_profile(numeric, sketch_mode).to_bytes();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        exercise(&bytes);
    }
}

/// Decodes and, if that succeeds, drives every read path; nothing may panic.
fn exercise(bytes: &[u8]) {
    if let Ok(p) = FeatureProfile::from_bytes(bytes) {
        let _ = p.summary();
        let _ = p.to_bytes();
        let mut twice = p.clone();
        let _ = twice.merge(&p);
        let _ = compare(&p, &twice, &DriftThresholds::default());
        let mut fresh = FeatureProfile::new(p.kind());
        let _ = fresh.merge(&p);
        match &mut fresh {
            FeatureProfile::Numeric(n) => n.observe(1.0),
            FeatureProfile::Categorical(c) => {
                for i in 0..50 {
                    c.observe(&i.to_string());
                }
            }
        }
    }
}

fn sample_profile(numeric: bool, sketch_mode: bool) -> FeatureProfile {
    if numeric {
        let mut p = NumericProfile::new();
        for v in normals(7, if sketch_mode { 5000 } else { 50 }, 0.0) {
            p.observe(v);
        }
        p.observe(f64::NAN);
        p.observe_missing();
        FeatureProfile::Numeric(p)
    } else {
        let mut p = CategoricalProfile::new();
        let distinct = if sketch_mode { 1500 } else { 40 };
        for i in 0..3000 {
            p.observe(&format!("v{}", i % distinct));
        }
        p.observe_missing();
        FeatureProfile::Categorical(p)
    }
}

#[test]
fn truncation_at_every_length_is_an_error() {
    for numeric in [true, false] {
        for sketch_mode in [true, false] {
            let bytes = sample_profile(numeric, sketch_mode).to_bytes();
            assert!(FeatureProfile::from_bytes(&bytes).is_ok());
            for len in 0..bytes.len() {
                assert!(
                    FeatureProfile::from_bytes(&bytes[..len]).is_err(),
                    "prefix of {len} bytes accepted"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(FeatureProfile::from_bytes(&longer).is_err());
        }
    }
}

#[test]
fn envelope_header() {
    let bytes = FeatureProfile::new(ProfileKind::Categorical).to_bytes();
    assert_eq!(&bytes[..5], b"CSP\x01\x02");
    let bytes = FeatureProfile::new(ProfileKind::Numeric).to_bytes();
    assert_eq!(&bytes[..5], b"CSP\x01\x01");

    let mut future = bytes.clone();
    future[3] = 2;
    assert_eq!(
        FeatureProfile::from_bytes(&future).unwrap_err(),
        StatsError::UnsupportedVersion(2)
    );
    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        FeatureProfile::from_bytes(&bad_magic),
        Err(StatsError::Corrupt(_))
    ));
    let mut bad_kind = bytes;
    bad_kind[4] = 9;
    assert!(matches!(
        FeatureProfile::from_bytes(&bad_kind),
        Err(StatsError::Corrupt(_))
    ));
}

#[test]
fn inconsistent_counts_are_corrupt() {
    let bytes = sample_profile(true, false).to_bytes();
    // count is the first payload field (offset 5); bump it so the counters no longer add up.
    let mut bumped = bytes.clone();
    bumped[5] = bumped[5].wrapping_add(1);
    let err = FeatureProfile::from_bytes(&bumped).unwrap_err();
    assert!(
        matches!(err, StatsError::Corrupt(ref m) if m.contains("counts disagree")),
        "{err}"
    );
}

#[test]
fn merge_kind_mismatch_leaves_profile_unchanged() {
    let mut num = sample_profile(true, false);
    let before = num.to_bytes();
    let cat = sample_profile(false, false);
    assert_eq!(num.merge(&cat), Err(StatsError::KindMismatch));
    assert_eq!(num.to_bytes(), before);
}

#[test]
fn categorical_switches_to_sketch_past_exact_limit() {
    let mut p = CategoricalProfile::new();
    for i in 0..EXACT_LIMIT {
        p.observe(&format!("value-{i}"));
        p.observe("heavy");
    }
    // EXACT_LIMIT "value-i" plus "heavy" = EXACT_LIMIT + 1 distinct values.
    assert!(!p.is_exact(), "1001 distinct values must have switched");

    let mut q = CategoricalProfile::new();
    for i in 0..EXACT_LIMIT - 1 {
        q.observe(&format!("value-{i}"));
    }
    q.observe("heavy");
    assert!(q.is_exact());
    assert_eq!(q.distinct_estimate(), EXACT_LIMIT as u64);
    q.observe("heavy");
    assert!(q.is_exact(), "repeating a known value must not switch");
    q.observe("one-too-many");
    assert!(!q.is_exact());
    assert_eq!(q.count(), EXACT_LIMIT as u64 + 2);
    let FeatureProfile::Categorical(q) =
        FeatureProfile::from_bytes(&FeatureProfile::Categorical(q).to_bytes()).unwrap()
    else {
        panic!("kind changed in round trip")
    };
    assert!(!q.is_exact());
    let d = q.distinct_estimate() as f64;
    assert!((d - 1001.0).abs() / 1001.0 < 0.05, "distinct estimate {d}");
    let top = q.category_counts();
    assert_eq!(top[0].0, "heavy");
    assert!(top[0].1 <= 2);

    let summary = FeatureProfile::Categorical(p.clone()).summary();
    let SummaryDetail::Categorical(s) = summary.detail else {
        panic!("wrong summary kind")
    };
    assert!(!s.exact);
    assert_eq!(summary.count, 2 * EXACT_LIMIT as u64);
    assert_eq!(s.top[0].0, "heavy");
    // Sketch counters are lower bounds, within 0.34 % of the total weight.
    assert!(s.top[0].1 <= EXACT_LIMIT as u64);
    assert!(s.top[0].1 as f64 >= EXACT_LIMIT as f64 - 0.0035 * 2000.0);
    assert!(s.top.len() <= 20);
}

fn cat(range: std::ops::Range<usize>, heavy: usize) -> CategoricalProfile {
    let mut p = CategoricalProfile::new();
    for i in range {
        p.observe(&format!("value-{i}"));
    }
    for _ in 0..heavy {
        p.observe("heavy");
    }
    p
}

#[test]
fn categorical_merges_across_modes() {
    // exact + exact beyond the limit converts: 0..600 ∪ 500..1100 = 1100 distinct (+ "heavy").
    let (a, b) = (cat(0..600, 5000), cat(500..1100, 5000));
    assert!(a.is_exact() && b.is_exact());
    let mut ab = a.clone();
    ab.merge(&b).unwrap();
    assert!(!ab.is_exact());
    assert_eq!(ab.count(), a.count() + b.count());
    let d = ab.distinct_estimate() as f64;
    assert!((d - 1101.0).abs() / 1101.0 < 0.05, "distinct estimate {d}");
    let top = ab.category_counts();
    assert_eq!(top[0].0, "heavy");
    assert_close(
        top[0].1 as f64,
        10_000.0,
        0.0035 * ab.count() as f64,
        "heavy count",
    );

    // exact into sketch and sketch into exact agree on totals and the heavy hitter.
    let big = cat(2000..4000, 3000);
    assert!(!big.is_exact());
    let mut exact_first = a.clone();
    exact_first.merge(&big).unwrap();
    let mut sketch_first = big.clone();
    sketch_first.merge(&a).unwrap();
    for m in [&exact_first, &sketch_first] {
        assert!(!m.is_exact());
        assert_eq!(m.count(), a.count() + big.count());
        let top = m.category_counts();
        assert_eq!(top[0].0, "heavy");
        assert_close(
            top[0].1 as f64,
            8000.0,
            0.0035 * m.count() as f64,
            "heavy count",
        );
        let d = m.distinct_estimate() as f64;
        assert!((d - 2601.0).abs() / 2601.0 < 0.05, "distinct estimate {d}");
    }

    // sketch + sketch.
    let mut both = big.clone();
    both.merge(&cat(3000..5000, 1000)).unwrap();
    let d = both.distinct_estimate() as f64;
    assert!((d - 3001.0).abs() / 3001.0 < 0.05, "distinct estimate {d}");
    assert_eq!(both.count(), big.count() + 3000);
}

#[test]
fn numeric_summary_and_json() {
    let data = normals(11, 10_000, 3.0);
    let mut p = NumericProfile::new();
    for v in &data {
        p.observe(*v);
    }
    p.observe(f64::NAN);
    p.observe_missing();
    let summary = FeatureProfile::Numeric(p).summary();
    assert_eq!(
        (summary.count, summary.missing, summary.invalid),
        (10_002, 1, 1)
    );
    let SummaryDetail::Numeric(s) = &summary.detail else {
        panic!("wrong summary kind")
    };
    assert_close(s.mean.unwrap(), 3.0, 0.05, "mean");
    assert_close(s.std.unwrap(), 1.0, 0.05, "std");
    let qs: Vec<f64> = s.quantiles.iter().map(|(q, _)| *q).collect();
    assert_eq!(qs, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]);
    // normal(3, 1) median 3, quartiles 3 ± 0.6745.
    assert_close(s.quantiles[3].1, 3.0, 0.06, "median");
    assert_close(s.quantiles[2].1, 3.0 - 0.6745, 0.06, "q25");
    assert!(s.min.unwrap() <= s.quantiles[0].1 && s.quantiles[6].1 <= s.max.unwrap());

    let json = common::assert_json_round_trip(&summary);
    assert!(json.contains("\"kind\":\"numeric\""), "{json}");

    let empty = FeatureProfile::new(ProfileKind::Numeric).summary();
    let json = common::assert_json_round_trip(&empty);
    assert!(json.contains("\"mean\":null"), "{json}");
}

#[test]
fn categorical_summary_top_is_capped_and_ordered() {
    let mut p = CategoricalProfile::new();
    for i in 0..30u64 {
        for _ in 0..=i {
            p.observe(&format!("c{i:02}"));
        }
    }
    let summary = FeatureProfile::Categorical(p).summary();
    let SummaryDetail::Categorical(s) = &summary.detail else {
        panic!("wrong summary kind")
    };
    assert!(s.exact);
    assert_eq!(s.distinct_estimate, 30);
    assert_eq!(s.top.len(), 20);
    assert_eq!(s.top[0], ("c29".to_owned(), 30));
    assert_eq!(s.top[19], ("c10".to_owned(), 11));
    let json = common::assert_json_round_trip(&summary);
    assert!(json.contains("\"kind\":\"categorical\""), "{json}");
}
