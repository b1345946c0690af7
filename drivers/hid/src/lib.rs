//! USB HID keyboard-wedge card readers (PROTOCOLS.md §4.5): patron cards typed as keys.
//!
//! Layers: [`report`] (8-byte boot-keyboard reports), [`layout`] (usage id → character per
//! host layout: us, uk, de, fr), [`wedge`] (key-down edges, Shift, terminator and timeouts
//! → card numbers; pure), [`source`] (rusb on its own thread, or a recording) and
//! [`device`] (the daemon device sending [`rfidgw_driver::DeviceEvent::Card`]).
//! Read-only: these readers cannot write tags.

pub mod device;
pub mod layout;
pub mod report;
pub mod source;
pub mod wedge;

pub use device::{HidCardReader, HidSettings, HidSettingsError, RecordedSettings};
pub use layout::{Key, Layout};
pub use report::{BootReport, ReportError};
pub use source::{RecordedSource, ReportSource, SourceError, TimedReport, UsbHidSource, UsbTarget};
pub use wedge::{CardAssembler, Terminator, WedgeConfig, WedgeCounters, type_text};
