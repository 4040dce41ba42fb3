//! Overload: requests beyond `max_in_flight` are shed at once with 429
//! `overloaded` and `Retry-After`, store nothing, and service resumes.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::backend_tests;

backend_tests!(requests_beyond_max_in_flight_are_shed_with_429_and_service_resumes,);

/// A webhook request whose body is still being sent: it holds its in-flight
/// slot until `finish`.
struct HeldRequest {
    rest: Vec<u8>,
    chunks: tokio::sync::mpsc::Sender<Vec<u8>>,
    response: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

impl HeldRequest {
    fn start(app: &TestApp, request_id: &str) -> HeldRequest {
        let body = serde_json::to_vec(&json!({"held": request_id})).unwrap();
        let (first, rest) = body.split_at(4);
        let (chunks, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        chunks.try_send(first.to_vec()).unwrap();
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(chunk), receiver))
        });
        let request = app
            .client
            .post(format!("{}/webhooks/orders", app.address))
            .header("Content-Type", "application/json")
            .header("X-Request-Id", request_id)
            .body(reqwest::Body::wrap_stream(stream));
        HeldRequest {
            rest: rest.to_vec(),
            chunks,
            response: tokio::spawn(request.send()),
        }
    }

    async fn finish(self) -> Answer {
        self.chunks.send(self.rest).await.unwrap();
        drop(self.chunks);
        read(
            self.response
                .await
                .unwrap()
                .expect("the held request's answer"),
        )
        .await
    }
}

/// Issue item 4, overload: with `max_in_flight = 2` and two requests still
/// sending their bodies, the next one is refused at once with 429
/// `overloaded` and `Retry-After`, and stores nothing; once the two finish
/// (both accepted), the refused delivery's retry and a new one are accepted.
async fn requests_beyond_max_in_flight_are_shed_with_429_and_service_resumes(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            // The held bodies are slow on purpose: their timeout is far
            // beyond any deadline of this test.
            server_toml: "max_in_flight = 2\nbody_timeout_secs = 3600".into(),
            ..TestOptions::default()
        },
    )
    .await;
    let held = [
        HeldRequest::start(&app, "held-1"),
        HeldRequest::start(&app, "held-2"),
    ];
    // The gauge, not a probe request: a probe takes a slot itself while it
    // is handled, and could make a held request the one that is shed.
    wait_until("both held requests occupy their slots", || async {
        app.in_flight().await == 2
    })
    .await;

    let started = Instant::now();
    let shed = app
        .deliver("orders", &[("X-Request-Id", "shed-1")], &json!({"n": 1}))
        .await;
    assert_eq!(shed.status, 429, "{:?}", shed.body);
    assert_eq!(shed.error_code(), "overloaded");
    assert_retry_after(&shed, "429 overloaded");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed at once, not queued"
    );
    assert_eq!(app.ledger_total().await, 0, "a 429 stores nothing");

    for request in held {
        let answer = request.finish().await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
    }
    let retried = app
        .deliver("orders", &[("X-Request-Id", "shed-1")], &json!({"n": 1}))
        .await;
    assert_eq!(
        retried.status, 202,
        "the shed delivery was not stored: {:?}",
        retried.body
    );
    let fresh = app
        .deliver("orders", &[("X-Request-Id", "fresh-1")], &json!({"n": 2}))
        .await;
    assert_eq!(fresh.status, 202, "{:?}", fresh.body);
    assert_eq!(app.ledger_total().await, 4);
    let metrics = app.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(
            "hookledger_webhooks_received_total{source=\"orders\",outcome=\"rejected\"} 1"
        ),
        "the 429 is counted as rejected:\n{metrics}"
    );
}
