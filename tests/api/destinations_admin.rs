//! Operating destinations (SPEC §7) through the admin API: pause and
//! resume as every process sees them, replays, the counts in
//! `/admin/destinations` and `/admin/stats`, the delivery metrics, and what
//! `prune` keeps. Relays are driven by hand, the worker by `app.drain()`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

use crate::deliveries_admin::{delivery_to, drained, items};
use crate::destinations::{answer_with, app_with_receiver, destinations_toml, header, requests_to};
use crate::helpers::*;
use hookledger::clock::rfc3339;
use hookledger::metrics::Metrics;
use hookledger::relay::{DeliveryOutcome, Relay};
use hookledger::store::Store;

crate::backend_tests!(
    a_pause_through_the_api_holds_every_process_and_resume_delivers_in_order,
    a_replay_through_the_api_is_delivered_again_as_r1,
    destinations_and_stats_count_every_status_of_every_destination,
    delivery_metrics_are_on_metrics_after_a_delivery_without_the_relay_loop,
    prune_drops_deliveries_with_their_rows_and_keeps_rows_with_unfinished_ones,
);

async fn a_pause_through_the_api_holds_every_process_and_resume_delivers_in_order(
    backend: Backend,
) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    let answer = app.admin_post("/admin/destinations/app/pause").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["name"], "app");
    assert_eq!(answer.body["kind"], "http");
    assert_eq!(answer.body["paused"], true);

    // Another process: its own connections, its own relay.
    let other = Store::connect(&app.db.url).await.unwrap();
    assert!(other.destination_paused("app").await.unwrap());
    let clock: Arc<dyn Clock> = Arc::new(app.clock.clone());
    let other_relay = Relay::new(
        other.clone(),
        &app.config,
        &app.config.destinations["app"],
        clock,
        Arc::new(Metrics::new()),
    );

    let first = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    let second = deliver_invoice(&app, "paid", "evt_2", "in_1").await;
    app.drain().await;
    assert!(drained(&app, "app").await.is_empty());
    assert!(other_relay.drain().await.unwrap().is_empty());
    assert_eq!(
        drained(&app, "all").await.len(),
        2,
        "other destinations go on"
    );
    for id in [first, second] {
        let row = delivery_to(&app, id, "app").await;
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("pending", 0),
            "no attempt spent"
        );
    }
    assert!(requests_to(&receiver, "/hooks/app").await.is_empty());
    let listed = app.admin_get("/admin/destinations").await;
    let to_app = items(&listed).iter().find(|i| i["name"] == "app").unwrap();
    assert_eq!(to_app["paused"], true);
    assert_eq!(to_app["by_status"]["pending"], 2);
    let oldest = delivery_to(&app, first, "app").await.created_at;
    assert_eq!(to_app["oldest_pending_at"], rfc3339(oldest));

    let answer = app.admin_post("/admin/destinations/app/resume").await;
    assert_eq!(
        (answer.status, answer.body["paused"].clone()),
        (200, json!(false))
    );
    assert!(!other.destination_paused("app").await.unwrap());
    assert_eq!(
        other_relay.drain().await.unwrap().len(),
        2,
        "the other process delivers"
    );
    let ids: Vec<String> = requests_to(&receiver, "/hooks/app")
        .await
        .iter()
        .map(|r| header(r, "webhook-id").to_string())
        .collect();
    assert_eq!(
        ids,
        [format!("hl_{first}"), format!("hl_{second}")],
        "in order"
    );
    for id in [first, second] {
        let row = delivery_to(&app, id, "app").await;
        assert_eq!((row.status.as_str(), row.attempts), ("delivered", 1));
    }
    other.close().await;
}

async fn a_replay_through_the_api_is_delivered_again_as_r1(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    assert_eq!(drained(&app, "app").await, [DeliveryOutcome::Delivered]);
    let answer = app.admin_post(&format!("/admin/events/{id}/replay")).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    app.drain().await;
    let answer = app
        .admin_get(&format!("/admin/deliveries?event_id={id}&destination=app"))
        .await;
    let listed: Vec<(Value, Value)> = items(&answer)
        .iter()
        .map(|i| (i["delivery_id"].clone(), i["status"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (json!(format!("hl_{id}-r1")), json!("pending")),
            (json!(format!("hl_{id}")), json!("delivered")),
        ]
    );
    assert_eq!(drained(&app, "app").await, [DeliveryOutcome::Delivered]);
    let requests = requests_to(&receiver, "/hooks/app").await;
    assert_eq!(requests.len(), 2);
    assert_eq!(header(&requests[1], "webhook-id"), format!("hl_{id}-r1"));
}

async fn destinations_and_stats_count_every_status_of_every_destination(backend: Backend) {
    let receiver = MockServer::start().await;
    let idle = format!(
        "\n[destinations.idle]\nkind = \"http\"\nurl = \"{}/hooks/idle\"\nsign = \"off\"\n",
        receiver.uri()
    );
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: destinations_toml(&receiver.uri()) + &idle,
            ..TestOptions::default()
        },
    )
    .await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(422)).await;
    deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    drained(&app, "app").await;
    drained(&app, "all").await;
    app.clock.advance_ms(1_000);
    let waiting = deliver_invoice(&app, "paid", "evt_2", "in_2").await;
    app.drain().await;
    let waiting_since = rfc3339(delivery_to(&app, waiting, "app").await.created_at);

    let counts = |pending: i64, delivered: i64, dead: i64| json!({"pending": pending, "delivering": 0, "delivered": delivered, "failed": 0, "dead": dead});
    let answer = app.admin_get("/admin/destinations").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        json!({"items": [
            {"name": "all", "kind": "http", "paused": false, "by_status": counts(1, 0, 1),
             "oldest_pending_at": waiting_since},
            {"name": "app", "kind": "http", "paused": false, "by_status": counts(1, 1, 0),
             "oldest_pending_at": waiting_since},
            {"name": "idle", "kind": "http", "paused": false, "by_status": counts(0, 0, 0),
             "oldest_pending_at": null},
        ]})
    );
    let stats = app.admin_get("/admin/stats").await;
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.body["deliveries"],
        json!({"all": counts(1, 0, 1), "app": counts(1, 1, 0), "idle": counts(0, 0, 0)})
    );
    assert_eq!(stats.body["total"], 2, "the §5 keys are still there");
    let paused = app.admin_post("/admin/destinations/idle/pause").await;
    assert_eq!(
        paused.body,
        json!({"name": "idle", "kind": "http", "paused": true, "by_status": counts(0, 0, 0),
               "oldest_pending_at": null})
    );
}

/// The value of the sample whose line starts with `series ` in a
/// Prometheus text, if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

async fn delivery_metrics_are_on_metrics_after_a_delivery_without_the_relay_loop(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(422)).await;
    deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    let pending_app = r#"hookledger_deliveries_pending{destination="app"}"#;
    let pending_all = r#"hookledger_deliveries_pending{destination="all"}"#;
    let text = app.get("/metrics").await.body.as_str().unwrap().to_string();
    assert_eq!(
        sample(&text, pending_app),
        Some(1.0),
        "counted by the scrape:\n{text}"
    );
    assert_eq!(sample(&text, pending_all), Some(1.0));

    assert_eq!(drained(&app, "app").await, [DeliveryOutcome::Delivered]);
    assert_eq!(drained(&app, "all").await, [DeliveryOutcome::Dead]);
    let text = app.get("/metrics").await.body.as_str().unwrap().to_string();
    assert_eq!(
        sample(
            &text,
            r#"hookledger_deliveries_total{destination="app",result="delivered"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"hookledger_deliveries_total{destination="all",result="dead"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"hookledger_delivery_duration_seconds_count{destination="app"}"#
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            r#"hookledger_delivery_duration_seconds_sum{destination="app"}"#
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(&text, pending_app),
        Some(1.0),
        "recounted at most once a second of the app's clock"
    );
    app.clock.advance_ms(1_000);
    let text = app.get("/metrics").await.body.as_str().unwrap().to_string();
    assert_eq!(sample(&text, pending_app), Some(0.0));
    assert_eq!(sample(&text, pending_all), Some(0.0));
}

async fn prune_drops_deliveries_with_their_rows_and_keeps_rows_with_unfinished_ones(
    backend: Backend,
) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    let delivered = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    drained(&app, "app").await;
    drained(&app, "all").await;
    // The next one fails at `all` (a retry waits), the one after is dead there.
    receiver.reset().await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(500)).await;
    let failing = deliver_invoice(&app, "paid", "evt_2", "in_2").await;
    app.drain().await;
    drained(&app, "app").await;
    assert_eq!(drained(&app, "all").await, [DeliveryOutcome::Retry]);
    receiver.reset().await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(422)).await;
    let dead = deliver_invoice(&app, "paid", "evt_3", "in_3").await;
    app.drain().await;
    drained(&app, "app").await;
    assert_eq!(drained(&app, "all").await, [DeliveryOutcome::Dead]);
    // A source without destinations.
    let plain = deliver_invoice(&app, "stripe", "evt_4", "in_4").await;
    app.drain().await;
    let mut rows: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for id in [delivered, failing, dead, plain] {
        let ids = app.store.deliveries_of_event(id).await.unwrap();
        rows.insert(id, ids.iter().map(|d| d.id).collect());
    }

    app.clock.advance_ms(60_000);
    let cutoff = app.clock.now_ms();
    // One row per transaction, so the kept row sits between two batches.
    assert_eq!(app.store.prune_in_batches(cutoff, 1).await.unwrap(), 3);
    for id in [delivered, dead, plain] {
        assert!(
            app.store.event(id).await.unwrap().is_none(),
            "event {id} pruned"
        );
        assert!(app.store.deliveries_of_event(id).await.unwrap().is_empty());
        for d in &rows[&id] {
            assert!(
                app.store.delivery(*d).await.unwrap().is_none(),
                "its delivery {d} too"
            );
        }
    }
    assert!(
        app.store.event(failing).await.unwrap().is_some(),
        "a row with a delivery waiting for its retry is kept"
    );
    let answer = app.admin_get("/admin/deliveries").await;
    let left: BTreeSet<i64> = items(&answer)
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        left,
        rows[&failing].iter().copied().collect(),
        "with its deliveries"
    );

    // Once that delivery finishes, the row goes too.
    receiver.reset().await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    app.clock.advance_ms(3_600_000);
    assert_eq!(drained(&app, "all").await, [DeliveryOutcome::Delivered]);
    assert_eq!(app.store.prune(app.clock.now_ms()).await.unwrap(), 1);
    assert!(app.store.event(failing).await.unwrap().is_none());
    assert!(items(&app.admin_get("/admin/deliveries").await).is_empty());
}
