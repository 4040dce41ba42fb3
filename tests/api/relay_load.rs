//! The HTTP relay under load and next to a bad neighbour (SPEC §7, issue 12
//! item 7): a destination that hangs or is paused with 10 000 deliveries
//! waiting holds up no other, `concurrency` and `rate_per_sec` hold as the
//! receiver sees them, and a relay stopped — gracefully or by a crash —
//! while an attempt is in flight loses nothing. The background loop
//! ([`Relay::run`]) is what runs here wherever the claim-as-slots-free-up
//! logic matters; waits are on conditions with a deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookledger::clock::SystemClock;
use hookledger::metrics::Metrics;
use hookledger::relay::{DeliveryOutcome, Relay};
use tokio_util::sync::CancellationToken;

use crate::bad_receiver::{Act, BadReceiver};
use crate::helpers::*;
use crate::relay_faults::{app_delivering_to, delivery_to, processed_invoices};

/// The background loops poll this often when idle.
const POLL: &str = "poll_interval_ms = 20";
/// How long a stopping relay may take, at most, in these tests.
const STOP_LIMIT: Duration = Duration::from_secs(15);

fn objects(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}_{i}")).collect()
}

async fn processed(app: &TestApp, objects: &[String]) -> Vec<i64> {
    let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
    processed_invoices(app, &refs).await
}

async fn stop(handle: tokio::task::JoinHandle<()>, what: &str) {
    tokio::time::timeout(STOP_LIMIT, handle)
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop within {STOP_LIMIT:?}"))
        .unwrap();
}

async fn a_hanging_receiver_holds_up_no_other_destination(backend: Backend) {
    let hanging = BadReceiver::start(|_| Act::Hang);
    let healthy = BadReceiver::start(|_| Act::status(204));
    let app = app_delivering_to(
        backend,
        &[
            ("a", hanging.url("/hooks"), "timeout_secs = 60"),
            ("b", healthy.url("/hooks"), ""),
        ],
        POLL,
    )
    .await;
    let ids = processed(&app, &objects("in", 5)).await;
    let shutdown = CancellationToken::new();
    let a = tokio::spawn(app.relay("a").run(shutdown.clone()));
    wait_until("A's five first attempts hang", || async {
        hanging.in_flight() == 5
    })
    .await;
    let b = tokio::spawn(app.relay("b").run(shutdown.clone()));
    wait_until("B has delivered all five", || async {
        app.store.unfinished_deliveries("b").await.unwrap() == 0
    })
    .await;
    assert_eq!(healthy.requests().len(), 5);
    // All of it happened while A's first attempts were still hanging.
    assert_eq!(hanging.in_flight(), 5);
    for id in &ids {
        assert_eq!(delivery_to(&app, *id, "b").await.status, "delivered");
        let to_a = delivery_to(&app, *id, "a").await;
        assert_eq!((to_a.status.as_str(), to_a.attempts), ("delivering", 1));
    }
    shutdown.cancel();
    stop(b, "B's relay").await;
    // A's relay waits for its attempts; the receiver now hangs up on them.
    hanging.release();
    stop(a, "A's relay").await;
    for id in &ids {
        let to_a = delivery_to(&app, *id, "a").await;
        assert_eq!(to_a.status, "failed", "due again, not lost");
        assert!(to_a.last_error.unwrap().starts_with("request failed"));
    }
}

async fn concurrency_two_keeps_two_requests_in_flight_and_never_more(backend: Backend) {
    let slow = || {
        BadReceiver::start(|_| Act::Delay {
            delay: Duration::from_millis(100),
            status: 204,
        })
    };
    let (by_hand, in_background) = (slow(), slow());
    let app = app_delivering_to(
        backend,
        &[
            ("a", by_hand.url("/hooks"), "concurrency = 2"),
            ("b", in_background.url("/hooks"), "concurrency = 2"),
        ],
        POLL,
    )
    .await;
    processed(&app, &objects("in", 10)).await;
    let outcomes = app.relay("a").drain().await.unwrap();
    assert_eq!(outcomes, vec![DeliveryOutcome::Delivered; 10]);
    assert_eq!(by_hand.requests().len(), 10);
    assert_eq!(by_hand.max_in_flight(), 2, "ten objects, two at a time");

    let shutdown = CancellationToken::new();
    let b = tokio::spawn(app.relay("b").run(shutdown.clone()));
    wait_until("B has delivered all ten", || async {
        app.store.unfinished_deliveries("b").await.unwrap() == 0
    })
    .await;
    shutdown.cancel();
    stop(b, "B's relay").await;
    assert_eq!(in_background.requests().len(), 10);
    assert_eq!(in_background.max_in_flight(), 2, "the background loop too");
}

async fn rate_per_sec_spends_one_token_per_interval_of_the_clock(backend: Backend) {
    // One token per 10 s, burst 1: longer than a relay holds a claim for a
    // token, so each waiting delivery is handed back, due when the next
    // token is, and nothing but the manual clock decides.
    let receiver = BadReceiver::start(|_| Act::status(204));
    let app = app_delivering_to(
        backend,
        &[("a", receiver.url("/hooks"), "rate_per_sec = 0.1")],
        "",
    )
    .await;
    let ids = processed(&app, &objects("in", 10)).await;
    for step in 1..=3 {
        let now = app.clock.now_ms();
        let outcomes = app.relay("a").drain().await.unwrap();
        let delivered = outcomes
            .iter()
            .filter(|o| **o == DeliveryOutcome::Delivered)
            .count();
        assert_eq!(delivered, 1, "step {step}: {outcomes:?}");
        assert!(outcomes[1..]
            .iter()
            .all(|o| *o == DeliveryOutcome::Released));
        assert_eq!(receiver.requests().len(), step);
        for id in &ids[step..] {
            let row = delivery_to(&app, *id, "a").await;
            assert_eq!((row.status.as_str(), row.attempts), ("pending", 0));
            assert_eq!(row.next_attempt_at, now + 10_000, "due with the next token");
        }
        // Not a moment before the next token.
        app.clock.advance_ms(9_999);
        assert!(app
            .relay("a")
            .drain()
            .await
            .unwrap()
            .iter()
            .all(|o| *o != DeliveryOutcome::Delivered));
        app.clock.advance_ms(1);
    }
    let order: Vec<String> = receiver.requests().iter().map(|r| r.object_id()).collect();
    assert_eq!(order, ["in_1", "in_2", "in_3"], "oldest first");
}

async fn rate_per_sec_spreads_attempts_over_real_time(backend: Backend) {
    let receiver = BadReceiver::start(|_| Act::status(204));
    let app = app_delivering_to(
        backend,
        &[("a", receiver.url("/hooks"), "rate_per_sec = 5")],
        "",
    )
    .await;
    processed(&app, &objects("in", 10)).await;
    // The relay as `serve` runs it: on the real clock, which is also what
    // it sleeps on for a token.
    let relay = Relay::new(
        app.store.clone(),
        &app.config,
        &app.config.destinations["a"],
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
    );
    let outcomes = relay.drain().await.unwrap();
    assert_eq!(outcomes, vec![DeliveryOutcome::Delivered; 10]);
    let arrivals: Vec<Instant> = receiver.requests().iter().map(|r| r.arrived).collect();
    let first = arrivals[0];
    let offsets: Vec<Duration> = arrivals.iter().map(|a| *a - first).collect();
    eprintln!("rate 5/s, burst 5: arrivals after the first at {offsets:?}");
    // A burst of 5, then one per 200 ms. The slack covers the first
    // request's own way to the receiver (its token was taken before it
    // left); without the limit all ten arrive within a few milliseconds.
    for (k, offset) in offsets.iter().enumerate().skip(5) {
        let earliest = Duration::from_millis(200 * (k as u64 - 4) - 100);
        assert!(
            *offset >= earliest,
            "request {k} came {offset:?} after the first"
        );
    }
    assert!(offsets[9] < Duration::from_secs(5), "and not much slower");
}

async fn a_paused_destination_with_ten_thousand_waiting_holds_up_no_other(backend: Backend) {
    const BACKLOG: i64 = 10_000;
    let paused = BadReceiver::start(|_| Act::status(204));
    let healthy = BadReceiver::start(|_| Act::status(204));
    let app = app_delivering_to(
        backend,
        &[
            ("a", paused.url("/hooks"), ""),
            ("b", healthy.url("/hooks"), ""),
        ],
        POLL,
    )
    .await;
    app.store
        .set_destination_paused("a", true, app.clock.now_ms())
        .await
        .unwrap();
    let template = processed_invoices(&app, &["in_backlog"]).await[0];
    let template = delivery_to(&app, template, "a").await.id;
    let started = Instant::now();
    insert_backlog(&app, backend, template, BACKLOG).await;
    eprintln!(
        "{backend:?}: {BACKLOG} deliveries inserted in {:?}",
        started.elapsed()
    );

    // A's relay keeps polling its paused backlog meanwhile.
    let shutdown = CancellationToken::new();
    let a = tokio::spawn(app.relay("a").run(shutdown.clone()));
    processed(&app, &objects("in_b", 5)).await;
    let started = Instant::now();
    let outcomes = app.relay("b").drain().await.unwrap();
    let took = started.elapsed();
    assert_eq!(outcomes, vec![DeliveryOutcome::Delivered; 6]);
    assert_eq!(healthy.requests().len(), 6);
    let started = Instant::now();
    let claimed = app
        .store
        .claim_deliveries("a", app.clock.now_ms(), 30_000, 8)
        .await
        .unwrap();
    let paused_claim = started.elapsed();
    assert!(claimed.is_empty(), "a paused destination claims nothing");
    eprintln!(
        "{backend:?}: B delivered 6 in {took:?} beside A's paused backlog; \
         A's (empty) claim took {paused_claim:?}"
    );
    shutdown.cancel();
    stop(a, "A's relay").await;

    // Nothing of A's was attempted or lost.
    assert!(paused.requests().is_empty());
    let waiting = BACKLOG + 6;
    assert_eq!(app.store.unfinished_deliveries("a").await.unwrap(), waiting);
    assert_eq!(untouched_pending(&app, backend, "a").await, waiting);
    // Resumed, a claim still finds its first deliveries at once.
    app.store
        .set_destination_paused("a", false, app.clock.now_ms())
        .await
        .unwrap();
    let started = Instant::now();
    let claimed = app
        .store
        .claim_deliveries("a", app.clock.now_ms(), 30_000, 8)
        .await
        .unwrap();
    eprintln!(
        "{backend:?}: resumed, A's claim of {} took {:?}",
        claimed.len(),
        started.elapsed()
    );
    assert_eq!(claimed.len(), 8);
    assert_eq!(claimed[0].id, template, "oldest first");
}

/// Inserts `n` copies of delivery `template` straight into the table:
/// every second one of the template's own object (queued behind it), the
/// others each of an object of its own.
async fn insert_backlog(app: &TestApp, backend: Backend, template: i64, n: i64) {
    const INSERT: &str = "\
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
        INSERT INTO deliveries (event_id, destination, replay, source, action, object_type, \
          object_id, status, body, attempts, next_attempt_at, created_at) \
        SELECT d.event_id, d.destination, n.i, d.source, d.action, d.object_type, \
          CASE WHEN n.i % 2 = 0 THEN d.object_id ELSE d.object_id || '_' || CAST(n.i AS TEXT) END, \
          'pending', d.body, 0, d.next_attempt_at, d.created_at \
        FROM deliveries d, n WHERE d.id = $1";
    let inserted = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            let done = sqlx::query(INSERT)
                .bind(template)
                .bind(n)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            done.rows_affected()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let done = sqlx::query(INSERT)
                .bind(template)
                .bind(n)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            done.rows_affected()
        }
    };
    assert_eq!(inserted, u64::try_from(n).unwrap());
}

/// Deliveries to `destination` still `pending` with no attempt spent.
async fn untouched_pending(app: &TestApp, backend: Backend, destination: &str) -> i64 {
    const COUNT: &str = "SELECT COUNT(*) FROM deliveries \
        WHERE destination = $1 AND status = 'pending' AND attempts = 0";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(COUNT)
                .bind(destination)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            n
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(COUNT)
                .bind(destination)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            n
        }
    }
}

/// Someone else's long write holding the deliveries (a prune, a bulk
/// retry, a migration): SQLite's write lock, or PostgreSQL's `EXCLUSIVE`
/// table lock, which blocks claims but not plain reads.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(app: &TestApp, backend: Backend) -> WriteLock {
        use sqlx::{Connection, Executor};
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
                conn.execute("BEGIN IMMEDIATE").await.unwrap();
                WriteLock::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
                conn.execute("BEGIN").await.unwrap();
                conn.execute("LOCK TABLE deliveries IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                WriteLock::Postgres(conn)
            }
        }
    }

    async fn release(self) {
        use sqlx::Executor;
        match self {
            WriteLock::Sqlite(mut conn) => conn.execute("ROLLBACK").await.map(|_| ()),
            WriteLock::Postgres(mut conn) => conn.execute("ROLLBACK").await.map(|_| ()),
        }
        .unwrap();
    }
}

async fn a_paused_relay_waits_on_no_write_to_the_deliveries(backend: Backend) {
    let receiver = BadReceiver::start(|_| Act::status(204));
    let app = app_delivering_to(backend, &[("a", receiver.url("/hooks"), "")], POLL).await;
    processed(&app, &objects("in", 3)).await;
    app.store
        .set_destination_paused("a", true, app.clock.now_ms())
        .await
        .unwrap();
    let lock = WriteLock::take(&app, backend).await;
    let shutdown = CancellationToken::new();
    let a = tokio::spawn(app.relay("a").run(shutdown.clone()));
    // The loop reports its backlog first, then would claim.
    wait_until("A's relay is polling", || async {
        let metrics = app.get("/metrics").await.body;
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("hookledger_deliveries_pending{destination=\"a\"} 3")
    })
    .await;
    // A claim would now be queued behind the lock (on SQLite for the 5 s
    // busy timeout, on PostgreSQL for as long as it is held); a paused
    // relay claims nothing, so it stops at once.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), a)
        .await
        .expect("the paused relay was waiting on the deliveries' lock")
        .unwrap();
    lock.release().await;
    assert!(receiver.requests().is_empty());
    // Resumed, the background loop delivers the backlog.
    app.store
        .set_destination_paused("a", false, app.clock.now_ms())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let a = tokio::spawn(app.relay("a").run(shutdown.clone()));
    wait_until("A has delivered its backlog", || async {
        app.store.unfinished_deliveries("a").await.unwrap() == 0
    })
    .await;
    shutdown.cancel();
    stop(a, "A's relay").await;
    assert_eq!(receiver.requests().len(), 3);
}

/// A receiver whose first request gets `first`, and every later one 204.
fn first_then_ok(first: Act) -> BadReceiver {
    let seen = AtomicUsize::new(0);
    BadReceiver::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            first.clone()
        } else {
            Act::status(204)
        }
    })
}

async fn a_relay_stopped_mid_attempt_loses_nothing(backend: Backend) {
    // a: the answer comes after the stop; b: no answer, the attempt's own
    // timeout ends it; c: the relay dies (its task aborted, like a crash).
    let held = BadReceiver::start(|_| Act::HoldThen(204));
    let silent = first_then_ok(Act::Hang);
    let crashed = first_then_ok(Act::Hang);
    let app = app_delivering_to(
        backend,
        &[
            ("a", held.url("/hooks"), "timeout_secs = 30"),
            ("b", silent.url("/hooks"), "timeout_secs = 1"),
            ("c", crashed.url("/hooks"), "timeout_secs = 60"),
        ],
        POLL,
    )
    .await;
    let id = processed_invoices(&app, &["in_1"]).await[0];

    // a: a stop lets the attempt in flight finish and record its outcome.
    let shutdown = CancellationToken::new();
    let mut a = tokio::spawn(app.relay("a").run(shutdown.clone()));
    wait_until("a's attempt is in flight", || async {
        held.in_flight() == 1
    })
    .await;
    shutdown.cancel();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut a)
            .await
            .is_err(),
        "the relay waits for its attempt"
    );
    held.release();
    stop(a, "a's relay").await;
    let row = delivery_to(&app, id, "a").await;
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 1));

    // b: the stop waits at most for the attempt's timeout; the delivery is
    // then due again, and delivered by the next relay.
    let shutdown = CancellationToken::new();
    let b = tokio::spawn(app.relay("b").run(shutdown.clone()));
    wait_until("b's attempt is in flight", || async {
        silent.in_flight() == 1
    })
    .await;
    let stopping = Instant::now();
    shutdown.cancel();
    stop(b, "b's relay").await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    let row = delivery_to(&app, id, "b").await;
    assert_eq!(row.status, "failed");
    assert!(row.last_error.unwrap().contains("timed out"));
    app.clock.advance_ms(10_000);
    assert_eq!(
        app.relay("b").drain().await.unwrap(),
        [DeliveryOutcome::Delivered]
    );

    // c: nothing records the crashed attempt; its lease runs out and the
    // delivery goes again, under the same delivery id.
    let c = tokio::spawn(app.relay("c").run(CancellationToken::new()));
    wait_until("c's attempt is in flight", || async {
        crashed.in_flight() == 1
    })
    .await;
    c.abort();
    let _ = c.await;
    assert_eq!(delivery_to(&app, id, "c").await.status, "delivering");
    assert!(
        app.relay("c").drain().await.unwrap().is_empty(),
        "not while the lease runs"
    );
    app.clock.advance_ms(31_000);
    assert_eq!(
        app.relay("c").drain().await.unwrap(),
        [DeliveryOutcome::Delivered]
    );
    let row = delivery_to(&app, id, "c").await;
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 2));
    let ids: Vec<String> = crashed
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert_eq!(ids, [format!("hl_{id}"), format!("hl_{id}")]);
}

crate::backend_tests!(
    a_hanging_receiver_holds_up_no_other_destination,
    concurrency_two_keeps_two_requests_in_flight_and_never_more,
    rate_per_sec_spends_one_token_per_interval_of_the_clock,
    rate_per_sec_spreads_attempts_over_real_time,
    a_paused_destination_with_ten_thousand_waiting_holds_up_no_other,
    a_paused_relay_waits_on_no_write_to_the_deliveries,
    a_relay_stopped_mid_attempt_loses_nothing,
);
