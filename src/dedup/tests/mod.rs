//! Tests of [`plan`](super::plan), split by concern: [`rules`] checks each
//! rule's precedence, [`buckets`] the payload-hash time buckets (including the
//! property that a copy less than one window later always finds the first
//! copy's key and one two or more windows later never does), and [`presets`]
//! the deliveries of each preset, built by hand as the sources module would.
//! The helpers here build deliveries, action tables and expected plans.

mod buckets;
mod presets;
mod rules;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::config::ActionRule;
use crate::sources::Delivery;

pub(super) const WINDOW: u64 = 300;
pub(super) const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// 2024-05-01T12:00:00Z, the first millisecond of a five-minute bucket.
pub(super) const T0: i64 = 1_714_564_800_000;

pub(super) fn delivery(
    payload: Value,
    event_id: Option<&str>,
    action: Option<&str>,
    object: Option<(&str, &str)>,
) -> Delivery {
    Delivery {
        payload,
        event_id: event_id.map(str::to_owned),
        action: action.map(str::to_owned),
        object_type: object.map(|(t, _)| t.to_owned()),
        object_id: object.map(|(_, id)| id.to_owned()),
        event_time_ms: None,
    }
}

pub(super) fn table(rules: &[(&str, ActionRule)]) -> BTreeMap<String, ActionRule> {
    rules.iter().map(|(a, r)| (a.to_string(), *r)).collect()
}

pub(super) fn acuity_table() -> BTreeMap<String, ActionRule> {
    table(&[
        ("scheduled", ActionRule::Unique),
        ("canceled", ActionRule::Unique),
        ("order.completed", ActionRule::Unique),
        ("rescheduled", ActionRule::Coalesce),
        ("changed", ActionRule::Coalesce),
    ])
}

pub(super) fn insert(strategy: Strategy, key: &str) -> KeyPlan {
    KeyPlan::Insert {
        strategy,
        key: key.to_owned(),
        previous_key: None,
    }
}

pub(super) fn hash_plan(current: i64) -> KeyPlan {
    KeyPlan::Insert {
        strategy: Strategy::PayloadHash,
        key: format!("hash:{HASH}:{current}"),
        previous_key: Some(format!("hash:{HASH}:{}", current - 1)),
    }
}

pub(super) fn plan_at(
    d: &Delivery,
    actions: Option<&BTreeMap<String, ActionRule>>,
    at_ms: i64,
) -> KeyPlan {
    plan(d, actions, WINDOW, HASH, at_ms)
}

/// The payload-hash plan of one anonymous delivery arriving at `at_ms`.
pub(super) fn hashed(at_ms: i64, window_secs: u64) -> (String, String) {
    match plan(
        &delivery(json!({}), None, None, None),
        None,
        window_secs,
        HASH,
        at_ms,
    ) {
        KeyPlan::Insert {
            strategy: Strategy::PayloadHash,
            key,
            previous_key: Some(prev),
        } => (key, prev),
        other => panic!("expected a payload-hash plan, got {other:?}"),
    }
}

/// Whether a later copy finds the first copy's row: its key or its previous key
/// is the key the first copy inserted.
pub(super) fn later_copy_finds_first(first_ms: i64, later_ms: i64, window_secs: u64) -> bool {
    let (first_key, _) = hashed(first_ms, window_secs);
    let (key, prev) = hashed(later_ms, window_secs);
    key == first_key || prev == first_key
}
