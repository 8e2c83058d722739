//! Redrive against a deliver run that finishes before the redrive call returns: the queue
//! here runs the deliver use case inside `send_batch`, the fastest a Lambda could be.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use app::handle_deliveries;
use app::ports::{OutgoingMessage, Queue, QueueMessage};
use app::redrive::{can_redrive, redrive};
use app::{Error, Result, Services};
use domain::delivery::{Delivery, DeliveryStatus};
use domain::ids::SubscriptionId;
use support::{
    account, delivery_id, event, failures, receive_all, records_of, sqs_event, subscription,
    Harness,
};

/// A deliveries queue whose sends are delivered before `send_batch` returns.
struct InlineDeliver {
    inner: Arc<dyn Queue>,
    services: OnceLock<Services>,
    refuse_sends: AtomicBool,
}

#[async_trait]
impl Queue for InlineDeliver {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()> {
        if self.refuse_sends.load(Ordering::SeqCst) {
            return Err(Error::queue("refused by the test"));
        }
        self.inner.send_batch(messages).await?;
        let services = self.services.get().expect("services are set");
        let received = receive_all(&self.inner).await;
        let response = handle_deliveries(services, sqs_event(records_of(&received))).await;
        assert!(failures(&response).is_empty(), "{response:?}");
        let done: Vec<String> = received.into_iter().map(|m| m.receipt_handle).collect();
        self.inner.delete_batch(done).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        self.inner.receive(max, wait).await
    }
    async fn delete_batch(&self, receipt_handles: Vec<String>) -> Result<()> {
        self.inner.delete_batch(receipt_handles).await
    }
    async fn change_visibility_batch(&self, changes: Vec<(String, Duration)>) -> Result<()> {
        self.inner.change_visibility_batch(changes).await
    }
    fn releases_held(&self) -> bool {
        self.inner.releases_held()
    }
    async fn release_held(&self, key: &str, per_second: u32) -> Result<usize> {
        self.inner.release_held(key, per_second).await
    }
}

/// A dead delivery of an event to a subscription whose endpoint answers `statuses`.
async fn dead_delivery(statuses: &[u16]) -> (Harness, Arc<InlineDeliver>, Delivery) {
    let mut inline = None;
    let h = Harness::with_stores(statuses, |stores| {
        let queue = Arc::new(InlineDeliver {
            inner: stores.deliveries_queue.clone(),
            services: OnceLock::new(),
            refuse_sends: AtomicBool::new(false),
        });
        stores.deliveries_queue = queue.clone();
        inline = Some(queue);
    });
    let inline = inline.unwrap();
    inline.services.set(h.services.clone()).ok().unwrap();
    let sub = subscription("acct_r", "wh_r", &["call.ended"]);
    h.services.subscriptions.put(&sub).await.unwrap();
    let event = event("acct_r", "evt_r", "call.ended");
    h.services
        .events
        .insert_batch(std::slice::from_ref(&event))
        .await
        .unwrap();
    let dead = Delivery {
        id: delivery_id("acct_r", "evt_r", "wh_r"),
        account_id: account("acct_r"),
        subscription_id: SubscriptionId::from_static("wh_r"),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        status: DeliveryStatus::Dead,
        attempt_count: 3,
        created_at: h.now(),
        updated_at: h.now(),
        next_attempt_at: None,
        last_error: Some("endpoint answered 500".into()),
        last_latency_ms: None,
    };
    h.services
        .deliveries
        .create_batch(std::slice::from_ref(&dead))
        .await
        .unwrap();
    (h, inline, dead)
}

async fn current(h: &Harness, d: &Delivery) -> Delivery {
    h.services
        .deliveries
        .get(&d.account_id, &d.id)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn an_outcome_recorded_before_the_redrive_returns_is_the_final_status() {
    let (h, _, dead) = dead_delivery(&[200]).await;
    assert_eq!(
        redrive(&h.services, std::slice::from_ref(&dead))
            .await
            .unwrap(),
        1
    );
    let d = current(&h, &dead).await;
    // Marking after sending turned this `succeeded` back into `pending`, with no message.
    assert_eq!(
        (d.status, d.attempt_count),
        (DeliveryStatus::Succeeded, 4),
        "{d:?}"
    );
    assert_eq!(h.http.sent().len(), 1);
    assert!(can_redrive(d.status), "a retry would be refused");
}

#[tokio::test]
async fn a_delivery_changed_since_it_was_read_is_not_redriven() {
    let (h, _, dead) = dead_delivery(&[200, 200]).await;
    // Someone else redrove it first; this caller still holds the dead copy.
    assert_eq!(
        redrive(&h.services, std::slice::from_ref(&dead))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        redrive(&h.services, std::slice::from_ref(&dead))
            .await
            .unwrap(),
        0
    );
    assert_eq!(h.http.sent().len(), 1, "sent twice from one stale read");
}

#[tokio::test]
async fn a_redrive_whose_send_fails_leaves_the_delivery_as_it_was() {
    let (h, inline, dead) = dead_delivery(&[]).await;
    inline.refuse_sends.store(true, Ordering::SeqCst);
    assert!(redrive(&h.services, std::slice::from_ref(&dead))
        .await
        .is_err());
    let d = current(&h, &dead).await;
    // Not stranded in `pending` without a message: still dead, listed, redrivable.
    assert_eq!(
        (d.status, d.attempt_count),
        (DeliveryStatus::Dead, 3),
        "{d:?}"
    );
    let listed = h
        .services
        .deliveries
        .list_dead(&account("acct_r"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
}
