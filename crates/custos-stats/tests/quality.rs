//! Data-quality measures on hand-built profiles with hand-checked numbers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use custos_stats::{
    CategoricalProfile, DEFAULT_VOLUME_K, FeatureProfile, FreshnessVerdict, NumericProfile,
    QualityReport, StatsError, VolumeVerdict, freshness, invalid_share, missing_share,
    out_of_range, quality_report, unseen_categories, volume_anomaly,
};

fn numeric(values: &[f64]) -> NumericProfile {
    let mut p = NumericProfile::new();
    for v in values {
        p.observe(*v);
    }
    p
}

fn categorical(values: &[(&str, usize)]) -> CategoricalProfile {
    let mut p = CategoricalProfile::new();
    for (v, n) in values {
        for _ in 0..*n {
            p.observe(v);
        }
    }
    p
}

#[test]
fn missing_and_invalid_shares() {
    // 10 observations: 2 missing, 1 NaN, 7 finite.
    let mut p = numeric(&[1.0, 2.0, 3.0, f64::NAN, 4.0, 5.0, 6.0, 7.0]);
    p.observe_missing();
    p.observe_missing();
    assert_eq!(invalid_share(&p), Some(0.1));
    let f = FeatureProfile::Numeric(p);
    assert_eq!(missing_share(&f), Some(0.2));
    assert_eq!(
        missing_share(&FeatureProfile::Numeric(NumericProfile::new())),
        None
    );
    assert_eq!(invalid_share(&NumericProfile::new()), None);
}

#[test]
fn out_of_range_exact_cases() {
    let reference = numeric(&(0..100).map(f64::from).collect::<Vec<_>>());
    // 2 of 8 below 0, 3 of 8 above 99; 0 and 99 themselves are in range.
    let current = numeric(&[-5.0, -1.0, 0.0, 50.0, 99.0, 100.0, 150.0, 200.0]);
    let o = out_of_range(&reference, &current).unwrap();
    assert_eq!((o.reference_min, o.reference_max), (0.0, 99.0));
    assert_eq!((o.below, o.above, o.share), (0.25, 0.375, 0.625));
    assert!(o.exact);
    assert_eq!(o.max_error, 0.0);

    let inside = numeric(&[0.0, 10.0, 99.0]);
    let o = out_of_range(&reference, &inside).unwrap();
    assert_eq!((o.share, o.exact), (0.0, true));
    let above = numeric(&[100.0, 1e9]);
    let o = out_of_range(&reference, &above).unwrap();
    assert_eq!((o.below, o.above, o.exact), (0.0, 1.0, true));

    assert_eq!(
        out_of_range(&NumericProfile::new(), &current).unwrap_err(),
        StatsError::EmptyReference
    );
    assert_eq!(
        out_of_range(&reference, &numeric(&[f64::NAN])).unwrap_err(),
        StatsError::EmptyCurrent
    );
}

#[test]
fn out_of_range_from_a_sketch_stays_within_its_bound() {
    let reference = numeric(&[10.0, 50.0, 90.0]);
    // 100 000 values i / 1000 for i in 0..100 000: below 10 are i < 10 000 (10 %), above 90
    // are i > 90 000 (99 999 − 90 000 = 9 999 values, 9.999 %).
    let current = numeric(
        &(0..100_000)
            .map(|i| f64::from(i) / 1000.0)
            .collect::<Vec<_>>(),
    );
    let o = out_of_range(&reference, &current).unwrap();
    assert!(!o.exact);
    assert!(o.max_error > 0.0 && o.max_error < 0.04, "{}", o.max_error);
    let truth = 0.1 + 0.09999;
    assert!(
        (o.share - truth).abs() <= o.max_error,
        "{} vs {truth}",
        o.share
    );
    assert!((o.below - 0.1).abs() <= o.max_error / 2.0);
}

#[test]
fn unseen_categories_exact() {
    let reference = categorical(&[("a", 5), ("b", 3)]);
    let mut current = categorical(&[("a", 2), ("c", 4), ("d", 1)]);
    current.observe_missing();
    let u = unseen_categories(&reference, &current).unwrap();
    // 7 present, c and d unseen: 5 / 7.
    assert_eq!(u.share, 5.0 / 7.0);
    assert_eq!((u.lower_bound, u.upper_bound), (u.share, u.share));
    assert!(u.exact);
    assert_eq!(u.top, vec![("c".to_owned(), 4), ("d".to_owned(), 1)]);
    assert_eq!(u.distinct, 2);

    let none = unseen_categories(&reference, &categorical(&[("b", 9)])).unwrap();
    assert_eq!((none.share, none.distinct), (0.0, 0));
    assert_eq!(
        unseen_categories(&CategoricalProfile::new(), &current).unwrap_err(),
        StatsError::EmptyReference
    );
    assert_eq!(
        unseen_categories(&reference, &CategoricalProfile::new()).unwrap_err(),
        StatsError::EmptyCurrent
    );
}

#[test]
fn unseen_categories_top_is_bounded() {
    let reference = categorical(&[("seen", 1)]);
    let names: Vec<String> = (0..30).map(|i| format!("new{i:02}")).collect();
    let current = categorical(
        &names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i + 1))
            .collect::<Vec<_>>(),
    );
    let u = unseen_categories(&reference, &current).unwrap();
    assert_eq!(u.share, 1.0);
    assert_eq!(u.distinct, 30);
    assert_eq!(u.top.len(), custos_stats::UNSEEN_TOP);
    assert_eq!(u.top[0], ("new29".to_owned(), 30));
}

#[test]
fn unseen_categories_sketch_bounds_hold() {
    // Current in sketch mode: 2 000 unseen singletons + 3 000 × "x" (seen): truth 0.4.
    let reference = categorical(&[("x", 10)]);
    let singles: Vec<String> = (0..2000).map(|i| format!("u{i}")).collect();
    let mut rows: Vec<(&str, usize)> = singles.iter().map(|s| (s.as_str(), 1)).collect();
    rows.push(("x", 3000));
    let current = categorical(&rows);
    assert!(!current.is_exact());
    let u = unseen_categories(&reference, &current).unwrap();
    assert!(!u.exact);
    assert!(u.lower_bound <= 0.4 && 0.4 <= u.upper_bound, "{u:?}");

    // Reference in sketch mode: unlisted no longer means unseen, so the lower bound is 0.
    let ref_rows: Vec<(&str, usize)> = singles.iter().map(|s| (s.as_str(), 1)).collect();
    let sketched_reference = categorical(&ref_rows);
    let cur = categorical(&[("u1", 5), ("brand-new", 5)]);
    let u = unseen_categories(&sketched_reference, &cur).unwrap();
    assert_eq!(u.lower_bound, 0.0);
    assert!(u.upper_bound >= 0.5, "{u:?}");
}

#[test]
fn volume_anomaly_hand_numbers() {
    // mean 100, population variance (0 + 100 + 100 + 0) / 4 = 50.
    let baseline = [100, 110, 90, 100];
    let v = volume_anomaly(&baseline, 130, DEFAULT_VOLUME_K).unwrap();
    assert_eq!(v.baseline_mean, 100.0);
    assert_eq!(v.baseline_std, 50f64.sqrt());
    assert_eq!(v.z_score, Some(30.0 / 50f64.sqrt()));
    assert!((v.lower - (100.0 - 3.0 * 50f64.sqrt())).abs() < 1e-12);
    assert_eq!(v.verdict, VolumeVerdict::High);
    assert_eq!(
        volume_anomaly(&baseline, 70, 3.0).unwrap().verdict,
        VolumeVerdict::Low
    );
    assert_eq!(
        volume_anomaly(&baseline, 100, 3.0).unwrap().z_score,
        Some(0.0)
    );
    // σ = 0: the mean itself is normal, anything else is anomalous with an infinite z.
    let flat = [5, 5, 5];
    let same = volume_anomaly(&flat, 5, 3.0).unwrap();
    assert_eq!(
        (same.z_score, same.verdict),
        (Some(0.0), VolumeVerdict::Normal)
    );
    let more = volume_anomaly(&flat, 6, 3.0).unwrap();
    assert_eq!((more.z_score, more.verdict), (None, VolumeVerdict::High));
    assert_eq!(
        volume_anomaly(&flat, 4, 3.0).unwrap().verdict,
        VolumeVerdict::Low
    );
    // Lower bound clipped at 0 counts.
    assert_eq!(volume_anomaly(&[0, 10], 0, 3.0).unwrap().lower, 0.0);
    assert_eq!(
        volume_anomaly(&[], 1, 3.0).unwrap_err(),
        StatsError::EmptyReference
    );
    assert!(volume_anomaly(&baseline, 1, -1.0).is_err());
    assert!(volume_anomaly(&baseline, 1, f64::NAN).is_err());
}

#[test]
fn freshness_verdicts() {
    let stale = freshness(1_000_000, Some(400_000), 500_000);
    assert_eq!(
        (stale.age_micros, stale.verdict),
        (Some(600_000), FreshnessVerdict::Stale)
    );
    let fresh = freshness(1_000_000, Some(500_000), 500_000);
    assert_eq!(fresh.verdict, FreshnessVerdict::Fresh);
    let none = freshness(1_000_000, None, 500_000);
    assert_eq!(
        (none.age_micros, none.verdict),
        (None, FreshnessVerdict::NoData)
    );
    let future = freshness(1_000_000, Some(1_200_000), 500_000);
    assert_eq!(
        (future.age_micros, future.verdict),
        (Some(-200_000), FreshnessVerdict::Fresh)
    );
    let extreme = freshness(i64::MAX, Some(i64::MIN), 0);
    assert_eq!(extreme.verdict, FreshnessVerdict::Stale);
}

#[test]
fn quality_reports() {
    let reference = FeatureProfile::Numeric(numeric(&[0.0, 10.0]));
    let mut cur = numeric(&[-1.0, 5.0, f64::INFINITY]);
    cur.observe_missing();
    let current = FeatureProfile::Numeric(cur);
    let r = quality_report(Some(&reference), &current).unwrap();
    assert_eq!((r.count, r.missing, r.invalid), (4, 1, 1));
    assert_eq!((r.missing_share, r.invalid_share), (Some(0.25), Some(0.25)));
    let o = r.out_of_range.as_ref().unwrap();
    assert_eq!((o.below, o.above), (0.5, 0.0));
    assert!(r.unseen.is_none());
    let json = serde_json::to_string(&r).unwrap();
    let back: QualityReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);

    // Without a reference, or with an empty one, the comparison parts are absent.
    let alone = quality_report(None, &current).unwrap();
    assert!(alone.out_of_range.is_none());
    let empty_ref = FeatureProfile::Numeric(NumericProfile::new());
    assert!(
        quality_report(Some(&empty_ref), &current)
            .unwrap()
            .out_of_range
            .is_none()
    );

    let cat_ref = FeatureProfile::Categorical(categorical(&[("a", 1)]));
    let cat_cur = FeatureProfile::Categorical(categorical(&[("a", 1), ("b", 3)]));
    let c = quality_report(Some(&cat_ref), &cat_cur).unwrap();
    assert_eq!(c.unseen.as_ref().unwrap().share, 0.75);
    assert_eq!((c.invalid, c.invalid_share), (0, None));
    assert_eq!(
        quality_report(Some(&cat_ref), &current).unwrap_err(),
        StatsError::KindMismatch
    );
}
