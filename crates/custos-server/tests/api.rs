//! End-to-end tests of the foundation's acceptance points, over real HTTP against a real server,
//! on the embedded SQLite store and on a fresh PostgreSQL database.

// Test and benchmark code: a failed unwrap is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{BACKENDS, Backend, Site, fraud_rows, fraud_spec};
use reqwest::Method;
use serde_json::{Value, json};

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

#[tokio::test]
async fn health_and_openapi_are_public_and_reveal_nothing() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    let r = s.get("/healthz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
    let r = s.get("/api/v1/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/models",
        "/api/v1/models/{model}/predictions",
        "/api/v1/models/{model}/labels",
        "/api/v1/models/{model}/drift",
        "/api/v1/models/{model}/features/{feature}/profile",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/models/{model}/events",
        "/api/v1/models/{model}/reveal",
        "/api/v1/models/{model}/vault/{token}",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    s.stop().await;
}

/// Every API route in the OpenAPI description is in the policy table with the same methods,
/// and every route of the table answers as the table says for anonymous callers, for a token
/// without any grant, for a token scoped to another model, and for the administrator.
#[tokio::test]
async fn every_route_obeys_the_policy_table() {
    use custos_server::policy::{ModelParam, POLICY, Requirement};
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    let spec = s.get("/api/v1/openapi.json", None).await.body;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            assert!(
                POLICY.iter().any(|(pm, pr, _)| *pm == m && pr == path),
                "{m} {path} is served but missing from the policy table"
            );
        }
    }
    let unrelated = s.token(&[("drift:read", "other-model")]).await;
    for (method, route, requirement) in POLICY {
        let path = route
            .replace("{model}", "fraud-v3")
            .replace("{feature}", "amount")
            .replace("{id}", "tok_0000000000000000");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let anonymous = s.send(method.clone(), &path, None, None).await;
        let scoped_elsewhere = s.send(method.clone(), &path, Some(&unrelated), None).await;
        let admin = s.send(method.clone(), &path, Some(&s.admin), None).await;
        match requirement {
            Requirement::Public => {
                assert!(![401, 403].contains(&anonymous.status), "{method} {route}");
            }
            Requirement::SignedIn => {
                // Anyone authenticated, whatever it may do; nobody else.
                let expected_anonymous = if route.starts_with("/ui") { 303 } else { 401 };
                assert_eq!(
                    anonymous.status, expected_anonymous,
                    "anonymous {method} {route}"
                );
                for who in [&scoped_elsewhere, &admin] {
                    assert!(![401, 403].contains(&who.status), "{method} {route}");
                }
            }
            Requirement::Authenticated(_, model_param) => {
                let ui = route.starts_with("/ui");
                let expected_anonymous = if ui { 303 } else { 401 };
                assert_eq!(
                    anonymous.status, expected_anonymous,
                    "anonymous {method} {route}"
                );
                assert_eq!(
                    scoped_elsewhere.status, 403,
                    "foreign token {method} {route}"
                );
                assert!(
                    ![401, 403].contains(&admin.status),
                    "admin {method} {route}: {}",
                    admin.status
                );
                // A token holding exactly this route's action passes the choke point on its
                // scope (whatever the handler then says about a missing body) and nowhere else.
                let Requirement::Authenticated(action, _) = requirement else {
                    unreachable!()
                };
                if *model_param == ModelParam::Path {
                    let exact = s.token(&[(action.as_str(), "fraud-v3")]).await;
                    let own = s.send(method.clone(), &path, Some(&exact), None).await;
                    assert!(
                        ![401, 403].contains(&own.status),
                        "{method} {route} with {}: {}",
                        action.as_str(),
                        own.status
                    );
                    let other = path.replace("fraud-v3", "other-model");
                    let r = s.send(method.clone(), &other, Some(&exact), None).await;
                    assert_eq!(
                        r.status, 403,
                        "{method} {other} is out of the token's scope"
                    );
                } else {
                    let exact = s.token(&[(action.as_str(), "*")]).await;
                    let own = s.send(method.clone(), &path, Some(&exact), None).await;
                    assert!(
                        ![401, 403].contains(&own.status),
                        "{method} {route} with {} on *: {}",
                        action.as_str(),
                        own.status
                    );
                }
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn tokens_401_without_and_403_for_another_model() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        let mut other = fraud_spec();
        other["name"] = json!("churn-v1");
        assert_eq!(
            s.post_json("/api/v1/models", Some(&s.admin), &other)
                .await
                .status,
            201
        );
        let writer = s.token(&[("predictions:write", "fraud-v3")]).await;
        let rows = fraud_rows("a", t0(), 5, false);
        let path = "/api/v1/models/fraud-v3/predictions";

        let r = s.post_ndjson(path, None, &rows).await;
        assert_eq!(r.status, 401, "{backend:?}");
        assert_eq!(r.body["code"], "unauthenticated");
        let r = s.post_ndjson(path, Some("cst_garbage"), &rows).await;
        assert_eq!(r.status, 401);
        let r = s
            .post_ndjson("/api/v1/models/churn-v1/predictions", Some(&writer), &rows)
            .await;
        assert_eq!(r.status, 403, "{backend:?}");
        assert_eq!(r.body["code"], "forbidden");
        let r = s.post_ndjson(path, Some(&writer), &rows).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body, json!({"accepted": 5, "duplicates": 0}));
        // The writer may not read, nor mint tokens for itself.
        assert_eq!(
            s.get("/api/v1/models/fraud-v3/volume", Some(&writer))
                .await
                .status,
            403
        );
        let r = s
            .post_json(
                "/api/v1/tokens",
                Some(&writer),
                &json!({"description": "x", "scopes": [{"action": "predictions:write", "model": "*"}]}),
            )
            .await;
        assert_eq!(r.status, 403);
        // Revocation takes effect at once.
        let list = s.get("/api/v1/tokens", Some(&s.admin)).await;
        let id = list.body["tokens"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(
            s.send(
                Method::DELETE,
                &format!("/api/v1/tokens/{id}"),
                Some(&s.admin),
                None
            )
            .await
            .status,
            204
        );
        assert_eq!(
            s.post_ndjson(path, Some(&writer), &fraud_rows("b", t0(), 1, false))
                .await
                .status,
            401
        );
        s.stop().await;
    }
}

async fn counts(s: &common::Server) -> (u64, Value) {
    let events = s.state.store.event_count(1).await.unwrap();
    let volume = s
        .get(
            "/api/v1/models/fraud-v3/volume?start=2026-11-01T00:00:00Z&end=2026-12-01T00:00:00Z",
            Some(&s.admin),
        )
        .await
        .body;
    (events, volume)
}

#[tokio::test]
async fn a_bad_row_rejects_the_whole_batch_and_names_row_and_field() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        let path = "/api/v1/models/fraud-v3/predictions";
        assert_eq!(
            s.post_ndjson(path, Some(&s.admin), &fraud_rows("ok", t0(), 10, false))
                .await
                .status,
            200
        );
        let before = counts(&s).await;

        let mut rows = fraud_rows("bad", t0(), 6, false);
        rows[3]["amount"] = json!("12.5 EUR");
        for (format, r) in [
            ("ndjson", s.post_ndjson(path, Some(&s.admin), &rows).await),
            (
                "json",
                s.post_json(path, Some(&s.admin), &Value::Array(rows.clone()))
                    .await,
            ),
        ] {
            assert_eq!(r.status, 422, "{backend:?} {format}: {:?}", r.body);
            assert_eq!(r.body["code"], "invalid_rows");
            assert_eq!(
                r.body["rows"],
                json!([{"row": 3, "field": "amount", "reason": "expected a number, got a string"}])
            );
            assert!(
                !r.body.to_string().contains("12.5 EUR"),
                "the value is not echoed"
            );
        }
        assert_eq!(
            counts(&s).await,
            before,
            "{backend:?}: nothing of the batch was written"
        );

        // Other shapes of bad input: clear errors, no panics, nothing written.
        let r = s
            .send(
                Method::POST,
                path,
                Some(&s.admin),
                Some(("application/json", b"{not json".to_vec())),
            )
            .await;
        assert_eq!(r.status, 400);
        let r = s
            .send(
                Method::POST,
                path,
                Some(&s.admin),
                Some(("text/csv", b"a,b".to_vec())),
            )
            .await;
        assert_eq!(r.status, 400);
        let mut dup = fraud_rows("dup", t0(), 3, false);
        dup[2]["event_id"] = dup[0]["event_id"].clone();
        let r = s.post_ndjson(path, Some(&s.admin), &dup).await;
        assert_eq!(r.status, 422);
        assert_eq!(r.body["rows"][0]["row"], 2);
        assert_eq!(counts(&s).await, before);
        s.stop().await;
    }
}

#[tokio::test]
async fn limits_on_body_size_and_rows() {
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.limits.max_batch_rows = 50;
    config.limits.max_body_bytes = 64 * 1024;
    let s = site.start_with(config).await;
    s.register_fraud_model().await;
    let path = "/api/v1/models/fraud-v3/predictions";
    let r = s
        .post_ndjson(path, Some(&s.admin), &fraud_rows("x", t0(), 51, false))
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.body["code"], "too_many_rows");
    let big = vec![b' '; 100 * 1024];
    let r = s
        .send(
            Method::POST,
            path,
            Some(&s.admin),
            Some(("application/json", big)),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.body["code"], "payload_too_large");
    s.stop().await;
}

#[tokio::test]
async fn duplicates_are_skipped_and_labels_join_later() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    let path = "/api/v1/models/fraud-v3/predictions";
    let rows = fraud_rows("e", t0(), 100, false);
    assert_eq!(
        s.post_json(path, Some(&s.admin), &Value::Array(rows.clone()))
            .await
            .body,
        json!({"accepted": 100, "duplicates": 0})
    );
    // A retried batch, plus 20 new rows.
    let mut retry = rows.clone();
    retry.extend(fraud_rows("f", t0(), 20, false));
    assert_eq!(
        s.post_json(path, Some(&s.admin), &Value::Array(retry))
            .await
            .body,
        json!({"accepted": 20, "duplicates": 100})
    );

    let labels = s.token(&[("labels:write", "fraud-v3")]).await;
    let r = s
        .post_json(
            "/api/v1/models/fraud-v3/labels",
            Some(&labels),
            &json!([{"event_id": "e-1", "label": 1}, {"event_id": "e-2", "label": 0}, {"event_id": "not-yet", "label": true}]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"stored": 3}));
    let r = s
        .post_json(
            "/api/v1/models/fraud-v3/labels",
            Some(&labels),
            &json!({"event_id": "e-3", "label": 7}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["rows"][0]["field"], "label");
    s.stop().await;
}

#[tokio::test]
async fn profiles_and_drift_come_from_stored_sketches() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        let path = "/api/v1/models/fraud-v3/predictions";
        // Reference day: 24 stable hours; current day: shifted amount and country mix.
        for h in 0..24 {
            let at = t0() + Duration::hours(h);
            let r = s
                .post_ndjson(
                    path,
                    Some(&s.admin),
                    &fraud_rows(&format!("r{h}"), at, 200, false),
                )
                .await;
            assert_eq!(r.status, 200);
            let at = t0() + Duration::hours(24 + h);
            let r = s
                .post_ndjson(
                    path,
                    Some(&s.admin),
                    &fraud_rows(&format!("c{h}"), at, 200, true),
                )
                .await;
            assert_eq!(r.status, 200);
        }
        let reader = s
            .token(&[("drift:read", "fraud-v3"), ("profiles:read", "fraud-v3")])
            .await;
        let r = s
            .get("/api/v1/models/fraud-v3/features/amount/profile?start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z", Some(&reader))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["summary"]["count"], 4800);
        assert!(r.body["buckets_merged"].as_u64().unwrap() >= 24);
        let mean = r.body["summary"]["detail"]["mean"]
            .as_f64()
            .or_else(|| r.body["summary"]["mean"].as_f64());
        assert!(
            mean.is_some_and(|m| (55.0..65.0).contains(&m)),
            "{:?}",
            r.body["summary"]
        );

        let q = "reference_start=2026-11-20T00:00:00Z&reference_end=2026-11-21T00:00:00Z\
                 &current_start=2026-11-21T00:00:00Z&current_end=2026-11-22T00:00:00Z";
        let r = s
            .get(&format!("/api/v1/models/fraud-v3/drift?{q}"), Some(&reader))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let verdict = |name: &str| {
            r.body["features"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["feature"] == name)
                .cloned()
                .unwrap()
        };
        assert_eq!(verdict("amount")["drifted"], true, "{backend:?}");
        assert!(verdict("amount")["psi"].as_f64().unwrap() > 1.0);
        assert_eq!(verdict("country")["drifted"], true);
        assert_eq!(verdict("score")["drifted"], false);
        assert!(verdict("score")["psi"].as_f64().unwrap() < 0.1);
        assert_eq!(r.body["total_features"], 4);
        assert_eq!(r.body["dataset_drift"], true);

        // The same window against itself: nothing drifts.
        let same = "reference_start=2026-11-20T00:00:00Z&reference_end=2026-11-21T00:00:00Z\
                    &current_start=2026-11-20T00:00:00Z&current_end=2026-11-21T00:00:00Z";
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{same}"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.body["drifted_features"], 0);

        // Missing parameters are a clear 400.
        let r = s.get("/api/v1/models/fraud-v3/drift", Some(&reader)).await;
        assert_eq!(r.status, 400);
        // Compaction merges an hour's deltas into one without changing any answer.
        for k in 0..10 {
            let at = t0() + Duration::hours(3);
            let r = s
                .post_ndjson(
                    path,
                    Some(&s.admin),
                    &fraud_rows(&format!("x{k}"), at, 20, false),
                )
                .await;
            assert_eq!(r.status, 200);
        }
        let before = s
            .get(&format!("/api/v1/models/fraud-v3/drift?{q}"), Some(&reader))
            .await
            .body;
        let compacted = custos_server::jobs::compact_once(&s.state).await.unwrap();
        assert!(
            compacted >= 1,
            "{backend:?}: the hour with 11 deltas is compacted"
        );
        let profile = "/api/v1/models/fraud-v3/features/amount/profile?start=2026-11-20T03:00:00Z&end=2026-11-20T04:00:00Z";
        let r = s.get(profile, Some(&reader)).await;
        assert_eq!(r.body["buckets_merged"], 1, "{backend:?}");
        assert_eq!(r.body["summary"]["count"], 400);
        let after = s
            .get(&format!("/api/v1/models/fraud-v3/drift?{q}"), Some(&reader))
            .await
            .body;
        for (b, a) in before["features"]
            .as_array()
            .unwrap()
            .iter()
            .zip(after["features"].as_array().unwrap())
        {
            assert_eq!(b["reference_count"], a["reference_count"]);
            assert_eq!(b["drifted"], a["drifted"]);
            let (pb, pa) = (b["psi"].as_f64().unwrap(), a["psi"].as_f64().unwrap());
            // KLL compaction is randomized: merging in another order moves quantiles within
            // the sketch's rank error, so compare with a tolerance relative to the value.
            let tolerance = 0.05 + 0.03 * pb.max(pa);
            assert!(
                (pb - pa).abs() < tolerance,
                "{}: psi {pb} vs {pa}",
                b["feature"]
            );
        }
        s.stop().await;
    }
}

const CANARY: &str = "canary-7f3a9c1e-pii@example.invalid";
const CANARY_COUNTRY: &str = "Zz-canary-country-51d2";

#[tokio::test]
async fn canary_values_never_reach_the_database_in_the_clear() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        let mut rows = fraud_rows("canary", t0(), 50, false);
        for row in &mut rows {
            row["email"] = json!(CANARY);
            row["country"] = json!(CANARY_COUNTRY);
        }
        let r = s
            .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&s.admin), &rows)
            .await;
        assert_eq!(r.status, 200);
        let r = s
            .post_json(
                "/api/v1/models/fraud-v3/labels",
                Some(&s.admin),
                &json!({"event_id": "canary-3", "label": 1}),
            )
            .await;
        assert_eq!(r.status, 200);
        // The data is usable: the pseudonymized e-mail is profiled as one distinct value.
        let p = s.get("/api/v1/models/fraud-v3/features/email/profile?start=2026-11-20T00:00:00Z&end=2026-11-20T01:00:00Z", Some(&s.admin)).await;
        assert!(
            !p.body.to_string().contains(CANARY),
            "the API shows pseudonyms only"
        );
        s.stop().await;
        common::assert_absent_from_store(&site, &[CANARY, CANARY_COUNTRY, "canary-3"]);
    }
}

#[tokio::test]
async fn restart_keeps_data_and_tokens_and_does_not_recreate_the_bootstrap_secret() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let token_file = site.data_dir().join("bootstrap-token");
        let s = site.start().await;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        if backend == Backend::Sqlite {
            for name in ["custos.db", "custos.db-wal", "keys/kek-v1.key"] {
                let path = site.data_dir().join(name);
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{name}");
            }
        }
        let first_secret = s.admin.clone();
        assert!(first_secret.starts_with("csb_"));
        s.register_fraud_model().await;
        let writer = s
            .token(&[
                ("predictions:write", "fraud-v3"),
                ("profiles:read", "fraud-v3"),
            ])
            .await;
        assert_eq!(
            s.post_ndjson(
                "/api/v1/models/fraud-v3/predictions",
                Some(&writer),
                &fraud_rows("p", t0(), 30, false)
            )
            .await
            .status,
            200
        );
        s.stop().await;

        let modified = std::fs::metadata(&token_file).unwrap().modified().unwrap();
        let s = site.start().await;
        assert_eq!(
            s.admin, first_secret,
            "{backend:?}: bootstrap secret unchanged"
        );
        assert_eq!(
            std::fs::metadata(&token_file).unwrap().modified().unwrap(),
            modified
        );
        let r = s.get("/api/v1/models/fraud-v3/volume?start=2026-11-19T00:00:00Z&end=2026-11-21T00:00:00Z", Some(&writer)).await;
        assert_eq!(r.status, 200, "{backend:?}: token survives: {:?}", r.body);
        let total: u64 = r.body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["rows"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 30);
        let r = s
            .post_ndjson(
                "/api/v1/models/fraud-v3/predictions",
                Some(&writer),
                &fraud_rows("p", t0(), 30, false),
            )
            .await;
        assert_eq!(
            r.body,
            json!({"accepted": 0, "duplicates": 30}),
            "event index survives"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn security_relevant_acts_are_audited_in_a_verifiable_chain() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    let _t = s.token(&[("drift:read", "fraud-v3")]).await;
    assert_eq!(s.get("/api/v1/models", Some("cst_nope")).await.status, 401);
    let reader = s.token(&[("audit:read", "*")]).await;
    let r = s.get("/api/v1/audit?limit=1000", Some(&reader)).await;
    assert_eq!(r.status, 200);
    let records = r.body["records"].as_array().unwrap();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["record"]["action"].as_str().unwrap())
        .collect();
    for expected in [
        "server.start",
        "model.create",
        "token.create",
        "auth.bearer",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let failure = records
        .iter()
        .find(|r| r["record"]["action"] == "auth.bearer")
        .unwrap();
    assert_eq!(failure["record"]["outcome"], "failure");
    assert_eq!(failure["record"]["source_ip"], "127.0.0.1");
    assert!(
        !r.body.to_string().contains("cst_nope"),
        "credentials are never recorded"
    );
    assert!(!r.body.to_string().contains(&s.admin));
    let v = s.get("/api/v1/audit/verify", Some(&reader)).await;
    assert_eq!(v.body["ok"], true);
    s.stop().await;
}

#[tokio::test]
async fn non_loopback_plain_http_is_refused() {
    let addr: std::net::SocketAddr = "0.0.0.0:8750".parse().unwrap();
    assert!(custos_server::check_listen_address(addr, false).is_err());
    assert!(custos_server::check_listen_address(addr, true).is_ok());
    assert!(custos_server::check_listen_address("127.0.0.1:1".parse().unwrap(), false).is_ok());
}

#[tokio::test]
async fn web_sign_in_with_the_one_time_secret() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(s.url("/ui")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let login = client.get(s.url("/ui/login")).send().await.unwrap();
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe"));
    let csrf_cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_cookie.split_once('=').unwrap().1.to_owned();
    let html = login.text().await.unwrap();
    assert!(html.contains(&csrf));

    // An API token cannot open a web session, even a valid one.
    let reader = s.token(&[("drift:read", "*"), ("models:read", "*")]).await;
    let r = client
        .post(s.url("/ui/login"))
        .header("cookie", &csrf_cookie)
        .form(&[("secret", reader.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().contains("custos_session"))
    );
    // Without the CSRF cookie the form is refused.
    let r = client
        .post(s.url("/ui/login"))
        .form(&[("secret", s.admin.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(s.url("/ui/login"))
        .header("cookie", &csrf_cookie)
        .form(&[("secret", s.admin.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && session.contains("Secure")
    );
    let session = session.split(';').next().unwrap().to_owned();
    let page = client
        .get(s.url("/ui"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("fraud-v3"));
    let page = client
        .get(s.url("/ui/models/fraud-v3"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    s.stop().await;
}

/// A flood beyond the ingest admission bound is answered 429 with Retry-After at once instead of
/// queueing without bound, and every refused batch wrote nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_429_and_nothing_partial() {
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.limits.max_concurrent_ingest = 1;
    let s = std::sync::Arc::new(site.start_with(config).await);
    s.register_fraud_model().await;
    let mut tasks = Vec::new();
    for k in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let rows = fraud_rows(&format!("flood{k}"), t0(), 3_000, false);
            let r = s
                .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&s.admin), &rows)
                .await;
            (r.status, r.headers.get("retry-after").is_some())
        }));
    }
    let mut ok = 0u64;
    let mut limited = 0u64;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (429, true) => limited += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        limited > 0,
        "24 concurrent batches against an admission bound of 2"
    );
    assert!(ok > 0);
    assert_eq!(s.state.store.event_count(1).await.unwrap(), ok * 3_000);
}

/// Guessing is throttled per client address on both doors — web sign-in and bearer credentials
/// share one counter — and every failed attempt is audited without the guessed secret.
#[tokio::test]
async fn credential_guessing_is_throttled_and_audited() {
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.limits.auth_failures_per_minute = 3;
    let s = site.start_with(config).await;
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
    let attempt = |secret: &'static str| {
        client
            .post(s.url("/ui/login"))
            .header("cookie", &csrf_cookie)
            .form(&[("secret", secret), ("csrf", csrf.as_str())])
            .send()
    };
    assert_eq!(attempt("csb_guess-1").await.unwrap().status(), 401);
    assert_eq!(attempt("csb_guess-2").await.unwrap().status(), 401);
    assert_eq!(
        s.get("/api/v1/models", Some("cst_guess-3")).await.status,
        401
    );
    // The limit is reached: even the right secret waits, on both doors.
    assert_eq!(attempt("csb_guess-4").await.unwrap().status(), 429);
    let r = s.get("/api/v1/models", Some(&s.admin)).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.get("retry-after").is_some());

    let records = s.state.store.audit_entries(0, 1000).await.unwrap();
    let failures: Vec<&str> = records
        .iter()
        .map(|r| r.record_json.as_str())
        .filter(|j| j.contains("\"outcome\":\"failure\""))
        .collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(
        failures.iter().all(|j| !j.contains("guess")),
        "secrets are never recorded"
    );
    s.stop().await;
}

/// Tokens stop working when they expire, judged by the server's clock (a fixed clock here, so
/// the test does not wait), and the failure is audited as an expiry.
#[tokio::test]
async fn tokens_expire() {
    let site = Site::new(Backend::Sqlite);
    let clock = std::sync::Arc::new(custos_core::FixedClock::new(t0()));
    let s = site.start_with_clock(site.config(), clock.clone()).await;
    s.register_fraud_model().await;
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "short", "expires_in_days": 1,
                    "scopes": [{"action": "models:read", "model": "fraud-v3"}]}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["token"]["expires_at"], "2026-11-21T00:00:00Z");
    let token = r.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&token)).await.status,
        200
    );
    clock.set(t0() + Duration::hours(23) + Duration::minutes(59));
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&token)).await.status,
        200
    );
    clock.set(t0() + Duration::days(1));
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&token)).await.status,
        401
    );
    let audit = s.state.store.audit_entries(0, 1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.record_json.contains("\"reason\":\"expired\""))
    );
    // Lifetimes are bounded.
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "forever", "expires_in_days": 366,
                    "scopes": [{"action": "models:read", "model": "*"}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    s.stop().await;
}
