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

    /// Run the plugin on one notification.
    pub fn handle(&self, n: &Notification) -> Result<Vec<Action>, String> {
        self.plugin.handle(n)
    }

    /// Split an On-Premises webhook body as the server does and run the plugin on each
    /// notification; returns all actions in order.
    pub fn handle_body(&self, body: &str) -> Result<Vec<Action>, String> {
        let mut out = Vec::new();
        for n in self.notifications(body)? {
            out.extend(self.plugin.handle(&n)?);
        }
        Ok(out)
    }

    /// The notifications the server would make of an On-Premises webhook body, with the
    /// customer's 24-hour window as the host reports it: a message opens it at the harness's
    /// clock, other kinds see the window of the customer's last message.
    pub fn notifications(&self, body: &str) -> Result<Vec<Notification>, String> {
        let mut notifications =
            split::split_onprem(body.as_bytes(), "test").map_err(|e| e.to_string())?;
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
        Ok(notifications)
    }

    /// Forget `customer`'s messages: their window is closed, as after 24 hours of silence.
    pub fn close_window(&self, customer: &str) {
        HOST.with(|h| h.borrow_mut().last_inbound.remove(customer));
    }

    /// Why the host would refuse each typed send of `actions` made while handling `n`, by the
    /// action's index: a WhatsApp limit it breaks, or a closed window (when the plugin's
    /// manifest sets no fallback template). The host sends the others.
    pub fn refusals(&self, n: &Notification, actions: &[Action]) -> Vec<(usize, String)> {
        actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Action::Send(send) => match send.validate() {
                    Err(e) => Some((i, format!("invalid: {e}"))),
                    Ok(()) if send.needs_open_window() && !n.window_open => {
                        Some((i, "window-closed".to_string()))
                    }
                    Ok(()) => None,
                },
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
