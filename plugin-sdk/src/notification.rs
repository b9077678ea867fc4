use serde::{Deserialize, Serialize};

use crate::Action;
use crate::whatsapp::{Contact, Message, Status, WhatsAppError};

/// What kind of webhook item a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An inbound message from a customer (`messages[]`).
    Message,
    /// The status of a message the business sent (`statuses[]`).
    Status,
    /// An out-of-band error (`errors[]`).
    Error,
}

impl Kind {
    /// The name used in manifests and forwarded bodies: `message`, `status`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Status => "status",
            Kind::Error => "error",
        }
    }
}

/// One item of a webhook body, with the fields plugins use most already extracted.
///
/// The item itself is kept as the JSON text received; [`Notification::message`],
/// [`Notification::status`] and [`Notification::error`] parse it into typed structs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Message, status or error.
    pub kind: Kind,
    /// Message id, status id, or for errors the error code as text.
    pub id: String,
    /// The customer's WhatsApp id: `from` of a message, the recipient of a status.
    pub sender: Option<String>,
    /// Unix seconds.
    pub timestamp: Option<u64>,
    /// `type` of a message (`text`, `image`, ...).
    pub message_type: Option<String>,
    /// `status` of a status (`sent`, `delivered`, `read`, `failed`, ...).
    pub status: Option<String>,
    /// The text of a message: text body, media caption, button or list title.
    pub text: Option<String>,
    /// `profile.name` of the matching contact.
    pub contact_name: Option<String>,
    /// The name of the endpoint the webhook came in on.
    pub source: String,
    /// The business phone number id, for webhooks that carry one (Cloud API).
    pub phone_number_id: Option<String>,
    /// The item exactly as received.
    pub item_json: String,
    /// The matching `contacts[]` entry, as received.
    pub contact_json: Option<String>,
    /// The actions of the plugins that ran before this one.
    pub prior: Vec<Action>,
    /// Whether the customer's 24-hour customer service window with this business number is
    /// open: outside it, only templates may be sent (contract 0.2.0; always false under 0.1.0).
    #[serde(default)]
    pub window_open: bool,
    /// When the window closes, Unix seconds; `None` when it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_until: Option<u64>,
    /// For a status: the send it belongs to, when a plugin of this host sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_by: Option<SentBy>,
}

/// Which earlier send a status belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SentBy {
    /// The plugin that sent it.
    pub plugin: String,
    /// The `id` of the notification the plugin was handling when it sent.
    pub notification_id: String,
    /// The host's delivery id (as `switchboard deliveries list` shows it).
    pub delivery_id: u64,
}

impl SentBy {
    /// A send of `plugin`, made while it handled `notification_id`, delivered as `delivery_id`.
    pub fn new(
        plugin: impl Into<String>,
        notification_id: impl Into<String>,
        delivery_id: u64,
    ) -> Self {
        SentBy {
            plugin: plugin.into(),
            notification_id: notification_id.into(),
            delivery_id,
        }
    }
}

impl Notification {
    /// Build a notification from one item of a webhook body and its contact, extracting the
    /// typed fields. A field that does not parse (or an item that is not an object) leaves its
    /// typed field empty; the item is kept as received. Fails only when `item_json` or
    /// `contact_json` is not JSON.
    pub fn from_item(
        kind: Kind,
        item_json: &str,
        contact_json: Option<&str>,
        source: &str,
    ) -> Result<Self, String> {
        let mut n = Notification {
            kind,
            id: String::new(),
            sender: None,
            timestamp: None,
            message_type: None,
            status: None,
            text: None,
            contact_name: None,
            source: source.to_string(),
            phone_number_id: None,
            item_json: item_json.to_string(),
            contact_json: None,
            prior: Vec::new(),
            window_open: false,
            window_until: None,
            sent_by: None,
        };
        match kind {
            Kind::Message => {
                let m: Message = parse(item_json, "message")?;
                n.id = m.id.clone();
                n.sender = Some(m.from.clone()).filter(|s| !s.is_empty());
                n.timestamp = m.timestamp.trim().parse().ok();
                n.text = m.text_content().map(str::to_string);
                n.message_type = Some(m.kind).filter(|k| !k.is_empty());
            }
            Kind::Status => {
                let s: Status = parse(item_json, "status")?;
                n.sender = s.recipient().map(str::to_string);
                n.timestamp = s.timestamp.trim().parse().ok();
                n.id = s.id;
                n.status = Some(s.status).filter(|s| !s.is_empty());
            }
            Kind::Error => {
                let e: WhatsAppError = parse(item_json, "error")?;
                n.id = e.code.to_string();
            }
        }
        if let Some(contact) = contact_json {
            n.set_contact(contact)?;
        }
        Ok(n)
    }

    /// Attach the `contacts[]` entry of the sender (kept as received; fails only when it is not
    /// JSON).
    pub fn set_contact(&mut self, contact_json: &str) -> Result<(), String> {
        let contact: Contact = parse(contact_json, "contact")?;
        self.contact_name = contact.profile.and_then(|p| p.name);
        self.contact_json = Some(contact_json.to_string());
        Ok(())
    }

    /// The item parsed as an inbound message. Fields of an unexpected type are left empty (an
    /// item that is not an object gives an empty message); fails only when the item is not JSON.
    pub fn message(&self) -> Result<Message, String> {
        parse(&self.item_json, "message")
    }

    /// The item parsed as a status, as leniently as [`Notification::message`].
    pub fn status(&self) -> Result<Status, String> {
        parse(&self.item_json, "status")
    }

    /// The item parsed as an error, as leniently as [`Notification::message`].
    pub fn error(&self) -> Result<WhatsAppError, String> {
        parse(&self.item_json, "error")
    }

    /// The matching contact, parsed.
    pub fn contact(&self) -> Option<Contact> {
        serde_json::from_str(self.contact_json.as_deref()?).ok()
    }

    /// The item as a JSON value.
    pub fn item(&self) -> serde_json::Value {
        serde_json::from_str(&self.item_json).unwrap_or(serde_json::Value::Null)
    }

    /// The tags that earlier plugins attached.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.prior.iter().filter_map(|a| match a {
            Action::Tag { tag } => Some(tag.as_str()),
            _ => None,
        })
    }
}

/// Parse leniently (see [`crate::whatsapp`]): any object parses, with the fields of an unexpected
/// type left empty; JSON that is not an object gives the empty value. Fails only on what is not
/// JSON.
fn parse<T: serde::de::DeserializeOwned + Default>(json: &str, what: &str) -> Result<T, String> {
    serde_json::from_str(json).or_else(|e| {
        match serde_json::from_str::<serde::de::IgnoredAny>(json) {
            Ok(_) => Ok(T::default()),
            Err(_) => Err(format!("{what} is not JSON: {e}")),
        }
    })
}
