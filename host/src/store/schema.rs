use rusqlite::Connection;

/// Create the tables on first start. Each later change of schema is a new entry of
/// `MIGRATIONS`, applied once and recorded in `user_version`.
const MIGRATIONS: &[&str] = &[
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
];

pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}
