//! The operator console's history on PostgreSQL: the reads and changes of SQLite's
//! `store/history.rs` (whose types and helpers it shares), in PostgreSQL's SQL. Every read is
//! bounded: a window of ids, a `LIMIT`.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::super::history::{
    AuditRow, DELIVERY_COLUMNS, DeadFilter, DeliveryQuery, DeliveryRecord, DestinationHealth,
    INBOX_IDS, MAX_PAGE, MINUTE, NotificationQuery, NotificationSummary, Page, PruneCursor,
    RetryReport, Search, attach_sends, delivery_record, health, page_limit, state_code,
};
use super::super::now_millis;
use super::rows::REVIVE;
use super::sends;

fn delivery_row(r: &tokio_postgres::Row) -> anyhow::Result<DeliveryRecord> {
    Ok(delivery_record(|i| r.try_get(i), |i| r.try_get(i))?)
}

pub async fn search(
    client: &impl GenericClient,
    q: &NotificationQuery,
) -> anyhow::Result<Page<NotificationSummary>> {
    let search = Search::new(q);
    let ids = client.query_one(INBOX_IDS, &[]).await?;
    let (top, floor) = search.window(ids.get(1));
    // ILIKE: the text is sought whatever its case, as SQLite's LIKE does (for ASCII).
    let stmt = client
        .prepare_cached(
            "SELECT id, received_at, dedup_key, notification FROM inbox
             WHERE id < $1 AND id >= $2 AND received_at >= $3 AND received_at < $4
               AND ($5::text IS NULL OR notification ILIKE $5 ESCAPE '\\')
               AND ($7::text IS NULL OR notification LIKE $7 ESCAPE '\\')
             ORDER BY id DESC LIMIT $6",
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &top,
                &floor,
                &q.from.unwrap_or(0),
                &q.to.unwrap_or(i64::MAX),
                &search.needle,
                &(search.fetch as i64),
                &search.head,
            ],
        )
        .await?;
    let rows = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    Ok(search.page(rows, floor, ids.get(0)))
}

pub async fn deliveries_of(
    client: &impl GenericClient,
    inbox_id: i64,
) -> anyhow::Result<Vec<DeliveryRecord>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE inbox_id = $1 ORDER BY id LIMIT {MAX_PAGE}"
    );
    let rows = client.query(&sql, &[&inbox_id]).await?;
    let mut deliveries = rows
        .iter()
        .map(delivery_row)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
    attach_sends(&mut deliveries, &sends::by_deliveries(client, &ids).await?);
    Ok(deliveries)
}

pub async fn find_deliveries(
    client: &impl GenericClient,
    q: &DeliveryQuery,
) -> anyhow::Result<Page<DeliveryRecord>> {
    let limit = page_limit(q.limit);
    // The state is written into the statement (a number), so that the planner can use the
    // partial index of the pending or the dead rows.
    let state = match q.state.as_deref().map(state_code).transpose()? {
        Some(code) => format!("AND state = {code}"),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox
         WHERE id < $1 {state} AND ($2::text IS NULL OR target = $2) AND ($3::text IS NULL OR kind = $3)
         ORDER BY id DESC LIMIT $4"
    );
    let rows = client
        .query(
            &sql,
            &[
                &q.before.unwrap_or(i64::MAX),
                &q.destination,
                &q.kind,
                &(limit as i64),
            ],
        )
        .await?;
    let items = rows
        .iter()
        .map(delivery_row)
        .collect::<anyhow::Result<_>>()?;
    Ok(Page::of_deliveries(items, limit))
}

/// How many dead letters match `filter`, and the ids of the oldest `limit` (locked until the
/// transaction ends with `lock`).
pub async fn dead_matching(
    client: &impl GenericClient,
    filter: &DeadFilter,
    limit: usize,
    lock: bool,
) -> anyhow::Result<(usize, Vec<i64>)> {
    const WHERE: &str = "state = 2 AND ($1::text IS NULL OR target = $1)
        AND ($2::text IS NULL OR kind = $2)
        AND ($3::bigint IS NULL OR finished_at >= $3) AND ($4::bigint IS NULL OR finished_at < $4)
        AND ($5::text IS NULL OR last_error ILIKE $5 ESCAPE '\\')";
    let error = filter.error_pattern();
    let args: [&(dyn ToSql + Sync); 5] = [
        &filter.destination,
        &filter.kind,
        &filter.from,
        &filter.to,
        &error,
    ];
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM outbox WHERE {WHERE}"), &args)
        .await?
        .get(0);
    let lock = if lock { "FOR UPDATE" } else { "" };
    let ids = client
        .query(
            &format!("SELECT id FROM outbox WHERE {WHERE} ORDER BY id LIMIT {limit} {lock}"),
            &args,
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((count as usize, ids))
}

/// Put the dead letters matching `filter` back in the queue (each stays in its partition,
/// revived: its owner claims it whatever its id), and record who did it, in one transaction.
pub async fn retry_dead_matching(
    client: &mut deadpool_postgres::Client,
    filter: &DeadFilter,
    limit: usize,
    who: &str,
) -> anyhow::Result<RetryReport> {
    let txn = client.transaction().await?;
    let (matched, ids) = dead_matching(&txn, filter, limit, true).await?;
    let now = now_millis();
    txn.execute(&format!("{REVIVE} AND id = ANY($2)"), &[&now, &ids])
        .await?;
    let detail = serde_json::to_string(filter).unwrap_or_default();
    txn.execute(
        "INSERT INTO admin_audit (at, who, action, detail, count)
         VALUES ($1, $2, 'retry-dead', $3, $4)",
        &[&now, &who, &detail, &(ids.len() as i64)],
    )
    .await?;
    txn.commit().await?;
    Ok(RetryReport {
        matched,
        retried: ids.len(),
        ids,
    })
}

pub async fn audit_log(client: &impl GenericClient, limit: usize) -> anyhow::Result<Vec<AuditRow>> {
    let rows = client
        .query(
            "SELECT id, at, who, action, detail, count FROM admin_audit ORDER BY id DESC LIMIT $1",
            &[&(limit.min(MAX_PAGE) as i64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditRow {
            id: r.get(0),
            at: r.get(1),
            who: r.get(2),
            action: r.get(3),
            detail: r.get(4),
            count: r.get(5),
        })
        .collect())
}

/// Deliveries are counted by the minute: those of the minute `since` falls in all count.
pub async fn destination_health(
    client: &impl GenericClient,
    since: i64,
) -> anyhow::Result<Vec<DestinationHealth>> {
    let rows = client
        .query(
            "SELECT target, 1::bigint, sum(n)::bigint, NULL::bigint FROM delivered_minute
                WHERE minute >= $2 GROUP BY target
             UNION ALL SELECT target, 2, count(*), NULL FROM outbox
                WHERE state = 2 AND finished_at >= $1 GROUP BY target
             UNION ALL SELECT target, 3, count(*), NULL FROM outbox
                WHERE state = 0 AND attempts > 0 GROUP BY target
             UNION ALL SELECT target, 0, count(*), min(created_at) FROM outbox
                WHERE state = 0 GROUP BY target",
            &[&since, &(since / MINUTE)],
        )
        .await?;
    Ok(health(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
    ))
}

pub async fn history_since(client: &impl GenericClient) -> anyhow::Result<Option<i64>> {
    let row = client
        .query_opt("SELECT received_at FROM inbox ORDER BY id LIMIT 1", &[])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Delivered rows and console records finished before `before`, at most `limit` of each, each
/// statement its own transaction. Delivered rows are found by id, as they are not indexed:
/// those finished before `before` have ids up to the highest that existed at `before`, which
/// the latest mark taken by then gives (a mark is taken here, at most every half minute), from
/// where `cursor` says.
pub async fn prune(
    client: &impl GenericClient,
    before: i64,
    limit: usize,
    cursor: &PruneCursor,
) -> anyhow::Result<usize> {
    let now = now_millis();
    let max_id: i64 = client
        .query_one("SELECT COALESCE(max(id), 0) FROM outbox", &[])
        .await?
        .get(0);
    client
        .execute(
            "INSERT INTO outbox_mark (at, max_id) SELECT $1::bigint, $2::bigint
             WHERE NOT EXISTS (SELECT 1 FROM outbox_mark WHERE at > $1::bigint - $3::bigint)
             ON CONFLICT DO NOTHING",
            &[&now, &max_id, &(MINUTE / 2)],
        )
        .await?;
    let upto: i64 = if before >= now {
        max_id
    } else {
        client
            .query_one(
                "SELECT COALESCE((SELECT max_id FROM outbox_mark WHERE at <= $1
                                  ORDER BY at DESC LIMIT 1), 0)",
                &[&before],
            )
            .await?
            .get(0)
    };
    let deleted: Vec<i64> = client
        .query(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
               WHERE id > $4 AND id <= $3 AND state = 1 AND finished_at < $1
               ORDER BY id LIMIT $2)
             RETURNING id",
            &[&before, &(limit as i64), &upto, &cursor.start()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    cursor.deleted(&deleted, limit);
    let limit = limit as i64;
    let audit = client
        .execute(
            "DELETE FROM admin_audit WHERE id IN (
                SELECT id FROM admin_audit WHERE at < $1 LIMIT $2)",
            &[&before, &limit],
        )
        .await?;
    // Both small: a row per minute (and destination).
    client
        .execute(
            "DELETE FROM delivered_minute WHERE minute < $1",
            &[&(before / MINUTE)],
        )
        .await?;
    client
        .execute(
            "DELETE FROM outbox_mark
             WHERE at < (SELECT max(at) FROM outbox_mark WHERE at <= $1)",
            &[&before],
        )
        .await?;
    Ok(deleted.len() + audit as usize)
}
