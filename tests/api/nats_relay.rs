//! A NATS destination end to end: webhooks processed by the worker and
//! published by the relay to a real `nats-server -js` of the test's own,
//! read back from the stream; and NATS down mid-run, during which ingest
//! and processing carry on and deliveries wait, then resume in order.

use async_nats::header::NATS_MESSAGE_ID;
use serde_json::Value;

use crate::helpers::*;
use crate::nats::stored;
use crate::nats_server::{Auth, NatsServer};
use hookledger::relay::DeliveryOutcome;

fn nats_toml(url: &str) -> String {
    format!(
        r#"
[sources.paid]
preset = "stripe"
secret = "whsec_test_paid"
deliver = [{{ to = "bus" }}]

[destinations.bus]
kind = "nats"
url = "{url}"
subject = "hookledger.{{source}}.{{object_type}}.{{action}}"
stream = "HOOKLEDGER"
create_stream = true
timeout_secs = 2
"#
    )
}

async fn app_with_nats(backend: Backend, server: &NatsServer) -> TestApp {
    spawn_app_with(
        backend,
        TestOptions {
            extra_toml: nats_toml(&server.url()),
            ..TestOptions::default()
        },
    )
    .await
}

async fn processed_events_are_published_to_the_stream_in_order(backend: Backend) {
    let Some(server) = NatsServer::started("nats_relay").await else {
        return;
    };
    let app = app_with_nats(backend, &server).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(deliver_invoice(&app, "paid", &format!("evt_{n}"), "in_1").await);
        app.drain().await;
    }
    let outcomes = app.relay("bus").drain().await.unwrap();
    assert_eq!(outcomes, [DeliveryOutcome::Delivered; 3]);
    let messages = stored(&server, "HOOKLEDGER").await;
    assert_eq!(messages.len(), 3);
    for (message, id) in messages.iter().zip(&ids) {
        assert_eq!(
            message.subject.as_str(),
            "hookledger.paid.invoice.invoice_paid"
        );
        assert_eq!(
            message.headers.get(NATS_MESSAGE_ID).unwrap().as_str(),
            format!("hl_{id}")
        );
        assert_eq!(
            message.headers.get("hookledger-source").unwrap().as_str(),
            "paid"
        );
        let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(envelope["data"]["ledger_id"], *id);
        assert_eq!(envelope["type"], "invoice.paid");
        let row = &app.store.deliveries_of_event(*id).await.unwrap()[0];
        assert_eq!(row.status, "delivered");
    }
}

async fn nats_down_mid_run_holds_deliveries_without_stalling_ingest(backend: Backend) {
    let Some(mut server) = NatsServer::started("nats_relay_down").await else {
        return;
    };
    let app = app_with_nats(backend, &server).await;
    let first = deliver_invoice(&app, "paid", "evt_0", "in_1").await;
    app.drain().await;
    assert_eq!(
        app.relay("bus").drain().await.unwrap(),
        [DeliveryOutcome::Delivered]
    );
    server.kill();
    // Ingest and processing carry on while NATS is down.
    let mut later = Vec::new();
    for n in 1..=3 {
        later.push(deliver_invoice(&app, "paid", &format!("evt_{n}"), "in_1").await);
        assert_eq!(app.drain().await, 1, "processing does not wait for NATS");
    }
    let outcomes = app.relay("bus").drain().await.unwrap();
    assert_eq!(
        outcomes,
        [DeliveryOutcome::Retry],
        "one object: the rest wait behind it"
    );
    let waiting = &app.store.deliveries_of_event(later[0]).await.unwrap()[0];
    assert_eq!(waiting.status, "failed");
    assert!(waiting.last_error.is_some());
    server.start().await;
    // Past any backoff: the deliveries resume, in order.
    let mut delivered = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while delivered.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries resumed: {delivered:?}"
        );
        app.clock.advance_ms(3_600_000);
        for outcome in app.relay("bus").drain().await.unwrap() {
            if outcome == DeliveryOutcome::Delivered {
                delivered.push(outcome);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let messages = stored(&server, "HOOKLEDGER").await;
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m.headers.get(NATS_MESSAGE_ID).unwrap().as_str().to_string())
        .collect();
    let mut expected = vec![format!("hl_{first}")];
    expected.extend(later.iter().map(|id| format!("hl_{id}")));
    assert_eq!(
        ids, expected,
        "every delivery once, in order, after the outage"
    );
}

async fn nats_down_at_start_up_is_no_start_up_error_and_deliveries_wait_for_it(backend: Backend) {
    let Some(mut server) = NatsServer::prepare("nats_relay_start", Auth::None) else {
        return;
    };
    // Nothing listens on the destination's port yet.
    let app = app_with_nats(backend, &server).await;
    let id = deliver_invoice(&app, "paid", "evt_0", "in_1").await;
    assert_eq!(app.drain().await, 1, "processing does not wait for NATS");
    assert_eq!(
        app.relay("bus").drain().await.unwrap(),
        [DeliveryOutcome::Retry]
    );
    let row = &app.store.deliveries_of_event(id).await.unwrap()[0];
    assert_eq!(row.status, "failed");
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(!error.is_empty(), "the attempt says why it failed");
    server.start().await;
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        app.clock.advance_ms(3_600_000);
        if app.relay("bus").drain().await.unwrap() == [DeliveryOutcome::Delivered] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivered once NATS is up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let messages = stored(&server, "HOOKLEDGER").await;
    assert_eq!(
        messages.len(),
        1,
        "the stream was created on the first connection"
    );
}

crate::backend_tests!(
    nats_down_at_start_up_is_no_start_up_error_and_deliveries_wait_for_it,
    processed_events_are_published_to_the_stream_in_order,
    nats_down_mid_run_holds_deliveries_without_stalling_ingest,
);
