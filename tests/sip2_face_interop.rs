//! Interop of the SIP2 face with clients nobody here wrote, relaying to the ACS simulator:
//!
//! * the PyPI `sip2` client 1.1 (`tests/interop/sip2_face_client.py`): login, status,
//!   patron information, checkout, item information, renew, checkin;
//! * the crates.io `sip2` crate's `sip2-client-cli` 0.3.4: login, status, item
//!   information, patron status and information, checkout (it sends no AC) and checkin,
//!   then 16 kiosks in parallel.
//!
//! The interpreter comes from `RFIDGW_SIP2_PYTHON` (else `<workspace>/.venv/bin/python`),
//! the CLI from `RFIDGW_SIP2_CLIENT_CLI` (else `sip2-client-cli` on the PATH). When one is
//! missing its test prints a SKIP line and passes, unless `RFIDGW_REQUIRE_INTEROP=1` is
//! set (as in `.ci/run`): then it fails.
//!
//! Set-up: `.venv/bin/pip install sip2==1.1` and
//! `cargo install sip2 --version =0.3.4 --bin sip2-client-cli`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command as Process;

use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw_sip2::AcsSimulator;
use rfidgw_sip2::acs_sim::SimControl;
use tokio_util::sync::CancellationToken;

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

fn skip_or_fail(what: &str, reason: &str) {
    assert!(
        std::env::var("RFIDGW_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{what} interop required (RFIDGW_REQUIRE_INTEROP=1) but {reason}"
    );
    println!("SKIP {what} interop: {reason}");
}

/// The daemon with the face (account kiosk1 / kiosk-pw) in front of the demo library.
async fn start() -> (
    tempfile::TempDir,
    Daemon,
    SocketAddr,
    SimControl,
    CancellationToken,
) {
    let dir = tempfile::tempdir().unwrap();
    let sim = AcsSimulator::demo();
    let control = sim.control();
    let stop = CancellationToken::new();
    let (acs, serve) = sim.bind("127.0.0.1:0", stop.clone()).await.unwrap();
    tokio::spawn(serve);
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
        [ils.sip2]
        addr = "{acs}"
        user = "demo"
        password = "demo"
        institution = "DEMO"
        pool_size = 4
        [[devices]]
        id = "pad"
        driver = "sim"
        settings = {{ round_ms = 100000 }}
        [[stations]]
        id = "selfcheck-1"
        kind = "self-check"
        devices = ["pad"]
        [stations.offline]
        mode = "checkin-checkout"
        [sip2_server]
        listen = "127.0.0.1:0"
        [[sip2_server.accounts]]
        login = "kiosk1"
        password_hash = "{hash}"
        station = "selfcheck-1"
        "#,
        data = dir.path().display(),
    );
    let config = Config::parse("interop.toml", &text, std::iter::empty()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    let face = daemon.sip2_face().unwrap().addr;
    let pool = daemon.ils().pool().unwrap().clone();
    tokio::time::timeout(std::time::Duration::from_secs(20), pool.wait_online())
        .await
        .unwrap();
    (dir, daemon, face, control, stop)
}

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RFIDGW_SIP2_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(WORKSPACE).join(".venv/bin/python");
    venv.exists().then_some(venv)
}

fn cli() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RFIDGW_SIP2_CLIENT_CLI") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("sip2-client-cli"))
            .find(|p| p.exists())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pypi_sip2_client_logs_in_borrows_renews_and_returns_through_the_face() {
    let Some(python) = python() else {
        return skip_or_fail(
            "PyPI sip2",
            "no interpreter (RFIDGW_SIP2_PYTHON unset, no .venv)",
        );
    };
    let has_client = Process::new(&python)
        .args(["-c", "import Sip2.sip2"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_client {
        return skip_or_fail(
            "PyPI sip2",
            &format!(
                "the sip2 1.1 package is not installed for {}",
                python.display()
            ),
        );
    }
    let (dir, daemon, face, sim, stop) = start().await;
    let script = PathBuf::from(WORKSPACE).join("tests/interop/sip2_face_client.py");
    let port = face.port().to_string();
    // The client writes its log (sip2.log) into its working directory.
    let cwd = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Process::new(&python)
            .current_dir(cwd)
            .arg(script)
            .args([port.as_str(), "kiosk1", "kiosk-pw"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the PyPI sip2 client failed");
    assert!(stdout.contains("all exchanges as expected"));
    // The loan, the renewal and the return each reached the ILS once.
    assert_eq!(sim.transactions().len(), 3, "{:?}", sim.transactions());
    daemon.shutdown("test").await.unwrap();
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sip2_crate_client_cli_runs_its_messages_through_the_face_also_in_parallel() {
    let Some(cli) = cli() else {
        return skip_or_fail(
            "sip2-client-cli",
            "not found (RFIDGW_SIP2_CLIENT_CLI unset, none on the PATH)",
        );
    };
    let (_dir, daemon, face, sim, stop) = start().await;
    let run = move |extra: Vec<String>| {
        let cli = cli.clone();
        let mut args: Vec<String> = [
            "--sip-host",
            &face.to_string(),
            "--sip-user",
            "kiosk1",
            "--sip-pass",
            "kiosk-pw",
            "--institution",
            "DEMO",
            "--patron-barcode",
            "P1001",
            "--patron-password",
            "1234",
            "--item-barcode",
            "I0001",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.extend(extra);
        tokio::task::spawn_blocking(move || Process::new(cli).args(args).output().unwrap())
    };
    let messages = |list: &[&str]| -> Vec<String> {
        list.iter()
            .flat_map(|m| ["--message-type".to_owned(), (*m).to_owned()])
            .collect()
    };
    let mut once = messages(&[
        "item-information",
        "patron-status",
        "patron-information",
        "checkout",
        "checkin",
    ]);
    once.push("--print-raw-messages".into());
    let output = run(once).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "sip2-client-cli failed");
    assert!(
        stdout.contains("Login OK") && stdout.contains("SC Status OK"),
        "{stdout}"
    );
    // Its checkout has no AC and its frames no trailer: the face takes them; the loan
    // and the return reached the ILS once each.
    let log = sim.transactions();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|t| t.ok), "{log:?}");

    let mut parallel = messages(&["item-information", "patron-status"]);
    parallel.extend(["--parallel", "16", "--repeat", "25", "--quiet"].map(str::to_owned));
    let output = run(parallel).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("sip2-client-cli, 16 kiosks: {stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("800 messages processed"), "{stdout}");
    daemon.shutdown("test").await.unwrap();
    stop.cancel();
}
