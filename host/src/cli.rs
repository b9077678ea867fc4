//! The `switchboard` command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::http_client::{Endpoint, Http, snippet};
use crate::listing;
use crate::metrics::Metrics;
use crate::plugins::kv::KvOverlay;
use crate::plugins::{Manifest, Runtime};
use crate::store::{self, Store};

/// Webhook router for the WhatsApp Business API, programmable with WebAssembly.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply the migrations not yet applied (a server does at start too).
    Migrate {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
    },
    /// The backend and the schema version.
    Status {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// List the hosts, the partitions each holds, and the lag of each partition.
    Status {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Receive webhooks and run the plugins of the plugins folder on them.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
    },
    /// Inspect and replay deliveries (forwards, replies, mark-read).
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Inspect and run again notifications whose dispatch failed for a reason of the host.
    Notifications {
        #[command(subcommand)]
        command: NotificationsCommand,
    },
    /// Run a plugin once on a saved webhook body and print the actions it returns.
    RunPlugin {
        /// The plugin's `.wasm` file (its `.toml` beside it is used if present).
        plugin: PathBuf,
        /// A file with an On-Premises webhook body.
        #[arg(long)]
        payload: PathBuf,
        /// The plugin's manifest (default: the `.toml` beside the `.wasm`, if any).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Point the Coreapp's webhooks at Switchboard (`PATCH /v1/settings/application`).
    Register {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
        /// The callback URL the Coreapp should POST to (HTTPS in production).
        #[arg(long)]
        url: String,
        /// Toggle `webhooks.message.sent` callbacks.
        #[arg(long)]
        sent: Option<bool>,
        /// Toggle `webhooks.message.delivered` callbacks.
        #[arg(long)]
        delivered: Option<bool>,
        /// Toggle `webhooks.message.read` callbacks.
        #[arg(long)]
        read: Option<bool>,
        /// Print the request instead of sending it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Play the On-Premises API, the Cloud API and destinations locally, and record what they
    /// receive (for demos: `cargo xtask run` starts it).
    Sandbox {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
    },
    /// Apply the database migrations, or show where the schema stands.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The hosts sharing the database, the partitions each holds, and what waits in each.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Install a plugin into a plugins folder, or list the folder.
    Plugins {
        #[command(subcommand)]
        command: crate::plugins::install::PluginsCommand,
    },
    /// Create a new plugin crate from a template.
    NewPlugin {
        /// The plugin's name; a folder of that name is created.
        name: String,
        /// Path to the switchboard-sdk crate, when it is not published where you build.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeliveriesCommand {
    /// List deliveries not yet done, or with --dead the dead letters with their last error.
    List {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Only dead letters.
        #[arg(long)]
        dead: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print one JSON array (times as RFC 3339 and Unix milliseconds).
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again; a running server picks them up within a second.
    Retry {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
        /// The delivery id (from `deliveries list --dead`).
        id: Option<i64>,
        /// Retry every dead letter.
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
    },
    /// List the latest delivered sends with their last WhatsApp status (sent, delivered, read,
    /// failed with its error).
    Sends {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print one JSON array (times as RFC 3339 and Unix milliseconds).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// List notifications waiting to be dispatched again, or with --parked those given up.
    List {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Only parked notifications.
        #[arg(long)]
        parked: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print one JSON array (times as RFC 3339 and Unix milliseconds).
        #[arg(long)]
        json: bool,
    },
    /// Dispatch parked notifications again; a running server picks them up within a second.
    Retry {
        #[arg(long, short, default_value = "switchboard.toml")]
        config: PathBuf,
        /// The notification's id (from `notifications list --parked`).
        id: Option<i64>,
        /// Retry every parked notification.
        #[arg(long, conflicts_with = "id")]
        all_parked: bool,
    },
}

/// Log to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { config } => rt.block_on(crate::server::serve(Config::load(&config)?)),
        Command::Deliveries { command } => rt.block_on(deliveries(command)),
        Command::Notifications { command } => rt.block_on(notifications(command)),
        Command::RunPlugin {
            plugin,
            payload,
            manifest,
        } => {
            let manifest = manifest.unwrap_or_else(|| plugin.with_extension("toml"));
            rt.block_on(run_plugin(&plugin, &payload, &manifest))
        }
        Command::Sandbox { listen } => rt.block_on(crate::sandbox::run(listen)),
        Command::Db { command } => rt.block_on(db(command)),
        Command::Cluster {
            command: ClusterCommand::Status { config, json },
        } => rt.block_on(cluster(&config, json)),
        Command::Plugins { command } => rt.block_on(command.run()),
        Command::NewPlugin { name, sdk_path } => new_plugin(&name, sdk_path.as_deref()),
        Command::Register {
            config,
            url,
            sent,
            delivered,
            read,
            dry_run,
        } => {
            let body = register_body(&url, sent, delivered, read);
            rt.block_on(register(&config, body, dry_run))
        }
    }
}

async fn deliveries(command: DeliveriesCommand) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List {
            config,
            dead,
            limit,
            json,
        } => {
            let store = open_store(&config)?;
            let rows = store.list_deliveries(dead, limit)?;
            store.close().await;
            if json {
                println!("{:#}", listing::deliveries_json(&rows));
            } else if rows.is_empty() {
                println!("no {} deliveries", if dead { "dead" } else { "pending" });
            } else {
                print!("{}", listing::deliveries_table(&rows, store::now_millis()));
            }
        }
        DeliveriesCommand::Retry {
            config,
            id,
            all_dead,
        } => {
            if id.is_none() && !all_dead {
                bail!("name a delivery id, or pass --all-dead");
            }
            let store = open_store(&config)?;
            let n = store.retry_dead(id).await?;
            store.close().await;
            match (n, id) {
                (0, Some(id)) => bail!("no dead delivery with id {id}"),
                (n, _) => println!("{n} deliveries queued again"),
            }
        }
        DeliveriesCommand::Sends {
            config,
            limit,
            json,
        } => {
            let store = open_store(&config)?;
            let rows = store.list_sent(limit)?;
            store.close().await;
            if json {
                println!("{:#}", listing::sends_json(&rows));
            } else if rows.is_empty() {
                println!("no delivered sends");
            } else {
                print!("{}", listing::sends_table(&rows, store::now_millis()));
            }
        }
    }
    Ok(())
}

async fn notifications(command: NotificationsCommand) -> anyhow::Result<()> {
    match command {
        NotificationsCommand::List {
            config,
            parked,
            limit,
            json,
        } => {
            let store = open_store(&config)?;
            let rows = store.list_notifications(parked, limit)?;
            store.close().await;
            if json {
                println!("{:#}", listing::notifications_json(&rows));
            } else if rows.is_empty() {
                println!(
                    "no {} notifications",
                    if parked { "parked" } else { "waiting" }
                );
            } else {
                print!(
                    "{}",
                    listing::notifications_table(&rows, store::now_millis())
                );
            }
        }
        NotificationsCommand::Retry {
            config,
            id,
            all_parked,
        } => {
            if id.is_none() && !all_parked {
                bail!(
                    "name a notification id (from `notifications list --parked`), or pass --all-parked"
                );
            }
            let store = open_store(&config)?;
            let n = store.retry_parked(id).await?;
            store.close().await;
            match (n, id) {
                (0, Some(id)) => bail!("no parked notification with id {id}"),
                (n, _) => println!("{n} notifications queued for dispatch again"),
            }
        }
    }
    Ok(())
}

/// The settings `register` sends.
fn register_body(
    url: &str,
    sent: Option<bool>,
    delivered: Option<bool>,
    read: Option<bool>,
) -> serde_json::Value {
    let mut message = serde_json::Map::new();
    for (key, value) in [("sent", sent), ("delivered", delivered), ("read", read)] {
        if let Some(v) = value {
            message.insert(key.into(), v.into());
        }
    }
    let mut webhooks = serde_json::json!({ "url": url });
    if !message.is_empty() {
        webhooks["message"] = message.into();
    }
    serde_json::json!({ "webhooks": webhooks })
}

async fn register(config: &Path, body: serde_json::Value, dry_run: bool) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let wa = config
        .whatsapp
        .as_ref()
        .filter(|w| w.base_url.is_some())
        .context("register needs [whatsapp] base_url")?;
    let url = format!(
        "{}/v1/settings/application",
        wa.base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
    );
    if Endpoint::parse(body["webhooks"]["url"].as_str().unwrap_or_default()).is_err() {
        bail!("--url must be an absolute URL, e.g. https://switchboard.example.com/webhook");
    }
    if dry_run {
        println!(
            "PATCH {url}\nAuthorization: Bearer <token from POST /v1/users/login as {}>\n\n{body:#}",
            wa.username
        );
        return Ok(());
    }
    let http = Http::new(config.delivery.timeout, 1)?;
    let client = crate::whatsapp::onprem::OnPremClient::new(&http, wa)?;
    let resp = client
        .call(
            hyper::Method::PATCH,
            &client.url("/v1/settings/application")?,
            &body,
        )
        .await?;
    println!(
        "the Coreapp answered {}: {}",
        resp.status,
        snippet(&resp.body)
    );
    if !resp.status.is_success() {
        bail!("the Coreapp refused the settings");
    }
    Ok(())
}

fn open_store(config: &Path) -> anyhow::Result<Store> {
    let config = Config::load(config)?;
    store::connect(
        &config.storage.url,
        config.storage.pool_size,
        store::Opener::Command,
    )
}

async fn db(command: DbCommand) -> anyhow::Result<()> {
    // Opening applies the migrations (under a lock on PostgreSQL, as a starting server does).
    let (DbCommand::Migrate { config } | DbCommand::Status { config }) = &command;
    let store = open_store(config)?;
    let status = store.schema_status()?;
    store.close().await;
    let applied = status.applied.last().copied().unwrap_or(0);
    match command {
        DbCommand::Migrate { .. } => println!(
            "{} schema at version {applied} of {}: up to date",
            status.backend, status.latest
        ),
        DbCommand::Status { .. } => {
            println!("backend: {}", status.backend);
            println!("applied: {applied} (latest known: {})", status.latest);
        }
    }
    Ok(())
}

async fn cluster(config: &Path, json: bool) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let cluster = store.cluster()?;
    store.close().await;
    if json {
        println!("{:#}", serde_json::to_value(&cluster)?);
    } else {
        print!("{}", listing::cluster_table(&cluster));
    }
    Ok(())
}

async fn run_plugin(plugin: &Path, payload: &Path, manifest: &Path) -> anyhow::Result<()> {
    let body =
        std::fs::read(payload).with_context(|| format!("cannot read {}", payload.display()))?;
    let notifications = switchboard_sdk::split::split_onprem(&body, "run-plugin")?;
    let wasm =
        std::fs::read(plugin).with_context(|| format!("cannot read {}", plugin.display()))?;
    let manifest = Manifest::load(manifest)?;
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let store = store::open(&scratch.path().join("scratch.db"))?;
    let runtime = Runtime::new(store.clone(), None)?;
    let name = plugin
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string();
    let path = plugin.display().to_string();
    // Off the async threads, as in the server: the plugin runs its `init` as it loads.
    let run = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let loaded = runtime
            .load(&name, &wasm, manifest)
            .with_context(|| format!("cannot load {path}"))?;
        let mut overlay = KvOverlay::default();
        let metrics = Metrics::default();
        let snapshot = crate::plugins::Snapshot {
            plugins: vec![loaded],
        };
        for n in &notifications {
            match crate::dispatch::run_chain(&snapshot, n, &mut overlay, &metrics) {
                Ok(actions) => {
                    let actions: Vec<_> = actions.into_iter().map(|(_, a)| a).collect();
                    println!(
                        "{}",
                        serde_json::json!({ "kind": n.kind, "id": n.id, "actions": actions })
                    );
                }
                Err(e) => println!(
                    "{}",
                    serde_json::json!({ "kind": n.kind, "id": n.id, "host_error": e })
                ),
            }
        }
        Ok(())
    })
    .await
    .context("the plugin run panicked");
    store.close().await;
    run?
}

fn new_plugin(name: &str, sdk_path: Option<&Path>) -> anyhow::Result<()> {
    let dir = Path::new(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    // A crate name cannot start with a digit: `10-greeter` (its place in the chain) is crate
    // `greeter`, and cargo names the library, so the .wasm, with '_' for '-'.
    let crate_name = name.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if crate_name.is_empty() || !name.chars().all(valid) {
        bail!(
            "plugin name {name:?}: use letters, digits, '-' and '_', with a letter after any \
             leading digits (e.g. order-bot, 10-greeter)"
        );
    }
    let lib = crate_name.replace('-', "_");
    // The SDK this binary was built from, when its source is still there; else crates.io.
    let built_with = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk"));
    let sdk = match sdk_path.or(built_with.exists().then_some(built_with)) {
        Some(p) => format!(
            "{{ path = {:?} }}",
            p.canonicalize()
                .unwrap_or(p.to_path_buf())
                .display()
                .to_string()
        ),
        None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    };
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("tests"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{crate_name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
             [dependencies]\nswitchboard-sdk = {sdk}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
             [dev-dependencies]\nserde_json = \"1\"\n\n[workspace]\n"
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), TEMPLATE)?;
    std::fs::write(dir.join("tests/text.json"), SAMPLE_WEBHOOK)?;
    std::fs::write(
        dir.join(format!("{name}.toml")),
        "# The plugin's manifest: `switchboard plugins install` puts it beside the .wasm.\n\
         [config]\ngreeting = \"Hello!\"\n\n\
         [permissions]\nreply = true\ndestinations = []\n\n[subscribe]\nkinds = [\"message\"]\n",
    )?;
    let wasm = format!("target/wasm32-wasip2/release/{lib}.wasm");
    let rename = if lib == name {
        String::new()
    } else {
        format!(" --name {name}")
    };
    println!(
        "created {name}/, a plugin crate. Edit src/lib.rs; test, build and try it, then install \
         it into the server whose switchboard.toml is in this folder:\n\n  cd {name}\n  cargo test\n  \
         cargo build --release --target wasm32-wasip2\n  \
         switchboard run-plugin {wasm} --payload tests/text.json --manifest {name}.toml\n  \
         switchboard plugins install {wasm} {name}.toml{rename} --config ../switchboard.toml\n\n\
         (for another server, give its --config, or --dir with its plugins folder)"
    );
    Ok(())
}

/// The saved webhook the template's test and `run-plugin` start from.
const SAMPLE_WEBHOOK: &str = r#"{"contacts":[{"profile":{"name":"Kerry Fisher"},"wa_id":"15550001"}],"messages":[{"from":"15550001","id":"ABEGkZUTIXZ0Ago6jCsmqBF4tTXa","timestamp":"1518694235","type":"text","text":{"body":"hello"}}]}
"#;

const TEMPLATE: &str = r##"//! A Switchboard plugin: greets every customer who writes.

use serde::Deserialize;
use switchboard_sdk::{Action, Config, Notification, Plugin, whatsapp::Message};

#[derive(Deserialize)]
struct Settings {
    greeting: String,
}

pub struct Greeter {
    settings: Settings,
}

impl Plugin for Greeter {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Greeter { settings: config.parse()? })
    }

    fn on_message(&self, n: &Notification, _message: &Message) -> Result<Vec<Action>, String> {
        let Some(from) = &n.sender else { return Ok(vec![]) };
        Ok(vec![Action::reply(from, &self.settings.greeting)])
    }
}

switchboard_sdk::register_plugin!(Greeter);

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sdk::testing::Harness;

    #[test]
    fn greets_the_sender() {
        let h = Harness::<Greeter>::new(serde_json::json!({ "greeting": "Hi!" })).unwrap();
        let actions = h.handle_body(include_str!("../tests/text.json")).unwrap();
        assert_eq!(actions, vec![Action::reply("15550001", "Hi!")]);
    }
}
"##;
