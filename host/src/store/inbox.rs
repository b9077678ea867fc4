use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

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

/// Notifications committed to the inbox, handed from the writer to the dispatcher's next claim
/// in commit order, so that dispatch need not read back what ingress just wrote. When the
/// dispatcher falls behind, the hand-over stops (`spilled`) and claims read the table instead.
pub struct Handoff {
    queue: Mutex<VecDeque<InboxItem>>,
    spilled: AtomicBool,
    /// The highest id claimed so far: claims after a spill skip what was handed over.
    claimed: AtomicI64,
    /// When claims last read the table (Unix ms).
    table_read: AtomicI64,
}

/// How often an idle dispatcher's claims read the table rather than trust the hand-over.
const IDLE_LOOK_MS: i64 = 500;

/// Notifications handed over in memory at most; past that they wait in the database only.
const HANDOFF_CAPACITY: usize = 1024;

impl Default for Handoff {
    fn default() -> Handoff {
        Handoff {
            queue: Mutex::new(VecDeque::new()),
            // Start from the database: what was stored before a restart waits there.
            spilled: AtomicBool::new(true),
            claimed: AtomicI64::new(-1),
            table_read: AtomicI64::new(0),
        }
    }
}

impl Handoff {
    fn hand_over(&self, items: Vec<InboxItem>) {
        // The writer never waits for the queue: the dispatcher, which runs at idle priority,
        // may have been preempted holding it.
        let handed = !self.spilled.load(Ordering::SeqCst)
            && match self.queue.try_lock() {
                Ok(mut queue) if queue.len() + items.len() <= HANDOFF_CAPACITY => {
                    queue.extend(items);
                    true
                }
                _ => false,
            };
        if !handed {
            self.spilled.store(true, Ordering::SeqCst);
        }
    }
}

impl Sqlite {
    /// Store notifications durably, skipping those seen before, and hand the fresh ones to
    /// the next claim. Returns how many were fresh.
    pub(super) async fn ingest(&self, items: Vec<NewInboxItem>) -> anyhow::Result<usize> {
        let seen = self.seen.clone();
        let handoff = self.handoff.clone();
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
                        handoff.hand_over(fresh);
                    }
                    count
                },
            )
            .await
    }

    /// The next notifications to dispatch, at most `limit`: those handed over by ingest, or
    /// after a spill (and at start) those after the last claimed, read from the table.
    pub(super) fn claim_notifications(&self, limit: usize) -> anyhow::Result<Vec<InboxItem>> {
        let h = &self.handoff;
        let mut claimed = h.claimed.load(Ordering::SeqCst);
        if claimed < 0 {
            claimed = self.work.read(read_cursor)?;
        }
        // The flag first: what is in the queue was committed before it is taken, so before
        // the table is read.
        let mut spilled = h.spilled.swap(false, Ordering::SeqCst);
        let handed = std::mem::take(&mut *h.queue.lock().unwrap_or_else(|e| e.into_inner()));
        // Idle: look at the table now and then, in case anything was missed.
        let now = now_millis();
        if handed.is_empty() && now - h.table_read.load(Ordering::Relaxed) >= IDLE_LOOK_MS {
            spilled = true;
        }
        if spilled {
            h.table_read.store(now, Ordering::Relaxed);
        }
        // After a spill everything handed over is in the table too, in order with what was
        // not; items read there and handed over as well are skipped by `claimed`.
        let items: Vec<InboxItem> = if spilled {
            match self.pending_inbox(claimed, limit) {
                Ok(items) => {
                    if items.len() == limit {
                        h.spilled.store(true, Ordering::SeqCst);
                    }
                    items
                }
                Err(e) => {
                    h.spilled.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        } else {
            let mut items: Vec<InboxItem> = handed.into_iter().filter(|i| i.id > claimed).collect();
            if items.len() > limit {
                // The rest is read from the table at the next claim.
                items.truncate(limit);
                h.spilled.store(true, Ordering::SeqCst);
            }
            items
        };
        if let Some(last) = items.last() {
            h.claimed.store(last.id, Ordering::SeqCst);
        }
        Ok(items)
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

    fn items(ids: std::ops::Range<i64>) -> Vec<InboxItem> {
        let json = r#"{"from":"1","id":"a","timestamp":"1","type":"text","text":{"body":"hi"}}"#;
        let notification = Notification::from_item(Kind::Message, json, None, "test").unwrap();
        ids.map(|id| InboxItem {
            id,
            received_at: 0,
            dedup_key: format!("m:{id}"),
            notification: notification.clone(),
        })
        .collect()
    }

    #[test]
    fn the_inbox_writer_never_waits_for_the_dispatcher() {
        let handoff = std::sync::Arc::new(Handoff::default());
        handoff.spilled.store(false, Ordering::SeqCst);
        handoff.hand_over(items(1..3));
        assert_eq!(handoff.queue.lock().unwrap().len(), 2);

        // The dispatcher holds the queue (preempted, say): the hand-over goes on without it and
        // sends the next claim to the table.
        let held = handoff.queue.lock().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = handoff.clone();
        std::thread::spawn(move || {
            writer.hand_over(items(3..4));
            let _ = done_tx.send(());
        });
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .is_ok(),
            "the hand-over waited for the lock"
        );
        assert_eq!(held.len(), 2, "the item went to the table only");
        assert!(handoff.spilled.load(Ordering::SeqCst));
    }

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
