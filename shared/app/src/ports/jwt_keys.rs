use async_trait::async_trait;

use crate::Result;
use domain::jwt::KeyRing;

/// Where the service's JWT signing keys are kept (see `domain::jwt`): one ring for the
/// deployment, written only by a conditional put, so two processes rotating at once agree
/// on one outcome.
#[async_trait]
pub trait JwtKeyStore: Send + Sync {
    /// The stored ring, if any was written.
    async fn key_ring(&self) -> Result<Option<KeyRing>>;

    /// Writes `ring` if the stored one is the version before it (none stored, for version
    /// 1); `false` when another writer came first.
    async fn put_key_ring(&self, ring: &KeyRing) -> Result<bool>;
}
