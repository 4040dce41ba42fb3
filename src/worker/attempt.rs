//! One attempt at a claimed event: wait for the source's rate limit and
//! fetch (holding the lease), or take the payload's object, then settle a
//! failure as a retry or `dead`. The completion of a processed event is left
//! to the caller, so that completions can be batched.

use super::*;

impl Worker {
    /// Everything of one attempt but the completion of a processed event,
    /// which is left to the caller (so that it can be batched).
    pub(super) async fn attempt(
        &self,
        event: &ClaimedEvent,
        cancel: &CancellationToken,
    ) -> Result<Step, StoreError> {
        let Some(source) = self.sources.get(&event.source) else {
            let message = format!("source {:?} is no longer configured", event.source);
            return self
                .fail(event, FetchError::Permanent { message })
                .await
                .map(Step::Settled);
        };
        let data = match &source.config.fetch {
            Some(fetch) => match self.fetch(event, fetch, cancel).await? {
                Fetched::Data(data) => Some(data),
                Fetched::Failed(error) => return self.fail(event, error).await.map(Step::Settled),
                Fetched::HandedBack(outcome) => return Ok(Step::Settled(outcome)),
            },
            None if event.object_id.is_some() => match payload_object(source, &event.payload) {
                Ok(data) => Some(data),
                Err(message) => {
                    return self
                        .fail(event, FetchError::Permanent { message })
                        .await
                        .map(Step::Settled)
                }
            },
            None => None,
        };
        Ok(Step::Complete(data.map(|data| DomainWrite { data })))
    }

    /// Expands the URL, waits for the source's rate limit and fetches.
    async fn fetch(
        &self,
        event: &ClaimedEvent,
        config: &FetchConfig,
        cancel: &CancellationToken,
    ) -> Result<Fetched, StoreError> {
        let values = TemplateValues {
            event_id: event.provider_event_id.as_deref(),
            object_id: event.object_id.as_deref(),
            object_type: event.object_type.as_deref(),
            action: event.action.as_deref(),
        };
        let url = match fetch::expand_url(&config.url, &values) {
            Ok(url) => url,
            Err(e) => {
                return Ok(Fetched::Failed(FetchError::Permanent {
                    message: e.to_string(),
                }))
            }
        };
        let client = match &self.shared.http {
            Ok(client) => client,
            Err(message) => return Ok(Fetched::Failed(FetchError::transient_message(message))),
        };
        let now = self.clock.now_ms();
        let max_wait = MAX_TOKEN_WAIT_MS.min(self.lease_ms() / 4);
        let ready_at = match self.shared.limits.acquire(&event.source, now, max_wait) {
            Ok(ready_at) => ready_at,
            Err(ready_at) => {
                // `defer` makes the event due at the instant it is given
                // without counting this attempt: here, when a token is free.
                tracing::debug!(event_id = event.id, source = %event.source, ready_at, "rate-limited; handed back");
                let result = self
                    .store
                    .defer(event, now, ready_at, "waiting for the source's rate limit")
                    .await;
                return self
                    .settle(event, result, Outcome::Deferred)
                    .map(Fetched::HandedBack);
            }
        };
        // Both waits, for the token and for the upstream, hold the lease
        // (renewing it), however long `fetch.timeout_secs` lets the second be.
        let waited = self
            .holding_lease(event, async {
                if ready_at > now {
                    let wait = Duration::from_millis(u64::try_from(ready_at - now).unwrap_or(0));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
                if cancel.is_cancelled() {
                    return None;
                }
                Some(fetch::fetch_json(client, config, &url, self.clock.as_ref()).await)
            })
            .await;
        let mut result = match waited {
            Some(Some(result)) => result,
            Some(None) => {
                let result = self.store.release(event, self.clock.now_ms()).await;
                return self
                    .settle(event, result, Outcome::Released)
                    .map(Fetched::HandedBack);
            }
            None => {
                let lost = Err(QueueError::LeaseLost(event.id));
                return self
                    .settle(event, lost, Outcome::LeaseLost)
                    .map(Fetched::HandedBack);
            }
        };
        // Cut once, here, so that neither the pause of the source nor the
        // event's retry below can be put off further than the config allows.
        if let Err(FetchError::Transient {
            retry_after_ms: Some(until),
            ..
        }) = &mut result
        {
            *until = backoff::cap_retry_after_ms(
                *until,
                self.clock.now_ms(),
                self.config.processing.max_retry_after_secs,
            );
        }
        if let Err(FetchError::Transient {
            throttled: true,
            retry_after_ms: Some(until),
            ..
        }) = &result
        {
            self.shared
                .limits
                .pause_until(&event.source, self.clock.now_ms(), *until);
        }
        Ok(match result {
            Ok(data) => Fetched::Data(data),
            Err(error) => Fetched::Failed(error),
        })
    }

    /// Records a failed attempt: retry at the backoff time (no sooner than
    /// the upstream's `Retry-After`), or dead when permanent or out of attempts.
    async fn fail(&self, event: &ClaimedEvent, error: FetchError) -> Result<Outcome, StoreError> {
        let processing = &self.config.processing;
        let attempt = u32::try_from(event.attempts).unwrap_or(0).max(1);
        let now = self.clock.now_ms();
        let (message, retry_at) = match error {
            FetchError::Permanent { message } => (message, None),
            FetchError::Transient { message, .. } if attempt >= processing.max_attempts => (
                format!("{message} (gave up after {attempt} attempts)"),
                None,
            ),
            FetchError::Transient {
                message,
                retry_after_ms,
                ..
            } => {
                let delay = backoff::retry_delay_ms(
                    attempt,
                    processing.backoff_base_secs,
                    processing.backoff_max_secs,
                    &mut rand::thread_rng(),
                );
                (
                    message,
                    Some(backoff::retry_at_ms(now, delay, retry_after_ms)),
                )
            }
        };
        let outcome = if retry_at.is_some() {
            Outcome::Retry
        } else {
            Outcome::Dead
        };
        tracing::info!(event_id = event.id, source = %event.source, attempt, ?outcome, retry_at, error = %message, "event attempt failed");
        let result = self.store.fail(event, &message, retry_at, now).await;
        self.settle(event, result, outcome)
    }

    /// Turns a lease-guarded store call into the event's outcome, counting it.
    pub(super) fn settle(
        &self,
        event: &ClaimedEvent,
        result: Result<(), QueueError>,
        outcome: Outcome,
    ) -> Result<Outcome, StoreError> {
        match result {
            Ok(()) => {
                let label = match outcome {
                    Outcome::Done => Some(ProcessResult::done),
                    Outcome::Retry => Some(ProcessResult::retry),
                    Outcome::Dead => Some(ProcessResult::dead),
                    _ => None,
                };
                if let Some(label) = label {
                    self.metrics.processed(&event.source, label);
                }
                Ok(outcome)
            }
            Err(QueueError::LeaseLost(id)) => {
                tracing::warn!(event_id = id, source = %event.source,
                    "lease lost (it ran out, and the event is due again or another worker holds it); leaving it");
                Ok(Outcome::LeaseLost)
            }
            Err(QueueError::Store(e)) => Err(e),
        }
    }
}

/// Where [`Worker::fetch`] left an event.
enum Fetched {
    /// The upstream's JSON document.
    Data(String),
    Failed(FetchError),
    /// Already given back to the queue (rate limit, shutdown) or lost.
    HandedBack(Outcome),
}

/// The domain data of an event processed without a fetch: where the preset
/// says it is (Stripe's `/data/object`), otherwise the whole payload.
fn payload_object(source: &Source, payload: &str) -> Result<String, String> {
    let Some(pointer) = source.domain_object() else {
        return Ok(payload.to_string());
    };
    let value: serde_json::Value =
        serde_json::from_str(payload).map_err(|_| "the stored payload is not JSON".to_string())?;
    Ok(match value.pointer(pointer) {
        Some(object) => object.to_string(),
        None => payload.to_string(),
    })
}
