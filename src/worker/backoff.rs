//! When a failed attempt is tried again. Retry `n` (the attempt that just
//! failed was the `n`-th) waits a uniformly random time between `d/2` and
//! `d`, with `d = min(backoff_max_secs, backoff_base_secs · 2^(n-1))`
//! ("equal jitter": never less than half the exponential step, so retries
//! spread out without collapsing to zero), and never less than what an
//! upstream `Retry-After` asked for — up to `max_retry_after_secs`, to which
//! a later one is cut. Everything here is pure and works in Unix
//! milliseconds; the caller supplies `now` and the random source.

use rand::Rng;

/// The jitter window `(d/2, d)` of retry `attempt`, in milliseconds.
/// `attempt` counts from 1; anything lower is treated as 1. Saturates
/// instead of overflowing, however large the attempt number.
pub fn delay_bounds_ms(attempt: u32, base_secs: u64, max_secs: u64) -> (u64, u64) {
    let exponent = attempt.max(1) - 1;
    let factor = 1u64.checked_shl(exponent).unwrap_or(u64::MAX);
    let d_secs = base_secs.saturating_mul(factor).min(max_secs);
    let d_ms = d_secs.saturating_mul(1000);
    (d_ms / 2, d_ms)
}

/// A random delay within [`delay_bounds_ms`], both ends included.
pub fn retry_delay_ms<R: Rng + ?Sized>(
    attempt: u32,
    base_secs: u64,
    max_secs: u64,
    rng: &mut R,
) -> u64 {
    let (low, high) = delay_bounds_ms(attempt, base_secs, max_secs);
    rng.gen_range(low..=high)
}

/// The Unix-ms instant retry `attempt` is due: `now + delay`, or the
/// upstream's `Retry-After` instant when that is later.
pub fn retry_at_ms(now_ms: i64, delay_ms: u64, retry_after_ms: Option<i64>) -> i64 {
    let delay = i64::try_from(delay_ms).unwrap_or(i64::MAX);
    let backoff = now_ms.saturating_add(delay);
    retry_after_ms.map_or(backoff, |at| backoff.max(at))
}

/// An upstream's `Retry-After` instant, cut to at most `max_secs` after
/// `now_ms` (SPEC §4: `processing.max_retry_after_secs`).
pub fn cap_retry_after_ms(retry_after_ms: i64, now_ms: i64, max_secs: u64) -> i64 {
    let max_ms = i64::try_from(max_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    retry_after_ms.min(now_ms.saturating_add(max_ms))
}

/// A `Retry-After` header value (RFC 9110 §10.2.3) as a Unix-ms instant:
/// either delay-seconds (digits only) counted from `now_ms`, or an
/// HTTP-date. Anything else is `None` (ignored, as a browser would).
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<i64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate rather than fail.
        let secs: i64 = value.parse().unwrap_or(i64::MAX);
        return Some(now_ms.saturating_add(secs.saturating_mul(1000)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_first_retry_waits_between_half_the_base_and_the_base() {
        assert_eq!(delay_bounds_ms(1, 2, 3600), (1_000, 2_000));
        // Attempt 0 (never counted by the queue, but harmless) is attempt 1.
        assert_eq!(delay_bounds_ms(0, 2, 3600), (1_000, 2_000));
    }

    #[test]
    fn each_retry_doubles_the_window() {
        assert_eq!(delay_bounds_ms(2, 2, 3600), (2_000, 4_000));
        assert_eq!(delay_bounds_ms(3, 2, 3600), (4_000, 8_000));
        assert_eq!(delay_bounds_ms(8, 2, 3600), (128_000, 256_000));
    }

    #[test]
    fn the_window_is_capped_at_backoff_max_secs_and_never_overflows() {
        assert_eq!(delay_bounds_ms(12, 2, 3600), (1_800_000, 3_600_000));
        assert_eq!(delay_bounds_ms(64, 2, 3600), (1_800_000, 3_600_000));
        assert_eq!(delay_bounds_ms(u32::MAX, u64::MAX, 10), (5_000, 10_000));
        let (_, high) = delay_bounds_ms(u32::MAX, u64::MAX, u64::MAX);
        assert_eq!(high, u64::MAX);
    }

    #[test]
    fn a_zero_base_retries_at_once() {
        assert_eq!(delay_bounds_ms(5, 0, 3600), (0, 0));
    }

    #[test]
    fn random_delays_stay_within_half_and_whole_of_d() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=15 {
            let (low, high) = delay_bounds_ms(attempt, 2, 3600);
            assert_eq!(low, high / 2);
            let mut seen_low_half = false;
            let mut seen_high_half = false;
            for _ in 0..200 {
                let d = retry_delay_ms(attempt, 2, 3600, &mut rng);
                assert!((low..=high).contains(&d), "attempt {attempt}: {d}");
                seen_low_half |= d < low + (high - low) / 2;
                seen_high_half |= d > low + (high - low) / 2;
            }
            assert!(
                seen_low_half && seen_high_half,
                "jitter spreads over the window"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor_not_a_replacement() {
        assert_eq!(retry_at_ms(1_000, 500, None), 1_500);
        assert_eq!(retry_at_ms(1_000, 500, Some(9_000)), 9_000);
        assert_eq!(retry_at_ms(1_000, 500, Some(1_200)), 1_500);
        assert_eq!(retry_at_ms(i64::MAX - 1, u64::MAX, None), i64::MAX);
    }

    #[test]
    fn a_retry_after_beyond_the_cap_is_cut_to_it_and_a_nearer_one_is_kept() {
        let now = 1_000_000;
        let far = parse_retry_after("99999999999", now).unwrap();
        assert_eq!(cap_retry_after_ms(far, now, 3600), now + 3_600_000);
        assert_eq!(cap_retry_after_ms(now + 5_000, now, 3600), now + 5_000);
        assert_eq!(cap_retry_after_ms(i64::MAX, now, u64::MAX), i64::MAX);
    }

    #[test]
    fn retry_after_in_seconds_counts_from_now() {
        assert_eq!(parse_retry_after("120", 1_000), Some(121_000));
        assert_eq!(parse_retry_after(" 0 ", 1_000), Some(1_000));
        assert_eq!(
            parse_retry_after("99999999999999999999999", 0),
            Some(i64::MAX)
        );
    }

    #[test]
    fn retry_after_as_an_http_date_is_that_instant() {
        // 1994-11-06T08:49:37Z, the RFC's own example, in all three formats.
        let at = 784_111_777_000;
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 0),
            Some(at)
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", 0),
            Some(at)
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", 0), Some(at));
    }

    #[test]
    fn garbage_retry_after_is_ignored() {
        for value in [
            "",
            "  ",
            "-5",
            "1.5",
            "soon",
            "12 s",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(value, 1_000), None, "{value:?}");
        }
    }
}
