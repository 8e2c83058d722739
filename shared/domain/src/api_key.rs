//! API keys: shown once, stored only as a SHA-256 hash.

use sha2::{Digest, Sha256};

use super::ids;

/// Who a request authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Ingests events and manages every account.
    Platform,
    /// Manages only its own account.
    Account(String),
}

impl Principal {
    pub fn can_access(&self, account_id: &str) -> bool {
        match self {
            Principal::Platform => true,
            Principal::Account(own) => own == account_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: String,
    pub account_id: String,
    pub key_hash: String,
    pub created_at: i64,
}

pub fn generate_account_key() -> String {
    ids::token_string("whk_", 32)
}

pub fn generate_platform_key() -> String {
    ids::token_string("whp_", 32)
}

pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two key hashes without leaking where they differ.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
