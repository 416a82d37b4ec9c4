//! Helpers for statements written once for both backends: `?` placeholders (SQLite's) turned
//! into `$n` for PostgreSQL, and the read / write-transaction-with-audit shapes every
//! single-statement feature module needs. The large backend modules keep their own SQL; these
//! serve the small feature modules (history, tokens) so they do not duplicate a method per
//! backend.

/// `?` placeholders numbered `$1, $2, …` for PostgreSQL.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the same statement body on either backend; `$conn` is a connection or transaction.
macro_rules! on_backend {
    ($store:expr, |$conn:ident, $sql:ident| $body:expr) => {
        match &$store.backend {
            crate::Backend::Sqlite(db) => {
                let $sql = |s: &str| s.to_owned();
                let $conn = &db.reader;
                $body
            }
            crate::Backend::Postgres(db) => {
                let $sql = crate::shared_sql::numbered;
                let $conn = &db.pool;
                $body
            }
        }
    };
}

/// Runs a write transaction on either backend, appending `$audit` before commit.
macro_rules! in_write_tx {
    ($store:expr, $audit:expr, |$tx:ident, $sql:ident| $body:expr) => {
        match &$store.backend {
            crate::Backend::Sqlite(db) => {
                let $sql = |s: &str| s.to_owned();
                let mut $tx = db.write_tx().await?;
                let out = $body;
                crate::sqlite::append_audit_in(&mut $tx, $audit, db.mirror.as_deref()).await?;
                $tx.commit().await?;
                out
            }
            crate::Backend::Postgres(db) => {
                let $sql = crate::shared_sql::numbered;
                let mut $tx = db.pool.begin().await?;
                let out = $body;
                crate::postgres::append_audit_in(&mut $tx, $audit, db.mirror.as_deref()).await?;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Runs a write transaction on either backend without an audit entry: bulk maintenance whose
/// audit entries the caller writes around the whole run (KEK rewrap), and machine-made state
/// that is history rather than a person's act (an alert evaluation round, delivery outcomes).
macro_rules! in_plain_write_tx {
    ($store:expr, |$tx:ident, $sql:ident| $body:expr) => {
        match &$store.backend {
            crate::Backend::Sqlite(db) => {
                let $sql = |s: &str| s.to_owned();
                let mut $tx = db.write_tx().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            crate::Backend::Postgres(db) => {
                let $sql = crate::shared_sql::numbered;
                let mut $tx = db.pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}
