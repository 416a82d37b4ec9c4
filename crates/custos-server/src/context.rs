//! Per-request context: the request id and the client's address.
//!
//! The request id is made here, once, returned in `x-request-id`, attached to the log span and
//! to audit records, and put into error bodies, so a user's report, a log line and an audit
//! entry can be tied together.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request id of the request being served, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Facts about the caller that authentication and audit need.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id.
    pub request_id: String,
    /// The client's address: the TCP peer, or, when the peer is one of
    /// `limits.trusted_proxies`, the address it forwarded for ([`crate::limits::client_ip`]).
    pub client_ip: Option<IpAddr>,
    /// The user agent, truncated and stripped of control characters.
    pub user_agent: Option<String>,
}

/// 128 random bits, hex: unguessable, so ids in URLs or logs reveal nothing.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // If the OS cannot give randomness the id degrades to all zeros; it identifies, it does not
    // protect, so serving on is better than failing the request.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// 128 random bits, hex, for values that *protect* (session ids, CSRF tokens): `None` when the
/// OS gives no randomness, so the caller fails the request instead of handing out a guessable
/// value.
pub fn secret_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn clean_user_agent(raw: &HeaderValue) -> Option<String> {
    let text = raw.to_str().ok()?;
    Some(text.chars().filter(|c| !c.is_control()).take(200).collect())
}

/// Middleware: assigns the request id and the context, and runs the rest inside both.
pub async fn request_context(
    State(state): State<crate::state::AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = random_id();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip());
    // Decided once, here, so audit records and every throttle see the same address.
    let client_ip = crate::limits::client_ip(
        peer,
        request.headers(),
        &state.config.limits.trusted_proxies,
    );
    let user_agent = request
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(clean_user_agent);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    request.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        client_ip,
        user_agent,
    });
    let id_header = HeaderValue::from_str(&request_id).ok();
    let mut response = REQUEST_ID
        .scope(request_id, next.run(request).instrument(span.clone()))
        .await;
    span.in_scope(|| {
        tracing::info!(status = response.status().as_u16(), "served");
    });
    if let Some(v) = id_header {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
