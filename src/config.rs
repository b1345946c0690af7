//! Typed configuration: a TOML file, then `RFIDGW__…` environment overrides, validated.
//!
//! Layering uses the `config` crate: the file is read first, then every environment
//! variable named `RFIDGW__SECTION__KEY` overrides `section.key` (e.g.
//! `RFIDGW__API__LISTEN=0.0.0.0:8080`). Unknown keys are rejected everywhere, so a typo
//! never silently falls back to a default. Every error names the file and the key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::devices::DeviceConfig;

/// The prefix of environment overrides (`RFIDGW__API__LISTEN`).
pub const ENV_PREFIX: &str = "RFIDGW";
/// The separator between prefix, section and key in environment overrides.
pub const ENV_SEPARATOR: &str = "__";

/// The whole configuration of one rfidgw daemon.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The local store (SQLite).
    #[serde(default)]
    pub store: StoreConfig,
    /// The status API.
    #[serde(default)]
    pub api: ApiConfig,
    /// How tags are read: security mode and AFI pair, our institutions, UHF layouts.
    #[serde(default)]
    pub tags: rfidgw_tag::SiteConfig,
    /// The library system: the SIP2 peer and the built-in ACS simulator.
    #[serde(default)]
    pub ils: crate::ils::IlsConfig,
    /// Readers and other devices.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Stations: a gate, a return sorter, a self-check pad, each with its devices.
    #[serde(default)]
    pub stations: Vec<StationConfig>,
    /// The gate's loans cache (database security mode).
    #[serde(default)]
    pub loans: crate::station::loans::LoansConfig,
}

/// Process-wide settings (`[daemon]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Where the store lives when systemd gives no `$STATE_DIRECTORY`.
    pub data_dir: PathBuf,
    /// Log level or `tracing` filter (`info`, `rfidgw=debug,info`); `RUST_LOG` wins.
    pub log_level: String,
    /// `auto` (human on a terminal, journald-style plain lines under systemd, JSON
    /// otherwise), `human`, `json` or `journald`.
    pub log_format: LogFormat,
    /// How long a graceful shutdown may take before tasks are abandoned, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// Longest wait between restarts of a failed device task, in milliseconds.
    pub restart_backoff_max_ms: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/rfidgw"),
            log_level: "info".into(),
            log_format: LogFormat::Auto,
            shutdown_timeout_ms: 5_000,
            restart_backoff_max_ms: 30_000,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human on a terminal, plain lines under systemd (`JOURNAL_STREAM`), JSON otherwise.
    Auto,
    /// Coloured, human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
    /// Plain lines without timestamps (journald adds its own).
    Journald,
}

/// The local store (`[store]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite file; relative paths are taken from the state directory.
    pub file: PathBuf,
    /// Most events written in one transaction (group commit).
    pub batch_max: usize,
    /// Journal rows older than this many days are deleted (hourly); 0 keeps everything.
    /// An SD card in a Pi is small: a busy gate writes ~100k rows a day.
    pub journal_keep_days: u32,
    /// Gate alarm records (alarms, their titles, acknowledgements) older than this many
    /// days are deleted, even when the journal keeps other rows longer; 0 keeps them as
    /// long as the journal does.
    pub alarm_keep_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("rfidgw.db"),
            batch_max: 256,
            journal_keep_days: 90,
            alarm_keep_days: 30,
        }
    }
}

/// The status API (`[api]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the HTTP API listens on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Serve the API at all.
    pub enabled: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
        }
    }
}

/// One `[[stations]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Unique name, used in logs and the journal.
    pub id: String,
    /// What the station does.
    pub kind: StationKind,
    /// The ids of the devices that belong to it.
    pub devices: Vec<String>,
    /// Gate settings (`[stations.gate]`, only for `kind = "gate"`; defaults without it).
    #[serde(default)]
    pub gate: Option<crate::station::gate::GateConfig>,
}

/// What a station does.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StationKind {
    /// An exit security gate.
    Gate,
    /// A self-return drop box or sorter.
    Return,
    /// A self-checkout pad or kiosk.
    SelfCheck,
    /// A staff pad at the desk.
    Staff,
}

/// A config that cannot be used. The message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key has the wrong type or is unknown.
    #[error("{file}: {message}")]
    Load {
        /// The config file.
        file: String,
        /// What the parser said, with the key.
        message: String,
    },
    /// The file parsed but its values do not fit together.
    #[error("{file}: {key}: {problem}")]
    Invalid {
        /// The config file.
        file: String,
        /// The key that is wrong (`devices.gate-1.settings`, `stations.exit.devices`).
        key: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

impl Config {
    /// Loads `file`, applies `RFIDGW__…` overrides from the process environment, validates.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (tests pass their own).
    pub fn load_with_env(
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Load {
            file: name.clone(),
            message: format!("cannot read the file ({e}); give the path of a TOML config"),
        })?;
        Self::parse(&name, &text, env)
    }

    /// Parses config `text` (TOML) named `name` in messages, layers `RFIDGW__…` entries of
    /// `env` over it and validates the result.
    pub fn parse(
        name: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let load_error = |e: &dyn std::fmt::Display| ConfigError::Load {
            file: name.to_owned(),
            message: e.to_string(),
        };
        let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator(ENV_SEPARATOR)
                    .separator(ENV_SEPARATOR)
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|e| load_error(&e))?;
        let config: Self = layered.try_deserialize().map_err(|e| load_error(&e))?;
        config.validate(name)?;
        Ok(config)
    }

    /// Cross-field checks serde cannot do.
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            problem,
        };
        let mut device_ids = HashSet::new();
        for device in &self.devices {
            if device.id.trim().is_empty() {
                return Err(invalid(
                    "devices.id".into(),
                    "a device id must not be empty".into(),
                ));
            }
            if !device_ids.insert(device.id.as_str()) {
                return Err(invalid(
                    format!("devices.{}", device.id),
                    "this id is used by two devices; ids must be unique".into(),
                ));
            }
            device.validate().map_err(|e| {
                invalid(format!("devices.{}.settings", e.device), e.message.clone())
            })?;
        }
        let mut station_ids = HashSet::new();
        let mut claimed = HashSet::new();
        for station in &self.stations {
            if !station_ids.insert(station.id.as_str()) {
                return Err(invalid(
                    format!("stations.{}", station.id),
                    "this id is used by two stations; ids must be unique".into(),
                ));
            }
            for device in &station.devices {
                if !device_ids.contains(device.as_str()) {
                    return Err(invalid(
                        format!("stations.{}.devices", station.id),
                        format!("no device has the id `{device}`"),
                    ));
                }
                if !claimed.insert(device.as_str()) {
                    return Err(invalid(
                        format!("stations.{}.devices", station.id),
                        format!("device `{device}` already belongs to another station"),
                    ));
                }
            }
        }
        for station in &self.stations {
            self.validate_gate(station, &invalid)?;
        }
        if let Err(e) = self.tags.validate() {
            // The tag crate's messages already start with the `tags.…` key.
            let text = e.to_string();
            let (key, problem) = text.split_once(": ").unwrap_or(("tags", text.as_str()));
            return Err(invalid(key.to_owned(), problem.to_owned()));
        }
        if let Err((key, problem)) = self.ils.validate() {
            return Err(invalid(key, problem));
        }
        if self.store.batch_max == 0 {
            return Err(invalid(
                "store.batch_max".into(),
                "must be at least 1".into(),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.daemon.log_level) {
            return Err(invalid("daemon.log_level".into(), e.to_string()));
        }
        Ok(())
    }

    /// A gate's outputs and counting name devices of the gate, and its readers see every
    /// tag its policies need (issue 8: an inventory limited to one AFI hides foreign items).
    fn validate_gate(
        &self,
        station: &StationConfig,
        invalid: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let defaults;
        let gate = match (&station.gate, station.kind) {
            (Some(gate), StationKind::Gate) => gate,
            (None, StationKind::Gate) => {
                defaults = crate::station::gate::GateConfig::default();
                &defaults
            }
            (Some(_), _) => {
                return Err(invalid(
                    format!("stations.{}.gate", station.id),
                    "a [stations.gate] section belongs to a station of kind \"gate\"".into(),
                ));
            }
            (None, _) => return Ok(()),
        };
        let key = |rest: &str| format!("stations.{}.gate.{rest}", station.id);
        for (n, output) in gate.alarm.outputs.iter().enumerate() {
            if !station.devices.contains(&output.device) {
                return Err(invalid(
                    key(&format!("alarm.outputs[{n}].device")),
                    format!(
                        "`{}` is not one of this gate's devices ({})",
                        output.device,
                        station.devices.join(", ")
                    ),
                ));
            }
        }
        if let Some(counting) = &gate.counting {
            if !station.devices.contains(&counting.device) {
                return Err(invalid(
                    key("counting.device"),
                    format!("`{}` is not one of this gate's devices", counting.device),
                ));
            }
            for (name, input) in [
                ("outer_input", counting.outer_input),
                ("inner_input", counting.inner_input),
            ] {
                if !(1..=3).contains(&input) {
                    return Err(invalid(
                        key(&format!("counting.{name}")),
                        format!("{input} is not an input of the reader (1 to 3)"),
                    ));
                }
            }
            if counting.outer_input == counting.inner_input {
                return Err(invalid(
                    key("counting.inner_input"),
                    "the two barriers need two different inputs".into(),
                ));
            }
        }
        if gate.alarm.command_deadline_ms == 0 {
            return Err(invalid(
                key("alarm.command_deadline_ms"),
                "must be at least 1".into(),
            ));
        }
        if self.tags.security.mode == rfidgw_tag::SecurityMode::Eas {
            // An EAS site decides from each tag's EAS bit (on FEIG: the NXP EAS Alarm
            // command, B1 A5), so every HF reader of the gate must check it.
            for id in &station.devices {
                let device = self.devices.iter().find(|d| &d.id == id);
                if device.and_then(DeviceConfig::reads_eas) == Some(false) {
                    return Err(invalid(
                        format!("devices.{id}.settings.poll.read_eas"),
                        format!(
                            "tags.security.mode is \"eas\", so gate `{}` decides from each tag's \
                             EAS bit: set read_eas = true on its readers",
                            station.id
                        ),
                    ));
                }
            }
        }
        self.validate_gate_afi_filter(station, gate)
            .map_err(|(device, problem)| {
                invalid(
                    format!("devices.{device}.settings.poll.inventory_afi"),
                    problem,
                )
            })
    }

    /// A reader that inventories only secured items (one AFI) never sees foreign items,
    /// items whose AFI the site does not use, or anything in database or EAS mode: refuse
    /// the combination when the gate's policies or security mode need those tags.
    fn validate_gate_afi_filter(
        &self,
        station: &StationConfig,
        gate: &crate::station::gate::GateConfig,
    ) -> Result<(), (String, String)> {
        use crate::station::gate::Policy;
        use rfidgw_tag::SecurityMode;
        let needs_every_tag = match self.tags.security.mode {
            SecurityMode::Afi => {
                gate.policy.foreign == Policy::Alarm
                    || gate.policy.unknown == Policy::Alarm
                    || gate.policy.unreadable == Policy::Alarm
            }
            SecurityMode::Eas | SecurityMode::EpcBit | SecurityMode::Database => true,
        };
        if !needs_every_tag {
            return Ok(());
        }
        for id in &station.devices {
            let Some(device) = self.devices.iter().find(|d| &d.id == id) else {
                continue;
            };
            if let Some(afi) = device.inventory_afi_filter() {
                return Err((
                    id.clone(),
                    format!(
                        "this reader only sees tags with AFI {afi:02X}, but gate `{}` needs \
                         every tag (security mode {:?}, or a policy set to \"alarm\" for \
                         foreign, unknown or unreadable items); remove the filter (and any \
                         filter set in the reader's own configuration, e.g. FEIG CFG4)",
                        station.id, self.tags.security.mode
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The station a device belongs to, if any.
    pub fn station_of(&self, device: &str) -> Option<&StationConfig> {
        self.stations
            .iter()
            .find(|s| s.devices.iter().any(|d| d == device))
    }

    /// The state directory: systemd's `$STATE_DIRECTORY` (first entry) when set, else
    /// `daemon.data_dir`.
    pub fn state_dir(&self) -> PathBuf {
        resolve_state_dir(
            std::env::var("STATE_DIRECTORY").ok().as_deref(),
            &self.daemon.data_dir,
        )
    }

    /// The store file, resolved against the state directory.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir().join(&self.store.file)
    }
}

/// systemd passes `StateDirectory=` as `$STATE_DIRECTORY`, a colon-separated list; the
/// first entry is ours. Without it (not under systemd) the configured directory is used.
pub fn resolve_state_dir(state_directory: Option<&str>, data_dir: &Path) -> PathBuf {
    state_directory
        .and_then(|v| v.split(':').next())
        .filter(|first| !first.is_empty())
        .map_or_else(|| data_dir.to_path_buf(), PathBuf::from)
}
