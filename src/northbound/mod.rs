//! The northbound side: what the gateway tells library systems, kiosk UIs, dashboards and
//! building automation. One public event format ([`event::PublicEvent`], version 1) for the
//! API, Server-Sent Events, MQTT and webhooks alike, and the durable outbox
//! ([`outbox::Outbox`]) every consumer reads the journal through. MQTT ([`mqtt`]) and
//! webhooks ([`webhook`]) deliver from it ([`delivery`] starts them).

pub mod delivery;
pub mod event;
pub mod mqtt;
pub mod outbox;
pub mod webhook;

use serde::{Deserialize, Serialize};

/// `[northbound]`: what the site calls itself and what it lets out.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NorthboundConfig {
    /// The site's name in every public event and MQTT topic (`rfidgw/<site>/…`): letters,
    /// digits, `-` and `_`.
    pub site: String,
    /// Whether patron ids (a card number read at a self-check station) may leave the
    /// gateway in public events. Names, PINs and passwords never do.
    pub patron_ids: bool,
    /// The journal is never pruned past the slowest consumer's cursor, unless that consumer
    /// is more than this many events behind: then its oldest events go (an alert says so)
    /// so a dead consumer cannot fill the disk.
    pub max_lag_events: u64,
}

impl Default for NorthboundConfig {
    fn default() -> Self {
        Self {
            site: "library".into(),
            patron_ids: false,
            max_lag_events: 1_000_000,
        }
    }
}

impl NorthboundConfig {
    /// The key and problem of an unusable setting.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.site.is_empty() || !self.site.chars().all(ok) {
            return Err((
                "northbound.site".into(),
                format!(
                    "`{}` is not a usable site name: letters, digits, `-` and `_` only (it is an MQTT topic level)",
                    self.site
                ),
            ));
        }
        if self.max_lag_events == 0 {
            return Err((
                "northbound.max_lag_events".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
