//! `custos reference upload`: sends a reference data set (a CSV, NDJSON or Parquet file) to a
//! Custos server, streaming it from disk with a progress bar.
//!
//! Owns the client side only: where the token comes from, the refusal to send it in clear over
//! the network, the request, and how the server's answer is shown. The file is deliberately not
//! parsed here: the server validates it against the model's schema and masking rules, and a
//! second, local parser could only disagree with it.

use anyhow::{Context, bail};
use clap::Subcommand;
use custos_proto::RowErrorBody;
use custos_tabular::TabularFormat;
use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Url;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The server when neither `--server` nor `CUSTOS_SERVER` says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8750";

/// Where the token comes from when no `--token-file` is given.
pub const TOKEN_ENV: &str = "CUSTOS_TOKEN";

/// How many of the server's row errors are printed.
const MAX_ROW_ERRORS_SHOWN: usize = 20;

/// Reference data commands.
#[derive(Debug, Subcommand)]
pub enum ReferenceCommand {
    /// Upload a reference data set (CSV, NDJSON or Parquet) for a model.
    ///
    /// The token comes from --token-file or the CUSTOS_TOKEN environment variable, never from the
    /// command line (where other users could read it in the process list).
    ///
    /// Exit status: 0 uploaded; 1 the server refused the file or could not be reached; 2 the
    /// command line, the token or the local file is wrong.
    Upload(UploadArgs),
}

/// Arguments of `custos reference upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The model the reference data belongs to.
    #[arg(long)]
    pub model: String,
    /// The file: .csv, .ndjson/.jsonl or .parquet (or say which with --format).
    pub file: PathBuf,
    /// The Custos server's base URL.
    #[arg(long, visible_alias = "url", env = "CUSTOS_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// A file holding the API token (else the CUSTOS_TOKEN environment variable is used).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The column that holds the true label, if the reference data has one.
    #[arg(long, value_name = "NAME")]
    pub label_field: Option<String>,
    /// The file's format, when its extension does not say.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<TabularFormat>,
    /// A name for this reference data set.
    #[arg(long)]
    pub name: Option<String>,
}

fn parse_format(s: &str) -> Result<TabularFormat, String> {
    s.parse()
        .map_err(|e: custos_tabular::UnknownFormat| e.to_string())
}

/// A failure after the request was attempted: the server refused or could not be reached.
/// The message is complete (it may span lines, one per row error). `main` exits 1 for these and
/// 2 for every other error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UploadError(pub(crate) String);

/// Runs a `reference` subcommand.
pub async fn run(command: ReferenceCommand) -> anyhow::Result<()> {
    match command {
        ReferenceCommand::Upload(args) => {
            let env_token = std::env::var(TOKEN_ENV).ok();
            upload(args, env_token).await
        }
    }
}

/// Everything the request needs, checked before anything is sent.
#[derive(Debug)]
struct Plan {
    url: Url,
    token: String,
    format: TabularFormat,
    file: PathBuf,
    size: u64,
}

fn plan(args: &UploadArgs, env_token: Option<String>) -> anyhow::Result<Plan> {
    let server = server_url(&args.server)?;
    let token = token(args.token_file.as_deref(), env_token)?;
    let format = match args.format {
        Some(f) => f,
        None => TabularFormat::from_path(&args.file).with_context(|| {
            format!(
                "cannot tell the format of {} from its extension; pass --format csv, ndjson or parquet",
                args.file.display()
            )
        })?,
    };
    let size = check_file(&args.file)?;
    let url = upload_url(
        &server,
        &args.model,
        args.label_field.as_deref(),
        args.name.as_deref(),
    )?;
    Ok(Plan {
        url,
        token,
        format,
        file: args.file.clone(),
        size,
    })
}

async fn upload(args: UploadArgs, env_token: Option<String>) -> anyhow::Result<()> {
    let plan = plan(&args, env_token)?;
    let file = tokio::fs::File::open(&plan.file)
        .await
        .with_context(|| format!("cannot open {}", plan.file.display()))?;

    let bar = progress_bar(plan.size);
    let counter = bar.clone();
    let total = plan.size;
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    let body = chunks.inspect_ok(move |chunk| {
        counter.inc(chunk.len() as u64);
        if counter.position() >= total {
            counter.set_message("sent; the server is checking the file");
        }
    });

    let mut client = reqwest::Client::builder()
        .user_agent(concat!("custos/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // A redirect could only be followed by sending the file (and the token) again, maybe to
        // another host: report it instead.
        .redirect(reqwest::redirect::Policy::none());
    if plan.url.scheme() == "http" {
        // Plain HTTP only goes to a loopback address (checked above); a proxy from the
        // environment would carry the token over the network in clear.
        client = client.no_proxy();
    }
    let client = client.build().context("cannot set up the HTTP client")?;

    let response = client
        .post(plan.url.clone())
        .bearer_auth(&plan.token)
        .header(CONTENT_TYPE, plan.format.content_type())
        .header(CONTENT_LENGTH, plan.size)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    bar.finish_and_clear();
    let response = response.map_err(|e| UploadError(network_error(&plan.url, &e)))?;

    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response
        .text()
        .await
        .map_err(|e| UploadError(network_error(&plan.url, &e)))?;
    if status.is_success() {
        println!("{}", success_summary(&text, status.as_u16()));
        Ok(())
    } else if status.is_redirection() {
        Err(UploadError(format!(
            "the server answered HTTP {status} (a redirect{}); pass the final address with --server",
            location.map(|l| format!(" to {l}")).unwrap_or_default()
        ))
        .into())
    } else {
        Err(UploadError(failure_report(&text, status.as_u16())).into())
    }
}

/// Parses and checks `--server`: http or https, no credentials in it, and plain http only to a
/// loopback address, because the token would otherwise cross the network in clear.
pub(crate) fn server_url(server: &str) -> anyhow::Result<Url> {
    let url = Url::parse(server).with_context(|| format!("--server {server} is not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback(&url) {
                bail!(
                    "refusing to send the API token over plain http to {}: use https://, or \
                     http:// only to a loopback address (127.0.0.1, ::1, localhost)",
                    url.host_str().unwrap_or("?")
                );
            }
        }
        other => bail!("--server must be an http:// or https:// URL, not {other}://"),
    }
    if url.host().is_none() {
        bail!("--server {server} has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("--server must not hold credentials; use --token-file or CUSTOS_TOKEN");
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed ("[::1]").
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The token: from `token_file` if given, else from the environment. Error messages never
/// include it.
pub(crate) fn token(
    token_file: Option<&Path>,
    env_token: Option<String>,
) -> anyhow::Result<String> {
    let (token, source) = match token_file {
        Some(path) => {
            warn_if_shared(path);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            (text, format!("the token file {}", path.display()))
        }
        None => match env_token {
            Some(t) => (t, TOKEN_ENV.to_owned()),
            None => bail!("no API token: pass --token-file PATH or set {TOKEN_ENV}"),
        },
    };
    let token = token.trim();
    if token.is_empty() {
        bail!("{source} is empty");
    }
    // Anything but visible ASCII would be refused as a header value anyway (or worse, split it).
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("{source} does not hold a token (unexpected spaces or control characters)");
    }
    Ok(token.to_owned())
}

/// A token file others can read is a leaked token; say so, but do not refuse (the user may be
/// on a single-user machine or a file system without modes).
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: the token file {} can be read by other users (mode {mode:o}); \
                     chmod 600 it",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The local sanity check: a readable, non-empty regular file. Returns its size.
fn check_file(path: &Path) -> anyhow::Result<u64> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    if meta.len() == 0 {
        bail!("{} is empty", path.display());
    }
    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(meta.len())
}

/// `{server}/api/v1/models/{model}/reference?label_field=…&name=…`, keeping any path prefix the
/// server URL has (a reverse proxy mount point) and escaping the model name as one path segment.
fn upload_url(
    server: &Url,
    model: &str,
    label_field: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<Url> {
    if model.trim().is_empty() {
        bail!("--model must not be empty");
    }
    let mut url = server.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--server cannot be a base URL"))?
        .pop_if_empty()
        .extend(["api", "v1", "models", model, "reference"]);
    if label_field.is_some() || name.is_some() {
        let mut query = url.query_pairs_mut();
        if let Some(label_field) = label_field {
            query.append_pair("label_field", label_field);
        }
        if let Some(name) = name {
            query.append_pair("name", name);
        }
    }
    Ok(url)
}

fn progress_bar(size: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    // The template is a constant; should it ever fail to parse, the default style is fine.
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40.cyan/blue} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub(crate) fn network_error(url: &Url, e: &reqwest::Error) -> String {
    // The source chain says why (refused, reset, timed out); the URL holds no secret.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    let host = url.host_str().unwrap_or("?");
    let port = url
        .port_or_known_default()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!("cannot reach the Custos server at {host}{port}: {reason}")
}

/// One line from the server's 2xx answer: the known fields first, in a fixed order, then any
/// others.
fn success_summary(body: &str, status: u16) -> String {
    const KNOWN: [&str; 7] = [
        "id",
        "model",
        "rows",
        "sha256",
        "label_field",
        "uploaded_at",
        "uploaded_by",
    ];
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(body) else {
        return format!("reference uploaded (HTTP {status})");
    };
    let mut parts = Vec::new();
    let known = KNOWN.iter().filter_map(|k| fields.get_key_value(*k));
    let others = fields.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str()));
    for (key, value) in known.chain(others) {
        let shown = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        parts.push(format!("{key}={shown}"));
    }
    if parts.is_empty() {
        format!("reference uploaded (HTTP {status})")
    } else {
        format!("reference uploaded: {}", parts.join(" "))
    }
}

/// The message for a refused upload: the server's message and code, then up to
/// [`MAX_ROW_ERRORS_SHOWN`] row errors, one per line.
fn failure_report(body: &str, status: u16) -> String {
    // Read leniently rather than as `ErrorBody`, so that an error code added to a newer server
    // still shows its message here.
    let parsed = serde_json::from_str::<Value>(body).ok();
    let fields = parsed.as_ref().and_then(Value::as_object);
    let Some((fields, message)) =
        fields.and_then(|f| Some((f, f.get("message").and_then(Value::as_str)?)))
    else {
        let text: String = body.trim().chars().take(300).collect();
        return if text.is_empty() {
            format!("the server refused the upload (HTTP {status})")
        } else {
            format!("the server refused the upload (HTTP {status}): {text}")
        };
    };
    let code = fields
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let mut out = format!("the server refused the upload (HTTP {status}, {code}): {message}");
    if let Some(id) = fields.get("request_id").and_then(Value::as_str) {
        out.push_str(&format!(" [request id {id}]"));
    }
    let rows: Vec<RowErrorBody> = fields
        .get("rows")
        .and_then(|rows| serde_json::from_value(rows.clone()).ok())
        .unwrap_or_default();
    for row in rows.iter().take(MAX_ROW_ERRORS_SHOWN) {
        // The wire index is zero-based (see `RowErrorBody`); people count data rows from 1.
        out.push_str(&format!("\n  row {}", row.row.saturating_add(1)));
        if let Some(field) = &row.field {
            out.push_str(&format!(", field '{field}'"));
        }
        out.push_str(&format!(": {}", row.reason));
    }
    let total = fields
        .get("row_error_count")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(rows.len())
        .max(rows.len());
    let shown = rows.len().min(MAX_ROW_ERRORS_SHOWN);
    if total > shown {
        out.push_str(&format!("\n  … and {} more row errors", total - shown));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ReferenceCommand,
    }

    fn parse(args: &[&str]) -> Result<UploadArgs, clap::Error> {
        let mut full = vec!["custos-reference"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).map(|cli| match cli.command {
            ReferenceCommand::Upload(args) => args,
        })
    }

    fn temp_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(contents)
            .unwrap();
        (dir, path)
    }

    #[test]
    fn arguments() {
        let args = parse(&[
            "upload",
            "--model",
            "fraud-v3",
            "ref.parquet",
            "--label-field",
            "y_true",
            "--format",
            "CSV",
            "--name",
            "q1",
        ])
        .unwrap();
        assert_eq!(args.model, "fraud-v3");
        assert_eq!(args.file, PathBuf::from("ref.parquet"));
        assert_eq!(args.label_field.as_deref(), Some("y_true"));
        assert_eq!(args.format, Some(TabularFormat::Csv));
        assert_eq!(args.name.as_deref(), Some("q1"));
        assert!(args.token_file.is_none());
        if std::env::var_os("CUSTOS_SERVER").is_none() {
            assert_eq!(args.server, DEFAULT_SERVER);
        }

        // The model and the file are required; the format must be known.
        assert!(parse(&["upload", "ref.csv"]).is_err());
        assert!(parse(&["upload", "--model", "m"]).is_err());
        assert!(parse(&["upload", "--model", "m", "x", "--format", "xlsx"]).is_err());
        // There is no way to put the token itself on the command line.
        assert!(parse(&["upload", "--model", "m", "ref.csv", "--token", "cst_x"]).is_err());
    }

    #[test]
    fn token_from_file_then_environment() {
        let (_dir, path) = temp_file("token", b"  cst_from_file\n");
        assert_eq!(
            token(Some(&path), Some("cst_env".into())).unwrap(),
            "cst_from_file"
        );
        assert_eq!(token(None, Some("cst_env\n".into())).unwrap(), "cst_env");
        let err = token(None, None).unwrap_err().to_string();
        assert!(
            err.contains("--token-file") && err.contains(TOKEN_ENV),
            "{err}"
        );

        let (_dir, empty) = temp_file("empty", b"\n");
        assert!(
            token(Some(&empty), None)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        let (_dir, two) = temp_file("two", b"cst_secret1\ncst_secret2\n");
        let err = token(Some(&two), None).unwrap_err().to_string();
        assert!(!err.contains("cst_secret"), "{err}");
        let err = token(None, Some("cst_secret with space".into()))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("cst_secret"), "{err}");
        let missing = PathBuf::from("/nonexistent/custos/token");
        assert!(token(Some(&missing), Some("cst_env".into())).is_err());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8750",
            "http://127.1.2.3",
            "http://localhost:8750/",
            "http://LOCALHOST",
            "http://[::1]:8750",
            "https://custos.example.com",
            "https://10.0.0.5:8443/custos/",
        ] {
            assert!(server_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.5:8750",
            "http://custos.example.com",
            "http://0.0.0.0:8750",
            "http://[::]:8750",
            "http://localhost.example.com",
        ] {
            let err = server_url(refused).unwrap_err().to_string();
            assert!(
                err.contains("refusing to send the API token"),
                "{refused}: {err}"
            );
        }
        for bad in [
            "ftp://127.0.0.1",
            "127.0.0.1:8750",
            "not a url",
            "http://user:pw@127.0.0.1",
            "file:///tmp/x",
        ] {
            assert!(server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upload_urls() {
        let base = server_url("http://127.0.0.1:8750").unwrap();
        assert_eq!(
            upload_url(&base, "fraud-v3", None, None).unwrap().as_str(),
            "http://127.0.0.1:8750/api/v1/models/fraud-v3/reference"
        );
        assert_eq!(
            upload_url(&base, "m", Some("y true"), Some("q1&2"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8750/api/v1/models/m/reference?label_field=y+true&name=q1%262"
        );
        let prefixed = server_url("https://host/custos/?x=1").unwrap();
        assert_eq!(
            upload_url(&prefixed, "a/b", None, None).unwrap().as_str(),
            "https://host/custos/api/v1/models/a%2Fb/reference"
        );
        assert!(upload_url(&base, " ", None, None).is_err());
    }

    #[test]
    fn formats_and_content_types_from_the_file_or_the_flag() {
        let (_dir, csv) = temp_file("ref.CSV", b"a\n1\n");
        let args = |file: &Path, format: Option<TabularFormat>| UploadArgs {
            model: "m".into(),
            file: file.to_owned(),
            server: DEFAULT_SERVER.into(),
            token_file: None,
            label_field: None,
            format,
            name: None,
        };
        let plan_for = |file: &Path, format| plan(&args(file, format), Some("cst_t".into()));
        let p = plan_for(&csv, None).unwrap();
        assert_eq!(p.format.content_type(), "text/csv");
        assert_eq!(p.size, 4);
        let p = plan_for(&csv, Some(TabularFormat::Parquet)).unwrap();
        assert_eq!(p.format.content_type(), "application/vnd.apache.parquet");
        let (_dir, jsonl) = temp_file("ref.jsonl", b"{}\n");
        assert_eq!(
            plan_for(&jsonl, None).unwrap().format.content_type(),
            "application/x-ndjson"
        );

        let (_dir, unknown) = temp_file("ref.xlsx", b"x");
        let err = plan_for(&unknown, None).unwrap_err().to_string();
        assert!(err.contains("--format"), "{err}");
        assert!(plan_for(&unknown, Some(TabularFormat::Csv)).is_ok());

        let (_dir, empty) = temp_file("empty.csv", b"");
        assert!(
            plan_for(&empty, None)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(
            plan_for(&dir.path().join("missing.csv"), None)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
        let sub = dir.path().join("sub.csv");
        std::fs::create_dir(&sub).unwrap();
        assert!(
            plan_for(&sub, None)
                .unwrap_err()
                .to_string()
                .contains("not a file")
        );
    }

    #[test]
    fn success_summaries() {
        let body = r#"{"uploaded_by":"alice","id":7,"model":"m","rows":60000,
            "sha256":"ab12","label_field":null,"uploaded_at":"2026-11-26T10:00:00Z","extra":true}"#;
        assert_eq!(
            success_summary(body, 201),
            "reference uploaded: id=7 model=m rows=60000 sha256=ab12 \
             uploaded_at=2026-11-26T10:00:00Z uploaded_by=alice extra=true"
        );
        assert_eq!(success_summary("", 201), "reference uploaded (HTTP 201)");
    }

    #[test]
    fn failure_reports_show_the_message_and_at_most_twenty_rows() {
        let rows: Vec<Value> = (0..25)
            .map(
                |i| serde_json::json!({"row": i, "field": "amount", "reason": "expected a number"}),
            )
            .collect();
        let body = serde_json::json!({
            "code": "invalid_rows",
            "message": "3 rows are invalid",
            "request_id": "r1",
            "rows": rows,
            "row_error_count": 40,
        })
        .to_string();
        let report = failure_report(&body, 422);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0],
            "the server refused the upload (HTTP 422, invalid_rows): 3 rows are invalid [request id r1]"
        );
        assert_eq!(lines[1], "  row 1, field 'amount': expected a number");
        assert_eq!(lines.len(), 1 + 20 + 1);
        assert_eq!(lines[21], "  … and 20 more row errors");

        assert_eq!(
            failure_report("<html>bad gateway</html>", 502),
            "the server refused the upload (HTTP 502): <html>bad gateway</html>"
        );
        assert_eq!(
            failure_report("", 500),
            "the server refused the upload (HTTP 500)"
        );
    }
}
