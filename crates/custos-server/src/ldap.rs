//! LDAP sign-in: the `[ldap]` configuration and the decision whether a user name and password
//! from the sign-in form open a session through a directory.
//!
//! Owns: the transport rule (LDAPS or StartTLS; plain LDAP only to a loopback address, for
//! tests), the bind DN and search filters built with every piece of user input escaped
//! (`dn_escape` inside DNs, `ldap_escape` inside filters), the bind *as the user*, the group
//! lookup, the group → role mapping — applied afresh at every sign-in, so removing someone from
//! a group removes the role at their next sign-in — and the audit record of every attempt.
//!
//! It is reached only from [`crate::local_users::sign_in_password`] when no local user has the
//! submitted name, after that function's per-address throttle and its Argon2 work. So the
//! throttle, the refusal ([`SignInError::Rejected`], whatever the reason) and the minimum time
//! an attempt takes are the same as for local users; only the audit log tells the reasons apart.
//!
//! A person whose groups map to no role is refused like a wrong password (reason `no_role`):
//! a directory usually holds far more people than should reach Custos, and a session that can
//! do nothing would still take a slot in the bounded session table.
//!
//! Every call into the `ldap3` client is in [`converse`], so the client can be swapped (its
//! maintenance is uncertain; see the stack notes).

use crate::auth::{Actor, SignInError, audit_event};
use crate::context::RequestContext;
use crate::state::AppState;
use custos_core::{ActorType, Outcome, Principal, grants_of};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Placeholder for the submitted user name in templates and filters.
const USER: &str = "{user}";
/// Placeholder for the user's DN in the group filter.
const DN: &str = "{dn}";
/// Longest user name sent to the directory, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Longest password sent to the directory, in bytes.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Most group entries read for one person; more is refused rather than cut short, since a
/// truncated list could silently drop a role.
const MAX_GROUPS: i32 = 1_000;
/// LDAP result code 49, invalidCredentials.
const RC_INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code 4, sizeLimitExceeded.
const RC_SIZE_LIMIT: u32 = 4;
/// LDAP result code 34, invalidDNSyntax: a typed name that makes no valid DN names nobody.
const RC_INVALID_DN_SYNTAX: u32 = 34;

fn default_group_filter() -> String {
    "(|(member={dn})(uniqueMember={dn}))".to_owned()
}

fn default_group_attribute() -> String {
    "cn".to_owned()
}

fn default_timeout_seconds() -> u64 {
    5
}

/// `[ldap]`: sign-in against a directory for names that are not local users.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` together with `starttls = true`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything else is sent.
    #[serde(default)]
    pub starttls: bool,
    /// Allow `ldap://` without TLS when the host is a loopback IP address (tests only).
    #[serde(default)]
    pub allow_plaintext_loopback: bool,
    /// The DN to bind as, e.g. `uid={user},ou=people,dc=example,dc=org`; `{user}` is replaced by
    /// the DN-escaped user name. Either this or `user_search_base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_dn_template: Option<String>,
    /// Where to search for the user's entry when DNs do not follow one pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_search_base: Option<String>,
    /// The search filter for the user's entry (default `(uid={user})`); `{user}` is replaced
    /// by the filter-escaped user name. Only with `user_search_base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_filter: Option<String>,
    /// A service account to bind as for the user search (anonymous without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    /// File holding the service account's password (never the password itself in the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password_file: Option<PathBuf>,
    /// Where to search for the user's groups.
    pub group_search_base: String,
    /// Filter for the user's groups; `{dn}` is the user's DN and `{user}` the user name, both
    /// filter-escaped.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The group attribute whose values are matched against `group_roles`.
    #[serde(default = "default_group_attribute")]
    pub group_attribute: String,
    /// Group name (matched without regard to ASCII case) → the role bindings it gives.
    pub group_roles: crate::group_roles::GroupRoles,
    /// PEM file of the certificate(s) to trust for the directory; the system roots without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Longest the whole directory conversation of one sign-in may take, in seconds.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Ldaps,
    StartTls,
    /// Only to a loopback address with `allow_plaintext_loopback`.
    Plain,
}

/// Where the user's DN comes from.
enum UserLookup<'a> {
    Template(&'a str),
    Search { base: &'a str, filter: &'a str },
}

impl LdapConfig {
    /// Checks what can be checked without the directory or the files. Called by
    /// [`crate::config::load`]; [`LdapConfig::check_files`] adds the files at start.
    pub fn check(&self) -> Result<(), String> {
        self.transport()?;
        match (&self.user_dn_template, &self.user_search_base) {
            (Some(template), None) => {
                need_placeholder(template, &[USER], "ldap.user_dn_template")?;
                if self.user_filter.is_some()
                    || self.bind_dn.is_some()
                    || self.bind_password_file.is_some()
                {
                    return Err(
                        "ldap.user_filter, bind_dn and bind_password_file are used only \
                                with ldap.user_search_base"
                            .into(),
                    );
                }
            }
            (None, Some(base)) => {
                if base.trim().is_empty() {
                    return Err("ldap.user_search_base is empty".into());
                }
                let filter = self.user_filter();
                need_placeholder(filter, &[USER], "ldap.user_filter")?;
                check_filter(filter, "ldap.user_filter")?;
                if self.bind_dn.is_some() != self.bind_password_file.is_some() {
                    return Err(
                        "ldap.bind_dn and ldap.bind_password_file go together (or neither, for \
                         an anonymous search)"
                            .into(),
                    );
                }
            }
            _ => {
                return Err(
                    "set exactly one of ldap.user_dn_template and ldap.user_search_base".into(),
                );
            }
        }
        if self.group_search_base.trim().is_empty() {
            return Err("ldap.group_search_base is empty".into());
        }
        need_placeholder(&self.group_filter, &[DN, USER], "ldap.group_filter")?;
        check_filter(&self.group_filter, "ldap.group_filter")?;
        let attribute_ok = !self.group_attribute.is_empty()
            && self.group_attribute.len() <= 64
            && self
                .group_attribute
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';'));
        if !attribute_ok {
            return Err("ldap.group_attribute must be an attribute name such as \"cn\"".into());
        }
        crate::group_roles::check("ldap", &self.group_roles)?;
        if !(1..=60).contains(&self.timeout_seconds) {
            return Err("ldap.timeout_seconds must lie in 1..=60".into());
        }
        Ok(())
    }

    /// [`LdapConfig::check`] plus the files it names: the CA file must hold a certificate and
    /// the service password file must be readable, so a mistake shows at start rather than at
    /// the first sign-in. Both are read again at every sign-in, so they can be replaced without
    /// a restart.
    pub fn check_files(&self) -> Result<(), String> {
        self.check()?;
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("ldap.ca_file {}: {}", path.display(), e.kind()))?;
            roots_from_pem(&pem).map_err(|e| format!("ldap.ca_file {}: {e}", path.display()))?;
        }
        if let Some(path) = &self.bind_password_file {
            let secret = read_secret_file_blocking(path)?;
            if secret.is_empty() {
                return Err(format!(
                    "ldap.bind_password_file {} is empty",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    fn user_filter(&self) -> &str {
        self.user_filter.as_deref().unwrap_or("(uid={user})")
    }

    fn user_lookup(&self) -> Option<UserLookup<'_>> {
        match (&self.user_dn_template, &self.user_search_base) {
            (Some(template), None) => Some(UserLookup::Template(template)),
            (None, Some(base)) => Some(UserLookup::Search {
                base,
                filter: self.user_filter(),
            }),
            _ => None,
        }
    }

    /// The transport the URL and flags ask for, refusing plain LDAP: a simple bind sends the
    /// user's password as it is, so without TLS anyone on the path reads it. Loopback traffic
    /// never leaves the machine, which is why tests may opt out for `127.0.0.1`.
    fn transport(&self) -> Result<Transport, String> {
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or("ldap.url must look like ldaps://host:port")?;
        let host = url_host(rest)?;
        match (scheme.to_ascii_lowercase().as_str(), self.starttls) {
            ("ldaps", false) => Ok(Transport::Ldaps),
            ("ldaps", true) => {
                Err("ldap.starttls is for ldap:// URLs; ldaps:// is TLS already".into())
            }
            ("ldap", true) => Ok(Transport::StartTls),
            ("ldap", false) if self.allow_plaintext_loopback && is_loopback(&host) => {
                Ok(Transport::Plain)
            }
            ("ldap", false) => Err(
                "ldap.url: plain ldap:// would send passwords unencrypted; use ldaps:// or set \
                 ldap.starttls = true (allow_plaintext_loopback permits it only for a loopback \
                 IP address)"
                    .into(),
            ),
            _ => Err("ldap.url must start with ldaps:// or ldap://".into()),
        }
    }
}

/// The host of `host[:port][/]`, refusing user info, paths and queries (which would only
/// confuse what is being connected to).
fn url_host(rest: &str) -> Result<String, String> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err("ldap.url must be scheme://host[:port] with nothing after the port".into());
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or("ldap.url: unclosed [ in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("ldap.url has no host".into());
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err("ldap.url has a bad port".into());
    }
    Ok(host.to_owned())
}

/// Only an IP literal counts: a name could resolve elsewhere.
fn is_loopback(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn need_placeholder(template: &str, any_of: &[&str], what: &str) -> Result<(), String> {
    if any_of.iter().any(|p| template.contains(p)) {
        Ok(())
    } else {
        Err(format!("{what} must contain {}", any_of.join(" or ")))
    }
}

fn check_filter(filter: &str, what: &str) -> Result<(), String> {
    let sample = fill(filter, &[(USER, "x"), (DN, "cn=x")]);
    ldap3::parse_filter(&sample)
        .map(|_| ())
        .map_err(|()| format!("{what} is not a valid LDAP filter"))
}

/// Replaces placeholders in one pass, so a value that contains a placeholder's text (a user
/// named `{dn}`) is never substituted again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    'scan: while !rest.is_empty() {
        for (placeholder, value) in values {
            if let Some(after) = rest.strip_prefix(placeholder) {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// The DN to bind as, from a template: the name is DN-escaped, so it stays one attribute value
/// whatever it contains.
fn templated_dn(template: &str, name: &str) -> String {
    fill(template, &[(USER, &ldap3::dn_escape(name))])
}

/// The user search filter: the name is filter-escaped, so it stays one assertion value.
fn user_search_filter(filter: &str, name: &str) -> String {
    fill(filter, &[(USER, &ldap3::ldap_escape(name))])
}

/// The group filter for a user's DN and name, both filter-escaped.
fn group_search_filter(filter: &str, dn: &str, name: &str) -> String {
    fill(
        filter,
        &[
            (DN, &ldap3::ldap_escape(dn)),
            (USER, &ldap3::ldap_escape(name)),
        ],
    )
}

/// The principal id of a directory user: `ldap:` and the name, lower-cased (directories match
/// `uid` without regard to case, so `Alice` and `alice` are one person).
fn principal_id(name: &str) -> String {
    crate::group_roles::external_id("ldap:", &name.to_ascii_lowercase())
}

/// Why an attempt failed, for the audit record only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    EmptyPassword,
    /// A name or password too long to send (or an empty name, which the form never sends).
    TooLong,
    /// Wrong password or no such user: with a DN template the directory cannot say which.
    BadCredentials,
    /// The user search found the entry, but the password is wrong.
    BadPassword,
    UnknownUser,
    AmbiguousUser,
    NoRole,
    TooManyGroups,
    /// The directory could not be reached or answered unexpectedly; details go to the log.
    DirectoryError,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::EmptyPassword => "empty_password",
            Refusal::TooLong => "too_long",
            Refusal::BadCredentials => "bad_credentials",
            Refusal::BadPassword => "bad_password",
            Refusal::UnknownUser => "unknown_user",
            Refusal::AmbiguousUser => "ambiguous_user",
            Refusal::NoRole => "no_role",
            Refusal::TooManyGroups => "too_many_groups",
            Refusal::DirectoryError => "directory_error",
        }
    }
}

/// What the directory said about a person whose bind succeeded.
#[derive(Debug)]
struct Found {
    groups: Vec<String>,
}

/// A directory failure: logged with a fixed description and the LDAP result code, never with
/// the server's text (which can echo the DN) and never with the password.
fn directory_error(what: &'static str, rc: Option<u32>) -> Refusal {
    tracing::warn!(what, rc, "LDAP sign-in: directory error");
    Refusal::DirectoryError
}

fn ldap_failure(what: &'static str, e: &ldap3::LdapError) -> Refusal {
    let rc = match e {
        ldap3::LdapError::LdapResult { result } => Some(result.rc),
        _ => None,
    };
    directory_error(what, rc)
}

/// A person signing in through the directory. Fail closed: a sign-in that cannot be checked or
/// recorded does not happen.
pub async fn sign_in_ldap(
    state: &AppState,
    ctx: &RequestContext,
    config: &LdapConfig,
    name: &str,
    password: &str,
) -> Result<Principal, SignInError> {
    // Checked again here (the caller checks too) so this function is safe on its own.
    if state
        .failures
        .blocked(ctx.client_ip, state.config.limits.auth_failures_per_minute)
    {
        return Err(SignInError::Throttled);
    }
    let name = name.trim();
    let outcome = if password.is_empty() {
        // An empty password makes a simple bind "unauthenticated", which many servers answer
        // with success: it must never reach the directory.
        Err(Refusal::EmptyPassword)
    } else if name.is_empty() || name.len() > MAX_NAME_BYTES || password.len() > MAX_PASSWORD_BYTES
    {
        Err(Refusal::TooLong)
    } else {
        ask_directory(config, name, password).await
    };
    let outcome = outcome.and_then(|found| {
        let (bindings, matched) =
            crate::group_roles::map_groups(&config.group_roles, &found.groups);
        if bindings.is_empty() {
            Err(Refusal::NoRole)
        } else {
            Ok((bindings, matched))
        }
    });
    let (bindings, matched) = match outcome {
        Ok(found) => found,
        Err(refusal) => {
            // The name may be a typo, an e-mail address or a password in the wrong field: it
            // is recorded only as its keyed hash, like an unknown local user.
            let event = audit_event(
                state,
                ctx,
                Actor::anonymous(),
                "auth.sign_in",
                "ui".to_owned(),
                Outcome::Failure,
                serde_json::json!({
                    "method": "ldap",
                    "reason": refusal.as_str(),
                    "name_hmac": state.keys.audit_hasher().tag(name),
                }),
            );
            state
                .store
                .append_audit(&event)
                .await
                .map_err(|e| SignInError::Internal(e.into()))?;
            state.failures.record(ctx.client_ip);
            return Err(SignInError::Rejected);
        }
    };
    let id = principal_id(name);
    let principal = Principal::User {
        id: id.clone(),
        name: name.to_owned(),
        grants: grants_of(&bindings),
    };
    let event = audit_event(
        state,
        ctx,
        Actor {
            id: principal.actor_id(),
            kind: ActorType::User,
        },
        "auth.sign_in",
        format!("user/{id}"),
        Outcome::Success,
        serde_json::json!({
            "method": "ldap",
            "user_id": id,
            "groups": matched,
            "roles": bindings,
        }),
    );
    state
        .store
        .append_audit(&event)
        .await
        .map_err(|e| SignInError::Internal(e.into()))?;
    Ok(principal)
}

/// Runs the directory conversation in its own task under one deadline: a panic inside the
/// client (it panics on some malformed answers) or a hung server becomes a refusal, not a
/// failed request handler.
async fn ask_directory(config: &LdapConfig, name: &str, password: &str) -> Result<Found, Refusal> {
    let config = config.clone();
    let name = name.to_owned();
    let password = Zeroizing::new(password.to_owned());
    let deadline = Duration::from_secs(config.timeout_seconds);
    let task = tokio::spawn(async move {
        tokio::time::timeout(deadline, converse(&config, &name, &password)).await
    });
    match task.await {
        Ok(Ok(result)) => result,
        Ok(Err(_elapsed)) => Err(directory_error("timed out", None)),
        Err(_join) => Err(directory_error("client failed", None)),
    }
}

/// The conversation with the directory: connect (TLS first), find the user's DN, bind as the
/// user, read the groups. The only code that uses the `ldap3` client.
async fn converse(config: &LdapConfig, name: &str, password: &str) -> Result<Found, Refusal> {
    let transport = config
        .transport()
        .map_err(|_| directory_error("bad configuration", None))?;
    let lookup = config
        .user_lookup()
        .ok_or_else(|| directory_error("bad configuration", None))?;
    let timeout = Duration::from_secs(config.timeout_seconds);
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(transport == Transport::StartTls);
    if transport != Transport::Plain {
        let tls = tls_config(config.ca_file.as_deref()).await?;
        settings = settings.set_config(Arc::new(tls));
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &config.url)
        .await
        .map_err(|e| ldap_failure("connect", &e))?;
    ldap3::drive!(conn);

    let (user_dn, unknown) = match lookup {
        UserLookup::Template(template) => (templated_dn(template, name), Refusal::BadCredentials),
        UserLookup::Search { base, filter } => {
            if let (Some(bind_dn), Some(path)) = (&config.bind_dn, &config.bind_password_file) {
                let secret = read_secret_file(path).await?;
                ldap.with_timeout(timeout)
                    .simple_bind(bind_dn, &secret)
                    .await
                    .and_then(ldap3::LdapResult::success)
                    .map_err(|e| ldap_failure("service bind", &e))?;
            }
            // Two entries are enough to know the name is ambiguous.
            let result = ldap
                .with_timeout(timeout)
                .with_search_options(SearchOptions::new().sizelimit(2))
                .search(
                    base,
                    Scope::Subtree,
                    &user_search_filter(filter, name),
                    vec!["1.1"],
                )
                .await
                .map_err(|e| ldap_failure("user search", &e))?;
            let ldap3::SearchResult(entries, result) = result;
            if result.rc == RC_SIZE_LIMIT || entries.len() > 1 {
                return Err(Refusal::AmbiguousUser);
            }
            if result.rc != 0 {
                return Err(directory_error("user search", Some(result.rc)));
            }
            let Some(entry) = entries.into_iter().next() else {
                return Err(Refusal::UnknownUser);
            };
            (SearchEntry::construct(entry).dn, Refusal::BadPassword)
        }
    };
    // An empty DN with a password is not a bind as anyone; refuse it rather than rely on
    // every server rejecting it.
    if user_dn.is_empty() {
        return Err(unknown);
    }
    let bound = ldap
        .with_timeout(timeout)
        .simple_bind(&user_dn, password)
        .await
        .map_err(|e| ldap_failure("bind", &e))?;
    match bound.rc {
        0 => {}
        RC_INVALID_CREDENTIALS | RC_INVALID_DN_SYNTAX => return Err(unknown),
        rc => return Err(directory_error("bind", Some(rc))),
    }

    // The groups are read as the user just bound, so the directory's own access rules apply.
    let result = ldap
        .with_timeout(timeout)
        .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS))
        .search(
            &config.group_search_base,
            Scope::Subtree,
            &group_search_filter(&config.group_filter, &user_dn, name),
            vec![config.group_attribute.as_str()],
        )
        .await
        .map_err(|e| ldap_failure("group search", &e))?;
    let ldap3::SearchResult(entries, result) = result;
    match result.rc {
        0 => {}
        RC_SIZE_LIMIT => return Err(Refusal::TooManyGroups),
        rc => return Err(directory_error("group search", Some(rc))),
    }
    let groups = entries
        .into_iter()
        .map(SearchEntry::construct)
        .flat_map(|entry| {
            entry
                .attrs
                .into_iter()
                .filter(|(attribute, _)| attribute.eq_ignore_ascii_case(&config.group_attribute))
                .flat_map(|(_, values)| values)
        })
        .collect();
    // Best effort: the session is decided already and the connection closes either way.
    let _ = ldap.unbind().await;
    Ok(Found { groups })
}

/// TLS settings for the directory: its certificate must chain to `ca_file` (or the system
/// roots) and name the URL's host. The provider is given explicitly so this never depends on a
/// process-wide default.
async fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, Refusal> {
    let roots = match ca_file {
        Some(path) => {
            let pem = tokio::fs::read(path)
                .await
                .map_err(|_| directory_error("cannot read ca_file", None))?;
            roots_from_pem(&pem).map_err(|_| directory_error("no certificate in ca_file", None))?
        }
        None => tokio::task::spawn_blocking(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            roots
        })
        .await
        .map_err(|_| directory_error("cannot load system roots", None))?,
    };
    if roots.is_empty() {
        return Err(directory_error("no trusted certificates", None));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| directory_error("TLS setup", None))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn roots_from_pem(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|_| "not a PEM certificate".to_owned())?;
        roots
            .add(cert)
            .map_err(|_| "a certificate cannot be used as a trust anchor".to_owned())?;
    }
    if roots.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(roots)
}

/// A secret file's content without the trailing newline editors add.
async fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, Refusal> {
    let bytes = Zeroizing::new(
        tokio::fs::read(path)
            .await
            .map_err(|_| directory_error("cannot read bind_password_file", None))?,
    );
    crate::config::secret_from_bytes(&bytes)
        .ok_or_else(|| directory_error("bind_password_file is not UTF-8", None))
}

fn read_secret_file_blocking(path: &Path) -> Result<Zeroizing<String>, String> {
    crate::config::read_secret_file(path, "ldap.bind_password_file")
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use ldap3::asn1::{Tag, TagClass};

    const INJECTIONS: [&str; 4] = [
        "*)(uid=*))(|(uid=*",
        "admin)(|(objectClass=*",
        "*",
        "alice,ou=people,dc=custos,dc=test\0",
    ];

    fn config() -> LdapConfig {
        toml::from_str(
            r#"
            url = "ldaps://ldap.example.org"
            user_dn_template = "uid={user},ou=people,dc=example,dc=org"
            group_search_base = "ou=groups,dc=example,dc=org"
            [group_roles]
            ml-auditors = [{ role = "auditor", model = "*" }]
            ml-sre = [{ role = "sre", model = "*" }, { role = "auditor", model = "*" }]
            "#,
        )
        .unwrap()
    }

    /// The equality assertions of a parsed filter, as (attribute, value) pairs; panics on any
    /// other kind of filter item (presence, substring, …), which an injection would produce.
    fn equalities(tag: &Tag) -> Vec<(Vec<u8>, Vec<u8>)> {
        match tag {
            Tag::Sequence(seq) if seq.class == TagClass::Context && seq.id == 3 => {
                match seq.inner.as_slice() {
                    [Tag::OctetString(a), Tag::OctetString(v)] => {
                        vec![(a.inner.clone(), v.inner.clone())]
                    }
                    other => panic!("odd equality {other:?}"),
                }
            }
            // and (0) / or (1)
            Tag::Sequence(seq) if seq.class == TagClass::Context && seq.id <= 1 => {
                seq.inner.iter().flat_map(equalities).collect()
            }
            other => panic!("not an equality: {other:?}"),
        }
    }

    /// Splits a DN at its unescaped commas.
    fn rdns(dn: &str) -> Vec<String> {
        let mut parts = vec![String::new()];
        let mut escaped = false;
        for c in dn.chars() {
            if !escaped && c == ',' {
                parts.push(String::new());
                continue;
            }
            escaped = !escaped && c == '\\';
            parts.last_mut().unwrap().push(c);
        }
        parts
    }

    #[test]
    fn injection_names_cannot_bind_as_anyone() {
        // Filters: every injection attempt stays ONE equality assertion whose value is exactly
        // what was typed — no wildcard, no extra clause — so it can only match an entry whose
        // uid is literally that text.
        for name in INJECTIONS {
            let filter = user_search_filter("(uid={user})", name);
            let parsed = ldap3::parse_filter(&filter).expect("still a valid filter");
            assert_eq!(
                equalities(&parsed),
                vec![(b"uid".to_vec(), name.as_bytes().to_vec())],
                "{filter}"
            );
            let groups = group_search_filter(
                &default_group_filter(),
                &templated_dn("uid={user},ou=people,dc=x", name),
                name,
            );
            let parsed = ldap3::parse_filter(&groups).expect("still a valid filter");
            let pairs = equalities(&parsed);
            assert_eq!(pairs.len(), 2, "{groups}");
            assert!(
                pairs
                    .iter()
                    .all(|(_, v)| v.starts_with(b"uid=") && v.ends_with(b",ou=people,dc=x"))
            );
        }
        // DNs: the name stays the value of the first RDN; the rest of the DN is the template's.
        for name in INJECTIONS {
            let dn = templated_dn("uid={user},ou=people,dc=custos,dc=test", name);
            let parts = rdns(&dn);
            assert_eq!(parts[1..], ["ou=people", "dc=custos", "dc=test"], "{dn}");
            let value = parts[0].strip_prefix("uid=").unwrap();
            assert_eq!(ldap3::ldap_unescape(value).unwrap(), name, "{dn}");
            assert!(!dn.contains('\0'));
        }
    }

    #[test]
    fn placeholders_are_filled_once() {
        assert_eq!(
            fill(
                "(&(member={dn})(uid={user}))",
                &[(DN, "{user}"), (USER, "a")]
            ),
            "(&(member={user})(uid=a))"
        );
        assert_eq!(fill("{user}{user}ä", &[(USER, "x")]), "xxä");
        assert_eq!(
            group_search_filter("(member={dn})", "uid=a\\,b", "a"),
            "(member=uid=a\\5c,b)"
        );
    }

    #[test]
    fn transport_rules() {
        let with = |url: &str, starttls: bool, loopback: bool| LdapConfig {
            url: url.into(),
            starttls,
            allow_plaintext_loopback: loopback,
            ..config()
        };
        assert_eq!(
            with("ldaps://h:636", false, false).transport(),
            Ok(Transport::Ldaps)
        );
        assert_eq!(
            with("LDAP://h", true, false).transport(),
            Ok(Transport::StartTls)
        );
        assert_eq!(
            with("ldap://127.0.0.1:3890/", false, true).transport(),
            Ok(Transport::Plain)
        );
        assert_eq!(
            with("ldap://[::1]:3890", false, true).transport(),
            Ok(Transport::Plain)
        );
        let err = with("ldap://ldap.example.org", false, false)
            .check()
            .unwrap_err();
        assert!(err.contains("unencrypted"), "{err}");
        // The loopback exception is for IP literals on loopback only.
        assert!(with("ldap://10.0.0.1", false, true).check().is_err());
        assert!(with("ldap://localhost", false, true).check().is_err());
        assert!(with("ldap://127.0.0.1", false, false).check().is_err());
        assert!(with("ldaps://h", true, false).check().is_err());
        for bad in [
            "h:636",
            "http://h",
            "ldaps://",
            "ldaps://u@h",
            "ldaps://h/dc=x",
            "ldaps://h:x",
        ] {
            assert!(with(bad, false, false).check().is_err(), "{bad}");
        }
    }

    #[test]
    fn configuration_checks() {
        assert_eq!(config().check(), Ok(()));
        assert_eq!(config().timeout_seconds, 5);
        assert_eq!(config().group_attribute, "cn");
        let search = LdapConfig {
            user_dn_template: None,
            user_search_base: Some("ou=people,dc=example,dc=org".into()),
            ..config()
        };
        assert_eq!(search.check(), Ok(()));
        assert_eq!(search.user_filter(), "(uid={user})");
        let both = LdapConfig {
            user_search_base: Some("ou=people".into()),
            ..config()
        };
        assert!(both.check().is_err());
        let neither = LdapConfig {
            user_dn_template: None,
            ..config()
        };
        assert!(neither.check().is_err());
        let no_placeholder = LdapConfig {
            user_dn_template: Some("uid=alice,dc=x".into()),
            ..config()
        };
        assert!(no_placeholder.check().is_err());
        let half_service = LdapConfig {
            bind_dn: Some("cn=svc".into()),
            ..search.clone()
        };
        assert!(half_service.check().is_err());
        let bad_filter = LdapConfig {
            group_filter: "(member={dn}".into(),
            ..config()
        };
        assert!(bad_filter.check().is_err());
        // Roles go through the same check as a local user's bindings.
        let narrowed_admin: LdapConfig = toml::from_str(
            r#"
            url = "ldaps://h"
            user_dn_template = "uid={user}"
            group_search_base = "ou=groups"
            group_roles = { admins = [{ role = "admin", model = "fraud-v3" }] }
            "#,
        )
        .unwrap();
        assert!(narrowed_admin.check().unwrap_err().contains("admin"));
        let unknown_key = toml::from_str::<LdapConfig>(
            "url = \"ldaps://h\"\ngroup_search_base = \"x\"\ngroup_roles = {}\nbind_password = \"pw\"\n",
        );
        assert!(unknown_key.is_err(), "secrets only from files");
        let nobody = LdapConfig {
            group_roles: crate::group_roles::GroupRoles::new(),
            ..config()
        };
        assert!(nobody.check().is_err());
    }

    #[test]
    fn files_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let c = LdapConfig {
            ca_file: Some(ca.clone()),
            ..config()
        };
        assert!(c.check_files().is_err());
        let missing = LdapConfig {
            ca_file: Some(dir.path().join("missing.pem")),
            ..config()
        };
        assert!(missing.check_files().unwrap_err().contains("missing.pem"));
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let search = LdapConfig {
            user_dn_template: None,
            user_search_base: Some("ou=people".into()),
            bind_dn: Some("cn=svc".into()),
            bind_password_file: Some(pw.clone()),
            ..config()
        };
        assert_eq!(search.check_files(), Ok(()));
        assert_eq!(read_secret_file_blocking(&pw).unwrap().as_str(), "s3cret");
        assert!(!format!("{search:?}").contains("s3cret"));
    }

    #[test]
    fn the_documented_example_is_valid() {
        let section = crate::config::documented_section("ldap");
        let c: LdapConfig = toml::from_str(&section).unwrap();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.group_roles.len(), 2);
    }

    #[test]
    fn principal_ids_are_safe_and_case_free() {
        assert_eq!(principal_id("Alice"), "ldap:alice");
        assert_eq!(principal_id("a.b-c_d@e"), "ldap:a.b-c_d@e");
        assert_eq!(principal_id("*)(uid=*"), "ldap:%2A%29%28uid%3D%2A");
        assert_eq!(principal_id("ä"), "ldap:%C3%A4");
    }
}
