use async_trait::async_trait;

use super::Page;
use crate::Result;
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate};
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::stats::{StatsGrain, StatsSlot};
use domain::time::Timestamp;

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Creates each delivery unless its id exists; says which were created. Fan-out uses it
    /// only for deliveries that are never sent (a paused subscription's); a sent one is
    /// logged by its first outcome.
    async fn create_batch(&self, deliveries: &[Delivery]) -> Result<Vec<bool>>;
    /// Applies a batch of outcomes. A delivery is logged from its first outcome on: an
    /// outcome whose delivery is not logged yet creates it (`first_of_its_delivery`), and a
    /// first outcome that `kept_short_if_first` keeps its attempt on the delivery itself
    /// (read back as `Attempt::first_success`). Otherwise an update's attempt is appended
    /// with the next attempt number (the number it carries is ignored) and counted on the
    /// delivery. Says, for each update, whether it applied: only an id logged under another
    /// account does not, and changes nothing. Every attempt counts in the stats (the request
    /// was made).
    async fn record(&self, updates: &[DeliveryUpdate]) -> Result<Vec<bool>>;
    /// Moves a delivery from the status it was read in to `to`, only if nothing changed it
    /// since: still `from` with the same attempt count. Says whether it moved. The status
    /// changes outside of an attempt (a redrive, and undoing one) go through here, so they
    /// can never overwrite an outcome recorded meanwhile. Moving to `pending` schedules it
    /// for `at`; the last error stays for the reader.
    async fn move_status(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
        from: (DeliveryStatus, u32),
        to: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool>;
    async fn get(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Option<Delivery>>;
    /// Oldest first.
    async fn attempts(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Vec<Attempt>>;
    async fn list_for_event(
        &self,
        account_id: &AccountId,
        event_id: &EventId,
    ) -> Result<Vec<Delivery>>;
    /// A subscription's deliveries, newest first, optionally of one status. A page may
    /// hold fewer than `limit` (even none) and still have a next: a backend may bound what
    /// one page reads.
    async fn list_for_subscription(
        &self,
        account_id: &AccountId,
        subscription_id: &SubscriptionId,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>>;
    /// An account's dead deliveries (the dead letters), most recently updated first.
    async fn list_dead(
        &self,
        account_id: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>>;
    /// Pending deliveries of any account that are overdue: due (their `next_attempt_at`, or
    /// their last change when none is set) before `before`. A page of at most `limit`, in
    /// an order of the backend's choosing, and the cursor of the next: following the
    /// cursors from `None` visits every overdue delivery once. The sweep's question (see
    /// `sweep`): a delivery with a message behind it changes by its due time, so one long
    /// overdue may have none.
    async fn overdue(
        &self,
        before: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>>;
    /// The stats (see `domain::stats`) of an account, or of one of its subscriptions, by
    /// `grain`: per subscription, one sum per five-minute slot or per hour, each starting
    /// on its grain, at or after `since`, in any order. `record` keeps them: each batch adds
    /// `domain::stats::slot_deltas` of its outcomes, in the same write where the backend
    /// allows it. A backend may keep hours beside the slots (the embedded one does, so a
    /// 30-day report reads 720 rows per subscription) or sum them on read
    /// (`domain::stats::roll_up`).
    async fn stats_slots(
        &self,
        account_id: &AccountId,
        subscription_id: Option<&SubscriptionId>,
        since: Timestamp,
        grain: StatsGrain,
    ) -> Result<Vec<StatsSlot>>;
}
