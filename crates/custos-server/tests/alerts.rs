//! Alerts end to end, on both stores: a drift introduced into a model's traffic fires its rule
//! after the rule's `for` duration and delivers a signed webhook to a real HTTP receiver (which
//! first answers 503, so the delivery is retried); the alert resolves when the drift ends; a
//! model that stops sending fires its freshness rule. Rules are written with a token that may
//! change only one model's alerts, and that token is refused (403, audited) elsewhere.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, Utc};
use common::{BACKENDS, Server, Site, fraud_rows};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SECRET: &str = "whsec-canary-5b1f0c9e2d7a4e66";

/// What the receiver got: (signature header, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A local webhook receiver that answers 503 to its first request and 200 afterwards.
async fn receiver() -> (String, Received) {
    receiver_failing_first(true).await
}

/// A local webhook receiver; with `fail_first` its first answer is 503.
async fn receiver_failing_first(fail_first: bool) -> (String, Received) {
    let received: Received = Arc::default();
    let calls = Arc::new(Mutex::new(0u32));
    let store = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = Arc::clone(&store);
            let calls = Arc::clone(&calls);
            async move {
                let mut n = calls.lock().unwrap();
                *n += 1;
                if fail_first && *n == 1 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let signature = headers
                    .get("custos-signature")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                store.lock().unwrap().push((signature, body.to_vec()));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

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

async fn put(s: &Server, path: &str, token: &str, body: &Value) -> common::Reply {
    s.send(
        reqwest::Method::PUT,
        path,
        Some(token),
        Some(("application/json", serde_json::to_vec(body).unwrap())),
    )
    .await
}

/// Waits until a notification whose payload satisfies `wanted` has arrived; returns it, after
/// checking its signature.
async fn notification(received: &Received, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .find_map(|(signature, body)| {
                let payload: Value = serde_json::from_slice(body).unwrap();
                wanted(&payload).then(|| (signature.clone(), body.clone(), payload))
            });
        if let Some((signature, body, payload)) = found {
            let now = Utc::now().timestamp();
            custos_crypto::webhook::verify(SECRET.as_bytes(), &signature, &body, now, 300)
                .unwrap_or_else(|e| panic!("{what}: signature does not verify: {e}"));
            assert!(
                custos_crypto::webhook::verify(b"wrong-secret-0000", &signature, &body, now, 300)
                    .is_err()
            );
            return payload;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no notification after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn has_alert(payload: &Value, status: &str, rule: &str) -> bool {
    payload["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["status"] == status && a["rule"] == rule)
}

async fn series_state(s: &Server, model: &str, rule: &str) -> Option<String> {
    let r = s
        .get(&format!("/api/v1/models/{model}/alerts"), Some(&s.admin))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == rule)
        .map(|x| x["state"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_fires_a_signed_webhook_and_resolves_and_silence_fires_freshness() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let mut config = site.config();
        config.alerts.evaluation_seconds = 1;
        config.alerts.window_hours = 1;
        config.alerts.allow_plaintext_loopback = true;
        let s = site.start_with(config).await;
        let (hook, received) = receiver().await;

        s.register_fraud_model().await;
        let mut fresh = common::fraud_spec();
        fresh["name"] = json!("fresh-v1");
        assert_eq!(
            s.post_json("/api/v1/models", Some(&s.admin), &fresh)
                .await
                .status,
            201
        );
        let r = s
            .send(
                reqwest::Method::POST,
                "/api/v1/models/fraud-v3/reference",
                Some(&s.admin),
                Some(("text/csv", reference_csv(3_000))),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);

        let channel = json!({"kind": "webhook", "url": hook, "secret": SECRET,
                             "group_by": ["model", "rule"], "repeat_interval": "1h"});
        let r = put(&s, "/api/v1/alert-channels/ops", &s.admin, &channel).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["has_secret"], true);
        assert!(r.body.get("secret").is_none());
        let listed = s.get("/api/v1/alert-channels", Some(&s.admin)).await;
        assert!(!listed.body.to_string().contains(SECRET));
        // A plain-http receiver off loopback is refused.
        let mut remote = channel.clone();
        remote["url"] = json!("http://10.1.2.3/hook");
        let r = put(&s, "/api/v1/alert-channels/far", &s.admin, &remote).await;
        assert_eq!(r.status, 400, "{:?}", r.body);

        // A CI/CD token that may change only fraud-v3's alert rules.
        let pipeline = s.token(&[("alerts:write", "fraud-v3")]).await;
        let rules = json!({"rules": [{
            "name": "amount-drift", "metric": "drift.detected", "feature": "amount",
            "condition": "above", "threshold": 0.5, "for": "2s", "severity": "critical",
            "labels": {"team": "fraud"},
            "annotations": {"summary": "{{ feature }} drifted on {{ model }} ({{ value }})"}
        }]});
        let r = put(
            &s,
            "/api/v1/models/fraud-v3/alerts?reason=ci",
            &pipeline,
            &rules,
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let version = r.body["version"].as_i64().unwrap();
        let monitoring = json!({"drift": {"drift_share": 0.9}});
        let r = put(
            &s,
            "/api/v1/models/fraud-v3/monitoring",
            &pipeline,
            &monitoring,
        )
        .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
        let r = put(&s, "/api/v1/models/fresh-v1/alerts", &pipeline, &rules).await;
        assert_eq!(r.status, 403, "{:?}", r.body);
        let r = put(&s, "/api/v1/alert-channels/ops", &pipeline, &channel).await;
        assert_eq!(r.status, 403, "{:?}", r.body);
        // A rule on a field the model does not have is refused with its name.
        let bad = json!({"rules": [{"name": "x", "metric": "drift.statistic", "feature": "nope",
                                   "condition": "above", "threshold": 0.1, "severity": "info"}]});
        let r = put(&s, "/api/v1/models/fraud-v3/alerts", &pipeline, &bad).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.body.to_string().contains("'nope'"), "{:?}", r.body);

        // Freshness: one event now, then silence.
        let silent = json!({"rules": [{"name": "silent", "metric": "freshness.silence_minutes",
            "condition": "above", "threshold": 0.1, "severity": "warning"}]});
        let r = put(&s, "/api/v1/models/fresh-v1/alerts", &s.admin, &silent).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = s
            .post_ndjson(
                "/api/v1/models/fresh-v1/predictions",
                Some(&s.admin),
                &fraud_rows("fresh", Utc::now(), 1, false),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);

        // Drift: a whole hour of shifted traffic three hours ago (whole hours, so that the
        // evaluation window — the hour of the newest event — holds exactly one of them).
        let this_hour = custos_core::HourBucket::of(Utc::now()).start();
        let drifted = fraud_rows("hot", this_hour - Duration::hours(3), 2_000, true);
        let sent_at = Instant::now();
        let r = s
            .post_ndjson(
                "/api/v1/models/fraud-v3/predictions",
                Some(&s.admin),
                &drifted,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let firing = notification(&received, "drift firing", |p| {
            has_alert(p, "firing", "amount-drift")
        })
        .await;
        let elapsed = sent_at.elapsed();
        // `for` 2 s, evaluation every 1 s, the first delivery refused (503) and retried after
        // 1 s backoff: well within 10 s.
        assert!(
            elapsed < std::time::Duration::from_secs(10),
            "fired after {elapsed:?}"
        );
        assert!(
            elapsed >= std::time::Duration::from_secs(2),
            "fired before `for`"
        );
        let alert = firing["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "amount-drift")
            .unwrap();
        assert_eq!(alert["feature"], "amount");
        assert_eq!(alert["labels"]["team"], "fraud");
        assert_eq!(
            alert["annotations"]["summary"],
            "amount drifted on fraud-v3 (1)"
        );

        // The drift ends: the newest hour is like the reference again.
        let calm = fraud_rows("calm", this_hour - Duration::hours(1), 2_000, false);
        let r = s
            .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&s.admin), &calm)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        notification(&received, "drift resolved", |p| {
            has_alert(p, "resolved", "amount-drift")
        })
        .await;

        notification(&received, "freshness firing", |p| {
            has_alert(p, "firing", "silent") && p["alerts"][0]["model"] == "fresh-v1"
        })
        .await;
        assert_eq!(
            series_state(&s, "fresh-v1", "silent").await.as_deref(),
            Some("firing")
        );

        // History: pending → firing → resolved, and the delivery that was retried.
        let r = s
            .get("/api/v1/models/fraud-v3/alerts", Some(&s.admin))
            .await;
        let transitions: Vec<&str> = r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .filter(|e| e["rule"] == "amount-drift")
            .map(|e| e["transition"].as_str().unwrap())
            .collect();
        assert_eq!(transitions, ["pending", "firing", "resolved"]);
        let r = s.get("/api/v1/alert-deliveries", Some(&s.admin)).await;
        let deliveries = r.body["deliveries"].as_array().unwrap();
        let first = deliveries.last().unwrap();
        assert_eq!(first["status"], "sent", "{first:?}");
        assert_eq!(first["attempts"], 2, "{first:?}");
        assert!(
            first["last_error"].as_str().unwrap().contains("503"),
            "{first:?}"
        );

        // The rule change is a configuration version by the pipeline's token; the refusals
        // are audited.
        let r = s
            .get("/api/v1/models/fraud-v3/monitoring/history", Some(&s.admin))
            .await;
        let v = r.body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["version"] == version)
            .unwrap();
        assert_eq!(v["reason"], "ci");
        assert_ne!(v["created_by"], "bootstrap", "{v:?}");
        let audit = s.get("/api/v1/audit?limit=500", Some(&s.admin)).await;
        let records = audit.body["records"].as_array().unwrap();
        let actions: Vec<&str> = records
            .iter()
            .map(|r| r["record"]["action"].as_str().unwrap())
            .collect();
        assert!(actions.contains(&"alerts.update"), "{actions:?}");
        assert!(actions.contains(&"alert_channel.put"), "{actions:?}");
        let denied = records
            .iter()
            .filter(|r| r["record"]["outcome"] == "denied")
            .count();
        assert!(denied >= 3, "{denied} denials audited");
        assert!(!audit.body.to_string().contains(SECRET));
        s.stop().await;
        common::assert_absent_from_store(&site, &[SECRET]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_evaluates_at_a_time() {
    let site = Site::new(common::Backend::Sqlite);
    let s = site.start().await;
    let store = &s.state.store;
    // Past the lease the server's own evaluator took at start.
    let now = Utc::now() + Duration::hours(1);
    let until = now + Duration::seconds(10);
    assert!(
        store
            .try_lease("alert-evaluator", "a", now, until)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("alert-evaluator", "b", now, until)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("alert-evaluator", "a", now, until)
            .await
            .unwrap()
    );
    // Once it lapses, another replica takes over.
    assert!(
        store
            .try_lease("alert-evaluator", "b", until, until + Duration::seconds(10))
            .await
            .unwrap()
    );
    // The real clock is before `until + 10 s`: replica "a" must not evaluate.
    assert!(
        !custos_server::alerting::evaluate_once(&s.state, "a")
            .await
            .unwrap()
    );
    s.stop().await;
}

/// A local SMTP server (Debian `python3-aiosmtpd`) that requires STARTTLS with a certificate
/// made here, writing each message into a Maildir.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    maildir: std::path::PathBuf,
    ca_file: std::path::PathBuf,
}

impl SmtpSink {
    async fn start(dir: &std::path::Path) -> SmtpSink {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_file, key_file) = (dir.join("smtp-cert.pem"), dir.join("smtp-key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let port = common::free_port();
        let maildir = dir.join("maildir");
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg("--tlscert")
            .arg(&cert_file)
            .arg("--tlskey")
            .arg(&key_file)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect_or_explain();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the SMTP sink did not start");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        SmtpSink {
            child,
            port,
            maildir,
            ca_file: cert_file,
        }
    }

    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait ExplainSpawn {
    fn expect_or_explain(self) -> std::process::Child;
}

impl ExplainSpawn for std::io::Result<std::process::Child> {
    fn expect_or_explain(self) -> std::process::Child {
        self.unwrap_or_else(|e| {
            panic!("cannot run /usr/bin/python3 -m aiosmtpd (Debian python3-aiosmtpd): {e}")
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_model_alerts_by_email_over_starttls() {
    let site = Site::new(common::Backend::Sqlite);
    let smtp = SmtpSink::start(site.dir.path()).await;
    let mut config = site.config();
    config.alerts.evaluation_seconds = 1;
    let s = site.start_with(config).await;
    s.register_fraud_model().await;
    let channel = json!({"kind": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
        "smtp_ca_file": smtp.ca_file, "from": "custos@example.test",
        "to": ["oncall@example.test", "ml-team@example.test"]});
    let r = put(&s, "/api/v1/alert-channels/mail", &s.admin, &channel).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A model that never sent anything is silent since its registration.
    let rules = json!({"rules": [{"name": "silent", "metric": "freshness.silence_minutes",
        "condition": "above", "threshold": 0, "severity": "critical",
        "annotations": {"summary": "{{ model }} sent nothing for {{ value }} minutes"}}]});
    let r = put(&s, "/api/v1/models/fraud-v3/alerts", &s.admin, &rules).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let message = loop {
        if let Some(m) = smtp.messages().into_iter().next() {
            break m;
        }
        if Instant::now() > deadline {
            let d = s.get("/api/v1/alert-deliveries", Some(&s.admin)).await;
            panic!("no e-mail after 60 s; deliveries: {}", d.body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // Undo CRLF, header folding and quoted-printable soft line breaks.
    let message = message
        .replace("\r\n", "\n")
        .replace("\n ", " ")
        .replace("=\n", "");
    assert!(
        message.contains(
            "Subject: [Custos] [FIRING] fraud-v3 / silent (critical): fraud-v3 sent nothing for"
        ),
        "{message}"
    );
    assert!(
        message.contains("To: oncall@example.test, ml-team@example.test"),
        "{message}"
    );
    assert!(
        message.contains("metric freshness.silence_minutes"),
        "{message}"
    );
    let d = s.get("/api/v1/alert-deliveries", Some(&s.admin)).await;
    assert_eq!(d.body["deliveries"][0]["status"], "sent", "{:?}", d.body);
    // Settings that belong to another kind, or a missing recipient list, are refused.
    let mut wrong = channel.clone();
    wrong["to"] = json!([]);
    assert_eq!(
        put(&s, "/api/v1/alert-channels/m2", &s.admin, &wrong)
            .await
            .status,
        400
    );
    let mut wrong = channel.clone();
    wrong["kind"] = json!("webhook");
    wrong["url"] = json!("https://hooks.example.org/");
    wrong["secret"] = json!("0123456789abcdef0123");
    assert_eq!(
        put(&s, "/api/v1/alert-channels/m3", &s.admin, &wrong)
            .await
            .status,
        400
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_mute_notifications_and_acknowledgements_are_recorded() {
    let site = Site::new(common::Backend::Sqlite);
    let mut config = site.config();
    config.alerts.evaluation_seconds = 1;
    config.alerts.allow_plaintext_loopback = true;
    let s = site.start_with(config).await;
    let (hook, received) = receiver().await;
    s.register_fraud_model().await;
    let channel = json!({"kind": "webhook", "url": hook, "secret": SECRET});
    assert_eq!(
        put(&s, "/api/v1/alert-channels/ops", &s.admin, &channel)
            .await
            .status,
        200
    );
    let oncall = s
        .token(&[("alerts:write", "fraud-v3"), ("alerts:read", "fraud-v3")])
        .await;
    // Silenced before the rule exists, so its first firing is muted.
    let silence = json!({"rule": "silent", "duration": "1h", "comment": "maintenance window"});
    let r = s
        .post_json("/api/v1/models/fraud-v3/silences", Some(&oncall), &silence)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    for (bad, why) in [
        (json!({"duration": "31d", "comment": "x"}), "too long"),
        (json!({"duration": "1h", "comment": " "}), "no comment"),
    ] {
        let r = s
            .post_json("/api/v1/models/fraud-v3/silences", Some(&oncall), &bad)
            .await;
        assert_eq!(r.status, 400, "{why}: {:?}", r.body);
    }
    let rules = json!({"rules": [{"name": "silent", "metric": "freshness.silence_minutes",
        "condition": "above", "threshold": 0, "severity": "critical"}]});
    assert_eq!(
        put(&s, "/api/v1/models/fraud-v3/alerts", &oncall, &rules)
            .await
            .status,
        200
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while series_state(&s, "fraud-v3", "silent").await.as_deref() != Some("firing") {
        assert!(Instant::now() < deadline, "the rule never fired");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Evaluation went on (firing, visible), but nothing was queued or sent.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let d = s.get("/api/v1/alert-deliveries", Some(&s.admin)).await;
    assert_eq!(d.body["deliveries"], json!([]), "{:?}", d.body);
    assert!(received.lock().unwrap().is_empty());
    let r = s.get("/api/v1/models/fraud-v3/alerts", Some(&oncall)).await;
    assert_eq!(r.body["silences"][0]["comment"], "maintenance window");

    // Acknowledging the firing alert is recorded and shown; an alert that is not firing cannot
    // be acknowledged.
    let ack = json!({"rule": "silent"});
    let r = s
        .post_json(
            "/api/v1/models/fraud-v3/alerts/acknowledge",
            Some(&oncall),
            &ack,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = s.get("/api/v1/models/fraud-v3/alerts", Some(&oncall)).await;
    assert!(
        r.body["series"][0]["acknowledged_by"].is_string(),
        "{:?}",
        r.body
    );
    let r = s
        .post_json(
            "/api/v1/models/fraud-v3/alerts/acknowledge",
            Some(&oncall),
            &json!({"rule": "no-such-rule"}),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
    let actions: Vec<&str> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"alert.silence") && actions.contains(&"alert.acknowledge"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_pagerduty_receive_their_own_formats() {
    let site = Site::new(common::Backend::Sqlite);
    let mut config = site.config();
    config.alerts.evaluation_seconds = 1;
    config.alerts.allow_plaintext_loopback = true;
    let s = site.start_with(config).await;
    let (slack_url, slack) = receiver_failing_first(false).await;
    let (pd_url, pagerduty) = receiver_failing_first(false).await;
    s.register_fraud_model().await;
    let routing_key = "R0UT1NGKEY0123456789abcdef012345";
    for (name, body) in [
        ("chat", json!({"kind": "slack", "secret": slack_url})),
        (
            "pager",
            json!({"kind": "pagerduty", "url": pd_url, "secret": routing_key,
                         "min_severity": "critical"}),
        ),
    ] {
        let r = put(
            &s,
            &format!("/api/v1/alert-channels/{name}"),
            &s.admin,
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    }
    let rules = json!({"rules": [{"name": "silent", "metric": "freshness.silence_minutes",
        "condition": "above", "threshold": 0, "severity": "critical",
        "annotations": {"summary": "{{ model }} is silent"}}]});
    assert_eq!(
        put(&s, "/api/v1/models/fraud-v3/alerts", &s.admin, &rules)
            .await
            .status,
        200
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while slack.lock().unwrap().is_empty() || pagerduty.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no notification after 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, body) = slack.lock().unwrap()[0].clone();
    let text: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        text,
        json!({"text": "[FIRING] fraud-v3 / silent (critical): fraud-v3 is silent"})
    );
    let (_, body) = pagerduty.lock().unwrap()[0].clone();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["routing_key"], routing_key);
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["source"], "custos");
    assert_eq!(event["payload"]["component"], "fraud-v3");
    assert_eq!(event["dedup_key"].as_str().unwrap().len(), 16);
    s.stop().await;
    common::assert_absent_from_store(&site, &[routing_key]);
}
