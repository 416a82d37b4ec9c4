//! `custos keys …` as an operator uses it, against a running server: rotate while it serves,
//! ingest more, rewrap, retire; every old and new day still reads through the drift API before
//! and after a restart, the store holds no key wrapped by the retired version, and the refusals
//! (retire before rewrap, retire the current version) are clear. Then the sealed start: keys
//! moved away → `/healthz` says sealed and the API answers 503; keys back → it unseals.
//!
//! Runs on SQLite, and on PostgreSQL too when `CUSTOS_TEST_POSTGRES_URL` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::installation::*;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn key_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn rotate_rewrap_retire(postgres: bool) {
    let started = Instant::now();
    let install = Install::new(postgres);
    let http = reqwest::Client::new();
    let port = common::free_port();
    let mut server = install.serve(port, &[]);
    common::wait_healthy(&http, port).await;
    let admin = common::register_fraud_model(&http, &install.data, port).await;
    ingest(&http, port, &admin, &rows("d1", DAY1, 300, false)).await;
    ingest(&http, port, &admin, &rows("d2", DAY2, 300, true)).await;
    let before = drift(&http, port, &admin, DAY1, DAY2).await;
    assert!(psi(&before, "amount") > 1.0, "{before}");
    // A fresh server process holds only version 1 and has no data key in memory, so reading
    // the days after the rewrap below goes through the stored (re-wrapped) keys.
    server.kill().unwrap();
    server.wait().unwrap();
    let port = common::free_port();
    let mut server = install.serve(port, &[]);
    common::wait_healthy(&http, port).await;

    let out = install.keys(&["status"]);
    assert!(out.status.success());
    let usage = install.usage().await;
    assert_eq!(usage.keys().copied().collect::<Vec<_>>(), vec![1]);
    // Two days, each with an events and a profiles key.
    assert_eq!(usage[&1].data_keys, 4);
    let secrets = usage[&1].secrets;
    assert!(secrets >= 6, "{usage:?}");

    // The current version is never retired.
    let out = install.keys(&["retire", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("it is the current version"),
        "{}",
        text(&out)
    );

    // Rotate while the server runs; it wraps the next new day's key under version 2.
    let out = install.keys(&["rotate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("KEK version 2 is now current"));
    ingest(&http, port, &admin, &rows("d3", DAY3, 300, false)).await;
    let usage = install.usage().await;
    assert_eq!(usage[&1].data_keys, 4, "{usage:?}");
    assert_eq!(
        usage[&2].data_keys, 2,
        "the running server wraps new keys under v2"
    );

    // Retire before rewrap: refused, with the counts.
    let out = install.keys(&["retire", "1"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("refusing to retire KEK version 1: it still wraps 4 data keys")
            && said.contains("custos keys rewrap"),
        "{said}"
    );
    assert!(install.data.join("keys/kek-v1.key").exists());

    // Rewrap while the server runs.
    let out = install.keys(&["rewrap", "--batch", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("re-wrapped {} keys", 4 + secrets)));
    let usage = install.usage().await;
    assert_eq!(
        usage.keys().copied().collect::<Vec<_>>(),
        vec![2],
        "{usage:?}"
    );
    assert_eq!(usage[&2].data_keys, 6);
    // Idempotent: nothing left to do.
    let out = install.keys(&["rewrap"]);
    assert!(text(&out).contains("re-wrapped 0 keys"), "{}", text(&out));

    // The server started before the rotation (it loaded version 1 only) still reads old and
    // new days: it re-reads the key directory when it meets version 2.
    let after = drift(&http, port, &admin, DAY1, DAY2).await;
    assert_eq!(psi(&after, "amount"), psi(&before, "amount"));
    drift(&http, port, &admin, DAY1, DAY3).await;

    // Now version 1 can go, and it is gone.
    let out = install.keys(&["retire", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(key_files(&install.data.join("keys")), vec!["kek-v2.key"]);
    let out = install.keys(&["retire", "2"]);
    assert!(!out.status.success());

    // After a restart (ring loaded from version 2 only) every day still reads.
    server.kill().unwrap();
    server.wait().unwrap();
    let port = common::free_port();
    server = install.serve(port, &[]);
    common::wait_healthy(&http, port).await;
    let again = drift(&http, port, &admin, DAY1, DAY2).await;
    assert_eq!(psi(&again, "amount"), psi(&before, "amount"));
    drift(&http, port, &admin, DAY2, DAY3).await;
    ingest(&http, port, &admin, &rows("d4", "2026-11-23", 50, false)).await;
    server.kill().unwrap();
    server.wait().unwrap();

    // Every command is in the audit log, the refusals too, and no key material.
    let export = install.data.join("audit.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["audit", "export", "--out"])
        .arg(&export)
        .args(install.store_args())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read_to_string(&export).unwrap();
    for action in [
        "keys.status",
        "keys.kek.rotate",
        "keys.kek.rewrap",
        "keys.kek.retire",
    ] {
        // Records are JSON text inside the export's JSON lines: quotes are escaped.
        assert!(
            log.contains(&format!("{action}\\\"")),
            "{action} not audited"
        );
    }
    assert!(log.contains("denied"), "the refused retire is audited");
    let v2 = std::fs::read_to_string(install.data.join("keys/kek-v2.key")).unwrap();
    assert!(!log.contains(v2.trim()));
    println!(
        "rotate/rewrap/retire on {}: {:.1} s",
        if postgres { "postgres" } else { "sqlite" },
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_rewrap_retire_sqlite() {
    rotate_rewrap_retire(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_rewrap_retire_postgres() {
    if std::env::var_os("CUSTOS_TEST_POSTGRES_URL").is_none() {
        eprintln!("CUSTOS_TEST_POSTGRES_URL is not set: PostgreSQL run skipped");
        return;
    }
    rotate_rewrap_retire(true).await;
}

async fn sealed_start(postgres: bool) {
    let install = Install::new(postgres);
    let http = reqwest::Client::new();
    let port = common::free_port();
    let mut server = install.serve(port, &[]);
    common::wait_healthy(&http, port).await;
    let admin = common::register_fraud_model(&http, &install.data, port).await;
    ingest(&http, port, &admin, &rows("d1", DAY1, 100, false)).await;
    server.kill().unwrap();
    server.wait().unwrap();

    // Keys moved away: sealed, not a new key and not a refusal to start.
    let keys = install.data.join("keys");
    let away = install.data.parent().unwrap().join("keys-away");
    std::fs::rename(&keys, &away).unwrap();
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
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(body["message"].as_str().unwrap().contains("sealed"));
    assert!(!keys.exists(), "a sealed start creates no key");
    // Still sealed a few retries later.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(health(&http, port).await.unwrap().0, 503);

    // Keys back: it unseals by itself and serves, old data included.
    std::fs::rename(&away, &keys).unwrap();
    let body = wait_health(&http, port, 200, Duration::from_secs(15)).await;
    assert_eq!(body["status"], "ok");
    let r = http
        .get(format!("http://127.0.0.1:{port}/api/v1/models"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drift(&http, port, &admin, DAY1, DAY1).await;
    server.kill().unwrap();
    server.wait().unwrap();

    // A key file others can read still refuses to start, sealed or not.
    let file = keys.join("kek-v1.key");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("serve")
        .args(install.store_args())
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("0600"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_start_then_unseal_sqlite() {
    sealed_start(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_start_then_unseal_postgres() {
    if std::env::var_os("CUSTOS_TEST_POSTGRES_URL").is_none() {
        eprintln!("CUSTOS_TEST_POSTGRES_URL is not set: PostgreSQL run skipped");
        return;
    }
    sealed_start(true).await;
}

/// The rewrap rate on many keys: `CUSTOS_REWRAP_KEYS` data keys (default 10,000) made directly
/// in the store under version 1, then `custos keys rotate` + `rewrap` timed. Not part of the
/// normal run: `cargo test -p custos --test keys_cli -- --ignored --nocapture rewrap_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn rewrap_rate() {
    let n: i64 = std::env::var("CUSTOS_REWRAP_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let install = Install::new(std::env::var_os("CUSTOS_TEST_POSTGRES_URL").is_some());
    let http = reqwest::Client::new();
    let port = common::free_port();
    let mut server = install.serve(port, &[]);
    common::wait_healthy(&http, port).await;
    common::register_fraud_model(&http, &install.data, port).await;
    server.kill().unwrap();
    server.wait().unwrap();

    let store = custos_store::Store::open(&install.store_url())
        .await
        .unwrap();
    let model = store.get_model("fraud-v3").await.unwrap().unwrap();
    let ring = custos_crypto::keys::load_kek_dir(&install.data.join("keys")).unwrap();
    let made = Instant::now();
    for day in 0..n {
        let partition = custos_core::Partition(day);
        let key = custos_crypto::DataKey::generate().unwrap();
        let purpose = custos_crypto::KeyPurpose::Events;
        let context = custos_crypto::KeyContext::Data {
            model_id: model.id,
            partition,
            purpose,
        };
        let wrapped = ring.wrap(&context, &key).unwrap();
        store
            .insert_data_key_if_absent(model.id, partition, purpose, &wrapped, chrono::Utc::now())
            .await
            .unwrap();
    }
    store.close().await;
    println!(
        "made {n} data keys in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    assert!(install.keys(&["rotate"]).status.success());
    let started = Instant::now();
    let out = install.keys(&["rewrap"]);
    assert!(out.status.success(), "{}", text(&out));
    println!(
        "rewrap of {n} data keys + secrets, whole command: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let usage = install.usage().await;
    assert_eq!(usage.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(usage[&2].data_keys, u64::try_from(n).unwrap());
}
