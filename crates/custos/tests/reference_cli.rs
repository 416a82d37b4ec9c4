//! `custos reference upload` end to end: the real binary serving, the real binary uploading a
//! CSV file with a token from a file, and the refusals a user will meet (bad rows, no token).

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{free_port, wait_healthy};

fn upload(port: u16, token_file: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["reference", "upload", "--model", "fraud-v3"])
        .arg(file)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(token_file)
        .args(extra)
        .env_remove("CUSTOS_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_upload_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let http = reqwest::Client::new();
    let mut child = common::serve(&data, port);
    wait_healthy(&http, port).await;
    let admin = common::register_fraud_model(&http, &data, port).await;
    // A token for exactly this job: uploading references of this model.
    let r: serde_json::Value = http
        .post(format!("http://127.0.0.1:{port}/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"description": "ci", "scopes": [{"action": "references:write", "model": "fraud-v3"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, r["secret"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let csv = dir.path().join("train.csv");
    let mut text = String::from("amount,country,email,score,label\n");
    for i in 0..2_000 {
        text.push_str(&format!(
            "{},{},u{}@example.com,{},{}\n",
            10 + i % 90,
            ["DE", "FR", "US"][i % 3],
            i % 50,
            (i % 100) as f64 / 100.0,
            i % 2
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let out = upload(
        port,
        &token_file,
        &csv,
        &["--label-field", "label", "--name", "train"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("2000"), "{stdout}");

    // The server has it, with the name and row count the command line gave.
    let listed: serde_json::Value = http
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/models/fraud-v3/reference"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["references"][0]["name"], "train");
    assert_eq!(listed["references"][0]["rows"], 2000);

    // Some traffic, then the report as one HTML file.
    let mut ndjson = String::new();
    for i in 0..500 {
        ndjson.push_str(&format!(
            "{{\"event_id\":\"e{i}\",\"ts\":\"2026-11-25T10:{:02}:00Z\",\"amount\":{},\"country\":\"DE\",\"email\":\"x@y.z\",\"score\":0.5}}\n",
            i % 60,
            200 + i
        ));
    }
    let r = http
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/models/fraud-v3/predictions"
        ))
        .bearer_auth(&admin)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let admin_file = dir.path().join("admin-token");
    std::fs::write(&admin_file, &admin).unwrap();
    std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["report", "--model", "fraud-v3", "--out"])
        .arg(&report)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(&admin_file)
        .args([
            "--from",
            "2026-11-25T00:00:00Z",
            "--to",
            "2026-11-26T00:00:00Z",
        ])
        .env_remove("CUSTOS_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("Drift report: fraud-v3"));
    assert!(html.contains("amount"));

    // A bad row: exit code 1, the row and field named, the value not shown.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "amount,country,email,score\n12,DE,a@b.c,0.5\nSECRET-VALUE,DE,a@b.c,0.5\n",
    )
    .unwrap();
    let out = upload(port, &token_file, &bad, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("amount"), "{stderr}");
    assert!(!stderr.contains("SECRET-VALUE"), "{stderr}");

    // No token: refused before anything is sent (exit code 2).
    let missing = dir.path().join("no-such-token");
    let out = upload(port, &missing, &csv, &[]);
    assert_eq!(out.status.code(), Some(2));

    child.kill().unwrap();
    child.wait().unwrap();
}
