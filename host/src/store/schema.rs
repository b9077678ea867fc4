use rusqlite::Connection;

/// Create the tables on first start. Each later change of schema is a new entry of
/// `MIGRATIONS`, applied once and recorded in `user_version`.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
