use serde::{Deserialize, Serialize};

use crate::whatsapp::Via;

/// What one outbox row sends, stored as JSON in the row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Request {
    /// POST `body` (JSON text) to the destination named by the row's target.
    Forward { body: String },
    /// Send a text message through the WhatsApp API.
    Reply {
        to: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quote: Option<String>,
        #[serde(default)]
        via: Via,
    },
    /// Mark an inbound message read through the WhatsApp API.
    MarkRead {
        message_id: String,
        #[serde(default)]
        via: Via,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        typing_indicator: bool,
    },
    /// A typed send of a plugin, checked and rendered at dispatch.
    Send {
        /// The customer.
        to: String,
        /// The message's `type` (`text`, `template`, `interactive`, `image`, ...).
        #[serde(rename = "type")]
        kind: String,
        /// The request body of `via`'s API, as JSON text.
        body: String,
        via: Via,
        /// The plugin that sent it, and the id of the notification it was handling.
        plugin: String,
        notification: String,
    },
}

impl Request {
    /// The outbox `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Forward { .. } => "forward",
            Request::Reply { .. } => "reply",
            Request::MarkRead { .. } => "mark-read",
            Request::Send { .. } => "send",
        }
    }
}

/// The outbox target of WhatsApp API calls.
pub const WHATSAPP: &str = "whatsapp";
