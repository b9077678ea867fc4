//! What waits: notifications not yet dispatched, deliveries pending by target, dead letters;
//! and a check that the database files can still be opened and read.

use rusqlite::OptionalExtension;

use super::Sqlite;
use super::inbox::read_cursor;

/// A snapshot of the work waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Notifications stored and not yet run through the plugins.
    pub inbox: u64,
    /// When the oldest of them was received (Unix ms).
    pub inbox_oldest: Option<i64>,
    /// Pending deliveries by target (a destination or `whatsapp`), with when the oldest was
    /// created (Unix ms), in target order.
    pub outbox: Vec<(String, u64, i64)>,
    /// Dead letters.
    pub dead: u64,
}

impl Sqlite {
    pub(super) fn backlog(&self) -> anyhow::Result<Backlog> {
        let cursor = self.work.read(read_cursor)?;
        let (inbox, inbox_oldest) = self.inbox.read(|c| {
            let count: i64 =
                c.query_row("SELECT COUNT(*) FROM inbox WHERE id > ?1", [cursor], |r| {
                    r.get(0)
                })?;
            let oldest: Option<i64> = c
                .query_row(
                    "SELECT received_at FROM inbox WHERE id > ?1 ORDER BY id LIMIT 1",
                    [cursor],
                    |r| r.get(0),
                )
                .optional()?;
            Ok((count as u64, oldest))
        })?;
        let (outbox, dead) = self.work.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT target, COUNT(*), MIN(created_at) FROM outbox WHERE state = 0
                 GROUP BY target ORDER BY target",
            )?;
            let outbox = stmt
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let dead: i64 =
                c.query_row("SELECT COUNT(*) FROM outbox WHERE state = 2", [], |r| {
                    r.get(0)
                })?;
            Ok((outbox, dead as u64))
        })?;
        Ok(Backlog {
            inbox,
            inbox_oldest,
            outbox,
            dead,
        })
    }

    pub(super) fn probe(&self) -> anyhow::Result<()> {
        self.inbox.readers.probe("SELECT id FROM inbox LIMIT 1")?;
        self.work
            .readers
            .probe("SELECT inbox_id FROM dispatch_cursor")
    }
}
