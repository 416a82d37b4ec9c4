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

/// The text stored (and hashed) for `event` at position `seq`. The `seq` is inside the hashed
/// bytes so an entry cannot be moved to another position without breaking its hash.
pub(crate) fn record_json(event: &AuditEvent, seq: i64) -> Result<String, StoreError> {
    let mut value = serde_json::to_value(event)
        .map_err(|e| StoreError::Database(format!("audit event does not serialise: {e}")))?;
    let serde_json::Value::Object(fields) = &mut value else {
        return Err(StoreError::Database(
            "audit event did not serialise to an object".into(),
        ));
    };
    fields.insert("seq".into(), serde_json::Value::from(seq));
    serde_json::to_string(&value)
        .map_err(|e| StoreError::Database(format!("audit event does not serialise: {e}")))
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

/// Walks stored entries in `seq` order, recomputing the chain from [`GENESIS`].
pub(crate) struct ChainVerifier {
    expected_seq: i64,
    previous: [u8; 32],
    checked: u64,
}

impl ChainVerifier {
    pub(crate) fn new() -> Self {
        Self {
            expected_seq: 1,
            previous: GENESIS,
            checked: 0,
        }
    }

    /// The last sequence number accepted so far (0 before the first), to page from.
    pub(crate) fn last_seq(&self) -> i64 {
        self.expected_seq.saturating_sub(1)
    }

    /// How many entries verified.
    pub(crate) fn checked(&self) -> u64 {
        self.checked
    }

    /// Checks the next stored entry. A gap reports the first missing `seq`; a wrong hash, a
    /// `seq` inside the record that disagrees with the row's, or an unreadable record reports
    /// the entry itself.
    pub(crate) fn check(&mut self, seq: i64, record: &str, hash: &[u8]) -> Result<(), StoreError> {
        if seq != self.expected_seq {
            return Err(StoreError::AuditChainBroken {
                seq: self.expected_seq,
            });
        }
        let broken = StoreError::AuditChainBroken { seq };
        let recorded_seq = serde_json::from_str::<serde_json::Value>(record)
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_i64));
        if recorded_seq != Some(seq) {
            return Err(broken);
        }
        let expected = chain_hash(&self.previous, record.as_bytes());
        if hash != expected.as_slice() {
            return Err(broken);
        }
        self.previous = expected;
        self.expected_seq = seq.saturating_add(1);
        self.checked = self.checked.saturating_add(1);
        Ok(())
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
            detail: serde_json::json!({}),
        }
    }

    #[test]
    fn chain_round_trip_and_breaks() {
        let (s1, r1, h1) = next_entry(None, &event()).unwrap();
        let (s2, r2, h2) = next_entry(Some((s1, h1.to_vec())), &event()).unwrap();
        assert_eq!((s1, s2), (1, 2));
        assert!(r2.contains("\"seq\":2"));

        let mut v = ChainVerifier::new();
        v.check(s1, &r1, &h1).unwrap();
        v.check(s2, &r2, &h2).unwrap();
        assert_eq!(v.checked(), 2);

        // A record moved to another position (same bytes) fails on its embedded seq.
        let mut v = ChainVerifier::new();
        assert!(matches!(
            v.check(1, &r2, &h2),
            Err(StoreError::AuditChainBroken { seq: 1 })
        ));
        // A gap names the first missing seq.
        let mut v = ChainVerifier::new();
        assert!(matches!(
            v.check(2, &r2, &h2),
            Err(StoreError::AuditChainBroken { seq: 1 })
        ));
        // A changed record fails on its hash.
        let mut v = ChainVerifier::new();
        let tampered = r1.replace("thing/1", "thing/2");
        assert!(matches!(
            v.check(1, &tampered, &h1),
            Err(StoreError::AuditChainBroken { seq: 1 })
        ));
    }
}
