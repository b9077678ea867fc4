//! WhatsApp webhook payload types: the On-Premises body and the Cloud API envelope.
//!
//! Every struct keeps the fields it does not model in `extra`, and every field is optional or
//! defaulted, so a body of a newer API version parses, and parse-then-serialise gives back the
//! same JSON. Message types not known yet are kept the same way ([`Content::Other`]).
//!
//! Parsing never fails for the type of one field: a field of an unexpected JSON type reads as
//! absent (or empty), and ids, timestamps, codes and coordinates are read from strings and
//! numbers alike. The item's JSON as received stays in [`Notification::item_json`](crate::Notification).

mod cloud;
pub(crate) mod lenient;
mod message;
mod status;

pub use cloud::{CloudChange, CloudEntry, CloudEnvelope, CloudMetadata, CloudValue};
pub use message::*;
pub use status::{
    Conversation, ConversationOrigin, ExpirationTimestamp, Pricing, Status, StatusRecipient,
    StatusState,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields not modelled, kept as received.
pub type Extra = Map<String, Value>;

/// An On-Premises webhook body: any combination of the four arrays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// Senders of `messages`.
    #[serde(
        default,
        deserialize_with = "lenient::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub contacts: Vec<Contact>,
    /// Inbound messages.
    #[serde(
        default,
        deserialize_with = "lenient::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<Message>,
    /// Statuses of sent messages.
    #[serde(
        default,
        deserialize_with = "lenient::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub statuses: Vec<Status>,
    /// Out-of-band errors.
    #[serde(
        default,
        deserialize_with = "lenient::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub errors: Vec<WhatsAppError>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A `contacts[]` entry: who sent a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// The sender's WhatsApp id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub wa_id: String,
    /// The sender's profile.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub profile: Option<Profile>,
    /// Fields not modelled (Cloud: `identity_key_hash`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `contacts[].profile`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The name the customer set.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An error: a top-level `errors[]` item, or the `errors` of a message or status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WhatsAppError {
    /// The error code (e.g. 470 re-engagement, 501 unknown message type).
    #[serde(default, deserialize_with = "lenient::int")]
    pub code: i64,
    /// A short description.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<String>,
    /// More detail.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub details: Option<String>,
    /// A link to documentation.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub href: Option<String>,
    /// Cloud: the message.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub message: Option<String>,
    /// Cloud: `{details}`.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_data: Option<Value>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests;
