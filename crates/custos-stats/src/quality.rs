//! Data-quality measures computed from feature profiles and counts.
//!
//! Owns: missing and invalid shares, the out-of-range share of a numeric window against a
//! reference's range, unseen categories of a categorical window, the volume-anomaly and
//! freshness verdicts, and the per-feature [`QualityReport`]. Must not: change or re-encode the
//! profiles it reads (their stored format belongs to `profile.rs`), keep state, read clocks (the
//! caller passes "now"), or put category names into error messages.
//!
//! Accuracy: missing, invalid and volume numbers are exact. The out-of-range share comes from
//! the current window's KLL sketch (exact while the sketch still holds every value, otherwise
//! within the sketch's single-sided normalized rank error per side, 2.296 / k^0.9723 ≈ 1.33 %
//! at k = 200 with 99 % confidence); the exact minimum and maximum settle the common cases (no
//! value outside the reference range, or all of them) exactly. Unseen categories are exact when both profiles
//! count exactly; in sketch mode [`UnseenCategories`] carries rigorous lower and upper bounds.

use std::collections::BTreeSet;

use datasketches::common::SearchCriteria;
use datasketches::kll::KllFloat;
use serde::{Deserialize, Serialize};

use crate::categorical::CategoricalProfile;
use crate::error::StatsError;
use crate::numeric::NumericProfile;
use crate::profile::FeatureProfile;

/// Most unseen categories listed in [`UnseenCategories::top`].
pub const UNSEEN_TOP: usize = 20;
/// Default width of the volume band in standard deviations.
pub const DEFAULT_VOLUME_K: f64 = 3.0;

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Missing observations / all observations; `None` for an empty profile.
pub fn missing_share(profile: &FeatureProfile) -> Option<f64> {
    share(profile.missing(), profile.count())
}

/// Non-finite observations (NaN, ±inf) / all observations; `None` for an empty profile.
pub fn invalid_share(profile: &NumericProfile) -> Option<f64> {
    share(profile.invalid(), profile.count())
}

/// Share of the current window's finite values outside the reference's `[min, max]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutOfRange {
    /// Reference minimum (exact).
    pub reference_min: f64,
    /// Reference maximum (exact).
    pub reference_max: f64,
    /// Share of current finite values below `reference_min`.
    pub below: f64,
    /// Share of current finite values above `reference_max`.
    pub above: f64,
    /// `below + above`.
    pub share: f64,
    /// `true` when `share` is exact (sketch still exact, or settled by the min/max).
    pub exact: bool,
    /// Bound on |share − true share| (99 % confidence); 0 when exact.
    pub max_error: f64,
}

/// Out-of-range share of `current` against `reference`'s range, from the current KLL CDF at
/// the reference minimum (strictly below) and maximum (strictly above).
pub fn out_of_range(
    reference: &NumericProfile,
    current: &NumericProfile,
) -> Result<OutOfRange, StatsError> {
    let (Some(ref_min), Some(ref_max)) = (reference.min(), reference.max()) else {
        return Err(StatsError::EmptyReference);
    };
    let (Some(cur_min), Some(cur_max)) = (current.min(), current.max()) else {
        return Err(StatsError::EmptyCurrent);
    };
    let kll = current.kll();
    let sketch_exact = !kll.is_estimation_mode();
    // Fraction of values strictly below / strictly above a point; the exact extremes decide
    // the all-or-nothing cases without the sketch.
    let rank = |v: f64, criteria: SearchCriteria| -> Result<f64, StatsError> {
        let item = KllFloat::<f64>::new(v)
            .map_err(|_| StatsError::InvalidInput("reference range is not finite".into()))?;
        Ok(kll.rank(&item, criteria).unwrap_or(0.0))
    };
    let (below, below_exact) = if cur_min >= ref_min {
        (0.0, true)
    } else if cur_max < ref_min {
        (1.0, true)
    } else {
        (rank(ref_min, SearchCriteria::Exclusive)?, sketch_exact)
    };
    let (above, above_exact) = if cur_max <= ref_max {
        (0.0, true)
    } else if cur_min > ref_max {
        (1.0, true)
    } else {
        (
            1.0 - rank(ref_max, SearchCriteria::Inclusive)?,
            sketch_exact,
        )
    };
    let per_side = kll.normalized_rank_error();
    let max_error = [below_exact, above_exact]
        .iter()
        .filter(|exact| !**exact)
        .map(|_| per_side)
        .sum::<f64>();
    Ok(OutOfRange {
        reference_min: ref_min,
        reference_max: ref_max,
        below,
        above,
        share: (below + above).min(1.0),
        exact: below_exact && above_exact,
        max_error,
    })
}

/// Current categories the reference never saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnseenCategories {
    /// Share of current non-missing values in categories the reference does not list (exact
    /// mode: never saw; sketch mode: does not track, which includes rare seen ones).
    pub share: f64,
    /// Rigorous lower bound of the true unseen share (equals `share` when exact).
    pub lower_bound: f64,
    /// Rigorous upper bound of the true unseen share (equals `share` when exact).
    pub upper_bound: f64,
    /// `true` when both profiles count exactly.
    pub exact: bool,
    /// Up to [`UNSEEN_TOP`] unseen categories with their current counts (lower bounds in sketch
    /// mode), largest first, ties by name.
    pub top: Vec<(String, u64)>,
    /// How many unseen categories are known (listed or not).
    pub distinct: usize,
}

/// Unseen categories of `current` against `reference`.
///
/// Bounds: categories the reference lists were seen, so only unlisted ones can be unseen.
/// The current listed counts are lower bounds whose shortfall is at most the current mass not
/// attributed to any listed category ("rest"), so the unseen share is at most (unlisted listed
/// mass + rest) / present; when the reference counts exactly, unlisted means unseen and the
/// listed unseen mass is a lower bound, otherwise the lower bound is 0.
pub fn unseen_categories(
    reference: &CategoricalProfile,
    current: &CategoricalProfile,
) -> Result<UnseenCategories, StatsError> {
    if reference.present() == 0 {
        return Err(StatsError::EmptyReference);
    }
    let present = current.present();
    if present == 0 {
        return Err(StatsError::EmptyCurrent);
    }
    let known: BTreeSet<String> = reference
        .category_counts()
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let counts = current.category_counts();
    let listed: u64 = counts.iter().map(|(_, n)| n).sum();
    let rest = present.saturating_sub(listed);
    // category_counts() is sorted largest first, ties by name, which is the order we report.
    let unseen: Vec<(String, u64)> = counts
        .into_iter()
        .filter(|(c, _)| !known.contains(c))
        .collect();
    let mass: u64 = unseen.iter().map(|(_, n)| n).sum();
    let exact = reference.is_exact() && current.is_exact();
    let as_share = |n: u64| (n as f64 / present as f64).min(1.0);
    let share = as_share(mass);
    Ok(UnseenCategories {
        share,
        lower_bound: if reference.is_exact() { share } else { 0.0 },
        upper_bound: as_share(mass.saturating_add(rest)),
        exact,
        distinct: unseen.len(),
        top: unseen.into_iter().take(UNSEEN_TOP).collect(),
    })
}

/// Verdict of a volume check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeVerdict {
    /// Within `mean ± k·σ`.
    Normal,
    /// Below the band.
    Low,
    /// Above the band.
    High,
}

/// A count compared with a baseline of counts (per hour or per chunk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeCheck {
    /// Mean of the baseline counts.
    pub baseline_mean: f64,
    /// Population standard deviation of the baseline counts (NannyML's `np.nanstd`, ddof 0).
    pub baseline_std: f64,
    /// The count checked.
    pub current: u64,
    /// (current − mean) / σ; `None` when σ = 0 and the count differs from the mean (infinite).
    pub z_score: Option<f64>,
    /// `max(0, mean − k·σ)`.
    pub lower: f64,
    /// `mean + k·σ`.
    pub upper: f64,
    /// Verdict against `[lower, upper]`; with σ = 0 any other count than the mean is anomalous.
    pub verdict: VolumeVerdict,
}

/// Checks `current` against `mean ± k·σ` of `baseline` (NannyML's standard-deviation
/// threshold). Errors for an empty baseline or a `k` that is negative or not finite.
pub fn volume_anomaly(baseline: &[u64], current: u64, k: f64) -> Result<VolumeCheck, StatsError> {
    if baseline.is_empty() {
        return Err(StatsError::EmptyReference);
    }
    if !(k.is_finite() && k >= 0.0) {
        return Err(StatsError::InvalidInput(
            "band width k must be finite and non-negative".into(),
        ));
    }
    let n = baseline.len() as f64;
    let mean = baseline.iter().map(|c| *c as f64).sum::<f64>() / n;
    let var = baseline
        .iter()
        .map(|c| (*c as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt();
    let x = current as f64;
    let z_score = if std > 0.0 {
        Some((x - mean) / std)
    } else if x == mean {
        Some(0.0)
    } else {
        None
    };
    let (lower, upper) = ((mean - k * std).max(0.0), mean + k * std);
    let verdict = if x < lower {
        VolumeVerdict::Low
    } else if x > upper {
        VolumeVerdict::High
    } else {
        VolumeVerdict::Normal
    };
    Ok(VolumeCheck {
        baseline_mean: mean,
        baseline_std: std,
        current,
        z_score,
        lower,
        upper,
        verdict,
    })
}

/// Verdict of a freshness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreshnessVerdict {
    /// The last event is at most `max_age` old (or in the future: clock skew is not staleness).
    Fresh,
    /// The last event is older than `max_age`.
    Stale,
    /// No event at all.
    NoData,
}

/// Age of the newest event against a maximum age. Times are Unix microseconds, like the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// `now − last event` (negative if the event lies in the future); `None` without events.
    pub age_micros: Option<i64>,
    /// The verdict.
    pub verdict: FreshnessVerdict,
}

/// Freshness of a stream whose newest event happened at `last_event_micros`.
pub fn freshness(
    now_micros: i64,
    last_event_micros: Option<i64>,
    max_age_micros: i64,
) -> Freshness {
    match last_event_micros {
        None => Freshness {
            age_micros: None,
            verdict: FreshnessVerdict::NoData,
        },
        Some(last) => {
            let age = now_micros.saturating_sub(last);
            Freshness {
                age_micros: Some(age),
                verdict: if age > max_age_micros {
                    FreshnessVerdict::Stale
                } else {
                    FreshnessVerdict::Fresh
                },
            }
        }
    }
}

/// Data-quality numbers of one feature in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// All observations.
    pub count: u64,
    /// Missing observations.
    pub missing: u64,
    /// `missing / count`; `None` when empty.
    pub missing_share: Option<f64>,
    /// Non-finite numeric observations (0 for categorical).
    pub invalid: u64,
    /// `invalid / count` for numeric features; `None` for categorical or empty ones.
    pub invalid_share: Option<f64>,
    /// Numeric features with finite values on both sides: values outside the reference range.
    pub out_of_range: Option<OutOfRange>,
    /// Categorical features with values on both sides: categories the reference never saw.
    pub unseen: Option<UnseenCategories>,
}

/// Quality report of `current`, compared with `reference` where one is given. Kinds must
/// match; a side without values leaves the comparison parts `None` rather than failing.
pub fn quality_report(
    reference: Option<&FeatureProfile>,
    current: &FeatureProfile,
) -> Result<QualityReport, StatsError> {
    let (invalid_share, out_of_range, unseen) = match (reference, current) {
        (None, FeatureProfile::Numeric(c)) => (invalid_share(c), None, None),
        (None, FeatureProfile::Categorical(_)) => (None, None, None),
        (Some(FeatureProfile::Numeric(r)), FeatureProfile::Numeric(c)) => {
            (invalid_share(c), skip_empty(out_of_range(r, c))?, None)
        }
        (Some(FeatureProfile::Categorical(r)), FeatureProfile::Categorical(c)) => {
            (None, None, skip_empty(unseen_categories(r, c))?)
        }
        _ => return Err(StatsError::KindMismatch),
    };
    Ok(QualityReport {
        count: current.count(),
        missing: current.missing(),
        missing_share: missing_share(current),
        invalid: current.invalid(),
        invalid_share,
        out_of_range,
        unseen,
    })
}

/// Turns "no values on one side" into `None`, keeping other errors.
fn skip_empty<T>(r: Result<T, StatsError>) -> Result<Option<T>, StatsError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StatsError::EmptyReference | StatsError::EmptyCurrent) => Ok(None),
        Err(e) => Err(e),
    }
}
