//! Per-ILS dialects and the peer configuration the daemon embeds (PROTOCOLS.md §1.3–§1.4,
//! §1.9).
//!
//! Real servers differ in terminator, error detection, the `nb due date` content, whether
//! they want AC/AD every time, delimiter, login, character set and checksum strictness. A
//! [`Profile`] names a preset; every item can be overridden per peer in config.
//!
//! | profile | terminator | AY/AZ | nb due date | encoding | keep-alive | notes |
//! |---|---|---|---|---|---|---|
//! | `generic` | CR | on | filled | utf8 | 300 s | strict ACSs (pysip2) reject a blank nb due date |
//! | `koha` | CR | off | blank | utf8 | 300 s | Koha `error-detect` is off unless set per account |
//! | `evergreen` | CR | off | blank | utf8 | 300 s | the Rust SIP2 server has no AY/AZ |
//! | `folio` | CR | off | blank | cp850 | 300 s | edge-sip2 default charset IBM850; CP must be the service point UUID |
//! | `symphony` | CR | on | blank | latin1 | 240 s | common Symphony set-ups; confirm on site |

use std::time::Duration;

use serde::Deserialize;

use crate::codec::{ChecksumPolicy, Terminator};
use crate::encoding::Encoding;
use crate::frame::{DEFAULT_DELIMITER, WireFormat};
use crate::secret::Secret;
use crate::tls::TlsConfig;

/// A named dialect preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Spec behaviour with error detection on.
    #[default]
    Generic,
    /// Koha (C4::SIP).
    Koha,
    /// Evergreen (SIPServer or the Rust server).
    Evergreen,
    /// FOLIO edge-sip2.
    Folio,
    /// SirsiDynix Symphony.
    Symphony,
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "generic" => Ok(Self::Generic),
            "koha" => Ok(Self::Koha),
            "evergreen" => Ok(Self::Evergreen),
            "folio" => Ok(Self::Folio),
            "symphony" => Ok(Self::Symphony),
            other => Err(format!(
                "unknown SIP2 profile {other:?}; expected generic, koha, evergreen, folio or symphony"
            )),
        }
    }
}

/// What goes into the 18-character `nb due date` of 11 and 29 (§1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NbDueDate {
    /// 18 blanks (most servers).
    Blank,
    /// The transaction date (the 3M example; pysip2 rejects blanks).
    Filled,
}

/// The resolved wire behaviour for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// Terminator on frames we send.
    pub terminator: Terminator,
    /// Send AY/AZ and expect it back.
    pub error_detection: bool,
    /// What to do with a wrong response checksum.
    pub checksum: ChecksumPolicy,
    /// nb due date content.
    pub nb_due_date: NbDueDate,
    /// Send AC (and AD where the spec allows it) on every request, even when empty.
    pub always_send_ac_ad: bool,
    /// Variable-field delimiter.
    pub delimiter: char,
    /// Send 93 Login before anything else.
    pub login_required: bool,
    /// Character set.
    pub encoding: Encoding,
    /// Idle time after which a 99 keeps the session alive (§1.4: every few minutes).
    pub keepalive: Duration,
}

impl Dialect {
    /// The preset for a profile.
    pub fn preset(profile: Profile) -> Self {
        let base = Self {
            terminator: Terminator::Cr,
            error_detection: true,
            checksum: ChecksumPolicy::Strict,
            nb_due_date: NbDueDate::Filled,
            always_send_ac_ad: true,
            delimiter: DEFAULT_DELIMITER,
            login_required: true,
            encoding: Encoding::Utf8,
            keepalive: Duration::from_mins(5),
        };
        match profile {
            Profile::Generic => base,
            Profile::Koha | Profile::Evergreen => Self {
                error_detection: false,
                nb_due_date: NbDueDate::Blank,
                ..base
            },
            Profile::Folio => Self {
                error_detection: false,
                nb_due_date: NbDueDate::Blank,
                encoding: Encoding::Cp850,
                ..base
            },
            Profile::Symphony => Self {
                nb_due_date: NbDueDate::Blank,
                encoding: Encoding::Latin1,
                keepalive: Duration::from_mins(4),
                ..base
            },
        }
    }

    /// The wire format (character set and delimiter).
    pub fn wire_format(&self) -> WireFormat {
        WireFormat {
            encoding: self.encoding,
            delimiter: self.delimiter,
        }
    }
}

/// One SIP2 peer (ILS) as configured in the daemon's `[ils.sip2]` section.
///
/// Only `addr`, `user` and `password` are required; the rest default from `profile`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip2PeerConfig {
    /// `host:port` of the ACS.
    pub addr: String,
    /// Login user id (CN).
    pub user: String,
    /// Login password (CO). Never logged.
    pub password: Secret,
    /// Institution id (AO).
    #[serde(default)]
    pub institution: String,
    /// Location code (CP) sent in 93; FOLIO wants the service point UUID here.
    #[serde(default)]
    pub location: Option<String>,
    /// Terminal password (AC), when the ACS wants one. Never logged.
    #[serde(default)]
    pub terminal_password: Option<Secret>,
    /// Dialect preset.
    #[serde(default)]
    pub profile: Profile,
    /// Character set override.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// Error detection (AY/AZ) override.
    #[serde(default)]
    pub error_detection: Option<bool>,
    /// Response checksum policy override (`strict` or `lenient`).
    #[serde(default)]
    pub checksum: Option<ChecksumPolicy>,
    /// Terminator override (`cr` or `crlf`).
    #[serde(default)]
    pub terminator: Option<Terminator>,
    /// Field delimiter override (one ASCII character).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// nb due date override (`blank` or `filled`).
    #[serde(default)]
    pub nb_due_date: Option<NbDueDate>,
    /// Always send AC/AD override.
    #[serde(default)]
    pub always_send_ac_ad: Option<bool>,
    /// Login required override (some deployments skip 93).
    #[serde(default)]
    pub login_required: Option<bool>,
    /// Keep-alive interval override in seconds.
    #[serde(default)]
    pub keepalive_secs: Option<u64>,
    /// Per-request timeout in milliseconds; when unset, the ACS's 98 timeout period is used
    /// (10 s when it says `000` or `999`).
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Connect timeout in milliseconds (default 5000).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Connections kept open to this ACS (default 2).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Longest wait between reconnect attempts in milliseconds (default 30000).
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
    /// Maximum frame length in bytes (default 16384).
    #[serde(default)]
    pub max_frame: Option<usize>,
    /// TLS towards the ACS (SIP2 carries passwords in clear otherwise).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl std::fmt::Debug for Sip2PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sip2PeerConfig")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("institution", &self.institution)
            .field("location", &self.location)
            .field("profile", &self.profile)
            .field("dialect", &self.dialect())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A peer configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// The delimiter must be one printable ASCII character other than a digit or letter.
    #[error("ils.sip2.delimiter {0:?} must be one printable ASCII punctuation character")]
    Delimiter(char),
    /// `addr` is empty.
    #[error("ils.sip2.addr is empty; expected host:port of the SIP2 server")]
    Addr,
    /// pool_size is zero.
    #[error("ils.sip2.pool_size must be at least 1")]
    PoolSize,
}

impl Sip2PeerConfig {
    /// A configuration with defaults for everything but the essentials.
    pub fn new(
        addr: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            addr: addr.into(),
            user: user.into(),
            password: Secret::new(password),
            institution: String::new(),
            location: None,
            terminal_password: None,
            profile: Profile::Generic,
            encoding: None,
            error_detection: None,
            checksum: None,
            terminator: None,
            delimiter: None,
            nb_due_date: None,
            always_send_ac_ad: None,
            login_required: None,
            keepalive_secs: None,
            request_timeout_ms: None,
            connect_timeout_ms: None,
            pool_size: None,
            max_backoff_ms: None,
            max_frame: None,
            tls: None,
        }
    }

    /// The profile preset with this peer's overrides applied.
    pub fn dialect(&self) -> Dialect {
        let preset = Dialect::preset(self.profile);
        Dialect {
            terminator: self.terminator.unwrap_or(preset.terminator),
            error_detection: self.error_detection.unwrap_or(preset.error_detection),
            checksum: self.checksum.unwrap_or(preset.checksum),
            nb_due_date: self.nb_due_date.unwrap_or(preset.nb_due_date),
            always_send_ac_ad: self.always_send_ac_ad.unwrap_or(preset.always_send_ac_ad),
            delimiter: self.delimiter.unwrap_or(preset.delimiter),
            login_required: self.login_required.unwrap_or(preset.login_required),
            encoding: self.encoding.unwrap_or(preset.encoding),
            keepalive: self
                .keepalive_secs
                .map_or(preset.keepalive, Duration::from_secs),
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), DialectError> {
        if self.addr.trim().is_empty() {
            return Err(DialectError::Addr);
        }
        if let Some(d) = self.delimiter
            && !(d.is_ascii_punctuation())
        {
            return Err(DialectError::Delimiter(d));
        }
        if self.pool_size == Some(0) {
            return Err(DialectError::PoolSize);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_the_profile_preset() {
        let mut c = Sip2PeerConfig::new("127.0.0.1:6001", "sc", "pw");
        c.profile = Profile::Folio;
        assert_eq!(c.dialect().encoding, Encoding::Cp850);
        assert!(!c.dialect().error_detection);
        c.error_detection = Some(true);
        c.encoding = Some(Encoding::Utf8);
        assert!(c.dialect().error_detection);
        assert_eq!(c.dialect().encoding, Encoding::Utf8);
    }

    #[test]
    fn config_parses_from_toml_and_rejects_unknown_keys() {
        let c: Sip2PeerConfig = toml::from_str(
            r#"addr = "ils:6001"
user = "sc"
password = "secret-pw"
profile = "koha"
encoding = "ibm850"
request_timeout_ms = 2500
"#,
        )
        .unwrap();
        assert_eq!(c.profile, Profile::Koha);
        assert_eq!(c.dialect().encoding, Encoding::Cp850);
        assert!(!format!("{c:?}").contains("secret-pw"));
        let err = toml::from_str::<Sip2PeerConfig>(
            "addr = \"a\"\nuser = \"u\"\npassword = \"p\"\nbogus = 1\n",
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("bogus"));
    }

    #[test]
    fn a_letter_as_delimiter_is_rejected() {
        let mut c = Sip2PeerConfig::new("ils:6001", "sc", "pw");
        c.delimiter = Some('A');
        assert_eq!(c.validate(), Err(DialectError::Delimiter('A')));
        c.delimiter = Some('^');
        assert_eq!(c.validate(), Ok(()));
    }
}
