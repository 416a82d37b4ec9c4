//! Realized model performance from labelled predictions, as exact, mergeable summaries.
//!
//! Owns: [`ScoreHistogram`], the three summaries [`BinaryPerformance`],
//! [`MulticlassPerformance`] and [`RegressionPerformance`], the kind-erased
//! [`PerformanceProfile`] with its versioned byte format, and the metrics computed from them
//! ([`PerformanceMetrics`]). Must not: estimate performance without labels (that is `cbpe.rs`),
//! do IO, or put class names or observed values into error messages (errors end up in logs).
//!
//! The server keeps one summary per model and hour and merges them for any window, so every
//! summary is built from parts whose merge is exact and associative: integer counts, score
//! histograms with fixed bins, and exact floating-point sums (a private fixed-point
//! accumulator covering the whole `f64` range, so that adding in any order or grouping gives
//! bit-identical state). Merging hourly summaries therefore equals one summary of all rows, and
//! `merge(a, merge(b, c)) == merge(merge(a, b), c)` holds exactly, not just up to rounding.
//!
//! Metric conventions follow scikit-learn 1.9 (checked against it in `tests/performance.rs`):
//! * ROC AUC is the Mann–Whitney statistic on the *binned* scores with ties counted as 1/2, which
//!   is what `roc_auc_score` computes on those scores; undefined (None) without both classes.
//! * Log loss clips probabilities to `[ε, 1 − ε]`, ε = `f64::EPSILON`, like `log_loss` since 1.5;
//!   probabilities are not renormalised (sklearn 1.9 only warns when rows do not sum to 1).
//! * Precision, recall and F1 of a class with an empty denominator are 0, sklearn's
//!   `zero_division` default; F1 is `2·tp / (2·tp + fp + fn)`.
//! * MAPE divides by `max(|y|, ε)`; R² is 1 when the residuals are all zero and 0 when the
//!   targets are constant but the residuals are not (sklearn's `force_finite`).
//!
//! Format version 1 of [`PerformanceProfile::to_bytes`] (integers little-endian, blobs are `u32`
//! length + bytes): `b"CPP" | version u8 | kind u8 | payload`, where a histogram is an entry
//! count u32 then per entry bin u32 + count u64 in strictly ascending bin order, and an exact sum
//! is a limb count u8 then per limb index u8 + value i64 (as u64) in ascending index order:
//! * binary (kind 1): tp, fp, tn, fn (u64 each), log-loss sum, positive-score histogram,
//!   negative-score histogram.
//! * multiclass (kind 2): class count u32, class names (UTF-8 blobs, strictly ascending),
//!   confusion entry count u32 then per entry actual index u32, predicted index u32, count u64
//!   (strictly ascending pairs), scored rows u64, log-loss sum, then per class its histograms of
//!   scores for rows of that class and for the other rows.
//! * regression (kind 3): rows u64, minimum and maximum target f64 (0 when empty), then the
//!   exact sums of |e|, e², |e|/max(|y|, ε), y and y² (y² kept exactly as the two parts of an
//!   error-free product), e = y − ŷ.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::MAX_COUNT;
use crate::codec::{Reader, Writer, corrupt};
use crate::error::StatsError;

/// Envelope magic: "Custos Performance Profile".
pub const PERFORMANCE_MAGIC: [u8; 3] = *b"CPP";
/// Envelope format version written by [`PerformanceProfile::to_bytes`].
pub const PERFORMANCE_FORMAT_VERSION: u8 = 1;
const KIND_BINARY: u8 = 1;
const KIND_MULTICLASS: u8 = 2;
const KIND_REGRESSION: u8 = 3;

/// Histogram bins per unit score: bin = round(score × 10 000).
pub const SCORE_BINS_PER_UNIT: u16 = 10_000;
/// Number of possible score bins (0 ..= 10 000).
pub const SCORE_BIN_COUNT: usize = SCORE_BINS_PER_UNIT as usize + 1;
/// Most classes a multiclass summary may hold; one more is an error. Bounds the confusion
/// matrix (at most 65 536 cells) and the number of per-class histograms.
pub const MAX_CLASSES: usize = 256;
/// Most occupied histogram bins across all classes of one multiclass summary (each holds a
/// `u16` and a `u64`): about 14 MiB in the worst case, enough for 52 classes at full 4-decimal
/// score resolution, and for any number of classes (up to [`MAX_CLASSES`]) at 2 decimals.
pub const MAX_TOTAL_SCORE_BINS: usize = 1 << 20;
/// Clipping bound of log loss, as scikit-learn: `np.finfo(float64).eps`.
pub const LOG_LOSS_EPSILON: f64 = f64::EPSILON;
/// Floor of |y| in MAPE's denominator, as scikit-learn's `mean_absolute_percentage_error`.
pub const MAPE_EPSILON: f64 = f64::EPSILON;

// ---------------------------------------------------------------------------------------------
// Exact sums
// ---------------------------------------------------------------------------------------------

/// Limbs of an [`ExactSum`]: 70 × 32 bits from 2^-1088 up, enough for any finite `f64`
/// (2^-1074 ..< 2^1024) times [`MAX_COUNT`] (2^62) with the top limb left for the sign.
const SUM_LIMBS: usize = 70;
const SUM_TOP: usize = SUM_LIMBS - 1;
/// Weight of limb 0 is 2^-SUM_OFFSET; a multiple of 32 at or below the smallest subnormal.
const SUM_OFFSET: i32 = 1088;
const LIMB_BITS: i64 = 32;

/// An exact sum of finite `f64` values in two's-complement fixed point.
///
/// Why not an `f64`: floating-point addition is not associative, so merged hourly summaries
/// would depend on merge order and could not equal a one-pass summary bit for bit. Here every
/// addend is represented exactly, so the state is the exact sum whatever the order. Canonical
/// form: limbs `0..SUM_TOP` in `[0, 2^32)`, the top limb is `0` or `-1` (the sign).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<(u8, i64)>", into = "Vec<(u8, i64)>")]
struct ExactSum {
    // Boxed: 560 bytes inline would make every summary (and the profile enum) large to move.
    limbs: Box<[i64; SUM_LIMBS]>,
}

impl Default for ExactSum {
    fn default() -> Self {
        Self {
            limbs: Box::new([0; SUM_LIMBS]),
        }
    }
}

impl ExactSum {
    /// Adds a finite value exactly. Non-finite values are ignored: every caller validates its
    /// addends first and reports them as errors.
    fn add(&mut self, x: f64) {
        if x == 0.0 || !x.is_finite() {
            return;
        }
        let bits = x.to_bits();
        let negative = bits >> 63 == 1;
        let exp_field = ((bits >> 52) & 0x7FF) as i32;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mantissa, exp) = if exp_field == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), exp_field - 1075)
        };
        // x = mantissa · 2^exp with exp ≥ -1074, so the bit position is ≥ 14.
        let position = exp + SUM_OFFSET;
        let limb = (position / 32) as usize;
        let wide = u128::from(mantissa) << (position % 32);
        for k in 0..3usize {
            let chunk = ((wide >> (32 * k)) & 0xFFFF_FFFF) as i64;
            if let Some(l) = self.limbs.get_mut(limb + k) {
                if negative {
                    *l -= chunk;
                } else {
                    *l += chunk;
                }
            }
        }
        self.normalize();
    }

    fn merge(&mut self, other: &ExactSum) {
        for (a, b) in self.limbs.iter_mut().zip(other.limbs.iter()) {
            *a = a.saturating_add(*b);
        }
        self.normalize();
    }

    /// Carries from the bottom up so that every limb but the top lies in `[0, 2^32)`.
    fn normalize(&mut self) {
        let mut carry = 0i64;
        for (j, limb) in self.limbs.iter_mut().enumerate() {
            let v = limb.saturating_add(carry);
            if j == SUM_TOP {
                *limb = v;
            } else {
                carry = v >> LIMB_BITS;
                *limb = v - (carry << LIMB_BITS);
            }
        }
    }

    fn is_negative(&self) -> bool {
        self.limbs.get(SUM_TOP).is_some_and(|t| *t < 0)
    }

    fn is_zero(&self) -> bool {
        self.limbs.iter().all(|l| *l == 0)
    }

    /// The sum as an unevaluated pair `hi + lo` (about 100 correct bits), `hi` being the sum
    /// rounded to `f64`. Infinite when the sum exceeds the `f64` range.
    fn to_dd(&self) -> (f64, f64) {
        let negative = self.is_negative();
        let magnitude = if negative {
            let mut m = self.clone();
            for l in m.limbs.iter_mut() {
                *l = l.saturating_neg();
            }
            m.normalize();
            m
        } else {
            self.clone()
        };
        // All limbs of the magnitude are non-negative, so summing from the top down has no
        // cancellation and a double-double accumulator keeps ~100 bits.
        let (mut hi, mut lo) = (0.0f64, 0.0f64);
        for (j, l) in magnitude.limbs.iter().enumerate().rev() {
            if *l == 0 {
                continue;
            }
            let t = ldexp(*l as f64, 32 * j as i32 - SUM_OFFSET);
            let (s, e) = two_sum(hi, t);
            if !s.is_finite() {
                // Beyond the f64 range (only reachable with ~2^62 addends near f64::MAX).
                let inf = if negative {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                };
                return (inf, 0.0);
            }
            hi = s;
            lo += e;
        }
        let (hi, lo) = two_sum(hi, lo);
        if negative { (-hi, -lo) } else { (hi, lo) }
    }

    fn to_f64(&self) -> f64 {
        self.to_dd().0
    }

    fn encode(&self, w: &mut Writer) {
        let limbs: Vec<(u8, i64)> = self.clone().into();
        w.u8(limbs.len() as u8);
        for (i, v) in limbs {
            w.u8(i);
            w.u64(v as u64);
        }
    }

    fn decode(r: &mut Reader<'_>, what: &str) -> Result<Self, StatsError> {
        let n = r.u8(what)?;
        let mut limbs = Vec::with_capacity(usize::from(n).min(SUM_LIMBS));
        for _ in 0..n {
            let i = r.u8(what)?;
            let v = r.u64(what)? as i64;
            limbs.push((i, v));
        }
        Self::try_from(limbs)
    }
}

impl From<ExactSum> for Vec<(u8, i64)> {
    fn from(s: ExactSum) -> Self {
        s.limbs
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(|(i, v)| (i as u8, *v))
            .collect()
    }
}

impl TryFrom<Vec<(u8, i64)>> for ExactSum {
    type Error = StatsError;

    fn try_from(sparse: Vec<(u8, i64)>) -> Result<Self, StatsError> {
        let mut sum = ExactSum::default();
        let mut previous: Option<u8> = None;
        for (i, v) in sparse {
            if previous.is_some_and(|p| p >= i) {
                return Err(corrupt("exact-sum limbs are not strictly ascending"));
            }
            previous = Some(i);
            let index = usize::from(i);
            let in_range = if index == SUM_TOP {
                v == -1
            } else {
                v > 0 && v < (1 << LIMB_BITS)
            };
            if !in_range {
                return Err(corrupt("exact-sum limb out of range"));
            }
            let slot = sum
                .limbs
                .get_mut(index)
                .ok_or_else(|| corrupt("exact-sum limb index out of range"))?;
            *slot = v;
        }
        Ok(sum)
    }
}

/// x · 2^e for an integer-valued `x` (|x| < 2^33) and -1088 ≤ e ≤ 1120, rounded once.
fn ldexp(x: f64, e: i32) -> f64 {
    if e > 1023 {
        x * pow2(e - 1023) * pow2(1023)
    } else if e < -1022 {
        // x · 2^(e + 1022) stays normal (x ≥ 1), so only the last product rounds.
        x * pow2(e + 1022) * pow2(-1022)
    } else {
        x * pow2(e)
    }
}

/// 2^e for -1022 ≤ e ≤ 1023, built from its bit pattern (exact).
fn pow2(e: i32) -> f64 {
    let biased = (e.clamp(-1022, 1023) + 1023) as u64;
    f64::from_bits(biased << 52)
}

/// Knuth's error-free sum: `a + b = s + e` exactly.
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// Error-free product: `a · b = p + e` exactly (barring underflow), via fused multiply-add.
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

// ---------------------------------------------------------------------------------------------
// Score histogram
// ---------------------------------------------------------------------------------------------

/// Counts of scores in `[0, 1]` by fixed bins of width 10⁻⁴: bin = round(score × 10 000).
///
/// Why fixed bins: a histogram with fixed edges merges exactly (add the counts), unlike any
/// quantile sketch, and ROC AUC and calibration only need the scores' order and ties. With at
/// most 4 decimals (NannyML's datasets have 2) each score has its own bin and `bin / 10 000` is
/// the very same `f64` as the parsed score, so metrics are exact; finer scores are rounded to
/// 10⁻⁴ and scores that share a bin count as ties. Stored sparsely (occupied bins only, at most
/// [`SCORE_BIN_COUNT`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// Serialized as `[[bin, count], …]` rather than a map: map keys become strings inside
// internally tagged enums ([`PerformanceProfile`]), which integer keys do not survive.
#[serde(try_from = "Vec<(u16, u64)>", into = "Vec<(u16, u64)>")]
pub struct ScoreHistogram {
    bins: BTreeMap<u16, u64>,
    count: u64,
}

impl ScoreHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bin of a score; scores outside `[0, 1]` or non-finite are an error.
    pub fn bin_of(score: f64) -> Result<u16, StatsError> {
        if !(0.0..=1.0).contains(&score) {
            return Err(StatsError::InvalidInput(
                "score is not a finite number in [0, 1]".into(),
            ));
        }
        // In [0, 10 000] after the range check, so the cast is exact.
        Ok((score * f64::from(SCORE_BINS_PER_UNIT)).round() as u16)
    }

    /// The score a bin stands for: `bin / 10 000`, the same `f64` as a parsed 4-decimal score.
    pub fn score_of(bin: u16) -> f64 {
        f64::from(bin) / f64::from(SCORE_BINS_PER_UNIT)
    }

    /// Records one score.
    pub fn observe(&mut self, score: f64) -> Result<(), StatsError> {
        let bin = Self::bin_of(score)?;
        self.add_bin(bin, 1)
    }

    /// Adds `n` observations to `bin` (for histograms built elsewhere, e.g. from a baseline).
    pub fn add_bin(&mut self, bin: u16, n: u64) -> Result<(), StatsError> {
        if bin > SCORE_BINS_PER_UNIT {
            return Err(StatsError::InvalidInput("score bin out of range".into()));
        }
        let count = checked_count(self.count, n)?;
        if n > 0 {
            *self.bins.entry(bin).or_insert(0) += n;
        }
        self.count = count;
        Ok(())
    }

    /// Merges `other` into `self`. On error `self` is unchanged.
    pub fn merge(&mut self, other: &ScoreHistogram) -> Result<(), StatsError> {
        let count = checked_count(self.count, other.count)?;
        for (b, n) in &other.bins {
            *self.bins.entry(*b).or_insert(0) += n;
        }
        self.count = count;
        Ok(())
    }

    /// Number of scores recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `true` when no score was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of occupied bins.
    pub fn occupied_bins(&self) -> usize {
        self.bins.len()
    }

    /// Count in one bin.
    pub fn get(&self, bin: u16) -> u64 {
        self.bins.get(&bin).copied().unwrap_or(0)
    }

    /// Occupied bins with their counts, in ascending bin order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u16, u64)> + '_ {
        self.bins.iter().map(|(b, n)| (*b, *n))
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(self.bins.len() as u32);
        for (b, n) in &self.bins {
            w.u32(u32::from(*b));
            w.u64(*n);
        }
    }

    fn decode(r: &mut Reader<'_>, what: &str) -> Result<Self, StatsError> {
        let n = r.u32(what)?;
        if n as usize > SCORE_BIN_COUNT {
            return Err(corrupt(format!("{what}: more bins than possible")));
        }
        let mut bins = Vec::new();
        for _ in 0..n {
            let b = u16::try_from(r.u32(what)?)
                .map_err(|_| corrupt(format!("{what}: bin out of range")))?;
            bins.push((b, r.u64(what)?));
        }
        Self::try_from(bins)
    }
}

impl From<ScoreHistogram> for Vec<(u16, u64)> {
    fn from(h: ScoreHistogram) -> Self {
        h.bins.into_iter().collect()
    }
}

impl TryFrom<Vec<(u16, u64)>> for ScoreHistogram {
    type Error = StatsError;

    /// Bins must be strictly ascending (one encoding per histogram), in range, with non-zero
    /// counts whose total stays within [`MAX_COUNT`].
    fn try_from(entries: Vec<(u16, u64)>) -> Result<Self, StatsError> {
        if entries.len() > SCORE_BIN_COUNT {
            return Err(corrupt("more score bins than possible"));
        }
        let mut bins = BTreeMap::new();
        let mut count = 0u64;
        let mut previous: Option<u16> = None;
        for (b, n) in entries {
            if previous.is_some_and(|p| p >= b) {
                return Err(corrupt("score bins are not strictly ascending"));
            }
            previous = Some(b);
            if b > SCORE_BINS_PER_UNIT {
                return Err(corrupt("score bin out of range"));
            }
            if n == 0 {
                return Err(corrupt("score bin with zero count"));
            }
            count = checked_count(count, n).map_err(|_| corrupt("score counts overflow"))?;
            bins.insert(b, n);
        }
        Ok(Self { bins, count })
    }
}

/// `a + b`, refusing totals above [`MAX_COUNT`].
fn checked_count(a: u64, b: u64) -> Result<u64, StatsError> {
    a.checked_add(b)
        .filter(|c| *c <= MAX_COUNT)
        .ok_or_else(|| corrupt("observation count exceeds the supported maximum"))
}

/// ROC AUC of scores of positive rows against scores of negative rows: the Mann–Whitney
/// statistic with ties counted as 1/2, computed in integers (exact up to the final division).
/// `None` unless both histograms hold scores.
pub fn roc_auc(positive: &ScoreHistogram, negative: &ScoreHistogram) -> Option<f64> {
    if positive.is_empty() || negative.is_empty() {
        return None;
    }
    let mut negatives = negative.bins.iter().peekable();
    let mut below: u128 = 0;
    // Twice the U statistic, so that ties (counted 1/2) stay integral. Counts are ≤ 2^62, so
    // the sum stays below 2^126.
    let mut twice_u: u128 = 0;
    for (b, p) in &positive.bins {
        while let Some((nb, nc)) = negatives.peek() {
            if *nb < b {
                below += u128::from(**nc);
                negatives.next();
            } else {
                break;
            }
        }
        let tied = match negatives.peek() {
            Some((nb, nc)) if *nb == b => u128::from(**nc),
            _ => 0,
        };
        twice_u += u128::from(*p) * (2 * below + tied);
    }
    let pairs = 2 * u128::from(positive.count) * u128::from(negative.count);
    Some(twice_u as f64 / pairs as f64)
}

/// Clipped log-loss term −ln(clip(p)) of the probability given to the actual outcome.
fn log_loss_term(p: f64) -> f64 {
    -p.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON).ln()
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

// ---------------------------------------------------------------------------------------------
// Binary classification
// ---------------------------------------------------------------------------------------------

/// Confusion counts of a binary classifier (positive class = `true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryConfusion {
    /// Actual positive, predicted positive.
    pub tp: u64,
    /// Actual negative, predicted positive.
    pub fp: u64,
    /// Actual negative, predicted negative.
    pub tn: u64,
    /// Actual positive, predicted negative.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl BinaryConfusion {
    /// All rows.
    pub fn rows(&self) -> u64 {
        // Saturating: the fields are public, so a caller-built value may hold anything.
        self.tp
            .saturating_add(self.fp)
            .saturating_add(self.tn)
            .saturating_add(self.fn_)
    }
}

/// Mergeable summary of a labelled binary classifier: confusion counts, the exact sum of log
/// losses and the score histograms of actual positives and actual negatives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BinaryRaw")]
pub struct BinaryPerformance {
    confusion: BinaryConfusion,
    log_loss_sum: ExactSum,
    positive_scores: ScoreHistogram,
    negative_scores: ScoreHistogram,
}

#[derive(Deserialize)]
struct BinaryRaw {
    confusion: BinaryConfusion,
    log_loss_sum: ExactSum,
    positive_scores: ScoreHistogram,
    negative_scores: ScoreHistogram,
}

impl TryFrom<BinaryRaw> for BinaryPerformance {
    type Error = StatsError;

    fn try_from(raw: BinaryRaw) -> Result<Self, StatsError> {
        let p = BinaryPerformance {
            confusion: raw.confusion,
            log_loss_sum: raw.log_loss_sum,
            positive_scores: raw.positive_scores,
            negative_scores: raw.negative_scores,
        };
        p.validate()?;
        Ok(p)
    }
}

impl BinaryPerformance {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one labelled prediction. `score` is the model's probability of the positive
    /// class, if it outputs one; rows without a score count in the confusion matrix only.
    /// On error (score outside `[0, 1]`, count cap) nothing is recorded.
    pub fn observe(
        &mut self,
        actual_positive: bool,
        predicted_positive: bool,
        score: Option<f64>,
    ) -> Result<(), StatsError> {
        let bin = score.map(ScoreHistogram::bin_of).transpose()?;
        checked_count(self.confusion.rows(), 1)?;
        let c = &mut self.confusion;
        match (actual_positive, predicted_positive) {
            (true, true) => c.tp += 1,
            (false, true) => c.fp += 1,
            (false, false) => c.tn += 1,
            (true, false) => c.fn_ += 1,
        }
        if let (Some(p), Some(bin)) = (score, bin) {
            // 1 − p is what sklearn's binary log_loss computes for the negative column.
            let term = if actual_positive {
                log_loss_term(p)
            } else {
                log_loss_term(1.0 - p)
            };
            self.log_loss_sum.add(term);
            let hist = if actual_positive {
                &mut self.positive_scores
            } else {
                &mut self.negative_scores
            };
            // Cannot fail: the histogram holds at most as many scores as the confusion rows.
            hist.add_bin(bin, 1)?;
        }
        Ok(())
    }

    /// Merges `other` into `self`. On error `self` is unchanged.
    pub fn merge(&mut self, other: &BinaryPerformance) -> Result<(), StatsError> {
        checked_count(self.confusion.rows(), other.confusion.rows())?;
        let mut positive = self.positive_scores.clone();
        positive.merge(&other.positive_scores)?;
        let mut negative = self.negative_scores.clone();
        negative.merge(&other.negative_scores)?;
        let (a, b) = (&mut self.confusion, &other.confusion);
        a.tp += b.tp;
        a.fp += b.fp;
        a.tn += b.tn;
        a.fn_ += b.fn_;
        self.log_loss_sum.merge(&other.log_loss_sum);
        self.positive_scores = positive;
        self.negative_scores = negative;
        Ok(())
    }

    /// All labelled rows.
    pub fn rows(&self) -> u64 {
        self.confusion.rows()
    }

    /// Rows that came with a score.
    pub fn scored_rows(&self) -> u64 {
        self.positive_scores.count + self.negative_scores.count
    }

    /// Confusion counts.
    pub fn confusion(&self) -> BinaryConfusion {
        self.confusion
    }

    /// Scores of actual positives.
    pub fn positive_scores(&self) -> &ScoreHistogram {
        &self.positive_scores
    }

    /// Scores of actual negatives.
    pub fn negative_scores(&self) -> &ScoreHistogram {
        &self.negative_scores
    }

    /// ROC AUC over the scored rows; `None` unless both classes have scored rows.
    pub fn roc_auc(&self) -> Option<f64> {
        roc_auc(&self.positive_scores, &self.negative_scores)
    }

    /// Mean clipped log loss over the scored rows; `None` without scored rows.
    pub fn log_loss(&self) -> Option<f64> {
        let n = self.scored_rows();
        (n > 0)
            .then(|| self.log_loss_sum.to_f64() / n as f64)
            .and_then(finite)
    }

    /// All binary metrics.
    pub fn metrics(&self) -> BinaryMetrics {
        let c = self.confusion;
        let rows = c.rows();
        let some = |x: f64| (rows > 0).then_some(x);
        BinaryMetrics {
            rows,
            scored_rows: self.scored_rows(),
            confusion: c,
            accuracy: some(ratio(c.tp + c.tn, rows)),
            precision: some(ratio(c.tp, c.tp + c.fp)),
            recall: some(ratio(c.tp, c.tp + c.fn_)),
            f1: some(ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn_)),
            roc_auc: self.roc_auc(),
            log_loss: self.log_loss(),
        }
    }

    fn validate(&self) -> Result<(), StatsError> {
        let c = self.confusion;
        [c.tp, c.fp, c.tn, c.fn_]
            .into_iter()
            .try_fold(0u64, checked_count)
            .map_err(|_| corrupt("binary confusion counts exceed the supported maximum"))?;
        if self.positive_scores.count > c.tp + c.fn_ || self.negative_scores.count > c.tn + c.fp {
            return Err(corrupt("more scores than labelled rows"));
        }
        validate_loss_sum(&self.log_loss_sum, self.scored_rows())
    }

    fn encode(&self, w: &mut Writer) {
        let c = self.confusion;
        for v in [c.tp, c.fp, c.tn, c.fn_] {
            w.u64(v);
        }
        self.log_loss_sum.encode(w);
        self.positive_scores.encode(w);
        self.negative_scores.encode(w);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, StatsError> {
        let confusion = BinaryConfusion {
            tp: r.u64("tp")?,
            fp: r.u64("fp")?,
            tn: r.u64("tn")?,
            fn_: r.u64("fn")?,
        };
        let p = Self {
            confusion,
            log_loss_sum: ExactSum::decode(r, "log-loss sum")?,
            positive_scores: ScoreHistogram::decode(r, "positive scores")?,
            negative_scores: ScoreHistogram::decode(r, "negative scores")?,
        };
        p.validate()?;
        Ok(p)
    }
}

/// A log-loss sum is non-negative, and zero without scored rows.
fn validate_loss_sum(sum: &ExactSum, scored: u64) -> Result<(), StatsError> {
    if sum.is_negative() || (scored == 0 && !sum.is_zero()) {
        return Err(corrupt("log-loss sum inconsistent with the scored rows"));
    }
    Ok(())
}

/// Metrics of a binary classifier. Rates are `None` only for an empty summary; an empty
/// denominator gives 0 (sklearn's `zero_division` default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    /// Labelled rows.
    pub rows: u64,
    /// Labelled rows with a score (what ROC AUC and log loss describe).
    pub scored_rows: u64,
    /// Confusion counts.
    pub confusion: BinaryConfusion,
    /// (tp + tn) / rows.
    pub accuracy: Option<f64>,
    /// tp / (tp + fp).
    pub precision: Option<f64>,
    /// tp / (tp + fn).
    pub recall: Option<f64>,
    /// 2·tp / (2·tp + fp + fn).
    pub f1: Option<f64>,
    /// ROC AUC on the binned scores; `None` without both classes among scored rows.
    pub roc_auc: Option<f64>,
    /// Mean clipped log loss; `None` without scored rows.
    pub log_loss: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Multiclass classification
// ---------------------------------------------------------------------------------------------

/// Per-class score histograms for one-vs-rest ROC AUC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ClassScores {
    /// This class's score on rows whose actual class is this class.
    positive: ScoreHistogram,
    /// This class's score on all other rows.
    negative: ScoreHistogram,
}

/// Mergeable summary of a labelled multiclass classifier: the confusion matrix over class
/// names, the exact sum of log losses, and per class the histograms of its probability on rows
/// of that class and on the others (one-vs-rest ROC AUC). At most [`MAX_CLASSES`] classes and
/// [`MAX_TOTAL_SCORE_BINS`] occupied bins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MulticlassRaw")]
pub struct MulticlassPerformance {
    /// actual → predicted → count (no zero counts).
    confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// Rows that came with class probabilities.
    scored_rows: u64,
    log_loss_sum: ExactSum,
    scores: BTreeMap<String, ClassScores>,
    /// Every class named anywhere above; derived, rebuilt on decode.
    #[serde(skip)]
    classes: BTreeSet<String>,
}

#[derive(Deserialize)]
struct MulticlassRaw {
    confusion: BTreeMap<String, BTreeMap<String, u64>>,
    scored_rows: u64,
    log_loss_sum: ExactSum,
    scores: BTreeMap<String, ClassScores>,
}

impl TryFrom<MulticlassRaw> for MulticlassPerformance {
    type Error = StatsError;

    fn try_from(raw: MulticlassRaw) -> Result<Self, StatsError> {
        let mut p = MulticlassPerformance {
            confusion: raw.confusion,
            scored_rows: raw.scored_rows,
            log_loss_sum: raw.log_loss_sum,
            scores: raw.scores,
            classes: BTreeSet::new(),
        };
        p.rebuild_classes();
        p.validate()?;
        Ok(p)
    }
}

impl MulticlassPerformance {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one labelled prediction. `class_scores`, if the model outputs probabilities, is
    /// one `(class, probability)` per class; rows should name every class (as sklearn requires
    /// one column per class): a class missing from a row is left out of that class's ROC AUC,
    /// and an actual class without a probability counts as probability 0 in the log loss.
    /// Probabilities are used as given (not renormalised). On error (more than
    /// [`MAX_CLASSES`] classes, a probability outside `[0, 1]`, a class named twice, the bin
    /// cap) nothing is recorded.
    pub fn observe(
        &mut self,
        actual: &str,
        predicted: &str,
        class_scores: Option<&[(&str, f64)]>,
    ) -> Result<(), StatsError> {
        checked_count(self.rows(), 1)?;
        let mut bins: Vec<(&str, u16)> = Vec::new();
        if let Some(scores) = class_scores {
            let mut seen = BTreeSet::new();
            for (class, p) in scores {
                if !seen.insert(*class) {
                    return Err(StatsError::InvalidInput(
                        "a class is named twice in one row's probabilities".into(),
                    ));
                }
                bins.push((*class, ScoreHistogram::bin_of(*p)?));
            }
        }
        let new_classes: BTreeSet<&str> = [actual, predicted]
            .into_iter()
            .chain(bins.iter().map(|(c, _)| *c))
            .filter(|c| !self.classes.contains(*c))
            .collect();
        if self.classes.len() + new_classes.len() > MAX_CLASSES {
            return Err(too_many_classes());
        }
        let new_bins = bins
            .iter()
            .filter(|(class, bin)| {
                self.scores.get(*class).is_none_or(|s| {
                    let h = if *class == actual {
                        &s.positive
                    } else {
                        &s.negative
                    };
                    h.get(*bin) == 0
                })
            })
            .count();
        if self.total_bins() + new_bins > MAX_TOTAL_SCORE_BINS {
            return Err(too_many_bins());
        }

        for c in new_classes {
            self.classes.insert(c.to_owned());
        }
        *self
            .confusion
            .entry(actual.to_owned())
            .or_default()
            .entry(predicted.to_owned())
            .or_insert(0) += 1;
        if let Some(scores) = class_scores {
            self.scored_rows += 1;
            let p_actual = scores
                .iter()
                .find(|(c, _)| *c == actual)
                .map_or(0.0, |(_, p)| *p);
            self.log_loss_sum.add(log_loss_term(p_actual));
            for (class, bin) in bins {
                let s = self.scores.entry(class.to_owned()).or_default();
                let h = if class == actual {
                    &mut s.positive
                } else {
                    &mut s.negative
                };
                // Cannot fail: bounded by the row count checked above.
                h.add_bin(bin, 1)?;
            }
        }
        Ok(())
    }

    /// Merges `other` into `self`. On error (class or bin cap, count cap) `self` is unchanged.
    pub fn merge(&mut self, other: &MulticlassPerformance) -> Result<(), StatsError> {
        checked_count(self.rows(), other.rows())?;
        if self.classes.union(&other.classes).count() > MAX_CLASSES {
            return Err(too_many_classes());
        }
        let mut merged = self.clone();
        for (actual, row) in &other.confusion {
            let mine = merged.confusion.entry(actual.clone()).or_default();
            for (predicted, n) in row {
                *mine.entry(predicted.clone()).or_insert(0) += n;
            }
        }
        merged.scored_rows += other.scored_rows;
        merged.log_loss_sum.merge(&other.log_loss_sum);
        for (class, s) in &other.scores {
            let mine = merged.scores.entry(class.clone()).or_default();
            mine.positive.merge(&s.positive)?;
            mine.negative.merge(&s.negative)?;
        }
        merged.classes.extend(other.classes.iter().cloned());
        if merged.total_bins() > MAX_TOTAL_SCORE_BINS {
            return Err(too_many_bins());
        }
        *self = merged;
        Ok(())
    }

    /// All labelled rows.
    pub fn rows(&self) -> u64 {
        // Bounded by MAX_COUNT (checked on observe, merge and decode).
        self.confusion.values().flat_map(|r| r.values()).sum()
    }

    /// Rows that came with class probabilities.
    pub fn scored_rows(&self) -> u64 {
        self.scored_rows
    }

    /// Every class seen (as actual, predicted or scored), sorted.
    pub fn classes(&self) -> Vec<String> {
        self.classes.iter().cloned().collect()
    }

    /// Mean clipped log loss over the scored rows; `None` without scored rows.
    pub fn log_loss(&self) -> Option<f64> {
        (self.scored_rows > 0)
            .then(|| self.log_loss_sum.to_f64() / self.scored_rows as f64)
            .and_then(finite)
    }

    /// One-vs-rest ROC AUC of one class; `None` unless scored rows of both that class and
    /// others exist.
    pub fn class_roc_auc(&self, class: &str) -> Option<f64> {
        self.scores
            .get(class)
            .and_then(|s| roc_auc(&s.positive, &s.negative))
    }

    /// All multiclass metrics.
    pub fn metrics(&self) -> MulticlassMetrics {
        // sklearn's labels for precision/recall/F1: the sorted union of actual and predicted.
        let labels: BTreeSet<&String> = self
            .confusion
            .iter()
            .flat_map(|(a, row)| std::iter::once(a).chain(row.keys()))
            .collect();
        let labels: Vec<&String> = labels.into_iter().collect();
        let count = |a: &str, p: &str| -> u64 {
            self.confusion
                .get(a)
                .and_then(|r| r.get(p))
                .copied()
                .unwrap_or(0)
        };
        let rows = self.rows();
        let confusion: Vec<Vec<u64>> = labels
            .iter()
            .map(|a| labels.iter().map(|p| count(a, p)).collect())
            .collect();
        let per_class: Vec<ClassMetrics> = labels
            .iter()
            .map(|c| {
                let tp = count(c, c);
                let support: u64 = self.confusion.get(*c).map_or(0, |r| r.values().sum());
                let predicted: u64 = self.confusion.values().filter_map(|r| r.get(*c)).sum();
                ClassMetrics {
                    class: (*c).clone(),
                    support,
                    predicted,
                    precision: ratio(tp, predicted),
                    recall: ratio(tp, support),
                    f1: ratio(2 * tp, support + predicted),
                    roc_auc: self.class_roc_auc(c),
                }
            })
            .collect();
        let mean = |f: fn(&ClassMetrics) -> f64| -> Option<f64> {
            (!per_class.is_empty())
                .then(|| per_class.iter().map(f).sum::<f64>() / per_class.len() as f64)
        };
        // sklearn's macro OvR AUC averages over the classes present in y_true; it is undefined
        // (an error there) when any of them lacks scored positives or negatives.
        let present: Vec<&ClassMetrics> = per_class.iter().filter(|m| m.support > 0).collect();
        let macro_roc_auc = if self.scored_rows == 0 || present.len() < 2 {
            None
        } else {
            present
                .iter()
                .map(|m| m.roc_auc)
                .sum::<Option<f64>>()
                .map(|s| s / present.len() as f64)
        };
        let correct: u64 = labels.iter().map(|c| count(c, c)).sum();
        MulticlassMetrics {
            rows,
            scored_rows: self.scored_rows,
            classes: labels.iter().map(|c| (*c).clone()).collect(),
            accuracy: (rows > 0).then(|| ratio(correct, rows)),
            macro_precision: mean(|m| m.precision),
            macro_recall: mean(|m| m.recall),
            macro_f1: mean(|m| m.f1),
            macro_roc_auc,
            log_loss: self.log_loss(),
            confusion,
            per_class,
        }
    }

    fn total_bins(&self) -> usize {
        self.scores
            .values()
            .map(|s| s.positive.occupied_bins() + s.negative.occupied_bins())
            .sum()
    }

    fn rebuild_classes(&mut self) {
        let mut classes = BTreeSet::new();
        for (a, row) in &self.confusion {
            classes.insert(a.clone());
            classes.extend(row.keys().cloned());
        }
        classes.extend(self.scores.keys().cloned());
        self.classes = classes;
    }

    fn validate(&self) -> Result<(), StatsError> {
        if self.classes.len() > MAX_CLASSES {
            return Err(corrupt("more classes than supported"));
        }
        let mut rows = 0u64;
        for row in self.confusion.values() {
            if row.is_empty() {
                return Err(corrupt("empty confusion row"));
            }
            for n in row.values() {
                if *n == 0 {
                    return Err(corrupt("confusion cell with zero count"));
                }
                rows = checked_count(rows, *n)
                    .map_err(|_| corrupt("confusion counts exceed the supported maximum"))?;
            }
        }
        if self.scored_rows > rows {
            return Err(corrupt("more scored rows than rows"));
        }
        for (class, s) in &self.scores {
            let support: u64 = self.confusion.get(class).map_or(0, |r| r.values().sum());
            let scored = s.positive.count.checked_add(s.negative.count);
            if s.positive.count > support || scored.is_none_or(|n| n > self.scored_rows) {
                return Err(corrupt(
                    "class scores inconsistent with the confusion counts",
                ));
            }
        }
        if self.total_bins() > MAX_TOTAL_SCORE_BINS {
            return Err(corrupt("more score bins than supported"));
        }
        validate_loss_sum(&self.log_loss_sum, self.scored_rows)
    }

    fn encode(&self, w: &mut Writer) {
        let classes: Vec<&String> = self.classes.iter().collect();
        let index = |c: &str| classes.binary_search_by(|x| x.as_str().cmp(c)).unwrap_or(0) as u32;
        w.u32(classes.len() as u32);
        for c in &classes {
            w.blob(c.as_bytes());
        }
        let cells: Vec<(u32, u32, u64)> = self
            .confusion
            .iter()
            .flat_map(|(a, row)| row.iter().map(move |(p, n)| (index(a), index(p), *n)))
            .collect();
        w.u32(cells.len() as u32);
        for (a, p, n) in cells {
            w.u32(a);
            w.u32(p);
            w.u64(n);
        }
        w.u64(self.scored_rows);
        self.log_loss_sum.encode(w);
        let empty = ClassScores::default();
        for c in &classes {
            let s = self.scores.get(*c).unwrap_or(&empty);
            s.positive.encode(w);
            s.negative.encode(w);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, StatsError> {
        let n = r.u32("class count")? as usize;
        if n > MAX_CLASSES {
            return Err(corrupt("more classes than supported"));
        }
        let mut classes: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let name = std::str::from_utf8(r.blob("class name")?)
                .map_err(|_| corrupt("class name is not valid UTF-8"))?;
            if classes.last().is_some_and(|p| p.as_str() >= name) {
                return Err(corrupt("class names are not strictly ordered"));
            }
            classes.push(name.to_owned());
        }
        let cells = r.u32("confusion entry count")? as usize;
        if cells > n * n {
            return Err(corrupt("more confusion cells than class pairs"));
        }
        let mut confusion: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut previous: Option<(u32, u32)> = None;
        for _ in 0..cells {
            let a = r.u32("confusion actual")?;
            let p = r.u32("confusion predicted")?;
            let count = r.u64("confusion count")?;
            if previous.is_some_and(|q| q >= (a, p)) {
                return Err(corrupt("confusion cells are not strictly ordered"));
            }
            previous = Some((a, p));
            let name = |i: u32| {
                classes
                    .get(i as usize)
                    .cloned()
                    .ok_or_else(|| corrupt("confusion cell names an unknown class"))
            };
            confusion
                .entry(name(a)?)
                .or_default()
                .insert(name(p)?, count);
        }
        let scored_rows = r.u64("scored rows")?;
        let log_loss_sum = ExactSum::decode(r, "log-loss sum")?;
        let mut scores = BTreeMap::new();
        for c in &classes {
            let s = ClassScores {
                positive: ScoreHistogram::decode(r, "class positive scores")?,
                negative: ScoreHistogram::decode(r, "class negative scores")?,
            };
            if !s.positive.is_empty() || !s.negative.is_empty() {
                scores.insert(c.clone(), s);
            }
        }
        let mut p = Self {
            confusion,
            scored_rows,
            log_loss_sum,
            scores,
            classes: BTreeSet::new(),
        };
        p.rebuild_classes();
        // Every listed class must be named somewhere, or the encoding would not be canonical.
        if p.classes.len() != classes.len() {
            return Err(corrupt("a listed class appears nowhere"));
        }
        p.validate()?;
        Ok(p)
    }
}

fn too_many_classes() -> StatsError {
    StatsError::InvalidInput(format!("more than {MAX_CLASSES} classes"))
}

fn too_many_bins() -> StatsError {
    StatsError::InvalidInput(format!(
        "more than {MAX_TOTAL_SCORE_BINS} occupied score bins across classes"
    ))
}

/// Metrics of one class of a multiclass classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub class: String,
    /// Rows whose actual class is this class.
    pub support: u64,
    /// Rows predicted as this class.
    pub predicted: u64,
    /// tp / predicted (0 if never predicted).
    pub precision: f64,
    /// tp / support (0 if never actual).
    pub recall: f64,
    /// 2·tp / (support + predicted).
    pub f1: f64,
    /// One-vs-rest ROC AUC on the binned scores; `None` without scored rows of both sides.
    pub roc_auc: Option<f64>,
}

/// Metrics of a multiclass classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulticlassMetrics {
    /// Labelled rows.
    pub rows: u64,
    /// Labelled rows with class probabilities.
    pub scored_rows: u64,
    /// Sorted union of actual and predicted classes (sklearn's `unique_labels`).
    pub classes: Vec<String>,
    /// `confusion[i][j]`: rows of actual class `classes[i]` predicted as `classes[j]`.
    pub confusion: Vec<Vec<u64>>,
    /// Share of rows predicted correctly; `None` when empty.
    pub accuracy: Option<f64>,
    /// Unweighted mean of per-class precision.
    pub macro_precision: Option<f64>,
    /// Unweighted mean of per-class recall.
    pub macro_recall: Option<f64>,
    /// Unweighted mean of per-class F1.
    pub macro_f1: Option<f64>,
    /// Unweighted mean of one-vs-rest ROC AUC over classes present as actual; `None` if any
    /// of them lacks scored rows on either side, or fewer than two classes are present.
    pub macro_roc_auc: Option<f64>,
    /// Mean clipped log loss over scored rows.
    pub log_loss: Option<f64>,
    /// Per-class metrics in `classes` order.
    pub per_class: Vec<ClassMetrics>,
}

// ---------------------------------------------------------------------------------------------
// Regression
// ---------------------------------------------------------------------------------------------

/// Mergeable summary of a labelled regression model: exact sums from which MAE, MSE, RMSE,
/// MAPE and R² follow.
///
/// R² needs Σ(y − ȳ)², which is computed as Σy² − (Σy)²/n from exact Σy and exact Σy² (each
/// y² is added as the two halves of an error-free product) in double-double arithmetic, so the
/// cancellation that ruins this formula in plain `f64` costs nothing here: the relative error
/// is about 10⁻³⁰ · (1 + ȳ²/var(y)). Constant targets are detected exactly from the minimum and
/// maximum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RegressionRaw")]
pub struct RegressionPerformance {
    rows: u64,
    min_actual: Option<f64>,
    max_actual: Option<f64>,
    sum_abs_error: ExactSum,
    sum_sq_error: ExactSum,
    sum_abs_pct_error: ExactSum,
    sum_actual: ExactSum,
    sum_actual_sq: ExactSum,
}

#[derive(Deserialize)]
struct RegressionRaw {
    rows: u64,
    min_actual: Option<f64>,
    max_actual: Option<f64>,
    sum_abs_error: ExactSum,
    sum_sq_error: ExactSum,
    sum_abs_pct_error: ExactSum,
    sum_actual: ExactSum,
    sum_actual_sq: ExactSum,
}

impl TryFrom<RegressionRaw> for RegressionPerformance {
    type Error = StatsError;

    fn try_from(raw: RegressionRaw) -> Result<Self, StatsError> {
        let p = RegressionPerformance {
            rows: raw.rows,
            min_actual: raw.min_actual,
            max_actual: raw.max_actual,
            sum_abs_error: raw.sum_abs_error,
            sum_sq_error: raw.sum_sq_error,
            sum_abs_pct_error: raw.sum_abs_pct_error,
            sum_actual: raw.sum_actual,
            sum_actual_sq: raw.sum_actual_sq,
        };
        p.validate()?;
        Ok(p)
    }
}

// Exact sums hold no NaN, and the min/max are validated finite, so equality is an equivalence.
impl Eq for RegressionPerformance {}

impl RegressionPerformance {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one labelled prediction. Non-finite values, and values so large that their
    /// squares or percentage errors overflow `f64` (|v| beyond about 10¹⁵⁴), are an error and
    /// record nothing.
    pub fn observe(&mut self, actual: f64, predicted: f64) -> Result<(), StatsError> {
        checked_count(self.rows, 1)?;
        let error = actual - predicted;
        let abs_error = error.abs();
        let sq_error = error * error;
        let pct_error = abs_error / actual.abs().max(MAPE_EPSILON);
        let (sq_hi, sq_lo) = two_prod(actual, actual);
        let all_finite = [actual, predicted, error, sq_error, pct_error, sq_hi, sq_lo]
            .iter()
            .all(|v| v.is_finite());
        if !all_finite {
            return Err(StatsError::InvalidInput(
                "regression values must be finite and below about 1e154 in magnitude".into(),
            ));
        }
        self.rows += 1;
        self.min_actual = Some(self.min_actual.map_or(actual, |m| m.min(actual)));
        self.max_actual = Some(self.max_actual.map_or(actual, |m| m.max(actual)));
        self.sum_abs_error.add(abs_error);
        self.sum_sq_error.add(sq_error);
        self.sum_abs_pct_error.add(pct_error);
        self.sum_actual.add(actual);
        self.sum_actual_sq.add(sq_hi);
        self.sum_actual_sq.add(sq_lo);
        Ok(())
    }

    /// Merges `other` into `self`. On error `self` is unchanged.
    pub fn merge(&mut self, other: &RegressionPerformance) -> Result<(), StatsError> {
        let rows = checked_count(self.rows, other.rows)?;
        self.rows = rows;
        self.min_actual = combine(self.min_actual, other.min_actual, f64::min);
        self.max_actual = combine(self.max_actual, other.max_actual, f64::max);
        self.sum_abs_error.merge(&other.sum_abs_error);
        self.sum_sq_error.merge(&other.sum_sq_error);
        self.sum_abs_pct_error.merge(&other.sum_abs_pct_error);
        self.sum_actual.merge(&other.sum_actual);
        self.sum_actual_sq.merge(&other.sum_actual_sq);
        Ok(())
    }

    /// Labelled rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// All regression metrics.
    pub fn metrics(&self) -> RegressionMetrics {
        let n = self.rows as f64;
        let mean_of = |s: &ExactSum| (self.rows > 0).then(|| s.to_f64() / n).and_then(finite);
        let mse = mean_of(&self.sum_sq_error);
        RegressionMetrics {
            rows: self.rows,
            mae: mean_of(&self.sum_abs_error),
            mse,
            rmse: mse.map(f64::sqrt),
            mape: mean_of(&self.sum_abs_pct_error),
            r2: self.r2(),
        }
    }

    fn r2(&self) -> Option<f64> {
        if self.rows < 2 {
            // sklearn: "R^2 score is not well-defined with less than two samples" (NaN).
            return None;
        }
        let ss_res = self.sum_sq_error.to_f64();
        if ss_res == 0.0 {
            return Some(1.0);
        }
        if self.min_actual == self.max_actual {
            return Some(0.0);
        }
        let n = self.rows as f64;
        let (s1_hi, s1_lo) = self.sum_actual.to_dd();
        let (s2_hi, s2_lo) = self.sum_actual_sq.to_dd();
        // (Σy)² as double-double, then divided by n (n < 2^53 is exact).
        let (sq_hi, sq_err) = two_prod(s1_hi, s1_hi);
        let sq_lo = sq_err + 2.0 * s1_hi * s1_lo;
        let q_hi = sq_hi / n;
        let rem = (-q_hi).mul_add(n, sq_hi) + sq_lo;
        let q_lo = rem / n;
        // Σy² − (Σy)²/n.
        let (d_hi, d_err) = two_sum(s2_hi, -q_hi);
        let ss_tot = d_hi + (d_err + s2_lo - q_lo);
        if ss_tot.is_nan() || ss_tot <= 0.0 || !ss_res.is_finite() {
            return None;
        }
        finite(1.0 - ss_res / ss_tot)
    }

    fn validate(&self) -> Result<(), StatsError> {
        if self.rows > MAX_COUNT {
            return Err(corrupt("observation count exceeds the supported maximum"));
        }
        let sums = [
            &self.sum_abs_error,
            &self.sum_sq_error,
            &self.sum_abs_pct_error,
            &self.sum_actual,
            &self.sum_actual_sq,
        ];
        match (self.rows, self.min_actual, self.max_actual) {
            (0, None, None) if sums.iter().all(|s| s.is_zero()) => {}
            (r, Some(lo), Some(hi)) if r > 0 && lo.is_finite() && hi.is_finite() && lo <= hi => {}
            _ => return Err(corrupt("regression summary is inconsistent")),
        }
        if self.sum_abs_error.is_negative()
            || self.sum_sq_error.is_negative()
            || self.sum_abs_pct_error.is_negative()
            || self.sum_actual_sq.is_negative()
        {
            return Err(corrupt("negative sum of non-negative terms"));
        }
        Ok(())
    }

    fn encode(&self, w: &mut Writer) {
        w.u64(self.rows);
        w.f64(self.min_actual.unwrap_or(0.0));
        w.f64(self.max_actual.unwrap_or(0.0));
        for s in [
            &self.sum_abs_error,
            &self.sum_sq_error,
            &self.sum_abs_pct_error,
            &self.sum_actual,
            &self.sum_actual_sq,
        ] {
            s.encode(w);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, StatsError> {
        let rows = r.u64("regression rows")?;
        let lo = r.f64("minimum target")?;
        let hi = r.f64("maximum target")?;
        let (min_actual, max_actual) = if rows == 0 {
            if lo != 0.0 || hi != 0.0 {
                return Err(corrupt("target range without rows"));
            }
            (None, None)
        } else {
            (Some(lo), Some(hi))
        };
        let p = Self {
            rows,
            min_actual,
            max_actual,
            sum_abs_error: ExactSum::decode(r, "sum of absolute errors")?,
            sum_sq_error: ExactSum::decode(r, "sum of squared errors")?,
            sum_abs_pct_error: ExactSum::decode(r, "sum of percentage errors")?,
            sum_actual: ExactSum::decode(r, "sum of targets")?,
            sum_actual_sq: ExactSum::decode(r, "sum of squared targets")?,
        };
        p.validate()?;
        Ok(p)
    }
}

fn combine(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(pick(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Metrics of a regression model; `None` when empty (R²: below two rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Labelled rows.
    pub rows: u64,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Mean squared error.
    pub mse: Option<f64>,
    /// Root mean squared error.
    pub rmse: Option<f64>,
    /// Mean of |y − ŷ| / max(|y|, ε) (a fraction, not a percentage, like sklearn).
    pub mape: Option<f64>,
    /// Coefficient of determination.
    pub r2: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Kind-erased profile and its byte format
// ---------------------------------------------------------------------------------------------

/// Which task a performance profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerformanceKind {
    /// Binary classification.
    Binary,
    /// Multiclass classification.
    Multiclass,
    /// Regression.
    Regression,
}

/// A mergeable realized-performance summary for one time bucket (or a merge of many).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PerformanceProfile {
    /// See [`BinaryPerformance`].
    Binary(BinaryPerformance),
    /// See [`MulticlassPerformance`].
    Multiclass(MulticlassPerformance),
    /// See [`RegressionPerformance`].
    Regression(RegressionPerformance),
}

impl PerformanceProfile {
    /// An empty profile of the given kind.
    pub fn new(kind: PerformanceKind) -> Self {
        match kind {
            PerformanceKind::Binary => Self::Binary(BinaryPerformance::new()),
            PerformanceKind::Multiclass => Self::Multiclass(MulticlassPerformance::new()),
            PerformanceKind::Regression => Self::Regression(RegressionPerformance::new()),
        }
    }

    /// The profile's kind.
    pub fn kind(&self) -> PerformanceKind {
        match self {
            Self::Binary(_) => PerformanceKind::Binary,
            Self::Multiclass(_) => PerformanceKind::Multiclass,
            Self::Regression(_) => PerformanceKind::Regression,
        }
    }

    /// Labelled rows.
    pub fn rows(&self) -> u64 {
        match self {
            Self::Binary(p) => p.rows(),
            Self::Multiclass(p) => p.rows(),
            Self::Regression(p) => p.rows(),
        }
    }

    /// Merges `other` into `self`; kinds must match. On error `self` is unchanged.
    pub fn merge(&mut self, other: &PerformanceProfile) -> Result<(), StatsError> {
        match (self, other) {
            (Self::Binary(a), Self::Binary(b)) => a.merge(b),
            (Self::Multiclass(a), Self::Multiclass(b)) => a.merge(b),
            (Self::Regression(a), Self::Regression(b)) => a.merge(b),
            _ => Err(StatsError::KindMismatch),
        }
    }

    /// The profile's metrics.
    pub fn metrics(&self) -> PerformanceMetrics {
        match self {
            Self::Binary(p) => PerformanceMetrics::Binary(p.metrics()),
            Self::Multiclass(p) => PerformanceMetrics::Multiclass(p.metrics()),
            Self::Regression(p) => PerformanceMetrics::Regression(p.metrics()),
        }
    }

    /// Encodes the profile in the current format (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.bytes(&PERFORMANCE_MAGIC);
        w.u8(PERFORMANCE_FORMAT_VERSION);
        match self {
            Self::Binary(p) => {
                w.u8(KIND_BINARY);
                p.encode(&mut w);
            }
            Self::Multiclass(p) => {
                w.u8(KIND_MULTICLASS);
                p.encode(&mut w);
            }
            Self::Regression(p) => {
                w.u8(KIND_REGRESSION);
                p.encode(&mut w);
            }
        }
        w.finish()
    }

    /// Decodes bytes written by [`to_bytes`](Self::to_bytes). Truncated, hostile or
    /// inconsistent input yields an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StatsError> {
        let mut r = Reader::new(bytes);
        if r.take(PERFORMANCE_MAGIC.len(), "magic")? != PERFORMANCE_MAGIC {
            return Err(corrupt("not a Custos performance profile (bad magic)"));
        }
        let version = r.u8("format version")?;
        if version != PERFORMANCE_FORMAT_VERSION {
            return Err(StatsError::UnsupportedVersion(version));
        }
        let profile = match r.u8("performance kind")? {
            KIND_BINARY => Self::Binary(BinaryPerformance::decode(&mut r)?),
            KIND_MULTICLASS => Self::Multiclass(MulticlassPerformance::decode(&mut r)?),
            KIND_REGRESSION => Self::Regression(RegressionPerformance::decode(&mut r)?),
            other => return Err(corrupt(format!("unknown performance kind code {other}"))),
        };
        r.finish("performance payload")?;
        Ok(profile)
    }
}

/// Metrics of a [`PerformanceProfile`]; serialized with a `"kind"` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PerformanceMetrics {
    /// Binary classification.
    Binary(BinaryMetrics),
    /// Multiclass classification.
    Multiclass(MulticlassMetrics),
    /// Regression.
    Regression(RegressionMetrics),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(values: &[f64]) -> ExactSum {
        let mut s = ExactSum::default();
        for v in values {
            s.add(*v);
        }
        s
    }

    #[test]
    fn exact_sum_is_exact_and_order_free() {
        let values = [1e300, 1.0, -1e300, 1e-300, 5e-324, -2.5, 0.1];
        let s = sum_of(&values);
        let mut reversed = values;
        reversed.reverse();
        assert_eq!(s, sum_of(&reversed));
        // 1 − 2.5 + 0.1 + 1e-300 + 5e-324 rounds to 0.1 − 1.5.
        assert_eq!(s.to_f64(), 0.1 - 1.5);
        assert!(s.is_negative());
        let (hi, lo) = sum_of(&[0.1, 0.2]).to_dd();
        assert_eq!(hi, 0.30000000000000004);
        assert!(lo != 0.0);
    }

    #[test]
    fn exact_sum_extremes_and_cancellation() {
        let s = sum_of(&[f64::MAX, f64::MAX, -f64::MAX]);
        assert_eq!(s.to_f64(), f64::MAX);
        assert_eq!(sum_of(&[f64::MAX, f64::MAX]).to_f64(), f64::INFINITY);
        assert_eq!(sum_of(&[5e-324, 5e-324]).to_f64(), 1e-323);
        // Python: math.fsum([0.3, -0.1, -0.2]).
        assert_eq!(sum_of(&[0.3, -0.1, -0.2]).to_f64(), -2.7755575615628914e-17);
        assert!(sum_of(&[1.0, -1.0]).is_zero());
    }

    #[test]
    fn exact_sum_sparse_form_round_trips() {
        let s = sum_of(&[-3.25, 1e200, -7e-310]);
        let sparse: Vec<(u8, i64)> = s.clone().into();
        assert_eq!(ExactSum::try_from(sparse).unwrap(), s);
        assert!(ExactSum::try_from(vec![(3, 0)]).is_err());
        assert!(ExactSum::try_from(vec![(3, 1 << 32)]).is_err());
        assert!(ExactSum::try_from(vec![(69, 5)]).is_err());
        assert!(ExactSum::try_from(vec![(70, 1)]).is_err());
        assert!(ExactSum::try_from(vec![(4, 1), (4, 2)]).is_err());
    }

    #[test]
    fn ldexp_reaches_subnormals() {
        assert_eq!(ldexp(1.0, -1074), 5e-324);
        assert_eq!(ldexp((1u64 << 14) as f64, -1088), 5e-324);
        assert_eq!(ldexp(1.0, 1023), 2f64.powi(1023));
        assert_eq!(ldexp(1.0, 1024), f64::INFINITY);
    }
}
