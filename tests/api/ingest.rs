//! `POST /webhooks/{source}`: first-seen versus duplicate, every dedup rule,
//! every error code (and that a 4xx stores nothing), and concurrency.

use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    first_delivery_is_accepted_and_a_redelivery_is_a_duplicate_of_it,
    two_hundred_identical_deliveries_at_once_yield_one_acceptance,
    every_preset_accepts_a_signed_delivery,
    each_rejection_has_its_code_and_stores_nothing,
    body_over_the_limit_is_refused_while_streaming,
    acuity_unique_actions_dedup_on_action_and_object,
    coalesce_deliveries_merge_only_while_the_first_is_pending,
    ignored_actions_are_recorded_once_and_never_processed,
    payload_hash_dedups_within_the_window_and_across_one_bucket_boundary,
    payload_hash_copies_two_windows_apart_are_both_new,
    a_redelivery_with_other_content_is_flagged_but_formatting_is_not,
    every_fixture_replayed_twice_is_first_accepted_then_duplicate,
    metrics_count_each_outcome_by_source,
);

async fn first_delivery_is_accepted_and_a_redelivery_is_a_duplicate_of_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let event = stripe_event(
        "evt_1",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_1", "object": "invoice"}),
    );
    let first = app.deliver("stripe", &[], &event).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.body["status"], "accepted");
    assert_eq!(first.body["dedup_key"], "id:evt_1");
    assert_eq!(first.body["strategy"], "event_id");
    let again = app.deliver("stripe", &[], &event).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.id(), first.id());
    assert_eq!(again.body["dedup_key"], "id:evt_1");
    let detail = app
        .admin_get(&format!("/admin/events/{}", first.id()))
        .await;
    assert_eq!(detail.body["status"], "pending");
    assert_eq!(detail.body["duplicates"], 1);
    assert_eq!(detail.body["provider_event_id"], "evt_1");
    assert_eq!(detail.body["object_type"], "invoice");
    assert_eq!(detail.body["object_id"], "in_1");
    assert_eq!(detail.body["payload"]["id"], "evt_1");
    assert_eq!(app.ledger_total().await, 1);
}

async fn two_hundred_identical_deliveries_at_once_yield_one_acceptance(backend: Backend) {
    // Several ledger writers on PostgreSQL, so that copies race each other
    // across batches as well as inside one (SQLite has one writer).
    let app = spawn_app_with(
        backend,
        TestOptions {
            server_toml: "batch_writers = 4".into(),
            ..Default::default()
        },
    )
    .await;
    let body = serde_json::to_vec(&stripe_event(
        "evt_burst",
        "payment_intent.succeeded",
        app.now_secs(),
        json!({"id": "pi_1", "object": "payment_intent"}),
    ))
    .unwrap();
    let headers = app.signed_headers("stripe", &[("Content-Type", "application/json")], &body);
    let sends = (0..200).map(|_| app.post_raw("/webhooks/stripe", &headers, body.clone()));
    let answers = futures_util::future::join_all(sends).await;
    let accepted: Vec<_> = answers.iter().filter(|a| a.status == 202).collect();
    let duplicates: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(accepted.len(), 1, "exactly one first-seen");
    assert_eq!(duplicates.len(), 199);
    let id = accepted[0].id();
    assert!(
        answers.iter().all(|a| a.id() == id),
        "every answer names the same ledger row"
    );
    let stats = app.admin_get("/admin/stats").await;
    assert_eq!(stats.body["total"], 1);
    assert_eq!(stats.body["duplicates"], 199);
}

async fn every_preset_accepts_a_signed_delivery(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let stripe = app
        .deliver(
            "stripe",
            &[],
            &stripe_event(
                "evt_p",
                "invoice.paid",
                now,
                json!({"id": "in_p", "object": "invoice"}),
            ),
        )
        .await;
    assert_eq!(
        (stripe.status, stripe.body["dedup_key"].as_str()),
        (202, Some("id:evt_p"))
    );

    let github = app
        .deliver(
            "github",
            &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")],
            &json!({"action": "opened", "issue": {"id": 1347, "number": 1}, "repository": {"id": 1296269}}),
        )
        .await;
    assert_eq!(github.status, 202, "{:?}", github.body);
    assert_eq!(
        github.body["dedup_key"],
        "id:72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    let detail = app
        .admin_get(&format!("/admin/events/{}", github.id()))
        .await;
    assert_eq!(detail.body["action"], "issues.opened");
    assert_eq!(detail.body["object_type"], "issue");
    assert_eq!(detail.body["object_id"], "1347");

    let shopify = app
        .deliver(
            "shopify",
            &[
                ("X-Shopify-Topic", "orders/create"),
                (
                    "X-Shopify-Webhook-Id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
                ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
                ("X-Shopify-Triggered-At", "2026-11-26T12:00:00Z"),
            ],
            &json!({"id": 820982911946154500u64, "email": "jon@example.com"}),
        )
        .await;
    assert_eq!(shopify.status, 202, "{:?}", shopify.body);
    assert_eq!(
        shopify.body["dedup_key"],
        "id:98880550-7158-44d4-b7cd-2c97c8a091b5"
    );

    let acuity = app
        .deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            b"action=scheduled&id=12345&calendarID=1&appointmentTypeID=2".to_vec(),
        )
        .await;
    assert_eq!(acuity.status, 202, "{:?}", acuity.body);
    assert_eq!(acuity.body["dedup_key"], "act:scheduled:12345");
    assert_eq!(acuity.body["strategy"], "action_object");

    let standard = app
        .deliver(
            "standard",
            &[("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")],
            &json!({"type": "invoice.paid", "timestamp": "2026-11-26T12:00:00Z", "data": {"id": "inv_1"}}),
        )
        .await;
    assert_eq!(standard.status, 202, "{:?}", standard.body);
    assert_eq!(
        standard.body["dedup_key"],
        "id:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    );

    let billing = app
        .deliver(
            "billing",
            &[],
            &json!({"invoice": {"id": "INV-9"}, "total": 10}),
        )
        .await;
    assert_eq!(billing.status, 202, "{:?}", billing.body);
    assert_eq!(billing.body["strategy"], "payload_hash");
    let detail = app
        .admin_get(&format!("/admin/events/{}", billing.id()))
        .await;
    assert_eq!(
        (
            detail.body["object_type"].as_str(),
            detail.body["object_id"].as_str()
        ),
        (Some("invoice"), Some("INV-9"))
    );

    let orders = app
        .deliver("orders", &[("X-Request-Id", "req-1")], &json!({"order": 1}))
        .await;
    assert_eq!(orders.status, 202, "{:?}", orders.body);
    assert_eq!(orders.body["dedup_key"], "id:req-1");
    assert_eq!(app.ledger_total().await, 7);
}

/// A case of the rejection matrix: what is sent and what must come back.
struct Rejection {
    name: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

async fn each_rejection_has_its_code_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let event = serde_json::to_vec(&stripe_event(
        "evt_r",
        "invoice.paid",
        now,
        json!({"id": "in_r"}),
    ))
    .unwrap();
    let json_type = ("Content-Type".to_string(), "application/json".to_string());
    let signed = |source: &str, body: &[u8]| {
        app.signed_headers(source, &[("Content-Type", "application/json")], body)
    };
    let stripe_header = |t: i64, body: &[u8]| {
        let mut headers = app.source("stripe").sign(&[], body, t);
        headers.push(json_type.clone());
        headers
    };
    let cases = vec![
        Rejection {
            name: "unknown source",
            path: "/webhooks/nope",
            headers: signed("stripe", &event),
            body: event.clone(),
            status: 404,
            code: "unknown_source",
        },
        Rejection {
            name: "no content type",
            path: "/webhooks/stripe",
            headers: vec![],
            body: event.clone(),
            status: 415,
            code: "unsupported_media_type",
        },
        Rejection {
            name: "text/plain",
            path: "/webhooks/stripe",
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: event.clone(),
            status: 415,
            code: "unsupported_media_type",
        },
        Rejection {
            name: "missing signature",
            path: "/webhooks/stripe",
            headers: vec![json_type.clone()],
            body: event.clone(),
            status: 401,
            code: "missing_signature",
        },
        Rejection {
            name: "wrong signature",
            path: "/webhooks/stripe",
            headers: vec![
                json_type.clone(),
                (
                    "Stripe-Signature".into(),
                    format!("t={now},v1={}", "0".repeat(64)),
                ),
            ],
            body: event.clone(),
            status: 401,
            code: "invalid_signature",
        },
        Rejection {
            name: "garbage signature",
            path: "/webhooks/stripe",
            headers: vec![
                json_type.clone(),
                ("Stripe-Signature".into(), "garbage".into()),
            ],
            body: event.clone(),
            status: 401,
            code: "invalid_signature",
        },
        Rejection {
            name: "stale timestamp",
            path: "/webhooks/stripe",
            headers: stripe_header(now - 301, &event),
            body: event.clone(),
            status: 401,
            code: "timestamp_out_of_tolerance",
        },
        Rejection {
            name: "future timestamp",
            path: "/webhooks/stripe",
            headers: stripe_header(now + 301, &event),
            body: event.clone(),
            status: 401,
            code: "timestamp_out_of_tolerance",
        },
        Rejection {
            name: "github sha1 only",
            path: "/webhooks/github",
            headers: vec![
                json_type.clone(),
                ("X-Hub-Signature".into(), "sha1=0000".into()),
            ],
            body: b"{}".to_vec(),
            status: 401,
            code: "missing_signature",
        },
        Rejection {
            name: "malformed json",
            path: "/webhooks/stripe",
            headers: signed("stripe", b"{\"id\":"),
            body: b"{\"id\":".to_vec(),
            status: 400,
            code: "invalid_payload",
        },
        Rejection {
            name: "json array",
            path: "/webhooks/stripe",
            headers: signed("stripe", b"[1,2]"),
            body: b"[1,2]".to_vec(),
            status: 400,
            code: "invalid_payload",
        },
        Rejection {
            name: "json scalar",
            path: "/webhooks/stripe",
            headers: signed("stripe", b"42"),
            body: b"42".to_vec(),
            status: 400,
            code: "invalid_payload",
        },
        Rejection {
            name: "empty body",
            path: "/webhooks/stripe",
            headers: signed("stripe", b""),
            body: vec![],
            status: 400,
            code: "invalid_payload",
        },
        Rejection {
            name: "invalid utf-8",
            path: "/webhooks/stripe",
            headers: signed("stripe", b"{\"id\":\"\xff\"}"),
            body: b"{\"id\":\"\xff\"}".to_vec(),
            status: 400,
            code: "invalid_payload",
        },
        Rejection {
            name: "id over 256 bytes",
            path: "/webhooks/stripe",
            headers: signed(
                "stripe",
                format!("{{\"id\":\"{}\"}}", "e".repeat(257)).as_bytes(),
            ),
            body: format!("{{\"id\":\"{}\"}}", "e".repeat(257)).into_bytes(),
            status: 400,
            code: "invalid_payload",
        },
    ];
    for case in cases {
        let answer = app.post_raw(case.path, &case.headers, case.body).await;
        assert_eq!(
            answer.status, case.status,
            "{}: {:?}",
            case.name, answer.body
        );
        assert_eq!(answer.error_code(), case.code, "{}", case.name);
        assert!(answer.body["error"]["message"].is_string(), "{}", case.name);
        assert_eq!(app.ledger_total().await, 0, "{} stored nothing", case.name);
    }
    // And the server still takes a good delivery afterwards.
    let ok = app
        .post_raw("/webhooks/stripe", &signed("stripe", &event), event.clone())
        .await;
    assert_eq!(ok.status, 202, "{:?}", ok.body);
}

async fn body_over_the_limit_is_refused_while_streaming(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            server_toml: "max_body_bytes = 1024".into(),
            ..Default::default()
        },
    )
    .await;
    let big = format!("{{\"id\":\"evt_big\",\"pad\":\"{}\"}}", "x".repeat(2000)).into_bytes();
    let headers = app.signed_headers("stripe", &[("Content-Type", "application/json")], &big);
    let answer = app
        .post_raw("/webhooks/stripe", &headers, big.clone())
        .await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (413, "payload_too_large")
    );

    // Chunked: no Content-Length, so the limit is enforced while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let mut request = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
    for (k, v) in &headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let answer = read(request.send().await.unwrap()).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (413, "payload_too_large")
    );
    assert_eq!(app.ledger_total().await, 0);
}

async fn acuity_unique_actions_dedup_on_action_and_object(backend: Backend) {
    let app = spawn_app(backend).await;
    let form = |body: &str| {
        app.deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            body.as_bytes().to_vec(),
        )
    };
    let first = form("action=scheduled&id=77&calendarID=3").await;
    assert_eq!(
        (first.status, first.body["dedup_key"].as_str()),
        (202, Some("act:scheduled:77"))
    );
    // Same action and object, fields in another order: a duplicate.
    let again = form("calendarID=3&id=77&action=scheduled").await;
    assert_eq!((again.status, again.id()), (200, first.id()));
    // Another action on the same object is its own event.
    let canceled = form("action=canceled&id=77").await;
    assert_eq!(
        (canceled.status, canceled.body["dedup_key"].as_str()),
        (202, Some("act:canceled:77"))
    );
    let detail = app
        .admin_get(&format!("/admin/events/{}", first.id()))
        .await;
    assert_eq!(
        detail.body["payload"],
        json!({"action": "scheduled", "id": "77", "calendarID": "3"})
    );
    assert_eq!(detail.body["object_type"], "appointment");
}

async fn coalesce_deliveries_merge_only_while_the_first_is_pending(backend: Backend) {
    let app = spawn_app(backend).await;
    let changed = || {
        app.deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            b"action=changed&id=5".to_vec(),
        )
    };
    let first = changed().await;
    assert_eq!(
        (first.status, first.body["strategy"].as_str()),
        (202, Some("coalesce"))
    );
    assert_eq!(first.body["dedup_key"], "co:changed:5");
    let merged = changed().await;
    assert_eq!((merged.status, merged.id()), (200, first.id()));
    // Once a worker has claimed the first, the next edit is new work.
    let claimed = app
        .store
        .claim(app.clock.now_ms(), 30_000, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![first.id()]
    );
    let after_claim = changed().await;
    assert_eq!(after_claim.status, 202, "{:?}", after_claim.body);
    assert_ne!(after_claim.id(), first.id());
    let merged_again = changed().await;
    assert_eq!(
        (merged_again.status, merged_again.id()),
        (200, after_claim.id())
    );
}

async fn ignored_actions_are_recorded_once_and_never_processed(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: r#"
[sources.acuity_ignoring]
preset = "acuity"
secret = "ignore-secret"
actions = { scheduled = "unique", "appointment.noise" = "ignore" }
"#
            .into(),
            ..Default::default()
        },
    )
    .await;
    let send = || {
        app.deliver_bytes(
            "acuity_ignoring",
            "application/x-www-form-urlencoded",
            &[],
            b"action=appointment.noise&id=9".to_vec(),
        )
    };
    let first = send().await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["status"], "ignored");
    assert_eq!(first.body["dedup_key"], "ign:appointment.noise:9");
    assert_eq!(first.body["strategy"], "action_object");
    let second = send().await;
    assert_eq!(
        (second.status, second.body["status"].as_str(), second.id()),
        (200, Some("ignored"), first.id())
    );
    assert_eq!(app.drain().await, 0, "ignored rows are never claimed");
    let detail = app
        .admin_get(&format!("/admin/events/{}", first.id()))
        .await;
    assert_eq!(detail.body["status"], "ignored");
    assert_eq!(app.ledger_total().await, 1);
}

/// The first instant of a hash bucket of `window` seconds at or after `ms`.
fn next_bucket_start(ms: i64, window_secs: i64) -> i64 {
    (ms.div_euclid(window_secs * 1000) + 1) * window_secs * 1000
}

async fn payload_hash_dedups_within_the_window_and_across_one_bucket_boundary(backend: Backend) {
    let app = spawn_app(backend).await;
    // Ten seconds before a bucket boundary.
    app.clock
        .set_ms(next_bucket_start(app.clock.now_ms(), 300) - 10_000);
    let body = json!({"order": {"id": 1, "total": "9.99"}, "note": "no request id"});
    let first = app.deliver("orders", &[], &body).await;
    assert_eq!(
        (first.status, first.body["strategy"].as_str()),
        (202, Some("payload_hash"))
    );
    let key = first.body["dedup_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("hash:"));
    // Same content, other key order and whitespace, 20 s later: next bucket.
    app.clock.advance_ms(20_000);
    let reordered =
        br#"{ "note": "no request id", "order": { "total": "9.99", "id": 1 } }"#.to_vec();
    let copy = app
        .deliver_bytes("orders", "application/json", &[], reordered)
        .await;
    assert_eq!(
        (copy.status, copy.id()),
        (200, first.id()),
        "{:?}",
        copy.body
    );
    assert_eq!(
        copy.body["dedup_key"],
        key.as_str(),
        "names the first copy's bucket"
    );
    let dupes = app.admin_get("/admin/duplicates").await;
    assert_eq!(
        dupes.body["items"][0]["payload_differs"], false,
        "formatting alone never differs"
    );
}

async fn payload_hash_copies_two_windows_apart_are_both_new(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"order": {"id": 2}});
    let first = app.deliver("orders", &[], &body).await;
    assert_eq!(first.status, 202);
    app.clock.advance_ms(600_000);
    let later = app.deliver("orders", &[], &body).await;
    assert_eq!(later.status, 202, "{:?}", later.body);
    assert_ne!(later.id(), first.id());
}

async fn a_redelivery_with_other_content_is_flagged_but_formatting_is_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let event = stripe_event(
        "evt_d",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_d", "amount": 100}),
    );
    let first = app.deliver("stripe", &[], &event).await;
    let pretty = serde_json::to_vec_pretty(&event).unwrap();
    assert_eq!(
        app.deliver_bytes("stripe", "application/json", &[], pretty)
            .await
            .status,
        200
    );
    let listed = app.admin_get("/admin/duplicates").await;
    assert_eq!(listed.body["items"][0]["payload_differs"], false);
    let mut changed = event.clone();
    changed["data"]["object"]["amount"] = json!(200);
    let differs = app.deliver("stripe", &[], &changed).await;
    assert_eq!((differs.status, differs.id()), (200, first.id()));
    let listed = app.admin_get("/admin/duplicates").await;
    let item = &listed.body["items"][0];
    assert_eq!(item["id"], first.id());
    assert_eq!(item["duplicates"], 2);
    assert_eq!(item["payload_differs"], true);
}

async fn every_fixture_replayed_twice_is_first_accepted_then_duplicate(backend: Backend) {
    let app = spawn_app(backend).await;
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let count = hookledger::replay::collect_paths(std::slice::from_ref(&fixtures))
        .unwrap()
        .len();
    assert!(count >= 15, "fixtures for every preset ({count})");
    let first = hookledger::replay::run(
        &app.config,
        std::slice::from_ref(&fixtures),
        &app.address,
        1,
        4,
    )
    .await
    .unwrap();
    assert_eq!(first.sent, count);
    assert_eq!(first.errors, 0, "{first}");
    assert_eq!(first.accepted + first.ignored, count, "{first}");
    let second = hookledger::replay::run(&app.config, &[fixtures], &app.address, 1, 4)
        .await
        .unwrap();
    assert_eq!(second.errors, 0, "{second}");
    assert_eq!(second.duplicate + second.ignored, count, "{second}");
    assert_eq!(second.duplicate, first.accepted);
    assert_eq!(app.ledger_total().await as usize, count);
}

async fn metrics_count_each_outcome_by_source(backend: Backend) {
    let app = spawn_app(backend).await;
    let event = stripe_event(
        "evt_m",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_m"}),
    );
    app.deliver("stripe", &[], &event).await;
    app.deliver("stripe", &[], &event).await;
    app.post_raw(
        "/webhooks/stripe",
        &[("Content-Type".into(), "application/json".into())],
        b"{}".to_vec(),
    )
    .await;
    app.post_raw("/webhooks/made-up", &[], b"{}".to_vec()).await;
    let metrics = app.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    for line in [
        "hookledger_webhooks_received_total{source=\"stripe\",outcome=\"accepted\"} 1",
        "hookledger_webhooks_received_total{source=\"stripe\",outcome=\"duplicate\"} 1",
        "hookledger_webhooks_received_total{source=\"stripe\",outcome=\"rejected\"} 1",
        "hookledger_webhooks_received_total{source=\"_unknown\",outcome=\"rejected\"} 1",
        "hookledger_ingest_duration_seconds_count 4",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(
        !text.contains("made-up"),
        "a caller cannot mint label values"
    );
}
