//! Data quality of a window, from stored profiles: missing and invalid shares, values outside
//! the reference's range, categories the reference never saw, declared fields that stopped
//! arriving, rows refused at ingestion per field, hourly volume against its own recent past, and freshness (time since the last
//! event, so a model that goes silent is noticed).
//!
//! Owns the assembly of these measures for one model and window; the measures themselves are
//! `custos_stats::quality`. Must not read rows back.

use crate::drift::{Reference, ReferenceSpec, hourly_profiles};
use crate::error::ApiError;
use crate::performance::monitoring_config;
use crate::query::hour_range;
use crate::state::{AppState, ModelEntry};
use chrono::{DateTime, Utc};
use custos_core::HourBucket;
use custos_proto::{
    FeatureQualityBody, PiiFindingBody, QualityResponse, RejectedField, VolumeCheckBody,
};
use custos_stats::FeatureProfile;
use std::collections::BTreeMap;

fn merge(hourly: Vec<(HourBucket, FeatureProfile)>) -> Result<Option<FeatureProfile>, ApiError> {
    let mut merged: Option<FeatureProfile> = None;
    for (_, profile) in hourly {
        match merged.as_mut() {
            None => merged = Some(profile),
            Some(m) => m.merge(&profile).map_err(ApiError::internal)?,
        }
    }
    Ok(merged)
}

/// Data quality of the current window. `reference` is optional: without one (no upload and no
/// window given) the range and category checks are left out.
pub async fn quality(
    state: &AppState,
    model: &ModelEntry,
    reference: Option<&ReferenceSpec>,
    current: (DateTime<Utc>, DateTime<Utc>),
) -> Result<QualityResponse, ApiError> {
    let hours = hour_range(current.0, current.1)?;
    let (config, config_version) = monitoring_config(state, model).await?;
    let reference = match reference {
        Some(spec) => Some(Reference::resolve(state, model, spec).await?),
        None if state.store.references(model.id).await?.is_empty() => None,
        None => Some(Reference::resolve(state, model, &ReferenceSpec::Uploaded(None)).await?),
    };

    let mut features = Vec::new();
    let mut missing_fields = Vec::new();
    for column in model.schema.columns() {
        if column.profile_kind().is_none() {
            continue;
        }
        let name = column.name.to_string();
        let current_profile = merge(hourly_profiles(state, model, &name, hours.clone()).await?)?;
        let reference_profile = match &reference {
            Some(r) => r.whole_profile(state, model, &name).await?,
            None => None,
        };
        let Some(current_profile) = current_profile else {
            continue;
        };
        if current_profile.count() > 0 && current_profile.missing() == current_profile.count() {
            missing_fields.push(name.clone());
        }
        let report = custos_stats::quality_report(reference_profile.as_ref(), &current_profile)
            .map_err(ApiError::internal)?;
        features.push(FeatureQualityBody {
            feature: name,
            report: serde_json::to_value(report).map_err(ApiError::internal)?,
        });
    }

    // Volume: each hour of the window against the hours before it.
    let baseline_hours = i64::from(config.quality.volume_baseline_hours);
    let volume_range = HourBucket(hours.start.0 - baseline_hours)..hours.end;
    let volume: BTreeMap<HourBucket, u64> = state
        .store
        .volume(model.id, volume_range)
        .await?
        .into_iter()
        .collect();
    let now_hour = HourBucket::of(state.clock.now());
    let mut volume_checks = Vec::new();
    let mut anomalous_hours = 0;
    let mut hour = hours.start;
    while hour < hours.end && hour <= now_hour {
        let baseline: Vec<u64> = (hour.0 - baseline_hours..hour.0)
            .map(|h| volume.get(&HourBucket(h)).copied().unwrap_or_default())
            .collect();
        let rows = volume.get(&hour).copied().unwrap_or_default();
        // The hour in progress is incomplete: judging it would cry wolf every hour.
        if hour < now_hour {
            let check = custos_stats::volume_anomaly(&baseline, rows, config.quality.volume_k)
                .map_err(ApiError::internal)?;
            if check.verdict != custos_stats::VolumeVerdict::Normal {
                anomalous_hours += 1;
            }
            volume_checks.push(VolumeCheckBody {
                hour: hour.start(),
                rows,
                check: serde_json::to_value(check).map_err(ApiError::internal)?,
            });
        }
        hour = HourBucket(hour.0 + 1);
    }

    let rejected = state
        .store
        .rejections(model.id, hours.clone())
        .await?
        .into_iter()
        .map(|(field, rows)| RejectedField { field, rows })
        .collect();
    let pii_findings = state
        .store
        .pii_findings(model.id, hours.clone())
        .await?
        .into_iter()
        .map(|(field, kind, count)| PiiFindingBody { field, kind, count })
        .collect();
    let last_event = state.store.last_event_time(model.id).await?;
    let now = state.clock.now();
    let max_age = i64::from(config.quality.max_silence_minutes) * 60 * 1_000_000;
    let fresh = custos_stats::freshness(
        now.timestamp_micros(),
        last_event.map(|t| t.timestamp_micros()),
        max_age,
    );
    Ok(QualityResponse {
        model: model.schema.name().to_string(),
        start: hours.start.start(),
        end: hours.end.start(),
        config_version,
        reference: reference.as_ref().map(Reference::body),
        features,
        missing_fields,
        rejected,
        pii_findings,
        volume: volume_checks,
        anomalous_hours,
        last_event,
        freshness: serde_json::to_value(fresh).map_err(ApiError::internal)?,
    })
}
