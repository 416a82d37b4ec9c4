//! Custos wire types: the JSON bodies of the HTTP API and the stable error codes.
//!
//! Shared by the server, the CLI and tests so that both ends agree by construction. This crate
//! holds data shapes only: no validation logic (that lives in `custos-core`), no IO.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, machine-readable error codes. They are part of the API: never renamed, only added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No credential, or a credential that is not valid.
    Unauthenticated,
    /// A valid credential that does not allow this action on this resource.
    Forbidden,
    /// The resource does not exist.
    NotFound,
    /// The request body or parameters are malformed.
    BadRequest,
    /// One or more rows of a batch are invalid; nothing was written.
    InvalidRows,
    /// An uploaded file cannot be read (format, encoding, limits); nothing was stored.
    InvalidFile,
    /// The resource already exists.
    Conflict,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// The batch holds more rows than allowed.
    TooManyRows,
    /// Too many requests; retry after the indicated delay.
    RateLimited,
    /// The server cannot serve this now (sealed, shutting down, store unavailable); retry later.
    Unavailable,
    /// An unexpected server-side failure; the request id identifies it in the server log.
    Internal,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The stable error code.
    pub code: ErrorCode,
    /// A human-readable explanation. It never contains submitted values.
    pub message: String,
    /// The request id, to find the server's log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Row-level problems, for `invalid_rows` (at most the first 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<RowErrorBody>,
    /// How many row-level problems there were in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_error_count: Option<usize>,
}

/// One problem with one row of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowErrorBody {
    /// Zero-based index of the row in the batch.
    pub row: usize,
    /// The field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /api/v1/whoami`: the caller as the server sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The id audit records name the caller by (`user:…`, a token id, `service:…`, `bootstrap`).
    pub actor: String,
    /// `bootstrap`, `token`, `user` or `service`.
    pub kind: String,
    /// The display name, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the caller may do, as `action@model` (`*` for every model); `["*@*"]` for the
    /// bootstrap administrator.
    pub grants: Vec<String>,
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// The model's name.
    pub name: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// The registration body as accepted.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// `GET /api/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// The models the caller may see.
    pub models: Vec<ModelInfo>,
}

/// The answer to an accepted prediction batch. Sent only after the batch is durably committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    /// Rows written by this request.
    pub accepted: usize,
    /// Rows skipped because the same event (event id and event time) was already ingested, so
    /// a client may safely retry a batch whose answer it never saw.
    pub duplicates: usize,
    /// Findings of the model's PII detection (`mask`) replaced before storage, in this batch's
    /// rows; the only trace of them that is kept. Absent when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pii_redacted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The answer to an accepted label batch. Labels may arrive before or after their predictions;
/// they are joined by event id when performance metrics are computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LabelResponse {
    /// Labels stored (new or replacing an earlier label of the same event).
    pub stored: u64,
}

/// One permission of a token: an action on a model (or on all models, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct ScopeSpec {
    /// The action, such as `predictions:write`.
    pub action: String,
    /// The model name, or `*` for every model (instance-level actions require `*`).
    pub model: String,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for (shown in listings and the audit log).
    pub description: String,
    /// What it may do.
    pub scopes: Vec<ScopeSpec>,
    /// Lifetime in days (1–365, default 90).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A token's public facts. The secret is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The token's public id.
    pub id: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// What it is for.
    pub description: String,
    /// What it may do.
    pub scopes: Vec<ScopeSpec>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The answer to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The secret, to send as `Authorization: Bearer <secret>`.
    pub secret: String,
    /// Its public facts.
    pub token: TokenInfo,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// All tokens, newest first.
    pub tokens: Vec<TokenInfo>,
}

/// A feature's summary over a time range, merged from stored hourly profiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureProfileResponse {
    /// The model.
    pub model: String,
    /// The feature (or prediction) column.
    pub feature: String,
    /// Range start (inclusive).
    pub start: DateTime<Utc>,
    /// Range end (exclusive).
    pub end: DateTime<Utc>,
    /// How many hourly profiles were merged.
    pub buckets_merged: usize,
    /// The summary.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
}

/// Drift of one feature between the reference and current windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureDriftBody {
    /// The feature (or prediction) column.
    pub feature: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// The statistic the verdict uses (`wasserstein`, `jensen_shannon`, `kolmogorov_smirnov`,
    /// `chi_square`, `z_proportion`, `psi`, `hellinger` or `kullback_leibler`).
    pub method: String,
    /// Its value (KS: D; chi-square: χ²; z-test: z; otherwise the distance).
    pub statistic: f64,
    /// The p-value, for the tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The threshold (a p-value level for tests: drift when `p < threshold`; a distance
    /// otherwise: drift when `statistic >= threshold`).
    pub threshold: f64,
    /// Where method and threshold came from: `default_rule`, `kind`, `feature`,
    /// `data_driven` or `data_driven_fallback` (too few reference chunks; fixed threshold used).
    pub threshold_source: String,
    /// Whether the feature drifted.
    pub drifted: bool,
    /// Population stability index on the chart bins (context; not the verdict unless `method`
    /// is `psi`).
    pub psi: f64,
    /// Jensen–Shannon distance (base 2) on the chart bins (context).
    pub jensen_shannon: f64,
    /// Values seen in the reference.
    pub reference_count: u64,
    /// Values seen in the current window.
    pub current_count: u64,
    /// Per-bin shares, for charts.
    pub bins: Vec<DriftBin>,
}

/// One bin of a drift comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftBin {
    /// The bin's label (a category or a value range).
    pub label: String,
    /// Share of reference values in the bin.
    pub reference: f64,
    /// Share of current values in the bin.
    pub current: f64,
}

/// A feature that could not be compared, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SkippedFeature {
    /// The feature.
    pub feature: String,
    /// Why (for example no data in the current window).
    pub reason: String,
}

/// `GET /api/v1/models/{model}/drift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftResponse {
    /// The model.
    pub model: String,
    /// The reference the current data was compared with.
    pub reference: DriftReferenceBody,
    /// Reference window start (inclusive), for a time-window reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_start: Option<DateTime<Utc>>,
    /// Reference window end (exclusive), for a time-window reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_end: Option<DateTime<Utc>>,
    /// Current window start (inclusive).
    pub current_start: DateTime<Utc>,
    /// Current window end (exclusive).
    pub current_end: DateTime<Utc>,
    /// The monitoring configuration version that chose methods and thresholds (none: the
    /// defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_version: Option<i64>,
    /// Per-feature results over the whole current window.
    pub features: Vec<FeatureDriftBody>,
    /// Features that could not be compared.
    pub skipped: Vec<SkippedFeature>,
    /// Drifted features.
    pub drifted_features: usize,
    /// Compared features.
    pub total_features: usize,
    /// `drifted_features / total_features`.
    pub drift_share: f64,
    /// The share at which the dataset counts as drifted.
    pub dataset_drift_threshold: f64,
    /// Whether the dataset drifted.
    pub dataset_drift: bool,
    /// Per-chunk results, when chunks were asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<DriftChunkBody>,
}

/// What a drift result was compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftReferenceBody {
    /// `window` (the model's own traffic in a time range) or `uploaded` (a reference set).
    pub kind: String,
    /// Window start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// Window end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Reference set id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Reference set name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// SHA-256 (hex) of the uploaded file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Rows in the uploaded file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// Drift of one chunk of the current window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftChunkBody {
    /// Chunk start (inclusive, whole hour).
    pub start: DateTime<Utc>,
    /// Chunk end (exclusive, whole hour).
    pub end: DateTime<Utc>,
    /// Rows with an event time in the chunk.
    pub rows: u64,
    /// Per-feature verdicts (same method and threshold as the whole window).
    pub features: Vec<FeatureTestBody>,
    /// Features without data in this chunk.
    pub skipped: Vec<String>,
    /// Drifted features.
    pub drifted_features: usize,
    /// Compared features.
    pub total_features: usize,
    /// `drifted_features / total_features`.
    pub drift_share: f64,
    /// Whether the chunk counts as dataset drift.
    pub dataset_drift: bool,
}

/// One feature's statistic in one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureTestBody {
    /// The feature.
    pub feature: String,
    /// The statistic's value.
    pub statistic: f64,
    /// The p-value, for the tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// Whether it drifted.
    pub drifted: bool,
}

/// An uploaded reference data set (`POST /api/v1/models/{model}/reference`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReferenceInfo {
    /// Public id.
    pub id: String,
    /// The model.
    pub model: String,
    /// Name (the uploader's, or the file's).
    pub name: String,
    /// Rows in the file.
    pub rows: u64,
    /// SHA-256 (hex) of the uploaded bytes.
    pub sha256: String,
    /// The label column, if the file carried labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_field: Option<String>,
    /// Who uploaded it (an actor id).
    pub uploaded_by: String,
    /// When.
    pub uploaded_at: DateTime<Utc>,
}

/// `GET /api/v1/models/{model}/reference`: the model's reference sets, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReferenceList {
    /// Reference sets; drift uses the first unless told otherwise.
    pub references: Vec<ReferenceInfo>,
}

/// `GET /api/v1/models/{model}/performance`: realized performance from labels, and CBPE
/// estimates for binary scorers with a labelled reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerformanceResponse {
    /// The model.
    pub model: String,
    /// Window start (whole hour).
    pub start: DateTime<Utc>,
    /// Window end (whole hour, exclusive).
    pub end: DateTime<Utc>,
    /// `binary_score`, `binary_class`, `multiclass` or `regression`.
    pub prediction_type: String,
    /// Score at or above which a binary score counts as positive.
    pub decision_threshold: f64,
    /// The monitoring configuration version used (none: defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_version: Option<i64>,
    /// The whole window.
    pub overall: PerformanceChunkBody,
    /// Per chunk, when chunks were asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<PerformanceChunkBody>,
    /// The segmenting feature, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_by: Option<String>,
    /// Realized performance per segment (largest first; the rest pooled as `(other)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentPerformanceBody>,
    /// The reference set whose labels calibrated the estimates, if estimates are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimation_reference: Option<String>,
}

/// Performance of one chunk (or of the whole window, without bounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerformanceChunkBody {
    /// Chunk start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// Chunk end (exclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Predictions in the chunk.
    pub predictions: u64,
    /// Of which have a label.
    pub labelled: u64,
    /// Metrics from the labels (accuracy, precision, recall, F1, ROC AUC, log loss, confusion
    /// matrix; or MAE, RMSE, MAPE, R²), tagged by `kind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub realized: Option<serde_json::Value>,
    /// CBPE estimates with their bands (value ± 3 sampling errors), for binary scorers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub estimated: Option<serde_json::Value>,
}

/// Realized performance of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentPerformanceBody {
    /// The segment's value (a pseudonym for pseudonymized fields).
    pub segment: String,
    /// Labelled predictions in the segment.
    pub labelled: u64,
    /// Its metrics.
    #[schema(value_type = Object)]
    pub realized: serde_json::Value,
}

/// `GET /api/v1/models/{model}/quality`: data quality of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QualityResponse {
    /// The model.
    pub model: String,
    /// Window start (whole hour).
    pub start: DateTime<Utc>,
    /// Window end (whole hour, exclusive).
    pub end: DateTime<Utc>,
    /// The monitoring configuration version used (none: defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_version: Option<i64>,
    /// The reference range and category checks compare with, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<DriftReferenceBody>,
    /// Per profiled field: counts, missing and invalid shares, out-of-range share, unseen
    /// categories.
    pub features: Vec<FeatureQualityBody>,
    /// Declared fields that were missing from every row of the window (schema change).
    pub missing_fields: Vec<String>,
    /// Rows refused at ingestion (type mismatches, values out of range, undeclared fields…)
    /// per field, by hour of arrival within the window. Each refused row counts once per field
    /// at fault; refused batches store nothing else.
    pub rejected: Vec<RejectedField>,
    /// Personal data that PII detection (`pii_detection: mask`) found and masked in fields not
    /// declared PII, per field and kind, over the window's event hours. Counts only.
    #[serde(default)]
    pub pii_findings: Vec<PiiFindingBody>,
    /// Each complete hour's volume against the hours before it.
    pub volume: Vec<VolumeCheckBody>,
    /// Hours whose volume fell outside its band.
    pub anomalous_hours: usize,
    /// The latest event time ingested (any window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event: Option<DateTime<Utc>>,
    /// Age of the latest event against `quality.max_silence_minutes`.
    #[schema(value_type = Object)]
    pub freshness: serde_json::Value,
}

/// What PII detection masked in one field, of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PiiFindingBody {
    /// The field.
    pub field: String,
    /// `email`, `phone`, `payment_card`, `iban`, `us_ssn` or `ip_address`.
    pub kind: String,
    /// Findings masked.
    pub count: u64,
}

/// Refused rows of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RejectedField {
    /// The field (`(row)` for problems of a whole row, `(undeclared field)` for fields the
    /// schema does not declare).
    pub field: String,
    /// Refused rows.
    pub rows: u64,
}

/// Quality measures of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureQualityBody {
    /// The field.
    pub feature: String,
    /// Its measures.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

/// One hour's volume check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeCheckBody {
    /// Hour start.
    pub hour: DateTime<Utc>,
    /// Rows with an event time in the hour.
    pub rows: u64,
    /// Baseline mean and σ, band, z-score and verdict (`normal`, `low`, `high`).
    #[schema(value_type = Object)]
    pub check: serde_json::Value,
}

/// `GET /api/v1/models/{model}/report?format=json`: drift, and the quality and performance
/// sections the caller may read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportBody {
    /// The model.
    pub model: String,
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// Drift.
    pub drift: DriftResponse,
    /// Data quality (with `profiles:read`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityResponse>,
    /// Performance (with `performance:read`, when the window can be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceResponse>,
}

/// A model's monitoring configuration in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitoringConfigBody {
    /// The model.
    pub model: String,
    /// Version (absent: never configured, the defaults apply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Who made this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// When.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The configuration (see `MonitoringConfig`).
    pub config: serde_json::Value,
}

/// Rows ingested per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumePoint {
    /// Hour start.
    pub hour: DateTime<Utc>,
    /// Rows with an event time in that hour.
    pub rows: u64,
}

/// `GET /api/v1/models/{model}/volume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeResponse {
    /// The model.
    pub model: String,
    /// Hourly counts, oldest first; hours without rows are omitted.
    pub points: Vec<VolumePoint>,
}

/// One audit record as served by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecordBody {
    /// Position in the log.
    pub seq: i64,
    /// The record.
    #[schema(value_type = Object)]
    pub record: serde_json::Value,
    /// Hex of the chained hash.
    pub hash: String,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Records after the requested position, oldest first.
    pub records: Vec<AuditRecordBody>,
}
