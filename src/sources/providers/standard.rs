//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<b64> [v1a,<b64>…]` (space-separated) over
//! `id.timestamp.body`. A `v1` entry is the base64 HMAC-SHA256 under the
//! base64-decoded part of a `whsec_…` secret; a `v1a` entry (the
//! asymmetric scheme, SPEC §11) is the base64 Ed25519 signature by the key
//! pair whose public half is `public_key = "whpk_…"` (base64 of the raw 32
//! bytes; the private half, `whsk_…`, signs in replay and tests). Entries
//! of a scheme the source has no key for, or of other versions, are
//! ignored. The signed `webhook-id` is the event id, used exactly as
//! signed (SPEC §3).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::{Asymmetric, Provider, BASE};
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
/// The prefixes of an Ed25519 public and private key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
pub const PRIVATE_KEY_PREFIX: &str = "whsk_";

pub const PROVIDER: Provider = Provider {
    name: "standard",
    key: standard_webhooks_key,
    verify,
    sign,
    defaults,
    check,
    asymmetric: Some(&ED25519),
    ..BASE
};

/// The `v1a` scheme.
pub const ED25519: Asymmetric = Asymmetric {
    public_key,
    signing_key,
    sign: sign_v1a,
};

/// `whpk_` + base64 of the raw 32-byte key, a valid point of the curve
/// that is not of small order (such a key would verify forged signatures).
pub fn public_key(text: &str) -> Option<VerifyingKey> {
    let bytes = BASE64_LENIENT
        .decode(text.trim().strip_prefix(PUBLIC_KEY_PREFIX)?)
        .ok()?;
    let key = VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()?;
    (!key.is_weak()).then_some(key)
}

/// `whsk_` + base64 of the 32-byte seed, or of the 64 bytes of seed and
/// public key (libsodium's form; the public half must match the seed's).
pub fn signing_key(text: &str) -> Option<SigningKey> {
    let bytes = BASE64_LENIENT
        .decode(text.trim().strip_prefix(PRIVATE_KEY_PREFIX)?)
        .ok()?;
    match bytes.len() {
        32 => Some(SigningKey::from_bytes(&bytes.try_into().ok()?)),
        64 => SigningKey::from_keypair_bytes(&bytes.try_into().ok()?).ok(),
        _ => None,
    }
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64), if well-formed.
pub fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    let key = BASE64_LENIENT.decode(encoded).ok()?;
    // An empty key would let anyone sign.
    (!key.is_empty()).then_some(key)
}

fn check(config: &SourceConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if config
        .secrets
        .iter()
        .any(|s| standard_webhooks_key(s.expose()).is_none())
    {
        problems.push(".secret: a Standard Webhooks secret is whsec_ followed by base64".into());
    }
    if config
        .public_key
        .as_deref()
        .is_some_and(|k| public_key(k).is_none())
    {
        problems.push(
            ".public_key: a Standard Webhooks public key is whpk_ followed by the base64 \
             of a 32-byte Ed25519 public key"
                .into(),
        );
    }
    problems
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
    let entries = |wanted: &'static str| {
        signatures
            .split_whitespace()
            .filter_map(|entry| entry.split_once(','))
            .filter(move |(version, _)| *version == wanted)
            .map(|(_, sig)| decode_base64(sig))
    };
    let candidates: Vec<Option<Vec<u8>>> = entries("v1").collect();
    let mut matched = s.any_key(|key| {
        let mac = key.sha256(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", s.body]);
        any_matches(&mac, &candidates)
    });
    if let Some(public_key) = s.public_key {
        let message = signed_content(id, timestamp, s.body);
        for given in entries("v1a").flatten() {
            // Strict: no non-canonical or small-order signature parts, as
            // libsodium's `crypto_sign_verify_detached`.
            matched |= Signature::from_slice(&given)
                .is_ok_and(|sig| public_key.verify_strict(&message, &sig).is_ok());
        }
    }
    s.matched_then_fresh(matched, ts)
}

/// `id.timestamp.body`, the bytes both versions sign.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat()
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    verify_with(s, [ID, TIMESTAMP, SIGNATURE])
}

/// The sender's side under any header names; the id is kept from
/// `headers` when given, else generated.
pub fn sign_with(s: &ToSign<'_>, names: [&str; 3]) -> Vec<(String, String)> {
    sign_entry(s.headers, s.now_secs, names, |message| {
        format!("v1,{}", STANDARD.encode(s.key.tag256(&[message, s.body])))
    })
}

/// The asymmetric sender: one `v1a` entry, an Ed25519 signature.
fn sign_v1a(s: &ToSign<'_, SigningKey>) -> Vec<(String, String)> {
    sign_entry(
        s.headers,
        s.now_secs,
        [ID, TIMESTAMP, SIGNATURE],
        |prefix| {
            let signature = s.key.sign(&[prefix, s.body].concat());
            format!("v1a,{}", STANDARD.encode(signature.to_bytes()))
        },
    )
}

/// The three headers, the signature entry made by `entry` from the
/// `id.timestamp.` prefix of the signed content.
fn sign_entry(
    headers: &dyn crate::sources::Headers,
    now_secs: i64,
    [id_name, ts_name, sig_name]: [&str; 3],
    entry: impl FnOnce(&[u8]) -> String,
) -> Vec<(String, String)> {
    let id = field_value(headers, id_name)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .unwrap_or_else(new_message_id);
    let ts = now_secs.to_string();
    let signature = entry(format!("{id}.{ts}.").as_bytes());
    vec![
        (id_name.to_string(), id),
        (ts_name.to_string(), ts),
        (sig_name.to_string(), signature),
    ]
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    sign_with(s, [ID, TIMESTAMP, SIGNATURE])
}

/// A fresh Standard Webhooks message id: `msg_` + 16 random bytes in hex.
fn new_message_id() -> String {
    format!("msg_{}", hex::encode(rand::random::<[u8; 16]>()))
}
