//! Drift statistics beyond PSI / Jensen–Shannon, computed from two profiles (or their bins).
//!
//! Owns: the Kolmogorov–Smirnov test ([`ks`]), the chi-square homogeneity test ([`chi_square`]),
//! the pooled two-proportion z-test ([`z_proportion`]), Hellinger distance ([`hellinger`]),
//! Kullback–Leibler divergence ([`kl_divergence`]), normed Wasserstein-1 distance
//! ([`wasserstein_normed`]), the per-column default choice of statistic ([`default_method`],
//! Evidently's rule), a dispatcher producing one verdict ([`run`]), and data-driven thresholds
//! ([`data_driven_threshold`]).
//!
//! Must not: read raw data, mutate profiles, duplicate the binning of `drift.rs` (bin-based
//! statistics use exactly the bins of [`compare`](crate::compare)), or change what
//! `compare` / `dataset_drift` return. Numbers in, numbers out; no IO.
//!
//! Conventions (users compare these numbers with Evidently and scipy):
//! * **Sketch error.** Everything numeric comes from the KLL sketches (k = 200, ~1.65 %
//!   normalized rank error at 99 % confidence per sketch), not from raw samples. The KS distance
//!   `D` can be off by up to about the sum of both sketches' rank errors, so it has a floor of
//!   roughly 0.01–0.03 even for identical distributions with huge `n`. With millions of rows any
//!   real shift is "significant": report `D` (and the threshold), not only the p-value.
//!   Measured (tests/statistics.rs, N(0, 1) vs shifted normals, 2,000 and 20,000 values, 100
//!   randomized runs each): `D` within 0.013 and normed Wasserstein within 0.044 of scipy on the
//!   raw samples. At 20,000 values per side, two sketches of the *same* distribution can already
//!   give a KS p-value below 0.05; that is why the default rule ([`MethodChoice::for_column`])
//!   uses KS only up to 1,000 reference rows.
//! * **KS** ([`ks`]): `D = max_x |F_r(x) − F_c(x)|` with the inclusive KLL CDF (share of values
//!   `<= x`), evaluated at the union of both sketches' quantiles on a grid of [`KS_GRID`] + 1
//!   equal rank steps (`0, 1/G, …, 1`; rank 0 and 1 are the exact min and max). When a sketch has
//!   `n <= KS_GRID` values, that grid hits every retained item, so `D` is exactly the sup over the
//!   sketches' step CDFs; beyond that, skipping an item costs at most `1 / KS_GRID` ≈ 0.024 % in
//!   `D`. p-value: [`ks_p_value`], the asymptotic Kolmogorov distribution with Stephens'
//!   small-sample correction as in Numerical Recipes (`probks`):
//!   `p = Q(λ)`, `Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}`, `λ = (√nₑ + 0.12 + 0.11/√nₑ)·D`,
//!   `nₑ = n_r·n_c/(n_r + n_c)`, with `n` the finite-value counts. `Q` itself equals
//!   `scipy.stats.kstwobign.sf(λ)` to ~1e-15. Note `scipy.stats.ks_2samp(method='asymp')`
//!   uses `scipy.stats.kstwo.sf(D, round(nₑ))` instead; the two differ by a few percent of `p`
//!   at `nₑ` ≈ 1,000 and less beyond (see the golden tests).
//! * **Chi-square** ([`chi_square`]): homogeneity test of the 2 × K table (reference, current) ×
//!   categories, over the union of the categories both profiles know, counts = non-missing
//!   observations (missing values are not a category). Expected count of a cell =
//!   `row total · column total / grand total`; a category whose expected count is below
//!   [`CHI_SQUARE_MIN_EXPECTED`] = 5 in either row is pooled with all other such categories into
//!   one cell; if that pooled cell still expects fewer than 5 in a row, it is merged into the
//!   kept category with the smallest total. If either side is in sketch mode, the mass a sketch
//!   cannot attribute to a tracked category is one more category ("other") before pooling, and
//!   tracked counts are the sketch's lower bounds (see `categorical.rs`). `dof = cells − 1`; the
//!   p-value is the `χ²(dof)` survival function (statrs). No Yates correction, so with no pooling
//!   the statistic equals `scipy.stats.chi2_contingency(table, correction=False)`. A table with
//!   a single cell left yields `(0, 1, 0)`.
//! * **Z-test** ([`z_proportion`]): pooled two-proportion test,
//!   `z = (p_c − p_r) / sqrt(p̂(1 − p̂)(1/n_r + 1/n_c))`, `p̂ = (x_r + x_c)/(n_r + n_c)`,
//!   two-sided `p = erfc(|z|/√2)`; same as statsmodels `proportions_ztest([x_c, x_r], [n_c, n_r])`.
//!   Positive `z` means the current window has the larger share. When `p̂` is 0 or 1 (both
//!   windows all-failure or all-success) there is nothing to test: `z = 0`, `p = 1`. In [`run`],
//!   a categorical profile with at most two categories (reference ∪ current, both in exact mode)
//!   is the input and "success" is the category that sorts last by bytes (`"true"` over
//!   `"false"`, `"1"` over `"0"`, `"yes"` over `"no"`); the choice only flips the sign of `z`.
//! * **Hellinger** ([`hellinger`]): `H = sqrt(½ Σ (√r − √c)²)` on aligned shares, each side
//!   renormalized to sum 1 (like [`jensen_shannon_distance`](crate::jensen_shannon_distance));
//!   lies in [0, 1]; no epsilon (zero shares are fine).
//! * **KL** ([`kl_divergence`]): `KL(current ‖ reference) = Σ c · ln(c / r)`, natural log, zero
//!   shares replaced by [`PSI_EPSILON`] = 1e-4 on both sides and no renormalization (the PSI
//!   convention). Direction: `scipy.stats.entropy(current, reference)`; Evidently's `kl_div`
//!   computes `entropy(reference, current)`, i.e. the other direction — swap the arguments to
//!   reproduce it.
//! * **Bins** for Hellinger / KL / PSI / JS in [`run`] are exactly those of
//!   [`compare`](crate::compare): reference deciles for numeric, categories with rare-value
//!   pooling for categorical.
//! * **Wasserstein** ([`wasserstein_normed`]): `W1 = ∫₀¹ |Q_r(u) − Q_c(u)| du` (the same as
//!   `∫ |F_r(x) − F_c(x)| dx`), integrated exactly over the two sketches' step CDFs (every
//!   retained item a step, the exact minimum where each starts). For sketches that kept every
//!   value this is `scipy.stats.wasserstein_distance` exactly. Once a sketch has compacted, the
//!   integral leaves out the outer [`wasserstein_trim`] of rank at each end (≈ 0.33 % at
//!   1,000,000 values): there one retained item stands for ~2^h values, and on a heavy tail
//!   which of them survived a compaction moves the distance by more than the default threshold
//!   (measured on identical distributions at 1,000,000 rows: lognormal σ 1 up to 0.19,
//!   Pareto α 2.5 up to 0.56, 80 % zeros + lognormal up to 0.13, against an exact 0.002–0.004;
//!   trimmed, at most 0.07 for all three over 40 runs each, see `tests/no_false_alarms.rs`).
//!   The exact mean difference is a lower bound of W1, so the result is `max(trimmed W1, |μ_r − μ_c|)`:
//!   a change confined to the trimmed tails still counts through the mean it moves (80 % zeros +
//!   lognormal σ 1 → σ 1.3: exact 0.134, untrimmed sketch estimate 0.121 ± noise (25 of 40
//!   runs ≥ 0.1), this estimate 0.119 (40 of 40)). A tail change that leaves the mean alone is
//!   not seen below the trimmed rank; PSI and the quantile profile still show it. The distance
//!   is divided by `max(σ_r, 0.001)` where `σ_r` is the reference's *population* standard deviation
//!   (`np.std`, ddof = 0) — Evidently's "wasserstein normed", including its 0.001 floor
//!   ([`WASSERSTEIN_MIN_NORM`]). A constant reference therefore yields `W1 / 0.001`: any move
//!   of a constant feature is drift, none is 0.
//! * **Verdicts** ([`run`]): for p-value methods (KS, chi-square, z) `drifted = p < threshold`;
//!   for distances `drifted = statistic >= threshold`.

use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, SortedView};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::erf::erfc;

use crate::categorical::CategoricalProfile;
use crate::drift::{
    DEFAULT_JS_THRESHOLD, PSI_EPSILON, aligned_shares, jensen_shannon_distance, psi,
};
use crate::error::StatsError;
use crate::numeric::NumericProfile;
use crate::profile::{FeatureProfile, ProfileKind};

/// Rank steps of the quantile grid on which [`ks`] evaluates both CDFs.
pub const KS_GRID: u32 = 4096;
/// Smallest divisor of [`wasserstein_normed`] (Evidently's floor on the reference std).
pub const WASSERSTEIN_MIN_NORM: f64 = 0.001;
/// Categories expecting fewer observations than this in a row are pooled by [`chi_square`].
pub const CHI_SQUARE_MIN_EXPECTED: f64 = 5.0;
/// Reference sizes up to this many non-missing rows get a statistical test by default, larger
/// ones a distance ([`default_method`], Evidently's rule).
pub const SMALL_REFERENCE_ROWS: u64 = 1000;
/// Default p-value threshold of the tests (drift when `p < 0.05`).
pub const DEFAULT_P_VALUE_THRESHOLD: f64 = 0.05;
/// Default threshold of the normed Wasserstein distance (drift when `>= 0.1`).
pub const DEFAULT_WASSERSTEIN_THRESHOLD: f64 = 0.1;

/// A drift statistic. Serialized in snake_case (`"kolmogorov_smirnov"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatMethod {
    /// Two-sample Kolmogorov–Smirnov test (numeric; p-value).
    KolmogorovSmirnov,
    /// Chi-square homogeneity test (categorical; p-value).
    ChiSquare,
    /// Pooled two-proportion z-test (categorical with at most two categories; p-value).
    ZProportion,
    /// Population stability index on the `compare` bins (both kinds; distance).
    Psi,
    /// Jensen–Shannon distance, base 2, on the `compare` bins (both kinds; distance).
    JensenShannon,
    /// Hellinger distance on the `compare` bins (both kinds; distance).
    Hellinger,
    /// KL(current ‖ reference), natural log, on the `compare` bins (both kinds; divergence).
    KullbackLeibler,
    /// Wasserstein-1 distance over the reference std (numeric; distance).
    Wasserstein,
}

impl StatMethod {
    /// `true` for the tests whose verdict is `p < threshold`; `false` for distances, whose
    /// verdict is `statistic >= threshold`.
    pub fn uses_p_value(self) -> bool {
        matches!(
            self,
            Self::KolmogorovSmirnov | Self::ChiSquare | Self::ZProportion
        )
    }

    /// Whether the statistic is defined for profiles of this kind.
    pub fn applies_to(self, kind: ProfileKind) -> bool {
        match self {
            Self::KolmogorovSmirnov | Self::Wasserstein => kind == ProfileKind::Numeric,
            Self::ChiSquare | Self::ZProportion => kind == ProfileKind::Categorical,
            Self::Psi | Self::JensenShannon | Self::Hellinger | Self::KullbackLeibler => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::KolmogorovSmirnov => "Kolmogorov-Smirnov",
            Self::ChiSquare => "chi-square",
            Self::ZProportion => "two-proportion z-test",
            Self::Psi => "PSI",
            Self::JensenShannon => "Jensen-Shannon",
            Self::Hellinger => "Hellinger",
            Self::KullbackLeibler => "Kullback-Leibler",
            Self::Wasserstein => "Wasserstein",
        }
    }
}

/// One statistic's verdict for one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The statistic computed.
    pub method: StatMethod,
    /// KS: `D`; chi-square: `χ²`; z-test: `z`; otherwise the distance / divergence.
    pub statistic: f64,
    /// p-value of the tests; `None` for distances.
    pub p_value: Option<f64>,
    /// Threshold the verdict used (a p-value level for tests, a distance otherwise).
    pub threshold: f64,
    /// Tests: `p < threshold`; distances: `statistic >= threshold`.
    pub drifted: bool,
}

/// The default statistic and threshold for a column (see [`MethodChoice::for_column`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MethodChoice {
    /// Statistic to run.
    pub method: StatMethod,
    /// Its threshold.
    pub threshold: f64,
}

impl MethodChoice {
    /// Evidently's default rule:
    ///
    /// | reference rows            | numeric                    | categorical, ≤ 2 distinct | categorical, > 2 distinct |
    /// |---------------------------|----------------------------|---------------------------|---------------------------|
    /// | ≤ [`SMALL_REFERENCE_ROWS`] (1,000) | KS, drift if `p < 0.05` | z-test, `p < 0.05`   | chi-square, `p < 0.05`    |
    /// | > 1,000                   | normed Wasserstein, `>= 0.1` | Jensen–Shannon, `>= 0.1` | Jensen–Shannon, `>= 0.1` |
    ///
    /// `reference_count` is the reference's non-missing count (finite values for numeric,
    /// [`CategoricalProfile::present`] for categorical), as Evidently drops missing values
    /// before choosing. `distinct` is only read for categorical columns; pass the distinct count
    /// of reference ∪ current (Evidently uses both), so a z-test is never chosen for a feature
    /// whose current window brought a third value. Unlike Evidently, numeric columns with few
    /// distinct values are not treated as categorical (a numeric profile does not count distinct
    /// values). Our Jensen–Shannon distance uses log base 2, Evidently's the natural log (smaller
    /// by a factor √ln 2 ≈ 0.833), so the same 0.1 threshold is slightly stricter here.
    pub fn for_column(kind: ProfileKind, reference_count: u64, distinct: u64) -> Self {
        let small = reference_count <= SMALL_REFERENCE_ROWS;
        let (method, threshold) = match (kind, small) {
            (ProfileKind::Numeric, true) => {
                (StatMethod::KolmogorovSmirnov, DEFAULT_P_VALUE_THRESHOLD)
            }
            (ProfileKind::Numeric, false) => {
                (StatMethod::Wasserstein, DEFAULT_WASSERSTEIN_THRESHOLD)
            }
            (ProfileKind::Categorical, true) if distinct <= 2 => {
                (StatMethod::ZProportion, DEFAULT_P_VALUE_THRESHOLD)
            }
            (ProfileKind::Categorical, true) => (StatMethod::ChiSquare, DEFAULT_P_VALUE_THRESHOLD),
            (ProfileKind::Categorical, false) => (StatMethod::JensenShannon, DEFAULT_JS_THRESHOLD),
        };
        Self { method, threshold }
    }

    /// Runs this choice on two profiles; see [`run`].
    pub fn run(
        &self,
        reference: &FeatureProfile,
        current: &FeatureProfile,
    ) -> Result<TestResult, StatsError> {
        run(self.method, self.threshold, reference, current)
    }
}

/// `(method, threshold)` of [`MethodChoice::for_column`].
pub fn default_method(kind: ProfileKind, reference_count: u64, distinct: u64) -> (StatMethod, f64) {
    let choice = MethodChoice::for_column(kind, reference_count, distinct);
    (choice.method, choice.threshold)
}

/// Runs one statistic on two profiles of the same kind and applies the threshold.
///
/// Errors: [`StatsError::KindMismatch`]; [`StatsError::NotApplicable`] for a method that does not
/// apply to the profiles' kind (KS / Wasserstein on categorical, chi-square / z-test on numeric)
/// or a z-test on a non-binary feature; [`StatsError::EmptyReference`] /
/// [`StatsError::EmptyCurrent`] as for [`compare`](crate::compare); [`StatsError::InvalidInput`]
/// for values too large for a finite result.
pub fn run(
    method: StatMethod,
    threshold: f64,
    reference: &FeatureProfile,
    current: &FeatureProfile,
) -> Result<TestResult, StatsError> {
    if reference.kind() != current.kind() {
        return Err(StatsError::KindMismatch);
    }
    if !method.applies_to(reference.kind()) {
        return Err(StatsError::NotApplicable(format!(
            "{} is not defined for {} features",
            method.name(),
            match reference.kind() {
                ProfileKind::Numeric => "numeric",
                ProfileKind::Categorical => "categorical",
            }
        )));
    }
    let (statistic, p_value) = match (method, reference, current) {
        (StatMethod::KolmogorovSmirnov, FeatureProfile::Numeric(r), FeatureProfile::Numeric(c)) => {
            let (d, p) = ks(r, c)?;
            (d, Some(p))
        }
        (StatMethod::Wasserstein, FeatureProfile::Numeric(r), FeatureProfile::Numeric(c)) => {
            (wasserstein_normed(r, c)?, None)
        }
        (StatMethod::ChiSquare, FeatureProfile::Categorical(r), FeatureProfile::Categorical(c)) => {
            let (stat, p, _dof) = chi_square(r, c)?;
            (stat, Some(p))
        }
        (
            StatMethod::ZProportion,
            FeatureProfile::Categorical(r),
            FeatureProfile::Categorical(c),
        ) => {
            let (z, p) = binary_z_test(r, c)?;
            (z, Some(p))
        }
        (
            StatMethod::Psi
            | StatMethod::JensenShannon
            | StatMethod::Hellinger
            | StatMethod::KullbackLeibler,
            _,
            _,
        ) => {
            let (r, c) = aligned_shares(reference, current)?;
            let value = match method {
                StatMethod::Psi => psi(&r, &c),
                StatMethod::JensenShannon => jensen_shannon_distance(&r, &c),
                StatMethod::Hellinger => hellinger(&r, &c),
                _ => kl_divergence(&r, &c),
            };
            (value, None)
        }
        // Kinds were checked equal and applicable above.
        _ => return Err(StatsError::KindMismatch),
    };
    let drifted = match p_value {
        Some(p) => p < threshold,
        None => statistic >= threshold,
    };
    Ok(TestResult {
        method,
        statistic,
        p_value,
        threshold,
        drifted,
    })
}

/// Two-sample Kolmogorov–Smirnov test on the finite values of two numeric profiles: `(D, p)`.
///
/// See the module docs for the grid and the p-value formula ([`ks_p_value`]). Errors:
/// [`StatsError::EmptyReference`] / [`StatsError::EmptyCurrent`] without finite values.
pub fn ks(reference: &NumericProfile, current: &NumericProfile) -> Result<(f64, f64), StatsError> {
    let (r_kll, c_kll) = crate::numeric::non_empty_pair(reference, current)?;
    let (r_view, c_view) = (r_kll.sorted_view(), c_kll.sorted_view());
    let mut points: Vec<KllFloat<f64>> = Vec::with_capacity(2 * (KS_GRID as usize + 1));
    for view in [&r_view, &c_view] {
        points.extend(
            (0..=KS_GRID).filter_map(|j| quantile(view, f64::from(j) / f64::from(KS_GRID))),
        );
    }
    points.sort_unstable();
    points.dedup();
    let d = points
        .iter()
        .map(|x| {
            let fr = r_view.rank(x, SearchCriteria::Inclusive).unwrap_or(0.0);
            let fc = c_view.rank(x, SearchCriteria::Inclusive).unwrap_or(0.0);
            (fr - fc).abs()
        })
        .fold(0.0_f64, f64::max);
    Ok((d, ks_p_value(d, r_kll.n(), c_kll.n())))
}

/// The step CDF a sketch describes: its exact minimum with share 0, then every distinct
/// retained item with the share of the stream at or below it (ascending). Enumerated through
/// the view's own quantile/rank queries, one step per retained item; for a sketch that kept
/// every value this is the sample's empirical CDF.
fn step_cdf(view: &SortedView<KllFloat<f64>>) -> Vec<(f64, f64)> {
    let total = view.total_weight();
    let mut steps = Vec::with_capacity(view.len() + 1);
    if total == 0 {
        return steps;
    }
    if let Some(min) = quantile(view, 0.0) {
        steps.push((*min, 0.0));
    }
    let mut cumulative = 0u64;
    while cumulative < total {
        // Half a unit of weight past the last step: the next retained item, whatever rounding.
        let rank = ((cumulative as f64 + 0.5) / total as f64).min(1.0);
        let Some(item) = quantile(view, rank) else {
            break;
        };
        let share = view.rank(&item, SearchCriteria::Inclusive).unwrap_or(1.0);
        let next = (share * total as f64).round() as u64;
        if next <= cumulative {
            break;
        }
        cumulative = next;
        steps.push((*item, cumulative as f64 / total as f64));
    }
    steps
}

fn quantile(view: &SortedView<KllFloat<f64>>, rank: f64) -> Option<KllFloat<f64>> {
    view.quantile(rank, SearchCriteria::Inclusive)
        .ok()
        .flatten()
}

/// Asymptotic two-sample KS p-value (Numerical Recipes `probks` with Stephens' correction):
/// `Q((√nₑ + 0.12 + 0.11/√nₑ)·D)` with `nₑ = n1·n2/(n1 + n2)`; see [`kolmogorov_sf`].
/// Returns 1 when either count is 0 or `D` is not a positive number.
pub fn ks_p_value(d: f64, n1: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 || d.is_nan() || d <= 0.0 {
        return 1.0;
    }
    let (a, b) = (n1 as f64, n2 as f64);
    let ne = a * b / (a + b);
    let sqrt_ne = ne.sqrt();
    kolmogorov_sf((sqrt_ne + 0.12 + 0.11 / sqrt_ne) * d)
}

/// Survival function of the Kolmogorov distribution,
/// `Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}` (= `scipy.stats.kstwobign.sf(λ)`). For `λ < 1.18` the
/// equivalent Jacobi-theta form `1 − (√(2π)/λ) Σ_{k≥1} e^{−(2k−1)²π²/(8λ²)}` is summed instead,
/// since the alternating series converges slowly there. `Q(λ) = 1` for `λ <= 0` or NaN; the
/// result is clamped to [0, 1].
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    let q = if lambda < 1.18 {
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        let w = -pi2 / (8.0 * lambda * lambda);
        let mut sum = 0.0;
        for k in 1..=20u32 {
            let m = f64::from(2 * k - 1);
            let term = (w * m * m).exp();
            sum += term;
            if term < 1e-17 * sum {
                break;
            }
        }
        1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * sum
    } else {
        let a = -2.0 * lambda * lambda;
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=100u32 {
            let kf = f64::from(k);
            let term = (a * kf * kf).exp();
            sum += sign * term;
            if term < 1e-17 * sum.abs() || term == 0.0 {
                break;
            }
            sign = -sign;
        }
        2.0 * sum
    };
    q.clamp(0.0, 1.0)
}

/// Chi-square homogeneity test of two categorical profiles: `(χ², p, dof)`.
///
/// See the module docs for the table, the pooling of small categories and the sketch-mode
/// "other" cell. Errors: [`StatsError::EmptyReference`] / [`StatsError::EmptyCurrent`] when a
/// side has no non-missing observation.
pub fn chi_square(
    reference: &CategoricalProfile,
    current: &CategoricalProfile,
) -> Result<(f64, f64, u32), StatsError> {
    let (r_total, c_total) = (reference.present(), current.present());
    if r_total == 0 {
        return Err(StatsError::EmptyReference);
    }
    if c_total == 0 {
        return Err(StatsError::EmptyCurrent);
    }
    let table = contingency(reference, current);
    let (rt, ct) = (r_total as f64, c_total as f64);
    let grand = rt + ct;
    // Expected count of the smaller row for a category with `total` observations.
    let min_share = rt.min(ct) / grand;
    let small = |total: f64| total * min_share < CHI_SQUARE_MIN_EXPECTED;
    let mut cells: Vec<(f64, f64)> = Vec::with_capacity(table.len());
    let mut pool = (0.0, 0.0);
    for (r, c) in table {
        let (r, c) = (r as f64, c as f64);
        if small(r + c) {
            pool.0 += r;
            pool.1 += c;
        } else {
            cells.push((r, c));
        }
    }
    if pool.0 + pool.1 > 0.0 {
        let smallest = cells
            .iter_mut()
            .min_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
        match smallest {
            Some(cell) if small(pool.0 + pool.1) => {
                cell.0 += pool.0;
                cell.1 += pool.1;
            }
            _ => cells.push(pool),
        }
    }
    if cells.len() < 2 {
        return Ok((0.0, 1.0, 0));
    }
    let statistic: f64 = cells
        .iter()
        .map(|(r, c)| {
            let total = r + c;
            let (er, ec) = (rt * total / grand, ct * total / grand);
            (r - er).powi(2) / er + (c - ec).powi(2) / ec
        })
        .sum();
    let dof = u32::try_from(cells.len() - 1).unwrap_or(u32::MAX);
    let p = ChiSquared::new(f64::from(dof))
        .map_err(|_| StatsError::InvalidInput("chi-square degrees of freedom".to_owned()))?
        .sf(statistic);
    if !(statistic.is_finite() && p.is_finite()) {
        return Err(StatsError::InvalidInput(
            "counts too large for a finite chi-square statistic".to_owned(),
        ));
    }
    Ok((statistic, p.clamp(0.0, 1.0), dof))
}

/// `(reference, current)` counts per known category (union, byte order) plus, if a side is in
/// sketch mode, the unattributed rest as one more row. Zero rows are dropped.
fn contingency(reference: &CategoricalProfile, current: &CategoricalProfile) -> Vec<(u64, u64)> {
    let (union, r_known, c_known) = crate::drift::category_union(reference, current);
    let mut rows: Vec<(u64, u64)> = union.into_values().collect();
    rows.push((
        reference.present().saturating_sub(r_known),
        current.present().saturating_sub(c_known),
    ));
    rows.retain(|(r, c)| *r > 0 || *c > 0);
    rows
}

/// Pooled two-proportion z-test: `(z, two-sided p)`; `z > 0` when the current share is larger.
///
/// Errors: [`StatsError::EmptyReference`] / [`StatsError::EmptyCurrent`] when `n` is 0;
/// [`StatsError::InvalidInput`] when successes exceed trials. See the module docs for the
/// degenerate all-success / all-failure case (`z = 0`, `p = 1`).
pub fn z_proportion(
    reference_successes: u64,
    reference_n: u64,
    current_successes: u64,
    current_n: u64,
) -> Result<(f64, f64), StatsError> {
    if reference_n == 0 {
        return Err(StatsError::EmptyReference);
    }
    if current_n == 0 {
        return Err(StatsError::EmptyCurrent);
    }
    if reference_successes > reference_n || current_successes > current_n {
        return Err(StatsError::InvalidInput(
            "more successes than observations".to_owned(),
        ));
    }
    let (xr, nr, xc, nc) = (
        reference_successes as f64,
        reference_n as f64,
        current_successes as f64,
        current_n as f64,
    );
    let pooled = (xr + xc) / (nr + nc);
    let variance = pooled * (1.0 - pooled) * (1.0 / nr + 1.0 / nc);
    if variance <= 0.0 {
        return Ok((0.0, 1.0));
    }
    let z = (xc / nc - xr / nr) / variance.sqrt();
    let p = erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0);
    Ok((z, p))
}

/// z-test on a categorical feature with at most two categories (see the module docs).
fn binary_z_test(
    reference: &CategoricalProfile,
    current: &CategoricalProfile,
) -> Result<(f64, f64), StatsError> {
    if !(reference.is_exact() && current.is_exact()) {
        return Err(StatsError::NotApplicable(
            "two-proportion z-test needs a binary feature (sketch mode has > 1,000 values)"
                .to_owned(),
        ));
    }
    let (r_counts, c_counts) = (reference.category_counts(), current.category_counts());
    let success = r_counts
        .iter()
        .chain(&c_counts)
        .map(|(label, _)| label.as_str())
        .max();
    let distinct: std::collections::BTreeSet<&str> = r_counts
        .iter()
        .chain(&c_counts)
        .map(|(label, _)| label.as_str())
        .collect();
    if distinct.len() > 2 {
        return Err(StatsError::NotApplicable(
            "two-proportion z-test needs at most two categories".to_owned(),
        ));
    }
    let successes = |counts: &[(String, u64)]| {
        counts
            .iter()
            .filter(|(label, _)| Some(label.as_str()) == success)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    z_proportion(
        successes(&r_counts),
        reference.present(),
        successes(&c_counts),
        current.present(),
    )
}

/// Hellinger distance of two aligned share vectors, in [0, 1]: `sqrt(½ Σ (√r − √c)²)` after
/// renormalizing each side to sum 1 (extra elements of the longer vector are ignored, shares
/// `<= 0` or NaN count as 0). NaN if a side has no positive finite mass, like
/// [`jensen_shannon_distance`](crate::jensen_shannon_distance).
pub fn hellinger(reference_shares: &[f64], current_shares: &[f64]) -> f64 {
    let clean = |s: f64| if s > 0.0 { s } else { 0.0 };
    let len = reference_shares.len().min(current_shares.len());
    let sum_r: f64 = reference_shares.iter().take(len).copied().map(clean).sum();
    let sum_c: f64 = current_shares.iter().take(len).copied().map(clean).sum();
    if !(sum_r > 0.0 && sum_c > 0.0 && sum_r.is_finite() && sum_c.is_finite()) {
        return f64::NAN;
    }
    let squared: f64 = reference_shares
        .iter()
        .zip(current_shares)
        .map(|(&r, &c)| ((clean(r) / sum_r).sqrt() - (clean(c) / sum_c).sqrt()).powi(2))
        .sum();
    (0.5 * squared).clamp(0.0, 1.0).sqrt()
}

/// `KL(current ‖ reference) = Σ c · ln(c / r)` (natural log) of two aligned share vectors; shares
/// `<= 0` (or NaN) are replaced by [`PSI_EPSILON`] on both sides, no renormalization (the PSI
/// convention); extra elements of the longer vector are ignored. Finite for finite input; 0 for
/// identical vectors. Evidently's `kl_div` is the other direction: pass its arguments swapped.
pub fn kl_divergence(reference_shares: &[f64], current_shares: &[f64]) -> f64 {
    let floor = |s: f64| if s > 0.0 { s } else { PSI_EPSILON };
    reference_shares
        .iter()
        .zip(current_shares)
        .map(|(&r, &c)| {
            let (r, c) = (floor(r), floor(c));
            c * (c / r).ln()
        })
        .sum()
}

/// Wasserstein-1 distance of the finite values divided by `max(reference population std, 0.001)`
/// (Evidently's "normed" Wasserstein), estimated from the two sketches as the module docs
/// describe: the quantile-function distance over the ranks the sketches resolve (see
/// [`wasserstein_trim`]), raised to the exact mean difference where that is larger.
///
/// Errors: [`StatsError::EmptyReference`] / [`StatsError::EmptyCurrent`] without finite values;
/// [`StatsError::InvalidInput`] if values near `f64::MAX` make the result NaN. The result is
/// `+inf` only when the distance itself exceeds `f64::MAX`.
pub fn wasserstein_normed(
    reference: &NumericProfile,
    current: &NumericProfile,
) -> Result<f64, StatsError> {
    let (r_kll, c_kll) = crate::numeric::non_empty_pair(reference, current)?;
    let (r_steps, c_steps) = (
        step_cdf(&r_kll.sorted_view()),
        step_cdf(&c_kll.sorted_view()),
    );
    let trim = wasserstein_trim(reference, current);
    let half_trimmed = half_quantile_distance(&r_steps, &c_steps, trim);
    // W1 >= |E X − E Y| for any coupling, and the moments are exact: the trimmed tails cannot
    // hide a shift of the mean.
    let half_mean_gap = match (reference.mean(), current.mean()) {
        (Some(r), Some(c)) => (r * 0.5 - c * 0.5).abs(),
        _ => 0.0,
    };
    let half_w1 = half_trimmed.max(half_mean_gap);
    let n = r_kll.n();
    let population_std = if n < 2 {
        0.0
    } else {
        // Sample std (n − 1) → population std (n), as np.std; overflowed moments → +inf.
        reference
            .std()
            .map_or(f64::INFINITY, |s| s * ((n - 1) as f64 / n as f64).sqrt())
    };
    let norm = population_std.max(WASSERSTEIN_MIN_NORM);
    // Divide before doubling so that a W1 just above f64::MAX can still come back finite.
    let normed = half_w1 / norm * 2.0;
    if normed.is_nan() {
        return Err(StatsError::InvalidInput(
            "values too large for a normed Wasserstein distance".to_owned(),
        ));
    }
    Ok(normed)
}

/// Share of rank left out at *each* end by [`wasserstein_normed`]: 0 when both sketches still
/// hold every value (the distance is then scipy's exactly), otherwise `2 / retained items` of
/// the coarser sketch that compacted, about the weight of one item of its top level (≈ 0.33 %
/// at 1,000,000 values, k = 200). Beyond that rank a sketch knows a value only as "one of the
/// next 2^h", and a heavy tail turns that into large, random value errors.
pub fn wasserstein_trim(reference: &NumericProfile, current: &NumericProfile) -> f64 {
    [reference.kll(), current.kll()]
        .iter()
        .filter(|kll| kll.is_estimation_mode() && kll.num_retained() > 0)
        .map(|kll| 2.0 / kll.num_retained() as f64)
        .fold(0.0_f64, f64::max)
        .min(MAX_WASSERSTEIN_TRIM)
}

/// Upper bound of [`wasserstein_trim`], so that a degenerate sketch cannot trim the body away.
const MAX_WASSERSTEIN_TRIM: f64 = 0.02;

/// Half of `∫_trim^(1−trim) |Q_r(u) − Q_c(u)| du` for two step CDFs, where `Q(u)` is the
/// smallest step value whose share reaches `u` (the left-continuous quantile function; `Q(0)`
/// is the minimum). With `trim = 0` this is half of `∫ |F_r(x) − F_c(x)| dx`. Halves keep the
/// difference of any two finite values finite.
fn half_quantile_distance(reference: &[(f64, f64)], current: &[(f64, f64)], trim: f64) -> f64 {
    let top = 1.0 - trim;
    let (mut i, mut j) = (0, 0);
    let mut u = trim;
    let mut half = 0.0;
    while u < top {
        // The steps in force just above `u`: the first of each whose share exceeds it.
        while reference.get(i).is_some_and(|step| step.1 <= u) {
            i += 1;
        }
        while current.get(j).is_some_and(|step| step.1 <= u) {
            j += 1;
        }
        let (Some(r), Some(c)) = (reference.get(i), current.get(j)) else {
            break;
        };
        let next = r.1.min(c.1).min(top);
        if next <= u {
            break;
        }
        half += (r.0 * 0.5 - c.0 * 0.5).abs() * (next - u);
        u = next;
    }
    half
}

/// Threshold from the spread of a statistic over reference chunks ("mean ± k·σ"): returns
/// `(mean, std, mean + k·std)` of the finite values in `chunk_statistics`, with the sample
/// standard deviation (n − 1 denominator, like pandas and [`NumericProfile::std`]). The lower
/// band, where one is wanted, is `mean − k·std`. `None` with fewer than two finite values, a
/// negative or non-finite `k`, or a non-finite result.
pub fn data_driven_threshold(chunk_statistics: &[f64], k: f64) -> Option<(f64, f64, f64)> {
    if !(k.is_finite() && k >= 0.0) {
        return None;
    }
    // Welford, so that large values do not lose the variance.
    let (mut n, mut mean, mut m2) = (0u64, 0.0_f64, 0.0_f64);
    for &x in chunk_statistics.iter().filter(|x| x.is_finite()) {
        n += 1;
        let delta = x - mean;
        mean += delta / n as f64;
        m2 += delta * (x - mean);
    }
    if n < 2 {
        return None;
    }
    let std = (m2.max(0.0) / (n - 1) as f64).sqrt();
    let upper = mean + k * std;
    (mean.is_finite() && std.is_finite() && upper.is_finite()).then_some((mean, std, upper))
}
