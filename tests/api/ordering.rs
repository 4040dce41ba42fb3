//! Per-object order (SPEC §4): one event of an object at a time, in arrival
//! order, whatever else happens — a replay of an older event while a newer
//! one is in flight, a transaction that drew a smaller ledger id and commits
//! late (PostgreSQL), several deliveries of one object in one group commit.
//!
//! The upstream here holds its answers until the test lets them go and
//! counts the fetches in flight per object, so "two fetches of one object
//! at once" is observed, not inferred from timings.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
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
    a_replayed_older_event_waits_while_a_newer_event_of_its_object_is_fetching,
    a_replayed_event_waits_for_a_live_lease_but_not_for_an_expired_one,
    deliveries_of_one_group_commit_get_ledger_ids_in_arrival_order,
    concurrent_batches_of_every_kind_on_shared_objects_all_commit,
);

/// A source whose fetch URL names the object and the event.
const THINGS_SOURCE: &str = r#"
[sources.things]
preset = "generic"
verify = "off"
event_id = { header = "X-Request-Id" }
object_type = { value = "thing" }
object_id = { pointer = "/thing/id" }
fetch.url = "{upstream}/things/{object_id}?event={event_id}"
fetch.timeout_secs = 30
"#;

/// The longest the upstream holds an answer, so a failed test cannot leave
/// its threads behind for long.
const HOLD_LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct UpstreamState {
    holding: bool,
    in_flight: HashMap<String, usize>,
    most_in_flight: HashMap<String, usize>,
    /// `object/event` of every fetch, in the order they started.
    started: Vec<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<UpstreamState>,
    changed: Condvar,
}

/// An HTTP upstream (a thread per connection) that answers
/// `GET /things/{object}?event={event}` with a small JSON document, and
/// while `hold` is on, only once it is released (or dropped).
struct GatedUpstream {
    shared: Arc<Shared>,
    url: String,
}

impl GatedUpstream {
    fn start() -> GatedUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared: Arc<Shared> = Arc::default();
        let serving = shared.clone();
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(connection) = connection else { continue };
                let serving = serving.clone();
                std::thread::spawn(move || serving.serve(connection));
            }
        });
        GatedUpstream { shared, url }
    }

    fn hold(&self, holding: bool) {
        self.shared.state.lock().unwrap().holding = holding;
        self.shared.changed.notify_all();
    }

    fn in_flight(&self, object: &str) -> usize {
        let state = self.shared.state.lock().unwrap();
        state.in_flight.get(object).copied().unwrap_or(0)
    }

    fn most_in_flight(&self, object: &str) -> usize {
        let state = self.shared.state.lock().unwrap();
        state.most_in_flight.get(object).copied().unwrap_or(0)
    }

    fn started(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().started.clone()
    }
}

impl Drop for GatedUpstream {
    fn drop(&mut self) {
        // A failed test lets its held answers go.
        self.hold(false);
    }
}

impl Shared {
    fn serve(&self, mut connection: TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match connection.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let target = head.split(' ').nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let object = path.rsplit('/').next().unwrap_or_default().to_string();
        let event = query.strip_prefix("event=").unwrap_or_default().to_string();
        let mut state = self.state.lock().unwrap();
        let n = {
            let n = state.in_flight.entry(object.clone()).or_default();
            *n += 1;
            *n
        };
        let most = state.most_in_flight.entry(object.clone()).or_default();
        *most = (*most).max(n);
        state.started.push(format!("{object}/{event}"));
        let deadline = Instant::now() + HOLD_LIMIT;
        while state.holding && Instant::now() < deadline {
            state = self.changed.wait_timeout(state, HOLD_LIMIT).unwrap().0;
        }
        // Out of flight before the answer leaves, so the worker can never
        // finish an event that still counts here.
        *state.in_flight.get_mut(&object).unwrap() -= 1;
        drop(state);
        let body = json!({ "id": object, "fetched_for": event }).to_string();
        let _ = connection.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

async fn deliver_thing(app: &TestApp, event_id: &str, object: &str) -> i64 {
    let body = serde_json::to_vec(&json!({ "thing": { "id": object } })).unwrap();
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("X-Request-Id".to_string(), event_id.to_string()),
    ];
    let answer = app.post_raw("/webhooks/things", &headers, body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.id()
}

/// Event 1 of an object is done, event 2 is fetching; replaying event 1
/// must not start a second fetch of that object beside the first: the
/// replayed event waits until event 2 is finished, then runs.
async fn a_replayed_older_event_waits_while_a_newer_event_of_its_object_is_fetching(
    backend: Backend,
) {
    let upstream = GatedUpstream::start();
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: THINGS_SOURCE.replace("{upstream}", &upstream.url),
            ..Default::default()
        },
    )
    .await;
    let older = deliver_thing(&app, "e1", "x").await;
    assert_eq!(app.drain().await, 1);
    let newer = deliver_thing(&app, "e2", "x").await;

    upstream.hold(true);
    let fetching = tokio::spawn({
        let worker = app.worker.clone();
        async move { worker.run_once(10).await }
    });
    wait_until("the newer event's fetch is in flight", || async {
        upstream.in_flight("x") == 1
    })
    .await;
    let replay = app
        .admin_post(&format!("/admin/events/{older}/replay"))
        .await;
    assert_eq!(replay.status, 202, "{:?}", replay.body);

    let beside = tokio::spawn({
        let worker = app.worker.clone();
        async move { worker.run_once(10).await }
    });
    wait_until("a second claim returned or started a fetch", || async {
        beside.is_finished() || upstream.most_in_flight("x") > 1
    })
    .await;
    assert_eq!(
        upstream.most_in_flight("x"),
        1,
        "the replayed event {older} was fetched beside event {newer} of the same object: {:?}",
        upstream.started()
    );
    assert_eq!(beside.await.unwrap().unwrap(), 0, "nothing was free to run");

    upstream.hold(false);
    assert_eq!(fetching.await.unwrap().unwrap(), 1);
    assert_eq!(
        app.drain().await,
        1,
        "the replayed event runs once it is free"
    );
    assert_eq!(upstream.started(), vec!["x/e1", "x/e2", "x/e1"]);
    assert_eq!(upstream.most_in_flight("x"), 1);
    for id in [older, newer] {
        assert_eq!(
            app.store.event_status(id).await.unwrap().as_deref(),
            Some("done")
        );
    }
}

/// The claim, directly: a replayed event waits while a newer event of its
/// object holds a live lease; once that lease has run out (its worker is
/// gone) the replayed one, being the earlier, runs first and the abandoned
/// one after it — neither waits for the other forever.
async fn a_replayed_event_waits_for_a_live_lease_but_not_for_an_expired_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let mut ids = Vec::new();
    for key in ["id:one", "id:two"] {
        let outcome = store
            .record(&new_event(key, Strategy::EventId, "x", 1))
            .await
            .unwrap();
        ids.push(outcome.id());
    }
    let claim = |at: i64| {
        let store = store.clone();
        async move { store.claim(at, 1_000, 10).await.unwrap() }
    };
    let one = claim(10).await;
    store.complete(&one[0], None, 20).await.unwrap();
    let two = claim(30).await;
    assert_eq!(two.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[1]]);
    assert!(store.replay(ids[0], 40).await.unwrap());

    assert!(
        claim(50).await.is_empty(),
        "the replayed event waits while the newer one's lease is live"
    );
    let after_expiry = claim(1_100).await;
    assert_eq!(
        after_expiry.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[0]],
        "the earlier event runs first once the lease ran out"
    );
    store.complete(&after_expiry[0], None, 1_200).await.unwrap();
    let retaken = claim(1_300).await;
    assert_eq!(
        retaken.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    store.complete(&retaken[0], None, 1_400).await.unwrap();
    assert!(
        store.complete(&two[0], None, 1_500).await.is_err(),
        "the abandoned lease completes nothing"
    );
}

fn new_event(key: &str, strategy: Strategy, object: &str, at: i64) -> NewEvent {
    NewEvent {
        source: "orders".into(),
        dedup_key: key.into(),
        previous_key: None,
        strategy,
        ignored: false,
        provider_event_id: key.strip_prefix("id:").map(str::to_string),
        action: None,
        object_type: Some("thing".into()),
        object_id: Some(object.into()),
        event_time_ms: at,
        payload: json!({ "key": key }).to_string(),
        body_hash: format!("hash of {key}"),
        received_at_ms: at,
    }
}

/// Polls a future once: for a delivery, that hands it to the ledger writer.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
}

/// Three deliveries of one object handed to the ledger writer in a known
/// order, gathered into one batch by a linger that waits for all three:
/// their ids follow that order (not their keys' order, nor which of them
/// took the multi-row path), and at equal event times the last arrival's
/// data is what the object's row ends with.
async fn deliveries_of_one_group_commit_get_ledger_ids_in_arrival_order(backend: Backend) {
    const ROWS: usize = 3;
    let linger = Duration::from_secs(60);
    let app = spawn_app_with(
        backend,
        TestOptions {
            server_toml: format!(
                "batch_max_rows = {ROWS}\nbatch_linger_us = {}",
                linger.as_micros()
            ),
            ..Default::default()
        },
    )
    .await;
    // SQLite: the app's settings are the ledger thread's (set first);
    // PostgreSQL: this writer task gathers with the same ones.
    let (ingestor, _writers) = Ingestor::start(
        app.store.clone(),
        BatchSettings {
            max_rows: ROWS,
            linger,
            writers: 1,
            queue: 16,
        },
        Arc::new(Metrics::new()),
    );
    let at = app.clock.now_ms();
    let arrivals = [
        new_event("id:zz-first", Strategy::EventId, "x", at),
        new_event("co:changed:x", Strategy::Coalesce, "x", at),
        new_event("id:aa-third", Strategy::EventId, "x", at),
    ];
    let mut handed = Vec::new();
    for (n, event) in arrivals.iter().cloned().enumerate() {
        let mut recording = Box::pin(ingestor.record(event));
        let polled = poll_once(&mut recording).await;
        if n + 1 < ROWS {
            assert!(polled.is_pending(), "the batch waits for all {ROWS}");
        }
        handed.push(recording);
    }
    let mut ids = Vec::new();
    for recording in handed {
        match recording.await.unwrap() {
            RecordOutcome::Accepted { id } => ids.push(id),
            other => panic!("expected a new event, got {other:?}"),
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        ids, sorted,
        "ledger ids of zz-first, co:changed:x, aa-third (in arrival order)"
    );

    assert_eq!(app.drain().await, ROWS);
    let row = app
        .store
        .domain_object("orders", "thing", "x")
        .await
        .unwrap()
        .expect("the object's row");
    assert_eq!(row.last_event_id, ids[2]);
    let data: serde_json::Value = serde_json::from_str(&row.data).unwrap();
    assert_eq!(data, json!({ "key": "id:aa-third" }));
}

/// Writers recording at once, each batch mixing the multi-row path with the
/// one-at-a-time one (coalesce, payload hash) on the same few objects, and
/// event ids shared across writers: every batch commits (object locks, row
/// locks and payload-hash locks are taken in one order, so no writer waits
/// on another in a circle), and each shared event id is accepted once.
async fn concurrent_batches_of_every_kind_on_shared_objects_all_commit(backend: Backend) {
    const WRITERS: usize = 6;
    const ROUNDS: usize = 8;
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let objects = ["a", "b", "c"];
    let writers = (0..WRITERS).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for round in 0..ROUNDS {
                let object = |n: usize| objects[(w + round + n) % objects.len()];
                let mut hashed = new_event(
                    &format!("hash:h{}:1", round % 2),
                    Strategy::PayloadHash,
                    object(2),
                    1,
                );
                hashed.previous_key = Some(format!("hash:h{}:0", round % 2));
                let mut batch = vec![
                    new_event(
                        &format!("id:shared-{round}"),
                        Strategy::EventId,
                        object(0),
                        1,
                    ),
                    new_event(
                        &format!("co:changed:{}", object(1)),
                        Strategy::Coalesce,
                        object(1),
                        1,
                    ),
                    hashed,
                    new_event(
                        &format!("id:own-{w}-{round}"),
                        Strategy::EventId,
                        object(3),
                        1,
                    ),
                    new_event(
                        &format!("id:shared-{round}"),
                        Strategy::EventId,
                        object(0),
                        1,
                    ),
                ];
                if w % 2 == 1 {
                    batch.reverse();
                }
                let outcomes = store.record_batch(&batch).await.expect("the batch commits");
                for (event, outcome) in batch.iter().zip(outcomes) {
                    if let RecordOutcome::Accepted { .. } = outcome {
                        accepted.push(event.dedup_key.clone());
                    }
                }
            }
            accepted
        })
    });
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for writer in writers.collect::<Vec<_>>() {
        for key in writer.await.unwrap() {
            *accepted.entry(key).or_default() += 1;
        }
    }
    for round in 0..ROUNDS {
        assert_eq!(accepted.get(&format!("id:shared-{round}")), Some(&1));
        for w in 0..WRITERS {
            assert_eq!(accepted.get(&format!("id:own-{w}-{round}")), Some(&1));
        }
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL: a smaller id that commits late.

/// Runs `statement` on the store's pool; its first column as a number.
async fn count(store: &Store, statement: &str) -> i64 {
    let Store::Postgres(pg) = store else {
        unreachable!("PostgreSQL only")
    };
    sqlx::query_scalar(statement)
        .fetch_one(&pg.pool)
        .await
        .unwrap()
}

const WAITING_ON_A_LOCK: &str = "SELECT COUNT(*) FROM pg_stat_activity \
    WHERE datname = current_database() AND wait_event_type = 'Lock'";

/// A writer records `stalled` (an event of object x first, in key order,
/// then a key that another connection holds uncommitted, so the writer's
/// transaction stays open with x's id drawn). Meanwhile a later delivery of
/// x is recorded: it must wait until the stalled transaction has committed,
/// so no claim can see x's later event while the earlier one is invisible,
/// and its id comes after the earlier one's.
async fn a_later_event_waits_for_an_earlier_uncommitted_one(
    stalled: Vec<NewEvent>,
    held: NewEvent,
) {
    let db = TestDb::new(Backend::Postgres).await;
    let store = Store::open(&db.url).await.unwrap();
    let Store::Postgres(pg) = &store else {
        unreachable!("a PostgreSQL store")
    };
    let mut other = pg.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (source, dedup_key, strategy, status, object_type, object_id, \
             event_time, payload, body_hash, received_at, next_attempt_at) \
         VALUES ($1, $2, $3, 'pending', $4, $5, 1, '{}', 'h', 1, 1)",
    )
    .bind(&held.source)
    .bind(&held.dedup_key)
    .bind(held.strategy.as_str())
    .bind(&held.object_type)
    .bind(&held.object_id)
    .execute(&mut *other)
    .await
    .unwrap();

    let earlier = tokio::spawn({
        let store = store.clone();
        async move { store.record_batch(&stalled).await }
    });
    wait_until("the first writer waits on the uncommitted key", || async {
        count(&store, WAITING_ON_A_LOCK).await == 1
    })
    .await;
    let later = tokio::spawn({
        let store = store.clone();
        async move {
            let later = new_event("id:later", Strategy::EventId, "x", 2);
            store.record_batch(&[later]).await
        }
    });
    wait_until("the later delivery is recorded or waits", || async {
        later.is_finished() || count(&store, WAITING_ON_A_LOCK).await == 2
    })
    .await;
    let claimed = store.claim(10, 1_000, 10).await.unwrap();
    assert!(
        claimed.is_empty(),
        "claimed {:?} while x's earlier event was not yet committed",
        claimed
            .iter()
            .map(|e| (e.id, &e.dedup_key))
            .collect::<Vec<_>>()
    );

    other.commit().await.unwrap();
    let earlier = earlier.await.unwrap().unwrap()[0].id();
    let later = later.await.unwrap().unwrap()[0].id();
    assert!(earlier < later, "ids {earlier} then {later}");
    let claimed: Vec<_> = store
        .claim(20, 1_000, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.object_id.as_deref() == Some("x"))
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, vec![earlier], "x's earliest event first, alone");
}

fn postgres_configured(test: &str) -> bool {
    let configured = postgres_url().is_some();
    if !configured {
        eprintln!("skipped: {test} on PostgreSQL (set {POSTGRES_ENV} to run it)");
    }
    configured
}

/// The multi-row statement of a group commit draws x's id, then waits on
/// another key of its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_event_waits_for_an_earlier_one_whose_batch_statement_is_stalled() {
    if !postgres_configured("a_later_event_waits_for_an_earlier_one_whose_batch_statement…") {
        return;
    }
    let stall = new_event("id:stall", Strategy::EventId, "w", 1);
    let stalled = vec![
        new_event("id:early", Strategy::EventId, "x", 1),
        stall.clone(),
    ];
    a_later_event_waits_for_an_earlier_uncommitted_one(stalled, stall).await;
}

/// The one-at-a-time path (coalesce keys here) inserts x's event, then
/// waits on another key in the same transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_event_waits_for_an_earlier_one_whose_transaction_is_stalled() {
    if !postgres_configured("a_later_event_waits_for_an_earlier_one_whose_transaction…") {
        return;
    }
    let stall = new_event("co:stall", Strategy::Coalesce, "w", 1);
    let stalled = vec![
        new_event("co:early", Strategy::Coalesce, "x", 1),
        stall.clone(),
    ];
    a_later_event_waits_for_an_earlier_uncommitted_one(stalled, stall).await;
}
