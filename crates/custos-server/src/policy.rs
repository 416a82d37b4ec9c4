//! The route → requirement table: the single list of who may call what.
//!
//! Every route the router serves must appear here; the authorization middleware refuses any
//! route that does not (deny by default), and a test walks the router against this table so a
//! new route cannot ship without an entry. The table is also published in `docs/ACCESS.md`.

use axum::http::Method;
use custos_core::Action;

/// Where a route's model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelParam {
    /// The route is not about one model.
    None,
    /// The `{model}` path segment names the model.
    Path,
}

/// What a route demands of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone (health, sign-in page, static assets, the API description).
    Public,
    /// An authenticated principal allowed `Action` (on the path's model, if any).
    Authenticated(Action, ModelParam),
    /// Any authenticated principal, whatever it may do: only for what concerns the caller
    /// itself (who am I, sign out), so that a person without any role can still sign out.
    SignedIn,
}

use ModelParam::{None as NoModel, Path as ModelInPath};
use Requirement::{Authenticated as Auth, Public, SignedIn};

/// The table: method, route template, requirement.
pub const POLICY: &[(&str, &str, Requirement)] = &[
    ("GET", "/healthz", Public),
    // Server health and every model's aggregate results: an instance-level read.
    ("GET", "/metrics", Auth(Action::MetricsRead, NoModel)),
    // The token endpoint authenticates its client itself (client credentials), throttled and
    // audited like every credential check; the JWKS is public key material.
    ("POST", "/oauth/token", Public),
    ("GET", "/oauth/jwks", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/", Public),
    ("GET", "/ui/login", Public),
    ("POST", "/ui/login", Public),
    ("GET", "/ui/static/custos.css", Public),
    // The OpenID flow's two steps are sign-in routes, throttled per address like the form.
    ("GET", "/ui/oidc/start", Public),
    ("GET", "/ui/oidc/callback", Public),
    ("POST", "/ui/logout", SignedIn),
    ("GET", "/api/v1/whoami", SignedIn),
    ("GET", "/ui", Auth(Action::ModelsRead, NoModel)),
    (
        "GET",
        "/ui/models/{model}",
        Auth(Action::DriftRead, ModelInPath),
    ),
    ("GET", "/ui/audit", Auth(Action::AuditRead, NoModel)),
    (
        "GET",
        "/api/v1/models/{model}/alerts",
        Auth(Action::AlertsRead, ModelInPath),
    ),
    // Rules, acknowledgements and silences of one model: what a CI/CD token may be limited to.
    (
        "PUT",
        "/api/v1/models/{model}/alerts",
        Auth(Action::AlertsWrite, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/alerts/acknowledge",
        Auth(Action::AlertsWrite, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/silences",
        Auth(Action::AlertsWrite, ModelInPath),
    ),
    // Channels hold secrets and reach outside: an instance-level duty of the SRE.
    (
        "GET",
        "/api/v1/alert-channels",
        Auth(Action::ChannelsManage, NoModel),
    ),
    (
        "PUT",
        "/api/v1/alert-channels/{name}",
        Auth(Action::ChannelsManage, NoModel),
    ),
    (
        "DELETE",
        "/api/v1/alert-channels/{name}",
        Auth(Action::ChannelsManage, NoModel),
    ),
    (
        "GET",
        "/api/v1/alert-deliveries",
        Auth(Action::ChannelsManage, NoModel),
    ),
    (
        "GET",
        "/ui/models/{model}/history",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    ("GET", "/api/v1/models", Auth(Action::ModelsRead, NoModel)),
    ("POST", "/api/v1/models", Auth(Action::ModelsWrite, NoModel)),
    (
        "GET",
        "/api/v1/models/{model}",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/predictions",
        Auth(Action::PredictionsWrite, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/labels",
        Auth(Action::LabelsWrite, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/volume",
        Auth(Action::ProfilesRead, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/features/{feature}/profile",
        Auth(Action::ProfilesRead, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/drift",
        Auth(Action::DriftRead, ModelInPath),
    ),
    // Stored rows, as stored (masked, pseudonyms, tokens); every read is audited.
    (
        "GET",
        "/api/v1/models/{model}/events",
        Auth(Action::RowsRead, ModelInPath),
    ),
    // Originals of vault tokens: no built-in role; its own rate-limit budget; audited with the
    // justification before anything is decrypted.
    (
        "POST",
        "/api/v1/models/{model}/reveal",
        Auth(Action::PiiReveal, ModelInPath),
    ),
    // Erasure of one subject's vault entry (audited).
    (
        "DELETE",
        "/api/v1/models/{model}/vault/{token}",
        Auth(Action::PiiErase, ModelInPath),
    ),
    // Erasure of everything the model stored (crypto-shredding; the body repeats the model's
    // name; audited in the same transaction).
    (
        "DELETE",
        "/api/v1/models/{model}/data",
        Auth(Action::DataErase, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/report",
        Auth(Action::DriftRead, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/quality",
        Auth(Action::ProfilesRead, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/performance",
        Auth(Action::PerformanceRead, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/monitoring",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    (
        "PUT",
        "/api/v1/models/{model}/monitoring",
        Auth(Action::MonitorsWrite, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/reference",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/reference",
        Auth(Action::ReferencesWrite, ModelInPath),
    ),
    ("GET", "/api/v1/tokens", Auth(Action::TokensManage, NoModel)),
    (
        "POST",
        "/api/v1/tokens",
        Auth(Action::TokensManage, NoModel),
    ),
    (
        "DELETE",
        "/api/v1/tokens/{id}",
        Auth(Action::TokensManage, NoModel),
    ),
    ("GET", "/api/v1/users", Auth(Action::UsersManage, NoModel)),
    ("POST", "/api/v1/users", Auth(Action::UsersManage, NoModel)),
    (
        "DELETE",
        "/api/v1/users/{id}",
        Auth(Action::UsersManage, NoModel),
    ),
    (
        "PUT",
        "/api/v1/users/{id}/roles",
        Auth(Action::UsersManage, NoModel),
    ),
    (
        "GET",
        "/api/v1/models/{model}/monitoring/history",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/monitoring/versions/{version}",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/monitoring/diff",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/monitoring/rollback",
        Auth(Action::MonitorsWrite, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/monitoring/changes/{id}/approve",
        Auth(Action::MonitorsWrite, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/models/{model}/monitoring/changes/{id}/reject",
        Auth(Action::MonitorsWrite, ModelInPath),
    ),
    (
        "GET",
        "/api/v1/models/{model}/lineage",
        Auth(Action::ModelsRead, ModelInPath),
    ),
    (
        "POST",
        "/api/v1/tokens/{id}/rotate",
        Auth(Action::TokensManage, NoModel),
    ),
    ("GET", "/api/v1/audit", Auth(Action::AuditRead, NoModel)),
    (
        "GET",
        "/api/v1/audit/verify",
        Auth(Action::AuditRead, NoModel),
    ),
    (
        "GET",
        "/api/v1/audit/checkpoint",
        Auth(Action::AuditRead, NoModel),
    ),
    (
        "GET",
        "/api/v1/audit/keys",
        Auth(Action::AuditRead, NoModel),
    ),
    (
        "GET",
        "/api/v1/audit/proof/inclusion",
        Auth(Action::AuditRead, NoModel),
    ),
    (
        "GET",
        "/api/v1/audit/proof/consistency",
        Auth(Action::AuditRead, NoModel),
    ),
    (
        "GET",
        "/api/v1/audit/export",
        Auth(Action::AuditRead, NoModel),
    ),
    (
        "POST",
        "/api/v1/audit/hash",
        Auth(Action::AuditRead, NoModel),
    ),
];

/// The methods the table lists for a route (empty when the route is not in it at all).
pub fn methods_of(route: &str) -> Vec<&'static str> {
    POLICY
        .iter()
        .filter(|(_, r, _)| *r == route)
        .map(|(m, _, _)| *m)
        .collect()
}

/// The requirement of a route, or `None` when the route is not in the table.
pub fn requirement(method: &Method, route: &str) -> Option<Requirement> {
    // HEAD is served by GET handlers and must be guarded like them.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    POLICY
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, req)| *req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The (method, route) pairs the router registers, read from its declaration: every
    /// `.route("PATH", get(..).post(..))` in `lib.rs`. Reading the source is deliberate — axum
    /// cannot list its routes — and the test below fails in both directions, so a route added
    /// without a policy entry (or an entry left behind) cannot go unnoticed.
    fn declared_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("lib.rs");
        let mut routes = BTreeSet::new();
        for chunk in source.split(".route(").skip(1) {
            let Some(rest) = chunk.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some((path, handlers)) = rest.split_once('"') else {
                continue;
            };
            // rustfmt writes a short `.route(…)` on one line and a long one with its closing
            // parenthesis alone on a line: cut the handler list at whichever ends this call.
            let end = if handlers.starts_with(",\n") {
                "\n        )"
            } else {
                ")\n"
            };
            let handlers = handlers.split(end).next().unwrap_or(handlers);
            let handlers: String = handlers.split_whitespace().collect();
            for (token, method) in [
                ("get(", "GET"),
                ("post(", "POST"),
                ("delete(", "DELETE"),
                ("put(", "PUT"),
                ("patch(", "PATCH"),
            ] {
                let mut search = handlers.as_str();
                while let Some(i) = search.find(token) {
                    let before = search[..i].chars().last();
                    if before.is_none_or(|c| c == ',' || c == '.' || c == ':') {
                        routes.insert((method.to_owned(), path.to_owned()));
                    }
                    search = &search[i + token.len()..];
                }
            }
        }
        routes
    }

    #[test]
    fn every_declared_route_has_exactly_one_policy_entry() {
        let declared = declared_routes();
        assert!(declared.len() >= 20, "parsed too few routes: {declared:?}");
        let table: BTreeSet<(String, String)> = POLICY
            .iter()
            .map(|(m, r, _)| ((*m).to_owned(), (*r).to_owned()))
            .collect();
        assert_eq!(table.len(), POLICY.len(), "duplicate policy entries");
        let missing: Vec<_> = declared.difference(&table).collect();
        assert!(
            missing.is_empty(),
            "routes without a policy entry: {missing:?}"
        );
        let stale: Vec<_> = table.difference(&declared).collect();
        assert!(
            stale.is_empty(),
            "policy entries without a route: {stale:?}"
        );
    }

    #[test]
    fn head_is_guarded_like_get_and_unknown_routes_are_not_allowed() {
        assert_eq!(
            requirement(&Method::HEAD, "/api/v1/models"),
            requirement(&Method::GET, "/api/v1/models")
        );
        assert_eq!(requirement(&Method::GET, "/api/v1/secret-admin"), None);
        assert_eq!(requirement(&Method::PUT, "/api/v1/models"), None);
    }
}
