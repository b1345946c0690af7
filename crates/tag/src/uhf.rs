//! UHF (EPC Gen2) item identities: the PC word with its AFI, URN Code 40, GS1 SGTIN-96 and
//! configurable site EPC layouts such as DE290 (PROTOCOLS.md §2.5, §3.4).

use serde::{Deserialize, Serialize};

/// EPC header of SGTIN-96 (GS1 EPC Tag Data Standard, §2.5).
pub const SGTIN96_HEADER: u8 = 0x30;
/// Size of an SGTIN-96 EPC.
pub const SGTIN96_LEN: usize = 12;
/// Serial number bits of SGTIN-96.
const SERIAL_BITS: u32 = 38;
/// Partition table (§2.5): (company prefix bits, digits, item reference bits, digits).
const PARTITIONS: [(u32, usize, u32, usize); 7] = [
    (40, 12, 4, 1),
    (37, 11, 7, 2),
    (34, 10, 10, 3),
    (30, 9, 14, 4),
    (27, 8, 17, 5),
    (24, 7, 20, 6),
    (20, 6, 24, 7),
];

/// What went wrong reading or writing a UHF identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UhfError {
    /// Not an SGTIN-96 EPC.
    #[error("SGTIN-96: {0}")]
    Sgtin(String),
    /// URN Code 40 data that cannot be read or text it cannot carry.
    #[error("URN Code 40: {0}")]
    Code40(String),
    /// A site EPC layout that does not fit the EPC or the value.
    #[error("EPC layout {layout:?}: {problem}")]
    Layout {
        /// The layout's name.
        layout: String,
        /// What is wrong.
        problem: String,
    },
}

/// The Gen2 protocol-control word (§2.5): EPC length, UMI, XI, toggle and AFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PcWord(pub u16);

impl PcWord {
    /// EPC length in 16-bit words (bits 15-11).
    pub const fn epc_words(self) -> u8 {
        (self.0 >> 11) as u8
    }

    /// User memory indicator (bit 10).
    pub const fn umi(self) -> bool {
        self.0 & 0x0400 != 0
    }

    /// XPC indicator (bit 9).
    pub const fn xi(self) -> bool {
        self.0 & 0x0200 != 0
    }

    /// Numbering system toggle (bit 8): set = ISO, bits 7-0 are an AFI.
    pub const fn toggle(self) -> bool {
        self.0 & 0x0100 != 0
    }

    /// The AFI when the toggle bit is set.
    pub const fn afi(self) -> Option<u8> {
        if self.toggle() {
            Some(self.0 as u8)
        } else {
            None
        }
    }

    /// The same word with the toggle set and `afi` in bits 7-0 (BookWaves' "BR" format).
    #[must_use]
    pub const fn with_afi(self, afi: u8) -> Self {
        Self((self.0 & 0xFE00) | 0x0100 | afi as u16)
    }
}

/// URN Code 40 (§2.5): three characters per 16-bit word, `1600·c1 + 40·c2 + c3 + 1`.
pub mod code40 {
    use super::UhfError;

    const ALPHABET: &[u8; 40] = b"\0ABCDEFGHIJKLMNOPQRSTUVWXYZ-.:0123456789";
    /// Largest word value that carries three characters.
    const MAX_WORD: u16 = 64000;

    /// Decodes words (big-endian); PAD characters are dropped, a zero word ends the text.
    pub fn decode(data: &[u8]) -> Result<String, UhfError> {
        if !data.len().is_multiple_of(2) {
            return Err(UhfError::Code40(format!(
                "{} bytes is not a whole number of 16-bit words",
                data.len()
            )));
        }
        let mut text = String::new();
        for (i, pair) in data.chunks_exact(2).enumerate() {
            let word = u16::from_be_bytes([pair[0], pair[1]]);
            if word == 0 {
                break;
            }
            if word > MAX_WORD {
                return Err(UhfError::Code40(format!(
                    "word {word:04X} at byte {} is an extended escape, which is not supported",
                    2 * i
                )));
            }
            let value = usize::from(word - 1);
            for code in [value / 1600, (value / 40) % 40, value % 40] {
                if let Some(&ch) = ALPHABET.get(code).filter(|&&c| c != 0) {
                    text.push(char::from(ch));
                }
            }
        }
        Ok(text)
    }

    /// Encodes text of `A-Z 0-9 - . :` into big-endian words, the last padded with PAD.
    pub fn encode(text: &str) -> Result<Vec<u8>, UhfError> {
        let mut codes = Vec::with_capacity(text.len() + 2);
        for (position, ch) in text.chars().enumerate() {
            let code = u8::try_from(ch)
                .ok()
                .filter(|&b| b != 0)
                .and_then(|b| ALPHABET.iter().position(|&c| c == b))
                .ok_or_else(|| {
                    UhfError::Code40(format!(
                        "character {ch:?} at position {position} is not in the alphabet"
                    ))
                })?;
            codes.push(code as u16);
        }
        let mut out = Vec::with_capacity(codes.len().div_ceil(3) * 2);
        for triple in codes.chunks(3) {
            let c = |i: usize| triple.get(i).copied().unwrap_or(0);
            let word = 1600 * c(0) + 40 * c(1) + c(2) + 1;
            out.extend_from_slice(&word.to_be_bytes());
        }
        Ok(out)
    }
}

/// A GS1 SGTIN-96 EPC (§2.5).
///
/// The company prefix and item reference are digit strings: GS1 digits are significant, so
/// `0614141` is a 7-digit company prefix (partition 5), not the number 614141. Their
/// lengths always add up to 13 and match the partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sgtin96 {
    /// Filter value (3 bits).
    pub filter: u8,
    /// Partition (0-6): how the 44 bits split between company prefix and item reference.
    pub partition: u8,
    /// GS1 company prefix with its leading zeros (12 - partition digits).
    pub company_prefix: String,
    /// Item reference, indicator digit first, with its leading zeros (partition + 1 digits).
    pub item_reference: String,
    /// Serial number (38 bits; SGTIN-96 serials are integers without leading zeros).
    pub serial: u64,
}

fn sgtin_error(problem: impl Into<String>) -> UhfError {
    UhfError::Sgtin(problem.into())
}

/// The value of a digit string of exactly `digits` digits.
fn digit_value(name: &str, text: &str, digits: usize) -> Result<u64, UhfError> {
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(sgtin_error(format!(
            "{name} {text:?} is not {digits} digits (the partition fixes the count)"
        )));
    }
    // At most 12 digits: always fits in u64.
    text.parse::<u64>()
        .map_err(|_| sgtin_error(format!("{name} {text:?} is not a decimal number")))
}

impl Sgtin96 {
    fn layout(partition: u8) -> Result<(u32, usize, u32, usize), UhfError> {
        PARTITIONS
            .get(usize::from(partition))
            .copied()
            .ok_or_else(|| sgtin_error(format!("partition {partition} is not 0-6")))
    }

    /// Decodes a 12-byte EPC.
    pub fn decode(epc: &[u8]) -> Result<Self, UhfError> {
        let bytes: [u8; SGTIN96_LEN] = epc
            .try_into()
            .map_err(|_| sgtin_error(format!("{} bytes, SGTIN-96 has 12", epc.len())))?;
        if bytes[0] != SGTIN96_HEADER {
            return Err(sgtin_error(format!(
                "header {:02X}, SGTIN-96 is 30",
                bytes[0]
            )));
        }
        let mut wide = [0u8; 16];
        wide[4..].copy_from_slice(&bytes);
        let value = u128::from_be_bytes(wide);
        let filter = ((value >> 85) & 0x7) as u8;
        let partition = ((value >> 82) & 0x7) as u8;
        let (cp_bits, cp_digits, ir_bits, ir_digits) = Self::layout(partition)?;
        let mask = |bits: u32| (1u128 << bits) - 1;
        let company_prefix = (value >> (SERIAL_BITS + ir_bits)) & mask(cp_bits);
        let item_reference = (value >> SERIAL_BITS) & mask(ir_bits);
        let serial = (value & mask(SERIAL_BITS)) as u64;
        // The partition fixes the digit counts: pad to them, and refuse a value with more.
        let digits = |name: &str, value: u128, count: usize| {
            let text = format!("{value:0count$}");
            if text.len() == count {
                Ok(text)
            } else {
                Err(sgtin_error(format!(
                    "{name} {value} has more than {count} digits"
                )))
            }
        };
        Ok(Self {
            filter,
            partition,
            company_prefix: digits("company prefix", company_prefix, cp_digits)?,
            item_reference: digits("item reference", item_reference, ir_digits)?,
            serial,
        })
    }

    /// Encodes the 12-byte EPC.
    pub fn encode(&self) -> Result<[u8; SGTIN96_LEN], UhfError> {
        let (cp_bits, cp_digits, ir_bits, ir_digits) = Self::layout(self.partition)?;
        if self.filter > 7 {
            return Err(sgtin_error(format!("filter {} is not 0-7", self.filter)));
        }
        let company_prefix = digit_value("company prefix", &self.company_prefix, cp_digits)?;
        let item_reference = digit_value("item reference", &self.item_reference, ir_digits)?;
        if self.serial >> SERIAL_BITS != 0 {
            return Err(sgtin_error(format!(
                "serial {} does not fit in 38 bits",
                self.serial
            )));
        }
        let value = (u128::from(SGTIN96_HEADER) << 88)
            | (u128::from(self.filter) << 85)
            | (u128::from(self.partition) << 82)
            | (u128::from(company_prefix) << (SERIAL_BITS + ir_bits))
            | (u128::from(item_reference) << SERIAL_BITS)
            | u128::from(self.serial);
        debug_assert!(cp_bits + ir_bits == 44);
        let wide = value.to_be_bytes();
        let mut out = [0u8; SGTIN96_LEN];
        out.copy_from_slice(&wide[4..]);
        Ok(out)
    }

    /// The company prefix with its leading zeros.
    pub fn company_prefix_digits(&self) -> String {
        self.company_prefix.clone()
    }

    /// The item reference with its leading zeros.
    pub fn item_reference_digits(&self) -> String {
        self.item_reference.clone()
    }

    /// The EPC tag URI, e.g. `urn:epc:tag:sgtin-96:3.0614141.812345.6789`.
    pub fn tag_uri(&self) -> String {
        format!(
            "urn:epc:tag:sgtin-96:{}.{}.{}.{}",
            self.filter, self.company_prefix, self.item_reference, self.serial
        )
    }

    /// Parses the EPC tag URI that [`Sgtin96::tag_uri`] prints. The digit counts of the
    /// company prefix and item reference are kept (they choose the partition).
    pub fn from_tag_uri(uri: &str) -> Result<Self, UhfError> {
        let rest = uri.strip_prefix("urn:epc:tag:sgtin-96:").ok_or_else(|| {
            sgtin_error(format!("{uri:?} does not start with urn:epc:tag:sgtin-96:"))
        })?;
        let parts: Vec<&str> = rest.split('.').collect();
        let [filter, cp, ir, serial] = parts.as_slice() else {
            return Err(sgtin_error(format!(
                "{uri:?} needs four dot-separated fields: filter.company.item.serial"
            )));
        };
        let number = |name: &str, s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(sgtin_error(format!("{name} {s:?} is not a decimal number")));
            }
            s.parse::<u64>()
                .map_err(|_| sgtin_error(format!("{name} {s:?} is too large")))
        };
        let partition = PARTITIONS
            .iter()
            .position(|&(_, d, _, _)| d == cp.len())
            .filter(|_| cp.len() + ir.len() == 13)
            .ok_or_else(|| {
                sgtin_error(format!(
                    "company prefix of {} and item reference of {} digits match no partition",
                    cp.len(),
                    ir.len()
                ))
            })?;
        let value = Self {
            filter: u8::try_from(number("filter", filter)?)
                .map_err(|_| sgtin_error("filter is not 0-7"))?,
            partition: partition as u8,
            company_prefix: (*cp).to_owned(),
            item_reference: (*ir).to_owned(),
            serial: number("serial", serial)?,
        };
        value.encode()?;
        Ok(value)
    }

    /// GTIN-14: indicator digit, company prefix, rest of the item reference, check digit.
    pub fn gtin(&self) -> String {
        let (cp, ir) = (&self.company_prefix, &self.item_reference);
        let (indicator, item) = ir.split_at(1.min(ir.len()));
        let body = format!("{indicator}{cp}{item}");
        let sum: u32 = body
            .bytes()
            .rev()
            .enumerate()
            // Public fields may hold anything: a non-digit counts as 0 rather than panic.
            .map(|(i, b)| char::from(b).to_digit(10).unwrap_or(0) * if i % 2 == 0 { 3 } else { 1 })
            .sum();
        format!("{body}{}", (10 - sum % 10) % 10)
    }
}

/// How a site layout stores the item id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemIdFormat {
    /// Unsigned big-endian integer printed in decimal (DE290, DE6).
    #[default]
    Uint,
    /// URN Code 40 (DE290F).
    Code40,
    /// Printable ASCII, NUL-padded.
    Ascii,
}

/// Where the item id sits in a site EPC layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemIdField {
    /// Byte offset in the EPC.
    pub offset: usize,
    /// Length in bytes.
    pub length: usize,
    /// How the bytes are read.
    #[serde(default)]
    pub format: ItemIdFormat,
}

/// Where the security bit sits in a site EPC layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityBit {
    /// Byte offset in the EPC.
    pub byte: usize,
    /// Bit number, 0 = least significant.
    pub bit: u8,
    /// The bit value that means "secured" (default: set = secured).
    #[serde(default = "default_true")]
    pub secured_when_set: bool,
}

const fn default_true() -> bool {
    true
}

/// A site-specific EPC layout (§2.5: DE290, DE6, DE290F).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpcLayout {
    /// A name for logs and the decoded tag (`de290`).
    pub name: String,
    /// The EPC's first bytes, as hex (`19E9F871`).
    #[serde(with = "hex_bytes")]
    pub header: Vec<u8>,
    /// EPC length in bytes.
    pub epc_length: usize,
    /// Where the item id sits.
    pub item_id: ItemIdField,
    /// Where the security bit sits, if the layout has one.
    #[serde(default)]
    pub security_bit: Option<SecurityBit>,
}

mod hex_bytes {
    use std::fmt::Write as _;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let text = bytes.iter().fold(String::new(), |mut text, b| {
            // Writing into a String cannot fail.
            let _ = write!(text, "{b:02X}");
            text
        });
        serializer.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::parse_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// An item read from a site EPC layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SiteEpc {
    /// Name of the layout that matched.
    pub layout: String,
    /// The item id.
    pub item_id: String,
    /// The security bit read as "secured", when the layout has one.
    pub secured: Option<bool>,
}

impl EpcLayout {
    /// The DE290 layout of German university libraries (§2.5): PC `40 00`, header
    /// `19 E9 F8 71`, 8-byte media id in bytes 4-11, security = bit 0 of byte 15.
    pub fn de290() -> Self {
        Self {
            name: "de290".into(),
            header: vec![0x19, 0xE9, 0xF8, 0x71],
            epc_length: 16,
            item_id: ItemIdField {
                offset: 4,
                length: 8,
                format: ItemIdFormat::Uint,
            },
            security_bit: Some(SecurityBit {
                byte: 15,
                bit: 0,
                secured_when_set: true,
            }),
        }
    }

    fn error(&self, problem: impl Into<String>) -> UhfError {
        UhfError::Layout {
            layout: self.name.clone(),
            problem: problem.into(),
        }
    }

    /// Checks that header, item id and security bit fit the EPC and do not overlap.
    pub fn validate(&self) -> Result<(), UhfError> {
        let item = &self.item_id;
        let item_end = item
            .offset
            .checked_add(item.length)
            .ok_or_else(|| self.error("item id offset overflows"))?;
        if self.header.len() > self.epc_length {
            return Err(self.error("the header is longer than the EPC"));
        }
        if item.length == 0 || item_end > self.epc_length {
            return Err(self.error(format!(
                "item id bytes {}..{item_end} do not fit the {}-byte EPC",
                item.offset, self.epc_length
            )));
        }
        if item.offset < self.header.len() {
            return Err(self.error("the item id overlaps the header"));
        }
        if item.format == ItemIdFormat::Uint && item.length > 8 {
            return Err(self.error("a uint item id has at most 8 bytes"));
        }
        if item.format == ItemIdFormat::Code40 && !item.length.is_multiple_of(2) {
            return Err(self.error("a code40 item id has an even number of bytes"));
        }
        if let Some(bit) = self.security_bit {
            if bit.byte >= self.epc_length || bit.bit > 7 {
                return Err(self.error(format!(
                    "security bit {}.{} is outside the EPC",
                    bit.byte, bit.bit
                )));
            }
            if bit.byte < self.header.len() || (item.offset..item_end).contains(&bit.byte) {
                return Err(self.error("the security bit overlaps the header or the item id"));
            }
        }
        Ok(())
    }

    /// True when the EPC has this layout's length and header.
    pub fn matches(&self, epc: &[u8]) -> bool {
        epc.len() == self.epc_length && epc.starts_with(&self.header)
    }

    /// Reads an EPC with this layout.
    pub fn decode(&self, epc: &[u8]) -> Result<SiteEpc, UhfError> {
        if !self.matches(epc) {
            return Err(self.error(format!(
                "EPC of {} bytes does not have this layout's length and header",
                epc.len()
            )));
        }
        self.validate()?;
        let item = &self.item_id;
        let bytes = epc
            .get(item.offset..item.offset + item.length)
            .ok_or_else(|| self.error("item id outside the EPC"))?;
        let item_id = match item.format {
            ItemIdFormat::Uint => {
                let mut wide = [0u8; 8];
                let start = 8usize.saturating_sub(bytes.len());
                wide.get_mut(start..)
                    .ok_or_else(|| self.error("item id too long"))?
                    .copy_from_slice(bytes);
                u64::from_be_bytes(wide).to_string()
            }
            ItemIdFormat::Code40 => code40::decode(bytes)?,
            ItemIdFormat::Ascii => crate::text::read_padded(bytes, 0, bytes.len(), "item id")
                .map_err(|e| self.error(e.to_string()))?,
        };
        let secured = self.security_bit.and_then(|bit| {
            let set = epc.get(bit.byte)? & (1 << bit.bit) != 0;
            Some(set == bit.secured_when_set)
        });
        Ok(SiteEpc {
            layout: self.name.clone(),
            item_id,
            secured,
        })
    }

    /// Writes an EPC with this layout: starting from `base` (the EPC as read, so bytes the
    /// layout does not describe are kept) or zeros, with the header, item id and security
    /// bit set.
    pub fn encode(&self, item: &SiteEpc, base: Option<&[u8]>) -> Result<Vec<u8>, UhfError> {
        self.validate()?;
        let mut epc = match base {
            Some(base) if base.len() == self.epc_length => base.to_vec(),
            _ => vec![0u8; self.epc_length],
        };
        epc[..self.header.len()].copy_from_slice(&self.header);
        let field = &self.item_id;
        let value = match field.format {
            ItemIdFormat::Uint => {
                let canonical = !item.item_id.is_empty()
                    && item.item_id.bytes().all(|b| b.is_ascii_digit())
                    && (item.item_id == "0" || !item.item_id.starts_with('0'));
                let number = item
                    .item_id
                    .parse::<u64>()
                    .ok()
                    .filter(|_| canonical)
                    .ok_or_else(|| {
                        self.error(format!(
                            "item id {:?} is not a decimal number without leading zeros",
                            item.item_id
                        ))
                    })?;
                let bytes = number.to_be_bytes();
                let skip = 8 - field.length;
                if bytes[..skip].iter().any(|&b| b != 0) {
                    return Err(self.error(format!(
                        "item id {number} does not fit in {} bytes",
                        field.length
                    )));
                }
                bytes[skip..].to_vec()
            }
            ItemIdFormat::Code40 => {
                let mut bytes = code40::encode(&item.item_id)?;
                if bytes.len() > field.length {
                    return Err(self.error(format!(
                        "item id {:?} needs {} bytes, the layout has {}",
                        item.item_id,
                        bytes.len(),
                        field.length
                    )));
                }
                bytes.resize(field.length, 0);
                bytes
            }
            ItemIdFormat::Ascii => {
                let mut bytes = vec![0u8; field.length];
                crate::text::write_padded(&mut bytes, 0, field.length, &item.item_id, "item id")
                    .map_err(|e| self.error(e.to_string()))?;
                bytes
            }
        };
        epc[field.offset..field.offset + field.length].copy_from_slice(&value);
        match (self.security_bit, item.secured) {
            (Some(bit), Some(secured)) => {
                let mask = 1u8 << bit.bit;
                if secured == bit.secured_when_set {
                    epc[bit.byte] |= mask;
                } else {
                    epc[bit.byte] &= !mask;
                }
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(self.error("the layout has a security bit: say secured or not"));
            }
            (None, Some(_)) => return Err(self.error("the layout has no security bit")),
        }
        Ok(epc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pc_word_carries_the_afi_only_with_the_toggle_set() {
        assert_eq!(PcWord(0x4000).afi(), None);
        assert_eq!(PcWord(0x4000).epc_words(), 8);
        assert_eq!(PcWord(0x4107).afi(), Some(0x07));
        assert_eq!(PcWord(0x4000).with_afi(0xC2), PcWord(0x41C2));
    }

    #[test]
    fn code40_round_trips_and_refuses_lower_case() {
        for text in ["", "A", "AB", "ABC", "DE-290.F:0123456789"] {
            assert_eq!(
                code40::decode(&code40::encode(text).unwrap()).unwrap(),
                text
            );
        }
        assert!(code40::encode("abc").is_err());
        assert!(code40::decode(&[0xFB, 0x00]).is_err());
    }

    #[test]
    fn the_gs1_example_parses_from_its_uri_and_gives_its_gtin() {
        let sgtin = Sgtin96::from_tag_uri("urn:epc:tag:sgtin-96:3.0614141.812345.6789").unwrap();
        assert_eq!(sgtin.partition, 5);
        assert_eq!(sgtin.gtin(), "80614141123458");
        let epc = sgtin.encode().unwrap();
        assert_eq!(
            epc,
            [
                0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85
            ]
        );
    }

    #[test]
    fn sgtin96_keeps_the_digit_counts_of_company_prefix_and_item_reference() {
        // (EPC, partition, company prefix, item reference, tag URI); the EPCs were computed
        // independently from the GS1 bit layout (§2.5).
        let cases = [
            (
                "3074257BF7194E4000001A85",
                5,
                "0614141",
                "812345",
                "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
            ),
            (
                "3000000000000000000004D2",
                0,
                "000000000000",
                "0",
                "urn:epc:tag:sgtin-96:0.000000000000.0.1234",
            ),
            (
                "30340001E00000C000000001",
                5,
                "0000120",
                "000003",
                "urn:epc:tag:sgtin-96:1.0000120.000003.1",
            ),
            (
                "304400000000214000000000",
                1,
                "00000000001",
                "05",
                "urn:epc:tag:sgtin-96:2.00000000001.05.0",
            ),
            (
                "3038000040000000DFDC1C35",
                6,
                "000001",
                "0000000",
                "urn:epc:tag:sgtin-96:1.000001.0000000.3755744309",
            ),
        ];
        for (epc, partition, company_prefix, item_reference, uri) in cases {
            let bytes = crate::parse_hex(epc).unwrap();
            let sgtin = Sgtin96::decode(&bytes).unwrap();
            assert_eq!(sgtin.partition, partition, "{epc}");
            assert_eq!(sgtin.company_prefix, company_prefix, "{epc}");
            assert_eq!(sgtin.item_reference, item_reference, "{epc}");
            assert_eq!(sgtin.tag_uri(), uri, "{epc}");
            assert_eq!(Sgtin96::from_tag_uri(uri).as_ref(), Ok(&sgtin), "{uri}");
            assert_eq!(
                sgtin.encode().unwrap().as_slice(),
                bytes.as_slice(),
                "{epc}"
            );
        }
    }

    #[test]
    fn sgtin96_digit_strings_that_do_not_fit_the_partition_are_refused() {
        let good = Sgtin96::from_tag_uri("urn:epc:tag:sgtin-96:3.0614141.812345.6789").unwrap();
        // (company prefix, item reference): a dropped leading zero is a different partition.
        let cases = [
            ("614141", "812345"),
            ("0614141", "81234"),
            ("06141A1", "812345"),
        ];
        for (company_prefix, item_reference) in cases {
            let bad = Sgtin96 {
                company_prefix: company_prefix.into(),
                item_reference: item_reference.into(),
                ..good.clone()
            };
            assert!(bad.encode().is_err(), "{company_prefix}.{item_reference}");
        }
        assert!(Sgtin96::from_tag_uri("urn:epc:tag:sgtin-96:3.614141.812345.6789").is_err());
    }

    #[test]
    fn de290_reads_the_media_id_and_security_bit_and_keeps_other_bytes() {
        let layout = EpcLayout::de290();
        let mut epc = vec![
            0x19, 0xE9, 0xF8, 0x71, 0, 0, 0, 0, 0, 0x12, 0xD6, 0x87, 0xAA, 0xBB, 0xCC, 0x01,
        ];
        let item = layout.decode(&epc).unwrap();
        assert_eq!(item.item_id, "1234567");
        assert_eq!(item.secured, Some(true));
        let unsecured = SiteEpc {
            secured: Some(false),
            ..item
        };
        let written = layout.encode(&unsecured, Some(&epc)).unwrap();
        epc[15] = 0;
        assert_eq!(written, epc);
    }

    #[test]
    fn a_layout_whose_item_id_leaves_the_epc_is_refused() {
        let mut layout = EpcLayout::de290();
        layout.item_id.length = 20;
        assert!(layout.validate().is_err());
    }
}
