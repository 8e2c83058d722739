//! The embedded backend: every port on one SQLite database in the data dir.

use std::path::Path;
use std::sync::Arc;

use app::ports::{Clock, FixedSealingKey, OsRandom, SystemClock};
use app::sealed::{SealedJwtKeys, SealedSubscriptions};
use app::topology::{self, QueueSpec};
use app::{Result, Services, Settings, Stores};
use domain::sealing::Sealer;
use store_sqlite::{
    Db, Redrive, SqliteAlertStore, SqliteApiKeyStore, SqliteDeliveryLog, SqliteEventStore,
    SqliteJwtKeyStore, SqliteQueue, SqliteSubscriptionStore,
};

pub const EVENTS_QUEUE: &str = topology::EVENTS.name;
pub const DELIVERIES_QUEUE: &str = topology::DELIVERIES.name;

pub struct Embedded {
    pub services: Services,
    pub events_queue: Arc<SqliteQueue>,
    pub deliveries_queue: Arc<SqliteQueue>,
    pub stranded_queue: Arc<SqliteQueue>,
}

/// The embedded stores, with every subscription's secrets sealed by `sealer` before they
/// reach the database file.
pub fn open(data_dir: &Path, settings: Settings, sealer: Arc<Sealer>) -> Result<Embedded> {
    let db = Db::open(&data_dir.join("webhooks.db"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = |spec: QueueSpec| {
        Arc::new(
            SqliteQueue::new(
                db.clone(),
                spec.name,
                spec.visibility,
                spec.dead_letter
                    .zip(spec.max_receives)
                    .map(|(dlq, max)| Redrive {
                        dead_letter_queue: dlq.to_string(),
                        max_receive_count: max,
                    }),
                clock.clone(),
            )
            .with_max_message_bytes(spec.max_message_bytes),
        )
    };
    let events_queue = queue(topology::EVENTS);
    let deliveries_queue = queue(topology::DELIVERIES);
    let stranded_queue = queue(topology::DELIVERIES_STRANDED);
    let dead_letter_queue = queue(topology::DELIVERIES_DLQ);
    let sealing_key = Arc::new(FixedSealingKey::new(sealer));
    let stores = Stores {
        subscriptions: Arc::new(SealedSubscriptions::new(
            Arc::new(SqliteSubscriptionStore::new(db.clone())),
            sealing_key.clone(),
            Arc::new(OsRandom),
        )),
        jwt_keys: Arc::new(SealedJwtKeys::new(
            Arc::new(SqliteJwtKeyStore::new(db.clone())),
            sealing_key,
            Arc::new(OsRandom),
        )),
        events: Arc::new(SqliteEventStore::new(db.clone())),
        deliveries: Arc::new(SqliteDeliveryLog::new(db.clone())),
        api_keys: Arc::new(SqliteApiKeyStore::new(db.clone())),
        alerts: Arc::new(SqliteAlertStore::new(db.clone())),
        events_queue: events_queue.clone(),
        deliveries_queue: deliveries_queue.clone(),
        stranded_queue: stranded_queue.clone(),
        dead_letter_queue,
    };
    let services = crate::runner::services(stores, settings)?;
    Ok(Embedded {
        services,
        events_queue,
        deliveries_queue,
        stranded_queue,
    })
}
