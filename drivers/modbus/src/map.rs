//! The register map: which Modbus addresses a sorter's PLC uses for what.
//!
//! No public register map for library sorters exists (PROTOCOLS.md §4.6), so every address
//! comes from the config. A bin is diverted to in one of two ways, as the PLC is programmed:
//!
//! * **register**: the bin number (1-based) is written into one holding register
//!   (function `06`), optionally set back to 0 a moment later;
//! * **coils**: one coil per bin is switched on (function `05`) and off again after a
//!   pulse.
//!
//! Bin-full and jam come from discrete inputs (function `02`), read in one request that
//! covers every mapped input. Addresses are the PDU addresses on the wire, counted from 0:
//! a PLC manual's "10001" or "40101" is 0 or 100 here.
//!
//! Everything here is pure: the map is checked once from its settings, and turns a bin
//! into the write that diverts to it and a reply's input bits into a [`SorterState`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rfidgw_driver::SorterState;
use serde::{Deserialize, Serialize};

use crate::settings::SettingsError;

/// A Modbus data address (PDU address, 0-based).
pub type Address = u16;

/// Most discrete inputs one read may ask for (Modbus Application Protocol V1.1b3 §6.2:
/// quantity of inputs 1 to 2000, `0x7D0`).
pub const MAX_READ_INPUTS: u16 = 2000;

/// Longest diverter pulse the map accepts, in milliseconds. A diverter held longer is
/// held, not pulsed; that is the `register` kind's job.
pub const MAX_PULSE_MS: u64 = 10_000;

/// The `map` table of a Modbus sorter's settings, as written in the config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapSettings {
    /// Number of bins; bins are numbered 1 to `bins`, as the sort plan numbers them.
    pub bins: u16,
    /// How a divert to a bin is written.
    pub divert: DivertSettings,
    /// The discrete input of each bin's "full" signal, bin 1 first; empty when the sorter
    /// reports no bin-full.
    #[serde(default)]
    pub bin_full: Vec<Address>,
    /// The discrete input that is on while the sorter is jammed.
    #[serde(default)]
    pub jam: Option<Address>,
    /// The inputs are fail-safe wired: 1 means "not full" / "not jammed", so a broken
    /// wire reads as full or jammed.
    #[serde(default)]
    pub active_low: bool,
}

/// How a divert is written (`map.divert`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DivertSettings {
    /// The bin number goes into one holding register.
    Register {
        /// The holding register's address.
        register: Address,
        /// Write 0 into the register this long after each divert; 0 leaves the bin number
        /// there (the PLC clears it itself).
        #[serde(default)]
        clear_after_ms: u64,
    },
    /// One coil per bin, pulsed on.
    Coils {
        /// The coil of each bin, bin 1 first.
        coils: Vec<Address>,
        /// How long a coil stays on, in milliseconds.
        #[serde(default = "default_pulse_ms")]
        pulse_ms: u64,
    },
}

fn default_pulse_ms() -> u64 {
    300
}

/// The discrete inputs one poll reads: `count` inputs from `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputWindow {
    /// The first input's address.
    pub first: Address,
    /// How many inputs (1 to [`MAX_READ_INPUTS`]).
    pub count: u16,
}

/// How the checked map diverts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Divert {
    /// The bin number into a holding register.
    Register {
        /// The holding register.
        register: Address,
        /// When set, 0 is written this long after each divert.
        clear_after: Option<Duration>,
    },
    /// A coil per bin.
    Coils {
        /// The coil of bin `n` at index `n - 1`.
        coils: Vec<Address>,
        /// How long a coil stays on.
        pulse: Duration,
    },
}

/// One write on the line: what a divert, or the release that follows it, sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Write {
    /// Write single register (function `06`).
    Register {
        /// The holding register.
        address: Address,
        /// The value.
        value: u16,
    },
    /// Write single coil (function `05`).
    Coil {
        /// The coil.
        address: Address,
        /// On or off.
        on: bool,
    },
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Register { address, value } => {
                write!(f, "write holding register {address} = {value}")
            }
            Self::Coil { address, on } => {
                write!(f, "write coil {address} {}", if *on { "on" } else { "off" })
            }
        }
    }
}

/// What diverting to one bin takes: a write now and maybe a second one later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DivertPlan {
    /// The write that diverts.
    pub write: Write,
    /// The write that releases it (coil off, register back to 0), and after how long.
    pub release: Option<(Duration, Write)>,
}

/// A bin the map does not have: the command is refused before anything is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bin {bin} is not on this sorter (its map has bins 1 to {bins})")]
pub struct BinOutOfRange {
    /// The bin asked for.
    pub bin: u16,
    /// The bins the map has.
    pub bins: u16,
}

/// A checked register map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterMap {
    bins: u16,
    divert: Divert,
    bin_full: Vec<Address>,
    jam: Option<Address>,
    active_low: bool,
    window: Option<InputWindow>,
}

impl RegisterMap {
    /// Checks the settings; an error names the key below `map` (`map.divert.coils: …`).
    pub fn new(settings: &MapSettings) -> Result<Self, SettingsError> {
        let bins = settings.bins;
        if bins == 0 {
            return Err(SettingsError::new(
                "map.bins",
                "0 bins: a sorter has at least one bin",
            ));
        }
        let divert = match &settings.divert {
            DivertSettings::Register {
                register,
                clear_after_ms,
            } => Divert::Register {
                register: *register,
                clear_after: (*clear_after_ms > 0).then(|| Duration::from_millis(*clear_after_ms)),
            },
            DivertSettings::Coils { coils, pulse_ms } => {
                one_per_bin("map.divert.coils", "coils", coils, bins)?;
                no_repeats("map.divert.coils", "coil", coils)?;
                if *pulse_ms == 0 || *pulse_ms > MAX_PULSE_MS {
                    return Err(SettingsError::new(
                        "map.divert.pulse_ms",
                        format!(
                            "{pulse_ms} is not 1 to {MAX_PULSE_MS} ms (how long a bin's coil stays on; default 300)"
                        ),
                    ));
                }
                Divert::Coils {
                    coils: coils.clone(),
                    pulse: Duration::from_millis(*pulse_ms),
                }
            }
        };
        if !settings.bin_full.is_empty() {
            one_per_bin("map.bin_full", "inputs", &settings.bin_full, bins)?;
            no_repeats("map.bin_full", "input", &settings.bin_full)?;
        }
        if let Some(jam) = settings.jam
            && let Some(index) = settings.bin_full.iter().position(|a| *a == jam)
        {
            return Err(SettingsError::new(
                "map.jam",
                format!("input {jam} is also bin {}'s bin_full input", index + 1),
            ));
        }
        let window = input_window(&settings.bin_full, None)
            .map_err(|message| SettingsError::new("map.bin_full", message))?;
        let window = match settings.jam {
            Some(jam) => input_window(&settings.bin_full, Some(jam))
                .map_err(|message| SettingsError::new("map.jam", message))?,
            None => window,
        };
        Ok(Self {
            bins,
            divert,
            bin_full: settings.bin_full.clone(),
            jam: settings.jam,
            active_low: settings.active_low,
            window,
        })
    }

    /// The number of bins (numbered 1 to this).
    pub fn bins(&self) -> u16 {
        self.bins
    }

    /// How this map diverts.
    pub fn divert(&self) -> &Divert {
        &self.divert
    }

    /// The discrete inputs one poll reads; `None` when the map has no inputs.
    pub fn input_window(&self) -> Option<InputWindow> {
        self.window
    }

    /// The writes that divert to `bin`, or why there is no such bin.
    pub fn divert_plan(&self, bin: u16) -> Result<DivertPlan, BinOutOfRange> {
        if bin == 0 || bin > self.bins {
            return Err(BinOutOfRange {
                bin,
                bins: self.bins,
            });
        }
        Ok(match &self.divert {
            Divert::Register {
                register,
                clear_after,
            } => DivertPlan {
                write: Write::Register {
                    address: *register,
                    value: bin,
                },
                release: clear_after.map(|after| {
                    (
                        after,
                        Write::Register {
                            address: *register,
                            value: 0,
                        },
                    )
                }),
            },
            Divert::Coils { coils, pulse } => {
                let address = coils[usize::from(bin - 1)];
                DivertPlan {
                    write: Write::Coil { address, on: true },
                    release: Some((*pulse, Write::Coil { address, on: false })),
                }
            }
        })
    }

    /// The writes that put every diverter at rest (all bin coils off, the register at 0),
    /// sent when a run starts: a run that ended in the middle of a pulse left a coil on.
    pub fn rest_writes(&self) -> Vec<Write> {
        match &self.divert {
            Divert::Register { clear_after, .. } if clear_after.is_none() => Vec::new(),
            Divert::Register { register, .. } => vec![Write::Register {
                address: *register,
                value: 0,
            }],
            Divert::Coils { coils, .. } => coils
                .iter()
                .map(|&address| Write::Coil { address, on: false })
                .collect(),
        }
    }

    /// The sorter's state from the bits of one read of [`RegisterMap::input_window`],
    /// first input first. An input the slice does not reach reads as "not full" / "not
    /// jammed".
    pub fn sorter_state(&self, bits: &[bool]) -> SorterState {
        let active = |address: Address| {
            let Some(window) = self.window else {
                return false;
            };
            let level = address
                .checked_sub(window.first)
                .and_then(|offset| bits.get(usize::from(offset)))
                .copied();
            level.is_some_and(|level| level != self.active_low)
        };
        SorterState {
            bins_full: (1..=self.bins)
                .zip(&self.bin_full)
                .filter(|(_, address)| active(**address))
                .map(|(bin, _)| bin)
                .collect(),
            jam: self.jam.is_some_and(active),
        }
    }

    /// The level a PLC shows on discrete input `address` in `state` (the simulator's side
    /// of [`RegisterMap::sorter_state`]); inputs the map does not name read 0.
    pub fn input_level(&self, address: Address, state: &SorterState) -> bool {
        let active = if self.jam == Some(address) {
            state.jam
        } else if let Some(index) = self.bin_full.iter().position(|a| *a == address) {
            state.bins_full.contains(&(index as u16 + 1))
        } else {
            return false;
        };
        active != self.active_low
    }

    /// The bin whose coil is at `address` (coils kind).
    pub fn bin_of_coil(&self, address: Address) -> Option<u16> {
        match &self.divert {
            Divert::Coils { coils, .. } => coils
                .iter()
                .position(|a| *a == address)
                .map(|index| index as u16 + 1),
            Divert::Register { .. } => None,
        }
    }
}

/// One address per bin, or an error naming the key.
fn one_per_bin(
    key: &str,
    what: &str,
    addresses: &[Address],
    bins: u16,
) -> Result<(), SettingsError> {
    if addresses.len() == usize::from(bins) {
        return Ok(());
    }
    Err(SettingsError::new(
        key,
        format!(
            "{} {what} for {bins} bins: give one per bin, bin 1 first",
            addresses.len()
        ),
    ))
}

/// No address twice, or an error naming both bins.
fn no_repeats(key: &str, what: &str, addresses: &[Address]) -> Result<(), SettingsError> {
    let mut seen = BTreeMap::new();
    for (index, address) in addresses.iter().enumerate() {
        if let Some(first) = seen.insert(*address, index) {
            return Err(SettingsError::new(
                key,
                format!(
                    "{what} {address} is given for bins {} and {}",
                    first + 1,
                    index + 1
                ),
            ));
        }
    }
    Ok(())
}

/// The smallest read covering `inputs` and `jam`, or why one read cannot cover them.
fn input_window(inputs: &[Address], jam: Option<Address>) -> Result<Option<InputWindow>, String> {
    let all = || inputs.iter().copied().chain(jam);
    let (Some(first), Some(last)) = (all().min(), all().max()) else {
        return Ok(None);
    };
    let span = u32::from(last) - u32::from(first) + 1;
    if span > u32::from(MAX_READ_INPUTS) {
        return Err(format!(
            "inputs {first} to {last} span {span}; one read (function 02) covers at most \
             {MAX_READ_INPUTS}: map the sorter's inputs closer together"
        ));
    }
    Ok(Some(InputWindow {
        first,
        count: span as u16,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> MapSettings {
        toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    const REGISTER_SIX: &str = r#"
        bins = 6
        bin_full = [0, 1, 2, 3, 4, 5]
        jam = 8
        divert = { kind = "register", register = 100 }
    "#;

    const COILS_THREE: &str = r#"
        bins = 3
        bin_full = [12, 10, 11]
        divert = { kind = "coils", coils = [16, 17, 20], pulse_ms = 250 }
    "#;

    #[test]
    fn a_bin_maps_to_its_write_and_release() {
        let register = RegisterMap::new(&settings(REGISTER_SIX)).unwrap();
        let cleared = RegisterMap::new(&settings(
            "bins = 2\ndivert = { kind = \"register\", register = 7, clear_after_ms = 50 }",
        ))
        .unwrap();
        let coils = RegisterMap::new(&settings(COILS_THREE)).unwrap();
        let reg = |address, value| Write::Register { address, value };
        let coil = |address, on| Write::Coil { address, on };
        let ms = Duration::from_millis;
        // map, bin, expected plan (or the bins it has)
        let cases: [(&RegisterMap, u16, Result<DivertPlan, u16>); 10] = [
            (
                &register,
                1,
                Ok(DivertPlan {
                    write: reg(100, 1),
                    release: None,
                }),
            ),
            (
                &register,
                6,
                Ok(DivertPlan {
                    write: reg(100, 6),
                    release: None,
                }),
            ),
            (&register, 0, Err(6)),
            (&register, 7, Err(6)),
            (&register, u16::MAX, Err(6)),
            (
                &cleared,
                2,
                Ok(DivertPlan {
                    write: reg(7, 2),
                    release: Some((ms(50), reg(7, 0))),
                }),
            ),
            (
                &coils,
                1,
                Ok(DivertPlan {
                    write: coil(16, true),
                    release: Some((ms(250), coil(16, false))),
                }),
            ),
            (
                &coils,
                3,
                Ok(DivertPlan {
                    write: coil(20, true),
                    release: Some((ms(250), coil(20, false))),
                }),
            ),
            (&coils, 4, Err(3)),
            (&coils, 0, Err(3)),
        ];
        for (n, (map, bin, expected)) in cases.into_iter().enumerate() {
            let got = map.divert_plan(bin).map_err(|e| e.bins);
            assert_eq!(got, expected, "case {n}: bin {bin}");
        }
        let refusal = register.divert_plan(9).unwrap_err().to_string();
        assert_eq!(
            refusal,
            "bin 9 is not on this sorter (its map has bins 1 to 6)"
        );
    }

    #[test]
    fn input_bits_become_the_sorter_state() {
        let register = RegisterMap::new(&settings(REGISTER_SIX)).unwrap();
        assert_eq!(
            register.input_window(),
            Some(InputWindow { first: 0, count: 9 })
        );
        let coils = RegisterMap::new(&settings(COILS_THREE)).unwrap();
        assert_eq!(
            coils.input_window(),
            Some(InputWindow {
                first: 10,
                count: 3
            })
        );
        let low = RegisterMap::new(&MapSettings {
            active_low: true,
            ..settings(COILS_THREE)
        })
        .unwrap();
        let state = |bins_full: &[u16], jam| SorterState {
            bins_full: bins_full.to_vec(),
            jam,
        };
        let bits = |text: &str| text.chars().map(|c| c == '1').collect::<Vec<_>>();
        // map, bits from the window's first input, expected state
        let cases = [
            (&register, "000000000", state(&[], false)),
            (&register, "100001000", state(&[1, 6], false)),
            (&register, "000000001", state(&[], true)),
            (&register, "011000011", state(&[2, 3], true)),
            (&register, "0000000", state(&[], false)), // short: the jam input is missing
            (&register, "1", state(&[1], false)),
            (&register, "", state(&[], false)),
            (&register, "0000000011111", state(&[], true)), // longer than asked: ignored
            (&coils, "100", state(&[2], false)),            // input 10 is bin 2's
            (&coils, "001", state(&[1], false)),
            (&coils, "010", state(&[3], false)),
            (&low, "111", state(&[], false)),
            (&low, "011", state(&[2], false)),
            (&low, "", state(&[], false)),
        ];
        for (n, (map, text, expected)) in cases.into_iter().enumerate() {
            assert_eq!(map.sorter_state(&bits(text)), expected, "case {n}: {text}");
        }
    }

    #[test]
    fn the_simulators_levels_read_back_as_the_same_state() {
        for text in [REGISTER_SIX, COILS_THREE] {
            for active_low in [false, true] {
                let map = RegisterMap::new(&MapSettings {
                    active_low,
                    ..settings(text)
                })
                .unwrap();
                let window = map.input_window().unwrap();
                for full_mask in 0u16..8 {
                    for jam in [false, true] {
                        let state = SorterState {
                            bins_full: (1..=3)
                                .filter(|b| full_mask & (1 << (b - 1)) != 0)
                                .collect(),
                            jam: jam && map.jam.is_some(),
                        };
                        let bits: Vec<bool> = (window.first..window.first + window.count)
                            .map(|a| map.input_level(a, &state))
                            .collect();
                        assert_eq!(map.sorter_state(&bits), state, "{text} {active_low}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_map_that_cannot_work_is_refused_naming_the_key() {
        let cases = [
            (
                "bins = 0\ndivert = { kind = \"register\", register = 1 }",
                "map.bins: 0 bins",
            ),
            (
                "bins = 3\ndivert = { kind = \"coils\", coils = [1, 2] }",
                "map.divert.coils: 2 coils for 3 bins: give one per bin, bin 1 first",
            ),
            (
                "bins = 3\ndivert = { kind = \"coils\", coils = [1, 2, 1] }",
                "map.divert.coils: coil 1 is given for bins 1 and 3",
            ),
            (
                "bins = 1\ndivert = { kind = \"coils\", coils = [1], pulse_ms = 0 }",
                "map.divert.pulse_ms: 0 is not 1 to 10000 ms",
            ),
            (
                "bins = 1\ndivert = { kind = \"coils\", coils = [1], pulse_ms = 10001 }",
                "map.divert.pulse_ms: 10001 is not 1 to 10000 ms",
            ),
            (
                "bins = 2\nbin_full = [4]\ndivert = { kind = \"register\", register = 1 }",
                "map.bin_full: 1 inputs for 2 bins",
            ),
            (
                "bins = 2\nbin_full = [4, 4]\ndivert = { kind = \"register\", register = 1 }",
                "map.bin_full: input 4 is given for bins 1 and 2",
            ),
            (
                "bins = 2\nbin_full = [4, 5]\njam = 5\ndivert = { kind = \"register\", register = 1 }",
                "map.jam: input 5 is also bin 2's bin_full input",
            ),
            (
                "bins = 2\nbin_full = [0, 2000]\ndivert = { kind = \"register\", register = 1 }",
                "map.bin_full: inputs 0 to 2000 span 2001",
            ),
            (
                "bins = 2\nbin_full = [0, 1999]\njam = 65535\ndivert = { kind = \"register\", register = 1 }",
                "map.jam: inputs 0 to 65535 span 65536",
            ),
        ];
        for (text, needle) in cases {
            let err = RegisterMap::new(&settings(text)).unwrap_err().to_string();
            assert!(err.starts_with(needle), "{text}\n{err}");
        }
        // The edges that do fit.
        for text in [
            "bins = 2\nbin_full = [0, 1999]\ndivert = { kind = \"register\", register = 1 }",
            "bins = 1\njam = 65535\ndivert = { kind = \"coils\", coils = [65535], pulse_ms = 10000 }",
            "bins = 1\ndivert = { kind = \"register\", register = 0 }",
        ] {
            RegisterMap::new(&settings(text)).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused_by_serde_by_name() {
        for (text, needle) in [
            ("bins = 1\ndivert = { kind = \"relay\" }", "relay"),
            (
                "bins = 1\ndivert = { kind = \"register\", register = 1, pulse_ms = 3 }",
                "pulse_ms",
            ),
            (
                "bins = 1\ndivert = { kind = \"coils\", coil = [1] }",
                "coil",
            ),
            (
                "bins = 1\ndivert = { kind = \"register\", register = 70000 }",
                "70000",
            ),
            (
                "bins = 1\nfull = [1]\ndivert = { kind = \"register\", register = 1 }",
                "full",
            ),
        ] {
            let err = toml::from_str::<MapSettings>(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn at_rest_every_coil_is_off_and_a_cleared_register_is_0() {
        let coils = RegisterMap::new(&settings(COILS_THREE)).unwrap();
        assert_eq!(
            coils.rest_writes(),
            [16, 17, 20].map(|address| Write::Coil { address, on: false })
        );
        let register = RegisterMap::new(&settings(REGISTER_SIX)).unwrap();
        assert_eq!(register.rest_writes(), [], "the PLC clears it itself");
        let cleared = RegisterMap::new(&settings(
            "bins = 2\ndivert = { kind = \"register\", register = 7, clear_after_ms = 50 }",
        ))
        .unwrap();
        assert_eq!(
            cleared.rest_writes(),
            [Write::Register {
                address: 7,
                value: 0
            }]
        );
        assert_eq!(coils.bin_of_coil(20), Some(3));
        assert_eq!(coils.bin_of_coil(18), None);
        assert_eq!(register.bin_of_coil(16), None);
    }
}
