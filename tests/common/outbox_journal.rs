//! A store with its durable outbox, for the northbound delivery tests (MQTT, webhooks):
//! rows are appended straight to the journal, and `wake` stands in for the journal
//! writer's broadcast. Each test file adds its own consumer-specific methods.

use std::path::Path;
use std::sync::Arc;

use rfidgw::bus::Event;
use rfidgw::northbound::event::Publishing;
use rfidgw::northbound::outbox::Outbox;
use rfidgw::store::{JournalEntry, Store};
use tokio::sync::broadcast;

pub struct Journal {
    pub store: Store,
    pub outbox: Outbox,
    wake: broadcast::Sender<Arc<Event>>,
}

impl Journal {
    /// A fresh store at `path` publishing for `site`.
    pub async fn open(path: &Path, site: &str) -> Self {
        let store = Store::open(path).await.unwrap();
        let (wake, _) = broadcast::channel(1024);
        let outbox = Outbox::new(
            store.clone(),
            wake.clone(),
            Publishing {
                site: site.into(),
                patron_ids: false,
            },
        );
        Self {
            store,
            outbox,
            wake,
        }
    }

    /// Journals one row per `(kind, station)`, each about item I0001, and wakes the outbox.
    pub async fn append(&self, events: &[(&str, Option<&str>)]) {
        let entries: Vec<JournalEntry> = events
            .iter()
            .map(|&(kind, station)| JournalEntry {
                station: station.map(str::to_owned),
                ..JournalEntry::new(kind, serde_json::json!({ "item": "I0001" }))
            })
            .collect();
        self.store.append(&entries).await.unwrap();
        let _ = self.wake.send(Arc::new(Event::DaemonStopping {
            reason: "wake".into(),
        }));
    }
}
