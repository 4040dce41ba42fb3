//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<b64> [v1,<b64>…]` (space-separated), base64
//! HMAC-SHA256 of `id.timestamp.body` under the base64-decoded part of a
//! `whsec_…` secret; entries of other versions (`v1a`) are ignored. The
//! signed `webhook-id` is the event id, used exactly as signed (SPEC §3).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Provider, BASE};
use crate::config::SourceConfig;
use crate::sources::field_value;
use crate::sources::locate::{header, pointer, seconds, Defaults, Find, FindType};
use crate::sources::signature::{any_matches, decode_base64, Signed, ToSign, BASE64_LENIENT};
use crate::sources::SignatureError;

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";
/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

pub const PROVIDER: Provider = Provider {
    name: "standard",
    key: standard_webhooks_key,
    verify,
    sign,
    defaults,
    check,
    ..BASE
};

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64), if well-formed.
pub fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    let key = BASE64_LENIENT.decode(encoded).ok()?;
    // An empty key would let anyone sign.
    (!key.is_empty()).then_some(key)
}

fn check(config: &SourceConfig) -> Vec<String> {
    if config
        .secrets
        .iter()
        .any(|s| standard_webhooks_key(s.expose()).is_none())
    {
        vec![".secret: a Standard Webhooks secret is whsec_ followed by base64".into()]
    } else {
        Vec::new()
    }
}

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header(ID)],
        action: Find::At(pointer("/type")),
        object_id: Find::At(pointer("/data/id")),
        object_type: FindType::FirstSegment(pointer("/type"), '.'),
        event_time: seconds(pointer("/timestamp")),
    }
}

/// The scheme under any header names (Svix uses `svix-id`, …).
pub fn verify_with(
    s: &Signed<'_>,
    [id, timestamp, signatures]: [&str; 3],
) -> Result<(), SignatureError> {
    let id = s.header(id)?;
    let timestamp = s.header(timestamp)?;
    let signatures = s.header(signatures)?;
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::Invalid)?;
    let candidates: Vec<Option<Vec<u8>>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, sig)| decode_base64(sig))
        .collect();
    let matched = s.any_key(|key| {
        let mac = key.sha256(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", s.body]);
        any_matches(&mac, &candidates)
    });
    s.matched_then_fresh(matched, ts)
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    verify_with(s, [ID, TIMESTAMP, SIGNATURE])
}

/// The sender's side under any header names; the id is kept from
/// `headers` when given, else generated.
pub fn sign_with(s: &ToSign<'_>, [id_name, ts_name, sig_name]: [&str; 3]) -> Vec<(String, String)> {
    let id = field_value(s.headers, id_name)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .unwrap_or_else(new_message_id);
    let ts = s.now_secs.to_string();
    let sig = STANDARD.encode(
        s.key
            .tag256(&[id.as_bytes(), b".", ts.as_bytes(), b".", s.body]),
    );
    vec![
        (id_name.to_string(), id),
        (ts_name.to_string(), ts),
        (sig_name.to_string(), format!("v1,{sig}")),
    ]
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    sign_with(s, [ID, TIMESTAMP, SIGNATURE])
}

/// A fresh Standard Webhooks message id: `msg_` + 16 random bytes in hex.
fn new_message_id() -> String {
    format!("msg_{}", hex::encode(rand::random::<[u8; 16]>()))
}
