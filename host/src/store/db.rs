use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::Connection;

use super::writer::Writer;

/// One SQLite file: its writer thread and a pool of read connections (WAL mode lets reads run
/// beside the writer).
pub struct Db {
    /// Every write goes through it.
    pub writer: Writer,
    /// Connections for reads.
    pub readers: Pool,
    /// The checkpoint thread, if any, runs while this lives.
    _alive: Arc<()>,
}

/// How a [`Db`] runs.
pub struct Options {
    /// The writer thread's name.
    pub name: &'static str,
    /// The writer runs at background priority.
    pub background: bool,
    /// Page cache of the writer's connection, in KB (readers have [`READER_CACHE_KB`]).
    pub cache_kb: i64,
    /// Copy the WAL into the database on a thread of its own, so the writer does not stop for
    /// it (it still does past [`WRITER_CHECKPOINT_PAGES`], if that thread falls behind).
    pub checkpoint_thread: bool,
}

/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
/// WAL pages past which a writer with a checkpoint thread checkpoints itself (SQLite's
/// default, for the others, is 1000).
const WRITER_CHECKPOINT_PAGES: i64 = 20_000;

impl Db {
    /// Open the file at `path` (created on first use), set up with `prepare`.
    pub fn open(
        path: &Path,
        options: Options,
        prepare: impl FnOnce(&Connection) -> anyhow::Result<()>,
    ) -> anyhow::Result<Db> {
        let conn = open_connection(path, options.cache_kb)?;
        prepare(&conn).with_context(|| format!("cannot set up the database {}", path.display()))?;
        let alive = Arc::new(());
        if options.checkpoint_thread {
            conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
            let (checkpointer, alive) = (open_connection(path, 500)?, Arc::downgrade(&alive));
            std::thread::Builder::new()
                .name("store-checkpoint".into())
                .spawn(move || {
                    while alive.upgrade().is_some() {
                        std::thread::sleep(CHECKPOINT_EVERY);
                        if let Err(e) = checkpointer.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
                        {
                            tracing::warn!(error = %e, "checkpoint failed");
                        }
                    }
                })
                .context("cannot start the checkpoint thread")?;
        }
        Ok(Db {
            _alive: alive,
            writer: Writer::start(conn, options.name, options.background)?,
            readers: Pool {
                idle: Arc::new(Mutex::new(Vec::new())),
                path: path.into(),
            },
        })
    }

    /// Run `f` on a read connection (on the calling thread: call from blocking code or keep
    /// `f` short).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let conn = self.readers.take()?;
        let out = f(&conn).context("database read failed");
        self.readers.give_back(conn);
        out
    }
}

/// Page cache of each read connection, in KB. SQLite as built here (rusqlite's bundled build,
/// with `SQLITE_ENABLE_MEMORY_MANAGEMENT`) keeps one cache for all the connections of the
/// process, as large as the sum of their sizes, and a connection at its own size takes the
/// least recently used pages of all: each reader's size adds to what the process holds.
/// Readers gain little from it (in WAL mode a connection drops its pages when the database
/// changed since its last read, which under load is at every read), but the writers need the
/// whole to keep theirs. With the writers' sizes for the readers (16.5 MB in all) the load
/// bench's SQLite server peaked about 10 MB higher than at this size (9.5 MB in all); at 256 KB
/// (7.25 MB in all) readers' scans took the writers' pages, and the work database's writer
/// used up to a third more CPU per webhook.
const READER_CACHE_KB: i64 = 1_000;

/// Read connections to one file, kept for reuse; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    idle: Arc<Mutex<Vec<Connection>>>,
    path: Arc<Path>,
}

impl Pool {
    /// An idle connection (give it back when done), or a new one.
    pub fn take(&self) -> anyhow::Result<Connection> {
        match self.idle.lock().ok().and_then(|mut r| r.pop()) {
            Some(c) => Ok(c),
            None => open_connection(&self.path, READER_CACHE_KB),
        }
    }

    /// Check that the file is still there and readable, on a new connection that does not
    /// create it: `sql` must run.
    pub fn probe(&self, sql: &str) -> anyhow::Result<()> {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)
            .with_context(|| format!("cannot open the database {}", self.path.display()))?;
        conn.query_row(sql, [], |_| Ok(()))
            .map(|_| ())
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                e => Err(e),
            })
            .with_context(|| format!("cannot read the database {}", self.path.display()))
    }

    /// Keep a connection for the next reader.
    pub fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

pub fn open_connection(path: &Path, cache_kb: i64) -> anyhow::Result<Connection> {
    static CONFIGURE: std::sync::Once = std::sync::Once::new();
    CONFIGURE.call_once(without_memory_statistics);
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a batch acknowledged to the Coreapp survives a power cut, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -cache_kb)?;
    Ok(conn)
}

/// SQLite counts its allocations under one process-wide mutex. The writers of dispatch and
/// delivery run at idle priority: one preempted while it holds that mutex would hold up the
/// inbox's writer, and every webhook with it, until the CPU is idle again.
fn without_memory_statistics() {
    // Safety: before any connection is opened (SQLite refuses it after, with no harm done).
    let rc = unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0) };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::debug!(rc, "SQLite kept its memory statistics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::Sync;

    #[tokio::test]
    async fn the_checkpoint_thread_copies_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let options = Options {
            name: "test-writer",
            background: false,
            cache_kb: 500,
            checkpoint_thread: true,
        };
        let db = Db::open(&path, options, |c| {
            Ok(c.execute_batch("CREATE TABLE t (v BLOB)")?)
        })
        .unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        for _ in 0..50 {
            db.writer
                .write(
                    Sync::Durable,
                    |txn| txn.execute("INSERT INTO t VALUES (zeroblob(4000))", []),
                    |_| (),
                )
                .await
                .unwrap();
        }
        // 50 pages and more, far below the writer's own checkpoint limit: only the thread
        // copies them into the database file.
        let copied = || std::fs::metadata(&path).unwrap().len() >= empty + 50 * 4096;
        for _ in 0..200 {
            if copied() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(copied(), "the WAL was not checkpointed");
        db.writer.close().await;
    }

    #[tokio::test]
    async fn a_scan_leaves_no_more_pages_cached_than_the_writers_cache_and_a_readers() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            name: "test-writer",
            background: false,
            cache_kb: 500,
            checkpoint_thread: false,
        };
        let db = Db::open(&dir.path().join("db"), options, |c| {
            Ok(c.execute_batch("CREATE TABLE t (v BLOB)")?)
        })
        .unwrap();
        // About 4 MB, eight times the writer's cache.
        let insert = |txn: &rusqlite::Transaction<'_>| {
            for _ in 0..1_000 {
                txn.execute("INSERT INTO t VALUES (zeroblob(4000))", [])?;
            }
            Ok(())
        };
        db.writer
            .write(Sync::Durable, insert, |()| ())
            .await
            .unwrap();
        let (rows, held) = db
            .read(|c| {
                let rows: i64 =
                    c.query_row("SELECT count(*) FROM t WHERE length(v) > 0", [], |r| {
                        r.get(0)
                    })?;
                // The pages of the scan stay in the connection's cache after it.
                let (mut held, mut highest) = (0, 0);
                // Safety: the handle of a live connection, for a status call that reads it.
                let rc = unsafe {
                    rusqlite::ffi::sqlite3_db_status(
                        c.handle(),
                        rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                        &mut held,
                        &mut highest,
                        0,
                    )
                };
                assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
                Ok((rows, held as i64))
            })
            .unwrap();
        assert_eq!(rows, 1_000);
        // The reader takes the writer's pages as it scans: it may hold the writer's cache and
        // its own, which is small.
        let bound = 2 << 20;
        assert!(
            held <= bound,
            "a reader kept {held} bytes of pages after a scan of 4 MB (at most {bound})"
        );
        db.writer.close().await;
    }
}
