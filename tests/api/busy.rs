//! SQLite with another process holding the file's write lock (issue 11,
//! item 10): a webhook's ledger write, and an operator's replay, wait for
//! this process's write gate and for SQLite's lock within one busy timeout in all, never one full
//! timeout after the other, whatever holds the gate before it (a worker's
//! claim, another webhook's batch). After the lock is released the
//! provider's retry is accepted.

use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;

use crate::helpers::*;

/// SQLite's busy timeout in the store: what one request may wait in all.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Scheduling slack on a loaded 2-core machine; far below a second timeout.
const SLACK: Duration = Duration::from_secs(1);

/// Another process: a connection of its own holding `BEGIN IMMEDIATE`.
async fn hold_write_lock(database_url: &str) -> SqliteConnection {
    let options = SqliteConnectOptions::from_str(database_url).unwrap();
    let mut outside = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut outside)
        .await
        .unwrap();
    outside
}

async fn release(mut outside: SqliteConnection) {
    sqlx::query("ROLLBACK").execute(&mut outside).await.unwrap();
    outside.close().await.unwrap();
}

async fn invoice(app: &TestApp, event_id: &str) -> Answer {
    let body = stripe_event(
        event_id,
        "invoice.paid",
        app.now_secs(),
        json!({"id": format!("in_{event_id}"), "object": "invoice"}),
    );
    app.deliver("stripe", &[], &body).await
}

/// A 503 `storage_unavailable` with `Retry-After`, within one busy timeout.
fn assert_answered_503_in_time(answer: &Answer, took: Duration, what: &str) {
    assert_eq!(
        (answer.status, answer.error_code()),
        (503, "storage_unavailable"),
        "{what}: {:?}",
        answer.body
    );
    assert!(answer.headers.contains_key("retry-after"), "{what}");
    assert!(
        took < BUSY_TIMEOUT + SLACK,
        "{what}: answered after {took:?}; one busy timeout is {BUSY_TIMEOUT:?}"
    );
}

/// The reported case: a worker's claim takes the write gate and spends
/// SQLite's whole busy timeout on the outside lock; a webhook that arrives
/// meanwhile used to wait for the gate and then a busy timeout of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_behind_a_claim_waiting_on_another_process_answers_within_one_busy_timeout() {
    let app = spawn_app(Backend::Sqlite).await;
    let outside = hold_write_lock(&app.db.url).await;
    let worker = app.worker.clone();
    let claim = tokio::spawn(async move { worker.drain().await });
    wait_until("the claim holds the write gate", || async {
        app.store.write_gate_is_held()
    })
    .await;

    let started = Instant::now();
    let answer = invoice(&app, "evt_behind_claim").await;
    assert_answered_503_in_time(&answer, started.elapsed(), "the webhook behind the claim");

    release(outside).await;
    // The claim failed on the lock (its error is the worker's to retry).
    let _ = claim.await.unwrap();
    let retry = invoice(&app, "evt_behind_claim").await;
    assert_eq!(
        retry.status, 202,
        "the 503 stored nothing: {:?}",
        retry.body
    );
}

/// Webhooks handed to the ledger while an earlier batch waits on the outside
/// lock queue behind it; their own wait counts from when they were handed
/// over, not from when their batch starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_queued_behind_a_waiting_batch_answer_within_one_busy_timeout() {
    let app = spawn_app(Backend::Sqlite).await;
    let outside = hold_write_lock(&app.db.url).await;
    let first = {
        let (client, address) = (app.client.clone(), app.address.clone());
        let body = serde_json::to_vec(&stripe_event(
            "evt_first",
            "invoice.paid",
            app.now_secs(),
            json!({"id": "in_first", "object": "invoice"}),
        ))
        .unwrap();
        let headers = app.signed_headers("stripe", &[("Content-Type", "application/json")], &body);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut request = client.post(format!("{address}/webhooks/stripe")).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let answer = read(request.send().await.unwrap()).await;
            (answer, started.elapsed())
        })
    };
    wait_until("the first batch holds the write gate", || async {
        app.store.write_gate_is_held()
    })
    .await;

    let started = Instant::now();
    let second = invoice(&app, "evt_second").await;
    assert_answered_503_in_time(&second, started.elapsed(), "the webhook queued second");
    let (first, took) = first.await.unwrap();
    assert_answered_503_in_time(&first, took, "the first webhook");

    release(outside).await;
    for event_id in ["evt_first", "evt_second"] {
        let retry = invoice(&app, event_id).await;
        assert_eq!(retry.status, 202, "{event_id}: {:?}", retry.body);
    }
}

/// An operator's replay is held to the same bound: behind a worker's claim
/// that spends SQLite's busy timeout on the outside lock, it used to wait
/// for the gate and then a full timeout of its own. Its 503 changed
/// nothing: once the lock is gone the same replay is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_replay_behind_a_claim_waiting_on_another_process_answers_within_one_busy_timeout()
{
    let app = spawn_app(Backend::Sqlite).await;
    let delivered = invoice(&app, "evt_to_replay").await;
    assert_eq!(delivered.status, 202, "{:?}", delivered.body);
    let id = delivered.id();
    app.worker.drain().await.unwrap();
    assert_eq!(event(&app, id).await["status"], "done");

    let outside = hold_write_lock(&app.db.url).await;
    let worker = app.worker.clone();
    let claim = tokio::spawn(async move { worker.drain().await });
    wait_until("the claim holds the write gate", || async {
        app.store.write_gate_is_held()
    })
    .await;

    let started = Instant::now();
    let answer = app.admin_post(&format!("/admin/events/{id}/replay")).await;
    assert_answered_503_in_time(&answer, started.elapsed(), "the replay behind the claim");
    assert_eq!(
        event(&app, id).await["status"],
        "done",
        "the 503 changed nothing"
    );

    release(outside).await;
    let _ = claim.await.unwrap();
    let retry = app.admin_post(&format!("/admin/events/{id}/replay")).await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
}
