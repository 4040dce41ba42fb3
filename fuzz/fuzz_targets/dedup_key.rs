//! Dedup keys: `plan` never panics, is deterministic, names its strategy in
//! its key's prefix, and two copies less than one window apart always find
//! each other (same key, or the later one's previous-bucket key).
//!
//! Input: window (8 bytes), arrival ms (8), delay (8), then 0x00-terminated
//! event id, action, object id, action table (`action=rule` lines), and the
//! rest as the body whose hash the payload-hash keys use.

#![no_main]

use std::collections::BTreeMap;

use hookledger::config::ActionRule;
use hookledger::dedup::{self, KeyPlan, Strategy};
use hookledger::sources::Delivery;
use hookledger_fuzz::Input;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn prefix(plan: &KeyPlan) -> &'static str {
    match plan {
        KeyPlan::Ignore { .. } => "ign:",
        KeyPlan::Insert { strategy, .. } => match strategy {
            Strategy::EventId => "id:",
            Strategy::ActionObject => "act:",
            Strategy::Coalesce => "co:",
            Strategy::PayloadHash => "hash:",
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let window = input.u64();
    let at_ms = input.i64();
    let delay = input.u64();
    let delivery = Delivery {
        payload: Value::Object(Default::default()),
        event_id: input.maybe_text(),
        action: input.maybe_text(),
        object_type: None,
        object_id: input.maybe_text(),
        event_time_ms: None,
    };
    let table_text = input.text();
    let table: BTreeMap<String, ActionRule> = table_text
        .lines()
        .filter_map(|line| {
            let (action, rule) = line.split_once('=')?;
            Some((action.to_string(), ActionRule::parse(rule)?))
        })
        .collect();
    let actions = (!table_text.is_empty()).then_some(&table);
    let hash = dedup::sha256_hex(input.rest());

    let plan = dedup::plan(&delivery, actions, window, &hash, at_ms);
    assert_eq!(plan, dedup::plan(&delivery, actions, window, &hash, at_ms));
    assert!(plan.key().starts_with(prefix(&plan)), "{plan:?}");
    if let KeyPlan::Insert {
        strategy,
        previous_key,
        ..
    } = &plan
    {
        assert_eq!(previous_key.is_some(), *strategy == Strategy::PayloadHash);
    }
    if let Some(id) = delivery.event_id.as_deref() {
        if !matches!(plan, KeyPlan::Ignore { .. }) {
            assert_eq!(plan.key(), format!("id:{id}"));
        }
    }

    // Straddling: a copy less than one window later finds the first.
    if matches!(
        plan,
        KeyPlan::Insert {
            strategy: Strategy::PayloadHash,
            ..
        }
    ) {
        let window = window.clamp(1, 400 * 86_400);
        let window_ms = window as i64 * 1000;
        let Some(later_ms) = at_ms.checked_add((delay % window_ms as u64) as i64) else {
            return;
        };
        let first = dedup::plan(&delivery, actions, window, &hash, at_ms);
        let later = dedup::plan(&delivery, actions, window, &hash, later_ms);
        let (
            KeyPlan::Insert { key: k1, .. },
            KeyPlan::Insert {
                key: k2,
                previous_key: Some(p2),
                ..
            },
        ) = (first, later)
        else {
            panic!("payload-hash plans");
        };
        assert!(k2 == k1 || p2 == k1, "{k1} / {k2} / {p2}");
        let b1 = dedup::bucket(at_ms, window);
        let b2 = dedup::bucket(later_ms, window);
        assert!(b2 == b1 || b2 == b1 + 1);
    }
});
