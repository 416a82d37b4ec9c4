//! Durability: every batch the server acknowledged survives `kill -9` of the real binary in the
//! middle of a stream of concurrent ingests, and nothing is half-written.
//!
//! The test runs the `custos` binary itself (not an in-process server), feeds it batches from
//! four clients, kills it with SIGKILL without warning, restarts it on the same data directory,
//! and re-sends every batch: each acknowledged batch must come back entirely as duplicates, and
//! each unacknowledged one either entirely as duplicates (committed just before the kill) or
//! entirely as new rows (never committed) — never a mix.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const BATCHES: usize = 60;
const ROWS: usize = 200;

mod common;

use common::{free_port, wait_healthy};

fn batch(n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..ROWS {
        let row = json!({"event_id": format!("b{n}-{i}"), "ts": "2026-11-26T10:00:00Z",
                         "amount": i as f64, "country": "DE", "email": "x@y.z", "score": 0.5});
        serde_json::to_writer(&mut body, &row).unwrap();
        body.push(b'\n');
    }
    body
}

async fn post(http: &reqwest::Client, port: u16, token: &str, n: usize) -> Option<Value> {
    let r = http
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/models/fraud-v3/predictions"
        ))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(batch(n))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let http = reqwest::Client::new();
    let mut child = common::serve(&data, port);
    wait_healthy(&http, port).await;
    let admin = common::register_fraud_model(&http, &data, port).await;

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(Mutex::new(0usize));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (http, admin, acknowledged, next) = (
            http.clone(),
            admin.clone(),
            acknowledged.clone(),
            next.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let n = {
                    let mut g = next.lock().await;
                    if *g >= BATCHES {
                        break;
                    }
                    *g += 1;
                    *g - 1
                };
                match post(&http, port, &admin, n).await {
                    Some(answer) => {
                        assert_eq!(answer["accepted"], ROWS);
                        acknowledged.lock().await.push(n);
                    }
                    None => break,
                }
            }
        }));
    }
    // Let some batches land, then kill without warning while others are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().await.len() < BATCHES / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acknowledged.len() >= BATCHES / 3,
        "only {} acknowledged",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < BATCHES,
        "the kill must interrupt the stream, or this test proves nothing"
    );

    let mut child = common::serve(&data, port);
    wait_healthy(&http, port).await;
    let mut lost = Vec::new();
    let mut torn = Vec::new();
    for n in 0..BATCHES {
        let answer = post(&http, port, &admin, n)
            .await
            .expect("restarted server answers");
        let (accepted, duplicates) = (
            answer["accepted"].as_u64().unwrap(),
            answer["duplicates"].as_u64().unwrap(),
        );
        if acknowledged.contains(&n) && duplicates != ROWS as u64 {
            lost.push(n);
        }
        if accepted != 0 && duplicates != 0 {
            torn.push(n);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lost.is_empty(),
        "acknowledged batches lost after kill -9: {lost:?}"
    );
    assert!(torn.is_empty(), "batches half-written: {torn:?}");
}
