//! `domain_objects` as a team's own code reads it (issue 13, item 6): `data`
//! is `jsonb` on PostgreSQL (TEXT on SQLite) and holds what each kind of
//! source's processing produced; what `jsonb` refuses — a NUL escape, a lone
//! surrogate, a number beyond `numeric` — is stored as the documented
//! replacement on both backends alike (`store::domain_data`), and the event
//! is processed, not stuck; the migration converts the rows written before.

use std::path::Path;
use std::str::FromStr;

use hookledger::store::domain_data::storable;
use hookledger::store::Store;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    data_is_the_payload_object_without_fetch_and_the_fetched_document_with_it,
    a_nul_in_a_payload_string_becomes_u_fffd_and_an_escaped_backslash_stays,
    lone_surrogates_in_a_fetched_document_become_u_fffd,
    a_number_beyond_numeric_becomes_null,
    a_fetched_document_nested_too_deep_makes_its_event_dead,
    consumers_read_data_with_the_databases_json_operators,
    the_migration_converts_the_rows_written_before_it,
);

async fn data(app: &TestApp, source: &str, object_type: &str, object_id: &str) -> Value {
    let row = app
        .store
        .domain_object(source, object_type, object_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no domain row for {source}/{object_type}/{object_id}"));
    serde_json::from_str(&row.data).expect("data is JSON")
}

/// Delivers, drains and asserts the event finished `done` in one attempt.
async fn processed(app: &TestApp, answer: Answer) -> i64 {
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(app.drain().await, 1);
    let done = event(app, answer.id()).await;
    assert_eq!(
        (done["status"].as_str(), done["attempts"].as_i64()),
        (Some("done"), Some(1)),
        "{:?}",
        done["last_error"]
    );
    answer.id()
}

async fn data_is_the_payload_object_without_fetch_and_the_fetched_document_with_it(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // Stripe without fetch: the payload's `/data/object`.
    let invoice = json!({"id": "in_1", "object": "invoice", "amount_due": 500, "paid": true});
    let body = stripe_event("evt_1", "invoice.paid", app.now_secs(), invoice.clone());
    processed(&app, app.deliver("stripe", &[], &body).await).await;
    assert_eq!(data(&app, "stripe", "invoice", "in_1").await, invoice);

    // Stripe with fetch: the fetched document whole (here the event, as
    // `/v1/events/{event_id}` answers), not its `/data/object`.
    let document = json!({"id": "evt_2", "object": "event",
        "data": {"object": {"id": "in_2", "object": "invoice", "paid": true}}});
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&document))
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_2", "in_2").await;
    assert_eq!(app.drain().await, 1);
    assert_eq!(event(&app, id).await["status"], "done");
    assert_eq!(
        data(&app, "stripe_fetch", "invoice", "in_2").await,
        document
    );

    // Any other preset without fetch: the whole payload.
    let payload = json!({"invoice": {"id": "in_3"}, "total": "9.99"});
    let answer = app
        .deliver_bytes(
            "billing",
            "application/json",
            &[],
            serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    processed(&app, answer).await;
    assert_eq!(data(&app, "billing", "invoice", "in_3").await, payload);

    // A form body: its flat object of strings.
    let answer = app
        .deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            b"action=scheduled&id=42&calendarID=7".to_vec(),
        )
        .await;
    processed(&app, answer).await;
    assert_eq!(
        data(&app, "acuity", "appointment", "42").await,
        json!({"action": "scheduled", "id": "42", "calendarID": "7"})
    );
}

async fn a_nul_in_a_payload_string_becomes_u_fffd_and_an_escaped_backslash_stays(backend: Backend) {
    let app = spawn_app(backend).await;
    // The whole payload: a NUL in a value and in a key; `\\u0000` is an
    // escaped backslash and the letters u0000, which must stay.
    let body = br#"{"invoice":{"id":"in_nul"},"note":"a\u0000b","k\u0000":[1,"\u0000\u0000"],"literal":"a\\u0000b","odd":"\\\u0000"}"#;
    let id = processed(
        &app,
        app.deliver_bytes("billing", "application/json", &[], body.to_vec())
            .await,
    )
    .await;
    assert_eq!(
        data(&app, "billing", "invoice", "in_nul").await,
        json!({"invoice": {"id": "in_nul"}, "note": "a\u{fffd}b",
            "k\u{fffd}": [1, "\u{fffd}\u{fffd}"], "literal": "a\\u0000b", "odd": "\\\u{fffd}"})
    );
    let payload = &event(&app, id).await["payload"];
    assert_eq!(
        (&payload["note"], &payload["literal"]),
        (&json!("a\u{0}b"), &json!("a\\u0000b")),
        "the ledger keeps the payload as received"
    );

    // Stripe's `/data/object`, taken out of the parsed payload.
    let object = json!({"id": "in_nul2", "object": "invoice", "memo": "x\u{0}y"});
    let body = stripe_event("evt_nul2", "invoice.paid", app.now_secs(), object);
    processed(&app, app.deliver("stripe", &[], &body).await).await;
    assert_eq!(
        data(&app, "stripe", "invoice", "in_nul2").await["memo"],
        "x\u{fffd}y"
    );
}

async fn lone_surrogates_in_a_fetched_document_become_u_fffd(backend: Backend) {
    let app = spawn_app(backend).await;
    // What JavaScript's JSON.stringify writes for a string cut inside an
    // emoji; the whole emoji (a pair) is kept.
    let document =
        r#"{"id":"evt_s","cut":"ab\ud83d","low":"\ude00","pair":"\ud83d\ude00","nul":"\u0000"}"#;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_s"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(document, "application/json"))
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_s", "in_s").await;
    assert_eq!(app.drain().await, 1);
    let done = event(&app, id).await;
    assert_eq!(done["status"], "done", "{:?}", done["last_error"]);
    assert_eq!(
        data(&app, "stripe_fetch", "invoice", "in_s").await,
        json!({"id": "evt_s", "cut": "ab\u{fffd}", "low": "\u{fffd}",
            "pair": "\u{1F600}", "nul": "\u{fffd}"})
    );
}

async fn a_number_beyond_numeric_becomes_null(backend: Backend) {
    let app = spawn_app(backend).await;
    // serde_json reads 1e-20000 as 0, so such a payload is accepted.
    let body = br#"{"invoice":{"id":"in_n"},"tiny":1e-20000,"small":1e-300,"text":"1e-20000"}"#;
    processed(
        &app,
        app.deliver_bytes("billing", "application/json", &[], body.to_vec())
            .await,
    )
    .await;
    assert_eq!(
        data(&app, "billing", "invoice", "in_n").await,
        json!({"invoice": {"id": "in_n"}, "tiny": null, "small": 1e-300, "text": "1e-20000"})
    );
}

/// Nesting cannot be rewritten, and PostgreSQL's parser gives out some ten
/// thousand levels down: a fetched answer must nest no deeper than a
/// payload can (serde_json's 128 levels), else its event is dead at once
/// rather than failing every completion batch it joins.
async fn a_fetched_document_nested_too_deep_makes_its_event_dead(backend: Backend) {
    let app = spawn_app(backend).await;
    let levels = 20_000;
    let document = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_deep"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(document, "application/json"))
        .mount(&app.upstream)
        .await;
    let id = deliver_invoice(&app, "stripe_fetch", "evt_deep", "in_deep").await;
    assert_eq!(app.drain().await, 1);
    let dead = event(&app, id).await;
    assert_eq!(
        (dead["status"].as_str(), dead["attempts"].as_i64()),
        (Some("dead"), Some(1))
    );
    let error = dead["last_error"].as_str().unwrap();
    assert!(error.contains("deeper than 128 levels"), "{error}");
    assert!(app
        .store
        .domain_object("stripe_fetch", "invoice", "in_deep")
        .await
        .unwrap()
        .is_none());
}

/// Runs `query` on the store's database; its one text column, per row.
async fn texts(store: &Store, query: &str) -> Vec<Option<String>> {
    match store {
        Store::Sqlite(s) => sqlx::query_scalar(query).fetch_all(&s.pool).await,
        Store::Postgres(pg) => sqlx::query_scalar(query).fetch_all(&pg.pool).await,
    }
    .unwrap_or_else(|e| panic!("{query}: {e}"))
}

async fn consumers_read_data_with_the_databases_json_operators(backend: Backend) {
    let app = spawn_app(backend).await;
    let invoice = json!({"id": "in_q", "object": "invoice", "status": "paid",
        "customer": {"email": "a@example.com"}, "amount_due": 500});
    let body = stripe_event("evt_q", "invoice.paid", app.now_secs(), invoice);
    processed(&app, app.deliver("stripe", &[], &body).await).await;

    let column_type = match backend {
        Backend::Sqlite => {
            "SELECT type FROM pragma_table_info('domain_objects') WHERE name = 'data'"
        }
        Backend::Postgres => {
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'domain_objects' \
               AND column_name = 'data'"
        }
    };
    let expected = match backend {
        Backend::Sqlite => "TEXT",
        Backend::Postgres => "jsonb",
    };
    assert_eq!(
        texts(&app.store, column_type).await,
        [Some(expected.to_string())]
    );

    // The same query on both: `->` and `->>` with a key.
    assert_eq!(
        texts(
            &app.store,
            "SELECT data -> 'customer' ->> 'email' FROM domain_objects \
             WHERE source = 'stripe' AND data ->> 'status' = 'paid'"
        )
        .await,
        [Some("a@example.com".to_string())]
    );
    if backend == Backend::Postgres {
        assert_eq!(
            texts(
                &app.store,
                "SELECT object_id FROM domain_objects \
                 WHERE data @> '{\"status\": \"paid\"}' AND (data -> 'amount_due')::int > 100"
            )
            .await,
            [Some("in_q".to_string())]
        );
    }
}

const OLD_ROWS: [(&str, &str); 5] = [
    (
        "nul",
        r#"{"a":"x\u0000y","lit":"x\\u0000y","k\u0000":"\\\u0000"}"#,
    ),
    (
        "cut",
        r#"["\ud83d","\ude00","\ud83d\ude00","\\ud83d\ude00"]"#,
    ),
    (
        "num",
        r#"{"tiny":1e-20000,"neg":-1e131072,"ok":1e-300,"s":"1e-20000"}"#,
    ),
    ("both", r#"{"k\u0000":[0e-99999,"\u0000"]}"#),
    ("plain", "{ \"b\": 1,  \"a\": [true, null] }"),
];

/// The same rows as `data` after the migration to `jsonb`, parsed.
fn converted(object_id: &str) -> Value {
    match object_id {
        "nul" => json!({"a": "x\u{fffd}y", "lit": "x\\u0000y", "k\u{fffd}": "\\\u{fffd}"}),
        "cut" => json!(["\u{fffd}", "\u{fffd}", "\u{1F600}", "\\ud83d\u{fffd}"]),
        "num" => json!({"tiny": null, "neg": null, "ok": 1e-300, "s": "1e-20000"}),
        "both" => json!({"k\u{fffd}": [null, "\u{fffd}"]}),
        "plain" => json!({"b": 1, "a": [true, null]}),
        other => unreachable!("{other}"),
    }
}

/// The migrations before 0007, in a folder of their own: a database made
/// with them is one that an earlier hookledger left.
fn migrations_before_0007(backend: Backend) -> tempfile::TempDir {
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let all = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    let dir = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(&all).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let version: u32 = name[..4].parse().unwrap();
        if version < 7 {
            std::fs::copy(all.join(&name), dir.path().join(&name)).unwrap();
            copied += 1;
        }
    }
    assert!(copied >= 5, "0001 to 0005 at least");
    dir
}

const INSERT_OLD_ROW: &str = "INSERT INTO domain_objects (source, object_type, object_id, data, \
    last_event_id, event_time, updated_at) VALUES ('s', 't', $1, $2, 1, 1, 1)";

async fn the_migration_converts_the_rows_written_before_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let earlier = sqlx::migrate::Migrator::new(migrations_before_0007(backend).path())
        .await
        .unwrap();
    match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            earlier.run(&pool).await.unwrap();
            for (object_id, data) in OLD_ROWS {
                sqlx::query(INSERT_OLD_ROW)
                    .bind(object_id)
                    .bind(data)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            earlier.run(&pool).await.unwrap();
            for (object_id, data) in OLD_ROWS {
                sqlx::query(INSERT_OLD_ROW)
                    .bind(object_id)
                    .bind(data)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
    }

    let store = Store::open(&db.url).await.expect("the migration succeeds");
    for (object_id, old) in OLD_ROWS {
        let row = store
            .domain_object("s", "t", object_id)
            .await
            .unwrap()
            .unwrap();
        match backend {
            // SQLite holds them all: rows written before are left as they are.
            Backend::Sqlite => assert_eq!(row.data, old),
            Backend::Postgres => assert_eq!(
                serde_json::from_str::<Value>(&row.data).unwrap(),
                converted(object_id),
                "{object_id}"
            ),
        }
    }
    if backend == Backend::Postgres {
        assert_eq!(
            texts(
                &store,
                "SELECT data ->> 'a' FROM domain_objects WHERE object_id = 'nul'"
            )
            .await,
            [Some("x\u{fffd}y".to_string())]
        );
        assert_eq!(
            texts(
                &store,
                "SELECT proname::text FROM pg_proc WHERE proname LIKE 'hookledger%'"
            )
            .await,
            Vec::<Option<String>>::new(),
            "the migration's helpers are gone"
        );
    }
}

/// Everything `storable` writes, PostgreSQL's `jsonb` takes — right up to
/// `numeric`'s limits — and what it rewrites, `jsonb` indeed refuses as it
/// was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonb_takes_every_text_storable_writes() {
    let Some(url) = postgres_url() else {
        eprintln!("skipped: jsonb_takes_every_text_storable_writes (set {POSTGRES_ENV} to run it)");
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let within = [
        "[1e-16383, 1000e-16383, 1e131071, 0.001e131074, 0e131072, 0e1073741822, -0.0]".to_string(),
        format!("[0.{}1]", "0".repeat(16_382)),
        format!("[{}]", "9".repeat(131_072)),
        r#"["\ud83d\ude00", "\\u0000", "\\\\ud83d"]"#.to_string(),
    ];
    let beyond = [
        "[1e-16384]".to_string(),
        "[1000e-16384]".to_string(),
        "[-1e131072]".to_string(),
        "[0.0001e131076]".to_string(),
        "[0e-16384]".to_string(),
        "[0e1073741823]".to_string(),
        format!("[0.{}1]", "0".repeat(16_383)),
        format!("[{}]", "9".repeat(131_073)),
        r#"["\u0000"]"#.to_string(),
        r#"["\\\u0000"]"#.to_string(),
        r#"["\ud83d"]"#.to_string(),
        r#"["\ude00\ud83d"]"#.to_string(),
    ];
    let takes = |text: String| {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT $1::text::jsonb")
                .bind(text)
                .execute(&pool)
                .await
                .is_ok()
        }
    };
    for text in within {
        assert_eq!(storable(&text), text.as_str(), "kept: {:.60}", text);
        assert!(takes(text.clone()).await, "jsonb takes {:.60}", text);
    }
    for text in beyond {
        let stored = storable(&text).into_owned();
        assert_ne!(stored, text, "rewritten: {:.60}", text);
        assert!(!takes(text.clone()).await, "jsonb refuses {:.60}", text);
        assert!(takes(stored.clone()).await, "jsonb takes {:.60}", stored);
    }
    pool.close().await;
}
