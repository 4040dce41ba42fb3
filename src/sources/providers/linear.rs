//! Linear: `Linear-Signature: <hex>`, HMAC-SHA256 of the body with the
//! webhook's signing secret; the body's `webhookTimestamp` (Unix ms) must
//! then be within the tolerance ("Webhooks" → "Securing webhooks",
//! linear.app/developers/webhooks; the `@linear/sdk` `LinearWebhooks`
//! helper checks both the same way). The event id is the `Linear-Delivery`
//! header; the action is `/type` + `.` + `/action` (`Issue.create`); the
//! object is `/type` / `/data/id`; the event time is `/createdAt`.

use serde_json::Value;

use super::{Provider, BASE};
use crate::sources::locate::{header, pointer, seconds, Defaults, Find, FindType, Lookup};
use crate::sources::signature::{check_timestamp, decode_hex, verify_body_hmac, Signed, ToSign};
use crate::sources::SignatureError;

pub const SIGNATURE: &str = "Linear-Signature";
pub const DELIVERY: &str = "Linear-Delivery";
/// Where the signed body carries its send time (Unix ms).
pub const TIMESTAMP: &str = "webhookTimestamp";

pub const PROVIDER: Provider = Provider {
    name: "linear",
    verify,
    sign,
    restamp: Some(restamp),
    defaults,
    ..BASE
};

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    verify_body_hmac(s, SIGNATURE, "", decode_hex)?;
    // Signed, so the timestamp inside is Linear's; a signed body without
    // one cannot show it is fresh.
    let sent_ms = serde_json::from_slice::<Value>(s.body)
        .ok()
        .and_then(|body| body.get(TIMESTAMP)?.as_i64())
        .ok_or(SignatureError::Invalid)?;
    check_timestamp(
        sent_ms.div_euclid(1000),
        s.now_secs,
        s.config.tolerance_secs,
    )
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    vec![(SIGNATURE.to_string(), hex::encode(s.key.tag256(&[s.body])))]
}

/// The body with `webhookTimestamp` set to now (a JSON object only).
fn restamp(s: &ToSign<'_>) -> Option<Vec<u8>> {
    let mut body: Value = serde_json::from_slice(s.body).ok()?;
    body.as_object_mut()?.insert(
        TIMESTAMP.into(),
        Value::from(s.now_secs.saturating_mul(1000)),
    );
    serde_json::to_vec(&body).ok()
}

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header(DELIVERY)],
        action: Find::With(action),
        object_id: Find::At(pointer("/data/id")),
        object_type: FindType::At(pointer("/type")),
        event_time: seconds(pointer("/createdAt")),
    }
}

/// `/type` + `.` + `/action` (`Issue.create`); just `/type` without one.
fn action(l: &Lookup<'_>) -> Option<String> {
    let kind = l.pointer("/type")?;
    Some(match l.pointer("/action") {
        Some(action) => format!("{kind}.{action}"),
        None => kind,
    })
}
