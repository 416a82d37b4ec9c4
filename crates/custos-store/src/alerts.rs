//! Alert state, history, silences, notification channels, the delivery outbox and leases, on
//! both backends (migration 0007).
//!
//! Owns: the one transaction that saves an evaluation round (series states, their transitions
//! and the deliveries they cause commit together, so a transition is never lost nor notified
//! twice), the outbox reads and outcome writes of the delivery worker, and the lease that lets
//! one replica evaluate at a time. Changes people make (acknowledge, silence, channels) commit
//! with their audit entry. The store judges nothing: the server's evaluator decides states.

use crate::convert::{micros, opt_time, time};
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use custos_core::AuditEvent;
use custos_crypto::WrappedKey;

/// One series of one rule, as last evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSeriesRow {
    /// The model.
    pub model_id: i64,
    /// The rule's name.
    pub rule: String,
    /// The feature, or empty.
    pub series: String,
    /// `inactive`, `pending` or `firing`.
    pub state: String,
    /// The state machine's memory (JSON).
    pub state_json: String,
    /// When a notification about it was last queued.
    pub last_notified_at: Option<DateTime<Utc>>,
    /// Who acknowledged the current firing, if anyone.
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was last evaluated.
    pub updated_at: DateTime<Utc>,
}

/// A transition to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEventRow {
    /// Id (ignored when saving).
    pub id: i64,
    /// The model.
    pub model_id: i64,
    /// The rule.
    pub rule: String,
    /// The feature, or empty.
    pub series: String,
    /// `pending`, `firing`, `resolved` or `cleared`.
    pub transition: String,
    /// The value evaluated.
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A silence.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRow {
    /// Id (ignored when saving).
    pub id: i64,
    /// The model.
    pub model_id: i64,
    /// Only this rule, when set.
    pub rule: Option<String>,
    /// Only this series, when set.
    pub series: Option<String>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A notification channel (its secret is a stored secret, never here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    /// Its name.
    pub name: String,
    /// Kind, address and routing (JSON).
    pub spec_json: String,
    /// The channel's secret, sealed under its own data key (wrapped in the secrets table).
    pub secret_sealed: Option<Vec<u8>>,
    /// Who last changed it.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// One queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Id.
    pub id: i64,
    /// The channel's name.
    pub channel: String,
    /// What to send (JSON; aggregates only).
    pub payload_json: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// The newest failure, in words (kept after a later success, so a retried delivery shows
    /// why it was retried).
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it.
    Sent,
    /// It failed; try again at the given time.
    Retry(DateTime<Utc>, String),
    /// It failed for good.
    Failed(String),
}

/// The stored-secret name of a channel's secret.
pub fn channel_secret_name(channel: &str) -> String {
    format!("alert-channel/{channel}")
}

const UPSERT_SERIES: &str = "INSERT INTO alert_series (model_id, rule, series, state, state_json, \
     last_notified_at, acknowledged_by, acknowledged_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (model_id, rule, series) DO UPDATE SET state = excluded.state, \
     state_json = excluded.state_json, last_notified_at = excluded.last_notified_at, \
     acknowledged_by = excluded.acknowledged_by, acknowledged_at = excluded.acknowledged_at, \
     updated_at = excluded.updated_at";
const INSERT_EVENT: &str = "INSERT INTO alert_events (model_id, rule, series, transition, value, \
     threshold, at) VALUES (?, ?, ?, ?, ?, ?, ?)";
const INSERT_DELIVERY: &str = "INSERT INTO alert_deliveries (channel, payload_json, status, \
     attempts, next_attempt_at, created_at) VALUES (?, ?, 'pending', 0, ?, ?)";
const SERIES_COLUMNS: &str = "model_id, rule, series, state, state_json, last_notified_at, \
     acknowledged_by, acknowledged_at, updated_at";
const DELIVERY_COLUMNS: &str = "id, channel, payload_json, status, attempts, next_attempt_at, \
     last_error, created_at, sent_at";

type SeriesTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    i64,
);

fn series_row(t: SeriesTuple) -> Result<AlertSeriesRow, StoreError> {
    Ok(AlertSeriesRow {
        model_id: t.0,
        rule: t.1,
        series: t.2,
        state: t.3,
        state_json: t.4,
        last_notified_at: opt_time(t.5)?,
        acknowledged_by: t.6,
        acknowledged_at: opt_time(t.7)?,
        updated_at: time(t.8)?,
    })
}

type DeliveryTuple = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    i64,
    Option<i64>,
);

fn delivery_row(t: DeliveryTuple) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        id: t.0,
        channel: t.1,
        payload_json: t.2,
        status: t.3,
        attempts: t.4,
        next_attempt_at: time(t.5)?,
        last_error: t.6,
        created_at: time(t.7)?,
        sent_at: opt_time(t.8)?,
    })
}

impl Store {
    /// Every stored series of a model's rules.
    pub async fn alert_series(&self, model_id: i64) -> Result<Vec<AlertSeriesRow>, StoreError> {
        let query = format!(
            "SELECT {SERIES_COLUMNS} FROM alert_series WHERE model_id = ? ORDER BY rule, series"
        );
        let rows: Vec<SeriesTuple> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(&query)))
                .bind(model_id)
                .fetch_all(conn)
                .await?
        });
        rows.into_iter().map(series_row).collect()
    }

    /// Saves one evaluation round of a model: the new series states, the transitions, the
    /// deliveries they cause, and removes series of rules that no longer exist — in one
    /// transaction.
    pub async fn save_alert_round(
        &self,
        model_id: i64,
        series: &[AlertSeriesRow],
        removed: &[(String, String)],
        events: &[AlertEventRow],
        deliveries: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        in_plain_write_tx!(self, |tx, sql| {
            for row in series {
                sqlx::query(sqlx::AssertSqlSafe(sql(UPSERT_SERIES)))
                    .bind(model_id)
                    .bind(row.rule.as_str())
                    .bind(row.series.as_str())
                    .bind(row.state.as_str())
                    .bind(row.state_json.as_str())
                    .bind(row.last_notified_at.map(micros))
                    .bind(row.acknowledged_by.as_deref())
                    .bind(row.acknowledged_at.map(micros))
                    .bind(micros(row.updated_at))
                    .execute(&mut *tx)
                    .await?;
            }
            for (rule, series) in removed {
                sqlx::query(sqlx::AssertSqlSafe(sql(
                    "DELETE FROM alert_series WHERE model_id = ? AND rule = ? AND series = ?",
                )))
                .bind(model_id)
                .bind(rule.as_str())
                .bind(series.as_str())
                .execute(&mut *tx)
                .await?;
            }
            for event in events {
                sqlx::query(sqlx::AssertSqlSafe(sql(INSERT_EVENT)))
                    .bind(model_id)
                    .bind(event.rule.as_str())
                    .bind(event.series.as_str())
                    .bind(event.transition.as_str())
                    .bind(event.value)
                    .bind(event.threshold)
                    .bind(micros(event.at))
                    .execute(&mut *tx)
                    .await?;
            }
            for (channel, payload) in deliveries {
                sqlx::query(sqlx::AssertSqlSafe(sql(INSERT_DELIVERY)))
                    .bind(channel.as_str())
                    .bind(payload.as_str())
                    .bind(micros(now))
                    .bind(micros(now))
                    .execute(&mut *tx)
                    .await?;
            }
        });
        Ok(())
    }

    /// A model's newest transitions, newest first.
    pub async fn alert_events(
        &self,
        model_id: i64,
        limit: u32,
    ) -> Result<Vec<AlertEventRow>, StoreError> {
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            Option<f64>,
            Option<f64>,
            i64,
        );
        let rows: Vec<Row> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT id, model_id, rule, series, transition, value, threshold, at \
                     FROM alert_events WHERE model_id = ? ORDER BY id DESC LIMIT ?",
            )))
            .bind(model_id)
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?
        });
        rows.into_iter()
            .map(|t| {
                Ok(AlertEventRow {
                    id: t.0,
                    model_id: t.1,
                    rule: t.2,
                    series: t.3,
                    transition: t.4,
                    value: t.5,
                    threshold: t.6,
                    at: time(t.7)?,
                })
            })
            .collect()
    }

    /// Acknowledges a firing series (repeat notifications stop until it resolves).
    /// [`StoreError::NotFound`] unless it is firing.
    pub async fn acknowledge_alert(
        &self,
        model_id: i64,
        rule: &str,
        series: &str,
        by: &str,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, audit, |tx, sql| {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql(
                "UPDATE alert_series SET acknowledged_by = ?, acknowledged_at = ? \
                 WHERE model_id = ? AND rule = ? AND series = ? AND state = 'firing'",
            )))
            .bind(by)
            .bind(micros(now))
            .bind(model_id)
            .bind(rule)
            .bind(series)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    /// Stores a silence with its audit entry; returns its id.
    pub async fn add_silence(
        &self,
        silence: &SilenceRow,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let id: i64 = in_write_tx!(self, audit, |tx, sql| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql(
                "INSERT INTO alert_silences (model_id, rule, series, ends_at, comment, \
                 created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )))
            .bind(silence.model_id)
            .bind(silence.rule.as_deref())
            .bind(silence.series.as_deref())
            .bind(micros(silence.ends_at))
            .bind(silence.comment.as_str())
            .bind(silence.created_by.as_str())
            .bind(micros(silence.created_at))
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(id)
    }

    /// A model's silences that have not ended at `now`.
    pub async fn active_silences(
        &self,
        model_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<SilenceRow>, StoreError> {
        type Row = (
            i64,
            i64,
            Option<String>,
            Option<String>,
            i64,
            String,
            String,
            i64,
        );
        let rows: Vec<Row> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT id, model_id, rule, series, ends_at, comment, created_by, created_at \
                 FROM alert_silences WHERE model_id = ? AND ends_at > ? ORDER BY id",
            )))
            .bind(model_id)
            .bind(micros(now))
            .fetch_all(conn)
            .await?
        });
        rows.into_iter()
            .map(|t| {
                Ok(SilenceRow {
                    id: t.0,
                    model_id: t.1,
                    rule: t.2,
                    series: t.3,
                    ends_at: time(t.4)?,
                    comment: t.5,
                    created_by: t.6,
                    created_at: time(t.7)?,
                })
            })
            .collect()
    }

    /// Creates or replaces a channel and the wrapped key of its sealed secret (removed when
    /// `None`), with the audit entry.
    pub async fn put_channel(
        &self,
        channel: &ChannelRow,
        secret: Option<&WrappedKey>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, audit, |tx, sql| {
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "INSERT INTO alert_channels (name, spec_json, secret_sealed, updated_by, \
                 updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                 spec_json = excluded.spec_json, secret_sealed = excluded.secret_sealed, \
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )))
            .bind(channel.name.as_str())
            .bind(channel.spec_json.as_str())
            .bind(channel.secret_sealed.as_deref())
            .bind(channel.updated_by.as_str())
            .bind(micros(channel.updated_at))
            .execute(&mut *tx)
            .await?;
            let name = channel_secret_name(&channel.name);
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "DELETE FROM secrets WHERE name = ?",
            )))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
            if let Some(secret) = secret {
                sqlx::query(sqlx::AssertSqlSafe(sql(
                    "INSERT INTO secrets (name, kek_version, wrapped) VALUES (?, ?, ?)",
                )))
                .bind(name.as_str())
                .bind(i64::from(secret.kek_version))
                .bind(&secret.bytes[..])
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    /// Deletes a channel and its secret, with the audit entry. [`StoreError::NotFound`] if
    /// there is no such channel.
    pub async fn delete_channel(&self, name: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        in_write_tx!(self, audit, |tx, sql| {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql(
                "DELETE FROM alert_channels WHERE name = ?",
            )))
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "DELETE FROM secrets WHERE name = ?",
            )))
            .bind(channel_secret_name(name).as_str())
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Every channel, by name.
    pub async fn channels(&self) -> Result<Vec<ChannelRow>, StoreError> {
        type Row = (String, String, Option<Vec<u8>>, String, i64);
        let rows: Vec<Row> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(
                "SELECT name, spec_json, secret_sealed, updated_by, updated_at \
                 FROM alert_channels ORDER BY name",
            )))
            .fetch_all(conn)
            .await?
        });
        rows.into_iter()
            .map(|t| {
                Ok(ChannelRow {
                    name: t.0,
                    spec_json: t.1,
                    secret_sealed: t.2,
                    updated_by: t.3,
                    updated_at: time(t.4)?,
                })
            })
            .collect()
    }

    /// Pending deliveries due at `now`, oldest first, at most `limit`.
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let query = format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE status = 'pending' \
             AND next_attempt_at <= ? ORDER BY id LIMIT ?"
        );
        let rows: Vec<DeliveryTuple> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(&query)))
                .bind(micros(now))
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await?
        });
        rows.into_iter().map(delivery_row).collect()
    }

    /// The newest deliveries, newest first (failures are visible here).
    pub async fn deliveries(&self, limit: u32) -> Result<Vec<DeliveryRow>, StoreError> {
        let query =
            format!("SELECT {DELIVERY_COLUMNS} FROM alert_deliveries ORDER BY id DESC LIMIT ?");
        let rows: Vec<DeliveryTuple> = on_backend!(self, |conn, sql| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(&query)))
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await?
        });
        rows.into_iter().map(delivery_row).collect()
    }

    /// Records one attempt's outcome.
    pub async fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (status, next, error, sent) = match outcome {
            DeliveryOutcome::Sent => ("sent", now, None, Some(micros(now))),
            DeliveryOutcome::Retry(at, e) => ("pending", *at, Some(e.as_str()), None),
            DeliveryOutcome::Failed(e) => ("failed", now, Some(e.as_str()), None),
        };
        in_plain_write_tx!(self, |tx, sql| {
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "UPDATE alert_deliveries SET status = ?, attempts = attempts + 1, \
                 next_attempt_at = ?, last_error = COALESCE(?, last_error), sent_at = ? \
                 WHERE id = ?",
            )))
            .bind(status)
            .bind(micros(next))
            .bind(error)
            .bind(sent)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Takes or renews lease `name` for `holder` until `until`; `false` while another holder's
    /// lease has not expired at `now`.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let taken = in_plain_write_tx!(self, |tx, sql| {
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= ?",
            )))
            .bind(name)
            .bind(holder)
            .bind(micros(until))
            .bind(micros(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }
}
