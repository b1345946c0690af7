//! The ILS connector: what stations, the bridge and the SIP2 face ask of the library
//! system, in the library's terms rather than a protocol's.
//!
//! "The ILS said no" is an `Ok` outcome with `ok = false`, its reason in typed form where
//! the protocol carries one, and the screen message to relay. An ILS that cannot be reached
//! is [`IlsCallError::Offline`] (nothing happened: safe to queue or retry); a transaction
//! whose answer was lost and could not be recovered is [`IlsCallError::OutcomeUnknown`]
//! (it may have happened: never retry blindly).
//!
//! Transactions a station accepted while the ILS was offline are replayed with
//! [`IlsConnector::checkout_offline`] and [`IlsConnector::checkin_offline`]: the ILS records
//! them as having happened at their original time (SIP2 "no block"), and the errors mean
//! the same as for the online calls.

use std::time::SystemTime;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rfidgw_sip2::Secret;
use rfidgw_sip2::frame::{CheckinResponse, Message};
use serde::Serialize;

/// How an outcome was learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Learned {
    /// The ILS answered the request.
    Answered,
    /// The answer was lost; an item-information lookup afterwards says what happened.
    Recovered,
}

/// A checkout's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckoutOutcome {
    /// Whether the loan was made.
    pub ok: bool,
    /// The item.
    pub item: String,
    /// Its title, when the ILS said.
    pub title: Option<String>,
    /// The due date as the ILS wrote it.
    pub due_date: Option<String>,
    /// Whether the ILS says to unsecure the tag (`None`: it did not say).
    pub desensitize: Option<bool>,
    /// It was a renewal of a loan the patron already had.
    pub renewal: bool,
    /// What to show the patron.
    pub screen_message: Vec<String>,
    /// What to print on the receipt.
    pub print_line: Vec<String>,
    /// Answered, or recovered after a lost answer.
    pub learned: Learned,
}

/// A checkin's outcome, with everything a sort plan may route on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckinOutcome {
    /// Whether the return was accepted.
    pub ok: bool,
    /// The item.
    pub item: String,
    /// Its title, when the ILS said.
    pub title: Option<String>,
    /// Whether the ILS says to re-secure the tag.
    pub resensitize: Option<bool>,
    /// Staff attention needed (hold, transit, …).
    pub alert: bool,
    /// CV alert type.
    pub alert_type: Option<String>,
    /// CL sort bin.
    pub sort_bin: Option<String>,
    /// AQ permanent location.
    pub permanent_location: Option<String>,
    /// CT destination location.
    pub destination: Option<String>,
    /// CK media type.
    pub media_type: Option<String>,
    /// What to show the patron.
    pub screen_message: Vec<String>,
    /// Answered, or recovered after a lost answer.
    pub learned: Learned,
    /// The SIP2 response as received (sort plans route on its fields); `None` when
    /// recovered or from another backend.
    #[serde(skip)]
    pub response: Option<Box<CheckinResponse>>,
}

/// A renewal's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RenewOutcome {
    /// Whether the loan was renewed.
    pub ok: bool,
    /// The item.
    pub item: String,
    /// The new due date.
    pub due_date: Option<String>,
    /// What to show the patron.
    pub screen_message: Vec<String>,
}

/// Where an item is, in circulation terms (SIP2 §1.7 circulation status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Circulation {
    /// On the shelf.
    Available,
    /// On loan (charged).
    OnLoan,
    /// Waiting on the hold shelf.
    OnHoldShelf,
    /// Travelling to another branch.
    InTransit,
    /// Anything else (missing, lost, claimed returned, …) with the ILS's code.
    Other(u32),
}

impl Circulation {
    /// From the SIP2 circulation status code.
    pub const fn from_sip2(code: u32) -> Self {
        match code {
            3 | 9 => Self::Available,
            4 | 5 => Self::OnLoan,
            8 => Self::OnHoldShelf,
            10 => Self::InTransit,
            other => Self::Other(other),
        }
    }
}

/// What the ILS knows about an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemInfo {
    /// The item.
    pub item: String,
    /// Its title.
    pub title: Option<String>,
    /// Where it is.
    pub circulation: Circulation,
    /// When it is due back, while on loan.
    pub due_date: Option<String>,
    /// CK media type.
    pub media_type: Option<String>,
    /// AQ permanent location.
    pub permanent_location: Option<String>,
}

/// Why a patron may not borrow (the SIP2 patron status positions, §2.00 "patron status").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatronBlock {
    /// Charge privileges denied.
    ChargeDenied,
    /// Renewal privileges denied.
    RenewalDenied,
    /// Recall privileges denied.
    RecallDenied,
    /// Hold privileges denied.
    HoldDenied,
    /// The card was reported lost.
    CardLost,
    /// Too many items charged.
    TooManyCharged,
    /// Too many items overdue.
    TooManyOverdue,
    /// Too many renewals.
    TooManyRenewals,
    /// Too many claims of items returned.
    TooManyClaimsReturned,
    /// Too many items lost.
    TooManyLost,
    /// Excessive outstanding fines.
    ExcessiveFines,
    /// Excessive outstanding fees.
    ExcessiveFees,
    /// A recall is overdue.
    RecallOverdue,
    /// Too many items billed.
    TooManyBilled,
}

const BLOCKS: [PatronBlock; 14] = [
    PatronBlock::ChargeDenied,
    PatronBlock::RenewalDenied,
    PatronBlock::RecallDenied,
    PatronBlock::HoldDenied,
    PatronBlock::CardLost,
    PatronBlock::TooManyCharged,
    PatronBlock::TooManyOverdue,
    PatronBlock::TooManyRenewals,
    PatronBlock::TooManyClaimsReturned,
    PatronBlock::TooManyLost,
    PatronBlock::ExcessiveFines,
    PatronBlock::ExcessiveFees,
    PatronBlock::RecallOverdue,
    PatronBlock::TooManyBilled,
];

impl PatronBlock {
    /// The blocks a 14-character SIP2 patron status field sets (`Y` at a position).
    pub fn from_sip2_status(status: &str) -> Vec<Self> {
        status
            .chars()
            .zip(BLOCKS)
            .filter(|(flag, _)| *flag == 'Y')
            .map(|(_, block)| block)
            .collect()
    }
}

/// Why a patron was not accepted: typed, never parsed from message text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum PatronProblem {
    /// The ILS does not know the patron (BL N).
    Unknown,
    /// The PIN is wrong (CQ N).
    WrongPin,
    /// The patron is known but may not borrow.
    Blocked {
        /// Why.
        blocks: Vec<PatronBlock>,
    },
}

/// A patron check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PatronCheck {
    /// The patron id as given.
    pub patron: String,
    /// `None` when the patron may borrow; else why not.
    pub problem: Option<PatronProblem>,
    /// What to show the patron.
    pub screen_message: Vec<String>,
}

/// A patron's fees and holds (no name, address or other personal data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PatronAccount {
    /// The patron id.
    pub patron: String,
    /// Outstanding fees, as the ILS wrote the amount.
    pub fee_amount: Option<String>,
    /// The currency of `fee_amount`.
    pub currency: Option<String>,
    /// Items waiting for the patron on the hold shelf.
    pub holds_ready: Vec<String>,
    /// How many items the patron has on loan.
    pub charged: u32,
    /// How many of them are overdue.
    pub overdue: u32,
}

/// A SIP2 request relayed as it came (the SIP2 face, src/sipface), with the ILS's answer
/// as it sent it: sort bin, AMH fields, screen messages, print lines and unknown fields
/// all kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    /// The answer.
    pub response: Message,
    /// Answered, or recovered through item information after a lost answer (a checkout
    /// or checkin only; the answer is then built from what item information said).
    pub learned: Learned,
}

/// Why the ILS gave no outcome.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum IlsCallError {
    /// The ILS cannot be reached; nothing was done (safe to queue offline or retry).
    #[error("the library system is offline: {0}")]
    Offline(String),
    /// The request went out, the answer was lost, and recovery failed: it may have
    /// happened. Never retry blindly; ask item information first.
    #[error("the outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// The exchange failed for another reason (protocol error, unreadable answer).
    #[error("the library system exchange failed: {0}")]
    Failed(String),
}

/// What a station asks of the library system. Implementations: [`super::sip2::Sip2Connector`].
pub trait IlsConnector: Send + Sync {
    /// Lends `item` to `patron`.
    fn checkout<'a>(
        &'a self,
        patron: &'a str,
        item: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<CheckoutOutcome, IlsCallError>>;

    /// Takes `item` back.
    fn checkin<'a>(&'a self, item: &'a str) -> BoxFuture<'a, Result<CheckinOutcome, IlsCallError>>;

    /// Records a loan of `item` to `patron` that a station made while the ILS was offline,
    /// at `at`, due at `due` (the date the patron was given). The ILS records rather than
    /// decides (a blocked patron does not undo a loan that happened), but may still refuse,
    /// e.g. an unknown patron or item: `ok = false`, for staff to sort out. Errors as for
    /// [`IlsConnector::checkout`]: [`IlsCallError::Offline`] only when nothing was sent.
    fn checkout_offline<'a>(
        &'a self,
        patron: &'a str,
        item: &'a str,
        at: SystemTime,
        due: SystemTime,
    ) -> BoxFuture<'a, Result<CheckoutOutcome, IlsCallError>>;

    /// Records a return of `item` that a station took while the ILS was offline, at `at`
    /// (its return date, so no fine runs on for the offline time). Errors as for
    /// [`IlsConnector::checkin`].
    fn checkin_offline<'a>(
        &'a self,
        item: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<CheckinOutcome, IlsCallError>>;

    /// Whether the ILS is reachable right now (for SIP2: at least one connection is logged
    /// in). Cheap and without I/O: a replay loop asks it before each attempt. A `true` can
    /// still meet an [`IlsCallError::Offline`] when the line just broke.
    fn is_online(&self) -> bool;

    /// Renews `patron`'s loan of `item`.
    fn renew<'a>(
        &'a self,
        patron: &'a str,
        item: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<RenewOutcome, IlsCallError>>;

    /// What the ILS knows about `item`.
    fn item_information<'a>(
        &'a self,
        item: &'a str,
    ) -> BoxFuture<'a, Result<ItemInfo, IlsCallError>>;

    /// Whether `patron` (with `pin`, when the site asks for one) may borrow.
    fn validate_patron<'a>(
        &'a self,
        patron: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<PatronCheck, IlsCallError>>;

    /// The patron's fees and holds ready for pick-up.
    fn patron_account<'a>(
        &'a self,
        patron: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<PatronAccount, IlsCallError>>;

    /// Relays a SIP2 request from a kiosk (the SIP2 face) and returns the ILS's answer.
    /// A SIP2 backend forwards it with its own institution and terminal password (the
    /// patron's PIN goes as it came); errors mean what they mean for [`Self::checkout`]
    /// for requests that change something (checkout, checkin, renew, fee paid, hold, …)
    /// and for [`Self::item_information`] for lookups. A backend that does not speak SIP2
    /// says [`IlsCallError::Failed`] (the default).
    fn relay(&self, request: Message) -> BoxFuture<'_, Result<Relayed, IlsCallError>> {
        let command = request.command;
        async move {
            Err(IlsCallError::Failed(format!(
                "this library system backend does not relay SIP2 ({command})"
            )))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patron_status_positions_become_typed_blocks() {
        let rows: [(&str, &[PatronBlock]); 4] = [
            ("              ", &[]),
            ("Y             ", &[PatronBlock::ChargeDenied]),
            (
                "    Y     Y   ",
                &[PatronBlock::CardLost, PatronBlock::ExcessiveFines],
            ),
            ("             Y", &[PatronBlock::TooManyBilled]),
        ];
        for (status, want) in rows {
            assert_eq!(PatronBlock::from_sip2_status(status), want, "{status:?}");
        }
    }

    #[test]
    fn circulation_codes_map_to_where_the_item_is() {
        let rows = [
            (3, Circulation::Available),
            (4, Circulation::OnLoan),
            (5, Circulation::OnLoan),
            (8, Circulation::OnHoldShelf),
            (10, Circulation::InTransit),
            (12, Circulation::Other(12)),
        ];
        for (code, want) in rows {
            assert_eq!(Circulation::from_sip2(code), want, "{code}");
        }
    }
}
