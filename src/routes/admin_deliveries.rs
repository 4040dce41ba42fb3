//! The admin API of destinations (SPEC §7): the deliveries list, an
//! operator's retry of one delivery or of many, and the destinations with
//! their counts, pause and resume. Mounted in the `/admin` scope, so the
//! bearer check of [`super::admin::require_admin`] comes first; limits,
//! `since` and cursors follow the rules of the §5 lists.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::admin::{decode_cursor, encode_cursor, non_empty, parse_limit, parse_since, trim_page};
use super::answers::{
    opt_time, BulkRetryAnswer, DeliveryCounts, DeliveryItem, DeliveryPage, DestinationItem,
    DestinationList, Requeued, RequeuedAnswer,
};
use crate::clock::parse_rfc3339;
use crate::config::DestinationConfig;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use crate::store::deliveries_admin::{
    BulkRetry, DeliveryFilter, DestinationSummary, RetryOutcome, DELIVERY_STATUSES,
    RETRY_BATCH_ROWS,
};

/// The largest bulk-retry body read; the body is a handful of short fields.
pub const MAX_RETRY_BODY_BYTES: usize = 16 * 1024;

/// Tags this list's cursors, so another list's cursor is refused here.
const CURSOR_TAG: &str = "dl";

/// The query of `GET /admin/deliveries`, read as text and checked by hand
/// (see `admin::ListQuery`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries to this destination (empty: any; a name never
    /// used lists nothing).
    destination: Option<String>,
    /// Only deliveries in this status (empty: any).
    #[param(schema_with = super::answers::delivery_status_filter)]
    status: Option<String>,
    /// Only deliveries of this event (its ledger id; empty: any).
    #[param(value_type = Option<i64>, minimum = 1)]
    event_id: Option<String>,
    /// Only deliveries created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Page size, 1 to 500 (larger is taken as 500); default 50.
    #[param(schema_with = super::answers::limit_schema)]
    limit: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A ledger id in a query: plain decimal digits, at least 1.
fn parse_event_id(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    raw.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| raw.parse::<i64>().ok())
        .flatten()
        .filter(|id| *id > 0)
        .map(Some)
        .ok_or_else(|| ApiError::InvalidQuery("event_id must be a ledger id (a number)".into()))
}

/// `GET /admin/deliveries`. The `destination` filter is matched against
/// the stored rows, not the configuration: deliveries to a destination
/// since removed from the config can still be listed, and a name that was
/// never used simply lists nothing (an empty page, not an error).
#[utoipa::path(
    get,
    path = "/admin/deliveries",
    tag = "admin",
    params(DeliveryQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "`invalid_query`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn deliveries(
    state: web::Data<AppState>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let status = non_empty(&query.status);
    if let Some(s) = &status {
        if !DELIVERY_STATUSES.contains(&s.as_str()) {
            return Err(ApiError::InvalidQuery(format!(
                "status must be one of {}",
                DELIVERY_STATUSES.join(", ")
            )));
        }
    }
    let before_id = match query.cursor.as_deref() {
        Some(raw) => Some(decode_cursor(CURSOR_TAG, raw, 1)?[0]),
        None => None,
    };
    let filter = DeliveryFilter {
        destination: non_empty(&query.destination),
        status,
        event_id: parse_event_id(query.event_id.as_deref())?,
        since_ms: parse_since(query.since.as_deref())?,
        before_id,
    };
    let mut rows = state
        .on_main(move |store| async move { store.deliveries(&filter, limit).await })
        .await?;
    let next_cursor = trim_page(&mut rows, limit, |r| encode_cursor(CURSOR_TAG, &[r.id]));
    Ok(HttpResponse::Ok().json(DeliveryPage {
        items: rows.iter().map(DeliveryItem::from).collect(),
        next_cursor,
    }))
}

fn parse_delivery_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no delivery with id {raw:.32}")))
}

/// `POST /admin/deliveries/{id}/retry`: sends the delivery again (a
/// `delivered` one too, under the same delivery id).
#[utoipa::path(
    post,
    path = "/admin/deliveries/{id}/retry",
    tag = "admin",
    params(("id" = u64, Path, description = "The delivery row's `id`", minimum = 1)),
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "Pending again", body = RequeuedAnswer),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such delivery", body = ErrorEnvelope),
        (status = 409, description = "`conflict`: being delivered", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn retry(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_delivery_id(&id)?;
    let now_ms = state.clock.now_ms();
    let outcome = state
        .on_main(move |store| async move { store.retry_delivery(id, now_ms).await })
        .await?;
    match outcome {
        RetryOutcome::Retried => Ok(HttpResponse::Accepted().json(RequeuedAnswer {
            id,
            status: Requeued::Pending,
        })),
        RetryOutcome::InFlight => Err(ApiError::Conflict(format!(
            "delivery {id} is being delivered"
        ))),
        RetryOutcome::NotFound => Err(ApiError::NotFound(format!("no delivery with id {id}"))),
    }
}

/// The statuses a bulk retry takes.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetryableStatus {
    Dead,
    Failed,
}

/// The body of a bulk retry. Unknown fields are refused: a misspelt
/// `dry_run` must not turn a dry run into a real one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryBody {
    /// A configured destination.
    #[schema(min_length = 1)]
    destination: String,
    status: RetryableStatus,
    /// Deliveries created at or after this time (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Deliveries created before this time (RFC 3339; exclusive).
    #[schema(format = DateTime)]
    until: Option<String>,
    /// Count what would be retried, change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// How a bulk-retry body that is not JSON, or not this shape, is answered:
/// 400 `invalid_payload` in the error envelope.
pub fn retry_body_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_RETRY_BODY_BYTES)
        .content_type_required(false)
        .error_handler(|err, _req| {
            ApiError::InvalidPayload(format!("the body is not a bulk retry: {err}")).into()
        })
}

fn body_time(field: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|s| {
        parse_rfc3339(s)
            .ok_or_else(|| ApiError::InvalidPayload(format!("{field} must be an RFC 3339 time")))
    })
    .transpose()
}

/// `POST /admin/deliveries/retry`: every delivery of `destination` in
/// `status` created at or after `since` and before `until` (both optional;
/// `until` is exclusive, so consecutive windows never overlap).
#[utoipa::path(
    post,
    path = "/admin/deliveries/retry",
    tag = "admin",
    request_body = BulkRetryBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`matched` for a dry run, else `retried`",
            body = BulkRetryAnswer),
        (status = 400, description = "`invalid_payload`: not JSON, over 16 KiB, a missing, \
            unknown or bad field", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such destination", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn retry_many(
    state: web::Data<AppState>,
    body: web::Json<BulkRetryBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.destination.is_empty() {
        return Err(ApiError::InvalidPayload(
            "destination must name a destination".into(),
        ));
    }
    let since_ms = body_time("since", body.since.as_deref())?;
    let until_ms = body_time("until", body.until.as_deref())?;
    if !state.config.destinations.contains_key(&body.destination) {
        return Err(unknown_destination(&body.destination));
    }
    let bulk = BulkRetry {
        destination: body.destination,
        status: match body.status {
            RetryableStatus::Dead => "dead",
            RetryableStatus::Failed => "failed",
        }
        .to_string(),
        since_ms,
        until_ms,
    };
    if body.dry_run {
        let matched = state
            .on_main(move |store| async move { store.count_retryable(&bulk).await })
            .await?;
        return Ok(HttpResponse::Ok().json(BulkRetryAnswer::DryRun { matched }));
    }
    let now_ms = state.clock.now_ms();
    let retried = state
        .on_main(move |store| async move {
            store
                .retry_deliveries(&bulk, now_ms, RETRY_BATCH_ROWS)
                .await
        })
        .await?;
    Ok(HttpResponse::Ok().json(BulkRetryAnswer::Retried { retried }))
}

fn unknown_destination(name: &str) -> ApiError {
    ApiError::NotFound(format!("no destination named {name:.64} is configured"))
}

fn destination_item(
    destination: &DestinationConfig,
    summary: &DestinationSummary,
) -> DestinationItem {
    DestinationItem {
        by_status: DeliveryCounts::from(&summary.by_status),
        kind: destination.kind.as_str(),
        name: destination.name.clone(),
        oldest_pending_at: opt_time(summary.oldest_pending_at),
        paused: summary.paused,
    }
}

/// `GET /admin/destinations`: every configured destination, in name
/// order, counted even before its first delivery.
#[utoipa::path(
    get,
    path = "/admin/destinations",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every configured destination", body = DestinationList),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn destinations(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let summaries = state
        .on_main(|store| async move { store.destination_summaries(None).await })
        .await?;
    let empty = DestinationSummary::default();
    let items = state
        .config
        .destinations
        .values()
        .map(|d| destination_item(d, summaries.get(&d.name).unwrap_or(&empty)))
        .collect();
    Ok(HttpResponse::Ok().json(DestinationList { items }))
}

/// `POST /admin/destinations/{name}/pause`.
#[utoipa::path(
    post,
    path = "/admin/destinations/{name}/pause",
    tag = "admin",
    description = "Stops attempts to the destination (its deliveries wait as `pending`).",
    params(("name" = String, Path, description = "A configured destination")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The destination, after the change", body = DestinationItem),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such destination", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn pause(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(state, &name, true).await
}

/// `POST /admin/destinations/{name}/resume`.
#[utoipa::path(
    post,
    path = "/admin/destinations/{name}/resume",
    tag = "admin",
    description = "Lets attempts to the destination start again, in order.",
    params(("name" = String, Path, description = "A configured destination")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The destination, after the change", body = DestinationItem),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such destination", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn resume(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(state, &name, false).await
}

/// Answers once the state is committed: from then on no claim of any
/// process starts an attempt to a paused destination (`store::deliveries`).
async fn set_paused(
    state: web::Data<AppState>,
    name: &str,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    let destination = state
        .config
        .destinations
        .get(name)
        .ok_or_else(|| unknown_destination(name))?
        .clone();
    let now_ms = state.clock.now_ms();
    let key = destination.name.clone();
    let summaries = state
        .on_main(move |store| async move {
            store.set_destination_paused(&key, paused, now_ms).await?;
            store.destination_summaries(Some(&key)).await
        })
        .await?;
    let summary = summaries
        .get(&destination.name)
        .cloned()
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(destination_item(&destination, &summary)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_plain_positive_numbers() {
        assert_eq!(parse_event_id(None).unwrap(), None);
        assert_eq!(parse_event_id(Some("")).unwrap(), None);
        assert_eq!(parse_event_id(Some("42")).unwrap(), Some(42));
        for bad in ["0", "-1", "+1", "1.0", "abc", "99999999999999999999", " 1"] {
            assert!(
                parse_event_id(Some(bad)).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn a_bulk_retry_body_refuses_other_statuses_and_unknown_fields() {
        let ok: BulkRetryBody =
            serde_json::from_str(r#"{"destination":"app","status":"failed"}"#).unwrap();
        assert!(!ok.dry_run);
        for bad in [
            r#"{"destination":"app","status":"pending"}"#,
            r#"{"destination":"app"}"#,
            r#"{"status":"dead"}"#,
            r#"{"destination":"app","status":"dead","dryrun":true}"#,
            r#"{"destination":"app","status":"dead","dry_run":"yes"}"#,
        ] {
            assert!(serde_json::from_str::<BulkRetryBody>(bad).is_err(), "{bad}");
        }
    }
}
