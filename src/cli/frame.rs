//! `rfidgw frame …` (issue 5).
use std::process::ExitCode;

/// Frame subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FrameCommand {
    /// Decode a captured frame.
    Decode,
}

/// Runs a frame subcommand.
pub fn run(_command: FrameCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("frame commands are not built yet")
}
