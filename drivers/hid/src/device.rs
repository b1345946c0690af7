//! The `hid` device: a keyboard-wedge card reader delivering [`DeviceEvent::Card`]s.
//!
//! ```toml
//! [[devices]]
//! id = "patron-card"
//! driver = "hid"
//! [devices.settings]
//! vid = "08FF"              # USB vendor id (hex text or integer)
//! pid = "0009"              # USB product id
//! serial = "A1B2C3"         # optional: only this reader
//! bus_path = "1-1.4"        # optional: only the reader on this port
//! interface = 0             # HID interface (default 0)
//! endpoint = "81"           # interrupt IN endpoint (default 81)
//! layout = "fr"             # us | uk | de | fr: the host layout the reader types for
//! terminator = "enter"      # enter | tab | none
//! key_timeout_ms = 200      # a longer pause drops a half-typed number
//! max_length = 64
//! [devices.settings.recorded]   # demo / tests: replay instead of USB
//! cards = ["0012345678", "0087654321"]   # typed with `layout`, then the terminator
//! key_interval_ms = 8
//! card_interval_ms = 5000
//! repeat = true
//! ```

use std::time::{Duration, SystemTime};

use rfidgw_driver::{
    CardRead, Device, DeviceError, DeviceEvent, DeviceEventSink, DeviceFuture, LineCounters,
    LinkState, hex_serde,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::layout::Layout;
use crate::report::BootReport;
use crate::source::{
    RecordedSource, ReportSource, SourceError, TimedReport, UsbHidSource, UsbTarget, spawn_source,
};
use crate::wedge::{CardAssembler, Terminator, WedgeConfig, WedgeCounters, type_text};

/// Settings of a `hid` device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HidSettings {
    /// USB vendor id.
    #[serde(with = "hex_u16")]
    pub vid: u16,
    /// USB product id.
    #[serde(with = "hex_u16")]
    pub pid: u16,
    /// Only the reader with this USB serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Only the reader at this bus path (`"1-1.4"`).
    #[serde(default)]
    pub bus_path: Option<String>,
    /// HID interface number.
    #[serde(default)]
    pub interface: u8,
    /// Interrupt IN endpoint.
    #[serde(default = "default_endpoint", with = "hex_serde::byte")]
    pub endpoint: u8,
    /// The host keyboard layout the reader is set up for.
    #[serde(default)]
    pub layout: Layout,
    /// What ends a card number.
    #[serde(default)]
    pub terminator: Terminator,
    /// A longer pause between keys drops a half-typed number (ends it without terminator).
    #[serde(default = "default_key_timeout_ms")]
    pub key_timeout_ms: u64,
    /// Longer numbers are dropped.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Replay these instead of reading USB (demo and tests).
    #[serde(default)]
    pub recorded: Option<RecordedSettings>,
}

/// A recorded reader for the demo: card numbers typed with the reader's layout, or raw
/// reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedSettings {
    /// Card numbers, each typed as the reader would, then the terminator.
    #[serde(default)]
    pub cards: Vec<String>,
    /// Raw 8-byte reports as hex, replayed after the cards.
    #[serde(default)]
    pub reports: Vec<String>,
    /// Time between two reports, in milliseconds.
    #[serde(default = "default_key_interval_ms")]
    pub key_interval_ms: u64,
    /// Time between two cards, in milliseconds.
    #[serde(default = "default_card_interval_ms")]
    pub card_interval_ms: u64,
    /// Start over after the last report.
    #[serde(default)]
    pub repeat: bool,
}

fn default_endpoint() -> u8 {
    0x81
}
fn default_key_timeout_ms() -> u64 {
    200
}
fn default_max_length() -> usize {
    64
}
fn default_key_interval_ms() -> u64 {
    8
}
fn default_card_interval_ms() -> u64 {
    5000
}

/// USB ids written as hex text (`"08FF"`, as `lsusb` prints them) or integers.
mod hex_u16 {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Number(i64),
        Hex(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        match Text::deserialize(d)? {
            Text::Number(n) => u16::try_from(n).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{n} is not a USB id (0 to 65535, or hex text \"08FF\")"
                ))
            }),
            Text::Hex(t) => {
                let digits = t.trim().trim_start_matches("0x");
                if digits.is_empty() || digits.len() > 4 {
                    return Err(serde::de::Error::custom(format!(
                        "`{t}` is not a USB id such as \"08FF\""
                    )));
                }
                u16::from_str_radix(digits, 16).map_err(|_| {
                    serde::de::Error::custom(format!("`{t}` is not a USB id such as \"08FF\""))
                })
            }
        }
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` calls it with a reference
    pub fn serialize<S: Serializer>(value: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:04X}"))
    }
}

/// Settings that parse but cannot work, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct HidSettingsError {
    /// The settings key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl HidSettings {
    /// The assembler's configuration.
    pub fn wedge(&self) -> WedgeConfig {
        WedgeConfig {
            layout: self.layout,
            terminator: self.terminator,
            key_timeout: Duration::from_millis(self.key_timeout_ms.max(1)),
            max_length: self.max_length.max(1),
        }
    }

    /// The USB device to open.
    pub fn usb_target(&self) -> UsbTarget {
        UsbTarget {
            vid: self.vid,
            pid: self.pid,
            serial: self.serial.clone(),
            bus_path: self.bus_path.clone(),
            interface: self.interface,
            endpoint: self.endpoint,
        }
    }

    /// The recording to replay, when `recorded` is set; checked.
    pub fn recording(&self) -> Result<Option<RecordedSource>, HidSettingsError> {
        let Some(recorded) = &self.recorded else {
            return Ok(None);
        };
        let key = Duration::from_millis(recorded.key_interval_ms);
        let mut at = Duration::ZERO;
        let mut reports = Vec::new();
        for (i, card) in recorded.cards.iter().enumerate() {
            if let Some(c) = card.chars().find(|c| self.layout.keystroke(*c).is_none()) {
                return Err(HidSettingsError {
                    key: format!("recorded.cards[{i}]"),
                    message: format!("{c:?} cannot be typed on the {:?} layout", self.layout),
                });
            }
            for report in type_text(self.layout, card, self.terminator) {
                reports.push(TimedReport {
                    at,
                    bytes: report.to_bytes().to_vec(),
                });
                at = at.saturating_add(key);
            }
            at = at.saturating_add(Duration::from_millis(recorded.card_interval_ms));
        }
        for (i, text) in recorded.reports.iter().enumerate() {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = hex::decode(&compact)
                .ok()
                .filter(|b| BootReport::parse(b).is_ok())
                .ok_or_else(|| HidSettingsError {
                    key: format!("recorded.reports[{i}]"),
                    message: format!("`{text}` is not an 8-byte report in hex"),
                })?;
            reports.push(TimedReport { at, bytes });
            at = at.saturating_add(key);
        }
        let source = RecordedSource::new(reports);
        Ok(Some(if recorded.repeat {
            source.paced(Some(Duration::from_millis(recorded.card_interval_ms)))
        } else {
            source.paced(None)
        }))
    }
}

/// How the USB thread is polled for a dropped receiver.
const SOURCE_POLL: Duration = Duration::from_millis(100);
/// How often a running reader reports its health.
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);

/// A keyboard-wedge card reader running as a daemon device.
pub struct HidCardReader {
    wedge: WedgeConfig,
    source: Source,
}

enum Source {
    Usb(UsbTarget),
    Given(Box<dyn ReportSource>),
}

impl std::fmt::Debug for HidCardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Usb(target) => format!("usb {:04x}:{:04x}", target.vid, target.pid),
            Source::Given(_) => "given".into(),
        };
        f.debug_struct("HidCardReader")
            .field("wedge", &self.wedge)
            .field("source", &source)
            .finish()
    }
}

/// The wedge's counters in the shared vocabulary; `last_report` is when the reader last
/// sent a HID report (its "last frame").
fn line_counters(c: WedgeCounters, last_report: Option<SystemTime>) -> LineCounters {
    LineCounters {
        last_frame: last_report,
        frames_ok: c.reports.saturating_sub(c.bad_reports),
        bad_frames: c.bad_reports,
        // Keys that typed nothing are this line's "skipped" input.
        bytes_skipped: c.keys_ignored,
        // Half-typed numbers dropped after a pause.
        timeouts: c.partial_dropped,
        attributes_unknown: 0,
    }
}

impl HidCardReader {
    /// A reader from settings: the recording when `recorded` is set, else USB.
    pub fn from_settings(settings: &HidSettings) -> Result<Self, HidSettingsError> {
        let wedge = settings.wedge();
        Ok(match settings.recording()? {
            Some(recording) => Self::with_source(wedge, recording),
            None => Self {
                wedge,
                source: Source::Usb(settings.usb_target()),
            },
        })
    }

    /// A reader over any report source (recorded reports in tests).
    pub fn with_source<S: ReportSource>(wedge: WedgeConfig, source: S) -> Self {
        Self {
            wedge,
            source: Source::Given(Box::new(source)),
        }
    }
}

fn source_error(error: &SourceError) -> DeviceError {
    DeviceError::Transport(std::io::Error::other(error.to_string()))
}

impl Device for HidCardReader {
    fn run(self: Box<Self>, sink: DeviceEventSink, cancel: CancellationToken) -> DeviceFuture {
        Box::pin(async move {
            let source: Box<dyn ReportSource> = match self.source {
                Source::Given(source) => source,
                Source::Usb(target) => {
                    let opened = tokio::task::spawn_blocking(move || UsbHidSource::open(target))
                        .await
                        .map_err(|e| {
                            DeviceError::Transport(std::io::Error::other(e.to_string()))
                        })?;
                    Box::new(opened.map_err(|e| source_error(&e))?)
                }
            };
            let mut reports = spawn_source(source, SOURCE_POLL);
            let mut assembler = CardAssembler::new(self.wedge);
            let mut last_report: Option<SystemTime> = None;
            sink.send(DeviceEvent::Health {
                link: LinkState::Connected,
                counters: line_counters(assembler.counters(), last_report),
            })
            .await?;
            let mut last_at = Duration::ZERO;
            let mut next_health = tokio::time::Instant::now() + HEALTH_INTERVAL;
            let result = loop {
                let item = tokio::select! {
                    () = cancel.cancelled() => break Ok(()),
                    () = tokio::time::sleep_until(next_health) => {
                        next_health = tokio::time::Instant::now() + HEALTH_INTERVAL;
                        sink.send(DeviceEvent::Health {
                            link: LinkState::Connected,
                            counters: line_counters(assembler.counters(), last_report),
                        })
                        .await?;
                        continue;
                    }
                    item = tokio::time::timeout(self.wedge.key_timeout, reports.recv()) => item,
                };
                let cards = match item {
                    // No report for a key timeout: drop (or, without terminator, end) a number.
                    Err(_) => assembler
                        .idle(last_at.saturating_add(self.wedge.key_timeout))
                        .into_iter()
                        .collect(),
                    Ok(Some(Ok(report))) => {
                        last_at = report.at;
                        last_report = Some(SystemTime::now());
                        assembler.feed_bytes(&report.bytes, report.at)
                    }
                    Ok(Some(Err(error))) => break Err(source_error(&error)),
                    Ok(None) => {
                        break Err(DeviceError::Transport(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the USB thread stopped",
                        )));
                    }
                };
                for number in cards {
                    tracing::debug!(device = sink.device(), chars = number.len(), "card read");
                    sink.send(DeviceEvent::Card(CardRead { number })).await?;
                }
            };
            if let Err(error) = &result
                && !matches!(error, DeviceError::SinkClosed(_))
            {
                let _ = sink
                    .send(DeviceEvent::Health {
                        link: LinkState::Disconnected,
                        counters: line_counters(assembler.counters(), last_report),
                    })
                    .await;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_usb_ids_as_hex_or_integers_and_default_the_rest() {
        let settings: HidSettings = toml::from_str("vid = \"08FF\"\npid = 9").unwrap();
        assert_eq!((settings.vid, settings.pid), (0x08FF, 0x0009));
        assert_eq!(settings.endpoint, 0x81);
        assert_eq!(settings.layout, Layout::Us);
        assert_eq!(settings.terminator, Terminator::Enter);
        assert!(settings.recording().unwrap().is_none());
    }

    #[test]
    fn bad_settings_are_refused_by_key() {
        let cases = [
            ("vid = \"08FF\"\npid = 9\nbaud = 1", "baud"),
            ("vid = \"XYZ\"\npid = 9", "XYZ"),
            ("vid = 70000\npid = 9", "70000"),
            ("vid = 1\npid = 9\nlayout = \"dvorak\"", "dvorak"),
            ("vid = 1\npid = 9\nterminator = \"space\"", "space"),
            ("vid = 1\npid = 9\n[recorded]\ncard = []", "card"),
        ];
        for (text, needle) in cases {
            let err = toml::from_str::<HidSettings>(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn a_recording_that_cannot_be_typed_or_parsed_names_the_entry() {
        let settings: HidSettings =
            toml::from_str("vid = 1\npid = 9\n[recorded]\ncards = [\"12\", \"1€\"]").unwrap();
        let err = settings.recording().unwrap_err().to_string();
        assert!(
            err.starts_with("recorded.cards[1]: '€' cannot be typed"),
            "{err}"
        );
        let settings: HidSettings =
            toml::from_str("vid = 1\npid = 9\n[recorded]\nreports = [\"0000\"]").unwrap();
        let err = settings.recording().unwrap_err().to_string();
        assert!(err.starts_with("recorded.reports[0]"), "{err}");
    }
}
