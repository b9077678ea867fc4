use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::db::Pool;
use super::{Sqlite, now_millis};

/// A change to a plugin's key-value store, committed with the outcome of the notification that
/// made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    /// Set a key, with an expiry time (Unix ms) if any.
    Set {
        plugin: String,
        key: String,
        value: Vec<u8>,
        expires_at: Option<i64>,
    },
    /// Remove a key.
    Delete { plugin: String, key: String },
}

impl Sqlite {
    /// A reader of the key-value state as of its first read, on a pooled connection.
    pub(super) fn kv_reader(&self) -> anyhow::Result<Box<dyn super::KvReader>> {
        let conn = self.work.readers.take()?;
        conn.execute_batch("BEGIN")?;
        Ok(Box::new(Reader {
            conn: Some(conn),
            pool: self.work.readers.clone(),
            usage: self.kv_usage.clone(),
        }))
    }
}

/// How old a counted usage may get before it is counted again. Counting scans all of a
/// plugin's keys, too slow for every dispatch batch; between counts, the usage the batches
/// report is used. It can only be too high (keys expired since, a batch that did not commit),
/// never too low, so a quota is never exceeded because of it.
pub const USAGE_RECOUNT: Duration = Duration::from_secs(30);

/// Each plugin's usage (keys, bytes) and when it was last counted.
#[derive(Clone, Default)]
pub struct UsageCache(Arc<Mutex<HashMap<String, Counted>>>);

/// A plugin's keys and bytes, and when they were counted.
type Counted = ((u64, u64), Instant);

impl UsageCache {
    /// A plugin's usage, unless it is due to be counted again.
    pub fn get(&self, plugin: &str) -> Option<(u64, u64)> {
        let c = self.0.lock().ok()?;
        c.get(plugin)
            .filter(|(_, at)| at.elapsed() < USAGE_RECOUNT)
            .map(|(u, _)| *u)
    }

    /// A plugin's usage as just counted.
    pub fn counted(&self, plugin: &str, usage: (u64, u64)) {
        if let Ok(mut c) = self.0.lock() {
            c.insert(plugin.to_string(), (usage, Instant::now()));
        }
    }

    /// A plugin's usage after writes about to be committed (the count keeps its age).
    pub fn note(&self, plugin: &str, usage: (u64, u64)) {
        if let Ok(mut c) = self.0.lock()
            && let Some(entry) = c.get_mut(plugin)
        {
            entry.0 = usage;
        }
    }
}

/// Reads in one read transaction: one snapshot, and the connection's page cache stays valid
/// between reads (a new transaction after another commit would drop it).
struct Reader {
    conn: Option<Connection>,
    pool: Pool,
    usage: UsageCache,
}

impl super::KvReader for Reader {
    fn get(&mut self, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let conn = self
            .conn
            .as_ref()
            .context("key-value reader already closed")?;
        conn.prepare_cached(
            "SELECT value FROM kv WHERE plugin = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        )?
        .query_row(params![plugin, key, now_millis()], |r| r.get(0))
        .optional()
        .context("key-value read failed")
    }

    fn usage(&mut self, plugin: &str) -> anyhow::Result<(u64, u64)> {
        if let Some(u) = self.usage.get(plugin) {
            return Ok(u);
        }
        let conn = self
            .conn
            .as_ref()
            .context("key-value reader already closed")?;
        let counted = conn.prepare_cached(
            "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv
             WHERE plugin = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )?
        .query_row(params![plugin, now_millis()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .context("key-value usage read failed")?;
        self.usage.counted(plugin, counted);
        Ok(counted)
    }

    fn note_usage(&mut self, plugin: &str, usage: (u64, u64)) {
        self.usage.note(plugin, usage);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Back to the pool only out of its transaction; otherwise it is closed.
        if let Some(conn) = self
            .conn
            .take()
            .filter(|c| c.execute_batch("COMMIT").is_ok())
        {
            self.pool.give_back(conn);
        }
    }
}

/// Apply key-value writes inside a transaction.
pub fn apply(txn: &Transaction<'_>, writes: &[KvWrite]) -> rusqlite::Result<()> {
    for w in writes {
        match w {
            KvWrite::Set {
                plugin,
                key,
                value,
                expires_at,
            } => {
                txn.prepare_cached(
                    "INSERT INTO kv (plugin, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                )?
                .execute(params![plugin, key, value, expires_at])?;
            }
            KvWrite::Delete { plugin, key } => {
                txn.prepare_cached("DELETE FROM kv WHERE plugin = ?1 AND key = ?2")?
                    .execute(params![plugin, key])?;
            }
        }
    }
    Ok(())
}

/// Remove expired keys.
pub fn prune(txn: &Transaction<'_>, now: i64) -> rusqlite::Result<usize> {
    txn.execute(
        "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [now],
    )
}
