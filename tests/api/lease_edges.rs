//! Attacks on the lease and `Retry-After` promises (SPEC §2, §4), each a
//! break found against the code as it was, kept as a regression test:
//!
//! - a `Retry-After` in seconds counts from the answer (RFC 9110 §10.2.3),
//!   not from the request, so a slow upstream cannot shorten it;
//! - a 429's pause of its whole source is honoured up to
//!   `processing.max_retry_after_secs`, not up to a fixed hour;
//! - a lease of any length (`lease_secs` is unbounded) holds once claimed;
//! - a `dead` event shows no `processed_at`, also one written by a build
//!   from before that rule;
//! - a lease that ran out stays lost: a stalled worker that wakes up cannot
//!   renew it or finish with it, since by then its object may have moved on.
//!
//! The upstream here is a socket that holds each request until the test
//! answers it, so "the clock moved while the fetch was in flight" is a fact
//! of the test, not a race against a delay.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc as std_mpsc;
use std::thread;

use hookledger::store::queue::QueueError;
use hookledger::store::Store;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_retry_after_in_seconds_counts_from_the_answer_not_from_the_request,
    a_429_pauses_its_source_for_longer_than_an_hour_when_max_retry_after_secs_allows,
    a_lease_of_any_length_is_not_expired_once_claimed,
    a_dead_event_recorded_by_an_earlier_build_shows_no_processed_at,
    a_stalled_worker_cannot_revive_a_lease_that_ran_out,
);

/// An upstream that accepts one request at a time, reports its path and
/// waits for the test to hand it the raw answer to write back.
struct HeldUpstream {
    url: String,
    arrived: mpsc::UnboundedReceiver<String>,
    answers: std_mpsc::Sender<String>,
}

impl HeldUpstream {
    fn start() -> HeldUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let (answers, answers_rx) = std_mpsc::channel::<String>();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Some(path) = read_request_path(&mut stream) else {
                    continue;
                };
                if arrived_tx.send(path).is_err() {
                    return;
                }
                // The test has gone when its sender is dropped.
                let Ok(answer) = answers_rx.recv() else {
                    return;
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        HeldUpstream {
            url,
            arrived,
            answers,
        }
    }

    /// Waits (bounded) for the next request to arrive; its path.
    async fn next_request(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.arrived.recv())
            .await
            .expect("a fetch reaches the upstream in time")
            .expect("the upstream is running")
    }

    fn answer(&self, status_line: &str, headers: &[(&str, &str)], body: &str) {
        let mut text = format!("HTTP/1.1 {status_line}\r\nConnection: close\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.answers.send(text).unwrap();
    }
}

/// Reads one request's head; its path. GETs have no body to read.
fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace().nth(1).map(str::to_string)
}

/// An unsigned source that fetches its objects from `upstream`.
fn held_source(upstream: &str) -> String {
    format!(
        r#"
[sources.held]
preset = "generic"
verify = "off"
event_id = {{ header = "X-Request-Id" }}
object_type = {{ value = "thing" }}
object_id = {{ pointer = "/thing/id" }}
fetch.url = "{upstream}/things/{{object_id}}"
fetch.timeout_secs = 30
"#
    )
}

async fn deliver_thing(app: &TestApp, event_id: &str, thing: &str) -> i64 {
    let answer = app
        .post_raw(
            "/webhooks/held",
            &[
                ("Content-Type".into(), "application/json".into()),
                ("X-Request-Id".into(), event_id.into()),
            ],
            json!({ "thing": { "id": thing } }).to_string().into_bytes(),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.id()
}

async fn status_of(app: &TestApp, id: i64) -> String {
    app.store
        .event_status(id)
        .await
        .unwrap()
        .expect("the event exists")
}

/// Drains the worker in the background: its handle.
fn drain_in_background(app: &TestApp) -> tokio::task::JoinHandle<usize> {
    let worker = app.worker.clone();
    tokio::spawn(async move { worker.drain().await.expect("draining the worker") })
}

/// `Retry-After: 1800` on an answer that came 20 s (of the event's clock;
/// less than the lease, so the worker still holds the event) after its request: the retry is due 1800 s after the answer. It used to
/// be counted from the request, so the longer the upstream took, the less
/// of its `Retry-After` was honoured — and with leases renewed for as long
/// as `fetch.timeout_secs` allows, an upstream slower than its own
/// `Retry-After` was retried at once.
async fn a_retry_after_in_seconds_counts_from_the_answer_not_from_the_request(backend: Backend) {
    let mut upstream = HeldUpstream::start();
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: held_source(&upstream.url),
            ..TestOptions::default()
        },
    )
    .await;
    let id = deliver_thing(&app, "held-1", "t1").await;
    let asked_at = app.clock.now_ms();

    let draining = drain_in_background(&app);
    assert_eq!(upstream.next_request().await, "/things/t1");
    app.clock.advance_ms(20_000);
    let answered_at = app.clock.now_ms();
    upstream.answer("503 Service Unavailable", &[("Retry-After", "1800")], "");
    assert_eq!(draining.await.unwrap(), 1, "the 503 is a finished attempt");
    assert_eq!(status_of(&app, id).await, "failed");

    // Counted from the request, it was due 1780 s after the answer; it is
    // due 1800 s after, not a millisecond sooner.
    for not_yet in [1_780_000, 1_800_000 - 1] {
        app.clock.set_ms(answered_at + not_yet);
        let draining = drain_in_background(&app);
        tokio::select! {
            finished = draining => assert_eq!(finished.unwrap(), 0, "nothing is due yet"),
            path = upstream.next_request() => panic!(
                "fetched {path} again {} ms after the answer, though it asked for 1800 s \
                 ({} ms after the request)",
                app.clock.now_ms() - answered_at,
                app.clock.now_ms() - asked_at,
            ),
        }
    }

    app.clock.set_ms(answered_at + 1_800_000);
    let draining = drain_in_background(&app);
    assert_eq!(upstream.next_request().await, "/things/t1");
    upstream.answer(
        "200 OK",
        &[("Content-Type", "application/json")],
        r#"{"id":"t1"}"#,
    );
    assert_eq!(draining.await.unwrap(), 1);
    assert_eq!(status_of(&app, id).await, "done");
}

async fn fetches_of(app: &TestApp, event_id: &str) -> usize {
    let wanted = format!("/v1/events/{event_id}");
    app.upstream
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == wanted)
        .count()
}

/// `max_retry_after_secs = 7200` and a 429 with `Retry-After: 7000`: the
/// whole source waits 7000 s (SPEC §2: "429 + Retry-After from upstream is
/// honoured", and only a `Retry-After` beyond `max_retry_after_secs` is
/// cut). The source's pause used to be cut to a fixed hour (`rate.rs`'s
/// `MAX_PAUSE_MS`) whatever the config said, so another event of the source
/// was fetched 3600 s into the 7000 the upstream asked for.
async fn a_429_pauses_its_source_for_longer_than_an_hour_when_max_retry_after_secs_allows(
    backend: Backend,
) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            processing_toml: "max_retry_after_secs = 7200\n".into(),
            ..TestOptions::default()
        },
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_a"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7000"))
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
    let deliver = |event_id: &'static str, invoice: &'static str| {
        let body = stripe_event(
            event_id,
            "invoice.paid",
            app.now_secs(),
            json!({"id": invoice, "object": "invoice"}),
        );
        let app = &app;
        async move {
            let answer = app.deliver("stripe_fetch", &[], &body).await;
            assert_eq!(answer.status, 202, "{:?}", answer.body);
            answer.id()
        }
    };
    let a = deliver("evt_a", "in_a").await;
    assert_eq!(app.drain().await, 1, "the 429");
    let b = deliver("evt_b", "in_b").await;
    assert_eq!(app.drain().await, 0, "b waits for the source's pause");

    app.clock.advance_ms(3_600_001);
    app.drain().await;
    assert_eq!(
        fetches_of(&app, "evt_b").await,
        0,
        "3600 s into a 7000 s Retry-After, the source is still paused"
    );
    app.clock.advance_ms(7_000_000 - 3_600_001);
    assert_eq!(app.drain().await, 2, "after 7000 s, both are fetched");
    for id in [a, b] {
        assert_eq!(status_of(&app, id).await, "done");
    }
    assert_eq!(fetches_of(&app, "evt_b").await, 1);
}

/// `lease_secs` has no upper bound in the config, and the worker turns it
/// into milliseconds with saturation (`i64::MAX` for anything from about
/// 9.2·10^15 s). The claim added that to `now` unchecked: in a release build
/// the sum wrapped to a lease that had expired long ago, so every poll took
/// the event over again (two fetches at once, processed over and over); in
/// a debug build the claim panicked. A lease this long must simply hold.
async fn a_lease_of_any_length_is_not_expired_once_claimed(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = stripe_event(
        "evt_long",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_long", "object": "invoice"}),
    );
    let answer = app.deliver("stripe", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let now = app.clock.now_ms();
    let claimed = app.store.claim(now, i64::MAX, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        app.store
            .claim(now + 1, 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "the event is held, not taken over at the next poll"
    );
    app.store
        .complete(&claimed[0], None, now + 2)
        .await
        .unwrap();
    assert_eq!(status_of(&app, answer.id()).await, "done");
}

/// Builds before 252b0d3 gave a `dead` event a `processed_at` (the instant it
/// died), and nothing cleared it: on a database they wrote, the admin API
/// went on showing a completion instant for an event that never completed.
/// Only a `done` event has one to show.
async fn a_dead_event_recorded_by_an_earlier_build_shows_no_processed_at(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_died"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&app.upstream)
        .await;
    let body = stripe_event(
        "evt_died",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_died", "object": "invoice"}),
    );
    let answer = app.deliver("stripe_fetch", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.id();
    assert_eq!(app.drain().await, 1);
    assert_eq!(status_of(&app, id).await, "dead");
    // What the earlier build's `Store::fail` wrote for a dead event.
    const EARLIER_FAIL: &str = "UPDATE events SET processed_at = $1 WHERE id = $2";
    let died_at = app.clock.now_ms();
    match &app.store {
        Store::Sqlite(s) => sqlx::query(EARLIER_FAIL)
            .bind(died_at)
            .bind(id)
            .execute(&s.pool)
            .await
            .map(|_| ()),
        Store::Postgres(p) => sqlx::query(EARLIER_FAIL)
            .bind(died_at)
            .bind(id)
            .execute(&p.pool)
            .await
            .map(|_| ()),
    }
    .unwrap();

    let shown = app.admin_get(&format!("/admin/events/{id}")).await.body;
    assert_eq!(shown["status"], "dead", "{shown}");
    assert_eq!(shown["processed_at"], Value::Null, "{shown}");
    let listed = app.admin_get("/admin/events?status=dead").await.body;
    assert_eq!(listed["items"][0]["id"], id, "{listed}");
    assert_eq!(listed["items"][0]["processed_at"], Value::Null, "{listed}");
}

/// Delivers a Stripe event for invoice `invoice` (no fetch); its ledger id.
async fn deliver_plain(app: &TestApp, event_id: &str, invoice: &str) -> i64 {
    let body = stripe_event(
        event_id,
        "invoice.paid",
        app.now_secs(),
        json!({"id": invoice, "object": "invoice"}),
    );
    let answer = app.deliver("stripe", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.id()
}

/// A worker holds event 2 of an object and stalls past its lease, while
/// event 1 of that object — done — is replayed: with the lease run out,
/// the claim hands event 1 to another worker (the replayed older event
/// waits for a *live* lease only; it must not wait for a worker that is
/// gone). When the stalled worker wakes, its lease must stay lost: the
/// renewal used to succeed (its `WHERE` asked only for the token, not for
/// a lease still running), so the worker carried on fetching and completed
/// event 2 beside event 1 — two events of one object in flight at once —
/// although the queue had already treated its lease as gone.
async fn a_stalled_worker_cannot_revive_a_lease_that_ran_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = deliver_plain(&app, "evt_r1", "in_r").await;
    let second = deliver_plain(&app, "evt_r2", "in_r").await;
    let t0 = app.clock.now_ms();
    let one = app.store.claim(t0, 1_000, 10).await.unwrap();
    assert_eq!(one.iter().map(|e| e.id).collect::<Vec<_>>(), [first]);
    app.store.complete(&one[0], None, t0).await.unwrap();
    let stalled = app.store.claim(t0, 1_000, 10).await.unwrap();
    assert_eq!(stalled.iter().map(|e| e.id).collect::<Vec<_>>(), [second]);
    assert_eq!(
        app.admin_post(&format!("/admin/events/{first}/replay"))
            .await
            .status,
        202
    );

    // Past the stalled worker's lease (t0 + 1000), another worker claims.
    let later = t0 + 2_000;
    let taken = app.store.claim(later, 30_000, 10).await.unwrap();
    assert_eq!(
        taken.iter().map(|e| e.id).collect::<Vec<_>>(),
        [first],
        "the replayed older event runs once the newer one's lease ran out"
    );
    // The stalled worker wakes up.
    assert!(
        matches!(
            app.store.renew_lease(&stalled[0], later, later + 1_000).await,
            Err(QueueError::LeaseLost(id)) if id == second
        ),
        "a lease that ran out is not renewed: event {first} of the object is in flight"
    );
    assert!(
        matches!(
            app.store.complete(&stalled[0], None, later).await,
            Err(QueueError::LeaseLost(_))
        ),
        "nor completed with"
    );
    assert!(
        matches!(
            app.store
                .fail(&stalled[0], "late", Some(later + 5_000), later)
                .await,
            Err(QueueError::LeaseLost(_))
        ),
        "nor failed with"
    );
    assert!(
        matches!(
            app.store.release(&stalled[0], later).await,
            Err(QueueError::LeaseLost(_))
        ),
        "nor released"
    );
    assert_eq!(status_of(&app, second).await, "processing");
    // Once event 1 is done, event 2 is taken over and finished.
    app.store.complete(&taken[0], None, later).await.unwrap();
    let retaken = app.store.claim(later, 30_000, 10).await.unwrap();
    assert_eq!(retaken.iter().map(|e| e.id).collect::<Vec<_>>(), [second]);
    app.store.complete(&retaken[0], None, later).await.unwrap();
    assert_eq!(status_of(&app, second).await, "done");
}
