//! The native TLS listener: `[server.tls]`, certificate loading and hot reload, the accept loop,
//! and the mapping of a verified client certificate to a machine principal.
//!
//! axum's own `serve` cannot hand the peer certificate to handlers, so this module owns the
//! accept loop (tokio-rustls + hyper-util). Each request of a connection carries the peer
//! address as [`ConnectInfo`] (as on the plain path) and, when the client presented a certificate
//! that chained to `client_ca_file`, a [`ClientCertIdentity`]. The choke point
//! ([`crate::auth::authorize`]) turns that identity into a [`Principal::Service`] through
//! [`service_principal`] only when a `client_identities` entry names it: a verified certificate
//! nobody configured authenticates nobody.
//!
//! Protocol versions are rustls' safe defaults (TLS 1.2 and 1.3), with the aws-lc-rs provider
//! passed explicitly so the process-wide default provider never matters here.

use crate::auth::{Actor, audit_event};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use crate::{App, StartError, audit_log, jobs, router, system_audit};
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use custos_core::{Grant, Outcome, Principal, parse_grant};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A client that has not finished its handshake by then is dropped, so half-open connections
/// cannot pile up (rustls and hyper have no handshake timeout of their own).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slow-header (slowloris) bound for HTTP/1 requests.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `[server.tls]`: serve HTTPS directly, optionally requiring client certificates.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// The server's private key (PEM). Must be mode 0600 or stricter.
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to. Setting it enables mutual
    /// TLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Whether every client must present a certificate. Defaults to true when `client_ca_file`
    /// is set; only meaningful with it.
    #[serde(default)]
    pub require_client_cert: Option<bool>,
    /// Verified client certificates that act as machine principals, and what each may do.
    #[serde(default)]
    pub client_identities: Vec<ClientIdentityConfig>,
    /// How often, at most, the certificate, key and CA files are checked for changes (on new
    /// connections), in seconds.
    #[serde(default = "default_reload_interval")]
    pub reload_interval_seconds: u64,
}

fn default_reload_interval() -> u64 {
    10
}

impl TlsConfig {
    /// Whether a client certificate is demanded in the handshake.
    pub fn requires_client_cert(&self) -> bool {
        self.client_ca_file.is_some() && self.require_client_cert.unwrap_or(true)
    }
}

/// One `[[server.tls.client_identities]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentityConfig {
    /// A common name, DNS or URI subject-alternative name the certificate must carry.
    pub subject: String,
    /// What the identity may do.
    pub grants: Vec<GrantConfig>,
}

/// A grant in configuration, same wire form as a token scope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// The action, such as `predictions:write`.
    pub action: String,
    /// A model name, or `*`.
    pub model: String,
}

/// The names a verified client certificate carries: its common names, then its DNS and URI
/// subject-alternative names. Present on a request only when the certificate was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertIdentity {
    /// The names, in certificate order.
    pub names: Vec<String>,
}

/// Checks `[server.tls]` once at load time, so a typo in a grant fails the start instead of
/// silently granting nothing.
pub fn check(config: &TlsConfig) -> Result<(), String> {
    if config.client_ca_file.is_none() {
        if config.require_client_cert.is_some() {
            return Err("server.tls.require_client_cert needs client_ca_file".into());
        }
        if !config.client_identities.is_empty() {
            return Err(
                "server.tls.client_identities need client_ca_file (no certificate could be \
                 verified without it)"
                    .into(),
            );
        }
    }
    if !(1..=3600).contains(&config.reload_interval_seconds) {
        return Err("server.tls.reload_interval_seconds must lie in 1..=3600".into());
    }
    let mut seen = std::collections::HashSet::new();
    for identity in &config.client_identities {
        let subject = identity.subject.trim();
        if subject.is_empty() || subject != identity.subject {
            return Err(
                "server.tls.client_identities: a subject must be non-empty and carry no \
                 surrounding spaces"
                    .into(),
            );
        }
        if !seen.insert(subject) {
            return Err(format!(
                "server.tls.client_identities: subject '{subject}' is listed twice"
            ));
        }
        if identity.grants.is_empty() {
            return Err(format!(
                "server.tls.client_identities: '{subject}' has no grants"
            ));
        }
        for g in &identity.grants {
            parse_grant(&g.action, &g.model)
                .map_err(|e| format!("server.tls.client_identities: '{subject}': {e}"))?;
        }
    }
    Ok(())
}

/// The machine principal a verified certificate stands for, if exactly one configured identity
/// names it. A certificate carrying the names of two identities is refused rather than guessed.
pub fn service_principal(
    config: &crate::config::Config,
    identity: &ClientCertIdentity,
) -> Option<Principal> {
    let tls = config.server.tls.as_ref()?;
    let mut matching = tls
        .client_identities
        .iter()
        .filter(|c| identity.names.contains(&c.subject));
    let found = matching.next()?;
    if matching.next().is_some() {
        tracing::warn!(names = ?identity.names, "client certificate matches several identities");
        return None;
    }
    let grants: Vec<Grant> = found
        .grants
        .iter()
        .filter_map(|g| parse_grant(&g.action, &g.model).ok())
        .collect();
    Some(Principal::Service {
        id: found.subject.clone(),
        grants,
    })
}

/// Answers a verified certificate that no identity names: 401, counted and audited like a
/// failed credential (the subject is not secret, so it is recorded as is).
pub async fn reject_unmapped(
    state: &AppState,
    ctx: &RequestContext,
    route: &str,
    identity: &ClientCertIdentity,
) -> Response {
    state.failures.record(ctx.client_ip);
    let event = audit_event(
        state,
        ctx,
        Actor::anonymous(),
        "auth.client_cert",
        route.to_owned(),
        Outcome::Failure,
        serde_json::json!({ "reason": "unknown", "names": identity.names }),
    );
    let event = custos_core::AuditEvent {
        status: Some(401),
        ..event
    };
    if let Err(e) = state.store.append_audit(&event).await {
        tracing::error!(error = %e, "audit append failed for an unmapped client certificate");
    }
    ApiError::unauthenticated().into_response()
}

/// The names in a DER certificate (see [`ClientCertIdentity`]).
pub fn certificate_names(der: &[u8]) -> Option<ClientCertIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n)
                | x509_parser::extensions::GeneralName::URI(n) => names.push((*n).to_owned()),
                _ => {}
            }
        }
    }
    Some(ClientCertIdentity { names })
}

/// What identifies one version of a file on disk: a replaced file (new inode), a rewritten one
/// (new mtime or length) and a re-pointed symlink all change it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

fn stamps(config: &TlsConfig) -> Vec<Option<Stamp>> {
    let mut paths = vec![config.cert_file.as_path(), config.key_file.as_path()];
    if let Some(ca) = &config.client_ca_file {
        paths.push(ca.as_path());
    }
    paths.into_iter().map(stamp).collect()
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is accessible by group or others (mode {mode:o}); restrict it to the owner \
             (chmod 600)",
            path.display()
        ));
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// Builds the rustls configuration from the files as they are now.
pub fn build_server_config(config: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = read_certs(&config.cert_file)?;
    let key = read_key(&config.key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.requires_client_cert() {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("client certificate verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", config.cert_file.display()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

struct Current {
    acceptor: TlsAcceptor,
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

/// Hands out the acceptor for each new connection, rebuilding it when the files changed. A
/// change that does not load (a half-written file, a key that does not match) keeps the old
/// configuration and is logged once per change.
pub struct TlsReloader {
    config: TlsConfig,
    interval: Duration,
    current: Mutex<Current>,
}

impl TlsReloader {
    /// Loads the files; fails if they do not make a working configuration.
    pub fn new(config: TlsConfig) -> Result<Self, String> {
        let stamps = stamps(&config);
        let server = build_server_config(&config)?;
        Ok(Self {
            interval: Duration::from_secs(config.reload_interval_seconds),
            config,
            current: Mutex::new(Current {
                acceptor: TlsAcceptor::from(Arc::new(server)),
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The acceptor to use now.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let mut current = self.current.lock().ok()?;
        if current.checked.elapsed() >= self.interval {
            current.checked = Instant::now();
            let now = stamps(&self.config);
            if now != current.stamps {
                current.stamps = now;
                match build_server_config(&self.config) {
                    Ok(server) => {
                        current.acceptor = TlsAcceptor::from(Arc::new(server));
                        tracing::info!("TLS certificate files changed; reloaded");
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "TLS certificate files changed but do not load; keeping the previous ones"
                    ),
                }
            }
        }
        Some(current.acceptor.clone())
    }
}

impl App {
    /// Serves HTTPS with `[server.tls]` until `shutdown` resolves, then drains in-flight
    /// requests. Any listen address is allowed: the traffic is encrypted.
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let tls = self
            .state
            .config
            .server
            .tls
            .clone()
            .ok_or_else(|| StartError::Config("server.tls is not configured".into()))?;
        let mtls = tls.client_ca_file.is_some();
        let reloader =
            TlsReloader::new(tls).map_err(|e| StartError::Config(format!("tls: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let state = self.state.clone();
        system_audit(
            &state,
            "server.start",
            serde_json::json!({ "listen": addr.to_string(), "tls": true, "mtls": mtls }),
        )
        .await?;
        let jobs = jobs::spawn(state.clone());
        let audit_job = audit_log::spawn(state.clone());
        let retention_job = crate::retention::spawn(state.clone());
        let app = router(state.clone());
        let drain = Duration::from_secs(state.config.limits.request_timeout_seconds)
            .saturating_add(HANDSHAKE_TIMEOUT);
        accept_loop(listener, reloader, app, shutdown, drain).await;
        jobs.abort();
        audit_job.abort();
        retention_job.abort();
        if let Err(e) = system_audit(&state, "server.stop", serde_json::json!({})).await {
            tracing::error!(error = %e, "could not record the stop");
        }
        // Sign what is unsigned so a cut of the last minute's entries stays detectable.
        if let Err(e) = audit_log::checkpoint_once(&state, true).await {
            tracing::error!(error = %e, "could not sign the final audit checkpoint");
        }
        state.store.close().await;
        Ok(())
    }
}

/// Serves `app` over TLS from `[server.tls]` until `shutdown`: the listener of a sealed start
/// ([`crate::sealed`]), whose router changes when it unseals.
pub(crate) async fn serve_router(
    config: &crate::config::Config,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let tls = config
        .server
        .tls
        .clone()
        .ok_or_else(|| StartError::Config("server.tls is not configured".into()))?;
    let reloader = TlsReloader::new(tls).map_err(|e| StartError::Config(format!("tls: {e}")))?;
    let drain = Duration::from_secs(config.limits.request_timeout_seconds)
        .saturating_add(HANDSHAKE_TIMEOUT);
    accept_loop(listener, reloader, app, shutdown, drain).await;
    Ok(())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    reloader: TlsReloader,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(acceptor) = reloader.acceptor() else {
            tracing::error!("TLS configuration lock poisoned; refusing connections");
            continue;
        };
        let watcher = graceful.watcher();
        let http = Arc::clone(&http);
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| certificate_names(leaf.as_ref()));
            let service =
                app.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    // Same extension axum's `into_make_service_with_connect_info` inserts, so the
                    // request context finds the client address either way.
                    request.extensions_mut().insert(ConnectInfo(peer));
                    if let Some(identity) = &identity {
                        request.extensions_mut().insert(identity.clone());
                    }
                    request
                });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}

/// The URL scheme clients reach the server with (for banners and messages).
pub fn scheme(config: &crate::config::Config) -> &'static str {
    if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn base() -> TlsConfig {
        TlsConfig {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
            client_ca_file: Some("ca.pem".into()),
            require_client_cert: None,
            client_identities: vec![ClientIdentityConfig {
                subject: "ci-pipeline".into(),
                grants: vec![GrantConfig {
                    action: "predictions:write".into(),
                    model: "fraud-v3".into(),
                }],
            }],
            reload_interval_seconds: 10,
        }
    }

    #[test]
    fn checks() {
        assert!(check(&base()).is_ok());
        assert!(base().requires_client_cert());
        let mut c = base();
        c.client_ca_file = None;
        assert!(check(&c).is_err());
        let mut c = base();
        c.client_identities[0].grants[0].action = "predictions:wrte".into();
        assert!(check(&c).unwrap_err().contains("unknown action"));
        let mut c = base();
        c.client_identities.push(c.client_identities[0].clone());
        assert!(check(&c).unwrap_err().contains("twice"));
        let mut c = base();
        c.require_client_cert = Some(false);
        assert!(!c.requires_client_cert());
    }

    #[test]
    fn principal_from_names() {
        let mut config = crate::config::Config::default();
        config.server.tls = Some(base());
        let id = |names: &[&str]| ClientCertIdentity {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        };
        let p = service_principal(&config, &id(&["ci-pipeline"])).unwrap();
        assert_eq!(p.actor_id(), "service:ci-pipeline");
        assert!(service_principal(&config, &id(&["stranger"])).is_none());
        assert!(service_principal(&config, &id(&[])).is_none());
    }
}
