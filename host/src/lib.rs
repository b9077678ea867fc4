//! Switchboard: a webhook router for the WhatsApp Business API, programmable with WebAssembly.
//!
//! The modules follow the data flow: [`ingress`] receives webhooks and stores them in the
//! [`store`]'s inbox; [`dispatch`] runs them through the [`plugins`] and queues their actions in
//! the outbox; [`delivery`] carries those out, to destinations and to the [`whatsapp`] API, over
//! the [`http_client`].

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod http_client;
pub mod ingress;
pub mod listing;
pub mod metrics;
pub mod plugins;
pub mod priority;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod whatsapp;
