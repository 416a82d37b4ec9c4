//! The audit event: what every security-relevant act is recorded as.
//!
//! One type for every producer, so the store has one append path and the Merkle-log work can
//! later replace the hash chain without touching callers. Fields hold identifiers and outcomes,
//! never secrets or row values: callers pass token ids, model names and request ids.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    /// The one-time bootstrap administrator secret.
    Bootstrap,
    /// An API token.
    Token,
    /// A signed-in person.
    User,
    /// A machine client identified by a verified TLS client certificate.
    Service,
    /// The server itself (start-up, background jobs, local admin commands).
    System,
    /// Nobody could be identified (failed authentication).
    Anonymous,
}

/// How the act ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was attempted and failed (for example a bad credential).
    Failure,
    /// The policy refused it.
    Denied,
}

/// One audit record before it is chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened (UTC).
    pub time: DateTime<Utc>,
    /// Who acted: a token id, a user id, `bootstrap`, `system` or `anonymous`.
    pub actor: String,
    /// The kind of actor.
    pub actor_type: ActorType,
    /// The client address, when there is one.
    pub source_ip: Option<String>,
    /// The client's user agent, when there is one (truncated by the producer).
    pub user_agent: Option<String>,
    /// The request id that ties the record to logs.
    pub request_id: Option<String>,
    /// A dotted action name such as `model.create` or `auth.token`.
    pub action: String,
    /// What was acted on, such as `model/fraud-v3`.
    pub resource: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The HTTP status the request was answered with, when the record is written knowing it
    /// (refusals: 401, 403, 429; changes: 200/201/202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Structured extra facts (ids, before/after of configuration) — never secrets or PII.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// A successful act of the server itself (start, background jobs), with no request behind
    /// it: actor `system`, no client address, user agent or request id.
    pub fn system(
        time: DateTime<Utc>,
        action: &str,
        resource: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            time,
            actor: "system".into(),
            actor_type: ActorType::System,
            source_ip: None,
            user_agent: None,
            request_id: None,
            action: action.into(),
            resource: resource.into(),
            outcome: Outcome::Success,
            status: None,
            detail,
        }
    }
}
