//! The 3M 810 staff pad / 3M RFID Reader Model 210 (PROTOCOLS.md §4.3).
//!
//! Layers, as in every rfidgw driver: [`frame`] (D6 frames in the spec's words, no I/O),
//! [`codec`] (tokio-util framing with resynchronisation), [`driver`] (one command at a
//! time over any byte stream, with the write-then-verify retries this hardware needs),
//! [`sim`] (a virtual pad with scriptable tags and faults) and [`settings`] (the device's
//! config table).

pub mod codec;
pub mod describe;
pub mod driver;
pub mod frame;
pub mod settings;
pub mod sim;

pub use describe::{Direction, describe_frame, describe_frame_as};
pub use driver::{DriverConfig, DriverError, M3m810Reader, WriteCheck};
pub use settings::{M3m810Device, M3m810Settings};
pub use sim::{CheckEasForm, SimPad, VirtualTag};
