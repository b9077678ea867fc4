//! Running plugins with wasmtime: one engine, warm instances per plugin version, limits per
//! call, and the host functions of the contract.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use switchboard_sdk::{Action, Kind, Notification};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store as WasmStore, StoreLimits,
    StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::kv::{self, KvOverlay};
use super::manifest::Manifest;
use super::timer::CallTimer;
use super::{cache, version};
use crate::store::{KvWrite, Store, now_millis};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
    });
}

use bindings::switchboard::plugin::host::{self as wit_host, Level};
use bindings::switchboard::plugin::types as wit;

/// How often the epoch advances; the granularity of the time limit.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// The most linear memory any plugin may be given.
const MAX_MEMORY_MB: u64 = 512;

/// The wasmtime engine and linker shared by all plugins.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    db: Store,
    cache_dir: Option<PathBuf>,
}

/// Why one call of a plugin failed. The other plugins still run.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error.
    #[error("plugin returned an error: {0}")]
    Failed(String),
    /// The plugin trapped: a panic, an out-of-bounds access, the time or memory limit.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin returned more than its limits allow.
    #[error("plugin output refused: {0}")]
    Output(String),
    /// A new instance could not be made.
    #[error("cannot instantiate the plugin: {0}")]
    Instantiate(String),
    /// The host failed the call (a key-value read failed, say): nothing the plugin did.
    #[error("the host failed the call: {0}")]
    Host(String),
}

impl CallError {
    /// Whether the plugin is to blame. A failure of the host's (an instance that cannot be
    /// made, a storage error) is not: the notification is dispatched again later rather than
    /// handled without the plugin's actions.
    pub fn is_plugin_fault(&self) -> bool {
        !matches!(self, CallError::Instantiate(_) | CallError::Host(_))
    }
}

/// The per-instance state the host functions see.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    plugin: Arc<str>,
    db: Store,
    /// The dispatch batch's uncommitted key-value writes, lent for the duration of a call.
    overlay: KvOverlay,
    /// This call's writes, applied to the overlay only if the call succeeds.
    call_writes: Vec<KvWrite>,
    /// The time limit of the current call.
    timer: CallTimer,
    /// A failure of the host during the current call: the call fails with it, whatever the
    /// plugin returns.
    host_fault: Option<String>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for HostState {}

impl wit_host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.plugin;
        let message = truncate(&message, 4096);
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        if let Some(v) = kv::lookup(&self.call_writes, &self.plugin, &key) {
            return v;
        }
        match self.overlay.get(&self.db, &self.plugin, &key) {
            Ok(v) => v,
            Err(e) => {
                self.host_fault
                    .get_or_insert_with(|| format!("key-value read failed: {e:#}"));
                None
            }
        }
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_seconds: Option<u64>) {
        if key.len() > kv::MAX_KEY || value.len() > kv::MAX_VALUE {
            tracing::warn!(
                plugin = &*self.plugin,
                key_bytes = key.len(),
                value_bytes = value.len(),
                "key-value write refused: keys are limited to {} bytes and values to {} bytes",
                kv::MAX_KEY,
                kv::MAX_VALUE
            );
            return;
        }
        let expires_at = ttl_seconds
            .map(|t| now_millis().saturating_add((t.min(i64::MAX as u64 / 2000) * 1000) as i64));
        self.call_writes.push(KvWrite::Set {
            plugin: self.plugin.to_string(),
            key,
            value,
            expires_at,
        });
    }

    fn kv_delete(&mut self, key: String) {
        self.call_writes.push(KvWrite::Delete {
            plugin: self.plugin.to_string(),
            key,
        });
    }

    fn now_millis(&mut self) -> u64 {
        now_millis().max(0) as u64
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Runtime {
    /// Set up the engine (pooling allocator, epoch interruption) and the linker. Compiled code
    /// is cached in `cache_dir` when given.
    pub fn new(db: Store, cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<Runtime>> {
        let engine = match Engine::new(&engine_config(true)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; instances are allocated on demand");
                Engine::new(&engine_config(false))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            db,
            cache_dir,
        }))
    }

    /// Compile, link and initialise a plugin. Fails without side effects when any step fails,
    /// so the caller can keep the previous version serving.
    pub fn load(
        self: &Arc<Self>,
        name: &str,
        wasm: &[u8],
        manifest: Manifest,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let api_version = version::check(wasm)?;
        let hash = cache::hash(wasm);
        let (component, cached) =
            cache::compile(&self.engine, self.cache_dir.as_deref(), wasm, &hash)
                .context("cannot compile the component")?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context(
                "cannot link the component: it imports something this host does not provide \
             (plugins get only the switchboard:plugin host interface and an empty WASI)",
            )?;
        let pre = bindings::PluginPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export the switchboard:plugin world")?;
        let plugin = Arc::new(LoadedPlugin {
            name: name.into(),
            hash,
            api_version,
            manifest,
            from_cache: cached,
            runtime: self.clone(),
            pre,
            idle: Mutex::new(Vec::new()),
        });
        let instance = plugin.instantiate().map_err(|e| anyhow::anyhow!("{e}"))?;
        plugin.put_back(instance);
        Ok(plugin)
    }

    /// Remove the cached compiled code of every version but `keep` (the hashes loaded now).
    pub fn prune_cache(&self, keep: &[&str]) -> usize {
        self.cache_dir
            .as_deref()
            .map_or(0, |dir| cache::prune(dir, keep))
    }
}

fn engine_config(pooling: bool) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(256)
            .total_tables(1024)
            .max_memory_size((MAX_MEMORY_MB as usize) << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

struct Instance {
    store: WasmStore<HostState>,
    bindings: bindings::Plugin,
}

/// One compiled version of a plugin, with its idle instances.
pub struct LoadedPlugin {
    /// The file name without `.wasm`.
    pub name: Arc<str>,
    /// SHA-256 of the wasm bytes.
    pub hash: String,
    /// The contract version stamped by the SDK, if any.
    pub api_version: Option<String>,
    /// The manifest it was loaded with.
    pub manifest: Manifest,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    runtime: Arc<Runtime>,
    pre: bindings::PluginPre<HostState>,
    idle: Mutex<Vec<Instance>>,
}

impl LoadedPlugin {
    /// A short form of the hash, to tell versions apart in logs.
    pub fn version(&self) -> &str {
        &self.hash[..12]
    }

    fn instantiate(&self) -> Result<Instance, CallError> {
        let limits = &self.manifest.limits;
        let memory = limits.memory_mb.min(MAX_MEMORY_MB) as usize;
        let state = HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory << 20)
                .trap_on_grow_failure(true)
                .build(),
            plugin: self.name.clone(),
            db: self.runtime.db.clone(),
            overlay: KvOverlay::default(),
            call_writes: Vec::new(),
            timer: CallTimer::start(limits.timeout()),
            host_fault: None,
        };
        let mut store = WasmStore::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        // At every tick, the call's own clock decides.
        store.epoch_deadline_callback(|mut ctx| {
            Ok(if ctx.data_mut().timer.expired() {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        start_clock(&mut store, limits.timeout());
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        start_clock(&mut store, limits.timeout());
        match bindings.call_init(&mut store, &self.manifest.config_json()) {
            Ok(Ok(())) => Ok(Instance { store, bindings }),
            Ok(Err(e)) => Err(CallError::Instantiate(format!("init failed: {e}"))),
            Err(trap) => Err(CallError::Instantiate(format!("init trapped: {trap:#}"))),
        }
    }

    /// Run the plugin on one notification. Key-value writes of a successful call go into
    /// `overlay`; a failed call leaves no trace, and an instance that trapped is discarded.
    pub fn call(
        &self,
        n: &Notification,
        prior: &[Action],
        overlay: &mut KvOverlay,
    ) -> Result<Vec<Action>, CallError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match idle {
            Some(i) => i,
            None => self.instantiate()?,
        };
        let notification = to_wit(n);
        let prior: Vec<wit::Action> = prior.iter().cloned().map(to_wit_action).collect();
        let state = instance.store.data_mut();
        state.overlay = std::mem::take(overlay);
        state.call_writes.clear();
        state.host_fault = None;
        start_clock(&mut instance.store, self.manifest.limits.timeout());
        let result = instance
            .bindings
            .call_handle(&mut instance.store, &notification, &prior);
        let state = instance.store.data_mut();
        *overlay = std::mem::take(&mut state.overlay);
        let writes = std::mem::take(&mut state.call_writes);
        if let Some(fault) = state.host_fault.take() {
            if result.is_ok() {
                self.put_back(instance);
            }
            return Err(CallError::Host(fault));
        }
        let actions = match result {
            Ok(Ok(actions)) => actions,
            Ok(Err(message)) => {
                self.put_back(instance);
                return Err(CallError::Failed(message));
            }
            Err(trap) => return Err(CallError::Trap(describe_trap(&trap, &self.manifest))),
        };
        self.put_back(instance);
        let actions = self.check_output(actions)?;
        overlay.apply(writes);
        Ok(actions)
    }

    fn put_back(&self, instance: Instance) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }

    fn check_output(&self, actions: Vec<wit::Action>) -> Result<Vec<Action>, CallError> {
        let limits = &self.manifest.limits;
        if actions.len() > limits.max_actions {
            return Err(CallError::Output(format!(
                "{} actions returned, the limit is {} ([limits] max_actions)",
                actions.len(),
                limits.max_actions
            )));
        }
        let actions: Vec<Action> = actions.into_iter().map(from_wit_action).collect();
        let bytes: usize = actions.iter().map(action_size).sum();
        if bytes > limits.max_output_kb * 1024 {
            return Err(CallError::Output(format!(
                "{bytes} bytes of actions returned, the limit is {} KiB ([limits] max_output_kb)",
                limits.max_output_kb
            )));
        }
        Ok(actions)
    }
}

/// Start the clock of a call into `store` (instantiation, `init` or `handle`) limited to
/// `timeout`: from the next epoch tick on, the call's timer is asked at every tick.
fn start_clock(store: &mut WasmStore<HostState>, timeout: Duration) {
    store.data_mut().timer = CallTimer::start(timeout);
    store.set_epoch_deadline(1);
}

fn describe_trap(trap: &wasmtime::Error, manifest: &Manifest) -> String {
    match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            format!(
                "used more than {} ms of CPU time ([limits] timeout_ms)",
                manifest.limits.timeout_ms
            )
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "panicked (unreachable code reached)".into()
        }
        _ if format!("{trap:#}").contains("memory") => {
            format!(
                "{trap:#} (the memory limit is {} MiB: [limits] memory_mb)",
                manifest.limits.memory_mb
            )
        }
        _ => format!("{trap:#}"),
    }
}

fn action_size(a: &Action) -> usize {
    match a {
        Action::Reply { to, body, quote } => {
            to.len() + body.len() + quote.as_ref().map_or(0, String::len)
        }
        Action::Forward { destination, body } => {
            destination.len() + body.as_ref().map_or(0, String::len)
        }
        Action::MarkRead { message_id } => message_id.len(),
        Action::Tag { tag } => tag.len(),
        Action::Stop => 0,
    }
}

fn to_wit(n: &Notification) -> wit::Notification {
    wit::Notification {
        kind: match n.kind {
            Kind::Message => wit::Kind::Message,
            Kind::Status => wit::Kind::Status,
            Kind::Error => wit::Kind::Error,
        },
        id: n.id.clone(),
        sender: n.sender.clone(),
        timestamp: n.timestamp,
        message_type: n.message_type.clone(),
        status: n.status.clone(),
        text: n.text.clone(),
        contact_name: n.contact_name.clone(),
        source: n.source.clone(),
        phone_number_id: n.phone_number_id.clone(),
        item_json: n.item_json.clone(),
        contact_json: n.contact_json.clone(),
    }
}

fn to_wit_action(a: Action) -> wit::Action {
    match a {
        Action::Reply { to, body, quote } => wit::Action::Reply(wit::Reply { to, body, quote }),
        Action::Forward { destination, body } => {
            wit::Action::Forward(wit::Forward { destination, body })
        }
        Action::MarkRead { message_id } => wit::Action::MarkRead(message_id),
        Action::Tag { tag } => wit::Action::Tag(tag),
        Action::Stop => wit::Action::Stop,
    }
}

fn from_wit_action(a: wit::Action) -> Action {
    match a {
        wit::Action::Reply(r) => Action::Reply {
            to: r.to,
            body: r.body,
            quote: r.quote,
        },
        wit::Action::Forward(f) => Action::Forward {
            destination: f.destination,
            body: f.body,
        },
        wit::Action::MarkRead(id) => Action::MarkRead { message_id: id },
        wit::Action::Tag(tag) => Action::Tag { tag },
        wit::Action::Stop => Action::Stop,
    }
}
