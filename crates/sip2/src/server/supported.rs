//! The 16 "supported messages" positions of 98's BX field (PROTOCOLS.md §1.7), as a set.
//!
//! The face fills BX honestly: a position is `Y` only when the face implements the message,
//! the kiosk's account may send it, and the upstream ACS supports it.

use std::fmt;

use crate::frame::Command;

/// BX positions 0–15 in spec order, with the names config files use.
const POSITIONS: [(&str, &[Command]); 16] = [
    ("patron_status", &[Command::PatronStatus]),
    ("checkout", &[Command::Checkout]),
    ("checkin", &[Command::Checkin]),
    ("block_patron", &[Command::BlockPatron]),
    ("sc_status", &[Command::ScStatus]),
    ("resend", &[Command::RequestAcsResend]),
    ("login", &[Command::Login]),
    ("patron_information", &[Command::PatronInformation]),
    ("end_patron_session", &[Command::EndPatronSession]),
    ("fee_paid", &[Command::FeePaid]),
    ("item_information", &[Command::ItemInformation]),
    ("item_status_update", &[Command::ItemStatusUpdate]),
    ("patron_enable", &[Command::PatronEnable]),
    ("hold", &[Command::Hold]),
    ("renew", &[Command::Renew]),
    ("renew_all", &[Command::RenewAll]),
];

/// Positions a session always needs: SC/ACS status, resend and login.
const ESSENTIAL: u16 = (1 << 4) | (1 << 5) | (1 << 6);

/// A set of SIP2 request messages, in BX order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Supported(u16);

impl Supported {
    /// Every message.
    pub const ALL: Self = Self(u16::MAX);

    /// Only what a session always needs (status, resend, login).
    pub const ESSENTIAL: Self = Self(ESSENTIAL);

    /// The set a BX value describes (`Y` at a position; anything else, or a short value, is
    /// "not supported").
    pub fn from_bx(bx: &str) -> Self {
        Self(
            bx.chars()
                .take(16)
                .enumerate()
                .filter(|(_, c)| c.eq_ignore_ascii_case(&'Y'))
                .fold(0, |bits, (i, _)| bits | (1 << i)),
        )
    }

    /// The BX value: 16 `Y`/`N` characters.
    pub fn to_bx(self) -> String {
        (0..16)
            .map(|i| if self.0 & (1 << i) != 0 { 'Y' } else { 'N' })
            .collect()
    }

    /// The set named in config (`checkout`, `renew_all`, … or the two-digit codes `11`,
    /// `65`, …), always with the essential three. Returns the first unknown name.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut bits = ESSENTIAL;
        for name in names {
            let position = POSITIONS
                .iter()
                .position(|(n, commands)| *n == name || commands.iter().any(|c| c.code() == name))
                .ok_or_else(|| name.to_owned())?;
            bits |= 1 << position;
        }
        Ok(Self(bits))
    }

    /// Every name config files may use.
    pub fn names() -> impl Iterator<Item = &'static str> {
        POSITIONS.iter().map(|(n, _)| *n)
    }

    /// The BX position of a request command (`None` for responses).
    pub fn position(command: Command) -> Option<usize> {
        POSITIONS
            .iter()
            .position(|(_, commands)| commands.contains(&command))
    }

    /// The config name of a request command (`None` for responses).
    pub fn name(command: Command) -> Option<&'static str> {
        Self::position(command).and_then(|p| POSITIONS.get(p).map(|(n, _)| *n))
    }

    /// Whether the set holds this request (responses never).
    pub fn contains(self, command: Command) -> bool {
        Self::position(command).is_some_and(|p| self.0 & (1 << p) != 0)
    }

    /// Both sets at once.
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Without one message.
    #[must_use]
    pub fn without(self, command: Command) -> Self {
        match Self::position(command) {
            Some(p) => Self(self.0 & !(1 << p)),
            None => self,
        }
    }
}

impl Default for Supported {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Debug for Supported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Supported({})", self.to_bx())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bx_round_trips_and_short_values_mean_not_supported() {
        let s = Supported::from_bx("YYYNYYYYYYYYYYYY");
        assert_eq!(s.to_bx(), "YYYNYYYYYYYYYYYY");
        assert!(!s.contains(Command::BlockPatron));
        assert!(s.contains(Command::Checkout));
        assert_eq!(Supported::from_bx("YY").to_bx(), "YYNNNNNNNNNNNNNN");
    }

    #[test]
    fn names_and_codes_select_positions_and_the_essentials_are_always_in() {
        let s = Supported::from_names(["checkin", "17"]).unwrap();
        assert_eq!(s.to_bx(), "NNYNYYYNNNYNNNNN");
        assert_eq!(Supported::from_names(["lend"]), Err("lend".to_owned()));
        assert!(!s.contains(Command::CheckoutResponse));
        assert_eq!(Supported::name(Command::RenewAll), Some("renew_all"));
    }

    #[test]
    fn sets_intersect_and_drop_members() {
        let a = Supported::from_names(["checkout", "checkin"]).unwrap();
        let b = Supported::from_names(["checkin", "renew"]).unwrap();
        assert_eq!(a.and(b).to_bx(), "NNYNYYYNNNNNNNNN");
        assert!(!a.without(Command::Checkout).contains(Command::Checkout));
    }
}
