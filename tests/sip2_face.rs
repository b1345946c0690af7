//! Issue 11 end to end: kiosks log in to the daemon's SIP2 face, which relays to the ACS
//! simulator, learns every loan and return, and answers per the station's offline policy
//! while the simulator is away. Real bytes on real loopback sockets.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::eventually;
use rfidgw::app::Daemon;
use rfidgw::bus::Event;
use rfidgw::config::Config;
use rfidgw::station::activity::Activity;
use rfidgw_sip2::acs_sim::{SimConfig, SimControl, SimItem};
use rfidgw_sip2::checksum;
use rfidgw_sip2::{AcsSimulator, Command};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A kiosk: one connection, lock-step.
struct Kiosk {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    /// The account's answers end with CR LF.
    crlf: bool,
}

impl Kiosk {
    async fn connect(face: SocketAddr) -> Self {
        let (read, writer) = TcpStream::connect(face).await.unwrap().into_split();
        Self {
            reader: BufReader::new(read),
            writer,
            crlf: false,
        }
    }

    /// Sends raw bytes and reads one answer through its CR (and a following LF).
    async fn send(&mut self, bytes: &[u8]) -> String {
        self.writer.write_all(bytes).await.unwrap();
        self.read().await
    }

    /// [`Self::send`] with owned bytes (for a future that outlives a temporary).
    async fn send_owned(&mut self, bytes: Vec<u8>) -> String {
        self.send(&bytes).await
    }

    async fn read(&mut self) -> String {
        let mut out = Vec::new();
        let end = if self.crlf { b'\n' } else { b'\r' };
        tokio::time::timeout(common::PATIENCE, self.reader.read_until(end, &mut out))
            .await
            .expect("an answer in time")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Whether the face closed the connection (EOF within the patience).
    async fn closed(&mut self) -> bool {
        let mut out = Vec::new();
        matches!(
            tokio::time::timeout(common::PATIENCE, self.reader.read_until(b'\r', &mut out)).await,
            Ok(Ok(0))
        )
    }

    async fn login(face: SocketAddr) -> Self {
        let mut kiosk = Self::connect(face).await;
        assert_eq!(kiosk.send(b"9300CNkiosk1|COkiosk-pw|\r").await, "941\r");
        kiosk
    }

    /// The return sorter's account: CRLF answers without error detection.
    async fn sorter(face: SocketAddr) -> Self {
        let mut sorter = Self::connect(face).await;
        sorter.crlf = true;
        assert_eq!(
            sorter.send(b"9300CNsorter1|COsorter-pw|\r").await,
            "941\r\n"
        );
        sorter
    }
}

/// `frame` (through `AZ`) with its checksum and CR.
fn sealed(frame: &str) -> Vec<u8> {
    let sum = checksum::format(checksum::compute(frame.as_bytes()));
    let mut out = frame.as_bytes().to_vec();
    out.extend_from_slice(&sum);
    out.push(b'\r');
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    daemon: Daemon,
    face: SocketAddr,
    sim: SimControl,
    sim_stop: CancellationToken,
    events: broadcast::Receiver<Arc<Event>>,
}

/// The daemon with a self-check and a return station, a face with two accounts (the
/// self-check kiosk lends offline, the return sorter takes returns offline), and the ACS
/// simulator's demo library as the ILS.
async fn start() -> Setup {
    start_with(SimConfig::demo(), |_| String::new()).await
}

/// [`start`] with this library behind the simulator and `face_keys(dir)` added to
/// `[sip2_server]` (e.g. its `tls` key, with files in the state directory `dir`).
async fn start_with(library: SimConfig, face_keys: impl FnOnce(&Path) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let extra = face_keys(dir.path());
    let sim = AcsSimulator::new(library);
    let control = sim.control();
    let sim_stop = CancellationToken::new();
    let (acs, serve) = sim.bind("127.0.0.1:0", sim_stop.clone()).await.unwrap();
    tokio::spawn(serve);
    std::fs::write(dir.path().join("sorter.pw"), "sorter-pw\n").unwrap();
    let hash = rfidgw_sip2::server::Credential::hash_password(
        &rfidgw_sip2::Secret::new("kiosk-pw"),
        std::num::NonZeroU32::new(1000).unwrap(),
    );
    let text = format!(
        r#"
        [daemon]
        data_dir = "{data}"
        [api]
        enabled = false
        [circulation]
        replay_pause_ms = 100
        [ils.sip2]
        addr = "{acs}"
        user = "demo"
        password = "demo"
        institution = "DEMO"
        pool_size = 2
        request_timeout_ms = 2000
        max_backoff_ms = 300

        [[devices]]
        id = "pad"
        driver = "sim"
        settings = {{ round_ms = 100000 }}
        [[devices]]
        id = "drop"
        driver = "sim"
        settings = {{ round_ms = 100000 }}

        [[stations]]
        id = "selfcheck-1"
        kind = "self-check"
        devices = ["pad"]
        [stations.offline]
        mode = "checkin-checkout"
        max_items_per_patron = 2
        [[stations]]
        id = "sorter-1"
        kind = "return"
        devices = ["drop"]
        [stations.offline]
        mode = "checkin"

        [sip2_server]
        listen = "127.0.0.1:0"
        timeout_ms = 5000
        max_bad_frames = 3
        {extra}
        [[sip2_server.accounts]]
        login = "kiosk1"
        password_hash = "{hash}"
        station = "selfcheck-1"
        location = "BR1"
        [[sip2_server.accounts]]
        login = "sorter1"
        password_file = "{data}/sorter.pw"
        station = "sorter-1"
        allowed = ["checkin", "item_information"]
        terminator = "crlf"
        error_detection = "off"
        "#,
        data = dir.path().display(),
    );
    let config = Config::parse("sip2-face.toml", &text, std::iter::empty()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    let events = daemon.subscribe();
    let face = daemon.sip2_face().unwrap().addr;
    let pool = daemon.ils().pool().unwrap().clone();
    tokio::time::timeout(common::PATIENCE, pool.wait_online())
        .await
        .unwrap();
    Setup {
        _dir: dir,
        daemon,
        face,
        sim: control,
        sim_stop,
        events,
    }
}

impl Setup {
    async fn stop(self) {
        self.daemon.shutdown("test").await.unwrap();
        self.sim_stop.cancel();
    }

    /// The next kiosk transaction journaled (and published).
    async fn next_kiosk_record(&mut self) -> rfidgw::station::activity::KioskRecord {
        loop {
            let event = tokio::time::timeout(common::PATIENCE, self.events.recv())
                .await
                .unwrap()
                .unwrap();
            if let Event::Station(Activity::KioskTransaction(r)) = &*event {
                return r.clone();
            }
        }
    }
}

/// (what, the bytes a kiosk sends, how the answer starts, an item's loan state after it)
type Row = (
    &'static str,
    Vec<u8>,
    &'static str,
    Option<(&'static str, bool)>,
);

#[tokio::test]
async fn lenient_requests_are_relayed_and_answered_exactly() {
    let mut s = start().await;
    let face = s.face;
    // (what the kiosk sends, what the answer must start with, an item on loan after it)
    let rows: Vec<Row> = vec![
        (
            "spec checkout with trailer",
            sealed(
                "11YN20240101    120000                  AODEMO|AAP1001|ABI0001|AC|AD1234|AY1AZ",
            ),
            "121",
            Some(("I0001", true)),
        ),
        (
            "checkin with CRLF, fields in reverse order, unknown fields, no AC, no trailer",
            b"09N20240101    12000020240101    120000XXvendor|ABI0001|AODEMO|AP|ZZ1|\r\n".to_vec(),
            "101",
            Some(("I0001", false)),
        ),
        (
            "checkout without its nb due date, leading junk, no AC",
            b"\0\n~11YN20240101    120000AODEMO|AAP1001|ABI0002|\r".to_vec(),
            "121",
            Some(("I0002", true)),
        ),
        (
            "checkin with a lowercase checksum",
            {
                let mut frame =
                    sealed("09N20240101    12000020240101    120000APBR1|AODEMO|ABI0002|AY2AZ");
                let n = frame.len();
                frame[n - 5..n - 1].make_ascii_lowercase();
                frame
            },
            "101",
            Some(("I0002", false)),
        ),
        (
            "item information, alphabetical field order",
            b"1720240101    120000ABI0004|ACx|AODEMO|\r".to_vec(),
            "1804",
            None,
        ),
        (
            "patron status, blank PIN and terminal password",
            b"2300120240101    120000AODEMO|AAP1003|AC|AD|\r".to_vec(),
            "24",
            None,
        ),
    ];
    let mut kiosk = Kiosk::login(face).await;
    for (what, bytes, starts, learned) in rows {
        let answer = kiosk.send(&bytes).await;
        assert!(answer.starts_with(starts), "{what}: {answer:?}");
        let record = s.next_kiosk_record().await;
        assert_eq!(record.station, "selfcheck-1", "{what}");
        assert!(
            !format!("{record:?}").contains("P100"),
            "no patron ids: {record:?}"
        );
        if let Some((item, on_loan)) = learned {
            let loans = s.daemon.loans().clone();
            eventually(what, async || {
                (loans.on_loan(item) == Some(on_loan)).then_some(())
            })
            .await;
        }
        // The trailer mirrors the request's: AY and AZ back only when they came.
        let had_trailer = bytes.windows(2).any(|w| w == b"AY");
        assert_eq!(answer.contains("AY"), had_trailer, "{what}: {answer:?}");
        if had_trailer {
            let body = answer.trim_end_matches(['\r', '\n']);
            let (through_az, sum) = body.split_at(body.len() - 4);
            assert_eq!(
                checksum::parse(sum.as_bytes()),
                Some(checksum::compute(through_az.as_bytes())),
                "{what}: exact checksum"
            );
        }
    }
    // The sort bin and the AMH fields the ILS sends reach the sorter unchanged.
    let mut sorter = Kiosk::sorter(face).await;
    let answer = sorter
        .send(b"09N20240101    12000020240101    120000AP|AODEMO|ABI0005|AC|\r")
        .await;
    assert!(answer.starts_with("101"), "{answer:?}");
    assert!(
        answer.contains("|CLH|") || answer.contains("CLH|"),
        "sort bin: {answer:?}"
    );
    assert!(answer.contains("CV01"), "alert type: {answer:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_duplicate_or_a_97_gets_the_same_bytes_and_the_loan_runs_once() {
    let s = start().await;
    let mut kiosk = Kiosk::login(s.face).await;
    let checkout =
        sealed("11YN20240101    120000                  AODEMO|AAP1001|ABI0003|AC|AY5AZ");
    let first = kiosk.send(&checkout).await;
    assert!(first.starts_with("121"), "{first:?}");
    let again = kiosk.send(&checkout).await;
    assert_eq!(again, first, "a duplicate gets the cached bytes");
    assert_eq!(kiosk.send(b"97AZFEF5\r").await, first, "97 gets them too");
    assert_eq!(kiosk.send(b"97\r").await, first);
    // A bad checksum gets 96 with AZ and runs nothing.
    let mut bad = sealed("11YN20240101    120000                  AODEMO|AAP1001|ABI0001|AC|AY6AZ");
    let n = bad.len();
    bad[n - 2] = if bad[n - 2] == b'0' { b'1' } else { b'0' };
    assert_eq!(kiosk.send(&bad).await, "96AZFEF6\r");
    let checkouts = s
        .sim
        .transactions()
        .iter()
        .filter(|t| t.command == Command::Checkout)
        .count();
    assert_eq!(checkouts, 1, "the loan ran exactly once");
    assert_eq!(s.sim.charged_to("I0001"), None);
    s.stop().await;
}

#[tokio::test]
async fn offline_answers_follow_the_policy_are_queued_and_replayed_once() {
    let mut s = start().await;
    let mut kiosk = Kiosk::login(s.face).await;
    let mut sorter = Kiosk::sorter(s.face).await;

    s.sim.set_available(false);
    let pool = s.daemon.ils().pool().unwrap().clone();
    eventually("the ILS offline", async || {
        (!pool.is_online()).then_some(())
    })
    .await;

    // 98 says offline, with the self-check station's policy in force.
    let status = kiosk.send(b"9900302.00\r").await;
    assert!(status.starts_with("98NYYNNY000"), "{status:?}");
    assert!(status.contains("AF"), "{status:?}");
    // A loan and a return are taken, with a clear screen message.
    let loan = kiosk
        .send(b"11YN20240101    120000                  AODEMO|AAP1001|ABI0002|AC|\r")
        .await;
    assert!(loan.starts_with("121NUY"), "{loan:?}");
    assert!(loan.contains("Borrowed offline"), "{loan:?}");
    let back = sorter
        .send(b"09N20240101    12000020240101    120000AP|AODEMO|ABI0004|AC|\r")
        .await;
    assert!(back.starts_with("101YUN"), "{back:?}");
    assert!(back.contains("library system is offline"), "{back:?}");
    assert!(back.ends_with("\r\n"), "{back:?}");
    // The sorter's account takes no loans; the kiosk's limit is 2 per patron.
    let refused = sorter
        .send(b"11YN20240101    120000                  AODEMO|AAP1001|ABI0001|AC|\r")
        .await;
    assert!(refused.starts_with("120"), "not allowed: {refused:?}");
    kiosk
        .send(b"11YN20240101    120000                  AODEMO|AAP1001|ABI0003|AC|\r")
        .await;
    let over = kiosk
        .send(b"11YN20240101    120000                  AODEMO|AAP1001|ABI0007|AC|\r")
        .await;
    assert!(over.starts_with("120"), "{over:?}");
    assert!(over.contains("No more items"), "{over:?}");
    let queued = s.daemon.store().queue_len().await.unwrap();
    assert_eq!(queued, 3);
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let r = s.next_kiosk_record().await;
        outcomes.push((r.message, r.outcome));
    }
    assert!(
        outcomes.contains(&("checkout", "queued_offline")),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("checkin", "queued_offline")),
        "{outcomes:?}"
    );

    // Back online: each queued transaction reaches the ILS exactly once, no block.
    s.sim.set_available(true);
    let store = s.daemon.store().clone();
    eventually("the queue replayed", async || {
        (store.queue_len().await.unwrap() == 0).then_some(())
    })
    .await;
    let log = s.sim.transactions();
    for (command, item) in [
        (Command::Checkout, "I0002"),
        (Command::Checkout, "I0003"),
        (Command::Checkin, "I0004"),
    ] {
        let sent: Vec<_> = log
            .iter()
            .filter(|t| t.command == command && t.item == item)
            .collect();
        assert_eq!(sent.len(), 1, "{command} {item}: {log:?}");
        assert!(sent[0].no_block && sent[0].ok, "{sent:?}");
    }
    assert_eq!(s.sim.charged_to("I0002").as_deref(), Some("P1001"));
    s.stop().await;
}

#[tokio::test]
async fn a_kiosk_sending_garbage_is_disconnected_and_the_others_are_untouched() {
    let s = start().await;
    let mut good = Kiosk::login(s.face).await;
    let mut bad = Kiosk::login(s.face).await;
    let mut stranger = Kiosk::connect(s.face).await;
    // Garbage: answered with 96 up to the limit, then the line is closed.
    assert!(bad.send(b"\x16\x03\x01 hello\r").await.starts_with("96"));
    assert!(bad.send(b"42garbage\r").await.starts_with("96"));
    bad.writer.write_all(b"XX\r").await.unwrap();
    assert!(bad.closed().await, "the garbage kiosk is disconnected");
    // A frame beyond the size limit with no end, and a request before login, close too.
    stranger.writer.write_all(&[b'9'; 8192]).await.unwrap();
    assert!(stranger.closed().await);
    let mut early = Kiosk::connect(s.face).await;
    early
        .writer
        .write_all(b"11YN20240101    120000                  AODEMO|AAP1001|ABI0001|AC|\r")
        .await
        .unwrap();
    assert!(early.closed().await, "no loan before login");
    // Three wrong passwords close the connection.
    let mut guesser = Kiosk::connect(s.face).await;
    for _ in 0..2 {
        assert_eq!(guesser.send(b"9300CNkiosk1|COguess|\r").await, "940\r");
    }
    assert_eq!(guesser.send(b"9300CNkiosk1|COguess|\r").await, "940\r");
    assert!(guesser.closed().await);
    // The good kiosk never noticed.
    let answer = good.send(b"1720240101    120000AODEMO|ABI0001|AC|\r").await;
    assert!(answer.starts_with("1803"), "{answer:?}");
    let metrics = s.daemon.sip2_face().unwrap().metrics.snapshot();
    assert!(metrics.closed_for_garbage >= 4, "{metrics:?}");
    assert_eq!(metrics.login_failures, 3);
    assert_eq!(
        s.sim.transactions().len(),
        0,
        "nothing ran for the bad ones"
    );
    s.stop().await;
}

#[tokio::test]
async fn status_lists_only_what_the_account_may_send_and_what_the_ils_supports() {
    let s = start().await;
    let mut kiosk = Kiosk::login(s.face).await;
    let status = kiosk.send(&sealed("9900302.00AY0AZ")).await;
    assert!(status.starts_with("98YYYYYY"), "{status:?}");
    assert!(status.contains("BXYYYYYYYYYYYYYYYY|"), "{status:?}");
    assert!(status.contains("ANBR1|"), "{status:?}");
    let mut sorter = Kiosk::sorter(s.face).await;
    let status = sorter.send(b"9900302.00\r").await;
    // checkin ok, checkout no; BX: checkin, status, resend, login, item information.
    assert!(status.starts_with("98YYNNNY"), "{status:?}");
    assert!(status.contains("BXNNYNYYYNNNYNNNNN|"), "{status:?}");
    assert!(
        status.ends_with("\r\n") && !status.contains("AY"),
        "{status:?}"
    );
    s.stop().await;
}

impl Setup {
    /// Takes the ACS off the network and waits until the gateway's pool sees it.
    async fn acs_down(&self) {
        self.sim.set_available(false);
        let pool = self.daemon.ils().pool().unwrap().clone();
        eventually("the ILS offline", async || {
            (!pool.is_online()).then_some(())
        })
        .await;
    }

    /// Puts the ACS back and waits until the offline queue is replayed.
    async fn acs_back_and_replayed(&self) {
        self.sim.set_available(true);
        let store = self.daemon.store().clone();
        eventually("the queue replayed", async || {
            (store.queue_len().await.unwrap() == 0).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_kiosks_no_block_transactions_replay_with_their_original_dates() {
    let s = start().await;
    let mut kiosk = Kiosk::login(s.face).await;
    s.acs_down().await;
    // The kiosk was offline itself and now sends what it did then (no block Y): a return
    // made on 1 January (sent on the 2nd), and three loans made on 3 January with the due
    // date it gave, one more than the station's offline limit of 2 (they already happened).
    let back = kiosk
        .send(b"09Y20240102    10000020240101    090000AP|AODEMO|ABI0004|AC|\r")
        .await;
    assert!(back.starts_with("101Y"), "{back:?}");
    for item in ["I0002", "I0003", "I0007"] {
        let loan = kiosk
            .send(
                format!("11YY20240103    12000020240117    120000AODEMO|AAP1001|AB{item}|AC|\r")
                    .as_bytes(),
            )
            .await;
        assert!(loan.starts_with("121"), "{item}: {loan:?}");
        assert!(loan.contains("due 2024-01-17"), "{item}: {loan:?}");
    }
    s.acs_back_and_replayed().await;
    let log = s.sim.transactions();
    let sent = |command, item| {
        let mut found = log
            .iter()
            .filter(|t| t.command == command && t.item == item)
            .collect::<Vec<_>>();
        assert_eq!(found.len(), 1, "{command} {item} exactly once: {log:?}");
        found.remove(0).clone()
    };
    // The return date is the kiosk's (the connector's offline checkin carries the one
    // moment as both transaction and return date), not when the gateway got it.
    let checkin = sent(Command::Checkin, "I0004");
    assert!(checkin.no_block && checkin.ok, "{checkin:?}");
    assert_eq!(checkin.return_date.as_deref(), Some("20240101    090000"));
    assert_eq!(checkin.transaction_date, "20240101    090000");
    for item in ["I0002", "I0003", "I0007"] {
        let checkout = sent(Command::Checkout, item);
        assert!(checkout.no_block && checkout.ok, "{checkout:?}");
        assert_eq!(checkout.transaction_date, "20240103    120000");
        assert_eq!(checkout.nb_due_date.as_deref(), Some("20240117    120000"));
    }
    s.stop().await;
}

/// Kiosks in the restart test.
const KIOSKS: usize = 16;

/// The demo library with two items on loan per kiosk (returned while the ACS is down) and
/// one free item per kiosk (borrowed before, returned after).
fn busy_library() -> SimConfig {
    let mut library = SimConfig::demo();
    let item = |id: String, charged_to: Option<&str>| SimItem {
        id,
        title: "Kiosk load".into(),
        media_type: "001".into(),
        location: "Main Library".into(),
        bin: None,
        charged_to: charged_to.map(str::to_owned),
        hold_for: None,
        transit_to: None,
        fee_cents: 0,
        properties: String::new(),
        missing: false,
    };
    for n in 0..2 * KIOSKS {
        library.items.push(item(format!("R{n:03}"), Some("P1001")));
    }
    for n in 0..KIOSKS {
        library.items.push(item(format!("L{n:03}"), None));
    }
    library
}

fn checkin_frame(item: &str) -> Vec<u8> {
    format!("09N20240101    12000020240101    120000AP|AODEMO|AB{item}|AC|\r").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_kiosks_ride_out_an_acs_restart_and_each_queued_return_replays_once() {
    let s = start_with(busy_library(), |_| String::new()).await;
    let face = s.face;
    let mut kiosks = futures::future::join_all((0..KIOSKS).map(|_| Kiosk::login(face))).await;

    // Online: every kiosk lends its item at once, live.
    let loans = futures::future::join_all(kiosks.iter_mut().enumerate().map(|(n, k)| {
        k.send_owned(
            format!("11YN20240101    120000                  AODEMO|AAP1001|ABL{n:03}|AC|\r")
                .into_bytes(),
        )
    }))
    .await;
    for (n, loan) in loans.iter().enumerate() {
        assert!(loan.starts_with("121"), "L{n:03}: {loan:?}");
        assert!(!loan.contains("offline"), "live: {loan:?}");
    }

    // The ACS stops. Every kiosk asks the status, returns two items and looks its loan up,
    // all at once: offline answers, the returns queued with the screen message.
    s.acs_down().await;
    let offline =
        futures::future::join_all(kiosks.iter_mut().enumerate().map(|(n, k)| async move {
            let status = k.send(b"9900302.00\r").await;
            let first = k.send(&checkin_frame(&format!("R{:03}", 2 * n))).await;
            let second = k.send(&checkin_frame(&format!("R{:03}", 2 * n + 1))).await;
            let info = k
                .send(format!("1720240101    120000AODEMO|ABL{n:03}|AC|\r").as_bytes())
                .await;
            (status, first, second, info)
        }))
        .await;
    for (status, first, second, info) in &offline {
        assert!(status.starts_with("98NYY"), "{status:?}");
        for back in [first, second] {
            assert!(back.starts_with("101Y"), "{back:?}");
            assert!(back.contains("library system is offline"), "{back:?}");
        }
        assert!(
            info.starts_with("1804"),
            "on loan, from the loans cache: {info:?}"
        );
    }
    assert_eq!(
        s.daemon.store().queue_len().await.unwrap(),
        2 * KIOSKS as u64
    );

    // The ACS is back: each queued return reaches it exactly once, no block.
    s.acs_back_and_replayed().await;
    let log = s.sim.transactions();
    for n in 0..2 * KIOSKS {
        let item = format!("R{n:03}");
        let sent: Vec<_> = log.iter().filter(|t| t.item == item).collect();
        assert_eq!(sent.len(), 1, "{item} once: {sent:?}");
        assert!(
            sent[0].command == Command::Checkin && sent[0].no_block && sent[0].ok,
            "{sent:?}"
        );
    }
    assert_eq!(log.len(), 3 * KIOSKS, "nothing else ran: {log:?}");

    // The same connections get live answers again.
    let pool = s.daemon.ils().pool().unwrap().clone();
    eventually("the ILS online", async || pool.is_online().then_some(())).await;
    let live = futures::future::join_all(kiosks.iter_mut().enumerate().map(|(n, k)| async move {
        let status = k.send(b"9900302.00\r").await;
        let back = k.send(&checkin_frame(&format!("L{n:03}"))).await;
        (status, back)
    }))
    .await;
    for (status, back) in &live {
        assert!(status.starts_with("98Y"), "{status:?}");
        assert!(
            back.starts_with("101Y") && !back.contains("offline"),
            "{back:?}"
        );
    }
    let log = s.sim.transactions();
    for n in 0..KIOSKS {
        let item = format!("L{n:03}");
        let returns: Vec<_> = log
            .iter()
            .filter(|t| t.item == item && t.command == Command::Checkin)
            .collect();
        assert!(
            returns.len() == 1 && !returns[0].no_block && returns[0].ok,
            "{returns:?}"
        );
    }
    let metrics = s.daemon.sip2_face().unwrap().metrics.snapshot();
    assert_eq!(metrics.connections, KIOSKS as u64, "no kiosk reconnected");
    assert_eq!(metrics.closed_for_garbage + metrics.closed_idle, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_checks_out_over_tls_and_a_plain_client_is_turned_away() {
    let mut certificate = None;
    let s = start_with(SimConfig::demo(), |dir| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("face.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("face.key"), key.serialize_pem()).unwrap();
        certificate = Some(cert.der().clone());
        format!(
            "tls = {{ cert_file = \"{0}/face.crt\", key_file = \"{0}/face.key\" }}",
            dir.display()
        )
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.unwrap()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tls_kiosk = async || {
        let tcp = TcpStream::connect(s.face).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        BufReader::new(connector.connect(name, tcp).await.unwrap())
    };
    let exchange = async |kiosk: &mut BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
                          bytes: &[u8]| {
        kiosk.get_mut().write_all(bytes).await.unwrap();
        kiosk.get_mut().flush().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(common::PATIENCE, kiosk.read_until(b'\r', &mut out))
            .await
            .expect("an answer in time")
            .unwrap();
        String::from_utf8(out).unwrap()
    };

    let mut kiosk = tls_kiosk().await;
    assert_eq!(
        exchange(&mut kiosk, b"9300CNkiosk1|COkiosk-pw|\r").await,
        "941\r"
    );
    let loan = exchange(
        &mut kiosk,
        b"11YN20240101    120000                  AODEMO|AAP1001|ABI0001|AC|\r",
    )
    .await;
    assert!(loan.starts_with("121"), "{loan:?}");
    assert_eq!(s.sim.charged_to("I0001").as_deref(), Some("P1001"));

    // A kiosk speaking plain SIP2 to the TLS port: its handshake fails, it gets no SIP2
    // answer, and its connection is closed.
    let mut plain = TcpStream::connect(s.face).await.unwrap();
    plain
        .write_all(b"9300CNkiosk1|COkiosk-pw|\r")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(
        common::PATIENCE,
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut got),
    )
    .await
    .expect("the plain connection is closed")
    .ok();
    assert!(!got.starts_with(b"94"), "no SIP2 answer: {got:?}");
    let metrics = s.daemon.sip2_face().unwrap().metrics.clone();
    eventually("the refusal counted", async || {
        (metrics.snapshot().refused_connections == 1).then_some(())
    })
    .await;

    // The listener keeps serving: the first kiosk and a new one both go on.
    let info = exchange(&mut kiosk, b"1720240101    120000AODEMO|ABI0001|AC|\r").await;
    assert!(info.starts_with("1804"), "{info:?}");
    let mut second = tls_kiosk().await;
    assert_eq!(
        exchange(&mut second, b"9300CNkiosk1|COkiosk-pw|\r").await,
        "941\r"
    );
    let back = exchange(
        &mut second,
        b"09N20240101    12000020240101    120000AP|AODEMO|ABI0001|AC|\r",
    )
    .await;
    assert!(back.starts_with("101"), "{back:?}");
    assert_eq!(s.sim.charged_to("I0001"), None);
    s.stop().await;
}
