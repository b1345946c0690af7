//! The client against the in-project ACS simulator: every message pair, error detection on
//! and off, 96/97, timeouts (paused time), reconnects, keep-alive, and checkouts/checkins
//! whose answer is lost (the outcome is found through item information, never guessed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rfidgw_sip2::acs_sim::{AcsSimulator, Fault, SimConfig, SimControl};
use rfidgw_sip2::client::{
    BoxStream, Completion, Connector, Dialer, HoldMode, PeerState, Session, Sip2Error, Sip2Pool,
};
use rfidgw_sip2::dialect::{Dialect, Profile, Sip2PeerConfig};
use rfidgw_sip2::frame::{Command, Message, WireFormat};
use rfidgw_sip2::{Secret, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn config(addr: &str) -> Sip2PeerConfig {
    let mut c = Sip2PeerConfig::new(addr, "demo", "demo");
    c.institution = "DEMO".into();
    c.request_timeout_ms = Some(5_000);
    c.pool_size = Some(1);
    c
}

async fn tcp_sim(sim: AcsSimulator) -> (String, SimControl, CancellationToken) {
    let token = CancellationToken::new();
    let control = sim.control();
    let (addr, serve) = sim.bind("127.0.0.1:0", token.clone()).await.unwrap();
    tokio::spawn(serve);
    (addr.to_string(), control, token)
}

fn duplex_dialer(sim: &AcsSimulator) -> Dialer {
    let sim = sim.clone();
    Arc::new(move || {
        let sim = sim.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move { sim.serve(server).await });
            Ok(Box::new(client) as BoxStream)
        })
    })
}

fn duplex_pool(sim: &AcsSimulator, config: Sip2PeerConfig) -> (Sip2Pool, CancellationToken) {
    let token = CancellationToken::new();
    let connector = Connector::new(config)
        .unwrap()
        .with_dialer(duplex_dialer(sim));
    (Sip2Pool::start_with(connector, token.clone()), token)
}

fn answered<T: std::fmt::Debug>(c: Completion<T>) -> T {
    match c {
        Completion::Answered(t) => t,
        other @ Completion::Recovered { .. } => panic!("expected an answer, got {other:?}"),
    }
}

async fn every_pair(profile: Profile) {
    let (addr, sim, token) = tcp_sim(AcsSimulator::demo()).await;
    let mut cfg = config(&addr);
    cfg.profile = profile;
    let pool = Sip2Pool::start(cfg, token.clone()).unwrap();

    let status = pool.acs_status().await.unwrap();
    assert!(status.online_status && status.checkout_ok);
    assert_eq!(status.institution_id, "DEMO");

    let pin = Secret::new("1234");
    let ps = pool.patron_status("P1001", Some(&pin)).await.unwrap();
    assert_eq!(ps.personal_name, "Alice Reader");
    assert_eq!(ps.valid_patron_password.as_deref(), Some("Y"));

    let co = answered(pool.checkout("P1001", "I0001", None, false).await.unwrap());
    assert!(co.ok);
    assert_eq!(co.desensitize, Some(true));
    assert_eq!(co.title_identifier, "The Rust Programming Language");
    assert_eq!(sim.charged_to("I0001").as_deref(), Some("P1001"));

    let info = pool.item_information("I0001").await.unwrap();
    assert_eq!(info.circulation_status, 4, "charged");

    let pi = pool
        .patron_information("P1001", None, Some(2))
        .await
        .unwrap();
    assert_eq!(pi.charged_items_count, 2);
    assert_eq!(pi.charged_items, vec!["I0001", "I0004"]);

    let renew = pool.renew("P1001", "I0004", None).await.unwrap();
    assert!(renew.ok);
    let all = pool.renew_all("P1001", None).await.unwrap();
    assert_eq!(all.renewed_count, 2);

    let ci = answered(pool.checkin("I0001").await.unwrap());
    assert!(ci.ok && ci.resensitize);
    assert_eq!(ci.sort_bin.as_deref(), Some("A"));
    assert_eq!(ci.patron_identifier.as_deref(), Some("P1001"));

    let hold_bin = answered(pool.checkin("I0005").await.unwrap());
    assert!(hold_bin.alert);
    assert_eq!(hold_bin.sort_bin.as_deref(), Some("H"));
    assert_eq!(hold_bin.hold_patron_id.as_deref(), Some("P1003"));
    let transit = answered(pool.checkin("I0006").await.unwrap());
    assert_eq!(
        (
            transit.sort_bin.as_deref(),
            transit.destination_location.as_deref()
        ),
        (Some("T"), Some("BR2"))
    );

    let update = pool.item_status_update("I0002", "fragile").await.unwrap();
    assert!(update.item_properties_ok);

    let hold = pool
        .hold(HoldMode::Add, "P1001", "I0002", Some("Main"), None)
        .await
        .unwrap();
    assert!(hold.ok);
    assert_eq!(sim.hold_for("I0002").as_deref(), Some("P1001"));

    let paid = pool
        .fee_paid("P1003", "5.50", "USD", 4, 0, None)
        .await
        .unwrap();
    assert!(paid.payment_accepted);
    assert_eq!(sim.fine_cents("P1003"), Some(0));

    let blocked = pool
        .block_patron("P1001", "card reported lost", true)
        .await
        .unwrap();
    assert!(blocked.patron_status.starts_with('Y'));
    assert_eq!(sim.blocked("P1001"), Some(true));
    let enabled = pool.patron_enable("P1001", None).await.unwrap();
    assert!(!enabled.patron_status.starts_with('Y'));

    let end = pool.end_patron_session("P1001", None).await.unwrap();
    assert!(end.end_session);
    token.cancel();
}

#[tokio::test]
async fn every_message_pair_gets_its_answer_from_the_simulator_with_error_detection() {
    every_pair(Profile::Generic).await;
}

#[tokio::test]
async fn every_message_pair_gets_its_answer_from_the_simulator_without_error_detection() {
    every_pair(Profile::Koha).await;
}

#[tokio::test]
async fn a_refused_checkout_is_an_answer_not_an_error() {
    let (addr, _sim, token) = tcp_sim(AcsSimulator::demo()).await;
    let pool = Sip2Pool::start(config(&addr), token.clone()).unwrap();
    let co = answered(pool.checkout("P1002", "I0002", None, false).await.unwrap());
    assert!(!co.ok);
    assert_eq!(co.screen_message, vec!["Patron blocked"]);
    let fee = answered(pool.checkout("P1001", "I0007", None, false).await.unwrap());
    assert!(!fee.ok);
    assert_eq!(fee.fee_amount.as_deref(), Some("2.00"));
    let fee_ok = answered(pool.checkout("P1001", "I0007", None, true).await.unwrap());
    assert!(fee_ok.ok);
    token.cancel();
}

#[tokio::test]
async fn a_checkout_whose_line_drops_after_processing_is_found_charged_through_item_information() {
    let (addr, sim, token) = tcp_sim(AcsSimulator::demo()).await;
    let pool = Sip2Pool::start(config(&addr), token.clone()).unwrap();
    pool.wait_online().await;
    sim.inject(Some(Command::Checkout), Fault::DropAfterProcessing);
    let outcome = pool.checkout("P1001", "I0002", None, false).await.unwrap();
    let Completion::Recovered { item, applied } = outcome else {
        panic!("expected recovery, got {outcome:?}");
    };
    assert!(applied, "the ACS did the checkout before the line dropped");
    assert_eq!(item.circulation_status, 4);
    assert_eq!(
        sim.executed(Command::Checkout),
        1,
        "the checkout was never sent twice"
    );
    assert_eq!(sim.executed(Command::ItemInformation), 1);
    assert_eq!(sim.connections(), 2);
    let metrics = pool.metrics();
    assert_eq!(metrics.outcomes_recovered, 1);
    assert_eq!(metrics.request_failures, 0);
    token.cancel();
}

#[tokio::test]
async fn a_checkout_whose_line_drops_before_processing_is_reported_as_not_done() {
    let (addr, sim, token) = tcp_sim(AcsSimulator::demo()).await;
    let pool = Sip2Pool::start(config(&addr), token.clone()).unwrap();
    sim.inject(Some(Command::Checkout), Fault::DropBeforeProcessing);
    let outcome = pool.checkout("P1001", "I0002", None, false).await.unwrap();
    assert!(
        matches!(outcome, Completion::Recovered { applied: false, .. }),
        "{outcome:?}"
    );
    assert_eq!(sim.executed(Command::Checkout), 0);
    assert_eq!(sim.charged_to("I0002"), None);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_checkin_whose_answer_never_comes_times_out_and_is_resolved_through_item_information() {
    let sim = AcsSimulator::demo();
    let control = sim.control();
    let mut cfg = config("sim");
    cfg.request_timeout_ms = Some(3_000);
    let (pool, token) = duplex_pool(&sim, cfg);
    control.inject(Some(Command::Checkin), Fault::Silence);
    let outcome = pool.checkin("I0004").await.unwrap();
    let Completion::Recovered { item, applied } = outcome else {
        panic!("expected recovery, got {outcome:?}");
    };
    assert!(!applied, "the silent ACS never checked the item in");
    assert_eq!(item.circulation_status, 4);
    assert_eq!(control.executed(Command::Checkin), 0, "no blind resend");
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_lost_checkout_whose_recovery_also_fails_says_the_outcome_is_unknown() {
    let sim = AcsSimulator::demo();
    let control = sim.control();
    let (pool, token) = duplex_pool(&sim, config("sim"));
    control.inject(Some(Command::Checkout), Fault::DropAfterProcessing);
    control.inject(Some(Command::ItemInformation), Fault::DropBeforeProcessing);
    let err = pool
        .checkout("P1001", "I0003", None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Sip2Error::OutcomeUnknown {
                command: Command::Checkout,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("I0003"));
    assert_eq!(control.executed(Command::Checkout), 1);
    token.cancel();
}

async fn duplex_session(
    sim: &AcsSimulator,
    error_detection: bool,
) -> Session<tokio::io::DuplexStream> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let sim = sim.clone();
    tokio::spawn(async move { sim.serve(server).await });
    let mut dialect = Dialect::preset(Profile::Generic);
    dialect.error_detection = error_detection;
    let mut session = Session::new(client, dialect, Duration::from_secs(5));
    session
        .login("demo", &Secret::new("demo"), None)
        .await
        .unwrap();
    session
}

fn checkout_request(patron: &str, item: &str) -> Message {
    Connector::new(config("sim"))
        .unwrap()
        .requests()
        .checkout(patron, item, None, false)
}

#[tokio::test(start_paused = true)]
async fn a_bad_response_checksum_is_asked_for_again_with_97_and_the_checkout_runs_once() {
    let sim = AcsSimulator::demo();
    let mut session = duplex_session(&sim, true).await;
    sim.control()
        .inject(Some(Command::Checkout), Fault::BadChecksum);
    let response = session
        .transact(checkout_request("P1001", "I0002"))
        .await
        .unwrap();
    assert_eq!(response.command, Command::CheckoutResponse);
    assert_eq!(response.fixed.chars().next(), Some('1'));
    assert_eq!(sim.control().executed(Command::Checkout), 1);
}

#[tokio::test(start_paused = true)]
async fn a_96_from_the_acs_makes_the_client_send_the_request_again() {
    let sim = AcsSimulator::demo();
    let mut session = duplex_session(&sim, true).await;
    sim.control()
        .inject(Some(Command::ItemInformation), Fault::AskResend);
    let info = Connector::new(config("sim"))
        .unwrap()
        .requests()
        .item_information("I0004");
    let response = session.transact(info).await.unwrap();
    assert_eq!(response.command, Command::ItemInformationResponse);
    assert_eq!(sim.control().executed(Command::ItemInformation), 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_acs_times_the_request_out() {
    let sim = AcsSimulator::demo();
    let mut session = duplex_session(&sim, false).await;
    session.set_request_timeout(Duration::from_secs(7));
    sim.control().inject(None, Fault::Silence);
    let err = session.sc_status().await.unwrap_err();
    assert!(
        matches!(err, Sip2Error::Timeout { command: Command::ScStatus, after } if after == Duration::from_secs(7)),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_within_the_timeout_is_accepted() {
    let sim = AcsSimulator::demo();
    let mut session = duplex_session(&sim, true).await;
    sim.control()
        .inject(None, Fault::Delay(Duration::from_secs(3)));
    assert!(session.sc_status().await.unwrap().online_status);
}

#[tokio::test(start_paused = true)]
async fn fields_in_odd_order_are_read_the_same() {
    let sim = AcsSimulator::demo();
    let mut session = duplex_session(&sim, true).await;
    sim.control()
        .inject(Some(Command::Checkin), Fault::OddFieldOrder);
    let request = Connector::new(config("sim"))
        .unwrap()
        .requests()
        .checkin("I0005");
    let response: frame::CheckinResponse =
        frame::Sip2Message::from_message(&session.transact(request).await.unwrap()).unwrap();
    assert_eq!(response.sort_bin.as_deref(), Some("H"));
    assert_eq!(response.hold_patron_name.as_deref(), Some("Carol Fines"));
}

#[tokio::test(start_paused = true)]
async fn the_request_timeout_comes_from_the_acs_status_when_config_has_none() {
    let sim = AcsSimulator::new(SimConfig {
        timeout_period: 25,
        ..SimConfig::demo()
    });
    let mut cfg = config("sim");
    cfg.request_timeout_ms = None;
    let connector = Connector::new(cfg)
        .unwrap()
        .with_dialer(duplex_dialer(&sim));
    let (session, status) = connector.connect(None).await.unwrap();
    assert_eq!(status.timeout_period, 25);
    assert_eq!(session.request_timeout(), Duration::from_millis(2_500));
}

#[tokio::test(start_paused = true)]
async fn the_pool_reconnects_and_logs_in_again_after_the_acs_drops_the_line() {
    let sim = AcsSimulator::demo();
    let control = sim.control();
    let (pool, token) = duplex_pool(&sim, config("sim"));
    pool.wait_online().await;
    control.inject(Some(Command::ItemInformation), Fault::DropBeforeProcessing);
    let err = pool.item_information("I0001").await.unwrap_err();
    assert!(matches!(err, Sip2Error::Disconnected { .. }), "{err}");
    pool.wait_online().await;
    let info = pool.item_information("I0001").await.unwrap();
    assert_eq!(info.circulation_status, 3);
    assert_eq!(control.connections(), 2);
    assert_eq!(
        control.executed(Command::Login),
        2,
        "logged in again after the reconnect"
    );
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_sends_sc_status_as_keep_alive() {
    let sim = AcsSimulator::demo();
    let control = sim.control();
    let mut cfg = config("sim");
    cfg.keepalive_secs = Some(120);
    let (pool, token) = duplex_pool(&sim, cfg);
    pool.wait_online().await;
    assert_eq!(control.executed(Command::ScStatus), 1);
    tokio::time::sleep(Duration::from_secs(121 * 3)).await;
    assert_eq!(control.executed(Command::ScStatus), 4);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_dead_peer_is_retried_with_capped_backoff_not_in_a_busy_loop() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let dialer: Dialer = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Err::<BoxStream, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
        })
    });
    let mut cfg = config("sim");
    cfg.max_backoff_ms = Some(2_000);
    let token = CancellationToken::new();
    let pool = Sip2Pool::start_with(
        Connector::new(cfg).unwrap().with_dialer(dialer),
        token.clone(),
    );
    pool.wait_for(PeerState::Offline).await;
    tokio::time::sleep(Duration::from_mins(1)).await;
    let n = attempts.load(Ordering::SeqCst);
    // 250 ms doubling to a 2 s cap (±25 % jitter): about 30 attempts a minute, not thousands.
    assert!((20..=60).contains(&n), "{n} attempts in 60 s");
    let err = pool.item_information("I0001").await.unwrap_err();
    assert!(matches!(err, Sip2Error::Offline { .. }), "{err}");
    assert!(pool.status().last_error.unwrap().contains("cannot connect"));
    token.cancel();
}

#[tokio::test]
async fn a_wrong_password_leaves_the_peer_offline_with_an_error_that_hides_the_password() {
    let (addr, _sim, token) = tcp_sim(AcsSimulator::demo()).await;
    let mut cfg = Sip2PeerConfig::new(&addr, "demo", "s3cret-Wrong");
    cfg.terminal_password = Some(Secret::new("term-Secret"));
    cfg.pool_size = Some(1);
    let debug = format!("{cfg:?}");
    let pool = Sip2Pool::start(cfg, token.clone()).unwrap();
    pool.wait_for(PeerState::Offline).await;
    let status = pool.status();
    let last = status.last_error.clone().unwrap();
    assert!(last.contains("refused the login"), "{last}");
    let err = pool
        .checkout("P1001", "I0001", Some(&Secret::new("pin-Secret")), false)
        .await
        .unwrap_err();
    for text in [
        debug,
        format!("{status:?}"),
        err.to_string(),
        format!("{err:?}"),
        format!("{pool:?}"),
    ] {
        for secret in ["s3cret-Wrong", "term-Secret", "pin-Secret"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
    token.cancel();
}

#[tokio::test]
async fn the_simulator_replays_a_duplicate_request_instead_of_running_it_again() {
    let (addr, sim, token) = tcp_sim(AcsSimulator::demo()).await;
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut request = checkout_request("P1001", "I0003");
    request.trailer = frame::Trailer::Sequence(4);
    let mut bytes = request.encode(&WireFormat::default()).unwrap();
    bytes.push(b'\r');
    let mut first = vec![0u8; 4096];
    let mut second = vec![0u8; 4096];
    tcp.write_all(&bytes).await.unwrap();
    let n1 = read_frame(&mut tcp, &mut first).await;
    tcp.write_all(&bytes).await.unwrap();
    let n2 = read_frame(&mut tcp, &mut second).await;
    assert_eq!(first[..n1], second[..n2]);
    assert_eq!(sim.executed(Command::Checkout), 1);
    // A 97 gets the same bytes again.
    tcp.write_all(b"97AZFEF5\r").await.unwrap();
    let n3 = read_frame(&mut tcp, &mut second).await;
    assert_eq!(first[..n1], second[..n3]);
    // A bad request checksum is answered with 96.
    tcp.write_all(b"9900802.00AY1AZFFFF\r").await.unwrap();
    let n4 = read_frame(&mut tcp, &mut second).await;
    assert_eq!(&second[..n4], b"96AZFEF6\r");
    token.cancel();
}

async fn read_frame(tcp: &mut tokio::net::TcpStream, buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        let read = tcp.read(&mut buf[n..]).await.unwrap();
        assert!(read > 0, "connection closed");
        n += read;
        if buf[..n].ends_with(b"\r") {
            return n;
        }
    }
}

#[tokio::test]
async fn a_strict_acs_that_needs_login_first_closes_on_an_early_status_request() {
    let (addr, _sim, token) = tcp_sim(AcsSimulator::new(SimConfig {
        login_required: true,
        ..SimConfig::demo()
    }))
    .await;
    let mut cfg = config(&addr);
    cfg.login_required = Some(false);
    let err = Connector::new(cfg)
        .unwrap()
        .connect(None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Sip2Error::Disconnected {
                command: Command::ScStatus
            }
        ),
        "{err}"
    );
    let (_, status) = Connector::new(config(&addr))
        .unwrap()
        .connect(None)
        .await
        .unwrap();
    assert!(status.online_status);
    token.cancel();
}

fn library_with_titles(encoding: rfidgw_sip2::Encoding, title: &str) -> AcsSimulator {
    let mut config = SimConfig::demo();
    config.encoding = encoding;
    if let Some(item) = config.items.iter_mut().find(|i| i.id == "I0001") {
        title.clone_into(&mut item.title);
    }
    AcsSimulator::new(config)
}

#[tokio::test(start_paused = true)]
async fn titles_survive_the_peer_character_set_cp850_gb18030_and_latin1() {
    for (encoding, title) in [
        (rfidgw_sip2::Encoding::Cp850, "Café Müller – Ærø"),
        (rfidgw_sip2::Encoding::Gb18030, "图书馆借书指南"),
        (rfidgw_sip2::Encoding::Latin1, "Señor Ñandú"),
    ] {
        let sim = library_with_titles(encoding, title);
        let mut cfg = config("sim");
        cfg.encoding = Some(encoding);
        let (pool, token) = duplex_pool(&sim, cfg);
        let info = pool.item_information("I0001").await.unwrap();
        let want = if encoding == rfidgw_sip2::Encoding::Cp850 {
            // CP850 has no en dash: the ACS itself sent '?'.
            title.replace('–', "?")
        } else {
            title.to_owned()
        };
        assert_eq!(info.title_identifier, want, "{encoding}");
        token.cancel();
    }
}

#[tokio::test(start_paused = true)]
async fn an_ascii_peer_gets_transliterated_names() {
    let sim = AcsSimulator::demo();
    let mut cfg = config("sim");
    cfg.encoding = Some(rfidgw_sip2::Encoding::Ascii);
    let (pool, token) = duplex_pool(&sim, cfg);
    let update = pool
        .item_status_update("I0002", "Zustand: beschädigt")
        .await
        .unwrap();
    assert_eq!(
        update.item_properties.as_deref(),
        Some("Zustand: beschadigt")
    );
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_client_with_error_detection_accepts_an_acs_that_never_sends_a_trailer() {
    let sim = AcsSimulator::new(SimConfig {
        error_detection: rfidgw_sip2::acs_sim::SimErrorDetection::Off,
        ..SimConfig::demo()
    });
    let (pool, token) = duplex_pool(&sim, config("sim"));
    let co = answered(pool.checkout("P1001", "I0002", None, false).await.unwrap());
    assert!(co.ok);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_crlf_terminator_is_accepted_by_the_acs_and_the_session_works() {
    let sim = AcsSimulator::demo();
    let mut cfg = config("sim");
    cfg.terminator = Some(rfidgw_sip2::codec::Terminator::Crlf);
    let (pool, token) = duplex_pool(&sim, cfg);
    pool.wait_online().await;
    assert_eq!(pool.status().to_string(), "online 1/1");
    let info = pool.item_information("I0004").await.unwrap();
    assert_eq!(info.circulation_status, 4);
    token.cancel();
}

#[test]
fn peer_status_reads_well_in_systemd_status() {
    let status = rfidgw_sip2::client::PeerStatus {
        state: PeerState::Offline,
        online: 0,
        total: 2,
        last_error: Some("cannot connect to SIP2 server ils:6001".into()),
    };
    assert_eq!(
        status.to_string(),
        "offline 0/2 (last error: cannot connect to SIP2 server ils:6001)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_with_another_field_delimiter_is_understood() {
    let sim = AcsSimulator::new(SimConfig {
        delimiter: '^',
        ..SimConfig::demo()
    });
    let mut cfg = config("sim");
    cfg.delimiter = Some('^');
    let (pool, token) = duplex_pool(&sim, cfg);
    let ci = answered(pool.checkin("I0006").await.unwrap());
    assert_eq!(ci.destination_location.as_deref(), Some("BR2"));
    assert_eq!(ci.sort_bin.as_deref(), Some("T"));
    token.cancel();
}
