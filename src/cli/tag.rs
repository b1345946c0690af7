//! `rfidgw tag …` (issue 3).
use std::process::ExitCode;

/// Tag subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TagCommand {
    /// Decode tag memory given as hex.
    Decode,
}

/// Runs a tag subcommand.
pub fn run(_command: TagCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("tag commands are not built yet")
}
