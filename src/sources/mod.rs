//! Provider knowledge, with no IO: what each preset's deliveries look like.
//!
//! Each preset is one [`Provider`] in the table of `providers/`, defined
//! whole in its own file. A [`Source`] is one configured source with its
//! preset's defaults resolved once, in [`Source::new`]. It verifies a
//! delivery's signature over the raw bytes ([`Source::verify`]: the
//! provider's scheme, with any of the source's secrets), parses the
//! verified body ([`Source::parse`]) and finds the event id, action, object
//! and event time in it (`locate`); [`Source::challenge`] recognises a
//! provider's handshake; [`Source::event_time_ms`] keeps the event time
//! from running ahead of arrival. [`Source::sign`] is the sender's side of
//! the same schemes, for the replay CLI and for tests. Nothing here logs:
//! secrets and signatures never leave this module except as the headers
//! `sign` returns.

use std::collections::BTreeMap;

use crate::config::{ActionRule, SourceConfig};

mod body;
mod locate;
pub mod providers;
mod signature;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
#[cfg(test)]
mod vectors_in_body_and_url;
#[cfg(test)]
mod vectors_more;
#[cfg(test)]
mod vectors_providers;

pub use body::body_kind;
pub use providers::standard::standard_webhooks_key;
pub use providers::{Provider, PROVIDERS};

/// Event ids, actions and object ids/types longer than this many bytes are
/// refused with 400 `invalid_payload` (SPEC §3).
pub const MAX_ID_BYTES: usize = 256;

/// The object type of an object whose delivery names only its id.
pub const UNTYPED_OBJECT: &str = "object";

/// Case-insensitive header lookup, so this module needs no HTTP framework.
pub trait Headers {
    /// The first value of `name` (ASCII case-insensitive), if it is valid UTF-8.
    fn get(&self, name: &str) -> Option<&str>;

    /// Whether `name` is present at all, UTF-8 or not: a signature header
    /// that is there but unreadable is invalid, not missing.
    fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl Headers for actix_web::http::header::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        // The inherent `get` lowercases `name`; an invalid name finds nothing.
        let value = actix_web::http::header::HeaderMap::get(self, name)?;
        std::str::from_utf8(value.as_bytes()).ok()
    }

    fn contains(&self, name: &str) -> bool {
        actix_web::http::header::HeaderMap::contains_key(self, name)
    }
}

/// A header's value as RFC 9110 defines a field value: without leading and
/// trailing spaces and tabs, and with nothing else removed. It is the one
/// way this module reads a header, for signatures and for ids alike, so that
/// a signature covers exactly the bytes a dedup key is made of (SPEC §3):
/// `str::trim` would also drop U+00A0 or U+3000 from a signed `webhook-id`
/// that the key then kept.
fn field_value<'h>(headers: &'h dyn Headers, name: &str) -> Option<&'h str> {
    headers.get(name).map(trim_ows)
}

/// HTTP's optional whitespace (spaces and tabs) off both ends.
fn trim_ows(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

/// The first pair whose name matches, ignoring ASCII case.
fn find_pair<'a, K, V>(pairs: &'a [(K, V)], name: &str) -> Option<&'a str>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    pairs
        .iter()
        .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

impl Headers for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl Headers for Vec<(&str, &str)> {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl<const N: usize> Headers for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl Headers for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl<T: Headers + ?Sized> Headers for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }

    fn contains(&self, name: &str) -> bool {
        (**self).contains(name)
    }
}

/// How a body is parsed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature does not match")]
    Invalid,
    #[error("the signed timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
}

/// 400 `invalid_payload`; the message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// What one delivery says about itself, found by the source's locators.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The parsed body: a JSON object (a form body as a flat object of strings).
    pub payload: serde_json::Value,
    pub event_id: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// The provider's event time (Unix ms), when the delivery carries one.
    pub event_time_ms: Option<i64>,
}

/// A configured source with its preset's defaults resolved.
#[derive(Debug, Clone)]
pub struct Source {
    pub config: SourceConfig,
    provider: &'static Provider,
    /// Every configured secret as its scheme's key (rotation: any may
    /// sign); empty with `verify = "off"`, or when no secret is well-formed
    /// for the scheme (config validation stops that first), and then every
    /// delivery is refused.
    keys: Vec<signature::HmacKey>,
    /// Where each delivery field is found: the overrides, else the preset's.
    rules: locate::Rules,
    /// The preset's default action table (Acuity), used when the source has
    /// none of its own.
    default_actions: Option<BTreeMap<String, ActionRule>>,
    /// The configured `public_key`, for a preset with an asymmetric scheme.
    public_key: Option<ed25519_dalek::VerifyingKey>,
    /// A sender's private key ([`Source::with_signing_key`]: replay, tests).
    signing_key: Option<signature::PrivateKey>,
}

impl Source {
    pub fn new(config: SourceConfig) -> Source {
        let provider = config.preset.provider();
        Source {
            provider,
            keys: config
                .secrets
                .iter()
                .filter_map(|s| (provider.key)(s.expose()))
                .map(signature::HmacKey)
                .collect(),
            rules: locate::Rules::new(&config),
            default_actions: (provider.actions)(),
            public_key: provider
                .asymmetric
                .zip(config.public_key.as_deref())
                .and_then(|(scheme, text)| (scheme.public_key)(text)),
            signing_key: None,
            config,
        }
    }

    /// This source signing as a sender holding the private key of its
    /// `public_key` would (`whsk_…`); `Err` when the preset has no
    /// asymmetric scheme or the key is malformed.
    pub fn with_signing_key(mut self, private_key: &str) -> Result<Source, String> {
        let scheme = self.provider.asymmetric.ok_or_else(|| {
            format!(
                "the {} preset signs with no private key",
                self.provider.name
            )
        })?;
        let key = (scheme.signing_key)(private_key.trim())
            .ok_or_else(|| "a malformed private key".to_string())?;
        self.signing_key = Some(signature::PrivateKey(key));
        Ok(self)
    }

    /// `verify = "off"`: no secret and no public key at all.
    fn unsigned(&self) -> bool {
        self.config.secrets.is_empty() && self.config.public_key.is_none()
    }

    /// Where a processed event's domain data is in its payload (Stripe:
    /// `/data/object`); `None`: the whole payload.
    pub fn domain_object(&self) -> Option<&'static str> {
        self.provider.domain_object
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The action table in force: the source's own, else the preset's default (Acuity).
    pub fn actions(&self) -> Option<&BTreeMap<String, ActionRule>> {
        self.config
            .actions
            .as_ref()
            .or(self.default_actions.as_ref())
    }

    /// Checks the signature (constant time) and then the timestamp tolerance.
    /// `verify = "off"` sources always pass. A request without a query string.
    pub fn verify(
        &self,
        headers: &dyn Headers,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), SignatureError> {
        self.verify_request(headers, "", body, now_secs)
    }

    /// [`Source::verify`] of a request with its query string as received
    /// (without the `?`), which Twilio's signature covers.
    pub fn verify_request(
        &self,
        headers: &dyn Headers,
        query: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), SignatureError> {
        if self.unsigned() {
            return Ok(());
        }
        self.verify_with(&self.keys, headers, query, body, now_secs)
    }

    fn verify_with(
        &self,
        keys: &[signature::HmacKey],
        headers: &dyn Headers,
        query: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), SignatureError> {
        (self.provider.verify)(&signature::Signed {
            headers,
            body,
            now_secs,
            config: &self.config,
            keys,
            public_key: self.public_key.as_ref(),
            query,
        })
    }

    /// The answer to a provider's handshake (Slack `url_verification`,
    /// Zoom `endpoint.url_validation`), if this verified, parsed delivery
    /// is one: it is answered 200 and not recorded (SPEC §11). Zoom's
    /// answer is a MAC, made with the secret that signed this request: while
    /// a team rotates (a list of secrets), Zoom validates with the one it
    /// holds, which may be any of them. (The request's signature and time
    /// are what `verify_request` checked.)
    pub fn challenge(
        &self,
        delivery: &Delivery,
        headers: &dyn Headers,
        query: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Option<serde_json::Value> {
        let answer = self.provider.challenge?;
        let reply = answer(&delivery.payload, self.keys.first()?)?;
        if self.keys.len() == 1 {
            return Some(reply);
        }
        let signer = (0..self.keys.len()).find(|&i| {
            self.verify_with(&self.keys[i..=i], headers, query, body, now_secs)
                .is_ok()
        })?;
        answer(&delivery.payload, &self.keys[signer])
    }

    /// The one-use token of a verified delivery whose scheme's MAC does
    /// not cover the event (Mailgun's `/signature/token`): ingest claims it
    /// for the delivery's event id, and refuses it with any other.
    pub fn one_use_token(&self, delivery: &Delivery) -> Option<String> {
        if self.unsigned() {
            return None;
        }
        (self.provider.one_use_token?)(&delivery.payload)
    }

    /// Parses a verified body and locates ids, action, object and event time.
    pub fn parse(
        &self,
        kind: BodyKind,
        headers: &dyn Headers,
        body: &[u8],
    ) -> Result<Delivery, PayloadError> {
        let payload = (self.provider.parse)(kind, body)?;
        let found = self.rules.locate(&payload, headers);
        for (what, value) in [
            ("event id", &found.event_id),
            ("action", &found.action),
            ("object id", &found.object_id),
            ("object type", &found.object_type),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_ID_BYTES) {
                return Err(PayloadError(format!(
                    "the {what} is longer than {MAX_ID_BYTES} bytes"
                )));
            }
            // PostgreSQL text cannot hold U+0000, and no provider sends it in
            // an id: refuse it the same way on every backend.
            if value.as_ref().is_some_and(|v| v.contains('\0')) {
                return Err(PayloadError(format!("the {what} contains a NUL character")));
            }
        }
        Ok(Delivery {
            payload,
            event_id: found.event_id,
            action: found.action,
            // An object is a type and an id: an id whose type the delivery
            // does not say still orders and upserts, under a neutral type.
            object_type: found.object_id.as_ref().map(|_| {
                found
                    .object_type
                    .unwrap_or_else(|| UNTYPED_OBJECT.to_string())
            }),
            object_id: found.object_id,
            event_time_ms: found.event_time_ms,
        })
    }

    /// The event time to record for a delivery that arrived at `arrival_ms`:
    /// the provider's (`found`), unless it is missing or more than
    /// `tolerance_secs` after arrival (SPEC §2), then the arrival time. A
    /// captured body replayed with a far-future time — Shopify's
    /// `X-Shopify-Triggered-At` is not signed — would otherwise win every
    /// later comparison and freeze its object's domain row.
    pub fn event_time_ms(&self, found: Option<i64>, arrival_ms: i64) -> i64 {
        let tolerance_ms = i64::try_from(self.config.tolerance_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        found
            .filter(|t| t.saturating_sub(arrival_ms) <= tolerance_ms)
            .unwrap_or(arrival_ms)
    }

    /// The body a sender of this preset would send at `now_secs`, for the
    /// schemes that sign inside it (Linear's `webhookTimestamp`, Mailgun's
    /// `signature` object: rewritten, fresh); `None` for the others, and
    /// for a body the scheme cannot rewrite. Sign the result.
    pub fn restamp(&self, body: &[u8], now_secs: i64) -> Option<Vec<u8>> {
        let restamp = self.provider.restamp?;
        let key = self.keys.first()?;
        restamp(&signature::ToSign {
            headers: &Vec::<(String, String)>::new(),
            body,
            now_secs,
            config: &self.config,
            key,
        })
    }

    /// The headers a sender of this preset would add to sign `body` at `now_secs`
    /// (replaces any in `headers`); for Standard Webhooks, `webhook-id` is kept from
    /// `headers` when present, else generated and returned too.
    /// A source given a private key ([`Source::with_signing_key`]) signs
    /// with it, by its asymmetric scheme.
    pub fn sign(&self, headers: &dyn Headers, body: &[u8], now_secs: i64) -> Vec<(String, String)> {
        if let (Some(scheme), Some(key)) = (self.provider.asymmetric, &self.signing_key) {
            return (scheme.sign)(&signature::ToSign {
                headers,
                body,
                now_secs,
                config: &self.config,
                key: &key.0,
            });
        }
        let Some(key) = self.keys.first() else {
            return Vec::new();
        };
        (self.provider.sign)(&signature::ToSign {
            headers,
            body,
            now_secs,
            config: &self.config,
            key,
        })
    }
}
