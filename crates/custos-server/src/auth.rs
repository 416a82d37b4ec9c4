//! Authentication and the authorization choke point.
//!
//! Every request passes [`authorize`], a middleware that (1) finds the route's requirement in
//! [`crate::policy::POLICY`] — a route missing from the table is refused, (2) authenticates the
//! caller from a bearer credential or a web-session cookie, (3) asks
//! [`custos_core::Principal::allows`] whether the action is allowed on the model named in the
//! path, and (4) hands the handler an [`Authorized`] value. Handlers cannot obtain a principal
//! any other way, so no handler can forget a check. Failures and denials are audited here, in
//! one place.

use crate::context::RequestContext;
use crate::error::ApiError;
use crate::policy::{self, ModelParam, Requirement};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use custos_core::{
    Action, ActorType, AuditEvent, Grant, ModelName, Outcome, Principal, parse_grant,
};
use custos_crypto::token::{TokenPrefix, parse_token};
use custos_proto::ScopeSpec;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Meta key holding the hex keyed-hash of the bootstrap secret.
pub const BOOTSTRAP_HASH_META: &str = "bootstrap_token_hash";
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "custos_session";

/// Proof, for a handler, that the request passed the choke point.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// Who is asking.
    pub principal: Principal,
    /// The session id, for requests authenticated by a session cookie.
    pub session: Option<String>,
}

/// Which parts of a composite answer (the model page, a report) a caller may see beyond what
/// its route required. Decided here, beside the choke point, so that pages and reports cannot
/// disagree about it (the table is in `docs/ACCESS.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    /// Traffic volume and data quality (`profiles:read`).
    pub profiles: bool,
    /// Realized and estimated performance (`performance:read`).
    pub performance: bool,
    /// Alert states (`alerts:read`).
    pub alerts: bool,
}

impl Authorized {
    /// Whether the same principal may also do `action` on `model` (used to filter listings).
    pub fn allows(&self, action: Action, model: &ModelName) -> bool {
        self.principal.allows(action, Some(model))
    }

    /// The sections of `model`'s page or report this caller may see.
    pub fn sections(&self, model: &ModelName) -> Sections {
        Sections {
            profiles: self.allows(Action::ProfilesRead, model),
            performance: self.allows(Action::PerformanceRead, model),
            alerts: self.allows(Action::AlertsRead, model),
        }
    }
}

/// Turns a token's stored scopes back into grants. Unparseable scopes grant nothing.
pub fn grants_from_scopes(scopes: &[ScopeSpec]) -> Vec<Grant> {
    scopes
        .iter()
        .filter_map(|s| parse_grant(&s.action, &s.model).ok())
        .collect()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

/// Reads one cookie's value.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Why a credential was not accepted (kept server-side; the client always sees the same 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Not a Custos credential at all (bad format or checksum).
    Malformed,
    /// Well-formed but unknown.
    Unknown,
    /// Known but revoked.
    Revoked,
    /// Known but expired.
    Expired,
}

impl AuthFailure {
    fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
        }
    }
}

/// Checks a secret (API token or bootstrap secret) and returns who it belongs to.
pub async fn authenticate_secret(
    state: &AppState,
    secret: &str,
) -> Result<Result<Principal, AuthFailure>, ApiError> {
    if crate::oauth::looks_like_jwt(secret) {
        return crate::oauth::authenticate_jwt(state, secret).await;
    }
    let Ok(prefix) = parse_token(secret) else {
        return Ok(Err(AuthFailure::Malformed));
    };
    let hash = state.keys.token_hasher().hash(secret);
    match prefix {
        TokenPrefix::Bootstrap => {
            let stored = state.store.get_meta(BOOTSTRAP_HASH_META).await?;
            let matches = stored
                .and_then(|h| hex::decode(h).ok())
                .is_some_and(|h| custos_crypto::token::constant_time_eq(&h, &hash));
            Ok(if matches {
                Ok(Principal::Bootstrap)
            } else {
                Err(AuthFailure::Unknown)
            })
        }
        TokenPrefix::Api => {
            let Some(row) = state.store.find_token_by_hash(&hash).await? else {
                return Ok(Err(AuthFailure::Unknown));
            };
            let now = state.clock.now();
            if row.revoked_at.is_some() {
                return Ok(Err(AuthFailure::Revoked));
            }
            if row.expires_at <= now {
                return Ok(Err(AuthFailure::Expired));
            }
            let scopes: Vec<ScopeSpec> = serde_json::from_str(&row.scopes_json)
                .map_err(|_| ApiError::internal("stored token scopes are unreadable"))?;
            state.touch_token_later(row.id.clone());
            Ok(Ok(Principal::Token {
                id: row.id,
                grants: grants_from_scopes(&scopes),
            }))
        }
    }
}

/// A small fixed-window counter of failed authentications per client address, so that guessing
/// credentials (and flooding the audit log with failures) is throttled. Bounded in memory.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const FAILURE_LIMITER_KEYS: usize = 100_000;

impl FailureLimiter {
    /// Whether `ip` has used up its failures for the current window.
    pub fn blocked(&self, ip: Option<IpAddr>, limit: u32) -> bool {
        let Some(ip) = ip else { return false };
        let Ok(windows) = self.windows.lock() else {
            return false;
        };
        windows
            .get(&ip)
            .is_some_and(|(start, n)| start.elapsed() < FAILURE_WINDOW && *n >= limit)
    }

    /// Records one failure.
    pub fn record(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if windows.len() >= FAILURE_LIMITER_KEYS {
            windows.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
            if windows.len() >= FAILURE_LIMITER_KEYS {
                windows.clear();
            }
        }
        let entry = windows.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Who an audit record names as acting.
#[derive(Debug, Clone)]
pub struct Actor {
    /// A token id, `bootstrap`, `system` or `anonymous`.
    pub id: String,
    /// The kind of actor.
    pub kind: ActorType,
}

impl Actor {
    /// The actor behind an authenticated principal.
    pub fn of(principal: &Principal) -> Self {
        let kind = match principal {
            Principal::Bootstrap => ActorType::Bootstrap,
            Principal::Token { .. } => ActorType::Token,
            Principal::User { .. } => ActorType::User,
            Principal::Service { .. } => ActorType::Service,
        };
        Self {
            id: principal.actor_id(),
            kind,
        }
    }

    /// Nobody identified (a failed authentication).
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".into(),
            kind: ActorType::Anonymous,
        }
    }
}

/// Builds an audit record of a request. Every request-driven audit record is made here, so the
/// fields that tie it to the request (time, address, user agent, request id) are always filled.
pub fn audit_event(
    state: &AppState,
    ctx: &RequestContext,
    actor: Actor,
    action: &str,
    resource: String,
    outcome: Outcome,
    detail: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        time: state.clock.now(),
        actor: actor.id,
        actor_type: actor.kind,
        source_ip: ctx.client_ip.map(|ip| ip.to_string()),
        user_agent: ctx.user_agent.clone(),
        request_id: Some(ctx.request_id.clone()),
        action: action.to_owned(),
        resource,
        outcome,
        // Refusals are answered by the choke point with a known status; a change's record is
        // written before its answer exists, so its status stays unset there.
        status: match outcome {
            Outcome::Denied => Some(403),
            Outcome::Failure | Outcome::Success => None,
        },
        detail,
    }
}

/// Builds an audit event for an authorized request (used by handlers that change things).
pub fn audit_for(
    state: &AppState,
    ctx: &RequestContext,
    who: &Authorized,
    action: &str,
    resource: String,
    detail: serde_json::Value,
) -> AuditEvent {
    audit_event(
        state,
        ctx,
        Actor::of(&who.principal),
        action,
        resource,
        Outcome::Success,
        detail,
    )
}

fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Whether a state-changing request comes, by the browser's own account (`Sec-Fetch-Site`),
/// from another origin. Requests without the header (older browsers, programs) are left to the
/// `SameSite=Strict` cookie and the forms' CSRF tokens; `none` is a navigation the person typed.
fn cross_site_write(method: &axum::http::Method, headers: &HeaderMap) -> bool {
    let safe = matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    !safe
        && headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|site| !matches!(site, "same-origin" | "none"))
}

/// The choke point (see the module docs).
pub async fn authorize(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let ctx = request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(|| RequestContext {
            request_id: crate::context::current_request_id().unwrap_or_default(),
            client_ip: None,
            user_agent: None,
        });
    let Some(route) = matched.as_ref().map(MatchedPath::as_str) else {
        // No route matched: let the router answer 404/405 without touching credentials.
        return next.run(request).await;
    };
    let requirement = policy::requirement(request.method(), route);
    // Sign-in is public, so its budget (per address) is spent before the public early return
    // and before any credential work. `crate::limits` decides which budget a request spends.
    if let Some(refused) =
        crate::limits::admit_anonymous(&state, &ctx, request.method(), route).await
    {
        return refused;
    }
    let (action, model_param) = match requirement {
        Some(Requirement::Public) => return next.run(request).await,
        Some(Requirement::Authenticated(action, model_param)) => (Some(action), model_param),
        Some(Requirement::SignedIn) => (None, ModelParam::None),
        None => {
            let listed = policy::methods_of(route);
            if !listed.is_empty() {
                // A known route asked with another method (a scanner, a typo): the router
                // would answer 405 too; nothing here is a misconfiguration worth an error.
                let mut response = ApiError::method_not_allowed().into_response();
                if let Ok(allow) = axum::http::HeaderValue::from_str(&listed.join(", ")) {
                    response.headers_mut().insert(header::ALLOW, allow);
                }
                return response;
            }
            // Deny by default: a route that nobody put in the policy table is not reachable.
            tracing::error!(route, "route missing from the policy table; refused");
            return ApiError::forbidden().into_response();
        }
    };
    let limit = state.config.limits.auth_failures_per_minute;
    if state.failures.blocked(ctx.client_ip, limit) {
        return ApiError::rate_limited(60).into_response();
    }

    let ui = is_ui(route);
    let (principal, session) = if let Some(secret) = bearer(request.headers()) {
        match authenticate_secret(&state, secret).await {
            Ok(Ok(p)) => (p, None),
            Ok(Err(failure)) => {
                let credential = state.keys.audit_hasher().tag(secret);
                return reject(&state, &ctx, route, failure, &credential, ui).await;
            }
            Err(e) => return e.into_response(),
        }
    } else if let Some(session_id) = cookie(request.headers(), SESSION_COOKIE) {
        if cross_site_write(request.method(), request.headers()) {
            // Forms carry CSRF tokens and the cookie is SameSite=Strict; this refuses what a
            // browser itself marks as coming from another site, for the JSON API too.
            let event = audit_event(
                &state,
                &ctx,
                Actor::anonymous(),
                "auth.cross_site",
                route.to_owned(),
                Outcome::Denied,
                serde_json::json!({ "method": request.method().as_str() }),
            );
            if let Err(e) = state.store.append_audit(&event).await {
                tracing::error!(error = %e, "audit append failed for a cross-site refusal");
            }
            return ApiError::forbidden_because(
                "a request from another site cannot use a web session",
            )
            .into_response();
        }
        match state.sessions.lookup(session_id, state.clock.now()) {
            crate::sessions::Lookup::Live(p) => (p, Some(session_id.to_owned())),
            other => {
                if let crate::sessions::Lookup::Expired(principal) = other {
                    // Best effort: the request is refused either way, so a failed record
                    // changes nothing and must not turn the refusal into an error.
                    let event = audit_event(
                        &state,
                        &ctx,
                        Actor::of(&principal),
                        "auth.session_expired",
                        "ui".into(),
                        Outcome::Success,
                        serde_json::json!({}),
                    );
                    if let Err(e) = state.store.append_audit(&event).await {
                        tracing::error!(error = %e, "audit append failed for a session expiry");
                    }
                }
                if ui {
                    return Redirect::to("/ui/login").into_response();
                }
                return ApiError::unauthenticated().into_response();
            }
        }
    } else if let Some(cert) = request
        .extensions()
        .get::<crate::tls::ClientCertIdentity>()
        .filter(|_| !ui)
    {
        // A verified client certificate is a machine credential, for the API only: a browser
        // would present it on every cross-site request, like a cookie without CSRF protection.
        match crate::tls::service_principal(&state.config, cert) {
            Some(p) => (p, None),
            None => return crate::tls::reject_unmapped(&state, &ctx, route, cert).await,
        }
    } else if ui {
        return Redirect::to("/ui/login").into_response();
    } else {
        return ApiError::unauthenticated().into_response();
    };

    // Budgets per principal and per address, before the policy decision so that a flood of
    // denied requests is throttled too and does not become a flood of `authz.deny` records.
    if let Some(refused) = crate::limits::admit(&state, &ctx, route, action, &principal).await {
        return refused;
    }
    let model = match model_param {
        ModelParam::None => None,
        ModelParam::Path => match model_from_path(request.uri().path(), route) {
            Some(Ok(m)) => Some(m),
            // A malformed name cannot name any model: not found, whoever asks.
            Some(Err(_)) | None => return ApiError::not_found("model").into_response(),
        },
    };
    if let Some(action) = action
        && !principal.allows(action, model.as_ref())
    {
        let resource = model
            .as_ref()
            .map_or_else(|| route.to_owned(), |m| format!("model/{m}"));
        let event = audit_event(
            &state,
            &ctx,
            Actor::of(&principal),
            "authz.deny",
            resource,
            Outcome::Denied,
            serde_json::json!({ "required": action.as_str(), "route": route }),
        );
        if let Err(e) = state.store.append_audit(&event).await {
            tracing::error!(error = %e, "audit append failed for a denial");
        }
        return ApiError::forbidden().into_response();
    }
    request
        .extensions_mut()
        .insert(Authorized { principal, session });
    next.run(request).await
}

async fn reject(
    state: &AppState,
    ctx: &RequestContext,
    route: &str,
    failure: AuthFailure,
    credential_hmac: &str,
    ui: bool,
) -> Response {
    state.failures.record(ctx.client_ip);
    let event = audit_event(
        state,
        ctx,
        Actor::anonymous(),
        "auth.bearer",
        route.to_owned(),
        Outcome::Failure,
        serde_json::json!({ "reason": failure.as_str(), "credential_hmac": credential_hmac }),
    );
    let event = AuditEvent {
        status: Some(401),
        ..event
    };
    if let Err(e) = state.store.append_audit(&event).await {
        tracing::error!(error = %e, "audit append failed for an authentication failure");
    }
    if ui {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/login")]).into_response();
    }
    ApiError::unauthenticated().into_response()
}

/// Why a web sign-in did not open a session.
#[derive(Debug)]
pub enum SignInError {
    /// Too many failures from this address; try again later.
    Throttled,
    /// The secret was not accepted (unknown, revoked, expired, malformed, or an API token).
    Rejected,
    /// The attempt could not be checked or recorded.
    Internal(ApiError),
}

/// A person signing in to the web UI with a secret. Throttling, the refusal of API tokens and
/// the audit record live here, beside the bearer path, so the UI handler makes no security
/// decision of its own. Fail closed: a sign-in that cannot be recorded does not happen.
pub async fn sign_in(
    state: &AppState,
    ctx: &RequestContext,
    secret: &str,
) -> Result<Principal, SignInError> {
    if state
        .failures
        .blocked(ctx.client_ip, state.config.limits.auth_failures_per_minute)
    {
        return Err(SignInError::Throttled);
    }
    let result = match authenticate_secret(state, secret.trim()).await {
        // API tokens are machine credentials: a web session would cache their grants past a
        // revocation. People sign in with a password (`crate::local_users`) or this secret.
        Ok(Ok(Principal::Token { .. })) => Err(AuthFailure::Unknown),
        Ok(r) => r,
        Err(e) => return Err(SignInError::Internal(e)),
    };
    let (actor, outcome, reason) = match &result {
        Ok(p) => (Actor::of(p), Outcome::Success, None),
        Err(f) => (Actor::anonymous(), Outcome::Failure, Some(f.as_str())),
    };
    let event = audit_event(
        state,
        ctx,
        actor,
        "auth.login",
        "ui".into(),
        outcome,
        serde_json::json!({
            "method": "secret",
            "reason": reason,
            // Only a failed secret is worth matching later; a good one is never recorded.
            "credential_hmac": result.is_err().then(|| state.keys.audit_hasher().tag(secret.trim())),
        }),
    );
    if let Err(e) = state.store.append_audit(&event).await {
        return Err(SignInError::Internal(ApiError::internal(format!(
            "audit append failed: {e}"
        ))));
    }
    result.map_err(|_| {
        state.failures.record(ctx.client_ip);
        SignInError::Rejected
    })
}

/// Extracts the `{model}` segment by aligning the concrete path with the route template.
fn model_from_path(path: &str, route: &str) -> Option<Result<ModelName, custos_core::NameError>> {
    let position = route.split('/').position(|segment| segment == "{model}")?;
    let raw = path.split('/').nth(position)?;
    Some(ModelName::parse(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_segment() {
        let m = model_from_path(
            "/api/v1/models/fraud-v3/predictions",
            "/api/v1/models/{model}/predictions",
        );
        assert_eq!(m.unwrap().unwrap().as_str(), "fraud-v3");
        assert!(model_from_path("/api/v1/models", "/api/v1/models").is_none());
    }

    #[test]
    fn limiter_blocks_after_limit() {
        let l = FailureLimiter::default();
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..3 {
            assert!(!l.blocked(ip, 3));
            l.record(ip);
        }
        assert!(l.blocked(ip, 3));
        assert!(!l.blocked(Some(IpAddr::from([127, 0, 0, 2])), 3));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; custos_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
