use std::borrow::Cow;

use rusqlite::{OptionalExtension, params};
use serde_json::value::RawValue;
use switchboard_sdk::{Kind, Notification};

use super::{Sqlite, Sync, now_millis, seen};

/// A notification accepted by ingress, not yet stored.
pub struct NewInboxItem {
    /// Identity of the notification for deduplication (message id; status id and status; ...).
    pub dedup_key: String,
    /// The notification.
    pub notification: Notification,
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
        let items: Vec<(NewInboxItem, String)> = items
            .into_iter()
            .map(|i| {
                let json = encode(&i.notification);
                (i, json)
            })
            .collect();
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
                    for (item, json) in items {
                        if added.add(txn, &item.dedup_key, now)? {
                            insert.execute(params![now, item.dedup_key, json])?;
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
            .filter_map(|(id, received_at, dedup_key, json)| match decode(&json) {
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

/// A notification as the inbox keeps it: the item and its contact as received, and where they
/// came from. What the plugins read of them ([`Notification::from_item`]) is extracted again
/// when the row is read back; rows are half the size of the whole notification serialized.
#[derive(serde::Deserialize)]
struct Stored<'a> {
    kind: Kind,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(default)]
    phone_number_id: Option<String>,
    #[serde(borrow)]
    item: &'a RawValue,
    #[serde(borrow, default)]
    contact: Option<&'a RawValue>,
}

/// The stored form of `n` (see [`Stored`]). Its item and contact are JSON as received (ingress
/// took them from a parsed body), so they go in as they are.
pub fn encode(n: &Notification) -> String {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let contact = n.contact_json.as_deref();
    let mut out = String::with_capacity(n.item_json.len() + contact.map_or(0, str::len) + 80);
    out.push_str("{\"kind\":\"");
    out.push_str(n.kind.as_str());
    out.push_str("\",\"source\":");
    out.push_str(&quoted(&n.source));
    if let Some(p) = &n.phone_number_id {
        out.push_str(",\"phone_number_id\":");
        out.push_str(&quoted(p));
    }
    out.push_str(",\"item\":");
    out.push_str(&n.item_json);
    if let Some(c) = contact {
        out.push_str(",\"contact\":");
        out.push_str(c);
    }
    out.push('}');
    out
}

/// A notification from its stored form; rows stored before [`Stored`] hold the whole
/// notification.
pub fn decode(json: &str) -> Result<Notification, String> {
    match serde_json::from_str::<Stored>(json) {
        Ok(s) => {
            let mut n = Notification::from_item(
                s.kind,
                s.item.get(),
                s.contact.map(RawValue::get),
                &s.source,
            )?;
            n.phone_number_id = s.phone_number_id;
            Ok(n)
        }
        Err(e) => serde_json::from_str(json).map_err(|_| e.to_string()),
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

#[cfg(test)]
mod tests {
    use switchboard_sdk::split::{split_cloud, split_onprem};

    use super::*;

    #[test]
    fn the_stored_form_reads_back_as_the_same_notification() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
        let mut notifications = Vec::new();
        for (api, split) in [
            ("onprem", split_onprem as fn(&[u8], &str) -> _),
            ("cloud", split_cloud),
        ] {
            for entry in std::fs::read_dir(format!("{dir}/{api}")).unwrap() {
                let body = std::fs::read(entry.unwrap().path()).unwrap();
                notifications.extend(split(&body, "on \"prem\"").unwrap());
            }
        }
        let cloud = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[
            {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"P1"},
             "contacts":[{"profile":{"name":"Ana"},"wa_id":"1"}],
             "messages":[{"from":"1","id":"wamid.1","timestamp":"1","type":"text","text":{"body":"h\u00e9 \"x\""}}]}}]}]}"#;
        notifications.extend(split_cloud(cloud, "cloud").unwrap());
        assert!(notifications.len() >= 8, "{}", notifications.len());
        assert!(notifications.iter().any(|n| n.contact_json.is_some()));
        assert!(notifications.iter().any(|n| n.phone_number_id.is_some()));
        for n in notifications {
            let stored = encode(&n);
            assert!(stored.len() < serde_json::to_string(&n).unwrap().len());
            assert_eq!(decode(&stored).unwrap(), n);
            // Rows stored before this form hold the whole notification.
            assert_eq!(decode(&serde_json::to_string(&n).unwrap()).unwrap(), n);
        }
    }
}
