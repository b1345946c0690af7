//! What the face answers while the library system is offline: pure builders, one per
//! message, following the station's offline policy (src/station/offline.rs). The store
//! side (queueing, limits) is the handler's.
//!
//! **No-block transactions** (a kiosk that was offline itself sends what it already did,
//! no block `Y`, §1.7) are queued with the kiosk's own dates, see [`original`]: the replay
//! tells the library system the original transaction date of a loan (and the nb due date
//! the patron was given) and the original return date of a return, not when the gateway
//! received or replayed them, so no fine runs on for the time either was offline. They are
//! queued whatever the station's policy and limits say: the loan or return has already
//! happened at the kiosk, and refusing it would only lose the record of it.

use std::time::SystemTime;

use rfidgw_sip2::frame::{
    AcsStatus, Checkin, CheckinResponse, Checkout, CheckoutResponse, FieldId,
    ItemInformationResponse, Message, PatronInformationResponse, PatronStatusResponse,
    Sip2Message as _, parse_sip_datetime,
};
use rfidgw_sip2::server::Supported;
use rfidgw_sip2::server::responses::{PRIVILEGES_DENIED, now, refusal};

use crate::station::offline::OfflinePolicy;

/// Screen message of a return taken offline.
pub const CHECKIN_QUEUED: &str =
    "Returned. The library system is offline; this return is recorded as soon as it is back.";
/// Screen message when returns are not taken offline.
pub const CHECKIN_OFF: &str =
    "Returns cannot be taken right now: the library system is offline. Please see staff.";
/// Screen message when loans are not taken offline.
pub const CHECKOUT_OFF: &str =
    "Borrowing is not possible right now: the library system is offline. Please see staff.";
/// Screen message when the patron's offline limit is reached.
pub const CHECKOUT_LIMIT: &str =
    "No more items can be borrowed until the library system is back. Please see staff.";
/// Screen message for everything else.
pub const TRY_LATER: &str = "The library system is offline. Please try again later or see staff.";

/// Screen message of a loan made offline.
pub fn checkout_queued(due: &str) -> String {
    format!(
        "Borrowed offline, due {due}. Your account is updated as soon as the library system is back."
    )
}

/// When a loan or return taken offline happened, as the queue keeps it for the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Original {
    /// No block `Y`: the kiosk already carried it out and sends it late.
    pub no_block: bool,
    /// When the patron did it: for a no-block return its return date (else its
    /// transaction date), for a no-block loan its transaction date; otherwise the moment
    /// the gateway received it (a live request happens now, and a kiosk's clock may be off).
    pub at: SystemTime,
    /// The nb due date a no-block loan gave the patron, when the kiosk filled it in.
    pub due: Option<SystemTime>,
}

/// The dates of a checkout or checkin request received at `received` (see [`Original`]).
/// A date that cannot be read falls back to `received`.
pub fn original(request: &Message, received: SystemTime) -> Original {
    let live = Original {
        no_block: false,
        at: received,
        due: None,
    };
    match request.command {
        rfidgw_sip2::Command::Checkin => match Checkin::from_message(request) {
            Ok(checkin) if checkin.no_block => Original {
                no_block: true,
                at: parse_sip_datetime(&checkin.return_date)
                    .or_else(|| parse_sip_datetime(&checkin.transaction_date))
                    .unwrap_or(received),
                due: None,
            },
            _ => live,
        },
        rfidgw_sip2::Command::Checkout => match Checkout::from_message(request) {
            Ok(checkout) if checkout.no_block => Original {
                no_block: true,
                at: parse_sip_datetime(&checkout.transaction_date).unwrap_or(received),
                due: parse_sip_datetime(&checkout.nb_due_date),
            },
            _ => live,
        },
        _ => live,
    }
}

fn text(request: &Message, id: FieldId) -> String {
    request.field(id).unwrap_or_default().to_owned()
}

/// 10 for a return taken offline: ok, re-secure the item, no sort bin from the ILS.
pub fn checkin_accepted(request: &Message, institution: &str) -> Message {
    CheckinResponse {
        ok: true,
        resensitize: true,
        magnetic_media: None,
        alert: false,
        transaction_date: now(),
        institution_id: institution.to_owned(),
        item_identifier: text(request, FieldId::AB),
        screen_message: vec![CHECKIN_QUEUED.into()],
        ..Default::default()
    }
    .to_message()
}

/// 12 for a loan made offline: ok, unsecure the item, the policy's due date.
pub fn checkout_accepted(request: &Message, institution: &str, due: &str) -> Message {
    CheckoutResponse {
        ok: true,
        renewal_ok: false,
        magnetic_media: None,
        desensitize: Some(true),
        transaction_date: now(),
        institution_id: institution.to_owned(),
        patron_identifier: text(request, FieldId::AA),
        item_identifier: text(request, FieldId::AB),
        due_date: due.to_owned(),
        screen_message: vec![checkout_queued(due)],
        ..Default::default()
    }
    .to_message()
}

/// 24 or 64 while offline: the patron cannot be checked, so when the policy lends
/// offline the kiosk is told to go on (valid, no blocks) and otherwise that borrowing is
/// not possible (privileges denied), each with a screen message that says why.
pub fn patron_answer(request: &Message, institution: &str, policy: &OfflinePolicy) -> Message {
    let lends = policy.takes_checkouts();
    let (status, screen) = if lends {
        (
            " ".repeat(14),
            "The library system is offline: loans are recorded and sent on when it is back.",
        )
    } else {
        (PRIVILEGES_DENIED.to_owned(), CHECKOUT_OFF)
    };
    let pin_given = request
        .field(FieldId::AD)
        .is_some_and(|pin| !pin.is_empty());
    let valid = Some("Y".to_owned());
    let valid_pin = pin_given.then(|| "Y".to_owned());
    let patron = text(request, FieldId::AA);
    if request.command == rfidgw_sip2::Command::PatronInformation {
        PatronInformationResponse {
            patron_status: status,
            transaction_date: now(),
            institution_id: institution.to_owned(),
            patron_identifier: patron,
            valid_patron: valid,
            valid_patron_password: valid_pin,
            screen_message: vec![screen.into()],
            ..Default::default()
        }
        .to_message()
    } else {
        PatronStatusResponse {
            patron_status: status,
            transaction_date: now(),
            institution_id: institution.to_owned(),
            patron_identifier: patron,
            valid_patron: valid,
            valid_patron_password: valid_pin,
            screen_message: vec![screen.into()],
            ..Default::default()
        }
        .to_message()
    }
}

/// 18 while offline, from the loans cache: 04 charged, 03 available, 01 other (unknown).
pub fn item_answer(request: &Message, on_loan: Option<bool>) -> Message {
    ItemInformationResponse {
        circulation_status: match on_loan {
            Some(true) => 4,
            Some(false) => 3,
            None => 1,
        },
        security_marker: 0,
        fee_type: 1,
        transaction_date: now(),
        item_identifier: text(request, FieldId::AB),
        screen_message: vec![
            "The library system is offline; this is the gateway's last known state.".into(),
        ],
        ..Default::default()
    }
    .to_message()
}

/// 98 while offline: on-line N, checkin / checkout ok as the policy takes them, off-line
/// ok when it takes anything, timeout period 000 (§1.4: ACS off-line).
pub fn status_answer(
    policy: &OfflinePolicy,
    institution: &str,
    location: Option<&str>,
    library_name: Option<&str>,
    supported: Supported,
) -> Message {
    let screen = if policy.takes_checkouts() {
        "The library system is offline: returns and loans are recorded and sent on when it is back."
    } else if policy.takes_checkins() {
        "The library system is offline: returns are recorded and sent on when it is back; no loans."
    } else {
        "The library system is offline: please see staff."
    };
    AcsStatus {
        online_status: false,
        checkin_ok: policy.takes_checkins(),
        checkout_ok: policy.takes_checkouts(),
        acs_renewal_policy: false,
        status_update_ok: false,
        offline_ok: policy.takes_checkins(),
        timeout_period: 0,
        retries_allowed: 999,
        date_time_sync: now(),
        protocol_version: "2.00".into(),
        institution_id: institution.to_owned(),
        library_name: library_name.map(str::to_owned),
        supported_messages: supported.to_bx(),
        terminal_location: location.map(str::to_owned),
        screen_message: vec![screen.into()],
        ..Default::default()
    }
    .to_message()
}

/// Anything else offline: the message's own "no".
pub fn try_later(request: &Message) -> Message {
    refusal(request, TRY_LATER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::offline::OfflineMode;
    use rfidgw_sip2::frame::{Sip2Message, WireFormat};

    fn request(frame: &str) -> Message {
        Message::decode(frame.as_bytes(), &WireFormat::default())
            .unwrap()
            .message
    }

    fn policy(mode: OfflineMode) -> OfflinePolicy {
        OfflinePolicy {
            mode,
            ..OfflinePolicy::default()
        }
    }

    #[test]
    fn offline_status_follows_the_policy() {
        // (mode, checkin ok, checkout ok, off-line ok)
        let rows = [
            (OfflineMode::Off, false, false, false),
            (OfflineMode::Checkin, true, false, true),
            (OfflineMode::CheckinCheckout, true, true, true),
        ];
        for (mode, checkin, checkout, offline) in rows {
            let m = status_answer(&policy(mode), "DEMO", Some("BR1"), None, Supported::ALL);
            let s = AcsStatus::from_message(&m).unwrap();
            assert!(!s.online_status, "{mode:?}");
            assert_eq!(
                (s.checkin_ok, s.checkout_ok, s.offline_ok),
                (checkin, checkout, offline),
                "{mode:?}"
            );
            assert_eq!(s.timeout_period, 0);
            assert_eq!(s.screen_message.len(), 1);
        }
    }

    #[test]
    fn an_offline_patron_may_go_on_only_where_loans_are_taken() {
        let req = request("23000                  AOX|AAP1|AC|AD1234|");
        let on = PatronStatusResponse::from_message(&patron_answer(
            &req,
            "X",
            &policy(OfflineMode::CheckinCheckout),
        ))
        .unwrap();
        assert_eq!(on.patron_status.trim(), "");
        assert_eq!(on.valid_patron_password.as_deref(), Some("Y"));
        let off = PatronStatusResponse::from_message(&patron_answer(
            &req,
            "X",
            &policy(OfflineMode::Checkin),
        ))
        .unwrap();
        assert!(off.patron_status.starts_with('Y'));
        assert_eq!(off.screen_message, [CHECKOUT_OFF]);
    }

    #[test]
    fn no_block_transactions_keep_the_kiosks_dates_and_live_ones_take_the_gateways() {
        use std::time::{Duration, UNIX_EPOCH};
        let received = UNIX_EPOCH + Duration::from_hours(500_000);
        let day = |d: u64, h: u64| {
            UNIX_EPOCH + Duration::from_secs(1_704_067_200 + d * 86_400 + h * 3600)
        };
        // (request, no block, at, due)
        let rows = [
            (
                "09Y20240102   Z10000020240101   Z090000AOX|ABI1|AP|",
                true,
                day(0, 9),
                None,
            ),
            (
                "09Y20240102   Z100000                  AOX|ABI1|AP|",
                true,
                day(1, 10),
                None,
            ),
            (
                "09N20240102   Z10000020240101   Z090000AOX|ABI1|AP|",
                false,
                received,
                None,
            ),
            (
                "11YY20240103   Z12000020240117   Z120000AOX|AAP1|ABI1|AC|",
                true,
                day(2, 12),
                Some(day(16, 12)),
            ),
            (
                "11YY20240103   Z120000                  AOX|AAP1|ABI1|AC|",
                true,
                day(2, 12),
                None,
            ),
            (
                "11YYgarbage-date      20240117   Z120000AOX|AAP1|ABI1|AC|",
                true,
                received,
                Some(day(16, 12)),
            ),
            (
                "11YN20240103   Z12000020240117   Z120000AOX|AAP1|ABI1|AC|",
                false,
                received,
                None,
            ),
            ("1720240103   Z120000AOX|ABI1|", false, received, None),
        ];
        for (frame, no_block, at, due) in rows {
            assert_eq!(
                original(&request(frame), received),
                Original { no_block, at, due },
                "{frame}"
            );
        }
    }

    #[test]
    fn offline_item_information_comes_from_the_loans_cache() {
        let req = request("1720240101    000000AOX|ABI1|");
        for (on_loan, code) in [(Some(true), 4), (Some(false), 3), (None, 1)] {
            let r = ItemInformationResponse::from_message(&item_answer(&req, on_loan)).unwrap();
            assert_eq!(r.circulation_status, code);
            assert_eq!(r.item_identifier, "I1");
        }
    }
}
