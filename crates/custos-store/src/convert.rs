//! Conversions between API values and the column encodings both backends share.
//!
//! Owns the storage encodings: times as Unix microseconds in a 64-bit integer, unsigned counts
//! as non-negative 64-bit integers, hashes as 32-byte blobs. Must not touch a connection.
//! Keeping one encoding for both backends is what lets one conformance suite expect identical
//! answers from each.

use crate::StoreError;
use crate::types::{
    CheckpointRow, ModelRow, MonitoringConfigRow, ReferenceRow, StoredBatch, StoredProfile,
    TokenRow,
};
use chrono::{DateTime, Utc};
use custos_core::{HourBucket, Partition};
use custos_crypto::WrappedKey;

/// A time as stored.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored time back as a `DateTime`.
pub(crate) fn time(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt("stored time out of range".into()))
}

/// An optional stored time.
pub(crate) fn opt_time(micros: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    micros.map(time).transpose()
}

/// An unsigned count to store; counts beyond `i64::MAX` cannot be real.
pub(crate) fn count_in(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Database("count exceeds the 64-bit column".into()))
}

/// A stored count back as unsigned.
pub(crate) fn count_out(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt("negative stored count".into()))
}

/// A stored row count of one batch.
pub(crate) fn row_count(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt("batch row count out of range".into()))
}

/// A stored KEK version.
pub(crate) fn kek_version(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt("KEK version out of range".into()))
}

/// A stored 32-byte hash or key.
pub(crate) fn hash32(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| StoreError::Corrupt("stored hash is not 32 bytes".into()))
}

// Row shapes as both backends select them (same column order, same storage encodings).

/// `(kek_version, wrapped)` → [`WrappedKey`].
pub(crate) fn wrapped((version, bytes): (i64, Vec<u8>)) -> Result<WrappedKey, StoreError> {
    Ok(WrappedKey {
        kek_version: kek_version(version)?,
        bytes,
    })
}

/// `(id, name, spec_json, created_at)` → [`ModelRow`].
pub(crate) fn model_row(
    (id, name, spec_json, created_at): (i64, String, String, i64),
) -> Result<ModelRow, StoreError> {
    Ok(ModelRow {
        id,
        name,
        spec_json,
        created_at: time(created_at)?,
    })
}

/// `(id, partition, row_count, min_time, max_time, ciphertext)` → [`StoredBatch`].
pub(crate) fn stored_batch(
    (id, partition, rows, min_time, max_time, ciphertext): (i64, i64, i64, i64, i64, Vec<u8>),
) -> Result<StoredBatch, StoreError> {
    Ok(StoredBatch {
        id,
        partition: Partition(partition),
        row_count: row_count(rows)?,
        min_time: time(min_time)?,
        max_time: time(max_time)?,
        ciphertext,
    })
}

/// `(id, hour, partition, ciphertext)` → [`StoredProfile`].
pub(crate) fn stored_profile(
    (id, hour, partition, ciphertext): (i64, i64, i64, Vec<u8>),
) -> StoredProfile {
    StoredProfile {
        id,
        hour: HourBucket(hour),
        partition: Partition(partition),
        ciphertext,
    }
}

/// The `api_tokens` columns as selected, hash excluded.
pub(crate) type TokenTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

/// [`TokenTuple`] → [`TokenRow`].
pub(crate) fn token_row(
    (
        id,
        display_prefix,
        description,
        scopes_json,
        created_by,
        created_at,
        expires_at,
        revoked_at,
        last_used_at,
    ): TokenTuple,
) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id,
        display_prefix,
        description,
        scopes_json,
        created_by,
        created_at: time(created_at)?,
        expires_at: time(expires_at)?,
        revoked_at: opt_time(revoked_at)?,
        last_used_at: opt_time(last_used_at)?,
    })
}

/// The `reference_sets` columns as selected, in [`REFERENCE_COLUMNS`] order.
pub(crate) type ReferenceTuple = (
    i64,
    String,
    i64,
    String,
    Vec<u8>,
    i64,
    Option<String>,
    i64,
    String,
    i64,
);

/// The select list matching [`ReferenceTuple`].
pub(crate) const REFERENCE_COLUMNS: &str = "id, uid, model_id, name, sha256, row_count, \
     label_field, partition, created_by, created_at";

/// [`ReferenceTuple`] → [`ReferenceRow`].
pub(crate) fn reference_row(
    (id, uid, model_id, name, sha256, rows, label_field, partition, created_by, created_at): ReferenceTuple,
) -> Result<ReferenceRow, StoreError> {
    Ok(ReferenceRow {
        id,
        uid,
        model_id,
        name,
        sha256: hash32(&sha256)?,
        row_count: count_out(rows)?,
        label_field,
        partition: Partition(partition),
        created_by,
        created_at: time(created_at)?,
    })
}

/// `(version, config_json, created_by, created_at)` → [`MonitoringConfigRow`].
pub(crate) fn monitoring_config_row(
    (version, config_json, created_by, created_at): (i64, String, String, i64),
) -> Result<MonitoringConfigRow, StoreError> {
    Ok(MonitoringConfigRow {
        version,
        config_json,
        created_by,
        created_at: time(created_at)?,
    })
}

/// A checkpoint as both backends select it.
pub(crate) type CheckpointTuple = (i64, Vec<u8>, String, i64, i64, Vec<u8>, Vec<u8>);

/// Converts a selected checkpoint.
pub(crate) fn checkpoint_row(
    (tree_size, root, note, key_version, signed_at, frontier, chain_hash): CheckpointTuple,
) -> Result<CheckpointRow, StoreError> {
    Ok(CheckpointRow {
        tree_size,
        root: hash32(&root)?,
        note,
        key_version,
        signed_at: time(signed_at)?,
        frontier,
        chain_hash: hash32(&chain_hash)?,
    })
}
