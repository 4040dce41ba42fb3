//! The first six presets (stripe, github, shopify, acuity, standard with a
//! secret, and a configured generic source) through the same four steps as
//! the later ones — signed (202), redelivered (200, same id), forged (401,
//! nothing stored) — and the provider id, action, object and event time
//! that the admin API shows for each.

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;
use crate::providers::{
    rfc3339_ms, shown_event_time_is, signed_redelivered_and_forged,
    signed_redelivered_and_forged_bytes, Expected,
};

backend_tests!(
    stripe_github_and_shopify_deliveries_show_their_ids_objects_and_event_times,
    acuity_standard_and_generic_deliveries_show_their_ids_objects_and_event_times,
);

async fn stripe_github_and_shopify_deliveries_show_their_ids_objects_and_event_times(
    backend: Backend,
) {
    // Stripe: `created` in Unix seconds.
    let app = spawn_app(backend).await;
    let created = 1_714_000_000;
    let body = stripe_event(
        "evt_1PBqLx2eZvKYlo2CfJ3qvG5a",
        "invoice.paid",
        created,
        json!({"id": "in_1PBqLw2eZvKYlo2C", "object": "invoice", "status": "paid"}),
    );
    let expected = Expected {
        dedup_key: Some("id:evt_1PBqLx2eZvKYlo2CfJ3qvG5a"),
        provider_event_id: json!("evt_1PBqLx2eZvKYlo2CfJ3qvG5a"),
        action: json!("invoice.paid"),
        object_type: json!("invoice"),
        object_id: json!("in_1PBqLw2eZvKYlo2C"),
    };
    let id = signed_redelivered_and_forged(&app, "stripe", &[], &body, expected).await;
    shown_event_time_is(&app, "stripe", id, created * 1000).await;

    // GitHub: no event time in the delivery, so the arrival.
    let app = spawn_app(backend).await;
    let arrival_ms = app.clock.now_ms();
    let body = json!({"action": "opened", "issue": {"id": 1_347, "number": 1347, "title": "Found a bug"},
        "repository": {"id": 1_296_269, "full_name": "octocat/Hello-World"}});
    let headers = [
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let expected = Expected {
        dedup_key: Some("id:72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        provider_event_id: json!("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        action: json!("issues.opened"),
        object_type: json!("issue"),
        object_id: json!("1347"),
    };
    let id = signed_redelivered_and_forged(&app, "github", &headers, &body, expected).await;
    shown_event_time_is(&app, "github", id, arrival_ms).await;

    // Shopify: `X-Shopify-Triggered-At`, RFC 3339 with a fraction.
    let app = spawn_app(backend).await;
    let triggered = "2024-05-08T14:21:09.123456789Z";
    let body = json!({"id": 820_982_911_946_154_500u64, "email": "jon@example.com"});
    let headers = [
        ("X-Shopify-Topic", "orders/create"),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
        ("X-Shopify-Triggered-At", triggered),
    ];
    let expected = Expected {
        dedup_key: Some("id:98880550-7158-44d4-b7cd-2c97c8a091b5"),
        provider_event_id: json!("98880550-7158-44d4-b7cd-2c97c8a091b5"),
        action: json!("orders/create"),
        object_type: json!("orders"),
        object_id: json!("820982911946154500"),
    };
    let id = signed_redelivered_and_forged(&app, "shopify", &headers, &body, expected).await;
    shown_event_time_is(&app, "shopify", id, rfc3339_ms(triggered)).await;
}

async fn acuity_standard_and_generic_deliveries_show_their_ids_objects_and_event_times(
    backend: Backend,
) {
    // Acuity: a form body without an id or a time; action and object dedup.
    let app = spawn_app(backend).await;
    let arrival_ms = app.clock.now_ms();
    let form = b"action=scheduled&id=12345&calendarID=1&appointmentTypeID=2".to_vec();
    let expected = Expected {
        dedup_key: Some("act:scheduled:12345"),
        provider_event_id: Value::Null,
        action: json!("scheduled"),
        object_type: json!("appointment"),
        object_id: json!("12345"),
    };
    let (id, _) = signed_redelivered_and_forged_bytes(
        &app,
        "acuity",
        "application/x-www-form-urlencoded",
        &[],
        form,
        expected,
    )
    .await;
    shown_event_time_is(&app, "acuity", id, arrival_ms).await;

    // Standard Webhooks with a secret: the body's RFC 3339 `timestamp`.
    let app = spawn_app(backend).await;
    let body = json!({"type": "invoice.paid", "timestamp": "2026-11-26T12:00:00.250Z",
        "data": {"id": "inv_01J8Z3QW7N5K2R4T6V8X0Y1BCD"}});
    let expected = Expected {
        dedup_key: Some("id:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
        provider_event_id: json!("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
        action: json!("invoice.paid"),
        object_type: json!("invoice"),
        object_id: json!("inv_01J8Z3QW7N5K2R4T6V8X0Y1BCD"),
    };
    let headers = [("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")];
    let id = signed_redelivered_and_forged(&app, "standard", &headers, &body, expected).await;
    shown_event_time_is(&app, "standard", id, rfc3339_ms("2026-11-26T12:00:00.250Z")).await;

    // Generic (`billing`: a hex, prefixed HMAC; the object by configuration;
    // no id or time configured, so a payload hash and the arrival).
    let app = spawn_app(backend).await;
    let arrival_ms = app.clock.now_ms();
    let body = json!({"invoice": {"id": "INV-2024-0042", "total": 1250}});
    let expected = Expected {
        dedup_key: None,
        provider_event_id: Value::Null,
        action: Value::Null,
        object_type: json!("invoice"),
        object_id: json!("INV-2024-0042"),
    };
    let id = signed_redelivered_and_forged(&app, "billing", &[], &body, expected).await;
    shown_event_time_is(&app, "billing", id, arrival_ms).await;
}
