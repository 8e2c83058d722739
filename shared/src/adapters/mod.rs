//! Adapters: the ports implemented on real infrastructure.

pub mod http_client;
pub mod sqlite;
pub mod ssrf;
