//! `rfidgw devices` (issue 5).
use std::process::ExitCode;

/// Arguments of `rfidgw devices`.
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {}

/// Lists devices.
pub fn run(_args: &DevicesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("devices is not built yet")
}
