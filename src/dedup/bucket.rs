//! Time buckets for payload-hash keys: `floor(unix_seconds / window)`,
//! computed with floor (not truncating) division so that times before 1970
//! bucket consistently too. Because `floor(floor(ms / 1000) / w)` equals
//! `floor(ms / (1000 w))`, two arrivals less than one window apart are at most
//! one bucket apart, and two or more windows apart are at least two buckets
//! apart — which is what makes the current + previous bucket lookup exact.

/// The bucket of an arrival at `received_at_ms` (Unix ms) for a window of
/// `window_secs` seconds. A window of 0 (which config validation rejects) is
/// treated as 1 second rather than dividing by zero.
pub fn bucket(received_at_ms: i64, window_secs: u64) -> i64 {
    let window = i64::try_from(window_secs).unwrap_or(i64::MAX).max(1);
    received_at_ms.div_euclid(1000).div_euclid(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_window_after_the_epoch_is_bucket_zero() {
        assert_eq!(bucket(0, 300), 0);
        assert_eq!(bucket(1, 300), 0);
        assert_eq!(bucket(299_999, 300), 0);
        assert_eq!(bucket(300_000, 300), 1);
        assert_eq!(bucket(599_999, 300), 1);
        assert_eq!(bucket(600_000, 300), 2);
    }

    #[test]
    fn times_before_the_epoch_floor_towards_minus_infinity() {
        assert_eq!(bucket(-1, 300), -1);
        assert_eq!(bucket(-999, 300), -1);
        assert_eq!(bucket(-1_000, 300), -1);
        assert_eq!(bucket(-300_000, 300), -1);
        assert_eq!(bucket(-300_001, 300), -2);
        assert_eq!(bucket(-1, 1), -1);
    }

    #[test]
    fn a_realistic_time_lands_in_its_window() {
        // 2024-05-01T12:00:00Z with a five-minute window.
        let ms = 1_714_564_800_000;
        assert_eq!(bucket(ms, 300), 1_714_564_800 / 300);
        assert_eq!(bucket(ms + 299_999, 300), 1_714_564_800 / 300);
        assert_eq!(bucket(ms - 1, 300), 1_714_564_800 / 300 - 1);
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        assert_eq!(bucket(12_345, 0), 12);
        assert_eq!(bucket(i64::MAX, u64::MAX), 0);
        assert_eq!(bucket(i64::MIN, u64::MAX), -1);
        assert_eq!(bucket(i64::MIN, 1), i64::MIN / 1000 - 1);
    }
}
