//! `messages[]`: what customers send.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Extra, WhatsAppError, lenient};

/// An inbound message. The payload sits in the field named by `type` (`text`, `image`, ...);
/// [`Message::content`] picks it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The message id, for replies and mark-read.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// The sender's WhatsApp id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub from: String,
    /// Unix seconds, as a string (a number is read as its text).
    #[serde(default, deserialize_with = "lenient::string")]
    pub timestamp: String,
    /// The message type, as sent (`text`, `image`, ..., or one not known yet).
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub kind: String,
    /// The message this one replies to or was forwarded from.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub context: Option<Context>,
    /// Errors, e.g. on `unknown` messages.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub errors: Option<Vec<WhatsAppError>>,
    /// Present after the sender's identity changed.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity: Option<Identity>,
    /// The Click-to-WhatsApp ad or post the conversation came from.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub referral: Option<Referral>,
    /// Legacy Groups API.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<String>,
    /// `type: text`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub text: Option<Text>,
    /// `type: image`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub image: Option<Media>,
    /// `type: video`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub video: Option<Media>,
    /// `type: audio` (Cloud voice notes have `voice: true`)
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub audio: Option<Media>,
    /// `type: voice` (On-Premises push-to-talk)
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub voice: Option<Media>,
    /// `type: document`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub document: Option<Media>,
    /// `type: sticker`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticker: Option<Media>,
    /// `type: location`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub location: Option<Location>,
    /// `type: contacts`
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub contacts: Option<Vec<ContactCard>>,
    /// `type: interactive`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub interactive: Option<Interactive>,
    /// `type: button`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub button: Option<Button>,
    /// `type: order`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub order: Option<Order>,
    /// `type: reaction`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub reaction: Option<Reaction>,
    /// `type: system`
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub system: Option<System>,
    /// `type: ephemeral`: a disappearing message whose content is not visible.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ephemeral: Option<Value>,
    /// Fields not modelled, including the payload of a type not known yet.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The payload of a message, by type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Content<'a> {
    /// Text.
    Text(&'a Text),
    /// A picture.
    Image(&'a Media),
    /// A video.
    Video(&'a Media),
    /// An audio file (or a Cloud voice note, `voice: true`).
    Audio(&'a Media),
    /// An On-Premises voice note.
    Voice(&'a Media),
    /// A document.
    Document(&'a Media),
    /// A sticker.
    Sticker(&'a Media),
    /// A location.
    Location(&'a Location),
    /// Shared contact cards.
    Contacts(&'a [ContactCard]),
    /// A reply to an interactive message (button or list).
    Interactive(&'a Interactive),
    /// A quick-reply button of a template.
    Button(&'a Button),
    /// A cart.
    Order(&'a Order),
    /// A reaction to a message.
    Reaction(&'a Reaction),
    /// A system notice (number or identity change, ...).
    System(&'a System),
    /// `unknown` or `unsupported`: WhatsApp could not pass the content on; see `errors`.
    Unknown,
    /// A disappearing message.
    Ephemeral,
    /// A type not known to this SDK, or a known type without its payload; the payload, if
    /// any, is in `extra` under the type's name.
    Other {
        /// The `type` as sent.
        kind: &'a str,
    },
}

impl Message {
    /// The payload of the message's `type`.
    pub fn content(&self) -> Content<'_> {
        let other = Content::Other { kind: &self.kind };
        match self.kind.as_str() {
            "text" => self.text.as_ref().map_or(other, Content::Text),
            "image" => self.image.as_ref().map_or(other, Content::Image),
            "video" => self.video.as_ref().map_or(other, Content::Video),
            "audio" => self.audio.as_ref().map_or(other, Content::Audio),
            "voice" => self.voice.as_ref().map_or(other, Content::Voice),
            "document" => self.document.as_ref().map_or(other, Content::Document),
            "sticker" => self.sticker.as_ref().map_or(other, Content::Sticker),
            "location" => self.location.as_ref().map_or(other, Content::Location),
            "contacts" => self.contacts.as_deref().map_or(other, Content::Contacts),
            "interactive" => self
                .interactive
                .as_ref()
                .map_or(other, Content::Interactive),
            "button" => self.button.as_ref().map_or(other, Content::Button),
            "order" => self.order.as_ref().map_or(other, Content::Order),
            "reaction" => self.reaction.as_ref().map_or(other, Content::Reaction),
            "system" => self.system.as_ref().map_or(other, Content::System),
            "unknown" | "unsupported" => Content::Unknown,
            "ephemeral" => Content::Ephemeral,
            _ => other,
        }
    }

    /// The text a person typed or chose: the text body, a media caption, the text of a
    /// template button, the title of an interactive button or list row, or an order's text.
    pub fn text_content(&self) -> Option<&str> {
        match self.content() {
            Content::Text(t) => t.body.as_deref(),
            Content::Image(m) | Content::Video(m) | Content::Document(m) => m.caption.as_deref(),
            Content::Button(b) => b.text.as_deref(),
            Content::Interactive(i) => i.title(),
            Content::Order(o) => o.text.as_deref(),
            _ => None,
        }
    }

    /// Whether this is a voice note (On-Premises `voice`, or Cloud `audio` with `voice: true`).
    pub fn is_voice(&self) -> bool {
        match self.content() {
            Content::Voice(_) => true,
            Content::Audio(m) => m.voice == Some(true),
            _ => false,
        }
    }
}

/// `text`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Text {
    /// The text.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub body: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `image`, `video`, `audio`, `voice`, `document`, `sticker`: media to fetch with
/// `GET /v1/media/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// The media id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// E.g. `image/jpeg`, `audio/ogg; codecs=opus`.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub mime_type: Option<String>,
    /// Checksum of the bytes.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub sha256: Option<String>,
    /// Image, video, document: the caption.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub caption: Option<String>,
    /// Document, audio: the file name.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub filename: Option<String>,
    /// Path on the Coreapp's media volume, with auto-download on (deprecated).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub file: Option<String>,
    /// A link to the media.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub link: Option<String>,
    /// Cloud: an audio message that is a voice note.
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub voice: Option<bool>,
    /// Sticker: the pack it belongs to.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata: Option<StickerMetadata>,
    /// Fields not modelled (e.g. a sticker's `animated`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `sticker.metadata`; its keys are hyphenated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StickerMetadata {
    /// `sticker-pack-id`
    #[serde(
        rename = "sticker-pack-id",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticker_pack_id: Option<String>,
    /// `sticker-pack-name`
    #[serde(
        rename = "sticker-pack-name",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticker_pack_name: Option<String>,
    /// `sticker-pack-publisher`
    #[serde(
        rename = "sticker-pack-publisher",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticker_pack_publisher: Option<String>,
    /// `emojis`
    #[serde(
        default,
        deserialize_with = "lenient::opt_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub emojis: Option<Vec<String>>,
    /// `ios-app-store-link`
    #[serde(
        rename = "ios-app-store-link",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ios_app_store_link: Option<String>,
    /// `android-app-store-link`
    #[serde(
        rename = "android-app-store-link",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub android_app_store_link: Option<String>,
    /// `is-first-party-sticker` (0 or 1)
    #[serde(
        rename = "is-first-party-sticker",
        default,
        deserialize_with = "lenient::opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_first_party_sticker: Option<i64>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `location`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Degrees; absent when not sent as a number (or a string holding one).
    #[serde(
        default,
        deserialize_with = "lenient::opt_float",
        skip_serializing_if = "Option::is_none"
    )]
    pub latitude: Option<f64>,
    /// Degrees, like `latitude`.
    #[serde(
        default,
        deserialize_with = "lenient::opt_float",
        skip_serializing_if = "Option::is_none"
    )]
    pub longitude: Option<f64>,
    /// The place's name.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// The place's address.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<String>,
    /// A link to the place.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A shared contact card (`contacts[]` of a `contacts` message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactCard {
    /// Postal addresses.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub addresses: Option<Vec<CardAddress>>,
    /// `YYYY-MM-DD`.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub birthday: Option<String>,
    /// A picture.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub contact_image: Option<String>,
    /// E-mail addresses.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub emails: Option<Vec<CardEmail>>,
    /// Messenger accounts.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub ims: Option<Vec<CardIm>>,
    /// The name.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<CardName>,
    /// The organisation.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub org: Option<CardOrg>,
    /// Phone numbers.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub phones: Option<Vec<CardPhone>>,
    /// Web sites.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub urls: Option<Vec<CardUrl>>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact card's address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardAddress {
    /// City.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub city: Option<String>,
    /// Country.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub country: Option<String>,
    /// ISO country code.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub country_code: Option<String>,
    /// State.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub state: Option<String>,
    /// Street.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub street: Option<String>,
    /// `HOME`, `WORK`.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    /// Postal code.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub zip: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact card's e-mail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardEmail {
    /// The address.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub email: Option<String>,
    /// `HOME`, `WORK`.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact card's messenger account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardIm {
    /// The service.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub service: Option<String>,
    /// The account.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact card's name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardName {
    /// First name.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_name: Option<String>,
    /// The full name.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub formatted_name: Option<String>,
    /// Last name.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_name: Option<String>,
    /// Fields not modelled (middle name, prefix, suffix).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact card's organisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardOrg {
    /// Company.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub company: Option<String>,
    /// Department.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub department: Option<String>,
    /// Title.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact card's phone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardPhone {
    /// The number.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub phone: Option<String>,
    /// `CELL`, `MAIN`, `HOME`, `WORK`, ...
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    /// The WhatsApp id, when the number is on WhatsApp.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub wa_id: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact card's web site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardUrl {
    /// The URL.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// `HOME`, `WORK`.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `interactive`: the customer's answer to a button or list message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interactive {
    /// `button_reply` or `list_reply`.
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub kind: String,
    /// The button chosen.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub button_reply: Option<Choice>,
    /// The list row chosen.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub list_reply: Option<Choice>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Interactive {
    /// The title of the button or row chosen.
    pub fn title(&self) -> Option<&str> {
        self.button_reply
            .as_ref()
            .or(self.list_reply.as_ref())?
            .title
            .as_deref()
    }
}

/// A button or list row chosen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The id the business gave it.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// The text shown.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<String>,
    /// List rows: the description shown.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `button`: a quick-reply button of a template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// The text shown.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub text: Option<String>,
    /// The payload the business gave it.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub payload: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `order`: a cart sent from a catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The catalog.
    #[serde(default, deserialize_with = "lenient::string")]
    pub catalog_id: String,
    /// A note with the order.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub text: Option<String>,
    /// The items.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_items: Option<Vec<ProductItem>>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An item of an order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductItem {
    /// The product.
    #[serde(default, deserialize_with = "lenient::string")]
    pub product_retailer_id: String,
    /// How many (a number, or a string in some versions).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub quantity: Option<Value>,
    /// Unit price (a number, or a string in some versions).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub item_price: Option<Value>,
    /// Currency code.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub currency: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `reaction`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// The message reacted to.
    #[serde(default, deserialize_with = "lenient::string")]
    pub message_id: String,
    /// The emoji; absent or empty when the reaction was removed.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub emoji: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `system`: a notice about the customer, in any of the spellings WhatsApp has used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct System {
    /// Human-readable text.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub body: Option<String>,
    /// `user_changed_number`, `customer_changed_number`, `user_identity_changed`,
    /// `customer_identity_changed`, legacy `group_*`, ...
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    /// The new WhatsApp id (older spelling).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub new_wa_id: Option<String>,
    /// The new WhatsApp id (newer spelling).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub wa_id: Option<String>,
    /// The customer's old WhatsApp id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer: Option<String>,
    /// The customer (older spelling).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<String>,
    /// The identity hash, on identity changes.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity: Option<String>,
    /// Legacy Groups API.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<String>,
    /// Legacy Groups API.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub operator: Option<String>,
    /// Legacy Groups API.
    #[serde(
        default,
        deserialize_with = "lenient::opt_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub users: Option<Vec<String>>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

impl System {
    /// The customer's new WhatsApp id after a number change, in either spelling.
    pub fn changed_to(&self) -> Option<&str> {
        self.new_wa_id.as_deref().or(self.wa_id.as_deref())
    }
}

/// `context`: what a message replies to, or that it was forwarded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Sender of the quoted message.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<String>,
    /// The quoted message.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    /// The message was forwarded.
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub forwarded: Option<bool>,
    /// The message was forwarded many times.
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub frequently_forwarded: Option<bool>,
    /// Legacy Groups API.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<String>,
    /// Legacy Groups API.
    #[serde(
        default,
        deserialize_with = "lenient::opt_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub mentions: Option<Vec<String>>,
    /// The product asked about ("Message business" from a catalog).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub referred_product: Option<ReferredProduct>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `context.referred_product`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferredProduct {
    /// The catalog.
    #[serde(default, deserialize_with = "lenient::string")]
    pub catalog_id: String,
    /// The product.
    #[serde(default, deserialize_with = "lenient::string")]
    pub product_retailer_id: String,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `identity`: present after the sender's identity changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Whether the new identity was acknowledged.
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub acknowledged: Option<bool>,
    /// When the identity was created, Unix milliseconds.
    #[serde(
        default,
        deserialize_with = "lenient::opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_timestamp: Option<i64>,
    /// The identity hash.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub hash: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `referral`: the Click-to-WhatsApp ad or post the customer came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    /// The ad's or post's URL.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_url: Option<String>,
    /// Its id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_id: Option<String>,
    /// `ad` or `post`.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_type: Option<String>,
    /// Its headline.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub headline: Option<String>,
    /// Its body.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub body: Option<String>,
    /// Its image.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub image: Option<ReferralMedia>,
    /// Its video.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub video: Option<ReferralMedia>,
    /// The click id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ctwa_clid: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `referral.image` or `referral.video`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferralMedia {
    /// The media id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}
