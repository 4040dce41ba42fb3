//! Gap-fill from Stripe's events list (SPEC §10), against a mock of
//! `GET /v1/events` that pages as Stripe does (`has_more`,
//! `starting_after`; see `gapfill_mocks.rs` for where its answers come
//! from). Passes are run by hand; waits (429 `Retry-After`) move the
//! test's clock instead of sleeping.

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::Mock;

use crate::backend_tests;
use crate::gapfill_mocks::*;
use crate::helpers::*;
use hookledger::reconcile::{PassOptions, ReconcileError, Summary};

backend_tests!(
    fifty_listed_events_of_which_three_never_arrived_records_exactly_those_three,
    a_webhook_after_gap_fill_is_a_duplicate_and_one_before_leaves_nothing_to_record,
    the_overlap_rereads_without_recording_twice_and_unsettled_events_wait,
    a_500_mid_pass_keeps_the_recorded_pages_and_the_cursor_and_the_next_pass_finishes,
    a_429_is_waited_out_for_its_retry_after,
    requests_are_paced_by_rate_per_sec,
    an_action_the_source_ignores_gets_its_ignored_row,
    a_bad_key_is_reported_and_changes_nothing,
    one_pass_at_a_time_and_scheduled_passes_once_per_interval,
    a_pass_whose_lease_ran_out_writes_nothing,
    a_gap_filled_event_is_processed_and_fed_like_a_webhook,
    the_console_shows_an_events_origin,
);

pub(crate) const STRIPE_GAP: &str = r#"
[sources.stripe_gap]
preset = "stripe"
secret = "whsec_test_gap"

[sources.stripe_gap.reconcile]
api_key = "rk_test_gapfill"
base_url = "{upstream}"
interval_secs = 300
lookback_secs = 86400
overlap_secs = 60
settle_secs = 300
types = ["setup_intent.created"]
account = "acct_1032D82eZvKYlo2C"
"#;

/// Events per page of the mock (Stripe's own is up to 100).
const PAGE: usize = 20;

pub(crate) struct Gap {
    pub app: TestApp,
    pub stripe: StripeEvents,
    pub pause: ClockPause,
}

pub(crate) async fn gap(backend: Backend, faults: Faults) -> Gap {
    gap_with(backend, faults, STRIPE_GAP).await
}

pub(crate) async fn gap_with(backend: Backend, faults: Faults, toml: &str) -> Gap {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: toml.to_string(),
            ..Default::default()
        },
    )
    .await;
    let stripe = StripeEvents::new(PAGE, faults);
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .respond_with(stripe.clone())
        .mount(&app.upstream)
        .await;
    let pause = ClockPause::new(&app.clock);
    Gap { app, stripe, pause }
}

impl Gap {
    pub(crate) async fn pass(&self) -> Result<Option<Summary>, ReconcileError> {
        self.app
            .reconciler("stripe_gap", &self.pause)
            .run_once(PassOptions::default())
            .await
    }

    pub(crate) async fn pass_ok(&self) -> Summary {
        self.pass()
            .await
            .expect("the pass succeeds")
            .expect("the lease was free")
    }

    /// `n` events created an hour ago, ten seconds apart.
    pub(crate) fn events(&self, from: usize, n: usize) -> Vec<Value> {
        let start = self.app.now_secs() - 3_600;
        (from..from + n)
            .map(|i| listed_event(i, start + i as i64 * 10))
            .collect()
    }

    pub(crate) async fn webhook(&self, event: &Value) -> Answer {
        self.app.deliver("stripe_gap", &[], event).await
    }

    pub(crate) async fn rows(&self) -> Vec<Value> {
        let answer = self
            .app
            .admin_get("/admin/events?source=stripe_gap&limit=500")
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.body["items"].as_array().unwrap().clone()
    }
}

fn key(event: &Value) -> String {
    format!("id:{}", event["id"].as_str().unwrap())
}

async fn fifty_listed_events_of_which_three_never_arrived_records_exactly_those_three(
    backend: Backend,
) {
    let g = gap(backend, Faults::default()).await;
    let events = g.events(0, 50);
    let lost = [7, 23, 41];
    for (i, event) in events.iter().enumerate() {
        if !lost.contains(&i) {
            assert_eq!(g.webhook(event).await.status, 202);
        }
    }
    g.stripe.add(events.clone());

    let summary = g.pass_ok().await;
    assert_eq!(
        summary.to_string(),
        "stripe_gap: 50 listed, 3 missing, 3 recorded"
    );
    // Three pages (20 + 20 + 10), each asked for as Stripe expects.
    let seen = g.stripe.seen();
    assert_eq!(seen.len(), 3);
    let gte = (g.app.now_secs() - 86_400).to_string();
    for (i, request) in seen.iter().enumerate() {
        assert_eq!(request.param("created[gte]"), Some(gte.as_str()));
        assert_eq!(request.param("limit"), Some("100"));
        assert_eq!(request.param("types[]"), Some("setup_intent.created"));
        assert_eq!(
            request.header("stripe-account"),
            Some("acct_1032D82eZvKYlo2C")
        );
        assert_eq!(
            request.param("starting_after").is_some(),
            i > 0,
            "pages after the first start after the last event shown"
        );
    }
    let rows = g.rows().await;
    assert_eq!(rows.len(), 50);
    let reconciled: Vec<&Value> = rows.iter().filter(|r| r["origin"] == "reconcile").collect();
    let mut keys: Vec<String> = reconciled
        .iter()
        .map(|r| r["dedup_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    let mut expected: Vec<String> = lost.iter().map(|&i| key(&events[i])).collect();
    expected.sort();
    assert_eq!(
        keys, expected,
        "exactly the three lost events, under the webhook's key"
    );
    assert_eq!(
        g.app.store.stats().await.unwrap().duplicates,
        0,
        "a listed event already in the ledger is no duplicate delivery"
    );
    // The cursor is the newest listed event's time.
    let newest = events
        .iter()
        .map(|e| e["created"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        g.app.store.reconcile_cursor("stripe_gap").await.unwrap(),
        Some(newest * 1000)
    );
    let metrics = g.app.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics
        .contains("hookledger_reconciled_total{source=\"stripe_gap\",result=\"inserted\"} 3"));
    assert!(metrics
        .contains("hookledger_reconciled_total{source=\"stripe_gap\",result=\"present\"} 47"));

    // Recorded events are processed like webhooks: the domain row is written.
    g.app.drain().await;
    let id = reconciled[0]["id"].as_i64().unwrap();
    let detail = event(&g.app, id).await;
    assert_eq!(detail["status"], "done");
    assert_eq!(detail["origin"], "reconcile");
    assert_eq!(detail["payload"]["object"], "event");

    // A second pass finds nothing missing.
    let again = g.pass_ok().await;
    assert_eq!(again.missing, 0);
    assert_eq!(again.filled, 0);
    assert_eq!(g.app.ledger_total().await, 50);
}

async fn a_webhook_after_gap_fill_is_a_duplicate_and_one_before_leaves_nothing_to_record(
    backend: Backend,
) {
    let g = gap(backend, Faults::default()).await;
    let events = g.events(0, 5);
    g.stripe.add(events.clone());
    assert_eq!(g.pass_ok().await.filled, 5);
    let recorded = g.rows().await;
    let row = recorded
        .iter()
        .find(|r| r["dedup_key"] == key(&events[2]))
        .unwrap();
    // Stripe's late retry of the same event: a duplicate of the gap-filled row.
    let late = g.webhook(&events[2]).await;
    assert_eq!(late.status, 200, "{:?}", late.body);
    assert_eq!(late.body["status"], "duplicate");
    assert_eq!(late.id(), row["id"].as_i64().unwrap());

    // Webhooks first: gap-fill finds nothing to record.
    let more = g.events(10, 3);
    for event in &more {
        assert_eq!(g.webhook(event).await.status, 202);
    }
    g.stripe.add(more);
    let summary = g.pass_ok().await;
    assert_eq!((summary.missing, summary.filled), (0, 0));
    assert_eq!(g.app.ledger_total().await, 8);
}

async fn the_overlap_rereads_without_recording_twice_and_unsettled_events_wait(backend: Backend) {
    let g = gap(backend, Faults::default()).await;
    let now = g.app.now_secs();
    let old = g.events(0, 3);
    // Created two minutes ago: younger than settle_secs, its webhook may be
    // on the way.
    let young = listed_event(50, now - 120);
    g.stripe.add(old.clone());
    g.stripe.add([young.clone()]);
    let first = g.pass_ok().await;
    assert_eq!((first.listed, first.missing, first.filled), (4, 3, 3));
    let cursor = g
        .app
        .store
        .reconcile_cursor("stripe_gap")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor, old[2]["created"].as_i64().unwrap() * 1000);

    // Ten minutes later: the young event has settled, and one created 30 s
    // before the cursor shows up late in the list (inside the overlap).
    g.app.clock.advance_ms(600_000);
    let late = listed_event(60, cursor / 1000 - 30);
    g.stripe.add([late.clone()]);
    let second = g.pass_ok().await;
    let request = g.stripe.seen().last().unwrap().clone();
    assert_eq!(
        request.param("created[gte]"),
        Some((cursor / 1000 - 60).to_string().as_str()),
        "the cursor less the overlap"
    );
    assert_eq!(
        (second.missing, second.filled),
        (2, 2),
        "the late and the young"
    );
    let rows = g.rows().await;
    assert_eq!(rows.len(), 5, "nothing recorded twice");
    for event in [&young, &late] {
        assert!(rows.iter().any(|r| r["dedup_key"] == key(event)));
    }
}

async fn a_500_mid_pass_keeps_the_recorded_pages_and_the_cursor_and_the_next_pass_finishes(
    backend: Backend,
) {
    // The second request (the second page) fails once.
    let g = gap(backend, Faults(vec![(2, 500, None)])).await;
    let events = g.events(0, 50);
    g.stripe.add(events.clone());
    let failed = g.pass().await;
    assert!(
        matches!(failed, Err(ReconcileError::Status(500))),
        "{failed:?}"
    );
    // The first page's 20 newest events are in; the cursor has not moved.
    assert_eq!(g.app.ledger_total().await, 20);
    assert_eq!(
        g.app.store.reconcile_cursor("stripe_gap").await.unwrap(),
        None
    );

    // The next pass (the lease was let go) reads it all again and finishes.
    let summary = g.pass_ok().await;
    assert_eq!(
        (summary.listed, summary.missing, summary.filled),
        (50, 30, 30)
    );
    assert_eq!(g.app.ledger_total().await, 50);
    assert!(g
        .app
        .store
        .reconcile_cursor("stripe_gap")
        .await
        .unwrap()
        .is_some());
}

async fn a_429_is_waited_out_for_its_retry_after(backend: Backend) {
    let g = gap(backend, Faults(vec![(1, 429, Some("7"))])).await;
    g.stripe.add(g.events(0, 4));
    let before = g.app.clock.now_ms();
    let summary = g.pass_ok().await;
    assert_eq!(summary.filled, 4);
    assert_eq!(g.stripe.seen().len(), 2, "asked again after the wait");
    assert_eq!(g.pause.waits(), vec![7_000]);
    assert!(g.app.clock.now_ms() - before >= 7_000);
}

async fn requests_are_paced_by_rate_per_sec(backend: Backend) {
    let toml = STRIPE_GAP.replace(
        "interval_secs = 300",
        "interval_secs = 300\nrate_per_sec = 1",
    );
    let g = gap_with(backend, Faults::default(), &toml).await;
    g.stripe.add(g.events(0, 50));
    assert_eq!(g.pass_ok().await.filled, 50);
    // Three pages at one request a second: the first at once, then a
    // second's wait before each of the others.
    assert_eq!(g.stripe.seen().len(), 3);
    assert_eq!(g.pause.waits(), vec![1_000, 1_000]);
}

async fn an_action_the_source_ignores_gets_its_ignored_row(backend: Backend) {
    let toml = STRIPE_GAP.replace(
        "secret = \"whsec_test_gap\"",
        "secret = \"whsec_test_gap\"\nactions = { \"setup_intent.created\" = \"ignore\" }",
    );
    let g = gap_with(backend, Faults::default(), &toml).await;
    let events = g.events(0, 2);
    g.stripe.add(events.clone());
    assert_eq!(g.pass_ok().await.filled, 2);
    let rows = g.rows().await;
    assert!(rows.iter().all(|r| r["status"] == "ignored"
        && r["strategy"] == "action_object"
        && r["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("ign:setup_intent.created:")));
    // The webhook of the same event meets that row.
    let late = g.webhook(&events[0]).await;
    assert_eq!(
        (late.status, late.body["status"].as_str()),
        (200, Some("ignored"))
    );
    assert_eq!(g.app.ledger_total().await, 2);
}

async fn a_bad_key_is_reported_and_changes_nothing(backend: Backend) {
    let g = gap_with(
        backend,
        Faults::default(),
        &STRIPE_GAP.replace("rk_test_gapfill", "rk_test_revoked"),
    )
    .await;
    g.stripe.add(g.events(0, 5));
    let refused = g.pass().await;
    assert!(
        matches!(refused, Err(ReconcileError::Refused(401))),
        "{refused:?}"
    );
    let message = refused.unwrap_err().to_string();
    assert!(!message.contains("rk_test_revoked"), "{message}");
    assert_eq!(g.app.ledger_total().await, 0);
    assert_eq!(
        g.app.store.reconcile_cursor("stripe_gap").await.unwrap(),
        None
    );
    // The key never reaches a log or a config dump either.
    assert!(!format!("{:?}", g.app.config).contains("rk_test_revoked"));
}

async fn one_pass_at_a_time_and_scheduled_passes_once_per_interval(backend: Backend) {
    use hookledger::store::reconcile::ReconcileLease;
    let g = gap(backend, Faults::default()).await;
    g.stripe.add(g.events(0, 2));
    let now = g.app.clock.now_ms();
    let other = ReconcileLease {
        source: "stripe_gap".into(),
        holder: "another-process".into(),
    };
    let taken = g
        .app
        .store
        .take_reconcile_lease(&other, now, now + 60_000, false)
        .await
        .unwrap();
    assert_eq!(taken, Some(None), "free, and no cursor yet");
    assert!(
        g.pass().await.unwrap().is_none(),
        "held by the other process"
    );
    assert!(
        g.stripe.seen().is_empty(),
        "no API call while another pass runs"
    );
    // Its lease runs out (a crashed process): the next pass takes over.
    g.app.clock.advance_ms(60_000);
    assert_eq!(g.pass_ok().await.filled, 2);

    let scheduled = PassOptions {
        scheduled: true,
        ..PassOptions::default()
    };
    let reconciler = g.app.reconciler("stripe_gap", &g.pause);
    let calls = g.stripe.seen().len();
    assert!(reconciler.run_once(scheduled).await.unwrap().is_some());
    assert!(
        reconciler.run_once(scheduled).await.unwrap().is_none(),
        "not due again within the interval"
    );
    g.app.clock.advance_ms(299_000);
    assert!(reconciler.run_once(scheduled).await.unwrap().is_none());
    g.app.clock.advance_ms(1_000);
    assert!(reconciler.run_once(scheduled).await.unwrap().is_some());
    assert_eq!(g.stripe.seen().len(), calls + 2, "one call per due pass");
}

async fn a_pass_whose_lease_ran_out_writes_nothing(backend: Backend) {
    use hookledger::store::reconcile::ReconcileLease;
    let g = gap(backend, Faults::default()).await;
    let store = &g.app.store;
    let now = g.app.clock.now_ms();
    let stalled = ReconcileLease {
        source: "stripe_gap".into(),
        holder: "stalled".into(),
    };
    let taker = ReconcileLease {
        source: "stripe_gap".into(),
        holder: "taker".into(),
    };
    assert!(store
        .take_reconcile_lease(&stalled, now, now + 1_000, false)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .take_reconcile_lease(&taker, now, now + 1_000, false)
        .await
        .unwrap()
        .is_none());
    // The stalled pass's lease runs out and another pass takes over.
    let later = now + 1_000;
    assert!(store
        .take_reconcile_lease(&taker, later, later + 1_000, false)
        .await
        .unwrap()
        .is_some());
    let source = hookledger::sources::Source::new(g.app.config.sources["stripe_gap"].clone());
    let body = serde_json::to_vec(&listed_event(1, g.app.now_secs() - 600)).unwrap();
    let delivery = source
        .parse(
            hookledger::sources::BodyKind::Json,
            &Vec::<(String, String)>::new(),
            &body,
        )
        .unwrap();
    let hash = hookledger::dedup::body_hash(
        hookledger::sources::BodyKind::Json,
        &body,
        &delivery.payload,
    );
    let (event, _) = hookledger::ingest::ledger_event(
        &source,
        hookledger::sources::BodyKind::Json,
        &body,
        delivery,
        hash,
        later,
    );
    let written = store
        .record_reconciled(
            &stalled,
            later,
            later + 1_000,
            std::slice::from_ref(&event),
            Some(later),
        )
        .await
        .unwrap();
    assert!(written.is_none(), "the stalled pass is refused");
    assert!(!store
        .renew_reconcile_lease(&stalled, later, later + 1_000)
        .await
        .unwrap());
    assert_eq!(g.app.ledger_total().await, 0);
    assert_eq!(store.reconcile_cursor("stripe_gap").await.unwrap(), None);
    // The holder's own write goes through, once.
    let ids = store
        .record_reconciled(
            &taker,
            later,
            later + 1_000,
            &[event.clone(), event],
            Some(later),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        ids[0].is_some() != ids[1].is_some(),
        "one of two copies is new: {ids:?}"
    );
    assert_eq!(
        store.reconcile_cursor("stripe_gap").await.unwrap(),
        Some(later)
    );
}

async fn a_gap_filled_event_is_processed_and_fed_like_a_webhook(backend: Backend) {
    let toml = format!("{STRIPE_GAP}{}", crate::feed::feed_toml(None));
    let g = gap_with(backend, Faults::default(), &toml).await;
    let events = g.events(0, 1);
    g.stripe.add(events.clone());
    assert_eq!(g.pass_ok().await.filled, 1);
    g.app.drain().await;
    let page = crate::feed::feed(&g.app, "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["type"], "setup_intent.created");
    assert_eq!(items[0]["data"]["ledger_id"], g.rows().await[0]["id"]);
}

async fn the_console_shows_an_events_origin(backend: Backend) {
    use crate::console::{console_get, login};
    let g = gap(backend, Faults::default()).await;
    let events = g.events(0, 2);
    assert_eq!(g.webhook(&events[0]).await.status, 202);
    g.stripe.add(events.clone());
    assert_eq!(g.pass_ok().await.filled, 1);
    let cookie = login(&g.app).await;
    for row in g.rows().await {
        let id = row["id"].as_i64().unwrap();
        let page = console_get(&g.app, Some(&cookie), &format!("/console/events/{id}")).await;
        assert_eq!(page.status, 200);
        let gap_filled = page.text.contains("its webhook never arrived");
        assert_eq!(gap_filled, row["origin"] == "reconcile", "{}", page.text);
        assert!(page.text.contains("id=\"event-origin\""));
    }
}
