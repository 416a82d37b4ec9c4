//! The audit log as a verifiable whole: the hash chain, the RFC 9162 Merkle tree over the same
//! entries, and the signed checkpoints over that tree — and the one verification walk that
//! checks all three, wherever the entries come from (a live database, a data directory, an
//! export file).
//!
//! Owns: the leaf encoding (an entry's stored record bytes), the fast reading of the `seq` that
//! every record carries, the checkpoint rules (origin, signer key window, size order, root equal
//! to the tree the entries build) and the retention anchor (a checkpoint's compact range, from
//! which verification resumes after older entries were pruned). It does no IO: callers feed
//! entries in `seq` order.
//!
//! What each layer catches: the chain pins every entry to its predecessor (a changed, removed,
//! inserted or reordered entry breaks it at that entry, unless the attacker rewrote every later
//! hash too); the signed checkpoints pin the whole prefix they cover to a root that only the
//! holder of the signing key can vouch for, which catches the consistent rewrite and any
//! truncation below the newest checkpoint. A cut of entries newer than the newest checkpoint is
//! only visible against a checkpoint the verifier kept from earlier (`trusted`), which is why
//! checkpoints are signed at least every minute and mirrored to the extra sinks.

use crate::audit::{GENESIS, chain_hash};
use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::merkle::{CompactRange, Hash, leaf_hash};
use std::collections::VecDeque;

/// A checkpoint signing key and the window in which it may sign (unix microseconds).
#[derive(Debug, Clone)]
pub struct KeyWindow {
    /// Version number, from 1.
    pub version: u32,
    /// The public half.
    pub verifier: NoteVerifier,
    /// First instant it may sign.
    pub valid_from: i64,
    /// Instant it stopped signing (the next key's `valid_from`), if it was rotated.
    pub valid_until: Option<i64>,
}

impl KeyWindow {
    fn covers(&self, at: i64) -> bool {
        at >= self.valid_from && self.valid_until.is_none_or(|until| at <= until)
    }
}

/// One stored checkpoint as the verifier receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Entries covered.
    pub tree_size: u64,
    /// The signed note.
    pub note: String,
    /// Which key version signed it.
    pub key_version: u32,
    /// When it was signed (unix microseconds).
    pub signed_at: i64,
}

/// Where verification starts after retention pruned the oldest entries: a checkpoint and the
/// state needed to continue from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The checkpoint's size: entries `1..=tree_size` may be gone.
    pub tree_size: u64,
    /// The compact range (perfect-subtree roots) of the tree at that size.
    pub frontier: Vec<Hash>,
    /// The chain hash of entry `tree_size`.
    pub chain_hash: Hash,
}

/// What is wrong, naming the first bad place. The texts never quote record content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An entry is missing, changed, moved or unreadable.
    #[error("entry {seq}: {reason}")]
    Entry {
        /// The first entry found bad.
        seq: u64,
        /// What was found.
        reason: String,
    },
    /// The entries do not build the tree a checkpoint signed, though each entry's chain hash
    /// matched: the whole range was rewritten consistently.
    #[error("entries {first}..={last} do not match signed checkpoint {tree_size}: {reason}")]
    Range {
        /// First entry of the range the checkpoint covers beyond the previous one.
        first: u64,
        /// Last entry it covers.
        last: u64,
        /// The checkpoint's size.
        tree_size: u64,
        /// What was found.
        reason: String,
    },
    /// A checkpoint is invalid on its own (signature, key window, origin, order).
    #[error("checkpoint {tree_size}: {reason}")]
    Checkpoint {
        /// Its size.
        tree_size: u64,
        /// What was found.
        reason: String,
    },
    /// Entries a checkpoint covers are missing from the end of the log.
    #[error(
        "log truncated: checkpoint {tree_size} covers entries up to {tree_size}, the log ends at {last_seq}; first missing entry {first_missing}"
    )]
    Truncated {
        /// The checkpoint that proves the entries existed.
        tree_size: u64,
        /// Last entry present.
        last_seq: u64,
        /// The first entry missing.
        first_missing: u64,
    },
}

impl Problem {
    /// The first entry the problem implicates; `None` for a checkpoint that is bad on its own.
    pub fn first_entry(&self) -> Option<u64> {
        match self {
            Problem::Entry { seq, .. } => Some(*seq),
            Problem::Range { first, .. } => Some(*first),
            Problem::Truncated { first_missing, .. } => Some(*first_missing),
            Problem::Checkpoint { .. } => None,
        }
    }
}

/// What a successful walk established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's position (0 for an empty log).
    pub last_seq: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// The newest checked checkpoint's size (0 if none).
    pub latest_checkpoint: u64,
    /// Entries after the newest checkpoint (chained but not yet signed).
    pub unsigned_tail: u64,
    /// The first position checked (1, or the retention anchor + 1).
    pub first_seq: u64,
    /// The Merkle root of the whole log as verified.
    pub root: Hash,
}

/// The verification walk. Feed every stored entry in `seq` order to [`LogVerifier::entry`],
/// then call [`LogVerifier::finish`].
#[derive(Debug)]
pub struct LogVerifier {
    range: CompactRange,
    previous_chain: Hash,
    next_seq: u64,
    first_seq: u64,
    pending: VecDeque<(u64, Hash)>,
    last_checked: u64,
    checked_checkpoints: u64,
    entries: u64,
}

/// The `seq` written at the front of every record (`{"seq":N,...`), read without parsing the
/// whole record. Records written before that layout fall back to a full parse.
pub fn record_seq(record: &[u8]) -> Option<u64> {
    if let Some(rest) = record.strip_prefix(b"{\"seq\":") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (number, after) = rest.split_at_checked(digits)?;
        if digits == 0 || digits > 19 || !matches!(after.first(), Some(b',' | b'}')) {
            return None;
        }
        if number.len() > 1 && number.first() == Some(&b'0') {
            return None;
        }
        return std::str::from_utf8(number).ok()?.parse().ok();
    }
    let value: serde_json::Value = serde_json::from_slice(record).ok()?;
    value.get("seq")?.as_u64()
}

impl LogVerifier {
    /// Prepares a walk: checks every checkpoint's signature against the key that signed it (and
    /// that key's window), its origin, and that sizes grow with signing time; `anchor` (if the
    /// log was pruned) must match the checkpoint of its size. `trusted` are checkpoints the
    /// verifier kept from earlier (already verified by the caller): each must be reproduced by
    /// the entries, so a log cut below one of them fails.
    pub fn new(
        origin: &str,
        keys: &[KeyWindow],
        checkpoints: &[StoredCheckpoint],
        anchor: Option<&Anchor>,
        trusted: &[Checkpoint],
    ) -> Result<Self, Problem> {
        let mut sorted: Vec<&StoredCheckpoint> = checkpoints.iter().collect();
        sorted.sort_by_key(|c| c.tree_size);
        let mut roots: Vec<(u64, Hash)> = Vec::with_capacity(sorted.len() + trusted.len());
        let mut previous: Option<&StoredCheckpoint> = None;
        for stored in sorted {
            let bad = |reason: &str| Problem::Checkpoint {
                tree_size: stored.tree_size,
                reason: reason.to_owned(),
            };
            let key = keys
                .iter()
                .find(|k| k.version == stored.key_version)
                .ok_or_else(|| bad("signed by an unknown key version"))?;
            if !key.covers(stored.signed_at) {
                return Err(bad("signed outside its key's validity window"));
            }
            let checkpoint = key
                .verifier
                .verify(&stored.note)
                .map_err(|e| bad(&format!("signature or note invalid ({e})")))?;
            if checkpoint.origin != origin {
                return Err(bad("belongs to another log (origin differs)"));
            }
            if checkpoint.size != stored.tree_size {
                return Err(bad("signed size differs from the stored size"));
            }
            if let Some(prev) = previous {
                if prev.tree_size == stored.tree_size {
                    return Err(bad("two checkpoints of one size"));
                }
                if prev.signed_at > stored.signed_at {
                    return Err(bad("signed before a smaller checkpoint"));
                }
            }
            roots.push((checkpoint.size, checkpoint.root));
            previous = Some(stored);
        }
        for checkpoint in trusted {
            if checkpoint.origin != origin {
                return Err(Problem::Checkpoint {
                    tree_size: checkpoint.size,
                    reason: "trusted checkpoint belongs to another log".into(),
                });
            }
            roots.push((checkpoint.size, checkpoint.root));
        }
        roots.sort_by_key(|(size, _)| *size);
        roots.dedup();
        for pair in roots.windows(2) {
            if let [(a, _), (b, _)] = pair
                && a == b
            {
                return Err(Problem::Checkpoint {
                    tree_size: *a,
                    reason: "two different roots signed for one size".into(),
                });
            }
        }

        let (range, previous_chain, start) = match anchor {
            None => (CompactRange::new(), GENESIS, 0),
            Some(anchor) => {
                let bad = |reason: &str| Problem::Checkpoint {
                    tree_size: anchor.tree_size,
                    reason: reason.to_owned(),
                };
                let range = CompactRange::from_parts(anchor.tree_size, anchor.frontier.clone())
                    .map_err(|_| bad("retention anchor's compact range is malformed"))?;
                let signed = roots
                    .iter()
                    .find(|(size, _)| *size == anchor.tree_size)
                    .ok_or_else(|| bad("retention anchor has no signed checkpoint"))?;
                if range.root() != signed.1 {
                    return Err(bad("retention anchor does not match its signed root"));
                }
                (range, anchor.chain_hash, anchor.tree_size)
            }
        };
        let pending: VecDeque<(u64, Hash)> = roots
            .into_iter()
            .filter(|(size, _)| *size > start)
            .collect();
        Ok(Self {
            range,
            previous_chain,
            next_seq: start.saturating_add(1),
            first_seq: start.saturating_add(1),
            pending,
            last_checked: start,
            checked_checkpoints: u64::from(anchor.is_some()),
            entries: 0,
        })
    }

    /// The position the next entry must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checks the next stored entry: its position, the `seq` inside its record, its chain
    /// hash, and — when it completes a checkpoint's tree — the signed root.
    pub fn entry(&mut self, seq: u64, record: &[u8], hash: &[u8]) -> Result<(), Problem> {
        let expected = self.next_seq;
        if seq != expected {
            let reason = if seq > expected {
                format!("missing (the log jumps to entry {seq})")
            } else {
                format!("out of order (entry {seq} appears again after it)")
            };
            return Err(Problem::Entry {
                seq: expected,
                reason,
            });
        }
        let bad = |reason: &str| Problem::Entry {
            seq,
            reason: reason.to_owned(),
        };
        if record_seq(record) != Some(seq) {
            return Err(bad(
                "record is unreadable or carries another position (moved or changed)",
            ));
        }
        let chained = chain_hash(&self.previous_chain, record);
        if hash != chained.as_slice() {
            return Err(bad(
                "chain hash does not match (the entry or its predecessor was changed)",
            ));
        }
        self.range
            .append(leaf_hash(record))
            .map_err(|_| bad("tree size overflow"))?;
        self.previous_chain = chained;
        self.next_seq = seq.saturating_add(1);
        self.entries = self.entries.saturating_add(1);
        if let Some(&(size, root)) = self.pending.front()
            && size == seq
        {
            if self.range.root() != root {
                return Err(Problem::Range {
                    first: self.last_checked.saturating_add(1),
                    last: size,
                    tree_size: size,
                    reason: "the root built from the entries differs from the signed root".into(),
                });
            }
            self.pending.pop_front();
            self.last_checked = size;
            self.checked_checkpoints = self.checked_checkpoints.saturating_add(1);
        }
        Ok(())
    }

    /// Ends the walk: every checkpoint must have been reached.
    pub fn finish(self) -> Result<Verified, Problem> {
        let last_seq = self.next_seq.saturating_sub(1);
        if let Some(&(size, _)) = self.pending.back() {
            return Err(Problem::Truncated {
                tree_size: size,
                last_seq,
                first_missing: self.next_seq,
            });
        }
        Ok(Verified {
            entries: self.entries,
            last_seq,
            checkpoints: self.checked_checkpoints,
            latest_checkpoint: self.last_checked,
            unsigned_tail: last_seq.saturating_sub(self.last_checked),
            first_seq: self.first_seq,
            root: self.range.root(),
        })
    }
}

/// Builds the next checkpoint's tree: resumes from the previous checkpoint's compact range and
/// appends the new entries' leaves, checking their chain and positions on the way so a
/// checkpoint is never signed over entries that are already broken.
#[derive(Debug)]
pub struct TreeBuilder {
    range: CompactRange,
    previous_chain: Hash,
}

impl TreeBuilder {
    /// Starts after `size` entries whose compact range is `frontier` and whose last chain hash
    /// is `chain_hash` (`size` 0: the empty log).
    pub fn resume(size: u64, frontier: Vec<Hash>, chain_hash: Hash) -> Result<Self, Problem> {
        let range = CompactRange::from_parts(size, frontier).map_err(|_| Problem::Checkpoint {
            tree_size: size,
            reason: "stored compact range is malformed".into(),
        })?;
        Ok(Self {
            range,
            previous_chain: if size == 0 { GENESIS } else { chain_hash },
        })
    }

    /// Appends the next entry.
    pub fn push(&mut self, seq: u64, record: &[u8], hash: &[u8]) -> Result<(), Problem> {
        let expected = self.range.size().saturating_add(1);
        let bad = |reason: &str| Problem::Entry {
            seq: expected,
            reason: reason.to_owned(),
        };
        if seq != expected || record_seq(record) != Some(seq) {
            return Err(bad("missing, moved or unreadable"));
        }
        let chained = chain_hash(&self.previous_chain, record);
        if hash != chained.as_slice() {
            return Err(bad("chain hash does not match"));
        }
        self.range
            .append(leaf_hash(record))
            .map_err(|_| bad("tree size overflow"))?;
        self.previous_chain = chained;
        Ok(())
    }

    /// Entries in the tree.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// The compact range to store with the checkpoint.
    pub fn frontier(&self) -> &[Hash] {
        self.range.nodes()
    }

    /// The last entry's chain hash.
    pub fn chain_hash(&self) -> Hash {
        self.previous_chain
    }
}

/// Keyed hashing of secrets and personal data that an audit record must mention without
/// holding (a guessed user name, a presented credential): `HMAC-SHA256(key, "custos/audit/v1\0"
/// ‖ value)`, shown as `hmac-sha256:<hex>`. An auditor who knows a value asks the server (or runs
/// `custos audit hash`) for its tag and searches for it; without the key the tags cannot be
/// reversed by enumeration, which a plain hash of a short value could.
#[derive(Clone)]
pub struct AuditHasher(crate::mac::MacKey);

const AUDIT_VALUE_DOMAIN: &[u8] = b"custos/audit/v1\0";

impl AuditHasher {
    /// Keys the hasher with the instance's audit key.
    pub fn new(key: &crate::SecretBytes) -> Self {
        Self(crate::mac::MacKey::new(key.expose()))
    }

    /// The tag of `value` as recorded in audit entries.
    pub fn tag(&self, value: &str) -> String {
        let tag = self.0.tag(&[AUDIT_VALUE_DOMAIN, value.as_bytes()]);
        format!("hmac-sha256:{}", hex::encode(tag))
    }
}

impl std::fmt::Debug for AuditHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditHasher([redacted])")
    }
}

/// Packs a compact range for storage (32 bytes per node).
pub fn pack_frontier(nodes: &[Hash]) -> Vec<u8> {
    nodes.iter().flat_map(|n| n.iter().copied()).collect()
}

/// Unpacks a stored compact range.
pub fn unpack_frontier(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    bytes
        .chunks_exact(32)
        .map(|chunk| <Hash>::try_from(chunk).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::checkpoint::NoteSigner;

    const ORIGIN: &str = "custos.test/audit";

    fn record(seq: u64, body: &str) -> String {
        format!("{{\"seq\":{seq},\"action\":\"{body}\"}}")
    }

    struct Log {
        rows: Vec<(u64, String, Hash)>,
        checkpoints: Vec<StoredCheckpoint>,
        keys: Vec<KeyWindow>,
    }

    fn build(n: u64, every: u64) -> Log {
        let signer = NoteSigner::from_seed(ORIGIN, &[7u8; 32]).unwrap();
        let mut rows = Vec::new();
        let mut builder = TreeBuilder::resume(0, Vec::new(), GENESIS).unwrap();
        let mut checkpoints = Vec::new();
        let mut prev = GENESIS;
        for seq in 1..=n {
            let r = record(seq, &format!("act{seq}"));
            let h = chain_hash(&prev, r.as_bytes());
            prev = h;
            builder.push(seq, r.as_bytes(), &h).unwrap();
            rows.push((seq, r, h));
            if seq % every == 0 {
                let cp = Checkpoint {
                    origin: ORIGIN.into(),
                    size: seq,
                    root: builder.root(),
                };
                checkpoints.push(StoredCheckpoint {
                    tree_size: seq,
                    note: signer.sign(&cp).unwrap(),
                    key_version: 1,
                    signed_at: i64::try_from(seq).unwrap(),
                });
            }
        }
        Log {
            rows,
            checkpoints,
            keys: vec![KeyWindow {
                version: 1,
                verifier: signer.verifier(),
                valid_from: 0,
                valid_until: None,
            }],
        }
    }

    fn verify(log: &Log) -> Result<Verified, Problem> {
        let mut v = LogVerifier::new(ORIGIN, &log.keys, &log.checkpoints, None, &[])?;
        for (seq, r, h) in &log.rows {
            v.entry(*seq, r.as_bytes(), h)?;
        }
        v.finish()
    }

    #[test]
    fn intact_log_verifies() {
        let log = build(25, 10);
        let ok = verify(&log).unwrap();
        assert_eq!(ok.entries, 25);
        assert_eq!(ok.checkpoints, 2);
        assert_eq!(ok.latest_checkpoint, 20);
        assert_eq!(ok.unsigned_tail, 5);
    }

    #[test]
    fn seq_is_read_from_the_front_or_parsed() {
        assert_eq!(record_seq(b"{\"seq\":42,\"a\":1}"), Some(42));
        assert_eq!(record_seq(b"{\"a\":1,\"seq\":42}"), Some(42));
        assert_eq!(record_seq(b"{\"seq\":042,\"a\":1}"), None);
        assert_eq!(record_seq(b"{\"seq\":,\"a\":1}"), None);
        assert_eq!(record_seq(b"not json"), None);
    }

    #[test]
    fn changed_entry_is_named() {
        let mut log = build(25, 10);
        log.rows[6].1 = log.rows[6].1.replace("act7", "act8");
        assert!(matches!(verify(&log), Err(Problem::Entry { seq: 7, .. })));
    }

    #[test]
    fn consistent_rewrite_is_caught_by_the_checkpoint() {
        let mut log = build(25, 10);
        // Rewrite entry 13 and re-chain everything after it, as an attacker with the database
        // (but without the signing key) can.
        log.rows[12].1 = record(13, "forged");
        let mut prev = log.rows[11].2;
        for row in log.rows.iter_mut().skip(12) {
            row.2 = chain_hash(&prev, row.1.as_bytes());
            prev = row.2;
        }
        assert!(matches!(
            verify(&log),
            Err(Problem::Range {
                first: 11,
                last: 20,
                ..
            })
        ));
    }

    #[test]
    fn deletion_reorder_and_truncation_are_caught() {
        let mut log = build(25, 10);
        log.rows.remove(4);
        assert!(matches!(verify(&log), Err(Problem::Entry { seq: 5, .. })));

        let mut log = build(25, 10);
        log.rows.swap(3, 4);
        assert!(matches!(verify(&log), Err(Problem::Entry { seq: 4, .. })));

        let mut log = build(25, 10);
        log.rows.truncate(15);
        assert!(matches!(
            verify(&log),
            Err(Problem::Truncated {
                tree_size: 20,
                first_missing: 16,
                ..
            })
        ));
    }

    #[test]
    fn truncation_of_the_unsigned_tail_needs_a_trusted_checkpoint() {
        let log = build(25, 10);
        let full = verify(&log).unwrap();
        let trusted = Checkpoint {
            origin: ORIGIN.into(),
            size: 25,
            root: full.root,
        };
        let mut cut = build(25, 10);
        cut.rows.truncate(22);
        assert!(
            verify(&cut).is_ok(),
            "without outside knowledge a cut tail is invisible"
        );
        let mut v =
            LogVerifier::new(ORIGIN, &cut.keys, &cut.checkpoints, None, &[trusted]).unwrap();
        for (seq, r, h) in &cut.rows {
            v.entry(*seq, r.as_bytes(), h).unwrap();
        }
        assert!(matches!(
            v.finish(),
            Err(Problem::Truncated {
                first_missing: 23,
                ..
            })
        ));
    }

    #[test]
    fn checkpoint_signature_key_window_and_origin_are_checked() {
        let mut log = build(20, 10);
        log.checkpoints[0].note = log.checkpoints[0].note.replacen("10", "11", 1);
        assert!(matches!(
            verify(&log),
            Err(Problem::Checkpoint { tree_size: 10, .. })
        ));

        let mut log = build(20, 10);
        log.keys[0].valid_until = Some(15);
        assert!(matches!(
            verify(&log),
            Err(Problem::Checkpoint { tree_size: 20, .. })
        ));

        let log = build(20, 10);
        let err =
            LogVerifier::new("other/log", &log.keys, &log.checkpoints, None, &[]).unwrap_err();
        assert!(matches!(err, Problem::Checkpoint { tree_size: 10, .. }));

        let other = NoteSigner::from_seed(ORIGIN, &[9u8; 32]).unwrap();
        let mut log = build(20, 10);
        log.keys[0].verifier = other.verifier();
        assert!(verify(&log).is_err());
    }

    #[test]
    fn verification_resumes_from_a_retention_anchor() {
        let log = build(30, 10);
        let mut builder = TreeBuilder::resume(0, Vec::new(), GENESIS).unwrap();
        for (seq, r, h) in log.rows.iter().take(10) {
            builder.push(*seq, r.as_bytes(), h).unwrap();
        }
        let anchor = Anchor {
            tree_size: 10,
            frontier: builder.frontier().to_vec(),
            chain_hash: builder.chain_hash(),
        };
        let mut v =
            LogVerifier::new(ORIGIN, &log.keys, &log.checkpoints, Some(&anchor), &[]).unwrap();
        for (seq, r, h) in log.rows.iter().skip(10) {
            v.entry(*seq, r.as_bytes(), h).unwrap();
        }
        let ok = v.finish().unwrap();
        assert_eq!((ok.first_seq, ok.entries, ok.checkpoints), (11, 20, 3));

        let mut bad = anchor.clone();
        bad.frontier[0][0] ^= 1;
        assert!(LogVerifier::new(ORIGIN, &log.keys, &log.checkpoints, Some(&bad), &[]).is_err());
    }

    #[test]
    fn audit_tags_are_keyed_and_stable() {
        let a = AuditHasher::new(&crate::SecretBytes::from_slice(&[1u8; 32]).unwrap());
        let b = AuditHasher::new(&crate::SecretBytes::from_slice(&[2u8; 32]).unwrap());
        assert_eq!(a.tag("alice"), a.tag("alice"));
        assert_ne!(a.tag("alice"), a.tag("bob"));
        assert_ne!(a.tag("alice"), b.tag("alice"));
        assert!(a.tag("alice").starts_with("hmac-sha256:"));
        assert_eq!(a.tag("alice").len(), "hmac-sha256:".len() + 64);
    }

    #[test]
    fn frontier_packing_round_trips() {
        let nodes = vec![[1u8; 32], [2u8; 32]];
        assert_eq!(unpack_frontier(&pack_frontier(&nodes)).unwrap(), nodes);
        assert!(unpack_frontier(&[0u8; 33]).is_none());
    }
}
