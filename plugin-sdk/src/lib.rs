//! Write Switchboard plugins in plain Rust.
//!
//! A plugin is a type that implements [`Plugin`], registered with [`register_plugin!`]. It
//! receives one [`Notification`] at a time (an inbound message, a status or an error of a
//! WhatsApp webhook) and returns [`Action`]s that the host carries out: replies, forwards,
//! mark-read, tags, stop. State that must outlive a call goes into the key-value store ([`kv`]).
//!
//! ```
//! use switchboard_sdk::{Action, Config, Notification, Plugin, whatsapp::Message};
//!
//! struct Echo;
//!
//! impl Plugin for Echo {
//!     fn init(_config: Config) -> Result<Self, String> {
//!         Ok(Echo)
//!     }
//!
//!     fn on_message(&self, n: &Notification, _message: &Message) -> Result<Vec<Action>, String> {
//!         match (&n.sender, &n.text) {
//!             (Some(from), Some(text)) => Ok(vec![Action::reply(from, text)]),
//!             _ => Ok(vec![]),
//!         }
//!     }
//! }
//!
//! switchboard_sdk::register_plugin!(Echo);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and drop the `.wasm` into the
//! server's plugins folder. Test it natively with [`testing::Harness`].
//!
//! [`send`] models WhatsApp's whole send API (every message kind, its limits, the request
//! bodies of both APIs, what to do about each error code) for the coming 0.2.0 contract
//! (`wit/v0.2.0`); plugins of the 0.1.0 contract reply with text ([`Action::reply`]).
#![deny(missing_docs)]

mod action;
mod config;
mod host;
mod notification;
mod plugin;
pub mod send;
pub mod split;
pub mod testing;
pub mod whatsapp;

#[doc(hidden)]
pub mod __private;

pub use action::Action;
pub use config::Config;
pub use host::{clock, kv, log};
pub use notification::{Kind, Notification, SentBy};
pub use plugin::Plugin;

/// The version of the plugin contract (the WIT package `switchboard:plugin`) this SDK implements.
/// Plugins built with the feature `contract-0-1` are stamped with, and bound to, 0.1.0 instead
/// (see [`STAMPED_VERSION`]).
pub const API_VERSION: &str = "0.2.0";

/// The contract version a plugin built with this SDK is stamped with: [`API_VERSION`], or
/// `0.1.0` with the feature `contract-0-1` (a 0.1.0 plugin cannot send typed messages: a
/// [`send::Send`] that is not plain text fails its call).
#[cfg(not(feature = "contract-0-1"))]
pub const STAMPED_VERSION: &str = API_VERSION;
/// The contract version a plugin built with this SDK is stamped with.
#[cfg(feature = "contract-0-1")]
pub const STAMPED_VERSION: &str = "0.1.0";
