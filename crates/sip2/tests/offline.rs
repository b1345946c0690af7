//! Offline store-and-forward against the ACS simulator: no-block checkouts and checkins
//! with their original dates, the simulator's transaction log (each replay reaches the ACS
//! once, also when its answer is lost) and its availability switch (the pool goes offline
//! without a request, and comes back).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rfidgw_sip2::Sip2Pool;
use rfidgw_sip2::acs_sim::{AcsSimulator, Fault, SimControl, SimTransaction};
use rfidgw_sip2::client::{BoxStream, Completion, Connector, Dialer, PeerState, Sip2Error};
use rfidgw_sip2::dialect::Sip2PeerConfig;
use rfidgw_sip2::frame::{Checkin, Checkout, Command, Sip2Message};
use tokio_util::sync::CancellationToken;

fn config() -> Sip2PeerConfig {
    let mut c = Sip2PeerConfig::new("sim", "demo", "demo");
    c.institution = "DEMO".into();
    c.request_timeout_ms = Some(5_000);
    c.pool_size = Some(1);
    c.max_backoff_ms = Some(1_000);
    c
}

fn duplex_pool(sim: &AcsSimulator) -> (Sip2Pool, CancellationToken) {
    let sim = sim.clone();
    let dialer: Dialer = Arc::new(move || {
        let sim = sim.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move { sim.serve(server).await });
            Ok(Box::new(client) as BoxStream)
        })
    });
    let token = CancellationToken::new();
    let connector = Connector::new(config()).unwrap().with_dialer(dialer);
    (Sip2Pool::start_with(connector, token.clone()), token)
}

async fn online_pool() -> (Sip2Pool, SimControl, CancellationToken) {
    let sim = AcsSimulator::demo();
    let control = sim.control();
    let (pool, token) = duplex_pool(&sim);
    pool.wait_online().await;
    (pool, control, token)
}

/// A loan made offline on 2024-03-05 10:20:30 UTC, due three weeks later.
fn offline_loan() -> (SystemTime, SystemTime) {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_634_030);
    (at, at + Duration::from_hours(21 * 24))
}

fn answered<T: std::fmt::Debug>(c: Completion<T>) -> T {
    match c {
        Completion::Answered(t) => t,
        other @ Completion::Recovered { .. } => panic!("expected an answer, got {other:?}"),
    }
}

fn log_of(control: &SimControl, item: &str) -> Vec<SimTransaction> {
    control
        .transactions()
        .into_iter()
        .filter(|t| t.item == item)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_offline_checkout_of_a_blocked_patron_is_recorded_with_the_due_date_given_offline() {
    let (pool, control, token) = online_pool().await;
    let refused = answered(pool.checkout("P1002", "I0001", None, false).await.unwrap());
    assert!(!refused.ok, "online, a blocked patron may not borrow");

    let (at, due) = offline_loan();
    let sent = Checkout::from_message(&pool.requests().checkout_offline("P1002", "I0001", at, due))
        .unwrap();
    let loan = answered(
        pool.checkout_offline("P1002", "I0001", at, due)
            .await
            .unwrap(),
    );
    assert!(loan.ok, "{loan:?}");
    assert_eq!(
        loan.due_date, sent.nb_due_date,
        "the due date the patron was given"
    );
    assert_eq!(control.charged_to("I0001").as_deref(), Some("P1002"));

    let log = log_of(&control, "I0001");
    assert_eq!(log.len(), 2, "{log:?}");
    let offline = &log[1];
    assert_eq!(
        (offline.command, offline.patron.as_deref(), offline.no_block),
        (Command::Checkout, Some("P1002"), true)
    );
    assert!(offline.ok);
    assert_eq!(offline.transaction_date, sent.transaction_date);
    assert!(
        offline.transaction_date.starts_with("202403"),
        "{offline:?}"
    );
    assert_eq!(
        offline.nb_due_date.as_deref(),
        Some(sent.nb_due_date.as_str())
    );
    assert!(
        !log[0].no_block && !log[0].ok,
        "the refused online attempt is logged too"
    );
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_offline_checkout_of_an_item_charged_to_another_patron_ends_that_loan() {
    let (pool, control, token) = online_pool().await;
    let (at, due) = offline_loan();
    assert_eq!(control.charged_to("I0004").as_deref(), Some("P1001"));
    let loan = answered(
        pool.checkout_offline("P1003", "I0004", at, due)
            .await
            .unwrap(),
    );
    assert!(loan.ok && !loan.renewal_ok, "{loan:?}");
    assert!(
        loan.screen_message
            .iter()
            .any(|m| m.contains("Previous loan")),
        "{loan:?}"
    );
    assert_eq!(control.charged_to("I0004").as_deref(), Some("P1003"));

    // A hold for someone else does not undo a loan that happened; the hold stays.
    let held = answered(
        pool.checkout_offline("P1001", "I0005", at, due)
            .await
            .unwrap(),
    );
    assert!(held.ok, "{held:?}");
    assert_eq!(control.hold_for("I0005").as_deref(), Some("P1003"));

    // A rental fee is billed without the acknowledgement nobody could give offline.
    let fines = control.fine_cents("P1001").unwrap();
    let dvd = answered(
        pool.checkout_offline("P1001", "I0007", at, due)
            .await
            .unwrap(),
    );
    assert!(dvd.ok, "{dvd:?}");
    assert_eq!(control.fine_cents("P1001"), Some(fines + 200));
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_offline_checkout_for_an_unknown_patron_or_item_is_refused() {
    let (pool, control, token) = online_pool().await;
    let (at, due) = offline_loan();
    let nobody = answered(
        pool.checkout_offline("P9999", "I0001", at, due)
            .await
            .unwrap(),
    );
    assert!(!nobody.ok);
    assert_eq!(nobody.screen_message, ["Unknown patron"]);
    let nothing = answered(
        pool.checkout_offline("P1001", "I9999", at, due)
            .await
            .unwrap(),
    );
    assert!(!nothing.ok);
    assert_eq!(control.charged_to("I0001"), None);
    let log = control.transactions();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|t| t.no_block && !t.ok), "{log:?}");
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_checkin_uncharges_a_charged_item_and_item_information_follows_its_state() {
    let (pool, control, token) = online_pool().await;
    // §1.7 circulation status: 04 charged, 03 available.
    assert_eq!(
        pool.item_information("I0004")
            .await
            .unwrap()
            .circulation_status,
        4
    );
    let back = answered(pool.checkin("I0004").await.unwrap());
    assert!(back.ok && back.resensitize);
    assert_eq!(back.patron_identifier.as_deref(), Some("P1001"));
    assert_eq!(control.charged_to("I0004"), None);
    let info = pool.item_information("I0004").await.unwrap();
    assert_eq!(info.circulation_status, 3);
    assert_eq!(info.due_date, None);

    let (at, due) = offline_loan();
    answered(
        pool.checkout_offline("P1001", "I0004", at, due)
            .await
            .unwrap(),
    );
    assert_eq!(
        pool.item_information("I0004")
            .await
            .unwrap()
            .circulation_status,
        4
    );

    let sent = Checkin::from_message(&pool.requests().checkin_offline("I0004", at)).unwrap();
    let returned = answered(pool.checkin_offline("I0004", at).await.unwrap());
    assert!(returned.ok && returned.resensitize, "{returned:?}");
    assert_eq!(control.charged_to("I0004"), None);
    assert_eq!(
        pool.item_information("I0004")
            .await
            .unwrap()
            .circulation_status,
        3
    );
    let last = control.transactions().pop().unwrap();
    assert_eq!(
        (last.command, last.no_block, last.ok),
        (Command::Checkin, true, true)
    );
    assert_eq!(last.patron, None);
    assert_eq!(last.transaction_date, sent.transaction_date);
    assert_eq!(last.return_date.as_deref(), Some(sent.return_date.as_str()));

    let unknown = answered(pool.checkin_offline("I9999", at).await.unwrap());
    assert!(!unknown.ok);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_to_an_offline_checkin_is_recovered_and_the_checkin_ran_once() {
    let (pool, control, token) = online_pool().await;
    let (at, _) = offline_loan();
    control.inject(Some(Command::Checkin), Fault::DropAfterProcessing);
    let recovered = pool.checkin_offline("I0004", at).await.unwrap();
    let Completion::Recovered { item, applied } = recovered else {
        panic!("the answer was dropped: {recovered:?}");
    };
    assert!(applied, "item information says it is back: {item:?}");
    let log = log_of(&control, "I0004");
    assert_eq!(log.len(), 1, "never sent twice: {log:?}");
    assert!(log[0].no_block);
    assert_eq!(control.executed(Command::Checkin), 1);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_to_an_offline_checkout_is_recovered_and_the_checkout_ran_once() {
    let (pool, control, token) = online_pool().await;
    let (at, due) = offline_loan();
    control.inject(Some(Command::Checkout), Fault::DropAfterProcessing);
    let recovered = pool
        .checkout_offline("P1002", "I0002", at, due)
        .await
        .unwrap();
    assert!(
        matches!(recovered, Completion::Recovered { applied: true, .. }),
        "{recovered:?}"
    );
    assert_eq!(control.charged_to("I0002").as_deref(), Some("P1002"));
    assert_eq!(log_of(&control, "I0002").len(), 1);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_response_asked_for_again_with_97_is_not_a_second_transaction() {
    let (pool, control, token) = online_pool().await;
    let (at, due) = offline_loan();
    control.inject(Some(Command::Checkout), Fault::BadChecksum);
    let loan = answered(
        pool.checkout_offline("P1001", "I0003", at, due)
            .await
            .unwrap(),
    );
    assert!(loan.ok);
    assert_eq!(log_of(&control, "I0003").len(), 1);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_acs_takes_an_idle_pool_offline_and_back_online_when_it_returns() {
    let (pool, control, token) = online_pool().await;
    assert!(pool.is_online() && control.available());

    control.set_available(false);
    // No request: the idle connection sees its line close.
    tokio::time::timeout(Duration::from_secs(30), pool.wait_for(PeerState::Offline))
        .await
        .expect("the pool notices the closed line by itself");
    assert!(!pool.is_online());
    let connections = control.connections();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!pool.is_online(), "reconnects are closed at once");
    assert!(
        control.connections() > connections,
        "new connections are accepted (and closed)"
    );
    assert!(pool.status().last_error.is_some(), "{:?}", pool.status());

    let (at, _) = offline_loan();
    let err = pool.checkin_offline("I0004", at).await.unwrap_err();
    assert!(matches!(err, Sip2Error::Offline { .. }), "not sent: {err}");
    assert!(control.transactions().is_empty());

    control.set_available(true);
    tokio::time::timeout(Duration::from_secs(30), pool.wait_online())
        .await
        .expect("the pool comes back");
    assert!(pool.is_online());
    let back = answered(pool.checkin_offline("I0004", at).await.unwrap());
    assert!(back.ok);
    assert_eq!(log_of(&control, "I0004").len(), 1);
    token.cancel();
}
