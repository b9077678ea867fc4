//! The PostgreSQL schema: migrations embedded in the binary, applied at start under an
//! advisory lock (hosts starting at once apply each one once), each in its own transaction and
//! recorded in `schema_migrations`.

use anyhow::Context;

/// The number of partitions the work is split into. Fixed at the first migration: a customer
/// must stay in one partition for the life of the database.
pub const PARTITIONS: u32 = 32;

/// Taken while migrating; any number that no other application of the database uses.
const MIGRATION_LOCK: i64 = 0x5357_4254_4d49_4752;

pub const MIGRATIONS: &[&str] = &[
    // 1: the queue and the state.
    "CREATE TABLE partitions (
        partition integer PRIMARY KEY,
        owner text,
        fence bigint NOT NULL DEFAULT 0,
        expires_at timestamptz NOT NULL DEFAULT '-infinity'
     );
     INSERT INTO partitions (partition) SELECT generate_series(0, 31);
     CREATE TABLE hosts (
        id text PRIMARY KEY,
        started_at timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        ttl float8 NOT NULL
     );
     CREATE TABLE seen (key text PRIMARY KEY, at bigint NOT NULL);
     CREATE INDEX seen_at ON seen (at);
     CREATE TABLE inbox (
        id bigserial PRIMARY KEY,
        partition integer NOT NULL,
        received_at bigint NOT NULL,
        dedup_key text NOT NULL,
        notification text NOT NULL,
        handled boolean NOT NULL DEFAULT false
     );
     CREATE INDEX inbox_pending ON inbox (partition, id) WHERE NOT handled;
     CREATE INDEX inbox_received ON inbox (received_at) WHERE handled;
     CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        partition integer NOT NULL,
        kind text NOT NULL,
        target text NOT NULL,
        lane text NOT NULL,
        webhook_id text NOT NULL,
        request text NOT NULL,
        state smallint NOT NULL DEFAULT 0,
        attempts bigint NOT NULL DEFAULT 0,
        created_at bigint NOT NULL,
        next_at bigint NOT NULL,
        last_error text,
        finished_at bigint,
        revived boolean NOT NULL DEFAULT false
     );
     CREATE INDEX outbox_pending ON outbox (partition, id) WHERE state = 0;
     CREATE INDEX outbox_dead ON outbox (id) WHERE state = 2;
     CREATE TABLE kv (
        plugin text NOT NULL,
        key text NOT NULL,
        value bytea NOT NULL,
        expires_at bigint,
        PRIMARY KEY (plugin, key)
     );
     CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
     CREATE TABLE dispatch_retry (
        inbox_id bigint PRIMARY KEY,
        partition integer NOT NULL,
        received_at bigint NOT NULL,
        dedup_key text NOT NULL,
        notification text NOT NULL,
        customer text NOT NULL,
        attempts bigint NOT NULL,
        next_at bigint NOT NULL,
        parked boolean NOT NULL,
        last_error text
     );
     CREATE INDEX dispatch_retry_partition ON dispatch_retry (partition, inbox_id)",
    // 2: the WhatsApp message id of each delivered typed send, what sent it, and its last
    // status (see `store/sends.rs`).
    "CREATE TABLE sent_message (
        wa_id text PRIMARY KEY,
        delivery_id bigint NOT NULL,
        plugin text NOT NULL,
        notification_id text NOT NULL,
        recipient text NOT NULL,
        kind text NOT NULL,
        sent_at bigint NOT NULL,
        status text,
        error text,
        status_at bigint
     );
     CREATE INDEX sent_message_sent_at ON sent_message (sent_at)",
    // 3: each delivery names its notification and plugin.
    "ALTER TABLE outbox ADD COLUMN inbox_id bigint, ADD COLUMN plugin text;
     CREATE INDEX outbox_inbox ON outbox (inbox_id)",
    // 4: history for the operator console (see `store/history.rs`): delivered rows stay
    // (state 1) until the retention, each attempt appended to its row's `attempt_log` in the
    // update that records it; changes made through the console are recorded. Claims keep to
    // the pending rows by `outbox_pending` (partial, state 0).
    "ALTER TABLE outbox ADD COLUMN attempt_log text;
     CREATE INDEX outbox_delivered ON outbox (finished_at) INCLUDE (target) WHERE state = 1;
     CREATE TABLE admin_audit (
        id bigserial PRIMARY KEY,
        at bigint NOT NULL,
        who text NOT NULL,
        action text NOT NULL,
        detail text NOT NULL,
        count bigint NOT NULL
     );
     CREATE INDEX admin_audit_at ON admin_audit (at);
     CREATE INDEX sent_message_delivery ON sent_message (delivery_id)",
    // 5: each business number's next free moment to send, shared by the hosts that pace it
    // (Unix ms; see `delivery/pacing.rs`).
    "CREATE TABLE pacing (number text PRIMARY KEY, next_at bigint NOT NULL)",
    // 6: claims walk the pending notifications in id order and stop at the batch's size. By
    // `inbox_pending` alone, every claim read and sorted the whole backlog of the partitions
    // held (a burst of 10,000 made each claim of 256 take 6 ms); handled rows stay for the
    // console's history, so the primary key is no shortcut either.
    "CREATE INDEX inbox_claim ON inbox (id) WHERE NOT handled",
    // 7: delivered rows are no longer indexed (an index write per delivery): they are counted
    // per destination and minute as outcomes are recorded, and pruning finds them by id, up to
    // the highest id a mark says existed at a time.
    "DROP INDEX outbox_delivered;
     CREATE TABLE delivered_minute (
        target text NOT NULL,
        minute bigint NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (target, minute)
     );
     INSERT INTO delivered_minute (target, minute, n)
        SELECT target, finished_at / 60000, count(*) FROM outbox WHERE state = 1 GROUP BY 1, 2;
     CREATE TABLE outbox_mark (at bigint PRIMARY KEY, max_id bigint NOT NULL);
     INSERT INTO outbox_mark (at, max_id) SELECT created_at, id FROM outbox ORDER BY id DESC LIMIT 1",
];

/// The versions applied, in order.
pub async fn applied(client: &tokio_postgres::Client) -> anyhow::Result<Vec<i64>> {
    let missing: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NULL", &[])
        .await?
        .get(0);
    if missing {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version bigint PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .context("cannot create schema_migrations")?;
    }
    let rows = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Apply the migrations not yet applied; returns those applied now.
pub async fn migrate(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<i64>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("cannot take the migration lock")?;
    let result = apply(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let done = result?;
    unlock.context("cannot release the migration lock")?;
    Ok(done)
}

async fn apply(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<i64>> {
    let applied = applied(client).await?;
    let mut done = Vec::new();
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if applied.contains(&version) {
            continue;
        }
        let txn = client.transaction().await?;
        txn.batch_execute(sql)
            .await
            .with_context(|| format!("migration {version} failed"))?;
        txn.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        txn.commit().await?;
        tracing::info!(version, "applied a PostgreSQL migration");
        done.push(version);
    }
    Ok(done)
}
