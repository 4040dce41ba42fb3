//! STUB — to be replaced by the dedup module (interface contract below).
use std::collections::BTreeMap;

use crate::config::ActionRule;
use crate::sources::{BodyKind, Delivery};

/// Which dedup rule produced a key (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    EventId,
    ActionObject,
    Coalesce,
    PayloadHash,
}

impl Strategy {
    /// `event_id` | `action_object` | `coalesce` | `payload_hash`
    pub fn as_str(self) -> &'static str {
        todo!()
    }
    pub fn parse(_s: &str) -> Option<Strategy> {
        todo!()
    }
}

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

/// SHA-256 (lower-case hex) of the body's canonical form: sorted-key compact JSON
/// for JSON bodies, the raw bytes for form bodies.
pub fn body_hash(_kind: BodyKind, _raw: &[u8], _payload: &serde_json::Value) -> String {
    todo!()
}

/// Applies the rules of SPEC §3 in order.
pub fn plan(
    _delivery: &Delivery,
    _actions: Option<&BTreeMap<String, ActionRule>>,
    _hash_window_secs: u64,
    _body_hash: &str,
    _received_at_ms: i64,
) -> KeyPlan {
    todo!()
}
