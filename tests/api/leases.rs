//! Leases (SPEC §4): a completion, failure or release is accepted only from
//! the holder of the current lease — also when several completions are
//! committed together — and a live worker keeps its lease for as long as its
//! fetch takes, while a worker that lost it stops and changes nothing.
//!
//! The store contracts and the completion batch are driven by hand with
//! explicit instants. The renewal claims need real time to pass: they run
//! the real binary (or an in-process worker) against an upstream that
//! answers slowly, and wait on conditions with a deadline.

use hookledger::store::queue::{ClaimedEvent, DomainWrite};
use hookledger::store::{NewEvent, RecordOutcome, Store};
use hookledger::worker::Outcome;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_stale_and_a_current_completion_of_one_event_in_one_batch_complete_only_the_current,
    a_lost_lease_completed_in_the_same_batch_as_the_new_holder_is_not_counted_done,
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

async fn data_of(store: &Store, object: &str) -> Option<(String, i64)> {
    store
        .domain_object("s", "thing", object)
        .await
        .unwrap()
        .map(|o| (o.data, o.last_event_id))
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
            Some((r#"{"by":"fresh"}"#.to_string(), id)),
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
        (row.data.as_str(), row.last_event_id),
        (r#"{"by":"holder"}"#, id)
    );
}
