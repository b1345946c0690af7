//! What return and self-check stations did, as journaled and published: one record per
//! item, per refusal, per session, per owed write and per replayed transaction. No patron
//! ids, names or PINs are part of any of them.

use serde::Serialize;

/// How a tag's security write went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "tag", rename_all = "snake_case")]
pub enum SecurityOutcome {
    /// Written and read back.
    Confirmed,
    /// The site's security needs no tag write (database mode).
    NotNeeded,
    /// Not confirmed: an owed write records it.
    Owed {
        /// The owed write.
        owed_id: i64,
        /// Why.
        reason: String,
    },
    /// Not written because the transaction did not happen.
    Unchanged,
}

/// One returned item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReturnRecord {
    /// The station.
    pub station: String,
    /// The reader.
    pub device: String,
    /// The tag.
    pub uid: String,
    /// The item.
    pub item: String,
    /// Its title, when the ILS said.
    pub title: Option<String>,
    /// `checked_in`, `rejected` (the ILS said no), `queued_offline`, `outcome_unknown`.
    pub outcome: &'static str,
    /// The ILS's screen message, relayed to the patron.
    pub screen_message: Vec<String>,
    /// The offline queue row, when queued.
    pub queue_id: Option<i64>,
    /// The re-secure.
    pub security: SecurityOutcome,
    /// The bin chosen, when the station sorts.
    pub bin: Option<u16>,
    /// The bin's name.
    pub bin_name: Option<String>,
    /// The rule that chose it (`plan/#index name`), `None` for the exception bin by default.
    pub rule: Option<String>,
    /// Why this bin.
    pub sort_reason: Option<String>,
    /// Whether the sorter took the divert command (`None` without a sorter).
    pub diverted: Option<bool>,
    /// Why the divert failed, when it did.
    pub divert_error: Option<String>,
    /// Where the time went, from taking the item to the sorter's answer.
    pub timing: ReturnTiming,
}

/// Where a return's time went, in microseconds (the station's own share is
/// `total_us - ils_us`: the sort decision latency with the ILS excluded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReturnTiming {
    /// Waiting for the library system (or the offline queue's commit).
    pub ils_us: u64,
    /// The re-secure: tag write and read-back, with the pending record.
    pub tag_us: u64,
    /// The divert command, until the sorter answered.
    pub divert_us: u64,
    /// From taking the item to the sorter's answer.
    pub total_us: u64,
}

/// One item of a self-check session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoanRecord {
    /// The station.
    pub station: String,
    /// The session.
    pub session: String,
    /// The reader.
    pub device: String,
    /// The tag(s) of the item (every part of a set).
    pub uids: Vec<String>,
    /// The item.
    pub item: String,
    /// Its title, when the ILS said.
    pub title: Option<String>,
    /// `checked_out`, `renewed`, `refused` (by the ILS or a rule here), `queued_offline`,
    /// `outcome_unknown`.
    pub outcome: &'static str,
    /// The due date as the ILS (or the offline rule) gave it.
    pub due_date: Option<String>,
    /// Why not, when refused.
    pub reason: Option<String>,
    /// The ILS's screen message.
    pub screen_message: Vec<String>,
    /// The offline queue row, when queued.
    pub queue_id: Option<i64>,
    /// The un-secure of each tag.
    pub security: Vec<SecurityOutcome>,
}

/// What a finished self-check session gives the patron's receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    /// The station.
    pub station: String,
    /// The session.
    pub session: String,
    /// Why it ended: `idle`, `finished`, `next_patron`, `device_stopped`.
    pub ended: &'static str,
    /// Items lent (with title and due date).
    pub borrowed: Vec<ReceiptLine>,
    /// Items not lent, with the reason.
    pub failed: Vec<ReceiptLine>,
    /// Whether the session ran offline (loans queued).
    pub offline: bool,
    /// Items the patron said they presented, when a stack count was given.
    pub presented: Option<u32>,
    /// Distinct items decoded during the session.
    pub decoded: u32,
    /// `presented` differs from `decoded`: the patron should check the stack.
    pub stack_mismatch: bool,
}

/// One line of a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptLine {
    /// The item.
    pub item: String,
    /// Its title.
    pub title: Option<String>,
    /// Its due date.
    pub due_date: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
}

/// One transaction a kiosk or sorter made through the SIP2 face (src/sipface): what it
/// asked, how the library system (or the offline policy) answered. No patron id or PIN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KioskRecord {
    /// The station the kiosk's account counts as.
    pub station: String,
    /// The account (login id).
    pub account: String,
    /// The connection.
    pub terminal: u64,
    /// The message: `checkout`, `checkin`, `renew`, `patron_status`, … (BX names).
    pub message: &'static str,
    /// The item, when the message names one.
    pub item: Option<String>,
    /// `accepted`, `refused`, `answered` (lookups), `queued_offline`, `refused_offline`,
    /// `answered_offline`, `outcome_unknown`, `late` (answered after the kiosk was told
    /// no), `failed`.
    pub outcome: &'static str,
    /// Answered by the ILS, or recovered through item information after a lost answer.
    pub recovered: bool,
    /// What the kiosk was told (AF).
    pub screen_message: Vec<String>,
    /// The due date (AH), for loans and renewals.
    pub due_date: Option<String>,
    /// The sort bin (CL), for returns.
    pub sort_bin: Option<String>,
    /// The offline queue row, when queued.
    pub queue_id: Option<i64>,
    /// Time from the kiosk's request to the answer, in microseconds.
    pub took_us: u64,
}

/// Something a return or self-check station, the owed-write book or the replayer did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    /// A returned item: checkin, re-secure, bin, divert.
    ItemReturned(ReturnRecord),
    /// The return station did not take an item.
    ReturnRefused {
        /// The station.
        station: String,
        /// The reader.
        device: String,
        /// The tags in the field.
        uids: Vec<String>,
        /// `one_item_at_a_time`, `intake_stopped`, `offline_returns_off`, `unreadable`.
        reason: &'static str,
        /// What the patron is shown.
        screen_message: String,
    },
    /// A return station's intake stopped (bin full, jam) or resumed.
    IntakeChanged {
        /// The station.
        station: String,
        /// Whether items are taken now.
        open: bool,
        /// Why.
        reason: String,
    },
    /// A self-check session began.
    SessionStarted {
        /// The station.
        station: String,
        /// The session.
        session: String,
        /// `card` (a card reader) or `kiosk` (the API).
        by: &'static str,
        /// Whether the ILS was offline (the offline policy applies).
        offline: bool,
    },
    /// A patron was not accepted at a self-check station.
    PatronRefused {
        /// The station.
        station: String,
        /// Why (`unknown`, `wrong_pin`, `blocked`, `offline_checkout_off`, `pin_needed`).
        reason: String,
        /// What the patron is shown.
        screen_message: Vec<String>,
    },
    /// One item of a self-check session.
    ItemLoan(LoanRecord),
    /// A self-check session ended: the receipt.
    SessionEnded(SessionSummary),
    /// An owed write was created, completed or raised to staff.
    OwedWrite {
        /// The station whose transaction owes it.
        station: String,
        /// The owed write.
        owed_id: i64,
        /// The tag.
        uid: String,
        /// The item.
        item: Option<String>,
        /// `true`: secure; `false`: unsecure.
        secure: bool,
        /// `owed`, `done`, `raised`.
        state: &'static str,
        /// Why, or where it completed.
        detail: String,
    },
    /// A transaction was queued while the ILS was offline.
    OfflineQueued {
        /// The station.
        station: String,
        /// The queue row.
        queue_id: i64,
        /// `checkin` or `checkout`.
        transaction: &'static str,
        /// The item.
        item: String,
    },
    /// A queued transaction was replayed.
    Replayed {
        /// The station that took it.
        station: String,
        /// The queue row.
        queue_id: i64,
        /// `checkin` or `checkout`.
        transaction: &'static str,
        /// The item.
        item: String,
        /// `done`, `already_done` (found done after a restart), `failed`.
        outcome: &'static str,
        /// The ILS's answer or why it failed.
        detail: String,
    },
    /// A kiosk's transaction through the SIP2 face.
    KioskTransaction(KioskRecord),
    /// A return station's sort plan selection changed.
    SortPlanChanged {
        /// The station.
        station: String,
        /// The plan now in force (`schedule` when the schedule decides again).
        plan: String,
    },
    /// Staff resolved a worklist entry (and the queue row or owed write it is about).
    WorkResolved {
        /// The station the entry is about.
        station: String,
        /// The worklist entry.
        work_id: i64,
        /// The entry's kind (`owed_write_overdue`, `replay_failed`, …).
        work: String,
        /// The item, when the entry names one.
        item: Option<String>,
        /// Who dealt with it, as they said.
        by: String,
        /// How, as they said.
        resolution: String,
        /// The API token's name.
        token: String,
    },
}

impl Activity {
    /// The journal kind.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::ItemReturned(_) => "item_returned",
            Self::ReturnRefused { .. } => "return_refused",
            Self::IntakeChanged { .. } => "intake_changed",
            Self::SessionStarted { .. } => "session_started",
            Self::PatronRefused { .. } => "patron_refused",
            Self::ItemLoan(_) => "item_loan",
            Self::SessionEnded(_) => "session_ended",
            Self::OwedWrite { .. } => "owed_write",
            Self::OfflineQueued { .. } => "offline_queued",
            Self::Replayed { .. } => "replayed",
            Self::SortPlanChanged { .. } => "sort_plan_changed",
            Self::KioskTransaction(_) => "kiosk_transaction",
            Self::WorkResolved { .. } => "work_resolved",
        }
    }

    /// The station it concerns.
    pub fn station(&self) -> &str {
        match self {
            Self::ItemReturned(r) => &r.station,
            Self::ItemLoan(r) => &r.station,
            Self::SessionEnded(s) => &s.station,
            Self::KioskTransaction(r) => &r.station,
            Self::ReturnRefused { station, .. }
            | Self::IntakeChanged { station, .. }
            | Self::SessionStarted { station, .. }
            | Self::PatronRefused { station, .. }
            | Self::OwedWrite { station, .. }
            | Self::OfflineQueued { station, .. }
            | Self::Replayed { station, .. }
            | Self::SortPlanChanged { station, .. }
            | Self::WorkResolved { station, .. } => station,
        }
    }

    /// The device it concerns, when one.
    pub fn device(&self) -> Option<&str> {
        match self {
            Self::ItemReturned(r) => Some(&r.device),
            Self::ItemLoan(r) => Some(&r.device),
            Self::ReturnRefused { device, .. } => Some(device),
            _ => None,
        }
    }
}
