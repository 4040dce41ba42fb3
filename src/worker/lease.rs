//! Keeping a lease while working on its event (SPEC §4): the waits of an
//! attempt — for the source's rate limit, then for the upstream's answer —
//! run while the lease is renewed every [`renew_every`], so a fetch may take
//! as long as `fetch.timeout_secs` allows without another worker taking the
//! event over; only a worker that stops renewing (crashed, or stalled past
//! `lease_secs`) loses it. A renewal that finds the lease taken over ends
//! the wait at once: whatever the attempt would still do with the event
//! would be refused anyway, and the new holder is fetching it by now.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::Worker;
use crate::store::queue::{ClaimedEvent, QueueError};

/// Renewals per lease period. A third of `lease_secs` apart, a lease
/// survives two renewals in a row that fail or come late (a database blip,
/// a SQLite write queued behind a busy ledger) before it lapses; and it
/// costs one small `UPDATE` per third of a lease per event in flight (every
/// 20 s with the default 60 s lease), only while an attempt waits.
pub const RENEWALS_PER_LEASE: i64 = 3;

/// How often a lease of `lease_ms` is renewed.
pub fn renew_every(lease_ms: i64) -> Duration {
    let ms = (lease_ms / RENEWALS_PER_LEASE).max(1);
    Duration::from_millis(u64::try_from(ms).unwrap_or(1))
}

impl Worker {
    /// Runs `work` while renewing the lease on `event`; `None` when a
    /// renewal found the lease taken over (`work` is then dropped
    /// unfinished). A renewal that fails for a store error is tried again
    /// at the next tick: should the lease lapse meanwhile and another worker
    /// claim the event, the next renewal learns it.
    pub(super) async fn holding_lease<T>(
        &self,
        event: &ClaimedEvent,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        let lease_ms = self.lease_ms();
        let period = renew_every(lease_ms);
        let keep = async {
            let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let now = self.clock.now_ms();
                let until = now.saturating_add(lease_ms);
                match self.store.renew_lease(event, now, until).await {
                    Ok(()) => {}
                    Err(QueueError::LeaseLost(_)) => return,
                    Err(QueueError::Store(e)) => {
                        tracing::warn!(event_id = event.id, source = %event.source, error = %e,
                            "renewing a lease failed; trying again at the next renewal");
                    }
                }
            }
        };
        tokio::select! {
            // The work first: if it is ready, a renewal that raced with its
            // end changes nothing.
            biased;
            out = work => Some(out),
            () = keep => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_renewed_three_times_per_lease_period() {
        assert_eq!(renew_every(60_000), Duration::from_secs(20));
        assert_eq!(renew_every(2_000), Duration::from_millis(666));
        assert_eq!(renew_every(1), Duration::from_millis(1));
    }
}
