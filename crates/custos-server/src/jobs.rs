//! Background work: compaction of hourly profile deltas.
//!
//! Every ingest commit adds one sealed profile delta per (column, hour) it touched. Readers
//! merge whatever is there, so correctness never depends on this job; it only keeps the number
//! of deltas per hour small so queries stay fast. Compaction merges the deltas of one
//! (model, column, hour) and replaces exactly those rows in one transaction; if a concurrent
//! compaction (another replica) got there first, the store refuses and nothing changes.

use crate::ingest::profile_label;
use crate::state::AppState;
use custos_crypto::seal::{BlobKind, open_blob, seal_blob};
use custos_stats::FeatureProfile;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_secs(15);
const MIN_DELTAS: u32 = 8;
const BATCH: u32 = 200;

/// Starts the background jobs.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match compact_once(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(compacted = n, "profile compaction"),
                Err(e) => tracing::warn!(error = %e, "profile compaction failed; will retry"),
            }
        }
    })
}

/// One pass of compaction. Returns how many hours were compacted.
pub async fn compact_once(state: &AppState) -> Result<usize, String> {
    let candidates = state
        .store
        .compaction_candidates(MIN_DELTAS, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut done = 0;
    for (model_id, column, hour) in candidates {
        let deltas = state
            .store
            .profile_deltas(model_id, &column, hour..custos_core::HourBucket(hour.0 + 1))
            .await
            .map_err(|e| e.to_string())?;
        let Some(first) = deltas.first() else {
            continue;
        };
        let partition = first.partition;
        let key = state
            .keys
            .data_key(model_id, partition, custos_crypto::KeyPurpose::Profiles)
            .await
            .map_err(|e| e.to_string())?;
        let label = profile_label(&column, hour);
        let mut merged: Option<FeatureProfile> = None;
        let mut ids = Vec::with_capacity(deltas.len());
        for delta in &deltas {
            let bytes = open_blob(
                &key,
                model_id,
                partition,
                BlobKind::Profile,
                &label,
                &delta.ciphertext,
            )
            .map_err(|e| e.to_string())?;
            let profile = FeatureProfile::from_bytes(&bytes).map_err(|e| e.to_string())?;
            match merged.as_mut() {
                None => merged = Some(profile),
                Some(m) => m.merge(&profile).map_err(|e| e.to_string())?,
            }
            ids.push(delta.id);
        }
        let Some(merged) = merged else { continue };
        let sealed = seal_blob(
            &key,
            model_id,
            partition,
            BlobKind::Profile,
            &label,
            &merged.to_bytes(),
        )
        .map_err(|e| e.to_string())?;
        match state
            .store
            .replace_profiles(model_id, &column, hour, &ids, &sealed)
            .await
        {
            Ok(()) => done += 1,
            Err(custos_store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(done)
}
