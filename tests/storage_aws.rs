//! Layout 2 on DynamoDB (a moto server), where the bytes of an item are what is billed:
//! events are stored deflated, and items written by layout 1 still read back.

use aws_sdk_dynamodb::types::AttributeValue;
use domain::catalog::EventType;
use domain::event::Event;
use domain::ids::{AccountId, EventId};
use domain::time::Timestamp;
use e2e::moto;
use serde_json::json;

fn event(id: &str, summary: String) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        event_type: EventType::known("call.ended").unwrap(),
        account_id: AccountId::parse("acct_layout").unwrap(),
        occurred_at: "2026-11-30T08:00:00Z".into(),
        received_at: Timestamp::from_millis(1_900_000_000_000),
        data: json!({"call_id": id, "summary": summary}),
    }
}

/// About 1.2 KB of varied prose, as a call's summary is.
fn summary() -> String {
    let words = [
        "caller",
        "asked",
        "to",
        "move",
        "the",
        "appointment",
        "agent",
        "confirmed",
        "billing",
        "question",
        "escalated",
        "refund",
        "approved",
        "technician",
        "visit",
        "Thursday",
        "morning",
        "plan",
        "price",
        "declined",
        "follow",
        "up",
        "within",
        "two",
        "days",
    ];
    let mut text = String::new();
    let mut state = 7u64;
    while text.len() < 1_200 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        text.push_str(words[(state >> 33) as usize % words.len()]);
        text.push(' ');
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_deflated_and_layout_1_items_read_back() {
    let (clients, resources) = moto::deployment("layout").await;
    let stores = store_aws::stores(&clients, &resources);
    let account = AccountId::parse("acct_layout").unwrap();

    // A new event: its JSON deflated in `docz`, well under the 1 KB of one write unit.
    let new = event("evt_new", summary());
    let json = serde_json::to_string(&new).unwrap();
    assert!(json.len() > 1_300, "{}", json.len());
    stores
        .events
        .insert_batch(std::slice::from_ref(&new))
        .await
        .unwrap();
    let item = clients
        .dynamodb
        .get_item()
        .table_name(&resources.events_table)
        .key("account_id", AttributeValue::S(account.to_string()))
        .key("id", AttributeValue::S("evt_new".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("stored");
    assert!(!item.contains_key("doc") && !item.contains_key("enqueued"));
    let Some(AttributeValue::B(deflated)) = item.get("docz") else {
        panic!("no deflated document: {item:?}");
    };
    assert!(
        deflated.as_ref().len() < 800,
        "{} bytes deflated of {}",
        deflated.as_ref().len(),
        json.len()
    );

    // An event as layout 1 wrote it: its JSON as text, with the `enqueued` flag.
    let old = event("evt_old", "written before layout 2".into());
    clients
        .dynamodb
        .put_item()
        .table_name(&resources.events_table)
        .item("account_id", AttributeValue::S(account.to_string()))
        .item("id", AttributeValue::S("evt_old".into()))
        .item("type", AttributeValue::S("call.ended".into()))
        .item(
            "received_at",
            AttributeValue::N((old.received_at.as_millis() - 1).to_string()),
        )
        .item("enqueued", AttributeValue::Bool(true))
        .item("expires_at", AttributeValue::N("4000000000".into()))
        .item(
            "doc",
            AttributeValue::S(serde_json::to_string(&old).unwrap()),
        )
        .send()
        .await
        .unwrap();

    for (id, expected) in [("evt_new", &new), ("evt_old", &old)] {
        let got = stores
            .events
            .get(&account, &EventId::parse(id).unwrap())
            .await
            .unwrap();
        assert_eq!(got.as_ref(), Some(expected), "{id}");
    }
    let listed = stores.events.list(&account, None, None, 10).await.unwrap();
    assert_eq!(listed.items, [new, old], "newest first, both layouts");
}
