//! Rate limits over real HTTP: sign-in per client address (and which address that is behind a
//! trusted proxy), ingest and reads per principal and per address, 429 with `Retry-After`,
//! the rejection counters, and at most one audit record per flooding key per minute.

// Test code: a failed unwrap is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, Server, Site, fraud_rows};
use custos_server::config::Config;
use serde_json::{Value, json};

const FLOODER: &str = "203.0.113.7";
const BYSTANDER: &str = "198.51.100.9";

fn behind_local_proxy(site: &Site) -> Config {
    let mut config = site.config();
    config.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config
}

/// A browser's sign-in form: the CSRF cookie and the token to submit with it.
async fn csrf(s: &Server) -> (String, String) {
    let login = s.http.get(s.url("/ui/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    (cookie, token)
}

async fn sign_in(
    s: &Server,
    forwarded_for: Option<&str>,
    (cookie, token): &(String, String),
    secret: &str,
) -> reqwest::Response {
    let mut request = s
        .http
        .post(s.url("/ui/login"))
        .header("cookie", cookie)
        .form(&[("secret", secret), ("csrf", token.as_str())]);
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

async fn ratelimit_records(s: &Server) -> Vec<Value> {
    s.state
        .store
        .audit_entries(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.record_json).unwrap())
        .filter(|r| r["action"] == "ratelimit.reject")
        .collect()
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers["retry-after"].to_str().unwrap().parse().unwrap()
}

/// The acceptance point: a flood of sign-in attempts from one address gets 429 while another
/// address still signs in — with the addresses told apart through a trusted proxy, whose
/// client-supplied (leftmost) `X-Forwarded-For` entries are ignored.
#[tokio::test]
async fn a_sign_in_flood_from_one_address_does_not_lock_out_another() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start_with(behind_local_proxy(&site)).await;
    let form = csrf(&s).await;

    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..30 {
        let r = sign_in(&s, Some(FLOODER), &form, "csb_wrong-guess").await;
        if r.status() == 429 && limited.is_none() {
            let headers = r.headers().clone();
            limited = Some((headers, r.json::<Value>().await.unwrap()));
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    // The default burst is 10: those are answered (wrong secret), the rest wait.
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(refused >= 15, "{statuses:?}");
    let (headers, body) = limited.unwrap();
    let wait = retry_after(&headers);
    assert!(
        (1..=3).contains(&wait),
        "20 a minute: one every 3 s, got {wait}"
    );
    assert_eq!(body["code"], "rate_limited");
    assert!(body["request_id"].is_string());

    // A spoofed leftmost entry does not make the flooder someone else.
    let r = sign_in(
        &s,
        Some(&format!("{BYSTANDER}, {FLOODER}")),
        &form,
        &s.admin,
    )
    .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("set-cookie").is_none());

    // Another address signs in with the right secret.
    let r = sign_in(&s, Some(BYSTANDER), &form, &s.admin).await;
    assert_eq!(r.status(), 303);
    let session = r.headers()["set-cookie"].to_str().unwrap();
    assert!(session.starts_with("custos_session="));

    // Counters moved; one audit record for the flooding address, carrying that address (the
    // same one the failed sign-ins were recorded under).
    let stats = s.state.rate_limits.snapshot();
    assert_eq!(stats.sign_in.rejected, refused as u64 + 1);
    assert_eq!(stats.sign_in.rejected_by_ip, stats.sign_in.rejected);
    assert_eq!(stats.sign_in.rejected_by_principal, 0);
    assert_eq!(stats.sign_in.audited, 1);
    assert_eq!(stats.ingest.rejected + stats.read.rejected, 0);
    let records = ratelimit_records(&s).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["source_ip"], FLOODER);
    assert_eq!(record["status"], 429);
    assert_eq!(record["actor"], "anonymous");
    assert_eq!(record["resource"], "/ui/login");
    assert_eq!(record["detail"]["budget"], "sign_in");
    assert_eq!(record["detail"]["keys"], json!(["ip"]));
    let entries = s.state.store.audit_entries(0, 10_000).await.unwrap();
    let failed_logins: Vec<Value> = entries
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.record_json).unwrap())
        .filter(|r| r["action"] == "auth.login" && r["outcome"] == "failure")
        .collect();
    assert!(failed_logins.len() >= 10);
    assert!(failed_logins.iter().all(|r| r["source_ip"] == FLOODER));
    s.stop().await;
}

/// Without trusted proxies, `X-Forwarded-For` is the client's word and changes nothing: a
/// flooder rotating spoofed addresses is still one address.
#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    let form = csrf(&s).await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        let spoofed = format!("192.0.2.{i}");
        let r = sign_in(&s, Some(&spoofed), &form, "csb_wrong-guess").await;
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 5,
        "{statuses:?}"
    );
    let records = ratelimit_records(&s).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["source_ip"], "127.0.0.1");
    s.stop().await;
}

/// One token flooding ingestion is refused with 429 + Retry-After; another token (from the same
/// address, which may carry several principals' traffic) is unaffected, and so is the flooder's
/// separate read budget.
#[tokio::test]
async fn an_ingest_flood_by_one_token_leaves_other_tokens_alone() {
    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.limits.ingest_per_second = 1;
    config.limits.ingest_burst = 3;
    let s = site.start_with(config).await;
    s.register_fraud_model().await;
    let scopes = [
        ("predictions:write", "fraud-v3"),
        ("models:read", "fraud-v3"),
    ];
    let flooder = s.token(&scopes).await;
    let other = s.token(&scopes).await;
    let t0 = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 20, 0, 0, 0).unwrap();

    let path = "/api/v1/models/fraud-v3/predictions";
    let mut statuses = Vec::new();
    let mut wait = None;
    for k in 0..20 {
        let rows = fraud_rows(&format!("flood{k}"), t0, 1, false);
        let r = s.post_ndjson(path, Some(&flooder), &rows).await;
        if r.status == 429 {
            wait.get_or_insert_with(|| retry_after(&r.headers));
            assert_eq!(r.body["code"], "rate_limited");
        }
        statuses.push(r.status);
    }
    assert!(statuses[..3].iter().all(|s| *s == 200), "{statuses:?}");
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(refused >= 10, "{statuses:?}");
    assert_eq!(wait, Some(1), "one request a second");

    let rows = fraud_rows("other", t0, 5, false);
    assert_eq!(s.post_ndjson(path, Some(&other), &rows).await.status, 200);
    // Ingest and reads are separate budgets.
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&flooder))
            .await
            .status,
        200
    );

    let stats = s.state.rate_limits.snapshot();
    assert_eq!(stats.ingest.rejected, refused as u64);
    assert_eq!(stats.ingest.rejected_by_principal, refused as u64);
    assert_eq!(stats.ingest.rejected_by_ip, 0);
    assert_eq!(stats.ingest.audited, 1);
    assert_eq!(stats.read.rejected + stats.sign_in.rejected, 0);
    let records = ratelimit_records(&s).await;
    assert_eq!(
        records.len(),
        1,
        "one record per key per minute: {records:?}"
    );
    assert_eq!(records[0]["actor_type"], "token");
    assert_eq!(records[0]["detail"]["budget"], "ingest");
    assert_eq!(records[0]["detail"]["keys"], json!(["principal"]));
    assert_eq!(records[0]["resource"], "/api/v1/models/{model}/predictions");
    s.stop().await;
}

/// Reads are limited per principal and per address: behind a trusted proxy, two tokens from one
/// address share its budget, and a third address is unaffected.
#[tokio::test]
async fn reads_are_limited_per_principal_and_per_address() {
    let site = Site::new(Backend::Sqlite);
    let mut config = behind_local_proxy(&site);
    config.limits.read_per_second = 1;
    config.limits.read_burst = 2;
    config.limits.per_ip_multiplier = 1;
    let s = site.start_with(config).await;
    // The administrator's two requests spend 127.0.0.1's whole burst.
    let a = s.token(&[("models:read", "*")]).await;
    let b = s.token(&[("models:read", "*")]).await;
    let get = |token: &str, from: &str| {
        s.http
            .get(s.url("/api/v1/models"))
            .bearer_auth(token)
            .header("x-forwarded-for", from)
            .send()
    };
    assert_eq!(get(&a, FLOODER).await.unwrap().status(), 200);
    assert_eq!(get(&a, FLOODER).await.unwrap().status(), 200);
    let r = get(&a, FLOODER).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(retry_after(r.headers()) >= 1);
    // Same address, other token: the address's budget is spent.
    assert_eq!(get(&b, FLOODER).await.unwrap().status(), 429);
    // Other address, other token: fine.
    assert_eq!(get(&b, BYSTANDER).await.unwrap().status(), 200);

    let stats = s.state.rate_limits.snapshot().read;
    assert_eq!(stats.rejected, 2);
    assert_eq!(stats.rejected_by_principal, 1);
    assert_eq!(stats.rejected_by_ip, 2);
    assert!(stats.tracked_ips >= 3 && stats.tracked_principals >= 3);
    let records = ratelimit_records(&s).await;
    // a's refusal is the first for both keys; b's is the address's second within the minute.
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["detail"]["keys"], json!(["principal", "ip"]));
    assert_eq!(records[0]["source_ip"], FLOODER);
    s.stop().await;
}

/// The limits are configuration: unknown keys and nonsense are refused with a clear message.
#[test]
fn rate_limit_configuration_is_checked() {
    let load = |pairs: &[(&str, &str)]| {
        custos_server::config::load(
            None,
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>(),
        )
    };
    let c = load(&[]).unwrap();
    assert_eq!(
        (
            c.limits.sign_in_per_minute,
            c.limits.sign_in_burst,
            c.limits.ingest_per_second,
            c.limits.ingest_burst,
            c.limits.read_per_second,
            c.limits.read_burst,
            c.limits.max_rate_limit_keys,
        ),
        (20, 10, 200, 400, 50, 100, 100_000)
    );
    assert!(c.limits.trusted_proxies.is_empty());
    let err = load(&[("CUSTOS_LIMITS__READ_BURST", "0")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.read_burst"), "{err}");
    let err = load(&[("CUSTOS_LIMITS__MAX_RATE_LIMIT_KEYS", "0")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_rate_limit_keys"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custos.toml");
    std::fs::write(
        &file,
        "[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1/32\", \"fd00::/8\"]\n",
    )
    .unwrap();
    let c = custos_server::config::load(Some(&file), Vec::new()).unwrap();
    let shown: Vec<String> = c
        .limits
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]);
    std::fs::write(&file, "[limits]\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap();
    let err = custos_server::config::load(Some(&file), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("10.0.0.1/8"), "{err}");
    std::fs::write(&file, "[limits]\ntrusted_proxies = [\"proxy.internal\"]\n").unwrap();
    let err = custos_server::config::load(Some(&file), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an IP address or CIDR block"), "{err}");
}
