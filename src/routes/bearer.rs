//! Bearer-token guards shared by the admin API and the change feed: each
//! scope's middleware answers a refused request with the error envelope
//! before its route's extractors run, so a malformed query or path tells a
//! caller without the token nothing; the token is compared in constant time.

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, ResponseError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::ApiError;
use crate::state::AppState;

/// Whether the request carries `Authorization: Bearer <token>`, compared
/// by [`matches`].
pub fn presents(request: &HttpRequest, token: &Secret) -> bool {
    let Some(presented) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    matches(token, presented.trim())
}

/// Whether `presented` is `token`. Both sides are hashed first, so the
/// comparison takes the same time whatever the length of the guess (the
/// bearer header here, the console's login form in `console::login`).
pub fn matches(token: &Secret, presented: &str) -> bool {
    let expected = Sha256::digest(token.expose().as_bytes());
    let given = Sha256::digest(presented.as_bytes());
    bool::from(expected.ct_eq(&given))
}

/// Runs `next` when `authorize` lets the request in, else answers with its
/// refusal; `scope` names the routes in the (internal) error of a scope
/// mounted without the application state.
pub async fn guard(
    request: ServiceRequest,
    next: Next<BoxBody>,
    authorize: fn(&AppState, &HttpRequest) -> Result<(), ApiError>,
    scope: &str,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    let allowed = match request.app_data::<web::Data<AppState>>() {
        Some(state) => authorize(state, request.request()),
        None => Err(ApiError::Internal(anyhow::anyhow!(
            "the {scope} routes are mounted without the application state"
        ))),
    };
    match allowed {
        Ok(()) => Ok(next.call(request).await?.map_into_left_body()),
        Err(refusal) => Ok(request
            .into_response(refusal.error_response())
            .map_into_right_body()),
    }
}
