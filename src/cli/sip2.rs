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

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rfidgw_sip2::client::{Connector, Direction, HoldMode, Requests, Sip2Error, Tap, WireFrame};
use rfidgw_sip2::codec::{ChecksumPolicy, Sip2Codec, Terminator};
use rfidgw_sip2::dialect::{Profile, Sip2PeerConfig};
use rfidgw_sip2::frame::{ChecksumStatus, FieldId, Message, WireFormat};
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

/// A variable field's JSON key: its code with its name in words (`AO institution_id`), so
/// that both the code an ILS's documentation uses and its meaning show; the code alone for
/// a field SIP2 2.00 and the known extensions do not define.
fn field_key(id: FieldId) -> String {
    match id.key() {
        Some(name) => format!("{id} {name}"),
        None => id.to_string(),
    }
}

/// A message as JSON: command, name, fixed fields by name, variable fields by code and
/// name (repeated ones as arrays, in wire order), sequence number (AY).
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
        let id = field_key(field.id);
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

/// One frame for `--raw`, as lines for people: the bytes (printable ASCII as is, others as
/// `\xNN`; passwords as `***`), the text they carry in the peer's character set when that
/// differs (a transliterated or non-ASCII name), the message as built when the wire says
/// something else, and the trailer: sequence number, printed and computed checksum, and
/// why a received frame was not accepted.
fn show_wire(frame: &WireFrame<'_>, format: WireFormat) -> String {
    let arrow = match frame.direction {
        Direction::Sent => ">>",
        Direction::Received => "<<",
    };
    let bytes = frame.bytes;
    let read = Message::decode(bytes, &format).ok();
    // Where the variable fields start: after the command code and the fixed part.
    let fixed_end = read.as_ref().map_or(0, |d| 2 + d.message.fixed.len());
    let delimiter = u8::try_from(format.delimiter).unwrap_or(b'|');
    let mut lines = vec![format!(
        "{arrow} {}",
        redact(bytes, fixed_end, delimiter, escape)
    )];
    if let Some(decoded) = &read {
        let text = redact(bytes, fixed_end, delimiter, |segment| {
            format
                .encoding
                .decode(segment)
                .unwrap_or_else(|_| String::from_utf8_lossy(segment).into_owned())
        });
        if !bytes.is_ascii() {
            lines.push(format!("   text ({}): {text}", format.encoding));
        }
        if let Some(built) = frame.message {
            let wire = decoded.message.to_string();
            let built = built.to_string();
            if frame.direction == Direction::Sent && wire != built {
                lines.push(format!("   as built (before the character set): {built}"));
            }
        }
    }
    lines.push(format!(
        "   {}",
        trailer(bytes, read.as_ref(), frame.rejected)
    ));
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The trailer of a frame in words: `AY 1 · AZ F00A ok`.
fn trailer(
    bytes: &[u8],
    read: Option<&rfidgw_sip2::frame::Decoded>,
    rejected: Option<&rfidgw_sip2::FrameError>,
) -> String {
    let mut parts = Vec::new();
    if let Some(rfidgw_sip2::Trailer::Sequence(seq)) = read.map(|d| d.message.trailer) {
        parts.push(format!("AY {seq}"));
    }
    let checksum_len = rfidgw_sip2::checksum::CHECKSUM_LEN;
    let az = bytes.len().checked_sub(checksum_len + 2);
    let printed = az
        .filter(|&at| bytes.get(at..at + 2) == Some(b"AZ".as_slice()))
        .and_then(|at| {
            let printed = rfidgw_sip2::checksum::parse(bytes.get(at + 2..)?)?;
            let computed = rfidgw_sip2::checksum::compute(bytes.get(..at + 2)?);
            Some((printed, computed))
        });
    match printed {
        Some((printed, computed)) if printed == computed => {
            parts.push(format!("AZ {printed:04X} ok"));
        }
        Some((printed, computed)) => {
            parts.push(format!("AZ {printed:04X} wrong (computed {computed:04X})"));
        }
        None => parts.push("no checksum".to_owned()),
    }
    let mut line = parts.join(" · ");
    if let Some(problem) = rejected {
        // The 97 that asks for it again shows as the next frame sent.
        let _ = write!(line, " — not accepted: {problem}");
    }
    line
}

/// Bytes as text: printable ASCII as is, anything else as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7F).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

/// A frame shown segment by segment (`show`), the value of every password field (CO, AC,
/// AD) replaced by `***`: the fixed part up to `fixed_end`, then each variable field up to
/// its delimiter.
fn redact(bytes: &[u8], fixed_end: usize, delimiter: u8, show: impl Fn(&[u8]) -> String) -> String {
    let fixed_end = fixed_end.min(bytes.len());
    let (fixed, fields) = bytes.split_at(fixed_end);
    let mut out = show(fixed);
    for (i, field) in fields.split(|&b| b == delimiter).enumerate() {
        if i > 0 {
            out.push(char::from(delimiter));
        }
        let secret = field
            .get(..2)
            .and_then(|id| FieldId::new(std::str::from_utf8(id).ok()?))
            .is_some_and(FieldId::is_secret);
        if secret {
            out.push_str(&show(field.get(..2).unwrap_or_default()));
            out.push_str("***");
        } else {
            out.push_str(&show(field));
        }
    }
    out
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
    let format = connector.dialect().wire_format();
    let tap: Option<Tap> = args.raw.then(|| {
        Arc::new(move |frame: &WireFrame<'_>| eprint!("{}", show_wire(frame, format))) as Tap
    });
    let (mut session, _, status) = connector
        .connect_answered(tap.clone())
        .await
        .with_context(|| format!("SIP2 session with {} failed", connector.addr()))?;
    let Some((request, item)) = request_for(&args.command, connector.requests()) else {
        // The 98 as read, so that its sequence number and every field show.
        return Ok(message_json(&status, false));
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
        assert_eq!(hidden["fields"]["CO login_password"], "***");
        assert_eq!(hidden["checksum_valid"], true);
        let shown = decode(frame, Encoding::Utf8, true).unwrap();
        assert_eq!(shown["fields"]["CO login_password"], "LoginPassword");
    }

    #[test]
    fn fields_are_keyed_by_code_and_name_in_words() {
        for (id, key) in [
            ("AO", "AO institution_id"),
            ("AB", "AB item_identifier"),
            ("CN", "CN login_user_id"),
            ("BE", "BE e_mail_address"),
            ("CR", "CR collection_code"),
            ("PB", "PB birth_date"),
            ("ZZ", "ZZ"),
        ] {
            assert_eq!(field_key(FieldId::new(id).unwrap()), key);
        }
    }

    #[test]
    fn the_documented_field_table_is_the_codes_own() {
        let doc = include_str!("../../docs/sip2-fields.md");
        let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(
            rows.len(),
            rfidgw_sip2::frame::FIELD_NAMES.len(),
            "one row per code"
        );
        for (id, name) in rfidgw_sip2::frame::FIELD_NAMES {
            let row = format!("| `{id}` | {name} | `{}` |", field_key(*id));
            assert!(
                rows.contains(&row.as_str()),
                "docs/sip2-fields.md lacks {row}"
            );
        }
    }

    fn sent(bytes: &[u8], built: &Message, format: WireFormat) -> String {
        show_wire(
            &WireFrame {
                direction: Direction::Sent,
                bytes,
                message: Some(built),
                rejected: None,
            },
            format,
        )
    }

    #[test]
    fn the_wire_view_shows_the_bytes_the_text_and_what_was_built() {
        let mut built = Message::decode("941AFCaf\u{e9}|".as_bytes(), &WireFormat::default())
            .unwrap()
            .message;
        built.trailer = rfidgw_sip2::Trailer::Sequence(3);
        // (character set, bytes line, extra lines that must show)
        let cases = [
            (
                Encoding::Utf8,
                ">> 941AFCaf\\xC3\\xA9|AY3AZ",
                vec!["text (utf8): 941AFCaf\u{e9}|AY3AZ"],
            ),
            (
                Encoding::Cp850,
                ">> 941AFCaf\\x82|AY3AZ",
                vec!["text (cp850): 941AFCaf\u{e9}|AY3AZ"],
            ),
            (
                Encoding::Ascii,
                ">> 941AFCafe|AY3AZ",
                vec!["as built (before the character set): 941AFCaf\u{e9}|AY3AZ"],
            ),
        ];
        for (encoding, first, extra) in cases {
            let format = WireFormat {
                encoding,
                ..WireFormat::default()
            };
            let bytes = built.encode(&format).unwrap();
            let shown = sent(&bytes, &built, format);
            assert!(shown.starts_with(first), "{encoding}: {shown}");
            for line in extra {
                assert!(shown.contains(line), "{encoding}: {shown}");
            }
            assert!(shown.contains("AY 3 · AZ "), "{shown}");
            assert!(shown.trim_end().ends_with(" ok"), "{shown}");
        }
    }

    #[test]
    fn the_wire_view_hides_passwords_and_names_a_wrong_checksum() {
        let format = WireFormat::default();
        let login = b"9300CNLoginUserID|COLoginPassword|CPLocationCode|AY5AZEC7B";
        let built = Message::decode(login, &format).unwrap().message;
        let shown = sent(login, &built, format);
        assert!(shown.starts_with(">> 9300CNLoginUserID|CO***|CPLocationCode|AY5AZEC7B"));
        assert!(!shown.contains("LoginPassword"), "{shown}");
        assert!(shown.contains("AY 5 · AZ EC7B ok"), "{shown}");

        let problem = rfidgw_sip2::FrameError::Empty;
        let wrong = show_wire(
            &WireFrame {
                direction: Direction::Received,
                bytes: b"941AY3AZFDFB",
                message: None,
                rejected: Some(&problem),
            },
            format,
        );
        assert!(wrong.starts_with("<< 941AY3AZFDFB\n"), "{wrong}");
        assert!(
            wrong.contains("AY 3 · AZ FDFB wrong (computed FDFA) — not accepted"),
            "{wrong}"
        );
        let bare = sent(
            b"941",
            &Message::decode(b"941", &format).unwrap().message,
            format,
        );
        assert!(bare.contains("no checksum"), "{bare}");
    }

    #[test]
    fn a_command_of_no_known_message_is_an_error() {
        assert!(decode("4242", Encoding::Utf8, false).is_err());
    }
}
