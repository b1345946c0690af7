//! Sorters (automated material handling) driven by a PLC over Modbus, for rfidgw
//! (PROTOCOLS.md §4.6).
//!
//! The layers, as in the rest of rfidgw, with tokio-modbus doing the framing:
//!
//! * [`map`]: the register map from config, checked; turns a bin into the write that
//!   diverts to it and the inputs into a [`rfidgw_driver::SorterState`] (pure, no I/O);
//! * [`reply`]: the requests the driver sends and the checks on their replies;
//! * [`link`]: [`ModbusLink`], one tokio-modbus client (RTU or TCP framing) over any
//!   transport, with reply timeouts, the RTU silent interval and line counters;
//! * [`sorter`]: the run loop (poll inputs, report changes, serve diverts, release
//!   diverters);
//! * [`sim`]: a simulated sorter behind a real tokio-modbus server, with bins that fill up
//!   and a jam, used by the demo and the tests.
//!
//! [`settings`] holds the `[devices.settings]` of a `driver = "modbus"` device and
//! [`ModbusDevice`] runs it under the daemon's supervisor.
//!
//! A station diverts with [`rfidgw_driver::DeviceCommand::Divert`] through the device's
//! [`rfidgw_driver::DeviceHandle`] and learns bin-full and jam from
//! [`rfidgw_driver::DeviceEvent::Sorter`] on the event bus.

pub mod device;
pub mod link;
pub mod map;
pub mod reply;
pub mod settings;
pub mod sim;
pub mod sorter;

pub use device::ModbusDevice;
pub use link::{Framing, LinkError, ModbusLink};
pub use map::{RegisterMap, Write};
pub use settings::{ModbusSettings, SettingsError};
pub use sim::{Fault, SimHandle, SorterSimulator};
