//! The native TLS listener end to end, over real sockets: HTTPS works and plain HTTP does not,
//! mutual TLS turns away clients without a certificate or with one from another CA, a configured
//! client certificate acts exactly within its grants and an unconfigured one gets nothing, a
//! key file others can read stops the start, and a replaced certificate is picked up.
//!
//! Every key and certificate is made here with rcgen; none is committed. The client is
//! tokio-rustls with a hand-written HTTP/1.1 request, so the test sees the handshake itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, Site};
use custos_server::App;
use custos_server::config::Config;
use custos_server::tls::{ClientIdentityConfig, GrantConfig, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate: PEM certificate, PEM key, DER chain and DER key for a client.
    fn leaf(&self, cn: &str, sans: &[&str], serial: u8) -> Leaf {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from_slice(&[serial]));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// Writes a file the way an operator's tooling would replace it: a new file moved into place.
fn put(path: &Path, content: &str, mode: u32) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Pki {
    ca: Ca,
    other_ca: Ca,
    dir: PathBuf,
}

impl Pki {
    fn new(site: &Site) -> Self {
        let dir = site.dir.path().join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Self {
            ca: Ca::new("Custos test CA"),
            other_ca: Ca::new("Someone else's CA"),
            dir,
        };
        pki.install_server_cert(1);
        put(&pki.dir.join("client-ca.pem"), &pki.ca.pem, 0o644);
        pki
    }

    fn install_server_cert(&self, serial: u8) {
        let server = self
            .ca
            .leaf("custos.test", &["localhost", "127.0.0.1"], serial);
        put(&self.dir.join("server.pem"), &server.cert_pem, 0o644);
        put(&self.dir.join("server.key"), &server.key_pem, 0o600);
    }

    fn tls_config(&self) -> TlsConfig {
        TlsConfig {
            cert_file: self.dir.join("server.pem"),
            key_file: self.dir.join("server.key"),
            client_ca_file: Some(self.dir.join("client-ca.pem")),
            require_client_cert: None,
            client_identities: vec![ClientIdentityConfig {
                subject: "ci-pipeline".into(),
                grants: vec![GrantConfig {
                    action: "predictions:write".into(),
                    model: "fraud-v3".into(),
                }],
            }],
            reload_interval_seconds: 1,
        }
    }

    fn client(&self, cert: Option<&Leaf>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![leaf.der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
                )
                .unwrap(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

struct Running {
    addr: SocketAddr,
    admin: String,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), custos_server::StartError>>,
}

async fn start(site: &Site, config: Config) -> Running {
    let app = App::build(config, Arc::new(custos_core::SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    let admin = std::fs::read_to_string(site.data_dir().join("bootstrap-token"))
        .unwrap()
        .trim()
        .to_owned();
    Running {
        addr,
        admin,
        stop,
        handle,
    }
}

struct Answer {
    status: u16,
    /// The body, for the JSON answers the test reads (sent with a content length).
    body: String,
    /// The serial number of the certificate the server presented.
    server_serial: Vec<u8>,
}

/// One HTTPS request on a fresh connection. Any failure — in the handshake, or the server's
/// alert arriving on the first read, as TLS 1.3 reports a refused client certificate — is `Err`.
async fn request(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> std::io::Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    let server_serial = {
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
        cert.raw_serial().to_vec()
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = match body {
        Some((content_type, bytes)) => {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
            bytes
        }
        None => Vec::new(),
    };
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await?;
    tls.write_all(&body).await?;
    tls.flush().await?;
    let mut response = Vec::new();
    let read = tls.read_to_end(&mut response).await;
    // A server that closes without close_notify still answered; an empty read did not.
    if response.is_empty() {
        read?;
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_owned());
    Ok(Answer {
        status,
        body,
        server_serial,
    })
}

fn ndjson(rows: &[serde_json::Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut body, row).unwrap();
        body.push(b'\n');
    }
    body
}

#[tokio::test]
async fn mutual_tls_end_to_end() {
    let site = Site::new(Backend::Sqlite);
    let pki = Pki::new(&site);
    let mut config = site.config();
    config.server.tls = Some(pki.tls_config());
    let server = start(&site, config).await;
    let addr = server.addr;

    let pipeline = pki.ca.leaf("ci-pipeline", &[], 10);
    let stranger = pki.ca.leaf("stranger", &[], 11);
    let impostor = pki.other_ca.leaf("ci-pipeline", &[], 12);
    let as_pipeline = pki.client(Some(&pipeline));
    let as_stranger = pki.client(Some(&stranger));

    // A valid certificate with a bearer credential: the bearer decides (here, the admin).
    let spec = serde_json::to_vec(&common::fraud_spec()).unwrap();
    let created = request(
        &as_stranger,
        addr,
        "POST",
        "/api/v1/models",
        Some(&server.admin),
        Some(("application/json", spec)),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(created.server_serial, vec![1]);

    // The configured client: allowed exactly its grant.
    let rows = common::fraud_rows("tls", chrono::Utc::now(), 5, false);
    let sent = request(
        &as_pipeline,
        addr,
        "POST",
        "/api/v1/models/fraud-v3/predictions",
        None,
        Some(("application/x-ndjson", ndjson(&rows))),
    )
    .await
    .unwrap();
    assert_eq!(sent.status, 200);
    let other_model = request(
        &as_pipeline,
        addr,
        "POST",
        "/api/v1/models/churn/predictions",
        None,
        Some(("application/x-ndjson", ndjson(&rows))),
    )
    .await
    .unwrap();
    assert_eq!(other_model.status, 403);
    let read = request(
        &as_pipeline,
        addr,
        "GET",
        "/api/v1/models/fraud-v3/drift",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(read.status, 403);

    // A certificate the CA signed but nobody configured: deny by default.
    let unmapped = request(
        &as_stranger,
        addr,
        "POST",
        "/api/v1/models/fraud-v3/predictions",
        None,
        Some(("application/x-ndjson", ndjson(&rows))),
    )
    .await
    .unwrap();
    assert_eq!(unmapped.status, 401);

    // No certificate, or one from another CA (even with the configured name): no handshake.
    let anonymous = request(&pki.client(None), addr, "GET", "/healthz", None, None)
        .await
        .map(|a| a.status);
    let refused = format!(
        "{:?}",
        anonymous.expect_err("a client without a certificate got in")
    );
    assert!(refused.contains("CertificateRequired"), "{refused}");
    let foreign = request(
        &pki.client(Some(&impostor)),
        addr,
        "GET",
        "/healthz",
        None,
        None,
    )
    .await
    .map(|a| a.status);
    let refused = format!(
        "{:?}",
        foreign.expect_err("a certificate from another CA got in")
    );
    assert!(refused.contains("UnknownCA"), "{refused}");

    // Plain HTTP to the TLS port gets no HTTP answer, only a TLS alert record (type 21).
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut plain = Vec::new();
    let _ = tcp.read_to_end(&mut plain).await;
    assert!(!plain.starts_with(b"HTTP/"), "{plain:?}");
    assert_eq!(plain.first(), Some(&0x15), "{plain:?}");

    // The audit log names the service and records the unmapped certificate.
    let audit = request(
        &as_stranger,
        addr,
        "GET",
        "/api/v1/audit?limit=1000",
        Some(&server.admin),
        None,
    )
    .await
    .unwrap();
    assert_eq!(audit.status, 200);
    let page: serde_json::Value = serde_json::from_str(&audit.body).unwrap();
    let entries: Vec<(String, String, String)> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r["record"][k].as_str().unwrap_or("").to_owned();
            (field("actor"), field("actor_type"), field("action"))
        })
        .collect();
    assert!(
        entries
            .iter()
            .any(|(actor, kind, action)| actor == "service:ci-pipeline"
                && kind == "service"
                && action == "authz.deny"),
        "{entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|(actor, _, action)| actor == "anonymous" && action == "auth.client_cert"),
        "{entries:?}"
    );

    // A replaced certificate is served once the reload interval has passed.
    pki.install_server_cert(2);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let reloaded = request(&as_pipeline, addr, "GET", "/healthz", None, None)
        .await
        .unwrap();
    assert_eq!(reloaded.status, 200);
    assert_eq!(reloaded.server_serial, vec![2]);

    // A broken replacement keeps the working certificate.
    put(&pki.dir.join("server.pem"), "not a certificate", 0o644);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let kept = request(&as_pipeline, addr, "GET", "/healthz", None, None)
        .await
        .unwrap();
    assert_eq!(kept.server_serial, vec![2]);

    let _ = server.stop.send(());
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn optional_client_certificate_and_plain_tls() {
    let site = Site::new(Backend::Sqlite);
    let pki = Pki::new(&site);
    let mut config = site.config();
    let mut tls = pki.tls_config();
    tls.require_client_cert = Some(false);
    config.server.tls = Some(tls);
    let server = start(&site, config).await;

    // Without a certificate the handshake completes, and the API wants a credential.
    let anonymous = pki.client(None);
    let health = request(&anonymous, server.addr, "GET", "/healthz", None, None)
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    let models = request(&anonymous, server.addr, "GET", "/api/v1/models", None, None)
        .await
        .unwrap();
    assert_eq!(models.status, 401);
    let body = serde_json::to_vec(&json!({})).unwrap();
    let as_pipeline = pki.client(Some(&pki.ca.leaf("ci-pipeline", &[], 20)));
    let denied = request(
        &as_pipeline,
        server.addr,
        "POST",
        "/api/v1/models",
        None,
        Some(("application/json", body)),
    )
    .await
    .unwrap();
    assert_eq!(denied.status, 403);

    let _ = server.stop.send(());
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn readable_key_file_is_refused_at_start() {
    let site = Site::new(Backend::Sqlite);
    let pki = Pki::new(&site);
    let key = pki.dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = site.config();
    config.server.tls = Some(pki.tls_config());
    let app = App::build(config, Arc::new(custos_core::SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = app
        .serve(listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server.key") && err.contains("mode 644") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn configuration_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custos.toml");
    std::fs::write(
        &file,
        "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n\
         [[server.tls.client_identities]]\nsubject = \"ci-pipeline\"\n\
         grants = [{ action = \"predictions:write\", model = \"fraud-v3\" }]\n",
    )
    .unwrap();
    let config = custos_server::config::load(Some(&file), Vec::new()).unwrap();
    let tls = config.server.tls.unwrap();
    assert!(tls.requires_client_cert());
    assert_eq!(tls.reload_interval_seconds, 10);

    std::fs::write(
        &file,
        "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n\
         [[server.tls.client_identities]]\nsubject = \"ci-pipeline\"\n\
         grants = [{ action = \"tokens:manage\", model = \"fraud-v3\" }]\n",
    )
    .unwrap();
    let err = custos_server::config::load(Some(&file), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ci-pipeline"), "{err}");

    std::fs::write(
        &file,
        "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let err = custos_server::config::load(Some(&file), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("colour"), "{err}");
}
