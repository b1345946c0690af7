//! The site's tag settings: the daemon's `[tags]` config section.

use serde::{Deserialize, Serialize};

use crate::TagModel;
use crate::isil;
use crate::owner::OwnerConfig;
use crate::security::{SecurityConfig, SecurityMode};
use crate::uhf::EpcLayout;

/// Everything about tags that differs between sites (DESIGN principle 6). Embedded by the
/// daemon as `[tags]`; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// How security state is read: mode and AFI pair (`[tags.security]`).
    pub security: SecurityConfig,
    /// Our institutions; items of others are foreign (`[tags.owners]`).
    pub owners: OwnerConfig,
    /// The site writes the truncated 32-byte ISO 28560-3 basic block, and a tag with more
    /// memory may be read in that form when the 34-byte CRC fails.
    pub truncated_basic_block: bool,
    /// The DSFID that marks ISO 28560-2 tags at this site (the standard's value was not
    /// verified, PROTOCOLS.md §2.2). Without it, ISO 28560-2 is recognised by its structure.
    #[serde(with = "hex_byte_opt")]
    pub iso28560_2_dsfid: Option<u8>,
    /// The DSFID that marks ISO 28560-3 tags at this site (many Danish-model tags leave it
    /// 00, so there is no default). When a tag's memory reads both ways, a reported DSFID
    /// equal to one of the two settings decides, and one that differs from a setting rules
    /// that model out.
    #[serde(with = "hex_byte_opt")]
    pub iso28560_3_dsfid: Option<u8>,
    /// UHF site EPC layouts, tried in order (`[[tags.epc_layouts]]`).
    pub epc_layouts: Vec<EpcLayout>,
}

/// A `[tags]` setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Secured and unsecured AFI are the same.
    #[error(
        "tags.security: secured_afi and unsecured_afi are both {0:02X}; the AFI would carry no security"
    )]
    SameAfi(u8),
    /// An owner ISIL that ISO 15511 does not allow.
    #[error("tags.owners.isils[{index}]: {source}")]
    Isil {
        /// Index in the list.
        index: usize,
        /// Why.
        #[source]
        source: isil::IsilError,
    },
    /// A site EPC layout that does not fit.
    #[error("tags.epc_layouts[{index}]: {source}")]
    Layout {
        /// Index in the list.
        index: usize,
        /// Why.
        #[source]
        source: crate::uhf::UhfError,
    },
    /// The two models' DSFIDs are the same, so the DSFID could not tell them apart.
    #[error(
        "tags.iso28560_2_dsfid and tags.iso28560_3_dsfid are both {0:02X}; the DSFID would not tell the models apart"
    )]
    SameDsfid(u8),
    /// Mode `epc-bit` with no layout that has a security bit.
    #[error(
        "tags.security.mode = \"epc-bit\" needs an entry in tags.epc_layouts with a security_bit"
    )]
    NoSecurityBit,
}

impl SiteConfig {
    /// The DSFID this site gives `model`, if it sets one (ISO 28560-2 and -3 only): what a
    /// writer puts on a tag together with that model's data.
    pub fn dsfid_of(&self, model: TagModel) -> Option<u8> {
        match model {
            TagModel::Iso28560_2 => self.iso28560_2_dsfid,
            TagModel::Iso28560_3 => self.iso28560_3_dsfid,
            _ => None,
        }
    }

    /// The model a tag's `dsfid` names under this site's settings. DSFID 00 is what an
    /// unprogrammed tag reports, so it names a model only when the site configures 00.
    pub fn model_of_dsfid(&self, dsfid: u8) -> Option<TagModel> {
        [TagModel::Iso28560_2, TagModel::Iso28560_3]
            .into_iter()
            .find(|&model| self.dsfid_of(model) == Some(dsfid))
    }

    /// Checks the settings; the message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.security.mode == SecurityMode::Afi
            && self.security.secured_afi == self.security.unsecured_afi
        {
            return Err(ConfigError::SameAfi(self.security.secured_afi));
        }
        if let (Some(two), Some(three)) = (self.iso28560_2_dsfid, self.iso28560_3_dsfid)
            && two == three
        {
            return Err(ConfigError::SameDsfid(two));
        }
        for (index, isil) in self.owners.isils.iter().enumerate() {
            isil::validate(isil).map_err(|source| ConfigError::Isil { index, source })?;
        }
        for (index, layout) in self.epc_layouts.iter().enumerate() {
            layout
                .validate()
                .map_err(|source| ConfigError::Layout { index, source })?;
        }
        if self.security.mode == SecurityMode::EpcBit
            && !self.epc_layouts.iter().any(|l| l.security_bit.is_some())
        {
            return Err(ConfigError::NoSecurityBit);
        }
        Ok(())
    }
}

/// A byte written as an integer (`0xC2`, `194`) or as hex text (`"C2"`, `"0xC2"`).
pub(crate) mod hex_byte {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(crate) enum Raw {
        Int(i64),
        Text(String),
    }

    pub(crate) fn from_raw(raw: Raw) -> Result<u8, String> {
        match raw {
            Raw::Int(value) => {
                u8::try_from(value).map_err(|_| format!("{value} is not a byte (0-255)"))
            }
            Raw::Text(text) => {
                let digits = text.trim_start_matches("0x").trim_start_matches("0X");
                if digits.len() != 2 {
                    return Err(format!("{text:?} is not two hex digits"));
                }
                u8::from_str_radix(digits, 16)
                    .map_err(|_| format!("{text:?} is not two hex digits"))
            }
        }
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` passes a reference
    pub(crate) fn serialize<S: Serializer>(value: &u8, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:02X}"))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
        from_raw(Raw::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

mod hex_byte_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::hex_byte::{Raw, from_raw};

    #[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)] // serde's `with` passes a reference
    pub(super) fn serialize<S: Serializer>(
        value: &Option<u8>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(byte) => serializer.serialize_str(&format!("{byte:02X}")),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u8>, D::Error> {
        Option::<Raw>::deserialize(deserializer)?
            .map(from_raw)
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}
