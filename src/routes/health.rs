//! Liveness, readiness and metrics: unauthenticated, cheap (a scrape
//! costs at most one delivery count a second and one ledger count every
//! five seconds).

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

/// `GET /healthz`: `{"status":"ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Healthy {
    pub status: Up,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Up {
    Ok,
}

/// `GET /readyz`: the database answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    #[schema(value_type = Backend)]
    pub database: &'static str,
    pub status: ReadyStatus,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ready,
}

/// The database in use.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is up", body = Healthy))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Healthy { status: Up::Ok })
}

/// The database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "The database answers", body = Ready),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .on_main(|store| async move { store.ping().await })
        .await?;
    Ok(HttpResponse::Ok().json(Ready {
        database: state.store.backend(),
        status: ReadyStatus::Ready,
    }))
}

/// How often a scrape may recount `hookledger_deliveries_pending`.
const PENDING_RECOUNT_MS: i64 = 1_000;

/// How often a scrape may recount the ledger gauges: counting rows by
/// status reads the whole ledger, so a burst of scrapes (or a caller
/// without a token hammering `/metrics`) costs one count per interval —
/// and, on a ledger large enough that a count takes long, one per
/// `RECOUNT_SPACING` times its length (`metrics.rs`).
pub const LEDGER_RECOUNT_MS: i64 = 5_000;

/// The Prometheus text. The pending-deliveries gauge is recounted here (at
/// most once a second by the app's clock, spaced further when a count
/// takes long) as well as by each relay's loop, so it is right in a process
/// that runs no relays (`workers = 0`, or an API-only instance) and right
/// after a change, not a loop tick later.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)",
        body = String, content_type = "application/openmetrics-text"))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let destinations = &state.config.destinations;
    if !destinations.is_empty()
        && state
            .metrics
            .pending_recount_due(state.clock.now_ms(), PENDING_RECOUNT_MS)
    {
        let started = Instant::now();
        let counted = state
            .on_main(|store| async move { store.unfinished_by_destination().await })
            .await;
        state.metrics.pending_count_took(started.elapsed());
        match counted {
            Ok(counts) => {
                for name in destinations.keys() {
                    let n = counts.get(name).copied().unwrap_or(0);
                    state.metrics.set_deliveries_pending(name, n);
                }
            }
            // The rest of the metrics are still worth answering with.
            Err(e) => tracing::debug!(error = %e, "could not count unfinished deliveries"),
        }
    }
    let now_ms = state.clock.now_ms();
    if state.metrics.events_recount_due(now_ms, LEDGER_RECOUNT_MS) {
        let started = Instant::now();
        let counted = state
            .on_main(|store| async move { store.ledger_gauges().await })
            .await;
        state.metrics.events_count_took(started.elapsed());
        match counted {
            Ok(gauges) => {
                let age_ms = gauges
                    .oldest_pending_received_at
                    .map_or(0, |at| now_ms.saturating_sub(at).max(0));
                state.metrics.set_ledger_gauges(
                    gauges.by_status.iter().map(|(s, n)| (s.as_str(), *n)),
                    age_ms as f64 / 1000.0,
                );
            }
            Err(e) => tracing::debug!(error = %e, "could not count ledger rows"),
        }
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}
