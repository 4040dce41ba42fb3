//! Storage faults: the database going away (PostgreSQL) or locked by another
//! connection (SQLite) answers 503 `storage_unavailable` with `Retry-After`,
//! never a 2xx, and the service recovers by itself, losing nothing accepted.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::Connection;

use super::*;
use crate::backend_tests;

backend_tests!(a_storage_outage_answers_503_with_retry_after_and_recovers_by_itself,);

/// A fault injected into the test's own database (never the shared server).
enum StorageFault {
    /// The database refuses connections and every session to it was ended.
    Postgres { admin_url: String, name: String },
    /// Another connection holds SQLite's write lock.
    Sqlite(sqlx::SqliteConnection),
}

impl StorageFault {
    async fn inject(backend: Backend, database_url: &str) -> StorageFault {
        match backend {
            Backend::Postgres => {
                let admin_url = postgres_url().unwrap();
                let name = url::Url::parse(database_url)
                    .unwrap()
                    .path()
                    .trim_start_matches('/')
                    .to_string();
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query(&format!(
                    "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
                ))
                .execute(&mut admin)
                .await
                .unwrap();
                // Terminating is asynchronous: wait until no session is left,
                // so no pooled connection can still answer.
                let sessions = format!(
                    "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid()) AS t"
                );
                let remaining =
                    format!("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{name}'");
                let deadline = Instant::now() + DEADLINE;
                loop {
                    sqlx::query(&sessions).execute(&mut admin).await.unwrap();
                    let (left,): (i64,) = sqlx::query_as(&remaining)
                        .fetch_one(&mut admin)
                        .await
                        .unwrap();
                    if left == 0 {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "sessions of {name} would not end"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                StorageFault::Postgres { admin_url, name }
            }
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)
                    .unwrap()
                    .busy_timeout(Duration::from_secs(10));
                let mut holder = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut holder)
                    .await
                    .unwrap();
                StorageFault::Sqlite(holder)
            }
        }
    }

    async fn lift(self) {
        match self {
            StorageFault::Postgres { admin_url, name } => {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query(&format!(
                    "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
                ))
                .execute(&mut admin)
                .await
                .unwrap();
            }
            StorageFault::Sqlite(mut holder) => {
                sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
                holder.close().await.unwrap();
            }
        }
    }
}

/// Issue item 3. PostgreSQL: the test's database stops accepting connections
/// and its sessions are ended. SQLite: another connection holds the write
/// lock, so the app's writer gets SQLITE_BUSY after its 5 s busy timeout
/// (the one slow step of this file). Either way: every answer is a 503
/// `storage_unavailable` with `Retry-After`, never a 2xx; the service
/// resumes by itself (ingest and the background workers) once the database
/// is back; a delivery that got 503 was not stored, so its retry is 202;
/// and every event accepted before the fault is still there and processed.
async fn a_storage_outage_answers_503_with_retry_after_and_recovers_by_itself(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            processing_toml: "poll_interval_ms = 20".into(),
            run_workers: true,
            ..TestOptions::default()
        },
    )
    .await;
    let mut before = Vec::new();
    for n in 0..3 {
        let answer = invoice(
            &app,
            "stripe",
            &format!("evt_before_{n}"),
            &format!("in_b{n}"),
        )
        .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        before.push(answer.id());
    }
    let done = |total: i64| {
        let store = app.store.clone();
        async move { store.stats().await.unwrap().by_status["done"] == total }
    };
    wait_until("the events before the fault are processed", || done(3)).await;
    assert_eq!(app.get("/readyz").await.status, 200);

    let fault = StorageFault::inject(backend, &app.db.url).await;
    let during = invoice(&app, "stripe", "evt_during", "in_during").await;
    assert_storage_unavailable(&during, "a first-seen delivery during the outage");
    if backend == Backend::Postgres {
        // (SQLite: a locked file is still reachable — WAL readers are not
        // blocked — and `/readyz` reports reachability, so it is not asked.)
        let readyz = app.get("/readyz").await;
        assert_storage_unavailable(&readyz, "/readyz during the outage");
        // The rest is instant on PostgreSQL, so ask more of it: a duplicate
        // cannot be recorded either, and the admin API fails the same way.
        let again = invoice(&app, "stripe", "evt_during", "in_during").await;
        assert_storage_unavailable(&again, "the provider retrying too early");
        let duplicate = invoice(&app, "stripe", "evt_before_0", "in_b0").await;
        assert_storage_unavailable(&duplicate, "a duplicate during the outage");
        let other = invoice(&app, "stripe", "evt_during_2", "in_during_2").await;
        assert_storage_unavailable(&other, "another delivery during the outage");
        let stats = app.admin_get("/admin/stats").await;
        assert_storage_unavailable(&stats, "the admin API during the outage");
    }

    fault.lift().await;
    // Nobody restarts anything: readiness and ingest come back by themselves.
    wait_until("/readyz is green again", || async {
        app.get("/readyz").await.status == 200
    })
    .await;
    let retried = invoice(&app, "stripe", "evt_during", "in_during").await;
    assert_eq!(
        (retried.status, retried.body["status"].as_str()),
        (202, Some("accepted")),
        "the 503 stored nothing, so the retry is first-seen: {:?}",
        retried.body
    );
    let after = invoice(&app, "stripe", "evt_after", "in_after").await;
    assert_eq!(after.status, 202, "{:?}", after.body);
    let duplicate = invoice(&app, "stripe", "evt_before_0", "in_b0").await;
    assert_eq!((duplicate.status, duplicate.id()), (200, before[0]));

    // The background workers resume too, and nothing accepted is missing.
    wait_until("every accepted event is processed", || done(5)).await;
    let stats = app.store.stats().await.unwrap();
    assert_eq!(stats.total, 5, "{stats:?}");
    for (n, id) in before.iter().enumerate() {
        let row = app
            .store
            .domain_object("stripe", "invoice", &format!("in_b{n}"))
            .await
            .unwrap()
            .expect("the domain row written before the fault");
        assert_eq!(row.last_event_id, *id);
    }
    for object in ["in_during", "in_after"] {
        assert!(app
            .store
            .domain_object("stripe", "invoice", object)
            .await
            .unwrap()
            .is_some());
    }
}
