//! GitHub: `GET /<hook>/deliveries?per_page=100`, newest first, following
//! the `Link` header's `next` (a `cursor` GitHub makes) back to the cursor.
//! A delivery's `guid` is its `X-GitHub-Delivery`, so the webhook's key is
//! `id:<guid>`. GitHub's list has no bodies to record; for every settled
//! guid with no ledger row (and whose action the source does not ignore)
//! gap-fill asks GitHub to deliver it again (`POST
//! /<hook>/deliveries/{id}/attempts`), once: the request is remembered
//! (`reconcile_requests`), across passes and processes. The redelivery
//! then arrives signed, with the same guid, through the ingest path.
//!
//! A `next` link is followed only to the configured API's origin and path:
//! the token goes nowhere else, whatever a response says.

use std::collections::HashSet;

use serde::Deserialize;

use super::{Pass, ReconcileError, Reconciler, Summary};
use crate::config::ActionRule;
use crate::metrics::ReconcileResult;
use crate::sources::providers::GapFill;

/// How long a redelivery request is remembered: twice the 3 days GitHub
/// lists deliveries for. Not `lookback_secs`, which bounds only a first
/// pass: a pass with `--since 72h` lists every delivery GitHub keeps, and
/// one asked for earlier must still be found asked for.
const KEEP_REQUESTS_MS: i64 = 2 * 3 * 86_400_000;

/// One entry of the deliveries list (the fields gap-fill reads).
#[derive(Debug, Deserialize)]
struct Delivery {
    id: i64,
    guid: String,
    delivered_at: String,
    event: String,
    action: Option<String>,
}

impl Reconciler {
    pub(super) async fn github_pass(&self, pass: &Pass) -> Result<Summary, ReconcileError> {
        let mut summary = Summary {
            source: self.source.name().to_string(),
            kind: Some(GapFill::GithubDeliveries),
            dry_run: pass.options.dry_run,
            ..Summary::default()
        };
        let mut next = Some(self.url(&format!("{}/deliveries", self.config.hook)));
        let mut query = vec![("per_page".to_string(), "100".to_string())];
        let mut seen: HashSet<String> = HashSet::new();
        let mut newest_ms: Option<i64> = None;
        let mut pages = 0;
        // Every page asked for: a `next` link back to one of them (a loop
        // of GitHub's or a proxy's) would otherwise be followed up to
        // MAX_PAGES times.
        let mut followed: HashSet<String> = HashSet::new();
        while let Some(url) = next.take() {
            if !followed.insert(url.clone()) {
                return Err(ReconcileError::Unreadable(
                    "a next link back to a page already read".into(),
                ));
            }
            pages += 1;
            if pages > super::MAX_PAGES {
                return Err(ReconcileError::Unreadable("too many pages".into()));
            }
            let (headers, body) = self.call(pass, reqwest::Method::GET, &url, &query).await?;
            // The next link carries its own query.
            query.clear();
            let page: Vec<Delivery> = serde_json::from_slice(&body)
                .map_err(|e| ReconcileError::Unreadable(format!("a deliveries page: {e}")))?;
            let mut reached_cursor = false;
            let mut candidates = Vec::new();
            for delivery in page {
                let Some(at) = crate::clock::parse_rfc3339(&delivery.delivered_at) else {
                    continue;
                };
                if at < pass.from_ms {
                    reached_cursor = true;
                    continue;
                }
                // A redelivery lists the original's guid again.
                if !seen.insert(delivery.guid.clone()) {
                    continue;
                }
                summary.listed += 1;
                if at >= pass.settled_before_ms || self.ignored(&delivery) {
                    continue;
                }
                newest_ms = newest_ms.max(Some(at));
                candidates.push(delivery);
            }
            self.request_missing(pass, candidates, &mut summary).await?;
            if !reached_cursor {
                next = next_link(&headers)
                    .map(|link| self.same_api(&link).map(|()| link))
                    .transpose()?;
            }
        }
        if !pass.options.dry_run {
            let cursor = newest_ms
                .unwrap_or(pass.from_ms)
                .min(pass.settled_before_ms);
            let now = self.clock.now_ms();
            self.store
                .record_reconciled(&pass.lease, now, now + super::LEASE_MS, &[], Some(cursor))
                .await?
                .ok_or(ReconcileError::LeaseLost)?;
            // A request is moot once its delivery can no longer be listed.
            self.store
                .forget_requests(self.source.name(), now.saturating_sub(KEEP_REQUESTS_MS))
                .await?;
        }
        Ok(summary)
    }

    /// Asks GitHub to redeliver each of `candidates` without a ledger row
    /// whose redelivery was not asked for before.
    async fn request_missing(
        &self,
        pass: &Pass,
        candidates: Vec<Delivery>,
        summary: &mut Summary,
    ) -> Result<(), ReconcileError> {
        let source = self.source.name();
        let keys: Vec<String> = candidates
            .iter()
            .map(|d| format!("id:{}", d.guid))
            .collect();
        let present = self.store.present_keys(source, &keys).await?;
        let missing: Vec<Delivery> = candidates
            .into_iter()
            .filter(|d| !present.contains(&format!("id:{}", d.guid)))
            .collect();
        self.count(ReconcileResult::present, present.len() as u64);
        summary.missing += missing.len() as u64;
        if pass.options.dry_run {
            return Ok(());
        }
        let guids: Vec<String> = missing.iter().map(|d| d.guid.clone()).collect();
        let requested = self.store.requested_guids(source, &guids).await?;
        for delivery in missing {
            if requested.contains(&delivery.guid) {
                continue;
            }
            // The id is a number from GitHub's JSON, not text to escape.
            let url = self.url(&format!(
                "{}/deliveries/{}/attempts",
                self.config.hook, delivery.id
            ));
            match self.call(pass, reqwest::Method::POST, &url, &[]).await {
                Ok(_) => {}
                // GitHub refused this one delivery (400, 404, 422: gone,
                // too old, …): its answer, not the API's. Failing the pass
                // would stop at it again on every pass and never ask for
                // any delivery listed after it; it is remembered as asked
                // for (never asked twice) and the pass goes on.
                Err(ReconcileError::Status(code)) if (400..500).contains(&code) => {
                    self.store
                        .remember_request(source, &delivery.guid, delivery.id, self.clock.now_ms())
                        .await?;
                    tracing::warn!(
                        source,
                        guid = %delivery.guid,
                        status = code,
                        "GitHub refused to redeliver a delivery that never arrived"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            }
            self.store
                .remember_request(source, &delivery.guid, delivery.id, self.clock.now_ms())
                .await?;
            summary.filled += 1;
            self.count(ReconcileResult::redelivery_requested, 1);
            tracing::warn!(
                source,
                guid = %delivery.guid,
                event = %delivery.event,
                "gap-fill asked GitHub to redeliver a delivery that never arrived"
            );
        }
        Ok(())
    }

    /// Whether the source ignores this delivery's action (`event.action`,
    /// as the github preset composes it): its webhook would have made an
    /// `ign:` row, never `id:<guid>`.
    fn ignored(&self, delivery: &Delivery) -> bool {
        let action = match &delivery.action {
            Some(a) => format!("{}.{a}", delivery.event),
            None => delivery.event.clone(),
        };
        self.source
            .actions()
            .and_then(|table| table.get(&action))
            .is_some_and(|rule| *rule == ActionRule::Ignore)
    }

    /// A link may lead only to the configured API (origin and path prefix).
    fn same_api(&self, link: &str) -> Result<(), ReconcileError> {
        let base = url::Url::parse(&self.config.base_url).ok();
        let next = url::Url::parse(link).ok();
        let ok = match (base, next) {
            (Some(base), Some(next)) => {
                base.origin() == next.origin()
                    && next.path().starts_with(base.path().trim_end_matches('/'))
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ReconcileError::Unreadable(
                "a next link to somewhere other than the configured API".into(),
            ))
        }
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|entry| {
            let (target, params) = entry.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            is_next.then(|| target.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::next_link;
    use reqwest::header::{HeaderMap, HeaderValue, LINK};

    #[test]
    fn the_next_link_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                "<https://api.github.com/repositories/1/hooks/2/deliveries?per_page=100&cursor=v1_9>; rel=\"next\", \
                 <https://api.github.com/repositories/1/hooks/2/deliveries?per_page=100>; rel=\"first\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some(
                "https://api.github.com/repositories/1/hooks/2/deliveries?per_page=100&cursor=v1_9"
            )
        );
        headers.insert(LINK, HeaderValue::from_static("<https://x/>; rel=\"prev\""));
        assert_eq!(next_link(&headers), None);
    }
}
