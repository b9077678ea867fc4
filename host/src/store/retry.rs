//! Notifications whose dispatch failed for a reason of the host (not of a plugin), waiting to
//! be run again, and those parked after too many attempts. They are kept whole in the work
//! database, so the inbox can be pruned behind the dispatch cursor meanwhile.

use rusqlite::{Transaction, params};
use switchboard_sdk::Notification;

use super::inbox::{decode, encode};
use super::{Sqlite, Sync, now_millis};

/// A notification waiting to be dispatched again, or parked.
#[derive(Debug, Clone)]
pub struct RetryRow {
    /// Its id in the inbox (the order of arrival).
    pub inbox_id: i64,
    pub received_at: i64,
    pub dedup_key: String,
    pub notification: Notification,
    /// Notifications of one customer are dispatched in order: a later one waits for this one.
    pub customer: String,
    /// Attempts that failed so far (0 for one only waiting behind an earlier one).
    pub attempts: i64,
    /// When to run it again (Unix ms).
    pub next_at: i64,
    /// Given up until an operator retries it; no longer holds its customer's later ones.
    pub parked: bool,
    pub last_error: Option<String>,
}

/// A change to the waiting notifications, committed with the outcome of a dispatch batch.
// Few are made (one per failed notification), so a boxed row would save nothing worth it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum RetryChange {
    /// Add the row, or replace it (the same `inbox_id`).
    Put(RetryRow),
    /// It was dispatched: remove it.
    Done(i64),
}

/// What the dispatcher needs to know of the waiting notifications.
#[derive(Debug, Clone, Default)]
pub struct RetryState {
    /// Customers with a notification waiting (not parked): their later ones wait too.
    pub customers: std::collections::HashSet<String>,
    /// Notifications waiting, not parked.
    pub waiting: usize,
    /// Notifications parked.
    pub parked: usize,
    /// When the first of the rows that may run next (each customer's oldest) is due.
    pub next_at: Option<i64>,
}

const COLUMNS: &str = "inbox_id, received_at, dedup_key, notification, customer, attempts, next_at, parked, last_error";

/// The rows that may run: each customer's oldest waiting one.
const HEADS: &str = "FROM dispatch_retry r WHERE parked = 0 AND NOT EXISTS (
    SELECT 1 FROM dispatch_retry e WHERE e.customer = r.customer AND e.parked = 0 AND e.inbox_id < r.inbox_id)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetryRow> {
    let json: String = r.get(3)?;
    let notification = decode(&json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(RetryRow {
        inbox_id: r.get(0)?,
        received_at: r.get(1)?,
        dedup_key: r.get(2)?,
        notification,
        customer: r.get(4)?,
        attempts: r.get(5)?,
        next_at: r.get(6)?,
        parked: r.get::<_, i64>(7)? != 0,
        last_error: r.get(8)?,
    })
}

/// Apply changes inside a transaction.
pub fn apply(txn: &Transaction<'_>, changes: &[RetryChange]) -> rusqlite::Result<()> {
    for change in changes {
        match change {
            RetryChange::Put(r) => {
                txn.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO dispatch_retry ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))?
                .execute(params![
                    r.inbox_id,
                    r.received_at,
                    r.dedup_key,
                    encode(&r.notification),
                    r.customer,
                    r.attempts,
                    r.next_at,
                    r.parked as i64,
                    r.last_error
                ])?;
            }
            RetryChange::Done(id) => {
                txn.prepare_cached("DELETE FROM dispatch_retry WHERE inbox_id = ?1")?
                    .execute([id])?;
            }
        }
    }
    Ok(())
}

impl Sqlite {
    pub(super) fn retry_state(&self) -> anyhow::Result<RetryState> {
        self.work.read(|conn| {
            let mut state = RetryState::default();
            let mut stmt = conn.prepare_cached("SELECT customer, parked FROM dispatch_retry")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                if r.get::<_, i64>(1)? != 0 {
                    state.parked += 1;
                } else {
                    state.waiting += 1;
                    state.customers.insert(r.get(0)?);
                }
            }
            if state.waiting > 0 {
                state.next_at = conn
                    .prepare_cached(&format!("SELECT MIN(next_at) {HEADS}"))?
                    .query_row([], |r| r.get(0))?;
            }
            Ok(state)
        })
    }

    pub(super) fn due_retries(&self, now: i64, limit: usize) -> anyhow::Result<Vec<RetryRow>> {
        self.work.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} {HEADS} AND next_at <= ?1 ORDER BY inbox_id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, limit as i64], row)?;
            rows.collect()
        })
    }

    pub(super) fn list_notifications(
        &self,
        parked: bool,
        limit: usize,
    ) -> anyhow::Result<Vec<RetryRow>> {
        self.work.read(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM dispatch_retry WHERE parked = ?1 ORDER BY inbox_id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![parked as i64, limit as i64], row)?;
            rows.collect()
        })
    }

    pub(super) async fn retry_parked(&self, id: Option<i64>) -> anyhow::Result<usize> {
        self.work
            .writer
            .write(
                Sync::Durable,
                move |txn| {
                    txn.execute(
                        "UPDATE dispatch_retry SET parked = 0, attempts = 0, next_at = ?1
                         WHERE parked = 1 AND (?2 IS NULL OR inbox_id = ?2)",
                        params![now_millis(), id],
                    )
                },
                |n| n,
            )
            .await
    }
}
