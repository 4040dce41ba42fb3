//! Per-object order (SPEC §4): one event of an object at a time, in arrival
//! order, whatever else happens — such as a replay of an older event while a
//! newer one is in flight.
//!
//! The upstream here holds its answers until the test lets them go and
//! counts the fetches in flight per object, so "two fetches of one object
//! at once" is observed, not inferred from timings.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hookledger::dedup::Strategy;
use hookledger::store::{NewEvent, Store};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_replayed_older_event_waits_while_a_newer_event_of_its_object_is_fetching,
    a_replayed_event_waits_for_a_live_lease_but_not_for_an_expired_one,
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
