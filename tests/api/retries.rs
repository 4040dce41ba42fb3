//! How failed attempts end (SPEC §2, §4, §5), driven by hand with the
//! manual clock: an upstream's `Retry-After` is honoured only up to
//! `processing.max_retry_after_secs`, so no upstream can park an event (and
//! every later event of its object) for years; and an event that never
//! completed shows no `processed_at`.

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    an_upstream_retry_after_beyond_max_retry_after_secs_is_cut_to_it,
    a_dead_event_shows_no_processed_at,
);

async fn answer_ok(app: &TestApp, event_id: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/events/{event_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": event_id})))
        .with_priority(2)
        .mount(&app.upstream)
        .await;
}

/// Issue 11, item 9: `Retry-After: 99999999999` (3 175 years) on a 429 is
/// cut to `max_retry_after_secs` (3600 by default): the event is retried an
/// hour later — not a millisecond sooner — and the next event of its object,
/// waiting behind it, follows.
async fn an_upstream_retry_after_beyond_max_retry_after_secs_is_cut_to_it(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_far"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "99999999999"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.upstream)
        .await;
    answer_ok(&app, "evt_far").await;
    answer_ok(&app, "evt_next").await;
    let far = deliver_invoice(&app, "stripe_fetch", "evt_far", "in_far").await;
    let next = deliver_invoice(&app, "stripe_fetch", "evt_next", "in_far").await;
    assert_eq!(
        app.drain().await,
        1,
        "the 429; the object's next event waits"
    );
    assert_eq!(event(&app, far).await["status"], "failed");

    app.clock.advance_ms(3_600_000 - 1);
    assert_eq!(
        app.drain().await,
        0,
        "the Retry-After is honoured up to the cap"
    );
    app.clock.advance_ms(1);
    assert_eq!(
        app.drain().await,
        2,
        "once max_retry_after_secs has passed, the event and the next of its object are processed"
    );
    for (id, attempts) in [(far, 2), (next, 1)] {
        let e = event(&app, id).await;
        assert_eq!(
            (e["status"].as_str(), e["attempts"].as_i64()),
            (Some("done"), Some(attempts)),
            "{e}"
        );
    }
}

/// Issue 11, item 9: `processed_at` is when processing completed; a `dead`
/// event never completed, so it has none — in the event view and in the
/// list — while a `done` one has its instant.
async fn a_dead_event_shows_no_processed_at(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&app.upstream)
        .await;
    let dead = deliver_invoice(&app, "stripe_fetch", "evt_gone", "in_gone").await;
    let done = deliver_invoice(&app, "stripe", "evt_fine", "in_fine").await;
    assert_eq!(app.drain().await, 2);

    let shown = event(&app, dead).await;
    assert_eq!(shown["status"], "dead", "{shown}");
    assert_eq!(shown["processed_at"], Value::Null, "{shown}");
    let listed = app.admin_get("/admin/events?status=dead").await.body;
    assert_eq!(listed["items"][0]["id"], dead);
    assert_eq!(listed["items"][0]["processed_at"], Value::Null, "{listed}");

    let finished = event(&app, done).await;
    assert_eq!(finished["status"], "done");
    assert!(
        finished["processed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{finished}"
    );
}
