//! JWT per delivery: the service's key ring, read once in a while and rotated when due
//! (by whichever process first sees it due; the store's conditional write makes one of
//! them win), and the token each delivery carries.

use std::sync::Arc;
use std::time::Duration;

use crate::ports::SendError;
use crate::{Result, Services};
use domain::delivery::DeliveryTask;
use domain::jwt::{self, Claims, KeyRing};
use domain::subscription::Subscription;
use domain::time::Timestamp;

/// How long a process signs with the ring it read before reading it again: another
/// process's rotation is seen within this, far inside a new key's day of notice.
pub const RING_KEPT: Duration = Duration::from_secs(300);
/// Rotations lost to another writer before giving up for this call.
const MAX_CONFLICTS: usize = 5;
/// The issuer when the deployment names no public URL.
pub const DEFAULT_ISSUER: &str = "webhooks";

/// The ring as last read, and when.
#[derive(Default)]
pub struct JwtRingCache {
    kept: tokio::sync::Mutex<Option<(Timestamp, Arc<KeyRing>)>>,
}

/// The current ring: the kept one while recent, else the stored one, rotated first if due
/// (the first call of a deployment creates its first key).
pub async fn ring(services: &Services) -> Result<Arc<KeyRing>> {
    let now = services.clock.now();
    let mut kept = services.jwt_ring.kept.lock().await;
    if let Some((read_at, ring)) = kept.as_ref() {
        if now < *read_at + RING_KEPT && !ring.rotation_due(now) {
            return Ok(ring.clone());
        }
    }
    let mut conflicts = 0;
    let ring = loop {
        let stored = services.jwt_keys.key_ring().await?.unwrap_or_default();
        match stored.rotated(now, &*services.random) {
            None => break stored,
            Some(next) => {
                if services.jwt_keys.put_key_ring(&next).await? {
                    tracing::info!(
                        version = next.version,
                        keys = next.keys.len(),
                        "JWT signing keys rotated"
                    );
                    break next;
                }
                conflicts += 1;
                if conflicts >= MAX_CONFLICTS {
                    return Err(crate::Error::storage(
                        "the JWT key ring kept changing while it was rotated",
                    ));
                }
            }
        }
    };
    let ring = Arc::new(ring);
    *kept = Some((now, ring.clone()));
    Ok(ring)
}

/// The issuer (`iss`): the service's public URL, where `/v1/.well-known/jwks.json` is.
pub fn issuer(services: &Services) -> String {
    match services.settings.console_url.trim_end_matches('/') {
        "" => DEFAULT_ISSUER.to_string(),
        url => url.to_string(),
    }
}

/// The token of one request of `task` to `sub`: ES256, valid five minutes, a `jti` of its
/// own, and the delivery's `webhook-id`.
pub async fn token_for(
    services: &Services,
    sub: &Subscription,
    audience: Option<&str>,
    task: &DeliveryTask,
    now: Timestamp,
) -> std::result::Result<String, SendError> {
    // The service's own failure (its key store unreachable): the attempt fails and is
    // retried like a network failure, and the log says whose failure it was.
    let unavailable =
        |why: String| SendError::Network(format!("the service's JWT signing key: {why}"));
    let ring = ring(services)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let key = ring
        .signing(now)
        .ok_or_else(|| unavailable("no key signs yet".into()))?;
    let claims = Claims::new(
        &issuer(services),
        sub.id.as_str(),
        audience.unwrap_or(&sub.url),
        task.delivery_id.as_str(),
        now,
        &*services.random,
    );
    jwt::token(key, &claims).ok_or_else(|| unavailable(format!("key {} is damaged", key.kid)))
}

/// The JWKS document of `GET /v1/.well-known/jwks.json`.
pub async fn jwks(services: &Services) -> Result<serde_json::Value> {
    Ok(ring(services).await?.jwks(services.clock.now()))
}
