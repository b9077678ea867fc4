//! The Cloud API envelope: `object` / `entry[]` / `changes[]` / `value`, whose `value` holds
//! the same arrays as an On-Premises body.

use serde::{Deserialize, Serialize};

use super::{Extra, WebhookBody, lenient};

/// A Cloud API webhook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudEnvelope {
    /// `whatsapp_business_account`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub object: String,
    /// One entry per business account.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub entry: Vec<CloudEntry>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `entry[]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudEntry {
    /// The WhatsApp Business Account id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// The changes.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub changes: Vec<CloudChange>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `changes[]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudChange {
    /// `messages` for message and status notifications.
    #[serde(default, deserialize_with = "lenient::string")]
    pub field: String,
    /// The notifications.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub value: CloudValue,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `changes[].value`: an On-Premises body (`contacts`, `messages`, `statuses`, `errors`) with
/// the product and the business number beside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudValue {
    /// `whatsapp`.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub messaging_product: Option<String>,
    /// The business number the notifications belong to.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata: Option<CloudMetadata>,
    /// The notifications, and fields not modelled.
    #[serde(flatten)]
    pub body: WebhookBody,
}

/// `value.metadata`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudMetadata {
    /// The number as displayed.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_phone_number: Option<String>,
    /// The id to send from and route by.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub phone_number_id: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}
