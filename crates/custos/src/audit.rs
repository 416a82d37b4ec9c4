//! `custos audit …`: export the tamper-evident log, verify it offline (from an export, a data
//! directory or a database), compute the keyed hash under which a known value is recorded, and
//! the local key operations (rotate the checkpoint signing key, sign a checkpoint now).
//!
//! Verification needs no secret: only the entries, the checkpoints and the public keys. An
//! auditor who keeps their own copy of the public keys (`--trusted-key`) and of an earlier
//! checkpoint (`--trusted-checkpoint`) detects a rewritten or cut log even when whoever changed
//! it could also change the stored keys.

use crate::reference::{DEFAULT_SERVER, TOKEN_ENV, network_error, server_url, token};
use anyhow::{Context, bail};
use custos_core::{ActorType, SystemClock};
use custos_crypto::auditexport::verify_export;
use custos_crypto::auditlog::{Problem, Verified};
use custos_crypto::checkpoint::{Checkpoint, NoteVerifier};
use custos_server::config::{self, Config, Secret};
use custos_store::Store;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Verification found the log damaged (exit status 1, like a failed request).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerificationFailed(String);

/// `custos audit`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Write the whole log (entries, checkpoints, public keys) as JSON lines.
    Export(ExportArgs),
    /// Verify the log: every entry, every checkpoint signature and root, nothing cut.
    Verify(VerifyArgs),
    /// Print the keyed hash under which audit records mention a value (a user name, a token).
    Hash(HashArgs),
    /// Start signing checkpoints with a new key (the old one's checkpoints keep verifying).
    RotateKey(LocalArgs),
    /// Sign a checkpoint over every entry now.
    Checkpoint(LocalArgs),
}

/// Where a local command finds the store and keys.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Data directory of the server. Default ./custos-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML configuration file of the server.
    #[arg(long)]
    config: Option<PathBuf>,
    /// postgres://… when the server uses PostgreSQL.
    #[arg(long)]
    database_url: Option<String>,
}

/// Read the log from a store directly (no server needed) or from a server.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    #[command(flatten)]
    local: LocalArgs,
    /// Read through this server's API instead (needs a token with audit:read).
    #[arg(long)]
    server: Option<String>,
    /// A file holding the API token (else the CUSTOS_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// `custos audit export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Output file (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// `custos audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// An export file to verify offline.
    #[arg(long)]
    export: Option<PathBuf>,
    #[command(flatten)]
    local: LocalArgs,
    /// A public key to trust (C2SP verifier key from `GET /api/v1/audit/keys`); repeatable.
    /// With any, checkpoints signed by other keys fail.
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<String>,
    /// A file of trusted public keys, one per line.
    #[arg(long)]
    trusted_keys_file: Option<PathBuf>,
    /// A signed checkpoint kept from earlier (its note text); the log must reproduce it.
    #[arg(long)]
    trusted_checkpoint: Vec<PathBuf>,
}

/// `custos audit hash`.
#[derive(Debug, clap::Args)]
pub struct HashArgs {
    /// The value; `-` (the default) reads it from standard input, which keeps it out of the
    /// process list and shell history.
    #[arg(default_value = "-")]
    value: String,
    /// The server to ask.
    #[arg(long, visible_alias = "url", env = "CUSTOS_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// A file holding the API token (else the CUSTOS_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

pub(crate) fn local_config(args: &LocalArgs) -> anyhow::Result<Config> {
    let mut config = config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &args.data_dir {
        config.server.data_dir = dir.clone();
    }
    if let Some(url) = &args.database_url {
        config.store.database_url = Some(Secret::new(url.clone()));
    }
    Ok(config)
}

pub(crate) async fn open_store(args: &LocalArgs) -> anyhow::Result<Store> {
    let config = local_config(args)?;
    if config.store.database_url.is_none() {
        let db = config.server.data_dir.join("custos.db");
        if !db.exists() {
            bail!("no Custos database at {}", db.display());
        }
    }
    let url = custos_server::database_url(&config)?;
    Ok(Store::open(&url).await?)
}

/// Runs an audit command.
pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Export(args) => export(args).await,
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Hash(args) => hash(args).await,
        AuditCommand::RotateKey(args) => {
            let app =
                custos_server::App::build(local_config(&args)?, Arc::new(SystemClock)).await?;
            let row = custos_server::audit_log::rotate_signer(
                &app.state,
                "local-admin",
                ActorType::System,
            )
            .await?;
            custos_server::audit_log::checkpoint_once(&app.state, true).await?;
            app.state.store.close().await;
            println!(
                "checkpoints are now signed with key version {}: {}",
                row.version, row.verifier_key
            );
            Ok(())
        }
        AuditCommand::Checkpoint(args) => {
            let app =
                custos_server::App::build(local_config(&args)?, Arc::new(SystemClock)).await?;
            let signed = custos_server::audit_log::checkpoint_once(&app.state, true).await?;
            app.state.store.close().await;
            match signed {
                Some(size) => println!("signed a checkpoint over {size} entries"),
                None => println!("nothing to sign: the newest checkpoint covers every entry"),
            }
            Ok(())
        }
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut lines = 0u64;
    if let Some(server) = &args.source.server {
        let base = server_url(server)?;
        let token = token(
            args.source.token_file.as_deref(),
            std::env::var(TOKEN_ENV).ok(),
        )?;
        let url = base.join("api/v1/audit/export")?;
        let mut response = reqwest::Client::new()
            .get(url.clone())
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(network_error(&url, &e)))?;
        if !response.status().is_success() {
            bail!("the server refused the export: HTTP {}", response.status());
        }
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!(network_error(&url, &e)))?
        {
            lines += u64::try_from(chunk.iter().filter(|b| **b == b'\n').count()).unwrap_or(0);
            out.write_all(&chunk)?;
        }
    } else {
        let store = open_store(&args.source.local).await?;
        let preamble =
            custos_server::audit_api::export_preamble(&store, chrono::Utc::now().to_rfc3339())
                .await?;
        for line in preamble {
            out.write_all(line.as_bytes())?;
            lines += 1;
        }
        let mut after = 0;
        loop {
            let (text, last) =
                custos_server::audit_api::export_entries(&store, after, 10_000).await?;
            let Some(last) = last else { break };
            lines += u64::try_from(text.lines().count()).unwrap_or(0);
            out.write_all(text.as_bytes())?;
            after = last;
        }
        store.close().await;
    }
    out.flush()?;
    eprintln!("exported {lines} lines");
    Ok(())
}

fn pinned_keys(args: &VerifyArgs) -> anyhow::Result<Option<Vec<NoteVerifier>>> {
    let mut texts: Vec<String> = args.trusted_keys.clone();
    if let Some(path) = &args.trusted_keys_file {
        let body = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        texts.extend(
            body.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if texts.is_empty() {
        return Ok(None);
    }
    texts
        .iter()
        .map(|t| {
            NoteVerifier::from_verifier_key(t)
                .map_err(|e| anyhow::anyhow!("trusted key {t:?} is not a verifier key: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

fn trusted_checkpoints(
    paths: &[PathBuf],
    pinned: Option<&[NoteVerifier]>,
) -> anyhow::Result<Vec<Checkpoint>> {
    let mut out = Vec::new();
    for path in paths {
        let Some(keys) = pinned else {
            bail!("--trusted-checkpoint needs --trusted-key to check its signature");
        };
        let note = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let checkpoint = keys
            .iter()
            .find_map(|k| k.verify(&note).ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is not a checkpoint signed by a trusted key",
                    path.display()
                )
            })?;
        out.push(checkpoint);
    }
    Ok(out)
}

fn report(outcome: Result<Verified, String>) -> anyhow::Result<()> {
    match outcome {
        Ok(v) => {
            println!(
                "audit log verified: entries {}..={} ({} checked), {} checkpoints, newest covers \
                 {} entries, {} entries not yet signed; root {}",
                v.first_seq,
                v.last_seq,
                v.entries,
                v.checkpoints,
                v.latest_checkpoint,
                v.unsigned_tail,
                hex::encode(v.root)
            );
            Ok(())
        }
        Err(problem) => {
            Err(VerificationFailed(format!("audit log does NOT verify: {problem}")).into())
        }
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let pinned = pinned_keys(&args)?;
    let trusted = trusted_checkpoints(&args.trusted_checkpoint, pinned.as_deref())?;
    if let Some(path) = &args.export {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let outcome = verify_export(std::io::BufReader::new(file), pinned.as_deref(), &trusted)
            .map_err(|e| e.to_string());
        return report(outcome);
    }
    let store = open_store(&args.local).await?;
    let outcome = store
        .verify_audit_log(pinned.as_deref(), &trusted)
        .await?
        .map_err(|p: Problem| p.to_string());
    store.close().await;
    report(outcome)
}

fn read_value(value: &str) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value.to_owned());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

async fn hash(args: HashArgs) -> anyhow::Result<()> {
    let value = read_value(&args.value)?;
    let base = server_url(&args.server)?;
    let token = token(args.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
    let url = base.join("api/v1/audit/hash")?;
    let response = reqwest::Client::new()
        .post(url.clone())
        .bearer_auth(&token)
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(network_error(&url, &e)))?;
    if !response.status().is_success() {
        bail!("the server refused: HTTP {}", response.status());
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| anyhow::anyhow!(network_error(&url, &e)))?;
    let Some(tag) = body.get("hmac").and_then(|v| v.as_str()) else {
        bail!("the server's answer has no hmac");
    };
    println!("{tag}");
    Ok(())
}
