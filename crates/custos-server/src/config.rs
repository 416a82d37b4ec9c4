//! Configuration: one TOML file, overridable by environment variables, checked once.
//!
//! Layers, later wins: built-in defaults → the TOML file → `CUSTOS_<SECTION>__<KEY>` environment
//! variables → command-line flags (applied by the binary). A variable ending in `_FILE`
//! (`CUSTOS_STORE__DATABASE_URL_FILE`) names a file whose content is the value, so secrets need not
//! sit in the environment. Unknown keys, in the file or the environment, are errors: a typo must
//! not silently leave a default in place. Secret values are wrapped so `Debug` never shows them.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration value that must never be printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the server reads at start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listening and files.
    pub server: ServerConfig,
    /// The database.
    pub store: StoreConfig,
    /// Key-encryption keys.
    pub keys: KeysConfig,
    /// Bounds on requests.
    pub limits: LimitsConfig,
    /// Password sign-in.
    pub auth: AuthConfig,
    /// Drift defaults.
    pub drift: DriftConfig,
    /// Logging.
    pub log: LogConfig,
    /// The audit log: checkpoints, retention, extra sinks.
    pub audit: AuditConfig,
    /// API-token lifetimes.
    pub tokens: crate::tokens_api::TokensConfig,
    /// OAuth access tokens: lifetime, issuer, trusted identity providers.
    pub oauth: crate::oauth::OauthConfig,
    /// The Prometheus endpoint's cached monitoring results (`[metrics]`).
    pub metrics: crate::metrics::MetricsConfig,
    /// Alert evaluation and notification delivery (`[alerts]`).
    pub alerts: crate::alerting::AlertsConfig,
    /// The retention job (`[retention]`); what is retained is set per model.
    pub retention: crate::retention::RetentionJobConfig,
    /// Sign-in through an LDAP directory (`[ldap]`); off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ldap: Option<crate::ldap::LdapConfig>,
    /// Single sign-on through an OpenID provider (`[oidc]`); off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::oidc::OidcConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the embedded database, keys and the bootstrap secret.
    pub data_dir: PathBuf,
    /// Serve plain HTTP on a non-loopback address, because a TLS-terminating proxy in front
    /// does the encryption. Off by default (monitoring data and credentials must not cross a
    /// network unencrypted; `[server.tls]` is the way); when set, every start logs a warning.
    /// `allow_insecure_http` is the older name of this setting.
    #[serde(alias = "allow_insecure_http")]
    pub allow_plaintext_behind_proxy: bool,
    /// Idle lifetime of a web session, in minutes.
    pub session_idle_minutes: u32,
    /// Absolute lifetime of a web session, in hours.
    pub session_max_hours: u32,
    /// `[server.tls]`: serve HTTPS (and optionally mutual TLS) directly. File only: nested
    /// tables have no environment-variable form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8750)),
            data_dir: PathBuf::from("custos-data"),
            allow_plaintext_behind_proxy: false,
            session_idle_minutes: 30,
            session_max_hours: 12,
            tls: None,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://…` to use PostgreSQL; unset for the embedded SQLite file in the data directory.
    pub database_url: Option<Secret>,
}

/// `[keys]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Directory of key-encryption-key files (`kek-v<N>.key`, mode 0600). Default `<data_dir>/keys`.
    pub kek_dir: Option<PathBuf>,
    /// A base64 key-encryption key given directly (use `CUSTOS_KEYS__KEK_FILE` to read it from a
    /// secret file). When set, `kek_dir` is not used.
    pub kek: Option<Secret>,
    /// While sealed (keys unavailable at start), seconds between attempts to load them. Default 5.
    pub unseal_retry_seconds: u64,
    /// `[keys.pkcs11]`: the key-encryption keys live in a hardware security module, reached
    /// through its PKCS#11 module. When set, neither `kek` nor `kek_dir` may be. File only
    /// (nested tables have no environment-variable form), except the PIN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<Pkcs11Config>,
    /// The PKCS#11 user PIN, from `CUSTOS_KEYS__PKCS11_PIN` or (read once at start)
    /// `CUSTOS_KEYS__PKCS11_PIN_FILE`. Refused in the configuration file: use
    /// `keys.pkcs11.pin_file` there.
    #[serde(skip_serializing)]
    pub pkcs11_pin: Option<Secret>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            kek_dir: None,
            kek: None,
            unseal_retry_seconds: 5,
            pkcs11: None,
            pkcs11_pin: None,
        }
    }
}

/// `[keys.pkcs11]`: where the hardware security module keeps the key-encryption keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 module (a shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// Label prefix of the key objects: version N is `<key_label>-v<N>`. Default `custos-kek`.
    #[serde(default = "default_key_label")]
    pub key_label: String,
    /// A file holding the user PIN (one line, owner-only permissions), re-read at every attempt
    /// to reach the token, so a sealed server unseals once the secret is mounted. Alternatively
    /// `CUSTOS_KEYS__PKCS11_PIN[_FILE]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

fn default_key_label() -> String {
    "custos-kek".into()
}

impl KeysConfig {
    fn check(&self) -> Result<(), String> {
        let Some(p) = &self.pkcs11 else {
            if self.pkcs11_pin.is_some() {
                return Err("CUSTOS_KEYS__PKCS11_PIN is set but [keys.pkcs11] is not".into());
            }
            return Ok(());
        };
        if self.kek.is_some() || self.kek_dir.is_some() {
            return Err(
                "[keys.pkcs11] cannot be combined with keys.kek or keys.kek_dir: choose one \
                 key provider"
                    .into(),
            );
        }
        match (&p.pin_file, &self.pkcs11_pin) {
            (None, None) => Err("[keys.pkcs11] needs a user PIN: keys.pkcs11.pin_file, or \
                 CUSTOS_KEYS__PKCS11_PIN / CUSTOS_KEYS__PKCS11_PIN_FILE"
                .into()),
            (Some(_), Some(_)) => Err("the PKCS#11 PIN is given twice (keys.pkcs11.pin_file and \
                 CUSTOS_KEYS__PKCS11_PIN[_FILE]); keep one"
                .into()),
            _ if p.token_label.is_empty() || p.key_label.is_empty() => {
                Err("keys.pkcs11.token_label and key_label must not be empty".into())
            }
            _ => Ok(()),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most rows in one ingest batch.
    pub max_batch_rows: usize,
    /// Longest a request may take, in seconds.
    pub request_timeout_seconds: u64,
    /// Ingest requests processed at once; more wait, and beyond twice this get 429.
    pub max_concurrent_ingest: usize,
    /// Failed authentications allowed per client address per minute before 429.
    pub auth_failures_per_minute: u32,
    /// Largest reference file, in bytes (uploads hold the decoded file in memory).
    pub max_reference_bytes: usize,
    /// Most rows in one reference file.
    pub max_reference_rows: usize,
    /// Most predictions one performance request reads back (it pairs each with its label).
    pub max_performance_rows: usize,
    /// Sign-in attempts per client address per minute (see [`crate::limits`]).
    pub sign_in_per_minute: u32,
    /// Sign-in attempts one address may make at once.
    pub sign_in_burst: u32,
    /// Ingest requests (predictions, labels, references) per principal per second.
    pub ingest_per_second: u32,
    /// Ingest requests one principal may make at once.
    pub ingest_burst: u32,
    /// Other authenticated requests per principal per second.
    pub read_per_second: u32,
    /// Other authenticated requests one principal may make at once.
    pub read_burst: u32,
    /// Reveal requests (`POST …/reveal`, up to 100 tokens each) per principal per minute:
    /// turning tokens back into personal data is meant to be rare and deliberate.
    pub reveal_per_minute: u32,
    /// Reveal requests one principal may make at once.
    pub reveal_burst: u32,
    /// A client address may spend this many principals' ingest and read budgets (several
    /// exporters behind one host or NAT share an address).
    pub per_ip_multiplier: u32,
    /// Most keys each rate-limit table tracks; beyond it the stalest are dropped.
    pub max_rate_limit_keys: usize,
    /// Proxies whose `X-Forwarded-For` is believed (CIDR blocks). Empty: the TCP peer is the
    /// client, whatever headers say.
    pub trusted_proxies: Vec<crate::limits::Cidr>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_rows: 10_000,
            request_timeout_seconds: 60,
            max_concurrent_ingest: 4,
            auth_failures_per_minute: 30,
            max_reference_bytes: 256 * 1024 * 1024,
            max_reference_rows: 1_000_000,
            max_performance_rows: 1_000_000,
            sign_in_per_minute: 20,
            sign_in_burst: 10,
            ingest_per_second: 200,
            ingest_burst: 400,
            read_per_second: 50,
            read_burst: 100,
            reveal_per_minute: 5,
            reveal_burst: 5,
            per_ip_multiplier: 4,
            max_rate_limit_keys: 100_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Wrong passwords in a row after which a local user's account is locked.
    pub lockout_failures: u32,
    /// How long a locked account stays locked, in minutes.
    pub lockout_minutes: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            lockout_failures: 10,
            lockout_minutes: 15,
        }
    }
}

/// `[drift]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// PSI at or above which a numeric feature counts as drifted.
    pub psi_threshold: f64,
    /// Jensen–Shannon distance at or above which a categorical feature counts as drifted.
    pub jensen_shannon_threshold: f64,
    /// Share of drifted features at or above which the dataset counts as drifted.
    pub drift_share: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            psi_threshold: 0.2,
            jensen_shannon_threshold: 0.1,
            drift_share: 0.5,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A checkpoint is signed at least this often while entries arrive.
    pub checkpoint_interval_seconds: u32,
    /// …and as soon as this many entries are unsigned.
    pub checkpoint_max_entries: u32,
    /// Entries older than this are pruned (from a checkpoint, so the log stays verifiable).
    pub retention_days: u32,
    /// Largest tree an inclusion or consistency proof is computed over on request.
    pub max_proof_tree_size: u32,
    /// Weakening changes (a raised drift threshold, an excluded feature, a longer silence
    /// allowed) wait for a second person's approval instead of taking effect.
    pub two_person_rule: bool,
    /// Extra places every entry is written to before its transaction commits.
    pub sinks: crate::audit_sinks::AuditSinksConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval_seconds: 60,
            checkpoint_max_entries: 1_000,
            retention_days: 400,
            max_proof_tree_size: 2_000_000,
            two_person_rule: false,
            sinks: crate::audit_sinks::AuditSinksConfig::default(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `custos_server=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file or an override is not valid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

const ENV_PREFIX: &str = "CUSTOS_";

/// Loads the configuration from an optional file and the given environment.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.to_owned(),
                reason: e.kind().to_string(),
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Invalid(format!("{}: {}", path.display(), e.message())))?
        }
        None => toml::Table::new(),
    };
    if table
        .get("keys")
        .and_then(toml::Value::as_table)
        .is_some_and(|keys| keys.contains_key("pkcs11_pin"))
    {
        return Err(ConfigError::Invalid(
            "keys.pkcs11_pin must not be written into the configuration file: use \
             keys.pkcs11.pin_file, CUSTOS_KEYS__PKCS11_PIN_FILE or CUSTOS_KEYS__PKCS11_PIN"
                .into(),
        ));
    }
    apply_env(&mut table, env)?;
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
    check(&config)?;
    Ok(config)
}

/// Settings that are secrets: their environment values are always strings.
const SECRET_ENV_KEYS: &[(&str, &str)] = &[
    ("keys", "pkcs11_pin"),
    ("keys", "kek"),
    ("store", "database_url"),
];

/// Applies `CUSTOS_<SECTION>__<KEY>[_FILE]` variables. Variables without the `__` separator are
/// not configuration (for example test-harness settings) and are ignored.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        let mut key = key.to_ascii_lowercase();
        let value = if let Some(stripped) = key.strip_suffix("_file") {
            let path = PathBuf::from(&raw);
            let content = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
                path: path.clone(),
                reason: e.kind().to_string(),
            })?;
            key = stripped.to_owned();
            toml::Value::String(content.trim_end_matches(['\n', '\r']).to_owned())
        } else if SECRET_ENV_KEYS.contains(&(section.as_str(), key.as_str())) {
            // Secrets are text even when they look like numbers (a PIN such as 4711), and a
            // type error must not quote them.
            toml::Value::String(raw)
        } else {
            env_value(&raw)
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(ConfigError::Invalid(format!(
                "{name}: [{section}] is not a section"
            )));
        };
        section_table.insert(key, value);
    }
    Ok(())
}

/// Environment values are strings; numbers and booleans are recognised so that
/// `CUSTOS_LIMITS__MAX_BATCH_ROWS=500` works like the TOML `max_batch_rows = 500`.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    toml::Value::String(raw.to_owned())
}

fn check(config: &Config) -> Result<(), ConfigError> {
    let l = &config.limits;
    if l.max_body_bytes < 1024
        || l.max_batch_rows == 0
        || l.max_concurrent_ingest == 0
        || l.max_reference_bytes < 1024
        || l.max_reference_rows == 0
        || l.max_performance_rows == 0
    {
        return Err(ConfigError::Invalid(
            "limits must be positive (max_body_bytes and max_reference_bytes at least 1024)".into(),
        ));
    }
    crate::limits::check_config(l).map_err(ConfigError::Invalid)?;
    config.keys.check().map_err(ConfigError::Invalid)?;
    config.tokens.check().map_err(ConfigError::Invalid)?;
    config.oauth.check().map_err(ConfigError::Invalid)?;
    if let Some(oidc) = &config.oidc {
        oidc.check().map_err(ConfigError::Invalid)?;
    }
    if let Some(ldap) = &config.ldap {
        ldap.check().map_err(ConfigError::Invalid)?;
    }
    let a = &config.audit;
    if a.checkpoint_interval_seconds == 0 || a.checkpoint_max_entries == 0 || a.retention_days == 0
    {
        return Err(ConfigError::Invalid(
            "audit.checkpoint_interval_seconds, checkpoint_max_entries and retention_days must be \
             positive"
                .into(),
        ));
    }
    a.sinks
        .validate()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    config.metrics.check().map_err(ConfigError::Invalid)?;
    config.alerts.check().map_err(ConfigError::Invalid)?;
    if config.retention.interval_seconds == 0 {
        return Err(ConfigError::Invalid(
            "retention.interval_seconds must be at least 1".into(),
        ));
    }
    let d = &config.drift;
    if !(d.psi_threshold > 0.0
        && d.jensen_shannon_threshold > 0.0
        && d.jensen_shannon_threshold <= 1.0)
    {
        return Err(ConfigError::Invalid(
            "drift thresholds must be positive (jensen_shannon_threshold at most 1)".into(),
        ));
    }
    if !(d.drift_share > 0.0 && d.drift_share <= 1.0) {
        return Err(ConfigError::Invalid(
            "drift.drift_share must lie in (0, 1]".into(),
        ));
    }
    if let Some(url) = &config.store.database_url {
        let url = url.expose();
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite://"))
        {
            return Err(ConfigError::Invalid(
                "store.database_url must start with postgres://, postgresql:// or sqlite://".into(),
            ));
        }
    }
    if config.auth.lockout_failures == 0 || config.auth.lockout_minutes == 0 {
        return Err(ConfigError::Invalid(
            "auth.lockout_failures and auth.lockout_minutes must be positive".into(),
        ));
    }
    if let Some(tls) = &config.server.tls {
        crate::tls::check(tls).map_err(ConfigError::Invalid)?;
    }
    if config.server.session_idle_minutes == 0 || config.server.session_max_hours == 0 {
        return Err(ConfigError::Invalid(
            "session lifetimes must be positive".into(),
        ));
    }
    Ok(())
}

/// A secret file's content as text, without the trailing newline editors add; `None` when it is
/// not UTF-8.
pub fn secret_from_bytes(bytes: &[u8]) -> Option<zeroize::Zeroizing<String>> {
    let text = std::str::from_utf8(bytes).ok()?;
    Some(zeroize::Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Reads a secret file named by the setting `setting` (for the message), at start.
pub fn read_secret_file(path: &Path, setting: &str) -> Result<zeroize::Zeroizing<String>, String> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("{setting} {}: {}", path.display(), e.kind()))?,
    );
    secret_from_bytes(&bytes).ok_or_else(|| format!("{setting} {} is not UTF-8", path.display()))
}

/// The documented example of section `[name]` in docs/CONFIGURATION.md, as the body of that
/// section (its sub-tables renamed to be relative), for tests that parse and check it.
#[cfg(test)]
pub(crate) fn documented_section(name: &str) -> String {
    let doc = include_str!("../../../docs/CONFIGURATION.md");
    let opening = format!("```toml\n[{name}]\n");
    let start = doc
        .find(&opening)
        .map(|at| at + opening.len())
        .unwrap_or_else(|| panic!("docs/CONFIGURATION.md has no [{name}] example"));
    let block = &doc[start..];
    let block = &block[..block.find("```").unwrap_or(block.len())];
    block.replace(&format!("[{name}."), "[")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = load(None, Vec::new()).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8750");
        assert_eq!(c.server.data_dir, PathBuf::from("custos-data"));
    }

    #[test]
    fn file_env_and_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("custos.toml");
        std::fs::write(
            &file,
            "[limits]\nmax_batch_rows = 50\n[drift]\npsi_threshold = 0.3\n",
        )
        .unwrap();
        let secret = dir.path().join("db");
        let mut f = std::fs::File::create(&secret).unwrap();
        writeln!(f, "postgres://u:pw@localhost/db").unwrap();
        let c = load(
            Some(&file),
            env(&[
                ("CUSTOS_LIMITS__MAX_BATCH_ROWS", "70"),
                ("CUSTOS_STORE__DATABASE_URL_FILE", secret.to_str().unwrap()),
                ("CUSTOS_TEST_POSTGRES_URL", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.limits.max_batch_rows, 70);
        assert_eq!(c.drift.psi_threshold, 0.3);
        assert_eq!(
            c.store.database_url.as_ref().map(Secret::expose),
            Some("postgres://u:pw@localhost/db")
        );
        assert!(!format!("{c:?}").contains("pw@"));
    }

    #[test]
    fn pkcs11_settings_and_their_pin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("custos.toml");
        let table = "[keys.pkcs11]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n\
                     token_label = \"custos\"\n";
        std::fs::write(&file, format!("{table}pin_file = \"/run/pin\"\n")).unwrap();
        let c = load(Some(&file), Vec::new()).unwrap();
        let p = c.keys.pkcs11.as_ref().unwrap();
        assert_eq!(p.key_label, "custos-kek");
        assert_eq!(p.pin_file.as_deref(), Some(Path::new("/run/pin")));
        // The PIN from the environment instead of a file; never shown by Debug.
        std::fs::write(&file, table).unwrap();
        let c = load(Some(&file), env(&[("CUSTOS_KEYS__PKCS11_PIN", "4711")])).unwrap();
        assert_eq!(c.keys.pkcs11_pin.as_ref().map(Secret::expose), Some("4711"));
        assert!(!format!("{c:?}").contains("4711"));
        // No PIN at all, two PINs, a PIN in the file, a second key provider: refused.
        let err = load(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("needs a user PIN"), "{err}");
        std::fs::write(&file, format!("{table}pin_file = \"/run/pin\"\n")).unwrap();
        let err = load(Some(&file), env(&[("CUSTOS_KEYS__PKCS11_PIN", "4711")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
        std::fs::write(&file, format!("[keys]\npkcs11_pin = \"4711\"\n{table}")).unwrap();
        let err = load(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("must not be written"), "{err}");
        assert!(!err.contains("4711"), "{err}");
        std::fs::write(
            &file,
            format!("[keys]\nkek_dir = \"/k\"\n{table}pin_file = \"/run/pin\"\n"),
        )
        .unwrap();
        let err = load(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("choose one"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("custos.toml");
        std::fs::write(&file, "[server]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap();
        let err = load(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("listen_addr"), "{err}");
        let err = load(None, env(&[("CUSTOS_SERVER__COLOUR", "red")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let err = load(None, env(&[("CUSTOS_NOPE__X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(load(None, env(&[("CUSTOS_DRIFT__DRIFT_SHARE", "2")])).is_err());
        assert!(load(None, env(&[("CUSTOS_STORE__DATABASE_URL", "mysql://x")])).is_err());
        assert!(load(None, env(&[("CUSTOS_SERVER__LISTEN", "nonsense")])).is_err());
        assert!(load(None, env(&[("CUSTOS_AUTH__LOCKOUT_FAILURES", "0")])).is_err());
        let c = load(None, env(&[("CUSTOS_AUTH__LOCKOUT_MINUTES", "30")])).unwrap();
        assert_eq!((c.auth.lockout_failures, c.auth.lockout_minutes), (10, 30));
    }
}
