//! The six signature schemes of SPEC §3, both sides: `verify` for deliveries
//! and `sign` for the replay CLI and tests.
//!
//! Every scheme is HMAC-SHA256 over the raw body (Stripe and Standard
//! Webhooks prefix it with their signed timestamp and id). Comparison is in
//! constant time (`Mac::verify_slice`). The signature is checked before the
//! timestamp, so a stale capture with a forged signature reads as
//! `Invalid`, and only a genuine but old (or future) one as
//! `TimestampOutOfTolerance`. Headers are read as field values (spaces and
//! tabs off the ends, nothing else), exactly as `locate` reads ids, so a
//! signed `webhook-id` is keyed on the bytes the MAC covered. Keys live in
//! [`HmacKey`], whose `Debug` never prints them; nothing here logs.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{field_value, trim_ows, Headers, SignatureError};
use crate::config::{Preset, SignatureEncoding, SourceConfig};

type HmacSha256 = Hmac<Sha256>;

/// Standard base64 that accepts input with or without `=` padding (senders
/// and secret generators differ); the bytes compared are the same.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub const STRIPE_SIGNATURE: &str = "Stripe-Signature";
pub const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
pub const GITHUB_SIGNATURE_PREFIX: &str = "sha256=";
pub const SHOPIFY_SIGNATURE: &str = "X-Shopify-Hmac-Sha256";
pub const ACUITY_SIGNATURE: &str = "X-Acuity-Signature";
pub const STANDARD_ID: &str = "webhook-id";
pub const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE: &str = "webhook-signature";
/// The prefix of a Standard Webhooks secret.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64), if well-formed.
pub fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(STANDARD_SECRET_PREFIX)?;
    let key = BASE64_LENIENT.decode(encoded).ok()?;
    // An empty key would let anyone sign.
    (!key.is_empty()).then_some(key)
}

/// HMAC key bytes: used, never printed.
#[derive(Clone)]
pub struct HmacKey(Vec<u8>);

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey([redacted])")
    }
}

impl HmacKey {
    /// A MAC over `parts`, in order, as if concatenated.
    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

/// A source's signature scheme with its key, resolved once.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// `verify = "off"`: every delivery passes, `sign` adds nothing.
    Off,
    Stripe(HmacKey),
    Github(HmacKey),
    Shopify(HmacKey),
    Acuity(HmacKey),
    /// `None`: the secret is not `whsec_` + base64 (config validation stops
    /// that first); every delivery is then refused.
    Standard(Option<HmacKey>),
    Generic {
        key: HmacKey,
        /// `None` (refused by config validation): every delivery is refused.
        header: Option<String>,
        encoding: SignatureEncoding,
        prefix: Option<String>,
    },
}

impl Scheme {
    pub fn new(config: &SourceConfig) -> Scheme {
        let Some(secret) = &config.secret else {
            return Scheme::Off;
        };
        let key = HmacKey(secret.expose().as_bytes().to_vec());
        match config.preset {
            Preset::Stripe => Scheme::Stripe(key),
            Preset::Github => Scheme::Github(key),
            Preset::Shopify => Scheme::Shopify(key),
            Preset::Acuity => Scheme::Acuity(key),
            Preset::Standard => {
                Scheme::Standard(standard_webhooks_key(secret.expose()).map(HmacKey))
            }
            Preset::Generic => Scheme::Generic {
                key,
                header: config.signature_header.clone(),
                encoding: config.signature_encoding,
                prefix: config.signature_prefix.clone().filter(|p| !p.is_empty()),
            },
        }
    }

    pub fn verify(
        &self,
        headers: &dyn Headers,
        body: &[u8],
        now_secs: i64,
        tolerance_secs: u64,
    ) -> Result<(), SignatureError> {
        match self {
            Scheme::Off => Ok(()),
            Scheme::Stripe(key) => verify_stripe(key, headers, body, now_secs, tolerance_secs),
            Scheme::Github(key) => {
                let value = required(headers, GITHUB_SIGNATURE)?;
                let hex = value
                    .strip_prefix(GITHUB_SIGNATURE_PREFIX)
                    .ok_or(SignatureError::Invalid)?;
                check(key.mac(&[body]), decode_hex(hex))
            }
            Scheme::Shopify(key) => check(
                key.mac(&[body]),
                decode_base64(required(headers, SHOPIFY_SIGNATURE)?),
            ),
            Scheme::Acuity(key) => check(
                key.mac(&[body]),
                decode_base64(required(headers, ACUITY_SIGNATURE)?),
            ),
            Scheme::Standard(key) => {
                verify_standard(key.as_ref(), headers, body, now_secs, tolerance_secs)
            }
            Scheme::Generic {
                key,
                header,
                encoding,
                prefix,
            } => {
                let header = header.as_deref().ok_or(SignatureError::Invalid)?;
                let mut value = required(headers, header)?;
                if let Some(prefix) = prefix {
                    value = value
                        .strip_prefix(prefix.as_str())
                        .ok_or(SignatureError::Invalid)?;
                }
                let given = match encoding {
                    SignatureEncoding::Hex => decode_hex(value),
                    SignatureEncoding::Base64 => decode_base64(value),
                };
                check(key.mac(&[body]), given)
            }
        }
    }

    pub fn sign(&self, headers: &dyn Headers, body: &[u8], now_secs: i64) -> Vec<(String, String)> {
        let pair = |name: &str, value: String| vec![(name.to_string(), value)];
        match self {
            Scheme::Off => Vec::new(),
            Scheme::Stripe(key) => {
                let t = now_secs.to_string();
                let sig = hex::encode(key.mac(&[t.as_bytes(), b".", body]).finalize().into_bytes());
                pair(STRIPE_SIGNATURE, format!("t={t},v1={sig}"))
            }
            Scheme::Github(key) => pair(
                GITHUB_SIGNATURE,
                format!(
                    "{GITHUB_SIGNATURE_PREFIX}{}",
                    hex::encode(tag(key, &[body]))
                ),
            ),
            Scheme::Shopify(key) => pair(SHOPIFY_SIGNATURE, STANDARD.encode(tag(key, &[body]))),
            Scheme::Acuity(key) => pair(ACUITY_SIGNATURE, STANDARD.encode(tag(key, &[body]))),
            Scheme::Standard(None) => Vec::new(),
            Scheme::Standard(Some(key)) => {
                let id = field_value(headers, STANDARD_ID)
                    .filter(|id| !id.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(new_message_id);
                let ts = now_secs.to_string();
                let sig =
                    STANDARD.encode(tag(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]));
                vec![
                    (STANDARD_ID.to_string(), id),
                    (STANDARD_TIMESTAMP.to_string(), ts),
                    (STANDARD_SIGNATURE.to_string(), format!("v1,{sig}")),
                ]
            }
            Scheme::Generic {
                key,
                header,
                encoding,
                prefix,
            } => {
                let Some(header) = header else {
                    return Vec::new();
                };
                let raw = tag(key, &[body]);
                let encoded = match encoding {
                    SignatureEncoding::Hex => hex::encode(raw),
                    SignatureEncoding::Base64 => STANDARD.encode(raw),
                };
                pair(
                    header,
                    format!("{}{encoded}", prefix.as_deref().unwrap_or("")),
                )
            }
        }
    }
}

/// The HMAC tag over `parts`.
fn tag(key: &HmacKey, parts: &[&[u8]]) -> Vec<u8> {
    key.mac(parts).finalize().into_bytes().to_vec()
}

/// A fresh Standard Webhooks message id: `msg_` + 16 random bytes in hex.
fn new_message_id() -> String {
    format!("msg_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The header's field value (as `locate` reads ids: the same bytes).
fn required<'h>(headers: &'h dyn Headers, name: &str) -> Result<&'h str, SignatureError> {
    match field_value(headers, name) {
        Some(value) => Ok(value),
        // Present but not UTF-8: unparseable, so invalid.
        None if headers.contains(name) => Err(SignatureError::Invalid),
        None => Err(SignatureError::Missing),
    }
}

fn decode_hex(value: &str) -> Option<Vec<u8>> {
    hex::decode(trim_ows(value)).ok()
}

fn decode_base64(value: &str) -> Option<Vec<u8>> {
    BASE64_LENIENT.decode(trim_ows(value)).ok()
}

/// Constant-time comparison of one given signature (undecodable: `None`).
fn check(mac: HmacSha256, given: Option<Vec<u8>>) -> Result<(), SignatureError> {
    match given {
        Some(given) if mac.verify_slice(&given).is_ok() => Ok(()),
        _ => Err(SignatureError::Invalid),
    }
}

/// Whether any of the candidates matches (each compared in constant time).
fn any_matches(mac: &HmacSha256, candidates: impl Iterator<Item = Option<Vec<u8>>>) -> bool {
    let mut matched = false;
    for given in candidates.flatten() {
        // No early exit: every listed signature is compared.
        matched |= mac.clone().verify_slice(&given).is_ok();
    }
    matched
}

fn check_timestamp(ts: i64, now_secs: i64, tolerance_secs: u64) -> Result<(), SignatureError> {
    if now_secs.abs_diff(ts) > tolerance_secs {
        Err(SignatureError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

/// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`; `v0` and unknown
/// schemes are ignored; several `v1` entries appear while a secret rotates.
fn verify_stripe(
    key: &HmacKey,
    headers: &dyn Headers,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let value = required(headers, STRIPE_SIGNATURE)?;
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
            "v1" => v1.push(trim_ows(v)),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Invalid)?;
    let ts: i64 = t.parse().map_err(|_| SignatureError::Invalid)?;
    let mac = key.mac(&[t.as_bytes(), b".", body]);
    if !any_matches(&mac, v1.into_iter().map(decode_hex)) {
        return Err(SignatureError::Invalid);
    }
    check_timestamp(ts, now_secs, tolerance_secs)
}

/// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> [v1,<b64>…]`
/// over `id.timestamp.body`; entries of other versions (`v1a`) are ignored.
fn verify_standard(
    key: Option<&HmacKey>,
    headers: &dyn Headers,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let id = required(headers, STANDARD_ID)?;
    let timestamp = required(headers, STANDARD_TIMESTAMP)?;
    let signatures = required(headers, STANDARD_SIGNATURE)?;
    let key = key.ok_or(SignatureError::Invalid)?;
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::Invalid)?;
    let mac = key.mac(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    let candidates = signatures
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, sig)| decode_base64(sig));
    if !any_matches(&mac, candidates) {
        return Err(SignatureError::Invalid);
    }
    check_timestamp(ts, now_secs, tolerance_secs)
}
