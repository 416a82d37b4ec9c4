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
}

use ModelParam::{None as NoModel, Path as ModelInPath};
use Requirement::{Authenticated as Auth, Public};

/// The table: method, route template, requirement.
pub const POLICY: &[(&str, &str, Requirement)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/", Public),
    ("GET", "/ui/login", Public),
    ("POST", "/ui/login", Public),
    ("GET", "/ui/static/custos.css", Public),
    ("POST", "/ui/logout", Auth(Action::ModelsRead, NoModel)),
    ("GET", "/ui", Auth(Action::ModelsRead, NoModel)),
    (
        "GET",
        "/ui/models/{model}",
        Auth(Action::DriftRead, ModelInPath),
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
    ("GET", "/api/v1/audit", Auth(Action::AuditRead, NoModel)),
    (
        "GET",
        "/api/v1/audit/verify",
        Auth(Action::AuditRead, NoModel),
    ),
];

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
