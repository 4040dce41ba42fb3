//! The ledger gauges of `/metrics` (SPEC §9), for alerting: rows by status
//! and the age of the oldest pending row, counted at scrape time (at most
//! once per `LEDGER_RECOUNT_MS` of the app's clock), on both backends.

use hookledger::routes::health::LEDGER_RECOUNT_MS;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(ledger_gauges_count_rows_by_status_and_age_the_oldest_pending,);

/// The value of the sample `name` (with its labels) in a metrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn scrape(app: &TestApp) -> String {
    let answer = app.get("/metrics").await;
    assert_eq!(answer.status, 200);
    answer.body.as_str().expect("metrics are text").to_string()
}

async fn ledger_gauges_count_rows_by_status_and_age_the_oldest_pending(backend: Backend) {
    let app = spawn_app(backend).await;
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "hookledger_events{status=\"pending\"}"), 0.0);
    assert_eq!(sample(&text, "hookledger_oldest_pending_seconds"), 0.0);

    for (i, id) in ["evt_g1", "evt_g2"].iter().enumerate() {
        let body = stripe_event(id, "invoice.paid", app.now_secs(), json!({"id": "in_g"}));
        assert_eq!(app.deliver("stripe", &[], &body).await.status, 202);
        if i == 0 {
            app.clock.advance_ms(30_000);
        }
    }
    app.clock.advance_ms(60_000);
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "hookledger_events{status=\"pending\"}"), 2.0);
    assert_eq!(sample(&text, "hookledger_events{status=\"done\"}"), 0.0);
    assert_eq!(sample(&text, "hookledger_events{status=\"dead\"}"), 0.0);
    assert_eq!(
        sample(&text, "hookledger_oldest_pending_seconds"),
        90.0,
        "the first event, 90 s ago"
    );

    assert_eq!(app.drain().await, 2);
    // Within the interval a scrape shows the last count...
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "hookledger_events{status=\"pending\"}"), 2.0);
    // ...and after it, a new one.
    app.clock.advance_ms(LEDGER_RECOUNT_MS);
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "hookledger_events{status=\"pending\"}"), 0.0);
    assert_eq!(sample(&text, "hookledger_events{status=\"done\"}"), 2.0);
    assert_eq!(sample(&text, "hookledger_oldest_pending_seconds"), 0.0);
}
