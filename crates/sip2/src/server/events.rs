//! What the face logs and counts, in one place (STYLE.md "one place logs and counts"):
//! each [`FaceEvent::emit`] writes one structured log event and bumps its counter. No event
//! carries a password, a PIN or message contents.

use std::sync::atomic::{AtomicU64, Ordering};

use super::session::CloseReason;

/// Counters of the face, for the metrics endpoint and tests.
#[derive(Debug, Default)]
pub struct FaceMetrics {
    connections: AtomicU64,
    refused_connections: AtomicU64,
    logins: AtomicU64,
    login_failures: AtomicU64,
    requests: AtomicU64,
    replays: AtomicU64,
    resend_requests: AtomicU64,
    closed_for_garbage: AtomicU64,
    closed_idle: AtomicU64,
}

/// A copy of [`FaceMetrics`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaceMetricsSnapshot {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused (too many at once, failed TLS handshake).
    pub refused_connections: u64,
    /// Successful logins.
    pub logins: u64,
    /// Failed logins.
    pub login_failures: u64,
    /// Requests handed to the handler.
    pub requests: u64,
    /// Cached answers sent again (97 or duplicate request).
    pub replays: u64,
    /// 96 sent (unreadable frame or bad checksum).
    pub resend_requests: u64,
    /// Connections closed for garbage, failed logins or requests before login.
    pub closed_for_garbage: u64,
    /// Connections closed after the idle timeout.
    pub closed_idle: u64,
}

impl FaceMetrics {
    /// The current values.
    pub fn snapshot(&self) -> FaceMetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaceMetricsSnapshot {
            connections: get(&self.connections),
            refused_connections: get(&self.refused_connections),
            logins: get(&self.logins),
            login_failures: get(&self.login_failures),
            requests: get(&self.requests),
            replays: get(&self.replays),
            resend_requests: get(&self.resend_requests),
            closed_for_garbage: get(&self.closed_for_garbage),
            closed_idle: get(&self.closed_idle),
        }
    }
}

/// A significant occurrence at the face.
pub enum FaceEvent<'a> {
    /// A kiosk connected.
    Connected {
        /// Connection id.
        terminal: u64,
        /// Peer address.
        peer: &'a str,
    },
    /// A connection was refused before any SIP2.
    Refused {
        /// Peer address.
        peer: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A login was accepted.
    LoggedIn {
        /// Connection id.
        terminal: u64,
        /// Login id.
        login: &'a str,
    },
    /// A login was refused (the password is never logged).
    LoginRefused {
        /// Connection id.
        terminal: u64,
        /// Login id as given.
        login: &'a str,
        /// Peer address.
        peer: &'a str,
    },
    /// A request went to the handler.
    Request,
    /// A cached answer was sent again.
    Replayed {
        /// Connection id.
        terminal: u64,
    },
    /// A 96 was sent.
    ResendRequested {
        /// Connection id.
        terminal: u64,
    },
    /// The face closed a connection for what the kiosk sent.
    Closed {
        /// Connection id.
        terminal: u64,
        /// Peer address.
        peer: &'a str,
        /// Login id, when logged in.
        login: Option<&'a str>,
        /// Why.
        reason: &'a CloseReason,
    },
    /// A frame over the size limit, or a stream without frame ends.
    TooLong {
        /// Connection id.
        terminal: u64,
        /// Peer address.
        peer: &'a str,
        /// Login id, when logged in.
        login: Option<&'a str>,
        /// What the framing said.
        problem: &'a str,
    },
    /// Idle for longer than the limit.
    Idle {
        /// Connection id.
        terminal: u64,
        /// Login id, when logged in.
        login: Option<&'a str>,
    },
}

impl FaceEvent<'_> {
    /// Logs it and counts it.
    pub fn emit(&self, metrics: &FaceMetrics) {
        let bump = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match self {
            Self::Connected { terminal, peer } => {
                bump(&metrics.connections);
                tracing::debug!(terminal, peer = %peer, "SIP2 face: kiosk connected");
            }
            Self::Refused { peer, reason } => {
                bump(&metrics.refused_connections);
                tracing::warn!(peer = %peer, reason = %reason, "SIP2 face: connection refused");
            }
            Self::LoggedIn { terminal, login } => {
                bump(&metrics.logins);
                tracing::info!(terminal, login = %login, "SIP2 face: kiosk logged in");
            }
            Self::LoginRefused {
                terminal,
                login,
                peer,
            } => {
                bump(&metrics.login_failures);
                tracing::warn!(terminal, login = %login, peer = %peer, "SIP2 face: login refused");
            }
            Self::Request => bump(&metrics.requests),
            Self::Replayed { terminal } => {
                bump(&metrics.replays);
                tracing::debug!(
                    terminal,
                    "SIP2 face: cached answer sent again (97 or duplicate)"
                );
            }
            Self::ResendRequested { terminal } => {
                bump(&metrics.resend_requests);
                tracing::debug!(
                    terminal,
                    "SIP2 face: unreadable request; asked for it again (96)"
                );
            }
            Self::Closed {
                terminal,
                peer,
                login,
                reason,
            } => {
                bump(&metrics.closed_for_garbage);
                tracing::warn!(terminal, peer = %peer, login = login.unwrap_or("-"), reason = %reason, "SIP2 face: kiosk disconnected");
            }
            Self::TooLong {
                terminal,
                peer,
                login,
                problem,
            } => {
                bump(&metrics.closed_for_garbage);
                tracing::warn!(terminal, peer = %peer, login = login.unwrap_or("-"), problem = %problem, "SIP2 face: kiosk disconnected");
            }
            Self::Idle { terminal, login } => {
                bump(&metrics.closed_idle);
                tracing::info!(
                    terminal,
                    login = login.unwrap_or("-"),
                    "SIP2 face: idle kiosk disconnected"
                );
            }
        }
    }
}
