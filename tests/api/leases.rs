//! Leases (SPEC §4): a completion, failure or release is accepted only from
//! the holder of the current lease — also when several completions are
//! committed together — and a live worker keeps its lease for as long as its
//! fetch takes, while a worker that lost it stops and changes nothing.
//!
//! The store contracts and the completion batch are driven by hand with
//! explicit instants. The renewal claims need real time to pass: they run
//! the real binary (or an in-process worker) against an upstream that
//! answers slowly, and wait on conditions with a deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use hookledger::metrics::Metrics;
use hookledger::sources::Source;
use hookledger::store::queue::{ClaimedEvent, DomainWrite, QueueError};
use hookledger::store::{NewEvent, RecordOutcome, Store};
use hookledger::worker::{Outcome, Worker};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_stale_and_a_current_completion_of_one_event_in_one_batch_complete_only_the_current,
    a_lost_lease_completed_in_the_same_batch_as_the_new_holder_is_not_counted_done,
    a_renewed_lease_outlasts_its_first_expiry_and_only_its_holder_can_renew_it,
    a_fetch_slower_than_the_lease_is_kept_by_its_live_worker_and_fetched_once,
    a_worker_whose_lease_is_taken_over_mid_fetch_stops_and_writes_nothing,
);

async fn store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    (store, db)
}

/// Records one first-seen event of object `object` at `at`; returns its id.
async fn record(store: &Store, key: &str, object: &str, at: i64) -> i64 {
    let event = NewEvent {
        source: "s".into(),
        dedup_key: format!("id:{key}"),
        previous_key: None,
        strategy: hookledger::dedup::Strategy::EventId,
        ignored: false,
        provider_event_id: Some(key.into()),
        action: None,
        object_type: Some("thing".into()),
        object_id: Some(object.into()),
        event_time_ms: at,
        payload: "{}".into(),
        body_hash: "h".into(),
        received_at_ms: at,
    };
    match store.record(&event).await.unwrap() {
        RecordOutcome::Accepted { id } => id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

/// Claims exactly one event at `now_ms` with a lease of `lease_ms`.
async fn claim_one(store: &Store, now_ms: i64, lease_ms: i64) -> ClaimedEvent {
    let mut claimed = store.claim(now_ms, lease_ms, 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "one event claimable at {now_ms}");
    claimed.remove(0)
}

fn write(data: &str) -> DomainWrite {
    DomainWrite {
        data: format!("{{\"by\":\"{data}\"}}"),
    }
}

async fn data_of(store: &Store, object: &str) -> Option<(Value, i64)> {
    store
        .domain_object("s", "thing", object)
        .await
        .unwrap()
        .map(|o| (serde_json::from_str(&o.data).unwrap(), o.last_event_id))
}

/// Issue 11, item 4, at the store: a worker that lost its lease and the new
/// holder complete the same event in one batch — in either order — and the
/// same claim twice: only the current holder's completion takes effect,
/// once, and only its write reaches the domain row.
async fn a_stale_and_a_current_completion_of_one_event_in_one_batch_complete_only_the_current(
    backend: Backend,
) {
    let (store, _db) = store(backend).await;
    let e = record(&store, "e", "oe", 10).await;
    let f = record(&store, "f", "of", 10).await;
    let g = record(&store, "g", "og", 10).await;
    // Claimed with a short lease, which expires; a second claim takes the
    // events over with new tokens.
    let stale = store.claim(10, 100, 10).await.unwrap();
    assert_eq!(stale.iter().map(|c| c.id).collect::<Vec<_>>(), [e, f, g]);
    let fresh = store.claim(200, 10_000, 10).await.unwrap();
    assert_eq!(fresh.iter().map(|c| c.id).collect::<Vec<_>>(), [e, f, g]);
    let (stale_w, fresh_w) = (write("stale"), write("fresh"));
    let batch = [
        (&stale[0], Some(&stale_w)),
        (&fresh[0], Some(&fresh_w)),
        (&fresh[1], Some(&fresh_w)),
        (&stale[1], Some(&stale_w)),
        (&fresh[2], Some(&fresh_w)),
        (&fresh[2], Some(&fresh_w)),
    ];
    assert_eq!(
        store.complete_batch(&batch, 300).await.unwrap(),
        vec![false, true, true, false, true, false],
        "each completion is answered for its own (event, lease token): the stale \
         ones and the repeated claim are refused"
    );
    for (id, object) in [(e, "oe"), (f, "of"), (g, "og")] {
        assert_eq!(
            data_of(&store, object).await,
            Some((json!({"by": "fresh"}), id)),
            "the current holder's write is the row of {object}"
        );
        assert_eq!(
            store.event_status(id).await.unwrap().as_deref(),
            Some("done")
        );
    }
}

async fn metric(app: &TestApp, source: &str, result: &str) -> String {
    processed_metric(&app.get("/metrics").await.body, source, result)
}

/// One `hookledger_events_processed_total` series out of a /metrics text.
fn processed_metric(text: &Value, source: &str, result: &str) -> String {
    let series =
        format!("hookledger_events_processed_total{{source=\"{source}\",result=\"{result}\"}} ");
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()).map(str::to_string))
        .unwrap_or_else(|| "0".to_string())
}

async fn admin_event(app: &TestApp, id: i64) -> Value {
    let answer = app.admin_get(&format!("/admin/events/{id}")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// Issue 11, item 4, through the worker: the completion batch of the
/// background loop's group commit holds the lost lease's completion and the
/// new holder's. Only the new holder's is `done`, counted once in
/// `hookledger_events_processed_total`, and its data is the row.
async fn a_lost_lease_completed_in_the_same_batch_as_the_new_holder_is_not_counted_done(
    backend: Backend,
) {
    let app = spawn_app(backend).await; // lease_secs = 30
    let body = stripe_event(
        "evt_twice",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_twice", "object": "invoice"}),
    );
    let answer = app.deliver("stripe", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.id();
    let lost = claim_one(&app.store, app.clock.now_ms(), 30_000).await;
    // The first worker stalls past its lease; another takes the event over.
    app.clock.advance_ms(30_000);
    let holder = claim_one(&app.store, app.clock.now_ms(), 30_000).await;
    assert_eq!((lost.id, holder.id), (id, id));
    let (lost_w, holder_w) = (write("lost"), write("holder"));
    let outcomes = app
        .worker
        .complete_processed(&[(&lost, Some(&lost_w)), (&holder, Some(&holder_w))])
        .await
        .unwrap();
    assert_eq!(
        metric(&app, "stripe", "done").await,
        "1",
        "only the completion that took effect is counted done"
    );
    assert_eq!(outcomes, vec![Outcome::LeaseLost, Outcome::Done]);
    let event = admin_event(&app, id).await;
    assert_eq!(
        (event["status"].as_str(), event["attempts"].as_i64()),
        (Some("done"), Some(2))
    );
    let row = app
        .store
        .domain_object("stripe", "invoice", "in_twice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            serde_json::from_str::<Value>(&row.data).unwrap(),
            row.last_event_id
        ),
        (json!({"by": "holder"}), id)
    );
}

/// The renewal statement: lease-guarded like every change to a claimed
/// event, it moves the expiry on (never back), and only the current holder
/// of a `processing` event can renew it.
async fn a_renewed_lease_outlasts_its_first_expiry_and_only_its_holder_can_renew_it(
    backend: Backend,
) {
    let (store, _db) = store(backend).await;
    let id = record(&store, "r", "or", 0).await;
    let first = claim_one(&store, 0, 1_000).await;
    store.renew_lease(&first, 500, 2_000).await.unwrap();
    assert!(
        store.claim(1_999, 1_000, 1).await.unwrap().is_empty(),
        "a renewed lease is not expired at its first expiry (1 000) nor before its new one"
    );
    store.renew_lease(&first, 1_000, 1_500).await.unwrap();
    assert!(
        store.claim(1_999, 1_000, 1).await.unwrap().is_empty(),
        "a renewal never shortens a lease"
    );
    // Past the renewed expiry the worker counts as stalled: taken over.
    let second = claim_one(&store, 2_000, 1_000).await;
    assert_eq!(second.id, id);
    assert!(matches!(
        store.renew_lease(&first, 2_000, 9_000).await,
        Err(QueueError::LeaseLost(lost)) if lost == id
    ));
    assert!(
        store.claim(2_999, 1_000, 1).await.unwrap().is_empty(),
        "a refused renewal changes nothing"
    );
    store.renew_lease(&second, 2_500, 4_000).await.unwrap();
    store.complete(&second, None, 3_500).await.unwrap();
    assert!(
        matches!(
            store.renew_lease(&second, 3_600, 9_000).await,
            Err(QueueError::LeaseLost(_))
        ),
        "a finished event has no lease to renew"
    );
    assert_eq!(
        store.event_status(id).await.unwrap().as_deref(),
        Some("done")
    );
}

/// How long the slow upstream takes to answer: well over the lease.
const SLOW_FETCH: Duration = Duration::from_secs(5);

/// What the slow upstream saw of one object's fetches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Fetches {
    started: usize,
    in_flight: usize,
    most_in_flight: usize,
}

/// An upstream whose every answer takes [`SLOW_FETCH`], counting per object
/// the fetches started and how many were in flight at once. (wiremock
/// delays its answers after the responder has returned, so it cannot tell
/// when a fetch ends.)
#[derive(Default)]
struct SlowUpstream(Mutex<HashMap<String, Fetches>>);

impl SlowUpstream {
    fn seen(&self, object: &str) -> Fetches {
        self.0
            .lock()
            .unwrap()
            .get(object)
            .copied()
            .unwrap_or_default()
    }
}

/// Ends a fetch in the counts when its handler finishes or is dropped.
struct InFlight(web::Data<SlowUpstream>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(f) = (self.0).0.lock().unwrap().get_mut(&self.1) {
            f.in_flight -= 1;
        }
    }
}

async fn answer_slowly(
    object: web::Path<String>,
    upstream: web::Data<SlowUpstream>,
) -> HttpResponse {
    let object = object.into_inner();
    {
        let mut all = upstream.0.lock().unwrap();
        let f = all.entry(object.clone()).or_default();
        f.started += 1;
        f.in_flight += 1;
        f.most_in_flight = f.most_in_flight.max(f.in_flight);
    }
    let _in_flight = InFlight(upstream, object.clone());
    tokio::time::sleep(SLOW_FETCH).await;
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json!({ "id": object, "fetched": true }).to_string())
}

/// Starts the slow upstream on port 0: its base URL, its counts and the
/// handle that stops it.
fn start_slow_upstream() -> (
    String,
    web::Data<SlowUpstream>,
    actix_web::dev::ServerHandle,
) {
    let upstream = web::Data::new(SlowUpstream::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = upstream.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/things/{id}", web::get().to(answer_slowly))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), upstream, handle)
}

/// Issue 11, item 5, with the real binary: two workers, `lease_secs = 2` and
/// an upstream that takes 5 s. The worker fetching keeps renewing its lease,
/// so the idle second worker never takes the event over: one fetch (never
/// two in flight for the object), one attempt, one `done`.
async fn a_fetch_slower_than_the_lease_is_kept_by_its_live_worker_and_fetched_once(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let (upstream_url, upstream, upstream_handle) = start_slow_upstream();
    let text = test_config_text(&db.url, &upstream_url, &TestOptions::default())
        .replace("workers = 4\n", "workers = 2\n")
        .replace(
            "lease_secs = 30\n",
            "lease_secs = 2\npoll_interval_ms = 50\n",
        )
        + &format!(
            r#"
[sources.slow]
preset = "generic"
verify = "off"
event_id = {{ header = "X-Request-Id" }}
object_type = {{ value = "thing" }}
object_id = {{ pointer = "/thing/id" }}
fetch.url = "{upstream_url}/things/{{object_id}}"
fetch.timeout_secs = 10
"#
        );
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hookledger.toml");
    std::fs::write(&config_path, text).unwrap();
    let process = Binary::start(&config_path, &[], None);
    let client = reqwest::Client::new();
    process.wait_ready(&client).await;

    let answer = read(
        client
            .post(format!("{}/webhooks/slow", process.address))
            .header("Content-Type", "application/json")
            .header("X-Request-Id", "slow-1")
            .body(json!({"thing": {"id": "t1"}}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.id();
    let event = || async {
        read(
            client
                .get(format!("{}/admin/events/{id}", process.address))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await
        .body
    };
    // Done, or taken over by a second fetch: whichever comes first.
    wait_until("the event is done or fetched a second time", || async {
        upstream.seen("t1").started > 1 || event().await["status"] == "done"
    })
    .await;
    let seen = upstream.seen("t1");
    assert_eq!(seen.started, 1, "one fetch of the object: {seen:?}");
    assert_eq!(
        seen.most_in_flight, 1,
        "never two fetches at once: {seen:?}"
    );
    let event = event().await;
    assert_eq!(event["status"], "done", "{event}");
    assert_eq!(event["attempts"], 1, "{event}");
    let metrics = read(
        client
            .get(format!("{}/metrics", process.address))
            .send()
            .await
            .unwrap(),
    )
    .await
    .body;
    assert_eq!(processed_metric(&metrics, "slow", "done"), "1");
    drop(process);
    upstream_handle.stop(false).await;
}

/// A worker like the app's, but with `lease_secs = 2` (so it renews about
/// every 0.7 s of real time) and fetch timeouts of 30 s.
fn short_lease_worker(app: &TestApp) -> Worker {
    let text = test_config_text(&app.db.url, &app.upstream.uri(), &TestOptions::default())
        .replace("lease_secs = 30\n", "lease_secs = 2\n")
        .replace("fetch.timeout_secs = 2\n", "fetch.timeout_secs = 30\n");
    let no_env: BTreeMap<String, String> = BTreeMap::new();
    let config = hookledger::config::load_str(&text, &no_env).unwrap();
    let sources = config
        .sources
        .iter()
        .map(|(name, c)| (name.clone(), Arc::new(Source::new(c.clone()))))
        .collect();
    Worker::new(
        app.store.clone(),
        Arc::new(config),
        Arc::new(sources),
        Arc::new(app.clock.clone()),
        Arc::new(Metrics::new()),
    )
}

/// Issue 11, item 5, the other half: a worker whose lease is taken over
/// while it fetches (it stalled, as far as the queue can tell) learns it at
/// its next renewal and stops at once — it does not wait for the upstream
/// (which answers in a minute; the fetch timeout is 30 s) — and writes
/// nothing; the new holder still has the event.
async fn a_worker_whose_lease_is_taken_over_mid_fetch_stops_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_held"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "evt_held"}))
                .set_delay(Duration::from_secs(60)),
        )
        .mount(&app.upstream)
        .await;
    let body = stripe_event(
        "evt_held",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_held", "object": "invoice"}),
    );
    let answer = app.deliver("stripe_fetch", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.id();
    let worker = short_lease_worker(&app);
    let claimed = claim_one(&app.store, app.clock.now_ms(), 2_000).await;
    let fetching = tokio::spawn({
        let worker = worker.clone();
        async move { worker.process(&claimed, &CancellationToken::new()).await }
    });
    wait_until("the worker is fetching", || async {
        app.upstream
            .received_requests()
            .await
            .is_some_and(|r| r.len() == 1)
    })
    .await;
    // Taken over at an instant past any renewal the worker can have made.
    let holder = claim_one(&app.store, app.clock.now_ms() + 3_600_000, 2_000).await;
    assert_eq!(holder.id, id);
    let outcome = tokio::time::timeout(Duration::from_secs(10), fetching)
        .await
        .expect("a worker whose lease was taken over stops fetching within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::LeaseLost);
    assert_eq!(app.upstream.received_requests().await.unwrap().len(), 1);
    assert!(app
        .store
        .domain_object("stripe_fetch", "invoice", "in_held")
        .await
        .unwrap()
        .is_none());
    let event = admin_event(&app, id).await;
    assert_eq!(
        event["status"], "processing",
        "the new holder has it: {event}"
    );
    app.store
        .complete(&holder, None, app.clock.now_ms())
        .await
        .unwrap();
}
