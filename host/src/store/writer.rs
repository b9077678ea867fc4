use std::sync::mpsc;

use anyhow::{Context, anyhow};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// The most writes one transaction takes.
const MAX_BATCH: usize = 512;

type Job = Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> Box<dyn FnOnce(bool) + Send> + Send>;

enum Command {
    Job(Job),
    Close(oneshot::Sender<()>),
}

/// The single writer thread: it takes every job waiting, runs each in a savepoint of one
/// transaction, commits once, and only then answers the callers.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
}

impl Writer {
    pub fn start(conn: Connection) -> anyhow::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx))
            .context("cannot start the database writer thread")?;
        Ok(Writer { tx })
    }

    pub async fn write<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<anyhow::Result<T>>();
        let job: Job = Box::new(move |txn| {
            let result = run_in_savepoint(txn, f);
            Box::new(move |committed: bool| {
                let result = match result {
                    Ok(v) if committed => Ok(v),
                    Ok(_) => Err(anyhow!("the database transaction failed to commit")),
                    Err(e) => Err(anyhow::Error::new(e).context("database write failed")),
                };
                let _ = done_tx.send(result);
            })
        });
        self.tx
            .send(Command::Job(job))
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
    while closing.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut jobs = Vec::new();
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Job(job) => jobs.push(job),
                Command::Close(done) => closing = Some(done),
            }
            if jobs.len() < MAX_BATCH && closing.is_none() {
                next = rx.try_recv().ok();
            }
        }
        commit_batch(&mut conn, jobs);
    }
    // Close: the connection is dropped here, which checkpoints the WAL.
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn commit_batch(conn: &mut Connection, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let txn = match conn.transaction() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a database transaction");
            return; // dropping the jobs answers their callers with an error
        }
    };
    let finishers: Vec<_> = jobs.into_iter().map(|job| job(&txn)).collect();
    let committed = match txn.commit() {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "database commit failed");
            false
        }
    };
    for finish in finishers {
        finish(committed);
    }
}
