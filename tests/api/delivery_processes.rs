//! Deliveries across real processes (SPEC §7, Order and Guarantee): the
//! built `hookledger` binary, two processes on one database delivering to a
//! receiver of the test's own ([`receiver`]), and one SIGKILLed in the
//! middle of its attempts. What only holds across process boundaries is
//! asserted here: one object's deliveries go one at a time, in the order of
//! their rows, whichever process sends them; a lease is renewed while an
//! attempt is in flight, so a slow receiver never gets a second copy; a
//! replay's delivery queues behind the ones already there; and a crash loses
//! no delivery and re-sends only what was in flight, under the same
//! `webhook-id`.
//!
//! Waiting is on conditions with a deadline (`wait_until`): real processes
//! run on the real clock.

mod receiver;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;
use receiver::{Receiver, Seen};

backend_tests!(
    two_processes_deliver_each_objects_events_one_at_a_time_in_order_renewing_leases,
    a_replay_is_delivered_behind_its_objects_deliveries_created_before_it,
    a_process_killed_mid_delivery_loses_none_and_resends_only_what_was_in_flight,
);

/// Short, so a held attempt outlives several renewals (one every third of it).
const LEASE_SECS: u64 = 2;
/// Longer than a lease: without renewal, another relay would take it over.
const LONG_HOLD: Duration = Duration::from_millis(2_500);
/// The variable naming a process in its deliveries' `X-Relay` header.
const PROCESS_VAR: &str = "HOOKLEDGER_TEST_PROCESS";

/// A Stripe-preset source delivering everything to one HTTP destination.
fn delivery_toml(receiver: &str, concurrency: usize) -> String {
    format!(
        r#"
[sources.paid]
preset = "stripe"
secret = "whsec_test_paid"
deliver = [{{ to = "app" }}]

[destinations.app]
kind = "http"
url = "{receiver}/hooks"
sign = "off"
timeout_secs = 30
concurrency = {concurrency}
headers = {{ "X-Relay" = "${{{PROCESS_VAR}}}" }}
"#
    )
}

/// Database, receiver and config file shared by the processes of one test.
struct Rig {
    // Kept for the test's length: dropping it drops the database.
    _db: TestDb,
    receiver: Receiver,
    config_path: PathBuf,
    config: hookledger::config::Config,
    store: hookledger::store::Store,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new(backend: Backend, receiver: Receiver, concurrency: usize) -> Rig {
        let db = TestDb::new(backend).await;
        // No source of these tests fetches: the upstream is never called.
        let text =
            test_config_text(&db.url, "http://127.0.0.1:9", &TestOptions::default()).replace(
                "lease_secs = 30\n",
                &format!("lease_secs = {LEASE_SECS}\npoll_interval_ms = 20\n"),
            ) + &delivery_toml(&receiver.url, concurrency);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("hookledger.toml");
        std::fs::write(&config_path, &text).unwrap();
        let env: BTreeMap<String, String> =
            BTreeMap::from([(PROCESS_VAR.to_string(), "test".to_string())]);
        let config = hookledger::config::load_str(&text, &env).expect("valid config");
        let store = hookledger::store::Store::open(&db.url).await.unwrap();
        Rig {
            _db: db,
            receiver,
            config_path,
            config,
            store,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Starts a process whose deliveries say `X-Relay: <name>`.
    async fn start(&self, name: &str) -> Binary {
        let process = Binary::start(&self.config_path, &[(PROCESS_VAR, name)], None);
        process.wait_ready(&self.client).await;
        process
    }

    /// Posts a signed Stripe `invoice.paid` for `invoice` to one process;
    /// returns its ledger id, asserted first-seen.
    async fn invoice(&self, process: &Binary, event_id: &str, invoice: &str) -> i64 {
        let now = chrono::Utc::now().timestamp();
        let body = stripe_event(
            event_id,
            "invoice.paid",
            now,
            json!({"id": invoice, "object": "invoice"}),
        );
        let bytes = serde_json::to_vec(&body).unwrap();
        let source = hookledger::sources::Source::new(self.config.sources["paid"].clone());
        let mut headers: Vec<(String, String)> =
            vec![("Content-Type".into(), "application/json".into())];
        let signature = source.sign(&headers, &bytes, now);
        headers.extend(signature);
        let mut request = self
            .client
            .post(format!("{}/webhooks/paid", process.address))
            .body(bytes);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let answer = read(request.send().await.expect("delivering a webhook")).await;
        assert_eq!(answer.status, 202, "{event_id}: {:?}", answer.body);
        answer.id()
    }

    /// The delivery rows of `events`, each event's oldest first.
    async fn rows(&self, events: &[i64]) -> Vec<hookledger::store::deliveries::DeliveryRow> {
        let mut rows = Vec::new();
        for id in events {
            rows.extend(self.store.deliveries_of_event(*id).await.unwrap());
        }
        rows
    }

    /// Waits until each of `events` has a delivery row and all their rows
    /// are `delivered` — or the receiver saw two requests for one
    /// object at once, which the caller's assertions then report.
    async fn wait_delivered(&self, events: &[i64]) {
        wait_until("every delivery is delivered", || async {
            if !self.receiver.violations().is_empty() {
                return true;
            }
            for id in events {
                let rows = self.store.deliveries_of_event(*id).await.unwrap();
                if rows.is_empty() || rows.iter().any(|r| r.status != "delivered") {
                    return false;
                }
            }
            true
        })
        .await;
    }
}

/// A few milliseconds, random: the processes' relays race differently
/// every time.
fn jitter() -> Duration {
    Duration::from_millis(rand::random::<u64>() % 15 + 1)
}

fn provider_id(envelope: &Value) -> &str {
    envelope["data"]["provider_event_id"]
        .as_str()
        .unwrap_or_default()
}

/// Each object's requests, in the order the receiver took them.
fn by_object(seen: &[Seen]) -> BTreeMap<String, Vec<&Seen>> {
    let mut objects: BTreeMap<String, Vec<&Seen>> = BTreeMap::new();
    for s in seen {
        let object = s.object.clone().expect("every event here has an object");
        objects.entry(object).or_default().push(s);
    }
    for requests in objects.values_mut() {
        requests.sort_by_key(|s| s.started);
    }
    objects
}

/// Issue 12 item 5: 50 events for 5 objects, posted to two processes
/// alternately, each with one delivery slot (`concurrency = 1`), so the two
/// relays race for every claim. The receiver sees every event once, one
/// object at a time, in ledger order. The first three deliveries of `in_0`
/// are held longer than a lease: none is sent again (its relay renewed the
/// lease while it was in flight), and while the first one holds its
/// process's only slot, the other process delivers the other objects — so
/// both processes took part, whichever way the races went.
async fn two_processes_deliver_each_objects_events_one_at_a_time_in_order_renewing_leases(
    backend: Backend,
) {
    // One object's, so the holds come one after another and never take
    // both processes' slots at once.
    const LONG: [&str; 3] = ["evt_0", "evt_5", "evt_10"];
    let receiver = Receiver::start(|envelope| {
        if LONG.contains(&provider_id(envelope)) {
            LONG_HOLD
        } else {
            jitter()
        }
    })
    .await;
    let rig = Rig::new(backend, receiver, 1).await;
    let a = rig.start("a").await;
    let b = rig.start("b").await;
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut events = Vec::new();
    for n in 0..50 {
        let object = format!("in_{}", n % 5);
        let process = if n % 2 == 0 { &a } else { &b };
        let id = rig.invoice(process, &format!("evt_{n}"), &object).await;
        expected.entry(object).or_default().push(id);
        events.push(id);
    }
    rig.wait_delivered(&events).await;

    let receiver = &rig.receiver;
    assert_eq!(receiver.violations(), Vec::<String>::new());
    let seen = receiver.seen();
    let ids: Vec<&str> = seen.iter().map(|s| s.webhook_id.as_str()).collect();
    assert_eq!(seen.len(), 50, "every event exactly once: {ids:?}");
    let distinct: BTreeSet<&str> = ids.iter().copied().collect();
    let wanted: Vec<String> = events.iter().map(|id| format!("hl_{id}")).collect();
    assert_eq!(
        distinct,
        wanted.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    assert!(
        seen.iter().all(|s| s.attempt == "1"),
        "no attempt needed a retry: {seen:?}"
    );
    for (object, requests) in by_object(&seen) {
        let order: Vec<i64> = requests.iter().map(|s| s.ledger_id).collect();
        assert_eq!(
            order, expected[&object],
            "{object}: delivered in ledger order"
        );
        assert_one_at_a_time(&requests, &object);
    }
    let long: Vec<&Seen> = seen
        .iter()
        .filter(|s| LONG.contains(&s.provider_event_id.as_str()))
        .collect();
    assert_eq!(long.len(), 3);
    let first = long.iter().min_by_key(|s| s.started).unwrap();
    let meanwhile: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.started > first.started && s.started < first.ended.unwrap())
        .collect();
    assert!(
        !meanwhile.is_empty(),
        "other objects were delivered while {} was held",
        first.webhook_id
    );
    assert!(
        meanwhile.iter().all(|s| s.relay != first.relay),
        "only the other process had a free slot: {meanwhile:?}"
    );
    for relay in ["a", "b"] {
        let mut sent: Vec<&Seen> = seen.iter().filter(|s| s.relay == relay).collect();
        sent.sort_by_key(|s| s.started);
        assert_one_at_a_time(&sent, &format!("process {relay} (concurrency 1)"));
    }
    // The relays' own record agrees: one attempt each.
    for row in rig.rows(&events).await {
        assert_eq!(row.attempts, 1, "{row:?}");
    }
}

/// `requests`, in the order they started, never overlapped.
fn assert_one_at_a_time(requests: &[&Seen], what: &str) {
    for pair in requests.windows(2) {
        assert!(
            pair[1].started > pair[0].ended.unwrap(),
            "{what}: {} started before {} was answered",
            pair[1].webhook_id,
            pair[0].webhook_id
        );
    }
}

/// A replay's delivery queues behind the rows already there (SPEC §7,
/// Order): the oldest event of `in_0` is replayed while its first delivery
/// is held in flight, seven more wait behind it, and new events of `in_0`
/// keep arriving at both processes. The replay (`hl_<id>-r1`) is received
/// after every delivery of the object created before it, never alongside
/// one, and before those created after it. With `concurrency = 8` one claim
/// could take several of the object's waiting rows at once: the order holds
/// within a claim as well as across the processes.
async fn a_replay_is_delivered_behind_its_objects_deliveries_created_before_it(backend: Backend) {
    let receiver = Receiver::start(|_| jitter()).await;
    receiver.hold();
    let rig = Rig::new(backend, receiver, 8).await;
    let a = rig.start("a").await;
    let b = rig.start("b").await;
    let process = |n: usize| if n.is_multiple_of(2) { &a } else { &b };
    let mut events = Vec::new();
    for n in 0..8 {
        events.push(rig.invoice(process(n), &format!("evt_{n}"), "in_0").await);
    }
    let oldest = events[0];
    wait_until(
        "every event is done and the first delivery in flight",
        || async {
            assert_eq!(rig.receiver.violations(), Vec::<String>::new());
            rig.rows(&events).await.len() == 8 && rig.receiver.in_flight() == 1
        },
    )
    .await;
    let answer = read(
        rig.client
            .post(format!("{}/admin/events/{oldest}/replay", a.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    for n in 8..12 {
        events.push(rig.invoice(process(n), &format!("evt_{n}"), "in_0").await);
    }
    // Newer events of the object wait for the replayed one (SPEC §4), so
    // the replay's row comes right after the first eight.
    wait_until("the replay's delivery is written", || async {
        rig.store.deliveries_of_event(oldest).await.unwrap().len() == 2
    })
    .await;
    let statuses: Vec<(String, String)> = rig
        .rows(&events[..8])
        .await
        .iter()
        .map(|r| (r.delivery_id(), r.status.clone()))
        .collect();
    let mut expected = vec![
        (format!("hl_{oldest}"), "delivering".to_string()),
        (format!("hl_{oldest}-r1"), "pending".to_string()),
    ];
    expected.extend(
        events[1..8]
            .iter()
            .map(|id| (format!("hl_{id}"), "pending".into())),
    );
    assert_eq!(
        statuses, expected,
        "the replay's delivery is created behind one in flight and seven waiting"
    );
    rig.receiver.release();
    for n in 12..16 {
        events.push(rig.invoice(process(n), &format!("evt_{n}"), "in_0").await);
    }
    rig.wait_delivered(&events).await;

    assert_eq!(rig.receiver.violations(), Vec::<String>::new());
    let rows = rig.rows(&events).await;
    assert_eq!(rows.len(), 17, "one delivery per completion: {rows:?}");
    let row_of: HashMap<String, i64> = rows.iter().map(|r| (r.delivery_id(), r.id)).collect();
    let replay_id = format!("hl_{oldest}-r1");
    let replay_row = row_of[&replay_id];
    let created_before: BTreeSet<i64> = events[..8]
        .iter()
        .map(|id| row_of[&format!("hl_{id}")])
        .collect();
    assert!(created_before.iter().all(|row| *row < replay_row));
    assert!(events[8..]
        .iter()
        .all(|id| row_of[&format!("hl_{id}")] > replay_row));
    let seen = rig.receiver.seen();
    assert_eq!(seen.len(), 17, "each delivery once: {seen:?}");
    let in_0 = &by_object(&seen)["in_0"];
    let order: Vec<i64> = in_0.iter().map(|s| row_of[&s.webhook_id]).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "in_0 delivered in row order: {in_0:?}");
    assert_one_at_a_time(in_0, "in_0");
    let replay = in_0.iter().find(|s| s.webhook_id == replay_id).unwrap();
    assert_eq!((replay.ledger_id, replay.replay), (oldest, 1));
    for earlier in in_0
        .iter()
        .filter(|s| created_before.contains(&row_of[&s.webhook_id]))
    {
        assert!(
            replay.started > earlier.ended.unwrap(),
            "the replay started before {} (created before it) was answered",
            earlier.webhook_id
        );
    }
}

/// Issue 12 item 5: SIGKILL in the middle of deliveries. The receiver holds
/// every request unanswered; with `concurrency = 4`, four of ten are in
/// flight and six wait when the process is killed. A new process on the
/// same database sends every one of the ten after the restart, exactly
/// once, and the only copies are of the four attempts that were in flight,
/// under the same `webhook-id`.
async fn a_process_killed_mid_delivery_loses_none_and_resends_only_what_was_in_flight(
    backend: Backend,
) {
    let receiver = Receiver::start(|_| Duration::ZERO).await;
    receiver.hold();
    let rig = Rig::new(backend, receiver, 4).await;
    let mut doomed = rig.start("doomed").await;
    let mut events = Vec::new();
    for n in 0..10 {
        let id = rig
            .invoice(&doomed, &format!("evt_{n}"), &format!("in_{n}"))
            .await;
        events.push(id);
    }
    wait_until("four deliveries are in flight", || async {
        assert_eq!(rig.receiver.violations(), Vec::<String>::new());
        rig.receiver.in_flight() == 4
    })
    .await;
    doomed.kill();
    // Whatever the dead process had sent has been read once its
    // connections are closed.
    wait_until("the dead process's connections are closed", || async {
        rig.receiver.open_connections() == 0
    })
    .await;
    let before = rig.receiver.seen();
    assert_eq!(before.len(), 4, "in flight at the kill: {before:?}");
    let in_flight: BTreeSet<i64> = before.iter().map(|s| s.ledger_id).collect();
    assert_eq!(in_flight.len(), 4, "four different events: {before:?}");
    assert!(before.iter().all(|s| s.attempt == "1"), "{before:?}");
    rig.receiver.release();

    let _survivor = rig.start("restarted").await;
    rig.wait_delivered(&events).await;
    assert_eq!(rig.receiver.violations(), Vec::<String>::new());
    let seen = rig.receiver.seen();
    let after = &seen[before.len()..];
    for id in &events {
        let copies: Vec<&Seen> = seen.iter().filter(|s| s.ledger_id == *id).collect();
        let after_restart = after.iter().filter(|s| s.ledger_id == *id).count();
        assert_eq!(after_restart, 1, "event {id} after the restart: {seen:?}");
        let expected = if in_flight.contains(id) { 2 } else { 1 };
        assert_eq!(
            copies.len(),
            expected,
            "event {id}: a second copy only of an attempt in flight at the kill"
        );
        let webhook_id = format!("hl_{id}");
        assert!(
            copies.iter().all(|s| s.webhook_id == webhook_id),
            "every copy of event {id} is {webhook_id}: {copies:?}"
        );
        let attempts: Vec<&str> = copies.iter().map(|s| s.attempt.as_str()).collect();
        let expected: &[&str] = if in_flight.contains(id) {
            &["1", "2"]
        } else {
            &["1"]
        };
        assert_eq!(attempts, expected, "event {id}");
        assert_eq!(copies.last().unwrap().relay, "restarted");
    }
    for row in rig.rows(&events).await {
        assert_eq!(row.status, "delivered", "{row:?}");
        let attempts = if in_flight.contains(&row.event_id) {
            2
        } else {
            1
        };
        assert_eq!(row.attempts, attempts, "{row:?}");
    }
}
