//! The store's one error type.
//!
//! Owns the mapping from driver errors to [`StoreError`]. Must not carry bound parameter values
//! (which may be ciphertexts, key hashes or names the caller did not mean to log): only the
//! driver's own message, which for sqlx names the failing operation or constraint, not the data.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write contradicts what is stored (a taken name, a row that is already gone).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An event key of the batch is already indexed for the model; nothing was written.
    #[error("an event of the batch was already ingested")]
    DuplicateEvent,
    /// The row the operation names does not exist.
    #[error("not found")]
    NotFound,
    /// The database URL's scheme is not one the store speaks (the text is redacted).
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    /// The audit hash chain does not verify; `seq` is the first entry that is wrong or missing.
    #[error("audit chain broken at entry {seq}")]
    AuditChainBroken {
        /// The first sequence number at which the chain fails.
        seq: i64,
    },
    /// An extra audit sink refused the entry, so the append (and what it records) was undone.
    #[error("audit sink refused the entry: {0}")]
    AuditSink(String),
    /// The database refused or failed the operation.
    #[error("database error: {0}")]
    Database(String),
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored value cannot be what the schema promises (out-of-range time, short hash…).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // sqlx's Display names the failing step or the server's message; it does not print
        // bound arguments, so it is safe to keep.
        StoreError::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e.to_string())
    }
}

/// Whether a driver error is a UNIQUE / PRIMARY KEY violation (both backends report it the same
/// way through sqlx).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Maps a failed write that references a model: a foreign-key failure means the model does not
/// exist.
pub(crate) fn model_write_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => e.into(),
    }
}
