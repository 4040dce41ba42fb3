//! Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 with the account's
//! auth token of the URL Twilio called followed, for a form body, by every
//! form parameter sorted by name, each name then its value ("Webhooks
//! security" → "Validating signatures from Twilio", twilio.com/docs/usage/
//! security). The URL is the source's `public_url` (required) with the
//! request's query string as received. A JSON body is signed with a
//! `bodySHA256` query parameter instead: then nothing is appended, and it
//! must be the hex SHA-256 of the raw body; a JSON body without one is not
//! covered by the signature at all, so it is refused (Twilio documents no
//! such request). Twilio's SDKs accept a signature made with or without
//! the URL's default port (`:443`, `:80`), and so does this preset.
//!
//! SPEC §11 orders repeated names as they came (a stable sort by name);
//! names compare as bytes (Twilio: "Unix-style case-sensitive sorting").
//! The form is read for this before the signature holds; a form that does
//! not decode to UTF-8 is `missing_signature`. The event id is the
//! `I-Twilio-Idempotency-Token` header; the action the `MessageStatus`
//! field, else `CallStatus`; the object `message` / `MessageSid`, else
//! `call` / `CallSid`; the time is arrival (SPEC §11 names none).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};

use super::{Provider, BASE};
use crate::config::SourceConfig;
use crate::sources::locate::{field, header, Defaults, Find, FindType, Lookup};
use crate::sources::signature::{decode_base64, decode_hex, matches, Signed, ToSign};
use crate::sources::{body_kind, BodyKind, Headers, SignatureError};

pub const SIGNATURE: &str = "X-Twilio-Signature";
pub const IDEMPOTENCY_TOKEN: &str = "I-Twilio-Idempotency-Token";

pub const PROVIDER: Provider = Provider {
    name: "twilio",
    verify,
    sign,
    defaults,
    check,
    ..BASE
};

fn check(config: &SourceConfig) -> Vec<String> {
    super::public_url_required(config, "twilio")
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    let given = decode_base64(s.header(SIGNATURE)?);
    // Config validation requires it; without one nothing can match.
    let public_url = s
        .config
        .public_url
        .as_deref()
        .ok_or(SignatureError::Invalid)?;
    let url = signed_url(public_url, s.query);
    let appended = match body_sha256(s.query) {
        Some(expected) => {
            // In the signed URL: it must be this body's digest.
            if decode_hex(&expected).as_deref() != Some(Sha256::digest(s.body).as_slice()) {
                return Err(SignatureError::Invalid);
            }
            Vec::new()
        }
        None if is_form(s.headers) => sorted_params(s.body).ok_or(SignatureError::Missing)?,
        None => return Err(SignatureError::Invalid),
    };
    let variants = url_variants(&url);
    let matched = s.any_key(|key| {
        let mut matched = false;
        for variant in &variants {
            matched |= matches(key.sha1(&[variant.as_bytes(), &appended]), &given);
        }
        matched
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// The sender's side for a request to `public_url` as it is written (its
/// query included): a form body's parameters appended (a JSON body would
/// need `bodySHA256` in the URL, which a sender here does not add).
fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let public_url = s.config.public_url.as_deref().unwrap_or_default();
    let url = public_url.split('#').next().unwrap_or(public_url);
    let appended = if is_form(s.headers) {
        sorted_params(s.body).unwrap_or_default()
    } else {
        Vec::new()
    };
    let sig = STANDARD.encode(s.key.tag1(&[url.as_bytes(), &appended]));
    vec![(SIGNATURE.to_string(), sig)]
}

fn is_form(headers: &dyn Headers) -> bool {
    body_kind(headers.get("Content-Type")) == Some(BodyKind::Form)
}

/// `public_url` without its own query, then `?` and the request's query
/// string as received, if it has one.
pub fn signed_url(public_url: &str, query: &str) -> String {
    let base = public_url.split(['?', '#']).next().unwrap_or(public_url);
    if query.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{query}")
    }
}

/// The `bodySHA256` parameter of the query string, if any.
fn body_sha256(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
}

/// Every form parameter, decoded, stably sorted by name, as name then
/// value each; `None` when the body or a decoded name or value is not UTF-8.
pub fn sorted_params(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let decode = |s: &str| -> Option<String> {
        let spaced = s.replace('+', " ");
        Some(percent_decode_str(&spaced).decode_utf8().ok()?.into_owned())
    };
    let mut pairs = Vec::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((decode(name)?, decode(value)?));
    }
    // Stable: repeated names keep the order they came in.
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Some(
        pairs
            .into_iter()
            .flat_map(|(name, value)| [name, value])
            .collect::<String>()
            .into_bytes(),
    )
}

/// The URL as given, and with its default port removed or added (Twilio's
/// SDKs try both).
pub fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    variants.extend(toggled_default_port(url));
    variants
}

fn toggled_default_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The port is after the host: past any userinfo and IPv6 brackets.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let port_search = authority[host_start..]
        .rfind(']')
        .map_or(host_start, |i| host_start + i + 1);
    match authority[port_search..].rfind(':') {
        Some(i) => {
            let colon = port_search + i;
            (&authority[colon + 1..] == default)
                .then(|| format!("{scheme}://{}{tail}", &authority[..colon]))
        }
        None => Some(format!("{scheme}://{authority}:{default}{tail}")),
    }
}

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header(IDEMPOTENCY_TOKEN)],
        action: Find::With(|l| {
            l.text(&field("MessageStatus"))
                .or_else(|| l.text(&field("CallStatus")))
        }),
        object_id: Find::With(|l| object(l).map(|(_, id)| id)),
        object_type: FindType::With(|l, _| object(l).map(|(kind, _)| kind.to_string())),
        event_time: None,
    }
}

/// `message` / `MessageSid`, else `call` / `CallSid`.
fn object(l: &Lookup<'_>) -> Option<(&'static str, String)> {
    l.text(&field("MessageSid"))
        .map(|id| ("message", id))
        .or_else(|| l.text(&field("CallSid")).map(|id| ("call", id)))
}
