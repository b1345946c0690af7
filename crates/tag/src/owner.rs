//! Owner classification: is an item ours, or another library's (interlibrary loans)?

use serde::{Deserialize, Serialize};

/// The owner as the tag states it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Owner {
    /// An ISIL (ISO 15511), e.g. `DK-715700`.
    Isil {
        /// The ISIL.
        isil: String,
    },
    /// Country and library as the Danish data model stores them.
    CountryLibrary {
        /// Country code (may be empty).
        country: String,
        /// Library.
        library: String,
    },
    /// RFID501 branch and library numbers.
    LibraryNumber {
        /// Branch (12 bits).
        branch: u16,
        /// Library (20 bits).
        library: u32,
    },
}

/// One of our libraries by country and library, as a Danish-model tag stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryLibrary {
    /// Country code, e.g. `DK`.
    pub country: String,
    /// Library code, e.g. `715700`.
    pub library: String,
}

/// The site's own institutions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerConfig {
    /// Our ISILs (compared case-insensitively, ISO 15511).
    pub isils: Vec<String>,
    /// Our libraries as country + library pairs.
    pub libraries: Vec<CountryLibrary>,
    /// Our RFID501 library numbers.
    pub library_numbers: Vec<u32>,
}

/// Whether an item belongs to this site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerClass {
    /// Owned by one of our institutions.
    Ours,
    /// Owned by another institution (interlibrary loan, another library's item).
    Foreign,
    /// The tag names no owner, or the site lists none of its own.
    Unknown,
}

impl OwnerConfig {
    /// True when the site lists none of its institutions.
    pub fn is_empty(&self) -> bool {
        self.isils.is_empty() && self.libraries.is_empty() && self.library_numbers.is_empty()
    }

    fn has_isil(&self, isil: &str) -> bool {
        self.isils
            .iter()
            .any(|ours| ours.eq_ignore_ascii_case(isil))
    }

    fn has_pair(&self, country: &str, library: &str) -> bool {
        self.libraries.iter().any(|ours| {
            ours.country.eq_ignore_ascii_case(country) && ours.library.eq_ignore_ascii_case(library)
        })
    }

    /// Classifies an owner.
    pub fn classify(&self, owner: Option<&Owner>) -> OwnerClass {
        let Some(owner) = owner else {
            return OwnerClass::Unknown;
        };
        if self.is_empty() {
            return OwnerClass::Unknown;
        }
        let ours = match owner {
            Owner::Isil { isil } => {
                self.has_isil(isil)
                    || isil
                        .split_once('-')
                        .is_some_and(|(country, library)| self.has_pair(country, library))
            }
            Owner::CountryLibrary { country, library } => {
                self.has_pair(country, library) || self.has_isil(&format!("{country}-{library}"))
            }
            Owner::LibraryNumber { library, .. } => self.library_numbers.contains(library),
        };
        if ours {
            OwnerClass::Ours
        } else {
            OwnerClass::Foreign
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_matched_by_isil_or_country_and_library() {
        let config = OwnerConfig {
            isils: vec!["DK-715700".into()],
            libraries: vec![CountryLibrary {
                country: "DE".into(),
                library: "705".into(),
            }],
            library_numbers: vec![1_048_575],
        };
        let pair = |c: &str, l: &str| Owner::CountryLibrary {
            country: c.into(),
            library: l.into(),
        };
        let isil = |i: &str| Owner::Isil { isil: i.into() };
        let cases = [
            (Some(pair("DK", "715700")), OwnerClass::Ours),
            (Some(pair("DE", "705")), OwnerClass::Ours),
            (Some(pair("DE", "706")), OwnerClass::Foreign),
            (Some(isil("dk-715700")), OwnerClass::Ours),
            (Some(isil("DE-705")), OwnerClass::Ours),
            (Some(isil("US-InU-Mu")), OwnerClass::Foreign),
            (
                Some(Owner::LibraryNumber {
                    branch: 1,
                    library: 1_048_575,
                }),
                OwnerClass::Ours,
            ),
            (
                Some(Owner::LibraryNumber {
                    branch: 1,
                    library: 7,
                }),
                OwnerClass::Foreign,
            ),
            (None, OwnerClass::Unknown),
        ];
        for (owner, expected) in cases {
            assert_eq!(config.classify(owner.as_ref()), expected, "{owner:?}");
        }
    }

    #[test]
    fn a_site_without_its_own_institutions_cannot_tell_foreign_items() {
        let owner = Owner::Isil {
            isil: "DK-1".into(),
        };
        assert_eq!(
            OwnerConfig::default().classify(Some(&owner)),
            OwnerClass::Unknown
        );
    }
}
