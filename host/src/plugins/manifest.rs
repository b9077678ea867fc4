//! `NAME.toml`, the manifest beside `NAME.wasm`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use switchboard_sdk::Kind;

/// A plugin's manifest. Without a file, every field has its default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Handed to the plugin's `init`, as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Resource limits per call.
    #[serde(default)]
    pub limits: Limits,
    /// What the plugin's actions may do.
    #[serde(default)]
    pub permissions: Permissions,
    /// Which notifications the plugin is called for.
    #[serde(default)]
    pub subscribe: Subscribe,
    /// How the host handles the plugin's typed sends.
    #[serde(default)]
    pub sends: SendRules,
}

/// `[sends]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRules {
    /// The template sent instead of a send refused because the customer's 24-hour window is
    /// closed; without it, such a send is refused (`window-closed`).
    pub window_fallback: Option<FallbackTemplate>,
}

/// `[sends.window_fallback]`: an approved template.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackTemplate {
    pub name: String,
    /// The language code, as `en_US`.
    pub language: String,
    /// The On-Premises namespace; by default `[whatsapp] namespace`.
    pub namespace: Option<String>,
    /// Text parameters of the template's body, in order.
    #[serde(default)]
    pub body: Vec<String>,
}

/// `[limits]`: the budgets the host enforces on every call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU time of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Wall time of one call, in milliseconds, host calls and WASI waits (sleeps) included.
    pub wall_timeout_ms: u64,
    /// Largest linear memory, in MiB.
    pub memory_mb: u64,
    /// Most actions one call may return.
    pub max_actions: usize,
    /// Largest total size of the text in the returned actions, in KiB.
    pub max_output_kb: usize,
    /// Most key-value writes (sets and deletes) of one call.
    pub kv_max_keys_per_call: usize,
    /// Most bytes (keys and values) one call may write to the key-value store.
    pub kv_max_bytes_per_call: usize,
    /// Most keys the plugin may keep in its key-value store.
    pub kv_max_keys: u64,
    /// Most bytes (keys and values) the plugin may keep in its key-value store.
    pub kv_max_bytes: u64,
    /// Most log lines (host `log` and stdout/stderr lines) of one call; the rest are dropped.
    pub log_max_lines_per_call: usize,
    /// Most log bytes of one call; the rest are dropped.
    pub log_max_bytes_per_call: usize,
    /// Most log lines a second, over all calls (in bursts of a second's worth, or of one
    /// call's); the rest are dropped.
    pub log_max_lines_per_second: u32,
    /// Longest error message a call may return; longer ones are cut.
    pub max_error_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 100,
            wall_timeout_ms: 1000,
            memory_mb: 64,
            max_actions: 32,
            max_output_kb: 256,
            kv_max_keys_per_call: 100,
            kv_max_bytes_per_call: 256 * 1024,
            kv_max_keys: 1_000_000,
            kv_max_bytes: 16 << 20,
            log_max_lines_per_call: 20,
            log_max_bytes_per_call: 8 * 1024,
            log_max_lines_per_second: 50,
            max_error_bytes: 1024,
        }
    }
}

impl Limits {
    /// The CPU-time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The wall-time limit.
    pub fn wall_timeout(&self) -> Duration {
        Duration::from_millis(self.wall_timeout_ms)
    }
}

/// `[permissions]`. A plugin may do nothing outside the world by default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Permissions {
    /// Destinations the plugin may forward to; `"*"` allows all.
    pub destinations: Vec<String>,
    /// Whether the plugin may reply to customers and mark messages read.
    pub reply: bool,
    /// Whom replies may go to: the notification's own sender (the default), or anyone.
    pub reply_to: ReplyTo,
    /// Whether the plugin may end the chain (`Action::Stop`).
    pub stop: bool,
}

/// `[permissions] reply_to`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyTo {
    /// Only the sender of the notification being handled.
    #[default]
    Sender,
    /// Any WhatsApp id.
    Any,
}

impl Permissions {
    /// Whether forwarding to `destination` is allowed.
    pub fn may_forward(&self, destination: &str) -> bool {
        self.destinations
            .iter()
            .any(|d| d == "*" || d == destination)
    }
}

/// `[subscribe]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Subscribe {
    /// `message`, `status`, `error`: all by default.
    pub kinds: Vec<Kind>,
}

impl Default for Subscribe {
    fn default() -> Self {
        Subscribe {
            kinds: vec![Kind::Message, Kind::Status, Kind::Error],
        }
    }
}

impl Manifest {
    /// Read `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                Self::parse(&text).with_context(|| format!("invalid manifest {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read manifest {}", path.display())),
        }
    }

    /// Parse manifest text.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        Ok(toml::from_str(text)?)
    }

    /// The `[config]` table as JSON text, for `init`.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into())
    }

    /// Whether the plugin wants notifications of `kind`.
    pub fn subscribes_to(&self, kind: Kind) -> bool {
        self.subscribe.kinds.contains(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_nothing_and_subscribe_to_everything() {
        let m = Manifest::parse("").unwrap();
        assert!(!m.permissions.reply);
        assert!(!m.permissions.stop);
        assert_eq!(m.permissions.reply_to, ReplyTo::Sender);
        assert!(!m.permissions.may_forward("crm"));
        assert!(m.subscribes_to(Kind::Status));
        assert_eq!(m.config_json(), "{}");
    }

    #[test]
    fn parses_every_section() {
        let m = Manifest::parse(
            r#"
            [config]
            text = "hi"
            routes = [{ keyword = "x", destination = "d" }]
            [limits]
            timeout_ms = 5
            [permissions]
            destinations = ["crm"]
            reply = true
            reply_to = "any"
            stop = true
            [subscribe]
            kinds = ["message"]
            "#,
        )
        .unwrap();
        assert_eq!(m.limits.timeout_ms, 5);
        assert_eq!(m.limits.memory_mb, 64);
        assert_eq!(m.limits.wall_timeout_ms, 1000);
        assert!(m.permissions.stop && m.permissions.reply_to == ReplyTo::Any);
        assert!(m.permissions.may_forward("crm") && !m.permissions.may_forward("other"));
        assert!(!m.subscribes_to(Kind::Error));
        let config: serde_json::Value = serde_json::from_str(&m.config_json()).unwrap();
        assert_eq!(config["routes"][0]["destination"], "d");
    }

    #[test]
    fn rejects_unknown_keys_and_kinds() {
        assert!(Manifest::parse("[limits]\ntimeout = 5").is_err());
        assert!(Manifest::parse("[subscribe]\nkinds = [\"statuses\"]").is_err());
        assert!(Manifest::parse("[permissions]\nreply_to = \"everyone\"").is_err());
    }
}
