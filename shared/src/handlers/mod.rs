//! The handlers the Lambda functions and the local runner share.

pub mod deliver;
pub mod fanout;
pub mod health;
pub mod ingest;
pub mod limiter;
pub mod redrive;
mod sqs;

pub use deliver::handle_deliveries;
pub use fanout::handle_events;
