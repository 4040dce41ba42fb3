//! Destinations (SPEC §7), driven by hand: the outbox rows a completion
//! writes, the HTTP relay's envelope, headers and Standard Webhooks
//! signature (checked by the `standardwebhooks` crate, an implementation
//! independent of ours), and how it classifies a receiver's answers.

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use hookledger::relay::DeliveryOutcome;

/// Whsec secret of the test destination (base64 of "destination-test-key-0123456789").
pub const APP_SECRET: &str = "whsec_ZGVzdGluYXRpb24tdGVzdC1rZXktMDEyMzQ1Njc4OQ==";

/// A `paid` source (Stripe preset) that delivers `invoice.*` to `app` and
/// everything to `all`, both HTTP destinations at `receiver`.
pub fn destinations_toml(receiver: &str) -> String {
    format!(
        r#"
[sources.paid]
preset = "stripe"
secret = "whsec_test_paid"
deliver = [{{ to = "app", actions = ["invoice.*"] }}, {{ to = "all" }}]

[destinations.app]
kind = "http"
url = "{receiver}/hooks/app"
secret = "{APP_SECRET}"
timeout_secs = 2
headers = {{ "X-Env" = "test" }}

[destinations.all]
kind = "http"
url = "{receiver}/hooks/all"
sign = "off"
timeout_secs = 2
"#
    )
}

pub async fn app_with_receiver(backend: Backend) -> (TestApp, MockServer) {
    let receiver = MockServer::start().await;
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: destinations_toml(&receiver.uri()),
            ..TestOptions::default()
        },
    )
    .await;
    (app, receiver)
}

pub async fn answer_with(receiver: &MockServer, route: &str, template: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(template)
        .mount(receiver)
        .await;
}

pub async fn requests_to(receiver: &MockServer, route: &str) -> Vec<wiremock::Request> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == route)
        .collect()
}

pub fn header<'a>(request: &'a wiremock::Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

async fn a_processed_event_is_delivered_signed_with_the_envelope_of_spec_7(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(200)).await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    let rows = app.store.deliveries_of_event(id).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.destination.as_str())
            .collect::<Vec<_>>(),
        ["app", "all"],
        "one delivery per matching destination, written with the completion"
    );
    assert!(rows
        .iter()
        .all(|r| r.status == "pending" && r.attempts == 0));

    let outcomes = app.relay("app").drain().await.unwrap();
    assert_eq!(outcomes, [DeliveryOutcome::Delivered]);
    let requests = requests_to(&receiver, "/hooks/app").await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let delivery_id = format!("hl_{id}");
    assert_eq!(header(request, "webhook-id"), delivery_id);
    assert_eq!(header(request, "idempotency-key"), delivery_id);
    assert_eq!(header(request, "hookledger-source"), "paid");
    assert_eq!(header(request, "hookledger-attempt"), "1");
    assert_eq!(header(request, "x-env"), "test");
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(
        header(request, "webhook-timestamp"),
        app.now_secs().to_string(),
        "this attempt's Unix seconds"
    );

    // An independent implementation checks the signature.
    let verifier = standardwebhooks::Webhook::new(APP_SECRET).unwrap();
    verifier
        .verify(&request.body, &request.headers)
        .expect("the standardwebhooks crate accepts the signature");
    let mut tampered = request.body.clone();
    tampered[10] ^= 1;
    assert!(verifier.verify(&tampered, &request.headers).is_err());
    let other = standardwebhooks::Webhook::new("whsec_b3RoZXIta2V5").unwrap();
    assert!(other.verify(&request.body, &request.headers).is_err());

    let envelope: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(envelope["type"], "invoice.paid");
    let data = &envelope["data"];
    assert_eq!(data["id"], delivery_id);
    assert_eq!(data["ledger_id"], id);
    assert_eq!(data["replay"], 0);
    assert_eq!(data["source"], "paid");
    assert_eq!(data["provider_event_id"], "evt_1");
    assert_eq!(data["action"], "invoice.paid");
    assert_eq!(data["object_type"], "invoice");
    assert_eq!(data["object_id"], "in_1");
    assert_eq!(data["object"], json!({"id": "in_1", "object": "invoice"}));
    assert_eq!(data["payload"]["id"], "evt_1");
    for key in ["event_time", "received_at"] {
        assert!(
            hookledger::clock::parse_rfc3339(data[key].as_str().unwrap()).is_some(),
            "{key} is RFC 3339"
        );
    }
    assert!(hookledger::clock::parse_rfc3339(envelope["timestamp"].as_str().unwrap()).is_some());

    let row = app.store.delivery(rows[0].id).await.unwrap().unwrap();
    assert_eq!(row.status, "delivered");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(204));
    assert!(row.delivered_at.is_some());

    // The unsigned destination gets the same envelope without a signature.
    assert_eq!(
        app.relay("all").drain().await.unwrap(),
        [DeliveryOutcome::Delivered]
    );
    let all = requests_to(&receiver, "/hooks/all").await;
    assert!(all[0].headers.get("webhook-signature").is_none());
    assert_eq!(
        all[0].body, request.body,
        "one envelope for every destination"
    );
}

async fn only_matching_first_seen_processed_events_are_delivered(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    let invoice = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    // A re-delivery is a duplicate: no second processing, no second delivery.
    let body = stripe_event(
        "evt_1",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_1", "object": "invoice"}),
    );
    assert_eq!(app.deliver("paid", &[], &body).await.status, 200);
    let customer = stripe_event(
        "evt_2",
        "customer.created",
        app.now_secs(),
        json!({"id": "cus_1", "object": "customer"}),
    );
    let answer = app.deliver("paid", &[], &customer).await;
    assert_eq!(answer.status, 202);
    let customer = answer.id();
    app.drain().await;
    let of = |rows: Vec<hookledger::store::deliveries::DeliveryRow>| {
        rows.into_iter().map(|r| r.destination).collect::<Vec<_>>()
    };
    assert_eq!(
        of(app.store.deliveries_of_event(invoice).await.unwrap()),
        ["app", "all"]
    );
    assert_eq!(
        of(app.store.deliveries_of_event(customer).await.unwrap()),
        ["all"],
        "customer.created does not match invoice.*"
    );
    // Sources without `deliver` write no deliveries at all.
    let other = deliver_invoice(&app, "stripe", "evt_3", "in_3").await;
    app.drain().await;
    assert!(app
        .store
        .deliveries_of_event(other)
        .await
        .unwrap()
        .is_empty());
}

async fn a_completion_that_lost_its_lease_writes_no_delivery(backend: Backend) {
    let (app, _receiver) = app_with_receiver(backend).await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    let now = app.clock.now_ms();
    let claimed = app.store.claim(now, 1_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // The lease runs out; another worker takes the event over.
    let later = now + 2_000;
    let retaken = app.store.claim(later, 30_000, 10).await.unwrap();
    assert_eq!(retaken.len(), 1);
    let outbox = hookledger::store::outbox::Outbox::from_config(&app.config);
    let write = hookledger::store::queue::DomainWrite { data: "{}".into() };
    let done = app
        .store
        .complete_batch_with(&[(&claimed[0], Some(&write))], &outbox, later)
        .await
        .unwrap();
    assert_eq!(done, [false]);
    assert!(
        app.store.deliveries_of_event(id).await.unwrap().is_empty(),
        "the stale completion wrote no delivery"
    );
    let done = app
        .store
        .complete_batch_with(&[(&retaken[0], Some(&write))], &outbox, later + 1)
        .await
        .unwrap();
    assert_eq!(done, [true]);
    assert_eq!(app.store.deliveries_of_event(id).await.unwrap().len(), 2);
}

async fn a_replay_is_delivered_again_under_a_replay_delivery_id(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    app.relay("app").drain().await.unwrap();
    for n in 1..=2 {
        let answer = app.admin_post(&format!("/admin/events/{id}/replay")).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        app.drain().await;
        assert_eq!(
            app.relay("app").drain().await.unwrap(),
            [DeliveryOutcome::Delivered]
        );
        let requests = requests_to(&receiver, "/hooks/app").await;
        let last = requests.last().unwrap();
        assert_eq!(header(last, "webhook-id"), format!("hl_{id}-r{n}"));
        let envelope: Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(
            envelope["data"]["id"],
            format!("hl_{id}"),
            "data.id is the event's"
        );
        assert_eq!(envelope["data"]["replay"], n);
    }
    assert_eq!(requests_to(&receiver, "/hooks/app").await.len(), 3);
}

async fn a_receivers_answers_are_retried_or_dead_as_spec_7_says(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    // 503 with Retry-After: retried, no sooner than asked.
    answer_with(
        &receiver,
        "/hooks/app",
        ResponseTemplate::new(503).insert_header("Retry-After", "120"),
    )
    .await;
    answer_with(
        &receiver,
        "/hooks/all",
        ResponseTemplate::new(422).set_body_string("x".repeat(5000)),
    )
    .await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    let now = app.clock.now_ms();
    assert_eq!(
        app.relay("app").drain().await.unwrap(),
        [DeliveryOutcome::Retry]
    );
    assert_eq!(
        app.relay("all").drain().await.unwrap(),
        [DeliveryOutcome::Dead]
    );
    let rows = app.store.deliveries_of_event(id).await.unwrap();
    let (to_app, to_all) = (&rows[0], &rows[1]);
    assert_eq!(to_app.status, "failed");
    assert_eq!(to_app.last_status, Some(503));
    assert!(
        to_app.next_attempt_at >= now + 120_000,
        "Retry-After honoured"
    );
    assert_eq!(to_all.status, "dead");
    assert_eq!(to_all.last_status, Some(422));
    let error = to_all.last_error.as_deref().unwrap();
    assert!(error.starts_with("HTTP 422: xxx"), "{error}");
    assert!(
        error.len() <= 1024 + 20,
        "only the first KiB of the answer: {}",
        error.len()
    );
    // Not due yet: nothing is attempted.
    assert!(app.relay("app").drain().await.unwrap().is_empty());
    app.clock.advance_ms(121_000);
    assert_eq!(
        app.relay("app").drain().await.unwrap(),
        [DeliveryOutcome::Retry]
    );
    let requests = requests_to(&receiver, "/hooks/app").await;
    assert_eq!(header(&requests[1], "hookledger-attempt"), "2");
    assert_eq!(
        header(&requests[0], "webhook-id"),
        header(&requests[1], "webhook-id"),
        "one delivery id across retries"
    );
}

async fn one_objects_deliveries_wait_behind_an_unfinished_earlier_one(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(500)).await;
    let first = deliver_invoice(&app, "paid", "evt_1", "in_x").await;
    app.drain().await;
    let second = deliver_invoice(&app, "paid", "evt_2", "in_x").await;
    let other = deliver_invoice(&app, "paid", "evt_3", "in_y").await;
    app.drain().await;
    // Only the first of in_x and the one of in_y go out; the second waits.
    assert_eq!(app.relay("all").drain().await.unwrap().len(), 2);
    let status = |id| {
        let store = app.store.clone();
        async move {
            store.deliveries_of_event(id).await.unwrap()[1]
                .status
                .clone()
        }
    };
    assert_eq!(status(first).await, "failed");
    assert_eq!(status(second).await, "pending");
    assert_eq!(status(other).await, "failed");
    receiver.reset().await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    app.clock.advance_ms(3_600_000);
    app.relay("all").drain().await.unwrap();
    assert_eq!(status(first).await, "delivered");
    assert_eq!(status(second).await, "delivered");
    let ids: Vec<String> = requests_to(&receiver, "/hooks/all")
        .await
        .iter()
        .filter(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["data"]["object_id"] == "in_x"
        })
        .map(|r| header(r, "webhook-id").to_string())
        .collect();
    assert_eq!(
        ids,
        [format!("hl_{first}"), format!("hl_{second}")],
        "in order"
    );
}

async fn a_paused_destination_attempts_nothing_and_resumes_in_order(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    app.store
        .set_destination_paused("app", true, app.clock.now_ms())
        .await
        .unwrap();
    let first = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    let second = deliver_invoice(&app, "paid", "evt_2", "in_1").await;
    app.drain().await;
    assert!(app.relay("app").drain().await.unwrap().is_empty());
    for id in [first, second] {
        let row = &app.store.deliveries_of_event(id).await.unwrap()[0];
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("pending", 0),
            "no attempt spent"
        );
    }
    assert!(requests_to(&receiver, "/hooks/app").await.is_empty());
    app.store
        .set_destination_paused("app", false, app.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(app.relay("app").drain().await.unwrap().len(), 2);
    let ids: Vec<String> = requests_to(&receiver, "/hooks/app")
        .await
        .iter()
        .map(|r| header(r, "webhook-id").to_string())
        .collect();
    assert_eq!(ids, [format!("hl_{first}"), format!("hl_{second}")]);
}

crate::backend_tests!(
    a_processed_event_is_delivered_signed_with_the_envelope_of_spec_7,
    only_matching_first_seen_processed_events_are_delivered,
    a_completion_that_lost_its_lease_writes_no_delivery,
    a_replay_is_delivered_again_under_a_replay_delivery_id,
    a_receivers_answers_are_retried_or_dead_as_spec_7_says,
    one_objects_deliveries_wait_behind_an_unfinished_earlier_one,
    a_paused_destination_attempts_nothing_and_resumes_in_order,
);

/// A relay idle in its background loop claims as soon as this process
/// commits a completion that wrote deliveries, not at its next poll (an
/// hour away here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_relay_is_woken_by_the_completion_that_wrote_its_delivery() {
    let receiver = MockServer::start().await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    let app = spawn_app_with(
        Backend::Sqlite,
        TestOptions {
            extra_toml: destinations_toml(&receiver.uri()),
            processing_toml: "poll_interval_ms = 3600000\n".into(),
            ..TestOptions::default()
        },
    )
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(app.relay("app").run(stop.clone()));
    // Each event completes while the relay sleeps after its last claim
    // (the first one's, then the one after delivering the first event):
    // only the wake-up brings it out before the hour is up.
    for (n, event) in ["evt_1", "evt_2"].into_iter().enumerate() {
        deliver_invoice(&app, "paid", event, &format!("in_{n}")).await;
        app.drain().await;
        wait_until("the delivery reached the receiver", || async {
            requests_to(&receiver, "/hooks/app").await.len() == n + 1
        })
        .await;
    }
    stop.cancel();
    relay.await.unwrap();
}
