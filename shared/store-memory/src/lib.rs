//! Every port in process memory, behaving as the embedded (SQLite) adapter does.
//!
//! The use cases can then be tested without a database file, a writer thread or a moto
//! server, and in milliseconds; the contract suite (`tests/contract.rs`) runs this backend
//! beside the others, so it cannot drift from them. Nothing survives the process, and
//! listings scan every record: it is not meant for real volumes.
//!
//! Each store keeps its records behind one `std::sync::Mutex`, held only inside a call
//! (never across an await): a call sees and leaves a consistent state, as one SQLite
//! transaction does.

mod alerts;
mod api_keys;
mod deliveries;
mod events;
mod jwt_keys;
mod paging;
mod queue;
mod subscriptions;

use std::sync::{Arc, Mutex, MutexGuard};

pub use alerts::MemoryAlertStore;
pub use api_keys::MemoryApiKeyStore;
pub use deliveries::MemoryDeliveryLog;
pub use events::MemoryEventStore;
pub use jwt_keys::MemoryJwtKeyStore;
pub use queue::{MemoryQueue, Redrive};
pub use subscriptions::MemorySubscriptionStore;

use app::ports::Clock;
use app::topology::{self, QueueSpec};
use app::{Error, Result, Stores};

/// A fresh, empty set of every store and queue, shaped as `app::topology` says. The
/// deliveries queue is redriven to the stranded queue, and that one to the dead-letter
/// queue the deliver use case writes to, as in the runner; the events queue to a
/// dead-letter queue of its own that nothing reads.
pub fn stores(clock: Arc<dyn Clock>) -> Stores {
    let queue = |spec: QueueSpec, redrive| {
        Arc::new(
            MemoryQueue::new(spec.name, spec.visibility, redrive, clock.clone())
                .with_max_message_bytes(spec.max_message_bytes),
        )
    };
    let redrive = |spec: QueueSpec, dead_letter_queue| {
        spec.max_receives.map(|max_receive_count| Redrive {
            dead_letter_queue,
            max_receive_count,
        })
    };
    let events_dlq = queue(topology::EVENTS_DLQ, None);
    let dead_letter_queue = queue(topology::DELIVERIES_DLQ, None);
    let stranded_queue = queue(
        topology::DELIVERIES_STRANDED,
        redrive(topology::DELIVERIES_STRANDED, dead_letter_queue.clone()),
    );
    Stores {
        subscriptions: Arc::new(MemorySubscriptionStore::new()),
        events: Arc::new(MemoryEventStore::new()),
        deliveries: Arc::new(MemoryDeliveryLog::new()),
        api_keys: Arc::new(MemoryApiKeyStore::new()),
        alerts: Arc::new(MemoryAlertStore::new()),
        jwt_keys: Arc::new(MemoryJwtKeyStore::new()),
        events_queue: queue(topology::EVENTS, redrive(topology::EVENTS, events_dlq)),
        deliveries_queue: queue(
            topology::DELIVERIES,
            redrive(topology::DELIVERIES, stranded_queue.clone()),
        ),
        stranded_queue,
        dead_letter_queue,
    }
}

/// The records of a store. A call that panicked while holding them may have left them half
/// changed: every later call fails instead of reading that.
fn lock<T>(records: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    records
        .lock()
        .map_err(|_| Error::storage("a call panicked while changing this store"))
}
