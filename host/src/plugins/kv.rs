//! The plugins' key-value store as seen during dispatch.
//!
//! Writes of a call are kept in memory and become durable in the same transaction as the
//! actions of the notification, so a crash never leaves state that no action matches. Later
//! calls in the same dispatch batch read them from the overlay.

use std::collections::HashMap;

use crate::store::{KvReader, KvWrite, Store, now_millis};

/// Largest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

type Entry = Option<(Vec<u8>, Option<i64>)>;

/// Key-value writes not yet committed, readable by later calls; under them, the database as of
/// the batch's first read.
#[derive(Default)]
pub struct KvOverlay {
    values: HashMap<(String, String), Entry>,
    writes: Vec<KvWrite>,
    reader: Option<Box<dyn KvReader>>,
}

impl KvOverlay {
    /// The value a plugin sees for `key`: the overlay first, then the database.
    pub fn get(&mut self, db: &Store, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.values.get(&(plugin.to_string(), key.to_string())) {
            Some(Some((value, expires))) if expires.is_none_or(|e| e > now_millis()) => {
                Ok(Some(value.clone()))
            }
            Some(_) => Ok(None),
            None => {
                let reader = match &mut self.reader {
                    Some(r) => r,
                    None => self.reader.insert(db.kv_reader()?),
                };
                reader.get(plugin, key)
            }
        }
    }

    /// Apply the writes of one successful call.
    pub fn apply(&mut self, writes: Vec<KvWrite>) {
        for w in writes {
            match &w {
                KvWrite::Set {
                    plugin,
                    key,
                    value,
                    expires_at,
                } => {
                    self.values.insert(
                        (plugin.clone(), key.clone()),
                        Some((value.clone(), *expires_at)),
                    );
                }
                KvWrite::Delete { plugin, key } => {
                    self.values.insert((plugin.clone(), key.clone()), None);
                }
            }
            self.writes.push(w);
        }
    }

    /// A point to [`KvOverlay::rollback`] to.
    pub fn mark(&self) -> usize {
        self.writes.len()
    }

    /// Drop the writes applied since `mark` (those of a notification that is not committed).
    pub fn rollback(&mut self, mark: usize) {
        if mark >= self.writes.len() {
            return;
        }
        let kept: Vec<KvWrite> = self.writes.drain(..mark).collect();
        self.writes.clear();
        self.values.clear();
        self.apply(kept);
    }

    /// The writes to commit; the overlay is empty afterwards, and its database snapshot ended
    /// (the next read sees what was committed since).
    pub fn take_writes(&mut self) -> Vec<KvWrite> {
        self.values.clear();
        self.reader = None;
        std::mem::take(&mut self.writes)
    }
}

/// The value of `key` among the uncommitted writes of the current call, if it was written.
pub fn lookup(writes: &[KvWrite], plugin: &str, key: &str) -> Option<Option<Vec<u8>>> {
    writes.iter().rev().find_map(|w| match w {
        KvWrite::Set {
            plugin: p,
            key: k,
            value,
            expires_at,
        } if p == plugin && k == key => {
            Some(Some(value.clone()).filter(|_| expires_at.is_none_or(|e| e > now_millis())))
        }
        KvWrite::Delete { plugin: p, key: k } if p == plugin && k == key => Some(None),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;

    fn set(key: &str, value: &[u8]) -> KvWrite {
        KvWrite::Set {
            plugin: "p".into(),
            key: key.into(),
            value: value.to_vec(),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn a_batch_reads_one_snapshot_and_the_next_batch_sees_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("db.sqlite")).unwrap();
        let mut overlay = KvOverlay::default();

        assert_eq!(overlay.get(&db, "p", "k").unwrap(), None);
        overlay.apply(vec![set("mine", b"1")]);
        assert_eq!(
            overlay.get(&db, "p", "mine").unwrap(),
            Some(b"1".to_vec()),
            "the batch's own writes are read back"
        );
        let writes = overlay.take_writes();
        db.dispatched(0, vec![], writes).await.unwrap();

        // A write committed while a batch reads is not seen by that batch...
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), None);
        db.dispatched(0, vec![], vec![set("k", b"2")])
            .await
            .unwrap();
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), None);
        // ...and is by the next one.
        overlay.take_writes();
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(overlay.get(&db, "p", "mine").unwrap(), Some(b"1".to_vec()));
        db.close().await;
    }

    #[tokio::test]
    async fn a_rollback_drops_the_writes_since_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("db.sqlite")).unwrap();
        let mut overlay = KvOverlay::default();
        overlay.apply(vec![set("a", b"1")]);
        let mark = overlay.mark();
        overlay.apply(vec![set("a", b"2"), set("b", b"3")]);
        overlay.rollback(mark);
        assert_eq!(overlay.get(&db, "p", "a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(overlay.get(&db, "p", "b").unwrap(), None);
        assert_eq!(overlay.take_writes(), vec![set("a", b"1")]);
        db.close().await;
    }
}
