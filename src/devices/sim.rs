//! The `sim` device: plays a script of tags entering and leaving a reader's field.
//!
//! It needs no hardware and no protocol, so the demo and the tests always have reads
//! flowing. Times are relative to the start of each round and use `tokio::time`, so tests
//! run it under paused time.

use std::time::Duration;

use rfidgw_driver::{
    Device, DeviceEvent, DeviceEventSink, DeviceFuture, LineCounters, LinkState, TagRead, Uid,
};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Settings of a `sim` device.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// Length of one round of the script in milliseconds; the script repeats after it.
    pub round_ms: u64,
    /// Play the script once (false) or forever (true).
    #[serde(default = "default_true")]
    pub repeat: bool,
    /// The tags and when they are in the field.
    #[serde(default)]
    pub tags: Vec<SimTag>,
    /// Fail (as if unplugged) this many milliseconds after each start, to show and test
    /// the supervisor's restarts.
    #[serde(default)]
    pub fail_after_ms: Option<u64>,
}

/// One scripted tag.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimTag {
    /// UID, hex MSB first.
    pub uid: Uid,
    /// AFI as two hex digits (e.g. `"07"`).
    #[serde(default, deserialize_with = "hex_byte")]
    pub afi: Option<u8>,
    /// User memory as hex, block 0 first.
    #[serde(default, deserialize_with = "hex_bytes")]
    pub memory: Option<Vec<u8>>,
    /// When the tag enters the field, in milliseconds from the start of the round.
    pub at_ms: u64,
    /// How long it stays, in milliseconds.
    pub stay_ms: u64,
}

fn default_true() -> bool {
    true
}

fn hex_byte<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| {
        u8::from_str_radix(t.trim_start_matches("0x"), 16).map_err(|_| {
            serde::de::Error::custom(format!("`{t}` is not a hex byte such as \"07\""))
        })
    })
    .transpose()
}

fn hex_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| {
        hex::decode(t.replace(' ', ""))
            .map_err(|e| serde::de::Error::custom(format!("memory is not hex ({e})")))
    })
    .transpose()
}

/// A reader that plays [`SimSettings`].
pub struct SimReader {
    settings: SimSettings,
}

impl SimReader {
    /// A reader for these settings.
    pub fn new(settings: SimSettings) -> Self {
        Self { settings }
    }
}

/// One step of the script, in the order it happens within a round.
#[derive(Debug)]
struct Step {
    at: Duration,
    event: DeviceEvent,
}

fn script(settings: &SimSettings) -> Vec<Step> {
    let mut steps = Vec::new();
    for tag in &settings.tags {
        let read = TagRead {
            afi: tag.afi,
            memory: tag.memory.clone(),
            ..TagRead::uid_only(tag.uid.clone())
        };
        steps.push(Step {
            at: Duration::from_millis(tag.at_ms),
            event: DeviceEvent::TagArrived(read),
        });
        steps.push(Step {
            at: Duration::from_millis(tag.at_ms + tag.stay_ms),
            event: DeviceEvent::TagDeparted {
                uid: tag.uid.clone(),
            },
        });
    }
    // Stable sort: a tag that leaves at the same instant another arrives keeps config order.
    steps.sort_by_key(|s| s.at);
    steps
}

impl Device for SimReader {
    fn run(self: Box<Self>, sink: DeviceEventSink, cancel: CancellationToken) -> DeviceFuture {
        Box::pin(async move {
            let steps = script(&self.settings);
            let round = Duration::from_millis(self.settings.round_ms.max(1));
            let fail_at = self
                .settings
                .fail_after_ms
                .map(|ms| Instant::now() + Duration::from_millis(ms));
            let unplugged = async {
                match fail_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(unplugged);
            sink.send(DeviceEvent::Health {
                link: LinkState::Connected,
                counters: LineCounters::default(),
            })
            .await?;
            loop {
                let round_start = Instant::now();
                for step in &steps {
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = &mut unplugged => return Err(simulated_unplug()),
                        () = tokio::time::sleep_until(round_start + step.at) => {}
                    }
                    sink.send(step.event.clone()).await?;
                }
                if !self.settings.repeat {
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = &mut unplugged => return Err(simulated_unplug()),
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = &mut unplugged => return Err(simulated_unplug()),
                    () = tokio::time::sleep_until(round_start + round) => {}
                }
            }
        })
    }
}

fn simulated_unplug() -> rfidgw_driver::DeviceError {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "simulated unplug (fail_after_ms)",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfidgw_driver::DeviceReport;
    use tokio::sync::mpsc;

    fn settings() -> SimSettings {
        toml::from_str(
            r#"
            round_ms = 1000
            [[tags]]
            uid = "E004010031269117"
            afi = "07"
            memory = "1101"
            at_ms = 100
            stay_ms = 300
            [[tags]]
            uid = "E0040100AABBCCDD"
            at_ms = 200
            stay_ms = 100
            "#,
        )
        .unwrap()
    }

    fn kinds(reports: &[DeviceReport]) -> Vec<String> {
        reports
            .iter()
            .map(|r| match &r.event {
                DeviceEvent::TagArrived(t) => format!("+{}", t.uid),
                DeviceEvent::TagDeparted { uid } => format!("-{uid}"),
                other => format!("{other:?}").chars().take(6).collect(),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn sim_plays_arrivals_and_departures_in_time_order_and_repeats() {
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(
            Box::new(SimReader::new(settings()))
                .run(DeviceEventSink::new("sim-1", tx), cancel.clone()),
        );
        let mut reports = Vec::new();
        for _ in 0..9 {
            reports.push(rx.recv().await.unwrap());
        }
        cancel.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(
            kinds(&reports),
            [
                "Health",
                "+E004010031269117",
                "+E0040100AABBCCDD",
                "-E0040100AABBCCDD",
                "-E004010031269117",
                "+E004010031269117",
                "+E0040100AABBCCDD",
                "-E0040100AABBCCDD",
                "-E004010031269117"
            ]
        );
        let DeviceEvent::TagArrived(first) = &reports[1].event else {
            unreachable!()
        };
        assert_eq!(first.afi, Some(0x07));
        assert_eq!(first.memory.as_deref(), Some(&[0x11, 0x01][..]));
        assert!(reports.iter().all(|r| r.device == "sim-1"));
    }

    #[test]
    fn sim_settings_reject_unknown_keys_and_bad_afi() {
        let unknown = toml::from_str::<SimSettings>("round_ms = 1\nspeed = 2").unwrap_err();
        assert!(unknown.message().contains("speed"), "{unknown}");
        let bad_memory = toml::from_str::<SimSettings>(
            "round_ms = 1\n[[tags]]\nuid = \"E0\"\nmemory = \"zz\"\nat_ms = 0\nstay_ms = 1",
        )
        .unwrap_err();
        assert!(
            bad_memory.message().contains("memory is not hex"),
            "{bad_memory}"
        );
        let bad_afi = toml::from_str::<SimSettings>(
            "round_ms = 1\n[[tags]]\nuid = \"E0\"\nafi = \"zz\"\nat_ms = 0\nstay_ms = 1",
        )
        .unwrap_err();
        assert!(bad_afi.message().contains("zz"), "{bad_afi}");
    }
}
