//! Checks of what `rfidgw run` would only find out while starting: files it must read
//! (token files, TLS certificates and keys, SIP2 account passwords), the state directory
//! and store it must write, and the ports it must bind. `check-config` runs them all, so a
//! config that passes it also starts; `run` runs them before starting anything, so every
//! problem shows at once instead of one per attempt.

use std::io::ErrorKind;
use std::net::{TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// What the checks found: problems stop the daemon from starting, warnings do not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Each a config key (or path) and what is wrong; `run` would fail.
    pub problems: Vec<String>,
    /// Each worth knowing; `run` would start.
    pub warnings: Vec<String>,
}

/// Whether to try binding the configured ports (`check-config` does; `run` binds them
/// itself a moment later and names the key if that fails).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ports {
    /// Try binding each listening address.
    Check,
    /// Leave them to the start.
    Skip,
}

/// Runs every check on a loaded config. `text` is the file's text (for the empty-file
/// warning).
pub fn check(config: &Config, text: &str, ports: Ports) -> Findings {
    let mut found = Findings::default();
    if !has_settings(text) {
        found.warnings.push(
            "the file sets nothing: every setting is its default (no devices, no stations, \
             the API on 127.0.0.1:8080 without tokens)"
                .into(),
        );
    } else if config.devices.is_empty() {
        found
            .warnings
            .push("devices: none configured; the daemon only serves its API".into());
    }
    check_state(config, &mut found);
    if config.api.enabled {
        if let Err(e) =
            crate::api::auth::Auth::from_config(&config.api.tokens, config.api.rate_limit)
        {
            found.problems.push(e.to_string());
        }
        if let Some(tls) = &config.api.tls
            && let Err(e) = crate::api::tls::acceptor(tls)
        {
            found.problems.push(e.to_string());
        }
        if ports == Ports::Check {
            check_port("api.listen", &config.api.listen.to_string(), &mut found);
        }
    }
    if let Some(face) = &config.sip2_server {
        if let Err((key, problem)) = face.server_accounts(Path::new("")) {
            found.problems.push(format!("{key}: {problem}"));
        }
        if let Some(tls) = &face.tls
            && let Err(e) = rfidgw_sip2::server::ServerTls::new(tls)
        {
            found.problems.push(format!("sip2_server.tls: {e}"));
        }
        if ports == Ports::Check {
            check_port("sip2_server.listen", &face.listen, &mut found);
        }
    }
    if let Some(simulator) = &config.ils.simulator
        && ports == Ports::Check
    {
        check_port("ils.simulator.listen", &simulator.listen, &mut found);
    }
    found
}

/// Whether a TOML text has any key or table (not only blanks and comments).
fn has_settings(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .any(|line| !line.is_empty() && !line.starts_with('#'))
}

/// The state directory must be (or become) a writable directory, and an existing store
/// file a writable SQLite database.
fn check_state(config: &Config, found: &mut Findings) {
    let dir = config.state_dir();
    let store = config.store_path();
    let key = "daemon.data_dir";
    match std::fs::metadata(&dir) {
        Ok(meta) if !meta.is_dir() => found
            .problems
            .push(format!("{key}: {} is not a directory", dir.display())),
        Ok(_) => {
            if let Err(e) = probe_write(&dir) {
                found.problems.push(format!(
                    "{key}: cannot write in {} ({e}); the store lives there",
                    dir.display()
                ));
            }
        }
        Err(_) => {
            // systemd's StateDirectory= makes it for the service; by hand, the daemon
            // creates it when the nearest existing parent lets this user write.
            let parent = nearest_existing(&dir);
            if parent.as_ref().is_none_or(|p| probe_write(p).is_err()) {
                found.warnings.push(format!(
                    "{key}: {} does not exist and this user cannot create it (under systemd, \
                     StateDirectory= creates it for the service)",
                    dir.display()
                ));
            }
        }
    }
    let Ok(meta) = std::fs::metadata(&store) else {
        return;
    };
    if !meta.is_file() {
        found
            .problems
            .push(format!("store.file: {} is not a file", store.display()));
        return;
    }
    let mut header = [0u8; 16];
    let read = std::fs::File::open(&store).and_then(|mut f| {
        use std::io::Read as _;
        f.read(&mut header)
    });
    match read {
        Err(e) => found
            .problems
            .push(format!("store.file: cannot read {} ({e})", store.display())),
        Ok(n) if n > 0 && header[..n] != b"SQLite format 3\0"[..n] => {
            found.problems.push(format!(
                "store.file: {} is not an SQLite database",
                store.display()
            ));
        }
        Ok(_) => {
            if let Err(e) = std::fs::OpenOptions::new().write(true).open(&store) {
                found.problems.push(format!(
                    "store.file: cannot write {} ({e})",
                    store.display()
                ));
            }
        }
    }
}

/// The closest ancestor of `path` that exists.
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .map(Path::to_path_buf)
        .or_else(|| Some(PathBuf::from(".")))
}

/// Creates and removes a file in `dir`: the one portable way to know this user may write
/// there (permission bits say nothing about ACLs, read-only mounts or root).
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".rfidgw-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Binds `addr` for a moment. In use is a warning (a running daemon holds it); anything
/// else (no such address here, a port below 1024 without the right) is a problem.
fn check_port(key: &str, addr: &str, found: &mut Findings) {
    let resolved = match addr.to_socket_addrs() {
        Ok(mut all) => all.next(),
        Err(e) => {
            found.problems.push(format!(
                "{key}: `{addr}` is not an address to listen on ({e})"
            ));
            return;
        }
    };
    let Some(resolved) = resolved else {
        found
            .problems
            .push(format!("{key}: `{addr}` resolves to no address"));
        return;
    };
    if resolved.port() == 0 {
        return;
    }
    match TcpListener::bind(resolved) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AddrInUse => found.warnings.push(format!(
            "{key}: {addr} is in use now (by the running daemon?); `run` needs it free"
        )),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => found.problems.push(format!(
            "{key}: this user may not listen on {addr} ({e}); ports below 1024 need \
             CAP_NET_BIND_SERVICE"
        )),
        Err(e) => found
            .problems
            .push(format!("{key}: cannot listen on {addr} ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, extra: &str) -> (Config, String) {
        let text = format!("[daemon]\ndata_dir = \"{}\"\n{extra}", dir.display());
        (Config::parse("t.toml", &text, []).unwrap(), text)
    }

    #[test]
    fn a_writable_state_directory_and_free_ports_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (config, text) = config(dir.path(), "[api]\nlisten = \"127.0.0.1:0\"\n");
        let found = check(&config, &text, Ports::Check);
        assert!(found.problems.is_empty(), "{found:?}");
    }

    #[test]
    fn an_empty_file_is_warned_about() {
        let config = Config::parse("t.toml", "# nothing\n\n", []).unwrap();
        let found = check(&config, "# nothing\n\n", Ports::Skip);
        assert!(found.warnings[0].contains("sets nothing"), "{found:?}");
    }

    #[test]
    fn what_start_would_refuse_is_found_before() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rfidgw.db"), b"not a database at all, no").unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let (config, text) = config(
            dir.path(),
            &format!(
                "[api]\nlisten = \"127.0.0.1:{port}\"\n[[api.tokens]]\nname = \"desk\"\nrole = \"read\"\n\
                 token_file = \"{}/missing.token\"\n[api.tls]\ncert_file = \"/nonexistent/cert.pem\"\n\
                 key_file = \"/nonexistent/key.pem\"\n",
                dir.path().display()
            ),
        );
        let found = check(&config, &text, Ports::Check);
        let all = found.problems.join("\n");
        assert!(all.contains("is not an SQLite database"), "{all}");
        assert!(all.contains("api.tokens[0].token_file"), "{all}");
        assert!(all.contains("api.tls.cert_file"), "{all}");
        assert!(
            found
                .warnings
                .iter()
                .any(|w| w.contains("api.listen") && w.contains("in use")),
            "{found:?}"
        );
    }
}
