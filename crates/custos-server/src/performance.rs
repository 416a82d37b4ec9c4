//! Model performance: realized from labels that arrived (hours or days) after their
//! predictions, and estimated without labels for binary classifiers (CBPE), per chunk and per
//! segment.
//!
//! Owns: turning a (prediction, label) pair into an observation of the statistics crate's
//! performance summaries ([`observe_outcome`], shared with reference uploads), joining stored
//! predictions with stored labels for a window, and the CBPE wiring (calibration fitted on the
//! newest reference that carried labels).
//!
//! Unlike drift, realized performance must pair each prediction with its own label, so it reads
//! the window's sealed batches back and looks their labels up by keyed event id. That work is
//! bounded by `limits.max_performance_rows`; the join is done on the blocking pool.

use crate::drift::{Chunking, reference_label};
use crate::error::ApiError;
use crate::query::hour_range;
use crate::state::{AppState, ModelEntry};
use chrono::{DateTime, Utc};
use custos_core::{
    EventKey, HourBucket, LabelValue, MaskedRecord, MaskedValue, ModelSchema, MonitoringConfig,
    PredictionType, Pseudonymizer,
};
use custos_crypto::KeyPurpose;
use custos_crypto::seal::{BlobKind, open_batch, open_blob};
use custos_proto::{PerformanceChunkBody, PerformanceResponse, SegmentPerformanceBody};
use custos_stats::{CbpeModel, PerformanceKind, PerformanceProfile, ScoreHistogram, StatsError};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// The reserved column name under which a reference's realized performance is stored.
pub const REFERENCE_PERFORMANCE: &str = "$performance";
/// Most segments reported; the rest are pooled into `(other)`.
pub const MAX_SEGMENTS: usize = 20;

/// The summary kind a prediction type needs.
pub fn performance_kind(prediction: PredictionType) -> PerformanceKind {
    match prediction {
        PredictionType::BinaryScore | PredictionType::BinaryClass => PerformanceKind::Binary,
        PredictionType::Multiclass => PerformanceKind::Multiclass,
        PredictionType::Regression => PerformanceKind::Regression,
    }
}

/// Whether a binary prediction or label value names the positive class: `1`, `true`, or the
/// second of the model's two declared classes.
fn is_positive(text: &str, classes: &[String]) -> bool {
    match classes.get(1) {
        Some(positive) if classes.len() == 2 && !matches!(text, "0" | "1" | "true" | "false") => {
            text == positive
        }
        _ => matches!(text, "1" | "true"),
    }
}

fn label_text(label: &LabelValue) -> String {
    match label {
        LabelValue::Number(n) if *n == 1.0 => "1".into(),
        LabelValue::Number(n) if *n == 0.0 => "0".into(),
        LabelValue::Number(n) => n.to_string(),
        LabelValue::Class(c) => c.clone(),
    }
}

fn prediction_text(value: &MaskedValue) -> Option<String> {
    match value {
        MaskedValue::Text(s) => Some(s.clone()),
        MaskedValue::Bool(b) => Some(b.to_string()),
        MaskedValue::Number(n) if *n == 1.0 => Some("1".into()),
        MaskedValue::Number(n) if *n == 0.0 => Some("0".into()),
        MaskedValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Feeds one labelled prediction into a summary. A prediction that is missing (or masked) is
/// skipped: `Ok(false)`.
pub fn observe_outcome(
    profile: &mut PerformanceProfile,
    schema: &ModelSchema,
    decision_threshold: f64,
    prediction: &MaskedValue,
    label: &LabelValue,
) -> Result<bool, StatsError> {
    let spec = schema.prediction();
    match (profile, spec.prediction_type) {
        (PerformanceProfile::Binary(p), PredictionType::BinaryScore) => {
            let MaskedValue::Number(score) = prediction else {
                return Ok(false);
            };
            let actual = is_positive(&label_text(label), &spec.classes);
            p.observe(actual, *score >= decision_threshold, Some(*score))?;
        }
        (PerformanceProfile::Binary(p), _) => {
            let Some(predicted) = prediction_text(prediction) else {
                return Ok(false);
            };
            let actual = is_positive(&label_text(label), &spec.classes);
            p.observe(actual, is_positive(&predicted, &spec.classes), None)?;
        }
        (PerformanceProfile::Multiclass(p), _) => {
            let Some(predicted) = prediction_text(prediction) else {
                return Ok(false);
            };
            p.observe(&label_text(label), &predicted, None)?;
        }
        (PerformanceProfile::Regression(p), _) => {
            let (MaskedValue::Number(predicted), LabelValue::Number(actual)) = (prediction, label)
            else {
                return Ok(false);
            };
            p.observe(*actual, *predicted)?;
        }
    }
    Ok(true)
}

/// The model's monitoring configuration in force, and its version.
pub async fn monitoring_config(
    state: &AppState,
    model: &ModelEntry,
) -> Result<(MonitoringConfig, Option<i64>), ApiError> {
    Ok(match state.store.monitoring_config(model.id).await? {
        Some(row) => (
            serde_json::from_str(&row.config_json)
                .map_err(|e| ApiError::internal(format!("stored monitoring config: {e}")))?,
            Some(row.version),
        ),
        None => (MonitoringConfig::default(), None),
    })
}

/// One prediction read back from a batch: its time, key, prediction and segment value.
struct Prediction {
    time: DateTime<Utc>,
    key: EventKey,
    value: MaskedValue,
    segment: Option<String>,
}

fn chunk_of(chunks: &[Range<HourBucket>], hour: HourBucket) -> Option<usize> {
    chunks.iter().position(|c| c.contains(&hour))
}

fn metrics_json(profile: &PerformanceProfile) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(profile.metrics()).map_err(ApiError::internal)
}

/// The newest reference set's CBPE model, if the model is a binary scorer and that reference
/// carried labels.
async fn cbpe_model(
    state: &AppState,
    model: &ModelEntry,
    threshold: f64,
) -> Result<Option<(CbpeModel, String)>, ApiError> {
    if model.schema.prediction().prediction_type != PredictionType::BinaryScore {
        return Ok(None);
    }
    let Some(reference) = state.store.references(model.id).await?.into_iter().next() else {
        return Ok(None);
    };
    let stored = state.store.reference_profiles(reference.id).await?;
    let Some((_, ciphertext)) = stored
        .iter()
        .find(|(column, _)| column == REFERENCE_PERFORMANCE)
    else {
        return Ok(None);
    };
    let key = state
        .keys
        .data_key(model.id, reference.partition, KeyPurpose::Profiles)
        .await
        .map_err(ApiError::internal)?;
    let bytes = open_blob(
        &key,
        model.id,
        reference.partition,
        BlobKind::Profile,
        &reference_label(&reference.uid, REFERENCE_PERFORMANCE),
        ciphertext,
    )
    .map_err(|e| ApiError::internal(format!("reference performance failed to open: {e}")))?;
    let PerformanceProfile::Binary(binary) =
        PerformanceProfile::from_bytes(&bytes).map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    match CbpeModel::fit(&binary, threshold) {
        Ok(model) => Ok(Some((model, reference.uid))),
        // A reference with a single class cannot calibrate anything.
        Err(_) => Ok(None),
    }
}

/// Realized (and, for binary scorers with a labelled reference, estimated) performance over a
/// window, per chunk and per segment of `segment_by`.
pub async fn performance(
    state: &AppState,
    model: &ModelEntry,
    window: (DateTime<Utc>, DateTime<Utc>),
    chunking: Chunking,
    segment_by: Option<&str>,
) -> Result<PerformanceResponse, ApiError> {
    let hours = hour_range(window.0, window.1)?;
    let (config, config_version) = monitoring_config(state, model).await?;
    let threshold = config.performance.decision_threshold;
    let schema = &model.schema;
    let Some((prediction_index, _)) = schema.column(schema.prediction().name.as_str()) else {
        return Err(ApiError::internal("the schema has no prediction column"));
    };
    let segment_index = match segment_by {
        None => None,
        Some(name) => match schema.column(name) {
            Some((index, column))
                if column.profile_kind() == Some(custos_core::ProfileKind::Categorical) =>
            {
                Some(index)
            }
            _ => {
                return Err(ApiError::bad_request(
                    "segment_by must name a profiled categorical field of the model",
                ));
            }
        },
    };
    let volume: BTreeMap<HourBucket, u64> = state
        .store
        .volume(model.id, hours.clone())
        .await?
        .into_iter()
        .collect();
    let rows_in_window: u64 = volume.values().sum();
    let max_rows = state.config.limits.max_performance_rows;
    if rows_in_window > max_rows as u64 {
        return Err(ApiError::bad_request(format!(
            "the window holds {rows_in_window} predictions; performance reads at most \
             {max_rows} per request: ask for a shorter window"
        )));
    }
    let chunks = crate::drift::chunk_hours(&hours, chunking, &volume)?;

    // Read the window's predictions back.
    let range = hours.start.start()..hours.end.start();
    let mut predictions = Vec::new();
    for batch in state.store.batches(model.id, range.clone()).await? {
        let key = state
            .keys
            .data_key(model.id, batch.partition, KeyPurpose::Events)
            .await
            .map_err(ApiError::internal)?;
        let records: Vec<MaskedRecord> =
            open_batch(&key, model.id, batch.partition, &batch.ciphertext).map_err(|e| {
                ApiError::internal(format!("batch {} failed to open: {e}", batch.id))
            })?;
        for record in records {
            let time = record.timestamp();
            if !range.contains(&time) {
                continue;
            }
            // Batches keep the event id, not its key: derive the key labels are stored under.
            let event_key = state
                .keys
                .pseudonymizer()
                .event_key(schema.name(), record.event_id());
            let values = record.values();
            predictions.push(Prediction {
                time,
                key: event_key,
                value: values
                    .get(prediction_index)
                    .cloned()
                    .unwrap_or(MaskedValue::Missing),
                segment: segment_index.and_then(|i| match values.get(i) {
                    Some(
                        MaskedValue::Text(s) | MaskedValue::Pseudonym(s) | MaskedValue::Token(s),
                    ) => Some(s.clone()),
                    Some(MaskedValue::Bool(b)) => Some(b.to_string()),
                    Some(MaskedValue::Number(n)) => Some(n.to_string()),
                    _ => None,
                }),
            });
        }
    }

    // Look their labels up.
    let keys: Vec<EventKey> = predictions.iter().map(|p| p.key).collect();
    let mut labels: HashMap<EventKey, LabelValue> = HashMap::with_capacity(keys.len());
    for stored in state.store.labels_for(model.id, &keys).await? {
        let key = state
            .keys
            .data_key(model.id, stored.partition, KeyPurpose::Events)
            .await
            .map_err(ApiError::internal)?;
        let bytes = open_blob(
            &key,
            model.id,
            stored.partition,
            BlobKind::Label,
            &crate::ingest::label_label(&stored.event_key),
            &stored.ciphertext,
        )
        .map_err(|e| ApiError::internal(format!("a label failed to open: {e}")))?;
        #[derive(serde::Deserialize)]
        struct StoredLabelBody {
            label: LabelValue,
        }
        let body: StoredLabelBody = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("a stored label is unreadable: {e}")))?;
        labels.insert(stored.event_key, body.label);
    }

    let cbpe = cbpe_model(state, model, threshold).await?;
    let kind = performance_kind(schema.prediction().prediction_type);
    let new_profile = || PerformanceProfile::new(kind);
    let mut overall = new_profile();
    let mut per_chunk: Vec<PerformanceProfile> = chunks.iter().map(|_| new_profile()).collect();
    let mut chunk_predictions = vec![0u64; chunks.len()];
    let mut chunk_scores: Vec<ScoreHistogram> =
        chunks.iter().map(|_| ScoreHistogram::new()).collect();
    let mut overall_scores = ScoreHistogram::new();
    let mut segments: BTreeMap<String, (u64, PerformanceProfile)> = BTreeMap::new();
    let mut total_predictions = 0u64;
    for p in &predictions {
        total_predictions += 1;
        let chunk = chunk_of(&chunks, HourBucket::of(p.time));
        if let Some(i) = chunk
            && let Some(n) = chunk_predictions.get_mut(i)
        {
            *n += 1;
        }
        if let MaskedValue::Number(score) = p.value
            && cbpe.is_some()
        {
            overall_scores.observe(score).map_err(ApiError::internal)?;
            if let Some(h) = chunk.and_then(|i| chunk_scores.get_mut(i)) {
                h.observe(score).map_err(ApiError::internal)?;
            }
        }
        let Some(label) = labels.get(&p.key) else {
            continue;
        };
        let observed = observe_outcome(&mut overall, schema, threshold, &p.value, label)
            .map_err(ApiError::internal)?;
        if !observed {
            continue;
        }
        if let Some(profile) = chunk.and_then(|i| per_chunk.get_mut(i)) {
            observe_outcome(profile, schema, threshold, &p.value, label)
                .map_err(ApiError::internal)?;
        }
        if let Some(segment) = &p.segment {
            let entry = segments
                .entry(segment.clone())
                .or_insert_with(|| (0, new_profile()));
            entry.0 += 1;
            observe_outcome(&mut entry.1, schema, threshold, &p.value, label)
                .map_err(ApiError::internal)?;
        }
    }

    let estimate = |scores: &ScoreHistogram| -> Option<serde_json::Value> {
        let (model, _) = cbpe.as_ref()?;
        if scores.is_empty() {
            return None;
        }
        model
            .estimate(scores)
            .ok()
            .and_then(|e| serde_json::to_value(e).ok())
    };
    let mut chunk_bodies = Vec::with_capacity(chunks.len());
    for (i, range) in chunks.iter().enumerate() {
        let realized = per_chunk.get(i);
        chunk_bodies.push(PerformanceChunkBody {
            start: Some(range.start.start()),
            end: Some(range.end.start()),
            predictions: chunk_predictions.get(i).copied().unwrap_or_default(),
            labelled: realized.map(PerformanceProfile::rows).unwrap_or_default(),
            realized: match realized {
                Some(p) if p.rows() > 0 => Some(metrics_json(p)?),
                _ => None,
            },
            estimated: chunk_scores.get(i).and_then(estimate),
        });
    }
    // Segments: the largest by labelled rows, the rest pooled.
    let mut ordered: Vec<(String, (u64, PerformanceProfile))> = segments.into_iter().collect();
    ordered.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    let mut segment_bodies = Vec::new();
    let mut other: Option<(u64, PerformanceProfile)> = None;
    for (index, (name, (rows, profile))) in ordered.into_iter().enumerate() {
        if index < MAX_SEGMENTS {
            segment_bodies.push(SegmentPerformanceBody {
                segment: name,
                labelled: rows,
                realized: metrics_json(&profile)?,
            });
        } else {
            match other.as_mut() {
                None => other = Some((rows, profile)),
                Some((n, pooled)) => {
                    *n += rows;
                    pooled.merge(&profile).map_err(ApiError::internal)?;
                }
            }
        }
    }
    if let Some((rows, profile)) = other {
        segment_bodies.push(SegmentPerformanceBody {
            segment: custos_stats::OTHER_LABEL.into(),
            labelled: rows,
            realized: metrics_json(&profile)?,
        });
    }
    Ok(PerformanceResponse {
        model: schema.name().to_string(),
        start: hours.start.start(),
        end: hours.end.start(),
        prediction_type: serde_json::to_value(schema.prediction().prediction_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        decision_threshold: threshold,
        config_version,
        overall: PerformanceChunkBody {
            start: None,
            end: None,
            predictions: total_predictions,
            labelled: overall.rows(),
            realized: if overall.rows() > 0 {
                Some(metrics_json(&overall)?)
            } else {
                None
            },
            estimated: estimate(&overall_scores),
        },
        chunks: chunk_bodies,
        segment_by: segment_by.map(str::to_owned),
        segments: segment_bodies,
        estimation_reference: cbpe.map(|(_, uid)| uid),
    })
}
