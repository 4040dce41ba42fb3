//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`,
//! HMAC-SHA256 of `ts:body` (any `h1` may match: Paddle lists several
//! while a secret rotates), the timestamp within the tolerance. Ids,
//! action, object and time come from the notification body.

use super::{Provider, BASE};
use crate::sources::locate::{pointer, seconds, Defaults, Find, FindType};
use crate::sources::signature::{any_matches, decode_hex, Signed, ToSign};
use crate::sources::{trim_ows, SignatureError};

pub const SIGNATURE: &str = "Paddle-Signature";

pub const PROVIDER: Provider = Provider {
    name: "paddle",
    verify,
    sign,
    defaults,
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![pointer("/event_id")],
        action: Find::At(pointer("/event_type")),
        object_id: Find::At(pointer("/data/id")),
        object_type: FindType::FirstSegment(pointer("/event_type"), '.'),
        event_time: seconds(pointer("/occurred_at")),
    }
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    let value = s.header(SIGNATURE)?;
    let mut timestamp = None;
    let mut h1 = Vec::new();
    for item in value.split(';') {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        match trim_ows(k) {
            "ts" => timestamp = Some(trim_ows(v)),
            "h1" => h1.push(decode_hex(v)),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Invalid)?;
    let ts: i64 = t.parse().map_err(|_| SignatureError::Invalid)?;
    let matched = s.any_key(|key| any_matches(&key.sha256(&[t.as_bytes(), b":", s.body]), &h1));
    s.matched_then_fresh(matched, ts)
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let t = s.now_secs.to_string();
    let sig = hex::encode(s.key.tag256(&[t.as_bytes(), b":", s.body]));
    vec![(SIGNATURE.to_string(), format!("ts={t};h1={sig}"))]
}
