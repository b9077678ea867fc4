//! Durable storage: the inbox of accepted notifications, the outbox of deliveries, the
//! deduplication keys and the plugins' key-value state, behind the [`Storage`] interface.
//!
//! [`Sqlite`] is the embedded implementation, in two SQLite files: the inbox (accepted
//! notifications and dedup keys) and the work database beside it (dispatch cursor, outbox,
//! key-value state). Each has one writer thread that commits the writes waiting at that moment
//! in one transaction (group commit), so durability costs one disk sync per batch, not per
//! request. Reads use their own connections (WAL mode lets them run beside the writer).

mod backlog;
mod db;
mod history;
mod inbox;
mod kv;
mod lease;
mod outbox;
pub mod postgres;
mod retry;
mod schema;
mod seen;
mod sends;
mod writer;

#[cfg(test)]
pub mod conformance;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

pub use backlog::Backlog;
use db::Db;
pub use history::{
    AttemptRecord, Attempted, AuditRow, DeadFilter, DeliveryQuery, DeliveryRecord,
    DestinationHealth, NotificationQuery, NotificationSummary, Page, RetryReport, SentSummary,
};
pub use inbox::{InboxItem, NewInboxItem};
pub use kv::KvWrite;
pub use lease::{
    Cluster, Fenced, HostInfo, HostRow, Owned, PartitionRow, SOLE, SchemaStatus, partition_of,
};
pub use outbox::{DeliveryOutcome, NewDelivery, OutboxRow, OutboxState};
pub use retry::{RetryChange, RetryRow, RetryState};
pub use sends::{SendStatus, SentMessage};
use writer::Sync;

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the server needs of its storage, shaped as claims under leases so that one host or
/// many can share it.
///
/// Work is split into partitions by customer ([`partition_of`]); a host acts only on the
/// partitions it holds a lease on ([`Storage::heartbeat`]), each with a fence that grows at
/// every change of owner. Claims read the work of the partitions held; records are fenced: a
/// record made under a lease that was taken over fails with [`Fenced`] and changes nothing.
/// SQLite has one partition, always held by its one server.
///
/// Writes are async and return once durable (see each method for how durable). Reads block:
/// call them from blocking code (the dispatcher thread, `spawn_blocking`, the CLI).
#[async_trait::async_trait]
pub trait Storage: Send + std::marker::Sync + 'static {
    /// Store notifications durably (they survive a power cut), skipping those whose dedup key
    /// was seen before, in one transaction with the keys. Returns how many were fresh.
    async fn ingest(&self, items: Vec<NewInboxItem>) -> anyhow::Result<usize>;

    /// Renew the leases of `host`, take a fair share of the partitions that are free or whose
    /// lease expired, and give up what is beyond a fair share. Returns the partitions held.
    async fn heartbeat(&self, host: &HostInfo) -> anyhow::Result<Vec<Owned>>;

    /// Give up every partition of `host` and deregister it (at a clean shutdown, once its
    /// work in flight is recorded): the others take over at their next heartbeat.
    async fn leave(&self, host: &HostInfo) -> anyhow::Result<()>;

    /// Whether several hosts may share this storage (then leases expire and are taken over).
    fn shared(&self) -> bool;

    /// How many partitions the work is split into ([`partition_of`]).
    fn partitions(&self) -> u32;

    /// Notifications of the partitions in `lease` not yet dispatched, oldest first, at most
    /// `limit`; each is claimed until recorded by [`Storage::dispatched`] (or the lease goes).
    fn claim_notifications(&self, lease: &[Owned], limit: usize) -> anyhow::Result<Vec<InboxItem>>;

    /// Record what dispatch made of claimed notifications (`handled`, in claim order) and of
    /// waiting ones (`retries`): their deliveries and the plugins' key-value writes, atomically,
    /// fenced by `lease`. Returns the stored deliveries. May be lost to a power cut (the
    /// notifications are then dispatched again), never to a crash.
    async fn dispatched(
        &self,
        lease: &[Owned],
        handled: Vec<i64>,
        deliveries: Vec<NewDelivery>,
        kv: Vec<KvWrite>,
        retries: Vec<RetryChange>,
    ) -> anyhow::Result<Vec<OutboxRow>>;

    /// Which customers of the partitions in `lease` have notifications waiting to be
    /// dispatched again, how many are waiting and parked, and when the next may run.
    fn retry_state(&self, lease: &[Owned]) -> anyhow::Result<RetryState>;

    /// Waiting notifications of `lease` due at `now` that may run (each customer's oldest),
    /// oldest first, at most `limit`.
    fn due_retries(&self, lease: &[Owned], now: i64, limit: usize)
    -> anyhow::Result<Vec<RetryRow>>;

    /// Notifications for operators: the parked ones, or those waiting to be run again.
    fn list_notifications(&self, parked: bool, limit: usize) -> anyhow::Result<Vec<RetryRow>>;

    /// Run parked notifications again, due now, with their attempts counted afresh: the one
    /// with inbox id `id`, or all of them. Returns how many.
    async fn retry_parked(&self, id: Option<i64>) -> anyhow::Result<usize>;

    /// Pending deliveries of the partitions in `lease` after id `after` up to id `upto`, and
    /// revived dead letters, oldest first, at most `limit`.
    fn claim_deliveries(
        &self,
        lease: &[Owned],
        after: i64,
        upto: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxRow>>;

    /// The highest delivery id given so far (ids are never reused).
    fn max_delivery_id(&self) -> anyhow::Result<i64>;

    /// What waits: undispatched notifications, pending deliveries by target, dead letters.
    fn backlog(&self) -> anyhow::Result<Backlog>;

    /// Fail unless the database can be reached and read afresh (for readiness).
    fn probe(&self) -> anyhow::Result<()>;

    /// Deliveries for operators: the dead ones, or all pending.
    fn list_deliveries(&self, dead: bool, limit: usize) -> anyhow::Result<Vec<OutboxRow>>;

    /// Put dead deliveries back in the queue, due now, with a fresh retry horizon: the one with
    /// `id`, or all of them. Returns how many.
    async fn retry_dead(&self, id: Option<i64>) -> anyhow::Result<usize>;

    /// A reader of the plugins' key-value state for one dispatch batch (whose own writes the
    /// caller overlays).
    fn kv_reader(&self) -> anyhow::Result<Box<dyn KvReader>>;

    /// Keep the storage bounded: handled notifications received before `before`, dedup keys
    /// older than `seen_before` and expired key-value entries go, in small batches. Returns
    /// how many rows.
    async fn prune(&self, before: i64, seen_before: i64) -> anyhow::Result<usize>;

    /// The hosts sharing the storage and the partitions: who holds each, and what waits in it.
    fn cluster(&self) -> anyhow::Result<Cluster>;

    /// Call `wake` when another host (or a command) stored work that this host may own.
    fn on_remote_work(&self, wake: Arc<dyn Fn() + Send + std::marker::Sync>);

    /// The schema: versions applied and known.
    fn schema_status(&self) -> anyhow::Result<SchemaStatus>;

    /// Wait for every write queued so far, then stop writing.
    async fn close(&self);

    // ---- Typed sends (contract 0.2.0) ----

    /// Record delivered sends with their WhatsApp message ids, and the statuses WhatsApp
    /// reported for sends (a status of an unknown id is ignored; a status never goes back to an
    /// earlier stage, and `failed` stays). Records older than 30 days go. Like
    /// `record_attempts`, may be lost to a power cut, never to a crash.
    async fn record_sent(
        &self,
        sent: Vec<SentMessage>,
        statuses: Vec<SendStatus>,
    ) -> anyhow::Result<()>;

    /// The delivered send WhatsApp gave the message id `wa_id`, if recorded.
    fn sent_message(&self, wa_id: &str) -> anyhow::Result<Option<SentMessage>>;

    /// The latest delivered sends with their last status, newest first, at most `limit`.
    fn list_sent(&self, limit: usize) -> anyhow::Result<Vec<SentMessage>>;

    // ---- Pacing shared by the hosts (`delivery/pacing.rs`) ----

    /// Reserve `span_ms` of the business number `number`'s sending time for this host: the
    /// span starts at the number's next free moment, or at `now` if that has passed (Unix ms),
    /// and no other reservation overlaps it. Returns when it starts.
    async fn reserve_pacing(&self, number: &str, now: i64, span_ms: i64) -> anyhow::Result<i64>;

    /// No reservation of `number` starts before `until` (Unix ms): WhatsApp said the number
    /// is over its throughput.
    async fn pause_pacing(&self, number: &str, until: i64) -> anyhow::Result<()>;

    // What the operator console reads and changes (`admin/`). Reads are bounded (a window of
    // ids, a limit) and run on read connections.

    /// Record the outcomes of attempts, fenced by `lease`: outcomes of partitions no longer
    /// held are dropped (the new owner attempts those rows again). Each attempt (when, how
    /// long, the status answered) goes into the delivery's history; a delivered row stays, as
    /// delivered, until [`Storage::prune_history`]. Like `dispatched`, may be lost to a power
    /// cut (one more attempt), never to a crash.
    async fn record_attempts(
        &self,
        lease: &[Owned],
        outcomes: Vec<(i64, DeliveryOutcome, Attempted)>,
    ) -> anyhow::Result<()>;

    /// Notifications kept, newest first, matching `query`: at most one page, looking through at
    /// most [`history::SEARCH_WINDOW`] inbox ids; `next` goes on from where it stopped.
    fn search_notifications(
        &self,
        query: &NotificationQuery,
    ) -> anyhow::Result<Page<NotificationSummary>>;

    /// One notification kept, by inbox id.
    fn notification(&self, inbox_id: i64) -> anyhow::Result<Option<InboxItem>>;

    /// Whether the notification with inbox id `inbox_id` has been through dispatch.
    fn dispatched_yet(&self, inbox_id: i64) -> anyhow::Result<bool>;

    /// The deliveries made of a notification's plugin actions, with their attempts.
    fn deliveries_of(&self, inbox_id: i64) -> anyhow::Result<Vec<DeliveryRecord>>;

    /// Deliveries, newest first, by state, destination and kind; one page.
    fn find_deliveries(&self, query: &DeliveryQuery) -> anyhow::Result<Page<DeliveryRecord>>;

    /// Put the dead letters matching `filter` back in the queue, at most `limit`, oldest first,
    /// and record who did it; with `dry_run`, only count them (and list the first `limit`).
    async fn retry_dead_matching(
        &self,
        filter: DeadFilter,
        dry_run: bool,
        limit: usize,
        who: String,
    ) -> anyhow::Result<RetryReport>;

    /// The latest changes made through the console, newest first.
    fn audit_log(&self, limit: usize) -> anyhow::Result<Vec<AuditRow>>;

    /// Each destination's deliveries and dead letters since `since`, and what is pending.
    fn destination_health(&self, since: i64) -> anyhow::Result<Vec<DestinationHealth>>;

    /// When the oldest notification kept was received: how far back history goes.
    fn history_since(&self) -> anyhow::Result<Option<i64>>;

    /// Remove delivered rows and console records finished before `before`, at most `limit` of
    /// each (call again while it returns `limit` or more).
    async fn prune_history(&self, before: i64, limit: usize) -> anyhow::Result<usize>;
}

/// Reads of the key-value state from one snapshot; dropping it ends the snapshot.
pub trait KvReader: Send {
    /// A plugin's value for `key`, unless expired.
    fn get(&mut self, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// How many keys a plugin keeps, and their bytes (keys and values), expired ones aside; at
    /// most [`kv::USAGE_RECOUNT`] old, plus what [`KvReader::note_usage`] reported since.
    fn usage(&mut self, plugin: &str) -> anyhow::Result<(u64, u64)>;
    /// A plugin's usage after writes about to be committed, so the next batch need not count
    /// again.
    fn note_usage(&mut self, plugin: &str, usage: (u64, u64));
}

/// The storage the server runs on; cheap to clone.
pub type Store = Arc<dyn Storage>;

/// Who opens the storage: the server (which takes the work) or a command beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    Server,
    Command,
}

/// Open the storage that `[storage] url` names: `sqlite://PATH` (created on first use) or
/// `postgres://...` (migrated on first use), with at most `pool_size` PostgreSQL connections.
pub fn connect(url: &str, pool_size: usize, opener: Opener) -> anyhow::Result<Store> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = Path::new(path);
        return match opener {
            Opener::Server => open_for_server(path),
            Opener::Command => open(path),
        };
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let size = match opener {
            Opener::Server => pool_size,
            Opener::Command => 2,
        };
        return Ok(Arc::new(postgres::Postgres::connect(url, size)?));
    }
    anyhow::bail!(
        "[storage] url {:?} is not supported: use sqlite://PATH or postgres://USER@HOST/DATABASE",
        postgres::redact(url)
    )
}

/// Open (and create on first use) the SQLite database at `path`, and the inbox beside it
/// (see [`inbox_path`]).
pub fn open(path: &Path) -> anyhow::Result<Store> {
    Ok(Arc::new(Sqlite::open(path, false)?))
}

/// [`open`] for the server: the work database's writer runs on idle CPU time only, like the
/// dispatch and delivery it serves (not for a command, which would wait behind a busy server),
/// and the dedup keys are loaded before the first webhook.
pub fn open_for_server(path: &Path) -> anyhow::Result<Store> {
    let lock = lock_for_server(path)?;
    let mut store = Sqlite::open(path, true)?;
    store.server_lock = Some(lock);
    store.load_seen()?;
    Ok(Arc::new(store))
}

/// Take the lock that only one server holds on the database at `path`: a second one would
/// dispatch and deliver everything a second time. The system drops it when the process ends,
/// however it ends.
fn lock_for_server(path: &Path) -> anyhow::Result<std::fs::File> {
    create_data_folder(path)?;
    let lock_path = path.with_file_name(format!(
        "{}.lock",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another switchboard server is using the database {} (it holds {})",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

#[async_trait::async_trait]
impl Storage for Sqlite {
    async fn ingest(&self, items: Vec<NewInboxItem>) -> anyhow::Result<usize> {
        Sqlite::ingest(self, items).await
    }
    async fn heartbeat(&self, _host: &HostInfo) -> anyhow::Result<Vec<Owned>> {
        Ok(SOLE.to_vec())
    }
    async fn leave(&self, _host: &HostInfo) -> anyhow::Result<()> {
        Ok(())
    }
    fn shared(&self) -> bool {
        false
    }
    fn partitions(&self) -> u32 {
        1
    }
    fn claim_notifications(
        &self,
        _lease: &[Owned],
        limit: usize,
    ) -> anyhow::Result<Vec<InboxItem>> {
        Sqlite::claim_notifications(self, limit)
    }
    async fn dispatched(
        &self,
        _lease: &[Owned],
        handled: Vec<i64>,
        deliveries: Vec<NewDelivery>,
        kv: Vec<KvWrite>,
        retries: Vec<RetryChange>,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        // Claims are in id order and one dispatcher commits them in order: the cursor is the
        // record of what was handled.
        let cursor = handled.iter().copied().max();
        // Lazy: lost to a power cut, the notifications are dispatched again (at least once).
        self.work
            .writer
            .write(
                Sync::Lazy,
                move |txn| {
                    let rows = outbox::insert(txn, deliveries)?;
                    kv::apply(txn, &kv)?;
                    retry::apply(txn, &retries)?;
                    if let Some(cursor) = cursor {
                        txn.prepare_cached("UPDATE dispatch_cursor SET inbox_id = ?1")?
                            .execute([cursor])?;
                    }
                    Ok(rows)
                },
                |rows| rows,
            )
            .await
    }
    fn retry_state(&self, _lease: &[Owned]) -> anyhow::Result<RetryState> {
        Sqlite::retry_state(self)
    }
    fn due_retries(
        &self,
        _lease: &[Owned],
        now: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<RetryRow>> {
        Sqlite::due_retries(self, now, limit)
    }
    fn list_notifications(&self, parked: bool, limit: usize) -> anyhow::Result<Vec<RetryRow>> {
        Sqlite::list_notifications(self, parked, limit)
    }
    async fn retry_parked(&self, id: Option<i64>) -> anyhow::Result<usize> {
        Sqlite::retry_parked(self, id).await
    }
    fn claim_deliveries(
        &self,
        _lease: &[Owned],
        after: i64,
        upto: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        Sqlite::pending_deliveries(self, after, upto, limit)
    }
    fn max_delivery_id(&self) -> anyhow::Result<i64> {
        Sqlite::max_delivery_id(self)
    }
    fn backlog(&self) -> anyhow::Result<Backlog> {
        Sqlite::backlog(self)
    }
    fn probe(&self) -> anyhow::Result<()> {
        Sqlite::probe(self)
    }
    fn list_deliveries(&self, dead: bool, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        Sqlite::list_deliveries(self, dead, limit)
    }
    async fn retry_dead(&self, id: Option<i64>) -> anyhow::Result<usize> {
        Sqlite::retry_dead(self, id).await
    }
    fn kv_reader(&self) -> anyhow::Result<Box<dyn KvReader>> {
        Sqlite::kv_reader(self)
    }
    async fn prune(&self, before: i64, seen_before: i64) -> anyhow::Result<usize> {
        // Lazy commits of the work database may be lost to a power cut, and dispatch would go
        // back to notifications already handled: the cursor goes to disk before the inbox rows
        // it covers go. (Rewriting its row makes the commit sync even if nothing else changed.)
        let (cursor, kv) = self
            .work
            .writer
            .write(
                Sync::Durable,
                |txn| {
                    let kv = kv::prune(txn, now_millis())?;
                    txn.execute("UPDATE dispatch_cursor SET inbox_id = inbox_id", [])?;
                    let cursor = inbox::read_cursor(txn)?;
                    Ok((cursor, kv))
                },
                |done| done,
            )
            .await?;
        let seen = self.seen.clone();
        let inbox = self
            .inbox
            .writer
            .write(
                Sync::Durable,
                move |txn| {
                    let handled = inbox::prune(txn, cursor, before)?;
                    Ok((handled, seen::prune(txn, &seen, seen_before)?))
                },
                |(handled, forget)| handled + forget(),
            )
            .await?;
        Ok(kv + inbox)
    }
    fn cluster(&self) -> anyhow::Result<Cluster> {
        let backlog = Sqlite::backlog(self)?;
        let now = now_millis();
        let oldest = backlog.outbox.iter().map(|(_, _, at)| *at).min();
        Ok(Cluster {
            hosts: Vec::new(),
            partitions: vec![PartitionRow {
                partition: 0,
                owner: None,
                fence: 0,
                expires_in_ms: None,
                inbox_pending: backlog.inbox,
                inbox_oldest_age_ms: backlog.inbox_oldest.map(|at| now - at),
                outbox_pending: backlog.outbox.iter().map(|(_, n, _)| n).sum(),
                outbox_oldest_age_ms: oldest.map(|at| now - at),
            }],
        })
    }
    fn on_remote_work(&self, _wake: Arc<dyn Fn() + Send + std::marker::Sync>) {
        // One server per database: no other host stores work here.
    }
    fn schema_status(&self) -> anyhow::Result<SchemaStatus> {
        let version = self
            .work
            .read(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))?;
        Ok(SchemaStatus {
            backend: "sqlite",
            applied: (1..=version).collect(),
            latest: schema::WORK_VERSION,
        })
    }
    async fn close(&self) {
        self.inbox.writer.close().await;
        self.work.writer.close().await;
    }
    async fn record_sent(
        &self,
        sent: Vec<SentMessage>,
        statuses: Vec<SendStatus>,
    ) -> anyhow::Result<()> {
        Sqlite::record_sent(self, sent, statuses).await
    }
    fn sent_message(&self, wa_id: &str) -> anyhow::Result<Option<SentMessage>> {
        Sqlite::sent_message(self, wa_id)
    }
    fn list_sent(&self, limit: usize) -> anyhow::Result<Vec<SentMessage>> {
        Sqlite::list_sent(self, limit)
    }
    // One host: the reservations live in memory (the server paces in process and does not
    // call these; they keep the trait's meaning for the conformance suite).
    async fn reserve_pacing(&self, number: &str, now: i64, span_ms: i64) -> anyhow::Result<i64> {
        let mut next = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
        let at = next.get(number).copied().unwrap_or(now).max(now);
        next.insert(number.to_string(), at + span_ms);
        Ok(at)
    }
    async fn pause_pacing(&self, number: &str, until: i64) -> anyhow::Result<()> {
        let mut next = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
        let at = next.entry(number.to_string()).or_insert(until);
        *at = (*at).max(until);
        Ok(())
    }
    async fn record_attempts(
        &self,
        _lease: &[Owned],
        outcomes: Vec<(i64, DeliveryOutcome, Attempted)>,
    ) -> anyhow::Result<()> {
        Sqlite::record_attempts(self, outcomes).await
    }
    fn search_notifications(
        &self,
        query: &NotificationQuery,
    ) -> anyhow::Result<Page<NotificationSummary>> {
        Sqlite::search_notifications(self, query)
    }
    fn notification(&self, inbox_id: i64) -> anyhow::Result<Option<InboxItem>> {
        Sqlite::notification(self, inbox_id)
    }
    fn dispatched_yet(&self, inbox_id: i64) -> anyhow::Result<bool> {
        Ok(inbox_id <= self.work.read(inbox::read_cursor)?)
    }
    fn deliveries_of(&self, inbox_id: i64) -> anyhow::Result<Vec<DeliveryRecord>> {
        Sqlite::deliveries_of(self, inbox_id)
    }
    fn find_deliveries(&self, query: &DeliveryQuery) -> anyhow::Result<Page<DeliveryRecord>> {
        Sqlite::find_deliveries(self, query)
    }
    async fn retry_dead_matching(
        &self,
        filter: DeadFilter,
        dry_run: bool,
        limit: usize,
        who: String,
    ) -> anyhow::Result<RetryReport> {
        Sqlite::retry_dead_matching(self, filter, dry_run, limit, who).await
    }
    fn audit_log(&self, limit: usize) -> anyhow::Result<Vec<AuditRow>> {
        Sqlite::audit_log(self, limit)
    }
    fn destination_health(&self, since: i64) -> anyhow::Result<Vec<DestinationHealth>> {
        Sqlite::destination_health(self, since)
    }
    fn history_since(&self) -> anyhow::Result<Option<i64>> {
        Sqlite::history_since(self)
    }
    async fn prune_history(&self, before: i64, limit: usize) -> anyhow::Result<usize> {
        Sqlite::prune_history(self, before, limit).await
    }
}

/// The SQLite implementation of [`Storage`].
pub struct Sqlite {
    /// Accepted notifications and dedup keys; every commit is synced (it answers webhooks).
    inbox: Db,
    /// The dedup keys of the inbox's log, in memory.
    seen: seen::Shared,
    /// Dispatch cursor, outbox and key-value state.
    work: Db,
    /// Held by a server while it runs (see [`open_for_server`]).
    server_lock: Option<std::fs::File>,
    /// The plugins' key-value usage, counted now and then rather than at every batch.
    kv_usage: kv::UsageCache,
    /// Fresh notifications on their way from ingest to the next claim.
    handoff: Arc<inbox::Handoff>,
    /// Each business number's next free moment to send (see [`Storage::reserve_pacing`]).
    pacing: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    prune_cursor: Arc<history::PruneCursor>,
}

impl Sqlite {
    /// Open (and create on first use) the database at `path` and the inbox beside it; with
    /// `background_work`, the work database's writer runs at background priority.
    pub fn open(path: &Path, background_work: bool) -> anyhow::Result<Sqlite> {
        create_data_folder(path)?;
        let inbox_path = inbox_path(path);
        // The inbox's tables first: an older work database moves its inbox into them.
        db::open_connection(&inbox_path, INBOX_CACHE_KB).and_then(|c| {
            schema::migrate_inbox(&c)
                .with_context(|| format!("cannot set up the database {}", inbox_path.display()))
        })?;
        let work = db::Options {
            name: "store-work",
            background: background_work,
            cache_kb: 4_000,
            checkpoint_thread: false,
        };
        let work = Db::open(path, work, |c| Ok(schema::migrate_work(c, &inbox_path)?))?;
        let cursor = work.read(inbox::read_cursor)?;
        let inbox = Db::open(&inbox_path, INBOX, |c| {
            Ok(schema::keep_inbox_ids_above(c, cursor)?)
        })?;
        Ok(Sqlite {
            inbox,
            work,
            seen: Default::default(),
            server_lock: None,
            kv_usage: Default::default(),
            handoff: Default::default(),
            pacing: Default::default(),
            prune_cursor: Default::default(),
        })
    }

    /// Load the dedup keys now rather than at the first ingest.
    fn load_seen(&self) -> anyhow::Result<()> {
        self.inbox.read(|c| seen::load(&self.seen, c))?;
        Ok(())
    }
}

/// The inbox is written at its end and read back only after a restart: a small page cache
/// does.
const INBOX_CACHE_KB: i64 = 2_000;
const INBOX: db::Options = db::Options {
    name: "store-inbox",
    background: false,
    cache_kb: INBOX_CACHE_KB,
    // A checkpoint syncs the database file, which takes milliseconds: inline, it holds up the
    // webhooks waiting for the next commit.
    checkpoint_thread: true,
};

/// Create the folder of the database at `path` if it is missing.
fn create_data_folder(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    }
    Ok(())
}

/// The inbox file that goes with the database at `path`: `data/switchboard.db` has
/// `data/switchboard-inbox.db`.
pub fn inbox_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-inbox.{}", ext.to_string_lossy()),
        None => format!("{stem}-inbox"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use switchboard_sdk::{Kind, Notification};

    use super::*;

    fn item(id: &str) -> NewInboxItem {
        let json = format!(
            r#"{{"from":"1","id":"{id}","timestamp":"1","type":"text","text":{{"body":"hi"}}}}"#
        );
        let notification = Notification::from_item(Kind::Message, &json, None, "test").unwrap();
        NewInboxItem {
            dedup_key: format!("m:{id}"),
            notification,
        }
    }

    #[tokio::test]
    async fn dedup_keys_hold_across_a_reopen_until_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = open(&path).unwrap();
        let ingest = |store: &Store, ids: &[&str]| {
            let items = ids.iter().map(|id| item(id)).collect();
            let store = store.clone();
            async move { store.ingest(items).await.unwrap() }
        };
        assert_eq!(ingest(&store, &["a", "b"]).await, 2);
        store.close().await;

        let store = open_for_server(&path).unwrap();
        assert_eq!(
            ingest(&store, &["a", "c"]).await,
            1,
            "a was seen before the restart"
        );
        // A prune whose window starts before the keys keeps them.
        store.prune(0, 0).await.unwrap();
        assert_eq!(ingest(&store, &["b"]).await, 0);
        // Past the window they are forgotten, in memory and on disk.
        let later = now_millis() + 1;
        store.prune(later, later).await.unwrap();
        assert_eq!(ingest(&store, &["a"]).await, 1);
        store.close().await;
        let store = open(&path).unwrap();
        assert_eq!(ingest(&store, &["b", "c"]).await, 2);
        store.close().await;
    }

    #[tokio::test]
    async fn one_server_at_a_time_uses_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/db.sqlite");
        let first = open_for_server(&path).unwrap();
        let second = open_for_server(&path)
            .err()
            .expect("a second server is refused");
        assert!(format!("{second:#}").contains("another switchboard server"));
        // Commands still open it beside the server.
        let command = open(&path).unwrap();
        command.close().await;
        first.close().await;
        drop(first);
        open_for_server(&path).expect("free again once the server is gone");
    }

    #[tokio::test]
    async fn a_failed_ingest_leaves_its_keys_unseen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = open(&path).unwrap();
        let inbox = rusqlite::Connection::open(inbox_path(&path)).unwrap();
        inbox
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.dedup_key = 'm:bad'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let failed = store.ingest(vec![item("a"), item("bad")]).await;
        assert!(failed.is_err());
        inbox.execute_batch("DROP TRIGGER refuse").unwrap();
        // The sender retries what was not acknowledged: it is new, not a duplicate.
        let fresh = store.ingest(vec![item("a"), item("bad")]).await.unwrap();
        assert_eq!(fresh, 2);
        store.close().await;
    }

    #[tokio::test]
    async fn dedup_keys_of_an_older_inbox_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let conn = rusqlite::Connection::open(inbox_path(&path)).unwrap();
            schema::create_inbox_version_1(&conn).unwrap();
            conn.execute(
                "INSERT INTO seen (key, at) VALUES ('m:a', ?1)",
                [now_millis()],
            )
            .unwrap();
        }
        let store = open(&path).unwrap();
        let fresh = store.ingest(vec![item("a"), item("b")]).await.unwrap();
        assert_eq!(fresh, 1, "a was seen before the upgrade");
        store.close().await;
    }

    /// A database from before the inbox had its own file: version 2 of the schema, with
    /// notifications 1 to 3 (the cursor at 1), their dedup keys, and the inbox's id sequence
    /// at `sequence`; `keep` notifications from the end are left in the table.
    fn version_2(path: &Path, keep: usize, sequence: i64) {
        let conn = rusqlite::Connection::open(path).unwrap();
        schema::create_work_version(&conn, 2).unwrap();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let it = item(id);
            conn.execute(
                "INSERT INTO inbox (id, received_at, dedup_key, notification) VALUES (?1, 0, ?2, ?3)",
                // As version 2 stored them: the whole notification.
                rusqlite::params![
                    i as i64 + 1,
                    it.dedup_key,
                    serde_json::to_string(&it.notification).unwrap()
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO seen (key, at) VALUES (?1, ?2)",
                rusqlite::params![it.dedup_key, now_millis()],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM inbox WHERE id <= ?1", [3 - keep as i64])
            .unwrap();
        conn.execute(
            "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'inbox'",
            [sequence],
        )
        .unwrap();
        conn.execute("UPDATE dispatch_cursor SET inbox_id = 1", [])
            .unwrap();
    }

    #[tokio::test]
    async fn an_older_database_moves_its_inbox_and_dedup_keys_to_the_inbox_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        version_2(&path, 2, 3);

        let store = open(&path).unwrap();
        assert!(inbox_path(&path).exists());
        let pending = store.claim_notifications(&SOLE, 10).unwrap();
        let ids: Vec<i64> = pending.iter().map(|i| i.id).collect();
        assert_eq!(ids, [2, 3], "what was waiting for dispatch still is");
        assert_eq!(pending[1].dedup_key, "m:c");
        let fresh = store.ingest(vec![item("a"), item("d")]).await.unwrap();
        assert_eq!(fresh, 1, "a was seen before the move");
        let claimed = store.claim_notifications(&SOLE, 10).unwrap();
        assert_eq!(claimed.iter().map(|i| i.id).collect::<Vec<_>>(), [4]);
        store.close().await;

        // Opened again, nothing is moved twice.
        let store = open(&path).unwrap();
        assert_eq!(store.claim_notifications(&SOLE, 10).unwrap().len(), 3);
        store.close().await;
    }

    #[tokio::test]
    async fn inbox_ids_continue_after_the_dispatch_cursor_when_the_moved_inbox_was_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        version_2(&path, 0, 10);
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute("UPDATE dispatch_cursor SET inbox_id = 10", [])
                .unwrap();
        }

        let store = open(&path).unwrap();
        store.ingest(vec![item("d")]).await.unwrap();
        let pending = store.claim_notifications(&SOLE, 10).unwrap();
        assert_eq!(pending.len(), 1, "the new notification is after the cursor");
        assert_eq!(pending[0].id, 11);
        store.close().await;
    }
}
