//! Gap-fill (SPEC §10): finds the events a provider gave up on and records
//! them through the ledger, under the key the webhook would have had.
//!
//! One [`Reconciler`] per source with a `reconcile` table. A pass takes the
//! source's lease (`store::reconcile`: one process at a time, and for the
//! server's scheduled passes only once the source is due, so several
//! servers make one set of provider calls per interval), lists what the
//! provider sent since the cursor less the overlap, and then per provider:
//! Stripe's listed events are recorded directly (`stripe.rs`); GitHub's
//! missing deliveries are asked to be redelivered, and arrive signed
//! through the ingest path (`github.rs`). Only events older than
//! `settle_secs` count as missing: a younger webhook may be in flight.
//!
//! Requests go through [`Reconciler::call`]: paced by the source's token
//! bucket, with the credential as a bearer token (never logged), a 429's
//! `Retry-After` honoured by waiting and asking again, and any other
//! failure ending the pass with a [`ReconcileError`] — the server logs it
//! and tries again at the next interval; `hookledger reconcile` exits
//! non-zero. Waiting goes through a [`Pause`], so tests move a manual
//! clock instead of sleeping.

pub mod cli;
mod github;
mod stripe;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::ReconcileConfig;
use crate::metrics::{Metrics, ReconcileResult};
use crate::sources::providers::GapFill;
use crate::sources::Source;
use crate::store::reconcile::ReconcileLease;
use crate::store::{Store, StoreError};
use crate::worker::backoff::parse_retry_after;
use crate::worker::rate::TokenBucket;

/// How long a pass's lease lasts; every request and page renews it, so only
/// a crashed process's lease runs out.
pub const LEASE_MS: i64 = 120_000;
/// A 429 is asked again this many times in one pass, then the pass fails.
pub const MAX_RATE_LIMITED: u32 = 5;
/// A `Retry-After` longer than this is cut to it (the lease must outlive it).
pub const MAX_RETRY_AFTER_MS: i64 = 60_000;
/// One request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A provider's page is read up to this size.
const MAX_PAGE_BYTES: usize = 10 * 1024 * 1024;
/// Pages one pass reads at most: a provider that keeps saying "more"
/// cannot hold a pass forever.
const MAX_PAGES: usize = 10_000;

/// Waits `ms` milliseconds (a [`tokio::time::sleep`] in a server; tests
/// advance their manual clock instead).
pub trait Pause: Send + Sync {
    fn pause(&self, ms: u64) -> BoxFuture<'static, ()>;
}

/// The real wait.
pub struct Sleep;

impl Pause for Sleep {
    fn pause(&self, ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
}

/// How one pass is run.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassOptions {
    /// Read from this many seconds ago instead of the cursor less overlap.
    pub since_secs: Option<u64>,
    /// List and count; record, request and move nothing.
    pub dry_run: bool,
    /// A server's pass: only when the source is due; then the next is due
    /// one interval later.
    pub scheduled: bool,
}

/// What one pass found, printed by `hookledger reconcile` as
/// `<source>: N listed, M missing, K recorded|requested`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub source: String,
    pub kind: Option<GapFill>,
    /// Events (deliveries) the provider listed in the window.
    pub listed: u64,
    /// Settled ones without a ledger row.
    pub missing: u64,
    /// Recorded (Stripe) or whose redelivery was asked for (GitHub).
    pub filled: u64,
    pub dry_run: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = match self.kind {
            Some(GapFill::GithubDeliveries) => "requested",
            _ => "recorded",
        };
        write!(
            f,
            "{}: {} listed, {} missing, {} {verb}",
            self.source, self.listed, self.missing, self.filled
        )?;
        if self.dry_run {
            f.write_str(" (dry run)")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the provider refused the credential (HTTP {0}): check the key and its permissions")]
    Refused(u16),
    #[error("the provider's API answered HTTP {0}")]
    Status(u16),
    #[error("the provider's API kept answering 429 after {0} waits")]
    RateLimited(u32),
    #[error("the provider's API could not be reached: {0}")]
    Unreachable(String),
    #[error("the provider's API answered something unreadable: {0}")]
    Unreadable(String),
    #[error("another pass holds the source's lease")]
    Busy,
    #[error("the pass lost its lease (it ran out); the next pass re-reads")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One source's reconciler; cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    source: Arc<Source>,
    config: ReconcileConfig,
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    pause: Arc<dyn Pause>,
    bucket: Arc<Mutex<TokenBucket>>,
}

/// A pass in progress: its lease and the instant it started.
pub(crate) struct Pass {
    pub lease: ReconcileLease,
    pub now_ms: i64,
    /// Read from here (Unix ms).
    pub from_ms: i64,
    /// Only events before this count (now less `settle_secs`).
    pub settled_before_ms: i64,
    pub options: PassOptions,
}

impl Reconciler {
    /// The reconciler of `source`, `None` when it has no `reconcile` table.
    pub fn new(
        source: Arc<Source>,
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Option<Reconciler> {
        let config = source.config.reconcile.clone()?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A redirect would carry the bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hookledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building an HTTP client");
        let bucket = TokenBucket::with_max_pause(config.rate_per_sec, MAX_RETRY_AFTER_MS);
        Some(Reconciler {
            source,
            config,
            store,
            clock,
            metrics,
            http,
            pause: Arc::new(Sleep),
            bucket: Arc::new(Mutex::new(bucket)),
        })
    }

    /// The same reconciler waiting through `pause` (tests: a manual clock).
    pub fn with_pause(mut self, pause: Arc<dyn Pause>) -> Reconciler {
        self.pause = pause;
        self
    }

    pub fn source_name(&self) -> &str {
        self.source.name()
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.config.interval_secs)
    }

    /// One pass. `Ok(None)`: a scheduled pass found the source not due or
    /// another pass running (nothing was called).
    pub async fn run_once(&self, options: PassOptions) -> Result<Option<Summary>, ReconcileError> {
        let now_ms = self.clock.now_ms();
        let lease = ReconcileLease {
            source: self.source.name().to_string(),
            holder: format!("{:016x}", rand::random::<u64>()),
        };
        let taken = self
            .store
            .take_reconcile_lease(&lease, now_ms, now_ms + LEASE_MS, options.scheduled)
            .await?;
        let Some(cursor) = taken else {
            return Ok(None);
        };
        let secs_ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let from_ms = match (options.since_secs, cursor) {
            (Some(since), _) => now_ms.saturating_sub(secs_ms(since)),
            (None, Some(cursor)) => cursor.saturating_sub(secs_ms(self.config.overlap_secs)),
            (None, None) => now_ms.saturating_sub(secs_ms(self.config.lookback_secs)),
        };
        let pass = Pass {
            lease,
            now_ms,
            from_ms,
            settled_before_ms: now_ms.saturating_sub(secs_ms(self.config.settle_secs)),
            options,
        };
        let result = match self.config.kind {
            GapFill::StripeEvents => self.stripe_pass(&pass).await,
            GapFill::GithubDeliveries => self.github_pass(&pass).await,
        };
        // Failed or not, the next scheduled pass is one interval away (a
        // failing provider is tried again then, not at once by a peer).
        let next_due = options
            .scheduled
            .then(|| self.clock.now_ms() + secs_ms(self.config.interval_secs));
        self.store
            .release_reconcile_lease(&pass.lease, next_due)
            .await?;
        result.map(Some)
    }

    /// The server's loop: a pass at start-up, then one every
    /// `interval_secs`, until `shutdown`. A failed pass is logged and tried
    /// again at the next interval; nothing here stops the server.
    pub async fn run(self, shutdown: CancellationToken) {
        let options = PassOptions {
            scheduled: true,
            ..PassOptions::default()
        };
        loop {
            let source = self.source.name();
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.run_once(options) => match result {
                    Ok(Some(summary)) => tracing::info!(source, %summary, "gap-fill pass done"),
                    Ok(None) => tracing::debug!(source, "gap-fill pass not due or held by another process"),
                    Err(e) => tracing::warn!(
                        source, error = %e, "gap-fill pass failed; trying again at the next interval"
                    ),
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval()) => {}
            }
        }
    }

    /// `base_url` + `path` (a path of the config or of fixed text only).
    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url, path.trim_start_matches('/'))
    }

    /// Renews the pass's lease; a lost lease ends the pass.
    async fn keep_lease(&self, pass: &Pass) -> Result<(), ReconcileError> {
        let now = self.clock.now_ms();
        if self
            .store
            .renew_reconcile_lease(&pass.lease, now, now + LEASE_MS)
            .await?
        {
            Ok(())
        } else {
            Err(ReconcileError::LeaseLost)
        }
    }

    /// One request to the provider: paced, authenticated, 429s waited out.
    /// `Ok((headers, body))` for a 2xx answer.
    async fn call(
        &self,
        pass: &Pass,
        method: reqwest::Method,
        url: &str,
        query: &[(String, String)],
    ) -> Result<(HeaderMap, bytes_body::Body), ReconcileError> {
        let mut limited = 0;
        loop {
            self.wait_for_token().await;
            self.keep_lease(pass).await?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .query(query)
                .bearer_auth(self.config.credential.expose())
                .header("Accept", self.accept());
            if let Some(account) = &self.config.account {
                request = request.header("Stripe-Account", account);
            }
            if self.config.kind == GapFill::GithubDeliveries {
                request = request.header("X-GitHub-Api-Version", "2022-11-28");
            }
            let response = request
                .send()
                .await
                .map_err(|e| ReconcileError::Unreachable(e.without_url().to_string()))?;
            let status = response.status();
            let headers = response.headers().clone();
            if status == StatusCode::TOO_MANY_REQUESTS {
                limited += 1;
                if limited > MAX_RATE_LIMITED {
                    return Err(ReconcileError::RateLimited(MAX_RATE_LIMITED));
                }
                let now = self.clock.now_ms();
                let until = headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now))
                    .unwrap_or(now + 1_000)
                    .clamp(now, now + MAX_RETRY_AFTER_MS);
                self.bucket
                    .lock()
                    .expect("the bucket lock")
                    .pause_until(now, until);
                continue;
            }
            if matches!(status.as_u16(), 401 | 403) {
                return Err(ReconcileError::Refused(status.as_u16()));
            }
            if !status.is_success() {
                return Err(ReconcileError::Status(status.as_u16()));
            }
            let body = bytes_body::read(response, MAX_PAGE_BYTES).await?;
            return Ok((headers, body));
        }
    }

    fn accept(&self) -> &'static str {
        match self.config.kind {
            GapFill::StripeEvents => "application/json",
            GapFill::GithubDeliveries => "application/vnd.github+json",
        }
    }

    /// Waits for the source's next request token (and any 429 pause).
    async fn wait_for_token(&self) {
        loop {
            let now = self.clock.now_ms();
            let ready = self
                .bucket
                .lock()
                .expect("the bucket lock")
                .acquire(now, MAX_RETRY_AFTER_MS);
            let wait = match ready {
                Ok(at) => {
                    let wait = at.saturating_sub(now);
                    if wait > 0 {
                        self.pause.pause(wait as u64).await;
                    }
                    return;
                }
                Err(at) => at.saturating_sub(now).max(1),
            };
            self.pause.pause(wait as u64).await;
        }
    }

    /// Counts `n` listed events that ended as `result`.
    fn count(&self, result: ReconcileResult, n: u64) {
        if n > 0 {
            self.metrics.reconciled(self.source.name(), result, n);
        }
    }
}

/// A provider's answer body, read within a bound.
mod bytes_body {
    use super::ReconcileError;

    pub type Body = Vec<u8>;

    pub async fn read(
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<Body, ReconcileError> {
        let mut body = Vec::new();
        let unreachable =
            |e: reqwest::Error| ReconcileError::Unreachable(e.without_url().to_string());
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > limit {
                return Err(ReconcileError::Unreadable(format!(
                    "a page larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The reconcilers of every source with a `reconcile` table.
pub fn for_sources<'a>(
    sources: impl IntoIterator<Item = &'a Arc<Source>>,
    store: &Store,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
) -> Vec<Reconciler> {
    sources
        .into_iter()
        .filter_map(|s| Reconciler::new(s.clone(), store.clone(), clock.clone(), metrics.clone()))
        .collect()
}
