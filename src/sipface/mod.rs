//! The SIP2 face (issue 11): existing self-check kiosks and automated-return sorters log
//! in to rfidgw as if it were the library system. rfidgw relays every request through its
//! ILS connector, learns every loan and return (the gate's loans cache, the journal, the
//! bus), and while the library system is away answers per the offline policy of the
//! station each kiosk counts as, queueing returns and loans in the same store-and-forward
//! queue as its own stations.
//!
//! The protocol (framing, leniency, login, 96/97/duplicates, limits, TLS) is the SIP2
//! crate's server half ([`rfidgw_sip2::server`]); this module is what requests mean:
//!
//! * [`config`]: `[sip2_server]` and its accounts;
//! * [`handler`]: relay with per-message timeouts, offline answers, journaling;
//! * [`offline`]: the offline answers themselves (pure);
//! * [`learn`]: what an exchange teaches (pure).
//!
//! Relaying is raw: the kiosk's message goes to the ILS as it came (the upstream
//! account's institution and terminal password in place of the kiosk's), and the ILS's
//! answer comes back with every field it sent: sort bin, AMH fields, screen messages,
//! print lines, unknown fields. The connector's domain view is only used for what the
//! gateway learns. See [`crate::ils::connector::IlsConnector::relay`].

pub mod config;
pub mod handler;
pub mod learn;
pub mod offline;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rfidgw_sip2::server::{FaceMetrics, Server, ServerTls, ServerTlsError, Supported};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Sip2ServerConfig;
use handler::{AccountContext, FaceHandler, FaceSinks};

use crate::config::StationConfig;
use crate::ils::connector::IlsConnector;

/// Why the face could not start.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// An account cannot be used (e.g. its password file is unreadable).
    #[error("{key}: {problem}")]
    Account {
        /// The config key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] ServerTlsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr} (sip2_server.listen): {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The running face.
#[derive(Clone, Debug)]
pub struct SipFace {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub metrics: Arc<FaceMetrics>,
}

/// Binds the face and serves it on `tasks` until `cancel` (then each kiosk's request under
/// way is answered before its connection closes). `base` is the config file's directory
/// (for relative password files).
pub async fn start(
    config: &Sip2ServerConfig,
    stations: &[StationConfig],
    ils: Option<Arc<dyn IlsConnector>>,
    sinks: FaceSinks,
    base: &Path,
    (tasks, cancel): (&TaskTracker, &CancellationToken),
) -> Result<SipFace, FaceError> {
    let accounts = config
        .server_accounts(base)
        .map_err(|(key, problem)| FaceError::Account { key, problem })?;
    let contexts: HashMap<String, AccountContext> = config
        .accounts
        .iter()
        .map(|a| {
            let policy = stations
                .iter()
                .find(|s| s.id == a.station)
                .map(|s| s.offline.clone())
                .unwrap_or_default();
            (
                a.login.clone(),
                AccountContext {
                    station: a.station.clone(),
                    policy,
                    institution: a.institution.clone(),
                    location: a.location.clone(),
                },
            )
        })
        .collect();
    let timeouts = config.clone();
    let handler = FaceHandler {
        ils,
        accounts: contexts,
        sinks,
        timeout: Arc::new(move |command| timeouts.timeout(command)),
        library_name: config.library_name.clone(),
        upstream_supported: Mutex::new(Supported::ALL),
    };
    let mut server = Server::new(accounts, config.limits(), Arc::new(handler));
    if let Some(tls) = &config.tls {
        server = server.with_tls(ServerTls::new(tls)?);
    }
    let metrics = server.metrics();
    let (addr, serve) = server
        .bind(&config.listen, cancel.clone())
        .await
        .map_err(|source| FaceError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    tasks.spawn(serve);
    tracing::info!(%addr, accounts = config.accounts.len(), tls = config.tls.is_some(), "SIP2 face listening");
    Ok(SipFace { addr, metrics })
}
