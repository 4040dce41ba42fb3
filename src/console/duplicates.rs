//! `GET /console/duplicates`: ledger rows delivered more than once, newest
//! duplicate first (the admin API's `duplicates` read and cursors), with a
//! badge on rows whose copies' bodies differed from the first one's.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use serde::Deserialize;

use super::pages::{html, Layout, Notice, PageResult};
use super::view::{chosen, link, parse_since, source_names, EventView};
use crate::routes::admin::{decode_cursor, encode_cursor, trim_page};
use crate::state::AppState;
use crate::store::admin::DuplicateFilter;

/// Rows per page.
const PAGE_ROWS: i64 = 50;

/// The admin API's tag for duplicates cursors.
const CURSOR_TAG: &str = "d";

#[derive(Debug, Default, Deserialize)]
pub struct DuplicatesQuery {
    #[serde(default)]
    source: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "duplicates.html")]
struct DuplicatesPage<'a> {
    layout: Layout,
    query: &'a DuplicatesQuery,
    sources: Vec<String>,
    rows: Vec<EventView>,
    filtered: bool,
    next: Option<String>,
}

fn filter_of(q: &DuplicatesQuery) -> Result<DuplicateFilter, String> {
    let before = match q.cursor.as_str() {
        "" => None,
        raw => {
            let parts = decode_cursor(CURSOR_TAG, raw, 2)
                .map_err(|_| "that page link is not valid".to_string())?;
            Some((parts[0], parts[1]))
        }
    };
    Ok(DuplicateFilter {
        source: chosen(&q.source),
        since_ms: parse_since(&q.since)?,
        before,
    })
}

pub async fn list(state: web::Data<AppState>, query: web::Query<DuplicatesQuery>) -> PageResult {
    let query = query.into_inner();
    let sources = source_names(&state);
    let mut page = DuplicatesPage {
        layout: Layout::page("Duplicates", "/console/duplicates"),
        query: &query,
        sources,
        rows: Vec::new(),
        filtered: !(query.source.is_empty() && query.since.is_empty()),
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
        .on_main(move |store| async move { store.duplicates(&filter, PAGE_ROWS).await })
        .await?;
    page.next = trim_page(&mut rows, PAGE_ROWS, |r| {
        let cursor = encode_cursor(CURSOR_TAG, &[r.last_duplicate_at.unwrap_or(0), r.id]);
        link(
            "/console/duplicates",
            &[
                ("source", &query.source),
                ("since", &query.since),
                ("cursor", &cursor),
            ],
        )
    });
    let now = state.clock.now_ms();
    page.rows = rows.into_iter().map(|r| EventView::new(r, now)).collect();
    Ok(html(StatusCode::OK, &page))
}
