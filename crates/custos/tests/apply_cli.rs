//! `custos apply -f DIR` end to end with the real binary on both sides: `--dry-run` prints the
//! exact difference and changes nothing; applying makes configuration versions whose author is
//! the token; re-applying changes nothing; a pipeline token scoped to one model's alert rules
//! changes those and is refused (403, audited) for everything else, and `apply` exits 1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

mod common;

use common::{free_port, wait_healthy};

const CHANNEL_SECRET: &str = "whsec-apply-canary-77f3a1";

fn apply(port: u16, token_file: &Path, dir: &Path, dry_run: bool) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custos"));
    command
        .args(["apply", "-f"])
        .arg(dir)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(token_file)
        .args(["--reason", "pipeline run 42"])
        .env_remove("CUSTOS_TOKEN");
    if dry_run {
        command.arg("--dry-run");
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap()
    );
    (out.status.code().unwrap(), text)
}

fn write_secret(path: &Path, secret: &str) {
    std::fs::write(path, secret).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn rules_yaml(threshold: f64) -> String {
    format!(
        "kind: alert_rules\nmodel: fraud-v3\nrules:\n  - name: amount-drift\n    metric: drift.statistic\n    feature: amount\n    condition: above\n    threshold: {threshold}\n    for: 10m\n    severity: critical\n"
    )
}

async fn get(http: &reqwest::Client, port: u16, token: &str, path: &str) -> Value {
    http.get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_shows_the_diff_applies_versions_and_respects_scopes() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let http = reqwest::Client::new();
    let mut child = common::serve(&data, port);
    wait_healthy(&http, port).await;
    let admin = common::register_fraud_model(&http, &data, port).await;
    let admin_file = tmp.path().join("admin-token");
    write_secret(&admin_file, &admin);

    let dir = tmp.path().join("monitoring");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("10-models.yaml"),
        "- kind: model\n  spec:\n    name: churn-v1\n    id_field: id\n    timestamp_field: ts\n    features:\n      - {name: tenure, type: numeric}\n    prediction: {name: churn, type: binary_score}\n",
    )
    .unwrap();
    write_secret(&dir.join("ops.secret"), CHANNEL_SECRET);
    std::fs::write(
        dir.join("20-channel.yaml"),
        "kind: channel\nname: ops\nsecret_file: ops.secret\nspec:\n  kind: webhook\n  url: https://hooks.example.org/custos\n  min_severity: warning\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("30-monitoring.yaml"),
        "kind: monitoring\nmodel: fraud-v3\nconfig:\n  drift:\n    drift_share: 0.4\n",
    )
    .unwrap();
    std::fs::write(dir.join("40-alerts.yaml"), rules_yaml(0.2)).unwrap();
    let r = http
        .post(format!("http://127.0.0.1:{port}/api/v1/users"))
        .bearer_auth(&admin)
        .json(
            &json!({"name": "ada", "password": "violet-tangent-orchard-91",
                      "roles": [{"role": "data-scientist", "model": "fraud-v3"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    std::fs::write(
        dir.join("50-people.yaml"),
        "kind: user_roles\nuser: ada\nroles:\n  - {role: auditor, model: \"*\"}\n  - {role: data-scientist, model: fraud-v3}\n",
    )
    .unwrap();

    // Dry run: the exact difference, nothing changed.
    let (code, out) = apply(port, &admin_file, &dir, true);
    assert_eq!(code, 0, "{out}");
    for line in [
        "~ model churn-v1\n    + registered (new)",
        "~ channel ops\n    + created (new; secret from its source)",
        "~ monitoring of fraud-v3\n    ~ /drift/drift_share: 0.5 → 0.4\n",
        "~ alert rules of fraud-v3\n    + /rules/0: {\"condition\":\"above\",\"feature\":\"amount\",\"for\":\"10m\",\"metric\":\"drift.statistic\",\"name\":\"amount-drift\",\"severity\":\"critical\",\"threshold\":0.2}",
        "~ roles of user ada\n    + /roles/auditor@*: \"auditor@*\"\n",
        "5 resources: 5 would change, 0 unchanged, 0 refused",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains(CHANNEL_SECRET));
    let alerts = get(&http, port, &admin, "/api/v1/models/fraud-v3/alerts").await;
    assert_eq!(alerts["rules"], json!([]));
    let models = get(&http, port, &admin, "/api/v1/models").await;
    assert_eq!(models["models"].as_array().unwrap().len(), 1);

    // Apply, then nothing is left to change.
    let (code, out) = apply(port, &admin_file, &dir, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied: version"), "{out}");
    let (code, out) = apply(port, &admin_file, &dir, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("5 resources: 0 would change, 5 unchanged, 0 refused"),
        "{out}"
    );
    let history = get(
        &http,
        port,
        &admin,
        "/api/v1/models/fraud-v3/monitoring/history",
    )
    .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().all(|v| v["reason"] == "pipeline run 42"));

    // A pipeline token that may read fraud-v3 and change only its alert rules.
    let r: Value = http
        .post(format!("http://127.0.0.1:{port}/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"description": "pipeline", "scopes": [
            {"action": "alerts:write", "model": "fraud-v3"},
            {"action": "alerts:read", "model": "fraud-v3"},
            {"action": "models:read", "model": "fraud-v3"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pipeline_file = tmp.path().join("pipeline-token");
    write_secret(&pipeline_file, r["secret"].as_str().unwrap());
    std::fs::write(dir.join("40-alerts.yaml"), rules_yaml(0.3)).unwrap();
    std::fs::write(
        dir.join("30-monitoring.yaml"),
        "kind: monitoring\nmodel: fraud-v3\nconfig:\n  drift:\n    drift_share: 0.3\n",
    )
    .unwrap();
    let (code, out) = apply(port, &pipeline_file, &dir, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "~ alert rules of fraud-v3\n    ~ /rules/0/threshold: 0.2 → 0.3\n  applied: version 3"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "~ monitoring of fraud-v3\n    ~ /drift/drift_share: 0.4 → 0.3\n  refused: HTTP 403"
        ),
        "{out}"
    );
    assert!(
        out.contains("! "),
        "unreadable resources are reported: {out}"
    );
    let alerts = get(&http, port, &admin, "/api/v1/models/fraud-v3/alerts").await;
    assert_eq!(alerts["rules"][0]["threshold"], 0.3);
    let monitoring = get(&http, port, &admin, "/api/v1/models/fraud-v3/monitoring").await;
    assert_eq!(monitoring["config"]["drift"]["drift_share"], 0.4);
    let audit = get(&http, port, &admin, "/api/v1/audit?limit=1000").await;
    let denied_put = audit["records"].as_array().unwrap().iter().any(|r| {
        let record = &r["record"];
        record["action"] == "authz.deny"
            && record["resource"] == "model/fraud-v3"
            && record["detail"]["required"] == "monitors:write"
    });
    assert!(denied_put, "the refused change is audited");
    assert!(!audit.to_string().contains(CHANNEL_SECRET));
    child.kill().unwrap();
    child.wait().unwrap();
}
