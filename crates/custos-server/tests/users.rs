//! Local users end to end, over real HTTP: created through the admin API, signed in through the
//! real web form (CSRF cookie and token from `GET /ui/login`), and held to exactly their roles by
//! the choke point. Also: lockout, answers that do not tell an unknown user from a wrong
//! password, the password policy, disabling, and an audit log that never holds a password.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{Backend, FormBrowser, Server, Site};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;

const AUDITOR_PASSWORD: &str = "tulip orbit kettle 42";

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

/// A request carrying a session cookie instead of a bearer credential.
async fn with_session(
    s: &Server,
    method: Method,
    path: &str,
    session: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = s
        .http
        .request(method, s.url(path))
        .header("cookie", session);
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create_user(
    s: &Server,
    credential: &str,
    name: &str,
    password: &str,
    roles: Value,
) -> Value {
    let r = s
        .post_json(
            "/api/v1/users",
            Some(credential),
            &json!({"name": name, "password": password, "roles": roles}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

/// Every audit record, as the audit API returns them.
async fn audit_records(s: &Server) -> Vec<Value> {
    let r = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].clone())
        .collect()
}

/// A configuration whose per-address limit stays out of the way of the per-account one.
fn lenient(site: &Site) -> custos_server::config::Config {
    let mut config = site.config();
    config.limits.auth_failures_per_minute = 1_000;
    // These tests sign in more often than the per-address sign-in burst allows.
    config.limits.sign_in_burst = 1_000;
    config
}

async fn auditor_flow(backend: Backend) {
    let site = Site::new(backend);
    let s = site.start_with(lenient(&site)).await;
    s.register_fraud_model().await;
    let user = create_user(
        &s,
        &s.admin,
        "Audrey",
        AUDITOR_PASSWORD,
        json!([{"role": "auditor", "model": "*"}]),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["roles"], json!([{"role": "auditor", "model": "*"}]));
    assert_eq!(user["created_by"], "bootstrap");

    // The list never carries a hash.
    let list = s.get("/api/v1/users", Some(&s.admin)).await;
    assert_eq!(list.status, 200);
    let text = list.body.to_string();
    assert!(text.contains("Audrey") && !text.contains("argon2") && !text.contains("password"));

    // Sign in through the form; the name is matched without regard to case.
    let browser = FormBrowser::open(&s).await;
    let answer = browser.sign_in(&s, "audrey", AUDITOR_PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let session = answer.session.expect("a session cookie");

    let (status, body) = with_session(&s, Method::GET, "/api/v1/audit", &session, None).await;
    assert_eq!(status, 200, "{body:?}");
    let (status, _) = with_session(&s, Method::GET, "/ui", &session, None).await;
    assert_eq!(status, 200);
    let (status, _) = with_session(
        &s,
        Method::GET,
        "/api/v1/models/fraud-v3/drift",
        &session,
        None,
    )
    .await;
    assert!(
        ![401, 403].contains(&status),
        "auditors read drift: {status}"
    );
    let (status, _) = with_session(
        &s,
        Method::PUT,
        "/api/v1/models/fraud-v3/monitoring",
        &session,
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 403, "auditors do not change monitors");
    let (status, _) = with_session(
        &s,
        Method::GET,
        "/api/v1/models/fraud-v3/volume",
        &session,
        None,
    )
    .await;
    assert_eq!(status, 403, "auditors do not read profiles");
    let (status, _) = with_session(
        &s,
        Method::POST,
        "/api/v1/users",
        &session,
        Some(&json!({"name": "mallory", "password": "unrelated words here", "roles": []})),
    )
    .await;
    assert_eq!(status, 403, "auditors do not manage users");

    // The audit log: creation with id, name and roles; the sign-in as the user; no password.
    let records = audit_records(&s).await;
    let created = records
        .iter()
        .find(|r| r["action"] == "user.create")
        .unwrap();
    assert_eq!(created["detail"]["user_id"], id.as_str());
    assert_eq!(created["detail"]["name"], "Audrey");
    assert_eq!(
        created["detail"]["roles"],
        json!([{"role": "auditor", "model": "*"}])
    );
    let signed_in = records
        .iter()
        .find(|r| r["action"] == "auth.sign_in" && r["outcome"] == "success")
        .unwrap();
    assert_eq!(signed_in["actor"], format!("user:{id}"));
    assert_eq!(signed_in["actor_type"], "user");
    assert_eq!(signed_in["detail"]["method"], "password");
    let denied = records
        .iter()
        .filter(|r| r["action"] == "authz.deny" && r["actor"] == format!("user:{id}"))
        .count();
    assert_eq!(denied, 3, "every denial names the user");
    let all = serde_json::to_string(&records).unwrap();
    assert!(
        !all.contains(AUDITOR_PASSWORD),
        "no password in the audit log"
    );
    assert!(!all.contains("argon2"), "no hash in the audit log");
    s.stop().await;
}

#[tokio::test]
async fn an_auditor_signs_in_and_gets_exactly_the_role_sqlite() {
    auditor_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_auditor_signs_in_and_gets_exactly_the_role_postgres() {
    auditor_flow(Backend::Postgres).await;
}

#[tokio::test]
async fn ten_wrong_passwords_lock_the_account_and_look_like_one() {
    let site = Site::new(Backend::Sqlite);
    let clock = Arc::new(custos_core::FixedClock::new(t0()));
    let s = site.start_with_clock(lenient(&site), clock.clone()).await;
    create_user(
        &s,
        &s.admin,
        "audrey",
        AUDITOR_PASSWORD,
        json!([{"role": "auditor", "model": "*"}]),
    )
    .await;
    let browser = FormBrowser::open(&s).await;
    let wrong = browser
        .sign_in(&s, "audrey", "not the password at all")
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not accepted"));
    assert!(wrong.session.is_none());
    for _ in 1..10 {
        let again = browser
            .sign_in(&s, "audrey", "not the password at all")
            .await;
        assert_eq!(
            (again.status, again.body.as_str()),
            (401, wrong.body.as_str())
        );
    }
    // Locked: the right password is answered exactly like a wrong one.
    let right = browser.sign_in(&s, "audrey", AUDITOR_PASSWORD).await;
    assert_eq!(right.status, 401);
    assert_eq!(right.body, wrong.body, "a lock reads like a wrong password");
    assert!(right.session.is_none());
    let list = s.get("/api/v1/users", Some(&s.admin)).await;
    assert!(list.body["users"][0]["locked_until"].is_string());

    // Still locked a minute before the end; open again when the lock has run out.
    clock.set(t0() + Duration::minutes(14));
    assert_eq!(
        browser.sign_in(&s, "audrey", AUDITOR_PASSWORD).await.status,
        401
    );
    clock.set(t0() + Duration::minutes(15) + Duration::seconds(1));
    let after = browser.sign_in(&s, "audrey", AUDITOR_PASSWORD).await;
    assert_eq!(after.status, 303);

    let records = audit_records(&s).await;
    let reasons: Vec<&str> = records
        .iter()
        .filter(|r| r["action"] == "auth.sign_in")
        .map(|r| r["detail"]["reason"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(reasons.len(), 13);
    assert_eq!(reasons.iter().filter(|r| **r == "bad_password").count(), 9);
    assert_eq!(reasons[9], "bad_password_locked");
    assert_eq!(&reasons[10..], ["locked", "locked", "ok"]);
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_user_is_answered_like_a_wrong_password() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start_with(lenient(&site)).await;
    create_user(
        &s,
        &s.admin,
        "audrey",
        AUDITOR_PASSWORD,
        json!([{"role": "analyst", "model": "*"}]),
    )
    .await;
    let browser = FormBrowser::open(&s).await;
    let wrong = browser
        .sign_in(&s, "audrey", "not the password at all")
        .await;
    let unknown = browser
        .sign_in(&s, "nobody-here", "not the password at all")
        .await;
    let invalid = browser
        .sign_in(&s, "not a name!", "not the password at all")
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(
        unknown.body.as_bytes(),
        wrong.body.as_bytes(),
        "byte for byte"
    );
    assert_eq!(invalid.status, wrong.status);
    assert_eq!(invalid.body.as_bytes(), wrong.body.as_bytes());

    // The records say what happened, but name no unknown user and hold no password.
    let records = audit_records(&s).await;
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("nobody-here") && !all.contains("not a name"));
    assert!(!all.contains("not the password"));
    let reasons: Vec<&str> = records
        .iter()
        .filter(|r| r["action"] == "auth.sign_in")
        .map(|r| r["detail"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["bad_password", "unknown_user", "unknown_user"]);
    s.stop().await;
}

#[tokio::test]
async fn weak_passwords_and_bad_requests_are_refused_clearly() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    let refuse = |name: &'static str, password: &'static str, roles: Value| {
        let s = &s;
        async move {
            let r = s
                .post_json(
                    "/api/v1/users",
                    Some(&s.admin),
                    &json!({"name": name, "password": password, "roles": roles}),
                )
                .await;
            assert_eq!(r.status, 400, "{name}/{password}: {:?}", r.body);
            r.body["message"].as_str().unwrap().to_owned()
        }
    };
    let analyst = || json!([{"role": "analyst", "model": "*"}]);
    assert!(
        refuse("ada", "short pass", analyst())
            .await
            .contains("at least 12 characters")
    );
    assert!(
        refuse("ada", "password1234", analyst())
            .await
            .contains("too common")
    );
    assert!(
        refuse("ada", "Qwertyuiop12", analyst())
            .await
            .contains("too common")
    );
    assert!(
        refuse("ada", "Password2026!", analyst())
            .await
            .contains("too common")
    );
    assert!(
        refuse("lovelace", "i am LOVELACE today", analyst())
            .await
            .contains("must not contain the user name")
    );
    let long: &'static str = Box::leak("x1".repeat(200).into_boxed_str());
    assert!(refuse("ada", long, analyst()).await.contains("at most 256"));
    assert!(
        refuse("a d", "tulip orbit kettle", analyst())
            .await
            .contains("name must be")
    );
    assert!(
        refuse(
            "ada",
            "tulip orbit kettle",
            json!([{"role": "root", "model": "*"}])
        )
        .await
        .contains("unknown role")
    );
    assert!(
        refuse(
            "ada",
            "tulip orbit kettle",
            json!([{"role": "admin", "model": "fraud-v3"}])
        )
        .await
        .contains("whole server")
    );
    // A malformed body is refused without quoting it.
    let r = s
        .post_json(
            "/api/v1/users",
            Some(&s.admin),
            &json!({"name": "ada", "password": 123456789012345u64, "roles": []}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(!r.body.to_string().contains("123456789012345"));

    // A taken name, in any case, is a conflict.
    create_user(&s, &s.admin, "ada", "tulip orbit kettle", analyst()).await;
    let r = s
        .post_json(
            "/api/v1/users",
            Some(&s.admin),
            &json!({"name": "ADA", "password": "another fine phrase", "roles": analyst()}),
        )
        .await;
    assert_eq!(r.status, 409);

    let records = audit_records(&s).await;
    let all = serde_json::to_string(&records).unwrap();
    for secret in [
        "short pass",
        "password1234",
        "LOVELACE today",
        "tulip orbit",
        "another fine",
    ] {
        assert!(!all.contains(secret), "{secret} reached the audit log");
    }
    assert_eq!(
        records
            .iter()
            .filter(|r| r["action"] == "user.create")
            .count(),
        1
    );
    s.stop().await;
}

#[tokio::test]
async fn a_disabled_user_cannot_sign_in_and_its_sessions_end() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start_with(lenient(&site)).await;
    let user = create_user(
        &s,
        &s.admin,
        "dana",
        "quiet harbour lantern",
        json!([{"role": "analyst", "model": "*"}]),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let browser = FormBrowser::open(&s).await;
    let wrong = browser.sign_in(&s, "dana", "not the password at all").await;
    let answer = browser.sign_in(&s, "dana", "quiet harbour lantern").await;
    assert_eq!(answer.status, 303);
    let session = answer.session.unwrap();
    let (status, _) = with_session(&s, Method::GET, "/api/v1/models", &session, None).await;
    assert_eq!(status, 200);
    let (status, _) =
        with_session(&s, Method::GET, "/api/v1/models/x/volume", &session, None).await;
    assert_eq!(status, 403, "analysts do not read profiles");

    // New roles end the session; the next sign-in carries them.
    let r = s
        .send(
            Method::PUT,
            &format!("/api/v1/users/{id}/roles"),
            Some(&s.admin),
            Some((
                "application/json",
                serde_json::to_vec(&json!({"roles": [{"role": "data-scientist", "model": "x"}]}))
                    .unwrap(),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["roles"],
        json!([{"role": "data-scientist", "model": "x"}])
    );
    let (status, _) = with_session(&s, Method::GET, "/api/v1/models", &session, None).await;
    assert_eq!(status, 401, "the old session ended");
    let session = browser
        .sign_in(&s, "dana", "quiet harbour lantern")
        .await
        .session
        .unwrap();
    let (status, _) =
        with_session(&s, Method::GET, "/api/v1/models/x/volume", &session, None).await;
    assert_ne!(status, 403, "data scientists read profiles of their model");

    let r = s
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let (status, _) = with_session(&s, Method::GET, "/api/v1/models", &session, None).await;
    assert_eq!(status, 401, "disabling ends the session");
    let again = browser.sign_in(&s, "dana", "quiet harbour lantern").await;
    assert_eq!(again.status, 401);
    assert_eq!(
        again.body, wrong.body,
        "disabled reads like a wrong password"
    );
    let r = s
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "already disabled");
    let list = s.get("/api/v1/users", Some(&s.admin)).await;
    assert!(list.body["users"][0]["disabled_at"].is_string());

    let records = audit_records(&s).await;
    let disabled = records
        .iter()
        .find(|r| r["action"] == "user.disable")
        .unwrap();
    assert_eq!(disabled["detail"]["name"], "dana");
    assert_eq!(
        records
            .iter()
            .filter(|r| r["action"] == "user.roles")
            .count(),
        1
    );
    s.stop().await;
}

#[tokio::test]
async fn only_the_bootstrap_secret_or_an_admin_user_binds_admin() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start_with(lenient(&site)).await;
    s.register_fraud_model().await;
    let manager = s.token(&[("users:manage", "*")]).await;
    let r = s
        .post_json(
            "/api/v1/users",
            Some(&manager),
            &json!({"name": "eve", "password": "copper window meadow", "roles": [{"role": "admin", "model": "*"}]}),
        )
        .await;
    assert_eq!(r.status, 403, "a token cannot mint administrators");
    create_user(
        &s,
        &manager,
        "sam",
        "copper window meadow",
        json!([{"role": "sre", "model": "*"}]),
    )
    .await;
    let admin = create_user(
        &s,
        &s.admin,
        "root-admin",
        "granite sparrow violin",
        json!([{"role": "admin", "model": "*"}]),
    )
    .await;
    let admin_id = admin["id"].as_str().unwrap();
    let r = s
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{admin_id}"),
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "a token cannot remove administrators");

    // An admin user manages users, including other admins, but sees no data.
    let browser = FormBrowser::open(&s).await;
    let session = browser
        .sign_in(&s, "root-admin", "granite sparrow violin")
        .await
        .session
        .unwrap();
    let (status, body) = with_session(
        &s,
        Method::POST,
        "/api/v1/users",
        &session,
        Some(
            &json!({"name": "second-admin", "password": "harbor pepper lattice",
            "roles": [{"role": "admin", "model": "*"}]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body:?}");
    assert_eq!(body["created_by"], format!("user:{admin_id}"));
    let (status, _) = with_session(
        &s,
        Method::PUT,
        &format!("/api/v1/users/{admin_id}/roles"),
        &session,
        Some(&json!({"roles": [{"role": "admin", "model": "*"}, {"role": "sre", "model": "*"}]})),
    )
    .await;
    assert_eq!(status, 403, "nobody changes their own roles");
    let (status, _) = with_session(&s, Method::GET, "/api/v1/audit", &session, None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/models/fraud-v3/drift",
        "/api/v1/models/fraud-v3/volume",
    ] {
        let (status, _) = with_session(&s, Method::GET, path, &session, None).await;
        assert_eq!(status, 403, "admins do not read data: {path}");
    }
    let (status, _) = with_session(
        &s,
        Method::PUT,
        "/api/v1/models/fraud-v3/monitoring",
        &session,
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 403, "admins do not change monitors");
    s.stop().await;
}

#[tokio::test]
async fn the_per_address_limit_applies_to_password_sign_in() {
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.limits.auth_failures_per_minute = 3;
    let s = site.start_with(config).await;
    create_user(
        &s,
        &s.admin,
        "audrey",
        AUDITOR_PASSWORD,
        json!([{"role": "auditor", "model": "*"}]),
    )
    .await;
    let browser = FormBrowser::open(&s).await;
    for _ in 0..3 {
        assert_eq!(
            browser
                .sign_in(&s, "audrey", "wrong guess number")
                .await
                .status,
            401
        );
    }
    let throttled = browser.sign_in(&s, "audrey", AUDITOR_PASSWORD).await;
    assert_eq!(throttled.status, 429);
    assert!(throttled.session.is_none());
    s.stop().await;
}

#[tokio::test]
async fn cross_site_writes_with_a_session_are_refused_and_wrong_methods_get_405() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    let session = FormBrowser::open(&s).await.session(&s, "", &s.admin).await;
    let monitoring = "/api/v1/models/fraud-v3/monitoring";
    // What the browser says about where the request comes from decides; programs that send
    // no such header keep working.
    for (from, refused) in [
        (Some("cross-site"), true),
        (Some("same-site"), true),
        (Some("same-origin"), false),
        (Some("none"), false),
        (None, false),
    ] {
        let mut request = s
            .http
            .put(s.url(monitoring))
            .header("cookie", &session)
            .json(&json!({}));
        if let Some(from) = from {
            request = request.header("sec-fetch-site", from);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert_eq!(status == 403, refused, "{from:?}: {status}");
    }
    // Reads are not state changes: a cross-site GET is answered (SameSite keeps the cookie off
    // real cross-site requests anyway).
    let read = s
        .http
        .get(s.url(monitoring))
        .header("cookie", &session)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // A bearer credential is not a cookie a browser attaches by itself: not affected.
    let bearer = s
        .http
        .put(s.url(monitoring))
        .bearer_auth(&s.admin)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_ne!(bearer.status(), 403);
    let records = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
    let refusals = records.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["record"]["action"] == "auth.cross_site")
        .count();
    assert_eq!(refusals, 2);

    // A known route with a method it does not serve: 405 naming the allowed ones.
    let r = s
        .send(Method::DELETE, "/api/v1/models", Some(&s.admin), None)
        .await;
    assert_eq!(r.status, 405, "{:?}", r.body);
    assert_eq!(r.headers["allow"], "GET, POST");
    s.stop().await;
}
