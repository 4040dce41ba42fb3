//! Per-source request pacing for fetches: a token bucket (`rate_per_sec`
//! tokens a second, burst `max(1, rate)`), plus a pause that an upstream's
//! `429 Too Many Requests` with `Retry-After` imposes on every event of that
//! source, not only the one that was refused.
//!
//! The bucket is the GCRA form of a token bucket: instead of a token count it
//! keeps the "theoretical arrival time" of the next request, so a token can be
//! *reserved* for a moment in the future and the caller sleeps until then.
//! It is pure — every method takes `now` in Unix milliseconds from the
//! worker's clock — so tests drive it by hand; the worker does the sleeping.

use std::collections::HashMap;
use std::sync::Mutex;

/// The longest an upstream may pause a source through `Retry-After` unless
/// told otherwise: the default of `processing.max_retry_after_secs`. The
/// worker's buckets take the configured value (a `Retry-After` the config
/// allows must hold for the whole source, not only for its event); a larger
/// pause (or one left by a clock that jumped back) is cut to it.
pub const DEFAULT_MAX_PAUSE_MS: i64 = 60 * 60 * 1000;

/// One source's bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Milliseconds per token; `None`: no rate limit (only pauses apply).
    interval_ms: Option<f64>,
    /// How far ahead of `now` the arrival time may run: `(burst - 1) · interval`.
    tolerance_ms: f64,
    /// Theoretical arrival time of the next request (Unix ms).
    tat_ms: f64,
    /// No request before this instant (Unix ms), from an upstream 429.
    paused_until_ms: i64,
    /// The longest pause, in ms.
    max_pause_ms: i64,
}

impl TokenBucket {
    pub fn new(rate_per_sec: Option<f64>) -> TokenBucket {
        TokenBucket::with_max_pause(rate_per_sec, DEFAULT_MAX_PAUSE_MS)
    }

    /// A bucket whose pauses last at most `max_pause_ms`.
    pub fn with_max_pause(rate_per_sec: Option<f64>, max_pause_ms: i64) -> TokenBucket {
        let rate = rate_per_sec.filter(|r| r.is_finite() && *r > 0.0);
        let interval_ms = rate.map(|r| 1000.0 / r);
        let burst = rate.map_or(1.0, |r| r.max(1.0).floor());
        TokenBucket {
            interval_ms,
            tolerance_ms: interval_ms.map_or(0.0, |i| (burst - 1.0) * i),
            tat_ms: f64::MIN,
            paused_until_ms: i64::MIN,
            max_pause_ms,
        }
    }

    /// Reserves a token usable at the returned instant (`>= now_ms`), if that
    /// is at most `max_wait_ms` away; otherwise reserves nothing and returns
    /// `Err(instant)`, the earliest moment a token could be had.
    pub fn acquire(&mut self, now_ms: i64, max_wait_ms: i64) -> Result<i64, i64> {
        if self.paused_until_ms > now_ms.saturating_add(self.max_pause_ms) {
            // The clock went backwards; don't let that pause us for longer.
            self.paused_until_ms = now_ms.saturating_add(self.max_pause_ms);
        }
        let start = now_ms.max(self.paused_until_ms) as f64;
        let Some(interval) = self.interval_ms else {
            return Self::within(start, now_ms, max_wait_ms);
        };
        // Reservations are granted only up to `max_wait` ahead, so an arrival
        // time further out than that means the clock went backwards.
        let furthest = start + self.tolerance_ms + interval + max_wait_ms.max(0) as f64;
        if self.tat_ms > furthest {
            self.tat_ms = start + self.tolerance_ms;
        }
        let ready = start.max(self.tat_ms - self.tolerance_ms);
        let ready_ms = Self::within(ready, now_ms, max_wait_ms)?;
        self.tat_ms = self.tat_ms.max(ready) + interval;
        Ok(ready_ms)
    }

    fn within(ready: f64, now_ms: i64, max_wait_ms: i64) -> Result<i64, i64> {
        let ready_ms = ready.ceil() as i64;
        if ready_ms.saturating_sub(now_ms) <= max_wait_ms {
            Ok(ready_ms)
        } else {
            Err(ready_ms)
        }
    }

    /// No request before `until_ms` (at most the longest pause after `now_ms`);
    /// afterwards requests resume at the steady rate, without a burst.
    pub fn pause_until(&mut self, now_ms: i64, until_ms: i64) {
        let until = until_ms.min(now_ms.saturating_add(self.max_pause_ms));
        self.paused_until_ms = self.paused_until_ms.max(until);
        if self.interval_ms.is_some() {
            self.tat_ms = self.tat_ms.max(until as f64 + self.tolerance_ms);
        }
    }
}

/// Every source's bucket, shared by all clones of a worker. The lock is
/// held only for the arithmetic, never across an `await`.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: HashMap<String, Mutex<TokenBucket>>,
}

impl RateLimits {
    /// One bucket per source that fetches, with that source's rate; an
    /// upstream's pause lasts at most `max_pause_ms`.
    pub fn new<'a>(
        sources: impl IntoIterator<Item = (&'a str, Option<f64>)>,
        max_pause_ms: i64,
    ) -> RateLimits {
        RateLimits {
            buckets: sources
                .into_iter()
                .map(|(name, rate)| {
                    let bucket = TokenBucket::with_max_pause(rate, max_pause_ms);
                    (name.to_string(), Mutex::new(bucket))
                })
                .collect(),
        }
    }

    /// [`TokenBucket::acquire`] on `source`'s bucket; a source without one is
    /// never limited.
    pub fn acquire(&self, source: &str, now_ms: i64, max_wait_ms: i64) -> Result<i64, i64> {
        match self.buckets.get(source) {
            Some(bucket) => lock(bucket).acquire(now_ms, max_wait_ms),
            None => Ok(now_ms),
        }
    }

    /// [`TokenBucket::pause_until`] on `source`'s bucket.
    pub fn pause_until(&self, source: &str, now_ms: i64, until_ms: i64) {
        if let Some(bucket) = self.buckets.get(source) {
            lock(bucket).pause_until(now_ms, until_ms);
        }
    }
}

fn lock(bucket: &Mutex<TokenBucket>) -> std::sync::MutexGuard<'_, TokenBucket> {
    // The bucket is plain arithmetic; a panic elsewhere cannot leave it torn.
    bucket
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn a_fresh_bucket_allows_a_burst_of_rate_tokens_then_one_per_interval() {
        let mut bucket = TokenBucket::new(Some(4.0));
        for _ in 0..4 {
            assert_eq!(bucket.acquire(T0, 10_000), Ok(T0));
        }
        assert_eq!(bucket.acquire(T0, 10_000), Ok(T0 + 250));
        assert_eq!(bucket.acquire(T0, 10_000), Ok(T0 + 500));
        // Time passing refills: at +2 s the bucket is full again.
        let later = T0 + 2_000;
        for _ in 0..4 {
            assert_eq!(bucket.acquire(later, 10_000), Ok(later));
        }
        assert_eq!(bucket.acquire(later, 10_000), Ok(later + 250));
    }

    #[test]
    fn a_rate_below_one_still_has_a_burst_of_one() {
        let mut bucket = TokenBucket::new(Some(0.5));
        assert_eq!(bucket.acquire(T0, 10_000), Ok(T0));
        assert_eq!(bucket.acquire(T0, 10_000), Ok(T0 + 2_000));
        assert_eq!(bucket.acquire(T0 + 1_000, 10_000), Ok(T0 + 4_000));
    }

    #[test]
    fn a_fractional_rate_rounds_its_burst_down() {
        let mut bucket = TokenBucket::new(Some(2.5));
        assert_eq!(bucket.acquire(T0, 0), Ok(T0));
        assert_eq!(bucket.acquire(T0, 0), Ok(T0));
        assert_eq!(bucket.acquire(T0, 0), Err(T0 + 400));
    }

    #[test]
    fn a_wait_longer_than_allowed_reserves_nothing() {
        let mut bucket = TokenBucket::new(Some(1.0));
        assert_eq!(bucket.acquire(T0, 500), Ok(T0));
        assert_eq!(bucket.acquire(T0, 500), Err(T0 + 1_000));
        assert_eq!(
            bucket.acquire(T0, 500),
            Err(T0 + 1_000),
            "still free at +1 s"
        );
        assert_eq!(bucket.acquire(T0 + 600, 500), Ok(T0 + 1_000));
        assert_eq!(bucket.acquire(T0 + 600, 500), Err(T0 + 2_000));
    }

    #[test]
    fn no_rate_means_no_waiting() {
        let mut bucket = TokenBucket::new(None);
        for _ in 0..1_000 {
            assert_eq!(bucket.acquire(T0, 0), Ok(T0));
        }
    }

    #[test]
    fn a_pause_holds_every_request_until_it_ends_then_resumes_at_the_steady_rate() {
        let mut bucket = TokenBucket::new(Some(10.0));
        bucket.pause_until(T0, T0 + 30_000);
        assert_eq!(bucket.acquire(T0, 5_000), Err(T0 + 30_000));
        assert_eq!(bucket.acquire(T0 + 29_000, 5_000), Ok(T0 + 30_000));
        assert_eq!(bucket.acquire(T0 + 29_000, 5_000), Ok(T0 + 30_100));
        assert_eq!(bucket.acquire(T0 + 29_000, 5_000), Ok(T0 + 30_200));
    }

    #[test]
    fn a_pause_applies_to_unlimited_sources_too_and_never_shortens() {
        let mut bucket = TokenBucket::new(None);
        bucket.pause_until(T0, T0 + 10_000);
        bucket.pause_until(T0, T0 + 5_000);
        assert_eq!(bucket.acquire(T0, 0), Err(T0 + 10_000));
        assert_eq!(bucket.acquire(T0 + 10_000, 0), Ok(T0 + 10_000));
    }

    #[test]
    fn a_pause_is_capped() {
        let mut bucket = TokenBucket::new(None);
        bucket.pause_until(T0, i64::MAX);
        assert_eq!(bucket.acquire(T0, 0), Err(T0 + DEFAULT_MAX_PAUSE_MS));
        let mut longer = TokenBucket::with_max_pause(None, 2 * DEFAULT_MAX_PAUSE_MS);
        longer.pause_until(T0, T0 + 7_000_000);
        assert_eq!(longer.acquire(T0, 0), Err(T0 + 7_000_000));
        longer.pause_until(T0, i64::MAX);
        assert_eq!(longer.acquire(T0, 0), Err(T0 + 2 * DEFAULT_MAX_PAUSE_MS));
    }

    #[test]
    fn a_clock_that_jumps_back_does_not_stall_the_bucket() {
        let mut bucket = TokenBucket::new(Some(1.0));
        for _ in 0..3 {
            bucket.acquire(T0, 5_000).unwrap();
        }
        let earlier = T0 - 24 * 60 * 60 * 1000;
        assert_eq!(bucket.acquire(earlier, 5_000), Ok(earlier));
    }

    #[test]
    fn sources_have_separate_buckets_and_unknown_ones_are_free() {
        let limits = RateLimits::new([("a", Some(1.0)), ("b", Some(1.0))], DEFAULT_MAX_PAUSE_MS);
        assert_eq!(limits.acquire("a", T0, 0), Ok(T0));
        assert_eq!(limits.acquire("a", T0, 0), Err(T0 + 1_000));
        assert_eq!(limits.acquire("b", T0, 0), Ok(T0));
        limits.pause_until("b", T0, T0 + 7_000);
        assert_eq!(limits.acquire("b", T0, 0), Err(T0 + 7_000));
        assert_eq!(limits.acquire("a", T0 + 1_000, 0), Ok(T0 + 1_000));
        assert_eq!(limits.acquire("other", T0, 0), Ok(T0));
    }
}
