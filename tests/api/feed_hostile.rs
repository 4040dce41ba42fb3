//! The feed against hostile webhook data and readers (issue 13, found by a
//! breaker session): an action cannot write its own SSE fields, and a page
//! is bounded by bytes as well as by `limit`.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::backend_tests;
use crate::feed::{app_with_feed, feed, FEED_TOKEN};
use crate::helpers::*;
use hookledger::store::feed_budget::MAX_PAGE_BYTES;

backend_tests!(
    an_action_with_line_breaks_cannot_forge_sse_fields,
    a_page_of_large_items_stops_at_the_byte_budget_and_the_next_goes_on,
);

/// The raw text of `/feed/stream` up to the end of its first data event.
async fn first_event_text(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/feed/stream", app.address))
        .bearer_auth(FEED_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    loop {
        if let Some(start) = text.find("data: ") {
            if let Some(end) = text[start..].find("\n\n") {
                return text[..start + end].to_string();
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the stream sent its first event in time")
            .expect("the stream is open")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

async fn an_action_with_line_breaks_cannot_forge_sse_fields(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    let action = "evil\nid: ZmVlZDo5OTk5OTk5OjE\ndata: {\"forged\":true}\r\nretry: 1\revent: x";
    let body = stripe_event(
        "evt_evil",
        action,
        app.now_secs(),
        json!({"id": "in_evil", "object": "invoice"}),
    );
    let answer = app.deliver("stripe", &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    app.drain().await;
    let cursor = feed(&app, "").await["items"][0]["cursor"]
        .as_str()
        .unwrap()
        .to_string();

    // Split as an SSE parser does: CRLF, LF and CR each end a line.
    let text = first_event_text(&app).await;
    let lines: Vec<&str> = text
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
        .collect();
    let field = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{name}: ")[..]))
            .collect()
    };
    assert_eq!(field("id"), [cursor.as_str()], "{text:?}");
    assert_eq!(field("data").len(), 1, "one data line: {text:?}");
    assert!(field("retry").is_empty(), "{text:?}");
    assert_eq!(
        field("event"),
        ["evil\u{fffd}id: ZmVlZDo5OTk5OTk5OjE\u{fffd}data: {\"forged\":true}\u{fffd}\u{fffd}retry: 1\u{fffd}event: x"]
    );
    // The envelope keeps the action exactly.
    let data: serde_json::Value = serde_json::from_str(field("data")[0]).unwrap();
    assert_eq!(data["type"], action);
}

async fn a_page_of_large_items_stops_at_the_byte_budget_and_the_next_goes_on(backend: Backend) {
    let app = app_with_feed(backend, None).await;
    // Three events of ~900 KB; each envelope carries the object and the
    // payload, ~1.8 MB: two fit in the 4 MiB budget, three do not.
    let filler = "x".repeat(900_000);
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = stripe_event(
            &format!("evt_big_{n}"),
            "invoice.paid",
            app.now_secs(),
            json!({"id": format!("in_big_{n}"), "object": "invoice", "memo": filler}),
        );
        let answer = app.deliver("stripe", &[], &body).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        ids.push(answer.id());
    }
    app.drain().await;
    let ledger_ids = |page: &serde_json::Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["data"]["ledger_id"].as_i64().unwrap())
            .collect()
    };
    let first = feed(&app, "limit=100").await;
    let sizes: Vec<usize> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.to_string().len())
        .collect();
    assert_eq!(ledger_ids(&first), ids[..2], "item sizes {sizes:?}");
    assert!(sizes.iter().sum::<usize>() <= MAX_PAGE_BYTES as usize + 4096);
    let next = first["next_cursor"].as_str().unwrap();
    let second = feed(&app, &format!("limit=100&after={next}")).await;
    assert_eq!(ledger_ids(&second), ids[2..]);
}
