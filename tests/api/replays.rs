//! Captured deliveries replayed with a part changed (SPEC §2–§3): what an
//! attacker who saw one genuine delivery can and cannot do with it.
//!
//! An id that the signature covers (Standard Webhooks' `webhook-id`) is used
//! exactly as signed, so no change to it keeps the signature valid and makes
//! a new event. An id in an unsigned header (Shopify's) can be changed — the
//! protocol allows it — but then the event time of §2 is capped at arrival
//! plus `tolerance_secs`, so a far-future time in the unsigned
//! `X-Shopify-Triggered-At` cannot freeze the object's domain row.

use hookledger::clock::rfc3339;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(a_signed_webhook_id_changed_by_unicode_whitespace_or_case_is_not_a_new_event,);

/// `headers` with `name`'s value replaced (ASCII case-insensitive name).
fn replaced(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case(name) {
                value.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// Issue 11 item 6: a genuine Standard Webhooks delivery, captured and sent
/// again with U+00A0, U+2003 or U+3000 before or after its `webhook-id`, or
/// with the id's case changed, is refused (the id is not what was signed)
/// or is a duplicate of the first — never a new event.
async fn a_signed_webhook_id_changed_by_unicode_whitespace_or_case_is_not_a_new_event(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f1W";
    let body = serde_json::to_vec(&json!({
        "type": "invoice.paid",
        "timestamp": rfc3339(app.clock.now_ms()),
        "data": {"id": "inv_captured", "amount": 4200},
    }))
    .unwrap();
    let signed = app.signed_headers(
        "standard",
        &[("Content-Type", "application/json"), ("webhook-id", id)],
        &body,
    );
    let first = app
        .post_raw("/webhooks/standard", &signed, body.clone())
        .await;
    assert_eq!(first.status, 202, "{:?}", first.body);

    let mut changed = Vec::new();
    for (name, space) in [
        ("U+00A0", '\u{00A0}'),
        ("U+2003", '\u{2003}'),
        ("U+3000", '\u{3000}'),
    ] {
        changed.push((format!("{name} appended"), format!("{id}{space}")));
        changed.push((format!("{name} prepended"), format!("{space}{id}")));
    }
    changed.push(("upper case".into(), id.to_uppercase()));
    changed.push(("lower case".into(), id.to_lowercase()));
    for (what, changed_id) in changed {
        let headers = replaced(&signed, "webhook-id", &changed_id);
        let answer = app
            .post_raw("/webhooks/standard", &headers, body.clone())
            .await;
        let refused = answer.status == 401 && answer.error_code() == "invalid_signature";
        let duplicate = answer.status == 200
            && answer.body["status"] == "duplicate"
            && answer.id() == first.id();
        assert!(
            refused || duplicate,
            "webhook-id with {what}: the captured delivery was answered {} {:?}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(
        app.ledger_total().await,
        1,
        "one event, whatever the id's bytes"
    );
}
