//! The hand-off (`hookledger::handoff`): a completion leases its new
//! deliveries to this process's relay when it has free slots, under the
//! conditions of a claim — never to a paused destination, never past an
//! unfinished earlier delivery of the object, never from a completion that
//! lost its lease — and a leased delivery that never reaches its relay is
//! claimed again when its lease runs out, with the same `webhook-id`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use wiremock::ResponseTemplate;

use crate::destinations::{answer_with, destinations_toml, header, requests_to};
use crate::helpers::*;
use hookledger::store::deliveries::Settlement;
use hookledger::store::deliveries_handoff::HandoffSlots;
use hookledger::store::deliveries_settle::SettleRow;
use hookledger::store::outbox::Outbox;
use hookledger::store::queue::DomainWrite;

const LEASE_MS: i64 = 30_000;

fn slots(pairs: &[(&'static str, usize)]) -> HandoffSlots<'static> {
    HandoffSlots {
        slots: pairs.iter().copied().collect::<HashMap<_, _>>(),
        lease_ms: LEASE_MS,
    }
}

/// The destinations of `destinations.rs`; nothing is sent in these tests.
async fn app_with_destinations(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        TestOptions {
            extra_toml: destinations_toml("http://127.0.0.1:9"),
            ..TestOptions::default()
        },
    )
    .await
}

async fn a_completion_leases_new_deliveries_to_free_slots_like_a_claim(backend: Backend) {
    let app = app_with_destinations(backend).await;
    let first = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    let second = deliver_invoice(&app, "paid", "evt_2", "in_2").await;
    let now = app.clock.now_ms();
    let claimed = app.store.claim(now, LEASE_MS, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let write = DomainWrite { data: "{}".into() };
    let batch: Vec<_> = claimed.iter().map(|e| (e, Some(&write))).collect();
    let outbox = Outbox::from_config(&app.config);
    // One free slot at `app`, none at `all`.
    let completed = app
        .store
        .complete_batch_handing_off(&batch, &outbox, &slots(&[("app", 1)]), now)
        .await
        .unwrap();
    assert_eq!(completed.done, [true, true]);
    assert!(
        completed.left_pending,
        "three of the four rows wait for a claim"
    );
    assert_eq!(completed.leased.len(), 1, "{:?}", completed.leased);
    let leased = &completed.leased[0];
    assert_eq!(
        (
            leased.event_id,
            leased.destination.as_str(),
            leased.attempts
        ),
        (first, "app", 1),
        "the oldest new row of the destination with a slot"
    );
    let row = app.store.delivery(leased.id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("delivering", 1));
    // While its lease runs no claim takes it; the others are claimable.
    let at_app = app
        .store
        .claim_deliveries("app", now, LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(
        at_app.iter().map(|d| d.event_id).collect::<Vec<_>>(),
        [second]
    );
    let at_all = app
        .store
        .claim_deliveries("all", now, LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(
        at_all.iter().map(|d| d.event_id).collect::<Vec<_>>(),
        [first, second]
    );
    let delivered = |d| SettleRow::new(d, Settlement::Delivered { status: Some(204) });
    let rows: Vec<SettleRow> = at_app.iter().chain(&at_all).map(delivered).collect();
    let held = app.store.settle_deliveries(&rows, now + 1).await.unwrap();
    assert!(held.iter().all(|&h| h));
    // It never reached its relay (the process died): once the lease has
    // run out a claim takes it, as the second attempt of the same delivery.
    let later = now + LEASE_MS + 1;
    let retaken = app
        .store
        .claim_deliveries("app", later, LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!((retaken[0].id, retaken[0].attempts), (leased.id, 2));
    assert_eq!(retaken[0].delivery_id(), format!("hl_{first}"));
    assert_eq!(retaken[0].delivery_id(), leased.delivery_id());
    // The hand-off's own lease is gone: its late outcome changes nothing.
    let late = app
        .store
        .settle_deliveries(&[delivered(leased)], later + 1)
        .await
        .unwrap();
    assert_eq!(late, [false]);
}

async fn nothing_is_handed_off_to_a_paused_destination_or_past_an_unfinished_delivery(
    backend: Backend,
) {
    let app = app_with_destinations(backend).await;
    let outbox = Outbox::from_config(&app.config);
    let write = DomainWrite { data: "{}".into() };
    let all_slots = slots(&[("app", 5), ("all", 5)]);
    let first = deliver_invoice(&app, "paid", "evt_1", "in_x").await;
    let now = app.clock.now_ms();
    app.store
        .set_destination_paused("app", true, now)
        .await
        .unwrap();
    let claimed = app.store.claim(now, LEASE_MS, 10).await.unwrap();
    let completed = app
        .store
        .complete_batch_handing_off(&[(&claimed[0], Some(&write))], &outbox, &all_slots, now)
        .await
        .unwrap();
    assert_eq!(
        completed
            .leased
            .iter()
            .map(|d| d.destination.as_str())
            .collect::<Vec<_>>(),
        ["all"],
        "not to the paused one"
    );
    assert!(completed.left_pending);
    let statuses = |id| {
        let store = app.store.clone();
        async move {
            store
                .deliveries_of_event(id)
                .await
                .unwrap()
                .into_iter()
                .map(|d| (d.destination, d.status, d.attempts))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        statuses(first).await,
        [
            ("app".to_string(), "pending".to_string(), 0),
            ("all".to_string(), "delivering".to_string(), 1)
        ],
        "a paused destination's row waits unattempted"
    );
    app.store
        .set_destination_paused("app", false, now)
        .await
        .unwrap();
    // in_x has an unfinished delivery at both destinations (pending at
    // `app`, in flight at `all`): its next one waits behind it; in_y's goes.
    let second = deliver_invoice(&app, "paid", "evt_2", "in_x").await;
    let other = deliver_invoice(&app, "paid", "evt_3", "in_y").await;
    let claimed = app.store.claim(now, LEASE_MS, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let batch: Vec<_> = claimed.iter().map(|e| (e, Some(&write))).collect();
    let completed = app
        .store
        .complete_batch_handing_off(&batch, &outbox, &all_slots, now)
        .await
        .unwrap();
    let mut leased: Vec<(i64, &str)> = completed
        .leased
        .iter()
        .map(|d| (d.event_id, d.destination.as_str()))
        .collect();
    leased.sort();
    assert_eq!(leased, [(other, "all"), (other, "app")]);
    assert!(statuses(second)
        .await
        .iter()
        .all(|(_, status, attempts)| status == "pending" && *attempts == 0));
}

async fn a_completion_that_lost_its_lease_hands_off_nothing(backend: Backend) {
    let app = app_with_destinations(backend).await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    let now = app.clock.now_ms();
    let stale = app.store.claim(now, 1_000, 10).await.unwrap();
    let retaken = app.store.claim(now + 2_000, LEASE_MS, 10).await.unwrap();
    assert_eq!(retaken.len(), 1);
    let write = DomainWrite { data: "{}".into() };
    let completed = app
        .store
        .complete_batch_handing_off(
            &[(&stale[0], Some(&write))],
            &Outbox::from_config(&app.config),
            &slots(&[("app", 5), ("all", 5)]),
            now + 2_000,
        )
        .await
        .unwrap();
    assert_eq!(completed.done, [false]);
    assert!(completed.leased.is_empty());
    assert!(!completed.left_pending);
    assert!(app.store.deliveries_of_event(id).await.unwrap().is_empty());
}

crate::backend_tests!(
    a_completion_leases_new_deliveries_to_free_slots_like_a_claim,
    nothing_is_handed_off_to_a_paused_destination_or_past_an_unfinished_delivery,
    a_completion_that_lost_its_lease_hands_off_nothing,
);

/// Both relays' loops running in this process, polling once an hour: a
/// processed event reaches both receivers although the completion left
/// nothing for a claim (the relays were never woken), and a second event
/// of the object, completed while the first is still at the receiver,
/// waits for it and then goes — the finished attempt prompts the claim.
async fn running_relays_take_deliveries_from_the_completion(backend: Backend) {
    let receiver = wiremock::MockServer::start().await;
    let slow = ResponseTemplate::new(204).set_delay(Duration::from_millis(400));
    answer_with(&receiver, "/hooks/app", slow).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: destinations_toml(&receiver.uri()),
            processing_toml: "poll_interval_ms = 3600000\n".into(),
            ..TestOptions::default()
        },
    )
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let relays: Vec<_> = ["app", "all"]
        .into_iter()
        .map(|name| tokio::spawn(app.relay(name).run(stop.clone())))
        .collect();
    let handoffs = app.worker.handoffs();
    wait_until("both relays took their desks", || async {
        handoffs.is_open("app") && handoffs.is_open("all")
    })
    .await;
    let mut written = app.worker.deliveries_written();
    written.mark_unchanged();
    let first = deliver_invoice(&app, "paid", "evt_1", "in_x").await;
    app.drain().await;
    assert!(
        !written.has_changed().unwrap(),
        "the completion left no delivery for a claim"
    );
    let second = deliver_invoice(&app, "paid", "evt_2", "in_x").await;
    app.drain().await;
    wait_until("both events reached both receivers", || async {
        requests_to(&receiver, "/hooks/app").await.len() == 2
            && requests_to(&receiver, "/hooks/all").await.len() == 2
    })
    .await;
    for route in ["/hooks/app", "/hooks/all"] {
        let ids: Vec<String> = requests_to(&receiver, route)
            .await
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(body["data"]["object_id"], "in_x");
                header(r, "webhook-id").to_string()
            })
            .collect();
        assert_eq!(
            ids,
            [format!("hl_{first}"), format!("hl_{second}")],
            "{route}: in order"
        );
    }
    wait_until("every delivery is settled", || async {
        let mut rows = app.store.deliveries_of_event(first).await.unwrap();
        rows.extend(app.store.deliveries_of_event(second).await.unwrap());
        rows.len() == 4
            && rows
                .iter()
                .all(|d| d.status == "delivered" && d.attempts == 1)
    })
    .await;
    stop.cancel();
    for relay in relays {
        relay.await.unwrap();
    }
    assert!(
        !handoffs.is_open("app") && !handoffs.is_open("all"),
        "a stopped relay takes no more"
    );
}

crate::backend_tests!(running_relays_take_deliveries_from_the_completion);
