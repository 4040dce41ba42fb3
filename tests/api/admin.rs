//! The admin API: auth, pagination that visits every row once, filters,
//! detail, replay and stats; and the unauthenticated health routes.

use std::collections::BTreeSet;

use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    admin_routes_refuse_missing_or_wrong_tokens,
    event_pages_visit_every_row_exactly_once,
    duplicate_pages_are_newest_duplicate_first_and_complete,
    limits_and_filters_are_validated,
    event_detail_and_replay_answer_per_the_contract,
    stats_count_every_status_with_zeros,
    health_and_readiness_answer_without_auth,
);

async fn admin_routes_refuse_missing_or_wrong_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/admin/events",
        "/admin/duplicates",
        "/admin/stats",
        "/admin/events/1",
    ] {
        let none = read(
            app.client
                .get(format!("{}{path}", app.address))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (none.status, none.error_code()),
            (401, "unauthorized"),
            "{path}"
        );
        let wrong = read(
            app.client
                .get(format!("{}{path}", app.address))
                .bearer_auth("not-the-token")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (wrong.status, wrong.error_code()),
            (401, "unauthorized"),
            "{path}"
        );
        let prefix = read(
            app.client
                .get(format!("{}{path}", app.address))
                .bearer_auth(&ADMIN_TOKEN[..4])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(prefix.status, 401, "{path}");
    }
    let replay = read(
        app.client
            .post(format!("{}/admin/events/1/replay", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(replay.status, 401);
}

async fn seed_orders(app: &TestApp, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let rid = format!("req-{i}");
        let answer = app
            .deliver(
                "orders",
                &[("X-Request-Id", rid.as_str())],
                &json!({"n": i}),
            )
            .await;
        assert_eq!(answer.status, 202);
        ids.push(answer.id());
    }
    ids
}

async fn event_pages_visit_every_row_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let ids = seed_orders(&app, 23).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/events?limit=5&cursor={c}"),
            None => "/admin/events?limit=5".to_string(),
        };
        let page = app.admin_get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let items = page.body["items"].as_array().unwrap();
        pages += 1;
        seen.extend(items.iter().map(|i| i["id"].as_i64().unwrap()));
        match page.body["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), 5, "a page that is not the last is full");
                cursor = Some(c.to_string());
            }
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each row once");
    let item = &app.admin_get("/admin/events?limit=1").await.body["items"][0];
    for field in [
        "id",
        "source",
        "dedup_key",
        "strategy",
        "status",
        "attempts",
        "last_error",
        "provider_event_id",
        "action",
        "object_type",
        "object_id",
        "received_at",
        "processed_at",
    ] {
        assert!(item.get(field).is_some(), "field {field} present");
    }
    assert!(item["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(item["last_error"], serde_json::Value::Null);
}

async fn duplicate_pages_are_newest_duplicate_first_and_complete(backend: Backend) {
    let app = spawn_app(backend).await;
    seed_orders(&app, 7).await;
    // Duplicate them in a shuffled order, a second apart.
    let order = [3, 0, 6, 1, 5, 2, 4];
    for i in order {
        app.clock.advance_ms(1_000);
        let rid = format!("req-{i}");
        let again = app
            .deliver(
                "orders",
                &[("X-Request-Id", rid.as_str())],
                &json!({"n": i}),
            )
            .await;
        assert_eq!(again.status, 200);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/duplicates?limit=3&cursor={c}"),
            None => "/admin/duplicates?limit=3".to_string(),
        };
        let page = app.admin_get(&path).await;
        for item in page.body["items"].as_array().unwrap() {
            assert_eq!(item["duplicates"], 1);
            assert_eq!(item["payload_differs"], false);
            seen.push(item["dedup_key"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = order.iter().rev().map(|i| format!("id:req-{i}")).collect();
    assert_eq!(seen, expected);
    // `since` filters on the last duplicate time, inclusively.
    let third_newest = app.clock.now_ms() - 2_000;
    let since = hookledger::clock::rfc3339(third_newest);
    let recent = app
        .admin_get(&format!("/admin/duplicates?since={since}"))
        .await;
    assert_eq!(
        recent.body["items"].as_array().unwrap().len(),
        3,
        "{:?}",
        recent.body
    );
    let by_source = app.admin_get("/admin/duplicates?source=stripe").await;
    assert_eq!(by_source.body["items"], json!([]));
}

async fn limits_and_filters_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    seed_orders(&app, 3).await;
    for bad in ["0", "", "-1", "abc", "1.5", "%2B1"] {
        let answer = app.admin_get(&format!("/admin/events?limit={bad}")).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, "invalid_query"),
            "limit={bad}"
        );
    }
    let clamped = app.admin_get("/admin/events?limit=100000").await;
    assert_eq!(clamped.status, 200);
    assert_eq!(clamped.body["items"].as_array().unwrap().len(), 3);
    for bad in [
        "status=nope",
        "since=yesterday",
        "cursor=%%%",
        "cursor=ZDox",
    ] {
        let answer = app.admin_get(&format!("/admin/events?{bad}")).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, "invalid_query"),
            "{bad}"
        );
    }
    let pending = app
        .admin_get("/admin/events?status=pending&source=orders")
        .await;
    assert_eq!(pending.body["items"].as_array().unwrap().len(), 3);
    let done = app.admin_get("/admin/events?status=done").await;
    assert_eq!(done.body["items"], json!([]));
    let future = hookledger::clock::rfc3339(app.clock.now_ms() + 60_000);
    let none = app
        .admin_get(&format!("/admin/events?since={future}"))
        .await;
    assert_eq!(none.body["items"], json!([]));
}

async fn event_detail_and_replay_answer_per_the_contract(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app.admin_get("/admin/events/999999").await;
    assert_eq!((missing.status, missing.error_code()), (404, "not_found"));
    let junk = app.admin_get("/admin/events/abc").await;
    assert_eq!((junk.status, junk.error_code()), (404, "not_found"));
    let replay_missing = app.admin_post("/admin/events/999999/replay").await;
    assert_eq!(
        (replay_missing.status, replay_missing.error_code()),
        (404, "not_found")
    );

    let ids = seed_orders(&app, 1).await;
    // A pending event can be replayed (it will run anyway).
    let pending = app
        .admin_post(&format!("/admin/events/{}/replay", ids[0]))
        .await;
    assert_eq!(pending.status, 202);
    assert_eq!(pending.body, json!({"status": "pending", "id": ids[0]}));
    // While a worker holds it: 409.
    let claimed = app
        .store
        .claim(app.clock.now_ms(), 30_000, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let busy = app
        .admin_post(&format!("/admin/events/{}/replay", ids[0]))
        .await;
    assert_eq!((busy.status, busy.error_code()), (409, "conflict"));
    // Finished (here: dead), it can be replayed and starts over.
    app.store
        .fail(&claimed[0], "upstream said no", None, app.clock.now_ms())
        .await
        .unwrap();
    let dead = app.admin_get(&format!("/admin/events/{}", ids[0])).await;
    assert_eq!(
        (dead.body["status"].as_str(), dead.body["attempts"].as_i64()),
        (Some("dead"), Some(1))
    );
    assert_eq!(dead.body["last_error"], "upstream said no");
    let replayed = app
        .admin_post(&format!("/admin/events/{}/replay", ids[0]))
        .await;
    assert_eq!(replayed.status, 202);
    let after = app.admin_get(&format!("/admin/events/{}", ids[0])).await;
    assert_eq!(
        (
            after.body["status"].as_str(),
            after.body["attempts"].as_i64()
        ),
        (Some("pending"), Some(0))
    );

    // A coalesce row cannot be replayed while a newer row with its key is pending.
    let form = || {
        app.deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            b"action=changed&id=1".to_vec(),
        )
    };
    let old = form().await;
    let claimed = app
        .store
        .claim(app.clock.now_ms(), 30_000, 10)
        .await
        .unwrap();
    let old_claim = claimed.iter().find(|e| e.id == old.id()).unwrap().clone();
    app.store
        .fail(&old_claim, "gave up", None, app.clock.now_ms())
        .await
        .unwrap();
    let newer = form().await;
    assert_eq!(newer.status, 202);
    let conflict = app
        .admin_post(&format!("/admin/events/{}/replay", old.id()))
        .await;
    assert_eq!((conflict.status, conflict.error_code()), (409, "conflict"));
}

async fn stats_count_every_status_with_zeros(backend: Backend) {
    let app = spawn_app(backend).await;
    let empty = app.admin_get("/admin/stats").await;
    assert_eq!(empty.body["total"], 0);
    let statuses: BTreeSet<&str> =
        ["pending", "processing", "done", "failed", "dead", "ignored"].into();
    let keys: BTreeSet<&str> = empty.body["by_status"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, statuses);
    assert_eq!(empty.body["by_source"]["stripe"]["pending"], 0);
    seed_orders(&app, 2).await;
    app.deliver("orders", &[("X-Request-Id", "req-0")], &json!({"n": 0}))
        .await;
    let stats = app.admin_get("/admin/stats").await;
    assert_eq!(stats.body["total"], 2);
    assert_eq!(stats.body["duplicates"], 1);
    assert_eq!(stats.body["by_status"]["pending"], 2);
    assert_eq!(stats.body["by_source"]["orders"]["pending"], 2);
    assert_eq!(stats.body["by_source"]["orders"]["done"], 0);
}

async fn health_and_readiness_answer_without_auth(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
}
