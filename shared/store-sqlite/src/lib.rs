//! The embedded default: every port on one SQLite database in WAL mode.
//!
//! WAL with `synchronous=NORMAL` keeps every committed transaction across a crash of the
//! process (the case the local runner must survive); only a power loss may drop the last
//! few. One connection on its own thread serialises writers, which SQLite does anyway, and
//! commits concurrent calls together (see `db`).

mod alerts;
mod api_keys;
mod columns;
mod db;
mod deliveries;
mod events;
mod jwt_keys;
mod queue;
mod subscriptions;

use std::path::Path;

pub use alerts::SqliteAlertStore;
pub use api_keys::SqliteApiKeyStore;
pub use db::Db;
pub use deliveries::SqliteDeliveryLog;
pub use events::SqliteEventStore;
pub use jwt_keys::SqliteJwtKeyStore;
pub use queue::{Redrive, SqliteQueue};
pub use subscriptions::SqliteSubscriptionStore;

use app::{Error, Result};

/// A failure inside a database call: SQLite's own, or a port error the call raised. A
/// call's closure returns it so that `?` works on both; `Db::call` hands the port error on.
#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    Port(Error),
}

pub type DbResult<T> = std::result::Result<T, DbError>;

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        DbError::Sqlite(err)
    }
}

impl From<Error> for DbError {
    fn from(err: Error) -> Self {
        DbError::Port(err)
    }
}

impl From<DbError> for Error {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Sqlite(e) => Error::storage_caused_by("SQLite", e),
            DbError::Port(e) => e,
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS queue_messages (
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    parked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at);

CREATE TABLE IF NOT EXISTS subscriptions (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS events (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    enqueued INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_time ON events (account_id, received_at, id);

CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    next_attempt_at INTEGER,
    last_error TEXT,
    last_latency_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (account_id, event_id);
CREATE INDEX IF NOT EXISTS deliveries_by_subscription
    ON deliveries (account_id, subscription_id, created_at, id);
-- Only dead deliveries are listed by status (the dead letters): a partial index keeps every
-- other status change from touching it.
DROP INDEX IF EXISTS deliveries_by_status;
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (account_id, updated_at, id)
    WHERE status = 'dead';

CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    url TEXT NOT NULL,
    request_headers TEXT NOT NULL,
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    response_body TEXT,
    error TEXT,
    response_headers TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

-- Pre-aggregated stats, one row per subscription and five-minute slot (`domain::stats`):
-- `latency` is the histogram as `bin:count` pairs, `causes` a JSON object by cause key.
CREATE TABLE IF NOT EXISTS delivery_stats (
    account_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    dead INTEGER NOT NULL,
    latency TEXT NOT NULL,
    causes TEXT NOT NULL,
    PRIMARY KEY (account_id, subscription_id, slot)
) WITHOUT ROWID;

-- Each account's alert settings (`domain::alerts::AlertSettings`), as JSON.
CREATE TABLE IF NOT EXISTS alert_settings (
    account_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL
) WITHOUT ROWID;

-- One alert topic's throttle (`domain::alerts::ThrottleState`), as JSON; `digest_due` is
-- set while it holds alerts, for the digest run to find them.
CREATE TABLE IF NOT EXISTS alert_throttles (
    account_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest_due INTEGER,
    state TEXT NOT NULL,
    PRIMARY KEY (account_id, topic)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_throttles_due ON alert_throttles (digest_due)
    WHERE digest_due IS NOT NULL;

-- The service's JWT signing keys (`domain::jwt::KeyRing`), one row, as JSON.
CREATE TABLE IF NOT EXISTS jwt_keys (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    ring TEXT NOT NULL
);

-- The columns after `created_at` came later: `migrate` adds them to an older file.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    prefix TEXT NOT NULL DEFAULT '',
    last_used_at INTEGER,
    revoked_at INTEGER,
    expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_keys_by_account ON api_keys (account_id, created_at, id);
"#;

/// Columns added to a table after it first shipped: `CREATE TABLE IF NOT EXISTS` leaves a
/// table of an older database file as it was, so each is added where it is missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("api_keys", "prefix", "TEXT NOT NULL DEFAULT ''"),
    ("api_keys", "last_used_at", "INTEGER"),
    ("api_keys", "revoked_at", "INTEGER"),
    ("api_keys", "expires_at", "INTEGER"),
    // JSON pairs; NULL in attempts logged before it was kept.
    ("attempts", "response_headers", "TEXT"),
];

/// Brings the tables of a database file `SCHEMA` has run on up to date (run at open, after
/// it). Each step is idempotent: a file left half-migrated is finished at the next start.
fn migrate(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in ADDED_COLUMNS {
        let present: i64 = conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?;
        if present == 0 {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(not(unix))]
fn restrict_to_owner(_: &Path) {}

/// `?, ?, ...` for an `IN` list of `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::storage_caused_by("encoding a record", e))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::storage_caused_by("corrupt record", e))
}

/// Listings are ordered by (time, id), newest first; a cursor is the last row's pair.
fn encode_cursor(at: i64, id: &str) -> String {
    format!("{at}.{id}")
}

fn decode_cursor(cursor: Option<&str>) -> Result<(i64, String)> {
    match cursor {
        None => Ok((i64::MAX, String::new())),
        Some(c) => c
            .split_once('.')
            .and_then(|(at, id)| Some((at.parse().ok()?, id.to_string())))
            .ok_or(Error::InvalidCursor),
    }
}

/// The page of `rows` (fetched with one extra to see whether more follow).
fn page<T>(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> (i64, &str)) -> app::ports::Page<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = more
        .then(|| {
            rows.last().map(|r| {
                let (at, id) = key(r);
                encode_cursor(at, id)
            })
        })
        .flatten();
    app::ports::Page {
        items: rows,
        next_cursor,
    }
}
