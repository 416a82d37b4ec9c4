//! `custos apply -f DIR [--dry-run]`: monitoring configuration as code.
//!
//! Owns reading the YAML files of a directory (models, monitoring configurations, alert rules,
//! notification channels), comparing each with what the server holds, printing the exact
//! difference (RFC 6901 paths from `custos_core::history::diff`, the same diff the history view
//! shows), and — without `--dry-run` — sending each changed resource through the ordinary API.
//! The server decides what the token may change: a pipeline token scoped to one model's alert
//! rules gets 403 (audited) for anything else, and `apply` reports it and exits 1. Every applied
//! monitoring or rule change becomes a configuration version whose author is the token and whose
//! reason is `--reason`.
//!
//! Documents are normalised through the server's own types before comparison, so defaults the
//! file leaves out are not reported as changes. Channel secrets come from a file or an
//! environment variable named in the document, never from the document itself.

use crate::reference::{DEFAULT_SERVER, TOKEN_ENV, UploadError, network_error, server_url, token};
use anyhow::Context as _;
use custos_core::alerts::AlertRule;
use custos_core::history::{Change, ChangeKind, diff};
use custos_core::{ModelSpec, MonitoringConfig};
use custos_server::alerting::ChannelSpec;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Most files read from the directory.
const MAX_FILES: usize = 1_000;
/// Largest file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Arguments of `custos apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The directory of YAML files (`*.yaml`, `*.yml`; read in name order).
    #[arg(short = 'f', long = "file", value_name = "DIR")]
    pub dir: PathBuf,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Why, recorded with every configuration version made (default "custos apply").
    #[arg(long)]
    pub reason: Option<String>,
    /// The Custos server's base URL.
    #[arg(long, visible_alias = "url", env = "CUSTOS_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// A file holding the API token (else the CUSTOS_TOKEN environment variable is used).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// One resource of a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Resource {
    /// A model's registration (created when absent; registrations cannot change).
    Model { spec: Value },
    /// A model's monitoring configuration, except its alert rules (kept as they are).
    Monitoring { model: String, config: Value },
    /// A model's alert rules.
    AlertRules { model: String, rules: Vec<Value> },
    /// The complete role bindings of an existing user (users and their passwords are created
    /// by an administrator, not from files).
    UserRoles {
        user: String,
        roles: Vec<RoleBinding>,
    },
    /// A notification channel; the secret from a file or an environment variable.
    Channel {
        name: String,
        spec: Value,
        #[serde(default)]
        secret_file: Option<PathBuf>,
        #[serde(default)]
        secret_env: Option<String>,
    },
}

/// One role binding of a user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBinding {
    role: String,
    model: String,
}

/// A file holds one resource or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileBody {
    Many(Vec<Resource>),
    One(Resource),
}

struct Loaded {
    file: PathBuf,
    resource: Resource,
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<Loaded>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.len() > MAX_FILES {
        anyhow::bail!("{}: more than {MAX_FILES} files", dir.display());
    }
    if files.is_empty() {
        anyhow::bail!("{}: no .yaml or .yml files", dir.display());
    }
    let mut out = Vec::new();
    for file in files {
        if std::fs::metadata(&file)?.len() > MAX_FILE_BYTES {
            anyhow::bail!("{}: larger than {MAX_FILE_BYTES} bytes", file.display());
        }
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        let body: FileBody = serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let resources = match body {
            FileBody::Many(v) => v,
            FileBody::One(r) => vec![r],
        };
        out.extend(resources.into_iter().map(|resource| Loaded {
            file: file.clone(),
            resource,
        }));
    }
    // Models first (the others refer to them), then channels, configurations and rules.
    out.sort_by_key(|l| match l.resource {
        Resource::Model { .. } => 0,
        Resource::Channel { .. } => 1,
        Resource::Monitoring { .. } => 2,
        Resource::AlertRules { .. } => 3,
        Resource::UserRoles { .. } => 4,
    });
    Ok(out)
}

/// The client side of one server.
struct Api {
    client: reqwest::Client,
    base: reqwest::Url,
    token: String,
}

/// An answer: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .context("the path does not fit in a URL")?;
        let mut request = self
            .client
            .request(method, url.clone())
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| UploadError(network_error(&url, &e)))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        })
    }
}

fn refusal(answer: &Answer) -> String {
    let message = answer
        .body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    format!("HTTP {}: {message}", answer.status)
}

fn normalise<T: serde::de::DeserializeOwned + serde::Serialize>(
    what: &str,
    value: Value,
) -> anyhow::Result<Value> {
    let typed: T = serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    Ok(serde_json::to_value(typed)?)
}

fn field(body: &Value, name: &str) -> Value {
    body.get(name).cloned().unwrap_or(Value::Null)
}

/// A value in a diff line, whole: a dry run must show exactly what would be sent.
fn short(value: &Option<Value>) -> String {
    value.as_ref().map(Value::to_string).unwrap_or_default()
}

fn change_lines(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c.kind {
            ChangeKind::Added => format!("    + {}: {}", c.path, short(&c.after)),
            ChangeKind::Removed => format!("    - {}", c.path),
            ChangeKind::Changed => {
                format!(
                    "    ~ {}: {} → {}",
                    c.path,
                    short(&c.before),
                    short(&c.after)
                )
            }
        })
        .collect()
}

/// What one resource would do.
struct Plan {
    title: String,
    /// `None`: nothing to do.
    request: Option<(reqwest::Method, String, Value)>,
    lines: Vec<String>,
}

fn secret_of(
    loaded: &Loaded,
    secret_file: &Option<PathBuf>,
    secret_env: &Option<String>,
) -> anyhow::Result<String> {
    match (secret_file, secret_env) {
        (Some(path), None) => {
            let path = if path.is_relative() {
                loaded
                    .file
                    .parent()
                    .map(|d| d.join(path))
                    .unwrap_or_else(|| path.clone())
            } else {
                path.clone()
            };
            let text = custos_server::config::read_secret_file(&path, "secret_file")
                .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.file.display()))?;
            Ok(text.trim().to_owned())
        }
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            anyhow::anyhow!(
                "{}: environment variable {var} is not set",
                loaded.file.display()
            )
        }),
        _ => anyhow::bail!(
            "{}: a channel needs exactly one of secret_file and secret_env",
            loaded.file.display()
        ),
    }
}

async fn plan(api: &Api, loaded: &Loaded, reason: &str) -> anyhow::Result<Plan> {
    let where_ = loaded.file.display();
    let reason_query = url_encode(reason);
    match &loaded.resource {
        Resource::Model { spec } => {
            let desired = normalise::<ModelSpec>(&format!("{where_}: model"), spec.clone())?;
            let name = desired
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let current = api
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/models/{name}"),
                    None,
                )
                .await?;
            let title = format!("model {name}");
            match current.status {
                404 => Ok(Plan {
                    title,
                    lines: vec!["    + registered (new)".into()],
                    request: Some((reqwest::Method::POST, "/api/v1/models".into(), desired)),
                }),
                200 => {
                    let now =
                        normalise::<ModelSpec>("the server's model", field(&current.body, "spec"))?;
                    let changes = diff(&now, &desired)?;
                    if changes.is_empty() {
                        Ok(Plan {
                            title,
                            lines: vec![],
                            request: None,
                        })
                    } else {
                        let mut lines = change_lines(&changes);
                        lines.push(
                            "    ! a registration cannot change: register a new model name".into(),
                        );
                        anyhow::bail!(
                            "{where_}: model {name} differs from its registration:\n{}",
                            lines.join("\n")
                        )
                    }
                }
                _ => anyhow::bail!("{where_}: cannot read model {name}: {}", refusal(&current)),
            }
        }
        Resource::Monitoring { model, config } => {
            let path = format!("/api/v1/models/{model}/monitoring");
            let current = api.call(reqwest::Method::GET, &path, None).await?;
            if current.status != 200 {
                anyhow::bail!(
                    "{where_}: cannot read the monitoring of {model}: {}",
                    refusal(&current)
                );
            }
            let now = normalise::<MonitoringConfig>(
                "the server's configuration",
                field(&current.body, "config"),
            )?;
            let mut desired: MonitoringConfig = serde_json::from_value(config.clone())
                .map_err(|e| anyhow::anyhow!("{where_}: monitoring of {model}: {e}"))?;
            if !desired.alerts.is_empty() {
                anyhow::bail!(
                    "{where_}: monitoring of {model}: put alert rules in a kind: alert_rules document"
                );
            }
            let now_typed: MonitoringConfig = serde_json::from_value(now.clone())?;
            desired.alerts = now_typed.alerts;
            let desired = serde_json::to_value(desired)?;
            let changes = diff(&now, &desired)?;
            Ok(Plan {
                title: format!("monitoring of {model}"),
                lines: change_lines(&changes),
                request: (!changes.is_empty()).then(|| {
                    (
                        reqwest::Method::PUT,
                        format!("{path}?reason={reason_query}"),
                        desired,
                    )
                }),
            })
        }
        Resource::AlertRules { model, rules } => {
            let path = format!("/api/v1/models/{model}/alerts");
            let desired = normalise::<Vec<AlertRule>>(
                &format!("{where_}: alert rules of {model}"),
                Value::Array(rules.clone()),
            )?;
            let current = api.call(reqwest::Method::GET, &path, None).await?;
            if current.status != 200 {
                anyhow::bail!(
                    "{where_}: cannot read the alert rules of {model}: {}",
                    refusal(&current)
                );
            }
            let now =
                normalise::<Vec<AlertRule>>("the server's rules", field(&current.body, "rules"))?;
            let (now, desired) = (json!({ "rules": now }), json!({ "rules": desired }));
            let changes = diff(&now, &desired)?;
            Ok(Plan {
                title: format!("alert rules of {model}"),
                lines: change_lines(&changes),
                request: (!changes.is_empty()).then(|| {
                    (
                        reqwest::Method::PUT,
                        format!("{path}?reason={reason_query}"),
                        desired,
                    )
                }),
            })
        }
        Resource::UserRoles { user, roles } => {
            let current = api
                .call(reqwest::Method::GET, "/api/v1/users", None)
                .await?;
            if current.status != 200 {
                anyhow::bail!("{where_}: cannot read the users: {}", refusal(&current));
            }
            let found = current
                .body
                .get("users")
                .and_then(Value::as_array)
                .and_then(|all| all.iter().find(|u| u.get("name") == Some(&json!(user))))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{where_}: there is no user {user}"))?;
            let id = found
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut now: Vec<RoleBinding> = serde_json::from_value(field(&found, "roles"))
                .map_err(|e| anyhow::anyhow!("the server's roles of {user}: {e}"))?;
            let mut desired = roles.clone();
            desired.sort();
            desired.dedup();
            // Bindings are a set: compared as `role@model` strings, which the diff treats as a
            // set (order means nothing; each added or removed binding is one line).
            let as_set = |b: &[RoleBinding]| -> Value {
                json!({ "roles": b.iter().map(|b| format!("{}@{}", b.role, b.model)).collect::<Vec<_>>() })
            };
            now.sort();
            let changes = diff(&as_set(&now), &as_set(&desired))?;
            Ok(Plan {
                title: format!("roles of user {user}"),
                lines: change_lines(&changes),
                request: (!changes.is_empty()).then(|| {
                    (
                        reqwest::Method::PUT,
                        format!("/api/v1/users/{id}/roles"),
                        json!({ "roles": desired }),
                    )
                }),
            })
        }
        Resource::Channel {
            name,
            spec,
            secret_file,
            secret_env,
        } => {
            let desired =
                normalise::<ChannelSpec>(&format!("{where_}: channel {name}"), spec.clone())?;
            let secret = secret_of(loaded, secret_file, secret_env)?;
            let current = api
                .call(reqwest::Method::GET, "/api/v1/alert-channels", None)
                .await?;
            if current.status != 200 {
                anyhow::bail!("{where_}: cannot read the channels: {}", refusal(&current));
            }
            let existing = current
                .body
                .get("channels")
                .unwrap_or(&Value::Null)
                .as_array()
                .and_then(|all| all.iter().find(|c| c["name"] == name.as_str()).cloned());
            let mut body = desired.clone();
            if let Some(o) = body.as_object_mut() {
                o.insert("secret".into(), Value::String(secret));
            }
            let path = format!("/api/v1/alert-channels/{name}");
            let title = format!("channel {name}");
            match existing {
                None => Ok(Plan {
                    title,
                    lines: vec!["    + created (new; secret from its source)".into()],
                    request: Some((reqwest::Method::PUT, path, body)),
                }),
                Some(mut now) => {
                    if let Some(o) = now.as_object_mut() {
                        for k in ["name", "has_secret", "updated_by", "updated_at"] {
                            o.remove(k);
                        }
                    }
                    let now = normalise::<ChannelSpec>("the server's channel", now)?;
                    let changes = diff(&now, &desired)?;
                    Ok(Plan {
                        title,
                        lines: change_lines(&changes),
                        request: (!changes.is_empty()).then_some((
                            reqwest::Method::PUT,
                            path,
                            body,
                        )),
                    })
                }
            }
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `custos apply`. Exit 1 ([`UploadError`]) when anything was refused.
pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let base = server_url(&args.server)?;
    let token = token(args.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
    let resources = read_dir(&args.dir)?;
    let api = Api {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?,
        base,
        token,
    };
    let reason = args
        .reason
        .clone()
        .unwrap_or_else(|| "custos apply".to_owned());
    let mut failures = Vec::new();
    let (mut changed, mut unchanged) = (0, 0);
    for loaded in &resources {
        let plan = match plan(&api, loaded, &reason).await {
            Ok(p) => p,
            Err(e) => {
                if e.is::<UploadError>() {
                    return Err(e);
                }
                println!("! {e}");
                failures.push(e.to_string());
                continue;
            }
        };
        let Some((method, path, body)) = plan.request else {
            println!("= {}: no change", plan.title);
            unchanged += 1;
            continue;
        };
        changed += 1;
        println!("~ {}", plan.title);
        for line in &plan.lines {
            println!("{line}");
        }
        if args.dry_run {
            continue;
        }
        let answer = api.call(method, &path, Some(&body)).await?;
        match answer.status {
            200 | 201 | 204 => {
                let version = answer.body.get("version").and_then(Value::as_i64);
                match version {
                    Some(v) => println!("  applied: version {v}"),
                    None => println!("  applied"),
                }
            }
            202 => println!(
                "  proposed: it weakens monitoring and waits for a second person (change {})",
                answer
                    .body
                    .get("id")
                    .map(Value::to_string)
                    .unwrap_or_default()
            ),
            _ => {
                let why = format!("{}: {}", plan.title, refusal(&answer));
                println!("  refused: {}", refusal(&answer));
                failures.push(why);
            }
        }
    }
    println!(
        "{} resources: {changed} {}, {unchanged} unchanged, {} refused",
        resources.len(),
        if args.dry_run {
            "would change"
        } else {
            "changed"
        },
        failures.len()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(UploadError(format!("{} resources refused", failures.len())).into())
    }
}
