//! `GET /feed/stream` (SPEC §8, issue 13 item 4): the feed as Server-Sent
//! Events — one event per item with `id` (the cursor), `event` (the
//! action) and `data` (the envelope); resumed with `Last-Event-ID` (which
//! wins over `after`) or `after`; a comment at least every 15 s on an idle
//! stream; and a client that goes away frees its stream (the gauge goes
//! back down).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::feed::{app_with_feed, feed, gauge, FEED_TOKEN};
use crate::helpers::*;

backend_tests!(
    a_stream_sends_each_item_as_an_event_and_follows_new_commits,
    a_stream_resumes_after_last_event_id_which_wins_over_after,
    a_client_that_disconnects_frees_its_stream,
);

/// One SSE event as read off the wire.
#[derive(Debug, Clone, Default, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
    comments: Vec<String>,
}

/// Reads an event stream and splits it into events (blank-line separated).
struct SseReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl SseReader {
    async fn open(
        app: &TestApp,
        query: &str,
        last_event_id: Option<&str>,
    ) -> (u16, String, SseReader) {
        let mut request = app
            .client
            .get(format!("{}/feed/stream?{query}", app.address))
            .bearer_auth(FEED_TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (
            status,
            content_type,
            SseReader {
                body: response
                    .bytes_stream()
                    .map(|c| c.map(|b| b.to_vec()))
                    .boxed(),
                buffer: String::new(),
            },
        )
    }

    /// The next event or comment block, within `limit`.
    async fn next(&mut self, limit: Duration) -> SseEvent {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        event.comments.push(c.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data.push(v.to_string());
                    }
                }
                return event;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("the stream sent something in time")
                .expect("the stream is open")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next data event, skipping comments.
    async fn next_item(&mut self, limit: Duration) -> (SseEvent, Value) {
        loop {
            let event = self.next(limit).await;
            if !event.data.is_empty() {
                let data = serde_json::from_str(&event.data.join("\n")).unwrap();
                return (event, data);
            }
        }
    }
}

const SOON: Duration = Duration::from_secs(10);

async fn invoice(app: &TestApp, n: usize, action: &str) -> i64 {
    let body = stripe_event(
        &format!("evt_{n}"),
        action,
        app.now_secs(),
        json!({"id": format!("in_{n}"), "object": "invoice"}),
    );
    let answer = app.deliver("stripe", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.id()
}

async fn a_stream_sends_each_item_as_an_event_and_follows_new_commits(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let first = invoice(&app, 1, "invoice.paid").await;
    app.drain().await;
    let (status, content_type, mut stream) = SseReader::open(&app, "", None).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (event, data) = stream.next_item(SOON).await;
    assert_eq!(event.event.as_deref(), Some("invoice.paid"));
    assert_eq!(data["data"]["id"], format!("hl_{first}"));
    assert_eq!(data["data"]["replay"], 0);
    // The id is the item's cursor in /feed.
    let page = feed(&app, "").await;
    assert_eq!(event.id.as_deref(), page["items"][0]["cursor"].as_str());

    // A commit while the stream is idle arrives promptly.
    let second = invoice(&app, 2, "customer.created").await;
    app.drain().await;
    let (event, data) = stream.next_item(SOON).await;
    assert_eq!(event.event.as_deref(), Some("customer.created"));
    assert_eq!(data["data"]["ledger_id"], second);

    // Idle: a comment comes at least every 15 s (timed from one to the next).
    let block = stream.next(Duration::from_secs(16)).await;
    assert!(
        block.data.is_empty() && !block.comments.is_empty(),
        "{block:?}"
    );
    let since = Instant::now();
    let block = stream.next(Duration::from_secs(16)).await;
    assert!(
        block.data.is_empty() && !block.comments.is_empty(),
        "{block:?}"
    );
    assert!(
        since.elapsed() <= Duration::from_secs(15),
        "{:?}",
        since.elapsed()
    );
}

async fn a_stream_resumes_after_last_event_id_which_wins_over_after(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let ids = [
        invoice(&app, 1, "invoice.paid").await,
        invoice(&app, 2, "invoice.paid").await,
        invoice(&app, 3, "invoice.paid").await,
    ];
    app.drain().await;
    let page = feed(&app, "").await;
    let cursor = |i: usize| page["items"][i]["cursor"].as_str().unwrap().to_string();

    let (_, _, mut stream) = SseReader::open(&app, &format!("after={}", cursor(0)), None).await;
    let (_, data) = stream.next_item(SOON).await;
    assert_eq!(
        data["data"]["ledger_id"], ids[1],
        "after the cursor of `after`"
    );

    let (_, _, mut stream) =
        SseReader::open(&app, &format!("after={}", cursor(0)), Some(&cursor(1))).await;
    let (event, data) = stream.next_item(SOON).await;
    assert_eq!(data["data"]["ledger_id"], ids[2], "Last-Event-ID wins");
    assert_eq!(event.id, Some(cursor(2)));

    // Found by schemathesis: an empty Last-Event-ID was a 400. It names no
    // event (an SSE client that has seen no `id` sends none): `after` holds.
    for empty in ["", " "] {
        let (status, _, mut stream) =
            SseReader::open(&app, &format!("after={}", cursor(0)), Some(empty)).await;
        assert_eq!(status, 200, "Last-Event-ID {empty:?}");
        let (_, data) = stream.next_item(SOON).await;
        assert_eq!(data["data"]["ledger_id"], ids[1], "Last-Event-ID {empty:?}");
    }

    let (_, _, mut stream) = SseReader::open(&app, "after=now", None).await;
    let later = invoice(&app, 4, "invoice.paid").await;
    app.drain().await;
    let (_, data) = stream.next_item(SOON).await;
    assert_eq!(
        data["data"]["ledger_id"], later,
        "after=now: only what came later"
    );
}

async fn a_client_that_disconnects_frees_its_stream(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    assert_eq!(gauge(&app, "hookledger_feed_streams").await, 0);
    let (_, _, mut one) = SseReader::open(&app, "after=now", None).await;
    let (_, _, mut two) = SseReader::open(&app, "after=now", None).await;
    // Both are open once their first bytes (a keep-alive comment) arrive.
    one.next(SOON).await;
    two.next(SOON).await;
    assert_eq!(gauge(&app, "hookledger_feed_streams").await, 2);
    drop(one);
    wait_until("the closed stream is freed", || async {
        gauge(&app, "hookledger_feed_streams").await == 1
    })
    .await;
    drop(two);
    wait_until("both streams are freed", || async {
        gauge(&app, "hookledger_feed_streams").await == 0
    })
    .await;
}
