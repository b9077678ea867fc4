//! Durable storage: the inbox of accepted notifications, the outbox of deliveries, the
//! deduplication keys and the plugins' key-value state, behind the [`Storage`] interface.
//!
//! [`Sqlite`] is the embedded implementation, in one SQLite database: all writes go through
//! one writer thread that commits the writes waiting at that moment in one transaction (group
//! commit), so durability costs one disk sync per batch, not per request. Reads use their own
//! connections (WAL mode lets them run beside the writer).

mod inbox;
mod kv;
mod outbox;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::Connection;

pub use inbox::{InboxItem, NewInboxItem, OnCommit};
pub use kv::KvWrite;
pub use outbox::{DeliveryOutcome, NewDelivery, OutboxRow, OutboxState};
use writer::{Sync, Writer};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the server needs of its storage. One implementation per database: SQLite here; a
/// PostgreSQL one (several hosts sharing one queue) would implement the same methods, with
/// `dispatched` and `record_outcomes` claiming rows (`FOR UPDATE SKIP LOCKED`) rather than
/// relying on a single dispatcher.
///
/// Writes are async and return once durable (see each method for how durable). Reads block:
/// call them from blocking code (the dispatcher thread, `spawn_blocking`, the CLI).
#[async_trait::async_trait]
pub trait Storage: Send + std::marker::Sync + 'static {
    /// Store notifications durably (they survive a power cut), skipping those whose dedup key
    /// was seen before; `on_commit` gets the fresh ones once they are stored, in commit order
    /// across calls. Returns how many were fresh.
    async fn ingest(&self, items: Vec<NewInboxItem>, on_commit: OnCommit) -> anyhow::Result<usize>;

    /// Where dispatch stands: every notification up to this id has been handled.
    fn dispatch_cursor(&self) -> anyhow::Result<i64>;

    /// The notifications after `cursor`, oldest first, at most `limit`.
    fn pending_inbox(&self, cursor: i64, limit: usize) -> anyhow::Result<Vec<InboxItem>>;

    /// Record what dispatch made of the notifications up to `cursor`: their deliveries and
    /// the plugins' key-value writes, atomically. Returns the stored deliveries. May be lost to
    /// a power cut (the notifications are then dispatched again), never to a crash.
    async fn dispatched(
        &self,
        cursor: i64,
        deliveries: Vec<NewDelivery>,
        kv: Vec<KvWrite>,
    ) -> anyhow::Result<Vec<OutboxRow>>;

    /// Pending deliveries after id `after` up to id `upto`, and revived dead letters, oldest
    /// first, at most `limit`.
    fn pending_deliveries(
        &self,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxRow>>;

    /// The highest delivery id ever given (ids are never reused).
    fn max_delivery_id(&self) -> anyhow::Result<i64>;

    /// Record the outcomes of attempts; a delivered row goes. Like `dispatched`, may be lost to
    /// a power cut (one more attempt), never to a crash.
    async fn record_outcomes(&self, outcomes: Vec<(i64, DeliveryOutcome)>) -> anyhow::Result<()>;

    /// Deliveries for operators: the dead ones, or all pending.
    fn list_deliveries(&self, dead: bool, limit: usize) -> anyhow::Result<Vec<OutboxRow>>;

    /// Put dead deliveries back in the queue, due now, with a fresh retry horizon: the one with
    /// `id`, or all of them. Returns how many.
    async fn retry_dead(&self, id: Option<i64>) -> anyhow::Result<usize>;

    /// A reader of the plugins' key-value state as it stands at its first read, for one
    /// dispatch batch (whose own writes the caller overlays).
    fn kv_reader(&self) -> anyhow::Result<Box<dyn KvReader>>;

    /// Keep the storage bounded: handled notifications received before `before`, dedup keys
    /// older than `seen_before` and expired key-value entries go. Returns how many rows.
    async fn prune(&self, before: i64, seen_before: i64) -> anyhow::Result<usize>;

    /// Wait for every write queued so far, then stop writing.
    async fn close(&self);
}

/// Reads of the key-value state from one snapshot; dropping it ends the snapshot.
pub trait KvReader: Send {
    /// A plugin's value for `key`, unless expired.
    fn get(&mut self, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
}

/// The storage the server runs on; cheap to clone.
pub type Store = Arc<dyn Storage>;

/// Open (and create on first use) the SQLite database at `path`.
pub fn open(path: &Path) -> anyhow::Result<Store> {
    Ok(Arc::new(Sqlite::open(path)?))
}

#[async_trait::async_trait]
impl Storage for Sqlite {
    async fn ingest(&self, items: Vec<NewInboxItem>, on_commit: OnCommit) -> anyhow::Result<usize> {
        Sqlite::ingest(self, items, on_commit).await
    }
    fn dispatch_cursor(&self) -> anyhow::Result<i64> {
        Sqlite::dispatch_cursor(self)
    }
    fn pending_inbox(&self, cursor: i64, limit: usize) -> anyhow::Result<Vec<InboxItem>> {
        Sqlite::pending_inbox(self, cursor, limit)
    }
    async fn dispatched(
        &self,
        cursor: i64,
        deliveries: Vec<NewDelivery>,
        kv: Vec<KvWrite>,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        // Lazy: lost to a power cut, the notifications are dispatched again (at least once).
        self.write(
            Sync::Lazy,
            move |txn| {
                let rows = outbox::insert(txn, deliveries)?;
                kv::apply(txn, &kv)?;
                txn.prepare_cached("UPDATE dispatch_cursor SET inbox_id = ?1")?
                    .execute([cursor])?;
                Ok(rows)
            },
            |rows| rows,
        )
        .await
    }
    fn pending_deliveries(
        &self,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        Sqlite::pending_deliveries(self, after, upto, limit)
    }
    fn max_delivery_id(&self) -> anyhow::Result<i64> {
        Sqlite::max_delivery_id(self)
    }
    async fn record_outcomes(&self, outcomes: Vec<(i64, DeliveryOutcome)>) -> anyhow::Result<()> {
        Sqlite::record_outcomes(self, outcomes).await
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
        self.write(
            Sync::Lazy,
            move |txn| Ok(inbox::prune(txn, before, seen_before)? + kv::prune(txn, now_millis())?),
            |n| n,
        )
        .await
    }
    async fn close(&self) {
        self.writer.close().await;
    }
}

/// The SQLite implementation of [`Storage`].
pub struct Sqlite {
    writer: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

impl Sqlite {
    /// Open (and create on first use) the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
        }
        let conn = open_connection(path)?;
        schema::migrate(&conn)
            .with_context(|| format!("cannot set up the database {}", path.display()))?;
        Ok(Sqlite {
            writer: Writer::start(conn)?,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.into(),
        })
    }

    /// Run `f` in the next group-commit transaction and wait until it is committed; `then`
    /// gets its result on the writer thread right after the commit, in commit order.
    async fn write<T, R, F, G>(&self, sync: Sync, f: F, then: G) -> anyhow::Result<R>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
        G: FnOnce(T) -> R + Send + 'static,
    {
        self.writer.write(sync, f, then).await
    }

    /// Run `f` on a read connection (on the calling thread: call from blocking code or keep
    /// `f` short).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let conn = self.connection()?;
        let out = f(&conn).context("database read failed");
        if let Ok(mut r) = self.readers.lock() {
            r.push(conn);
        }
        out
    }

    /// A read connection from the pool (give it back when done), or a new one.
    fn connection(&self) -> anyhow::Result<Connection> {
        match self.readers.lock().ok().and_then(|mut r| r.pop()) {
            Some(c) => Ok(c),
            None => open_connection(&self.path),
        }
    }
}

fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a batch acknowledged to the Coreapp survives a power cut, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -8_000)?; // 8 MB a connection
    Ok(conn)
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
            json: serde_json::to_string(&notification).unwrap(),
            notification,
        }
    }

    fn delivery(n: usize) -> NewDelivery {
        NewDelivery {
            kind: "forward".into(),
            target: "sink".into(),
            lane: format!("sink/{n}"),
            webhook_id: format!("w{n}"),
            request: "{}".into(),
        }
    }

    #[tokio::test]
    async fn ids_keep_growing_after_everything_was_handled_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("db.sqlite")).unwrap();

        let handed = Arc::new(Mutex::new(Vec::new()));
        let sink = handed.clone();
        let fresh = store
            .ingest(
                vec![item("a"), item("b"), item("a")],
                Box::new(move |items| sink.lock().unwrap().extend(items)),
            )
            .await
            .unwrap();
        assert_eq!(fresh, 2, "the repeated id is a duplicate");
        let first: Vec<i64> = handed.lock().unwrap().iter().map(|i| i.id).collect();
        assert_eq!(store.pending_inbox(0, 10).unwrap().len(), 2);

        // Dispatch both, deliver their deliveries, prune everything.
        let cursor = *first.last().unwrap();
        let rows = store
            .dispatched(cursor, vec![delivery(1), delivery(2)], vec![])
            .await
            .unwrap();
        assert!(store.pending_inbox(cursor, 10).unwrap().is_empty());
        let outcomes = rows
            .iter()
            .map(|r| (r.id, DeliveryOutcome::Delivered))
            .collect();
        store.record_outcomes(outcomes).await.unwrap();
        let top = store.max_delivery_id().unwrap();
        assert!(store.pending_deliveries(0, top, 10).unwrap().is_empty());
        store
            .prune(now_millis() + 1, now_millis() + 1)
            .await
            .unwrap();

        // New work after the tables emptied gets new ids: the cursor and the delivery queue
        // would skip a reused one.
        store
            .ingest(vec![item("c")], Box::new(|_| {}))
            .await
            .unwrap();
        let pending = store.pending_inbox(cursor, 10).unwrap();
        assert_eq!(pending.len(), 1, "the new notification is after the cursor");
        assert!(pending[0].id > cursor);
        let again = store
            .dispatched(pending[0].id, vec![delivery(3)], vec![])
            .await
            .unwrap();
        assert!(again[0].id > top, "delivery ids are not reused");
        assert_eq!(store.dispatch_cursor().unwrap(), pending[0].id);
        store.close().await;
    }
}
