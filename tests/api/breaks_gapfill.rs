//! Breaks found in gap-fill (SPEC §10) by attacking the release binary
//! with hostile mock provider APIs, each pinned here against the same
//! wiremock mocks as `gapfill.rs` and `gapfill_github.rs`: a listed Stripe
//! event without an id, a Stripe list that repeats its page with
//! `has_more: true`, a redelivery GitHub refuses for one delivery, and a
//! GitHub `next` link that leads back to a page already read, and a
//! redelivery request forgotten while GitHub still lists its delivery.

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::gapfill::{gap as stripe_gap, Gap as StripeGap};
use crate::gapfill_github::{gap as github_gap, GITHUB_GAP};
use crate::gapfill_mocks::*;
use crate::helpers::*;
use hookledger::reconcile::{PassOptions, ReconcileError, Summary};

backend_tests!(
    a_listed_event_without_an_id_is_not_recorded_again_by_every_reread,
    a_list_that_repeats_its_page_ends_the_pass_at_the_repeat,
    a_redelivery_github_refuses_does_not_stop_the_older_deliveries,
    a_next_link_back_to_a_page_already_read_ends_the_pass,
    a_request_is_remembered_as_long_as_github_lists_its_delivery,
);

const GITHUB_ATTEMPTS: &str = "/repos/octo-org/octo-repo/hooks/12345678/deliveries";

/// A Stripe pass reading back a day (as `hookledger reconcile --since 24h`).
async fn stripe_pass_since_a_day(g: &StripeGap) -> Summary {
    let options = PassOptions {
        since_secs: Some(86_400),
        ..PassOptions::default()
    };
    g.app
        .reconciler("stripe_gap", &g.pause)
        .run_once(options)
        .await
        .expect("the pass succeeds")
        .expect("the lease was free")
}

async fn a_listed_event_without_an_id_is_not_recorded_again_by_every_reread(backend: Backend) {
    let g = stripe_gap(backend, Faults::default()).await;
    let mut events = g.events(0, 3);
    events[1].as_object_mut().unwrap().remove("id");
    events[2]["id"] = json!("");
    g.stripe.add(events.clone());

    // Before the fix both were recorded under a payload-hash key of the
    // time they were read, so every re-read more than a hash window
    // (300 s) later recorded them again.
    let first = g.pass_ok().await;
    assert_eq!((first.listed, first.missing, first.filled), (3, 1, 1));
    for _ in 0..2 {
        g.app.clock.advance_ms(600_000);
        let again = stripe_pass_since_a_day(&g).await;
        assert_eq!((again.listed, again.filled), (3, 0));
    }
    let rows = g.rows().await;
    let keys: Vec<&Value> = rows.iter().map(|r| &r["dedup_key"]).collect();
    assert_eq!(
        keys,
        vec![&json!(format!("id:{}", events[0]["id"].as_str().unwrap()))],
        "only the event with an id, once"
    );
}

async fn a_list_that_repeats_its_page_ends_the_pass_at_the_repeat(backend: Backend) {
    let g = stripe_gap(backend, Faults::default()).await;
    let events = g.events(0, 2);
    // Every answer is the same page, still saying there is more (a
    // `starting_after` that leads back to itself).
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "url": "/v1/events",
            "has_more": true,
            "data": [events[1], events[0]],
        })))
        .with_priority(1)
        .mount(&g.app.upstream)
        .await;
    let result = g.pass().await;
    assert!(
        matches!(result, Err(ReconcileError::Unreadable(_))),
        "{result:?}"
    );
    // Before the fix the pass asked 10,000 times (MAX_PAGES), each
    // request spending the Stripe account's API rate limit.
    let asked = g.app.upstream.received_requests().await.unwrap();
    assert_eq!(asked.len(), 2, "the second answer repeats the first page");
    assert_eq!(g.app.ledger_total().await, 2, "the page is recorded once");
    assert_eq!(
        g.app.store.reconcile_cursor("stripe_gap").await.unwrap(),
        None,
        "a pass that did not end does not move the cursor"
    );
}

async fn a_redelivery_github_refuses_does_not_stop_the_older_deliveries(backend: Backend) {
    let g = github_gap(backend, GITHUB_GAP).await;
    g.github.add(g.deliveries(3));
    // GitHub answers 422 for one delivery's redelivery (its documented
    // "Validation failed"); the others are accepted.
    Mock::given(method("POST"))
        .and(path(format!("{GITHUB_ATTEMPTS}/2/attempts")))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "documentation_url": "https://docs.github.com/rest"
        })))
        .with_priority(1)
        .expect(1)
        .mount(&g.app.upstream)
        .await;

    // Before the fix the pass failed at delivery 2 (newest first), and so
    // did every later pass: delivery 1 was never asked for.
    let summary = g.pass_ok().await;
    assert_eq!((summary.listed, summary.missing, summary.filled), (3, 3, 2));
    let mut asked = g.github.redelivered();
    asked.sort();
    assert_eq!(asked, vec![1, 3]);

    // A re-read asks for none of them again, the refused one included
    // (the mock's `expect(1)` checks it when the server is dropped).
    let again = g.pass_since(7_200).await;
    assert_eq!((again.missing, again.filled), (3, 0));
    assert_eq!(g.github.redelivered().len(), 2);
}

async fn a_next_link_back_to_a_page_already_read_ends_the_pass(backend: Backend) {
    let g = github_gap(backend, GITHUB_GAP).await;
    let deliveries = g.deliveries(2);
    // Every answer is the same page, linking on to the same cursor.
    let again = format!(
        "<{}{GITHUB_ATTEMPTS}?per_page=100&cursor=v1_same>; rel=\"next\"",
        g.app.upstream.uri()
    );
    Mock::given(method("GET"))
        .and(path_regex(format!("^{GITHUB_ATTEMPTS}$")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(Value::Array(deliveries))
                .insert_header("Link", again.as_str()),
        )
        .with_priority(1)
        .mount(&g.app.upstream)
        .await;
    let result = g.pass().await;
    assert!(
        matches!(result, Err(ReconcileError::Unreadable(_))),
        "{result:?}"
    );
    // Before the fix the link was followed 10,000 times (MAX_PAGES).
    let listed = g
        .app
        .upstream
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(listed, 2, "the first page, then its link to itself");
    let mut asked = g.github.redelivered();
    asked.sort();
    assert_eq!(asked, vec![1, 2], "each missing delivery asked for once");
}

async fn a_request_is_remembered_as_long_as_github_lists_its_delivery(backend: Backend) {
    // A short first-pass lookback: it bounds the first pass only.
    let toml = GITHUB_GAP.replace(
        "settle_secs = 300",
        "settle_secs = 300\nlookback_secs = 3600",
    );
    let g = github_gap(backend, &toml).await;
    g.github.add(g.deliveries(2));
    assert_eq!(g.pass_ok().await.filled, 2);
    // Three hours on (the redeliveries never arrived), a pass forgets old
    // requests; before the fix, those older than twice lookback_secs.
    g.app.clock.advance_ms(3 * 3_600_000);
    assert_eq!(g.pass_ok().await.filled, 0);
    // `hookledger reconcile --since 72h` lists them again, as GitHub still
    // does: they were asked for already.
    let since = g.pass_since(72 * 3_600).await;
    assert_eq!((since.missing, since.filled), (2, 0));
    assert_eq!(g.github.redelivered().len(), 2, "each asked for once");
}
