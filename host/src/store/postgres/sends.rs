//! Typed sends after delivery on PostgreSQL (see `store/sends.rs` for what is kept and why).

use deadpool_postgres::GenericClient;

use super::super::now_millis;
use super::super::sends::{KEEP_SENT_MS, SendStatus, SentMessage};

pub const COLUMNS: &str = "wa_id, delivery_id, plugin, notification_id, recipient, kind, sent_at, status, error, status_at";

pub fn row(r: &tokio_postgres::Row) -> SentMessage {
    SentMessage {
        wa_id: r.get(0),
        delivery_id: r.get(1),
        plugin: r.get(2),
        notification_id: r.get(3),
        recipient: r.get(4),
        kind: r.get(5),
        sent_at: r.get(6),
        status: r.get(7),
        error: r.get(8),
        status_at: r.get(9),
    }
}

/// Record sends and apply statuses (a status never goes back to an earlier stage, and
/// `failed` stays), in one transaction.
pub async fn record(
    txn: &deadpool_postgres::Transaction<'_>,
    sent: &[SentMessage],
    statuses: &[SendStatus],
) -> anyhow::Result<()> {
    let insert = txn
        .prepare_cached(&format!(
            "INSERT INTO sent_message ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (wa_id) DO UPDATE SET delivery_id = excluded.delivery_id,
                plugin = excluded.plugin, notification_id = excluded.notification_id,
                recipient = excluded.recipient, kind = excluded.kind, sent_at = excluded.sent_at,
                status = excluded.status, error = excluded.error, status_at = excluded.status_at"
        ))
        .await?;
    for s in sent {
        txn.execute(
            &insert,
            &[
                &s.wa_id,
                &s.delivery_id,
                &s.plugin,
                &s.notification_id,
                &s.recipient,
                &s.kind,
                &s.sent_at,
                &s.status,
                &s.error,
                &s.status_at,
            ],
        )
        .await?;
    }
    if !sent.is_empty() {
        txn.execute(
            "DELETE FROM sent_message WHERE wa_id IN (
                SELECT wa_id FROM sent_message WHERE sent_at < $1 LIMIT 1000)",
            &[&(now_millis() - KEEP_SENT_MS)],
        )
        .await?;
    }
    let update = txn
        .prepare_cached(
            "UPDATE sent_message SET status = $2, error = $3, status_at = $4 WHERE wa_id = $1
             AND COALESCE(status, '') != 'failed'
             AND (CASE COALESCE(status, '') WHEN 'read' THEN 3 WHEN 'delivered' THEN 2 WHEN 'sent' THEN 1 ELSE 0 END)
               <= (CASE $2::text WHEN 'read' THEN 3 WHEN 'delivered' THEN 2 WHEN 'sent' THEN 1 WHEN 'failed' THEN 4 ELSE 0 END)",
        )
        .await?;
    for s in statuses {
        txn.execute(&update, &[&s.wa_id, &s.status, &s.error, &s.at])
            .await?;
    }
    Ok(())
}

pub async fn one(client: &impl GenericClient, wa_id: &str) -> anyhow::Result<Option<SentMessage>> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM sent_message WHERE wa_id = $1"),
            &[&wa_id],
        )
        .await?;
    Ok(rows.first().map(row))
}

/// The sends recorded for the deliveries `ids`.
pub async fn by_deliveries(
    client: &impl GenericClient,
    ids: &[i64],
) -> anyhow::Result<Vec<SentMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM sent_message WHERE delivery_id = ANY($1)"),
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}

pub async fn latest(client: &impl GenericClient, limit: usize) -> anyhow::Result<Vec<SentMessage>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM sent_message ORDER BY sent_at DESC, delivery_id DESC LIMIT $1"
            ),
            &[&(limit as i64)],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}
