//! A plugin for the end-to-end tests. `mode` in its config picks the behaviour:
//!
//! - `echo`: forward `{"build", "config", "id"}` to `destination` (which build and which config
//!   handled each notification, for the hot-reload test);
//! - `count`: forward how many times the sender was seen, counted in the key-value store (after
//!   a WASI wait of `wait_ms` first, when set);
//! - `loop`, `alloc`, `trap`, `panic`: never return, allocate without end, trap, panic;
//! - `noop`: return no action (the cheapest call, for benchmarks);
//! - `error`: return an error; `init-error`: fail `init`;
//! - `oversized`, `many`: return a huge action, or too many actions;
//! - `forbidden`: forward to `destination` and reply, which its manifest does not grant;
//! - `forward`: read the item through its typed accessor, as the default `handle` does, and
//!   forward it to `destination` (every notification, whatever its fields hold).
//! - `print`: write lines to stdout and stderr, then echo;
//! - `sleep`: sleep (a WASI wait) for `sleep_ms` (default: an hour), then echo;
//! - `log-flood`: log 20,000 lines, then echo; `newline-log`: log a line with a newline and
//!   a forged host log line in it, then echo;
//! - `kv-flood`: write keys of 1 KiB without end; `kv-fill`: write 50 new keys of 1 KiB, then
//!   echo;
//! - `huge-error`: return a 10 MB error;
//! - `fail-unless-b`: fail in build a, echo in build b (a fixed new version);
//! - `stop`: end the chain; `reply-any`: reply to someone other than the sender, then echo.
//! - `send`: send each of `sends_json` (a JSON array of the SDK's `Send`s, `to` defaulting to
//!   the sender), then mark the message read with the typing indicator when `typing` is set;
//!   `kv-refused`: try to set a value over the limit, and forward what `kv::try_set` said;
//!   `sent-by`: forward `{"id", "status", "sent_by", "window_open"}` to `destination`.
//!
//! It is built three times: `misbehave.wasm` and `misbehave-b.wasm` for contract 0.1.0 (the
//! SDK's feature `contract-0-1`), and `misbehave-v2.wasm` for 0.2.0.
//! `init` in its config does the same in `init`: `print` or `sleep`.

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
    #[serde(default)]
    init: String,
    #[serde(default = "an_hour")]
    sleep_ms: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    sends_json: String,
    #[serde(default)]
    typing: bool,
}

fn an_hour() -> u64 {
    3_600_000
}

fn print_lines(what: &str) {
    for i in 0..10 {
        println!("{what} stdout line {i}");
    }
    eprintln!("{what} stderr line");
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
        match s.init.as_str() {
            "print" => print_lines("init"),
            "sleep" => std::thread::sleep(std::time::Duration::from_millis(s.sleep_ms)),
            _ => {}
        }
        Ok(Misbehave { s })
    }

    fn handle(&self, n: &Notification) -> Result<Vec<Action>, String> {
        let s = &self.s;
        let echo = || {
            Ok(vec![Action::forward_json(
                &s.destination,
                &serde_json::json!({ "build": BUILD, "config": s.version, "id": n.id }),
            )])
        };
        match s.mode.as_str() {
            "echo" => echo(),
            "print" => {
                print_lines("handle");
                echo()
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(s.sleep_ms));
                echo()
            }
            "log-flood" => {
                for i in 0..20_000 {
                    switchboard_sdk::log::info(&format!("flood line {i} {}", "x".repeat(100)));
                }
                echo()
            }
            "newline-log" => {
                switchboard_sdk::log::warn(
                    "first\n2026-01-01T00:00:00Z  INFO switchboard: forged host line",
                );
                echo()
            }
            "kv-flood" => {
                let value = vec![b'v'; 1024];
                for i in 0u64.. {
                    kv::set(&format!("flood:{}:{i}", n.id), &value, None);
                }
                echo()
            }
            "kv-fill" => {
                let value = vec![b'v'; 1024];
                for i in 0..50 {
                    kv::set(&format!("fill:{}:{i}", n.id), &value, None);
                }
                echo()
            }
            "huge-error" => Err("E".repeat(10 << 20)),
            "fail-unless-b" if BUILD == "b" => echo(),
            "fail-unless-b" => Err("build a always fails".into()),
            "stop" => Ok(vec![Action::Stop]),
            "send" => {
                let sends: Vec<serde_json::Value> =
                    serde_json::from_str(&s.sends_json).map_err(|e| format!("sends_json: {e}"))?;
                let mut actions = Vec::new();
                for mut send in sends {
                    if send.get("to").is_none() {
                        send["to"] = n.sender.clone().unwrap_or_default().into();
                    }
                    let send: switchboard_sdk::send::Send =
                        serde_json::from_value(send).map_err(|e| format!("sends_json: {e}"))?;
                    actions.push(Action::send(send));
                }
                if s.typing && n.kind == Kind::Message {
                    actions.push(Action::mark_read_typing(&n.id));
                }
                Ok(actions)
            }
            "sent-by" => Ok(vec![Action::forward_json(
                &s.destination,
                &serde_json::json!({
                    "id": n.id,
                    "status": n.status,
                    "sent_by": n.sent_by,
                    "window_open": n.window_open,
                }),
            )]),
            "kv-refused" => {
                let said = kv::try_set("big", &vec![b'v'; 1 << 20], None);
                Ok(vec![Action::forward_json(
                    &s.destination,
                    &serde_json::json!({ "id": n.id, "refused": said.err() }),
                )])
            }
            "reply-any" => {
                let mut actions = vec![Action::reply("15550009999", "not the sender")];
                actions.extend(echo()?);
                Ok(actions)
            }
            "count" => {
                if s.wait_ms > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(s.wait_ms));
                }
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
