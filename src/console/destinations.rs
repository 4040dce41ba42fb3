//! `GET /console/destinations`: every configured destination with its
//! deliveries counted by status, its oldest unfinished delivery, and a
//! Pause or Resume button (the admin API's `set_destination_paused`: from
//! the answer on, no process starts an attempt to a paused destination).
//! Targets (URLs, subjects) are not shown: they may carry credentials.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use serde::Deserialize;

use super::pages::{html, see_other, Layout, Notice, PageError, PageResult};
use super::view::{link, segment, Moment};
use crate::state::AppState;
use crate::store::deliveries_admin::{DestinationSummary, DELIVERY_STATUSES};

struct DestinationRow {
    name: String,
    /// `name`, percent-encoded for the action URLs.
    path: String,
    kind: &'static str,
    paused: bool,
    /// Counts in [`DELIVERY_STATUSES`] order.
    counts: Vec<i64>,
    oldest_unfinished: Option<Moment>,
}

#[derive(Template)]
#[template(path = "destinations.html")]
struct DestinationsPage {
    layout: Layout,
    statuses: &'static [&'static str],
    destinations: Vec<DestinationRow>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DestinationsQuery {
    #[serde(default)]
    paused: String,
    #[serde(default)]
    resumed: String,
}

pub async fn page(state: web::Data<AppState>, query: web::Query<DestinationsQuery>) -> PageResult {
    let summaries = state
        .on_main(|store| async move { store.destination_summaries(None).await })
        .await?;
    let now = state.clock.now_ms();
    let empty = DestinationSummary::default();
    let destinations: Vec<DestinationRow> = state
        .config
        .destinations
        .values()
        .map(|d| {
            let summary = summaries.get(&d.name).unwrap_or(&empty);
            DestinationRow {
                name: d.name.clone(),
                path: segment(&d.name),
                kind: d.kind.as_str(),
                paused: summary.paused,
                counts: DELIVERY_STATUSES
                    .iter()
                    .map(|s| summary.by_status.get(*s).copied().unwrap_or(0))
                    .collect(),
                oldest_unfinished: summary.oldest_pending_at.map(|at| Moment::at(at, now)),
            }
        })
        .collect();
    // Only a configured name is echoed back, never the query's text.
    let named = |raw: &str| state.config.destinations.get(raw).map(|d| d.name.clone());
    let notice = if let Some(name) = named(&query.paused) {
        Notice::good(format!(
            "Paused {name}: no delivery to it is attempted until you resume it."
        ))
    } else if let Some(name) = named(&query.resumed) {
        Notice::good(format!(
            "Resumed {name}: its waiting deliveries go out in order."
        ))
    } else {
        None
    };
    Ok(html(
        StatusCode::OK,
        &DestinationsPage {
            layout: Layout::page("Destinations", "/console/destinations").with_notice(notice),
            statuses: &DELIVERY_STATUSES,
            destinations,
        },
    ))
}

/// `POST /console/destinations/{name}/pause`.
pub async fn pause(state: web::Data<AppState>, name: web::Path<String>) -> PageResult {
    set_paused(&state, &name, true).await
}

/// `POST /console/destinations/{name}/resume`.
pub async fn resume(state: web::Data<AppState>, name: web::Path<String>) -> PageResult {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> PageResult {
    let Some(destination) = state.config.destinations.get(name) else {
        return Err(PageError::not_found(
            "No destination of that name is configured.",
        ));
    };
    let key = destination.name.clone();
    let now = state.clock.now_ms();
    state
        .on_main(move |store| async move { store.set_destination_paused(&key, paused, now).await })
        .await?;
    let done = if paused { "paused" } else { "resumed" };
    Ok(see_other(&link(
        "/console/destinations",
        &[(done, &destination.name)],
    )))
}
