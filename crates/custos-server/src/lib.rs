//! The Custos server: HTTP routing, the authentication and authorization choke point, the ingest
//! pipeline, read paths, the web UI, background jobs, and [`App::build`] — the one composition
//! root that wires store, keys and router from a [`config::Config`] and a [`Clock`].
//!
//! This crate owns IO and orchestration only: statistics live in `custos-stats`, validation and
//! masking in `custos-core`, cryptography in `custos-crypto`, SQL in `custos-store`.

pub mod alerting;
pub mod alerts_api;
pub mod api;
pub mod audit_api;
pub mod audit_log;
pub mod audit_sinks;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod context;
pub mod drift;
pub mod error;
pub mod group_roles;
pub mod history_api;
pub mod ingest;
pub mod jobs;
pub mod kek_admin;
pub mod keys;
pub mod ldap;
pub mod limits;
pub mod local_users;
pub mod metrics;
pub mod oauth;
pub mod oidc;
pub mod passwords;
pub mod performance;
pub mod policy;
pub mod quality;
pub mod query;
pub mod reference;
pub mod report;
pub mod retention;
pub mod sealed;
pub mod sessions;
pub mod state;
pub mod tls;
pub mod tokens_api;
pub mod ui;
pub mod ui_audit;
pub mod users_api;
pub mod vault;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use custos_core::{AuditEvent, Clock};
use custos_store::Store;
use state::AppState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// Why the server could not start. Wrapping variants name the stage only; the cause is their
/// `source()`, so a report of the chain (`{:#}`) says each thing once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened (the URL is shown with its password redacted).
    #[error("cannot open the store at {url}")]
    Open {
        /// The redacted URL.
        url: String,
        /// Why.
        source: custos_store::StoreError,
    },
    /// The store failed while preparing it (migrations, first-start records).
    #[error("store")]
    Store(#[from] custos_store::StoreError),
    /// Keys could not be loaded.
    #[error("keys")]
    Keys(#[from] keys::KeyError),
    /// Files in the data directory.
    #[error("data directory: {0}")]
    Io(String),
}

/// A built server, ready to serve.
pub struct App {
    /// Shared state (handles to the store, keys, clock, configuration).
    pub state: AppState,
    /// Where the bootstrap secret was written on this start, if it was.
    pub bootstrap_token_path: Option<PathBuf>,
}

/// The router with every route, the choke point and the protective layers.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::scrape))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/jwks", get(oauth::jwks))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/", get(ui::root))
        .route("/ui/login", get(ui::login_page).post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .route("/ui/oidc/start", get(oidc::start))
        .route("/ui/oidc/callback", get(oidc::callback))
        .route("/api/v1/whoami", get(api::whoami))
        .route("/ui/static/custos.css", get(ui::stylesheet))
        .route("/ui", get(ui::models_page))
        .route("/ui/models/{model}", get(ui::model_page))
        .route("/ui/audit", get(ui_audit::audit_page))
        .route("/ui/models/{model}/history", get(ui_audit::history_page))
        .route(
            "/api/v1/models",
            get(api::list_models).post(api::create_model),
        )
        .route("/api/v1/models/{model}", get(api::get_model))
        .route(
            "/api/v1/models/{model}/predictions",
            post(api::post_predictions),
        )
        .route("/api/v1/models/{model}/labels", post(api::post_labels))
        .route("/api/v1/models/{model}/volume", get(api::get_volume))
        .route(
            "/api/v1/models/{model}/features/{feature}/profile",
            get(api::get_profile),
        )
        .route("/api/v1/models/{model}/drift", get(api::get_drift))
        .route("/api/v1/models/{model}/events", get(vault::get_events))
        .route("/api/v1/models/{model}/reveal", post(vault::reveal))
        .route(
            "/api/v1/models/{model}/vault/{token}",
            axum::routing::delete(vault::erase),
        )
        .route(
            "/api/v1/models/{model}/data",
            axum::routing::delete(retention::erase_data),
        )
        .route("/api/v1/models/{model}/quality", get(api::get_quality))
        .route("/api/v1/models/{model}/report", get(api::get_report))
        .route(
            "/api/v1/models/{model}/performance",
            get(api::get_performance),
        )
        .route(
            "/api/v1/models/{model}/monitoring",
            get(api::get_monitoring).put(api::put_monitoring),
        )
        .route(
            "/api/v1/models/{model}/monitoring/history",
            get(history_api::history),
        )
        .route(
            "/api/v1/models/{model}/monitoring/versions/{version}",
            get(history_api::version),
        )
        .route(
            "/api/v1/models/{model}/monitoring/diff",
            get(history_api::diff_versions),
        )
        .route(
            "/api/v1/models/{model}/monitoring/rollback",
            post(history_api::rollback),
        )
        .route(
            "/api/v1/models/{model}/monitoring/changes/{id}/approve",
            post(history_api::approve),
        )
        .route(
            "/api/v1/models/{model}/monitoring/changes/{id}/reject",
            post(history_api::reject),
        )
        .route("/api/v1/models/{model}/lineage", get(history_api::lineage))
        .route(
            "/api/v1/models/{model}/alerts",
            get(alerts_api::get_alerts).put(alerts_api::put_alerts),
        )
        .route(
            "/api/v1/models/{model}/alerts/acknowledge",
            post(alerts_api::acknowledge),
        )
        .route(
            "/api/v1/models/{model}/silences",
            post(alerts_api::add_silence),
        )
        .route("/api/v1/alert-channels", get(alerts_api::list_channels))
        .route(
            "/api/v1/alert-channels/{name}",
            put(alerts_api::put_channel).delete(alerts_api::delete_channel),
        )
        .route("/api/v1/alert-deliveries", get(alerts_api::list_deliveries))
        .route(
            "/api/v1/models/{model}/reference",
            get(api::list_references)
                .post(api::post_reference)
                .layer(DefaultBodyLimit::max(limits.max_reference_bytes)),
        )
        .route(
            "/api/v1/tokens",
            get(api::list_tokens).post(api::create_token),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(api::revoke_token),
        )
        .route("/api/v1/tokens/{id}/rotate", post(tokens_api::rotate))
        .route(
            "/api/v1/users",
            get(users_api::list_users).post(users_api::create_user),
        )
        .route(
            "/api/v1/users/{id}",
            axum::routing::delete(users_api::disable_user),
        )
        .route(
            "/api/v1/users/{id}/roles",
            axum::routing::put(users_api::put_user_roles),
        )
        .route("/api/v1/audit", get(api::get_audit))
        .route("/api/v1/audit/verify", get(audit_api::verify))
        .route(
            "/api/v1/audit/checkpoint",
            get(audit_api::latest_checkpoint),
        )
        .route("/api/v1/audit/keys", get(audit_api::signing_keys))
        .route("/api/v1/audit/proof/inclusion", get(audit_api::inclusion))
        .route(
            "/api/v1/audit/proof/consistency",
            get(audit_api::consistency),
        )
        .route("/api/v1/audit/export", get(audit_api::export))
        .route("/api/v1/audit/hash", post(audit_api::hash_value))
        // Layers run bottom-up on the way in: context first, then limits, then the choke point.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_seconds),
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            context::request_context,
        ))
        .with_state(state)
}

/// Headers every response carries. The CSP forbids scripts, inline styles, frames and every
/// origin but our own.
async fn security_headers(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if api || !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// The store URL a configuration names (the embedded SQLite file in the data directory unless a
/// database URL is set).
pub fn database_url(config: &config::Config) -> Result<String, StartError> {
    match &config.store.database_url {
        Some(url) => Ok(url.expose().to_owned()),
        None => {
            let path = config.server.data_dir.join("custos.db");
            let path = path
                .to_str()
                .ok_or_else(|| StartError::Config("data_dir must be valid UTF-8".into()))?;
            Ok(format!("sqlite://{path}"))
        }
    }
}

impl App {
    /// The composition root: prepares the data directory, opens and migrates the store, loads
    /// keys, creates the bootstrap secret on first start, and assembles the state.
    pub async fn build(config: config::Config, clock: Arc<dyn Clock>) -> Result<App, StartError> {
        if let Some(ldap) = &config.ldap {
            ldap.check_files().map_err(StartError::Config)?;
        }
        let oidc = match &config.oidc {
            Some(oidc) => {
                oidc.check_files().map_err(StartError::Config)?;
                Some(Arc::new(
                    oidc::OidcClient::new(oidc).map_err(StartError::Config)?,
                ))
            }
            None => None,
        };
        bootstrap::prepare_data_dir(&config.server.data_dir)?;
        let url = database_url(&config)?;
        let store = Store::open(&url).await.map_err(|source| StartError::Open {
            url: custos_store::redact_url(&url),
            source,
        })?;
        store.migrate().await?;
        let store = match audit_sinks::AuditSinks::from_config(&config.audit.sinks)
            .map_err(|e| StartError::Config(e.to_string()))?
        {
            Some(sinks) => store.with_audit_mirror(sinks),
            None => store,
        };
        if config.store.database_url.is_none() {
            bootstrap::restrict_database_files(&config.server.data_dir)?;
        }
        let ring = keys::load_kek_ring(&config, &store).await?;
        let key_service = keys::KeyService::open(
            ring,
            keys::kek_source(&config),
            store.clone(),
            Arc::clone(&clock),
        )
        .await?;
        let bootstrap_token_path =
            bootstrap::ensure_bootstrap_secret(&store, &key_service, &config.server.data_dir)
                .await?;
        let mut state = AppState::new(store, key_service, clock, config);
        state.oidc = oidc;
        // The log's name and first signing key exist before anything is appended, so the first
        // checkpoint never waits on key creation.
        audit_log::current_signer(&state)
            .await
            .map_err(|e| StartError::Config(format!("audit log: {e}")))?;
        Ok(App {
            state,
            bootstrap_token_path,
        })
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests. With `[server.tls]`
    /// configured this is [`App::serve_tls`].
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        if self.state.config.server.tls.is_some() {
            return self.serve_tls(listener, shutdown).await;
        }
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        check_listen_address(addr, self.state.config.server.allow_plaintext_behind_proxy)?;
        if !addr.ip().is_loopback() {
            // Said at every start, so a proxy-less deployment cannot go unnoticed for long.
            tracing::warn!(
                %addr,
                "serving plain HTTP on a non-loopback address because \
                 server.allow_plaintext_behind_proxy is set: only safe behind a TLS-terminating \
                 proxy on a trusted network; [server.tls] serves TLS directly"
            );
        }
        let running = Running::start(
            self.state,
            serde_json::json!({ "listen": addr.to_string() }),
        )
        .await?;
        let app = router(running.state.clone());
        let result = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| StartError::Io(e.to_string()));
        running.stop().await;
        result
    }
}

/// A serving instance's background work (ingest jobs, audit checkpoints, metrics), started
/// with the `server.start` audit entry and stopped together with `server.stop` and a final
/// checkpoint. Used by [`App::serve`] and by a sealed start once it unseals.
pub(crate) struct Running {
    pub(crate) state: AppState,
    jobs: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub(crate) async fn start(
        state: AppState,
        detail: serde_json::Value,
    ) -> Result<Running, StartError> {
        system_audit(&state, "server.start", detail).await?;
        let jobs = vec![
            jobs::spawn(state.clone()),
            audit_log::spawn(state.clone()),
            metrics::spawn(state.clone()),
            alerting::spawn(state.clone()),
            retention::spawn(state.clone()),
        ];
        Ok(Running { state, jobs })
    }

    pub(crate) async fn stop(self) {
        for job in &self.jobs {
            job.abort();
        }
        let state = self.state;
        if let Err(e) = system_audit(&state, "server.stop", serde_json::json!({})).await {
            tracing::error!(error = %e, "could not record the stop");
        }
        // Sign what is unsigned so a cut of the last minute's entries stays detectable.
        if let Err(e) = audit_log::checkpoint_once(&state, true).await {
            tracing::error!(error = %e, "could not sign the final audit checkpoint");
        }
        state.store.close().await;
    }
}

/// Plain HTTP is only for loopback unless the operator says otherwise in writing. (A TLS
/// listener, `[server.tls]`, may use any address and is not checked here.)
pub fn check_listen_address(
    addr: SocketAddr,
    allow_plaintext_behind_proxy: bool,
) -> Result<(), StartError> {
    if addr.ip().is_loopback() || allow_plaintext_behind_proxy {
        Ok(())
    } else {
        Err(StartError::Config(format!(
            "refusing to serve plain HTTP on non-loopback address {addr}: configure [server.tls] \
             (cert_file, key_file), or put a TLS-terminating proxy in front and set \
             server.allow_plaintext_behind_proxy = true, or listen on 127.0.0.1"
        )))
    }
}

async fn system_audit(
    state: &AppState,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), StartError> {
    let event = AuditEvent::system(state.clock.now(), action, "server", detail);
    state.store.append_audit(&event).await?;
    Ok(())
}
