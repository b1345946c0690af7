//! rfidgw: library RFID hardware (gates, sorters, self-check pads) to any library system.
//!
//! The daemon's library. `main.rs` is a thin CLI over it; every module here can be used
//! and tested on its own. See README.md for the architecture.

pub mod api;
pub mod app;
pub mod bus;
pub mod cli;
pub mod config;
pub mod devices;
pub mod ils;
pub mod logging;
pub mod metrics;
pub mod northbound;
pub mod notify;
pub mod pipeline;
pub mod preflight;
pub mod registry;
pub mod rfc3339;
pub mod sipface;
pub mod station;
pub mod status;
pub mod store;
pub mod supervisor;
