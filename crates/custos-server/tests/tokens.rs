//! API-token lifecycle for integrations: a token scoped to one action on one model can do exactly
//! that; rotation gives a new secret with the same scopes while the old one keeps working only
//! for the overlap; revocation and expiry take effect on the next request; lifetimes are capped
//! by configuration.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, Site, fraud_rows};
use custos_core::FixedClock;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_token_for_one_model_reads_nothing_and_writes_nowhere_else() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    let mut other = common::fraud_spec();
    other["name"] = json!("churn-v1");
    assert_eq!(
        s.post_json("/api/v1/models", Some(&s.admin), &other)
            .await
            .status,
        201
    );
    let writer = s.token(&[("predictions:write", "fraud-v3")]).await;
    let rows = fraud_rows("w", chrono::Utc::now(), 3, false);
    let r = s
        .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&writer), &rows)
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    let r = s
        .post_ndjson("/api/v1/models/churn-v1/predictions", Some(&writer), &rows)
        .await;
    assert_eq!(r.status, 403);
    for path in [
        "/api/v1/models",
        "/api/v1/models/fraud-v3",
        "/api/v1/models/fraud-v3/drift",
        "/api/v1/models/fraud-v3/volume",
        "/api/v1/tokens",
        "/api/v1/audit",
    ] {
        assert_eq!(s.get(path, Some(&writer)).await.status, 403, "{path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_overlaps_then_the_old_secret_stops_and_revocation_is_immediate() {
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .to_utc();
    let clock = Arc::new(FixedClock::new(start));
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.tokens.max_days = 30;
    config.tokens.default_days = 7;
    let s = site.start_with_clock(config, clock.clone()).await;
    s.register_fraud_model().await;

    // Lifetimes are capped by configuration.
    let too_long = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "ci", "scopes": [{"action": "drift:read", "model": "fraud-v3"}],
                    "expires_in_days": 31}),
        )
        .await;
    assert_eq!(too_long.status, 400, "{:?}", too_long.body);

    let created = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "ci", "scopes": [{"action": "models:read", "model": "fraud-v3"}]}),
        )
        .await;
    assert_eq!(created.status, 201);
    let old_id = created.body["token"]["id"].as_str().unwrap().to_owned();
    let old_secret = created.body["secret"].as_str().unwrap().to_owned();
    let reads = |secret: String| {
        let s = &s;
        async move { s.get("/api/v1/models/fraud-v3", Some(&secret)).await.status }
    };
    assert_eq!(reads(old_secret.clone()).await, 200);

    let rotated = s
        .post_json(
            &format!("/api/v1/tokens/{old_id}/rotate"),
            Some(&s.admin),
            &json!({"overlap_hours": 2}),
        )
        .await;
    assert_eq!(rotated.status, 201, "{:?}", rotated.body);
    let new_id = rotated.body["token"]["id"].as_str().unwrap().to_owned();
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert_eq!(
        rotated.body["token"]["scopes"],
        created.body["token"]["scopes"]
    );
    assert_eq!(rotated.body["replaces"], old_id.as_str());

    // During the overlap both work; after it only the new one.
    assert_eq!(reads(old_secret.clone()).await, 200);
    assert_eq!(reads(new_secret.clone()).await, 200);
    clock.set(start + chrono::Duration::hours(2) + chrono::Duration::seconds(1));
    assert_eq!(reads(old_secret.clone()).await, 401);
    assert_eq!(reads(new_secret.clone()).await, 200);
    // An expired token cannot be rotated again.
    let again = s
        .post_json(
            &format!("/api/v1/tokens/{old_id}/rotate"),
            Some(&s.admin),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 404);
    // Overlap beyond the configured maximum is refused.
    let r = s
        .post_json(
            &format!("/api/v1/tokens/{new_id}/rotate"),
            Some(&s.admin),
            &json!({"overlap_hours": 1000}),
        )
        .await;
    assert_eq!(r.status, 400);

    // Last use is recorded; revocation takes effect on the very next request.
    let list = s.get("/api/v1/tokens", Some(&s.admin)).await.body;
    let listed = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == new_id.as_str())
        .unwrap()
        .clone();
    assert!(listed.get("last_used_at").is_some(), "{listed:?}");
    let r = s
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{new_id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    assert_eq!(reads(new_secret).await, 401);

    // A token manager cannot rotate a token it could not have granted.
    let manager = s.token(&[("tokens:manage", "*")]).await;
    s.token(&[("drift:read", "*")]).await;
    let broad_id = s.get("/api/v1/tokens", Some(&s.admin)).await.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scopes"][0]["action"] == "drift:read" && t["scopes"][0]["model"] == "*")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .post_json(
            &format!("/api/v1/tokens/{broad_id}/rotate"),
            Some(&manager),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 403);

    let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await.body;
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["record"]["action"] == "token.rotate"
                && r["record"]["detail"]["new_token"] == new_id.as_str())
    );
    s.stop().await;
}
