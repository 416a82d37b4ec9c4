//! Read paths: feature summaries, drift and volume, all computed by merging stored hourly
//! profiles — never by reading rows back. A 30-day window merges at most 720 profiles per
//! feature, whatever the traffic was.

use crate::error::ApiError;
use crate::ingest::profile_label;
use crate::state::{AppState, ModelEntry};
use chrono::{DateTime, Utc};
use custos_core::{Column, HourBucket};
use custos_crypto::seal::{BlobKind, open_blob};
use custos_proto::{
    DriftBin, DriftResponse, FeatureDriftBody, SkippedFeature, VolumePoint, VolumeResponse,
};
use custos_stats::{DriftMethod, DriftThresholds, FeatureProfile, StatsError};
use std::ops::Range;

/// Longest window a query may span (about two years of hours), so one request's work is bounded.
pub const MAX_QUERY_HOURS: i64 = 24 * 800;

/// Turns an RFC 3339 range into whole hours: profiles are hourly, so a window covers every hour
/// it touches. The hours actually used are reported back to the caller.
pub fn hour_range(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Range<HourBucket>, ApiError> {
    if end <= start {
        return Err(ApiError::bad_request(
            "the end of a time range must be after its start",
        ));
    }
    let range = HourBucket::of(start)..HourBucket::ceil(end);
    if range.end.0 - range.start.0 > MAX_QUERY_HOURS {
        return Err(ApiError::bad_request(format!(
            "a time range may span at most {MAX_QUERY_HOURS} hours"
        )));
    }
    Ok(range)
}

/// Merges a column's stored profiles over a range. `None` when there are none.
pub async fn merged_profile(
    state: &AppState,
    model: &ModelEntry,
    column: &Column,
    hours: Range<HourBucket>,
) -> Result<(Option<FeatureProfile>, usize), ApiError> {
    let name = column.name.as_str();
    let stored = state.store.profile_deltas(model.id, name, hours).await?;
    let count = stored.len();
    let mut merged: Option<FeatureProfile> = None;
    for delta in stored {
        let key = state
            .keys
            .data_key(model.id, delta.partition)
            .await
            .map_err(ApiError::internal)?;
        let bytes = open_blob(
            &key,
            model.id,
            delta.partition,
            BlobKind::Profile,
            &profile_label(name, delta.hour),
            &delta.ciphertext,
        )
        .map_err(|e| ApiError::internal(format!("profile {} failed to open: {e}", delta.id)))?;
        let profile = FeatureProfile::from_bytes(&bytes)
            .map_err(|e| ApiError::internal(format!("profile {} unreadable: {e}", delta.id)))?;
        match merged.as_mut() {
            None => merged = Some(profile),
            Some(m) => m.merge(&profile).map_err(ApiError::internal)?,
        }
    }
    Ok((merged, count))
}

fn method_name(method: &DriftMethod) -> &'static str {
    match method {
        DriftMethod::Psi => "psi",
        DriftMethod::JensenShannon => "jensen_shannon",
    }
}

/// Drift of every profiled column between two windows.
pub async fn drift(
    state: &AppState,
    model: &ModelEntry,
    reference: (DateTime<Utc>, DateTime<Utc>),
    current: (DateTime<Utc>, DateTime<Utc>),
) -> Result<DriftResponse, ApiError> {
    let reference_hours = hour_range(reference.0, reference.1)?;
    let current_hours = hour_range(current.0, current.1)?;
    let config = &state.config.drift;
    let thresholds = DriftThresholds {
        psi: config.psi_threshold,
        jensen_shannon: config.jensen_shannon_threshold,
    };
    let mut features = Vec::new();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for column in model.schema.columns() {
        let Some(kind) = column.profile_kind() else {
            continue;
        };
        let name = column.name.to_string();
        let (reference_profile, _) =
            merged_profile(state, model, column, reference_hours.clone()).await?;
        let (current_profile, _) =
            merged_profile(state, model, column, current_hours.clone()).await?;
        let (Some(reference_profile), Some(current_profile)) = (reference_profile, current_profile)
        else {
            skipped.push(SkippedFeature {
                feature: name,
                reason: "no data in one of the windows".into(),
            });
            continue;
        };
        match custos_stats::compare(&reference_profile, &current_profile, &thresholds) {
            Ok(result) => {
                features.push(FeatureDriftBody {
                    feature: name,
                    kind: match kind {
                        custos_core::ProfileKind::Numeric => "numeric".into(),
                        custos_core::ProfileKind::Categorical => "categorical".into(),
                    },
                    psi: result.psi,
                    jensen_shannon: result.jensen_shannon,
                    method: method_name(&result.method).into(),
                    threshold: result.threshold,
                    drifted: result.drifted,
                    reference_count: result.reference_count,
                    current_count: result.current_count,
                    bins: result
                        .bins
                        .iter()
                        .map(|b| DriftBin {
                            label: b.label.clone(),
                            reference: b.reference_share,
                            current: b.current_share,
                        })
                        .collect(),
                });
                results.push(result);
            }
            Err(StatsError::EmptyReference | StatsError::EmptyCurrent) => {
                skipped.push(SkippedFeature {
                    feature: name,
                    reason: "only missing values in one of the windows".into(),
                });
            }
            Err(e) => return Err(ApiError::internal(e)),
        }
    }
    let dataset = custos_stats::dataset_drift(&results, config.drift_share);
    Ok(DriftResponse {
        model: model.schema.name().to_string(),
        reference_start: reference_hours.start.start(),
        reference_end: reference_hours.end.start(),
        current_start: current_hours.start.start(),
        current_end: current_hours.end.start(),
        features,
        skipped,
        drifted_features: dataset.drifted_features,
        total_features: dataset.total_features,
        drift_share: dataset.share,
        dataset_drift_threshold: config.drift_share,
        dataset_drift: dataset.drifted,
    })
}

/// Hourly volume over a range.
pub async fn volume(
    state: &AppState,
    model: &ModelEntry,
    hours: Range<HourBucket>,
) -> Result<VolumeResponse, ApiError> {
    let points = state
        .store
        .volume(model.id, hours)
        .await?
        .into_iter()
        .map(|(hour, rows)| VolumePoint {
            hour: hour.start(),
            rows,
        })
        .collect();
    Ok(VolumeResponse {
        model: model.schema.name().to_string(),
        points,
    })
}
