//! `GET /metrics` scraped by a real Prometheus (Debian package `prometheus`): a drifting feature's
//! verdict gauge reaches Prometheus's query API through a scrape authorized by a bearer token
//! read from a file, and a scrape without the token fails (401, `up == 0`). Beside it, the
//! endpoint over plain HTTP: 401 without a credential, 403 without `metrics:read`, and a body in
//! the OpenMetrics text format with the ingest counters and the cached results.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use chrono::{Duration, Utc};
use common::{Backend, Server, Site, fraud_rows};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const PREDICTIONS: &str = "/api/v1/models/fraud-v3/predictions";
const LABELS: &str = "/api/v1/models/fraud-v3/labels";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A server whose monitoring results are recomputed every second.
async fn server(site: &Site) -> Server {
    let mut config = site.config();
    config.metrics.refresh_seconds = 1;
    site.start_with(config).await
}

/// A reference like training data (no event id or time), undrifted.
fn reference_csv(n: usize) -> Vec<u8> {
    let mut csv = String::from("amount,country,email,score\n");
    for row in fraud_rows("ref", Utc::now() - Duration::days(30), n, false) {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            row["amount"],
            row["country"].as_str().unwrap(),
            row["email"].as_str().unwrap(),
            row["score"],
        ));
    }
    csv.into_bytes()
}

/// A registered model with a reference and an hour of traffic in which `amount` and `country`
/// drift and `score` does not, with labels for some of it.
async fn drifting_model(s: &Server) {
    s.register_fraud_model().await;
    let r = s
        .send(
            reqwest::Method::POST,
            "/api/v1/models/fraud-v3/reference",
            Some(&s.admin),
            Some(("text/csv", reference_csv(5_000))),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let rows = fraud_rows("live", Utc::now() - Duration::minutes(70), 2_000, true);
    let r = s.post_ndjson(PREDICTIONS, Some(&s.admin), &rows).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let labels: Vec<Value> = rows
        .iter()
        .take(400)
        .map(|row| {
            let score = row["score"].as_f64().unwrap();
            json!({"event_id": row["event_id"], "label": u8::from(score > 0.5)})
        })
        .collect();
    let r = s.post_ndjson(LABELS, Some(&s.admin), &labels).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

async fn scrape(s: &Server, token: Option<&str>) -> (u16, String, String) {
    let mut request = s.http.get(s.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The OpenMetrics text format as far as a scraper relies on it: `# TYPE`/`# HELP`/`# UNIT`
/// lines, samples `name{labels} value`, and `# EOF` as the last line.
fn assert_openmetrics(body: &str) {
    assert!(body.ends_with("# EOF\n"), "no # EOF terminator:\n{body}");
    let mut families = 0;
    for line in body.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap();
            assert!(["TYPE", "HELP", "UNIT"].contains(&kind), "{line}");
            families += usize::from(kind == "TYPE");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
            "bad value in {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("custos_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
    }
    assert!(families >= 10, "too few metric families:\n{body}");
}

/// The value of one sample line, found by its exact series text.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_for_results(s: &Server, token: &str) -> String {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, _, body) = scrape(s, Some(token)).await;
        assert_eq!(status, 200, "{body}");
        if body.contains("custos_drift_detected{") && body.contains("custos_performance{") {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no drift results after 60 s:\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_need_metrics_read_and_speak_openmetrics() {
    let site = Site::new(Backend::Sqlite);
    let s = server(&site).await;
    let reader = s.token(&[("metrics:read", "*")]).await;
    let other = s.token(&[("drift:read", "*"), ("audit:read", "*")]).await;

    let (status, _, _) = scrape(&s, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = scrape(&s, Some("cst_not-a-real-token")).await;
    assert_eq!(status, 401);
    let (status, _, _) = scrape(&s, Some(&other)).await;
    assert_eq!(status, 403);
    // The action applies to the whole server: it cannot be narrowed to one model.
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "x", "scopes": [{"action": "metrics:read", "model": "fraud-v3"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    drifting_model(&s).await;
    // A refused batch counts its invalid rows and the request by reason.
    let mut bad = fraud_rows("bad", Utc::now() - Duration::minutes(5), 3, false);
    bad[1]["amount"] = json!("a lot");
    bad[2]["amount"] = json!("more");
    let r = s.post_ndjson(PREDICTIONS, Some(&s.admin), &bad).await;
    assert_eq!(r.status, 422);

    let body = wait_for_results(&s, &reader).await;
    let (status, content_type, _) = scrape(&s, Some(&reader)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, OPENMETRICS);
    assert_openmetrics(&body);
    let value = |series: &str| {
        sample(&body, series).unwrap_or_else(|| panic!("no sample {series} in\n{body}"))
    };
    assert_eq!(
        value(r#"custos_ingest_rows_total{model="fraud-v3",kind="predictions"}"#),
        2_000.0
    );
    assert_eq!(
        value(r#"custos_ingest_rows_total{model="fraud-v3",kind="labels"}"#),
        400.0
    );
    assert_eq!(
        value(r#"custos_ingest_invalid_rows_total{model="fraud-v3"}"#),
        2.0
    );
    assert_eq!(
        value(r#"custos_ingest_rejected_requests_total{kind="predictions",reason="invalid_rows"}"#),
        1.0
    );
    assert_eq!(value("custos_ingest_queue_depth"), 0.0);
    assert_eq!(value("custos_store_up"), 1.0);
    assert!(value("custos_store_query_seconds") < 5.0);
    assert!(value("custos_store_commit_seconds_count") >= 1.0);
    assert_eq!(
        value(r#"custos_rate_limit_rejected_requests_total{budget="read"}"#),
        0.0
    );
    assert_eq!(
        value(r#"custos_drift_detected{model="fraud-v3",feature="amount"}"#),
        1.0
    );
    assert_eq!(
        value(r#"custos_drift_detected{model="fraud-v3",feature="score"}"#),
        0.0
    );
    assert!(value(r#"custos_drift_statistic{model="fraud-v3",feature="amount"}"#) > 0.0);
    assert_eq!(
        value(r#"custos_dataset_drift_detected{model="fraud-v3"}"#),
        1.0
    );
    let freshness = value(r#"custos_model_freshness_seconds{model="fraud-v3"}"#);
    assert!((0.0..3_600.0).contains(&freshness), "{freshness}");
    let auc = value(r#"custos_performance{model="fraud-v3",metric="roc_auc"}"#);
    assert!(
        auc > 0.9,
        "labels follow the score, so the AUC is high: {auc}"
    );
    assert_eq!(
        value(r#"custos_performance_labelled_rows{model="fraud-v3"}"#),
        400.0
    );
    // Model and feature labels name only registered models and declared features: the email
    // field is pseudonymized and profiled, so it is a feature; nothing else is.
    for line in body.lines().filter(|l| l.contains("feature=\"")) {
        assert!(
            ["amount", "country", "email", "score"]
                .iter()
                .any(|f| line.contains(&format!("feature=\"{f}\""))),
            "{line}"
        );
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus

fn prometheus_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| {
            let debian = PathBuf::from("/usr/bin/prometheus");
            debian.is_file().then_some(debian)
        })
        .unwrap_or_else(|| {
            panic!(
                "the Prometheus test needs the `prometheus` binary: install the Debian package \
                 with `apt-get install -y --no-install-recommends prometheus` (scripts/test.sh \
                 does this)"
            )
        })
}

/// A Prometheus process with its own configuration and storage in a temp dir; killed (by its
/// PID) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr, token: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(target, &token_file)).unwrap();
        let port = common::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus {
            child,
            port,
            dir,
            http: reqwest::Client::new(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant query with exactly one result, if it has one yet.
    async fn query_one(&self, query: &str) -> Option<String> {
        let response = self
            .http
            .post(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .form(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        let result = body["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str().map(str::to_owned)
    }

    async fn targets(&self) -> Value {
        self.http
            .get(format!("http://127.0.0.1:{}/api/v1/targets", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(target: std::net::SocketAddr, token_file: &Path) -> String {
    format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: custos
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: {token}
    static_configs:
      - targets: ['{target}']
  - job_name: no-token
    metrics_path: /metrics
    static_configs:
      - targets: ['{target}']
",
        token = token_file.display(),
    )
}

#[tokio::test]
async fn a_real_prometheus_scrapes_drift_with_its_token_and_fails_without() {
    let site = Site::new(Backend::Sqlite);
    let s = server(&site).await;
    drifting_model(&s).await;
    let token = s.token(&[("metrics:read", "*")]).await;
    let prometheus = Prometheus::start(s.addr, &token);

    // Targets are synced on a 5 s tick, so the first sample comes several seconds after start.
    let wanted = [
        (
            r#"custos_drift_detected{job="custos",model="fraud-v3",feature="amount"}"#,
            "1",
        ),
        (
            r#"custos_drift_detected{job="custos",model="fraud-v3",feature="score"}"#,
            "0",
        ),
        (r#"up{job="custos"}"#, "1"),
        (r#"up{job="no-token"}"#, "0"),
    ];
    let deadline = Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let mut seen = Vec::new();
        for (query, _) in &wanted {
            seen.push(prometheus.query_one(query).await);
        }
        if wanted
            .iter()
            .zip(&seen)
            .all(|((_, want), got)| got.as_deref() == Some(*want))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not see the expected values within 90 s: {seen:?}\ntargets: {}\nlog: {}",
            prometheus.targets().await,
            prometheus.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    // The scrape without a token failed for the reason we expect.
    let targets = prometheus.targets().await;
    let no_token = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["job"] == "no-token")
        .unwrap()
        .clone();
    assert_eq!(no_token["health"], "down", "{no_token}");
    assert!(
        no_token["lastError"].as_str().unwrap().contains("401"),
        "{no_token}"
    );
    // Prometheus parsed the rest of the exposition too.
    let rows = prometheus
        .query_one(r#"custos_ingest_rows_total{job="custos",kind="predictions"}"#)
        .await;
    assert_eq!(rows.as_deref(), Some("2000"));
    drop(prometheus);
    s.stop().await;
}
