//! Shared server state: the handles every handler may use, built once by the composition root.

use crate::auth::FailureLimiter;
use crate::config::Config;
use crate::error::ApiError;
use crate::keys::KeyService;
use crate::sessions::Sessions;
use chrono::{DateTime, Utc};
use custos_core::{Clock, ModelName, ModelSchema, ModelSpec};
use custos_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A registered model as the server uses it.
#[derive(Debug)]
pub struct ModelEntry {
    /// Store id.
    pub id: i64,
    /// Its checked schema.
    pub schema: ModelSchema,
    /// The registration body, as stored.
    pub spec_json: String,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Keys.
    pub keys: Arc<KeyService>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Web sessions.
    pub sessions: Arc<Sessions>,
    /// Failed-authentication throttle.
    pub failures: Arc<FailureLimiter>,
    /// Custos's OAuth access-token keys and the cached keys of trusted identity providers.
    pub oauth: Arc<crate::oauth::OauthKeys>,
    /// Request budgets per principal and per client address (see [`crate::limits`]).
    pub rate_limits: Arc<crate::limits::RateLimiter>,
    /// The OpenID client for single sign-on, when `[oidc]` is configured (set by
    /// [`crate::App::build`], which checks its files first).
    pub oidc: Option<Arc<crate::oidc::OidcClient>>,
    /// Password hashing, bounded (see [`crate::passwords`]).
    pub passwords: Arc<crate::passwords::Passwords>,
    /// Admission to the ingest path: bounded so a flood gets 429 instead of unbounded queues.
    pub ingest_admission: Arc<Semaphore>,
    /// Ingest requests processed at once.
    pub ingest_workers: Arc<Semaphore>,
    /// Counters of the ingest path and the cached monitoring results, for `/metrics`.
    pub telemetry: Arc<crate::metrics::Telemetry>,
    models: Arc<RwLock<HashMap<String, Arc<ModelEntry>>>>,
    token_touches: Arc<Mutex<HashMap<String, Instant>>>,
}

const TOKEN_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

impl AppState {
    /// Assembles the state.
    pub fn new(store: Store, keys: KeyService, clock: Arc<dyn Clock>, config: Config) -> Self {
        let limits = &config.limits;
        let oauth = Arc::new(crate::oauth::OauthKeys::new(keys.oauth_seed()));
        Self {
            oauth,
            oidc: None,
            ingest_admission: Arc::new(Semaphore::new(limits.max_concurrent_ingest * 2)),
            ingest_workers: Arc::new(Semaphore::new(limits.max_concurrent_ingest)),
            telemetry: Arc::new(crate::metrics::Telemetry::new(&config.metrics)),
            rate_limits: Arc::new(crate::limits::RateLimiter::new(limits)),
            sessions: Arc::new(Sessions::new(
                config.server.session_idle_minutes,
                config.server.session_max_hours,
            )),
            store,
            keys: Arc::new(keys),
            clock,
            config: Arc::new(config),
            failures: Arc::new(FailureLimiter::default()),
            passwords: Arc::new(crate::passwords::Passwords::default()),
            models: Arc::new(RwLock::new(HashMap::new())),
            token_touches: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The model of that name, from the cache or the store.
    pub async fn model(&self, name: &ModelName) -> Result<Arc<ModelEntry>, ApiError> {
        if let Some(entry) = self
            .models
            .read()
            .ok()
            .and_then(|m| m.get(name.as_str()).cloned())
        {
            return Ok(entry);
        }
        let row = self
            .store
            .get_model(name.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found("model"))?;
        let entry = Arc::new(Self::entry_from_row(row)?);
        if let Ok(mut m) = self.models.write() {
            m.insert(name.as_str().to_owned(), Arc::clone(&entry));
        }
        Ok(entry)
    }

    /// Turns a stored model row into a checked entry. A stored spec that no longer checks is
    /// a server-side problem, not the caller's.
    pub fn entry_from_row(row: custos_store::ModelRow) -> Result<ModelEntry, ApiError> {
        let spec: ModelSpec = serde_json::from_str(&row.spec_json)
            .map_err(|e| ApiError::internal(format!("stored model spec unreadable: {e}")))?;
        let schema = ModelSchema::new(spec)
            .map_err(|e| ApiError::internal(format!("stored model spec invalid: {e}")))?;
        Ok(ModelEntry {
            id: row.id,
            schema,
            spec_json: row.spec_json,
            created_at: row.created_at,
        })
    }

    /// Records a token's use, at most once a minute per token, off the request path.
    pub fn touch_token_later(&self, id: String) {
        let due = self.token_touches.lock().is_ok_and(|mut t| {
            if t.len() > 100_000 {
                t.clear();
            }
            let due = t
                .get(&id)
                .is_none_or(|last| last.elapsed() >= TOKEN_TOUCH_INTERVAL);
            if due {
                t.insert(id.clone(), Instant::now());
            }
            due
        });
        if due {
            let store = self.store.clone();
            let now = self.clock.now();
            tokio::spawn(async move {
                if let Err(e) = store.touch_token(&id, now).await {
                    tracing::warn!(error = %e, "could not record token use");
                }
            });
        }
    }
}
