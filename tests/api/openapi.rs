//! The OpenAPI document (SPEC §9): served at `/openapi.json` without auth,
//! equal to the committed `openapi.json`, and naming only operations the
//! router serves. After a change to the API, rewrite the committed file
//! with `cargo run -- openapi > openapi.json` (or run this test with
//! `HOOKLEDGER_WRITE_OPENAPI=1`).

use std::path::Path;

use serde_json::Value;

use crate::feed::{feed_toml, FEED_TOKEN};
use crate::helpers::*;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
const WRITE_ENV: &str = "HOOKLEDGER_WRITE_OPENAPI";

async fn feed_app() -> TestApp {
    spawn_app_with(
        Backend::Sqlite,
        TestOptions {
            extra_toml: feed_toml(None),
            ..TestOptions::default()
        },
    )
    .await
}

async fn served(app: &TestApp) -> (reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "no token is needed");
    let headers = response.headers().clone();
    (headers, response.text().await.unwrap())
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = feed_app().await;
    let (headers, text) = served(&app).await;
    assert_eq!(headers["content-type"], "application/json");
    if std::env::var_os(WRITE_ENV).is_some() {
        std::fs::write(COMMITTED, &text).expect("writing openapi.json");
    }
    let committed = std::fs::read_to_string(Path::new(COMMITTED)).unwrap_or_default();
    // Not assert_eq!: a diff of two whole documents says less than this.
    assert!(
        committed == text,
        "openapi.json differs from GET /openapi.json: rewrite it with \
         `cargo run -- openapi > openapi.json` (or {WRITE_ENV}=1 cargo test --test api openapi)"
    );
}

/// A value for a path parameter that names nothing, so that the handler
/// (not the router) answers.
fn placeholder(segment: &str) -> &'static str {
    match segment {
        "{source}" => "no-such-source",
        "{name}" => "no-such-destination",
        _ => "999999",
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_guarded_as_documented() {
    let app = feed_app().await;
    let (_, text) = served(&app).await;
    let document: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let schemes = &document["components"]["securitySchemes"];
    for name in ["admin_token", "feed_token"] {
        assert_eq!(schemes[name]["type"], "http", "{name}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let security: Vec<&str> = operation["security"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .flat_map(|s| s.as_object().unwrap().keys())
                        .map(String::as_str)
                        .collect()
                })
                .unwrap_or_default();
            let expected: &[&str] = if path.starts_with("/admin/") {
                &["admin_token"]
            } else if path.starts_with("/feed") {
                &["feed_token"]
            } else {
                &[]
            };
            assert_eq!(security, expected, "{method} {path}");
            // Every answer the document lists for an error is the envelope.
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorEnvelope",
                        "{method} {path} {status}"
                    );
                }
            }

            let url: String = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        placeholder(segment)
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let token = match expected.first() {
                Some(&"admin_token") => Some(ADMIN_TOKEN),
                Some(_) => Some(FEED_TOKEN),
                None => None,
            };
            let mut request = app
                .client
                .request(method.clone(), format!("{}{url}", app.address));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            // The headers are enough (a stream does not end).
            let body = if response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
            {
                Value::Null
            } else {
                read(response).await.body
            };
            assert!(
                status != 405 && body["error"]["message"] != "no such resource",
                "{method} {path} is documented but not routed: {status} {body}"
            );
            let documented = operation["responses"].get(status.to_string()).is_some();
            assert!(
                documented,
                "{method} {url}: {status} is not among the documented answers ({body})"
            );
            // Without its token a guarded operation answers 401, as documented.
            if token.is_some() {
                let bare = read(
                    app.client
                        .request(method.clone(), format!("{}{url}", app.address))
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                assert_eq!(bare.status, 401, "{method} {path}");
                assert_eq!(bare.error_code(), "unauthorized");
            }
        }
    }
    assert!(operations >= 18, "only {operations} operations documented");
}
