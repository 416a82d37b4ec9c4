//! The running side of the tamper-evident audit log: the log's name (origin), the checkpoint
//! signing keys and their rotation, the job that signs checkpoints, retention pruning, and the
//! inclusion and consistency proofs served to auditors.
//!
//! Owns the *when* and *with which key*; the *what* (hashing, tree, verification) is
//! `custos_crypto::auditlog`, and the rows are the store's. Every key operation and every
//! pruning is itself an audit entry, written in the same transaction as the change.

use crate::state::AppState;
use chrono::{DateTime, Utc};
use custos_core::{ActorType, AuditEvent};
use custos_crypto::auditlog::{TreeBuilder, pack_frontier, unpack_frontier};
use custos_crypto::checkpoint::{Checkpoint, NoteSigner};
use custos_crypto::merkle::{Hash, leaf_hash};
use custos_store::{AUDIT_ORIGIN_META, CheckpointRow, SigningKeyRow, Store};

/// Entries folded into one checkpoint per pass at most, so one pass stays bounded after a long
/// outage; the next pass continues.
const MAX_ENTRIES_PER_PASS: i64 = 200_000;
const PAGE: u32 = 5_000;

/// Why an audit-log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] custos_store::StoreError),
    /// Keys failed.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    /// The stored log is broken; nothing is signed over it.
    #[error("audit log does not verify, refusing to sign: {0}")]
    Broken(#[from] custos_crypto::auditlog::Problem),
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(#[from] custos_crypto::checkpoint::CheckpointError),
    /// A request cannot be answered (bad range, pruned entries).
    #[error("{0}")]
    Request(String),
}

/// This log's origin line, created once per installation.
pub async fn origin(store: &Store) -> Result<String, AuditLogError> {
    if let Some(origin) = store.get_meta(AUDIT_ORIGIN_META).await? {
        return Ok(origin);
    }
    let mut id = [0u8; 8];
    getrandom::fill(&mut id)
        .map_err(|e| AuditLogError::Request(format!("no randomness for the log id: {e}")))?;
    let fresh = format!("custos-audit/{}", hex::encode(id));
    store
        .insert_meta_if_absent(AUDIT_ORIGIN_META, &fresh)
        .await?;
    // Another replica may have won; every replica uses the stored one.
    store
        .get_meta(AUDIT_ORIGIN_META)
        .await?
        .ok_or_else(|| AuditLogError::Request("audit origin vanished".into()))
}

fn system_event(now: DateTime<Utc>, action: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent::system(now, action, "audit", detail)
}

/// The current signing key, creating version 1 on first use. The stored public key must match
/// the wrapped seed: a mismatch means the key material was replaced, and nothing is signed.
pub async fn current_signer(state: &AppState) -> Result<(i64, NoteSigner), AuditLogError> {
    let origin = origin(&state.store).await?;
    let keys = state.store.audit_signing_keys().await?;
    let Some(latest) = keys.last() else {
        let signer = state.keys.audit_signer(&origin, 1).await?;
        let row = SigningKeyRow {
            version: 1,
            verifier_key: signer.verifier().verifier_key(),
            valid_from: state.clock.now(),
            valid_until: None,
        };
        let event = system_event(
            row.valid_from,
            "audit.signing_key.create",
            serde_json::json!({ "version": 1, "verifier_key": row.verifier_key }),
        );
        state
            .store
            .add_audit_signing_key(&row, Some(&event))
            .await?;
        return Box::pin(current_signer(state)).await;
    };
    let signer = state.keys.audit_signer(&origin, latest.version).await?;
    if signer.verifier().verifier_key() != latest.verifier_key {
        return Err(crate::keys::KeyError::Inconsistent(format!(
            "audit signing key {} does not match its stored public key",
            latest.version
        ))
        .into());
    }
    Ok((latest.version, signer))
}

/// Rotates the checkpoint signing key: a new version signs from now on, the previous one's
/// window closes now (its checkpoints keep verifying). Audited with `actor`.
pub async fn rotate_signer(
    state: &AppState,
    actor: &str,
    actor_type: ActorType,
) -> Result<SigningKeyRow, AuditLogError> {
    let origin = origin(&state.store).await?;
    let (version, _) = current_signer(state).await?;
    let next = version.saturating_add(1);
    let signer = state.keys.audit_signer(&origin, next).await?;
    let row = SigningKeyRow {
        version: next,
        verifier_key: signer.verifier().verifier_key(),
        valid_from: state.clock.now(),
        valid_until: None,
    };
    let mut event = system_event(
        row.valid_from,
        "audit.signing_key.rotate",
        serde_json::json!({
            "retired_version": version,
            "version": next,
            "verifier_key": row.verifier_key,
        }),
    );
    event.actor = actor.to_owned();
    event.actor_type = actor_type;
    if !state
        .store
        .add_audit_signing_key(&row, Some(&event))
        .await?
    {
        return Err(AuditLogError::Request(format!(
            "signing key version {next} already exists (a concurrent rotation?)"
        )));
    }
    Ok(row)
}

/// Signs a checkpoint over the entries appended since the last one when one is due: `force`,
/// or at least `max_entries` new entries, or the last one older than `interval`. Returns the
/// new checkpoint's size. Refuses to sign over entries that do not chain onto the previous
/// checkpoint.
pub async fn checkpoint_once(state: &AppState, force: bool) -> Result<Option<i64>, AuditLogError> {
    let Some((head, _)) = state.store.audit_head().await? else {
        return Ok(None);
    };
    let latest = state.store.latest_audit_checkpoint().await?;
    let now = state.clock.now();
    let settings = &state.config.audit;
    let (size, frontier, chain) = match &latest {
        Some(row) => {
            if head <= row.tree_size {
                return Ok(None);
            }
            let new_entries = head - row.tree_size;
            let age = now.signed_duration_since(row.signed_at);
            let due = force
                || new_entries >= i64::from(settings.checkpoint_max_entries)
                || age.num_seconds() >= i64::from(settings.checkpoint_interval_seconds);
            if !due {
                return Ok(None);
            }
            let frontier = unpack_frontier(&row.frontier).ok_or_else(|| {
                AuditLogError::Request("stored compact range is malformed".into())
            })?;
            (row.tree_size, frontier, row.chain_hash)
        }
        None => (0, Vec::new(), custos_crypto::audit::GENESIS),
    };
    let mut builder = TreeBuilder::resume(u64::try_from(size).unwrap_or(0), frontier, chain)?;
    let target = head.min(size.saturating_add(MAX_ENTRIES_PER_PASS));
    let mut after = size;
    while after < target {
        let page = state.store.audit_entries_raw(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for (seq, record, hash) in &page {
            if *seq > target {
                break;
            }
            builder.push(u64::try_from(*seq).unwrap_or(0), record, hash)?;
            after = *seq;
        }
    }
    if after <= size {
        return Ok(None);
    }
    let origin = origin(&state.store).await?;
    let (version, signer) = current_signer(state).await?;
    let checkpoint = Checkpoint {
        origin,
        size: builder.size(),
        root: builder.root(),
    };
    let note = signer.sign(&checkpoint)?;
    let row = CheckpointRow {
        tree_size: after,
        root: builder.root(),
        note,
        key_version: version,
        signed_at: now,
        frontier: pack_frontier(builder.frontier()),
        chain_hash: builder.chain_hash(),
    };
    let stored = state.store.insert_audit_checkpoint(&row).await?;
    Ok(stored.then_some(after))
}

/// Applies audit retention: moves the anchor to the newest checkpoint signed before the
/// retention horizon and deletes the entries below it. The pruning is itself audited. Returns
/// how many entries went.
pub async fn prune_once(state: &AppState) -> Result<u64, AuditLogError> {
    let days = i64::from(state.config.audit.retention_days);
    let horizon = state.clock.now() - chrono::Duration::days(days);
    let current = state.store.audit_anchor().await?;
    let Some(anchor) = state
        .store
        .audit_checkpoints()
        .await?
        .into_iter()
        .filter(|c| c.signed_at < horizon)
        .map(|c| c.tree_size)
        .max()
    else {
        return Ok(0);
    };
    if anchor <= current {
        return Ok(0);
    }
    let event = system_event(
        state.clock.now(),
        "audit.prune",
        serde_json::json!({
            "retention_days": days,
            "previous_anchor": current,
            "anchor": anchor,
        }),
    );
    Ok(state.store.prune_audit(anchor, &event).await?)
}

/// The leaf hashes of entries `1..=size`, read from the store. Bounded by the caller.
async fn leaves(store: &Store, size: i64) -> Result<Vec<Hash>, AuditLogError> {
    let anchor = store.audit_anchor().await?;
    if anchor > 1 {
        return Err(AuditLogError::Request(format!(
            "entries before {anchor} were pruned by retention; proofs start at the anchor checkpoint"
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut after = 0;
    while after < size {
        let page = store.audit_entries_raw(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for (seq, record, _) in &page {
            if *seq > size {
                break;
            }
            out.push(leaf_hash(record));
            after = *seq;
        }
    }
    if after != size {
        return Err(AuditLogError::Request(format!(
            "the log has fewer than {size} entries"
        )));
    }
    Ok(out)
}

fn check_size(state: &AppState, size: i64) -> Result<(), AuditLogError> {
    let max = i64::from(state.config.audit.max_proof_tree_size);
    if size < 1 || size > max {
        return Err(AuditLogError::Request(format!(
            "tree_size must be between 1 and {max}"
        )));
    }
    Ok(())
}

/// An inclusion proof of entry `seq` (1-based) in the tree of `size` entries.
pub async fn inclusion_proof(
    state: &AppState,
    seq: i64,
    size: i64,
) -> Result<(Hash, Vec<Hash>), AuditLogError> {
    check_size(state, size)?;
    if seq < 1 || seq > size {
        return Err(AuditLogError::Request(
            "seq must be in 1..=tree_size".into(),
        ));
    }
    let leaves = leaves(&state.store, size).await?;
    let index = u64::try_from(seq - 1).unwrap_or(0);
    let leaf = leaves
        .get(usize::try_from(index).unwrap_or(usize::MAX))
        .copied()
        .ok_or_else(|| AuditLogError::Request("no such entry".into()))?;
    let proof = custos_crypto::merkle::inclusion_proof(&leaves, index)
        .map_err(|e| AuditLogError::Request(e.to_string()))?;
    Ok((leaf, proof))
}

/// A consistency proof between the trees of `from` and `to` entries.
pub async fn consistency_proof(
    state: &AppState,
    from: i64,
    to: i64,
) -> Result<Vec<Hash>, AuditLogError> {
    check_size(state, to)?;
    if from < 1 || from > to {
        return Err(AuditLogError::Request("need 1 <= from <= to".into()));
    }
    let leaves = leaves(&state.store, to).await?;
    custos_crypto::merkle::consistency_proof(&leaves, u64::try_from(from).unwrap_or(0))
        .map_err(|e| AuditLogError::Request(e.to_string()))
}

/// Starts the checkpoint and retention job. Checks every second whether a checkpoint is due
/// (cheap: one head read), prunes once an hour.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            match checkpoint_once(&state, false).await {
                Ok(Some(size)) => tracing::debug!(tree_size = size, "audit checkpoint signed"),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "audit checkpoint failed; will retry"),
            }
            if ticks.is_multiple_of(3_600) {
                match prune_once(&state).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "audit retention pruned entries"),
                    Err(e) => tracing::error!(error = %e, "audit retention failed; will retry"),
                }
            }
            ticks = ticks.wrapping_add(1);
        }
    })
}
