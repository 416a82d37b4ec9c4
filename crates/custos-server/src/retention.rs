//! Retention and erasure by crypto-shredding.
//!
//! Owns:
//! - the retention job: on one replica at a time (a store lease, like the alert evaluator),
//!   every `[retention] interval_seconds`, for each model whose monitoring configuration has a
//!   `retention` section, every day partition older than the retention loses the data key of
//!   that purpose (`events`: raw event batches, their event index, labels that arrived that day;
//!   `profiles`: hourly profile deltas and volume counts) together with the rows sealed under
//!   it, in one transaction with a `data.retention.shred` audit record (model, day, purposes,
//!   counts — never data). A day stored before keys had purposes (a `shared` key sealing both)
//!   whose raw events expire while its profiles are kept has its profile deltas re-sealed under
//!   a fresh `profiles` key in the same transaction, and then the shared key is destroyed.
//!   When only its profiles expire, their rows are deleted but the shared key must stay for the
//!   raw events: that day's profiles are deleted, not shredded, until its raw events expire.
//! - `DELETE /api/v1/models/{model}/data` (`data:erase`): every data key of the model (every
//!   day, every purpose, the reference key), its token-vault key and every row sealed under them
//!   are destroyed in one transaction with a `data.erase` audit record. The body must name the
//!   model again (`{"confirm": "<model name>"}`). The registration, the configuration history,
//!   alert history and the audit log stay.
//!
//! After either, this replica's key cache forgets the destroyed keys at once; other replicas
//! re-read a cached key from the store within five minutes (see `keys.rs`).
//!
//! Must not: shred without its audit record (the record is appended inside the shred's
//! transaction, so if it cannot be written nothing is destroyed), or log or audit any value.

use crate::api::{body, model_name};
use crate::auth::{Authorized, audit_for};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::ingest::profile_label;
use crate::keys::vault_key_name;
use crate::state::{AppState, ModelEntry};
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use chrono::{DateTime, Duration, Utc};
use custos_core::audit::AuditEvent;
use custos_core::{HourBucket, ModelName, Partition};
use custos_crypto::KeyPurpose;
use custos_crypto::seal::{BlobKind, open_blob, seal_blob};
use custos_store::{ErasureCounts, ProfileReseal, ShredCounts, ShredPlan, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

/// The lease retention runs compete for.
const RETENTION_LEASE: &str = "retention";

/// The erasure route's part of the OpenAPI description.
#[derive(OpenApi)]
#[openapi(paths(erase_data), components(schemas(EraseRequest, ErasureBody)))]
pub struct RetentionDoc;

/// `[retention]`: how often the retention job looks for expired days.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionJobConfig {
    /// Seconds between two retention runs (default 3600). Retention itself is configured per
    /// model (`retention` in the monitoring configuration).
    pub interval_seconds: u32,
}

impl Default for RetentionJobConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 3_600,
        }
    }
}

/// Starts the retention job.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let holder = crate::context::secret_id().unwrap_or_else(|| "replica".to_owned());
        let every = std::time::Duration::from_secs(u64::from(
            state.config.retention.interval_seconds.max(1),
        ));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match retention_once(&state, &holder).await {
                Ok(Some(run)) if run.shredded > 0 => {
                    tracing::info!(days = run.shredded, "retention: expired days shredded");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "retention run failed; will retry"),
            }
        }
    })
}

/// What one retention run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionRun {
    /// Shreds committed (one per model and day).
    pub shredded: u64,
    /// Shreds that found the day changed under them and will be retried next run.
    pub retried: u64,
}

/// One retention run over every model, if this replica holds (or takes) the lease; `None`
/// when another replica holds it. A model whose shred fails is logged and retried next run;
/// the others go on.
pub async fn retention_once(
    state: &AppState,
    holder: &str,
) -> Result<Option<RetentionRun>, ApiError> {
    let now = state.clock.now();
    let lease = Duration::seconds(i64::from(state.config.retention.interval_seconds) * 2 + 60);
    if !state
        .store
        .try_lease(RETENTION_LEASE, holder, now, now + lease)
        .await?
    {
        return Ok(None);
    }
    let mut run = RetentionRun::default();
    for row in state.store.list_models().await? {
        let name = ModelName::parse(&row.name)
            .map_err(|e| ApiError::internal(format!("stored model name: {e}")))?;
        let entry = state.model(&name).await?;
        match retain_model(state, &entry, now).await {
            Ok(done) => {
                run.shredded += done.shredded;
                run.retried += done.retried;
            }
            Err(e) => tracing::warn!(model = %row.name, error = ?e, "retention: model failed"),
        }
    }
    Ok(Some(run))
}

/// The first day partition that is kept when `days` days are retained at `now`: the current
/// day and the `days` days before it.
pub fn first_kept(now: DateTime<Utc>, days: u32) -> Partition {
    Partition(Partition::of(now).0.saturating_sub(i64::from(days)))
}

async fn retain_model(
    state: &AppState,
    entry: &ModelEntry,
    now: DateTime<Utc>,
) -> Result<RetentionRun, ApiError> {
    let (config, _) = crate::performance::monitoring_config(state, entry).await?;
    let events_kept = config.retention.raw_events_days.map(|d| first_kept(now, d));
    let profiles_kept = config.retention.profiles_days.map(|d| first_kept(now, d));
    let Some(before) = events_kept.into_iter().chain(profiles_kept).max() else {
        return Ok(RetentionRun::default());
    };
    let expired = |kept: Option<Partition>, p: Partition| kept.is_some_and(|k| p < k);
    let mut run = RetentionRun::default();
    for (partition, purposes) in state.store.data_key_days(entry.id, before).await? {
        let events = expired(events_kept, partition);
        let profiles = expired(profiles_kept, partition);
        let shared = purposes.contains(&KeyPurpose::Shared);
        let mut plan = ShredPlan {
            model_id: entry.id,
            partition,
            rows: Vec::new(),
            destroy: Vec::new(),
            reseal: None,
        };
        if shared {
            match (events, profiles) {
                (true, true) => {
                    plan.rows = vec![KeyPurpose::Events, KeyPurpose::Profiles];
                    plan.destroy = purposes.iter().copied().collect();
                }
                (true, false) => {
                    plan.rows = vec![KeyPurpose::Events];
                    plan.destroy = purposes.iter().copied().collect();
                    plan.reseal = Some(reseal_profiles(state, entry, partition).await?);
                }
                (false, true) => {
                    // The shared key still seals the raw events: the profiles are deleted,
                    // and the key goes when the raw events expire.
                    if !state
                        .store
                        .partition_has_rows(entry.id, partition, KeyPurpose::Profiles)
                        .await?
                    {
                        continue;
                    }
                    plan.rows = vec![KeyPurpose::Profiles];
                }
                (false, false) => continue,
            }
        } else {
            for (purpose, expired) in [
                (KeyPurpose::Events, events),
                (KeyPurpose::Profiles, profiles),
            ] {
                if expired && purposes.contains(&purpose) {
                    plan.rows.push(purpose);
                    plan.destroy.push(purpose);
                }
            }
            if plan.rows.is_empty() {
                continue;
            }
        }
        let model = entry.schema.name().to_string();
        let rows: Vec<&str> = plan.rows.iter().map(|p| p.as_str()).collect();
        let destroyed: Vec<&str> = plan.destroy.iter().map(|p| p.as_str()).collect();
        let day = partition_day(partition);
        let outcome = state
            .store
            .shred_partition(&plan, now, |counts| {
                AuditEvent::system(
                    now,
                    "data.retention.shred",
                    format!("model/{model}"),
                    json!({
                        "partition": partition.0,
                        "day": day,
                        "rows": rows,
                        "keys_destroyed": destroyed,
                        "counts": shred_counts(counts),
                        "retention": {
                            "raw_events_days": config.retention.raw_events_days,
                            "profiles_days": config.retention.profiles_days,
                        },
                    }),
                )
            })
            .await;
        state.keys.forget_partition(entry.id, partition);
        match outcome {
            Ok(_) => run.shredded += 1,
            Err(StoreError::Conflict(_)) => run.retried += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(run)
}

/// Re-seals a shared day's profile deltas under a fresh profiles key (not yet stored: the
/// shred's transaction stores it, checking that the deltas did not change meanwhile).
async fn reseal_profiles(
    state: &AppState,
    entry: &ModelEntry,
    partition: Partition,
) -> Result<ProfileReseal, ApiError> {
    let old = state
        .keys
        .data_key(entry.id, partition, KeyPurpose::Profiles)
        .await
        .map_err(ApiError::internal)?;
    let (fresh, wrapped) = state
        .keys
        .new_data_key(entry.id, partition, KeyPurpose::Profiles)
        .map_err(ApiError::internal)?;
    let mut deltas = Vec::new();
    for (id, column, hour, ciphertext) in state
        .store
        .partition_profile_deltas(entry.id, partition)
        .await?
    {
        let label = profile_label(&column, HourBucket(hour));
        let plain = open_blob(
            &old,
            entry.id,
            partition,
            BlobKind::Profile,
            &label,
            &ciphertext,
        )
        .map_err(|e| ApiError::internal(format!("profile {id} failed to open: {e}")))?;
        let sealed = seal_blob(
            &fresh,
            entry.id,
            partition,
            BlobKind::Profile,
            &label,
            &plain,
        )
        .map_err(ApiError::internal)?;
        deltas.push((id, sealed.ciphertext().to_vec()));
    }
    Ok(ProfileReseal {
        key: wrapped,
        deltas,
    })
}

fn partition_day(partition: Partition) -> String {
    HourBucket(partition.0.saturating_mul(24))
        .start()
        .format("%Y-%m-%d")
        .to_string()
}

fn shred_counts(c: &ShredCounts) -> serde_json::Value {
    json!({
        "data_keys": c.data_keys,
        "batches": c.batches,
        "events": c.events,
        "labels": c.labels,
        "profile_deltas": c.profile_deltas,
        "volume_hours": c.volume_hours,
        "resealed_profile_deltas": c.resealed,
    })
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/v1/models/{model}/data

/// The body of `DELETE …/data`: the model's name again, against accidents.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Must equal the model's name.
    pub confirm: String,
}

/// What the erasure destroyed (counts only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErasureBody {
    /// The model (its registration and configuration history stay).
    pub model: String,
    /// The counts, also the audit record's detail.
    #[serde(flatten)]
    pub counts: ErasedCounts,
}

/// How much an erasure destroyed: the store's [`ErasureCounts`] in the API's and the audit
/// log's shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErasedCounts {
    /// Data keys destroyed (every day and purpose, and the reference key).
    pub data_keys: u64,
    /// Whether the model's token-vault key was destroyed.
    pub vault_key: bool,
    /// Token-vault entries deleted.
    pub vault_entries: u64,
    /// Sealed event batches deleted.
    pub batches: u64,
    /// Event-index entries deleted.
    pub events: u64,
    /// Sealed labels deleted.
    pub labels: u64,
    /// Sealed profile deltas deleted.
    pub profile_deltas: u64,
    /// Hours of volume counts deleted.
    pub volume_hours: u64,
    /// Rejection counters deleted.
    pub rejections: u64,
    /// Reference data sets deleted.
    pub references: u64,
}

impl From<&ErasureCounts> for ErasedCounts {
    fn from(c: &ErasureCounts) -> Self {
        Self {
            data_keys: c.data_keys,
            vault_key: c.vault_key,
            vault_entries: c.vault_entries,
            batches: c.batches,
            events: c.events,
            labels: c.labels,
            profile_deltas: c.profile_deltas,
            volume_hours: c.volume_hours,
            rejections: c.rejections,
            references: c.references,
        }
    }
}

/// `DELETE /api/v1/models/{model}/data`: crypto-shreds everything the model has stored.
#[utoipa::path(delete, path = "/api/v1/models/{model}/data",
    params(("model" = String, Path)),
    request_body = EraseRequest,
    responses((status = 200, body = ErasureBody),
        (status = 400, description = "the body does not name the model")))]
pub async fn erase_data(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ErasureBody>, ApiError> {
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let entry = state.model(&model_name(&model)?).await?;
    let name = entry.schema.name().to_string();
    let request: EraseRequest = serde_json::from_slice(&raw).map_err(|_| {
        ApiError::bad_request("the body must be {\"confirm\": \"<the model's name>\"}")
    })?;
    if request.confirm != name {
        return Err(ApiError::bad_request(
            "confirm must repeat the model's name exactly: erasure destroys all its data",
        ));
    }
    let outcome = state
        .store
        .erase_model_data(entry.id, &vault_key_name(entry.id), |counts| {
            audit_for(
                &state,
                &ctx,
                &who,
                "data.erase",
                format!("model/{name}"),
                json!({ "counts": ErasedCounts::from(counts) }),
            )
        })
        .await;
    state.keys.forget_model(entry.id);
    let counts = outcome?;
    Ok(Json(ErasureBody {
        model: name,
        counts: ErasedCounts::from(&counts),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_current_day_and_n_before_it_are_kept() {
        let now = Utc.with_ymd_and_hms(2026, 3, 31, 12, 0, 0).unwrap();
        let kept = first_kept(now, 30);
        assert_eq!(partition_day(kept), "2026-03-01");
        assert_eq!(partition_day(Partition::of(now)), "2026-03-31");
    }
}
