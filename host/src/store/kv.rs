use rusqlite::{OptionalExtension, Transaction, params};

use super::{Sqlite, now_millis};

/// A change to a plugin's key-value store, committed with the outcome of the notification that
/// made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    /// Set a key, with an expiry time (Unix ms) if any.
    Set {
        plugin: String,
        key: String,
        value: Vec<u8>,
        expires_at: Option<i64>,
    },
    /// Remove a key.
    Delete { plugin: String, key: String },
}

impl Sqlite {
    /// A plugin's value for `key`, unless expired.
    pub(super) fn kv_get(&self, plugin: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT value FROM kv WHERE plugin = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .query_row(params![plugin, key, now_millis()], |r| r.get(0))
            .optional()
        })
    }
}

/// Apply key-value writes inside a transaction.
pub fn apply(txn: &Transaction<'_>, writes: &[KvWrite]) -> rusqlite::Result<()> {
    for w in writes {
        match w {
            KvWrite::Set {
                plugin,
                key,
                value,
                expires_at,
            } => {
                txn.prepare_cached(
                    "INSERT INTO kv (plugin, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                )?
                .execute(params![plugin, key, value, expires_at])?;
            }
            KvWrite::Delete { plugin, key } => {
                txn.prepare_cached("DELETE FROM kv WHERE plugin = ?1 AND key = ?2")?
                    .execute(params![plugin, key])?;
            }
        }
    }
    Ok(())
}

/// Remove expired keys.
pub fn prune(txn: &Transaction<'_>, now: i64) -> rusqlite::Result<usize> {
    txn.execute(
        "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [now],
    )
}
