//! The plugins' key-value state on PostgreSQL.
//!
//! A dispatch batch reads keys on one pooled connection, outside any transaction: plugin calls
//! run between the reads, and a transaction open across them would hold back vacuum. A
//! customer's keys are written only by the host holding the customer's partition, so reads
//! see the last write of the keys a batch depends on.

use anyhow::Context;
use deadpool_postgres::{Pool, Transaction};

use super::super::kv::UsageCache;
use super::super::{KvWrite, now_millis};

pub struct Reader {
    pool: Pool,
    handle: tokio::runtime::Handle,
    usage: UsageCache,
}

impl Reader {
    pub fn new(pool: Pool, handle: tokio::runtime::Handle, usage: UsageCache) -> Reader {
        Reader {
            pool,
            handle,
            usage,
        }
    }

    /// Run one query on the store's runtime and wait for it (plugin calls block on reads).
    fn query(
        &self,
        sql: &'static str,
        plugin: &str,
        key: Option<&str>,
    ) -> anyhow::Result<Option<tokio_postgres::Row>> {
        let (pool, plugin, key) = (
            self.pool.clone(),
            plugin.to_string(),
            key.map(str::to_string),
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = async {
                let client = pool.get().await?;
                let stmt = client.prepare_cached(sql).await?;
                let now = now_millis();
                let row = match &key {
                    Some(key) => client.query_opt(&stmt, &[&plugin, key, &now]).await?,
                    None => client.query_opt(&stmt, &[&plugin, &now]).await?,
                };
                anyhow::Ok(row)
            }
            .await;
            let _ = tx.send(result);
        });
        rx.recv().context("the PostgreSQL store stopped")?
    }
}

impl super::super::KvReader for Reader {
    fn get(&mut self, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let row = self
            .query(
                "SELECT value FROM kv WHERE plugin = $1 AND key = $2
                   AND (expires_at IS NULL OR expires_at > $3)",
                plugin,
                Some(key),
            )
            .context("key-value read failed")?;
        Ok(row.map(|r| r.get(0)))
    }

    fn usage(&mut self, plugin: &str) -> anyhow::Result<(u64, u64)> {
        if let Some(u) = self.usage.get(plugin) {
            return Ok(u);
        }
        let row = self
            .query(
                "SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0)::bigint
                 FROM kv WHERE plugin = $1 AND (expires_at IS NULL OR expires_at > $2)",
                plugin,
                None,
            )
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

/// Apply key-value writes inside a transaction.
pub async fn apply(txn: &Transaction<'_>, writes: &[KvWrite]) -> anyhow::Result<()> {
    for w in writes {
        match w {
            KvWrite::Set {
                plugin,
                key,
                value,
                expires_at,
            } => {
                let stmt = txn
                    .prepare_cached(
                        "INSERT INTO kv (plugin, key, value, expires_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (plugin, key) DO UPDATE
                         SET value = excluded.value, expires_at = excluded.expires_at",
                    )
                    .await?;
                txn.execute(&stmt, &[plugin, key, value, expires_at])
                    .await?;
            }
            KvWrite::Delete { plugin, key } => {
                let stmt = txn
                    .prepare_cached("DELETE FROM kv WHERE plugin = $1 AND key = $2")
                    .await?;
                txn.execute(&stmt, &[plugin, key]).await?;
            }
        }
    }
    Ok(())
}
