//! The events pages: the list (filters status, source and since; newest
//! first; keyset cursor paging with the admin API's cursors), one event
//! with every field, its pretty-printed payload, its duplicates and its
//! deliveries, and its Replay button — all through the admin API's store
//! calls and its replay rules (`routes::admin::replay_event`).

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use serde::Deserialize;

use super::pages::{html, see_other, Layout, Notice, PageError, PageResult};
use super::view::{chosen, link, parse_since, pretty_json, source_names, DeliveryView, EventView};
use crate::error::ApiError;
use crate::routes::admin::{decode_cursor, encode_cursor, replay_event, trim_page};
use crate::state::AppState;
use crate::store::admin::{EventFilter, STATUSES};

/// Rows per page.
pub const PAGE_ROWS: i64 = 50;

/// The admin API's tag for events cursors: a cursor copied from the API
/// works here too.
const CURSOR_TAG: &str = "e";

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage<'a> {
    layout: Layout,
    query: &'a EventsQuery,
    statuses: &'static [&'static str],
    sources: Vec<String>,
    events: Vec<EventView>,
    filtered: bool,
    next: Option<String>,
}

/// What a list's filters mean, or why they mean nothing.
fn filter_of(q: &EventsQuery) -> Result<EventFilter, String> {
    if !q.status.is_empty() && !STATUSES.contains(&q.status.as_str()) {
        return Err(format!("status must be one of {}", STATUSES.join(", ")));
    }
    let before_id = match q.cursor.as_str() {
        "" => None,
        raw => Some(
            decode_cursor(CURSOR_TAG, raw, 1)
                .map_err(|_| "that page link is not valid".to_string())?[0],
        ),
    };
    Ok(EventFilter {
        status: chosen(&q.status),
        source: chosen(&q.source),
        since_ms: parse_since(&q.since)?,
        before_id,
    })
}

/// `GET /console/events`.
pub async fn list(state: web::Data<AppState>, query: web::Query<EventsQuery>) -> PageResult {
    let query = query.into_inner();
    let sources = source_names(&state);
    let mut page = EventsPage {
        layout: Layout::page("Events", "/console/events"),
        query: &query,
        statuses: &STATUSES,
        sources,
        events: Vec::new(),
        filtered: !(query.status.is_empty() && query.source.is_empty() && query.since.is_empty()),
        next: None,
    };
    let filter = match filter_of(&query) {
        Ok(filter) => filter,
        Err(problem) => {
            page.layout.notice = Notice::bad(problem);
            return Ok(html(StatusCode::BAD_REQUEST, &page));
        }
    };
    let mut rows = state
        .on_main(move |store| async move { store.events(&filter, PAGE_ROWS).await })
        .await?;
    page.next = trim_page(&mut rows, PAGE_ROWS, |r| {
        link(
            "/console/events",
            &[
                ("status", &query.status),
                ("source", &query.source),
                ("since", &query.since),
                ("cursor", &encode_cursor(CURSOR_TAG, &[r.id])),
            ],
        )
    });
    let now = state.clock.now_ms();
    page.events = rows.into_iter().map(|r| EventView::new(r, now)).collect();
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    layout: Layout,
    event: EventView,
    payload: String,
    deliveries: Vec<DeliveryView>,
    /// The event can be replayed now (not pending, processing or ignored).
    replayable: bool,
}

/// A ledger id in a path: a positive number, else no such event.
fn parse_id(raw: &str) -> Result<i64, PageError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::not_found("There is no such event."))
}

async fn event_page(
    state: &AppState,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
) -> PageResult {
    let (detail, deliveries) = state
        .on_main(move |store| async move {
            Ok((store.event(id).await?, store.deliveries_of_event(id).await?))
        })
        .await?;
    let detail = detail.ok_or_else(|| PageError::not_found(format!("There is no event #{id}.")))?;
    let now = state.clock.now_ms();
    // A pending event is already waiting; processing and ignored ones are
    // refused (SPEC §5).
    let replayable = !matches!(
        detail.row.status.as_str(),
        "pending" | "processing" | "ignored"
    );
    let page = EventPage {
        layout: Layout::page(format!("Event #{id}"), "/console/events").with_notice(notice),
        payload: pretty_json(&detail.payload),
        event: EventView::new(detail.row, now),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView::new(d, now))
            .collect(),
        replayable,
    };
    Ok(html(status, &page))
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

/// `GET /console/events/{id}`.
pub async fn detail(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> PageResult {
    let id = parse_id(&id)?;
    // A fixed text per code: nothing from the query string is shown.
    let notice = match query.notice.as_str() {
        "replayed" => Notice::good("Replayed: the event is pending and will be processed again."),
        _ => None,
    };
    event_page(&state, id, StatusCode::OK, notice).await
}

/// `POST /console/events/{id}/replay`: back to the event, which now says
/// `pending`; a replay refused (409) shows the event with the reason.
pub async fn replay(state: web::Data<AppState>, id: web::Path<String>) -> PageResult {
    let id = parse_id(&id)?;
    match replay_event(&state, id).await {
        Ok(()) => Ok(see_other(&format!("/console/events/{id}?notice=replayed"))),
        Err(ApiError::Conflict(why)) => {
            event_page(
                &state,
                id,
                StatusCode::CONFLICT,
                Notice::bad(format!("Not replayed: {why}.")),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
