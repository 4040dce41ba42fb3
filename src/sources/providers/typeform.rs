//! Typeform: `Typeform-Signature: sha256=<base64>`, HMAC-SHA256 of the
//! body. The event id is `/event_id`; the object is the form response,
//! named by its token.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Provider, BASE};
use crate::config::Locator;
use crate::sources::locate::{pointer, Defaults, Find, FindType};
use crate::sources::signature::{decode_base64, verify_body_hmac, ToSign};

pub const SIGNATURE: &str = "Typeform-Signature";

pub const PROVIDER: Provider = Provider {
    name: "typeform",
    verify: |s| verify_body_hmac(s, SIGNATURE, "sha256=", decode_base64),
    sign,
    defaults,
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![pointer("/event_id")],
        action: Find::At(pointer("/event_type")),
        object_id: Find::At(pointer("/form_response/token")),
        object_type: FindType::At(Locator::Value("form_response".into())),
        event_time: None,
    }
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let sig = STANDARD.encode(s.key.tag256(&[s.body]));
    vec![(SIGNATURE.to_string(), format!("sha256={sig}"))]
}
