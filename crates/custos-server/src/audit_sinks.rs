//! Extra audit sinks — an append-only JSON-lines file, syslog (RFC 5424) and an HTTP collector —
//! and the [`custos_store::AuditMirror`] implementation that feeds them.
//!
//! Owns the `[audit_sinks]` configuration types, their validation, opening the sinks at start
//! ([`AuditSinks::from_config`]) and delivering entries. The store calls the mirror inside the
//! transaction that appends the entries, before it commits, and a delivery error rolls the
//! audited change back: the sinks fail closed. So every failure here is an error, never a
//! warning, and nothing is truncated or dropped to make a delivery "succeed".
//!
//! Every sink receives the same line per entry:
//! `{"seq":N,"hash":"<hex>","record":<the stored record JSON, verbatim>}`. Because a sink can
//! hold an entry whose transaction later failed to commit (see `custos_store::mirror`), consumers
//! must key entries by `(seq, hash)`, not `seq` alone.
//!
//! Error texts name the sink kind and the reason, never record content: they end up in logs and
//! HTTP error bodies that are less protected than the audit trail itself.

use custos_store::{AuditMirror, MirrorError, MirrorFuture, MirroredEntry};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The largest syslog message (header included) the syslog sink sends, in bytes.
///
/// Larger messages are refused with an error — which rolls the audited change back — rather
/// than truncated: a truncated audit record is a record that lies. Many syslog receivers
/// silently cut datagrams beyond a few KiB, so we stop at 8 KiB ourselves.
pub const MAX_SYSLOG_MESSAGE_BYTES: usize = 8 * 1024;

/// How long a syslog delivery may take. Datagram sends normally finish at once; this bounds the
/// case of a jammed local socket, because the appending transaction stays open meanwhile.
const SYSLOG_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bound on `http.timeout_ms`, for the same reason: the transaction waits for the sink.
const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;

/// `[audit_sinks]`: where audit entries go besides the database. Default: nowhere else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSinksConfig {
    /// Which sinks must accept an entry for the audited change to go ahead.
    pub policy: SinkPolicy,
    /// An append-only JSON-lines file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSinkConfig>,
    /// A syslog receiver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogSinkConfig>,
    /// An HTTP collector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSinkConfig>,
}

/// How many of the configured sinks must accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkPolicy {
    /// Every configured sink must accept; one failure rolls the change back.
    #[default]
    All,
    /// At least one configured sink must accept. Failures of the others are logged.
    Any,
}

/// `[audit_sinks.file]`.
///
/// The file is opened once at start with `O_APPEND | O_CREAT` and mode 0600, and kept open;
/// rotate it with copy-and-truncate (or restart after moving it). Each delivery is one
/// `write_all` followed by `sync_data`; a write that fails half-way (disk full) can leave a torn
/// last line, which readers must skip.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file. An existing file must be a regular file not accessible to group or others.
    pub path: PathBuf,
}

/// `[audit_sinks.syslog]`: RFC 5424 messages, one datagram per entry, severity `notice`,
/// MSGID `audit`, no structured data; the MSG is the entry's JSON line (without a BOM).
///
/// A message larger than [`MAX_SYSLOG_MESSAGE_BYTES`] is refused with an error (failing the
/// audited change) instead of being truncated. Over UDP only local failures (resolution, send
/// errors, size) are detected — UDP cannot tell that the receiver is down; the Unix transport
/// does fail when nothing listens on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// `host:port` for UDP, a socket path (e.g. `/dev/log`) for Unix.
    pub address: String,
    /// The transport.
    #[serde(default)]
    pub transport: SyslogTransport,
    /// The APP-NAME field: 1 to 48 printable ASCII characters, no spaces.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// The facility.
    #[serde(default)]
    pub facility: SyslogFacility,
}

fn default_app_name() -> String {
    "custos".into()
}

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// A UDP datagram to `host:port`.
    Udp,
    /// A Unix datagram to a socket path.
    #[default]
    Unix,
}

/// Syslog facilities (RFC 5424 §6.2.1) by their conventional names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFacility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    /// Security/authorization messages that should not be world-readable: the default.
    #[default]
    Authpriv,
    Ftp,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl SyslogFacility {
    /// The numeric facility code.
    pub fn code(self) -> u8 {
        match self {
            SyslogFacility::Kern => 0,
            SyslogFacility::User => 1,
            SyslogFacility::Mail => 2,
            SyslogFacility::Daemon => 3,
            SyslogFacility::Auth => 4,
            SyslogFacility::Syslog => 5,
            SyslogFacility::Lpr => 6,
            SyslogFacility::News => 7,
            SyslogFacility::Uucp => 8,
            SyslogFacility::Cron => 9,
            SyslogFacility::Authpriv => 10,
            SyslogFacility::Ftp => 11,
            SyslogFacility::Local0 => 16,
            SyslogFacility::Local1 => 17,
            SyslogFacility::Local2 => 18,
            SyslogFacility::Local3 => 19,
            SyslogFacility::Local4 => 20,
            SyslogFacility::Local5 => 21,
            SyslogFacility::Local6 => 22,
            SyslogFacility::Local7 => 23,
        }
    }
}

/// Syslog severity `notice` (RFC 5424 §6.2.1): normal but significant.
const SEVERITY_NOTICE: u8 = 5;

/// `[audit_sinks.http]`: one `POST` per delivery with an `application/x-ndjson` body of the
/// entries' lines. Anything but a 2xx answer (redirects included), a connection failure or a
/// timeout is a failure.
///
/// Only `http://` URLs for now: the HTTP client is built without TLS, and TLS for this sink
/// arrives with the TLS work. Ambient proxy variables (`HTTP_PROXY`…) are ignored — entries go
/// straight to the configured collector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The collector's URL (`http://` only, no credentials in it).
    pub url: String,
    /// A file whose content (surrounding whitespace trimmed) is sent as `Authorization: Bearer`.
    /// Read once at start.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Timeout for the whole request, in milliseconds (1 to 60000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    2000
}

/// Which sink something is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// The JSON-lines file.
    File,
    /// Syslog.
    Syslog,
    /// The HTTP collector.
    Http,
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinkKind::File => "file",
            SinkKind::Syslog => "syslog",
            SinkKind::Http => "http",
        })
    }
}

/// Why a sink could not be set up at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit {kind} sink: {reason}")]
pub struct SinkError {
    /// The sink.
    pub kind: SinkKind,
    /// Why (never a secret or record content).
    pub reason: String,
}

impl SinkError {
    fn new(kind: SinkKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

impl AuditSinksConfig {
    /// Checks what can be checked without touching files or the network (URL scheme, names,
    /// address shape, bounds). [`AuditSinks::from_config`] calls this first.
    pub fn validate(&self) -> Result<(), SinkError> {
        if let Some(syslog) = &self.syslog {
            syslog.validate()?;
        }
        if let Some(http) = &self.http {
            http.validate()?;
        }
        Ok(())
    }

    /// Whether any sink is configured.
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.syslog.is_none() && self.http.is_none()
    }
}

impl SyslogSinkConfig {
    fn validate(&self) -> Result<(), SinkError> {
        let err = |reason: String| SinkError::new(SinkKind::Syslog, reason);
        let name = &self.app_name;
        if name.is_empty() || name.len() > 48 || !name.bytes().all(is_print_us_ascii) {
            return Err(err(format!(
                "app_name {name:?} must be 1 to 48 printable ASCII characters without spaces \
                 (RFC 5424 APP-NAME)"
            )));
        }
        match self.transport {
            SyslogTransport::Udp => {
                let port = self
                    .address
                    .rsplit_once(':')
                    .filter(|(host, _)| !host.is_empty())
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                    .filter(|port| *port != 0);
                if port.is_none() {
                    return Err(err(format!(
                        "address {:?} must be host:port for the udp transport",
                        self.address
                    )));
                }
            }
            SyslogTransport::Unix => {
                if self.address.is_empty() {
                    return Err(err(
                        "address must be a socket path (e.g. /dev/log) for the unix transport"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl HttpSinkConfig {
    fn validate(&self) -> Result<reqwest::Url, SinkError> {
        let err = |reason: String| SinkError::new(SinkKind::Http, reason);
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| err(format!("url {:?} is not a valid URL: {e}", self.url)))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(err(format!(
                    "url {:?}: https is not supported yet — TLS for the audit HTTP sink arrives \
                     with the TLS work; use an http:// URL (e.g. a collector on loopback)",
                    self.url
                )));
            }
            other => {
                return Err(err(format!(
                    "url {:?}: unsupported scheme {other:?}, only http:// is accepted",
                    self.url
                )));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(err(format!("url {:?} has no host", self.url)));
        }
        // Credentials in the URL would show wherever the configuration is printed.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err(
                "url must not contain credentials; use bearer_token_file".into(),
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_HTTP_TIMEOUT_MS {
            return Err(err(format!(
                "timeout_ms must be between 1 and {MAX_HTTP_TIMEOUT_MS}, got {}",
                self.timeout_ms
            )));
        }
        Ok(url)
    }
}

/// RFC 5424 PRINTUSASCII: `%d33-126`.
fn is_print_us_ascii(byte: u8) -> bool {
    (33..=126).contains(&byte)
}

/// The configured sinks, opened and ready. Shared with the store as its audit mirror.
#[derive(Debug)]
pub struct AuditSinks {
    policy: SinkPolicy,
    file: Option<FileSink>,
    syslog: Option<SyslogSink>,
    http: Option<HttpSink>,
}

impl AuditSinks {
    /// Validates the configuration and opens the sinks: creates or checks the file, reads the
    /// bearer token, builds the HTTP client. `None` when no sink is configured.
    pub fn from_config(config: &AuditSinksConfig) -> Result<Option<Arc<AuditSinks>>, SinkError> {
        config.validate()?;
        if config.is_empty() {
            return Ok(None);
        }
        let file = config.file.as_ref().map(FileSink::open).transpose()?;
        let syslog = config.syslog.as_ref().map(SyslogSink::new);
        let http = config.http.as_ref().map(HttpSink::new).transpose()?;
        Ok(Some(Arc::new(AuditSinks {
            policy: config.policy,
            file,
            syslog,
            http,
        })))
    }

    /// The policy in force.
    pub fn policy(&self) -> SinkPolicy {
        self.policy
    }

    async fn deliver(&self, entries: &[MirroredEntry<'_>]) -> Result<(), MirrorError> {
        if entries.is_empty() {
            return Ok(());
        }
        let batch = Batch::encode(entries).map_err(MirrorError)?;
        // Concurrently: the transaction is open while we wait, so the slowest sink, not the
        // sum, should bound the wait.
        let (file, syslog, http) = tokio::join!(
            run(
                SinkKind::File,
                self.file.as_ref().map(|s| s.deliver(&batch))
            ),
            run(
                SinkKind::Syslog,
                self.syslog.as_ref().map(|s| s.deliver(&batch))
            ),
            run(
                SinkKind::Http,
                self.http.as_ref().map(|s| s.deliver(&batch))
            ),
        );
        let outcomes: Vec<Result<(), String>> =
            [file, syslog, http].into_iter().flatten().collect();
        let failures: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().err().map(String::as_str))
            .collect();
        let accepted = outcomes.len() - failures.len();
        match self.policy {
            SinkPolicy::All if failures.is_empty() => Ok(()),
            SinkPolicy::All => Err(MirrorError(failures.join("; "))),
            SinkPolicy::Any if accepted > 0 => {
                for failure in failures {
                    tracing::warn!(error = %failure, "audit sink refused entries; another accepted");
                }
                Ok(())
            }
            SinkPolicy::Any => Err(MirrorError(format!(
                "no sink accepted the entries: {}",
                failures.join("; ")
            ))),
        }
    }
}

impl AuditMirror for AuditSinks {
    fn mirror<'a>(&'a self, entries: &'a [MirroredEntry<'a>]) -> MirrorFuture<'a> {
        Box::pin(self.deliver(entries))
    }
}

/// Runs one sink's delivery if it is configured; failures are prefixed with the sink kind.
async fn run(
    kind: SinkKind,
    delivery: Option<impl Future<Output = Result<(), String>>>,
) -> Option<Result<(), String>> {
    match delivery {
        Some(delivery) => Some(
            delivery
                .await
                .map_err(|reason| format!("{kind} sink: {reason}")),
        ),
        None => None,
    }
}

/// The entries encoded once for all sinks.
struct Batch {
    /// `(seq, line)` per entry, without newline.
    lines: Vec<(i64, String)>,
    /// Every line followed by `\n`: the file content and the HTTP body.
    joined: String,
}

impl Batch {
    fn encode(entries: &[MirroredEntry<'_>]) -> Result<Batch, String> {
        let mut lines = Vec::with_capacity(entries.len());
        let mut joined = String::new();
        for entry in entries {
            let record = entry.record_json.trim();
            // The record is embedded raw, so check it really is one JSON value on one line:
            // otherwise a line could be broken or carry a second forged entry.
            if serde_json::from_str::<serde::de::IgnoredAny>(record).is_err() {
                return Err(format!("entry {}: the record is not valid JSON", entry.seq));
            }
            if record.contains(['\n', '\r']) {
                return Err(format!(
                    "entry {}: the record spans several lines",
                    entry.seq
                ));
            }
            let line = format!(
                "{{\"seq\":{},\"hash\":\"{}\",\"record\":{record}}}",
                entry.seq,
                hex::encode(entry.hash)
            );
            joined.push_str(&line);
            joined.push('\n');
            lines.push((entry.seq, line));
        }
        Ok(Batch { lines, joined })
    }
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    /// Serializes writers: `write_all` may take several `write` calls, and lines of two
    /// deliveries must not interleave.
    file: Arc<Mutex<std::fs::File>>,
}

impl FileSink {
    fn open(config: &FileSinkConfig) -> Result<FileSink, SinkError> {
        let path = &config.path;
        let err = |reason: String| SinkError::new(SinkKind::File, reason);
        // Refuse non-regular files before opening: opening a FIFO for writing would block.
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => {
                return Err(err(format!("{} is not a regular file", path.display())));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(format!("cannot inspect {}: {e}", path.display()))),
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        // Check what we actually opened (the file may have existed with a looser mode, which
        // `mode(0o600)` does not change).
        let meta = file
            .metadata()
            .map_err(|e| err(format!("cannot inspect {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(err(format!("{} is not a regular file", path.display())));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "{} is accessible to group or others (mode {mode:04o}); audit records must not \
                 be: chmod 600 it",
                path.display()
            )));
        }
        Ok(FileSink {
            path: path.clone(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    async fn deliver(&self, batch: &Batch) -> Result<(), String> {
        let file = Arc::clone(&self.file);
        let data = batch.joined.clone().into_bytes();
        let written = tokio::task::spawn_blocking(move || {
            // A poisoned lock only means an earlier writer panicked; the file is still usable.
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            file.write_all(&data)?;
            // Durable before we report success: the transaction commits right after.
            file.sync_data()
        })
        .await
        .map_err(|_| "the write task failed".to_string())?;
        written.map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

#[derive(Debug)]
struct SyslogSink {
    transport: SyslogTransport,
    address: String,
    /// `<PRI>1`: the fixed start of every message.
    pri: u8,
    hostname: String,
    app_name: String,
    procid: u32,
}

impl SyslogSink {
    fn new(config: &SyslogSinkConfig) -> SyslogSink {
        SyslogSink {
            transport: config.transport,
            address: config.address.clone(),
            pri: config.facility.code() * 8 + SEVERITY_NOTICE,
            hostname: local_hostname(),
            app_name: config.app_name.clone(),
            procid: std::process::id(),
        }
    }

    fn message(&self, timestamp: &str, line: &str) -> String {
        let mut message = String::with_capacity(line.len() + 128);
        // Writing to a String cannot fail.
        let _ = write!(
            message,
            "<{}>1 {timestamp} {} {} {} audit - {line}",
            self.pri, self.hostname, self.app_name, self.procid
        );
        message
    }

    async fn deliver(&self, batch: &Batch) -> Result<(), String> {
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let messages: Vec<String> = batch
            .lines
            .iter()
            .map(|(_, line)| self.message(&timestamp, line))
            .collect();
        // Check every message before sending any, so a refused batch leaves nothing behind.
        for ((seq, _), message) in batch.lines.iter().zip(&messages) {
            if message.len() > MAX_SYSLOG_MESSAGE_BYTES {
                return Err(format!(
                    "the message for entry {seq} is {} bytes, over the {MAX_SYSLOG_MESSAGE_BYTES} \
                     byte limit; refusing to truncate an audit record",
                    message.len()
                ));
            }
        }
        tokio::time::timeout(SYSLOG_SEND_TIMEOUT, self.send_all(&messages))
            .await
            .map_err(|_| format!("timed out after {} ms", SYSLOG_SEND_TIMEOUT.as_millis()))?
    }

    async fn send_all(&self, messages: &[String]) -> Result<(), String> {
        match self.transport {
            SyslogTransport::Udp => {
                let target = tokio::net::lookup_host(self.address.as_str())
                    .await
                    .map_err(|e| format!("cannot resolve {}: {e}", self.address))?
                    .next()
                    .ok_or_else(|| format!("{} resolves to no address", self.address))?;
                let local: std::net::SocketAddr = if target.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = tokio::net::UdpSocket::bind(local)
                    .await
                    .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
                socket
                    .connect(target)
                    .await
                    .map_err(|e| format!("cannot reach {target}: {e}"))?;
                for message in messages {
                    let sent = socket
                        .send(message.as_bytes())
                        .await
                        .map_err(|e| format!("cannot send to {target}: {e}"))?;
                    if sent != message.len() {
                        return Err(format!("short send to {target}"));
                    }
                }
            }
            SyslogTransport::Unix => {
                let socket = tokio::net::UnixDatagram::unbound()
                    .map_err(|e| format!("cannot open a Unix datagram socket: {e}"))?;
                for message in messages {
                    let sent = socket
                        .send_to(message.as_bytes(), &self.address)
                        .await
                        .map_err(|e| format!("cannot send to {}: {e}", self.address))?;
                    if sent != message.len() {
                        return Err(format!("short send to {}", self.address));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The HOSTNAME field: the kernel's host name if it is valid RFC 5424 PRINTUSASCII, otherwise
/// the NILVALUE `-`. Read from procfs because `unsafe` (and so `gethostname`) is forbidden here.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.len() <= 255 && name.bytes().all(is_print_us_ascii))
        .unwrap_or_else(|| "-".into())
}

/// The `Authorization` header value; `Debug` never shows it.
struct Bearer(reqwest::header::HeaderValue);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(***)")
    }
}

#[derive(Debug)]
struct HttpSink {
    url: reqwest::Url,
    client: reqwest::Client,
    authorization: Option<Bearer>,
    timeout_ms: u64,
}

impl HttpSink {
    fn new(config: &HttpSinkConfig) -> Result<HttpSink, SinkError> {
        let err = |reason: String| SinkError::new(SinkKind::Http, reason);
        let url = config.validate()?;
        let authorization = config
            .bearer_token_file
            .as_deref()
            .map(read_bearer)
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // A redirect is a non-2xx answer, so a failure; following it could also carry the
            // token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| err(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpSink {
            url,
            client,
            authorization,
            timeout_ms: config.timeout_ms,
        })
    }

    async fn deliver(&self, batch: &Batch) -> Result<(), String> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(batch.joined.clone());
        if let Some(Bearer(value)) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        let response = request.send().await.map_err(|e| self.describe(e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {}", status.as_u16()))
        }
    }

    /// A short reason for a failed request: what went wrong and the innermost cause (an IO
    /// error, typically), without the URL (it could be long) or anything from the body.
    fn describe(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("timed out after {} ms", self.timeout_ms);
        }
        let what = if error.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        let error = error.without_url();
        let mut cause: &dyn std::error::Error = &error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        format!("{what}: {cause}")
    }
}

fn read_bearer(path: &Path) -> Result<Bearer, SinkError> {
    let err = |reason: String| SinkError::new(SinkKind::Http, reason);
    let content = std::fs::read_to_string(path).map_err(|e| {
        err(format!(
            "cannot read bearer_token_file {}: {e}",
            path.display()
        ))
    })?;
    let token = content.trim();
    if token.is_empty() {
        return Err(err(format!(
            "bearer_token_file {} is empty",
            path.display()
        )));
    }
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            err(format!(
                "bearer_token_file {} holds characters not allowed in an HTTP header",
                path.display()
            ))
        })?;
    // Keeps the value out of HTTP/2 header compression tables and marks it for redaction.
    value.set_sensitive(true);
    Ok(Bearer(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

    const HASH: [u8; 32] = [0xab; 32];
    /// Record content that must never appear in an error text.
    const MARKER: &str = "do-not-leak-7f3a";

    fn records() -> Vec<String> {
        vec![
            format!(
                r#"{{"action":"model.create","actor":"alice","detail":{{"note":"{MARKER}"}}}}"#
            ),
            r#"{"action":"token.revoke","actor":"bob","detail":{"ids":[1,2,3],"ünï":"côdé"}}"#
                .to_string(),
        ]
    }

    fn entries(records: &[String]) -> Vec<MirroredEntry<'_>> {
        records
            .iter()
            .zip(41..)
            .map(|(record, seq)| MirroredEntry {
                seq,
                record_json: record,
                hash: &HASH,
            })
            .collect()
    }

    fn sinks(config: &AuditSinksConfig) -> Arc<AuditSinks> {
        AuditSinks::from_config(config).unwrap().unwrap()
    }

    fn file_config(path: &Path) -> AuditSinksConfig {
        AuditSinksConfig {
            file: Some(FileSinkConfig {
                path: path.to_path_buf(),
            }),
            ..AuditSinksConfig::default()
        }
    }

    fn http_config(url: &str) -> HttpSinkConfig {
        HttpSinkConfig {
            url: url.into(),
            bearer_token_file: None,
            timeout_ms: 2000,
        }
    }

    fn unix_syslog(path: &Path) -> SyslogSinkConfig {
        SyslogSinkConfig {
            address: path.to_str().unwrap().into(),
            transport: SyslogTransport::Unix,
            app_name: default_app_name(),
            facility: SyslogFacility::default(),
        }
    }

    /// Checks one entry line against what was mirrored.
    fn check_line(line: &str, seq: i64, record: &str) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["seq"], seq);
        assert_eq!(value["hash"], hex::encode(HASH));
        let original: serde_json::Value = serde_json::from_str(record).unwrap();
        assert_eq!(value["record"], original);
        assert_eq!(value.as_object().unwrap().len(), 3);
    }

    // ---- configuration ----

    #[test]
    fn nothing_configured_means_no_mirror() {
        assert!(
            AuditSinks::from_config(&AuditSinksConfig::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn toml_configuration_parses_with_defaults_and_rejects_unknown_keys() {
        let config: AuditSinksConfig = toml::from_str(
            r#"
            policy = "any"
            [file]
            path = "/var/log/custos/audit.jsonl"
            [syslog]
            address = "/dev/log"
            [http]
            url = "http://127.0.0.1:9000/audit"
            "#,
        )
        .unwrap();
        assert_eq!(config.policy, SinkPolicy::Any);
        let syslog = config.syslog.as_ref().unwrap();
        assert_eq!(syslog.transport, SyslogTransport::Unix);
        assert_eq!(syslog.app_name, "custos");
        assert_eq!(syslog.facility, SyslogFacility::Authpriv);
        let http = config.http.as_ref().unwrap();
        assert_eq!(http.timeout_ms, 2000);
        assert_eq!(http.bearer_token_file, None);
        config.validate().unwrap();

        let default: AuditSinksConfig = toml::from_str("").unwrap();
        assert_eq!(default, AuditSinksConfig::default());
        assert_eq!(default.policy, SinkPolicy::All);

        for bad in [
            "polcy = \"all\"",
            "policy = \"some\"",
            "[file]\npath = \"/x\"\nmode = 420",
            "[syslog]\naddress = \"/dev/log\"\nfacility = \"local9\"",
            "[syslog]\naddress = \"/dev/log\"\ntransport = \"tcp\"",
            "[http]\nurl = \"http://x\"\ntoken = \"t\"",
        ] {
            assert!(toml::from_str::<AuditSinksConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_and_other_schemes_are_refused_at_validation() {
        let config = AuditSinksConfig {
            http: Some(http_config("https://collector.example:8443/audit")),
            ..AuditSinksConfig::default()
        };
        let error = AuditSinks::from_config(&config).unwrap_err();
        assert_eq!(error.kind, SinkKind::Http);
        let text = error.to_string();
        assert!(text.starts_with("audit http sink: "), "{text}");
        assert!(text.contains("https is not supported yet"), "{text}");
        assert!(text.contains("TLS work"), "{text}");

        for (url, expected) in [
            ("ftp://collector/audit", "unsupported scheme"),
            ("not a url", "not a valid URL"),
            (
                "http://user:pw@collector/audit",
                "must not contain credentials",
            ),
        ] {
            let config = AuditSinksConfig {
                http: Some(http_config(url)),
                ..AuditSinksConfig::default()
            };
            let text = config.validate().unwrap_err().to_string();
            assert!(text.contains(expected), "{url}: {text}");
        }
        let mut zero = http_config("http://127.0.0.1:1/");
        zero.timeout_ms = 0;
        let config = AuditSinksConfig {
            http: Some(zero),
            ..AuditSinksConfig::default()
        };
        assert!(config.validate().unwrap_err().reason.contains("timeout_ms"));
    }

    #[test]
    fn bad_syslog_settings_are_refused() {
        let mut no_port = unix_syslog(Path::new("/dev/log"));
        no_port.transport = SyslogTransport::Udp;
        no_port.address = "loghost".into();
        let mut spaced = unix_syslog(Path::new("/dev/log"));
        spaced.app_name = "cus tos".into();
        let mut long = unix_syslog(Path::new("/dev/log"));
        long.app_name = "a".repeat(49);
        for (syslog, expected) in [
            (no_port, "host:port"),
            (spaced, "app_name"),
            (long, "app_name"),
        ] {
            let config = AuditSinksConfig {
                syslog: Some(syslog),
                ..AuditSinksConfig::default()
            };
            let error = AuditSinks::from_config(&config).unwrap_err();
            assert_eq!(error.kind, SinkKind::Syslog);
            assert!(error.reason.contains(expected), "{error}");
        }
    }

    #[test]
    fn records_that_are_not_one_json_line_are_refused() {
        let hash = [0u8; 32];
        for record in ["{\"a\":", "{\"a\":1} {\"b\":2}", "{\"a\":\n1}"] {
            let entry = MirroredEntry {
                seq: 1,
                record_json: record,
                hash: &hash,
            };
            assert!(Batch::encode(&[entry]).is_err(), "{record:?}");
        }
    }

    // ---- file sink ----

    #[tokio::test]
    async fn file_sink_appends_synced_lines_to_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let records = records();
        let sinks = sinks(&file_config(&path));
        sinks.mirror(&entries(&records)).await.unwrap();

        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.ends_with('\n'));
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines.len(), 2);
        check_line(lines[0], 41, &records[0]);
        check_line(lines[1], 42, &records[1]);

        // A restart reopens the same file and appends; nothing earlier is lost.
        drop(sinks);
        let again = super::AuditSinks::from_config(&file_config(&path))
            .unwrap()
            .unwrap();
        again.mirror(&entries(&records[..1])).await.unwrap();
        again.mirror(&[]).await.unwrap();
        let content = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines.len(), 3);
        check_line(lines[2], 41, &records[0]);
    }

    #[test]
    fn file_sink_refuses_a_file_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = AuditSinks::from_config(&file_config(&path)).unwrap_err();
        assert_eq!(error.kind, SinkKind::File);
        assert!(error.reason.contains("group or others"), "{error}");
        assert!(error.reason.contains("0644"), "{error}");
    }

    #[test]
    fn file_sink_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let error = AuditSinks::from_config(&file_config(dir.path())).unwrap_err();
        assert_eq!(error.kind, SinkKind::File);
        assert!(error.reason.contains("not a regular file"), "{error}");
    }

    #[test]
    fn file_sink_fails_when_the_file_cannot_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        // With CAP_DAC_OVERRIDE (root) a read-only directory does not stop us; then check the
        // other way creation fails, a missing parent directory.
        let privileged = std::fs::write(locked.join("probe"), "").is_ok();
        let path = if privileged {
            eprintln!("running privileged: testing a missing parent instead of a read-only one");
            dir.path().join("missing").join("audit.jsonl")
        } else {
            locked.join("audit.jsonl")
        };
        let error = AuditSinks::from_config(&file_config(&path)).unwrap_err();
        assert_eq!(error.kind, SinkKind::File);
        assert!(error.reason.starts_with("cannot open"), "{error}");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    // ---- syslog sink ----

    /// Splits an RFC 5424 message into its eight parts and checks the fixed ones.
    fn check_syslog(message: &str, pri: u8, app_name: &str, seq: i64, record: &str) {
        let parts: Vec<&str> = message.splitn(8, ' ').collect();
        assert_eq!(parts.len(), 8, "{message}");
        assert_eq!(parts[0], format!("<{pri}>1"));
        let time = chrono::DateTime::parse_from_rfc3339(parts[1]).unwrap();
        assert!((chrono::Utc::now() - time.to_utc()).num_seconds().abs() < 60);
        assert!(parts[1].ends_with('Z'));
        assert!(!parts[2].is_empty() && parts[2].bytes().all(is_print_us_ascii));
        assert_eq!(parts[3], app_name);
        assert_eq!(parts[4], std::process::id().to_string());
        assert_eq!(parts[5], "audit");
        assert_eq!(parts[6], "-");
        check_line(parts[7], seq, record);
    }

    #[tokio::test]
    async fn syslog_over_udp_sends_one_rfc5424_message_per_entry() {
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let config = AuditSinksConfig {
            syslog: Some(SyslogSinkConfig {
                address: receiver.local_addr().unwrap().to_string(),
                transport: SyslogTransport::Udp,
                app_name: default_app_name(),
                facility: SyslogFacility::default(),
            }),
            ..AuditSinksConfig::default()
        };
        let records = records();
        sinks(&config).mirror(&entries(&records)).await.unwrap();

        let mut buffer = vec![0u8; 65536];
        for (seq, record) in [(41, &records[0]), (42, &records[1])] {
            let (n, _) = receiver.recv_from(&mut buffer).await.unwrap();
            let message = std::str::from_utf8(&buffer[..n]).unwrap();
            // authpriv (10) * 8 + notice (5)
            check_syslog(message, 85, "custos", seq, record);
        }
    }

    #[tokio::test]
    async fn syslog_over_a_unix_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("log.sock");
        let receiver = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
        let mut syslog = unix_syslog(&socket_path);
        syslog.app_name = "custos-test".into();
        syslog.facility = SyslogFacility::Local3;
        let config = AuditSinksConfig {
            syslog: Some(syslog),
            ..AuditSinksConfig::default()
        };
        let records = records();
        sinks(&config).mirror(&entries(&records)).await.unwrap();

        let mut buffer = vec![0u8; 65536];
        for (seq, record) in [(41, &records[0]), (42, &records[1])] {
            let n = receiver.recv(&mut buffer).await.unwrap();
            let message = std::str::from_utf8(&buffer[..n]).unwrap();
            // local3 (19) * 8 + notice (5)
            check_syslog(message, 157, "custos-test", seq, record);
        }
    }

    #[tokio::test]
    async fn syslog_refuses_oversized_messages_and_sends_nothing() {
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let config = AuditSinksConfig {
            syslog: Some(SyslogSinkConfig {
                address: receiver.local_addr().unwrap().to_string(),
                transport: SyslogTransport::Udp,
                app_name: default_app_name(),
                facility: SyslogFacility::default(),
            }),
            ..AuditSinksConfig::default()
        };
        let big = format!(
            r#"{{"action":"x","detail":"{MARKER}{}"}}"#,
            "y".repeat(MAX_SYSLOG_MESSAGE_BYTES)
        );
        let records = vec![records()[1].clone(), big];
        let error = sinks(&config)
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("audit sink: syslog sink: "), "{error}");
        assert!(error.contains("entry 42"), "{error}");
        assert!(error.contains("8192 byte limit"), "{error}");
        assert!(!error.contains(MARKER), "{error}");

        // Not even the small first entry went out.
        let mut buffer = vec![0u8; 65536];
        let received =
            tokio::time::timeout(Duration::from_millis(300), receiver.recv_from(&mut buffer)).await;
        assert!(received.is_err(), "a datagram was sent");
    }

    #[tokio::test]
    async fn syslog_to_a_missing_unix_socket_fails() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditSinksConfig {
            syslog: Some(unix_syslog(&dir.path().join("nobody-listens"))),
            ..AuditSinksConfig::default()
        };
        let records = records();
        let error = sinks(&config)
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("syslog sink: cannot send"), "{error}");
    }

    // ---- HTTP sink ----

    /// `(content type, authorization, body)` of one request.
    type Received = (String, Option<String>, String);

    #[derive(Clone)]
    struct Collector {
        requests: Arc<Mutex<Vec<Received>>>,
        status: Arc<AtomicU16>,
        delay_ms: Arc<AtomicU64>,
        url: String,
    }

    impl Collector {
        fn answer(&self, status: u16) {
            self.status.store(status, Ordering::SeqCst);
        }

        fn requests(&self) -> Vec<Received> {
            self.requests.lock().unwrap().clone()
        }
    }

    async fn collect(
        State(collector): State<Collector>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let delay = collector.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let header = |name| {
            headers
                .get(name)
                .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        collector.requests.lock().unwrap().push((
            header(axum::http::header::CONTENT_TYPE).unwrap_or_default(),
            header(axum::http::header::AUTHORIZATION),
            body,
        ));
        StatusCode::from_u16(collector.status.load(Ordering::SeqCst)).unwrap()
    }

    /// A real HTTP collector on a loopback port.
    async fn start_collector() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let collector = Collector {
            requests: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::default(),
            url: format!("http://{}/ingest", listener.local_addr().unwrap()),
        };
        let app = axum::Router::new()
            .route("/ingest", axum::routing::post(collect))
            .with_state(collector.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        collector
    }

    #[tokio::test]
    async fn http_sink_posts_ndjson_with_the_bearer_token() {
        let collector = start_collector().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "  s3cret-token-value\n").unwrap();
        let config = AuditSinksConfig {
            http: Some(HttpSinkConfig {
                bearer_token_file: Some(token_file),
                ..http_config(&collector.url)
            }),
            ..AuditSinksConfig::default()
        };
        let sinks = sinks(&config);
        assert!(!format!("{sinks:?}").contains("s3cret"));
        let records = records();
        sinks.mirror(&entries(&records)).await.unwrap();

        let requests = collector.requests();
        assert_eq!(requests.len(), 1);
        let (content_type, authorization, body) = &requests[0];
        assert_eq!(content_type, "application/x-ndjson");
        assert_eq!(authorization.as_deref(), Some("Bearer s3cret-token-value"));
        assert!(body.ends_with('\n'));
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2);
        check_line(lines[0], 41, &records[0]);
        check_line(lines[1], 42, &records[1]);
    }

    #[tokio::test]
    async fn http_sink_fails_on_error_status_refused_connection_and_timeout() {
        let collector = start_collector().await;
        let records = records();
        let config = AuditSinksConfig {
            http: Some(http_config(&collector.url)),
            ..AuditSinksConfig::default()
        };
        let sinks = sinks(&config);

        collector.answer(503);
        let error = sinks
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(error, "audit sink: http sink: status 503");

        collector.answer(302);
        let error = sinks
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(error, "audit sink: http sink: status 302");

        collector.answer(200);
        collector.delay_ms.store(1500, Ordering::SeqCst);
        let slow = AuditSinksConfig {
            http: Some(HttpSinkConfig {
                timeout_ms: 200,
                ..http_config(&collector.url)
            }),
            ..AuditSinksConfig::default()
        };
        let error = super::AuditSinks::from_config(&slow)
            .unwrap()
            .unwrap()
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(error, "audit sink: http sink: timed out after 200 ms");

        // A port nobody listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ingest", closed.local_addr().unwrap());
        drop(closed);
        let config = AuditSinksConfig {
            http: Some(http_config(&url)),
            ..AuditSinksConfig::default()
        };
        let error = super::AuditSinks::from_config(&config)
            .unwrap()
            .unwrap()
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("audit sink: http sink: cannot connect"),
            "{error}"
        );
        assert!(!error.contains(MARKER));
    }

    #[test]
    fn a_missing_or_empty_token_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        for (path, expected) in [
            (dir.path().join("missing"), "cannot read bearer_token_file"),
            (empty, "is empty"),
        ] {
            let config = AuditSinksConfig {
                http: Some(HttpSinkConfig {
                    bearer_token_file: Some(path),
                    ..http_config("http://127.0.0.1:9/")
                }),
                ..AuditSinksConfig::default()
            };
            let error = AuditSinks::from_config(&config).unwrap_err();
            assert!(error.reason.contains(expected), "{error}");
        }
    }

    // ---- policies ----

    #[tokio::test]
    async fn all_policy_fails_when_one_sink_is_down() {
        let collector = start_collector().await;
        collector.answer(503);
        let dir = tempfile::tempdir().unwrap();
        let config = AuditSinksConfig {
            policy: SinkPolicy::All,
            http: Some(http_config(&collector.url)),
            ..file_config(&dir.path().join("audit.jsonl"))
        };
        let records = records();
        let error = sinks(&config)
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(error, "audit sink: http sink: status 503");

        // Two sinks down: both are named.
        let config = AuditSinksConfig {
            syslog: Some(unix_syslog(&dir.path().join("nobody-listens"))),
            ..config
        };
        let error = sinks(&config)
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("syslog sink: cannot send"), "{error}");
        assert!(error.contains("http sink: status 503"), "{error}");
        assert!(!error.contains(MARKER), "{error}");

        // And with every sink up, it goes through.
        collector.answer(204);
        let config = AuditSinksConfig {
            syslog: None,
            ..config
        };
        sinks(&config).mirror(&entries(&records)).await.unwrap();
    }

    #[tokio::test]
    async fn any_policy_succeeds_when_one_sink_is_up() {
        let collector = start_collector().await;
        collector.answer(503);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditSinksConfig {
            policy: SinkPolicy::Any,
            http: Some(http_config(&collector.url)),
            syslog: Some(unix_syslog(&dir.path().join("nobody-listens"))),
            ..file_config(&path)
        };
        let records = records();
        let sinks = sinks(&config);
        assert_eq!(sinks.policy(), SinkPolicy::Any);
        sinks.mirror(&entries(&records)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        // The failing sink was still tried.
        assert_eq!(collector.requests().len(), 1);
    }

    #[tokio::test]
    async fn any_policy_fails_when_every_sink_is_down() {
        let collector = start_collector().await;
        collector.answer(500);
        let dir = tempfile::tempdir().unwrap();
        let config = AuditSinksConfig {
            policy: SinkPolicy::Any,
            http: Some(http_config(&collector.url)),
            syslog: Some(unix_syslog(&dir.path().join("nobody-listens"))),
            ..AuditSinksConfig::default()
        };
        let records = records();
        let error = sinks(&config)
            .mirror(&entries(&records))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("audit sink: no sink accepted the entries: "),
            "{error}"
        );
        assert!(error.contains("http sink: status 500"), "{error}");
        assert!(error.contains("syslog sink: "), "{error}");
    }
}
