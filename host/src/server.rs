//! `switchboard serve`: wire the stages together and run until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::admin::Admin;
use crate::cluster::Membership;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::dispatch::{self, Dispatcher};
use crate::ingress::{self, AppState};
use crate::metrics::Metrics;
use crate::plugins::{self, Registry, Runtime};
use crate::store::{self, Store, now_millis};

/// How long dispatch may go on draining the inbox after a shutdown signal before plugin calls
/// are interrupted; what is left is dispatched at the next start.
const SHUTDOWN_DISPATCH: Duration = Duration::from_secs(10);

/// Open the store, load the plugins, and serve until a shutdown signal. On shutdown the
/// listener stops accepting, requests in flight finish, the dispatcher drains the inbox, and
/// delivery attempts in flight finish before the store is closed.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let storage = config.storage.clone();
    let store = tokio::task::spawn_blocking(move || {
        store::connect(&storage.url, storage.pool_size, store::Opener::Server)
    })
    .await
    .context("opening the storage panicked")??;
    let cache_dir = Some(config.storage.data_dir().join("compiled"));
    let runtime = Runtime::new(store.clone(), cache_dir)?;
    let registry = Registry::new(runtime, &config.plugins.dir);
    registry.set_destinations(config.destinations.keys().cloned());
    // Off the async threads: plugins run their `init` as they load.
    let loading = registry.clone();
    tokio::task::spawn_blocking(move || loading.load_all())
        .await
        .context("loading the plugins panicked")??;
    let _watcher = plugins::watch(registry.clone())?;
    let metrics = Arc::new(Metrics::default());

    let membership = Membership::new(config.cluster.host(), &store);
    // The first partitions before the first claim.
    membership
        .beat(&store)
        .await
        .context("cannot take a share of the partitions")?;
    let delivery = Delivery::new(
        store.clone(),
        config.clone(),
        metrics.clone(),
        membership.clone(),
    )?;
    let (inbox, dispatch_rx) = dispatch::channel();
    let wake: Arc<dyn Fn() + Send + Sync> = {
        let (inbox, delivery) = (inbox.clone(), delivery.clone());
        Arc::new(move || {
            inbox.wake();
            delivery.wake();
        })
    };
    membership.on_change(wake.clone());
    store.on_remote_work(wake);
    let membership_task = tokio::spawn(membership.clone().run(store.clone()));
    let stop_dispatch = Arc::new(AtomicBool::new(false));
    let dispatcher = Dispatcher {
        store: store.clone(),
        registry: registry.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        delivery: delivery.clone(),
        membership: membership.clone(),
        groups: config.storage.dispatch_groups(),
    };
    let dispatch_thread = {
        let (stop, handle) = (stop_dispatch.clone(), tokio::runtime::Handle::current());
        let inbox = inbox.clone();
        std::thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || {
                crate::priority::background();
                dispatcher.run(handle, inbox, dispatch_rx, stop)
            })?
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // As many workers as cores, all at background priority: after a burst, delivery can use
    // every core that ingest leaves idle.
    let delivery_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("delivery")
        .on_thread_start(crate::priority::background)
        .enable_all()
        .build()?;
    let delivery_thread = {
        let mut rx = stop_rx.clone();
        std::thread::Builder::new()
            .name("delivery".into())
            .spawn(move || {
                crate::priority::background();
                delivery_runtime.block_on(delivery.run(async move {
                    let _ = rx.wait_for(|s| *s).await;
                }))
            })?
    };
    let prune_task = tokio::spawn(prune_loop(store.clone(), config.clone()));

    let state = Arc::new(AppState {
        config: config.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        registry: registry.clone(),
        inbox: inbox.clone(),
        health: Default::default(),
        membership: membership.clone(),
    });
    let mut app = ingress::router(state, ingress::endpoints(&config)?);
    let admin = Admin::new(
        config.clone(),
        store.clone(),
        metrics.clone(),
        registry.clone(),
    )?;
    let mut admin_tasks = Vec::new();
    if let Some(admin) = admin {
        admin_tasks.push(tokio::spawn(admin.clone().sample()));
        let console = crate::admin::router(admin.clone());
        match admin.listen() {
            None => app = app.merge(console),
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} ([admin] listen)"))?;
                tracing::info!(listen = %addr, "the console is serving at /admin/");
                let limits = ingress::connections::Limits::of(&config.server);
                let metrics = metrics.clone();
                let mut stop = stop_rx.clone();
                admin_tasks.push(tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    ingress::connections::serve(listener, None, console, limits, metrics, stopped)
                        .await
                }));
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let names: Vec<String> = registry
        .snapshot()
        .plugins
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let tls = config
        .server
        .tls_cert
        .as_ref()
        .zip(config.server.tls_key.as_ref());
    let limits = ingress::connections::Limits::of(&config.server);
    tracing::info!(
        listen = %listener.local_addr()?,
        host = %membership.host().id,
        storage = if config.storage.is_postgres() { "postgres" } else { "sqlite" },
        https = tls.is_some(),
        max_connections = limits.max_connections,
        plugins = ?names,
        "switchboard is serving"
    );
    let tls = match tls {
        Some((cert, key)) => Some(ingress::tls::acceptor(cert, key)?),
        None => None,
    };
    ingress::connections::serve(listener, tls, app, limits, metrics, shutdown_signal()).await;

    tracing::info!("shutting down: draining the inbox and deliveries in flight");
    stop_dispatch.store(true, Ordering::SeqCst);
    inbox.wake();
    let mut dispatch_done = tokio::task::spawn_blocking(move || dispatch_thread.join());
    if tokio::time::timeout(SHUTDOWN_DISPATCH, &mut dispatch_done)
        .await
        .is_err()
    {
        tracing::warn!(
            "dispatch did not finish within {} s of the shutdown signal: ending the plugin calls in progress",
            SHUTDOWN_DISPATCH.as_secs()
        );
        registry.interrupt();
        let _ = dispatch_done.await;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::task::spawn_blocking(move || delivery_thread.join()).await;
    prune_task.abort();
    membership_task.abort();
    for task in admin_tasks {
        task.abort();
    }
    if let Err(e) = store.leave(membership.host()).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot give up the partitions; the other hosts take them over when the leases run out");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Keep the database bounded: handled notifications and expired keys older than the retention
/// go; dedup keys go after the dedup window.
async fn prune_loop(store: Store, config: Arc<Config>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = now_millis();
        let retention = config.storage.retention.as_millis() as i64;
        let window = config.storage.dedup_window.as_millis() as i64;
        match store.prune(now - retention, now - window).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned old rows"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning failed"),
        }
        prune_history(&store, now - retention).await;
    }
}

/// Delivery history past the retention goes in small batches, each its own commit, so the
/// writer is never held for long.
async fn prune_history(store: &Store, before: i64) {
    const BATCH: usize = 2_000;
    loop {
        match store.prune_history(before, BATCH).await {
            Ok(n) if n >= BATCH => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "pruning the delivery history failed");
                return;
            }
        }
    }
}
