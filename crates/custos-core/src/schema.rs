//! Model schemas: what a model's rows look like and how each field is protected.
//!
//! [`ModelSpec`] is the body a client sends (it accepts the documented JSON verbatim);
//! [`ModelSchema`] is the checked form. Checking refuses a PII field without a masking policy,
//! duplicate or reserved field names and oversized schemas, so that a schema that exists can be
//! enforced without further questions.

use crate::names::{FieldName, ModelName, TenantName};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use utoipa::ToSchema;

/// Most features one model may declare.
pub const MAX_FEATURES: usize = 2_000;

/// The type of a feature column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    /// A finite number.
    Numeric,
    /// A label from a finite set (strings; numbers and booleans are accepted and stringified).
    Categorical,
    /// `true` or `false`.
    Boolean,
    /// Free text. Profiled by length only: its values never enter a profile.
    Text,
    /// An RFC 3339 instant.
    Timestamp,
}

/// The kind of output a model produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// A probability of the positive class in [0, 1].
    BinaryScore,
    /// A predicted class of a binary classifier (0/1, true/false, or one of two class names).
    BinaryClass,
    /// A predicted class among several.
    Multiclass,
    /// A real-valued prediction.
    Regression,
}

/// How a field's value is protected before anything is stored or profiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    /// Stored as given. Refused for fields marked PII.
    None,
    /// Removed: neither stored nor profiled.
    Drop,
    /// Replaced by a fixed marker; only presence is kept.
    Redact,
    /// Replaced by a keyed HMAC-SHA256 pseudonym: equal inputs still join, nothing reverses it.
    Hmac,
    /// Every character but the last `keep_last` (default 4) replaced by `*`: a card number
    /// keeps the digits people use to recognise it, and nothing else.
    Mask,
    /// Format-preserving encryption (NIST SP 800-38G FF1, AES-256) of the characters of the
    /// field's `alphabet`; other characters (separators) stay in place. Equal inputs give equal
    /// outputs under one instance key. Needs `min_length`, and a domain of at least 1,000,000
    /// values (`radix ^ min_length`).
    Ff1,
    /// Coarsened: numbers to the lower edge of a `bucket_width` bucket, instants truncated to a
    /// `truncate_to` unit, strings (postcodes) cut to their first `keep_prefix` characters.
    Generalize,
    /// Replaced by a random token (`tok_…`) from the model's token vault, where the original is
    /// kept sealed. Equal values get the same token within the model; the original comes back
    /// only through the justified, audited, rate-limited reveal (`pii:reveal`), and erasing the
    /// vault entry makes the token an opaque string for good.
    Tokenize,
}

impl Masking {
    /// The policy's name in specifications.
    pub fn as_str(self) -> &'static str {
        match self {
            Masking::None => "none",
            Masking::Drop => "drop",
            Masking::Redact => "redact",
            Masking::Hmac => "hmac",
            Masking::Mask => "mask",
            Masking::Ff1 => "ff1",
            Masking::Generalize => "generalize",
            Masking::Tokenize => "tokenize",
        }
    }
}

/// The characters FF1 encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ff1Alphabet {
    /// `0-9` (radix 10): card numbers, account numbers, phone digits.
    #[default]
    Digits,
    /// `0-9a-zA-Z` (radix 62): identifiers.
    Alphanumeric,
}

impl Ff1Alphabet {
    /// The characters, in numeral order.
    pub fn chars(self) -> &'static str {
        match self {
            Ff1Alphabet::Digits => "0123456789",
            Ff1Alphabet::Alphanumeric => {
                "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            }
        }
    }

    /// Whether `c` is one of the characters.
    pub fn contains(self, c: char) -> bool {
        match self {
            Ff1Alphabet::Digits => c.is_ascii_digit(),
            Ff1Alphabet::Alphanumeric => c.is_ascii_alphanumeric(),
        }
    }

    fn radix(self) -> u64 {
        match self {
            Ff1Alphabet::Digits => 10,
            Ff1Alphabet::Alphanumeric => 62,
        }
    }
}

/// Smallest number of values an FF1 domain may have (NIST SP 800-38G Rev. 1): smaller domains
/// can be enumerated.
pub const FF1_MIN_DOMAIN: u64 = 1_000_000;

/// The unit an instant is truncated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// The start of the hour.
    Hour,
    /// Midnight UTC.
    #[default]
    Day,
    /// The first day of the month.
    Month,
    /// January 1st.
    Year,
}

/// Settings of the masking policies that take any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskingOptions {
    /// `mask`: characters left visible at the end (0–8, default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u8>,
    /// `ff1`: the characters encrypted (default `digits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabet: Option<Ff1Alphabet>,
    /// `ff1`: the fewest alphabet characters a value has; shorter values are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// `generalize` on numbers: the bucket width (finite, positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_width: Option<f64>,
    /// `generalize` on timestamps: the unit kept (default `day`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_to: Option<TimeUnit>,
    /// `generalize` on strings: characters kept from the start (1–16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_prefix: Option<u8>,
}

/// A masking policy with its settings resolved and checked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MaskingRule {
    /// Stored as given.
    None,
    /// Removed.
    Drop,
    /// Replaced by a marker.
    Redact,
    /// Keyed pseudonym.
    Hmac,
    /// All but the last `keep_last` characters hidden.
    Mask {
        /// Characters left visible.
        keep_last: u8,
    },
    /// Format-preserving encryption.
    Ff1 {
        /// The characters encrypted.
        alphabet: Ff1Alphabet,
        /// The fewest alphabet characters a value has.
        min_length: u32,
    },
    /// Numbers to the lower edge of their bucket.
    Bucket {
        /// The bucket width.
        width: f64,
    },
    /// Instants truncated.
    Truncate {
        /// The unit kept.
        unit: TimeUnit,
    },
    /// Strings cut to a prefix.
    Prefix {
        /// Characters kept.
        keep: u8,
    },
    /// A token from the model's vault.
    Tokenize,
}

/// What to do with a row field that the schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFieldPolicy {
    /// The row is refused, naming the field (the default: nothing undeclared slips through).
    #[default]
    Reject,
    /// The field is discarded before validation; it is never stored.
    Drop,
}

/// One declared feature, as sent by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// The field's name in each row.
    #[schema(value_type = String)]
    pub name: FieldName,
    /// Its type.
    #[serde(rename = "type")]
    pub feature_type: FeatureType,
    /// Whether the field holds personal data.
    #[serde(default)]
    pub pii: bool,
    /// How the value is protected; required when `pii` is true.
    #[serde(default)]
    pub masking: Option<Masking>,
    /// Settings of `mask`, `ff1` and `generalize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masking_options: Option<MaskingOptions>,
}

/// The model's prediction field, as sent by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictionSpec {
    /// The field's name in each row.
    #[schema(value_type = String)]
    pub name: FieldName,
    /// The prediction type.
    #[serde(rename = "type")]
    pub prediction_type: PredictionType,
    /// Class names, for classifiers that predict named classes (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// The body of `POST /api/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The model's name (URL-safe).
    #[schema(value_type = String)]
    pub name: ModelName,
    /// The field holding each row's unique event id (labels join on it).
    #[schema(value_type = String)]
    pub id_field: FieldName,
    /// The field holding each row's RFC 3339 event time.
    #[schema(value_type = String)]
    pub timestamp_field: FieldName,
    /// The input features.
    pub features: Vec<FeatureSpec>,
    /// The prediction.
    pub prediction: PredictionSpec,
    /// Optional free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What to do with undeclared fields.
    #[serde(default)]
    pub unknown_fields: UnknownFieldPolicy,
    /// The tenant whose keys pseudonymize this model's PII (`hmac`, `ff1`): models of one tenant
    /// join on pseudonyms, different tenants never do. Absent: the default tenant. Fixed at
    /// registration, like the rest of the specification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub tenant: Option<TenantName>,
    /// Scan the string fields stored as given (not declared PII) for personal data: e-mail
    /// addresses, phone numbers, payment cards (Luhn), IBANs (mod-97), US SSNs, IP addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_detection: Option<PiiDetection>,
}

/// What happens to personal data found in a field that was not declared PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiDetection {
    /// Each finding is replaced by its kind (`[EMAIL]`) before anything is stored or profiled;
    /// only the number of findings is reported.
    Mask,
    /// A row with a finding is refused (its batch answers 422 naming row, field and kinds).
    Reject,
}

/// Why a model specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Two fields share a name.
    #[error("field '{0}' is declared more than once")]
    DuplicateField(String),
    /// A PII field has no masking, or `none`.
    #[error(
        "field '{0}' is marked pii but has no masking policy (use drop, redact, hmac, mask, ff1, \
         generalize or tokenize)"
    )]
    PiiWithoutMasking(String),
    /// Masking settings that are missing, out of range or meant for another policy.
    #[error("field '{field}': {reason}")]
    BadMaskingOptions {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A masking policy does not fit the field's type.
    #[error("field '{field}': masking '{masking}' does not apply to {feature_type} fields")]
    MaskingTypeMismatch {
        /// The field.
        field: String,
        /// The policy.
        masking: &'static str,
        /// The type.
        feature_type: &'static str,
    },
    /// No features were declared.
    #[error("a model needs at least one feature")]
    NoFeatures,
    /// Too many features.
    #[error("a model may declare at most {MAX_FEATURES} features")]
    TooManyFeatures,
    /// A description that is too long.
    #[error("description must be at most 2000 characters")]
    DescriptionTooLong,
    /// A class list that does not fit the prediction type.
    #[error("prediction classes: {0}")]
    BadClasses(String),
}

/// What role a column plays in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    /// An input feature.
    Feature,
    /// The model output.
    Prediction,
}

/// How a column is summarized in profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    /// Quantiles and moments.
    Numeric,
    /// Category counts.
    Categorical,
}

/// One checked column of a schema (a feature or the prediction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The field name.
    pub name: FieldName,
    /// Feature or prediction.
    pub role: ColumnRole,
    /// The value type the column accepts.
    pub value_type: FeatureType,
    /// The prediction type, for the prediction column.
    pub prediction_type: Option<PredictionType>,
    /// Whether it holds personal data.
    pub pii: bool,
    /// The effective masking policy.
    pub masking: Masking,
    /// The policy with its settings.
    pub rule: MaskingRule,
}

impl Column {
    /// How the column is profiled, or `None` when it is dropped and so never profiled.
    /// Text is profiled by its length (numeric); redacted fields only by presence (categorical).
    pub fn profile_kind(&self) -> Option<ProfileKind> {
        match (self.rule, self.value_type) {
            (MaskingRule::Drop, _) => None,
            (
                MaskingRule::Redact
                | MaskingRule::Hmac
                | MaskingRule::Tokenize
                | MaskingRule::Mask { .. }
                | MaskingRule::Ff1 { .. }
                | MaskingRule::Prefix { .. },
                _,
            ) => Some(ProfileKind::Categorical),
            (MaskingRule::Bucket { .. } | MaskingRule::Truncate { .. }, _) => {
                Some(ProfileKind::Numeric)
            }
            (
                MaskingRule::None,
                FeatureType::Numeric | FeatureType::Timestamp | FeatureType::Text,
            ) => Some(ProfileKind::Numeric),
            (MaskingRule::None, FeatureType::Categorical | FeatureType::Boolean) => {
                Some(ProfileKind::Categorical)
            }
        }
    }
}

/// A checked model schema. It is stored as its [`ModelSpec`] and checked again when loaded, so
/// a schema read back from the database obeys the same rules as a new one.
#[derive(Debug, Clone)]
pub struct ModelSchema {
    spec: ModelSpec,
    columns: Vec<Column>,
    by_name: HashMap<String, usize>,
}

impl PartialEq for ModelSchema {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

fn type_name(t: FeatureType) -> &'static str {
    match t {
        FeatureType::Numeric => "numeric",
        FeatureType::Categorical => "categorical",
        FeatureType::Boolean => "boolean",
        FeatureType::Text => "text",
        FeatureType::Timestamp => "timestamp",
    }
}

/// The checked rule of a feature's policy and settings: the policy must fit the type, the
/// settings must be the policy's own and within range, and an FF1 domain must have at least
/// [`FF1_MIN_DOMAIN`] values.
fn resolve_rule(feature: &FeatureSpec, masking: Masking) -> Result<MaskingRule, SchemaError> {
    let field = feature.name.to_string();
    let bad = |reason: String| SchemaError::BadMaskingOptions {
        field: field.clone(),
        reason,
    };
    let mismatch = || SchemaError::MaskingTypeMismatch {
        field: field.clone(),
        masking: masking.as_str(),
        feature_type: type_name(feature.feature_type),
    };
    let options = feature.masking_options.clone().unwrap_or_default();
    // Which settings the policy (and type) reads; any other one given is a mistake to report,
    // not to ignore.
    let mut allowed: Vec<&str> = Vec::new();
    let stringy = matches!(
        feature.feature_type,
        FeatureType::Categorical | FeatureType::Text
    );
    let rule = match masking {
        Masking::None => MaskingRule::None,
        Masking::Drop => MaskingRule::Drop,
        Masking::Redact => MaskingRule::Redact,
        Masking::Hmac => {
            if !stringy {
                return Err(mismatch());
            }
            MaskingRule::Hmac
        }
        Masking::Tokenize => {
            if !stringy {
                return Err(mismatch());
            }
            MaskingRule::Tokenize
        }
        Masking::Mask => {
            if !stringy {
                return Err(mismatch());
            }
            allowed.push("keep_last");
            let keep_last = options.keep_last.unwrap_or(4);
            if keep_last > 8 {
                return Err(bad("masking_options.keep_last must lie in 0..=8".into()));
            }
            MaskingRule::Mask { keep_last }
        }
        Masking::Ff1 => {
            if !stringy {
                return Err(mismatch());
            }
            allowed.extend(["alphabet", "min_length"]);
            let alphabet = options.alphabet.unwrap_or_default();
            let min_length = options.min_length.ok_or_else(|| {
                bad(
                    "ff1 needs masking_options.min_length (the fewest alphabet characters a \
                     value has)"
                        .into(),
                )
            })?;
            let mut domain: u64 = 1;
            for _ in 0..min_length.min(64) {
                domain = domain.saturating_mul(alphabet.radix());
            }
            if domain < FF1_MIN_DOMAIN || min_length > 1_000 {
                return Err(bad(format!(
                    "ff1 is refused on a domain of {radix}^{min_length} = {domain} values: at \
                     least {FF1_MIN_DOMAIN} are needed, or the values can be enumerated (raise \
                     min_length or use hmac); at most 1000 characters",
                    radix = alphabet.radix(),
                )));
            }
            MaskingRule::Ff1 {
                alphabet,
                min_length,
            }
        }
        Masking::Generalize => match feature.feature_type {
            FeatureType::Numeric => {
                allowed.push("bucket_width");
                let width = options
                    .bucket_width
                    .filter(|w| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| {
                        bad("generalize on a number needs a finite, positive \
                             masking_options.bucket_width"
                            .into())
                    })?;
                MaskingRule::Bucket { width }
            }
            FeatureType::Timestamp => {
                allowed.push("truncate_to");
                MaskingRule::Truncate {
                    unit: options.truncate_to.unwrap_or_default(),
                }
            }
            FeatureType::Categorical | FeatureType::Text => {
                allowed.push("keep_prefix");
                let keep =
                    options
                        .keep_prefix
                        .filter(|k| (1..=16).contains(k))
                        .ok_or_else(|| {
                            bad("generalize on a string needs masking_options.keep_prefix in 1..=16"
                        .into())
                        })?;
                MaskingRule::Prefix { keep }
            }
            FeatureType::Boolean => return Err(mismatch()),
        },
    };
    let given = [
        ("keep_last", options.keep_last.is_some()),
        ("alphabet", options.alphabet.is_some()),
        ("min_length", options.min_length.is_some()),
        ("bucket_width", options.bucket_width.is_some()),
        ("truncate_to", options.truncate_to.is_some()),
        ("keep_prefix", options.keep_prefix.is_some()),
    ];
    if let Some((name, _)) = given
        .iter()
        .find(|(name, set)| *set && !allowed.contains(name))
    {
        return Err(bad(format!(
            "masking_options.{name} does not apply to masking '{}' on a {} field",
            masking.as_str(),
            type_name(feature.feature_type)
        )));
    }
    Ok(rule)
}

impl ModelSchema {
    /// Checks a client's specification.
    pub fn new(spec: ModelSpec) -> Result<Self, SchemaError> {
        if spec.features.is_empty() {
            return Err(SchemaError::NoFeatures);
        }
        if spec.features.len() > MAX_FEATURES {
            return Err(SchemaError::TooManyFeatures);
        }
        if spec
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2_000)
        {
            return Err(SchemaError::DescriptionTooLong);
        }
        let mut seen = HashSet::new();
        for name in [&spec.id_field, &spec.timestamp_field, &spec.prediction.name]
            .into_iter()
            .chain(spec.features.iter().map(|f| &f.name))
        {
            if !seen.insert(name.as_str()) {
                return Err(SchemaError::DuplicateField(name.to_string()));
            }
        }
        let mut columns = Vec::with_capacity(spec.features.len() + 1);
        for feature in &spec.features {
            let masking = match (feature.pii, feature.masking) {
                (true, None | Some(Masking::None)) => {
                    return Err(SchemaError::PiiWithoutMasking(feature.name.to_string()));
                }
                (_, Some(m)) => m,
                (false, None) => Masking::None,
            };
            let rule = resolve_rule(feature, masking)?;
            columns.push(Column {
                name: feature.name.clone(),
                role: ColumnRole::Feature,
                value_type: feature.feature_type,
                prediction_type: None,
                pii: feature.pii,
                masking,
                rule,
            });
        }
        let prediction = &spec.prediction;
        let value_type = match prediction.prediction_type {
            PredictionType::BinaryScore | PredictionType::Regression => {
                if !prediction.classes.is_empty() {
                    return Err(SchemaError::BadClasses(
                        "only classifiers that predict classes take a class list".into(),
                    ));
                }
                FeatureType::Numeric
            }
            PredictionType::BinaryClass => {
                if !prediction.classes.is_empty() && prediction.classes.len() != 2 {
                    return Err(SchemaError::BadClasses(
                        "a binary classifier has exactly two classes".into(),
                    ));
                }
                FeatureType::Categorical
            }
            PredictionType::Multiclass => FeatureType::Categorical,
        };
        columns.push(Column {
            name: prediction.name.clone(),
            role: ColumnRole::Prediction,
            value_type,
            prediction_type: Some(prediction.prediction_type),
            pii: false,
            masking: Masking::None,
            rule: MaskingRule::None,
        });
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str().to_owned(), i))
            .collect();
        Ok(Self {
            spec,
            columns,
            by_name,
        })
    }

    /// The specification this schema was checked from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The model's name.
    pub fn name(&self) -> &ModelName {
        &self.spec.name
    }

    /// The tenant whose pseudonym keys mask this model's PII.
    pub fn tenant(&self) -> TenantName {
        self.spec
            .tenant
            .clone()
            .unwrap_or_else(TenantName::default_tenant)
    }

    /// Feature columns followed by the prediction column, in declaration order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The column with this name, with its index.
    pub fn column(&self, name: &str) -> Option<(usize, &Column)> {
        let index = *self.by_name.get(name)?;
        self.columns.get(index).map(|c| (index, c))
    }

    /// The prediction column.
    pub fn prediction(&self) -> &PredictionSpec {
        &self.spec.prediction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_BODY: &str = r#"{"name": "fraud-v3",
     "id_field": "event_id", "timestamp_field": "ts",
     "features": [
       {"name": "amount",  "type": "numeric"},
       {"name": "country", "type": "categorical"},
       {"name": "email",   "type": "categorical", "pii": true, "masking": "hmac"}],
     "prediction": {"name": "score", "type": "binary_score"}}"#;

    #[test]
    fn accepts_the_documented_body() {
        let spec: ModelSpec = serde_json::from_str(ISSUE_BODY).unwrap();
        let schema = ModelSchema::new(spec).unwrap();
        assert_eq!(schema.columns().len(), 4);
        let (_, email) = schema.column("email").unwrap();
        assert_eq!(email.masking, Masking::Hmac);
        assert_eq!(email.profile_kind(), Some(ProfileKind::Categorical));
        let (_, score) = schema.column("score").unwrap();
        assert_eq!(score.role, ColumnRole::Prediction);
        assert_eq!(score.profile_kind(), Some(ProfileKind::Numeric));
    }

    #[test]
    fn refuses_pii_without_masking() {
        let body = ISSUE_BODY.replace(r#", "masking": "hmac""#, "");
        let spec: ModelSpec = serde_json::from_str(&body).unwrap();
        assert_eq!(
            ModelSchema::new(spec),
            Err(SchemaError::PiiWithoutMasking("email".into()))
        );
    }

    #[test]
    fn refuses_unknown_keys_and_duplicates() {
        let body = ISSUE_BODY.replace(r#""id_field""#, r#""colour": 1, "id_field""#);
        assert!(serde_json::from_str::<ModelSpec>(&body).is_err());
        let body = ISSUE_BODY.replace(r#""amount""#, r#""country""#);
        let spec: ModelSpec = serde_json::from_str(&body).unwrap();
        assert_eq!(
            ModelSchema::new(spec),
            Err(SchemaError::DuplicateField("country".into()))
        );
    }

    #[test]
    fn refuses_hmac_on_numbers() {
        let body = ISSUE_BODY.replace(
            r#"{"name": "amount",  "type": "numeric"}"#,
            r#"{"name": "amount",  "type": "numeric", "masking": "hmac"}"#,
        );
        let spec: ModelSpec = serde_json::from_str(&body).unwrap();
        assert!(matches!(
            ModelSchema::new(spec),
            Err(SchemaError::MaskingTypeMismatch { .. })
        ));
    }

    fn with_feature(feature: serde_json::Value) -> Result<ModelSchema, SchemaError> {
        let mut spec: serde_json::Value = serde_json::from_str(ISSUE_BODY).unwrap();
        spec["features"] = serde_json::json!([feature]);
        ModelSchema::new(serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn masking_settings_are_checked_at_registration() {
        use serde_json::json;
        let ok = |f: serde_json::Value| with_feature(f).map(|s| s.columns()[0].rule);
        assert_eq!(
            ok(
                json!({"name": "c", "type": "categorical", "pii": true, "masking": "ff1",
                      "masking_options": {"min_length": 6}})
            ),
            Ok(MaskingRule::Ff1 {
                alphabet: Ff1Alphabet::Digits,
                min_length: 6
            })
        );
        assert_eq!(
            ok(
                json!({"name": "c", "type": "categorical", "pii": true, "masking": "ff1",
                      "masking_options": {"alphabet": "alphanumeric", "min_length": 4}})
            ),
            Ok(MaskingRule::Ff1 {
                alphabet: Ff1Alphabet::Alphanumeric,
                min_length: 4
            })
        );
        assert_eq!(
            ok(json!({"name": "c", "type": "text", "pii": true, "masking": "mask"})),
            Ok(MaskingRule::Mask { keep_last: 4 })
        );
        assert_eq!(
            ok(json!({"name": "t", "type": "timestamp", "pii": true, "masking": "generalize"})),
            Ok(MaskingRule::Truncate {
                unit: TimeUnit::Day
            })
        );
        let refused = |f: serde_json::Value| with_feature(f).unwrap_err().to_string();
        // 10^5 and 62^3 values can be enumerated.
        let small = refused(json!({"name": "card", "type": "categorical", "pii": true,
            "masking": "ff1", "masking_options": {"min_length": 5}}));
        assert!(
            small.contains("field 'card'")
                && small.contains("10^5 = 100000")
                && small.contains("1000000"),
            "{small}"
        );
        assert!(
            refused(json!({"name": "id", "type": "categorical", "pii": true,
            "masking": "ff1", "masking_options": {"alphabet": "alphanumeric", "min_length": 3}}))
            .contains("62^3")
        );
        assert!(
            refused(json!({"name": "c", "type": "categorical", "pii": true,
            "masking": "ff1"}))
            .contains("min_length")
        );
        assert!(
            refused(json!({"name": "n", "type": "numeric", "pii": true,
            "masking": "ff1", "masking_options": {"min_length": 9}}))
            .contains("does not apply to numeric")
        );
        assert!(
            refused(json!({"name": "b", "type": "boolean", "pii": true,
            "masking": "generalize"}))
            .contains("does not apply to boolean")
        );
        assert!(
            refused(json!({"name": "n", "type": "numeric", "pii": true,
            "masking": "generalize"}))
            .contains("bucket_width")
        );
        assert!(
            refused(json!({"name": "n", "type": "numeric", "pii": true,
            "masking": "generalize", "masking_options": {"bucket_width": -1}}))
            .contains("bucket_width")
        );
        assert!(
            refused(json!({"name": "p", "type": "categorical", "pii": true,
            "masking": "generalize", "masking_options": {"keep_prefix": 0}}))
            .contains("keep_prefix")
        );
        assert!(
            refused(json!({"name": "p", "type": "categorical", "pii": true,
            "masking": "mask", "masking_options": {"keep_last": 9}}))
            .contains("keep_last")
        );
        assert!(
            refused(json!({"name": "p", "type": "categorical", "pii": true,
            "masking": "mask", "masking_options": {"min_length": 9}}))
            .contains("min_length does not apply to masking 'mask'")
        );
        assert!(
            refused(json!({"name": "p", "type": "categorical", "pii": true,
            "masking": "hmac", "masking_options": {"keep_last": 2}}))
            .contains("keep_last does not apply")
        );
    }
}
