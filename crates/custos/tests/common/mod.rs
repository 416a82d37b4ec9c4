//! Shared by the tests that run the real `custos` binary: a free port, a server process on a
//! data directory, and waiting until it answers.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `custos serve` on `data`, listening on `port`, quiet.
pub fn serve(data: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("CUSTOS_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits up to 30 s for `/healthz` to answer 200.
pub async fn wait_healthy(http: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not become healthy");
}

/// Reads the bootstrap secret from `data` and registers the `fraud-v3` model with it; returns
/// the secret.
pub async fn register_fraud_model(http: &reqwest::Client, data: &Path, port: u16) -> String {
    let admin = std::fs::read_to_string(data.join("bootstrap-token"))
        .unwrap()
        .trim()
        .to_owned();
    let spec = serde_json::json!({"name": "fraud-v3", "id_field": "event_id", "timestamp_field": "ts",
        "features": [{"name": "amount", "type": "numeric"}, {"name": "country", "type": "categorical"},
                     {"name": "email", "type": "categorical", "pii": true, "masking": "hmac"}],
        "prediction": {"name": "score", "type": "binary_score"}});
    let r = http
        .post(format!("http://127.0.0.1:{port}/api/v1/models"))
        .bearer_auth(&admin)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    admin
}
pub mod installation;
