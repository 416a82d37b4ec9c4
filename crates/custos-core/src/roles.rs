//! Built-in roles: named bundles of [`Grant`]s that people are bound to, on every model or on
//! one.
//!
//! A role is only a way to write down grants; the decision is still [`crate::Principal::allows`]
//! over the grants a role expands to, so roles add no second decision path. The set is fixed and
//! small on purpose (an enum and a `match` are exhaustively testable; see `docs/ACCESS.md` for
//! the published table, which a test keeps in step with [`BuiltinRole::grants`]).
//!
//! Separation of duties: `admin` manages who has access but is not given the data or the
//! monitors itself, and nobody else can manage users.

use crate::authz::{Action, Grant, ModelScope};
use crate::names::ModelName;
use serde::{Deserialize, Serialize};

/// A role a local user can be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinRole {
    /// Manages users and their role bindings; reads the model list and the audit log.
    Admin,
    /// Operates models: registration, ingestion, monitors, references, tokens, every read, and
    /// the Prometheus scrape of the server's health and results.
    Sre,
    /// Reads profiles, drift and performance and tunes the monitors of its models.
    DataScientist,
    /// Reads the audit log and aggregate results (drift, performance), never profiles.
    Auditor,
    /// Reads high-level drift results only.
    Analyst,
}

/// Actions of each role, before scoping. Instance-level actions among them are granted only on a
/// binding to every model (see [`BuiltinRole::grants`]).
const ADMIN: &[Action] = &[Action::UsersManage, Action::ModelsRead, Action::AuditRead];
const SRE: &[Action] = &[
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
    // Operating the server includes watching it: the scrape is the SRE's, not the admin's,
    // whose job is access and who is given no monitoring results.
    Action::MetricsRead,
    Action::AlertsRead,
    Action::AlertsWrite,
    Action::ChannelsManage,
    // Operators look at what was stored (masked) when debugging ingest, and carry out erasure
    // requests: erasing destroys a sealed original but reveals nothing.
    Action::RowsRead,
    Action::PiiErase,
    // Erasing a whole model's data is the same operator duty at a larger scale; it reveals
    // nothing, and the body must name the model again.
    Action::DataErase,
];
const DATA_SCIENTIST: &[Action] = &[
    Action::ModelsRead,
    Action::ProfilesRead,
    Action::DriftRead,
    Action::PerformanceRead,
    Action::MonitorsWrite,
    // Model-level checks of their own models include the alerts on them.
    Action::AlertsRead,
    Action::AlertsWrite,
    // Rows as stored: masked values, pseudonyms and tokens, never originals.
    Action::RowsRead,
];
// Drift and performance results are aggregates; profiles (per-feature distributions) are the
// closest thing to the data itself and stay out of the auditor's reach.
const AUDITOR: &[Action] = &[
    Action::ModelsRead,
    Action::AuditRead,
    Action::DriftRead,
    Action::PerformanceRead,
    Action::AlertsRead,
    // An auditor checks what is stored about people, as stored (masked): never originals.
    Action::RowsRead,
];
// Which alerts fire is a high-level summary; the analyst sees it but changes nothing, and sees
// no rows. `pii:reveal` is in no role: it is given explicitly, by a token scope.
const ANALYST: &[Action] = &[Action::ModelsRead, Action::DriftRead, Action::AlertsRead];

impl BuiltinRole {
    /// Every role, for exhaustive tests and documentation.
    pub const ALL: [BuiltinRole; 5] = [
        BuiltinRole::Admin,
        BuiltinRole::Sre,
        BuiltinRole::DataScientist,
        BuiltinRole::Auditor,
        BuiltinRole::Analyst,
    ];

    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinRole::Admin => "admin",
            BuiltinRole::Sre => "sre",
            BuiltinRole::DataScientist => "data-scientist",
            BuiltinRole::Auditor => "auditor",
            BuiltinRole::Analyst => "analyst",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<BuiltinRole> {
        BuiltinRole::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The actions the role carries, whatever its scope.
    pub fn actions(self) -> &'static [Action] {
        match self {
            BuiltinRole::Admin => ADMIN,
            BuiltinRole::Sre => SRE,
            BuiltinRole::DataScientist => DATA_SCIENTIST,
            BuiltinRole::Auditor => AUDITOR,
            BuiltinRole::Analyst => ANALYST,
        }
    }

    /// Whether the role only makes sense on every model: its purpose is an instance-level
    /// action, which a binding to one model would silently drop.
    pub fn instance_wide(self) -> bool {
        matches!(self, BuiltinRole::Admin)
    }

    /// The grants of the role bound on `scope`. Instance-level actions act on the whole server
    /// and cannot be narrowed, so a binding to one model leaves them out rather than widening
    /// itself.
    pub fn grants(self, scope: &ModelScope) -> Vec<Grant> {
        self.actions()
            .iter()
            .filter(|a| *scope == ModelScope::Any || !a.is_instance_level())
            .map(|&action| {
                let model = if action.is_instance_level() {
                    ModelScope::Any
                } else {
                    scope.clone()
                };
                Grant { action, model }
            })
            .collect()
    }
}

/// A role on a scope, as stored for a user and sent over the API:
/// `{"role": "data-scientist", "model": "fraud-v3"}` or `{"role": "sre", "model": "*"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBinding {
    /// The role.
    pub role: BuiltinRole,
    /// Where it applies.
    #[serde(with = "scope_wire")]
    pub model: ModelScope,
}

/// Why a role binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// An unknown role name.
    #[error("unknown role '{0}'")]
    UnknownRole(String),
    /// A bad model name.
    #[error("model: {0}")]
    Model(String),
    /// An instance-wide role narrowed to one model.
    #[error("role '{0}' applies to the whole server; use model \"*\"")]
    InstanceWide(&'static str),
    /// Too many bindings for one user.
    #[error("a user may hold at most {MAX_BINDINGS} role bindings")]
    TooMany,
}

/// Most role bindings one user may hold; bounds the grants a session carries.
pub const MAX_BINDINGS: usize = 64;

impl RoleBinding {
    /// Builds a binding from its wire form, refusing an instance-wide role on one model.
    pub fn parse(role: &str, model: &str) -> Result<RoleBinding, RoleError> {
        let role = BuiltinRole::parse(role)
            .ok_or_else(|| RoleError::UnknownRole(role.chars().take(64).collect()))?;
        let model = scope_wire::parse(model).map_err(RoleError::Model)?;
        let binding = RoleBinding { role, model };
        binding.check()?;
        Ok(binding)
    }

    /// Refuses bindings that cannot mean what they say.
    pub fn check(&self) -> Result<(), RoleError> {
        if self.role.instance_wide() && self.model != ModelScope::Any {
            return Err(RoleError::InstanceWide(self.role.as_str()));
        }
        Ok(())
    }

    /// The binding's grants.
    pub fn grants(&self) -> Vec<Grant> {
        self.role.grants(&self.model)
    }
}

/// The union of the grants of `bindings`, without repeats, in a stable order.
pub fn grants_of(bindings: &[RoleBinding]) -> Vec<Grant> {
    let mut grants: Vec<Grant> = Vec::new();
    for grant in bindings.iter().flat_map(RoleBinding::grants) {
        if !grants.contains(&grant) {
            grants.push(grant);
        }
    }
    grants
}

/// `ModelScope` on the wire: `"*"` for every model, otherwise the model's name.
mod scope_wire {
    use super::{ModelName, ModelScope};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn parse(raw: &str) -> Result<ModelScope, String> {
        if raw == "*" {
            return Ok(ModelScope::Any);
        }
        ModelName::parse(raw)
            .map(ModelScope::Named)
            .map_err(|e| e.to_string())
    }

    pub(super) fn serialize<S: Serializer>(scope: &ModelScope, s: S) -> Result<S::Ok, S::Error> {
        match scope {
            ModelScope::Any => s.serialize_str("*"),
            ModelScope::Named(name) => s.serialize_str(name.as_str()),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ModelScope, D::Error> {
        let raw = String::deserialize(d)?;
        parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Principal;
    use std::fmt::Write as _;

    /// The documented table (docs/ACCESS.md), written once: for each role, the actions it
    /// allows when bound on `*`. Every pair not listed must be denied.
    const EXPECTED: &[(BuiltinRole, &[&str])] = &[
        (
            BuiltinRole::Admin,
            &["models:read", "audit:read", "users:manage"],
        ),
        (
            BuiltinRole::Sre,
            &[
                "models:read",
                "models:write",
                "predictions:write",
                "labels:write",
                "profiles:read",
                "drift:read",
                "performance:read",
                "monitors:write",
                "references:write",
                "tokens:manage",
                "audit:read",
                "metrics:read",
                "alerts:read",
                "alerts:write",
                "channels:manage",
                "rows:read",
                "pii:erase",
                "data:erase",
            ],
        ),
        (
            BuiltinRole::DataScientist,
            &[
                "models:read",
                "profiles:read",
                "drift:read",
                "performance:read",
                "monitors:write",
                "alerts:read",
                "alerts:write",
                "rows:read",
            ],
        ),
        (
            BuiltinRole::Auditor,
            &[
                "models:read",
                "audit:read",
                "drift:read",
                "performance:read",
                "alerts:read",
                "rows:read",
            ],
        ),
        (
            BuiltinRole::Analyst,
            &["models:read", "drift:read", "alerts:read"],
        ),
    ];

    fn m(name: &str) -> ModelName {
        ModelName::parse(name).unwrap()
    }

    fn user(bindings: &[RoleBinding]) -> Principal {
        Principal::User {
            id: "u1".into(),
            name: "ada".into(),
            grants: grants_of(bindings),
        }
    }

    fn expected(role: BuiltinRole) -> &'static [&'static str] {
        EXPECTED.iter().find(|(r, _)| *r == role).unwrap().1
    }

    #[test]
    fn every_role_and_action_matches_the_table() {
        assert_eq!(EXPECTED.len(), BuiltinRole::ALL.len());
        for role in BuiltinRole::ALL {
            let p = user(&[RoleBinding {
                role,
                model: ModelScope::Any,
            }]);
            for action in Action::ALL {
                let want = expected(role).contains(&action.as_str());
                let on_model = p.allows(action, Some(&m("fraud-v3")));
                let on_instance = p.allows(action, None);
                assert_eq!(
                    on_model,
                    want,
                    "{} / {} on a model",
                    role.as_str(),
                    action.as_str()
                );
                assert_eq!(
                    on_instance,
                    want,
                    "{} / {} on *",
                    role.as_str(),
                    action.as_str()
                );
            }
        }
    }

    #[test]
    fn a_binding_to_one_model_grants_nothing_elsewhere_and_nothing_instance_wide() {
        for role in BuiltinRole::ALL {
            let binding = RoleBinding {
                role,
                model: ModelScope::Named(m("fraud-v3")),
            };
            let p = user(std::slice::from_ref(&binding));
            for action in Action::ALL {
                let want = expected(role).contains(&action.as_str()) && !action.is_instance_level();
                assert_eq!(
                    p.allows(action, Some(&m("fraud-v3"))),
                    want,
                    "{} / {}",
                    role.as_str(),
                    action.as_str()
                );
                assert!(!p.allows(action, Some(&m("churn"))), "{}", action.as_str());
                if action.is_instance_level() {
                    assert!(!p.allows(action, None), "{}", action.as_str());
                }
            }
        }
    }

    #[test]
    fn separation_of_duties() {
        let admin = user(&[RoleBinding::parse("admin", "*").unwrap()]);
        assert!(admin.allows(Action::UsersManage, None));
        assert!(!admin.allows(Action::DriftRead, Some(&m("fraud-v3"))));
        assert!(!admin.allows(Action::ProfilesRead, Some(&m("fraud-v3"))));
        assert!(!admin.allows(Action::MonitorsWrite, Some(&m("fraud-v3"))));
        assert!(!admin.allows(Action::PredictionsWrite, Some(&m("fraud-v3"))));
        assert!(!admin.allows(Action::MetricsRead, None));
        for role in BuiltinRole::ALL {
            let p = user(&[RoleBinding {
                role,
                model: ModelScope::Any,
            }]);
            assert_eq!(
                p.allows(Action::MetricsRead, None),
                role == BuiltinRole::Sre,
                "only sre scrapes metrics"
            );
        }
        let analyst = user(&[RoleBinding::parse("analyst", "*").unwrap()]);
        assert!(!analyst.allows(Action::ProfilesRead, Some(&m("fraud-v3"))));
        assert!(analyst.allows(Action::DriftRead, Some(&m("fraud-v3"))));
        for role in BuiltinRole::ALL {
            let p = user(&[RoleBinding {
                role,
                model: ModelScope::Any,
            }]);
            assert_eq!(
                p.allows(Action::UsersManage, None),
                role == BuiltinRole::Admin,
                "only admin manages users"
            );
        }
    }

    #[test]
    fn no_role_reveals_originals_and_the_analyst_sees_no_rows() {
        for role in BuiltinRole::ALL {
            assert!(
                !role.actions().contains(&Action::PiiReveal),
                "{}",
                role.as_str()
            );
        }
        assert!(!BuiltinRole::Analyst.actions().contains(&Action::RowsRead));
        for role in [
            BuiltinRole::Sre,
            BuiltinRole::DataScientist,
            BuiltinRole::Auditor,
        ] {
            assert!(
                role.actions().contains(&Action::RowsRead),
                "{}",
                role.as_str()
            );
        }
    }

    #[test]
    fn users_are_denied_by_default_and_union_their_bindings() {
        let nobody = user(&[]);
        for action in Action::ALL {
            assert!(!nobody.allows(action, None));
            assert!(!nobody.allows(action, Some(&m("x"))));
        }
        let both = user(&[
            RoleBinding::parse("analyst", "*").unwrap(),
            RoleBinding::parse("data-scientist", "fraud-v3").unwrap(),
        ]);
        assert!(both.allows(Action::ProfilesRead, Some(&m("fraud-v3"))));
        assert!(!both.allows(Action::ProfilesRead, Some(&m("churn"))));
        assert!(both.allows(Action::DriftRead, Some(&m("churn"))));
        assert_eq!(both.actor_id(), "user:u1");
        // Repeated bindings do not repeat grants.
        let twice = grants_of(&[
            RoleBinding::parse("analyst", "*").unwrap(),
            RoleBinding::parse("analyst", "*").unwrap(),
        ]);
        assert_eq!(twice.len(), ANALYST.len());
    }

    #[test]
    fn wire_form() {
        for role in BuiltinRole::ALL {
            assert_eq!(BuiltinRole::parse(role.as_str()), Some(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        let b: RoleBinding =
            serde_json::from_str(r#"{"role": "data-scientist", "model": "fraud-v3"}"#).unwrap();
        assert_eq!(b, RoleBinding::parse("data-scientist", "fraud-v3").unwrap());
        assert_eq!(
            serde_json::to_string(&RoleBinding::parse("sre", "*").unwrap()).unwrap(),
            r#"{"role":"sre","model":"*"}"#
        );
        assert!(serde_json::from_str::<RoleBinding>(r#"{"role": "root", "model": "*"}"#).is_err());
        assert!(serde_json::from_str::<RoleBinding>(r#"{"role": "sre", "model": "a b"}"#).is_err());
        assert!(matches!(
            RoleBinding::parse("admin", "fraud-v3"),
            Err(RoleError::InstanceWide("admin"))
        ));
        assert!(matches!(
            RoleBinding::parse("root", "*"),
            Err(RoleError::UnknownRole(_))
        ));
    }

    /// The table in docs/ACCESS.md is generated from the roles, so the two cannot drift apart.
    #[test]
    fn access_doc_has_the_role_table() {
        let mut table = String::from("| action |");
        for role in BuiltinRole::ALL {
            let _ = write!(table, " {} |", role.as_str());
        }
        table.push_str("\n|---|");
        for _ in BuiltinRole::ALL {
            table.push_str("---|");
        }
        for action in Action::ALL {
            let _ = write!(table, "\n| `{}` |", action.as_str());
            for role in BuiltinRole::ALL {
                let cell = if role.actions().contains(&action) {
                    "✓"
                } else {
                    ""
                };
                let _ = write!(table, " {cell} |");
            }
        }
        let doc = include_str!("../../../docs/ACCESS.md");
        assert!(
            doc.contains(&table),
            "docs/ACCESS.md must contain this table:\n{table}"
        );
    }
}
