//! Key-encryption-key maintenance over the two tables that hold wrapped keys: `data_keys` (one
//! per model and day partition) and `secrets` (named server secrets). No other table holds a
//! wrapped key; every other ciphertext is sealed under a data key and is untouched by KEK
//! rotation.
//!
//! Owns: counting wrapped keys per KEK version, listing the ones not yet under a given version,
//! and replacing them in one transaction per batch. A replacement only lands if the row still
//! holds exactly the wrapped key that was read (compare-and-swap on version and bytes), so a
//! concurrent writer or a crypto-shred in between is never overwritten. Must not: unwrap or
//! wrap anything (that is the caller's, with the KEK ring), or log the bytes.

use crate::convert::{count_out, kek_version, wrapped};
use crate::{Store, StoreError};
use custos_core::Partition;
use custos_crypto::{KeyPurpose, WrappedKey};
use std::collections::BTreeMap;

/// Which row a wrapped key is stored in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WrappedKeyRef {
    /// The data key of one model's day partition.
    Data {
        /// The model's id.
        model_id: i64,
        /// The day partition.
        partition: Partition,
        /// What the key seals.
        purpose: KeyPurpose,
    },
    /// A named server secret.
    Secret {
        /// Its name.
        name: String,
    },
}

/// A wrapped key and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWrappedKey {
    /// The row.
    pub at: WrappedKeyRef,
    /// The wrapped key as stored.
    pub key: WrappedKey,
}

/// How many stored keys one KEK version wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KekUsage {
    /// Data keys (`data_keys` rows).
    pub data_keys: u64,
    /// Server secrets (`secrets` rows).
    pub secrets: u64,
}

impl KekUsage {
    /// Data keys and secrets together.
    pub fn total(&self) -> u64 {
        self.data_keys.saturating_add(self.secrets)
    }
}

/// A replacement: `old` exactly as read, `new` to store in its place.
#[derive(Debug, Clone)]
pub struct WrappedKeyChange {
    /// The row and the wrapped key it held when read.
    pub old: StoredWrappedKey,
    /// The re-wrapped key.
    pub new: WrappedKey,
}

/// `(kek_version, count)` rows.
type Counts = Vec<(i64, i64)>;
/// `(model_id, partition, purpose, kek_version, wrapped)` rows.
type DataKeyRows = Vec<(i64, i64, String, i64, Vec<u8>)>;
/// `(name, kek_version, wrapped)` rows.
type SecretRows = Vec<(String, i64, Vec<u8>)>;

const COUNT_DATA: &str = "SELECT kek_version, COUNT(*) FROM data_keys GROUP BY kek_version";
const COUNT_SECRETS: &str = "SELECT kek_version, COUNT(*) FROM secrets GROUP BY kek_version";
const LIST_DATA: &str = "SELECT model_id, partition, purpose, kek_version, wrapped \
     FROM data_keys WHERE kek_version <> ? ORDER BY model_id, partition, purpose LIMIT ?";
const LIST_SECRETS: &str =
    "SELECT name, kek_version, wrapped FROM secrets WHERE kek_version <> ? ORDER BY name LIMIT ?";
const SWAP_DATA: &str = "UPDATE data_keys SET kek_version = ?, wrapped = ? \
     WHERE model_id = ? AND partition = ? AND purpose = ? AND kek_version = ? AND wrapped = ?";
const SWAP_SECRET: &str = "UPDATE secrets SET kek_version = ?, wrapped = ? \
     WHERE name = ? AND kek_version = ? AND wrapped = ?";

impl Store {
    /// Stored wrapped keys per KEK version (only versions that wrap at least one key).
    pub async fn kek_usage(&self) -> Result<BTreeMap<u32, KekUsage>, StoreError> {
        let (data, secrets): (Counts, Counts) = on_backend!(self, |conn, sql| {
            let data = sqlx::query_as(sqlx::AssertSqlSafe(sql(COUNT_DATA)))
                .fetch_all(conn)
                .await?;
            let secrets = sqlx::query_as(sqlx::AssertSqlSafe(sql(COUNT_SECRETS)))
                .fetch_all(conn)
                .await?;
            (data, secrets)
        });
        let mut usage: BTreeMap<u32, KekUsage> = BTreeMap::new();
        for (version, n) in data {
            usage.entry(kek_version(version)?).or_default().data_keys = count_out(n)?;
        }
        for (version, n) in secrets {
            usage.entry(kek_version(version)?).or_default().secrets = count_out(n)?;
        }
        Ok(usage)
    }

    /// Up to `limit` stored wrapped keys whose KEK version is not `version`: data keys first
    /// (by model and partition), then secrets (by name). Re-wrapped rows drop out of the
    /// answer, so asking again after [`Store::replace_wrapped_keys`] gives the next batch.
    pub async fn wrapped_keys_not_under(
        &self,
        version: u32,
        limit: u32,
    ) -> Result<Vec<StoredWrappedKey>, StoreError> {
        let version = i64::from(version);
        let limit_i = i64::from(limit);
        let (data, secrets): (DataKeyRows, SecretRows) = on_backend!(self, |conn, sql| {
            let data: DataKeyRows = sqlx::query_as(sqlx::AssertSqlSafe(sql(LIST_DATA)))
                .bind(version)
                .bind(limit_i)
                .fetch_all(conn)
                .await?;
            let room = limit_i.saturating_sub(i64::try_from(data.len()).unwrap_or(limit_i));
            let secrets = if room > 0 {
                sqlx::query_as(sqlx::AssertSqlSafe(sql(LIST_SECRETS)))
                    .bind(version)
                    .bind(room)
                    .fetch_all(conn)
                    .await?
            } else {
                Vec::new()
            };
            (data, secrets)
        });
        let mut out = Vec::with_capacity(data.len() + secrets.len());
        for (model_id, partition, purpose, v, bytes) in data {
            out.push(StoredWrappedKey {
                at: WrappedKeyRef::Data {
                    model_id,
                    partition: Partition(partition),
                    purpose: KeyPurpose::parse(&purpose).ok_or_else(|| {
                        StoreError::Database("a data key has an unknown purpose".into())
                    })?,
                },
                key: wrapped((v, bytes))?,
            });
        }
        for (name, v, bytes) in secrets {
            out.push(StoredWrappedKey {
                at: WrappedKeyRef::Secret { name },
                key: wrapped((v, bytes))?,
            });
        }
        Ok(out)
    }

    /// Replaces each `old` wrapped key by its `new` one, in one transaction, and returns how
    /// many rows changed. A row that no longer holds exactly `old` (re-wrapped by someone else,
    /// or shredded) is left alone and not counted.
    pub async fn replace_wrapped_keys(
        &self,
        changes: &[WrappedKeyChange],
    ) -> Result<u64, StoreError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let changed: u64 = in_plain_write_tx!(self, |tx, sql| {
            let mut changed = 0u64;
            for change in changes {
                let old = &change.old.key;
                let done = match &change.old.at {
                    WrappedKeyRef::Data {
                        model_id,
                        partition,
                        purpose,
                    } => {
                        sqlx::query(sqlx::AssertSqlSafe(sql(SWAP_DATA)))
                            .bind(i64::from(change.new.kek_version))
                            .bind(&change.new.bytes[..])
                            .bind(*model_id)
                            .bind(partition.0)
                            .bind(purpose.as_str())
                            .bind(i64::from(old.kek_version))
                            .bind(&old.bytes[..])
                            .execute(&mut *tx)
                            .await?
                    }
                    WrappedKeyRef::Secret { name } => {
                        sqlx::query(sqlx::AssertSqlSafe(sql(SWAP_SECRET)))
                            .bind(i64::from(change.new.kek_version))
                            .bind(&change.new.bytes[..])
                            .bind(name.as_str())
                            .bind(i64::from(old.kek_version))
                            .bind(&old.bytes[..])
                            .execute(&mut *tx)
                            .await?
                    }
                };
                changed = changed.saturating_add(done.rows_affected());
            }
            changed
        });
        Ok(changed)
    }
}
