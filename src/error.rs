//! The one mapping from failures to HTTP answers. Every error answer has the
//! SPEC's envelope `{"error":{"code":"…","message":"…"}}` with a stable
//! `code`; 5xx answers never show internals (the cause is logged once, here).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::sources::SignatureError;
use crate::store::StoreError;

/// Seconds a caller should wait before retrying a 503 or 429.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    #[error("content type must be application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the body did not arrive within {0} s of the request's headers")]
    RequestTimeout(u64),
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    InvalidPayload(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    #[error("a valid feed bearer token is required")]
    FeedUnauthorized,
    #[error("{0}")]
    CursorExpired(String),
    #[error("{0}")]
    NotFound(String),
    /// Another method on a routed path; the one it accepts.
    #[error("this URL accepts {0} only")]
    MethodNotAllowed(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
    #[error("storage is unavailable; retry shortly")]
    StorageUnavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::StorageUnavailable(e)
    }
}

impl ApiError {
    /// The stable machine-readable code of SPEC §3/§5.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Signature(SignatureError::Missing) => "missing_signature",
            ApiError::Signature(SignatureError::Invalid) => "invalid_signature",
            ApiError::Signature(SignatureError::TimestampOutOfTolerance) => {
                "timestamp_out_of_tolerance"
            }
            ApiError::InvalidPayload(_) => "invalid_payload",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::Unauthorized | ApiError::FeedUnauthorized => "unauthorized",
            ApiError::CursorExpired(_) => "cursor_expired",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Overloaded => "overloaded",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Signature(_) | ApiError::Unauthorized | ApiError::FeedUnauthorized => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::CursorExpired(_) => StatusCode::GONE,
            ApiError::InvalidPayload(_) | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = match self {
            // The cause chain is for the log, never for the caller.
            ApiError::StorageUnavailable(cause) => {
                tracing::error!(error = %cause, "storage unavailable");
                self.to_string()
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %chain(cause.as_ref()), "internal error");
                self.to_string()
            }
            _ => self.to_string(),
        };
        let mut response = HttpResponse::build(status);
        if matches!(self, ApiError::StorageUnavailable(_) | ApiError::Overloaded) {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        if matches!(
            self,
            ApiError::PayloadTooLarge(_) | ApiError::RequestTimeout(_)
        ) {
            // Whatever is left of the body is not read: the connection
            // closes (a chunked body: see `routes::unread_body`), so an
            // endless or stalled body costs nothing after its 413 or 408.
            response.force_close();
        }
        if let ApiError::MethodNotAllowed(allowed) = self {
            response.insert_header((header::ALLOW, *allowed));
        }
        if matches!(self, ApiError::Unauthorized | ApiError::FeedUnauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorEnvelope {
            error: ErrorBody {
                code: self.code(),
                message,
            },
        })
    }
}

/// Every error answer of the API: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong: a stable code to act on, and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable and machine-readable (SPEC §3, §5, §7, §8).
    #[schema(value_type = ErrorCode)]
    pub code: &'static str,
    /// For people; its wording may change.
    pub message: String,
}

/// The codes [`ApiError::code`] answers with; a unit test keeps the two
/// lists equal.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnknownSource,
    UnsupportedMediaType,
    PayloadTooLarge,
    RequestTimeout,
    MissingSignature,
    InvalidSignature,
    TimestampOutOfTolerance,
    InvalidPayload,
    InvalidQuery,
    Unauthorized,
    CursorExpired,
    NotFound,
    MethodNotAllowed,
    Conflict,
    Overloaded,
    StorageUnavailable,
    InternalError,
}

/// An error and its causes on one line, each cause named once. Error types
/// that print their cause in their own message and also return it as their
/// `source` (sqlx's `"error returned from database: {0}"`, ours alike)
/// would otherwise repeat it at every level of `{:#}`: a cause whose text
/// the level above already holds is left out.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut above = line.clone();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !above.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        above = text;
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::{chain, ApiError, ErrorCode};
    use crate::sources::SignatureError;
    use crate::store::StoreError;

    #[test]
    fn the_documented_codes_are_the_codes_answered() {
        let answered: std::collections::BTreeSet<&str> = [
            ApiError::UnknownSource(String::new()),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge(1),
            ApiError::RequestTimeout(1),
            ApiError::Signature(SignatureError::Missing),
            ApiError::Signature(SignatureError::Invalid),
            ApiError::Signature(SignatureError::TimestampOutOfTolerance),
            ApiError::InvalidPayload(String::new()),
            ApiError::InvalidQuery(String::new()),
            ApiError::Unauthorized,
            ApiError::FeedUnauthorized,
            ApiError::CursorExpired(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed("POST"),
            ApiError::Conflict(String::new()),
            ApiError::Overloaded,
            ApiError::StorageUnavailable(StoreError::BatchFailed(String::new())),
            ApiError::Internal(anyhow::anyhow!("x")),
        ]
        .iter()
        .map(ApiError::code)
        .collect();
        let schema = serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema()).unwrap();
        let documented: std::collections::BTreeSet<&str> = schema["enum"]
            .as_array()
            .expect("an enum schema")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(answered, documented);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: no such file")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("opening it")]
    struct Context(#[source] Repeats);

    #[test]
    fn a_cause_is_named_once_whether_or_not_the_level_above_prints_it() {
        assert_eq!(
            chain(&Context(Repeats(Inner))),
            "opening it: outer: inner: no such file"
        );
    }
}
