//! Canonical JSON: any bytes are looked at without panicking (deep nesting
//! included); the canonical form of a value parses back to it; formatting
//! never changes it; the body hash is the hash of the canonical form; every
//! preset's locators accept or refuse the body without panicking.
//!
//! Input: the body itself.

#![no_main]

use hookledger::dedup;
use hookledger::sources::{BodyKind, MAX_ID_BYTES};
use hookledger_fuzz::sources;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn canonical_of(text: &str) -> Vec<u8> {
    dedup::canonical_json(&serde_json::from_str(text).expect("serde_json reads its own output"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let canonical = dedup::canonical_json(&value);
        let reparsed: Value =
            serde_json::from_slice(&canonical).expect("the canonical form is JSON");
        assert_eq!(reparsed, value);
        assert_eq!(dedup::canonical_json(&reparsed), canonical);
        let compact = serde_json::to_string(&value).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(canonical_of(&compact), canonical_of(&pretty));
        assert_eq!(
            dedup::body_hash(BodyKind::Json, data, &value),
            dedup::sha256_hex(&canonical)
        );
    }
    let headers = vec![
        ("X-GitHub-Event".to_string(), "issues".to_string()),
        ("X-Shopify-Topic".to_string(), "orders/create".to_string()),
    ];
    for (name, source) in sources() {
        if let Ok(delivery) = source.parse(BodyKind::Json, &headers, data) {
            assert!(delivery.payload.is_object(), "{name}");
            for value in [
                &delivery.event_id,
                &delivery.action,
                &delivery.object_id,
                &delivery.object_type,
            ] {
                assert!(
                    value.as_ref().is_none_or(|v| v.len() <= MAX_ID_BYTES),
                    "{name}"
                );
            }
        }
    }
});
