use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;
use domain::sealing::Sealer;

/// Where the key that seals secrets at rest comes from (see `domain::sealing`). Asked only
/// when a value must be sealed or a sealed one opened, so a process that never touches a
/// secret never fetches the key (a Lambda's init makes no call for it).
#[async_trait]
pub trait SealingKeys: Send + Sync {
    /// This deployment's key: the same in every process that shares the store, for as long
    /// as the stored secrets must be read.
    async fn sealer(&self) -> Result<Arc<Sealer>>;
}

/// A key known before the first request: the embedded backend's (configured, or kept in
/// the data dir), read at start.
pub struct FixedSealingKey(Arc<Sealer>);

impl FixedSealingKey {
    pub fn new(sealer: Arc<Sealer>) -> Self {
        FixedSealingKey(sealer)
    }
}

#[async_trait]
impl SealingKeys for FixedSealingKey {
    async fn sealer(&self) -> Result<Arc<Sealer>> {
        Ok(self.0.clone())
    }
}
