//! OAuth 2.0 for integrations: the client-credentials token endpoint (a service account's API
//! token is the client secret; the answer is a short-lived EdDSA-signed JWT), the JWKS that
//! publishes the signing key, and the acceptance of JWT access tokens — Custos's own and those of
//! the organization's identity provider (checked against its JWKS, issuer, audience, expiry and
//! pinned algorithms, with its scopes mapped to Custos grants).
//!
//! Owns token issuance and JWT verification only. The decision stays at the choke point: a
//! verified JWT becomes a `Principal` with explicit grants and nothing else; an unknown issuer,
//! a missing claim or an unknown scope grants nothing. Custos's own JWTs also re-check the API
//! token they were issued for, so revoking it takes effect on the next request.

use crate::auth::{AuthFailure, grants_from_scopes};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custos_core::{Grant, ModelScope, Principal, parse_grant};
use custos_proto::ScopeSpec;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Custos's own `aud` and, by default, `iss`.
const AUDIENCE: &str = "custos";
/// How long fetched IdP keys are trusted before they are fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// At most one refetch per issuer in this interval (an unknown `kid` must not make every request
/// call the IdP).
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);

/// One identity provider whose access tokens Custos accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The exact `iss` value.
    pub issuer: String,
    /// The `aud` the token must carry.
    pub audience: String,
    /// Where its public keys are (`https://`, or `http://` to a loopback address).
    pub jwks_url: String,
    /// Accepted algorithms (pinned; default RS256, ES256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// IdP scope → Custos grants (`{ action, model }`); unknown scopes grant nothing.
    #[serde(default)]
    pub scope_grants: HashMap<String, Vec<ScopeSpec>>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

/// `[oauth]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OauthConfig {
    /// Lifetime of the access tokens Custos issues (1–60 minutes).
    pub access_token_minutes: u32,
    /// The `iss` of Custos's own tokens.
    pub issuer: String,
    /// Identity providers whose access tokens are accepted.
    pub trusted_issuers: Vec<TrustedIssuer>,
}

impl Default for OauthConfig {
    fn default() -> Self {
        Self {
            access_token_minutes: 5,
            issuer: "custos".into(),
            trusted_issuers: Vec::new(),
        }
    }
}

pub(crate) fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

impl OauthConfig {
    /// Checks the settings; `HS*` algorithms are refused for IdPs (a shared secret would let
    /// anyone holding the JWKS mint tokens).
    pub fn check(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.access_token_minutes) {
            return Err("oauth.access_token_minutes must lie between 1 and 60".into());
        }
        for issuer in &self.trusted_issuers {
            if issuer.issuer == self.issuer {
                return Err("an oauth.trusted_issuers entry reuses Custos's own issuer".into());
            }
            if issuer.algorithms.is_empty()
                || issuer
                    .algorithms
                    .iter()
                    .any(|a| parse_algorithm(a).is_none())
            {
                return Err(format!(
                    "oauth issuer {}: algorithms must be among RS256, RS384, RS512, PS256, ES256, \
                     ES384, EdDSA",
                    issuer.issuer
                ));
            }
            let url = reqwest::Url::parse(&issuer.jwks_url)
                .map_err(|_| format!("oauth issuer {}: jwks_url is not a URL", issuer.issuer))?;
            let loopback = url
                .host_str()
                .and_then(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback());
            if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                return Err(format!(
                    "oauth issuer {}: jwks_url must be https (http only to a loopback address)",
                    issuer.issuer
                ));
            }
            for (scope, specs) in &issuer.scope_grants {
                for spec in specs {
                    parse_grant(&spec.action, &spec.model)
                        .map_err(|e| format!("oauth scope {scope}: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// The claims of an access token Custos issues.
#[derive(Debug, Serialize, Deserialize)]
struct CustosClaims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    /// Space-separated `action@model` items, as OAuth clients expect a `scope`.
    scope: String,
}

/// The claims Custos reads from an IdP's token.
#[derive(Debug, Deserialize)]
struct IdpClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

/// Custos's signing key for access tokens (Ed25519, from a stored secret).
pub struct OauthKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_x: String,
    kid: String,
    jwks: Mutex<HashMap<String, (Instant, Option<jsonwebtoken::jwk::JwkSet>)>>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for OauthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl OauthKeys {
    /// Keys from the stored seed.
    pub fn new(seed: &[u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = signing.verifying_key().to_bytes();
        let mut der = zeroize::Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&ED25519_PKCS8_PREFIX);
        der.extend_from_slice(seed);
        let public_x = URL_SAFE_NO_PAD.encode(public);
        // The verifier takes the raw 32-byte public key.
        let decoding = DecodingKey::from_ed_der(&public);
        let kid = hex::encode(
            <sha2::Sha256 as sha2::Digest>::digest(public)
                .get(..8)
                .unwrap_or_default(),
        );
        // No redirects (a JWKS URL must not bounce Custos elsewhere), a short timeout.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| tracing::error!(error = %e, "no HTTP client for JWKS fetches"))
            .ok();
        Self {
            encoding: EncodingKey::from_ed_der(&der),
            decoding,
            public_x,
            kid,
            jwks: Mutex::new(HashMap::new()),
            http,
        }
    }

    /// The public key as a JWK set.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": self.public_x,
            "kid": self.kid, "alg": "EdDSA", "use": "sig",
        }]})
    }
}

/// One grant as `action@model` (`*` for every model): the form of access-token scopes and of
/// `GET /api/v1/whoami`.
pub(crate) fn grant_text(grant: &Grant) -> String {
    match &grant.model {
        ModelScope::Any => format!("{}@*", grant.action.as_str()),
        ModelScope::Named(m) => format!("{}@{m}", grant.action.as_str()),
    }
}

fn scope_string(grants: &[Grant]) -> String {
    grants.iter().map(grant_text).collect::<Vec<_>>().join(" ")
}

fn parse_scope_string(text: &str) -> Option<Vec<Grant>> {
    text.split_whitespace()
        .map(|item| {
            let (action, model) = item.split_once('@')?;
            parse_grant(action, model).ok()
        })
        .collect()
}

/// A token-endpoint error as RFC 6749 §5.2 shapes it.
fn oauth_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        serde_json::json!({ "error": code }).to_string(),
    )
        .into_response()
}

/// The token request (form-encoded).
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `POST /oauth/token`: client credentials → a short-lived access token. The client is an API
/// token (`client_id` = its id, `client_secret` = its secret, by HTTP Basic or in the form);
/// `scope` may narrow its grants, never widen them. Every issuance and refusal is audited.
pub async fn token(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<crate::context::RequestContext>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    if request.grant_type != "client_credentials" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let credentials = basic_credentials(&headers)
        .or_else(|| request.client_id.clone().zip(request.client_secret.clone()));
    let Some((client_id, secret)) = credentials else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    // The client secret is an API token; an access token cannot mint its own successor.
    if looks_like_jwt(&secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if state
        .failures
        .blocked(ctx.client_ip, state.config.limits.auth_failures_per_minute)
    {
        return ApiError::rate_limited(60).into_response();
    }
    let principal = match crate::auth::authenticate_secret(&state, &secret).await {
        Ok(Ok(p @ Principal::Token { .. })) if p.actor_id() == client_id => p,
        Ok(_) => {
            state.failures.record(ctx.client_ip);
            let event = crate::auth::audit_event(
                &state,
                &ctx,
                crate::auth::Actor::anonymous(),
                "oauth.token",
                format!("token/{}", client_id.chars().take(40).collect::<String>()),
                custos_core::Outcome::Failure,
                serde_json::json!({
                    "reason": "invalid_client",
                    "credential_hmac": state.keys.audit_hasher().tag(&secret),
                }),
            );
            if let Err(e) = state.store.append_audit(&event).await {
                tracing::error!(error = %e, "audit append failed for a refused token request");
            }
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        Err(e) => return e.into_response(),
    };
    let held = match &principal {
        Principal::Token { grants, .. } => grants.clone(),
        _ => Vec::new(),
    };
    let grants = match request.scope.as_deref() {
        None | Some("") => held,
        Some(text) => match parse_scope_string(text) {
            Some(asked) if asked.iter().all(|g| principal.can_delegate(g)) => asked,
            _ => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope"),
        },
    };
    let now = state.clock.now().timestamp();
    let minutes = i64::from(state.config.oauth.access_token_minutes);
    let claims = CustosClaims {
        iss: state.config.oauth.issuer.clone(),
        aud: AUDIENCE.into(),
        sub: client_id.clone(),
        iat: now,
        nbf: now,
        exp: now + minutes * 60,
        jti: crate::context::random_id(),
        scope: scope_string(&grants),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(state.oauth.kid.clone());
    let Ok(jwt) = jsonwebtoken::encode(&header, &claims, &state.oauth.encoding) else {
        return ApiError::internal("signing the access token failed").into_response();
    };
    let event = crate::auth::audit_event(
        &state,
        &ctx,
        crate::auth::Actor::of(&principal),
        "oauth.token",
        format!("token/{client_id}"),
        custos_core::Outcome::Success,
        serde_json::json!({ "jti": claims.jti, "scope": claims.scope, "expires_in": minutes * 60 }),
    );
    if let Err(e) = state.store.append_audit(&event).await {
        tracing::error!(error = %e, "audit append failed; access token withheld");
        return ApiError::unavailable("the audit log cannot be written").into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        serde_json::json!({
            "access_token": jwt,
            "token_type": "Bearer",
            "expires_in": minutes * 60,
            "scope": claims.scope,
        })
        .to_string(),
    )
        .into_response()
}

/// `GET /oauth/jwks`: the public key Custos's access tokens verify with.
pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.oauth.jwks().to_string(),
    )
        .into_response()
}

/// Whether a bearer value is shaped like a JWT (three base64url parts, a JSON header).
pub fn looks_like_jwt(value: &str) -> bool {
    value.starts_with("eyJ") && value.split('.').count() == 3
}

fn validation(algorithms: Vec<Algorithm>, issuer: &str, audience: &str) -> Validation {
    let Some(first) = algorithms.first().copied() else {
        return Validation::new(Algorithm::EdDSA);
    };
    let mut v = Validation::new(first);
    v.algorithms = algorithms;
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Lifetimes are checked against the server's clock (see `within_lifetime`), the one every
    // other expiry in Custos uses; the library's own check reads the system time.
    v.validate_exp = false;
    v.validate_nbf = false;
    v
}

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 30;

fn within_lifetime(state: &AppState, exp: i64, nbf: Option<i64>) -> bool {
    let now = state.clock.now().timestamp();
    exp + LEEWAY_SECONDS > now && nbf.is_none_or(|nbf| nbf - LEEWAY_SECONDS <= now)
}

/// Authenticates a JWT bearer: Custos's own (and its API token still live) or a trusted IdP's.
pub async fn authenticate_jwt(
    state: &AppState,
    jwt: &str,
) -> Result<Result<Principal, AuthFailure>, ApiError> {
    let Ok(header) = jsonwebtoken::decode_header(jwt) else {
        return Ok(Err(AuthFailure::Malformed));
    };
    // The issuer picks the key; read it without trusting anything else yet.
    let Some(issuer) = unverified_issuer(jwt) else {
        return Ok(Err(AuthFailure::Malformed));
    };
    let config = &state.config.oauth;
    if issuer == config.issuer {
        let v = validation(vec![Algorithm::EdDSA], &config.issuer, AUDIENCE);
        let Ok(data) = jsonwebtoken::decode::<CustosClaims>(jwt, &state.oauth.decoding, &v) else {
            return Ok(Err(AuthFailure::Unknown));
        };
        if !within_lifetime(state, data.claims.exp, Some(data.claims.nbf)) {
            return Ok(Err(AuthFailure::Expired));
        }
        // The API token behind it must still be live: revocation is immediate.
        let live = state.store.list_tokens().await?.into_iter().any(|t| {
            t.id == data.claims.sub && t.revoked_at.is_none() && t.expires_at > state.clock.now()
        });
        if !live {
            return Ok(Err(AuthFailure::Revoked));
        }
        let Some(grants) = parse_scope_string(&data.claims.scope) else {
            return Ok(Err(AuthFailure::Malformed));
        };
        return Ok(Ok(Principal::Token {
            id: data.claims.sub,
            grants,
        }));
    }
    let Some(trusted) = config.trusted_issuers.iter().find(|t| t.issuer == issuer) else {
        return Ok(Err(AuthFailure::Unknown));
    };
    let algorithms: Vec<Algorithm> = trusted
        .algorithms
        .iter()
        .filter_map(|a| parse_algorithm(a))
        .collect();
    if !algorithms.contains(&header.alg) {
        return Ok(Err(AuthFailure::Malformed));
    }
    let Some(key) = idp_key(state, trusted, header.kid.as_deref()).await else {
        return Ok(Err(AuthFailure::Unknown));
    };
    let v = validation(algorithms, &trusted.issuer, &trusted.audience);
    let Ok(data) = jsonwebtoken::decode::<IdpClaims>(jwt, &key, &v) else {
        return Ok(Err(AuthFailure::Unknown));
    };
    if !within_lifetime(state, data.claims.exp, data.claims.nbf) {
        return Ok(Err(AuthFailure::Expired));
    }
    let scopes: Vec<String> = match (data.claims.scope, data.claims.scp) {
        (Some(s), _) => s.split_whitespace().map(str::to_owned).collect(),
        (None, Some(list)) => list,
        (None, None) => Vec::new(),
    };
    let mut specs = Vec::new();
    for scope in &scopes {
        if let Some(mapped) = trusted.scope_grants.get(scope) {
            specs.extend(mapped.iter().cloned());
        }
    }
    Ok(Ok(Principal::Token {
        id: format!(
            "jwt:{}#{}",
            trusted.issuer,
            data.claims.sub.chars().take(128).collect::<String>()
        ),
        grants: grants_from_scopes(&specs),
    }))
}

fn unverified_issuer(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_owned)
}

/// The IdP key for `kid`, from a cached JWKS (refetched when stale or when the kid is unknown,
/// at most once per `JWKS_MIN_REFETCH`).
async fn idp_key(
    state: &AppState,
    issuer: &TrustedIssuer,
    kid: Option<&str>,
) -> Option<DecodingKey> {
    let find = |set: &jsonwebtoken::jwk::JwkSet| -> Option<DecodingKey> {
        let jwk = match kid {
            Some(kid) => set.find(kid)?,
            None if set.keys.len() == 1 => set.keys.first()?,
            None => return None,
        };
        DecodingKey::from_jwk(jwk).ok()
    };
    let cached = state
        .oauth
        .jwks
        .lock()
        .ok()
        .and_then(|m| m.get(&issuer.issuer).cloned());
    if let Some((fetched, Some(set))) = &cached
        && fetched.elapsed() < JWKS_TTL
        && let Some(key) = find(set)
    {
        return Some(key);
    }
    if let Some((fetched, _)) = &cached
        && fetched.elapsed() < JWKS_MIN_REFETCH
    {
        return None;
    }
    let Some(http) = &state.oauth.http else {
        return None;
    };
    let set = match http.get(&issuer.jwks_url).send().await {
        Ok(r) if r.status().is_success() => r.json::<jsonwebtoken::jwk::JwkSet>().await.ok(),
        Ok(r) => {
            tracing::warn!(issuer = %issuer.issuer, status = %r.status(), "JWKS fetch refused");
            None
        }
        Err(e) => {
            tracing::warn!(issuer = %issuer.issuer, error = %e, "JWKS fetch failed");
            None
        }
    };
    if let Ok(mut m) = state.oauth.jwks.lock() {
        m.insert(issuer.issuer.clone(), (Instant::now(), set.clone()));
    }
    set.as_ref().and_then(find)
}
