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

use common::installation::*;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// An installation whose key-encryption keys live in the test's SoftHSM token.
fn hsm_install(postgres: bool, hsm: &SoftHsm) -> Install {
    Install::new(postgres)
        .with_config(&format!(
            "[keys.pkcs11]\nmodule = \"{MODULE}\"\ntoken_label = \"{TOKEN}\"\n\
             pin_file = \"{}\"\n",
            hsm.pin_file().display()
        ))
        .with_env("SOFTHSM2_CONF", &hsm.conf().display().to_string())
}

async fn hsm_lifecycle(postgres: bool) {
    if !softhsm_present() {
        return;
    }
    let started = Instant::now();
    let hsm = SoftHsm::new();
    let install = hsm_install(postgres, &hsm);
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
    let env_config = install
        .config
        .as_ref()
        .unwrap()
        .with_file_name("custos-env-pin.toml");
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
        .env("SOFTHSM2_CONF", hsm.conf())
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
        .env("SOFTHSM2_CONF", hsm.conf())
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
        .env("SOFTHSM2_CONF", hsm.conf())
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
