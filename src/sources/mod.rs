//! STUB — to be replaced by the sources module (interface contract below).
use std::collections::BTreeMap;

use crate::config::{ActionRule, SourceConfig};

/// Case-insensitive header lookup, so this module needs no HTTP framework.
pub trait Headers {
    /// The first value of `name` (ASCII case-insensitive), if it is valid UTF-8.
    fn get(&self, name: &str) -> Option<&str>;
}

/// How a body is parsed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

/// `application/json`, `application/*+json` (any case, parameters allowed) →
/// Json; `application/x-www-form-urlencoded` → Form; anything else or missing → None (415).
pub fn body_kind(_content_type: Option<&str>) -> Option<BodyKind> {
    todo!()
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
}

impl Source {
    pub fn new(config: SourceConfig) -> Source {
        Source { config }
    }
    pub fn name(&self) -> &str {
        &self.config.name
    }
    /// The action table in force: the source's own, else the preset's default (Acuity).
    pub fn actions(&self) -> Option<&BTreeMap<String, ActionRule>> {
        todo!()
    }
    /// Checks the signature (constant time) and then the timestamp tolerance.
    /// `verify = "off"` sources always pass.
    pub fn verify(&self, _headers: &dyn Headers, _body: &[u8], _now_secs: i64) -> Result<(), SignatureError> {
        todo!()
    }
    /// Parses a verified body and locates ids, action, object and event time.
    pub fn parse(&self, _kind: BodyKind, _headers: &dyn Headers, _body: &[u8]) -> Result<Delivery, PayloadError> {
        todo!()
    }
    /// The headers a sender of this preset would add to sign `body` at `now_secs`
    /// (replaces any in `headers`); for Standard Webhooks, `webhook-id` is kept from
    /// `headers` when present, else generated and returned too.
    pub fn sign(&self, _headers: &dyn Headers, _body: &[u8], _now_secs: i64) -> Vec<(String, String)> {
        todo!()
    }
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64), if well-formed.
pub fn standard_webhooks_key(_secret: &str) -> Option<Vec<u8>> {
    todo!()
}
