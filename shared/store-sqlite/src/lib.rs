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
    held_for TEXT,
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
    doc TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_time ON events (account_id, received_at, id);

-- A delivery is written at its first outcome. A success at the first attempt keeps that
-- attempt here, in short (`first_*`; its latency is `last_latency_ms`), instead of a row in
-- `attempts` (see `DeliveryUpdate::kept_short_if_first`). (No comments inside a table's
-- definition: SQLite's DROP COLUMN cannot rewrite one that has them.)
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
    last_latency_ms INTEGER,
    first_at INTEGER,
    first_status INTEGER,
    first_url TEXT,
    first_request_headers TEXT
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

-- The same sums by hour (`slot` is the hour's start), written with the slots in the same
-- transaction: a report in whole-hour buckets reads these, 12 times fewer rows (30 days
-- of a subscription are 720). Layout 3.
CREATE TABLE IF NOT EXISTS delivery_stats_hours (
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
    // Layout 2: a first-try success kept in short on its delivery.
    ("deliveries", "first_at", "INTEGER"),
    ("deliveries", "first_status", "INTEGER"),
    ("deliveries", "first_url", "TEXT"),
    ("deliveries", "first_request_headers", "TEXT"),
    // A message waiting for an endpoint's recovery (`OutgoingMessage::held_for`; not
    // indexed: see `queue::HeldIds`). Older builds leave it NULL and never read it: their
    // messages wait their delay, as they did.
    ("queue_messages", "held_for", "TEXT"),
];

/// Columns a later layout no longer has. Layout 2: events are written once, so whether one
/// reached the queue (`enqueued`, set by a second write) is not kept.
const DROPPED_COLUMNS: &[(&str, &str)] = &[("events", "enqueued")];

/// The layout of the database file this build reads and writes, kept in the file's
/// `PRAGMA user_version`. A file stamped with a later one was written by a newer build and
/// is refused, untouched, rather than misread; one from before the stamp existed (0, with
/// this layout's tables) is brought up to date and stamped. A change of layout that
/// `ADDED_COLUMNS` and `DROPPED_COLUMNS` cannot express raises this, with a step from the
/// previous one in `migrate`.
///
/// 1: the first stamped layout. 2: deliveries logged from their first outcome, a first-try
/// success kept in short on its delivery (`first_*`), events without `enqueued`. 3: stats
/// kept by hour too (`delivery_stats_hours`, summed from the slots on migration).
pub const LAYOUT_VERSION: i64 = 3;

/// The tables `SCHEMA` creates: a file holding any other is not one of ours.
fn our_tables() -> impl Iterator<Item = &'static str> {
    SCHEMA
        .split("CREATE TABLE IF NOT EXISTS ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
}

/// Refuses a file this build would misread (run at open, before anything changes it, even
/// its journal mode).
fn check_layout(conn: &rusqlite::Connection) -> DbResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if version > LAYOUT_VERSION {
        return Err(Error::Config(format!(
            "the database was written by a newer version of the service (data layout \
             {version}; this version reads layout {LAYOUT_VERSION} and older): run that \
             version, or give this one another data dir. Nothing in it was changed"
        ))
        .into());
    }
    let foreign: Vec<&str> = tables
        .iter()
        .map(String::as_str)
        .filter(|t| !our_tables().any(|ours| ours == *t))
        .collect();
    if !foreign.is_empty() {
        return Err(Error::Config(format!(
            "the database holds tables that are not this service's ({}): give the runner a \
             data dir of its own. Nothing in it was changed",
            foreign.join(", ")
        ))
        .into());
    }
    Ok(())
}

/// Creates the tables of a new file, or migrates an existing one `check_layout` accepted,
/// and stamps it with this layout.
/// All in one transaction with the stamp: a start that stops half-way leaves the file as
/// it was, to be migrated at the next.
fn prepare(conn: &rusqlite::Connection) -> DbResult<()> {
    let tx = conn.unchecked_transaction()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    tx.execute_batch(SCHEMA)?;
    migrate(&tx)?;
    if version < 3 {
        // Before layout 3 only the slots were kept (a new file has none: nothing to sum).
        deliveries::rebuild_hours(&tx)?;
    }
    tx.pragma_update(None, "user_version", LAYOUT_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Brings the tables of a database file `SCHEMA` has run on up to date (run at open, after
/// it). Each step is idempotent.
fn migrate(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in ADDED_COLUMNS {
        if !has_column(conn, table, column)? {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    for (table, column) in DROPPED_COLUMNS {
        if has_column(conn, table, column)? {
            conn.execute_batch(&format!("ALTER TABLE {table} DROP COLUMN {column}"))?;
        }
    }
    Ok(())
}

fn has_column(conn: &rusqlite::Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
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

#[cfg(test)]
mod layout_tests {
    use super::*;
    use app::ports::ApiKeyStore;
    use rusqlite::Connection;

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    /// A file as a build from before the layout was stamped left it: its tables, the
    /// api-keys table without the columns added since, a key in it, no stamp.
    fn unstamped_file(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE api_keys (
                 key_hash TEXT PRIMARY KEY,
                 id TEXT NOT NULL,
                 account_id TEXT NOT NULL,
                 created_at INTEGER NOT NULL
             ) WITHOUT ROWID;
             INSERT INTO api_keys VALUES ('aa11', 'key_old', 'acct_old', 1700000000000);",
        )
        .unwrap();
        // The rest of that layout: what `SCHEMA` creates, the api-keys table excepted.
        conn.execute_batch(SCHEMA).unwrap();
        assert_eq!(user_version(path), 0);
    }

    #[tokio::test]
    async fn a_file_from_before_the_stamp_is_migrated_and_read_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.db");
        unstamped_file(&path);
        let keys = SqliteApiKeyStore::new(Db::open(&path).unwrap());
        let found = keys
            .find_by_hash("aa11")
            .await
            .unwrap()
            .expect("the old key");
        assert_eq!(found.id.as_str(), "key_old");
        assert_eq!(found.account_id.as_str(), "acct_old");
        assert_eq!(found.prefix, "");
        assert!(found.revoked_at.is_none() && found.expires_at.is_none());
        assert_eq!(user_version(&path), LAYOUT_VERSION);
    }

    /// A data dir as layout 1 left it: events with `enqueued`, deliveries made at fan-out
    /// without `first_*`, a delivery retried once and one still waiting for its first try.
    fn layout_1_file(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            r#"ALTER TABLE deliveries DROP COLUMN first_at;
             ALTER TABLE deliveries DROP COLUMN first_status;
             ALTER TABLE deliveries DROP COLUMN first_url;
             ALTER TABLE deliveries DROP COLUMN first_request_headers;
             ALTER TABLE events ADD COLUMN enqueued INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 1;
             INSERT INTO events (account_id, id, type, received_at, doc, enqueued)
                 VALUES ('acct', 'evt_1', 'call.ended', 5,
                 '{"id":"evt_1","type":"call.ended","account_id":"acct",                  "occurred_at":"2026-11-26T12:00:00Z","received_at":5,"data":{}}', 1);
             INSERT INTO deliveries (id, account_id, subscription_id, event_id, event_type,
                 status, attempt_count, created_at, updated_at, next_attempt_at, last_error,
                 last_latency_ms)
                 VALUES ('msg_1', 'acct', 'wh_1', 'evt_1', 'call.ended', 'succeeded', 2, 5, 9,
                     NULL, NULL, 3),
                        ('msg_2', 'acct', 'wh_2', 'evt_1', 'call.ended', 'pending', 0, 5, 5,
                     NULL, NULL, NULL);
             INSERT INTO attempts (delivery_id, attempt, at, url, request_headers,
                 status_code, latency_ms, response_body, error, response_headers)
                 VALUES ('msg_1', 1, 6, 'https://example.com/', '[]', 500, 3, 'down', NULL,
                     NULL),
                        ('msg_1', 2, 8, 'https://example.com/', '[]', 200, 3, 'ok', NULL,
                     NULL);"#,
        )
        .unwrap();
    }

    /// A data dir as layout 2 left it: stats in five-minute slots only, over two hours of
    /// one webhook and one slot of another, failures in some.
    fn layout_2_file(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            r#"DROP TABLE delivery_stats_hours;
             PRAGMA user_version = 2;
             INSERT INTO delivery_stats VALUES
                 ('acct', 'wh_1', 7200000, 3, 1, 0, '4:3,40:1',
                  '{"http_500":{"count":1,"last_seen":7200100,"examples":["msg_a"]}}'),
                 ('acct', 'wh_1', 7500000, 2, 0, 0, '5:2', '{}'),
                 ('acct', 'wh_1', 11100000, 1, 2, 1, '6:3',
                  '{"timeout":{"count":2,"last_seen":11100900,"examples":["msg_c","msg_b"]}}'),
                 ('acct', 'wh_2', 7800000, 9, 0, 0, '3:9', '{}'),
                 ('other', 'wh_9', 7200000, 1, 0, 0, '3:1', '{}');"#,
        )
        .unwrap();
    }

    /// A data dir from before messages could be held for an endpoint: its queue table has
    /// no `held_for`. It gets the column, keeps its messages, and holds.
    #[tokio::test]
    async fn a_queue_without_held_messages_gets_them_and_keeps_what_it_had() {
        use app::ports::{OutgoingMessage, Queue, SystemClock};
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "ALTER TABLE queue_messages DROP COLUMN held_for;
                 PRAGMA user_version = 3;
                 INSERT INTO queue_messages (queue, id, body, sent_at, visible_at)
                     VALUES ('deliveries', 'm_old', 'old', 1, 1);",
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let queue = crate::SqliteQueue::new(
            db,
            "deliveries",
            Duration::from_secs(30),
            None,
            std::sync::Arc::new(SystemClock),
        );
        let old = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].body, "old");
        queue
            .send_batch(vec![OutgoingMessage {
                id: "0".into(),
                body: "held".into(),
                delay: Duration::from_secs(60),
                held_for: Some("wh_1".into()),
            }])
            .await
            .unwrap();
        assert_eq!(queue.release_held("wh_1", 100).await.unwrap(), 1);
        let back = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].body, "held");
        let conn = Connection::open(&path).unwrap();
        assert!(has_column(&conn, "queue_messages", "held_for").unwrap());
    }

    #[tokio::test]
    async fn a_layout_2_data_dir_gets_its_hours_summed_from_its_slots() {
        use app::ports::DeliveryLog;
        use domain::ids::AccountId;
        use domain::stats::{roll_up, StatsGrain};
        use domain::time::Timestamp;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.db");
        layout_2_file(&path);
        let log = crate::SqliteDeliveryLog::new(Db::open(&path).unwrap());
        assert_eq!(user_version(&path), LAYOUT_VERSION);
        let account = AccountId::from_static("acct");
        let since = Timestamp::from_millis(0);
        let slots = log
            .stats_slots(&account, None, since, StatsGrain::FiveMinutes)
            .await
            .unwrap();
        assert_eq!(slots.len(), 4);
        let mut hours = log
            .stats_slots(&account, None, since, StatsGrain::Hour)
            .await
            .unwrap();
        hours.sort_by(|a, b| (&a.subscription_id, a.start).cmp(&(&b.subscription_id, b.start)));
        assert_eq!(hours, roll_up(slots, StatsGrain::Hour, since));
        let starts: Vec<(&str, i64, u64, u64)> = hours
            .iter()
            .map(|h| {
                (
                    h.subscription_id.as_str(),
                    h.start.as_millis(),
                    h.stats.succeeded,
                    h.stats.failed,
                )
            })
            .collect();
        assert_eq!(
            starts,
            [
                ("wh_1", 7_200_000, 5, 1),
                ("wh_1", 10_800_000, 1, 2),
                ("wh_2", 7_200_000, 9, 0)
            ]
        );
    }

    #[tokio::test]
    async fn a_layout_1_data_dir_is_migrated_and_read_as_it_was() {
        use app::ports::{DeliveryLog, EventInsert, EventStore};
        use domain::delivery::{Attempt, DeliveryStatus, DeliveryUpdate};
        use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
        use domain::time::Timestamp;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.db");
        layout_1_file(&path);
        let db = Db::open(&path).unwrap();
        assert_eq!(user_version(&path), LAYOUT_VERSION);
        let (events, log) = (
            crate::SqliteEventStore::new(db.clone()),
            crate::SqliteDeliveryLog::new(db),
        );
        let (account, event_id) = (
            AccountId::from_static("acct"),
            EventId::parse("evt_1").unwrap(),
        );
        let event = events
            .get(&account, &event_id)
            .await
            .unwrap()
            .expect("the event");
        assert_eq!(event.received_at, Timestamp::from_millis(5));
        assert_eq!(
            events
                .insert_batch(std::slice::from_ref(&event))
                .await
                .unwrap(),
            [EventInsert::Exists]
        );

        // The retried delivery reads as it was, its attempts in full.
        let retried = DeliveryId::from_static("msg_1");
        let d = log.get(&account, &retried).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempt_count), (DeliveryStatus::Succeeded, 2));
        let attempts = log.attempts(&account, &retried).await.unwrap();
        assert_eq!(
            attempts
                .iter()
                .map(|a| (a.attempt, a.status_code, a.response_body.as_deref()))
                .collect::<Vec<_>>(),
            [(1, Some(500), Some("down")), (2, Some(200), Some("ok"))]
        );

        // The one made at fan-out by layout 1 and still waiting: its first outcome lands
        // on its row (it exists), logged in full.
        let waiting = DeliveryId::from_static("msg_2");
        let outcome = DeliveryUpdate {
            delivery_id: waiting.clone(),
            account_id: account.clone(),
            subscription_id: SubscriptionId::from_static("wh_2"),
            event_id: event_id.clone(),
            event_type: event.event_type.clone(),
            created_at: Timestamp::from_millis(20),
            first_try: true,
            status: DeliveryStatus::Succeeded,
            attempt: Some(Attempt {
                attempt: 0,
                at: Timestamp::from_millis(21),
                url: "https://example.com/".into(),
                request_headers: vec![],
                status_code: Some(204),
                response_headers: vec![],
                latency_ms: 4,
                response_body: None,
                error: None,
            }),
            next_attempt_at: None,
            error: None,
            cause: None,
            at: Timestamp::from_millis(25),
            listed_on_event: false,
        };
        assert_eq!(log.record(&[outcome]).await.unwrap(), [true]);
        let d = log.get(&account, &waiting).await.unwrap().unwrap();
        assert_eq!(
            (d.status, d.attempt_count, d.created_at),
            (DeliveryStatus::Succeeded, 1, Timestamp::from_millis(5))
        );
        assert_eq!(log.attempts(&account, &waiting).await.unwrap().len(), 1);
        assert_eq!(
            log.list_for_event(&account, &event_id).await.unwrap().len(),
            2
        );
    }

    /// A file of ours as a newer build might leave it: our tables, a later stamp. Made on
    /// a plain connection, closed before this returns (a `Db`'s threads close theirs
    /// later, and the last to close checkpoints into the file).
    fn newer_file(path: &Path, newer: i64) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", newer).unwrap();
        conn
    }

    #[test]
    fn a_file_of_a_newer_layout_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.db");
        let newer = LAYOUT_VERSION + 1;
        drop(newer_file(&path, newer));
        let before = std::fs::read(&path).unwrap();
        let err = Db::open(&path).err().expect("refused");
        let text = err.to_string();
        assert!(matches!(err, Error::Config(_)), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("newer version"), "{text}");
        assert_eq!(user_version(&path), newer);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was changed"
        );
    }

    /// As a newer runner that crashed leaves it: its last writes still in the WAL.
    #[test]
    fn a_newer_file_with_writes_in_its_log_is_refused_and_its_log_left_unapplied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.db");
        drop(newer_file(&path, LAYOUT_VERSION + 1));
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch("INSERT INTO jwt_keys VALUES (1, 1, '{}');")
            .unwrap();
        // Left open, as a crashed process's log is left: the main file lags the WAL.
        let (main, wal) = (
            std::fs::read(&path).unwrap(),
            dir.path().join("webhooks.db-wal"),
        );
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        let err = Db::open(&path).err().expect("refused");
        assert!(err.to_string().contains("newer version"), "{err}");
        // The refused open's connections and threads are gone once the writer is: the
        // last connection to close checkpoints, so only the writer may apply its own log.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            main,
            "the log was applied to the file"
        );
        drop(writer);
    }

    #[test]
    fn a_database_of_something_else_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE invoices (id TEXT PRIMARY KEY);")
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let text = Db::open(&path).err().expect("refused").to_string();
        assert!(text.contains("invoices"), "{text}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was changed"
        );
    }

    #[test]
    fn every_table_of_the_schema_is_known_as_ours() {
        let ours: Vec<&str> = our_tables().collect();
        assert!(
            ours.contains(&"subscriptions") && ours.contains(&"api_keys"),
            "{ours:?}"
        );
        assert_eq!(ours.len(), SCHEMA.matches("CREATE TABLE").count());
    }

    #[test]
    fn a_new_file_is_stamped_with_this_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.db");
        drop(Db::open(&path).unwrap());
        assert_eq!(user_version(&path), LAYOUT_VERSION);
    }
}
