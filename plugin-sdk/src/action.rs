use serde::{Deserialize, Serialize};

use crate::send::Send;

/// Something a plugin asks the host to do. The host carries actions out after the whole plugin
/// chain has run, durably and with retries.
// A call returns a few actions: a boxed `Send` would save little and make plugins match through
// a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Send a text message to a WhatsApp user.
    Reply {
        /// The customer's WhatsApp id.
        to: String,
        /// The text, at most 4096 characters.
        body: String,
        /// A message id to quote.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quote: Option<String>,
    },
    /// POST the notification to a destination named in the host configuration.
    Forward {
        /// The destination's name (`[destinations.NAME]`).
        destination: String,
        /// A JSON body of the plugin's own; `None` sends the standard envelope (the item as
        /// received, its kind, the contact and the tags).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Mark an inbound message as read (blue ticks).
    MarkRead {
        /// The inbound message id.
        message_id: String,
        /// Also show "typing…" until the reply (Cloud API; contract 0.2.0).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        typing_indicator: bool,
    },
    /// Attach a tag that later plugins see and forwards carry.
    Tag {
        /// The tag.
        tag: String,
    },
    /// Run no further plugins for this notification.
    Stop,
    /// Send a typed WhatsApp message (contract 0.2.0): see [`crate::send`]. The host checks
    /// WhatsApp's limits and the customer's window before it queues it.
    Send(Send),
}

impl Action {
    /// A text reply to `to`.
    pub fn reply(to: impl Into<String>, body: impl Into<String>) -> Self {
        Action::Reply {
            to: to.into(),
            body: body.into(),
            quote: None,
        }
    }

    /// Forward the notification, in the standard envelope, to `destination`.
    pub fn forward(destination: impl Into<String>) -> Self {
        Action::Forward {
            destination: destination.into(),
            body: None,
        }
    }

    /// Forward a JSON body of the plugin's own to `destination`.
    pub fn forward_json(destination: impl Into<String>, body: &serde_json::Value) -> Self {
        Action::Forward {
            destination: destination.into(),
            body: Some(body.to_string()),
        }
    }

    /// Mark the inbound message `message_id` as read.
    pub fn mark_read(message_id: impl Into<String>) -> Self {
        Action::MarkRead {
            message_id: message_id.into(),
            typing_indicator: false,
        }
    }

    /// Mark the inbound message `message_id` as read and show "typing…" until the reply (Cloud
    /// API only; ask for it only when a reply follows).
    pub fn mark_read_typing(message_id: impl Into<String>) -> Self {
        Action::MarkRead {
            message_id: message_id.into(),
            typing_indicator: true,
        }
    }

    /// Send a typed message, as built with [`Send`]'s constructors.
    ///
    /// ```
    /// use switchboard_sdk::{Action, send::Send};
    ///
    /// let action = Action::send(Send::buttons("5511987650001", "Open now?").button("y", "Yes"));
    /// assert!(matches!(action, Action::Send(_)));
    /// ```
    pub fn send(send: impl Into<Send>) -> Self {
        Action::Send(send.into())
    }

    /// Tag the notification.
    pub fn tag(tag: impl Into<String>) -> Self {
        Action::Tag { tag: tag.into() }
    }
}
