//! End-to-end tests: the real server with the real example plugins, against fake Coreapp and
//! destination servers on loopback. Run them with `cargo xtask test`.

mod console;
mod console_browser;
mod durability;
mod end_to_end;
mod failures;
mod health;
mod ingress;
mod leniency;
mod plugin_budgets;
mod plugins;
mod postgres;
mod sandbox;
mod sends;
mod slow_clients;
