//! Status types shown by the API and systemd's `STATUS=` line, kept below the API so the
//! components that report them (the ILS, the registry) never import from the API.

use serde::Serialize;

/// A peer's state as the status API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The peer's name (`ils`).
    pub name: String,
    /// `online`, `connecting`, `offline`, …
    pub state: String,
    /// The last problem, without secrets.
    pub detail: Option<String>,
}
