//! Alert settings and throttles, by account.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use app::ports::AlertStore;
use app::Result;
use domain::alerts::{AlertSettings, ThrottleState};
use domain::ids::AccountId;
use domain::time::Timestamp;

#[derive(Default)]
pub struct MemoryAlertStore {
    settings: Mutex<HashMap<AccountId, AlertSettings>>,
    throttles: Mutex<HashMap<(AccountId, String), ThrottleState>>,
}

impl MemoryAlertStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AlertStore for MemoryAlertStore {
    async fn settings(&self, account_id: &AccountId) -> Result<Option<AlertSettings>> {
        Ok(lock(&self.settings)?.get(account_id).cloned())
    }

    async fn put_settings(&self, account_id: &AccountId, settings: &AlertSettings) -> Result<()> {
        lock(&self.settings)?.insert(account_id.clone(), settings.clone());
        Ok(())
    }

    async fn throttle(&self, account_id: &AccountId, key: &str) -> Result<Option<ThrottleState>> {
        Ok(lock(&self.throttles)?
            .get(&(account_id.clone(), key.to_string()))
            .cloned())
    }

    async fn put_throttle(
        &self,
        account_id: &AccountId,
        key: &str,
        prior: Option<&ThrottleState>,
        next: &ThrottleState,
    ) -> Result<bool> {
        let mut throttles = lock(&self.throttles)?;
        let slot = (account_id.clone(), key.to_string());
        if throttles.get(&slot).map(|s| s.version) != prior.map(|s| s.version) {
            return Ok(false);
        }
        throttles.insert(slot, next.clone());
        Ok(true)
    }

    async fn due_digests(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(AccountId, ThrottleState)>> {
        let throttles = lock(&self.throttles)?;
        let mut due: Vec<(Timestamp, &AccountId, &ThrottleState)> = throttles
            .iter()
            .filter_map(|((account, _), s)| {
                let at = s.digest_due()?;
                (at <= now).then_some((at, account, s))
            })
            .collect();
        due.sort_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| a.2.topic.key().cmp(&b.2.topic.key()))
        });
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(_, a, s)| (a.clone(), s.clone()))
            .collect())
    }
}
