//! The SIP2 backend of the ILS connector: the pooled client, its `Completion` (answered or
//! recovered through item information) mapped to the connector's domain outcomes.

use std::time::SystemTime;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rfidgw_sip2::frame::{
    CheckinResponse, CheckoutResponse, Command, FieldId, ItemInformationResponse, Message,
    Sip2Message as _,
};
use rfidgw_sip2::{Completion, Secret, Sip2Error, Sip2Pool};

use super::connector::{
    CheckinOutcome, CheckoutOutcome, Circulation, IlsCallError, IlsConnector, ItemInfo, Learned,
    PatronAccount, PatronBlock, PatronCheck, PatronProblem, Relayed, RenewOutcome,
};

/// The ILS over SIP2.
#[derive(Clone)]
pub struct Sip2Connector {
    pool: Sip2Pool,
}

impl Sip2Connector {
    /// A connector over a running pool.
    pub fn new(pool: Sip2Pool) -> Self {
        Self { pool }
    }
}

/// A SIP2 text field that is present but empty says nothing.
fn some(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}

fn some_opt(text: Option<&String>) -> Option<String> {
    text.and_then(|t| some(t))
}

/// For requests that change nothing: any failure to get an answer is "offline" (safe to
/// retry), except an answer that arrived but could not be read.
fn read_error(error: &Sip2Error) -> IlsCallError {
    match error {
        Sip2Error::BadResponse { .. }
        | Sip2Error::UnexpectedResponse { .. }
        | Sip2Error::Decode(_)
        | Sip2Error::Encode(_)
        | Sip2Error::Config(_) => IlsCallError::Failed(error.to_string()),
        _ => IlsCallError::Offline(error.to_string()),
    }
}

/// For checkouts and checkins: only "not sent" is offline; anything after sending may have
/// happened (the client already tried to recover through item information).
fn transaction_error(error: &Sip2Error) -> IlsCallError {
    match error {
        Sip2Error::Offline { .. }
        | Sip2Error::Connect { .. }
        | Sip2Error::ConnectTimeout { .. }
        | Sip2Error::Shutdown => IlsCallError::Offline(error.to_string()),
        Sip2Error::Encode(_) | Sip2Error::Config(_) => IlsCallError::Failed(error.to_string()),
        _ => IlsCallError::OutcomeUnknown(error.to_string()),
    }
}

/// Runs one ILS request, timed, and reports how it ended ([`crate::metrics::IlsCall`]):
/// `said_yes` tells an answer that said yes from one that said no.
async fn metered<T>(
    message: impl AsRef<str>,
    said_yes: impl FnOnce(&T) -> bool,
    call: impl Future<Output = Result<T, IlsCallError>>,
) -> Result<T, IlsCallError> {
    let started = std::time::Instant::now();
    let answer = call.await;
    let result = match &answer {
        Ok(outcome) if said_yes(outcome) => "ok",
        Ok(_) => "said_no",
        Err(IlsCallError::Offline(_)) => "offline",
        Err(IlsCallError::OutcomeUnknown(_)) => "outcome_unknown",
        Err(IlsCallError::Failed(_)) => "failed",
    };
    let error = answer.as_ref().err().map(ToString::to_string);
    crate::metrics::IlsCall {
        message: message.as_ref(),
        result,
        took: started.elapsed(),
        error: error.as_deref(),
    }
    .emit();
    answer
}

/// The `message` label of a request relayed for the SIP2 face: `relay_checkout`,
/// `relay_patron_status_request`, … (the spec's name of the command).
fn relay_label(command: Command) -> String {
    format!("relay_{}", command.name().to_lowercase().replace(' ', "_"))
}

/// Whether a patron check said yes.
fn accepted(check: &PatronCheck) -> bool {
    check.problem.is_none()
}

/// A checkout's completion as the domain outcome.
fn checkout_outcome(item: &str, completion: Completion<CheckoutResponse>) -> CheckoutOutcome {
    match completion {
        Completion::Answered(r) => CheckoutOutcome {
            ok: r.ok,
            item: item.to_owned(),
            title: some(&r.title_identifier),
            due_date: some(&r.due_date),
            desensitize: r.desensitize,
            renewal: r.renewal_ok,
            screen_message: r.screen_message,
            print_line: r.print_line,
            learned: Learned::Answered,
        },
        Completion::Recovered {
            item: info,
            applied,
        } => CheckoutOutcome {
            ok: applied,
            item: item.to_owned(),
            title: some(&info.title_identifier),
            due_date: some_opt(info.due_date.as_ref()),
            desensitize: None,
            renewal: false,
            screen_message: Vec::new(),
            print_line: Vec::new(),
            learned: Learned::Recovered,
        },
    }
}

/// A checkin's completion as the domain outcome.
fn checkin_outcome(item: &str, completion: Completion<CheckinResponse>) -> CheckinOutcome {
    match completion {
        Completion::Answered(r) => CheckinOutcome {
            ok: r.ok,
            item: item.to_owned(),
            title: some_opt(r.title_identifier.as_ref()),
            resensitize: Some(r.resensitize),
            alert: r.alert,
            alert_type: some_opt(r.alert_type.as_ref()),
            sort_bin: some_opt(r.sort_bin.as_ref()),
            permanent_location: some(&r.permanent_location),
            destination: some_opt(r.destination_location.as_ref()),
            media_type: some_opt(r.media_type.as_ref()),
            screen_message: r.screen_message.clone(),
            learned: Learned::Answered,
            response: Some(Box::new(r)),
        },
        Completion::Recovered {
            item: info,
            applied,
        } => CheckinOutcome {
            ok: applied,
            item: item.to_owned(),
            title: some(&info.title_identifier),
            resensitize: None,
            alert: false,
            alert_type: None,
            sort_bin: None,
            permanent_location: some_opt(info.permanent_location.as_ref()),
            destination: None,
            media_type: some_opt(info.media_type.as_ref()),
            screen_message: Vec::new(),
            learned: Learned::Recovered,
            response: None,
        },
    }
}

/// The answer a relayed checkout or checkin would have had, built from item information
/// after the real one was lost: ok when the transaction took effect.
fn recovered_answer(request: &Message, info: &ItemInformationResponse, applied: bool) -> Message {
    let field = |id| request.field(id).unwrap_or_default().to_owned();
    let screen_message = vec![if applied {
        "Done (confirmed by the library system after a lost answer).".to_owned()
    } else {
        "Not done (the library system's answer was lost; it shows no change).".to_owned()
    }];
    let date = rfidgw_sip2::server::responses::now();
    if request.command == Command::Checkout {
        CheckoutResponse {
            ok: applied,
            renewal_ok: false,
            magnetic_media: None,
            desensitize: Some(applied),
            transaction_date: date,
            institution_id: field(FieldId::AO),
            patron_identifier: field(FieldId::AA),
            item_identifier: field(FieldId::AB),
            title_identifier: info.title_identifier.clone(),
            due_date: info.due_date.clone().unwrap_or_default(),
            media_type: info.media_type.clone(),
            screen_message,
            ..Default::default()
        }
        .to_message()
    } else {
        CheckinResponse {
            ok: applied,
            resensitize: applied,
            magnetic_media: None,
            alert: !applied,
            transaction_date: date,
            institution_id: field(FieldId::AO),
            item_identifier: field(FieldId::AB),
            permanent_location: info.permanent_location.clone().unwrap_or_default(),
            title_identifier: some(&info.title_identifier),
            media_type: info.media_type.clone(),
            screen_message,
            ..Default::default()
        }
        .to_message()
    }
}

impl IlsConnector for Sip2Connector {
    fn relay(&self, request: Message) -> BoxFuture<'_, Result<Relayed, IlsCallError>> {
        // An answer is `ok`, whatever it says: the kiosk reads it.
        let label = relay_label(request.command);
        metered(label, |_: &Relayed| true, async move {
            let lookup = matches!(
                request.command,
                Command::ScStatus
                    | Command::PatronStatus
                    | Command::PatronInformation
                    | Command::ItemInformation
            );
            match self.pool.relay(request.clone()).await {
                Ok(Completion::Answered(response)) => Ok(Relayed {
                    response,
                    learned: Learned::Answered,
                }),
                Ok(Completion::Recovered { item, applied }) => Ok(Relayed {
                    response: recovered_answer(&request, &item, applied),
                    learned: Learned::Recovered,
                }),
                Err(error) if lookup => Err(read_error(&error)),
                Err(error) => Err(transaction_error(&error)),
            }
        })
        .boxed()
    }

    fn checkout<'a>(
        &'a self,
        patron: &'a str,
        item: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<CheckoutOutcome, IlsCallError>> {
        metered("checkout", |o: &CheckoutOutcome| o.ok, async move {
            let completion = self
                .pool
                .checkout(patron, item, pin, false)
                .await
                .map_err(|e| transaction_error(&e))?;
            Ok(checkout_outcome(item, completion))
        })
        .boxed()
    }

    fn checkin<'a>(&'a self, item: &'a str) -> BoxFuture<'a, Result<CheckinOutcome, IlsCallError>> {
        metered("checkin", |o: &CheckinOutcome| o.ok, async move {
            let completion = self
                .pool
                .checkin(item)
                .await
                .map_err(|e| transaction_error(&e))?;
            Ok(checkin_outcome(item, completion))
        })
        .boxed()
    }

    fn checkout_offline<'a>(
        &'a self,
        patron: &'a str,
        item: &'a str,
        at: SystemTime,
        due: SystemTime,
    ) -> BoxFuture<'a, Result<CheckoutOutcome, IlsCallError>> {
        metered("checkout_offline", |o: &CheckoutOutcome| o.ok, async move {
            let completion = self
                .pool
                .checkout_offline(patron, item, at, due)
                .await
                .map_err(|e| transaction_error(&e))?;
            Ok(checkout_outcome(item, completion))
        })
        .boxed()
    }

    fn checkin_offline<'a>(
        &'a self,
        item: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<CheckinOutcome, IlsCallError>> {
        metered("checkin_offline", |o: &CheckinOutcome| o.ok, async move {
            let completion = self
                .pool
                .checkin_offline(item, at)
                .await
                .map_err(|e| transaction_error(&e))?;
            Ok(checkin_outcome(item, completion))
        })
        .boxed()
    }

    fn is_online(&self) -> bool {
        self.pool.is_online()
    }

    fn renew<'a>(
        &'a self,
        patron: &'a str,
        item: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<RenewOutcome, IlsCallError>> {
        metered("renew", |o: &RenewOutcome| o.ok, async move {
            // A renewal changes only a due date: a lost answer is safe to ask again.
            let r = self
                .pool
                .renew(patron, item, pin)
                .await
                .map_err(|e| read_error(&e))?;
            Ok(RenewOutcome {
                ok: r.ok,
                item: item.to_owned(),
                due_date: some(&r.due_date),
                screen_message: r.screen_message,
            })
        })
        .boxed()
    }

    fn item_information<'a>(
        &'a self,
        item: &'a str,
    ) -> BoxFuture<'a, Result<ItemInfo, IlsCallError>> {
        metered("item_information", |_: &ItemInfo| true, async move {
            let r = self
                .pool
                .item_information(item)
                .await
                .map_err(|e| read_error(&e))?;
            Ok(ItemInfo {
                item: item.to_owned(),
                title: some(&r.title_identifier),
                circulation: Circulation::from_sip2(r.circulation_status),
                due_date: some_opt(r.due_date.as_ref()),
                media_type: some_opt(r.media_type.as_ref()),
                permanent_location: some_opt(r.permanent_location.as_ref()),
            })
        })
        .boxed()
    }

    fn validate_patron<'a>(
        &'a self,
        patron: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<PatronCheck, IlsCallError>> {
        metered("validate_patron", accepted, async move {
            let r = self
                .pool
                .patron_status(patron, pin)
                .await
                .map_err(|e| read_error(&e))?;
            let flag = |f: Option<&String>| f.map(|v| v.trim().eq_ignore_ascii_case("Y"));
            let blocks = PatronBlock::from_sip2_status(&r.patron_status);
            let problem = if flag(r.valid_patron.as_ref()) == Some(false) {
                Some(PatronProblem::Unknown)
            } else if pin.is_some() && flag(r.valid_patron_password.as_ref()) == Some(false) {
                Some(PatronProblem::WrongPin)
            } else if blocks.contains(&PatronBlock::ChargeDenied)
                || blocks.contains(&PatronBlock::CardLost)
            {
                Some(PatronProblem::Blocked { blocks })
            } else {
                None
            };
            Ok(PatronCheck {
                patron: patron.to_owned(),
                problem,
                screen_message: r.screen_message,
            })
        })
        .boxed()
    }

    fn patron_account<'a>(
        &'a self,
        patron: &'a str,
        pin: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<PatronAccount, IlsCallError>> {
        metered("patron_account", |_: &PatronAccount| true, async move {
            // Summary position 0: the hold items list.
            let r = self
                .pool
                .patron_information(patron, pin, Some(0))
                .await
                .map_err(|e| read_error(&e))?;
            Ok(PatronAccount {
                patron: patron.to_owned(),
                fee_amount: some_opt(r.fee_amount.as_ref()),
                currency: some_opt(r.currency_type.as_ref()),
                holds_ready: r.hold_items,
                charged: r.charged_items_count,
                overdue: r.overdue_items_count,
            })
        })
        .boxed()
    }
}
