//! The local runner: the whole pipeline in one process on durable SQLite, running the same
//! handlers as the Lambda functions, with pollers standing in for Lambda's SQS event source
//! mappings and an HTTP server standing in for API Gateway.

pub mod config;
mod embedded;
mod platform_key;
pub mod poller;
mod runner;
mod sealing_key;
mod server;

pub use config::Config;
pub use runner::{services, settings, Runner};
