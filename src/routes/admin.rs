//! The admin API (SPEC §5): duplicates, events, one event, replay, stats
//! (with each destination's delivery counts, §7; the rest of §7's admin
//! routes are in `admin_deliveries.rs`).
//! Every route needs `Authorization: Bearer <admin_token>`, compared in
//! constant time, and checked by [`require_admin`] before anything else of
//! the request (query and path included) is looked at. Lists are newest
//! first with opaque keyset cursors.

use std::collections::BTreeMap;

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::answers::{
    DeliveryCounts, DuplicateItem, DuplicatePage, EventCounts, EventDetail, EventItem, EventPage,
    Requeued, RequeuedAnswer, StatsAnswer,
};
use crate::clock::parse_rfc3339;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use crate::store::admin::{DuplicateFilter, EventFilter, STATUSES};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// Middleware of the `/admin` scope: a request without the admin token is
/// answered 401 before its route's extractors run, so a malformed query or
/// path tells a caller without the token nothing (SPEC §5).
pub async fn require_admin(
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    super::bearer::guard(request, next, authorize, "admin").await
}

/// The admin token, and nothing else.
fn authorize(state: &AppState, request: &HttpRequest) -> Result<(), ApiError> {
    if super::bearer::presents(request, &state.config.server.admin_token) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The query of `GET /admin/events`. Every field is read as text and
/// checked by hand, so that a bad value is answered with the error
/// envelope's own message; `value_type` says what is accepted.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only rows in this status (empty: any).
    #[param(schema_with = super::answers::event_status_filter)]
    status: Option<String>,
    /// Only rows of this source (empty: any).
    source: Option<String>,
    /// Only rows received at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Page size, 1 to 500 (larger is taken as 500); default 50.
    #[param(schema_with = super::answers::limit_schema)]
    limit: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// The query of `GET /admin/duplicates`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DuplicateQuery {
    /// Only rows of this source (empty: any).
    source: Option<String>,
    /// Only rows whose last duplicate arrived at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Page size, 1 to 500 (larger is taken as 500); default 50.
    #[param(schema_with = super::answers::limit_schema)]
    limit: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// 1..=500, default 50, clamped above; 0, empty or non-digits are errors.
pub(super) fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidQuery(
            "limit must be a whole number from 1 to 500".into(),
        ));
    }
    // Digits only: an overflow just means "very large".
    let n = raw.parse::<i64>().unwrap_or(i64::MAX);
    if n == 0 {
        return Err(ApiError::InvalidQuery(
            "limit must be a whole number from 1 to 500".into(),
        ));
    }
    Ok(n.min(MAX_LIMIT))
}

pub(super) fn parse_since(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|s| {
        parse_rfc3339(s)
            .ok_or_else(|| ApiError::InvalidQuery("since must be an RFC 3339 time".into()))
    })
    .transpose()
}

pub(super) fn non_empty(raw: &Option<String>) -> Option<String> {
    raw.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// Cursors are the position of the last row shown, in base64url, tagged by
/// list so one list's cursor is refused by another.
pub(crate) fn encode_cursor(tag: &str, parts: &[i64]) -> String {
    let text = std::iter::once(tag.to_string())
        .chain(parts.iter().map(i64::to_string))
        .collect::<Vec<_>>()
        .join(":");
    URL_SAFE_NO_PAD.encode(text)
}

pub(crate) fn decode_cursor(tag: &str, raw: &str, arity: usize) -> Result<Vec<i64>, ApiError> {
    let bad = || ApiError::InvalidQuery("cursor is not valid".into());
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut fields = text.split(':');
    if fields.next() != Some(tag) {
        return Err(bad());
    }
    let parts: Vec<i64> = fields
        .map(|f| f.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if parts.len() != arity {
        return Err(bad());
    }
    Ok(parts)
}

/// Trims the extra row read to detect another page; the cursor of the
/// next page, if there is one.
pub(crate) fn trim_page<R>(
    rows: &mut Vec<R>,
    limit: i64,
    cursor: impl Fn(&R) -> String,
) -> Option<String> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if more {
        rows.last().map(cursor)
    } else {
        None
    }
}

/// Ledger rows delivered more than once, newest duplicate first.
#[utoipa::path(
    get,
    path = "/admin/duplicates",
    tag = "admin",
    params(DuplicateQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of duplicated rows", body = DuplicatePage),
        (status = 400, description = "`invalid_query`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn duplicates(
    state: web::Data<AppState>,
    query: web::Query<DuplicateQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let before = match query.cursor.as_deref() {
        Some(raw) => {
            let parts = decode_cursor("d", raw, 2)?;
            Some((parts[0], parts[1]))
        }
        None => None,
    };
    let filter = DuplicateFilter {
        source: non_empty(&query.source),
        since_ms: parse_since(query.since.as_deref())?,
        before,
    };
    let mut rows = state
        .on_main(move |store| async move { store.duplicates(&filter, limit).await })
        .await?;
    let next_cursor = trim_page(&mut rows, limit, |r| {
        encode_cursor("d", &[r.last_duplicate_at.unwrap_or(0), r.id])
    });
    Ok(HttpResponse::Ok().json(DuplicatePage {
        items: rows.iter().map(DuplicateItem::from).collect(),
        next_cursor,
    }))
}

/// Ledger rows, newest first.
#[utoipa::path(
    get,
    path = "/admin/events",
    tag = "admin",
    params(ListQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of ledger rows", body = EventPage),
        (status = 400, description = "`invalid_query`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn events(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let status = non_empty(&query.status);
    if let Some(s) = &status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::InvalidQuery(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    let before_id = match query.cursor.as_deref() {
        Some(raw) => Some(decode_cursor("e", raw, 1)?[0]),
        None => None,
    };
    let filter = EventFilter {
        status,
        source: non_empty(&query.source),
        since_ms: parse_since(query.since.as_deref())?,
        before_id,
    };
    let mut rows = state
        .on_main(move |store| async move { store.events(&filter, limit).await })
        .await?;
    let next_cursor = trim_page(&mut rows, limit, |r| encode_cursor("e", &[r.id]));
    Ok(HttpResponse::Ok().json(EventPage {
        items: rows.iter().map(EventItem::from).collect(),
        next_cursor,
    }))
}

pub(super) fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no event with id {raw:.32}")))
}

/// One ledger row with its payload.
#[utoipa::path(
    get,
    path = "/admin/events/{id}",
    tag = "admin",
    params(("id" = u64, Path, description = "The ledger id", minimum = 1)),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The row", body = EventDetail),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such ledger id", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn event(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let detail = state
        .on_main(move |store| async move { store.event(id).await })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event with id {id}")))?;
    let payload: Value = serde_json::from_str(&detail.payload).unwrap_or(Value::Null);
    Ok(HttpResponse::Ok().json(EventDetail::new(&detail.row, payload)))
}

/// Processes the event again (`dead` ones too; attempts start over).
#[utoipa::path(
    post,
    path = "/admin/events/{id}/replay",
    tag = "admin",
    params(("id" = u64, Path, description = "The ledger id", minimum = 1)),
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "Pending again", body = RequeuedAnswer),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such ledger id", body = ErrorEnvelope),
        (status = 409, description = "`conflict`: being processed, ignored, or its coalesce \
            key has a pending row", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn replay(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    replay_event(&state, id).await?;
    Ok(HttpResponse::Accepted().json(RequeuedAnswer {
        id,
        status: Requeued::Pending,
    }))
}

/// Makes event `id` pending again (SPEC §5), or says why not: 404 for an
/// unknown id, 409 while it is processing, for an ignored event, and for a
/// coalesce row while another row with its key is pending. The admin API's
/// replay and the console's Replay button.
pub(crate) async fn replay_event(state: &AppState, id: i64) -> Result<(), ApiError> {
    let now_ms = state.clock.now_ms();
    // The status is read only when the replay did not happen, to say why.
    let (replayed, status) = state
        .on_main(move |store| async move {
            match store.replay(id, now_ms).await {
                Ok(true) => Ok((true, None)),
                // PostgreSQL: a delivery with this coalesce key committed a
                // pending row after the replay's check read none; the index
                // of pending coalesce rows refused the second one.
                Err(e) if e.is_unique_violation() => Ok((false, Some("coalesce".to_string()))),
                Err(e) => Err(e),
                Ok(false) => Ok((false, store.event_status(id).await?)),
            }
        })
        .await?;
    if replayed {
        return Ok(());
    }
    match status.as_deref() {
        None => Err(ApiError::NotFound(format!("no event with id {id}"))),
        Some("processing") => Err(ApiError::Conflict(format!("event {id} is being processed"))),
        Some("ignored") => Err(ApiError::Conflict(format!(
            "event {id} is ignored and is never processed"
        ))),
        Some(_) => Err(ApiError::Conflict(format!(
            "another delivery with the coalesce key of event {id} is pending"
        ))),
    }
}

/// Ledger and delivery counts, every status present.
#[utoipa::path(
    get,
    path = "/admin/stats",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The counts", body = StatsAnswer),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (stats, summaries) = state
        .on_main(|store| async move {
            Ok((
                store.stats().await?,
                store.destination_summaries(None).await?,
            ))
        })
        .await?;
    // Configured sources appear even before their first delivery.
    let mut by_source: BTreeMap<String, EventCounts> = stats
        .by_source
        .iter()
        .map(|(name, counts)| (name.clone(), EventCounts::from(counts)))
        .collect();
    for name in state.sources.keys() {
        by_source
            .entry(name.clone())
            .or_insert_with(|| EventCounts::from(&BTreeMap::new()));
    }
    // Every configured destination, every status, zeros included (SPEC §7).
    let deliveries: BTreeMap<String, DeliveryCounts> = state
        .config
        .destinations
        .keys()
        .map(|name| {
            let counts = summaries.get(name).cloned().unwrap_or_default().by_status;
            (name.clone(), DeliveryCounts::from(&counts))
        })
        .collect();
    Ok(HttpResponse::Ok().json(StatsAnswer {
        by_source,
        by_status: EventCounts::from(&stats.by_status),
        deliveries,
        duplicates: stats.duplicates,
        total: stats.total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_clamps_and_refuses_non_digits() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("500")).unwrap(), 500);
        assert_eq!(parse_limit(Some("501")).unwrap(), 500);
        assert_eq!(parse_limit(Some("99999999999999999999999")).unwrap(), 500);
        for bad in ["0", "", "-1", "+5", "1.5", "ten", " 5", "0x10"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_lists() {
        let c = encode_cursor("d", &[1_700_000_000_000, 42]);
        assert_eq!(
            decode_cursor("d", &c, 2).unwrap(),
            vec![1_700_000_000_000, 42]
        );
        assert!(decode_cursor("e", &c, 1).is_err());
        assert!(decode_cursor("d", "not base64!", 2).is_err());
        assert!(decode_cursor("e", &encode_cursor("e", &[1, 2]), 1).is_err());
    }
}
