//! The later presets of SPEC §11 through the server, as `providers`: a
//! signed delivery (202), its redelivery (200, the same id), a wrong
//! signature (401, nothing stored), the provider id, action and object the
//! admin API shows, and the event time recorded (the admin API does not
//! show it, SPEC §5, so it is read from the domain row that processing
//! writes with it).

use serde_json::json;
use sha2::Digest as _;

use crate::backend_tests;
use crate::helpers::*;
use crate::providers::{signed_redelivered_and_forged, wrong_signer, Expected};

backend_tests!(
    standard_ed25519_deliveries_are_verified_with_the_public_key,
    gitlab_deliveries_dedup_on_their_idempotency_key_else_a_payload_hash,
    linear_deliveries_dedup_on_linear_delivery_and_stale_ones_are_refused,
    intercom_notifications_dedup_on_their_id,
    woocommerce_deliveries_dedup_on_their_payload_hash_not_their_delivery_id,
    mailgun_events_dedup_on_their_id_and_a_token_serves_one_event,
    a_claimed_token_holds_for_its_event_until_it_is_forgotten,
    square_deliveries_are_signed_over_the_public_url_and_dedup_on_their_event_id,
    twilio_status_callbacks_are_signed_over_url_query_and_form_and_dedup_on_their_token,
);

/// Processes the event and asserts the event time its domain row carries.
async fn event_time_is(app: &TestApp, source: &str, object: (&str, &str), expected_ms: i64) {
    app.drain().await;
    let row = app
        .store
        .domain_object(source, object.0, object.1)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{source}: no domain row for {object:?}"));
    assert_eq!(row.event_time, expected_ms, "{source}: event time");
    // And as the admin API shows it.
    let shown = app
        .admin_get(&format!("/admin/events/{}", row.last_event_id))
        .await;
    assert_eq!(
        shown.body["event_time"],
        hookledger::clock::rfc3339(expected_ms),
        "{source}: the admin API's event time"
    );
}

async fn standard_ed25519_deliveries_are_verified_with_the_public_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"type": "subscription.renewed", "timestamp": "2024-10-01T00:00:07.512Z",
        "data": {"id": "sub_01J8Z3QW7N5K2R4T6V8X0Y1BCD", "plan": "team-annual"}});
    let id = "msg_2nQ4rT8vYb1cX5zK0aLpMw3dE7f";
    let expected = Expected {
        dedup_key: Some("id:msg_2nQ4rT8vYb1cX5zK0aLpMw3dE7f"),
        provider_event_id: json!(id),
        action: json!("subscription.renewed"),
        object_type: json!("subscription"),
        object_id: json!("sub_01J8Z3QW7N5K2R4T6V8X0Y1BCD"),
    };
    let source = "standard_ed25519";
    signed_redelivered_and_forged(&app, source, &[("webhook-id", id)], &body, expected).await;
    event_time_is(
        &app,
        source,
        ("subscription", "sub_01J8Z3QW7N5K2R4T6V8X0Y1BCD"),
        1_727_740_807_512,
    )
    .await;
    // An HMAC (v1) signature is no signature for a source with only a
    // public key, whatever secret made it.
    let bytes = serde_json::to_vec(&body).unwrap();
    let mut config = app.config.sources["standard"].clone();
    config.name = source.into();
    let hmac_signer = hookledger::sources::Source::new(config);
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(hmac_signer.sign(&headers, &bytes, app.now_secs()));
    let answer = app
        .post_raw("/webhooks/standard_ed25519", &headers, bytes)
        .await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, "invalid_signature")
    );
    assert_eq!(app.ledger_total().await, 1);
}

async fn gitlab_deliveries_dedup_on_their_idempotency_key_else_a_payload_hash(backend: Backend) {
    let body = json!({"object_kind": "merge_request", "event_type": "merge_request",
        "user": {"id": 1, "username": "root"},
        "project": {"id": 1, "path_with_namespace": "gitlabhq/gitlab-test"},
        "object_attributes": {"id": 99, "iid": 1, "title": "MS-Viewport", "state": "opened",
            "action": "open", "source_branch": "ms-viewport", "target_branch": "master"}});
    let key = "3f1b2c7e-8a4d-4e5f-9b6a-0c1d2e3f4a5b";
    for with_key in [true, false] {
        let app = spawn_app(backend).await;
        let arrival_ms = app.clock.now_ms();
        let headers: Vec<(&str, &str)> = if with_key {
            vec![
                ("X-Gitlab-Event", "Merge Request Hook"),
                ("Idempotency-Key", key),
            ]
        } else {
            // GitLab before 17.4 sends no Idempotency-Key.
            vec![("X-Gitlab-Event", "Merge Request Hook")]
        };
        let expected = Expected {
            dedup_key: with_key.then_some("id:3f1b2c7e-8a4d-4e5f-9b6a-0c1d2e3f4a5b"),
            provider_event_id: if with_key { json!(key) } else { json!(null) },
            action: json!("merge_request.open"),
            object_type: json!("merge_request"),
            object_id: json!("99"),
        };
        signed_redelivered_and_forged(&app, "gitlab", &headers, &body, expected).await;
        // GitLab's bodies carry no common event time: arrival.
        event_time_is(&app, "gitlab", ("merge_request", "99"), arrival_ms).await;
    }
}

async fn linear_deliveries_dedup_on_linear_delivery_and_stale_ones_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let delivery = "234d1a4e-b617-4388-90fe-adc3633d6b72";
    // The helper sets webhookTimestamp to now (signed, inside the body).
    let body = json!({"action": "update", "type": "Comment", "createdAt": "2024-05-08T14:21:09.123Z",
        "data": {"id": "c0a1b2c3-d4e5-4f60-8172-93a4b5c6d7e8", "body": "Looks good"},
        "organizationId": "8bfcd6b0-4e0e-4f5b-9b1a-3c7f0e2d1a55",
        "webhookTimestamp": app.now_secs() * 1000,
        "webhookId": "6c9f3f71-0f4a-4a8e-9d1c-5e2b7a3c4d10"});
    let expected = Expected {
        dedup_key: Some("id:234d1a4e-b617-4388-90fe-adc3633d6b72"),
        provider_event_id: json!(delivery),
        action: json!("Comment.update"),
        object_type: json!("Comment"),
        object_id: json!("c0a1b2c3-d4e5-4f60-8172-93a4b5c6d7e8"),
    };
    let headers = [("Linear-Delivery", delivery), ("Linear-Event", "Comment")];
    signed_redelivered_and_forged(&app, "linear", &headers, &body, expected).await;
    event_time_is(
        &app,
        "linear",
        ("Comment", "c0a1b2c3-d4e5-4f60-8172-93a4b5c6d7e8"),
        1_715_178_069_123,
    )
    .await;
    // A genuine signature over a body sent more than the tolerance ago.
    let mut stale = body.clone();
    stale["webhookTimestamp"] = json!((app.now_secs() - 301) * 1000);
    let bytes = serde_json::to_vec(&stale).unwrap();
    let signed = app.signed_headers(
        "linear",
        &[
            ("Content-Type", "application/json"),
            ("Linear-Delivery", "another"),
        ],
        &bytes,
    );
    let answer = app.post_raw("/webhooks/linear", &signed, bytes).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, "timestamp_out_of_tolerance")
    );
    assert_eq!(app.ledger_total().await, 1);
}

async fn intercom_notifications_dedup_on_their_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let arrival_ms = app.clock.now_ms();
    let body = json!({"type": "notification_event", "app_id": "abc123de",
        "data": {"type": "notification_event_data",
                 "item": {"type": "contact", "id": "6630b1d2e4f5a6b7c8d9e0f1", "role": "user"}},
        "id": "notif_5b8e2c1a-7d4f-4e3a-9c2b-1a0f9e8d7c6b", "topic": "contact.user.created",
        "delivery_attempts": 1, "first_sent_at": 1_715_178_070, "created_at": 1_715_178_069});
    let expected = Expected {
        dedup_key: Some("id:notif_5b8e2c1a-7d4f-4e3a-9c2b-1a0f9e8d7c6b"),
        provider_event_id: json!("notif_5b8e2c1a-7d4f-4e3a-9c2b-1a0f9e8d7c6b"),
        action: json!("contact.user.created"),
        object_type: json!("contact"),
        object_id: json!("6630b1d2e4f5a6b7c8d9e0f1"),
    };
    signed_redelivered_and_forged(&app, "intercom", &[], &body, expected).await;
    // SPEC §11 names no event time for Intercom: arrival.
    event_time_is(
        &app,
        "intercom",
        ("contact", "6630b1d2e4f5a6b7c8d9e0f1"),
        arrival_ms,
    )
    .await;
}

async fn woocommerce_deliveries_dedup_on_their_payload_hash_not_their_delivery_id(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let arrival_ms = app.clock.now_ms();
    let body = json!({"id": 728, "status": "completed", "currency": "EUR", "total": "54.00",
        "date_modified_gmt": "2024-05-08T15:02:11", "line_items": [{"id": 316, "product_id": 93, "quantity": 1}]});
    let headers = [
        ("X-WC-Webhook-Source", "https://shop.example.com/"),
        ("X-WC-Webhook-Topic", "order.updated"),
        ("X-WC-Webhook-Resource", "order"),
        ("X-WC-Webhook-Event", "updated"),
        ("X-WC-Webhook-ID", "12"),
        (
            "X-WC-Webhook-Delivery-ID",
            "3b5c1f0e9d8a7b6c5d4e3f2a1b0c9d8e",
        ),
    ];
    let expected = Expected {
        dedup_key: None,
        provider_event_id: json!(null),
        action: json!("order.updated"),
        object_type: json!("order"),
        object_id: json!("728"),
    };
    let id = signed_redelivered_and_forged(&app, "woocommerce", &headers, &body, expected).await;
    // A retry comes with another delivery id (a hash of the webhook id and
    // the second): still the same delivery.
    let mut retry = headers.to_vec();
    retry.retain(|(k, _)| *k != "X-WC-Webhook-Delivery-ID");
    retry.push((
        "X-WC-Webhook-Delivery-ID",
        "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
    ));
    let again = app.deliver("woocommerce", &retry, &body).await;
    assert_eq!((again.status, again.id()), (200, id), "{:?}", again.body);
    // Another change of the same order is another event.
    let mut changed = body.clone();
    changed["status"] = json!("refunded");
    let other = app.deliver("woocommerce", &headers, &changed).await;
    assert_eq!(other.status, 202, "{:?}", other.body);
    assert_ne!(other.id(), id);
    event_time_is(&app, "woocommerce", ("order", "728"), arrival_ms).await;
}

async fn mailgun_events_dedup_on_their_id_and_a_token_serves_one_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"event-data": {"id": "CPgfbmQMTCKtHW6uIWtuVe", "event": "delivered",
        "timestamp": 1_715_178_069.908_181_f64, "recipient": "alice@example.com",
        "message": {"headers": {"message-id": "20240508142109.1.ABCDEF@mg.example.com",
                                "subject": "Your receipt"}}}});
    let bytes = serde_json::to_vec(&body).unwrap();
    let json_type = vec![("Content-Type".to_string(), "application/json".to_string())];
    let post = |bytes: Vec<u8>| app.post_raw("/webhooks/mailgun", &json_type, bytes);
    // No signature object; one made with another key.
    let unsigned = post(bytes.clone()).await;
    assert_eq!(
        (unsigned.status, unsigned.error_code()),
        (401, "missing_signature")
    );
    let forged = wrong_signer(&app, "mailgun")
        .restamp(&bytes, app.now_secs())
        .unwrap();
    let forged = post(forged).await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (401, "invalid_signature")
    );
    assert_eq!(app.ledger_total().await, 0, "a 401 stores nothing");

    let signer = app.source("mailgun");
    let signed = signer.restamp(&bytes, app.now_secs()).unwrap();
    let first = post(signed.clone()).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.body["dedup_key"], "id:CPgfbmQMTCKtHW6uIWtuVe");
    // The same request again, and Mailgun's retry with a fresh token.
    let same = post(signed.clone()).await;
    assert_eq!(
        (same.status, same.id()),
        (200, first.id()),
        "{:?}",
        same.body
    );
    let retry = post(signer.restamp(&bytes, app.now_secs()).unwrap()).await;
    assert_eq!(
        (retry.status, retry.id()),
        (200, first.id()),
        "{:?}",
        retry.body
    );
    assert_eq!(retry.body["status"], "duplicate");

    // The captured signature object carrying another event: refused.
    let mut captured: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    captured["event-data"]["id"] = json!("forged-event-id");
    captured["event-data"]["event"] = json!("unsubscribed");
    let replayed = post(serde_json::to_vec(&captured).unwrap()).await;
    assert_eq!(
        (replayed.status, replayed.error_code()),
        (401, "invalid_signature")
    );
    assert_eq!(app.ledger_total().await, 1);

    let shown = event(&app, first.id()).await;
    assert_eq!(shown["provider_event_id"], "CPgfbmQMTCKtHW6uIWtuVe");
    assert_eq!(shown["action"], "delivered");
    assert_eq!(shown["object_type"], "message");
    assert_eq!(shown["object_id"], "20240508142109.1.ABCDEF@mg.example.com");
    assert_eq!(shown["payload"]["event-data"], body["event-data"]);
    event_time_is(
        &app,
        "mailgun",
        ("message", "20240508142109.1.ABCDEF@mg.example.com"),
        1_715_178_069_908,
    )
    .await;
}

async fn a_claimed_token_holds_for_its_event_until_it_is_forgotten(backend: Backend) {
    let app = spawn_app(backend).await;
    let claim =
        |source: &'static str, token: &'static str, event: &'static str, now: i64, forget: i64| {
            let store = app.store.clone();
            async move {
                store
                    .claim_token(source, token, event, now, forget)
                    .await
                    .unwrap()
            }
        };
    assert!(claim("mailgun", "t1", "e1", 1_000, 0).await);
    assert!(
        claim("mailgun", "t1", "e1", 2_000, 0).await,
        "the same event again"
    );
    assert!(
        !claim("mailgun", "t1", "e2", 3_000, 0).await,
        "another event"
    );
    // Tokens are per source.
    assert!(claim("other", "t1", "e2", 3_000, 0).await);
    // A claim at a later time forgets the tokens seen before its horizon.
    assert!(claim("mailgun", "t2", "e3", 900_000, 500_000).await);
    assert!(
        claim("mailgun", "t1", "e2", 900_000, 500_000).await,
        "t1 was forgotten"
    );
    assert!(!claim("mailgun", "t1", "e1", 900_001, 500_000).await);
}

async fn square_deliveries_are_signed_over_the_public_url_and_dedup_on_their_event_id(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let body = json!({"merchant_id": "6SSW7HV8K2ST5", "type": "payment.updated",
        "event_id": "13b867cf-db3d-4b1c-90b6-2f32a9d78124", "created_at": "2024-05-08T14:21:09.123Z",
        "data": {"type": "payment", "id": "KkAkhdMsgzn59SM8A89WgKwekxLZY",
                 "object": {"payment": {"id": "KkAkhdMsgzn59SM8A89WgKwekxLZY", "status": "COMPLETED",
                                        "amount_money": {"amount": 100, "currency": "USD"}}}}});
    let expected = Expected {
        dedup_key: Some("id:13b867cf-db3d-4b1c-90b6-2f32a9d78124"),
        provider_event_id: json!("13b867cf-db3d-4b1c-90b6-2f32a9d78124"),
        action: json!("payment.updated"),
        object_type: json!("payment"),
        object_id: json!("KkAkhdMsgzn59SM8A89WgKwekxLZY"),
    };
    signed_redelivered_and_forged(&app, "square", &[], &body, expected).await;
    event_time_is(
        &app,
        "square",
        ("payment", "KkAkhdMsgzn59SM8A89WgKwekxLZY"),
        1_715_178_069_123,
    )
    .await;
    // The right key over another URL (a copy sent to another endpoint).
    let mut elsewhere = app.config.sources["square"].clone();
    elsewhere.public_url = Some("https://other.example.com/webhooks/square".into());
    let mut other = body.clone();
    other["event_id"] = json!("a-new-event");
    let bytes = serde_json::to_vec(&other).unwrap();
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(hookledger::sources::Source::new(elsewhere).sign(
        &headers,
        &bytes,
        app.now_secs(),
    ));
    let answer = app.post_raw("/webhooks/square", &headers, bytes).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, "invalid_signature")
    );
    assert_eq!(app.ledger_total().await, 1);
}

/// `app`'s twilio source signing as if its `public_url` were `url`.
fn twilio_signer(app: &TestApp, url: &str) -> hookledger::sources::Source {
    let mut config = app.config.sources["twilio"].clone();
    config.public_url = Some(url.into());
    hookledger::sources::Source::new(config)
}

async fn twilio_status_callbacks_are_signed_over_url_query_and_form_and_dedup_on_their_token(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let arrival_ms = app.clock.now_ms();
    let form_type = "application/x-www-form-urlencoded";
    let form =
        "SmsSid=SM1342fe1b2c904d1ab04f0fc7a58abca9&SmsStatus=delivered&MessageStatus=delivered\
                &To=%2B15558675310&MessageSid=SM1342fe1b2c904d1ab04f0fc7a58abca9&AccountSid=AC0123\
                &From=%2B15017250604&ApiVersion=2010-04-01";
    let token = "4bd1c5ea-2b9e-4c2b-9a4e-3f1b3f1b3f1b";
    let headers = [("I-Twilio-Idempotency-Token", token)];
    let with_type = |extra: &[(&str, &str)]| {
        let mut all = vec![("Content-Type".to_string(), form_type.to_string())];
        all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    };
    // Signed with another auth token: 401, nothing stored.
    let mut forged = with_type(&headers);
    forged.extend(wrong_signer(&app, "twilio").sign(&forged, form.as_bytes(), app.now_secs()));
    let answer = app
        .post_raw("/webhooks/twilio", &forged, form.as_bytes().to_vec())
        .await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, "invalid_signature")
    );
    assert_eq!(app.ledger_total().await, 0);

    let first = app
        .deliver_bytes("twilio", form_type, &headers, form.into())
        .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.body["dedup_key"], format!("id:{token}"));
    let again = app
        .deliver_bytes("twilio", form_type, &headers, form.into())
        .await;
    assert_eq!(
        (again.status, again.id()),
        (200, first.id()),
        "{:?}",
        again.body
    );
    assert_eq!(again.body["status"], "duplicate");
    let shown = event(&app, first.id()).await;
    assert_eq!(shown["provider_event_id"], token);
    assert_eq!(shown["action"], "delivered");
    assert_eq!(shown["object_type"], "message");
    assert_eq!(shown["object_id"], "SM1342fe1b2c904d1ab04f0fc7a58abca9");
    assert_eq!(shown["payload"]["From"], "+15017250604");
    // SPEC §11 names no event time for Twilio: arrival.
    event_time_is(
        &app,
        "twilio",
        ("message", "SM1342fe1b2c904d1ab04f0fc7a58abca9"),
        arrival_ms,
    )
    .await;

    // The query string as received is signed: with it, 202; the same
    // signature on the URL without it, 401.
    let call = "CallSid=CA1234567890ABCDE&CallStatus=completed&AccountSid=AC0123";
    let mut signed = with_type(&[("I-Twilio-Idempotency-Token", "call-1")]);
    let signer = twilio_signer(
        &app,
        "https://hooks.example.com/webhooks/twilio?leg=outbound",
    );
    signed.extend(signer.sign(&signed, call.as_bytes(), app.now_secs()));
    let bare = app.post_raw("/webhooks/twilio", &signed, call.into()).await;
    assert_eq!((bare.status, bare.error_code()), (401, "invalid_signature"));
    let queried = app
        .post_raw("/webhooks/twilio?leg=outbound", &signed, call.into())
        .await;
    assert_eq!(queried.status, 202, "{:?}", queried.body);
    assert_eq!(event(&app, queried.id()).await["object_type"], "call");
    // Signed with the default port written out: accepted too.
    let mut signed = with_type(&[("I-Twilio-Idempotency-Token", "call-2")]);
    let signer = twilio_signer(&app, "https://hooks.example.com:443/webhooks/twilio");
    let completed = "CallSid=CA99&CallStatus=busy";
    signed.extend(signer.sign(&signed, completed.as_bytes(), app.now_secs()));
    let ported = app
        .post_raw("/webhooks/twilio", &signed, completed.into())
        .await;
    assert_eq!(ported.status, 202, "{:?}", ported.body);
    // A JSON body: its hex SHA-256 in the signed URL's bodySHA256.
    let json_body = br#"{"MessageSid":"SM77","MessageStatus":"read"}"#.to_vec();
    let digest = hex::encode(sha2::Sha256::digest(&json_body));
    let query = format!("bodySHA256={digest}");
    let signer = twilio_signer(
        &app,
        &format!("https://hooks.example.com/webhooks/twilio?{query}"),
    );
    let mut signed = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            "I-Twilio-Idempotency-Token".to_string(),
            "json-1".to_string(),
        ),
    ];
    signed.extend(signer.sign(&signed, &json_body, app.now_secs()));
    let path = format!("/webhooks/twilio?{query}");
    let tampered = br#"{"MessageSid":"SM77","MessageStatus":"failed"}"#.to_vec();
    let answer = app.post_raw(&path, &signed, tampered).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, "invalid_signature")
    );
    let answer = app.post_raw(&path, &signed, json_body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(app.ledger_total().await, 4);
}
