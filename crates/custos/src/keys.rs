//! `custos keys …`: the local key-encryption-key commands (status, rotate, rewrap, retire).
//!
//! Opens the server's store and keys the way `custos audit rotate-key` does (same
//! `--data-dir` / `--config` / `--database-url` options) and hands the work to
//! `custos_server::kek_admin`, which orders the file and store steps and audits them. This
//! module only parses, shows progress and prints versions and counts — never key material.

use crate::audit::{LocalArgs, local_config};
use anyhow::bail;
use custos_core::SystemClock;
use custos_server::kek_admin::{self, KekStatus};
use custos_server::keys::KekSource;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Instant;

/// `custos keys`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Show the KEK versions and how many stored keys each one wraps.
    Status(LocalArgs),
    /// Make a new KEK version; every new wrap uses it. Then run `rewrap`.
    Rotate(LocalArgs),
    /// Re-wrap every stored data key and secret under the current KEK version (no payload is
    /// decrypted). Safe to interrupt and run again.
    Rewrap(RewrapArgs),
    /// Destroy an old KEK version; refused while any stored key still uses it.
    Retire(RetireArgs),
}

/// `custos keys rewrap`.
#[derive(Debug, clap::Args)]
pub struct RewrapArgs {
    #[command(flatten)]
    local: LocalArgs,
    /// Wrapped keys re-wrapped per transaction.
    #[arg(long, default_value_t = 500)]
    batch: u32,
}

/// `custos keys retire`.
#[derive(Debug, clap::Args)]
pub struct RetireArgs {
    /// The KEK version to destroy.
    version: u32,
    #[command(flatten)]
    local: LocalArgs,
}

async fn open(args: &LocalArgs) -> anyhow::Result<custos_server::App> {
    let config = local_config(args)?;
    if config.store.database_url.is_none() {
        let db = config.server.data_dir.join("custos.db");
        if !db.exists() {
            bail!("no Custos database at {}", db.display());
        }
    }
    Ok(custos_server::App::build(config, Arc::new(SystemClock)).await?)
}

/// Runs a keys command.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Status(args) => {
            let app = open(&args).await?;
            let status = kek_admin::status(&app.state).await;
            app.state.store.close().await;
            print_status(&status?);
            Ok(())
        }
        KeysCommand::Rotate(args) => {
            let app = open(&args).await?;
            let ring = kek_admin::rotate(&app.state).await;
            app.state.store.close().await;
            let ring = ring?;
            println!(
                "KEK version {} is now current (versions {:?}); new keys are wrapped with it.",
                ring.current_version(),
                ring.versions()
            );
            println!(
                "Next: `custos keys rewrap` to re-wrap the stored keys, then `custos keys retire \
                 <old version>`."
            );
            Ok(())
        }
        KeysCommand::Rewrap(args) => {
            let app = open(&args.local).await?;
            let bar = progress_bar();
            let started = Instant::now();
            let report = kek_admin::rewrap(&app.state, args.batch, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await;
            bar.finish_and_clear();
            app.state.store.close().await;
            let report = report?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "re-wrapped {} keys under KEK version {} in {secs:.2} s ({:.0} keys/s)",
                report.rewrapped,
                report.version,
                report.rewrapped as f64 / secs.max(1e-9)
            );
            for (version, usage) in &report.usage {
                println!(
                    "  version {version}: {} data keys, {} secrets",
                    usage.data_keys, usage.secrets
                );
            }
            Ok(())
        }
        KeysCommand::Retire(args) => {
            let app = open(&args.local).await?;
            let done = kek_admin::retire(&app.state, args.version).await;
            app.state.store.close().await;
            done?;
            println!(
                "KEK version {} is destroyed; nothing can unwrap with it any more.",
                args.version
            );
            Ok(())
        }
    }
}

fn print_status(status: &KekStatus) {
    match &status.source {
        KekSource::Dir(dir) => println!("KEK provider: key directory {}", dir.display()),
        KekSource::Fixed => println!("KEK provider: fixed key (keys.kek), version 1"),
        KekSource::Pkcs11(source) => println!(
            "KEK provider: PKCS#11 token {:?} through {} (key objects {}-v<N>, held by the HSM)",
            source.config.token_label,
            source.config.module.display(),
            source.config.key_label
        ),
    }
    let mut versions: Vec<u32> = status.versions.clone();
    versions.extend(status.usage.keys().filter(|v| !status.versions.contains(v)));
    versions.sort_unstable_by(|a, b| b.cmp(a));
    println!(
        "{:>8}  {:<10}  {:>10}  {:>8}",
        "version", "provider", "data keys", "secrets"
    );
    for version in versions {
        let usage = status.usage.get(&version).copied().unwrap_or_default();
        let held = if status.versions.first() == Some(&version) {
            "current"
        } else if status.versions.contains(&version) {
            "held"
        } else {
            "MISSING"
        };
        println!(
            "{version:>8}  {held:<10}  {:>10}  {:>8}",
            usage.data_keys, usage.secrets
        );
    }
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    // The template is a constant; should it ever fail to parse, the default style is fine.
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} keys ({per_sec}, {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
