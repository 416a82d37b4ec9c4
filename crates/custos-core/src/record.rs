//! Record typestates and the two functions that advance them.
//!
//! * [`validate_row`] turns one JSON object into a [`ValidatedRecord`] or into row errors that
//!   name the row, the field and the reason — never the offending value, which may be PII.
//! * [`mask`] applies each column's masking policy and yields a [`MaskedRecord`], the only form
//!   the crypto crate will seal and the only form profiles are computed from.
//!
//! Both types have private fields and no public constructor, so the order of the stages is
//! enforced by the compiler rather than by review.

use crate::names::ModelName;
use crate::pii::PiiKind;
use crate::schema::UnknownFieldPolicy;
use crate::schema::{
    Column, ColumnRole, FeatureType, Ff1Alphabet, MaskingRule, ModelSchema, PiiDetection,
    PredictionType, TimeUnit,
};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bounds on what one row may carry.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Longest event id, in bytes.
    pub max_id_bytes: usize,
    /// Longest categorical value, in bytes.
    pub max_category_bytes: usize,
    /// Longest text value, in bytes.
    pub max_text_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_id_bytes: 256,
            max_category_bytes: 1_024,
            max_text_bytes: 64 * 1_024,
        }
    }
}

/// One problem with one row. `reason` describes the problem, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowError {
    /// Zero-based index of the row in the batch.
    pub row: usize,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl RowError {
    fn new(row: usize, field: Option<&str>, reason: impl Into<String>) -> Self {
        Self {
            row,
            field: field.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

/// A field value that passed its column's type check.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Absent or `null`.
    Missing,
    /// A finite number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A string (categorical or text).
    Text(String),
    /// An instant.
    Time(DateTime<Utc>),
}

/// A row whose every field matches the schema. Not yet masked: it must not be stored or logged.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedRecord {
    event_id: String,
    timestamp: DateTime<Utc>,
    values: Vec<FieldValue>,
}

impl ValidatedRecord {
    /// The event id.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The event time.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    /// The values of the schema's `tokenize` columns, which need vault tokens before
    /// [`mask`] runs.
    pub fn tokenized_values<'a>(&'a self, schema: &ModelSchema) -> Vec<&'a str> {
        schema
            .columns()
            .iter()
            .zip(&self.values)
            .filter_map(|(column, value)| match (column.rule, value) {
                (MaskingRule::Tokenize, FieldValue::Text(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A keyed pseudonym of an event id, used to find an event (for label joins and duplicate
/// detection) without storing the id itself in an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey(pub [u8; 32]);

/// The keyed functions masking needs. Implemented by the crypto crate with HMAC-SHA256 under
/// keys the key-encryption key protects; core never sees a key.
pub trait Pseudonymizer: Send + Sync {
    /// The pseudonym of a PII value. Equal values give equal pseudonyms under one key, so joins
    /// and distinct counts still work; nothing reverses it without the key.
    fn pseudonym(&self, value: &str) -> String;
    /// The index key of an event id within one model.
    fn event_key(&self, model: &ModelName, event_id: &str) -> EventKey;
    /// The format-preserving encryption (FF1) of the `alphabet` characters of `value`, other
    /// characters left in place; `None` when it cannot be computed, and the value is then
    /// redacted rather than stored.
    fn format_preserving(&self, alphabet: Ff1Alphabet, value: &str) -> Option<String>;
    /// The vault token of a value of a `tokenize` column, looked up before masking (the vault
    /// lives in the store, masking is pure). `None` — the default, for callers that have no
    /// vault at hand — redacts the value rather than store it.
    fn token(&self, _value: &str) -> Option<String> {
        None
    }
}

/// A field value after masking: safe to profile and to seal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum MaskedValue {
    /// Absent or `null`.
    Missing,
    /// The column's policy is `drop`: nothing is kept.
    Dropped,
    /// The column's policy is `redact`: only presence is kept.
    Redacted,
    /// A keyed pseudonym of the original value.
    Pseudonym(String),
    /// A random token standing for the original value, which only the model's token vault
    /// holds (sealed).
    Token(String),
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Text(String),
    /// An instant.
    Time(DateTime<Utc>),
}

impl MaskedValue {
    /// The marker profiles count for redacted values.
    pub const REDACTED_MARKER: &'static str = "[redacted]";
}

/// A row after masking. The only row type the sealer accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskedRecord {
    event_id: String,
    #[serde(skip)]
    event_key: Option<EventKey>,
    timestamp: DateTime<Utc>,
    values: Vec<MaskedValue>,
    /// Personal data found and replaced by PII detection in this row: (column index, kind) per
    /// finding. Never sealed with the row; only its counts are kept (per model, hour, field and
    /// kind) and reported.
    #[serde(skip)]
    pii_findings: Vec<(usize, PiiKind)>,
}

impl MaskedRecord {
    /// A record as a sealed batch gives it back: no event key (the store keeps that in its
    /// index) and no PII findings (only their counts are kept).
    pub(crate) fn from_sealed(
        event_id: String,
        timestamp: DateTime<Utc>,
        values: Vec<MaskedValue>,
    ) -> Self {
        Self {
            event_id,
            event_key: None,
            timestamp,
            values,
            pii_findings: Vec::new(),
        }
    }

    /// How many findings of PII detection this row's masking replaced.
    pub fn pii_redacted(&self) -> u32 {
        u32::try_from(self.pii_findings.len()).unwrap_or(u32::MAX)
    }

    /// What PII detection replaced in this row: (column index, kind) per finding.
    pub fn pii_findings(&self) -> &[(usize, PiiKind)] {
        &self.pii_findings
    }

    /// The event id (kept only inside sealed batches).
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The keyed index key of the event id.
    pub fn event_key(&self) -> Option<EventKey> {
        self.event_key
    }

    /// The event time.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    /// Masked values, aligned with [`ModelSchema::columns`].
    pub fn values(&self) -> &[MaskedValue] {
        &self.values
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_time(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| "expected an RFC 3339 timestamp such as 2026-11-26T10:00:00Z".to_owned()),
        Value::Number(n) => {
            // Unix seconds, possibly fractional, are what many model servers emit.
            let secs = n
                .as_f64()
                .filter(|s| s.is_finite())
                .ok_or("timestamp out of range")?;
            let whole = secs.floor();
            let nanos = ((secs - whole) * 1e9).round() as u32;
            if !(-62_135_596_800.0..=253_402_300_799.0).contains(&whole) {
                return Err("timestamp out of range".into());
            }
            Utc.timestamp_opt(whole as i64, nanos.min(999_999_999))
                .single()
                .ok_or_else(|| "timestamp out of range".to_owned())
        }
        other => Err(format!(
            "expected an RFC 3339 timestamp, got {}",
            json_type(other)
        )),
    }
}

fn check_value(
    column: &Column,
    value: &Value,
    limits: &IngestLimits,
) -> Result<FieldValue, String> {
    let checked = check_type(column, value, limits)?;
    if let (
        MaskingRule::Ff1 {
            alphabet,
            min_length,
        },
        FieldValue::Text(s),
    ) = (column.rule, &checked)
    {
        let encrypted = s.chars().filter(|c| alphabet.contains(*c)).count();
        if encrypted < min_length as usize {
            return Err(format!(
                "has fewer than the {min_length} {} characters its ff1 masking needs",
                match alphabet {
                    Ff1Alphabet::Digits => "digit",
                    Ff1Alphabet::Alphanumeric => "letter or digit",
                }
            ));
        }
    }
    Ok(checked)
}

fn check_type(column: &Column, value: &Value, limits: &IngestLimits) -> Result<FieldValue, String> {
    if value.is_null() {
        return Ok(FieldValue::Missing);
    }
    match column.value_type {
        FeatureType::Numeric => match value {
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(FieldValue::Number)
                .ok_or_else(|| "number out of range".to_owned()),
            other => Err(format!("expected a number, got {}", json_type(other))),
        }
        .and_then(|v| match (column.prediction_type, &v) {
            (Some(PredictionType::BinaryScore), FieldValue::Number(p))
                if !(0.0..=1.0).contains(p) =>
            {
                Err("a binary score must lie between 0 and 1".to_owned())
            }
            _ => Ok(v),
        }),
        FeatureType::Categorical => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "expected a string, number or boolean, got {}",
                        json_type(other)
                    ));
                }
            };
            if text.len() > limits.max_category_bytes {
                return Err(format!(
                    "categorical value longer than {} bytes",
                    limits.max_category_bytes
                ));
            }
            Ok(FieldValue::Text(text))
        }
        FeatureType::Boolean => match value {
            Value::Bool(b) => Ok(FieldValue::Bool(*b)),
            other => Err(format!("expected a boolean, got {}", json_type(other))),
        },
        FeatureType::Text => match value {
            Value::String(s) if s.len() > limits.max_text_bytes => {
                Err(format!("text longer than {} bytes", limits.max_text_bytes))
            }
            Value::String(s) => Ok(FieldValue::Text(s.clone())),
            other => Err(format!("expected a string, got {}", json_type(other))),
        },
        FeatureType::Timestamp => parse_time(value).map(FieldValue::Time),
    }
}

/// Checks one row against the schema. All of the row's problems are returned, not only the first.
pub fn validate_row(
    schema: &ModelSchema,
    index: usize,
    row: &Value,
    limits: &IngestLimits,
) -> Result<ValidatedRecord, Vec<RowError>> {
    let Value::Object(fields) = row else {
        return Err(vec![RowError::new(
            index,
            None,
            format!("expected a JSON object, got {}", json_type(row)),
        )]);
    };
    let spec = schema.spec();
    let mut errors = Vec::new();
    let event_id = match fields.get(spec.id_field.as_str()) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= limits.max_id_bytes => {
            Some(s.clone())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if s.is_empty() => {
            errors.push(RowError::new(
                index,
                Some(spec.id_field.as_str()),
                "event id is empty",
            ));
            None
        }
        Some(Value::String(_)) => {
            errors.push(RowError::new(
                index,
                Some(spec.id_field.as_str()),
                format!("event id longer than {} bytes", limits.max_id_bytes),
            ));
            None
        }
        Some(other) => {
            errors.push(RowError::new(
                index,
                Some(spec.id_field.as_str()),
                format!("expected a string event id, got {}", json_type(other)),
            ));
            None
        }
        None => {
            errors.push(RowError::new(
                index,
                Some(spec.id_field.as_str()),
                "missing event id",
            ));
            None
        }
    };
    let timestamp = match fields.get(spec.timestamp_field.as_str()) {
        Some(v) => match parse_time(v) {
            Ok(t) => Some(t),
            Err(reason) => {
                errors.push(RowError::new(
                    index,
                    Some(spec.timestamp_field.as_str()),
                    reason,
                ));
                None
            }
        },
        None => {
            errors.push(RowError::new(
                index,
                Some(spec.timestamp_field.as_str()),
                "missing event time",
            ));
            None
        }
    };
    let mut values = vec![FieldValue::Missing; schema.columns().len()];
    for (name, value) in fields {
        if name == spec.id_field.as_str() || name == spec.timestamp_field.as_str() {
            continue;
        }
        let Some((position, column)) = schema.column(name) else {
            if spec.unknown_fields == UnknownFieldPolicy::Reject {
                // The name is client-chosen; cap it so an error body cannot be inflated.
                let shown: String = name.chars().take(128).collect();
                errors.push(RowError::new(
                    index,
                    Some(&shown),
                    "field is not in the model's schema",
                ));
            }
            continue;
        };
        match check_value(column, value, limits) {
            Ok(checked) => {
                if let Some(slot) = values.get_mut(position) {
                    *slot = checked;
                }
            }
            Err(reason) => errors.push(RowError::new(index, Some(column.name.as_str()), reason)),
        }
    }
    if schema.spec().pii_detection == Some(PiiDetection::Reject) {
        for (column, value) in schema.columns().iter().zip(&values) {
            if let Some(kinds) = scanned_text(column, value).and_then(found_kinds) {
                errors.push(RowError::new(
                    index,
                    Some(column.name.as_str()),
                    format!("holds personal data ({kinds}), which this model refuses"),
                ));
            }
        }
    }
    for (column, value) in schema.columns().iter().zip(&values) {
        if column.role == ColumnRole::Prediction && *value == FieldValue::Missing {
            errors.push(RowError::new(
                index,
                Some(column.name.as_str()),
                "missing prediction",
            ));
        }
    }
    match (event_id, timestamp) {
        (Some(event_id), Some(timestamp)) if errors.is_empty() => Ok(ValidatedRecord {
            event_id,
            timestamp,
            values,
        }),
        _ => Err(errors),
    }
}

/// The text of a value that PII detection scans: a string feature stored as given.
fn scanned_text<'a>(column: &Column, value: &'a FieldValue) -> Option<&'a str> {
    match (column.role, column.rule, value) {
        (ColumnRole::Feature, MaskingRule::None, FieldValue::Text(s)) => Some(s),
        _ => None,
    }
}

/// The kinds of personal data in `text` (`email, payment_card`), or `None`. Only the kinds leave
/// this function, never the matched text.
fn found_kinds(text: &str) -> Option<String> {
    let counts = crate::pii::counts(text);
    if counts.is_empty() {
        return None;
    }
    Some(
        counts
            .keys()
            .map(|k| k.label().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// `*` for every character but the last `keep` (all of them when the value is not longer).
fn mask_all_but_last(value: &str, keep: usize) -> String {
    let count = value.chars().count();
    // A value no longer than what would stay visible is hidden whole: otherwise a short value
    // would be stored in the clear.
    let hidden = if count > keep { count - keep } else { count };
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i < hidden { '*' } else { c })
        .collect()
}

/// The lower edge of the `width`-wide bucket holding `value` (buckets start at 0).
fn bucket_floor(value: f64, width: f64) -> f64 {
    let edge = (value / width).floor() * width;
    if edge.is_finite() { edge } else { 0.0 }
}

/// `t` truncated to the start of its `unit` (UTC).
fn truncate_time(t: DateTime<Utc>, unit: TimeUnit) -> Option<DateTime<Utc>> {
    use chrono::{Datelike, Timelike};
    let (year, month, day, hour) = match unit {
        TimeUnit::Hour => (t.year(), t.month(), t.day(), t.hour()),
        TimeUnit::Day => (t.year(), t.month(), t.day(), 0),
        TimeUnit::Month => (t.year(), t.month(), 1, 0),
        TimeUnit::Year => (t.year(), 1, 1, 0),
    };
    Utc.with_ymd_and_hms(year, month, day, hour, 0, 0).single()
}

/// Applies every column's masking policy. The unmasked record is consumed so it cannot be
/// used afterwards by mistake.
pub fn mask(
    schema: &ModelSchema,
    record: ValidatedRecord,
    pseudonymizer: &dyn Pseudonymizer,
) -> MaskedRecord {
    let event_key = pseudonymizer.event_key(schema.name(), &record.event_id);
    let detect = schema.spec().pii_detection == Some(PiiDetection::Mask);
    let mut pii_findings: Vec<(usize, PiiKind)> = Vec::new();
    let values: Vec<MaskedValue> = schema
        .columns()
        .iter()
        .zip(record.values)
        .enumerate()
        .map(|(index, (column, value))| match (column.rule, value) {
            (_, FieldValue::Missing) => MaskedValue::Missing,
            (MaskingRule::Drop, _) => MaskedValue::Dropped,
            (MaskingRule::Redact, _) => MaskedValue::Redacted,
            (MaskingRule::Hmac, FieldValue::Text(s)) => {
                MaskedValue::Pseudonym(pseudonymizer.pseudonym(&s))
            }
            (MaskingRule::Tokenize, FieldValue::Text(s)) => pseudonymizer
                .token(&s)
                .map_or(MaskedValue::Redacted, MaskedValue::Token),
            (MaskingRule::Mask { keep_last }, FieldValue::Text(s)) => {
                MaskedValue::Text(mask_all_but_last(&s, usize::from(keep_last)))
            }
            (MaskingRule::Ff1 { alphabet, .. }, FieldValue::Text(s)) => pseudonymizer
                .format_preserving(alphabet, &s)
                .map_or(MaskedValue::Redacted, MaskedValue::Pseudonym),
            (MaskingRule::Bucket { width }, FieldValue::Number(n)) => {
                MaskedValue::Number(bucket_floor(n, width))
            }
            (MaskingRule::Truncate { unit }, FieldValue::Time(t)) => {
                truncate_time(t, unit).map_or(MaskedValue::Redacted, MaskedValue::Time)
            }
            (MaskingRule::Prefix { keep }, FieldValue::Text(s)) => {
                MaskedValue::Text(s.chars().take(usize::from(keep)).collect())
            }
            // Schema checking allows these policies only on the types above; any other pairing
            // is redacted rather than risk storing a value in the clear.
            (
                MaskingRule::Hmac
                | MaskingRule::Tokenize
                | MaskingRule::Mask { .. }
                | MaskingRule::Ff1 { .. }
                | MaskingRule::Bucket { .. }
                | MaskingRule::Truncate { .. }
                | MaskingRule::Prefix { .. },
                _,
            ) => MaskedValue::Redacted,
            (MaskingRule::None, FieldValue::Number(n)) => MaskedValue::Number(n),
            (MaskingRule::None, FieldValue::Bool(b)) => MaskedValue::Bool(b),
            (MaskingRule::None, FieldValue::Text(s))
                if detect && column.role == ColumnRole::Feature =>
            {
                let found = crate::pii::detect(&s);
                if found.is_empty() {
                    MaskedValue::Text(s)
                } else {
                    pii_findings.extend(found.iter().map(|d| (index, d.kind)));
                    MaskedValue::Text(crate::pii::redact(&s, &found))
                }
            }
            (MaskingRule::None, FieldValue::Text(s)) => MaskedValue::Text(s),
            (MaskingRule::None, FieldValue::Time(t)) => MaskedValue::Time(t),
        })
        .collect();
    MaskedRecord {
        event_id: record.event_id,
        event_key: Some(event_key),
        timestamp: record.timestamp,
        values,
        pii_findings,
    }
}

/// A ground-truth label value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    /// A number (regression target, or 0/1 for binary models).
    Number(f64),
    /// A class name.
    Class(String),
}

/// A label that matches the model's prediction type.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedLabel {
    event_id: String,
    event_key: EventKey,
    label: LabelValue,
}

impl ValidatedLabel {
    /// The event the label belongs to.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The keyed index key of that event.
    pub fn event_key(&self) -> EventKey {
        self.event_key
    }

    /// The label.
    pub fn label(&self) -> &LabelValue {
        &self.label
    }
}

/// Checks one label row (`{"event_id": "e1", "label": 1}`; the model's own id field name is
/// accepted in place of `event_id`).
pub fn validate_label(
    schema: &ModelSchema,
    index: usize,
    row: &Value,
    limits: &IngestLimits,
    pseudonymizer: &dyn Pseudonymizer,
) -> Result<ValidatedLabel, Vec<RowError>> {
    let Value::Object(fields) = row else {
        return Err(vec![RowError::new(
            index,
            None,
            format!("expected a JSON object, got {}", json_type(row)),
        )]);
    };
    let mut errors = Vec::new();
    let id_field = schema.spec().id_field.as_str();
    for name in fields.keys() {
        if name != "event_id" && name != id_field && name != "label" {
            let shown: String = name.chars().take(128).collect();
            errors.push(RowError::new(
                index,
                Some(&shown),
                "unexpected field in a label row",
            ));
        }
    }
    let event_id = match fields.get("event_id").or_else(|| fields.get(id_field)) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= limits.max_id_bytes => {
            Some(s.clone())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            errors.push(RowError::new(
                index,
                Some("event_id"),
                "expected a non-empty string event id",
            ));
            None
        }
        None => {
            errors.push(RowError::new(index, Some("event_id"), "missing event id"));
            None
        }
    };
    let label = match fields.get("label") {
        None | Some(Value::Null) => {
            errors.push(RowError::new(index, Some("label"), "missing label"));
            None
        }
        Some(value) => match check_label(
            schema.prediction().prediction_type,
            &schema.prediction().classes,
            value,
            limits,
        ) {
            Ok(label) => Some(label),
            Err(reason) => {
                errors.push(RowError::new(index, Some("label"), reason));
                None
            }
        },
    };
    match (event_id, label) {
        (Some(event_id), Some(label)) if errors.is_empty() => Ok(ValidatedLabel {
            event_key: pseudonymizer.event_key(schema.name(), &event_id),
            event_id,
            label,
        }),
        _ => Err(errors),
    }
}

fn check_label(
    prediction_type: PredictionType,
    classes: &[String],
    value: &Value,
    limits: &IngestLimits,
) -> Result<LabelValue, String> {
    match prediction_type {
        PredictionType::Regression => value
            .as_f64()
            .filter(|f| f.is_finite())
            .map(LabelValue::Number)
            .ok_or_else(|| format!("expected a number, got {}", json_type(value))),
        PredictionType::BinaryScore | PredictionType::BinaryClass => match value {
            Value::Bool(b) => Ok(LabelValue::Number(if *b { 1.0 } else { 0.0 })),
            Value::Number(n) if n.as_f64() == Some(0.0) || n.as_f64() == Some(1.0) => {
                Ok(LabelValue::Number(n.as_f64().unwrap_or_default()))
            }
            Value::String(s) if classes.iter().any(|c| c == s) => Ok(LabelValue::Class(s.clone())),
            _ => Err("expected 0, 1, true, false or one of the model's two classes".into()),
        },
        PredictionType::Multiclass => {
            let class = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => return Err(format!("expected a class name, got {}", json_type(other))),
            };
            if class.len() > limits.max_category_bytes {
                return Err(format!(
                    "class name longer than {} bytes",
                    limits.max_category_bytes
                ));
            }
            if !classes.is_empty() && !classes.contains(&class) {
                return Err("not one of the model's classes".into());
            }
            Ok(LabelValue::Class(class))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ModelSpec;
    use serde_json::json;

    struct TestKeys;
    impl Pseudonymizer for TestKeys {
        fn pseudonym(&self, value: &str) -> String {
            format!("p{}", value.len())
        }
        fn event_key(&self, _model: &ModelName, event_id: &str) -> EventKey {
            let mut k = [0u8; 32];
            for (slot, b) in k.iter_mut().zip(event_id.bytes()) {
                *slot = b;
            }
            EventKey(k)
        }
        fn format_preserving(
            &self,
            _alphabet: crate::schema::Ff1Alphabet,
            value: &str,
        ) -> Option<String> {
            Some(value.chars().rev().collect())
        }
    }

    fn schema() -> ModelSchema {
        let spec: ModelSpec = serde_json::from_value(json!({"name": "fraud-v3",
            "id_field": "event_id", "timestamp_field": "ts",
            "features": [
                {"name": "amount",  "type": "numeric"},
                {"name": "country", "type": "categorical"},
                {"name": "email",   "type": "categorical", "pii": true, "masking": "hmac"},
                {"name": "note",    "type": "text", "pii": true, "masking": "drop"},
                {"name": "vip",     "type": "boolean"}],
            "prediction": {"name": "score", "type": "binary_score"}}))
        .unwrap();
        ModelSchema::new(spec).unwrap()
    }

    fn good_row() -> Value {
        json!({"event_id":"e1","ts":"2026-11-26T10:00:00Z","amount":12.5,"country":"DE",
               "email":"a@b.c","note":"call me","vip":true,"score":0.93})
    }

    #[test]
    fn every_masking_rule_applies_before_storage() {
        let spec: ModelSpec = serde_json::from_value(json!({"name": "kyc",
            "id_field": "event_id", "timestamp_field": "ts",
            "features": [
                {"name": "card", "type": "categorical", "pii": true, "masking": "ff1",
                 "masking_options": {"min_length": 12}},
                {"name": "phone", "type": "text", "pii": true, "masking": "mask"},
                {"name": "pin", "type": "categorical", "pii": true, "masking": "mask"},
                {"name": "postcode", "type": "categorical", "pii": true, "masking": "generalize",
                 "masking_options": {"keep_prefix": 3}},
                {"name": "age", "type": "numeric", "pii": true, "masking": "generalize",
                 "masking_options": {"bucket_width": 10}},
                {"name": "born", "type": "timestamp", "pii": true, "masking": "generalize",
                 "masking_options": {"truncate_to": "month"}}],
            "prediction": {"name": "score", "type": "binary_score"}}))
        .unwrap();
        let schema = ModelSchema::new(spec).unwrap();
        let row = json!({"event_id": "e1", "ts": "2026-11-26T10:00:00Z",
            "card": "4111 1111 1111 1111", "phone": "+44 20 7946 0958", "pin": "123",
            "postcode": "SW1A 1AA", "age": -3.5, "born": "1990-05-17T08:30:00Z", "score": 0.5});
        let record = validate_row(&schema, 0, &row, &IngestLimits::default()).unwrap();
        let masked = mask(&schema, record, &TestKeys);
        let born = Utc.with_ymd_and_hms(1990, 5, 1, 0, 0, 0).unwrap();
        assert_eq!(
            masked.values(),
            [
                MaskedValue::Pseudonym("1111 1111 1111 1114".into()),
                MaskedValue::Text("************0958".into()),
                MaskedValue::Text("***".into()),
                MaskedValue::Text("SW1".into()),
                MaskedValue::Number(-10.0),
                MaskedValue::Time(born),
                MaskedValue::Number(0.5),
            ]
        );
        // A card with too few digits for its format is refused, value not echoed.
        let short = json!({"event_id": "e2", "ts": "2026-11-26T10:00:00Z", "card": "4111-11",
            "score": 0.5});
        let errors = validate_row(&schema, 4, &short, &IngestLimits::default()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field.as_deref(), Some("card"));
        assert!(errors[0].reason.contains("12 digit") && !errors[0].reason.contains("4111"));
    }

    #[test]
    fn pii_detection_masks_or_refuses_undeclared_personal_data() {
        let spec = |action: &str| -> ModelSchema {
            ModelSchema::new(
                serde_json::from_value(json!({"name": "support",
                    "id_field": "event_id", "timestamp_field": "ts",
                    "features": [
                        {"name": "ticket", "type": "text"},
                        {"name": "channel", "type": "categorical"},
                        {"name": "email", "type": "categorical", "pii": true, "masking": "hmac"}],
                    "prediction": {"name": "score", "type": "binary_score"},
                    "pii_detection": action}))
                .unwrap(),
            )
            .unwrap()
        };
        let row = json!({"event_id": "e1", "ts": "2026-11-26T10:00:00Z",
            "ticket": "refund to 4111 1111 1111 1111, reach me at jane.doe@example.com",
            "channel": "web", "email": "jane.doe@example.com", "score": 0.5});
        let masking = spec("mask");
        let record = validate_row(&masking, 0, &row, &IngestLimits::default()).unwrap();
        let masked = mask(&masking, record, &TestKeys);
        assert_eq!(
            masked.values()[0],
            MaskedValue::Text("refund to [PAYMENT_CARD], reach me at [EMAIL]".into())
        );
        assert_eq!(masked.values()[1], MaskedValue::Text("web".into()));
        assert_eq!(masked.pii_redacted(), 2);
        let refusing = spec("reject");
        let errors = validate_row(&refusing, 7, &row, &IngestLimits::default()).unwrap_err();
        assert_eq!(errors.len(), 1, "declared PII is masked, not refused");
        assert_eq!(errors[0].row, 7);
        assert_eq!(errors[0].field.as_deref(), Some("ticket"));
        assert_eq!(
            errors[0].reason,
            "holds personal data (email, payment_card), which this model refuses"
        );
        let clean = json!({"event_id": "e2", "ts": "2026-11-26T10:00:00Z",
            "ticket": "the app crashes on start", "channel": "web", "score": 0.5});
        assert!(validate_row(&refusing, 0, &clean, &IngestLimits::default()).is_ok());
        // Without the setting nothing is scanned.
        let plain = schema();
        let r = json!({"event_id":"e1","ts":"2026-11-26T10:00:00Z","country":"a@b.example",
                       "score":0.5});
        let record = validate_row(&plain, 0, &r, &IngestLimits::default()).unwrap();
        assert_eq!(mask(&plain, record, &TestKeys).pii_redacted(), 0);
    }

    #[test]
    fn validates_and_masks() {
        let schema = schema();
        let record = validate_row(&schema, 0, &good_row(), &IngestLimits::default()).unwrap();
        assert_eq!(record.event_id(), "e1");
        let masked = mask(&schema, record, &TestKeys);
        assert_eq!(
            masked.values(),
            &[
                MaskedValue::Number(12.5),
                MaskedValue::Text("DE".into()),
                MaskedValue::Pseudonym("p5".into()),
                MaskedValue::Dropped,
                MaskedValue::Bool(true),
                MaskedValue::Number(0.93),
            ]
        );
        let sealed_form = serde_json::to_string(&masked).unwrap();
        assert!(!sealed_form.contains("a@b.c"));
        assert!(!sealed_form.contains("call me"));
    }

    #[test]
    fn names_row_field_and_reason_without_the_value() {
        let schema = schema();
        let mut row = good_row();
        row["amount"] = json!("secret-value");
        row["colour"] = json!("x");
        let errors = validate_row(&schema, 3, &row, &IngestLimits::default()).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.row == 3));
        assert!(errors.iter().any(|e| e.field.as_deref() == Some("amount")
            && e.reason == "expected a number, got a string"));
        assert!(errors.iter().any(|e| e.field.as_deref() == Some("colour")));
        assert!(!format!("{errors:?}").contains("secret-value"));
    }

    #[test]
    fn missing_values_and_bad_rows() {
        let schema = schema();
        let limits = IngestLimits::default();
        let row = json!({"event_id":"e2","ts":"2026-11-26T10:00:00Z","score":0.1,"amount":null});
        assert!(validate_row(&schema, 0, &row, &limits).is_ok());
        let row = json!({"event_id":"e2","ts":"yesterday","score":0.1});
        assert_eq!(
            validate_row(&schema, 0, &row, &limits).unwrap_err()[0]
                .field
                .as_deref(),
            Some("ts")
        );
        let row = json!({"event_id":"e2","ts":"2026-11-26T10:00:00Z"});
        assert_eq!(
            validate_row(&schema, 0, &row, &limits).unwrap_err()[0].reason,
            "missing prediction"
        );
        let row = json!({"event_id":"e2","ts":"2026-11-26T10:00:00Z","score":1.5});
        assert!(validate_row(&schema, 0, &row, &limits).is_err());
        assert!(validate_row(&schema, 0, &json!([1]), &limits).is_err());
        let row = json!({"event_id":"e2","ts":1_764_151_200.5,"score":0.5});
        let ok = validate_row(&schema, 0, &row, &limits).unwrap();
        assert_eq!(ok.timestamp().timestamp(), 1_764_151_200);
    }

    #[test]
    fn labels() {
        let schema = schema();
        let limits = IngestLimits::default();
        let ok = validate_label(
            &schema,
            0,
            &json!({"event_id":"e1","label":1}),
            &limits,
            &TestKeys,
        )
        .unwrap();
        assert_eq!(ok.label(), &LabelValue::Number(1.0));
        assert!(
            validate_label(
                &schema,
                0,
                &json!({"event_id":"e1","label":2}),
                &limits,
                &TestKeys
            )
            .is_err()
        );
        assert!(validate_label(&schema, 0, &json!({"event_id":"e1"}), &limits, &TestKeys).is_err());
        assert!(validate_label(&schema, 0, &json!({"label":1}), &limits, &TestKeys).is_err());
    }
}
