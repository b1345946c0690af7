//! What return and self-check stations share: the context they run a transaction in, the
//! inputs the station runner hands them, and the tags present at their readers.
//!
//! Each such station is a task of its own (an ILS call takes milliseconds to seconds, which
//! the pipeline must never wait for). The runner forwards the station's device reports and
//! staff or kiosk requests to it over a channel; the task runs one transaction at a time:
//! pending owed write committed → ILS call (or the offline queue, committed) → tag write
//! with read-back → sorter → journal.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rfidgw_driver::{DeviceHandle, DeviceReport, Uid};
use rfidgw_sip2::Secret;
use rfidgw_tag::DecodedTag;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::StationsStatus;
use super::activity::Activity;
use super::loans::LoansCache;
use super::owed::OwedBook;
use crate::bus::Event;
use crate::ils::connector::IlsConnector;
use crate::store::Store;

/// Everything a return or self-check transaction touches. Cheap to clone.
#[derive(Clone)]
pub struct Circulation {
    /// Offline queue, owed writes, worklist.
    pub store: Store,
    /// The library system; `None` without one (every transaction is then offline).
    pub ils: Option<Arc<dyn IlsConnector>>,
    /// Command handles of every device.
    pub handles: Arc<HashMap<String, DeviceHandle>>,
    /// The owed tag writes.
    pub owed: OwedBook,
    /// The gate's loans cache, told about every loan and return.
    pub loans: LoansCache,
    /// Where activities are journaled.
    pub events: mpsc::Sender<Event>,
    /// Wakes the replayer when a transaction is queued.
    pub replay: Arc<Notify>,
    /// The live state shown by the status API.
    pub status: StationsStatus,
    /// The longest a divert command may take.
    pub command_within: Duration,
}

impl Circulation {
    /// Journals an activity (waits only for room in the journal's queue).
    pub async fn journal(&self, activity: Activity) {
        let _ = self.events.send(Event::Station(activity)).await;
    }
}

/// What the runner hands a return or self-check station.
#[derive(Debug)]
pub enum StationInput {
    /// A report of one of its devices, with the decoded tag of an arrival.
    Report(DeviceReport, Option<Arc<DecodedTag>>),
    /// A patron identified at a kiosk (card number typed or scanned, PIN when asked).
    Patron {
        /// The patron id.
        patron: String,
        /// The PIN, when the patron gave one.
        pin: Option<Secret>,
        /// The session id, or why not.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The patron finished (with the number of items they say they presented).
    Finish {
        /// The stack count, when the kiosk asks for one.
        presented: Option<u32>,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Follow a named sort plan (`None`: the schedule decides again).
    SortPlan {
        /// The plan.
        plan: Option<String>,
        /// The plan now in force, or why not.
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// A tag present at a station's readers.
#[derive(Clone, Debug)]
pub struct Present {
    /// The reader that saw it.
    pub device: String,
    /// The tag.
    pub uid: Uid,
    /// What the decoder made of it.
    pub tag: Option<Arc<DecodedTag>>,
    /// When it arrived.
    pub since: Instant,
}

impl Present {
    /// The item id the tag carries, when it could be read unambiguously.
    pub fn item(&self) -> Option<&str> {
        let tag = self.tag.as_deref()?;
        if tag.model == rfidgw_tag::TagModel::Ambiguous {
            return None;
        }
        tag.item
            .as_ref()
            .map(|i| i.primary_item_id.as_str())
            .filter(|id| !id.trim().is_empty())
    }

    /// `(parts in item, part number)` when the tag says the item is a set.
    pub fn set(&self) -> Option<(u8, u8)> {
        let item = self.tag.as_deref()?.item.as_ref()?;
        match (item.parts_in_item, item.part_number) {
            (Some(parts), Some(part)) if parts > 1 => Some((parts, part)),
            _ => None,
        }
    }
}

/// Tags present at a station's readers, by UID.
#[derive(Debug, Default)]
pub struct Field {
    tags: BTreeMap<Uid, Present>,
}

impl Field {
    /// A tag arrived.
    pub fn arrived(&mut self, present: Present) {
        self.tags.insert(present.uid.clone(), present);
    }

    /// A tag left.
    pub fn departed(&mut self, uid: &Uid) -> Option<Present> {
        self.tags.remove(uid)
    }

    /// Every tag the device saw is gone (the device stopped).
    pub fn device_stopped(&mut self, device: &str) {
        self.tags.retain(|_, p| p.device != device);
    }

    /// Every tag present.
    pub fn tags(&self) -> impl Iterator<Item = &Present> {
        self.tags.values()
    }

    /// Whether nothing is present.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The tags present of `item`.
    pub fn parts_of(&self, item: &str) -> Vec<Present> {
        self.tags
            .values()
            .filter(|p| p.item() == Some(item))
            .cloned()
            .collect()
    }
}

/// Whether the parts present make the whole item: `Err` says what is missing.
pub fn set_complete(parts: &[Present]) -> Result<(), String> {
    let Some((total, _)) = parts.iter().find_map(Present::set) else {
        return Ok(());
    };
    let mut have: Vec<u8> = parts.iter().filter_map(|p| p.set().map(|s| s.1)).collect();
    have.sort_unstable();
    have.dedup();
    let missing: Vec<String> = (1..=total)
        .filter(|n| !have.contains(n))
        .map(|n| n.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "set incomplete: {} of {total} parts here (missing part {})",
            usize::from(total) - missing.len(),
            missing.join(", ")
        ))
    }
}

/// Local wall-clock time, as sort-plan schedules and SIP2 dates use it.
pub fn local_now() -> time::PrimitiveDateTime {
    let now = time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    time::PrimitiveDateTime::new(now.date(), now.time())
}

/// Sleeps until `at`, or forever without one (a `select!` branch that never fires).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `[circulation]`: settings shared by every return and self-check station.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CirculationConfig {
    /// How long a tag write (with its read-back) or a divert command may take.
    pub command_deadline_ms: u64,
    /// How long a tag write may stay owed before it goes on the staff worklist.
    pub owed_write_grace_s: u64,
    /// How often the offline queue looks for the library system while it is away.
    pub replay_pause_ms: u64,
}

impl Default for CirculationConfig {
    fn default() -> Self {
        Self {
            command_deadline_ms: 2_000,
            owed_write_grace_s: 900,
            replay_pause_ms: 5_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(uid: u8, item: &str, set: Option<(u8, u8)>) -> Present {
        let mut tag = rfidgw_tag::decode(
            &rfidgw_tag::parse_hex(
                "11010131313232333334340000000000000000513E4445373035000000000000",
            )
            .unwrap(),
            &rfidgw_tag::TagHints::default(),
            &rfidgw_tag::SiteConfig::default(),
        );
        let found = tag.item.as_mut().unwrap();
        item.clone_into(&mut found.primary_item_id);
        found.parts_in_item = set.map(|s| s.0);
        found.part_number = set.map(|s| s.1);
        Present {
            device: "pad".into(),
            uid: Uid::new([0xE0, uid]),
            tag: Some(Arc::new(tag)),
            since: Instant::now(),
        }
    }

    #[test]
    fn a_set_is_whole_only_with_every_part() {
        // (parts present as (parts in item, part number), the verdict)
        type Parts<'a> = &'a [(u8, u8)];
        let rows: [(Parts, Result<(), &str>); 5] = [
            (&[], Ok(())),
            (&[(3, 1), (3, 2), (3, 3)], Ok(())),
            (
                &[(3, 1), (3, 3)],
                Err("set incomplete: 2 of 3 parts here (missing part 2)"),
            ),
            (
                &[(2, 2), (2, 2)],
                Err("set incomplete: 1 of 2 parts here (missing part 1)"),
            ),
            (
                &[(4, 1)],
                Err("set incomplete: 1 of 4 parts here (missing part 2, 3, 4)"),
            ),
        ];
        for (parts, want) in rows {
            let present: Vec<Present> = if parts.is_empty() {
                vec![part(1, "I1", None)]
            } else {
                parts
                    .iter()
                    .enumerate()
                    .map(|(i, s)| part(u8::try_from(i).unwrap(), "I1", Some(*s)))
                    .collect()
            };
            assert_eq!(
                set_complete(&present),
                want.map_err(str::to_owned),
                "{parts:?}"
            );
        }
    }

    #[test]
    fn the_field_groups_tags_by_item_and_forgets_a_stopped_device() {
        let mut field = Field::default();
        field.arrived(part(1, "I1", Some((2, 1))));
        field.arrived(part(2, "I1", Some((2, 2))));
        field.arrived(part(3, "I2", None));
        assert_eq!(field.parts_of("I1").len(), 2);
        assert!(field.departed(&Uid::new([0xE0, 3])).is_some());
        field.device_stopped("pad");
        assert!(field.is_empty());
    }

    #[test]
    fn an_ambiguous_tag_has_no_item() {
        let mut present = part(1, "I1", None);
        let mut tag = (*present.tag.take().unwrap()).clone();
        tag.model = rfidgw_tag::TagModel::Ambiguous;
        present.tag = Some(Arc::new(tag));
        assert_eq!(present.item(), None);
    }
}
