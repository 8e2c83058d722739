//! The service's JWT signing keys, in memory.

use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use app::ports::JwtKeyStore;
use app::Result;
use domain::jwt::KeyRing;

#[derive(Default)]
pub struct MemoryJwtKeyStore {
    ring: Mutex<Option<KeyRing>>,
}

impl MemoryJwtKeyStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl JwtKeyStore for MemoryJwtKeyStore {
    async fn key_ring(&self) -> Result<Option<KeyRing>> {
        Ok(lock(&self.ring)?.clone())
    }

    async fn put_key_ring(&self, ring: &KeyRing) -> Result<bool> {
        let mut stored = lock(&self.ring)?;
        let stored_version = stored.as_ref().map_or(0, |r| r.version);
        if stored_version + 1 != ring.version {
            return Ok(false);
        }
        *stored = Some(ring.clone());
        Ok(true)
    }
}
