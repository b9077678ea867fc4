//! A plugin for the end-to-end tests. `mode` in its config picks the behaviour:
//!
//! - `echo`: forward `{"build", "config", "id"}` to `destination` (which build and which config
//!   handled each notification, for the hot-reload test);
//! - `count`: forward how many times the sender was seen, counted in the key-value store;
//! - `loop`, `alloc`, `trap`, `panic`: never return, allocate without end, trap, panic;
//! - `noop`: return no action (the cheapest call, for benchmarks);
//! - `error`: return an error; `init-error`: fail `init`;
//! - `oversized`, `many`: return a huge action, or too many actions;
//! - `forbidden`: forward to `destination` and reply, which its manifest does not grant;
//! - `forward`: read the item through its typed accessor, as the default `handle` does, and
//!   forward it to `destination` (every notification, whatever its fields hold).

use serde::Deserialize;
use switchboard_sdk::{Action, Config, Kind, Notification, Plugin, kv};

/// Set at build time to tell two builds of this plugin apart.
const BUILD: &str = match option_env!("MISBEHAVE_BUILD") {
    Some(b) => b,
    None => "a",
};

#[derive(Deserialize)]
struct Settings {
    mode: String,
    #[serde(default)]
    destination: String,
    #[serde(default)]
    version: String,
}

/// The plugin.
pub struct Misbehave {
    s: Settings,
}

impl Plugin for Misbehave {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        if s.mode == "init-error" {
            return Err("deliberate init failure".into());
        }
        Ok(Misbehave { s })
    }

    fn handle(&self, n: &Notification) -> Result<Vec<Action>, String> {
        let s = &self.s;
        match s.mode.as_str() {
            "echo" => Ok(vec![Action::forward_json(
                &s.destination,
                &serde_json::json!({ "build": BUILD, "config": s.version, "id": n.id }),
            )]),
            "count" => {
                let key = format!("count:{}", n.sender.as_deref().unwrap_or("?"));
                let count = kv::get_string(&key)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                kv::set(&key, count.to_string().as_bytes(), None);
                Ok(vec![Action::forward_json(
                    &s.destination,
                    &serde_json::json!({ "id": n.id, "count": count }),
                )])
            }
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
                }
            }
            "trap" => std::process::abort(),
            "panic" => panic!("deliberate panic"),
            "noop" => Ok(Vec::new()),
            "error" => Err("deliberate error".into()),
            "oversized" => Ok(vec![Action::reply("15550001", "x".repeat(4 << 20))]),
            "many" => Ok((0..10_000).map(|i| Action::tag(format!("t{i}"))).collect()),
            "forbidden" => Ok(vec![
                Action::forward(&s.destination),
                Action::reply("15550001", "hi"),
            ]),
            "forward" => {
                match n.kind {
                    Kind::Message => n.message().map(drop)?,
                    Kind::Status => n.status().map(drop)?,
                    Kind::Error => n.error().map(drop)?,
                }
                Ok(vec![Action::forward(&s.destination)])
            }
            other => Err(format!("unknown mode {other:?}")),
        }
    }
}

switchboard_sdk::register_plugin!(Misbehave);
