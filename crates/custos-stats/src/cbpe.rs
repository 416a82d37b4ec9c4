//! Confidence-based performance estimation (CBPE) of binary classifiers without labels, as
//! NannyML 0.13.1 computes it, from the same score histograms as realized performance.
//!
//! Owns: [`Calibration`] (isotonic regression of labels on scores, fitted on a labelled
//! reference), [`needs_calibration`], [`SamplingErrorComponents`] (NannyML's reference-side
//! sampling-error terms), [`estimate`] and the [`CbpeModel`] bundle the server stores per model.
//! Must not: compute realized metrics (that is `performance.rs`), do IO, or see raw rows: every
//! input is a [`BinaryPerformance`] or a [`ScoreHistogram`], so estimates work on merged hourly
//! summaries.
//!
//! How it follows NannyML (`performance_estimation/confidence_based`, `calibration.py`,
//! `sampling_error/binary_classification.py`), and where it cannot:
//! * Calibration: sklearn's `IsotonicRegression(out_of_bounds='clip')` on (score, label). sklearn
//!   first averages labels per distinct score, which is exactly what the reference histograms
//!   hold per bin, then runs scipy's PAVA (reproduced operation for operation), then predicts by
//!   `np.interp` between the knots after clipping to the fitted score range. On scores with at
//!   most 4 decimals the knots are bit-identical to sklearn's.
//! * Estimates: calibrated probabilities q give the expected confusion matrix (TP = Σ q over
//!   predicted positives, FP = Σ (1 − q), …) and from it accuracy, precision, recall and F1.
//!   ROC AUC: rows sorted by score descending, cumulative Σq and Σ(1 − q) as the ROC curve,
//!   trapezoid rule. NannyML walks row by row and rounds the cumulative sums to 5 decimals;
//!   rows of one score bin share q, so their points are collinear and one step per bin gives the
//!   same area, and the rounding (≤ 5·10⁻⁶ per point) is not reproduced.
//! * Predicted class: NannyML reads `y_pred` from the data; here a row is predicted positive iff
//!   its binned score is ≥ `threshold` (NannyML's synthetic dataset uses 0.48, the California
//!   housing one 0.8: in both `y_pred == (y_pred_proba >= threshold)` holds for every row).
//! * Sampling errors: accuracy, precision, recall and F1 components are closed forms of the
//!   reference confusion counts (NannyML's `np.std` over 0/1 indicator arrays). The ROC AUC
//!   component is the standard deviation, over the reference positives, of the number of
//!   negatives ranked below each (divided by the negative count). NannyML orders tied scores by
//!   whatever `np.argsort` (an unstable, platform-dependent sort) does, so its value varies with
//!   the tie order: over random tie orders of NannyML's synthetic reference (2-decimal scores) it
//!   spreads by ±0.27 % (one standard deviation). Here ties are resolved by expectation: within a
//!   bin with k positives and m negatives, each positive has a uniform number of the bin's
//!   negatives below it, so the sums of the rank statistic and of its square are replaced by
//!   their expectations. This is deterministic, needs only histograms, and on that reference
//!   lies within 0.03 % of the mean over 200 random tie orders; NannyML's own run differs by
//!   0.27 %. NannyML also drops a positive that happens to be ranked first (`np.unique(...)[1:]`);
//!   that O(1/n) quirk is not reproduced.
//! * Whether to calibrate: NannyML's `needs_calibration` cross-fits the calibrator on 10 random
//!   stratified 90/10 splits (`StratifiedShuffleSplit(random_state=42)`) and calibrates when the
//!   expected calibration error (10 equal-count bins over the score-sorted test rows) of the
//!   calibrated scores is below that of the raw scores. Random splits of rows cannot be
//!   reproduced from histograms, so [`needs_calibration`] uses 10 deterministic stratified folds
//!   (rows of each (bin, label) dealt round-robin) and splits tied scores across ECE bins
//!   proportionally. Same rule, same bins; it agrees with NannyML on both NannyML binary
//!   datasets and on the miscalibrated fixtures. On well-calibrated scores NannyML's own answer
//!   is a coin flip between random seeds, and so either answer is defensible there.
//! * Band: `estimate ± 3 · sampling_error` (NannyML's `SAMPLING_ERROR_RANGE`), clipped to
//!   `[0, 1]`; sampling error = reference std / √(n · reference fraction) for a chunk of n rows.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::StatsError;
use crate::performance::{BinaryPerformance, SCORE_BIN_COUNT, ScoreHistogram, roc_auc};

/// Width of the confidence band in sampling errors (NannyML's `SAMPLING_ERROR_RANGE`).
pub const SAMPLING_ERROR_RANGE: f64 = 3.0;
/// Folds of the calibration check (NannyML's `split_count`).
pub const CALIBRATION_FOLDS: u64 = 10;
/// Equal-count bins of the expected calibration error (NannyML's `bin_count`).
pub const ECE_BINS: u64 = 10;
/// Above this reference ROC AUC calibration is never applied (NannyML: scores already separate
/// the classes, and isotonic regression would map them to 0/1).
pub const CALIBRATION_AUC_CEILING: f64 = 0.999;

// ---------------------------------------------------------------------------------------------
// Calibration
// ---------------------------------------------------------------------------------------------

/// Maps a model score to a calibrated probability: identity, or an isotonic fit given by its
/// knots `(score, probability)` with linear interpolation between them and clipping outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalibrationRaw")]
pub struct Calibration {
    /// Empty for the identity; otherwise strictly increasing scores in `[0, 1]` with
    /// non-decreasing probabilities in `[0, 1]`.
    knots: Vec<(f64, f64)>,
}

/// Largest decrease between consecutive knot probabilities accepted (and repaired) on input.
const KNOT_SLACK: f64 = 1e-12;

#[derive(Deserialize)]
struct CalibrationRaw {
    knots: Vec<(f64, f64)>,
}

impl TryFrom<CalibrationRaw> for Calibration {
    type Error = StatsError;

    fn try_from(raw: CalibrationRaw) -> Result<Self, StatsError> {
        let knots = raw.knots;
        if knots.len() > SCORE_BIN_COUNT {
            return Err(invalid("calibration has more knots than score bins"));
        }
        let in_unit = |v: f64| (0.0..=1.0).contains(&v);
        if !knots.iter().all(|(x, y)| in_unit(*x) && in_unit(*y)) {
            return Err(invalid("calibration knots must lie in [0, 1]"));
        }
        // Probabilities may decrease by a hair: JSON readers without exact float parsing (the
        // workspace's serde_json) move a value by up to one ULP, which could swap two knots one
        // ULP apart. Such a dip is repaired (running maximum); a real decrease is an error.
        if !knots.windows(2).all(|w| match w {
            [(x0, y0), (x1, y1)] => x0 < x1 && *y0 <= y1 + KNOT_SLACK,
            _ => true,
        }) {
            return Err(invalid("calibration knots must be increasing"));
        }
        let mut knots = knots;
        let mut running = 0.0f64;
        for (_, y) in knots.iter_mut() {
            running = running.max(*y);
            *y = running;
        }
        Ok(Self { knots })
    }
}

impl Calibration {
    /// No calibration: probabilities are the raw scores (NannyML's `NoopCalibrator`).
    pub fn identity() -> Self {
        Self { knots: Vec::new() }
    }

    /// Isotonic calibration fitted on the reference's scored rows (per-bin label means,
    /// weighted by bin counts). Errors with [`StatsError::EmptyReference`] without scored rows.
    pub fn fit(reference: &BinaryPerformance) -> Result<Self, StatsError> {
        let points = bin_points(
            reference
                .positive_scores()
                .iter()
                .map(|(b, n)| (b, n, 0))
                .chain(reference.negative_scores().iter().map(|(b, n)| (b, 0, n))),
        );
        if points.is_empty() {
            return Err(StatsError::EmptyReference);
        }
        Ok(Self {
            knots: isotonic_knots(&points),
        })
    }

    /// NannyML's flow: [`fit`](Self::fit) if [`needs_calibration`] says so, else identity.
    pub fn fit_if_needed(reference: &BinaryPerformance) -> Result<Self, StatsError> {
        if needs_calibration(reference)? {
            Self::fit(reference)
        } else {
            Ok(Self::identity())
        }
    }

    /// `true` for the identity.
    pub fn is_identity(&self) -> bool {
        self.knots.is_empty()
    }

    /// The knots `(score, probability)`; empty for the identity.
    pub fn knots(&self) -> &[(f64, f64)] {
        &self.knots
    }

    /// The calibrated probability of a score (NaN for NaN).
    pub fn calibrate(&self, score: f64) -> f64 {
        interpolate(&self.knots, score)
    }
}

/// (score, label mean, weight) per bin, ascending, from `(bin, positives, negatives)` items.
fn bin_points(items: impl Iterator<Item = (u16, u64, u64)>) -> Vec<(f64, f64, f64)> {
    let mut per_bin: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for (b, p, n) in items {
        let e = per_bin.entry(b).or_insert((0, 0));
        e.0 += p;
        e.1 += n;
    }
    per_bin
        .into_iter()
        .filter(|(_, (p, n))| p + n > 0)
        .map(|(b, (p, n))| {
            let total = (p + n) as f64;
            // sklearn's _make_unique: Σy / Σw with unit weights, i.e. positives / rows.
            (ScoreHistogram::score_of(b), p as f64 / total, total)
        })
        .collect()
}

/// sklearn `IsotonicRegression(increasing=True)` on unique, ascending scores: scipy's PAVA,
/// then sklearn's trimming of interior knots whose neighbours share their value.
fn isotonic_knots(points: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    let mut y: Vec<f64> = points.iter().map(|p| p.1).collect();
    let mut w: Vec<f64> = points.iter().map(|p| p.2).collect();
    pava(&mut y, &mut w);
    let n = y.len();
    points
        .iter()
        .zip(y.iter())
        .enumerate()
        .filter(|(i, (_, yi))| {
            if *i == 0 || *i + 1 == n {
                return true;
            }
            let prev = y.get(i - 1).copied();
            let next = y.get(i + 1).copied();
            prev != Some(**yi) || next != Some(**yi)
        })
        .map(|(_, (p, yi))| (p.0, *yi))
        .collect()
}

fn at(v: &[f64], i: usize) -> f64 {
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn put(v: &mut [f64], i: usize, value: f64) {
    if let Some(slot) = v.get_mut(i) {
        *slot = value;
    }
}

/// Pool-adjacent-violators, increasing, in place: scipy 1.17 `optimize._pava` (Busing 2022,
/// Algorithm 1, with `>=` so equal values pool), step for step so results match bit for bit.
fn pava(x: &mut [f64], w: &mut [f64]) {
    let n = x.len();
    if n == 0 {
        return;
    }
    // r[k]..r[k + 1] is block k.
    let mut r = vec![0usize; n + 1];
    if let Some(slot) = r.get_mut(1) {
        *slot = 1;
    }
    let mut b = 0usize;
    let mut xb_prev = at(x, 0);
    let mut wb_prev = at(w, 0);
    let mut i = 1usize;
    while i < n {
        b += 1;
        let mut xb = at(x, i);
        let mut wb = at(w, i);
        if xb_prev >= xb {
            b -= 1;
            let mut sb = wb_prev * xb_prev + wb * xb;
            wb += wb_prev;
            xb = sb / wb;
            while i + 1 < n && xb >= at(x, i + 1) {
                i += 1;
                sb += at(w, i) * at(x, i);
                wb += at(w, i);
                xb = sb / wb;
            }
            while b > 0 && at(x, b - 1) >= xb {
                b -= 1;
                sb += at(w, b) * at(x, b);
                wb += at(w, b);
                xb = sb / wb;
            }
        }
        put(x, b, xb);
        xb_prev = xb;
        put(w, b, wb);
        wb_prev = wb;
        if let Some(slot) = r.get_mut(b + 1) {
            *slot = i + 1;
        }
        i += 1;
    }
    // Expand block values over their members, last block first (as scipy does).
    let mut end = n;
    for k in (0..=b).rev() {
        let start = r.get(k).copied().unwrap_or(0);
        let value = at(x, k);
        for slot in x.iter_mut().take(end).skip(start) {
            *slot = value;
        }
        end = start;
    }
}

/// `np.interp(clip(s, x_min, x_max), xs, ys)`, which sklearn's isotonic `predict` reduces to:
/// exact knot values at knots, `slope · (s − x_j) + y_j` in between.
fn interpolate(knots: &[(f64, f64)], score: f64) -> f64 {
    let (Some(first), Some(last)) = (knots.first(), knots.last()) else {
        return score;
    };
    if score.is_nan() {
        return f64::NAN;
    }
    let s = score.clamp(first.0, last.0);
    let j = knots.partition_point(|k| k.0 <= s).saturating_sub(1);
    match (knots.get(j), knots.get(j + 1)) {
        (Some(lo), Some(hi)) if lo.0 != s => {
            let slope = (hi.1 - lo.1) / (hi.0 - lo.0);
            (slope * (s - lo.0) + lo.1).clamp(0.0, 1.0)
        }
        (Some(lo), _) => lo.1,
        (None, _) => last.1,
    }
}

/// NannyML's decision whether isotonic calibration improves the reference's scores (see the
/// module docs for how it differs from NannyML's random splits). `false` with a single class
/// or a reference ROC AUC above [`CALIBRATION_AUC_CEILING`]; an error without scored rows or
/// with fewer than 4 (NannyML cannot form its ECE bins then either).
pub fn needs_calibration(reference: &BinaryPerformance) -> Result<bool, StatsError> {
    let (pos, neg) = (reference.positive_scores(), reference.negative_scores());
    let rows = pos.count() + neg.count();
    if rows == 0 {
        return Err(StatsError::EmptyReference);
    }
    if pos.is_empty() || neg.is_empty() {
        return Ok(false);
    }
    if roc_auc(pos, neg).is_some_and(|auc| auc > CALIBRATION_AUC_CEILING) {
        return Ok(false);
    }
    let edges = ece_bin_edges(rows, ECE_BINS)?;

    // Cells (bin, positives?, rows) in ascending bin order, negatives first; rows are dealt to
    // folds round-robin in this order, so every fold is stratified by score and label.
    let bins: BTreeSet<u16> = pos.iter().chain(neg.iter()).map(|(b, _)| b).collect();
    let mut cells: Vec<(u16, bool, u64)> = Vec::new();
    for b in &bins {
        for (positive, n) in [(false, neg.get(*b)), (true, pos.get(*b))] {
            if n > 0 {
                cells.push((*b, positive, n));
            }
        }
    }
    let dealt = |start: u64, n: u64, fold: u64| -> u64 {
        let upto = |m: u64| (m + CALIBRATION_FOLDS - 1 - fold) / CALIBRATION_FOLDS;
        upto(start + n) - upto(start)
    };

    // Test rows of every fold with their calibrated score: (calibrated, rows, positives).
    let mut calibrated: Vec<(f64, u64, u64)> = Vec::new();
    for fold in 0..CALIBRATION_FOLDS {
        let mut train: Vec<(u16, u64, u64)> = Vec::with_capacity(cells.len());
        let mut test: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
        let mut start = 0u64;
        for (b, positive, n) in &cells {
            let held = dealt(start, *n, fold);
            start += n;
            let kept = n - held;
            let t = test.entry(*b).or_insert((0, 0));
            if *positive {
                train.push((*b, kept, 0));
                t.0 += held;
            } else {
                train.push((*b, 0, kept));
                t.1 += held;
            }
        }
        // Every fold trains on at least 3 of the ≥ 4 rows, so the fit is never empty.
        let knots = isotonic_knots(&bin_points(train.into_iter()));
        for (b, (p, n)) in test {
            if p + n > 0 {
                let q = interpolate(&knots, ScoreHistogram::score_of(b));
                calibrated.push((q, p + n, p));
            }
        }
    }
    calibrated.sort_by(|a, b| a.0.total_cmp(&b.0));
    let raw: Vec<(f64, u64, u64)> = bins
        .iter()
        .map(|b| {
            let (p, n) = (pos.get(*b), neg.get(*b));
            (ScoreHistogram::score_of(*b), p + n, p)
        })
        .collect();
    let before = expected_calibration_error(&raw, &edges, rows);
    let after = expected_calibration_error(&merge_equal(calibrated), &edges, rows);
    Ok(before > after)
}

/// Groups rows of equal value: ties have no order, so they are treated as one group.
fn merge_equal(sorted: Vec<(f64, u64, u64)>) -> Vec<(f64, u64, u64)> {
    let mut out: Vec<(f64, u64, u64)> = Vec::with_capacity(sorted.len());
    for (v, n, p) in sorted {
        match out.last_mut() {
            Some(last) if last.0 == v => {
                last.1 += n;
                last.2 += p;
            }
            _ => out.push((v, n, p)),
        }
    }
    out
}

/// NannyML's `_get_bin_index_edges`: index ranges of equal-count bins over `n` sorted rows
/// (bin width n / bins, the last bin absorbing the rest; with n ≤ 2·bins, n / 2 bins).
fn ece_bin_edges(n: u64, bins: u64) -> Result<Vec<(u64, u64)>, StatsError> {
    let mut bins = bins;
    if n <= 2 * bins {
        bins = n / 2;
        if bins < 2 {
            return Err(invalid(
                "at least 4 scored reference rows are needed to check calibration",
            ));
        }
    }
    let width = n / bins;
    let mut edges: Vec<u64> = (0..=n / width).map(|k| k * width).collect();
    if let Some(last) = edges.last_mut() {
        *last = n;
    }
    let pairs = edges
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some((*a, *b)),
            _ => None,
        })
        .collect();
    Ok(pairs)
}

/// ECE over value-sorted groups `(value, rows, positives)` and index bins: Σ (bin rows / n) ·
/// |mean value − mean label| per bin. A group straddling a bin edge contributes its rows and,
/// proportionally, its positives to both bins (a tie has no order to split it by).
fn expected_calibration_error(groups: &[(f64, u64, u64)], edges: &[(u64, u64)], n: u64) -> f64 {
    let mut groups = groups.iter().copied().filter(|g| g.1 > 0);
    let mut current = groups.next();
    let mut used = 0u64;
    let mut ece = 0.0;
    for (l, r) in edges {
        let width = r - l;
        let mut need = width;
        let (mut sum_value, mut sum_label) = (0.0f64, 0.0f64);
        while need > 0 {
            let Some((v, rows, positives)) = current else {
                break;
            };
            let take = need.min(rows - used);
            sum_value += take as f64 * v;
            sum_label += take as f64 * positives as f64 / rows as f64;
            need -= take;
            used += take;
            if used == rows {
                current = groups.next();
                used = 0;
            }
        }
        let w = width as f64;
        ece += (w / n as f64) * (sum_value / w - sum_label / w).abs();
    }
    ece
}

// ---------------------------------------------------------------------------------------------
// Sampling error
// ---------------------------------------------------------------------------------------------

/// A reference standard deviation and the share of rows it applies to: the sampling error of a
/// chunk of n rows is `std / √(n · fraction)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StdFractionRaw")]
pub struct StdFraction {
    /// Standard deviation of the per-row contribution on the reference.
    pub std: f64,
    /// Share of reference rows that contribute, in `(0, 1]`.
    pub fraction: f64,
}

#[derive(Deserialize)]
struct StdFractionRaw {
    std: f64,
    fraction: f64,
}

impl TryFrom<StdFractionRaw> for StdFraction {
    type Error = StatsError;

    fn try_from(raw: StdFractionRaw) -> Result<Self, StatsError> {
        if !(raw.std.is_finite() && raw.std >= 0.0 && raw.fraction > 0.0 && raw.fraction <= 1.0) {
            return Err(invalid("sampling-error component out of range"));
        }
        Ok(Self {
            std: raw.std,
            fraction: raw.fraction,
        })
    }
}

impl StdFraction {
    /// Sampling error for a chunk of `rows` rows; `None` for an empty chunk.
    pub fn sampling_error(&self, rows: u64) -> Option<f64> {
        (rows > 0).then(|| self.std / (rows as f64 * self.fraction).sqrt())
    }
}

/// NannyML's sampling-error components, computed once on the labelled reference. A component
/// is `None` where NannyML's is NaN (e.g. no positive predictions for precision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingErrorComponents {
    /// ROC AUC: std of the per-positive Mann–Whitney counts / negatives, share of positives
    /// (of the minority-relabelled problem, as NannyML flips labels when positives dominate).
    pub roc_auc: Option<StdFraction>,
    /// F1: std of the per-row F1 contributions over tp, fp and fn rows, their share of rows.
    pub f1: Option<StdFraction>,
    /// Precision: std of correctness over predicted positives, their share.
    pub precision: Option<StdFraction>,
    /// Recall: std of correctness over actual positives, their share.
    pub recall: Option<StdFraction>,
    /// Accuracy: std of correctness over all rows (fraction 1).
    pub accuracy: Option<StdFraction>,
}

impl SamplingErrorComponents {
    /// Components from a labelled reference: ROC AUC from its score histograms, the others
    /// from its confusion counts (all rows).
    pub fn from_reference(reference: &BinaryPerformance) -> Result<Self, StatsError> {
        if reference.rows() == 0 {
            return Err(StatsError::EmptyReference);
        }
        let c = reference.confusion();
        let n = c.rows() as f64;
        let (tp, fp, tn, fn_) = (c.tp as f64, c.fp as f64, c.tn as f64, c.fn_ as f64);
        // np.std of a 0/1 array with share q of ones.
        let bernoulli = |q: f64| (q * (1.0 - q)).max(0.0).sqrt();
        let component = |std: f64, fraction: f64| {
            (std.is_finite() && fraction > 0.0 && fraction <= 1.0)
                .then_some(StdFraction { std, fraction })
        };
        let relevant = tp + fp + fn_;
        let f1 = if relevant > 0.0 {
            // NannyML scales the 1/0 indicators by |tp, fp, fn rows| / (tp + (fp + fn)/2).
            let factor = relevant / ((fn_ + fp) * 0.5 + tp);
            component(factor * bernoulli(tp / relevant), relevant / n)
        } else {
            None
        };
        let precision = (tp + fp > 0.0)
            .then(|| component(bernoulli(tp / (tp + fp)), (tp + fp) / n))
            .flatten();
        let recall = (tp + fn_ > 0.0)
            .then(|| component(bernoulli(tp / (tp + fn_)), (tp + fn_) / n))
            .flatten();
        let accuracy = component(bernoulli((tp + tn) / n), 1.0);
        Ok(Self {
            roc_auc: auroc_component(reference.positive_scores(), reference.negative_scores()),
            f1,
            precision,
            recall,
            accuracy,
        })
    }
}

/// NannyML's `auroc_sampling_error_components` with ties resolved by expectation (module docs).
fn auroc_component(pos: &ScoreHistogram, neg: &ScoreHistogram) -> Option<StdFraction> {
    let (p_all, n_all) = (pos.count(), neg.count());
    if p_all == 0 || n_all == 0 {
        return None;
    }
    // NannyML flips labels and scores (1 − p) when positives are the majority; ascending
    // 1 − p is descending bins.
    let flip = p_all as f64 / (p_all + n_all) as f64 > 0.5;
    let (a, b) = if flip { (neg, pos) } else { (pos, neg) };
    let bins: BTreeSet<u16> = pos.iter().chain(neg.iter()).map(|(bin, _)| bin).collect();
    let ordered: Box<dyn Iterator<Item = &u16>> = if flip {
        Box::new(bins.iter().rev())
    } else {
        Box::new(bins.iter())
    };
    let (mut below, mut s1, mut s2) = (0.0f64, 0.0f64, 0.0f64);
    for bin in ordered {
        let k = a.get(*bin) as f64;
        let m = b.get(*bin) as f64;
        // E[N + X] and E[(N + X)²] for X uniform on 0..=m, times k positives.
        s1 += k * (below + m / 2.0);
        s2 += k * (below * below + below * m + m * (2.0 * m + 1.0) / 6.0);
        below += m;
    }
    let (positives, negatives) = (a.count() as f64, b.count() as f64);
    let mean = s1 / positives;
    let std = (s2 / positives - mean * mean).max(0.0).sqrt() / negatives;
    let fraction = positives / (positives + negatives);
    (std.is_finite()).then_some(StdFraction { std, fraction })
}

// ---------------------------------------------------------------------------------------------
// Estimation
// ---------------------------------------------------------------------------------------------

/// One estimated metric with its sampling error and band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricEstimate {
    /// The estimate; `None` where NannyML's is NaN (e.g. ROC AUC when every calibrated
    /// probability is 0).
    pub value: Option<f64>,
    /// Sampling error for this chunk size; `None` until components are applied or where the
    /// component is undefined.
    pub sampling_error: Option<f64>,
    /// `max(0, value − 3 · sampling_error)`.
    pub lower: Option<f64>,
    /// `min(1, value + 3 · sampling_error)`.
    pub upper: Option<f64>,
}

impl MetricEstimate {
    fn with_sampling_error(self, component: Option<&StdFraction>, rows: u64) -> Self {
        let sampling_error = component.and_then(|c| c.sampling_error(rows));
        let band = self.value.zip(sampling_error);
        Self {
            value: self.value,
            sampling_error,
            lower: band.map(|(v, e)| (v - SAMPLING_ERROR_RANGE * e).max(0.0)),
            upper: band.map(|(v, e)| (v + SAMPLING_ERROR_RANGE * e).min(1.0)),
        }
    }

    /// `true` if `realized` lies within the band (false without a band).
    pub fn band_contains(&self, realized: f64) -> bool {
        matches!((self.lower, self.upper), (Some(lo), Some(hi)) if lo <= realized && realized <= hi)
    }
}

/// CBPE estimates for one chunk of unlabelled predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbpeEstimate {
    /// Rows (scores) in the chunk.
    pub rows: u64,
    /// Estimated ROC AUC.
    pub roc_auc: MetricEstimate,
    /// Estimated accuracy.
    pub accuracy: MetricEstimate,
    /// Estimated F1.
    pub f1: MetricEstimate,
    /// Estimated precision.
    pub precision: MetricEstimate,
    /// Estimated recall.
    pub recall: MetricEstimate,
}

impl CbpeEstimate {
    /// Adds sampling errors and bands for this chunk's size.
    pub fn with_sampling_error(self, components: &SamplingErrorComponents) -> Self {
        let n = self.rows;
        Self {
            rows: n,
            roc_auc: self
                .roc_auc
                .with_sampling_error(components.roc_auc.as_ref(), n),
            accuracy: self
                .accuracy
                .with_sampling_error(components.accuracy.as_ref(), n),
            f1: self.f1.with_sampling_error(components.f1.as_ref(), n),
            precision: self
                .precision
                .with_sampling_error(components.precision.as_ref(), n),
            recall: self
                .recall
                .with_sampling_error(components.recall.as_ref(), n),
        }
    }
}

/// Estimates a chunk's performance from its scores alone: each row is predicted positive iff
/// its binned score ≥ `threshold`, and is positive with its calibrated probability. No
/// sampling errors yet (see [`CbpeEstimate::with_sampling_error`]). Errors for an empty chunk
/// ([`StatsError::EmptyCurrent`]) or a non-finite threshold.
pub fn estimate(
    calibration: &Calibration,
    chunk_scores: &ScoreHistogram,
    threshold: f64,
) -> Result<CbpeEstimate, StatsError> {
    if !threshold.is_finite() {
        return Err(invalid("threshold must be finite"));
    }
    let rows = chunk_scores.count();
    if rows == 0 {
        return Err(StatsError::EmptyCurrent);
    }
    let (mut tp, mut fp, mut tn, mut fn_) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    // ROC curve from the highest score down: one point per bin (see module docs).
    let (mut cum_tp, mut cum_fp, mut twice_area) = (0.0f64, 0.0f64, 0.0f64);
    for (bin, count) in chunk_scores.iter().rev() {
        let score = ScoreHistogram::score_of(bin);
        let q = calibration.calibrate(score);
        let c = count as f64;
        let (expected_pos, expected_neg) = (c * q, c * (1.0 - q));
        if score >= threshold {
            tp += expected_pos;
            fp += expected_neg;
        } else {
            fn_ += expected_pos;
            tn += expected_neg;
        }
        let next_tp = cum_tp + expected_pos;
        let next_fp = cum_fp + expected_neg;
        twice_area += (next_fp - cum_fp) * (next_tp + cum_tp);
        cum_tp = next_tp;
        cum_fp = next_fp;
    }
    let roc_auc = (cum_tp > 0.0 && cum_fp > 0.0)
        .then(|| twice_area / (2.0 * cum_tp * cum_fp))
        .filter(|v| v.is_finite());
    let or_zero = |num: f64, den: f64| if den != 0.0 { num / den } else { 0.0 };
    let point = |v: f64| MetricEstimate {
        value: Some(v),
        ..MetricEstimate::default()
    };
    Ok(CbpeEstimate {
        rows,
        roc_auc: MetricEstimate {
            value: roc_auc,
            ..MetricEstimate::default()
        },
        accuracy: point((tp + tn) / rows as f64),
        f1: point(or_zero(tp, tp + 0.5 * (fp + fn_))),
        precision: point(or_zero(tp, tp + fp)),
        recall: point(or_zero(tp, tp + fn_)),
    })
}

/// Everything CBPE needs from a model's labelled reference, fitted once and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CbpeModelRaw")]
pub struct CbpeModel {
    /// Score → probability map (identity when calibration does not help).
    pub calibration: Calibration,
    /// Reference sampling-error components.
    pub components: SamplingErrorComponents,
    /// Decision threshold: a score ≥ threshold is a positive prediction.
    pub threshold: f64,
}

#[derive(Deserialize)]
struct CbpeModelRaw {
    calibration: Calibration,
    components: SamplingErrorComponents,
    threshold: f64,
}

impl TryFrom<CbpeModelRaw> for CbpeModel {
    type Error = StatsError;

    fn try_from(raw: CbpeModelRaw) -> Result<Self, StatsError> {
        if !raw.threshold.is_finite() {
            return Err(invalid("threshold must be finite"));
        }
        Ok(Self {
            calibration: raw.calibration,
            components: raw.components,
            threshold: raw.threshold,
        })
    }
}

impl CbpeModel {
    /// Fits calibration (if needed, as NannyML decides) and sampling-error components on a
    /// labelled reference whose predictions used `threshold`.
    pub fn fit(reference: &BinaryPerformance, threshold: f64) -> Result<Self, StatsError> {
        if !threshold.is_finite() {
            return Err(invalid("threshold must be finite"));
        }
        Ok(Self {
            calibration: Calibration::fit_if_needed(reference)?,
            components: SamplingErrorComponents::from_reference(reference)?,
            threshold,
        })
    }

    /// Estimates with sampling errors and bands for one chunk.
    pub fn estimate(&self, chunk_scores: &ScoreHistogram) -> Result<CbpeEstimate, StatsError> {
        Ok(estimate(&self.calibration, chunk_scores, self.threshold)?
            .with_sampling_error(&self.components))
    }
}

fn invalid(what: &str) -> StatsError {
    StatsError::InvalidInput(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pava_matches_sklearn_docstring_example() {
        // sklearn.isotonic.isotonic_regression([5, 3, 1, 2, 8, 10, 7, 9, 6, 4]).
        let mut y = [5.0, 3.0, 1.0, 2.0, 8.0, 10.0, 7.0, 9.0, 6.0, 4.0];
        let mut w = [1.0; 10];
        pava(&mut y, &mut w);
        let a = 11.0 / 4.0;
        let b = 44.0 / 6.0;
        assert_eq!(y, [a, a, a, a, b, b, b, b, b, b]);
    }

    #[test]
    fn interpolation_clips_and_hits_knots() {
        let knots = [(0.1, 0.2), (0.5, 0.4), (0.9, 0.8)];
        assert_eq!(interpolate(&knots, 0.0), 0.2);
        assert_eq!(interpolate(&knots, 1.0), 0.8);
        assert_eq!(interpolate(&knots, 0.5), 0.4);
        assert!((interpolate(&knots, 0.3) - 0.3).abs() < 1e-15);
        assert_eq!(interpolate(&[(0.3, 0.6)], 0.9), 0.6);
        assert_eq!(interpolate(&[], 0.7), 0.7);
        assert!(interpolate(&knots, f64::NAN).is_nan());
    }

    #[test]
    fn ece_edges_follow_nannyml() {
        // _get_bin_index_edges(20, 4) from NannyML's docstring.
        assert_eq!(
            ece_bin_edges(20, 4).unwrap(),
            vec![(0, 5), (5, 10), (10, 15), (15, 20)]
        );
        // n = 25, 10 bins: width 2, twelve bins, the last one absorbing the odd row.
        let e = ece_bin_edges(25, 10).unwrap();
        assert_eq!(e.len(), 12);
        assert_eq!(e.last(), Some(&(22, 25)));
        // n ≤ 2·bins: n / 2 bins.
        assert_eq!(ece_bin_edges(8, 10).unwrap().len(), 4);
        assert!(ece_bin_edges(3, 10).is_err());
    }
}
