//! Divergent copies (SPEC §9): a duplicate whose canonical body differs
//! from the first one's is kept as a variant — at most five per ledger row,
//! each at most `max_body_bytes`, further copies only counted — and
//! `GET /admin/events/{id}/variants` shows them oldest first with the
//! JSON-pointer paths that changed. Through the server, and at the store,
//! where two writers race to record the same new body.

use hookledger::dedup::Strategy;
use hookledger::store::{NewEvent, RecordOutcome, Store};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    divergent_copies_are_kept_oldest_first_with_the_paths_they_changed,
    formatting_alone_never_makes_a_variant,
    five_variants_are_kept_and_further_copies_only_counted,
    the_variants_route_needs_the_token_and_names_unknown_events,
    simultaneous_copies_of_one_new_body_make_one_variant,
    racing_writers_of_one_new_body_make_one_variant,
    a_body_over_the_size_bound_is_only_counted,
    pruning_a_row_drops_its_variants,
);

fn invoice(amount: i64, extra: Value) -> Value {
    let mut object = json!({"id": "in_1", "object": "invoice", "amount_due": amount,
        "lines": [{"id": "li_1", "qty": 1}, {"id": "li_2", "qty": 2}]});
    if let (Some(o), Some(e)) = (object.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    stripe_event("evt_var", "invoice.updated", 1_700_000_000, object)
}

async fn variants_of(app: &TestApp, id: i64) -> Value {
    let answer = app.admin_get(&format!("/admin/events/{id}/variants")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

fn diff_of(item: &Value) -> Vec<(String, String)> {
    item["diff"]
        .as_array()
        .expect("a diff list")
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(path: &str, change: &str) -> (String, String) {
    (path.to_string(), change.to_string())
}

async fn divergent_copies_are_kept_oldest_first_with_the_paths_they_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = invoice(100, json!({}));
    let answer = app.deliver("stripe", &[], &first).await;
    assert_eq!(answer.status, 202);
    let id = answer.id();
    assert_eq!(
        variants_of(&app, id).await,
        json!({"items": [], "overflow": 0}),
        "no copy yet"
    );

    let start = app.clock.now_ms();
    // The same body again is a plain duplicate, not a variant.
    assert_eq!(app.deliver("stripe", &[], &first).await.status, 200);
    let changed = invoice(250, json!({"a/b~c": true}));
    app.clock.advance_ms(1_000);
    assert_eq!(app.deliver("stripe", &[], &changed).await.id(), id);
    let mut shorter = invoice(100, json!({}));
    shorter["data"]["object"]["lines"] = json!([{"id": "li_1", "qty": 5}]);
    shorter["data"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("object");
    app.clock.advance_ms(1_000);
    assert_eq!(app.deliver("stripe", &[], &shorter).await.id(), id);
    app.clock.advance_ms(1_000);
    assert_eq!(app.deliver("stripe", &[], &changed).await.id(), id);

    let body = variants_of(&app, id).await;
    assert_eq!(body["overflow"], 0);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{body}");
    assert_eq!(items[0]["payload"], changed);
    assert_eq!(items[0]["copies"], 2, "two deliveries of that body");
    assert_eq!(
        items[0]["first_seen_at"],
        hookledger::clock::rfc3339(start + 1_000)
    );
    assert_eq!(
        items[0]["body_hash"].as_str().unwrap().len(),
        64,
        "hex SHA-256"
    );
    assert_eq!(
        diff_of(&items[0]),
        vec![
            pair("/data/object/a~1b~0c", "added"),
            pair("/data/object/amount_due", "changed"),
        ]
    );
    assert_eq!(items[1]["payload"], shorter);
    assert_eq!(items[1]["copies"], 1);
    assert_eq!(
        diff_of(&items[1]),
        vec![
            pair("/data/object/lines/0/qty", "changed"),
            pair("/data/object/lines/1", "removed"),
            pair("/data/object/object", "removed"),
        ]
    );
    let duplicates = app.admin_get("/admin/duplicates").await.body;
    assert_eq!(duplicates["items"][0]["duplicates"], 4);
    assert_eq!(duplicates["items"][0]["payload_differs"], true);
}

async fn formatting_alone_never_makes_a_variant(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = br#"{"id":"evt_fmt","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_9","object":"invoice","total":5}}}"#;
    let answer = app
        .deliver_bytes("stripe", "application/json", &[], first.to_vec())
        .await;
    assert_eq!(answer.status, 202);
    let reordered = br#"{ "type": "invoice.paid", "data": { "object": { "total": 5, "object": "invoice", "id": "in_9" } },
        "created": 1700000000, "id": "evt_fmt" }"#;
    let again = app
        .deliver_bytes("stripe", "application/json", &[], reordered.to_vec())
        .await;
    assert_eq!((again.status, again.id()), (200, answer.id()));
    assert_eq!(
        variants_of(&app, answer.id()).await,
        json!({"items": [], "overflow": 0})
    );
    let row = &app.admin_get("/admin/duplicates").await.body["items"][0];
    assert_eq!(row["payload_differs"], false);
}

async fn five_variants_are_kept_and_further_copies_only_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .deliver("stripe", &[], &invoice(0, json!({})))
        .await
        .id();
    for amount in 1..=7 {
        app.clock.advance_ms(10);
        assert_eq!(
            app.deliver("stripe", &[], &invoice(amount, json!({})))
                .await
                .id(),
            id
        );
    }
    // A kept body again still counts on its variant; a sixth body again is
    // overflow again.
    assert_eq!(
        app.deliver("stripe", &[], &invoice(2, json!({})))
            .await
            .id(),
        id
    );
    assert_eq!(
        app.deliver("stripe", &[], &invoice(6, json!({})))
            .await
            .id(),
        id
    );
    let body = variants_of(&app, id).await;
    let items = body["items"].as_array().unwrap();
    let amounts: Vec<i64> = items
        .iter()
        .map(|i| {
            i["payload"]["data"]["object"]["amount_due"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(amounts, vec![1, 2, 3, 4, 5], "the first five, oldest first");
    let copies: Vec<i64> = items
        .iter()
        .map(|i| i["copies"].as_i64().unwrap())
        .collect();
    assert_eq!(copies, vec![1, 2, 1, 1, 1]);
    assert_eq!(body["overflow"], 3, "bodies 6 and 7, and 6 again");
}

async fn the_variants_route_needs_the_token_and_names_unknown_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .deliver("stripe", &[], &invoice(1, json!({})))
        .await
        .id();
    let url = format!("{}/admin/events/{id}/variants", app.address);
    let none = read(app.client.get(&url).send().await.unwrap()).await;
    assert_eq!((none.status, none.error_code()), (401, "unauthorized"));
    let wrong = read(
        app.client
            .get(&url)
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((wrong.status, wrong.error_code()), (401, "unauthorized"));
    for path in [
        "/admin/events/999999/variants",
        "/admin/events/abc/variants",
    ] {
        let missing = app.admin_get(path).await;
        assert_eq!(
            (missing.status, missing.error_code()),
            (404, "not_found"),
            "{path}"
        );
        assert!(missing.body["error"]["message"].is_string());
    }
}

/// Eight deliveries of one new body at once, over HTTP: whatever batches
/// and writers they land in, one variant counts all eight.
async fn simultaneous_copies_of_one_new_body_make_one_variant(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .deliver("stripe", &[], &invoice(1, json!({})))
        .await
        .id();
    let other = invoice(2, json!({}));
    let answers =
        futures_util::future::join_all((0..8).map(|_| app.deliver("stripe", &[], &other))).await;
    for answer in answers {
        assert_eq!((answer.status, answer.id()), (200, id));
    }
    let body = variants_of(&app, id).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["items"][0]["copies"], 8);
    assert_eq!(body["overflow"], 0);
}

fn copy(key: &str, hash: &str, payload: &str, at: i64) -> NewEvent {
    NewEvent {
        source: "s".into(),
        dedup_key: key.into(),
        previous_key: None,
        strategy: Strategy::EventId,
        ignored: false,
        provider_event_id: key.strip_prefix("id:").map(str::to_string),
        action: None,
        // No object: no object lock orders the writers, only the row's.
        object_type: None,
        object_id: None,
        event_time_ms: at,
        payload: payload.into(),
        body_hash: hash.into(),
        received_at_ms: at,
    }
}

fn accepted(o: RecordOutcome) -> i64 {
    match o {
        RecordOutcome::Accepted { id } => id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

fn duplicate_of(o: RecordOutcome) -> i64 {
    match o {
        RecordOutcome::Duplicate { id, .. } => id,
        other => panic!("expected duplicate, got {other:?}"),
    }
}

async fn store_for(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    (store, db)
}

/// Two writers record a copy with the same new body at the same time. On
/// PostgreSQL the row is locked by another transaction first, so both
/// writers are inside their transactions, waiting on it, before either goes
/// on: without the row lock ordering their variant writes, the second
/// insert of the same hash would fail or count apart. (SQLite has one
/// writer; there they are gathered into one batch or run back to back.)
/// A batch holding two copies of a third body counts both on one variant.
async fn racing_writers_of_one_new_body_make_one_variant(backend: Backend) {
    let (store, _db) = store_for(backend).await;
    let id = accepted(
        store
            .record(&copy("id:race", "h1", r#"{"v":1}"#, 1_000))
            .await
            .unwrap(),
    );
    let mut blocker = None;
    if let Store::Postgres(pg) = &store {
        let mut tx = pg.pool.begin().await.unwrap();
        sqlx::query("SELECT id FROM events WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        blocker = Some(tx);
    }
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_batch(&[copy("id:race", "h2", r#"{"v":2}"#, 2_000 + i)])
                    .await
            })
        })
        .collect();
    if let (Some(tx), Store::Postgres(pg)) = (blocker, &store) {
        wait_until("both writers wait on the ledger row", || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pg.pool)
            .await
            .unwrap();
            waiting == 2
        })
        .await;
        tx.commit().await.unwrap();
    }
    for writer in writers {
        let out = writer.await.unwrap().expect("both writers succeed");
        assert_eq!(duplicate_of(out[0]), id);
    }
    let batch = [
        copy("id:race", "h3", r#"{"v":3}"#, 3_000),
        copy("id:race", "h3", r#"{"v":3}"#, 3_001),
    ];
    for out in store.record_batch(&batch).await.unwrap() {
        assert_eq!(duplicate_of(out), id);
    }

    let found = store.variants(id).await.unwrap().expect("the row exists");
    let kept: Vec<(&str, i64, &str)> = found
        .items
        .iter()
        .map(|v| (v.body_hash.as_str(), v.copies, v.payload.as_str()))
        .collect();
    assert_eq!(kept, vec![("h2", 2, r#"{"v":2}"#), ("h3", 2, r#"{"v":3}"#)]);
    assert_eq!(found.items[1].first_seen_at, 3_000);
    assert_eq!(found.overflow, 0);
    assert_eq!(found.first_payload, r#"{"v":1}"#);
    let row = store.event(id).await.unwrap().unwrap().row;
    assert_eq!((row.duplicates, row.payload_differs), (4, true));
}

async fn a_body_over_the_size_bound_is_only_counted(backend: Backend) {
    let (store, _db) = store_for(backend).await;
    store.keep_variants_up_to(10);
    let id = accepted(store.record(&copy("id:big", "h1", "{}", 1)).await.unwrap());
    let small = r#"{"a":1}"#;
    let large = r#"{"a":"0123456789"}"#;
    for (hash, payload) in [("h2", small), ("h3", large), ("h3", large)] {
        let out = store.record(&copy("id:big", hash, payload, 2)).await;
        assert_eq!(duplicate_of(out.unwrap()), id);
    }
    let found = store.variants(id).await.unwrap().unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].payload, small);
    assert_eq!(found.overflow, 2, "the large body, twice");
    assert!(store.variants(id + 1000).await.unwrap().is_none());
}

async fn pruning_a_row_drops_its_variants(backend: Backend) {
    let (store, _db) = store_for(backend).await;
    let old = accepted(store.record(&copy("id:old", "h1", "{}", 1)).await.unwrap());
    let kept = accepted(
        store
            .record(&copy("id:new", "h1", "{}", 500))
            .await
            .unwrap(),
    );
    for (key, at) in [("id:old", 2), ("id:new", 501)] {
        for hash in ["h2", "h3", "h4", "h5", "h6", "h7"] {
            store.record(&copy(key, hash, "[]", at)).await.unwrap();
        }
    }
    // Only finished rows are pruned.
    mark_done(&store, old).await;
    assert_eq!(store.prune(100).await.unwrap(), 1);
    assert!(store.variants(old).await.unwrap().is_none());
    let left: (i64, i64) = match &store {
        Store::Sqlite(s) => sqlx::query_as(COUNT_LEFT).fetch_one(&s.pool).await.unwrap(),
        Store::Postgres(p) => sqlx::query_as(COUNT_LEFT).fetch_one(&p.pool).await.unwrap(),
    };
    assert_eq!(left, (5, 1), "only the kept row's variants and overflow");
    let found = store.variants(kept).await.unwrap().unwrap();
    assert_eq!((found.items.len(), found.overflow), (5, 1));
}

const COUNT_LEFT: &str = "SELECT (SELECT COUNT(*) FROM event_variants), \
    (SELECT COUNT(*) FROM event_variant_overflow)";

async fn mark_done(store: &Store, id: i64) {
    let sql = "UPDATE events SET status = 'done', processed_at = 1 WHERE id = $1";
    let changed = match store {
        Store::Sqlite(s) => sqlx::query(sql)
            .bind(id)
            .execute(&s.pool)
            .await
            .unwrap()
            .rows_affected(),
        Store::Postgres(p) => sqlx::query(sql)
            .bind(id)
            .execute(&p.pool)
            .await
            .unwrap()
            .rows_affected(),
    };
    assert_eq!(changed, 1);
}
