//! OAuth 2.0 for integrations against a real server: the client-credentials grant issues a
//! short-lived EdDSA JWT holding exactly the client's grants (or fewer), verifiable with the
//! published JWKS; revoking the underlying API token or letting the JWT expire ends it. Access
//! tokens from a trusted identity provider (a JWKS served over HTTP by this test, keys generated
//! at run time) are accepted only with the right issuer, audience, algorithm, signature and
//! lifetime, and grant only what their scopes map to.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Backend, Site, fraud_rows};
use custos_core::FixedClock;
use serde_json::{Value, json};
use std::sync::Arc;

async fn token_request(
    s: &common::Server,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = s.http.post(s.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        );
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_issue_short_lived_scoped_tokens() {
    let start = chrono::Utc::now();
    let clock = Arc::new(FixedClock::new(start));
    let site = Site::new(Backend::Sqlite);
    let s = site.start_with_clock(site.config(), clock.clone()).await;
    s.register_fraud_model().await;
    let created = s
        .post_json(
            "/api/v1/tokens",
            Some(&s.admin),
            &json!({"description": "model server", "scopes": [
                {"action": "predictions:write", "model": "fraud-v3"},
                {"action": "models:read", "model": "fraud-v3"}]}),
        )
        .await;
    let id = created.body["token"]["id"].as_str().unwrap().to_owned();
    let secret = created.body["secret"].as_str().unwrap().to_owned();

    let (status, body) = token_request(
        &s,
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let jwt = body["access_token"].as_str().unwrap().to_owned();

    // It verifies with the published key and names the client and its grants.
    let jwks: jsonwebtoken::jwk::JwkSet = s
        .http
        .get(s.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["custos"]);
    let claims = jsonwebtoken::decode::<Value>(&jwt, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(
        claims["scope"],
        "predictions:write@fraud-v3 models:read@fraud-v3"
    );

    // Exactly the client's grants.
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&jwt)).await.status,
        200
    );
    assert_eq!(
        s.get("/api/v1/models/fraud-v3/drift", Some(&jwt))
            .await
            .status,
        403
    );
    let rows = fraud_rows("oauth", start, 2, false);
    let r = s
        .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&jwt), &rows)
        .await;
    assert!(r.status < 300, "{:?}", r.body);

    // Narrowing works; widening does not; bad clients are refused.
    let (status, body) = token_request(
        &s,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "models:read@fraud-v3"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    let narrow = body["access_token"].as_str().unwrap().to_owned();
    let r = s
        .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&narrow), &rows)
        .await;
    assert_eq!(r.status, 403);
    let (status, body) = token_request(
        &s,
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "drift:read@*"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) = token_request(
        &s,
        Some((&id, "cst_wrongwrongwrongwrongwrongwrongwrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _) = token_request(
        &s,
        Some((&id, &jwt)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 401, "an access token cannot mint its successor");
    let (status, body) =
        token_request(&s, Some((&id, &secret)), &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    // A tampered token is refused.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("drift:read@*");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    let forged = parts.join(".");
    assert_eq!(
        s.get("/api/v1/models/fraud-v3/drift", Some(&forged))
            .await
            .status,
        401
    );

    // Expiry, then revocation of the API token behind a fresh one.
    clock.set(start + chrono::Duration::minutes(6));
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&jwt)).await.status,
        401
    );
    let (_, body) = token_request(
        &s,
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let fresh = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&fresh)).await.status,
        200
    );
    let r = s
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert!(r.status < 300);
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&fresh)).await.status,
        401
    );

    // Issuance and refusals are in the audit log, without secrets.
    let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
    let text = audit.body.to_string();
    assert!(text.contains("oauth.token") && !text.contains(&secret));
    s.stop().await;
}

/// PKCS#8 v1 of an Ed25519 seed (RFC 8410).
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_tokens_are_checked_against_its_jwks() {
    // The identity provider: a key made now, its JWKS on a real HTTP port.
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA",
                                "x": URL_SAFE_NO_PAD.encode(public)}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = listener.local_addr().unwrap();
    let served = jwks.clone();
    let idp_task = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let served = served.clone();
                async move { axum::Json(served) }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });

    let site = Site::new(Backend::Sqlite);
    let mut config = site.config();
    config.oauth = toml::from_str(&format!(
        r#"
        [[trusted_issuers]]
        issuer = "https://idp.example"
        audience = "custos-prod"
        jwks_url = "http://{idp}/jwks"
        algorithms = ["EdDSA"]
        [trusted_issuers.scope_grants]
        "custos.ingest" = [{{ action = "predictions:write", model = "fraud-v3" }}]
        "#
    ))
    .unwrap();
    let s = site.start_with(config).await;
    s.register_fraud_model().await;

    let key = jsonwebtoken::EncodingKey::from_ed_der(&pkcs8(&seed));
    let now = chrono::Utc::now().timestamp();
    let mint = |claims: Value, kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let good = json!({"iss": "https://idp.example", "aud": "custos-prod", "sub": "ci-pipeline",
                      "exp": now + 300, "iat": now, "scope": "custos.ingest openid"});
    let token = mint(good.clone(), "k1");
    let rows = fraud_rows("idp", chrono::Utc::now(), 2, false);
    let r = s
        .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&token), &rows)
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    assert_eq!(
        s.get("/api/v1/models/fraud-v3", Some(&token)).await.status,
        403
    );

    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    let mut expired = good.clone();
    expired["exp"] = json!(now - 120);
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://evil.example");
    let mut no_scope = good.clone();
    no_scope["scope"] = json!("openid");
    for (what, bad) in [
        ("wrong audience", mint(wrong_aud, "k1")),
        ("expired", mint(expired, "k1")),
        ("unknown issuer", mint(other_issuer, "k1")),
        ("unknown key id", mint(good.clone(), "k2")),
    ] {
        let r = s
            .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&bad), &rows)
            .await;
        assert_eq!(r.status, 401, "{what}");
    }
    let r = s
        .post_ndjson(
            "/api/v1/models/fraud-v3/predictions",
            Some(&mint(no_scope, "k1")),
            &rows,
        )
        .await;
    assert_eq!(
        r.status, 403,
        "a token without a mapped scope grants nothing"
    );
    // Algorithm confusion: HS256 keyed with the public key must not pass.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    let r = s
        .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&hs), &rows)
        .await;
    assert_eq!(r.status, 401);
    // Another key signing as the IdP.
    let mut other_seed = [0u8; 32];
    getrandom::fill(&mut other_seed).unwrap();
    let other_key = jsonwebtoken::EncodingKey::from_ed_der(&pkcs8(&other_seed));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let impostor = jsonwebtoken::encode(&header, &good, &other_key).unwrap();
    let r = s
        .post_ndjson(
            "/api/v1/models/fraud-v3/predictions",
            Some(&impostor),
            &rows,
        )
        .await;
    assert_eq!(r.status, 401);
    idp_task.abort();
    s.stop().await;
}
