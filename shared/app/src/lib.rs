//! The application layer: the ports the use cases need (stores, queues, outbound HTTP,
//! clock) and the use cases themselves, each a function over those ports. It knows the
//! domain and nothing of SQLite, AWS, axum or reqwest; the adapters and the HTTP layer
//! depend on it, never the reverse.

pub mod alerts;
pub mod config;
pub mod deliver;
pub mod deliver_function;
pub mod error;
pub mod fanout;
pub mod health;
pub mod ingest;
pub mod jwt;
pub mod limiter;
pub mod metrics;
pub mod oauth;
pub mod ports;
pub mod redrive;
pub mod sealed;
pub mod services;
mod sqs;
pub mod stranded;
pub mod sweep;
pub mod task_message;
pub mod topology;

pub use deliver::handle_deliveries;
pub use error::{Error, ErrorKind, Result};
pub use fanout::handle_events;
pub use services::{Services, Settings, Stores};
pub use stranded::handle_stranded;
