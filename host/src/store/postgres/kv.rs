//! The plugins' key-value state on PostgreSQL.
//!
//! A dispatch batch reads keys on one pooled connection, outside any transaction: plugin calls
//! run between the reads, and a transaction open across them would hold back vacuum. A
//! customer's keys are written only by the host holding the customer's partition, so reads
//! see the last write of the keys a batch depends on.

use std::collections::HashMap;

use anyhow::Context;
use deadpool_postgres::{Object, Pool, Transaction};

use super::super::kv::UsageCache;
use super::super::{KvWrite, now_millis};

pub struct Reader {
    pool: Pool,
    handle: tokio::runtime::Handle,
    usage: UsageCache,
    /// The batch's connection, taken from the pool at its first read and kept until the batch
    /// ends (the reader is dropped), instead of a pool round for each key.
    client: Option<Object>,
}

impl Reader {
    pub fn new(pool: Pool, handle: tokio::runtime::Handle, usage: UsageCache) -> Reader {
        Reader {
            pool,
            handle,
            usage,
            client: None,
        }
    }

    /// Run one query on the store's runtime and wait for it (plugin calls block on reads).
    fn query(
        &mut self,
        sql: &'static str,
        plugin: &str,
        key: Option<&str>,
    ) -> anyhow::Result<Option<tokio_postgres::Row>> {
        let (pool, client, plugin, key) = (
            self.pool.clone(),
            self.client.take(),
            plugin.to_string(),
            key.map(str::to_string),
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = async {
                let client = match client {
                    Some(client) => client,
                    None => pool.get().await?,
                };
                let stmt = client.prepare_cached(sql).await?;
                let now = now_millis();
                let row = match &key {
                    Some(key) => client.query_opt(&stmt, &[&plugin, key, &now]).await?,
                    None => client.query_opt(&stmt, &[&plugin, &now]).await?,
                };
                anyhow::Ok((row, client))
            }
            .await;
            let _ = tx.send(result);
        });
        // A failed read drops its connection: the pool hands a sound one to the next.
        let (row, client) = rx.recv().context("the PostgreSQL store stopped")??;
        self.client = Some(client);
        Ok(row)
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
