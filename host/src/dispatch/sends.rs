//! Typed sends at dispatch: the customer's 24-hour window, kept per business number, and a send
//! turned into the request body of the API it goes through, or refused with its reason.
//!
//! The window's state is the time of each customer's last inbound message per business number.
//! It is kept as key-value rows of a namespace no plugin can have (plugin names are file
//! names, which have no `/`), so it is written in the dispatch batch's own transaction and
//! expires by itself with the key-value store's pruning.

use switchboard_sdk::send::{OutgoingMessage, Send, SendError, TemplateParameter};
use switchboard_sdk::{Kind, Notification};

use crate::config::Config;
use crate::delivery::Request;
use crate::plugins::kv::KvOverlay;
use crate::plugins::manifest::FallbackTemplate;
use crate::store::{KvWrite, Store};
use crate::whatsapp::Via;

/// The key-value namespace of the windows' state.
const WINDOWS: &str = "switchboard/window";
/// How long a customer's window stays open after their last message.
pub const WINDOW_SECS: u64 = 24 * 3600;

/// The window key of `customer` with the business number `via` sends from.
fn window_key(config: &Config, via: &Via, customer: &str) -> String {
    format!("{}/{customer}", via.number(config.whatsapp.as_ref()))
}

/// `n` with its customer's window: an inbound message opens it (and the time is recorded in
/// `overlay`, to commit with the batch); other kinds read it, when `read` (a plugin of the
/// chain can see it: 0.1.0 plugins cannot, and a chain of them does not depend on the store for
/// statuses). `received_at` is when the webhook arrived (Unix ms), which stands for the
/// message's time: WhatsApp's own timestamp may be late or skewed, and a window counted from the
/// arrival errs on the open side by seconds only.
pub fn with_window(
    store: &Store,
    config: &Config,
    overlay: &mut KvOverlay,
    n: &Notification,
    received_at: i64,
    read: bool,
) -> anyhow::Result<Notification> {
    let mut n = n.clone();
    let Some(customer) = n.sender.clone() else {
        return Ok(n);
    };
    let key = window_key(config, &config.via(&n), &customer);
    let received = (received_at.max(0) / 1000) as u64;
    let last = match n.kind {
        Kind::Message => {
            let expires_at = (received + WINDOW_SECS) as i64 * 1000;
            overlay.apply(vec![KvWrite::Set {
                plugin: WINDOWS.into(),
                key,
                value: received.to_string().into_bytes(),
                expires_at: Some(expires_at),
            }]);
            Some(received)
        }
        Kind::Status | Kind::Error if !read => return Ok(n),
        Kind::Status | Kind::Error => overlay
            .get(store, WINDOWS, &key)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok()),
    };
    let until = last.map(|t| t + WINDOW_SECS);
    let now = (crate::store::now_millis().max(0) / 1000) as u64;
    n.window_open = until.is_some_and(|u| u > now);
    n.window_until = until.filter(|_| n.window_open);
    Ok(n)
}

/// Why a send was not queued.
#[derive(Debug)]
pub enum Refusal {
    /// It breaks one of WhatsApp's limits.
    Invalid(SendError),
    /// Not a template, and the customer's window is closed (with no fallback template).
    WindowClosed,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(e) => write!(f, "invalid: {e}"),
            Refusal::WindowClosed => f.write_str(
                "window-closed: the customer has not written in the last 24 hours, and only \
                 templates may be sent then (give the send a fallback template, or set \
                 [sends.window_fallback] in the plugin's .toml, to send a template instead)",
            ),
        }
    }
}

/// What a send becomes: the request to queue, and whether it is the fallback template of a
/// send refused for the window.
pub struct Queued {
    pub request: Request,
    pub fell_back: bool,
}

/// The request of `send` by `plugin` while it handled `n`, through `via`: checked against
/// WhatsApp's limits and the customer's window (a closed window sends the send's own fallback
/// template instead, or else the plugin's `fallback`, when given), and rendered for the API.
pub fn request(
    config: &Config,
    via: &Via,
    n: &Notification,
    plugin: &str,
    send: &Send,
    fallback: Option<&FallbackTemplate>,
) -> Result<Queued, Refusal> {
    send.validate().map_err(Refusal::Invalid)?;
    let mut fell_back = false;
    let fallback_send;
    let send = if send.needs_open_window() && !n.window_open {
        fallback_send = send
            .fallback_send()
            .or_else(|| fallback.map(|f| fallback_template(&send.to, f)))
            .ok_or(Refusal::WindowClosed)?;
        fallback_send.validate().map_err(Refusal::Invalid)?;
        fell_back = true;
        &fallback_send
    } else {
        send
    };
    let body = match via {
        Via::Onprem => {
            let namespace = config
                .whatsapp
                .as_ref()
                .and_then(|w| w.namespace.as_deref());
            send.to_onprem(namespace).map_err(Refusal::Invalid)?
        }
        Via::Cloud { .. } => send.to_cloud(),
    };
    Ok(Queued {
        request: Request::Send {
            to: send.to.clone(),
            kind: kind(&send.message).into(),
            body: body.to_string(),
            via: via.clone(),
            plugin: plugin.to_string(),
            notification: n.id.clone(),
        },
        fell_back,
    })
}

/// The send of a plugin's fallback template to `to`.
fn fallback_template(to: &str, fallback: &FallbackTemplate) -> Send {
    let mut draft = Send::template(to, &fallback.name, &fallback.language);
    if let Some(namespace) = &fallback.namespace {
        draft = draft.namespace(namespace);
    }
    if !fallback.body.is_empty() {
        draft = draft.body(fallback.body.iter().map(TemplateParameter::text));
    }
    draft.build()
}

/// The message kind, as the WhatsApp API names it (`text`, `template`, `interactive`, ...).
fn kind(message: &OutgoingMessage) -> &'static str {
    match message {
        OutgoingMessage::Text(_) => "text",
        OutgoingMessage::Template(_) => "template",
        OutgoingMessage::Interactive(_) => "interactive",
        OutgoingMessage::Media(m) => m.kind.as_str(),
        OutgoingMessage::Location(_) => "location",
        OutgoingMessage::Contacts(_) => "contacts",
        OutgoingMessage::Reaction(_) => "reaction",
        OutgoingMessage::Raw(_) => "raw",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: &str = "5511987650001";

    /// The template name of a queued send, or its type when it is not a template.
    fn sent(queued: Result<Queued, Refusal>) -> (String, bool) {
        let queued = queued.unwrap_or_else(|e| panic!("refused: {e}"));
        let Request::Send { body, .. } = &queued.request else {
            panic!("not a send")
        };
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        let what = body["template"]["name"]
            .as_str()
            .or(body["type"].as_str())
            .unwrap_or_default();
        (what.to_string(), queued.fell_back)
    }

    #[test]
    fn a_closed_window_sends_the_sends_own_fallback_before_the_plugins() {
        let config: Config = toml::from_str("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let via = Via::Cloud {
            phone_number_id: Some("106540352242922".into()),
        };
        let item = format!(
            r#"{{"from":"{TO}","id":"m1","timestamp":"1","type":"text","text":{{"body":"hi"}}}}"#
        );
        let mut n = Notification::from_item(Kind::Message, &item, None, "test").unwrap();
        n.window_open = false;
        let plugins = FallbackTemplate {
            name: "plugin_wide".into(),
            language: "en_US".into(),
            namespace: None,
            body: vec![],
        };
        let plain = Send::text(TO, "Your order shipped").build();
        let own = Send::text(TO, "Your order shipped")
            .or_template(Send::template(TO, "order_shipped", "en_US"))
            .build();
        let queue = |n: &Notification, send: &Send, fallback: Option<&FallbackTemplate>| {
            request(&config, &via, n, "p", send, fallback)
        };

        assert_eq!(
            sent(queue(&n, &own, Some(&plugins))),
            ("order_shipped".into(), true),
            "the send's own fallback wins"
        );
        assert_eq!(sent(queue(&n, &own, None)), ("order_shipped".into(), true));
        assert_eq!(
            sent(queue(&n, &plain, Some(&plugins))),
            ("plugin_wide".into(), true)
        );
        assert!(matches!(
            queue(&n, &plain, None),
            Err(Refusal::WindowClosed)
        ));
        // A broken fallback is refused even while the window is open.
        let broken = Send::text(TO, "hi")
            .or_template(Send::template(TO, "", "en_US"))
            .build();
        n.window_open = true;
        assert!(matches!(queue(&n, &broken, None), Err(Refusal::Invalid(_))));
        assert_eq!(
            sent(queue(&n, &own, Some(&plugins))),
            ("text".into(), false),
            "an open window sends the text"
        );
    }
}
