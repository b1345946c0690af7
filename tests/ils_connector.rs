//! The ILS connector over SIP2 against the ACS simulator: domain outcomes for every call,
//! "the ILS said no" as an `Ok` with its typed reason, offline and recovered answers, and
//! the replay of offline transactions (no block, original dates, each reaching the ILS
//! once; nothing sent while the ILS is away).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rfidgw::ils::connector::{
    Circulation, IlsCallError, IlsConnector, Learned, PatronBlock, PatronProblem,
};
use rfidgw::ils::sip2::Sip2Connector;
use rfidgw_sip2::{
    AcsSimulator, Command, Fault, PeerState, Secret, SimControl, Sip2PeerConfig, Sip2Pool,
};
use tokio_util::sync::CancellationToken;

struct Ils {
    connector: Arc<dyn IlsConnector>,
    pool: Sip2Pool,
    control: SimControl,
    acs: CancellationToken,
    _client: CancellationToken,
}

async fn ils() -> Ils {
    let acs = CancellationToken::new();
    let sim = AcsSimulator::demo();
    let control = sim.control();
    let (addr, serve) = sim.bind("127.0.0.1:0", acs.clone()).await.unwrap();
    tokio::spawn(serve);
    let mut config = Sip2PeerConfig::new(addr.to_string(), "demo", "demo");
    config.institution = "DEMO".into();
    config.request_timeout_ms = Some(2_000);
    config.pool_size = Some(1);
    config.max_backoff_ms = Some(500);
    let client = CancellationToken::new();
    let pool = Sip2Pool::start(config, client.clone()).unwrap();
    pool.wait_online().await;
    Ils {
        connector: Arc::new(Sip2Connector::new(pool.clone())),
        pool,
        control,
        acs,
        _client: client,
    }
}

#[tokio::test]
async fn checkout_checkin_and_renew_come_back_as_domain_outcomes() {
    let ils = ils().await;
    let c = &ils.connector;
    let pin = Secret::new("1234");

    let loan = c.checkout("P1001", "I0001", Some(&pin)).await.unwrap();
    assert!(loan.ok);
    assert_eq!(loan.title.as_deref(), Some("The Rust Programming Language"));
    assert!(loan.due_date.is_some());
    assert_eq!(loan.learned, Learned::Answered);
    assert_eq!(ils.control.charged_to("I0001").as_deref(), Some("P1001"));

    // The ILS says no: an Ok outcome with the reason to show, not an error.
    let refused = c.checkout("P1003", "I0004", None).await.unwrap();
    assert!(!refused.ok);
    assert!(!refused.screen_message.is_empty());

    let renewed = c.renew("P1001", "I0001", Some(&pin)).await.unwrap();
    assert!(renewed.ok, "{renewed:?}");

    let back = c.checkin("I0001").await.unwrap();
    assert!(back.ok && !back.alert);
    assert_eq!(back.resensitize, Some(true));
    assert!(back.sort_bin.is_some());
    assert!(back.response.is_some(), "the sort plan gets the response");

    let hold = c.checkin("I0005").await.unwrap();
    assert!(hold.alert);
    assert_eq!(hold.alert_type.as_deref(), Some("01"));
    let transit = c.checkin("I0006").await.unwrap();
    assert_eq!(
        (
            transit.alert_type.as_deref(),
            transit.destination.as_deref()
        ),
        (Some("04"), Some("BR2"))
    );
    ils.acs.cancel();
}

#[tokio::test]
async fn patrons_are_validated_with_typed_problems_and_accounts_carry_no_personal_data() {
    let ils = ils().await;
    let c = &ils.connector;
    let good = Secret::new("1234");
    let bad = Secret::new("9999");
    assert_eq!(
        c.validate_patron("P1001", Some(&good))
            .await
            .unwrap()
            .problem,
        None
    );
    assert_eq!(
        c.validate_patron("P1001", Some(&bad))
            .await
            .unwrap()
            .problem,
        Some(PatronProblem::WrongPin)
    );
    assert_eq!(
        c.validate_patron("P9999", None).await.unwrap().problem,
        Some(PatronProblem::Unknown)
    );
    let Some(PatronProblem::Blocked { blocks }) =
        c.validate_patron("P1002", None).await.unwrap().problem
    else {
        panic!("P1002 is blocked");
    };
    assert!(blocks.contains(&PatronBlock::ChargeDenied), "{blocks:?}");

    let fines = c.patron_account("P1003", None).await.unwrap();
    assert!(fines.fee_amount.is_some(), "{fines:?}");
    let json = serde_json::to_string(&fines).unwrap();
    assert!(!json.contains("Carol"), "no patron names: {json}");
    let info = c.item_information("I0004").await.unwrap();
    assert_eq!(info.circulation, Circulation::OnLoan);
    assert_eq!(
        c.item_information("I0001").await.unwrap().circulation,
        Circulation::Available
    );
    ils.acs.cancel();
}

#[tokio::test]
async fn a_lost_answer_is_recovered_and_an_unreachable_ils_is_offline() {
    let ils = ils().await;
    let c = &ils.connector;
    ils.control
        .inject(Some(Command::Checkout), Fault::DropAfterProcessing);
    let loan = c
        .checkout("P1001", "I0002", Some(&Secret::new("1234")))
        .await
        .unwrap();
    assert_eq!((loan.ok, loan.learned), (true, Learned::Recovered));
    assert_eq!(
        ils.control.charged_to("I0002").as_deref(),
        Some("P1001"),
        "done once"
    );

    ils.acs.cancel();
    let offline = c.checkin("I0002").await;
    assert!(
        matches!(
            offline,
            Err(IlsCallError::Offline(_) | IlsCallError::OutcomeUnknown(_))
        ),
        "{offline:?}"
    );
    let lookup = c.item_information("I0002").await;
    assert!(
        matches!(lookup, Err(IlsCallError::Offline(_))),
        "{lookup:?}"
    );
}

/// A transaction taken offline on 2024-03-05 10:20:30 UTC, due three weeks later.
fn offline_moments() -> (SystemTime, SystemTime) {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_634_030);
    (at, at + Duration::from_hours(21 * 24))
}

#[tokio::test]
async fn offline_transactions_are_replayed_with_no_block_and_their_original_dates() {
    let ils = ils().await;
    let c = &ils.connector;
    assert!(c.is_online());
    let (at, due) = offline_moments();

    // P1002 is blocked: online it may not borrow, but a loan made offline is recorded.
    let loan = c.checkout_offline("P1002", "I0001", at, due).await.unwrap();
    assert!(loan.ok, "{loan:?}");
    assert_eq!(loan.learned, Learned::Answered);
    assert_eq!(ils.control.charged_to("I0001").as_deref(), Some("P1002"));

    let back = c.checkin_offline("I0004", at).await.unwrap();
    assert!(back.ok && back.response.is_some(), "{back:?}");
    assert_eq!(ils.control.charged_to("I0004"), None);
    assert_eq!(
        c.item_information("I0004").await.unwrap().circulation,
        Circulation::Available
    );

    let log = ils.control.transactions();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|t| t.no_block && t.ok), "{log:?}");
    assert_eq!(
        log.iter().map(|t| t.item.as_str()).collect::<Vec<_>>(),
        ["I0001", "I0004"]
    );
    // The original moment, not the replay's: March 2024 in any time zone.
    assert!(
        log.iter().all(|t| t.transaction_date.starts_with("202403")),
        "{log:?}"
    );
    assert_eq!(
        loan.due_date, log[0].nb_due_date,
        "due date as given offline"
    );
    assert_eq!(
        log[1].return_date.as_deref(),
        Some(log[1].transaction_date.as_str())
    );
    ils.acs.cancel();
}

#[tokio::test]
async fn a_replayed_checkout_whose_answer_is_lost_is_recovered_and_reaches_the_ils_once() {
    let ils = ils().await;
    let (at, due) = offline_moments();
    ils.control
        .inject(Some(Command::Checkout), Fault::DropAfterProcessing);
    let loan = ils
        .connector
        .checkout_offline("P1001", "I0002", at, due)
        .await
        .unwrap();
    assert_eq!((loan.ok, loan.learned), (true, Learned::Recovered));
    let log = ils.control.transactions();
    assert_eq!(log.len(), 1, "never sent twice: {log:?}");
    assert!(log[0].no_block);
    ils.acs.cancel();
}

#[tokio::test]
async fn nothing_is_replayed_while_the_ils_is_away_and_replays_work_once_it_is_back() {
    let ils = ils().await;
    let c = &ils.connector;
    let (at, due) = offline_moments();

    ils.control.set_available(false);
    tokio::time::timeout(
        Duration::from_secs(10),
        ils.pool.wait_for(PeerState::Offline),
    )
    .await
    .expect("the connector sees the ILS go away without a request");
    assert!(!c.is_online());
    let not_sent = c.checkin_offline("I0004", at).await;
    assert!(
        matches!(not_sent, Err(IlsCallError::Offline(_))),
        "{not_sent:?}"
    );
    let not_sent = c.checkout_offline("P1001", "I0001", at, due).await;
    assert!(
        matches!(not_sent, Err(IlsCallError::Offline(_))),
        "{not_sent:?}"
    );
    assert!(ils.control.transactions().is_empty());
    assert_eq!(ils.control.charged_to("I0004").as_deref(), Some("P1001"));

    ils.control.set_available(true);
    tokio::time::timeout(Duration::from_secs(10), ils.pool.wait_online())
        .await
        .expect("the connector comes back");
    assert!(c.is_online());
    let back = c.checkin_offline("I0004", at).await.unwrap();
    assert!(back.ok);
    let loan = c.checkout_offline("P1001", "I0001", at, due).await.unwrap();
    assert!(loan.ok);
    let log = ils.control.transactions();
    assert_eq!(
        log.iter()
            .map(|t| (t.command, t.item.as_str()))
            .collect::<Vec<_>>(),
        [(Command::Checkin, "I0004"), (Command::Checkout, "I0001")],
        "each replay reached the ILS exactly once"
    );
    ils.acs.cancel();
}
