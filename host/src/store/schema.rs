//! The two databases' tables, created on first start. Each later change of schema is a new
//! entry of a migration list, applied once and recorded in the file's `user_version`.

use std::path::Path;

use rusqlite::Connection;

/// The work database (the configured file): dispatch cursor, outbox and key-value state. Its
/// first two versions also held the inbox and the dedup keys; version 3 moves them out.
/// The work database's latest schema version.
pub const WORK_VERSION: i64 = WORK_MIGRATIONS.len() as i64;

const WORK_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    dedup_key   TEXT NOT NULL,
    notification TEXT NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX inbox_pending ON inbox(id) WHERE done = 0;

CREATE TABLE seen (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_at ON seen(at);

CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    lane        TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    request     TEXT NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    revived     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    finished_at INTEGER,
    last_error  TEXT
);
CREATE INDEX outbox_pending ON outbox(id) WHERE state = 0;
CREATE INDEX outbox_revived ON outbox(id) WHERE revived = 1;
CREATE INDEX outbox_finished ON outbox(finished_at) WHERE state = 1;

CREATE TABLE kv (
    plugin     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
"#,
    r#"
-- The dispatcher handles the inbox in id order and keeps its place in one row, instead of
-- marking every notification done; delivered outbox rows are deleted instead of kept. Ids are
-- never reused (AUTOINCREMENT), as the cursor and the delivery queue rely on them growing.
CREATE TABLE dispatch_cursor (
    one      INTEGER PRIMARY KEY CHECK (one = 1),
    inbox_id INTEGER NOT NULL
);
INSERT INTO dispatch_cursor (one, inbox_id) VALUES (1, COALESCE(
    (SELECT MIN(id) - 1 FROM inbox WHERE done = 0),
    (SELECT MAX(id) FROM inbox),
    0));

CREATE TABLE inbox_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at  INTEGER NOT NULL,
    dedup_key    TEXT NOT NULL,
    notification TEXT NOT NULL
);
INSERT INTO inbox_new (id, received_at, dedup_key, notification)
    SELECT id, received_at, dedup_key, notification FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox_new RENAME TO inbox;

CREATE TABLE outbox_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    lane        TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    request     TEXT NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    revived     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    finished_at INTEGER,
    last_error  TEXT
);
INSERT INTO outbox_new SELECT * FROM outbox WHERE state != 1;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_revived ON outbox(id) WHERE revived = 1;
CREATE INDEX outbox_dead ON outbox(id) WHERE state = 2;
"#,
    // The inbox has its own file: its commits, synced before each webhook is answered, then
    // carry only inbox pages, and the outbox's writes never wait behind them.
    r#"
DROP TABLE inbox;
DROP TABLE seen;
"#,
    // Notifications whose dispatch failed for a reason of the host, to run again or parked
    // (see `retry.rs`); kept whole, as the inbox is pruned behind the cursor.
    r#"
CREATE TABLE dispatch_retry (
    inbox_id     INTEGER PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    dedup_key    TEXT NOT NULL,
    notification TEXT NOT NULL,
    customer     TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,
    parked       INTEGER NOT NULL,
    last_error   TEXT
);
CREATE INDEX dispatch_retry_customer ON dispatch_retry(customer, inbox_id) WHERE parked = 0;
"#,
    // The WhatsApp message id of each delivered typed send, what sent it, and the last status
    // WhatsApp reported for it (see `sends.rs`).
    r#"
CREATE TABLE sent_message (
    wa_id           TEXT PRIMARY KEY,
    delivery_id     INTEGER NOT NULL,
    plugin          TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    sent_at         INTEGER NOT NULL,
    status          TEXT,
    error           TEXT,
    status_at       INTEGER
) WITHOUT ROWID;
CREATE INDEX sent_message_sent_at ON sent_message(sent_at);
"#,
    // History for the operator console (see `history.rs`): each delivery names its
    // notification and plugin and keeps its attempts; delivered rows stay (state 1) until the
    // retention; changes made through the console are recorded.
    r#"
ALTER TABLE outbox ADD COLUMN inbox_id INTEGER;
ALTER TABLE outbox ADD COLUMN plugin TEXT;
ALTER TABLE outbox ADD COLUMN attempt_log TEXT;
CREATE INDEX outbox_inbox ON outbox(inbox_id);
CREATE INDEX outbox_pending_target ON outbox(target, created_at) WHERE state = 0;
CREATE INDEX outbox_delivered ON outbox(finished_at) WHERE state = 1;
CREATE TABLE admin_audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    who    TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    count  INTEGER NOT NULL
);
"#,
    // A notification's timeline shows the WhatsApp message each of its sends became.
    r#"
CREATE INDEX sent_message_delivery ON sent_message(delivery_id);
"#,
    // Delivered rows are no longer indexed: that index cost every delivery a B-tree write (in
    // the load bench the writer did about 8.5k fewer instructions per webhook without it).
    // Deliveries are counted per destination and minute as their outcomes are recorded, and
    // pruning finds old rows by id, up to the highest id a mark says existed at a time.
    r#"
DROP INDEX outbox_delivered;
CREATE TABLE delivered_minute (
    target TEXT NOT NULL,
    minute INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (target, minute)
) WITHOUT ROWID;
INSERT INTO delivered_minute (target, minute, n)
    SELECT target, finished_at / 60000, COUNT(*) FROM outbox WHERE state = 1 GROUP BY 1, 2;
CREATE TABLE outbox_mark (
    at     INTEGER PRIMARY KEY,
    max_id INTEGER NOT NULL
);
INSERT INTO outbox_mark (at, max_id) SELECT created_at, id FROM outbox ORDER BY id DESC LIMIT 1;
"#,
];

/// The inbox database: accepted notifications and dedup keys.
const INBOX_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at  INTEGER NOT NULL,
    dedup_key    TEXT NOT NULL,
    notification TEXT NOT NULL
);
CREATE TABLE seen (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_at ON seen(at);
"#,
    // The dedup keys become a log in order of arrival, indexed in memory (see `seen.rs`).
    r#"
CREATE TABLE seen_log (
    id  INTEGER PRIMARY KEY,
    at  INTEGER NOT NULL,
    key TEXT NOT NULL
);
INSERT INTO seen_log (at, key) SELECT at, key FROM seen ORDER BY at;
DROP TABLE seen;
"#,
];

pub fn migrate_inbox(conn: &Connection) -> rusqlite::Result<()> {
    apply(conn, INBOX_MIGRATIONS)
}

/// Migrate the work database; before version 3 drops them, the inbox and the dedup keys it
/// holds are copied to the inbox database at `inbox` (already migrated).
pub fn migrate_work(conn: &Connection, inbox: &Path) -> rusqlite::Result<()> {
    apply(conn, &WORK_MIGRATIONS[..2])?;
    if user_version(conn)? < 3 {
        // Not atomic with the drop: a copy cut short by a crash is made again, and rows
        // already copied are ignored.
        conn.execute("ATTACH DATABASE ?1 AS inbox_db", [inbox.to_string_lossy()])?;
        let copied = conn.execute_batch(
            "BEGIN;
             INSERT OR IGNORE INTO inbox_db.inbox (id, received_at, dedup_key, notification)
                 SELECT id, received_at, dedup_key, notification FROM main.inbox;
             INSERT INTO inbox_db.seen_log (at, key) SELECT at, key FROM main.seen
                 WHERE key NOT IN (SELECT key FROM inbox_db.seen_log) ORDER BY at;
             COMMIT;",
        );
        conn.execute_batch("DETACH DATABASE inbox_db")?;
        copied?;
    }
    apply(conn, WORK_MIGRATIONS)
}

/// New inbox ids stay above the dispatch cursor, which would skip lower ones; an inbox that
/// starts empty (a new file, or moved from an empty one) would otherwise count from 1.
pub fn keep_inbox_ids_above(conn: &Connection, cursor: i64) -> rusqlite::Result<()> {
    // Read first: a command opening the store beside a running server writes nothing.
    let seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'inbox'",
        [],
        |r| r.get(0),
    )?;
    if seq >= cursor {
        return Ok(());
    }
    conn.execute(
        "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'inbox' AND seq < ?1",
        [cursor],
    )?;
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'inbox', ?1
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'inbox')",
        [cursor],
    )?;
    Ok(())
}

/// A work database as version `v` left it (for tests of later migrations); up to version 2,
/// with the inbox inside.
#[cfg(test)]
pub fn create_work_version(conn: &Connection, v: usize) -> rusqlite::Result<()> {
    apply(conn, &WORK_MIGRATIONS[..v])
}

/// An inbox database as version 1 left it, with its dedup keys in an index (for tests).
#[cfg(test)]
pub fn create_inbox_version_1(conn: &Connection) -> rusqlite::Result<()> {
    apply(conn, &INBOX_MIGRATIONS[..1])
}

fn user_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

fn apply(conn: &Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    for (i, sql) in migrations.iter().enumerate().skip(user_version(conn)?) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}
