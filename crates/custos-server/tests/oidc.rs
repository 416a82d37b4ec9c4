//! OpenID Connect sign-in end to end against a real OpenID provider: npm `oidc-provider`
//! (tests/oidc/provider.mjs, installed by scripts/test.sh with `npm ci`), started by each test
//! on a free loopback port and stopped by its PID. A cookie-keeping HTTP client plays the
//! browser and follows every redirect of the authorization-code flow by hand, so each step's
//! answer is checked; the browser test (tests/browser) does the same in headless Chromium.
//!
//! Covered: roles exactly as the IdP groups map, re-applied at the next sign-in after a group
//! change; no role → no session; single use of `state`; the browser binding; an IdP error; an
//! issuer mix-up; a rotated client secret read without a restart; groups read from the userinfo
//! endpoint when the ID token has none; the audit record of every outcome.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, Server, Site};
use custos_core::{RoleBinding, grants_of};
use custos_server::oidc::OidcConfig;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "custos-test-secret";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// A throwaway OpenID provider; killed by its PID when dropped.
struct Idp {
    child: Child,
    issuer: String,
    users_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Idp {
    fn start(redirect: &str, groups_in_userinfo: bool) -> Idp {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the OpenID provider is not installed: run `npm ci` in tests/oidc (scripts/test.sh does)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let users_file = tmp.path().join("users.json");
        let mut last = String::new();
        for _ in 0..5 {
            let port = common::free_port();
            let log = tmp.path().join(format!("idp-{port}.log"));
            let mut child = Command::new("node")
                .arg(dir.join("provider.mjs"))
                .env("OIDC_PORT", port.to_string())
                .env("RP_REDIRECT", redirect)
                .env("OIDC_CLIENT_SECRET", SECRET)
                .env("OIDC_USERS_FILE", &users_file)
                .env(
                    "OIDC_GROUPS_IN_USERINFO",
                    if groups_in_userinfo { "1" } else { "0" },
                )
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("node must be installed");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                last = std::fs::read_to_string(&log).unwrap_or_default();
                if last.contains("oidc-provider ready") {
                    let idp = Idp {
                        child,
                        issuer: format!("http://127.0.0.1:{port}"),
                        users_file,
                        _dir: tmp,
                    };
                    idp.set_users(&json!({}));
                    return idp;
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the OpenID provider did not start: {last}");
    }

    /// Replaces the IdP's people (read again at every sign-in).
    fn set_users(&self, users: &Value) {
        std::fs::write(&self.users_file, users.to_string()).unwrap();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn people(alice_groups: &[&str]) -> Value {
    json!({
        "alice": { "password": "alice-pw", "email": "alice@example.test", "groups": alice_groups },
        "carol": { "password": "carol-pw", "email": "carol@example.test", "groups": ["sales"] },
    })
}

fn group_roles() -> BTreeMap<String, Vec<RoleBinding>> {
    let mut map = BTreeMap::new();
    map.insert(
        "ml-team".to_owned(),
        vec![RoleBinding::parse("data-scientist", "fraud-v3").unwrap()],
    );
    map.insert(
        "Compliance".to_owned(),
        vec![RoleBinding::parse("auditor", "*").unwrap()],
    );
    map
}

/// The grants `GET /api/v1/whoami` must show for these bindings.
fn grant_texts(bindings: &[RoleBinding]) -> Vec<String> {
    let mut texts: Vec<String> = grants_of(bindings)
        .iter()
        .map(|g| match &g.model {
            custos_core::ModelScope::Any => format!("{}@*", g.action.as_str()),
            custos_core::ModelScope::Named(m) => format!("{}@{m}", g.action.as_str()),
        })
        .collect();
    texts.sort();
    texts
}

struct Setup {
    server: Server,
    idp: Idp,
    secret_file: PathBuf,
    _site: Site,
}

async fn setup(groups_in_userinfo: bool) -> Setup {
    let site = Site::new(Backend::Sqlite);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let redirect = format!("http://{addr}/ui/oidc/callback");
    let idp = Idp::start(&redirect, groups_in_userinfo);
    let secret_file = site.dir.path().join("oidc-client-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let mut config = site.config();
    config.limits.auth_failures_per_minute = 1_000;
    config.limits.sign_in_burst = 1_000;
    config.oidc = Some(OidcConfig {
        issuer: idp.issuer.clone(),
        client_id: "custos".into(),
        client_secret_file: secret_file.clone(),
        redirect_url: redirect,
        scopes: vec!["openid".into(), "email".into(), "groups".into()],
        groups_claim: "groups".into(),
        group_roles: group_roles(),
        algorithms: vec!["RS256".into()],
        display_name: "Test IdP".into(),
        ca_file: None,
        allow_plaintext_loopback: true,
        timeout_seconds: 5,
    });
    let server = site
        .start_on(config, Arc::new(custos_core::SystemClock), listener)
        .await;
    server.register_fraud_model().await;
    Setup {
        server,
        idp,
        secret_file,
        _site: site,
    }
}

/// A browser without JavaScript: one cookie jar for every host (cookie paths are not needed
/// here), redirects followed by hand.
struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

struct Step {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Step {
        let r = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        for value in r.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || value.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        Step {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, url: &str) -> Step {
        let request = self.http.get(url);
        self.send(request).await
    }

    /// Starts a sign-in at Custos: the provider's authorization URL.
    async fn start(&mut self, s: &Server) -> String {
        let step = self.get(&s.url("/ui/oidc/start")).await;
        assert_eq!(step.status, 303, "{}", step.body);
        assert!(self.jar.contains_key("custos_oidc"), "the browser binding");
        step.location.unwrap()
    }

    /// Signs in at the provider from its authorization URL; the callback URL it sends back.
    async fn at_provider(
        &mut self,
        issuer: &str,
        authorize: &str,
        login: &str,
        pw: &str,
    ) -> String {
        let step = self.get(authorize).await;
        assert_eq!(step.status, 303, "authorize: {}", step.body);
        let login_url = absolute(issuer, &step.location.unwrap());
        let page = self.get(&login_url).await;
        assert!(page.body.contains("name=\"login\""), "{}", page.body);
        let request = self
            .http
            .post(&login_url)
            .form(&[("login", login), ("password", pw)]);
        let step = self.send(request).await;
        assert_eq!(step.status, 303, "login: {}", step.body);
        let resume = absolute(issuer, &step.location.unwrap());
        let step = self.get(&resume).await;
        assert_eq!(step.status, 303, "resume: {}", step.body);
        step.location.unwrap()
    }

    /// The whole flow; the callback's answer.
    async fn sign_in(&mut self, s: &Server, idp: &Idp, login: &str, pw: &str) -> Step {
        let authorize = self.start(s).await;
        let callback = self.at_provider(&idp.issuer, &authorize, login, pw).await;
        self.get(&callback).await
    }

    fn session(&self) -> Option<String> {
        self.jar
            .get("custos_session")
            .map(|v| format!("custos_session={v}"))
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn whoami(s: &Server, session: &str) -> Value {
    let r = s
        .http
        .get(s.url("/api/v1/whoami"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn status_with(s: &Server, path: &str, session: &str) -> u16 {
    s.http
        .get(s.url(path))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

async fn oidc_records(s: &Server) -> Vec<Value> {
    let r = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].clone())
        .filter(|r| r["action"] == "auth.sign_in" && r["detail"]["method"] == "oidc")
        .collect()
}

#[tokio::test]
async fn roles_follow_the_idp_groups_at_every_sign_in() {
    let t = setup(false).await;
    let (s, idp) = (&t.server, &t.idp);
    idp.set_users(&people(&["ml-team", "compliance"]));

    let login_page = reqwest::get(s.url("/ui/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login_page.contains("Sign in with Test IdP"));

    // The authorization request carries PKCE S256, state and nonce.
    let mut browser = Browser::new();
    let authorize = browser.start(s).await;
    assert!(authorize.starts_with(&format!("{}/auth?", idp.issuer)));
    assert_eq!(
        query_param(&authorize, "code_challenge_method").unwrap(),
        "S256"
    );
    assert_eq!(query_param(&authorize, "code_challenge").unwrap().len(), 43);
    assert_eq!(query_param(&authorize, "state").unwrap().len(), 43);
    assert_eq!(query_param(&authorize, "nonce").unwrap().len(), 43);
    assert_eq!(query_param(&authorize, "client_id").unwrap(), "custos");
    let callback = browser
        .at_provider(&idp.issuer, &authorize, "alice", "alice-pw")
        .await;
    assert!(callback.starts_with(&s.url("/ui/oidc/callback?")));
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("url=/ui"),
        "continues to /ui by itself"
    );
    assert!(!browser.jar.contains_key("custos_oidc"), "binding cleared");
    let session = browser.session().expect("a session");

    // Exactly the roles of both groups (group names match without regard to case).
    let me = whoami(s, &session).await;
    assert_eq!(me["kind"], "user");
    assert_eq!(me["actor"], "user:oidc:alice");
    assert_eq!(me["name"], "alice@example.test");
    let both = [
        RoleBinding::parse("data-scientist", "fraud-v3").unwrap(),
        RoleBinding::parse("auditor", "*").unwrap(),
    ];
    assert_eq!(sorted(&me["grants"]), grant_texts(&both));
    assert_eq!(status_with(s, "/ui/audit", &session).await, 200);
    assert_eq!(status_with(s, "/ui/models/fraud-v3", &session).await, 200);
    assert_eq!(status_with(s, "/api/v1/users", &session).await, 403);

    // The callback is good once: replaying it fails and opens nothing.
    let mut replayer = Browser::new();
    replayer.jar = browser.jar.clone();
    replayer.jar.remove("custos_session");
    let replay = replayer.get(&callback).await;
    assert_eq!(replay.status, 401);
    assert!(replayer.session().is_none());

    // Removed from the compliance group at the IdP: the next sign-in lacks the auditor role.
    idp.set_users(&people(&["ml-team"]));
    let mut again = Browser::new();
    let answer = again.sign_in(s, idp, "alice", "alice-pw").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let session2 = again.session().unwrap();
    let me = whoami(s, &session2).await;
    assert_eq!(sorted(&me["grants"]), grant_texts(&both[..1]));
    assert_eq!(status_with(s, "/ui/audit", &session2).await, 403);
    assert_eq!(status_with(s, "/ui/models/fraud-v3", &session2).await, 200);

    // Someone whose groups map to no role gets no session.
    let mut carol = Browser::new();
    let answer = carol.sign_in(s, idp, "carol", "carol-pw").await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("no access"));
    assert!(carol.session().is_none());

    let records = oidc_records(s).await;
    let outcomes: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["detail"]["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("success".to_owned(), String::new()),
            ("failure".to_owned(), "unknown_state".to_owned()),
            ("success".to_owned(), String::new()),
            ("failure".to_owned(), "no_role".to_owned()),
        ]
    );
    assert_eq!(records[0]["actor"], "user:oidc:alice");
    assert_eq!(
        records[0]["detail"]["groups"],
        json!(["Compliance", "ml-team"])
    );
    assert_eq!(records[2]["detail"]["groups"], json!(["ml-team"]));
    // Carol is named only by a keyed hash.
    assert!(
        records[3]["detail"]["subject_hmac"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(!records[3].to_string().contains("carol"));
    t.server.stop().await;
}

#[tokio::test]
async fn forged_and_foreign_callbacks_are_refused() {
    let t = setup(false).await;
    let (s, idp) = (&t.server, &t.idp);
    idp.set_users(&people(&["ml-team"]));

    // A callback with a state Custos never issued.
    let mut browser = Browser::new();
    let _ = browser.start(s).await;
    let forged = browser
        .get(&s.url("/ui/oidc/callback?code=abc&state=not-a-state"))
        .await;
    assert_eq!(forged.status, 401);

    // Started in one browser, finished in another (a login CSRF attempt): refused, and the
    // state is spent, so the right browser cannot use it afterwards either.
    let mut victim = Browser::new();
    let mut attacker = Browser::new();
    let authorize = attacker.start(s).await;
    let callback = attacker
        .at_provider(&idp.issuer, &authorize, "alice", "alice-pw")
        .await;
    let answer = victim.get(&callback).await;
    assert_eq!(answer.status, 401);
    assert!(victim.session().is_none());
    let late = attacker.get(&callback).await;
    assert_eq!(late.status, 401);
    assert!(attacker.session().is_none());

    // The provider reports an error (the person declined).
    let mut declined = Browser::new();
    let authorize = declined.start(s).await;
    let state = query_param(&authorize, "state").unwrap();
    let answer = declined
        .get(&s.url(&format!(
            "/ui/oidc/callback?error=access_denied&error_description=%3Cb%3Ex&state={state}"
        )))
        .await;
    assert_eq!(answer.status, 401);

    // An answer claiming another issuer (a mix-up between providers).
    let mut mixed = Browser::new();
    let authorize = mixed.start(s).await;
    let callback = mixed
        .at_provider(&idp.issuer, &authorize, "alice", "alice-pw")
        .await;
    let iss = query_param(&callback, "iss").unwrap();
    assert_eq!(iss, idp.issuer, "the provider names itself (RFC 9207)");
    let foreign = callback.replace(
        &format!("iss={}", urlencode(&iss)),
        "iss=https%3A%2F%2Fevil.example",
    );
    assert_ne!(foreign, callback);
    let answer = mixed.get(&foreign).await;
    assert_eq!(answer.status, 401);

    // A rotated client secret is read at the next exchange, without a restart: the provider
    // refuses the old one.
    std::fs::write(&t.secret_file, "not-the-secret\n").unwrap();
    let mut rotated = Browser::new();
    let answer = rotated.sign_in(s, idp, "alice", "alice-pw").await;
    assert_eq!(answer.status, 401);
    std::fs::write(&t.secret_file, SECRET).unwrap();
    let mut fine = Browser::new();
    let answer = fine.sign_in(s, idp, "alice", "alice-pw").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(fine.session().is_some());

    let reasons: Vec<String> = oidc_records(s)
        .await
        .iter()
        .map(|r| r["detail"]["reason"].as_str().unwrap_or("ok").to_owned())
        .collect();
    assert_eq!(
        reasons,
        [
            "unknown_state",
            "browser_mismatch",
            "unknown_state",
            "provider_error",
            "issuer_mismatch",
            "token_exchange",
            "ok"
        ]
    );
    let records = oidc_records(s).await;
    assert_eq!(records[3]["detail"]["provider_error"], "access_denied");
    let all = records.iter().map(Value::to_string).collect::<String>();
    assert!(!all.contains(SECRET) && !all.contains("not-the-secret"));
    t.server.stop().await;
}

fn urlencode(value: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", value)])
        .unwrap()
        .query()
        .unwrap()
        .trim_start_matches("v=")
        .to_owned()
}

#[tokio::test]
async fn groups_come_from_userinfo_when_the_id_token_has_none() {
    let t = setup(true).await;
    let (s, idp) = (&t.server, &t.idp);
    idp.set_users(&people(&["compliance"]));
    let mut browser = Browser::new();
    let answer = browser.sign_in(s, idp, "alice", "alice-pw").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let me = whoami(s, &browser.session().unwrap()).await;
    assert_eq!(
        sorted(&me["grants"]),
        grant_texts(&[RoleBinding::parse("auditor", "*").unwrap()])
    );
    t.server.stop().await;
}
