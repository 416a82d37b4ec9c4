//! Sealed start: the server runs, but without its keys.
//!
//! When the store already holds wrapped keys and the key provider has no KEK that unwraps them
//! (key directory missing or unreadable, version absent, PKCS#11 module or token unreachable,
//! PIN file not mounted — [`KeyError::Unavailable`]), `custos
//! serve` does not exit and never runs without encryption: it listens, answers `GET /healthz`
//! with 503 `{"status": "sealed"}`, answers every other request with 503 and a JSON error, and
//! writes no audit entry (that needs keys). A background task retries [`App::build`] every
//! `keys.unseal_retry_seconds`; once the keys are back it starts the normal background work
//! (recording `server.start` with `"unsealed": true`) and every request goes to the normal
//! router from then on.
//!
//! Owns the sealed router and the retry. Loose key-file permissions, a wrong key, a PIN the
//! token refuses or damage are not "unavailable": they still refuse to start.

use crate::config::Config;
use crate::error::ApiError;
use crate::keys::KeyError;
use crate::{App, Running, StartError, router};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use custos_core::Clock;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tower::ServiceExt as _;

/// The normal router once unsealed; `None` while sealed.
type Slot = Arc<RwLock<Option<Router>>>;

/// Whether a start failure means "start sealed and retry".
pub fn is_sealed_start(error: &StartError) -> bool {
    matches!(error, StartError::Keys(e) if e.is_unavailable())
}

async fn dispatch(State(slot): State<Slot>, request: Request) -> Response {
    let unsealed = slot.read().ok().and_then(|r| r.clone());
    if let Some(router) = unsealed {
        return match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    if request.uri().path() == "/healthz" {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(custos_proto::Health {
                status: "sealed".into(),
            }),
        )
            .into_response();
    }
    ApiError::unavailable(
        "the server is sealed: its key-encryption keys are unavailable; it unseals by itself \
         once they are back",
    )
    .into_response()
}

/// Tries to build the server until the keys are back, then starts its background work and
/// opens the router. Runs until unsealed (or aborted at shutdown).
async fn unseal(
    config: Config,
    clock: Arc<dyn Clock>,
    slot: Slot,
    detail: serde_json::Value,
) -> Option<Running> {
    let every = Duration::from_secs(config.keys.unseal_retry_seconds.max(1));
    loop {
        tokio::time::sleep(every).await;
        match App::build(config.clone(), Arc::clone(&clock)).await {
            Ok(app) => {
                let mut detail = detail.clone();
                if let Some(map) = detail.as_object_mut() {
                    map.insert("unsealed".into(), true.into());
                }
                let running = match Running::start(app.state, detail).await {
                    Ok(running) => running,
                    Err(e) => {
                        tracing::error!(error = %e, "keys are back but the start could not be recorded; staying sealed");
                        continue;
                    }
                };
                let opened = match slot.write() {
                    Ok(mut open) => {
                        *open = Some(router(running.state.clone()));
                        true
                    }
                    Err(_) => false,
                };
                if !opened {
                    tracing::error!("sealed-state lock poisoned; staying sealed");
                    running.stop().await;
                    return None;
                }
                tracing::info!("unsealed: the key-encryption keys are back; serving");
                return Some(running);
            }
            Err(StartError::Keys(e @ KeyError::Unavailable(_))) => {
                tracing::warn!(error = %e, "still sealed");
            }
            Err(e) => tracing::error!(error = %e, "still sealed: the start failed"),
        }
    }
}

/// Serves sealed on `listener` until `shutdown`, unsealing when the keys return. Same listener
/// rules as [`App::serve`] (TLS from `[server.tls]`, plain HTTP only on loopback unless allowed).
pub async fn serve_sealed(
    config: Config,
    clock: Arc<dyn Clock>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Io(e.to_string()))?;
    let tls = config.server.tls.is_some();
    if !tls {
        crate::check_listen_address(addr, config.server.allow_plaintext_behind_proxy)?;
    }
    tracing::warn!(
        retry_seconds = config.keys.unseal_retry_seconds.max(1),
        "starting SEALED: the store holds wrapped keys but the key-encryption keys are \
         unavailable; every request but /healthz answers 503 until they are back"
    );
    let slot: Slot = Arc::default();
    let app = Router::new()
        .fallback(dispatch)
        .with_state(Arc::clone(&slot));
    let detail = serde_json::json!({ "listen": addr.to_string(), "tls": tls });
    let retry = tokio::spawn(unseal(config.clone(), clock, slot, detail));
    let result = if tls {
        crate::tls::serve_router(&config, listener, app, shutdown).await
    } else {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| StartError::Io(e.to_string()))
    };
    retry.abort();
    if let Ok(Some(running)) = retry.await {
        running.stop().await;
    }
    result
}
