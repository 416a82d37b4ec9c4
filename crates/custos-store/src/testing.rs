//! Throw-away stores for tests: a fresh, migrated SQLite file in a temporary directory, or a
//! fresh, migrated PostgreSQL database that is dropped afterwards.
//!
//! Owns test database lifecycle only. Must not be compiled into the shipped binary (it sits
//! behind the `testing` cargo feature) and must not skip PostgreSQL silently: when the server
//! is unreachable, [`TestStore::postgres`] fails with a message saying how to start it, unless
//! `CUSTOS_TEST_SKIP_POSTGRES=1` asks for the skip explicitly. CI starts PostgreSQL, and a skip
//! that nobody asked for would hide a broken backend.
//!
//! Environment:
//! * `CUSTOS_TEST_POSTGRES_URL` — admin URL used to create and drop the per-test databases
//!   (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! * `CUSTOS_TEST_SKIP_POSTGRES=1` — [`TestStore::postgres`] returns `Ok(None)`.

use crate::{Store, StoreError, redact_url};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::ops::Deref;
use tempfile::TempDir;

/// Where the test PostgreSQL server is, unless `CUSTOS_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL the PostgreSQL helpers connect to.
pub fn postgres_admin_url() -> String {
    std::env::var("CUSTOS_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_ADMIN_URL.to_owned())
}

/// Whether the PostgreSQL run was explicitly switched off.
pub fn skip_postgres() -> bool {
    std::env::var("CUSTOS_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// A migrated store that cleans up after itself. Derefs to [`Store`].
#[derive(Debug)]
pub struct TestStore {
    store: Store,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    /// The directory holding the database file; removed on drop.
    Sqlite(TempDir),
    /// The database to drop, and where to connect to drop it.
    Postgres { admin_url: String, database: String },
    /// Already cleaned up by [`TestStore::cleanup`].
    Done,
}

impl TestStore {
    /// A fresh, migrated SQLite store in its own temporary directory.
    pub async fn sqlite() -> Result<TestStore, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| {
            StoreError::Database(format!("cannot create a temporary directory: {e}"))
        })?;
        let url = format!("sqlite://{}", dir.path().join("custos-test.db").display());
        let store = Store::open(&url).await?;
        store.migrate().await?;
        Ok(TestStore {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        })
    }

    /// A fresh, migrated PostgreSQL store in a new database `custos_test_<random hex>`, or
    /// `None` when `CUSTOS_TEST_SKIP_POSTGRES=1`. An unreachable server is an error.
    pub async fn postgres() -> Result<Option<TestStore>, StoreError> {
        if skip_postgres() {
            return Ok(None);
        }
        let admin_url = postgres_admin_url();
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|e| {
            StoreError::Database(format!(
                "PostgreSQL for the conformance tests is unreachable at {} ({e}). Start it \
                 (CI does), point CUSTOS_TEST_POSTGRES_URL at one, or set \
                 CUSTOS_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL run on purpose",
                redact_url(&admin_url)
            ))
        })?;
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix)
            .map_err(|e| StoreError::Database(format!("no randomness for a database name: {e}")))?;
        let database = format!("custos_test_{}", hex(&suffix));
        // The name is ours (a fixed prefix and hex digits), so interpolating it is safe.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let url = database_url(&admin_url, &database);
        let cleanup = Cleanup::Postgres {
            admin_url,
            database,
        };
        let store = match Store::open(&url).await {
            Ok(store) => store,
            Err(e) => {
                if let Err(cleanup_error) = TestStore::sync_cleanup(cleanup) {
                    tracing::warn!(error = %cleanup_error, "could not drop a test database");
                }
                return Err(e);
            }
        };
        let test = TestStore {
            store,
            url,
            cleanup,
        };
        test.store.migrate().await?;
        Ok(Some(test))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The URL of the test database, for raw connections (tests that tamper on purpose).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the store and removes its database. Dropping does the same, but blocks a thread
    /// to do it; call this at the end of an async test.
    pub async fn cleanup(mut self) -> Result<(), StoreError> {
        self.store.close().await;
        match std::mem::replace(&mut self.cleanup, Cleanup::Done) {
            Cleanup::Sqlite(dir) => dir.close().map_err(|e| {
                StoreError::Database(format!("cannot remove the test directory: {e}"))
            }),
            Cleanup::Postgres {
                admin_url,
                database,
            } => drop_database(&admin_url, &database).await,
            Cleanup::Done => Ok(()),
        }
    }

    /// Drops a PostgreSQL test database from a plain thread with its own runtime, because
    /// `Drop` cannot await and may run inside (or outside) the test's runtime.
    fn sync_cleanup(cleanup: Cleanup) -> Result<(), StoreError> {
        let Cleanup::Postgres {
            admin_url,
            database,
        } = cleanup
        else {
            return Ok(());
        };
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Database(format!("no runtime for cleanup: {e}")))?;
            runtime.block_on(drop_database(&admin_url, &database))
        });
        worker
            .join()
            .map_err(|_| StoreError::Database("the cleanup thread panicked".into()))?
    }
}

impl Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let cleanup = std::mem::replace(&mut self.cleanup, Cleanup::Done);
        if let Err(e) = TestStore::sync_cleanup(cleanup) {
            // A leaked test database is untidy, not wrong; say so and carry on.
            tracing::warn!(error = %e, "could not drop a test database");
        }
    }
}

/// `DROP DATABASE … WITH (FORCE)` ends any connection a failed test left open.
async fn drop_database(admin_url: &str, database: &str) -> Result<(), StoreError> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}

/// The admin URL with its database path replaced by `database` (query parameters kept).
fn database_url(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i.saturating_add(3));
    let path_start = base
        .get(authority_start..)
        .and_then(|rest| rest.find('/'))
        .map_or(base.len(), |i| i.saturating_add(authority_start));
    let server = base.get(..path_start).unwrap_or(base);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            database_url("postgres://u:p@h/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h:5432", "t1"),
            "postgres://h:5432/t1"
        );
    }
}
