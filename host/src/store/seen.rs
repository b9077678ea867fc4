//! The dedup keys accepted within the window. On disk they are a log in order of arrival
//! (`seen_log`), appended by each ingest and cut from its old end by pruning; in memory, a set
//! of their 64-bit digests, loaded from the log on first use.
//!
//! An index of the keys on disk would take one write at a random place per notification (its
//! keys are random), which is most of what a commit writes once the index outgrows a batch;
//! the log takes a few bytes at its end. The set costs 10 to 20 bytes per key in the window
//! (a server loading a million keys measured 20 MB more resident memory, and 0.3–0.4 s to
//! load them). A new key is taken for a seen one only if its digest equals
//! one of the n in the window: with a keyed 64-bit hash, a chance of about n / 2^64 (1 in
//! 10^12 for 10 million keys).

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use rusqlite::params;

/// The set of digests of the keys in the log.
pub struct Seen {
    digests: HashSet<u64, foldhash::fast::RandomState>,
    /// Keyed at random per process (SipHash): the digests are never stored.
    hasher: std::hash::RandomState,
}

/// [`Seen`] as the inbox shares it; `None` until first used (commands that never ingest do
/// not read the log).
pub type Shared = Arc<Mutex<Option<Seen>>>;

impl Seen {
    /// The set of every key in the log.
    pub fn load(conn: &rusqlite::Connection) -> rusqlite::Result<Seen> {
        let started = std::time::Instant::now();
        let mut seen = Seen {
            digests: HashSet::default(),
            hasher: std::hash::RandomState::new(),
        };
        let mut stmt = conn.prepare("SELECT key FROM seen_log")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let digest = seen.digest(row.get_ref(0)?.as_str()?);
            seen.digests.insert(digest);
        }
        tracing::info!(
            keys = seen.digests.len(),
            ms = started.elapsed().as_millis() as u64,
            "dedup keys loaded"
        );
        Ok(seen)
    }

    fn digest(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }
}

/// Run `f` on the set of `shared`, loaded through `conn` if it is not yet.
fn with_set<T>(
    shared: &Shared,
    conn: &rusqlite::Connection,
    f: impl FnOnce(&mut Seen) -> T,
) -> rusqlite::Result<T> {
    let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        *guard = Some(Seen::load(conn)?);
    }
    Ok(f(guard.as_mut().expect("loaded above")))
}

/// Run `f` on the set of `shared` if it is loaded (one not loaded yet reads the log as it
/// will be).
fn if_loaded(shared: &Shared, f: impl FnOnce(&mut Seen)) {
    if let Some(s) = shared.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        f(s);
    }
}

/// Make sure the set of `shared` is loaded (so that the first ingest does not wait for it).
pub fn load(shared: &Shared, conn: &rusqlite::Connection) -> rusqlite::Result<usize> {
    with_set(shared, conn, |s| s.digests.len())
}

/// Keys added to the set by a transaction not yet committed: dropped before [`Added::keep`]
/// (the transaction failed), they leave the set again, so a retry of the same notifications
/// is not taken for a duplicate.
pub struct Added {
    shared: Shared,
    digests: Vec<u64>,
}

impl Added {
    pub fn new(shared: &Shared) -> Added {
        Added {
            shared: shared.clone(),
            digests: Vec::new(),
        }
    }

    /// Record `key` as seen at `now` unless it was seen before; true if it is new.
    pub fn add(
        &mut self,
        txn: &rusqlite::Transaction<'_>,
        key: &str,
        now: i64,
    ) -> rusqlite::Result<bool> {
        let fresh = with_set(&self.shared, txn, |s| {
            let digest = s.digest(key);
            s.digests.insert(digest).then_some(digest)
        })?;
        let Some(digest) = fresh else {
            return Ok(false);
        };
        self.digests.push(digest);
        txn.prepare_cached("INSERT INTO seen_log (at, key) VALUES (?1, ?2)")?
            .execute(params![now, key])?;
        Ok(true)
    }

    /// The transaction committed: the keys stay.
    pub fn keep(mut self) {
        self.digests.clear();
    }
}

impl Drop for Added {
    fn drop(&mut self) {
        if self.digests.is_empty() {
            return;
        }
        if_loaded(&self.shared, |s| {
            for d in &self.digests {
                s.digests.remove(d);
            }
        });
    }
}

/// The most keys one prune cuts from the log.
const PRUNE_ROWS: i64 = 100_000;

/// Cut the keys seen before `before` from the log; returns their digests' removal from the
/// set, to run once the cut is committed (rolled back, the keys would stay in the log).
pub fn prune(
    txn: &rusqlite::Transaction<'_>,
    shared: &Shared,
    before: i64,
) -> rusqlite::Result<impl FnOnce() -> usize + Send + use<>> {
    // The log is in order of arrival: only the rows removed are visited. At most PRUNE_ROWS
    // at a time, so that a log left to grow (a server stopped for longer than the window)
    // does not come back as one huge list.
    let mut stmt = txn.prepare_cached(
        "DELETE FROM seen_log WHERE id < MIN(
             COALESCE((SELECT id FROM seen_log WHERE at >= ?1 ORDER BY id LIMIT 1), 1 << 62),
             (SELECT MIN(id) FROM seen_log) + ?2)
         RETURNING key",
    )?;
    let keys: Vec<String> = stmt
        .query_map(params![before, PRUNE_ROWS], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let shared = shared.clone();
    Ok(move || {
        if_loaded(&shared, |s| {
            for key in &keys {
                let digest = s.digest(key);
                s.digests.remove(&digest);
            }
        });
        keys.len()
    })
}
