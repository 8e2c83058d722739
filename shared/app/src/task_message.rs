//! The body of a deliveries-queue message: one task, or a *pack* of tasks to one
//! subscription.
//!
//! A request of twenty events to an account with three subscriptions makes sixty
//! deliveries. Sent one message each, the queue is paid sixty sends, receives and deletes,
//! and deliver sees them spread over several batches, each writing its own stats slot and
//! listing. Packed by subscription they are three messages, and the twenty deliveries of
//! one subscription are logged together. A pack is only ever a first try: whatever of it
//! is not finished at its receive (a retry, a deferral) is split off into a message of its
//! own, and the pack is acknowledged once those are sent.

use domain::delivery::DeliveryTask;
use serde::{Deserialize, Serialize};

/// How a pack's body starts: a single task's never does (its first field is
/// `delivery_id`).
const PACK_START: &str = r#"{"tasks":["#;
const PACK_END: &str = "]}";

/// The most a pack's body holds. SQS bills one request per 64 KiB of a message, so a
/// larger pack saves nothing on the queue and only makes a larger unit of redelivery.
/// About forty realistic (1.5 KB) tasks; a task larger than this travels alone.
pub const MAX_PACK_BYTES: usize = 64 * 1024 - 1024;

/// The most tasks a pack holds, however small: a request's worth at the rate a platform
/// that posts each second's events sends them. Each batch of packs is logged in one write,
/// and a larger one makes the write (and what the embedded store holds to undo it) larger
/// for no saving left to make.
pub const MAX_PACK_TASKS: usize = 20;

#[derive(Deserialize, Serialize)]
struct Pack {
    tasks: Vec<DeliveryTask>,
}

/// The tasks `body` carries, and whether it is a pack (then each task's delivery is
/// decided on its own, see `deliver`).
pub fn parse(body: &str) -> serde_json::Result<(Vec<DeliveryTask>, bool)> {
    if body.starts_with(PACK_START) {
        let pack: Pack = serde_json::from_str(body)?;
        if pack.tasks.is_empty() {
            return Err(serde::de::Error::custom("a pack of no tasks"));
        }
        Ok((pack.tasks, true))
    } else {
        Ok((vec![serde_json::from_str(body)?], false))
    }
}

/// The body of one task alone.
pub fn single(task: &DeliveryTask) -> String {
    serde_json::to_string(task).expect("a delivery task serialises")
}

/// Gathers serialised tasks of one subscription into bodies of at most [`MAX_PACK_BYTES`]
/// (a task larger than that alone). A body of one task is that task's own body.
#[derive(Default)]
pub struct Packer {
    open: Vec<String>,
    bytes: usize,
}

impl Packer {
    /// Adds `task` (its [`single`] body); answers a body that is full, if adding it closed
    /// one.
    pub fn add(&mut self, task: String) -> Option<String> {
        let size = task.len() + 1;
        let closed = (!self.open.is_empty()
            && (self.open.len() == MAX_PACK_TASKS
                || PACK_START.len() + PACK_END.len() + self.bytes + size > MAX_PACK_BYTES))
            .then(|| self.close())
            .flatten();
        self.bytes += size;
        self.open.push(task);
        closed
    }

    /// The body of what was added since the last one closed, if anything was.
    pub fn close(&mut self) -> Option<String> {
        self.bytes = 0;
        match self.open.len() {
            0 => None,
            1 => self.open.pop(),
            _ => {
                let body = format!("{PACK_START}{}{PACK_END}", self.open.join(","));
                self.open.clear();
                Some(body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::catalog::EventType;
    use domain::delivery::Payload;
    use domain::event::Event;
    use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
    use domain::time::Timestamp;

    fn task(n: usize, data_bytes: usize) -> DeliveryTask {
        let event = Event {
            id: EventId::parse(format!("evt_{n}")).unwrap(),
            event_type: EventType::known("call.ended").unwrap(),
            account_id: AccountId::parse("acct_a").unwrap(),
            occurred_at: "2026-11-30T12:00:00Z".into(),
            received_at: Timestamp::from_millis(1_700_000_000_000),
            data: serde_json::json!({ "text": "x".repeat(data_bytes) }),
        };
        let subscription_id = SubscriptionId::parse("wh_1").unwrap();
        DeliveryTask {
            delivery_id: DeliveryId::of(
                &event.account_id,
                &event.id,
                event.received_at,
                &subscription_id,
            ),
            account_id: event.account_id.clone(),
            subscription_id,
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            payload: Payload::of(&event),
            prior_receives: 0,
            parkings: 0,
            created_at: Some(event.received_at),
            logged: false,
            recheck: false,
            listed_on_event: false,
            not_before: None,
        }
    }

    fn ids(tasks: &[DeliveryTask]) -> Vec<String> {
        tasks.iter().map(|t| t.event_id.to_string()).collect()
    }

    #[test]
    fn a_pack_reads_back_as_its_tasks_in_order_and_a_single_task_as_itself() {
        let tasks: Vec<_> = (0..3).map(|n| task(n, 100)).collect();
        let mut packer = Packer::default();
        for t in &tasks {
            assert!(packer.add(single(t)).is_none());
        }
        let body = packer.close().unwrap();
        assert!(packer.close().is_none(), "closing empties it");
        let (read, packed) = parse(&body).unwrap();
        assert!(packed);
        assert_eq!(ids(&read), ["evt_0", "evt_1", "evt_2"]);
        assert_eq!(read[1].payload.get(), tasks[1].payload.get());

        let mut packer = Packer::default();
        packer.add(single(&tasks[0]));
        let alone = packer.close().unwrap();
        assert_eq!(
            alone,
            single(&tasks[0]),
            "one task is sent as it always was"
        );
        let (read, packed) = parse(&alone).unwrap();
        assert!(!packed);
        assert_eq!(ids(&read), ["evt_0"]);
    }

    #[test]
    fn packs_stay_within_their_size_and_a_large_task_goes_alone() {
        let mut packer = Packer::default();
        let mut bodies = Vec::new();
        for n in 0..100 {
            bodies.extend(packer.add(single(&task(n, 1500))));
        }
        bodies.extend(packer.close());
        assert!(bodies.len() >= 3, "{}", bodies.len());
        let mut seen = Vec::new();
        for body in &bodies {
            assert!(body.len() <= MAX_PACK_BYTES, "{}", body.len());
            let tasks = parse(body).unwrap().0;
            assert!(tasks.len() <= MAX_PACK_TASKS);
            seen.extend(ids(&tasks));
        }
        let expected: Vec<String> = (0..100).map(|n| format!("evt_{n}")).collect();
        assert_eq!(seen, expected, "every task once, in order");

        // Small ones, by count.
        let mut packer = Packer::default();
        let mut bodies: Vec<String> = (0..45)
            .filter_map(|n| packer.add(single(&task(n, 10))))
            .collect();
        bodies.extend(packer.close());
        let sizes: Vec<usize> = bodies.iter().map(|b| parse(b).unwrap().0.len()).collect();
        assert_eq!(
            sizes,
            [MAX_PACK_TASKS, MAX_PACK_TASKS, 45 - 2 * MAX_PACK_TASKS]
        );

        let mut packer = Packer::default();
        packer.add(single(&task(0, 10)));
        let large = single(&task(1, MAX_PACK_BYTES));
        let first = packer.add(large.clone()).unwrap();
        assert_eq!(ids(&parse(&first).unwrap().0), ["evt_0"]);
        assert_eq!(packer.close().unwrap(), large);
    }

    #[test]
    fn a_malformed_or_empty_pack_is_refused() {
        assert!(parse(r#"{"tasks":[]}"#).is_err());
        assert!(parse(r#"{"tasks":[{"delivery_id":"d"}]}"#).is_err());
        assert!(parse(r#"{"tasks":["#).is_err());
    }
}
