//! The OpenAPI 3.1 description of the HTTP API (SPEC §9), put together by
//! `utoipa` from the `#[utoipa::path]` of each handler and the `ToSchema`
//! of the types they answer with, and served at `GET /openapi.json`
//! without auth. The same text is committed as `openapi.json` at the
//! repository root: `hookledger openapi > openapi.json` rewrites it, and a
//! test fails while the two differ. Routing stays in `routes::configure`
//! (static per-source routes, middleware scopes, a resource with its own
//! 405): `utoipa-actix-web` collects only `#[get]`-style services, so the
//! paths are named twice, and a test checks that every documented
//! operation is routed.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, admin_deliveries, admin_variants, feed, health, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookledger",
        description = "Idempotent webhook receiver: dedup ledger, durable processing, \
            destinations, change feed and admin API. Every error answer is the \
            `ErrorEnvelope`; times are RFC 3339 UTC; lists are newest first with opaque \
            cursors (SPEC §5).",
    ),
    paths(
        webhooks::receive,
        admin::events,
        admin::event,
        admin::replay,
        admin_variants::variants,
        admin::duplicates,
        admin::stats,
        admin_deliveries::deliveries,
        admin_deliveries::retry,
        admin_deliveries::retry_many,
        admin_deliveries::destinations,
        admin_deliveries::pause,
        admin_deliveries::resume,
        feed::feed,
        feed::stream,
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
    ),
    modifiers(&BearerTokens),
    tags(
        (name = "webhooks", description = "Receiving providers' webhooks (SPEC §3)"),
        (name = "admin", description = "The admin API: `Authorization: Bearer <admin_token>` \
            (SPEC §5, §7)"),
        (name = "feed", description = "The change feed: `Authorization: Bearer <feed token>` \
            (SPEC §8)"),
        (name = "health", description = "Liveness, readiness, metrics: no auth"),
        (name = "document", description = "This description: no auth"),
    )
)]
pub struct ApiDoc;

/// The two bearer tokens: the admin API's and the feed's (never the same).
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "admin_token",
            bearer("`server.admin_token`, for /admin (a 401 is checked before anything else)"),
        );
        components.add_security_scheme(
            "feed_token",
            bearer("`feed.token`, for /feed (the admin token is refused there)"),
        );
    }
}

/// The document as served and committed: pretty JSON and a final newline.
pub fn document_json() -> String {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document is serializable");
        text.push('\n');
        text
    });
    TEXT.clone()
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "document",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}
