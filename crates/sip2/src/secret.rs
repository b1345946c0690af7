//! A value that must never reach a log line, a Debug dump or an error message.

use std::fmt;

/// A SIP2 password (CO login password, AC terminal password, AD patron password).
///
/// `Debug` and `Display` print `***`; only [`Secret::expose`] gives the value, and only the
/// frame encoder calls it.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The password itself, for the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the password is empty (sent as `AC|`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}
