//! `rfidgw webhook-receive`: a receiver for the daemon's webhooks, to try a
//! `[[webhooks]]` entry end to end before the real receiver exists. It checks each
//! request's signature as a receiver should (HMAC-SHA256 of the exact body, compared in
//! constant time), answers 204 to a good one and 401 to a bad one (so the daemon keeps
//! retrying, as it would against a real receiver), and prints one line per request:
//!
//! ```text
//! #42 gate_alarm signature ok {"kind":"gate_alarm","id":42,…}
//! #43 item_returned signature MISMATCH: refused (401)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::northbound::webhook::{EVENT_ID_HEADER, EVENT_KIND_HEADER, SIGNATURE_HEADER};

/// The largest request body taken (the daemon sends one event per request, far smaller).
const MAX_BODY: usize = 1024 * 1024;

/// `rfidgw webhook-receive …`
#[derive(Debug, clap::Args)]
pub struct ReceiveArgs {
    /// Where to listen; port 0 takes any free port. The address is printed on standard
    /// error at start.
    #[arg(long, default_value = "127.0.0.1:9099")]
    listen: SocketAddr,
    /// A file holding the hook's secret (its first line); without a secret, requests are
    /// taken unchecked.
    #[arg(long, conflicts_with = "secret")]
    secret_file: Option<PathBuf>,
    /// The hook's secret (prefer --secret-file or the environment: a command line is
    /// visible to every user of the machine).
    #[arg(long, env = "RFIDGW_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Exit after taking this many events (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

/// What one request gets, from its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// No secret configured: taken unchecked.
    Unsigned,
    /// The signature is the body's HMAC under the secret.
    Ok,
    /// The signature is missing, malformed or wrong.
    Mismatch,
}

impl Check {
    /// The words printed for it.
    const fn words(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned (no secret given)",
            Self::Ok => "signature ok",
            Self::Mismatch => "signature MISMATCH: refused (401)",
        }
    }
}

/// Checks a request's `X-Rfidgw-Signature` (`sha256=<hex>`) against the body.
pub fn check_signature(secret: Option<&[u8]>, signature: Option<&str>, body: &[u8]) -> Check {
    let Some(secret) = secret else {
        return Check::Unsigned;
    };
    let Some(tag) = signature
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|hex_tag| hex::decode(hex_tag).ok())
    else {
        return Check::Mismatch;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    match ring::hmac::verify(&key, body, &tag) {
        Ok(()) => Check::Ok,
        Err(_) => Check::Mismatch,
    }
}

struct Receiver {
    secret: Option<Vec<u8>>,
    taken: AtomicU64,
    count: Option<u64>,
    done: CancellationToken,
}

/// Runs `rfidgw webhook-receive`.
pub fn run(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let secret = match (&args.secret_file, args.secret) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret file {}", path.display()))?;
            let secret = text.lines().next().unwrap_or("").trim().to_owned();
            if secret.is_empty() {
                bail!("the secret file {} is empty", path.display());
            }
            Some(secret.into_bytes())
        }
        (None, secret) => secret.map(String::into_bytes),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let receiver = Arc::new(Receiver {
            secret,
            taken: AtomicU64::new(0),
            count: args.count,
            done: CancellationToken::new(),
        });
        eprintln!(
            "rfidgw webhook-receive: listening on http://{} ({})",
            listener.local_addr()?,
            if receiver.secret.is_some() {
                "checking signatures"
            } else {
                "no secret: signatures not checked"
            }
        );
        let done = receiver.done.clone();
        let app = Router::new()
            .fallback(take)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(receiver);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = done.cancelled() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            })
            .await
            .context("the receiver stopped")?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn take(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let check = check_signature(receiver.secret.as_deref(), header(SIGNATURE_HEADER), &body);
    let id = header(EVENT_ID_HEADER).unwrap_or("?");
    let kind = header(EVENT_KIND_HEADER).unwrap_or("?");
    if check == Check::Mismatch {
        println!("#{id} {kind} {}", check.words());
        return StatusCode::UNAUTHORIZED;
    }
    println!(
        "#{id} {kind} {} {}",
        check.words(),
        String::from_utf8_lossy(&body)
    );
    let taken = receiver.taken.fetch_add(1, Ordering::Relaxed) + 1;
    if receiver.count.is_some_and(|count| taken >= count) {
        receiver.done.cancel();
    }
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::northbound::webhook::signature;

    /// (secret, signature header, body received, what the receiver makes of it)
    type Case<'a> = (Option<&'a [u8]>, Option<&'a str>, &'a [u8], Check);

    #[test]
    fn signatures_are_checked_against_the_exact_body() {
        let body = br#"{"kind":"gate_alarm","id":7}"#;
        let good = signature(b"s3cret", body);
        let other_secret = signature(b"other", body);
        let table: [Case<'_>; 7] = [
            (None, None, body, Check::Unsigned),
            (None, Some("sha256=00"), body, Check::Unsigned),
            (Some(b"s3cret"), Some(&good), body, Check::Ok),
            (
                Some(b"s3cret"),
                Some(&good),
                br#"{"kind":"gate_alarm","id":8}"#,
                Check::Mismatch,
            ),
            (Some(b"s3cret"), Some(&other_secret), body, Check::Mismatch),
            (Some(b"s3cret"), None, body, Check::Mismatch),
            (
                Some(b"s3cret"),
                Some(good.trim_start_matches("sha256=")),
                body,
                Check::Mismatch,
            ),
        ];
        for (secret, header, body, want) in table {
            assert_eq!(check_signature(secret, header, body), want, "{header:?}");
        }
    }
}
