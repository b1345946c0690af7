//! The exit gate: a pure workflow, `(state, input, now) -> actions`.
//!
//! **Decide before the disk.** The gate sees each tag read straight from the pipeline,
//! before the journal commit, and decides from what the tag carries (AFI, EAS, EPC bit) or
//! the in-memory loans cache. Nothing here waits on a disk, a lock or the network: an alarm
//! must sound while the person is still between the pedestals. The runner journals the read
//! and the decision right after.
//!
//! * **Presence**: reads of one tag from any reader of the gate are one presence. It ends
//!   `leave_window_ms` after the last reader lost the tag; a tag that comes back sooner
//!   continues it. An item that comes back within `enter_window_ms` after its presence
//!   ended is the same passage (a patron stepping back and forth): no second alarm.
//! * **Decision** (see [`decide`]): foreign items, items whose tag names no owner, tags
//!   whose data cannot be read and items whose security state is unknown each follow their
//!   own policy (alarm, ignore, log); a secured item (or, in database mode, an item the
//!   loans cache says is not on loan) alarms.
//! * **One alarm per item per passage**, with a reason; outputs are driven unless the gate
//!   is silenced (the alarm is still recorded, marked silenced).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rfidgw_driver::{OutputCommand, Signal, Uid};
use rfidgw_tag::{DecodedTag, OwnerClass, Security, SecurityConfig, SecurityMode, TagModel};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::counting::{CountingConfig, PeopleCount, PeopleCounter};

/// What to do with a class of items at the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Sound the alarm.
    Alarm,
    /// Let it pass without a record beyond the tag read.
    Ignore,
    /// Let it pass, but journal a `gate_notice` with the reason (for review).
    Log,
}

/// What to do with an item whose tag names no owner (many RFID501 and older tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoOwnerPolicy {
    /// Treat it as ours: decide by its security state (the default).
    Decide,
    /// Sound the alarm.
    Alarm,
    /// Let it pass.
    Ignore,
    /// Let it pass and journal a notice.
    Log,
}

/// The gate's policies (`[stations.gate.policy]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatePolicy {
    /// Items whose tag names another institution (interlibrary loans): `ignore` by default.
    pub foreign: Policy,
    /// Items whose tag names no owner: `decide` by security by default.
    pub no_owner: NoOwnerPolicy,
    /// Tags whose data cannot be read (unknown model, blank, ambiguous, no memory) and
    /// whose security state is unknown too: `log` by default.
    pub unreadable: Policy,
    /// Our items whose security state is unknown (an AFI that is neither the secured nor
    /// the unsecured one; in database mode, an item the loans cache does not know): `log`.
    pub unknown: Policy,
}

impl Default for GatePolicy {
    fn default() -> Self {
        Self {
            foreign: Policy::Ignore,
            no_owner: NoOwnerPolicy::Decide,
            unreadable: Policy::Log,
            unknown: Policy::Log,
        }
    }
}

/// One output driven on alarm (`[[stations.gate.alarm.outputs]]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmOutput {
    /// The device whose outputs are driven (a reader of this gate, usually).
    pub device: String,
    /// The beeper: `on`, `flash`, `off` or `unchanged` (default `flash`).
    #[serde(default = "flash")]
    pub beeper: Signal,
    /// The red lamp (default `flash`).
    #[serde(default = "flash")]
    pub red: Signal,
    /// The green lamp (default `off`).
    #[serde(default = "off")]
    pub green: Signal,
    /// How long beeper and lamps signal, in milliseconds (default 3000; 0 = not at all).
    #[serde(default = "default_signal_ms")]
    pub signal_ms: u64,
    /// How long the relay is switched, in milliseconds (default 0 = not at all).
    #[serde(default)]
    pub relay_ms: u64,
}

fn flash() -> Signal {
    Signal::Flash
}
fn off() -> Signal {
    Signal::Off
}
fn default_signal_ms() -> u64 {
    3_000
}

impl AlarmOutput {
    /// The driver-agnostic command for this output.
    pub fn command(&self) -> OutputCommand {
        let duration = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        OutputCommand {
            beeper: self.beeper,
            red: self.red,
            green: self.green,
            signal_for: duration(self.signal_ms),
            relay_for: duration(self.relay_ms),
        }
    }
}

/// What the gate does on alarm (`[stations.gate.alarm]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmConfig {
    /// The outputs driven on every alarm.
    pub outputs: Vec<AlarmOutput>,
    /// How long a "silence" from staff mutes the outputs, in milliseconds (alarms are still
    /// recorded, marked silenced). Default 300000 (5 minutes).
    pub silence_ms: u64,
    /// How long an output command may take before it is given up, in milliseconds: an
    /// alarm lamp switched on later than this is no use. Default 500.
    pub command_deadline_ms: u64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        Self {
            outputs: Vec::new(),
            silence_ms: 300_000,
            command_deadline_ms: 500,
        }
    }
}

/// A gate station's settings (`[stations.gate]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// A presence ends this long after the last reader of the gate lost the tag, in
    /// milliseconds; a read sooner continues it (default 1500).
    pub leave_window_ms: u64,
    /// An item seen again this soon after its presence ended is the same passage: no
    /// second alarm, in milliseconds (default 10000).
    pub enter_window_ms: u64,
    /// Item policies.
    pub policy: GatePolicy,
    /// Alarm outputs and silencing.
    pub alarm: AlarmConfig,
    /// People counting from the gate's two light barriers (optional).
    pub counting: Option<CountingConfig>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            leave_window_ms: 1_500,
            enter_window_ms: 10_000,
            policy: GatePolicy::default(),
            alarm: AlarmConfig::default(),
            counting: None,
        }
    }
}

/// Why a gate alarmed (or would have, under a `log` policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmReason {
    /// The tag says the item is secured (AFI, EAS, EPC bit).
    Secured,
    /// Database mode: the loans cache says the item is not on loan.
    NotOnLoan,
    /// The tag's data cannot be read and its security state is unknown.
    Unreadable,
    /// Our item, but its security state is unknown (or, in database mode, not cached).
    UnknownState,
    /// Another institution's item, under an `alarm` foreign policy.
    Foreign,
    /// An item whose tag names no owner, under an `alarm` no-owner policy.
    NoOwner,
}

impl AlarmReason {
    /// The reason's name in the journal and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Secured => "secured",
            Self::NotOnLoan => "not_on_loan",
            Self::Unreadable => "unreadable",
            Self::UnknownState => "unknown_state",
            Self::Foreign => "foreign",
            Self::NoOwner => "no_owner",
        }
    }
}

/// Why an item passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassReason {
    /// The item is unsecured (on loan).
    Unsecured,
    /// A policy says to let this class of item pass.
    Policy,
    /// The tag still says secured, but the item was lent and its un-secure write is owed
    /// (the tag left the self-check pad too early): the loan is real, the tag is behind.
    LoanWriteOwed,
}

/// The gate's verdict on one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sound the alarm.
    Alarm(AlarmReason),
    /// Let it pass.
    Pass(PassReason),
    /// Let it pass, and journal why it would have been suspicious.
    Notice(AlarmReason),
}

impl PassReason {
    /// The reason's name in the journal.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unsecured => "unsecured",
            Self::Policy => "policy",
            Self::LoanWriteOwed => "loan_write_owed",
        }
    }
}

impl Verdict {
    /// `alarm`, `pass` or `notice`, and the reason, as the journal shows them.
    pub const fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Alarm(reason) => ("alarm", reason.as_str()),
            Self::Pass(reason) => ("pass", reason.as_str()),
            Self::Notice(reason) => ("notice", reason.as_str()),
        }
    }
}

fn apply(policy: Policy, reason: AlarmReason) -> Verdict {
    match policy {
        Policy::Alarm => Verdict::Alarm(reason),
        Policy::Ignore => Verdict::Pass(PassReason::Policy),
        Policy::Log => Verdict::Notice(reason),
    }
}

/// What the gate knows about one tag when it decides.
#[derive(Clone, Copy, Debug)]
pub struct Sighting<'a> {
    /// The decoded tag.
    pub tag: &'a DecodedTag,
    /// The loans cache's answer for the item (database mode), if it has one.
    pub on_loan: Option<bool>,
    /// The tag's newest open owed write is an un-secure: the item was lent, the tag not
    /// yet written (from the in-memory owed-write book; the tag modes only).
    pub loan_write_owed: bool,
}

/// Whether the site lists institutions of its own; without them no item can be told
/// foreign, so "names no owner" carries no meaning and every item is decided by security.
pub type SiteHasOwners = bool;

/// Decides one item under the site's security mode and the gate's policies. Pure and
/// allocation-free: this is the hot path of every gate.
pub fn decide(
    sighting: Sighting<'_>,
    security: &SecurityConfig,
    policy: &GatePolicy,
    site_has_owners: SiteHasOwners,
) -> Verdict {
    let tag = sighting.tag;
    // An ambiguous or undecodable tag carries no item: it is never taken for someone's item.
    let readable = tag.item.is_some() && !matches!(tag.model, TagModel::Unknown | TagModel::Blank);
    if readable {
        match tag.owner_class {
            OwnerClass::Foreign => return apply(policy.foreign, AlarmReason::Foreign),
            OwnerClass::Unknown if site_has_owners => match policy.no_owner {
                NoOwnerPolicy::Decide => {}
                NoOwnerPolicy::Alarm => return Verdict::Alarm(AlarmReason::NoOwner),
                NoOwnerPolicy::Ignore => return Verdict::Pass(PassReason::Policy),
                NoOwnerPolicy::Log => return Verdict::Notice(AlarmReason::NoOwner),
            },
            OwnerClass::Ours | OwnerClass::Unknown => {}
        }
    }
    let database = security.mode == SecurityMode::Database;
    let state = if database {
        match sighting.on_loan {
            Some(true) => Security::Unsecured,
            Some(false) => Security::Secured,
            None => Security::Unknown,
        }
    } else {
        tag.security
    };
    match state {
        Security::Secured if database => Verdict::Alarm(AlarmReason::NotOnLoan),
        // A gate that alarms on a patron's rightful loan is the false alarm staff learn to
        // ignore; the gate reader writes the tag as the patron passes (any reader does).
        Security::Secured if sighting.loan_write_owed => Verdict::Pass(PassReason::LoanWriteOwed),
        Security::Secured => Verdict::Alarm(AlarmReason::Secured),
        Security::Unsecured => Verdict::Pass(PassReason::Unsecured),
        Security::Unknown if !readable => apply(policy.unreadable, AlarmReason::Unreadable),
        Security::Unknown => apply(policy.unknown, AlarmReason::UnknownState),
    }
}

/// An alarm as the gate raised it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    /// The tag.
    pub uid: Uid,
    /// The item id, when the tag could be read.
    pub item: Option<String>,
    /// Why.
    pub reason: AlarmReason,
    /// The reader that saw it first.
    pub device: String,
    /// Whether the gate was silenced (no outputs driven).
    pub silenced: bool,
}

/// What the gate asks the runner to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateAction {
    /// Record an alarm (and look up the title afterwards).
    Alarm(Alarm),
    /// Drive a device's outputs.
    Output {
        /// The device.
        device: String,
        /// The command.
        command: OutputCommand,
    },
    /// Record that an item passed under a `log` policy.
    Notice {
        /// The tag.
        uid: Uid,
        /// The item id, when readable.
        item: Option<String>,
        /// Why it would have been suspicious.
        reason: AlarmReason,
    },
    /// Record a finished counting interval.
    Counted(PeopleCount),
}

#[derive(Clone, Debug)]
struct Presence {
    /// Readers of the gate that see the tag now.
    readers: BTreeSet<String>,
    /// When the last reader lost the tag (the leave window runs from here).
    lost_at: Option<Instant>,
    /// The item key (item id, or the UID when unreadable).
    key: String,
}

/// One gate's state. Build it once per station; feed it inputs in order.
#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    presences: HashMap<Uid, Presence>,
    /// Item key → when the item's last passage ended (or is still going: `None`).
    passages: HashMap<String, Option<Instant>>,
    silenced_until: Option<Instant>,
    counter: Option<PeopleCounter>,
}

impl Gate {
    /// A gate with nothing present.
    pub fn new(config: GateConfig, now: Instant) -> Self {
        let counter = config
            .counting
            .clone()
            .map(|counting| PeopleCounter::new(counting, now));
        Self {
            config,
            presences: HashMap::new(),
            passages: HashMap::new(),
            silenced_until: None,
            counter,
        }
    }

    /// The gate's settings.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// How many tags are in the gate now.
    pub fn present(&self) -> usize {
        self.presences.len()
    }

    /// Until when the outputs are silenced, if they are.
    pub fn silenced_until(&self, now: Instant) -> Option<Instant> {
        self.silenced_until.filter(|until| *until > now)
    }

    /// The people counter, if the gate counts.
    pub fn counter(&self) -> Option<&PeopleCounter> {
        self.counter.as_ref()
    }

    /// A tag arrived on one of the gate's readers. Returns whether this read started a new
    /// passage (and so the verdict was acted on), and the actions.
    pub fn arrived(
        &mut self,
        device: &str,
        uid: &Uid,
        verdict: Verdict,
        item: Option<&str>,
        now: Instant,
    ) -> (bool, Vec<GateAction>) {
        if let Some(presence) = self.presences.get_mut(uid) {
            // The second pedestal, or the same tag back within the leave window.
            presence.readers.insert(device.to_owned());
            presence.lost_at = None;
            return (false, Vec::new());
        }
        let key = item.map_or_else(|| uid.to_string(), str::to_owned);
        let same_passage = match self.passages.get(&key) {
            Some(None) => true, // another tag of the same item (a set) is in the gate now
            Some(Some(ended)) => now.duration_since(*ended) < self.enter_window(),
            None => false,
        };
        self.presences.insert(
            uid.clone(),
            Presence {
                readers: BTreeSet::from([device.to_owned()]),
                lost_at: None,
                key: key.clone(),
            },
        );
        self.passages.insert(key, None);
        if same_passage {
            return (false, Vec::new());
        }
        let actions = match verdict {
            Verdict::Pass(_) => Vec::new(),
            Verdict::Notice(reason) => vec![GateAction::Notice {
                uid: uid.clone(),
                item: item.map(str::to_owned),
                reason,
            }],
            Verdict::Alarm(reason) => self.alarm(device, uid, item, reason, now),
        };
        (true, actions)
    }

    fn alarm(
        &self,
        device: &str,
        uid: &Uid,
        item: Option<&str>,
        reason: AlarmReason,
        now: Instant,
    ) -> Vec<GateAction> {
        let silenced = self.silenced_until(now).is_some();
        let mut actions = vec![GateAction::Alarm(Alarm {
            uid: uid.clone(),
            item: item.map(str::to_owned),
            reason,
            device: device.to_owned(),
            silenced,
        })];
        if !silenced {
            actions.extend(
                self.config
                    .alarm
                    .outputs
                    .iter()
                    .map(|output| GateAction::Output {
                        device: output.device.clone(),
                        command: output.command(),
                    }),
            );
        }
        actions
    }

    /// A reader of the gate lost a tag (or stopped: the pipeline ends its presences).
    pub fn departed(&mut self, device: &str, uid: &Uid, now: Instant) {
        if let Some(presence) = self.presences.get_mut(uid) {
            presence.readers.remove(device);
            if presence.readers.is_empty() {
                presence.lost_at = Some(now);
            }
        }
    }

    /// The gate's light barriers changed.
    pub fn inputs(&mut self, device: &str, levels: u8, now: Instant) {
        if let Some(counter) = &mut self.counter {
            counter.levels(device, levels, now);
        }
    }

    /// Time passes: presences end after the leave window, counting intervals close.
    pub fn tick(&mut self, now: Instant) -> Vec<GateAction> {
        let leave = Duration::from_millis(self.config.leave_window_ms);
        let mut ended = Vec::new();
        self.presences.retain(|_, presence| match presence.lost_at {
            Some(lost) if now.duration_since(lost) >= leave => {
                ended.push(presence.key.clone());
                false
            }
            _ => true,
        });
        for key in ended {
            // The passage ends when the item's last tag has left.
            if !self.presences.values().any(|p| p.key == key) {
                self.passages.insert(key, Some(now));
            }
        }
        let enter = self.enter_window();
        self.passages
            .retain(|_, ended| ended.is_none_or(|at| now.duration_since(at) < enter));
        let mut actions = Vec::new();
        if let Some(counter) = &mut self.counter
            && let Some(count) = counter.tick(now)
        {
            actions.push(GateAction::Counted(count));
        }
        actions
    }

    /// Staff silenced the gate: outputs stay off for the configured time.
    pub fn silence(&mut self, now: Instant) -> Instant {
        let until = now + Duration::from_millis(self.config.alarm.silence_ms);
        self.silenced_until = Some(until);
        until
    }

    /// Staff ended a silence early.
    pub fn unsilence(&mut self) {
        self.silenced_until = None;
    }

    fn enter_window(&self) -> Duration {
        Duration::from_millis(self.config.enter_window_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfidgw_tag::LibraryItem;

    fn tag(
        model: TagModel,
        item: Option<&str>,
        owner: OwnerClass,
        security: Security,
    ) -> DecodedTag {
        // Start from a real decode (so new fields of the tag crate need no change here),
        // then set what each row is about.
        let mut tag = rfidgw_tag::decode(
            &[],
            &rfidgw_tag::TagHints::default(),
            &rfidgw_tag::SiteConfig::default(),
        );
        tag.model = model;
        tag.item = item.map(|id| LibraryItem {
            primary_item_id: id.to_owned(),
            owner: None,
            parts_in_item: Some(1),
            part_number: Some(1),
            type_of_usage: None,
        });
        tag.security = security;
        tag.owner_class = owner;
        tag
    }

    const ISO3: TagModel = TagModel::Iso28560_3;

    /// case, tag, on_loan, security config, site lists owners, verdict
    type Row = (
        &'static str,
        DecodedTag,
        Option<bool>,
        SecurityConfig,
        bool,
        Verdict,
    );

    #[test]
    #[allow(clippy::too_many_lines)] // one row per class of item: the table is the test
    fn each_class_of_item_gets_its_verdict_under_the_default_policies() {
        use AlarmReason as R;
        use OwnerClass::{Foreign, Ours, Unknown as NoOwner};
        use Security::{Secured, Unknown, Unsecured};
        let afi = SecurityConfig::default();
        let database = SecurityConfig {
            mode: SecurityMode::Database,
            ..SecurityConfig::default()
        };
        let rows: Vec<Row> = vec![
            (
                "secured item of ours",
                tag(ISO3, Some("1"), Ours, Secured),
                None,
                afi,
                true,
                Verdict::Alarm(R::Secured),
            ),
            (
                "borrowed item",
                tag(ISO3, Some("1"), Ours, Unsecured),
                None,
                afi,
                true,
                Verdict::Pass(PassReason::Unsecured),
            ),
            (
                "foreign secured item",
                tag(ISO3, Some("1"), Foreign, Secured),
                None,
                afi,
                true,
                Verdict::Pass(PassReason::Policy),
            ),
            (
                "no owner, secured: decided",
                tag(TagModel::Rfid501, Some("1"), NoOwner, Secured),
                None,
                afi,
                true,
                Verdict::Alarm(R::Secured),
            ),
            (
                "no owner, borrowed",
                tag(TagModel::Rfid501, Some("1"), NoOwner, Unsecured),
                None,
                afi,
                true,
                Verdict::Pass(PassReason::Unsecured),
            ),
            (
                "our item, odd AFI",
                tag(ISO3, Some("1"), Ours, Unknown),
                None,
                afi,
                true,
                Verdict::Notice(R::UnknownState),
            ),
            (
                "unreadable, secured by AFI",
                tag(TagModel::Unknown, None, NoOwner, Secured),
                None,
                afi,
                true,
                Verdict::Alarm(R::Secured),
            ),
            (
                "unreadable, state unknown",
                tag(TagModel::Unknown, None, NoOwner, Unknown),
                None,
                afi,
                true,
                Verdict::Notice(R::Unreadable),
            ),
            (
                "blank tag",
                tag(TagModel::Blank, None, NoOwner, Unknown),
                None,
                afi,
                true,
                Verdict::Notice(R::Unreadable),
            ),
            (
                "db: not on loan",
                tag(ISO3, Some("1"), Ours, Unknown),
                Some(false),
                database,
                true,
                Verdict::Alarm(R::NotOnLoan),
            ),
            (
                "db: on loan",
                tag(ISO3, Some("1"), Ours, Unknown),
                Some(true),
                database,
                true,
                Verdict::Pass(PassReason::Unsecured),
            ),
            (
                "db: not cached",
                tag(ISO3, Some("1"), Ours, Unknown),
                None,
                database,
                true,
                Verdict::Notice(R::UnknownState),
            ),
            (
                "db: foreign",
                tag(ISO3, Some("1"), Foreign, Unknown),
                Some(false),
                database,
                true,
                Verdict::Pass(PassReason::Policy),
            ),
            (
                "site lists no owners",
                tag(ISO3, Some("1"), NoOwner, Secured),
                None,
                afi,
                false,
                Verdict::Alarm(R::Secured),
            ),
        ];
        for (case, tag, on_loan, security, owners, want) in rows {
            let sighting = Sighting {
                tag: &tag,
                on_loan,
                loan_write_owed: false,
            };
            let got = decide(sighting, &security, &GatePolicy::default(), owners);
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn an_owed_loan_write_lets_a_secured_tag_pass_and_nothing_else() {
        let afi = SecurityConfig::default();
        let database = SecurityConfig {
            mode: SecurityMode::Database,
            ..SecurityConfig::default()
        };
        let ours = |security| tag(ISO3, Some("1"), OwnerClass::Ours, security);
        // (tag, loans cache, security mode, loan write owed, verdict)
        let rows = [
            (
                ours(Security::Secured),
                None,
                &afi,
                true,
                Verdict::Pass(PassReason::LoanWriteOwed),
            ),
            (
                ours(Security::Secured),
                None,
                &afi,
                false,
                Verdict::Alarm(AlarmReason::Secured),
            ),
            (
                ours(Security::Unsecured),
                None,
                &afi,
                true,
                Verdict::Pass(PassReason::Unsecured),
            ),
            // Database mode decides from the loans cache alone: no tag write is ever owed.
            (
                ours(Security::Secured),
                Some(false),
                &database,
                true,
                Verdict::Alarm(AlarmReason::NotOnLoan),
            ),
            // Another library's item is its own policy's, whatever the book says.
            (
                tag(ISO3, Some("1"), OwnerClass::Foreign, Security::Secured),
                None,
                &afi,
                true,
                Verdict::Pass(PassReason::Policy),
            ),
        ];
        for (n, (tag, on_loan, security, loan_write_owed, want)) in rows.into_iter().enumerate() {
            let sighting = Sighting {
                tag: &tag,
                on_loan,
                loan_write_owed,
            };
            assert_eq!(
                decide(sighting, security, &GatePolicy::default(), true),
                want,
                "row {n}"
            );
        }
    }

    #[test]
    fn policies_change_the_verdict_for_their_class_only() {
        let afi = SecurityConfig::default();
        let strict = GatePolicy {
            foreign: Policy::Alarm,
            no_owner: NoOwnerPolicy::Alarm,
            unreadable: Policy::Alarm,
            unknown: Policy::Ignore,
        };
        let rows = [
            (
                tag(ISO3, Some("1"), OwnerClass::Foreign, Security::Unsecured),
                Verdict::Alarm(AlarmReason::Foreign),
            ),
            (
                tag(ISO3, Some("1"), OwnerClass::Unknown, Security::Unsecured),
                Verdict::Alarm(AlarmReason::NoOwner),
            ),
            (
                tag(
                    TagModel::Unknown,
                    None,
                    OwnerClass::Unknown,
                    Security::Unknown,
                ),
                Verdict::Alarm(AlarmReason::Unreadable),
            ),
            (
                tag(ISO3, Some("1"), OwnerClass::Ours, Security::Unknown),
                Verdict::Pass(PassReason::Policy),
            ),
            (
                tag(ISO3, Some("1"), OwnerClass::Ours, Security::Secured),
                Verdict::Alarm(AlarmReason::Secured),
            ),
        ];
        for (n, (tag, want)) in rows.into_iter().enumerate() {
            let got = decide(
                Sighting {
                    tag: &tag,
                    on_loan: None,
                    loan_write_owed: false,
                },
                &afi,
                &strict,
                true,
            );
            assert_eq!(got, want, "row {n}");
        }
    }

    fn gate_with_output() -> Gate {
        let config = GateConfig {
            alarm: AlarmConfig {
                outputs: vec![AlarmOutput {
                    device: "left".into(),
                    beeper: Signal::Flash,
                    red: Signal::Flash,
                    green: Signal::Off,
                    signal_ms: 3_000,
                    relay_ms: 2_000,
                }],
                ..AlarmConfig::default()
            },
            ..GateConfig::default()
        };
        Gate::new(config, Instant::now())
    }

    fn kinds(actions: &[GateAction]) -> Vec<&'static str> {
        actions
            .iter()
            .map(|a| match a {
                GateAction::Alarm(alarm) if alarm.silenced => "silenced-alarm",
                GateAction::Alarm(_) => "alarm",
                GateAction::Output { .. } => "output",
                GateAction::Notice { .. } => "notice",
                GateAction::Counted(_) => "counted",
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_alarm_per_item_per_passage_across_both_pedestals_and_rereads() {
        let mut gate = gate_with_output();
        let uid = Uid::new([0xE0, 1]);
        let alarm = Verdict::Alarm(AlarmReason::Secured);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // (step, actions expected)
        let first = gate.arrived("left", &uid, alarm, Some("1234"), t0).1;
        assert_eq!(kinds(&first), ["alarm", "output"]);
        let GateAction::Output { device, command } = &first[1] else {
            unreachable!()
        };
        assert_eq!(device, "left");
        assert_eq!(command.relay_for, Some(Duration::from_secs(2)));
        assert!(
            gate.arrived("right", &uid, alarm, Some("1234"), ms(10))
                .1
                .is_empty()
        );
        gate.departed("left", &uid, ms(100));
        gate.departed("right", &uid, ms(200));
        // Back within the leave window: the same presence.
        assert!(
            gate.arrived("left", &uid, alarm, Some("1234"), ms(900))
                .1
                .is_empty()
        );
        gate.departed("left", &uid, ms(1_000));
        assert!(gate.tick(ms(2_000)).is_empty());
        assert_eq!(gate.present(), 1, "still inside the leave window");
        gate.tick(ms(2_600));
        assert_eq!(gate.present(), 0);
        // Back within the enter window: the same passage, no second alarm.
        assert!(
            gate.arrived("left", &uid, alarm, Some("1234"), ms(5_000))
                .1
                .is_empty()
        );
        gate.departed("left", &uid, ms(5_100));
        gate.tick(ms(6_700));
        // A new passage after the enter window: a new alarm.
        gate.tick(ms(20_000));
        assert_eq!(
            kinds(
                &gate
                    .arrived("left", &uid, alarm, Some("1234"), ms(20_000))
                    .1
            ),
            ["alarm", "output"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silenced_gate_records_alarms_without_driving_outputs() {
        let mut gate = gate_with_output();
        let now = Instant::now();
        let until = gate.silence(now);
        assert_eq!(until, now + Duration::from_mins(5));
        let actions = gate
            .arrived(
                "left",
                &Uid::new([1]),
                Verdict::Alarm(AlarmReason::Secured),
                None,
                now,
            )
            .1;
        assert_eq!(kinds(&actions), ["silenced-alarm"]);
        gate.unsilence();
        let actions = gate
            .arrived(
                "left",
                &Uid::new([2]),
                Verdict::Alarm(AlarmReason::Secured),
                None,
                now,
            )
            .1;
        assert_eq!(kinds(&actions), ["alarm", "output"]);
    }

    #[tokio::test(start_paused = true)]
    async fn passes_and_notices_never_drive_outputs() {
        let mut gate = gate_with_output();
        let now = Instant::now();
        let pass = gate
            .arrived(
                "left",
                &Uid::new([1]),
                Verdict::Pass(PassReason::Unsecured),
                Some("1"),
                now,
            )
            .1;
        assert!(pass.is_empty());
        let notice = gate
            .arrived(
                "left",
                &Uid::new([2]),
                Verdict::Notice(AlarmReason::Unreadable),
                None,
                now,
            )
            .1;
        assert_eq!(kinds(&notice), ["notice"]);
    }

    #[test]
    fn gate_config_parses_with_defaults_and_names_unknown_keys() {
        let config: GateConfig = toml::from_str(
            "leave_window_ms = 800\n[policy]\nforeign = \"alarm\"\n[[alarm.outputs]]\ndevice = \"g\"\nrelay_ms = 1500",
        )
        .unwrap();
        assert_eq!(config.leave_window_ms, 800);
        assert_eq!(config.policy.foreign, Policy::Alarm);
        assert_eq!(config.policy.unreadable, Policy::Log);
        assert_eq!(config.alarm.outputs[0].beeper, Signal::Flash);
        assert_eq!(config.alarm.outputs[0].signal_ms, 3_000);
        let err = toml::from_str::<GateConfig>("[policy]\nforeing = \"alarm\"").unwrap_err();
        assert!(err.to_string().contains("foreing"), "{err}");
        let err = toml::from_str::<GateConfig>("[policy]\nforeign = \"sound\"").unwrap_err();
        assert!(err.to_string().contains("sound"), "{err}");
    }
}
