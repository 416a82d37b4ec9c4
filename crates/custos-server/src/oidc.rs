//! OpenID Connect single sign-on for the web UI: the `[oidc]` configuration, the
//! authorization-code flow with PKCE (S256), `state` and `nonce`, the ID-token check against the
//! provider's JWKS, and the group → role mapping applied afresh at every sign-in.
//!
//! Owns the two public routes of the flow and nothing else of the session machinery:
//! - `GET /ui/oidc/start` remembers a pending sign-in (state, nonce, PKCE verifier, and a random
//!   browser binding also set as a `SameSite=Lax` cookie) and redirects to the provider;
//! - `GET /ui/oidc/callback` accepts the provider's answer only once, only in the browser that
//!   started it and only within ten minutes; it exchanges the code (client secret from a file,
//!   read at each exchange so it can be rotated without a restart, plus the PKCE verifier),
//!   checks the ID token (signature with a pinned algorithm and a key from the provider's JWKS,
//!   `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`), reads the groups from the ID token or, when
//!   it carries none, from the userinfo endpoint (whose `sub` must match), maps them to role
//!   bindings and opens a session. Every outcome is audited through the one audit path before
//!   the answer; a sign-in that cannot be recorded does not happen.
//!
//! The session cookie is `SameSite=Strict`, so a browser does not send it on the navigation that
//! follows a cross-site redirect chain: the callback therefore answers with a page that moves on
//! to `/ui` itself (a same-site navigation) instead of a redirect.
//!
//! Built on `jsonwebtoken` and `reqwest`, which Custos already uses for OAuth access tokens,
//! rather than the `openidconnect` crate: that crate pulls `rsa` 0.9 (RUSTSEC-2023-0071), a
//! second `reqwest` and a second TLS provider, and the checks it would add over this module are
//! the ones written out here.
//!
//! Outgoing requests follow no redirects, go only to the endpoints of the discovery document of
//! the configured issuer, use TLS (plain HTTP only to a loopback address with
//! `allow_plaintext_loopback`, for tests) and read bounded answers.

use crate::auth::{Actor, audit_event, cookie};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::group_roles::{self, GroupRoles};
use crate::state::AppState;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use custos_core::{ActorType, Outcome, Principal, grants_of};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use maud::{DOCTYPE, html};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The cookie that ties a callback to the browser that started the sign-in.
const BINDING_COOKIE: &str = "custos_oidc";
/// How long a started sign-in may take.
const PENDING_SECONDS: i64 = 600;
/// Most sign-ins in progress at once; beyond it the oldest is forgotten.
const MAX_PENDING: usize = 10_000;
/// How long the discovery document is trusted before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long the provider's keys are trusted before they are fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// At most one key refetch in this interval, so an unknown `kid` cannot make every callback
/// call the provider.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY_SECONDS: i64 = 60;
/// An ID token issued longer ago than this is refused (a code is exchanged at once).
const MAX_ID_TOKEN_AGE_SECONDS: i64 = 600;
/// Largest answer read from the provider.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Most groups read for one person; more is refused rather than cut short, since a truncated
/// list could silently drop a role.
const MAX_GROUPS: usize = 1_000;
/// Longest display name kept.
const MAX_NAME_CHARS: usize = 128;

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "groups".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

fn default_timeout_seconds() -> u64 {
    10
}

fn default_display_name() -> String {
    "single sign-on".into()
}

/// `[oidc]`: sign-in through the organization's OpenID provider.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer, exactly as its discovery document and ID tokens state it.
    pub issuer: String,
    /// Custos's client id at the provider.
    pub client_id: String,
    /// File holding the client secret (never the secret itself in the config).
    pub client_secret_file: PathBuf,
    /// The callback URL registered at the provider: Custos's public address followed by
    /// `/ui/oidc/callback`.
    pub redirect_url: String,
    /// Scopes to request; must include `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim (in the ID token or the userinfo answer) that lists the person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group name (matched without regard to ASCII case) → the role bindings it gives.
    pub group_roles: GroupRoles,
    /// Accepted ID-token signature algorithms (pinned).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Shown on the sign-in page: "Sign in with …".
    #[serde(default = "default_display_name")]
    pub display_name: String,
    /// PEM file of the certificate(s) to trust for the provider; the system roots without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Allow an `http://` issuer when its host is a loopback IP address (tests only).
    #[serde(default)]
    pub allow_plaintext_loopback: bool,
    /// Longest one request to the provider may take, in seconds.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

impl OidcConfig {
    /// Checks what can be checked without the provider or the files.
    pub fn check(&self) -> Result<(), String> {
        let issuer = Url::parse(&self.issuer).map_err(|_| "oidc.issuer is not a URL")?;
        self.url_allowed(&issuer)
            .map_err(|e| format!("oidc.issuer: {e}"))?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err("oidc.issuer must have no query or fragment".into());
        }
        let redirect =
            Url::parse(&self.redirect_url).map_err(|_| "oidc.redirect_url is not a URL")?;
        let local = redirect
            .host_str()
            .and_then(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if redirect.scheme() != "https" && !(redirect.scheme() == "http" && local) {
            return Err(
                "oidc.redirect_url must be https:// (http:// only to a loopback address)".into(),
            );
        }
        if !redirect.path().ends_with("/ui/oidc/callback") || redirect.query().is_some() {
            return Err("oidc.redirect_url must end with /ui/oidc/callback".into());
        }
        if self.client_id.trim().is_empty() || self.client_id.len() > 256 {
            return Err("oidc.client_id is empty or too long".into());
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err("oidc.scopes must include \"openid\"".into());
        }
        if self
            .scopes
            .iter()
            .any(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && c != '"'))
        {
            return Err("oidc.scopes: each scope is one word of visible ASCII".into());
        }
        if self.groups_claim.trim().is_empty() {
            return Err("oidc.groups_claim is empty".into());
        }
        if self.algorithms.is_empty()
            || self
                .algorithms
                .iter()
                .any(|a| crate::oauth::parse_algorithm(a).is_none())
        {
            return Err(
                "oidc.algorithms must be among RS256, RS384, RS512, PS256, ES256, ES384, EdDSA"
                    .into(),
            );
        }
        if self.display_name.trim().is_empty() || self.display_name.chars().count() > 64 {
            return Err("oidc.display_name must have 1 to 64 characters".into());
        }
        if !(1..=60).contains(&self.timeout_seconds) {
            return Err("oidc.timeout_seconds must lie in 1..=60".into());
        }
        group_roles::check("oidc", &self.group_roles)
    }

    /// [`OidcConfig::check`] plus the files it names, so a mistake shows at start rather than
    /// at the first sign-in.
    pub fn check_files(&self) -> Result<(), String> {
        self.check()?;
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("oidc.ca_file {}: {}", path.display(), e.kind()))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certs| !certs.is_empty())
                .ok_or_else(|| format!("oidc.ca_file {}: no PEM certificate", path.display()))?;
        }
        let secret =
            crate::config::read_secret_file(&self.client_secret_file, "oidc.client_secret_file")?;
        if secret.is_empty() {
            return Err(format!(
                "oidc.client_secret_file {} is empty",
                self.client_secret_file.display()
            ));
        }
        Ok(())
    }

    /// Whether Custos may send a request to `url`: TLS, or plain HTTP to a loopback IP address
    /// when the configuration allows it.
    fn url_allowed(&self, url: &Url) -> Result<(), &'static str> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must carry no user name or password");
        }
        match url.scheme() {
            "https" => Ok(()),
            "http" => {
                let loopback = url
                    .host_str()
                    .and_then(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
                    .is_some_and(|ip| ip.is_loopback());
                if loopback && self.allow_plaintext_loopback {
                    Ok(())
                } else {
                    Err(
                        "must be https:// (http:// only to a loopback IP address with \
                         allow_plaintext_loopback)",
                    )
                }
            }
            _ => Err("must be an https:// URL"),
        }
    }
}

/// A sign-in between `start` and `callback`.
struct Pending {
    binding: String,
    nonce: String,
    verifier: Zeroizing<String>,
    started: DateTime<Utc>,
}

/// What the discovery document says, and the provider's keys.
#[derive(Clone)]
struct ProviderInfo {
    authorization_endpoint: Url,
    token_endpoint: Url,
    userinfo_endpoint: Option<Url>,
    iss_parameter_required: bool,
    jwks_uri: Url,
    discovered: Instant,
    jwks: jsonwebtoken::jwk::JwkSet,
    jwks_fetched: Instant,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// The OpenID client: configuration, HTTP client, sign-ins in progress, provider metadata.
pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    pending: Mutex<HashMap<String, Pending>>,
    provider: tokio::sync::Mutex<Option<ProviderInfo>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// Why a sign-in failed, for the audit record only: the person sees one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownState,
    BrowserMismatch,
    Expired,
    ProviderError,
    IssuerMismatch,
    NoCode,
    ProviderUnreachable,
    TokenExchange,
    IdTokenInvalid,
    NonceMismatch,
    UserinfoMismatch,
    TooManyGroups,
    NoRole,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownState => "unknown_state",
            Refusal::BrowserMismatch => "browser_mismatch",
            Refusal::Expired => "expired",
            Refusal::ProviderError => "provider_error",
            Refusal::IssuerMismatch => "issuer_mismatch",
            Refusal::NoCode => "no_code",
            Refusal::ProviderUnreachable => "provider_unreachable",
            Refusal::TokenExchange => "token_exchange",
            Refusal::IdTokenInvalid => "id_token_invalid",
            Refusal::NonceMismatch => "nonce_mismatch",
            Refusal::UserinfoMismatch => "userinfo_mismatch",
            Refusal::TooManyGroups => "too_many_groups",
            Refusal::NoRole => "no_role",
        }
    }
}

/// A provider failure: logged with a fixed description, never with tokens or the provider's
/// free text.
fn provider_failure(what: &'static str, refusal: Refusal) -> Refusal {
    tracing::warn!(what, "OpenID sign-in: provider failure");
    refusal
}

/// 32 bytes from the OS, base64url: state, nonce, PKCE verifier and browser binding. `None`
/// when the OS has no randomness, which fails the sign-in (these values protect, so a weak
/// fallback is not acceptable).
fn random_token() -> Option<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()))
}

/// `application/x-www-form-urlencoded` for one value, as RFC 6749 §2.3.1 asks for the client id
/// and secret inside HTTP Basic authentication.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer.
async fn read_capped(mut response: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// The claims Custos reads from an ID token (the signature and `iss`/`aud` are checked by the
/// library, the rest here).
#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The person an ID token names, once every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Person {
    subject: String,
    name: String,
    /// `None` when the ID token does not carry the groups claim.
    groups: Option<Vec<String>>,
}

/// The groups claim: a list of strings (or one string). `Err` for more than [`MAX_GROUPS`] or a
/// value of another shape.
fn groups_of(value: &serde_json::Value) -> Result<Vec<String>, Refusal> {
    match value {
        serde_json::Value::String(one) => Ok(vec![one.clone()]),
        serde_json::Value::Array(items) => {
            if items.len() > MAX_GROUPS {
                return Err(Refusal::TooManyGroups);
            }
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Refusal::IdTokenInvalid)
        }
        _ => Err(Refusal::IdTokenInvalid),
    }
}

/// A display name: the first of `preferred_username`, `email`, `name`, `sub`, without control
/// characters and cut to [`MAX_NAME_CHARS`].
fn display_name(claims: &serde_json::Map<String, serde_json::Value>, subject: &str) -> String {
    let chosen = ["preferred_username", "email", "name"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(|v| v.as_str()))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(subject);
    chosen
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect()
}

/// Checks an ID token: algorithm pinned, key from the provider's set, `iss`, `aud`, `azp`,
/// `exp`, `iat` and `nonce` (compared in constant time).
fn verify_id_token(
    config: &OidcConfig,
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    nonce: &str,
    now: i64,
) -> Result<Person, Refusal> {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.set_issuer(&[config.issuer.as_str()]);
    validation.set_audience(&[config.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Lifetimes are checked against the server's clock below, like every other expiry.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<IdClaims>(token, key, &validation)
        .map_err(|_| Refusal::IdTokenInvalid)?;
    let claims = data.claims;
    if claims.exp + LEEWAY_SECONDS <= now
        || claims.iat - LEEWAY_SECONDS > now
        || now - claims.iat > MAX_ID_TOKEN_AGE_SECONDS
    {
        return Err(Refusal::IdTokenInvalid);
    }
    // OIDC Core 3.1.3.7: with several audiences `azp` must be present; when present it must be
    // this client.
    let several_audiences = claims.aud.as_array().is_some_and(|a| a.len() > 1);
    match &claims.azp {
        Some(azp) if azp != &config.client_id => return Err(Refusal::IdTokenInvalid),
        None if several_audiences => return Err(Refusal::IdTokenInvalid),
        _ => {}
    }
    let nonce_ok = claims
        .nonce
        .as_deref()
        .is_some_and(|n| custos_crypto::token::constant_time_eq(n.as_bytes(), nonce.as_bytes()));
    if !nonce_ok {
        return Err(Refusal::NonceMismatch);
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(Refusal::IdTokenInvalid);
    }
    let groups = match claims.other.get(&config.groups_claim) {
        Some(value) => Some(groups_of(value)?),
        None => None,
    };
    Ok(Person {
        name: display_name(&claims.other, &claims.sub),
        subject: claims.sub,
        groups,
    })
}

impl OidcClient {
    /// The client for a checked configuration.
    pub fn new(config: &OidcConfig) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.timeout_seconds))
            .user_agent("custos");
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("oidc.ca_file {}: {}", path.display(), e.kind()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| format!("oidc.ca_file {}: no PEM certificate", path.display()))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| format!("oidc: cannot build the HTTP client: {e}"))?;
        Ok(Self {
            config: config.clone(),
            http,
            pending: Mutex::new(HashMap::new()),
            provider: tokio::sync::Mutex::new(None),
        })
    }

    /// "Sign in with …" text for the sign-in page.
    pub fn display_name(&self) -> &str {
        &self.config.display_name
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        bearer: Option<&str>,
    ) -> Option<T> {
        self.config.url_allowed(url).ok()?;
        let mut request = self.http.get(url.clone());
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "OpenID provider refused a request");
            return None;
        }
        let body = read_capped(response).await?;
        serde_json::from_slice(&body).ok()
    }

    /// The provider's endpoints and keys, fetched when missing or stale. `refresh_keys` asks
    /// for a new key set (an unknown `kid`), honoured at most once per [`JWKS_MIN_REFETCH`].
    async fn provider(&self, refresh_keys: bool) -> Option<ProviderInfo> {
        let mut cached = self.provider.lock().await;
        let discovery_fresh = cached
            .as_ref()
            .is_some_and(|p| p.discovered.elapsed() < DISCOVERY_TTL);
        if !discovery_fresh {
            let base = self.config.issuer.trim_end_matches('/');
            let url = Url::parse(&format!("{base}/.well-known/openid-configuration")).ok()?;
            let Some(doc) = self.get_json::<Discovery>(&url, None).await else {
                tracing::warn!("OpenID discovery document unavailable");
                return None;
            };
            // OIDC Discovery §4.3: the document must name exactly the configured issuer.
            if doc.issuer != self.config.issuer {
                tracing::error!(
                    "OpenID discovery document names another issuer; oidc.issuer must be \
                     exactly the provider's issuer"
                );
                return None;
            }
            if let Some(methods) = &doc.code_challenge_methods_supported
                && !methods.iter().any(|m| m == "S256")
            {
                tracing::error!("the OpenID provider does not support PKCE S256");
                return None;
            }
            let endpoint = |raw: &str| -> Option<Url> {
                let url = Url::parse(raw).ok()?;
                self.config.url_allowed(&url).ok()?;
                Some(url)
            };
            let (Some(authorization_endpoint), Some(token_endpoint), Some(jwks_uri)) = (
                endpoint(&doc.authorization_endpoint),
                endpoint(&doc.token_endpoint),
                endpoint(&doc.jwks_uri),
            ) else {
                tracing::error!("OpenID discovery document has an endpoint Custos may not use");
                return None;
            };
            let userinfo_endpoint = match doc.userinfo_endpoint.as_deref() {
                Some(raw) => Some(endpoint(raw)?),
                None => None,
            };
            let jwks = self
                .get_json::<jsonwebtoken::jwk::JwkSet>(&jwks_uri, None)
                .await?;
            let now = Instant::now();
            *cached = Some(ProviderInfo {
                authorization_endpoint,
                token_endpoint,
                userinfo_endpoint,
                iss_parameter_required: doc.authorization_response_iss_parameter_supported,
                jwks_uri,
                discovered: now,
                jwks,
                jwks_fetched: now,
            });
        } else if let Some(info) = cached.as_mut() {
            let age = info.jwks_fetched.elapsed();
            if age >= JWKS_TTL || (refresh_keys && age >= JWKS_MIN_REFETCH) {
                let fetched = self
                    .get_json::<jsonwebtoken::jwk::JwkSet>(&info.jwks_uri, None)
                    .await;
                if let Some(jwks) = fetched {
                    info.jwks = jwks;
                    info.jwks_fetched = Instant::now();
                }
            }
        }
        cached.clone()
    }

    /// Remembers a sign-in; the oldest is forgotten when the table is full.
    fn remember(&self, state_value: String, pending: Pending, now: DateTime<Utc>) {
        if let Ok(mut table) = self.pending.lock() {
            if table.len() >= MAX_PENDING {
                table.retain(|_, p| (now - p.started).num_seconds() < PENDING_SECONDS);
                if table.len() >= MAX_PENDING
                    && let Some(oldest) = table
                        .iter()
                        .min_by_key(|(_, p)| p.started)
                        .map(|(k, _)| k.clone())
                {
                    table.remove(&oldest);
                }
            }
            table.insert(state_value, pending);
        }
    }

    /// Takes a pending sign-in out of the table: each `state` is good for one callback.
    fn take(&self, state_value: &str) -> Option<Pending> {
        self.pending.lock().ok()?.remove(state_value)
    }

    /// Exchanges the code and checks what comes back; the person on success.
    async fn finish(
        &self,
        now: i64,
        code: &str,
        pending: &Pending,
        info: &ProviderInfo,
    ) -> Result<Person, Refusal> {
        let secret = tokio::fs::read(&self.config.client_secret_file)
            .await
            .ok()
            .map(Zeroizing::new)
            .and_then(|bytes| crate::config::secret_from_bytes(&bytes))
            .ok_or_else(|| {
                provider_failure("cannot read client_secret_file", Refusal::TokenExchange)
            })?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_url.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let response = self
            .http
            .post(info.token_endpoint.clone())
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(Zeroizing::new(form_encode(&secret)).as_str()),
            )
            .header(header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|_| {
                provider_failure("token endpoint unreachable", Refusal::ProviderUnreachable)
            })?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "OpenID token endpoint refused the code");
            return Err(Refusal::TokenExchange);
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
            access_token: Option<String>,
        }
        let body =
            Zeroizing::new(read_capped(response).await.ok_or_else(|| {
                provider_failure("token answer too large", Refusal::TokenExchange)
            })?);
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| provider_failure("token answer is not JSON", Refusal::TokenExchange))?;
        let access_token = answer.access_token.map(Zeroizing::new);
        let id_token = Zeroizing::new(answer.id_token.ok_or_else(|| {
            provider_failure("no id_token in the answer", Refusal::TokenExchange)
        })?);
        let person = self.check_id_token(now, &id_token, &pending.nonce).await?;
        if person.groups.is_some() {
            return Ok(person);
        }
        // The groups are not in the ID token: ask the userinfo endpoint (OIDC Core 5.3), whose
        // `sub` must be the ID token's.
        let (Some(url), Some(token)) = (&info.userinfo_endpoint, &access_token) else {
            return Ok(Person {
                groups: Some(Vec::new()),
                ..person
            });
        };
        let userinfo: serde_json::Map<String, serde_json::Value> = self
            .get_json(url, Some(token.as_str()))
            .await
            .ok_or_else(|| {
                provider_failure("userinfo unavailable", Refusal::ProviderUnreachable)
            })?;
        if userinfo.get("sub").and_then(|s| s.as_str()) != Some(person.subject.as_str()) {
            return Err(Refusal::UserinfoMismatch);
        }
        let groups = match userinfo.get(&self.config.groups_claim) {
            Some(value) => groups_of(value)?,
            None => Vec::new(),
        };
        Ok(Person {
            groups: Some(groups),
            ..person
        })
    }

    async fn check_id_token(&self, now: i64, token: &str, nonce: &str) -> Result<Person, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::IdTokenInvalid)?;
        let pinned = self
            .config
            .algorithms
            .iter()
            .filter_map(|a| crate::oauth::parse_algorithm(a))
            .any(|a| a == header.alg);
        if !pinned {
            return Err(Refusal::IdTokenInvalid);
        }
        let find = |set: &jsonwebtoken::jwk::JwkSet| -> Option<DecodingKey> {
            let jwk = match header.kid.as_deref() {
                Some(kid) => set.find(kid)?,
                None if set.keys.len() == 1 => set.keys.first()?,
                None => return None,
            };
            DecodingKey::from_jwk(jwk).ok()
        };
        let info = self
            .provider(false)
            .await
            .ok_or(Refusal::ProviderUnreachable)?;
        let key = match find(&info.jwks) {
            Some(key) => key,
            None => {
                // The provider may have rotated its keys since they were fetched.
                let info = self
                    .provider(true)
                    .await
                    .ok_or(Refusal::ProviderUnreachable)?;
                find(&info.jwks).ok_or(Refusal::IdTokenInvalid)?
            }
        };
        verify_id_token(&self.config, token, &key, header.alg, nonce, now)
    }
}

fn binding_cookie(value: &str, max_age: i64) -> String {
    format!(
        "{BINDING_COOKIE}={value}; Path=/ui/oidc; Max-Age={max_age}; HttpOnly; Secure; \
         SameSite=Lax"
    )
}

/// The OpenID client, when single sign-on is configured and the address is not throttled for
/// failed sign-ins; otherwise the answer (404, or the sign-in page with 429).
fn admitted(
    state: &AppState,
    ctx: &RequestContext,
) -> Result<std::sync::Arc<OidcClient>, Box<Response>> {
    let Some(client) = state.oidc.clone() else {
        return Err(Box::new(
            ApiError::not_found("single sign-on").into_response(),
        ));
    };
    if state
        .failures
        .blocked(ctx.client_ip, state.config.limits.auth_failures_per_minute)
    {
        return Err(Box::new(crate::ui::login_refused(
            state,
            "Too many failed attempts; wait a minute.",
            StatusCode::TOO_MANY_REQUESTS,
        )));
    }
    Ok(client)
}

/// `GET /ui/oidc/start`: redirects to the provider with a fresh state, nonce and PKCE challenge.
pub async fn start(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Response {
    let client = match admitted(&state, &ctx) {
        Ok(client) => client,
        Err(refused) => return *refused,
    };
    let Some(info) = client.provider(false).await else {
        return crate::ui::login_refused(
            &state,
            "The identity provider cannot be reached; try again later.",
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    let (Some(state_value), Some(nonce), Some(verifier), Some(binding)) = (
        random_token(),
        random_token(),
        random_token(),
        random_token(),
    ) else {
        return ApiError::internal("no randomness from the operating system").into_response();
    };
    let mut url = info.authorization_endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.config.client_id)
        .append_pair("redirect_uri", &client.config.redirect_url)
        .append_pair("scope", &client.config.scopes.join(" "))
        .append_pair("state", &state_value)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    client.remember(
        state_value,
        Pending {
            binding: binding.clone(),
            nonce,
            verifier: Zeroizing::new(verifier),
            started: state.clock.now(),
        },
        state.clock.now(),
    );
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, url.as_str())]).into_response();
    if let Ok(v) = HeaderValue::from_str(&binding_cookie(&binding, PENDING_SECONDS)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The provider's answer.
#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// An OAuth error code from the provider, kept only when it has the shape of one (it is
/// recorded; free text from the URL is not).
fn error_code(raw: &str) -> &str {
    let shaped = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if shaped { raw } else { "other" }
}

/// `GET /ui/oidc/callback`: finishes a sign-in started in this browser.
pub async fn callback(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let client = match admitted(&state, &ctx) {
        Ok(client) => client,
        Err(refused) => return *refused,
    };
    let outcome = decide(&state, &client, &headers, &query).await;
    match outcome {
        Ok((person, bindings, matched)) => {
            let id = group_roles::external_id("oidc:", &person.subject);
            let principal = Principal::User {
                id: id.clone(),
                name: person.name,
                grants: grants_of(&bindings),
            };
            let event = audit_event(
                &state,
                &ctx,
                Actor {
                    id: principal.actor_id(),
                    kind: ActorType::User,
                },
                "auth.sign_in",
                format!("user/{id}"),
                Outcome::Success,
                serde_json::json!({
                    "method": "oidc",
                    "issuer": client.config.issuer,
                    "user_id": id,
                    "groups": matched,
                    "roles": bindings,
                }),
            );
            if let Err(e) = state.store.append_audit(&event).await {
                return ApiError::from(e).into_response();
            }
            let Some(session) = state.sessions.create(principal, state.clock.now()) else {
                return ApiError::internal("no randomness for a session id").into_response();
            };
            signed_in_page(&session)
        }
        Err((refusal, subject)) => {
            let mut detail = serde_json::json!({
                "method": "oidc",
                "issuer": client.config.issuer,
                "reason": refusal.as_str(),
            });
            if let (Some(map), Some(subject)) = (detail.as_object_mut(), subject) {
                // A verified person without access: recorded only as a keyed hash, like a
                // name typed into the password form.
                map.insert(
                    "subject_hmac".into(),
                    state.keys.audit_hasher().tag(&subject).into(),
                );
            }
            if refusal == Refusal::ProviderError
                && let (Some(map), Some(code)) = (detail.as_object_mut(), query.error.as_deref())
            {
                map.insert("provider_error".into(), error_code(code).into());
            }
            let event = audit_event(
                &state,
                &ctx,
                Actor::anonymous(),
                "auth.sign_in",
                "ui".to_owned(),
                Outcome::Failure,
                detail,
            );
            if let Err(e) = state.store.append_audit(&event).await {
                return ApiError::from(e).into_response();
            }
            // A person the provider vouched for but who has no role is not an attack on the
            // sign-in; everything else counts towards the address's failure budget.
            if refusal != Refusal::NoRole {
                state.failures.record(ctx.client_ip);
            }
            let (message, status) = match refusal {
                Refusal::NoRole => (
                    "Your account has no access to Custos. Ask an administrator to add you to a \
                     group that grants a role.",
                    StatusCode::FORBIDDEN,
                ),
                Refusal::ProviderUnreachable => (
                    "The identity provider cannot be reached; try again later.",
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                _ => (
                    "Sign-in through the identity provider did not succeed; please start again.",
                    StatusCode::UNAUTHORIZED,
                ),
            };
            let mut response = crate::ui::login_refused(&state, message, status);
            if let Ok(v) = HeaderValue::from_str(&binding_cookie("", 0)) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
    }
}

/// What the callback decides: the person, the role bindings their groups give and the groups
/// that matched — or why not (with the verified subject when the provider vouched for one).
async fn decide(
    state: &AppState,
    client: &OidcClient,
    headers: &HeaderMap,
    query: &CallbackQuery,
) -> Result<
    (
        Person,
        Vec<custos_core::RoleBinding>,
        std::collections::BTreeSet<String>,
    ),
    (Refusal, Option<String>),
> {
    let state_value = query.state.as_deref().unwrap_or_default();
    let pending = client
        .take(state_value)
        .ok_or((Refusal::UnknownState, None))?;
    let binding_ok = cookie(headers, BINDING_COOKIE).is_some_and(|c| {
        custos_crypto::token::constant_time_eq(c.as_bytes(), pending.binding.as_bytes())
    });
    if !binding_ok {
        return Err((Refusal::BrowserMismatch, None));
    }
    let now = state.clock.now();
    if (now - pending.started).num_seconds() >= PENDING_SECONDS {
        return Err((Refusal::Expired, None));
    }
    if query.error.is_some() {
        return Err((Refusal::ProviderError, None));
    }
    let info = client
        .provider(false)
        .await
        .ok_or((Refusal::ProviderUnreachable, None))?;
    // RFC 9207: the answer names its issuer, which defeats mix-up attacks between providers.
    match &query.iss {
        Some(iss) if iss != &client.config.issuer => return Err((Refusal::IssuerMismatch, None)),
        None if info.iss_parameter_required => return Err((Refusal::IssuerMismatch, None)),
        _ => {}
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or((Refusal::NoCode, None))?;
    let person = client
        .finish(now.timestamp(), code, &pending, &info)
        .await
        .map_err(|r| (r, None))?;
    let groups = person.groups.clone().unwrap_or_default();
    let (bindings, matched) = group_roles::map_groups(&client.config.group_roles, &groups);
    if bindings.is_empty() {
        return Err((Refusal::NoRole, Some(person.subject)));
    }
    Ok((person, bindings, matched))
}

/// The answer to a successful callback: the session cookie, the binding cookie cleared, and a
/// page that continues to `/ui` by itself — a same-site navigation, so the `SameSite=Strict`
/// session cookie goes with it (a redirect would still count as part of the provider's
/// cross-site chain).
fn signed_in_page(session: &str) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="0;url=/ui";
                title { "Signed in · Custos" }
                link rel="stylesheet" href="/ui/static/custos.css";
            }
            body {
                main {
                    section.card.narrow {
                        h1 { "Signed in" }
                        p { a href="/ui" { "Continue to Custos" } }
                    }
                }
            }
        }
    };
    let mut response = (StatusCode::OK, Html(markup.into_string())).into_response();
    for value in [crate::ui::session_cookie(session), binding_cookie("", 0)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn config() -> OidcConfig {
        toml::from_str(
            r#"
            issuer = "https://idp.example"
            client_id = "custos"
            client_secret_file = "/nonexistent"
            redirect_url = "https://custos.example/ui/oidc/callback"
            group_roles = { ml-team = [{ role = "data-scientist", model = "fraud-v3" }] }
            "#,
        )
        .unwrap()
    }

    /// An Ed25519 key pair in the forms jsonwebtoken wants.
    fn keys(seed: u8) -> (EncodingKey, DecodingKey) {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[seed; 32]);
        (
            EncodingKey::from_ed_der(&der),
            DecodingKey::from_ed_der(&signing.verifying_key().to_bytes()),
        )
    }

    const NOW: i64 = 1_800_000_000;

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://idp.example", "aud": "custos", "sub": "alice",
            "exp": NOW + 300, "iat": NOW - 5, "nonce": "n-1",
            "email": "alice@example.test", "groups": ["ml-team", "other"],
        })
    }

    fn sign(claims: &serde_json::Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, key).unwrap()
    }

    fn check(claims: &serde_json::Value) -> Result<Person, Refusal> {
        let (enc, dec) = keys(7);
        verify_id_token(
            &config(),
            &sign(claims, &enc),
            &dec,
            Algorithm::EdDSA,
            "n-1",
            NOW,
        )
    }

    fn with(change: &[(&str, serde_json::Value)]) -> serde_json::Value {
        let mut c = claims();
        for (k, v) in change {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(*k);
            } else {
                c[*k] = v.clone();
            }
        }
        c
    }

    #[test]
    fn a_good_id_token_names_the_person_and_groups() {
        let person = check(&claims()).unwrap();
        assert_eq!(person.subject, "alice");
        assert_eq!(person.name, "alice@example.test");
        assert_eq!(person.groups.unwrap(), ["ml-team", "other"]);
        let no_groups = check(&with(&[("groups", serde_json::Value::Null)])).unwrap();
        assert_eq!(
            no_groups.groups, None,
            "then the userinfo endpoint is asked"
        );
    }

    #[test]
    fn every_claim_check_refuses() {
        use serde_json::json;
        let cases: Vec<(&str, serde_json::Value, Refusal)> = vec![
            (
                "other issuer",
                with(&[("iss", json!("https://evil"))]),
                Refusal::IdTokenInvalid,
            ),
            (
                "other audience",
                with(&[("aud", json!("someone"))]),
                Refusal::IdTokenInvalid,
            ),
            (
                "expired",
                with(&[("exp", json!(NOW - 120))]),
                Refusal::IdTokenInvalid,
            ),
            (
                "issued in the future",
                with(&[("iat", json!(NOW + 600))]),
                Refusal::IdTokenInvalid,
            ),
            (
                "issued long ago",
                with(&[("iat", json!(NOW - 3600))]),
                Refusal::IdTokenInvalid,
            ),
            (
                "no nonce",
                with(&[("nonce", serde_json::Value::Null)]),
                Refusal::NonceMismatch,
            ),
            (
                "other nonce",
                with(&[("nonce", json!("n-2"))]),
                Refusal::NonceMismatch,
            ),
            (
                "no subject",
                with(&[("sub", serde_json::Value::Null)]),
                Refusal::IdTokenInvalid,
            ),
            (
                "several audiences, no azp",
                with(&[("aud", json!(["custos", "other"]))]),
                Refusal::IdTokenInvalid,
            ),
            (
                "azp of another client",
                with(&[("azp", json!("other"))]),
                Refusal::IdTokenInvalid,
            ),
            (
                "groups not a list",
                with(&[("groups", json!({"a": 1}))]),
                Refusal::IdTokenInvalid,
            ),
        ];
        for (what, claims, expected) in cases {
            assert_eq!(check(&claims).err(), Some(expected), "{what}");
        }
        let several = with(&[
            ("aud", json!(["custos", "other"])),
            ("azp", json!("custos")),
        ]);
        assert!(
            check(&several).is_ok(),
            "several audiences with azp = client"
        );
        let too_many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        assert_eq!(
            check(&with(&[("groups", json!(too_many))])).err(),
            Some(Refusal::TooManyGroups)
        );
    }

    #[test]
    fn signatures_and_algorithms_are_checked() {
        let (enc, _) = keys(7);
        let (_, other_dec) = keys(8);
        let token = sign(&claims(), &enc);
        assert_eq!(
            verify_id_token(&config(), &token, &other_dec, Algorithm::EdDSA, "n-1", NOW).err(),
            Some(Refusal::IdTokenInvalid),
            "signed by another key"
        );
        // A flipped payload byte breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let forged = String::from_utf8(payload)
            .unwrap()
            .replace("alice", "mallo");
        parts[1] = URL_SAFE_NO_PAD.encode(forged);
        let (_, dec) = keys(7);
        assert_eq!(
            verify_id_token(
                &config(),
                &parts.join("."),
                &dec,
                Algorithm::EdDSA,
                "n-1",
                NOW
            )
            .err(),
            Some(Refusal::IdTokenInvalid)
        );
        // An unsigned token ("alg": "none") is not a JWT the library accepts.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(jsonwebtoken::decode_header(&unsigned).is_err());
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let a = random_token().unwrap();
        assert_eq!(a.len(), 43, "32 bytes");
        assert_ne!(a, random_token().unwrap());
    }

    #[test]
    fn configuration_is_checked() {
        assert_eq!(config().check(), Ok(()));
        let bad = |f: &dyn Fn(&mut OidcConfig)| {
            let mut c = config();
            f(&mut c);
            c.check().unwrap_err()
        };
        assert!(bad(&|c| c.issuer = "http://idp.example".into()).contains("https"));
        assert!(
            bad(&|c| {
                c.issuer = "http://127.0.0.1:9".into();
            })
            .contains("loopback")
        );
        let mut loopback = config();
        loopback.issuer = "http://127.0.0.1:9".into();
        loopback.allow_plaintext_loopback = true;
        assert_eq!(loopback.check(), Ok(()));
        assert!(bad(&|c| c.redirect_url = "https://x/elsewhere".into()).contains("callback"));
        assert!(
            bad(&|c| c.redirect_url = "http://x.example/ui/oidc/callback".into()).contains("https")
        );
        assert!(bad(&|c| c.scopes = vec!["email".into()]).contains("openid"));
        assert!(bad(&|c| c.algorithms = vec!["HS256".into()]).contains("algorithms"));
        assert!(bad(&|c| c.group_roles.clear()).contains("group_roles"));
        let secret_inline = toml::from_str::<OidcConfig>(
            "issuer = \"https://i\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             client_secret_file = \"/f\"\nredirect_url = \"https://x/ui/oidc/callback\"\n\
             group_roles = {}\n",
        );
        assert!(secret_inline.is_err(), "secrets only from files");
    }

    #[test]
    fn the_documented_example_is_valid() {
        let section = crate::config::documented_section("oidc");
        let c: OidcConfig = toml::from_str(&section).unwrap();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.group_roles.len(), 2);
    }

    #[test]
    fn error_codes_and_encoding() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("<script>"), "other");
        assert_eq!(form_encode("a b+c/é"), "a+b%2Bc%2F%C3%A9");
        assert_eq!(form_encode("custos-secret"), "custos-secret");
    }
}
