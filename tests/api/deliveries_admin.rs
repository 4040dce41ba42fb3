//! The deliveries of the admin API (SPEC §7): the list, its filters and its
//! paging, the error answers, and single and bulk retries (the destinations'
//! side is in `destinations_admin.rs`). Relays are driven by hand
//! (`app.relay(name).drain()`), the worker by `app.drain()`.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use wiremock::ResponseTemplate;

use crate::destinations::{answer_with, app_with_receiver, header, requests_to};
use crate::helpers::*;
use hookledger::clock::rfc3339;
use hookledger::relay::DeliveryOutcome;
use hookledger::store::deliveries::{DeliveryRow, Settlement};
use hookledger::store::deliveries_admin::BulkRetry;
use hookledger::store::queue::QueueError;

crate::backend_tests!(
    delivery_pages_visit_every_row_exactly_once_newest_first,
    delivery_filters_narrow_the_list_and_items_have_the_spec_fields,
    bad_queries_bodies_and_unknown_names_answer_with_the_error_envelope,
    retrying_a_delivered_delivery_sends_it_again_under_the_same_webhook_id,
    a_delivery_in_flight_is_not_retried_until_its_lease_runs_out,
    a_bulk_retry_dry_run_counts_and_the_real_one_retries_exactly_those,
);

pub async fn admin_post_body(app: &TestApp, path: &str, body: &str) -> Answer {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    read(response).await
}

pub fn items(answer: &Answer) -> &Vec<Value> {
    answer.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {:?}", answer.body))
}

pub async fn drained(app: &TestApp, destination: &str) -> Vec<DeliveryOutcome> {
    app.relay(destination).drain().await.unwrap()
}

/// The delivery of event `id` to `destination`.
pub async fn delivery_to(app: &TestApp, id: i64, destination: &str) -> DeliveryRow {
    app.store
        .deliveries_of_event(id)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.destination == destination)
        .unwrap_or_else(|| panic!("event {id} has no delivery to {destination}"))
}

/// Invoices `evt_<n>` / `in_<n>`, each processed at its own instant, 10 s
/// apart; returns the ledger ids and those instants.
async fn processed_invoices(app: &TestApp, count: usize) -> (Vec<i64>, Vec<i64>) {
    let mut ids = Vec::new();
    let mut at = Vec::new();
    for n in 0..count {
        ids.push(deliver_invoice(app, "paid", &format!("evt_{n}"), &format!("in_{n}")).await);
        at.push(app.clock.now_ms());
        app.drain().await;
        app.clock.advance_ms(10_000);
    }
    (ids, at)
}

/// Pages through `/admin/deliveries?{query}` with `limit`; returns every id
/// and each page's size.
async fn all_pages(app: &TestApp, query: &str, limit: usize) -> (Vec<i64>, Vec<usize>) {
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/deliveries?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.admin_get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        sizes.push(items(&page).len());
        ids.extend(items(&page).iter().map(|i| i["id"].as_i64().unwrap()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return (ids, sizes),
        }
    }
}

async fn delivery_pages_visit_every_row_exactly_once_newest_first(backend: Backend) {
    let (app, _receiver) = app_with_receiver(backend).await;
    let mut events = Vec::new();
    for n in 0..23 {
        events.push(deliver_invoice(&app, "paid", &format!("evt_{n}"), &format!("in_{n}")).await);
    }
    app.drain().await;
    let mut to_app = BTreeSet::new();
    let mut every = BTreeSet::new();
    for id in &events {
        for d in app.store.deliveries_of_event(*id).await.unwrap() {
            every.insert(d.id);
            if d.destination == "app" {
                to_app.insert(d.id);
            }
        }
    }
    assert_eq!((to_app.len(), every.len()), (23, 46));

    let (ids, sizes) = all_pages(&app, "destination=app", 5).await;
    assert_eq!(sizes, [5, 5, 5, 5, 3], "full pages until the last");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), to_app);

    let (ids, sizes) = all_pages(&app, "", 7).await;
    assert_eq!(ids.len(), 46, "no row twice");
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), every);
    assert!(sizes[..sizes.len() - 1].iter().all(|s| *s == 7));
    // A page that ends exactly at the last row says so.
    let (_, sizes) = all_pages(&app, "destination=app", 23).await;
    assert_eq!(sizes, [23]);
}

async fn delivery_filters_narrow_the_list_and_items_have_the_spec_fields(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(422)).await;
    let (ids, at) = processed_invoices(&app, 3).await;
    assert_eq!(drained(&app, "app").await.len(), 3);
    assert_eq!(drained(&app, "all").await.len(), 3);
    // One more, not attempted yet.
    let waiting = deliver_invoice(&app, "paid", "evt_w", "in_w").await;
    app.drain().await;
    let list = |query: &'static str| {
        let app = &app;
        async move {
            let answer = app.admin_get(&format!("/admin/deliveries?{query}")).await;
            assert_eq!(answer.status, 200, "{query}: {:?}", answer.body);
            items(&answer).clone()
        }
    };

    let delivered = list("status=delivered").await;
    assert_eq!(delivered.len(), 3);
    assert!(delivered.iter().all(|i| i["destination"] == "app"));
    let dead = list("status=dead").await;
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|i| i["destination"] == "all"));
    assert_eq!(list("status=pending").await.len(), 2);
    assert!(list("status=delivering").await.is_empty());
    let answer = app
        .admin_get(&format!("/admin/deliveries?event_id={}", ids[1]))
        .await;
    let of_one = items(&answer);
    assert_eq!(of_one.len(), 2);
    assert!(of_one
        .iter()
        .all(|i| i["event_id"] == ids[1] && i["delivery_id"] == format!("hl_{}", ids[1])));
    // `since` is inclusive, on created_at (when the event's processing
    // completed and wrote the row).
    let since = rfc3339(at[1]);
    let answer = app
        .admin_get(&format!("/admin/deliveries?since={since}"))
        .await;
    assert_eq!(items(&answer).len(), 6, "the 2nd, 3rd and waiting events'");
    let answer = app
        .admin_get(&format!(
            "/admin/deliveries?destination=all&status=dead&since={since}"
        ))
        .await;
    let event_ids: Vec<i64> = items(&answer)
        .iter()
        .map(|i| i["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(event_ids, [ids[2], ids[1]], "newest first");
    // A destination name never used lists nothing; it is not an error.
    let none = app.admin_get("/admin/deliveries?destination=nope").await;
    assert_eq!(none.status, 200);
    assert_eq!(none.body, json!({"items": [], "next_cursor": null}));

    // Every field, for a delivered, a dead and a waiting delivery.
    let row = delivery_to(&app, ids[0], "app").await;
    let answer = app
        .admin_get(&format!(
            "/admin/deliveries?event_id={}&destination=app",
            ids[0]
        ))
        .await;
    assert_eq!(
        items(&answer)[0],
        json!({
            "id": row.id,
            "delivery_id": format!("hl_{}", ids[0]),
            "destination": "app",
            "event_id": ids[0],
            "status": "delivered",
            "attempts": 1,
            "last_error": null,
            "last_status": 204,
            "created_at": rfc3339(at[0]),
            "delivered_at": rfc3339(at[2] + 10_000),
            "next_attempt_at": null,
        })
    );
    let answer = app
        .admin_get(&format!(
            "/admin/deliveries?event_id={}&destination=all",
            ids[0]
        ))
        .await;
    let item = &items(&answer)[0];
    assert_eq!(
        (item["status"].clone(), item["last_status"].clone()),
        (json!("dead"), json!(422))
    );
    assert!(item["last_error"].as_str().unwrap().starts_with("HTTP 422"));
    assert_eq!(item["delivered_at"], Value::Null);
    let answer = app
        .admin_get(&format!(
            "/admin/deliveries?event_id={waiting}&destination=app"
        ))
        .await;
    let item = &items(&answer)[0];
    assert_eq!(
        (item["status"].clone(), item["attempts"].clone()),
        (json!("pending"), json!(0))
    );
    assert_eq!(item["next_attempt_at"], rfc3339(app.clock.now_ms()));
}

async fn bad_queries_bodies_and_unknown_names_answer_with_the_error_envelope(backend: Backend) {
    let (app, _receiver) = app_with_receiver(backend).await;
    // Found by a breaker session: the bulk retry's other methods answered
    // a bare 405 without the envelope.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .client
            .request(
                method.clone(),
                format!("{}/admin/deliveries/retry", app.address),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let answer = read(response).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (405, "method_not_allowed"),
            "{method}"
        );
    }
    let events_cursor = {
        for n in 0..2 {
            deliver_invoice(&app, "paid", &format!("evt_{n}"), &format!("in_{n}")).await;
        }
        let page = app.admin_get("/admin/events?limit=1").await;
        page.body["next_cursor"].as_str().unwrap().to_string()
    };
    for query in [
        "status=bogus".to_string(),
        "status=done".to_string(),
        "event_id=abc".to_string(),
        "event_id=0".to_string(),
        "event_id=-3".to_string(),
        "since=yesterday".to_string(),
        "limit=0".to_string(),
        "limit=ten".to_string(),
        "cursor=not-a-cursor".to_string(),
        format!("cursor={events_cursor}"),
    ] {
        let answer = app.admin_get(&format!("/admin/deliveries?{query}")).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, "invalid_query"),
            "{query}"
        );
    }
    for path in [
        "/admin/deliveries/999999/retry",
        "/admin/deliveries/abc/retry",
        "/admin/deliveries/0/retry",
        "/admin/destinations/nope/pause",
        "/admin/destinations/nope/resume",
    ] {
        let answer = app.admin_post(path).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (404, "not_found"),
            "{path}"
        );
    }
    for body in [
        "",
        "{",
        "[]",
        r#"{"status":"dead"}"#,
        r#"{"destination":"app"}"#,
        r#"{"destination":"app","status":"pending"}"#,
        r#"{"destination":"app","status":"delivered"}"#,
        r#"{"destination":"app","status":"dead","dryrun":true}"#,
        r#"{"destination":"app","status":"dead","dry_run":"yes"}"#,
        r#"{"destination":"app","status":"dead","since":"last week"}"#,
        r#"{"destination":"app","status":"dead","until":5}"#,
        r#"{"destination":"","status":"dead"}"#,
    ] {
        let answer = admin_post_body(&app, "/admin/deliveries/retry", body).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, "invalid_payload"),
            "{body}"
        );
    }
    let answer = admin_post_body(
        &app,
        "/admin/deliveries/retry",
        r#"{"destination":"nope","status":"dead","dry_run":true}"#,
    )
    .await;
    assert_eq!((answer.status, answer.error_code()), (404, "not_found"));
    // The token comes first, whatever else is wrong with the request.
    for (method, path) in [
        ("GET", "/admin/deliveries?status=bogus"),
        ("GET", "/admin/destinations"),
        ("POST", "/admin/deliveries/abc/retry"),
        ("POST", "/admin/deliveries/retry"),
        ("POST", "/admin/destinations/app/pause"),
        ("POST", "/admin/destinations/app/resume"),
    ] {
        let request = match method {
            "GET" => app.client.get(format!("{}{path}", app.address)),
            _ => app.client.post(format!("{}{path}", app.address)).body("{"),
        };
        let answer = read(request.send().await.unwrap()).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (401, "unauthorized"),
            "{path}"
        );
    }
    assert!(
        !app.store.destination_paused("app").await.unwrap(),
        "the refused pause changed nothing"
    );
}

async fn retrying_a_delivered_delivery_sends_it_again_under_the_same_webhook_id(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    assert_eq!(drained(&app, "app").await, [DeliveryOutcome::Delivered]);
    let row = delivery_to(&app, id, "app").await;
    app.clock.advance_ms(5_000);

    let answer = app
        .admin_post(&format!("/admin/deliveries/{}/retry", row.id))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body, json!({"status": "pending", "id": row.id}));
    let retried = app.store.delivery(row.id).await.unwrap().unwrap();
    assert_eq!(
        (retried.status.as_str(), retried.attempts),
        ("pending", 0),
        "attempts start over"
    );
    assert_eq!(retried.next_attempt_at, app.clock.now_ms(), "due now");
    assert_eq!(retried.delivered_at, None);
    assert_eq!(
        retried.last_status,
        Some(204),
        "the last attempt's answer is kept"
    );

    assert_eq!(drained(&app, "app").await, [DeliveryOutcome::Delivered]);
    let requests = requests_to(&receiver, "/hooks/app").await;
    assert_eq!(requests.len(), 2, "sent again");
    for request in &requests {
        assert_eq!(header(request, "webhook-id"), format!("hl_{id}"));
        assert_eq!(header(request, "hookledger-attempt"), "1");
    }
    assert_eq!(requests[0].body, requests[1].body, "the same envelope");
    let again = app.store.delivery(row.id).await.unwrap().unwrap();
    assert_eq!(again.status, "delivered");
    assert_eq!(again.delivered_at, Some(app.clock.now_ms()));
}

async fn a_delivery_in_flight_is_not_retried_until_its_lease_runs_out(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(204)).await;
    let id = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.drain().await;
    let now = app.clock.now_ms();
    let claimed = app
        .store
        .claim_deliveries("app", now, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let path = format!("/admin/deliveries/{}/retry", claimed[0].id);
    let answer = app.admin_post(&path).await;
    assert_eq!((answer.status, answer.error_code()), (409, "conflict"));
    let row = delivery_to(&app, id, "app").await;
    assert_eq!((row.status.as_str(), row.attempts), ("delivering", 1));

    // The lease runs out: the claim is no one's, and a retry takes it.
    app.clock.advance_ms(30_001);
    assert_eq!(app.admin_post(&path).await.status, 202);
    let stale = app
        .store
        .settle_delivery(
            &claimed[0],
            &Settlement::Delivered { status: Some(200) },
            app.clock.now_ms(),
        )
        .await;
    assert!(
        matches!(stale, Err(QueueError::LeaseLost(_))),
        "the old claim records nothing: {stale:?}"
    );
    assert_eq!(drained(&app, "app").await, [DeliveryOutcome::Delivered]);
    let requests = requests_to(&receiver, "/hooks/app").await;
    assert_eq!(header(&requests[0], "hookledger-attempt"), "1");
}

async fn a_bulk_retry_dry_run_counts_and_the_real_one_retries_exactly_those(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(503)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(422)).await;
    let (ids, at) = processed_invoices(&app, 3).await;
    assert!(drained(&app, "app")
        .await
        .iter()
        .all(|o| *o == DeliveryOutcome::Retry));
    assert!(drained(&app, "all")
        .await
        .iter()
        .all(|o| *o == DeliveryOutcome::Dead));
    let statuses = |destination: &'static str| {
        let (app, ids) = (&app, &ids);
        async move {
            let mut out = Vec::new();
            for id in ids {
                let d = delivery_to(app, *id, destination).await;
                out.push((d.status, d.attempts));
            }
            out
        }
    };
    let since = rfc3339(at[1]);
    let dry = json!({"destination": "all", "status": "dead", "since": since, "dry_run": true});
    let answer = admin_post_body(&app, "/admin/deliveries/retry", &dry.to_string()).await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (200, json!({"matched": 2}))
    );
    let dead = ("dead".to_string(), 1);
    assert_eq!(
        statuses("all").await,
        [dead.clone(), dead.clone(), dead.clone()],
        "a dry run changes nothing"
    );

    let real = json!({"destination": "all", "status": "dead", "since": since});
    let answer = admin_post_body(&app, "/admin/deliveries/retry", &real.to_string()).await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (200, json!({"retried": 2}))
    );
    let pending = ("pending".to_string(), 0);
    assert_eq!(
        statuses("all").await,
        [dead.clone(), pending.clone(), pending.clone()]
    );
    let failed = ("failed".to_string(), 1);
    assert_eq!(
        statuses("app").await,
        [failed.clone(), failed.clone(), failed.clone()],
        "other destinations untouched"
    );

    // `until` is exclusive; a status that matches nothing matches nothing.
    let until =
        json!({"destination": "app", "status": "failed", "until": rfc3339(at[1]), "dry_run": true});
    let answer = admin_post_body(&app, "/admin/deliveries/retry", &until.to_string()).await;
    assert_eq!(answer.body, json!({"matched": 1}));
    let other = json!({"destination": "app", "status": "dead", "dry_run": true});
    let answer = admin_post_body(&app, "/admin/deliveries/retry", &other.to_string()).await;
    assert_eq!(answer.body, json!({"matched": 0}));
    // Failed ones wait for their backoff; retried, they are due now.
    let answer = admin_post_body(
        &app,
        "/admin/deliveries/retry",
        r#"{"destination":"app","status":"failed"}"#,
    )
    .await;
    assert_eq!(answer.body, json!({"retried": 3}));
    assert_eq!(
        statuses("app").await,
        [pending.clone(), pending.clone(), pending.clone()]
    );
    assert_eq!(
        drained(&app, "app").await.len(),
        3,
        "all due at once, before any backoff"
    );

    // Exactly the two retried go out again (and die again).
    let before = requests_to(&receiver, "/hooks/all").await.len();
    assert_eq!(
        drained(&app, "all").await,
        [DeliveryOutcome::Dead, DeliveryOutcome::Dead]
    );
    // Attempted side by side: compared as a set.
    let sent: BTreeSet<String> = requests_to(&receiver, "/hooks/all").await[before..]
        .iter()
        .map(|r| header(r, "webhook-id").to_string())
        .collect();
    let expected: BTreeSet<String> = [ids[1], ids[2]]
        .iter()
        .map(|id| format!("hl_{id}"))
        .collect();
    assert_eq!(sent, expected);

    // Over more rows than a batch: every one, once.
    let bulk = BulkRetry {
        destination: "all".into(),
        status: "dead".into(),
        since_ms: None,
        until_ms: None,
    };
    let now = app.clock.now_ms();
    assert_eq!(app.store.retry_deliveries(&bulk, now, 2).await.unwrap(), 3);
    assert_eq!(
        statuses("all").await,
        [pending.clone(), pending.clone(), pending]
    );
    assert_eq!(app.store.retry_deliveries(&bulk, now, 2).await.unwrap(), 0);
}
