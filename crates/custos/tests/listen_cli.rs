//! TLS by default, as an operator meets it: `custos serve` refuses plain HTTP on every interface
//! with a message that says what to do, and with the explicit `allow_plaintext_behind_proxy`
//! setting it serves but warns at every start.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn plain_http_on_all_interfaces_is_refused_with_a_clear_message() {
    let dir = data_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("CUSTOS_SERVER__ALLOW_PLAINTEXT_BEHIND_PROXY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve plain HTTP on non-loopback address 0.0.0.0:0")
            && stderr.contains("[server.tls]")
            && stderr.contains("allow_plaintext_behind_proxy"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "refused before anything is created"
    );
}

#[test]
fn the_explicit_setting_serves_and_warns_at_every_start() {
    let dir = data_dir();
    let port = common::free_port();
    for start in 0..2 {
        let log = dir.path().join(format!("start-{start}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("0.0.0.0:{port}")])
            .env("CUSTOS_SERVER__ALLOW_PLAINTEXT_BEHIND_PROXY", "true")
            .env("CUSTOS_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut text = String::new();
        while Instant::now() < deadline {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("allow_plaintext_behind_proxy") {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "exited: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            text.contains("serving plain HTTP on a non-loopback address"),
            "start {start}: {text}"
        );
    }
}
