//! Test harness: boots a real Custos server on 127.0.0.1:0 over a fresh SQLite data directory or
//! a fresh PostgreSQL database, and talks to it over HTTP like any client.

#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custos_core::SystemClock;
use custos_server::App;
use custos_server::config::{Config, Secret};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

fn admin_url() -> String {
    std::env::var("CUSTOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([admin_url().as_str(), "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql must be installed for the PostgreSQL tests");
    assert!(
        out.status.success(),
        "psql failed (is PostgreSQL running on 127.0.0.1:5432?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgDatabase {
    pub fn create() -> Self {
        let name = format!("custos_it_{}", custos_server::context::random_id());
        psql(&format!("CREATE DATABASE {name}"));
        let base = admin_url();
        let root = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(r, _)| r)
            .to_owned();
        Self {
            url: format!("{root}/{name}"),
            name,
        }
    }

    /// The database as `pg_dump` sees it, in plain SQL.
    pub fn dump(&self) -> Vec<u8> {
        let out = Command::new("pg_dump")
            .args([self.url.as_str(), "--no-owner"])
            .output()
            .expect("pg_dump must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                admin_url().as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// Where a server keeps its state, reusable across restarts.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDatabase>,
}

impl Site {
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let pg = (backend == Backend::Postgres).then(PgDatabase::create);
        Self { dir, pg }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.server.data_dir = self.data_dir();
        config.store.database_url = self.pg.as_ref().map(|pg| Secret::new(pg.url.clone()));
        config
    }

    pub async fn start(&self) -> Server {
        self.start_with(self.config()).await
    }

    pub async fn start_with(&self, config: Config) -> Server {
        self.start_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(
        &self,
        config: Config,
        clock: Arc<dyn custos_core::Clock>,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.start_on(config, clock, listener).await
    }

    /// Starts on a listener bound beforehand, for configurations that must name the server's
    /// own address (a single sign-on callback URL).
    pub async fn start_on(
        &self,
        config: Config,
        clock: Arc<dyn custos_core::Clock>,
        listener: tokio::net::TcpListener,
    ) -> Server {
        let app = App::build(config, clock).await.unwrap();
        let state = app.state.clone();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        let admin = std::fs::read_to_string(self.data_dir().join("bootstrap-token"))
            .unwrap()
            .trim()
            .to_owned();
        Server {
            addr,
            admin,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            stop: Some(tx),
            handle: Some(handle),
            state,
        }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub admin: String,
    pub http: reqwest::Client,
    pub state: custos_server::state::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), custos_server::StartError>>>,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(
            reqwest::Method::POST,
            path,
            token,
            Some(("application/json", serde_json::to_vec(body).unwrap())),
        )
        .await
    }

    pub async fn post_ndjson(&self, path: &str, token: Option<&str>, rows: &[Value]) -> Reply {
        let mut body = Vec::new();
        for row in rows {
            serde_json::to_writer(&mut body, row).unwrap();
            body.push(b'\n');
        }
        self.send(
            reqwest::Method::POST,
            path,
            token,
            Some(("application/x-ndjson", body)),
        )
        .await
    }

    pub async fn register_fraud_model(&self) {
        let r = self
            .post_json("/api/v1/models", Some(&self.admin), &fraud_spec())
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    /// Creates a token with the given (action, model) scopes and returns its secret.
    pub async fn token(&self, scopes: &[(&str, &str)]) -> String {
        let scopes: Vec<Value> = scopes
            .iter()
            .map(|(a, m)| json!({"action": a, "model": m}))
            .collect();
        let r = self
            .post_json(
                "/api/v1/tokens",
                Some(&self.admin),
                &json!({"description": "test", "scopes": scopes}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["secret"].as_str().unwrap().to_owned()
    }
}

/// The registration body from the foundation issue, verbatim.
pub fn fraud_spec() -> Value {
    serde_json::from_str(
        r#"{"name": "fraud-v3",
     "id_field": "event_id", "timestamp_field": "ts",
     "features": [
       {"name": "amount",  "type": "numeric"},
       {"name": "country", "type": "categorical"},
       {"name": "email",   "type": "categorical", "pii": true, "masking": "hmac"}],
     "prediction": {"name": "score", "type": "binary_score"}}"#,
    )
    .unwrap()
}

/// A deterministic row generator; `shift` moves `amount` and the country mix. Each prefix
/// gets its own stream (the seed hashes every byte of it), so hours generated as `c0`, `c1`, …
/// are independent samples rather than copies of one another.
pub fn fraud_rows(
    prefix: &str,
    start: chrono::DateTime<chrono::Utc>,
    n: usize,
    shift: bool,
) -> Vec<Value> {
    // FNV-1a over the prefix; xorshift must not start at 0.
    let seed = prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut state = (0x2545_F491_4F6C_DD1Du64 ^ seed).max(1);
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let at = start + chrono::Duration::seconds((i as i64 * 3_600) / n.max(1) as i64);
            let base = 20.0 + 80.0 * uniform();
            let amount = if shift { base * 2.5 + 50.0 } else { base };
            let country = if shift {
                ["BR", "NG", "IN", "DE"][(uniform() * 4.0) as usize % 4]
            } else {
                ["DE", "FR", "US", "DE"][(uniform() * 4.0) as usize % 4]
            };
            json!({
                "event_id": format!("{prefix}-{i}"),
                "ts": at.to_rfc3339(),
                "amount": (amount * 100.0).round() / 100.0,
                "country": country,
                "email": format!("user{}@example.com", i % 97),
                "score": (uniform() * 1000.0).round() / 1000.0,
            })
        })
        .collect()
}

/// A browser without JavaScript: it keeps the CSRF cookie of one sign-in page and posts the
/// form with it.
pub struct FormBrowser {
    client: reqwest::Client,
    csrf_cookie: String,
    csrf: String,
}

/// What the sign-in form answered.
pub struct FormAnswer {
    pub status: u16,
    pub body: String,
    pub session: Option<String>,
}

impl FormBrowser {
    pub async fn open(s: &Server) -> FormBrowser {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = client.get(s.url("/ui/login")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let csrf_cookie = page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let csrf = csrf_cookie.split_once('=').unwrap().1.to_owned();
        let html = page.text().await.unwrap();
        assert!(html.contains(&csrf) && html.contains("name=\"username\""));
        FormBrowser {
            client,
            csrf_cookie,
            csrf,
        }
    }

    pub async fn sign_in(&self, s: &Server, username: &str, password: &str) -> FormAnswer {
        let r = self
            .client
            .post(s.url("/ui/login"))
            .header("cookie", &self.csrf_cookie)
            .form(&[
                ("username", username),
                ("secret", password),
                ("csrf", self.csrf.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let session = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("custos_session="))
            .map(|v| v.split(';').next().unwrap().to_owned());
        let body = r.text().await.unwrap();
        FormAnswer {
            status,
            body,
            session,
        }
    }
}

impl FormBrowser {
    /// Signs in and returns the session cookie (`custos_session=…`), failing the test otherwise.
    pub async fn session(&self, s: &Server, username: &str, password: &str) -> String {
        let answer = self.sign_in(s, username, password).await;
        assert_eq!(answer.status, 303, "{username}: {}", answer.body);
        answer.session.expect("a session cookie")
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Fails the test if any needle occurs in what the store keeps: every file of the data directory
/// (SQLite, keys and the WAL included) or a `pg_dump` of the database (PostgreSQL). Checks that
/// more than 10,000 bytes were read, so an empty scan cannot pass.
pub fn assert_absent_from_store(site: &Site, needles: &[&str]) {
    let mut scanned = 0;
    match &site.pg {
        None => {
            for entry in std::fs::read_dir(site.data_dir()).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let bytes = std::fs::read(&path).unwrap();
                    scanned += bytes.len();
                    for needle in needles {
                        assert!(
                            !contains(&bytes, needle),
                            "{needle} found in {}",
                            path.display()
                        );
                    }
                }
            }
        }
        Some(pg) => {
            let dump = pg.dump();
            scanned = dump.len();
            assert!(
                contains(&dump, "CREATE TABLE public.batches"),
                "the dump holds the tables"
            );
            for needle in needles {
                assert!(!contains(&dump, needle), "{needle} found in pg_dump");
            }
        }
    }
    assert!(scanned > 10_000, "scanned only {scanned} bytes");
}

/// A loopback port nobody listens on right now (a service started on it may still lose a race).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
