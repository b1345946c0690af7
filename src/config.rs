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
    /// Settings shared by return and self-check stations: tag-write deadline, owed-write
    /// grace, offline replay.
    #[serde(default)]
    pub circulation: crate::station::transaction::CirculationConfig,
    /// The public event format's site name, patron-id policy and outbox lag cap.
    #[serde(default)]
    pub northbound: crate::northbound::NorthboundConfig,
    /// MQTT northbound: the broker every public event is published to.
    #[serde(default)]
    pub mqtt: crate::northbound::mqtt::MqttConfig,
    /// Webhooks: URLs public events are POSTed to.
    #[serde(default)]
    pub webhooks: Vec<crate::northbound::webhook::WebhookConfig>,
    /// The SIP2 face: kiosks and sorters log in to rfidgw as to the library system.
    #[serde(default)]
    pub sip2_server: Option<crate::sipface::Sip2ServerConfig>,
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

/// The REST API (`[api]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the HTTP API listens on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Serve the API at all.
    pub enabled: bool,
    /// Bearer tokens (`[[api.tokens]]`): name, role, and the token as `sha256`, `token` or
    /// `token_file`. Without any, every route but health answers 401.
    pub tokens: Vec<crate::api::auth::TokenConfig>,
    /// Each token's request budget (`[api.rate_limit]`), unless the token has its own.
    pub rate_limit: crate::api::auth::RateLimitConfig,
    /// The largest request body read; a larger one is a 413.
    pub max_body_bytes: usize,
    /// HTTPS instead of HTTP (`[api.tls]`).
    pub tls: Option<crate::api::tls::ApiTlsConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
            tokens: Vec::new(),
            rate_limit: crate::api::auth::RateLimitConfig::default(),
            max_body_bytes: 64 * 1024,
            tls: None,
        }
    }
}

impl ApiConfig {
    /// The key and problem of an unusable setting.
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::api::auth::validate(&self.tokens, &self.rate_limit)?;
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err((
                "api.max_body_bytes".into(),
                "must be between 1024 and 16777216".into(),
            ));
        }
        Ok(())
    }

    /// Makes the files it names relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for token in &mut self.tokens {
            if let Some(file) = token.token_file.as_mut() {
                *file = base.join(&*file);
            }
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.cert_file = base.join(&tls.cert_file);
            tls.key_file = base.join(&tls.key_file);
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
    /// Return settings (`[stations.returns]`, only for `kind = "return"`).
    #[serde(default)]
    pub returns: Option<crate::station::returns::ReturnConfig>,
    /// Self-check settings (`[stations.selfcheck]`, only for `kind = "self-check"`).
    #[serde(default)]
    pub selfcheck: Option<crate::station::selfcheck::SelfCheckConfig>,
    /// What the station does while the library system is offline (`[stations.offline]`;
    /// return and self-check stations).
    #[serde(default)]
    pub offline: crate::station::offline::OfflinePolicy,
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
    /// An `RFIDGW__…` environment override is what is wrong: named, as the file is fine.
    #[error("environment variable {variable}: {problem} (it overrides `{key}` of {file})")]
    Env {
        /// The config file the variable overrides.
        file: String,
        /// The variable (`RFIDGW__API__LISTEN`).
        variable: String,
        /// The key it overrides (`api.listen`).
        key: String,
        /// What is wrong.
        problem: String,
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
        let mut config = Self::parse(&name, &text, env)?;
        // Files a config names are found next to it, wherever the daemon was started.
        let base = file.parent().unwrap_or_else(|| Path::new(""));
        if let Some(face) = config.sip2_server.as_mut() {
            for account in &mut face.accounts {
                if let Some(file) = account.password_file.as_mut() {
                    *file = base.join(&*file);
                }
            }
        }
        for station in &mut config.stations {
            if let Some(plan) = station.returns.as_mut().and_then(|r| r.sort_plan.as_mut()) {
                *plan = base.join(&*plan);
            }
        }
        config.api.resolve_paths(base);
        config.mqtt.resolve_paths(base);
        for hook in &mut config.webhooks {
            hook.resolve_paths(base);
        }
        config
            .sort_plans(Path::new(""))
            .map_err(|(key, problem)| ConfigError::Invalid {
                file: name.clone(),
                key,
                problem,
            })?;
        crate::northbound::delivery::check(&config.mqtt, &config.webhooks, &config.northbound)
            .map_err(|e| ConfigError::Invalid {
                file: name,
                key: e.key,
                problem: e.problem,
            })?;
        Ok(config)
    }

    /// Parses config `text` (TOML) named `name` in messages, layers `RFIDGW__…` entries of
    /// `env` over it and validates the result.
    pub fn parse(
        name: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        Self::parse_layered(name, text, overrides.clone())
            .map_err(|error| blame_override(name, text, &overrides, error))
    }

    /// [`Config::parse`] with the overrides picked out.
    fn parse_layered(
        name: &str,
        text: &str,
        overrides: config::Map<String, String>,
    ) -> Result<Self, ConfigError> {
        let load_error = |e: &dyn std::fmt::Display| ConfigError::Load {
            file: name.to_owned(),
            message: in_words(&e.to_string()),
        };
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
            self.validate_circulation(station, &invalid)?;
        }
        if let Err((key, problem)) = self.api.validate() {
            return Err(invalid(key, problem));
        }
        if let Err((key, problem)) = self.northbound.validate() {
            return Err(invalid(key, problem));
        }
        if let Err((key, problem)) = self.mqtt.validate(&self.northbound.site) {
            return Err(invalid(key, problem));
        }
        if let Err((key, problem)) = crate::northbound::webhook::validate_webhooks(&self.webhooks) {
            return Err(invalid(key, problem));
        }
        if self.circulation.command_deadline_ms == 0 {
            return Err(invalid(
                "circulation.command_deadline_ms".into(),
                "must be at least 1".into(),
            ));
        }
        if self.circulation.replay_pause_ms < 100 {
            return Err(invalid(
                "circulation.replay_pause_ms".into(),
                "must be at least 100 (ms)".into(),
            ));
        }
        if let Err(e) = self.tags.validate() {
            // The tag crate's messages already start with the `tags.…` key.
            let text = e.to_string();
            let (key, problem) = text.split_once(": ").unwrap_or(("tags", text.as_str()));
            return Err(invalid(key.to_owned(), problem.to_owned()));
        }
        if let Some(face) = &self.sip2_server
            && let Err((key, problem)) = face.validate(&self.stations)
        {
            return Err(invalid(key, problem));
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
        if let Err(problem) = crate::logging::check_filter(&self.daemon.log_level) {
            return Err(invalid("daemon.log_level".into(), problem));
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

    /// Return and self-check sections belong to their kinds; a sorter is a device of the
    /// station and comes with a sort plan; the offline policy is usable.
    fn validate_circulation(
        &self,
        station: &StationConfig,
        invalid: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let key = |rest: &str| format!("stations.{}.{rest}", station.id);
        let takes_transactions =
            matches!(station.kind, StationKind::Return | StationKind::SelfCheck);
        if station.returns.is_some() && station.kind != StationKind::Return {
            return Err(invalid(
                key("returns"),
                "a [stations.returns] section belongs to a station of kind \"return\"".into(),
            ));
        }
        if station.selfcheck.is_some() && station.kind != StationKind::SelfCheck {
            return Err(invalid(
                key("selfcheck"),
                "a [stations.selfcheck] section belongs to a station of kind \"self-check\"".into(),
            ));
        }
        if !takes_transactions {
            if station.offline != crate::station::offline::OfflinePolicy::default() {
                return Err(invalid(
                    key("offline"),
                    "an offline policy belongs to a return or self-check station".into(),
                ));
            }
            return Ok(());
        }
        if self.tags.security.mode == rfidgw_tag::SecurityMode::EpcBit {
            return Err(invalid(
                "tags.security.mode".into(),
                format!(
                    "station `{}` writes tag security, which the HF drivers cannot do in \"epc-bit\" mode; use \"afi\", \"eas\" or \"database\"",
                    station.id
                ),
            ));
        }
        if station.offline.loan_days == 0 {
            return Err(invalid(
                key("offline.loan_days"),
                "must be at least 1".into(),
            ));
        }
        if station.offline.takes_checkouts() && station.offline.max_items_per_patron == 0 {
            return Err(invalid(
                key("offline.max_items_per_patron"),
                "must be at least 1 when offline loans are taken".into(),
            ));
        }
        if let Some(returns) = &station.returns
            && let Some(sorter) = &returns.sorter
        {
            {
                if !station.devices.contains(sorter) {
                    return Err(invalid(
                        key("returns.sorter"),
                        format!(
                            "`{sorter}` is not one of this station's devices ({})",
                            station.devices.join(", ")
                        ),
                    ));
                }
                if returns.sort_plan.is_none() {
                    return Err(invalid(
                        key("returns.sort_plan"),
                        "a station with a sorter needs a sort plan (the bins and rules)".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads and checks every return station's sort plan (relative paths from `base`, the
    /// config file's directory); the plans by station id.
    pub fn sort_plans(
        &self,
        base: &Path,
    ) -> Result<
        std::collections::HashMap<String, crate::station::sortplan::SortPlan>,
        (String, String),
    > {
        let mut plans = std::collections::HashMap::new();
        for station in &self.stations {
            let Some(file) = station.returns.as_ref().and_then(|r| r.sort_plan.as_ref()) else {
                continue;
            };
            let key = format!("stations.{}.returns.sort_plan", station.id);
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| (key.clone(), format!("cannot read {}: {e}", path.display())))?;
            let plan = crate::station::sortplan::SortPlan::from_toml(&text)
                .map_err(|e| (key.clone(), format!("{}: {e}", path.display())))?;
            if let Some(problem) = plan.check().into_iter().next() {
                return Err((key, format!("{}: {problem}", path.display())));
            }
            plans.insert(station.id.clone(), plan);
        }
        Ok(plans)
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

/// The values of the config's word-valued settings, in words, by the Rust type the parser
/// names (an operator should not meet `DriverKind`).
const CHOICES: [(&str, &str, &str); 3] = [
    (
        "DriverKind",
        "driver",
        "sim (simulated reader), feig (FEIG ISO-Host readers), 3m810 (3M 810 staff pads and \
         the 3M 210 reader), hid (USB keyboard-wedge card readers), modbus (sorter PLCs over \
         Modbus), mqtt (gate controllers and sorters through an MQTT broker)",
    ),
    (
        "StationKind",
        "station kind",
        "gate, return, self-check, staff",
    ),
    ("LogFormat", "log format", "auto, human, json, journald"),
];

/// Rewrites the parser's messages that name Rust types into words, and mends its keys
/// (`devices[0]driver` → `devices[0].driver`).
fn in_words(message: &str) -> String {
    let mut text = message.to_owned();
    if let Some(rest) = message.strip_prefix("enum ")
        && let Some((type_name, rest)) = rest.split_once(" does not have variant constructor ")
    {
        let (value, key) = rest.split_once(" for key ").unwrap_or((rest, ""));
        let (what, list) = CHOICES
            .iter()
            .find(|(name, _, _)| *name == type_name)
            .map_or(
                (
                    "value",
                    "see the documented example config, config/rfidgw.toml",
                ),
                |(_, what, list)| (*what, *list),
            );
        text = format!("unknown {what} \"{value}\"; the {what}s are: {list}");
        if !key.is_empty() {
            text = format!("{text} (key {key})");
        }
    }
    // The parser joins an array index and the next key without a dot.
    let mut mended = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        mended.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
        {
            mended.push('.');
        }
    }
    mended
}

/// The config key an `RFIDGW__SECTION__KEY` variable overrides (`section.key`).
fn override_key(variable: &str) -> String {
    variable
        .strip_prefix(&format!("{ENV_PREFIX}{ENV_SEPARATOR}"))
        .unwrap_or(variable)
        .split(ENV_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(".")
}

/// When an environment override is what makes the config fail, says so with the
/// variable's name: an operator looks for the mistake where the message points, and the
/// file is not where it is. An override is to blame when the error names its key, or when
/// the file alone passes.
fn blame_override(
    name: &str,
    text: &str,
    overrides: &config::Map<String, String>,
    error: ConfigError,
) -> ConfigError {
    if overrides.is_empty() {
        return error;
    }
    let (key_in_error, problem) = match &error {
        ConfigError::Invalid { key, problem, .. } => (Some(key.clone()), problem.clone()),
        ConfigError::Load { message, .. } => (None, message.clone()),
        ConfigError::Env { .. } => return error,
    };
    let mut variables: Vec<&String> = overrides.keys().collect();
    variables.sort();
    let named = variables.iter().find(|variable| {
        let key = override_key(variable);
        key_in_error.as_deref().is_some_and(|k| {
            k == key || k.starts_with(&format!("{key}.")) || key.starts_with(&format!("{k}."))
        }) || problem.contains(&format!("`{key}`"))
            || problem.contains(&format!("\"{key}\""))
    });
    let variable = match named {
        Some(variable) => (*variable).clone(),
        None if Config::parse_layered(name, text, config::Map::new()).is_ok() => variables
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        None => return error,
    };
    let key = variable
        .split(", ")
        .map(override_key)
        .collect::<Vec<_>>()
        .join(", ");
    ConfigError::Env {
        file: name.to_owned(),
        variable,
        key,
        problem,
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
