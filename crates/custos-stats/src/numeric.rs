//! Numeric feature profile: a KLL quantile sketch plus exact counters and streaming moments.
//!
//! Owns: [`NumericProfile`] (observe, merge, summary numbers) and its payload encoding inside the
//! profile envelope. Must not: feed NaN or ±inf into KLL (they are counted as `invalid` instead,
//! because a single infinity would own an end bin and NaN has no order), compute drift (that is
//! `drift.rs`), or write the envelope header (that is `profile.rs`).
//!
//! Moments are kept as (n, mean, M2): Welford's update per observation and Chan et al.'s parallel
//! formula on merge, so merging many bucket profiles gives the same mean/variance as one pass over
//! all data up to rounding. `n` is always the KLL's `n`, i.e. the number of finite values.

use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};

use crate::MAX_COUNT;
use crate::codec::{Reader, Writer, corrupt};
use crate::error::StatsError;

/// KLL accuracy parameter. k = 200 gives ~1.65 % normalized rank error (99 % confidence), the
/// datasketches default and what `LIMITS.md` §3.1 measured.
pub const KLL_K: u16 = 200;

pub(crate) type Kll = KllSketch<KllFloat<f64>>;

/// Mergeable profile of one numeric feature.
#[derive(Debug, Clone)]
pub struct NumericProfile {
    count: u64,
    missing: u64,
    invalid: u64,
    mean: f64,
    m2: f64,
    kll: Kll,
}

impl Default for NumericProfile {
    fn default() -> Self {
        Self::new()
    }
}

impl NumericProfile {
    /// An empty profile.
    pub fn new() -> Self {
        Self {
            count: 0,
            missing: 0,
            invalid: 0,
            mean: 0.0,
            m2: 0.0,
            // `KllSketch::new` is fallible (k range check); `default()` is the same sketch with
            // k = 200 and cannot fail. A unit test pins `default().k() == KLL_K`.
            kll: Kll::default(),
        }
    }

    /// Records one value. NaN and ±inf count as observed but `invalid` and stay out of the sketch
    /// and the moments.
    pub fn observe(&mut self, v: f64) {
        self.count += 1;
        let item = match KllFloat::<f64>::new(v) {
            Ok(item) if v.is_finite() => item,
            _ => {
                self.invalid += 1;
                return;
            }
        };
        self.kll.update(item);
        // Welford: `n` is the KLL's n, already incremented above.
        let n = self.kll.n() as f64;
        let delta = v - self.mean;
        self.mean += delta / n;
        self.m2 += delta * (v - self.mean);
    }

    /// Records one missing value (null / absent field).
    pub fn observe_missing(&mut self) {
        self.count += 1;
        self.missing += 1;
    }

    /// Merges `other` into `self`. On error `self` is unchanged.
    pub fn merge(&mut self, other: &NumericProfile) -> Result<(), StatsError> {
        let count = self
            .count
            .checked_add(other.count)
            .filter(|c| *c <= MAX_COUNT)
            .ok_or_else(|| corrupt("merged observation count exceeds the supported maximum"))?;
        let (na, nb) = (self.kll.n(), other.kll.n());
        // KLL checks its own preconditions before touching state, so an error here leaves `self`
        // unchanged, as does returning before this point.
        self.kll
            .merge(&other.kll)
            .map_err(|e| corrupt(format!("KLL merge rejected: {}", e.message())))?;
        self.count = count;
        self.missing += other.missing;
        self.invalid += other.invalid;
        if nb > 0 {
            if na == 0 {
                self.mean = other.mean;
                self.m2 = other.m2;
            } else {
                // Chan, Golub & LeVeque parallel update.
                let (na, nb) = (na as f64, nb as f64);
                let n = na + nb;
                let delta = other.mean - self.mean;
                self.mean += delta * (nb / n);
                self.m2 += other.m2 + delta * delta * (na / n) * nb;
            }
        }
        Ok(())
    }

    /// All observations, including missing and invalid ones.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Observations recorded with [`observe_missing`](Self::observe_missing).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// NaN / ±inf observations.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Finite observations (what the sketch and the moments describe).
    pub fn finite(&self) -> u64 {
        self.kll.n()
    }

    /// Mean of the finite values; `None` if there are none or it overflowed (|values| near
    /// `f64::MAX`).
    pub fn mean(&self) -> Option<f64> {
        (self.kll.n() > 0 && self.mean.is_finite()).then_some(self.mean)
    }

    /// Sample standard deviation (n − 1 denominator, like pandas); `None` below two values.
    pub fn std(&self) -> Option<f64> {
        let n = self.kll.n();
        if n < 2 {
            return None;
        }
        let std = (self.m2.max(0.0) / (n - 1) as f64).sqrt();
        std.is_finite().then_some(std)
    }

    /// Exact minimum of the finite values.
    pub fn min(&self) -> Option<f64> {
        self.kll.min_item().map(|v| **v)
    }

    /// Exact maximum of the finite values.
    pub fn max(&self) -> Option<f64> {
        self.kll.max_item().map(|v| **v)
    }

    /// Approximate quantile (inclusive rank definition) of the finite values; `None` if there are
    /// none or `q` is outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.kll
            .quantile(q, SearchCriteria::Inclusive)
            .ok()
            .flatten()
            .map(KllFloat::into_inner)
    }

    /// The sketch's CDF (share of finite values `<= x`, the inclusive rank) at each point; empty
    /// without finite values. Non-finite points rank as `0` below and `1` above everything.
    pub fn cdf(&self, points: &[f64]) -> Vec<f64> {
        if self.kll.is_empty() {
            return Vec::new();
        }
        let view = self.kll.sorted_view();
        points
            .iter()
            .map(|x| {
                KllFloat::<f64>::new(*x).map_or(if *x > 0.0 { 1.0 } else { 0.0 }, |x| {
                    view.rank(&x, SearchCriteria::Inclusive).unwrap_or(0.0)
                })
            })
            .collect()
    }

    pub(crate) fn quantiles(&self, qs: &[f64]) -> Vec<(f64, f64)> {
        match self.kll.quantiles(qs, SearchCriteria::Inclusive) {
            Ok(Some(values)) => qs
                .iter()
                .zip(values)
                .map(|(q, v)| (*q, v.into_inner()))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn kll(&self) -> &Kll {
        &self.kll
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.count);
        w.u64(self.missing);
        w.u64(self.invalid);
        w.f64(self.mean);
        w.f64(self.m2);
        w.blob(&self.kll.serialize());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, StatsError> {
        let count = r.u64("numeric count")?;
        let missing = r.u64("numeric missing count")?;
        let invalid = r.u64("numeric invalid count")?;
        let mean = r.f64("numeric mean")?;
        let m2 = r.f64("numeric M2")?;
        let kll_bytes = r.blob("KLL sketch")?;
        if count > MAX_COUNT {
            return Err(corrupt("observation count exceeds the supported maximum"));
        }
        let kll = Kll::deserialize(kll_bytes)
            .map_err(|e| corrupt(format!("KLL sketch image rejected: {}", e.message())))?;
        if kll.k() != KLL_K {
            return Err(corrupt(format!(
                "KLL sketch has k = {}, expected {KLL_K}",
                kll.k()
            )));
        }
        let finite_bounds = kll.min_item().is_none_or(|v| v.is_finite())
            && kll.max_item().is_none_or(|v| v.is_finite());
        if !finite_bounds {
            return Err(corrupt("KLL sketch holds non-finite items"));
        }
        if missing
            .checked_add(invalid)
            .and_then(|s| s.checked_add(kll.n()))
            != Some(count)
        {
            return Err(corrupt(
                "counts disagree: missing + invalid + sketch n != count",
            ));
        }
        if kll.n() == 0 && (mean != 0.0 || m2 != 0.0) {
            return Err(corrupt("moments present without finite observations"));
        }
        if m2 < 0.0 {
            return Err(corrupt("negative sum of squared deviations"));
        }
        Ok(Self {
            count,
            missing,
            invalid,
            mean,
            m2,
            kll,
        })
    }
}

/// The KLL sketches of a reference and a current profile, refusing a side without finite values:
/// every comparison of two numeric profiles starts here.
pub(crate) fn non_empty_pair<'a>(
    reference: &'a NumericProfile,
    current: &'a NumericProfile,
) -> Result<(&'a Kll, &'a Kll), StatsError> {
    let (r_kll, c_kll) = (reference.kll(), current.kll());
    if r_kll.is_empty() {
        return Err(StatsError::EmptyReference);
    }
    if c_kll.is_empty() {
        return Err(StatsError::EmptyCurrent);
    }
    Ok((r_kll, c_kll))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sketch_uses_documented_k() {
        assert_eq!(Kll::default().k(), KLL_K);
    }

    #[test]
    fn non_finite_values_are_invalid_not_sketched() {
        let mut p = NumericProfile::new();
        for v in [1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 3.0] {
            p.observe(v);
        }
        p.observe_missing();
        assert_eq!(p.count(), 6);
        assert_eq!(p.invalid(), 3);
        assert_eq!(p.missing(), 1);
        assert_eq!(p.finite(), 2);
        assert_eq!(p.mean(), Some(2.0));
        assert_eq!(p.min(), Some(1.0));
        assert_eq!(p.max(), Some(3.0));
        // Sample std of {1, 3} is sqrt(2).
        assert!((p.std().unwrap() - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn empty_profile_has_no_moments() {
        let p = NumericProfile::new();
        assert_eq!(p.mean(), None);
        assert_eq!(p.std(), None);
        assert_eq!(p.min(), None);
        assert!(p.quantiles(&[0.5]).is_empty());
    }
}
