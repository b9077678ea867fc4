//! The plugins' key-value store as seen during dispatch.
//!
//! Writes of a call are kept in memory and become durable in the same transaction as the
//! actions of the notification, so a crash never leaves state that no action matches. Later
//! calls in the same dispatch batch read them from the overlay.

use std::collections::HashMap;

use super::manifest::Limits;
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
    /// What the database held for the keys read so far in this batch: a key is read once (a
    /// write first reads the old value, to count the plugin's usage).
    read: HashMap<(String, String), Entry>,
    writes: Vec<KvWrite>,
    reader: Option<Box<dyn KvReader>>,
    /// Each plugin's keys and bytes as the batch left them, read at its first write.
    usage: HashMap<String, (u64, u64)>,
}

impl KvOverlay {
    /// The value a plugin sees for `key`: the overlay first, then the database.
    pub fn get(&mut self, db: &Store, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let id = (plugin.to_string(), key.to_string());
        let entry = match self.values.get(&id).or_else(|| self.read.get(&id)) {
            Some(entry) => entry,
            None => {
                let value = self.reader(db)?.get(plugin, key)?;
                // The reader returns live values only: kept without an expiry, a value read
                // stays for the batch, which ends within the key's time to live or so.
                self.read.entry(id).or_insert(value.map(|v| (v, None)))
            }
        };
        Ok(match entry {
            Some((value, expires)) if expires.is_none_or(|e| e > now_millis()) => {
                Some(value.clone())
            }
            _ => None,
        })
    }

    fn reader(&mut self, db: &Store) -> anyhow::Result<&mut Box<dyn KvReader>> {
        if self.reader.is_none() {
            self.reader = Some(db.kv_reader()?);
        }
        self.reader
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no key-value reader"))
    }

    /// The keys and bytes `plugin` keeps, its committed state and this batch's writes.
    pub fn usage(&mut self, db: &Store, plugin: &str) -> anyhow::Result<(u64, u64)> {
        if let Some(u) = self.usage.get(plugin) {
            return Ok(*u);
        }
        let u = self.reader(db)?.usage(plugin)?;
        self.usage.insert(plugin.to_string(), u);
        Ok(u)
    }

    /// Add the change of a successful call to `plugin`'s usage.
    pub fn account(&mut self, plugin: &str, keys: i64, bytes: i64) {
        if let Some((k, b)) = self.usage.get_mut(plugin) {
            *k = k.saturating_add_signed(keys);
            *b = b.saturating_add_signed(bytes);
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
        self.read.clear();
        if let Some(reader) = self.reader.as_mut() {
            for (plugin, usage) in &self.usage {
                reader.note_usage(plugin, *usage);
            }
        }
        self.usage.clear();
        self.reader = None;
        std::mem::take(&mut self.writes)
    }
}

/// The key-value writes of one call, counted against the plugin's `[limits]`.
#[derive(Default)]
pub struct CallWrites {
    pub writes: Vec<KvWrite>,
    bytes: usize,
    /// The change to the plugin's number of keys and bytes.
    pub delta_keys: i64,
    pub delta_bytes: i64,
}

impl CallWrites {
    /// Admit one write of `size` bytes (key and value) that changes the plugin's keys by
    /// `keys` and its bytes by `bytes`, given its `usage` before the call; refused with the
    /// reason when over a limit.
    pub fn admit(
        &mut self,
        limits: &Limits,
        usage: (u64, u64),
        size: usize,
        keys: i64,
        bytes: i64,
    ) -> Result<(), String> {
        if self.writes.len() >= limits.kv_max_keys_per_call {
            return Err(format!(
                "more than {} key-value writes in one call ([limits] kv_max_keys_per_call)",
                limits.kv_max_keys_per_call
            ));
        }
        if self.bytes + size > limits.kv_max_bytes_per_call {
            return Err(format!(
                "more than {} bytes of key-value writes in one call ([limits] kv_max_bytes_per_call)",
                limits.kv_max_bytes_per_call
            ));
        }
        let total_keys = usage.0 as i64 + self.delta_keys + keys;
        if keys > 0 && total_keys > limits.kv_max_keys as i64 {
            return Err(format!(
                "the key-value store would hold more than {} keys ([limits] kv_max_keys)",
                limits.kv_max_keys
            ));
        }
        let total_bytes = usage.1 as i64 + self.delta_bytes + bytes;
        if bytes > 0 && total_bytes > limits.kv_max_bytes as i64 {
            return Err(format!(
                "the key-value store would hold more than {} bytes ([limits] kv_max_bytes)",
                limits.kv_max_bytes
            ));
        }
        self.bytes += size;
        self.delta_keys += keys;
        self.delta_bytes += bytes;
        Ok(())
    }

    /// Start a new call.
    pub fn clear(&mut self) {
        *self = CallWrites::default();
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        db.dispatched(&store::SOLE, vec![], vec![], writes, vec![])
            .await
            .unwrap();

        // A write committed while a batch reads is not seen by that batch...
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), None);
        db.dispatched(&store::SOLE, vec![], vec![], vec![set("k", b"2")], vec![])
            .await
            .unwrap();
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), None);
        // ...and is by the next one.
        overlay.take_writes();
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(overlay.get(&db, "p", "mine").unwrap(), Some(b"1".to_vec()));
        db.close().await;
    }

    /// A reader that counts its reads of `k`, which holds `v`.
    struct Counting(Arc<AtomicUsize>);

    impl KvReader for Counting {
        fn get(&mut self, _: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok((key == "k").then(|| b"v".to_vec()))
        }
        fn usage(&mut self, _: &str) -> anyhow::Result<(u64, u64)> {
            Ok((0, 0))
        }
        fn note_usage(&mut self, _: &str, _: (u64, u64)) {}
    }

    #[tokio::test]
    async fn a_batch_reads_each_key_from_the_database_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("db.sqlite")).unwrap();
        let reads = Arc::new(AtomicUsize::new(0));
        let mut overlay = KvOverlay {
            reader: Some(Box::new(Counting(reads.clone()))),
            ..Default::default()
        };
        for _ in 0..3 {
            assert_eq!(overlay.get(&db, "p", "k").unwrap(), Some(b"v".to_vec()));
            assert_eq!(overlay.get(&db, "p", "absent").unwrap(), None);
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "a value and an absence, each read once"
        );
        // A rollback drops writes, not what the database holds.
        let mark = overlay.mark();
        overlay.apply(vec![set("k", b"mine")]);
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), Some(b"mine".to_vec()));
        overlay.rollback(mark);
        assert_eq!(overlay.get(&db, "p", "k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
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

    #[tokio::test]
    async fn usage_counts_committed_keys_and_the_batch_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("db.sqlite")).unwrap();
        db.dispatched(
            &store::SOLE,
            vec![],
            vec![],
            vec![set("ab", b"123"), set("c", b"4")],
            vec![],
        )
        .await
        .unwrap();
        let mut overlay = KvOverlay::default();
        assert_eq!(overlay.usage(&db, "p").unwrap(), (2, 7));
        assert_eq!(overlay.usage(&db, "other").unwrap(), (0, 0));
        overlay.account("p", 1, 10);
        assert_eq!(overlay.usage(&db, "p").unwrap(), (3, 17));
        db.close().await;
    }

    #[test]
    fn a_call_is_held_to_its_limits() {
        let limits = Limits {
            kv_max_keys_per_call: 3,
            kv_max_bytes_per_call: 100,
            kv_max_keys: 10,
            kv_max_bytes: 1000,
            ..Limits::default()
        };
        let mut call = CallWrites::default();
        let admit = |call: &mut CallWrites, usage, size, keys, bytes| {
            let r = call.admit(&limits, usage, size, keys, bytes);
            if r.is_ok() {
                call.writes.push(set("k", b""));
            }
            r
        };
        assert!(admit(&mut call, (0, 0), 60, 1, 60).is_ok());
        let err = admit(&mut call, (0, 0), 41, 1, 41).unwrap_err();
        assert!(err.contains("kv_max_bytes_per_call"), "{err}");
        assert!(admit(&mut call, (0, 0), 10, 1, 10).is_ok());
        assert!(admit(&mut call, (0, 0), 10, 0, 0).is_ok());
        let err = admit(&mut call, (0, 0), 1, 0, 0).unwrap_err();
        assert!(err.contains("kv_max_keys_per_call"), "{err}");

        call.clear();
        let err = admit(&mut call, (10, 0), 1, 1, 1).unwrap_err();
        assert!(err.contains("kv_max_keys"), "{err}");
        assert!(
            admit(&mut call, (10, 0), 1, 0, 1).is_ok(),
            "overwriting a key adds none"
        );
        let err = admit(&mut call, (0, 995), 10, 1, 10).unwrap_err();
        assert!(err.contains("kv_max_bytes"), "{err}");
        assert!(
            admit(&mut call, (10, 995), 10, -1, -20).is_ok(),
            "a write that frees space is never refused for the totals"
        );
    }
}
