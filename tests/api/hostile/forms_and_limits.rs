//! Inputs at the edge that are legitimate: form bodies with repeated and
//! empty keys are accepted (the last value wins, an empty action or id
//! counts as absent), and values right at a limit — id length, body size,
//! timestamp tolerance, nesting, header and media-type size — are accepted.

use serde_json::json;

use super::*;
use crate::backend_tests;

backend_tests!(
    form_bodies_with_repeated_and_empty_keys_are_accepted,
    values_right_at_the_limits_are_accepted,
);

/// A repeated key keeps its last value; empty keys and values are kept; an
/// empty action or id counts as absent, so the payload hash decides.
async fn form_bodies_with_repeated_and_empty_keys_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let form = |body: &'static str| {
        app.deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            body.as_bytes().to_vec(),
        )
    };
    let cases: [(&str, u16, &str, &str); 9] = [
        (
            "action=scheduled&id=1&id=2",
            202,
            "act:scheduled:2",
            "action_object",
        ),
        (
            "id=2&action=scheduled",
            200,
            "act:scheduled:2",
            "action_object",
        ),
        (
            "action=canceled&action=scheduled&id=3",
            202,
            "act:scheduled:3",
            "action_object",
        ),
        (
            "=&&=x&action=scheduled&id=4&&&",
            202,
            "act:scheduled:4",
            "action_object",
        ),
        (
            "action=scheduled&id=4&=y",
            200,
            "act:scheduled:4",
            "action_object",
        ),
        (
            "action=changed&id=9&action=changed",
            202,
            "co:changed:9",
            "coalesce",
        ),
        ("action=&id=5", 202, "hash:", "payload_hash"),
        ("action=&id=5", 200, "hash:", "payload_hash"),
        ("action=scheduled&id=&id=", 202, "hash:", "payload_hash"),
    ];
    let mut first_ids = std::collections::BTreeMap::new();
    for (body, status, key, strategy) in cases {
        let answer = form(body).await;
        assert_eq!(answer.status, status, "{body}: {:?}", answer.body);
        let got = answer.body["dedup_key"].as_str().unwrap();
        assert!(got.starts_with(key), "{body}: {got}");
        assert_eq!(answer.body["strategy"], strategy, "{body}");
        let id = *first_ids.entry(got.to_string()).or_insert(answer.id());
        assert_eq!(answer.id(), id, "{body}: same key, same row");
    }
    let four = first_ids["act:scheduled:4"];
    let detail = app.admin_get(&format!("/admin/events/{four}")).await;
    assert_eq!(
        detail.body["payload"],
        json!({"": "x", "action": "scheduled", "id": "4"})
    );
    assert_eq!(app.ledger_total().await, 6);
}

/// Values right at a limit are accepted: an id of exactly 256 bytes (in
/// ASCII or in two-byte characters), a body of exactly `max_body_bytes`, a
/// timestamp exactly `tolerance_secs` old or ahead, JSON nested 100 deep, an
/// 800-byte and a 100 KB header the handler does not read, and a 100 KB
/// media-type parameter.
async fn values_right_at_the_limits_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let limit = app.config.server.max_body_bytes;
    let event = |id: &str| {
        stripe_event(
            id,
            "invoice.paid",
            now,
            json!({"id": "in_edge", "object": "invoice"}),
        )
    };
    let expect_accepted = |answer: Answer, what: &str| {
        assert_eq!(answer.status, 202, "{what}: {:?}", answer.body);
        assert_eq!(answer.body["status"], "accepted", "{what}");
        answer
    };

    let ascii = "i".repeat(256);
    let accepted = expect_accepted(
        app.deliver("stripe", &[], &event(&ascii)).await,
        "256 ASCII",
    );
    assert_eq!(accepted.body["dedup_key"], format!("id:{ascii}"));
    let two_byte = "é".repeat(128);
    expect_accepted(
        app.deliver("stripe", &[], &event(&two_byte)).await,
        "128 two-byte characters",
    );

    let exact = {
        let mut body = br#"{"id":"evt_exact","pad":""#.to_vec();
        body.resize(limit - 2, b'x');
        body.extend_from_slice(b"\"}");
        assert_eq!(body.len(), limit);
        body
    };
    expect_accepted(
        app.deliver_bytes("stripe", "application/json", &[], exact)
            .await,
        "a body of exactly the limit",
    );

    let tolerance = app.config.sources["stripe"].tolerance_secs as i64;
    let no_headers: Vec<(String, String)> = Vec::new();
    for (id, t) in [("evt_old", now - tolerance), ("evt_ahead", now + tolerance)] {
        let body = serde_json::to_vec(&event(id)).unwrap();
        let mut headers = app.source("stripe").sign(&no_headers, &body, t);
        headers.push(("Content-Type".into(), "application/json".into()));
        expect_accepted(app.post_raw("/webhooks/stripe", &headers, body).await, id);
    }

    let nested = format!(
        "{{\"id\":\"evt_nested\",\"n\":{}1{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    expect_accepted(
        app.deliver_bytes("stripe", "application/json", &[], nested.into_bytes())
            .await,
        "100 nested arrays",
    );

    let header_800 = "h".repeat(800);
    expect_accepted(
        app.deliver("stripe", &[("X-Padding", &header_800)], &event("evt_h800"))
            .await,
        "an 800-byte header",
    );
    let header_100k = "h".repeat(100 * 1024);
    expect_accepted(
        app.deliver(
            "stripe",
            &[("X-Padding", &header_100k)],
            &event("evt_h100k"),
        )
        .await,
        "a 100 KB header",
    );
    let long_type = format!("application/json; x={}", "p".repeat(100 * 1024));
    let body = serde_json::to_vec(&event("evt_type100k")).unwrap();
    expect_accepted(
        app.deliver_bytes("stripe", &long_type, &[], body).await,
        "a 100 KB media-type parameter",
    );
    assert_eq!(app.ledger_total().await, 9);
}
