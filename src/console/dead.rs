//! `GET /console/dead`: dead events (each with Replay) and dead
//! deliveries (each with Retry), and "retry all matching": the operator
//! picks a destination and an optional window, the console first shows
//! how many deliveries that would retry (the admin API's dry run,
//! `count_retryable`) and retries them (`retry_deliveries`, in bounded
//! batches) only once that count is confirmed.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use serde::Deserialize;

use super::pages::{html, see_other, Layout, Notice, PageError, PageResult};
use super::view::{parse_since, DeliveryView, EventView, Moment};
use crate::state::AppState;
use crate::store::admin::EventFilter;
use crate::store::deliveries_admin::{BulkRetry, DeliveryFilter, RetryOutcome, RETRY_BATCH_ROWS};

/// Rows of each list shown.
const PAGE_ROWS: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct DeadQuery {
    /// How many a bulk retry took (digits; anything else is ignored).
    #[serde(default)]
    retried: String,
    #[serde(default)]
    notice: String,
}

#[derive(Template)]
#[template(path = "dead.html")]
struct DeadPage {
    layout: Layout,
    events: Vec<EventView>,
    more_events: bool,
    deliveries: Vec<DeliveryView>,
    more_deliveries: bool,
    destinations: Vec<String>,
}

pub async fn page(state: web::Data<AppState>, query: web::Query<DeadQuery>) -> PageResult {
    let (mut events, mut deliveries) = state
        .on_main(|store| async move {
            let events = EventFilter {
                status: Some("dead".into()),
                ..EventFilter::default()
            };
            let deliveries = DeliveryFilter {
                status: Some("dead".into()),
                ..DeliveryFilter::default()
            };
            Ok((
                store.events(&events, PAGE_ROWS).await?,
                store.deliveries(&deliveries, PAGE_ROWS).await?,
            ))
        })
        .await?;
    let more_events = events.len() as i64 > PAGE_ROWS;
    events.truncate(PAGE_ROWS as usize);
    let more_deliveries = deliveries.len() as i64 > PAGE_ROWS;
    deliveries.truncate(PAGE_ROWS as usize);
    // Fixed texts: only a number comes from the query string.
    let notice = match (query.retried.parse::<u64>().ok(), query.notice.as_str()) {
        (Some(n), _) => Notice::good(format!(
            "Retried {n} dead {}: they are pending again.",
            if n == 1 { "delivery" } else { "deliveries" }
        )),
        (None, "retried-one") => Notice::good("Retried: the delivery is pending again."),
        (None, "in-flight") => Notice::bad("Not retried: that delivery is being delivered."),
        _ => None,
    };
    let now = state.clock.now_ms();
    ok_page(DeadPage {
        layout: Layout::page("Dead letters", "/console/dead").with_notice(notice),
        events: events.into_iter().map(|r| EventView::new(r, now)).collect(),
        more_events,
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView::new(d, now))
            .collect(),
        more_deliveries,
        destinations: state.config.destinations.keys().cloned().collect(),
    })
}

fn ok_page(page: DeadPage) -> PageResult {
    Ok(html(StatusCode::OK, &page))
}

/// `POST /console/deliveries/{id}/retry`: one delivery.
pub async fn retry_one(state: web::Data<AppState>, id: web::Path<String>) -> PageResult {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::not_found("There is no such delivery."))?;
    let now = state.clock.now_ms();
    let outcome = state
        .on_main(move |store| async move { store.retry_delivery(id, now).await })
        .await?;
    match outcome {
        RetryOutcome::Retried => Ok(see_other("/console/dead?notice=retried-one")),
        RetryOutcome::InFlight => Ok(see_other("/console/dead?notice=in-flight")),
        RetryOutcome::NotFound => Err(PageError::not_found(format!("There is no delivery #{id}."))),
    }
}

/// The "retry all matching" form, and its confirmation.
#[derive(Debug, Default, Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    destination: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// The count the operator saw and confirmed; empty: show the count.
    #[serde(default)]
    confirmed: String,
}

#[derive(Template)]
#[template(path = "dead_confirm.html")]
struct ConfirmPage<'a> {
    layout: Layout,
    form: &'a RetryForm,
    matched: i64,
    since: Option<Moment>,
    until: Option<Moment>,
}

/// `POST /console/dead/retry`: without `confirmed`, the count and a
/// confirm button; with it, the retry, then back to the dead letters.
/// Deliveries that died between the two are retried too (the window is
/// what was confirmed, not the rows): the count is what the operator
/// agreed to look at, and a retry of a dead delivery is always safe.
pub async fn retry_matching(state: web::Data<AppState>, form: web::Form<RetryForm>) -> PageResult {
    let form = form.into_inner();
    if !state.config.destinations.contains_key(&form.destination) {
        return Err(PageError::bad_request(
            "Pick one of the configured destinations.",
        ));
    }
    let since_ms = parse_since(&form.since).map_err(PageError::bad_request)?;
    let until_ms = parse_since(&form.until)
        .map_err(|e| PageError::bad_request(e.replace("since", "until")))?;
    let bulk = BulkRetry {
        destination: form.destination.clone(),
        status: "dead".into(),
        since_ms,
        until_ms,
    };
    if !form.confirmed.is_empty() {
        let now = state.clock.now_ms();
        let retried = state
            .on_main(move |store| async move {
                store.retry_deliveries(&bulk, now, RETRY_BATCH_ROWS).await
            })
            .await?;
        return Ok(see_other(&format!("/console/dead?retried={retried}")));
    }
    let matched = state
        .on_main(move |store| async move { store.count_retryable(&bulk).await })
        .await?;
    let now = state.clock.now_ms();
    Ok(html(
        StatusCode::OK,
        &ConfirmPage {
            layout: Layout::page("Retry dead deliveries", "/console/dead"),
            form: &form,
            matched,
            since: since_ms.map(|ms| Moment::at(ms, now)),
            until: until_ms.map(|ms| Moment::at(ms, now)),
        },
    ))
}
