//! The shared side of signature schemes: keys, MACs, header reading,
//! decoding and constant-time comparison; each preset's own scheme is in
//! `providers/<preset>.rs` and uses these.
//!
//! A source may list several secrets (rotation, SPEC §2): a preset's
//! `verify` parses its headers once and asks [`Signed::any_key`] whether
//! any key's MAC matches, which compares with every key and every listed
//! signature, with no early exit, each comparison in constant time
//! (`Mac::verify_slice`). The signature is checked before the timestamp,
//! so a stale capture with a forged signature reads as `Invalid`, and only
//! a genuine but old (or future) one as `TimestampOutOfTolerance`. Headers
//! are read as field values (spaces and tabs off the ends, nothing else),
//! exactly as `locate` reads ids, so a signed `webhook-id` is keyed on the
//! bytes the MAC covered. Keys live in [`HmacKey`], whose `Debug` never
//! prints them; nothing here logs.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{field_value, trim_ows, Headers, SignatureError};
use crate::config::SourceConfig;

pub type HmacSha256 = Hmac<Sha256>;
pub type HmacSha1 = Hmac<sha1::Sha1>;

/// Standard base64 that accepts input with or without `=` padding (senders
/// and secret generators differ); the bytes compared are the same.
pub const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// HMAC key bytes: used, never printed.
#[derive(Clone)]
pub struct HmacKey(pub(super) Vec<u8>);

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey([redacted])")
    }
}

impl HmacKey {
    /// An HMAC-SHA256 over `parts`, in order, as if concatenated.
    pub fn sha256(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// The HMAC-SHA256 tag over `parts`.
    pub fn tag256(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.sha256(parts).finalize().into_bytes().to_vec()
    }

    /// An HMAC-SHA1 over `parts` (Intercom, Twilio: the providers'
    /// schemes, not a choice of ours).
    pub fn sha1(&self, parts: &[&[u8]]) -> HmacSha1 {
        let mut mac = HmacSha1::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// The HMAC-SHA1 tag over `parts`.
    pub fn tag1(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.sha1(parts).finalize().into_bytes().to_vec()
    }

    /// The raw key, for schemes that compare the secret itself (GitLab).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A sender's Ed25519 private key (replay, tests): used, never printed.
#[derive(Clone)]
pub struct PrivateKey(pub ed25519_dalek::SigningKey);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// One delivery to verify, with the source's keys and settings.
pub struct Signed<'a> {
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
    pub now_secs: i64,
    pub config: &'a SourceConfig,
    pub keys: &'a [HmacKey],
    /// The source's `public_key`, for a preset with an asymmetric scheme.
    pub public_key: Option<&'a ed25519_dalek::VerifyingKey>,
    /// The request's query string as received (after `?`; empty without
    /// one), for a scheme that signs the URL it called (Twilio).
    pub query: &'a str,
}

impl Signed<'_> {
    /// The header's field value (as `locate` reads ids: the same bytes);
    /// absent is `Missing`, present but not UTF-8 is `Invalid`.
    pub fn header(&self, name: &str) -> Result<&str, SignatureError> {
        required(self.headers, name)
    }

    /// Whether `matches` holds for any of the source's keys. Every key is
    /// tried (no early exit), so the time taken says nothing about which.
    pub fn any_key(&self, matches: impl Fn(&HmacKey) -> bool) -> bool {
        let mut matched = false;
        for key in self.keys {
            matched |= matches(key);
        }
        matched
    }

    /// `Ok` when a signature matched, then the timestamp decides.
    pub fn matched_then_fresh(&self, matched: bool, ts: i64) -> Result<(), SignatureError> {
        if !matched {
            return Err(SignatureError::Invalid);
        }
        check_timestamp(ts, self.now_secs, self.config.tolerance_secs)
    }
}

/// One body to sign, with the source's first key (or, for an asymmetric
/// scheme, a private key: `K = ed25519_dalek::SigningKey`).
pub struct ToSign<'a, K = HmacKey> {
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
    pub now_secs: i64,
    pub config: &'a SourceConfig,
    pub key: &'a K,
}

/// The header's field value (as `locate` reads ids: the same bytes).
pub fn required<'h>(headers: &'h dyn Headers, name: &str) -> Result<&'h str, SignatureError> {
    match field_value(headers, name) {
        Some(value) => Ok(value),
        // Present but not UTF-8: unparseable, so invalid.
        None if headers.contains(name) => Err(SignatureError::Invalid),
        None => Err(SignatureError::Missing),
    }
}

pub fn decode_hex(value: &str) -> Option<Vec<u8>> {
    hex::decode(trim_ows(value)).ok()
}

pub fn decode_base64(value: &str) -> Option<Vec<u8>> {
    BASE64_LENIENT.decode(trim_ows(value)).ok()
}

/// Constant-time comparison of one given signature (undecodable: `None`).
pub fn matches<M: Mac>(mac: M, given: &Option<Vec<u8>>) -> bool {
    given
        .as_ref()
        .is_some_and(|given| mac.verify_slice(given).is_ok())
}

/// Whether any of the candidates matches (each compared in constant time).
pub fn any_matches<M: Mac + Clone>(mac: &M, candidates: &[Option<Vec<u8>>]) -> bool {
    let mut matched = false;
    for given in candidates.iter().flatten() {
        // No early exit: every listed signature is compared.
        matched |= mac.clone().verify_slice(given).is_ok();
    }
    matched
}

/// `Ok` when `ts` is within `tolerance_secs` of now, either way.
pub fn check_timestamp(ts: i64, now_secs: i64, tolerance_secs: u64) -> Result<(), SignatureError> {
    if now_secs.abs_diff(ts) > tolerance_secs {
        Err(SignatureError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

/// HMAC-SHA256 of the body alone, under `header` (with an optional
/// `prefix` that must be present), decoded by `decode`: the shape of
/// GitHub's, Shopify's, Acuity's and many other schemes.
pub fn verify_body_hmac(
    s: &Signed<'_>,
    header: &str,
    prefix: &str,
    decode: fn(&str) -> Option<Vec<u8>>,
) -> Result<(), SignatureError> {
    let value = s.header(header)?;
    let value = value.strip_prefix(prefix).ok_or(SignatureError::Invalid)?;
    let given = decode(value);
    if s.any_key(|key| matches(key.sha256(&[s.body]), &given)) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}
