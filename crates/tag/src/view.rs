//! The JSON shape of a [`DecodedTag`], shared by `rfidgw tag decode`, the REST API and the
//! journal: `model`, `primary_item_id`, `owner_institution`, `parts_in_item`,
//! `part_number`, `type_of_usage`, `crc_valid`, `security`, `error`, and more; an ambiguous
//! tag (`model: "ambiguous"`) lists what each model would read under `readings`.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::iso28560_3::media_format_name;
use crate::{DecodedTag, Owner, OwnerClass, Reading, TagData, TagModel};

/// The owner as JSON: an ISIL string, `{country, library}` or `{branch, library}`.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum OwnerView<'a> {
    Isil(&'a str),
    CountryLibrary { country: &'a str, library: &'a str },
    LibraryNumber { branch: u16, library: u32 },
}

/// The model's own fields without the enum tag.
struct DataView<'a>(&'a TagData);

impl Serialize for DataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TagData::Iso28560_3(tag) => tag.serialize(serializer),
            TagData::Iso28560_2(tag) => tag.serialize(serializer),
            TagData::Rfid501(tag) => tag.serialize(serializer),
            TagData::Sgtin96(sgtin) => sgtin.serialize(serializer),
            TagData::SiteEpc(epc) => epc.serialize(serializer),
        }
    }
}

/// One reading of an ambiguous tag: what the item would be under that model.
struct ReadingView<'a>(&'a Reading);

impl Serialize for ReadingView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let reading = self.0;
        let item = reading.item();
        let mut s = serializer.serialize_struct("Reading", 7)?;
        s.serialize_field("model", reading.model.as_str())?;
        s.serialize_field("reason", &reading.reason)?;
        s.serialize_field("primary_item_id", &item.primary_item_id)?;
        s.serialize_field("owner_institution", &item.owner.as_ref().map(owner_view))?;
        s.serialize_field("byte_order", reading.byte_order.as_str())?;
        s.serialize_field("crc", &reading.crc.map(|crc| format!("{crc:04X}")))?;
        s.serialize_field("data", &DataView(&reading.data))?;
        s.end()
    }
}

fn owner_view(owner: &Owner) -> OwnerView<'_> {
    match owner {
        Owner::Isil { isil } => OwnerView::Isil(isil),
        Owner::CountryLibrary { country, library } => {
            OwnerView::CountryLibrary { country, library }
        }
        Owner::LibraryNumber { branch, library } => OwnerView::LibraryNumber {
            branch: *branch,
            library: *library,
        },
    }
}

#[derive(serde::Serialize)]
struct MediaFormatView {
    value: u8,
    name: Option<&'static str>,
}

impl Serialize for DecodedTag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let item = self.item.as_ref();
        let owner = item.and_then(|i| i.owner.as_ref()).map(owner_view);
        let (country, library) = match item.and_then(|i| i.owner.as_ref()) {
            Some(Owner::CountryLibrary { country, library }) => {
                (Some(country.clone()), Some(library.clone()))
            }
            Some(Owner::LibraryNumber { library, .. }) => (None, Some(library.to_string())),
            _ => (None, None),
        };
        let media_format = match &self.data {
            Some(TagData::Iso28560_3(tag)) => tag.media_format().map(|value| MediaFormatView {
                value,
                name: media_format_name(value),
            }),
            _ => None,
        };
        // The model list has no "blank": a blank tag is unknown, with blank = true.
        let model = match self.model {
            TagModel::Blank => TagModel::Unknown,
            other => other,
        };
        let mut s = serializer.serialize_struct("DecodedTag", 21)?;
        s.serialize_field("model", model.as_str())?;
        s.serialize_field("primary_item_id", &item.map(|i| i.primary_item_id.as_str()))?;
        s.serialize_field("owner_institution", &owner)?;
        s.serialize_field("country", &country)?;
        s.serialize_field("library", &library)?;
        s.serialize_field("parts_in_item", &item.and_then(|i| i.parts_in_item))?;
        s.serialize_field("part_number", &item.and_then(|i| i.part_number))?;
        s.serialize_field(
            "type_of_usage",
            &item
                .and_then(|i| i.type_of_usage)
                .map(|u| format!("{u:02X}")),
        )?;
        s.serialize_field("crc_valid", &self.crc_valid)?;
        s.serialize_field("crc", &self.crc.map(|crc| format!("{crc:04X}")))?;
        s.serialize_field("security", self.security.as_str())?;
        // `true` only for another institution's item: a tag that names no owner (or a site
        // that lists none of its own) is `null`, so an "ignore foreign items" policy never
        // lets an ownerless item walk out.
        s.serialize_field(
            "foreign",
            &match self.owner_class {
                OwnerClass::Ours => Some(false),
                OwnerClass::Foreign => Some(true),
                OwnerClass::Unknown => None,
            },
        )?;
        s.serialize_field("byte_order", self.byte_order.as_str())?;
        s.serialize_field("blank", &(self.model == TagModel::Blank))?;
        s.serialize_field("media_format", &media_format)?;
        s.serialize_field("reason", &self.reason)?;
        s.serialize_field("warnings", &self.warnings)?;
        s.serialize_field("data", &self.data.as_ref().map(DataView))?;
        s.serialize_field(
            "readings",
            &self.readings.iter().map(ReadingView).collect::<Vec<_>>(),
        )?;
        s.serialize_field("error", &self.error.as_ref().map(ToString::to_string))?;
        s.end()
    }
}
