//! Feed retention (SPEC §8, issue 13 item 7): items older than
//! `feed.retention_secs` are dropped by the server in the background and by
//! `hookledger prune`, in bounded batches, oldest first.

use std::process::Command;
use std::sync::Arc;

use hookledger::startup::Application;
use serde_json::json;

use crate::backend_tests;
use crate::feed::{settled, FEED_TOKEN};
use crate::helpers::*;

backend_tests!(
    the_server_drops_feed_items_past_retention_in_the_background,
    hookledger_prune_drops_feed_items_past_retention,
    retention_drops_the_oldest_items_in_bounded_batches,
);

const RETENTION_SECS: i64 = 3_600;

fn retention_toml() -> String {
    format!("\n[feed]\ntoken = \"{FEED_TOKEN}\"\nretention_secs = {RETENTION_SECS}\n")
}

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        TestOptions {
            extra_toml: retention_toml(),
            ..TestOptions::default()
        },
    )
    .await
}

/// Completes `count` events at the clock's current time.
async fn complete(app: &TestApp, from: usize, count: usize) {
    for n in from..from + count {
        let body = stripe_event(
            &format!("evt_{n}"),
            "invoice.paid",
            app.now_secs(),
            json!({"id": format!("in_{n}"), "object": "invoice"}),
        );
        assert_eq!(app.deliver("stripe", &[], &body).await.status, 202);
    }
    app.drain().await;
}

/// Two items completed more than the retention ago, one just now.
async fn old_and_young(app: &TestApp) {
    let now = app.clock.now_ms();
    app.clock.set_ms(now - (RETENTION_SECS + 60) * 1000);
    complete(app, 0, 2).await;
    app.clock.set_ms(now);
    complete(app, 2, 1).await;
    settled(app).await;
    assert_eq!(app.store.feed_len().await.unwrap(), 3);
}

async fn the_server_drops_feed_items_past_retention_in_the_background(backend: Backend) {
    let app = app(backend).await;
    old_and_young(&app).await;
    // A second server on the same database, with its workers (and so its
    // retention task) running: its first pass runs at start-up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Application::with_parts(
        app.config.clone(),
        Arc::new(app.clock.clone()),
        app.store.clone(),
        listener,
        true,
    )
    .unwrap();
    let running = tokio::spawn(server.run_until_stopped());
    wait_until("the old items are dropped", || async {
        app.store.feed_len().await.unwrap() == 1
    })
    .await;
    running.abort();
}

async fn hookledger_prune_drops_feed_items_past_retention(backend: Backend) {
    let app = app(backend).await;
    // `prune` runs on the real clock: the items' times are real times.
    old_and_young(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hookledger.toml");
    let text = test_config_text(&app.db.url, "http://127.0.0.1:9", &TestOptions::default())
        + &retention_toml();
    std::fs::write(&config_path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookledger"))
        .arg("--config")
        .arg(&config_path)
        .args(["prune", "--older-than", "30d"])
        .env_remove("DATABASE_URL")
        .env_remove("HOOKLEDGER_ADMIN_TOKEN")
        .env_remove("HOOKLEDGER_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("pruned 2 feed items"), "{stdout}");
    assert_eq!(app.store.feed_len().await.unwrap(), 1);
}

async fn retention_drops_the_oldest_items_in_bounded_batches(backend: Backend) {
    let app = app(backend).await;
    let now = app.clock.now_ms();
    app.clock.set_ms(now - 10_000);
    complete(&app, 0, 5).await;
    app.clock.set_ms(now);
    complete(&app, 5, 2).await;
    settled(&app).await;
    // Batches of 2: three full ones and the last, which stops at the first
    // young item.
    assert_eq!(
        app.store
            .prune_feed_in_batches(now - 5_000, 2)
            .await
            .unwrap(),
        5
    );
    assert_eq!(app.store.feed_len().await.unwrap(), 2);
}
