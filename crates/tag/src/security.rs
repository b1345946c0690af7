//! Per-site security state (PROTOCOLS.md §3): which signal says an item may leave, and what
//! a tag's signal means.

use serde::{Deserialize, Serialize};

/// ISO/IEC 15961 library AFI for items in stock, the gate alarms on it (§3.1).
pub const DEFAULT_SECURED_AFI: u8 = 0x07;
/// ISO/IEC 15961 library AFI for items on loan (§3.1).
pub const DEFAULT_UNSECURED_AFI: u8 = 0xC2;

/// Where the security state of an item comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityMode {
    /// The tag's AFI (HF) or the AFI in the UHF PC word (§3.1, §2.5).
    #[default]
    Afi,
    /// The NXP EAS bit: set = secured (§3.3).
    Eas,
    /// A security bit inside a site EPC layout (§3.4).
    EpcBit,
    /// The loans cache: the caller says whether the item is on loan (§3.4).
    Database,
}

/// Per-site security table (§3.1 rule): the mode and the AFI pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Where the state comes from.
    pub mode: SecurityMode,
    /// AFI of a secured item (in stock); `07` by default, `DA` or `D7` at 3M sites.
    #[serde(with = "crate::config::hex_byte")]
    pub secured_afi: u8,
    /// AFI of an unsecured item (on loan); `C2` by default, `21` with libdanrfid.
    #[serde(with = "crate::config::hex_byte")]
    pub unsecured_afi: u8,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            mode: SecurityMode::Afi,
            secured_afi: DEFAULT_SECURED_AFI,
            unsecured_afi: DEFAULT_UNSECURED_AFI,
        }
    }
}

/// An item's security state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Security {
    /// Must not leave: the gate alarms.
    Secured,
    /// May leave (on loan).
    Unsecured,
    /// The signal is missing or carries no security meaning.
    Unknown,
}

impl Security {
    /// The lower-case name used in JSON and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Secured => "secured",
            Self::Unsecured => "unsecured",
            Self::Unknown => "unknown",
        }
    }
}

/// The signals known about one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecuritySignals {
    /// The AFI (HF tag AFI, or the UHF PC word AFI).
    pub afi: Option<u8>,
    /// The EAS bit.
    pub eas: Option<bool>,
    /// The site EPC layout's security bit, read as "secured".
    pub epc_secured: Option<bool>,
    /// The loans cache's answer: on loan or not.
    pub on_loan: Option<bool>,
}

impl SecurityConfig {
    /// The state the signals give under this site's rules.
    pub fn evaluate(&self, signals: &SecuritySignals) -> Security {
        let from_flag = |secured: Option<bool>| match secured {
            Some(true) => Security::Secured,
            Some(false) => Security::Unsecured,
            None => Security::Unknown,
        };
        match self.mode {
            SecurityMode::Afi => match signals.afi {
                Some(afi) if afi == self.secured_afi => Security::Secured,
                Some(afi) if afi == self.unsecured_afi => Security::Unsecured,
                _ => Security::Unknown,
            },
            SecurityMode::Eas => from_flag(signals.eas),
            SecurityMode::EpcBit => from_flag(signals.epc_secured),
            SecurityMode::Database => from_flag(signals.on_loan.map(|on_loan| !on_loan)),
        }
    }

    /// The AFI to write for a state, in AFI mode (transaction first, tag second: §3.5).
    pub const fn afi_for(&self, secured: bool) -> u8 {
        if secured {
            self.secured_afi
        } else {
            self.unsecured_afi
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_reads_its_own_signal() {
        let signals = |afi, eas, epc, loan| SecuritySignals {
            afi,
            eas,
            epc_secured: epc,
            on_loan: loan,
        };
        let cases = [
            (
                SecurityMode::Afi,
                signals(Some(0x07), None, None, None),
                Security::Secured,
            ),
            (
                SecurityMode::Afi,
                signals(Some(0xC2), Some(true), None, None),
                Security::Unsecured,
            ),
            (
                SecurityMode::Afi,
                signals(Some(0x00), None, None, None),
                Security::Unknown,
            ),
            (
                SecurityMode::Afi,
                signals(None, Some(true), None, None),
                Security::Unknown,
            ),
            (
                SecurityMode::Eas,
                signals(Some(0x07), Some(false), None, None),
                Security::Unsecured,
            ),
            (
                SecurityMode::Eas,
                signals(None, Some(true), None, None),
                Security::Secured,
            ),
            (
                SecurityMode::EpcBit,
                signals(None, None, Some(true), None),
                Security::Secured,
            ),
            (
                SecurityMode::Database,
                signals(Some(0x07), None, None, None),
                Security::Unknown,
            ),
            (
                SecurityMode::Database,
                signals(None, None, None, Some(true)),
                Security::Unsecured,
            ),
            (
                SecurityMode::Database,
                signals(None, None, None, Some(false)),
                Security::Secured,
            ),
        ];
        for (mode, signals, expected) in cases {
            let config = SecurityConfig {
                mode,
                ..SecurityConfig::default()
            };
            assert_eq!(config.evaluate(&signals), expected, "{mode:?} {signals:?}");
        }
    }

    #[test]
    fn a_3m_site_pair_is_honoured() {
        let config = SecurityConfig {
            mode: SecurityMode::Afi,
            secured_afi: 0xDA,
            unsecured_afi: 0xD7,
        };
        assert_eq!(
            config.evaluate(&SecuritySignals {
                afi: Some(0xDA),
                ..Default::default()
            }),
            Security::Secured
        );
        assert_eq!(
            config.evaluate(&SecuritySignals {
                afi: Some(0x07),
                ..Default::default()
            }),
            Security::Unknown
        );
        assert_eq!(config.afi_for(false), 0xD7);
    }
}
