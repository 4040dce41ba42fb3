//! What schemathesis found against the OpenAPI document (`.ci/schemathesis`),
//! each fixed in the server and held here so it stays fixed.

use crate::backend_tests;
use crate::feed::{feed_toml, FEED_TOKEN};
use crate::helpers::*;

backend_tests!(
    another_method_on_a_routed_path_is_405_naming_the_one_it_accepts,
    an_unknown_query_parameter_is_400_not_ignored,
);

/// Every routed path but the webhook URL, with the method it accepts and
/// the token it needs.
const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("/healthz", "GET", None),
    ("/readyz", "GET", None),
    ("/metrics", "GET", None),
    ("/openapi.json", "GET", None),
    ("/admin/events", "GET", Some(ADMIN_TOKEN)),
    ("/admin/events/1", "GET", Some(ADMIN_TOKEN)),
    ("/admin/events/1/replay", "POST", Some(ADMIN_TOKEN)),
    ("/admin/events/1/variants", "GET", Some(ADMIN_TOKEN)),
    ("/admin/duplicates", "GET", Some(ADMIN_TOKEN)),
    ("/admin/stats", "GET", Some(ADMIN_TOKEN)),
    ("/admin/deliveries", "GET", Some(ADMIN_TOKEN)),
    ("/admin/deliveries/retry", "POST", Some(ADMIN_TOKEN)),
    ("/admin/deliveries/1/retry", "POST", Some(ADMIN_TOKEN)),
    ("/admin/destinations", "GET", Some(ADMIN_TOKEN)),
    ("/admin/destinations/app/pause", "POST", Some(ADMIN_TOKEN)),
    ("/admin/destinations/app/resume", "POST", Some(ADMIN_TOKEN)),
    ("/feed", "GET", Some(FEED_TOKEN)),
    ("/feed/stream", "GET", Some(FEED_TOKEN)),
];

/// Found: `TRACE /healthz` (and any other method on a GET or POST route)
/// answered 404 `not_found` "no such resource", as if the path did not
/// exist; the document lists the path, so it is 405 with `Allow`.
async fn another_method_on_a_routed_path_is_405_naming_the_one_it_accepts(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: feed_toml(None),
            ..TestOptions::default()
        },
    )
    .await;
    for &(path, accepted, token) in ROUTES {
        let others = ["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"]
            .into_iter()
            .filter(|m| *m != accepted);
        for method in others {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let request = app
                .client
                .request(method.clone(), format!("{}{path}", app.address));
            let what = format!("{method} {path}");
            if token.is_some() {
                // The token is still checked before anything else.
                let bare = read(request.try_clone().unwrap().send().await.unwrap()).await;
                assert_eq!(
                    (bare.status, bare.error_code()),
                    (401, "unauthorized"),
                    "{what}"
                );
            }
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let answer = read(request.send().await.unwrap()).await;
            assert_eq!(
                (answer.status, answer.error_code()),
                (405, "method_not_allowed"),
                "{what}: {:?}",
                answer.body
            );
            assert_eq!(
                answer.headers.get("allow").map(|v| v.to_str().unwrap()),
                Some(accepted),
                "{what}"
            );
            assert_eq!(
                answer.body["error"]["message"],
                format!("this URL accepts {accepted} only"),
                "{what}"
            );
        }
    }
    // A path under a route that is not one is still not found.
    for path in ["/healthz/x", "/admin/events/1/x", "/feed/x"] {
        let token = if path.starts_with("/feed") {
            FEED_TOKEN
        } else {
            ADMIN_TOKEN
        };
        let answer = read(
            app.client
                .get(format!("{}{path}", app.address))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (404, "not_found"),
            "{path}"
        );
    }
}

/// Found: `GET /feed?…&sourse=stripe` answered 200 with every source's
/// items: an unknown (say, misspelt) parameter was ignored, so a filter
/// silently did not apply. Every query with parameters now refuses one it
/// does not know, as the document says (no other parameters).
async fn an_unknown_query_parameter_is_400_not_ignored(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: feed_toml(None),
            ..TestOptions::default()
        },
    )
    .await;
    for (path, token, known) in [
        ("/admin/events", ADMIN_TOKEN, "status=done"),
        ("/admin/duplicates", ADMIN_TOKEN, "source=stripe"),
        ("/admin/deliveries", ADMIN_TOKEN, "destination=app"),
        ("/feed", FEED_TOKEN, "source=stripe"),
        ("/feed/stream", FEED_TOKEN, "source=stripe"),
    ] {
        let get = |query: &str| {
            app.client
                .get(format!("{}{path}?{query}", app.address))
                .bearer_auth(token)
                .send()
        };
        let answer = read(get("sourse=stripe").await.unwrap()).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (400, "invalid_query"),
            "{path}: {:?}",
            answer.body
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("sourse"), "{path}: {message}");
        // The known ones still pass (a stream's headers are enough).
        let answer = get(known).await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
}
