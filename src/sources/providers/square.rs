//! Square: `x-square-hmacsha256-signature: <base64>`, HMAC-SHA256 of the
//! notification URL followed by the body, with the subscription's
//! signature key ("Validate notifications", developer.squareup.com; the
//! SDKs' `WebhooksHelper.isValidWebhookEventSignature`). The URL is the
//! source's `public_url`, exactly as registered with Square, so the preset
//! requires it. The event id is `/event_id`, the action `/type`, the
//! object `/data/type` / `/data/id`, the event time `/created_at`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Provider, BASE};
use crate::config::SourceConfig;
use crate::sources::locate::{pointer, seconds, Defaults, Find, FindType};
use crate::sources::signature::{decode_base64, matches, Signed, ToSign};
use crate::sources::SignatureError;

pub const SIGNATURE: &str = "x-square-hmacsha256-signature";

pub const PROVIDER: Provider = Provider {
    name: "square",
    verify,
    sign,
    defaults,
    check,
    ..BASE
};

fn check(config: &SourceConfig) -> Vec<String> {
    super::public_url_required(config, "square")
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    let given = decode_base64(s.header(SIGNATURE)?);
    // Config validation requires it; without one nothing can match.
    let url = s
        .config
        .public_url
        .as_deref()
        .ok_or(SignatureError::Invalid)?;
    if s.any_key(|key| matches(key.sha256(&[url.as_bytes(), s.body]), &given)) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let url = s.config.public_url.as_deref().unwrap_or_default();
    let sig = STANDARD.encode(s.key.tag256(&[url.as_bytes(), s.body]));
    vec![(SIGNATURE.to_string(), sig)]
}

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![pointer("/event_id")],
        action: Find::At(pointer("/type")),
        object_id: Find::At(pointer("/data/id")),
        object_type: FindType::At(pointer("/data/type")),
        event_time: seconds(pointer("/created_at")),
    }
}
