//! OAuth access tokens for subscriptions that use client credentials: fetched through the
//! address guard, kept per subscription for the life of the process (across batches on the
//! runner, per warm instance on Lambda) until shortly before they expire.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::ports::{OutboundRequest, SendError};
use crate::Services;
use domain::ids::{AccountId, SubscriptionId};
use domain::oauth::{self, AccessToken, TOKEN_TIMEOUT};
use domain::subscription::{EndpointAuth, Subscription};
use domain::time::Timestamp;

/// Subscriptions whose tokens are kept at once; past it, tokens no longer fresh are dropped.
const MAX_KEPT_TOKENS: usize = 10_000;

type Slot = Arc<tokio::sync::Mutex<Option<Kept>>>;

struct Kept {
    /// Which credentials the token was fetched with: a change of any part (another token
    /// endpoint, client or secret) must not reuse a token fetched with the old ones.
    credentials: u64,
    token: AccessToken,
}

/// The tokens of this process, one slot per subscription. A slot's lock is held while its
/// token is fetched, so the concurrent deliveries of one batch make one token request.
#[derive(Default)]
pub struct OAuthTokens {
    slots: Mutex<HashMap<(AccountId, SubscriptionId), Slot>>,
}

impl OAuthTokens {
    fn slot(&self, sub: &Subscription, now: Timestamp) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .expect("the token slots are never poisoned");
        if slots.len() >= MAX_KEPT_TOKENS {
            // A slot in use (locked) or holding a fresh token is kept; the others go.
            slots.retain(|_, slot| match slot.try_lock() {
                Err(_) => true,
                Ok(kept) => kept.as_ref().is_some_and(|k| k.token.is_fresh(now)),
            });
        }
        slots
            .entry((sub.account_id.clone(), sub.id.clone()))
            .or_default()
            .clone()
    }
}

fn fingerprint(auth: &EndpointAuth) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(auth)
        .expect("credentials serialise")
        .hash(&mut hasher);
    hasher.finish()
}

/// The token to send to `sub`'s endpoint: the kept one while fresh, else a new one fetched
/// within `budget` (at most `TOKEN_TIMEOUT`). `rejected`: the endpoint answered 401 to this
/// token, so it is not reused (unless another delivery has already replaced it). `None`
/// when `sub` does not use client credentials.
pub async fn token_for(
    services: &Services,
    sub: &Subscription,
    rejected: Option<&str>,
    budget: Duration,
) -> Option<Result<String, SendError>> {
    let auth = sub.auth.as_ref()?;
    let request = oauth::token_request(auth)?;
    let credentials = fingerprint(auth);
    let slot = services.oauth_tokens.slot(sub, services.clock.now());
    let mut kept = slot.lock().await;
    let now = services.clock.now();
    if let Some(k) = kept.as_ref() {
        let usable = k.credentials == credentials
            && k.token.is_fresh(now)
            && rejected.is_none_or(|r| r != k.token.value);
        if usable {
            return Some(Ok(k.token.value.clone()));
        }
    }
    *kept = None;
    let answer = services
        .http
        .fetch(OutboundRequest {
            url: request.url,
            headers: request.headers,
            body: Bytes::from(request.body),
            timeout: TOKEN_TIMEOUT.min(budget),
        })
        .await;
    let fetched = match answer {
        Ok(fetched) => {
            oauth::read_token_answer(fetched.status, &fetched.body, now).map_err(|detail| {
                SendError::OAuthToken {
                    detail,
                    refused: false,
                }
            })
        }
        Err(e) => Err(SendError::OAuthToken {
            refused: matches!(e, SendError::Refused(_)),
            detail: format!("the token endpoint could not be reached: {e}"),
        }),
    };
    Some(match fetched {
        Ok(token) => {
            let value = token.value.clone();
            *kept = Some(Kept { credentials, token });
            Ok(value)
        }
        Err(e) => {
            tracing::warn!(
                subscription_id = %sub.id,
                account_id = %sub.account_id,
                error = %e,
                "no OAuth token"
            );
            Err(e)
        }
    })
}
