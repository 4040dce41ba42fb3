//! Routing at the edges (issue 11, item 9): every answer the server gives
//! outside its routes has the error envelope; the admin token is checked
//! before anything else of an admin request; and a replay that races the
//! ingest of its coalesce key is a 409, not a storage failure.

use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    other_methods_on_a_webhook_url_and_unknown_paths_answer_the_error_envelope,
    the_admin_token_is_checked_before_the_query_is_parsed,
);

async fn send(app: &TestApp, method: reqwest::Method, path: &str, token: bool) -> Answer {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if token {
        request = request.bearer_auth(ADMIN_TOKEN);
    }
    read(request.send().await.unwrap()).await
}

async fn other_methods_on_a_webhook_url_and_unknown_paths_answer_the_error_envelope(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // A configured source (static route), an unknown one, the bare prefix.
    for path in ["/webhooks/stripe", "/webhooks/x", "/webhooks/x/"] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let answer = send(&app, method.clone(), path, false).await;
            let what = format!("{method} {path}");
            if path.ends_with('/') {
                assert_eq!(
                    (answer.status, answer.error_code()),
                    (404, "not_found"),
                    "{what}: {:?}",
                    answer.body
                );
                continue;
            }
            assert_eq!(
                (answer.status, answer.error_code()),
                (405, "method_not_allowed"),
                "{what}: {:?}",
                answer.body
            );
            assert_eq!(
                answer.headers.get("allow").map(|v| v.to_str().unwrap()),
                Some("POST"),
                "{what}"
            );
            assert!(answer.body["error"]["message"].is_string(), "{what}");
        }
    }
    for path in ["/", "/nope", "/healthz/x", "/webhooks"] {
        let answer = send(&app, reqwest::Method::GET, path, false).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (404, "not_found"),
            "GET {path}: {:?}",
            answer.body
        );
    }
    // POST keeps its own answers.
    let unknown = send(&app, reqwest::Method::POST, "/webhooks/x", false).await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "unknown_source")
    );
}

async fn the_admin_token_is_checked_before_the_query_is_parsed(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/admin/events?limit=1&limit=2",
        "/admin/duplicates?limit=1&limit=2",
        "/admin/events?status=done&status=dead",
        "/admin/events/1?%zz",
        "/admin/nope",
    ] {
        let refused = send(&app, reqwest::Method::GET, path, false).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (401, "unauthorized"),
            "GET {path} without the token: {:?}",
            refused.body
        );
        assert!(refused.headers.contains_key("www-authenticate"), "{path}");
    }
    let replay = send(&app, reqwest::Method::POST, "/admin/events/x/replay", false).await;
    assert_eq!(replay.status, 401, "{:?}", replay.body);
    // With the token, the query's own errors are there as before.
    let bad = send(
        &app,
        reqwest::Method::GET,
        "/admin/events?limit=1&limit=2",
        true,
    )
    .await;
    assert_eq!(
        (bad.status, bad.error_code()),
        (400, "invalid_query"),
        "{:?}",
        bad.body
    );
    let unknown = send(&app, reqwest::Method::GET, "/admin/nope", true).await;
    assert_eq!((unknown.status, unknown.error_code()), (404, "not_found"));
    let fine = send(&app, reqwest::Method::GET, "/admin/events?limit=1", true).await;
    assert_eq!(fine.status, 200, "{:?}", fine.body);
}

/// PostgreSQL only (SQLite serialises the replay and every ledger write
/// behind one write lock, so they cannot interleave). A delivery of the
/// coalesce key of a finished event is in flight — its transaction has
/// inserted the key's pending row but not committed — when an operator
/// replays that event: the replay's check sees no pending row, its update
/// waits on the unique index of pending coalesce rows, and once the
/// delivery commits, the index refuses it. That is the SPEC's 409 "another
/// row with its key is pending", not a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_racing_the_ingest_of_its_coalesce_key_answers_409() {
    if postgres_url().is_none() {
        eprintln!("skipped: a_replay_racing_the_ingest_of_its_coalesce_key_answers_409 (set {POSTGRES_ENV})");
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let body = b"action=changed&id=7301".to_vec();
    let first = app
        .deliver_bytes("acuity", "application/x-www-form-urlencoded", &[], body)
        .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let key = first.body["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(key, "co:changed:7301");
    app.drain().await;
    let id = first.id();
    let done = app.admin_get(&format!("/admin/events/{id}")).await;
    assert_eq!(done.body["status"], "done", "{:?}", done.body);

    // The in-flight delivery: the row the ledger would insert, uncommitted.
    let mut delivery = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut delivery).await.unwrap();
    let now = app.clock.now_ms();
    sqlx::query(
        "INSERT INTO events (source, dedup_key, strategy, status, action, object_type, \
         object_id, event_time, payload, body_hash, received_at, next_attempt_at) \
         VALUES ('acuity', $1, 'coalesce', 'pending', 'changed', 'appointment', '7301', \
         $2, '{}', 'h', $2, $2)",
    )
    .bind(&key)
    .bind(now)
    .execute(&mut delivery)
    .await
    .unwrap();

    let replay = {
        let (client, url) = (
            app.client.clone(),
            format!("{}/admin/events/{id}/replay", app.address),
        );
        tokio::spawn(async move {
            read(
                client
                    .post(url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    let watcher = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    wait_until("the replay waits on the in-flight delivery's row", || {
        let watcher = watcher.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'UPDATE events SET status = ''pending''%'",
            )
            .fetch_one(&watcher)
            .await
            .unwrap();
            waiting == 1
        }
    })
    .await;
    sqlx::query("COMMIT").execute(&mut delivery).await.unwrap();

    let answer = tokio::time::timeout(Duration::from_secs(30), replay)
        .await
        .expect("the replay answers once the delivery committed")
        .unwrap();
    assert_eq!(
        (answer.status, answer.error_code()),
        (409, "conflict"),
        "{:?}",
        answer.body
    );
    let event: Value = app.admin_get(&format!("/admin/events/{id}")).await.body;
    assert_eq!(
        event["status"], "done",
        "the refused replay changed nothing"
    );
}
