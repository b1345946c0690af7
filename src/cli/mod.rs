//! The command line: parses arguments with clap and hands each subcommand to its module.
//!
//! Each subcommand lives in a file of its own so the pieces stay small: `daemon` (run,
//! check-config), `tag`, `sip2`, `frame`, `devices`, `gate` (alarms, gate, loans),
//! `sortplan`, `circulation` (worklist, queue, owed), `token`, `webhook`, `status`, `journal` and
//! `docs` (completions, man page); `opts` holds the `--config` argument they share. Every subcommand returns an
//! `anyhow::Result`; errors are printed once, here, with their causes, and exit non-zero.

mod circulation;
mod daemon;
mod devices;
mod docs;
mod frame;
mod gate;
mod journal;
mod opts;
mod sip2;
mod sortplan;
mod status;
mod tag;
mod token;
mod webhook;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rfidgw: library RFID hardware (gates, sorters, self-check pads) to any library system.
#[derive(Debug, Parser)]
#[command(name = "rfidgw", version, about, long_about = None)]
#[command(after_help = OVERVIEW)]
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
    /// The staff worklist: what returns and self-check could not finish by themselves
    /// (through the running daemon's API).
    #[command(subcommand)]
    Worklist(circulation::WorklistCommand),
    /// The offline queue: transactions taken while the library system was away (through
    /// the running daemon's API).
    #[command(subcommand)]
    Queue(circulation::QueueCommand),
    /// Owed tag security writes (through the running daemon's API).
    #[command(subcommand)]
    Owed(circulation::OwedCommand),
    /// API tokens: hash one for the config, or make a new one.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// A receiver for the daemon's webhooks that checks signatures and prints each event:
    /// try a `[[webhooks]]` entry end to end.
    WebhookReceive(webhook::ReceiveArgs),
    /// The daemon at a glance, like `systemctl status` (exit 0 running, 3 not running).
    Status(status::StatusArgs),
    /// The journal as public events, from the daemon or (stopped) the store; `--follow`
    /// to watch it live.
    Journal(journal::JournalArgs),
    /// A shell completion script (bash, zsh, fish, …) on standard output.
    Completions(docs::CompletionsArgs),
    /// The man page (roff) on standard output: `rfidgw man | man -l -`.
    Man,
}

/// Examples under `rfidgw --help` (and in the man page).
const OVERVIEW: &str = "Examples:\n  \
    rfidgw run --config config/demo.toml     # the demo, in the foreground\n  \
    rfidgw status                            # like systemctl status; exit 3 when stopped\n  \
    rfidgw journal --follow --kind gate_alarm\n  \
    rfidgw alarms ack A1764410000123-7 --by JS\n\n\
    Every command that reads the config takes --config FILE (or RFIDGW_CONFIG) and\n\
    defaults to /etc/rfidgw/rfidgw.toml; API commands take --token (or RFIDGW_TOKEN).";

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
        Command::Worklist(command) => circulation::worklist(command),
        Command::Queue(command) => circulation::queue(command),
        Command::Owed(command) => circulation::owed(command),
        Command::Token(command) => token::run(command),
        Command::WebhookReceive(args) => webhook::run(args),
        Command::Status(args) => status::run(&args),
        Command::Journal(args) => journal::run(&args),
        Command::Completions(args) => docs::completions(&args),
        Command::Man => docs::man(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rfidgw: {error:#}");
            ExitCode::FAILURE
        }
    }
}
