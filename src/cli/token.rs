//! `rfidgw token`: API tokens for `[[api.tokens]]`. The config keeps a token's SHA-256
//! digest, so it holds nothing a caller could use.

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use rand::Rng as _;

use crate::api::auth::{Role, token_digest};

/// `rfidgw token …`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print the SHA-256 digest of a token read from standard input, for `sha256 = "…"`
    /// (e.g. `printf %s "$TOKEN" | rfidgw token hash`; the same as `sha256sum`).
    Hash,
    /// Make a new random token and print it with its `[[api.tokens]]` entry.
    New {
        /// The holder's name (shown in the journal as who acted).
        #[arg(long)]
        name: String,
        /// What it may do: read, operate or admin.
        #[arg(long, value_parser = ["read", "operate", "admin"])]
        role: String,
    },
}

/// Runs `rfidgw token …`.
pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Hash => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the token from standard input")?;
            let token = line.trim();
            if token.is_empty() {
                bail!("no token on standard input (printf %s \"$TOKEN\" | rfidgw token hash)");
            }
            println!("{}", hex::encode(token_digest(token)));
        }
        TokenCommand::New { name, role } => {
            let role = match role.as_str() {
                "read" => Role::Read,
                "operate" => Role::Operate,
                _ => Role::Admin,
            };
            let token = hex::encode(rand::rng().random::<[u8; 32]>());
            println!("# The token (give it to its holder; the config keeps only its digest):");
            println!("#   {token}");
            println!("[[api.tokens]]");
            println!("name = {}", toml::Value::String(name));
            println!("role = \"{}\"", role.as_str());
            println!("sha256 = \"{}\"", hex::encode(token_digest(&token)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
