//! Configuration history: every version of a model's monitoring configuration with its author,
//! time, reason and approver, and the weakening changes that wait for a second person.
//!
//! Owns the `monitoring_configs` history reads and the `pending_changes` table on both
//! backends. Versions are immutable (a rollback is a new version); a pending change is decided
//! once. Each write commits together with its audit entry. The store does not judge what is a
//! weakening or who may approve: the server does, and passes the verdict in.

use crate::convert::{micros, opt_time, time};
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use custos_core::AuditEvent;

/// One stored version of a model's monitoring configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersionRow {
    /// From 1.
    pub version: i64,
    /// The configuration (JSON).
    pub config_json: String,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Why, as its author wrote.
    pub reason: Option<String>,
    /// The second person, when the change needed one.
    pub approved_by: Option<String>,
}

/// A new version to store.
#[derive(Debug, Clone)]
pub struct NewConfigVersion<'a> {
    /// The model.
    pub model_id: i64,
    /// The configuration (JSON).
    pub config_json: &'a str,
    /// Its author.
    pub created_by: &'a str,
    /// Why.
    pub reason: Option<&'a str>,
    /// The approver, if any.
    pub approved_by: Option<&'a str>,
    /// When.
    pub now: DateTime<Utc>,
}

/// A change waiting for (or decided by) a second person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChangeRow {
    /// Id.
    pub id: i64,
    /// The model.
    pub model_id: i64,
    /// What kind of configuration (`monitoring`).
    pub kind: String,
    /// The proposed configuration (JSON).
    pub body_json: String,
    /// The version it was proposed against; approval fails if another version came since.
    pub base_version: i64,
    /// Why, as its author wrote.
    pub reason: Option<String>,
    /// The weakenings found (JSON).
    pub weakenings: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
}

type VersionTuple = (i64, String, String, i64, Option<String>, Option<String>);

fn version_row(
    (version, config_json, created_by, created_at, reason, approved_by): VersionTuple,
) -> Result<ConfigVersionRow, StoreError> {
    Ok(ConfigVersionRow {
        version,
        config_json,
        created_by,
        created_at: time(created_at)?,
        reason,
        approved_by,
    })
}

type PendingTuple = (
    i64,
    i64,
    String,
    String,
    i64,
    Option<String>,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
);

fn pending_row(t: PendingTuple) -> Result<PendingChangeRow, StoreError> {
    let (
        id,
        model_id,
        kind,
        body_json,
        base_version,
        reason,
        weakenings,
        requested_by,
        at,
        status,
        by,
        decided,
    ) = t;
    Ok(PendingChangeRow {
        id,
        model_id,
        kind,
        body_json,
        base_version,
        reason,
        weakenings,
        requested_by,
        requested_at: time(at)?,
        status,
        decided_by: by,
        decided_at: opt_time(decided)?,
    })
}

const VERSION_COLUMNS: &str = "version, config_json, created_by, created_at, reason, approved_by";
const PENDING_COLUMNS: &str = "id, model_id, kind, body_json, base_version, reason, weakenings, \
     requested_by, requested_at, status, decided_by, decided_at";

/// The SQL of each statement, with `?` placeholders; PostgreSQL's `$n` are derived from them.
mod sql {
    pub(super) const INSERT_VERSION: &str = "INSERT INTO monitoring_configs \
         (model_id, version, config_json, created_by, created_at, reason, approved_by) \
         SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ?, ?, ? FROM monitoring_configs \
         WHERE model_id = ? RETURNING version";
    pub(super) const CURRENT_VERSION: &str =
        "SELECT COALESCE(MAX(version), 0) FROM monitoring_configs WHERE model_id = ?";
    pub(super) const INSERT_PENDING: &str = "INSERT INTO pending_changes \
         (model_id, kind, body_json, base_version, reason, weakenings, requested_by, \
          requested_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending') RETURNING id";
    pub(super) const DECIDE: &str = "UPDATE pending_changes SET status = ?, decided_by = ?, \
         decided_at = ? WHERE id = ? AND status = 'pending'";
}

impl Store {
    /// Every version of a model's monitoring configuration, oldest first.
    pub async fn monitoring_config_versions(
        &self,
        model_id: i64,
    ) -> Result<Vec<ConfigVersionRow>, StoreError> {
        let query = format!(
            "SELECT {VERSION_COLUMNS} FROM monitoring_configs WHERE model_id = ? ORDER BY version"
        );
        let rows: Vec<VersionTuple> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(&query)))
                .bind(model_id)
                .fetch_all(conn)
                .await?
        });
        rows.into_iter().map(version_row).collect()
    }

    /// One version.
    pub async fn monitoring_config_version(
        &self,
        model_id: i64,
        version: i64,
    ) -> Result<Option<ConfigVersionRow>, StoreError> {
        let query = format!(
            "SELECT {VERSION_COLUMNS} FROM monitoring_configs WHERE model_id = ? AND version = ?"
        );
        let row: Option<VersionTuple> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(&query)))
                .bind(model_id)
                .bind(version)
                .fetch_optional(conn)
                .await?
        });
        row.map(version_row).transpose()
    }

    /// Stores a new version (with its reason and approver) and appends `audit`, in one
    /// transaction; returns its number.
    pub async fn record_monitoring_config(
        &self,
        new: &NewConfigVersion<'_>,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let version: i64 = in_write_tx!(self, audit, |tx, sql| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql(sql::INSERT_VERSION)))
                .bind(new.model_id)
                .bind(new.config_json)
                .bind(new.created_by)
                .bind(micros(new.now))
                .bind(new.reason)
                .bind(new.approved_by)
                .bind(new.model_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(crate::error::model_write_err)?
        });
        Ok(version)
    }

    /// Records a change that waits for a second person, and appends `audit`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_pending_change(
        &self,
        model_id: i64,
        kind: &str,
        body_json: &str,
        base_version: i64,
        reason: Option<&str>,
        weakenings_json: &str,
        requested_by: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let id: i64 = in_write_tx!(self, audit, |tx, sql| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql(sql::INSERT_PENDING)))
                .bind(model_id)
                .bind(kind)
                .bind(body_json)
                .bind(base_version)
                .bind(reason)
                .bind(weakenings_json)
                .bind(requested_by)
                .bind(micros(now))
                .fetch_one(&mut *tx)
                .await
                .map_err(crate::error::model_write_err)?
        });
        Ok(id)
    }

    /// A model's changes, newest first (`pending_only` to see only the waiting ones).
    pub async fn pending_changes(
        &self,
        model_id: i64,
        pending_only: bool,
    ) -> Result<Vec<PendingChangeRow>, StoreError> {
        let filter = if pending_only {
            " AND status = 'pending'"
        } else {
            ""
        };
        let query = format!(
            "SELECT {PENDING_COLUMNS} FROM pending_changes WHERE model_id = ?{filter} \
             ORDER BY id DESC LIMIT 200"
        );
        let rows: Vec<PendingTuple> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(&query)))
                .bind(model_id)
                .fetch_all(conn)
                .await?
        });
        rows.into_iter().map(pending_row).collect()
    }

    /// One change.
    pub async fn pending_change(&self, id: i64) -> Result<Option<PendingChangeRow>, StoreError> {
        let query = format!("SELECT {PENDING_COLUMNS} FROM pending_changes WHERE id = ?");
        let row: Option<PendingTuple> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(&query)))
                .bind(id)
                .fetch_optional(conn)
                .await?
        });
        row.map(pending_row).transpose()
    }

    /// Decides a pending change: rejected, or approved — which stores the proposed
    /// configuration as a new version authored by the requester and approved by `decided_by`.
    /// All in one transaction with `audit`. [`StoreError::Conflict`] if the change is no longer
    /// pending or another version was made since it was proposed (it must be proposed again
    /// against the new one).
    pub async fn decide_pending_change(
        &self,
        change: &PendingChangeRow,
        approve: bool,
        decided_by: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<Option<i64>, StoreError> {
        let status = if approve { "approved" } else { "rejected" };
        let version: Option<i64> = in_write_tx!(self, audit, |tx, sql| {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql(sql::DECIDE)))
                .bind(status)
                .bind(decided_by)
                .bind(micros(now))
                .bind(change.id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(
                    "the change is no longer pending".into(),
                ));
            }
            if approve {
                let current: i64 =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(sql(sql::CURRENT_VERSION)))
                        .bind(change.model_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if current != change.base_version {
                    return Err(StoreError::Conflict(format!(
                        "the configuration changed since this was proposed (version {} is now \
                         {current}); propose it again",
                        change.base_version
                    )));
                }
                let version: i64 =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(sql(sql::INSERT_VERSION)))
                        .bind(change.model_id)
                        .bind(&change.body_json)
                        .bind(&change.requested_by)
                        .bind(micros(now))
                        .bind(change.reason.as_deref())
                        .bind(decided_by)
                        .bind(change.model_id)
                        .fetch_one(&mut *tx)
                        .await?;
                Some(version)
            } else {
                None
            }
        });
        Ok(version)
    }
}
