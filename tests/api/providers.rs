//! The presets of SPEC §11 through the server: for each, a signed delivery
//! (202), its redelivery (200, the same id), a wrong signature (401,
//! nothing stored) and the provider id, action and object the admin API
//! shows; the Slack and Zoom handshakes (answered once signed, never
//! recorded, 401 otherwise); a list of secrets; GitHub's form content type.

use hookledger::sources::Source;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    slack_event_callbacks_dedup_on_their_event_id,
    slack_url_verification_is_answered_only_when_signed_and_never_recorded,
    zoom_events_dedup_on_their_payload_hash,
    zoom_url_validation_is_answered_only_when_signed_and_never_recorded,
    svix_paddle_bitbucket_and_typeform_deliveries_dedup_on_their_ids,
    a_delivery_signed_with_any_listed_secret_is_accepted,
    github_form_deliveries_are_unwrapped_and_stored_as_their_json,
);

/// What the admin API should show of a preset's delivery.
pub struct Expected<'a> {
    /// `None`: a payload hash, whatever its value.
    pub dedup_key: Option<&'a str>,
    pub provider_event_id: Value,
    pub action: Value,
    pub object_type: Value,
    pub object_id: Value,
}

/// `source`'s signature scheme under a secret (or private key) it does not have.
pub fn wrong_signer(app: &TestApp, source: &str) -> Source {
    let mut config = app.config.sources[source].clone();
    if config.public_key.is_some() {
        // Another key pair's private half (the unit vectors' test seed).
        return Source::new(config)
            .with_signing_key("whsk_aG9va2xlZGdlci10ZXN0LWVkMjU1MTktc2VlZC0wMSE=")
            .unwrap();
    }
    // A Standard Webhooks secret must be well-formed to sign at all.
    let wrong = match config.preset.as_str() {
        "standard" | "svix" => "whsec_bm90LXRoZS1zZWNyZXQ=",
        _ => "not-the-secret",
    };
    config.secrets = vec![hookledger::config::Secret::new(wrong)];
    Source::new(config)
}

/// The four steps every preset goes through; returns the ledger id.
pub async fn signed_redelivered_and_forged(
    app: &TestApp,
    source: &str,
    headers: &[(&str, &str)],
    body: &Value,
    expected: Expected<'_>,
) -> i64 {
    let bytes = serde_json::to_vec(body).unwrap();
    let (id, shown) = signed_redelivered_and_forged_bytes(
        app,
        source,
        "application/json",
        headers,
        bytes,
        expected,
    )
    .await;
    assert_eq!(shown["payload"], *body, "{source}");
    id
}

/// [`signed_redelivered_and_forged`] for a body of any content type;
/// returns the ledger id and the event as the admin API shows it.
pub async fn signed_redelivered_and_forged_bytes(
    app: &TestApp,
    source: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    bytes: Vec<u8>,
    expected: Expected<'_>,
) -> (i64, Value) {
    let mut plain: Vec<(String, String)> = vec![("Content-Type".into(), content_type.into())];
    plain.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let forged_headers = {
        let mut all = plain.clone();
        for (name, value) in wrong_signer(app, source).sign(&all, &bytes, app.now_secs()) {
            all.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
            all.push((name, value));
        }
        all
    };
    let path = format!("/webhooks/{source}");
    let forged = app.post_raw(&path, &forged_headers, bytes.clone()).await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (401, "invalid_signature"),
        "{source}"
    );
    assert_eq!(
        app.ledger_total().await,
        0,
        "{source}: a 401 stores nothing"
    );

    let first = app
        .deliver_bytes(source, content_type, headers, bytes.clone())
        .await;
    assert_eq!(first.status, 202, "{source}: {:?}", first.body);
    match expected.dedup_key {
        Some(key) => assert_eq!(first.body["dedup_key"], key, "{source}"),
        None => assert_eq!(first.body["strategy"], "payload_hash", "{source}"),
    }
    let again = app
        .deliver_bytes(source, content_type, headers, bytes)
        .await;
    assert_eq!(again.status, 200, "{source}: {:?}", again.body);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.id(), first.id());
    assert_eq!(app.ledger_total().await, 1);

    let shown = event(app, first.id()).await;
    assert_eq!(shown["source"], source);
    assert_eq!(
        shown["provider_event_id"], expected.provider_event_id,
        "{source}"
    );
    assert_eq!(shown["action"], expected.action, "{source}");
    assert_eq!(shown["object_type"], expected.object_type, "{source}");
    assert_eq!(shown["object_id"], expected.object_id, "{source}");
    (first.id(), shown)
}

/// An RFC 3339 instant in Unix ms, parsed outside hookledger's own code.
pub fn rfc3339_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 instant")
        .timestamp_millis()
}

/// The event time the admin API shows for ledger row `id`, in Unix ms.
pub async fn shown_event_time_is(app: &TestApp, source: &str, id: i64, expected_ms: i64) {
    let shown = event(app, id).await;
    assert_eq!(
        shown["event_time"],
        hookledger::clock::rfc3339(expected_ms),
        "{source}: the admin API's event time"
    );
}

async fn slack_event_callbacks_dedup_on_their_event_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({
        "token": "XXYYZZ", "team_id": "T0AB1CDE2", "api_app_id": "A0FG3HIJ4",
        "event": {"type": "app_mention", "user": "U0KL5MNO6", "text": "<@U0PQ7RST8> hi",
                  "ts": "1715172612.003219", "channel": "C0UV9WXY0"},
        "type": "event_callback", "event_id": "Ev071Z4RMC9K", "event_time": app.now_secs()
    });
    let expected = Expected {
        dedup_key: Some("id:Ev071Z4RMC9K"),
        provider_event_id: json!("Ev071Z4RMC9K"),
        action: json!("app_mention"),
        object_type: Value::Null,
        object_id: Value::Null,
    };
    let id = signed_redelivered_and_forged(&app, "slack", &[], &body, expected).await;
    // Slack's `event_time` is in Unix seconds.
    shown_event_time_is(&app, "slack", id, app.now_secs() * 1000).await;
}

/// A handshake: signed → `answer`, unsigned or forged → 401; never stored.
async fn handshake(app: &TestApp, source: &str, body: &Value, answer: Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let path = format!("/webhooks/{source}");
    let json_type = [("Content-Type".to_string(), "application/json".to_string())];
    let unsigned = app.post_raw(&path, &json_type, bytes.clone()).await;
    assert_eq!(
        (unsigned.status, unsigned.error_code()),
        (401, "missing_signature")
    );
    let mut forged = json_type.to_vec();
    forged.extend(wrong_signer(app, source).sign(&json_type.to_vec(), &bytes, app.now_secs()));
    let forged = app.post_raw(&path, &forged, bytes.clone()).await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (401, "invalid_signature")
    );
    for _ in 0..2 {
        let signed = app.deliver(source, &[], body).await;
        assert_eq!(signed.status, 200, "{source}: {:?}", signed.body);
        assert_eq!(signed.body, answer, "{source}");
    }
    assert_eq!(
        app.ledger_total().await,
        0,
        "{source}: a handshake is not recorded"
    );
    let metrics = app.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default();
    let line = format!(
        "hookledger_webhooks_received_total{{source=\"{source}\",outcome=\"challenge\"}} 2"
    );
    assert!(text.contains(&line), "missing {line}");
}

async fn slack_url_verification_is_answered_only_when_signed_and_never_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "url_verification",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"});
    let answer = json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"});
    handshake(&app, "slack", &body, answer).await;
}

async fn zoom_events_dedup_on_their_payload_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({
        "event": "meeting.started", "event_ts": app.clock.now_ms(),
        "payload": {"account_id": "D8cJuqWVQ623CI4Q8yQK0Q",
                    "object": {"id": "85746065432", "uuid": "4444AAAiAAAAAiAiAiiAii==", "topic": "Sync"}}
    });
    let id = signed_redelivered_and_forged(
        &app,
        "zoom",
        &[],
        &body,
        Expected {
            dedup_key: None,
            provider_event_id: Value::Null,
            action: json!("meeting.started"),
            object_type: json!("meeting"),
            object_id: json!("85746065432"),
        },
    )
    .await;
    // Zoom's `event_ts` is in Unix milliseconds.
    shown_event_time_is(&app, "zoom", id, body["event_ts"].as_i64().unwrap()).await;
    // The key is a payload hash over a two-hour window: a copy an hour and
    // a half later (Zoom's third retry) is still the same event.
    app.clock.advance_ms(85 * 60 * 1000);
    let late = app.deliver("zoom", &[], &body).await;
    assert_eq!((late.status, late.id()), (200, id), "{:?}", late.body);
}

async fn zoom_url_validation_is_answered_only_when_signed_and_never_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
        "event_ts": app.clock.now_ms(), "event": "endpoint.url_validation"});
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"test-zoom",
    //   b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest())'
    let answer = json!({"plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": "3b91d349f5addc301cfdede0910081b32a57af08f61e22428efb0b125612937a"});
    handshake(&app, "zoom", &body, answer).await;
}

async fn a_delivery_signed_with_any_listed_secret_is_accepted(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml:
                "[sources.rotating]\npreset = \"github\"\nsecret = [\"gh-new\", \"gh-old\"]\n"
                    .into(),
            ..TestOptions::default()
        },
    )
    .await;
    let body = json!({"action": "opened", "issue": {"id": 7}});
    for (n, secret) in ["gh-old", "gh-new"].into_iter().enumerate() {
        let mut config = app.config.sources["rotating"].clone();
        config.secrets = vec![hookledger::config::Secret::new(secret)];
        let bytes = serde_json::to_vec(&body).unwrap();
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-GitHub-Event".to_string(), "issues".to_string()),
            ("X-GitHub-Delivery".to_string(), format!("d-{n}")),
        ];
        headers.extend(Source::new(config).sign(&headers, &bytes, app.now_secs()));
        let answer = app.post_raw("/webhooks/rotating", &headers, bytes).await;
        assert_eq!(answer.status, 202, "{secret}: {:?}", answer.body);
    }
    let forged = wrong_signer(&app, "rotating");
    let bytes = serde_json::to_vec(&body).unwrap();
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(forged.sign(&headers, &bytes, app.now_secs()));
    let answer = app.post_raw("/webhooks/rotating", &headers, bytes).await;
    assert_eq!(answer.status, 401);
    assert_eq!(app.ledger_total().await, 2);
}

async fn github_form_deliveries_are_unwrapped_and_stored_as_their_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let json = json!({"action": "opened", "issue": {"id": 1_234_567, "number": 3},
        "repository": {"id": 1_296_269}});
    let form = format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(json.to_string().as_bytes()).collect::<String>()
    );
    let headers = [
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let first = app
        .deliver_bytes(
            "github",
            "application/x-www-form-urlencoded",
            &headers,
            form.clone().into_bytes(),
        )
        .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let shown = event(&app, first.id()).await;
    assert_eq!(shown["payload"], json);
    assert_eq!(shown["action"], "issues.opened");
    assert_eq!(
        (&shown["object_type"], &shown["object_id"]),
        (&json!("issue"), &json!("1234567"))
    );
    let again = app
        .deliver_bytes(
            "github",
            "application/x-www-form-urlencoded",
            &headers,
            form.into_bytes(),
        )
        .await;
    assert_eq!((again.status, again.id()), (200, first.id()));
}

async fn svix_paddle_bitbucket_and_typeform_deliveries_dedup_on_their_ids(backend: Backend) {
    let cases = [
        (
            "svix",
            vec![("svix-id", "msg_2mQ8XcT4vB7nK1pL9wR3sY6dF0a")],
            json!({"type": "customer.created", "timestamp": "2024-05-08T14:21:09Z",
                   "data": {"id": "cus_01HX4RZ6M2K8Q1T5V9W3Y7B0CD"}}),
            Expected {
                dedup_key: Some("id:msg_2mQ8XcT4vB7nK1pL9wR3sY6dF0a"),
                provider_event_id: json!("msg_2mQ8XcT4vB7nK1pL9wR3sY6dF0a"),
                action: json!("customer.created"),
                object_type: json!("customer"),
                object_id: json!("cus_01HX4RZ6M2K8Q1T5V9W3Y7B0CD"),
            },
        ),
        (
            "paddle",
            vec![],
            json!({"event_id": "evt_01hv8x2acma2gz3he8v8ram9rn", "event_type": "transaction.completed",
                   "occurred_at": "2024-05-08T14:10:00.123Z", "data": {"id": "txn_01hv8wptq8987qeep44cyrewp9"}}),
            Expected {
                dedup_key: Some("id:evt_01hv8x2acma2gz3he8v8ram9rn"),
                provider_event_id: json!("evt_01hv8x2acma2gz3he8v8ram9rn"),
                action: json!("transaction.completed"),
                object_type: json!("transaction"),
                object_id: json!("txn_01hv8wptq8987qeep44cyrewp9"),
            },
        ),
        (
            "bitbucket",
            vec![
                ("X-Event-Key", "repo:push"),
                ("X-Request-UUID", "b1e5c2a0-0d5e-4b5e-8f8e-1c2d3e4f5a6b"),
            ],
            json!({"push": {"changes": []}, "repository": {"full_name": "team/repo"}}),
            Expected {
                dedup_key: Some("id:b1e5c2a0-0d5e-4b5e-8f8e-1c2d3e4f5a6b"),
                provider_event_id: json!("b1e5c2a0-0d5e-4b5e-8f8e-1c2d3e4f5a6b"),
                action: json!("repo:push"),
                object_type: Value::Null,
                object_id: Value::Null,
            },
        ),
        (
            "typeform",
            vec![],
            json!({"event_id": "01HX4Q8ZT3V9K2M7N5P6R8S0TA", "event_type": "form_response",
                   "form_response": {"form_id": "lT4Z3j", "token": "a3a12ec67a1365927098a606107fac15"}}),
            Expected {
                dedup_key: Some("id:01HX4Q8ZT3V9K2M7N5P6R8S0TA"),
                provider_event_id: json!("01HX4Q8ZT3V9K2M7N5P6R8S0TA"),
                action: json!("form_response"),
                object_type: json!("form_response"),
                object_id: json!("a3a12ec67a1365927098a606107fac15"),
            },
        ),
    ];
    for (source, headers, body, expected) in cases {
        // A fresh app each: the helper counts the whole ledger.
        let app = spawn_app(backend).await;
        let arrival_ms = app.clock.now_ms();
        let id = signed_redelivered_and_forged(&app, source, &headers, &body, expected).await;
        // Svix and Paddle sign an RFC 3339 time into the body; Bitbucket
        // and Typeform carry none, so the event time is the arrival.
        let event_ms = match source {
            "svix" => rfc3339_ms("2024-05-08T14:21:09Z"),
            "paddle" => rfc3339_ms("2024-05-08T14:10:00.123Z"),
            _ => arrival_ms,
        };
        shown_event_time_is(&app, source, id, event_ms).await;
    }
}
