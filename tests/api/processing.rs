//! Processing (SPEC §4), driven by hand: events are delivered over HTTP, the
//! worker is drained at the manual clock's time, and the clock is advanced
//! past backoffs and leases instead of sleeping. The wiremock upstream plays
//! the provider's API for sources with `fetch`.

use std::time::Duration;

use hookledger::worker::fetch::MAX_ANSWER_BYTES;
use hookledger::worker::Outcome;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{basic_auth, bearer_token, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_failed_fetch_is_retried_after_its_backoff_and_the_fetched_document_becomes_the_row,
    an_upstream_4xx_makes_the_event_dead_at_once,
    an_upstream_failing_every_time_is_retried_with_growing_backoff_until_max_attempts,
    an_expired_lease_is_claimed_again_and_the_event_finishes_once,
    an_older_event_arriving_later_does_not_overwrite_the_newer_row,
    without_fetch_the_row_is_the_payload_object,
    an_upstream_429_holds_the_event_and_its_whole_source_until_retry_after,
    ids_are_percent_encoded_in_the_fetched_path,
    a_fetch_url_needing_an_absent_value_makes_the_event_dead,
    an_oversized_upstream_answer_makes_the_event_dead,
    an_upstream_slower_than_the_timeout_is_retried,
    the_background_loop_processes_events_and_stops_on_shutdown,
);

async fn domain_data(
    app: &TestApp,
    source: &str,
    object_type: &str,
    object_id: &str,
) -> Option<Value> {
    let row = app
        .store
        .domain_object(source, object_type, object_id)
        .await
        .unwrap()?;
    Some(serde_json::from_str(&row.data).expect("domain data is JSON"))
}

async fn requests_to(app: &TestApp, request_path: &str) -> usize {
    let requests = app.upstream.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path() == request_path)
        .count()
}

async fn metric(app: &TestApp, source: &str, result: &str) -> String {
    let text = app.get("/metrics").await.body;
    let text = text.as_str().unwrap_or_default().to_string();
    let series =
        format!("hookledger_events_processed_total{{source=\"{source}\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()).map(str::to_string))
        .unwrap_or_else(|| "0".to_string())
}

async fn a_failed_fetch_is_retried_after_its_backoff_and_the_fetched_document_becomes_the_row(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let document =
        r#"{"id": "evt_r1", "object": "event", "data": {"object": {"id": "in_r1", "paid": true}}}"#;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_r1"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_r1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>maintenance</html>", "text/html"),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&app.upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_r1"))
        .and(bearer_token("sk_test_upstream"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(document, "application/json"))
        .with_priority(3)
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_r1", "in_r1").await;

    assert_eq!(app.drain().await, 1);
    let after_503 = event(&app, id).await;
    assert_eq!(after_503["status"], "failed");
    assert_eq!(after_503["attempts"], 1);
    let error = after_503["last_error"].as_str().unwrap();
    assert!(error.contains("503"), "{error}");
    assert!(
        error.contains("/v1/events/evt_r1") && !error.contains("sk_test"),
        "{error}"
    );
    assert_eq!(app.drain().await, 0, "not due before its backoff");

    // Retry 1 waits 1..2 s (base 2 s).
    app.clock.advance_ms(2_000);
    assert_eq!(app.drain().await, 1);
    let after_html = event(&app, id).await;
    assert_eq!(
        after_html["status"], "failed",
        "a body that is not JSON is retried"
    );
    assert!(after_html["last_error"]
        .as_str()
        .unwrap()
        .contains("not JSON"));

    // Retry 2 waits 2..4 s.
    app.clock.advance_ms(4_000);
    assert_eq!(app.drain().await, 1);
    let done = event(&app, id).await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["last_error"], Value::Null);
    let row = app
        .store
        .domain_object("stripe_fetch", "invoice", "in_r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&row.data).unwrap(),
        serde_json::from_str::<Value>(document).unwrap(),
        "the fetched document is stored as returned (PostgreSQL's jsonb prints it its own way)"
    );
    assert_eq!(row.last_event_id, id);
    assert_eq!(requests_to(&app, "/v1/events/evt_r1").await, 3);
    assert_eq!(metric(&app, "stripe_fetch", "retry").await, "2");
    assert_eq!(metric(&app, "stripe_fetch", "done").await, "1");
}

async fn an_upstream_4xx_makes_the_event_dead_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "no such event"})))
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_gone", "in_gone").await;
    assert_eq!(app.drain().await, 1);
    let dead = event(&app, id).await;
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["last_error"].as_str().unwrap().contains("404"),
        "{}",
        dead["last_error"]
    );
    app.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(app.drain().await, 0, "a dead event is never retried");
    assert_eq!(requests_to(&app, "/v1/events/evt_gone").await, 1);
    assert!(domain_data(&app, "stripe_fetch", "invoice", "in_gone")
        .await
        .is_none());
    assert_eq!(metric(&app, "stripe_fetch", "dead").await, "1");
}

async fn an_upstream_failing_every_time_is_retried_with_growing_backoff_until_max_attempts(
    backend: Backend,
) {
    let app = spawn_app(backend).await; // max_attempts = 4, backoff 2 s .. 60 s
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_500"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_500", "in_500").await;
    assert_eq!(app.drain().await, 1);
    // Retry n is due between d/2 and d after the failure, d = 2 s * 2^(n-1).
    for d_ms in [2_000, 4_000, 8_000] {
        app.clock.advance_ms(d_ms / 2 - 1);
        assert_eq!(app.drain().await, 0, "retry before d/2 = {} ms", d_ms / 2);
        app.clock.advance_ms(d_ms / 2 + 1);
        assert_eq!(app.drain().await, 1, "retry by d = {d_ms} ms");
    }
    let dead = event(&app, id).await;
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], 4);
    let error = dead["last_error"].as_str().unwrap();
    assert!(
        error.contains("500") && error.contains("gave up after 4 attempts"),
        "{error}"
    );
    app.clock.advance_ms(3600 * 1000);
    assert_eq!(app.drain().await, 0);
    assert_eq!(requests_to(&app, "/v1/events/evt_500").await, 4);
    assert_eq!(metric(&app, "stripe_fetch", "retry").await, "3");
    assert_eq!(metric(&app, "stripe_fetch", "dead").await, "1");
}

async fn an_expired_lease_is_claimed_again_and_the_event_finishes_once(backend: Backend) {
    let app = spawn_app(backend).await; // lease_secs = 30
    let id = deliver_invoice(&app, "stripe", "evt_lease", "in_lease").await;
    // A worker claims it and vanishes.
    let stale = app
        .store
        .claim(app.clock.now_ms(), 30_000, 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(app.drain().await, 0, "leased to the vanished worker");
    app.clock.advance_ms(29_999);
    assert_eq!(app.drain().await, 0, "lease not yet expired");
    app.clock.advance_ms(1);
    assert_eq!(
        app.drain().await,
        1,
        "claimable again once the lease expired"
    );
    let done = event(&app, id).await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["attempts"], 2);
    // The vanished worker comes back: its lease is gone, it changes nothing.
    let outcome = app
        .worker
        .process(&stale[0], &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::LeaseLost);
    assert_eq!(event(&app, id).await["status"], "done");
    assert_eq!(metric(&app, "stripe", "done").await, "1");
    let row = app
        .store
        .domain_object("stripe", "invoice", "in_lease")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_event_id, id);
}

async fn an_older_event_arriving_later_does_not_overwrite_the_newer_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let newer = stripe_event(
        "evt_new",
        "customer.updated",
        now,
        json!({"id": "cus_1", "object": "customer", "name": "new"}),
    );
    let older = stripe_event(
        "evt_old",
        "customer.updated",
        now - 100,
        json!({"id": "cus_1", "object": "customer", "name": "old"}),
    );
    let newer_id = app.deliver("stripe", &[], &newer).await.id();
    let older_id = app.deliver("stripe", &[], &older).await.id();
    assert_eq!(app.drain().await, 2);
    assert_eq!(event(&app, newer_id).await["status"], "done");
    assert_eq!(event(&app, older_id).await["status"], "done");
    let row = app
        .store
        .domain_object("stripe", "customer", "cus_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_event_id, newer_id);
    assert_eq!(
        serde_json::from_str::<Value>(&row.data).unwrap()["name"],
        "new"
    );

    // And a genuinely newer event still wins.
    let newest = stripe_event(
        "evt_newest",
        "customer.updated",
        now + 5,
        json!({"id": "cus_1", "object": "customer", "name": "newest"}),
    );
    let newest_id = app.deliver("stripe", &[], &newest).await.id();
    assert_eq!(app.drain().await, 1);
    let row = app
        .store
        .domain_object("stripe", "customer", "cus_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_event_id, newest_id);
}

async fn without_fetch_the_row_is_the_payload_object(backend: Backend) {
    let app = spawn_app(backend).await;
    let object =
        json!({"id": "in_plain", "object": "invoice", "amount_due": 1200, "lines": {"data": []}});
    let stripe = app
        .deliver(
            "stripe",
            &[],
            &stripe_event(
                "evt_plain",
                "invoice.finalized",
                app.now_secs(),
                object.clone(),
            ),
        )
        .await;
    assert_eq!(stripe.status, 202);
    let billing_payload = json!({"invoice": {"id": "inv_7", "total": 5}, "note": "whole payload"});
    let billing = app.deliver("billing", &[], &billing_payload).await;
    assert_eq!(billing.status, 202, "{:?}", billing.body);
    assert_eq!(app.drain().await, 2);
    assert_eq!(
        domain_data(&app, "stripe", "invoice", "in_plain").await,
        Some(object),
        "Stripe: /data/object"
    );
    assert_eq!(
        domain_data(&app, "billing", "invoice", "inv_7").await,
        Some(billing_payload),
        "others: the whole payload"
    );
    assert!(app
        .upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
}

async fn an_upstream_429_holds_the_event_and_its_whole_source_until_retry_after(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_a"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "120"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.upstream)
        .await;
    for event_id in ["evt_a", "evt_b"] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/events/{event_id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": event_id})))
            .with_priority(2)
            .mount(&app.upstream)
            .await;
    }
    let a = deliver_invoice(&app, "stripe_fetch", "evt_a", "in_a").await;
    assert_eq!(app.drain().await, 1);
    let throttled = event(&app, a).await;
    assert_eq!(throttled["status"], "failed");
    assert!(throttled["last_error"].as_str().unwrap().contains("429"));

    // Another event of the same source waits for the pause too, without
    // calling the upstream and without spending an attempt.
    let b = deliver_invoice(&app, "stripe_fetch", "evt_b", "in_b").await;
    assert_eq!(app.drain().await, 0);
    assert_eq!(requests_to(&app, "/v1/events/evt_b").await, 0);
    assert_eq!(event(&app, b).await["attempts"], 0);

    // The backoff alone (1..2 s) would retry much sooner than Retry-After.
    app.clock.advance_ms(119_000);
    assert_eq!(app.drain().await, 0, "Retry-After: 120 is respected");
    app.clock.advance_ms(1_000);
    assert_eq!(app.drain().await, 2);
    assert_eq!(event(&app, a).await["status"], "done");
    assert_eq!(event(&app, b).await["status"], "done");
    assert_eq!(event(&app, b).await["attempts"], 1);
    assert_eq!(requests_to(&app, "/v1/events/evt_a").await, 2);
    assert_eq!(requests_to(&app, "/v1/events/evt_b").await, 1);
}

async fn ids_are_percent_encoded_in_the_fetched_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let document = "{ \"id\": \"a/b?c d#\u{e9}\",\n  \"status\": \"booked\" }\n";
    Mock::given(method("GET"))
        .and(path("/api/v1/appointments/a%2Fb%3Fc%20d%23%C3%A9"))
        .and(basic_auth("user", "test-acuity-fetch"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(document, "application/json"))
        .mount(&app.upstream)
        .await;
    let body = b"action=scheduled&id=a%2Fb%3Fc%20d%23%C3%A9".to_vec();
    let answer = app
        .deliver_bytes(
            "acuity_fetch",
            "application/x-www-form-urlencoded",
            &[],
            body,
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(app.drain().await, 1);
    let done = event(&app, answer.id()).await;
    assert_eq!(done["status"], "done", "{:?}", done["last_error"]);
    let row = app
        .store
        .domain_object("acuity_fetch", "appointment", "a/b?c d#\u{e9}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&row.data).unwrap(),
        serde_json::from_str::<Value>(document).unwrap()
    );
    if backend == Backend::Sqlite {
        assert_eq!(row.data, document, "SQLite keeps the text byte for byte");
    }
}

async fn a_fetch_url_needing_an_absent_value_makes_the_event_dead(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = app
        .deliver_bytes(
            "acuity_fetch",
            "application/x-www-form-urlencoded",
            &[],
            b"action=scheduled".to_vec(),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(app.drain().await, 1);
    let dead = event(&app, answer.id()).await;
    assert_eq!(dead["status"], "dead");
    assert!(
        dead["last_error"].as_str().unwrap().contains("{object_id}"),
        "{}",
        dead["last_error"]
    );
    assert!(app
        .upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
}

async fn an_oversized_upstream_answer_makes_the_event_dead(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut big = vec![b' '; MAX_ANSWER_BYTES];
    big.extend_from_slice(b"{}");
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_big"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, "application/json"))
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_big", "in_big").await;
    assert_eq!(app.drain().await, 1);
    let dead = event(&app, id).await;
    assert_eq!(dead["status"], "dead");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("larger than 10 MiB"),
        "{}",
        dead["last_error"]
    );
}

async fn an_upstream_slower_than_the_timeout_is_retried(backend: Backend) {
    let app = spawn_app(backend).await; // fetch.timeout_secs = 2
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({}))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_slow", "in_slow").await;
    let started = std::time::Instant::now();
    assert_eq!(app.drain().await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up at the timeout"
    );
    let failed = event(&app, id).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["last_error"].as_str().unwrap().contains("timed out"),
        "{}",
        failed["last_error"]
    );
}

/// The one test of the background loop; it waits (bounded) for the loop to
/// catch up, since the loop runs on its own.
async fn the_background_loop_processes_events_and_stops_on_shutdown(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            processing_toml: "poll_interval_ms = 20".into(),
            ..TestOptions::default()
        },
    )
    .await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.worker.clone().run(2, shutdown.clone()));
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            deliver_invoice(
                &app,
                "stripe",
                &format!("evt_bg{n}"),
                &format!("in_bg{}", n % 2),
            )
            .await,
        );
    }
    let all_done = async {
        loop {
            let mut done = 0;
            for id in &ids {
                done += usize::from(event(&app, *id).await["status"] == "done");
            }
            if done == ids.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all_done)
        .await
        .expect("the background loop processes every event");
    let row = app
        .store
        .domain_object("stripe", "invoice", "in_bg0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.last_event_id, ids[4],
        "one object's events ran in arrival order"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the loop stops promptly on shutdown")
        .unwrap();
}
