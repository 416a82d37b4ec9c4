//! The route × role × scope matrix, over real HTTP against one real server.
//!
//! Every entry of [`custos_server::policy::POLICY`] is called by every kind of caller the server
//! knows: a local user per built-in role signed in through the web form, bound to one model and
//! bound on `*`; an API token per action (on one model, and on `*`); the bootstrap secret (as a
//! bearer and as a web session); a user without roles; and nobody at all — on a model in the
//! caller's scope and on one outside it. The expected decision is computed from the policy
//! table and `custos_core`'s own [`Principal::allows`] over the role grants, never from the
//! server's answer, and every cell is compared:
//!
//! * expected deny → the server must answer 401/403 (or, for nobody on a web page, the
//!   redirect to the sign-in page). Anything else — a 2xx, but also a 400/404/422, which would
//!   mean the handler ran before authorization — is an *unexpected allow*. Each such 403 must
//!   also be the choke point's: it is matched against the `authz.deny` audit records, so a
//!   handler that refuses on its own (and might have leaked work before doing so) counts too.
//! * expected allow → anything except 401/403 (a 400/404 from the handler is fine: the bodies
//!   are empty on purpose and the ids of state-changing routes do not exist).
//!
//! Beside the matrix: the router's declared routes must be exactly the policy table's (so a
//! route added without an entry fails here, by name), methods the table does not list for a path
//! must never reach a handler, listings must hold only the models the caller may read, and
//! `docs/ACCESS.md` must publish the roles × resources table derived here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, Server, Site, fraud_spec};
use custos_core::{
    Action, BuiltinRole, ModelName, ModelScope, Principal, RoleBinding, grants_of, parse_grant,
};
use custos_server::config::Config;
use custos_server::policy::{ModelParam, POLICY, Requirement};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The model the scoped callers are bound to.
const IN_SCOPE: &str = "fraud-v3";
/// A model no scoped caller is bound to.
const OUT_OF_SCOPE: &str = "churn-v1";
const PASSWORD: &str = "matrix lantern orbit 7";
/// The CSRF double-submit value every request carries (cookie and form field), so that the
/// forms' own CSRF check never stands in for an authorization decision.
const CSRF: &str = "rbacmatrixcsrf0123456789abcdef";
/// Routes whose allowed call ends the caller's session: run after every other route.
const SESSION_ENDING: &[(&str, &str)] = &[("POST", "/ui/logout")];

fn churn_spec() -> Value {
    json!({
        "name": OUT_OF_SCOPE,
        "id_field": "customer_id", "timestamp_field": "ts",
        "features": [{"name": "tenure", "type": "numeric"}],
        "prediction": {"name": "churn", "type": "binary_score"}
    })
}

fn model(name: &str) -> ModelName {
    ModelName::parse(name).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Callers

enum Credential {
    Nothing,
    Bearer(String),
    Session(String),
}

/// One caller of the matrix: how it authenticates, and what `custos_core` says it may do.
struct Subject {
    label: String,
    credential: Credential,
    /// `None` for nobody (no credential at all).
    principal: Option<Principal>,
    /// The actor id its denials are audited under.
    actor: Option<String>,
}

impl Subject {
    fn expects(&self, requirement: Requirement, model: Option<&str>) -> bool {
        match requirement {
            Requirement::Public => true,
            Requirement::SignedIn => self.principal.is_some(),
            Requirement::Authenticated(action, _) => self
                .principal
                .as_ref()
                .is_some_and(|p| p.allows(action, model.map(self::model).as_ref())),
        }
    }
}

async fn create_user(s: &Server, name: &str, roles: &[(BuiltinRole, &str)]) -> (u16, Value) {
    let roles: Vec<Value> = roles
        .iter()
        .map(|(role, scope)| json!({"role": role.as_str(), "model": scope}))
        .collect();
    let r = s
        .post_json(
            "/api/v1/users",
            Some(&s.admin),
            &json!({"name": name, "password": PASSWORD, "roles": roles}),
        )
        .await;
    (r.status, r.body)
}

/// Signs in through the real web form (CSRF cookie and token from `GET /ui/login`) and returns
/// the session cookie (`custos_session=…`).
async fn sign_in(s: &Server, username: &str, secret: &str) -> String {
    common::FormBrowser::open(s)
        .await
        .session(s, username, secret)
        .await
}

/// A user bound to `roles`, signed in through the form.
async fn user_subject(
    s: &Server,
    name: &str,
    label: String,
    roles: &[(BuiltinRole, &str)],
) -> Subject {
    let (status, body) = create_user(s, name, roles).await;
    assert_eq!(status, 201, "{label}: {body:?}");
    let id = body["id"].as_str().unwrap().to_owned();
    let bindings: Vec<RoleBinding> = roles
        .iter()
        .map(|(role, scope)| RoleBinding::parse(role.as_str(), scope).unwrap())
        .collect();
    Subject {
        label,
        credential: Credential::Session(sign_in(s, name, PASSWORD).await),
        principal: Some(Principal::User {
            id: id.clone(),
            name: name.to_owned(),
            grants: grants_of(&bindings),
        }),
        actor: Some(format!("user:{id}")),
    }
}

/// A token holding exactly `action` on `scope`.
async fn token_subject(s: &Server, action: Action, scope: &str) -> Subject {
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "rbac matrix",
                    "scopes": [{"action": action.as_str(), "model": scope}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["token"]["id"].as_str().unwrap().to_owned();
    Subject {
        label: format!("token {}@{scope}", action.as_str()),
        credential: Credential::Bearer(r.body["secret"].as_str().unwrap().to_owned()),
        principal: Some(Principal::Token {
            id: id.clone(),
            grants: vec![parse_grant(action.as_str(), scope).unwrap()],
        }),
        actor: Some(id),
    }
}

async fn subjects(s: &Server) -> Vec<Subject> {
    let mut all = vec![
        Subject {
            label: "nobody".into(),
            credential: Credential::Nothing,
            principal: None,
            actor: None,
        },
        Subject {
            label: "bootstrap (bearer)".into(),
            credential: Credential::Bearer(s.admin.clone()),
            principal: Some(Principal::Bootstrap),
            actor: Some("bootstrap".into()),
        },
        Subject {
            label: "bootstrap (session)".into(),
            credential: Credential::Session(sign_in(s, "", &s.admin).await),
            principal: Some(Principal::Bootstrap),
            actor: Some("bootstrap".into()),
        },
    ];
    for role in BuiltinRole::ALL {
        let short = role.as_str();
        if role.instance_wide() {
            // An instance-wide role cannot be narrowed to a model: the binding is refused, and
            // its `*` binding below is the only one there is.
            let (status, body) =
                create_user(s, &format!("m-{short}-one"), &[(role, IN_SCOPE)]).await;
            assert_eq!(
                status, 400,
                "{short} on one model must be refused: {body:?}"
            );
        } else {
            all.push(
                user_subject(
                    s,
                    &format!("m-{short}-one"),
                    format!("user {short}@{IN_SCOPE}"),
                    &[(role, IN_SCOPE)],
                )
                .await,
            );
        }
        all.push(
            user_subject(
                s,
                &format!("m-{short}-all"),
                format!("user {short}@*"),
                &[(role, "*")],
            )
            .await,
        );
    }
    all.push(user_subject(s, "m-no-roles", "user without roles".into(), &[]).await);
    for action in Action::ALL {
        if action.is_instance_level() {
            all.push(token_subject(s, action, "*").await);
        } else {
            all.push(token_subject(s, action, IN_SCOPE).await);
            all.push(token_subject(s, action, "*").await);
        }
    }
    all
}

// ---------------------------------------------------------------------------------------------
// Requests

/// The concrete path of a route template, with `{model}` set to `model`.
fn concrete(route: &str, model: &str) -> String {
    let mut out = Vec::new();
    let mut previous = "";
    for segment in route.split('/') {
        let value = match segment {
            "{model}" => model,
            "{feature}" if model == IN_SCOPE => "amount",
            "{feature}" => "tenure",
            "{version}" => "1",
            // A channel that does not exist (same reasoning as the ids below).
            "{name}" => "no-such-channel",
            // A well-formed vault token no vault holds.
            "{token}" => "tok_AAAAAAAAAAAAAAAAAAAAAA",
            // State-changing routes get ids that do not exist: the decision comes first, and a
            // 404 after an allow changes nothing for the cells that follow.
            "{id}" => match previous {
                "tokens" => "tok_0000000000000000",
                "users" => "usr_0000000000000000",
                "changes" => "999999",
                _ => panic!("{route}: no stand-in for {{id}} after '{previous}'; add one"),
            },
            s if s.starts_with('{') => {
                panic!("{route}: no stand-in for path parameter {s}; add one to concrete()")
            }
            s => s,
        };
        out.push(value);
        previous = segment;
    }
    out.join("/")
}

struct Answer {
    status: u16,
    location: String,
    body: String,
}

async fn call(s: &Server, who: &Subject, method: &str, route: &str, path: &str) -> Answer {
    let method_ = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = s.http.request(method_, s.url(path));
    let mut cookie = format!("custos_csrf={CSRF}");
    match &who.credential {
        Credential::Nothing => {}
        Credential::Bearer(secret) => request = request.bearer_auth(secret),
        Credential::Session(session) => cookie = format!("{cookie}; {session}"),
    }
    request = request.header("cookie", cookie);
    if route == "/ui/login" && method == "POST" {
        // A sign-in that works whoever sends it (public route): the bootstrap secret.
        request = request.form(&[
            ("username", ""),
            ("secret", s.admin.as_str()),
            ("csrf", CSRF),
        ]);
    } else if route.starts_with("/ui") && method != "GET" {
        request = request.form(&[("csrf", CSRF)]);
    } else if method == "POST" || method == "PUT" || method == "PATCH" {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.text().await.unwrap_or_default();
    Answer {
        status,
        location,
        body,
    }
}

/// The configuration with every rate limit of `[limits]` raised far beyond what the matrix
/// sends (a few thousand requests in seconds, ~100 per caller): a 429 would say nothing about
/// authorization. Done through the serialized form so that it covers whatever budgets the
/// configuration has (`*_per_minute`, `*_per_second`, `*_burst`, `per_ip_multiplier`).
fn without_rate_limits(config: Config) -> Config {
    let mut value = serde_json::to_value(&config).unwrap();
    for (key, limit) in value["limits"].as_object_mut().unwrap() {
        if key.ends_with("_per_minute") || key.ends_with("_per_second") || key.ends_with("_burst") {
            *limit = json!(1_000_000);
        } else if key == "per_ip_multiplier" {
            *limit = json!(100);
        }
    }
    serde_json::from_value(value).unwrap()
}

/// Whether the answer is a refusal by authentication or authorization.
fn refused(who: &Subject, route: &str, answer: &Answer) -> bool {
    let sign_in_redirect = who.principal.is_none()
        && (route == "/ui" || route.starts_with("/ui/"))
        && answer.status == 303
        && answer.location == "/ui/login";
    answer.status == 401 || answer.status == 403 || sign_in_redirect
}

/// Audit records after `after`, oldest first.
async fn audit_after(s: &Server, mut after: i64) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    loop {
        let r = s
            .get(
                &format!("/api/v1/audit?after={after}&limit=1000"),
                Some(&s.admin),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let page = r.body["records"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        for record in page {
            after = record["seq"].as_i64().unwrap();
            out.push((after, record["record"].clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Allowed,
    Denied,
    UnexpectedAllow,
    UnexpectedDeny,
}

impl Cell {
    fn mark(self) -> char {
        match self {
            Cell::Allowed => '+',
            Cell::Denied => '.',
            Cell::UnexpectedAllow => 'A',
            Cell::UnexpectedDeny => 'D',
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_role_and_scope_obeys_the_policy_table() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start_with(without_rate_limits(site.config())).await;
    s.register_fraud_model().await;
    let r = s
        .post_json("/api/v1/models", Some(&s.admin), &churn_spec())
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(fraud_spec()["name"], IN_SCOPE);

    let subjects = subjects(&s).await;
    let start = audit_after(&s, 0).await.last().map_or(0, |(seq, _)| *seq);

    // Rows: every policy entry, on the model in scope and the one out of it when it names one;
    // the routes that end a session last.
    let mut entries: Vec<&(&str, &str, Requirement)> = POLICY.iter().collect();
    entries.sort_by_key(|(m, r, _)| SESSION_ENDING.contains(&(*m, *r)));
    let mut rows: Vec<(&str, &str, Requirement, Option<&str>, String)> = Vec::new();
    let mut table_errors = Vec::new();
    for &&(method, route, requirement) in &entries {
        let names_model = route.split('/').any(|seg| seg == "{model}");
        if let Requirement::Authenticated(_, param) = requirement
            && names_model != (param == ModelParam::Path)
        {
            table_errors.push(format!(
                "{method} {route}: the path {} a model but the entry says {param:?}",
                if names_model {
                    "names"
                } else {
                    "does not name"
                }
            ));
        }
        if names_model {
            for m in [IN_SCOPE, OUT_OF_SCOPE] {
                rows.push((method, route, requirement, Some(m), concrete(route, m)));
            }
        } else {
            rows.push((method, route, requirement, None, concrete(route, IN_SCOPE)));
        }
    }

    let mut grid: Vec<Vec<Cell>> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut expected_denials: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut listing_leaks = Vec::new();
    let mut server_errors = Vec::new();
    let (mut allows, mut denies) = (0usize, 0usize);
    for (method, route, requirement, scope, path) in &rows {
        let mut line = Vec::new();
        for who in &subjects {
            let expected = who.expects(*requirement, *scope);
            let answer = call(&s, who, method, route, path).await;
            let was_refused = refused(who, route, &answer);
            let cell = match (expected, was_refused) {
                (true, false) => Cell::Allowed,
                (false, true) => Cell::Denied,
                (false, false) => Cell::UnexpectedAllow,
                (true, true) => Cell::UnexpectedDeny,
            };
            if expected {
                allows += 1;
            } else {
                denies += 1;
            }
            if cell == Cell::UnexpectedAllow || cell == Cell::UnexpectedDeny {
                problems.push(format!(
                    "{}: {} {method} {path} → {} {}",
                    if answer.status == 429 {
                        "RATE LIMITED (raise it in without_rate_limits)"
                    } else if cell == Cell::UnexpectedAllow {
                        "UNEXPECTED ALLOW"
                    } else {
                        "UNEXPECTED DENY"
                    },
                    who.label,
                    answer.status,
                    answer.body.chars().take(160).collect::<String>()
                ));
            }
            if answer.status >= 500 {
                server_errors.push(format!("{} {method} {path} → {}", who.label, answer.status));
            }
            if !expected
                && let (Requirement::Authenticated(..), Some(actor)) = (requirement, &who.actor)
            {
                let resource = scope.map_or_else(|| (*route).to_owned(), |m| format!("model/{m}"));
                *expected_denials
                    .entry((actor.clone(), (*route).to_owned(), resource))
                    .or_default() += 1;
            }
            // Listings are filtered per model after the route's check: exactly the readable ones.
            if cell == Cell::Allowed
                && *method == "GET"
                && (*route == "/api/v1/models" || *route == "/ui")
                && let Some(p) = &who.principal
            {
                for m in [IN_SCOPE, OUT_OF_SCOPE] {
                    let listed = answer.body.contains(m);
                    if listed != p.allows(Action::ModelsRead, Some(&model(m))) {
                        listing_leaks.push(format!(
                            "{} GET {route}: {m} {}",
                            who.label,
                            if listed { "listed" } else { "missing" }
                        ));
                    }
                }
            }
            line.push(cell);
        }
        grid.push(line);
    }

    // A method the table does not list for a path never reaches a handler, even for the
    // bootstrap secret that may do everything: the choke point finds no entry and refuses it
    // (axum runs it for a method mismatch too, so this is 403, or 405 if that changes).
    let bootstrap = subjects
        .iter()
        .find(|w| {
            matches!(w.principal, Some(Principal::Bootstrap))
                && matches!(w.credential, Credential::Bearer(_))
        })
        .unwrap();
    let mut unlisted = Vec::new();
    let mut unlisted_probes = 0usize;
    let templates: BTreeSet<&str> = POLICY.iter().map(|(_, r, _)| *r).collect();
    for route in templates {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if POLICY.iter().any(|(m, r, _)| *m == method && *r == route) {
                continue;
            }
            unlisted_probes += 1;
            let answer = call(&s, bootstrap, method, route, &concrete(route, IN_SCOPE)).await;
            if answer.status != 403 && answer.status != 405 {
                unlisted.push(format!(
                    "UNLISTED METHOD REACHED A HANDLER: {method} {route} → {} (expected 403/405)",
                    answer.status
                ));
            }
        }
    }

    // Every refusal of an authenticated caller must be the choke point's, audited as such; and
    // the choke point must have refused nothing else.
    let mut recorded: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (_, record) in audit_after(&s, start).await {
        if record["action"] == "authz.deny" {
            let key = (
                record["actor"].as_str().unwrap_or_default().to_owned(),
                record["detail"]["route"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                record["resource"].as_str().unwrap_or_default().to_owned(),
            );
            *recorded.entry(key).or_default() += 1;
        }
    }
    let mut audit_mismatches = Vec::new();
    for key in expected_denials
        .keys()
        .chain(recorded.keys())
        .collect::<BTreeSet<_>>()
    {
        let (want, got) = (
            expected_denials.get(key).copied().unwrap_or(0),
            recorded.get(key).copied().unwrap_or(0),
        );
        if want != got {
            audit_mismatches.push(format!(
                "{key:?}: {want} expected denial(s), {got} authz.deny record(s)"
            ));
        }
    }
    s.stop().await;

    let unexpected_allows = grid
        .iter()
        .flatten()
        .filter(|c| **c == Cell::UnexpectedAllow)
        .count();
    let unexpected_denies = grid
        .iter()
        .flatten()
        .filter(|c| **c == Cell::UnexpectedDeny)
        .count();
    let summary = format!(
        "{} policy entries → {} route cells × {} callers = {} requests ({} expected allows, {} \
         expected denies): {unexpected_allows} unexpected allows, {unexpected_denies} unexpected \
         denies, {} audit mismatches, {} listing leaks; {} unlisted methods probed, {} not refused",
        POLICY.len(),
        rows.len(),
        subjects.len(),
        rows.len() * subjects.len(),
        allows,
        denies,
        audit_mismatches.len(),
        listing_leaks.len(),
        unlisted_probes,
        unlisted.len()
    );
    println!("{summary}");
    for e in &server_errors {
        println!("note: server error on an allowed call: {e}");
    }
    let failed = unexpected_allows
        + unexpected_denies
        + audit_mismatches.len()
        + listing_leaks.len()
        + table_errors.len()
        + unlisted.len()
        > 0;
    if failed {
        let mut report = String::new();
        let _ = writeln!(
            report,
            "\nmatrix (+ allowed, . denied, A UNEXPECTED ALLOW, D UNEXPECTED DENY); columns:"
        );
        for (i, who) in subjects.iter().enumerate() {
            let _ = writeln!(report, "  {i:>2} {}", who.label);
        }
        let width = rows
            .iter()
            .map(|r| r.0.len() + r.4.len() + 1)
            .max()
            .unwrap_or(0);
        let tens: String = (0..subjects.len())
            .map(|i| char::from(b'0' + (i / 10) as u8))
            .collect();
        let units: String = (0..subjects.len())
            .map(|i| char::from(b'0' + (i % 10) as u8))
            .collect();
        let _ = writeln!(report, "{:width$}  {tens}\n{:width$}  {units}", "", "");
        for (row, line) in rows.iter().zip(&grid) {
            let marks: String = line.iter().map(|c| c.mark()).collect();
            let _ = writeln!(report, "{:width$}  {marks}", format!("{} {}", row.0, row.4));
        }
        for list in [
            &table_errors,
            &problems,
            &audit_mismatches,
            &listing_leaks,
            &unlisted,
        ] {
            for p in list.iter().take(40) {
                let _ = writeln!(report, "{p}");
            }
            if list.len() > 40 {
                let _ = writeln!(report, "… and {} more like these", list.len() - 40);
            }
        }
        panic!("{summary}{report}");
    }
}

// ---------------------------------------------------------------------------------------------
// The router's routes against the policy table

/// The text of a call's arguments: `s` starts just after the opening parenthesis.
fn arguments(s: &str) -> Option<&str> {
    let mut depth = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The names called in `s` (an identifier directly followed by `(`).
fn calls(s: &str) -> Vec<&str> {
    let bytes = s.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if bytes.get(j) == Some(&b'(') {
                out.push(&s[start..i]);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The (method, route) pairs `router()` in `lib.rs` declares. axum cannot list its routes, so
/// the declaration is read, layout-independently (balanced parentheses, not line breaks); any
/// construct that would add routes this reading cannot see is refused outright.
fn served_routes(source: &str) -> Result<BTreeSet<(String, String)>, String> {
    let start = source
        .find("pub fn router(")
        .ok_or("lib.rs has no `pub fn router(`")?;
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").ok_or("router() has no end")?];
    for hidden in [
        ".nest(",
        ".nest_service(",
        ".merge(",
        ".fallback(",
        ".fallback_service(",
        ".route_service(",
    ] {
        if body.contains(hidden) {
            return Err(format!(
                "router() uses `{hidden}`, which adds routes this test cannot see; declare \
                 each route with `.route(…)` and give it a policy entry"
            ));
        }
    }
    let mut routes = BTreeSet::new();
    for (at, _) in body.match_indices(".route(") {
        let args = arguments(&body[at + ".route(".len()..]).ok_or("unbalanced .route(")?;
        let rest = args
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("a .route( whose path is not a literal: {args}"))?;
        let (path, handlers) = rest.split_once('"').ok_or("unterminated route path")?;
        let mut methods = Vec::new();
        for name in calls(handlers) {
            match name {
                "get" | "post" | "put" | "delete" | "patch" | "head" | "options" | "trace"
                | "connect" => methods.push(name.to_uppercase()),
                "any" | "on" | "any_service" | "on_service" | "get_service" | "post_service"
                | "put_service" | "delete_service" | "patch_service" => {
                    return Err(format!(
                        "route {path} uses `{name}(…)`, whose methods this test cannot list; \
                         name each method"
                    ));
                }
                _ => {}
            }
        }
        if methods.is_empty() {
            return Err(format!("route {path}: no method found in `{handlers}`"));
        }
        for m in methods {
            routes.insert((m, path.to_owned()));
        }
    }
    Ok(routes)
}

#[test]
fn the_router_serves_exactly_the_policy_routes() {
    let served = served_routes(include_str!("../src/lib.rs")).unwrap_or_else(|e| panic!("{e}"));
    assert!(served.len() >= 20, "parsed too few routes: {served:?}");
    let table: BTreeSet<(String, String)> = POLICY
        .iter()
        .map(|(m, r, _)| ((*m).to_owned(), (*r).to_owned()))
        .collect();
    assert_eq!(table.len(), POLICY.len(), "duplicate policy entries");
    let missing: Vec<String> = served
        .difference(&table)
        .map(|(m, r)| format!("{m} {r}"))
        .collect();
    let stale: Vec<String> = table
        .difference(&served)
        .map(|(m, r)| format!("{m} {r}"))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "the router and custos_server::policy::POLICY disagree\n  served without a policy \
         entry: {missing:?}\n  policy entries the router does not serve: {stale:?}"
    );
}

#[test]
fn the_route_reader_sees_every_layout() {
    let source = r#"
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/a", get(h::a))
        .route(
            "/b/{id}",
            get(h::b).post(h::c)
                .layer(DefaultBodyLimit::max(f(1))),
        )
        .route("/c", axum::routing::delete(h::get_thing))
        .route_layer(x)
}
"#;
    let got = served_routes(source).unwrap();
    let want: BTreeSet<(String, String)> = [
        ("GET", "/a"),
        ("GET", "/b/{id}"),
        ("POST", "/b/{id}"),
        ("DELETE", "/c"),
    ]
    .iter()
    .map(|(m, r)| ((*m).to_owned(), (*r).to_owned()))
    .collect();
    assert_eq!(got, want);
    let merged = source.replace(".route_layer(x)", ".merge(other())");
    assert!(served_routes(&merged).is_err());
    let any = source.replace("get(h::a)", "any(h::a)");
    assert!(served_routes(&any).is_err());
}

// ---------------------------------------------------------------------------------------------
// The published roles × resources table

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    Read,
    Write,
}

/// The resource groups of the published table, in its order.
const RESOURCES: &[&str] = &[
    "models",
    "predictions",
    "labels",
    "reference data",
    "profiles & data quality",
    "drift & reports",
    "performance",
    "monitoring config",
    "API tokens",
    "audit log",
    "users",
    "metrics",
    "alerts",
    "alert channels & deliveries",
    "rows",
    "token vault",
    "model data (erasure)",
];

/// Which resource a route reads or writes; `None` for signing out, which is not a resource.
/// A route that fits no group fails the doc test, so the table cannot silently miss it.
fn resource_of(method: &str, route: &str) -> Option<(&'static str, Access)> {
    let access = if method == "GET"
        || route == "/api/v1/audit/hash"
        || route == "/api/v1/models/{model}/reveal"
    {
        // Hashing a value to search the log with is part of reading the log; a reveal reads
        // originals out of the vault.
        Access::Read
    } else {
        Access::Write
    };
    let group = if route == "/ui/logout" {
        return None;
    } else if route.starts_with("/api/v1/users") {
        "users"
    } else if route.starts_with("/api/v1/tokens") {
        "API tokens"
    } else if route == "/metrics" {
        "metrics"
    } else if route.starts_with("/api/v1/alert-") {
        "alert channels & deliveries"
    } else if route.contains("/alerts") || route.ends_with("/silences") {
        "alerts"
    } else if route.ends_with("/events") {
        "rows"
    } else if route.ends_with("/reveal") || route.contains("/vault/") {
        "token vault"
    } else if route == "/api/v1/models/{model}/data" {
        "model data (erasure)"
    } else if route.starts_with("/api/v1/audit") || route.starts_with("/ui/audit") {
        "audit log"
    } else if route.ends_with("/predictions") {
        "predictions"
    } else if route.ends_with("/labels") {
        "labels"
    } else if route.ends_with("/reference") {
        "reference data"
    } else if route.contains("/monitoring")
        || route.ends_with("/lineage")
        || route.ends_with("/history")
    {
        "monitoring config"
    } else if route.ends_with("/volume")
        || route.ends_with("/profile")
        || route.ends_with("/quality")
    {
        "profiles & data quality"
    } else if route.ends_with("/drift")
        || route.ends_with("/report")
        || route == "/ui/models/{model}"
    {
        "drift & reports"
    } else if route.ends_with("/performance") {
        "performance"
    } else if ["/ui", "/api/v1/models", "/api/v1/models/{model}"].contains(&route) {
        "models"
    } else {
        panic!(
            "{method} {route} belongs to no resource group of the published table; add it to resource_of()"
        )
    };
    Some((group, access))
}

/// The roles × resources table (roles bound on `*`), from the policy table and the role grants.
fn resource_table() -> String {
    // Every route of a (resource, access) pair must need the same action, so that a cell means
    // one thing; and a role must be allowed all of them or none.
    let mut needs: BTreeMap<(&str, Access), BTreeSet<Action>> = BTreeMap::new();
    let mut routes: BTreeMap<(&str, Access), Vec<(Action, bool)>> = BTreeMap::new();
    for (method, route, requirement) in POLICY {
        let Requirement::Authenticated(action, param) = requirement else {
            continue;
        };
        let Some(key) = resource_of(method, route) else {
            continue;
        };
        assert!(RESOURCES.contains(&key.0), "{} is not in RESOURCES", key.0);
        needs.entry(key).or_default().insert(*action);
        routes
            .entry(key)
            .or_default()
            .push((*action, *param == ModelParam::Path));
    }
    let action_of = |key: (&str, Access)| -> Option<Action> {
        let set = needs.get(&key)?;
        assert_eq!(
            set.len(),
            1,
            "the {} {:?} routes need different actions {set:?}: split the group",
            key.0,
            key.1
        );
        set.iter().next().copied()
    };
    let name = |a: Option<Action>| a.map_or_else(String::new, |a| format!("`{}`", a.as_str()));
    let mut table = String::from("| resource | read needs | write needs |");
    for role in BuiltinRole::ALL {
        let _ = write!(table, " {} |", role.as_str());
    }
    table.push_str("\n|---|---|---|");
    for _ in BuiltinRole::ALL {
        table.push_str("---|");
    }
    for resource in RESOURCES {
        let (read, write) = (
            action_of((resource, Access::Read)),
            action_of((resource, Access::Write)),
        );
        if read.is_none() && write.is_none() {
            continue;
        }
        let _ = write!(table, "\n| {resource} | {} | {} |", name(read), name(write));
        for role in BuiltinRole::ALL {
            let p = Principal::User {
                id: "doc".into(),
                name: "doc".into(),
                grants: role.grants(&ModelScope::Any),
            };
            let may = |access: Access| {
                let verdicts: BTreeSet<bool> = routes
                    .get(&(*resource, access))
                    .into_iter()
                    .flatten()
                    .map(|(action, on_model)| {
                        p.allows(*action, on_model.then(|| model(IN_SCOPE)).as_ref())
                    })
                    .collect();
                assert!(
                    verdicts.len() <= 1,
                    "{} {resource} {access:?}: mixed",
                    role.as_str()
                );
                verdicts.contains(&true)
            };
            let cell = match (may(Access::Read), may(Access::Write)) {
                (true, true) => "R/W",
                (true, false) => "R",
                (false, true) => "W",
                (false, false) => "",
            };
            let _ = write!(table, " {cell} |");
        }
    }
    table
}

#[test]
fn access_doc_has_the_resource_table() {
    let table = resource_table();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ACCESS.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let header = table.lines().next().unwrap();
    let published: Vec<&str> = doc
        .lines()
        .skip_while(|l| *l != header)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(
        published.join("\n"),
        table,
        "docs/ACCESS.md must contain exactly this table:\n{table}"
    );
}
