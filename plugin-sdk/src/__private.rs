//! Plumbing for [`register_plugin!`](crate::register_plugin). Not part of the public API.

use crate::{Action, Config, Kind, Notification, Plugin};

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

/// The API version as bytes, for the custom section.
pub const fn api_version_bytes<const N: usize>() -> [u8; N] {
    let src = crate::API_VERSION.as_bytes();
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
    Ok(plugin
        .handle(&n)?
        .into_iter()
        .map(WitAction::from)
        .collect())
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
            WitAction::MarkRead(id) => Action::MarkRead { message_id: id },
            WitAction::Tag(tag) => Action::Tag { tag },
            WitAction::Stop => Action::Stop,
        }
    }
}

impl From<Action> for WitAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Reply { to, body, quote } => WitAction::Reply(WitReply { to, body, quote }),
            Action::Forward { destination, body } => {
                WitAction::Forward(WitForward { destination, body })
            }
            Action::MarkRead { message_id } => WitAction::MarkRead(message_id),
            Action::Tag { tag } => WitAction::Tag(tag),
            Action::Stop => WitAction::Stop,
        }
    }
}
