//! Typed sends after delivery: the WhatsApp message id each one got, what sent it (plugin,
//! notification, delivery), and the last status WhatsApp reported for it, so a status
//! notification can say which send it belongs to and operators can see how each send fared.

use rusqlite::{Transaction, params};

use super::{Sqlite, Sync, now_millis};

/// How long a send's record is kept: statuses come within days (read receipts can be late).
pub const KEEP_SENT_MS: i64 = 30 * 24 * 3600 * 1000;

/// A delivered send.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// The id WhatsApp gave the message (`messages[0].id` of the response).
    pub wa_id: String,
    pub delivery_id: i64,
    pub plugin: String,
    /// The id of the notification the plugin handled when it sent.
    pub notification_id: String,
    pub recipient: String,
    /// The message's `type`.
    pub kind: String,
    /// When it was delivered to the API (Unix ms).
    pub sent_at: i64,
    /// The last status reported (`sent`, `delivered`, `read`, `failed`), if any yet.
    pub status: Option<String>,
    /// For `failed`: WhatsApp's error code and title.
    pub error: Option<String>,
    pub status_at: Option<i64>,
}

/// A status WhatsApp reported for a message id.
#[derive(Debug, Clone, PartialEq)]
pub struct SendStatus {
    pub wa_id: String,
    pub status: String,
    pub error: Option<String>,
    /// When it was received (Unix ms).
    pub at: i64,
}

const COLUMNS: &str = "wa_id, delivery_id, plugin, notification_id, recipient, kind, sent_at, status, error, status_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SentMessage> {
    Ok(SentMessage {
        wa_id: r.get(0)?,
        delivery_id: r.get(1)?,
        plugin: r.get(2)?,
        notification_id: r.get(3)?,
        recipient: r.get(4)?,
        kind: r.get(5)?,
        sent_at: r.get(6)?,
        status: r.get(7)?,
        error: r.get(8)?,
        status_at: r.get(9)?,
    })
}

fn insert(txn: &Transaction<'_>, sent: &[SentMessage]) -> rusqlite::Result<()> {
    let mut stmt = txn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO sent_message ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?;
    for s in sent {
        stmt.execute(params![
            s.wa_id,
            s.delivery_id,
            s.plugin,
            s.notification_id,
            s.recipient,
            s.kind,
            s.sent_at,
            s.status,
            s.error,
            s.status_at
        ])?;
    }
    txn.prepare_cached("DELETE FROM sent_message WHERE sent_at < ?1")?
        .execute([now_millis() - KEEP_SENT_MS])?;
    Ok(())
}

/// Statuses of one message may come out of order (a `read` before its `delivered`): a status
/// never goes back to an earlier stage, and `failed` stays.
fn update(txn: &Transaction<'_>, statuses: &[SendStatus]) -> rusqlite::Result<()> {
    let mut stmt = txn.prepare_cached(
        "UPDATE sent_message SET status = ?2, error = ?3, status_at = ?4 WHERE wa_id = ?1
         AND COALESCE(status, '') != 'failed'
         AND (CASE COALESCE(status, '') WHEN 'read' THEN 3 WHEN 'delivered' THEN 2 WHEN 'sent' THEN 1 ELSE 0 END)
           <= (CASE ?2 WHEN 'read' THEN 3 WHEN 'delivered' THEN 2 WHEN 'sent' THEN 1 WHEN 'failed' THEN 4 ELSE 0 END)",
    )?;
    for s in statuses {
        stmt.execute(params![s.wa_id, s.status, s.error, s.at])?;
    }
    Ok(())
}

impl Sqlite {
    pub(super) async fn record_sent(
        &self,
        sent: Vec<SentMessage>,
        statuses: Vec<SendStatus>,
    ) -> anyhow::Result<()> {
        self.work
            .writer
            .write(
                Sync::Lazy,
                move |txn| {
                    insert(txn, &sent)?;
                    update(txn, &statuses)
                },
                |()| (),
            )
            .await
    }

    pub(super) fn sent_message(&self, wa_id: &str) -> anyhow::Result<Option<SentMessage>> {
        self.work.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sent_message WHERE wa_id = ?1"
            ))?;
            let mut rows = stmt.query_map([wa_id], row)?;
            rows.next().transpose()
        })
    }

    /// The sends recorded for the deliveries `ids` (at most [`super::history::MAX_PAGE`]).
    pub(super) fn sent_by_deliveries(&self, ids: &[i64]) -> anyhow::Result<Vec<SentMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        self.work.read(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM sent_message WHERE delivery_id IN ({marks})"
            ))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(ids), row)?;
            rows.collect()
        })
    }

    pub(super) fn list_sent(&self, limit: usize) -> anyhow::Result<Vec<SentMessage>> {
        self.work.read(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM sent_message ORDER BY sent_at DESC, delivery_id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit as i64], row)?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Storage;

    fn sent(wa_id: &str, delivery_id: i64) -> SentMessage {
        SentMessage {
            wa_id: wa_id.into(),
            delivery_id,
            plugin: "menu-bot".into(),
            notification_id: "wamid.IN".into(),
            recipient: "5511".into(),
            kind: "interactive".into(),
            sent_at: now_millis(),
            status: None,
            error: None,
            status_at: None,
        }
    }

    fn status(wa_id: &str, status: &str, error: Option<&str>) -> SendStatus {
        SendStatus {
            wa_id: wa_id.into(),
            status: status.into(),
            error: error.map(str::to_string),
            at: now_millis(),
        }
    }

    #[tokio::test]
    async fn a_send_keeps_its_latest_status_and_a_failure_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("s.db"), false).unwrap();
        store
            .record_sent(vec![sent("wamid.A", 1), sent("wamid.B", 2)], vec![])
            .await
            .unwrap();
        store
            .record_sent(
                vec![],
                vec![
                    status("wamid.A", "read", None),
                    status("wamid.A", "delivered", None),
                    status("wamid.B", "failed", Some("131026 Message undeliverable")),
                    status("wamid.B", "read", None),
                    status("wamid.unknown", "sent", None),
                ],
            )
            .await
            .unwrap();
        let a = Storage::sent_message(&store, "wamid.A").unwrap().unwrap();
        assert_eq!(
            a.status.as_deref(),
            Some("read"),
            "read is not undone by a late delivered"
        );
        let b = Storage::sent_message(&store, "wamid.B").unwrap().unwrap();
        assert_eq!(b.status.as_deref(), Some("failed"));
        assert_eq!(b.error.as_deref(), Some("131026 Message undeliverable"));
        assert_eq!(
            Storage::sent_message(&store, "wamid.unknown").unwrap(),
            None
        );
        let listed = Storage::list_sent(&store, 10).unwrap();
        assert_eq!(listed.len(), 2);
    }
}
