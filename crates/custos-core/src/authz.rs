//! Authorization policy: which principal may perform which action on which model.
//!
//! Deny by default: a principal holds explicit grants, and [`Principal::allows`] is the only
//! decision function. The server calls it from one middleware for every route (the route →
//! action table lives there); handlers never decide access themselves. The full role model
//! (roles, data tiers, bindings) extends this type; it does not replace the choke point.

use crate::names::ModelName;
use serde::{Deserialize, Serialize};

/// Something a caller can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// See a model and its schema.
    #[serde(rename = "models:read")]
    ModelsRead,
    /// Register models (instance-level).
    #[serde(rename = "models:write")]
    ModelsWrite,
    /// Send predictions.
    #[serde(rename = "predictions:write")]
    PredictionsWrite,
    /// Send ground-truth labels.
    #[serde(rename = "labels:write")]
    LabelsWrite,
    /// Read feature profiles and traffic volume.
    #[serde(rename = "profiles:read")]
    ProfilesRead,
    /// Read drift results.
    #[serde(rename = "drift:read")]
    DriftRead,
    /// Read model performance (realized and estimated).
    #[serde(rename = "performance:read")]
    PerformanceRead,
    /// Change how a model is monitored (drift methods, thresholds, quality settings).
    #[serde(rename = "monitors:write")]
    MonitorsWrite,
    /// Upload reference data sets (training data) for a model.
    #[serde(rename = "references:write")]
    ReferencesWrite,
    /// Create, list and revoke API tokens (instance-level).
    #[serde(rename = "tokens:manage")]
    TokensManage,
    /// Read and verify the audit log (instance-level).
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Create local users, bind their roles and disable them (instance-level).
    #[serde(rename = "users:manage")]
    UsersManage,
    /// Scrape the Prometheus endpoint (instance-level): server health and every registered
    /// model's aggregate monitoring results, so it is granted on `*` only.
    #[serde(rename = "metrics:read")]
    MetricsRead,
    /// See a model's alerts: their states, history and silences.
    #[serde(rename = "alerts:read")]
    AlertsRead,
    /// Change a model's alert rules, acknowledge its alerts and silence them (a CI/CD pipeline
    /// may hold only this, on one model).
    #[serde(rename = "alerts:write")]
    AlertsWrite,
    /// Create, change and delete notification channels, and see deliveries (instance-level).
    #[serde(rename = "channels:manage")]
    ChannelsManage,
    /// Read a model's stored rows as stored: masked values, pseudonyms and vault tokens, never
    /// an original.
    #[serde(rename = "rows:read")]
    RowsRead,
    /// Turn vault tokens of a model back into their originals, with a written justification
    /// (audited, rate-limited). No built-in role holds it.
    #[serde(rename = "pii:reveal")]
    PiiReveal,
    /// Erase one subject's token-vault entry of a model (crypto-shredding of that value).
    #[serde(rename = "pii:erase")]
    PiiErase,
    /// Erase everything a model has stored as data (crypto-shredding of all its keys); the
    /// registration and configuration history stay.
    #[serde(rename = "data:erase")]
    DataErase,
}

impl Action {
    /// Every action, for exhaustive tests and documentation.
    pub const ALL: [Action; 20] = [
        Action::ModelsRead,
        Action::ModelsWrite,
        Action::PredictionsWrite,
        Action::LabelsWrite,
        Action::ProfilesRead,
        Action::DriftRead,
        Action::PerformanceRead,
        Action::MonitorsWrite,
        Action::ReferencesWrite,
        Action::TokensManage,
        Action::AuditRead,
        Action::UsersManage,
        Action::MetricsRead,
        Action::AlertsRead,
        Action::AlertsWrite,
        Action::ChannelsManage,
        Action::RowsRead,
        Action::PiiReveal,
        Action::PiiErase,
        Action::DataErase,
    ];

    /// The action's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ModelsRead => "models:read",
            Action::ModelsWrite => "models:write",
            Action::PredictionsWrite => "predictions:write",
            Action::LabelsWrite => "labels:write",
            Action::ProfilesRead => "profiles:read",
            Action::DriftRead => "drift:read",
            Action::PerformanceRead => "performance:read",
            Action::MonitorsWrite => "monitors:write",
            Action::ReferencesWrite => "references:write",
            Action::TokensManage => "tokens:manage",
            Action::AuditRead => "audit:read",
            Action::UsersManage => "users:manage",
            Action::MetricsRead => "metrics:read",
            Action::AlertsRead => "alerts:read",
            Action::AlertsWrite => "alerts:write",
            Action::ChannelsManage => "channels:manage",
            Action::RowsRead => "rows:read",
            Action::PiiReveal => "pii:reveal",
            Action::PiiErase => "pii:erase",
            Action::DataErase => "data:erase",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Instance-level actions cannot be narrowed to one model: they act on the whole server.
    pub fn is_instance_level(self) -> bool {
        matches!(
            self,
            Action::ModelsWrite
                | Action::TokensManage
                | Action::AuditRead
                | Action::UsersManage
                | Action::MetricsRead
                | Action::ChannelsManage
        )
    }
}

/// Which models a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelScope {
    /// Every model, present and future.
    Any,
    /// One model.
    Named(ModelName),
}

impl ModelScope {
    fn covers(&self, model: &ModelName) -> bool {
        match self {
            ModelScope::Any => true,
            ModelScope::Named(name) => name == model,
        }
    }
}

/// One permission: an action on a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The action.
    pub action: Action,
    /// Where it applies.
    pub model: ModelScope,
}

/// Why a grant list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// An unknown action name.
    #[error("unknown action '{0}'")]
    UnknownAction(String),
    /// An instance-level action narrowed to a model.
    #[error("'{0}' applies to the whole server; use model \"*\"")]
    InstanceLevel(&'static str),
    /// A bad model name.
    #[error("model: {0}")]
    Model(String),
    /// No grants at all.
    #[error("a token needs at least one scope")]
    Empty,
    /// Too many grants.
    #[error("a token may carry at most 64 scopes")]
    TooMany,
}

/// Builds a grant from its wire form (`{"action": "predictions:write", "model": "fraud-v3"}`).
pub fn parse_grant(action: &str, model: &str) -> Result<Grant, GrantError> {
    let action = Action::parse(action)
        .ok_or_else(|| GrantError::UnknownAction(action.chars().take(64).collect()))?;
    let model = if model == "*" {
        ModelScope::Any
    } else {
        if action.is_instance_level() {
            return Err(GrantError::InstanceLevel(action.as_str()));
        }
        ModelScope::Named(ModelName::parse(model).map_err(|e| GrantError::Model(e.to_string()))?)
    };
    Ok(Grant { action, model })
}

/// Who is asking, as established by authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The one-time bootstrap secret: the first administrator, allowed everything.
    Bootstrap,
    /// An API token with explicit grants.
    Token {
        /// The token's public id.
        id: String,
        /// What it may do.
        grants: Vec<Grant>,
    },
    /// A local user signed in with a password; grants are the union of the user's role
    /// bindings as read at sign-in (see [`crate::roles`]).
    User {
        /// The user's store id.
        id: String,
        /// The user name, for display only: audit records name the id.
        name: String,
        /// What the user may do.
        grants: Vec<Grant>,
    },
    /// A machine client identified by a verified TLS client certificate that the server's
    /// configuration maps to grants (`[server.tls] client_identities`).
    Service {
        /// The configured certificate subject.
        id: String,
        /// What it may do, exactly as configured.
        grants: Vec<Grant>,
    },
}

impl Principal {
    /// The decision. `model` is the model the request touches, or `None` for requests that are
    /// not about one model (lists are filtered per model afterwards with `Some`).
    pub fn allows(&self, action: Action, model: Option<&ModelName>) -> bool {
        match self {
            Principal::Bootstrap => true,
            Principal::Token { grants, .. }
            | Principal::User { grants, .. }
            | Principal::Service { grants, .. } => {
                grants.iter().any(|g| {
                    g.action == action
                        && match model {
                            Some(m) => g.model.covers(m),
                            // A request about no particular model needs a grant that is not
                            // narrowed, or — for listings — is narrowed to some model the
                            // listing will then filter down to.
                            None => !action.is_instance_level() || g.model == ModelScope::Any,
                        }
                })
            }
        }
    }

    /// Whether this principal may hand out `grant` to a new token: nobody can grant more than
    /// they hold.
    pub fn can_delegate(&self, grant: &Grant) -> bool {
        match (&grant.model, self) {
            (_, Principal::Bootstrap) => true,
            (
                ModelScope::Any,
                Principal::Token { grants, .. }
                | Principal::User { grants, .. }
                | Principal::Service { grants, .. },
            ) => grants
                .iter()
                .any(|g| g.action == grant.action && g.model == ModelScope::Any),
            (ModelScope::Named(m), _) => self.allows(grant.action, Some(m)),
        }
    }

    /// The actor id recorded in audit entries.
    pub fn actor_id(&self) -> String {
        match self {
            Principal::Bootstrap => "bootstrap".to_owned(),
            Principal::Token { id, .. } => id.clone(),
            Principal::User { id, .. } => format!("user:{id}"),
            Principal::Service { id, .. } => format!("service:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> ModelName {
        ModelName::parse(name).unwrap()
    }

    #[test]
    fn token_scoped_to_one_model() {
        let p = Principal::Token {
            id: "t".into(),
            grants: vec![parse_grant("predictions:write", "fraud-v3").unwrap()],
        };
        assert!(p.allows(Action::PredictionsWrite, Some(&m("fraud-v3"))));
        assert!(!p.allows(Action::PredictionsWrite, Some(&m("churn"))));
        assert!(!p.allows(Action::LabelsWrite, Some(&m("fraud-v3"))));
        assert!(!p.allows(Action::TokensManage, None));
        assert!(p.can_delegate(&parse_grant("predictions:write", "fraud-v3").unwrap()));
        assert!(!p.can_delegate(&parse_grant("predictions:write", "*").unwrap()));
    }

    #[test]
    fn service_allowed_exactly_by_its_grants() {
        let p = Principal::Service {
            id: "ci-pipeline".into(),
            grants: vec![parse_grant("predictions:write", "fraud-v3").unwrap()],
        };
        assert_eq!(p.actor_id(), "service:ci-pipeline");
        assert!(p.allows(Action::PredictionsWrite, Some(&m("fraud-v3"))));
        assert!(!p.allows(Action::PredictionsWrite, Some(&m("churn"))));
        assert!(!p.allows(Action::DriftRead, Some(&m("fraud-v3"))));
        assert!(!p.allows(Action::ModelsWrite, None));
    }

    #[test]
    fn every_action_denied_without_grants() {
        let p = Principal::Token {
            id: "t".into(),
            grants: vec![],
        };
        for action in Action::ALL {
            assert!(!p.allows(action, None));
            assert!(!p.allows(action, Some(&m("x"))));
            assert!(Principal::Bootstrap.allows(action, Some(&m("x"))));
        }
    }

    #[test]
    fn instance_level_actions_need_star() {
        assert!(parse_grant("tokens:manage", "fraud").is_err());
        // The endpoint reports on every model at once: a grant on one model would mean nothing.
        assert!(parse_grant("metrics:read", "fraud").is_err());
        assert!(parse_grant("metrics:read", "*").is_ok());
        assert!(parse_grant("nope", "*").is_err());
        assert!(parse_grant("drift:read", "bad name").is_err());
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
    }
}
