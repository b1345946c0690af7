//! The durable outbox: every northbound consumer reads the journal from a cursor of its own,
//! persisted in the store, so delivery resumes where it stopped after a restart or an
//! outage, and the journal is never pruned past what a consumer still needs.
//!
//! The in-process broadcast of committed events is only a wake-up here: a consumer that
//! misses one (lagged, busy, reconnecting) loses nothing, because it reads the journal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::event::{PublicEvent, Publishing};
use crate::bus::Event;
use crate::store::{JournalFilter, Store, StoreError};

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the next event (a new MQTT broker or webhook does not get the whole history).
    Now,
    /// With the oldest event the journal still holds.
    Beginning,
}

/// Hands out consumers. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    published: broadcast::Sender<Arc<Event>>,
    publishing: Publishing,
}

impl Outbox {
    /// An outbox over the store, woken by the journal's broadcast of committed events.
    pub fn new(
        store: Store,
        published: broadcast::Sender<Arc<Event>>,
        publishing: Publishing,
    ) -> Self {
        Self {
            store,
            published,
            publishing,
        }
    }

    /// The consumer `name` with its persisted cursor (created at `start` the first time).
    pub async fn consumer(&self, name: &str, start: Start) -> Result<Consumer, StoreError> {
        let wake = self.published.subscribe();
        let first = match start {
            Start::Now => self.store.journal_last_id().await?.unwrap_or(0),
            Start::Beginning => 0,
        };
        let cursor = self.store.cursor_or_create(name, first).await?;
        Ok(Consumer {
            name: name.to_owned(),
            store: self.store.clone(),
            wake,
            cursor,
            publishing: self.publishing.clone(),
            durable: true,
        })
    }

    /// A reader that is not persisted (an SSE client, which holds its own cursor as
    /// `Last-Event-ID`), starting after `after`.
    pub fn reader(&self, after: i64) -> Consumer {
        Consumer {
            name: String::new(),
            store: self.store.clone(),
            wake: self.published.subscribe(),
            cursor: after,
            publishing: self.publishing.clone(),
            durable: false,
        }
    }

    /// What public events look like on this site.
    pub fn publishing(&self) -> &Publishing {
        &self.publishing
    }
}

/// One consumer's view of the journal.
pub struct Consumer {
    name: String,
    store: Store,
    wake: broadcast::Receiver<Arc<Event>>,
    cursor: i64,
    publishing: Publishing,
    durable: bool,
}

/// How long a consumer waits without a wake-up before it looks anyway (a missed wake-up
/// costs at most this much delay, never an event).
const LOOK_ANYWAY: Duration = Duration::from_secs(1);

impl Consumer {
    /// The id of the last event delivered.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The next events after the cursor, at most `max`, waiting until there is at least
    /// one; `None` when `cancel` fires first. The cursor does not move: call
    /// [`Consumer::delivered`] once they are delivered.
    pub async fn next(
        &mut self,
        max: u32,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<PublicEvent>>, StoreError> {
        loop {
            let rows = self
                .store
                .journal_after(
                    self.cursor,
                    i64::from(max.max(1)),
                    &JournalFilter::default(),
                )
                .await?;
            if !rows.is_empty() {
                return Ok(Some(
                    rows.iter()
                        .map(|row| PublicEvent::from_row(row, &self.publishing))
                        .collect(),
                ));
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                woken = self.wake.recv() => {
                    if matches!(woken, Err(broadcast::error::RecvError::Closed)) {
                        // The daemon is stopping; look once more, then wait for cancel.
                        tokio::select! {
                            () = cancel.cancelled() => return Ok(None),
                            () = tokio::time::sleep(LOOK_ANYWAY) => {}
                        }
                    }
                }
                () = tokio::time::sleep(LOOK_ANYWAY) => {}
            }
        }
    }

    /// Everything up to `id` is delivered: the cursor moves there (persisted for a durable
    /// consumer, committed when this returns).
    pub async fn delivered(&mut self, id: i64) -> Result<(), StoreError> {
        if id <= self.cursor {
            return Ok(());
        }
        if self.durable {
            self.store.advance_cursor(&self.name, id).await?;
        }
        self.cursor = id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JournalEntry;

    fn publishing() -> Publishing {
        Publishing {
            site: "test".into(),
            patron_ids: false,
        }
    }

    #[tokio::test]
    async fn a_consumer_resumes_from_its_persisted_cursor_and_is_woken_by_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let store = Store::open(&path).await.unwrap();
        let (published, _) = broadcast::channel(16);
        store
            .append(&[JournalEntry::new("before", serde_json::json!({}))])
            .await
            .unwrap();
        let outbox = Outbox::new(store.clone(), published.clone(), publishing());
        let cancel = CancellationToken::new();
        let mut mqtt = outbox.consumer("mqtt", Start::Now).await.unwrap();
        assert_eq!(
            mqtt.cursor(),
            1,
            "a new consumer starts with the next event"
        );
        let waiting = tokio::spawn(async move {
            let events = mqtt
                .next(10, &CancellationToken::new())
                .await
                .unwrap()
                .unwrap();
            (mqtt, events)
        });
        store
            .append(&[
                JournalEntry::new("one", serde_json::json!({})),
                JournalEntry::new("two", serde_json::json!({})),
            ])
            .await
            .unwrap();
        let _ = published.send(Arc::new(Event::DaemonStopping {
            reason: "wake".into(),
        }));
        let (mut mqtt, events) = waiting.await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["one", "two"]);
        mqtt.delivered(events[0].id).await.unwrap();
        drop(mqtt);
        // After a "restart", the same consumer starts after what it delivered.
        let mut again = outbox.consumer("mqtt", Start::Now).await.unwrap();
        let events = again.next(10, &cancel).await.unwrap().unwrap();
        assert_eq!(
            events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["two"]
        );
        // A reader is not persisted.
        let mut reader = outbox.reader(0);
        let all = reader.next(10, &cancel).await.unwrap().unwrap();
        assert_eq!(all.len(), 3);
        reader.delivered(3).await.unwrap();
        assert_eq!(store.cursors().await.unwrap().len(), 1);
        cancel.cancel();
        assert!(reader.next(10, &cancel).await.unwrap().is_none());
    }
}
