//! Zoom: `x-zm-signature: v0=<hex>`, HMAC-SHA256 of
//! `v0:{x-zm-request-timestamp}:{body}` with the webhook secret token, the
//! timestamp within the tolerance. Zoom sends no event id, so deliveries
//! dedup by payload hash over a two-hour window (Zoom retries after 5, 25
//! and 85 minutes). The `endpoint.url_validation` handshake is answered
//! with the `plainToken` and its hex HMAC-SHA256 once its signature holds,
//! and is not recorded.

use serde_json::{json, Value};

use super::slack::{sign_v0, verify_v0};
use super::{Provider, BASE};
use crate::sources::locate::{millis, pointer, Defaults, Find, FindType};
use crate::sources::signature::HmacKey;

pub const SIGNATURE: &str = "x-zm-signature";
pub const TIMESTAMP: &str = "x-zm-request-timestamp";

pub const PROVIDER: Provider = Provider {
    name: "zoom",
    verify: |s| verify_v0(s, SIGNATURE, TIMESTAMP),
    sign: |s| sign_v0(s, SIGNATURE, TIMESTAMP),
    defaults,
    hash_window_secs: 7200,
    challenge: Some(challenge),
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: Vec::new(),
        action: Find::At(pointer("/event")),
        object_id: Find::At(pointer("/payload/object/id")),
        object_type: FindType::FirstSegment(pointer("/event"), '.'),
        event_time: millis(pointer("/event_ts")),
    }
}

/// `{"event": "endpoint.url_validation", "payload": {"plainToken": …}}` →
/// `{"plainToken": …, "encryptedToken": hex HMAC-SHA256(secret, plainToken)}`.
fn challenge(payload: &Value, key: &HmacKey) -> Option<Value> {
    if payload.get("event")?.as_str()? != "endpoint.url_validation" {
        return None;
    }
    let plain = payload.pointer("/payload/plainToken")?.as_str()?;
    let encrypted = hex::encode(key.tag256(&[plain.as_bytes()]));
    Some(json!({ "plainToken": plain, "encryptedToken": encrypted }))
}
