use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::Connection;

use super::writer::Writer;

/// One SQLite file: its writer thread and a pool of read connections (WAL mode lets reads run
/// beside the writer).
pub struct Db {
    /// Every write goes through it.
    pub writer: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    cache_kb: i64,
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
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.into(),
            cache_kb: options.cache_kb,
        })
    }

    /// Run `f` on a read connection (on the calling thread: call from blocking code or keep
    /// `f` short).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let conn = self.connection()?;
        let out = f(&conn).context("database read failed");
        self.give_back(conn);
        out
    }

    /// A read connection from the pool (give it back when done), or a new one.
    pub fn connection(&self) -> anyhow::Result<Connection> {
        match self.readers.lock().ok().and_then(|mut r| r.pop()) {
            Some(c) => Ok(c),
            None => open_connection(&self.path, self.cache_kb),
        }
    }

    /// Return a read connection to the pool.
    pub fn give_back(&self, conn: Connection) {
        if let Ok(mut r) = self.readers.lock() {
            r.push(conn);
        }
    }

    /// The pool, for readers that outlive a borrow of the `Db`.
    pub fn pool(&self) -> Arc<Mutex<Vec<Connection>>> {
        self.readers.clone()
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
