//! Shopify: `X-Shopify-Hmac-Sha256`, base64 HMAC-SHA256 of the body. The
//! event id is `X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id`; the topic
//! header is the action and its first segment the object type.

use super::{Provider, BASE};
use crate::sources::locate::{header, pointer, seconds, Defaults, Find, FindType};
use crate::sources::signature::{decode_base64, verify_body_hmac, ToSign};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub const SIGNATURE: &str = "X-Shopify-Hmac-Sha256";

pub const PROVIDER: Provider = Provider {
    name: "shopify",
    verify: |s| verify_body_hmac(s, SIGNATURE, "", decode_base64),
    sign,
    defaults,
    // Shopify retries a failed delivery for 48 hours.
    resend_horizon_secs: 2 * 86_400,
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header("X-Shopify-Event-Id"), header("X-Shopify-Webhook-Id")],
        action: Find::At(header("X-Shopify-Topic")),
        object_id: Find::At(pointer("/id")),
        object_type: FindType::FirstSegment(header("X-Shopify-Topic"), '/'),
        event_time: seconds(header("X-Shopify-Triggered-At")),
    }
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    vec![(
        SIGNATURE.to_string(),
        STANDARD.encode(s.key.tag256(&[s.body])),
    )]
}
