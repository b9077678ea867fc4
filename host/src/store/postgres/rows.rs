//! Rows of the outbox and of the waiting notifications, read and written on PostgreSQL.

use deadpool_postgres::{GenericClient, Transaction};

use super::super::history::{LOG_KEPT, MINUTE, Recorded};
use super::super::inbox::{decode, encode};
use super::super::lease::Cluster;
use super::super::outbox::OutboxState;
use super::super::{
    Attempted, DeliveryOutcome, NewDelivery, OutboxRow, RetryChange, RetryRow, RetryState,
    now_millis, partition_of,
};
use super::{PARTITIONS, host_row, partition_row};

/// Put dead rows back in the queue, due at `$1`, with a fresh retry horizon; revived, so that
/// their partition's owner claims them whatever their id. Callers add the rows (`AND ...`).
pub const REVIVE: &str =
    "UPDATE outbox SET state = 0, revived = true, next_at = $1, created_at = $1,
    finished_at = NULL WHERE state = 2";

pub const OUTBOX_COLUMNS: &str = "id, partition, kind, target, lane, webhook_id, request, state, attempts, created_at, next_at, last_error";

pub fn outbox_row(r: &tokio_postgres::Row) -> OutboxRow {
    OutboxRow {
        id: r.get(0),
        partition: r.get(1),
        kind: r.get(2),
        target: r.get(3),
        lane: r.get(4),
        webhook_id: r.get(5),
        request: r.get(6),
        state: if r.get::<_, i16>(7) == 2 {
            OutboxState::Dead
        } else {
            OutboxState::Pending
        },
        attempts: r.get(8),
        created_at: r.get(9),
        next_at: r.get(10),
        last_error: r.get(11),
    }
}

/// Queue deliveries in one statement; returns the stored rows, in order.
pub async fn insert_outbox(
    txn: &Transaction<'_>,
    deliveries: Vec<NewDelivery>,
) -> anyhow::Result<Vec<OutboxRow>> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_millis();
    let column = |f: fn(&NewDelivery) -> &str| deliveries.iter().map(f).collect::<Vec<_>>();
    let partitions: Vec<i32> = deliveries.iter().map(|d| d.partition).collect();
    let inbox_ids: Vec<i64> = deliveries.iter().map(|d| d.inbox_id).collect();
    let (kinds, targets, lanes) = (
        column(|d| &d.kind),
        column(|d| &d.target),
        column(|d| &d.lane),
    );
    let (webhook_ids, requests) = (column(|d| &d.webhook_id), column(|d| &d.request));
    let plugins = column(|d| &d.plugin);
    let stmt = txn
        .prepare_cached(
            "INSERT INTO outbox (partition, kind, target, lane, webhook_id, request, created_at, next_at,
                                 inbox_id, plugin)
             SELECT partition, kind, target, lane, webhook_id, request, $7, $7, inbox_id, plugin
             FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $8::bigint[], $9::text[])
                  WITH ORDINALITY AS t(partition, kind, target, lane, webhook_id, request, inbox_id,
                                       plugin, ord)
             ORDER BY ord
             RETURNING id",
        )
        .await?;
    let ids = txn
        .query(
            &stmt,
            &[
                &partitions,
                &kinds,
                &targets,
                &lanes,
                &webhook_ids,
                &requests,
                &now,
                &inbox_ids,
                &plugins,
            ],
        )
        .await?;
    anyhow::ensure!(
        ids.len() == deliveries.len(),
        "the outbox stored {} of {} deliveries",
        ids.len(),
        deliveries.len()
    );
    let mut ids: Vec<i64> = ids.iter().map(|r| r.get(0)).collect();
    // Ids are drawn from the sequence in insertion order.
    ids.sort_unstable();
    Ok(deliveries
        .into_iter()
        .zip(ids)
        .map(|(d, id)| d.stored(id, now))
        .collect())
}

/// Apply outcomes to the rows of partitions in `held`, each attempt appended to its row's
/// attempt log (a delivered row stays, as delivered: the history); returns how many were
/// dropped for belonging to other partitions.
pub async fn record_attempts(
    txn: &Transaction<'_>,
    held: &[i32],
    outcomes: Vec<(i64, DeliveryOutcome, Attempted)>,
) -> anyhow::Result<usize> {
    let now = now_millis();
    let total = outcomes.len();
    // Columns of the rows updated.
    let (mut ids, mut states, mut next_ats) = (vec![], vec![], vec![]);
    let (mut finished_ats, mut errors, mut lines) = (vec![], vec![], vec![]);
    for (id, outcome, attempted) in outcomes {
        let r = Recorded::of(&outcome, &attempted, now);
        ids.push(id);
        states.push(r.state);
        next_ats.push(r.next_at);
        finished_ats.push(r.finished_at);
        errors.push(r.error);
        lines.push(r.line);
    }
    let mut done = 0;
    if !ids.is_empty() {
        // Deliveries are counted per destination and minute for `destination_health`, in the
        // same statement: a few rows, which hosts recording at once update in one order (by
        // destination), so that they wait on each other briefly but never deadlock.
        let stmt = txn
            .prepare_cached(
                "WITH done AS (
                   UPDATE outbox o SET state = t.state, attempts = o.attempts + 1, next_at = t.next_at,
                        finished_at = t.finished_at, last_error = t.error, revived = false,
                        attempt_log = CASE WHEN length(o.attempt_log) > $8::bigint
                            THEN o.attempt_log ELSE COALESCE(o.attempt_log, '') || t.line END
                   FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bigint[], $5::text[],
                               $6::text[]) AS t(id, state, next_at, finished_at, error, line)
                   WHERE o.id = t.id AND o.partition = ANY($7)
                   RETURNING o.target, o.state),
                 counted AS (
                   INSERT INTO delivered_minute (target, minute, n)
                   SELECT target, $9, count(*) FROM done WHERE state = 1
                   GROUP BY target ORDER BY target
                   ON CONFLICT (target, minute) DO UPDATE SET n = delivered_minute.n + excluded.n)
                 SELECT count(*) FROM done",
            )
            .await?;
        let updated: i64 = txn
            .query_one(
                &stmt,
                &[
                    &ids,
                    &states,
                    &next_ats,
                    &finished_ats,
                    &errors,
                    &lines,
                    &held,
                    &LOG_KEPT,
                    &(now / MINUTE),
                ],
            )
            .await?
            .get(0);
        done += updated as u64;
    }
    Ok(total.saturating_sub(done as usize))
}

pub const RETRY_COLUMNS: &str = "inbox_id, received_at, dedup_key, notification, customer, attempts, next_at, parked, last_error";

/// The rows that may run: each customer's oldest waiting one.
const HEADS: &str = "FROM dispatch_retry r WHERE NOT parked AND partition = ANY($1) AND NOT EXISTS (
    SELECT 1 FROM dispatch_retry e WHERE e.customer = r.customer AND NOT e.parked AND e.inbox_id < r.inbox_id)";

pub fn retry_row(r: &tokio_postgres::Row) -> anyhow::Result<RetryRow> {
    Ok(RetryRow {
        inbox_id: r.get(0),
        received_at: r.get(1),
        dedup_key: r.get(2),
        notification: decode(r.get(3)).map_err(|e| anyhow::anyhow!(e))?,
        customer: r.get(4),
        attempts: r.get(5),
        next_at: r.get(6),
        parked: r.get(7),
        last_error: r.get(8),
    })
}

pub async fn apply_retries(txn: &Transaction<'_>, changes: &[RetryChange]) -> anyhow::Result<()> {
    for change in changes {
        match change {
            RetryChange::Put(r) => {
                let stmt = txn
                    .prepare_cached(&format!(
                        "INSERT INTO dispatch_retry ({RETRY_COLUMNS}, partition)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (inbox_id) DO UPDATE SET attempts = excluded.attempts,
                            next_at = excluded.next_at, parked = excluded.parked,
                            last_error = excluded.last_error"
                    ))
                    .await?;
                txn.execute(
                    &stmt,
                    &[
                        &r.inbox_id,
                        &r.received_at,
                        &r.dedup_key,
                        &encode(&r.notification),
                        &r.customer,
                        &r.attempts,
                        &r.next_at,
                        &r.parked,
                        &r.last_error,
                        &partition_of(&r.notification, PARTITIONS),
                    ],
                )
                .await?;
            }
            RetryChange::Done(id) => {
                let stmt = txn
                    .prepare_cached("DELETE FROM dispatch_retry WHERE inbox_id = $1")
                    .await?;
                txn.execute(&stmt, &[id]).await?;
            }
        }
    }
    Ok(())
}

pub async fn retry_state(
    client: &impl GenericClient,
    partitions: &[i32],
) -> anyhow::Result<RetryState> {
    let mut state = RetryState::default();
    let rows = client
        .query(
            "SELECT customer, parked FROM dispatch_retry WHERE partition = ANY($1)",
            &[&partitions],
        )
        .await?;
    for r in rows {
        if r.get::<_, bool>(1) {
            state.parked += 1;
        } else {
            state.waiting += 1;
            state.customers.insert(r.get(0));
        }
    }
    if state.waiting > 0 {
        state.next_at = client
            .query_one(&format!("SELECT min(next_at) {HEADS}"), &[&partitions])
            .await?
            .get(0);
    }
    Ok(state)
}

pub async fn due_retries(
    client: &impl GenericClient,
    partitions: &[i32],
    now: i64,
    limit: usize,
) -> anyhow::Result<Vec<RetryRow>> {
    let rows = client
        .query(
            &format!("SELECT {RETRY_COLUMNS} {HEADS} AND next_at <= $2 ORDER BY inbox_id LIMIT $3"),
            &[&partitions, &now, &(limit as i64)],
        )
        .await?;
    rows.iter().map(retry_row).collect()
}

/// The hosts and partitions, with what waits in each partition.
pub async fn cluster(client: &impl GenericClient) -> anyhow::Result<Cluster> {
    let now = now_millis();
    let partitions: Vec<_> = client
        .query(
            "SELECT p.partition, p.owner, p.fence,
                    CASE WHEN p.owner IS NULL THEN NULL
                         ELSE extract(epoch FROM p.expires_at - now())::float8 END,
                    coalesce(i.n, 0), i.oldest, coalesce(o.n, 0), o.oldest
             FROM partitions p
             LEFT JOIN (SELECT partition, count(*) AS n, min(received_at) AS oldest
                        FROM inbox WHERE NOT handled GROUP BY partition) i USING (partition)
             LEFT JOIN (SELECT partition, count(*) AS n, min(created_at) AS oldest
                        FROM outbox WHERE state = 0 GROUP BY partition) o USING (partition)
             ORDER BY p.partition",
            &[],
        )
        .await?
        .iter()
        .map(|r| partition_row(r, now))
        .collect();
    let hosts = client
        .query(
            "SELECT h.id, (extract(epoch FROM h.started_at) * 1000)::bigint,
                    extract(epoch FROM now() - h.last_seen)::float8,
                    h.last_seen + make_interval(secs => h.ttl) > now()
             FROM hosts h ORDER BY h.id",
            &[],
        )
        .await?
        .iter()
        .map(|r| host_row(r, &partitions))
        .collect();
    Ok(Cluster { hosts, partitions })
}
