//! The plugins' key-value state on PostgreSQL.
//!
//! A dispatch batch reads keys on a connection of its own, outside any transaction: plugin
//! calls run between the reads, and a transaction open across them would hold back vacuum. A
//! customer's keys are written only by the host holding the customer's partition, so reads
//! see the last write of the keys a batch depends on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use deadpool_postgres::Transaction;
use tokio_postgres::{NoTls, Statement};

use super::super::kv::UsageCache;
use super::super::{KvWrite, now_millis};
use super::Tls;

const GET: &str = "SELECT value FROM kv WHERE plugin = $1 AND key = $2
                   AND (expires_at IS NULL OR expires_at > $3)";
const USAGE: &str =
    "SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0)::bigint
     FROM kv WHERE plugin = $1 AND (expires_at IS NULL OR expires_at > $2)";

/// A connection for key reads, driven by a single-threaded runtime of its own on the thread
/// that reads. A plugin call waits for each read; through the store's runtime, each read also
/// cost a task and two hand-offs between threads, more CPU than the query itself.
struct Session {
    runtime: Option<tokio::runtime::Runtime>,
    client: tokio_postgres::Client,
    get: Statement,
    usage: Statement,
}

impl Session {
    fn open(config: &tokio_postgres::Config, tls: &Tls) -> anyhow::Result<Session> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            match tls {
                Tls::None => connect(config, NoTls).await,
                Tls::Rustls(t) => connect(config, t.clone()).await,
            }
        })?;
        let (get, usage) = runtime.block_on(async {
            anyhow::Ok((client.prepare(GET).await?, client.prepare(USAGE).await?))
        })?;
        Ok(Session {
            runtime: Some(runtime),
            client,
            get,
            usage,
        })
    }

    fn query(
        &self,
        stmt: &Statement,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> anyhow::Result<Option<tokio_postgres::Row>> {
        let runtime = self
            .runtime
            .as_ref()
            .context("the key-value connection is closed")?;
        Ok(runtime.block_on(self.client.query_opt(stmt, params))?)
    }
}

/// A client on `config`, its connection driven by a task of the current runtime.
async fn connect<T>(
    config: &tokio_postgres::Config,
    tls: T,
) -> anyhow::Result<tokio_postgres::Client>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropped from async code (the store going away), a runtime must not wait.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The key-value connections of a store: opened when a reader needs one and none is idle, and
/// kept between batches, as many as read at once.
pub struct Sessions {
    config: tokio_postgres::Config,
    tls: Tls,
    idle: Mutex<Vec<Session>>,
    kept: usize,
}

impl Sessions {
    /// Keep at most `kept` idle (as many as dispatch groups read at once).
    pub fn new(config: tokio_postgres::Config, tls: Tls, kept: usize) -> Arc<Sessions> {
        Arc::new(Sessions {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            kept,
        })
    }

    fn take(&self) -> anyhow::Result<Session> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(session) if !session.client.is_closed() => Ok(session),
            _ => Session::open(&self.config, &self.tls)
                .context("cannot connect to PostgreSQL for key-value reads"),
        }
    }

    fn give_back(&self, session: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.kept {
            idle.push(session);
        }
    }
}

pub struct Reader {
    sessions: Arc<Sessions>,
    usage: UsageCache,
    /// The batch's connection, taken at its first read and given back when the batch ends (the
    /// reader is dropped).
    session: Option<Session>,
}

impl Reader {
    pub fn new(sessions: Arc<Sessions>, usage: UsageCache) -> Reader {
        Reader {
            sessions,
            usage,
            session: None,
        }
    }

    /// Run one query, on this thread, and wait for it (plugin calls block on reads).
    fn query(
        &mut self,
        stmt: impl Fn(&Session) -> &Statement,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> anyhow::Result<Option<tokio_postgres::Row>> {
        let session = match self.session.take() {
            Some(session) => session,
            None => self.sessions.take()?,
        };
        // A failed read drops its connection: the next read opens a sound one.
        let row = session.query(stmt(&session), params)?;
        self.session = Some(session);
        Ok(row)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.sessions.give_back(session);
        }
    }
}

impl super::super::KvReader for Reader {
    fn get(&mut self, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let row = self
            .query(|s| &s.get, &[&plugin, &key, &now_millis()])
            .context("key-value read failed")?;
        Ok(row.map(|r| r.get(0)))
    }

    fn usage(&mut self, plugin: &str) -> anyhow::Result<(u64, u64)> {
        if let Some(u) = self.usage.get(plugin) {
            return Ok(u);
        }
        let row = self
            .query(|s| &s.usage, &[&plugin, &now_millis()])
            .context("key-value usage read failed")?
            .context("no usage row")?;
        let counted = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
        self.usage.counted(plugin, counted);
        Ok(counted)
    }

    fn note_usage(&mut self, plugin: &str, usage: (u64, u64)) {
        self.usage.note(plugin, usage);
    }
}

/// Apply key-value writes inside a transaction: at most two statements for a whole batch (a
/// round trip per key cost more than the rest of a dispatch batch together). Only the last write
/// of each key counts; an upsert may not touch one row twice.
pub async fn apply(txn: &Transaction<'_>, writes: &[KvWrite]) -> anyhow::Result<()> {
    let mut last: HashMap<(&str, &str), &KvWrite> = HashMap::with_capacity(writes.len());
    for w in writes {
        let (KvWrite::Set { plugin, key, .. } | KvWrite::Delete { plugin, key }) = w;
        last.insert((plugin, key), w);
    }
    // Columns of the sets, and of the deletes.
    let (mut plugins, mut keys, mut values, mut expiries) = (vec![], vec![], vec![], vec![]);
    let (mut gone_plugins, mut gone_keys) = (vec![], vec![]);
    for w in last.into_values() {
        match w {
            KvWrite::Set {
                plugin,
                key,
                value,
                expires_at,
            } => {
                plugins.push(plugin.as_str());
                keys.push(key.as_str());
                values.push(value.as_slice());
                expiries.push(*expires_at);
            }
            KvWrite::Delete { plugin, key } => {
                gone_plugins.push(plugin.as_str());
                gone_keys.push(key.as_str());
            }
        }
    }
    if !plugins.is_empty() {
        let stmt = txn
            .prepare_cached(
                "INSERT INTO kv (plugin, key, value, expires_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[])
                 ON CONFLICT (plugin, key) DO UPDATE
                 SET value = excluded.value, expires_at = excluded.expires_at",
            )
            .await?;
        txn.execute(&stmt, &[&plugins, &keys, &values, &expiries])
            .await?;
    }
    if !gone_plugins.is_empty() {
        let stmt = txn
            .prepare_cached(
                "DELETE FROM kv USING unnest($1::text[], $2::text[]) AS d(plugin, key)
                 WHERE kv.plugin = d.plugin AND kv.key = d.key",
            )
            .await?;
        txn.execute(&stmt, &[&gone_plugins, &gone_keys]).await?;
    }
    Ok(())
}
