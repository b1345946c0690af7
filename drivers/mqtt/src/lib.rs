//! Devices that speak MQTT, for rfidgw: a gate controller that publishes tag reads and
//! takes alarm-output commands, a sorter that takes divert commands and reports full bins
//! (DESIGN.md, issue 10). They are drivers like any other: the daemon runs an
//! [`MqttDevice`] under its supervisor, its reports go through the same pipeline, and
//! stations reach it through the same [`rfidgw_driver::DeviceHandle`].
//!
//! The topics and JSON payloads are documented in this crate's README.md, with examples;
//! in short, under the device's prefix (`rfidgw/devices/<device id>` by default):
//!
//! ```text
//! device  → gateway  <prefix>/status     {"state":"online"}             retained; {"state":"offline"} is the last will
//! device  → gateway  <prefix>/tags       {"event":"arrived","uid":"E004010031269117","afi":"07","dsfid":"00","memory":"1101…"}
//!                                        {"event":"departed","uid":"E004010031269117"}
//! device  → gateway  <prefix>/inputs     {"levels":3,"changed":1}
//! device  → gateway  <prefix>/sorter     {"bins_full":[2],"jam":false}  retained
//! gateway → device   <prefix>/cmd        {"id":"5f1c2a7e-1","command":"output","beeper":"flash","red":"on","green":"off","signal_ms":3000,"deadline_ms":500}
//!                                        {"id":"5f1c2a7e-2","command":"divert","bin":3,"deadline_ms":2000}
//! device  → gateway  <prefix>/cmd/reply  {"id":"5f1c2a7e-1","ok":true}
//!                                        {"id":"5f1c2a7e-2","ok":false,"error":"diverter 3 blocked"}
//! gateway → device   <prefix>/gateway    {"state":"online"}             retained; {"state":"offline"} is the gateway's last will
//! ```
//!
//! The layers, as in the other drivers:
//!
//! * [`protocol`]: topics and payloads in plain types, parsing and encoding, no I/O (fuzzed);
//! * [`session`]: the gateway's state for one device (commands in flight matched to replies
//!   by id with their deadlines, tags present, presence), no I/O;
//! * [`link`]: one broker connection as a client handle plus one task (rumqttc);
//! * [`device`]: [`MqttDevice`], the run loop the supervisor calls;
//! * [`sim`]: [`SimulatedDevice`], the device side on a real broker, for tests and the demo.
//!
//! [`settings`] holds the `[devices.settings]` of a `driver = "mqtt"` device.

pub mod device;
pub mod link;
pub mod protocol;
pub mod session;
pub mod settings;
pub mod sim;

pub use device::MqttDevice;
pub use protocol::{Channel, DeviceMessage, Presence, Problem, Topics};
pub use settings::{MqttSettings, Role, SettingsError};
pub use sim::{Behaviour, SimHandle, SimulatedDevice};
