//! One delivery of each preset's shape (Stripe, GitHub, Shopify, Acuity,
//! Standard Webhooks, generic), with the key the rules give it.

use serde_json::json;

use super::*;
use crate::sources::BodyKind;

#[test]
fn a_stripe_event_is_keyed_by_its_event_id() {
    let d = delivery(
        json!({"id": "evt_3PqK2bLkdIwHu7ix0Yk8lB2c", "object": "event", "type": "payment_intent.succeeded",
               "data": {"object": {"id": "pi_3PqK2bLkdIwHu7ix0sZ9Yv1Q", "object": "payment_intent"}}}),
        Some("evt_3PqK2bLkdIwHu7ix0Yk8lB2c"),
        Some("payment_intent.succeeded"),
        Some(("payment_intent", "pi_3PqK2bLkdIwHu7ix0sZ9Yv1Q")),
    );
    assert_eq!(
        plan_at(&d, None, T0),
        insert(Strategy::EventId, "id:evt_3PqK2bLkdIwHu7ix0Yk8lB2c")
    );
}

#[test]
fn a_github_delivery_is_keyed_by_its_delivery_uuid() {
    let d = delivery(
        json!({"action": "opened", "issue": {"id": 2_348_729_105u64, "number": 42}}),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        Some("issues.opened"),
        Some(("issue", "2348729105")),
    );
    assert_eq!(
        plan_at(&d, None, T0),
        insert(Strategy::EventId, "id:72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
}

#[test]
fn a_shopify_webhook_is_keyed_by_its_event_id() {
    let d = delivery(
        json!({"id": 5_742_106_820_671u64, "name": "#1042"}),
        Some("98880550-7158-44d4-b7cd-2c97c8a091b5"),
        Some("orders/create"),
        Some(("orders", "5742106820671")),
    );
    assert_eq!(
        plan_at(&d, None, T0),
        insert(Strategy::EventId, "id:98880550-7158-44d4-b7cd-2c97c8a091b5")
    );
}

#[test]
fn acuity_form_deliveries_use_the_action_table() {
    let t = acuity_table();
    let form = |action: &str, id: &str| {
        delivery(
            json!({"action": action, "id": id, "calendarID": "4821", "appointmentTypeID": "17349"}),
            None,
            Some(action),
            Some(("appointment", id)),
        )
    };
    let cases = [
        (
            "scheduled",
            "1186540216",
            insert(Strategy::ActionObject, "act:scheduled:1186540216"),
        ),
        (
            "canceled",
            "1186540216",
            insert(Strategy::ActionObject, "act:canceled:1186540216"),
        ),
        (
            "rescheduled",
            "1186540217",
            insert(Strategy::Coalesce, "co:rescheduled:1186540217"),
        ),
        (
            "changed",
            "1186540218",
            insert(Strategy::Coalesce, "co:changed:1186540218"),
        ),
    ];
    for (action, id, expected) in cases {
        assert_eq!(
            plan_at(&form(action, id), Some(&t), T0),
            expected,
            "{action}"
        );
    }
    let order = delivery(
        json!({"action": "order.completed", "id": "88"}),
        None,
        Some("order.completed"),
        Some(("order", "88")),
    );
    assert_eq!(
        plan_at(&order, Some(&t), T0),
        insert(Strategy::ActionObject, "act:order.completed:88")
    );
}

#[test]
fn an_acuity_form_body_without_an_id_is_hashed_over_its_raw_bytes() {
    let t = acuity_table();
    let raw = b"action=scheduled&calendarID=4821";
    let payload = json!({"action": "scheduled", "calendarID": "4821"});
    let d = delivery(payload.clone(), None, Some("scheduled"), None);
    let h = body_hash(BodyKind::Form, raw, &payload);
    assert_eq!(h, sha256_hex(raw));
    let p = plan(&d, Some(&t), WINDOW, &h, T0);
    assert_eq!(p.key(), format!("hash:{}:5715216", sha256_hex(raw)));
}

#[test]
fn a_standard_webhooks_message_is_keyed_by_its_webhook_id() {
    let d = delivery(
        json!({"type": "invoice.paid", "timestamp": "2024-05-01T12:00:00Z", "data": {"id": "inv_1"}}),
        Some("msg_2fKxq8VnT1bY3cZ0aQpLmW7dE9s"),
        Some("invoice.paid"),
        Some(("invoice", "inv_1")),
    );
    assert_eq!(
        plan_at(&d, None, T0),
        insert(Strategy::EventId, "id:msg_2fKxq8VnT1bY3cZ0aQpLmW7dE9s")
    );
}

#[test]
fn a_generic_source_without_an_event_id_is_hashed() {
    // `billing`: object id from `/invoice/id`, but no event id and no actions table.
    let payload = json!({"event": "invoice.finalized", "invoice": {"id": "INV-2024-0117", "total": "129.00"}});
    let h = body_hash(BodyKind::Json, b"", &payload);
    let d = delivery(payload, None, None, Some(("invoice", "INV-2024-0117")));
    let p = plan(&d, None, WINDOW, &h, T0);
    assert_eq!(p.strategy(), Strategy::PayloadHash);
    assert_eq!(p.key(), format!("hash:{h}:5715216"));
}

#[test]
fn a_generic_source_with_a_header_event_id_is_keyed_by_it() {
    // `orders`: event id from `X-Request-Id`.
    let d = delivery(
        json!({"order_id": "SO-10492"}),
        Some("req_01HXYZ8K3M"),
        None,
        None,
    );
    assert_eq!(
        plan_at(&d, None, T0),
        insert(Strategy::EventId, "id:req_01HXYZ8K3M")
    );
}
