//! `custos rules test FILE…`: unit tests for alert rules, offline, like `promtool test rules`.
//!
//! Reads each YAML test file (rules, described metric series, expected alerts by time), runs it
//! through the same state machine the server's evaluator uses
//! (`custos_core::alert_tests::run`), and prints what failed. Exit status 1 when any
//! expectation fails or a file cannot be run; nothing here talks to a server.

use anyhow::Context as _;
use custos_core::alert_tests::{RuleTestFile, run};
use std::path::PathBuf;

/// Some rule test failed (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("alert rule tests failed")]
pub struct RuleTestsFailed;

/// Largest test file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Alert rule commands.
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Run alert rule tests: which alerts fire (and are pending) when, for a described series
    /// of metric values. Exit 1 on any failed expectation.
    Test {
        /// YAML test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse(path: &PathBuf) -> anyhow::Result<RuleTestFile> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        anyhow::bail!("{}: larger than {MAX_FILE_BYTES} bytes", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Runs the command; `Ok(false)` when a test failed.
pub fn run_command(command: RulesCommand) -> anyhow::Result<bool> {
    let RulesCommand::Test { files } = command;
    let mut all_passed = true;
    for path in &files {
        let file = match parse(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("FAILED {e}");
                all_passed = false;
                continue;
            }
        };
        match run(&file) {
            Err(problems) => {
                all_passed = false;
                eprintln!("FAILED {}: the file cannot be run:", path.display());
                for p in problems {
                    eprintln!("  {p}");
                }
            }
            Ok(report) if report.failures.is_empty() => {
                println!(
                    "SUCCESS {}: {} rules, {} expectations",
                    path.display(),
                    file.rules.len(),
                    report.checked
                );
            }
            Ok(report) => {
                all_passed = false;
                eprintln!(
                    "FAILED {}: {} of {} expectations:",
                    path.display(),
                    report.failures.len(),
                    report.checked
                );
                for f in report.failures {
                    eprintln!("  {f}");
                }
            }
        }
    }
    Ok(all_passed)
}
