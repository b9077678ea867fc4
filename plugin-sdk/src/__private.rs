//! Plumbing for [`register_plugin!`](crate::register_plugin). Not part of the public API.

use crate::{Action, Config, Kind, Notification, Plugin};

#[cfg(not(feature = "contract-0-1"))]
#[allow(missing_docs, unsafe_op_in_unsafe_fn, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "switchboard_sdk::__private::bindings",
    });
}

#[cfg(feature = "contract-0-1")]
#[allow(missing_docs, unsafe_op_in_unsafe_fn, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "switchboard_sdk::__private::bindings",
    });
}

pub use bindings::Guest;
pub use bindings::switchboard::plugin::types::{
    Action as WitAction, Forward as WitForward, Kind as WitKind, Notification as WitNotification,
    Reply as WitReply,
};

#[cfg(not(feature = "contract-0-1"))]
mod wire {
    use super::bindings::switchboard::plugin::types as w;
    crate::__send_wire!(w);
}

/// The API version as bytes, for the custom section.
pub const fn api_version_bytes<const N: usize>() -> [u8; N] {
    let src = crate::STAMPED_VERSION.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = src[i];
        i += 1;
    }
    out
}

pub fn init<P: Plugin>(config: &str) -> Result<P, String> {
    P::init(Config::from_json(config)?)
}

pub fn handle<P: Plugin>(
    plugin: &P,
    n: WitNotification,
    prior: Vec<WitAction>,
) -> Result<Vec<WitAction>, String> {
    let mut n = Notification::from(n);
    n.prior = prior.into_iter().map(Action::from).collect();
    plugin
        .handle(&n)?
        .into_iter()
        .map(WitAction::try_from)
        .collect()
}

impl From<WitNotification> for Notification {
    fn from(n: WitNotification) -> Self {
        Notification {
            kind: match n.kind {
                WitKind::Message => Kind::Message,
                WitKind::Status => Kind::Status,
                WitKind::Error => Kind::Error,
            },
            id: n.id,
            sender: n.sender,
            timestamp: n.timestamp,
            message_type: n.message_type,
            status: n.status,
            text: n.text,
            contact_name: n.contact_name,
            source: n.source,
            phone_number_id: n.phone_number_id,
            item_json: n.item_json,
            contact_json: n.contact_json,
            prior: Vec::new(),
            #[cfg(not(feature = "contract-0-1"))]
            window_open: n.window_open,
            #[cfg(not(feature = "contract-0-1"))]
            window_until: n.window_until,
            #[cfg(not(feature = "contract-0-1"))]
            sent_by: n
                .sent_by
                .map(|s| crate::SentBy::new(s.plugin, s.notification_id, s.delivery_id)),
            #[cfg(feature = "contract-0-1")]
            window_open: false,
            #[cfg(feature = "contract-0-1")]
            window_until: None,
            #[cfg(feature = "contract-0-1")]
            sent_by: None,
        }
    }
}

impl From<WitAction> for Action {
    fn from(a: WitAction) -> Self {
        match a {
            WitAction::Reply(r) => Action::Reply {
                to: r.to,
                body: r.body,
                quote: r.quote,
            },
            WitAction::Forward(f) => Action::Forward {
                destination: f.destination,
                body: f.body,
            },
            #[cfg(feature = "contract-0-1")]
            WitAction::MarkRead(id) => Action::MarkRead {
                message_id: id,
                typing_indicator: false,
            },
            #[cfg(not(feature = "contract-0-1"))]
            WitAction::MarkRead(m) => Action::MarkRead {
                message_id: m.message_id,
                typing_indicator: m.typing_indicator,
            },
            WitAction::Tag(tag) => Action::Tag { tag },
            WitAction::Stop => Action::Stop,
            #[cfg(not(feature = "contract-0-1"))]
            WitAction::Send(s) => Action::Send(wire::send_from_wit(s)),
        }
    }
}

impl TryFrom<Action> for WitAction {
    type Error = String;

    fn try_from(a: Action) -> Result<Self, String> {
        Ok(match a {
            Action::Reply { to, body, quote } => WitAction::Reply(WitReply { to, body, quote }),
            Action::Forward { destination, body } => {
                WitAction::Forward(WitForward { destination, body })
            }
            #[cfg(feature = "contract-0-1")]
            Action::MarkRead { message_id, .. } => WitAction::MarkRead(message_id),
            #[cfg(not(feature = "contract-0-1"))]
            Action::MarkRead {
                message_id,
                typing_indicator,
            } => WitAction::MarkRead(bindings::switchboard::plugin::types::MarkRead {
                message_id,
                typing_indicator,
            }),
            Action::Tag { tag } => WitAction::Tag(tag),
            Action::Stop => WitAction::Stop,
            #[cfg(not(feature = "contract-0-1"))]
            Action::Send(s) => WitAction::Send(wire::send_to_wit(s)),
            #[cfg(feature = "contract-0-1")]
            Action::Send(s) => match s.message {
                crate::send::OutgoingMessage::Text(text) => WitAction::Reply(WitReply {
                    to: s.to,
                    body: text.body,
                    quote: s.reply_to,
                }),
                _ => {
                    return Err(
                        "this plugin is built for contract 0.1.0, which has only text replies: \
                         build it without the switchboard-sdk feature contract-0-1 to send other kinds"
                            .into(),
                    );
                }
            },
        })
    }
}
