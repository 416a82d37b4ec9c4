//! Drift between a reference and a current profile, per feature and per dataset.
//!
//! Owns: binning of two profiles onto common bins, PSI, Jensen–Shannon distance, the per-feature
//! verdict ([`compare`]) and the dataset verdict ([`dataset_drift`]). Must not: read raw data,
//! mutate profiles, or hide which convention a number follows.
//!
//! Conventions (chosen to match what users know from Evidently and scipy):
//! * **Numeric bins**: edges are the reference KLL's inclusive quantiles at 0.1, …, 0.9 (ten
//!   equal-frequency bins), sorted and deduplicated; bins are right-closed, the first is
//!   `(-inf, e1]` and the last `(ek, +inf)`. A constant reference yields the single edge `v` and
//!   two bins `<= v`, `> v`. Each side's shares come from its own KLL CDF at those edges, so they
//!   carry KLL rank error (~1.65 % at k = 200). Only finite values take part; missing and
//!   NaN/inf are reported in the profile, not binned.
//! * **Categorical bins**: the union of the categories known on either side (all of them in exact
//!   mode, the tracked ones in sketch mode), shares = count / non-missing count. If either side is
//!   in sketch mode, the mass not attributed to a listed category on a side becomes the
//!   [`OTHER_LABEL`] bin. A category tracked on one side but purged on the other shows up with
//!   share 0 there; that error is bounded by the frequent-items error (≤ 0.34 % of the total).
//! * **Rare categories are pooled**: a category whose share is below [`MIN_CATEGORY_SHARE`] on
//!   both sides, or beyond the [`MAX_CATEGORY_BINS`] largest, joins the [`OTHER_LABEL`] bin.
//!   With thousands of rare values (ids, pseudonymized e-mails) per-category shares are mostly
//!   sampling noise, and comparing them one by one flags identical distributions as drifted. A
//!   shift of mass into or out of rare values still shows, as a change of the pooled bin. When
//!   both profiles are exact, pooled categories that the reference never saw form their own
//!   [`NEW_LABEL`] bin, so mass moving onto new rare values is seen too. In sketch mode (more
//!   than 1,000 distinct values) rare values are not known one by one: a move of mass between
//!   rare values is invisible here and is left to distinct-count and unseen-category checks.
//! * **PSI** = Σ (c − r) · ln(c / r), where a zero share is replaced by [`PSI_EPSILON`] = 1e-4
//!   (Evidently's convention; shares are not renormalized afterwards).
//! * **Jensen–Shannon distance** = sqrt(JS divergence) with log base 2, so it lies in [0, 1]; this
//!   equals `scipy.spatial.distance.jensenshannon(r, c, base=2)` (inputs renormalized to sum 1,
//!   0·log 0 = 0, no epsilon). Note Evidently's default uses the natural log, whose distance is
//!   smaller by a factor sqrt(ln 2) ≈ 0.833 for the same data.
//! * **Verdict**: PSI for numeric features, Jensen–Shannon for categorical ones; both statistics
//!   are always reported. `drifted = statistic >= threshold`.

use std::collections::BTreeMap;

use datasketches::common::SearchCriteria;
use datasketches::kll::KllFloat;
use serde::{Deserialize, Serialize};

use crate::categorical::CategoricalProfile;
use crate::codec::corrupt;
use crate::error::StatsError;
use crate::numeric::NumericProfile;
use crate::profile::FeatureProfile;

/// Share substituted for an empty bin in PSI.
pub const PSI_EPSILON: f64 = 1e-4;
/// Default PSI threshold (the common "significant shift" rule of thumb).
pub const DEFAULT_PSI_THRESHOLD: f64 = 0.2;
/// Default Jensen–Shannon distance threshold.
pub const DEFAULT_JS_THRESHOLD: f64 = 0.1;
/// Default share of drifted features above which the dataset counts as drifted (Evidently).
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;
/// Label of the categorical bin holding mass not attributed to a listed category.
pub const OTHER_LABEL: &str = "(other)";
/// Label of the pooled bin of rare categories absent from the reference (exact profiles only).
pub const NEW_LABEL: &str = "(new)";

/// Categories below this share on both sides are pooled into [`OTHER_LABEL`].
pub const MIN_CATEGORY_SHARE: f64 = 0.005;
/// Most categories compared one by one; the rest are pooled into [`OTHER_LABEL`].
pub const MAX_CATEGORY_BINS: usize = 50;

const BIN_QUANTILES: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Statistic that decided a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Population stability index.
    Psi,
    /// Jensen–Shannon distance (base 2).
    JensenShannon,
}

/// Per-statistic thresholds; a verdict is "drifted" when the statistic is `>=` its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftThresholds {
    /// PSI threshold, default 0.2.
    pub psi: f64,
    /// Jensen–Shannon distance threshold, default 0.1.
    pub jensen_shannon: f64,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            psi: DEFAULT_PSI_THRESHOLD,
            jensen_shannon: DEFAULT_JS_THRESHOLD,
        }
    }
}

/// One bin of a comparison, for charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinComparison {
    /// Category name, [`OTHER_LABEL`], or an interval such as `(0.25, 1.5]`.
    pub label: String,
    /// Share of the reference in this bin.
    pub reference_share: f64,
    /// Share of the current window in this bin.
    pub current_share: f64,
}

/// Drift of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// Population stability index.
    pub psi: f64,
    /// Jensen–Shannon distance, base 2, in [0, 1].
    pub jensen_shannon: f64,
    /// Statistic the verdict used.
    pub method: DriftMethod,
    /// Value of that statistic.
    pub statistic: f64,
    /// Threshold it was compared against.
    pub threshold: f64,
    /// `statistic >= threshold`.
    pub drifted: bool,
    /// Observations behind the reference shares (finite values / non-missing categories).
    pub reference_count: u64,
    /// Observations behind the current shares.
    pub current_count: u64,
    /// The common bins; numeric in ascending order, categorical by reference share descending.
    pub bins: Vec<BinComparison>,
}

/// Dataset-level verdict over many features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetDrift {
    /// Features whose verdict is drifted.
    pub drifted_features: usize,
    /// Features compared.
    pub total_features: usize,
    /// `drifted_features / total_features` (0 when there are none).
    pub share: f64,
    /// `share >= drift_share` (and at least one feature).
    pub drifted: bool,
}

/// Compares a current profile against a reference profile of the same kind.
///
/// Errors: [`StatsError::KindMismatch`]; [`StatsError::EmptyReference`] /
/// [`StatsError::EmptyCurrent`] when a side has no usable observation (for numeric profiles that
/// means no finite value; missing and NaN/inf are not binned).
pub fn compare(
    reference: &FeatureProfile,
    current: &FeatureProfile,
    thresholds: &DriftThresholds,
) -> Result<FeatureDrift, StatsError> {
    let (binned, method, threshold) = match (reference, current) {
        (FeatureProfile::Numeric(r), FeatureProfile::Numeric(c)) => {
            (numeric_bins(r, c)?, DriftMethod::Psi, thresholds.psi)
        }
        (FeatureProfile::Categorical(r), FeatureProfile::Categorical(c)) => (
            categorical_bins(r, c)?,
            DriftMethod::JensenShannon,
            thresholds.jensen_shannon,
        ),
        _ => return Err(StatsError::KindMismatch),
    };
    let r: Vec<f64> = binned.bins.iter().map(|b| b.reference_share).collect();
    let c: Vec<f64> = binned.bins.iter().map(|b| b.current_share).collect();
    let psi = psi(&r, &c);
    let jensen_shannon = jensen_shannon_distance(&r, &c);
    let statistic = match method {
        DriftMethod::Psi => psi,
        DriftMethod::JensenShannon => jensen_shannon,
    };
    Ok(FeatureDrift {
        psi,
        jensen_shannon,
        method,
        statistic,
        threshold,
        drifted: statistic >= threshold,
        reference_count: binned.reference_count,
        current_count: binned.current_count,
        bins: binned.bins,
    })
}

/// Dataset verdict: drifted when at least `drift_share` (default [`DEFAULT_DRIFT_SHARE`]) of the
/// features drifted. No features → not drifted.
pub fn dataset_drift(features: &[FeatureDrift], drift_share: f64) -> DatasetDrift {
    let total_features = features.len();
    let drifted_features = features.iter().filter(|f| f.drifted).count();
    let share = if total_features == 0 {
        0.0
    } else {
        drifted_features as f64 / total_features as f64
    };
    DatasetDrift {
        drifted_features,
        total_features,
        share,
        drifted: total_features > 0 && share >= drift_share,
    }
}

/// PSI of two aligned share vectors (extra elements of the longer one are ignored). Shares `<= 0`
/// are replaced by [`PSI_EPSILON`]; no renormalization.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let floor = |s: f64| if s > 0.0 { s } else { PSI_EPSILON };
    reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let (r, c) = (floor(r), floor(c));
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// Jensen–Shannon distance (base 2, in [0, 1]) of two aligned share vectors, each renormalized to
/// sum 1 like scipy. NaN if a side has no positive mass.
pub fn jensen_shannon_distance(reference: &[f64], current: &[f64]) -> f64 {
    let clean = |s: f64| if s > 0.0 { s } else { 0.0 };
    let len = reference.len().min(current.len());
    let sum_r: f64 = reference.iter().take(len).copied().map(clean).sum();
    let sum_c: f64 = current.iter().take(len).copied().map(clean).sum();
    if !(sum_r > 0.0 && sum_c > 0.0 && sum_r.is_finite() && sum_c.is_finite()) {
        return f64::NAN;
    }
    let mut divergence = 0.0;
    for (&r, &c) in reference.iter().zip(current) {
        let (p, q) = (clean(r) / sum_r, clean(c) / sum_c);
        let m = 0.5 * (p + q);
        if p > 0.0 {
            divergence += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            divergence += 0.5 * q * (q / m).log2();
        }
    }
    // Rounding can push the divergence a hair outside [0, 1].
    divergence.clamp(0.0, 1.0).sqrt()
}

/// The aligned bin shares [`compare`] uses for a pair of profiles (same bins, same order), so
/// other distances over bins (`statistics.rs`) see exactly the numbers PSI and JS see.
pub(crate) fn aligned_shares(
    reference: &FeatureProfile,
    current: &FeatureProfile,
) -> Result<(Vec<f64>, Vec<f64>), StatsError> {
    let binned = match (reference, current) {
        (FeatureProfile::Numeric(r), FeatureProfile::Numeric(c)) => numeric_bins(r, c)?,
        (FeatureProfile::Categorical(r), FeatureProfile::Categorical(c)) => categorical_bins(r, c)?,
        _ => return Err(StatsError::KindMismatch),
    };
    Ok(binned
        .bins
        .into_iter()
        .map(|b| (b.reference_share, b.current_share))
        .unzip())
}

struct Binned {
    bins: Vec<BinComparison>,
    reference_count: u64,
    current_count: u64,
}

fn numeric_bins(
    reference: &NumericProfile,
    current: &NumericProfile,
) -> Result<Binned, StatsError> {
    let (r_kll, c_kll) = crate::numeric::non_empty_pair(reference, current)?;
    let mut edges: Vec<KllFloat<f64>> = r_kll
        .quantiles(&BIN_QUANTILES, SearchCriteria::Inclusive)
        .ok()
        .flatten()
        .ok_or(StatsError::EmptyReference)?;
    // The CDF query requires strictly increasing split points; ties (heavy values, constant
    // features) collapse into one edge.
    edges.sort_unstable();
    edges.dedup();
    let shares = |kll: &crate::numeric::Kll| -> Result<Vec<f64>, StatsError> {
        let cdf = kll
            .cdf(&edges, SearchCriteria::Inclusive)
            .map_err(|e| corrupt(format!("KLL CDF query rejected: {}", e.message())))?
            .unwrap_or_default();
        let mut prev = 0.0;
        Ok(cdf
            .into_iter()
            .map(|f| {
                let share = (f - prev).max(0.0);
                prev = f;
                share
            })
            .collect())
    };
    let (r_shares, c_shares) = (shares(r_kll)?, shares(c_kll)?);
    let values: Vec<f64> = edges.iter().map(|e| **e).collect();
    let bins = r_shares
        .into_iter()
        .zip(c_shares)
        .enumerate()
        .map(|(i, (reference_share, current_share))| BinComparison {
            label: interval_label(&values, i),
            reference_share,
            current_share,
        })
        .collect();
    Ok(Binned {
        bins,
        reference_count: r_kll.n(),
        current_count: c_kll.n(),
    })
}

fn interval_label(edges: &[f64], bin: usize) -> String {
    let lower = bin.checked_sub(1).and_then(|i| edges.get(i));
    match (lower, edges.get(bin)) {
        (None, Some(hi)) => format!("<= {}", fmt_edge(*hi)),
        (Some(lo), Some(hi)) => format!("({}, {}]", fmt_edge(*lo), fmt_edge(*hi)),
        (Some(lo), None) => format!("> {}", fmt_edge(*lo)),
        (None, None) => "all".to_owned(),
    }
}

/// Short, readable edge for chart labels; labels are not parsed back.
fn fmt_edge(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-3..1e6).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".to_owned()
        } else {
            s.to_owned()
        }
    } else {
        format!("{v:.3e}")
    }
}

/// Per category known on either side, its (reference, current) counts — all categories in exact
/// mode, the tracked ones in sketch mode — with the totals attributed to known categories on
/// each side (the rest of a sketch-mode side is unattributed mass). The categorical statistics
/// all start from this table.
pub(crate) fn category_union(
    reference: &CategoricalProfile,
    current: &CategoricalProfile,
) -> (BTreeMap<String, (u64, u64)>, u64, u64) {
    let mut union: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (value, n) in reference.category_counts() {
        union.entry(value).or_default().0 = n;
    }
    for (value, n) in current.category_counts() {
        union.entry(value).or_default().1 = n;
    }
    let (r_known, c_known) = union.values().fold((0u64, 0u64), |(a, b), (r, c)| {
        (a.saturating_add(*r), b.saturating_add(*c))
    });
    (union, r_known, c_known)
}

fn categorical_bins(
    reference: &CategoricalProfile,
    current: &CategoricalProfile,
) -> Result<Binned, StatsError> {
    let (r_total, c_total) = (reference.present(), current.present());
    if r_total == 0 {
        return Err(StatsError::EmptyReference);
    }
    if c_total == 0 {
        return Err(StatsError::EmptyCurrent);
    }
    let (union, r_known, c_known) = category_union(reference, current);
    let (r_den, c_den) = (r_total as f64, c_total as f64);
    let mut bins: Vec<BinComparison> = union
        .into_iter()
        .map(|(label, (r, c))| BinComparison {
            label,
            reference_share: r as f64 / r_den,
            current_share: c as f64 / c_den,
        })
        .collect();
    // Largest categories first (by the larger of the two shares), then pool the rare tail.
    bins.sort_by(|a, b| {
        b.reference_share
            .max(b.current_share)
            .total_cmp(&a.reference_share.max(a.current_share))
            .then_with(|| a.label.cmp(&b.label))
    });
    let kept = bins
        .iter()
        .take(MAX_CATEGORY_BINS)
        .take_while(|b| b.reference_share.max(b.current_share) >= MIN_CATEGORY_SHARE)
        .count();
    let pooled = bins.split_off(kept);
    let exact = reference.is_exact() && current.is_exact();
    let (mut r_other, mut c_other, mut c_new) = (0.0, 0.0, 0.0);
    for b in &pooled {
        if exact && b.reference_share == 0.0 {
            c_new += b.current_share;
        } else {
            r_other += b.reference_share;
            c_other += b.current_share;
        }
    }
    // Mass a sketch could not attribute to any listed category also belongs to the pool.
    r_other += r_total.saturating_sub(r_known) as f64 / r_den;
    c_other += c_total.saturating_sub(c_known) as f64 / c_den;
    bins.sort_by(|a, b| {
        b.reference_share
            .total_cmp(&a.reference_share)
            .then_with(|| b.current_share.total_cmp(&a.current_share))
            .then_with(|| a.label.cmp(&b.label))
    });
    if r_other > 0.0 || c_other > 0.0 {
        bins.push(BinComparison {
            label: OTHER_LABEL.to_owned(),
            reference_share: r_other,
            current_share: c_other,
        });
    }
    if c_new > 0.0 {
        bins.push(BinComparison {
            label: NEW_LABEL.to_owned(),
            reference_share: 0.0,
            current_share: c_new,
        });
    }
    Ok(Binned {
        bins,
        reference_count: r_total,
        current_count: c_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_labels_are_short() {
        assert_eq!(fmt_edge(0.0), "0");
        assert_eq!(fmt_edge(-0.0), "0");
        assert_eq!(fmt_edge(1.5), "1.5");
        assert_eq!(fmt_edge(2.0), "2");
        assert_eq!(fmt_edge(-0.123456), "-0.1235");
        assert_eq!(fmt_edge(1.0e9), "1.000e9");
        assert_eq!(interval_label(&[1.0, 2.0], 0), "<= 1");
        assert_eq!(interval_label(&[1.0, 2.0], 1), "(1, 2]");
        assert_eq!(interval_label(&[1.0, 2.0], 2), "> 2");
    }

    #[test]
    fn dataset_share_boundary_is_inclusive() {
        let f = |drifted| FeatureDrift {
            psi: 0.0,
            jensen_shannon: 0.0,
            method: DriftMethod::Psi,
            statistic: 0.0,
            threshold: 0.2,
            drifted,
            reference_count: 1,
            current_count: 1,
            bins: Vec::new(),
        };
        let d = dataset_drift(&[f(true), f(false)], DEFAULT_DRIFT_SHARE);
        assert_eq!((d.drifted_features, d.total_features), (1, 2));
        assert!(d.drifted);
        assert!((d.share - 0.5).abs() < 1e-15);
        let d = dataset_drift(&[f(true), f(false), f(false)], DEFAULT_DRIFT_SHARE);
        assert!(!d.drifted);
        let d = dataset_drift(&[], DEFAULT_DRIFT_SHARE);
        assert!(!d.drifted);
        assert_eq!(d.share, 0.0);
    }
}
