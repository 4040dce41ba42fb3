//! HTTP only: each handler extracts, calls `sources` / `dedup` / `store`,
//! and maps the result to an answer. Routing lives in [`configure`].

pub mod admin;
pub mod admin_deliveries;
pub mod admin_variants;
pub mod answers;
pub mod bearer;
pub mod feed;
pub mod feed_schema;
pub mod health;
pub mod openapi;
pub mod unread_body;
pub mod webhooks;

use actix_web::{web, FromRequest, Handler, Resource, Responder};

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
        .route("/webhooks/{source}", web::route().to(only("POST")))
        .service(get("/healthz", health::healthz))
        .service(get("/readyz", health::readyz))
        .service(get("/metrics", health::metrics))
        .service(get("/openapi.json", openapi::openapi_json))
        .service(
            web::scope("/admin")
                .wrap(actix_web::middleware::from_fn(admin::require_admin))
                .service(get("/duplicates", admin::duplicates))
                .service(get("/events", admin::events))
                .service(get("/events/{id}", admin::event))
                .service(post("/events/{id}/replay", admin::replay))
                .service(get("/events/{id}/variants", admin_variants::variants))
                .service(get("/stats", admin::stats))
                .service(get("/deliveries", admin_deliveries::deliveries))
                .service(
                    post("/deliveries/retry", admin_deliveries::retry_many)
                        .app_data(admin_deliveries::retry_body_config()),
                )
                .service(post("/deliveries/{id}/retry", admin_deliveries::retry))
                .service(get("/destinations", admin_deliveries::destinations))
                .service(post("/destinations/{name}/pause", admin_deliveries::pause))
                .service(post(
                    "/destinations/{name}/resume",
                    admin_deliveries::resume,
                )),
        )
        .service(
            web::scope("/feed")
                .wrap(actix_web::middleware::from_fn(feed::require_feed))
                .service(get("", feed::feed))
                .service(get("/stream", feed::stream)),
        )
        .default_service(web::to(no_such_route));
}

/// A resource for one GET route. A bare route answers its other methods
/// with an empty 404 (actix tries the next route, then the default
/// service); a resource's default service answers them 405 with `Allow`,
/// in the error envelope.
fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(only("GET")))
}

/// The same for one POST route.
fn post<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(only("POST")))
}

/// The handler of every method a path does not accept: 405 `method_not_allowed`
/// naming the one it does.
fn only(
    method: &'static str,
) -> impl Fn() -> std::future::Ready<Result<actix_web::HttpResponse, ApiError>> + Clone + 'static {
    move || std::future::ready(Err(ApiError::MethodNotAllowed(method)))
}

/// Every path no route serves: the error envelope, not an empty 404.
async fn no_such_route() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such resource".into()))
}
