//! The `simulator` settings table shared by the HF reader simulators (FEIG, 3M 810).
//!
//! Both virtual readers take the same script: tags with a UID, AFI, DSFID, EAS bit and
//! user memory that enter the field at `at_ms` and leave after `stay_ms`.
//! [`SimulatorSettings::entries`] checks it once, driver-neutrally; each driver turns the
//! [`ScriptEntry`]s into its own virtual tags.
//!
//! ```toml
//! [devices.settings.simulator]
//! round_ms = 6000                 # the script repeats every 6 s (0 = play once)
//! [[devices.settings.simulator.tags]]
//! uid = "E004010031269117"
//! afi = "07"
//! memory = "11010000 …"
//! at_ms = 0
//! stay_ms = 3000
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Uid, hex_serde};

/// ISO 15693 UID length in bytes (ISO/IEC 15693-3 §4.1).
pub const UID_LEN: usize = 8;

/// Bytes per user-memory block of an ICODE SLIX tag (PROTOCOLS.md §4.1).
pub const BLOCK_SIZE: usize = 4;

/// ICODE SLIX user memory: 28 blocks of 4 bytes (PROTOCOLS.md §4.1); every simulated tag
/// gets at least this much.
pub const MIN_BLOCKS: usize = 28;

/// Block numbers are one byte on the air and in the readers' requests.
pub const MAX_BLOCKS: usize = 255;

/// The virtual reader's script (the same keys and defaults for every HF simulator).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorSettings {
    /// Length of one round in milliseconds; the script repeats after it (0 = play once).
    pub round_ms: u64,
    /// The tags and when they are in the field (on the pad).
    pub tags: Vec<SimTagSettings>,
    /// Digital input levels over the round (a gate's light barriers; FEIG only).
    pub inputs: Vec<SimInputStep>,
}

/// From `at_ms` into each round, the reader's inputs have `levels` (bit 0 = input 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimInputStep {
    /// When, in milliseconds from the start of the round.
    pub at_ms: u64,
    /// The input levels from then on, bits 0–2 = inputs 1–3.
    pub levels: u8,
}

/// One scripted virtual tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTagSettings {
    /// UID, 8 bytes hex MSB first (`E004…`).
    pub uid: Uid,
    /// AFI (hex byte).
    #[serde(default, with = "hex_serde::byte")]
    pub afi: u8,
    /// DSFID (hex byte).
    #[serde(default, with = "hex_serde::byte")]
    pub dsfid: u8,
    /// NXP EAS bit.
    #[serde(default)]
    pub eas: bool,
    /// User memory, hex, block 0 first; padded with zeros to 28 blocks.
    #[serde(default, with = "hex_serde::bytes")]
    pub memory: Vec<u8>,
    /// When the tag enters the field (is put on the pad), from the start of the round, in
    /// milliseconds.
    #[serde(default)]
    pub at_ms: u64,
    /// How long it stays, in milliseconds; absent = it stays.
    #[serde(default)]
    pub stay_ms: Option<u64>,
}

/// One checked tag of a script, ready for a driver's simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptEntry {
    /// UID, MSB first.
    pub uid: [u8; UID_LEN],
    /// Application family identifier.
    pub afi: u8,
    /// Data storage format identifier.
    pub dsfid: u8,
    /// The NXP EAS bit.
    pub eas: bool,
    /// User memory, block 0 first, zero-padded to whole blocks and at least
    /// [`MIN_BLOCKS`], at most [`MAX_BLOCKS`].
    pub memory: Vec<u8>,
    /// When it enters the field, from the start of the round.
    pub at: Duration,
    /// How long it stays; `None` = it stays.
    pub stay: Option<Duration>,
}

/// Why a script cannot be played, naming the key (`simulator.tags[0].uid`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ScriptError {
    /// The settings key below the device's settings table.
    pub key: String,
    /// What is wrong and what would work.
    pub message: String,
}

impl SimulatorSettings {
    /// The script's tags, checked: 8-byte UIDs, memory padded to whole blocks and at least
    /// 28 of them, at most 255.
    pub fn entries(&self) -> Result<Vec<ScriptEntry>, ScriptError> {
        self.tags
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let uid = <[u8; UID_LEN]>::try_from(t.uid.as_bytes()).map_err(|_| ScriptError {
                    key: format!("simulator.tags[{i}].uid"),
                    message: format!("{} is not 8 bytes (16 hex digits, ISO 15693)", t.uid),
                })?;
                let blocks = t.memory.len().div_ceil(BLOCK_SIZE).max(MIN_BLOCKS);
                if blocks > MAX_BLOCKS {
                    return Err(ScriptError {
                        key: format!("simulator.tags[{i}].memory"),
                        message: format!("{} bytes are more than 255 blocks", t.memory.len()),
                    });
                }
                let mut memory = t.memory.clone();
                memory.resize(blocks * BLOCK_SIZE, 0);
                Ok(ScriptEntry {
                    uid,
                    afi: t.afi,
                    dsfid: t.dsfid,
                    eas: t.eas,
                    memory,
                    at: Duration::from_millis(t.at_ms),
                    stay: t.stay_ms.map(Duration::from_millis),
                })
            })
            .collect()
    }
}

/// Plays a script's timeline: for every entry `(at, stay)` calls `apply(index, true)` when
/// it enters and, if it has a `stay`, `apply(index, false)` when it leaves, in time order
/// from the start of each round. With `repeat` it starts again every `round` (at least
/// 1 ms); otherwise it returns after the last step. Uses `tokio::time`, so simulators run
/// under paused time in tests.
pub async fn play_timeline(
    timeline: &[(Duration, Option<Duration>)],
    round: Duration,
    repeat: bool,
    mut apply: impl FnMut(usize, bool),
) {
    let mut steps: Vec<(Duration, bool, usize)> = Vec::new();
    for (index, (at, stay)) in timeline.iter().enumerate() {
        steps.push((*at, true, index));
        if let Some(stay) = stay {
            steps.push((at.saturating_add(*stay), false, index));
        }
    }
    // Stable: a tag leaving at the same instant another enters keeps script order.
    steps.sort_by_key(|(at, _, _)| *at);
    loop {
        let start = tokio::time::Instant::now();
        for (at, enter, index) in &steps {
            // A script time too far out for the clock never comes.
            let Some(due) = start.checked_add(*at) else {
                return;
            };
            tokio::time::sleep_until(due).await;
            apply(*index, *enter);
        }
        if !repeat {
            return;
        }
        let Some(next_round) = start.checked_add(round.max(Duration::from_millis(1))) else {
            return;
        };
        tokio::time::sleep_until(next_round).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(uid: &str, memory: Vec<u8>) -> SimTagSettings {
        SimTagSettings {
            uid: Uid::from_hex(uid).unwrap(),
            afi: 0x07,
            dsfid: 0x01,
            eas: true,
            memory,
            at_ms: 1000,
            stay_ms: Some(3000),
        }
    }

    #[test]
    fn memory_is_padded_to_whole_blocks_and_at_least_28() {
        let cases = [
            (Vec::new(), 28 * 4),
            (vec![0x11, 0x01], 28 * 4),
            (vec![0xAA; 29 * 4 - 1], 29 * 4),
            (vec![0xAA; 255 * 4], 255 * 4),
        ];
        for (memory, padded) in cases {
            let settings = SimulatorSettings {
                inputs: Vec::new(),
                round_ms: 0,
                tags: vec![tag("E004010031269117", memory.clone())],
            };
            let entries = settings.entries().unwrap();
            let entry = &entries[0];
            assert_eq!(entry.memory.len(), padded, "{} bytes", memory.len());
            assert_eq!(entry.memory[..memory.len()], memory[..]);
            assert!(entry.memory[memory.len()..].iter().all(|b| *b == 0));
            assert_eq!(entry.uid, [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17]);
            assert_eq!((entry.afi, entry.dsfid, entry.eas), (0x07, 0x01, true));
            assert_eq!(
                (entry.at, entry.stay),
                (Duration::from_secs(1), Some(Duration::from_secs(3)))
            );
        }
    }

    #[test]
    fn a_bad_tag_is_refused_by_its_key() {
        let cases = [
            (
                tag("E004", Vec::new()),
                "simulator.tags[1].uid",
                "E004 is not 8 bytes (16 hex digits, ISO 15693)",
            ),
            (
                tag("E004010031269117", vec![0; 255 * 4 + 1]),
                "simulator.tags[1].memory",
                "1021 bytes are more than 255 blocks",
            ),
        ];
        for (bad, key, message) in cases {
            let settings = SimulatorSettings {
                inputs: Vec::new(),
                round_ms: 0,
                tags: vec![tag("E004010031269118", Vec::new()), bad],
            };
            let error = settings.entries().unwrap_err();
            assert_eq!((error.key.as_str(), error.message.as_str()), (key, message));
            assert_eq!(error.to_string(), format!("{key}: {message}"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeline_plays_entries_and_departures_in_time_order() {
        let start = tokio::time::Instant::now();
        let timeline = [
            (Duration::from_millis(100), Some(Duration::from_millis(300))),
            (Duration::from_millis(200), Some(Duration::from_millis(100))),
            (Duration::from_millis(250), None),
        ];
        let mut seen = Vec::new();
        play_timeline(
            &timeline,
            Duration::from_secs(1),
            false,
            |index, entered| {
                seen.push((start.elapsed().as_millis(), index, entered));
            },
        )
        .await;
        assert_eq!(
            seen,
            [
                (100, 0, true),
                (200, 1, true),
                (250, 2, true),
                (300, 1, false),
                (400, 0, false)
            ]
        );
    }
}
