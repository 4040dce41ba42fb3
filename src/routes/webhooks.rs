//! `POST /webhooks/{source}`: the ingest path. Checks run in the SPEC's
//! order — unknown source (404), content type (415), size (413), signature
//! (401), body (400) — and only then is the ledger written. The body is read
//! as a stream and abandoned as soon as it passes `max_body_bytes`, so a
//! large or endless body costs at most the limit in memory; the buffer grows
//! with the bytes received, never with the length a request declares. A
//! body not received within `body_timeout_secs` of the headers is answered
//! 408 and its connection closed, which frees its `max_in_flight` slot. A
//! 2xx answer is sent only after the delivery's ledger transaction has
//! committed; the one exception is a provider's signed handshake (Slack's
//! `url_verification`, Zoom's `endpoint.url_validation`), answered after
//! its signature holds and never recorded.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

use crate::dedup::{self, Strategy};
use crate::error::{ApiError, ErrorEnvelope};
use crate::metrics::{Metrics, Outcome, UNKNOWN_SOURCE_LABEL};
use crate::sources::{self, Source};
use crate::state::AppState;
use crate::store::RecordOutcome;

/// `POST /webhooks/{source}`: any name, configured or not (404).
#[utoipa::path(
    post,
    path = "/webhooks/{source}",
    tag = "webhooks",
    description = "Receives a provider's webhook. Checks run in this order, the first failure \
        answering: unknown source (404), content type (415), size (413), signature (401), body \
        (400); a 2xx is sent only once the delivery is committed to the ledger. The signature \
        headers are the source's preset's (SPEC §3, §11).",
    params(("source" = String, Path, description = "A configured source's name")),
    request_body(
        description = "The provider's body, as it signed it",
        content(
            (Object = "application/json"),
            (HashMap<String, String> = "application/x-www-form-urlencoded"),
        )
    ),
    responses(
        (status = 202, description = "First seen: recorded, to be processed", body = WebhookAnswer),
        (status = 200, description = "A duplicate or an ignored action (or the answer to a \
            provider's signed handshake, never recorded)", body = WebhookOk),
        (status = 400, description = "`invalid_payload`", body = ErrorEnvelope),
        (status = 401, description = "`missing_signature`, `invalid_signature` or \
            `timestamp_out_of_tolerance`", body = ErrorEnvelope),
        (status = 404, description = "`unknown_source`", body = ErrorEnvelope),
        (status = 408, description = "`request_timeout`: the body came too slowly",
            body = ErrorEnvelope),
        (status = 413, description = "`payload_too_large`", body = ErrorEnvelope),
        (status = 415, description = "`unsupported_media_type`", body = ErrorEnvelope),
        (status = 429, description = "`overloaded`: retry after `Retry-After`",
            body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`: retry after `Retry-After`",
            body = ErrorEnvelope),
    )
)]
pub async fn receive(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    receive_for(state, &path, request, payload).await
}

/// `POST /webhooks/<name>` for a configured source: the same, on a static
/// route (`routes::configure`).
pub async fn receive_for(
    state: web::Data<AppState>,
    path: &str,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let source = state.sources.get(path).cloned();
    let label = source.as_ref().map_or(UNKNOWN_SOURCE_LABEL, |s| s.name());
    let handled = handle(&state, source.as_deref(), path, &request, payload, started).await;
    let (response, outcome) = match handled {
        Ok(Handled::Recorded(outcome, strategy)) => answer(outcome, strategy),
        Ok(Handled::Challenge(reply)) => (HttpResponse::Ok().json(reply), Outcome::challenge),
        Err(e) => {
            if let ApiError::Signature(reason) = &e {
                // Which check failed is useful; the header values are not
                // logged. At most one line per source and interval: anyone
                // can send bad signatures, as fast as they like.
                if let Some(suppressed) = state.signature_warnings.admit(label) {
                    tracing::warn!(source = label, %reason, suppressed, "webhook rejected");
                }
            }
            (
                actix_web::ResponseError::error_response(&e),
                Outcome::rejected,
            )
        }
    };
    state.metrics.received(label, outcome);
    state
        .metrics
        .observe_ingest(started.elapsed().as_secs_f64());
    response
}

/// A delivery recorded: its ledger row and dedup key. (Fields in sorted
/// order, the order `json!` would print them.)
#[derive(serde::Serialize, ToSchema)]
pub struct WebhookAnswer<'a> {
    pub dedup_key: &'a str,
    /// hookledger's ledger id (of the first copy, for a duplicate).
    pub id: i64,
    #[schema(value_type = WebhookStatus)]
    pub status: &'a str,
    #[schema(value_type = super::answers::StrategyName)]
    pub strategy: &'a str,
}

/// What became of a delivery that was not refused.
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    Accepted,
    Duplicate,
    Ignored,
}

/// A 200 of the webhook URL: a [`WebhookAnswer`], or the body a provider's
/// handshake expects (Slack's `challenge`, Zoom's tokens), whose shape is
/// the provider's.
pub struct WebhookOk;

impl utoipa::PartialSchema for WebhookOk {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("WebhookAnswer"))
            .item(
                ObjectBuilder::new()
                    .description(Some("A provider's handshake answered, as it expects")),
            )
            .into()
    }
}

impl ToSchema for WebhookOk {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            WebhookAnswer::name().into_owned(),
            <WebhookAnswer as utoipa::PartialSchema>::schema(),
        ));
        <WebhookAnswer as ToSchema>::schemas(schemas);
    }
}

fn answer((outcome, key): (RecordOutcome, String), strategy: Strategy) -> (HttpResponse, Outcome) {
    let body = |status, id| WebhookAnswer {
        dedup_key: &key,
        id,
        status,
        strategy: strategy.as_str(),
    };
    match outcome {
        RecordOutcome::Accepted { id } => (
            HttpResponse::Accepted().json(body("accepted", id)),
            Outcome::accepted,
        ),
        RecordOutcome::Duplicate { id, .. } => (
            HttpResponse::Ok().json(body("duplicate", id)),
            Outcome::duplicate,
        ),
        RecordOutcome::Ignored { id } => (
            HttpResponse::Ok().json(body("ignored", id)),
            Outcome::ignored,
        ),
    }
}

/// What became of a delivery that was not refused.
enum Handled {
    /// Written to the ledger (or recorded as a duplicate): outcome and key.
    Recorded((RecordOutcome, String), Strategy),
    /// A provider's handshake, signed: answered with this body, not recorded.
    Challenge(serde_json::Value),
}

async fn handle(
    state: &AppState,
    source: Option<&Source>,
    name: &str,
    request: &HttpRequest,
    payload: web::Payload,
    started: Instant,
) -> Result<Handled, ApiError> {
    let source = source.ok_or_else(|| ApiError::UnknownSource(truncate(name, 64)))?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let kind = sources::body_kind(content_type).ok_or(ApiError::UnsupportedMediaType)?;
    // Bound the work in flight before buffering anything.
    let _slot = Slot::take(state)?;
    let limit = state.config.server.max_body_bytes;
    // The handler starts once the headers are in: the body's time counts from here.
    let timeout_secs = state.config.server.body_timeout_secs;
    let deadline = tokio::time::Instant::from_std(started) + Duration::from_secs(timeout_secs);
    let body = tokio::time::timeout_at(deadline, read_body(request, payload, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout(timeout_secs))??;

    let received_at_ms = state.clock.now_ms();
    source.verify_request(
        request.headers(),
        request.query_string(),
        &body,
        received_at_ms.div_euclid(1000),
    )?;
    let delivery = source
        .parse(kind, request.headers(), &body)
        .map_err(|e| ApiError::InvalidPayload(e.0))?;
    // Only now that its signature holds (SPEC §11).
    if let Some(reply) = source.challenge(
        &delivery,
        request.headers(),
        request.query_string(),
        &body,
        received_at_ms.div_euclid(1000),
    ) {
        return Ok(Handled::Challenge(reply));
    }
    let body_hash = dedup::body_hash(kind, &body, &delivery.payload);
    // Mailgun signs a token, not the event: a token is good for one event.
    if let Some(token) = source.one_use_token(&delivery) {
        let event = delivery.event_id.as_deref().unwrap_or(&body_hash);
        // A claim is of no use once its timestamp, up to the tolerance
        // ahead of arrival when first seen, is past the tolerance behind.
        let keep_ms = i64::try_from(source.config.tolerance_secs)
            .unwrap_or(i64::MAX / 4_000)
            .saturating_mul(2_000)
            .saturating_add(60_000);
        let first_use = state
            .store
            .claim_token(
                name,
                &token,
                event,
                received_at_ms,
                received_at_ms.saturating_sub(keep_ms),
            )
            .await?;
        if !first_use {
            return Err(ApiError::Signature(sources::SignatureError::Invalid));
        }
    }
    let (event, strategy) =
        crate::ingest::ledger_event(source, kind, &body, delivery, body_hash, received_at_ms);
    let previous_key = event.previous_key.clone();
    let key = event.dedup_key.clone();
    let outcome = state.ingestor.record(event).await?;
    // A payload-hash duplicate names the key of the bucket its first copy came in.
    let key = match (outcome, previous_key) {
        (
            RecordOutcome::Duplicate {
                previous_bucket: true,
                ..
            },
            Some(previous),
        ) => previous,
        _ => key,
    };
    Ok(Handled::Recorded((outcome, key), strategy))
}

/// One of the `max_in_flight` places, held until the answer is ready, and
/// counted in the in-flight gauge while held.
struct Slot<'a> {
    _permit: OwnedSemaphorePermit,
    metrics: &'a Metrics,
}

impl<'a> Slot<'a> {
    fn take(state: &'a AppState) -> Result<Slot<'a>, ApiError> {
        let permit = state
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)?;
        state.metrics.entered_in_flight();
        Ok(Slot {
            _permit: permit,
            metrics: &state.metrics,
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.metrics.left_in_flight();
    }
}

/// Reads the body, failing with 413 as soon as it is known to exceed `limit`:
/// from `Content-Length` before reading, else while streaming (chunked).
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    // Grown with what arrives: a declared length is a claim, not bytes, and
    // reserving it would let stalled requests hold memory they never sent.
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::InvalidPayload(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Echoing a caller's string back is fine; echoing 10 KB of it is not.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
