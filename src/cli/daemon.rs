//! `rfidgw run` and `rfidgw check-config`.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::app::Daemon;
use crate::config::Config;
use crate::logging;

/// Arguments of `rfidgw run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The config file (TOML); `RFIDGW__SECTION__KEY` environment variables override it.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Arguments of `rfidgw check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML).
    pub file: PathBuf,
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down gracefully (exit 0).
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    logging::init(&config.daemon.log_level, config.daemon.log_format);
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

/// Loads and validates a config file; exit 0 when it is valid, else names key and problem.
pub fn check_config(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.file)?;
    println!(
        "{}: ok ({} devices, {} stations, store {})",
        args.file.display(),
        config.devices.len(),
        config.stations.len(),
        config.store_path().display()
    );
    Ok(ExitCode::SUCCESS)
}
