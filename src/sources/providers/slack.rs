//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}`, the timestamp within the
//! tolerance. Events API callbacks carry `/event_id`, `/event/type` and
//! `/event_time`; the `url_verification` handshake is answered with its
//! `challenge` once its signature holds, and is not recorded.

use serde_json::{json, Value};

use super::{Provider, BASE};
use crate::sources::locate::{pointer, seconds, Defaults, Find, FindType};
use crate::sources::signature::{decode_hex, matches, HmacKey, Signed, ToSign};
use crate::sources::SignatureError;

pub const SIGNATURE: &str = "X-Slack-Signature";
pub const TIMESTAMP: &str = "X-Slack-Request-Timestamp";

pub const PROVIDER: Provider = Provider {
    name: "slack",
    verify: |s| verify_v0(s, SIGNATURE, TIMESTAMP),
    sign: |s| sign_v0(s, SIGNATURE, TIMESTAMP),
    defaults,
    challenge: Some(challenge),
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![pointer("/event_id")],
        action: Find::With(|l| l.pointer("/event/type").or_else(|| l.pointer("/type"))),
        object_id: Find::Absent,
        object_type: FindType::Absent,
        event_time: seconds(pointer("/event_time")),
    }
}

/// `{"type": "url_verification", "challenge": …}` → `{"challenge": …}`.
fn challenge(payload: &Value, _: &HmacKey) -> Option<Value> {
    if payload.get("type")?.as_str()? != "url_verification" {
        return None;
    }
    Some(json!({ "challenge": payload.get("challenge")? }))
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` (Slack and Zoom).
pub fn verify_v0(s: &Signed<'_>, signature: &str, timestamp: &str) -> Result<(), SignatureError> {
    let given = s.header(signature)?;
    let ts_text = s.header(timestamp)?;
    let given = decode_hex(given.strip_prefix("v0=").ok_or(SignatureError::Invalid)?);
    let ts: i64 = ts_text.parse().map_err(|_| SignatureError::Invalid)?;
    let matched = s.any_key(|key| {
        matches(
            key.sha256(&[b"v0:", ts_text.as_bytes(), b":", s.body]),
            &given,
        )
    });
    s.matched_then_fresh(matched, ts)
}

pub fn sign_v0(s: &ToSign<'_>, signature: &str, timestamp: &str) -> Vec<(String, String)> {
    let ts = s.now_secs.to_string();
    let sig = hex::encode(s.key.tag256(&[b"v0:", ts.as_bytes(), b":", s.body]));
    vec![
        (timestamp.to_string(), ts),
        (signature.to_string(), format!("v0={sig}")),
    ]
}
