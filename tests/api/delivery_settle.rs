//! Settling many deliveries in one statement (SPEC §7; the relay's settler
//! writes whatever outcomes queued up since its last write): each row is
//! guarded as a single settle would be — its lease token, `delivering`, a
//! lease still running — so one batch can settle some rows and leave the
//! ones whose lease was lost, and each settled row ends exactly as a single
//! settle would leave it.

use hookledger::store::deliveries::{ClaimedDelivery, Settlement};
use hookledger::store::deliveries_settle::SettleRow;

use crate::bad_receiver::{Act, BadReceiver};
use crate::helpers::*;
use crate::relay_faults::{app_delivering_to, delivery_to, processed_invoices};

crate::backend_tests!(
    a_batch_settles_the_rows_it_holds_and_leaves_the_ones_it_lost,
    a_released_delivery_is_due_again_with_its_attempt_not_counted,
    an_answer_with_nul_bytes_is_recorded_and_its_delivery_dies,
);

/// Five processed events to one destination (a URL nothing listens on:
/// these tests settle by hand).
async fn five_deliveries(backend: Backend) -> (TestApp, Vec<i64>) {
    let url = "http://127.0.0.1:9/never".to_string();
    let app = app_delivering_to(backend, &[("app", url, "")], "").await;
    let ids = processed_invoices(&app, &["in_a", "in_b", "in_c", "in_d", "in_e"]).await;
    (app, ids)
}

async fn a_batch_settles_the_rows_it_holds_and_leaves_the_ones_it_lost(backend: Backend) {
    let (app, ids) = five_deliveries(backend).await;
    let now = app.clock.now_ms();
    // Four with a 30 s lease, the fifth with 1 s.
    let held = app
        .store
        .claim_deliveries("app", now, 30_000, 4)
        .await
        .unwrap();
    let short = app
        .store
        .claim_deliveries("app", now, 1_000, 4)
        .await
        .unwrap();
    assert_eq!((held.len(), short.len()), (4, 1));
    app.clock.advance_ms(2_000);
    let at = app.clock.now_ms();
    let mut forged: ClaimedDelivery = held[3].clone();
    forged.lease_token ^= 1;
    let rows = vec![
        SettleRow::new(&held[0], Settlement::Delivered { status: Some(204) }),
        SettleRow::new(
            &held[1],
            Settlement::Retry {
                at_ms: at + 60_000,
                error: "503 Service Unavailable".into(),
                status: Some(503),
            },
        ),
        SettleRow::new(
            &held[2],
            Settlement::Dead {
                error: "422 Unprocessable Entity: no".into(),
                status: Some(422),
            },
        ),
        // Not this claim's token: another relay's.
        SettleRow::new(&forged, Settlement::Delivered { status: Some(200) }),
        // Its lease ran out a second ago.
        SettleRow::new(&short[0], Settlement::Delivered { status: Some(200) }),
    ];
    let settled = app.store.settle_deliveries(&rows, at).await.unwrap();
    assert_eq!(settled, [true, true, true, false, false]);

    let row = |i: usize| delivery_to(&app, ids[i], "app");
    let delivered = row(0).await;
    assert_eq!(
        (
            delivered.status.as_str(),
            delivered.delivered_at,
            delivered.last_status
        ),
        ("delivered", Some(at), Some(204))
    );
    assert_eq!((delivered.attempts, delivered.last_error), (1, None));
    let failed = row(1).await;
    assert_eq!(
        (
            failed.status.as_str(),
            failed.next_attempt_at,
            failed.last_status
        ),
        ("failed", at + 60_000, Some(503))
    );
    assert_eq!(
        failed.last_error.as_deref(),
        Some("503 Service Unavailable")
    );
    assert_eq!(failed.delivered_at, None);
    let dead = row(2).await;
    assert_eq!(
        (dead.status.as_str(), dead.last_status),
        ("dead", Some(422))
    );
    // The forged and the expired rows are untouched: still leased (the
    // forged one by its real claim, which can still settle it).
    for i in [3, 4] {
        let r = row(i).await;
        assert_eq!(
            (r.status.as_str(), r.last_status, r.delivered_at),
            ("delivering", None, None)
        );
    }
    app.store
        .settle_delivery(&held[3], &Settlement::Delivered { status: Some(200) }, at)
        .await
        .expect("the real claim still holds its lease");
    assert_eq!(row(3).await.status, "delivered");
    // The expired one is due again: a new claim takes it, a second attempt.
    let again = app
        .store
        .claim_deliveries("app", at, 30_000, 10)
        .await
        .unwrap();
    let again: Vec<(i64, i32)> = again.iter().map(|d| (d.event_id, d.attempts)).collect();
    assert_eq!(again, [(ids[4], 2)]);
}

async fn a_released_delivery_is_due_again_with_its_attempt_not_counted(backend: Backend) {
    let (app, ids) = five_deliveries(backend).await;
    let now = app.clock.now_ms();
    let first = app
        .store
        .claim_deliveries("app", now, 30_000, 2)
        .await
        .unwrap();
    // The first attempt failed with a 503 …
    let retry = Settlement::Retry {
        at_ms: now,
        error: "503".into(),
        status: Some(503),
    };
    let settled = app
        .store
        .settle_deliveries(
            &[
                SettleRow::new(&first[0], retry.clone()),
                SettleRow::new(&first[1], retry),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(settled, [true, true]);
    // … the second is handed back unattempted (a rate-limit wait), next
    // to one that is delivered in the same batch.
    let second = app
        .store
        .claim_deliveries("app", now, 30_000, 2)
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|d| d.attempts).collect::<Vec<_>>(),
        [2, 2]
    );
    let rows = [
        SettleRow::new(
            &second[0],
            Settlement::Release {
                reason: "waiting for the destination's rate limit".into(),
                at_ms: now + 5_000,
            },
        ),
        SettleRow::new(&second[1], Settlement::Delivered { status: None }),
    ];
    assert_eq!(
        app.store.settle_deliveries(&rows, now).await.unwrap(),
        [true, true]
    );
    let released = delivery_to(&app, ids[0], "app").await;
    assert_eq!(
        (
            released.status.as_str(),
            released.attempts,
            released.next_attempt_at
        ),
        ("pending", 1, now + 5_000)
    );
    // The released attempt keeps the status the last real attempt got.
    assert_eq!(released.last_status, Some(503));
    let delivered = delivery_to(&app, ids[1], "app").await;
    assert_eq!(
        (delivered.status.as_str(), delivered.attempts),
        ("delivered", 2)
    );
    assert_eq!(delivered.last_status, None);
}

/// Found by a breaker session: PostgreSQL's text refuses NUL, so an answer
/// excerpt holding one failed the settle, and the delivery went out again
/// at every lease expiry, past its attempts, holding up its object.
async fn an_answer_with_nul_bytes_is_recorded_and_its_delivery_dies(backend: Backend) {
    let receiver = BadReceiver::start(|request| match request.object_id().as_str() {
        "in_nul" => Act::Answer {
            status: 422,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"bad\0answer\0".to_vec(),
        },
        _ => Act::status(204),
    });
    let app = app_delivering_to(backend, &[("app", receiver.url("/hooks"), "")], "").await;
    let ids = processed_invoices(&app, &["in_nul", "in_nul", "in_ok"]).await;
    let outcomes = app.relay("app").drain().await.unwrap();
    assert_eq!(
        outcomes,
        [
            hookledger::relay::DeliveryOutcome::Dead,
            hookledger::relay::DeliveryOutcome::Delivered,
            hookledger::relay::DeliveryOutcome::Dead,
        ]
    );
    let dead = delivery_to(&app, ids[0], "app").await;
    assert_eq!(
        (dead.status.as_str(), dead.last_status),
        ("dead", Some(422))
    );
    assert_eq!(
        dead.last_error.as_deref(),
        Some("HTTP 422: bad\u{fffd}answer\u{fffd}")
    );
    assert_eq!(delivery_to(&app, ids[2], "app").await.status, "delivered");
    // The object's next delivery was not held up by the first one.
    assert_eq!(delivery_to(&app, ids[1], "app").await.status, "dead");
    assert_eq!(receiver.requests().len(), 3, "each sent once");
}
