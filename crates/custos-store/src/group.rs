//! Group commit for stand-alone audit appends (sign-ins, denials, exports, server events).
//!
//! Owns the queue in front of [`crate::Store::append_audit`]: concurrent appends are written
//! together, up to [`MAX_GROUP`] per transaction, so the log's throughput is bounded by how many
//! entries one durable commit can carry rather than by one fsync per entry. Each caller still
//! waits for *its* entry to be committed (and mirrored) and gets its own result: a request is
//! never answered before its audit record is durable. If a group fails, its entries are retried
//! one by one so that one bad entry cannot fail the others.
//!
//! Appends that belong to a change (a token, a configuration version) do not pass here: they
//! commit inside the change's own transaction.

use crate::{Backend, StoreError};
use custos_core::AuditEvent;
use tokio::sync::{mpsc, oneshot};

/// Most entries in one transaction; bounds the time any one caller waits behind others.
pub(crate) const MAX_GROUP: usize = 256;
/// Callers queued at most; beyond it appends wait for room (back-pressure, not loss).
const QUEUE: usize = 4_096;

type Reply = oneshot::Sender<Result<i64, StoreError>>;

/// The sending half; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct GroupAppender {
    queue: mpsc::Sender<(AuditEvent, Reply)>,
}

impl GroupAppender {
    /// Starts the writer task over `backend` (which carries the audit mirror, if any).
    pub(crate) fn start(backend: Backend) -> Self {
        let (queue, mut incoming) = mpsc::channel::<(AuditEvent, Reply)>(QUEUE);
        tokio::spawn(async move {
            let mut group: Vec<(AuditEvent, Reply)> = Vec::with_capacity(MAX_GROUP);
            while let Some(first) = incoming.recv().await {
                group.push(first);
                while group.len() < MAX_GROUP {
                    match incoming.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                write_group(&backend, &mut group).await;
            }
        });
        Self { queue }
    }

    /// Appends one entry and waits until it is committed.
    pub(crate) async fn append(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event.clone(), reply))
            .await
            .map_err(|_| StoreError::Database("the audit writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Database("the audit writer has stopped".into()))?
    }
}

async fn write_group(backend: &Backend, group: &mut Vec<(AuditEvent, Reply)>) {
    let events: Vec<&AuditEvent> = group.iter().map(|(event, _)| event).collect();
    let result = match backend {
        Backend::Sqlite(db) => db.append_audit_group(&events).await,
        Backend::Postgres(db) => db.append_audit_group(&events).await,
    };
    match result {
        Ok(seqs) => {
            for ((_, reply), seq) in group.drain(..).zip(seqs) {
                let _ = reply.send(Ok(seq));
            }
        }
        Err(_) if group.len() > 1 => {
            for (event, reply) in group.drain(..) {
                let one = match backend {
                    Backend::Sqlite(db) => db.append_audit(&event).await,
                    Backend::Postgres(db) => db.append_audit(&event).await,
                };
                let _ = reply.send(one);
            }
        }
        Err(e) => {
            // A group of one: its caller gets the error itself.
            if let Some((_, reply)) = group.pop() {
                let _ = reply.send(Err(e));
            }
            group.clear();
        }
    }
}
