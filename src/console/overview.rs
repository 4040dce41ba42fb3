//! `GET /console`: counts by status and by source, duplicates, deliveries
//! by destination and status, and the oldest waiting event and delivery —
//! what to look at first when something went wrong.

use actix_web::web;
use askama::Template;

use super::pages::{ok, Layout, PageResult};
use super::view::{link, EventView, Moment};
use crate::state::AppState;
use crate::store::admin::STATUSES;
use crate::store::deliveries_admin::{DestinationSummary, DELIVERY_STATUSES};

struct SourceRow {
    name: String,
    total: i64,
    /// Counts in [`STATUSES`] order, each with its events link.
    counts: Vec<(i64, String)>,
}

struct DestinationRow {
    name: String,
    paused: bool,
    /// Counts in [`DELIVERY_STATUSES`] order.
    counts: Vec<i64>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    total: i64,
    duplicates: i64,
    statuses: &'static [&'static str],
    /// `(status, count, events link)` in [`STATUSES`] order.
    by_status: Vec<(&'static str, i64, String)>,
    sources: Vec<SourceRow>,
    delivery_statuses: &'static [&'static str],
    destinations: Vec<DestinationRow>,
    oldest_event: Option<EventView>,
    /// The oldest unfinished delivery: its destination and creation.
    oldest_delivery: Option<(String, Moment)>,
}

pub async fn page(state: web::Data<AppState>) -> PageResult {
    let (stats, summaries, oldest) = state
        .on_main(|store| async move {
            Ok((
                store.stats().await?,
                store.destination_summaries(None).await?,
                store.oldest_waiting_event().await?,
            ))
        })
        .await?;
    let now = state.clock.now_ms();
    let by_status = STATUSES
        .iter()
        .map(|s| {
            let n = stats.by_status.get(*s).copied().unwrap_or(0);
            (*s, n, link("/console/events", &[("status", s)]))
        })
        .collect();
    // Configured sources appear before their first webhook, as in the API.
    let mut by_source = stats.by_source;
    for name in state.sources.keys() {
        by_source.entry(name.clone()).or_default();
    }
    let sources = by_source
        .into_iter()
        .map(|(name, counts)| SourceRow {
            total: counts.values().sum(),
            counts: STATUSES
                .iter()
                .map(|s| {
                    let n = counts.get(*s).copied().unwrap_or(0);
                    (
                        n,
                        link("/console/events", &[("source", &name), ("status", s)]),
                    )
                })
                .collect(),
            name,
        })
        .collect();
    let empty = DestinationSummary::default();
    let destinations = state
        .config
        .destinations
        .keys()
        .map(|name| {
            let summary = summaries.get(name).unwrap_or(&empty);
            DestinationRow {
                name: name.clone(),
                paused: summary.paused,
                counts: DELIVERY_STATUSES
                    .iter()
                    .map(|s| summary.by_status.get(*s).copied().unwrap_or(0))
                    .collect(),
            }
        })
        .collect();
    let oldest_delivery = summaries
        .iter()
        .filter_map(|(name, s)| s.oldest_pending_at.map(|at| (at, name)))
        .min()
        .map(|(at, name)| (name.clone(), Moment::at(at, now)));
    ok(&OverviewPage {
        layout: Layout::page("Overview", "/console"),
        total: stats.total,
        duplicates: stats.duplicates,
        statuses: &STATUSES,
        by_status,
        sources,
        delivery_statuses: &DELIVERY_STATUSES,
        destinations,
        oldest_event: oldest.map(|row| EventView::new(row, now)),
        oldest_delivery,
    })
}
