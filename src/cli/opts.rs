//! Arguments shared by every command that reads the daemon's config: one definition, so
//! `--config`, its default and `RFIDGW_CONFIG` behave the same in `run`, `check-config`,
//! `status`, `journal`, `alarms` and the rest.

use std::path::{Path, PathBuf};

/// Where the packages install the config, and where every command looks without
/// `--config` or `RFIDGW_CONFIG`.
pub const DEFAULT_CONFIG: &str = "/etc/rfidgw/rfidgw.toml";

/// The daemon's config file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigArg {
    /// The config file (TOML) [default: /etc/rfidgw/rfidgw.toml]; `RFIDGW__SECTION__KEY`
    /// environment variables override its keys.
    #[arg(
        long = "config",
        short = 'c',
        env = "RFIDGW_CONFIG",
        value_name = "FILE",
        global = false
    )]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The file: as given (`--config` or `RFIDGW_CONFIG`), else [`DEFAULT_CONFIG`].
    pub fn path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// The file for commands that can also work without one (they talk to the API at its
    /// default address): as given, else the default when it exists.
    pub fn optional(&self) -> Option<PathBuf> {
        match &self.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| Path::exists(p)),
        }
    }
}
