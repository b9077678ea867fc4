//! Running plugins with wasmtime: one engine, warm instances per plugin version, budgets per
//! call, and the host functions of the contract.
//!
//! Calls run on the calling thread (a plain thread, never a runtime's: the dispatcher, the
//! plugins watcher, a blocking task), driven as futures so that a plugin waiting in WASI (a
//! sleep) can be cut off at its wall-time limit; the timers of those waits run on one small
//! runtime of their own.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard_sdk::{Action, Kind, Notification};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store as WasmStore, StoreLimits,
    StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::kv::{self, CallWrites, KvOverlay};
use super::manifest::{Limits, Manifest};
use super::output::{self, Captured, LogBudget, LogRate};
use super::quarantine::{self, Breaker};
use super::timer::{CallTimer, Expired};
use super::{cache, version};
use crate::store::{KvWrite, Store, now_millis};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
        exports: { default: async },
    });
}

mod v2;

use bindings::switchboard::plugin::host::{self as wit_host, Level};
use bindings::switchboard::plugin::types as wit;

/// How often the epoch advances; the granularity of the time limit.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// The most linear memory any plugin may be given.
const MAX_MEMORY_MB: u64 = 512;
/// The longest line a plugin may log; longer ones are cut.
const MAX_LOG_LINE: usize = 1024;

/// The wasmtime engine and linker shared by all plugins.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    db: Store,
    cache_dir: Option<PathBuf>,
    timers: tokio::runtime::Handle,
    interrupt: Arc<Interrupt>,
}

/// Why one call of a plugin failed. The other plugins still run.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    // The plugin's fault:
    /// The plugin returned an error.
    #[error("plugin returned an error: {0}")]
    Failed(String),
    /// The plugin trapped: a panic, an out-of-bounds access, the CPU time or memory limit.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin returned more than its limits allow.
    #[error("plugin output refused: {0}")]
    Output(String),
    /// The plugin went over a budget of its `[limits]`: wall time, key-value writes.
    #[error("plugin stopped: {0}")]
    Limit(String),
    /// A new instance's `init` failed or trapped.
    #[error("cannot initialise the plugin: {0}")]
    Init(String),
    // Not the plugin's fault:
    /// A new instance could not be made.
    #[error("cannot instantiate the plugin: {0}")]
    Instantiate(String),
    /// The host could not run the call to its end: shutting down, storage failing, its thread
    /// starved of CPU.
    #[error("plugin call not completed: {0}")]
    Host(String),
}

impl CallError {
    /// Whether the failure is the plugin's own (counted towards its quarantine), rather than
    /// the host's (the call may succeed when run again).
    pub fn is_plugin_fault(&self) -> bool {
        match self {
            CallError::Failed(_)
            | CallError::Trap(_)
            | CallError::Output(_)
            | CallError::Limit(_)
            | CallError::Init(_) => true,
            CallError::Instantiate(_) | CallError::Host(_) => false,
        }
    }
}

/// Set when the server shuts down: calls in progress end, later ones do not start.
#[derive(Default)]
struct Interrupt {
    set: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Interrupt {
    async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.set.load(Ordering::SeqCst) {
            notified.await;
        }
    }
}

/// Why the current call must end, once the host knows.
#[derive(Debug, Clone)]
enum Stop {
    Cpu,
    Starved,
    Interrupted,
    /// Over a budget: the reason.
    Limit(String),
    /// A host function failed: the reason.
    Host(String),
}

/// The per-instance state the host functions see.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    budget: Limits,
    plugin: Arc<str>,
    db: Store,
    /// The dispatch batch's uncommitted key-value writes, lent for the duration of a call.
    overlay: KvOverlay,
    /// This call's writes, applied to the overlay only if the call succeeds.
    call: CallWrites,
    /// The CPU-time limit of the current call.
    timer: CallTimer,
    log: LogBudget,
    /// The version's log rate, shared by its instances.
    log_rate: Arc<Mutex<LogRate>>,
    stdout: Captured,
    stderr: Captured,
    stop: Option<Stop>,
    interrupt: Arc<Interrupt>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    /// Start a call: a fresh clock and budgets.
    fn begin(&mut self) {
        self.timer = CallTimer::start(self.budget.timeout());
        self.log = LogBudget::new(&self.budget);
        self.call.clear();
        self.stop = None;
    }

    /// End the call at the next epoch tick, for `stop` (the first reason is kept).
    fn stop(&mut self, stop: Stop) {
        self.stop.get_or_insert(stop);
    }

    /// Log one line of the plugin, escaped, if the call's budget has room for it.
    fn emit(&mut self, level: Level, stream: Option<&str>, message: &str) {
        let message = output::cut(message, MAX_LOG_LINE);
        if !self.log.admit(message.len()) {
            return;
        }
        let in_rate = self
            .log_rate
            .lock()
            .is_ok_and(|mut r| r.take(Instant::now()));
        if !in_rate {
            self.log.dropped += 1;
            return;
        }
        let message = output::escape(&message);
        let plugin = &*self.plugin;
        let stream = stream.unwrap_or("log");
        match level {
            Level::Trace => tracing::trace!(plugin, stream, "{message}"),
            Level::Debug => tracing::debug!(plugin, stream, "{message}"),
            Level::Info => tracing::info!(plugin, stream, "{message}"),
            Level::Warn => tracing::warn!(plugin, stream, "{message}"),
            Level::Error => tracing::error!(plugin, stream, "{message}"),
        }
    }

    /// Log what the call wrote to stdout and stderr, and what did not fit its budget. Returns
    /// how many lines were dropped.
    fn end_logs(&mut self) -> usize {
        for (stream, captured) in [
            ("stdout", self.stdout.clone()),
            ("stderr", self.stderr.clone()),
        ] {
            let text = captured.take();
            for line in text.lines().filter(|l| !l.is_empty()) {
                self.emit(Level::Info, Some(stream), line);
            }
        }
        let dropped = std::mem::take(&mut self.log.dropped);
        if dropped == 0 {
            return 0;
        }
        // The notice is a log line too: under a flood, one notice counts many calls' drops.
        let report = self.log_rate.lock().ok().and_then(|mut r| {
            r.unreported += dropped as u64;
            r.take(Instant::now())
                .then(|| std::mem::take(&mut r.unreported))
        });
        if let Some(dropped) = report {
            tracing::warn!(
                plugin = &*self.plugin,
                dropped,
                "plugin log lines dropped: over the budget of {} lines and {} bytes a call and \
                 {} lines a second ([limits] log_max_lines_per_call, log_max_bytes_per_call, \
                 log_max_lines_per_second)",
                self.budget.log_max_lines_per_call,
                self.budget.log_max_bytes_per_call,
                self.budget.log_max_lines_per_second
            );
        }
        dropped
    }

    /// The value of `key` as this call sees it.
    fn read(&mut self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(v) = kv::lookup(&self.call.writes, &self.plugin, key) {
            return Ok(v);
        }
        self.overlay.get(&self.db, &self.plugin, key)
    }

    /// Count a write of `size` bytes to `key` (`new_size` bytes after it, none for a delete)
    /// against the budgets.
    fn admit_write(
        &mut self,
        key: &str,
        size: usize,
        new_size: Option<usize>,
    ) -> Result<(), WriteRefused> {
        if let Some(stop) = &self.stop {
            return Err(WriteRefused::Host(format!("the call is ending: {stop:?}")));
        }
        let counted = self.read(key).and_then(|old| {
            let old_size = old.map(|v| key.len() + v.len());
            let keys = new_size.is_some() as i64 - old_size.is_some() as i64;
            let bytes = new_size.unwrap_or(0) as i64 - old_size.unwrap_or(0) as i64;
            let usage = self.overlay.usage(&self.db, &self.plugin)?;
            Ok(self.call.admit(&self.budget, usage, size, keys, bytes))
        });
        match counted {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(WriteRefused::Limit(format!(
                "key-value write refused: {reason}"
            ))),
            Err(e) => Err(WriteRefused::Host(format!(
                "key-value store unavailable: {e:#}"
            ))),
        }
    }

    /// `kv-get` of either contract.
    fn get_key(&mut self, key: &str) -> Option<Vec<u8>> {
        match self.read(key) {
            Ok(v) => v,
            // Not the plugin's fault: the call fails as the host's, and the notification is
            // dispatched again later rather than handled on a value that was not there.
            Err(e) => {
                self.stop(Stop::Host(format!("key-value read failed: {e:#}")));
                None
            }
        }
    }

    /// `kv-set` of either contract: the write joins the call's, or the reason it is refused.
    fn set_key(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u64>,
    ) -> Result<(), WriteRefused> {
        if key.len() > kv::MAX_KEY || value.len() > kv::MAX_VALUE {
            return Err(WriteRefused::Limit(format!(
                "key-value write refused: a {}-byte key with a {}-byte value; keys are limited \
                 to {} bytes and values to {} bytes",
                key.len(),
                value.len(),
                kv::MAX_KEY,
                kv::MAX_VALUE
            )));
        }
        let size = key.len() + value.len();
        self.admit_write(&key, size, Some(size))?;
        let expires_at = ttl_seconds
            .map(|t| now_millis().saturating_add((t.min(i64::MAX as u64 / 2000) * 1000) as i64));
        self.call.writes.push(KvWrite::Set {
            plugin: self.plugin.to_string(),
            key,
            value,
            expires_at,
        });
        Ok(())
    }

    /// `kv-delete` of either contract; a refused delete ends the call.
    fn delete_key(&mut self, key: String) {
        if let Err(refused) = self.admit_write(&key, key.len(), None) {
            self.stop(refused.into());
            return;
        }
        self.call.writes.push(KvWrite::Delete {
            plugin: self.plugin.to_string(),
            key,
        });
    }
}

/// Why a key-value write was refused.
enum WriteRefused {
    /// Over a budget: the plugin's doing.
    Limit(String),
    /// The store failed, or the call is already ending.
    Host(String),
}

impl From<WriteRefused> for Stop {
    fn from(refused: WriteRefused) -> Stop {
        match refused {
            WriteRefused::Limit(reason) => Stop::Limit(reason),
            WriteRefused::Host(reason) => Stop::Host(reason),
        }
    }
}

impl wit::Host for HostState {}

impl wit_host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        self.emit(level, None, &message);
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.get_key(&key)
    }

    /// Under 0.1.0 a refused write ends the call.
    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_seconds: Option<u64>) {
        if let Err(refused) = self.set_key(key, value, ttl_seconds) {
            self.stop(refused.into());
        }
    }

    fn kv_delete(&mut self, key: String) {
        self.delete_key(key);
    }

    fn now_millis(&mut self) -> u64 {
        now_millis().max(0) as u64
    }
}

/// The runtime that runs the timers of plugin calls (WASI sleeps, wall-time limits). It lives
/// as long as the process: a runtime cannot be dropped from async code.
fn timers() -> anyhow::Result<tokio::runtime::Handle> {
    static TIMERS: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = TIMERS.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("plugin-timers")
        .enable_time()
        .build()
        .context("cannot start the plugins' timer thread")?;
    Ok(TIMERS.get_or_init(|| rt).handle().clone())
}

/// How a driven call ended when it did not return.
enum Cut {
    WallTime,
    Interrupted,
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
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        v2::bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
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
            timers: timers()?,
            interrupt: Arc::default(),
        }))
    }

    /// End the calls in progress and refuse new ones (for shutdown): they fail with
    /// [`CallError::Host`].
    pub fn interrupt(&self) {
        self.interrupt.set.store(true, Ordering::SeqCst);
        self.interrupt.notify.notify_waiters();
    }

    /// Whether [`Runtime::interrupt`] was called.
    pub fn interrupted(&self) -> bool {
        self.interrupt.set.load(Ordering::SeqCst)
    }

    /// Run `call` on this thread until it returns, `wall` passes or the runtime is interrupted.
    /// Must not be called from async code.
    fn drive<T>(
        &self,
        wall: Duration,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> Result<wasmtime::Result<T>, Cut> {
        let deadline = tokio::time::Instant::now() + wall;
        let mut call = std::pin::pin!(call);
        // Most calls never wait in WASI, so they end at their first poll: try that before
        // setting up the timer and the interrupt, which cost more than such a call (the
        // timers' context is entered, so a WASI sleep the call starts is registered there).
        {
            let _context = self.timers.enter();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(r) = call.as_mut().poll(&mut cx) {
                return Ok(r);
            }
        }
        let interrupt = self.interrupt.clone();
        // Parked on this thread, with the timers' context entered, rather than in the timers'
        // `block_on`: a host function may wait on a runtime of its own (a key-value read on
        // PostgreSQL), which tokio refuses inside another runtime's `block_on`.
        let _context = self.timers.enter();
        futures_executor::block_on(async move {
            tokio::select! {
                biased;
                () = interrupt.wait() => Err(Cut::Interrupted),
                r = tokio::time::timeout_at(deadline, call) => r.map_err(|_| Cut::WallTime),
            }
        })
    }

    /// Compile, link and initialise a plugin. Fails without side effects when any step fails,
    /// so the caller can keep the previous version serving. Must not be called from async code.
    pub fn load(
        self: &Arc<Self>,
        name: &str,
        wasm: &[u8],
        manifest: Manifest,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let api_version = version::check(wasm)?;
        let hash = cache::hash(wasm);
        let (component, cached) = cache::compile(
            &self.engine,
            &engine_config(false),
            self.cache_dir.as_deref(),
            wasm,
            &hash,
        )
        .context("cannot compile the component")?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context(
                "cannot link the component: it imports something this host does not provide \
             (plugins get only the switchboard:plugin host interface and an empty WASI)",
            )?;
        // A component stamped 0.2.0 is bound to that contract; any other (0.1.0, or built
        // without the SDK's stamp) to 0.1.0.
        let pre = match api_version.as_deref() {
            Some("0.2.0") => v2::bindings::PluginPre::new(pre).map(Pre::V2),
            _ => bindings::PluginPre::new(pre).map(Pre::V1),
        }
        .map_err(anyhow::Error::from)
        .context("the component does not export the switchboard:plugin world")?;
        let plugin = Arc::new(LoadedPlugin {
            name: name.into(),
            hash,
            api_version,
            from_cache: cached,
            runtime: self.clone(),
            pre,
            idle: Mutex::new(Vec::new()),
            breaker: Mutex::new(Breaker::default()),
            stats: Stats::default(),
            log_rate: Arc::new(Mutex::new(LogRate::new(&manifest.limits, Instant::now()))),
            manifest,
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
            .total_stacks(256)
            .max_memory_size((MAX_MEMORY_MB as usize) << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

struct Instance {
    store: WasmStore<HostState>,
    bindings: Bindings,
}

/// A component linked, ready to instantiate, under the contract it was built for.
enum Pre {
    V1(bindings::PluginPre<HostState>),
    V2(v2::bindings::PluginPre<HostState>),
}

/// The exports of an instance, under its contract.
enum Bindings {
    V1(bindings::Plugin),
    V2(v2::bindings::Plugin),
}

/// The actions a call returned, in its contract's types.
enum Returned {
    V1(Vec<wit::Action>),
    V2(Vec<v2::bindings::switchboard::plugin::types::Action>),
}

impl Returned {
    fn len(&self) -> usize {
        match self {
            Returned::V1(a) => a.len(),
            Returned::V2(a) => a.len(),
        }
    }

    fn into_actions(self) -> Vec<Action> {
        match self {
            Returned::V1(a) => a.into_iter().map(from_wit_action).collect(),
            Returned::V2(a) => a.into_iter().map(v2::from_wit_action).collect(),
        }
    }
}

/// What a plugin version did, for `/plugins` and `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub calls: AtomicU64,
    /// Calls that failed by the plugin's fault.
    pub failures: AtomicU64,
    /// Calls skipped while quarantined.
    pub skipped: AtomicU64,
    /// Log lines dropped over the calls' budgets.
    pub log_lines_dropped: AtomicU64,
}

impl Stats {
    /// The counts, for `/plugins`.
    pub fn counts(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "calls": get(&self.calls),
            "failures": get(&self.failures),
            "skipped": get(&self.skipped),
            "log_lines_dropped": get(&self.log_lines_dropped),
        })
    }
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
    /// Counts of its calls.
    pub stats: Stats,
    runtime: Arc<Runtime>,
    pre: Pre,
    idle: Mutex<Vec<Instance>>,
    breaker: Mutex<Breaker>,
    log_rate: Arc<Mutex<LogRate>>,
}

impl LoadedPlugin {
    /// A short form of the hash, to tell versions apart in logs.
    pub fn version(&self) -> &str {
        &self.hash[..12]
    }

    /// Whether to call this version now: false while it is quarantined (counted as skipped).
    pub fn admit(&self) -> bool {
        let admitted = self
            .breaker
            .lock()
            .map(|mut b| b.admit(Instant::now()))
            .unwrap_or(true);
        if !admitted {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Its quarantine record, as `/plugins` shows it.
    pub fn health(&self) -> Option<quarantine::Status> {
        self.breaker.lock().ok().map(|b| b.status(Instant::now()))
    }

    /// Whether it is quarantined now.
    pub fn quarantined(&self) -> bool {
        self.breaker
            .lock()
            .is_ok_and(|b| b.quarantined(Instant::now()))
    }

    fn instantiate(&self) -> Result<Instance, CallError> {
        let limits = &self.manifest.limits;
        let memory = limits.memory_mb.min(MAX_MEMORY_MB) as usize;
        let (stdout, stderr) = (Captured::default(), Captured::default());
        let state = HostState {
            wasi: WasiCtx::builder()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory << 20)
                .trap_on_grow_failure(true)
                .build(),
            budget: limits.clone(),
            plugin: self.name.clone(),
            db: self.runtime.db.clone(),
            overlay: KvOverlay::default(),
            call: CallWrites::default(),
            timer: CallTimer::start(limits.timeout()),
            log: LogBudget::new(limits),
            log_rate: self.log_rate.clone(),
            stdout,
            stderr,
            stop: None,
            interrupt: self.runtime.interrupt.clone(),
        };
        let mut store = WasmStore::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        // At every tick, the call's own clock and the host decide.
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            if s.interrupt.set.load(Ordering::SeqCst) {
                s.stop(Stop::Interrupted);
            }
            match s.timer.expired() {
                Some(Expired::Cpu) => s.stop(Stop::Cpu),
                Some(Expired::Starved) => s.stop(Stop::Starved),
                None => {}
            }
            Ok(if s.stop.is_some() {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        let wall = limits.wall_timeout();
        begin(&mut store);
        let instantiated = match &self.pre {
            Pre::V1(pre) => self.runtime.drive(wall, async {
                pre.instantiate_async(&mut store).await.map(Bindings::V1)
            }),
            Pre::V2(pre) => self.runtime.drive(wall, async {
                pre.instantiate_async(&mut store).await.map(Bindings::V2)
            }),
        };
        let bindings = match instantiated {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                store.data_mut().end_logs();
                return Err(match self.stopped(&mut store) {
                    Some(e) => e,
                    None => CallError::Instantiate(self.cut(&format!("{e:#}"))),
                });
            }
            Err(cut) => return Err(self.cut_off(&mut store, cut, "instantiation")),
        };
        begin(&mut store);
        let config = self.manifest.config_json();
        let result = match &bindings {
            Bindings::V1(b) => self.runtime.drive(wall, b.call_init(&mut store, &config)),
            Bindings::V2(b) => self.runtime.drive(wall, b.call_init(&mut store, &config)),
        };
        self.end_logs(&mut store);
        let error = match result {
            Ok(Ok(Ok(()))) => match self.stopped(&mut store) {
                None => return Ok(Instance { store, bindings }),
                Some(e) => e,
            },
            Ok(Ok(Err(e))) => CallError::Init(format!("init failed: {}", self.cut(&e))),
            Ok(Err(trap)) => match self.stopped(&mut store) {
                Some(e) => e,
                None => CallError::Init(format!("init trapped: {}", self.describe(&trap))),
            },
            Err(cut) => self.cut_off(&mut store, cut, "init"),
        };
        Err(match error {
            CallError::Limit(e) | CallError::Trap(e) => CallError::Init(e),
            e => e,
        })
    }

    /// Run the plugin on one notification. Key-value writes of a successful call go into
    /// `overlay`; a failed call leaves no trace, and an instance that did not return is
    /// discarded. Must not be called from async code.
    pub fn call(
        &self,
        n: &Notification,
        prior: &[Action],
        overlay: &mut KvOverlay,
    ) -> Result<Vec<Action>, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call_once(n, prior, overlay);
        if let Ok(mut breaker) = self.breaker.lock() {
            match &result {
                Ok(_) => breaker.success(),
                Err(e) if e.is_plugin_fault() => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(backoff) = breaker.failure(Instant::now(), &e.to_string()) {
                        tracing::warn!(
                            plugin = %self.name,
                            version = self.version(),
                            seconds = backoff.as_secs(),
                            "plugin quarantined: it failed {} calls in a row; the rest of the \
                             chain runs without it until the quarantine ends or a new version \
                             is installed",
                            quarantine::THRESHOLD
                        );
                    }
                }
                Err(_) => {}
            }
        }
        result
    }

    fn call_once(
        &self,
        n: &Notification,
        prior: &[Action],
        overlay: &mut KvOverlay,
    ) -> Result<Vec<Action>, CallError> {
        if self.runtime.interrupted() {
            return Err(CallError::Host("the server is shutting down".into()));
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match idle {
            Some(i) => i,
            None => self.instantiate()?,
        };
        instance.store.data_mut().overlay = std::mem::take(overlay);
        begin(&mut instance.store);
        let wall = self.manifest.limits.wall_timeout();
        let store = &mut instance.store;
        let result = match &instance.bindings {
            Bindings::V1(b) => {
                let notification = to_wit(n);
                let prior: Vec<wit::Action> =
                    prior.iter().cloned().filter_map(to_wit_action).collect();
                self.runtime.drive(wall, async {
                    b.call_handle(store, &notification, &prior)
                        .await
                        .map(|r| r.map(Returned::V1))
                })
            }
            Bindings::V2(b) => {
                let notification = v2::to_wit(n);
                let prior: Vec<_> = prior.iter().cloned().map(v2::to_wit_action).collect();
                self.runtime.drive(wall, async {
                    b.call_handle(store, &notification, &prior)
                        .await
                        .map(|r| r.map(Returned::V2))
                })
            }
        };
        self.end_logs(&mut instance.store);
        let state = instance.store.data_mut();
        *overlay = std::mem::take(&mut state.overlay);
        let call = std::mem::take(&mut state.call);
        let actions = match result {
            Ok(Ok(Ok(actions))) => {
                if let Some(e) = self.stopped(&mut instance.store) {
                    self.put_back(instance);
                    return Err(e);
                }
                actions
            }
            Ok(Ok(Err(message))) => {
                let stopped = self.stopped(&mut instance.store);
                self.put_back(instance);
                return Err(stopped.unwrap_or(CallError::Failed(self.cut(&message))));
            }
            Ok(Err(trap)) => {
                return Err(self
                    .stopped(&mut instance.store)
                    .unwrap_or_else(|| CallError::Trap(self.describe(&trap))));
            }
            Err(cut) => return Err(self.cut_off(&mut instance.store, cut, "call")),
        };
        self.put_back(instance);
        let actions = self.check_output(actions)?;
        overlay.account(&self.name, call.delta_keys, call.delta_bytes);
        overlay.apply(call.writes);
        Ok(actions)
    }

    /// The error of a call the host stopped, if it did.
    fn stopped(&self, store: &mut WasmStore<HostState>) -> Option<CallError> {
        let limits = &self.manifest.limits;
        Some(match store.data_mut().stop.take()? {
            Stop::Cpu => CallError::Trap(format!(
                "used more than {} ms of CPU time ([limits] timeout_ms)",
                limits.timeout_ms
            )),
            Stop::Starved => CallError::Host(format!(
                "its thread waited more than {} ms for a CPU core (the host is overloaded)",
                limits.timeout_ms * super::timer::WALL_FACTOR as u64
            )),
            Stop::Interrupted => CallError::Host("the server is shutting down".into()),
            Stop::Limit(reason) => CallError::Limit(reason),
            Stop::Host(reason) => CallError::Host(reason),
        })
    }

    /// The error of a call cut off while it waited in a host call (its store is dropped).
    fn cut_off(&self, store: &mut WasmStore<HostState>, cut: Cut, what: &str) -> CallError {
        store.data_mut().end_logs();
        match cut {
            Cut::WallTime => CallError::Limit(format!(
                "{what} used more than {} ms of wall time, waiting included ([limits] wall_timeout_ms)",
                self.manifest.limits.wall_timeout_ms
            )),
            Cut::Interrupted => CallError::Host("the server is shutting down".into()),
        }
    }

    fn end_logs(&self, store: &mut WasmStore<HostState>) {
        let dropped = store.data_mut().end_logs();
        self.stats
            .log_lines_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    /// Text from the plugin, escaped and cut to `[limits] max_error_bytes`.
    fn cut(&self, text: &str) -> String {
        output::escape(&output::cut(text, self.manifest.limits.max_error_bytes)).into_owned()
    }

    fn describe(&self, trap: &wasmtime::Error) -> String {
        self.cut(&describe_trap(trap, &self.manifest))
    }

    fn put_back(&self, instance: Instance) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }

    fn check_output(&self, actions: Returned) -> Result<Vec<Action>, CallError> {
        let limits = &self.manifest.limits;
        if actions.len() > limits.max_actions {
            return Err(CallError::Output(format!(
                "{} actions returned, the limit is {} ([limits] max_actions)",
                actions.len(),
                limits.max_actions
            )));
        }
        let actions = actions.into_actions();
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

/// Start a call into `store` (instantiation, `init` or `handle`): its budgets, and from the
/// next epoch tick on, its clock is asked at every tick.
fn begin(store: &mut WasmStore<HostState>) {
    store.data_mut().begin();
    store.set_epoch_deadline(1);
}

fn describe_trap(trap: &wasmtime::Error, manifest: &Manifest) -> String {
    match trap.downcast_ref::<wasmtime::Trap>() {
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
        Action::MarkRead { message_id, .. } => message_id.len(),
        Action::Tag { tag } => tag.len(),
        Action::Stop => 0,
        Action::Send(send) => json_size(send),
    }
}

/// The length of `value` as JSON, written nowhere.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
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

fn to_wit_action(a: Action) -> Option<wit::Action> {
    Some(match a {
        Action::Reply { to, body, quote } => wit::Action::Reply(wit::Reply { to, body, quote }),
        Action::Forward { destination, body } => {
            wit::Action::Forward(wit::Forward { destination, body })
        }
        Action::MarkRead { message_id, .. } => wit::Action::MarkRead(message_id),
        Action::Tag { tag } => wit::Action::Tag(tag),
        Action::Stop => wit::Action::Stop,
        // 0.1.0 has no typed sends: a later 0.1.0 plugin sees a text send as a reply, and
        // not the other kinds.
        Action::Send(send) => match send.message {
            switchboard_sdk::send::OutgoingMessage::Text(text) => wit::Action::Reply(wit::Reply {
                to: send.to,
                body: text.body,
                quote: send.reply_to,
            }),
            _ => return None,
        },
    })
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
        wit::Action::MarkRead(id) => Action::MarkRead {
            message_id: id,
            typing_indicator: false,
        },
        wit::Action::Tag(tag) => Action::Tag { tag },
        wit::Action::Stop => Action::Stop,
    }
}
