//! `switchboard.toml`: the server's configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::http_client::Endpoint;

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
    /// Dispatch retries after failures of the host (not of a plugin).
    #[serde(default)]
    pub dispatch: DispatchConfig,
    /// Named HTTP destinations that plugins forward to.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// This host among several sharing one PostgreSQL database.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The operator console (`/admin/`); off without this section.
    pub admin: Option<AdminConfig>,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This host's id, unique among the hosts sharing a database; by default the host name
    /// and the process id.
    pub host_id: Option<String>,
    /// How long a host's leases on its partitions last without a renewal: after it, another
    /// host takes its work over. Renewed every third of it.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            host_id: None,
            lease_ttl: default_lease_ttl(),
        }
    }
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

impl ClusterConfig {
    pub fn host(&self) -> crate::store::HostInfo {
        crate::store::HostInfo {
            id: self
                .host_id
                .clone()
                .unwrap_or_else(crate::cluster::default_host_id),
            ttl: self.lease_ttl,
        }
    }
}

/// `[admin]`: the operator console, its API under `/admin/api/` and its page at `/admin/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Environment variable holding the token that API requests bear
    /// (`Authorization: Bearer TOKEN`).
    pub token_env: String,
    /// An address of its own, e.g. `127.0.0.1:9090`; without it the console is served on
    /// `[server] listen`.
    pub listen: Option<SocketAddr>,
    /// Refuse every change (retries): look only.
    #[serde(default)]
    pub read_only: bool,
    /// Most dead letters one retry by filter puts back. Default: 1000.
    #[serde(default = "default_max_retry")]
    pub max_retry: usize,
}

fn default_max_retry() -> usize {
    1000
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The path of the default On-Premises endpoint (no authentication: use it behind a
    /// private network, or set it to "" and declare `[[server.endpoints]]`).
    #[serde(default = "default_webhook_path")]
    pub webhook_path: String,
    /// Largest accepted body, in bytes (WhatsApp sends at most 3 MB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Deepest accepted JSON nesting.
    #[serde(default = "default_max_depth")]
    pub max_json_depth: usize,
    /// PEM certificate chain: serve HTTPS. A renewed file is picked up without a restart.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// More webhook endpoints, each with its own kind and authentication.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// Longest wait for a request's head (and for a TLS handshake); a slower client is cut.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest wait for a request's whole body once its head arrived (answered 408).
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections open at once; more wait in the listen backlog. Default: 1024, or half
    /// the open-file limit if that is lower.
    pub max_connections: Option<usize>,
    /// Readiness and liveness fail when notifications wait and dispatch made no progress for
    /// this long.
    #[serde(default = "default_dispatch_stall", with = "humantime_serde")]
    pub dispatch_stall_timeout: Duration,
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_dispatch_stall() -> Duration {
    Duration::from_secs(60)
}

impl ServerConfig {
    /// `max_connections`, or its default: 1024, or half the open-file limit if lower (the
    /// other half is for the database, plugins and outgoing deliveries).
    pub fn max_connections(&self) -> usize {
        if let Some(n) = self.max_connections {
            return n;
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_cur
        } else {
            2048
        };
        (soft / 2).clamp(16, 1024) as usize
    }
}

fn default_max_depth() -> usize {
    32
}

/// The webhook format an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// The On-Premises API's flat body.
    Onprem,
    /// The Cloud API's `object` / `entry` / `changes` envelope, signed with the app secret.
    Cloud,
}

/// `[[server.endpoints]]`: a webhook endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Name, handed to plugins as the notification's `source`.
    pub name: String,
    /// URL path. A `{token}` segment takes the secret token in the path.
    pub path: String,
    /// `onprem` or `cloud`.
    pub kind: EndpointKind,
    /// Environment variable holding a secret token the caller must present: in the path's
    /// `{token}` segment, the `token` query parameter, or the `X-Switchboard-Token` header.
    pub token_env: Option<String>,
    /// Only these client addresses (CIDRs) may call.
    #[serde(default)]
    pub allow_ips: Vec<ipnet::IpNet>,
    /// Cloud: environment variable holding the app secret that signs `X-Hub-Signature-256`.
    pub app_secret_env: Option<String>,
    /// Cloud: environment variable holding the token of the `hub.verify_token` handshake.
    pub verify_token_env: Option<String>,
}

fn default_webhook_path() -> String {
    "/webhook".into()
}

fn default_max_body() -> usize {
    3 * 1024 * 1024
}

/// `[whatsapp]`: the On-Premises API, and in `[whatsapp.cloud]` the Cloud API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// Base URL of the On-Premises API, e.g. `https://coreapp.internal:9090`.
    pub base_url: Option<String>,
    /// API user for `POST /v1/users/login`.
    #[serde(default = "default_username")]
    pub username: String,
    /// The password, inline (prefer `password_env`).
    pub password: Option<String>,
    /// The environment variable that holds the password.
    pub password_env: Option<String>,
    /// The Cloud API, for notifications that came in on a `cloud` endpoint.
    pub cloud: Option<CloudApiConfig>,
    /// The On-Premises template namespace, for templates whose send names none.
    pub namespace: Option<String>,
    /// Messages a second each business number sends at most (WhatsApp's default throughput).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// The rate of particular numbers, by phone number id (`onprem` for the Coreapp's number).
    #[serde(default)]
    pub rates: BTreeMap<String, f64>,
}

fn default_rate() -> f64 {
    80.0
}

fn default_username() -> String {
    "admin".into()
}

/// `[whatsapp.cloud]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudApiConfig {
    /// Graph API base with version, e.g. `https://graph.facebook.com/v21.0`.
    pub base_url: String,
    /// The business phone number id to send from when a notification carries none.
    pub phone_number_id: Option<String>,
    /// Environment variable holding the access token.
    pub token_env: String,
}

impl CloudApiConfig {
    /// The access token, from the environment.
    pub fn token(&self) -> anyhow::Result<String> {
        std::env::var(&self.token_env).with_context(|| {
            format!(
                "[whatsapp.cloud] token_env names {}, which is not set",
                self.token_env
            )
        })
    }
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
    /// Folder of `NAME.wasm` plugins, each loaded with its `NAME.toml` manifest.
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
    /// `sqlite://PATH` (created on first start), or `postgres://USER@HOST:PORT/DATABASE`
    /// (add `?sslmode=require` for TLS) for several hosts sharing one database.
    #[serde(default = "default_storage_url")]
    pub url: String,
    /// PostgreSQL connections per host at most. Dispatch runs a large batch in up to one group
    /// per 4 connections (at most 4 groups), each reading keys on a connection of its own.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Where the compiled plugins are cached; by default beside the SQLite database, or
    /// `data/` beside the configuration with PostgreSQL.
    pub data_dir: Option<PathBuf>,
    /// How long a notification id is remembered to drop re-deliveries, e.g. `7d`.
    #[serde(default = "default_dedup_window", with = "humantime_serde")]
    pub dedup_window: Duration,
    /// How long handled notifications and delivered deliveries (with their attempts) are kept
    /// before they are pruned: the history the console shows. Default: 3 days.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: default_storage_url(),
            pool_size: default_pool_size(),
            data_dir: None,
            dedup_window: default_dedup_window(),
            retention: default_retention(),
        }
    }
}

impl StorageConfig {
    /// How many groups dispatch runs a large batch in at most, at once, on threads of their
    /// own, each group the notifications of some of the customers, in order.
    ///
    /// On PostgreSQL a plugin call that reads the key-value store waits for a round trip (with
    /// the dispatcher's thread at idle priority): run one after the other, those waits, not the
    /// plugins, set the pace. So one group per key reader ([`StorageConfig::key_readers`]).
    /// On SQLite a read waits for nothing, and groups pay only with cores to spare: one per
    /// core beyond the first, 4 at most (on 2 cores, one group used less CPU per webhook).
    pub fn dispatch_groups(&self) -> usize {
        if self.is_postgres() {
            Self::key_readers(self.pool_size)
        } else {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores - 1).clamp(1, 4)
        }
    }

    /// The PostgreSQL connections of `pool_size` that dispatch keeps for key reads, one per
    /// dispatch group: one per 4 connections, 4 at most, so that ingest and delivery keep
    /// theirs.
    pub fn key_readers(pool_size: usize) -> usize {
        (pool_size / 4).clamp(1, 4)
    }
}

fn default_pool_size() -> usize {
    16
}

fn default_storage_url() -> String {
    "sqlite://data/switchboard.db".into()
}

fn default_dedup_window() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_retention() -> Duration {
    Duration::from_secs(3 * 24 * 3600)
}

impl StorageConfig {
    /// Whether `url` names PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }

    /// Refuse a `url` of no supported kind.
    fn check(&self) -> anyhow::Result<()> {
        match self.url.strip_prefix("sqlite://") {
            Some("") => bail!("[storage] url {:?} names no file", self.url),
            Some(_) => Ok(()),
            None if self.is_postgres() => {
                self.url.parse::<tokio_postgres::Config>().map_err(|e| {
                    anyhow::anyhow!("[storage] url is not a valid PostgreSQL URL: {e}")
                })?;
                if self.pool_size < 2 {
                    bail!("[storage] pool_size must be at least 2");
                }
                Ok(())
            }
            None => bail!(
                "[storage] url {:?} is not supported: use sqlite://PATH or postgres://USER@HOST/DATABASE",
                crate::store::postgres::redact(&self.url)
            ),
        }
    }

    /// The folder for files beside the database (the compiled plugins).
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        match self.url.strip_prefix("sqlite://") {
            Some(path) => Path::new(path)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            None => PathBuf::from("data"),
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
    /// Most pending deliveries held in memory; a larger backlog waits in the database.
    #[serde(default = "default_max_in_memory")]
    pub max_in_memory: usize,
}

fn default_max_in_memory() -> usize {
    10_000
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            horizon: default_horizon(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            timeout: default_timeout(),
            concurrency: default_concurrency(),
            max_in_memory: default_max_in_memory(),
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

/// `[dispatch]`: a notification whose dispatch fails for a reason of the host (storage, an
/// instance that cannot be made), not of a plugin, is run again with backoff, then parked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Attempts before the notification is parked (`notifications list --parked`).
    #[serde(default = "default_dispatch_attempts")]
    pub max_attempts: u32,
    /// First delay before running it again; it doubles per attempt.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between two attempts.
    #[serde(default = "default_dispatch_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            max_attempts: default_dispatch_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_dispatch_max_backoff(),
        }
    }
}

fn default_dispatch_attempts() -> u32 {
    10
}

fn default_dispatch_max_backoff() -> Duration {
    Duration::from_secs(5 * 60)
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
        for file in [&mut config.server.tls_cert, &mut config.server.tls_key]
            .into_iter()
            .flatten()
        {
            *file = base.join(&*file);
        }
        if let Some(p) = config.storage.url.strip_prefix("sqlite://")
            && !Path::new(p).is_absolute()
        {
            config.storage.url = format!("sqlite://{}", base.join(p).display());
        }
        let data_dir = config.storage.data_dir.clone();
        config.storage.data_dir =
            Some(base.join(data_dir.unwrap_or_else(|| config.storage.data_dir())));
        config.check()?;
        Ok(config)
    }

    /// The kind of the endpoint named `source`; the default endpoint is On-Premises.
    pub fn endpoint_kind(&self, source: &str) -> EndpointKind {
        self.server
            .endpoints
            .iter()
            .find(|e| e.name == source)
            .map_or(EndpointKind::Onprem, |e| e.kind)
    }

    /// The API that replies to `n` go through: the one it came in from.
    pub fn via(&self, n: &switchboard_sdk::Notification) -> crate::whatsapp::Via {
        match self.endpoint_kind(&n.source) {
            EndpointKind::Onprem => crate::whatsapp::Via::Onprem,
            EndpointKind::Cloud => crate::whatsapp::Via::Cloud {
                phone_number_id: n.phone_number_id.clone(),
            },
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if !self.server.webhook_path.is_empty() && !self.server.webhook_path.starts_with('/') {
            bail!(
                "[server] webhook_path must start with '/', got {:?}",
                self.server.webhook_path
            );
        }
        self.storage.check()?;
        for (name, d) in &self.destinations {
            Endpoint::parse(&d.url).with_context(|| format!("[destinations.{name}] url"))?;
        }
        if let Some(wa) = &self.whatsapp {
            for url in wa
                .base_url
                .iter()
                .chain(wa.cloud.as_ref().map(|c| &c.base_url))
            {
                Endpoint::parse(url).context("[whatsapp] base_url")?;
            }
            crate::delivery::pacing::check(wa)?;
        }
        for (name, value) in [
            ("header_timeout", self.server.header_timeout),
            ("body_timeout", self.server.body_timeout),
            ("idle_timeout", self.server.idle_timeout),
            ("dispatch_stall_timeout", self.server.dispatch_stall_timeout),
        ] {
            if value.is_zero() {
                bail!(
                    "[server] {name} must be more than 0 (e.g. \"10s\"); leave it out for the default"
                );
            }
        }
        if self.server.max_connections == Some(0) {
            bail!("[server] max_connections must be at least 1; leave it out for the default");
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            bail!("[server] tls_cert and tls_key go together");
        }
        let mut paths = vec![self.server.webhook_path.as_str()];
        for e in &self.server.endpoints {
            if !e.path.starts_with('/') {
                bail!(
                    "[[server.endpoints]] {}: path must start with '/', got {:?}",
                    e.name,
                    e.path
                );
            }
            if e.kind == EndpointKind::Cloud && e.app_secret_env.is_none() {
                bail!(
                    "[[server.endpoints]] {}: a cloud endpoint needs app_secret_env (it checks X-Hub-Signature-256)",
                    e.name
                );
            }
            if paths.contains(&e.path.as_str()) {
                bail!(
                    "[[server.endpoints]] {}: path {:?} is used twice",
                    e.name,
                    e.path
                );
            }
            paths.push(&e.path);
        }
        let mut names = Vec::new();
        if !self.server.webhook_path.is_empty() {
            // The source name of notifications of `webhook_path`.
            names.push("default");
        }
        for e in &self.server.endpoints {
            if names.contains(&e.name.as_str()) {
                bail!(
                    "[[server.endpoints]] name {:?} is used twice{}: plugins tell endpoints apart by it",
                    e.name,
                    if e.name == "default" {
                        " (\"default\" is the endpoint of webhook_path)"
                    } else {
                        ""
                    }
                );
            }
            names.push(&e.name);
        }
        if let Some(admin) = &self.admin {
            if admin.token_env.is_empty() {
                bail!("[admin] token_env must name an environment variable holding the token");
            }
            if admin.max_retry == 0 {
                bail!("[admin] max_retry must be at least 1; leave it out for the default");
            }
            if admin.listen == Some(self.server.listen) {
                bail!("[admin] listen is [server] listen: leave it out to serve the console there");
            }
            if let Some(p) = paths.iter().find(|p| p.starts_with("/admin")) {
                bail!(
                    "[admin] the console is served under /admin, which the webhook path {p:?} takes"
                );
            }
        }
        self.delivery.check()?;
        self.dispatch.check()
    }
}

/// Refuse a zero duration for `setting`.
fn positive(setting: &str, d: Duration) -> anyhow::Result<()> {
    if d.is_zero() {
        bail!("{setting} must be more than 0");
    }
    Ok(())
}

impl DeliveryConfig {
    fn check(&self) -> anyhow::Result<()> {
        if self.concurrency == 0 {
            bail!("[delivery] concurrency must be at least 1 (nothing would ever be delivered)");
        }
        positive("[delivery] initial_backoff", self.initial_backoff)?;
        positive("[delivery] max_backoff", self.max_backoff)?;
        positive("[delivery] timeout", self.timeout)?;
        if self.max_backoff < self.initial_backoff {
            bail!(
                "[delivery] max_backoff ({:?}) is shorter than initial_backoff ({:?})",
                self.max_backoff,
                self.initial_backoff
            );
        }
        if self.horizon < self.initial_backoff {
            bail!(
                "[delivery] horizon ({:?}) is shorter than initial_backoff ({:?}): nothing would ever be retried",
                self.horizon,
                self.initial_backoff
            );
        }
        Ok(())
    }
}

impl DispatchConfig {
    fn check(&self) -> anyhow::Result<()> {
        if self.max_attempts == 0 {
            bail!("[dispatch] max_attempts must be at least 1");
        }
        positive("[dispatch] initial_backoff", self.initial_backoff)?;
        positive("[dispatch] max_backoff", self.max_backoff)?;
        if self.max_backoff < self.initial_backoff {
            bail!(
                "[dispatch] max_backoff ({:?}) is shorter than initial_backoff ({:?})",
                self.max_backoff,
                self.initial_backoff
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `Config::load` gives for a file with `extra` after a minimal `[server]`.
    fn refused(extra: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(
            &path,
            format!("[server]\nlisten = \"127.0.0.1:8080\"\n{extra}"),
        )
        .unwrap();
        match Config::load(&path) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn settings_that_break_delivery_are_refused_with_the_setting_named() {
        let endpoint = |name: &str, path: &str| {
            format!(
                "[[server.endpoints]]\nname = \"{name}\"\npath = \"{path}\"\nkind = \"onprem\"\n"
            )
        };
        for (extra, named) in [
            ("[delivery]\nconcurrency = 0\n", "[delivery] concurrency"),
            (
                "[delivery]\ninitial_backoff = \"0s\"\n",
                "[delivery] initial_backoff",
            ),
            (
                "[delivery]\nmax_backoff = \"0s\"\n",
                "[delivery] max_backoff",
            ),
            ("[delivery]\ntimeout = \"0s\"\n", "[delivery] timeout"),
            (
                "[delivery]\ninitial_backoff = \"10s\"\nmax_backoff = \"1s\"\n",
                "[delivery] max_backoff",
            ),
            (
                "[delivery]\nhorizon = \"1s\"\ninitial_backoff = \"5s\"\n",
                "[delivery] horizon",
            ),
            ("[dispatch]\nmax_attempts = 0\n", "[dispatch] max_attempts"),
            (
                "[dispatch]\ninitial_backoff = \"0ms\"\n",
                "[dispatch] initial_backoff",
            ),
            (
                &format!("{}{}", endpoint("a", "/one"), endpoint("a", "/two")),
                "name \"a\" is used twice",
            ),
            (
                &endpoint("default", "/one"),
                "name \"default\" is used twice",
            ),
            (
                &format!("{}{}", endpoint("a", "/one"), endpoint("b", "/one")),
                "path \"/one\" is used twice",
            ),
            (
                &endpoint("a", "/webhook"),
                "path \"/webhook\" is used twice",
            ),
        ] {
            let error = refused(extra);
            assert!(error.contains(named), "{extra}: {error}");
        }
    }

    #[test]
    fn the_defaults_pass_the_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:8080\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.dispatch.max_attempts, 10);
    }

    #[test]
    fn dispatch_groups_follow_the_pool_on_postgres_and_the_spare_cores_on_sqlite() {
        let mut storage = StorageConfig {
            url: "postgres://switchboard@127.0.0.1/switchboard".into(),
            ..StorageConfig::default()
        };
        assert_eq!(storage.dispatch_groups(), 4, "the default pool of 16");
        storage.pool_size = 6;
        assert_eq!(storage.dispatch_groups(), 1);
        storage.url = "sqlite://data/switchboard.db".into();
        storage.pool_size = 16;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(storage.dispatch_groups(), (cores - 1).clamp(1, 4));
    }
}
