//! The library system (ILS): the connector stations use ([`connector::IlsConnector`], with
//! its SIP2 backend [`sip2::Sip2Connector`]), the SIP2 client pool and, for the demo and
//! tests, the built-in ACS simulator.
//!
//! The daemon never waits for the ILS to start (DESIGN.md principle 4): the pool connects
//! in the background, reconnects by itself, and its state is visible in the status API,
//! in systemd's `STATUS=` line and, as `peer_changed` events, in the journal.

pub mod connector;
pub mod sip2;

use std::net::SocketAddr;
use std::time::Duration;

use rfidgw_sip2::{AcsSimulator, PeerState, SimConfig, Sip2PeerConfig, Sip2Pool};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Event;
use crate::status::PeerStatus;

/// `ils.sip2.addr` value that means "the built-in simulator, wherever it listens".
pub const SIMULATOR_ADDR: &str = "simulator";

/// The `[ils]` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IlsConfig {
    /// The SIP2 peer (`[ils.sip2]`); see `crates/sip2/README.md` for every key.
    pub sip2: Option<Sip2PeerConfig>,
    /// Run the built-in ACS simulator (`[ils.simulator]`).
    pub simulator: Option<SimulatorConfig>,
}

/// The built-in ACS simulator (`[ils.simulator]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Where it listens; the default picks a free port on 127.0.0.1.
    #[serde(default = "default_simulator_listen")]
    pub listen: String,
    /// Its patrons, items and behaviour; without it, the demo library (login demo/demo,
    /// institution DEMO, patrons P1001–P1004, items I0001–I0007 and those on the demo's tags).
    pub library: Option<SimConfig>,
}

fn default_simulator_listen() -> String {
    "127.0.0.1:0".to_owned()
}

/// Why the ILS side could not start.
#[derive(Debug, thiserror::Error)]
pub enum IlsError {
    /// The simulator could not listen.
    #[error("cannot start the ACS simulator on {addr} (ils.simulator.listen): {source}")]
    Simulator {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SIP2 pool refused its config (messages never carry passwords).
    #[error("ils.sip2: {0}")]
    Sip2(#[from] rfidgw_sip2::Sip2Error),
}

impl IlsConfig {
    /// Checks what serde cannot: the SIP2 peer's own rules and the simulator reference.
    /// Returns the key and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(sip2) = &self.sip2 {
            sip2.validate().map_err(|e| {
                let text = e.to_string();
                match text.split_once(' ') {
                    Some((key, rest)) if key.starts_with("ils.") => {
                        (key.to_owned(), rest.to_owned())
                    }
                    _ => ("ils.sip2".to_owned(), text),
                }
            })?;
            if sip2.addr == SIMULATOR_ADDR && self.simulator.is_none() {
                return Err((
                    "ils.sip2.addr".to_owned(),
                    "\"simulator\" needs an [ils.simulator] section".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// The running ILS side.
#[derive(Clone, Default)]
pub struct Ils {
    pool: Option<Sip2Pool>,
    simulator_addr: Option<SocketAddr>,
}

impl Ils {
    /// Starts the simulator (if configured) and the SIP2 pool (if configured). Returns at
    /// once: connecting happens in the background.
    pub async fn start(
        config: &IlsConfig,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
        events: mpsc::Sender<Event>,
    ) -> Result<Self, IlsError> {
        let mut simulator_addr = None;
        if let Some(sim) = &config.simulator {
            let simulator = sim
                .library
                .clone()
                .map_or_else(AcsSimulator::demo, AcsSimulator::new);
            let (addr, serve) =
                simulator
                    .bind(&sim.listen, cancel.clone())
                    .await
                    .map_err(|source| IlsError::Simulator {
                        addr: sim.listen.clone(),
                        source,
                    })?;
            tasks.spawn(serve);
            tracing::info!(%addr, "ACS simulator listening");
            simulator_addr = Some(addr);
        }
        let pool = match &config.sip2 {
            Some(sip2) => {
                let mut sip2 = sip2.clone();
                if let (true, Some(addr)) = (sip2.addr == SIMULATOR_ADDR, simulator_addr) {
                    sip2.addr = addr.to_string();
                }
                let pool = Sip2Pool::start(sip2, cancel.clone())?;
                tasks.spawn(watch_peer(pool.clone(), events, cancel.clone()));
                Some(pool)
            }
            None => None,
        };
        Ok(Self {
            pool,
            simulator_addr,
        })
    }

    /// Where the simulator listens, if it runs.
    pub fn simulator_addr(&self) -> Option<SocketAddr> {
        self.simulator_addr
    }

    /// The SIP2 pool, if configured.
    pub fn pool(&self) -> Option<&Sip2Pool> {
        self.pool.as_ref()
    }

    /// The connector stations use, if an ILS is configured.
    pub fn connector(&self) -> Option<std::sync::Arc<dyn connector::IlsConnector>> {
        self.pool
            .clone()
            .map(|pool| std::sync::Arc::new(sip2::Sip2Connector::new(pool)) as _)
    }

    /// Peer lines for the status API and `STATUS=`.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.pool
            .iter()
            .map(|pool| {
                let status = pool.status();
                PeerStatus {
                    name: "ils".to_owned(),
                    state: status.to_string(),
                    detail: status.last_error.clone(),
                }
            })
            .collect()
    }
}

/// How often the peer watcher looks at the pool's state.
const WATCH_PERIOD: Duration = Duration::from_millis(500);

/// Journals every change of the ILS peer's state (online, connecting, offline).
async fn watch_peer(pool: Sip2Pool, events: mpsc::Sender<Event>, cancel: CancellationToken) {
    let mut last: Option<PeerState> = None;
    let mut tick = tokio::time::interval(WATCH_PERIOD);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let status = pool.status();
        if last == Some(status.state) {
            continue;
        }
        last = Some(status.state);
        tracing::info!(peer = "ils", state = %status, "ILS peer state changed");
        let event = Event::PeerChanged {
            peer: "ils".to_owned(),
            state: status.state.to_string(),
            detail: status.last_error.clone(),
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
