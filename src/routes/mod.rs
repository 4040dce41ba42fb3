//! HTTP only: each handler extracts, calls `sources` / `dedup` / `store`,
//! and maps the result to an answer. Routing lives in [`configure`].

pub mod admin;
pub mod admin_deliveries;
pub mod admin_variants;
pub mod bearer;
pub mod feed;
pub mod health;
pub mod unread_body;
pub mod webhooks;

use actix_web::web;

use crate::error::ApiError;

/// Mounts every route of the service. Each configured source also gets a
/// static route ahead of `/webhooks/{source}`: a dynamic segment is matched
/// with a regex, about 2 % of the server's CPU per webhook in a profile.
pub fn configure(cfg: &mut web::ServiceConfig, sources: &[String]) {
    for name in sources {
        let source: std::sync::Arc<str> = name.as_str().into();
        cfg.route(
            &format!("/webhooks/{name}"),
            web::post().to(move |state, request, payload| {
                let source = source.clone();
                async move { webhooks::receive_for(state, &source, request, payload).await }
            }),
        );
    }
    let query_errors = web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::InvalidQuery(format!("bad query string: {err}")).into()
    });
    let path_errors = web::PathConfig::default()
        .error_handler(|_err, _req| ApiError::NotFound("no such resource".into()).into());
    cfg.app_data(query_errors)
        .app_data(path_errors)
        .route("/webhooks/{source}", web::post().to(webhooks::receive))
        // Any other method on a webhook URL, configured source or not.
        .route("/webhooks/{source}", web::route().to(post_only))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/admin")
                .wrap(actix_web::middleware::from_fn(admin::require_admin))
                .route("/duplicates", web::get().to(admin::duplicates))
                .route("/events", web::get().to(admin::events))
                .route("/events/{id}", web::get().to(admin::event))
                .route("/events/{id}/replay", web::post().to(admin::replay))
                .route(
                    "/events/{id}/variants",
                    web::get().to(admin_variants::variants),
                )
                .route("/stats", web::get().to(admin::stats))
                .route("/deliveries", web::get().to(admin_deliveries::deliveries))
                .service(
                    web::resource("/deliveries/retry")
                        .app_data(admin_deliveries::retry_body_config())
                        .route(web::post().to(admin_deliveries::retry_many))
                        // A resource answers other methods with a bare 405;
                        // like every other path, the error envelope.
                        .default_service(web::to(post_only)),
                )
                .route(
                    "/deliveries/{id}/retry",
                    web::post().to(admin_deliveries::retry),
                )
                .route(
                    "/destinations",
                    web::get().to(admin_deliveries::destinations),
                )
                .route(
                    "/destinations/{name}/pause",
                    web::post().to(admin_deliveries::pause),
                )
                .route(
                    "/destinations/{name}/resume",
                    web::post().to(admin_deliveries::resume),
                ),
        )
        .service(
            web::scope("/feed")
                .wrap(actix_web::middleware::from_fn(feed::require_feed))
                .route("", web::get().to(feed::feed))
                .route("/stream", web::get().to(feed::stream)),
        )
        .default_service(web::to(no_such_route));
}

/// `GET /webhooks/x` and the like: the error envelope, not an empty 404.
async fn post_only() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Every path no route serves: the error envelope, not an empty 404.
async fn no_such_route() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such resource".into()))
}
