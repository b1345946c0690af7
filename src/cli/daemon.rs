//! `rfidgw run` and `rfidgw check-config` (issue 2).
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `rfidgw run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The config file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Arguments of `rfidgw check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML).
    pub file: PathBuf,
}

/// Runs the daemon.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}

/// Checks a config file.
pub fn check_config(_args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
