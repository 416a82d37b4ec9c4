//! The sealed forms the store accepts. Their constructors are crate-private: the only way to get
//! one is to encrypt with this crate, so plaintext cannot reach the store through these types.

use chrono::{DateTime, Utc};
use custos_core::Partition;

/// A batch of masked records of one model and one day partition, compressed and encrypted under
/// that (model, partition)'s data key.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    pub(crate) model_id: i64,
    pub(crate) partition: Partition,
    pub(crate) row_count: u32,
    pub(crate) min_time: DateTime<Utc>,
    pub(crate) max_time: DateTime<Utc>,
    pub(crate) ciphertext: Vec<u8>,
}

impl SealedBatch {
    /// The model the rows belong to.
    pub fn model_id(&self) -> i64 {
        self.model_id
    }
    /// The day partition (and so the data key) of the rows.
    pub fn partition(&self) -> Partition {
        self.partition
    }
    /// How many rows the batch holds.
    pub fn row_count(&self) -> u32 {
        self.row_count
    }
    /// Earliest event time in the batch.
    pub fn min_time(&self) -> DateTime<Utc> {
        self.min_time
    }
    /// Latest event time in the batch.
    pub fn max_time(&self) -> DateTime<Utc> {
        self.max_time
    }
    /// The header-prefixed ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

/// A small encrypted value (a profile delta, a label, a secret) bound to its model, partition and
/// purpose through the AEAD's associated data.
#[derive(Debug, Clone)]
pub struct SealedBlob {
    pub(crate) model_id: i64,
    pub(crate) partition: Partition,
    pub(crate) ciphertext: Vec<u8>,
}

impl SealedBlob {
    /// The model it belongs to.
    pub fn model_id(&self) -> i64 {
        self.model_id
    }
    /// The partition whose data key sealed it.
    pub fn partition(&self) -> Partition {
        self.partition
    }
    /// The header-prefixed ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

/// A key wrapped (encrypted) by a key-encryption key. Safe to store; useless without the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Which KEK version wrapped it.
    pub kek_version: u32,
    /// Header, nonce, ciphertext and tag.
    pub bytes: Vec<u8>,
}
