//! `switchboard.toml`: the server's configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener.
    pub server: ServerConfig,
    /// The WhatsApp On-Premises API that replies and mark-read go to.
    pub whatsapp: Option<WhatsAppConfig>,
    /// The plugins folder.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Where the inbox, the outbox and plugin state are kept.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Delivery retries.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Named HTTP destinations that plugins forward to.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The path the Coreapp POSTs webhooks to.
    #[serde(default = "default_webhook_path")]
    pub webhook_path: String,
    /// Largest accepted body, in bytes (WhatsApp sends at most 3 MB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_webhook_path() -> String {
    "/webhook".into()
}

fn default_max_body() -> usize {
    3 * 1024 * 1024
}

/// `[whatsapp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// Base URL of the On-Premises API, e.g. `https://coreapp.internal:9090`.
    pub base_url: String,
    /// API user for `POST /v1/users/login`.
    pub username: String,
    /// The password, inline (prefer `password_env`).
    pub password: Option<String>,
    /// The environment variable that holds the password.
    pub password_env: Option<String>,
}

impl WhatsAppConfig {
    /// The password, from the file or the environment.
    pub fn password(&self) -> anyhow::Result<String> {
        match (&self.password, &self.password_env) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(var)) => std::env::var(var)
                .with_context(|| format!("[whatsapp] password_env names {var}, which is not set")),
            (None, None) => bail!("[whatsapp] needs `password` or `password_env`"),
        }
    }
}

/// `[plugins]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder of `NAME.wasm` plugins with optional `NAME.toml` manifests.
    #[serde(default = "default_plugins_dir")]
    pub dir: PathBuf,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: default_plugins_dir(),
        }
    }
}

fn default_plugins_dir() -> PathBuf {
    "plugins".into()
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://PATH` (created on first start).
    #[serde(default = "default_storage_url")]
    pub url: String,
    /// How long a notification id is remembered to drop re-deliveries, e.g. `7d`.
    #[serde(default = "default_dedup_window", with = "humantime_serde")]
    pub dedup_window: Duration,
    /// How long delivered work is kept before it is pruned.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: default_storage_url(),
            dedup_window: default_dedup_window(),
            retention: default_retention(),
        }
    }
}

fn default_storage_url() -> String {
    "sqlite://data/switchboard.db".into()
}

fn default_dedup_window() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl StorageConfig {
    /// The SQLite file named by `url`.
    pub fn sqlite_path(&self) -> anyhow::Result<PathBuf> {
        match self.url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => bail!(
                "[storage] url {:?} is not supported: use sqlite://PATH (PostgreSQL is planned)",
                self.url
            ),
        }
    }
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Give up retrying a delivery after this long, e.g. `24h`.
    #[serde(default = "default_horizon", with = "humantime_serde")]
    pub horizon: Duration,
    /// First retry delay; it doubles per attempt, with jitter.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between two attempts.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Timeout of one HTTP attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Concurrent requests per destination (and to the WhatsApp API).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            horizon: default_horizon(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            timeout: default_timeout(),
            concurrency: default_concurrency(),
        }
    }
}

fn default_horizon() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_concurrency() -> usize {
    32
}

/// `[destinations.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Where forwards are POSTed.
    pub url: String,
    /// Environment variable holding the Standard Webhooks signing secret.
    pub secret_env: Option<String>,
}

impl Config {
    /// Read and check a configuration file. Relative paths in it are taken relative to the
    /// file's folder.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.plugins.dir = base.join(&config.plugins.dir);
        if let Some(p) = config.storage.url.strip_prefix("sqlite://") {
            if !Path::new(p).is_absolute() {
                config.storage.url = format!("sqlite://{}", base.join(p).display());
            }
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if !self.server.webhook_path.starts_with('/') {
            bail!(
                "[server] webhook_path must start with '/', got {:?}",
                self.server.webhook_path
            );
        }
        self.storage.sqlite_path()?;
        for (name, d) in &self.destinations {
            reqwest::Url::parse(&d.url)
                .with_context(|| format!("[destinations.{name}] url {:?} is not a URL", d.url))?;
        }
        if let Some(wa) = &self.whatsapp {
            reqwest::Url::parse(&wa.base_url)
                .with_context(|| format!("[whatsapp] base_url {:?} is not a URL", wa.base_url))?;
        }
        Ok(())
    }
}
