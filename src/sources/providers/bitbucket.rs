//! Bitbucket: `X-Hub-Signature: sha256=<hex>`, HMAC-SHA256 of the body.
//! The event id is `X-Request-UUID` (Cloud), else `X-Request-Id` (Data
//! Center); the action is `X-Event-Key`; no object is named.

use super::{Provider, BASE};
use crate::sources::locate::{header, Defaults, Find, FindType};
use crate::sources::signature::{decode_hex, verify_body_hmac, ToSign};

pub const SIGNATURE: &str = "X-Hub-Signature";

pub const PROVIDER: Provider = Provider {
    name: "bitbucket",
    verify: |s| verify_body_hmac(s, SIGNATURE, "sha256=", decode_hex),
    sign,
    defaults,
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header("X-Request-UUID"), header("X-Request-Id")],
        action: Find::At(header("X-Event-Key")),
        object_id: Find::Absent,
        object_type: FindType::Absent,
        event_time: None,
    }
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let sig = hex::encode(s.key.tag256(&[s.body]));
    vec![(SIGNATURE.to_string(), format!("sha256={sig}"))]
}
