//! Issue 9's crash test. The real daemon binary runs a return station whose FEIG reader is
//! the driver's built-in simulator, so items keep arriving by themselves after every start,
//! against the ACS simulator in this test process, which survives every kill and is taken
//! off the network and put back at random (before a start and while the daemon runs). Now
//! and then the next checkin is answered slowly or its line drops before or after the ACS
//! carried it out, and between runs a desk client of the test lends items again, so that
//! returns and replays keep meeting items on loan. The daemon is killed with SIGKILL after
//! a random 30–600 ms, at least 200 times (`RFIDGW_CRASH_ROUNDS`, default 200;
//! `RFIDGW_CRASH_SEED` replays a run's choices; `RFIDGW_CRASH_KEEP` keeps the data and the
//! daemon's log), always on the same data directory: during start-up, intake, offline
//! queueing and replay. A last clean run with the ACS up drains the offline queue and stops
//! with SIGTERM. Then the store and the ACS's transaction log must show:
//!
//! 1. no acknowledged transaction lost: every queued return (journaled or acknowledged to
//!    the patron) has its queue row, every row ended `done` or `failed` with a worklist
//!    entry, and every return acknowledged as checked in reached the ACS;
//! 2. none replayed twice: the ACS saw each queued return at most once (no block, with the
//!    row's original transaction date), in queue order, and every row the ACS answered;
//! 3. no item checked in but unsecured without an owed write: each checkin the ACS accepted
//!    is covered by its own re-secure record, committed before it, that ended `done`,
//!    `owed` or `raised` (none cancelled, none still pending after a clean start);
//! 4. SQLite's integrity check passes (after every kill, too).
//!
//! Returns only: a self-check loan needs a patron identified at the kiosk (the API, whose
//! port a separate process cannot learn) or a card reader, which this test leaves out.
//! `cargo test --test circulation_crash -- --nocapture` prints the counts.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rfidgw::store::{JournalRow, OwedRow, OwedState, QueueState, QueuedRow, Store};
use rfidgw_sip2::acs_sim::{SimItem, SimLogin, SimPatron, TRANSACTION_LOG_LIMIT};
use rfidgw_sip2::frame::sip_datetime;
use rfidgw_sip2::{
    AcsSimulator, Completion, Fault, Secret, SimConfig, SimControl, SimTransaction, Sip2PeerConfig,
    Sip2Pool,
};
use tokio_util::sync::CancellationToken;

/// Kills, unless `RFIDGW_CRASH_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 200;
/// Items in the library, all on loan to one patron at the start.
const ITEMS: usize = 40;
/// Items dropped into the return box per run of the daemon (a new random choice each run).
const PER_RUN: usize = 6;
/// Time between two items' arrivals at the reader, in the simulator's script.
const SPACING_MS: u64 = 90;
/// The daemon lives this long (ms) before it is killed.
const LIFE_MS: std::ops::RangeInclusive<u64> = 30..=600;
/// Upper bound for the daemon's exit after a signal; only reached when something hangs.
const EXIT_GUARD: Duration = common::PATIENCE;

/// The fault that loses a checkin before the ACS reads it.
const DROPPED_BEFORE: &str = "dropped before";

/// ISO 28560-3, item 11223344 of DE/705; every item's memory is made from it.
const TEMPLATE: &str = "11010131313232333334340000000000000000513E4445373035000000000000";

fn item_id(index: usize) -> String {
    format!("I{:04}", index + 1)
}

fn uid_of(index: usize) -> String {
    format!("E00401000000C0{index:02X}")
}

/// Tag memory of item `item` (ISO 28560-3, DE/705).
fn memory(item: &str) -> String {
    use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};
    let site = SiteConfig::default();
    let template = rfidgw_tag::parse_hex(TEMPLATE).unwrap();
    let Some(TagData::Iso28560_3(mut ddm)) =
        rfidgw_tag::decode(&template, &TagHints::default(), &site).data
    else {
        panic!("the template is ISO 28560-3");
    };
    item.clone_into(&mut ddm.basic.primary_item_id);
    let encoded = rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, &site).unwrap();
    hex::encode_upper(encoded)
}

/// The library: patron P1001 has every item on loan.
fn library() -> SimConfig {
    SimConfig {
        login: Some(SimLogin {
            user: "demo".into(),
            password: Secret::new("demo"),
        }),
        patrons: vec![SimPatron {
            id: "P1001".into(),
            name: "Alice Reader".into(),
            pin: None,
            blocked: false,
            fine_cents: 0,
        }],
        items: (0..ITEMS)
            .map(|i| SimItem {
                id: item_id(i),
                title: format!("Book {}", i + 1),
                media_type: "001".into(),
                location: "Main Library".into(),
                bin: None,
                charged_to: Some("P1001".into()),
                hold_for: None,
                transit_to: None,
                fee_cents: 0,
                properties: String::new(),
                missing: false,
            })
            .collect(),
        ..SimConfig::default()
    }
}

/// One item of a run's script: which item, and how long its tag stays at the reader.
struct Drop {
    item: usize,
    stay_ms: u64,
}

/// The daemon's config: one return station (offline returns on) whose reader plays
/// `drops` from the start of each run (and again every round of the script).
fn config_text(state: &Path, acs: SocketAddr, drops: &[Drop], memories: &[String]) -> String {
    let round_ms = SPACING_MS * (drops.len() as u64 + 1);
    let mut text = format!(
        r#"
[daemon]
data_dir = "{state}"
log_level = "info"
shutdown_timeout_ms = 5000
[api]
enabled = false
[tags.owners]
libraries = [{{ country = "DE", library = "705" }}]
[ils.sip2]
addr = "{acs}"
user = "demo"
password = "demo"
institution = "DEMO"
pool_size = 1
max_backoff_ms = 250
connect_timeout_ms = 1000
request_timeout_ms = 2000
[circulation]
replay_pause_ms = 100

[[devices]]
id = "return-reader"
driver = "feig"
[devices.settings.transport]
kind = "simulator"
[devices.settings.poll]
poll_interval_ms = 20
depart_after_polls = 2
memory_blocks = 8
[devices.settings.simulator]
round_ms = {round_ms}
"#,
        state = state.display(),
    );
    for (slot, drop) in drops.iter().enumerate() {
        let _ = write!(
            text,
            "[[devices.settings.simulator.tags]]\nuid = \"{uid}\"\nafi = \"C2\"\nmemory = \"{memory}\"\nat_ms = {at}\nstay_ms = {stay}\n",
            uid = uid_of(drop.item),
            memory = memories[drop.item],
            at = 20 + SPACING_MS * slot as u64,
            stay = drop.stay_ms,
        );
    }
    text.push_str(
        r#"
[[stations]]
id = "returns"
kind = "return"
devices = ["return-reader"]
[stations.returns]
settle_ms = 40
[stations.offline]
mode = "checkin"
"#,
    );
    text
}

/// The daemon binary, started through `RFIDGW_TEST_RUNNER` when that is set (as in
/// `tests/lifecycle.rs`: a command prefix such as `qemu-aarch64 -L …` under emulation).
fn daemon_command() -> Command {
    let binary = env!("CARGO_BIN_EXE_rfidgw");
    let runner = std::env::var("RFIDGW_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

fn spawn_daemon(config: &Path, log: &Path, notify_socket: Option<&Path>) -> Child {
    let log = File::options().create(true).append(true).open(log).unwrap();
    let mut command = daemon_command();
    if let Some(socket) = notify_socket {
        command.env("NOTIFY_SOCKET", socket);
    } else {
        command.env_remove("NOTIFY_SOCKET");
    }
    command
        .args(["run", "--config"])
        .arg(config)
        .env_remove("STATE_DIRECTORY")
        .env_remove("WATCHDOG_USEC")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits for the daemon's `READY=1` (sd_notify): its signal handlers are in place.
async fn wait_until_ready(socket: UnixDatagram) {
    tokio::task::spawn_blocking(move || {
        socket.set_read_timeout(Some(common::PATIENCE)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).expect("READY=1 from the daemon");
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return;
            }
        }
    })
    .await
    .unwrap();
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id().try_into().unwrap()), signal).unwrap();
}

async fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + EXIT_GUARD;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit within {EXIT_GUARD:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn millis_now() -> i64 {
    rfidgw::store::millis_now()
}

/// When this process first saw each checkin the ACS carried out (by its position in the
/// ACS's log, ms since the epoch): never earlier than the ACS carried it out. Polled from
/// a thread of its own every millisecond.
struct CheckinClock {
    seen: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CheckinClock {
    fn start(acs: SimControl) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    Self::sample(&acs, &seen);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Self::sample(&acs, &seen);
            })
        };
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn sample(acs: &SimControl, seen: &Mutex<Vec<i64>>) {
        let executed = usize::try_from(acs.executed(rfidgw_sip2::Command::Checkin)).unwrap();
        let now = millis_now();
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        while seen.len() < executed {
            seen.push(now);
        }
    }

    fn stop(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What the store looked like right after one kill.
#[derive(Default)]
struct AfterKill {
    waiting: usize,
    replaying: Vec<i64>,
    pending_writes: Vec<i64>,
    /// Items with a return still to replay.
    open_items: HashSet<String>,
}

/// Opens the store of a killed daemon (SQLite recovers the WAL), checks its integrity and
/// looks at the queue and the owed writes; closes it before the next start.
async fn after_kill(db: &Path, round: usize) -> AfterKill {
    if !db.exists() {
        return AfterKill::default();
    }
    let store = Store::open(db).await.unwrap();
    assert_eq!(
        store.integrity_check().await.unwrap(),
        "ok",
        "round {round}: the store is damaged after a kill"
    );
    let queue = store
        .queued(&[QueueState::Queued, QueueState::Replaying], u32::MAX)
        .await
        .unwrap();
    let pending = store
        .owed_writes(&[OwedState::Pending], u32::MAX)
        .await
        .unwrap();
    store.close().await;
    AfterKill {
        waiting: queue.len(),
        replaying: queue
            .iter()
            .filter(|r| r.state == QueueState::Replaying)
            .map(|r| r.id)
            .collect(),
        pending_writes: pending.iter().map(|r| r.id).collect(),
        open_items: queue.iter().map(|r| r.item_id.clone()).collect(),
    }
}

/// The circulation desk: a SIP2 client of its own, lending items again between runs so
/// that returns and replays keep meeting items that are on loan.
fn desk(acs: SocketAddr, stop: CancellationToken) -> Sip2Pool {
    let mut config = Sip2PeerConfig::new(acs.to_string(), "demo", "demo");
    config.institution = "DEMO".into();
    config.pool_size = Some(1);
    config.request_timeout_ms = Some(1_000);
    config.max_backoff_ms = Some(250);
    Sip2Pool::start(config, stop).unwrap()
}

/// Lends up to three random items to P1001 again, none with a return still to replay (its
/// replay may have reached the ACS just before the kill: lending it now would make the
/// next start's look at the item read "not returned yet" and send it again). Returns how
/// many were lent.
async fn lend_again(desk: &Sip2Pool, rng: &mut StdRng, open: &HashSet<String>) -> usize {
    let mut lent = 0;
    for index in sample(rng, ITEMS, 3) {
        let item = item_id(index);
        if open.contains(&item) {
            continue;
        }
        let answer =
            tokio::time::timeout(EXIT_GUARD, desk.checkout("P1001", &item, None, false)).await;
        if let Ok(Ok(Completion::Answered(response))) = answer {
            lent += usize::from(response.ok);
        }
    }
    lent
}

/// Every journal row of `kind`, oldest first.
async fn journal(store: &Store, kind: &str) -> Vec<JournalRow> {
    let mut rows: Vec<JournalRow> = Vec::new();
    loop {
        let after = rows.last().map_or(0, |r| r.id);
        let page = store.since(after, &[kind]).await.unwrap();
        if page.is_empty() {
            return rows;
        }
        rows.extend(page);
    }
}

/// Counts of the loop, printed at the end.
#[derive(Default)]
struct Tally {
    rounds: usize,
    kills_offline: usize,
    kills_online: usize,
    kills_with_queue_waiting_online: usize,
    kills_mid_replay: usize,
    kills_mid_transaction: usize,
    /// Queue rows and owed writes already found half done after an earlier kill.
    half_done: HashSet<(bool, i64)>,
    toggles_while_running: usize,
    faults_injected: BTreeMap<&'static str, usize>,
    /// Items lent again at the desk between runs.
    lent_again: usize,
    max_waiting_at_kill: usize,
}

impl Tally {
    /// Counts one kill: whether the ACS was up, and what the kill left half done (each
    /// queue row and owed write counted at the first kill that left it so).
    fn count(&mut self, up: bool, found: &AfterKill) {
        self.rounds += 1;
        if up {
            self.kills_online += 1;
            self.kills_with_queue_waiting_online += usize::from(found.waiting > 0);
        } else {
            self.kills_offline += 1;
        }
        let mut new = |replay: bool, ids: &[i64]| {
            ids.iter()
                .filter(|id| self.half_done.insert((replay, **id)))
                .count()
                > 0
        };
        let (replay, intake) = (
            new(true, &found.replaying),
            new(false, &found.pending_writes),
        );
        self.kills_mid_replay += usize::from(replay);
        self.kills_mid_transaction += usize::from(intake);
        self.max_waiting_at_kill = self.max_waiting_at_kill.max(found.waiting);
    }

    fn print(&self, wall: Duration) {
        println!(
            "circulation crash test: {} SIGKILLs in {:.1} s ({} with the ACS down, {} with it up, \
             {} of those with the queue not empty; {} ACS switches while the daemon ran; faults \
             injected into the next checkin: {:?})",
            self.rounds,
            wall.as_secs_f64(),
            self.kills_offline,
            self.kills_online,
            self.kills_with_queue_waiting_online,
            self.toggles_while_running,
            self.faults_injected,
        );
        println!(
            "  kills that left a transaction half done: {} mid-intake (a new pending re-secure), \
             {} mid-replay (a new row left replaying)",
            self.kills_mid_transaction, self.kills_mid_replay
        );
    }
}

/// A run's plan: how long the daemon lives, the ACS up or down at its start and maybe
/// switched while it runs, a fault for the next checkin, the items dropped into the box.
struct RunPlan {
    life: Duration,
    up_at_start: bool,
    switch_after: Option<Duration>,
    fault: Option<(&'static str, Fault)>,
    drops: Vec<Drop>,
}

impl RunPlan {
    fn random(rng: &mut StdRng) -> Self {
        let life = Duration::from_millis(rng.random_range(LIFE_MS));
        let up_at_start = rng.random_bool(0.5);
        let switch_after = rng
            .random_bool(0.35)
            .then(|| life.mul_f64(rng.random_range(0.1..0.9)));
        // Now and then the next checkin the ACS gets goes wrong: answered slowly (after it
        // was carried out: a kill lands between the ILS's yes and the tag write, or a tag
        // leaves before its write), or the line drops after or before carrying it out.
        let fault = match rng.random_range(0..10) {
            0..=2 => Some((
                "slow answer",
                Fault::Delay(Duration::from_millis(rng.random_range(50..400))),
            )),
            3 => Some(("dropped after", Fault::DropAfterProcessing)),
            4 => Some((DROPPED_BEFORE, Fault::DropBeforeProcessing)),
            _ => None,
        };
        let drops = sample(rng, ITEMS, PER_RUN)
            .into_iter()
            .map(|item| Drop {
                item,
                // Most tags stay long enough for the re-secure; some leave early (owed).
                stay_ms: if rng.random_bool(0.2) { 55 } else { 150 },
            })
            .collect();
        Self {
            life,
            up_at_start,
            switch_after,
            fault,
            drops,
        }
    }
}

fn rounds() -> usize {
    std::env::var("RFIDGW_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS)
}

fn seed() -> u64 {
    std::env::var("RFIDGW_CRASH_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(rand::random)
}

/// The site under test: the daemon's files and the ACS it talks to.
struct Site {
    dir: tempfile::TempDir,
    state: PathBuf,
    db: PathBuf,
    config: PathBuf,
    log: PathBuf,
    acs: SimControl,
    acs_addr: SocketAddr,
    memories: Vec<String>,
}

impl Site {
    async fn new(stop: &CancellationToken) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let simulator = AcsSimulator::new(library());
        let acs = simulator.control();
        let (acs_addr, serve) = simulator.bind("127.0.0.1:0", stop.clone()).await.unwrap();
        tokio::spawn(serve);
        Self {
            db: state.join("rfidgw.db"),
            config: dir.path().join("rfidgw.toml"),
            log: dir.path().join("daemon.log"),
            state,
            dir,
            acs,
            acs_addr,
            memories: (0..ITEMS).map(|i| memory(&item_id(i))).collect(),
        }
    }

    fn write_config(&self, drops: &[Drop]) {
        let text = config_text(&self.state, self.acs_addr, drops, &self.memories);
        std::fs::write(&self.config, text).unwrap();
    }

    /// One start of the daemon, killed with SIGKILL as `plan` says; the store is checked
    /// and looked at after the kill.
    async fn kill_round(&self, round: usize, plan: RunPlan, tally: &mut Tally) -> AfterKill {
        self.write_config(&plan.drops);
        self.acs.set_available(plan.up_at_start);
        if let Some((name, fault)) = plan.fault {
            self.acs.inject(Some(rfidgw_sip2::Command::Checkin), fault);
            *tally.faults_injected.entry(name).or_default() += 1;
        }
        let mut child = spawn_daemon(&self.config, &self.log, None);
        let born = tokio::time::Instant::now();
        if let Some(after) = plan.switch_after {
            tokio::time::sleep_until(born + after).await;
            self.acs.set_available(!plan.up_at_start);
            tally.toggles_while_running += 1;
        }
        tokio::time::sleep_until(born + plan.life).await;
        let up = self.acs.available();
        signal(&child, Signal::SIGKILL);
        let status = wait_for_exit(&mut child).await;
        assert_eq!(
            status.code(),
            None,
            "round {round}: the daemon exited by itself ({status}) before the kill; see {}",
            self.log.display()
        );
        let found = after_kill(&self.db, round).await;
        tally.count(up, &found);
        found
    }

    /// The last run: the ACS up, no new returns, until the queue is empty; then a clean
    /// stop with SIGTERM. Returns the store, open.
    async fn last_clean_run(&self) -> Store {
        self.write_config(&[]);
        self.acs.set_available(true);
        let socket_path = self.dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        let mut child = spawn_daemon(&self.config, &self.log, Some(&socket_path));
        wait_until_ready(socket).await;
        let store = Store::open(&self.db).await.unwrap();
        eventually("the offline queue drained in the last run", async || {
            (store.queue_len().await.unwrap() == 0).then_some(())
        })
        .await;
        signal(&child, Signal::SIGTERM);
        let status = wait_for_exit(&mut child).await;
        assert_eq!(status.code(), Some(0), "a clean stop exits 0");
        store
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_intake_queueing_and_replay_loses_nothing_replays_nothing_twice_and_leaves_nothing_unsecured()
 {
    let started = Instant::now();
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    println!("circulation crash test: seed {seed} (RFIDGW_CRASH_SEED={seed} replays it)");
    let stop = CancellationToken::new();
    let site = Site::new(&stop).await;
    let clock = CheckinClock::start(site.acs.clone());
    let desk = desk(site.acs_addr, stop.clone());

    let mut tally = Tally::default();
    for round in 0..rounds() {
        let plan = RunPlan::random(&mut rng);
        let found = site.kill_round(round, plan, &mut tally).await;
        if site.acs.available() && desk.is_online() && rng.random_bool(0.5) {
            tally.lent_again += lend_again(&desk, &mut rng, &found.open_items).await;
        }
    }
    let store = site.last_clean_run().await;
    let timed = clock.stop();
    let facts = Facts::gather(&store, site.acs.transactions(), timed).await;
    stop.cancel();

    let mut violations = Vec::new();
    let dropped_before = tally
        .faults_injected
        .get(DROPPED_BEFORE)
        .copied()
        .unwrap_or(0);
    facts.nothing_acknowledged_is_lost(dropped_before, &mut violations);
    facts.nothing_is_replayed_twice(&mut violations);
    facts.every_checkin_has_its_resecure(&mut violations);
    let integrity = store.integrity_check().await.unwrap();
    if integrity != "ok" {
        violations.push(format!("integrity check: {integrity}"));
    }
    store.close().await;

    tally.print(started.elapsed());
    facts.print(&tally);
    if std::env::var_os("RFIDGW_CRASH_KEEP").is_some() {
        println!(
            "  data and daemon log kept in {}",
            site.dir.keep().display()
        );
    } else if !violations.is_empty() {
        let kept = site.dir.keep();
        let shown: Vec<String> = violations
            .iter()
            .take(30)
            .map(|v| format!("  - {v}"))
            .collect();
        panic!(
            "{} violations (seed {seed}; data and daemon log kept in {}):\n{}",
            violations.len(),
            kept.display(),
            shown.join("\n")
        );
    }
    assert!(tally.kills_offline > 0 && tally.kills_online > 0);
}

/// Everything the checks look at, read once after the last run.
struct Facts {
    queue: Vec<QueuedRow>,
    owed: Vec<OwedRow>,
    worklist: Vec<rfidgw::store::WorkRow>,
    queued_journal: Vec<JournalRow>,
    returned_journal: Vec<JournalRow>,
    replayed_journal: Vec<JournalRow>,
    /// The ACS's checkins, with when this process first saw each (ms since the epoch).
    checkins: Vec<(SimTransaction, i64)>,
}

impl Facts {
    async fn gather(store: &Store, acs_log: Vec<SimTransaction>, timed: Vec<i64>) -> Self {
        assert!(
            acs_log.len() < TRANSACTION_LOG_LIMIT,
            "the ACS's log overflowed; run fewer rounds"
        );
        let checkins: Vec<SimTransaction> = acs_log
            .into_iter()
            .filter(|t| t.command == rfidgw_sip2::Command::Checkin)
            .collect();
        assert_eq!(checkins.len(), timed.len(), "every ACS checkin was timed");
        Self {
            queue: store.queued(&[], u32::MAX).await.unwrap(),
            owed: store.owed_writes(&[], u32::MAX).await.unwrap(),
            worklist: store.worklist(true, u32::MAX).await.unwrap(),
            queued_journal: journal(store, "offline_queued").await,
            returned_journal: journal(store, "item_returned").await,
            replayed_journal: journal(store, "replayed").await,
            checkins: checkins.into_iter().zip(timed).collect(),
        }
    }

    fn row(&self, id: i64) -> Option<&QueuedRow> {
        self.queue.iter().find(|r| r.id == id)
    }

    fn online_checkins(&self) -> impl Iterator<Item = &(SimTransaction, i64)> {
        self.checkins.iter().filter(|(t, _)| !t.no_block)
    }

    fn offline_checkins(&self) -> impl Iterator<Item = &(SimTransaction, i64)> {
        self.checkins.iter().filter(|(t, _)| t.no_block)
    }

    /// 1. Every queued return is in the queue and ended done or on the staff worklist;
    ///    every return acknowledged as checked in reached the ACS.
    fn nothing_acknowledged_is_lost(&self, dropped_before: usize, violations: &mut Vec<String>) {
        for event in &self.queued_journal {
            let id = event.payload["queue_id"].as_i64();
            if id.and_then(|id| self.row(id)).is_none() {
                violations.push(format!(
                    "journaled offline_queued without its queue row: {}",
                    event.payload
                ));
            }
        }
        for event in &self.returned_journal {
            if event.payload["outcome"] == "queued_offline" {
                let id = event.payload["queue_id"].as_i64();
                if id.and_then(|id| self.row(id)).is_none() {
                    violations.push(format!(
                        "return acknowledged as queued without its queue row: {}",
                        event.payload
                    ));
                }
            }
        }
        for row in &self.queue {
            match row.state {
                QueueState::Done => {}
                QueueState::Failed => {
                    if !self
                        .worklist
                        .iter()
                        .any(|w| w.kind == "replay_failed" && w.ref_id == Some(row.id))
                    {
                        violations.push(format!(
                            "queue row {} failed without a worklist entry: {row:?}",
                            row.id
                        ));
                    }
                }
                state => violations.push(format!(
                    "queue row {} left {state:?} after a clean run with the ACS up: {row:?}",
                    row.id
                )),
            }
        }
        // A return journaled as checked in was answered ok by the ACS: per item, no more
        // of them than online checkins the ACS accepted. Except where the line dropped
        // before the ACS read the checkin of an item it already had back: the client's
        // item-information lookup then finds it "not charged" (SIP2 cannot tell that apart
        // from a checkin that happened), at most once per such fault.
        let mut acknowledged: BTreeMap<&str, usize> = BTreeMap::new();
        for event in &self.returned_journal {
            if event.payload["outcome"] == "checked_in"
                && let Some(item) = event.payload["item"].as_str()
            {
                *acknowledged.entry(item).or_default() += 1;
            }
        }
        let mut unmatched = Vec::new();
        for (item, count) in acknowledged {
            let accepted = self
                .online_checkins()
                .filter(|(t, _)| t.ok && t.item == item)
                .count();
            if count > accepted {
                unmatched.push(format!(
                    "{item}: {count} returns journaled as checked in, the ACS accepted {accepted}"
                ));
            }
        }
        if unmatched.len() > dropped_before {
            violations.extend(unmatched);
        }
    }

    /// 2. Each replayed checkin matches its own queue row (item and original date), none
    ///    twice, in queue order; a row answered by the ACS was sent.
    fn nothing_is_replayed_twice(&self, violations: &mut Vec<String>) {
        let mut matched: HashSet<i64> = HashSet::new();
        let mut last = 0;
        for (sent, _) in self.offline_checkins() {
            let candidates = || {
                self.queue.iter().filter(|r| {
                    r.item_id == sent.item && sip_dates(r.at_ms).contains(&sent.transaction_date)
                })
            };
            // In order: the first unmatched row of this item and date after the last one.
            if let Some(row) = candidates().find(|r| r.id > last && !matched.contains(&r.id)) {
                matched.insert(row.id);
                last = row.id;
                continue;
            }
            let rows: Vec<i64> = candidates().map(|r| r.id).collect();
            violations.push(if rows.is_empty() {
                format!(
                    "the ACS got a no-block checkin of {} dated {:?} that no queue row has",
                    sent.item, sent.transaction_date
                )
            } else {
                format!(
                    "the ACS got a no-block checkin of {} dated {:?} twice or out of order \
                     (rows {rows:?}, last replayed row {last})",
                    sent.item, sent.transaction_date
                )
            });
        }
        for row in &self.queue {
            let answered = row.state == QueueState::Done
                && row
                    .outcome
                    .as_deref()
                    .is_some_and(|o| o.contains("\"learned\":\"answered\""));
            if answered && !matched.contains(&row.id) {
                violations.push(format!(
                    "queue row {} was answered by the ACS but the ACS has no such checkin: {row:?}",
                    row.id
                ));
            }
        }
        let mut finished: HashMap<i64, usize> = HashMap::new();
        for event in &self.replayed_journal {
            if event.payload["outcome"] != "failed"
                && let Some(id) = event.payload["queue_id"].as_i64()
            {
                *finished.entry(id).or_default() += 1;
            }
        }
        for (id, times) in finished {
            if times > 1 {
                violations.push(format!(
                    "queue row {id} journaled as replayed {times} times"
                ));
            }
        }
    }

    /// 3. Each checkin the ACS accepted (online, or a queued return) is covered by a
    ///    re-secure record of its own for that item, committed no later, never cancelled and
    ///    not left pending.
    fn every_checkin_has_its_resecure(&self, violations: &mut Vec<String>) {
        for row in &self.owed {
            if row.state == OwedState::Pending {
                violations.push(format!(
                    "owed write {} still pending after a clean start: {row:?}",
                    row.id
                ));
            }
            if row.secure && row.state == OwedState::Cancelled {
                violations.push(format!("a return's re-secure was cancelled: {row:?}"));
            }
        }
        let mut needs: BTreeMap<&str, Vec<(i64, String)>> = BTreeMap::new();
        for (sent, seen) in self.online_checkins() {
            if sent.ok {
                needs
                    .entry(sent.item.as_str())
                    .or_default()
                    .push((*seen, "an online checkin".to_owned()));
            }
        }
        for row in &self.queue {
            needs
                .entry(row.item_id.as_str())
                .or_default()
                .push((row.at_ms, format!("queue row {}", row.id)));
        }
        for (item, mut wanted) in needs {
            wanted.sort();
            let mut covers: Vec<i64> = self
                .owed
                .iter()
                .filter(|r| {
                    r.secure
                        && r.item_id.as_deref() == Some(item)
                        && matches!(
                            r.state,
                            OwedState::Done | OwedState::Owed | OwedState::Raised
                        )
                })
                .map(|r| r.created_ms)
                .collect();
            covers.sort_unstable();
            // Each checkin takes a record of its own created no later than it: in time
            // order, any record available then will do.
            let mut available = 0usize;
            let mut next = 0;
            for (at, what) in &wanted {
                while next < covers.len() && covers[next] <= *at {
                    available += 1;
                    next += 1;
                }
                if available == 0 {
                    violations.push(format!(
                        "{item}: {what} at {at} ms has no re-secure record committed before it \
                         ({} checkins, {} records)",
                        wanted.len(),
                        covers.len()
                    ));
                    break;
                }
                available -= 1;
            }
        }
    }

    fn print(&self, tally: &Tally) {
        let count_rows = |state: QueueState| self.queue.iter().filter(|r| r.state == state).count();
        let outcome_has = |text: &str| {
            self.queue
                .iter()
                .filter(|r| r.outcome.as_deref().is_some_and(|o| o.contains(text)))
                .count()
        };
        let count_owed = |state: OwedState| {
            self.owed
                .iter()
                .filter(|r| r.secure && r.state == state)
                .count()
        };
        let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
        for event in &self.returned_journal {
            *outcomes
                .entry(event.payload["outcome"].as_str().unwrap_or("?"))
                .or_default() += 1;
        }
        let owed_by_crash = self
            .owed
            .iter()
            .filter(|r| {
                r.reason
                    .contains("the daemon stopped during the transaction")
            })
            .count();
        println!(
            "  returns journaled: {} ({outcomes:?})",
            self.returned_journal.len()
        );
        println!(
            "  ACS checkins: {} online ({} ok), {} replayed (no block); {} items lent again at \
             the desk between runs",
            self.online_checkins().count(),
            self.online_checkins().filter(|(t, _)| t.ok).count(),
            self.offline_checkins().count(),
            tally.lent_again
        );
        println!(
            "  offline queue: {} rows; {} done ({} found already done after a kill, {} learned \
             through item information), {} failed to the worklist; max depth {} (at a kill: {})",
            self.queue.len(),
            count_rows(QueueState::Done),
            outcome_has("already_done"),
            outcome_has("\"learned\":\"recovered\""),
            count_rows(QueueState::Failed),
            max_depth(&self.queue, &self.replayed_journal),
            tally.max_waiting_at_kill,
        );
        println!(
            "  re-secure records: {} ({} done, {} owed, {} raised, {} cancelled; {} left pending \
             by a kill and owed at the next start)",
            self.owed.iter().filter(|r| r.secure).count(),
            count_owed(OwedState::Done),
            count_owed(OwedState::Owed),
            count_owed(OwedState::Raised),
            count_owed(OwedState::Cancelled),
            owed_by_crash,
        );
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for work in &self.worklist {
            *kinds.entry(work.kind.as_str()).or_default() += 1;
        }
        println!("  worklist: {} entries ({kinds:?})", self.worklist.len());
        for work in self.worklist.iter().take(5) {
            let item = work.item_id.as_deref().unwrap_or("-");
            println!("    {} {item}: {}", work.kind, work.reason);
        }
    }
}

/// A queue row's date as the client sends it: local time, or UTC where the daemon cannot
/// learn the offset. Either form matches.
fn sip_dates(at_ms: i64) -> [String; 2] {
    let utc =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).unwrap();
    let local = time::UtcOffset::local_offset_at(utc).map_or(utc, |offset| utc.to_offset(offset));
    [sip_datetime(utc), sip_datetime(local)]
}

/// The most transactions waiting at once: a row waits from its queueing until its replay is
/// journaled. A row finished by a daemon killed before it journaled that counts as waiting
/// until the next row's replay (replay is in queue order).
fn max_depth(queue: &[QueuedRow], replayed: &[JournalRow]) -> usize {
    let mut finished: HashMap<i64, i64> = HashMap::new();
    for event in replayed {
        if let Some(id) = event.payload["queue_id"].as_i64() {
            finished.entry(id).or_insert(event.at_ms);
        }
    }
    let mut rows: Vec<&QueuedRow> = queue.iter().collect();
    rows.sort_by_key(|r| r.id);
    let mut edges: Vec<(i64, i32)> = Vec::new();
    let mut later = i64::MAX;
    for row in rows.iter().rev() {
        let end = finished.get(&row.id).copied().unwrap_or(later).min(later);
        later = end;
        edges.push((row.at_ms, 1));
        if end != i64::MAX {
            edges.push((end, -1));
        }
    }
    edges.sort_unstable();
    let (mut depth, mut max) = (0i32, 0i32);
    for (_, step) in edges {
        depth += step;
        max = max.max(depth);
    }
    usize::try_from(max).unwrap_or(0)
}
