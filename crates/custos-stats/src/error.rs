//! The one error type of this crate.
//!
//! Owns: [`StatsError`] and its messages. Must not carry observed data values (feature values,
//! category names) in messages: errors end up in logs, and profiles may hold personal data.

use thiserror::Error;

/// Everything that can go wrong when merging, decoding or comparing profiles.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatsError {
    /// A numeric profile was combined with a categorical one (merge or compare).
    #[error("profile kinds differ: cannot combine a numeric with a categorical profile")]
    KindMismatch,
    /// The reference profile holds no usable observations, so no bins can be built.
    #[error("reference profile has no usable observations")]
    EmptyReference,
    /// The current profile holds no usable observations.
    #[error("current profile has no usable observations")]
    EmptyCurrent,
    /// Stored bytes are malformed, truncated or internally inconsistent. The message says what is
    /// wrong with the structure, never which values it held.
    #[error("corrupt profile bytes: {0}")]
    Corrupt(String),
    /// The bytes were written by a newer (or unknown) profile format version.
    #[error("unsupported profile format version {0}")]
    UnsupportedVersion(u8),
    /// The requested statistic does not apply to these profiles (e.g. KS on a categorical
    /// feature, a two-proportion z-test on a feature with more than two categories). The message
    /// names the statistic and the reason, never a value.
    #[error("statistic not applicable: {0}")]
    NotApplicable(String),
    /// Arguments are inconsistent (e.g. more successes than trials) or the numbers involved are
    /// too large for a finite result.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}
