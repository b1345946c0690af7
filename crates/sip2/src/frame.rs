//! SIP2 2.00 messages as plain types, no I/O (PROTOCOLS.md §1.1, §1.5–§1.8).
//!
//! Two levels:
//!
//! * [`Message`] is one frame as it was on the wire: the two-digit [`Command`], the raw
//!   fixed-field characters, the variable fields in wire order (repeats, unknown and vendor
//!   fields kept) and the [`Trailer`]. `Message::decode` followed by `Message::encode`
//!   gives back the same bytes for every well-formed frame.
//! * One struct per message ([`Checkout`], [`CheckinResponse`], …, gathered in
//!   [`AnyMessage`]) with the fixed fields typed and the variable fields named in the spec's
//!   words. Fields a struct does not name stay in its `extra` list and are re-encoded after
//!   the named ones.

use std::fmt;
use std::fmt::Write as _;

use crate::checksum;
use crate::encoding::{Encoding, EncodingError};
use crate::secret::Secret;

/// The usual variable-field delimiter (§1.1); Koha/SIPServer and FOLIO can change it per
/// account.
pub const DEFAULT_DELIMITER: char = '|';

/// Why a frame could not be read or written. Never carries a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Nothing but the terminator arrived.
    #[error("empty SIP2 frame")]
    Empty,
    /// The first two characters are not a SIP2 2.00 command code.
    #[error("unknown SIP2 command code {code:?} at offset 0")]
    UnknownCommand {
        /// The two characters found (escaped).
        code: String,
    },
    /// The frame ends inside a fixed field.
    #[error("{command} is too short: fixed field `{field}` ends early at character {offset}")]
    Truncated {
        /// The message being read.
        command: Command,
        /// Spec name of the fixed field.
        field: &'static str,
        /// Character offset where the frame ended.
        offset: usize,
    },
    /// A fixed field holds a value its type does not allow.
    #[error("{command}: fixed field `{field}` at character {offset} holds {value:?}")]
    BadFixedField {
        /// The message being read.
        command: Command,
        /// Spec name of the fixed field.
        field: &'static str,
        /// Character offset of the field.
        offset: usize,
        /// What was there.
        value: String,
    },
    /// A variable field does not start with a two-character ID (uppercase letter or digit).
    #[error("no valid two-character field ID at character {offset}")]
    BadFieldId {
        /// Character offset where the ID should start.
        offset: usize,
    },
    /// The AZ checksum does not match the bytes (strict checking).
    #[error("bad AZ checksum: frame says {printed:04X}, bytes give {computed:04X}")]
    BadChecksum {
        /// The checksum printed in the frame.
        printed: u16,
        /// The checksum the bytes give (§1.2).
        computed: u16,
    },
    /// The bytes are not valid in the peer's character set.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// The frame is longer than the configured maximum.
    #[error("SIP2 frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLong {
        /// Bytes seen so far.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A value to be sent contains the delimiter or a line break, which would split the frame.
    #[error("field {id} contains {found:?}, which would break the frame")]
    ForbiddenCharacter {
        /// The field (`fixed` for the fixed part).
        id: String,
        /// The offending character.
        found: char,
    },
    /// The fixed part to be sent has the wrong length for its command.
    #[error("{command}: fixed part has {found} characters, the spec needs {expected}")]
    FixedLength {
        /// The message being written.
        command: Command,
        /// Sum of the spec's fixed-field lengths.
        expected: usize,
        /// Characters present.
        found: usize,
    },
    /// A typed conversion was asked for the wrong command.
    #[error("expected a {expected} message, got {found}")]
    WrongCommand {
        /// The command the caller wanted.
        expected: Command,
        /// The command received.
        found: Command,
    },
}

/// A two-character variable-field identifier (§1.6, §1.8).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId([u8; 2]);

macro_rules! field_ids {
    ($($id:ident $doc:literal,)*) => {
        impl FieldId {
            $(
                #[doc = concat!("`", stringify!($id), "` ", $doc, ".")]
                pub const $id: FieldId = FieldId(*stringify!($id).as_bytes().first_chunk::<2>().unwrap());
            )*
        }

        /// Every field id this crate knows with its name in words, as SIP2 2.00 (§1.6,
        /// §1.8) and the vendor extensions name them: `("AO", "institution id")`, …
        pub const FIELD_NAMES: &[(FieldId, &str)] = &[$((FieldId::$id, $doc),)*];
    };
}

field_ids! {
    AA "patron identifier", AB "item identifier", AC "terminal password", AD "patron password",
    AE "personal name", AF "screen message", AG "print line", AH "due date",
    AJ "title identifier", AL "blocked card message", AM "library name", AN "terminal location",
    AO "institution id", AP "current location", AQ "permanent location", AS "hold items",
    AT "overdue items", AU "charged items", AV "fine items", AY "sequence number",
    AZ "checksum", BD "home address", BE "e-mail address", BF "home phone", BG "owner",
    BH "currency type", BI "cancel", BK "transaction id", BL "valid patron",
    BM "renewed items", BN "unrenewed items", BO "fee acknowledged", BP "start item",
    BQ "end item", BR "queue position", BS "pickup location", BT "fee type",
    BU "recall items", BV "fee amount", BW "expiration date", BX "supported messages",
    BY "hold type", BZ "hold items limit", CA "overdue items limit", CB "charged items limit",
    CC "fee limit", CD "unavailable hold items", CF "hold queue length", CG "fee identifier",
    CH "item properties", CI "security inhibit", CJ "recall date", CK "media type",
    CL "sort bin", CM "hold pickup date", CN "login user id", CO "login password",
    CP "location code", CQ "valid patron password", CR "collection code (3M extension)",
    CS "call number (3M extension)", CT "destination location (3M extension)",
    CV "alert type (3M extension)", CY "hold patron id (3M extension)",
    DA "hold patron name (3M extension)", PA "patron expire date (Envisionware)",
    PB "birth date (Envisionware)", PC "patron class (Envisionware)",
}

impl FieldId {
    /// A field ID from two characters; IDs are uppercase ASCII letters or digits.
    pub fn new(id: &str) -> Option<Self> {
        let bytes: [u8; 2] = id.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .then_some(Self(bytes))
    }

    /// The two characters.
    pub fn as_str(&self) -> &str {
        // Always two ASCII bytes: built from validated input or the constants above.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The field's name in words (`institution id`; a vendor extension says whose, as
    /// in `collection code (3M extension)`), `None` for an id SIP2 2.00 and the known
    /// extensions do not define.
    pub fn name(self) -> Option<&'static str> {
        FIELD_NAMES
            .iter()
            .find(|(id, _)| *id == self)
            .map(|(_, name)| *name)
    }

    /// The field's name as a key: `institution_id`, `collection_code` (without the
    /// vendor's note), `None` when unknown.
    pub fn key(self) -> Option<String> {
        let name = self.name()?;
        let name = name.split(" (").next().unwrap_or(name);
        Some(name.replace([' ', '-'], "_"))
    }

    /// Whether this field carries a password (CO, AC, AD) that must never be logged.
    pub fn is_secret(self) -> bool {
        matches!(self, Self::CO | Self::AC | Self::AD)
    }
}

impl fmt::Debug for FieldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FieldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One variable field: ID and value, without the delimiter.
#[derive(Clone, PartialEq, Eq)]
pub struct Field {
    /// The field ID.
    pub id: FieldId,
    /// The value, decoded from the peer's character set.
    pub value: String,
}

impl Field {
    /// A field.
    pub fn new(id: FieldId, value: impl Into<String>) -> Self {
        Self {
            id,
            value: value.into(),
        }
    }

    /// The value as it may be shown in logs: `***` for passwords.
    pub fn display_value(&self) -> &str {
        if self.id.is_secret() {
            "***"
        } else {
            &self.value
        }
    }
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.id, self.display_value())
    }
}

/// The error-detection trailer of a frame (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trailer {
    /// No `AY`/`AZ` (error detection off).
    #[default]
    None,
    /// `AZ<checksum>` only, as in `96AZFEF6` and `97AZFEF5`.
    Checksum,
    /// `AY<digit>AZ<checksum>`; the value is the sequence digit 0–9.
    Sequence(u8),
}

/// What the checksum of a received frame said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// The frame had no trailer.
    Absent,
    /// The AZ value matches the bytes.
    Valid,
    /// The AZ value does not match.
    Invalid {
        /// Printed in the frame.
        printed: u16,
        /// Computed from the bytes.
        computed: u16,
    },
}

/// How a peer writes frames: character set and field delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireFormat {
    /// Character set of the peer.
    pub encoding: Encoding,
    /// Variable-field delimiter (ASCII), usually `|`.
    pub delimiter: char,
}

impl Default for WireFormat {
    fn default() -> Self {
        Self {
            encoding: Encoding::Utf8,
            delimiter: DEFAULT_DELIMITER,
        }
    }
}

/// A frame as it was on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The two-digit command.
    pub command: Command,
    /// The fixed fields, concatenated, exactly as many characters as the spec's layout.
    pub fixed: String,
    /// Variable fields in wire order, repeats and unknown IDs kept.
    pub fields: Vec<Field>,
    /// The error-detection trailer.
    pub trailer: Trailer,
}

/// A received frame and what its checksum said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The message.
    pub message: Message,
    /// The checksum verdict; the codec decides what to do with an invalid one.
    pub checksum: ChecksumStatus,
}

impl Message {
    /// The first value of a field.
    pub fn field(&self, id: FieldId) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.value.as_str())
    }

    /// Every value of a (repeatable) field, in wire order.
    pub fn field_values(&self, id: FieldId) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(move |f| f.id == id)
            .map(|f| f.value.as_str())
    }

    /// The fixed fields split by the spec's layout: `(name, raw characters)`.
    pub fn fixed_fields(&self) -> Vec<(&'static str, &str)> {
        let mut rest = self.fixed.as_str();
        let mut out = Vec::new();
        for spec in self.command.fixed_layout() {
            let Some((raw, tail)) = split_chars(rest, spec.len) else {
                break;
            };
            out.push((spec.name, raw));
            rest = tail;
        }
        out
    }

    /// Reads one frame (without its CR terminator; leading junk already removed).
    ///
    /// The checksum is verified over the raw bytes; the verdict is returned, not enforced.
    pub fn decode(bytes: &[u8], format: &WireFormat) -> Result<Decoded, FrameError> {
        if bytes.is_empty() {
            return Err(FrameError::Empty);
        }
        let (body_end, trailer, check) = split_trailer(bytes);
        let body = bytes.get(..body_end).unwrap_or(bytes);
        let text = format.encoding.decode(body)?;
        match parse_body(&text, format.delimiter) {
            Ok((message, at_boundary)) if at_boundary || trailer == Trailer::None => {
                let checksum = match check {
                    None => ChecksumStatus::Absent,
                    Some((az_end, printed)) => {
                        let computed = checksum::compute(bytes.get(..az_end).unwrap_or(bytes));
                        if computed == printed {
                            ChecksumStatus::Valid
                        } else {
                            ChecksumStatus::Invalid { printed, computed }
                        }
                    }
                };
                Ok(Decoded {
                    message: Message { trailer, ..message },
                    checksum,
                })
            }
            // What looked like a trailer belongs to a value: read the whole frame as data.
            Ok(_) => Self::decode_without_trailer(bytes, *format),
            Err(e) if trailer != Trailer::None => {
                Self::decode_without_trailer(bytes, *format).map_err(|_| e)
            }
            Err(e) => Err(e),
        }
    }

    fn decode_without_trailer(bytes: &[u8], format: WireFormat) -> Result<Decoded, FrameError> {
        let text = format.encoding.decode(bytes)?;
        let (message, _) = parse_body(&text, format.delimiter)?;
        Ok(Decoded {
            message,
            checksum: ChecksumStatus::Absent,
        })
    }

    /// Writes the frame (without terminator) in the peer's character set, with the trailer
    /// this message asks for and the checksum computed over the encoded bytes.
    pub fn encode(&self, format: &WireFormat) -> Result<Vec<u8>, FrameError> {
        let mut bytes = Vec::with_capacity(64 + self.fixed.len() + self.fields.len() * 24);
        self.encode_into(format, &mut bytes)?;
        Ok(bytes)
    }

    /// Like [`Message::encode`], appending to `out`.
    pub fn encode_into(&self, format: &WireFormat, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let expected: usize = self.command.fixed_layout().iter().map(|s| s.len).sum();
        let found = self.fixed.chars().count();
        if found != expected {
            return Err(FrameError::FixedLength {
                command: self.command,
                expected,
                found,
            });
        }
        if let Some(c) = self.fixed.chars().find(|&c| c == '\r' || c == '\n') {
            return Err(FrameError::ForbiddenCharacter {
                id: "fixed".into(),
                found: c,
            });
        }
        let mut text = String::with_capacity(2 + self.fixed.len() + self.fields.len() * 24);
        text.push_str(self.command.code());
        text.push_str(&self.fixed);
        for field in &self.fields {
            if let Some(c) = field
                .value
                .chars()
                .find(|&c| c == format.delimiter || c == '\r' || c == '\n')
            {
                return Err(FrameError::ForbiddenCharacter {
                    id: field.id.to_string(),
                    found: c,
                });
            }
            text.push_str(field.id.as_str());
            text.push_str(&field.value);
            text.push(format.delimiter);
        }
        let start = out.len();
        out.extend_from_slice(&format.encoding.encode(&text));
        match self.trailer {
            Trailer::None => {}
            Trailer::Checksum => push_checksum(out, start),
            Trailer::Sequence(seq) => {
                out.extend_from_slice(b"AY");
                out.push(b'0' + seq % 10);
                push_checksum(out, start);
            }
        }
        Ok(())
    }
}

fn push_checksum(out: &mut Vec<u8>, start: usize) {
    out.extend_from_slice(b"AZ");
    let value = checksum::compute(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&checksum::format(value));
}

/// Log-safe text of the frame: passwords print as `***`, the checksum is left out.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command.code())?;
        f.write_str(&self.fixed)?;
        for field in &self.fields {
            write!(f, "{}{}|", field.id, field.display_value())?;
        }
        match self.trailer {
            Trailer::None => Ok(()),
            Trailer::Checksum => f.write_str("AZ…"),
            Trailer::Sequence(seq) => write!(f, "AY{seq}AZ…"),
        }
    }
}

/// Finds `AY<d>AZ<hhhh>` or `AZ<hhhh>` at the end: (body end, trailer, (end of "AZ", value)).
fn split_trailer(bytes: &[u8]) -> (usize, Trailer, Option<(usize, u16)>) {
    let n = bytes.len();
    let Some(az) = n.checked_sub(6) else {
        return (n, Trailer::None, None);
    };
    if bytes.get(az..az + 2) != Some(b"AZ".as_slice()) {
        return (n, Trailer::None, None);
    }
    let Some(value) = bytes.get(az + 2..).and_then(checksum::parse) else {
        return (n, Trailer::None, None);
    };
    if let Some(ay) = az.checked_sub(3)
        && bytes.get(ay..ay + 2) == Some(b"AY".as_slice())
        && let Some(&digit) = bytes.get(ay + 2)
        && digit.is_ascii_digit()
    {
        return (ay, Trailer::Sequence(digit - b'0'), Some((az + 2, value)));
    }
    (az, Trailer::Checksum, Some((az + 2, value)))
}

/// Splits off the first `n` characters.
fn split_chars(s: &str, n: usize) -> Option<(&str, &str)> {
    if n == 0 {
        return Some(("", s));
    }
    let mut count = 0;
    for (i, c) in s.char_indices() {
        count += 1;
        if count == n {
            return Some(s.split_at(i + c.len_utf8()));
        }
    }
    None
}

/// Parses command, fixed part and variable fields; also says whether the text ended at a
/// field boundary (where a trailer may start).
fn parse_body(text: &str, delimiter: char) -> Result<(Message, bool), FrameError> {
    let Some((code, rest)) = split_chars(text, 2) else {
        return Err(FrameError::UnknownCommand {
            code: text.escape_debug().to_string(),
        });
    };
    let command = Command::from_code(code).ok_or_else(|| FrameError::UnknownCommand {
        code: code.escape_debug().to_string(),
    })?;
    let layout = command.fixed_layout();
    let fixed_len: usize = layout.iter().map(|s| s.len).sum();
    let Some((fixed, mut rest)) = split_chars(rest, fixed_len) else {
        let available = rest.chars().count();
        let mut end = 0;
        let field = layout
            .iter()
            .find(|s| {
                end += s.len;
                end > available
            })
            .map_or("fixed fields", |s| s.name);
        return Err(FrameError::Truncated {
            command,
            field,
            offset: 2 + available,
        });
    };
    let mut offset = 2 + fixed_len;
    let mut fields = Vec::new();
    let mut at_boundary = true;
    while !rest.is_empty() {
        let id = rest
            .get(..2)
            .and_then(FieldId::new)
            .ok_or(FrameError::BadFieldId { offset })?;
        let after = rest.get(2..).unwrap_or_default();
        let (value, tail) = if let Some(i) = after.find(delimiter) {
            (
                after.get(..i).unwrap_or_default(),
                after.get(i + delimiter.len_utf8()..).unwrap_or_default(),
            )
        } else {
            // Last field without its delimiter: accepted (lenient), re-encoded with one.
            at_boundary = false;
            (after, "")
        };
        offset += 3 + value.chars().count();
        fields.push(Field::new(id, value));
        rest = tail;
    }
    Ok((
        Message {
            command,
            fixed: fixed.to_owned(),
            fields,
            trailer: Trailer::None,
        },
        at_boundary,
    ))
}

/// What kind of value a fixed field holds (used by generators and the JSON view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedKind {
    /// `Y` or `N`.
    YesNo,
    /// `1` or `0`.
    OneZero,
    /// `Y`, `N` or `U` (unknown).
    YesNoUnknown,
    /// Decimal digits, zero-padded.
    Number,
    /// Free characters of a fixed width.
    Text,
    /// `YYYYMMDDZZZZHHMMSS` (§1.3).
    DateTime,
}

/// One fixed field of a message layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedSpec {
    /// Spec name.
    pub name: &'static str,
    /// Width in characters.
    pub len: usize,
    /// Value kind.
    pub kind: FixedKind,
}

/// How a typed fixed field reads and writes its characters.
pub trait FixedCodec {
    /// The Rust value.
    type Value;
    /// Width in characters.
    const LEN: usize;
    /// Value kind.
    const KIND: FixedKind;
    /// Reads exactly `LEN` characters; `None` when they are not a valid value.
    fn read(raw: &str) -> Option<Self::Value>;
    /// Writes exactly `LEN` characters.
    fn write(value: &Self::Value, out: &mut String);
}

/// `Y`/`N` flag; a blank reads as `N`.
pub struct YesNo;
impl FixedCodec for YesNo {
    type Value = bool;
    const LEN: usize = 1;
    const KIND: FixedKind = FixedKind::YesNo;
    fn read(raw: &str) -> Option<bool> {
        match raw {
            "Y" | "y" => Some(true),
            "N" | "n" | " " => Some(false),
            _ => None,
        }
    }
    fn write(value: &bool, out: &mut String) {
        out.push(if *value { 'Y' } else { 'N' });
    }
}

/// `1`/`0` flag (ok fields); `Y`/`N` and blank are read too, as some servers send them.
pub struct OneZero;
impl FixedCodec for OneZero {
    type Value = bool;
    const LEN: usize = 1;
    const KIND: FixedKind = FixedKind::OneZero;
    fn read(raw: &str) -> Option<bool> {
        match raw {
            "1" | "Y" | "y" => Some(true),
            "0" | "N" | "n" | " " => Some(false),
            _ => None,
        }
    }
    fn write(value: &bool, out: &mut String) {
        out.push(if *value { '1' } else { '0' });
    }
}

/// `Y`/`N`/`U` (magnetic media, desensitize); `U` or blank is `None`.
pub struct YesNoUnknown;
impl FixedCodec for YesNoUnknown {
    type Value = Option<bool>;
    const LEN: usize = 1;
    const KIND: FixedKind = FixedKind::YesNoUnknown;
    fn read(raw: &str) -> Option<Option<bool>> {
        match raw {
            "Y" | "y" => Some(Some(true)),
            "N" | "n" => Some(Some(false)),
            "U" | "u" | " " => Some(None),
            _ => None,
        }
    }
    fn write(value: &Option<bool>, out: &mut String) {
        out.push(match value {
            Some(true) => 'Y',
            Some(false) => 'N',
            None => 'U',
        });
    }
}

/// `N` decimal digits; blanks are ignored (a blank field reads as 0, §1.9 "blank counts").
pub struct Number<const N: usize>;
impl<const N: usize> FixedCodec for Number<N> {
    type Value = u32;
    const LEN: usize = N;
    const KIND: FixedKind = FixedKind::Number;
    fn read(raw: &str) -> Option<u32> {
        let digits = raw.trim_matches(' ');
        if digits.is_empty() {
            return Some(0);
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
    fn write(value: &u32, out: &mut String) {
        let max = u32::try_from(N)
            .ok()
            .and_then(|n| 10u32.checked_pow(n))
            .map_or(u32::MAX, |p| p - 1);
        let v = (*value).min(max);
        let _ = write!(out, "{v:0N$}");
    }
}

/// `N` characters of text, written blank-padded or cut to width.
pub struct Text<const N: usize>;
impl<const N: usize> FixedCodec for Text<N> {
    type Value = String;
    const LEN: usize = N;
    const KIND: FixedKind = FixedKind::Text;
    fn read(raw: &str) -> Option<String> {
        Some(raw.to_owned())
    }
    fn write(value: &String, out: &mut String) {
        pad_chars(value, N, out);
    }
}

/// An 18-character date and time `YYYYMMDDZZZZHHMMSS` (§1.3), kept as text because
/// servers fill it in many ways (blanks, `Z` for UTC).
pub struct DateTime;
impl FixedCodec for DateTime {
    type Value = String;
    const LEN: usize = 18;
    const KIND: FixedKind = FixedKind::DateTime;
    fn read(raw: &str) -> Option<String> {
        Some(raw.to_owned())
    }
    fn write(value: &String, out: &mut String) {
        pad_chars(value, 18, out);
    }
}

fn pad_chars(value: &str, width: usize, out: &mut String) {
    let mut n = 0;
    for c in value.chars().take(width) {
        out.push(c);
        n += 1;
    }
    out.extend(std::iter::repeat_n(' ', width - n));
}

/// A SIP2 date-time for `now` in local-time form (`ZZZZ` = 4 blanks, §1.3).
pub fn sip_datetime(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}    {:02}{:02}{:02}",
        now.year().clamp(0, 9999),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Reads an 18-character SIP2 date-time `YYYYMMDDZZZZHHMMSS` (§1.3): a blank zone is the
/// library's local time (UTC when the local offset cannot be found, as in
/// [`sip_datetime`]'s callers), `   Z` is UTC. Lenient on the zone as kiosks are: any other
/// zone text is read as local time. `None` for a blank or malformed date.
pub fn parse_sip_datetime(text: &str) -> Option<std::time::SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 18 {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(number(4..6)?).ok()?).ok()?;
    let day = u8::try_from(number(6..8)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(number(12..14)?).ok()?,
        u8::try_from(number(14..16)?).ok()?,
        u8::try_from(number(16..18)?).ok()?,
    )
    .ok()?;
    let local = time::PrimitiveDateTime::new(date, clock);
    let zone = text.get(8..12)?.trim();
    let offset = if zone == "Z" {
        time::UtcOffset::UTC
    } else {
        time::UtcOffset::local_offset_at(local.assume_utc()).unwrap_or(time::UtcOffset::UTC)
    };
    Some(local.assume_offset(offset).into())
}

/// 18 blanks: an empty date-time (e.g. a blank nb due date or return date).
pub const BLANK_DATETIME: &str = "                  ";

/// How a typed variable field is read from and written to a field list.
pub trait VarValue: Sized {
    /// Reads the field from a message's fields (missing required fields read as empty:
    /// several servers omit them).
    fn take(fields: &[Field], id: FieldId) -> Self;
    /// Appends the field (required fields are sent even when empty, §1.1).
    fn put(&self, id: FieldId, out: &mut Vec<Field>);
}

fn first(fields: &[Field], id: FieldId) -> Option<&str> {
    fields.iter().find(|f| f.id == id).map(|f| f.value.as_str())
}

impl VarValue for String {
    fn take(fields: &[Field], id: FieldId) -> Self {
        first(fields, id).unwrap_or_default().to_owned()
    }
    fn put(&self, id: FieldId, out: &mut Vec<Field>) {
        out.push(Field::new(id, self.clone()));
    }
}

impl VarValue for Option<String> {
    fn take(fields: &[Field], id: FieldId) -> Self {
        first(fields, id).map(str::to_owned)
    }
    fn put(&self, id: FieldId, out: &mut Vec<Field>) {
        if let Some(v) = self {
            out.push(Field::new(id, v.clone()));
        }
    }
}

impl VarValue for Vec<String> {
    fn take(fields: &[Field], id: FieldId) -> Self {
        fields
            .iter()
            .filter(|f| f.id == id)
            .map(|f| f.value.clone())
            .collect()
    }
    fn put(&self, id: FieldId, out: &mut Vec<Field>) {
        out.extend(self.iter().map(|v| Field::new(id, v.clone())));
    }
}

impl VarValue for Secret {
    fn take(fields: &[Field], id: FieldId) -> Self {
        Secret::new(first(fields, id).unwrap_or_default())
    }
    fn put(&self, id: FieldId, out: &mut Vec<Field>) {
        out.push(Field::new(id, self.expose()));
    }
}

impl VarValue for Option<Secret> {
    fn take(fields: &[Field], id: FieldId) -> Self {
        first(fields, id).map(Secret::new)
    }
    fn put(&self, id: FieldId, out: &mut Vec<Field>) {
        if let Some(v) = self {
            out.push(Field::new(id, v.expose()));
        }
    }
}

/// A typed SIP2 message.
pub trait Sip2Message: Sized {
    /// Its command.
    const COMMAND: Command;
    /// Its fixed-field layout, in wire order.
    const FIXED: &'static [FixedSpec];
    /// Reads the typed message from a raw one.
    fn from_message(message: &Message) -> Result<Self, FrameError>;
    /// Builds the raw message (no trailer; the codec or client adds it).
    fn to_message(&self) -> Message;
}

struct FixedReader<'a> {
    command: Command,
    rest: &'a str,
    offset: usize,
}

impl FixedReader<'_> {
    fn read<C: FixedCodec>(&mut self, field: &'static str) -> Result<C::Value, FrameError> {
        let (raw, rest) = split_chars(self.rest, C::LEN).ok_or(FrameError::Truncated {
            command: self.command,
            field,
            offset: self.offset,
        })?;
        let value = C::read(raw).ok_or_else(|| FrameError::BadFixedField {
            command: self.command,
            field,
            offset: self.offset,
            value: raw.to_owned(),
        })?;
        self.rest = rest;
        self.offset += C::LEN;
        Ok(value)
    }
}

macro_rules! commands {
    ($($name:ident $code:literal $text:literal,)*) => {
        /// A SIP2 2.00 command code (§1.5).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Command {
            $(
                #[doc = concat!("`", $code, "` ", $text, ".")]
                $name,
            )*
        }

        impl Command {
            /// Every command.
            pub const ALL: &'static [Command] = &[$(Command::$name,)*];

            /// The two-digit code.
            pub fn code(self) -> &'static str {
                match self { $(Command::$name => $code,)* }
            }

            /// The spec's name.
            pub fn name(self) -> &'static str {
                match self { $(Command::$name => $text,)* }
            }

            /// The command for a two-digit code.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some(Command::$name),)* _ => None }
            }
        }
    };
}

commands! {
    PatronStatus "23" "Patron Status Request",
    PatronStatusResponse "24" "Patron Status Response",
    PatronInformation "63" "Patron Information",
    PatronInformationResponse "64" "Patron Information Response",
    Checkout "11" "Checkout",
    CheckoutResponse "12" "Checkout Response",
    Checkin "09" "Checkin",
    CheckinResponse "10" "Checkin Response",
    ItemInformation "17" "Item Information",
    ItemInformationResponse "18" "Item Information Response",
    ItemStatusUpdate "19" "Item Status Update",
    ItemStatusUpdateResponse "20" "Item Status Update Response",
    Renew "29" "Renew",
    RenewResponse "30" "Renew Response",
    RenewAll "65" "Renew All",
    RenewAllResponse "66" "Renew All Response",
    Hold "15" "Hold",
    HoldResponse "16" "Hold Response",
    FeePaid "37" "Fee Paid",
    FeePaidResponse "38" "Fee Paid Response",
    EndPatronSession "35" "End Patron Session",
    EndSessionResponse "36" "End Session Response",
    BlockPatron "01" "Block Patron",
    PatronEnable "25" "Patron Enable",
    PatronEnableResponse "26" "Patron Enable Response",
    Login "93" "Login",
    LoginResponse "94" "Login Response",
    ScStatus "99" "SC Status",
    AcsStatus "98" "ACS Status",
    RequestAcsResend "97" "Request ACS Resend",
    RequestScResend "96" "Request SC Resend",
}

impl Command {
    /// The response command an ACS answers this request with (`None` for responses, and
    /// for 97 whose answer is whatever was last sent).
    pub fn response(self) -> Option<Command> {
        use Command as C;
        Some(match self {
            C::PatronStatus | C::BlockPatron => C::PatronStatusResponse,
            C::PatronInformation => C::PatronInformationResponse,
            C::Checkout => C::CheckoutResponse,
            C::Checkin => C::CheckinResponse,
            C::ItemInformation => C::ItemInformationResponse,
            C::ItemStatusUpdate => C::ItemStatusUpdateResponse,
            C::Renew => C::RenewResponse,
            C::RenewAll => C::RenewAllResponse,
            C::Hold => C::HoldResponse,
            C::FeePaid => C::FeePaidResponse,
            C::EndPatronSession => C::EndSessionResponse,
            C::PatronEnable => C::PatronEnableResponse,
            C::Login => C::LoginResponse,
            C::ScStatus => C::AcsStatus,
            _ => return None,
        })
    }

    /// Whether the SC (client) sends this command.
    pub fn is_request(self) -> bool {
        self.response().is_some() || self == Command::RequestAcsResend
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

macro_rules! sip_messages {
    ($(
        $(#[$meta:meta])*
        $name:ident {
            fixed { $( $(#[$fmeta:meta])* $fname:ident : $fty:ty as $fcodec:ty = $flabel:literal, )* }
            fields { $( $(#[$vmeta:meta])* $vname:ident : $vty:ty = $vid:ident, )* }
        }
    )*) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, PartialEq, Eq, Default)]
            pub struct $name {
                $( $(#[$fmeta])* pub $fname: $fty, )*
                $( $(#[$vmeta])* pub $vname: $vty, )*
                /// Fields this message does not name (vendor and custom fields), in wire order.
                pub extra: Vec<Field>,
            }

            impl Sip2Message for $name {
                const COMMAND: Command = Command::$name;
                const FIXED: &'static [FixedSpec] = &[$(
                    FixedSpec {
                        name: $flabel,
                        len: <$fcodec as FixedCodec>::LEN,
                        kind: <$fcodec as FixedCodec>::KIND,
                    },
                )*];

                #[allow(unused_mut, unused_variables)]
                fn from_message(message: &Message) -> Result<Self, FrameError> {
                    const IDS: &[FieldId] = &[$(FieldId::$vid,)*];
                    if message.command != Command::$name {
                        return Err(FrameError::WrongCommand {
                            expected: Command::$name,
                            found: message.command,
                        });
                    }
                    let mut reader = FixedReader {
                        command: Command::$name,
                        rest: &message.fixed,
                        offset: 2,
                    };
                    $( let $fname = reader.read::<$fcodec>($flabel)?; )*
                    Ok(Self {
                        $( $fname, )*
                        $( $vname: <$vty as VarValue>::take(&message.fields, FieldId::$vid), )*
                        extra: message
                            .fields
                            .iter()
                            .filter(|f| !IDS.contains(&f.id))
                            .cloned()
                            .collect(),
                    })
                }

                #[allow(unused_mut)]
                fn to_message(&self) -> Message {
                    let mut fixed = String::new();
                    $( <$fcodec as FixedCodec>::write(&self.$fname, &mut fixed); )*
                    let mut fields = Vec::new();
                    $( VarValue::put(&self.$vname, FieldId::$vid, &mut fields); )*
                    fields.extend(self.extra.iter().cloned());
                    Message { command: Command::$name, fixed, fields, trailer: Trailer::None }
                }
            }
        )*

        /// Any SIP2 2.00 message, typed.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum AnyMessage {
            $(
                $(#[$meta])*
                $name($name),
            )*
        }

        impl AnyMessage {
            /// Reads the typed form of a raw message.
            pub fn from_message(message: &Message) -> Result<Self, FrameError> {
                match message.command {
                    $( Command::$name => $name::from_message(message).map(Self::$name), )*
                }
            }

            /// Builds the raw message.
            pub fn to_message(&self) -> Message {
                match self {
                    $( Self::$name(m) => m.to_message(), )*
                }
            }

            /// Its command.
            pub fn command(&self) -> Command {
                match self {
                    $( Self::$name(_) => Command::$name, )*
                }
            }
        }

        impl Command {
            /// The fixed-field layout of this command, in wire order.
            pub fn fixed_layout(self) -> &'static [FixedSpec] {
                match self {
                    $( Command::$name => $name::FIXED, )*
                }
            }
        }
    };
}

sip_messages! {
    /// `93` Login (§1.5).
    Login {
        fixed {
            /// UID algorithm (`0` = not encrypted).
            uid_algorithm: String as Text<1> = "UID algorithm",
            /// PWD algorithm (`0` = not encrypted).
            pwd_algorithm: String as Text<1> = "PWD algorithm",
        }
        fields {
            /// CN login user id.
            login_user_id: String = CN,
            /// CO login password.
            login_password: Secret = CO,
            /// CP location code.
            location_code: Option<String> = CP,
        }
    }
    /// `94` Login Response.
    LoginResponse {
        fixed {
            /// Login accepted.
            ok: bool as OneZero = "ok",
        }
        fields {}
    }
    /// `99` SC Status.
    ScStatus {
        fixed {
            /// 0 SC ok, 1 printer out of paper, 2 shutting down.
            status_code: u32 as Number<1> = "status code",
            /// Max print width.
            max_print_width: u32 as Number<3> = "max print width",
            /// Protocol version, `2.00`.
            protocol_version: String as Text<4> = "protocol version",
        }
        fields {}
    }
    /// `98` ACS Status.
    AcsStatus {
        fixed {
            /// ACS on-line.
            online_status: bool as YesNo = "on-line status",
            /// Checkin ok.
            checkin_ok: bool as YesNo = "checkin ok",
            /// Checkout ok.
            checkout_ok: bool as YesNo = "checkout ok",
            /// ACS renewal policy.
            acs_renewal_policy: bool as YesNo = "ACS renewal policy",
            /// Status update ok.
            status_update_ok: bool as YesNo = "status update ok",
            /// Off-line ok.
            offline_ok: bool as YesNo = "off-line ok",
            /// Timeout period in tenths of a second (`000` off-line, `999` unknown, §1.4).
            timeout_period: u32 as Number<3> = "timeout period",
            /// Retries allowed (`999` unknown).
            retries_allowed: u32 as Number<3> = "retries allowed",
            /// Date/time sync.
            date_time_sync: String as DateTime = "date / time sync",
            /// Protocol version.
            protocol_version: String as Text<4> = "protocol version",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AM library name.
            library_name: Option<String> = AM,
            /// BX supported messages (§1.7).
            supported_messages: String = BX,
            /// AN terminal location.
            terminal_location: Option<String> = AN,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `23` Patron Status Request.
    PatronStatus {
        fixed {
            /// Language (§1.7).
            language: u32 as Number<3> = "language",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AC terminal password (sent even when empty).
            terminal_password: Secret = AC,
            /// AD patron password (sent even when empty).
            patron_password: Secret = AD,
        }
    }
    /// `24` Patron Status Response (also the answer to `01` Block Patron).
    PatronStatusResponse {
        fixed {
            /// Patron status, 14 `Y`/blank flags (§1.7).
            patron_status: String as Text<14> = "patron status",
            /// Language.
            language: u32 as Number<3> = "language",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AE personal name.
            personal_name: String = AE,
            /// BL valid patron.
            valid_patron: Option<String> = BL,
            /// CQ valid patron password.
            valid_patron_password: Option<String> = CQ,
            /// BH currency type.
            currency_type: Option<String> = BH,
            /// BV fee amount.
            fee_amount: Option<String> = BV,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `63` Patron Information.
    PatronInformation {
        fixed {
            /// Language.
            language: u32 as Number<3> = "language",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
            /// Summary: at most one `Y` selecting the item list (§1.7).
            summary: String as Text<10> = "summary",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
            /// BP start item.
            start_item: Option<String> = BP,
            /// BQ end item.
            end_item: Option<String> = BQ,
        }
    }
    /// `64` Patron Information Response.
    PatronInformationResponse {
        fixed {
            /// Patron status flags.
            patron_status: String as Text<14> = "patron status",
            /// Language.
            language: u32 as Number<3> = "language",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
            /// Hold items count.
            hold_items_count: u32 as Number<4> = "hold items count",
            /// Overdue items count.
            overdue_items_count: u32 as Number<4> = "overdue items count",
            /// Charged items count.
            charged_items_count: u32 as Number<4> = "charged items count",
            /// Fine items count.
            fine_items_count: u32 as Number<4> = "fine items count",
            /// Recall items count.
            recall_items_count: u32 as Number<4> = "recall items count",
            /// Unavailable holds count.
            unavailable_holds_count: u32 as Number<4> = "unavailable holds count",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AE personal name.
            personal_name: String = AE,
            /// BZ hold items limit.
            hold_items_limit: Option<String> = BZ,
            /// CA overdue items limit.
            overdue_items_limit: Option<String> = CA,
            /// CB charged items limit.
            charged_items_limit: Option<String> = CB,
            /// BL valid patron.
            valid_patron: Option<String> = BL,
            /// CQ valid patron password.
            valid_patron_password: Option<String> = CQ,
            /// BH currency type.
            currency_type: Option<String> = BH,
            /// BV fee amount.
            fee_amount: Option<String> = BV,
            /// CC fee limit.
            fee_limit: Option<String> = CC,
            /// AS hold items.
            hold_items: Vec<String> = AS,
            /// AT overdue items.
            overdue_items: Vec<String> = AT,
            /// AU charged items.
            charged_items: Vec<String> = AU,
            /// AV fine items.
            fine_items: Vec<String> = AV,
            /// BU recall items.
            recall_items: Vec<String> = BU,
            /// CD unavailable hold items.
            unavailable_hold_items: Vec<String> = CD,
            /// BD home address.
            home_address: Option<String> = BD,
            /// BE e-mail address.
            email_address: Option<String> = BE,
            /// BF home phone number.
            home_phone_number: Option<String> = BF,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `11` Checkout.
    Checkout {
        fixed {
            /// SC renewal policy.
            sc_renewal_policy: bool as YesNo = "SC renewal policy",
            /// No block (an offline transaction being replayed).
            no_block: bool as YesNo = "no block",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
            /// nb due date (blank or filled per peer, §1.3).
            nb_due_date: String as DateTime = "nb due date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AC terminal password.
            terminal_password: Secret = AC,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
            /// BO fee acknowledged.
            fee_acknowledged: Option<String> = BO,
            /// BI cancel.
            cancel: Option<String> = BI,
        }
    }
    /// `12` Checkout Response.
    CheckoutResponse {
        fixed {
            /// Checkout done.
            ok: bool as OneZero = "ok",
            /// Renewal ok.
            renewal_ok: bool as YesNo = "renewal ok",
            /// Magnetic media.
            magnetic_media: Option<bool> as YesNoUnknown = "magnetic media",
            /// Desensitize the item's security.
            desensitize: Option<bool> as YesNoUnknown = "desensitize",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AJ title identifier.
            title_identifier: String = AJ,
            /// AH due date (free text).
            due_date: String = AH,
            /// BT fee type.
            fee_type: Option<String> = BT,
            /// CI security inhibit.
            security_inhibit: Option<String> = CI,
            /// BH currency type.
            currency_type: Option<String> = BH,
            /// BV fee amount.
            fee_amount: Option<String> = BV,
            /// CK media type.
            media_type: Option<String> = CK,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// BK transaction id.
            transaction_id: Option<String> = BK,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `09` Checkin.
    Checkin {
        fixed {
            /// No block.
            no_block: bool as YesNo = "no block",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
            /// Return date.
            return_date: String as DateTime = "return date",
        }
        fields {
            /// AP current location.
            current_location: String = AP,
            /// AO institution id.
            institution_id: String = AO,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AC terminal password.
            terminal_password: Secret = AC,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// BI cancel.
            cancel: Option<String> = BI,
        }
    }
    /// `10` Checkin Response (with CL sort bin and the 3M AMH extensions, §1.8).
    CheckinResponse {
        fixed {
            /// Checkin done.
            ok: bool as OneZero = "ok",
            /// Resensitize the item's security.
            resensitize: bool as YesNo = "resensitize",
            /// Magnetic media.
            magnetic_media: Option<bool> as YesNoUnknown = "magnetic media",
            /// Alert (hold, transit…).
            alert: bool as YesNo = "alert",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AQ permanent location.
            permanent_location: String = AQ,
            /// AJ title identifier.
            title_identifier: Option<String> = AJ,
            /// CL sort bin.
            sort_bin: Option<String> = CL,
            /// AA patron identifier.
            patron_identifier: Option<String> = AA,
            /// CK media type.
            media_type: Option<String> = CK,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// CR collection code (3M).
            collection_code: Option<String> = CR,
            /// CS call number (3M).
            call_number: Option<String> = CS,
            /// CT destination location (3M).
            destination_location: Option<String> = CT,
            /// CV alert type (3M).
            alert_type: Option<String> = CV,
            /// CY hold patron id (3M).
            hold_patron_id: Option<String> = CY,
            /// DA hold patron name (3M).
            hold_patron_name: Option<String> = DA,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `17` Item Information.
    ItemInformation {
        fixed {
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
        }
    }
    /// `18` Item Information Response.
    ItemInformationResponse {
        fixed {
            /// Circulation status (§1.7: 03 available, 04 charged, 08 on hold shelf, 10 in transit…).
            circulation_status: u32 as Number<2> = "circulation status",
            /// Security marker.
            security_marker: u32 as Number<2> = "security marker",
            /// Fee type.
            fee_type: u32 as Number<2> = "fee type",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// CF hold queue length.
            hold_queue_length: Option<String> = CF,
            /// AH due date.
            due_date: Option<String> = AH,
            /// CJ recall date.
            recall_date: Option<String> = CJ,
            /// CM hold pickup date.
            hold_pickup_date: Option<String> = CM,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AJ title identifier.
            title_identifier: String = AJ,
            /// BG owner.
            owner: Option<String> = BG,
            /// BH currency type.
            currency_type: Option<String> = BH,
            /// BV fee amount.
            fee_amount: Option<String> = BV,
            /// CK media type.
            media_type: Option<String> = CK,
            /// AQ permanent location.
            permanent_location: Option<String> = AQ,
            /// AP current location.
            current_location: Option<String> = AP,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// CR collection code (3M).
            collection_code: Option<String> = CR,
            /// CS call number (3M).
            call_number: Option<String> = CS,
            /// CT destination location (3M).
            destination_location: Option<String> = CT,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `19` Item Status Update.
    ItemStatusUpdate {
        fixed {
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// CH item properties.
            item_properties: String = CH,
        }
    }
    /// `20` Item Status Update Response.
    ItemStatusUpdateResponse {
        fixed {
            /// Item properties stored.
            item_properties_ok: bool as OneZero = "item properties ok",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AB item identifier.
            item_identifier: String = AB,
            /// AJ title identifier.
            title_identifier: Option<String> = AJ,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `29` Renew.
    Renew {
        fixed {
            /// Third party allowed.
            third_party_allowed: bool as YesNo = "third party allowed",
            /// No block.
            no_block: bool as YesNo = "no block",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
            /// nb due date.
            nb_due_date: String as DateTime = "nb due date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
            /// AB item identifier.
            item_identifier: Option<String> = AB,
            /// AJ title identifier.
            title_identifier: Option<String> = AJ,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// BO fee acknowledged.
            fee_acknowledged: Option<String> = BO,
        }
    }
    /// `30` Renew Response (same layout as 12).
    RenewResponse {
        fixed {
            /// Renewal done.
            ok: bool as OneZero = "ok",
            /// Renewal ok.
            renewal_ok: bool as YesNo = "renewal ok",
            /// Magnetic media.
            magnetic_media: Option<bool> as YesNoUnknown = "magnetic media",
            /// Desensitize.
            desensitize: Option<bool> as YesNoUnknown = "desensitize",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AB item identifier.
            item_identifier: String = AB,
            /// AJ title identifier.
            title_identifier: String = AJ,
            /// AH due date.
            due_date: String = AH,
            /// BT fee type.
            fee_type: Option<String> = BT,
            /// CI security inhibit.
            security_inhibit: Option<String> = CI,
            /// BH currency type.
            currency_type: Option<String> = BH,
            /// BV fee amount.
            fee_amount: Option<String> = BV,
            /// CK media type.
            media_type: Option<String> = CK,
            /// CH item properties.
            item_properties: Option<String> = CH,
            /// BK transaction id.
            transaction_id: Option<String> = BK,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `65` Renew All.
    RenewAll {
        fixed {
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// BO fee acknowledged.
            fee_acknowledged: Option<String> = BO,
        }
    }
    /// `66` Renew All Response.
    RenewAllResponse {
        fixed {
            /// Done.
            ok: bool as OneZero = "ok",
            /// Renewed count.
            renewed_count: u32 as Number<4> = "renewed count",
            /// Unrenewed count.
            unrenewed_count: u32 as Number<4> = "unrenewed count",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// BM renewed items.
            renewed_items: Vec<String> = BM,
            /// BN unrenewed items.
            unrenewed_items: Vec<String> = BN,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `15` Hold.
    Hold {
        fixed {
            /// Hold mode: `+` add, `-` delete, `*` change.
            hold_mode: String as Text<1> = "hold mode",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// BW expiration date.
            expiration_date: Option<String> = BW,
            /// BS pickup location.
            pickup_location: Option<String> = BS,
            /// BY hold type.
            hold_type: Option<String> = BY,
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
            /// AB item identifier.
            item_identifier: Option<String> = AB,
            /// AJ title identifier.
            title_identifier: Option<String> = AJ,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// BO fee acknowledged.
            fee_acknowledged: Option<String> = BO,
        }
    }
    /// `16` Hold Response.
    HoldResponse {
        fixed {
            /// Done.
            ok: bool as OneZero = "ok",
            /// Item available.
            available: bool as YesNo = "available",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// BW expiration date.
            expiration_date: Option<String> = BW,
            /// BR queue position.
            queue_position: Option<String> = BR,
            /// BS pickup location.
            pickup_location: Option<String> = BS,
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AB item identifier.
            item_identifier: Option<String> = AB,
            /// AJ title identifier.
            title_identifier: Option<String> = AJ,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `37` Fee Paid.
    FeePaid {
        fixed {
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
            /// Fee type (§1.7).
            fee_type: u32 as Number<2> = "fee type",
            /// Payment type: 00 cash, 01 VISA, 02 credit card.
            payment_type: u32 as Number<2> = "payment type",
            /// Currency type (ISO 4217).
            currency_type: String as Text<3> = "currency type",
        }
        fields {
            /// BV fee amount.
            fee_amount: String = BV,
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
            /// CG fee identifier.
            fee_identifier: Option<String> = CG,
            /// BK transaction id.
            transaction_id: Option<String> = BK,
        }
    }
    /// `38` Fee Paid Response.
    FeePaidResponse {
        fixed {
            /// Payment accepted.
            payment_accepted: bool as YesNo = "payment accepted",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// BK transaction id.
            transaction_id: Option<String> = BK,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `35` End Patron Session.
    EndPatronSession {
        fixed {
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
        }
    }
    /// `36` End Session Response.
    EndSessionResponse {
        fixed {
            /// Session ended.
            end_session: bool as YesNo = "end session",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `01` Block Patron (answered with a 24).
    BlockPatron {
        fixed {
            /// Card retained.
            card_retained: bool as YesNo = "card retained",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AL blocked card message.
            blocked_card_message: String = AL,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AC terminal password.
            terminal_password: Secret = AC,
        }
    }
    /// `25` Patron Enable.
    PatronEnable {
        fixed {
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AC terminal password.
            terminal_password: Option<Secret> = AC,
            /// AD patron password.
            patron_password: Option<Secret> = AD,
        }
    }
    /// `26` Patron Enable Response.
    PatronEnableResponse {
        fixed {
            /// Patron status flags.
            patron_status: String as Text<14> = "patron status",
            /// Language.
            language: u32 as Number<3> = "language",
            /// Transaction date.
            transaction_date: String as DateTime = "transaction date",
        }
        fields {
            /// AO institution id.
            institution_id: String = AO,
            /// AA patron identifier.
            patron_identifier: String = AA,
            /// AE personal name.
            personal_name: String = AE,
            /// BL valid patron.
            valid_patron: Option<String> = BL,
            /// CQ valid patron password.
            valid_patron_password: Option<String> = CQ,
            /// AF screen messages.
            screen_message: Vec<String> = AF,
            /// AG print lines.
            print_line: Vec<String> = AG,
        }
    }
    /// `97` Request ACS Resend (SC → ACS).
    RequestAcsResend {
        fixed {}
        fields {}
    }
    /// `96` Request SC Resend (ACS → SC).
    RequestScResend {
        fixed {}
        fields {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8() -> WireFormat {
        WireFormat::default()
    }

    #[test]
    fn a_trailer_straight_after_the_fixed_fields_is_found() {
        let d = Message::decode(b"9900401.00AY1AZFCA5", &utf8()).unwrap();
        assert_eq!(d.message.command, Command::ScStatus);
        assert_eq!(d.message.trailer, Trailer::Sequence(1));
        assert_eq!(d.checksum, ChecksumStatus::Valid);
        assert!(d.message.fields.is_empty());
    }

    #[test]
    fn a_frame_cut_inside_a_fixed_field_names_the_field() {
        let err = Message::decode(b"12100N", &utf8()).unwrap_err();
        assert_eq!(
            err,
            FrameError::Truncated {
                command: Command::CheckoutResponse,
                field: "transaction date",
                offset: 6
            }
        );
    }

    #[test]
    fn an_unknown_command_code_is_an_error() {
        let err = Message::decode(b"4200", &utf8()).unwrap_err();
        assert!(matches!(err, FrameError::UnknownCommand { .. }));
    }

    #[test]
    fn a_last_field_without_delimiter_is_accepted() {
        let d = Message::decode(b"941AFhello", &utf8()).unwrap();
        assert_eq!(d.message.field(FieldId::AF), Some("hello"));
        assert_eq!(d.checksum, ChecksumStatus::Absent);
    }

    #[test]
    fn a_lowercase_field_id_is_rejected_with_its_offset() {
        let err = Message::decode(b"941AFx|af|", &utf8()).unwrap_err();
        assert_eq!(err, FrameError::BadFieldId { offset: 7 });
    }

    #[test]
    fn a_value_holding_the_delimiter_is_not_sent() {
        let mut m = LoginResponse {
            ok: true,
            ..Default::default()
        }
        .to_message();
        m.fields.push(Field::new(FieldId::AF, "a|b"));
        let err = m.encode(&utf8()).unwrap_err();
        assert!(matches!(
            err,
            FrameError::ForbiddenCharacter { found: '|', .. }
        ));
    }

    #[test]
    fn debug_and_display_of_a_login_hide_the_password() {
        let login = Login {
            uid_algorithm: "0".into(),
            pwd_algorithm: "0".into(),
            login_user_id: "sc1".into(),
            login_password: Secret::new("hunter2"),
            location_code: None,
            extra: vec![Field::new(FieldId::AC, "termpass")],
        };
        let message = login.to_message();
        for text in [
            format!("{login:?}"),
            format!("{message:?}"),
            message.to_string(),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("termpass"), "{text}");
        }
    }

    #[test]
    fn typed_checkout_writes_its_fixed_fields_in_spec_order() {
        let c = Checkout {
            sc_renewal_policy: true,
            no_block: false,
            transaction_date: "19960212    100514".into(),
            nb_due_date: BLANK_DATETIME.into(),
            institution_id: String::new(),
            patron_identifier: "104000000105".into(),
            item_identifier: "000000000005792".into(),
            terminal_password: Secret::default(),
            ..Default::default()
        };
        let mut m = c.to_message();
        m.trailer = Trailer::Sequence(3);
        let bytes = m.encode(&utf8()).unwrap();
        assert!(bytes.starts_with(
            b"11YN19960212    100514                  AO|AA104000000105|AB000000000005792|AC|AY3AZ"
        ));
    }

    #[test]
    fn numbers_are_zero_padded_and_clamped_to_their_width() {
        let mut out = String::new();
        Number::<3>::write(&7, &mut out);
        Number::<3>::write(&12345, &mut out);
        assert_eq!(out, "007999");
        assert_eq!(Number::<3>::read(" 40"), Some(40));
        assert_eq!(Number::<4>::read("    "), Some(0));
        assert_eq!(Number::<2>::read("x1"), None);
    }

    #[test]
    fn every_command_code_maps_back_to_itself() {
        for &c in Command::ALL {
            assert_eq!(Command::from_code(c.code()), Some(c));
            assert_eq!(
                AnyMessage::from_message(&Message {
                    command: c,
                    fixed: c
                        .fixed_layout()
                        .iter()
                        .map(|s| match s.kind {
                            FixedKind::YesNo | FixedKind::YesNoUnknown => "N".repeat(s.len),
                            FixedKind::OneZero | FixedKind::Number => "0".repeat(s.len),
                            FixedKind::Text | FixedKind::DateTime => " ".repeat(s.len),
                        })
                        .collect(),
                    fields: vec![],
                    trailer: Trailer::None,
                })
                .unwrap()
                .command(),
                c
            );
        }
    }

    #[test]
    fn sip_dates_are_read_in_utc_or_local_time_and_round_trip() {
        use std::time::{Duration, SystemTime};
        let utc = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
        assert_eq!(parse_sip_datetime("20240102   Z030405"), Some(utc));
        let local = time::OffsetDateTime::from(utc);
        let local =
            time::UtcOffset::local_offset_at(local).map_or(local, |offset| local.to_offset(offset));
        assert_eq!(parse_sip_datetime(&sip_datetime(local)), Some(utc));
        for bad in [
            BLANK_DATETIME,
            "2024010    030405",
            "20241302    030405",
            "20240102    2504",
        ] {
            assert_eq!(parse_sip_datetime(bad), None, "{bad:?}");
        }
    }
}
