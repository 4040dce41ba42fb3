//! Payload-hash buckets: key format, floor buckets for zero and negative
//! times, and the one-window / two-windows guarantee, by example and by
//! property.

use proptest::{prop_assert, prop_assume, proptest};
use serde_json::json;

use super::*;

#[test]
fn a_hash_key_names_the_bucket_and_the_previous_bucket() {
    assert_eq!(
        hashed(T0, WINDOW),
        (
            format!("hash:{HASH}:5715216"),
            format!("hash:{HASH}:5715215")
        )
    );
}

#[test]
fn zero_and_negative_arrival_times_use_floor_buckets() {
    assert_eq!(
        hashed(0, WINDOW),
        (format!("hash:{HASH}:0"), format!("hash:{HASH}:-1"))
    );
    assert_eq!(
        hashed(-1, WINDOW),
        (format!("hash:{HASH}:-1"), format!("hash:{HASH}:-2"))
    );
    assert!(later_copy_finds_first(-1, 0, WINDOW));
    assert!(later_copy_finds_first(-150_000, 149_999, WINDOW));
    assert!(!later_copy_finds_first(-300_000, 300_000, WINDOW));
}

#[test]
fn a_copy_in_the_same_bucket_has_the_same_key() {
    assert_eq!(hashed(T0, WINDOW).0, hashed(T0 + 299_999, WINDOW).0);
}

#[test]
fn a_copy_that_straddles_a_boundary_finds_the_first_by_its_previous_key() {
    let first = T0 + 299_000;
    let later = T0 + 301_000;
    let (first_key, _) = hashed(first, WINDOW);
    let (key, prev) = hashed(later, WINDOW);
    assert_ne!(key, first_key);
    assert_eq!(prev, first_key);
}

#[test]
fn a_copy_one_window_less_a_millisecond_later_is_found() {
    for first in [T0, T0 + 1, T0 + 999, T0 + 299_999, -1, 0] {
        assert!(
            later_copy_finds_first(first, first + 299_999, WINDOW),
            "{first}"
        );
    }
}

#[test]
fn a_copy_two_windows_later_is_never_found() {
    for first in [T0, T0 + 1, T0 + 299_999, -1, 0] {
        assert!(
            !later_copy_finds_first(first, first + 600_000, WINDOW),
            "{first}"
        );
    }
}

#[test]
fn the_arrival_time_not_the_event_time_picks_the_bucket() {
    let mut d = delivery(json!({}), None, None, None);
    d.event_time_ms = Some(0);
    assert_eq!(plan_at(&d, None, T0), hash_plan(T0 / 300_000));
}

proptest! {
    #[test]
    fn any_copy_less_than_one_window_later_is_found(
        first in -10_000_000_000_000i64..10_000_000_000_000,
        window in 1u64..100_000,
        frac in 0.0f64..1.0,
    ) {
        let delta = ((window * 1000) as f64 * frac) as i64;
        prop_assume!(delta < (window * 1000) as i64);
        prop_assert!(later_copy_finds_first(first, first + delta, window));
    }

    #[test]
    fn no_copy_two_or_more_windows_later_is_found(
        first in -10_000_000_000_000i64..10_000_000_000_000,
        window in 1u64..100_000,
        extra in 0i64..1_000_000_000,
    ) {
        let delta = 2 * (window * 1000) as i64 + extra;
        prop_assert!(!later_copy_finds_first(first, first + delta, window));
    }
}
