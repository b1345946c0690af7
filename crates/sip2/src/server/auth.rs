//! Kiosk credentials: the login password (CO) of each account, never kept in clear.
//!
//! Two forms, both checked in constant time:
//!
//! * `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>` (PBKDF2-HMAC-SHA256, the hash
//!   32 bytes), for a hash written into the config file. Make one with
//!   `python3 -c 'import hashlib,os,sys; s=os.urandom(16); i=100000; print("pbkdf2-sha256$%d$%s$%s" % (i, s.hex(), hashlib.pbkdf2_hmac("sha256", sys.argv[1].encode(), s, i).hex()))' PASSWORD`
//!   or [`Credential::hash_password`].
//! * a password read from a file (`password_file`), kept only as its SHA-256.

use std::fmt;
use std::num::NonZeroU32;

use ring::{digest, pbkdf2};

use crate::secret::Secret;

/// How a kiosk's login password is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// PBKDF2-HMAC-SHA256.
    Pbkdf2 {
        /// Iterations.
        iterations: NonZeroU32,
        /// Salt.
        salt: Vec<u8>,
        /// Derived key (32 bytes).
        hash: Vec<u8>,
    },
    /// SHA-256 of a password read from a file.
    Sha256([u8; 32]),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pbkdf2 { iterations, .. } => {
                write!(f, "Credential(pbkdf2-sha256, {iterations} iterations, ***)")
            }
            Self::Sha256(_) => f.write_str("Credential(sha256, ***)"),
        }
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Credential {
    /// Reads a `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>` string. The error says
    /// what is wrong, without repeating the value.
    pub fn parse_hash(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.trim().split('$').collect();
        let [scheme, iterations, salt, hash] = parts.as_slice() else {
            return Err(
                "expected pbkdf2-sha256$<iterations>$<salt hex>$<hash hex> (4 parts separated by $)"
                    .into(),
            );
        };
        if *scheme != "pbkdf2-sha256" {
            return Err(format!(
                "unknown scheme {scheme:?}; only pbkdf2-sha256 is supported"
            ));
        }
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or("the iteration count must be a whole number from 1 up")?;
        let salt = unhex(salt)
            .filter(|s| !s.is_empty())
            .ok_or("the salt must be hex digits")?;
        let hash = unhex(hash)
            .filter(|h| h.len() == 32)
            .ok_or("the hash must be 64 hex digits (32 bytes)")?;
        Ok(Self::Pbkdf2 {
            iterations,
            salt,
            hash,
        })
    }

    /// The credential for a password read from a file (its first line, without the line
    /// break).
    pub fn from_password(password: &Secret) -> Self {
        let digest = digest::digest(&digest::SHA256, password.expose().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self::Sha256(out)
    }

    /// A `pbkdf2-sha256$…` string for `password` with a random salt.
    pub fn hash_password(password: &Secret, iterations: NonZeroU32) -> String {
        let salt: [u8; 16] = rand::random();
        let mut hash = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.expose().as_bytes(),
            &mut hash,
        );
        format!("pbkdf2-sha256${iterations}${}${}", hex(&salt), hex(&hash))
    }

    /// Whether `given` is the password.
    pub fn verify(&self, given: &Secret) -> bool {
        match self {
            Self::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA256,
                *iterations,
                salt,
                given.expose().as_bytes(),
                hash,
            )
            .is_ok(),
            Self::Sha256(want) => {
                let got = digest::digest(&digest::SHA256, given.expose().as_bytes());
                // Compare every byte (no early exit): the digests leak nothing useful, but
                // a uniform comparison costs nothing either.
                got.as_ref()
                    .iter()
                    .zip(want)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_others_do_not() {
        let text =
            Credential::hash_password(&Secret::new("kiosk-pw"), NonZeroU32::new(1000).unwrap());
        let c = Credential::parse_hash(&text).unwrap();
        assert!(c.verify(&Secret::new("kiosk-pw")));
        assert!(!c.verify(&Secret::new("kiosk-pW")));
        assert!(!format!("{c:?}").contains(&text[20..]));
    }

    #[test]
    fn a_python_made_hash_is_read() {
        // hashlib.pbkdf2_hmac("sha256", b"kiosk1", bytes.fromhex("00112233"), 1000).hex()
        let c = Credential::parse_hash(
            "pbkdf2-sha256$1000$00112233$a07aa0c967a043170d680abe18ea045843837f9b575a6c873ecfbacf46d62d98",
        )
        .unwrap();
        assert!(c.verify(&Secret::new("kiosk1")));
    }

    #[test]
    fn malformed_hashes_say_what_is_wrong() {
        for (text, want) in [
            ("plain", "4 parts"),
            ("md5$1$00$00", "unknown scheme"),
            ("pbkdf2-sha256$0$00$00", "iteration"),
            ("pbkdf2-sha256$10$zz$00", "salt"),
            ("pbkdf2-sha256$10$00$0011", "64 hex digits"),
        ] {
            let err = Credential::parse_hash(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_password_from_a_file_is_checked_by_digest() {
        let c = Credential::from_password(&Secret::new("from-file"));
        assert!(c.verify(&Secret::new("from-file")));
        assert!(!c.verify(&Secret::new("from-fil")));
    }
}
