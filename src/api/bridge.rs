//! The SIP2 ⇄ JSON bridge: kiosk UIs and library systems that prefer HTTP ask the library
//! system through the daemon's ILS connector (its SIP2 pool) and get its answer as JSON.
//!
//! "The ILS said no" is a 200 with `ok: false` and the ILS's screen message. An ILS that
//! cannot be reached is a 503 `ils_offline` (nothing happened: retry later); an answer
//! that was lost is a 504 `ils_outcome_unknown` (it may have happened: look the item up
//! before retrying); an unreadable exchange is a 502 `ils_failed`. Checkouts, checkins and
//! renewals are journaled (`bridge_transaction`, without the patron). A PIN is never
//! logged nor echoed, not even in an error about its own type.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use rfidgw_sip2::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ApiError;
use super::{ApiState, JsonBody, PathParam};
use crate::bus::Event;
use crate::ils::connector::{
    CheckinOutcome, CheckoutOutcome, Circulation, IlsCallError, IlsConnector, Learned,
    PatronProblem,
};

/// A patron's PIN as it comes in a body: a string, never echoed (an error about it names
/// the field, never the value).
#[derive(Clone, Debug, Default)]
pub struct Pin(Secret);

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'v> serde::de::Visitor<'v> for Visitor {
            type Value = Pin;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the PIN as a string")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Pin, E> {
                // What a SIP2 field can carry; the message never holds the value.
                if value.chars().count() > 128
                    || value.contains('|')
                    || value.chars().any(char::is_control)
                {
                    return Err(E::custom(
                        "`pin` must be at most 128 characters without `|` or control characters",
                    ));
                }
                Ok(Pin(Secret::new(value)))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Pin, E> {
                Err(E::custom("`pin` must be a string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Pin, E> {
                Err(E::custom("`pin` must be a string"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Pin, E> {
                Err(E::custom("`pin` must be a string"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Pin, E> {
                Err(E::custom("`pin` must be a string"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'v>>(self, _: A) -> Result<Pin, A::Error> {
                Err(serde::de::Error::custom("`pin` must be a string"))
            }
            fn visit_map<A: serde::de::MapAccess<'v>>(self, _: A) -> Result<Pin, A::Error> {
                Err(serde::de::Error::custom("`pin` must be a string"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Pin {
    fn secret(pin: Option<&Self>) -> Option<&Secret> {
        pin.map(|p| &p.0)
    }
}

/// What a patron or item id may be: what a SIP2 field can carry (no `|`, no control
/// characters), 1–128 characters. Also the OpenAPI `pattern` of these fields.
pub const ID_PATTERN: &str = r"^[^|\u0000-\u001F\u007F-\u009F]{1,128}$";

/// Whether `value` is a usable patron or item id ([`ID_PATTERN`]).
fn id_ok(value: &str) -> bool {
    (1..=128).contains(&value.chars().count())
        && !value.contains('|')
        && !value.chars().any(char::is_control)
}

/// A patron or item id from a body (422 when unusable).
fn id<'a>(value: &'a str, field: &str) -> Result<&'a str, ApiError> {
    if !id_ok(value) {
        return Err(ApiError::Unprocessable(format!(
            "`{field}` must be 1–128 characters without `|` or control characters"
        )));
    }
    Ok(value)
}

fn connector(state: &ApiState) -> Result<Arc<dyn IlsConnector>, ApiError> {
    state.ils.clone().ok_or(ApiError::IlsNotConfigured)
}

/// How the outcome was learned.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LearnedView {
    /// The ILS answered.
    Answered,
    /// The answer was lost; an item-information lookup afterwards said what happened.
    Recovered,
}

impl From<Learned> for LearnedView {
    fn from(learned: Learned) -> Self {
        match learned {
            Learned::Answered => Self::Answered,
            Learned::Recovered => Self::Recovered,
        }
    }
}

/// Body of `POST /api/v1/ils/checkout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The patron's id (card number).
    #[schema(pattern = r"^[^|\u0000-\u001F\u007F-\u009F]{1,128}$")]
    patron: String,
    /// The item's id (barcode).
    #[schema(pattern = r"^[^|\u0000-\u001F\u007F-\u009F]{1,128}$")]
    item: String,
    /// The patron's PIN, when the library asks for one. Never echoed or logged.
    #[schema(value_type = Option<String>, pattern = r"^[^|\u0000-\u001F\u007F-\u009F]{0,128}$")]
    pin: Option<Pin>,
}

/// A checkout's answer: `ok` is the ILS's yes or no.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutAnswer {
    /// Whether the loan was made.
    ok: bool,
    /// The item.
    item: String,
    /// Its title, when the ILS said.
    title: Option<String>,
    /// The due date as the ILS wrote it.
    due_date: Option<String>,
    /// Whether the ILS says to unsecure the tag (`null`: it did not say).
    desensitize: Option<bool>,
    /// It renewed a loan the patron already had.
    renewal: bool,
    /// What to show the patron.
    screen_message: Vec<String>,
    /// What to print on the receipt.
    print_line: Vec<String>,
    /// Answered, or recovered after a lost answer.
    learned: LearnedView,
}

impl From<CheckoutOutcome> for CheckoutAnswer {
    fn from(o: CheckoutOutcome) -> Self {
        Self {
            ok: o.ok,
            item: o.item,
            title: o.title,
            due_date: o.due_date,
            desensitize: o.desensitize,
            renewal: o.renewal,
            screen_message: o.screen_message,
            print_line: o.print_line,
            learned: o.learned.into(),
        }
    }
}

/// Body of `POST /api/v1/ils/checkin`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// The item's id (barcode).
    #[schema(pattern = r"^[^|\u0000-\u001F\u007F-\u009F]{1,128}$")]
    item: String,
}

/// A checkin's answer, with what a sorter routes on.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckinAnswer {
    /// Whether the return was accepted.
    ok: bool,
    /// The item.
    item: String,
    /// Its title, when the ILS said.
    title: Option<String>,
    /// Whether the ILS says to re-secure the tag.
    resensitize: Option<bool>,
    /// Staff attention needed (hold, transit, …).
    alert: bool,
    /// SIP2 CV alert type.
    alert_type: Option<String>,
    /// SIP2 CL sort bin.
    sort_bin: Option<String>,
    /// SIP2 AQ permanent location.
    permanent_location: Option<String>,
    /// SIP2 CT destination location.
    destination: Option<String>,
    /// SIP2 CK media type.
    media_type: Option<String>,
    /// What to show the patron.
    screen_message: Vec<String>,
    /// Answered, or recovered after a lost answer.
    learned: LearnedView,
}

impl From<CheckinOutcome> for CheckinAnswer {
    fn from(o: CheckinOutcome) -> Self {
        Self {
            ok: o.ok,
            item: o.item,
            title: o.title,
            resensitize: o.resensitize,
            alert: o.alert,
            alert_type: o.alert_type,
            sort_bin: o.sort_bin,
            permanent_location: o.permanent_location,
            destination: o.destination,
            media_type: o.media_type,
            screen_message: o.screen_message,
            learned: o.learned.into(),
        }
    }
}

/// A renewal's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenewAnswer {
    /// Whether the loan was renewed.
    ok: bool,
    /// The item.
    item: String,
    /// The new due date.
    due_date: Option<String>,
    /// What to show the patron.
    screen_message: Vec<String>,
}

/// What the ILS knows about an item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemAnswer {
    /// The item.
    item: String,
    /// Its title.
    title: Option<String>,
    /// Where it is: `available`, `on_loan`, `on_hold_shelf`, `in_transit`, `other`.
    circulation: &'static str,
    /// The SIP2 circulation status code, for `other`.
    circulation_code: Option<u32>,
    /// When it is due back, while on loan.
    due_date: Option<String>,
    /// SIP2 CK media type.
    media_type: Option<String>,
    /// SIP2 AQ permanent location.
    permanent_location: Option<String>,
}

/// Body of the patron routes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatronRequest {
    /// The patron's id (card number).
    #[schema(pattern = r"^[^|\u0000-\u001F\u007F-\u009F]{1,128}$")]
    patron: String,
    /// The patron's PIN, when the library asks for one. Never echoed or logged.
    #[schema(value_type = Option<String>, pattern = r"^[^|\u0000-\u001F\u007F-\u009F]{0,128}$")]
    pin: Option<Pin>,
}

impl PatronRequest {
    /// The patron id (checked) and the PIN.
    pub fn into_parts(self) -> Result<(String, Option<Secret>), ApiError> {
        let patron = id(&self.patron, "patron")?.to_owned();
        Ok((patron, self.pin.map(|p| p.0)))
    }
}

/// Whether a patron may borrow.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatronAnswer {
    /// The patron id as given.
    patron: String,
    /// Whether the patron is known, the PIN right (when given) and borrowing allowed.
    ok: bool,
    /// Why not: `unknown`, `wrong_pin`, `blocked`.
    problem: Option<&'static str>,
    /// For `blocked`: `charge_denied`, `card_lost`, `excessive_fines`, … (SIP2 patron
    /// status positions).
    blocks: Vec<String>,
    /// What to show the patron.
    screen_message: Vec<String>,
}

/// A patron's fees and holds (no name, address or other personal data).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountAnswer {
    /// The patron id as given.
    patron: String,
    /// Outstanding fees, as the ILS wrote the amount.
    fee_amount: Option<String>,
    /// The currency of `fee_amount`.
    currency: Option<String>,
    /// Items waiting on the hold shelf.
    holds_ready: Vec<String>,
    /// Items on loan.
    charged: u32,
    /// Of which overdue.
    overdue: u32,
}

/// Journals a transaction (not the patron) without waiting for the commit: the ILS holds
/// the truth of it; this is the gateway's record.
fn journal(
    state: &ApiState,
    caller: &Caller,
    message: &'static str,
    item: &str,
    result: Result<(bool, &[String]), &IlsCallError>,
) {
    let (outcome, screen_message) = match result {
        Ok((true, screen)) => ("accepted", screen.to_vec()),
        Ok((false, screen)) => ("refused", screen.to_vec()),
        Err(IlsCallError::Offline(_)) => ("ils_offline", Vec::new()),
        Err(IlsCallError::OutcomeUnknown(_)) => ("ils_outcome_unknown", Vec::new()),
        Err(IlsCallError::Failed(_)) => ("ils_failed", Vec::new()),
    };
    tracing::info!(message, item, outcome, by = %caller.name, "bridge transaction");
    if let Some(events) = state.events.upgrade() {
        let _ = events.try_send(Event::BridgeTransaction {
            message,
            item: item.to_owned(),
            outcome,
            screen_message,
            by: caller.name.clone(),
        });
    }
}

/// Lends an item to a patron.
#[utoipa::path(post, path = "/api/v1/ils/checkout", tag = "bridge",
    security(("bearer" = ["operate"])),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "The ILS answered (`ok` is its yes or no)", body = CheckoutAnswer),
    ))]
pub(super) async fn checkout(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CheckoutRequest>,
) -> Result<Json<CheckoutAnswer>, ApiError> {
    let (patron, item) = (id(&body.patron, "patron")?, id(&body.item, "item")?);
    let ils = connector(&state)?;
    let result = ils
        .checkout(patron, item, Pin::secret(body.pin.as_ref()))
        .await;
    journal(
        &state,
        &caller,
        "checkout",
        item,
        result.as_ref().map(|o| (o.ok, o.screen_message.as_slice())),
    );
    Ok(Json(result?.into()))
}

/// Takes an item back.
#[utoipa::path(post, path = "/api/v1/ils/checkin", tag = "bridge",
    security(("bearer" = ["operate"])),
    request_body = CheckinRequest,
    responses(
        (status = 200, description = "The ILS answered (`ok` is its yes or no)", body = CheckinAnswer),
    ))]
pub(super) async fn checkin(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CheckinRequest>,
) -> Result<Json<CheckinAnswer>, ApiError> {
    let item = id(&body.item, "item")?;
    let ils = connector(&state)?;
    let result = ils.checkin(item).await;
    journal(
        &state,
        &caller,
        "checkin",
        item,
        result.as_ref().map(|o| (o.ok, o.screen_message.as_slice())),
    );
    Ok(Json(result?.into()))
}

/// Renews a patron's loan.
#[utoipa::path(post, path = "/api/v1/ils/renew", tag = "bridge",
    security(("bearer" = ["operate"])),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "The ILS answered (`ok` is its yes or no)", body = RenewAnswer),
    ))]
pub(super) async fn renew(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CheckoutRequest>,
) -> Result<Json<RenewAnswer>, ApiError> {
    let (patron, item) = (id(&body.patron, "patron")?, id(&body.item, "item")?);
    let ils = connector(&state)?;
    let result = ils
        .renew(patron, item, Pin::secret(body.pin.as_ref()))
        .await;
    journal(
        &state,
        &caller,
        "renew",
        item,
        result.as_ref().map(|o| (o.ok, o.screen_message.as_slice())),
    );
    let o = result?;
    Ok(Json(RenewAnswer {
        ok: o.ok,
        item: o.item,
        due_date: o.due_date,
        screen_message: o.screen_message,
    }))
}

/// What the ILS knows about an item (SIP2 item information).
#[utoipa::path(get, path = "/api/v1/ils/items/{item}", tag = "bridge",
    security(("bearer" = ["read"])),
    params(("item" = String, Path, description = "The item's id (barcode)", pattern = r"^[^|\u0000-\u001F\u007F-\u009F]{1,128}$")),
    responses(
        (status = 200, description = "The ILS's answer", body = ItemAnswer),
    ))]
pub(super) async fn item(
    State(state): State<ApiState>,
    PathParam(item): PathParam<String>,
) -> Result<Json<ItemAnswer>, ApiError> {
    if !id_ok(&item) {
        return Err(ApiError::BadRequest(
            "the item id must be 1–128 characters without `|` or control characters".into(),
        ));
    }
    let info = connector(&state)?.item_information(&item).await?;
    let (circulation, circulation_code) = match info.circulation {
        Circulation::Available => ("available", None),
        Circulation::OnLoan => ("on_loan", None),
        Circulation::OnHoldShelf => ("on_hold_shelf", None),
        Circulation::InTransit => ("in_transit", None),
        Circulation::Other(code) => ("other", Some(code)),
    };
    Ok(Json(ItemAnswer {
        item: info.item,
        title: info.title,
        circulation,
        circulation_code,
        due_date: info.due_date,
        media_type: info.media_type,
        permanent_location: info.permanent_location,
    }))
}

/// Whether a patron may borrow (known, PIN right when given, not blocked). A POST so
/// that the PIN never goes in a URL; `operate`, as it tells whether a PIN is right.
#[utoipa::path(post, path = "/api/v1/ils/patrons/validate", tag = "bridge",
    security(("bearer" = ["operate"])),
    request_body = PatronRequest,
    responses(
        (status = 200, description = "The ILS's answer", body = PatronAnswer),
    ))]
pub(super) async fn validate_patron(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<PatronRequest>,
) -> Result<Json<PatronAnswer>, ApiError> {
    let patron = id(&body.patron, "patron")?;
    let check = connector(&state)?
        .validate_patron(patron, Pin::secret(body.pin.as_ref()))
        .await?;
    let (problem, blocks) = match &check.problem {
        None => (None, Vec::new()),
        Some(PatronProblem::Unknown) => (Some("unknown"), Vec::new()),
        Some(PatronProblem::WrongPin) => (Some("wrong_pin"), Vec::new()),
        Some(PatronProblem::Blocked { blocks }) => (
            Some("blocked"),
            blocks
                .iter()
                .filter_map(|b| serde_json::to_value(b).ok())
                .filter_map(|b| b.as_str().map(str::to_owned))
                .collect(),
        ),
    };
    Ok(Json(PatronAnswer {
        patron: check.patron,
        ok: problem.is_none(),
        problem,
        blocks,
        screen_message: check.screen_message,
    }))
}

/// A patron's fees and holds ready for pick-up (`operate`: a patron's account).
#[utoipa::path(post, path = "/api/v1/ils/patrons/account", tag = "bridge",
    security(("bearer" = ["operate"])),
    request_body = PatronRequest,
    responses(
        (status = 200, description = "The ILS's answer", body = AccountAnswer),
    ))]
pub(super) async fn patron_account(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<PatronRequest>,
) -> Result<Json<AccountAnswer>, ApiError> {
    let patron = id(&body.patron, "patron")?;
    let account = connector(&state)?
        .patron_account(patron, Pin::secret(body.pin.as_ref()))
        .await?;
    Ok(Json(AccountAnswer {
        patron: account.patron,
        fee_amount: account.fee_amount,
        currency: account.currency,
        holds_ready: account.holds_ready,
        charged: account.charged,
        overdue: account.overdue,
    }))
}
