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
}

/// How a [`Db`] runs.
pub struct Options {
    /// The writer thread's name.
    pub name: &'static str,
    /// The writer runs at background priority.
    pub background: bool,
    /// Page cache of each connection, in KB.
    pub cache_kb: i64,
}

impl Db {
    /// Open the file at `path` (created on first use), set up with `prepare`.
    pub fn open(
        path: &Path,
        options: Options,
        prepare: impl FnOnce(&Connection) -> anyhow::Result<()>,
    ) -> anyhow::Result<Db> {
        let conn = open_connection(path, options.cache_kb)?;
        prepare(&conn).with_context(|| format!("cannot set up the database {}", path.display()))?;
        Ok(Db {
            writer: Writer::start(conn, options.name, options.background)?,
            readers: Pool {
                idle: Arc::new(Mutex::new(Vec::new())),
                path: path.into(),
                cache_kb: options.cache_kb,
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

/// Read connections to one file, kept for reuse; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    idle: Arc<Mutex<Vec<Connection>>>,
    path: Arc<Path>,
    cache_kb: i64,
}

impl Pool {
    /// An idle connection (give it back when done), or a new one.
    pub fn take(&self) -> anyhow::Result<Connection> {
        match self.idle.lock().ok().and_then(|mut r| r.pop()) {
            Some(c) => Ok(c),
            None => open_connection(&self.path, self.cache_kb),
        }
    }

    /// Keep a connection for the next reader.
    pub fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

pub fn open_connection(path: &Path, cache_kb: i64) -> anyhow::Result<Connection> {
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
