//! Attacks on the lease and `Retry-After` promises (SPEC §2, §4), each a
//! break found against the code as it was, kept as a regression test:
//!
//! - a `Retry-After` in seconds counts from the answer (RFC 9110 §10.2.3),
//!   not from the request, so a slow upstream cannot shorten it.
//!
//! The upstream here is a socket that holds each request until the test
//! answers it, so "the clock moved while the fetch was in flight" is a fact
//! of the test, not a race against a delay.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc as std_mpsc;
use std::thread;

use serde_json::json;
use tokio::sync::mpsc;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(a_retry_after_in_seconds_counts_from_the_answer_not_from_the_request);

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

/// `Retry-After: 1800` on an answer that came 600 s (of the event's clock)
/// after its request: the retry is due 1800 s after the answer. It used to
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
    app.clock.advance_ms(600_000);
    let answered_at = app.clock.now_ms();
    upstream.answer("503 Service Unavailable", &[("Retry-After", "1800")], "");
    assert_eq!(draining.await.unwrap(), 1, "the 503 is a finished attempt");
    assert_eq!(status_of(&app, id).await, "failed");

    // Counted from the request, it was due 1200 s after the answer; it is
    // due 1800 s after, not a millisecond sooner.
    for not_yet in [1_200_000, 1_800_000 - 1] {
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
