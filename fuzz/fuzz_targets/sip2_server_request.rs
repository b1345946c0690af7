//! Fuzzes the SIP2 face's request side: raw framing, lenient parsing and one connection's
//! session state (login, 96/97, duplicates, refusals). Never panics, and every step that
//! sends bytes sends a whole frame with its terminator.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rfidgw_sip2::Secret;
use rfidgw_sip2::codec::{BytesMut, Decoder};
use rfidgw_sip2::frame::WireFormat;
use rfidgw_sip2::server::responses::refusal;
use rfidgw_sip2::server::{
    AccountDialect, Credential, RequestCodec, ServerAccount, SessionLimits, SessionState, Step,
    Supported, parse_request,
};

fuzz_target!(|data: &[u8]| {
    let accounts: Arc<[ServerAccount]> = Arc::from(vec![ServerAccount {
        login: "k".into(),
        credential: Credential::from_password(&Secret::new("p")),
        dialect: AccountDialect::default(),
        allowed: Supported::from_names(["checkin", "item_information"]).unwrap_or_default(),
    }]);
    let mut session = SessionState::new(
        accounts,
        SessionLimits {
            max_login_attempts: 3,
            max_bad_frames: 1_000,
        },
    );
    // A login first, so the logged-in paths are reached too.
    let _ = session.on_frame(b"9300CNk|COp|");
    let mut codec = RequestCodec::new(4096);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(raw)) = codec.decode(&mut buf) {
        if let Ok(request) = parse_request(&raw, &WireFormat::default()) {
            // May refuse (a line break inside a value), never panic.
            let _ = request.message.encode(&WireFormat::default());
        }
        match session.on_frame(&raw) {
            Step::Send(bytes) | Step::Replay(bytes) | Step::SendAndClose(bytes, _) => {
                assert!(bytes.ends_with(b"\r"));
            }
            Step::Handle(request) => {
                let answer = refusal(&request.message, "fuzz");
                assert!(session.respond(&request, answer).ends_with(b"\r"));
            }
            Step::Close(_) => break,
        }
    }
});
