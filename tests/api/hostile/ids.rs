//! Ids that look hostile but are legitimate: ids and actions with URL
//! syntax (`/ ? # .. %2F`) and newlines are kept verbatim and dedup, and ids
//! holding U+0000 — which PostgreSQL text cannot store — get a definite
//! answer and do not fail the deliveries batched with them.

use serde_json::{json, Value};

use super::*;
use crate::backend_tests;

backend_tests!(
    ids_and_actions_with_url_syntax_and_newlines_are_kept_verbatim_and_dedup,
    ids_with_nul_characters_are_not_a_storage_failure,
    a_nul_id_does_not_fail_the_other_deliveries_in_its_batch,
);

/// Provider ids and actions are opaque strings: `/`, `?`, `#`, `..`, `%2F`
/// and newlines are kept byte for byte in the key, never decoded or
/// normalised, and a redelivery finds the same row.
async fn ids_and_actions_with_url_syntax_and_newlines_are_kept_verbatim_and_dedup(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let mut rows = Vec::new();
    for id in [
        "evt/../../admin?x=1#frag",
        "..",
        "../evt_1",
        "evt_1",
        "evt%2F..%2Fx",
        "evt/%2e%2e/x",
        "evt\nsecond line",
        "evt\r\nX-Injected: yes",
        "evt\ttab",
        "?#/",
        "évt/ストライプ",
    ] {
        let event = stripe_event(
            id,
            "invoice.paid/../x?y#z\n",
            now,
            json!({"id": "in/../1?#", "object": "invoice"}),
        );
        let first = app.deliver("stripe", &[], &event).await;
        assert_eq!(first.status, 202, "{id:?}: {:?}", first.body);
        assert_eq!(first.body["dedup_key"], format!("id:{id}"), "{id:?}");
        let again = app.deliver("stripe", &[], &event).await;
        assert_eq!(
            (again.status, again.body["status"].as_str(), again.id()),
            (200, Some("duplicate"), first.id()),
            "{id:?}"
        );
        let detail = app
            .admin_get(&format!("/admin/events/{}", first.id()))
            .await;
        assert_eq!(detail.body["provider_event_id"], id);
        assert_eq!(detail.body["action"], "invoice.paid/../x?y#z\n");
        assert_eq!(detail.body["object_id"], "in/../1?#");
        rows.push(first.id());
    }
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 11, "eleven distinct ids, eleven rows");

    // In a header, as far as HTTP allows (no newlines there).
    for id in ["../x?y#z", "/", "%2e%2e", "a/b/../c"] {
        let first = app
            .deliver("orders", &[("X-Request-Id", id)], &json!({"n": 1}))
            .await;
        assert_eq!(
            (first.status, first.body["dedup_key"].as_str()),
            (202, Some(format!("id:{id}").as_str())),
            "{:?}",
            first.body
        );
        let again = app
            .deliver("orders", &[("X-Request-Id", id)], &json!({"n": 2}))
            .await;
        assert_eq!((again.status, again.id()), (200, first.id()), "{id}");
    }

    // GitHub's composed action and Acuity's form fields.
    let github = app
        .deliver(
            "github",
            &[
                ("X-GitHub-Event", "issues"),
                ("X-GitHub-Delivery", "../d?#"),
            ],
            &json!({"action": "op/../en?#\n", "issue": {"id": 7}}),
        )
        .await;
    assert_eq!(github.status, 202, "{:?}", github.body);
    let detail = app
        .admin_get(&format!("/admin/events/{}", github.id()))
        .await;
    assert_eq!(detail.body["action"], "issues.op/../en?#\n");
    let form = |body: &'static str| {
        app.deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            body.as_bytes().to_vec(),
        )
    };
    let first = form("action=scheduled&id=..%2F..%2Fetc%3Fx%23y%0Az").await;
    assert_eq!(
        (first.status, first.body["dedup_key"].as_str()),
        (202, Some("act:scheduled:../../etc?x#y\nz")),
        "{:?}",
        first.body
    );
    let again = form("id=..%2F..%2Fetc%3Fx%23y%0Az&action=scheduled").await;
    assert_eq!((again.status, again.id()), (200, first.id()));
    assert_eq!(app.ledger_total().await, 11 + 4 + 1 + 1);
}

/// JSON strings may hold U+0000 (`\u0000`), which PostgreSQL text columns
/// cannot store. Such a delivery must get a definite answer on both
/// backends — accepted, or refused with 400 — never a 503 that the provider
/// retries forever.
async fn ids_with_nul_characters_are_not_a_storage_failure(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let bodies = [
        (
            "event id",
            "stripe",
            "application/json",
            serde_json::to_vec(&stripe_event(
                "evt_\u{0}nul",
                "invoice.paid",
                now,
                json!({"id": "in_nul"}),
            ))
            .unwrap(),
        ),
        (
            "action",
            "stripe",
            "application/json",
            serde_json::to_vec(&stripe_event(
                "evt_nul_action",
                "invoice.\u{0}paid",
                now,
                json!({"id": "in_nul"}),
            ))
            .unwrap(),
        ),
        (
            "object id",
            "stripe",
            "application/json",
            serde_json::to_vec(&stripe_event(
                "evt_nul_object",
                "invoice.paid",
                now,
                json!({"id": "in_\u{0}nul"}),
            ))
            .unwrap(),
        ),
        (
            "form object id",
            "acuity",
            "application/x-www-form-urlencoded",
            b"action=scheduled&id=a%00b".to_vec(),
        ),
        (
            "payload value",
            "orders",
            "application/json",
            br#"{"note":"a\u0000b"}"#.to_vec(),
        ),
    ];
    let mut stored = 0;
    for (what, source, content_type, body) in bodies {
        let answer = app
            .deliver_bytes(source, content_type, &[], body.clone())
            .await;
        match answer.status {
            202 => {
                stored += 1;
                let again = app.deliver_bytes(source, content_type, &[], body).await;
                assert_eq!((again.status, again.id()), (200, answer.id()), "{what}");
            }
            400 => assert_eq!(answer.error_code(), "invalid_payload", "{what}"),
            _ => panic!("{what} with U+0000: {} {:?}", answer.status, answer.body),
        }
        assert_eq!(app.ledger_total().await, stored, "{what}");
    }
    let mut alive = stored;
    assert_still_serving(&app, &mut alive, "NUL characters").await;
}

/// Deliveries share a ledger transaction under load (group commit). One
/// delivery the database cannot store must not fail the others in its batch.
async fn a_nul_id_does_not_fail_the_other_deliveries_in_its_batch(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            // Every request below lands in one batch.
            server_toml: "batch_linger_us = 200000".into(),
            ..Default::default()
        },
    )
    .await;
    let now = app.now_secs();
    let nul = stripe_event("evt_\u{0}", "invoice.paid", now, json!({"id": "in_1"}));
    let goods: Vec<Value> = (0..5)
        .map(|i| {
            stripe_event(
                &format!("evt_batch_{i}"),
                "invoice.paid",
                now,
                json!({"id": "in_1"}),
            )
        })
        .collect();
    let (poison, answers) = tokio::join!(
        app.deliver("stripe", &[], &nul),
        futures_util::future::join_all(goods.iter().map(|e| app.deliver("stripe", &[], e)))
    );
    for answer in &answers {
        assert_eq!(
            answer.status, 202,
            "a good delivery batched with a U+0000 id: {:?} (that one: {} {:?})",
            answer.body, poison.status, poison.body
        );
    }
}
