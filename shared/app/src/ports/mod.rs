//! Ports: the narrow interfaces the handlers need from the outside world. Each has an
//! embedded (SQLite) adapter and an AWS adapter; both must behave alike.

mod alerts;
mod api_keys;
mod clock;
mod deliveries;
mod events;
mod http_sender;
mod jwt_keys;
mod queue;
mod sealing_keys;
mod subscriptions;

pub use alerts::{AlertStore, Mailer};
pub use api_keys::ApiKeyStore;
pub use clock::{Clock, OsRandom, SystemClock};
pub use deliveries::DeliveryLog;
pub use events::{EventInsert, EventStore};
pub use http_sender::{
    Fetched, HttpSender, NoOutboundHttp, OutboundRequest, SendError, SendResult,
};
pub use jwt_keys::JwtKeyStore;
pub use queue::{
    batch_calls, check_sizes, released_after_ms, OutgoingMessage, Queue, QueueMessage,
    ENTRY_MARGIN_BYTES, MAX_BATCH, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES,
};
pub use sealing_keys::{FixedSealingKey, SealingKeys};
pub use subscriptions::SubscriptionStore;

/// One page of a listing, and the opaque cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
