//! `statuses[]`: what became of a message the business sent.

use serde::{Deserialize, Serialize};

use super::{Extra, WhatsAppError, lenient};

/// A status notification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The id of the business's message (for `deleted`: the customer's message).
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// The customer's WhatsApp id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient_id: Option<String>,
    /// `{recipient_id}`, sent instead of (or beside) `recipient_id` by some versions.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub message: Option<StatusRecipient>,
    /// `sent`, `delivered`, `read`, `failed`, `deleted`, `warning`, ... (see [`Status::state`]).
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    /// Unix seconds, as a string (a number is read as its text).
    #[serde(default, deserialize_with = "lenient::string")]
    pub timestamp: String,
    /// `type`, where sent.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    /// The conversation the message belongs to.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub conversation: Option<Conversation>,
    /// How the message is billed.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pricing: Option<Pricing>,
    /// Why a message failed, or the warning.
    #[serde(
        default,
        deserialize_with = "lenient::opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub errors: Option<Vec<WhatsAppError>>,
    /// Cloud: data the business attached when sending.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub biz_opaque_callback_data: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `statuses[].message`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusRecipient {
    /// The customer's WhatsApp id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient_id: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The meaning of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState<'a> {
    /// In transit.
    Sent,
    /// Two ticks.
    Delivered,
    /// Blue ticks.
    Read,
    /// Not delivered; see `errors`.
    Failed,
    /// The customer deleted a message they sent.
    Deleted,
    /// A sent message references an unavailable catalog item.
    Warning,
    /// A status not known yet.
    Other(&'a str),
}

impl Status {
    /// The customer: `recipient_id`, or else `message.recipient_id`.
    pub fn recipient(&self) -> Option<&str> {
        self.recipient_id
            .as_deref()
            .or_else(|| self.message.as_ref()?.recipient_id.as_deref())
    }

    /// The status, typed.
    pub fn state(&self) -> StatusState<'_> {
        match self.status.as_str() {
            "sent" => StatusState::Sent,
            "delivered" => StatusState::Delivered,
            "read" => StatusState::Read,
            "failed" => StatusState::Failed,
            "deleted" => StatusState::Deleted,
            "warning" => StatusState::Warning,
            other => StatusState::Other(other),
        }
    }
}

/// `statuses[].conversation`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Who opened it.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub origin: Option<ConversationOrigin>,
    /// When it expires: a number or a string of Unix seconds.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_timestamp: Option<ExpirationTimestamp>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `conversation.origin`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationOrigin {
    /// `business_initiated`, `user_initiated`, `marketing`, `utility`, `service`, ...
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub kind: String,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `expiration_timestamp`, seen both as a number and as a string; kept as it came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpirationTimestamp {
    /// `1736417700`
    Number(i64),
    /// `"1736417700"`
    Text(String),
}

impl ExpirationTimestamp {
    /// Unix seconds, whichever way it was sent.
    pub fn seconds(&self) -> Option<i64> {
        match self {
            ExpirationTimestamp::Number(n) => Some(*n),
            ExpirationTimestamp::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// `statuses[].pricing`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    /// Whether the message is billed.
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub billable: Option<bool>,
    /// `CBP`, `NBP`, `PMP`, ...
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub pricing_model: Option<String>,
    /// The billing category.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub category: Option<String>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}
