//! The change feed (SPEC §8): `[feed]` and its token, one item per
//! completed event with the envelope of §7, the cursor rules, filters,
//! long polling woken by the completion's commit, and retention.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::ResponseTemplate;

use crate::backend_tests;
use crate::destinations::{answer_with, destinations_toml, requests_to};
use crate::helpers::*;

backend_tests!(
    without_a_feed_table_both_feed_routes_answer_404,
    the_feed_token_and_the_admin_token_are_not_interchangeable,
    each_completed_event_is_one_item_in_completion_order_with_its_deliveries_envelope,
    a_replayed_event_appears_again_with_a_new_cursor_and_the_same_id,
    next_cursor_is_always_a_concrete_cursor_and_an_empty_page_repeats_it,
    malformed_cursors_limits_and_waits_are_400_invalid_query,
    source_and_action_globs_filter_the_items,
    a_long_poll_returns_as_soon_as_a_completion_commits,
    a_long_poll_with_nothing_to_show_returns_the_cursor_when_its_wait_is_up,
    items_past_retention_are_dropped_and_a_cursor_before_them_is_410,
);

pub const FEED_TOKEN: &str = "test-feed-token";

/// `[feed]` carrying `sources` (`None`: every source).
pub fn feed_toml(sources: Option<&[&str]>) -> String {
    let mut text = format!("\n[feed]\ntoken = \"{FEED_TOKEN}\"\n");
    if let Some(sources) = sources {
        let list: Vec<String> = sources.iter().map(|s| format!("\"{s}\"")).collect();
        text.push_str(&format!("sources = [{}]\n", list.join(", ")));
    }
    text
}

pub async fn app_with_feed(backend: Backend, sources: Option<&[&str]>) -> TestApp {
    spawn_app_with(
        backend,
        TestOptions {
            extra_toml: feed_toml(sources),
            ..TestOptions::default()
        },
    )
    .await
}

/// `GET path` with `token` as bearer.
pub async fn get_with(app: &TestApp, path: &str, token: Option<&str>) -> Answer {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read(request.send().await.unwrap()).await
}

/// Waits until every committed feed item is servable. On PostgreSQL an
/// item is served only once every older transaction of the cluster has
/// ended, and the other tests running in parallel (their migrations) hold
/// some open for a while.
pub async fn settled(app: &TestApp) {
    wait_until("every committed feed item is servable", || async {
        app.store.feed_items_behind_horizon().await.unwrap() == 0
    })
    .await;
}

/// `GET /feed?query` with the feed token, asserted 200, once every item
/// committed is servable.
pub async fn feed(app: &TestApp, query: &str) -> Value {
    settled(app).await;
    let answer = get_with(app, &format!("/feed?{query}"), Some(FEED_TOKEN)).await;
    assert_eq!(answer.status, 200, "{query}: {:?}", answer.body);
    answer.body
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("items is an array")
}

fn ledger_ids(page: &Value) -> Vec<i64> {
    items(page)
        .iter()
        .map(|i| i["data"]["ledger_id"].as_i64().unwrap())
        .collect()
}

fn next_cursor(page: &Value) -> String {
    page["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("next_cursor is a string: {page}"))
        .to_string()
}

/// A Stripe invoice event to `source`, first-seen; its ledger id.
async fn invoice(app: &TestApp, source: &str, n: usize, action: &str) -> i64 {
    let body = stripe_event(
        &format!("evt_{source}_{n}"),
        action,
        app.now_secs(),
        json!({"id": format!("in_{n}"), "object": "invoice"}),
    );
    let answer = app.deliver(source, &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.id()
}

/// A gauge's value in `/metrics` (0 when absent).
pub async fn gauge(app: &TestApp, name: &str) -> i64 {
    let text = app.get("/metrics").await.body;
    text.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn without_a_feed_table_both_feed_routes_answer_404(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/feed", "/feed?after=now", "/feed/stream"] {
        for token in [None, Some(ADMIN_TOKEN), Some(FEED_TOKEN)] {
            let answer = get_with(&app, path, token).await;
            assert_eq!(answer.status, 404, "{path} {token:?}");
            assert_eq!(
                answer.error_code(),
                "not_found",
                "{path}: the error envelope"
            );
        }
    }
}

async fn the_feed_token_and_the_admin_token_are_not_interchangeable(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    for path in ["/feed", "/feed?after=garbage", "/feed/stream"] {
        for token in [None, Some(ADMIN_TOKEN), Some("wrong"), Some("")] {
            let answer = get_with(&app, path, token).await;
            assert_eq!(answer.status, 401, "{path} with {token:?}");
            assert_eq!(answer.error_code(), "unauthorized");
        }
    }
    // The token is checked before the query: a bad cursor with the token is 400.
    let answer = get_with(&app, "/feed?after=garbage", Some(FEED_TOKEN)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(feed(&app, "").await["items"], json!([]));
    for path in ["/admin/events", "/admin/stats"] {
        let answer = get_with(&app, path, Some(FEED_TOKEN)).await;
        assert_eq!(answer.status, 401, "the feed token on {path}");
        assert_eq!(get_with(&app, path, Some(ADMIN_TOKEN)).await.status, 200);
    }
}

async fn each_completed_event_is_one_item_in_completion_order_with_its_deliveries_envelope(
    backend: Backend,
) {
    let receiver = wiremock::MockServer::start().await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: destinations_toml(&receiver.uri()) + &feed_toml(Some(&["paid", "stripe"])),
            ..TestOptions::default()
        },
    )
    .await;
    let first = invoice(&app, "paid", 1, "invoice.paid").await;
    // Not carried: the feed names other sources.
    let body = json!({"invoice": {"id": "b_1"}});
    let bytes = serde_json::to_vec(&body).unwrap();
    let answer = app
        .deliver_bytes("billing", "application/json", &[], bytes)
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    // Accepted but not processed yet: no item.
    assert_eq!(items(&feed(&app, "").await).len(), 0);
    app.drain().await;
    let second = invoice(&app, "stripe", 2, "customer.created").await;
    let third = invoice(&app, "paid", 3, "invoice.voided").await;
    app.drain().await;

    let page = feed(&app, "").await;
    assert_eq!(
        ledger_ids(&page),
        [first, second, third],
        "completion order"
    );
    let item = &items(&page)[0];
    assert_eq!(item["type"], "invoice.paid");
    assert_eq!(item["data"]["id"], format!("hl_{first}"));
    assert_eq!(item["data"]["replay"], 0);
    assert_eq!(item["data"]["source"], "paid");
    assert_eq!(item["data"]["object"]["id"], "in_1");
    assert_eq!(item["data"]["payload"]["id"], "evt_paid_1");
    assert!(item["cursor"].is_string());
    assert_eq!(
        next_cursor(&page),
        items(&page)[2]["cursor"].as_str().unwrap()
    );

    // The envelope is the one its deliveries carry, byte for byte in meaning.
    app.relay("all").drain().await.unwrap();
    let delivered = requests_to(&receiver, "/hooks/all").await;
    assert_eq!(delivered.len(), 2);
    // The two attempts run concurrently: either may arrive first.
    let mut envelopes: Vec<Value> = delivered
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    envelopes.sort_by_key(|e| e["data"]["ledger_id"].as_i64());
    for (envelope, item) in envelopes
        .into_iter()
        .zip([&items(&page)[0], &items(&page)[2]])
    {
        let mut item = item.clone();
        item.as_object_mut().unwrap().remove("cursor");
        assert_eq!(item, envelope);
    }
}

async fn a_replayed_event_appears_again_with_a_new_cursor_and_the_same_id(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let id = invoice(&app, "stripe", 1, "invoice.paid").await;
    app.drain().await;
    let replayed = app.admin_post(&format!("/admin/events/{id}/replay")).await;
    assert_eq!(replayed.status, 202, "{:?}", replayed.body);
    app.drain().await;
    let page = feed(&app, "").await;
    let all = items(&page);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["data"]["id"], format!("hl_{id}"));
    assert_eq!(all[1]["data"]["id"], format!("hl_{id}"));
    assert_eq!(all[0]["data"]["replay"], 0);
    assert_eq!(all[1]["data"]["replay"], 1);
    assert_ne!(all[0]["cursor"], all[1]["cursor"]);
}

async fn next_cursor_is_always_a_concrete_cursor_and_an_empty_page_repeats_it(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    // An empty feed: a concrete cursor, with and without after=now.
    let empty = feed(&app, "").await;
    assert_eq!(items(&empty).len(), 0);
    let start = next_cursor(&empty);
    let now = next_cursor(&feed(&app, "after=now").await);
    for cursor in [&start, &now] {
        assert_ne!(cursor, "now");
        assert!(!cursor.is_empty());
    }
    let ids: Vec<i64> = {
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(invoice(&app, "stripe", n, "invoice.paid").await);
        }
        ids
    };
    app.drain().await;
    // after=now skips what is there and hands out the end.
    let end = feed(&app, "after=now").await;
    assert_eq!(items(&end).len(), 0);
    let end = next_cursor(&end);
    let repeated = feed(&app, &format!("after={end}")).await;
    assert_eq!(items(&repeated).len(), 0);
    assert_eq!(
        next_cursor(&repeated),
        end,
        "an empty page repeats the cursor"
    );
    // Following next_cursor from the start with limit=2: every item once.
    let mut cursor = now.clone();
    let mut seen = Vec::new();
    loop {
        let page = feed(&app, &format!("after={cursor}&limit=2")).await;
        assert!(items(&page).len() <= 2);
        seen.extend(ledger_ids(&page));
        let next = next_cursor(&page);
        if items(&page).is_empty() {
            assert_eq!(next, cursor);
            break;
        }
        cursor = next;
    }
    assert_eq!(seen, ids);
    // The start of an empty feed leads to the same items.
    assert_eq!(
        ledger_ids(&feed(&app, &format!("after={start}")).await),
        ids
    );
    // A newer item after the end cursor.
    let later = invoice(&app, "stripe", 9, "invoice.paid").await;
    app.drain().await;
    let page = feed(&app, &format!("after={end}")).await;
    assert_eq!(ledger_ids(&page), [later]);
    assert_eq!(ledger_ids(&feed(&app, "limit=500").await).len(), 6);
    assert_eq!(
        ledger_ids(&feed(&app, "limit=9999").await).len(),
        6,
        "clamped"
    );
}

async fn malformed_cursors_limits_and_waits_are_400_invalid_query(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let good = next_cursor(&feed(&app, "").await);
    for query in [
        "after=garbage".to_string(),
        "after=".to_string(),
        "after=NOW".to_string(),
        format!("after={good}x"),
        "limit=0".into(),
        "limit=".into(),
        "limit=-1".into(),
        "limit=ten".into(),
        "wait=61".into(),
        "wait=-1".into(),
        "wait=1.5".into(),
        "wait=".into(),
        "wait=%205".into(),
        "actions=a%3F".into(),
    ] {
        let answer = get_with(&app, &format!("/feed?{query}"), Some(FEED_TOKEN)).await;
        assert_eq!(answer.status, 400, "{query}: {:?}", answer.body);
        assert_eq!(answer.error_code(), "invalid_query", "{query}");
    }
    let answer = app
        .client
        .get(format!("{}/feed/stream", app.address))
        .bearer_auth(FEED_TOKEN)
        .header("Last-Event-ID", "garbage")
        .send()
        .await
        .unwrap();
    let answer = read(answer).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_code(), "invalid_query");
    assert_eq!(items(&feed(&app, "wait=0&limit=500").await).len(), 0);
}

async fn source_and_action_globs_filter_the_items(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let paid = invoice(&app, "stripe", 1, "invoice.paid").await;
    let created = invoice(&app, "stripe", 2, "customer.created").await;
    let voided = invoice(&app, "stripe", 3, "invoice.voided").await;
    let other = invoice(&app, "stripe_fetch", 4, "invoice.paid").await;
    // stripe_fetch fetches its details upstream.
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "in_4"})))
        .mount(&app.upstream)
        .await;
    app.drain().await;
    let ids = |q: &str| {
        let q = q.to_string();
        let app = &app;
        async move { ledger_ids(&feed(app, &q).await) }
    };
    assert_eq!(ids("").await, [paid, created, voided, other]);
    assert_eq!(ids("source=stripe").await, [paid, created, voided]);
    assert_eq!(ids("source=stripe_fetch").await, [other]);
    assert_eq!(ids("source=nobody").await, Vec::<i64>::new());
    assert_eq!(ids("actions=invoice.*").await, [paid, voided, other]);
    assert_eq!(
        ids("actions=*.created,invoice.voided").await,
        [created, voided]
    );
    assert_eq!(
        ids("source=stripe&actions=invoice.paid").await,
        [paid],
        "both filters"
    );
    // `_` and `%` are no wildcards.
    assert_eq!(ids("actions=invoice_paid").await, Vec::<i64>::new());
    assert_eq!(ids("actions=invoice%25").await, Vec::<i64>::new());
}

/// Issue 13 item 3: the wait ends because the commit signals it, not
/// because the reader polls the database. The reader's unwoken re-check is
/// set to an hour (`feed.recheck_ms`) and each wait to 30 s, so a poll that
/// answers with the new item within the 5 s timeout can only have been
/// woken by the completion's commit (on PostgreSQL, by it and the quick
/// re-checks that follow a wake-up until older transactions end).
async fn a_long_poll_returns_as_soon_as_a_completion_commits(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: format!("{}recheck_ms = 3600000\n", feed_toml(None)),
            ..TestOptions::default()
        },
    )
    .await;
    let mut cursor = next_cursor(&feed(&app, "after=now").await);
    for n in 0..3 {
        let id = invoice(&app, "stripe", n, "invoice.paid").await;
        let poll = {
            let request = app
                .client
                .get(format!("{}/feed?after={cursor}&wait=30", app.address))
                .bearer_auth(FEED_TOKEN);
            tokio::spawn(async move { read(request.send().await.unwrap()).await })
        };
        wait_until("the long poll is waiting", || async {
            gauge(&app, "hookledger_feed_waiters").await == 1
        })
        .await;
        assert!(!poll.is_finished(), "nothing was there to return");
        app.drain().await;
        let answer = tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .expect("the commit woke the long poll (no re-check was due for an hour)")
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(ledger_ids(&answer.body), [id]);
        cursor = next_cursor(&answer.body);
    }
    assert_eq!(gauge(&app, "hookledger_feed_waiters").await, 0);
}

async fn a_long_poll_with_nothing_to_show_returns_the_cursor_when_its_wait_is_up(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let cursor = next_cursor(&feed(&app, "after=now").await);
    let started = Instant::now();
    let page = feed(&app, &format!("after={cursor}&wait=1")).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "held for the wait: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(items(&page).len(), 0);
    assert_eq!(next_cursor(&page), cursor);
}

/// Issue 13 items 3 and 7: what retention drops is gone, and a reader
/// whose cursor is before a dropped item is told so (410), not skipped
/// silently past it.
async fn items_past_retention_are_dropped_and_a_cursor_before_them_is_410(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let before_all = next_cursor(&feed(&app, "after=now").await);
    let old = invoice(&app, "stripe", 1, "invoice.paid").await;
    app.drain().await;
    let after_old = next_cursor(&feed(&app, &format!("after={before_all}")).await);
    let retention_ms = hookledger::config::DEFAULT_FEED_RETENTION_SECS as i64 * 1000;
    app.clock.advance_ms(retention_ms);
    let young = invoice(&app, "stripe", 2, "invoice.paid").await;
    app.drain().await;
    let cut = app.clock.now_ms() - retention_ms + 1;
    assert_eq!(app.store.prune_feed(cut).await.unwrap(), 1);
    assert_eq!(app.store.prune_feed(cut).await.unwrap(), 0, "done already");

    let answer = get_with(&app, &format!("/feed?after={before_all}"), Some(FEED_TOKEN)).await;
    assert_eq!(answer.status, 410, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "cursor_expired");
    let stream = get_with(
        &app,
        &format!("/feed/stream?after={before_all}"),
        Some(FEED_TOKEN),
    )
    .await;
    assert_eq!(stream.status, 410);
    assert_eq!(
        ledger_ids(&feed(&app, &format!("after={after_old}")).await),
        [young]
    );
    assert_eq!(
        ledger_ids(&feed(&app, "").await),
        [young],
        "starts at the oldest kept"
    );
    assert_ne!(old, young);
}
