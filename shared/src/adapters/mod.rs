//! Adapters: the ports implemented on real infrastructure.

#[cfg(feature = "aws")]
pub mod aws;
pub mod http_client;
pub mod sqlite;
pub mod ssrf;
