//! Test a plugin natively with `cargo test`, without building wasm.
//!
//! The [`Harness`] builds the plugin from a config, feeds it notifications split from webhook
//! bodies exactly as the server does, and stands in for the host: a key-value store with
//! expiry, a clock the test sets, and a log the test reads.
//!
//! ```
//! use switchboard_sdk::{testing::Harness, Action, Config, Notification, Plugin, whatsapp::Message};
//!
//! struct Greeter;
//! impl Plugin for Greeter {
//!     fn init(_: Config) -> Result<Self, String> { Ok(Greeter) }
//!     fn on_message(&self, n: &Notification, _: &Message) -> Result<Vec<Action>, String> {
//!         Ok(vec![Action::reply(n.sender.clone().unwrap_or_default(), "hello")])
//!     }
//! }
//!
//! let harness = Harness::<Greeter>::new(serde_json::json!({})).unwrap();
//! let body = r#"{"messages":[{"from":"15550001","id":"m1","timestamp":"1","type":"text","text":{"body":"hi"}}]}"#;
//! assert_eq!(harness.handle_body(body).unwrap(), vec![Action::reply("15550001", "hello")]);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::send::Send;
use crate::{Action, Config, Notification, Plugin, split};

/// A log level, as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// The clock a fresh harness starts at: 2025-01-08 10:00:00 UTC.
pub const START_MILLIS: u64 = 1_736_330_400_000;

#[derive(Default)]
struct FakeHost {
    now_millis: u64,
    kv: BTreeMap<String, (Vec<u8>, Option<u64>)>,
    logs: Vec<(Level, String)>,
    /// The time of each customer's last inbound message, Unix seconds.
    last_inbound: BTreeMap<String, u64>,
}

/// How long a customer's window stays open after their last message, as the host counts it.
const WINDOW_SECS: u64 = 24 * 3600;

thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost { now_millis: START_MILLIS, ..Default::default() });
}

/// The fake host functions the SDK calls in native builds.
#[doc(hidden)]
pub mod fake_host {
    use super::{HOST, Level};

    pub fn log(level: Level, message: &str) {
        HOST.with(|h| h.borrow_mut().logs.push((level, message.to_string())));
    }

    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        HOST.with(|h| {
            let h = h.borrow();
            match h.kv.get(key) {
                Some((_, Some(expires))) if *expires <= h.now_millis => None,
                Some((value, _)) => Some(value.clone()),
                None => None,
            }
        })
    }

    pub fn kv_set(key: &str, value: &[u8], ttl_seconds: Option<u64>) -> Result<(), String> {
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            let expires = ttl_seconds.map(|t| h.now_millis + t * 1000);
            h.kv.insert(key.to_string(), (value.to_vec(), expires));
            Ok(())
        })
    }

    pub fn kv_delete(key: &str) {
        HOST.with(|h| h.borrow_mut().kv.remove(key));
    }

    pub fn now_millis() -> u64 {
        HOST.with(|h| h.borrow().now_millis)
    }
}

/// Runs a plugin natively against a fake host. The fake host belongs to the test's thread, and
/// a new harness resets it.
pub struct Harness<P: Plugin> {
    plugin: P,
}

impl<P: Plugin> Harness<P> {
    /// Reset the fake host (empty store, clock at [`START_MILLIS`], no logs) and build the
    /// plugin from `config`, the JSON form of its `[config]` table.
    pub fn new(config: serde_json::Value) -> Result<Self, String> {
        HOST.with(|h| {
            *h.borrow_mut() = FakeHost {
                now_millis: START_MILLIS,
                ..Default::default()
            }
        });
        Ok(Harness {
            plugin: P::init(Config::from_value(config))?,
        })
    }

    /// Run the plugin on one notification. As in the host, a call that fails keeps none of
    /// its key-value writes.
    pub fn handle(&self, n: &Notification) -> Result<Vec<Action>, String> {
        let before = HOST.with(|h| h.borrow().kv.clone());
        let result = self.plugin.handle(n);
        if result.is_err() {
            HOST.with(|h| h.borrow_mut().kv = before);
        }
        result
    }

    /// Split an On-Premises webhook body as the server does and run the plugin on each
    /// notification; returns all actions in order.
    pub fn handle_body(&self, body: &str) -> Result<Vec<Action>, String> {
        let mut out = Vec::new();
        for n in self.notifications(body)? {
            out.extend(self.handle(&n)?);
        }
        Ok(out)
    }

    /// [`Harness::handle_body`] for a Cloud API webhook body.
    pub fn handle_cloud_body(&self, body: &str) -> Result<Vec<Action>, String> {
        let mut out = Vec::new();
        for n in self.cloud_notifications(body)? {
            out.extend(self.handle(&n)?);
        }
        Ok(out)
    }

    /// The notifications the server would make of a Cloud API webhook body, with the window
    /// as in [`Harness::notifications`].
    pub fn cloud_notifications(&self, body: &str) -> Result<Vec<Notification>, String> {
        let notifications =
            split::split_cloud(body.as_bytes(), "test").map_err(|e| e.to_string())?;
        Ok(with_windows(notifications))
    }

    /// The notifications the server would make of an On-Premises webhook body, with the
    /// customer's 24-hour window as the host reports it: a message opens it at the harness's
    /// clock, other kinds see the window of the customer's last message.
    pub fn notifications(&self, body: &str) -> Result<Vec<Notification>, String> {
        let notifications =
            split::split_onprem(body.as_bytes(), "test").map_err(|e| e.to_string())?;
        Ok(with_windows(notifications))
    }

    /// Forget `customer`'s messages: their window is closed, as after 24 hours of silence.
    pub fn close_window(&self, customer: &str) {
        HOST.with(|h| h.borrow_mut().last_inbound.remove(customer));
    }

    /// Why the host would refuse each typed send of `actions` made while handling `n`, by the
    /// action's index: a WhatsApp limit it breaks, or a closed window (when neither the send
    /// nor the plugin's manifest has a fallback template). The host sends the others.
    pub fn refusals(&self, n: &Notification, actions: &[Action]) -> Vec<(usize, String)> {
        actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Action::Send(send) => as_sent(n, send).err().map(|e| (i, e)),
                _ => None,
            })
            .collect()
    }

    /// The typed sends of `actions` made while handling `n` as the host sends them, in order:
    /// a send that needs the customer's window while it is closed becomes its fallback
    /// template ([`Draft::or_template`](crate::send::Draft::or_template)); refused ones
    /// ([`Harness::refusals`]) are left out.
    pub fn sends(&self, n: &Notification, actions: &[Action]) -> Vec<Send> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(send) => as_sent(n, send).ok(),
                _ => None,
            })
            .collect()
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        HOST.with(|h| h.borrow_mut().now_millis += by.as_millis() as u64);
    }

    /// Set the clock, Unix milliseconds.
    pub fn set_now_millis(&self, millis: u64) {
        HOST.with(|h| h.borrow_mut().now_millis = millis);
    }

    /// The live (not expired) keys of the store.
    pub fn kv_keys(&self) -> Vec<String> {
        HOST.with(|h| {
            let h = h.borrow();
            h.kv.iter()
                .filter(|(_, (_, exp))| exp.is_none_or(|e| e > h.now_millis))
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    /// Everything the plugin logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        HOST.with(|h| h.borrow().logs.clone())
    }
}

/// What the host makes of `send` for `n`: the send, its fallback template when the window is
/// closed, or the reason it is refused.
fn as_sent(n: &Notification, send: &Send) -> Result<Send, String> {
    send.validate().map_err(|e| format!("invalid: {e}"))?;
    if send.needs_open_window() && !n.window_open {
        return send
            .fallback_send()
            .ok_or_else(|| "window-closed".to_string());
    }
    Ok(send.clone())
}

/// Each notification with its customer's window, as the host reports it: a message opens it at
/// the fake host's clock, other kinds see the window of the customer's last message.
fn with_windows(mut notifications: Vec<Notification>) -> Vec<Notification> {
    for n in &mut notifications {
        let Some(customer) = n.sender.clone() else {
            continue;
        };
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            let now = h.now_millis / 1000;
            if n.kind == crate::Kind::Message {
                h.last_inbound.insert(customer.clone(), now);
            }
            let until = h.last_inbound.get(&customer).map(|t| t + WINDOW_SECS);
            n.window_open = until.is_some_and(|u| u > now);
            n.window_until = until.filter(|_| n.window_open);
        });
    }
    notifications
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::Message;

    /// Counts messages in the store, then fails on a text "fail"; sends text to the sender.
    struct Counter;

    impl Plugin for Counter {
        fn init(_: Config) -> Result<Self, String> {
            Ok(Counter)
        }

        fn on_message(&self, n: &Notification, _: &Message) -> Result<Vec<Action>, String> {
            let count = crate::kv::get_string("count").map_or(0, |c| c.parse().unwrap_or(0));
            crate::kv::set("count", (count + 1).to_string().as_bytes(), None);
            if n.text.as_deref() == Some("fail") {
                return Err("deliberate".into());
            }
            Ok(vec![Action::send(Send::text(
                n.sender.clone().unwrap_or_default(),
                "ok",
            ))])
        }
    }

    const TEXT: &str = include_str!("../../tests/fixtures/onprem/e1-text.json");
    const CLOUD_TEXT: &str = include_str!("../../tests/fixtures/cloud/text.json");
    const STATUS: &str = include_str!("../../tests/fixtures/onprem/e16-status-sent-pricing.json");

    #[test]
    fn the_window_opens_with_a_message_and_closes_after_24_hours() {
        let h = Harness::<Counter>::new(serde_json::json!({})).unwrap();
        let status = h.notifications(STATUS).unwrap().remove(0);
        assert!(!status.window_open, "the customer never wrote");
        let message = h.notifications(TEXT).unwrap().remove(0);
        assert!(message.window_open);
        assert_eq!(
            message.window_until,
            Some(START_MILLIS / 1000 + WINDOW_SECS)
        );
        h.advance(Duration::from_secs(WINDOW_SECS - 1));
        assert!(h.notifications(STATUS).unwrap()[0].window_open);
        h.advance(Duration::from_secs(1));
        let closed = h.notifications(STATUS).unwrap().remove(0);
        assert!(!closed.window_open);
        let text = vec![Action::send(Send::text("5511987650001", "late"))];
        assert_eq!(
            h.refusals(&closed, &text),
            vec![(0, "window-closed".to_string())]
        );
        assert_eq!(h.refusals(&message, &text), vec![]);
    }

    #[test]
    fn a_closed_window_sends_the_sends_fallback_template_instead() {
        let h = Harness::<Counter>::new(serde_json::json!({})).unwrap();
        let closed = h.notifications(STATUS).unwrap().remove(0);
        let open = h.notifications(TEXT).unwrap().remove(0);
        let actions = vec![
            Action::send(
                Send::text("5511987650001", "Your order shipped").or_template(Send::template(
                    "5511987650001",
                    "order_shipped",
                    "en_US",
                )),
            ),
            Action::send(Send::text("5511987650001", "no fallback")),
        ];
        assert_eq!(
            h.refusals(&closed, &actions),
            vec![(1, "window-closed".to_string())]
        );
        let sent = h.sends(&closed, &actions);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to_cloud()["template"]["name"], "order_shipped");
        let sent = h.sends(&open, &actions);
        assert_eq!(
            sent.len(),
            2,
            "the window is open: the texts go as they are"
        );
        assert!(sent.iter().all(|s| s.to_cloud()["type"] == "text"));
    }

    #[test]
    fn a_failed_call_keeps_none_of_its_writes_and_cloud_bodies_run_too() {
        let h = Harness::<Counter>::new(serde_json::json!({})).unwrap();
        assert_eq!(h.handle_body(TEXT).unwrap().len(), 1);
        let failing = TEXT.replace("Hi, is the store open on Sunday?", "fail");
        assert!(h.handle_body(&failing).is_err());
        assert_eq!(crate::kv::get_string("count").as_deref(), Some("1"));
        let actions = h.handle_cloud_body(CLOUD_TEXT).unwrap();
        let [Action::Send(send)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(send.to, "16315551181");
        assert_eq!(crate::kv::get_string("count").as_deref(), Some("2"));
    }
}
