//! The face's answers: relay each kiosk request to the library system through the ILS
//! connector with its per-message timeout, answer per the station's offline policy when
//! the library system is away, and learn every loan and return (loans cache, journal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use rfidgw_sip2::frame::{AcsStatus, Command, FieldId, Message, Sip2Message as _};
use rfidgw_sip2::server::responses::refusal;
use rfidgw_sip2::server::{Handler, Request, Supported, Terminal};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::learn::{Lesson, lesson};
use super::offline;
use crate::bus::Event;
use crate::ils::connector::{IlsCallError, IlsConnector, Learned, Relayed};
use crate::station::activity::{Activity, KioskRecord};
use crate::station::loans::LoansCache;
use crate::station::offline::OfflinePolicy;
use crate::store::{NewQueued, NewWork, QueuedKind, Store};

/// What the face knows of one account beyond the protocol.
#[derive(Clone, Debug)]
pub struct AccountContext {
    /// The station it counts as.
    pub station: String,
    /// That station's offline policy.
    pub policy: OfflinePolicy,
    /// AO the kiosk is answered with (`None`: what the ILS sends).
    pub institution: Option<String>,
    /// AN / AP.
    pub location: Option<String>,
}

/// Where the face writes what it learns.
#[derive(Clone)]
pub struct FaceSinks {
    /// The offline queue and the staff worklist.
    pub store: Store,
    /// The gate's loans cache.
    pub loans: LoansCache,
    /// The journal and the bus.
    pub events: mpsc::Sender<Event>,
    /// Wakes the offline replayer when something is queued.
    pub replay: Arc<Notify>,
}

/// The face's [`Handler`].
pub struct FaceHandler {
    /// The library system (`None`: always offline).
    pub ils: Option<Arc<dyn IlsConnector>>,
    /// Accounts by login id.
    pub accounts: HashMap<String, AccountContext>,
    /// Where learning goes.
    pub sinks: FaceSinks,
    /// The relay timeout of each message.
    pub timeout: Arc<dyn Fn(Command) -> Duration + Send + Sync>,
    /// AM in an offline 98.
    pub library_name: Option<String>,
    /// BX of the ILS's last 98 (all, before one came).
    pub upstream_supported: Mutex<Supported>,
}

/// How a relay attempt ended.
enum Upstream {
    Answered(Relayed),
    Failed(IlsCallError),
    /// No answer within the face's timeout; the request may still be carried out (the
    /// late answer is learned when it comes).
    TimedOut(Duration),
}

/// "Library system offline" for an account without a library system.
fn no_ils() -> IlsCallError {
    IlsCallError::Offline("no library system is configured".into())
}

impl FaceHandler {
    /// Relays with the message's timeout. The relay runs as its own task, so a late
    /// answer to a checkout or checkin is still learned (journal, loans cache, worklist).
    async fn relay(
        &self,
        request: Message,
        account: &AccountContext,
        login: &str,
        terminal: u64,
    ) -> Upstream {
        let Some(ils) = self.ils.clone() else {
            return Upstream::Failed(no_ils());
        };
        let within = (self.timeout)(request.command);
        let command = request.command;
        let sent = request.clone();
        let mut task = tokio::spawn(async move { ils.relay(sent).await });
        match tokio::time::timeout(within, &mut task).await {
            Ok(Ok(Ok(relayed))) => Upstream::Answered(relayed),
            Ok(Ok(Err(error))) => Upstream::Failed(error),
            Ok(Err(join)) => {
                Upstream::Failed(IlsCallError::Failed(format!("relay task failed: {join}")))
            }
            Err(_) => {
                if matches!(
                    command,
                    Command::Checkout | Command::Checkin | Command::Renew
                ) {
                    let sinks = self.sinks.clone();
                    let account = account.clone();
                    let login = login.to_owned();
                    tokio::spawn(async move {
                        if let Ok(Ok(relayed)) = task.await {
                            learn_late(
                                &sinks,
                                &account,
                                &login,
                                terminal,
                                &request,
                                &relayed.response,
                            )
                            .await;
                        }
                    });
                }
                Upstream::TimedOut(within)
            }
        }
    }

    async fn status(&self, terminal: &Terminal, request: &Message) -> Message {
        let account = terminal.login.as_ref().and_then(|l| self.accounts.get(l));
        let policy = account.map(|a| a.policy.clone()).unwrap_or_default();
        let online = self.ils.as_ref().is_some_and(|ils| ils.is_online());
        if online && let Some(ils) = &self.ils {
            let within = (self.timeout)(Command::ScStatus);
            if let Ok(Ok(relayed)) = tokio::time::timeout(within, ils.relay(request.clone())).await
                && let Ok(mut status) = AcsStatus::from_message(&relayed.response)
            {
                let upstream = Supported::from_bx(&status.supported_messages);
                *self
                    .upstream_supported
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = upstream;
                if let Some(account) = account {
                    if let Some(inst) = &account.institution {
                        inst.clone_into(&mut status.institution_id);
                    }
                    if account.location.is_some() {
                        status.terminal_location.clone_from(&account.location);
                    }
                }
                // The kiosk waits for the face, which waits up to its own timeout.
                let face_ms = (self.timeout)(Command::Checkout).as_millis() / 100;
                status.timeout_period = u32::try_from(face_ms).unwrap_or(998).clamp(1, 998);
                status.offline_ok = policy.takes_checkins();
                return status.to_message();
            }
        }
        let supported = *self
            .upstream_supported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        offline::status_answer(
            &policy,
            account
                .and_then(|a| a.institution.as_deref())
                .or(request.field(FieldId::AO))
                .unwrap_or_default(),
            account.and_then(|a| a.location.as_deref()),
            self.library_name.as_deref(),
            supported,
        )
    }

    /// The answer while the library system is offline (nothing was sent), per the
    /// station's policy; queues returns and loans durably before saying yes.
    // One arm per message, as the policy reads; splitting it hides the policy.
    #[allow(clippy::too_many_lines)]
    async fn offline(
        &self,
        account: &AccountContext,
        request: &Message,
        reason: &str,
    ) -> (Message, &'static str, Option<i64>) {
        let institution = account
            .institution
            .clone()
            .or_else(|| request.field(FieldId::AO).map(str::to_owned))
            .unwrap_or_default();
        let item = request
            .field(FieldId::AB)
            .unwrap_or_default()
            .trim()
            .to_owned();
        let policy = &account.policy;
        // A no-block transaction already happened at the kiosk: queued with its own dates
        // whatever the policy says (see the offline module).
        let original = offline::original(request, SystemTime::now());
        match request.command {
            Command::Checkin if !policy.takes_checkins() && !original.no_block => (
                refusal(request, offline::CHECKIN_OFF),
                "refused_offline",
                None,
            ),
            Command::Checkin => {
                let queued = self
                    .queue(account, QueuedKind::Checkin, &item, None, original.at, None)
                    .await;
                match queued {
                    Ok(id) => {
                        self.sinks.loans.record(&item, false, "sip2_face");
                        (
                            offline::checkin_accepted(request, &institution),
                            "queued_offline",
                            Some(id),
                        )
                    }
                    Err(e) => (refusal(request, &e), "failed", None),
                }
            }
            Command::Checkout if !policy.takes_checkouts() && !original.no_block => (
                refusal(request, offline::CHECKOUT_OFF),
                "refused_offline",
                None,
            ),
            Command::Checkout => {
                let patron = request
                    .field(FieldId::AA)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                match self.sinks.store.offline_loans_of(&patron).await {
                    Ok(n) if n >= policy.max_items_per_patron && !original.no_block => {
                        return (
                            refusal(request, offline::CHECKOUT_LIMIT),
                            "refused_offline",
                            None,
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "SIP2 face: offline loan not queued");
                        return (refusal(request, offline::TRY_LATER), "failed", None);
                    }
                }
                let due = original.due.unwrap_or_else(|| policy.due(original.at));
                let queued = self
                    .queue(
                        account,
                        QueuedKind::Checkout,
                        &item,
                        Some(patron),
                        original.at,
                        Some(due),
                    )
                    .await;
                match queued {
                    Ok(id) => {
                        self.sinks.loans.record(&item, true, "sip2_face");
                        let due = due_text(due);
                        (
                            offline::checkout_accepted(request, &institution, &due),
                            "queued_offline",
                            Some(id),
                        )
                    }
                    Err(e) => (refusal(request, &e), "failed", None),
                }
            }
            Command::PatronStatus | Command::PatronInformation => (
                offline::patron_answer(request, &institution, policy),
                "answered_offline",
                None,
            ),
            Command::ItemInformation => (
                offline::item_answer(request, self.sinks.loans.on_loan(&item)),
                "answered_offline",
                None,
            ),
            Command::EndPatronSession => {
                let mut answer = refusal(request, "");
                // Ending a session needs nobody's agreement: say yes.
                answer.fixed.replace_range(..1, "Y");
                (answer, "answered_offline", None)
            }
            _ => {
                tracing::debug!(%reason, command = %request.command, "SIP2 face: offline; refusing");
                (offline::try_later(request), "refused_offline", None)
            }
        }
    }

    /// Queues a transaction done `at` (committed before the kiosk is told yes), journals
    /// it and wakes the replayer. The error is the screen message.
    async fn queue(
        &self,
        account: &AccountContext,
        kind: QueuedKind,
        item: &str,
        patron: Option<String>,
        at: SystemTime,
        due: Option<SystemTime>,
    ) -> Result<i64, String> {
        if item.is_empty() {
            return Err("No item identifier was given.".into());
        }
        let id = self
            .sinks
            .store
            .enqueue(&NewQueued {
                station: account.station.clone(),
                kind,
                item_id: item.to_owned(),
                patron,
                at,
                due,
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, item, "SIP2 face: offline transaction not queued");
                offline::TRY_LATER.to_owned()
            })?;
        self.sinks.replay.notify_one();
        let _ = self
            .sinks
            .events
            .send(Event::Station(Activity::OfflineQueued {
                station: account.station.clone(),
                queue_id: id,
                transaction: kind.as_str(),
                item: item.to_owned(),
            }))
            .await;
        Ok(id)
    }

    /// A checkout or checkin sent whose outcome is unknown: staff get it.
    async fn outcome_unknown(&self, account: &AccountContext, request: &Message, reason: &str) {
        if !matches!(request.command, Command::Checkout | Command::Checkin) {
            return;
        }
        let work = NewWork {
            kind: "outcome_unknown",
            station: account.station.clone(),
            item_id: request.field(FieldId::AB).map(str::to_owned),
            uid: None,
            reason: format!(
                "SIP2 face: {} outcome unknown (the kiosk was told no): {reason}",
                request.command.name()
            ),
            ref_id: None,
        };
        if let Err(e) = self.sinks.store.add_work(&work).await {
            tracing::error!(error = %e, "SIP2 face: cannot add to the worklist");
        }
    }

    async fn transact(
        &self,
        terminal: &Terminal,
        login: &str,
        account: &AccountContext,
        request: &Request,
    ) -> Message {
        let started = Instant::now();
        let mut message = request.message.clone();
        if message.command == Command::Checkin
            && let Some(location) = &account.location
        {
            match message.fields.iter_mut().find(|f| f.id == FieldId::AP) {
                Some(ap) if ap.value.trim().is_empty() => location.clone_into(&mut ap.value),
                Some(_) => {}
                None => message
                    .fields
                    .insert(0, rfidgw_sip2::Field::new(FieldId::AP, location.clone())),
            }
        }
        let (response, outcome, recovered, queue_id) = match self
            .relay(message.clone(), account, login, terminal.id)
            .await
        {
            Upstream::Answered(relayed) => {
                let mut response = relayed.response;
                if let Some(institution) = &account.institution {
                    for field in response.fields.iter_mut().filter(|f| f.id == FieldId::AO) {
                        institution.clone_into(&mut field.value);
                    }
                }
                (response, None, relayed.learned == Learned::Recovered, None)
            }
            Upstream::Failed(IlsCallError::Offline(reason)) => {
                let (answer, outcome, queue_id) = self.offline(account, &message, &reason).await;
                (answer, Some(outcome), false, queue_id)
            }
            Upstream::TimedOut(after) if is_lookup(message.command) => {
                let reason = format!("no answer within {after:?}");
                let (answer, outcome, queue_id) = self.offline(account, &message, &reason).await;
                (answer, Some(outcome), false, queue_id)
            }
            Upstream::TimedOut(after) => {
                let reason = format!("no answer within {after:?}");
                self.outcome_unknown(account, &message, &reason).await;
                let answer = refusal(
                    &message,
                    "The library system did not confirm this in time. Please see staff.",
                );
                (answer, Some("outcome_unknown"), false, None)
            }
            Upstream::Failed(IlsCallError::OutcomeUnknown(reason)) => {
                self.outcome_unknown(account, &message, &reason).await;
                let answer = refusal(
                    &message,
                    "The library system did not confirm this. Please see staff.",
                );
                (answer, Some("outcome_unknown"), false, None)
            }
            Upstream::Failed(IlsCallError::Failed(reason)) => {
                tracing::warn!(login, %reason, command = %message.command, "SIP2 face: relay failed");
                let answer = refusal(
                    &message,
                    "The library system could not handle this request. Please see staff.",
                );
                (answer, Some("failed"), false, None)
            }
        };
        let lesson = lesson(&message, &response);
        if outcome.is_none() || outcome == Some("queued_offline") {
            for (item, on_loan) in &lesson.loans {
                self.sinks.loans.record(item, *on_loan, "sip2_face");
            }
        }
        let record = record(
            account,
            login,
            terminal.id,
            &message,
            &lesson,
            outcome.unwrap_or(lesson.outcome),
            recovered,
            queue_id,
            started.elapsed(),
        );
        tracing::info!(
            station = %record.station, account = login, terminal = terminal.id,
            message = record.message, item = record.item.as_deref().unwrap_or("-"),
            outcome = record.outcome, took_us = record.took_us, "SIP2 face transaction"
        );
        let _ = self
            .sinks
            .events
            .send(Event::Station(Activity::KioskTransaction(record)))
            .await;
        response
    }
}

fn is_lookup(command: Command) -> bool {
    matches!(
        command,
        Command::PatronStatus
            | Command::PatronInformation
            | Command::ItemInformation
            | Command::ScStatus
    )
}

#[allow(clippy::too_many_arguments)]
fn record(
    account: &AccountContext,
    login: &str,
    terminal: u64,
    request: &Message,
    lesson: &Lesson,
    outcome: &'static str,
    recovered: bool,
    queue_id: Option<i64>,
    took: Duration,
) -> KioskRecord {
    KioskRecord {
        station: account.station.clone(),
        account: login.to_owned(),
        terminal,
        message: Supported::name(request.command).unwrap_or("unknown"),
        item: lesson.item.clone(),
        outcome,
        recovered,
        screen_message: lesson.screen_message.clone(),
        due_date: lesson.due_date.clone(),
        sort_bin: lesson.sort_bin.clone(),
        queue_id,
        took_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
    }
}

/// A checkout, checkin or renewal answered after the kiosk was told no: learned all the
/// same, and put on the staff worklist when it happened.
async fn learn_late(
    sinks: &FaceSinks,
    account: &AccountContext,
    login: &str,
    terminal: u64,
    request: &Message,
    response: &Message,
) {
    let lesson = lesson(request, response);
    for (item, on_loan) in &lesson.loans {
        sinks.loans.record(item, *on_loan, "sip2_face");
    }
    if lesson.outcome == "accepted" {
        let work = NewWork {
            kind: "late_answer",
            station: account.station.clone(),
            item_id: lesson.item.clone(),
            uid: None,
            reason: format!(
                "SIP2 face: the library system carried out a {} after the kiosk was told no",
                request.command.name()
            ),
            ref_id: None,
        };
        if let Err(e) = sinks.store.add_work(&work).await {
            tracing::error!(error = %e, "SIP2 face: cannot add to the worklist");
        }
    }
    let record = record(
        account,
        login,
        terminal,
        request,
        &lesson,
        "late",
        false,
        None,
        Duration::ZERO,
    );
    let _ = sinks
        .events
        .send(Event::Station(Activity::KioskTransaction(record)))
        .await;
}

/// An offline due date as the kiosk prints it (the library's local date).
fn due_text(due: SystemTime) -> String {
    let due = time::OffsetDateTime::from(due);
    let local = time::UtcOffset::current_local_offset().map_or(due, |o| due.to_offset(o));
    format!(
        "{:04}-{:02}-{:02}",
        local.year(),
        u8::from(local.month()),
        local.day()
    )
}

impl Handler for FaceHandler {
    fn handle<'a>(
        &'a self,
        terminal: &'a Terminal,
        request: &'a Request,
    ) -> BoxFuture<'a, Message> {
        async move {
            if request.message.command == Command::ScStatus {
                return self.status(terminal, &request.message).await;
            }
            let Some((login, account)) = terminal
                .login
                .as_ref()
                .and_then(|l| self.accounts.get(l).map(|a| (l, a)))
            else {
                return refusal(&request.message, "Please log in first.");
            };
            self.transact(terminal, login, account, request).await
        }
        .boxed()
    }
}
