//! One kiosk connection's protocol state, without I/O (STYLE.md: protocol state in a plain
//! struct, tested without sockets).
//!
//! [`SessionState::on_frame`] takes one raw frame and says what to do: send bytes (a 96,
//! a cached reply, a login answer, a refusal), hand a request to the handler, or close.
//! [`SessionState::respond`] turns the handler's answer into the exact bytes to send and
//! caches them, so that a 97 or a duplicate request gets those bytes again without running
//! anything twice (PROTOCOLS.md §1.2).
//!
//! **What counts as a duplicate.** A request is a duplicate of the last one only when it
//! carries a sequence number (AY) and its bytes are identical, AY included ("same AY and
//! content", issue 11). A request *without* AY is never de-duplicated, by decision: a
//! kiosk without error detection has no way to mark a resend, so two identical frames may
//! well be two transactions (the same item returned twice through a drop, a patron looked
//! up again, a second renewal), and swallowing the second would answer it with stale bytes
//! and never tell the library system. Such a kiosk recovers a lost answer with 97, which
//! gets the cached bytes and runs nothing. The risk stays where SIP2 puts it: a kiosk
//! without AY that resends a checkout instead of sending 97 has it run again (the library
//! system sees a renewal of the same loan, never a second loan).

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{ChecksumPolicy, Terminator};
use crate::frame::{
    ChecksumStatus, Command, FieldId, LoginResponse, Message, RequestScResend, Sip2Message,
    Trailer, WireFormat,
};
use crate::secret::Secret;

use super::request::{Request, RequestError, parse_request};
use super::responses::{refusal, restrict_acs_status};
use super::{ErrorDetection, ServerAccount};

/// Why the face closes a connection (one log line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Too many unreadable frames in a row.
    Garbage {
        /// Bad frames in a row.
        bad_frames: u32,
        /// The last problem.
        last: String,
    },
    /// Too many failed logins.
    LoginAttempts {
        /// Failed attempts.
        attempts: u32,
    },
    /// A request other than 93 / 99 before a successful login.
    NotLoggedIn {
        /// What came.
        command: Command,
    },
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Garbage { bad_frames, last } => {
                write!(f, "{bad_frames} unreadable frames in a row (last: {last})")
            }
            Self::LoginAttempts { attempts } => write!(f, "{attempts} failed logins"),
            Self::NotLoggedIn { command } => write!(f, "{command} before a successful login"),
        }
    }
}

/// What to do with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes (they end with the terminator).
    Send(Bytes),
    /// Send these bytes again: a 97 or a duplicate request (nothing runs again).
    Replay(Bytes),
    /// Send these bytes, then close.
    SendAndClose(Bytes, CloseReason),
    /// Close without an answer.
    Close(CloseReason),
    /// Let the handler answer; then call [`SessionState::respond`].
    Handle(Box<Request>),
}

/// What a login did (for the log and the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Accepted for this account.
    Accepted(String),
    /// Refused (unknown user or wrong password; which one is not said).
    Refused(String),
}

/// Session limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Failed logins before the connection is closed.
    pub max_login_attempts: u32,
    /// Unreadable frames in a row before the connection is closed.
    pub max_bad_frames: u32,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct SessionState {
    accounts: Arc<[ServerAccount]>,
    limits: SessionLimits,
    account: Option<usize>,
    login_failures: u32,
    bad_frames: u32,
    last_request: Option<Bytes>,
    last_reply: Option<Bytes>,
    /// Whether the last readable request carried a trailer (for mirroring a 96).
    trailer_seen: bool,
    last_login: Option<LoginOutcome>,
}

/// The wire format before login: UTF-8 (ASCII in practice) with `|`.
const DEFAULT_FORMAT: WireFormat = WireFormat {
    encoding: crate::encoding::Encoding::Utf8,
    delimiter: crate::frame::DEFAULT_DELIMITER,
};

impl SessionState {
    /// A fresh connection.
    pub fn new(accounts: Arc<[ServerAccount]>, limits: SessionLimits) -> Self {
        Self {
            accounts,
            limits,
            account: None,
            login_failures: 0,
            bad_frames: 0,
            last_request: None,
            last_reply: None,
            trailer_seen: false,
            last_login: None,
        }
    }

    /// The account logged in, if any.
    pub fn account(&self) -> Option<&ServerAccount> {
        self.account.and_then(|i| self.accounts.get(i))
    }

    /// The last login's outcome, taken (for one log line per login).
    pub fn take_login(&mut self) -> Option<LoginOutcome> {
        self.last_login.take()
    }

    fn format(&self) -> WireFormat {
        self.account()
            .map_or(DEFAULT_FORMAT, |a| a.dialect.wire_format())
    }

    fn terminator(&self) -> Terminator {
        self.account()
            .map_or(Terminator::Cr, |a| a.dialect.terminator)
    }

    fn error_detection(&self) -> ErrorDetection {
        self.account()
            .map_or(ErrorDetection::Auto, |a| a.dialect.error_detection)
    }

    /// Reads one frame; the account's format after login, else the default, then each
    /// account's own format for a 93 whose user the default cannot find.
    fn parse(&self, raw: &[u8]) -> Result<Request, RequestError> {
        let first = parse_request(raw, &self.format());
        if self.account.is_some() || !raw.starts_with(b"93") {
            return first;
        }
        let found = |r: &Request| {
            let user = r.message.field(FieldId::CN).unwrap_or_default();
            self.accounts.iter().any(|a| a.login == user)
        };
        if first.as_ref().is_ok_and(found) {
            return first;
        }
        self.accounts
            .iter()
            .map(|a| a.dialect.wire_format())
            .filter(|f| *f != DEFAULT_FORMAT)
            .filter_map(|f| parse_request(raw, &f).ok())
            .find(found)
            .map_or(first, Ok)
    }

    /// What to do with one raw frame.
    pub fn on_frame(&mut self, raw: &[u8]) -> Step {
        let request = match self.parse(raw) {
            Ok(request) => request,
            Err(error) => return self.bad_frame(raw, &error.to_string()),
        };
        let strict = self
            .account()
            .is_none_or(|a| a.dialect.checksum == ChecksumPolicy::Strict);
        if let ChecksumStatus::Invalid { printed, computed } = request.checksum
            && strict
        {
            return self.bad_frame(
                raw,
                &format!("bad AZ checksum: frame says {printed:04X}, bytes give {computed:04X}"),
            );
        }
        self.bad_frames = 0;
        self.trailer_seen = request.message.trailer != Trailer::None;
        let command = request.message.command;
        if command == Command::RequestAcsResend {
            return match &self.last_reply {
                Some(bytes) => Step::Replay(bytes.clone()),
                None => Step::Send(self.resend_request(true)),
            };
        }
        if matches!(request.message.trailer, Trailer::Sequence(_))
            && self.last_request.as_deref() == Some(raw)
            && let Some(bytes) = &self.last_reply
        {
            return Step::Replay(bytes.clone());
        }
        if command == Command::Login {
            return self.login(&request);
        }
        let Some(account) = self.account() else {
            if command == Command::ScStatus {
                return Step::Handle(Box::new(request));
            }
            return Step::Close(CloseReason::NotLoggedIn { command });
        };
        if !account.allowed.contains(command) {
            let answer = refusal(
                &request.message,
                "This terminal may not send this message; please see staff.",
            );
            return Step::Send(self.respond(&request, answer));
        }
        Step::Handle(Box::new(request))
    }

    fn login(&mut self, request: &Request) -> Step {
        let user = request.message.field(FieldId::CN).unwrap_or_default();
        let password = Secret::new(request.message.field(FieldId::CO).unwrap_or_default());
        let found = self
            .accounts
            .iter()
            .position(|a| a.login == user && a.credential.verify(&password));
        let ok = found.is_some();
        if let Some(index) = found {
            self.account = Some(index);
            self.login_failures = 0;
            self.last_login = Some(LoginOutcome::Accepted(user.to_owned()));
        } else {
            self.login_failures += 1;
            self.last_login = Some(LoginOutcome::Refused(user.to_owned()));
        }
        let answer = LoginResponse {
            ok,
            ..Default::default()
        }
        .to_message();
        let bytes = self.respond(request, answer);
        if !ok && self.login_failures >= self.limits.max_login_attempts {
            return Step::SendAndClose(
                bytes,
                CloseReason::LoginAttempts {
                    attempts: self.login_failures,
                },
            );
        }
        Step::Send(bytes)
    }

    fn bad_frame(&mut self, raw: &[u8], problem: &str) -> Step {
        self.bad_frames += 1;
        if self.bad_frames >= self.limits.max_bad_frames {
            return Step::Close(CloseReason::Garbage {
                bad_frames: self.bad_frames,
                last: problem.to_owned(),
            });
        }
        // A frame that ends like a trailer had error detection on.
        let had_trailer = raw.len() >= 6
            && raw
                .get(raw.len() - 6..raw.len() - 4)
                .is_some_and(|az| az == b"AZ");
        self.trailer_seen |= had_trailer;
        Step::Send(self.resend_request(had_trailer))
    }

    /// 96, with `AZ` when the kiosk uses error detection (§1.2: 96 never carries AY).
    fn resend_request(&mut self, had_trailer: bool) -> Bytes {
        let with_checksum = match self.error_detection() {
            ErrorDetection::On => true,
            ErrorDetection::Off => false,
            ErrorDetection::Auto => had_trailer || self.trailer_seen,
        };
        let mut message = RequestScResend::default().to_message();
        if with_checksum {
            message.trailer = Trailer::Checksum;
        }
        let mut bytes = message
            .encode(&self.format())
            .unwrap_or_else(|_| b"96".to_vec());
        bytes.extend_from_slice(terminator_bytes(self.terminator()));
        let bytes = Bytes::from(bytes);
        self.last_reply = Some(bytes.clone());
        bytes
    }

    /// The exact bytes answering `request` with `response`: the trailer mirrors the
    /// request's (or follows the account's error detection), values that would break the
    /// frame are blanked, a 98 is restricted to what the account may send. The bytes are
    /// cached for 97 and for a duplicate of `request`.
    pub fn respond(&mut self, request: &Request, mut response: Message) -> Bytes {
        if let Some(account) = self.account() {
            restrict_acs_status(&mut response, account.allowed);
        }
        response.trailer = match (self.error_detection(), request.message.trailer) {
            (ErrorDetection::Off, _) | (ErrorDetection::Auto, Trailer::None) => Trailer::None,
            (_, Trailer::Sequence(seq)) => Trailer::Sequence(seq),
            (ErrorDetection::On | ErrorDetection::Auto, _) => Trailer::Sequence(0),
        };
        let format = self.format();
        for field in &mut response.fields {
            if field.value.contains([format.delimiter, '\r', '\n']) {
                field.value = field.value.replace([format.delimiter, '\r', '\n'], " ");
            }
        }
        let mut bytes = match response.encode(&format) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, command = %response.command, "SIP2 face: answer cannot be encoded; refusing instead");
                let mut fallback = refusal(&request.message, "");
                fallback.trailer = response.trailer;
                fallback.encode(&format).unwrap_or_else(|_| b"96".to_vec())
            }
        };
        bytes.extend_from_slice(terminator_bytes(self.terminator()));
        let bytes = Bytes::from(bytes);
        self.last_request = Some(request.raw.clone());
        self.last_reply = Some(bytes.clone());
        bytes
    }
}

fn terminator_bytes(terminator: Terminator) -> &'static [u8] {
    match terminator {
        Terminator::Cr => b"\r",
        Terminator::Crlf => b"\r\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{AccountDialect, Credential, Supported};

    fn accounts() -> Arc<[ServerAccount]> {
        Arc::from(vec![
            ServerAccount {
                login: "kiosk1".into(),
                credential: Credential::from_password(&Secret::new("pw1")),
                dialect: AccountDialect::default(),
                allowed: Supported::ALL,
            },
            ServerAccount {
                login: "caret".into(),
                credential: Credential::from_password(&Secret::new("pw2")),
                dialect: AccountDialect {
                    delimiter: '^',
                    terminator: Terminator::Crlf,
                    error_detection: ErrorDetection::Off,
                    ..AccountDialect::default()
                },
                allowed: Supported::from_names(["checkin"]).unwrap(),
            },
        ])
    }

    fn session() -> SessionState {
        SessionState::new(
            accounts(),
            SessionLimits {
                max_login_attempts: 2,
                max_bad_frames: 3,
            },
        )
    }

    fn sent(step: &Step) -> &[u8] {
        match step {
            Step::Send(b) | Step::Replay(b) | Step::SendAndClose(b, _) => b,
            other => panic!("expected bytes, got {other:?}"),
        }
    }

    #[test]
    fn a_login_is_answered_in_the_error_detection_mode_of_the_request() {
        let mut s = session();
        assert_eq!(sent(&s.on_frame(b"9300CNkiosk1|COpw1|")), b"941\r");
        let mut s = session();
        let frame = with_checksum("9300CNkiosk1|COpw1|AY3AZ");
        let step = s.on_frame(frame.as_bytes());
        assert!(sent(&step).starts_with(b"941AY3AZ"), "{step:?}");
    }

    #[test]
    fn an_account_with_another_delimiter_logs_in_and_gets_its_terminator() {
        let mut s = session();
        assert_eq!(sent(&s.on_frame(b"9300CNcaret^COpw2^")), b"941\r\n");
        assert_eq!(s.account().unwrap().login, "caret");
    }

    #[test]
    fn failed_logins_are_counted_and_the_last_allowed_one_closes() {
        let mut s = session();
        assert_eq!(sent(&s.on_frame(b"9300CNkiosk1|COnope|")), b"940\r");
        let step = s.on_frame(b"9300CNkiosk1|COnope|");
        assert!(matches!(
            step,
            Step::SendAndClose(_, CloseReason::LoginAttempts { attempts: 2 })
        ));
        assert_eq!(s.take_login(), Some(LoginOutcome::Refused("kiosk1".into())));
    }

    #[test]
    fn status_is_answered_before_login_and_anything_else_closes() {
        let mut s = session();
        assert!(matches!(s.on_frame(b"9900302.00"), Step::Handle(_)));
        assert!(matches!(
            s.on_frame(b"09N20240101    00000020240101    000000APx|AOx|ABI1|ACx|"),
            Step::Close(CloseReason::NotLoggedIn { .. })
        ));
    }

    #[test]
    fn a_bad_checksum_gets_96_with_az_and_garbage_in_a_row_closes() {
        let mut s = session();
        assert_eq!(sent(&s.on_frame(b"9900302.00AY1AZ0000")), b"96AZFEF6\r");
        assert_eq!(sent(&s.on_frame(b"42 what")), b"96AZFEF6\r");
        assert!(matches!(
            s.on_frame(b"\x01\x02"),
            Step::Close(CloseReason::Garbage { bad_frames: 3, .. })
        ));
    }

    #[test]
    fn a_duplicate_and_a_97_get_the_cached_bytes_and_run_nothing() {
        let mut s = session();
        s.on_frame(b"9300CNkiosk1|COpw1|");
        let checkout =
            with_checksum("11YN20240101    000000                  AOI|AAP1|ABB1|AC|AY4AZ");
        let Step::Handle(request) = s.on_frame(checkout.as_bytes()) else {
            panic!("expected the handler");
        };
        let answer = refusal(&request.message, "first");
        let bytes = s.respond(&request, answer);
        assert_eq!(s.on_frame(checkout.as_bytes()), Step::Replay(bytes.clone()));
        assert_eq!(s.on_frame(b"97AZFEF5"), Step::Replay(bytes.clone()));
        assert_eq!(s.on_frame(b"97"), Step::Replay(bytes));
    }

    #[test]
    fn a_repeat_without_a_sequence_number_is_a_new_request_and_97_still_replays() {
        let mut s = session();
        s.on_frame(b"9300CNkiosk1|COpw1|");
        let plain = b"09N20240101    00000020240101    000000AOI|ABB1|AP|";
        let Step::Handle(first) = s.on_frame(plain) else {
            panic!("expected the handler");
        };
        let bytes = s.respond(&first, refusal(&first.message, "first"));
        // Same bytes again, no AY: handed to the handler again (a second return).
        let Step::Handle(second) = s.on_frame(plain) else {
            panic!("a repeat without AY is a new request");
        };
        assert_eq!(second.raw, first.raw);
        let again = s.respond(&second, refusal(&second.message, "second"));
        assert_ne!(again, bytes);
        // 97 is how such a kiosk asks for a lost answer: the last bytes, nothing run.
        assert_eq!(s.on_frame(b"97"), Step::Replay(again));
        // With AY, different sequence numbers are different requests too.
        let seq = |n: u8| {
            with_checksum(&format!(
                "09N20240101    00000020240101    000000AOI|ABB1|AP|AY{n}AZ"
            ))
        };
        let Step::Handle(one) = s.on_frame(seq(1).as_bytes()) else {
            panic!("expected the handler");
        };
        s.respond(&one, refusal(&one.message, "one"));
        assert!(matches!(s.on_frame(seq(2).as_bytes()), Step::Handle(_)));
    }

    #[test]
    fn a_message_the_account_may_not_send_is_refused_in_its_own_type() {
        let mut s = session();
        s.on_frame(b"9300CNcaret^COpw2^");
        let step = s.on_frame(b"11YN20240101    000000                  AOI^AAP1^ABB1^");
        let bytes = sent(&step);
        assert!(
            bytes.starts_with(b"120"),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(bytes.ends_with(b"^\r\n"));
    }

    fn with_checksum(frame_through_az: &str) -> String {
        let sum = crate::checksum::compute(frame_through_az.as_bytes());
        format!(
            "{frame_through_az}{}",
            String::from_utf8_lossy(&crate::checksum::format(sum))
        )
    }
}
