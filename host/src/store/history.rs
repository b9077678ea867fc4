//! What the operator console reads and changes: searches of the inbox, the history of each
//! delivery (its attempts), dead letters retried by filter with an audit trail, and the
//! pruning of that history past the retention.
//!
//! Delivered outbox rows are kept (state 1) until the retention, with their attempts appended
//! to the row (`attempt_log`, one JSON object a line) rather than written as rows of their own:
//! no write per webhook is added. Every read is bounded (a window of ids, a `LIMIT`) and runs
//! on a read connection, never on a writer.
//!
//! The types and the helpers that are not SQL are shared with PostgreSQL
//! (`postgres/history.rs`), so that both backends answer alike.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use switchboard_sdk::Notification;

use super::inbox::decode;
use super::outbox::REVIVE;
use super::{DeliveryOutcome, InboxItem, SentMessage, Sqlite, Sync, now_millis};

/// What a delivery attempt was, beside its outcome.
#[derive(Debug, Clone, Default)]
pub struct Attempted {
    /// The delivery's destination (its row's `target`), counted by SQLite for
    /// `destination_health`.
    pub target: Arc<str>,
    /// When it started (Unix ms).
    pub at: i64,
    pub duration_ms: i64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
}

/// One attempt of a delivery, as kept in its row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptRecord {
    pub at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
    pub error: Option<String>,
}

/// A search of the notifications kept. Every field narrows it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// Message id or status id.
    pub id: Option<String>,
    /// The customer: sender of a message, recipient of a status, or the contact's wa_id.
    pub wa_id: Option<String>,
    /// `message`, `status` or `error`.
    pub kind: Option<String>,
    /// `text`, `image`, ...
    pub message_type: Option<String>,
    /// The endpoint it came in on.
    pub endpoint: Option<String>,
    /// Received at or after (Unix ms).
    pub from: Option<i64>,
    /// Received before (Unix ms).
    pub to: Option<i64>,
    /// Text anywhere in the item as received (case-insensitive for ASCII).
    pub q: Option<String>,
    /// Cursor: only notifications with a lower inbox id (from the previous page's `next`).
    pub before: Option<i64>,
    /// At most this many (default 50, at most 200).
    pub limit: Option<usize>,
}

/// One notification found, in short.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationSummary {
    /// Inbox id: the key of its timeline.
    pub inbox_id: i64,
    pub received_at: i64,
    pub endpoint: String,
    pub kind: String,
    /// Message id, status id or error code.
    pub id: String,
    pub wa_id: Option<String>,
    pub message_type: Option<String>,
    pub status: Option<String>,
    pub text: Option<String>,
    pub contact_name: Option<String>,
}

impl NotificationSummary {
    pub fn of(item: &InboxItem) -> NotificationSummary {
        let n = &item.notification;
        NotificationSummary {
            inbox_id: item.id,
            received_at: item.received_at,
            endpoint: n.source.clone(),
            kind: n.kind.as_str().to_string(),
            id: n.id.clone(),
            wa_id: n.sender.clone(),
            message_type: n.message_type.clone(),
            status: n.status.clone(),
            text: n.text.clone(),
            contact_name: n.contact_name.clone(),
        }
    }
}

/// A page of search results.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `before` for the next page; none when the search reached the oldest kept.
    pub next: Option<i64>,
}

impl Page<DeliveryRecord> {
    /// A page of at most `limit` deliveries, newest first: a full one goes on below its last.
    pub(super) fn of_deliveries(items: Vec<DeliveryRecord>, limit: usize) -> Self {
        let next = (items.len() == limit)
            .then(|| items.last().map(|d| d.id))
            .flatten();
        Page { items, next }
    }
}

/// A search of the deliveries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// A destination name, or `whatsapp`.
    pub destination: Option<String>,
    /// `forward`, `reply` or `mark-read`.
    pub kind: Option<String>,
    /// Cursor: only deliveries with a lower id.
    pub before: Option<i64>,
    /// At most this many (default 50, at most 200).
    pub limit: Option<usize>,
}

/// Which dead letters to retry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadFilter {
    pub destination: Option<String>,
    pub kind: Option<String>,
    /// Given up at or after (Unix ms).
    pub from: Option<i64>,
    /// Given up before (Unix ms).
    pub to: Option<i64>,
    /// Text in the last error (e.g. `503`).
    pub error: Option<String>,
}

impl DeadFilter {
    /// The `LIKE` pattern of the text sought in the last error, if any.
    pub(super) fn error_pattern(&self) -> Option<String> {
        self.error
            .as_deref()
            .filter(|e| !e.is_empty())
            .map(contains)
    }
}

/// What a retry by filter did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RetryReport {
    /// Dead letters matching the filter.
    pub matched: usize,
    /// Put back in the queue (0 for a dry run).
    pub retried: usize,
    /// Their ids.
    pub ids: Vec<i64>,
}

/// One change made through the console.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub who: String,
    pub action: String,
    pub detail: String,
    pub count: i64,
}

/// A delivery and its history.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub inbox_id: Option<i64>,
    /// The plugin whose action it is.
    pub plugin: Option<String>,
    pub kind: String,
    pub destination: String,
    pub webhook_id: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub created_at: i64,
    pub next_at: i64,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
    /// What is sent, as stored (see `delivery::Request`).
    pub request: serde_json::Value,
    pub attempts: Vec<AttemptRecord>,
    /// For a send, in a notification's timeline: the WhatsApp message it became.
    pub sent: Option<SentSummary>,
}

/// The WhatsApp message a delivered send became, and the last status WhatsApp reported for it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SentSummary {
    /// The id WhatsApp gave the message.
    pub message_id: String,
    /// `sent`, `delivered`, `read` or `failed`; none before the first status.
    pub status: Option<String>,
    /// For `failed`: WhatsApp's error code and title.
    pub error: Option<String>,
    pub status_at: Option<i64>,
}

/// How one destination fares.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestinationHealth {
    pub destination: String,
    /// Delivered since the start of the window.
    pub delivered: u64,
    /// Given up since the start of the window.
    pub dead: u64,
    pub pending: u64,
    /// Pending after at least one failed attempt.
    pub retrying: u64,
    /// When the oldest pending was stored (Unix ms).
    pub oldest_pending_at: Option<i64>,
}

/// Most results of one page.
pub const MAX_PAGE: usize = 200;
/// Inbox ids one search request looks through at most; a search that found fewer results
/// returns a cursor to go on from.
pub const SEARCH_WINDOW: i64 = 100_000;
/// Longest error kept in an attempt record, in bytes.
const ERROR_KEPT: usize = 300;
/// An attempt log past this size gets no more records (a row retried for days).
pub(super) const LOG_KEPT: i64 = 16_000;

/// Deliveries are counted per destination and minute (ms).
pub(super) const MINUTE: i64 = 60_000;

/// Where the next scan for delivered rows to prune starts (both backends): after the last row
/// a full batch deleted, so that the batches of one round do not each scan again the rows kept
/// below it (dead letters stay until retried, and can be many); from the start again after a
/// batch that was not full, so that rows delivered late below it go in the next round.
#[derive(Debug, Default)]
pub struct PruneCursor(AtomicI64);

impl PruneCursor {
    pub(super) fn start(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// After a batch of at most `limit` that deleted the rows `deleted`.
    pub(super) fn deleted(&self, deleted: &[i64], limit: usize) {
        let next = match deleted.iter().max() {
            Some(&last) if deleted.len() >= limit => last,
            _ => 0,
        };
        self.0.store(next, Ordering::Relaxed);
    }
}

pub(super) fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(50).clamp(1, MAX_PAGE)
}

fn state_name(state: i64) -> &'static str {
    match state {
        1 => "delivered",
        2 => "dead",
        _ => "pending",
    }
}

pub(super) fn state_code(name: &str) -> anyhow::Result<i64> {
    Ok(match name {
        "pending" => 0,
        "delivered" => 1,
        "dead" => 2,
        other => anyhow::bail!("unknown state {other:?}: use pending, delivered or dead"),
    })
}

/// `s` in a `LIKE` pattern, its wildcards escaped (`ESCAPE` backslash).
fn like_literal(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A `LIKE` pattern matching `s` anywhere.
fn contains(s: &str) -> String {
    format!("%{}%", like_literal(s))
}

fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Whether `n` matches the exact fields of `q` (the text query is matched in SQL).
fn matches(n: &Notification, q: &NotificationQuery) -> bool {
    let eq = |want: &Option<String>, have: Option<&str>| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| have == Some(w))
    };
    let wa_id_ok = q
        .wa_id
        .as_deref()
        .filter(|w| !w.is_empty())
        .is_none_or(|w| {
            n.sender.as_deref() == Some(w)
                || n.contact_json.as_deref().is_some_and(|c| {
                    serde_json::from_str::<serde_json::Value>(c)
                        .ok()
                        .and_then(|v| v.get("wa_id").and_then(|x| x.as_str()).map(|x| x == w))
                        .unwrap_or(false)
                })
        });
    eq(&q.id, Some(&n.id))
        && wa_id_ok
        && eq(&q.kind, Some(n.kind.as_str()))
        && eq(&q.message_type, n.message_type.as_deref())
        && eq(&q.endpoint, Some(&n.source))
}

/// The columns [`delivery_record`] reads, on both backends.
pub(super) const DELIVERY_COLUMNS: &str = "id, inbox_id, plugin, kind, target, webhook_id, CAST(state AS BIGINT), created_at, next_at, finished_at, last_error, request, attempt_log";

/// A delivery read by [`DELIVERY_COLUMNS`], through the row's getters of integers and texts.
pub(super) fn delivery_record<E>(
    int: impl Fn(usize) -> Result<Option<i64>, E>,
    text: impl Fn(usize) -> Result<Option<String>, E>,
) -> Result<DeliveryRecord, E> {
    let request = text(11)?.unwrap_or_default();
    Ok(DeliveryRecord {
        id: int(0)?.unwrap_or_default(),
        inbox_id: int(1)?,
        plugin: text(2)?,
        kind: text(3)?.unwrap_or_default(),
        destination: text(4)?.unwrap_or_default(),
        webhook_id: text(5)?.unwrap_or_default(),
        state: state_name(int(6)?.unwrap_or_default()).to_string(),
        created_at: int(7)?.unwrap_or_default(),
        next_at: int(8)?.unwrap_or_default(),
        finished_at: int(9)?,
        last_error: text(10)?,
        request: serde_json::from_str(&request).unwrap_or(serde_json::Value::String(request)),
        attempts: text(12)?
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        sent: None,
    })
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    delivery_record(|i| r.get(i), |i| r.get(i))
}

/// Each delivery that was a send gets its WhatsApp message (the latest, if it was sent twice).
pub(super) fn attach_sends(deliveries: &mut [DeliveryRecord], sent: &[SentMessage]) {
    for d in deliveries {
        d.sent = sent
            .iter()
            .filter(|s| s.delivery_id == d.id)
            .max_by_key(|s| s.sent_at)
            .map(|s| SentSummary {
                message_id: s.wa_id.clone(),
                status: s.status.clone(),
                error: s.error.clone(),
                status_at: s.status_at,
            });
    }
}

/// What one attempt's outcome writes to its row.
pub(super) struct Recorded {
    pub state: i16,
    pub next_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// The line appended to the row's `attempt_log`.
    pub line: String,
}

impl Recorded {
    pub(super) fn of(outcome: &DeliveryOutcome, attempted: &Attempted, now: i64) -> Recorded {
        let (state, next_at, finished_at, error, name) = match outcome {
            DeliveryOutcome::Delivered => (1, now, Some(now), None, "delivered"),
            DeliveryOutcome::Retry { at, error } => (0, *at, None, Some(error), "retry"),
            DeliveryOutcome::Dead { error } => (2, now, Some(now), Some(error), "dead"),
        };
        let record = AttemptRecord {
            at: attempted.at,
            duration_ms: attempted.duration_ms,
            status: attempted.status,
            outcome: name.into(),
            error: error.map(|e| truncated(e, ERROR_KEPT)),
        };
        Recorded {
            state,
            next_at,
            finished_at,
            error: error.cloned(),
            line: serde_json::to_string(&record).unwrap_or_default() + "\n",
        }
    }
}

/// A search of the inbox as both backends run it: the rows of a window of ids, narrowed in SQL
/// by `LIKE` patterns, then compared field by field once decoded.
pub(super) struct Search<'a> {
    pub query: &'a NotificationQuery,
    pub limit: usize,
    /// Rows read at most: those failing the exact fields are dropped after, so more than a page.
    pub fetch: usize,
    /// Anywhere in the row: the text query, or else the id, the wa_id or the message type.
    pub needle: Option<String>,
    /// The row's start, as `encode` writes it (`{"kind":"...","source":"..."`): kind and endpoint.
    pub head: Option<String>,
}

impl<'a> Search<'a> {
    pub(super) fn new(q: &'a NotificationQuery) -> Search<'a> {
        let limit = page_limit(q.limit);
        let needle =
            q.q.as_deref()
                .or(q.id.as_deref())
                .or(q.wa_id.as_deref())
                .or(q.message_type.as_deref())
                .filter(|s| !s.is_empty())
                .map(contains);
        let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let quoted = |v: String| like_literal(&serde_json::Value::from(v).to_string());
        let head = match (some(&q.kind), some(&q.endpoint)) {
            (None, None) => None,
            (kind, source) => Some(format!(
                "{{\"kind\":{},\"source\":{}%",
                kind.map_or("%".into(), quoted),
                source.map_or("%".into(), quoted),
            )),
        };
        Search {
            query: q,
            limit,
            fetch: limit * 20,
            needle,
            head,
        }
    }

    /// The window of inbox ids to look through, `[floor, top)`: below the cursor, or else
    /// from the newest id kept down.
    pub(super) fn window(&self, newest: Option<i64>) -> (i64, i64) {
        let top = self.query.before.unwrap_or(newest.unwrap_or(0) + 1);
        (top, top.saturating_sub(SEARCH_WINDOW))
    }

    /// The page made of `rows` (id, received_at, dedup_key, notification; newest first) read
    /// from the window above `floor`; `oldest` is the lowest inbox id kept.
    pub(super) fn page(
        &self,
        rows: Vec<(i64, i64, String, String)>,
        floor: i64,
        oldest: Option<i64>,
    ) -> Page<NotificationSummary> {
        let read_all = rows.len() < self.fetch;
        let mut items = Vec::new();
        let mut last_seen = None;
        for (id, received_at, dedup_key, json) in rows {
            last_seen = Some(id);
            let Ok(notification) = decode(&json) else {
                continue;
            };
            if !matches(&notification, self.query) {
                continue;
            }
            items.push(NotificationSummary::of(&InboxItem {
                id,
                received_at,
                dedup_key,
                notification,
            }));
            if items.len() == self.limit {
                break;
            }
        }
        let next = if items.len() == self.limit || !read_all {
            last_seen
        } else {
            // Nothing more in this window: the next page goes on below it, if anything is kept
            // there.
            oldest.filter(|&o| o < floor).map(|_| floor)
        };
        Page { items, next }
    }
}

/// The lowest and the highest inbox id kept (both backends).
pub(super) const INBOX_IDS: &str =
    "SELECT (SELECT MIN(id) FROM inbox), (SELECT MAX(id) FROM inbox)";

/// Rows of a destination's health: (destination, what, count, oldest pending), `what` being
/// 0 pending, 1 delivered, 2 dead, 3 retrying.
pub(super) fn health(rows: Vec<(String, i64, i64, Option<i64>)>) -> Vec<DestinationHealth> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<String, DestinationHealth> = BTreeMap::new();
    for (target, what, n, oldest) in rows {
        let h = by.entry(target.clone()).or_default();
        h.destination = target;
        match what {
            0 => {
                h.pending = n as u64;
                h.oldest_pending_at = oldest;
            }
            1 => h.delivered = n as u64,
            2 => h.dead = n as u64,
            _ => h.retrying = n as u64,
        }
    }
    by.into_values().collect()
}

impl Sqlite {
    pub(super) async fn record_attempts(
        &self,
        outcomes: Vec<(i64, DeliveryOutcome, Attempted)>,
    ) -> anyhow::Result<()> {
        // Lazy, like `dispatched`: lost to a power cut means one more attempt.
        self.work
            .writer
            .write(
                Sync::Lazy,
                move |txn| {
                    let now = now_millis();
                    let mut stmt = txn.prepare_cached(
                        "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_at = ?3,
                            finished_at = ?4, last_error = ?5, revived = 0,
                            attempt_log = CASE WHEN length(attempt_log) > ?7 THEN attempt_log
                                ELSE COALESCE(attempt_log, '') || ?6 END
                         WHERE id = ?1",
                    )?;
                    // Deliveries per destination, counted for `destination_health`.
                    let mut delivered: HashMap<&str, i64> = HashMap::new();
                    for (id, outcome, attempted) in &outcomes {
                        let r = Recorded::of(outcome, attempted, now);
                        let updated = stmt.execute(params![
                            id,
                            r.state,
                            r.next_at,
                            r.finished_at,
                            r.error,
                            r.line,
                            LOG_KEPT
                        ])?;
                        if updated == 1 && matches!(outcome, DeliveryOutcome::Delivered) {
                            *delivered.entry(&attempted.target).or_default() += 1;
                        }
                    }
                    let mut count = txn.prepare_cached(
                        "INSERT INTO delivered_minute (target, minute, n) VALUES (?1, ?2, ?3)
                         ON CONFLICT (target, minute) DO UPDATE SET n = n + excluded.n",
                    )?;
                    for (target, n) in delivered {
                        count.execute(params![target, now / MINUTE, n])?;
                    }
                    Ok(())
                },
                |()| (),
            )
            .await
    }

    pub(super) fn search_notifications(
        &self,
        q: &NotificationQuery,
    ) -> anyhow::Result<Page<NotificationSummary>> {
        let search = Search::new(q);
        let (oldest, newest): (Option<i64>, Option<i64>) = self
            .inbox
            .read(|c| c.query_row(INBOX_IDS, [], |r| Ok((r.get(0)?, r.get(1)?))))?;
        let (top, floor) = search.window(newest);
        let rows: Vec<(i64, i64, String, String)> = self.inbox.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, received_at, dedup_key, notification FROM inbox
                 WHERE id < ?1 AND id >= ?2 AND received_at >= ?3 AND received_at < ?4
                   AND (?5 IS NULL OR notification LIKE ?5 ESCAPE '\\')
                   AND (?7 IS NULL OR notification LIKE ?7 ESCAPE '\\')
                 ORDER BY id DESC LIMIT ?6",
            )?;
            let rows = stmt.query_map(
                params![
                    top,
                    floor,
                    q.from.unwrap_or(0),
                    q.to.unwrap_or(i64::MAX),
                    search.needle,
                    search.fetch as i64,
                    search.head
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            rows.collect()
        })?;
        Ok(search.page(rows, floor, oldest))
    }

    pub(super) fn notification(&self, inbox_id: i64) -> anyhow::Result<Option<InboxItem>> {
        let row: Option<(i64, String, String)> = self.inbox.read(|c| {
            c.query_row(
                "SELECT received_at, dedup_key, notification FROM inbox WHERE id = ?1",
                [inbox_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        let Some((received_at, dedup_key, json)) = row else {
            return Ok(None);
        };
        let notification = decode(&json).map_err(|e| anyhow::anyhow!("unreadable: {e}"))?;
        Ok(Some(InboxItem {
            id: inbox_id,
            received_at,
            dedup_key,
            notification,
        }))
    }

    pub(super) fn deliveries_of(&self, inbox_id: i64) -> anyhow::Result<Vec<DeliveryRecord>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE inbox_id = ?1 ORDER BY id LIMIT {MAX_PAGE}"
        );
        let mut deliveries: Vec<DeliveryRecord> = self.work.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([inbox_id], delivery_row)?;
            rows.collect()
        })?;
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        attach_sends(&mut deliveries, &self.sent_by_deliveries(&ids)?);
        Ok(deliveries)
    }

    pub(super) fn find_deliveries(
        &self,
        q: &DeliveryQuery,
    ) -> anyhow::Result<Page<DeliveryRecord>> {
        let state = q.state.as_deref().map(state_code).transpose()?;
        let limit = page_limit(q.limit);
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox
             WHERE id < ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR target = ?3)
               AND (?4 IS NULL OR kind = ?4)
             ORDER BY id DESC LIMIT ?5"
        );
        let items: Vec<DeliveryRecord> = self.work.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    q.before.unwrap_or(i64::MAX),
                    state,
                    q.destination,
                    q.kind,
                    limit as i64
                ],
                delivery_row,
            )?;
            rows.collect()
        })?;
        Ok(Page::of_deliveries(items, limit))
    }

    pub(super) async fn retry_dead_matching(
        &self,
        filter: DeadFilter,
        dry_run: bool,
        limit: usize,
        who: String,
    ) -> anyhow::Result<RetryReport> {
        if dry_run {
            let (matched, ids) = self.work.read(|c| dead_matching(c, &filter, limit))?;
            return Ok(RetryReport {
                matched,
                retried: 0,
                ids,
            });
        }
        let detail = serde_json::to_string(&filter).unwrap_or_default();
        self.work
            .writer
            .write(
                Sync::Durable,
                move |txn| {
                    let (matched, ids) = dead_matching(txn, &filter, limit)?;
                    let now = now_millis();
                    let mut revive = txn.prepare_cached(&format!("{REVIVE} AND id = ?2"))?;
                    for id in &ids {
                        revive.execute(params![now, id])?;
                    }
                    txn.execute(
                        "INSERT INTO admin_audit (at, who, action, detail, count)
                         VALUES (?1, ?2, 'retry-dead', ?3, ?4)",
                        params![now, who, detail, ids.len() as i64],
                    )?;
                    Ok(RetryReport {
                        matched,
                        retried: ids.len(),
                        ids,
                    })
                },
                |r| r,
            )
            .await
    }

    pub(super) fn audit_log(&self, limit: usize) -> anyhow::Result<Vec<AuditRow>> {
        self.work.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, at, who, action, detail, count FROM admin_audit ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit.min(MAX_PAGE) as i64], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    who: r.get(2)?,
                    action: r.get(3)?,
                    detail: r.get(4)?,
                    count: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Deliveries are counted by the minute: those of the minute `since` falls in all count.
    pub(super) fn destination_health(&self, since: i64) -> anyhow::Result<Vec<DestinationHealth>> {
        let rows = self.work.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT target, 1, SUM(n), NULL FROM delivered_minute WHERE minute >= ?2 GROUP BY target
                 UNION ALL SELECT target, 2, COUNT(*), NULL FROM outbox WHERE state = 2 AND finished_at >= ?1 GROUP BY target
                 UNION ALL SELECT target, 3, COUNT(*), NULL FROM outbox WHERE state = 0 AND attempts > 0 GROUP BY target
                 UNION ALL SELECT target, 0, COUNT(*), MIN(created_at) FROM outbox WHERE state = 0 GROUP BY target",
            )?;
            let rows = stmt.query_map(params![since, since / MINUTE], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })?;
        Ok(health(rows))
    }

    pub(super) fn history_since(&self) -> anyhow::Result<Option<i64>> {
        self.inbox.read(|c| {
            c.query_row(
                "SELECT received_at FROM inbox ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Delivered rows are found by id, as they are not indexed: those finished before `before`
    /// have ids up to the highest that existed at `before`, which the latest mark taken by then
    /// gives (a mark is taken here, at most every half minute). Rows kept below it (pending, dead,
    /// delivered later) are looked at again in each round (see [`PruneCursor`]).
    pub(super) async fn prune_history(&self, before: i64, limit: usize) -> anyhow::Result<usize> {
        let cursor = self.prune_cursor.clone();
        self.work
            .writer
            .write(
                Sync::Lazy,
                move |txn| {
                    let now = now_millis();
                    let max_id: i64 = txn.query_row(
                        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
                        [],
                        |r| r.get(0),
                    )?;
                    txn.execute(
                        "INSERT INTO outbox_mark (at, max_id) SELECT ?1, ?2
                         WHERE NOT EXISTS (SELECT 1 FROM outbox_mark WHERE at > ?1 - ?3)",
                        params![now, max_id, MINUTE / 2],
                    )?;
                    let upto: i64 = if before >= now {
                        max_id
                    } else {
                        txn.query_row(
                            "SELECT COALESCE((SELECT max_id FROM outbox_mark WHERE at <= ?1
                                              ORDER BY at DESC LIMIT 1), 0)",
                            [before],
                            |r| r.get(0),
                        )?
                    };
                    let deleted: Vec<i64> = txn
                        .prepare_cached(
                            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
                               WHERE id > ?4 AND id <= ?3 AND state = 1 AND finished_at < ?1
                               ORDER BY id LIMIT ?2)
                             RETURNING id",
                        )?
                        .query_map(
                            params![before, limit as i64, upto, cursor.start()],
                            |r| r.get(0),
                        )?
                        .collect::<rusqlite::Result<_>>()?;
                    cursor.deleted(&deleted, limit);
                    let audit = txn.execute(
                        "DELETE FROM admin_audit WHERE id IN
                           (SELECT id FROM admin_audit WHERE at < ?1 LIMIT ?2)",
                        params![before, limit as i64],
                    )?;
                    // Both small: one row per minute (and destination).
                    txn.execute(
                        "DELETE FROM delivered_minute WHERE minute < ?1",
                        [before / MINUTE],
                    )?;
                    txn.execute(
                        "DELETE FROM outbox_mark WHERE at < (SELECT MAX(at) FROM outbox_mark WHERE at <= ?1)",
                        [before],
                    )?;
                    Ok(deleted.len() + audit)
                },
                |n| n,
            )
            .await
    }
}

/// How many dead letters match `filter`, and the ids of the oldest `limit`.
fn dead_matching(
    c: &rusqlite::Connection,
    filter: &DeadFilter,
    limit: usize,
) -> rusqlite::Result<(usize, Vec<i64>)> {
    const WHERE: &str = "state = 2 AND (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR kind = ?2)
        AND (?3 IS NULL OR finished_at >= ?3) AND (?4 IS NULL OR finished_at < ?4)
        AND (?5 IS NULL OR last_error LIKE ?5 ESCAPE '\\')";
    let error = filter.error_pattern();
    let args = params![
        filter.destination,
        filter.kind,
        filter.from,
        filter.to,
        error
    ];
    let count: i64 = c.query_row(
        &format!("SELECT COUNT(*) FROM outbox WHERE {WHERE}"),
        args,
        |r| r.get(0),
    )?;
    let ids = c
        .prepare(&format!(
            "SELECT id FROM outbox WHERE {WHERE} ORDER BY id LIMIT {limit}"
        ))?
        .query_map(args, |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok((count as usize, ids))
}
