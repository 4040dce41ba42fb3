//! The retention guard of `prune` (SPEC §6, §10): a row younger than its
//! source's resend horizon (stripe 30 d, shopify 2 d, others 3 d, or
//! `horizon_secs`) is its event's dedup key while the provider may still
//! resend it, so a prune keeps it unless `--force`; dead rows stay unless
//! `--dead`; and the prune says how many it kept for each reason.

use std::process::Command;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;
use hookledger::sources::providers::DEFAULT_RESEND_HORIZON_SECS;
use hookledger::store::retention::{PrunePolicy, PruneReport};

backend_tests!(
    prune_keeps_rows_inside_their_horizon_and_dead_rows_unless_told,
    hookledger_prune_says_what_it_kept_and_force_drops_it,
);

const DAY_MS: i64 = 86_400_000;

async fn github_issue(app: &TestApp, guid: &str) -> i64 {
    let answer = app
        .deliver(
            "github",
            &[("X-GitHub-Delivery", guid), ("X-GitHub-Event", "issues")],
            &json!({ "action": "opened", "issue": { "id": 7 } }),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.id()
}

fn policy(app: &TestApp, older_than_ms: i64, force: bool, dead: bool) -> PrunePolicy {
    let now = app.clock.now_ms();
    PrunePolicy {
        before_ms: now - older_than_ms,
        now_ms: now,
        horizons_secs: app
            .config
            .sources
            .iter()
            .map(|(name, s)| (name.clone(), s.horizon_secs))
            .collect(),
        default_horizon_secs: DEFAULT_RESEND_HORIZON_SECS,
        force,
        dead,
    }
}

async fn prune_keeps_rows_inside_their_horizon_and_dead_rows_unless_told(backend: Backend) {
    let app = spawn_app(backend).await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_dead"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&app.upstream)
        .await;
    let now = app.clock.now_ms();
    app.clock.set_ms(now - 40 * DAY_MS);
    let stripe_old = deliver_invoice(&app, "stripe", "evt_old", "in_old").await;
    let github_old = github_issue(&app, "guid-old").await;
    let dead = deliver_invoice(&app, "stripe_fetch", "evt_dead", "in_dead").await;
    app.clock.set_ms(now - 10 * DAY_MS);
    let stripe_young = deliver_invoice(&app, "stripe", "evt_young", "in_young").await;
    let github_young = github_issue(&app, "guid-young").await;
    app.clock.set_ms(now);
    app.drain().await;
    assert_eq!(event(&app, dead).await["status"], "dead");

    let gone = |id: i64| {
        let app = &app;
        async move { app.admin_get(&format!("/admin/events/{id}")).await.status == 404 }
    };
    // Older than a day: the 40-day-old rows go, the Stripe row of 10 days
    // stays (Stripe resends for 30), GitHub's of 10 days goes (3), and the
    // dead row stays.
    let report = app
        .store
        .prune_with(&policy(&app, DAY_MS, false, false))
        .await
        .unwrap();
    assert_eq!(
        report,
        PruneReport {
            dropped: 3,
            kept_for_horizon: 1,
            kept_dead: 1
        }
    );
    for id in [stripe_old, github_old, github_young] {
        assert!(gone(id).await, "row {id} dropped");
    }
    assert!(!gone(stripe_young).await && !gone(dead).await);
    // A resend of the young Stripe event is still a duplicate.
    let resend = app
        .deliver(
            "stripe",
            &[],
            &stripe_event(
                "evt_young",
                "invoice.paid",
                app.now_secs(),
                json!({"id": "in_young", "object": "invoice"}),
            ),
        )
        .await;
    assert_eq!(resend.body["status"], "duplicate");

    let with_dead = app
        .store
        .prune_with(&policy(&app, DAY_MS, false, true))
        .await
        .unwrap();
    assert_eq!((with_dead.dropped, with_dead.kept_dead), (1, 0));
    assert!(gone(dead).await);
    let forced = app
        .store
        .prune_with(&policy(&app, DAY_MS, true, false))
        .await
        .unwrap();
    assert_eq!((forced.dropped, forced.kept_for_horizon), (1, 0));
    assert!(gone(stripe_young).await);
}

async fn hookledger_prune_says_what_it_kept_and_force_drops_it(backend: Backend) {
    // `prune` runs on the real clock: the rows are received now.
    let app = spawn_app(backend).await;
    deliver_invoice(&app, "stripe", "evt_now", "in_now").await;
    github_issue(&app, "guid-now").await;
    app.drain().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hookledger.toml");
    let text = test_config_text(&app.db.url, "http://127.0.0.1:9", &TestOptions::default());
    std::fs::write(&config_path, text).unwrap();
    let prune = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_hookledger"))
            .arg("--config")
            .arg(&config_path)
            .arg("prune")
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("HOOKLEDGER_ADMIN_TOKEN")
            .env_remove("HOOKLEDGER_CONFIG")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let kept = prune(&["--older-than", "0s"]);
    assert!(kept.contains("pruned 0 ledger rows"), "{kept}");
    assert!(
        kept.contains("kept 2 ledger rows younger than their source's resend horizon"),
        "{kept}"
    );
    assert_eq!(app.ledger_total().await, 2);
    let forced = prune(&["--older-than", "0s", "--force"]);
    assert!(forced.contains("pruned 2 ledger rows"), "{forced}");
    assert_eq!(app.ledger_total().await, 0);
}
