//! The backend-independent half of the audit hash chain: how an entry is serialised and how a
//! stored run of entries is checked.
//!
//! Owns the record format (`AuditEvent` as JSON plus `seq`) and the verification walk. Must not
//! touch a connection: each backend reads the head and the rows, and serialises appends its own
//! way (one writer connection on SQLite, an advisory lock on PostgreSQL).
//!
//! The chain makes a change, removal or reordering of any stored entry detectable from the
//! entries alone. Together with the append-only triggers it stops accidents and casual
//! tampering; it does not stop a database superuser who rewrites the whole tail consistently,
//! and it cannot notice the newest entries being cut off (a shorter chain still verifies) —
//! the signed Merkle checkpoints (separate work) cover both.

use crate::StoreError;
use custos_core::AuditEvent;
use custos_crypto::audit::{GENESIS, chain_hash};
use custos_crypto::auditlog::{
    Anchor, KeyWindow, LogVerifier, Problem, StoredCheckpoint, Verified, unpack_frontier,
};
use custos_crypto::checkpoint::{Checkpoint, NoteVerifier};

/// The text stored (and hashed) for `event` at position `seq`: `{"seq":N,` followed by the
/// event's own fields. The `seq` is inside the hashed bytes so an entry cannot be moved to
/// another position without breaking its hash, and it comes first so verification reads it
/// without parsing the record (see [`custos_crypto::auditlog::record_seq`]). serde_json escapes
/// every control character, so a record is always one line whatever a client sent.
pub(crate) fn record_json(event: &AuditEvent, seq: i64) -> Result<String, StoreError> {
    let fields = serde_json::to_string(event)
        .map_err(|e| StoreError::Database(format!("audit event does not serialise: {e}")))?;
    let Some(rest) = fields.strip_prefix('{') else {
        return Err(StoreError::Database(
            "audit event did not serialise to an object".into(),
        ));
    };
    if rest == "}" {
        return Ok(format!("{{\"seq\":{seq}}}"));
    }
    Ok(format!("{{\"seq\":{seq},{rest}"))
}

/// The entry to append after a head of `(seq, hash)` (or after nothing).
pub(crate) fn next_entry(
    head: Option<(i64, Vec<u8>)>,
    event: &AuditEvent,
) -> Result<(i64, String, [u8; 32]), StoreError> {
    let (previous_seq, previous_hash) = match head {
        Some((seq, hash)) => (seq, crate::convert::hash32(&hash)?),
        None => (0, GENESIS),
    };
    let seq = previous_seq
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("audit sequence exhausted".into()))?;
    let record = record_json(event, seq)?;
    let hash = chain_hash(&previous_hash, record.as_bytes());
    Ok((seq, record, hash))
}

/// Chains a group of events after `head`, in order.
pub(crate) fn chain_group(
    head: Option<(i64, Vec<u8>)>,
    events: &[&AuditEvent],
) -> Result<Vec<(i64, String, [u8; 32])>, StoreError> {
    let mut previous = head;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let entry = next_entry(previous, event)?;
        previous = Some((entry.0, entry.2.to_vec()));
        out.push(entry);
    }
    Ok(out)
}

/// Hands a group of freshly inserted entries to the mirror in one delivery.
pub(crate) async fn mirror_group(
    mirror: Option<&dyn crate::mirror::AuditMirror>,
    entries: &[(i64, String, [u8; 32])],
) -> Result<(), StoreError> {
    let view: Vec<crate::mirror::MirroredEntry<'_>> = entries
        .iter()
        .map(|(seq, record_json, hash)| crate::mirror::MirroredEntry {
            seq: *seq,
            record_json,
            hash,
        })
        .collect();
    deliver(mirror, &view).await
}

async fn deliver(
    mirror: Option<&dyn crate::mirror::AuditMirror>,
    entries: &[crate::mirror::MirroredEntry<'_>],
) -> Result<(), StoreError> {
    let Some(mirror) = mirror else {
        return Ok(());
    };
    mirror
        .mirror(entries)
        .await
        .map_err(|e| StoreError::AuditSink(e.0))
}

/// Hands one freshly inserted entry to the mirror, if there is one, before the caller commits.
pub(crate) async fn mirror_one(
    mirror: Option<&dyn crate::mirror::AuditMirror>,
    seq: i64,
    record_json: &str,
    hash: &[u8; 32],
) -> Result<(), StoreError> {
    let entries = [crate::mirror::MirroredEntry {
        seq,
        record_json,
        hash,
    }];
    deliver(mirror, &entries).await
}

/// The meta key under which the log's checkpoint origin (its name) is stored.
pub const ORIGIN_META: &str = "audit_origin";

/// Entries read per page while verifying.
const VERIFY_PAGE: u32 = 5_000;

impl crate::Store {
    /// Verifies the whole stored log — chain, positions, every checkpoint's signature, key
    /// window and root, and that no checkpointed entry is missing — starting from the retention
    /// anchor. `pinned`, when given, are the only signing keys the caller trusts (an auditor's
    /// copy); without it the stored public keys are used. `trusted` are checkpoints kept from
    /// earlier that the entries must reproduce. The outer error is the store failing; the inner
    /// one is what verification found wrong.
    pub async fn verify_audit_log(
        &self,
        pinned: Option<&[NoteVerifier]>,
        trusted: &[Checkpoint],
    ) -> Result<Result<Verified, Problem>, StoreError> {
        let origin = self.get_meta(ORIGIN_META).await?.unwrap_or_default();
        let mut keys = Vec::new();
        for row in self.audit_signing_keys().await? {
            let Ok(verifier) = NoteVerifier::from_verifier_key(&row.verifier_key) else {
                return Ok(Err(Problem::Checkpoint {
                    tree_size: 0,
                    reason: format!("stored public key {} is malformed", row.version),
                }));
            };
            if let Some(pinned) = pinned
                && !pinned
                    .iter()
                    .any(|p| p.verifier_key() == verifier.verifier_key())
            {
                continue;
            }
            keys.push(KeyWindow {
                version: u32::try_from(row.version).unwrap_or(0),
                verifier,
                valid_from: crate::convert::micros(row.valid_from),
                valid_until: row.valid_until.map(crate::convert::micros),
            });
        }
        let rows = self.audit_checkpoints().await?;
        let checkpoints: Vec<StoredCheckpoint> = rows
            .iter()
            .map(|row| StoredCheckpoint {
                tree_size: u64::try_from(row.tree_size).unwrap_or(0),
                note: row.note.clone(),
                key_version: u32::try_from(row.key_version).unwrap_or(0),
                signed_at: crate::convert::micros(row.signed_at),
            })
            .collect();
        let anchor_size = self.audit_anchor().await?;
        let anchor = if anchor_size > 0 {
            let Some(row) = rows.iter().find(|r| r.tree_size == anchor_size) else {
                return Ok(Err(Problem::Checkpoint {
                    tree_size: u64::try_from(anchor_size).unwrap_or(0),
                    reason: "the retention anchor's checkpoint is missing".into(),
                }));
            };
            let Some(frontier) = unpack_frontier(&row.frontier) else {
                return Ok(Err(Problem::Checkpoint {
                    tree_size: u64::try_from(anchor_size).unwrap_or(0),
                    reason: "the retention anchor's compact range is malformed".into(),
                }));
            };
            Some(Anchor {
                tree_size: u64::try_from(anchor_size).unwrap_or(0),
                frontier,
                chain_hash: row.chain_hash,
            })
        } else {
            None
        };
        let mut verifier =
            match LogVerifier::new(&origin, &keys, &checkpoints, anchor.as_ref(), trusted) {
                Ok(v) => v,
                Err(problem) => return Ok(Err(problem)),
            };
        let mut after = anchor_size;
        loop {
            let page = self.audit_entries_raw(after, VERIFY_PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(verifier.finish());
            };
            after = last.0;
            for (seq, record, hash) in &page {
                let seq = u64::try_from(*seq).unwrap_or(0);
                if let Err(problem) = verifier.entry(seq, record, hash) {
                    return Ok(Err(problem));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use custos_core::{ActorType, Outcome};

    fn event() -> AuditEvent {
        AuditEvent {
            time: Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap(),
            actor: "system".into(),
            actor_type: ActorType::System,
            source_ip: None,
            user_agent: None,
            request_id: None,
            action: "test.act".into(),
            resource: "thing/1".into(),
            outcome: Outcome::Success,
            status: None,
            detail: serde_json::json!({}),
        }
    }

    #[test]
    fn records_start_with_their_position() {
        let (s1, r1, h1) = next_entry(None, &event()).unwrap();
        let (s2, r2, _) = next_entry(Some((s1, h1.to_vec())), &event()).unwrap();
        assert_eq!((s1, s2), (1, 2));
        assert!(r1.starts_with("{\"seq\":1,"));
        assert!(r2.starts_with("{\"seq\":2,"));
        assert_eq!(custos_crypto::auditlog::record_seq(r2.as_bytes()), Some(2));
        let parsed: serde_json::Value = serde_json::from_str(&r2).unwrap();
        assert_eq!(parsed["action"], "test.act");
        assert_eq!(h1, chain_hash(&GENESIS, r1.as_bytes()));
    }
}
