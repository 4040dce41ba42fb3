//! Generic: HMAC-SHA256 of the body under the configured
//! `signature_header`, hex or base64, with an optional required prefix.
//! Nothing is located unless configured.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Provider, BASE};
use crate::config::{SignatureEncoding, SourceConfig};
use crate::sources::signature::{decode_base64, decode_hex, verify_body_hmac, Signed, ToSign};
use crate::sources::SignatureError;

pub const PROVIDER: Provider = Provider {
    name: "generic",
    verify,
    sign,
    check,
    ..BASE
};

fn check(config: &SourceConfig) -> Vec<String> {
    if !config.secrets.is_empty() && config.signature_header.is_none() {
        vec![": a signed generic source needs signature_header".into()]
    } else {
        Vec::new()
    }
}

fn prefix(config: &SourceConfig) -> &str {
    config.signature_prefix.as_deref().unwrap_or("")
}

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    // No header (refused by config validation): every delivery is refused.
    let header = s
        .config
        .signature_header
        .as_deref()
        .ok_or(SignatureError::Invalid)?;
    let decode = match s.config.signature_encoding {
        SignatureEncoding::Hex => decode_hex,
        SignatureEncoding::Base64 => decode_base64,
    };
    verify_body_hmac(s, header, prefix(s.config), decode)
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let Some(header) = &s.config.signature_header else {
        return Vec::new();
    };
    let raw = s.key.tag256(&[s.body]);
    let encoded = match s.config.signature_encoding {
        SignatureEncoding::Hex => hex::encode(raw),
        SignatureEncoding::Base64 => STANDARD.encode(raw),
    };
    vec![(header.clone(), format!("{}{encoded}", prefix(s.config)))]
}
