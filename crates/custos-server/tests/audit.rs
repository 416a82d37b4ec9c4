//! The audit log end to end through the HTTP API: signed checkpoints whose proofs verify with
//! only the public key, fail-closed auditing when the log (or a required sink) cannot be
//! written, signing-key rotation, retention, configuration history with the two-person rule,
//! and lineage.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{BACKENDS, Backend, Server, Site};
use custos_core::{ActorType, FixedClock};
use custos_crypto::checkpoint::NoteVerifier;
use custos_crypto::merkle::{hash_from_slice, verify_consistency, verify_inclusion};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};
use std::sync::Arc;

fn hex32(v: &Value) -> [u8; 32] {
    hash_from_slice(&hex::decode(v.as_str().unwrap()).unwrap()).unwrap()
}

async fn checkpoint_now(s: &Server) -> i64 {
    custos_server::audit_log::checkpoint_once(&s.state, true)
        .await
        .unwrap();
    let r = s.get("/api/v1/audit/checkpoint", Some(&s.admin)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["tree_size"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_proofs_verify_with_the_public_key_alone() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        for _ in 0..5 {
            s.token(&[("drift:read", "fraud-v3")]).await;
        }
        let first = checkpoint_now(&s).await;
        let first_cp = s.get("/api/v1/audit/checkpoint", Some(&s.admin)).await.body;
        for _ in 0..7 {
            s.token(&[("drift:read", "fraud-v3")]).await;
        }
        let second = checkpoint_now(&s).await;
        assert!(second > first);
        let second_cp = s.get("/api/v1/audit/checkpoint", Some(&s.admin)).await.body;

        // Checkpoints verify with the published key.
        let keys = s.get("/api/v1/audit/keys", Some(&s.admin)).await.body;
        let vkey = keys["keys"][0]["verifier_key"].as_str().unwrap();
        let verifier = NoteVerifier::from_verifier_key(vkey).unwrap();
        let cp1 = verifier.verify(first_cp["note"].as_str().unwrap()).unwrap();
        let cp2 = verifier
            .verify(second_cp["note"].as_str().unwrap())
            .unwrap();
        assert_eq!(cp2.origin, keys["origin"].as_str().unwrap());
        assert_eq!(cp2.size, u64::try_from(second).unwrap());

        // Every entry's inclusion proof verifies against the signed root; a wrong leaf does not.
        let entries = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await.body;
        let records = entries["records"].as_array().unwrap();
        for seq in [1, second / 2, second] {
            let r = s
                .get(
                    &format!("/api/v1/audit/proof/inclusion?seq={seq}&tree_size={second}"),
                    Some(&s.admin),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let leaf = hex32(&r.body["leaf_hash"]);
            let proof: Vec<[u8; 32]> = r.body["proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(hex32)
                .collect();
            let index = u64::try_from(seq - 1).unwrap();
            verify_inclusion(&leaf, index, cp2.size, &proof, &cp2.root).unwrap();
            assert!(verify_inclusion(&[0u8; 32], index, cp2.size, &proof, &cp2.root).is_err());
            assert!(records.iter().any(|rec| rec["seq"] == seq));
        }
        // The newer checkpoint extends the older one.
        let r = s
            .get(
                &format!("/api/v1/audit/proof/consistency?from={first}&to={second}"),
                Some(&s.admin),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let proof: Vec<[u8; 32]> = r.body["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect();
        verify_consistency(cp1.size, cp2.size, &cp1.root, &cp2.root, &proof).unwrap();
        assert!(verify_consistency(cp1.size, cp2.size, &cp2.root, &cp2.root, &proof).is_err());

        // Bad requests are refused with a reason; the whole log verifies.
        let r = s
            .get(
                "/api/v1/audit/proof/inclusion?seq=0&tree_size=1",
                Some(&s.admin),
            )
            .await;
        assert_eq!(r.status, 400);
        let v = s.get("/api/v1/audit/verify", Some(&s.admin)).await.body;
        assert_eq!(v["ok"], true, "{v:?}");
        assert!(v["checkpoints"].as_u64().unwrap() >= 2);

        // Key rotation: new checkpoints use the new key; the old ones still verify.
        let row = custos_server::audit_log::rotate_signer(&s.state, "test", ActorType::System)
            .await
            .unwrap();
        assert_eq!(row.version, 2);
        s.token(&[("drift:read", "fraud-v3")]).await;
        checkpoint_now(&s).await;
        let keys = s.get("/api/v1/audit/keys", Some(&s.admin)).await.body;
        assert!(keys["keys"][0]["valid_until"].is_string());
        assert!(keys["keys"][1]["valid_until"].is_null());
        let cp = s.get("/api/v1/audit/checkpoint", Some(&s.admin)).await.body;
        assert_eq!(cp["key_version"], 2);
        let v = s.get("/api/v1/audit/verify", Some(&s.admin)).await.body;
        assert_eq!(v["ok"], true, "{v:?}");
        s.stop().await;
    }
}

/// Blocks every append to the audit table, as a full disk or a revoked grant would.
async fn block_audit_table(site: &Site, backend: Backend) {
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", site.data_dir().join("custos.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(
                "CREATE TRIGGER test_block BEFORE INSERT ON audit_log \
                 BEGIN SELECT RAISE(ABORT, 'audit store unwritable'); END",
            )
            .execute(&mut c)
            .await
            .unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&site.pg.as_ref().unwrap().url)
                .await
                .unwrap();
            for sql in [
                "CREATE FUNCTION test_block() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'audit store unwritable'; END; $$",
                "CREATE TRIGGER test_block BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION test_block()",
            ] {
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }
}

async fn login_form(s: &Server, secret: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client.get(s.url("/ui/login")).send().await.unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    client
        .post(s.url("/ui/login"))
        .header("cookie", &cookie)
        .form(&[("secret", secret), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

fn report_path() -> String {
    let now = chrono::Utc::now();
    format!(
        "/api/v1/models/fraud-v3/report?current_start={}&current_end={}&reference_trailing_hours=24",
        (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        now.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The same requests succeed while the log is writable, so the failures below are the audit's.
async fn audited_requests_work(s: &Server) {
    assert_eq!(s.get(&report_path(), Some(&s.admin)).await.status, 200);
    assert_eq!(
        s.get("/api/v1/audit/export", Some(&s.admin)).await.status,
        200
    );
    assert_eq!(login_form(s, &s.admin).await.status(), 303);
}

/// Every audited request, while the audit record cannot be written: none may succeed, none may
/// change anything.
async fn audited_requests_fail(s: &Server, what: &str) {
    let tokens_before = s.get("/api/v1/tokens", Some(&s.admin)).await.body;
    let monitoring_before = s
        .get("/api/v1/models/fraud-v3/monitoring", Some(&s.admin))
        .await
        .body;

    let r = login_form(s, &s.admin).await;
    assert!(
        r.status().is_server_error(),
        "{what}: sign-in {}",
        r.status()
    );
    assert!(
        r.headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().contains("custos_session")),
        "{what}: a session was opened unaudited"
    );
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "x", "scopes": [{"action": "drift:read", "model": "*"}]}),
        )
        .await;
    assert!(r.status >= 500, "{what}: token creation {}", r.status);
    let r = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/models/fraud-v3/monitoring",
            Some(&s.admin),
            Some((
                "application/json",
                serde_json::to_vec(&json!({"drift": {"drift_share": 0.25}})).unwrap(),
            )),
        )
        .await;
    assert!(r.status >= 500, "{what}: configuration change {}", r.status);
    let r = s.get(&report_path(), Some(&s.admin)).await;
    assert!(
        r.status >= 500,
        "{what}: report export {} {:?}",
        r.status,
        r.body
    );
    let r = s.get("/api/v1/audit/export", Some(&s.admin)).await;
    assert!(r.status >= 500, "{what}: audit export {}", r.status);

    assert_eq!(
        s.get("/api/v1/tokens", Some(&s.admin)).await.body,
        tokens_before,
        "{what}: tokens changed"
    );
    assert_eq!(
        s.get("/api/v1/models/fraud-v3/monitoring", Some(&s.admin))
            .await
            .body,
        monitoring_before,
        "{what}: monitoring changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_happens_unaudited_when_the_audit_store_is_unwritable() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        audited_requests_work(&s).await;
        let head_before = s.state.store.audit_head().await.unwrap();
        block_audit_table(&site, backend).await;
        audited_requests_fail(&s, &format!("{backend:?} store")).await;
        assert_eq!(s.state.store.audit_head().await.unwrap(), head_before);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_sink_that_is_down_fails_closed_too() {
    // A real HTTP collector that we then take down.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&received);
    let collector = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/audit",
            axum::routing::post(move |body: String| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(body);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.audit.sinks = toml::from_str(&format!(
        "policy = \"all\"\n[http]\nurl = \"http://{addr}/audit\"\ntimeout_ms = 1000\n"
    ))
    .unwrap();
    let s = site.start_with(config).await;
    s.register_fraud_model().await;
    // While the collector is up, each entry reaches it, byte for byte as stored.
    let mirrored = received.lock().unwrap().join("");
    assert!(
        mirrored.contains("\"action\":\"model.create\""),
        "{mirrored}"
    );
    let stored = s.state.store.audit_entries(0, 100).await.unwrap();
    for row in &stored {
        assert!(
            mirrored.contains(&row.record_json),
            "entry {} not mirrored",
            row.seq
        );
    }
    audited_requests_work(&s).await;
    collector.abort();
    let _ = collector.await;
    let head_before = s.state.store.audit_head().await.unwrap();
    audited_requests_fail(&s, "sink down").await;
    assert_eq!(s.state.store.audit_head().await.unwrap(), head_before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_from_a_checkpoint_and_stays_verifiable() {
    let clock = Arc::new(FixedClock::new(
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc(),
    ));
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.audit.retention_days = 30;
    let s = site.start_with_clock(config, clock.clone()).await;
    s.register_fraud_model().await;
    s.token(&[("drift:read", "*")]).await;
    let old = checkpoint_now(&s).await;
    clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .to_utc(),
    );
    s.token(&[("drift:read", "*")]).await;
    checkpoint_now(&s).await;
    let pruned = custos_server::audit_log::prune_once(&s.state)
        .await
        .unwrap();
    assert_eq!(pruned, u64::try_from(old - 1).unwrap());
    assert_eq!(s.state.store.audit_anchor().await.unwrap(), old);
    let entries = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await.body;
    assert_eq!(entries["records"][0]["seq"], old);
    let last = entries["records"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["record"]["action"], "audit.prune");
    let v = s.get("/api/v1/audit/verify", Some(&s.admin)).await.body;
    assert_eq!(v["ok"], true, "{v:?}");
    // The database refuses deleting above the anchor, even by hand.
    let url = format!("sqlite://{}", site.data_dir().join("custos.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    assert!(
        sqlx::query("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
            .execute(&mut c)
            .await
            .is_err()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weakening_changes_need_a_second_person_and_history_diffs_and_rolls_back() {
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.audit.two_person_rule = true;
    let s = site.start_with(config).await;
    s.register_fraud_model().await;
    let put = |body: Value, token: String, reason: &'static str| {
        let s = &s;
        async move {
            s.send(
                reqwest::Method::PUT,
                &format!("/api/v1/models/fraud-v3/monitoring?reason={reason}"),
                Some(&token),
                Some(("application/json", serde_json::to_vec(&body).unwrap())),
            )
            .await
        }
    };
    let alice = s
        .token(&[("monitors:write", "fraud-v3"), ("models:read", "*")])
        .await;
    let bob = s
        .token(&[("monitors:write", "fraud-v3"), ("models:read", "*")])
        .await;

    // Tightening takes effect at once.
    let r = put(
        json!({"drift": {"drift_share": 0.3}}),
        alice.clone(),
        "tighter",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["version"], 1);
    // Weakening waits.
    let r = put(
        json!({"drift": {"drift_share": 0.9}}),
        alice.clone(),
        "looser",
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let change = r.body["id"].as_i64().unwrap();
    assert!(
        r.body["weakenings"][0]["path"]
            .as_str()
            .unwrap()
            .contains("drift_share")
    );
    let current = s
        .get("/api/v1/models/fraud-v3/monitoring", Some(&alice))
        .await
        .body;
    assert_eq!(current["version"], 1, "a weakening took effect alone");
    // Its author cannot approve it; someone else can.
    let path = format!("/api/v1/models/fraud-v3/monitoring/changes/{change}/approve");
    let r = s.post_json(&path, Some(&alice), &json!({})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = s.post_json(&path, Some(&bob), &json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "approved");
    let r = s.post_json(&path, Some(&bob), &json!({})).await;
    assert_eq!(r.status, 409, "decided twice: {:?}", r.body);

    let history = s
        .get("/api/v1/models/fraud-v3/monitoring/history", Some(&alice))
        .await
        .body;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["reason"], "tighter");
    assert_eq!(versions[1]["reason"], "looser");
    assert!(versions[1]["approved_by"].as_str().unwrap().len() > 3);
    assert_ne!(versions[1]["approved_by"], versions[1]["created_by"]);

    let diff = s
        .get(
            "/api/v1/models/fraud-v3/monitoring/diff?from=1&to=2",
            Some(&alice),
        )
        .await
        .body;
    assert_eq!(diff["changes"][0]["path"], "/drift/drift_share");
    assert_eq!(diff["changes"][0]["before"], 0.3);
    assert_eq!(diff["changes"][0]["after"], 0.9);
    assert_eq!(diff["weakenings"].as_array().unwrap().len(), 1);

    // Rolling back to version 1 tightens, so it applies at once as version 3.
    let r = s
        .post_json(
            "/api/v1/models/fraud-v3/monitoring/rollback",
            Some(&alice),
            &json!({"version": 1, "reason": "incident 42"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["version"], 3);
    assert_eq!(r.body["config"]["drift"]["drift_share"], 0.3);
    let v3 = s
        .get(
            "/api/v1/models/fraud-v3/monitoring/versions/3",
            Some(&alice),
        )
        .await
        .body;
    assert_eq!(v3["reason"], "rollback to version 1: incident 42");

    // Lineage names the configuration versions and the model's registration.
    let lineage = s
        .get("/api/v1/models/fraud-v3/lineage", Some(&alice))
        .await
        .body;
    assert_eq!(lineage["config_versions"].as_array().unwrap().len(), 3);
    assert_eq!(lineage["spec_sha256"].as_str().unwrap().len(), 64);

    // Every step is in the audit log.
    let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await.body;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["action"].as_str().unwrap())
        .collect();
    for expected in [
        "monitoring.update",
        "monitoring.propose",
        "monitoring.approve",
        "monitoring.rollback",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing: {actions:?}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_and_pii_are_recorded_only_as_keyed_hashes() {
    const CANARY_EMAIL: &str = "canary.person.7f3a@example.com";
    const CANARY_PASSWORD: &str = "Canary-Password-7f3a-!";
    const CANARY_TOKEN: &str = "cst_canarycanarycanarycanarycanary7f3a";
    let site = Site::new(Backend::Sqlite);
    let sink = site.dir.path().join("audit.jsonl");
    let mut config = site.config();
    config.audit.sinks = toml::from_str(&format!("[file]\npath = {:?}\n", sink)).unwrap();
    let s = site.start_with(config).await;

    // A sign-in with a person's e-mail address and a password, and an API call with a token.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client.get(s.url("/ui/login")).send().await.unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    let r = client
        .post(s.url("/ui/login"))
        .header("cookie", &cookie)
        .header("user-agent", "canary-agent\tforged: line")
        .form(&[
            ("username", CANARY_EMAIL),
            ("secret", CANARY_PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = s.get("/api/v1/models", Some(CANARY_TOKEN)).await;
    assert_eq!(r.status, 401);

    let export = client
        .get(s.url("/api/v1/audit/export"))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mirrored = std::fs::read_to_string(&sink).unwrap();
    for (name, text) in [("export", &export), ("file sink", &mirrored)] {
        // One record per line whatever the client sent.
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap();
        }
        for canary in [CANARY_EMAIL, CANARY_PASSWORD, CANARY_TOKEN] {
            assert!(!text.contains(canary), "{name} holds a canary in clear");
        }
        // A control character a client sends never reaches a record (the request context drops
        // them), so one request stays one parseable line.
        assert!(!text.contains('\t'), "{name}: raw control character");
        let agents: Vec<String> = text
            .lines()
            .filter_map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let record = match &v["record"] {
                    Value::String(raw) => serde_json::from_str::<Value>(raw).ok()?,
                    other => other.clone(),
                };
                record["user_agent"].as_str().map(str::to_owned)
            })
            .collect();
        assert!(
            agents
                .iter()
                .any(|a| a.starts_with("canary-agent") && !a.chars().any(char::is_control)),
            "{name}: {agents:?}"
        );
    }

    let hash = |value: &str| {
        let s = &s;
        let value = value.to_owned();
        async move {
            let r = s
                .post_json(
                    "/api/v1/audit/hash",
                    Some(&s.admin),
                    &json!({ "value": value }),
                )
                .await;
            assert_eq!(r.status, 200);
            r.body["hmac"].as_str().unwrap().to_owned()
        }
    };
    let email_tag = hash(CANARY_EMAIL).await;
    let token_tag = hash(CANARY_TOKEN).await;
    assert!(
        export.contains(&email_tag),
        "the sign-in's name hash is missing"
    );
    assert!(export.contains(&token_tag), "the token's hash is missing");
    assert!(mirrored.contains(&email_tag) && mirrored.contains(&token_tag));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_browses_the_verified_log_and_diffs_versions_but_changes_nothing() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    for share in [0.3, 0.45] {
        let r = s
            .send(
                reqwest::Method::PUT,
                "/api/v1/models/fraud-v3/monitoring?reason=tuning",
                Some(&s.admin),
                Some((
                    "application/json",
                    serde_json::to_vec(&json!({"drift": {"drift_share": share}})).unwrap(),
                )),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = s
        .post_json(
            "/api/v1/users",
            Some(&s.admin),
            &json!({"name": "ada-auditor", "password": "correct horse battery staple",
                    "roles": [{"role": "auditor", "model": "*"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    checkpoint_now(&s).await;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client.get(s.url("/ui/login")).send().await.unwrap();
    let csrf_cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_cookie.split_once('=').unwrap().1.to_owned();
    let r = client
        .post(s.url("/ui/login"))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("username", "ada-auditor"),
            ("secret", "correct horse battery staple"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("custos_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let cookies = format!("{session}; {csrf_cookie}");
    let get = |path: &str| {
        let request = client.get(s.url(path)).header("cookie", &cookies);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    let (status, models) = get("/ui").await;
    assert_eq!(status, 200);
    assert!(models.contains("/ui/audit"));
    let (status, log) = get("/ui/audit").await;
    assert_eq!(status, 200, "{log}");
    assert!(log.contains("id=\"verified\""), "{log}");
    assert!(log.contains("monitoring.update") && log.contains("user.create"));
    let (status, filtered) = get("/ui/audit?action=auth.&outcome=success").await;
    assert_eq!(status, 200);
    assert!(filtered.contains("auth.sign_in") && !filtered.contains("monitoring.update"));
    let (status, history) = get("/ui/models/fraud-v3/history?from=1&to=2").await;
    assert_eq!(status, 200, "{history}");
    assert!(history.contains("/drift/drift_share") && history.contains("0.45"));
    assert!(history.contains("tuning"));

    // Nothing can be changed with this session: configuration, tokens, users, keys.
    for (method, path, body) in [
        (
            reqwest::Method::PUT,
            "/api/v1/models/fraud-v3/monitoring",
            json!({"drift": {"drift_share": 0.9}}),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/models/fraud-v3/monitoring/rollback",
            json!({"version": 1}),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tokens",
            json!({"description": "x", "scopes": [{"action": "audit:read", "model": "*"}]}),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users",
            json!({"name": "eve", "password": "another long passphrase", "roles": []}),
        ),
    ] {
        let r = client
            .request(method, s.url(path))
            .header("cookie", &cookies)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let versions = s
        .get("/api/v1/models/fraud-v3/monitoring/history", Some(&s.admin))
        .await
        .body;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_and_session_expiry_are_audited() {
    let start = chrono::DateTime::parse_from_rfc3339("2026-06-01T08:00:00Z")
        .unwrap()
        .to_utc();
    let clock = Arc::new(FixedClock::new(start));
    let site = Site::new(Backend::Sqlite);
    let s = site.start_with_clock(site.config(), clock.clone()).await;
    let session_of = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("custos_session="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Expiry: idle past the timeout, then come back.
    let first = session_of(&login_form(&s, &s.admin).await);
    clock.set(start + chrono::Duration::minutes(45));
    let r = client
        .get(s.url("/ui"))
        .header("cookie", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // Sign-out.
    let login = client.get(s.url("/ui/login")).send().await.unwrap();
    let csrf_cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_cookie.split_once('=').unwrap().1.to_owned();
    let r = client
        .post(s.url("/ui/login"))
        .header("cookie", &csrf_cookie)
        .form(&[("secret", s.admin.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let second = session_of(&r);
    let r = client
        .post(s.url("/ui/logout"))
        .header("cookie", format!("{second}; {csrf_cookie}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await.body;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"auth.session_expired"), "{actions:?}");
    assert!(actions.contains(&"auth.sign_out"), "{actions:?}");
    s.stop().await;
}
