//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, hex
//! HMAC-SHA256 of `t.body`; `v0` and unknown schemes are ignored, several
//! `v1` entries appear while a secret rotates. Ids, action and object from
//! the event body; a processed event's domain data is `/data/object`.

use super::{GapFill, Provider, BASE};
use crate::sources::locate::{pointer, seconds, Defaults, Find, FindType};
use crate::sources::signature::{any_matches, decode_hex, Signed, ToSign};
use crate::sources::{trim_ows, SignatureError};

pub const SIGNATURE: &str = "Stripe-Signature";

pub const PROVIDER: Provider = Provider {
    name: "stripe",
    verify,
    sign,
    defaults,
    domain_object: Some("/data/object"),
    // Stripe lists (and can resend) events of the last 30 days.
    resend_horizon_secs: 30 * 86_400,
    gap_fill: Some(GapFill::StripeEvents),
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![pointer("/id")],
        action: Find::At(pointer("/type")),
        object_id: Find::At(pointer("/data/object/id")),
        object_type: FindType::At(pointer("/data/object/object")),
        event_time: seconds(pointer("/created")),
    }
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    let value = s.header(SIGNATURE)?;
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        // Spaces around list items are list syntax; nothing else is trimmed
        // from what the MAC covers.
        match trim_ows(k) {
            "t" => timestamp = Some(trim_ows(v)),
            "v1" => v1.push(decode_hex(v)),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Invalid)?;
    let ts: i64 = t.parse().map_err(|_| SignatureError::Invalid)?;
    let matched = s.any_key(|key| any_matches(&key.sha256(&[t.as_bytes(), b".", s.body]), &v1));
    s.matched_then_fresh(matched, ts)
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let t = s.now_secs.to_string();
    let sig = hex::encode(s.key.tag256(&[t.as_bytes(), b".", s.body]));
    vec![(SIGNATURE.to_string(), format!("t={t},v1={sig}"))]
}
