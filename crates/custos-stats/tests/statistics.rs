//! KS, chi-square, z-test, Hellinger, KL, Wasserstein and the default-method rule against
//! independently derived numbers.
//!
//! Golden values come from `tests/golden/statistics_golden.py` (numpy 2.4 / scipy 1.17), run on
//! the same deterministic samples as `tests/common` generates.

// Test crate: helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests, and
// here a failing unwrap or index is exactly a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{assert_close, normals, numeric};
use custos_stats::{
    CategoricalProfile, DEFAULT_P_VALUE_THRESHOLD, FeatureProfile, MethodChoice, NumericProfile,
    ProfileKind, StatMethod, StatsError, chi_square, data_driven_threshold, default_method,
    hellinger, kl_divergence, kolmogorov_sf, ks, ks_p_value, run, wasserstein_normed,
    wasserstein_trim, z_proportion,
};
use proptest::prelude::*;

const REF_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const CUR_SEED: u64 = 0xD1B5_4A32_D192_ED03;

/// Tolerance on KS `D` from sketches. Each KLL (k = 200) has ≤ 1.65 % rank error at 99 %
/// confidence, so `D` can be off by up to ~3.3 %; over 100 randomized runs of every case below
/// the largest deviation from scipy's exact-sample `D` was 0.0131.
const KS_D_TOL: f64 = 0.025;
/// Tolerance on the normed Wasserstein distance from sketches. KLL's rank error is uniform, so
/// the extreme quantiles (q < 1 %) carry most of it; over 100 randomized runs of every case
/// below the largest deviation from scipy was 0.044 (in reference-std units).
const W_TOL: f64 = 0.06;

fn num(values: &[f64]) -> NumericProfile {
    match numeric(values) {
        FeatureProfile::Numeric(p) => p,
        FeatureProfile::Categorical(_) => unreachable!(),
    }
}

fn categorical(pairs: &[(&str, usize)], missing: usize) -> CategoricalProfile {
    let mut p = CategoricalProfile::new();
    for (value, n) in pairs {
        for _ in 0..*n {
            p.observe(value);
        }
    }
    for _ in 0..missing {
        p.observe_missing();
    }
    p
}

fn cat(pairs: &[(&str, usize)]) -> FeatureProfile {
    FeatureProfile::Categorical(categorical(pairs, 0))
}

#[test]
fn kolmogorov_series_matches_scipy_kstwobign() {
    // statistics_golden.py: kstwobign.sf(λ), both sides of the 1.18 switch between series.
    let golden = [
        (0.05, 1.0),
        (0.3, 0.999_990_694_198_665_5),
        (0.8, 0.544_142_411_574_198_1),
        (1.0, 0.269_999_671_677_354_56),
        (1.17, 0.129_390_042_185_618_84),
        (1.19, 0.117_742_292_879_771_66),
        (1.36, 0.049_485_876_755_377_876),
        (2.0, 0.000_670_925_255_779_695_3),
        (3.0, 3.045_995_948_942_526e-8),
        (6.0, 1.076_037_232_004_227_6e-31),
    ];
    for (lambda, want) in golden {
        let got = kolmogorov_sf(lambda);
        assert!(
            (got - want).abs() <= 1e-12 * want.max(1e-300) + 1e-15,
            "Q({lambda}) = {got}, scipy {want}"
        );
    }
    assert_eq!(kolmogorov_sf(0.0), 1.0);
    assert_eq!(kolmogorov_sf(-1.0), 1.0);
    assert_eq!(kolmogorov_sf(f64::NAN), 1.0);
    assert_eq!(kolmogorov_sf(f64::INFINITY), 0.0);
    assert_eq!(ks_p_value(0.0, 10, 10), 1.0);
    assert_eq!(ks_p_value(0.5, 0, 10), 1.0);
}

#[test]
fn ks_exact_on_small_samples() {
    // Fewer values than KS_GRID: every item is on the grid, so D is exact.
    let r = num(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let c = num(&[3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]);
    let (d, p) = ks(&r, &c).unwrap();
    // scipy.stats.ks_2samp: D = 0.375; NR p-value at that D.
    assert_close(d, 0.375, 1e-12, "D");
    assert_close(p, 0.558_987_748_292_026_4, 1e-12, "p");
    // Symmetric in D.
    assert_close(ks(&c, &r).unwrap().0, 0.375, 1e-12, "D swapped");
    // Ties across the samples: F is evaluated inclusively at every point.
    let (d, _) = ks(&num(&[1.0, 1.0, 2.0, 2.0]), &num(&[1.0, 2.0, 2.0, 2.0])).unwrap();
    assert_close(d, 0.25, 1e-12, "D with ties");
}

#[test]
fn ks_golden_normals_within_sketch_tolerance() {
    // (n, shift, scipy D, scipy ks_2samp asymp p, NR p at scipy's D)
    let cases = [
        (
            2000,
            0.0,
            0.025,
            0.551_029_213_659_362,
            0.554_497_338_272_721_9,
        ),
        (
            2000,
            0.1,
            0.054,
            0.005_642_833_883_630_187,
            0.005_602_812_531_565_401_5,
        ),
        (
            2000,
            0.5,
            0.1975,
            1.176_237_669_953_192e-34,
            1.430_629_981_890_046_2e-34,
        ),
        (
            20000,
            0.0,
            0.007_05,
            0.700_124_070_424_093_5,
            0.701_469_553_908_257_3,
        ),
        (
            20000,
            0.1,
            0.046_95,
            1.355_611_027_392_710_3e-19,
            1.283_220_432_682_650_3e-19,
        ),
        (20000, 0.5, 0.2021, 0.0, 0.0),
    ];
    for (n, shift, d_scipy, p_scipy, p_nr) in cases {
        let r = num(&normals(REF_SEED, n, 0.0));
        let c = num(&normals(CUR_SEED, n, shift));
        let (d, p) = ks(&r, &c).unwrap();
        assert_close(d, d_scipy, KS_D_TOL, &format!("D n={n} shift={shift}"));
        // The formula itself, on scipy's exact D, is the NR number to rounding.
        let nr = ks_p_value(d_scipy, n as u64, n as u64);
        assert!(
            (nr - p_nr).abs() <= 1e-9 * p_nr + 1e-300,
            "NR p {nr} vs {p_nr}"
        );
        // ... and close to scipy's asymp mode (kstwo with n = round(nₑ)) where p matters:
        // observed 0.63 % (n=2000, shift 0), 0.71 % (n=2000, 0.1), 0.19 % (n=20000, 0); in the
        // far tail the two differ more (5 % at 1e-19, 22 % at 1e-34), irrelevant to a verdict.
        if p_scipy > 1e-6 {
            assert!(
                (nr - p_scipy).abs() <= 0.02 * p_scipy,
                "NR {nr} vs scipy asymp {p_scipy}"
            );
        }
        // The sketch p-value is the NR p-value of a D within the sketch tolerance.
        let lo = ks_p_value(d_scipy + KS_D_TOL, n as u64, n as u64);
        let hi = ks_p_value((d_scipy - KS_D_TOL).max(0.0), n as u64, n as u64);
        assert!(
            (lo..=hi).contains(&p),
            "p {p} outside [{lo}, {hi}] for n={n} shift={shift}"
        );
        if shift == 0.5 {
            assert!(p < 1e-20, "clear shift p {p}");
        }
    }
}

#[test]
fn ks_tiny_p_values_match_scipy_order_of_magnitude() {
    // In the far tail NR and scipy's kstwo differ by up to ~22 % relative (n=2000, shift 0.5:
    // 1.43e-34 vs 1.18e-34); both are "zero" for any verdict.
    let nr = ks_p_value(0.1975, 2000, 2000);
    assert!(nr > 1.0e-34 && nr < 2.0e-34, "{nr}");
}

#[test]
fn wasserstein_golden_normals_within_sketch_tolerance() {
    // scipy.stats.wasserstein_distance(ref, cur) / np.std(ref)
    let cases = [
        (2000, 0.0, 0.038_095_942_980_372_42),
        (2000, 0.1, 0.082_210_660_524_097_65),
        (2000, 0.5, 0.470_859_010_028_418_9),
        (20000, 0.0, 0.008_931_829_769_545_25),
        (20000, 0.1, 0.098_933_895_202_835_27),
        (20000, 0.5, 0.499_397_319_925_038_1),
    ];
    for (n, shift, want) in cases {
        let r = num(&normals(REF_SEED, n, 0.0));
        let c = num(&normals(CUR_SEED, n, shift));
        let w = wasserstein_normed(&r, &c).unwrap();
        assert_close(w, want, W_TOL, &format!("W n={n} shift={shift}"));
    }
}

#[test]
fn wasserstein_small_exact_and_constant_reference() {
    // Every item retained: only the midpoint rule differs from scipy's exact integral.
    let r = num(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let c = num(&[3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]);
    let w = wasserstein_normed(&r, &c).unwrap();
    assert_close(w, 0.872_871_560_943_969_8, 2e-3, "small W normed");

    // Constant reference: std 0 → Evidently's floor 0.001, so W1 = 0.5 reads as 500.
    let constant = num(&[5.0; 100]);
    let mut half = vec![5.0; 50];
    half.extend([6.0; 50]);
    let w = wasserstein_normed(&constant, &num(&half)).unwrap();
    assert_close(w, 500.0, 1e-9, "constant reference");
    assert_eq!(wasserstein_normed(&constant, &num(&[5.0; 7])).unwrap(), 0.0);
    // A single reference value has no spread either.
    assert_close(
        wasserstein_normed(&num(&[1.0]), &num(&[1.5])).unwrap(),
        500.0,
        1e-9,
        "single value",
    );
    // Extreme values do not overflow into NaN.
    let huge = num(&[f64::MAX, -f64::MAX]);
    let w = wasserstein_normed(&huge, &num(&[f64::MAX])).unwrap();
    assert!(!w.is_nan(), "{w}");
}

#[test]
fn wasserstein_trims_only_compacted_sketches_and_keeps_the_mean_gap() {
    // Every value retained: no trim, scipy's integral.
    let small = num(&normals(REF_SEED, 100, 0.0));
    assert_eq!(wasserstein_trim(&small, &small), 0.0);

    // 200,000 uniform values, compacted: the trim is about one top-level item's weight.
    let uniform: Vec<f64> = (0..200_000).map(|i| f64::from(i) / 200_000.0).collect();
    let reference = num(&uniform);
    let trim = wasserstein_trim(&reference, &small);
    assert!(trim > 0.001 && trim < 0.01, "{trim}");
    assert_eq!(trim, wasserstein_trim(&small, &reference), "symmetric");

    // The top 0.1 % (inside the trimmed rank) multiplied by 1,000: the trimmed integral may
    // not see it, the exact mean difference does, and the estimate is never below it.
    let mut tail = uniform.clone();
    for v in tail.iter_mut().rev().take(200) {
        *v *= 1_000.0;
    }
    let current = num(&tail);
    let mean_gap = (current.mean().unwrap() - reference.mean().unwrap()).abs();
    let population_std = reference.std().unwrap() * (199_999.0_f64 / 200_000.0).sqrt();
    let w = wasserstein_normed(&reference, &current).unwrap();
    assert!(
        w >= mean_gap / population_std * (1.0 - 1e-12),
        "{w} < {mean_gap}"
    );
    assert!(w > 3.0, "{w}: a 1,000-fold tail is drift");
    // Unchanged data: the trimmed distance of two sketches of the same values stays small.
    let again = num(&uniform);
    assert!(wasserstein_normed(&reference, &again).unwrap() < 0.05);
}

#[test]
fn chi_square_golden() {
    // (reference, current, statistic, p, dof) — statistics_golden.py, chi2_contingency without
    // Yates correction after the documented pooling.
    let no_pooling = (
        categorical(&[("a", 50), ("b", 30), ("c", 20)], 17),
        categorical(&[("a", 20), ("b", 30), ("c", 30), ("d", 20)], 3),
        34.857_142_857_142_86,
        1.305_918_783_910_150_2e-7,
        3,
    );
    // d, e, f, g expect < 5 → pooled into one cell (4 vs 7), which is kept on its own.
    let pooling = (
        categorical(&[("a", 60), ("b", 30), ("c", 6), ("d", 3), ("e", 1)], 0),
        categorical(&[("a", 40), ("b", 45), ("c", 8), ("f", 4), ("g", 3)], 0),
        8.103_896_103_896_105,
        0.043_912_584_776_588_284,
        3,
    );
    // The pool (c, d) still expects < 5 → merged into the smallest kept category (b).
    let pool_merged = (
        categorical(&[("a", 60), ("b", 38), ("c", 2)], 0),
        categorical(&[("a", 50), ("b", 49), ("d", 1)], 0),
        2.020_202_020_202_020_3,
        0.155_218_489_684_680_05,
        1,
    );
    for (name, (r, c, stat, p, dof)) in [
        ("no_pooling", no_pooling),
        ("pooling", pooling),
        ("pool_merged", pool_merged),
    ] {
        let (got_stat, got_p, got_dof) = chi_square(&r, &c).unwrap();
        assert_close(got_stat, stat, 1e-10, name);
        assert!((got_p - p).abs() <= 1e-9 * p, "{name}: p {got_p} vs {p}");
        assert_eq!(got_dof, dof, "{name}");
    }
    // Identical one-category tables have nothing to test.
    let one = categorical(&[("x", 10)], 0);
    assert_eq!(chi_square(&one, &one).unwrap(), (0.0, 1.0, 0));
}

#[test]
fn chi_square_sketch_mode_has_other_cell() {
    let mut current = CategoricalProfile::new();
    for i in 0..2000 {
        current.observe(&format!("rare-{i}"));
    }
    for _ in 0..6000 {
        current.observe("a");
    }
    for _ in 0..2000 {
        current.observe("b");
    }
    assert!(!current.is_exact());
    let reference = categorical(&[("a", 600), ("b", 200), ("c", 200)], 0);
    let (stat, p, dof) = chi_square(&reference, &current).unwrap();
    assert!(stat.is_finite() && stat > 100.0, "{stat}");
    assert!(p < 1e-10);
    assert!(dof >= 2, "{dof}");
}

#[test]
fn z_proportion_golden() {
    // (xr, nr, xc, nc, z, p): pooled z computed by hand in statistics_golden.py.
    let cases = [
        (
            30,
            100,
            45,
            100,
            2.190_890_230_020_664_7,
            0.028_459_736_916_310_55,
        ),
        (
            500,
            1000,
            520,
            1000,
            0.894_606_130_121_643,
            0.370_997_673_736_607_97,
        ),
        (
            120,
            400,
            40,
            250,
            -4.031_128_874_149_275,
            5.550_959_448_074_072_3e-5,
        ),
    ];
    for (xr, nr, xc, nc, z, p) in cases {
        let (got_z, got_p) = z_proportion(xr, nr, xc, nc).unwrap();
        assert_close(got_z, z, 1e-12, "z");
        assert!((got_p - p).abs() <= 1e-10 * p, "p {got_p} vs {p}");
    }
    assert_eq!(z_proportion(0, 10, 0, 20).unwrap(), (0.0, 1.0));
    assert_eq!(z_proportion(10, 10, 20, 20).unwrap(), (0.0, 1.0));
    assert_eq!(z_proportion(1, 0, 1, 2), Err(StatsError::EmptyReference));
    assert_eq!(z_proportion(1, 2, 0, 0), Err(StatsError::EmptyCurrent));
    assert!(matches!(
        z_proportion(3, 2, 1, 2),
        Err(StatsError::InvalidInput(_))
    ));
}

#[test]
fn hellinger_and_kl_golden() {
    // (reference, current, hellinger, KL(current ‖ reference) with ε = 1e-4)
    let cases: [(&[f64], &[f64], f64, f64); 4] = [
        (
            &[0.25, 0.25, 0.25, 0.25],
            &[0.1, 0.2, 0.3, 0.4],
            0.167_899_596_402_674_77,
            0.106_440_135_286_223_15,
        ),
        (
            &[0.5, 0.5, 0.0],
            &[0.25, 0.25, 0.5],
            0.541_196_100_146_197,
            3.912_023_005_428_146_4,
        ),
        (&[1.0, 0.0], &[0.0, 1.0], 1.0, 9.209_419_337_938_986),
        (
            &[0.5, 0.3, 0.2, 0.0],
            &[0.2, 0.3, 0.3, 0.2],
            0.372_589_935_055_745,
            1.458_561_877_966_034_8,
        ),
    ];
    for (r, c, h, kl) in cases {
        assert_close(hellinger(r, c), h, 1e-12, "hellinger");
        assert_close(kl_divergence(r, c), kl, 1e-12, "kl");
    }
    assert_eq!(hellinger(&[0.2, 0.8], &[0.2, 0.8]), 0.0);
    assert_eq!(kl_divergence(&[0.2, 0.8], &[0.2, 0.8]), 0.0);
    // Direction matters: KL(c ‖ r) ≠ KL(r ‖ c).
    let (r, c) = ([0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]);
    assert!((kl_divergence(&r, &c) - kl_divergence(&c, &r)).abs() > 1e-3);
    // Hellinger renormalizes like JS; an all-zero side has no distribution.
    assert_close(hellinger(&[2.0, 2.0], &[0.5, 0.5]), 0.0, 1e-15, "scale");
    assert!(hellinger(&[0.0, 0.0], &[0.5, 0.5]).is_nan());
}

fn all_methods() -> [StatMethod; 8] {
    [
        StatMethod::KolmogorovSmirnov,
        StatMethod::ChiSquare,
        StatMethod::ZProportion,
        StatMethod::Psi,
        StatMethod::JensenShannon,
        StatMethod::Hellinger,
        StatMethod::KullbackLeibler,
        StatMethod::Wasserstein,
    ]
}

/// Thresholds under which a clear shift must be drifted and identical data must not be.
fn threshold(method: StatMethod) -> f64 {
    match method {
        StatMethod::KolmogorovSmirnov | StatMethod::ChiSquare | StatMethod::ZProportion => {
            DEFAULT_P_VALUE_THRESHOLD
        }
        StatMethod::Psi => 0.2,
        _ => 0.1,
    }
}

#[test]
fn verdicts_identical_vs_shifted_numeric() {
    // 1,000 rows: the size at which the default rule still picks KS.
    let reference = numeric(&normals(REF_SEED, 1000, 0.0));
    let same_data = numeric(&normals(REF_SEED, 1000, 0.0));
    let fresh = numeric(&normals(CUR_SEED, 1000, 0.0));
    let shifted = numeric(&normals(CUR_SEED, 1000, 1.0));
    for method in all_methods() {
        let t = threshold(method);
        if !method.applies_to(ProfileKind::Numeric) {
            assert!(matches!(
                run(method, t, &reference, &shifted),
                Err(StatsError::NotApplicable(_))
            ));
            continue;
        }
        let same = run(method, t, &reference, &reference.clone()).unwrap();
        assert!(!same.drifted, "{method:?} on a clone: {same:?}");
        assert_eq!(same.statistic, 0.0, "{method:?}");
        for quiet in [&same_data, &fresh] {
            let r = run(method, t, &reference, quiet).unwrap();
            assert!(!r.drifted, "{method:?} on identical distributions: {r:?}");
        }
        let r = run(method, t, &reference, &shifted).unwrap();
        assert!(r.drifted, "{method:?} on a 1σ shift: {r:?}");
        assert_eq!(r.method, method);
        assert_eq!(r.threshold, t);
        assert_eq!(r.p_value.is_some(), method.uses_p_value());
    }
}

#[test]
fn verdicts_identical_vs_shifted_categorical() {
    let reference = cat(&[("a", 500), ("b", 300), ("c", 200)]);
    let same = cat(&[("a", 250), ("b", 150), ("c", 100)]);
    let shifted = cat(&[("a", 200), ("b", 300), ("c", 500)]);
    let bin_ref = cat(&[("false", 700), ("true", 300)]);
    let bin_same = cat(&[("false", 140), ("true", 60)]);
    let bin_shifted = cat(&[("false", 500), ("true", 500)]);
    for method in all_methods() {
        let t = threshold(method);
        if !method.applies_to(ProfileKind::Categorical) {
            assert!(matches!(
                run(method, t, &reference, &shifted),
                Err(StatsError::NotApplicable(_))
            ));
            continue;
        }
        let (r, s, x) = if method == StatMethod::ZProportion {
            (&bin_ref, &bin_same, &bin_shifted)
        } else {
            (&reference, &same, &shifted)
        };
        let quiet = run(method, t, r, s).unwrap();
        assert!(!quiet.drifted, "{method:?}: {quiet:?}");
        let loud = run(method, t, r, x).unwrap();
        assert!(loud.drifted, "{method:?}: {loud:?}");
    }
    // z-test: "true" is the success; more trues now → positive z.
    let z = run(StatMethod::ZProportion, 0.05, &bin_ref, &bin_shifted).unwrap();
    assert!(z.statistic > 0.0, "{z:?}");
    // A third category makes the z-test inapplicable.
    assert!(matches!(
        run(
            StatMethod::ZProportion,
            0.05,
            &bin_ref,
            &cat(&[("maybe", 1)])
        ),
        Err(StatsError::NotApplicable(_))
    ));
    assert_eq!(
        run(StatMethod::Psi, 0.2, &reference, &numeric(&[1.0])),
        Err(StatsError::KindMismatch)
    );
}

#[test]
fn run_bin_statistics_use_compare_bins() {
    // Categorical: compare's bins are a..d shares [.5 .3 .2 0] vs [.2 .3 .3 .2].
    let r = FeatureProfile::Categorical(categorical(&[("a", 50), ("b", 30), ("c", 20)], 17));
    let c = FeatureProfile::Categorical(categorical(
        &[("a", 20), ("b", 30), ("c", 30), ("d", 20)],
        3,
    ));
    let h = run(StatMethod::Hellinger, 0.1, &r, &c).unwrap();
    assert_close(h.statistic, 0.372_589_935_055_745, 1e-12, "hellinger");
    let kl = run(StatMethod::KullbackLeibler, 0.1, &r, &c).unwrap();
    assert_close(kl.statistic, 1.458_561_877_966_034_8, 1e-12, "kl");
    let psi = run(StatMethod::Psi, 0.2, &r, &c).unwrap();
    let drift = custos_stats::compare(&r, &c, &custos_stats::DriftThresholds::default()).unwrap();
    assert_eq!(psi.statistic, drift.psi);
    let js = run(StatMethod::JensenShannon, 0.1, &r, &c).unwrap();
    assert_eq!(js.statistic, drift.jensen_shannon);
    // Numeric constant reference: bins <= 5, > 5 with shares [1, 0] vs [.5, .5].
    let mut half = vec![5.0; 50];
    half.extend([6.0; 50]);
    let h = run(
        StatMethod::Hellinger,
        0.1,
        &numeric(&[5.0; 100]),
        &numeric(&half),
    )
    .unwrap();
    assert_close(
        h.statistic,
        hellinger(&[1.0, 0.0], &[0.5, 0.5]),
        1e-15,
        "numeric",
    );
}

#[test]
fn default_method_boundaries() {
    use ProfileKind::{Categorical, Numeric};
    assert_eq!(
        default_method(Numeric, 1000, 0),
        (StatMethod::KolmogorovSmirnov, 0.05)
    );
    assert_eq!(
        default_method(Numeric, 1001, 0),
        (StatMethod::Wasserstein, 0.1)
    );
    assert_eq!(
        default_method(Numeric, 0, 2),
        (StatMethod::KolmogorovSmirnov, 0.05)
    );
    assert_eq!(
        default_method(Categorical, 1000, 2),
        (StatMethod::ZProportion, 0.05)
    );
    assert_eq!(
        default_method(Categorical, 1000, 1),
        (StatMethod::ZProportion, 0.05)
    );
    assert_eq!(
        default_method(Categorical, 1000, 3),
        (StatMethod::ChiSquare, 0.05)
    );
    assert_eq!(
        default_method(Categorical, 1001, 2),
        (StatMethod::JensenShannon, 0.1)
    );
    assert_eq!(
        default_method(Categorical, 1001, 50),
        (StatMethod::JensenShannon, 0.1)
    );
    let choice = MethodChoice::for_column(Numeric, 1001, 0);
    assert_eq!(
        (choice.method, choice.threshold),
        default_method(Numeric, 1001, 0)
    );
    let r = choice
        .run(
            &numeric(&normals(REF_SEED, 2000, 0.0)),
            &numeric(&normals(CUR_SEED, 2000, 1.0)),
        )
        .unwrap();
    assert!(r.drifted && r.method == StatMethod::Wasserstein);
}

#[test]
fn data_driven_threshold_mean_k_sigma() {
    // numpy: mean 0.25, std(ddof=1) = 0.12909944487358055.
    let (mean, std, upper) = data_driven_threshold(&[0.1, 0.2, 0.3, 0.4], 3.0).unwrap();
    assert_close(mean, 0.25, 1e-15, "mean");
    assert_close(std, 0.129_099_444_873_580_55, 1e-15, "std");
    assert_close(upper, 0.25 + 3.0 * 0.129_099_444_873_580_55, 1e-15, "upper");
    // Non-finite chunk statistics are skipped.
    assert_eq!(
        data_driven_threshold(&[0.1, f64::NAN, 0.2, 0.3, 0.4, f64::INFINITY], 3.0),
        Some((mean, std, upper))
    );
    assert_eq!(data_driven_threshold(&[], 3.0), None);
    assert_eq!(data_driven_threshold(&[0.1], 3.0), None);
    assert_eq!(data_driven_threshold(&[0.1, 0.2], -1.0), None);
    assert_eq!(data_driven_threshold(&[0.1, 0.2], f64::NAN), None);
    assert_eq!(data_driven_threshold(&[f64::MAX, -f64::MAX], 1.0), None);
}

#[test]
fn errors_not_panics_on_empty_profiles() {
    let empty = FeatureProfile::new(ProfileKind::Numeric);
    let nan_only = numeric(&[f64::NAN, f64::INFINITY]);
    let ok = numeric(&[1.0, 2.0]);
    let empty_cat = FeatureProfile::Categorical(categorical(&[], 4));
    let ok_cat = cat(&[("a", 1)]);
    for method in all_methods() {
        if method.applies_to(ProfileKind::Numeric) {
            for bad in [&empty, &nan_only] {
                assert_eq!(
                    run(method, 0.1, bad, &ok),
                    Err(StatsError::EmptyReference),
                    "{method:?}"
                );
                assert_eq!(
                    run(method, 0.1, &ok, bad),
                    Err(StatsError::EmptyCurrent),
                    "{method:?}"
                );
            }
        }
        if method.applies_to(ProfileKind::Categorical) {
            assert_eq!(
                run(method, 0.1, &empty_cat, &ok_cat),
                Err(StatsError::EmptyReference),
                "{method:?}"
            );
            assert_eq!(
                run(method, 0.1, &ok_cat, &empty_cat),
                Err(StatsError::EmptyCurrent),
                "{method:?}"
            );
        }
    }
}

#[test]
fn results_serialize_snake_case() {
    let r = run(
        StatMethod::KolmogorovSmirnov,
        0.05,
        &numeric(&[1.0, 2.0, 3.0]),
        &numeric(&[1.0, 2.0, 3.0]),
    )
    .unwrap();
    let json = common::assert_json_round_trip(&r);
    assert!(json.contains("\"method\":\"kolmogorov_smirnov\""), "{json}");
    let m: StatMethod = serde_json::from_str("\"z_proportion\"").unwrap();
    assert_eq!(m, StatMethod::ZProportion);
    assert_eq!(
        serde_json::to_string(&StatMethod::KullbackLeibler).unwrap(),
        "\"kullback_leibler\""
    );
}

fn check_result(method: StatMethod, result: Result<custos_stats::TestResult, StatsError>) {
    match result {
        Ok(r) => {
            assert!(!r.statistic.is_nan(), "{method:?}: {r:?}");
            if let Some(p) = r.p_value {
                assert!((0.0..=1.0).contains(&p), "{method:?}: {r:?}");
            }
            if matches!(method, StatMethod::Hellinger | StatMethod::JensenShannon) {
                assert!((0.0..=1.0).contains(&r.statistic), "{method:?}: {r:?}");
            }
            if method == StatMethod::KolmogorovSmirnov {
                assert!((0.0..=1.0).contains(&r.statistic), "{r:?}");
            }
        }
        Err(
            StatsError::EmptyReference
            | StatsError::EmptyCurrent
            | StatsError::NotApplicable(_)
            | StatsError::InvalidInput(_),
        ) => {}
        Err(e) => panic!("{method:?}: unexpected {e:?}"),
    }
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e6..1e6f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(0.0),
        1 => Just(f64::MAX),
        1 => Just(-f64::MAX),
        1 => any::<f64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn numeric_methods_never_panic(
        r in prop::collection::vec(any_value(), 0..60),
        c in prop::collection::vec(any_value(), 0..60),
    ) {
        let (r, c) = (numeric(&r), numeric(&c));
        for method in all_methods() {
            check_result(method, run(method, 0.1, &r, &c));
        }
    }

    #[test]
    fn categorical_methods_never_panic(
        r in prop::collection::vec(prop::option::of("[abc]{0,1}"), 0..40),
        c in prop::collection::vec(prop::option::of("[abcd]{0,1}"), 0..40),
    ) {
        let build = |values: &[Option<String>]| {
            let mut p = CategoricalProfile::new();
            for v in values {
                match v {
                    Some(v) => p.observe(v),
                    None => p.observe_missing(),
                }
            }
            FeatureProfile::Categorical(p)
        };
        let (r, c) = (build(&r), build(&c));
        for method in all_methods() {
            check_result(method, run(method, 0.05, &r, &c));
        }
    }

    #[test]
    fn share_functions_are_total(
        r in prop::collection::vec(any_value(), 0..12),
        c in prop::collection::vec(any_value(), 0..12),
        k in any_value(),
    ) {
        let h = hellinger(&r, &c);
        prop_assert!(h.is_nan() || (0.0..=1.0).contains(&h));
        let kl = kl_divergence(&r, &c);
        if r.iter().chain(&c).all(|x| x.is_finite() && x.abs() < 1e6) {
            prop_assert!(kl.is_finite());
        }
        if let Some((mean, std, upper)) = data_driven_threshold(&r, k) {
            prop_assert!(mean.is_finite() && std >= 0.0 && upper >= mean);
        }
    }

    #[test]
    fn z_test_is_total(xr in 0u64..200, nr in 0u64..200, xc in 0u64..200, nc in 0u64..200) {
        match z_proportion(xr, nr, xc, nc) {
            Ok((z, p)) => {
                prop_assert!(z.is_finite());
                prop_assert!((0.0..=1.0).contains(&p));
            }
            Err(e) => prop_assert!(matches!(
                e,
                StatsError::EmptyReference | StatsError::EmptyCurrent | StatsError::InvalidInput(_)
            )),
        }
    }
}
