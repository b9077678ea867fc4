use rusqlite::{OptionalExtension, params};
use switchboard_sdk::Notification;

use super::{Sqlite, Sync, now_millis, seen};

/// A notification accepted by ingress, not yet stored.
pub struct NewInboxItem {
    /// Identity of the notification for deduplication (message id; status id and status; ...).
    pub dedup_key: String,
    /// The notification.
    pub notification: Notification,
    /// The notification as JSON, as it is stored.
    pub json: String,
}

/// A stored notification waiting for the plugins.
#[derive(Debug, Clone)]
pub struct InboxItem {
    /// Row id; also the order of arrival and of dispatch.
    pub id: i64,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub received_at: i64,
    /// Identity of the notification, as used for deduplication.
    pub dedup_key: String,
    /// The notification.
    pub notification: Notification,
}

/// Called on the writer thread right after the commit that stored the fresh notifications of
/// one `ingest`, in commit order (so in id order across calls).
pub type OnCommit = Box<dyn FnOnce(Vec<InboxItem>) + Send>;

impl Sqlite {
    /// Store notifications durably, skipping those seen before; `on_commit` gets the fresh ones
    /// once they are durable. Returns how many were fresh.
    pub(super) async fn ingest(
        &self,
        items: Vec<NewInboxItem>,
        on_commit: OnCommit,
    ) -> anyhow::Result<usize> {
        let seen = self.seen.clone();
        self.inbox
            .writer
            .write(
                Sync::Durable,
                move |txn| {
                    let now = now_millis();
                    let mut added = seen::Added::new(&seen);
                    let mut insert = txn.prepare_cached(
                    "INSERT INTO inbox (received_at, dedup_key, notification) VALUES (?1, ?2, ?3)",
                )?;
                    let mut fresh = Vec::with_capacity(items.len());
                    for item in items {
                        if added.add(txn, &item.dedup_key, now)? {
                            insert.execute(params![now, item.dedup_key, item.json])?;
                            fresh.push(InboxItem {
                                id: txn.last_insert_rowid(),
                                received_at: now,
                                dedup_key: item.dedup_key,
                                notification: item.notification,
                            });
                        }
                    }
                    Ok((fresh, added))
                },
                // On the writer thread: handing over from the caller's task could reorder
                // concurrent ingests.
                move |(fresh, added)| {
                    added.keep();
                    let count = fresh.len();
                    if count > 0 {
                        on_commit(fresh);
                    }
                    count
                },
            )
            .await
    }

    /// Where dispatch stands: every notification up to this id has been handled.
    pub(super) fn dispatch_cursor(&self) -> anyhow::Result<i64> {
        self.work.read(read_cursor)
    }

    /// The notifications after `cursor`, oldest first, at most `limit`. A stored notification
    /// that no longer reads as one is logged and skipped.
    pub(super) fn pending_inbox(
        &self,
        cursor: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<InboxItem>> {
        let rows: Vec<(i64, i64, String, String)> = self.inbox.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, received_at, dedup_key, notification FROM inbox
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![cursor, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, received_at, dedup_key, json)| match serde_json::from_str(&json) {
                Ok(notification) => Some(InboxItem {
                    id,
                    received_at,
                    dedup_key,
                    notification,
                }),
                Err(e) => {
                    tracing::error!(inbox_id = id, error = %e, "stored notification is unreadable; skipped");
                    None
                }
            })
            .collect())
    }
}

/// The dispatch cursor, as stored in the work database.
pub fn read_cursor(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT inbox_id FROM dispatch_cursor", [], |r| r.get(0))
        .optional()
        .map(|c| c.unwrap_or(0))
}

/// Remove notifications up to `cursor` (handled) received before `before`. Rows are in order
/// of arrival, so only the rows removed are visited.
pub fn prune(txn: &rusqlite::Transaction<'_>, cursor: i64, before: i64) -> rusqlite::Result<usize> {
    txn.execute(
        "DELETE FROM inbox WHERE id <= ?1
           AND id < COALESCE((SELECT id FROM inbox WHERE received_at >= ?2 ORDER BY id LIMIT 1), 1 << 62)",
        [cursor, before],
    )
}
