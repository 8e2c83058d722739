//! The sealing decorator over a real store: the store holds only sealed secrets, the use
//! cases read them in clear, a row that does not open is an error naming it, and the key is
//! asked for only when a value is sealed or a sealed one opened.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use app::ports::{FixedSealingKey, OsRandom, SealingKeys, SubscriptionStore};
use app::sealed::SealedSubscriptions;
use app::ErrorKind;
use async_trait::async_trait;
use domain::sealing::Sealer;
use domain::subscription::EndpointAuth;
use store_memory::MemorySubscriptionStore;
use support::{account, subscription};

fn sealer(byte: u8) -> Arc<dyn SealingKeys> {
    Arc::new(FixedSealingKey::new(Arc::new(Sealer::new(&[byte; 32]))))
}

/// A key source that counts how often it is asked.
struct CountedKey {
    asked: AtomicUsize,
}

#[async_trait]
impl SealingKeys for CountedKey {
    async fn sealer(&self) -> app::Result<Arc<Sealer>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Sealer::new(&[5u8; 32])))
    }
}

#[tokio::test]
async fn the_key_is_asked_for_only_to_seal_or_to_open_a_sealed_value() {
    let inner: Arc<dyn SubscriptionStore> = Arc::new(MemorySubscriptionStore::new());
    let key = Arc::new(CountedKey {
        asked: AtomicUsize::new(0),
    });
    let asked = || key.asked.load(Ordering::SeqCst);
    let sealed = SealedSubscriptions::new(inner.clone(), key.clone(), Arc::new(OsRandom));
    assert_eq!(asked(), 0, "asked at construction");

    // Nothing sealed to read: an empty listing, a missing row, rows from before sealing, a
    // delete.
    let acct = account("acct_lazy");
    assert!(sealed.list_all(&acct).await.unwrap().is_empty());
    let old = subscription("acct_lazy", "wh_old", &["*"]);
    assert_eq!(sealed.get(&acct, &old.id).await.unwrap(), None);
    inner.put(&old).await.unwrap();
    assert_eq!(sealed.get(&acct, &old.id).await.unwrap(), Some(old.clone()));
    assert_eq!(
        sealed.list_all(&acct).await.unwrap(),
        std::slice::from_ref(&old)
    );
    assert!(sealed.delete(&acct, &old.id).await.unwrap());
    assert_eq!(asked(), 0, "asked with nothing to seal or open");

    // Sealing asks; so does opening what was sealed.
    let sub = subscription("acct_lazy", "wh_new", &["*"]);
    sealed.put(&sub).await.unwrap();
    assert_eq!(asked(), 1);
    assert_eq!(sealed.get(&acct, &sub.id).await.unwrap(), Some(sub.clone()));
    assert_eq!(sealed.list_all(&acct).await.unwrap(), [sub]);
    assert_eq!(asked(), 3);
}

#[tokio::test]
async fn the_store_holds_secrets_sealed_and_the_use_cases_read_them_in_clear() {
    let inner: Arc<dyn SubscriptionStore> = Arc::new(MemorySubscriptionStore::new());
    let sealed = SealedSubscriptions::new(inner.clone(), sealer(1), Arc::new(OsRandom));
    let mut sub = subscription("acct_s", "wh_s", &["*"]);
    sub.auth = Some(EndpointAuth::Basic {
        username: "svc".into(),
        password: "pa55word".into(),
    });
    sub.headers.insert("X-Token".into(), "t0ken".into());
    sealed.put(&sub).await.unwrap();

    let raw = inner.get(&sub.account_id, &sub.id).await.unwrap().unwrap();
    let text = serde_json::to_string(&raw).unwrap();
    for secret in ["pa55word", "t0ken", sub.secrets[0].secret.as_str()] {
        assert!(!text.contains(secret), "{secret} stored in clear: {text}");
    }
    assert_eq!(
        sealed.get(&sub.account_id, &sub.id).await.unwrap(),
        Some(sub.clone())
    );
    assert_eq!(
        sealed.list_all(&account("acct_s")).await.unwrap(),
        [sub.clone()]
    );
    let keys = [(sub.account_id.clone(), sub.id.clone())];
    assert_eq!(sealed.get_many(&keys).await.unwrap(), [sub.clone()]);

    // Written before sealing: read as it is, sealed at its next write.
    let mut old = subscription("acct_s", "wh_old", &["*"]);
    old.version = 1;
    inner.put(&old).await.unwrap();
    assert_eq!(
        sealed.get(&old.account_id, &old.id).await.unwrap(),
        Some(old.clone())
    );
    let mut changed = old.clone();
    changed.version = 2;
    assert!(sealed.put_if_version(&changed, 1).await.unwrap());
    let raw = inner.get(&old.account_id, &old.id).await.unwrap().unwrap();
    assert!(raw.secrets[0].secret.starts_with("sealed:v1:"));

    // Another key: the row is an error that names it, not a subscription with a garbage
    // secret.
    let wrong = SealedSubscriptions::new(inner, sealer(2), Arc::new(OsRandom));
    let err = wrong.get(&sub.account_id, &sub.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("wh_s"), "{err}");
}
