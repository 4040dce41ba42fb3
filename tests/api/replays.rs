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
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_signed_webhook_id_changed_by_unicode_whitespace_or_case_is_not_a_new_event,
    a_far_future_event_time_in_a_replayed_shopify_delivery_does_not_pin_the_domain_row,
);

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

/// Issue 11 item 8: a genuine Shopify `orders/updated`, then the same
/// captured body and HMAC replayed with a fresh (unsigned) event id and
/// `X-Shopify-Triggered-At: 9999-01-01`, then a genuine later update: the
/// replay is a new event (the protocol allows it) but its time is the
/// arrival time, so the later update is written to the domain row.
async fn a_far_future_event_time_in_a_replayed_shopify_delivery_does_not_pin_the_domain_row(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let order_id = 5_893_417_205_939u64;
    let order = |price: &str| json!({"id": order_id, "total_price": price, "currency": "USD"});
    let deliver = |event_id: &'static str, triggered_at: String, body: Value| {
        let app = &app;
        async move {
            app.deliver(
                "shopify",
                &[
                    ("X-Shopify-Topic", "orders/updated"),
                    ("X-Shopify-Webhook-Id", event_id),
                    ("X-Shopify-Event-Id", event_id),
                    ("X-Shopify-Triggered-At", &triggered_at),
                ],
                &body,
            )
            .await
        }
    };

    let genuine = deliver(
        "5e7b3c19-8d2a-4f6e-a0c4-91b8d2f7e356",
        rfc3339(app.clock.now_ms()),
        order("98.00"),
    )
    .await;
    assert_eq!(genuine.status, 202, "{:?}", genuine.body);
    assert_eq!(app.drain().await, 1);

    app.clock.advance_ms(1_000);
    let replay = deliver(
        "00000000-0000-4000-8000-000000000001",
        "9999-01-01T00:00:00Z".into(),
        order("98.00"),
    )
    .await;
    assert_eq!(
        replay.status, 202,
        "an unsigned id is the protocol's business: {:?}",
        replay.body
    );
    assert_eq!(app.drain().await, 1);

    app.clock.advance_ms(60_000);
    let update_at = app.clock.now_ms();
    let update = deliver(
        "9c1f0d7a-3b2e-4e5f-8a6b-7c8d9e0f1a2b",
        rfc3339(update_at),
        order("120.00"),
    )
    .await;
    assert_eq!(update.status, 202, "{:?}", update.body);
    assert_eq!(app.drain().await, 1);
    let detail = app
        .admin_get(&format!("/admin/events/{}", update.id()))
        .await;
    assert_eq!(detail.body["status"], "done", "{:?}", detail.body);

    let row = app
        .store
        .domain_object("shopify", "orders", &order_id.to_string())
        .await
        .unwrap()
        .expect("the order's domain row");
    assert_eq!(
        row.last_event_id,
        update.id(),
        "the later genuine update was not written: the row is still event {} (the replay is {}), \
         at event time {}",
        row.last_event_id,
        replay.id(),
        rfc3339(row.event_time)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&row.data).unwrap()["total_price"],
        "120.00"
    );
    assert_eq!(row.event_time, update_at);
}
