//! Answers the face builds itself: a refusal in the right response type for any request,
//! and the account's view of a 98 ACS Status (PROTOCOLS.md §1.5, §1.7).

use crate::frame::{
    AcsStatus, AnyMessage, CheckinResponse, CheckoutResponse, Command, EndSessionResponse,
    FeePaidResponse, FieldId, HoldResponse, ItemInformationResponse, ItemStatusUpdateResponse,
    LoginResponse, Message, PatronEnableResponse, PatronInformationResponse, PatronStatusResponse,
    RenewAllResponse, RenewResponse, RequestScResend, Sip2Message, sip_datetime,
};

use super::supported::Supported;

/// Now, as a SIP2 date in local time (UTC when the offset is unknown).
pub fn now() -> String {
    sip_datetime(
        time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
    )
}

/// Patron status with charge, renewal, recall and hold privileges denied (§1.7 0–3).
pub const PRIVILEGES_DENIED: &str = "YYYY          ";

/// The response to `request` saying no (ok 0 / N), echoing its institution, patron and
/// item, with `screen` as the screen message (AF). A 93 gets `940`; a 97 or a response
/// code gets 96.
// One arm per request type, in the spec's order: a table reads best in one place.
#[allow(clippy::too_many_lines)]
pub fn refusal(request: &Message, screen: &str) -> Message {
    let text = |id| request.field(id).unwrap_or_default().to_owned();
    let opt = |id| request.field(id).map(str::to_owned);
    let screen_message = if screen.is_empty() {
        Vec::new()
    } else {
        vec![screen.to_owned()]
    };
    let institution_id = text(FieldId::AO);
    let patron_identifier = text(FieldId::AA);
    let date = now();
    let typed = match request.command {
        Command::Login => AnyMessage::LoginResponse(LoginResponse::default()),
        Command::ScStatus => AnyMessage::AcsStatus(AcsStatus {
            timeout_period: 0,
            retries_allowed: 999,
            date_time_sync: date,
            protocol_version: "2.00".into(),
            institution_id,
            supported_messages: Supported::ESSENTIAL.to_bx(),
            screen_message,
            ..Default::default()
        }),
        Command::PatronStatus | Command::BlockPatron => {
            AnyMessage::PatronStatusResponse(PatronStatusResponse {
                patron_status: PRIVILEGES_DENIED.into(),
                transaction_date: date,
                institution_id,
                patron_identifier,
                screen_message,
                ..Default::default()
            })
        }
        Command::PatronInformation => {
            AnyMessage::PatronInformationResponse(PatronInformationResponse {
                patron_status: PRIVILEGES_DENIED.into(),
                transaction_date: date,
                institution_id,
                patron_identifier,
                screen_message,
                ..Default::default()
            })
        }
        Command::Checkout => AnyMessage::CheckoutResponse(CheckoutResponse {
            magnetic_media: None,
            desensitize: Some(false),
            transaction_date: date,
            institution_id,
            patron_identifier,
            item_identifier: text(FieldId::AB),
            screen_message,
            ..Default::default()
        }),
        Command::Renew => AnyMessage::RenewResponse(RenewResponse {
            magnetic_media: None,
            desensitize: Some(false),
            transaction_date: date,
            institution_id,
            patron_identifier,
            item_identifier: text(FieldId::AB),
            screen_message,
            ..Default::default()
        }),
        Command::Checkin => AnyMessage::CheckinResponse(CheckinResponse {
            // Not taken back: the item's security stays as it is, and an AMH sorter sends
            // it to its exception bin (alert).
            resensitize: false,
            magnetic_media: None,
            alert: true,
            transaction_date: date,
            institution_id,
            item_identifier: text(FieldId::AB),
            screen_message,
            ..Default::default()
        }),
        Command::ItemInformation => AnyMessage::ItemInformationResponse(ItemInformationResponse {
            circulation_status: 1,
            security_marker: 0,
            fee_type: 1,
            transaction_date: date,
            item_identifier: text(FieldId::AB),
            screen_message,
            ..Default::default()
        }),
        Command::ItemStatusUpdate => {
            AnyMessage::ItemStatusUpdateResponse(ItemStatusUpdateResponse {
                transaction_date: date,
                item_identifier: text(FieldId::AB),
                screen_message,
                ..Default::default()
            })
        }
        Command::RenewAll => AnyMessage::RenewAllResponse(RenewAllResponse {
            transaction_date: date,
            institution_id,
            screen_message,
            ..Default::default()
        }),
        Command::Hold => AnyMessage::HoldResponse(HoldResponse {
            transaction_date: date,
            institution_id,
            patron_identifier,
            item_identifier: opt(FieldId::AB),
            screen_message,
            ..Default::default()
        }),
        Command::FeePaid => AnyMessage::FeePaidResponse(FeePaidResponse {
            transaction_date: date,
            institution_id,
            patron_identifier,
            transaction_id: opt(FieldId::BK),
            screen_message,
            ..Default::default()
        }),
        Command::EndPatronSession => AnyMessage::EndSessionResponse(EndSessionResponse {
            transaction_date: date,
            institution_id,
            patron_identifier,
            screen_message,
            ..Default::default()
        }),
        Command::PatronEnable => AnyMessage::PatronEnableResponse(PatronEnableResponse {
            patron_status: PRIVILEGES_DENIED.into(),
            transaction_date: date,
            institution_id,
            patron_identifier,
            screen_message,
            ..Default::default()
        }),
        _ => AnyMessage::RequestScResend(RequestScResend::default()),
    };
    typed.to_message()
}

/// A 98 as one account may see it: BX only lists what the account may send, and the
/// checkin / checkout / renewal / status-update flags say no where the account may not.
/// Anything that is not a readable 98 is left alone.
pub fn restrict_acs_status(response: &mut Message, allowed: Supported) {
    if response.command != Command::AcsStatus {
        return;
    }
    let Ok(mut status) = AcsStatus::from_message(response) else {
        return;
    };
    let upstream = Supported::from_bx(&status.supported_messages);
    status.supported_messages = upstream.and(allowed).to_bx();
    status.checkin_ok &= allowed.contains(Command::Checkin);
    status.checkout_ok &= allowed.contains(Command::Checkout);
    status.acs_renewal_policy &= allowed.contains(Command::Renew);
    status.status_update_ok &= allowed.contains(Command::ItemStatusUpdate);
    let trailer = response.trailer;
    *response = status.to_message();
    response.trailer = trailer;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Trailer, WireFormat};

    fn request(frame: &str) -> Message {
        Message::decode(frame.as_bytes(), &WireFormat::default())
            .unwrap()
            .message
    }

    #[test]
    fn every_request_gets_a_refusal_of_its_own_response_type_that_encodes() {
        for &command in Command::ALL {
            let Some(answer) = command.response() else {
                continue;
            };
            let layout: String = command
                .fixed_layout()
                .iter()
                .map(|s| " ".repeat(s.len))
                .collect();
            let req = Message {
                command,
                fixed: layout,
                fields: vec![crate::frame::Field::new(FieldId::AB, "I1")],
                trailer: Trailer::None,
            };
            let refusal = refusal(&req, "Not allowed here");
            assert_eq!(refusal.command, answer, "{command}");
            assert!(refusal.encode(&WireFormat::default()).is_ok(), "{command}");
        }
    }

    #[test]
    fn a_refused_checkout_says_no_and_echoes_patron_and_item() {
        let r = refusal(
            &request("11YN20240101    000000                  AOI|AAP1|ABB1|"),
            "No",
        );
        let typed = CheckoutResponse::from_message(&r).unwrap();
        assert!(!typed.ok);
        assert_eq!(
            (
                typed.patron_identifier.as_str(),
                typed.item_identifier.as_str()
            ),
            ("P1", "B1")
        );
        assert_eq!(typed.screen_message, ["No"]);
    }

    #[test]
    fn an_account_sees_only_what_it_may_send_in_bx_and_the_flags() {
        let mut status = AcsStatus {
            online_status: true,
            checkin_ok: true,
            checkout_ok: true,
            acs_renewal_policy: true,
            status_update_ok: true,
            supported_messages: "YYYYYYYYYYYYYYYN".into(),
            ..Default::default()
        }
        .to_message();
        status.trailer = Trailer::Sequence(4);
        restrict_acs_status(
            &mut status,
            Supported::from_names(["checkin", "renew_all"]).unwrap(),
        );
        let typed = AcsStatus::from_message(&status).unwrap();
        assert_eq!(typed.supported_messages, "NNYNYYYNNNNNNNNN");
        assert!(typed.checkin_ok && !typed.checkout_ok && !typed.acs_renewal_policy);
        assert_eq!(status.trailer, Trailer::Sequence(4));
    }
}
