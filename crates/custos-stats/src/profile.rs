//! The kind-erased feature profile, its versioned byte envelope and its summary.
//!
//! Owns: [`FeatureProfile`], [`ProfileKind`], [`ProfileSummary`] and the storage format
//! `b"CSP" | format version u8 | kind u8 | payload`. Must not: change the meaning of a format
//! version once written (add a new version instead and keep decoding the old one), panic on any
//! input to [`FeatureProfile::from_bytes`], or do drift math.
//!
//! Format version 1 payloads (all integers little-endian, blobs are `u32` length + bytes):
//! * numeric (kind 1): count u64, missing u64, invalid u64, mean f64, M2 f64, KLL image blob
//!   (datasketches compact format, `KllFloat<f64>`, k = 200).
//! * categorical (kind 2): count u64, missing u64, mode u8, then for mode 0 (exact) an entry
//!   count u32 and per entry a UTF-8 name blob + count u64 in strictly ascending name order; for
//!   mode 1 (sketch) a frequent-items image blob (`String` items, map size 1024) and a distinct
//!   sketch blob (4096 HyperLogLog registers, one byte each, values 0..=53; see `distinct.rs` for
//!   the hash).
//!
//! KLL and frequent-items images stay in the cross-language DataSketches format so baselines can
//! be built offline with the Python `datasketches` package and wrapped in this envelope.

use serde::{Deserialize, Serialize};

use crate::categorical::CategoricalProfile;
use crate::codec::{Reader, Writer, corrupt};
use crate::error::StatsError;
use crate::numeric::NumericProfile;

/// Envelope magic: "Custos Stats Profile".
pub const MAGIC: [u8; 3] = *b"CSP";
/// Envelope format version written by [`FeatureProfile::to_bytes`].
pub const FORMAT_VERSION: u8 = 1;
const KIND_NUMERIC: u8 = 1;
const KIND_CATEGORICAL: u8 = 2;

/// Quantile levels reported in a numeric summary.
pub const SUMMARY_QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
/// Number of categories reported in a categorical summary.
pub const SUMMARY_TOP: usize = 20;

/// Which profile a feature has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    /// Real-valued feature (integers included).
    Numeric,
    /// String or boolean feature.
    Categorical,
}

/// A mergeable per-feature profile for one time bucket (or a merge of many).
#[derive(Debug, Clone)]
pub enum FeatureProfile {
    /// See [`NumericProfile`].
    Numeric(NumericProfile),
    /// See [`CategoricalProfile`].
    Categorical(CategoricalProfile),
}

impl From<NumericProfile> for FeatureProfile {
    fn from(p: NumericProfile) -> Self {
        Self::Numeric(p)
    }
}

impl From<CategoricalProfile> for FeatureProfile {
    fn from(p: CategoricalProfile) -> Self {
        Self::Categorical(p)
    }
}

impl FeatureProfile {
    /// An empty profile of the given kind.
    pub fn new(kind: ProfileKind) -> Self {
        match kind {
            ProfileKind::Numeric => Self::Numeric(NumericProfile::new()),
            ProfileKind::Categorical => Self::Categorical(CategoricalProfile::new()),
        }
    }

    /// The profile's kind.
    pub fn kind(&self) -> ProfileKind {
        match self {
            Self::Numeric(_) => ProfileKind::Numeric,
            Self::Categorical(_) => ProfileKind::Categorical,
        }
    }

    /// Merges `other` into `self`; kinds must match. On error `self` is unchanged.
    ///
    /// Besides [`StatsError::KindMismatch`], fails with [`StatsError::Corrupt`] if the combined
    /// count would exceed 2^62 observations, which no real stream reaches; only crafted inputs do.
    pub fn merge(&mut self, other: &FeatureProfile) -> Result<(), StatsError> {
        match (self, other) {
            (Self::Numeric(a), Self::Numeric(b)) => a.merge(b),
            (Self::Categorical(a), Self::Categorical(b)) => a.merge(b),
            _ => Err(StatsError::KindMismatch),
        }
    }

    /// Encodes the profile in the current envelope format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.bytes(&MAGIC);
        w.u8(FORMAT_VERSION);
        match self {
            Self::Numeric(p) => {
                w.u8(KIND_NUMERIC);
                p.encode(&mut w);
            }
            Self::Categorical(p) => {
                w.u8(KIND_CATEGORICAL);
                p.encode(&mut w);
            }
        }
        w.finish()
    }

    /// Decodes bytes written by [`to_bytes`](Self::to_bytes). Truncated, hostile or inconsistent
    /// input yields an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StatsError> {
        let mut r = Reader::new(bytes);
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(corrupt("not a Custos profile (bad magic)"));
        }
        let version = r.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(StatsError::UnsupportedVersion(version));
        }
        let profile = match r.u8("profile kind")? {
            KIND_NUMERIC => Self::Numeric(NumericProfile::decode(&mut r)?),
            KIND_CATEGORICAL => Self::Categorical(CategoricalProfile::decode(&mut r)?),
            other => return Err(corrupt(format!("unknown profile kind code {other}"))),
        };
        r.finish("profile payload")?;
        Ok(profile)
    }

    /// All observations, including missing (and, for numeric, invalid) ones.
    pub fn count(&self) -> u64 {
        match self {
            Self::Numeric(p) => p.count(),
            Self::Categorical(p) => p.count(),
        }
    }

    /// Missing observations.
    pub fn missing(&self) -> u64 {
        match self {
            Self::Numeric(p) => p.missing(),
            Self::Categorical(p) => p.missing(),
        }
    }

    /// Non-finite numeric observations; always 0 for categorical profiles.
    pub fn invalid(&self) -> u64 {
        match self {
            Self::Numeric(p) => p.invalid(),
            Self::Categorical(_) => 0,
        }
    }

    /// Display/API summary of the profile.
    pub fn summary(&self) -> ProfileSummary {
        let detail = match self {
            Self::Numeric(p) => SummaryDetail::Numeric(NumericSummary {
                mean: p.mean(),
                std: p.std(),
                min: p.min(),
                max: p.max(),
                quantiles: p.quantiles(&SUMMARY_QUANTILES),
            }),
            Self::Categorical(p) => SummaryDetail::Categorical(CategoricalSummary {
                distinct_estimate: p.distinct_estimate(),
                exact: p.is_exact(),
                top: p.category_counts().into_iter().take(SUMMARY_TOP).collect(),
            }),
        };
        ProfileSummary {
            count: self.count(),
            missing: self.missing(),
            invalid: self.invalid(),
            detail,
        }
    }
}

/// Summary of one profile, as served by the API and shown in the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSummary {
    /// All observations, including missing and invalid ones.
    pub count: u64,
    /// Missing observations.
    pub missing: u64,
    /// Non-finite numeric observations (0 for categorical).
    pub invalid: u64,
    /// Kind-specific part.
    pub detail: SummaryDetail,
}

/// Kind-specific part of a [`ProfileSummary`]; serialized with a `"kind"` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SummaryDetail {
    /// Numeric feature.
    Numeric(NumericSummary),
    /// Categorical feature.
    Categorical(CategoricalSummary),
}

/// Numeric summary. Every field is `None` / empty when there is no finite value (JSON has no NaN).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericSummary {
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1); `None` below two finite values.
    pub std: Option<f64>,
    /// Exact minimum.
    pub min: Option<f64>,
    /// Exact maximum.
    pub max: Option<f64>,
    /// `(q, value)` for each level in [`SUMMARY_QUANTILES`], from the KLL sketch.
    pub quantiles: Vec<(f64, f64)>,
}

/// Categorical summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalSummary {
    /// Exact distinct count when `exact`, otherwise an HLL estimate.
    pub distinct_estimate: u64,
    /// Whether counts are exact (at most [`EXACT_LIMIT`](crate::EXACT_LIMIT) distinct values).
    pub exact: bool,
    /// Up to [`SUMMARY_TOP`] most frequent categories, largest first; lower-bound counts in
    /// sketch mode.
    pub top: Vec<(String, u64)>,
}
