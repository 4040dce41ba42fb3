//! Processing: workers claim due events from the ledger-as-queue
//! ([`Store::claim`], which holds the lease and per-object ordering in SQL),
//! fetch details when the source says so ([`fetch`], paced per source by
//! [`rate`]), and finish each attempt with exactly one lease-guarded store
//! call: `complete` (domain row + `done` in one transaction, shared with the
//! other events finished around the same time: see [`completer`]), `fail` (retry
//! at a time from [`backoff`], or `dead`) or `release` (not attempted after
//! all). A worker whose lease was taken over learns it from that call
//! (`LeaseLost`) and leaves the event to its new owner. Nothing is held open
//! in the database while an HTTP call or a sleep is in progress; while an
//! attempt waits for its rate limit or its upstream, the worker renews its
//! lease ([`lease`]), so only a crashed or stalled worker loses its event.
//!
//! [`Worker::run_once`] and [`Worker::drain`] process what is due at the
//! clock's current time and return — tests drive processing with them and a
//! manual clock. [`Worker::run`] is the background loop of `hookledger serve`.

mod attempt;
pub mod backoff;
mod completer;
pub mod fetch;
pub mod lease;
pub mod rate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::{Config, FetchConfig};
use crate::metrics::{Metrics, ProcessResult};
use crate::sources::Source;
use crate::store::outbox::Outbox;
use crate::store::queue::{ClaimedEvent, DomainWrite, QueueError};
use crate::store::{Store, StoreError};

use completer::Completer;
use fetch::{FetchError, TemplateValues};
use rate::RateLimits;

/// Events claimed per round by [`Worker::drain`].
pub const DRAIN_BATCH: usize = 32;
/// The most finished events [`Completer`] commits in one transaction.
pub const COMPLETE_BATCH_MAX: usize = 256;
/// The longest an event waits, holding its lease, for its source's rate
/// limit; beyond that it is handed back, due when a token would be free.
pub const MAX_TOKEN_WAIT_MS: i64 = 5_000;
/// Back-off of the background loop after a store error: from the first to
/// the second, doubling.
const STORE_ERROR_BACKOFF_MS: (u64, u64) = (500, 30_000);

/// Everything a worker needs; cheap to clone (clones share the HTTP client
/// and the per-source rate limits).
#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub config: Arc<Config>,
    pub sources: Arc<HashMap<String, Arc<Source>>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    shared: Arc<Shared>,
}

/// What all clones of a worker share.
struct Shared {
    /// Built once; an error (TLS set-up) is reported on every fetch.
    http: Result<reqwest::Client, String>,
    limits: RateLimits,
    /// Where completed events are delivered: written with each completion.
    outbox: Outbox,
    /// Bumped after each committed completion batch that wrote deliveries
    /// (relays of this process wait on it when idle).
    deliveries_written: watch::Sender<u64>,
    /// Woken after each commit that appended feed items (SPEC §8), so that
    /// this process's long polls and streams look again at once.
    feed_signal: Arc<Notify>,
}

/// How one claimed event ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed; the domain row (if any) is written.
    Done,
    /// Failed; due again later.
    Retry,
    /// Failed for good.
    Dead,
    /// Handed back unattempted until its source's rate limit allows it.
    Deferred,
    /// Handed back unattempted because the worker is shutting down.
    Released,
    /// Someone else holds the lease now; they finish it.
    LeaseLost,
}

/// Where [`Worker::attempt`] left an event.
enum Step {
    /// Settled by a store call of its own (fail, defer, release) or lost.
    Settled(Outcome),
    /// Processed: to be completed (`done` + domain write) by the caller.
    Complete(Option<DomainWrite>),
}

impl Outcome {
    /// Whether an attempt was finished (the count `run_once` reports).
    pub fn finished(self) -> bool {
        matches!(self, Outcome::Done | Outcome::Retry | Outcome::Dead)
    }
}

impl Worker {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        sources: Arc<HashMap<String, Arc<Source>>>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Worker {
        let http = fetch::build_client().map_err(|e| {
            tracing::error!(error = %e, "cannot build the HTTP client; fetches will fail");
            format!("HTTP client unavailable: {e}")
        });
        // A source's pause is cut where an event's retry is: an upstream's
        // `Retry-After` holds up to `max_retry_after_secs` for both.
        let max_pause_ms =
            i64::try_from(config.processing.max_retry_after_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX);
        let limits = RateLimits::new(
            sources.iter().filter_map(|(name, source)| {
                let fetch = source.config.fetch.as_ref()?;
                Some((name.as_str(), fetch.rate_per_sec))
            }),
            max_pause_ms,
        );
        let outbox = Outbox::from_config(&config);
        Worker {
            store,
            config,
            sources,
            clock,
            metrics,
            shared: Arc::new(Shared {
                http,
                limits,
                outbox,
                deliveries_written: watch::Sender::new(0),
                feed_signal: Arc::new(Notify::new()),
            }),
        }
    }

    /// Notified after each completion commit that appended feed items.
    pub fn feed_signal(&self) -> Arc<Notify> {
        self.shared.feed_signal.clone()
    }

    /// Claims what is due now (up to `limit`) and processes it concurrently;
    /// returns how many events it finished an attempt on (done, retry or dead).
    pub async fn run_once(&self, limit: usize) -> anyhow::Result<usize> {
        let (_, finished) = self.round(limit, &CancellationToken::new()).await?;
        Ok(finished)
    }

    /// Processes events until nothing is due at the clock's current time;
    /// returns how many attempts it finished.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let never = CancellationToken::new();
        let mut total = 0;
        loop {
            let (claimed, finished) = self.round(DRAIN_BATCH, &never).await?;
            total += finished;
            if claimed == 0 {
                return Ok(total);
            }
        }
    }

    /// The background loop of `hookledger serve`: at most `concurrency`
    /// events in flight, claimed as slots free up. A processed event frees
    /// its slot once its completion is queued to the [`Completer`] (which
    /// commits it with others while the next claim runs); its object's next
    /// event stays unclaimable until that commit. Idle, it sleeps until the
    /// next event falls due (at most `poll_interval_ms`), a slot frees up, a
    /// completion batch commits or `shutdown`. On `shutdown` it stops
    /// claiming, lets in-flight events finish (events still waiting for their
    /// rate limit are released), waits for their completions and returns.
    pub async fn run(self, concurrency: usize, shutdown: CancellationToken) {
        let concurrency = concurrency.max(1);
        let (completer, completing) = Completer::start(self.clone(), concurrency);
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut store_backoff_ms = 0;
        tracing::info!(concurrency, "workers started");
        while !shutdown.is_cancelled() {
            while let Some(joined) = in_flight.try_join_next() {
                reap(joined);
            }
            let free = concurrency - in_flight.len();
            if free == 0 {
                tokio::select! {
                    Some(joined) = in_flight.join_next() => reap(joined),
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let now = self.clock.now_ms();
            let claimed = match self.store.claim(now, self.lease_ms(), free as i64).await {
                Ok(claimed) => {
                    store_backoff_ms = 0;
                    claimed
                }
                Err(e) => {
                    store_backoff_ms = (store_backoff_ms * 2)
                        .clamp(STORE_ERROR_BACKOFF_MS.0, STORE_ERROR_BACKOFF_MS.1);
                    tracing::warn!(error = %e, retry_in_ms = store_backoff_ms, "claiming events failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(store_backoff_ms)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            let full = claimed.len() == free;
            for event in claimed {
                let worker = self.clone();
                let shutdown = shutdown.clone();
                let completer = completer.clone();
                // What every line about this event is logged with (a JSON
                // log line carries these at its top level, SPEC §9).
                let span =
                    tracing::info_span!("event", source = %event.source, event_id = event.id);
                in_flight.spawn(
                    async move {
                        // Errors are logged inside; the lease expiry retries.
                        worker.process_with(event, &shutdown, &completer).await;
                    }
                    .instrument(span),
                );
            }
            if full {
                continue;
            }
            // Caught up. A completed event may unblock the next one of its
            // object, so a committed completion batch wakes us as well.
            let idle = self.idle_delay().await;
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => reap(joined),
                _ = completer.committed.notified() => {}
                _ = shutdown.cancelled() => {}
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            "workers stopping: finishing in-flight events"
        );
        while let Some(joined) = in_flight.join_next().await {
            reap(joined);
        }
        // The tasks' senders are gone with them; ours goes now, and the
        // completer stops once it has committed what is queued.
        drop(completer);
        reap(completing.await);
    }

    /// One claim and the processing of what it returned: `(claimed, finished)`.
    /// Every event is processed even if some hit a store error; the first
    /// such error is returned afterwards.
    async fn round(
        &self,
        limit: usize,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(usize, usize)> {
        let now = self.clock.now_ms();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let claimed = self.store.claim(now, self.lease_ms(), limit).await?;
        let steps = join_all(claimed.iter().map(|event| self.attempt(event, cancel))).await;
        // The processed events are completed together, in one transaction.
        let mut outcomes: Vec<Option<Result<Outcome, StoreError>>> = Vec::new();
        let mut to_complete = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            outcomes.push(match step {
                Ok(Step::Settled(outcome)) => Some(Ok(outcome)),
                Ok(Step::Complete(write)) => {
                    to_complete.push((i, write));
                    None
                }
                Err(e) => Some(Err(e)),
            });
        }
        // A failed batch fails each event in it; the store's own error is
        // the one returned.
        let mut first_error = None;
        if !to_complete.is_empty() {
            let batch: Vec<_> = to_complete
                .iter()
                .map(|(i, write)| (&claimed[*i], write.as_ref()))
                .collect();
            match self.complete_processed(&batch).await {
                Ok(done) => {
                    for ((i, _), outcome) in to_complete.iter().zip(done) {
                        outcomes[*i] = Some(Ok(outcome));
                    }
                }
                Err(e) => {
                    for (i, _) in &to_complete {
                        outcomes[*i] = Some(Err(StoreError::BatchFailed(e.to_string())));
                    }
                    first_error = Some(e);
                }
            }
        }
        let mut finished = 0;
        for (event, outcome) in claimed.iter().zip(outcomes) {
            let outcome = outcome.expect("every claimed event has an outcome");
            log_outcome(event, &outcome);
            match outcome {
                Ok(outcome) => finished += usize::from(outcome.finished()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok((claimed.len(), finished)),
        }
    }

    /// One attempt at one claimed event, ending in exactly one store call.
    /// A store error is logged here (the event's lease will expire and it
    /// will be claimed again) and returned.
    pub async fn process(
        &self,
        event: &ClaimedEvent,
        cancel: &CancellationToken,
    ) -> Result<Outcome, StoreError> {
        let result = match self.attempt(event, cancel).await {
            Ok(Step::Settled(outcome)) => Ok(outcome),
            Ok(Step::Complete(write)) => self
                .complete_processed(&[(event, write.as_ref())])
                .await
                .map(|outcomes| outcomes[0]),
            Err(e) => Err(e),
        };
        log_outcome(event, &result);
        result
    }

    /// [`process`](Worker::process) for the background loop: a processed
    /// event is handed to `completer`, which completes, counts and logs it
    /// after its batch commits.
    async fn process_with(
        &self,
        event: ClaimedEvent,
        cancel: &CancellationToken,
        completer: &Completer,
    ) {
        let result = match self.attempt(&event, cancel).await {
            Ok(Step::Settled(outcome)) => Ok(outcome),
            Ok(Step::Complete(write)) => match completer.jobs.send((event, write)).await {
                Ok(()) => return,
                Err(mpsc::error::SendError((event, _))) => {
                    let e = StoreError::BatchFailed("the completer has stopped".into());
                    log_outcome(&event, &Err(e));
                    return;
                }
            },
            Err(e) => Err(e),
        };
        log_outcome(&event, &result);
    }

    /// How long an idle loop sleeps: until the next event falls due, at most
    /// `poll_interval_ms`. An event due already but not claimable waits
    /// behind another event of its object: polling finds it when that ends.
    async fn idle_delay(&self) -> Duration {
        let poll_ms = self.config.processing.poll_interval_ms.max(1);
        let ms = match self.store.next_due_at().await {
            Ok(Some(at)) => match u64::try_from(at - self.clock.now_ms()) {
                Ok(until) if until > 0 => until.min(poll_ms),
                _ => poll_ms,
            },
            Ok(None) => poll_ms,
            Err(e) => {
                tracing::debug!(error = %e, "could not read the next due time");
                poll_ms
            }
        };
        Duration::from_millis(ms)
    }

    /// Changes after every committed completion batch that wrote
    /// deliveries: what this process's relays wait on when idle.
    pub fn deliveries_written(&self) -> watch::Receiver<u64> {
        self.shared.deliveries_written.subscribe()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.processing.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// Logs how an attempt ended; a store error means the event's lease will
/// expire and it will be claimed again.
fn log_outcome(event: &ClaimedEvent, result: &Result<Outcome, StoreError>) {
    match result {
        Ok(outcome) => {
            tracing::debug!(event_id = event.id, source = %event.source, ?outcome, "event processed")
        }
        Err(e) => tracing::error!(event_id = event.id, source = %event.source, error = %e,
            "could not record the outcome of an event; it will be retried when its lease expires"),
    }
}

fn reap(joined: Result<(), JoinError>) {
    if let Err(e) = joined {
        if e.is_panic() {
            tracing::error!(error = %e, "a worker task panicked; its event is retried when the lease expires");
        }
    }
}
