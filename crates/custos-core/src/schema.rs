//! Model schemas: what a model's rows look like and how each field is protected.
//!
//! [`ModelSpec`] is the body a client sends (it accepts the documented JSON verbatim);
//! [`ModelSchema`] is the checked form. Checking refuses a PII field without a masking policy,
//! duplicate or reserved field names and oversized schemas, so that a schema that exists can be
//! enforced without further questions.

use crate::names::{FieldName, ModelName};
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
}

/// Why a model specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Two fields share a name.
    #[error("field '{0}' is declared more than once")]
    DuplicateField(String),
    /// A PII field has no masking, or `none`.
    #[error("field '{0}' is marked pii but has no masking policy (use drop, redact or hmac)")]
    PiiWithoutMasking(String),
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
}

impl Column {
    /// How the column is profiled, or `None` when it is dropped and so never profiled.
    /// Text is profiled by its length (numeric); redacted fields only by presence (categorical).
    pub fn profile_kind(&self) -> Option<ProfileKind> {
        match (self.masking, self.value_type) {
            (Masking::Drop, _) => None,
            (Masking::Redact | Masking::Hmac, _) => Some(ProfileKind::Categorical),
            (Masking::None, FeatureType::Numeric | FeatureType::Timestamp | FeatureType::Text) => {
                Some(ProfileKind::Numeric)
            }
            (Masking::None, FeatureType::Categorical | FeatureType::Boolean) => {
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
            if masking == Masking::Hmac
                && !matches!(
                    feature.feature_type,
                    FeatureType::Categorical | FeatureType::Text
                )
            {
                return Err(SchemaError::MaskingTypeMismatch {
                    field: feature.name.to_string(),
                    masking: "hmac",
                    feature_type: type_name(feature.feature_type),
                });
            }
            columns.push(Column {
                name: feature.name.clone(),
                role: ColumnRole::Feature,
                value_type: feature.feature_type,
                prediction_type: None,
                pii: feature.pii,
                masking,
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
}
