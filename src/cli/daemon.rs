//! `rfidgw run` and `rfidgw check-config`.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};

use super::opts::ConfigArg;
use crate::app::Daemon;
use crate::config::Config;
use crate::logging;
use crate::preflight::{self, Findings, Ports};

/// Arguments of `rfidgw run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rfidgw run                                 # /etc/rfidgw/rfidgw.toml\n  \
    rfidgw run --config config/demo.toml\n  \
    RFIDGW__API__LISTEN=0.0.0.0:8080 rfidgw run -c /etc/rfidgw/rfidgw.toml"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

/// Arguments of `rfidgw check-config`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rfidgw check-config                        # /etc/rfidgw/rfidgw.toml\n  \
    rfidgw check-config --config config/demo.toml\n  \
    rfidgw check-config config/demo.toml          # the file may also come first"
)]
pub struct CheckConfigArgs {
    /// The config file, as an alternative to `--config` (kept for scripts and the systemd
    /// unit that give it this way).
    #[arg(value_name = "FILE", conflicts_with = "config")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// Reads the config and runs the checks `run` would otherwise meet while starting.
fn load_and_check(path: &Path, ports: Ports) -> anyhow::Result<(Config, Findings)> {
    let config = Config::load(path)?;
    // Load read it a moment ago; reading again only for the empty-file warning.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Ok((config.clone(), preflight::check(&config, &text, ports)))
}

/// The problems as one error naming the file.
fn refuse(path: &Path, findings: &Findings) -> anyhow::Result<()> {
    if findings.problems.is_empty() {
        return Ok(());
    }
    let list = findings.problems.join("\n  ");
    bail!("{}: the daemon would not start:\n  {list}", path.display())
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down gracefully (exit 0).
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.path();
    // The ports are bound by the start itself, which names the key when one is taken.
    let (config, findings) = load_and_check(&path, Ports::Skip)?;
    refuse(&path, &findings)?;
    logging::init(&config.daemon.log_level, config.daemon.log_format);
    for warning in &findings.warnings {
        tracing::warn!(config = %path.display(), "{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Signal handlers first, so a SIGTERM during start-up is not lost.
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let daemon = Daemon::start(config).await?;
        let reason = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        daemon.shutdown(reason).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Loads and validates a config file and checks what `run` would need at start (files,
/// directories, ports); exit 0 when it would start, else names key and problem.
pub fn check_config(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let path = args.file.clone().unwrap_or_else(|| args.config.path());
    let (config, findings) = load_and_check(&path, Ports::Check)?;
    for warning in &findings.warnings {
        eprintln!("{}: warning: {warning}", path.display());
    }
    refuse(&path, &findings)?;
    println!(
        "{}: ok ({} devices, {} stations, store {})",
        path.display(),
        config.devices.len(),
        config.stations.len(),
        config.store_path().display()
    );
    Ok(ExitCode::SUCCESS)
}
