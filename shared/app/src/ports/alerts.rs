use async_trait::async_trait;

use crate::Result;
use domain::alerts::{AlertSettings, Mail, ThrottleState};
use domain::ids::AccountId;
use domain::time::Timestamp;

/// Each account's alert settings, and the throttle state of each alert topic (see
/// `domain::alerts`).
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// The account's saved settings; `None` when it never saved any.
    async fn settings(&self, account_id: &AccountId) -> Result<Option<AlertSettings>>;
    /// Replaces the account's settings.
    async fn put_settings(&self, account_id: &AccountId, settings: &AlertSettings) -> Result<()>;
    /// The throttle state of one topic (by `AlertTopic::key`).
    async fn throttle(&self, account_id: &AccountId, key: &str) -> Result<Option<ThrottleState>>;
    /// Writes `next` only if the stored state is still `prior` (by version; `None`: the
    /// topic has no state yet). False when another write came first: nothing was written.
    async fn put_throttle(
        &self,
        account_id: &AccountId,
        key: &str,
        prior: Option<&ThrottleState>,
        next: &ThrottleState,
    ) -> Result<bool>;
    /// The states of topics holding alerts whose digest is due at or before `now`
    /// (`ThrottleState::digest_due`), earliest first, at most `limit`. A state's key is
    /// `state.topic.key()`.
    async fn due_digests(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(AccountId, ThrottleState)>>;
}

/// Sends an e-mail. A failure says whether it may succeed later (`Error::Mail`).
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Mail) -> Result<()>;
}
