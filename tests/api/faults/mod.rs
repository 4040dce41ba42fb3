//! Faults around hookledger, black-box: the database going away or being
//! locked, more requests than `max_in_flight`, SIGTERM in the middle of work,
//! upstreams that misbehave in every way below and above HTTP, and a debug
//! log that must not carry one secret.
//!
//! What is asserted is what a provider, an operator and the ledger see:
//! answers (status, code, `Retry-After`), `/readyz`, the statuses, attempts
//! and errors of events, and that nothing accepted is ever lost. Waiting is
//! on conditions with a deadline; in-process apps run on a manual clock,
//! spawned binaries on the real one.

use serde_json::json;

use crate::helpers::*;

mod overload;
mod secrets;
mod shutdown;
mod storage;
mod upstream;

/// Delivers a Stripe invoice event; returns the answer as is.
async fn invoice(app: &TestApp, source: &str, event_id: &str, invoice_id: &str) -> Answer {
    let body = stripe_event(
        event_id,
        "invoice.paid",
        app.now_secs(),
        json!({"id": invoice_id, "object": "invoice"}),
    );
    app.deliver(source, &[], &body).await
}

/// A 503 as the SPEC has it: `storage_unavailable` with a usable `Retry-After`.
fn assert_storage_unavailable(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 503, "{what}: {:?}", answer.body);
    assert_eq!(answer.error_code(), "storage_unavailable", "{what}");
    assert_retry_after(answer, what);
}

fn assert_retry_after(answer: &Answer, what: &str) {
    let retry_after = answer
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: {} without Retry-After", answer.status))
        .to_str()
        .unwrap();
    let secs: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {retry_after:?} is not seconds"));
    assert!((1..=60).contains(&secs), "{what}: Retry-After {secs}");
}

async fn post_json(
    client: &reqwest::Client,
    address: &str,
    source: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Answer {
    let mut request = client
        .post(format!("{address}/webhooks/{source}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    read(request.send().await.expect("delivering")).await
}
