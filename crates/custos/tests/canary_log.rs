//! No original PII value reaches the server log, the audit log or the data directory, with the
//! real `custos serve` binary logging at `debug` (what an operator turns on to troubleshoot):
//! canary values go through every masking kind, PII detection, a refused batch (422), labels,
//! the row view and the reveal path; afterwards the captured stdout and stderr, the audit log
//! (through the API) and every file of the data directory are searched for them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

const EMAIL: &str = "log.canary@example.com";
const CARD: &str = "4929-1234-5678-9012";
const PHONE: &str = "+44 20 7946 0123";
const POSTCODE: &str = "EC1A 9ZZ";
const SSN: &str = "219-09-9999";
const SECRET_NOTE: &str = "canary-redacted-note";
const FREE_TEXT_EMAIL: &str = "free.canary@example.org";

fn spec() -> Value {
    json!({
        "name": "canary-log", "id_field": "event_id", "timestamp_field": "ts",
        "tenant": "acme",
        "features": [
            {"name": "email", "type": "categorical", "pii": true, "masking": "hmac"},
            {"name": "card", "type": "categorical", "pii": true, "masking": "ff1",
             "masking_options": {"alphabet": "digits", "min_length": 12}},
            {"name": "phone", "type": "categorical", "pii": true, "masking": "mask",
             "masking_options": {"keep_last": 2}},
            {"name": "postcode", "type": "categorical", "pii": true, "masking": "generalize",
             "masking_options": {"keep_prefix": 2}},
            {"name": "ssn", "type": "categorical", "pii": true, "masking": "tokenize"},
            {"name": "note", "type": "categorical", "pii": true, "masking": "redact"},
            {"name": "comment", "type": "text"},
            {"name": "amount", "type": "numeric"}
        ],
        "prediction": {"name": "score", "type": "binary_score"},
        "pii_detection": "mask"
    })
}

fn row(i: usize) -> Value {
    json!({
        "event_id": format!("c-{i}"), "ts": "2026-11-20T00:10:00Z",
        "email": EMAIL, "card": CARD, "phone": PHONE, "postcode": POSTCODE, "ssn": SSN,
        "note": SECRET_NOTE, "comment": format!("please write to {FREE_TEXT_EMAIL}"),
        "amount": i as f64, "score": 0.5,
    })
}

fn ndjson(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

#[tokio::test]
async fn canaries_reach_neither_the_server_log_nor_the_audit_log_nor_the_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = dir.path().join("data");
    let log_out = dir.path().join("stdout.log");
    let log_err = dir.path().join("stderr.log");
    let port = common::free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("CUSTOS_LOG__LEVEL", "debug")
        .stdout(Stdio::from(std::fs::File::create(&log_out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&log_err).unwrap()))
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    common::wait_healthy(&http, port).await;
    let admin = std::fs::read_to_string(data.join("bootstrap-token"))
        .unwrap()
        .trim()
        .to_owned();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let send = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(&admin)
    };

    let r = send(reqwest::Method::POST, "/models")
        .json(&spec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let rows: Vec<Value> = (0..10).map(row).collect();
    let r = send(reqwest::Method::POST, "/models/canary-log/predictions")
        .header("content-type", "application/x-ndjson")
        .body(ndjson(&rows))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["pii_redacted"], 10, "{answer}");

    // A refused batch: a card too short for its FF1 format and an amount of the wrong type.
    let mut bad = vec![row(100), row(101)];
    bad[0]["card"] = json!("4929-12");
    bad[1]["amount"] = json!(EMAIL);
    let r = send(reqwest::Method::POST, "/models/canary-log/predictions")
        .header("content-type", "application/x-ndjson")
        .body(ndjson(&bad))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let refused = r.text().await.unwrap();
    for needle in [EMAIL, "4929-12", CARD] {
        assert!(
            !refused.contains(needle),
            "the 422 echoes {needle}: {refused}"
        );
    }

    // Labels, the row view, and a justified reveal of the vault token.
    let r = send(reqwest::Method::POST, "/models/canary-log/labels")
        .json(&json!([{"event_id": "c-1", "label": 1}]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = send(
        reqwest::Method::GET,
        "/models/canary-log/events?start=2026-11-20T00:00:00Z&end=2026-11-20T01:00:00Z&limit=5",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let events: Value = r.json().await.unwrap();
    let token = events["rows"][0]["values"]["ssn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("tok_"), "{token}");
    let events = events.to_string();
    for needle in [
        EMAIL,
        CARD,
        PHONE,
        POSTCODE,
        SSN,
        SECRET_NOTE,
        FREE_TEXT_EMAIL,
    ] {
        assert!(!events.contains(needle), "the row view shows {needle}");
    }
    let reveal_token = send(reqwest::Method::POST, "/tokens")
        .json(&json!({"description": "reveal for the canary test",
                      "scopes": [{"action": "pii:reveal", "model": "canary-log"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reveal_token.status(), 201);
    let reveal_token: Value = reveal_token.json().await.unwrap();
    let secret = reveal_token["secret"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{base}/models/canary-log/reveal"))
        .bearer_auth(&secret)
        .json(&json!({"tokens": [token],
                      "justification": "fraud case 4711 needs the customer's identifier"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revealed: Value = r.json().await.unwrap();
    assert_eq!(
        revealed["results"][0]["value"], SSN,
        "the reveal path returns it"
    );

    let audit = send(reqwest::Method::GET, "/audit?limit=1000")
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), 200);
    let audit = audit.text().await.unwrap();
    assert!(audit.contains("pii.reveal"), "the reveal is audited");

    server.kill().unwrap();
    server.wait().unwrap();

    let log = format!(
        "{}{}",
        std::fs::read_to_string(&log_out).unwrap(),
        std::fs::read_to_string(&log_err).unwrap()
    );
    assert!(
        log.contains("DEBUG") || log.contains("\"level\":\"DEBUG\""),
        "the server logged at debug level, so the search below means something"
    );
    let needles = [
        EMAIL,
        "log.canary",
        CARD,
        "4929123456789012",
        PHONE,
        "7946 0123",
        POSTCODE,
        SSN,
        "219099999",
        SECRET_NOTE,
        FREE_TEXT_EMAIL,
        "free.canary",
    ];
    for needle in needles {
        assert!(!log.contains(needle), "{needle} found in the server log");
        assert!(!audit.contains(needle), "{needle} found in the audit log");
    }
    let mut scanned = 0;
    let mut stack = vec![data.clone()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                path.display()
            );
        }
    }
    assert!(
        scanned > 10_000,
        "the data directory was scanned ({scanned} bytes)"
    );
}
