//! Stripe: `GET /v1/events?created[gte]=…&limit=100[&types[]=…]`, newest
//! first, following `has_more` with `starting_after` (the last id of the
//! page). Each page is recorded as it is read: every settled event under
//! the key SPEC §3 computes for its body (`ingest::ledger_event`, the
//! webhook's own code), by the ledger's `INSERT … ON CONFLICT DO NOTHING`.
//! The cursor moves only in the transaction that records the page with
//! `has_more: false`, so a pass that fails half-way re-reads next time.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::{Pass, ReconcileError, Reconciler, Summary};
use crate::metrics::ReconcileResult;
use crate::sources::providers::GapFill;
use crate::sources::BodyKind;
use crate::store::NewEvent;

/// Events per page (Stripe's maximum).
const PAGE_LIMIT: &str = "100";

/// A page of `GET /v1/events`.
#[derive(Deserialize)]
struct Page {
    data: Vec<Value>,
    has_more: bool,
}

impl Reconciler {
    pub(super) async fn stripe_pass(&self, pass: &Pass) -> Result<Summary, ReconcileError> {
        let mut summary = Summary {
            source: self.source.name().to_string(),
            kind: Some(GapFill::StripeEvents),
            dry_run: pass.options.dry_run,
            ..Summary::default()
        };
        let url = self.url("v1/events");
        let mut starting_after: Option<String> = None;
        // Every id a page was asked to start after: a provider (or a proxy)
        // that answers `has_more` with a page it already gave would
        // otherwise be asked again up to MAX_PAGES times, each request
        // spending the account's API rate limit.
        let mut asked_after: HashSet<String> = HashSet::new();
        // The newest `created` (ms) of a settled event this pass listed.
        let mut newest_ms: Option<i64> = None;
        for _ in 0..super::MAX_PAGES {
            let mut query = vec![
                (
                    "created[gte]".to_string(),
                    pass.from_ms.div_euclid(1000).to_string(),
                ),
                ("limit".to_string(), PAGE_LIMIT.to_string()),
            ];
            for t in &self.config.types {
                query.push(("types[]".to_string(), t.clone()));
            }
            if let Some(after) = &starting_after {
                query.push(("starting_after".to_string(), after.clone()));
            }
            let (_, body) = self.call(pass, reqwest::Method::GET, &url, &query).await?;
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| ReconcileError::Unreadable(format!("an events page: {e}")))?;
            summary.listed += page.data.len() as u64;
            let mut events = Vec::new();
            for listed in &page.data {
                let Some(created) = listed.get("created").and_then(Value::as_i64) else {
                    continue;
                };
                let created_ms = created.saturating_mul(1000);
                if created_ms >= pass.settled_before_ms {
                    // Its webhook may still be on the way.
                    continue;
                }
                newest_ms = newest_ms.max(Some(created_ms));
                if let Some(event) = self.ledger_event(listed, pass.now_ms) {
                    events.push(event);
                }
            }
            let keys: Vec<String> = events.iter().map(|e| e.dedup_key.clone()).collect();
            let present = self.store.present_keys(self.source.name(), &keys).await?;
            let missing = events
                .iter()
                .filter(|e| !present.contains(&e.dedup_key))
                .count() as u64;
            summary.missing += missing;
            let last_page = !page.has_more;
            if !pass.options.dry_run {
                let cursor = last_page.then(|| {
                    newest_ms
                        .unwrap_or(pass.from_ms)
                        .min(pass.settled_before_ms)
                });
                let now = self.clock.now_ms();
                let ids = self
                    .store
                    .record_reconciled(&pass.lease, now, now + super::LEASE_MS, &events, cursor)
                    .await?
                    .ok_or(ReconcileError::LeaseLost)?;
                let mut inserted = 0;
                for (event, id) in events.iter().zip(&ids) {
                    if let Some(id) = id {
                        inserted += 1;
                        // Only gap-fill found it: deliveries are being lost.
                        tracing::warn!(
                            source = self.source.name(),
                            id,
                            event_id = event.provider_event_id.as_deref().unwrap_or(""),
                            action = event.action.as_deref().unwrap_or(""),
                            "gap-fill recorded an event that never arrived by webhook"
                        );
                    }
                }
                summary.filled += inserted;
                self.count(ReconcileResult::inserted, inserted);
                self.count(ReconcileResult::present, events.len() as u64 - inserted);
            }
            if last_page {
                return Ok(summary);
            }
            let last_id = page
                .data
                .last()
                .and_then(|e| e.get("id"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ReconcileError::Unreadable("has_more with no last event id".into())
                })?;
            if !asked_after.insert(last_id.to_string()) {
                return Err(ReconcileError::Unreadable(format!(
                    "the list repeats itself (a page ends again at {last_id:?})"
                )));
            }
            starting_after = Some(last_id.to_string());
        }
        Err(ReconcileError::Unreadable(format!(
            "more than {} pages",
            super::MAX_PAGES
        )))
    }

    /// The ledger row a listed event claims: the webhook's key for the
    /// same body (a listed event is the body Stripe would have sent, in
    /// the API version of its creation). `None` for one the source cannot
    /// read (an id over 256 bytes, …), which a webhook would have had
    /// refused too; and for one without an event id, whose key would be a
    /// payload hash of the time it was read: a new key every time a pass
    /// re-reads it (overlap, `--since`, a crashed pass), and never the key
    /// of a webhook (every event Stripe sends has an id).
    fn ledger_event(&self, listed: &Value, now_ms: i64) -> Option<NewEvent> {
        let body = serde_json::to_vec(listed).ok()?;
        let no_headers: Vec<(String, String)> = Vec::new();
        let delivery = match self.source.parse(BodyKind::Json, &no_headers, &body) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(source = self.source.name(), error = %e, "gap-fill skipped a listed event it cannot read");
                return None;
            }
        };
        if delivery.event_id.as_deref().unwrap_or("").is_empty() {
            tracing::warn!(
                source = self.source.name(),
                "gap-fill skipped a listed event without an id"
            );
            return None;
        }
        let body_hash = crate::dedup::body_hash(BodyKind::Json, &body, &delivery.payload);
        let (event, _) = crate::ingest::ledger_event(
            &self.source,
            BodyKind::Json,
            &body,
            delivery,
            body_hash,
            now_ms,
        );
        Some(event)
    }
}
