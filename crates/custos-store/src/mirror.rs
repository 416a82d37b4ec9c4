//! The hook through which audit entries reach sinks outside the database (a JSON-lines file,
//! syslog, an HTTP collector) *before* the transaction that appends them commits.
//!
//! Owns only the contract: the store calls [`AuditMirror::mirror`] with the entries it has just
//! inserted, inside the still-open transaction; an error rolls the transaction back, so the
//! audited change and its audit entry are both undone. That is what makes extra sinks fail
//! closed rather than best-effort. The implementations live with the server, which knows the
//! sinks' configuration.
//!
//! Consequence worth knowing: a sink can hold an entry whose transaction later failed to commit
//! (the commit itself failed after every sink accepted). Such entries carry a `seq` that the
//! store will reuse, so sink consumers must key by `(seq, hash)`, not `seq` alone.

use std::future::Future;
use std::pin::Pin;

/// One entry as the sinks receive it: exactly the stored bytes and their position.
#[derive(Debug, Clone, Copy)]
pub struct MirroredEntry<'a> {
    /// Position in the log.
    pub seq: i64,
    /// The stored record (JSON, one line, no raw control characters).
    pub record_json: &'a str,
    /// The entry's chain hash.
    pub hash: &'a [u8; 32],
}

/// Why a mirror refused entries. The text names the sink, never the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit sink: {0}")]
pub struct MirrorError(pub String);

/// A boxed future, so the trait stays object-safe.
pub type MirrorFuture<'a> = Pin<Box<dyn Future<Output = Result<(), MirrorError>> + Send + 'a>>;

/// Receives audit entries inside the appending transaction.
pub trait AuditMirror: Send + Sync + std::fmt::Debug + 'static {
    /// Delivers `entries` (in `seq` order). Returning an error aborts the append and the
    /// change it records.
    fn mirror<'a>(&'a self, entries: &'a [MirroredEntry<'a>]) -> MirrorFuture<'a>;
}
