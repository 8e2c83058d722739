use async_trait::async_trait;

use crate::Result;
use domain::api_key::ApiKeyRecord;
use domain::ids::{AccountId, ApiKeyId};
use domain::time::Timestamp;

/// Account keys, by the hash of the key (the key itself is never stored). An account has at
/// most `domain::api_key::MAX_KEPT_KEYS_PER_ACCOUNT` keys (the HTTP layer keeps it so), so
/// its listing is one bounded `Vec`.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn create(&self, record: &ApiKeyRecord) -> Result<()>;
    /// The key with this hash, revoked and expired ones included (the caller decides), read
    /// as of now: a revocation that has answered is always seen.
    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;
    /// Every key of the account, newest first (by `created_at`, then `id`).
    async fn list(&self, account_id: &AccountId) -> Result<Vec<ApiKeyRecord>>;
    /// Marks the account's key `key_id` revoked at `at` (a key revoked before keeps its
    /// first `revoked_at`) and answers it; `None` when the account has no such key.
    async fn revoke(
        &self,
        account_id: &AccountId,
        key_id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<Option<ApiKeyRecord>>;
    /// Sets `last_used_at` to `at`, only where the stored one is missing or at least
    /// `domain::api_key::LAST_USED_RESOLUTION_MS` older (checked by the store, so requests
    /// racing each other write once). False when nothing was written, or no such key.
    async fn record_use(&self, key_hash: &str, at: Timestamp) -> Result<bool>;
    /// Forgets the account's key `key_id` for good (to make room for a new one); whether it
    /// was there.
    async fn delete(&self, account_id: &AccountId, key_id: &ApiKeyId) -> Result<bool>;
}
