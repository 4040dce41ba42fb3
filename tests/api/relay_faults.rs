//! The HTTP relay against receivers that misbehave (SPEC §7, issue 12 items
//! 3 and 7): every retried answer class, redirects never followed, a
//! receiver that refuses connections, hangs, cuts its answer short or
//! answers 10 MiB, HTML answers, configured headers and a URL that webhook
//! data cannot steer. Receivers are hand-written ([`BadReceiver`]) so a test
//! controls every byte and can see, from the receiver's side, how far the
//! relay read. Load and isolation (concurrency, rate, a hanging or paused
//! destination next to a healthy one, shutdown mid-attempt) are in
//! `relay_load.rs`.

use std::time::{Duration, Instant};

use hookledger::relay::DeliveryOutcome;
use hookledger::store::deliveries::DeliveryRow;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use wiremock::MockServer;

use crate::bad_receiver::{refused_port, Act, BadReceiver, Request};
use crate::helpers::*;

/// A `paid` source (Stripe preset) delivering every event to each of
/// `destinations` — `(name, url, extra TOML lines)`, all HTTP and unsigned
/// unless the extra lines say otherwise — with `processing` added to the
/// test's `[processing]`.
pub async fn app_delivering_to(
    backend: Backend,
    destinations: &[(&str, String, &str)],
    processing: &str,
) -> TestApp {
    let rules: Vec<String> = destinations
        .iter()
        .map(|(name, _, _)| format!("{{ to = \"{name}\" }}"))
        .collect();
    let mut toml = format!(
        "\n[sources.paid]\npreset = \"stripe\"\nsecret = \"whsec_test_paid\"\ndeliver = [{}]\n",
        rules.join(", ")
    );
    for (name, url, extra) in destinations {
        let sign = if extra.contains("secret") {
            ""
        } else {
            "sign = \"off\"\n"
        };
        toml.push_str(&format!(
            "\n[destinations.{name}]\nkind = \"http\"\nurl = \"{url}\"\n{sign}{extra}\n"
        ));
    }
    spawn_app_with(
        backend,
        TestOptions {
            extra_toml: toml,
            processing_toml: processing.to_string(),
            ..TestOptions::default()
        },
    )
    .await
}

/// Delivers one `invoice.paid` per object id and processes them; returns
/// the ledger ids, in order.
pub async fn processed_invoices(app: &TestApp, objects: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (n, object) in objects.iter().enumerate() {
        let event_id = format!("evt_{object}_{n}");
        ids.push(deliver_invoice(app, "paid", &event_id, object).await);
    }
    app.drain().await;
    ids
}

/// Event `event_id`'s delivery to `destination`.
pub async fn delivery_to(app: &TestApp, event_id: i64, destination: &str) -> DeliveryRow {
    app.store
        .deliveries_of_event(event_id)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.destination == destination)
        .unwrap_or_else(|| panic!("event {event_id} has no delivery to {destination}"))
}

/// The receiver's requests for one object.
fn for_object(requests: &[Request], object: &str) -> usize {
    requests.iter().filter(|r| r.object_id() == object).count()
}

/// What the class test expects of each object after one attempt: its
/// receiver's act, `last_status`, and a piece of `last_error`.
struct Case {
    object: &'static str,
    status: Option<i32>,
    error: &'static str,
}

const CASES: [Case; 9] = [
    Case {
        object: "in_408",
        status: Some(408),
        error: "HTTP 408",
    },
    Case {
        object: "in_409",
        status: Some(409),
        error: "HTTP 409",
    },
    Case {
        object: "in_425",
        status: Some(425),
        error: "HTTP 425",
    },
    Case {
        object: "in_429",
        status: Some(429),
        error: "HTTP 429",
    },
    Case {
        object: "in_500",
        status: Some(500),
        error: "HTTP 500: oops",
    },
    Case {
        object: "in_301",
        status: Some(301),
        error: "redirect, which is not followed",
    },
    Case {
        object: "in_close",
        status: None,
        error: "request failed",
    },
    Case {
        object: "in_cut_head",
        status: None,
        error: "request failed",
    },
    Case {
        object: "in_cut_body",
        status: Some(503),
        error: "HTTP 503",
    },
];

async fn every_retried_answer_class_is_retried_then_dead_after_max_attempts(backend: Backend) {
    // The Location of the 301: it must never see a request.
    let elsewhere = MockServer::start().await;
    let location = format!("{}/stolen", elsewhere.uri());
    let receiver = BadReceiver::start(move |request| match request.object_id().as_str() {
        "in_408" => Act::status(408),
        "in_409" => Act::status(409),
        "in_425" => Act::status(425),
        "in_429" => Act::status(429),
        "in_500" => Act::html(500, "oops"),
        "in_301" => Act::with_header(301, "Location", &location),
        "in_close" => Act::Close,
        "in_cut_head" => Act::Raw(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()),
        "in_cut_body" => Act::Raw(
            b"HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nonly a few"
                .to_vec(),
        ),
        other => panic!("unexpected object {other}"),
    });
    let app = app_delivering_to(
        backend,
        &[
            (
                "a",
                receiver.url("/hooks"),
                "max_attempts = 3\nconcurrency = 16\ntimeout_secs = 5",
            ),
            (
                "refused",
                format!("http://127.0.0.1:{}/hooks", refused_port()),
                "max_attempts = 3\nconcurrency = 16",
            ),
        ],
        "",
    )
    .await;
    let objects: Vec<&str> = CASES.iter().map(|c| c.object).collect();
    let ids = processed_invoices(&app, &objects).await;

    for round in 1..=3 {
        let now = app.clock.now_ms();
        let expected = if round < 3 {
            DeliveryOutcome::Retry
        } else {
            DeliveryOutcome::Dead
        };
        assert_eq!(
            app.relay("a").drain().await.unwrap(),
            vec![expected; CASES.len()],
            "round {round}"
        );
        assert_eq!(
            app.relay("refused").drain().await.unwrap(),
            vec![expected; CASES.len()],
            "round {round}: connection refused"
        );
        let requests = receiver.requests();
        for (case, id) in CASES.iter().zip(&ids) {
            let row = delivery_to(&app, *id, "a").await;
            let error = row.last_error.as_deref().unwrap_or_default();
            assert_eq!(row.attempts, round, "{}", case.object);
            assert_eq!(row.last_status, case.status, "{}: {error}", case.object);
            assert!(error.contains(case.error), "{}: {error}", case.object);
            assert_eq!(
                for_object(&requests, case.object),
                round as usize,
                "{}",
                case.object
            );
            if round < 3 {
                assert_eq!(row.status, "failed", "{}", case.object);
                assert!(row.next_attempt_at > now, "{}: a backoff", case.object);
            } else {
                assert_eq!(row.status, "dead", "{}", case.object);
                assert!(error.ends_with("(gave up after 3 attempts)"), "{error}");
            }
            let refused = delivery_to(&app, *id, "refused").await;
            let refused_error = refused.last_error.as_deref().unwrap_or_default();
            assert!(
                refused_error.starts_with("could not connect"),
                "{refused_error}"
            );
            assert_eq!(refused.last_status, None);
        }
        // Past every backoff (base 2 s, max 60 s).
        app.clock.advance_ms(120_000);
    }
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "a redirect is never followed"
    );
    let attempts: Vec<String> = receiver
        .requests()
        .iter()
        .filter(|r| r.object_id() == "in_500")
        .map(|r| r.header("hookledger-attempt").to_string())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
}

/// `Retry-After` as delay-seconds (`/secs`) and as an HTTP-date (`/date`).
async fn retry_after_as_seconds_or_a_date_holds_the_delivery_and_its_destination(backend: Backend) {
    // 150 s ahead of the app's clock, which starts at the real time (the
    // date has whole seconds; rounding it down keeps it inside the window).
    let date_ms = (chrono::Utc::now().timestamp_millis() / 1000 + 150) * 1000;
    let date = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(date_ms).unwrap()),
    );
    let receiver = BadReceiver::start(move |request| match request.target.as_str() {
        "/secs" => Act::with_header(429, "Retry-After", "120"),
        _ => Act::with_header(503, "Retry-After", &date),
    });
    let app = app_delivering_to(
        backend,
        &[
            ("secs", receiver.url("/secs"), ""),
            ("date", receiver.url("/date"), ""),
        ],
        "",
    )
    .await;
    let start = app.clock.now_ms();
    let first = processed_invoices(&app, &["in_1"]).await[0];
    for (name, until) in [("secs", start + 120_000), ("date", date_ms)] {
        assert_eq!(
            app.relay(name).drain().await.unwrap(),
            [DeliveryOutcome::Retry]
        );
        let row = delivery_to(&app, first, name).await;
        assert_eq!(row.status, "failed");
        assert!(
            row.next_attempt_at >= until,
            "{name}: {} < {until}",
            row.next_attempt_at
        );
    }
    // The receiver asked for a pause: another object's delivery waits
    // unattempted for it too, spending no attempt.
    let second = processed_invoices(&app, &["in_2"]).await[0];
    for (name, until) in [("secs", start + 120_000), ("date", date_ms)] {
        assert_eq!(
            app.relay(name).drain().await.unwrap(),
            [DeliveryOutcome::Released]
        );
        let row = delivery_to(&app, second, name).await;
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("pending", 0),
            "{name}"
        );
        assert!(
            row.next_attempt_at >= until,
            "{name}: {} < {until}",
            row.next_attempt_at
        );
    }
    assert_eq!(
        receiver.requests().len(),
        2,
        "one attempt per destination so far"
    );
    // Once the pause is over the oldest goes first. (The other is claimed
    // with it; whether it starts before the new 429 pauses the destination
    // again is a race, so it may be handed back once more.)
    app.clock.advance_ms(151_000);
    for name in ["secs", "date"] {
        let outcomes = app.relay(name).drain().await.unwrap();
        assert_eq!(outcomes[0], DeliveryOutcome::Retry, "{name}: {outcomes:?}");
        assert_eq!(delivery_to(&app, first, name).await.attempts, 2);
    }
}

async fn a_receiver_that_never_answers_times_out_within_timeout_secs(backend: Backend) {
    let receiver = BadReceiver::start(|_| Act::Hang);
    let app = app_delivering_to(
        backend,
        &[(
            "a",
            receiver.url("/hooks"),
            "timeout_secs = 1\nmax_attempts = 2",
        )],
        "",
    )
    .await;
    let ids = processed_invoices(&app, &["in_1"]).await;
    for (attempt, expected) in [(1, DeliveryOutcome::Retry), (2, DeliveryOutcome::Dead)] {
        let started = Instant::now();
        assert_eq!(app.relay("a").drain().await.unwrap(), [expected]);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(2_500),
            "attempt {attempt} ended after {took:?}, timeout_secs = 1"
        );
        let row = delivery_to(&app, ids[0], "a").await;
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("timed out"), "{error}");
        assert_eq!(row.last_status, None);
        assert_eq!(row.attempts, attempt);
        app.clock.advance_ms(10_000);
    }
    assert_eq!(delivery_to(&app, ids[0], "a").await.status, "dead");
    assert_eq!(receiver.requests().len(), 2);
}

async fn html_answers_are_judged_by_their_status_alone(backend: Backend) {
    let page = "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>";
    let receiver = BadReceiver::start(move |request| match request.object_id().as_str() {
        "in_ok" => Act::html(200, "<html><body>thanks</body></html>"),
        _ => Act::html(404, page),
    });
    let app = app_delivering_to(backend, &[("a", receiver.url("/hooks"), "")], "").await;
    let ids = processed_invoices(&app, &["in_ok", "in_missing"]).await;
    assert_eq!(
        app.relay("a").drain().await.unwrap(),
        [DeliveryOutcome::Delivered, DeliveryOutcome::Dead]
    );
    let ok = delivery_to(&app, ids[0], "a").await;
    assert_eq!(
        (ok.status.as_str(), ok.last_status),
        ("delivered", Some(200))
    );
    let missing = delivery_to(&app, ids[1], "a").await;
    assert_eq!(missing.status, "dead", "a 404 is not retried");
    assert_eq!(missing.last_status, Some(404));
    assert_eq!(
        missing.last_error.as_deref(),
        Some(format!("HTTP 404: {page}").as_str())
    );
    assert_eq!(missing.attempts, 1);
}

async fn a_ten_mib_answer_is_read_only_as_far_as_the_excerpt(backend: Backend) {
    const TEN_MIB: usize = 10 * 1024 * 1024;
    let receiver = BadReceiver::start(|request| match request.object_id().as_str() {
        "in_big_500" => Act::Stream {
            status: 500,
            len: TEN_MIB,
        },
        _ => Act::Stream {
            status: 200,
            len: TEN_MIB,
        },
    });
    let app = app_delivering_to(
        backend,
        &[("a", receiver.url("/hooks"), "timeout_secs = 10")],
        "",
    )
    .await;
    let ids = processed_invoices(&app, &["in_big_500", "in_big_200"]).await;
    let started = Instant::now();
    assert_eq!(
        app.relay("a").drain().await.unwrap(),
        [DeliveryOutcome::Retry, DeliveryOutcome::Delivered]
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: promptly, far from the 10 s timeout"
    );
    let failed = delivery_to(&app, ids[0], "a").await;
    assert_eq!(failed.last_status, Some(500));
    assert_eq!(
        failed.last_error.as_deref(),
        Some(format!("HTTP 500: {}", "x".repeat(1024)).as_str()),
        "exactly the first KiB of the answer"
    );
    assert_eq!(delivery_to(&app, ids[1], "a").await.status, "delivered");
    // From the receiver's side: the relay hung up instead of reading on.
    // (What the socket took is what the kernel buffers without the relay
    // reading: up to the sender's buffer, 4 MiB at most by Linux's default
    // `tcp_wmem`, well short of 10 MiB.)
    wait_until("both answers were cut off", || async {
        receiver.streams().len() == 2
    })
    .await;
    for stream in receiver.streams() {
        assert!(
            stream.broken && stream.written < stream.len,
            "{}: the relay stopped reading ({} of {} bytes taken, broken: {}, stalled: {})",
            stream.object_id,
            stream.written,
            stream.len,
            stream.broken,
            stream.stalled
        );
        eprintln!(
            "{}: the socket took {} of {} bytes before the relay hung up",
            stream.object_id, stream.written, stream.len
        );
    }
}

async fn configured_headers_arrive_and_webhook_data_never_steers_the_url(backend: Backend) {
    // Where the payload's URL-ish values point: it must see nothing.
    let evil = MockServer::start().await;
    let receiver = BadReceiver::start(|_| Act::status(204));
    let app = app_delivering_to(
        backend,
        &[(
            "a",
            receiver.url("/hooks/fixed?team=billing"),
            &format!(
                // Configuring one of the protocol's own headers is a
                // start-up error (config_destinations); the transport's
                // own filter is unit-tested in relay/http.rs.
                "secret = \"{}\"\nheaders = {{ \"X-Env\" = \"test\", \"X-Team\" = \"billing\" }}",
                crate::destinations::APP_SECRET
            ),
        )],
        "",
    )
    .await;
    let object = json!({
        "id": "../../admin",
        "object": "invoice",
        "url": format!("{}/evil", evil.uri()),
        "hosted_invoice_url": "http://evil/",
        "path": "/admin?x=1",
    });
    let mut body = stripe_event("evt_1", "invoice.paid", app.now_secs(), object);
    body["url"] = json!(format!("{}/evil", evil.uri()));
    let answer = app.deliver("paid", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.id();
    app.drain().await;
    assert_eq!(
        app.relay("a").drain().await.unwrap(),
        [DeliveryOutcome::Delivered]
    );

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.target, "/hooks/fixed?team=billing",
        "exactly the configured URL"
    );
    assert_eq!(request.object_id(), "../../admin");
    assert_eq!(request.header("x-env"), "test");
    assert_eq!(request.header("x-team"), "billing");
    // The protocol's headers, once each.
    let delivery_id = format!("hl_{id}");
    assert_eq!(request.header("webhook-id"), delivery_id);
    assert_eq!(request.header("idempotency-key"), delivery_id);
    assert_eq!(request.header("content-type"), "application/json");
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    standardwebhooks::Webhook::new(crate::destinations::APP_SECRET)
        .unwrap()
        .verify(&request.body, &headers)
        .expect("the signature verifies");
    assert!(evil.received_requests().await.unwrap().is_empty());
}

crate::backend_tests!(
    every_retried_answer_class_is_retried_then_dead_after_max_attempts,
    retry_after_as_seconds_or_a_date_holds_the_delivery_and_its_destination,
    a_receiver_that_never_answers_times_out_within_timeout_secs,
    html_answers_are_judged_by_their_status_alone,
    a_ten_mib_answer_is_read_only_as_far_as_the_excerpt,
    configured_headers_arrive_and_webhook_data_never_steers_the_url,
);
