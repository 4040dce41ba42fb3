//! Intercom: `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 of the body with the
//! app's client secret ("Webhooks" → "Signed notifications",
//! developers.intercom.com). A notification is `{"type":
//! "notification_event", "id": "notif_…", "topic": "conversation.user.created",
//! "data": {"item": {"type": "conversation", "id": "…"}}, …}`: the event id
//! is `/id`, the action `/topic`, the object `/data/item/type` /
//! `/data/item/id`. SPEC §11 names no event time for Intercom (its
//! `created_at` is when the notification was made), so it is arrival.

use super::{Provider, BASE};
use crate::sources::locate::{pointer, Defaults, Find, FindType};
use crate::sources::signature::{decode_hex, matches, Signed, ToSign};
use crate::sources::SignatureError;

pub const SIGNATURE: &str = "X-Hub-Signature";
pub const SIGNATURE_PREFIX: &str = "sha1=";

pub const PROVIDER: Provider = Provider {
    name: "intercom",
    verify,
    sign,
    defaults,
    ..BASE
};

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    let value = s.header(SIGNATURE)?;
    let given = decode_hex(
        value
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(SignatureError::Invalid)?,
    );
    if s.any_key(|key| matches(key.sha1(&[s.body]), &given)) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let sig = hex::encode(s.key.tag1(&[s.body]));
    vec![(SIGNATURE.to_string(), format!("{SIGNATURE_PREFIX}{sig}"))]
}

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![pointer("/id")],
        action: Find::At(pointer("/topic")),
        object_id: Find::At(pointer("/data/item/id")),
        object_type: FindType::At(pointer("/data/item/type")),
        event_time: None,
    }
}
