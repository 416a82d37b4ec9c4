//! Read paths: feature summaries and volume (drift is in `drift.rs`), all computed by merging stored hourly
//! profiles — never by reading rows back. A 30-day window merges at most 720 profiles per
//! feature, whatever the traffic was.

use crate::error::ApiError;
use crate::state::{AppState, ModelEntry};
use chrono::{DateTime, Utc};
use custos_core::{Column, HourBucket};
use custos_proto::{VolumePoint, VolumeResponse};
use custos_stats::FeatureProfile;
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

/// Merges a column's stored profiles over a range. `None` when there are none; also returns
/// how many hourly profiles were merged.
pub async fn merged_profile(
    state: &AppState,
    model: &ModelEntry,
    column: &Column,
    hours: Range<HourBucket>,
) -> Result<(Option<FeatureProfile>, usize), ApiError> {
    let hourly = crate::drift::hourly_profiles(state, model, column.name.as_str(), hours).await?;
    let count = hourly.len();
    let mut merged: Option<FeatureProfile> = None;
    for (_, profile) in hourly {
        match merged.as_mut() {
            None => merged = Some(profile),
            Some(m) => m.merge(&profile).map_err(ApiError::internal)?,
        }
    }
    Ok((merged, count))
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
