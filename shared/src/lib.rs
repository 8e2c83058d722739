//! The webhook delivery service as a library: a pure domain, narrow ports, the adapters
//! that implement them, and the handlers that the Lambda functions and the local runner
//! both run.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod ports;
pub mod services;

pub use error::{Error, Result};
pub use services::{Services, Settings};
