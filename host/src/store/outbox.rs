use rusqlite::{ToSql, Transaction, params, params_from_iter};

use super::{Sqlite, Sync, now_millis};

/// A delivery to store, produced by a plugin's action.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The partition of the notification it comes from.
    pub partition: i32,
    /// `forward`, `reply` or `mark-read`.
    pub kind: String,
    /// A destination name, or `whatsapp`.
    pub target: String,
    /// Deliveries of one lane (target and customer) go out in order.
    pub lane: String,
    /// Stable id of this delivery, sent to receivers so they can deduplicate.
    pub webhook_id: String,
    /// What to send, as JSON (see `delivery::Request`).
    pub request: String,
    /// The notification whose plugin action it is (inbox id), and that plugin.
    pub inbox_id: i64,
    pub plugin: String,
}

impl NewDelivery {
    /// The row it became, stored at `now` with id `id`.
    pub fn stored(self, id: i64, now: i64) -> OutboxRow {
        OutboxRow {
            id,
            partition: self.partition,
            kind: self.kind,
            target: self.target,
            lane: self.lane,
            webhook_id: self.webhook_id,
            request: self.request,
            state: OutboxState::Pending,
            attempts: 0,
            created_at: now,
            next_at: now,
            last_error: None,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for its first attempt or a retry (a delivered row is kept as history, see
    /// `history.rs`, and never claimed).
    Pending,
    /// Given up: listed by `deliveries list --dead`, replayed by `deliveries retry`.
    Dead,
}

impl OutboxState {
    fn from_i64(v: i64) -> Self {
        match v {
            2 => OutboxState::Dead,
            _ => OutboxState::Pending,
        }
    }
}

/// A stored delivery.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    /// The partition whose lease covers it (0 on SQLite, which has one).
    pub partition: i32,
    pub kind: String,
    pub target: String,
    pub lane: String,
    pub webhook_id: String,
    pub request: String,
    pub state: OutboxState,
    pub attempts: i64,
    pub created_at: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    /// The receiver accepted it.
    Delivered,
    /// Try again at `at` (Unix ms).
    Retry { at: i64, error: String },
    /// Give up.
    Dead { error: String },
}

/// Put dead rows back in the queue, due at `?1`, with a fresh retry horizon; revived, so that
/// a claim finds them whatever their id. Callers add the rows (`AND id = ?2`).
pub(super) const REVIVE: &str = "UPDATE outbox SET state = 0, revived = 1, next_at = ?1, created_at = ?1, finished_at = NULL WHERE state = 2";

const COLUMNS: &str =
    "id, kind, target, lane, webhook_id, request, state, attempts, created_at, next_at, last_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        partition: 0,
        kind: r.get(1)?,
        target: r.get(2)?,
        lane: r.get(3)?,
        webhook_id: r.get(4)?,
        request: r.get(5)?,
        state: OutboxState::from_i64(r.get(6)?),
        attempts: r.get(7)?,
        created_at: r.get(8)?,
        next_at: r.get(9)?,
        last_error: r.get(10)?,
    })
}

/// Rows per `INSERT`, largest first: a statement of many rows pays SQLite's work per statement
/// (opening the table and its indexes, reading and writing the `AUTOINCREMENT` counter) once
/// for all of them. Few sizes, so that few statements are cached.
const CHUNKS: [usize; 3] = [16, 4, 1];

/// Queue deliveries inside a transaction; returns the stored rows.
pub fn insert(
    txn: &Transaction<'_>,
    deliveries: Vec<NewDelivery>,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let now = now_millis();
    let mut ids = Vec::with_capacity(deliveries.len());
    let mut rest = &deliveries[..];
    while !rest.is_empty() {
        let n = CHUNKS.into_iter().find(|&c| c <= rest.len()).unwrap_or(1);
        let (chunk, after) = rest.split_at(n);
        let mut stmt = txn.prepare_cached(&format!(
            "INSERT INTO outbox (kind, target, lane, webhook_id, request, created_at, next_at, inbox_id, plugin)
             VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ")
        ))?;
        stmt.execute(params_from_iter(chunk.iter().flat_map(|d| {
            [
                &d.kind as &dyn ToSql,
                &d.target,
                &d.lane,
                &d.webhook_id,
                &d.request,
                &now,
                &now,
                &d.inbox_id,
                &d.plugin,
            ]
        })))?;
        // One writer in a transaction, and AUTOINCREMENT gives each row one more than the
        // largest ever: a statement's rows have consecutive ids, up to the last one.
        let last = txn.last_insert_rowid();
        ids.extend((last - n as i64 + 1)..=last);
        rest = after;
    }
    Ok(deliveries
        .into_iter()
        .zip(ids)
        .map(|(d, id)| d.stored(id, now))
        .collect())
}

impl Sqlite {
    /// Pending deliveries after row `after` up to row `upto`, and revived dead letters, oldest
    /// first, at most `limit`.
    pub(super) fn pending_deliveries(
        &self,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE id > ?1 AND id <= ?2 AND state = 0
             UNION SELECT {COLUMNS} FROM outbox WHERE revived = 1 AND state = 0 ORDER BY id LIMIT ?3"
        );
        self.work.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![after, upto, limit as i64], row)?;
            rows.collect()
        })
    }

    /// The highest delivery id ever given (ids are never reused).
    pub(super) fn max_delivery_id(&self) -> anyhow::Result<i64> {
        self.work.read(|conn| {
            conn.query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
                [],
                |r| r.get(0),
            )
        })
    }

    /// Deliveries for operators: the dead ones, or all not yet delivered.
    pub(super) fn list_deliveries(
        &self,
        dead: bool,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE state = ?1 ORDER BY id LIMIT ?2");
        self.work.read(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(params![if dead { 2 } else { 0 }, limit as i64], row)?;
            rows.collect()
        })
    }

    /// Put dead deliveries back in the queue, due now, with a fresh retry horizon: the one with
    /// `id`, or all of them. Returns how many.
    pub(super) async fn retry_dead(&self, id: Option<i64>) -> anyhow::Result<usize> {
        self.work
            .writer
            .write(
                Sync::Durable,
                move |txn| {
                    let now = now_millis();
                    match id {
                        Some(id) => txn.execute(&format!("{REVIVE} AND id = ?2"), params![now, id]),
                        None => txn.execute(REVIVE, params![now]),
                    }
                },
                |n| n,
            )
            .await
    }
}
