//! rfidgw: library RFID hardware to any library system.
pub mod cli;
pub mod devices;
