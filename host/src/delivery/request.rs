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
    },
}

impl Request {
    /// The outbox `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Forward { .. } => "forward",
            Request::Reply { .. } => "reply",
            Request::MarkRead { .. } => "mark-read",
        }
    }
}

/// The outbox target of WhatsApp API calls.
pub const WHATSAPP: &str = "whatsapp";
