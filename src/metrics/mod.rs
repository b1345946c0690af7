//! Metrics: what the daemon counts, served at `/metrics` in the Prometheus text format.
//!
//! Three parts:
//!
//! * [`exposition`]: the text format (version 0.0.4) and the counter and histogram
//!   families, written here rather than taken from a client library: the daemon needs
//!   labelled counters, one histogram and scrape-time gauges, nothing more.
//! * [`events`]: **one place per occurrence.** A gate alarm, a return, an ILS request, a
//!   device failure… is one type whose `emit()` writes the structured `tracing` event and
//!   bumps its counter together, so logs and metrics never drift apart. Call sites emit the
//!   occurrence instead of logging it.
//! * [`render`]: the page. Counters come from the occurrences (process-wide, since the
//!   daemon runs once per process); queue depths, outbox lag and device health are read at
//!   scrape time from the store, the registry and the journal's health, so they are
//!   always current and never counted twice.
//!
//! The metric names, types and labels are listed in `docs/metrics.md`.

pub mod events;
pub mod exposition;
mod scrape;

pub use events::*;
pub use scrape::{CONTENT_TYPE, Sources, render};
