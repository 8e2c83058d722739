//! The embedded backend: every port on one SQLite database in the data dir.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use app::ports::{Clock, SystemClock};
use app::{Result, Services, Settings, Stores};
use domain::subscription::MAX_ATTEMPTS_LIMIT;
use store_sqlite::{
    Db, Redrive, SqliteApiKeyStore, SqliteDeliveryLog, SqliteEventStore, SqliteQueue,
    SqliteSubscriptionStore,
};

pub const EVENTS_QUEUE: &str = "events";
pub const DELIVERIES_QUEUE: &str = "deliveries";
pub const EVENTS_DLQ: &str = "events-dlq";
pub const DELIVERIES_DLQ: &str = "deliveries-dlq";

/// Longer than any batch can take: the slowest endpoint's 30 s timeout, plus logging.
const DELIVERIES_VISIBILITY: Duration = Duration::from_secs(120);
const EVENTS_VISIBILITY: Duration = Duration::from_secs(60);
/// The redrive safety net sits above the largest attempt budget.
const DELIVERIES_MAX_RECEIVES: u32 = MAX_ATTEMPTS_LIMIT + 5;
const EVENTS_MAX_RECEIVES: u32 = 10;

pub struct Embedded {
    pub services: Services,
    pub events_queue: Arc<SqliteQueue>,
    pub deliveries_queue: Arc<SqliteQueue>,
}

pub fn open(data_dir: &Path, settings: Settings) -> Result<Embedded> {
    let db = Db::open(&data_dir.join("webhooks.db"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = |name: &str, visibility, redrive: Option<(&str, u32)>| {
        Arc::new(SqliteQueue::new(
            db.clone(),
            name,
            visibility,
            redrive.map(|(dlq, max)| Redrive {
                dead_letter_queue: dlq.to_string(),
                max_receive_count: max,
            }),
            clock.clone(),
        ))
    };
    let events_queue = queue(
        EVENTS_QUEUE,
        EVENTS_VISIBILITY,
        Some((EVENTS_DLQ, EVENTS_MAX_RECEIVES)),
    );
    let deliveries_queue = queue(
        DELIVERIES_QUEUE,
        DELIVERIES_VISIBILITY,
        Some((DELIVERIES_DLQ, DELIVERIES_MAX_RECEIVES)),
    );
    let dead_letter_queue = queue(DELIVERIES_DLQ, DELIVERIES_VISIBILITY, None);
    let stores = Stores {
        subscriptions: Arc::new(SqliteSubscriptionStore::new(db.clone())),
        events: Arc::new(SqliteEventStore::new(db.clone())),
        deliveries: Arc::new(SqliteDeliveryLog::new(db.clone())),
        api_keys: Arc::new(SqliteApiKeyStore::new(db.clone())),
        events_queue: events_queue.clone(),
        deliveries_queue: deliveries_queue.clone(),
        dead_letter_queue,
    };
    let services = crate::runner::services(stores, settings)?;
    Ok(Embedded {
        services,
        events_queue,
        deliveries_queue,
    })
}
