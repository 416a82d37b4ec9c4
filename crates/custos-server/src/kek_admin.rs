//! Key-encryption-key administration for the local `custos keys` commands: status, rotate,
//! rewrap and retire.
//!
//! Owns the order of the key-file and store operations and their audit entries. Every command
//! is audited as `local-admin` through the store's one audit path, fail-closed: a rotation or
//! rewrap is recorded before it starts (and its failure after), and a retired key file is only
//! destroyed once its retirement is recorded. The wrapping itself is `custos_crypto::keys`, the
//! rows are the store's (`custos_store::kek`). Must not: decrypt any payload (a rewrap unwraps
//! and re-wraps keys only), or put key material into errors, logs or audit records (versions
//! and counts only).
//!
//! The key directory and the hardware security module (`[keys.pkcs11]`) work alike: rotate adds
//! version N+1 (a key file, or a non-extractable key object created inside the token), rewrap
//! re-wraps through the provider's ring, retire hides the version (renames the file, relabels
//! the object), counts once more and then destroys it (overwrites and removes the file,
//! `C_DestroyObject`) or restores it.

use crate::keys::{KekSource, KeyError, kek_source, provider_ring as load_provider_ring};
use crate::state::AppState;
use custos_core::{ActorType, AuditEvent, Outcome};
use custos_crypto::CryptoError;
use custos_crypto::keys::{KekRing, KeyContext};
use custos_store::{KekUsage, StoreError, WrappedKeyChange, WrappedKeyRef};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Who the local commands act as in the audit log.
pub const LOCAL_ACTOR: &str = "local-admin";

/// Why a key command failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum KekAdminError {
    /// The command is refused; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// Keys failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A key file or a wrap failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The store failed (including writing the audit entry: nothing was done unrecorded).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `custos keys status` shows: versions and counts, never key material.
#[derive(Debug, Clone)]
pub struct KekStatus {
    /// Where the keys come from.
    pub source: KekSource,
    /// The versions the provider holds now, current first.
    pub versions: Vec<u32>,
    /// Stored wrapped keys per version (including versions the provider no longer holds).
    pub usage: BTreeMap<u32, KekUsage>,
}

/// What a rewrap did.
#[derive(Debug, Clone)]
pub struct RewrapReport {
    /// The version everything is now wrapped under.
    pub version: u32,
    /// Wrapped keys re-wrapped by this run.
    pub rewrapped: u64,
    /// Stored wrapped keys per version afterwards.
    pub usage: BTreeMap<u32, KekUsage>,
}

fn event(
    state: &AppState,
    action: &str,
    outcome: Outcome,
    detail: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        time: state.clock.now(),
        actor: LOCAL_ACTOR.into(),
        actor_type: ActorType::System,
        source_ip: None,
        user_agent: None,
        request_id: None,
        action: action.into(),
        resource: "keys".into(),
        outcome,
        status: None,
        detail,
    }
}

async fn record(
    state: &AppState,
    action: &str,
    outcome: Outcome,
    detail: serde_json::Value,
) -> Result<(), KekAdminError> {
    state
        .store
        .append_audit(&event(state, action, outcome, detail))
        .await?;
    Ok(())
}

/// Best effort: the failure of an act already recorded as started.
async fn record_failure(state: &AppState, action: &str, error: &KekAdminError) {
    let detail = serde_json::json!({ "error": error.to_string() });
    if let Err(e) = record(state, action, Outcome::Failure, detail).await {
        tracing::error!(error = %e, action, "could not record the failure");
    }
}

fn usage_json(usage: &BTreeMap<u32, KekUsage>) -> serde_json::Value {
    usage
        .iter()
        .map(|(v, u)| {
            (
                v.to_string(),
                serde_json::json!({ "data_keys": u.data_keys, "secrets": u.secrets }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A provider that can rotate and retire: a key directory or an HSM.
enum Rotatable {
    Dir(PathBuf),
    Hsm(custos_crypto::keys::pkcs11::Hsm),
}

/// A version being retired, by provider.
enum Retiring {
    Dir(custos_crypto::keys::RetiringKek),
    Hsm(custos_crypto::keys::pkcs11::RetiringHsmKek),
}

impl Retiring {
    fn destroy(self) -> Result<(), CryptoError> {
        match self {
            Self::Dir(r) => r.destroy(),
            Self::Hsm(r) => r.destroy(),
        }
    }

    fn restore(self) -> Result<(), CryptoError> {
        match self {
            Self::Dir(r) => r.restore(),
            Self::Hsm(r) => r.restore(),
        }
    }
}

impl Rotatable {
    fn rotate(&self) -> Result<KekRing, CryptoError> {
        match self {
            Self::Dir(dir) => custos_crypto::keys::rotate_kek_dir(dir),
            Self::Hsm(hsm) => hsm.rotate(),
        }
    }

    fn begin_retire(&self, version: u32) -> Result<Retiring, CryptoError> {
        match self {
            Self::Dir(dir) => {
                custos_crypto::keys::begin_retire_kek(dir, version).map(Retiring::Dir)
            }
            Self::Hsm(hsm) => hsm.begin_retire(version).map(Retiring::Hsm),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Dir(dir) => dir.display().to_string(),
            Self::Hsm(hsm) => format!("the PKCS#11 token {:?}", hsm.settings().token_label),
        }
    }
}

fn dir_of(state: &AppState, what: &str) -> Result<Rotatable, KekAdminError> {
    match kek_source(&state.config) {
        KekSource::Dir(dir) => Ok(Rotatable::Dir(dir)),
        KekSource::Pkcs11(source) => Ok(Rotatable::Hsm(source.connect()?)),
        KekSource::Fixed => Err(KekAdminError::Refused(format!(
            "cannot {what}: the key-encryption key is a single fixed key (keys.kek, from \
             CUSTOS_KEYS__KEK or CUSTOS_KEYS__KEK_FILE), which has only version 1. To rotate, move \
             to a key directory: write the current key as kek-v1.key (one base64 line, mode 0600) \
             into a directory of mode 0700, set keys.kek_dir to it and remove keys.kek, restart \
             the server, then run `custos keys rotate` (see docs/OPERATIONS.md, key rotation)"
        ))),
    }
}

/// The provider's ring as it is now (re-read, never created).
fn provider_ring(state: &AppState) -> Result<KekRing, KekAdminError> {
    Ok(load_provider_ring(&state.config)?)
}

/// KEK versions and how many stored keys each wraps. Audited (`keys.status`).
pub async fn status(state: &AppState) -> Result<KekStatus, KekAdminError> {
    let ring = provider_ring(state)?;
    let usage = state.store.kek_usage().await?;
    record(
        state,
        "keys.status",
        Outcome::Success,
        serde_json::json!({ "versions": ring.versions(), "usage": usage_json(&usage) }),
    )
    .await?;
    Ok(KekStatus {
        source: kek_source(&state.config),
        versions: ring.versions(),
        usage,
    })
}

/// Adds KEK version N+1 to the key directory or the token; new wraps use it (a running server
/// re-reads the provider before each new wrap). Recorded before the key is created. Returns the
/// new ring.
pub async fn rotate(state: &AppState) -> Result<KekRing, KekAdminError> {
    let provider = dir_of(state, "rotate")?;
    let before = provider_ring(state)?;
    let next = before.current_version().saturating_add(1);
    record(
        state,
        "keys.kek.rotate",
        Outcome::Success,
        serde_json::json!({ "previous_version": before.current_version(), "version": next }),
    )
    .await?;
    match provider.rotate() {
        Ok(ring) if ring.current_version() == next => Ok(ring),
        Ok(ring) => {
            let err = KekAdminError::Refused(format!(
                "a concurrent rotation made version {} current, not {next}",
                ring.current_version()
            ));
            record_failure(state, "keys.kek.rotate", &err).await;
            Err(err)
        }
        Err(e) => {
            let err = KekAdminError::from(e);
            record_failure(state, "keys.kek.rotate", &err).await;
            Err(err)
        }
    }
}

fn context_of(at: &WrappedKeyRef) -> KeyContext {
    match at {
        WrappedKeyRef::Data {
            model_id,
            partition,
            purpose,
        } => KeyContext::Data {
            model_id: *model_id,
            partition: *partition,
            purpose: *purpose,
        },
        WrappedKeyRef::Secret { name } => KeyContext::Secret { name: name.clone() },
    }
}

fn describe(at: &WrappedKeyRef) -> String {
    match at {
        WrappedKeyRef::Data {
            model_id,
            partition,
            purpose,
        } => format!(
            "the {} data key of model id {model_id}, partition {}",
            purpose.as_str(),
            partition.0
        ),
        WrappedKeyRef::Secret { name } => format!("the stored secret {name:?}"),
    }
}

/// How many rounds in a row may change nothing before a rewrap gives up (rows that keep
/// changing under it: another rewrap with another ring running at the same time).
const MAX_IDLE_ROUNDS: u32 = 5;

/// Re-wraps every stored wrapped key (data keys and secrets) to the provider's current version,
/// `batch` rows per transaction, without decrypting any payload: each key is unwrapped and
/// wrapped again, its row replaced only if unchanged since read. Idempotent and resumable: an
/// interrupted run leaves every row wrapped under a version the ring holds, and the next run
/// continues with the rows not yet under the current version. `progress(done, total)` is called
/// after each batch. A key that does not unwrap stops the run, naming its row.
pub async fn rewrap(
    state: &AppState,
    batch: u32,
    progress: &dyn Fn(u64, u64),
) -> Result<RewrapReport, KekAdminError> {
    let ring = provider_ring(state)?;
    let version = ring.current_version();
    let before = state.store.kek_usage().await?;
    let total: u64 = before
        .iter()
        .filter(|(v, _)| **v != version)
        .map(|(_, u)| u.total())
        .sum();
    record(
        state,
        "keys.kek.rewrap",
        Outcome::Success,
        serde_json::json!({ "step": "start", "version": version, "to_rewrap": total,
                            "usage": usage_json(&before) }),
    )
    .await?;
    match rewrap_rows(state, &ring, batch.max(1), total, progress).await {
        Ok(rewrapped) => {
            let usage = state.store.kek_usage().await?;
            record(
                state,
                "keys.kek.rewrap",
                Outcome::Success,
                serde_json::json!({ "step": "done", "version": version, "rewrapped": rewrapped,
                                    "usage": usage_json(&usage) }),
            )
            .await?;
            Ok(RewrapReport {
                version,
                rewrapped,
                usage,
            })
        }
        Err(err) => {
            record_failure(state, "keys.kek.rewrap", &err).await;
            Err(err)
        }
    }
}

async fn rewrap_rows(
    state: &AppState,
    ring: &KekRing,
    batch: u32,
    total: u64,
    progress: &dyn Fn(u64, u64),
) -> Result<u64, KekAdminError> {
    let version = ring.current_version();
    let mut done = 0u64;
    let mut idle = 0u32;
    loop {
        let rows = state.store.wrapped_keys_not_under(version, batch).await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            let new = ring.rewrap(&context_of(&row.at), &row.key).map_err(|e| {
                KekAdminError::Refused(format!(
                    "{} (KEK version {}) does not unwrap: {e}; nothing after it was \
                         re-wrapped, rows before it are",
                    describe(&row.at),
                    row.key.kek_version
                ))
            })?;
            changes.push(WrappedKeyChange { old: row, new });
        }
        let changed = state.store.replace_wrapped_keys(&changes).await?;
        done = done.saturating_add(changed);
        progress(done, total.max(done));
        if changed == 0 {
            idle += 1;
            if idle >= MAX_IDLE_ROUNDS {
                return Err(KekAdminError::Refused(
                    "the wrapped keys keep changing under the rewrap (is another rewrap with a \
                     different key directory running?)"
                        .into(),
                ));
            }
        } else {
            idle = 0;
        }
    }
}

fn still_used(version: u32, usage: &BTreeMap<u32, KekUsage>) -> Option<String> {
    let u = usage.get(&version).copied().unwrap_or_default();
    (u.total() > 0).then(|| {
        format!(
            "refusing to retire KEK version {version}: it still wraps {} data keys and {} \
             secrets; run `custos keys rewrap` first",
            u.data_keys, u.secrets
        )
    })
}

/// Destroys KEK version `version` (overwrites and removes its file, or destroys the HSM key
/// object) so that it can never unwrap again. Refused for the current version and while any
/// stored key still names it (counted again after the version is hidden, so a key wrapped in
/// between is caught and the version restored). The refusal and the retirement are both
/// audited; the key is only destroyed once the retirement is recorded.
pub async fn retire(state: &AppState, version: u32) -> Result<(), KekAdminError> {
    let provider = dir_of(state, "retire a KEK version")?;
    let refuse = |reason: String| async move {
        record(
            state,
            "keys.kek.retire",
            Outcome::Denied,
            serde_json::json!({ "version": version, "reason": reason }),
        )
        .await?;
        Err::<(), _>(KekAdminError::Refused(reason))
    };
    let ring = provider_ring(state)?;
    if ring.current_version() == version {
        return refuse(format!(
            "refusing to retire KEK version {version}: it is the current version; run `custos \
             keys rotate` and `custos keys rewrap` first"
        ))
        .await;
    }
    if !ring.versions().contains(&version) {
        return refuse(format!(
            "there is no KEK version {version} in {} (versions: {:?})",
            provider.describe(),
            ring.versions()
        ))
        .await;
    }
    if let Some(reason) = still_used(version, &state.store.kek_usage().await?) {
        return refuse(reason).await;
    }
    let retiring = provider.begin_retire(version)?;
    let usage = match state.store.kek_usage().await {
        Ok(usage) => usage,
        Err(e) => {
            retiring.restore()?;
            return Err(e.into());
        }
    };
    if let Some(reason) = still_used(version, &usage) {
        retiring.restore()?;
        return refuse(reason).await;
    }
    if let Err(e) = record(
        state,
        "keys.kek.retire",
        Outcome::Success,
        serde_json::json!({ "version": version, "current_version": ring.current_version() }),
    )
    .await
    {
        retiring.restore()?;
        return Err(e);
    }
    retiring.destroy()?;
    Ok(())
}
