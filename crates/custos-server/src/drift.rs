//! Drift between a reference and the current data, per feature and per chunk, computed from
//! stored profiles only.
//!
//! Owns: resolving the reference (an uploaded reference set, or a time window), cutting the
//! current window into chunks (by hour, day, week, or by row count over whole hours), choosing
//! each feature's statistic from the model's monitoring configuration
//! ([`custos_core::DriftConfig::choice`]), data-driven thresholds, and the dataset verdict. Must
//! not read rows back: a 30-day hourly window merges at most 720 sketches per feature whatever
//! the traffic was, and an uploaded reference is one sketch per feature.

use crate::error::ApiError;
use crate::ingest::profile_label;
use crate::query::hour_range;
use crate::state::{AppState, ModelEntry};
use chrono::{DateTime, Utc};
use custos_core::monitoring::stats_kind;
use custos_core::{Column, HourBucket, MonitoringConfig, Partition, ProfileKind};
use custos_crypto::KeyPurpose;
use custos_crypto::seal::{BlobKind, open_blob};
use custos_proto::{
    DriftBin, DriftChunkBody, DriftReferenceBody, DriftResponse, FeatureDriftBody, FeatureTestBody,
    SkippedFeature,
};
use custos_stats::{
    DriftThresholds, FeatureProfile, MethodChoice, StatMethod, StatsError, TestResult,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Most chunks one drift request may produce (each chunk runs every feature's statistic).
pub const MAX_CHUNKS: usize = 2_000;
/// Chunks a time-window reference is cut into for data-driven thresholds (by whole hours).
pub const REFERENCE_CHUNKS: usize = 10;

/// Where the reference comes from.
#[derive(Debug, Clone)]
pub enum ReferenceSpec {
    /// A time window of the model's own traffic.
    Window(DateTime<Utc>, DateTime<Utc>),
    /// An uploaded reference set: the newest, or the one with this public id.
    Uploaded(Option<String>),
}

/// How the current window is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// One result for the whole window only.
    None,
    /// Chunks of this many hours (1 = hour, 24 = day, 168 = week), aligned to the window start.
    Hours(i64),
    /// Consecutive whole hours until a chunk holds at least this many rows. Profiles are
    /// hourly, so a chunk cannot end inside an hour: chunks hold `>= n` rows (the last one may
    /// hold fewer).
    Rows(u64),
}

impl Chunking {
    /// Parses `hour`, `day`, `week` or `rows:N`.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        match raw {
            "hour" => Ok(Self::Hours(1)),
            "day" => Ok(Self::Hours(24)),
            "week" => Ok(Self::Hours(24 * 7)),
            other => other
                .strip_prefix("rows:")
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n >= 1)
                .map(Self::Rows)
                .ok_or_else(|| {
                    ApiError::bad_request("chunk must be hour, day, week or rows:N with N >= 1")
                }),
        }
    }
}

/// The label binding an uploaded reference's profile to its set and column.
pub fn reference_label(uid: &str, column: &str) -> String {
    format!("reference:{uid}:{column}")
}

/// The stored column name of a reference chunk's profile (used for data-driven thresholds).
/// `$` cannot start a field name, so it never collides with a column.
pub fn reference_chunk_column(chunk: usize, column: &str) -> String {
    format!("$chunk{chunk}:{column}")
}

fn open_profile(bytes: &[u8]) -> Result<FeatureProfile, ApiError> {
    FeatureProfile::from_bytes(bytes)
        .map_err(|e| ApiError::internal(format!("a stored profile is unreadable: {e}")))
}

/// Stored hourly profiles of a column over a range, merged per hour, in hour order.
pub async fn hourly_profiles(
    state: &AppState,
    model: &ModelEntry,
    column: &str,
    hours: Range<HourBucket>,
) -> Result<Vec<(HourBucket, FeatureProfile)>, ApiError> {
    let stored = state.store.profile_deltas(model.id, column, hours).await?;
    let mut merged: Vec<(HourBucket, FeatureProfile)> = Vec::new();
    for delta in stored {
        let key = state
            .keys
            .data_key(model.id, delta.partition, KeyPurpose::Profiles)
            .await
            .map_err(ApiError::internal)?;
        let bytes = open_blob(
            &key,
            model.id,
            delta.partition,
            BlobKind::Profile,
            &profile_label(column, delta.hour),
            &delta.ciphertext,
        )
        .map_err(|e| ApiError::internal(format!("profile {} failed to open: {e}", delta.id)))?;
        let profile = open_profile(&bytes)?;
        match merged.last_mut() {
            Some((hour, last)) if *hour == delta.hour => {
                last.merge(&profile).map_err(ApiError::internal)?;
            }
            _ => merged.push((delta.hour, profile)),
        }
    }
    Ok(merged)
}

fn merge_all<'a>(
    profiles: impl IntoIterator<Item = &'a FeatureProfile>,
) -> Result<Option<FeatureProfile>, ApiError> {
    let mut merged: Option<FeatureProfile> = None;
    for profile in profiles {
        match merged.as_mut() {
            None => merged = Some(profile.clone()),
            Some(m) => m.merge(profile).map_err(ApiError::internal)?,
        }
    }
    Ok(merged)
}

/// One feature's reference: the whole reference, and its chunks (for data-driven thresholds).
struct ReferenceProfiles {
    whole: Option<FeatureProfile>,
    chunks: Vec<FeatureProfile>,
}

/// The resolved reference of a request.
pub enum Reference {
    Window(Range<HourBucket>),
    Uploaded {
        row: custos_store::ReferenceRow,
        profiles: BTreeMap<String, Vec<u8>>,
    },
}

impl Reference {
    /// Resolves a reference spec: reads (and opens) an uploaded set's profiles, or checks a
    /// window.
    pub async fn resolve(
        state: &AppState,
        model: &ModelEntry,
        spec: &ReferenceSpec,
    ) -> Result<Self, ApiError> {
        match spec {
            ReferenceSpec::Window(start, end) => Ok(Self::Window(hour_range(*start, *end)?)),
            ReferenceSpec::Uploaded(uid) => {
                let sets = state.store.references(model.id).await?;
                let row = match uid {
                    None => sets.into_iter().next().ok_or_else(|| {
                        ApiError::bad_request(
                            "the model has no uploaded reference: upload one, or give \
                             reference_start and reference_end",
                        )
                    })?,
                    Some(uid) => sets
                        .into_iter()
                        .find(|r| &r.uid == uid)
                        .ok_or_else(|| ApiError::not_found("reference"))?,
                };
                let key = state
                    .keys
                    .data_key(model.id, row.partition, KeyPurpose::Profiles)
                    .await
                    .map_err(ApiError::internal)?;
                let mut profiles = BTreeMap::new();
                for (column, ciphertext) in state.store.reference_profiles(row.id).await? {
                    let bytes = open_blob(
                        &key,
                        model.id,
                        row.partition,
                        BlobKind::Profile,
                        &reference_label(&row.uid, &column),
                        &ciphertext,
                    )
                    .map_err(|e| {
                        ApiError::internal(format!("reference profile failed to open: {e}"))
                    })?;
                    profiles.insert(column, bytes);
                }
                Ok(Self::Uploaded { row, profiles })
            }
        }
    }

    async fn profiles(
        &self,
        state: &AppState,
        model: &ModelEntry,
        column: &str,
    ) -> Result<ReferenceProfiles, ApiError> {
        match self {
            Self::Window(hours) => {
                let hourly = hourly_profiles(state, model, column, hours.clone()).await?;
                let whole = merge_all(hourly.iter().map(|(_, p)| p))?;
                // Reference chunks: the window's hours cut into REFERENCE_CHUNKS equal spans.
                let span = (hours.end.0 - hours.start.0).max(1);
                let mut chunks: Vec<Vec<&FeatureProfile>> = vec![Vec::new(); REFERENCE_CHUNKS];
                for (hour, profile) in &hourly {
                    let offset = i128::from(hour.0 - hours.start.0);
                    let index = (offset * REFERENCE_CHUNKS as i128 / i128::from(span)) as usize;
                    if let Some(chunk) = chunks.get_mut(index.min(REFERENCE_CHUNKS - 1)) {
                        chunk.push(profile);
                    }
                }
                let mut merged = Vec::new();
                for chunk in chunks {
                    if let Some(profile) = merge_all(chunk)? {
                        merged.push(profile);
                    }
                }
                Ok(ReferenceProfiles {
                    whole,
                    chunks: merged,
                })
            }
            Self::Uploaded { profiles, .. } => {
                let whole = profiles.get(column).map(|b| open_profile(b)).transpose()?;
                let mut chunks = Vec::new();
                for index in 0..REFERENCE_CHUNKS {
                    if let Some(bytes) = profiles.get(&reference_chunk_column(index, column)) {
                        chunks.push(open_profile(bytes)?);
                    }
                }
                Ok(ReferenceProfiles { whole, chunks })
            }
        }
    }

    /// The whole reference's profile of one column, if it has one.
    pub async fn whole_profile(
        &self,
        state: &AppState,
        model: &ModelEntry,
        column: &str,
    ) -> Result<Option<FeatureProfile>, ApiError> {
        Ok(self.profiles(state, model, column).await?.whole)
    }

    /// How the reference is described in answers.
    pub fn body(&self) -> DriftReferenceBody {
        match self {
            Self::Window(hours) => DriftReferenceBody {
                kind: "window".into(),
                start: Some(hours.start.start()),
                end: Some(hours.end.start()),
                id: None,
                name: None,
                sha256: None,
                rows: None,
            },
            Self::Uploaded { row, .. } => DriftReferenceBody {
                kind: "uploaded".into(),
                start: None,
                end: None,
                id: Some(row.uid.clone()),
                name: Some(row.name.clone()),
                sha256: Some(hex::encode(row.sha256)),
                rows: Some(row.row_count),
            },
        }
    }
}

/// The non-missing count the default rule looks at, and the distinct count of reference ∪
/// current (categorical only).
fn rule_inputs(reference: &FeatureProfile, current: &FeatureProfile) -> (u64, u64) {
    match (reference, current) {
        (FeatureProfile::Numeric(r), _) => (r.finite(), 0),
        (FeatureProfile::Categorical(r), FeatureProfile::Categorical(c)) => {
            let distinct = if r.is_exact() && c.is_exact() {
                let names: BTreeSet<String> = r
                    .category_counts()
                    .into_iter()
                    .chain(c.category_counts())
                    .map(|(name, _)| name)
                    .collect();
                names.len() as u64
            } else {
                r.distinct_estimate().max(c.distinct_estimate())
            };
            (r.present(), distinct)
        }
        (FeatureProfile::Categorical(r), _) => (r.present(), 0),
    }
}

/// The statistic and threshold of one feature, and where the threshold came from.
struct FeatureMethod {
    choice: MethodChoice,
    source: &'static str,
}

fn feature_method(
    config: &MonitoringConfig,
    column: &Column,
    kind: ProfileKind,
    reference: &ReferenceProfiles,
    whole_reference: &FeatureProfile,
    current: &FeatureProfile,
) -> FeatureMethod {
    let (count, distinct) = rule_inputs(whole_reference, current);
    let name = column.name.as_str();
    let choice = config.drift.choice(name, kind, count, distinct);
    let setting = config.drift.setting(name, kind);
    let Some(setting) = setting else {
        return FeatureMethod {
            choice,
            source: "default_rule",
        };
    };
    if let Some(k) = setting.data_driven_k {
        let statistics: Vec<f64> = reference
            .chunks
            .iter()
            .filter_map(|chunk| {
                custos_stats::run(choice.method, choice.threshold, whole_reference, chunk)
                    .ok()
                    .map(|r| r.statistic)
            })
            .collect();
        if let Some((_, _, threshold)) = custos_stats::data_driven_threshold(&statistics, k) {
            // A threshold of 0 (identical chunks) would flag any change at all.
            if threshold > 0.0 {
                return FeatureMethod {
                    choice: MethodChoice {
                        method: choice.method,
                        threshold,
                    },
                    source: "data_driven",
                };
            }
        }
        return FeatureMethod {
            choice,
            source: "data_driven_fallback",
        };
    }
    let source = if config
        .drift
        .features
        .keys()
        .any(|f| f.as_str() == column.name.as_str())
    {
        "feature"
    } else {
        "kind"
    };
    FeatureMethod { choice, source }
}

fn method_name(method: StatMethod) -> String {
    serde_json::to_value(method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn test_body(feature: &str, result: &TestResult) -> FeatureTestBody {
    FeatureTestBody {
        feature: feature.to_owned(),
        statistic: result.statistic,
        p_value: result.p_value,
        threshold: result.threshold,
        drifted: result.drifted,
    }
}

/// The current window's hours, cut into chunks.
pub fn chunk_hours(
    window: &Range<HourBucket>,
    chunking: Chunking,
    volume: &BTreeMap<HourBucket, u64>,
) -> Result<Vec<Range<HourBucket>>, ApiError> {
    let mut chunks = Vec::new();
    match chunking {
        Chunking::None => {}
        Chunking::Hours(size) => {
            let mut start = window.start;
            while start < window.end {
                let end = HourBucket((start.0 + size).min(window.end.0));
                chunks.push(start..end);
                start = end;
                if chunks.len() > MAX_CHUNKS {
                    break;
                }
            }
        }
        Chunking::Rows(target) => {
            let mut start: Option<HourBucket> = None;
            let mut rows = 0u64;
            for (&hour, &n) in volume.range(window.clone()) {
                let first = *start.get_or_insert(hour);
                rows += n;
                if rows >= target {
                    chunks.push(first..HourBucket(hour.0 + 1));
                    start = None;
                    rows = 0;
                }
                if chunks.len() > MAX_CHUNKS {
                    break;
                }
            }
            if let (Some(first), Some((&last, _))) = (start, volume.range(window.clone()).last()) {
                chunks.push(first..HourBucket(last.0 + 1));
            }
        }
    }
    if chunks.len() > MAX_CHUNKS {
        return Err(ApiError::bad_request(format!(
            "the request would produce more than {MAX_CHUNKS} chunks: use larger chunks or a \
             shorter window"
        )));
    }
    Ok(chunks)
}

/// Drift of every profiled column of `model` between the reference and the current window.
pub async fn drift(
    state: &AppState,
    model: &ModelEntry,
    reference: &ReferenceSpec,
    current: (DateTime<Utc>, DateTime<Utc>),
    chunking: Chunking,
) -> Result<DriftResponse, ApiError> {
    let current_hours = hour_range(current.0, current.1)?;
    let (config, config_version) = crate::performance::monitoring_config(state, model).await?;
    let reference = Reference::resolve(state, model, reference).await?;
    let volume: BTreeMap<HourBucket, u64> = state
        .store
        .volume(model.id, current_hours.clone())
        .await?
        .into_iter()
        .collect();
    let chunk_ranges = chunk_hours(&current_hours, chunking, &volume)?;
    let bin_thresholds = DriftThresholds {
        psi: state.config.drift.psi_threshold,
        jensen_shannon: state.config.drift.jensen_shannon_threshold,
    };

    let mut features = Vec::new();
    let mut skipped = Vec::new();
    let mut chunk_tests: Vec<Vec<FeatureTestBody>> = vec![Vec::new(); chunk_ranges.len()];
    let mut chunk_skipped: Vec<Vec<String>> = vec![Vec::new(); chunk_ranges.len()];
    for column in model.schema.columns() {
        let Some(kind) = column.profile_kind() else {
            continue;
        };
        let name = column.name.to_string();
        if config.drift.excludes(&name) {
            skipped.push(SkippedFeature {
                feature: name,
                reason: "excluded from drift by the monitoring configuration".into(),
            });
            continue;
        }
        let reference_profiles = reference.profiles(state, model, &name).await?;
        let hourly = hourly_profiles(state, model, &name, current_hours.clone()).await?;
        let whole_current = merge_all(hourly.iter().map(|(_, p)| p))?;
        let (Some(whole_reference), Some(whole_current)) =
            (reference_profiles.whole.as_ref(), whole_current)
        else {
            skipped.push(SkippedFeature {
                feature: name.clone(),
                reason: "no data in the reference or in the current window".into(),
            });
            for list in &mut chunk_skipped {
                list.push(name.clone());
            }
            continue;
        };
        let method = feature_method(
            &config,
            column,
            kind,
            &reference_profiles,
            whole_reference,
            &whole_current,
        );
        let choice = method.choice;
        let result = match custos_stats::run(
            choice.method,
            choice.threshold,
            whole_reference,
            &whole_current,
        ) {
            Ok(result) => result,
            Err(StatsError::EmptyReference | StatsError::EmptyCurrent) => {
                skipped.push(SkippedFeature {
                    feature: name.clone(),
                    reason: "only missing values in the reference or in the current window".into(),
                });
                for list in &mut chunk_skipped {
                    list.push(name.clone());
                }
                continue;
            }
            Err(StatsError::NotApplicable(reason)) => {
                skipped.push(SkippedFeature {
                    feature: name.clone(),
                    reason,
                });
                continue;
            }
            Err(e) => return Err(ApiError::internal(e)),
        };
        let bins = custos_stats::compare(whole_reference, &whole_current, &bin_thresholds)
            .map_err(ApiError::internal)?;
        for (index, range) in chunk_ranges.iter().enumerate() {
            let in_chunk = hourly
                .iter()
                .filter(|(hour, _)| range.contains(hour))
                .map(|(_, p)| p);
            let outcome = match merge_all(in_chunk)? {
                Some(chunk) => {
                    custos_stats::run(choice.method, choice.threshold, whole_reference, &chunk)
                }
                None => Err(StatsError::EmptyCurrent),
            };
            match outcome {
                Ok(r) => {
                    if let Some(list) = chunk_tests.get_mut(index) {
                        list.push(test_body(&name, &r));
                    }
                }
                Err(_) => {
                    if let Some(list) = chunk_skipped.get_mut(index) {
                        list.push(name.clone());
                    }
                }
            }
        }
        features.push(FeatureDriftBody {
            feature: name,
            kind: match stats_kind(kind) {
                custos_stats::ProfileKind::Numeric => "numeric".into(),
                custos_stats::ProfileKind::Categorical => "categorical".into(),
            },
            method: method_name(result.method),
            statistic: result.statistic,
            p_value: result.p_value,
            threshold: result.threshold,
            threshold_source: method.source.into(),
            drifted: result.drifted,
            psi: bins.psi,
            jensen_shannon: bins.jensen_shannon,
            reference_count: bins.reference_count,
            current_count: bins.current_count,
            bins: bins
                .bins
                .iter()
                .map(|b| DriftBin {
                    label: b.label.clone(),
                    reference: b.reference_share,
                    current: b.current_share,
                })
                .collect(),
        });
    }
    let share = config.drift.drift_share;
    let verdict = |tests: &[bool]| {
        let drifted = tests.iter().filter(|d| **d).count();
        let total = tests.len();
        let ratio = if total == 0 {
            0.0
        } else {
            drifted as f64 / total as f64
        };
        (drifted, total, ratio, total > 0 && ratio >= share)
    };
    let (drifted_features, total_features, drift_share, dataset_drift) =
        verdict(&features.iter().map(|f| f.drifted).collect::<Vec<_>>());
    let chunks = chunk_ranges
        .iter()
        .zip(chunk_tests)
        .zip(chunk_skipped)
        .map(|((range, tests), skipped)| {
            let (drifted, total, ratio, dataset) =
                verdict(&tests.iter().map(|t| t.drifted).collect::<Vec<_>>());
            DriftChunkBody {
                start: range.start.start(),
                end: range.end.start(),
                rows: volume.range(range.clone()).map(|(_, n)| *n).sum(),
                features: tests,
                skipped,
                drifted_features: drifted,
                total_features: total,
                drift_share: ratio,
                dataset_drift: dataset,
            }
        })
        .collect();
    let reference_body = reference.body();
    Ok(DriftResponse {
        model: model.schema.name().to_string(),
        reference_start: reference_body.start,
        reference_end: reference_body.end,
        reference: reference_body,
        current_start: current_hours.start.start(),
        current_end: current_hours.end.start(),
        config_version,
        features,
        skipped,
        drifted_features,
        total_features,
        drift_share,
        dataset_drift_threshold: share,
        dataset_drift,
        chunks,
    })
}

/// The partition whose data key seals a model's reference sets: far below any day a timestamp
/// can name (chrono stops at year −262143), so it never shares a key with events, and
/// destroying it erases every reference of the model and nothing else.
pub const REFERENCE_PARTITION: Partition = Partition(-(1 << 40));
