use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// The most writes one transaction takes.
const MAX_BATCH: usize = 512;

/// Answers the caller once the transaction is over (`true`: committed).
type Finish = Box<dyn FnOnce(bool) + Send>;
/// A write: runs in the transaction (in a savepoint of its own if told so) and says whether it
/// succeeded.
type Job = Box<dyn FnOnce(&rusqlite::Transaction<'_>, bool) -> (bool, Finish) + Send>;

/// After a write failed, how long every job runs in a savepoint of its own, so that one that
/// keeps failing fails alone instead of taking its batch with it.
const CAREFUL: Duration = Duration::from_secs(10);

/// How a write must survive.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// On disk before the caller hears back: survives a power cut (what was acknowledged to
    /// the sender).
    Durable,
    /// Survives a crash of the process; a power cut may lose it until the next durable commit.
    /// For writes whose loss only repeats work (at-least-once), never loses it.
    Lazy,
}

enum Command {
    Job(Job, Sync),
    Close(oneshot::Sender<()>),
}

/// The single writer thread of a database: it takes every job waiting, runs them in one
/// transaction, commits once (synced if any job is durable), and only then answers the callers.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
}

impl Writer {
    /// Start the thread `name`; with `background`, it runs only on CPU time left idle.
    pub fn start(conn: Connection, name: &str, background: bool) -> anyhow::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if background {
                    crate::priority::background();
                }
                run(conn, rx)
            })
            .context("cannot start the database writer thread")?;
        Ok(Writer { tx })
    }

    /// Run `f` in the next transaction; once it is committed, `then` gets its result on the
    /// writer thread, in commit order, and the caller what `then` returns.
    pub async fn write<T, R, F, G>(&self, sync: Sync, f: F, then: G) -> anyhow::Result<R>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
        G: FnOnce(T) -> R + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<anyhow::Result<R>>();
        let job: Job = Box::new(move |txn, isolated| {
            let result = if isolated {
                run_in_savepoint(txn, f)
            } else {
                f(txn)
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed: bool| {
                let result = match result {
                    Ok(v) if committed => Ok(then(v)),
                    Ok(_) => Err(anyhow!("the database transaction failed to commit")),
                    Err(e) => Err(anyhow::Error::new(e).context("database write failed")),
                };
                let _ = done_tx.send(result);
            });
            (ok, finish)
        });
        self.tx
            .send(Command::Job(job, sync))
            .map_err(|_| anyhow!("the database writer has stopped"))?;
        done_rx
            .await
            .map_err(|_| anyhow!("the database writer has stopped"))?
    }

    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn run_in_savepoint<T>(
    txn: &rusqlite::Transaction<'_>,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    txn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(txn) {
        Ok(v) => {
            txn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            txn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Command>) {
    let mut closing = None;
    let mut state = State {
        synced: Sync::Durable,
        careful_until: None,
    };
    while closing.is_none() {
        let Ok(first) = rx.recv() else { break };
        let (mut jobs, mut sync) = (Vec::new(), Sync::Lazy);
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Job(job, s) => {
                    jobs.push(job);
                    if s == Sync::Durable {
                        sync = Sync::Durable;
                    }
                }
                Command::Close(done) => closing = Some(done),
            }
            if jobs.len() < MAX_BATCH && closing.is_none() {
                next = rx.try_recv().ok();
            }
        }
        commit_batch(&mut conn, &mut state, sync, jobs);
    }
    // Close: the connection is dropped here, which checkpoints the WAL.
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// What the writer keeps between batches.
struct State {
    /// The connection's `synchronous` mode.
    synced: Sync,
    /// Until when jobs run in savepoints (after a failed write).
    careful_until: Option<Instant>,
}

/// Run `jobs` in one transaction committed with `sync`.
fn commit_batch(conn: &mut Connection, state: &mut State, sync: Sync, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    // In WAL mode FULL syncs the log at every commit, NORMAL only at checkpoints; a durable
    // commit also makes every lazy one before it durable.
    if sync != state.synced {
        let mode = match sync {
            Sync::Durable => "FULL",
            Sync::Lazy => "NORMAL",
        };
        match conn.pragma_update(None, "synchronous", mode) {
            Ok(()) => state.synced = sync,
            Err(e) => {
                tracing::error!(error = %e, "cannot set the database sync mode");
                if sync == Sync::Durable {
                    return; // dropping the jobs answers their callers with an error
                }
            }
        }
    }
    let txn = match conn.transaction() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a database transaction");
            return; // dropping the jobs answers their callers with an error
        }
    };
    // A savepoint per job costs a copy of every page it touches; jobs rarely fail, so they
    // run without one, and a failure (which may leave half a job behind) rolls back the batch.
    let isolated = state.careful_until.is_some_and(|t| Instant::now() < t);
    let mut failed = false;
    let finishers: Vec<Finish> = jobs
        .into_iter()
        .map(|job| {
            let (ok, finish) = job(&txn, isolated);
            failed |= !ok;
            finish
        })
        .collect();
    let committed = if failed && !isolated {
        tracing::warn!(
            "a database write failed; its whole batch is rolled back and retried by its senders"
        );
        state.careful_until = Some(Instant::now() + CAREFUL);
        let _ = txn.rollback();
        false
    } else {
        match txn.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "database commit failed");
                false
            }
        }
    };
    for finish in finishers {
        finish(committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(txn: &rusqlite::Transaction<'_>) -> rusqlite::Result<i64> {
        txn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_behind_and_the_next_ones_go_through() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("db")).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER UNIQUE)")
            .unwrap();
        let writer = Writer::start(conn, "test-writer", false).unwrap();
        let insert = |v: i64| {
            move |txn: &rusqlite::Transaction<'_>| txn.execute("INSERT INTO t VALUES (?1)", [v])
        };

        writer
            .write(Sync::Durable, insert(1), |_| ())
            .await
            .unwrap();
        // Half done, then a constraint violation: none of it may stay.
        let failed = writer
            .write(
                Sync::Lazy,
                |txn| {
                    txn.execute("INSERT INTO t VALUES (2)", [])?;
                    txn.execute("INSERT INTO t VALUES (1)", [])
                },
                |_| (),
            )
            .await;
        assert!(failed.is_err());
        // Next ones run in savepoints for a while; failing alone, and not otherwise.
        let after = writer.write(Sync::Durable, insert(3), |_| ()).await;
        assert!(after.is_ok());
        let again = writer.write(Sync::Lazy, insert(3), |_| ()).await;
        assert!(again.is_err());
        let n = writer.write(Sync::Lazy, count, |n| n).await.unwrap();
        assert_eq!(n, 2, "rows 1 and 3; the half-done write left nothing");
        writer.close().await;
    }
}
