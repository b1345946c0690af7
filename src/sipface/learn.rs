//! What a kiosk's exchange teaches the gateway: whether an item is now on loan (for the
//! gate's loans cache) and the facts the journal keeps. Pure: (request, answer) in,
//! [`Lesson`] out.

use rfidgw_sip2::frame::{Command, FieldId, Message};

/// What one exchange says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lesson {
    /// The item concerned, if any.
    pub item: Option<String>,
    /// Items whose loan state the answer settles: `(item, on loan)`.
    pub loans: Vec<(String, bool)>,
    /// `accepted`, `refused` or `answered` (a lookup).
    pub outcome: &'static str,
    /// AF.
    pub screen_message: Vec<String>,
    /// AH.
    pub due_date: Option<String>,
    /// CL.
    pub sort_bin: Option<String>,
}

/// Whether an answer says yes: `1` for ok flags (12, 10, 20, 30, 66, 16), `Y` for 38 and
/// 36. `None` for lookups, which say no yes or no.
pub fn said_yes(response: &Message) -> Option<bool> {
    let first = response.fixed.chars().next();
    match response.command {
        Command::CheckoutResponse
        | Command::CheckinResponse
        | Command::RenewResponse
        | Command::RenewAllResponse
        | Command::HoldResponse
        | Command::ItemStatusUpdateResponse => Some(matches!(first, Some('1' | 'Y' | 'y'))),
        Command::FeePaidResponse | Command::EndSessionResponse => {
            Some(matches!(first, Some('Y' | 'y')))
        }
        _ => None,
    }
}

fn nonblank(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty()).map(str::to_owned)
}

/// What `response` to `request` teaches.
pub fn lesson(request: &Message, response: &Message) -> Lesson {
    let item = nonblank(request.field(FieldId::AB));
    let yes = said_yes(response);
    let mut loans = Vec::new();
    match (request.command, yes, &item) {
        (Command::Checkout | Command::Renew, Some(true), Some(item)) => {
            loans.push((item.clone(), true));
        }
        (Command::Checkin, Some(true), Some(item)) => loans.push((item.clone(), false)),
        (Command::RenewAll, Some(true), _) => {
            loans.extend(
                response
                    .field_values(FieldId::BM)
                    .map(|i| (i.to_owned(), true)),
            );
        }
        (Command::ItemInformation, _, Some(item))
            if response.command == Command::ItemInformationResponse =>
        {
            // §1.7 circulation status: 04/05 charged; 03 available, 08 hold shelf,
            // 09 re-shelving, 10 transit are not on loan; others say nothing.
            match response.fixed.get(..2) {
                Some("04" | "05") => loans.push((item.clone(), true)),
                Some("03" | "08" | "09" | "10") => loans.push((item.clone(), false)),
                _ => {}
            }
        }
        _ => {}
    }
    Lesson {
        item,
        loans,
        outcome: match yes {
            Some(true) => "accepted",
            Some(false) => "refused",
            None => "answered",
        },
        screen_message: response
            .field_values(FieldId::AF)
            .map(str::to_owned)
            .collect(),
        due_date: nonblank(response.field(FieldId::AH)),
        sort_bin: nonblank(response.field(FieldId::CL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfidgw_sip2::frame::WireFormat;

    fn m(frame: &str) -> Message {
        Message::decode(frame.as_bytes(), &WireFormat::default())
            .unwrap()
            .message
    }

    /// (request, answer, loans learned, outcome)
    type Row<'a> = (&'a Message, &'a str, Vec<(String, bool)>, &'a str);

    #[test]
    fn loans_and_returns_are_learned_from_the_answers() {
        let checkout = m("11YN20240101    000000                  AOX|AAP1|ABI1|AC|");
        let checkin = m("09N20240101    00000020240101    000000AP|AOX|ABI1|AC|");
        let info = m("1720240101    000000AOX|ABI1|");
        let rows: [Row; 5] = [
            (
                &checkout,
                "121NNY20240101    000000AOX|AAP1|ABI1|AJT|AH2024-02-01|",
                vec![("I1".into(), true)],
                "accepted",
            ),
            (
                &checkout,
                "120NNN20240101    000000AOX|AAP1|ABI1|AJ|AH|AFNo|",
                vec![],
                "refused",
            ),
            (
                &checkin,
                "101YNN20240101    000000AOX|ABI1|AQ|CLB7|",
                vec![("I1".into(), false)],
                "accepted",
            ),
            (
                &info,
                "1804000120240101    000000ABI1|AJT|",
                vec![("I1".into(), true)],
                "answered",
            ),
            (
                &info,
                "1813000120240101    000000ABI1|AJT|",
                vec![],
                "answered",
            ),
        ];
        for (request, answer, loans, outcome) in rows {
            let l = lesson(request, &m(answer));
            assert_eq!((l.loans, l.outcome), (loans, outcome), "{answer}");
        }
        let l = lesson(
            &checkin,
            &m("101YNN20240101    000000AOX|ABI1|AQ|CLB7|AFThanks|"),
        );
        assert_eq!(l.sort_bin.as_deref(), Some("B7"));
        assert_eq!(l.screen_message, ["Thanks"]);
    }
}
