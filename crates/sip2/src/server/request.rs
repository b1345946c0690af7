//! Lenient request parsing for the server face (PROTOCOLS.md §1.9, "server face").
//!
//! Kiosks in the field send frames that strict servers refuse; the face takes them:
//!
//! * fields in any order, repeated, unknown two-character IDs, required fields missing
//!   (`AC` in 11 is left out by the Rust `sip2` client) — the frame layer keeps them all;
//! * a blank `nb due date`, or one left out altogether: when a delimiter shows up inside
//!   the fixed part, the fixed fields after the last one that was sent are taken as blank
//!   and the variable fields start where the first field ID is;
//! * a frame that ends inside its fixed part: the rest of the fixed part is taken as blank;
//! * with or without the `AY`/`AZ` trailer; a last field without its delimiter.
//!
//! The checksum verdict is always the one of the bytes as received. What the face sends
//! back is exact (see [`super::session`]).

use bytes::Bytes;

use crate::checksum;
use crate::frame::{ChecksumStatus, Command, FixedKind, FrameError, Message, WireFormat};

/// A request as the face understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The message (fixed part possibly repaired, see the module docs).
    pub message: Message,
    /// The checksum verdict over the bytes as received.
    pub checksum: ChecksumStatus,
    /// The frame as received (without terminator), for duplicate detection.
    pub raw: Bytes,
    /// What was repaired to accept it, if anything.
    pub repair: Option<Repair>,
}

/// A repair the parser made to accept a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The frame ended inside the fixed part; this many characters were taken as blank.
    FixedPadded {
        /// Blank characters added.
        blanks: usize,
    },
    /// Fixed fields were left out before the variable fields (e.g. no `nb due date`).
    FixedOmitted {
        /// The first fixed field that was missing.
        from: &'static str,
    },
}

/// Why a frame is not a request the face can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The frame itself is unreadable.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame is a response (ACS → SC), not a request.
    #[error("{0} is a response, not a request")]
    NotARequest(Command),
}

/// `(body end, trailer start)`: the trailer is `AY<d>AZ<hhhh>` or `AZ<hhhh>` at the very end.
fn trailer_start(raw: &[u8]) -> usize {
    let n = raw.len();
    let Some(az) = n.checked_sub(6) else {
        return n;
    };
    if raw.get(az..az + 2) != Some(b"AZ".as_slice())
        || raw.get(az + 2..).and_then(checksum::parse).is_none()
    {
        return n;
    }
    match az.checked_sub(3) {
        Some(ay)
            if raw.get(ay..ay + 2) == Some(b"AY".as_slice())
                && raw.get(ay + 2).is_some_and(u8::is_ascii_digit) =>
        {
            ay
        }
        _ => az,
    }
}

/// Parses one raw request frame (no terminator, no leading junk) leniently.
pub fn parse_request(raw: &[u8], format: &WireFormat) -> Result<Request, RequestError> {
    let finish = |decoded: crate::frame::Decoded, repair| {
        if !decoded.message.command.is_request() {
            return Err(RequestError::NotARequest(decoded.message.command));
        }
        Ok(Request {
            message: decoded.message,
            checksum: decoded.checksum,
            raw: Bytes::copy_from_slice(raw),
            repair,
        })
    };
    if let Some(command) = truncated(raw, *format) {
        if let Some((repaired, from)) = repair_omitted(raw, *format) {
            let checksum = original_checksum(raw);
            return finish(
                with_checksum(repaired, checksum),
                Some(Repair::FixedOmitted { from }),
            );
        }
        let (repaired, blanks) = repair_truncated(raw, *format, command)?;
        return finish(
            with_checksum(repaired, original_checksum(raw)),
            Some(Repair::FixedPadded { blanks }),
        );
    }
    match Message::decode(raw, format) {
        Ok(decoded) => {
            if (decoded.message.fixed.contains(format.delimiter)
                || !dates_look_right(&decoded.message))
                && let Some((repaired, from)) = repair_omitted(raw, *format)
            {
                return finish(
                    with_checksum(repaired, decoded.checksum),
                    Some(Repair::FixedOmitted { from }),
                );
            }
            finish(decoded, None)
        }
        Err(error) => match repair_omitted(raw, *format) {
            Some((repaired, from)) => finish(
                with_checksum(repaired, original_checksum(raw)),
                Some(Repair::FixedOmitted { from }),
            ),
            None => Err(error.into()),
        },
    }
}

fn with_checksum(
    mut decoded: crate::frame::Decoded,
    checksum: ChecksumStatus,
) -> crate::frame::Decoded {
    decoded.checksum = checksum;
    decoded
}

/// Whether every date-time fixed field holds digits and blanks where the date and the
/// time go (§1.3 `YYYYMMDDZZZZHHMMSS`). A field ID or text there means fixed fields were
/// left out and variable fields slid into their place.
fn dates_look_right(message: &Message) -> bool {
    let mut chars = message.fixed.chars();
    message.command.fixed_layout().iter().all(|spec| {
        let field: Vec<char> = chars.by_ref().take(spec.len).collect();
        spec.kind != FixedKind::DateTime
            || field
                .iter()
                .enumerate()
                .all(|(i, c)| (8..12).contains(&i) || c.is_ascii_digit() || *c == ' ')
    })
}

/// The command of a frame whose body (trailer aside) ends inside its fixed part.
fn truncated(raw: &[u8], format: WireFormat) -> Option<Command> {
    let body = raw.get(..trailer_start(raw))?;
    let text = format.encoding.decode(body).ok()?;
    let command = Command::from_code(text.get(..2)?)?;
    let fixed_len: usize = command.fixed_layout().iter().map(|s| s.len).sum();
    (text.chars().count() < 2 + fixed_len).then_some(command)
}

/// The checksum verdict of the bytes as received.
fn original_checksum(raw: &[u8]) -> ChecksumStatus {
    let start = trailer_start(raw);
    if start == raw.len() {
        return ChecksumStatus::Absent;
    }
    let az_end = raw.len() - 4;
    let printed = raw.get(az_end..).and_then(checksum::parse).unwrap_or(0);
    let computed = checksum::compute(raw.get(..az_end).unwrap_or_default());
    if printed == computed {
        ChecksumStatus::Valid
    } else {
        ChecksumStatus::Invalid { printed, computed }
    }
}

/// Rebuilds a frame from repaired text plus the original trailer bytes, and decodes it.
fn redecode(
    text: &str,
    trailer: &[u8],
    format: WireFormat,
) -> Result<crate::frame::Decoded, FrameError> {
    let mut bytes = format.encoding.encode(text);
    bytes.extend_from_slice(trailer);
    Message::decode(&bytes, &format)
}

/// The frame ended inside the fixed part: blanks for the rest.
fn repair_truncated(
    raw: &[u8],
    format: WireFormat,
    command: Command,
) -> Result<(crate::frame::Decoded, usize), FrameError> {
    let start = trailer_start(raw);
    let (body, trailer) = raw.split_at(start);
    let text = format.encoding.decode(body)?;
    let fixed_len: usize = command.fixed_layout().iter().map(|s| s.len).sum();
    let have = text.chars().count().saturating_sub(2);
    let blanks = fixed_len.saturating_sub(have);
    let padded = format!("{text}{}", " ".repeat(blanks));
    Ok((redecode(&padded, trailer, format)?, blanks))
}

/// A delimiter inside the fixed part: fixed fields were left out. Finds the last fixed
/// field boundary after which a field ID (two uppercase letters) starts and before which
/// no delimiter appears, and blanks the fixed fields from there.
fn repair_omitted(raw: &[u8], format: WireFormat) -> Option<(crate::frame::Decoded, &'static str)> {
    let start = trailer_start(raw);
    let (body, trailer) = raw.split_at(start);
    let text = format.encoding.decode(body).ok()?;
    let code: String = text.chars().take(2).collect();
    let command = Command::from_code(&code)?;
    let layout = command.fixed_layout();
    let after: Vec<char> = text.chars().skip(2).collect();
    let fixed_len: usize = layout.iter().map(|s| s.len).sum();
    let mut boundary = fixed_len;
    for spec in layout.iter().rev() {
        boundary -= spec.len;
        let prefix = after.get(..boundary)?;
        if prefix.contains(&format.delimiter) {
            continue;
        }
        let id_starts = matches!(
            (after.get(boundary), after.get(boundary + 1)),
            (Some(a), Some(b)) if a.is_ascii_uppercase() && b.is_ascii_uppercase()
        );
        if !id_starts {
            continue;
        }
        let rest: String = after.get(boundary..)?.iter().collect();
        let prefix: String = prefix.iter().collect();
        let repaired = format!("{code}{prefix}{}{rest}", " ".repeat(fixed_len - boundary));
        if let Ok(decoded) = redecode(&repaired, trailer, format) {
            return Some((decoded, spec.name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FieldId, Trailer};

    fn parse(frame: &str) -> Result<Request, RequestError> {
        parse_request(frame.as_bytes(), &WireFormat::default())
    }

    #[test]
    fn a_checkout_without_its_nb_due_date_is_read_with_a_blank_one() {
        let r = parse("11YN20240102    120000AOX|AAP1|ABI1|").unwrap();
        assert_eq!(r.message.fixed, "YN20240102    120000                  ");
        assert_eq!(r.message.field(FieldId::AB), Some("I1"));
        assert_eq!(
            r.repair,
            Some(Repair::FixedOmitted {
                from: "nb due date"
            })
        );
    }

    #[test]
    fn a_frame_cut_in_its_fixed_part_is_padded_and_keeps_its_checksum_verdict() {
        let r = parse("9900AY1AZFD6A").unwrap();
        assert_eq!(r.message.command, Command::ScStatus);
        assert_eq!(r.message.fixed, "00      ");
        assert_eq!(r.message.trailer, Trailer::Sequence(1));
        assert!(matches!(
            r.checksum,
            ChecksumStatus::Invalid { .. } | ChecksumStatus::Valid
        ));
        assert_eq!(r.repair, Some(Repair::FixedPadded { blanks: 6 }));
    }

    #[test]
    fn a_response_code_is_not_a_request() {
        assert_eq!(
            parse("941").unwrap_err(),
            RequestError::NotARequest(Command::LoginResponse)
        );
    }

    #[test]
    fn a_checksum_over_the_original_bytes_decides_validity() {
        let r = parse("9900401.00AY1AZFCA5").unwrap();
        assert_eq!(r.checksum, ChecksumStatus::Valid);
        let bad = parse("9900401.00AY1AZFCA4").unwrap();
        assert!(matches!(bad.checksum, ChecksumStatus::Invalid { .. }));
    }
}
