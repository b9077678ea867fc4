//! The PostgreSQL implementation of [`Storage`]: several hosts share one database.
//!
//! - Ingest: one statement per group commit inserts the dedup keys and the fresh notifications
//!   (`ON CONFLICT DO NOTHING` on the keys' primary key), so a key is stored with its
//!   notification or not at all. One group commit runs at a time; the next one gathers what
//!   arrives meanwhile, as SQLite's writer does.
//! - Work is split into [`schema::PARTITIONS`] partitions by customer, each leased to one host
//!   (`partitions` table: owner, fence, expiry by the database's clock). Dispatch and delivery
//!   records lock the lease rows they are fenced by (`FOR SHARE`), so a take-over waits for a
//!   record in progress and every later record under the old fence fails.
//! - Wake-ups: after a commit that stored work, a `NOTIFY` (at most one per [`NOTIFY_GAP`]);
//!   every host `LISTEN`s on its own connection, and polls as the fallback.
//! - No transaction is held across a plugin call or an HTTP call: claims are plain reads, and
//!   records are short transactions of their own.
//!
//! Every call runs on this store's own runtime, so the pool's connections live there whoever
//! calls: async callers await it, blocking callers wait for it.

mod history;
mod kv;
mod rows;
pub mod schema;
mod sends;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

use super::inbox::{decode, encode};
use super::lease::{Cluster, Fenced, HostInfo, HostRow, Owned, PartitionRow, SchemaStatus};
use super::{
    Attempted, AuditRow, Backlog, DeadFilter, DeliveryOutcome, DeliveryQuery, DeliveryRecord,
    DestinationHealth, InboxItem, KvReader, KvWrite, NewDelivery, NewInboxItem, NotificationQuery,
    NotificationSummary, OutboxRow, Page, RetryChange, RetryReport, RetryRow, RetryState, Storage,
    now_millis, partition_of,
};
use schema::PARTITIONS;

/// Webhooks' notifications per group commit at most.
const GROUP: usize = 512;
/// The shortest time between two wake-ups sent: `NOTIFY` takes a lock across the whole
/// database at commit, so it is never sent per row or per commit under load.
const NOTIFY_GAP: Duration = Duration::from_millis(10);
const CHANNEL: &str = "switchboard_work";
/// Held by the host that prunes.
const PRUNE_LOCK: i64 = 0x5357_4254_5052_4e45;
/// Rows per pruning statement: small, so that no statement holds back vacuum for long.
const PRUNE_BATCH: i64 = 1000;

/// What wakes the dispatcher and delivery when another host stored work.
type Wakers = Arc<Mutex<Vec<Arc<dyn Fn() + Send + Sync>>>>;

/// The PostgreSQL store.
pub struct Postgres {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    ingest: mpsc::Sender<IngestJob>,
    /// Set when work was stored; the notifier sends one wake-up for any number of them.
    stored: Arc<Notify>,
    wakers: Wakers,
    /// Partitions this host is giving up: not worked on, released at the next heartbeat.
    releasing: Mutex<HashSet<i32>>,
    kv_usage: super::kv::UsageCache,
    kv_sessions: Arc<kv::Sessions>,
    prune_cursor: Arc<super::history::PruneCursor>,
}

struct IngestJob {
    items: Vec<NewInboxItem>,
    done: oneshot::Sender<anyhow::Result<usize>>,
}

/// How to connect: with TLS when the URL asks for it (`sslmode=require`).
#[derive(Clone)]
enum Tls {
    None,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// The connection settings of `url`, with the timeouts it does not set.
fn client_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("[storage] url is not a PostgreSQL URL: {}", redact(url)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // A link cut without a reset (a partition) fails a query after this, where the kernel's
    // retransmissions would take about 15 minutes: the connection is dropped, a sound one
    // opened. It counts unacknowledged data only, so a busy server does not trip it.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(10));
    }
    config.application_name("switchboard");
    Ok(config)
}

impl Postgres {
    /// Connect to `url`, apply the migrations, and start the background tasks (group commit,
    /// wake-ups). `pool_size` connections at most (and one for wake-ups): one for each
    /// dispatch group's key reads, the rest pooled.
    pub fn connect(url: &str, pool_size: usize) -> anyhow::Result<Postgres> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-pg")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let config = client_config(url)?;
        let tls = tls(&config)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Tls::None => Manager::from_config(config.clone(), NoTls, manager_config),
            Tls::Rustls(t) => Manager::from_config(config.clone(), t.clone(), manager_config),
        };
        let readers = crate::config::StorageConfig::key_readers(pool_size);
        let pool = Pool::builder(manager)
            .max_size(pool_size.saturating_sub(readers).max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .context("cannot set up the PostgreSQL pool")?;
        // Connect and migrate before serving: a wrong URL is told at start.
        // (Waited for on a channel: the caller may be async code, where `block_on` panics.)
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let migrating = pool.clone();
        handle.spawn(async move {
            let result = async {
                let mut client = migrating.get().await?;
                schema::migrate(&mut client).await
            };
            let _ = tx.send(result.await);
        });
        rx.recv()
            .context("the PostgreSQL runtime stopped")?
            .with_context(|| format!("cannot set up the database at {}", redact(url)))?;
        let (ingest, jobs) = mpsc::channel(4096);
        let stored = Arc::new(Notify::new());
        let wakers: Wakers = Default::default();
        handle.spawn(committer(pool.clone(), jobs, stored.clone()));
        handle.spawn(notifier(pool.clone(), stored.clone()));
        let kv_sessions = kv::Sessions::new(config.clone(), tls.clone(), readers);
        handle.spawn(listener(config, tls, wakers.clone()));
        Ok(Postgres {
            pool,
            runtime: Some(runtime),
            handle,
            ingest,
            stored,
            wakers,
            releasing: Mutex::new(HashSet::new()),
            kv_usage: Default::default(),
            kv_sessions,
            prune_cursor: Default::default(),
        })
    }

    /// Run `f` on the store's runtime and wait for it (from blocking code).
    fn block<T, F>(&self, f: impl FnOnce(Pool) -> F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.pool.clone());
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().context("the PostgreSQL store stopped")?
    }

    /// Run `f` on the store's runtime and await it.
    async fn run<T, F>(&self, f: impl FnOnce(Pool) -> F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        self.handle
            .spawn(f(self.pool.clone()))
            .await
            .context("a PostgreSQL call panicked")?
    }

    /// Record outcomes, fenced by `lease` (see `rows::record_attempts`).
    async fn record(
        &self,
        lease: &[Owned],
        outcomes: Vec<(i64, DeliveryOutcome, Attempted)>,
    ) -> anyhow::Result<()> {
        let lease = lease.to_vec();
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            lazy(&txn).await?;
            let held: Vec<i32> = fenced(&txn, &lease).await?.into_iter().collect();
            let dropped = rows::record_attempts(&txn, &held, outcomes).await?;
            txn.commit().await?;
            if dropped > 0 {
                tracing::info!(
                    dropped,
                    "delivery outcomes of partitions taken over were dropped; their new owner attempts them"
                );
            }
            Ok(())
        })
        .await
    }

    /// Run a pruning job unless another host is pruning (then nothing is pruned).
    async fn pruning<F>(
        &self,
        job: impl FnOnce(deadpool_postgres::Client) -> F + Send + 'static,
    ) -> anyhow::Result<usize>
    where
        F: Future<Output = (deadpool_postgres::Client, anyhow::Result<usize>)> + Send + 'static,
    {
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&PRUNE_LOCK])
                .await?
                .get(0);
            if !locked {
                return Ok(0);
            }
            let (client, result) = job(client).await;
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&PRUNE_LOCK])
                .await?;
            result
        })
        .await
    }

    fn releasing(&self) -> HashSet<i32> {
        self.releasing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Dropped from async code, a runtime must not wait for its tasks.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn tls(config: &tokio_postgres::Config) -> anyhow::Result<Tls> {
    if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
        return Ok(Tls::None);
    }
    use rustls_platform_verifier::BuilderVerifierExt;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_platform_verifier()?
    .with_no_client_auth();
    Ok(Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(
        tls,
    )))
}

/// Take group commits off the queue and store them, one statement each, one at a time.
/// Four committers were measured against one with the load bench: four made more, smaller
/// commits, and one gave a faster burst on one host and on two, at less CPU per webhook in
/// Switchboard and in PostgreSQL.
async fn committer(pool: Pool, mut jobs: mpsc::Receiver<IngestJob>, stored: Arc<Notify>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let mut count = batch[0].items.len();
        while count < GROUP {
            match jobs.try_recv() {
                Ok(job) => {
                    count += job.items.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        match insert(&pool, &batch).await {
            Ok(fresh) => {
                if fresh.iter().any(|&n| n > 0) {
                    stored.notify_one();
                }
                for (job, n) in batch.into_iter().zip(fresh) {
                    let _ = job.done.send(Ok(n));
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for job in batch {
                    let _ = job.done.send(Err(anyhow::anyhow!("{message}")));
                }
            }
        }
    }
}

/// Store the fresh notifications of `jobs` with their keys in one statement (so one
/// transaction); returns how many of each job's were fresh.
async fn insert(pool: &Pool, jobs: &[IngestJob]) -> anyhow::Result<Vec<usize>> {
    let mut keys = Vec::new();
    let mut partitions = Vec::new();
    let mut bodies = Vec::new();
    let mut first = HashSet::new();
    for job in jobs {
        for item in &job.items {
            // A key twice in one statement would conflict with itself: later ones are
            // duplicates of the first.
            if first.insert(item.dedup_key.as_str()) {
                keys.push(item.dedup_key.clone());
                partitions.push(partition_of(&item.notification, PARTITIONS));
                bodies.push(encode(&item.notification));
            }
        }
    }
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "WITH input AS (
                SELECT * FROM unnest($1::text[], $2::int[], $3::text[]) WITH ORDINALITY
                    AS t(key, partition, notification, ord)
             ), fresh AS (
                INSERT INTO seen (key, at) SELECT key, $4 FROM input
                ON CONFLICT DO NOTHING RETURNING key
             )
             INSERT INTO inbox (partition, received_at, dedup_key, notification)
             SELECT i.partition, $4, i.key, i.notification FROM input i JOIN fresh f ON f.key = i.key
             ORDER BY i.ord
             RETURNING dedup_key",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&keys, &partitions, &bodies, &now_millis()])
        .await
        .context("cannot store the notifications")?;
    let mut fresh: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(jobs
        .iter()
        .map(|job| {
            job.items
                .iter()
                .filter(|i| fresh.remove(&i.dedup_key))
                .count()
        })
        .collect())
}

/// Send one `NOTIFY` for any number of commits that stored work, at most every
/// [`NOTIFY_GAP`].
async fn notifier(pool: Pool, stored: Arc<Notify>) {
    loop {
        stored.notified().await;
        match pool.get().await {
            Ok(client) => {
                if let Err(e) = client.batch_execute(&format!("NOTIFY {CHANNEL}")).await {
                    tracing::debug!(error = %e, "cannot send a wake-up");
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot send a wake-up"),
        }
        tokio::time::sleep(NOTIFY_GAP).await;
    }
}

/// Listen for wake-ups on a connection of its own, reconnecting when it is lost; every
/// (re)connection wakes too, for what was stored meanwhile.
async fn listener(config: tokio_postgres::Config, tls: Tls, wakers: Wakers) {
    let wake = move || {
        let wakers = wakers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for w in wakers {
            w();
        }
    };
    loop {
        let result = match &tls {
            Tls::None => listen(&config, NoTls, &wake).await,
            Tls::Rustls(t) => listen(&config, t.clone(), &wake).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %format!("{e:#}"), "lost the wake-up connection to PostgreSQL; reconnecting (polling meanwhile)");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen<T>(config: &tokio_postgres::Config, tls: T, wake: &impl Fn()) -> anyhow::Result<()>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    wake();
    while rx.recv().await.is_some() {
        // Many wake-ups waiting are one.
        while rx.try_recv().is_ok() {}
        wake();
    }
    drop(client);
    driver.await??;
    bail!("the connection closed")
}

/// Commit this transaction without waiting for its WAL to reach the disk, as SQLite's lazy
/// writes do: what dispatch and delivery record is redone after a crash of PostgreSQL that lost
/// it (at least once), never lost to a crash of a host. Ingest never commits lazily. The WAL is
/// flushed in order, so such a crash loses only lazy commits after the last synchronous one.
async fn lazy(txn: &deadpool_postgres::Transaction<'_>) -> anyhow::Result<()> {
    txn.batch_execute("SET LOCAL synchronous_commit TO OFF")
        .await?;
    Ok(())
}

/// The partitions of `lease` still held under their fences, locked against a take-over until
/// the transaction ends.
async fn fenced(
    txn: &deadpool_postgres::Transaction<'_>,
    lease: &[Owned],
) -> anyhow::Result<HashSet<i32>> {
    let partitions: Vec<i32> = lease.iter().map(|o| o.partition).collect();
    let fences: Vec<i64> = lease.iter().map(|o| o.fence).collect();
    let stmt = txn
        .prepare_cached(
            "SELECT p.partition FROM partitions p
             JOIN unnest($1::int[], $2::bigint[]) AS l(partition, fence)
               ON p.partition = l.partition AND p.fence = l.fence
             ORDER BY p.partition
             FOR SHARE OF p",
        )
        .await?;
    let rows = txn.query(&stmt, &[&partitions, &fences]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[async_trait::async_trait]
impl Storage for Postgres {
    async fn ingest(&self, items: Vec<NewInboxItem>) -> anyhow::Result<usize> {
        if items.is_empty() {
            return Ok(0);
        }
        let (done, answer) = oneshot::channel();
        self.ingest
            .send(IngestJob { items, done })
            .await
            .map_err(|_| anyhow::anyhow!("the PostgreSQL store is closed"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the PostgreSQL store stopped"))?
    }

    async fn heartbeat(&self, host: &HostInfo) -> anyhow::Result<Vec<Owned>> {
        let (id, ttl) = (host.id.clone(), host.ttl.as_secs_f64());
        let releasing = self.releasing();
        let (owned, excess) = self
            .run(move |pool| async move {
                let mut client = pool.get().await?;
                let txn = client.transaction().await?;
                txn.execute(
                    "INSERT INTO hosts (id, started_at, last_seen, ttl) VALUES ($1, now(), now(), $2)
                     ON CONFLICT (id) DO UPDATE SET last_seen = now(), ttl = $2",
                    &[&id, &ttl],
                )
                .await?;
                let released: Vec<i32> = releasing.iter().copied().collect();
                // Lease rows are always locked in partition order (here and in `fenced`), so
                // that a heartbeat and a record never wait for each other in a cycle.
                txn.execute(
                    "UPDATE partitions SET owner = NULL, expires_at = now()
                     WHERE partition IN (SELECT partition FROM partitions
                        WHERE owner = $1 AND partition = ANY($2) ORDER BY partition FOR UPDATE)",
                    &[&id, &released],
                )
                .await?;
                txn.execute(
                    "UPDATE partitions SET expires_at = now() + make_interval(secs => $2)
                     WHERE partition IN (SELECT partition FROM partitions
                        WHERE owner = $1 AND expires_at > now() ORDER BY partition FOR UPDATE)",
                    &[&id, &ttl],
                )
                .await?;
                // A host is live while its leases would be: each by its own lease time.
                let live: i64 = txn
                    .query_one(
                        "SELECT count(*) FROM hosts WHERE last_seen + make_interval(secs => ttl) > now()",
                        &[],
                    )
                    .await?
                    .get(0);
                let live = live.max(1);
                let fair = (PARTITIONS as i64 + live - 1) / live;
                let mut owned: Vec<Owned> = txn
                    .query(
                        "SELECT partition, fence FROM partitions
                         WHERE owner = $1 AND expires_at > now() ORDER BY partition",
                        &[&id],
                    )
                    .await?
                    .iter()
                    .map(|r| Owned {
                        partition: r.get(0),
                        fence: r.get(1),
                    })
                    .collect();
                let want = fair - owned.len() as i64;
                if want > 0 {
                    let taken = txn
                        .query(
                            "UPDATE partitions SET owner = $1, fence = fence + 1,
                                    expires_at = now() + make_interval(secs => $2)
                             WHERE partition IN (
                                SELECT partition FROM partitions
                                WHERE owner IS NULL OR expires_at <= now()
                                ORDER BY partition LIMIT $3 FOR UPDATE SKIP LOCKED)
                             RETURNING partition, fence",
                            &[&id, &ttl, &want],
                        )
                        .await?;
                    owned.extend(taken.iter().map(|r| Owned {
                        partition: r.get(0),
                        fence: r.get(1),
                    }));
                }
                // Hosts gone for a day are forgotten.
                txn.execute(
                    "DELETE FROM hosts WHERE last_seen < now() - interval '1 day'",
                    &[],
                )
                .await?;
                txn.commit().await?;
                owned.sort_by_key(|o| o.partition);
                // Beyond a fair share, the highest partitions are given up: worked on no more
                // from now, released at the next heartbeat, once what is in flight has ended.
                let excess: Vec<i32> = owned
                    .iter()
                    .rev()
                    .take((owned.len() as i64 - fair).max(0) as usize)
                    .map(|o| o.partition)
                    .collect();
                Ok((owned, excess))
            })
            .await?;
        let mut releasing = self.releasing.lock().unwrap_or_else(|e| e.into_inner());
        *releasing = excess.into_iter().collect();
        Ok(owned
            .into_iter()
            .filter(|o| !releasing.contains(&o.partition))
            .collect())
    }

    async fn leave(&self, host: &HostInfo) -> anyhow::Result<()> {
        let id = host.id.clone();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            client
                .execute(
                    "UPDATE partitions SET owner = NULL, expires_at = now()
                     WHERE partition IN (SELECT partition FROM partitions
                        WHERE owner = $1 ORDER BY partition FOR UPDATE)",
                    &[&id],
                )
                .await?;
            client
                .execute("DELETE FROM hosts WHERE id = $1", &[&id])
                .await?;
            Ok(())
        })
        .await
    }

    fn shared(&self) -> bool {
        true
    }

    fn partitions(&self) -> u32 {
        PARTITIONS
    }

    fn claim_notifications(&self, lease: &[Owned], limit: usize) -> anyhow::Result<Vec<InboxItem>> {
        let partitions: Vec<i32> = lease.iter().map(|o| o.partition).collect();
        let rows = self.block(move |pool| async move {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, received_at, dedup_key, notification FROM inbox
                     WHERE partition = ANY($1) AND NOT handled ORDER BY id LIMIT $2",
                )
                .await?;
            Ok(client.query(&stmt, &[&partitions, &(limit as i64)]).await?)
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id: i64 = r.get(0);
                match decode(r.get(3)) {
                    Ok(notification) => Some(InboxItem {
                        id,
                        received_at: r.get(1),
                        dedup_key: r.get(2),
                        notification,
                    }),
                    Err(e) => {
                        tracing::error!(inbox_id = id, error = %e, "stored notification is unreadable; skipped");
                        None
                    }
                }
            })
            .collect())
    }

    async fn dispatched(
        &self,
        lease: &[Owned],
        handled: Vec<i64>,
        deliveries: Vec<NewDelivery>,
        kv: Vec<KvWrite>,
        retries: Vec<RetryChange>,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        let lease = lease.to_vec();
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            lazy(&txn).await?;
            let held = fenced(&txn, &lease).await?;
            if let Some(lost) = lease.iter().find(|o| !held.contains(&o.partition)) {
                return Err(Fenced {
                    partition: lost.partition,
                }
                .into());
            }
            if !handled.is_empty() {
                let stmt = txn
                    .prepare_cached("UPDATE inbox SET handled = true WHERE id = ANY($1)")
                    .await?;
                txn.execute(&stmt, &[&handled]).await?;
            }
            let rows = rows::insert_outbox(&txn, deliveries).await?;
            kv::apply(&txn, &kv).await?;
            rows::apply_retries(&txn, &retries).await?;
            txn.commit().await?;
            Ok(rows)
        })
        .await
    }

    fn retry_state(&self, lease: &[Owned]) -> anyhow::Result<RetryState> {
        let partitions: Vec<i32> = lease.iter().map(|o| o.partition).collect();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            rows::retry_state(&client, &partitions).await
        })
    }

    fn due_retries(
        &self,
        lease: &[Owned],
        now: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<RetryRow>> {
        let partitions: Vec<i32> = lease.iter().map(|o| o.partition).collect();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            rows::due_retries(&client, &partitions, now, limit).await
        })
    }

    fn list_notifications(&self, parked: bool, limit: usize) -> anyhow::Result<Vec<RetryRow>> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            let sql = format!(
                "SELECT {} FROM dispatch_retry WHERE parked = $1 ORDER BY inbox_id LIMIT $2",
                rows::RETRY_COLUMNS
            );
            let rows = client.query(&sql, &[&parked, &(limit as i64)]).await?;
            rows.iter().map(rows::retry_row).collect()
        })
    }

    async fn retry_parked(&self, id: Option<i64>) -> anyhow::Result<usize> {
        let stored = self.stored.clone();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let n = client
                .execute(
                    "UPDATE dispatch_retry SET parked = false, attempts = 0, next_at = $1
                     WHERE parked AND ($2::bigint IS NULL OR inbox_id = $2)",
                    &[&now_millis(), &id],
                )
                .await?;
            stored.notify_one();
            Ok(n as usize)
        })
        .await
    }

    fn claim_deliveries(
        &self,
        lease: &[Owned],
        after: i64,
        upto: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        let partitions: Vec<i32> = lease.iter().map(|o| o.partition).collect();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            let sql = format!(
                "SELECT {cols} FROM outbox WHERE partition = ANY($1) AND state = 0
                   AND ((id > $2 AND id <= $3) OR revived)
                 ORDER BY id LIMIT $4",
                cols = rows::OUTBOX_COLUMNS
            );
            let stmt = client.prepare_cached(&sql).await?;
            let rows = client
                .query(&stmt, &[&partitions, &after, &upto, &(limit as i64)])
                .await?;
            Ok(rows.iter().map(rows::outbox_row).collect())
        })
    }

    fn max_delivery_id(&self) -> anyhow::Result<i64> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            let row = client
                .query_one(
                    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_id_seq",
                    &[],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn backlog(&self) -> anyhow::Result<Backlog> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            let inbox = client
                .query_one(
                    "SELECT count(*), min(received_at) FROM inbox WHERE NOT handled",
                    &[],
                )
                .await?;
            let outbox = client
                .query(
                    "SELECT target, count(*), min(created_at) FROM outbox WHERE state = 0
                     GROUP BY target ORDER BY target",
                    &[],
                )
                .await?;
            let dead: i64 = client
                .query_one("SELECT count(*) FROM outbox WHERE state = 2", &[])
                .await?
                .get(0);
            Ok(Backlog {
                inbox: inbox.get::<_, i64>(0) as u64,
                inbox_oldest: inbox.get(1),
                outbox: outbox
                    .iter()
                    .map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get(2)))
                    .collect(),
                dead: dead as u64,
            })
        })
    }

    fn probe(&self) -> anyhow::Result<()> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            client.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn list_deliveries(&self, dead: bool, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            let sql = format!(
                "SELECT {} FROM outbox WHERE state = $1 ORDER BY id LIMIT $2",
                rows::OUTBOX_COLUMNS
            );
            let state: i16 = if dead { 2 } else { 0 };
            let rows = client.query(&sql, &[&state, &(limit as i64)]).await?;
            Ok(rows.iter().map(rows::outbox_row).collect())
        })
    }

    async fn retry_dead(&self, id: Option<i64>) -> anyhow::Result<usize> {
        let stored = self.stored.clone();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let n = client
                .execute(
                    &format!("{} AND ($2::bigint IS NULL OR id = $2)", rows::REVIVE),
                    &[&now_millis(), &id],
                )
                .await?;
            stored.notify_one();
            Ok(n as usize)
        })
        .await
    }

    fn kv_reader(&self) -> anyhow::Result<Box<dyn KvReader>> {
        Ok(Box::new(kv::Reader::new(
            self.kv_sessions.clone(),
            self.kv_usage.clone(),
        )))
    }

    async fn prune(&self, before: i64, seen_before: i64) -> anyhow::Result<usize> {
        self.pruning(move |client| async move {
            let result = prune(&client, before, seen_before).await;
            (client, result)
        })
        .await
    }

    fn cluster(&self) -> anyhow::Result<Cluster> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            rows::cluster(&client).await
        })
    }

    fn on_remote_work(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(wake);
    }

    fn schema_status(&self) -> anyhow::Result<SchemaStatus> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            Ok(SchemaStatus {
                backend: "postgres",
                applied: schema::applied(&client).await?,
                latest: schema::MIGRATIONS.len() as i64,
            })
        })
    }

    async fn close(&self) {
        // Whatever was queued for ingest was answered; nothing else is buffered.
    }

    async fn record_sent(
        &self,
        sent: Vec<super::SentMessage>,
        statuses: Vec<super::SendStatus>,
    ) -> anyhow::Result<()> {
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            lazy(&txn).await?;
            sends::record(&txn, &sent, &statuses).await?;
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    async fn reserve_pacing(&self, number: &str, now: i64, span_ms: i64) -> anyhow::Result<i64> {
        let number = number.to_string();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let reserve = client
                .prepare_cached(
                    "INSERT INTO pacing (number, next_at) VALUES ($1, $2::bigint + $3::bigint)
                     ON CONFLICT (number)
                     DO UPDATE SET next_at = GREATEST(pacing.next_at, $2::bigint) + $3::bigint
                     RETURNING next_at - $3::bigint",
                )
                .await?;
            let row = client
                .query_one(&reserve, &[&number, &now, &span_ms])
                .await?;
            Ok(row.get(0))
        })
        .await
    }

    async fn pause_pacing(&self, number: &str, until: i64) -> anyhow::Result<()> {
        let number = number.to_string();
        self.run(move |pool| async move {
            pool.get()
                .await?
                .execute(
                    "INSERT INTO pacing (number, next_at) VALUES ($1, $2)
                     ON CONFLICT (number) DO UPDATE SET next_at = GREATEST(pacing.next_at, $2)",
                    &[&number, &until],
                )
                .await?;
            Ok(())
        })
        .await
    }

    fn sent_message(&self, wa_id: &str) -> anyhow::Result<Option<super::SentMessage>> {
        let wa_id = wa_id.to_string();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            sends::one(&client, &wa_id).await
        })
    }

    async fn record_attempts(
        &self,
        lease: &[Owned],
        outcomes: Vec<(i64, DeliveryOutcome, Attempted)>,
    ) -> anyhow::Result<()> {
        self.record(lease, outcomes).await
    }

    fn search_notifications(
        &self,
        query: &NotificationQuery,
    ) -> anyhow::Result<Page<NotificationSummary>> {
        let query = query.clone();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            history::search(&client, &query).await
        })
    }

    fn notification(&self, inbox_id: i64) -> anyhow::Result<Option<InboxItem>> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT received_at, dedup_key, notification FROM inbox WHERE id = $1",
                    &[&inbox_id],
                )
                .await?;
            row.map(|r| {
                Ok(InboxItem {
                    id: inbox_id,
                    received_at: r.get(0),
                    dedup_key: r.get(1),
                    notification: decode(r.get(2)).map_err(|e| anyhow::anyhow!(e))?,
                })
            })
            .transpose()
        })
    }

    fn dispatched_yet(&self, inbox_id: i64) -> anyhow::Result<bool> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            let row = client
                .query_opt("SELECT handled FROM inbox WHERE id = $1", &[&inbox_id])
                .await?;
            Ok(row.is_some_and(|r| r.get(0)))
        })
    }

    fn deliveries_of(&self, inbox_id: i64) -> anyhow::Result<Vec<DeliveryRecord>> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            history::deliveries_of(&client, inbox_id).await
        })
    }

    fn find_deliveries(&self, query: &DeliveryQuery) -> anyhow::Result<Page<DeliveryRecord>> {
        let query = query.clone();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            history::find_deliveries(&client, &query).await
        })
    }

    async fn retry_dead_matching(
        &self,
        filter: DeadFilter,
        dry_run: bool,
        limit: usize,
        who: String,
    ) -> anyhow::Result<RetryReport> {
        let stored = self.stored.clone();
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            if dry_run {
                let (matched, ids) = history::dead_matching(&client, &filter, limit, false).await?;
                return Ok(RetryReport {
                    matched,
                    retried: 0,
                    ids,
                });
            }
            let report = history::retry_dead_matching(&mut client, &filter, limit, &who).await?;
            // Whichever host holds their partitions attempts them.
            stored.notify_one();
            Ok(report)
        })
        .await
    }

    fn audit_log(&self, limit: usize) -> anyhow::Result<Vec<AuditRow>> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            history::audit_log(&client, limit).await
        })
    }

    fn destination_health(&self, since: i64) -> anyhow::Result<Vec<DestinationHealth>> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            history::destination_health(&client, since).await
        })
    }

    fn history_since(&self) -> anyhow::Result<Option<i64>> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            history::history_since(&client).await
        })
    }

    async fn prune_history(&self, before: i64, limit: usize) -> anyhow::Result<usize> {
        let cursor = self.prune_cursor.clone();
        self.pruning(move |client| async move {
            let result = history::prune(&client, before, limit, &cursor).await;
            (client, result)
        })
        .await
    }

    fn list_sent(&self, limit: usize) -> anyhow::Result<Vec<super::SentMessage>> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            sends::latest(&client, limit).await
        })
    }
}

/// Delete in small batches, each its own transaction, so that none holds back vacuum.
async fn prune(
    client: &deadpool_postgres::Client,
    before: i64,
    seen_before: i64,
) -> anyhow::Result<usize> {
    let statements = [
        (
            "DELETE FROM inbox WHERE id IN (
                SELECT id FROM inbox WHERE handled AND received_at < $1 LIMIT $2)",
            before,
        ),
        (
            "DELETE FROM seen WHERE key IN (SELECT key FROM seen WHERE at < $1 LIMIT $2)",
            seen_before,
        ),
        (
            "DELETE FROM kv WHERE (plugin, key) IN (
                SELECT plugin, key FROM kv WHERE expires_at <= $1 LIMIT $2)",
            now_millis(),
        ),
    ];
    let mut total = 0;
    for (sql, at) in statements {
        // Bounded: what is left goes at the next round.
        for _ in 0..1000 {
            let n = client.execute(sql, &[&at, &PRUNE_BATCH]).await?;
            total += n as usize;
            if (n as i64) < PRUNE_BATCH {
                break;
            }
        }
    }
    Ok(total)
}

/// Partition rows of the cluster view (used by `rows::cluster`).
fn partition_row(r: &tokio_postgres::Row, now: i64) -> PartitionRow {
    PartitionRow {
        partition: r.get(0),
        owner: r.get(1),
        fence: r.get(2),
        expires_in_ms: r.get::<_, Option<f64>>(3).map(|s| (s * 1000.0) as i64),
        inbox_pending: r.get::<_, i64>(4) as u64,
        inbox_oldest_age_ms: r.get::<_, Option<i64>>(5).map(|at| now - at),
        outbox_pending: r.get::<_, i64>(6) as u64,
        outbox_oldest_age_ms: r.get::<_, Option<i64>>(7).map(|at| now - at),
    }
}

fn host_row(r: &tokio_postgres::Row, partitions: &[PartitionRow]) -> HostRow {
    let id: String = r.get(0);
    HostRow {
        partitions: partitions
            .iter()
            .filter(|p| p.owner.as_deref() == Some(&id) && p.expires_in_ms.is_some_and(|e| e > 0))
            .map(|p| p.partition)
            .collect(),
        started_at: r.get(1),
        last_seen_ms_ago: (r.get::<_, f64>(2) * 1000.0) as i64,
        live: r.get(3),
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gets_timeouts_it_does_not_set_and_keeps_those_it_sets() {
        let config = client_config("postgres://switchboard@127.0.0.1/switchboard").unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(10))
        );
        let config = client_config(
            "postgres://switchboard@127.0.0.1/switchboard?connect_timeout=2&tcp_user_timeout=30",
        )
        .unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );
        let refused = client_config("postgres://switchboard:secret@127.0.0.1/x?sslmode=nonsense")
            .unwrap_err();
        assert!(!format!("{refused:#}").contains("secret"), "{refused:#}");
    }
}
