//! [`plan`]: the dedup rules of SPEC §3 applied to one delivery, producing the
//! [`KeyPlan`] the ledger executes with `INSERT … ON CONFLICT DO NOTHING`.
//!
//! Order, first that applies wins: an `ignore` action (`ign:`) → the event id
//! (`id:`) → action + object for an action in the table (`act:` for
//! `unique`, `co:` for `coalesce`; `hash` falls through) → payload hash plus
//! arrival bucket (`hash:`), with the previous bucket's key alongside so that
//! a copy that straddles a bucket boundary still finds the first one. An
//! empty id, action or object id counts as absent: an empty event id would
//! otherwise make every delivery of a source a duplicate of the first.

use std::collections::BTreeMap;

use crate::config::ActionRule;
use crate::sources::Delivery;

use super::bucket::bucket;
use super::strategy::Strategy;

/// What to write to the ledger for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlan {
    /// Insert a pending row with `key`, or record a duplicate of the row holding it.
    /// For `PayloadHash`, `previous_key` is the same hash in the previous bucket: a row
    /// holding it makes this delivery a duplicate of that row.
    Insert {
        strategy: Strategy,
        key: String,
        previous_key: Option<String>,
    },
    /// An action whose rule is `ignore`: key `ign:<action>:<object_id>`, recorded once, never processed.
    Ignore { key: String },
}

impl KeyPlan {
    /// The key this delivery claims (the current bucket's, for payload hashes).
    pub fn key(&self) -> &str {
        match self {
            KeyPlan::Insert { key, .. } | KeyPlan::Ignore { key } => key,
        }
    }

    /// The strategy reported in the answer: ignored actions report `action_object`.
    pub fn strategy(&self) -> Strategy {
        match self {
            KeyPlan::Insert { strategy, .. } => *strategy,
            KeyPlan::Ignore { .. } => Strategy::ActionObject,
        }
    }
}

/// Applies the rules of SPEC §3 in order.
///
/// `actions` is the table in force for the source (its own, else its preset's);
/// `body_hash` comes from [`super::body_hash`]; `received_at_ms` is the arrival
/// time in Unix ms, which is what payload-hash buckets use (never the
/// provider's event time, which a retry repeats).
pub fn plan(
    delivery: &Delivery,
    actions: Option<&BTreeMap<String, ActionRule>>,
    hash_window_secs: u64,
    body_hash: &str,
    received_at_ms: i64,
) -> KeyPlan {
    let action = present(&delivery.action);
    let object_id = present(&delivery.object_id);
    let rule = match (actions, action) {
        (Some(table), Some(action)) => table.get(action).copied(),
        _ => None,
    };

    if let (Some(ActionRule::Ignore), Some(action)) = (rule, action) {
        return KeyPlan::Ignore {
            key: format!("ign:{action}:{}", object_id.unwrap_or("")),
        };
    }
    if let Some(id) = present(&delivery.event_id) {
        return insert(Strategy::EventId, format!("id:{id}"), None);
    }
    if let (Some(rule), Some(action), Some(object_id)) = (rule, action, object_id) {
        match rule {
            ActionRule::Unique => {
                let key = format!("act:{action}:{object_id}");
                return insert(Strategy::ActionObject, key, None);
            }
            ActionRule::Coalesce => {
                return insert(Strategy::Coalesce, format!("co:{action}:{object_id}"), None);
            }
            ActionRule::Hash | ActionRule::Ignore => {}
        }
    }
    let current = bucket(received_at_ms, hash_window_secs);
    // `current` is at least i64::MIN / 1000 - 1, so `current - 1` cannot overflow.
    insert(
        Strategy::PayloadHash,
        format!("hash:{body_hash}:{current}"),
        Some(format!("hash:{body_hash}:{}", current - 1)),
    )
}

fn insert(strategy: Strategy, key: String, previous_key: Option<String>) -> KeyPlan {
    KeyPlan::Insert {
        strategy,
        key,
        previous_key,
    }
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}
