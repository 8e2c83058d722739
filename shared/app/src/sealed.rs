//! A subscription store that seals secrets on the way in and opens them on the way out
//! (see `domain::sealing`), around any backend's store: the use cases see plaintext, the
//! backend never does. The key comes from a `SealingKeys` port, asked only when a value is
//! sealed or a sealed one opened: a delete, an empty listing or rows written before sealing
//! need no key, and a process that never touches a secret never fetches it.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::ports::{JwtKeyStore, SealingKeys, SubscriptionStore};
use crate::{Error, Result};
use domain::ids::{AccountId, SubscriptionId};
use domain::jwt::KeyRing;
use domain::random::Random;
use domain::sealing::{self, Sealer};
use domain::subscription::Subscription;

pub struct SealedSubscriptions {
    inner: Arc<dyn SubscriptionStore>,
    keys: Arc<dyn SealingKeys>,
    random: Arc<dyn Random>,
}

impl SealedSubscriptions {
    pub fn new(
        inner: Arc<dyn SubscriptionStore>,
        keys: Arc<dyn SealingKeys>,
        random: Arc<dyn Random>,
    ) -> Self {
        SealedSubscriptions {
            inner,
            keys,
            random,
        }
    }

    async fn seal(&self, sub: &Subscription) -> Result<Subscription> {
        let sealer = self.keys.sealer().await?;
        Ok(sealer.seal_subscription(sub, &*self.random))
    }

    async fn open(&self, sub: Subscription) -> Result<Subscription> {
        if !sealing::holds_sealed(&sub) {
            return Ok(sub);
        }
        open_with(&*self.keys.sealer().await?, sub)
    }

    async fn open_all(&self, subs: Vec<Subscription>) -> Result<Vec<Subscription>> {
        if !subs.iter().any(sealing::holds_sealed) {
            return Ok(subs);
        }
        let sealer = self.keys.sealer().await?;
        subs.into_iter().map(|s| open_with(&sealer, s)).collect()
    }
}

/// A value that does not open is a stored row that was changed or sealed with another key:
/// a permanent failure of that row, named, never a subscription with garbage for a secret.
fn open_with(sealer: &Sealer, sub: Subscription) -> Result<Subscription> {
    let (account, id) = (sub.account_id.clone(), sub.id.clone());
    sealer.open_subscription(sub).map_err(|e| {
        Error::Config(format!(
            "subscription {id} of account {account}: {e} (was the sealing key changed?)"
        ))
    })
}

/// A key source asked once per process: the first call that succeeds fetches the key and
/// every later one answers from memory; calls made while that first fetch is in flight wait
/// for it instead of fetching too. A failed fetch is not remembered, so the next call tries
/// again (a throttled or unreachable key store is not a permanent failure of the process).
pub struct CachedSealingKey<K> {
    source: K,
    sealer: OnceCell<Arc<Sealer>>,
}

impl<K: SealingKeys> CachedSealingKey<K> {
    /// Asks nothing yet: the key is fetched on the first `sealer()`.
    pub fn new(source: K) -> Self {
        CachedSealingKey {
            source,
            sealer: OnceCell::new(),
        }
    }
}

#[async_trait]
impl<K: SealingKeys> SealingKeys for CachedSealingKey<K> {
    async fn sealer(&self) -> Result<Arc<Sealer>> {
        self.sealer
            .get_or_try_init(|| self.source.sealer())
            .await
            .cloned()
    }
}

#[async_trait]
impl SubscriptionStore for SealedSubscriptions {
    async fn put(&self, subscription: &Subscription) -> Result<()> {
        self.inner.put(&self.seal(subscription).await?).await
    }

    async fn put_if_version(
        &self,
        subscription: &Subscription,
        expected_version: u64,
    ) -> Result<bool> {
        self.inner
            .put_if_version(&self.seal(subscription).await?, expected_version)
            .await
    }

    async fn get(
        &self,
        account_id: &AccountId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>> {
        match self.inner.get(account_id, id).await? {
            Some(sub) => Ok(Some(self.open(sub).await?)),
            None => Ok(None),
        }
    }

    async fn get_many(&self, keys: &[(AccountId, SubscriptionId)]) -> Result<Vec<Subscription>> {
        self.open_all(self.inner.get_many(keys).await?).await
    }

    async fn list(
        &self,
        account_id: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscription>> {
        self.open_all(self.inner.list(account_id, after, limit).await?)
            .await
    }

    async fn list_all(&self, account_id: &AccountId) -> Result<Vec<Subscription>> {
        self.open_all(self.inner.list_all(account_id).await?).await
    }

    async fn delete(&self, account_id: &AccountId, id: &SubscriptionId) -> Result<bool> {
        self.inner.delete(account_id, id).await
    }
}

/// The JWT key ring, its private keys sealed on the way in and opened on the way out, as
/// `SealedSubscriptions` does for subscriptions. Each key is sealed in its own place
/// (`jwt/<kid>`), so a sealed key copied into another key's slot does not open.
pub struct SealedJwtKeys {
    inner: Arc<dyn JwtKeyStore>,
    keys: Arc<dyn SealingKeys>,
    random: Arc<dyn Random>,
}

impl SealedJwtKeys {
    pub fn new(
        inner: Arc<dyn JwtKeyStore>,
        keys: Arc<dyn SealingKeys>,
        random: Arc<dyn Random>,
    ) -> Self {
        SealedJwtKeys {
            inner,
            keys,
            random,
        }
    }
}

fn jwt_place(kid: &str) -> String {
    format!("jwt/{kid}")
}

#[async_trait]
impl JwtKeyStore for SealedJwtKeys {
    async fn key_ring(&self) -> Result<Option<KeyRing>> {
        let Some(mut ring) = self.inner.key_ring().await? else {
            return Ok(None);
        };
        let sealer = self.keys.sealer().await?;
        for key in &mut ring.keys {
            key.private_key = sealer
                .open(&key.private_key, &jwt_place(&key.kid))
                .map_err(|e| {
                    Error::Config(format!(
                        "JWT signing key {}: {e} (was the sealing key changed?)",
                        key.kid
                    ))
                })?;
        }
        Ok(Some(ring))
    }

    async fn put_key_ring(&self, ring: &KeyRing) -> Result<bool> {
        let sealer = self.keys.sealer().await?;
        let mut sealed = ring.clone();
        for key in &mut sealed.keys {
            key.private_key = sealer.seal(&key.private_key, &jwt_place(&key.kid), &*self.random);
        }
        self.inner.put_key_ring(&sealed).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A key store that counts its fetches, each slow enough for callers to overlap, and
    /// fails the first `failures` of them.
    #[derive(Default)]
    struct CountingKeyStore {
        fetches: AtomicUsize,
        failures: usize,
    }

    #[async_trait]
    impl SealingKeys for CountingKeyStore {
        async fn sealer(&self) -> Result<Arc<Sealer>> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if n < self.failures {
                return Err(Error::storage("the key store is throttling"));
            }
            Ok(Arc::new(Sealer::new(&[9u8; 32])))
        }
    }

    #[tokio::test]
    async fn the_key_is_fetched_on_first_need_once_however_many_ask_at_once() {
        let cached = CachedSealingKey::new(CountingKeyStore::default());
        assert_eq!(cached.source.fetches.load(Ordering::SeqCst), 0);
        let sealers = futures::future::try_join_all((0..10).map(|_| cached.sealer()))
            .await
            .unwrap();
        assert_eq!(cached.source.fetches.load(Ordering::SeqCst), 1);
        cached.sealer().await.unwrap();
        assert_eq!(cached.source.fetches.load(Ordering::SeqCst), 1);
        assert!(sealers.iter().all(|s| Arc::ptr_eq(s, &sealers[0])));
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_remembered() {
        let cached = CachedSealingKey::new(CountingKeyStore {
            failures: 1,
            ..Default::default()
        });
        let err = cached.sealer().await.unwrap_err();
        assert!(err.retryable(), "{err}");
        cached.sealer().await.unwrap();
        cached.sealer().await.unwrap();
        assert_eq!(cached.source.fetches.load(Ordering::SeqCst), 2);
    }
}
