//! The daemon as a process and as a library: readiness, graceful shutdown, crash safety.
//!
//! The process tests run the real binary with `NOTIFY_SOCKET` pointing at a datagram
//! socket the test owns, exactly as systemd would. Waits are bounded only to turn a hang
//! into a failure; nothing asserts on timing (speed is measured in the closing notes).

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound for any single wait; only reached when something hangs.
const HANG_GUARD: Duration = Duration::from_secs(30);

fn config_text(dir: &Path, round_ms: u64, tags: usize) -> String {
    let mut text = format!(
        r#"
[daemon]
data_dir = "{}"
log_level = "info"
log_format = "json"
shutdown_timeout_ms = 5000

[api]
listen = "127.0.0.1:0"
[[api.tokens]]
name = "test"
role = "read"
# printf %s lifecycle-token | rfidgw token hash
sha256 = "be405a9b008517a377b0dea391bad835bef82653f4df918044626859ae211ea9"

[[devices]]
id = "gate-reader"
driver = "sim"
[devices.settings]
round_ms = {round_ms}
"#,
        dir.join("state").display()
    );
    for i in 0..tags {
        let _ = write!(
            text,
            "[[devices.settings.tags]]\nuid = \"E0040100000000{i:02X}\"\nafi = \"07\"\nmemory = \"11010131313232333334340000000000000000513E4445373035000000000000\"\nat_ms = {i}\nstay_ms = 1\n"
        );
    }
    text.push_str("\n[[stations]]\nid = \"exit\"\nkind = \"gate\"\ndevices = [\"gate-reader\"]\n");
    text
}

fn write_config(dir: &Path, round_ms: u64, tags: usize) -> PathBuf {
    let path = dir.join("rfidgw.toml");
    std::fs::write(&path, config_text(dir, round_ms, tags)).unwrap();
    path
}

fn spawn_daemon(config: &Path, notify_socket: Option<&Path>) -> Child {
    spawn_daemon_with(config, notify_socket, &[])
}

/// The daemon binary, started through `RFIDGW_TEST_RUNNER` when that is set: a command
/// prefix such as `qemu-aarch64 -L /usr/aarch64-linux-gnu` when the tests themselves run
/// under emulation (`.ci/arm`), where the kernel cannot exec a foreign binary directly.
/// Signals sent to the runner reach the emulated daemon. `RFIDGW_TEST_BINARY` replaces
/// the binary Cargo built for this test: `.ci/arm` points it at the armv7 release build
/// (the one the armhf package ships) and `RFIDGW_TEST_RUNNER` at `qemu-arm`.
fn daemon_command() -> Command {
    let binary = std::env::var_os("RFIDGW_TEST_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_rfidgw")),
        PathBuf::from,
    );
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

fn spawn_daemon_with(config: &Path, notify_socket: Option<&Path>, env: &[(&str, &str)]) -> Child {
    let mut command = daemon_command();
    command
        .args(["run", "--config"])
        .arg(config)
        .env_remove("STATE_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(daemon_log(config));
    if let Some(socket) = notify_socket {
        command.env("NOTIFY_SOCKET", socket);
    }
    command.envs(env.iter().copied());
    command.spawn().unwrap()
}

/// Reads sd_notify datagrams until one contains `wanted`; returns all seen so far.
fn wait_for_notification(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + HANG_GUARD;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|l| l == wanted);
            seen.push(message);
            if found {
                return;
            }
        }
    }
    panic!("no {wanted} within {HANG_GUARD:?}; saw {seen:?}");
}

/// The daemon's log, appended beside its config so a failing test can show it.
fn daemon_log(config: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("daemon.log"))
        .unwrap()
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("daemon did not exit within {HANG_GUARD:?}");
}

async fn wait_for_rows(store: &Store, at_least: i64, config: &Path) -> i64 {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        let last = store.journal_last_id().await.unwrap().unwrap_or(0);
        if last >= at_least {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(config.with_file_name("daemon.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    panic!(
        "journal did not reach {at_least} rows within {HANG_GUARD:?}; the daemon's log ends:\n{}",
        tail.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_is_notified_and_sigterm_exits_zero_with_the_journal_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 200, 4);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    // As systemd does with WatchdogSec=: the daemon must ping while its pipeline moves.
    let mut child = spawn_daemon_with(&config, Some(&socket_path), &[("WATCHDOG_USEC", "400000")]);
    let mut seen = Vec::new();
    wait_for_notification(&socket, "READY=1", &mut seen);
    assert!(
        seen.iter().any(|m| m.contains("STATUS=devices")),
        "READY comes with a STATUS line: {seen:?}"
    );
    wait_for_notification(&socket, "WATCHDOG=1", &mut seen);

    let db = dir.path().join("state/rfidgw.db");
    let store = Store::open(&db).await.unwrap();
    wait_for_rows(&store, 6, &config).await;
    store.close().await;

    kill(
        Pid::from_raw(child.id().try_into().unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    wait_for_notification(&socket, "STOPPING=1", &mut seen);
    let status = wait_for_exit(&mut child);
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");

    let store = Store::open(&db).await.unwrap();
    let kinds: Vec<String> = store
        .recent(1000, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert!(kinds.contains(&"daemon_started".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"tag_arrived".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"daemon_stopping".to_owned()), "{kinds:?}");
    store.close().await;
    let wal = dir.path().join("state/rfidgw.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL was checkpointed into the database at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_writing_loses_no_committed_event() {
    let dir = tempfile::tempdir().unwrap();
    // 32 tags arriving and leaving every 40 ms: the journal is written continuously.
    let config = write_config(dir.path(), 40, 32);
    let db = dir.path().join("state/rfidgw.db");
    let mut committed_before_kill = 0;
    for round in 0..4 {
        let mut child = spawn_daemon(&config, None);
        // Observe rows committed by the daemon from a separate connection (WAL readers
        // see only committed transactions), then kill it mid-stream.
        let observer = loop {
            if db.exists()
                && let Ok(store) = Store::open(&db).await
            {
                break store;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let seen = wait_for_rows(&observer, committed_before_kill + 200, &config).await;
        observer.close().await;
        kill(
            Pid::from_raw(child.id().try_into().unwrap()),
            Signal::SIGKILL,
        )
        .unwrap();
        let status = wait_for_exit(&mut child);
        assert_eq!(status.code(), None, "round {round}: killed by a signal");

        let store = Store::open(&db).await.unwrap();
        assert_eq!(
            store.integrity_check().await.unwrap(),
            "ok",
            "round {round}"
        );
        let last = store.journal_last_id().await.unwrap().unwrap();
        assert!(
            last >= seen,
            "round {round}: committed row {seen} lost (last is {last})"
        );
        assert_eq!(
            store.journal_len().await.unwrap(),
            last,
            "round {round}: rows 1..={last} are all there, no hole"
        );
        committed_before_kill = last;
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_is_ready_even_when_every_device_fails() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), 100, 1)
        .replace("round_ms = 100", "round_ms = 100\nfail_after_ms = 0");
    let path = dir.path().join("rfidgw.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load_with_env(&path, Vec::new()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.subscribe();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("a device_failed event")
            .unwrap();
        if event.kind() == "device_failed" {
            break;
        }
    }
    assert!(daemon.registry().snapshot()[0].last_error.is_some());
    daemon.shutdown("test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_status_while_running_and_a_taken_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), 100, 1);
    let config = Config::load_with_env(&path, Vec::new()).unwrap();
    let daemon = Daemon::start(config.clone()).await.unwrap();
    let addr = daemon.api_addr().unwrap();

    let get = async |path: &str, token: &str| {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = get("/api/v1/status", "lifecycle-token").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"gate-reader\""), "{response}");
    let response = get("/api/v1/status", "guess").await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.contains("\"unauthorized\""), "{response}");
    let response = get("/healthz", "").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let mut taken = config;
    taken.api.listen = addr;
    taken.daemon.data_dir = dir.path().join("other");
    let error = Daemon::start(taken)
        .await
        .err()
        .expect("port in use")
        .to_string();
    assert!(
        error.contains("api.listen") && error.contains(&addr.to_string()),
        "{error}"
    );
    daemon.shutdown("test").await.unwrap();
}
