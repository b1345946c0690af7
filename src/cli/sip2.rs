//! `rfidgw sip2 …` (issue 4).
use std::process::ExitCode;

/// SIP2 arguments.
#[derive(Debug, clap::Args)]
pub struct Sip2Args {}

/// Runs a SIP2 subcommand.
pub fn run(_args: Sip2Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("sip2 commands are not built yet")
}
