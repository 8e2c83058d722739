//! Layout 2 on DynamoDB (a moto server), where the bytes of an item are what is billed:
//! events are stored deflated, and items written by layout 1 still read back; events are
//! listed from one listing per request rather than an index entry each, and a
//! subscription's first-try successes from one listing per deliver batch; the sweep queries
//! the pending deliveries' index instead of scanning the table.

use app::ports::DeliveryLog;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::catalog::EventType;
use domain::delivery::{Delivery, DeliveryStatus};
use domain::event::Event;
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
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

/// Every page of an account's events (of `event_type`), `limit` at a time: the ids.
async fn every_page(
    events: &dyn app::ports::EventStore,
    account: &AccountId,
    event_type: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = events
            .list(account, event_type, cursor.as_deref(), limit)
            .await
            .unwrap();
        assert!(page.items.len() <= limit);
        ids.extend(page.items.into_iter().map(|e| e.id.into_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
    panic!("more than 100 pages: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_from_one_listing_per_request_each_once() {
    let (clients, resources) = moto::deployment("listing").await;
    let stores = store_aws::stores(&clients, &resources);
    let account = AccountId::parse("acct_layout").unwrap();
    let table = &resources.events_table;

    // A request of 25 events (every third an agent's), and one of another account.
    let request: Vec<Event> = (0..25)
        .map(|i| {
            let mut e = event(&format!("evt_{i:02}"), format!("call {i}"));
            if i % 3 == 0 {
                e.event_type = EventType::known("agent.status_changed").unwrap();
            }
            e
        })
        .collect();
    let mut other = event("evt_other", "another account's".into());
    other.account_id = AccountId::parse("acct_other").unwrap();
    let mut batch = request.clone();
    batch.push(other);
    stores.events.insert_batch(&batch).await.unwrap();

    let listings = |account: &'static str| {
        let client = clients.dynamodb.clone();
        async move {
            client
                .query()
                .table_name(table)
                .key_condition_expression("account_id = :a AND begins_with(id, :l)")
                .expression_attribute_values(":a", AttributeValue::S(account.into()))
                .expression_attribute_values(":l", AttributeValue::S("#list#".into()))
                .send()
                .await
                .unwrap()
                .items
                .unwrap_or_default()
        }
    };
    // One listing for the account's 25 (not an index entry each), one for the other's.
    let ours = listings("acct_layout").await;
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(listings("acct_other").await.len(), 1);
    let listing_key = ours[0]["id"].as_s().unwrap().clone();
    let stored = clients
        .dynamodb
        .get_item()
        .table_name(table)
        .key("account_id", AttributeValue::S("acct_layout".into()))
        .key("id", AttributeValue::S("evt_07".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(
        !stored.contains_key("received_at"),
        "not in by_time: {stored:?}"
    );
    assert_eq!(stored["listed_in"].as_s().unwrap(), &listing_key);

    // A retry of three of them, later: they exist, and the retry's listing names them again.
    let mut retry: Vec<Event> = request[10..13].to_vec();
    for e in &mut retry {
        e.received_at = e.received_at.plus_millis(5_000);
    }
    stores.events.insert_batch(&retry).await.unwrap();
    assert_eq!(listings("acct_layout").await.len(), 2);

    // A listing whose events were never stored (their request failed after it).
    clients
        .dynamodb
        .put_item()
        .table_name(table)
        .item("account_id", AttributeValue::S("acct_layout".into()))
        .item("id", AttributeValue::S("#list#1900000009000#00".into()))
        .item(
            "ids",
            AttributeValue::L(vec![AttributeValue::S("evt_ghost".into())]),
        )
        .item(
            "types",
            AttributeValue::L(vec![AttributeValue::S("call.ended".into())]),
        )
        .item("expires_at", AttributeValue::N("4000000000".into()))
        .send()
        .await
        .unwrap();

    // Two events as written before listings: in the by_time index, older than all.
    for (id, ty) in [
        ("evt_old_a", "call.ended"),
        ("evt_old_b", "agent.status_changed"),
    ] {
        let mut old = event(id, "written before listings".into());
        old.event_type = EventType::known(ty).unwrap();
        old.received_at = Timestamp::from_millis(1_899_000_000_000);
        clients
            .dynamodb
            .put_item()
            .table_name(table)
            .item("account_id", AttributeValue::S("acct_layout".into()))
            .item("id", AttributeValue::S(id.into()))
            .item("type", AttributeValue::S(ty.into()))
            .item(
                "received_at",
                AttributeValue::N(old.received_at.as_millis().to_string()),
            )
            .item("expires_at", AttributeValue::N("4000000000".into()))
            .item(
                "doc",
                AttributeValue::S(serde_json::to_string(&old).unwrap()),
            )
            .send()
            .await
            .unwrap();
    }

    // Each stored event once, where it was first listed, newest first; then the old ones.
    let mut expected: Vec<String> = (0..25).rev().map(|i| format!("evt_{i:02}")).collect();
    expected.extend(["evt_old_b".to_string(), "evt_old_a".to_string()]);
    let expected_agents: Vec<String> = expected
        .iter()
        .filter(|id| *id == "evt_old_b" || id[4..].parse::<u32>().is_ok_and(|i| i % 3 == 0))
        .cloned()
        .collect();
    // Page sizes that end a page inside a listing, exactly at its end (25 = 5 × 5), and
    // past it into the index.
    for limit in [1, 4, 5, 7, 25, 26, 100] {
        assert_eq!(
            every_page(&*stores.events, &account, None, limit).await,
            expected,
            "limit {limit}"
        );
        assert_eq!(
            every_page(
                &*stores.events,
                &account,
                Some("agent.status_changed"),
                limit
            )
            .await,
            expected_agents,
            "agents, limit {limit}"
        );
    }
    assert_eq!(
        every_page(
            &*stores.events,
            &AccountId::parse("acct_other").unwrap(),
            None,
            10
        )
        .await,
        ["evt_other"]
    );

    // A cursor is the store's own: one naming a key outside the listings is refused.
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"l":{"listing":"evt_05","shown":0}}"#);
    let refused = stores.events.list(&account, None, Some(&forged), 10).await;
    assert!(
        matches!(refused, Err(app::Error::InvalidCursor)),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_listings_page_through_many_requests_and_old_cursors() {
    let (clients, resources) = moto::deployment("listings").await;
    let stores = store_aws::stores(&clients, &resources);
    let account = AccountId::parse("acct_layout").unwrap();
    let table = &resources.events_table;

    // 20 single-event requests, a millisecond apart: more listings than one query reads.
    let base = Timestamp::from_millis(1_900_000_000_000);
    for i in 0..20 {
        let mut e = event(&format!("evt_{i:02}"), format!("call {i}"));
        e.received_at = base.plus_millis(i);
        if i % 4 == 0 {
            e.event_type = EventType::known("agent.status_changed").unwrap();
        }
        stores.events.insert_batch(&[e]).await.unwrap();
    }
    // The same id posted again in the same millisecond with another type: a listing of its
    // own, and the event keeps the type it was stored with.
    let mut again = event("evt_05", "call 5".into());
    again.received_at = base.plus_millis(5);
    again.event_type = EventType::known("agent.status_changed").unwrap();
    stores.events.insert_batch(&[again]).await.unwrap();

    let newest_first: Vec<String> = (0..20).rev().map(|i| format!("evt_{i:02}")).collect();
    let agents: Vec<String> = (0..20)
        .rev()
        .filter(|i| i % 4 == 0)
        .map(|i| format!("evt_{i:02}"))
        .collect();
    let calls: Vec<String> = (0..20)
        .rev()
        .filter(|i| i % 4 != 0)
        .map(|i| format!("evt_{i:02}"))
        .collect();
    for limit in [1, 3, 8, 9, 19, 20, 50] {
        assert_eq!(
            every_page(&*stores.events, &account, None, limit).await,
            newest_first,
            "limit {limit}"
        );
        assert_eq!(
            every_page(
                &*stores.events,
                &account,
                Some("agent.status_changed"),
                limit
            )
            .await,
            agents,
            "agents, limit {limit}"
        );
        assert_eq!(
            every_page(&*stores.events, &account, Some("call.ended"), limit).await,
            calls,
            "calls, limit {limit}"
        );
    }

    // A page whose cursor's listing is gone (expired and deleted) resumes at the next.
    let first = stores.events.list(&account, None, None, 3).await.unwrap();
    let ids: Vec<&str> = first.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_19", "evt_18", "evt_17"]);
    let listing_of_17 = clients
        .dynamodb
        .get_item()
        .table_name(table)
        .key("account_id", AttributeValue::S("acct_layout".into()))
        .key("id", AttributeValue::S("evt_17".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap()["listed_in"]
        .as_s()
        .unwrap()
        .clone();
    clients
        .dynamodb
        .delete_item()
        .table_name(table)
        .key("account_id", AttributeValue::S("acct_layout".into()))
        .key("id", AttributeValue::S(listing_of_17))
        .send()
        .await
        .unwrap();
    let next = stores
        .events
        .list(&account, None, first.next_cursor.as_deref(), 3)
        .await
        .unwrap();
    let ids: Vec<&str> = next.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_16", "evt_15", "evt_14"]);

    // A cursor of the version before listings (a place in the by_time index) still pages
    // through the index.
    for (id, at) in [("evt_old_a", 1), ("evt_old_b", 2), ("evt_old_c", 3)] {
        let mut old = event(id, "written before listings".into());
        old.received_at = Timestamp::from_millis(1_899_000_000_000 + at);
        clients
            .dynamodb
            .put_item()
            .table_name(table)
            .item("account_id", AttributeValue::S("acct_layout".into()))
            .item("id", AttributeValue::S(id.into()))
            .item("type", AttributeValue::S("call.ended".into()))
            .item(
                "received_at",
                AttributeValue::N(old.received_at.as_millis().to_string()),
            )
            .item("expires_at", AttributeValue::N("4000000000".into()))
            .item(
                "doc",
                AttributeValue::S(serde_json::to_string(&old).unwrap()),
            )
            .send()
            .await
            .unwrap();
    }
    use base64::Engine;
    let old_cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        r#"{"account_id":{"S":"acct_layout"},"id":{"S":"evt_old_c"},"received_at":{"N":"1899000000003"}}"#,
    );
    let rest = stores
        .events
        .list(&account, None, Some(&old_cursor), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = rest.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_old_b", "evt_old_a"]);
    assert_eq!(rest.next_cursor, None);

    // 1 100 listings of calls (whose events are long gone) behind the agents' events: a
    // page filtered on agents looks through 1 000 of them, then ends with a cursor.
    let requests: Vec<_> = (0..1_100u64)
        .map(|i| {
            listing_put(
                format!("#list#{:013}#{i:016x}", 1_899_500_000_000u64 + i),
                &format!("evt_gone_{i}"),
                "call.ended",
                "4000000000",
            )
        })
        .collect();
    // And 1 100 listings past their TTL, not yet deleted, between those and the agents':
    // looked through, never shown, and no page stops on them for good.
    let expired: Vec<_> = (0..1_100u64)
        .map(|i| {
            listing_put(
                format!("#list#{:013}#{i:016x}", 1_899_600_000_000u64 + i),
                "evt_00",
                "agent.status_changed",
                "1",
            )
        })
        .collect();
    for chunk in requests.chunks(25).chain(expired.chunks(25)) {
        clients
            .dynamodb
            .batch_write_item()
            .request_items(table.clone(), chunk.to_vec())
            .send()
            .await
            .unwrap();
    }
    let agent = Some("agent.status_changed");
    let first = stores.events.list(&account, agent, None, 10).await.unwrap();
    let ids: Vec<String> = first.items.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, agents, "the agents' events, then the page's bound");
    assert!(first.next_cursor.is_some(), "the listings are not done");
    assert_eq!(
        every_page(&*stores.events, &account, agent, 10).await,
        agents,
        "pages bounded, then done"
    );
    // Unfiltered, the same listings only make the last page slower: 19 events (the
    // listing of 17 is gone) and 3 old.
    assert_eq!(
        every_page(&*stores.events, &account, None, 50).await.len(),
        22
    );
}

/// A batch write of a listing of the account `acct_layout` naming one event.
fn listing_put(
    key: String,
    id: &str,
    event_type: &str,
    expires_at: &str,
) -> aws_sdk_dynamodb::types::WriteRequest {
    let item = [
        ("account_id", AttributeValue::S("acct_layout".into())),
        ("id", AttributeValue::S(key)),
        ("ids", AttributeValue::L(vec![AttributeValue::S(id.into())])),
        (
            "types",
            AttributeValue::L(vec![AttributeValue::S(event_type.into())]),
        ),
        ("expires_at", AttributeValue::N(expires_at.into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    aws_sdk_dynamodb::types::WriteRequest::builder()
        .put_request(
            aws_sdk_dynamodb::types::PutRequest::builder()
                .set_item(Some(item))
                .build()
                .unwrap(),
        )
        .build()
}

fn outcome_of(
    id: &str,
    sub: &str,
    created_at: Timestamp,
    status: DeliveryStatus,
) -> domain::delivery::DeliveryUpdate {
    domain::delivery::DeliveryUpdate {
        delivery_id: DeliveryId::parse(id).unwrap(),
        account_id: AccountId::parse("acct_subs").unwrap(),
        subscription_id: SubscriptionId::parse(sub).unwrap(),
        event_id: EventId::parse(format!("evt_{id}")).unwrap(),
        event_type: EventType::known("call.ended").unwrap(),
        created_at,
        first_try: true,
        status,
        attempt: Some(domain::delivery::Attempt {
            attempt: 1,
            at: created_at.plus_millis(1),
            url: "https://example.com/hook".into(),
            request_headers: vec![],
            response_headers: vec![],
            status_code: Some(if status == DeliveryStatus::Succeeded {
                204
            } else {
                503
            }),
            latency_ms: 4,
            response_body: None,
            error: None,
        }),
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| created_at.plus_millis(60_000)),
        error: None,
        cause: None,
        at: created_at.plus_millis(5),
        listed_on_event: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_try_successes_are_listed_per_subscription_not_indexed() {
    let (clients, resources) = moto::deployment("sublist").await;
    let stores = store_aws::stores(&clients, &resources);
    let table = &resources.deliveries_table;
    let account = AccountId::parse("acct_subs").unwrap();
    let wh_1 = SubscriptionId::parse("wh_1").unwrap();
    let created = now_ms();

    // A deliver batch of one request's deliveries: three successes and a failure to wh_1,
    // one success to wh_2.
    use DeliveryStatus::{Pending, Succeeded};
    stores
        .deliveries
        .record(&[
            outcome_of("msg_s1", "wh_1", created, Succeeded),
            outcome_of("msg_s2", "wh_1", created, Succeeded),
            outcome_of("msg_s3", "wh_1", created, Succeeded),
            outcome_of("msg_f1", "wh_1", created, Pending),
            outcome_of("msg_o1", "wh_2", created, Succeeded),
        ])
        .await
        .unwrap();
    let items_of = |pk: String| {
        let client = clients.dynamodb.clone();
        async move {
            client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", AttributeValue::S(pk))
                .send()
                .await
                .unwrap()
                .items
                .unwrap_or_default()
        }
    };
    // One listing per subscription for the batch, naming its successes only.
    let listings = items_of("subscription#acct_subs#wh_1".into()).await;
    assert_eq!(listings.len(), 1, "{listings:?}");
    let AttributeValue::L(ids) = &listings[0]["ids"] else {
        panic!("no ids: {listings:?}");
    };
    assert_eq!(ids.len(), 3);
    // A lone success (wh_2's) is not listed: its listing would cost what its index entry
    // does.
    assert!(items_of("subscription#acct_subs#wh_2".into())
        .await
        .is_empty());
    // The listed successes are out of by_subscription (no sub_key); the failure and the
    // lone success are in it.
    for (id, indexed) in [
        ("msg_s1", false),
        ("msg_s3", false),
        ("msg_f1", true),
        ("msg_o1", true),
    ] {
        let item = items_of(id.into())
            .await
            .into_iter()
            .find(|i| i["sk"].as_s().is_ok_and(|sk| sk == "delivery"))
            .unwrap();
        assert_eq!(item.contains_key("sub_key"), indexed, "{id}: {item:?}");
        assert_eq!(item.contains_key("listed_in"), !indexed, "{id}: {item:?}");
    }

    // A late failed attempt of a listed success (an earlier copy of its message, answered
    // after): counted, and the delivery moves into the index, where its TTL (extended by
    // the count) is kept; it is still listed once.
    let mut late = outcome_of("msg_s2", "wh_1", created, Pending);
    late.first_try = false;
    stores.deliveries.record(&[late]).await.unwrap();
    let item = items_of("msg_s2".into())
        .await
        .into_iter()
        .find(|i| i["sk"].as_s().is_ok_and(|sk| sk == "delivery"))
        .unwrap();
    assert!(
        item.contains_key("sub_key") && !item.contains_key("listed_in"),
        "{item:?}"
    );
    assert_eq!(item["status"].as_s().unwrap(), "succeeded");

    // Older deliveries in the index, as written before listings, and a cursor of that
    // version into them: it pages through the index.
    let old: Vec<Delivery> = (1..=3)
        .map(|i| Delivery {
            id: DeliveryId::parse(format!("msg_old{i}")).unwrap(),
            account_id: account.clone(),
            subscription_id: wh_1.clone(),
            event_id: EventId::parse(format!("evt_old{i}")).unwrap(),
            event_type: EventType::known("call.ended").unwrap(),
            status: DeliveryStatus::Succeeded,
            attempt_count: 1,
            created_at: created.plus_millis(-1_000 * i),
            updated_at: created.plus_millis(-1_000 * i),
            next_attempt_at: None,
            last_error: None,
            last_latency_ms: Some(3),
        })
        .collect();
    stores.deliveries.create_batch(&old).await.unwrap();
    let all = stores
        .deliveries
        .list_for_subscription(&account, &wh_1, None, None, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = all.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 7, "each once: {ids:?}");
    assert_eq!(ids.iter().filter(|id| **id == "msg_s2").count(), 1);
    assert_eq!(&ids[4..], ["msg_old1", "msg_old2", "msg_old3"]);
    use base64::Engine;
    let old_cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({
            "pk": {"S": "msg_old1"},
            "sk": {"S": "delivery"},
            "sub_key": {"S": "acct_subs#wh_1"},
            "created_at": {"N": created.plus_millis(-1_000).as_millis().to_string()},
        })
        .to_string(),
    );
    let rest = stores
        .deliveries
        .list_for_subscription(&account, &wh_1, None, Some(&old_cursor), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = rest.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["msg_old2", "msg_old3"]);
    assert!(rest.next_cursor.is_none());
}

fn now_ms() -> Timestamp {
    use app::ports::Clock;
    app::ports::SystemClock.now()
}

fn pending(id: &str, updated_at: Timestamp, next_attempt_at: Option<Timestamp>) -> Delivery {
    Delivery {
        id: DeliveryId::parse(id).unwrap(),
        account_id: AccountId::parse("acct_sweep").unwrap(),
        subscription_id: SubscriptionId::parse("wh_sweep").unwrap(),
        event_id: EventId::parse(format!("evt_{id}")).unwrap(),
        event_type: EventType::known("call.ended").unwrap(),
        status: DeliveryStatus::Pending,
        attempt_count: 1,
        created_at: updated_at,
        updated_at,
        next_attempt_at,
        last_error: Some("HTTP 503".into()),
        last_latency_ms: Some(40),
    }
}

/// Every id `overdue` lists from `before`, following its cursors, `limit` at a time;
/// and whether its cursors were the index query's.
async fn overdue_ids(
    log: &dyn DeliveryLog,
    before: Timestamp,
    limit: usize,
) -> (Vec<String>, bool) {
    let (mut ids, mut queried, mut cursor) = (Vec::new(), false, None::<String>);
    loop {
        let page = log.overdue(before, cursor.as_deref(), limit).await.unwrap();
        ids.extend(page.items.iter().map(|d| d.id.to_string()));
        match page.next_cursor {
            Some(c) => {
                queried |= c.starts_with("q.");
                cursor = Some(c);
            }
            None => break,
        }
    }
    ids.sort();
    (ids, queried)
}

/// The sweep asks the `by_status` index for the pending deliveries (only retrying ones are
/// there), once a first sweep has scanned the table and given that key to the pending
/// deliveries layout 1 wrote without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_queries_the_pending_index_once_a_scan_has_indexed_layout_1() {
    let (clients, resources) = moto::deployment("sweepidx").await;
    let stores = store_aws::stores(&clients, &resources);
    let log = stores.deliveries.as_ref();
    let now = Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let hours_ago = |h: i64| now.plus_millis(-h * 3_600_000);
    let before = hours_ago(6);
    let raw = |id: &str| {
        clients
            .dynamodb
            .get_item()
            .table_name(&resources.deliveries_table)
            .key("pk", AttributeValue::S(id.into()))
            .key("sk", AttributeValue::S("delivery".into()))
            .send()
    };

    // Written now: overdue ones (due long ago, or changed long ago with nothing due), one
    // retrying later, and one delivered.
    let mut written = vec![pending("msg_due_1", hours_ago(9), Some(hours_ago(8)))];
    for i in 2..=6 {
        written.push(pending(&format!("msg_due_{i}"), hours_ago(7), None));
    }
    written.push(pending(
        "msg_later",
        hours_ago(7),
        Some(now.plus_millis(3_600_000)),
    ));
    let mut delivered = pending("msg_delivered", hours_ago(9), None);
    delivered.status = DeliveryStatus::Succeeded;
    written.push(delivered);
    assert!(log.create_batch(&written).await.unwrap().iter().all(|c| *c));
    for (id, key) in [
        ("msg_due_1", true),
        ("msg_later", true),
        ("msg_delivered", false),
    ] {
        let item = raw(id).await.unwrap().item.unwrap();
        match item.get("status_key") {
            Some(AttributeValue::S(k)) => assert!(key && k.starts_with("pending#"), "{id}: {k}"),
            None => assert!(!key, "{id} has no index key"),
            other => panic!("{id}: {other:?}"),
        }
    }

    // One pending as layout 1 wrote it: no index key.
    let layout_1 = |id: &str| {
        clients
            .dynamodb
            .put_item()
            .table_name(&resources.deliveries_table)
            .item("pk", AttributeValue::S(id.into()))
            .item("sk", AttributeValue::S("delivery".into()))
            .item("account_id", AttributeValue::S("acct_sweep".into()))
            .item("subscription_id", AttributeValue::S("wh_sweep".into()))
            .item("event_id", AttributeValue::S(format!("evt_{id}")))
            .item("event_type", AttributeValue::S("call.ended".into()))
            .item(
                "event_key",
                AttributeValue::S(format!("acct_sweep#evt_{id}")),
            )
            .item("sub_key", AttributeValue::S("acct_sweep#wh_sweep".into()))
            .item("status", AttributeValue::S("pending".into()))
            .item("attempt_count", AttributeValue::N("0".into()))
            .item(
                "created_at",
                AttributeValue::N(hours_ago(10).as_millis().to_string()),
            )
            .item(
                "updated_at",
                AttributeValue::N(hours_ago(10).as_millis().to_string()),
            )
            .item("expires_at", AttributeValue::N("4000000000".into()))
            .send()
    };
    layout_1("msg_old").await.unwrap();

    let mut expected: Vec<String> = (1..=6).map(|i| format!("msg_due_{i}")).collect();
    expected.push("msg_old".into());
    expected.sort();
    // The first sweep scans: it finds the old one too, and gives it its key.
    let (first, queried) = overdue_ids(log, before, 2).await;
    assert_eq!(first, expected);
    assert!(!queried, "the first sweep scans");
    let old = raw("msg_old").await.unwrap().item.unwrap();
    assert!(
        matches!(old.get("status_key"), Some(AttributeValue::S(k)) if k.starts_with("pending#")),
        "{old:?}"
    );

    // Later sweeps query the index, page by page across its shards.
    let (later, queried) = overdue_ids(log, before, 2).await;
    assert_eq!(later, expected);
    assert!(queried, "a later sweep queries the index");
    // Hence a key-less pending item written now is not seen (none is written since layout
    // 2; an older version running again would, after a rollback)...
    layout_1("msg_unindexed").await.unwrap();
    assert_eq!(overdue_ids(log, before, 100).await.0, expected);
    // ... until the weekly scan: the last whole pass is made eight days old.
    let marker = |key: &'static str| {
        let read = clients
            .dynamodb
            .get_item()
            .table_name(&resources.deliveries_table)
            .key("pk", AttributeValue::S("sweep#pending-indexed".into()))
            .key("sk", AttributeValue::S("sweep#pending-indexed".into()))
            .send();
        async move { read.await.unwrap().item.unwrap().get(key).cloned() }
    };
    assert!(marker("cursor").await.is_none());
    clients
        .dynamodb
        .update_item()
        .table_name(&resources.deliveries_table)
        .key("pk", AttributeValue::S("sweep#pending-indexed".into()))
        .key("sk", AttributeValue::S("sweep#pending-indexed".into()))
        .update_expression("SET scanned_at = :at")
        .expression_attribute_values(
            ":at",
            AttributeValue::N(hours_ago(8 * 24).as_millis().to_string()),
        )
        .send()
        .await
        .unwrap();
    let mut with_unindexed = expected.clone();
    with_unindexed.push("msg_unindexed".into());
    with_unindexed.sort();
    // A sweep cut short after its first page: the pass's place is kept, and the next sweep
    // goes on from it to the end (reading only the rest of the table).
    let first_page = log.overdue(before, None, 1).await.unwrap();
    let cut_at = first_page.next_cursor.expect("more than one page");
    assert!(!cut_at.starts_with("q."), "a scan: {cut_at}");
    assert_eq!(marker("cursor").await, Some(AttributeValue::S(cut_at)));
    let (rest, queried) = overdue_ids(log, before, 100).await;
    assert!(!queried);
    let mut seen: Vec<String> = first_page.items.iter().map(|d| d.id.to_string()).collect();
    seen.extend(rest);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, with_unindexed);
    assert!(marker("cursor").await.is_none(), "the pass ended");
    // Found and given its key: the queries see it from now on.
    let (indexed, queried) = overdue_ids(log, before, 2).await;
    assert_eq!(indexed, with_unindexed);
    assert!(queried);
    let expected = with_unindexed;

    // A delivery leaving `pending` leaves the index; one rescheduled is not overdue.
    let account = AccountId::parse("acct_sweep").unwrap();
    let id = |s: &str| DeliveryId::parse(s).unwrap();
    assert!(log
        .move_status(
            &account,
            &id("msg_due_1"),
            (DeliveryStatus::Pending, 1),
            DeliveryStatus::Succeeded,
            now
        )
        .await
        .unwrap());
    assert!(!raw("msg_due_1")
        .await
        .unwrap()
        .item
        .unwrap()
        .contains_key("status_key"));
    assert!(log
        .move_status(
            &account,
            &id("msg_due_2"),
            (DeliveryStatus::Pending, 1),
            DeliveryStatus::Pending,
            now
        )
        .await
        .unwrap());
    assert!(log
        .move_status(
            &account,
            &id("msg_due_3"),
            (DeliveryStatus::Pending, 1),
            DeliveryStatus::Dead,
            now
        )
        .await
        .unwrap());
    let dead = log.list_dead(&account, None, 10).await.unwrap();
    assert_eq!(
        dead.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["msg_due_3"]
    );
    let left: Vec<String> = expected
        .into_iter()
        .filter(|i| !["msg_due_1", "msg_due_2", "msg_due_3"].contains(&i.as_str()))
        .collect();
    assert_eq!(overdue_ids(log, before, 100).await.0, left);
}
