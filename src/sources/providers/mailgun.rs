//! Mailgun: the signature is in the body — `{"signature": {"timestamp",
//! "token", "signature"}, "event-data": {…}}`, `signature` the hex
//! HMAC-SHA256 of `timestamp` followed by `token` under the HTTP webhook
//! signing key ("Webhooks" → "Securing webhooks", documentation.mailgun.com),
//! the timestamp within the tolerance. The MAC does not cover `event-data`,
//! so the token is good for one event: ingest claims it for the delivery's
//! `/event-data/id` and refuses it with any other (SPEC §11,
//! [`Provider::one_use_token`]). A body that is not JSON with the whole
//! `signature` object is `missing_signature`. The event id is
//! `/event-data/id`, the action `/event-data/event`, the object `message` /
//! `/event-data/message/headers/message-id`, the time
//! `/event-data/timestamp` (Unix seconds with a fraction).

use serde_json::{json, Value};

use super::{Provider, BASE};
use crate::config::Locator;
use crate::sources::locate::{pointer, seconds, Defaults, Find, FindType};
use crate::sources::signature::{decode_hex, matches, Signed, ToSign};
use crate::sources::SignatureError;

pub const PROVIDER: Provider = Provider {
    name: "mailgun",
    verify,
    restamp: Some(restamp),
    defaults,
    one_use_token: Some(|payload| Some(payload.pointer("/signature/token")?.as_str()?.to_string())),
    ..BASE
};

/// The `signature` object's three fields as text (the timestamp may be a
/// string, as Mailgun sends it, or a number).
fn signature_object(body: &[u8]) -> Option<(String, String, String)> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let signature = body.get("signature")?;
    let timestamp = match signature.get("timestamp")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let text = |key: &str| Some(signature.get(key)?.as_str()?.to_string());
    Some((timestamp, text("token")?, text("signature")?))
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    let (timestamp, token, given) = signature_object(s.body).ok_or(SignatureError::Missing)?;
    let given = decode_hex(&given);
    let matched = s.any_key(|key| {
        matches(
            key.sha256(&[timestamp.as_bytes(), token.as_bytes()]),
            &given,
        )
    });
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::Invalid)?;
    s.matched_then_fresh(matched, ts)
}

/// The body with a fresh `signature` object (timestamp now, a new 50-hex
/// token, its MAC), as Mailgun signs each attempt.
fn restamp(s: &ToSign<'_>) -> Option<Vec<u8>> {
    let mut body: Value = serde_json::from_slice(s.body).ok()?;
    let timestamp = s.now_secs.to_string();
    let token = hex::encode(rand::random::<[u8; 25]>());
    let signature = hex::encode(s.key.tag256(&[timestamp.as_bytes(), token.as_bytes()]));
    body.as_object_mut()?.insert(
        "signature".into(),
        json!({"timestamp": timestamp, "token": token, "signature": signature}),
    );
    serde_json::to_vec(&body).ok()
}

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![pointer("/event-data/id")],
        action: Find::At(pointer("/event-data/event")),
        object_id: Find::At(pointer("/event-data/message/headers/message-id")),
        object_type: FindType::At(Locator::Value("message".into())),
        event_time: seconds(pointer("/event-data/timestamp")),
    }
}
