//! The command line: parses arguments with clap and hands each subcommand to its module.
//!
//! Each subcommand lives in a file of its own so the pieces stay small: `daemon` (run,
//! check-config), `tag`, `sip2`, `frame`, `devices` and `gate` (alarms, gate, loans). Every subcommand returns an
//! `anyhow::Result`; errors are printed once, here, with their causes, and exit non-zero.

mod daemon;
mod devices;
mod frame;
mod gate;
mod sip2;
mod sortplan;
mod tag;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rfidgw: library RFID hardware (gates, sorters, self-check pads) to any library system.
#[derive(Debug, Parser)]
#[command(name = "rfidgw", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run(daemon::RunArgs),
    /// Check a config file and exit 0 when it is valid.
    CheckConfig(daemon::CheckConfigArgs),
    /// Decode and encode library tag memory.
    #[command(subcommand)]
    Tag(tag::TagCommand),
    /// Decode SIP2 frames or talk to a SIP2 server.
    Sip2(sip2::Sip2Args),
    /// Decode captured reader frames.
    #[command(subcommand)]
    Frame(frame::FrameCommand),
    /// List serial ports and USB devices.
    Devices(devices::DevicesArgs),
    /// List and acknowledge gate alarms (through the running daemon's API).
    #[command(subcommand)]
    Alarms(gate::AlarmsCommand),
    /// Staff commands for exit gates (through the running daemon's API).
    #[command(subcommand)]
    Gate(gate::GateCommand),
    /// The gate's loans cache (database security mode).
    #[command(subcommand)]
    Loans(gate::LoansCommand),
    /// Check a sort plan, or show which bin a checkin response goes to.
    #[command(subcommand, name = "sort-plan")]
    SortPlan(sortplan::SortPlanCommand),
}

/// Parses the command line, runs the subcommand and turns its result into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => daemon::run(&args),
        Command::CheckConfig(args) => daemon::check_config(&args),
        Command::Tag(command) => tag::run(command),
        Command::Sip2(args) => sip2::run(args),
        Command::Frame(command) => frame::run(command),
        Command::Devices(args) => devices::run(&args),
        Command::Alarms(command) => gate::alarms(command),
        Command::Gate(command) => gate::gate(command),
        Command::Loans(command) => gate::loans(command),
        Command::SortPlan(command) => sortplan::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rfidgw: {error:#}");
            ExitCode::FAILURE
        }
    }
}
