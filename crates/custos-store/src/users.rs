//! Local users: accounts that sign in to the web UI with a password.
//!
//! Owns the `users` table on both backends and the [`Store`] methods over it. Every
//! administrative change (create, re-bind roles, disable) commits together with its audit entry;
//! sign-in bookkeeping (failure counts, lockout, last sign-in) is not audited here because the
//! server audits each attempt itself. The store keeps only the PHC string of the password hash:
//! it never sees a password, and it does not interpret role bindings (they are the server's JSON).
//! Names are unique case-insensitively: the store folds them, so callers cannot disagree about how.

use crate::convert::{micros, opt_time, time};
use crate::error::is_unique_violation;
use crate::{Backend, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use custos_core::AuditEvent;
use std::fmt;

/// A user to create.
#[derive(Clone)]
pub struct NewUser {
    /// Store id (random, chosen by the caller; audit records name it).
    pub id: String,
    /// The name as typed; unique regardless of case.
    pub name: String,
    /// The Argon2id PHC string of the password.
    pub password_hash: String,
    /// The role bindings, as JSON.
    pub bindings_json: String,
    /// Who created the user (an actor id).
    pub created_by: String,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password_hash", &"***")
            .field("bindings_json", &self.bindings_json)
            .field("created_by", &self.created_by)
            .finish()
    }
}

/// A stored user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Store id.
    pub id: String,
    /// The name as typed at creation.
    pub name: String,
    /// The Argon2id PHC string of the password (never send it anywhere).
    pub password_hash: String,
    /// The role bindings, as JSON.
    pub bindings_json: String,
    /// Who created the user.
    pub created_by: String,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// When an administrator last changed the user (creation, roles, disabling).
    pub updated_at: DateTime<Utc>,
    /// When the user was disabled, if it was; a disabled user never signs in again.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Wrong passwords since the last success or lock.
    pub failed_count: u32,
    /// Until when sign-in is refused after too many wrong passwords (may lie in the past).
    pub locked_until: Option<DateTime<Utc>>,
    /// When the password was set.
    pub password_changed_at: DateTime<Utc>,
    /// When the user last signed in, if ever.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is offline-guessable material: keep it out of logs and panics.
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password_hash", &"***")
            .field("bindings_json", &self.bindings_json)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("disabled_at", &self.disabled_at)
            .field("failed_count", &self.failed_count)
            .field("locked_until", &self.locked_until)
            .field("password_changed_at", &self.password_changed_at)
            .field("last_sign_in_at", &self.last_sign_in_at)
            .finish()
    }
}

impl UserRow {
    /// Whether sign-in is refused at `now` because of too many wrong passwords.
    pub fn locked_at(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// The one case folding for user names.
fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The `users` columns as selected, in [`USER_COLUMNS`] order.
type UserTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
);

const USER_COLUMNS: &str = "id, name, password_hash, bindings_json, created_by, created_at, \
     updated_at, disabled_at, failed_count, locked_until, password_changed_at, last_sign_in_at";

fn user_row(
    (
        id,
        name,
        password_hash,
        bindings_json,
        created_by,
        created_at,
        updated_at,
        disabled_at,
        failed_count,
        locked_until,
        password_changed_at,
        last_sign_in_at,
    ): UserTuple,
) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id,
        name,
        password_hash,
        bindings_json,
        created_by,
        created_at: time(created_at)?,
        updated_at: time(updated_at)?,
        disabled_at: opt_time(disabled_at)?,
        failed_count: u32::try_from(failed_count)
            .map_err(|_| StoreError::Corrupt("failed sign-in count out of range".into()))?,
        locked_until: opt_time(locked_until)?,
        password_changed_at: time(password_changed_at)?,
        last_sign_in_at: opt_time(last_sign_in_at)?,
    })
}

fn created_row(user: &NewUser, now: DateTime<Utc>) -> UserRow {
    UserRow {
        id: user.id.clone(),
        name: user.name.clone(),
        password_hash: user.password_hash.clone(),
        bindings_json: user.bindings_json.clone(),
        created_by: user.created_by.clone(),
        created_at: now,
        updated_at: now,
        disabled_at: None,
        failed_count: 0,
        locked_until: None,
        password_changed_at: now,
        last_sign_in_at: None,
    }
}

fn user_write_err(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict("a user with this name already exists".into())
    } else {
        e.into()
    }
}

/// The lock that a failure sets, as stored, and the threshold as bound.
fn lock_terms(
    now: DateTime<Utc>,
    lock_after: u32,
    lock_for: Duration,
) -> Result<(i64, i64), StoreError> {
    if lock_after == 0 || lock_for <= Duration::zero() {
        return Err(StoreError::Conflict(
            "lockout needs a positive threshold and duration".into(),
        ));
    }
    let until = now
        .checked_add_signed(lock_for)
        .ok_or_else(|| StoreError::Conflict("lockout duration out of range".into()))?;
    Ok((i64::from(lock_after), micros(until)))
}

impl crate::sqlite::SqliteDb {
    pub(crate) async fn create_user(
        &self,
        user: &NewUser,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<UserRow, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO users (id, name, name_folded, password_hash, bindings_json, created_by, \
             created_at, updated_at, password_changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7)",
        )
        .bind(user.id.as_str())
        .bind(user.name.as_str())
        .bind(fold(&user.name))
        .bind(user.password_hash.as_str())
        .bind(user.bindings_json.as_str())
        .bind(user.created_by.as_str())
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(user_write_err)?;
        crate::sqlite::append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(created_row(user, now))
    }

    pub(crate) async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name_folded = ?");
        let row: Option<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(fold(name))
            .fetch_optional(&self.reader)
            .await?;
        row.map(user_row).transpose()
    }

    pub(crate) async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row: Option<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(user_row).transpose()
    }

    pub(crate) async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id");
        let rows: Vec<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(user_row).collect()
    }

    pub(crate) async fn set_user_bindings(
        &self,
        id: &str,
        bindings_json: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET bindings_json = ?, updated_at = ? \
             WHERE id = ? AND disabled_at IS NULL",
        )
        .bind(bindings_json)
        .bind(micros(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        crate::sqlite::append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn disable_user(
        &self,
        id: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = ?1, updated_at = ?1 \
             WHERE id = ?2 AND disabled_at IS NULL",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        crate::sqlite::append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn record_sign_in_failure(
        &self,
        id: &str,
        now: DateTime<Utc>,
        lock_after: u32,
        lock_for: Duration,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (threshold, until) = lock_terms(now, lock_after, lock_for)?;
        // One statement, so concurrent failures cannot both read the same count.
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "UPDATE users SET \
             failed_count = CASE WHEN failed_count + 1 >= ?1 THEN 0 ELSE failed_count + 1 END, \
             locked_until = CASE WHEN failed_count + 1 >= ?1 THEN ?2 ELSE locked_until END \
             WHERE id = ?3 RETURNING locked_until",
        )
        .bind(threshold)
        .bind(until)
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        let (locked_until,) = row.ok_or(StoreError::NotFound)?;
        Ok(opt_time(locked_until)?.filter(|t| *t > now))
    }

    pub(crate) async fn record_sign_in_success(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE users SET failed_count = 0, locked_until = NULL, last_sign_in_at = ? \
             WHERE id = ?",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

impl crate::postgres::PgDb {
    pub(crate) async fn create_user(
        &self,
        user: &NewUser,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<UserRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, name, name_folded, password_hash, bindings_json, created_by, \
             created_at, updated_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7)",
        )
        .bind(user.id.as_str())
        .bind(user.name.as_str())
        .bind(fold(&user.name))
        .bind(user.password_hash.as_str())
        .bind(user.bindings_json.as_str())
        .bind(user.created_by.as_str())
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(user_write_err)?;
        crate::postgres::append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(created_row(user, now))
    }

    pub(crate) async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name_folded = $1");
        let row: Option<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(fold(name))
            .fetch_optional(&self.pool)
            .await?;
        row.map(user_row).transpose()
    }

    pub(crate) async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(user_row).transpose()
    }

    pub(crate) async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id");
        let rows: Vec<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(user_row).collect()
    }

    pub(crate) async fn set_user_bindings(
        &self,
        id: &str,
        bindings_json: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET bindings_json = $1, updated_at = $2 \
             WHERE id = $3 AND disabled_at IS NULL",
        )
        .bind(bindings_json)
        .bind(micros(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        crate::postgres::append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn disable_user(
        &self,
        id: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = $1, updated_at = $1 \
             WHERE id = $2 AND disabled_at IS NULL",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        crate::postgres::append_audit_in(&mut tx, event, self.mirror.as_deref()).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn record_sign_in_failure(
        &self,
        id: &str,
        now: DateTime<Utc>,
        lock_after: u32,
        lock_for: Duration,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (threshold, until) = lock_terms(now, lock_after, lock_for)?;
        // One statement (the row lock serialises concurrent failures on the same user).
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "UPDATE users SET \
             failed_count = CASE WHEN failed_count + 1 >= $1 THEN 0 ELSE failed_count + 1 END, \
             locked_until = CASE WHEN failed_count + 1 >= $1 THEN $2 ELSE locked_until END \
             WHERE id = $3 RETURNING locked_until",
        )
        .bind(threshold)
        .bind(until)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let (locked_until,) = row.ok_or(StoreError::NotFound)?;
        Ok(opt_time(locked_until)?.filter(|t| *t > now))
    }

    pub(crate) async fn record_sign_in_success(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE users SET failed_count = 0, locked_until = NULL, last_sign_in_at = $1 \
             WHERE id = $2",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// Runs the same call on whichever backend the store holds (the crate's `dispatch!` is defined
/// after this module in `lib.rs`, so it is not in scope here).
macro_rules! on_backend {
    ($store:expr, $db:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($db) => $call.await,
            Backend::Postgres($db) => $call.await,
        }
    };
}

impl Store {
    /// Creates a user and appends `audit` in the same transaction. A name already taken (in
    /// any case) or a taken id is [`StoreError::Conflict`].
    pub async fn create_user(
        &self,
        user: &NewUser,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<UserRow, StoreError> {
        on_backend!(self, db => db.create_user(user, now, audit))
    }

    /// The user of that name, compared without regard to case (disabled users included: the
    /// caller decides).
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        on_backend!(self, db => db.user_by_name(name))
    }

    /// The user with that id (disabled users included).
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        on_backend!(self, db => db.user_by_id(id))
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        on_backend!(self, db => db.list_users())
    }

    /// Replaces a live user's role bindings and appends `audit` in the same transaction;
    /// `false` (and no audit entry) if there is no such user or it is disabled.
    pub async fn set_user_bindings(
        &self,
        id: &str,
        bindings_json: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_backend!(self, db => db.set_user_bindings(id, bindings_json, now, audit))
    }

    /// Disables a live user for good and appends `audit` in the same transaction; `false` (and
    /// no audit entry) if there is no such user or it was already disabled.
    pub async fn disable_user(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_backend!(self, db => db.disable_user(id, now, audit))
    }

    /// Counts one wrong password. The `lock_after`-th failure in a row locks the account until
    /// `now + lock_for` and starts the count again; returns the end of the lock when the account
    /// is locked after this failure. An unknown id is [`StoreError::NotFound`]; a zero threshold
    /// or a non-positive duration is [`StoreError::Conflict`].
    pub async fn record_sign_in_failure(
        &self,
        id: &str,
        now: DateTime<Utc>,
        lock_after: u32,
        lock_for: Duration,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_backend!(self, db => db.record_sign_in_failure(id, now, lock_after, lock_for))
    }

    /// Records a successful sign-in: clears the failure count and any lock. An unknown id is
    /// [`StoreError::NotFound`].
    pub async fn record_sign_in_success(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_backend!(self, db => db.record_sign_in_success(id, now))
    }
}
