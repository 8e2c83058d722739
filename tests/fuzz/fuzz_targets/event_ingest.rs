//! Arbitrary bytes as an ingest body: parsing, the envelope checks and the schema
//! validation of every catalog type must never panic, and whatever is accepted must have
//! a payload that is valid JSON carrying the event's id and type.
#![no_main]

use domain::event::{accept, IncomingEvent};
use domain::ids::EventId;
use domain::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(incoming) = serde_json::from_slice::<IncomingEvent>(data) else {
        return;
    };
    let now = Timestamp::from_millis(1_795_000_000_000);
    if let Ok(event) = accept(incoming, now, || EventId::from_static("evt_fuzz")) {
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload()).expect("an accepted event's payload is JSON");
        assert_eq!(payload["id"], event.id.as_str());
        assert_eq!(payload["type"], event.event_type.as_str());
    }
});
