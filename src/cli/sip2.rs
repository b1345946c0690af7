//! `rfidgw sip2 …` (issue 4): decode a SIP2 frame, or log in to a SIP2 server and run one
//! real exchange, printing the response as one JSON object.
//!
//! ```text
//! rfidgw sip2 decode '9900401.00AY1AZFCA5'
//! rfidgw sip2 --addr ils:6001 --user sc --pass pw checkout P1001 I0001
//! rfidgw sip2 checkout P1001 I0001 --addr ils:6001 --user sc   # options go anywhere
//! ```
//!
//! A response with `ok = 0` is a completed exchange (exit 0, the JSON says why); a failed
//! exchange (connect, login, timeout, unreadable answer) exits non-zero with the reason.
//! Passwords (CO, AC, AD) print as `***`, also with `--raw`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rfidgw_sip2::client::{Connector, Direction, HoldMode, Requests, Sip2Error, Tap};
use rfidgw_sip2::codec::{ChecksumPolicy, Sip2Codec, Terminator};
use rfidgw_sip2::dialect::{Profile, Sip2PeerConfig};
use rfidgw_sip2::frame::{ChecksumStatus, Message, WireFormat};
use rfidgw_sip2::{Encoding, Secret, TlsConfig};
use serde_json::{Map, Value, json};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// SIP2 arguments.
// Command-line switches are naturally independent booleans.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, clap::Args)]
pub struct Sip2Args {
    /// SIP2 server `host:port` (needed for every subcommand but `decode`).
    #[arg(long, global = true)]
    addr: Option<String>,
    /// Login user id (CN).
    #[arg(long, global = true)]
    user: Option<String>,
    /// Login password (CO); never printed. Default: env RFIDGW_SIP2_PASS (keeps it out of `ps`).
    #[arg(long, global = true)]
    pass: Option<String>,
    /// Institution id (AO).
    #[arg(long, global = true, default_value = "")]
    institution: String,
    /// Location code (CP) sent at login; also the current location (AP) of a checkin.
    #[arg(long, global = true)]
    location: Option<String>,
    /// Terminal password (AC); never printed. Default: env RFIDGW_SIP2_TERMINAL_PASS.
    #[arg(long, global = true)]
    terminal_pass: Option<String>,
    /// Dialect preset: generic, koha, evergreen, folio or symphony.
    #[arg(long, global = true, default_value = "generic")]
    profile: Profile,
    /// Character set: utf8, cp850, latin1, gb18030, gbk or ascii (default: from the profile).
    #[arg(long, global = true)]
    encoding: Option<Encoding>,
    /// Send frames without AY/AZ.
    #[arg(long, global = true)]
    no_error_detection: bool,
    /// Accept responses with a wrong AZ checksum.
    #[arg(long, global = true)]
    lenient: bool,
    /// Do not send 93 Login first.
    #[arg(long, global = true)]
    no_login: bool,
    /// Per-request timeout in milliseconds (default: the ACS's 98 timeout period).
    #[arg(long, global = true)]
    timeout_ms: Option<u64>,
    /// Connect over TLS trusting this CA file (PEM).
    #[arg(long, global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Connect over TLS trusting a certificate with this SHA-256 (hex).
    #[arg(long, global = true)]
    tls_pin: Option<String>,
    /// TLS server name (default: the host of --addr).
    #[arg(long, global = true)]
    tls_name: Option<String>,
    /// Show the frames on stderr (passwords as ***).
    #[arg(long, global = true)]
    raw: bool,
    #[command(subcommand)]
    command: Sip2Command,
}

#[derive(Debug, clap::Subcommand)]
enum Sip2Command {
    /// Parse one frame and print it as JSON (no network).
    Decode {
        /// The frame, with or without its trailing CR.
        frame: String,
        /// Show CO/AC/AD values instead of ***.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Log in and print the ACS status (99 → 98).
    Status,
    /// Patron information (63 → 64).
    Patron {
        /// Patron identifier (AA).
        patron: String,
        /// Patron PIN (AD).
        #[arg(long)]
        pin: Option<String>,
        /// Item list to return: 0 holds, 1 overdue, 2 charged, 3 fines, 4 recalls, 5 unavailable holds.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=5))]
        summary: Option<u8>,
    },
    /// Item information (17 → 18).
    Item {
        /// Item identifier (AB).
        item: String,
    },
    /// Check an item out (11 → 12).
    Checkout {
        /// Patron identifier (AA).
        patron: String,
        /// Item identifier (AB).
        item: String,
        /// Patron PIN (AD).
        #[arg(long)]
        pin: Option<String>,
        /// Acknowledge a fee (BO=Y).
        #[arg(long)]
        fee_ack: bool,
    },
    /// Check an item in (09 → 10).
    Checkin {
        /// Item identifier (AB).
        item: String,
    },
    /// Renew an item (29 → 30).
    Renew {
        /// Patron identifier (AA).
        patron: String,
        /// Item identifier (AB).
        item: String,
        /// Patron PIN (AD).
        #[arg(long)]
        pin: Option<String>,
    },
    /// Place (or cancel) a hold (15 → 16).
    Hold {
        /// Patron identifier (AA).
        patron: String,
        /// Item identifier (AB).
        item: String,
        /// Cancel the hold instead of placing it.
        #[arg(long)]
        cancel: bool,
        /// Pickup location (BS).
        #[arg(long)]
        pickup: Option<String>,
    },
    /// Pay a fee (37 → 38).
    Fee {
        /// Patron identifier (AA).
        patron: String,
        /// Amount (BV), e.g. 2.50.
        amount: String,
        /// Currency (ISO 4217).
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Fee type (§1.7: 01 other … 09 hold fee).
        #[arg(long, default_value_t = 1)]
        fee_type: u32,
        /// Payment type: 0 cash, 1 VISA, 2 credit card.
        #[arg(long, default_value_t = 0)]
        payment_type: u32,
    },
    /// End the patron session (35 → 36).
    End {
        /// Patron identifier (AA).
        patron: String,
    },
}

/// Runs a SIP2 subcommand.
pub fn run(args: Sip2Args) -> anyhow::Result<ExitCode> {
    if let Sip2Command::Decode {
        frame,
        show_secrets,
    } = &args.command
    {
        let encoding = args.encoding.unwrap_or_default();
        let value = decode(frame, encoding, *show_secrets)?;
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let value = runtime.block_on(exchange(args))?;
    println!("{value}");
    Ok(ExitCode::SUCCESS)
}

/// Parses one frame given on the command line.
fn decode(frame: &str, encoding: Encoding, show_secrets: bool) -> anyhow::Result<Value> {
    let format = WireFormat {
        encoding,
        ..WireFormat::default()
    };
    let mut buf = BytesMut::from(encoding.encode(frame).as_slice());
    if !buf.ends_with(b"\r") && !buf.ends_with(b"\r\n") {
        buf.extend_from_slice(b"\r");
    }
    let mut codec = Sip2Codec::new(format, Terminator::Cr, ChecksumPolicy::Lenient);
    let decoded = codec
        .decode(&mut buf)?
        .context("no SIP2 frame in the input")?
        .context("not a valid SIP2 frame")?;
    let mut value = message_json(&decoded.message, show_secrets);
    if let Value::Object(map) = &mut value {
        let valid = match decoded.checksum {
            ChecksumStatus::Absent => Value::Null,
            ChecksumStatus::Valid => Value::Bool(true),
            ChecksumStatus::Invalid { computed, .. } => {
                map.insert("checksum_expected".into(), json!(format!("{computed:04X}")));
                Value::Bool(false)
            }
        };
        map.insert("checksum_valid".into(), valid);
    }
    Ok(value)
}

/// `fixed` names as JSON keys: `transaction date` → `transaction_date`.
fn key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// A message as JSON: command, name, fixed fields by name, variable fields by id (repeated
/// ones as arrays, in wire order), sequence number.
fn message_json(message: &Message, show_secrets: bool) -> Value {
    let mut fixed = Map::new();
    for (name, raw) in message.fixed_fields() {
        fixed.insert(key(name), Value::String(raw.to_owned()));
    }
    let mut fields = Map::new();
    for field in &message.fields {
        let value = if show_secrets {
            field.value.clone()
        } else {
            field.display_value().to_owned()
        };
        let id = field.id.to_string();
        let repeated = message.fields.iter().filter(|f| f.id == field.id).count() > 1;
        match fields.get_mut(&id) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            _ if repeated => {
                fields.insert(id, Value::Array(vec![Value::String(value)]));
            }
            _ => {
                fields.insert(id, Value::String(value));
            }
        }
    }
    let sequence = match message.trailer {
        rfidgw_sip2::Trailer::Sequence(seq) => json!(seq),
        _ => Value::Null,
    };
    json!({
        "command": message.command.code(),
        "name": message.command.name(),
        "fixed": fixed,
        "fields": fields,
        "sequence": sequence,
    })
}

fn peer_config(args: &Sip2Args) -> anyhow::Result<Sip2PeerConfig> {
    let Some(addr) = args.addr.clone() else {
        bail!("--addr HOST:PORT is required to talk to a SIP2 server");
    };
    let user = args.user.clone().unwrap_or_default();
    if user.is_empty() && !args.no_login {
        bail!("--user is required (or --no-login for servers without login)");
    }
    let pass = args
        .pass
        .clone()
        .or_else(|| std::env::var("RFIDGW_SIP2_PASS").ok())
        .unwrap_or_default();
    let mut config = Sip2PeerConfig::new(addr, user, pass);
    config.institution.clone_from(&args.institution);
    config.location.clone_from(&args.location);
    config.terminal_password = args
        .terminal_pass
        .clone()
        .or_else(|| std::env::var("RFIDGW_SIP2_TERMINAL_PASS").ok())
        .map(Secret::new);
    config.profile = args.profile;
    config.encoding = args.encoding;
    if args.no_error_detection {
        config.error_detection = Some(false);
    }
    if args.lenient {
        config.checksum = Some(ChecksumPolicy::Lenient);
    }
    if args.no_login {
        config.login_required = Some(false);
    }
    config.request_timeout_ms = args.timeout_ms;
    if args.tls_ca.is_some() || args.tls_pin.is_some() {
        config.tls = Some(TlsConfig {
            ca_file: args.tls_ca.clone(),
            pin_sha256: args.tls_pin.clone(),
            server_name: args.tls_name.clone(),
        });
    }
    Ok(config)
}

/// The request a subcommand sends, and the item whose outcome must be recovered through
/// item information if the answer is lost (checkout, checkin). `None` for `status`, which
/// the login sequence already answered.
fn request_for(command: &Sip2Command, requests: &Requests) -> Option<(Message, Option<String>)> {
    let pin = |p: &Option<String>| p.as_deref().map(Secret::new);
    Some(match command {
        Sip2Command::Decode { .. } | Sip2Command::Status => return None,
        Sip2Command::Patron {
            patron,
            pin: p,
            summary,
        } => (
            requests.patron_information(patron, pin(p).as_ref(), summary.map(usize::from)),
            None,
        ),
        Sip2Command::Item { item } => (requests.item_information(item), None),
        Sip2Command::Checkout {
            patron,
            item,
            pin: p,
            fee_ack,
        } => (
            requests.checkout(patron, item, pin(p).as_ref(), *fee_ack),
            Some(item.clone()),
        ),
        Sip2Command::Checkin { item } => (requests.checkin(item), Some(item.clone())),
        Sip2Command::Renew {
            patron,
            item,
            pin: p,
        } => (requests.renew(patron, item, pin(p).as_ref()), None),
        Sip2Command::Hold {
            patron,
            item,
            cancel,
            pickup,
        } => {
            let mode = if *cancel {
                HoldMode::Delete
            } else {
                HoldMode::Add
            };
            (
                requests.hold(mode, patron, item, pickup.as_deref(), None),
                None,
            )
        }
        Sip2Command::Fee {
            patron,
            amount,
            currency,
            fee_type,
            payment_type,
        } => (
            requests.fee_paid(patron, amount, currency, *fee_type, *payment_type, None),
            None,
        ),
        Sip2Command::End { patron } => (requests.end_patron_session(patron, None), None),
    })
}

async fn exchange(args: Sip2Args) -> anyhow::Result<Value> {
    let config = peer_config(&args)?;
    let connector = Connector::new(config)?;
    let tap: Option<Tap> = args.raw.then(|| {
        Arc::new(|direction: Direction, message: &Message| {
            let arrow = match direction {
                Direction::Sent => ">>",
                Direction::Received => "<<",
            };
            eprintln!("{arrow} {message}");
        }) as Tap
    });
    let (mut session, status) = connector
        .connect(tap.clone())
        .await
        .with_context(|| format!("SIP2 session with {} failed", connector.addr()))?;
    let Some((request, item)) = request_for(&args.command, connector.requests()) else {
        let message = rfidgw_sip2::frame::Sip2Message::to_message(&status);
        return Ok(message_json(&message, false));
    };
    let command = request.command;
    match session.transact(request).await {
        Ok(response) => Ok(message_json(&response, false)),
        Err(error) if error.breaks_connection() && item.is_some() => {
            // Never resend a checkout/checkin blindly: reconnect and ask item information.
            let item = item.unwrap_or_default();
            let recovered = async {
                let (mut fresh, _) = connector.connect(tap).await?;
                fresh
                    .transact(connector.requests().item_information(&item))
                    .await
            };
            let info = tokio::time::timeout(Duration::from_secs(30), recovered)
                .await
                .map_err(|_| Sip2Error::OutcomeUnknown {
                    command,
                    item: item.clone(),
                    reason: "reconnect timed out".into(),
                })
                .and_then(|r| r)
                .map_err(|second| Sip2Error::OutcomeUnknown {
                    command,
                    item: item.clone(),
                    reason: format!("{error}; then {second}"),
                })?;
            Ok(json!({
                "outcome": "recovered",
                "lost_request": command.code(),
                "reason": error.to_string(),
                "item_information": message_json(&info, false),
            }))
        }
        Err(error) => Err(error).with_context(|| format!("{command} failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_field_names_become_snake_case_keys() {
        assert_eq!(key("transaction date"), "transaction_date");
        assert_eq!(key("date / time sync"), "date_time_sync");
        assert_eq!(key("on-line status"), "on_line_status");
    }

    #[test]
    fn decoding_a_login_hides_the_password_unless_asked() {
        let frame = "9300CNLoginUserID|COLoginPassword|CPLocationCode|AY5AZEC7B";
        let hidden = decode(frame, Encoding::Utf8, false).unwrap();
        assert_eq!(hidden["fields"]["CO"], "***");
        assert_eq!(hidden["checksum_valid"], true);
        let shown = decode(frame, Encoding::Utf8, true).unwrap();
        assert_eq!(shown["fields"]["CO"], "LoginPassword");
    }

    #[test]
    fn a_command_of_no_known_message_is_an_error() {
        assert!(decode("4242", Encoding::Utf8, false).is_err());
    }
}
