use rusqlite::{Transaction, params};

use super::{Store, now_millis};

/// A notification accepted by ingress, not yet stored.
pub struct NewInboxItem {
    /// Identity of the notification for deduplication (message id; status id and status; ...).
    pub dedup_key: String,
    /// The notification, as JSON.
    pub notification: String,
}

/// A stored notification waiting for the plugins.
#[derive(Debug, Clone)]
pub struct InboxItem {
    /// Row id; also the order of arrival.
    pub id: i64,
    /// Identity of the notification, as used for deduplication.
    pub dedup_key: String,
    /// The notification, as JSON.
    pub notification: String,
}

impl Store {
    /// Store notifications durably, skipping those seen before. Returns how many were new.
    pub async fn ingest(&self, items: Vec<NewInboxItem>) -> anyhow::Result<usize> {
        self.write(move |txn| {
            let now = now_millis();
            let mut seen =
                txn.prepare_cached("INSERT OR IGNORE INTO seen (key, at) VALUES (?1, ?2)")?;
            let mut insert = txn.prepare_cached(
                "INSERT INTO inbox (received_at, dedup_key, notification) VALUES (?1, ?2, ?3)",
            )?;
            let mut fresh = 0;
            for item in &items {
                if seen.execute(params![item.dedup_key, now])? == 1 {
                    insert.execute(params![now, item.dedup_key, item.notification])?;
                    fresh += 1;
                }
            }
            Ok(fresh)
        })
        .await
    }

    /// The oldest pending notifications after row `after`, at most `limit`.
    pub fn pending_inbox(&self, after: i64, limit: usize) -> anyhow::Result<Vec<InboxItem>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, dedup_key, notification FROM inbox WHERE done = 0 AND id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok(InboxItem { id: r.get(0)?, dedup_key: r.get(1)?, notification: r.get(2)? })
            })?;
            rows.collect()
        })
    }

    /// How many notifications wait for the plugins.
    pub fn inbox_backlog(&self) -> anyhow::Result<i64> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM inbox WHERE done = 0", [], |r| {
                r.get(0)
            })
        })
    }
}

/// Mark an inbox row handled, inside the transaction that stores what came of it.
pub fn mark_done(txn: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    txn.prepare_cached("UPDATE inbox SET done = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Remove handled notifications older than `before`, and dedup keys older than `seen_before`.
pub fn prune(txn: &Transaction<'_>, before: i64, seen_before: i64) -> rusqlite::Result<usize> {
    let a = txn.execute(
        "DELETE FROM inbox WHERE done = 1 AND received_at < ?1",
        [before],
    )?;
    let b = txn.execute("DELETE FROM seen WHERE at < ?1", [seen_before])?;
    Ok(a + b)
}
