//! Form bodies: any bytes parse without panicking; what parses is a flat
//! object of strings that survives re-encoding; its hash is over the raw
//! bytes; Acuity's locators never yield an id over the limit.
//!
//! Input: the body itself.

#![no_main]

use hookledger::dedup;
use hookledger::sources::{body_kind, BodyKind, MAX_ID_BYTES};
use hookledger_fuzz::sources;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let no_headers: Vec<(String, String)> = Vec::new();
    let plain = &sources()["plain"];
    if let Ok(delivery) = plain.parse(BodyKind::Form, &no_headers, data) {
        let object = delivery.payload.as_object().expect("a form is an object");
        let mut encoder = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in object {
            encoder.append_pair(k, v.as_str().expect("form values are strings"));
        }
        let encoded = encoder.finish();
        if !object.is_empty() {
            let again = plain
                .parse(BodyKind::Form, &no_headers, encoded.as_bytes())
                .expect("a re-encoded form parses");
            assert_eq!(again.payload, delivery.payload, "{encoded}");
        }
        assert_eq!(
            dedup::body_hash(BodyKind::Form, data, &delivery.payload),
            dedup::sha256_hex(data)
        );
    }
    if let Ok(delivery) = sources()["acuity"].parse(BodyKind::Form, &no_headers, data) {
        for value in [&delivery.action, &delivery.object_id, &delivery.object_type] {
            assert!(value.as_ref().is_none_or(|v| v.len() <= MAX_ID_BYTES));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let kind = body_kind(Some(text));
        assert_eq!(kind, body_kind(Some(&text.to_ascii_uppercase())));
    }
});
