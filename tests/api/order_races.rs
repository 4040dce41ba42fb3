//! Attacks on per-object order (SPEC §4) that got through: each test here
//! failed on the code as it was when it was written, and names what broke.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hookledger::dedup::Strategy;
use hookledger::ingest::{BatchSettings, Ingestor};
use hookledger::metrics::Metrics;
use hookledger::store::{NewEvent, RecordOutcome, Store};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_lease_that_expired_while_an_earlier_event_was_claimed_neither_renews_nor_completes
);

fn postgres_configured(test: &str) -> bool {
    let configured = postgres_url().is_some();
    if !configured {
        eprintln!("skipped: {test} on PostgreSQL (set {POSTGRES_ENV} to run it)");
    }
    configured
}

fn thing_event(key: &str, object: &str, at: i64) -> NewEvent {
    NewEvent {
        source: "orders".into(),
        dedup_key: format!("id:{key}"),
        previous_key: None,
        strategy: Strategy::EventId,
        ignored: false,
        provider_event_id: Some(key.into()),
        action: None,
        object_type: Some("thing".into()),
        object_id: Some(object.into()),
        event_time_ms: at,
        payload: json!({ "key": key }).to_string(),
        body_hash: format!("hash of {key}"),
        received_at_ms: at,
    }
}

/// Claim statements running right now (their statement has its snapshot).
const CLAIMS_RUNNING: &str = "SELECT COUNT(*) FROM pg_stat_activity \
    WHERE datname = current_database() AND state = 'active' \
      AND query LIKE 'WITH picked AS%'";

/// Events this backlog makes a claim walk past (all blocked behind one
/// event in flight): enough that a claim statement runs for a while.
const BACKLOG: usize = 20_000;

/// PostgreSQL, the race between a claim and a replay: a claim statement
/// whose snapshot was taken before a replay of an object's older event
/// committed sees the older event `done` and takes the newer one; a second
/// claim that starts after the replay committed, but before the first one
/// committed, sees the newer one still `pending` and takes the replayed
/// older one. Both then run at once. The first claim is made slow (it walks
/// a long backlog of blocked events before it reaches the newer event), and
/// the replay and the second claim are started while it is running, as
/// seen in `pg_stat_activity`: with nothing ordering replays after running
/// claims, the two claims return both events of the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_running_across_a_replay_does_not_run_the_replayed_event_beside_the_newer() {
    if !postgres_configured("a_claim_running_across_a_replay_does_not_run…") {
        return;
    }
    const ROUNDS: usize = 3;
    let db = TestDb::new(Backend::Postgres).await;
    let store = Store::open(&db.url).await.unwrap();
    let Store::Postgres(pg) = &store else {
        unreachable!("a PostgreSQL store")
    };
    let lease = 3_600_000;
    let mut now = 1_000;

    // Object z: one event in flight for the whole test, a backlog behind it.
    store.record(&thing_event("z-0", "z", now)).await.unwrap();
    let in_flight = store.claim(now, lease, 10).await.unwrap();
    assert_eq!(in_flight.len(), 1);
    for chunk in (1..=BACKLOG).collect::<Vec<_>>().chunks(1_000) {
        let batch: Vec<NewEvent> = chunk
            .iter()
            .map(|n| thing_event(&format!("z-{n}"), "z", now))
            .collect();
        store.record_batch(&batch).await.unwrap();
    }

    for round in 0..ROUNDS {
        let object = format!("x{round}");
        now += 1_000;
        let older = store
            .record(&thing_event(&format!("{object}-older"), &object, now))
            .await
            .unwrap()
            .id();
        let first = store.claim(now, lease, 10).await.unwrap();
        assert_eq!(first.iter().map(|e| e.id).collect::<Vec<_>>(), vec![older]);
        store.complete(&first[0], None, now).await.unwrap();
        let newer = store
            .record(&thing_event(&format!("{object}-newer"), &object, now))
            .await
            .unwrap()
            .id();

        now += 1_000;
        let slow_claim = tokio::spawn({
            let store = store.clone();
            async move { store.claim(now, lease, 1).await.unwrap() }
        });
        let deadline = Instant::now() + DEADLINE;
        loop {
            let running: i64 = sqlx::query_scalar(CLAIMS_RUNNING)
                .fetch_one(&pg.pool)
                .await
                .unwrap();
            if running > 0 || slow_claim.is_finished() {
                break;
            }
            assert!(Instant::now() < deadline, "the claim never ran");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(store.replay(older, now).await.unwrap());
        let second_claim = store.claim(now, lease, 1).await.unwrap();
        let first_claim = slow_claim.await.unwrap();

        let claimed: Vec<i64> = first_claim
            .iter()
            .chain(&second_claim)
            .filter(|e| e.object_id.as_deref() == Some(object.as_str()))
            .map(|e| e.id)
            .collect();
        assert!(
            claimed.len() <= 1,
            "round {round}: events {older} (replayed) and {newer} of object {object} \
             were both claimed, to run at once: {claimed:?}"
        );

        // Finish the object's events, one at a time, before the next round.
        let mut holding: Vec<_> = first_claim.into_iter().chain(second_claim).collect();
        for _ in 0..10 {
            for event in holding.drain(..) {
                store.complete(&event, None, now).await.unwrap();
            }
            let older_done = store.event_status(older).await.unwrap();
            let newer_done = store.event_status(newer).await.unwrap();
            if older_done.as_deref() == Some("done") && newer_done.as_deref() == Some("done") {
                break;
            }
            now += 1;
            holding = store.claim(now, lease, 10).await.unwrap();
        }
        assert!(holding.is_empty(), "{holding:?}");
    }
}

/// PostgreSQL with `batch_writers` > 1: two deliveries of one object handed
/// to the writers' queue one after the other, in batches of one, the first
/// a coalesce delivery (one-at-a-time path: `BEGIN`, then lock and draw),
/// the second an event-id delivery (one statement). SPEC §4: "ledger ids
/// follow the order in which verified deliveries were handed to the ledger
/// writer". The second writer's statement often reaches PostgreSQL first,
/// takes the object's lock and draws the smaller id, so the later delivery
/// was processed first (47 and 101 of 200 rounds inverted while the writers
/// shared one queue). Now every delivery of one object goes to one writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_handed_to_parallel_writers_in_order_get_ids_in_that_order() {
    if !postgres_configured("deliveries_handed_to_parallel_writers_in_order…") {
        return;
    }
    const ROUNDS: usize = 200;
    let db = TestDb::new(Backend::Postgres).await;
    let store = Store::open(&db.url).await.unwrap();
    let (ingestor, _writers) = Ingestor::start(
        store.clone(),
        BatchSettings {
            max_rows: 1,
            linger: Duration::ZERO,
            writers: 2,
            queue: 16,
        },
        Arc::new(Metrics::new()),
    );
    let mut inverted = Vec::new();
    for round in 0..ROUNDS {
        let object = format!("x{round}");
        let mut first = thing_event(&format!("{object}-changed"), &object, 1);
        first.strategy = Strategy::Coalesce;
        first.dedup_key = format!("co:changed:{object}");
        first.provider_event_id = None;
        let second = thing_event(&format!("{object}-id"), &object, 1);
        // Each is handed to the queue (polled once) before the next.
        let mut first = Box::pin(ingestor.record(first));
        assert!(poll_once(&mut first).await.is_pending());
        let mut second = Box::pin(ingestor.record(second));
        let _ = poll_once(&mut second).await;
        let first = first.await.unwrap();
        let second = match second.await.unwrap() {
            RecordOutcome::Accepted { id } => id,
            other => panic!("expected a new event, got {other:?}"),
        };
        if second < first.id() {
            inverted.push((first.id(), second));
        }
    }
    assert!(
        inverted.is_empty(),
        "{} of {ROUNDS} rounds: the later delivery got the smaller id: {:?}",
        inverted.len(),
        &inverted[..inverted.len().min(5)]
    );
}

/// Polls a future once: for a delivery, that hands it to the writers' queue.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
}

/// A replayed older event is claimed once the newer event's lease has run
/// out (its worker counts as gone: `ordering.rs` tests that). But a worker
/// that was only stalled past its lease (a paused process, a starved
/// runtime) comes back: its lease token still matches, since nobody could
/// take the newer event over (the older one runs first), so its renewal
/// went through and its completion marked the newer event `done` and wrote
/// its domain row while the older event of the same object was being
/// processed — two events of one object at once. An expired lease must
/// fence its holder: no renewal, no completion, no failure.
async fn a_lease_that_expired_while_an_earlier_event_was_claimed_neither_renews_nor_completes(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let older = store
        .record(&thing_event("one", "x", 1))
        .await
        .unwrap()
        .id();
    let newer = store
        .record(&thing_event("two", "x", 1))
        .await
        .unwrap()
        .id();
    let one = store.claim(10, 1_000, 10).await.unwrap();
    store.complete(&one[0], None, 20).await.unwrap();
    let stalled = store.claim(30, 1_000, 10).await.unwrap();
    assert_eq!(
        stalled.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![newer]
    );
    assert!(store.replay(older, 40).await.unwrap());
    // The newer event's lease (until 1 030) ran out: the older one runs.
    let running = store.claim(1_100, 1_000, 10).await.unwrap();
    assert_eq!(
        running.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![older]
    );

    // The stalled worker of the newer event comes back.
    let mut problems = Vec::new();
    if store.renew_lease(&stalled[0], 1_110, 2_110).await.is_ok() {
        problems.push("its expired lease was renewed");
    }
    if store.complete(&stalled[0], None, 1_120).await.is_ok() {
        problems.push("its expired lease completed it");
    }
    if store
        .fail(&stalled[0], "late", Some(5_000), 1_130)
        .await
        .is_ok()
    {
        problems.push("its expired lease recorded a failure");
    }
    assert!(
        problems.is_empty(),
        "event {newer}, while event {older} of its object was processing: {problems:?}"
    );
    assert_eq!(
        store.event_status(newer).await.unwrap().as_deref(),
        Some("processing")
    );
    // The older event finishes, then the newer one runs again, once.
    store.complete(&running[0], None, 1_200).await.unwrap();
    let again = store.claim(1_300, 1_000, 10).await.unwrap();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), vec![newer]);
    store.complete(&again[0], None, 1_400).await.unwrap();
}
