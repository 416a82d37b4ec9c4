//! `custos audit …` as an auditor uses it: the real binary against a real server's data
//! directory and API. Export and verify offline (with pinned keys), the exit status and message
//! on a damaged or cut export, verification straight on the data directory, and the keyed hash
//! of a known value matching what the server records.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn custos(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
    cmd.args(args)
        .env("CUSTOS_LOG__LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_verify_and_hash_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::free_port();
    let mut server = common::serve(&data, port);
    let http = reqwest::Client::new();
    common::wait_healthy(&http, port).await;
    let admin = common::register_fraud_model(&http, &data, port).await;
    let url = format!("http://127.0.0.1:{port}");

    // A failed sign-in attempt with a guessed token, then its hash through the CLI.
    let guessed = "cst_guessedguessedguessedguessedguessed";
    let r = http
        .get(format!("{url}/api/v1/models"))
        .bearer_auth(guessed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let out = custos(
        &["audit", "hash", "--server", &url],
        &[("CUSTOS_TOKEN", &admin)],
        Some(guessed),
    );
    assert!(out.status.success(), "{}", text(&out));
    let tag = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(tag.starts_with("hmac-sha256:"), "{tag}");
    let export = dir.path().join("remote.ndjson");
    let out = custos(
        &[
            "audit",
            "export",
            "--server",
            &url,
            "-o",
            export.to_str().unwrap(),
        ],
        &[("CUSTOS_TOKEN", &admin)],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let remote = std::fs::read_to_string(&export).unwrap();
    assert!(
        remote.contains(&tag),
        "the recorded hash of the guessed token"
    );
    assert!(!remote.contains(guessed));

    // Stop the server (it signs a final checkpoint), then work on the data directory.
    let pid = server.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.wait().unwrap().success());

    let data_arg = data.to_str().unwrap();
    let out = custos(&["audit", "verify", "--data-dir", data_arg], &[], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("0 entries not yet signed"),
        "{}",
        text(&out)
    );

    let file = dir.path().join("audit.ndjson");
    let file_arg = file.to_str().unwrap();
    let out = custos(
        &["audit", "export", "--data-dir", data_arg, "-o", file_arg],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let key_line: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    let key = key_line["verifier_key"].as_str().unwrap().to_owned();
    let out = custos(
        &[
            "audit",
            "verify",
            "--export",
            file_arg,
            "--trusted-key",
            &key,
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));

    // Rotate the signing key on the host: with only the old key trusted, the new checkpoint does
    // not count; with both it verifies.
    let out = custos(&["audit", "rotate-key", "--data-dir", data_arg], &[], None);
    assert!(out.status.success(), "{}", text(&out));
    let new_key = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    assert_ne!(new_key, key);
    let rotated = dir.path().join("rotated.ndjson");
    let rotated_arg = rotated.to_str().unwrap();
    let out = custos(
        &["audit", "export", "--data-dir", data_arg, "-o", rotated_arg],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = custos(
        &[
            "audit",
            "verify",
            "--export",
            rotated_arg,
            "--trusted-key",
            &key,
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = custos(
        &[
            "audit",
            "verify",
            "--export",
            rotated_arg,
            "--trusted-key",
            &key,
            "--trusted-key",
            &new_key,
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));

    // A changed entry in the middle: exit 1, naming it.
    let entries: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"kind\":\"entry\""))
        .map(|(i, _)| i)
        .collect();
    assert!(entries.len() >= 3, "{}", lines.len());
    let middle = entries[entries.len() / 2];
    let seq = serde_json::from_str::<serde_json::Value>(&lines[middle]).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let mut damaged = lines.clone();
    damaged[middle] = damaged[middle].replacen("2026-", "2025-", 1);
    assert_ne!(damaged[middle], lines[middle]);
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, damaged.join("\n") + "\n").unwrap();
    let out = custos(
        &[
            "audit",
            "verify",
            "--export",
            bad.to_str().unwrap(),
            "--trusted-key",
            &key,
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("entry {seq}:")),
        "{}",
        text(&out)
    );

    // The last entry cut off: it is covered by the shutdown checkpoint, so it is missed.
    let mut cut = lines.clone();
    cut.pop();
    std::fs::write(&bad, cut.join("\n") + "\n").unwrap();
    let out = custos(
        &[
            "audit",
            "verify",
            "--export",
            bad.to_str().unwrap(),
            "--trusted-key",
            &key,
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("truncated"), "{}", text(&out));
}
