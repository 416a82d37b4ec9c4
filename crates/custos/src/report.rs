//! `custos report`: fetches a model's drift, data-quality and performance report from a Custos
//! server and writes it as one self-contained HTML file (or the JSON).
//!
//! Owns the client side only; the server computes and renders the report. Token handling and
//! the refusal to send a token in clear over the network are shared with `custos reference`.

use crate::reference::{DEFAULT_SERVER, TOKEN_ENV, UploadError, network_error, server_url, token};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use std::path::PathBuf;

/// Arguments of `custos report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The model.
    #[arg(long)]
    pub model: String,
    /// Where to write the report (`-` for standard output).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// The Custos server's base URL.
    #[arg(long, visible_alias = "url", env = "CUSTOS_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// A file holding the API token (else the CUSTOS_TOKEN environment variable is used).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Start of the current window (RFC 3339); default 24 hours before --to.
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// End of the current window (RFC 3339); default now.
    #[arg(long)]
    pub to: Option<DateTime<Utc>>,
    /// An uploaded reference set's id; default the newest.
    #[arg(long)]
    pub reference: Option<String>,
    /// Chunks of the current window: hour, day, week or rows:N.
    #[arg(long)]
    pub chunk: Option<String>,
    /// `html` (default) or `json`.
    #[arg(long, default_value = "html")]
    pub format: String,
}

/// Runs `custos report`. A refusal or an unreachable server is an [`UploadError`] (exit 1).
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    if !matches!(args.format.as_str(), "html" | "json") {
        anyhow::bail!("--format must be html or json");
    }
    let server = server_url(&args.server)?;
    let token = token(args.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
    let to = args.to.unwrap_or_else(Utc::now);
    let from = args.from.unwrap_or(to - Duration::hours(24));
    let mut url = server
        .join(&format!("api/v1/models/{}/report", args.model))
        .context("the model name does not fit in a URL")?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("current_start", &from.to_rfc3339());
        query.append_pair("current_end", &to.to_rfc3339());
        query.append_pair("format", &args.format);
        if let Some(reference) = &args.reference {
            query.append_pair("reference", reference);
        }
        if let Some(chunk) = &args.chunk {
            query.append_pair("chunk", chunk);
        }
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client")?;
    let response = client
        .get(url.clone())
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| UploadError(network_error(&url, &e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| UploadError(network_error(&url, &e)))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        return Err(UploadError(format!(
            "the server refused the report (HTTP {}): {message}",
            status.as_u16()
        ))
        .into());
    }
    if args.out.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout()
            .write_all(&body)
            .context("cannot write to standard output")?;
    } else {
        std::fs::write(&args.out, &body)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        eprintln!(
            "report for {} ({} – {}) written to {}",
            args.model,
            from.format("%Y-%m-%d %H:%M"),
            to.format("%Y-%m-%d %H:%M"),
            args.out.display()
        );
    }
    Ok(())
}
