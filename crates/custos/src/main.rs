//! The one Custos binary. It reads the command line and the environment, builds the real clock,
//! and hands everything else to `custos-server`'s composition root (or, for `reference upload`,
//! to the client in `reference`). Nothing here decides policy.

mod apply;
mod audit;
mod demo;
mod keys;
mod reference;
mod report;
mod rules;

use anyhow::Context;
use clap::{Parser, Subcommand};
use custos_core::SystemClock;
use custos_server::App;
use custos_server::config::{self, Config, LogFormat, Secret};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Custos: self-hosted, security-first ML monitoring.
#[derive(Debug, Parser)]
#[command(name = "custos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the server with a demo model fed with synthetic, drifting traffic.
    Demo(DemoArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Reference data: the baseline a model's live traffic is compared with.
    Reference {
        #[command(subcommand)]
        command: reference::ReferenceCommand,
    },
    /// Write a model's drift, data-quality and performance report (self-contained HTML).
    Report(report::ReportArgs),
    /// The tamper-evident audit log: export, verify, hash a known value, rotate the signing key.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Monitoring configuration as code: apply a directory of YAML files (models, monitoring,
    /// alert rules, channels) to a server, or show the difference with --dry-run.
    Apply(apply::ApplyArgs),
    /// Alert rules: test them offline against described metric series.
    Rules {
        #[command(subcommand)]
        command: rules::RulesCommand,
    },
    /// Key-encryption keys: status, rotate, rewrap the stored keys, retire an old version.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Data directory (embedded database, keys, bootstrap secret). Default ./custos-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:8750.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// postgres://… to use PostgreSQL instead of the embedded store (prefer
    /// CUSTOS_STORE__DATABASE_URL_FILE for URLs that hold a password).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// TOML configuration file (for example to try single sign-on with the demo).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory. Default ./custos-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:8750.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Hours of history to generate before live traffic starts.
    #[arg(long, default_value_t = 72)]
    history_hours: u32,
    /// Stop after generating history instead of feeding live traffic (for scripts).
    #[arg(long)]
    no_live: bool,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file (with the current CUSTOS_* environment applied).
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

fn load_config(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(config::load(file, std::env::vars())?)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.server.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(url) = args.database_url {
        config.store.database_url = Some(Secret::new(url));
    }
    init_logging(&config);
    let listen = config.server.listen;
    // A TLS listener may use any address; only plain HTTP is held to loopback.
    if config.server.tls.is_none() {
        custos_server::check_listen_address(listen, config.server.allow_plaintext_behind_proxy)?;
    }
    let clock: Arc<dyn custos_core::Clock> = Arc::new(SystemClock);
    let app = match App::build(config.clone(), Arc::clone(&clock)).await {
        Ok(app) => app,
        Err(e) if custos_server::sealed::is_sealed_start(&e) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let scheme = custos_server::tls::scheme(&config);
            eprintln!(
                "Custos is SEALED on {scheme}://{listen}: {:#}",
                anyhow::Error::from(e)
            );
            eprintln!(
                "  every request but /healthz answers 503; retrying the keys every {} s",
                config.keys.unseal_retry_seconds.max(1)
            );
            custos_server::sealed::serve_sealed(config, clock, listener, shutdown_signal()).await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    announce(&app, listen);
    app.serve(listener, shutdown_signal()).await?;
    Ok(())
}

fn announce(app: &App, listen: SocketAddr) {
    let store = app.state.store.backend_name();
    let scheme = custos_server::tls::scheme(&app.state.config);
    eprintln!("Custos is listening on {scheme}://{listen} ({store} store)");
    eprintln!("  dashboard: {scheme}://{listen}/ui");
    match &app.bootstrap_token_path {
        Some(path) => eprintln!(
            "  first start: sign in with the one-time secret in {} (cat it; it is not printed)",
            path.display()
        ),
        None => {
            eprintln!("  sign in with your token (the bootstrap secret was created on first start)")
        }
    }
}

fn main() -> std::process::ExitCode {
    // Once a dependency compiles in a second rustls crypto provider (ring, through an HTTP
    // client's TLS feature), rustls refuses to pick one and panics at first use: name ours now.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo(args) => {
                let mut config = load_config(args.config.as_deref())?;
                // The demo talks to its own server; its access log would bury the instructions
                // the newcomer needs. An explicit level still wins.
                if std::env::var_os("CUSTOS_LOG__LEVEL").is_none() {
                    config.log.level = "warn".into();
                }
                if let Some(dir) = args.data_dir {
                    config.server.data_dir = dir;
                }
                if let Some(listen) = args.listen {
                    config.server.listen = listen;
                }
                init_logging(&config);
                demo::run(config, args.history_hours, !args.no_live, shutdown_signal()).await
            }
            Command::Config {
                command: ConfigCommand::Check { file },
            } => {
                let config = load_config(Some(&file))?;
                println!(
                    "{}: ok (listen {}, store {}, data dir {})",
                    file.display(),
                    config.server.listen,
                    if config.store.database_url.is_some() {
                        "postgres"
                    } else {
                        "sqlite"
                    },
                    config.server.data_dir.display()
                );
                Ok(())
            }
            Command::Reference { command } => reference::run(command).await,
            Command::Report(args) => report::run(args).await,
            Command::Audit { command } => audit::run(command).await,
            Command::Apply(args) => apply::run(args).await,
            Command::Rules { command } => {
                if rules::run_command(command)? {
                    Ok(())
                } else {
                    Err(anyhow::Error::new(rules::RuleTestsFailed))
                }
            }
            Command::Keys { command } => keys::run(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A refused or failed upload is 1, as scripts expect of a request that failed;
            // everything else (bad arguments, configuration, start-up) stays 2.
            if e.is::<reference::UploadError>()
                || e.is::<audit::VerificationFailed>()
                || e.is::<rules::RuleTestsFailed>()
            {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::from(2)
            }
        }
    }
}
