//! Custos statistics: mergeable per-feature profiles and drift metrics.
//!
//! Owns: the profile data structures (numeric: KLL + moments; categorical: exact counts, then
//! frequent-items + HyperLogLog sketches), their versioned byte format, their summaries, and the drift
//! statistics computed from two profiles (PSI, Jensen–Shannon and the dataset verdict in `drift`;
//! KS, chi-square, z-test, Hellinger, KL, Wasserstein and the default-method rule in
//! `statistics`).
//!
//! Must not: do IO, async, logging, or depend on other Custos crates. Callers own storage,
//! time buckets and feature names; this crate only sees values. Library code never panics on
//! input (the workspace lints deny unwrap/expect/panic/indexing); errors are [`StatsError`].
//!
//! Sketches come from Apache DataSketches (`datasketches` 0.6.0), wrapped so that the pinned,
//! pre-1.0 API stays inside this crate.

mod categorical;
mod cbpe;
mod codec;
mod distinct;
mod drift;
mod error;
mod numeric;
mod performance;
mod profile;
mod quality;
mod statistics;

pub use categorical::{CategoricalProfile, EXACT_LIMIT, SKETCH_MAP_SIZE};
pub use cbpe::{
    CALIBRATION_AUC_CEILING, CALIBRATION_FOLDS, Calibration, CbpeEstimate, CbpeModel, ECE_BINS,
    MetricEstimate, SAMPLING_ERROR_RANGE, SamplingErrorComponents, StdFraction, estimate,
    needs_calibration,
};
pub use drift::{
    BinComparison, DEFAULT_DRIFT_SHARE, DEFAULT_JS_THRESHOLD, DEFAULT_PSI_THRESHOLD, DatasetDrift,
    DriftMethod, DriftThresholds, FeatureDrift, MAX_CATEGORY_BINS, MIN_CATEGORY_SHARE, NEW_LABEL,
    OTHER_LABEL, PSI_EPSILON, compare, dataset_drift, jensen_shannon_distance, psi,
};
pub use error::StatsError;
pub use numeric::{KLL_K, NumericProfile};
pub use performance::{
    BinaryConfusion, BinaryMetrics, BinaryPerformance, ClassMetrics, LOG_LOSS_EPSILON,
    MAPE_EPSILON, MAX_CLASSES, MAX_TOTAL_SCORE_BINS, MulticlassMetrics, MulticlassPerformance,
    PERFORMANCE_FORMAT_VERSION, PERFORMANCE_MAGIC, PerformanceKind, PerformanceMetrics,
    PerformanceProfile, RegressionMetrics, RegressionPerformance, SCORE_BIN_COUNT,
    SCORE_BINS_PER_UNIT, ScoreHistogram, roc_auc,
};
pub use profile::{
    CategoricalSummary, FORMAT_VERSION, FeatureProfile, MAGIC, NumericSummary, ProfileKind,
    ProfileSummary, SUMMARY_QUANTILES, SUMMARY_TOP, SummaryDetail,
};
pub use quality::{
    DEFAULT_VOLUME_K, Freshness, FreshnessVerdict, OutOfRange, QualityReport, UNSEEN_TOP,
    UnseenCategories, VolumeCheck, VolumeVerdict, freshness, invalid_share, missing_share,
    out_of_range, quality_report, unseen_categories, volume_anomaly,
};
pub use statistics::{
    CHI_SQUARE_MIN_EXPECTED, DEFAULT_P_VALUE_THRESHOLD, DEFAULT_WASSERSTEIN_THRESHOLD, KS_GRID,
    MethodChoice, SMALL_REFERENCE_ROWS, StatMethod, TestResult, WASSERSTEIN_MIN_NORM, chi_square,
    data_driven_threshold, default_method, hellinger, kl_divergence, kolmogorov_sf, ks, ks_p_value,
    run, wasserstein_normed, wasserstein_trim, z_proportion,
};

/// Largest observation count a profile may hold (2^62). Far beyond any real stream, and low
/// enough that sums inside the sketches (which panic on u64 overflow) can never overflow, even
/// for crafted inputs.
pub const MAX_COUNT: u64 = 1 << 62;
