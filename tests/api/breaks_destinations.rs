//! Breaks found by attacking the destinations (SPEC §7) as a hostile
//! reviewer, each kept as the test that showed it.
//!
//! Pause vs. the rate limit: a relay claims up to `concurrency` deliveries
//! at once and then lets each wait, holding its lease, for its token of
//! `rate_per_sec` (up to 5 s). A pause that answered while they waited did
//! not stop them: the receiver got new requests for seconds after the
//! operator's pause had answered, though SPEC §7 says that once the pause
//! has answered no process starts a new attempt.
//!
//! Secrets in logs: with `RUST_LOG=trace`, async-nats logged the CONNECT
//! it sent to a NATS destination, its password in clear.

use std::time::Duration;

use serde_json::Value;
use wiremock::{MockServer, ResponseTemplate};

use crate::destinations::{answer_with, header, requests_to};
use crate::helpers::*;
use crate::nats_server::{Auth, NatsServer};
use hookledger::relay::DeliveryOutcome;

/// A `paid` source delivering every event to `app`, paced at one request
/// every two seconds, three in flight at most.
fn paced_toml(receiver: &str) -> String {
    format!(
        r#"
[sources.paid]
preset = "stripe"
secret = "whsec_test_paid"
deliver = [{{ to = "app" }}]

[destinations.app]
kind = "http"
url = "{receiver}/hooks/app"
sign = "off"
timeout_secs = 2
concurrency = 3
rate_per_sec = 0.5
"#
    )
}

async fn a_pause_stops_deliveries_already_claimed_and_waiting_for_the_rate_limit(backend: Backend) {
    let receiver = MockServer::start().await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: paced_toml(&receiver.uri()),
            ..TestOptions::default()
        },
    )
    .await;
    let mut events = Vec::new();
    for n in 1..=3 {
        events.push(deliver_invoice(&app, "paid", &format!("evt_{n}"), &format!("in_{n}")).await);
    }
    app.drain().await;
    // One claim takes all three; the first goes at once, the others wait
    // 2 s and 4 s for their tokens (real time: the bucket's clock stands).
    let relay = app.relay("app");
    let run = tokio::spawn(async move { relay.run_once(3).await });
    wait_until("the first delivery reached the receiver", || async {
        !requests_to(&receiver, "/hooks/app").await.is_empty()
    })
    .await;
    let paused = app.admin_post("/admin/destinations/app/pause").await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    let outcomes = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the claimed deliveries end within their token waits")
        .unwrap()
        .unwrap();
    let sent = requests_to(&receiver, "/hooks/app").await;
    assert_eq!(
        sent.len(),
        1,
        "no request after the pause answered (got {:?})",
        sent.iter()
            .map(|r| header(r, "webhook-id"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        outcomes,
        [
            DeliveryOutcome::Delivered,
            DeliveryOutcome::Released,
            DeliveryOutcome::Released
        ]
    );
    for id in &events[1..] {
        let row = &app.store.deliveries_of_event(*id).await.unwrap()[0];
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("pending", 0),
            "a delivery held back by the pause spends no attempt"
        );
    }
    // Resuming releases them, in order (the clock moved past the tokens
    // the held-back attempts had reserved).
    app.clock.advance_ms(10_000);
    let resumed = app.admin_post("/admin/destinations/app/resume").await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    let delivered = app.relay("app").drain().await.unwrap();
    assert_eq!(delivered, [DeliveryOutcome::Delivered; 2]);
    let ids: Vec<String> = requests_to(&receiver, "/hooks/app")
        .await
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["data"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    let expected: Vec<String> = events.iter().map(|id| format!("hl_{id}")).collect();
    assert_eq!(ids, expected);
}

crate::backend_tests!(a_pause_stops_deliveries_already_claimed_and_waiting_for_the_rate_limit,);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_show_a_nats_destinations_password() {
    let auth = Auth::UserPassword("hook".into(), "tr4ce-pw-never-logged".into());
    let Some(mut server) = NatsServer::prepare("breaks trace logs", auth) else {
        return;
    };
    server.start().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        extra_toml: format!(
            r#"
[sources.plain]
preset = "generic"
verify = "off"
event_id = {{ header = "X-Request-Id" }}
deliver = [{{ to = "bus" }}]

[destinations.bus]
kind = "nats"
url = "nats://hook:tr4ce-pw-never-logged@127.0.0.1:{port}"
create_stream = true
timeout_secs = 5
"#,
            port = server.port
        ),
        ..TestOptions::default()
    };
    let config_path = dir.path().join("hookledger.toml");
    std::fs::write(
        &config_path,
        test_config_text(&db.url, "http://127.0.0.1:1", &options),
    )
    .unwrap();
    let log_path = dir.path().join("hookledger.log");
    let process = Binary::start(&config_path, &[("RUST_LOG", "trace")], Some(&log_path));
    let client = reqwest::Client::new();
    process.wait_ready(&client).await;
    let answer = client
        .post(format!("{}/webhooks/plain", process.address))
        .header("Content-Type", "application/json")
        .header("X-Request-Id", "trace-1")
        .body(r#"{"hello": "nats"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    // Delivered: the relay connected (and authenticated) to NATS.
    wait_until("the delivery to the bus is delivered", || async {
        let answer = client
            .get(format!(
                "{}/admin/deliveries?destination=bus&status=delivered",
                process.address
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let body: Value = answer.json().await.unwrap();
        body["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("async_nats"),
        "async-nats logged (its debug lines are kept)"
    );
    assert!(
        !log.contains("tr4ce-pw-never-logged"),
        "the NATS password is in the log:\n{}",
        log.lines()
            .filter(|l| l.contains("tr4ce-pw-never-logged"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
