//! WooCommerce: `X-WC-Webhook-Signature: <base64>`, HMAC-SHA256 of the body
//! with the webhook's secret (`WC_Webhook::generate_signature` in
//! woocommerce/includes/class-wc-webhook.php: `base64_encode(hash_hmac(
//! 'sha256', $payload, $secret, true))`). WooCommerce's
//! `X-WC-Webhook-Delivery-ID` is a hash of the webhook id and the current
//! second, shared by distinct deliveries and new on a retry, so it is no
//! event id: deliveries dedup by payload hash (SPEC §11). The action is the
//! `X-WC-Webhook-Topic` header (`order.updated`); the object is the
//! `X-WC-Webhook-Resource` header (`order`) / `/id`; the event time is
//! arrival (SPEC §11 names none).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Provider, BASE};
use crate::sources::locate::{header, pointer, Defaults, Find, FindType};
use crate::sources::signature::{decode_base64, verify_body_hmac, ToSign};

pub const SIGNATURE: &str = "X-WC-Webhook-Signature";

pub const PROVIDER: Provider = Provider {
    name: "woocommerce",
    verify: |s| verify_body_hmac(s, SIGNATURE, "", decode_base64),
    sign,
    defaults,
    ..BASE
};

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    vec![(
        SIGNATURE.to_string(),
        STANDARD.encode(s.key.tag256(&[s.body])),
    )]
}

fn defaults() -> Defaults {
    Defaults {
        event_id: Vec::new(),
        action: Find::At(header("X-WC-Webhook-Topic")),
        object_id: Find::At(pointer("/id")),
        object_type: FindType::At(header("X-WC-Webhook-Resource")),
        event_time: None,
    }
}
