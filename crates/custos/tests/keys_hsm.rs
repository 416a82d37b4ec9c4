//! The PKCS#11 key provider end to end, against a real SoftHSM2 token made in a temporary
//! directory: a server whose key-encryption keys live in the token ingests and reads back data
//! while the data directory and the store hold no KEK; `custos keys rotate` creates version 2
//! inside the token while the server runs, `rewrap` moves every stored key to it, `retire 1`
//! destroys the token object (refused while in use); after a restart every day still reads.
//! Then the sealed start: the token moved away → `/healthz` says sealed and the API answers 503;
//! token back → it unseals. A PIN the token refuses stops the start instead (no retry loop that
//! would lock the PIN).
//!
//! Skipped with a loud message only when SoftHSM2 is not installed and `CI` is unset; in CI a
//! missing SoftHSM2 fails. Runs on SQLite, and on PostgreSQL too when `CUSTOS_TEST_POSTGRES_URL`
//! is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "custos-test";
const PIN: &str = "1234";

fn softhsm_present() -> bool {
    let installed = Path::new(MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        && Command::new("pkcs11-tool").arg("--help").output().is_ok();
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "SoftHSM2/OpenSC are not installed (apt-get install softhsm2 opensc) but CI is set: \
             the PKCS#11 tests must run in CI"
        );
        eprintln!(
            "\n!!!!! SKIPPED: SoftHSM2 is not installed (apt-get install softhsm2 opensc); the \
             PKCS#11 key provider was NOT tested !!!!!\n"
        );
    }
    installed
}

/// A SoftHSM2 configuration with one initialised token and a PIN file, in a temporary directory.
struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    fn new() -> SoftHsm {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                 slots.removable = false\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm { dir };
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN])
            .args(["--so-pin", "12345678"])
            .env("SOFTHSM2_CONF", hsm.conf())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        write_private(&hsm.pin_file(), &format!("{PIN}\n"));
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn pin_file(&self) -> PathBuf {
        self.dir.path().join("hsm.pin")
    }

    fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// The token's secret-key objects as `pkcs11-tool` lists them.
    fn list_keys(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                MODULE,
                "--token-label",
                TOKEN,
                "--login",
                "--pin",
                PIN,
            ])
            .args(["--list-objects", "--type", "secrkey"])
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
struct PgDb {
    name: String,
    url: String,
    admin: String,
}

impl PgDb {
    fn create(admin: &str) -> PgDb {
        let name = format!(
            "custos_keys_{}_{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(common::free_port())
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

fn psql(admin: &str, sql: &str) {
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
struct Install {
    _dir: tempfile::TempDir,
    data: PathBuf,
    db: Option<PgDb>,
    /// The configuration file (`[keys.pkcs11]`) and the SoftHSM configuration.
    config: PathBuf,
    softhsm_conf: PathBuf,
}

impl Install {
    fn new(postgres: bool, hsm: &SoftHsm) -> Install {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let db =
            postgres.then(|| PgDb::create(&std::env::var("CUSTOS_TEST_POSTGRES_URL").unwrap()));
        let config = dir.path().join("custos.toml");
        std::fs::write(
            &config,
            format!(
                "[keys.pkcs11]\nmodule = \"{MODULE}\"\ntoken_label = \"{TOKEN}\"\n\
                 pin_file = \"{}\"\n",
                hsm.pin_file().display()
            ),
        )
        .unwrap();
        Install {
            _dir: dir,
            data,
            db,
            config,
            softhsm_conf: hsm.conf(),
        }
    }

    fn store_args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_owned(),
            self.data.display().to_string(),
            "--config".to_owned(),
            self.config.display().to_string(),
        ];
        if let Some(db) = &self.db {
            args.extend(["--database-url".to_owned(), db.url.clone()]);
        }
        args
    }

    fn store_url(&self) -> String {
        match &self.db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.data.join("custos.db").display()),
        }
    }

    fn serve(&self, port: u16, envs: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
        cmd.arg("serve")
            .args(self.store_args())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("CUSTOS_LOG__LEVEL", "warn")
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    fn keys(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_custos"))
            .arg("keys")
            .args(args)
            .args(self.store_args())
            .env("CUSTOS_LOG__LEVEL", "warn")
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .output()
            .unwrap();
        println!("$ custos keys {}\n{}", args.join(" "), text(&out));
        out
    }

    async fn usage(&self) -> std::collections::BTreeMap<u32, custos_store::KekUsage> {
        let store = custos_store::Store::open(&self.store_url()).await.unwrap();
        let usage = store.kek_usage().await.unwrap();
        store.close().await;
        usage
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rows(prefix: &str, day: &str, n: usize, shift: bool) -> Vec<Value> {
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

async fn ingest(http: &reqwest::Client, port: u16, token: &str, rows: &[Value]) {
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
async fn drift(
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

fn psi(body: &Value, feature: &str) -> f64 {
    body["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == feature)
        .unwrap()["psi"]
        .as_f64()
        .unwrap()
}

/// `/healthz`'s status code and body.
async fn health(http: &reqwest::Client, port: u16) -> Option<(u16, Value)> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

async fn wait_health(http: &reqwest::Client, port: u16, want: u16, within: Duration) -> Value {
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

const DAY1: &str = "2026-11-20";
const DAY2: &str = "2026-11-21";
const DAY3: &str = "2026-11-22";

async fn hsm_lifecycle(postgres: bool) {
    if !softhsm_present() {
        return;
    }
    let started = Instant::now();
    let hsm = SoftHsm::new();
    let install = Install::new(postgres, &hsm);
    let http = reqwest::Client::new();
    let port = common::free_port();
    let mut server = install.serve(port, &[]);
    common::wait_healthy(&http, port).await;
    let admin = common::register_fraud_model(&http, &install.data, port).await;
    ingest(&http, port, &admin, &rows("d1", DAY1, 300, false)).await;
    ingest(&http, port, &admin, &rows("d2", DAY2, 300, true)).await;
    let before = drift(&http, port, &admin, DAY1, DAY2).await;
    assert!(psi(&before, "amount") > 1.0, "{before}");

    // The KEK is in the token, made by Custos: sensitive, never extractable. No key directory.
    let listing = hsm.list_keys();
    assert!(listing.contains("custos-kek-v1"), "{listing}");
    assert!(
        listing.contains("sensitive") && listing.contains("never extractable"),
        "{listing}"
    );
    assert!(
        !install.data.join("keys").exists(),
        "no local KEK directory"
    );
    let out = install.keys(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("PKCS#11 token"), "{}", text(&out));
    let usage = install.usage().await;
    assert_eq!(usage.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        usage[&1].data_keys, 4,
        "two days, each with an events and a profiles key"
    );
    let secrets = usage[&1].secrets;

    // Rotate while the server runs: version 2 is created inside the token and used for the
    // next new day.
    let out = install.keys(&["retire", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("it is the current version"),
        "{}",
        text(&out)
    );
    let out = install.keys(&["rotate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("KEK version 2 is now current"));
    ingest(&http, port, &admin, &rows("d3", DAY3, 300, false)).await;
    let usage = install.usage().await;
    assert_eq!(usage[&2].data_keys, 2, "{usage:?}");
    let out = install.keys(&["retire", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("refusing to retire KEK version 1: it still wraps 4 data keys"),
        "{}",
        text(&out)
    );
    assert!(hsm.list_keys().contains("custos-kek-v1"));

    // Rewrap, then retire: the token object is destroyed.
    let out = install.keys(&["rewrap", "--batch", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("re-wrapped {} keys", 4 + secrets)));
    let usage = install.usage().await;
    assert_eq!(
        usage.keys().copied().collect::<Vec<_>>(),
        vec![2],
        "{usage:?}"
    );
    let after = drift(&http, port, &admin, DAY1, DAY2).await;
    assert_eq!(psi(&after, "amount"), psi(&before, "amount"));
    let out = install.keys(&["retire", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = hsm.list_keys();
    assert!(!listing.contains("custos-kek-v1"), "{listing}");
    assert!(listing.contains("custos-kek-v2"), "{listing}");

    // After a restart (ring read from the token: version 2 only) every day still reads.
    server.kill().unwrap();
    server.wait().unwrap();
    let port = common::free_port();
    let mut server = install.serve(port, &[]);
    common::wait_healthy(&http, port).await;
    let again = drift(&http, port, &admin, DAY1, DAY2).await;
    assert_eq!(psi(&again, "amount"), psi(&before, "amount"));
    drift(&http, port, &admin, DAY2, DAY3).await;
    server.kill().unwrap();
    server.wait().unwrap();

    // Token unreachable (its directory moved away): sealed, not a refusal, no new key.
    let token_dir = std::fs::read_dir(hsm.tokens())
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let away = hsm.dir.path().join("token-away");
    std::fs::rename(&token_dir, &away).unwrap();
    let port = common::free_port();
    let retry = [("CUSTOS_KEYS__UNSEAL_RETRY_SECONDS", "1")];
    let mut server = install.serve(port, &retry);
    let body = wait_health(&http, port, 503, Duration::from_secs(30)).await;
    assert_eq!(body["status"], "sealed");
    let r = http
        .get(format!("http://127.0.0.1:{port}/api/v1/models"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("sealed"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(health(&http, port).await.unwrap().0, 503);
    assert!(
        !install.data.join("keys").exists(),
        "a sealed start makes no local key"
    );

    // Token back: it unseals by itself (a fresh C_Initialize sees the token) and serves.
    std::fs::rename(&away, &token_dir).unwrap();
    let body = wait_health(&http, port, 200, Duration::from_secs(20)).await;
    assert_eq!(body["status"], "ok");
    drift(&http, port, &admin, DAY1, DAY3).await;
    server.kill().unwrap();
    server.wait().unwrap();

    // PIN file not there yet: sealed as well; once it is written, unsealed.
    let pin = std::fs::read_to_string(hsm.pin_file()).unwrap();
    std::fs::remove_file(hsm.pin_file()).unwrap();
    let port = common::free_port();
    let mut server = install.serve(port, &retry);
    let body = wait_health(&http, port, 503, Duration::from_secs(30)).await;
    assert_eq!(body["status"], "sealed");
    write_private(&hsm.pin_file(), &pin);
    wait_health(&http, port, 200, Duration::from_secs(20)).await;
    server.kill().unwrap();
    server.wait().unwrap();

    // The PIN from the environment instead of a file (numeric, as PINs are).
    let env_config = install.config.with_file_name("custos-env-pin.toml");
    std::fs::write(
        &env_config,
        format!("[keys.pkcs11]\nmodule = \"{MODULE}\"\ntoken_label = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let mut args = install.store_args();
    let at = args.iter().position(|a| a == "--config").unwrap();
    args[at + 1] = env_config.display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["keys", "status"])
        .args(&args)
        .env("SOFTHSM2_CONF", &install.softhsm_conf)
        .env("CUSTOS_KEYS__PKCS11_PIN", PIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("PKCS#11 token"), "{}", text(&out));

    // A PIN the token refuses stops the start (retrying would lock the PIN); so does a PIN
    // file others can read.
    write_private(&hsm.pin_file(), "9999\n");
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("serve")
        .args(install.store_args())
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .env("SOFTHSM2_CONF", &install.softhsm_conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("refused the user PIN"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("9999"), "the PIN is never printed");
    write_private(&hsm.pin_file(), &pin);
    std::fs::set_permissions(
        hsm.pin_file(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("serve")
        .args(install.store_args())
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .env("SOFTHSM2_CONF", &install.softhsm_conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("0600"), "{}", text(&out));
    println!(
        "HSM lifecycle on {}: {:.1} s",
        if postgres { "postgres" } else { "sqlite" },
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_lifecycle_sqlite() {
    hsm_lifecycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_lifecycle_postgres() {
    if std::env::var_os("CUSTOS_TEST_POSTGRES_URL").is_none() {
        eprintln!("CUSTOS_TEST_POSTGRES_URL is not set: PostgreSQL run skipped");
        return;
    }
    hsm_lifecycle(true).await;
}
