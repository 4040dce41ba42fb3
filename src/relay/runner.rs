//! One destination's relay: claims its due deliveries (at most
//! `concurrency` in flight per process), waits for its rate limit, hands
//! each to the transport while renewing the lease, and settles the outcome
//! with one lease-guarded store call. A receiver that hangs holds one slot
//! for `timeout_secs`, never the relay; each destination has its own relay,
//! so one that is slow, down or paused never holds up another.
//!
//! [`Relay::run_once`] and [`Relay::drain`] deliver what is due at the
//! clock's current time and return (tests drive them by hand);
//! [`Relay::run`] is the background loop of `hookledger serve`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::http::HttpTransport;
use super::nats::NatsTransport;
use super::settler::Settler;
use super::{Attempt, AttemptResult};
use crate::clock::Clock;
use crate::config::{Config, DestinationConfig, DestinationKind};
use crate::metrics::{DeliveryResult, Metrics, RECOUNT_SPACING};
use crate::store::deliveries::{ClaimedDelivery, Settlement};
use crate::store::deliveries_settle::SettleRow;
use crate::store::queue::QueueError;
use crate::store::{Store, StoreError};
use crate::worker::backoff::{cap_retry_after_ms, retry_at_ms, retry_delay_ms};
use crate::worker::lease::renew_every;
use crate::worker::rate::TokenBucket;

/// The longest a delivery waits, holding its lease, for its destination's
/// rate limit; beyond that it is handed back, due when a token is free.
const MAX_TOKEN_WAIT_MS: i64 = 5_000;
/// Back-off of the background loop after a store error.
const STORE_ERROR_BACKOFF_MS: (u64, u64) = (500, 30_000);
/// With fewer than half its slots free, the loop waits this long for more
/// attempts to finish before it claims, so that a busy relay claims in
/// batches rather than once per finished attempt (each claim is a write,
/// under SQLite's one write gate). Half free, it claims at once.
const CLAIM_GATHER: Duration = Duration::from_millis(2);
/// How often the loop recounts its backlog for `hookledger_deliveries_pending`
/// (at least; see `gauge_every` in `run`).
const GAUGE_EVERY: Duration = Duration::from_secs(1);

enum Transport {
    Http(HttpTransport),
    Nats(Box<NatsTransport>),
}

impl Transport {
    async fn send(&self, attempt: &Attempt<'_>) -> AttemptResult {
        match self {
            Transport::Http(t) => t.send(attempt).await,
            Transport::Nats(t) => t.send(attempt).await,
        }
    }
}

/// How one claimed delivery ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    Retry,
    Dead,
    /// Handed back unattempted (rate limit, shutdown).
    Released,
    /// The lease was no longer ours; the attempt's outcome was not recorded.
    LeaseLost,
}

/// Everything one destination's relay needs; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    store: Store,
    destination: Arc<DestinationConfig>,
    transport: Arc<Transport>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    lease_ms: i64,
    poll_ms: u64,
    max_retry_after_secs: u64,
    rate: Arc<Mutex<TokenBucket>>,
    /// Bumped when this process commits completions that wrote deliveries:
    /// an idle relay claims at once instead of at its next poll.
    wake: Option<watch::Receiver<u64>>,
    /// In the background loop, outcomes are written in batches by one
    /// settler; `run_once` and `drain` write each on its own.
    settler: Option<Settler>,
}

impl Relay {
    /// A relay for every configured destination.
    pub fn for_config(
        store: &Store,
        config: &Config,
        clock: &Arc<dyn Clock>,
        metrics: &Arc<Metrics>,
    ) -> Vec<Relay> {
        config
            .destinations
            .values()
            .map(|d| Relay::new(store.clone(), config, d, clock.clone(), metrics.clone()))
            .collect()
    }

    pub fn new(
        store: Store,
        config: &Config,
        destination: &DestinationConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Relay {
        let transport = match &destination.kind {
            DestinationKind::Http(http) => {
                Transport::Http(HttpTransport::new(destination, http, clock.clone()))
            }
            DestinationKind::Nats(nats) => {
                Transport::Nats(Box::new(NatsTransport::new(destination, nats)))
            }
        };
        let max_pause_ms =
            i64::try_from(config.processing.max_retry_after_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX);
        Relay {
            store,
            destination: Arc::new(destination.clone()),
            transport: Arc::new(transport),
            clock,
            metrics,
            lease_ms: i64::try_from(config.processing.lease_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            poll_ms: config.processing.poll_interval_ms.max(1),
            max_retry_after_secs: config.processing.max_retry_after_secs,
            rate: Arc::new(Mutex::new(TokenBucket::with_max_pause(
                destination.rate_per_sec,
                max_pause_ms,
            ))),
            wake: None,
            settler: None,
        }
    }

    /// This relay, woken whenever `written` changes (see
    /// [`Worker::deliveries_written`](crate::worker::Worker::deliveries_written)).
    /// Without it, an idle relay finds new deliveries at its next poll;
    /// another process's deliveries are always found that way.
    pub fn woken_by(mut self, written: watch::Receiver<u64>) -> Relay {
        self.wake = Some(written);
        self
    }

    pub fn name(&self) -> &str {
        &self.destination.name
    }

    /// Claims what is due now (up to `limit`) and attempts it concurrently;
    /// returns the outcomes in claim order.
    pub async fn run_once(&self, limit: usize) -> Result<Vec<DeliveryOutcome>, StoreError> {
        let claimed = self.claim(limit).await?.unwrap_or_default();
        let never = CancellationToken::new();
        let outcomes = join_all(claimed.iter().map(|d| self.attempt(d, &never))).await;
        outcomes.into_iter().collect()
    }

    /// Delivers until nothing is due at the clock's current time; returns
    /// every outcome.
    pub async fn drain(&self) -> Result<Vec<DeliveryOutcome>, StoreError> {
        let mut all = Vec::new();
        loop {
            let outcomes = self.run_once(self.destination.concurrency).await?;
            if outcomes.is_empty() {
                return Ok(all);
            }
            all.extend(outcomes);
        }
    }

    /// The background loop: at most `concurrency` attempts in flight,
    /// claimed as slots free up; idle, it sleeps until the next delivery
    /// falls due (at most `poll_interval_ms`) or a slot frees up. On
    /// `shutdown` it stops claiming and lets the attempts in flight finish.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let name = self.destination.name.clone();
        let mut wake = self.wake.take();
        let (settler, settler_task) = Settler::spawn(self.store.clone(), self.clock.clone());
        self.settler = Some(settler);
        let concurrency = self.destination.concurrency.max(1);
        let gather_below = (concurrency / 2).max(1);
        let mut gathered = false;
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut store_backoff_ms = 0;
        tracing::info!(destination = %self.destination.name, kind = self.destination.kind.as_str(),
            concurrency, "relay started");
        let mut last_gauge = Instant::now() - Duration::from_secs(60);
        let mut gauge_every = GAUGE_EVERY;
        while !shutdown.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            if last_gauge.elapsed() >= gauge_every {
                let started = Instant::now();
                self.update_pending_gauge().await;
                // A count over a large backlog is itself work for the
                // database: spaced like the scrape's recount (`metrics.rs`).
                gauge_every = GAUGE_EVERY.max(started.elapsed() * RECOUNT_SPACING);
                last_gauge = Instant::now();
            }
            let free = concurrency - in_flight.len();
            if free == 0 {
                tokio::select! {
                    _ = in_flight.join_next() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            if free < gather_below && !gathered {
                tokio::select! {
                    _ = in_flight.join_next() => {}
                    () = tokio::time::sleep(CLAIM_GATHER) => gathered = true,
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            gathered = false;
            let claimed = match self.claim(free).await {
                Ok(Some(claimed)) => {
                    store_backoff_ms = 0;
                    claimed
                }
                Ok(None) => {
                    // Paused: nothing is due before someone resumes it.
                    store_backoff_ms = 0;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(self.poll_ms)) => {}
                        Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
                Err(e) => {
                    store_backoff_ms = (store_backoff_ms * 2)
                        .clamp(STORE_ERROR_BACKOFF_MS.0, STORE_ERROR_BACKOFF_MS.1);
                    tracing::warn!(destination = %self.destination.name, error = %e,
                        retry_in_ms = store_backoff_ms, "claiming deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(store_backoff_ms)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            let full = claimed.len() == free;
            for delivery in claimed {
                let relay = self.clone();
                let shutdown = shutdown.clone();
                // What every line about this attempt is logged with (a JSON
                // log line carries these at its top level, SPEC §9).
                let span = tracing::info_span!(
                    "delivery",
                    destination = %delivery.destination,
                    delivery = delivery.id,
                    event_id = delivery.event_id
                );
                in_flight.spawn(
                    async move {
                        // Errors are logged inside; the lease's expiry retries.
                        let _ = relay.attempt(&delivery, &shutdown).await;
                    }
                    .instrument(span),
                );
            }
            if full {
                continue;
            }
            let idle = self.idle_delay().await;
            let written = async {
                let Some(wake) = wake.as_mut() else {
                    return std::future::pending().await;
                };
                if wake.changed().await.is_err() {
                    // The worker is gone: nothing wakes us but the poll.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = written => {}
                _ = shutdown.cancelled() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
        // Every attempt has its answer; the settler ends with the last handle.
        drop(self);
        let _ = settler_task.await;
        tracing::info!(destination = %name, "relay stopped");
    }

    /// Claims up to `limit` deliveries due now; `None` while the
    /// destination is paused. The claim reads the pause flag itself, in its
    /// own statement, which is what makes a pause hold; the look first is
    /// a primary-key read that spares a paused destination's backlog the
    /// claim's walk (with 10 000 deliveries of one object waiting, ~20 ms
    /// per poll on SQLite, under the write gate every other destination
    /// and the ingest also wait on).
    async fn claim(&self, limit: usize) -> Result<Option<Vec<ClaimedDelivery>>, StoreError> {
        if self
            .store
            .destination_paused(&self.destination.name)
            .await?
        {
            return Ok(None);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = self.clock.now_ms();
        self.store
            .claim_deliveries(&self.destination.name, now, self.lease_ms, limit)
            .await
            .map(Some)
    }

    async fn update_pending_gauge(&self) {
        match self
            .store
            .unfinished_deliveries(&self.destination.name)
            .await
        {
            Ok(n) => self
                .metrics
                .set_deliveries_pending(&self.destination.name, n),
            Err(e) => tracing::debug!(error = %e, "could not count unfinished deliveries"),
        }
    }

    async fn idle_delay(&self) -> Duration {
        let ms = match self
            .store
            .next_delivery_due_at(&self.destination.name)
            .await
        {
            Ok(Some(at)) => match u64::try_from(at - self.clock.now_ms()) {
                Ok(until) if until > 0 => until.min(self.poll_ms),
                _ => self.poll_ms,
            },
            _ => self.poll_ms,
        };
        Duration::from_millis(ms)
    }

    /// One attempt at one claimed delivery, ending in exactly one store call.
    async fn attempt(
        &self,
        delivery: &ClaimedDelivery,
        cancel: &CancellationToken,
    ) -> Result<DeliveryOutcome, StoreError> {
        let now = self.clock.now_ms();
        let token = self
            .rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acquire(now, MAX_TOKEN_WAIT_MS);
        match token {
            Ok(at) if at > now => {
                let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
                let waited = self
                    .holding_lease(delivery, async {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => true,
                            () = cancel.cancelled() => false,
                        }
                    })
                    .await;
                match waited {
                    None => return Ok(self.lost(delivery)),
                    Some(false) => {
                        let release = Settlement::Release {
                            reason: "released at shutdown before its attempt".into(),
                            at_ms: self.clock.now_ms(),
                        };
                        return self.settle(delivery, release).await;
                    }
                    Some(true) => {}
                }
                // The claim read the pause flag up to 5 s ago: a pause that
                // answered during the wait must stop this attempt too
                // (SPEC §7). A failed read sends it: the claim saw no pause.
                if let Ok(true) = self.store.destination_paused(&self.destination.name).await {
                    let release = Settlement::Release {
                        reason: "destination paused before its attempt".into(),
                        at_ms: self.clock.now_ms(),
                    };
                    return self.settle(delivery, release).await;
                }
            }
            Ok(_) => {}
            Err(free_at) => {
                let release = Settlement::Release {
                    reason:
                        "waiting for the destination's rate limit or a Retry-After it asked for"
                            .into(),
                    at_ms: free_at,
                };
                return self.settle(delivery, release).await;
            }
        }
        let delivery_id = delivery.delivery_id();
        let attempt = Attempt {
            delivery_id: &delivery_id,
            source: &delivery.source,
            action: delivery.action.as_deref(),
            object_type: delivery.object_type.as_deref(),
            object_id: delivery.object_id.as_deref(),
            attempt: u32::try_from(delivery.attempts).unwrap_or(1),
            body: &delivery.body,
        };
        let started = Instant::now();
        let Some(result) = self
            .holding_lease(delivery, self.transport.send(&attempt))
            .await
        else {
            return Ok(self.lost(delivery));
        };
        let seconds = started.elapsed().as_secs_f64();
        let now = self.clock.now_ms();
        let (settlement, label) = match result {
            AttemptResult::Delivered { status } => {
                (Settlement::Delivered { status }, DeliveryResult::delivered)
            }
            AttemptResult::Dead { error, status } => {
                (Settlement::Dead { error, status }, DeliveryResult::dead)
            }
            AttemptResult::Retry {
                error,
                status,
                retry_after_ms,
            } => {
                let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
                if attempts >= self.destination.max_attempts {
                    let error = format!("{error} (gave up after {attempts} attempts)");
                    (Settlement::Dead { error, status }, DeliveryResult::dead)
                } else {
                    let delay = retry_delay_ms(
                        attempts,
                        self.destination.backoff_base_secs,
                        self.destination.backoff_max_secs,
                        &mut rand::thread_rng(),
                    );
                    let retry_after = retry_after_ms
                        .map(|at| cap_retry_after_ms(at, now, self.max_retry_after_secs));
                    if let Some(at) = retry_after {
                        // Everything else to this receiver waits too: it asked.
                        self.rate
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .pause_until(now, at);
                    }
                    let at_ms = retry_at_ms(now, delay, retry_after);
                    (
                        Settlement::Retry {
                            at_ms,
                            error,
                            status,
                        },
                        DeliveryResult::retry,
                    )
                }
            }
        };
        let outcome = self.settle(delivery, settlement).await?;
        if outcome != DeliveryOutcome::LeaseLost {
            self.metrics
                .delivery_attempt(&self.destination.name, label, seconds);
        }
        Ok(outcome)
    }

    async fn settle(
        &self,
        delivery: &ClaimedDelivery,
        settlement: Settlement,
    ) -> Result<DeliveryOutcome, StoreError> {
        let outcome = match &settlement {
            Settlement::Release { .. } => DeliveryOutcome::Released,
            Settlement::Delivered { .. } => DeliveryOutcome::Delivered,
            Settlement::Retry { .. } => DeliveryOutcome::Retry,
            Settlement::Dead { .. } => DeliveryOutcome::Dead,
        };
        let result = match &self.settler {
            Some(settler) => match settler.settle(SettleRow::new(delivery, settlement)).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(QueueError::LeaseLost(delivery.id)),
                Err(e) => Err(QueueError::Store(e)),
            },
            None => {
                self.store
                    .settle_delivery(delivery, &settlement, self.clock.now_ms())
                    .await
            }
        };
        match result {
            Ok(()) => {
                tracing::debug!(destination = %self.destination.name,
                    delivery_id = %delivery.delivery_id(), ?outcome, "delivery attempt settled");
                Ok(outcome)
            }
            Err(QueueError::LeaseLost(_)) => Ok(self.lost(delivery)),
            Err(QueueError::Store(e)) => {
                tracing::error!(destination = %self.destination.name,
                    delivery_id = %delivery.delivery_id(), error = %e,
                    "could not record a delivery attempt; it is sent again when its lease expires");
                Err(e)
            }
        }
    }

    fn lost(&self, delivery: &ClaimedDelivery) -> DeliveryOutcome {
        tracing::warn!(destination = %self.destination.name, delivery_id = %delivery.delivery_id(),
            "delivery lease lost (it ran out, or another relay holds it); leaving it");
        DeliveryOutcome::LeaseLost
    }

    /// Runs `work` while renewing the delivery's lease; `None` when a
    /// renewal found the lease gone (`work` is dropped unfinished).
    async fn holding_lease<T>(
        &self,
        delivery: &ClaimedDelivery,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let period = renew_every(self.lease_ms);
        let keep = async {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let now = self.clock.now_ms();
                let until = now.saturating_add(self.lease_ms);
                match self.store.renew_delivery_lease(delivery, now, until).await {
                    Ok(()) => {}
                    Err(QueueError::LeaseLost(_)) => return,
                    Err(QueueError::Store(e)) => {
                        tracing::warn!(destination = %self.destination.name, error = %e,
                            "renewing a delivery lease failed; trying again at the next renewal");
                    }
                }
            }
        };
        tokio::select! {
            biased;
            out = work => Some(out),
            () = keep => None,
        }
    }
}
