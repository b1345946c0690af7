//! SIP2 (3M Standard Interchange Protocol 2.00) for rfidgw.
//!
//! Layers, each usable alone (STYLE.md):
//!
//! * [`frame`]: every 2.00 message pair as plain types in the spec's words, plus the raw
//!   [`frame::Message`] that keeps unknown and vendor fields and re-encodes byte for byte;
//! * [`checksum`]: the AY/AZ error-detection trailer (PROTOCOLS.md §1.2);
//! * [`encoding`]: the per-peer character sets (UTF-8, CP850, ISO-8859-1, GB18030/GBK, ASCII);
//! * [`codec`]: a `tokio_util` codec (CR or CRLF, leading junk, strict or lenient checksum,
//!   maximum length, resynchronisation);
//! * [`dialect`]: per-ILS profiles and the peer configuration the daemon embeds;
//! * [`client`]: one task per connection, a cloneable handle and a small pool;
//! * [`tls`]: rustls client with a CA file or a pinned certificate;
//! * [`server`]: the server face (kiosks log in to rfidgw as to an ACS): listener,
//!   lenient request parsing, session state, refusals, kiosk credentials, TLS;
//! * [`acs_sim`]: an in-memory ACS used by the tests and the demo, with a transaction log
//!   and an availability switch for offline store-and-forward tests.

pub mod acs_sim;
pub mod checksum;
pub mod client;
pub mod codec;
pub mod dialect;
pub mod encoding;
pub mod frame;
pub mod secret;
pub mod server;
pub mod tls;

pub use acs_sim::{AcsSimulator, Fault, SimConfig, SimControl, SimTransaction};
pub use client::{Completion, PeerState, PeerStatus, Sip2Error, Sip2Pool};
pub use codec::{ChecksumPolicy, Sip2Codec};
pub use dialect::{Dialect, Profile, Sip2PeerConfig};
pub use encoding::Encoding;
pub use frame::{AnyMessage, Command, Field, FieldId, FrameError, Message, Trailer};
pub use secret::Secret;
pub use tls::TlsConfig;
