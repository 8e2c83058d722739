//! The pure domain: no I/O, no clocks, no randomness that the caller does not pass in.

pub mod alerts;
pub mod api_key;
pub mod backoff;
pub mod catalog;
pub mod delivery;
pub mod destination;
pub mod diagnosis;
pub mod event;
pub mod health;
pub mod ids;
pub mod jwt;
pub mod oauth;
pub mod random;
pub mod retry;
pub mod schema;
pub mod sealing;
pub mod signing;
pub mod stats;
pub mod subscription;
pub mod time;
