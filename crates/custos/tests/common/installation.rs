//! An installation for the tests that run the real `custos serve` and `custos keys` against one
//! data directory and, optionally, a PostgreSQL database of its own: how to start the server,
//! run a key command, count the keys per KEK version, and send and read data the same way
//! (`keys_cli.rs`, `keys_hsm.rs`).

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct PgDb {
    name: String,
    url: String,
    admin: String,
}

impl PgDb {
    fn create(admin: &str) -> PgDb {
        let name = format!(
            "custos_keys_{}_{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(super::free_port())
        );
        psql(admin, &format!("CREATE DATABASE {name}"));
        let root = admin.rsplit_once('/').map_or(admin, |(r, _)| r);
        PgDb {
            url: format!("{root}/{name}"),
            name,
            admin: admin.to_owned(),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin.as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

pub fn psql(admin: &str, sql: &str) {
    let out = Command::new("psql")
        .args([admin, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql must be installed for the PostgreSQL run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where one installation keeps its state.
pub struct Install {
    dir: tempfile::TempDir,
    pub data: PathBuf,
    db: Option<PgDb>,
    /// A configuration file given to every command (`--config`), if any.
    pub config: Option<PathBuf>,
    /// Environment given to every command.
    env: Vec<(String, String)>,
}

impl Install {
    pub fn new(postgres: bool) -> Install {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let db =
            postgres.then(|| PgDb::create(&std::env::var("CUSTOS_TEST_POSTGRES_URL").unwrap()));
        Install {
            dir,
            data,
            db,
            config: None,
            env: Vec::new(),
        }
    }

    /// Writes `text` as the installation's configuration file, given to every command.
    pub fn with_config(mut self, text: &str) -> Install {
        let path = self.dir.path().join("custos.toml");
        std::fs::write(&path, text).unwrap();
        self.config = Some(path);
        self
    }

    /// Sets an environment variable for every command.
    pub fn with_env(mut self, key: &str, value: &str) -> Install {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn store_args(&self) -> Vec<String> {
        let mut args = vec!["--data-dir".to_owned(), self.data.display().to_string()];
        if let Some(config) = &self.config {
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        if let Some(db) = &self.db {
            args.extend(["--database-url".to_owned(), db.url.clone()]);
        }
        args
    }

    pub fn store_url(&self) -> String {
        match &self.db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.data.join("custos.db").display()),
        }
    }

    pub fn serve(&self, port: u16, envs: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
        cmd.arg("serve")
            .args(self.store_args())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("CUSTOS_LOG__LEVEL", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    pub fn keys(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_custos"))
            .arg("keys")
            .args(args)
            .args(self.store_args())
            .env("CUSTOS_LOG__LEVEL", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        println!("$ custos keys {}\n{}", args.join(" "), text(&out));
        out
    }

    pub async fn usage(&self) -> std::collections::BTreeMap<u32, custos_store::KekUsage> {
        let store = custos_store::Store::open(&self.store_url()).await.unwrap();
        let usage = store.kek_usage().await.unwrap();
        store.close().await;
        usage
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn rows(prefix: &str, day: &str, n: usize, shift: bool) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let amount = 20.0 + (i % 80) as f64 + if shift { 150.0 } else { 0.0 };
            let country = ["DE", "FR", "US", "BR"][i % 4];
            json!({
                "event_id": format!("{prefix}-{i}"),
                "ts": format!("{day}T{:02}:{:02}:00Z", (i / 60) % 24, i % 60),
                "amount": amount,
                "country": country,
                "email": format!("user{}@example.com", i % 37),
                "score": (i % 10) as f64 / 10.0,
            })
        })
        .collect()
}

pub async fn ingest(http: &reqwest::Client, port: u16, token: &str, rows: &[Value]) {
    let mut body = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut body, row).unwrap();
        body.push(b'\n');
    }
    let r = http
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/models/fraud-v3/predictions"
        ))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());
}

/// Drift of `current` against `reference` (each one day); the JSON answer.
pub async fn drift(
    http: &reqwest::Client,
    port: u16,
    token: &str,
    reference: &str,
    current: &str,
) -> Value {
    let next = |day: &str| {
        let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        (d + chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string()
    };
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/models/fraud-v3/drift?reference_start={reference}T00:00:00Z\
         &reference_end={}T00:00:00Z&current_start={current}T00:00:00Z&current_end={}T00:00:00Z",
        next(reference),
        next(current)
    );
    let r = http.get(url).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

pub fn psi(body: &Value, feature: &str) -> f64 {
    body["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == feature)
        .unwrap()["psi"]
        .as_f64()
        .unwrap()
}

/// The three days the key tests ingest.
pub const DAY1: &str = "2026-11-20";
pub const DAY2: &str = "2026-11-21";
pub const DAY3: &str = "2026-11-22";

/// `/healthz`'s status code and body.
pub async fn health(http: &reqwest::Client, port: u16) -> Option<(u16, Value)> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

pub async fn wait_health(http: &reqwest::Client, port: u16, want: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some((status, body)) = health(http, port).await
            && status == want
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz did not answer {want} within {within:?}");
}
