//! The plain row and command types of the store's API.
//!
//! Owns only data shapes. Must not hold plaintext row values: everything that came from a
//! model's events is a [`SealedBatch`]/[`SealedBlob`] or its ciphertext bytes, and everything
//! else is an identifier, a count, a time or an operator-supplied name/description.

use chrono::{DateTime, Utc};
use custos_core::{EventKey, HourBucket, Partition};
use custos_crypto::{SealedBatch, SealedBlob};
use std::fmt;

/// A registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRow {
    /// Store-assigned id; never reused, because data keys and audit records name it.
    pub id: i64,
    /// The unique model name.
    pub name: String,
    /// The registration body as sent (schema and masking policy; no row values).
    pub spec_json: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// Everything one ingest request writes, committed in one transaction.
#[derive(Debug, Clone)]
pub struct IngestCommit {
    /// The sealed rows.
    pub batch: SealedBatch,
    /// The keyed index key and event time of every row in the batch.
    pub events: Vec<(EventKey, DateTime<Utc>)>,
    /// Sealed profile deltas computed from the batch.
    pub profiles: Vec<ProfileDelta>,
    /// Rows per event hour (several entries for one hour are summed).
    pub volume: Vec<(HourBucket, u64)>,
    /// What PII detection masked: (event hour, field, kind, findings); several entries for one
    /// key are summed. Counts only.
    pub pii_findings: Vec<(HourBucket, String, String, u64)>,
}

/// Lets [`crate::Store::commit_ingest`] take a single commit as well as several.
impl From<IngestCommit> for Vec<IngestCommit> {
    fn from(commit: IngestCommit) -> Self {
        vec![commit]
    }
}

/// One sealed profile delta of one column and hour.
#[derive(Debug, Clone)]
pub struct ProfileDelta {
    /// The column (feature or prediction) the sketch describes.
    pub column: String,
    /// The event hour it covers.
    pub hour: HourBucket,
    /// The sealed sketch.
    pub sealed: SealedBlob,
}

/// A stored profile delta, still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    /// Row id, used to replace deltas by a merged one.
    pub id: i64,
    /// The event hour it covers.
    pub hour: HourBucket,
    /// The partition whose data key sealed it.
    pub partition: Partition,
    /// The sealed sketch.
    pub ciphertext: Vec<u8>,
}

/// A stored event batch, still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Row id.
    pub id: i64,
    /// The partition whose data key sealed it.
    pub partition: Partition,
    /// How many rows it holds.
    pub row_count: u32,
    /// Earliest event time in the batch.
    pub min_time: DateTime<Utc>,
    /// Latest event time in the batch.
    pub max_time: DateTime<Utc>,
    /// The sealed rows.
    pub ciphertext: Vec<u8>,
}

/// One ground-truth label to store.
#[derive(Debug, Clone)]
pub struct LabelRow {
    /// The keyed index key of the event the label belongs to.
    pub event_key: EventKey,
    /// The sealed label value.
    pub sealed: SealedBlob,
}

/// A stored label, still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLabel {
    /// The keyed index key of its event.
    pub event_key: EventKey,
    /// The partition whose data key sealed it.
    pub partition: Partition,
    /// The sealed label.
    pub ciphertext: Vec<u8>,
}

/// What [`crate::Store::upsert_labels`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelOutcome {
    /// Labels written (one per input label; a repeated key overwrites the earlier one).
    pub stored: u64,
}

/// A new API token. The secret itself is never stored, only its keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Public id, such as `tok_` + 16 hex digits.
    pub id: String,
    /// Keyed hash (HMAC under the token pepper) of the secret.
    pub hash: [u8; 32],
    /// The first characters of the secret, shown so people can tell tokens apart.
    pub display_prefix: String,
    /// What the token is for, as its creator wrote it.
    pub description: String,
    /// The granted scopes, as JSON.
    pub scopes_json: String,
    /// Who issued it.
    pub created_by: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for NewToken {
    // The hash is not the secret, but it is the lookup key for one: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("hash", &"<redacted>")
            .field("display_prefix", &self.display_prefix)
            .field("description", &self.description)
            .field("scopes_json", &self.scopes_json)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored API token (without its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Public id.
    pub id: String,
    /// The first characters of the secret.
    pub display_prefix: String,
    /// What the token is for.
    pub description: String,
    /// The granted scopes, as JSON.
    pub scopes_json: String,
    /// Who issued it.
    pub created_by: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request, if ever.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// One stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position in the log, from 1 without gaps.
    pub seq: i64,
    /// The serialised [`custos_core::AuditEvent`] plus its `seq`; the exact bytes that were hashed.
    pub record_json: String,
    /// `chain_hash(previous entry's hash, record_json)`.
    pub hash: [u8; 32],
}

/// One signed checkpoint of the audit log's Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// Entries covered (`1..=tree_size`).
    pub tree_size: i64,
    /// The tree's root at that size.
    pub root: [u8; 32],
    /// The C2SP signed note.
    pub note: String,
    /// The signing key's version.
    pub key_version: i64,
    /// When it was signed.
    pub signed_at: DateTime<Utc>,
    /// The compact range at `tree_size` (32-byte nodes, packed).
    pub frontier: Vec<u8>,
    /// The chain hash of entry `tree_size`.
    pub chain_hash: [u8; 32],
}

/// A checkpoint signing key's public half and validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    /// From 1; the newest signs new checkpoints.
    pub version: i64,
    /// C2SP verifier key (`name+keyid+base64`).
    pub verifier_key: String,
    /// First instant it may sign.
    pub valid_from: DateTime<Utc>,
    /// When it was retired, if it was.
    pub valid_until: Option<DateTime<Utc>>,
}

/// One version of a model's monitoring configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoringConfigRow {
    /// 1 for the first configuration, one more for each change.
    pub version: i64,
    /// The configuration, as JSON.
    pub config_json: String,
    /// Who made this version.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A reference data set to store: its description and its sealed per-column profiles.
#[derive(Debug, Clone)]
pub struct NewReference {
    /// Public id (random), bound into each profile's associated data.
    pub uid: String,
    /// The model it belongs to.
    pub model_id: i64,
    /// A name for people (the file name, or one given by the uploader).
    pub name: String,
    /// SHA-256 of the uploaded bytes (lineage: which file the monitors compare against).
    pub sha256: [u8; 32],
    /// Rows in the file.
    pub row_count: u64,
    /// The column that held ground-truth labels, if any.
    pub label_field: Option<String>,
    /// The partition whose data key sealed the profiles.
    pub partition: Partition,
    /// Who uploaded it.
    pub created_by: String,
    /// Sealed profiles by column name.
    pub profiles: Vec<(String, SealedBlob)>,
}

/// A stored reference data set (without its profiles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceRow {
    /// Store-assigned id.
    pub id: i64,
    /// Public id.
    pub uid: String,
    /// The model it belongs to.
    pub model_id: i64,
    /// Its name.
    pub name: String,
    /// SHA-256 of the uploaded bytes.
    pub sha256: [u8; 32],
    /// Rows in the file.
    pub row_count: u64,
    /// The label column, if any.
    pub label_field: Option<String>,
    /// The partition whose data key sealed its profiles.
    pub partition: Partition,
    /// Who uploaded it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}
