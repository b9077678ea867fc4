//! The 0.2.0 contract on the host side: its bindings, its host functions (as 0.1.0's, with a
//! `kv-set` that reports failure) and the conversions of notifications and actions.

use switchboard_sdk::{Action, Kind, Notification};

use super::{HostState, Level as V1Level, WriteRefused};
use crate::store::now_millis;

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "plugin",
        exports: { default: async },
    });
}

use bindings::switchboard::plugin::host::{self as wit_host, Level};
use bindings::switchboard::plugin::types as w;

mod wire {
    use super::w;
    switchboard_sdk::__send_wire!(w);
}

impl w::Host for HostState {}

impl wit_host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => V1Level::Trace,
            Level::Debug => V1Level::Debug,
            Level::Info => V1Level::Info,
            Level::Warn => V1Level::Warn,
            Level::Error => V1Level::Error,
        };
        self.emit(level, None, &message);
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.get_key(&key)
    }

    /// A refusal over a limit is the plugin's to handle: the call goes on. A storage failure
    /// still ends the call as the host's.
    fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u64>,
    ) -> Result<(), String> {
        match self.set_key(key, value, ttl_seconds) {
            Ok(()) => Ok(()),
            Err(WriteRefused::Limit(reason)) => Err(reason),
            Err(WriteRefused::Host(reason)) => {
                self.stop(super::Stop::Host(reason.clone()));
                Err(reason)
            }
        }
    }

    fn kv_delete(&mut self, key: String) {
        self.delete_key(key);
    }

    fn now_millis(&mut self) -> u64 {
        now_millis().max(0) as u64
    }
}

pub(super) fn to_wit(n: &Notification) -> w::Notification {
    w::Notification {
        kind: match n.kind {
            Kind::Message => w::Kind::Message,
            Kind::Status => w::Kind::Status,
            Kind::Error => w::Kind::Error,
        },
        id: n.id.clone(),
        sender: n.sender.clone(),
        timestamp: n.timestamp,
        message_type: n.message_type.clone(),
        status: n.status.clone(),
        text: n.text.clone(),
        contact_name: n.contact_name.clone(),
        source: n.source.clone(),
        phone_number_id: n.phone_number_id.clone(),
        item_json: n.item_json.clone(),
        contact_json: n.contact_json.clone(),
        window_open: n.window_open,
        window_until: n.window_until,
        sent_by: n.sent_by.as_ref().map(|s| w::SentBy {
            plugin: s.plugin.clone(),
            notification_id: s.notification_id.clone(),
            delivery_id: s.delivery_id,
        }),
    }
}

pub(super) fn to_wit_action(a: Action) -> w::Action {
    match a {
        Action::Reply { to, body, quote } => w::Action::Reply(w::Reply { to, body, quote }),
        Action::Forward { destination, body } => {
            w::Action::Forward(w::Forward { destination, body })
        }
        Action::MarkRead {
            message_id,
            typing_indicator,
        } => w::Action::MarkRead(w::MarkRead {
            message_id,
            typing_indicator,
        }),
        Action::Tag { tag } => w::Action::Tag(tag),
        Action::Stop => w::Action::Stop,
        Action::Send(send) => w::Action::Send(wire::send_to_wit(send)),
    }
}

pub(super) fn from_wit_action(a: w::Action) -> Action {
    match a {
        w::Action::Reply(r) => Action::Reply {
            to: r.to,
            body: r.body,
            quote: r.quote,
        },
        w::Action::Forward(f) => Action::Forward {
            destination: f.destination,
            body: f.body,
        },
        w::Action::MarkRead(m) => Action::MarkRead {
            message_id: m.message_id,
            typing_indicator: m.typing_indicator,
        },
        w::Action::Tag(tag) => Action::Tag { tag },
        w::Action::Stop => Action::Stop,
        w::Action::Send(send) => Action::Send(wire::send_from_wit(send)),
    }
}
