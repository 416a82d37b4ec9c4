//! LDAP sign-in end to end against a real OpenLDAP server: each test starts its own `slapd`
//! (Debian's package, installed by scripts/test.sh) in a temp dir on free loopback ports, with
//! a self-signed certificate made at test time by the `openssl` CLI, and stops it by its PID.
//! People sign in through the real web form (CSRF cookie and token from `GET /ui/login`);
//! their sessions are held to the roles their groups map to, re-read at every sign-in.
//!
//! Transports covered: StartTLS (template bind), LDAPS (search with a service bind), and plain
//! LDAP over loopback with `allow_plaintext_loopback` (plus its refusal without it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, FormAnswer, FormBrowser, Server, Site};
use custos_server::config::Config;
use custos_server::ldap::LdapConfig;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "dc=custos,dc=test";
const ADMIN_DN: &str = "cn=admin,dc=custos,dc=test";
const ADMIN_PW: &str = "admin-pw";
const ALICE_PW: &str = "alice-pw";
const BOB_PW: &str = "bob-pw";
/// The password of the directory entry `uid=admin`, which an injection would try to reach.
const ADMIN_USER_PW: &str = "admin-user-pw";
const INJECTIONS: [&str; 4] = [
    "*)(uid=*))(|(uid=*",
    "admin)(|(objectClass=*",
    "*",
    "alice)(uid=*",
];

/// Finds a program on `PATH` or in the sbin directories, where Debian puts `slapd`.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn need(name: &str) -> PathBuf {
    program(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: the LDAP tests need OpenLDAP's slapd and ldap-utils; \
             scripts/test.sh installs them (apt-get install slapd ldap-utils)"
        )
    })
}

/// A self-signed end-entity certificate for 127.0.0.1 (`CA:FALSE`: rustls refuses a CA
/// certificate as a server's own), which is also the client's trust anchor.
fn make_cert(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{stem}-key.pem"));
    let cert = dir.join(format!("{stem}.pem"));
    let out = Command::new(need("openssl"))
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn init_ldif() -> String {
    let person = |uid: &str, pw: &str| {
        format!(
            "dn: uid={uid},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n\
             sn: {uid}\nuserPassword: {pw}\n\n"
        )
    };
    format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Custos Test\ndc: custos\n\n\
         dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n\n\
         {alice}{bob}{admin}\
         dn: cn=ml-auditors,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: ml-auditors\n\
         member: uid=alice,ou=people,{BASE}\nmember: cn=placeholder,{BASE}\n\n\
         dn: cn=ml-sre,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: ml-sre\n\
         member: uid=bob,ou=people,{BASE}\nmember: uid=admin,ou=people,{BASE}\n\n\
         dn: cn=ml-analysts,ou=groups,{BASE}\nobjectClass: groupOfUniqueNames\ncn: ml-analysts\n\
         uniqueMember: uid=alice,ou=people,{BASE}\nuniqueMember: cn=placeholder,{BASE}\n\n",
        alice = person("alice", ALICE_PW),
        bob = person("bob", BOB_PW),
        admin = person("admin", ADMIN_USER_PW),
    )
}

/// A throwaway slapd: LDAP (plain and StartTLS) and LDAPS on free loopback ports, all state in
/// a temp dir. Killed by its PID when dropped.
struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    ldaps_port: u16,
    cert: PathBuf,
}

impl Slapd {
    fn start() -> Slapd {
        let slapd = need("slapd");
        need("ldapadd");
        let mut last_log = String::new();
        // A port picked as free can be taken before slapd binds it: try a few times.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            std::fs::create_dir(d.join("data")).unwrap();
            let (cert, key) = make_cert(d, "cert");
            let (port, ldaps_port) = (common::free_port(), common::free_port());
            let conf = format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 pidfile {d}/slapd.pid\n\
                 argsfile {d}/slapd.args\n\
                 TLSCertificateFile {cert}\n\
                 TLSCertificateKeyFile {key}\n\
                 database mdb\n\
                 maxsize 10485760\n\
                 suffix \"{BASE}\"\n\
                 rootdn \"{ADMIN_DN}\"\n\
                 rootpw {ADMIN_PW}\n\
                 directory {d}/data\n\
                 index objectClass,uid,member eq\n\
                 access to attrs=userPassword by self write by anonymous auth by * none\n\
                 access to * by users read by * none\n",
                d = d.display(),
                cert = cert.display(),
                key = key.display(),
            );
            std::fs::write(d.join("slapd.conf"), conf).unwrap();
            let log = std::fs::File::create(d.join("slapd.log")).unwrap();
            let child = Command::new(&slapd)
                .arg("-d")
                .arg("0")
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"
                ))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut server = Slapd {
                child,
                dir,
                port,
                ldaps_port,
                cert,
            };
            if server.wait_ready() {
                server.ldap_tool("ldapadd", &init_ldif());
                return server;
            }
            last_log =
                std::fs::read_to_string(server.dir.path().join("slapd.log")).unwrap_or_default();
        }
        panic!("slapd did not start: {last_log}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let probe = Command::new(need("ldapsearch"))
                .args([
                    "-x",
                    "-H",
                    &self.url(),
                    "-s",
                    "base",
                    "-b",
                    "",
                    "namingContexts",
                ])
                .output()
                .unwrap();
            if probe.status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// Runs `ldapadd`/`ldapmodify` as the directory's administrator with `ldif` on stdin.
    fn ldap_tool(&self, tool: &str, ldif: &str) {
        let mut child = Command::new(need(tool))
            .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Removes `uid=<user>` from a group's `attribute` (member or uniqueMember).
    fn remove_member(&self, group: &str, attribute: &str, user: &str) {
        self.ldap_tool(
            "ldapmodify",
            &format!(
                "dn: cn={group},ou=groups,{BASE}\nchangetype: modify\ndelete: {attribute}\n\
                 {attribute}: uid={user},ou=people,{BASE}\n"
            ),
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[ldap]` section the tests share, in TOML as an operator would write it.
fn ldap_section(url: &str, extra: &str) -> LdapConfig {
    toml::from_str(&format!(
        r#"
        url = "{url}"
        group_search_base = "ou=groups,{BASE}"
        {extra}
        [group_roles]
        ml-auditors = [{{ role = "auditor", model = "*" }}]
        ml-sre = [{{ role = "sre", model = "*" }}]
        ml-analysts = [{{ role = "analyst", model = "*" }}]
        "#
    ))
    .unwrap()
}

fn template_mode() -> String {
    format!("user_dn_template = \"uid={{user}},ou=people,{BASE}\"")
}

fn server_config(site: &Site, ldap: LdapConfig) -> Config {
    let mut config = site.config();
    config.limits.auth_failures_per_minute = 1_000;
    // These tests sign in more often than the per-address sign-in burst allows.
    config.limits.sign_in_burst = 1_000;
    config.ldap = Some(ldap);
    config
}

/// The status of a request carrying a session cookie.
async fn status_with(s: &Server, method: Method, path: &str, session: &str) -> u16 {
    let mut request = s
        .http
        .request(method.clone(), s.url(path))
        .header("cookie", session);
    if method == Method::PUT {
        request = request.json(&json!({}));
    }
    request.send().await.unwrap().status().as_u16()
}

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

/// The reasons of the LDAP sign-in failures, in order.
fn ldap_refusals(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["action"] == "auth.sign_in" && r["detail"]["method"] == "ldap")
        .filter(|r| r["outcome"] == "failure")
        .map(|r| r["detail"]["reason"].as_str().unwrap().to_owned())
        .collect()
}

/// Every injection attempt, with the passwords of real entries, is refused exactly like a
/// wrong password and opens no session.
async fn injections_fail(s: &Server, browser: &FormBrowser, wrong: &FormAnswer) {
    for name in INJECTIONS {
        for password in [ALICE_PW, BOB_PW, ADMIN_USER_PW] {
            let answer = browser.sign_in(s, name, password).await;
            assert_eq!(answer.status, 401, "{name} / {password}");
            assert_eq!(answer.body, wrong.body, "{name}");
            assert!(answer.session.is_none(), "{name}");
        }
    }
}

const MONITORING: &str = "/api/v1/models/fraud-v3/monitoring";
const DRIFT: &str = "/api/v1/models/fraud-v3/drift";
const AUDIT: &str = "/api/v1/audit";

#[tokio::test]
async fn starttls_sign_in_follows_the_directory_groups_at_every_sign_in() {
    let ldap = Slapd::start();
    let site = Site::new(Backend::Sqlite);
    let mut section = ldap_section(&ldap.url(), &template_mode());
    section.starttls = true;
    section.ca_file = Some(ldap.cert.clone());
    let s = site.start_with(server_config(&site, section)).await;
    s.register_fraud_model().await;
    let browser = FormBrowser::open(&s).await;

    // alice: ml-auditors and ml-analysts → audit:read, drift, but not monitors.
    let alice = browser.session(&s, "alice", ALICE_PW).await;
    assert_eq!(status_with(&s, Method::GET, AUDIT, &alice).await, 200);
    let drift = status_with(&s, Method::GET, DRIFT, &alice).await;
    assert!(![401, 403].contains(&drift), "auditors read drift: {drift}");
    assert_eq!(status_with(&s, Method::PUT, MONITORING, &alice).await, 403);
    assert_eq!(status_with(&s, Method::GET, "/ui", &alice).await, 200);

    // bob: ml-sre → monitors too.
    let bob = browser.session(&s, "bob", BOB_PW).await;
    let put = status_with(&s, Method::PUT, MONITORING, &bob).await;
    assert!(![401, 403].contains(&put), "sre changes monitors: {put}");

    // A wrong password reads exactly like a name nobody has.
    let wrong = browser.sign_in(&s, "alice", "not her password").await;
    let unknown = browser.sign_in(&s, "nobody-here", "not her password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not accepted"));
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    assert!(wrong.session.is_none() && unknown.session.is_none());

    injections_fail(&s, &browser, &wrong).await;

    // An empty password never reaches the directory (an unauthenticated bind could succeed).
    let empty = browser.sign_in(&s, "alice", "").await;
    assert_eq!((empty.status, &empty.body), (401, &wrong.body));

    // Out of ml-auditors: the next sign-in has no audit:read, but still the analyst's drift.
    ldap.remove_member("ml-auditors", "member", "alice");
    let alice = browser.session(&s, "Alice", ALICE_PW).await;
    assert_eq!(status_with(&s, Method::GET, AUDIT, &alice).await, 403);
    let drift = status_with(&s, Method::GET, DRIFT, &alice).await;
    assert!(![401, 403].contains(&drift), "analysts read drift: {drift}");

    // Out of every mapped group: refused like a wrong password.
    ldap.remove_member("ml-analysts", "uniqueMember", "alice");
    let none = browser.sign_in(&s, "alice", ALICE_PW).await;
    assert_eq!((none.status, &none.body), (401, &wrong.body));
    assert!(none.session.is_none());

    // The audit log: every attempt, who and which groups on success, never a password.
    let records = audit_records(&s).await;
    let successes: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "auth.sign_in" && r["outcome"] == "success")
        .collect();
    assert_eq!(successes.len(), 3);
    assert_eq!(successes[0]["actor"], "user:ldap:alice");
    assert_eq!(successes[0]["actor_type"], "user");
    assert_eq!(successes[0]["detail"]["method"], "ldap");
    assert_eq!(successes[0]["detail"]["user_id"], "ldap:alice");
    assert_eq!(
        successes[0]["detail"]["groups"],
        json!(["ml-analysts", "ml-auditors"])
    );
    assert_eq!(successes[1]["detail"]["groups"], json!(["ml-sre"]));
    assert_eq!(
        successes[2]["actor"], "user:ldap:alice",
        "one id whatever the case"
    );
    assert_eq!(successes[2]["detail"]["groups"], json!(["ml-analysts"]));
    let mut expected = vec!["bad_credentials".to_owned(), "bad_credentials".to_owned()];
    expected.extend(std::iter::repeat_n(
        "bad_credentials".to_owned(),
        INJECTIONS.len() * 3,
    ));
    expected.push("empty_password".to_owned());
    expected.push("no_role".to_owned());
    assert_eq!(ldap_refusals(&records), expected);
    for failure in records
        .iter()
        .filter(|r| r["action"] == "auth.sign_in" && r["outcome"] == "failure")
    {
        assert_eq!(failure["actor"], "anonymous");
        assert!(failure["detail"]["name_hmac"].is_string());
    }
    let all = serde_json::to_string(&records).unwrap();
    for secret in [ALICE_PW, BOB_PW, ADMIN_USER_PW, "not her password"] {
        assert!(!all.contains(secret), "{secret} in the audit log");
    }
    assert!(!all.contains("nobody-here") && !all.contains("objectClass"));
    s.stop().await;
}

#[tokio::test]
async fn ldaps_with_a_user_search_refuses_injection_and_yields_to_local_users() {
    let ldap = Slapd::start();
    let site = Site::new(Backend::Sqlite);
    let password_file = ldap.dir.path().join("bind-password");
    std::fs::write(&password_file, format!("{ADMIN_PW}\n")).unwrap();
    let mut section = ldap_section(
        &ldap.ldaps_url(),
        &format!("user_search_base = \"ou=people,{BASE}\"\nbind_dn = \"{ADMIN_DN}\""),
    );
    section.ca_file = Some(ldap.cert.clone());
    section.bind_password_file = Some(password_file);
    let s = site.start_with(server_config(&site, section)).await;
    s.register_fraud_model().await;
    let browser = FormBrowser::open(&s).await;

    let bob = browser.session(&s, "bob", BOB_PW).await;
    assert_eq!(status_with(&s, Method::GET, AUDIT, &bob).await, 200);
    let wrong = browser.sign_in(&s, "bob", "not his password").await;
    assert_eq!(wrong.status, 401);
    injections_fail(&s, &browser, &wrong).await;
    let empty = browser.sign_in(&s, "bob", "").await;
    assert_eq!((empty.status, &empty.body), (401, &wrong.body));

    // A local user of the same name comes first: the directory is not asked for alice now.
    let r = s
        .post_json(
            "/api/v1/users",
            Some(&s.admin),
            &json!({"name": "alice", "password": "a local pass phrase 7",
                    "roles": [{"role": "analyst", "model": "*"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let directory_password = browser.sign_in(&s, "alice", ALICE_PW).await;
    assert_eq!(
        (directory_password.status, &directory_password.body),
        (401, &wrong.body)
    );
    let local = browser.session(&s, "alice", "a local pass phrase 7").await;
    assert_eq!(status_with(&s, Method::GET, AUDIT, &local).await, 403);

    let records = audit_records(&s).await;
    let mut expected = vec!["bad_password".to_owned()];
    // In search mode no injected name finds an entry, so none gets as far as a bind.
    expected.extend(std::iter::repeat_n(
        "unknown_user".to_owned(),
        INJECTIONS.len() * 3,
    ));
    expected.push("empty_password".to_owned());
    assert_eq!(ldap_refusals(&records), expected);
    let local_refusal = records
        .iter()
        .filter(|r| r["action"] == "auth.sign_in" && r["detail"]["method"] == "password")
        .find(|r| r["outcome"] == "failure")
        .unwrap();
    assert_eq!(local_refusal["detail"]["reason"], "bad_password");
    let all = serde_json::to_string(&records).unwrap();
    for secret in [ALICE_PW, BOB_PW, ADMIN_USER_PW, ADMIN_PW] {
        assert!(!all.contains(secret), "{secret} in the audit log");
    }
    s.stop().await;
}

#[tokio::test]
async fn plain_ldap_only_on_loopback_when_asked_and_untrusted_certificates_fail() {
    let ldap = Slapd::start();

    // Plain ldap:// is refused at start unless the test opts in for a loopback address.
    let site = Site::new(Backend::Sqlite);
    let refused = custos_server::App::build(
        server_config(&site, ldap_section(&ldap.url(), &template_mode())),
        std::sync::Arc::new(custos_core::SystemClock),
    )
    .await;
    let err = refused.err().expect("plain LDAP refused").to_string();
    assert!(err.contains("unencrypted"), "{err}");

    let mut section = ldap_section(&ldap.url(), &template_mode());
    section.allow_plaintext_loopback = true;
    let mut config = server_config(&site, section);
    config.limits.auth_failures_per_minute = 3;
    let s = site.start_with(config).await;
    let browser = FormBrowser::open(&s).await;
    let alice = browser.session(&s, "alice", ALICE_PW).await;
    assert_eq!(status_with(&s, Method::GET, AUDIT, &alice).await, 200);
    // The per-address throttle counts directory refusals like local ones.
    for _ in 0..3 {
        assert_eq!(browser.sign_in(&s, "alice", "wrong").await.status, 401);
    }
    let throttled = browser.sign_in(&s, "alice", ALICE_PW).await;
    assert_eq!(throttled.status, 429);
    assert!(throttled.session.is_none());
    s.stop().await;

    // A directory whose certificate is not the configured one is never sent a password, over
    // LDAPS or StartTLS (which also shows StartTLS really negotiates TLS).
    let other = tempfile::tempdir().unwrap();
    let (stranger, _) = make_cert(other.path(), "stranger");
    for (url, starttls) in [(ldap.ldaps_url(), false), (ldap.url(), true)] {
        let site = Site::new(Backend::Sqlite);
        let mut section = ldap_section(&url, &template_mode());
        section.starttls = starttls;
        section.ca_file = Some(stranger.clone());
        let s = site.start_with(server_config(&site, section)).await;
        let browser = FormBrowser::open(&s).await;
        let answer = browser.sign_in(&s, "alice", ALICE_PW).await;
        assert_eq!(answer.status, 401, "{url}");
        assert!(answer.session.is_none());
        let records = audit_records(&s).await;
        assert_eq!(ldap_refusals(&records), ["directory_error"], "{url}");
        s.stop().await;
    }
}
