//! `[sip2_server]`: the SIP2 face's listener, limits and kiosk accounts.
//!
//! ```toml
//! [sip2_server]
//! listen = "0.0.0.0:6001"
//! [[sip2_server.accounts]]
//! login = "kiosk1"
//! password_file = "/etc/rfidgw/kiosk1.password"
//! station = "selfcheck-1"
//! ```
//!
//! Every key is documented in `config/rfidgw.toml`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rfidgw_sip2::Secret;
use rfidgw_sip2::codec::{ChecksumPolicy, Terminator};
use rfidgw_sip2::encoding::Encoding;
use rfidgw_sip2::frame::Command;
use rfidgw_sip2::server::{
    AccountDialect, Credential, ErrorDetection, Limits, ServerAccount, ServerTlsConfig, Supported,
};
use serde::Deserialize;

use crate::config::{StationConfig, StationKind};

/// `[sip2_server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip2ServerConfig {
    /// Address the face listens on (`host:port`; port 0 picks one, for tests).
    pub listen: String,
    /// TLS on every connection (`[sip2_server.tls]`); plain TCP without it.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Longest request frame in bytes; a kiosk sending more is disconnected.
    #[serde(default = "default_max_frame")]
    pub max_frame: usize,
    /// A connection without a request for this long is closed, in seconds (kiosks keep
    /// theirs with a 99 every few minutes).
    #[serde(default = "default_idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// Failed logins on one connection before it is closed.
    #[serde(default = "default_attempts")]
    pub max_login_attempts: u32,
    /// Unreadable frames in a row (each answered with 96) before the kiosk is disconnected.
    #[serde(default = "default_attempts")]
    pub max_bad_frames: u32,
    /// Kiosk connections at once; more are refused with a log line.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long the library system may take to answer a relayed request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Per-message overrides of `timeout_ms` (`checkout = 20000`, `patron_information =
    /// 5000`, … by BX name).
    #[serde(default)]
    pub timeouts: BTreeMap<String, u64>,
    /// AM library name in 98 while the library system is offline.
    #[serde(default)]
    pub library_name: Option<String>,
    /// The kiosk accounts (`[[sip2_server.accounts]]`).
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

fn default_max_frame() -> usize {
    4096
}
fn default_idle_timeout_s() -> u64 {
    900
}
fn default_attempts() -> u32 {
    3
}
fn default_max_connections() -> usize {
    256
}
fn default_timeout_ms() -> u64 {
    15_000
}
fn default_delimiter() -> char {
    '|'
}

/// One `[[sip2_server.accounts]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Login user id (CN) the kiosk sends in 93.
    pub login: String,
    /// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>` of the login password (CO).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// A file whose first line is the login password (relative to the config file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The `[[stations]]` id (a return or self-check station) this kiosk counts as: its
    /// offline policy applies and its transactions are journaled under it.
    pub station: String,
    /// AO institution id the kiosk is answered with (default: what the ILS sends).
    #[serde(default)]
    pub institution: Option<String>,
    /// Where the kiosk stands: AN terminal location in 98, and AP current location of a
    /// checkin that carries none.
    #[serde(default)]
    pub location: Option<String>,
    /// Messages the kiosk may send, by BX name (`checkout`, `checkin`, `renew`, …) or
    /// code; default all. Login, status and resend are always allowed.
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
    /// Terminator on answers: `cr` or `crlf` (requests may end either way).
    #[serde(default)]
    pub terminator: Terminator,
    /// Character set: utf8, cp850, latin1, gb18030, gbk or ascii.
    #[serde(default)]
    pub encoding: Encoding,
    /// Error detection on answers: `auto` (mirror each request), `on` or `off`.
    #[serde(default)]
    pub error_detection: ErrorDetection,
    /// Variable-field delimiter (one ASCII punctuation character).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// A bad request checksum gets 96 (`strict`) or is let through (`lenient`).
    #[serde(default)]
    pub checksum: ChecksumPolicy,
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("login", &self.login)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("station", &self.station)
            .field("institution", &self.institution)
            .field("location", &self.location)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl AccountConfig {
    /// The dialect the kiosk speaks.
    pub fn dialect(&self) -> AccountDialect {
        AccountDialect {
            terminator: self.terminator,
            encoding: self.encoding,
            delimiter: self.delimiter,
            error_detection: self.error_detection,
            checksum: self.checksum,
        }
    }

    /// What it may send.
    pub fn allowed(&self) -> Result<Supported, String> {
        match &self.allowed {
            None => Ok(Supported::ALL),
            Some(names) => Supported::from_names(names.iter().map(String::as_str)),
        }
    }

    /// Its credential: the hash, or the password file read now (relative to `base`).
    pub fn credential(&self, base: &Path) -> Result<Credential, String> {
        match (&self.password_hash, &self.password_file) {
            (Some(hash), None) => Credential::parse_hash(hash),
            (None, Some(file)) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let password = text.lines().next().unwrap_or_default();
                if password.is_empty() {
                    return Err(format!("{} is empty", path.display()));
                }
                Ok(Credential::from_password(&Secret::new(password)))
            }
            _ => Err("give exactly one of password_hash and password_file".into()),
        }
    }
}

impl AccountConfig {
    /// Checks one account (number `n`) against the stations; the key and the problem.
    fn validate(&self, n: usize, stations: &[StationConfig]) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: String| Err((format!("sip2_server.{key}"), problem));
        let key = |rest: &str| format!("accounts[{n}].{rest}");
        if self.login.trim().is_empty() || self.login.contains(['|', '\r', '\n']) {
            return bad(
                &key("login"),
                "must be a non-empty login id without | or line breaks".into(),
            );
        }
        match (&self.password_hash, &self.password_file) {
            (Some(hash), None) => {
                Credential::parse_hash(hash)
                    .map_err(|p| (format!("sip2_server.{}", key("password_hash")), p))?;
            }
            (None, Some(_)) => {}
            _ => {
                return bad(
                    &key("password_hash"),
                    "give exactly one of password_hash and password_file".into(),
                );
            }
        }
        if let Err(name) = self.allowed() {
            return bad(&key("allowed"), unknown_message(&name));
        }
        if !self.delimiter.is_ascii_punctuation() {
            return bad(
                &key("delimiter"),
                format!(
                    "{:?} must be one ASCII punctuation character",
                    self.delimiter
                ),
            );
        }
        match stations.iter().find(|s| s.id == self.station) {
            None => {
                return bad(
                    &key("station"),
                    format!("no [[stations]] entry has the id `{}`", self.station),
                );
            }
            Some(s) if !matches!(s.kind, StationKind::Return | StationKind::SelfCheck) => {
                return bad(
                    &key("station"),
                    format!(
                        "`{}` is not a return or self-check station; a kiosk counts as one of those (its offline policy applies)",
                        self.station
                    ),
                );
            }
            Some(_) => {}
        }
        Ok(())
    }
}

impl Sip2ServerConfig {
    /// The listener limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame: self.max_frame,
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            max_login_attempts: self.max_login_attempts,
            max_bad_frames: self.max_bad_frames,
            max_connections: self.max_connections,
        }
    }

    /// The relay timeout for one message.
    pub fn timeout(&self, command: Command) -> Duration {
        let ms = Supported::name(command)
            .and_then(|name| self.timeouts.get(name))
            .copied()
            .unwrap_or(self.timeout_ms);
        Duration::from_millis(ms)
    }

    /// The accounts as the SIP2 crate's server takes them (reads password files).
    pub fn server_accounts(&self, base: &Path) -> Result<Vec<ServerAccount>, (String, String)> {
        self.accounts
            .iter()
            .enumerate()
            .map(|(n, account)| {
                let key = |rest: &str| format!("sip2_server.accounts[{n}].{rest}");
                Ok(ServerAccount {
                    login: account.login.clone(),
                    credential: account.credential(base).map_err(|p| {
                        let which = if account.password_file.is_some() {
                            "password_file"
                        } else {
                            "password_hash"
                        };
                        (key(which), p)
                    })?,
                    dialect: account.dialect(),
                    allowed: account
                        .allowed()
                        .map_err(|name| (key("allowed"), unknown_message(&name)))?,
                })
            })
            .collect()
    }

    /// Checks what serde cannot; returns the key and the problem.
    pub fn validate(&self, stations: &[StationConfig]) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: String| Err((format!("sip2_server.{key}"), problem));
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "listen",
                format!(
                    "{:?} is not an address; write host:port, e.g. \"0.0.0.0:6001\"",
                    self.listen
                ),
            );
        }
        if !(64..=1 << 20).contains(&self.max_frame) {
            return bad("max_frame", "must be from 64 to 1048576 (bytes)".into());
        }
        for (key, value) in [
            ("idle_timeout_s", self.idle_timeout_s),
            ("max_login_attempts", u64::from(self.max_login_attempts)),
            ("max_bad_frames", u64::from(self.max_bad_frames)),
            ("max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.timeout_ms < 100 {
            return bad("timeout_ms", "must be at least 100 (ms)".into());
        }
        for (name, ms) in &self.timeouts {
            if !Supported::names().any(|n| n == name) {
                return bad(&format!("timeouts.{name}"), unknown_message(name));
            }
            if *ms < 100 {
                return bad(
                    &format!("timeouts.{name}"),
                    "must be at least 100 (ms)".into(),
                );
            }
        }
        if self.accounts.is_empty() {
            return bad(
                "accounts",
                "the face needs at least one [[sip2_server.accounts]] entry".into(),
            );
        }
        let mut logins = HashSet::new();
        for (n, account) in self.accounts.iter().enumerate() {
            if !logins.insert(account.login.as_str()) {
                return Err((
                    format!("sip2_server.accounts[{n}].login"),
                    format!("`{}` is used by two accounts", account.login),
                ));
            }
            account.validate(n, stations)?;
        }
        Ok(())
    }
}

fn unknown_message(name: &str) -> String {
    format!(
        "unknown message `{name}`; expected one of {}",
        Supported::names().collect::<Vec<_>>().join(", ")
    )
}
