//! Reference uploads: a training-data file (CSV, NDJSON or Parquet) becomes one sealed profile
//! per column, plus chunk profiles for data-driven thresholds — the rows themselves are never
//! stored.
//!
//! Owns the upload pipeline: file bytes → rows (`custos-tabular`, on the blocking pool, with a
//! panic in a hostile-file decoder contained) → the same validation and masking as live traffic
//! ([`crate::ingest::validate_and_mask`]) → profiles → sealing under the model's reference data
//! key → one store transaction with its audit record. A file with any bad row is refused whole,
//! naming every row's problems, and nothing is stored.
//!
//! Reference files often have no event id (training data); rows without one get a synthetic id
//! (`reference-<row>`). Event times of a reference are not used: every row gets the upload time.

use crate::auth::{Authorized, audit_for};
use crate::context::{RequestContext, random_id};
use crate::drift::{
    REFERENCE_CHUNKS, REFERENCE_PARTITION, reference_chunk_column, reference_label,
};
use crate::error::ApiError;
use crate::ingest::{observe, validate_and_mask_rows};
use crate::performance::{
    REFERENCE_PERFORMANCE, monitoring_config, observe_outcome, performance_kind,
};
use crate::state::{AppState, ModelEntry};
use custos_core::monitoring::stats_kind;
use custos_core::{
    FeatureType, IngestLimits, LabelValue, MaskedRecord, ModelSchema, PredictionType, RowError,
    validate_label,
};
use custos_crypto::KeyPurpose;
use custos_crypto::seal::{BlobKind, seal_blob};
use custos_proto::ReferenceInfo;
use custos_stats::{FeatureProfile, PerformanceProfile};
use custos_store::{NewReference, ReferenceRow};
use custos_tabular::{ColumnHint, TabularError, TabularFormat, TabularLimits};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// What the uploader asked for besides the file.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// The column holding ground-truth labels, if the file has one.
    pub label_field: Option<String>,
    /// A name for people; defaults to `reference-<date>`.
    pub name: Option<String>,
}

/// How each CSV column is read: the schema says what every declared field holds.
fn csv_hints(schema: &ModelSchema, label_field: Option<&str>) -> HashMap<String, ColumnHint> {
    let mut hints = HashMap::new();
    for feature in &schema.spec().features {
        let hint = match feature.feature_type {
            FeatureType::Numeric => ColumnHint::Number,
            FeatureType::Boolean => ColumnHint::Bool,
            FeatureType::Categorical | FeatureType::Text | FeatureType::Timestamp => {
                ColumnHint::String
            }
        };
        hints.insert(feature.name.to_string(), hint);
    }
    let prediction = schema.prediction();
    let numeric_output = matches!(
        prediction.prediction_type,
        PredictionType::BinaryScore | PredictionType::Regression
    );
    let output_hint = if numeric_output {
        ColumnHint::Number
    } else {
        ColumnHint::Any
    };
    hints.insert(prediction.name.to_string(), output_hint);
    hints.insert(
        schema.spec().timestamp_field.to_string(),
        ColumnHint::String,
    );
    if let Some(label) = label_field {
        let hint = match prediction.prediction_type {
            PredictionType::Regression => ColumnHint::Number,
            PredictionType::Multiclass => ColumnHint::String,
            PredictionType::BinaryScore | PredictionType::BinaryClass => ColumnHint::Any,
        };
        hints.insert(label.to_owned(), hint);
    }
    hints
}

fn tabular_error(e: TabularError) -> ApiError {
    match e {
        // Row problems are reported like ingest's, with 0-based row indexes.
        TabularError::Row {
            row,
            column,
            reason,
        } => ApiError::invalid_rows(vec![RowError {
            row: row.saturating_sub(1),
            field: column,
            reason,
        }]),
        // The crate's messages name lines and columns, never values.
        other => ApiError::unprocessable(format!("the reference file was refused: {other}")),
    }
}

/// Profiles of a reference: per column, the whole file and its row-order chunks.
struct ReferenceProfiles {
    whole: Vec<(String, FeatureProfile)>,
    chunks: Vec<(String, FeatureProfile)>,
    /// Realized performance on the reference, when it carried labels (CBPE calibrates on it).
    performance: Option<PerformanceProfile>,
}

fn profile_reference(schema: &ModelSchema, records: &[MaskedRecord]) -> ReferenceProfiles {
    let mut whole = Vec::new();
    let mut chunks = Vec::new();
    let n = records.len().max(1);
    for (index, column) in schema.columns().iter().enumerate() {
        let Some(kind) = column.profile_kind() else {
            continue;
        };
        let mut all = FeatureProfile::new(stats_kind(kind));
        let mut parts: Vec<FeatureProfile> = (0..REFERENCE_CHUNKS)
            .map(|_| FeatureProfile::new(stats_kind(kind)))
            .collect();
        for (row, record) in records.iter().enumerate() {
            let Some(value) = record.values().get(index) else {
                continue;
            };
            observe(&mut all, value);
            if let Some(part) = parts.get_mut(row * REFERENCE_CHUNKS / n) {
                observe(part, value);
            }
        }
        let name = column.name.to_string();
        for (chunk, part) in parts.into_iter().enumerate() {
            if part.count() > 0 {
                chunks.push((reference_chunk_column(chunk, &name), part));
            }
        }
        whole.push((name, all));
    }
    ReferenceProfiles {
        whole,
        chunks,
        performance: None,
    }
}

/// Decodes, validates, masks and profiles a reference file (CPU-bound: blocking pool).
/// Everything [`prepare`] needs besides the schema, the bytes and the keys.
struct Job {
    format: TabularFormat,
    options: UploadOptions,
    limits: TabularLimits,
    now: chrono::DateTime<chrono::Utc>,
    decision_threshold: f64,
}

fn prepare(
    schema: &ModelSchema,
    bytes: &[u8],
    job: &Job,
    pseudonymizer: &dyn custos_core::Pseudonymizer,
) -> Result<(usize, ReferenceProfiles), ApiError> {
    let Job {
        format,
        options,
        limits,
        now,
        decision_threshold,
    } = job;
    let (format, now, decision_threshold) = (*format, *now, *decision_threshold);
    let hints = csv_hints(schema, options.label_field.as_deref());
    let mut rows =
        custos_tabular::read_rows(bytes, format, &hints, limits).map_err(tabular_error)?;
    if rows.is_empty() {
        return Err(ApiError::unprocessable("the reference file has no rows"));
    }
    let spec = schema.spec();
    let id_field = spec.id_field.to_string();
    let time_field = spec.timestamp_field.to_string();
    let upload_time = Value::String(now.to_rfc3339());
    let mut errors: Vec<RowError> = Vec::new();
    let mut values = Vec::with_capacity(rows.len());
    let mut labels: Vec<LabelValue> = Vec::new();
    let ingest_limits = IngestLimits::default();
    for (index, row) in rows.iter_mut().enumerate() {
        if matches!(row.get(&id_field), None | Some(Value::Null)) {
            row.insert(
                id_field.clone(),
                Value::String(format!("reference-{index}")),
            );
        }
        // A reference is one population, not a time series: its rows' times are not used, and
        // training exports write them in many formats, so they are replaced, not validated.
        row.insert(time_field.clone(), upload_time.clone());
        if let Some(label_field) = &options.label_field {
            let label = row.remove(label_field).unwrap_or(Value::Null);
            let id = row.get(&id_field).cloned().unwrap_or(Value::Null);
            let probe = serde_json::json!({ "event_id": id, "label": label });
            match validate_label(schema, index, &probe, &ingest_limits, pseudonymizer) {
                Ok(label) => labels.push(label.label().clone()),
                Err(label_errors) => {
                    errors.extend(label_errors.into_iter().map(|mut e| {
                        if e.field.as_deref() == Some("label") {
                            e.field = Some(label_field.clone());
                        }
                        e
                    }));
                }
            }
        }
        values.push(Value::Object(std::mem::take(row)));
    }
    drop(rows);
    let records = match validate_and_mask_rows(schema, &values, &ingest_limits, pseudonymizer) {
        Ok(records) if errors.is_empty() => records,
        Ok(_) => return Err(ApiError::invalid_rows(errors)),
        Err(row_errors) => {
            errors.extend(row_errors);
            errors.sort_by_key(|e| e.row);
            return Err(ApiError::invalid_rows(errors));
        }
    };
    drop(values);
    let mut profiles = profile_reference(schema, &records);
    if options.label_field.is_some() {
        // Every row was valid, so records and labels are aligned row for row.
        let Some((prediction_index, _)) = schema.column(schema.prediction().name.as_str()) else {
            return Err(ApiError::internal("the schema has no prediction column"));
        };
        let mut realized =
            PerformanceProfile::new(performance_kind(schema.prediction().prediction_type));
        for (record, label) in records.iter().zip(&labels) {
            if let Some(prediction) = record.values().get(prediction_index) {
                observe_outcome(&mut realized, schema, decision_threshold, prediction, label)
                    .map_err(|e| ApiError::unprocessable(format!("reference labels: {e}")))?;
            }
        }
        profiles.performance = Some(realized);
    }
    Ok((records.len(), profiles))
}

/// Answer body of a stored reference.
pub fn reference_info(model: &str, row: &ReferenceRow) -> ReferenceInfo {
    ReferenceInfo {
        id: row.uid.clone(),
        model: model.to_owned(),
        name: row.name.clone(),
        rows: row.row_count,
        sha256: hex::encode(row.sha256),
        label_field: row.label_field.clone(),
        uploaded_by: row.created_by.clone(),
        uploaded_at: row.created_at,
    }
}

/// Stores a reference data set for `model`. Answers only after the profiles and the audit
/// record are committed together.
pub async fn upload(
    state: &AppState,
    model: Arc<ModelEntry>,
    who: &Authorized,
    ctx: &RequestContext,
    body: axum::body::Bytes,
    format: TabularFormat,
    options: UploadOptions,
) -> Result<ReferenceInfo, ApiError> {
    if let Some(label) = &options.label_field
        && model.schema.column(label).is_some()
    {
        return Err(ApiError::bad_request(format!(
            "label_field '{label}' is a declared field of the model; name the label column"
        )));
    }
    let _admission = crate::ingest::admit(state).await?;
    let now = state.clock.now();
    let sha256: [u8; 32] = Sha256::digest(&body).into();
    let limits = TabularLimits {
        max_rows: state.config.limits.max_reference_rows,
        max_bytes: state.config.limits.max_reference_bytes,
        ..TabularLimits::default()
    };
    let (config, _) = monitoring_config(state, &model).await?;
    let decision_threshold = config.performance.decision_threshold;
    let tenant_keys = state
        .keys
        .pseudonymizer_for(&model.schema.tenant())
        .map_err(|e| ApiError::internal(format!("tenant keys: {e}")))?;
    let entry = Arc::clone(&model);
    let job = Job {
        format,
        options: options.clone(),
        limits,
        now,
        decision_threshold,
    };
    let prepared = tokio::task::spawn_blocking(move || {
        // The Parquet decoder is already contained by custos-tabular; this catches anything
        // else so a hostile file costs one refused request, never the worker.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prepare(&entry.schema, &body, &job, tenant_keys.as_ref())
        }))
        .unwrap_or_else(|_| Err(ApiError::unprocessable("the reference file is malformed")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("reference worker failed: {e}")))?;
    let (row_count, profiles) = prepared?;

    let uid = format!("ref_{}", random_id().get(..16).unwrap_or_default());
    let key = state
        .keys
        .data_key(model.id, REFERENCE_PARTITION, KeyPurpose::Profiles)
        .await
        .map_err(ApiError::internal)?;
    let mut plain: Vec<(String, Vec<u8>)> = profiles
        .whole
        .iter()
        .chain(profiles.chunks.iter())
        .map(|(column, profile)| (column.clone(), profile.to_bytes()))
        .collect();
    if let Some(realized) = &profiles.performance {
        plain.push((REFERENCE_PERFORMANCE.to_owned(), realized.to_bytes()));
    }
    let mut sealed = Vec::with_capacity(plain.len());
    for (column, bytes) in plain {
        let blob = seal_blob(
            &key,
            model.id,
            REFERENCE_PARTITION,
            BlobKind::Profile,
            &reference_label(&uid, &column),
            &bytes,
        )
        .map_err(ApiError::internal)?;
        sealed.push((column, blob));
    }
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("reference-{}", now.format("%Y-%m-%d")));
    let model_name = model.schema.name().to_string();
    let audit = audit_for(
        state,
        ctx,
        who,
        "reference.upload",
        format!("model/{model_name}/reference/{uid}"),
        serde_json::json!({
            "rows": row_count,
            "sha256": hex::encode(sha256),
            "format": format.name(),
            "label_field": options.label_field,
        }),
    );
    let row = state
        .store
        .create_reference(
            &NewReference {
                uid,
                model_id: model.id,
                name,
                sha256,
                row_count: row_count as u64,
                label_field: options.label_field,
                partition: REFERENCE_PARTITION,
                created_by: who.principal.actor_id(),
                profiles: sealed,
            },
            now,
            &audit,
        )
        .await?;
    Ok(reference_info(&model_name, &row))
}
